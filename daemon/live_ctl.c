/*
 * live_ctl.c - the control socket's handlers: each floodgatectl request is answered from
 * the running daemon's modules (lib/ctl parses the request, checks the peer and guards the
 * socket; lib/engine, lib/action and the alert wiring hold the answers).
 *
 * Lists are capped (LIVE_CTL_LIST_MAX identities, LIVE_CTL_QUEUED_SHOWN message ids) so an
 * answer fits CTL_RESPONSE_MAX; a cut list says so with "truncated". Times named *_ms are
 * wall-clock epoch milliseconds, except *_log_ms: the log's own (zoneless) timestamps.
 */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "live.h"
#include "log.h"
#include "usertable.h"

#ifndef FLOODGATE_VERSION
#define FLOODGATE_VERSION "unknown"
#endif

#define LIVE_CTL_LIST_MAX     200  /* identities in one held answer */
#define LIVE_CTL_QUEUED_SHOWN 20   /* recent queued message ids in one show answer */
#define LIVE_CTL_TEST_S       30.0 /* test-alert waits this long for every destination */
#define LIVE_CTL_MANUAL_RULE  "manual"
#define LIVE_CTL_NSS_BUF      16384u      /* first buffer for getgrnam_r and getpwnam_r */
#define LIVE_CTL_NSS_BUF_MAX  (16u << 20) /* grown on ERANGE up to this */

/* A test-alert request collecting one result per destination. */
struct live_ctl_test {
    struct live_ctl_test *next;
    struct daemon *d;
    uint64_t token;
    size_t expect, got;
    bool failed;
    bool answered; /* the client has its answer (or the deadline passed) */
    bool in_call;  /* inside live_alert_test(): results may arrive synchronously */
    struct strbuf results;
    ev_timer deadline;
};

static int
live_ctl_str(struct strbuf *out, const char *key, const char *val)
{
    int r = strbuf_printf(out, "\"%s\":\"", key);

    if (r == 0)
        r = strbuf_append_json(out, val, strlen(val));
    return r < 0 ? r : strbuf_appends(out, "\"");
}

static const char *
live_ctl_mode(const struct daemon *d)
{
    return d->cfg->mode == CONFIG_MODE_MONITOR ? "monitor" : "enforce";
}

/* --- top ---------------------------------------------------------------------------- */

static int
live_ctl_top(struct daemon *d, const struct ctl_request *req, struct strbuf *out)
{
    const struct usertable_params *up = usertable_params(engine_table(d->engine));
    struct engine_top_row *rows = calloc(req->n, sizeof(*rows));
    size_t tables = 0;
    int r;

    if (!rows)
        return -ENOMEM;
    r = strbuf_printf(out, "{\"now_log_ms\":%lld,\"tables\":[",
                      (long long)engine_now_ms(d->engine));
    for (int s = 0; s < SCOPE__MAX && r == 0; s++) {
        if (!req->any_scope && (enum usertable_scope)s != req->scope)
            continue;
        for (size_t i = 0; i < up->nseries[s] && r == 0; i++) {
            const struct usertable_series *se = &up->series[s][i];
            size_t n;
            if (req->window_ms && se->window_ms != req->window_ms)
                continue;
            n = engine_top(d->engine, (enum usertable_scope)s, i, rows, req->n);
            r = strbuf_printf(out,
                              "%s{\"scope\":\"%s\",\"metric\":\"%s\",\"window_ms\":%lld,"
                              "\"rows\":[",
                              tables++ ? "," : "", usertable_scope_name((enum usertable_scope)s),
                              window_metric_name(se->metric), (long long)se->window_ms);
            for (size_t k = 0; k < n && r == 0; k++) {
                r = strbuf_appends(out, k ? ",{" : "{");
                if (r == 0)
                    r = live_ctl_str(out, "id", rows[k].id);
                if (r == 0)
                    r = strbuf_printf(out, ",\"value\":%" PRIu64 "}", rows[k].value);
            }
            if (r == 0)
                r = strbuf_appends(out, "]}");
        }
    }
    free(rows);
    if (r == -E2BIG) {
        strbuf_reset(out);
        (void)strbuf_appends(out, "answer too large: narrow it with --scope, --window or -n");
        return r;
    }
    if (r == 0 && tables == 0) {
        strbuf_reset(out);
        (void)strbuf_appends(out, req->window_ms ? "no rule of that scope uses that window"
                                                 : "no rule counts that scope");
        return -EINVAL;
    }
    return r < 0 ? r : strbuf_appends(out, "]}");
}

/* --- held and show ------------------------------------------------------------------ */

