/*
 * live.c - the service: the tailer feeds the engine, trips go to the audit log, the
 * journal and the actions; state is checkpointed about once a second.
 *
 * Wiring only: every decision lives in lib/. One libev loop, one struct daemon
 * reached from watchers through w->data. Signals arrive as libev watchers: SIGHUP reloads
 * (parse and validate the whole new configuration, swap only if valid), SIGTERM/SIGINT
 * checkpoint and exit 0. systemd: READY=1 after the first catch-up, STATUS= every few
 * seconds, WATCHDOG=1 from a loop timer, RELOADING=1 / READY=1 around a reload.
 *
 * State (ARCHITECTURE.md, "State"): one file, "state", holds the tail position and
 * the counters snapshot together, written tmp + fsync + rename + fsync(dir) by a forked
 * child about once a second and inline at shutdown. A crash restores a position and
 * counters that belong together, so the lines read again after it are counted exactly
 * once; only trips in the last unsaved second can be reported (never acted on: the action
 * ledger says what was done) a second time.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <systemd/sd-daemon.h>

#include "action.h"
#include "alertmsg.h"
#include "clock.h"
#include "ctl.h"
#include "daemon.h"
#include "engine.h"
#include "log.h"
#include "state.h"
#include "tail.h"

#include "live.h"

void
live_audit(struct daemon *d, const char *json_line)
{
    size_t len = strlen(json_line);
    bool nl = len > 0 && json_line[len - 1] == '\n';
    struct iovec iov[2] = { { (void *)(uintptr_t)json_line, len },
                            { (void *)(uintptr_t) "\n", 1 } };

    if (d->audit_fd < 0)
        return;
    /* one writev() per line, O_APPEND: lines from a crash are whole or absent */
    ssize_t n = writev(d->audit_fd, iov, nl ? 1 : 2);
    if (n != (ssize_t)(len + (nl ? 0 : 1)))
        log_emit(LOG_WARNING, n < 0 ? -errno : -EIO, NULL, "audit log: short write");
}

static void
live_audit_cb(void *ctx, const char *json_line)
{
    live_audit(ctx, json_line);
}

/* @s as a JSON string, or null when it is empty. */
static void
live_json_str_or_null(struct strbuf *b, const char *s)
{
    if (s[0]) {
        (void)strbuf_appends(b, "\"");
        (void)strbuf_append_json(b, s, strlen(s));
        (void)strbuf_appends(b, "\"");
    } else {
        (void)strbuf_appends(b, "null");
    }
}

static void
live_trip(struct daemon *d, const struct engine_notice *n, const struct eximlog_record *rec)
{
    static char ids[LIVE_QUEUED_MAX][MSGTRACK_ID_MAX + 1];
    static const char *idp[LIVE_QUEUED_MAX];
    const char *scope = usertable_scope_name(n->scope);
    struct strbuf b;
    char value[24], when[24];
    size_t nids;
    int r;
    const struct log_field fields[] = {
        { "MESSAGE_ID", LOG_MSGID_TRIP },
        { "RULE", n->verdict.rule_name },
        { "SCOPE", scope },
        { "IDENTITY", n->id },
        { "ACCOUNT", n->account[0] ? n->account : NULL },
        { "VALUE", value },
        { "LOG_TIME", n->at },
        { NULL, NULL },
    };

    (void)snprintf(value, sizeof(value), "%" PRIu64, n->verdict.value);
    alertmsg_duration(n->verdict.window_ms, when, sizeof(when)); /* "1h", not "3600s" */
    log_emit(LOG_NOTICE, 0, fields, "tripped %s: %s %s %" PRIu64 " > %" PRIu64 " in %s%s%s",
             n->verdict.rule_name, scope, n->id, n->verdict.value, n->verdict.threshold, when,
             n->detail[0] ? "; " : "", n->detail);

    live_metrics_trip(d, n->verdict.rule_name, n->scope);
    live_dnsbl_trip(d, n);
    strbuf_init(&b, 16384);
    (void)snprintf(when, sizeof(when), "%lld", (long long)clock_now_ms(&clock_real));
    (void)strbuf_appends(&b, "{\"event\":\"trip\",\"rule\":\"");
    (void)strbuf_append_json(&b, n->verdict.rule_name, strlen(n->verdict.rule_name));
    (void)strbuf_printf(&b, "\",\"scope\":\"%s\",\"id\":\"", scope);
    (void)strbuf_append_json(&b, n->id, strlen(n->id));
    (void)strbuf_appends(&b, "\",\"account\":");
    live_json_str_or_null(&b, n->account);
    (void)strbuf_printf(&b,
                        ",\"at\":\"%s\",\"line\":%" PRIu64 ",\"value\":%" PRIu64
                        ",\"threshold\":%" PRIu64 ",\"window_s\":%lld,\"detected_at\":%s,"
                        "\"msgid\":\"%s\",\"mode\":\"%s\"",
                        n->at, n->line, n->verdict.value, n->verdict.threshold,
                        (long long)(n->verdict.window_ms / 1000), when, n->msgid,
                        d->cfg->mode == CONFIG_MODE_MONITOR ? "monitor" : "enforce");
    /* campaign and trap trips say what they are about (the key and its identities, the trap) */
    if (n->detail[0]) {
        (void)strbuf_appends(&b, ",\"detail\":\"");
        (void)strbuf_append_json(&b, n->detail, strlen(n->detail));
        (void)strbuf_append(&b, "\"", 1);
    }
    (void)strbuf_appends(&b, "}\n");
    live_audit(d, strbuf_cstr(&b));
    strbuf_done(&b);
    /* the order: the "tripped" alert, then the actions, then "acted" */
    live_alert_trip(d, n, rec);

    nids = engine_queued(d->engine, n, ids, LIVE_QUEUED_MAX);
    for (size_t i = 0; i < nids; i++)
        idp[i] = ids[i];
    struct action_request req = {
        .rule = n->verdict.rule_name,
        .scope = n->scope,
        .id = n->id,
        .account = n->account[0] ? n->account : NULL,
        .actions = n->verdict.actions,
        .msgids = idp,
        .nmsgids = nids,
    };
    live_ctl_trip(d, n); /* floodgatectl tripped; the outcome follows */
    r = action_trip(d->action, &req);
    if (r == -EBUSY)
        live_metrics_breaker(d);
    if (r < 0)
        live_ctl_trip_refused(d, n, r);
    if (r < 0 && r != -EALREADY)
        log_emit(LOG_WARNING, r, fields, "no action taken for %s %s", scope, n->id);
}

