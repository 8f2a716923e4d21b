/*
 * alertmsg.c - ids and message bodies for alert delivery (alerting.md §1-§4, §5.6).
 *
 * Ids are derived from values that survive a crash and a replay (host, rule, scope,
 * identity, the trip's log time), so a re-enqueue after a restart carries the same id and
 * the outbox and receivers deduplicate it. They are "fg_" + lowercase base32 of 16 bytes
 * of a SHA-256, never containing '.', and every id built here fits OUTBOX_NAME_MAX.
 *
 * Bodies are written through a small writer with a sticky error, so a builder reads as the
 * JSON it produces; on any error the output is cut back to where the builder started.
 * Every log-derived value is capped in bytes before escaping (ALERTMSG_TEXT_CAP,
 * ALERTMSG_ITEM_CAP), which keeps Slack fields under 2,000 characters, sections under
 * 3,000 and the fallback text under 4,000 even when every byte escapes to "&amp;".
 */
#include "alertmsg.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "config.h"

#define ALERTMSG_HOST_CAP    100               /* our host name: the Slack header stays under 150 */
#define ALERTMSG_HOOK_CAP    USERTABLE_KEY_MAX /* webhook data: a machine reads the whole key */
#define ALERTMSG_RULES_MAX   20                /* digest lines per rule and scope in Slack */
#define ALERTMSG_PER_SECTION 4 /* digest identities per Slack section (3,000 characters) */
#define ALERTMSG_UNCAPPED    SIZE_MAX

/* --- ids ------------------------------------------------------------------------------ */

static void
alertmsg_hash_id(const char *const *parts, size_t n, char *buf)
{
    static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    size_t o = 0;
    unsigned acc = 0, bits = 0;

    for (size_t i = 0; i < n && ok; i++)
        ok = EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]) + 1); /* NUL-separated */
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen >= 16;
    EVP_MD_CTX_free(ctx);
    /* SHA-256 cannot fail short of memory; the id stays well-formed regardless */
    if (!ok)
        memset(md, 0, 16);
    memcpy(buf, "fg_", 3);
    o = 3;
    for (size_t i = 0; i < 16; i++) {
        acc = (acc << 8) | md[i];
        bits += 8;
        while (bits >= 5) {
            buf[o++] = b32[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0)
        buf[o++] = b32[(acc << (5 - bits)) & 31];
    buf[o] = '\0';
}

void
alertmsg_incident_id(const char *host, const char *rule, enum usertable_scope scope,
                     const char *identity, int64_t at_ms, char *buf)
{
    char at[24];
    const char *parts[5];

    (void)snprintf(at, sizeof(at), "%" PRId64, at_ms);
    parts[0] = host;
    parts[1] = rule;
    parts[2] = usertable_scope_name(scope);
    parts[3] = identity;
    parts[4] = at;
    alertmsg_hash_id(parts, N_ELEMS(parts), buf);
}

int
alertmsg_event_id(const char *incident, const char *kind, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s_%s", incident, kind);

    if (n < 0 || (size_t)n >= size || (size_t)n >= ALERTMSG_ID_MAX)
        return -E2BIG;
    for (const char *p = buf; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return -EINVAL;
    }
    return 0;
}

static int64_t
alertmsg_seconds(int64_t ms)
{
    return ms >= 0 ? ms / 1000 : 0;
}

void
alertmsg_digest_id(const char *host, int64_t start_ms, char *buf)
{
    const char *parts[] = { host, "digest" };
    char id[ALERTMSG_ID_LEN + 1];

    alertmsg_hash_id(parts, N_ELEMS(parts), id);
    (void)snprintf(buf, ALERTMSG_ID_MAX, "%s_digest_%" PRId64, id, alertmsg_seconds(start_ms));
}

void
alertmsg_health_id(const char *host, const char *kind, int64_t at_ms, char *buf)
{
    char at[24], id[ALERTMSG_ID_LEN + 1];
    const char *parts[] = { host, "health", kind, at };

    (void)snprintf(at, sizeof(at), "%" PRId64, at_ms);
    alertmsg_hash_id(parts, N_ELEMS(parts), id);
    (void)snprintf(buf, ALERTMSG_ID_MAX, "%s_health_%" PRId64, id, alertmsg_seconds(at_ms));
}

void
alertmsg_test_id(const char *host, int64_t at_ms, char *buf)
{
    const char *parts[] = { host, "test" };
    char id[ALERTMSG_ID_LEN + 1];

    alertmsg_hash_id(parts, N_ELEMS(parts), id);
    (void)snprintf(buf, ALERTMSG_ID_MAX, "%s_test_%" PRId64, id, alertmsg_seconds(at_ms));
}

void
alertmsg_rfc3339(int64_t ms, char *buf, size_t size)
{
    char t[32];
    int64_t frac = ms % 1000;

    if (frac < 0)
        frac += 1000;
    util_format_time(ms, t, sizeof(t));
    t[10] = 'T';
    (void)snprintf(buf, size, "%s.%03dZ", t, (int)frac);
}

void
alertmsg_duration(int64_t ms, char *buf, size_t size)
{
    if (ms > 0 && ms % 86400000 == 0)
        (void)snprintf(buf, size, "%" PRId64 "d", ms / 86400000);
    else if (ms > 0 && ms % 3600000 == 0)
        (void)snprintf(buf, size, "%" PRId64 "h", ms / 3600000);
    else if (ms > 0 && ms % 60000 == 0)
        (void)snprintf(buf, size, "%" PRId64 "m", ms / 60000);
    else if (ms % 1000 == 0)
        (void)snprintf(buf, size, "%" PRId64 "s", ms / 1000);
    else
        (void)snprintf(buf, size, "%" PRId64 "ms", ms);
}

const char *
alertmsg_kind_name(enum alertmsg_kind k)
{
    static const char *const names[] = {
        [ALERTMSG_TRIPPED] = "tripped",
        [ALERTMSG_ACTED] = "acted",
        [ALERTMSG_RELEASED] = "released",
        [ALERTMSG_FOLLOWUP] = "followup",
    };

    return (unsigned)k < N_ELEMS(names) ? names[k] : "?";
}

bool
alertmsg_actions_failed(const struct alertmsg_actions *a)
{
    return a && !a->monitor && (a->failed > 0 || a->backend_err != 0 || a->ledger_err != 0);
}

/* --- the writer ------------------------------------------------------------------------ */

struct alertmsg_w {
    struct strbuf *b;
    int r;
};

static void
alertmsg_raw(struct alertmsg_w *w, const char *s)
{
    if (w->r == 0)
        w->r = strbuf_appends(w->b, s);
}

static void FG_PRINTF(2, 3) alertmsg_fmt(struct alertmsg_w *w, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    int n;

    if (w->r != 0)
        return;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        w->r = -E2BIG;
        return;
    }
    w->r = strbuf_append(w->b, tmp, (size_t)n);
}