/* What the record stands for: the backend step wanted, else the mail frozen, else none. */
static const char *
live_ctl_what(const struct action_info *in)
{
    return (in->want & CONFIG_ACTION_SUSPEND) ? "suspend"
           : (in->want & CONFIG_ACTION_HOLD)  ? "hold"
           : in->nfrozen                      ? "freeze"
                                              : "none";
}

/* One action record as the members of a JSON object (no braces). */
static int
live_ctl_info(struct strbuf *out, const struct action_info *in)
{
    int r = strbuf_printf(out, "\"scope\":\"%s\",", usertable_scope_name(in->scope));

    if (r == 0)
        r = live_ctl_str(out, "id", in->id);
    if (r == 0)
        r = strbuf_appends(out, ",");
    if (r == 0)
        r = live_ctl_str(out, "account", in->account ? in->account : "");
    if (r == 0)
        r = strbuf_appends(out, ",");
    if (r == 0)
        r = live_ctl_str(out, "rule", in->rule);
    if (r == 0)
        r = strbuf_appends(out, ",");
    if (r == 0)
        r = live_ctl_str(out, "reason", in->reason);
    if (r == 0)
        r = strbuf_printf(out,
                          ",\"manual\":%s,\"state\":\"%s\",\"what\":\"%s\",\"applied\":\"%s\","
                          "\"preexisting\":%s,\"frozen\":%zu,\"since_ms\":%lld,"
                          "\"released_ms\":%lld",
                          strcmp(in->rule, LIVE_CTL_MANUAL_RULE) == 0 ? "true" : "false", in->state,
                          live_ctl_what(in),
                          (in->done & CONFIG_ACTION_SUSPEND) ? "suspend"
                          : (in->done & CONFIG_ACTION_HOLD)  ? "hold"
                                                             : "none",
                          in->preexisting ? "true" : "false", in->nfrozen, (long long)in->acted_ms,
                          (long long)in->released_ms);
    return r;
}

/*
 * Held: an active ledger record with a hold or suspension wanted or in force, or mail that
 * floodgate froze; and a trip left "unconfirmed" (nothing done, an operator decides). A trip
 * whose rule only alerts is active too (a release re-arms it) but holds nothing:
 * floodgatectl show lists it, held does not.
 */
static bool
live_ctl_holds(const struct action_info *in)
{
    return in->unconfirmed || (in->active && (in->want || in->done || in->nfrozen));
}

struct live_ctl_list {
    struct strbuf *out; /* NULL: only count */
    size_t n;
    int r;
};

static void
live_ctl_held_one(void *ctx, const struct action_info *in)
{
    struct live_ctl_list *l = ctx;

    if (!live_ctl_holds(in))
        return;
    l->n++;
    if (!l->out || l->r < 0 || l->n > LIVE_CTL_LIST_MAX)
        return;
    l->r = strbuf_appends(l->out, l->n > 1 ? ",{" : "{");
    if (l->r == 0)
        l->r = live_ctl_info(l->out, in);
    if (l->r == 0)
        l->r = strbuf_appends(l->out, "}");
}

static int
live_ctl_held(struct daemon *d, struct strbuf *out)
{
    struct live_ctl_list l = { .out = out };
    int r = strbuf_appends(out, "{\"held\":[");

    if (r < 0)
        return r;
    (void)action_list(d->action, true, live_ctl_held_one, &l); /* with the unconfirmed */
    if (l.r < 0)
        return l.r;
    return strbuf_printf(out, "],\"count\":%zu,\"truncated\":%s}", l.n,
                         l.n > LIVE_CTL_LIST_MAX ? "true" : "false");
}

/* --- status ------------------------------------------------------------------------- */

/*
 * ctl_allowed() lets the daemon's own uid do everything: run as a uid that web or PHP
 * code shares (nobody under mod_php), any script of that uid can release a spammer.
 */
void
live_ctl_uid_warning(struct daemon *d)
{
    uid_t uid = geteuid();
    struct passwd pw, *res = NULL;
    char buf[4096];
    char name[64];

    d->uid_warning[0] = '\0';
    if (uid == 0)
        return;
    if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) != 0 || !res)
        (void)snprintf(name, sizeof(name), "no name");
    else
        (void)util_term_escape(name, sizeof(name), res->pw_name, strlen(res->pw_name));
    (void)snprintf(d->uid_warning, sizeof(d->uid_warning),
                   "not running as root: every process of uid %u (%s) can release and hold "
                   "through the control socket; run floodgated as root, or as a dedicated "
                   "user that no web or PHP process shares",
                   (unsigned)uid, name);
    log_loud(LOG_WARNING, "%s (%s)", d->uid_warning, d->cfg->control_socket);
}

