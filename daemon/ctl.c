/*
 * ctl.c - floodgatectl: ask the running floodgated over its control socket.
 *
 *   floodgatectl [--socket PATH] [--json] COMMAND [OPTIONS] [ARGS]
 *
 * Every command prints text for people, or with --json the daemon's one-line JSON answer
 * as is. Text for people is log text an attacker wrote: every string of the answer is
 * printed through util_term_escape (controls, bad bytes and bidirectional controls as
 * visible escapes); the JSON answer already holds them as \u escapes. Exit status: 0 done, 1 refused or failed (one line on stderr), 2 usage.
 *
 * An IDENTITY is "box@domain" (mailbox), "user" (account) or "user:/dir" (script); the
 * form decides unless --scope is given or the identity is written "scope:identity".
 */
#include "ctl.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alertmsg.h"
#include "usertable.h"
#include "util.h"

#ifndef FLOODGATE_VERSION
#define FLOODGATE_VERSION "unknown"
#endif

#define CTLCLI_DEFAULT_SOCKET "/run/floodgate/ctl.sock"
#define CTLCLI_JSON_DEPTH     16

static const char ctlcli_help[] =
    "usage: floodgatectl [--socket PATH] [--json] COMMAND [OPTIONS] [ARGS]\n"
    "\n"
    "commands:\n"
    "  status                        version, uptime, mode, log position and lag, counts\n"
    "  top [--scope S] [--window W] [-n N]\n"
    "                                heaviest senders now, per rule window (N <= 100)\n"
    "  show IDENTITY|REF             counters, trips, queued messages, blocklist, action\n"
    "  held                          identities floodgate holds, suspends or froze\n"
    "  tripped                       recent trips (monitor mode's too) and what was done\n"
    "  release IDENTITY              undo floodgate's actions and clear its trips\n"
    "  hold IDENTITY [--reason TEXT] freeze its queued mail and hold its outgoing mail\n"
    "  suspend IDENTITY [--reason TEXT]\n"
    "                                freeze its queued mail and suspend its outgoing mail\n"
    "  reload                        re-read the configuration (all or nothing)\n"
    "  test-alert                    send a test alert to every destination\n"
    "  alert-enable NAME             re-enable a disabled alert destination\n"
    "\n"
    "options:\n"
    "  --socket PATH   control socket (default " CTLCLI_DEFAULT_SOCKET ")\n"
    "  --json          print the daemon's JSON answer (one line)\n"
    "  --scope S       mailbox, account or script (default: from the identity's form)\n"
    "  -V, --version   print the version\n"
    "  -h, --help      print this help\n"
    "\n"
    "IDENTITY: box@domain (mailbox), user (account), user:/dir (script), or scope:identity.\n"
    "REF: the reference of a trip (fg-1a2b3c) as a refused sender quotes it.\n"
    "hold, suspend and release wait for their steps and exit 1 naming any that failed;\n"
    "they act in monitor mode too (an operator's order).\n"
    "Exit status: 0 done, 1 refused or failed, 2 usage.\n";

/* --- a small JSON reader for the daemon's answers ----------------------------------- */

enum jv_type { JV_NULL, JV_BOOL, JV_NUM, JV_STR, JV_ARR, JV_OBJ };

struct jv {
    enum jv_type t;
    bool b;
    char *s; /* JV_STR: the decoded text; JV_NUM: the number as written */
    struct jv *kids;
    char **keys; /* JV_OBJ */
    size_t n;
};

struct jp {
    const char *p, *end;
};

