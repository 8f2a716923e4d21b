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
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "action_backend.h"
#include "alertmsg.h"
#include "clock.h"
#include "live.h"
#include "log.h"
#include "spool.h"
#include "state.h"
#include "trips.h"
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
#define LIVE_CTL_TRIPS_SHOWN  200         /* trips in one tripped answer */
#define LIVE_CTL_BLOCKLIST_MAX (4u << 20) /* bytes of the exim blocklist read for show */

/*
 * A hold, suspension or release waiting for its steps: answered from live_ctl_outcome()
 * (or at once when they finished inside the call). At most one per client connection.
 */
struct live_ctl_order {
    struct live_ctl_order *next;
    uint64_t token;
    enum ctl_verb verb;
    enum usertable_scope scope;
    char id[USERTABLE_KEY_MAX];
    size_t queued;
    bool finished;   /* the outcome is in @answer / @err */
    int err;         /* 0, or -errno: @answer is the error text */
    struct strbuf answer;
};

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

/* Copy @src into @dst (size @size), cut to fit. */
static void
live_ctl_cpy(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);

    if (n >= size)
        n = size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static int
live_ctl_str(struct strbuf *out, const char *key, const char *val)
{
    int r = strbuf_printf(out, "\"%s\":\"", key);

    if (r == 0)
        r = strbuf_append_json(out, val, strlen(val));
    return r < 0 ? r : strbuf_appends(out, "\"");
}

/* "k1":"v1","k2":"v2"...: the @n key and value pairs of @kv, JSON-escaped. */
static int
live_ctl_strs(struct strbuf *out, const char *const *kv, size_t n)
{
    int r = 0;

    for (size_t i = 0; i < n && r == 0; i++) {
        if (i > 0)
            r = strbuf_appends(out, ",");
        if (r == 0)
            r = live_ctl_str(out, kv[2 * i], kv[2 * i + 1]);
    }
    return r;
}

static const char *
live_ctl_mode(const struct daemon *d)
{
    return d->cfg->mode == CONFIG_MODE_MONITOR ? "monitor" : "enforce";
}

/* --- trips and outcomes -------------------------------------------------------------- */

void
live_backend_target(const struct config *cfg, enum usertable_scope scope, char *buf, size_t size)
{
    const char *name = config_backend_name(cfg->backend), *what, *path;

    switch (cfg->backend) {
    case CONFIG_BACKEND_EXIM:
        what = "blocklist ";
        path = cfg->blocklist_file;
        break;
    case CONFIG_BACKEND_CPANEL:
        what = "";
        path = scope == SCOPE_MAILBOX ? cfg->uapi_path : cfg->whmapi1_path;
        break;
    default:
        what = "";
        path = cfg->command_path;
        break;
    }
    (void)snprintf(buf, size, "%s (%s%s)", name, what, path ? path : "not set");
}

/* The Subject: of a queued message from its -H file; "" when it cannot be read. */
static void
live_ctl_subject(const struct daemon *d, const char *msgid, char *out, size_t size,
                 struct spool_header *h, bool *in_spool)
{
    static char buf[SPOOL_HEADER_READ_MAX];
    size_t len = 0;

    out[0] = '\0';
    if (in_spool)
        *in_spool = false;
    if (!msgid[0] || spool_read_header(d->cfg->spool_dir, msgid, buf, sizeof(buf), &len) < 0)
        return;
    if (in_spool)
        *in_spool = true;
    (void)spool_header_subject(buf, len, out, size);
    if (h && spool_parse_header(buf, len, h) < 0)
        memset(h, 0, sizeof(*h));
}

static struct trips *
live_ctl_trips(struct daemon *d)
{
    if (!d->trips) {
        d->trips = trips_new(TRIPS_DEFAULT_CAP);
        if (!d->trips)
            log_emit(LOG_WARNING, -ENOMEM, NULL, "no trip history: floodgatectl tripped is empty");
    }
    return d->trips;
}

void
live_ctl_trip(struct daemon *d, const struct engine_notice *n)
{
    struct trips *t = live_ctl_trips(d);
    struct trip_rec *r;

    if (!t)
        return;
    r = calloc(1, sizeof(*r));
    if (!r)
        return;
    live_ctl_cpy(r->rule, sizeof(r->rule), n->verdict.rule_name);
    r->scope = n->scope;
    live_ctl_cpy(r->id, sizeof(r->id), n->id);
    live_ctl_cpy(r->account, sizeof(r->account), n->account);
    r->log_ms = n->at_ms;
    live_ctl_cpy(r->at, sizeof(r->at), n->at);
    r->wall_ms = clock_now_ms(&clock_real);
    r->value = n->verdict.value;
    r->threshold = n->verdict.threshold;
    r->window_ms = n->verdict.window_ms;
    r->actions = n->verdict.actions;
    live_ctl_cpy(r->msgid, sizeof(r->msgid), n->msgid);
    live_ctl_subject(d, r->msgid, r->subject, sizeof(r->subject), NULL, NULL);
    (void)trips_add(t, r);
    free(r);
}