/* ,"warnings":[...]: what the operator must fix; [] when nothing. */
static int
live_ctl_warnings(struct daemon *d, struct strbuf *out)
{
    int r = strbuf_appends(out, ",\"warnings\":[");

    if (r == 0 && d->uid_warning[0]) {
        r = strbuf_appends(out, "\"");
        if (r == 0)
            r = strbuf_append_json(out, d->uid_warning, strlen(d->uid_warning));
        if (r == 0)
            r = strbuf_appends(out, "\"");
    }
    return r < 0 ? r : strbuf_appends(out, "]");
}

/* ,"alerts":[...]: each destination by name and scheme://host only (never the URL). */
static int
live_ctl_alerts(struct daemon *d, struct strbuf *out)
{
    int r = strbuf_appends(out, ",\"alerts\":[");

    for (size_t i = 0; i < live_alert_dest_count(d) && r == 0; i++) {
        struct dispatch_dest_stats st;
        live_alert_dest_stats(d, i, &st);
        r = strbuf_appends(out, i ? ",{" : "{");
        if (r == 0)
            r = live_ctl_str(out, "name", st.name ? st.name : "");
        if (r == 0)
            r = strbuf_printf(out, ",\"type\":\"%s\",", alert_dest_type_name(st.type));
        if (r == 0)
            r = live_ctl_str(out, "host", st.host);
        if (r == 0)
            r = strbuf_printf(out,
                              ",\"enabled\":%s,\"pending\":%zu,\"oldest_ms\":%lld,"
                              "\"delivered\":%" PRIu64 ",\"retried\":%" PRIu64
                              ",\"failed\":%" PRIu64 ",\"expired\":%" PRIu64
                              ",\"dropped\":%" PRIu64 ",\"last_status\":%d}",
                              st.enabled ? "true" : "false", st.pending, (long long)st.oldest_ms,
                              st.delivered, st.retried, st.failed, st.expired, st.dropped,
                              st.last_status);
    }
    return r < 0 ? r : strbuf_appends(out, "]");
}

static int
live_ctl_status(struct daemon *d, struct strbuf *out)
{
    const struct engine_stats *st = engine_stats(d->engine);
    int64_t mono = clock_mono_ms(&clock_real), wall = clock_now_ms(&clock_real);
    int64_t since_record = -1, lag_s = 0;
    uint64_t lag_bytes = 0;
    struct tail_stats ts;
    struct tail_pos pos;
    struct stat sb;
    struct live_ctl_list held = { 0 };
    double rate = 0;
    int r;

    tail_get_stats(d->tail, &ts);
    tail_position(d->tail, &pos);
    if (stat(d->cfg->log_file, &sb) == 0) {
        /* the file the path names now; while an older one is still being read, all of it
         * is still to come */
        if ((uint64_t)sb.st_ino == pos.ino && (uint64_t)sb.st_dev == pos.dev)
            lag_bytes = (uint64_t)sb.st_size > pos.offset ? (uint64_t)sb.st_size - pos.offset : 0;
        else
            lag_bytes = (uint64_t)sb.st_size;
    }
    if (d->last_record_mono > 0)
        since_record = (mono - d->last_record_mono) / 1000;
    if (lag_bytes > 0 && since_record > 0)
        lag_s = since_record;
    if (mono > d->status_mono)
        rate = (double)(d->lines - d->status_lines) * 1000.0 / (double)(mono - d->status_mono);
    (void)action_list(d->action, false, live_ctl_held_one, &held);
    r = strbuf_appends(out, "{");
    if (r == 0)
        r = live_ctl_str(out, "version", FLOODGATE_VERSION);
    if (r == 0)
        r = strbuf_printf(out, ",\"uptime_s\":%lld,\"ready\":%s,\"mode\":\"%s\",",
                          (long long)((wall - d->start_wall_ms) / 1000),
                          d->ready ? "true" : "false", live_ctl_mode(d));
    if (r == 0)
        r = live_ctl_str(out, "log_file", d->cfg->log_file);
    if (r == 0)
        r = strbuf_printf(
            out,
            ",\"offset\":%" PRIu64 ",\"lag_bytes\":%" PRIu64 ",\"lag_s\":%lld,"
            "\"last_record_s\":%lld,\"lines_per_s\":%.1f,\"records\":%" PRIu64
            ",\"parse_errors\":%" PRIu64 ",\"outbound\":%" PRIu64 ",\"trips\":%" PRIu64
            ",\"identities\":%zu,\"held\":%zu,\"outbox\":%zu,\"rotations\":%" PRIu64
            ",\"truncations\":%" PRIu64 ",\"gaps\":%" PRIu64 ",\"log_time\":%lld",
            pos.offset, lag_bytes, (long long)lag_s, (long long)since_record, rate, st->records,
            st->parse_errors, st->outbound, st->trips, usertable_count(engine_table(d->engine)),
            held.n, live_alert_pending(d), ts.rotations, ts.truncations, ts.gaps,
            (long long)engine_now_ms(d->engine));
    if (r == 0)
        r = live_ctl_warnings(d, out);
    if (r == 0)
        r = live_ctl_alerts(d, out);
    return r < 0 ? r : strbuf_appends(out, "}");
}

