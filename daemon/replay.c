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

#include "alertmsg.h"
#include "clock.h"
#include "daemon.h"
#include "engine.h"
#include "log.h"
#include "report.h"

#define REPLAY_READ_BYTES     (1u << 20)
#define REPLAY_LINE_MAX       (2 * EXIMLOG_RECORD_MAX) /* longer lines are cut (tail R8) */
#define REPLAY_ORDER_SLACK_MS 60000 /* a file may start this much before the last one ended */
/* Every escape is at most 4 bytes per input byte: an identity rendered whole fits. */
#define REPLAY_TERM_MAX (4 * USERTABLE_KEY_MAX + 4)

struct replay_trip {
    struct engine_notice n;
    bool again; /* a recurrence (replay_episode_arrival) */
};

struct replay_episode;

/* A file given, for the warnings about it (replay_order_check, replay_reject_check). */
struct replay_file {
    uint64_t last;           /* rp->pushed at its end: fed once pushed - pending reaches it */
    uint64_t envelope_lines; /* lines a reject log has ("Envelope-from: ") */
};

struct replay {
    const struct config *cfg;
    struct engine *engine;
    struct engine_delay *delay; /* records wait for the ones that bound their time */
    struct replay_episode *ep;  /* (identity, rule) tripped: see replay_episode_add() */
    size_t nep, capep;
    size_t *buckets, nbuckets, *next;
    uint64_t recurrences;
    struct eximlog_joiner joiner;
    struct replay_trip *trips;
    size_t ntrips, captrips;
    uint64_t lines, bytes, cut_lines;
    uint64_t pending_line;   /* first line of the record the joiner is assembling */
    uint64_t pushed;         /* records given to the delay (replay_record) */
    int64_t file_first_ms;   /* log time of the current file's first timed record, 0: none yet */
    uint64_t envelope_lines; /* current file: lines a reject log has ("Envelope-from: ") */
    struct replay_file *fi;  /* per file given */
    int nread, nchecked;     /* files read to their end; files checked (all records fed) */
    uint64_t arrivals_fed;   /* engine arrivals when the last checked file was all fed */
    char **files;
    struct report *report;                          /* --html: NULL without */
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
    rp->trips[rp->ntrips].again = false;
    rp->trips[rp->ntrips++].n = *n;
    return 0;
}

/*
 * Recurrences. Nobody releases in a replay, so the engine trips an identity once per rule;
 * the report should show each episode. Per (identity, rule) tripped, an episode ends when
 * an arrival finds the rule's sliding value back at or under its limit, and a later arrival
 * that passes the limit again is reported as the rule tripping again (the value and time
 * of that arrival). Entries are kept in a hash of the identity (chained, grown).
 */
struct replay_episode {
    enum usertable_scope scope;
    char *id;
    size_t rule;   /* index into cfg->rules */
    size_t series; /* the rule's series of its scope */
    struct policy_verdict verdict;
    bool ended; /* the value fell to the limit or under: the next crossing recurs */
};

static uint32_t
replay_hash(enum usertable_scope scope, const char *id)
{
    uint32_t h = 2166136261u ^ (uint32_t)scope;

    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h;
}