void
live_ctl_trip_refused(struct daemon *d, const struct engine_notice *n, int err)
{
    struct trip_rec *r = d->trips ? trips_pending(d->trips, n->scope, n->id) : NULL;

    if (!r)
        return;
    r->result = err == -EALREADY ? TRIPS_ALREADY : TRIPS_NOT_ACTED;
    (void)snprintf(r->detail, sizeof(r->detail), "%s",
                   err == -EALREADY ? "already held by floodgate: nothing repeated"
                   : err == -EBUSY  ? "circuit breaker open: max_actions_per_hour reached"
                   : err == -EINVAL ? "identity refused by the action validators"
                                    : strerror(-err));
}

/* What the identity's record wants: CONFIG_ACTION_HOLD or SUSPEND, or 0. */
static uint32_t
live_ctl_want(const struct daemon *d, enum usertable_scope scope, const char *id)
{
    struct action_info in;

    if (action_info(d->action, scope, id, &in) < 0)
        return 0;
    return (in.want | in.done) & (CONFIG_ACTION_SUSPEND | CONFIG_ACTION_HOLD);
}

/*
 * The outcome of a trip or an order as a result and one line: what failed, naming the
 * file or command and the error, or why nothing was done.
 */
static enum trips_result
live_ctl_describe(const struct daemon *d, const struct action_outcome *o, char *buf, size_t size)
{
    uint32_t want = live_ctl_want(d, o->scope, o->id);
    bool release = strcmp(o->what, "release") == 0;
    const char *op = (want & CONFIG_ACTION_SUSPEND) ? "suspension" : "hold";
    char target[768];
    size_t n = 0;

    buf[0] = '\0';
    live_backend_target(d->cfg, o->scope, target, sizeof(target));
    if (o->monitor)
        return TRIPS_WOULD_ACT;
    if (o->unconfirmed) {
        (void)snprintf(buf, size,
                       "none of the %zu messages the log names is confirmed in the spool as "
                       "the identity's",
                       o->candidates);
        return TRIPS_UNCONFIRMED;
    }
    if (o->ledger_err < 0) {
        n += (size_t)snprintf(buf + n, size - n, "ledger write failed: %s/actions.ledger: %s",
                              d->cfg->state_dir, strerror(-o->ledger_err));
    } else if (o->backend_err < 0) {
        n += (size_t)snprintf(buf + n, size - n, "%s%s through %s: %s", release ? "undoing the " : "",
                              op, target, strerror(-o->backend_err));
    }
    if (o->failed > 0 && n < size)
        n += (size_t)snprintf(buf + n, size - n, "%s%zu message%s could not be %s (%s)",
                              n ? "; " : "", o->failed, o->failed == 1 ? "" : "s",
                              release ? "thawed" : "frozen", d->cfg->exim_path);
    if (release && o->remaining && n < size)
        (void)snprintf(buf + n, size - n, "%s%zu still frozen: release again to retry",
                       n ? "; " : "", o->remaining);
    if (buf[0])
        return TRIPS_FAILED;
    if (!release && !want && !o->frozen && !o->confirmed)
        return TRIPS_ALERTED;
    if (o->backend_preexisting)
        (void)snprintf(buf, size, "the %s was in force already (not floodgate's: not undone)", op);
    return TRIPS_DONE;
}

static int live_ctl_order_answer(struct daemon *d, struct live_ctl_order *o,
                                 const struct action_outcome *out);

void
live_ctl_outcome(struct daemon *d, const struct action_outcome *o)
{
    bool release = strcmp(o->what, "release") == 0;
    struct trip_rec *r;

    if (strcmp(o->what, "freeze_more") == 0)
        return;
    if (!release && d->trips && (r = trips_pending(d->trips, o->scope, o->id)) != NULL) {
        r->result = live_ctl_describe(d, o, r->detail, sizeof(r->detail));
        r->done = o->backend_done;
        r->frozen = o->frozen;
        r->failed = o->failed;
    }
    for (struct live_ctl_order *w = d->ctl_orders; w; w = w->next) {
        if (w->finished || w->scope != o->scope || (w->verb == CTL_RELEASE) != release ||
            (o->scope == SCOPE_MAILBOX ? strcasecmp(w->id, o->id) : strcmp(w->id, o->id)) != 0)
            continue;
        (void)live_ctl_order_answer(d, w, o);
        break;
    }
}

/* --- top ---------------------------------------------------------------------------- */

static uint64_t live_ctl_limit(const struct daemon *d, enum usertable_scope scope,
                               enum window_metric metric, int64_t window_ms);

/* Has the identity tripped a rule counting series @se of @scope? */
static bool
live_ctl_row_tripped(struct daemon *d, enum usertable_scope scope, const struct usertable_series *se,
                     const char *id)
{
    struct usertable_entry *ent;
    const struct usertable_policy *pol;

    if (usertable_get(engine_table(d->engine), scope, id, strlen(id), engine_now_ms(d->engine),
                      false, &ent) <= 0)
        return false;
    pol = usertable_entry_policy(ent);
    for (size_t i = 0; i < d->cfg->nrules && i < 32; i++) {
        const struct config_rule *ru = &d->cfg->rules[i];
        if ((pol->tripped & (1u << i)) && ru->scope == scope && ru->metric == se->metric &&
            ru->window_ms == se->window_ms)
            return true;
    }
    return false;
}