/* At most one journal line (and alert) a minute per kind of these signals. */
#define LIVE_SIGNAL_EVERY_MS 60000

/* The engine's bound: the wall clock, and the local offset for logs written in local time. */
static int64_t
live_utc_now(void *ctx)
{
    (void)ctx;
    return clock_now_ms(&clock_real);
}

/* Local time minus UTC, looked up once a minute (a DST change is a step the bound allows). */
static int64_t
live_local_offset(void *ctx)
{
    struct daemon *d = ctx;
    int64_t now = clock_now_ms(&clock_real);

    if (now >= d->gmtoff_until_ms) {
        time_t t = (time_t)(now / 1000);
        struct tm tm;
        d->gmtoff_ms = localtime_r(&t, &tm) ? (int64_t)tm.tm_gmtoff * 1000 : 0;
        d->gmtoff_until_ms = now + 60000;
    }
    return d->gmtoff_ms;
}

/* Is a journal line for this signal due? Counts the ones held back in *@quiet. */
static bool
live_signal_due(int64_t *last_mono, uint64_t *quiet)
{
    int64_t now = clock_mono_ms(&clock_real);

    if (*last_mono && now - *last_mono < LIVE_SIGNAL_EVERY_MS) {
        (*quiet)++;
        return false;
    }
    *last_mono = now;
    return true;
}

static void
live_clock_ahead(struct daemon *d, const struct engine_notice *n)
{
    char line[24];
    const struct log_field fields[] = {
        { "LOG_TIME", n->at },
        { "LOG_LINE", line },
        { NULL, NULL },
    };

    if (!live_signal_due(&d->ahead_mono, &d->ahead_quiet))
        return;
    (void)snprintf(line, sizeof(line), "%" PRIu64, n->line);
    log_emit(LOG_WARNING, 0, fields,
             "record %" PRIu64 " is dated %s, more than %d minutes ahead of the clock: counted "
             "at the current time (%" PRIu64 " more since the last report)",
             n->line, n->at, ENGINE_CLOCK_AHEAD_MS / 60000, d->ahead_quiet);
    d->ahead_quiet = 0;
}

/* Append " <scope> <id> (account <acct>)" or " an unknown writer", shown escaped. */
static void
live_identity_text(struct strbuf *b, enum usertable_scope scope, const char *id, const char *acct)
{
    if (!id[0]) {
        (void)strbuf_appends(b, "an unknown writer");
        return;
    }
    (void)strbuf_printf(b, "%s ", usertable_scope_name(scope));
    (void)strbuf_append_display(b, id, strlen(id));
    if (acct && acct[0] && strcmp(acct, id) != 0) {
        (void)strbuf_appends(b, " (account ");
        (void)strbuf_append_display(b, acct, strlen(acct));
        (void)strbuf_appends(b, ")");
    }
}

/* "what happened, by whom" for the journal and the alert; @b is reset first. */
void
live_injection_text(struct strbuf *b, const struct engine_notice *n)
{
    strbuf_reset(b);
    (void)strbuf_printf(b, "log injection (%s) at line %" PRIu64 " (%s): %s; by ",
                        engine_injection_name(n->injection), n->line, n->at,
                        engine_injection_reason(n->injection));
    live_identity_text(b, n->scope, n->id, n->account);
    if (n->other[0]) {
        (void)strbuf_appends(b, ", second reading ");
        live_identity_text(b, n->other_scope, n->other, NULL);
    }
    if (n->msgid[0])
        (void)strbuf_printf(b, ", message %s", n->msgid);
}

static void
live_injection(struct daemon *d, const struct engine_notice *n)
{
    const char *kind = engine_injection_name(n->injection);
    struct strbuf b;
    char line[24], when[24];
    const struct log_field fields[] = {
        { "MESSAGE_ID", LOG_MSGID_INJECTION },
        { "INJECTION", kind },
        { "SCOPE", n->id[0] ? usertable_scope_name(n->scope) : NULL },
        { "IDENTITY", n->id[0] ? n->id : NULL },
        { "ACCOUNT", n->account[0] ? n->account : NULL },
        { "LOG_TIME", n->at },
        { "LOG_LINE", line },
        { NULL, NULL },
    };

    (void)snprintf(line, sizeof(line), "%" PRIu64, n->line);
    (void)snprintf(when, sizeof(when), "%lld", (long long)clock_now_ms(&clock_real));
    /* the audit log has every one; the journal and the alerts one a minute per kind */
    strbuf_init(&b, 4096);
    (void)strbuf_printf(&b, "{\"event\":\"log_injection\",\"kind\":\"%s\",\"scope\":", kind);
    live_json_str_or_null(&b, n->id[0] ? usertable_scope_name(n->scope) : "");
    (void)strbuf_appends(&b, ",\"id\":");
    live_json_str_or_null(&b, n->id);
    (void)strbuf_appends(&b, ",\"account\":");
    live_json_str_or_null(&b, n->account);
    if (n->other[0]) {
        (void)strbuf_printf(&b, ",\"other_scope\":\"%s\",\"other_id\":\"",
                            usertable_scope_name(n->other_scope));
        (void)strbuf_append_json(&b, n->other, strlen(n->other));
        (void)strbuf_appends(&b, "\"");
    }
    (void)strbuf_printf(&b,
                        ",\"at\":\"%s\",\"line\":%" PRIu64
                        ",\"msgid\":\"%s\",\"detected_at\":%s}\n",
                        n->at, n->line, n->msgid, when);
    live_audit(d, strbuf_cstr(&b));
    if (live_signal_due(&d->inj_mono[n->injection], &d->inj_quiet[n->injection])) {
        live_injection_text(&b, n);
        if (d->inj_quiet[n->injection])
            (void)strbuf_printf(&b, " (%" PRIu64 " more of this kind since the last report)",
                                d->inj_quiet[n->injection]);
        log_emit(LOG_WARNING, 0, fields, "%s", strbuf_cstr(&b));
        live_alert_injection(d, n, d->inj_quiet[n->injection]);
        d->inj_quiet[n->injection] = 0;
    }
    strbuf_done(&b);
}