/* Text inside a JSON string (no quotes), escaped for @mode, at most @cap input bytes. */
static void
alertmsg_text(struct alertmsg_w *w, const char *s, size_t cap, enum alert_text_mode mode)
{
    if (w->r == 0 && s)
        w->r = alert_append_text(w->b, s, strlen(s), cap, mode);
}

/* A quoted JSON string; NULL is written as null. */
static void
alertmsg_str(struct alertmsg_w *w, const char *s, size_t cap)
{
    if (!s) {
        alertmsg_raw(w, "null");
        return;
    }
    alertmsg_raw(w, "\"");
    alertmsg_text(w, s, cap, ALERT_TEXT_JSON);
    alertmsg_raw(w, "\"");
}

/* "key":"value" with a leading comma unless @first. */
static void
alertmsg_kv(struct alertmsg_w *w, bool first, const char *key, const char *s, size_t cap)
{
    alertmsg_fmt(w, "%s\"%s\":", first ? "" : ",", key);
    alertmsg_str(w, s, cap);
}

static void
alertmsg_kv_time(struct alertmsg_w *w, const char *key, int64_t ms)
{
    char t[40];

    alertmsg_rfc3339(ms, t, sizeof(t));
    alertmsg_fmt(w, ",\"%s\":\"%s\"", key, t);
}

static int
alertmsg_end(struct alertmsg_w *w, size_t start)
{
    if (w->r != 0) {
        w->b->len = start;
        if (w->b->p)
            w->b->p[start] = '\0';
    }
    return w->r;
}

static bool
alertmsg_has(const char *s)
{
    return s && s[0];
}

/* Every time shown is the detection's: the log time is zoneless (server local). */
static int64_t
alertmsg_detected(const struct alertmsg_incident *inc)
{
    return inc->detected_ms ? inc->detected_ms : inc->at_ms;
}

/* --- shared phrases ------------------------------------------------------------------- */

/* "412 recipients / 10m (limit 300)"; inside parentheses "412 recipients in 10m, limit 300" */
static void
alertmsg_value(struct alertmsg_w *w, const struct alertmsg_incident *inc, const char *sep)
{
    bool inner = strcmp(sep, " in ") == 0;

    char win[24];

    alertmsg_duration(inc->window_ms, win, sizeof(win));
    alertmsg_fmt(w, "%" PRIu64 " ", inc->value);
    alertmsg_text(w, inc->metric, ALERTMSG_ITEM_CAP, ALERT_TEXT_SLACK);
    alertmsg_fmt(w, inner ? "%s%s, limit %" PRIu64 : "%s%s (limit %" PRIu64 ")", sep, win,
                 inc->limit);
}

/*
 * What the actions did, for people: "froze 388 messages, held outgoing mail (cpanel)". In
 * a Slack @mode the account is inline code.
 */
static void
alertmsg_actions_text(struct alertmsg_w *w, const struct alertmsg_actions *a,
                      enum alert_text_mode mode)
{
    bool any = false;
    const char *what;

    if (a->unconfirmed) {
        /* the log named the messages, the spool did not confirm one: log text alone is
         * evidence, not proof (a forged line must not hold an innocent customer) */
        if (a->monitor)
            alertmsg_fmt(w,
                         "monitor mode: nothing done; a hold would wait for an operator: none "
                         "of the %zu messages named in the log is confirmed in Exim's spool as "
                         "this sender's",
                         a->candidates);
        else
            alertmsg_fmt(w,
                         "not held: none of the %zu messages named in the log is confirmed in "
                         "Exim's spool as this sender's; nothing done, an operator decides "
                         "(floodgatectl hold or release)",
                         a->candidates);
        return;
    }
    if (a->monitor) {
        alertmsg_raw(w, "monitor mode: nothing done");
        return;
    }
    if (a->ledger_err != 0 && a->frozen == 0 &&
        !(a->backend_done & (CONFIG_ACTION_HOLD | CONFIG_ACTION_SUSPEND))) {
        alertmsg_fmt(w, "could not act: ledger write failed (%s); nothing was done",
                     strerror(-a->ledger_err));
        return;
    }
    if (a->frozen > 0 || a->confirmed > 0) {
        alertmsg_fmt(w, "froze %zu of %zu messages", a->frozen, a->confirmed);
        any = true;
    }
    if (a->failed > 0) {
        alertmsg_fmt(w, "%s%zu could not be frozen", any ? ", " : "", a->failed);
        any = true;
    }
    what = (a->backend_done & CONFIG_ACTION_SUSPEND) ? "suspended" : "held";
    if (a->backend_done & (CONFIG_ACTION_HOLD | CONFIG_ACTION_SUSPEND)) {
        alertmsg_fmt(w, "%s%s outgoing mail", any ? ", " : "", what);
        if (alertmsg_has(a->backend)) {
            alertmsg_raw(w, " (");
            alertmsg_text(w, a->backend, ALERTMSG_ITEM_CAP, mode);
            alertmsg_raw(w, ")");
        }
        any = true;
    }
    if (a->preexisting) {
        alertmsg_fmt(w, "%salready held by someone else", any ? ", " : "");
        any = true;
    }
    if (a->ledger_err != 0) {
        alertmsg_fmt(w, "%sstopped: ledger write failed (%s)", any ? ", " : "",
                     strerror(-a->ledger_err));
        any = true;
    } else if (a->backend_err != 0) {
        alertmsg_fmt(w, "%shold or suspension FAILED", any ? ", " : "");
        if (alertmsg_has(a->backend)) {
            alertmsg_raw(w, " through ");
            alertmsg_text(w, a->backend, ALERTMSG_ITEM_CAP, mode);
        }
        alertmsg_fmt(w, ": %s", strerror(a->backend_err < 0 ? -a->backend_err : a->backend_err));
        any = true;
    }
    if (!any)
        alertmsg_raw(w, "nothing to do");
}