static int
live_ctl_show_counters(struct daemon *d, const struct ctl_request *req, struct strbuf *out)
{
    struct usertable *t = engine_table(d->engine);
    const struct usertable_params *up = usertable_params(t);
    int64_t now = engine_now_ms(d->engine);
    struct usertable_entry *ent;
    const struct usertable_policy *pol;
    int r;

    if (usertable_get(t, req->scope, req->id, strlen(req->id), now, false, &ent) <= 0)
        return strbuf_appends(out, ",\"counted\":false");
    r = strbuf_printf(out, ",\"counted\":true,\"last_log_ms\":%lld,\"dense\":%s,\"series\":[",
                      (long long)usertable_entry_last_ms(ent),
                      usertable_entry_is_dense(ent) ? "true" : "false");
    for (size_t i = 0; i < up->nseries[req->scope] && r == 0; i++) {
        const struct usertable_series *se = &up->series[req->scope][i];
        r = strbuf_printf(out, "%s{\"metric\":\"%s\",\"window_ms\":%lld,\"value\":%" PRIu64 "}",
                          i ? "," : "", window_metric_name(se->metric), (long long)se->window_ms,
                          usertable_sum(t, ent, i, now));
    }
    if (r == 0)
        r = strbuf_appends(out, "],\"totals\":{");
    for (int m = 0; m < WINDOW_METRIC__MAX && r == 0; m++)
        r = strbuf_printf(out, "%s\"%s\":%" PRIu64, m ? "," : "",
                          window_metric_name((enum window_metric)m),
                          usertable_entry_total(ent, (enum window_metric)m));
    pol = usertable_entry_policy(ent);
    if (r == 0)
        r = strbuf_appends(out, "},\"tripped\":[");
    for (size_t i = 0, n = 0; i < d->cfg->nrules && i < 32 && r == 0; i++) {
        if (!(pol->tripped & (1u << i)))
            continue;
        r = strbuf_appends(out, n++ ? ",\"" : "\"");
        if (r == 0)
            r = strbuf_append_json(out, d->cfg->rules[i].name, strlen(d->cfg->rules[i].name));
        if (r == 0)
            r = strbuf_appends(out, "\"");
    }
    if (r == 0)
        r = strbuf_printf(out, "],\"cooldown_until_log_ms\":%lld",
                          (long long)(pol->quiet_until_ms > now ? pol->quiet_until_ms : 0));
    return r;
}

static int
live_ctl_show(struct daemon *d, const struct ctl_request *req, struct strbuf *out)
{
    char(*ids)[MSGTRACK_ID_MAX + 1] = NULL;
    char account[USERTABLE_KEY_MAX];
    struct action_info in;
    bool acted = action_info(d->action, req->scope, req->id, &in) == 0;
    size_t nq;
    int r;

    if (usertable_get(engine_table(d->engine), req->scope, req->id, strlen(req->id),
                      engine_now_ms(d->engine), false, &(struct usertable_entry *){ NULL }) <= 0 &&
        !acted) {
        (void)strbuf_appends(out, "no such identity is counted or in the ledger");
        return -ENOENT;
    }
    ids = calloc(LIVE_QUEUED_MAX, sizeof(*ids));
    if (!ids)
        return -ENOMEM;
    engine_account_of(d->engine, req->scope, req->id, account, sizeof(account));
    r = strbuf_printf(out, "{\"scope\":\"%s\",", usertable_scope_name(req->scope));
    if (r == 0)
        r = live_ctl_str(out, "id", req->id);
    if (r == 0)
        r = strbuf_appends(out, ",");
    if (r == 0)
        r = live_ctl_str(out, "account", account);
    if (r == 0)
        r = live_ctl_show_counters(d, req, out);
    /* the newest LIVE_CTL_QUEUED_SHOWN of the queued ids (the list is oldest first) */
    nq = engine_identity_queued(d->engine, req->scope, req->id, ids, LIVE_QUEUED_MAX);
    if (r == 0)
        r = strbuf_printf(out, ",\"queued_count\":%zu,\"queued\":[", nq);
    for (size_t first = nq > LIVE_CTL_QUEUED_SHOWN ? nq - LIVE_CTL_QUEUED_SHOWN : 0, i = first;
         i < nq && r == 0; i++)
        r = strbuf_printf(out, "%s\"%s\"", i == first ? "" : ",", ids[i]);
    if (r == 0)
        r = strbuf_appends(out, "],\"action\":");
    if (r == 0 && acted) {
        r = strbuf_appends(out, "{");
        if (r == 0)
            r = live_ctl_info(out, &in);
        if (r == 0)
            r = strbuf_appends(out, "}");
    } else if (r == 0) {
        r = strbuf_appends(out, "null");
    }
    /* history: what the ledger keeps of the identity (the last trip and release) */
    if (r == 0)
        r = strbuf_appends(out, ",\"history\":[");
    if (r == 0 && acted && in.acted_ms) {
        r = strbuf_printf(out, "{\"event\":\"%s\",\"at_ms\":%lld,",
                          in.unconfirmed                               ? "unconfirmed"
                          : strcmp(in.rule, LIVE_CTL_MANUAL_RULE) == 0 ? "held"
                                                                       : "acted",
                          (long long)in.acted_ms);
        if (r == 0)
            r = live_ctl_str(out, "rule", in.rule);
        if (r == 0)
            r = strbuf_appends(out, "}");
    }
    if (r == 0 && acted && in.released_ms)
        r = strbuf_printf(out, "%s{\"event\":\"released\",\"at_ms\":%lld}", in.acted_ms ? "," : "",
                          (long long)in.released_ms);
    if (r == 0)
        r = strbuf_appends(out, "]}");
    free(ids);
    return r;
}