static void
live_on_record(void *ctx, const struct eximlog_record *rec)
{
    struct daemon *d = ctx;
    struct engine_notice *notes = d->notes;
    size_t n = engine_feed(d->engine, rec, ++d->lines, notes, N_ELEMS(d->notes));

    d->dirty = true;
    d->last_record_mono = clock_mono_ms(&clock_real);
    for (size_t i = 0; i < n; i++) {
        if (notes[i].kind == ENGINE_TRIP) {
            live_trip(d, &notes[i], rec);
        } else if (notes[i].kind == ENGINE_FROZEN_BY_ACL) {
            (void)action_adopt_frozen(d->action, notes[i].scope, notes[i].id, notes[i].msgid);
        } else if (notes[i].kind == ENGINE_CLOCK_AHEAD) {
            live_clock_ahead(d, &notes[i]);
        } else if (notes[i].kind == ENGINE_INJECTION) {
            live_injection(d, &notes[i]);
        } else if (action_is_active(d->action, notes[i].scope, notes[i].id)) {
            /* until the block shows in the log, new arrivals are still accepted */
            const char *one = notes[i].msgid;
            (void)action_freeze_more(d->action, notes[i].scope, notes[i].id, &one, 1);
        }
    }
}

/* --- state ----------------------------------------------------------------------- */

static int
live_state_write(void *ctx, const void *p, size_t n)
{
    return strbuf_append(ctx, p, n);
}

/* Append "<n>\n" and the dispatcher's n bytes of encoding to @b. */
static int
live_state_alerts(struct daemon *d, struct strbuf *b)
{
    struct strbuf a;
    int r;

    if (!d->alerts)
        return strbuf_appends(b, "0\n");
    strbuf_init(&a, LIVE_STATE_MAX);
    r = dispatch_encode(d->alerts, &a);
    if (r == 0)
        r = strbuf_printf(b, "%zu\n", a.len);
    if (r == 0)
        r = strbuf_append(b, a.p, a.len);
    strbuf_done(&a);
    return r;
}

/*
 * Serialize the tail position, the counters and the alerts not yet delivered, as they are
 * now, into one state file: an alert produced by a line is durable with the position past it.
 */
static int
live_state_save(struct daemon *d, const struct tail_pos *pos)
{
    char text[STATE_CHECKPOINT_MAX];
    struct strbuf b;
    int r = state_checkpoint_encode(pos, text, sizeof(text));

    if (r < 0)
        return r;
    strbuf_init(&b, LIVE_STATE_MAX);
    r = strbuf_appends(&b, LIVE_STATE_MAGIC);
    if (r == 0)
        r = strbuf_printf(&b, "%zu\n%s%zu\n", strlen(text), text, d->cfg->nrules);
    /* the rule names: an identity's trips are rule positions, remapped by name on load */
    for (size_t i = 0; i < d->cfg->nrules && r == 0; i++)
        r = strbuf_printf(&b, "%s\n", d->cfg->rules[i].name);
    /* the alert dispatcher: "<length>\n<its encoding>" (0 without alerting) */
    if (r == 0)
        r = live_state_alerts(d, &b);
    if (r == 0)
        r = usertable_save(engine_table(d->engine), live_state_write, &b);
    if (r == 0)
        r = state_write_atomic(d->cfg->state_dir, LIVE_STATE_FILE, b.p, b.len, STATE_KEEP_PREV);
    strbuf_done(&b);
    return r;
}

static void
live_checkpoint_done(struct daemon *d, int r)
{
    live_metrics_commit(d, r == 0);
    if (r < 0 && !d->state_failing)
        log_emit(LOG_ERR, r, NULL,
                 "cannot write the checkpoint in %s; still counting, "
                 "a restart would read the lines since the last good one again",
                 d->cfg->state_dir);
    else if (r == 0 && d->state_failing)
        log_emit(LOG_NOTICE, 0, NULL, "checkpoint in %s written again", d->cfg->state_dir);
    d->state_failing = r < 0;
    if (r < 0) {
        d->dirty = true; /* try again at the next tick */
        /* Gated alerts wait for a checkpoint that does not come: say so from memory. */
        if (++d->state_failures >= LIVE_STATE_FAIL_ALERT)
            live_alert_state_failing(d, r);
    } else {
        d->state_failures = 0;
        if (d->state_alerted)
            live_alert_state_recovered(d);
        d->have_state = true;
        if (d->alerts)
            dispatch_commit_done(d->alerts, d->alert_token); /* what it held may be sent */
    }
}