/* --- Slack ----------------------------------------------------------------------------- */

static void
alertmsg_slack_field(struct alertmsg_w *w, bool first, const char *label)
{
    alertmsg_fmt(w, "%s{\"type\":\"mrkdwn\",\"text\":\"*%s*\\n", first ? "" : ",", label);
}

static void
alertmsg_slack_code(struct alertmsg_w *w, const char *s, size_t cap)
{
    alertmsg_raw(w, "`");
    alertmsg_text(w, s, cap, ALERT_TEXT_SLACK_CODE);
    alertmsg_raw(w, "`");
}

static void
alertmsg_slack_list(struct alertmsg_w *w, const char *label, const char *const *v, size_t n)
{
    if (n == 0)
        return;
    if (n > ALERTMSG_SAMPLES_MAX)
        n = ALERTMSG_SAMPLES_MAX;
    alertmsg_fmt(w, ",{\"type\":\"section\",\"text\":{\"type\":\"mrkdwn\",\"text\":\"*%s*", label);
    for (size_t i = 0; i < n; i++) {
        alertmsg_raw(w, "\\n• ");
        alertmsg_slack_code(w, v[i] ? v[i] : "", ALERTMSG_ITEM_CAP);
    }
    alertmsg_raw(w, "\"}}");
}

/* The follow-up without an outcome: "the actions have not reported after 30s; still running" */
static void
alertmsg_followup_text(struct alertmsg_w *w, const struct alertmsg_incident *inc)
{
    char win[24];

    alertmsg_duration(inc->waited_ms, win, sizeof(win));
    alertmsg_fmt(w, "%s have not reported after %s; still running",
                 inc->monitor ? "monitor mode: the would-be actions" : "the actions", win);
}

static void
alertmsg_slack_fallback(struct alertmsg_w *w, const struct alertmsg_incident *inc,
                        enum alertmsg_kind kind)
{
    alertmsg_raw(w, "{\"text\":\"floodgate ");
    alertmsg_text(w, inc->host, ALERTMSG_HOST_CAP, ALERT_TEXT_SLACK);
    alertmsg_raw(w, ": ");
    if (kind == ALERTMSG_RELEASED) {
        alertmsg_text(w, inc->identity, ALERTMSG_TEXT_CAP, ALERT_TEXT_SLACK);
        alertmsg_raw(w, " released (");
        alertmsg_text(w, inc->rule, ALERTMSG_ITEM_CAP, ALERT_TEXT_SLACK);
        alertmsg_raw(w, ")");
        if (inc->late_outcome && inc->acted) {
            alertmsg_raw(w, "; the actions had failed: ");
            alertmsg_actions_text(w, inc->acted, ALERT_TEXT_SLACK);
        }
        alertmsg_raw(w, "\"");
        return;
    }
    alertmsg_text(w, inc->rule, ALERTMSG_ITEM_CAP, ALERT_TEXT_SLACK);
    alertmsg_raw(w, " tripped for ");
    alertmsg_text(w, inc->identity, ALERTMSG_TEXT_CAP, ALERT_TEXT_SLACK);
    alertmsg_raw(w, " (");
    alertmsg_value(w, inc, " in ");
    alertmsg_raw(w, "; ");
    if (kind == ALERTMSG_ACTED && inc->acted)
        alertmsg_actions_text(w, inc->acted, ALERT_TEXT_SLACK);
    else if (kind == ALERTMSG_FOLLOWUP)
        alertmsg_followup_text(w, inc);
    else if (inc->monitor)
        alertmsg_raw(w, "monitor mode, nothing done");
    else
        alertmsg_raw(w, "acting now");
    alertmsg_raw(w, ")\"");
}

static const char *
alertmsg_slack_header(const struct alertmsg_incident *inc, enum alertmsg_kind kind)
{
    if (kind == ALERTMSG_RELEASED)
        return "Sending released on ";
    if (inc->monitor || (inc->acted && inc->acted->monitor))
        return "Outbound spam detected (monitor mode) on ";
    if (kind == ALERTMSG_ACTED && inc->acted && inc->acted->unconfirmed)
        return "Outbound spam suspected, not confirmed (nothing held) on ";
    if (kind == ALERTMSG_ACTED && alertmsg_actions_failed(inc->acted))
        return "Outbound spam: actions failed on ";
    if (kind == ALERTMSG_ACTED)
        return "Outbound spam stopped on ";
    if (kind == ALERTMSG_FOLLOWUP)
        return "Outbound spam: actions still running on ";
    return "Outbound spam detected on ";
}

/* "Detected": the wall-clock time, then the log's own (zoneless, server local) time. */
static void
alertmsg_slack_detected(struct alertmsg_w *w, const struct alertmsg_incident *inc)
{
    char t[40];

    alertmsg_rfc3339(alertmsg_detected(inc), t, sizeof(t));
    alertmsg_slack_field(w, false, "Detected");
    alertmsg_raw(w, t);
    if (alertmsg_has(inc->log_time)) {
        alertmsg_raw(w, "\\nlog time (server local) ");
        alertmsg_text(w, inc->log_time, ALERTMSG_ITEM_CAP, ALERT_TEXT_SLACK);
    }
    alertmsg_raw(w, "\"}");
}