/* --- release and hold --------------------------------------------------------------- */

/* {"ts":..,"event":"ctl_<verb>","uid":..,"scope":..,"id":..[,"reason":..]} to the audit log */
static void
live_ctl_audit(struct daemon *d, const char *event, const struct ctl_peer *peer,
               const struct ctl_request *req, int result)
{
    struct strbuf b;
    int r;

    strbuf_init(&b, 4096);
    r = strbuf_printf(&b, "{\"ts\":%lld,\"event\":\"%s\",\"uid\":%u,\"scope\":\"%s\",",
                      (long long)clock_now_ms(&clock_real), event, (unsigned)peer->uid,
                      usertable_scope_name(req->scope));
    if (r == 0)
        r = live_ctl_str(&b, "id", req->id);
    if (r == 0 && req->reason[0]) {
        r = strbuf_appends(&b, ",");
        if (r == 0)
            r = live_ctl_str(&b, "reason", req->reason);
    }
    if (r == 0)
        r = strbuf_printf(&b, ",\"result\":%d}", result);
    if (r == 0)
        live_audit(d, strbuf_cstr(&b));
    strbuf_done(&b);
}

static int
live_ctl_release(struct daemon *d, const struct ctl_request *req, const struct ctl_peer *peer,
                 struct strbuf *out)
{
    int r = action_release(d->action, req->scope, req->id);
    int e;

    if (r < 0 && r != -ENOENT && r != -EBUSY) {
        /* the ledger cannot record the release: nothing is undone, the trip stays too */
        live_ctl_audit(d, "ctl_release", peer, req, r);
        if (r != -ENOMEM)
            (void)strbuf_printf(out,
                                "could not release: ledger write failed (%s); nothing was "
                                "undone (see the journal)",
                                strerror(-r));
        return r;
    }
    e = engine_release(d->engine, req->scope, req->id);
    live_ctl_audit(d, "ctl_release", peer, req, r < 0 && e <= 0 ? r : 0);
    if (r == -EBUSY) {
        (void)strbuf_appends(out, "an action for this identity is still running; retry");
        return r;
    }
    if (r == -ENOENT && e <= 0) {
        (void)strbuf_appends(out, "no such identity is tripped or held");
        return -ENOENT;
    }
    d->dirty = true;
    if (r == -ENOENT) /* nothing for lib/action to undo: its done callback will not say it */
        live_alert_released(d, req->scope, req->id);
    r = strbuf_printf(out, "{\"released\":true,\"scope\":\"%s\",\"actions\":%s,",
                      usertable_scope_name(req->scope), r == 0 ? "true" : "false");
    if (r == 0)
        r = live_ctl_str(out, "id", req->id);
    return r < 0 ? r : strbuf_appends(out, "}");
}

static int
live_ctl_hold(struct daemon *d, const struct ctl_request *req, const struct ctl_peer *peer,
              struct strbuf *out)
{
    char(*ids)[MSGTRACK_ID_MAX + 1] = calloc(LIVE_QUEUED_MAX, sizeof(*ids));
    const char **ptrs = calloc(LIVE_QUEUED_MAX, sizeof(*ptrs));
    char account[USERTABLE_KEY_MAX];
    struct action_request ar;
    size_t n;
    int r;

