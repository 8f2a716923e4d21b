/*
 * replay.c - floodgated --replay: finished logs (plain or .gz, or - for stdin) through the
 * same pipeline as the live daemon, as fast as the disk allows. The log's timestamps are
 * the clock; trips are reported, never acted on. Prints a summary for a person (log text
 * through util_term_escape), or one JSON object with --json (documented in
 * docs/replay.md; log text through strbuf_append_json).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "clock.h"
#include "daemon.h"
#include "engine.h"
#include "log.h"

#define REPLAY_READ_BYTES (1u << 20)
#define REPLAY_LINE_MAX   (2 * EXIMLOG_RECORD_MAX) /* longer lines are cut (tail R8) */

struct replay_trip {
    struct engine_notice n;
};

struct replay {
    struct engine *engine;
    struct engine_delay *delay; /* records wait for the ones that bound their time */
    struct eximlog_joiner joiner;
    struct replay_trip *trips;
    size_t ntrips, captrips;
    uint64_t lines, bytes, cut_lines;
    uint64_t pending_line; /* first line of the record the joiner is assembling */
    struct engine_notice notes[ENGINE_NOTICES_MAX]; /* ~100 KiB: not on the stack per record */
};

static int
replay_keep(struct replay *rp, const struct engine_notice *n)
{
    if (n->kind != ENGINE_TRIP)
        return 0;
    if (rp->ntrips == rp->captrips) {
        size_t cap = rp->captrips ? rp->captrips * 2 : 64;
        struct replay_trip *t = realloc(rp->trips, cap * sizeof(*t));
        if (!t)
            return -ENOMEM;
        rp->trips = t;
        rp->captrips = cap;
    }
    rp->trips[rp->ntrips++].n = *n;
    return 0;
}

static int
replay_notes(struct replay *rp, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (replay_keep(rp, &rp->notes[i]) < 0)
            return -ENOMEM;
    return 0;
}

/*
 * There is no wall clock in a replay: a record is fed once ENGINE_CLOCK_CONFIRM records
 * follow it, and its time counts only as far as they agree (engine_delay), so one line
 * dated 2099 does not stop the windows while a real gap in the log still moves them.
 */
static int
replay_record(struct replay *rp, const struct eximlog_record *rec, uint64_t line)
{
    return replay_notes(
        rp, engine_delay_push(rp->delay, rp->engine, rec, line, rp->notes, N_ELEMS(rp->notes)));
}

/* The end of the input: the records still waiting, bounded by what follows them. */
static int
replay_drain(struct replay *rp)
{
    int r = 0;

    while (r == 0 && engine_delay_pending(rp->delay))
        r = replay_notes(rp,
                         engine_delay_flush(rp->delay, rp->engine, rp->notes, N_ELEMS(rp->notes)));
    return r;
}

static int
replay_line(struct replay *rp, const char *p, size_t len, uint64_t start)
{
    struct eximlog_record rec;
    uint64_t line = ++rp->lines;
    uint64_t first = rp->pending_line;
    int r = eximlog_joiner_push(&rp->joiner, p, len, start, start + len + 1, &rec);

    if (rp->joiner.pending && rp->joiner.start == start)
        rp->pending_line = line;
    if (r > 0)
        return replay_record(rp, &rec, first);
    return 0;
}

static int
replay_flush(struct replay *rp)
{
    struct eximlog_record rec;

    if (eximlog_joiner_flush(&rp->joiner, true, &rec) > 0)
        return replay_record(rp, &rec, rp->pending_line);
    return 0;
}

/* Where the line splitter is in a file: a line cut across chunks waits in carry. */
struct replay_cursor {
    char *carry;
    size_t ncarry;
    bool cutting; /* skipping the rest of an over-long line */
    uint64_t off;
};