static void
alertmsg_slack_fields(struct alertmsg_w *w, const struct alertmsg_incident *inc,
                      enum alertmsg_kind kind)
{
    alertmsg_raw(w, ",{\"type\":\"section\",\"fields\":[");
    alertmsg_slack_field(w, true, "Rule");
    alertmsg_text(w, inc->rule, ALERTMSG_ITEM_CAP, ALERT_TEXT_SLACK);
    alertmsg_raw(w, " (");
    alertmsg_raw(w, usertable_scope_name(inc->scope));
    alertmsg_raw(w, ")\"}");
    alertmsg_slack_field(w, false, "Identity");
    alertmsg_slack_code(w, inc->identity, ALERTMSG_TEXT_CAP);
    alertmsg_raw(w, "\"}");
    if (alertmsg_has(inc->account)) {
        alertmsg_slack_field(w, false, "Account");
        alertmsg_slack_code(w, inc->account, ALERTMSG_TEXT_CAP);
        alertmsg_raw(w, "\"}");
    }
    if (kind == ALERTMSG_RELEASED) {
        char t[40];

        alertmsg_rfc3339(inc->released_ms, t, sizeof(t));
        alertmsg_slack_field(w, false, "Released");
        alertmsg_raw(w, t);
        alertmsg_raw(w, "\"}");
        if (inc->late_outcome && inc->acted) {
            alertmsg_slack_field(w, false, "Actions had failed");
            alertmsg_actions_text(w, inc->acted, ALERT_TEXT_SLACK);
            alertmsg_raw(w, "\"}");
        }
        alertmsg_raw(w, "]}");
        return;
    }
    alertmsg_slack_field(w, false, "Value");
    alertmsg_value(w, inc, " / ");
    alertmsg_raw(w, "\"}");
    if (inc->ncounts > 0) {
        size_t n = inc->ncounts < ALERTMSG_COUNTS_MAX ? inc->ncounts : ALERTMSG_COUNTS_MAX;

        alertmsg_slack_field(w, false, "Other windows");
        for (size_t i = 0; i < n; i++) {
            char win[24];

            alertmsg_duration(inc->counts[i].window_ms, win, sizeof(win));
            alertmsg_fmt(w, "%s%" PRIu64 " ", i ? ", " : "", inc->counts[i].value);
            alertmsg_text(w, inc->counts[i].metric, 32, ALERT_TEXT_SLACK);
            alertmsg_fmt(w, " / %s", win);
        }
        alertmsg_raw(w, "\"}");
    }
    alertmsg_slack_detected(w, inc);
    alertmsg_slack_field(w, false, "Actions");
    if (kind == ALERTMSG_ACTED && inc->acted)
        alertmsg_actions_text(w, inc->acted, ALERT_TEXT_SLACK);
    else if (kind == ALERTMSG_FOLLOWUP)
        alertmsg_followup_text(w, inc);
    else if (inc->monitor)
        alertmsg_raw(w, "none (monitor mode)");
    else
        alertmsg_raw(w, "in progress");
    alertmsg_raw(w, "\"}]}");
}

static void
alertmsg_slack_incident(struct alertmsg_w *w, const struct alertmsg_incident *inc,
                        enum alertmsg_kind kind)
{
    alertmsg_slack_fallback(w, inc, kind);
    alertmsg_raw(w,
                 ",\"blocks\":[{\"type\":\"header\",\"text\":{\"type\":\"plain_text\",\"text\":\"");
    alertmsg_raw(w, alertmsg_slack_header(inc, kind));
    alertmsg_text(w, inc->host, ALERTMSG_HOST_CAP, ALERT_TEXT_JSON);
    alertmsg_raw(w, "\"}}");
    alertmsg_slack_fields(w, inc, kind);
    if (kind != ALERTMSG_RELEASED) {
        alertmsg_slack_list(w, "Sample subjects", inc->subjects, inc->nsubjects);
        alertmsg_slack_list(w, "Client IPs", inc->client_ips, inc->nclient_ips);
        alertmsg_slack_list(w, "Top recipient domains", inc->domains, inc->ndomains);
    }
    alertmsg_raw(w,
                 ",{\"type\":\"context\",\"elements\":[{\"type\":\"mrkdwn\",\"text\":\"incident ");
    alertmsg_text(w, inc->incident_id, ALERTMSG_ID_MAX, ALERT_TEXT_SLACK);
    alertmsg_raw(w, " · host ");
    alertmsg_text(w, inc->host, ALERTMSG_HOST_CAP, ALERT_TEXT_SLACK);
    if (kind != ALERTMSG_RELEASED && !inc->monitor) {
        alertmsg_fmt(w, " · undo: `floodgatectl release --scope %s ",
                     usertable_scope_name(inc->scope));
        alertmsg_text(w, inc->identity, ALERTMSG_TEXT_CAP, ALERT_TEXT_SLACK_CODE);
        alertmsg_raw(w, "`");
    }
    alertmsg_raw(w, "\"}]}]}");
}

/* --- webhooks -------------------------------------------------------------------------- */

static const char *
alertmsg_hook_type(const struct alertmsg_incident *inc, enum alertmsg_kind kind)
{
    switch (kind) {
    case ALERTMSG_TRIPPED:
        return "floodgate.trip.tripped";
    case ALERTMSG_ACTED:
        if (inc->acted && inc->acted->unconfirmed && !inc->acted->monitor)
            return "floodgate.trip.unconfirmed";
        return alertmsg_actions_failed(inc->acted) ? "floodgate.trip.action_failed"
                                                   : "floodgate.trip.acted";
    case ALERTMSG_RELEASED:
        return "floodgate.trip.released";
    case ALERTMSG_FOLLOWUP:
        break; /* Slack only */
    }
    return "floodgate.trip";
}

static void
alertmsg_hook_head(struct alertmsg_w *w, const char *type, int64_t at_ms)
{
    char t[40];

    alertmsg_rfc3339(at_ms, t, sizeof(t));
    alertmsg_fmt(w, "{\"type\":\"%s\",\"timestamp\":\"%s\",\"data\":{", type, t);
}

static void
alertmsg_hook_list(struct alertmsg_w *w, bool first, const char *key, const char *const *v,
                   size_t n)
{
    if (n > ALERTMSG_SAMPLES_MAX)
        n = ALERTMSG_SAMPLES_MAX;
    alertmsg_fmt(w, "%s\"%s\":[", first ? "" : ",", key);
    for (size_t i = 0; i < n; i++) {
        if (i)
            alertmsg_raw(w, ",");
        alertmsg_str(w, v[i] ? v[i] : "", ALERTMSG_TEXT_CAP);
    }
    alertmsg_raw(w, "]");
}