static int
replay_episode_add(struct replay *rp, const struct engine_notice *n)
{
    const struct config_rule *ru = &rp->cfg->rules[n->verdict.rule];
    const struct usertable_params *up = usertable_params(engine_table(rp->engine));
    struct replay_episode *e;
    size_t series = SIZE_MAX;

    for (size_t i = 0; i < up->nseries[n->scope]; i++)
        if (up->series[n->scope][i].metric == ru->metric &&
            up->series[n->scope][i].window_ms == ru->window_ms)
            series = i;
    if (series == SIZE_MAX)
        return 0;
    for (size_t k = 0; k < rp->nep; k++) /* tripped again: the same episode entry */
        if (rp->ep[k].rule == n->verdict.rule && rp->ep[k].scope == n->scope &&
            strcmp(rp->ep[k].id, n->id) == 0)
            return 0;
    if (rp->nep == rp->capep) {
        size_t cap = rp->capep ? rp->capep * 2 : 64;
        struct replay_episode *v = realloc(rp->ep, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        rp->ep = v;
        rp->capep = cap;
    }
    e = &rp->ep[rp->nep];
    if (!(e->id = strdup(n->id)))
        return -ENOMEM;
    e->scope = n->scope;
    e->rule = n->verdict.rule;
    e->series = series;
    e->verdict = n->verdict;
    e->ended = false;
    rp->nep++;
    /* the hash: identity -> episode entries (a chain of indices through @next) */
    if (rp->nep * 2 > rp->nbuckets) {
        size_t nb = rp->nbuckets ? rp->nbuckets * 4 : 256;
        size_t *b = malloc(nb * sizeof(*b)), *nx = realloc(rp->next, rp->capep * sizeof(*nx));
        if (!b || !nx) {
            free(b);
            if (nx)
                rp->next = nx;
            rp->nep--;
            free(e->id);
            return -ENOMEM;
        }
        rp->next = nx;
        for (size_t i = 0; i < nb; i++)
            b[i] = SIZE_MAX;
        free(rp->buckets);
        rp->buckets = b;
        rp->nbuckets = nb;
        for (size_t k = 0; k < rp->nep; k++) {
            size_t h = replay_hash(rp->ep[k].scope, rp->ep[k].id) & (nb - 1);
            rp->next[k] = rp->buckets[h];
            rp->buckets[h] = k;
        }
    } else {
        size_t *nx = realloc(rp->next, rp->capep * sizeof(*nx));
        size_t h = replay_hash(e->scope, e->id) & (rp->nbuckets - 1);
        if (!nx)
            return -ENOMEM;
        rp->next = nx;
        rp->next[rp->nep - 1] = rp->buckets[h];
        rp->buckets[h] = rp->nep - 1;
    }
    return 0;
}

/* An arrival of a tripped identity: episodes that ended, and crossings that recur. */
static int
replay_episode_arrival(struct replay *rp, const struct engine_notice *n)
{
    struct usertable *t = engine_table(rp->engine);
    int64_t now = engine_now_ms(rp->engine);
    struct usertable_entry *ent;

    if (!rp->nbuckets || usertable_get(t, n->scope, n->id, strlen(n->id), now, false, &ent) <= 0)
        return 0;
    for (size_t k = rp->buckets[replay_hash(n->scope, n->id) & (rp->nbuckets - 1)]; k != SIZE_MAX;
         k = rp->next[k]) {
        struct replay_episode *e = &rp->ep[k];
        uint64_t v;
        if (e->scope != n->scope || strcmp(e->id, n->id) != 0)
            continue;
        v = usertable_sum(t, ent, e->series, now);
        if (v <= e->verdict.threshold) {
            e->ended = true;
        } else if (e->ended) {
            struct engine_notice again = *n;
            again.kind = ENGINE_TRIP;
            again.verdict = e->verdict;
            again.verdict.value = v;
            e->ended = false;
            if (replay_keep(rp, &again) < 0)
                return -ENOMEM;
            rp->trips[rp->ntrips - 1].again = true;
            rp->recurrences++;
        }
    }
    return 0;
}

static int
replay_notes(struct replay *rp, size_t n)
{
    if (rp->report)
        report_step(rp->report, rp->engine, rp->notes, n);
    for (size_t i = 0; i < n; i++) {
        const struct engine_notice *no = &rp->notes[i];
        int r = replay_keep(rp, no);
        if (r == 0 && no->kind == ENGINE_TRIP)
            r = replay_episode_add(rp, no);
        else if (r == 0 && no->kind == ENGINE_TRIPPED_ARRIVAL)
            r = replay_episode_arrival(rp, no);
        if (r < 0)
            return -ENOMEM;
    }
    return 0;
}

/*
 * Warnings about the files given. One that starts before the one before it ended (shell
 * globs sort "mainlog.1 mainlog.2.gz" newest first; the clock cannot go back, so windows
 * and trips are wrong): checked when it has been read, against the time of the last record
 * of the file before it that can vouch for its time (engine_delay_last_ms).
 */
static void
replay_order_check(const struct replay *rp, int i, int64_t before)
{
    char t[REPLAY_TERM_MAX], prev[REPLAY_TERM_MAX], a[24], b[24];

    if (i == 0 || rp->file_first_ms <= 0 || before == INT64_MIN ||
        rp->file_first_ms + REPLAY_ORDER_SLACK_MS >= before)
        return;
    (void)util_term_escape(t, sizeof(t), rp->files[i], strlen(rp->files[i]));
    (void)util_term_escape(prev, sizeof(prev), rp->files[i - 1], strlen(rp->files[i - 1]));
    util_format_time(rp->file_first_ms, a, sizeof(a));
    util_format_time(before, b, sizeof(b));
    log_emit(LOG_WARNING, 0, NULL,
             "files out of time order: %s starts at %s, before %s ended (%s); give them oldest "
             "first (for Debian: mainlog.3.gz mainlog.2.gz mainlog.1 mainlog), or windows and "
             "trips are wrong",
             t, a, prev, b);
}

/*
 * One that looks like Exim's reject log (no arrivals, "Envelope-from:" lines) given as a
 * main log: checked once all its records were fed (the delay holds the last few of a file
 * until the next file's records follow them), so its arrivals are its own.
 */
static void
replay_reject_check(const struct replay *rp, int i, uint64_t arrivals)
{
    char t[REPLAY_TERM_MAX];

    if (arrivals > 0 || (rp->fi[i].envelope_lines == 0 && !strstr(rp->files[i], "reject")))
        return;
    (void)util_term_escape(t, sizeof(t), rp->files[i], strlen(rp->files[i]));
    log_emit(LOG_WARNING, 0, NULL,
             "%s looks like Exim's reject log (no arrivals%s), not its main log: give the main "
             "log (mainlog, exim_mainlog)",
             t, rp->fi[i].envelope_lines ? ", Envelope- lines" : "");
}

/* The files read whose every record has now been fed: their reject-log check. */
static void
replay_checks_due(struct replay *rp)
{
    uint64_t fed = rp->pushed - engine_delay_pending(rp->delay);

    while (rp->nchecked < rp->nread && fed >= rp->fi[rp->nchecked].last) {
        uint64_t now = engine_stats(rp->engine)->arrivals;
        replay_reject_check(rp, rp->nchecked++, now - rp->arrivals_fed);
        rp->arrivals_fed = now;
    }
}

/*
 * There is no wall clock in a replay: a record is fed once ENGINE_CLOCK_CONFIRM records
 * follow it, and its time counts only as far as they agree (engine_delay), so one line
 * dated 2099 does not stop the windows while a real gap in the log still moves them.
 */
static int
replay_record(struct replay *rp, const struct eximlog_record *rec, uint64_t line)
{
    int r;

    if (rp->file_first_ms == 0) {
        struct exim_event ev;
        if (eximlog_parse(rec->text, rec->len, &ev) >= 0 && ev.ts_ms > 0)
            rp->file_first_ms = ev.ts_ms;
    }
    r = replay_notes(
        rp, engine_delay_push(rp->delay, rp->engine, rec, line, rp->notes, N_ELEMS(rp->notes)));
    rp->pushed++;
    replay_checks_due(rp);
    return r;
}

/* The end of the input: the records still waiting, bounded by what follows them. */
static int
replay_drain(struct replay *rp)
{
    int r = 0;

    while (r == 0 && engine_delay_pending(rp->delay)) {
        r = replay_notes(rp,
                         engine_delay_flush(rp->delay, rp->engine, rp->notes, N_ELEMS(rp->notes)));
        replay_checks_due(rp);
    }
    return r;
}

static int
replay_line(struct replay *rp, const char *p, size_t len, uint64_t start)
{
    struct eximlog_record rec;
    uint64_t line = ++rp->lines;
    uint64_t first = rp->pending_line;
    int r = eximlog_joiner_push(&rp->joiner, p, len, start, start + len + 1, &rec);

    if (len > 10 && p[0] == 'E' && memcmp(p, "Envelope-", 9) == 0)
        rp->envelope_lines++;
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
        (void)strbuf_printf(&b,
                            ",\"line\":%llu,\"value\":%llu,\"limit\":%llu,\"window_s\":%lld,"
                            "\"again\":%s",
                            (unsigned long long)n->line, (unsigned long long)n->verdict.value,
                            (unsigned long long)n->verdict.threshold,
                            (long long)(n->verdict.window_ms / 1000),
                            rp->trips[i].again ? "true" : "false");
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

    printf("%llu line%s, %.1f MB in %.3f s (%.0f MB/s, %.0f lines/s)\n",
           (unsigned long long)rp->lines, rp->lines == 1 ? "" : "s", (double)rp->bytes / 1e6, secs,
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
    printf("\ntop senders (at most 5 per scope):\n");
    if (nid > 0)
        printf("  %-8s %-50s %-12s %9s %10s\n", "SCOPE", "IDENTITY", "ACCOUNT", "MESSAGES",
               "RECIPIENTS");
    else
        printf("  none\n");
    for (size_t i = 0; ids && i < nid; i++) {
        if (shown[ids[i].scope]++ >= 5)
            continue;
        engine_account_of(rp->engine, ids[i].scope, ids[i].id, acct, sizeof(acct));
        printf("  %-8s %-50s %-12s %9llu %10llu\n", usertable_scope_name(ids[i].scope),
               replay_term(t_id, ids[i].id), acct[0] ? replay_term(t_acct, acct) : "-",
               (unsigned long long)ids[i].messages, (unsigned long long)ids[i].recipients);
    }
    printf("\n%zu trip%s", rp->ntrips, rp->ntrips == 1 ? "" : "s");
    if (rp->recurrences)
        printf(" (%llu a recurrence: the value fell to the limit, then passed it again)",
               (unsigned long long)rp->recurrences);
    printf("%s\n", rp->ntrips ? ":" : "");
    if (rp->ntrips > 0)
        printf("  %-19s %10s  %-16s %-8s %-40s %-12s %s\n", "LOG TIME", "LINE", "RULE", "SCOPE",
               "IDENTITY", "ACCOUNT", "VALUE > LIMIT IN WINDOW");
    for (size_t i = 0; i < rp->ntrips; i++) {
        const struct engine_notice *n = &rp->trips[i].n;
        char w[32];
        alertmsg_duration(n->verdict.window_ms, w, sizeof(w));
        printf("  %-19s %10llu  %-16s %-8s %-40s %-12s %llu > %llu in %s%s\n",
               replay_term(t_at, n->at), (unsigned long long)n->line,
               replay_term(t_rule, n->verdict.rule_name), usertable_scope_name(n->scope),
               replay_term(t_id, n->id), n->account[0] ? replay_term(t_acct, n->account) : "-",
               (unsigned long long)n->verdict.value, (unsigned long long)n->verdict.threshold, w,
               rp->trips[i].again ? " (again)" : "");
        if (n->detail[0])
            printf("      %s\n", replay_term(t_rule, n->detail));
    }
    free(ids);
}

/* One line per file on a terminal (stderr): what was read and how fast. */
static void
replay_progress(const char *path, int i, int nfiles, uint64_t lines, uint64_t bytes, int64_t ms)
{
    char t[REPLAY_TERM_MAX];

    (void)util_term_escape(t, sizeof(t), path, strlen(path));
    fprintf(stderr, "[%d/%d] %s: %llu line%s, %.1f MB in %.1f s\n", i + 1, nfiles, t,
            (unsigned long long)lines, lines == 1 ? "" : "s", (double)bytes / 1e6,
            (double)ms / 1000.0);
}

/* --html: the page (lib/report) written to @path, readable by its owner only. */
static int
replay_write_html(struct replay *rp, char **files, int nfiles, const char *path)
{
    struct report_meta m = { .files = (const char *const *)files,
                             .nfiles = (size_t)nfiles,
                             .lines = rp->lines };
    struct strbuf b;
    size_t off = 0;
    int fd, r;

    report_finish(rp->report, rp->engine);
    strbuf_init(&b, REPORT_HTML_MAX);
    r = report_render(rp->report, rp->engine, &m, &b);
    if (r < 0) {
        strbuf_done(&b);
        return log_emit(LOG_ERR, r, NULL, "%s: cannot render the report", path);
    }
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        r = -errno;
        strbuf_done(&b);
        return log_emit(LOG_ERR, r, NULL, "%s: cannot create", path);
    }
    while (off < b.len) {
        ssize_t w = write(fd, b.p + off, b.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            r = log_emit(LOG_ERR, w < 0 ? -errno : -EIO, NULL, "%s: write error", path);
            break;
        }
        off += (size_t)w;
    }
    if (close(fd) < 0 && r == 0)
        r = log_emit(LOG_ERR, -errno, NULL, "%s: write error", path);
    strbuf_done(&b);
    return r;
}

int
replay_main(const struct config *cfg, char **files, int nfiles, bool json, const char *html,
            bool strict)
{
    struct engine_params ep = { .cfg = cfg };
    bool progress = isatty(STDERR_FILENO) == 1;
    struct attrib_maps *maps = NULL;
    struct replay *rp = calloc(1, sizeof(*rp));
    char *buf = NULL, *carry = NULL;
    int64_t t0;
    int r;

    if (!rp)
        return 1;
    rp->cfg = cfg;
    daemon_random_key(ep.key);
    r = daemon_maps_load(cfg, ep.key, &maps);
    if (r < 0) {
        free(rp);
        return 1;
    }
    ep.maps = maps;
    if (html) {
        rp->report = report_new(cfg);
        if (!rp->report) {
            log_emit(LOG_ERR, -ENOMEM, NULL, "replay: cannot start");
            r = -ENOMEM;
            goto out;
        }
        ep.hook = report_hook(rp->report);
    }
    r = engine_new(&ep, &rp->engine);
    rp->delay = engine_delay_new();
    rp->fi = calloc(nfiles > 0 ? (size_t)nfiles : 1, sizeof(*rp->fi));
    rp->files = files;
    buf = malloc(REPLAY_READ_BYTES);
    carry = malloc(REPLAY_LINE_MAX);
    if (r < 0 || !rp->delay || !rp->fi || !buf || !carry) {
        log_emit(LOG_ERR, -ENOMEM, NULL, "replay: cannot start");
        r = -ENOMEM;
        goto out;
    }
    engine_delay_set_strict(rp->delay, strict);
    eximlog_joiner_init(&rp->joiner);
    t0 = clock_mono_ms(&clock_real);
    for (int i = 0; i < nfiles && r == 0; i++) {
        int64_t before = engine_delay_last_ms(rp->delay), f0 = clock_mono_ms(&clock_real);
        uint64_t lines = rp->lines, bytes = rp->bytes;
        rp->file_first_ms = 0;
        rp->envelope_lines = 0;
        r = replay_file(rp, files[i], buf, carry);
        if (r < 0)
            break;
        rp->fi[i].last = rp->pushed;
        rp->fi[i].envelope_lines = rp->envelope_lines;
        rp->nread = i + 1;
        replay_order_check(rp, i, before);
        replay_checks_due(rp);
        if (progress)
            replay_progress(files[i], i, nfiles, rp->lines - lines, rp->bytes - bytes,
                            clock_mono_ms(&clock_real) - f0);
    }
    if (r == 0)
        r = replay_drain(rp);
    if (r == 0) {
        double secs = (double)(clock_mono_ms(&clock_real) - t0) / 1000.0;
        if (json)
            replay_print_json(rp, secs);
        else
            replay_print_text(rp, secs);
        if (html)
            r = replay_write_html(rp, files, nfiles, html);
    }
out:
    free(buf);
    free(carry);
    free(rp->trips);
    for (size_t k = 0; k < rp->nep; k++)
        free(rp->ep[k].id);
    free(rp->ep);
    free(rp->buckets);
    free(rp->next);
    free(rp->fi);
    engine_delay_free(rp->delay);
    engine_free(rp->engine);
    report_free(rp->report);
    free(rp);
    attrib_maps_free(maps);
    return r < 0 ? 1 : 0;
}