static void
live_saver_cb(struct ev_loop *loop, ev_child *w, int revents)
{
    struct daemon *d = w->data;
    int st = w->rstatus;

    (void)revents;
    ev_child_stop(loop, w);
    d->saver_pid = 0;
    /* Each save forks a copy of the table and makes the loop's next writes to it page
     * faults: at 1M identities one takes ~0.3 s of CPU. Spaced by LIVE_SAVER_SPACING times
     * its own duration, saving takes at most a quarter of the time, whatever the table
     * size; a small table still saves every LIVE_CHECKPOINT_MS. */
    {
        int64_t now = clock_mono_ms(&clock_real);
        d->saver_next_mono = now + (now - d->saver_mono) * LIVE_SAVER_SPACING;
    }
    /* the writer exits with the errno of its failure (see live_checkpoint_now()) */
    live_checkpoint_done(d, !WIFEXITED(st) ? -EIO : -WEXITSTATUS(st));
    /* alerts queued while it ran wait for a save: start the next one now */
    if (d->alert_kick)
        (void)live_checkpoint_now(d, false);
}

/*
 * The checkpoint writer runs LIVE_SAVER_NICE below the daemon: on a busy machine (a few
 * cores, a log at 50k lines/s) serializing a large table must not take the CPU from the
 * loop that reads the log, or every record waits behind the save.
 */
static void
live_saver_yield(void)
{
    int prio;

    errno = 0;
    prio = getpriority(PRIO_PROCESS, 0);
    if (prio == -1 && errno != 0)
        return;
    (void)setpriority(PRIO_PROCESS, 0, prio + LIVE_SAVER_NICE > 19 ? 19 : prio + LIVE_SAVER_NICE);
}

/*
 * Checkpoint without stopping the loop: a forked child serializes the counters as they
 * were at the fork (copy-on-write, the position taken at the same instant) and writes the
 * state file, while the parent goes on reading. Saving 200k identities in the loop itself
 * took 50-90 ms every second (redis's BGSAVE has the same shape). @sync: in this process,
 * for shutdown, or when fork() fails.
 */