static void
alertmsg_hook_actions(struct alertmsg_w *w, const struct alertmsg_actions *a)
{
    const char *res;

    alertmsg_raw(w, ",\"actions\":[");
    if (a->unconfirmed && !a->monitor) {
        alertmsg_fmt(w,
                     "{\"action\":\"hold\",\"result\":\"unconfirmed\",\"candidates\":%zu,"
                     "\"confirmed\":0}]",
                     a->candidates);
        return;
    }
    if (a->monitor) {
        alertmsg_raw(w, "]");
        return;
    }
    if (a->ledger_err != 0 && a->frozen == 0 &&
        !(a->backend_done & (CONFIG_ACTION_HOLD | CONFIG_ACTION_SUSPEND))) {
        alertmsg_fmt(w,
                     "{\"action\":\"hold\",\"result\":\"failed\",\"reason\":"
                     "\"ledger_write_failed\",\"error\":%d}]",
                     -a->ledger_err);
        return;
    }
    res = a->failed == 0 ? "ok" : a->frozen > 0 ? "partial" : "failed";
    alertmsg_fmt(w,
                 "{\"action\":\"freeze\",\"result\":\"%s\",\"messages\":%zu,\"confirmed\":%zu,"
                 "\"failed\":%zu}",
                 res, a->frozen, a->confirmed, a->failed);
    if ((a->backend_done & (CONFIG_ACTION_HOLD | CONFIG_ACTION_SUSPEND)) || a->backend_err ||
        a->preexisting) {
        res = a->backend_err ? "failed" : a->preexisting ? "preexisting" : "ok";
        alertmsg_fmt(w, ",{\"action\":\"%s\",\"result\":\"%s\"",
                     (a->backend_done & CONFIG_ACTION_SUSPEND) ? "suspend" : "hold", res);
        alertmsg_kv(w, false, "backend", alertmsg_has(a->backend) ? a->backend : NULL,
                    ALERTMSG_ITEM_CAP);
        if (a->backend_err)
            alertmsg_fmt(w, ",\"error\":%d", -a->backend_err);
        alertmsg_raw(w, "}");
    }
    alertmsg_raw(w, "]");
}

static void
alertmsg_hook_incident(struct alertmsg_w *w, const struct alertmsg_incident *inc,
                       enum alertmsg_kind kind, int64_t at_ms)
{
    alertmsg_hook_head(w, alertmsg_hook_type(inc, kind), at_ms);
    alertmsg_kv(w, true, "host", inc->host, ALERTMSG_UNCAPPED);
    alertmsg_kv(w, false, "incident_id", inc->incident_id, ALERTMSG_UNCAPPED);
    alertmsg_kv(w, false, "rule", inc->rule, ALERTMSG_UNCAPPED);
    alertmsg_kv(w, false, "scope", usertable_scope_name(inc->scope), ALERTMSG_UNCAPPED);
    alertmsg_kv(w, false, "identity", inc->identity, ALERTMSG_HOOK_CAP);
    alertmsg_kv(w, false, "account", alertmsg_has(inc->account) ? inc->account : NULL,
                ALERTMSG_HOOK_CAP);
    alertmsg_kv(w, false, "metric", inc->metric, ALERTMSG_UNCAPPED);
    alertmsg_fmt(w, ",\"window_seconds\":%" PRId64 ",\"value\":%" PRIu64 ",\"limit\":%" PRIu64,
                 inc->window_ms / 1000, inc->value, inc->limit);
    alertmsg_kv_time(w, "tripped_at", alertmsg_detected(inc));
    alertmsg_kv(w, false, "log_time", alertmsg_has(inc->log_time) ? inc->log_time : NULL,
                ALERTMSG_ITEM_CAP);
    alertmsg_fmt(w, ",\"monitor\":%s", inc->monitor ? "true" : "false");
    if (kind == ALERTMSG_RELEASED) {
        alertmsg_kv_time(w, "released_at", inc->released_ms);
        if (inc->late_outcome && inc->acted)
            alertmsg_hook_actions(w, inc->acted);
        alertmsg_raw(w, "}}");
        return;
    }
    if (inc->ncounts > 0) {
        size_t n = inc->ncounts < ALERTMSG_COUNTS_MAX ? inc->ncounts : ALERTMSG_COUNTS_MAX;

        alertmsg_raw(w, ",\"counts\":[");
        for (size_t i = 0; i < n; i++) {
            alertmsg_raw(w, i ? ",{" : "{");
            alertmsg_kv(w, true, "metric", inc->counts[i].metric, ALERTMSG_ITEM_CAP);
            alertmsg_fmt(w, ",\"window_seconds\":%" PRId64 ",\"value\":%" PRIu64 "}",
                         inc->counts[i].window_ms / 1000, inc->counts[i].value);
        }
        alertmsg_raw(w, "]");
    }
    if (inc->nsubjects + inc->nclient_ips + inc->ndomains > 0) {
        alertmsg_raw(w, ",\"evidence\":{");
        alertmsg_hook_list(w, true, "subjects", inc->subjects, inc->nsubjects);
        alertmsg_hook_list(w, false, "client_ips", inc->client_ips, inc->nclient_ips);
        alertmsg_hook_list(w, false, "recipient_domains", inc->domains, inc->ndomains);
        alertmsg_raw(w, "}");
    }
    if (kind == ALERTMSG_ACTED && inc->acted)
        alertmsg_hook_actions(w, inc->acted);
    alertmsg_raw(w, "}}");
}

/* --- Alertmanager ---------------------------------------------------------------------- */

/* Does @id end like a cut label ("…" and ALERTMSG_LABEL_HASH lowercase hex digits)? */
static bool
alertmsg_looks_cut(const char *id, size_t n)
{
    static const char ell[] = "\xe2\x80\xa6"; /* U+2026 */
    size_t tail = sizeof(ell) - 1 + ALERTMSG_LABEL_HASH;

    if (n < tail || memcmp(id + n - tail, ell, sizeof(ell) - 1) != 0)
        return false;
    for (size_t i = n - ALERTMSG_LABEL_HASH; i < n; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return false;
    return true;
}

/*
 * The identity label (alerting.md §4.1: capped). Labels identify an alert, so a cut one
 * ends "…" + hex of the whole identity's SHA-256: two identities sharing the first bytes
 * stay two alerts. An identity that merely looks cut is treated the same way, so it cannot
 * pose as another's label.
 */
static void
alertmsg_am_identity(struct alertmsg_w *w, const char *id)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    char h[ALERTMSG_LABEL_HASH + 1];
    size_t n = strlen(id);

    alertmsg_raw(w, ",\"identity\":\"");
    if (n <= ALERTMSG_TEXT_CAP && !alertmsg_looks_cut(id, n)) {
        alertmsg_text(w, id, ALERTMSG_TEXT_CAP, ALERT_TEXT_JSON);
        alertmsg_raw(w, "\"");
        return;
    }
    if (!EVP_Digest(id, n, md, &mdlen, EVP_sha256(), NULL) || mdlen * 2 < ALERTMSG_LABEL_HASH) {
        w->r = w->r ? w->r : -ENOMEM; /* SHA-256 fails only short of memory */
        return;
    }
    util_hex(h, md, ALERTMSG_LABEL_HASH / 2);
    /* the cut leaves room for the suffix: the label stays within ALERTMSG_TEXT_CAP bytes */
    alertmsg_text(w, id, ALERTMSG_TEXT_CAP - 3 - ALERTMSG_LABEL_HASH, ALERT_TEXT_JSON);
    alertmsg_raw(w, "\xe2\x80\xa6");
    alertmsg_raw(w, h);
    alertmsg_raw(w, "\"");
}