/* Split @n bytes at @p into lines and push them; a partial last line goes to the carry. */
static int
replay_chunk(struct replay *rp, const char *p, size_t n, struct replay_cursor *c)
{
    const char *end = p + n;
    int r = 0;

    rp->bytes += n;
    while (p < end && r == 0) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t take = (size_t)((nl ? nl : end) - p);
        if (c->cutting) {
            /* the rest of an over-long line: never a line of its own */
            if (nl)
                c->cutting = false;
            c->off += take + (nl ? 1 : 0);
            p = nl ? nl + 1 : end;
            continue;
        }
        if (!nl) {
            /* a partial last line: keep up to REPLAY_LINE_MAX of it; past that it is cut
             * there, pushed, and the rest skipped, wherever the chunk boundary fell */
            size_t room = REPLAY_LINE_MAX - c->ncarry;
            uint64_t start = c->off - c->ncarry;
            memcpy(c->carry + c->ncarry, p, take < room ? take : room);
            c->ncarry += take < room ? take : room;
            if (take >= room && c->ncarry == REPLAY_LINE_MAX) {
                rp->cut_lines++;
                r = replay_line(rp, c->carry, c->ncarry, start);
                c->ncarry = 0;
                c->cutting = true;
            }
            c->off += take;
            break;
        }
        if (c->ncarry || take > REPLAY_LINE_MAX) {
            size_t room = REPLAY_LINE_MAX - c->ncarry;
            if (take > room) {
                take = room;
                rp->cut_lines++;
            }
            memcpy(c->carry + c->ncarry, p, take);
            r = replay_line(rp, c->carry, c->ncarry + take, c->off - c->ncarry);
            c->ncarry = 0;
        } else {
            r = replay_line(rp, p, take, c->off);
        }
        c->off += (size_t)(nl - p) + 1;
        p = nl + 1;
    }
    return r;
}

static int
replay_file(struct replay *rp, const char *path, char *buf, char *carry)
{
    struct replay_cursor c = { .carry = carry };
    unsigned char magic[2];
    gzFile gz = NULL;
    int fd, r = 0;

    fd = strcmp(path, "-") == 0 ? dup(STDIN_FILENO) : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return log_emit(LOG_ERR, -errno, NULL, "%s: cannot open", path);
    if (strcmp(path, "-") == 0 ||
        (pread(fd, magic, 2, 0) == 2 && magic[0] == 0x1f && magic[1] == 0x8b)) {
        gz = gzdopen(fd, "rb");
        if (!gz) {
            (void)close(fd);
            return log_emit(LOG_ERR, -ENOMEM, NULL, "%s: cannot open", path);
        }
        (void)gzbuffer(gz, REPLAY_READ_BYTES);
    }
    /* read(), not mmap(): a log truncated while it is replayed must not SIGBUS us */
    while (r == 0) {
        ssize_t n = gz ? gzread(gz, buf, REPLAY_READ_BYTES) : read(fd, buf, REPLAY_READ_BYTES);
        if (n < 0 && !gz && errno == EINTR)
            continue;
        if (n < 0) {
            int zerr;
            const char *msg = gz ? gzerror(gz, &zerr) : strerror(errno);
            r = log_emit(LOG_ERR, -EIO, NULL, "%s: read error: %s", path, msg);
            break;
        }
        if (n == 0)
            break;
        r = replay_chunk(rp, buf, (size_t)n, &c);
    }
    if (r == 0 && c.ncarry)
        r = replay_line(rp, c.carry, c.ncarry, c.off - c.ncarry); /* no final newline */
    if (r == 0)
        r = replay_flush(rp);
    if (gz)
        (void)gzclose(gz);
    else
        (void)close(fd);
    return r;
}

struct replay_ident {
    enum usertable_scope scope;
    const char *id;
    uint64_t messages, recipients;
};

static int
replay_ident_cmp(const void *a, const void *b)
{
    const struct replay_ident *x = a, *y = b;

    if (x->scope != y->scope)
        return x->scope < y->scope ? -1 : 1;
    if (x->messages != y->messages)
        return x->messages > y->messages ? -1 : 1;
    return strcmp(x->id, y->id);
}

static struct replay_ident *
replay_identities(struct engine *e, size_t *ret_n)
{
    struct usertable *t = engine_table(e);
    size_t n = usertable_count(t), k = 0, pos = 0;
    struct replay_ident *v = calloc(n ? n : 1, sizeof(*v));
    struct usertable_entry *ent;

    if (!v)
        return NULL;
    while ((ent = usertable_next(t, &pos)) && k < n) {
        if (usertable_entry_total(ent, WINDOW_MESSAGES) == 0)
            continue; /* only seen failing to authenticate */
        v[k].scope = usertable_entry_scope(ent);
        v[k].id = usertable_entry_key(ent);
        v[k].messages = usertable_entry_total(ent, WINDOW_MESSAGES);
        v[k].recipients = usertable_entry_total(ent, WINDOW_RECIPIENTS);
        k++;
    }
    qsort(v, k, sizeof(*v), replay_ident_cmp);
    *ret_n = k;
    return v;
}

static void
replay_json_str(struct strbuf *b, const char *s)
{
    if (!s || !s[0]) {
        (void)strbuf_appends(b, "null");
        return;
    }
    (void)strbuf_append(b, "\"", 1);
    (void)strbuf_append_json(b, s, strlen(s));
    (void)strbuf_append(b, "\"", 1);
}