    if (!ids || !ptrs) {
        free(ids);
        free(ptrs);
        return -ENOMEM;
    }
    engine_account_of(d->engine, req->scope, req->id, account, sizeof(account));
    n = engine_identity_queued(d->engine, req->scope, req->id, ids, LIVE_QUEUED_MAX);
    for (size_t i = 0; i < n; i++)
        ptrs[i] = ids[i];
    ar = (struct action_request){
        .rule = LIVE_CTL_MANUAL_RULE,
        .scope = req->scope,
        .id = req->id,
        .account = account[0] ? account : NULL,
        .actions = CONFIG_ACTION_FREEZE | CONFIG_ACTION_HOLD,
        .msgids = ptrs,
        .nmsgids = n,
        .reason = req->reason[0] ? req->reason : NULL,
        .ordered = true, /* an explicit order: no confirmation in the spool needed */
    };
    r = action_trip(d->action, &ar);
    if (r == -EBUSY)
        live_metrics_breaker(d);
    free(ids);
    free(ptrs);
    live_ctl_audit(d, "ctl_hold", peer, req, r);
    if (r == -EALREADY)
        (void)strbuf_appends(out, "already held by floodgate (see floodgatectl held)");
    else if (r == -EBUSY)
        (void)strbuf_appends(out, "circuit breaker open: max_per_hour actions reached");
    else if (r == -EINVAL)
        (void)strbuf_appends(out, "identity or reason refused by the action validators");
    else if (r < 0 && r != -ENOMEM)
        (void)strbuf_printf(out, "could not act: ledger write failed (%s); nothing was done",
                            strerror(-r));
    if (r < 0)
        return r;
    r = strbuf_printf(out, "{\"held\":%s,\"monitor\":%s,\"scope\":\"%s\",\"queued\":%zu,",
                      d->cfg->mode == CONFIG_MODE_MONITOR ? "false" : "true",
                      d->cfg->mode == CONFIG_MODE_MONITOR ? "true" : "false",
                      usertable_scope_name(req->scope), n);
    if (r == 0)
        r = live_ctl_str(out, "id", req->id);
    if (r == 0)
        r = strbuf_appends(out, ",");
    if (r == 0)
        r = live_ctl_str(out, "reason", req->reason);
    return r < 0 ? r : strbuf_appends(out, "}");
}

/* --- reload, alerts ----------------------------------------------------------------- */

static int
live_ctl_reload(struct daemon *d, struct strbuf *out)
{
    char msg[1024];
    int r = live_reload(d, msg, sizeof(msg));

    if (r < 0) {
        (void)strbuf_printf(out, "reload failed, running config kept: %s", msg);
        return r;
    }
    r = strbuf_printf(out, "{\"reloaded\":true,\"rules\":%zu,\"mode\":\"%s\",", d->cfg->nrules,
                      live_ctl_mode(d));
    if (r == 0)
        r = live_ctl_str(out, "message", msg);
    return r < 0 ? r : strbuf_appends(out, "}");
}

static void
live_ctl_test_free(struct live_ctl_test *t)
{
    struct daemon *d = t->d;

    for (struct live_ctl_test **pp = &d->ctl_tests; *pp; pp = &(*pp)->next)
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    ev_timer_stop(d->loop, &t->deadline);
    strbuf_done(&t->results);
    free(t);
}

/* The answer: {"ok":..,"expected":N,"answered":M,"results":[...]}. */
static int
live_ctl_test_answer(struct live_ctl_test *t, struct strbuf *out)
{
    int r = strbuf_printf(out, "{\"ok\":%s,\"expected\":%zu,\"answered\":%zu,\"results\":[",
                          !t->failed && t->got == t->expect ? "true" : "false", t->expect, t->got);

    if (r == 0)
        r = strbuf_append(out, strbuf_cstr(&t->results), t->results.len);
    return r < 0 ? r : strbuf_appends(out, "]}");
}

static void
live_ctl_test_finish(struct live_ctl_test *t)
{
    struct strbuf out;

    if (t->answered || t->in_call)
        return;
    t->answered = true;
    strbuf_init(&out, CTL_RESPONSE_MAX);
    if (live_ctl_test_answer(t, &out) == 0)
        (void)ctl_answer(t->d->ctl, t->token, 0, strbuf_cstr(&out)); /* -ENOENT: client left */
    else
        (void)ctl_answer(t->d->ctl, t->token, -E2BIG, "answer too large");
    strbuf_done(&out);
}