int
alertmsg_am_alert(struct strbuf *out, const struct alertmsg_incident *inc, int64_t ends_ms)
{
    struct alertmsg_w w = { out, 0 };
    size_t start = out->len;
    bool monitor = inc->monitor || (inc->acted && inc->acted->monitor);

    alertmsg_raw(&w, "{\"labels\":{\"alertname\":\"FloodgateTrip\"");
    alertmsg_fmt(&w, ",\"severity\":\"%s\"", monitor ? "warning" : "critical");
    alertmsg_kv(&w, false, "host", inc->host, ALERTMSG_HOST_CAP);
    alertmsg_kv(&w, false, "rule", inc->rule, ALERTMSG_ITEM_CAP);
    alertmsg_kv(&w, false, "scope", usertable_scope_name(inc->scope), ALERTMSG_UNCAPPED);
    alertmsg_am_identity(&w, inc->identity);
    alertmsg_raw(&w, "},\"annotations\":{\"summary\":\"");
    alertmsg_text(&w, inc->rule, ALERTMSG_ITEM_CAP, ALERT_TEXT_JSON);
    alertmsg_raw(&w, " tripped for ");
    alertmsg_text(&w, inc->identity, ALERTMSG_TEXT_CAP, ALERT_TEXT_JSON);
    alertmsg_raw(&w, " on ");
    alertmsg_text(&w, inc->host, ALERTMSG_HOST_CAP, ALERT_TEXT_JSON);
    alertmsg_raw(&w, "\",\"description\":\"");
    alertmsg_value(&w, inc, " in ");
    if (alertmsg_has(inc->account)) {
        alertmsg_raw(&w, "; account ");
        alertmsg_text(&w, inc->account, ALERTMSG_TEXT_CAP, ALERT_TEXT_JSON);
    }
    alertmsg_raw(&w, "; ");
    if (inc->acted)
        alertmsg_actions_text(&w, inc->acted, ALERT_TEXT_JSON);
    else
        alertmsg_raw(&w, monitor ? "monitor mode: nothing done" : "actions in progress");
    if (inc->released_ms)
        alertmsg_raw(&w, "; released");
    alertmsg_raw(&w, "\"");
    alertmsg_kv(&w, false, "incident_id", inc->incident_id, ALERTMSG_ID_MAX);
    if (alertmsg_has(inc->log_time)) {
        alertmsg_raw(&w, ",\"log_time\":\"");
        alertmsg_text(&w, inc->log_time, ALERTMSG_ITEM_CAP, ALERT_TEXT_JSON);
        alertmsg_raw(&w, " (server local)\"");
    }
    alertmsg_raw(&w, "}");
    alertmsg_kv_time(&w, "startsAt", alertmsg_detected(inc));
    alertmsg_kv_time(&w, "endsAt", inc->released_ms ? inc->released_ms : ends_ms);
    if (alertmsg_has(inc->generator_url)) {
        size_t n = strlen(inc->generator_url);
        bool slash = inc->generator_url[n - 1] == '/' || inc->generator_url[n - 1] == '=';

        alertmsg_raw(&w, ",\"generatorURL\":\"");
        alertmsg_text(&w, inc->generator_url, ALERTMSG_UNCAPPED, ALERT_TEXT_JSON);
        alertmsg_raw(&w, slash ? "" : "/");
        alertmsg_text(&w, inc->incident_id, ALERTMSG_ID_MAX, ALERT_TEXT_JSON);
        alertmsg_raw(&w, "\"");
    }
    alertmsg_raw(&w, "}");
    return alertmsg_end(&w, start);
}

int
alertmsg_am_array(struct strbuf *out, const struct alertmsg_incident *v, size_t n, int64_t ends_ms)
{
    size_t start = out->len;
    int r = strbuf_appends(out, "[");

    for (size_t i = 0; i < n && r == 0; i++) {
        if (i)
            r = strbuf_appends(out, ",");
        if (r == 0)
            r = alertmsg_am_alert(out, &v[i], ends_ms);
    }
    if (r == 0)
        r = strbuf_appends(out, "]");
    if (r != 0) {
        out->len = start;
        if (out->p)
            out->p[start] = '\0';
    }
    return r;
}

/* --- incident bodies ------------------------------------------------------------------- */

int
alertmsg_incident_body(struct strbuf *out, enum alert_dest_type type, enum alertmsg_kind kind,
                       const struct alertmsg_incident *inc, int64_t at_ms, int64_t ends_after_ms)
{
    struct alertmsg_w w = { out, 0 };
    size_t start = out->len;

    if (kind == ALERTMSG_FOLLOWUP && type != ALERT_DEST_SLACK)
        return -EINVAL;
    switch (type) {
    case ALERT_DEST_SLACK:
        alertmsg_slack_incident(&w, inc, kind);
        break;
    case ALERT_DEST_WEBHOOK:
        alertmsg_hook_incident(&w, inc, kind, at_ms);
        break;
    case ALERT_DEST_ALERTMANAGER:
        return alertmsg_am_array(out, inc, 1, at_ms + ends_after_ms);
    default:
        return -EINVAL;
    }
    return alertmsg_end(&w, start);
}

/* --- digests --------------------------------------------------------------------------- */