int
live_checkpoint_now(struct daemon *d, bool sync)
{
    struct tail_pos pos;
    pid_t pid;
    int r;

    if (!d->tail)
        return 0;
    if (d->saver_pid > 0 && !sync)
        return 0; /* the previous save is still running; the next tick tries again */
    if (!sync && !d->alert_kick && clock_mono_ms(&clock_real) < d->saver_next_mono)
        return 0; /* a slow save (a large table) is spaced out, unless alerts wait for it */
    tail_position(d->tail, &pos);
    if (pos.ino == 0) {
        /* No log file yet, so no position to save with them: alerts (a health alert saying
         * so, typically) go out unsaved rather than wait for a file that may never come. */
        if (d->alerts)
            dispatch_commit_done(d->alerts, dispatch_commit_begin(d->alerts));
        d->alert_kick = false;
        return 0;
    }
    d->dirty = false;
    d->alert_kick = false;
    if (d->alerts)
        d->alert_token = dispatch_commit_begin(d->alerts);
    if (!sync) {
        pid_t parent = getpid();
        pid = fork();
        if (pid == 0) {
            /* dies with the daemon: an orphan must neither hold the state lock against
             * the next daemon nor race it on the state file */
            (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (d->lock_fd >= 0)
                (void)close(d->lock_fd); /* the parent's descriptor keeps the lock */
            if (getppid() != parent)
                _exit(EINTR);
            live_saver_yield();
            r = live_state_save(d, &pos);
            /* the exit status is the errno (they are all below 256 on Linux), so the
             * parent can name it in the health alert */
            if (r < 0)
                log_emit(LOG_ERR, r, NULL, "checkpoint writer: cannot save the state");
            _exit(r >= 0 ? 0 : -r < 256 ? -r : EIO);
        }
        if (pid > 0) {
            d->saver_pid = pid;
            d->saver_mono = clock_mono_ms(&clock_real);
            ev_child_set(&d->saver, pid, 0);
            ev_child_start(d->loop, &d->saver);
            return 0;
        }
        log_emit(LOG_WARNING, -errno, NULL, "fork for the checkpoint failed; saving inline");
    }
    r = live_state_save(d, &pos);
    live_checkpoint_done(d, r);
    return r;
}

/* Wait for a background save in flight (shutdown), so the final one is the last word. */
static void
live_saver_wait(struct daemon *d)
{
    int st;

    if (d->saver_pid <= 0)
        return;
    ev_child_stop(d->loop, &d->saver);
    while (waitpid(d->saver_pid, &st, 0) < 0 && errno == EINTR)
        ;
    d->saver_pid = 0;
}

/* Read "<n>\n" and n rule names, one a line, NUL-terminating them in place. */
static int
live_state_rule_names(char **pp, const char *end, char **names, size_t *ret_n)
{
    char *p = *pp, *nl = memchr(p, '\n', (size_t)(end - p));
    uint64_t n;

    if (!nl || util_parse_u64(p, (size_t)(nl - p), &n) < 0 || n > CONFIG_RULES_MAX)
        return -EBADMSG;
    p = nl + 1;
    for (size_t i = 0; i < n; i++) {
        nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return -EBADMSG;
        *nl = '\0';
        names[i] = p;
        p = nl + 1;
    }
    *pp = p;
    *ret_n = (size_t)n;
    return 0;
}

/* A "<n>\n" and n bytes section at *@pp: *@ret points at the bytes, *@pp past them. */
static int
live_state_section(char **pp, const char *end, char **ret, size_t *ret_len)
{
    char *p = *pp, *nl = memchr(p, '\n', (size_t)(end - p));
    uint64_t v;

    if (!nl || util_parse_u64(p, (size_t)(nl - p), &v) < 0 || v > (uint64_t)(end - nl - 1))
        return -EBADMSG;
    *ret = nl + 1;
    *ret_len = (size_t)v;
    *pp = nl + 1 + v;
    return 0;
}

/*
 * The alerts not yet delivered, from state file @name. Counters and position are restored
 * even when this part cannot be: a log line says what was lost.
 */
static void
live_state_load_alerts(struct daemon *d, const char *name, const char *p, size_t len)
{
    int r;

    if (len == 0)
        return;
    if (!d->alerts) {
        log_emit(LOG_NOTICE, 0, NULL,
                 "%s/%s: alerts were pending, but no alert destination is configured now; "
                 "they are dropped",
                 d->cfg->state_dir, name);
        return;
    }
    r = dispatch_decode(d->alerts, p, len);
    if (r < 0)
        log_emit(LOG_ERR, r, NULL, "%s/%s: the pending alerts are damaged and dropped",
                 d->cfg->state_dir, name);
}

/*
 * Restore counters and position from state file @name. Returns 0 (restored, or no file:
 * *ret_pos.ino stays 0), -EBADMSG (corrupt: nothing restored), or -errno of the read.
 */
static int
live_state_load_file(struct daemon *d, const char *name, struct tail_pos *ret_pos)
{
    char *buf = NULL, *p, *end, *text, *names[CONFIG_RULES_MAX], *alerts = NULL;
    size_t len = 0, tlen, nnames = 0, alen = 0;
    int version;
    int r;

    memset(ret_pos, 0, sizeof(*ret_pos));
    r = state_read_file(d->cfg->state_dir, name, LIVE_STATE_MAX, &buf, &len);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    p = buf;
    end = buf + len;
    r = -EBADMSG;
    if (len >= strlen(LIVE_STATE_MAGIC) && memcmp(p, LIVE_STATE_MAGIC, strlen(LIVE_STATE_MAGIC)) == 0)
        version = 3;
    else if (len >= strlen(LIVE_STATE_MAGIC_2) &&
             memcmp(p, LIVE_STATE_MAGIC_2, strlen(LIVE_STATE_MAGIC_2)) == 0)
        version = 2;
    else
        goto bad;
    p += strlen(LIVE_STATE_MAGIC); /* both versions' lines are as long */
    if (live_state_section(&p, end, &text, &tlen) < 0)
        goto bad;
    r = state_checkpoint_decode(text, tlen, ret_pos);
    if (r < 0)
        goto bad;
    r = live_state_rule_names(&p, end, names, &nnames);
    if (r < 0)
        goto bad;
    if (version >= 3 && live_state_section(&p, end, &alerts, &alen) < 0)
        goto bad;
    r = usertable_load(engine_table(d->engine), p, (size_t)(end - p));
    if (r < 0)
        goto bad;
    engine_remap_trips(d->engine, (const char *const *)names, nnames);
    live_state_load_alerts(d, name, alerts, alen);
    free(buf);
    return 0;
bad:
    free(buf);
    memset(ret_pos, 0, sizeof(*ret_pos));
    return -EBADMSG;
}

/*
 * Restore the newest usable state: "state", else the generation before it ("state.prev",
 * kept by every write), else start afresh. A corrupt file must not make the daemon skip
 * to the end of the log when the one before it can still say where it was.
 */
static int
live_state_load(struct daemon *d, struct tail_pos *ret_pos)
{
    static const char *const names[] = { LIVE_STATE_FILE, LIVE_STATE_FILE ".prev" };
    int r = 0;

    for (size_t i = 0; i < N_ELEMS(names); i++) {
        r = live_state_load_file(d, names[i], ret_pos);
        if (r == 0 && (ret_pos->ino || i + 1 == N_ELEMS(names)))
            break;
        if (r == 0)
            continue; /* no "state": try the generation before it */
        log_emit(LOG_ERR, r, NULL, "%s/%s: %s", d->cfg->state_dir, names[i],
                 r == -EBADMSG ? "corrupt, not used" : "cannot read");
    }
    if (r < 0 && r != -EBADMSG)
        return r;
    if (ret_pos->ino == 0 && r == -EBADMSG)
        log_emit(LOG_ERR, 0, NULL, "no usable state in %s: counters start empty",
                 d->cfg->state_dir);
    return 0;
}

/* --- systemd and timers ---------------------------------------------------------- */

static void
live_notify_status(struct daemon *d)
{
    const struct engine_stats *st = engine_stats(d->engine);
    int64_t mono = clock_mono_ms(&clock_real), idle_s = -1;
    double rate = 0;

    if (mono > d->status_mono)
        rate = (double)(d->lines - d->status_lines) * 1000.0 / (double)(mono - d->status_mono);
    d->status_lines = d->lines;
    d->status_mono = mono;
    /* the log's times are local and zoneless: compare monotonic clocks, not wall to log */
    if (d->last_record_mono > 0)
        idle_s = (mono - d->last_record_mono) / 1000;
    (void)sd_notifyf(0,
                     "STATUS=%s; %.0f records/s, last record %llds ago, %zu identities, "
                     "%" PRIu64 " trips",
                     d->ready ? "following" : "catching up", rate, (long long)idle_s,
                     usertable_count(engine_table(d->engine)), st->trips);
}

static void
live_checkpoint_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct daemon *d = w->data;

    (void)loop;
    (void)revents;
    if (!d->ready && tail_caught_up(d->tail)) {
        d->ready = true;
        log_emit(LOG_INFO, 0, NULL, "caught up with %s", d->cfg->log_file);
        (void)sd_notify(0, "READY=1");
        live_notify_status(d);
    }
    /* A first start begins at the end of the log: record that position at once and in
     * this process (a background writer dies with us), or a crash before the first
     * checkpoint would restart at the then end and skip the lines in between. */
    if (!d->have_state)
        (void)live_checkpoint_now(d, true);
    else if (d->dirty || (d->alerts && dispatch_dirty(d->alerts)))
        (void)live_checkpoint_now(d, false);
}