static void
replay_print_json(struct replay *rp, double secs)
{
    const struct engine_stats *st = engine_stats(rp->engine);
    size_t nid = 0;
    struct replay_ident *ids = replay_identities(rp->engine, &nid);
    struct strbuf b;
    char acct[ATTRIB_ACCOUNT_MAX];

    strbuf_init(&b, SIZE_MAX / 2);
    (void)strbuf_printf(&b,
                        "{\"lines\":%llu,\"bytes\":%llu,\"records\":%llu,\"parse_errors\":%llu,"
                        "\"arrivals\":%llu,\"outbound\":%llu,\"clock_ahead\":%llu,"
                        "\"log_injection\":{",
                        (unsigned long long)rp->lines, (unsigned long long)rp->bytes,
                        (unsigned long long)st->records, (unsigned long long)st->parse_errors,
                        (unsigned long long)st->arrivals, (unsigned long long)st->outbound,
                        (unsigned long long)st->clock_ahead);
    for (size_t k = 0; k < ENGINE_INJ__MAX; k++)
        (void)strbuf_printf(&b, "%s\"%s\":%llu", k ? "," : "",
                            engine_injection_name((enum engine_injection)k),
                            (unsigned long long)st->injections[k]);
    (void)strbuf_printf(&b, "},\"seconds\":%.3f,\"identities\":[", secs);
    for (size_t i = 0; ids && i < nid; i++) {
        engine_account_of(rp->engine, ids[i].scope, ids[i].id, acct, sizeof(acct));
        (void)strbuf_printf(&b, "%s{\"scope\":\"%s\",\"id\":", i ? "," : "",
                            usertable_scope_name(ids[i].scope));
        replay_json_str(&b, ids[i].id);
        (void)strbuf_appends(&b, ",\"account\":");
        replay_json_str(&b, acct);
        (void)strbuf_printf(&b, ",\"messages\":%llu,\"recipients\":%llu}",
                            (unsigned long long)ids[i].messages,
                            (unsigned long long)ids[i].recipients);
    }
    (void)strbuf_appends(&b, "],\"trips\":[");
    for (size_t i = 0; i < rp->ntrips; i++) {
        const struct engine_notice *n = &rp->trips[i].n;
        (void)strbuf_printf(&b, "%s{\"rule\":", i ? "," : "");
        replay_json_str(&b, n->verdict.rule_name);
        (void)strbuf_printf(&b, ",\"scope\":\"%s\",\"id\":", usertable_scope_name(n->scope));
        replay_json_str(&b, n->id);
        (void)strbuf_appends(&b, ",\"account\":");
        replay_json_str(&b, n->account);
        (void)strbuf_appends(&b, ",\"at\":");
        replay_json_str(&b, n->at);
        (void)strbuf_printf(&b, ",\"line\":%llu,\"value\":%llu,\"window_s\":%lld",
                            (unsigned long long)n->line, (unsigned long long)n->verdict.value,
                            (long long)(n->verdict.window_ms / 1000));
        if (n->detail[0]) {
            (void)strbuf_appends(&b, ",\"detail\":");
            replay_json_str(&b, n->detail);
        }
        (void)strbuf_appends(&b, "}");
    }
    (void)strbuf_appends(&b, "]}\n");
    (void)fwrite(strbuf_cstr(&b), 1, b.len, stdout);
    strbuf_done(&b);
    free(ids);
}

/* Every escape is at most 4 bytes per input byte: an identity rendered whole fits. */
#define REPLAY_TERM_MAX (4 * USERTABLE_KEY_MAX + 4)

/* Log text (identities, accounts, rule names, times) for a terminal: util_term_escape. */
static const char *
replay_term(char buf[REPLAY_TERM_MAX], const char *s)
{
    (void)util_term_escape(buf, REPLAY_TERM_MAX, s, strlen(s));
    return buf;
}