/* Indices of the (at most ALERTMSG_DIGEST_TOP) largest values, largest first, stable. */
static size_t
alertmsg_top(const struct alertmsg_digest *dg, size_t *idx)
{
    size_t n = 0;

    for (size_t i = 0; i < dg->nitems; i++) {
        uint64_t v = dg->items[i].value;
        size_t at = n;

        while (at > 0 && dg->items[idx[at - 1]].value < v)
            at--;
        if (at >= ALERTMSG_DIGEST_TOP)
            continue;
        if (n < ALERTMSG_DIGEST_TOP)
            n++;
        memmove(idx + at + 1, idx + at, (n - 1 - at) * sizeof(*idx));
        idx[at] = i;
    }
    return n;
}

static void
alertmsg_slack_digest(struct alertmsg_w *w, const struct alertmsg_digest *dg, const size_t *idx,
                      size_t ntop)
{
    char win[24], t0[40], t1[40];
    uint64_t more = dg->total > ntop ? dg->total - ntop : 0;
    size_t nc = dg->ncounts < ALERTMSG_RULES_MAX ? dg->ncounts : ALERTMSG_RULES_MAX;

    alertmsg_duration(dg->end_ms - dg->start_ms, win, sizeof(win));
    alertmsg_rfc3339(dg->start_ms, t0, sizeof(t0));
    alertmsg_rfc3339(dg->end_ms, t1, sizeof(t1));
    alertmsg_raw(w, "{\"text\":\"floodgate ");
    alertmsg_text(w, dg->host, ALERTMSG_HOST_CAP, ALERT_TEXT_SLACK);
    alertmsg_fmt(w, ": %" PRIu64 " more incidents in %s (digest); see `floodgatectl top`\"",
                 dg->total, win);
    alertmsg_raw(w, ",\"blocks\":[{\"type\":\"header\",\"text\":{\"type\":\"plain_text\","
                    "\"text\":\"Outbreak digest for ");
    alertmsg_text(w, dg->host, ALERTMSG_HOST_CAP, ALERT_TEXT_JSON);
    alertmsg_fmt(w,
                 "\"}},{\"type\":\"section\",\"text\":{\"type\":\"mrkdwn\",\"text\":\"*%" PRIu64
                 " incidents* from %s to %s; actions finished for %" PRIu64
                 ", failed in part for %" PRIu64 "\"}}",
                 dg->total, t0, t1, dg->acted, dg->failed);
    if (nc > 0) {
        alertmsg_raw(w,
                     ",{\"type\":\"section\",\"text\":{\"type\":\"mrkdwn\",\"text\":\"*By rule*");
        for (size_t i = 0; i < nc; i++) {
            alertmsg_raw(w, "\\n");
            alertmsg_text(w, dg->counts[i].rule, ALERTMSG_ITEM_CAP, ALERT_TEXT_SLACK);
            alertmsg_fmt(w, " (%s): %" PRIu64, usertable_scope_name(dg->counts[i].scope),
                         dg->counts[i].n);
        }
        if (dg->ncounts > nc)
            alertmsg_fmt(w, "\\nand %zu more rules", dg->ncounts - nc);
        alertmsg_raw(w, "\"}}");
    }
    for (size_t i = 0; i < ntop; i++) {
        const struct alertmsg_digest_item *it = &dg->items[idx[i]];

        if (i % ALERTMSG_PER_SECTION == 0)
            alertmsg_fmt(w, ",{\"type\":\"section\",\"text\":{\"type\":\"mrkdwn\",\"text\":\"%s",
                         i == 0 ? "*Top identities*\\n" : "");
        else
            alertmsg_raw(w, "\\n");
        alertmsg_raw(w, "• `");
        alertmsg_text(w, it->identity, ALERTMSG_ITEM_CAP, ALERT_TEXT_SLACK_CODE);
        alertmsg_raw(w, "` ");
        alertmsg_text(w, it->rule, ALERTMSG_ITEM_CAP, ALERT_TEXT_SLACK);
        alertmsg_fmt(w, ": %" PRIu64 " ", it->value);
        alertmsg_text(w, it->metric, 32, ALERT_TEXT_SLACK);
        alertmsg_fmt(w, " (limit %" PRIu64 ")", it->limit);
        if (i % ALERTMSG_PER_SECTION == ALERTMSG_PER_SECTION - 1 || i + 1 == ntop)
            alertmsg_raw(w, "\"}}");
    }
    alertmsg_raw(w, ",{\"type\":\"context\",\"elements\":[{\"type\":\"mrkdwn\",\"text\":\"");
    if (more > 0)
        alertmsg_fmt(w, "and %" PRIu64 " more — `floodgatectl top` · ", more);
    alertmsg_raw(w, "digest ");
    alertmsg_text(w, dg->event_id, ALERTMSG_ID_MAX, ALERT_TEXT_SLACK);
    alertmsg_raw(w, " · host ");
    alertmsg_text(w, dg->host, ALERTMSG_HOST_CAP, ALERT_TEXT_SLACK);
    alertmsg_raw(w, "\"}]}]}");
}

static void
alertmsg_hook_digest(struct alertmsg_w *w, const struct alertmsg_digest *dg, const size_t *idx,
                     size_t ntop)
{
    alertmsg_hook_head(w, "floodgate.digest", dg->end_ms);
    alertmsg_kv(w, true, "host", dg->host, ALERTMSG_UNCAPPED);
    alertmsg_kv(w, false, "digest_id", dg->event_id, ALERTMSG_ID_MAX);
    alertmsg_kv_time(w, "window_start", dg->start_ms);
    alertmsg_kv_time(w, "window_end", dg->end_ms);
    alertmsg_fmt(w, ",\"incidents\":%" PRIu64 ",\"acted\":%" PRIu64 ",\"failed\":%" PRIu64,
                 dg->total, dg->acted, dg->failed);
    alertmsg_raw(w, ",\"by_rule\":[");
    for (size_t i = 0; i < dg->ncounts; i++) {
        alertmsg_raw(w, i ? ",{" : "{");
        alertmsg_kv(w, true, "rule", dg->counts[i].rule, ALERTMSG_ITEM_CAP);
        alertmsg_kv(w, false, "scope", usertable_scope_name(dg->counts[i].scope),
                    ALERTMSG_UNCAPPED);
        alertmsg_fmt(w, ",\"count\":%" PRIu64 "}", dg->counts[i].n);
    }
    alertmsg_raw(w, "],\"top\":[");
    for (size_t i = 0; i < ntop; i++) {
        const struct alertmsg_digest_item *it = &dg->items[idx[i]];

        alertmsg_raw(w, i ? ",{" : "{");
        alertmsg_kv(w, true, "rule", it->rule, ALERTMSG_ITEM_CAP);
        alertmsg_kv(w, false, "scope", usertable_scope_name(it->scope), ALERTMSG_UNCAPPED);
        alertmsg_kv(w, false, "identity", it->identity, ALERTMSG_HOOK_CAP);
        alertmsg_kv(w, false, "metric", it->metric, ALERTMSG_ITEM_CAP);
        alertmsg_fmt(w, ",\"value\":%" PRIu64 ",\"limit\":%" PRIu64 "}", it->value, it->limit);
    }
    alertmsg_fmt(w, "],\"more\":%" PRIu64 "}}", dg->total > ntop ? dg->total - ntop : 0);
}