static void
jv_free(struct jv *v)
{
    for (size_t i = 0; i < v->n; i++) {
        jv_free(&v->kids[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->kids);
    free(v->keys);
    free(v->s);
}

static void
jp_ws(struct jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int
jp_utf8(struct strbuf *b, unsigned cp)
{
    char u[4];
    size_t n;

    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    }
    return strbuf_append(b, u, n);
}

static int
jp_string(struct jp *j, char **ret)
{
    struct strbuf b;
    int r = 0;

    strbuf_init(&b, CTL_RESPONSE_MAX);
    j->p++; /* the opening quote */
    while (r == 0 && j->p < j->end && *j->p != '"') {
        if (*j->p != '\\') {
            r = strbuf_append(&b, j->p++, 1);
            continue;
        }
        if (j->end - j->p < 2) {
            r = -EBADMSG;
            break;
        }
        char c = j->p[1];
        j->p += 2;
        switch (c) {
        case 'n':
            r = strbuf_append(&b, "\n", 1);
            break;
        case 't':
            r = strbuf_append(&b, "\t", 1);
            break;
        case 'r':
            r = strbuf_append(&b, "\r", 1);
            break;
        case 'b':
            r = strbuf_append(&b, "\b", 1);
            break;
        case 'f':
            r = strbuf_append(&b, "\f", 1);
            break;
        case 'u': {
            unsigned cp = 0;
            if (j->end - j->p < 4) {
                r = -EBADMSG;
                break;
            }
            for (int k = 0; k < 4; k++) {
                char h = *j->p++;
                cp <<= 4;
                if (h >= '0' && h <= '9')
                    cp |= (unsigned)(h - '0');
                else if (h >= 'a' && h <= 'f')
                    cp |= (unsigned)(h - 'a' + 10);
                else if (h >= 'A' && h <= 'F')
                    cp |= (unsigned)(h - 'A' + 10);
                else
                    r = -EBADMSG;
            }
            if (r == 0)
                r = jp_utf8(&b, cp);
            break;
        }
        default:
            r = strbuf_append(&b, &c, 1);
            break;
        }
    }
    if (r == 0 && j->p >= j->end)
        r = -EBADMSG;
    if (r < 0) {
        strbuf_done(&b);
        return r;
    }
    j->p++; /* the closing quote */
    *ret = strdup(strbuf_cstr(&b));
    strbuf_done(&b);
    return *ret ? 0 : -ENOMEM;
}

static int jp_value(struct jp *j, struct jv *v, int depth);

static int
jp_push(struct jv *v, size_t *cap)
{
    if (v->n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 8;
    struct jv *k = realloc(v->kids, ncap * sizeof(*k));
    if (!k)
        return -ENOMEM;
    v->kids = k;
    if (v->t == JV_OBJ) {
        char **keys = realloc(v->keys, ncap * sizeof(*keys));
        if (!keys)
            return -ENOMEM;
        v->keys = keys;
    }
    *cap = ncap;
    return 0;
}

static int
jp_container(struct jp *j, struct jv *v, int depth)
{
    char close = v->t == JV_OBJ ? '}' : ']';
    size_t cap = 0;
    int r;

    j->p++;
    jp_ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        return 0;
    }
    for (;;) {
        char *key = NULL;
        jp_ws(j);
        if (v->t == JV_OBJ) {
            if (j->p >= j->end || *j->p != '"')
                return -EBADMSG;
            if ((r = jp_string(j, &key)) < 0)
                return r;
            jp_ws(j);
            if (j->p >= j->end || *j->p != ':') {
                free(key);
                return -EBADMSG;
            }
            j->p++;
        }
        if ((r = jp_push(v, &cap)) < 0) {
            free(key);
            return r;
        }
        memset(&v->kids[v->n], 0, sizeof(v->kids[0]));
        if (v->t == JV_OBJ)
            v->keys[v->n] = key;
        v->n++;
        if ((r = jp_value(j, &v->kids[v->n - 1], depth + 1)) < 0)
            return r;
        jp_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return 0;
        }
        return -EBADMSG;
    }
}

static int
jp_value(struct jp *j, struct jv *v, int depth)
{
    const char *start;

    if (depth > CTLCLI_JSON_DEPTH)
        return -EBADMSG;
    jp_ws(j);
    if (j->p >= j->end)
        return -EBADMSG;
    switch (*j->p) {
    case '{':
        v->t = JV_OBJ;
        return jp_container(j, v, depth);
    case '[':
        v->t = JV_ARR;
        return jp_container(j, v, depth);
    case '"':
        v->t = JV_STR;
        return jp_string(j, &v->s);
    case 't':
    case 'f':
    case 'n': {
        static const char *const words[] = { "true", "false", "null" };
        for (size_t i = 0; i < N_ELEMS(words); i++) {
            size_t len = strlen(words[i]);
            if ((size_t)(j->end - j->p) >= len && memcmp(j->p, words[i], len) == 0) {
                v->t = i == 2 ? JV_NULL : JV_BOOL;
                v->b = i == 0;
                j->p += len;
                return 0;
            }
        }
        return -EBADMSG;
    }
    default:
        start = j->p;
        while (j->p < j->end && strchr("+-0123456789.eE", *j->p))
            j->p++;
        if (j->p == start)
            return -EBADMSG;
        v->t = JV_NUM;
        v->s = strndup(start, (size_t)(j->p - start));
        return v->s ? 0 : -ENOMEM;
    }
}

static const struct jv *
jv_get(const struct jv *o, const char *key)
{
    static const struct jv none = { .t = JV_NULL };

    for (size_t i = 0; o && o->t == JV_OBJ && i < o->n; i++)
        if (strcmp(o->keys[i], key) == 0)
            return &o->kids[i];
    return &none;
}

static const char *
jv_str(const struct jv *o, const char *key)
{
    const struct jv *v = jv_get(o, key);
    return (v->t == JV_STR || v->t == JV_NUM) ? v->s : "";
}

static long long
jv_num(const struct jv *o, const char *key)
{
    const struct jv *v = jv_get(o, key);
    return v->t == JV_NUM ? strtoll(v->s, NULL, 10) : 0;
}

static bool
jv_bool(const struct jv *o, const char *key)
{
    return jv_get(o, key)->b;
}

/* --- formatting --------------------------------------------------------------------- */

/* @s rendered by util_term_escape in a new string (NULL when out of memory). */
static char *
ctlcli_term_dup(const char *s)
{
    size_t len = strlen(s), need = util_term_escape(NULL, 0, s, len);
    char *e = malloc(need + 1);

    if (e)
        (void)util_term_escape(e, need + 1, s, len);
    return e;
}

/*
 * Every string of an answer (names, identities, reasons, messages: log text an attacker
 * wrote) made safe for a terminal, in place, before any of it is printed for people.
 */
static int
jv_for_terminal(struct jv *v)
{
    char *e;

    if (v->t == JV_STR) {
        if (!(e = ctlcli_term_dup(v->s)))
            return -ENOMEM;
        free(v->s);
        v->s = e;
    }
    for (size_t i = 0; i < v->n; i++) {
        if (v->keys) {
            if (!(e = ctlcli_term_dup(v->keys[i])))
                return -ENOMEM;
            free(v->keys[i]);
            v->keys[i] = e;
        }
        if (jv_for_terminal(&v->kids[i]) < 0)
            return -ENOMEM;
    }
    return 0;
}

/* Wall-clock epoch ms in local time; "-" for 0. */
static void
ctlcli_wall(long long ms, char *buf, size_t size)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (ms <= 0 || !localtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        (void)snprintf(buf, size, "-");
}

/* The log's own (zoneless) ms, printed as logged; "-" for 0. */
static void
ctlcli_logtime(long long ms, char *buf, size_t size)
{
    if (ms <= 0)
        (void)snprintf(buf, size, "-");
    else
        util_format_time(ms, buf, size);
}

/* One line per alert destination: "alert NAME: TYPE HOST, enabled, N pending, ..." */
static void
ctlcli_status_alerts(const struct jv *a)
{
    if (a->n == 0)
        printf("alerts: none configured\n");
    for (size_t k = 0; k < a->n; k++) {
        const struct jv *e = &a->kids[k];
        printf("alert %s: %s %s, %s, %s pending, %s delivered, %s retried, %s failed, "
               "last status %s\n",
               jv_str(e, "name"), jv_str(e, "type"), jv_str(e, "host"),
               jv_bool(e, "enabled") ? "enabled" : "DISABLED", jv_str(e, "pending"),
               jv_str(e, "delivered"), jv_str(e, "retried"), jv_str(e, "failed"),
               jv_str(e, "last_status"));
    }
}

/* A duration in seconds for people: "42s", "4m17s", "2h05m", "3d04h". */
static void
ctlcli_age(long long s, char *buf, size_t size)
{
    if (s < 0)
        s = 0;
    if (s < 60)
        (void)snprintf(buf, size, "%llds", s);
    else if (s < 3600)
        (void)snprintf(buf, size, "%lldm%02llds", s / 60, s % 60);
    else if (s < 86400)
        (void)snprintf(buf, size, "%lldh%02lldm", s / 3600, s % 3600 / 60);
    else
        (void)snprintf(buf, size, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
}

/* A byte count for people: "812 bytes", "4.2 MiB". */
static void
ctlcli_bytes(long long n, char *buf, size_t size)
{
    if (n < 1024)
        (void)snprintf(buf, size, "%lld bytes", n);
    else if (n < 1024 * 1024)
        (void)snprintf(buf, size, "%.1f KiB", (double)n / 1024.0);
    else if (n < 1024LL * 1024 * 1024)
        (void)snprintf(buf, size, "%.1f MiB", (double)n / (1024.0 * 1024.0));
    else
        (void)snprintf(buf, size, "%.1f GiB", (double)n / (1024.0 * 1024.0 * 1024.0));
}

static void
ctlcli_status(const struct jv *o)
{
    const struct jv *warn = jv_get(o, "warnings");
    char up[32], last[48], t[32], off[32], lag[32];

    ctlcli_age(jv_num(o, "uptime_s"), up, sizeof(up));
    if (jv_num(o, "last_record_s") < 0)
        (void)snprintf(last, sizeof(last), "never");
    else {
        ctlcli_age(jv_num(o, "last_record_s"), t, sizeof(t));
        (void)snprintf(last, sizeof(last), "%s ago", t);
    }
    ctlcli_bytes(jv_num(o, "offset"), off, sizeof(off));
    ctlcli_bytes(jv_num(o, "lag_bytes"), lag, sizeof(lag));
    printf("floodgated %s, up %s, %s mode, %s\n", jv_str(o, "version"), up, jv_str(o, "mode"),
           jv_bool(o, "ready") ? "ready" : "catching up with the log");
    for (size_t k = 0; k < warn->n; k++) /* one line each, so nobody reads past one */
        printf("WARNING: %s\n", warn->kids[k].s ? warn->kids[k].s : "");
    printf("\nlog:\n  file: %s\n  read up to: %s\n", jv_str(o, "log_file"), off);
    if (jv_num(o, "lag_bytes") > 0) {
        ctlcli_age(jv_num(o, "lag_s"), t, sizeof(t));
        printf("  behind: %s (%s)\n", lag, t);
    } else {
        printf("  behind: nothing\n");
    }
    ctlcli_logtime(jv_num(o, "log_time"), t, sizeof(t));
    printf("  last record: %s (log time %s)\n  lines per second: %s\n", last, t,
           jv_str(o, "lines_per_s"));
    printf("  rotations: %s, truncations: %s, gaps: %s\n", jv_str(o, "rotations"),
           jv_str(o, "truncations"), jv_str(o, "gaps"));
    printf("\nsince start:\n  records: %s\n  parse errors: %s\n  outbound messages: %s\n"
           "  trips: %s\n",
           jv_str(o, "records"), jv_str(o, "parse_errors"), jv_str(o, "outbound"),
           jv_str(o, "trips"));
    printf("\nnow:\n  identities counted: %s\n  held: %s\n  alerts not yet delivered: %s\n",
           jv_str(o, "identities"), jv_str(o, "held"), jv_str(o, "outbox"));
    printf("\n");
    if (warn->n == 0)
        printf("warnings: none\n");
    ctlcli_status_alerts(jv_get(o, "alerts"));
}

static void
ctlcli_top(const struct jv *o)
{
    const struct jv *tables = jv_get(o, "tables");
    char w[32], lim[48], pct[16];

    for (size_t i = 0; i < tables->n; i++) {
        const struct jv *tb = &tables->kids[i], *rows = jv_get(tb, "rows");
        long long limit = jv_num(tb, "limit");
        int vw = 5;
        alertmsg_duration(jv_num(tb, "window_ms"), w, sizeof(w));
        if (limit > 0)
            (void)snprintf(lim, sizeof(lim), ", limit %lld", limit);
        else
            lim[0] = '\0';
        printf("%s%s %s per %s%s\n", i ? "\n" : "", jv_str(tb, "scope"), jv_str(tb, "metric"), w,
               lim);
        for (size_t k = 0; k < rows->n; k++) {
            int len = (int)strlen(jv_str(&rows->kids[k], "value"));
            vw = len > vw ? len : vw;
        }
        printf("  %3s  %*s  %6s  %s\n", "#", vw, "VALUE", limit > 0 ? "LIMIT%" : "", "IDENTITY");
        for (size_t k = 0; k < rows->n; k++) {
            const struct jv *row = &rows->kids[k];
            if (limit > 0)
                (void)snprintf(pct, sizeof(pct), "%lld%%", jv_num(row, "value") * 100 / limit);
            else
                pct[0] = '\0';
            printf("  %3zu  %*s  %6s  %s%s\n", k + 1, vw, jv_str(row, "value"), pct,
                   jv_str(row, "id"), jv_bool(row, "tripped") ? "  TRIPPED" : "");
        }
        if (rows->n == 0)
            printf("  (nobody counted now)\n");
    }
}

static const char *
ctlcli_what(const struct jv *e, char *buf, size_t size)
{
    const char *applied = jv_str(e, "applied");
    const char *failed = jv_bool(e, "failed") ? "FAILED " : "";

    if (strcmp(applied, "none") != 0)
        (void)snprintf(buf, size, "%s%s+%lld frozen", failed, applied, jv_num(e, "frozen"));
    else
        (void)snprintf(buf, size, "%s%s (%s)+%lld frozen", failed, jv_str(e, "what"),
                       jv_str(e, "state"), jv_num(e, "frozen"));
    return buf;
}

/* What was done about a trip, in a few words. */
static const char *
ctlcli_done(const struct jv *t, char *buf, size_t size)
{
    const char *res = jv_str(t, "result"), *applied = jv_str(t, "applied");
    long long frozen = jv_num(t, "frozen");

    if (strcmp(res, "done") == 0 && strcmp(applied, "none") != 0)
        (void)snprintf(buf, size, "%s, %lld frozen", strcmp(applied, "suspend") == 0 ? "suspended" : "held",
                       frozen);
    else if (strcmp(res, "done") == 0)
        (void)snprintf(buf, size, "%lld frozen", frozen);
    else if (strcmp(res, "would_act") == 0)
        (void)snprintf(buf, size, "would %s (monitor)", jv_str(t, "asked"));
    else if (strcmp(res, "failed") == 0)
        (void)snprintf(buf, size, "FAILED");
    else if (strcmp(res, "pending") == 0)
        (void)snprintf(buf, size, "running");
    else
        (void)snprintf(buf, size, "%s", res);
    return buf;
}

/* "value/limit" of a trip, or "-" for a manual order. */
static const char *
ctlcli_value(const struct jv *t, char *buf, size_t size)
{
    if (jv_bool(t, "manual"))
        (void)snprintf(buf, size, "-");
    else
        (void)snprintf(buf, size, "%s/%s", jv_str(t, "value"), jv_str(t, "limit"));
    return buf;
}

static void
ctlcli_tripped(const struct jv *o)
{
    static const char *const head[] = { "LOG TIME", "RULE", "SCOPE", "IDENTITY", "ACCOUNT",
                                        "VALUE/LIMIT", "WINDOW", "DONE", "REF" };
    const struct jv *list = jv_get(o, "trips");
    int w[N_ELEMS(head)];
    char cell[N_ELEMS(head)][160];

    if (list->n == 0) {
        printf("no trips since floodgated started\n");
        return;
    }
    for (size_t c = 0; c < N_ELEMS(head); c++)
        w[c] = (int)strlen(head[c]);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            for (size_t c = 0; c < N_ELEMS(head); c++)
                printf("%-*s%s", c + 1 < N_ELEMS(head) ? w[c] : 0, head[c],
                       c + 1 < N_ELEMS(head) ? "  " : "\n");
        for (size_t i = 0; i < list->n; i++) {
            const struct jv *t = &list->kids[i];
            if (jv_bool(t, "manual"))
                ctlcli_wall(jv_num(t, "detected_ms"), cell[0], sizeof(cell[0]));
            else
                (void)snprintf(cell[0], sizeof(cell[0]), "%s", jv_str(t, "at"));
            (void)snprintf(cell[1], sizeof(cell[1]), "%s", jv_str(t, "rule"));
            (void)snprintf(cell[2], sizeof(cell[2]), "%s", jv_str(t, "scope"));
            (void)snprintf(cell[3], sizeof(cell[3]), "%s", jv_str(t, "id"));
            (void)snprintf(cell[4], sizeof(cell[4]), "%s", *jv_str(t, "account") ? jv_str(t, "account") : "-");
            (void)ctlcli_value(t, cell[5], sizeof(cell[5]));
            if (jv_bool(t, "manual"))
                (void)snprintf(cell[6], sizeof(cell[6]), "-");
            else
                alertmsg_duration(jv_num(t, "window_ms"), cell[6], sizeof(cell[6]));
            (void)ctlcli_done(t, cell[7], sizeof(cell[7]));
            (void)snprintf(cell[8], sizeof(cell[8]), "%s", jv_str(t, "ref"));
            for (size_t c = 0; c < N_ELEMS(head); c++) {
                if (pass == 0)
                    w[c] = (int)strlen(cell[c]) > w[c] ? (int)strlen(cell[c]) : w[c];
                else
                    printf("%-*s%s", c + 1 < N_ELEMS(head) ? w[c] : 0, cell[c],
                           c + 1 < N_ELEMS(head) ? "  " : "\n");
            }
            if (pass == 1 && *jv_str(t, "detail") && !jv_bool(t, "manual"))
                printf("  %s: %s\n", strcmp(jv_str(t, "result"), "failed") == 0 ? "FAILED" : "note",
                       jv_str(t, "detail"));
        }
    }
    printf("(%lld trips kept of %lld since floodgated started; mode %s; log times as logged, "
           "manual orders by the wall clock)\n",
           jv_num(o, "kept"), jv_num(o, "total"), jv_str(o, "mode"));
}

static void
ctlcli_held(const struct jv *o)
{
    static const char *const head[] = { "SCOPE", "IDENTITY", "WHAT", "SINCE", "RULE", "REASON" };
    const struct jv *list = jv_get(o, "held");
    int w[N_ELEMS(head)];
    char since[32], what[96];

    if (list->n == 0) {
        printf("floodgate holds nothing\n");
        return;
    }
    for (size_t c = 0; c < N_ELEMS(head); c++)
        w[c] = (int)strlen(head[c]);
    for (size_t i = 0; i < list->n; i++) {
        const struct jv *e = &list->kids[i];
        const char *cols[] = {
            jv_str(e, "scope"),    jv_str(e, "id"),   ctlcli_what(e, what, sizeof(what)),
            "0000-00-00 00:00:00", jv_str(e, "rule"), ""
        };
        for (size_t c = 0; c < N_ELEMS(cols); c++)
            w[c] = (int)strlen(cols[c]) > w[c] ? (int)strlen(cols[c]) : w[c];
    }
    printf("%-*s  %-*s  %-*s  %-*s  %-*s  %s\n", w[0], head[0], w[1], head[1], w[2], head[2], w[3],
           head[3], w[4], head[4], head[5]);
    for (size_t i = 0; i < list->n; i++) {
        const struct jv *e = &list->kids[i];
        ctlcli_wall(jv_num(e, "since_ms"), since, sizeof(since));
        printf("%-*s  %-*s  %-*s  %-*s  %-*s  %s\n", w[0], jv_str(e, "scope"), w[1],
               jv_str(e, "id"), w[2], ctlcli_what(e, what, sizeof(what)), w[3], since, w[4],
               jv_str(e, "rule"), *jv_str(e, "reason") ? jv_str(e, "reason") : "-");
        if (jv_bool(e, "failed"))
            printf("  FAILED: %s\n", jv_str(e, "error"));
    }
    if (jv_num(o, "failed") > 0)
        printf("%lld FAILED: floodgate did not do all it meant to (see above and the journal)\n",
               jv_num(o, "failed"));
    if (jv_bool(o, "truncated"))
        printf("(%lld in all; the first %zu shown)\n", jv_num(o, "count"), list->n);
}

static void
ctlcli_show(const struct jv *o)
{
    const struct jv *act = jv_get(o, "action"), *msgs = jv_get(o, "messages");
    const struct jv *hist = jv_get(o, "history"), *tr = jv_get(o, "tripped");
    const struct jv *trips = jv_get(o, "trips"), *bl = jv_get(o, "blocklist");
    char t[32], w[32], v[64], d[96];

    printf("%s %s", jv_str(o, "scope"), jv_str(o, "id"));
    if (*jv_str(o, "account"))
        printf(" (account %s)", jv_str(o, "account"));
    if (*jv_str(o, "ref"))
        printf(", found by reference %s", jv_str(o, "ref"));
    printf("\n\ncounters (sliding windows, now):\n");
    if (!jv_bool(o, "counted")) {
        printf("  not counted now\n");
    } else {
        const struct jv *series = jv_get(o, "series"), *tot = jv_get(o, "totals");
        for (size_t i = 0; i < series->n; i++) {
            const struct jv *se = &series->kids[i];
            alertmsg_duration(jv_num(se, "window_ms"), w, sizeof(w));
            printf("  %s in the last %s: %s", jv_str(se, "metric"), w, jv_str(se, "value"));
            if (jv_num(se, "limit") > 0)
                printf(" (limit %s: %lld%%)", jv_str(se, "limit"),
                       jv_num(se, "value") * 100 / jv_num(se, "limit"));
            putchar('\n');
        }
        printf("  since first counted (not windowed; kept across restarts):");
        for (size_t i = 0; i < tot->n; i++)
            printf("%s %s %s", i ? "," : "", tot->keys[i], tot->kids[i].s ? tot->kids[i].s : "0");
        ctlcli_logtime(jv_num(o, "last_log_ms"), t, sizeof(t));
        printf("\n  last activity (log time): %s\n", t);
        printf("  tripped now:");
        for (size_t i = 0; i < tr->n; i++)
            printf("%s %s", i ? "," : "", tr->kids[i].s);
        printf("%s\n", tr->n ? "" : " none");
        if (jv_num(o, "cooldown_until_log_ms") > 0) {
            ctlcli_logtime(jv_num(o, "cooldown_until_log_ms"), t, sizeof(t));
            printf("  cooldown until: %s\n", t);
        }
    }
    printf("\ntrips (newest first):\n");
    for (size_t i = 0; i < trips->n; i++) {
        const struct jv *x = &trips->kids[i];
        if (jv_bool(x, "manual")) {
            ctlcli_wall(jv_num(x, "detected_ms"), t, sizeof(t));
            printf("  %s  manual %s, %s  %s\n", t, jv_str(x, "asked"),
                   ctlcli_done(x, d, sizeof(d)), jv_str(x, "ref"));
        } else {
            alertmsg_duration(jv_num(x, "window_ms"), w, sizeof(w));
            printf("  %s  %s: %s in %s, %s  %s\n", jv_str(x, "at"), jv_str(x, "rule"),
                   ctlcli_value(x, v, sizeof(v)), w, ctlcli_done(x, d, sizeof(d)),
                   jv_str(x, "ref"));
            printf("      tripping message %s%s%s%s\n", *jv_str(x, "msgid") ? jv_str(x, "msgid") : "-",
                   *jv_str(x, "subject") ? " \"" : "", jv_str(x, "subject"),
                   *jv_str(x, "subject") ? "\"" : "");
        }
        if (strcmp(jv_str(x, "result"), "failed") == 0)
            printf("      FAILED: %s\n", jv_str(x, "detail"));
        else if (*jv_str(x, "detail") && !jv_bool(x, "manual"))
            printf("      %s\n", jv_str(x, "detail"));
    }
    if (trips->n == 0)
        printf("  none since floodgated started\n");
    printf("\naction:\n");
    if (act->t != JV_OBJ) {
        printf("  none\n");
    } else {
        ctlcli_wall(jv_num(act, "since_ms"), t, sizeof(t));
        printf("  state: %s%s\n  wanted: %s\n  applied: %s%s\n  frozen: %lld\n  rule: %s\n"
               "  since: %s\n",
               jv_str(act, "state"), jv_bool(act, "failed") ? " (FAILED)" : "",
               jv_str(act, "what"), jv_str(act, "applied"),
               jv_bool(act, "preexisting") ? " (already in force by others)" : "",
               jv_num(act, "frozen"), jv_str(act, "rule"), t);
        if (*jv_str(act, "reason"))
            printf("  reason: %s\n", jv_str(act, "reason"));
        if (jv_bool(act, "failed"))
            printf("  FAILED: %s\n", jv_str(act, "error"));
    }
    if (bl->t == JV_OBJ) {
        const struct jv *lines = jv_get(bl, "lines");
        printf("\nblocklist %s:", jv_str(bl, "file"));
        if (*jv_str(bl, "error"))
            printf(" cannot be read: %s\n", jv_str(bl, "error"));
        else if (!jv_bool(bl, "exists"))
            printf(" does not exist\n");
        else if (lines->n == 0)
            printf(" nothing for this login\n");
        else
            putchar('\n');
        for (size_t i = 0; i < lines->n; i++)
            printf("  %s\n", lines->kids[i].s ? lines->kids[i].s : "");
    }
    printf("\nqueued messages: %lld%s\n", jv_num(o, "queued_count"),
           (long long)msgs->n < jv_num(o, "queued_count") ? " (the newest shown)" : "");
    for (size_t i = 0; i < msgs->n; i++) {
        const struct jv *m = &msgs->kids[i];
        if (!jv_bool(m, "in_spool"))
            printf("  %s  (not in the spool: delivered, removed or unreadable)\n", jv_str(m, "id"));
        else
            printf("  %s  %s  from <%s>  \"%s\"\n", jv_str(m, "id"),
                   jv_bool(m, "frozen") ? "frozen " : "queued ", jv_str(m, "sender"),
                   jv_str(m, "subject"));
    }
    printf("\nhistory (ledger):\n");
    for (size_t i = 0; i < hist->n; i++) {
        ctlcli_wall(jv_num(&hist->kids[i], "at_ms"), t, sizeof(t));
        printf("  %s  %s%s%s\n", t, jv_str(&hist->kids[i], "event"),
               *jv_str(&hist->kids[i], "rule") ? " by rule " : "", jv_str(&hist->kids[i], "rule"));
    }
    if (hist->n == 0)
        printf("  none\n");
}

/* One line per destination; 1 when any failed or did not answer. */
static int
ctlcli_test_alert(const struct jv *o)
{
    const struct jv *res = jv_get(o, "results");
    size_t failed = 0;

    for (size_t i = 0; i < res->n; i++) {
        const struct jv *e = &res->kids[i];
        bool ok = jv_bool(e, "ok");
        failed += !ok;
        printf("%s: %s (status %s%s%s)\n", jv_str(e, "dest"), ok ? "ok" : "FAILED",
               jv_str(e, "status"), *jv_str(e, "detail") ? ": " : "", jv_str(e, "detail"));
    }
    if (jv_bool(o, "ok"))
        return 0;
    fprintf(stderr, "floodgatectl: test-alert: %zu of %lld destinations failed, %lld answered\n",
            failed + (size_t)(jv_num(o, "expected") - jv_num(o, "answered")), jv_num(o, "expected"),
            jv_num(o, "answered"));
    return 1;
}

/* --- arguments ---------------------------------------------------------------------- */

#define CTLCLI_ARGS_MAX 4 /* operands kept; every command takes at most one */

struct ctlcli {
    const char *sock;
    bool json;
    const char *scope;
    const char *window;
    const char *n;
    const char *reason;
    const char *args[CTLCLI_ARGS_MAX]; /* the command's operands, in order */
    int nargs;                         /* how many were given (may exceed what is kept) */
};

static int FG_PRINTF(1, 2) ctlcli_usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("floodgatectl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (floodgatectl --help)\n", stderr);
    return 2;
}