static void
replay_print_text(struct replay *rp, double secs)
{
    const struct engine_stats *st = engine_stats(rp->engine);
    size_t nid = 0, shown[SCOPE__MAX] = { 0 };
    struct replay_ident *ids = replay_identities(rp->engine, &nid);
    char acct[ATTRIB_ACCOUNT_MAX];
    static char t_id[REPLAY_TERM_MAX], t_acct[REPLAY_TERM_MAX], t_rule[REPLAY_TERM_MAX],
        t_at[REPLAY_TERM_MAX];

    printf("lines %llu, %.1f MB in %.3f s (%.0f MB/s, %.0f lines/s)\n",
           (unsigned long long)rp->lines, (double)rp->bytes / 1e6, secs,
           secs > 0 ? (double)rp->bytes / 1e6 / secs : 0.0,
           secs > 0 ? (double)rp->lines / secs : 0.0);
    printf("records %llu, parse errors %llu, other %llu, cut lines %llu\n",
           (unsigned long long)st->records, (unsigned long long)st->parse_errors,
           (unsigned long long)st->other, (unsigned long long)rp->cut_lines);
    printf("arrivals %llu: outbound %llu, inbound %llu, bounces %llu, service %llu, "
           "local only %llu\n",
           (unsigned long long)st->arrivals, (unsigned long long)st->outbound,
           (unsigned long long)st->inbound, (unsigned long long)st->bounces,
           (unsigned long long)st->service, (unsigned long long)st->local_only);
    printf("deliveries %llu, deferrals %llu, failures %llu, log injection attempts %llu\n",
           (unsigned long long)st->deliveries, (unsigned long long)st->deferrals,
           (unsigned long long)st->failures, (unsigned long long)st->cwd_forged);
    printf("log injection signals: absorbed %llu, cwd %llu, tail %llu, helo %llu; records "
           "dated ahead of the clock %llu\n",
           (unsigned long long)st->injections[ENGINE_INJ_ABSORBED],
           (unsigned long long)st->injections[ENGINE_INJ_CWD],
           (unsigned long long)st->injections[ENGINE_INJ_TAIL],
           (unsigned long long)st->injections[ENGINE_INJ_HELO],
           (unsigned long long)st->clock_ahead);
    if (st->trap_hits || st->campaign_trips || st->campaign_evictions)
        printf("spam-trap hits %llu; campaigns tripped %llu, campaign keys evicted %llu\n",
               (unsigned long long)st->trap_hits, (unsigned long long)st->campaign_trips,
               (unsigned long long)st->campaign_evictions);
    printf("\ntop senders:\n");
    for (size_t i = 0; ids && i < nid; i++) {
        if (shown[ids[i].scope]++ >= 5)
            continue;
        engine_account_of(rp->engine, ids[i].scope, ids[i].id, acct, sizeof(acct));
        printf("  %-8s %-50s account %-12s %6llu messages %7llu recipients\n",
               usertable_scope_name(ids[i].scope), replay_term(t_id, ids[i].id),
               acct[0] ? replay_term(t_acct, acct) : "-",
               (unsigned long long)ids[i].messages, (unsigned long long)ids[i].recipients);
    }
    printf("\n%zu trip%s:\n", rp->ntrips, rp->ntrips == 1 ? "" : "s");
    for (size_t i = 0; i < rp->ntrips; i++) {
        const struct engine_notice *n = &rp->trips[i].n;
        printf("  %s line %llu  %-16s %s %s: %llu > %llu in %llds\n", replay_term(t_at, n->at),
               (unsigned long long)n->line, replay_term(t_rule, n->verdict.rule_name),
               usertable_scope_name(n->scope), replay_term(t_id, n->id),
               (unsigned long long)n->verdict.value,
               (unsigned long long)n->verdict.threshold, (long long)(n->verdict.window_ms / 1000));
        if (n->detail[0])
            printf("      %s\n", replay_term(t_rule, n->detail));
    }
    free(ids);
}

int
replay_main(const struct config *cfg, char **files, int nfiles, bool json)
{
    struct engine_params ep = { .cfg = cfg };
    struct attrib_maps *maps = NULL;
    struct replay *rp = calloc(1, sizeof(*rp));
    char *buf = NULL, *carry = NULL;
    int64_t t0;
    int r;

    if (!rp)
        return 1;
    daemon_random_key(ep.key);
    r = daemon_maps_load(cfg, ep.key, &maps);
    if (r < 0) {
        free(rp);
        return 1;
    }
    ep.maps = maps;
    r = engine_new(&ep, &rp->engine);
    rp->delay = engine_delay_new();
    buf = malloc(REPLAY_READ_BYTES);
    carry = malloc(REPLAY_LINE_MAX);
    if (r < 0 || !rp->delay || !buf || !carry) {
        log_emit(LOG_ERR, -ENOMEM, NULL, "replay: cannot start");
        r = -ENOMEM;
        goto out;
    }
    eximlog_joiner_init(&rp->joiner);
    t0 = clock_mono_ms(&clock_real);
    for (int i = 0; i < nfiles && r == 0; i++)
        r = replay_file(rp, files[i], buf, carry);
    if (r == 0)
        r = replay_drain(rp);
    if (r == 0) {
        double secs = (double)(clock_mono_ms(&clock_real) - t0) / 1000.0;
        if (json)
            replay_print_json(rp, secs);
        else
            replay_print_text(rp, secs);
    }
out:
    free(buf);
    free(carry);
    free(rp->trips);
    engine_delay_free(rp->delay);
    engine_free(rp->engine);
    free(rp);
    attrib_maps_free(maps);
    return r < 0 ? 1 : 0;
}