static void
live_status_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    live_notify_status(w->data);
    live_alert_tick(w->data);
}

static void
live_watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    (void)sd_notify(0, "WATCHDOG=1");
}

static void
live_stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    log_emit(LOG_INFO, 0, NULL, "signal %d: checkpointing and stopping", w->signum);
    (void)sd_notify(0, "STOPPING=1");
    ev_break(loop, EVBREAK_ALL);
}

static bool
live_owner_cb(void *ctx, struct fg_str domain, const char *account)
{
    struct daemon *d = ctx;
    const char *owner = attrib_maps_owner(d->maps, domain);

    return owner && strcmp(owner, account) == 0;
}

static void
live_action_done_cb(void *ctx, const struct action_outcome *o)
{
    const struct log_field fields[] = {
        { "MESSAGE_ID", LOG_MSGID_ACTION },
        { "RULE", o->rule },
        { "SCOPE", usertable_scope_name(o->scope) },
        { "IDENTITY", o->id },
        { NULL, NULL },
    };

    struct daemon *d = ctx;
    char target[1024];

    live_metrics_action(ctx, o);
    live_alert_outcome(ctx, o);
    live_ctl_outcome(ctx, o);
    live_backend_target(d->cfg, o->scope, target, sizeof(target));
    if (strcmp(o->what, "release") == 0) {
        /* for a release, frozen counts the ids thawed and backend_done what was undone */
        log_emit(o->backend_err < 0 || o->remaining ? LOG_WARNING : LOG_NOTICE, o->backend_err,
                 fields, "release %s %s: %zu thawed, %zu failed%s%s%s%s",
                 usertable_scope_name(o->scope), o->id, o->frozen, o->failed,
                 (o->backend_done & CONFIG_ACTION_SUSPEND) ? ", unsuspended"
                 : (o->backend_done & CONFIG_ACTION_HOLD)  ? ", unheld"
                                                           : "",
                 o->backend_err < 0 ? "; FAILED: undoing it through " : "",
                 o->backend_err < 0 ? target : "",
                 o->remaining ? "; not finished, release it again to retry" : "");
        if (o->ledger_err < 0)
            log_emit(LOG_ERR, o->ledger_err, fields,
                     "release %s %s: the ledger cannot record it; after a restart it is listed "
                     "as held again (a release then has nothing left to undo)",
                     usertable_scope_name(o->scope), o->id);
        return;
    }
    if (o->unconfirmed) {
        log_emit(LOG_WARNING, 0, fields,
                 "%s %s %s: %snothing held: none of the %zu messages named in the log is "
                 "confirmed in Exim's spool as the identity's; an operator decides (floodgatectl "
                 "hold or release)",
                 o->what, usertable_scope_name(o->scope), o->id, o->monitor ? "monitor mode: " : "",
                 o->candidates);
        return;
    }
    if (o->ledger_err < 0 && o->backend_done == 0 && o->frozen == 0) {
        log_emit(LOG_ERR, o->ledger_err, fields,
                 "%s %s %s: could not act: ledger write failed; nothing was done", o->what,
                 usertable_scope_name(o->scope), o->id);
        return;
    }
    log_emit(o->backend_err < 0 || o->failed ? LOG_WARNING : LOG_NOTICE, o->backend_err, fields,
             "%s %s %s: %s%zu frozen of %zu confirmed, %zu failed%s%s%s%s", o->what,
             usertable_scope_name(o->scope), o->id, o->monitor ? "monitor mode, would act: " : "",
             o->frozen, o->confirmed, o->failed,
             (o->backend_done & CONFIG_ACTION_SUSPEND) ? ", suspended"
             : (o->backend_done & CONFIG_ACTION_HOLD)  ? ", held"
                                                       : "",
             o->backend_preexisting ? " (already in force by others)" : "",
             o->backend_err < 0 ? "; FAILED: hold or suspension through " : "",
             o->backend_err < 0 ? target : "");
}

/* /etc/exim_outgoing.conf: cPanel's outgoing instance when MailScanner-style setups use it */

static int
live_action_open(struct daemon *d, const struct config *cfg, struct action **ret)
{
    struct action_params ap = {
        .loop = d->loop,
        .clock = &clock_real,
        .cfg = cfg,
        .state_dir = cfg->state_dir,
        .spawner = d->spawner,
        .audit = live_audit_cb,
        .audit_ctx = d,
        .done = live_action_done_cb,
        .done_ctx = d,
        .owner = live_owner_cb,
        .owner_ctx = d,
        /* only when actions.exim_config is unset: lib/action prefers the config's */
        .exim_config = access(LIVE_EXIM_OUTGOING_CONF, R_OK) == 0 ? LIVE_EXIM_OUTGOING_CONF : NULL,
    };

    return action_open(&ap, ret);
}

/*
 * The log followed, the state directory (and its lock), the audit log and the control
 * socket are bound at start: a reload keeps the running ones, says so, and applies the
 * rest. Half-applying them would checkpoint into an unlocked directory, open an empty
 * ledger there, and report a log the daemon does not follow.
 */
static int
live_keep_bound_paths(struct daemon *d, struct config *next)
{
    struct {
        const char *key;
        char **now, *running;
    } bound[] = {
        { "log_file", &next->log_file, d->cfg->log_file },
        { "state_dir", &next->state_dir, d->cfg->state_dir },
        { "audit_log", &next->audit_log, d->cfg->audit_log },
        { "control_socket", &next->control_socket, d->cfg->control_socket },
    };

    for (size_t i = 0; i < N_ELEMS(bound); i++) {
        char *keep;
        if (strcmp(*bound[i].now, bound[i].running) == 0)
            continue;
        keep = strdup(bound[i].running);
        if (!keep)
            return -ENOMEM;
        log_emit(LOG_WARNING, 0, NULL, "reload: %s changes need a restart; still using %s",
                 bound[i].key, bound[i].running);
        free(*bound[i].now);
        *bound[i].now = keep;
    }
    return 0;
}