static const char *
ctlcli_guess_scope(const char *id)
{
    const char *colon = strchr(id, ':');

    if (colon && colon[1] == '/')
        return "script";
    if (strchr(id, '@'))
        return "mailbox";
    return "account";
}

/* "scope identity" of @arg into @buf; 0 or 2 (usage). */
static int
ctlcli_identity(const struct ctlcli *o, const char *arg, char *buf, size_t size)
{
    const char *scope = o->scope, *id = arg, *colon = strchr(arg, ':');
    enum usertable_scope sc;

    if (!scope && colon && colon[1] != '/') {
        char pre[16];
        size_t len = (size_t)(colon - arg);
        if (len < sizeof(pre)) {
            memcpy(pre, arg, len);
            pre[len] = '\0';
            if (usertable_scope_parse(pre, &sc) == 0) {
                scope = usertable_scope_name(sc);
                id = colon + 1;
            }
        }
    }
    if (!scope)
        scope = ctlcli_guess_scope(id);
    if (usertable_scope_parse(scope, &sc) < 0)
        return ctlcli_usage_error("--scope: '%s' is not mailbox, account or script", scope);
    if (!*id || strlen(id) >= USERTABLE_KEY_MAX)
        return ctlcli_usage_error("identity '%s' is empty or too long", id);
    for (const char *c = id; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return ctlcli_usage_error("identity%s holds control characters", "");
    if ((size_t)snprintf(buf, size, "%s %s", scope, id) >= size)
        return ctlcli_usage_error("identity%s too long", "");
    return 0;
}

/*
 * Options of one command (argv[0] is its name), before and after its operands, which go
 * to o->args in order; "--" ends the options. getopt_long() is asked for no permutation
 * ('+'), which it would skip anyway with POSIXLY_CORRECT in the environment: each operand
 * it stops at is taken here and the scan goes on after it, so the order does not depend
 * on the environment or on the C library.
 */
static int
ctlcli_options(int argc, char **argv, const char *allowed, struct ctlcli *o)
{
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' },
        { "json", no_argument, NULL, 'j' },
        { "scope", required_argument, NULL, 'S' },
        { "window", required_argument, NULL, 'w' },
        { "reason", required_argument, NULL, 'r' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    o->nargs = 0;
    optind = 0; /* 0: re-initialize (main() scanned another argv) */
    opterr = 0; /* our own one-line messages */
    for (;;) {
        int at = optind ? optind : 1;

        c = getopt_long(argc, argv, "+n:", opts, NULL);
        if (c == -1) {
            bool dashdash = optind > at && strcmp(argv[optind - 1], "--") == 0;
            while (optind < argc) {
                if (o->nargs < CTLCLI_ARGS_MAX)
                    o->args[o->nargs] = argv[optind];
                o->nargs++;
                optind++;
                if (!dashdash)
                    break; /* one operand; options may follow it */
            }
            if (optind >= argc)
                break;
            continue;
        }
        if (c == 'h') {
            fputs(ctlcli_help, stdout);
            exit(0);
        }
        /* argv[at], not argv[optind - 1]: that is the value of "--reason x" */
        if (c == '?' || c == ':')
            return ctlcli_usage_error("%s: unknown option or missing value: '%s'", argv[0],
                                      argv[at]);
        if (c != 's' && c != 'j' && !strchr(allowed, c))
            return ctlcli_usage_error("%s: option '%s' not valid here", argv[0], argv[at]);
        switch (c) {
        case 's':
            o->sock = optarg;
            break;
        case 'j':
            o->json = true;
            break;
        case 'S':
            o->scope = optarg;
            break;
        case 'w':
            o->window = optarg;
            break;
        case 'n':
            o->n = optarg;
            break;
        case 'r':
            o->reason = optarg;
            break;
        }
    }
    return 0;
}

/* Build the request line of argv (the command and its arguments); 0 or 2. */
static int
ctlcli_request(int argc, char **argv, struct ctlcli *o, char *req, size_t size)
{
    const char *cmd = argv[0];
    char idbuf[USERTABLE_KEY_MAX + 16];
    int r;

    if (strcmp(cmd, "status") == 0 || strcmp(cmd, "held") == 0 || strcmp(cmd, "reload") == 0 ||
        strcmp(cmd, "test-alert") == 0 || strcmp(cmd, "tripped") == 0) {
        if ((r = ctlcli_options(argc, argv, "", o)) != 0)
            return r;
        if (o->nargs != 0)
            return ctlcli_usage_error("%s takes no arguments", cmd);
        (void)snprintf(req, size, "%s", cmd);
        return 0;
    }
    if (strcmp(cmd, "top") == 0) {
        enum usertable_scope sc;
        int64_t ms;
        uint64_t n;
        size_t len;
        if ((r = ctlcli_options(argc, argv, "Swn", o)) != 0)
            return r;
        if (o->nargs != 0)
            return ctlcli_usage_error("%s takes no arguments", cmd);
        if (o->scope && usertable_scope_parse(o->scope, &sc) < 0)
            return ctlcli_usage_error("--scope: '%s' is not mailbox, account or script", o->scope);
        if (o->window && util_parse_duration_ms(o->window, &ms) < 0)
            return ctlcli_usage_error("--window: '%s' is not a duration (60s, 10m, 1h)", o->window);
        if (o->n && (util_parse_u64(o->n, strlen(o->n), &n) < 0 || n < 1 || n > CTL_TOP_MAX))
            return ctlcli_usage_error("-n: '%s' is not a number from 1 to 100", o->n);
        len = (size_t)snprintf(req, size, "top");
        if (o->scope)
            len += (size_t)snprintf(req + len, size - len, " scope=%s", o->scope);
        if (o->window)
            len += (size_t)snprintf(req + len, size - len, " window=%s", o->window);
        if (o->n)
            (void)snprintf(req + len, size - len, " n=%s", o->n);
        return 0;
    }
    if (strcmp(cmd, "show") == 0 || strcmp(cmd, "release") == 0 || strcmp(cmd, "hold") == 0 ||
        strcmp(cmd, "suspend") == 0) {
        bool hold = strcmp(cmd, "hold") == 0 || strcmp(cmd, "suspend") == 0;
        if ((r = ctlcli_options(argc, argv, hold ? "Sr" : "S", o)) != 0)
            return r;
        if (o->nargs != 1)
            return ctlcli_usage_error("%s needs one IDENTITY", cmd);
        if ((r = ctlcli_identity(o, o->args[0], idbuf, sizeof(idbuf))) != 0)
            return r;
        if (o->reason) {
            size_t len = strlen(o->reason);
            if (len == 0 || len > CTL_REASON_MAX)
                return ctlcli_usage_error("--reason: %s", "1 to 200 characters");
            for (const char *c = o->reason; *c; c++)
                if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
                    return ctlcli_usage_error("--reason: %s", "printable ASCII only");
        }
        if ((size_t)snprintf(req, size, "%s %s%s%s", cmd, idbuf, o->reason ? "\t" : "",
                             o->reason ? o->reason : "") >= size)
            return ctlcli_usage_error("%s: request too long", cmd);
        return 0;
    }
    if (strcmp(cmd, "alert-enable") == 0) {
        if ((r = ctlcli_options(argc, argv, "", o)) != 0)
            return r;
        if (o->nargs != 1)
            return ctlcli_usage_error("%s needs one destination NAME", cmd);
        if (!*o->args[0] || strlen(o->args[0]) >= CTL_NAME_MAX ||
            strspn(o->args[0],
                   "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") !=
                strlen(o->args[0]))
            return ctlcli_usage_error("%s: a destination name is letters, digits, '-' and '_'",
                                      cmd);
        if ((size_t)snprintf(req, size, "%s %s", cmd, o->args[0]) >= size)
            return ctlcli_usage_error("%s: name too long", cmd);
        return 0;
    }
    return ctlcli_usage_error("unknown command '%s'", cmd);
}

/* Human output of a successful answer; returns the exit status. */
static int
ctlcli_print(const char *cmd, const struct jv *o)
{
    if (strcmp(cmd, "status") == 0) {
        ctlcli_status(o);
    } else if (strcmp(cmd, "top") == 0) {
        ctlcli_top(o);
    } else if (strcmp(cmd, "show") == 0) {
        ctlcli_show(o);
    } else if (strcmp(cmd, "held") == 0) {
        ctlcli_held(o);
    } else if (strcmp(cmd, "tripped") == 0) {
        ctlcli_tripped(o);
    } else if (strcmp(cmd, "release") == 0) {
        if (jv_bool(o, "actions"))
            printf("released %s %s: %lld message%s thawed%s\n", jv_str(o, "scope"),
                   jv_str(o, "id"), jv_num(o, "thawed"), jv_num(o, "thawed") == 1 ? "" : "s",
                   strcmp(jv_str(o, "undone"), "suspend") == 0 ? ", suspension undone"
                   : strcmp(jv_str(o, "undone"), "hold") == 0  ? ", hold undone"
                                                               : "");
        else
            printf("released %s %s (trips cleared; nothing was held)\n", jv_str(o, "scope"),
                   jv_str(o, "id"));
    } else if (strcmp(cmd, "hold") == 0 || strcmp(cmd, "suspend") == 0) {
        const char *applied = jv_str(o, "applied");
        printf("%s %s %s: %lld of %lld queued message%s frozen, %s%s%s\n",
               strcmp(cmd, "hold") == 0 ? "held" : "suspended", jv_str(o, "scope"),
               jv_str(o, "id"), jv_num(o, "frozen"), jv_num(o, "queued"),
               jv_num(o, "queued") == 1 ? "" : "s",
               strcmp(applied, "suspend") == 0 ? "outgoing mail suspended"
               : strcmp(applied, "hold") == 0  ? "outgoing mail held"
                                               : "no hold applied",
               jv_bool(o, "preexisting") ? " (already in force by others)" : "",
               jv_bool(o, "monitor") ? " (monitor mode: an operator's order acts)" : "");
        if (*jv_str(o, "ref"))
            printf("reference: %s\n", jv_str(o, "ref"));
    } else if (strcmp(cmd, "reload") == 0) {
        printf("%s\n", jv_str(o, "message"));
    } else if (strcmp(cmd, "test-alert") == 0) {
        return ctlcli_test_alert(o);
    } else if (strcmp(cmd, "alert-enable") == 0) {
        printf("enabled %s\n", jv_str(o, "enabled"));
    }
    return 0;
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    struct ctlcli o = { .sock = CTLCLI_DEFAULT_SOCKET };
    char req[CTL_REQUEST_MAX];
    struct strbuf out;
    struct jv v = { .t = JV_NULL };
    struct jp j;
    const char *cmd;
    int c, r;

    opterr = 0; /* our own one-line messages */
    while ((c = getopt_long(argc, argv, "+hV", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            o.sock = optarg;
            break;
        case 'j':
            o.json = true;
            break;
        case 'h':
            fputs(ctlcli_help, stdout);
            return 0;
        case 'V':
            printf("floodgatectl %s\n", FLOODGATE_VERSION);
            return 0;
        default:
            return ctlcli_usage_error("unknown option or missing value: '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return ctlcli_usage_error("%s", "no command given");
    cmd = argv[optind];
    r = ctlcli_request(argc - optind, argv + optind, &o, req, sizeof(req));
    if (r != 0)
        return r;
    strbuf_init(&out, CTL_RESPONSE_MAX);
    r = ctl_call(o.sock, req, &out);
    if (r < 0) {
        fprintf(stderr, "floodgatectl: %s: %s%s\n", o.sock, strerror(-r),
                (r == -ENOENT || r == -ECONNREFUSED) ? " (is floodgated running?)"
                : r == -EACCES                       ? " (needs root or the control group)"
                                                     : "");
        strbuf_done(&out);
        return 1;
    }
    j = (struct jp){ strbuf_cstr(&out), strbuf_cstr(&out) + out.len };
    if (out.len == 0 || jp_value(&j, &v, 0) < 0 || v.t != JV_OBJ) {
        fprintf(stderr, "floodgatectl: %s: no valid answer from the daemon\n", o.sock);
        jv_free(&v);
        strbuf_done(&out);
        return 1;
    }
    if (jv_for_terminal(&v) < 0) {
        fprintf(stderr, "floodgatectl: out of memory\n");
        r = 1;
    } else if (jv_get(&v, "error")->t == JV_STR) {
        fprintf(stderr, "floodgatectl: %s\n", jv_str(&v, "error"));
        r = 1;
    } else if (o.json) {
        fputs(strbuf_cstr(&out), stdout);
        r = strcmp(cmd, "test-alert") == 0 && !jv_bool(&v, "ok") ? 1 : 0;
    } else {
        r = ctlcli_print(cmd, &v);
    }
    jv_free(&v);
    strbuf_done(&out);
    return r;
}