int
alertmsg_digest_body(struct strbuf *out, enum alert_dest_type type,
                     const struct alertmsg_digest *dg)
{
    struct alertmsg_w w = { out, 0 };
    size_t start = out->len, idx[ALERTMSG_DIGEST_TOP];
    size_t ntop = alertmsg_top(dg, idx);

    if (type == ALERT_DEST_SLACK)
        alertmsg_slack_digest(&w, dg, idx, ntop);
    else if (type == ALERT_DEST_WEBHOOK)
        alertmsg_hook_digest(&w, dg, idx, ntop);
    else
        return -EINVAL;
    return alertmsg_end(&w, start);
}

/* --- health and test ------------------------------------------------------------------- */

static void
alertmsg_am_simple(struct alertmsg_w *w, const char *name, const char *severity, const char *host,
                   const char *kind, const char *text, int64_t at_ms, int64_t ends_ms)
{
    alertmsg_fmt(w, "[{\"labels\":{\"alertname\":\"%s\",\"severity\":\"%s\"", name, severity);
    alertmsg_kv(w, false, "host", host, ALERTMSG_HOST_CAP);
    if (kind)
        alertmsg_kv(w, false, "kind", kind, ALERTMSG_ITEM_CAP);
    alertmsg_raw(w, "},\"annotations\":{");
    alertmsg_kv(w, true, "summary", text, ALERTMSG_UNCAPPED);
    alertmsg_raw(w, "}");
    alertmsg_kv_time(w, "startsAt", at_ms);
    alertmsg_kv_time(w, "endsAt", ends_ms);
    alertmsg_raw(w, "}]");
}

static void
alertmsg_slack_simple(struct alertmsg_w *w, const char *header, const char *host,
                      const char *event_id, const char *text)
{
    alertmsg_raw(w, "{\"text\":\"floodgate ");
    alertmsg_text(w, host, ALERTMSG_HOST_CAP, ALERT_TEXT_SLACK);
    alertmsg_raw(w, ": ");
    alertmsg_text(w, text, ALERTMSG_UNCAPPED, ALERT_TEXT_SLACK);
    alertmsg_raw(
        w, "\",\"blocks\":[{\"type\":\"header\",\"text\":{\"type\":\"plain_text\",\"text\":\"");
    alertmsg_raw(w, header);
    alertmsg_text(w, host, ALERTMSG_HOST_CAP, ALERT_TEXT_JSON);
    alertmsg_raw(w, "\"}},{\"type\":\"section\",\"text\":{\"type\":\"mrkdwn\",\"text\":\"");
    alertmsg_text(w, text, ALERTMSG_UNCAPPED, ALERT_TEXT_SLACK);
    alertmsg_raw(w, "\"}},{\"type\":\"context\",\"elements\":[{\"type\":\"mrkdwn\",\"text\":\"");
    alertmsg_text(w, event_id, ALERTMSG_ID_MAX, ALERT_TEXT_SLACK);
    alertmsg_raw(w, "\"}]}]}");
}

int
alertmsg_health_body(struct strbuf *out, enum alert_dest_type type, const char *host,
                     const char *event_id, const char *kind, const char *text, int64_t at_ms,
                     int64_t ends_after_ms)
{
    struct alertmsg_w w = { out, 0 };
    size_t start = out->len;

    switch (type) {
    case ALERT_DEST_SLACK:
        alertmsg_slack_simple(&w, "floodgate needs attention on ", host, event_id, text);
        break;
    case ALERT_DEST_WEBHOOK:
        alertmsg_hook_head(&w, "floodgate.daemon.degraded", at_ms);
        alertmsg_kv(&w, true, "host", host, ALERTMSG_UNCAPPED);
        alertmsg_kv(&w, false, "event_id", event_id, ALERTMSG_ID_MAX);
        alertmsg_kv(&w, false, "kind", kind, ALERTMSG_UNCAPPED);
        alertmsg_kv(&w, false, "message", text, ALERTMSG_UNCAPPED);
        alertmsg_raw(&w, "}}");
        break;
    case ALERT_DEST_ALERTMANAGER:
        alertmsg_am_simple(&w, "FloodgateDegraded", "warning", host, kind, text, at_ms,
                           at_ms + ends_after_ms);
        break;
    default:
        return -EINVAL;
    }
    return alertmsg_end(&w, start);
}

int
alertmsg_test_body(struct strbuf *out, enum alert_dest_type type, const char *host,
                   const char *event_id, int64_t at_ms)
{
    static const char text[] = "test alert from floodgatectl test-alert: delivery works";
    struct alertmsg_w w = { out, 0 };
    size_t start = out->len;

    switch (type) {
    case ALERT_DEST_SLACK:
        alertmsg_slack_simple(&w, "floodgate test alert from ", host, event_id, text);
        break;
    case ALERT_DEST_WEBHOOK:
        alertmsg_hook_head(&w, "floodgate.test", at_ms);
        alertmsg_kv(&w, true, "host", host, ALERTMSG_UNCAPPED);
        alertmsg_kv(&w, false, "event_id", event_id, ALERTMSG_ID_MAX);
        alertmsg_kv(&w, false, "message", text, ALERTMSG_UNCAPPED);
        alertmsg_raw(&w, "}}");
        break;
    case ALERT_DEST_ALERTMANAGER:
        /* resolved at once: a test must not page anyone twice */
        alertmsg_am_simple(&w, "FloodgateTest", "info", host, NULL, text, at_ms, at_ms);
        break;
    default:
        return -EINVAL;
    }
    return alertmsg_end(&w, start);
}