/*
 * A reload that failed at step @what (NULL: reading the config): log it with @why when
 * given, tell the caller (@out) why (@why, or the error, after "<what>: "), return @r.
 */
static int
live_reload_failed(char *out, size_t size, int r, const char *what, const char *why)
{
    const struct log_field fields[] = { { "MESSAGE_ID", LOG_MSGID_RELOAD }, { NULL, NULL } };

    log_emit(LOG_ERR, r, fields, "reload failed%s%s%s, keeping the running config%s%s",
             what ? " (" : "", what ? what : "", what ? ")" : "", why ? ": " : "",
             why ? why : "");
    if (out && what)
        (void)snprintf(out, size, "%s: %s", what, strerror(-r));
    else if (out)
        (void)snprintf(out, size, "%s", why ? why : strerror(-r));
    return r;
}

int
live_reload(struct daemon *d, char *out, size_t size)
{
    struct config *next = NULL;
    struct attrib_maps *maps = NULL;
    struct live_dnsbl_next dn = { 0 };
    struct diag diag;
    char msg[sizeof(diag.file) + sizeof(diag.msg) + 128];
    const struct log_field fields[] = { { "MESSAGE_ID", LOG_MSGID_RELOAD }, { NULL, NULL } };
    int r, e;

    live_metrics_reload_begin(d);
    memset(&diag, 0, sizeof(diag));
    r = config_load(d->config_path, &next, &diag);
    if (r < 0) {
        diag_format(&diag, msg, sizeof(msg));
        return live_reload_failed(out, size, r, NULL, msg);
    }
    r = live_keep_bound_paths(d, next);
    if (r == 0 && daemon_preflight(next, "reload") > 0) {
        config_free(next);
        return live_reload_failed(out, size, -EINVAL, "preflight",
                                  "a path the new config needs is missing or wrong (see the "
                                  "journal)");
    }
    if (r == 0)
        r = daemon_maps_load(next, d->key, &maps);
    if (r == 0 && (r = live_dnsbl_reload_prepare(d, next, &dn)) < 0)
        attrib_maps_free(maps);
    if (r < 0) {
        config_free(next);
        return live_reload_failed(out, size, r, NULL, NULL);
    }
    /* The running action instance takes the new config in place: a second instance would
     * drop the queue and the breaker's count, and freeing the old one would leave a command
     * in flight calling back into freed memory. */
    r = action_set_config(d->action, next);
    if (r < 0) {
        live_dnsbl_reload_abort(&dn);
        attrib_maps_free(maps);
        config_free(next);
        return live_reload_failed(out, size, r, "actions",
                                  r == -EBUSY ? "backend changed while requests are queued, retry"
                                              : NULL);
    }
    r = engine_set_config(d->engine, next);
    if (r < 0) {
        /* the old config was accepted before and nothing ran since: this cannot fail */
        (void)action_set_config(d->action, d->cfg);
        live_dnsbl_reload_abort(&dn);
        attrib_maps_free(maps);
        config_free(next);
        return live_reload_failed(out, size, r, NULL, NULL);
    }
    /* The alert dispatcher takes the new destinations in place (its outbox and incidents
     * survive) last: it drops a removed destination's queue, which no rollback restores.
     * It borrows the config, so a failure here (memory) puts everything back. */
    e = live_alert_reload(d, next);
    if (e < 0) {
        (void)action_set_config(d->action, d->cfg);
        (void)engine_set_config(d->engine, d->cfg);
        live_dnsbl_reload_abort(&dn);
        attrib_maps_free(maps);
        config_free(next);
        return live_reload_failed(out, size, e, "alerts", NULL);
    }
    engine_set_maps(d->engine, maps);
    attrib_maps_free(d->maps);
    d->maps = maps;
    config_free(d->cfg);
    d->cfg = next;
    live_dnsbl_reload_apply(d, &dn);
    live_frozen_reload(d);
    live_metrics_reload_applied(d);
    log_emit(LOG_NOTICE, 0, fields, "reloaded %s: %zu rules, mode %s%s", d->config_path,
             next->nrules, next->mode == CONFIG_MODE_MONITOR ? "monitor" : "enforce",
             r == 1 ? " (new windows: counters restarted)" : "");
    live_ctl_reconfigure(d);
    if (out)
        (void)snprintf(out, size, "reloaded %s: %zu rules", d->config_path, next->nrules);
    return 0;
}

static void
live_hup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct daemon *d = w->data;

    (void)loop;
    (void)revents;
    /* Before the first catch-up the unit is still starting: READY=1 here would end the
     * start before the backlog is read. live_checkpoint_cb() sends it when caught up. */
    if (!d->ready) {
        (void)live_reload(d, NULL, 0);
        return;
    }
    (void)sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%lld",
                     (long long)clock_mono_ms(&clock_real) * 1000);
    (void)live_reload(d, NULL, 0);
    (void)sd_notify(0, "READY=1");
}

/* --- start and stop ---------------------------------------------------------------- */

static void
live_free(struct daemon *d)
{
    live_metrics_free(d);
    live_dnsbl_free(d);
    live_frozen_free(d);
    live_ctl_close(d);
    live_alert_free(d);
    tail_free(d->tail);
    action_free(d->action);
    spawner_free(d->spawner);
    engine_free(d->engine);
    attrib_maps_free(d->maps);
    if (d->audit_fd >= 0)
        (void)close(d->audit_fd);
    if (d->lock_fd >= 0)
        (void)close(d->lock_fd);
    config_free(d->cfg);
}