/* "; windows in use: 10m, 1h" (of the request's scope, or every scope) after a refusal. */
static void
live_ctl_windows(struct daemon *d, const struct ctl_request *req, struct strbuf *out)
{
    const struct usertable_params *up = usertable_params(engine_table(d->engine));
    int64_t seen[SCOPE__MAX * USERTABLE_SERIES_MAX];
    size_t nseen = 0;

    for (int s = 0; s < SCOPE__MAX; s++) {
        if (!req->any_scope && (enum usertable_scope)s != req->scope)
            continue;
        for (size_t i = 0; i < up->nseries[s]; i++) {
            char w[32];
            bool dup = false;
            for (size_t k = 0; k < nseen && !dup; k++)
                dup = seen[k] == up->series[s][i].window_ms;
            if (dup)
                continue;
            seen[nseen++] = up->series[s][i].window_ms;
            alertmsg_duration(up->series[s][i].window_ms, w, sizeof(w));
            (void)strbuf_printf(out, "%s%s", nseen == 1 ? "; windows in use: " : ", ", w);
        }
    }
}

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
                              "\"limit\":%" PRIu64 ",\"rows\":[",
                              tables++ ? "," : "", usertable_scope_name((enum usertable_scope)s),
                              window_metric_name(se->metric), (long long)se->window_ms,
                              live_ctl_limit(d, (enum usertable_scope)s, se->metric,
                                             se->window_ms));
            for (size_t k = 0; k < n && r == 0; k++) {
                r = strbuf_appends(out, k ? ",{" : "{");
                if (r == 0)
                    r = live_ctl_str(out, "id", rows[k].id);
                if (r == 0)
                    r = strbuf_printf(out, ",\"value\":%" PRIu64 ",\"tripped\":%s}",
                                      rows[k].value,
                                      live_ctl_row_tripped(d, (enum usertable_scope)s, se,
                                                           rows[k].id)
                                          ? "true"
                                          : "false");
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
        live_ctl_windows(d, req, out);
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

/*
 * Did the record's last step fail? A hold or suspension wanted and not applied once the
 * trip finished (the ledger says so across restarts), or the newest outcome of its trip
 * said FAILED (a message exim could not freeze, say). *@why: what failed.
 */
static bool
live_ctl_failed(const struct daemon *d, const struct action_info *in, const char **why)
{
    const struct trip_rec *t = d->trips ? trips_last(d->trips, in->scope, in->id) : NULL;
    uint32_t want = in->want & (CONFIG_ACTION_HOLD | CONFIG_ACTION_SUSPEND);

    *why = "";
    if (!in->active)
        return false;
    if (t && t->result == TRIPS_FAILED && t->wall_ms >= in->acted_ms - 1000) {
        *why = t->detail;
        return true;
    }
    if (strcmp(in->state, "acted") == 0 && want && !(in->done & want) && !in->preexisting) {
        *why = want & CONFIG_ACTION_SUSPEND
                   ? "the suspension was not applied (see the journal)"
                   : "the hold was not applied (see the journal)";
        return true;
    }
    return false;
}

/* One action record as the members of a JSON object (no braces). */
static int
live_ctl_info(const struct daemon *d, struct strbuf *out, const struct action_info *in)
{
    const char *why;
    bool failed = live_ctl_failed(d, in, &why);
    int r = strbuf_printf(out, "\"scope\":\"%s\",", usertable_scope_name(in->scope));

    if (r == 0)
        r = live_ctl_strs(out,
                          (const char *const[]){ "id", in->id, "account",
                                                 in->account ? in->account : "", "rule", in->rule,
                                                 "reason", in->reason },
                          4);
    if (r == 0)
        r = strbuf_printf(out,
                          ",\"manual\":%s,\"state\":\"%s\",\"what\":\"%s\",\"applied\":\"%s\","
                          "\"preexisting\":%s,\"frozen\":%zu,\"since_ms\":%lld,"
                          "\"released_ms\":%lld,\"failed\":%s,",
                          strcmp(in->rule, LIVE_CTL_MANUAL_RULE) == 0 ? "true" : "false", in->state,
                          live_ctl_what(in),
                          (in->done & CONFIG_ACTION_SUSPEND) ? "suspend"
                          : (in->done & CONFIG_ACTION_HOLD)  ? "hold"
                                                             : "none",
                          in->preexisting ? "true" : "false", in->nfrozen, (long long)in->acted_ms,
                          (long long)in->released_ms, failed ? "true" : "false");
    if (r == 0)
        r = live_ctl_str(out, "error", why);
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
    const struct daemon *d;
    struct strbuf *out; /* NULL: only count */
    size_t n;
    size_t failed; /* of those listed, how many failed */
    int r;
};

static void
live_ctl_held_one(void *ctx, const struct action_info *in)
{
    struct live_ctl_list *l = ctx;
    const char *why;

    if (!live_ctl_holds(in))
        return;
    l->n++;
    l->failed += live_ctl_failed(l->d, in, &why);
    if (!l->out || l->r < 0 || l->n > LIVE_CTL_LIST_MAX)
        return;
    l->r = strbuf_appends(l->out, l->n > 1 ? ",{" : "{");
    if (l->r == 0)
        l->r = live_ctl_info(l->d, l->out, in);
    if (l->r == 0)
        l->r = strbuf_appends(l->out, "}");
}

static int
live_ctl_held(struct daemon *d, struct strbuf *out)
{
    struct live_ctl_list l = { .d = d, .out = out };
    int r = strbuf_appends(out, "{\"held\":[");

    if (r < 0)
        return r;
    (void)action_list(d->action, true, live_ctl_held_one, &l); /* with the unconfirmed */
    if (l.r < 0)
        return l.r;
    return strbuf_printf(out, "],\"count\":%zu,\"failed\":%zu,\"truncated\":%s}", l.n, l.failed,
                         l.n > LIVE_CTL_LIST_MAX ? "true" : "false");
}

size_t
live_ctl_failed_count(struct daemon *d)
{
    struct live_ctl_list l = { .d = d };

    (void)action_list(d->action, false, live_ctl_held_one, &l);
    return l.failed;
}

/* --- tripped ------------------------------------------------------------------------ */

/* One trip as the members of a JSON object (no braces). */
static int
live_ctl_trip_json(struct strbuf *out, const struct trip_rec *t)
{
    int r = strbuf_printf(out, "\"ref\":\"%s\",\"scope\":\"%s\",", t->ref,
                          usertable_scope_name(t->scope));

    if (r == 0)
        r = live_ctl_strs(
            out, (const char *const[]){ "id", t->id, "account", t->account, "rule", t->rule }, 3);
    if (r == 0)
        r = strbuf_printf(out,
                          ",\"manual\":%s,\"at\":\"%s\",\"log_ms\":%lld,\"detected_ms\":%lld,"
                          "\"value\":%" PRIu64 ",\"limit\":%" PRIu64 ",\"window_ms\":%lld,"
                          "\"msgid\":\"%s\",\"result\":\"%s\",\"applied\":\"%s\","
                          "\"frozen\":%zu,\"failed\":%zu,\"asked\":\"%s\",",
                          strcmp(t->rule, LIVE_CTL_MANUAL_RULE) == 0 ? "true" : "false", t->at,
                          (long long)t->log_ms, (long long)t->wall_ms, t->value, t->threshold,
                          (long long)t->window_ms, t->msgid, trips_result_name(t->result),
                          (t->done & CONFIG_ACTION_SUSPEND) ? "suspend"
                          : (t->done & CONFIG_ACTION_HOLD)  ? "hold"
                                                            : "none",
                          t->frozen, t->failed,
                          (t->actions & CONFIG_ACTION_SUSPEND) ? "suspend"
                          : (t->actions & CONFIG_ACTION_HOLD)  ? "hold"
                          : (t->actions & CONFIG_ACTION_FREEZE) ? "freeze"
                                                                : "alert");
    if (r == 0)
        r = live_ctl_strs(out, (const char *const[]){ "subject", t->subject, "detail", t->detail },
                          2);
    return r;
}

/* The @n trips of @list as JSON objects, commas between (no brackets). */
static int
live_ctl_trips_json(struct strbuf *out, const struct trip_rec *const *list, size_t n)
{
    int r = 0;

    for (size_t i = 0; i < n && r == 0; i++) {
        r = strbuf_appends(out, i ? ",{" : "{");
        if (r == 0)
            r = live_ctl_trip_json(out, list[i]);
        if (r == 0)
            r = strbuf_appends(out, "}");
    }
    return r;
}

static int
live_ctl_tripped(struct daemon *d, struct strbuf *out)
{
    const struct trip_rec *list[LIVE_CTL_TRIPS_SHOWN];
    size_t n = d->trips ? trips_list(d->trips, NULL, 0, list, N_ELEMS(list)) : 0;
    int r = strbuf_printf(out, "{\"mode\":\"%s\",\"trips\":[", live_ctl_mode(d));

    if (r == 0)
        r = live_ctl_trips_json(out, list, n);
    if (r == 0)
        r = strbuf_printf(out, "],\"kept\":%zu,\"total\":%" PRIu64 ",\"shown\":%zu}",
                          d->trips ? trips_count(d->trips) : 0,
                          d->trips ? trips_total(d->trips) : 0, n);
    return r;
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
    struct live_ctl_list held = { .d = d };
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

/* The lowest limit ("above") of the rules counting (@scope, @metric, @window_ms); 0: none. */
static uint64_t
live_ctl_limit(const struct daemon *d, enum usertable_scope scope, enum window_metric metric,
               int64_t window_ms)
{
    uint64_t lim = 0;

    for (size_t i = 0; i < d->cfg->nrules; i++) {
        const struct config_rule *ru = &d->cfg->rules[i];
        if (ru->scope == scope && ru->metric == metric && ru->window_ms == window_ms &&
            (lim == 0 || ru->above < lim))
            lim = ru->above;
    }
    return lim;
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
        r = strbuf_printf(out,
                          "%s{\"metric\":\"%s\",\"window_ms\":%lld,\"value\":%" PRIu64
                          ",\"limit\":%" PRIu64 "}",
                          i ? "," : "", window_metric_name(se->metric), (long long)se->window_ms,
                          usertable_sum(t, ent, i, now),
                          live_ctl_limit(d, req->scope, se->metric, se->window_ms));
    }
    /* lifetime totals exist for messages, recipients and the other summed metrics the
     * rules count; a distinct count has none (it would read 0 against its window) */
    if (r == 0)
        r = strbuf_appends(out, "],\"totals\":{");
    for (int m = 0, k = 0; m < WINDOW_METRIC__MAX && r == 0; m++) {
        bool used = m == WINDOW_MESSAGES || m == WINDOW_RECIPIENTS;
        for (size_t i = 0; i < up->nseries[req->scope]; i++)
            used = used || up->series[req->scope][i].metric == (enum window_metric)m;
        if (!used || window_metric_is_distinct((enum window_metric)m))
            continue;
        r = strbuf_printf(out, "%s\"%s\":%" PRIu64, k++ ? "," : "",
                          window_metric_name((enum window_metric)m),
                          usertable_entry_total(ent, (enum window_metric)m));
    }
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

/* ,"messages":[...]: each shown queued id with what its -H file says (frozen, sender, subject). */
static int
live_ctl_show_messages(struct daemon *d, char (*ids)[MSGTRACK_ID_MAX + 1], size_t first,
                       size_t n, struct strbuf *out)
{
    int r = strbuf_appends(out, ",\"messages\":[");

    for (size_t i = first; i < n && r == 0; i++) {
        struct spool_header h;
        char subj[TRIPS_SUBJECT_MAX], sender[USERTABLE_KEY_MAX];
        bool in_spool;
        memset(&h, 0, sizeof(h));
        live_ctl_subject(d, ids[i], subj, sizeof(subj), &h, &in_spool);
        sender[0] = '\0';
        (void)util_copy_str(sender, sizeof(sender), h.sender);
        r = strbuf_printf(out, "%s{\"id\":\"%s\",\"in_spool\":%s,\"frozen\":%s,", i == first ? "" : ",",
                          ids[i], in_spool ? "true" : "false", h.frozen ? "true" : "false");
        if (r == 0)
            r = live_ctl_strs(out, (const char *const[]){ "sender", sender, "subject", subj }, 2);
        if (r == 0)
            r = strbuf_appends(out, "}");
    }
    return r < 0 ? r : strbuf_appends(out, "]");
}

/*
 * ,"blocklist":{...}: the exim backend's lines for the identity's login (the mailbox, or
 * the account) and, for a script, its own quoted "user:/dir" line, as the ACL reads them;
 * other backends keep their own lists.
 */
static int
live_ctl_show_blocklist(struct daemon *d, const struct ctl_request *req, const char *account,
                        struct strbuf *out)
{
    const char *path = d->cfg->blocklist_file, *key = req->scope == SCOPE_MAILBOX ? req->id : account;
    struct action_target t = { .scope = req->scope, .id = req->id, .account = account };
    char *buf = NULL, skey[ACTION_EXIM_KEY_MAX] = "";
    size_t klen = strlen(key), sklen, n = 0;
    int r, rr;

    if (d->cfg->backend != CONFIG_BACKEND_EXIM || !path)
        return 0;
    if (req->scope == SCOPE_SCRIPT && action_exim_key(&t, skey, sizeof(skey)) < 0)
        skey[0] = '\0';
    sklen = strlen(skey);
    rr = state_read_path(path, LIVE_CTL_BLOCKLIST_MAX, &buf, NULL);
    r = strbuf_appends(out, ",\"blocklist\":{");
    if (r == 0)
        r = live_ctl_strs(out,
                          (const char *const[]){ "file", path, "error",
                                                 rr == 0 || rr == -ENOENT ? "" : strerror(-rr) },
                          2);
    if (r == 0)
        r = strbuf_printf(out, ",\"exists\":%s,\"lines\":[", rr == 0 ? "true" : "false");
    for (char *line = rr == 0 ? buf : NULL, *nl; line && *line && r == 0; line = nl + 1) {
        nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if ((klen && strncasecmp(line, key, klen) == 0 && line[klen] == ':') ||
            (sklen && strncmp(line, skey, sklen) == 0 && line[sklen] == ':')) {
            r = strbuf_appends(out, n++ ? ",\"" : "\"");
            if (r == 0)
                r = strbuf_append_json(out, line, strlen(line));
            if (r == 0)
                r = strbuf_appends(out, "\"");
        }
        if (!nl)
            break;
    }
    free(buf);
    return r < 0 ? r : strbuf_appends(out, "]}");
}

/* action_list() callback: the ledger identity whose reference is @ref. */
struct live_ctl_byref {
    const char *ref;
    enum usertable_scope scope;
    char id[USERTABLE_KEY_MAX];
};

static void
live_ctl_byref_one(void *ctx, const struct action_info *in)
{
    struct live_ctl_byref *f = ctx;
    char ref[TRIPS_REF_MAX];

    if (f->id[0])
        return;
    trips_identity_ref(in->scope, in->id, ref, sizeof(ref));
    if (strcasecmp(ref, f->ref) == 0) {
        f->scope = in->scope;
        live_ctl_cpy(f->id, sizeof(f->id), in->id);
    }
}

static int
live_ctl_show(struct daemon *d, const struct ctl_request *req_in, struct strbuf *out)
{
    char(*ids)[MSGTRACK_ID_MAX + 1] = NULL;
    char account[USERTABLE_KEY_MAX];
    const struct trip_rec *trips[TRIPS_PER_ID], *byref = NULL;
    char ref[TRIPS_REF_MAX] = "";
    struct ctl_request rq = *req_in, *req = &rq;
    struct action_info in;
    bool acted;
    size_t nq, ntrips = 0, first;
    int r;

    /* a reference a refused sender quotes ("fg-1a2b3c4d") names an identity: one of the
     * recent trips, or one in the ledger (its blocklist line may predate a restart) */
    if (req->scope == SCOPE_ACCOUNT && strncasecmp(req->id, "fg-", 3) == 0) {
        struct live_ctl_byref f = { .ref = req->id };
        if (d->trips && (byref = trips_find_ref(d->trips, req->id)) != NULL) {
            f.scope = byref->scope;
            live_ctl_cpy(f.id, sizeof(f.id), byref->id);
        } else {
            (void)action_list(d->action, true, live_ctl_byref_one, &f);
        }
        if (f.id[0]) {
            live_ctl_cpy(ref, sizeof(ref), req->id);
            req->scope = f.scope;
            live_ctl_cpy(req->id, sizeof(req->id), f.id);
        }
    }
    acted = action_info(d->action, req->scope, req->id, &in) == 0;
    if (d->trips)
        ntrips = trips_list(d->trips, req->id, req->scope, trips, N_ELEMS(trips));
    if (usertable_get(engine_table(d->engine), req->scope, req->id, strlen(req->id),
                      engine_now_ms(d->engine), false, &(struct usertable_entry *){ NULL }) <= 0 &&
        !acted && ntrips == 0) {
        (void)strbuf_appends(out, strncasecmp(req->id, "fg-", 3) == 0
                                      ? "no such identity, and no recent trip has that reference"
                                      : "no such identity is counted or in the ledger");
        return -ENOENT;
    }
    ids = calloc(LIVE_QUEUED_MAX, sizeof(*ids));
    if (!ids)
        return -ENOMEM;
    engine_account_of(d->engine, req->scope, req->id, account, sizeof(account));
    r = strbuf_printf(out, "{\"scope\":\"%s\",", usertable_scope_name(req->scope));
    if (r == 0)
        r = live_ctl_strs(out, (const char *const[]){ "id", req->id, "account", account }, 2);
    if (r == 0)
        r = strbuf_printf(out, ",\"ref\":\"%s\"", ref);
    if (r == 0)
        r = live_ctl_show_counters(d, req, out);
    /* the newest LIVE_CTL_QUEUED_SHOWN of the queued ids (the list is oldest first) */
    nq = engine_identity_queued(d->engine, req->scope, req->id, ids, LIVE_QUEUED_MAX);
    first = nq > LIVE_CTL_QUEUED_SHOWN ? nq - LIVE_CTL_QUEUED_SHOWN : 0;
    if (r == 0)
        r = strbuf_printf(out, ",\"queued_count\":%zu,\"queued\":[", nq);
    for (size_t i = first; i < nq && r == 0; i++)
        r = strbuf_printf(out, "%s\"%s\"", i == first ? "" : ",", ids[i]);
    if (r == 0)
        r = strbuf_appends(out, "]");
    if (r == 0)
        r = live_ctl_show_messages(d, ids, first, nq, out);
    if (r == 0)
        r = strbuf_appends(out, ",\"trips\":[");
    if (r == 0)
        r = live_ctl_trips_json(out, trips, ntrips);
    if (r == 0)
        r = strbuf_appends(out, "]");
    if (r == 0)
        r = live_ctl_show_blocklist(d, req, account, out);
    if (r == 0)
        r = strbuf_appends(out, ",\"action\":");
    if (r == 0 && acted) {
        r = strbuf_appends(out, "{");
        if (r == 0)
            r = live_ctl_info(d, out, &in);
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

/* An audited result by name: "ok", "already_held", ... (never a bare errno number). */
static const char *
live_ctl_result_name(int result)
{
    switch (result) {
    case 0:
        return "ok";
    case -EALREADY:
        return "already_held";
    case -EBUSY:
        return "busy";
    case -EINVAL:
        return "refused_by_validators";
    case -ENOENT:
        return "not_found";
    case -ENOMEM:
        return "out_of_memory";
    case -EIO:
        return "failed";
    default:
        return "ledger_write_failed";
    }
}

/*
 * {"ts":..,"event":"ctl_<verb>","uid":..,"scope":..,"id":..[,"reason":..],"result":"<name>"
 * [,"error":".."]} to the audit log
 */
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
        r = strbuf_printf(&b, ",\"result\":\"%s\"", live_ctl_result_name(result));
    if (r == 0 && result < 0 && result != -EALREADY && result != -EBUSY && result != -EINVAL &&
        result != -ENOENT)
        r = strbuf_printf(&b, ",\"error\":\"%s\"", strerror(-result));
    if (r == 0)
        r = strbuf_appends(&b, "}");
    if (r == 0)
        live_audit(d, strbuf_cstr(&b));
    strbuf_done(&b);
}

/* --- orders that wait for their steps ----------------------------------------------- */

static struct live_ctl_order *
live_ctl_order_new(struct daemon *d, const struct ctl_request *req)
{
    struct live_ctl_order *o = calloc(1, sizeof(*o));

    if (!o)
        return NULL;
    o->verb = req->verb;
    o->scope = req->scope;
    live_ctl_cpy(o->id, sizeof(o->id), req->id);
    strbuf_init(&o->answer, 64 * 1024);
    o->next = d->ctl_orders;
    d->ctl_orders = o;
    return o;
}

static void
live_ctl_order_free(struct daemon *d, struct live_ctl_order *o)
{
    for (struct live_ctl_order **pp = &d->ctl_orders; *pp; pp = &(*pp)->next)
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    strbuf_done(&o->answer);
    free(o);
}

/*
 * The order's answer from its outcome: JSON when every step did what was asked, else one
 * line naming what failed (floodgatectl prints it and exits 1). Sent now when the client
 * is waiting (token set), else kept for the handler still inside the call.
 */
static int
live_ctl_order_answer(struct daemon *d, struct live_ctl_order *w, const struct action_outcome *o)
{
    bool release = w->verb == CTL_RELEASE;
    const char *verb = ctl_verb_name(w->verb), *scope = usertable_scope_name(w->scope);
    char detail[TRIPS_DETAIL_MAX + 512];
    enum trips_result res = live_ctl_describe(d, o, detail, sizeof(detail));
    struct strbuf *b = &w->answer;
    int r;

    w->finished = true;
    strbuf_reset(b);
    if (res == TRIPS_FAILED) {
        w->err = -EIO;
        if (release)
            r = strbuf_printf(b, "release of %s %s FAILED: %s (%zu thawed%s)", scope, w->id,
                              detail, o->frozen,
                              (o->backend_done & CONFIG_ACTION_SUSPEND) ? ", unsuspended"
                              : (o->backend_done & CONFIG_ACTION_HOLD)  ? ", unheld"
                                                                        : "");
        else
            r = strbuf_printf(b, "%s of %s %s FAILED: %s (%zu of %zu queued messages frozen%s)",
                              verb, scope, w->id, detail, o->frozen, w->queued,
                              (o->backend_done & CONFIG_ACTION_SUSPEND) ? ", suspended"
                              : (o->backend_done & CONFIG_ACTION_HOLD)  ? ", held"
                                                                        : "");
    } else if (release) {
        w->err = 0;
        r = strbuf_printf(b,
                          "{\"released\":true,\"scope\":\"%s\",\"actions\":true,\"thawed\":%zu,"
                          "\"undone\":\"%s\",",
                          scope, o->frozen,
                          (o->backend_done & CONFIG_ACTION_SUSPEND) ? "suspend"
                          : (o->backend_done & CONFIG_ACTION_HOLD)  ? "hold"
                                                                    : "none");
        if (r == 0)
            r = live_ctl_str(b, "id", w->id);
        if (r == 0)
            r = strbuf_appends(b, "}");
    } else {
        const struct trip_rec *t = d->trips ? trips_last(d->trips, w->scope, w->id) : NULL;
        w->err = 0;
        r = strbuf_printf(b,
                          "{\"held\":true,\"action\":\"%s\",\"monitor\":%s,\"scope\":\"%s\","
                          "\"queued\":%zu,\"frozen\":%zu,\"applied\":\"%s\",\"preexisting\":%s,"
                          "\"ref\":\"%s\",",
                          verb, d->cfg->mode == CONFIG_MODE_MONITOR ? "true" : "false", scope,
                          w->queued, o->frozen,
                          (o->backend_done & CONFIG_ACTION_SUSPEND) ? "suspend"
                          : (o->backend_done & CONFIG_ACTION_HOLD)  ? "hold"
                                                                    : "none",
                          o->backend_preexisting ? "true" : "false", t ? t->ref : "");
        if (r == 0)
            r = live_ctl_str(b, "id", w->id);
        if (r == 0)
            r = strbuf_appends(b, ",");
        if (r == 0)
            r = live_ctl_str(b, "detail", detail);
        if (r == 0)
            r = strbuf_appends(b, "}");
    }
    if (r < 0) {
        strbuf_reset(b);
        w->err = r;
    }
    if (w->token) { /* the client waits: answer it now (-ENOENT: it left) */
        (void)ctl_answer(d->ctl, w->token, w->err, b->len ? strbuf_cstr(b) : NULL);
        live_ctl_order_free(d, w);
    }
    return 0;
}

/*
 * After the call that started the steps: the answer when they all finished inside it (0,
 * or -errno with the text in @out), or 1 when it comes later through ctl_answer().
 */
static int
live_ctl_order_wait(struct daemon *d, struct live_ctl_order *w, uint64_t token, struct strbuf *out)
{
    int r;

    if (!w->finished) {
        w->token = token;
        return 1;
    }
    r = w->err;
    (void)strbuf_append(out, strbuf_cstr(&w->answer), w->answer.len);
    live_ctl_order_free(d, w);
    return r;
}

/* --- release, hold, suspend --------------------------------------------------------- */

static int
live_ctl_release(struct daemon *d, const struct ctl_request *req, const struct ctl_peer *peer,
                 uint64_t token, struct strbuf *out)
{
    struct live_ctl_order *w = live_ctl_order_new(d, req);
    int r, e;

    if (!w)
        return -ENOMEM;
    r = action_release(d->action, req->scope, req->id);
    if (r < 0 && r != -ENOENT && r != -EBUSY) {
        /* the ledger cannot record the release: nothing is undone, the trip stays too */
        live_ctl_order_free(d, w);
        live_ctl_audit(d, "ctl_release", peer, req, r);
        if (r != -ENOMEM)
            (void)strbuf_printf(out,
                                "could not release: ledger write failed (%s/actions.ledger: %s); "
                                "nothing was undone (see the journal)",
                                d->cfg->state_dir, strerror(-r));
        return r;
    }
    e = engine_release(d->engine, req->scope, req->id);
    live_ctl_audit(d, "ctl_release", peer, req, r < 0 && e <= 0 ? r : 0);
    if (r == -EBUSY) {
        live_ctl_order_free(d, w);
        (void)strbuf_appends(out, "an action for this identity is still running; retry");
        return r;
    }
    if (r == -ENOENT && e <= 0) {
        live_ctl_order_free(d, w);
        (void)strbuf_appends(out, "no such identity is tripped or held");
        return -ENOENT;
    }
    d->dirty = true;
    if (r == 0) /* lib/action undoes what it did: the answer waits for it */
        return live_ctl_order_wait(d, w, token, out);
    live_ctl_order_free(d, w);
    /* nothing for lib/action to undo: its done callback will not say it */
    live_alert_released(d, req->scope, req->id);
    r = strbuf_printf(out, "{\"released\":true,\"scope\":\"%s\",\"actions\":false,",
                      usertable_scope_name(req->scope));
    if (r == 0)
        r = live_ctl_str(out, "id", req->id);
    return r < 0 ? r : strbuf_appends(out, "}");
}

/*
 * floodgatectl hold / suspend: an operator's order, in any mode (monitor mode watches the
 * rules; it does not stop an operator). The answer waits for the steps.
 */
static int
live_ctl_hold(struct daemon *d, const struct ctl_request *req, const struct ctl_peer *peer,
              uint64_t token, struct strbuf *out)
{
    char(*ids)[MSGTRACK_ID_MAX + 1] = calloc(LIVE_QUEUED_MAX, sizeof(*ids));
    const char **ptrs = calloc(LIVE_QUEUED_MAX, sizeof(*ptrs));
    bool suspend = req->verb == CTL_SUSPEND;
    char account[USERTABLE_KEY_MAX];
    struct live_ctl_order *w = NULL;
    struct action_request ar;
    struct trips *t = live_ctl_trips(d);
    size_t n;
    int r;

    if (!ids || !ptrs || !(w = live_ctl_order_new(d, req))) {
        free(ids);
        free(ptrs);
        return -ENOMEM;
    }
    engine_account_of(d->engine, req->scope, req->id, account, sizeof(account));
    n = engine_identity_queued(d->engine, req->scope, req->id, ids, LIVE_QUEUED_MAX);
    for (size_t i = 0; i < n; i++)
        ptrs[i] = ids[i];
    w->queued = n;
    ar = (struct action_request){
        .rule = LIVE_CTL_MANUAL_RULE,
        .scope = req->scope,
        .id = req->id,
        .account = account[0] ? account : NULL,
        .actions = CONFIG_ACTION_FREEZE | (suspend ? CONFIG_ACTION_SUSPEND : CONFIG_ACTION_HOLD),
        .msgids = ptrs,
        .nmsgids = n,
        .reason = req->reason[0] ? req->reason : NULL,
        .ordered = true, /* an explicit order: no confirmation in the spool, any mode */
    };
    if (t) { /* the order is listed by tripped and show like a trip, rule "manual" */
        struct trip_rec *tr = calloc(1, sizeof(*tr));
        if (tr) {
            live_ctl_cpy(tr->rule, sizeof(tr->rule), LIVE_CTL_MANUAL_RULE);
            tr->scope = req->scope;
            live_ctl_cpy(tr->id, sizeof(tr->id), req->id);
            live_ctl_cpy(tr->account, sizeof(tr->account), account);
            tr->wall_ms = clock_now_ms(&clock_real);
            tr->actions = ar.actions;
            live_ctl_cpy(tr->detail, sizeof(tr->detail), req->reason);
            (void)trips_add(t, tr);
            free(tr);
        }
    }
    r = action_trip(d->action, &ar);
    if (r == -EBUSY)
        live_metrics_breaker(d);
    free(ids);
    free(ptrs);
    live_ctl_audit(d, suspend ? "ctl_suspend" : "ctl_hold", peer, req, r);
    if (r < 0) {
        struct trip_rec *tr = t ? trips_pending(t, req->scope, req->id) : NULL;
        live_ctl_order_free(d, w);
        strbuf_reset(out);
        if (r == -EALREADY)
            (void)strbuf_appends(out, "already held by floodgate (see floodgatectl held)");
        else if (r == -EBUSY)
            (void)strbuf_appends(out, "circuit breaker open: max_actions_per_hour reached");
        else if (r == -EINVAL)
            (void)strbuf_appends(out, "identity or reason refused by the action validators");
        else if (r != -ENOMEM)
            (void)strbuf_printf(out,
                                "could not act: ledger write failed (%s/actions.ledger: %s); "
                                "nothing was done",
                                d->cfg->state_dir, strerror(-r));
        if (tr) {
            tr->result = r == -EALREADY ? TRIPS_ALREADY : TRIPS_NOT_ACTED;
            live_ctl_cpy(tr->detail, sizeof(tr->detail), strbuf_cstr(out));
        }
        return r;
    }
    return live_ctl_order_wait(d, w, token, out);
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
        live_ctl_cpy(line, sizeof(line), detail ? detail : "");
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
    case CTL_TRIPPED:
        return live_ctl_tripped(d, out);
    case CTL_RELEASE:
        return live_ctl_release(d, req, peer, token, out);
    case CTL_HOLD:
    case CTL_SUSPEND:
        return live_ctl_hold(d, req, peer, token, out);
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
    while (d->ctl_orders)
        live_ctl_order_free(d, d->ctl_orders);
    trips_free(d->trips);
    d->trips = NULL;
}