static void
live_ctl_test_done(void *ctx, const char *dest, bool ok, int status, const char *detail)
{
    struct live_ctl_test *t = ctx;
    struct strbuf *b = &t->results;
    char line[CTL_NAME_MAX + 600];
    size_t len;
    int r;

    t->got++;
    t->failed |= !ok;
    if (!t->answered) {
        len = b->len;
        r = strbuf_printf(b, "%s{\"dest\":\"", t->got > 1 ? "," : "");
        if (r == 0)
            r = strbuf_append_json(b, dest ? dest : "", dest ? strlen(dest) : 0);
        (void)snprintf(line, sizeof(line), "%s", detail ? detail : "");
        if (r == 0)
            r = strbuf_printf(b, "\",\"ok\":%s,\"status\":%d,\"detail\":\"", ok ? "true" : "false",
                              status);
        if (r == 0)
            r = strbuf_append_json(b, line, strlen(line));
        if (r == 0)
            r = strbuf_appends(b, "\"}");
        if (r < 0) { /* over the cap: the count still says it answered */
            b->len = len;
            if (b->p)
                b->p[len] = '\0';
        }
    }
    if (t->got >= t->expect) {
        live_ctl_test_finish(t);
        if (!t->in_call)
            live_ctl_test_free(t); /* every result is in: nothing refers to @t any more */
    }
}

static void
live_ctl_test_deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct live_ctl_test *t = w->data;

    (void)loop;
    (void)revents;
    t->failed = true; /* destinations that have not answered count as failed */
    /* answer now; @t stays until every destination has answered, as they still may */
    live_ctl_test_finish(t);
}

static int
live_ctl_test_alert(struct daemon *d, uint64_t token, struct strbuf *out)
{
    struct live_ctl_test *t;
    int r;

    if (live_alert_dest_count(d) == 0) {
        (void)strbuf_appends(out, "no alert destinations configured");
        return -ENOTSUP;
    }
    t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->d = d;
    t->token = token;
    t->expect = live_alert_dest_count(d);
    strbuf_init(&t->results, CTL_RESPONSE_MAX / 2);
    ev_timer_init(&t->deadline, live_ctl_test_deadline_cb, LIVE_CTL_TEST_S, 0);
    t->deadline.data = t;
    t->next = d->ctl_tests;
    d->ctl_tests = t;
    t->in_call = true;
    r = live_alert_test(d, live_ctl_test_done, t);
    t->in_call = false;
    if (r < 0) {
        live_ctl_test_free(t);
        if (r == -ENOTSUP)
            (void)strbuf_appends(out, "no alert destinations configured");
        return r;
    }
    if (t->got >= t->expect) { /* every destination answered at once */
        t->answered = true;
        r = live_ctl_test_answer(t, out);
        live_ctl_test_free(t);
        return r;
    }
    ev_timer_start(d->loop, &t->deadline);
    return 1;
}

static int
live_ctl_alert_enable(struct daemon *d, const struct ctl_request *req, struct strbuf *out)
{
    int r = live_alert_enable(d, req->id);

    if (r == -ENOENT) {
        (void)strbuf_printf(out, "no alert destination named %s", req->id);
        return r;
    }
    if (r < 0)
        return r;
    r = strbuf_appends(out, "{");
    if (r == 0)
        r = live_ctl_str(out, "enabled", req->id);
    return r < 0 ? r : strbuf_appends(out, "}");
}

/* --- wiring ------------------------------------------------------------------------- */

static int
live_ctl_handle(void *ctx, const struct ctl_request *req, const struct ctl_peer *peer,
                uint64_t token, struct strbuf *out)
{
    struct daemon *d = ctx;

    switch (req->verb) {
    case CTL_STATUS:
        return live_ctl_status(d, out);
    case CTL_TOP:
        return live_ctl_top(d, req, out);
    case CTL_SHOW:
        return live_ctl_show(d, req, out);
    case CTL_HELD:
        return live_ctl_held(d, out);
    case CTL_RELEASE:
        return live_ctl_release(d, req, peer, out);
    case CTL_HOLD:
        return live_ctl_hold(d, req, peer, out);
    case CTL_RELOAD:
        return live_ctl_reload(d, out);
    case CTL_TEST_ALERT:
        return live_ctl_test_alert(d, token, out);
    case CTL_ALERT_ENABLE:
        return live_ctl_alert_enable(d, req, out);
    case CTL__VERB_MAX:
        break;
    }
    return -EINVAL;
}

/* --- the control group, resolved when a configuration is applied ------------------- */

/* A buffer for the reentrant name-service calls, grown on ERANGE. */
struct live_ctl_nssbuf {
    char *p;
    size_t size;
};

static int
live_ctl_nss_grow(struct live_ctl_nssbuf *b)
{
    size_t size = b->size ? b->size * 2 : LIVE_CTL_NSS_BUF;
    char *p;

    if (size > LIVE_CTL_NSS_BUF_MAX)
        return -ERANGE;
    p = realloc(b->p, size);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->size = size;
    return 0;
}