static int
live_open_audit(struct daemon *d)
{
    char dir[CONFIG_PATH_MAX];
    char *slash;

    (void)snprintf(dir, sizeof(dir), "%s", d->cfg->audit_log);
    slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        (void)mkdir(dir, 0750);
    }
    d->audit_fd = open(d->cfg->audit_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (d->audit_fd < 0)
        return log_emit(LOG_ERR, -errno, NULL, "%s: cannot open the audit log", d->cfg->audit_log);
    return 0;
}

int
live_main(const char *config_path, struct config *cfg)
{
    struct daemon d = { .config_path = config_path, .cfg = cfg, .lock_fd = -1, .audit_fd = -1 };
    struct engine_params ep;
    struct tail_pos pos;
    uint64_t wd_usec = 0;
    int r;

    d.loop = EV_DEFAULT;
    d.start_wall_ms = clock_now_ms(&clock_real);
    daemon_random_key(d.key);
    if (daemon_preflight(cfg, "start") > 0) {
        r = -EINVAL;
        goto out;
    }
    if (mkdir(cfg->state_dir, 0750) < 0 && errno != EEXIST) {
        r = log_emit(LOG_ERR, -errno, NULL, "%s: cannot create the state directory",
                     cfg->state_dir);
        goto out;
    }
    r = state_lock(cfg->state_dir, &d.lock_fd);
    if (r < 0) {
        log_emit(LOG_ERR, r, NULL, "%s: another floodgated holds this state directory",
                 cfg->state_dir);
        goto out;
    }
    r = daemon_maps_load(cfg, d.key, &d.maps);
    if (r < 0)
        goto out;
    d.wall = (struct engine_wall){ live_utc_now, live_local_offset, &d };
    ep = (struct engine_params){ .cfg = cfg, .maps = d.maps, .wall = &d.wall };
    memcpy(ep.key, d.key, SIPHASH_KEY_LEN);
    r = engine_new(&ep, &d.engine);
    if (r < 0)
        goto out;
    r = live_open_audit(&d);
    if (r < 0)
        goto out;
    d.spawner = spawner_new(d.loop, cfg->state_dir, &r);
    if (!d.spawner)
        goto out;
    r = live_action_open(&d, cfg, &d.action);
    if (r < 0) {
        log_emit(LOG_ERR, r, NULL, "cannot start the actions");
        goto out;
    }
    r = live_alert_open(&d);
    if (r < 0)
        goto out;
    r = live_dnsbl_open(&d);
    if (r == 0)
        r = live_frozen_open(&d);
    if (r < 0)
        goto out;
    r = live_state_load(&d, &pos);
    if (r < 0)
        goto out;
    d.have_state = pos.ino != 0;
    live_ctl_uid_warning(&d);
    r = live_ctl_open(&d);
    if (r < 0)
        log_emit(LOG_WARNING, r, NULL,
                 "%s: control socket unavailable; floodgatectl will "
                 "not reach this daemon",
                 cfg->control_socket);
    struct tail_params tp = {
        .loop = d.loop,
        .path = cfg->log_file,
        .clock = &clock_real,
        .on_record = live_on_record,
        .ctx = &d,
        .resume = pos.ino ? &pos : NULL,
    };
    r = tail_open(&tp, &d.tail);
    if (r < 0) {
        log_emit(LOG_ERR, r, NULL, "%s: cannot follow", cfg->log_file);
        goto out;
    }

    r = live_metrics_open(&d);
    if (r < 0) {
        log_emit(LOG_ERR, r, NULL, "cannot start the metrics");
        goto out;
    }

    ev_child_init(&d.saver, live_saver_cb, 0, 0);
    d.saver.data = &d;
    ev_signal_init(&d.sighup, live_hup_cb, SIGHUP);
    ev_signal_init(&d.sigterm, live_stop_cb, SIGTERM);
    ev_signal_init(&d.sigint, live_stop_cb, SIGINT);
    d.sighup.data = d.sigterm.data = d.sigint.data = &d;
    ev_signal_start(d.loop, &d.sighup);
    ev_signal_start(d.loop, &d.sigterm);
    ev_signal_start(d.loop, &d.sigint);
    ev_timer_init(&d.checkpoint, live_checkpoint_cb, 0.05, LIVE_CHECKPOINT_MS / 1000.0);
    ev_timer_init(&d.status, live_status_cb, LIVE_STATUS_MS / 1000.0, LIVE_STATUS_MS / 1000.0);
    d.checkpoint.data = d.status.data = d.watchdog.data = &d;
    ev_timer_start(d.loop, &d.checkpoint);
    ev_timer_start(d.loop, &d.status);
    if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0) {
        ev_timer_init(&d.watchdog, live_watchdog_cb, 0, (double)wd_usec / 2e6);
        ev_timer_start(d.loop, &d.watchdog);
    }
    d.status_mono = clock_mono_ms(&clock_real);
    log_emit(LOG_INFO, 0, NULL, "following %s (%s mode, %zu rules, state in %s)", cfg->log_file,
             cfg->mode == CONFIG_MODE_MONITOR ? "monitor" : "enforce", cfg->nrules, cfg->state_dir);

    ev_run(d.loop, 0);

    live_saver_wait(&d);
    r = live_checkpoint_now(&d, true);
    live_metrics_flush(&d);
    ev_signal_stop(d.loop, &d.sighup);
    ev_signal_stop(d.loop, &d.sigterm);
    ev_signal_stop(d.loop, &d.sigint);
    ev_timer_stop(d.loop, &d.checkpoint);
    ev_timer_stop(d.loop, &d.status);
    ev_timer_stop(d.loop, &d.watchdog);
out:
    live_free(&d);
    return r < 0 ? 1 : 0;
}