/* The group named @name into @gr (its strings in @b). 0, -ENOENT, or -errno. */
static int
live_ctl_group(const char *name, struct group *gr, struct live_ctl_nssbuf *b)
{
    struct group *res = NULL;
    int r;

    do {
        if ((r = live_ctl_nss_grow(b)) < 0)
            return r;
        r = getgrnam_r(name, gr, b->p, b->size, &res);
    } while (r == ERANGE);
    if (r != 0)
        return -r;
    return res ? 0 : -ENOENT;
}

/* The uid of the user named @name. 0, -ENOENT, or -errno. */
static int
live_ctl_user(const char *name, uid_t *uid, struct live_ctl_nssbuf *b)
{
    struct passwd pw, *res = NULL;
    int r;

    if (!b->p && (r = live_ctl_nss_grow(b)) < 0)
        return r;
    while ((r = getpwnam_r(name, &pw, b->p, b->size, &res)) == ERANGE) {
        int g = live_ctl_nss_grow(b);
        if (g < 0)
            return g;
    }
    if (r != 0)
        return -r;
    if (!res)
        return -ENOENT;
    *uid = pw.pw_uid;
    return 0;
}

/*
 * control_group -> its gid and the uids of the users it lists, now (start and reload:
 * once per configuration, root's doing), so the control socket answers a request without
 * asking the name service (lib/ctl.c); a change to the group counts from the next reload.
 * Users whose primary group it is need no listing: the kernel gives the peer's gid. The
 * first CTL_MEMBERS_MAX listed names are looked up (a longer list is logged); a group
 * that cannot be found leaves the read-only verbs to root. @members (to free) backs
 * acc->members.
 */
static void
live_ctl_access(const struct daemon *d, struct ctl_access *acc, uid_t **members)
{
    const char *name = d->cfg->control_group;
    struct live_ctl_nssbuf gbuf = { 0 }, pbuf = { 0 };
    struct group gr;
    size_t listed = 0, unknown = 0, n = 0;
    int r, err = 0;

    *acc = (struct ctl_access){ .self = geteuid() };
    *members = NULL;
    if (!name)
        return;
    r = live_ctl_group(name, &gr, &gbuf);
    if (r < 0) {
        log_emit(LOG_WARNING, r == -ENOENT ? 0 : r, NULL,
                 "control_group %s: %s; read-only floodgatectl is root only", name,
                 r == -ENOENT ? "no such group" : "cannot look it up");
        free(gbuf.p);
        return;
    }
    acc->has_group = true;
    acc->group = gr.gr_gid;
    acc->group_name = name;
    while (gr.gr_mem && gr.gr_mem[listed])
        listed++;
    if (listed > 0)
        *members = calloc(listed < CTL_MEMBERS_MAX ? listed : CTL_MEMBERS_MAX, sizeof(uid_t));
    if (listed > 0 && !*members) {
        log_emit(LOG_WARNING, -ENOMEM, NULL,
                 "control_group %s: its listed users are not members, only its gid", name);
        free(gbuf.p);
        return;
    }
    for (size_t i = 0; i < listed && i < CTL_MEMBERS_MAX; i++) {
        r = live_ctl_user(gr.gr_mem[i], &(*members)[n], &pbuf);
        if (r == 0)
            n++;
        else {
            unknown++;
            if (r != -ENOENT)
                err = r;
        }
    }
    if (listed > CTL_MEMBERS_MAX)
        log_emit(LOG_WARNING, 0, NULL,
                 "control_group %s lists %zu users; only the first %u are members "
                 "(users whose primary group it is always are)",
                 name, listed, (unsigned)CTL_MEMBERS_MAX);
    if (unknown > 0)
        log_emit(LOG_NOTICE, err, NULL, "control_group %s: %zu listed users not found, ignored",
                 name, unknown);
    acc->members = *members;
    acc->nmembers = n;
    free(pbuf.p);
    free(gbuf.p);
}

int
live_ctl_open(struct daemon *d)
{
    struct ctl_params cp = {
        .loop = d->loop,
        .path = d->cfg->control_socket,
        .handle = live_ctl_handle,
        .ctx = d,
    };
    uid_t *members;
    int r;

    live_ctl_access(d, &cp.access, &members);
    r = ctl_open(&cp, &d->ctl); /* copies the members */
    free(members);
    return r;
}

void
live_ctl_reconfigure(struct daemon *d)
{
    struct ctl_access acc;
    uid_t *members;
    int r;

    if (!d->ctl)
        return;
    live_ctl_access(d, &acc, &members);
    r = ctl_set_access(d->ctl, &acc);
    free(members);
    if (r < 0)
        log_emit(LOG_WARNING, r, NULL, "%s: cannot set the control socket's group and mode",
                 d->cfg->control_socket);
}

void
live_ctl_close(struct daemon *d)
{
    ctl_free(d->ctl);
    d->ctl = NULL;
    while (d->ctl_tests)
        live_ctl_test_free(d->ctl_tests);
}
