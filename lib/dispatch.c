/*
 * dispatch.c - alert delivery: incidents, per-destination queues, digests, Alertmanager
 * state, sending through an http_transport (alerting.md §1-§5).
 *
 * What it owns: the incidents table (open and recently resolved, at most
 * DISPATCH_INCIDENTS_MAX, oldest resolved evicted first), one outbox for every
 * destination (lib/outbox: exact body bytes, re-signed per attempt, never re-serialized),
 * and per destination its enabled flag, token bucket, consecutive auth failures, digest
 * window and Alertmanager re-send schedule. It does not own the transport (lib/http, or a
 * fake) nor the configuration (borrowed until the next dispatch_set_config()).
 *
 * Edge-triggered destinations (Slack, webhooks) get events through the outbox; an entry
 * carries in its tag the commit token that will contain it and is not sent before that
 * commit is durable (dispatch_commit_done()), so no alert leaves before the state that
 * explains it is on disk. Alertmanager is level-triggered: every resend_ms, and about a
 * second after a change, one array of every firing alert (endsAt = now + 4 x resend) and
 * every alert resolved within resolved_keep_ms (endsAt = its release); health events go
 * to it through the outbox as one-alert arrays.
 *
 * Digests (§5.6): per destination, a grouping window opens with the first incident; the
 * first digest_threshold incidents go out one by one, the rest are summarized (counts per
 * rule and scope, the top identities by value: fixed-size, whatever the outbreak) and sent
 * as one digest when the window closes. A Slack destination also turns to digests when one
 * more message would wait over DISPATCH_DRAIN_MS for its bucket behind what is queued (§2.5).
 * While incidents keep coming the next window is digest-only; a quiet window ends digest
 * mode. A digested incident gets no individual follow-ups at that destination. Webhooks
 * with `individual` also get every event.
 *
 * The outbox cap (§5.1): a tripped, acted or follow-up message that would not fit is folded
 * into the destination's digest instead, and nothing is dropped for it; a "released" one
 * takes the place of its own incident's message never attempted, else is folded too. The
 * digest itself may push out the oldest health events (never an incident), and when even
 * that leaves no room it stays held (not lost) and goes with the next window's. Drops and expiries are counted per
 * destination and logged at most once a minute.
 *
 * Failing destinations (§5.3) are logged per destination, rate-limited, by name and with
 * http's redacted error only: a certificate or CA problem at LOG_ERR once an hour (and its
 * retries back off from a quarter of the cap), an alert failing DISPATCH_FAIL_WARN attempts
 * in a row at LOG_WARNING once per 10 minutes, and the first delivery after either. A
 * reload that changes what decides delivery (URL, secrets, CA file, allow_http) and
 * dispatch_enable() make the destination's pending alerts due at once.
 *
 * Follow-ups (§2.5, §5.5): "tripped" at once; "acted" when the actions finish, replacing
 * the tripped entry when that was never attempted (one merged message); "released" last.
 * Slack gets at most two messages per incident plus "released": when the actions have not
 * reported alerts.followup (30 s) after the trip, its follow-up goes then, saying they are
 * still running (none when the tripped message itself is still unsent: the outcome will
 * merge into it). An outcome arriving after that takes the follow-up's place when the
 * follow-up was never attempted; otherwise a success is not sent again and a failure - the
 * only news of substance - is told with the "released" message, the third (webhooks'
 * action_failed, Alertmanager's annotation and the journal have it at once). Webhooks and
 * Alertmanager are machines: they get the outcome whenever it comes, and no deadline note.
 * An incident has one outcome: a later one (a restart's "resume") queues no second "acted"
 * under the same event id; a failure it reports goes into Alertmanager's annotation and,
 * for Slack and webhooks, the "released" message.
 *
 * Delivery durations: every attempt's http_response.duration_ms, edge or Alertmanager (not
 * floodgatectl test-alert), goes into a histogram per destination type, fixed buckets.
 *
 * Scans are linear: an alert is rare next to a log line, and every table is capped.
 */
#include "dispatch.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/evp.h>
#include <zlib.h>

#include "alert.h"
#include "alertmsg.h"
#include "log.h"
#include "outbox.h"

#define DISPATCH_INCIDENTS_MAX   4096 /* open + recently resolved */
#define DISPATCH_HOOK_INFLIGHT   4    /* a webhook may take a few at once; Slack one (order) */
#define DISPATCH_AUTH_PAUSE      3    /* consecutive 401/403 that pause a destination */
#define DISPATCH_AM_DEBOUNCE_MS  1000 /* Alertmanager: at most one change-driven post a second */
#define DISPATCH_HEALTH_ENDS_MS  (3600 * 1000LL) /* an Alertmanager health alert lasts 1h */
#define DISPATCH_URGENT_MIN_MS   (600 * 1000LL)  /* one ungated health alert per 10 minutes */
#define DISPATCH_EXPIRE_EVERY_MS 1000
#define DISPATCH_AM_BODY_MAX     (8u << 20)        /* 4096 alerts of at most ~2 KB each */
#define DISPATCH_STORE_CAP       USERTABLE_KEY_MAX /* bytes of an identity kept */
#define DISPATCH_HOST_MAX        256
#define DISPATCH_COUNTS_MAX      (CONFIG_RULES_MAX * SCOPE__MAX)
#define DISPATCH_ENCODE_MAGIC    "FLOODGATE-DISPATCH 5\n" /* 5: unconfirmed, ledger errors */
#define DISPATCH_ENCODE_MAGIC_V4 "FLOODGATE-DISPATCH 4\n" /* 4: open digests, dest hashes */
#define DISPATCH_ENCODE_MAGIC_V3 "FLOODGATE-DISPATCH 3\n" /* 3: detection and log times */
#define DISPATCH_ENCODE_MAGIC_V2 "FLOODGATE-DISPATCH 2\n" /* 2: digest and follow-up state */
#define DISPATCH_ENCODE_MAGIC_V1 "FLOODGATE-DISPATCH 1\n"
#define DISPATCH_LOG_TIME_MAX    24    /* "YYYY-MM-DD HH:MM:SS" and its NUL, with room */
#define DISPATCH_DRAIN_MS        10000 /* Slack: digests when the queue needs longer (§2.5) */
#define DISPATCH_DEF_FOLLOWUP_MS 30000
#define DISPATCH_LOSS_LOG_MS     60000 /* drops and expiries: one log line a minute at most */
#define DISPATCH_TLS_LOG_MS      (3600 * 1000LL) /* a certificate problem: LOG_ERR hourly */
#define DISPATCH_FAIL_WARN       5 /* attempts of one alert in a row before a warning */
#define DISPATCH_FAIL_LOG_MS     (10 * 60 * 1000LL)         /* that warning: every 10 min at most */
#define DISPATCH_TLS_BACKOFF_MS  (ALERT_BACKOFF_CAP_MS / 4) /* a TLS retry's first ceiling */
#define DISPATCH_KINDS           ALERT_DEST_TYPES
#define DISPATCH_DEF_THRESHOLD   5
#define DISPATCH_DEF_INTERVAL_MS 60000
#define DISPATCH_DEF_RESEND_MS   60000
#define DISPATCH_DEF_KEEP_MS     300000
#define DISPATCH_DEST_HASH       16 /* bytes of SHA-256 kept to recognize a destination */

struct dispatch_evidence {
    char *subjects[DISPATCH_SAMPLES_MAX], *ips[DISPATCH_SAMPLES_MAX],
        *domains[DISPATCH_SAMPLES_MAX];
    size_t nsubjects, nips, ndomains;
    struct alertmsg_count counts[ALERTMSG_COUNTS_MAX];
    char *metrics[ALERTMSG_COUNTS_MAX];
    size_t ncounts;
};

struct dispatch_incident {
    char id[ALERTMSG_ID_MAX];
    char rule[CONFIG_NAME_MAX];
    enum usertable_scope scope;
    char *identity, *account, *metric;
    int64_t window_ms, at_ms;
    int64_t detected_ms;                  /* wall clock: the times shown */
    char log_time[DISPATCH_LOG_TIME_MAX]; /* as logged, server local; "" unknown */
    uint64_t value, limit;
    bool monitor, acted;
    struct alertmsg_actions act;
    char backend[16];
    int64_t released_ms; /* 0: open */
    int64_t resolved_wall_ms;
    uint64_t tag;                 /* the commit that holds it (0: decoded, durable) */
    uint32_t held;                /* bit per destination index: summarized in a digest there */
    uint32_t held_open;           /* ... in the digest not sent yet: its outcome counts there */
    struct dispatch_evidence *ev; /* until the acted message is built */
    int64_t fu_due_ms;            /* wall time the follow-up is due without an outcome; 0 */
    uint32_t fu_sent;             /* bit per destination: the follow-up went without it */
    uint32_t fu_owed;             /* bit per destination: a failure to tell with the release */
};

struct dispatch_dg_item {
    char rule[CONFIG_NAME_MAX];
    enum usertable_scope scope;
    char identity[ALERTMSG_ITEM_CAP + 1];
    char metric[32];
    uint64_t value, limit;
};

struct dispatch_dg_count {
    char rule[CONFIG_NAME_MAX];
    enum usertable_scope scope;
    uint64_t n;
};

struct dispatch_dest {
    char name[CONFIG_NAME_MAX];
    enum alert_dest_type type;
    const struct config_dest *cfg; /* borrowed from dispatch.cfg */
    char *url;                     /* owned; Alertmanager: with /api/v2/alerts */
    struct alert_secret secrets[ALERT_SECRETS_MAX];
    size_t nsecrets;
    char ca_file[CONFIG_PATH_MAX]; /* as configured ("": none), to see a reload change it */
    bool allow_http;
    char host[128];
    uint8_t hash[DISPATCH_DEST_HASH]; /* its type, URL and secrets (all zero: unknown) */
    bool enabled;
    unsigned auth_fails;
    struct alert_bucket bucket;
    bool limited;
    size_t inflight;
    uint64_t delivered, retried, failed, expired, dropped;
    int last_status;
    /* digest window */
    bool win_open, digest_mode;
    int64_t win_start;
    uint32_t win_sent;
    uint64_t held_total, held_acted, held_failed;
    struct dispatch_dg_count counts[DISPATCH_COUNTS_MAX];
    size_t ncounts;
    struct dispatch_dg_item top[ALERTMSG_DIGEST_TOP];
    size_t ntop;
    /* Alertmanager */
    int64_t am_next_ms, am_last_ms;
    bool am_inflight;
    unsigned am_attempts;
    /* failures logged (§5.3), monotonic times; not persisted */
    unsigned fail_run;            /* attempts failed in a row, retried */
    bool tls_logged, fail_logged; /* ever: the times below mean something */
    int64_t tls_log_ms, fail_log_ms;
    bool failing; /* a failure was logged: the next delivery is logged too */
};

enum dispatch_req_kind { DISPATCH_REQ_EDGE = 0, DISPATCH_REQ_AM, DISPATCH_REQ_TEST };

struct dispatch_req {
    struct dispatch *d;
    struct dispatch_req *prev, *next;
    enum dispatch_req_kind kind;
    char dest[CONFIG_NAME_MAX];
    char event_id[ALERTMSG_ID_MAX];
    enum alert_dest_type type;
    dispatch_test_fn test_fn;
    void *test_ctx;
};

struct dispatch {
    struct ev_loop *loop;
    ev_timer timer;
    const struct clock *clock;
    const struct config *cfg;
    struct http_transport http;
    uint64_t (*random)(void *ctx);
    void *random_ctx;
    char host[DISPATCH_HOST_MAX];
    char ua[64];
    struct dispatch_dest *dests;
    size_t ndests;
    struct outbox *ob;
    struct dispatch_incident *inc[DISPATCH_INCIDENTS_MAX];
    size_t ninc;
    uint64_t next_token, durable;
    bool dirty;
    struct dispatch_req *reqs;
    int64_t last_expire_ms;
    uint64_t am_change; /* the commit token of the last change Alertmanager must hear of */
    struct metrics_hist hist[DISPATCH_KINDS]; /* attempt durations, seconds */
    uint64_t lost_dropped, lost_expired;      /* since start, every destination */
    uint64_t logged_dropped, logged_expired;  /* as of the last log line */
    int64_t loss_log_ms;                      /* when it was written (0: never) */
    int64_t urgent_ms;                        /* the last dispatch_health_urgent() (0: never) */
};

static const double dispatch_duration_bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                   0.5,   1,    2.5,   5,    10,  30 };

/* --- small helpers --------------------------------------------------------------------- */

static uint64_t
dispatch_random_default(void *ctx)
{
    uint64_t v = 0;

    (void)ctx;
    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
        v = (uint64_t)clock_mono_ms(&clock_real) * 0x9e3779b97f4a7c15ULL; /* jitter only */
    return v;
}

static char *
dispatch_strdup_cap(const char *s, size_t cap)
{
    size_t n = s ? strnlen(s, cap) : 0;
    char *p = malloc(n + 1);

    if (p) {
        if (n)
            memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static void
dispatch_copy(char *dst, size_t size, const char *s)
{
    (void)snprintf(dst, size, "%s", s ? s : "");
}

static const struct config_alerts *
dispatch_alerts(const struct dispatch *d)
{
    return &d->cfg->alerts;
}

static int64_t
dispatch_or(int64_t v, int64_t def)
{
    return v > 0 ? v : def;
}

static int64_t
dispatch_resend_ms(const struct dispatch *d)
{
    return dispatch_or(dispatch_alerts(d)->resend_ms, DISPATCH_DEF_RESEND_MS);
}

static int64_t
dispatch_now(const struct dispatch *d)
{
    return clock_now_ms(d->clock);
}

static void
dispatch_kick(struct dispatch *d)
{
    if (d->loop) {
        ev_timer_stop(d->loop, &d->timer);
        ev_timer_set(&d->timer, 0., 0.);
        ev_timer_start(d->loop, &d->timer);
    }
}

static struct dispatch_dest *
dispatch_dest_find(struct dispatch *d, const char *name, size_t *idx)
{
    for (size_t i = 0; i < d->ndests; i++) {
        if (strcmp(d->dests[i].name, name) == 0) {
            if (idx)
                *idx = i;
            return &d->dests[i];
        }
    }
    return NULL;
}

/* --- incidents ------------------------------------------------------------------------- */

static void
dispatch_evidence_free(struct dispatch_evidence *ev)
{
    if (!ev)
        return;
    for (size_t i = 0; i < DISPATCH_SAMPLES_MAX; i++) {
        free(ev->subjects[i]);
        free(ev->ips[i]);
        free(ev->domains[i]);
    }
    for (size_t i = 0; i < ALERTMSG_COUNTS_MAX; i++)
        free(ev->metrics[i]);
    free(ev);
}

static void
dispatch_incident_free(struct dispatch_incident *inc)
{
    if (!inc)
        return;
    free(inc->identity);
    free(inc->account);
    free(inc->metric);
    dispatch_evidence_free(inc->ev);
    free(inc);
}

static void
dispatch_incident_remove(struct dispatch *d, size_t i)
{
    dispatch_incident_free(d->inc[i]);
    memmove(&d->inc[i], &d->inc[i + 1], (d->ninc - i - 1) * sizeof(d->inc[0]));
    d->ninc--;
    d->dirty = true;
}

/* Room for one more: the oldest resolved goes first, else the oldest open one. */
static void
dispatch_incident_room(struct dispatch *d)
{
    if (d->ninc < DISPATCH_INCIDENTS_MAX)
        return;
    for (size_t i = 0; i < d->ninc; i++) {
        if (d->inc[i]->released_ms) {
            dispatch_incident_remove(d, i);
            return;
        }
    }
    dispatch_incident_remove(d, 0);
}

static bool
dispatch_incident_is(const struct dispatch_incident *inc, enum usertable_scope scope,
                     const char *id)
{
    return inc->scope == scope && strncmp(inc->identity, id, DISPATCH_STORE_CAP) == 0 &&
           strlen(inc->identity) == strnlen(id, DISPATCH_STORE_CAP);
}

static int
dispatch_evidence_copy(char **dst, size_t *n, const char *const *src, size_t nsrc)
{
    *n = 0;
    for (size_t i = 0; i < nsrc && i < DISPATCH_SAMPLES_MAX; i++) {
        dst[i] = dispatch_strdup_cap(src[i] ? src[i] : "", ALERTMSG_TEXT_CAP);
        if (!dst[i])
            return -ENOMEM;
        (*n)++;
    }
    return 0;
}

static int
dispatch_evidence_new(const struct dispatch_trip *t, struct dispatch_evidence **ret)
{
    struct dispatch_evidence *ev = calloc(1, sizeof(*ev));
    int r;

    *ret = NULL;
    if (!ev)
        return -ENOMEM;
    r = dispatch_evidence_copy(ev->subjects, &ev->nsubjects, t->subjects, t->nsubjects);
    if (r == 0)
        r = dispatch_evidence_copy(ev->ips, &ev->nips, t->client_ips, t->nclient_ips);
    if (r == 0)
        r = dispatch_evidence_copy(ev->domains, &ev->ndomains, t->domains, t->ndomains);
    for (size_t i = 0; r == 0 && t->counts && i < t->ncounts && i < ALERTMSG_COUNTS_MAX; i++) {
        ev->metrics[i] = dispatch_strdup_cap(t->counts[i].metric, 32);
        if (!ev->metrics[i]) {
            r = -ENOMEM;
            break;
        }
        ev->counts[i] =
            (struct alertmsg_count){ ev->metrics[i], t->counts[i].window_ms, t->counts[i].value };
        ev->ncounts++;
    }
    if (r < 0) {
        dispatch_evidence_free(ev);
        return r;
    }
    *ret = ev;
    return 0;
}

/* The builder's view of @inc; evidence only when @with_ev. */
static void
dispatch_view(const struct dispatch *d, const struct dispatch_incident *inc, bool with_ev,
              const struct config_dest *cd, struct alertmsg_incident *v)
{
    const struct dispatch_evidence *ev = with_ev ? inc->ev : NULL;

    *v = (struct alertmsg_incident){
        .host = d->host,
        .incident_id = inc->id,
        .rule = inc->rule,
        .scope = inc->scope,
        .identity = inc->identity,
        .account = inc->account,
        .metric = inc->metric,
        .window_ms = inc->window_ms,
        .value = inc->value,
        .limit = inc->limit,
        .at_ms = inc->at_ms,
        .detected_ms = inc->detected_ms,
        .log_time = inc->log_time,
        .monitor = inc->monitor,
        .acted = inc->acted ? &inc->act : NULL,
        .released_ms = inc->released_ms,
        .generator_url = cd ? cd->generator_url : NULL,
    };
    if (ev) {
        v->counts = ev->counts;
        v->ncounts = ev->ncounts;
        v->subjects = (const char *const *)ev->subjects;
        v->nsubjects = ev->nsubjects;
        v->client_ips = (const char *const *)ev->ips;
        v->nclient_ips = ev->nips;
        v->domains = (const char *const *)ev->domains;
        v->ndomains = ev->ndomains;
    }
}

/* --- queueing -------------------------------------------------------------------------- */

/* Alerts lost by @dst: counted there and for the once-a-minute log line. */
static void
dispatch_lost(struct dispatch *d, struct dispatch_dest *dst, uint64_t dropped, uint64_t expired)
{
    if (dst) {
        dst->dropped += dropped;
        dst->expired += expired;
    }
    d->lost_dropped += dropped;
    d->lost_expired += expired;
}

/* Losses not logged yet are logged, unless a line went out less than a minute ago. */
static void
dispatch_loss_log(struct dispatch *d, int64_t now, int64_t *next)
{
    uint64_t dropped = d->lost_dropped - d->logged_dropped,
             expired = d->lost_expired - d->logged_expired;

    if (dropped + expired == 0)
        return;
    if (d->loss_log_ms && now < d->loss_log_ms + DISPATCH_LOSS_LOG_MS) {
        if (d->loss_log_ms + DISPATCH_LOSS_LOG_MS < *next)
            *next = d->loss_log_ms + DISPATCH_LOSS_LOG_MS;
        return;
    }
    log_emit(LOG_WARNING, 0, NULL,
             "alerts lost: %" PRIu64 " dropped at the outbox limits and %" PRIu64
             " expired undelivered since the last report (%" PRIu64 " and %" PRIu64 " since start)",
             dropped, expired, d->lost_dropped, d->lost_expired);
    d->logged_dropped = d->lost_dropped;
    d->logged_expired = d->lost_expired;
    d->loss_log_ms = now;
}

static bool dispatch_fold(struct dispatch *d, size_t i, struct dispatch_incident *inc, int64_t now);
static struct alert_bucket *dispatch_bucket(struct dispatch *d, size_t i);
static struct outbox_entry *dispatch_unsent(struct dispatch *d, size_t i,
                                            const struct dispatch_incident *inc,
                                            enum alertmsg_kind kind);

static int
dispatch_queue(struct dispatch *d, size_t i, const char *event_id, enum outbox_priority prio,
               const struct strbuf *body)
{
    struct dispatch_dest *dst = &d->dests[i];
    uint64_t before = outbox_stats(d->ob)->dropped;
    int r = outbox_add(d->ob, dst->name, event_id, prio, dispatch_now(d), body->p, body->len);

    /* outbox_add() only drops entries of the same destination to make room */
    dispatch_lost(d, dst, outbox_stats(d->ob)->dropped - before, 0);
    if (r == 0) {
        struct outbox_entry *e = outbox_find(d->ob, dst->name, event_id);
        if (e)
            e->tag = d->next_token;
        d->dirty = true;
    } else if (r < 0) {
        /* a digest without room is held for the next window's, not lost */
        if (!(r == -ENOBUFS && prio == OUTBOX_PRIO_DIGEST))
            dispatch_lost(d, dst, 1, 0); /* logged with the others, once a minute */
        return r;
    }
    return 0;
}

static int64_t
dispatch_followup_ms(const struct dispatch *d)
{
    return dispatch_or(dispatch_alerts(d)->followup_ms, DISPATCH_DEF_FOLLOWUP_MS);
}

/*
 * A "released" message (@eid, body @b) for destination @i that does not fit: it pushes out
 * no other incident's entry (§5.1). It takes the place of @inc's own message there that was
 * never attempted (the release is the later news), else the digest summarizes the incident;
 * when the digest has it already, the release is lost, and counted.
 */
static int
dispatch_queue_released(struct dispatch *d, size_t i, struct dispatch_incident *inc,
                        const char *eid, const struct strbuf *b)
{
    static const enum alertmsg_kind own[] = { ALERTMSG_ACTED, ALERTMSG_FOLLOWUP, ALERTMSG_TRIPPED };

    for (size_t k = 0; k < N_ELEMS(own); k++) {
        struct outbox_entry *e = dispatch_unsent(d, i, inc, own[k]);

        if (e && outbox_room_instead(d->ob, e, b->len)) {
            outbox_remove(d->ob, e);
            return dispatch_queue(d, i, eid, OUTBOX_PRIO_INCIDENT, b);
        }
    }
    if (!dispatch_fold(d, i, inc, dispatch_now(d)))
        dispatch_lost(d, &d->dests[i], 1, 0); /* logged with the others, once a minute */
    return 0;
}

/*
 * Queue one incident event for destination @i. A tripped, acted or follow-up message that
 * would not fit under the outbox limits is folded into the digest instead (§5.1); a
 * "released" one goes as dispatch_queue_released() says. None pushes out another entry.
 */
static int
dispatch_queue_incident(struct dispatch *d, size_t i, struct dispatch_incident *inc,
                        enum alertmsg_kind kind, bool with_ev, int64_t at_ms)
{
    struct dispatch_dest *dst = &d->dests[i];
    char eid[ALERTMSG_ID_MAX];
    struct alertmsg_incident v;
    struct strbuf b;
    int r;

    r = alertmsg_event_id(inc->id, alertmsg_kind_name(kind), eid, sizeof(eid));
    if (r < 0)
        return r;
    dispatch_view(d, inc, with_ev, dst->cfg, &v);
    v.waited_ms = dispatch_followup_ms(d);
    v.late_outcome = kind == ALERTMSG_RELEASED && (inc->fu_owed & (1u << i));
    strbuf_init(&b, ALERTMSG_BODY_MAX);
    r = alertmsg_incident_body(&b, dst->type, kind, &v, at_ms, 4 * dispatch_resend_ms(d));
    if (r == 0 && !outbox_room(d->ob, dst->name, b.len) && !outbox_find(d->ob, dst->name, eid)) {
        if (kind == ALERTMSG_RELEASED)
            r = dispatch_queue_released(d, i, inc, eid, &b);
        else
            (void)dispatch_fold(d, i, inc, dispatch_now(d));
    } else if (r == 0)
        r = dispatch_queue(d, i, eid, OUTBOX_PRIO_INCIDENT, &b);
    strbuf_done(&b);
    return r;
}

static void
dispatch_am_touch(struct dispatch_dest *dst, int64_t now)
{
    int64_t t = now < dst->am_next_ms ? now : dst->am_next_ms;

    if (t < dst->am_last_ms + DISPATCH_AM_DEBOUNCE_MS)
        t = dst->am_last_ms + DISPATCH_AM_DEBOUNCE_MS;
    dst->am_next_ms = t;
}

static void
dispatch_am_touch_all(struct dispatch *d, int64_t now)
{
    d->am_change = d->next_token;
    for (size_t i = 0; i < d->ndests; i++)
        if (d->dests[i].type == ALERT_DEST_ALERTMANAGER)
            dispatch_am_touch(&d->dests[i], now);
}

static int
dispatch_health_except(struct dispatch *d, const char *kind, const char *key, const char *text,
                       size_t except, bool urgent)
{
    int64_t now = dispatch_now(d);
    char eid[ALERTMSG_ID_MAX];
    struct strbuf b;
    int r = 0;

    if (key) {
        /* the id hashes the key with the kind: two events of a kind in a second differ */
        strbuf_init(&b, 2 * ALERTMSG_ID_MAX + 4096);
        if (strbuf_printf(&b, "%s/%s", kind, key) < 0) {
            strbuf_done(&b);
            return -E2BIG;
        }
        alertmsg_health_id(d->host, strbuf_cstr(&b), now, eid);
        strbuf_done(&b);
    } else {
        alertmsg_health_id(d->host, kind, now, eid);
    }
    strbuf_init(&b, ALERTMSG_BODY_MAX);
    for (size_t i = 0; i < d->ndests && r == 0; i++) {
        if (i == except)
            continue;
        strbuf_reset(&b);
        r = alertmsg_health_body(&b, d->dests[i].type, d->host, eid, kind, text, now,
                                 DISPATCH_HEALTH_ENDS_MS);
        if (r == 0)
            r = dispatch_queue(d, i, eid, OUTBOX_PRIO_HEALTH, &b);
        if (r == 0 && urgent) {
            /* tag 0: as if decoded from a durable state file, so no commit gates it */
            struct outbox_entry *e = outbox_find(d->ob, d->dests[i].name, eid);
            if (e)
                e->tag = 0;
        }
    }
    strbuf_done(&b);
    dispatch_kick(d);
    return r;
}

int
dispatch_health(struct dispatch *d, const char *kind, const char *text)
{
    return dispatch_health_except(d, kind, NULL, text, SIZE_MAX, false);
}

int
dispatch_health_keyed(struct dispatch *d, const char *kind, const char *key, const char *text)
{
    return dispatch_health_except(d, kind, key, text, SIZE_MAX, false);
}

int
dispatch_health_urgent(struct dispatch *d, const char *kind, const char *text)
{
    int64_t now = dispatch_now(d);

    if (d->urgent_ms && now < d->urgent_ms + DISPATCH_URGENT_MIN_MS)
        return -EALREADY;
    d->urgent_ms = now;
    return dispatch_health_except(d, kind, NULL, text, SIZE_MAX, true);
}

static void
dispatch_disable(struct dispatch *d, size_t i, int status, const char *why)
{
    struct dispatch_dest *dst = &d->dests[i];
    char st[16], text[512];
    const struct log_field f[] = {
        { "DESTINATION", dst->name }, { "URL_HOST", dst->host }, { "STATUS", st }, { NULL, NULL }
    };

    if (!dst->enabled)
        return;
    dst->enabled = false;
    d->dirty = true;
    (void)snprintf(st, sizeof(st), "%d", status);
    log_emit(LOG_ERR, 0, f,
             "alert destination %s (%s) disabled: %s; its alerts are kept until it is "
             "re-enabled",
             dst->name, dst->host, why);
    (void)snprintf(text, sizeof(text),
                   "alert destination %s (%s) disabled after HTTP %d (%s); its alerts are kept "
                   "until its URL changes or `floodgatectl alert-enable %s`",
                   dst->name, dst->host, status, why, dst->name);
    (void)dispatch_health_except(d, "destination_disabled", NULL, text, i, false);
}

/* --- digests --------------------------------------------------------------------------- */

static void
dispatch_dg_reset(struct dispatch_dest *dst)
{
    dst->held_total = dst->held_acted = dst->held_failed = 0;
    dst->ncounts = dst->ntop = 0;
}

/* Destination @i's digest went out or starts afresh: no incident is in it any more. */
static void
dispatch_dg_clear(struct dispatch *d, size_t i)
{
    dispatch_dg_reset(&d->dests[i]);
    for (size_t k = 0; k < d->ninc; k++)
        d->inc[k]->held_open &= ~(1u << i);
}

static void
dispatch_dg_add(struct dispatch_dest *dst, const struct dispatch_incident *inc)
{
    struct dispatch_dg_item *it = NULL;
    size_t i;

    dst->held_total++;
    for (i = 0; i < dst->ncounts; i++)
        if (dst->counts[i].scope == inc->scope && strcmp(dst->counts[i].rule, inc->rule) == 0)
            break;
    if (i == dst->ncounts && i < DISPATCH_COUNTS_MAX) {
        dispatch_copy(dst->counts[i].rule, sizeof(dst->counts[i].rule), inc->rule);
        dst->counts[i].scope = inc->scope;
        dst->counts[i].n = 0;
        dst->ncounts++;
    }
    if (i < dst->ncounts)
        dst->counts[i].n++;
    if (dst->ntop < ALERTMSG_DIGEST_TOP) {
        it = &dst->top[dst->ntop++];
    } else {
        size_t min = 0;
        for (i = 1; i < dst->ntop; i++)
            if (dst->top[i].value < dst->top[min].value)
                min = i;
        if (dst->top[min].value < inc->value)
            it = &dst->top[min];
    }
    if (it) {
        dispatch_copy(it->rule, sizeof(it->rule), inc->rule);
        it->scope = inc->scope;
        dispatch_copy(it->identity, sizeof(it->identity), inc->identity);
        dispatch_copy(it->metric, sizeof(it->metric), inc->metric);
        it->value = inc->value;
        it->limit = inc->limit;
    }
}

static int
dispatch_dg_emit(struct dispatch *d, size_t i, int64_t start, int64_t end)
{
    struct dispatch_dest *dst = &d->dests[i];
    struct alertmsg_digest_count counts[DISPATCH_COUNTS_MAX];
    struct alertmsg_digest_item items[ALERTMSG_DIGEST_TOP];
    char eid[ALERTMSG_ID_MAX];
    struct alertmsg_digest dg = { .host = d->host,
                                  .event_id = eid,
                                  .start_ms = start,
                                  .end_ms = end,
                                  .total = dst->held_total,
                                  .acted = dst->held_acted,
                                  .failed = dst->held_failed,
                                  .counts = counts,
                                  .ncounts = dst->ncounts,
                                  .items = items,
                                  .nitems = dst->ntop };
    struct strbuf b;
    int r;

    for (size_t k = 0; k < dst->ncounts; k++)
        counts[k] = (struct alertmsg_digest_count){ dst->counts[k].rule, dst->counts[k].scope,
                                                    dst->counts[k].n };
    for (size_t k = 0; k < dst->ntop; k++)
        items[k] = (struct alertmsg_digest_item){ dst->top[k].rule,     dst->top[k].scope,
                                                  dst->top[k].identity, dst->top[k].metric,
                                                  dst->top[k].value,    dst->top[k].limit };
    alertmsg_digest_id(d->host, start, eid);
    strbuf_init(&b, ALERTMSG_BODY_MAX);
    r = alertmsg_digest_body(&b, dst->type, &dg);
    if (r == 0)
        r = dispatch_queue(d, i, eid, OUTBOX_PRIO_DIGEST, &b);
    strbuf_done(&b);
    if (r == -ENOBUFS)
        return r; /* no room even so: held for the next window's digest */
    dispatch_dg_clear(d, i);
    return r;
}

static int64_t
dispatch_interval_ms(const struct dispatch *d)
{
    return dispatch_or(dispatch_alerts(d)->digest_interval_ms, DISPATCH_DEF_INTERVAL_MS);
}

/* Close the grouping windows that ended by @now, emitting their digests. */
static void
dispatch_window_roll(struct dispatch *d, size_t i, int64_t now)
{
    struct dispatch_dest *dst = &d->dests[i];
    int64_t iv = dispatch_interval_ms(d);

    while (dst->win_open && now >= dst->win_start + iv) {
        if (dst->held_total > 0) {
            int r = dispatch_dg_emit(d, i, dst->win_start, dst->win_start + iv);

            d->dirty = true;
            /* held (no room): it goes with the window @now is in, not once per window
             * elapsed since (a restart after downtime) */
            dst->win_start += r == -ENOBUFS ? (now - dst->win_start) / iv * iv : iv;
            dst->win_sent = 0;
            dst->digest_mode = true;
        } else {
            dst->win_open = false;
            dst->digest_mode = false;
        }
    }
}

static void
dispatch_window_open(struct dispatch *d, size_t i, int64_t now)
{
    struct dispatch_dest *dst = &d->dests[i];

    dispatch_window_roll(d, i, now);
    if (!dst->win_open) {
        dst->win_open = true;
        dst->win_start = now;
        dst->win_sent = 0;
        dispatch_dg_clear(d, i);
    }
}

/*
 * Slack (§2.5): would one more message wait longer than DISPATCH_DRAIN_MS for the bucket,
 * behind everything queued for it (destinations sharing the URL included)?
 */
static bool
dispatch_backlogged(struct dispatch *d, size_t i, int64_t now)
{
    struct dispatch_dest *dst = &d->dests[i];
    struct alert_bucket *b;
    double rate, need;
    size_t n = 0;

    if (dst->type != ALERT_DEST_SLACK || !dst->limited)
        return false;
    b = dispatch_bucket(d, i);
    for (size_t j = 0; j < d->ndests; j++)
        if (d->dests[j].type == ALERT_DEST_SLACK && dispatch_bucket(d, j) == b)
            n += outbox_count(d->ob, d->dests[j].name);
    (void)alert_bucket_wait_ms(b, now); /* brings the tokens up to now */
    rate = now < b->slow_until_ms ? b->rate / 2 : b->rate;
    need = (double)n + 1.0 - b->tokens; /* tokens still to come for the new one */
    if (need <= 0)
        return false;
    return rate <= 0 || need * 1000.0 / rate > (double)DISPATCH_DRAIN_MS;
}

/* An incident reaches destination @i: true when it goes out on its own. */
static bool
dispatch_window_admit(struct dispatch *d, size_t i, struct dispatch_incident *inc, int64_t now)
{
    struct dispatch_dest *dst = &d->dests[i];
    uint32_t threshold = dispatch_alerts(d)->digest_threshold;

    if (threshold == 0)
        threshold = DISPATCH_DEF_THRESHOLD;
    dispatch_window_open(d, i, now);
    if (!dst->digest_mode && dispatch_backlogged(d, i, now))
        dst->digest_mode = true; /* the rest of this window, and on while it stays busy */
    if (!dst->digest_mode && dst->win_sent < threshold) {
        dst->win_sent++;
        return true;
    }
    dispatch_dg_add(dst, inc);
    inc->held |= 1u << i;
    inc->held_open |= 1u << i;
    return false;
}

/*
 * A message for @inc does not fit at destination @i: the digest summarizes it instead.
 * False when the digest holds it already (the message adds nothing to it).
 */
static bool
dispatch_fold(struct dispatch *d, size_t i, struct dispatch_incident *inc, int64_t now)
{
    struct dispatch_dest *dst = &d->dests[i];

    if (inc->held & (1u << i))
        return false;
    dispatch_window_open(d, i, now);
    dispatch_dg_add(dst, inc);
    inc->held |= 1u << i;
    inc->held_open |= 1u << i;
    if (inc->acted) {
        dst->held_acted++;
        dst->held_failed += alertmsg_actions_failed(&inc->act);
    }
    d->dirty = true;
    return true;
}

/* --- the daemon's reports -------------------------------------------------------------- */

int
dispatch_tripped(struct dispatch *d, const struct dispatch_trip *t)
{
    struct dispatch_incident *inc;
    char id[ALERTMSG_ID_MAX];
    int64_t now = dispatch_now(d);
    int r;

    if (!t->rule || !t->id || (unsigned)t->scope >= SCOPE__MAX)
        return -EINVAL;
    alertmsg_incident_id(d->host, t->rule, t->scope, t->id, t->at_ms, id);
    for (size_t i = 0; i < d->ninc; i++) {
        const struct dispatch_incident *o = d->inc[i];
        if (strcmp(o->id, id) == 0)
            return 0; /* the same trip again (a replay) */
        if (!o->released_ms && strcmp(o->rule, t->rule) == 0 &&
            dispatch_incident_is(o, t->scope, t->id))
            return 0; /* a re-trip of an open incident */
    }
    inc = calloc(1, sizeof(*inc));
    if (!inc)
        return -ENOMEM;
    memcpy(inc->id, id, sizeof(id));
    dispatch_copy(inc->rule, sizeof(inc->rule), t->rule);
    inc->scope = t->scope;
    inc->identity = dispatch_strdup_cap(t->id, DISPATCH_STORE_CAP);
    inc->account = dispatch_strdup_cap(t->account, DISPATCH_STORE_CAP);
    inc->metric = dispatch_strdup_cap(t->metric ? t->metric : "", CONFIG_NAME_MAX);
    inc->window_ms = t->window_ms;
    inc->at_ms = t->at_ms;
    inc->detected_ms = t->detected_ms > 0 ? t->detected_ms : t->at_ms;
    dispatch_copy(inc->log_time, sizeof(inc->log_time), t->log_time);
    inc->value = t->value;
    inc->limit = t->limit;
    inc->monitor = t->monitor;
    inc->tag = d->next_token;
    inc->fu_due_ms = now + dispatch_followup_ms(d);
    r = dispatch_evidence_new(t, &inc->ev);
    if (r < 0 || !inc->identity || !inc->account || !inc->metric) {
        dispatch_incident_free(inc);
        return -ENOMEM;
    }
    dispatch_incident_room(d);
    d->inc[d->ninc++] = inc;
    d->dirty = true;
    dispatch_am_touch_all(d, now);
    for (size_t i = 0; i < d->ndests; i++) {
        struct dispatch_dest *dst = &d->dests[i];
        bool alone;

        if (dst->type == ALERT_DEST_ALERTMANAGER)
            continue; /* level-triggered: the next re-send has it */
        alone = dispatch_window_admit(d, i, inc, now);
        if (alone || (dst->type == ALERT_DEST_WEBHOOK && dst->cfg->individual))
            (void)dispatch_queue_incident(d, i, inc, ALERTMSG_TRIPPED, true, inc->detected_ms);
    }
    dispatch_kick(d);
    return 0;
}

/* Does destination @i send individual follow-ups for @inc? */
static bool
dispatch_follows(const struct dispatch *d, size_t i, const struct dispatch_incident *inc)
{
    const struct dispatch_dest *dst = &d->dests[i];

    if (dst->type == ALERT_DEST_ALERTMANAGER)
        return false;
    return !(inc->held & (1u << i)) || (dst->type == ALERT_DEST_WEBHOOK && dst->cfg->individual);
}

/* The entry of @inc's @kind message at destination @i when it was never attempted. */
static struct outbox_entry *
dispatch_unsent(struct dispatch *d, size_t i, const struct dispatch_incident *inc,
                enum alertmsg_kind kind)
{
    char eid[ALERTMSG_ID_MAX];
    struct outbox_entry *e;

    if (alertmsg_event_id(inc->id, alertmsg_kind_name(kind), eid, sizeof(eid)) < 0)
        return NULL;
    e = outbox_find(d->ob, d->dests[i].name, eid);
    return e && e->attempts == 0 && !e->inflight ? e : NULL;
}

/*
 * The outcome after Slack's follow-up went without it: it takes the follow-up's place if
 * that never left; else only a failure is news, told with the release (two messages).
 */
static void
dispatch_acted_late(struct dispatch *d, size_t i, struct dispatch_incident *inc, int64_t now)
{
    struct outbox_entry *e = dispatch_unsent(d, i, inc, ALERTMSG_FOLLOWUP);

    if (e) {
        outbox_remove(d->ob, e);
        inc->fu_sent &= ~(1u << i);
        (void)dispatch_queue_incident(d, i, inc, ALERTMSG_ACTED, false, now);
    } else if (alertmsg_actions_failed(&inc->act)) {
        inc->fu_owed |= 1u << i;
    } else {
        inc->fu_owed &= ~(1u << i);
    }
}

/* Slack's follow-ups due without an outcome (§2.5); *@next: when the next one is due. */
static void
dispatch_followups(struct dispatch *d, int64_t now, int64_t *next)
{
    for (size_t k = 0; k < d->ninc; k++) {
        struct dispatch_incident *inc = d->inc[k];

        if (!inc->fu_due_ms)
            continue;
        if (inc->acted || inc->released_ms) {
            inc->fu_due_ms = 0;
            continue;
        }
        if (now < inc->fu_due_ms) {
            if (inc->fu_due_ms < *next)
                *next = inc->fu_due_ms;
            continue;
        }
        inc->fu_due_ms = 0;
        d->dirty = true;
        for (size_t i = 0; i < d->ndests; i++) {
            if (d->dests[i].type != ALERT_DEST_SLACK || !dispatch_follows(d, i, inc))
                continue;
            if (dispatch_unsent(d, i, inc, ALERTMSG_TRIPPED))
                continue; /* it says "in progress" itself; the outcome will merge into it */
            inc->fu_sent |= 1u << i;
            (void)dispatch_queue_incident(d, i, inc, ALERTMSG_FOLLOWUP, false, now);
        }
    }
}

/*
 * Another outcome for an incident that has one (lib/action's "resume" after a restart):
 * its "acted" event went or is queued under its id, so no second body may take that id
 * (receivers deduplicate by it). A success is no news; a failure is kept for Alertmanager's
 * annotation and told with the release, like a failure after Slack's follow-up.
 */
static void
dispatch_acted_again(struct dispatch *d, struct dispatch_incident *inc,
                     const struct alertmsg_actions *next)
{
    bool was_failed = alertmsg_actions_failed(&inc->act);

    if (!alertmsg_actions_failed(next))
        return;
    dispatch_copy(inc->backend, sizeof(inc->backend), next->backend);
    inc->act = *next;
    inc->act.backend = inc->backend;
    d->dirty = true;
    for (size_t i = 0; i < d->ndests; i++) {
        struct dispatch_dest *dst = &d->dests[i];

        if ((inc->held_open & (1u << i)) && !was_failed)
            dst->held_failed++;
        if (dispatch_follows(d, i, inc))
            inc->fu_owed |= 1u << i;
    }
}

int
dispatch_acted(struct dispatch *d, const struct dispatch_acted *a)
{
    int64_t now = dispatch_now(d);
    const struct alertmsg_actions next = { .monitor = a->monitor,
                                           .confirmed = a->confirmed,
                                           .frozen = a->frozen,
                                           .failed = a->failed,
                                           .backend = a->backend,
                                           .backend_done = a->backend_done,
                                           .backend_err = a->backend_err,
                                           .preexisting = a->preexisting,
                                           .unconfirmed = a->unconfirmed,
                                           .candidates = a->candidates,
                                           .ledger_err = a->ledger_err };

    if (!a->id)
        return -EINVAL;
    for (size_t k = 0; k < d->ninc; k++) {
        struct dispatch_incident *inc = d->inc[k];

        if (inc->released_ms || !dispatch_incident_is(inc, a->scope, a->id))
            continue;
        if (inc->acted) {
            dispatch_acted_again(d, inc, &next);
            continue;
        }
        inc->acted = true;
        dispatch_copy(inc->backend, sizeof(inc->backend), a->backend);
        inc->act = next;
        inc->act.backend = inc->backend; /* the incident keeps its own copy */
        d->dirty = true;
        for (size_t i = 0; i < d->ndests; i++) {
            struct dispatch_dest *dst = &d->dests[i];
            struct outbox_entry *e;
            bool merged;

            if (inc->held_open & (1u << i)) { /* in this window's digest, not a sent one */
                dst->held_acted++;
                dst->held_failed += alertmsg_actions_failed(&inc->act);
            }
            if (!dispatch_follows(d, i, inc))
                continue;
            if (inc->fu_sent & (1u << i)) {
                dispatch_acted_late(d, i, inc, now);
                continue;
            }
            e = dispatch_unsent(d, i, inc, ALERTMSG_TRIPPED);
            merged = e != NULL;
            if (merged)
                outbox_remove(d->ob, e);
            (void)dispatch_queue_incident(d, i, inc, ALERTMSG_ACTED, merged, now);
        }
        dispatch_evidence_free(inc->ev);
        inc->ev = NULL;
        inc->fu_due_ms = 0;
    }
    dispatch_am_touch_all(d, now);
    dispatch_kick(d);
    return 0;
}

int
dispatch_released(struct dispatch *d, enum usertable_scope scope, const char *id, int64_t at_ms)
{
    int64_t now = dispatch_now(d);

    if (!id)
        return -EINVAL;
    for (size_t k = 0; k < d->ninc; k++) {
        struct dispatch_incident *inc = d->inc[k];

        if (inc->released_ms || !dispatch_incident_is(inc, scope, id))
            continue;
        inc->released_ms = at_ms > 0 ? at_ms : now;
        inc->resolved_wall_ms = now;
        d->dirty = true;
        for (size_t i = 0; i < d->ndests; i++)
            if (dispatch_follows(d, i, inc))
                (void)dispatch_queue_incident(d, i, inc, ALERTMSG_RELEASED, false,
                                              inc->released_ms);
        dispatch_evidence_free(inc->ev);
        inc->ev = NULL;
    }
    dispatch_am_touch_all(d, now);
    dispatch_kick(d);
    return 0;
}

/* --- sending --------------------------------------------------------------------------- */

static void dispatch_done(void *ctx, const struct http_response *r);

static struct dispatch_req *
dispatch_req_new(struct dispatch *d, enum dispatch_req_kind kind, const char *dest,
                 const char *event_id)
{
    struct dispatch_req *q = calloc(1, sizeof(*q));

    if (!q)
        return NULL;
    q->d = d;
    q->kind = kind;
    dispatch_copy(q->dest, sizeof(q->dest), dest);
    dispatch_copy(q->event_id, sizeof(q->event_id), event_id);
    q->next = d->reqs;
    if (d->reqs)
        d->reqs->prev = q;
    d->reqs = q;
    return q;
}

static void
dispatch_req_free(struct dispatch_req *q)
{
    struct dispatch *d = q->d;

    if (q->prev)
        q->prev->next = q->next;
    else
        d->reqs = q->next;
    if (q->next)
        q->next->prev = q->prev;
    free(q);
}

/* Post @body to destination @dst, signed when it is a webhook with secrets. */
static int
dispatch_post(struct dispatch *d, const struct dispatch_dest *dst, const char *event_id,
              const void *body, size_t len, struct dispatch_req *q)
{
    static const int64_t connect_def[] = { 5000, 5000, 3000 },
                         total_def[] = { 15000, 30000, 10000 };
    struct http_header h[HTTP_HEADERS_MAX];
    char ts[24], sig[ALERT_SIG_MAX * ALERT_SECRETS_MAX];
    size_t n = 0;
    struct http_request rq;
    int r;

    h[n++] = (struct http_header){ "Content-Type", "application/json" };
    h[n++] = (struct http_header){ "User-Agent", d->ua };
    if (dst->type == ALERT_DEST_WEBHOOK) {
        int64_t now_s = dispatch_now(d) / 1000; /* one reading: the header is what is signed */

        (void)snprintf(ts, sizeof(ts), "%" PRId64, now_s);
        h[n++] = (struct http_header){ "webhook-id", event_id };
        h[n++] = (struct http_header){ "webhook-timestamp", ts };
        if (dst->nsecrets > 0) {
            r = alert_sign(dst->secrets, dst->nsecrets, event_id, now_s, body, len, sig,
                           sizeof(sig));
            if (r < 0)
                return r;
            h[n++] = (struct http_header){ "webhook-signature", sig };
        }
    }
    rq = (struct http_request){
        .url = dst->url,
        .headers = h,
        .nheaders = n,
        .body = body,
        .body_len = len,
        .connect_timeout_ms = dispatch_or(dst->cfg->connect_timeout_ms, connect_def[dst->type]),
        .timeout_ms = dispatch_or(dst->cfg->timeout_ms, total_def[dst->type]),
        .ca_file = dst->cfg->ca_file,
        .allow_http = dst->cfg->allow_http,
    };
    return d->http.post(d->http.ctx, &rq, dispatch_done, q);
}

static int64_t
dispatch_backoff(struct dispatch *d, unsigned attempt, int64_t retry_after_s)
{
    return alert_backoff_ms(attempt ? attempt : 1, retry_after_s, d->random(d->random_ctx));
}

/*
 * A TLS or certificate failure is not fixed by retrying soon (§5.3: retry slowly): the
 * ceiling starts at DISPATCH_TLS_BACKOFF_MS and doubles up to the cap, the delay drawn from
 * its upper half; still at least Retry-After.
 */
static int64_t
dispatch_backoff_tls(struct dispatch *d, unsigned attempt, int64_t retry_after_s)
{
    int64_t ceiling = DISPATCH_TLS_BACKOFF_MS, delay;

    for (unsigned i = 1; i < attempt && ceiling < ALERT_BACKOFF_CAP_MS; i++)
        ceiling *= 2;
    if (ceiling > ALERT_BACKOFF_CAP_MS)
        ceiling = ALERT_BACKOFF_CAP_MS;
    delay = ceiling / 2 + (int64_t)(d->random(d->random_ctx) % (uint64_t)(ceiling / 2 + 1));
    if (retry_after_s > HTTP_RETRY_AFTER_MAX_S)
        retry_after_s = HTTP_RETRY_AFTER_MAX_S;
    if (delay < retry_after_s * 1000)
        delay = retry_after_s * 1000;
    return delay;
}

/* The delay before retrying after @r, the @attempt-th failure in a row. */
static int64_t
dispatch_retry_delay(struct dispatch *d, unsigned attempt, const struct http_response *r)
{
    if (r->error == HTTP_ERR_TLS)
        return dispatch_backoff_tls(d, attempt ? attempt : 1, r->retry_after_s);
    return dispatch_backoff(d, attempt, r->retry_after_s);
}

static void
dispatch_send_entry(struct dispatch *d, size_t i, struct outbox_entry *e, int64_t now)
{
    struct dispatch_dest *dst = &d->dests[i];
    struct dispatch_req *q = dispatch_req_new(d, DISPATCH_REQ_EDGE, dst->name, e->event_id);
    int r = q ? 0 : -ENOMEM;

    if (q)
        q->type = dst->type;
    outbox_begin(d->ob, e);
    if (r == 0)
        r = dispatch_post(d, dst, e->event_id, e->body, e->body_len, q);
    if (r < 0) {
        if (q)
            dispatch_req_free(q);
        outbox_retry(d->ob, e, now + dispatch_backoff(d, e->attempts, -1), 0);
        dst->retried++;
        return;
    }
    dst->inflight++;
}

/* The bucket of destination @i: Slack destinations sharing a URL share one (§2.5). */
static struct alert_bucket *
dispatch_bucket(struct dispatch *d, size_t i)
{
    struct dispatch_dest *dst = &d->dests[i];

    for (size_t j = 0; dst->type == ALERT_DEST_SLACK && j < i; j++)
        if (d->dests[j].type == ALERT_DEST_SLACK && d->dests[j].limited &&
            strcmp(d->dests[j].url, dst->url) == 0)
            return &d->dests[j].bucket;
    return &dst->bucket;
}

static void
dispatch_edge_tick(struct dispatch *d, size_t i, int64_t now, int64_t *next)
{
    struct dispatch_dest *dst = &d->dests[i];
    size_t limit = dst->type == ALERT_DEST_WEBHOOK ? DISPATCH_HOOK_INFLIGHT : 1;

    for (;;) {
        int64_t later;
        struct outbox_entry *e;

        if (dst->inflight >= limit || dst->am_inflight)
            return; /* a completion polls again */
        e = outbox_due(d->ob, dst->name, now, d->durable, &later);
        if (!e) {
            if (later < *next)
                *next = later;
            return;
        }
        if (dst->limited && !alert_bucket_take(dispatch_bucket(d, i), now)) {
            int64_t w = alert_bucket_wait_ms(dispatch_bucket(d, i), now);
            if (w != INT64_MAX && now + w < *next)
                *next = now + w;
            return;
        }
        dispatch_send_entry(d, i, e, now);
    }
}

static size_t
dispatch_am_views(struct dispatch *d, const struct dispatch_dest *dst, int64_t now,
                  struct alertmsg_incident *v)
{
    int64_t keep = dispatch_or(dispatch_alerts(d)->resolved_keep_ms, DISPATCH_DEF_KEEP_MS);
    size_t n = 0;

    for (size_t k = 0; k < d->ninc; k++) {
        const struct dispatch_incident *inc = d->inc[k];
        if (inc->tag > d->durable)
            continue;
        if (inc->released_ms && now - inc->resolved_wall_ms > keep)
            continue;
        dispatch_view(d, inc, false, dst->cfg, &v[n++]);
    }
    return n;
}

static void
dispatch_am_tick(struct dispatch *d, size_t i, int64_t now, int64_t *next)
{
    struct dispatch_dest *dst = &d->dests[i];
    int64_t resend = dispatch_resend_ms(d);
    struct alertmsg_incident *v;
    struct dispatch_req *q;
    struct strbuf b;
    size_t n;
    int r;

    if (dst->am_inflight || dst->inflight > 0)
        return;
    if (now < dst->am_next_ms) {
        if (dst->am_next_ms < *next)
            *next = dst->am_next_ms;
        return;
    }
    v = malloc((d->ninc ? d->ninc : 1) * sizeof(*v));
    if (!v)
        return;
    n = dispatch_am_views(d, dst, now, v);
    if (n == 0) {
        free(v);
        dst->am_next_ms = now + resend;
        if (dst->am_next_ms < *next)
            *next = dst->am_next_ms;
        return;
    }
    strbuf_init(&b, DISPATCH_AM_BODY_MAX);
    r = alertmsg_am_array(&b, v, n, now + 4 * resend);
    free(v);
    q = r == 0 ? dispatch_req_new(d, DISPATCH_REQ_AM, dst->name, "am") : NULL;
    if (q) {
        q->type = dst->type;
        r = dispatch_post(d, dst, "am", b.p, b.len, q);
    } else if (r == 0)
        r = -ENOMEM;
    strbuf_done(&b);
    dst->am_last_ms = now;
    if (r < 0) {
        if (q)
            dispatch_req_free(q);
        dst->am_next_ms = now + dispatch_backoff(d, ++dst->am_attempts, -1);
        if (dst->am_next_ms < *next)
            *next = dst->am_next_ms;
        return;
    }
    dst->am_inflight = true;
    dst->am_next_ms = now + resend;
}

static void
dispatch_log_failed(const struct dispatch_dest *dst, const struct http_response *r, const char *why)
{
    char st[16], answer[65];
    size_t n = strcspn(r->body, " \r\n");

    (void)snprintf(st, sizeof(st), "%d", r->status);
    (void)snprintf(answer, sizeof(answer), "%.*s", (int)(n < 64 ? n : 64), r->body);
    const struct log_field f[] = {
        { "DESTINATION", dst->name }, { "STATUS", st }, { "ANSWER", answer }, { NULL, NULL }
    };

    log_emit(LOG_WARNING, 0, f, "alert to %s failed for good: %s", dst->name,
             r->error ? r->errmsg : why);
}

/*
 * An attempt at @dst failed and will be retried (§5.3): a certificate or CA problem is
 * logged at LOG_ERR once an hour, an alert failing DISPATCH_FAIL_WARN attempts in a row
 * (@attempts) at LOG_WARNING once per DISPATCH_FAIL_LOG_MS, per destination. The text names
 * the destination and carries http's redacted error, never the URL (a secret).
 */
static void
dispatch_log_retry(struct dispatch *d, struct dispatch_dest *dst, const struct http_response *r,
                   unsigned attempts)
{
    int64_t mono = clock_mono_ms(d->clock);
    char st[16], n[16], what[HTTP_ERRMSG_MAX + 16];
    const struct log_field f[] = {
        { "DESTINATION", dst->name }, { "STATUS", st }, { "ATTEMPTS", n }, { NULL, NULL }
    };

    dst->fail_run++;
    (void)snprintf(st, sizeof(st), "%d", r->status);
    (void)snprintf(n, sizeof(n), "%u", attempts);
    if (r->error != HTTP_OK)
        (void)snprintf(what, sizeof(what), "%s", r->errmsg[0] ? r->errmsg : "no answer");
    else
        (void)snprintf(what, sizeof(what), "HTTP %d", r->status);
    if (r->error == HTTP_ERR_TLS &&
        (!dst->tls_logged || mono - dst->tls_log_ms >= DISPATCH_TLS_LOG_MS)) {
        log_emit(LOG_ERR, 0, f,
                 "alert destination %s: certificate or CA problem; verification stays on (%s)",
                 dst->name, what);
        dst->tls_logged = dst->failing = true;
        dst->tls_log_ms = mono;
    }
    if (attempts >= DISPATCH_FAIL_WARN &&
        (!dst->fail_logged || mono - dst->fail_log_ms >= DISPATCH_FAIL_LOG_MS)) {
        log_emit(LOG_WARNING, 0, f,
                 "alert destination %s: an alert has failed %u attempts in a row (last: %s); "
                 "still retrying",
                 dst->name, attempts, what);
        dst->fail_logged = dst->failing = true;
        dst->fail_log_ms = mono;
    }
}

/* @dst delivered: after a logged failure, say so. */
static void
dispatch_log_delivered(struct dispatch_dest *dst)
{
    char n[16];
    const struct log_field f[] = { { "DESTINATION", dst->name },
                                   { "ATTEMPTS", n },
                                   { NULL, NULL } };

    if (dst->failing) {
        (void)snprintf(n, sizeof(n), "%u", dst->fail_run);
        log_emit(LOG_NOTICE, 0, f, "alert destination %s delivers again after %u failed attempts",
                 dst->name, dst->fail_run);
    }
    dst->failing = false;
    dst->fail_run = 0;
}

static void
dispatch_edge_result(struct dispatch *d, size_t i, struct outbox_entry *e,
                     const struct http_response *r)
{
    struct dispatch_dest *dst = &d->dests[i];
    enum alert_outcome o = alert_classify(dst->type, r);
    int64_t now = dispatch_now(d);

    dst->last_status = r->status;
    d->dirty = true;
    if (o != ALERT_PERMANENT || (r->status != 401 && r->status != 403))
        dst->auth_fails = 0;
    switch (o) {
    case ALERT_DELIVERED:
        outbox_done(d->ob, e);
        dst->delivered++;
        dispatch_log_delivered(dst);
        break;
    case ALERT_RETRY:
        if (r->status == 429 && dst->limited)
            alert_bucket_slow(dispatch_bucket(d, i), now);
        dispatch_log_retry(d, dst, r, e->attempts);
        outbox_retry(d->ob, e, now + dispatch_retry_delay(d, e->attempts, r), r->status);
        dst->retried++;
        break;
    case ALERT_PERMANENT:
    case ALERT_CONFIG:
        dispatch_log_failed(dst, r, o == ALERT_CONFIG ? "configuration error" : "refused");
        outbox_done(d->ob, e);
        dst->failed++;
        if (r->status == 401 || r->status == 403) {
            if (++dst->auth_fails >= DISPATCH_AUTH_PAUSE)
                dispatch_disable(d, i, r->status, "paused after 3 authentication failures");
        }
        break;
    case ALERT_DISABLE:
        outbox_retry(d->ob, e, now, r->status); /* kept for when it is re-enabled */
        dispatch_disable(d, i, r->status, "the receiver says it is gone");
        break;
    }
}

static void
dispatch_am_result(struct dispatch *d, size_t i, const struct http_response *r)
{
    struct dispatch_dest *dst = &d->dests[i];
    enum alert_outcome o = alert_classify(dst->type, r);
    int64_t now = dispatch_now(d), resend = dispatch_resend_ms(d), delay;

    dst->am_inflight = false;
    dst->last_status = r->status;
    switch (o) {
    case ALERT_DELIVERED:
        dst->delivered++;
        dst->am_attempts = 0;
        dispatch_log_delivered(dst);
        break;
    case ALERT_RETRY:
        dst->retried++;
        dispatch_log_retry(d, dst, r, ++dst->am_attempts);
        delay = dispatch_retry_delay(d, dst->am_attempts, r);
        /* the next re-send comes anyway; only Retry-After may push it further */
        if (delay > resend && (r->retry_after_s < 0 || r->retry_after_s * 1000 < delay))
            delay = r->retry_after_s > 0 ? r->retry_after_s * 1000 : resend;
        dst->am_next_ms = now + delay;
        break;
    case ALERT_PERMANENT:
    case ALERT_CONFIG:
        dispatch_log_failed(dst, r, "refused");
        dst->failed++;
        break;
    case ALERT_DISABLE:
        dispatch_disable(d, i, r->status, "the receiver says it is gone");
        break;
    }
}

static void
dispatch_done(void *ctx, const struct http_response *r)
{
    struct dispatch_req *q = ctx;
    struct dispatch *d = q->d;
    size_t i = 0;
    struct dispatch_dest *dst = dispatch_dest_find(d, q->dest, &i);

    if (q->kind == DISPATCH_REQ_TEST) {
        enum alert_outcome o = alert_classify(dst ? dst->type : ALERT_DEST_WEBHOOK, r);
        q->test_fn(q->test_ctx, q->dest, o == ALERT_DELIVERED, r->status,
                   r->error ? r->errmsg : alert_outcome_name(o));
    } else if (dst && q->kind == DISPATCH_REQ_AM) {
        metrics_hist_observe(&d->hist[q->type], (double)r->duration_ms / 1000.0);
        dispatch_am_result(d, i, r);
    } else if (dst) {
        struct outbox_entry *e = outbox_find(d->ob, q->dest, q->event_id);

        metrics_hist_observe(&d->hist[q->type], (double)r->duration_ms / 1000.0);
        if (dst->inflight > 0)
            dst->inflight--;
        if (e && e->inflight)
            dispatch_edge_result(d, i, e, r);
    }
    dispatch_req_free(q);
    dispatch_kick(d);
}

/* --- the schedule ---------------------------------------------------------------------- */

/* An alert that expired undelivered: counted (and logged) against its destination. */
static void
dispatch_expired_cb(void *ctx, const struct outbox_entry *e)
{
    struct dispatch *d = ctx;

    dispatch_lost(d, dispatch_dest_find(d, e->dest, NULL), 0, 1);
}

static void
dispatch_expire(struct dispatch *d, int64_t now)
{
    int64_t keep = dispatch_or(dispatch_alerts(d)->resolved_keep_ms, DISPATCH_DEF_KEEP_MS);

    if (outbox_expire_each(d->ob, now, dispatch_expired_cb, d) > 0)
        d->dirty = true;
    for (size_t k = 0; k < d->ninc;) {
        const struct dispatch_incident *inc = d->inc[k];
        if (inc->released_ms && now - inc->resolved_wall_ms > keep) {
            dispatch_incident_remove(d, k);
            continue;
        }
        k++;
    }
    d->last_expire_ms = now;
}

int64_t
dispatch_poll(struct dispatch *d)
{
    int64_t now = dispatch_now(d), next = INT64_MAX, ms;

    if (now - d->last_expire_ms >= DISPATCH_EXPIRE_EVERY_MS)
        dispatch_expire(d, now);
    dispatch_followups(d, now, &next);
    for (size_t i = 0; i < d->ndests; i++) {
        struct dispatch_dest *dst = &d->dests[i];

        dispatch_window_roll(d, i, now);
        if (dst->win_open && dst->win_start + dispatch_interval_ms(d) < next)
            next = dst->win_start + dispatch_interval_ms(d);
        if (!dst->enabled)
            continue;
        if (dst->type == ALERT_DEST_ALERTMANAGER)
            dispatch_am_tick(d, i, now, &next);
        dispatch_edge_tick(d, i, now, &next);
    }
    if (outbox_count(d->ob, NULL) > 0 && d->last_expire_ms + DISPATCH_EXPIRE_EVERY_MS < next)
        next = d->last_expire_ms + DISPATCH_EXPIRE_EVERY_MS;
    dispatch_loss_log(d, now, &next);
    ms = next == INT64_MAX ? -1 : next > now ? next - now : 0;
    if (d->loop) {
        ev_timer_stop(d->loop, &d->timer);
        if (ms >= 0) {
            ev_timer_set(&d->timer, (double)ms / 1000.0, 0.);
            ev_timer_start(d->loop, &d->timer);
        }
    }
    return ms;
}

static void
dispatch_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    (void)dispatch_poll(w->data);
}

/* --- destinations and configuration ---------------------------------------------------- */

static void
dispatch_dest_done(struct dispatch_dest *dst)
{
    if (dst->url) {
        explicit_bzero(dst->url, strlen(dst->url));
        free(dst->url);
        dst->url = NULL;
    }
    explicit_bzero(dst->secrets, sizeof(dst->secrets));
}

static char *
dispatch_dest_url(const struct config_dest *cd)
{
    static const char am_path[] = "/api/v2/alerts";
    size_t n = cd->url ? strlen(cd->url) : 0;
    char *u;

    if (cd->type != ALERT_DEST_ALERTMANAGER)
        return dispatch_strdup_cap(cd->url ? cd->url : "", n);
    while (n > 0 && cd->url[n - 1] == '/')
        n--;
    u = malloc(n + sizeof(am_path));
    if (u) {
        memcpy(u, cd->url, n);
        memcpy(u + n, am_path, sizeof(am_path));
    }
    return u;
}

/*
 * What a disabled or paused flag in the state file is tied to (alerting.md §5.4): the first
 * DISPATCH_DEST_HASH bytes of SHA-256 over the destination's type, URL (as posted) and
 * secrets, so a restart with another URL or secret re-enables it as a reload would. A plain
 * hash, not a keyed one: the state file is root's alone (0600), like the configuration that
 * holds the URL itself, and a webhook URL or secret is not a guessable string; the file
 * never holds the URL. All zero when it cannot be computed: then it matches nothing.
 */
static void
dispatch_dest_hash(enum alert_dest_type type, const char *url, const struct alert_secret *secrets,
                   size_t nsecrets, uint8_t out[DISPATCH_DEST_HASH])
{
    static const char domain[] = "floodgate destination";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    uint8_t t = (uint8_t)type, n = (uint8_t)nsecrets;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
              EVP_DigestUpdate(ctx, domain, sizeof(domain)) && EVP_DigestUpdate(ctx, &t, 1) &&
              EVP_DigestUpdate(ctx, url, strlen(url) + 1) && EVP_DigestUpdate(ctx, &n, 1);

    for (size_t i = 0; ok && i < nsecrets; i++) {
        uint8_t len = (uint8_t)secrets[i].len;
        ok = secrets[i].len <= sizeof(secrets[i].key) && EVP_DigestUpdate(ctx, &len, 1) &&
             EVP_DigestUpdate(ctx, secrets[i].key, secrets[i].len);
    }
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen >= DISPATCH_DEST_HASH;
    EVP_MD_CTX_free(ctx);
    if (ok)
        memcpy(out, md, DISPATCH_DEST_HASH);
    else
        memset(out, 0, DISPATCH_DEST_HASH);
    explicit_bzero(md, sizeof(md));
}

/*
 * A destination's alerts are due now: an operator changed what decides whether they can
 * get through (URL, secrets, CA file, allow_http) or re-enabled it, so the backoff earned
 * by the old settings (up to 10 minutes, longer after TLS failures) no longer applies.
 */
static void
dispatch_dest_due_now(struct dispatch *d, const char *name, int64_t now)
{
    struct outbox_entry *e;
    uint32_t ix = outbox_dest_ix(d->ob, name);

    for (size_t k = 0; ix != OUTBOX_DEST_NONE && (e = outbox_at(d->ob, k)) != NULL; k++)
        if (!e->inflight && e->next_ms > now && e->dest_ix == ix) {
            e->next_ms = now;
            d->dirty = true;
        }
}

/* Fill @dst from @cd; its state is kept when @old is given and its URL and secrets match. */
static int
dispatch_dest_setup(struct dispatch *d, struct dispatch_dest *dst, const struct config_dest *cd,
                    const struct dispatch_dest *old, int64_t now)
{
    char *url = dispatch_dest_url(cd);
    bool same;

    if (!url)
        return -ENOMEM;
    same = old && old->type == cd->type && strcmp(old->url, url) == 0 &&
           old->nsecrets == cd->nsecrets &&
           memcmp(old->secrets, cd->secrets, sizeof(old->secrets)) == 0;
    if (old) {
        *dst = *old;
    } else {
        memset(dst, 0, sizeof(*dst));
        dst->enabled = true;
    }
    dispatch_copy(dst->name, sizeof(dst->name), cd->name);
    dst->type = cd->type;
    dst->cfg = cd;
    dst->url = url;
    memcpy(dst->secrets, cd->secrets, sizeof(dst->secrets));
    dst->nsecrets = cd->nsecrets;
    if (http_url_redact(url, dst->host, sizeof(dst->host)) < 0)
        dispatch_copy(dst->host, sizeof(dst->host), "?");
    dispatch_dest_hash(dst->type, url, dst->secrets, dst->nsecrets, dst->hash);
    dispatch_copy(dst->ca_file, sizeof(dst->ca_file), cd->ca_file ? cd->ca_file : "");
    dst->allow_http = cd->allow_http;
    if (old && !same) {
        dst->enabled = true; /* a new URL or secret: try again (alerting.md §5.4) */
        dst->auth_fails = 0;
        dst->am_next_ms = 0;
        dst->am_attempts = 0;
    }
    if (old && (!same || strcmp(old->ca_file, cd->ca_file ? cd->ca_file : "") != 0 ||
                old->allow_http != cd->allow_http)) {
        dst->am_next_ms = 0;
        dispatch_dest_due_now(d, cd->name, now);
    }
    if (!old || old->bucket.rate != cd->rate || old->bucket.burst != cd->burst ||
        !old->limited != !(cd->rate > 0)) {
        dst->limited = cd->rate > 0;
        alert_bucket_init(&dst->bucket, cd->rate, cd->burst >= 1 ? cd->burst : 1, now);
    }
    return 0;
}

/* An incident's destination bits, from one destination order to another (@map: old index -> new, SIZE_MAX: gone). */
static uint32_t
dispatch_remap(uint32_t bits, const size_t *map, size_t n)
{
    uint32_t out = 0;

    for (size_t k = 0; k < n; k++)
        if (((bits >> k) & 1u) && map[k] != SIZE_MAX)
            out |= 1u << map[k];
    return out;
}

static struct outbox_limits
dispatch_limits(const struct config *cfg)
{
    return (struct outbox_limits){ .max_entries = cfg->alerts.max_pending,
                                   .max_bytes = cfg->alerts.max_bytes,
                                   .max_age_ms = cfg->alerts.max_age_ms };
}

int
dispatch_set_config(struct dispatch *d, const struct config *cfg)
{
    const struct config_alerts *al = &cfg->alerts;
    struct dispatch_dest *nd = NULL;
    size_t map[CONFIG_DESTS_MAX]; /* old index -> new index (SIZE_MAX: removed) */
    struct outbox_limits lim = dispatch_limits(cfg);
    int64_t now = dispatch_now(d);
    uint32_t kept[CONFIG_DESTS_MAX];
    struct outbox_entry *e;

    if (al->ndests > CONFIG_DESTS_MAX || d->ndests > CONFIG_DESTS_MAX)
        return -EINVAL;
    if (al->ndests > 0) {
        nd = calloc(al->ndests, sizeof(*nd));
        if (!nd)
            return -ENOMEM;
    }
    for (size_t i = 0; i < d->ndests; i++)
        map[i] = SIZE_MAX;
    for (size_t j = 0; j < al->ndests; j++) {
        size_t oi = SIZE_MAX;
        const struct dispatch_dest *old = dispatch_dest_find(d, al->dests[j].name, &oi);

        if (dispatch_dest_setup(d, &nd[j], &al->dests[j], old, now) < 0) {
            for (size_t k = 0; k < j; k++)
                free(nd[k].url);
            free(nd);
            return -ENOMEM;
        }
        if (old)
            map[oi] = j;
    }
    /* a removed destination's pending alerts go with it; a kept one's outbox number stays */
    for (size_t j = 0; j < al->ndests; j++)
        kept[j] = outbox_dest_ix(d->ob, al->dests[j].name);
    for (size_t k = 0; (e = outbox_at(d->ob, k)) != NULL;) {
        bool keep = false;
        for (size_t j = 0; j < al->ndests && !keep; j++)
            keep = e->dest_ix == kept[j];
        if (!keep) {
            outbox_remove(d->ob, e);
            d->dirty = true;
            continue;
        }
        k++;
    }
    for (size_t k = 0; k < d->ninc; k++) {
        struct dispatch_incident *inc = d->inc[k];

        inc->held = dispatch_remap(inc->held, map, d->ndests);
        inc->held_open = dispatch_remap(inc->held_open, map, d->ndests);
        inc->fu_sent = dispatch_remap(inc->fu_sent, map, d->ndests);
        inc->fu_owed = dispatch_remap(inc->fu_owed, map, d->ndests);
    }
    for (size_t i = 0; i < d->ndests; i++)
        dispatch_dest_done(&d->dests[i]); /* a kept one has its own new copy */
    free(d->dests);
    d->dests = nd;
    d->ndests = al->ndests;
    d->cfg = cfg;
    outbox_set_limits(d->ob, &lim);
    dispatch_kick(d);
    return 0;
}

int
dispatch_enable(struct dispatch *d, const char *dest)
{
    struct dispatch_dest *dst = dispatch_dest_find(d, dest, NULL);

    if (!dst)
        return -ENOENT;
    if (!dst->enabled) {
        dst->enabled = true;
        dst->auth_fails = 0;
        dst->am_next_ms = 0;
        d->dirty = true;
        const struct log_field f[] = { { "DESTINATION", dst->name }, { NULL, NULL } };

        log_emit(LOG_NOTICE, 0, f, "alert destination %s re-enabled", dst->name);
    }
    dispatch_dest_due_now(d, dst->name, dispatch_now(d));
    dispatch_kick(d);
    return 0;
}

int
dispatch_test(struct dispatch *d, dispatch_test_fn done, void *ctx)
{
    int64_t now = dispatch_now(d);
    char eid[ALERTMSG_ID_MAX];
    struct strbuf b;

    if (!done)
        return -EINVAL;
    alertmsg_test_id(d->host, now, eid);
    strbuf_init(&b, ALERTMSG_BODY_MAX);
    for (size_t i = 0; i < d->ndests; i++) {
        const struct dispatch_dest *dst = &d->dests[i];
        struct dispatch_req *q = NULL;
        int r;

        strbuf_reset(&b);
        r = alertmsg_test_body(&b, dst->type, d->host, eid, now);
        if (r == 0) {
            q = dispatch_req_new(d, DISPATCH_REQ_TEST, dst->name, eid);
            r = q ? 0 : -ENOMEM;
        }
        if (r == 0) {
            q->test_fn = done;
            q->test_ctx = ctx;
            r = dispatch_post(d, dst, eid, b.p, b.len, q);
        }
        if (r < 0) {
            if (q)
                dispatch_req_free(q);
            done(ctx, dst->name, false, 0, "the request could not be started");
        }
    }
    strbuf_done(&b);
    return 0;
}

int
dispatch_new(const struct dispatch_params *p, struct dispatch **ret)
{
    struct outbox_limits lim;
    struct dispatch *d;
    const char *host;
    int r;

    if (!p || !p->clock || !p->cfg || !p->http.post)
        return -EINVAL;
    d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->loop = p->loop;
    d->clock = p->clock;
    d->cfg = p->cfg;
    d->http = p->http;
    d->random = p->random ? p->random : dispatch_random_default;
    d->random_ctx = p->random_ctx;
    d->next_token = 1;
    for (size_t k = 0; k < DISPATCH_KINDS; k++) {
        d->hist[k].bounds = dispatch_duration_bounds;
        d->hist[k].nbounds = N_ELEMS(dispatch_duration_bounds);
    }
    ev_timer_init(&d->timer, dispatch_timer_cb, 0., 0.);
    d->timer.data = d;
    host = p->host_name ? p->host_name : p->cfg->alerts.host_name;
    if (host)
        dispatch_copy(d->host, sizeof(d->host), host);
    else if (gethostname(d->host, sizeof(d->host) - 1) < 0 || !d->host[0])
        dispatch_copy(d->host, sizeof(d->host), "localhost");
    (void)snprintf(d->ua, sizeof(d->ua), "floodgate/%s", p->version ? p->version : "unknown");
    lim = dispatch_limits(p->cfg);
    r = outbox_new(&lim, &d->ob);
    if (r == 0)
        r = dispatch_set_config(d, p->cfg);
    if (r < 0) {
        dispatch_free(d);
        return r;
    }
    d->last_expire_ms = dispatch_now(d);
    *ret = d;
    return 0;
}

void
dispatch_free(struct dispatch *d)
{
    if (!d)
        return;
    if (d->loop)
        ev_timer_stop(d->loop, &d->timer);
    while (d->reqs)
        dispatch_req_free(d->reqs);
    for (size_t i = 0; i < d->ndests; i++)
        dispatch_dest_done(&d->dests[i]);
    free(d->dests);
    for (size_t i = 0; i < d->ninc; i++)
        dispatch_incident_free(d->inc[i]);
    outbox_free(d->ob);
    free(d);
}

/* --- persistence ----------------------------------------------------------------------- */

/*
 * Encoding (version 5; version 4, without the unconfirmed flag, the candidates and the
 * ledger's errno, still decodes with them 0; version 3, without the incidents in each open
 * digest and the destinations' hashes, still decodes with every held incident in it and
 * every destination enabled; version 2, without the detection and log times too, with the
 * log time as the detection's; version 1, without the digest and follow-up state too, with
 * no grouping window open and no follow-up pending):
 *   FLOODGATE-DISPATCH 5\n
 *   D <dest> <enabled> <win_open> <digest_mode> <win_start> <win_sent> <held_total>
 *     <held_acted> <held_failed> <ncounts> <ntop> <hash>\n    per destination, then its
 *   C <scope> <n> <len rule>\n<rule>\n                       digest counts and
 *   T <scope> <value> <limit> <len rule> <len identity> <len metric>\n
 *   <rule><identity><metric>\n                               top identities
 *   I <id> <scope> <at> <released> <resolved_wall> <window> <value> <limit> <monitor>
 *     <acted> <confirmed> <frozen> <failed> <backend_done> <errno> <preexisting>
 *     <len rule> <len identity> <len account> <len metric> <len backend>
 *     <held> <followup due> <followup sent> <failure owed> <detected> <len log time>
 *     <held in the open digest> <unconfirmed> <candidates> <ledger errno>\n
 *   <rule><identity><account><metric><backend><log time>\n  per incident
 *   O <len>\n<outbox encoding>\n
 *   END <crc32 of everything before, 8 hex digits>\n
 * The incidents' destination bits (held, sent, owed, open) count the D lines in order; decoding
 * maps them to the running destinations by name. <hash> is dispatch_dest_hash()'s, in hex: a
 * destination's disabled (or paused) flag is kept only while its URL and secrets are the same.
 */
int
dispatch_encode(struct dispatch *d, struct strbuf *out)
{
    size_t start = out->len;
    struct strbuf ob;
    int r = strbuf_appends(out, DISPATCH_ENCODE_MAGIC);
    uLong crc;

    for (size_t i = 0; i < d->ndests && r == 0; i++) {
        const struct dispatch_dest *dst = &d->dests[i];
        char hex[2 * DISPATCH_DEST_HASH + 1];

        util_hex(hex, dst->hash, DISPATCH_DEST_HASH);
        r = strbuf_printf(out,
                          "D %s %d %d %d %" PRId64 " %" PRIu32 " %" PRIu64 " %" PRIu64 " %" PRIu64
                          " %zu %zu %s\n",
                          dst->name, dst->enabled, dst->win_open, dst->digest_mode, dst->win_start,
                          dst->win_sent, dst->held_total, dst->held_acted, dst->held_failed,
                          dst->ncounts, dst->ntop, hex);
        for (size_t k = 0; k < dst->ncounts && r == 0; k++)
            r = strbuf_printf(out, "C %d %" PRIu64 " %zu\n%s\n", (int)dst->counts[k].scope,
                              dst->counts[k].n, strlen(dst->counts[k].rule), dst->counts[k].rule);
        for (size_t k = 0; k < dst->ntop && r == 0; k++) {
            const struct dispatch_dg_item *it = &dst->top[k];
            r = strbuf_printf(out, "T %d %" PRIu64 " %" PRIu64 " %zu %zu %zu\n%s%s%s\n",
                              (int)it->scope, it->value, it->limit, strlen(it->rule),
                              strlen(it->identity), strlen(it->metric), it->rule, it->identity,
                              it->metric);
        }
    }
    for (size_t k = 0; k < d->ninc && r == 0; k++) {
        const struct dispatch_incident *c = d->inc[k];
        r = strbuf_printf(
            out,
            "I %s %d %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %" PRIu64 " %" PRIu64
            " %d %d %zu %zu %zu %" PRIu32 " %d %d %zu %zu %zu %zu %zu"
            " %" PRIu32 " %" PRId64 " %" PRIu32 " %" PRIu32 " %" PRId64 " %zu"
            " %" PRIu32 " %d %zu %d\n",
            c->id, (int)c->scope, c->at_ms, c->released_ms, c->resolved_wall_ms, c->window_ms,
            c->value, c->limit, c->monitor, c->acted, c->act.confirmed, c->act.frozen,
            c->act.failed, c->act.backend_done, c->act.backend_err < 0 ? -c->act.backend_err : 0,
            c->act.preexisting, strlen(c->rule), strlen(c->identity), strlen(c->account),
            strlen(c->metric), strlen(c->backend), c->held, c->fu_due_ms, c->fu_sent, c->fu_owed,
            c->detected_ms, strlen(c->log_time), c->held_open, c->act.unconfirmed,
            c->act.candidates, c->act.ledger_err < 0 ? -c->act.ledger_err : 0);
        if (r == 0)
            r = strbuf_printf(out, "%s%s%s%s%s%s\n", c->rule, c->identity, c->account, c->metric,
                              c->backend, c->log_time);
    }
    strbuf_init(&ob, out->max > out->len ? out->max - out->len : 0); /* it must fit @out */
    if (r == 0)
        r = outbox_encode(d->ob, &ob);
    if (r == 0)
        r = strbuf_printf(out, "O %zu\n", ob.len);
    if (r == 0)
        r = strbuf_append(out, ob.p, ob.len);
    strbuf_done(&ob);
    if (r == 0)
        r = strbuf_append(out, "\n", 1);
    if (r == 0) {
        crc = crc32(0L, (const Bytef *)out->p + start, (uInt)(out->len - start));
        r = strbuf_printf(out, "END %08lx\n", (unsigned long)crc);
    }
    if (r < 0) {
        out->len = start;
        if (out->p)
            out->p[start] = '\0';
    }
    return r;
}

struct dispatch_rd {
    const char *p, *end;
};

/* The next line's tokens (at most @max), NUL-free view; false at the end or on a bad line. */
static size_t
dispatch_rd_line(struct dispatch_rd *rd, struct fg_str *tok, size_t max)
{
    const char *nl = memchr(rd->p, '\n', (size_t)(rd->end - rd->p));
    const char *s = rd->p;
    size_t n = 0;

    if (!nl)
        return 0;
    rd->p = nl + 1;
    while (s < nl) {
        const char *sp = memchr(s, ' ', (size_t)(nl - s));
        const char *e = sp ? sp : nl;
        if (n == max || e == s)
            return 0;
        tok[n++] = fg_str_make(s, (size_t)(e - s));
        s = sp ? sp + 1 : nl;
    }
    return n;
}

static bool
dispatch_rd_i64(struct fg_str t, int64_t *ret)
{
    bool neg = t.len > 0 && t.p[0] == '-';
    uint64_t v;

    if (util_parse_u64(t.p + neg, t.len - neg, &v) < 0 || v > INT64_MAX)
        return false;
    *ret = neg ? -(int64_t)v : (int64_t)v;
    return true;
}

static bool
dispatch_rd_u64(struct fg_str t, uint64_t *ret)
{
    return util_parse_u64(t.p, t.len, ret) == 0;
}

static char *
dispatch_rd_take(struct dispatch_rd *rd, uint64_t n)
{
    char *s;

    if (n > (uint64_t)(rd->end - rd->p))
        return NULL;
    s = dispatch_strdup_cap(rd->p, (size_t)n);
    if (s && strlen(s) != n) {
        free(s); /* a NUL inside */
        return NULL;
    }
    if (s)
        rd->p += n;
    return s;
}

static int
dispatch_rd_incident(struct dispatch_rd *rd, const struct fg_str *t, int version,
                     struct dispatch_incident **ret)
{
    struct dispatch_incident *c = calloc(1, sizeof(*c));
    uint64_t u[16], loglen = 0, v5[3] = { 0, 0, 0 };
    int64_t s[4], detected = 0;
    char *rule = NULL, *backend = NULL, *logt = NULL;
    bool ok = c != NULL;

    /* t[1] id, t[2] scope, t[3..6] times, t[7..21] counts and lengths (see the encoding):
     * u[1] value, u[2] limit, u[3] monitor, u[4] acted, u[5..7] confirmed, frozen, failed,
     * u[8] backend_done, u[9] errno, u[10] preexisting, u[11..15] lengths */
    ok = ok && util_copy_str(c->id, sizeof(c->id), t[1]) == 0 && outbox_name_valid(c->id);
    ok = ok && dispatch_rd_u64(t[2], &u[0]) && u[0] < SCOPE__MAX;
    for (size_t i = 0; ok && i < 4; i++)
        ok = dispatch_rd_i64(t[3 + i], &s[i]);
    for (size_t i = 0; ok && i < 15; i++)
        ok = dispatch_rd_u64(t[7 + i], &u[1 + i]);
    ok = ok && u[11] < CONFIG_NAME_MAX && u[15] < sizeof(c->backend) && u[3] <= 1 && u[4] <= 1 &&
         u[10] <= 1 && u[8] <= UINT32_MAX && u[9] < 4096;
    ok = ok && (rule = dispatch_rd_take(rd, u[11])) &&
         (c->identity = dispatch_rd_take(rd, u[12])) &&
         (c->account = dispatch_rd_take(rd, u[13])) && (c->metric = dispatch_rd_take(rd, u[14])) &&
         (backend = dispatch_rd_take(rd, u[15]));
    /* version 3: t[26] detected, t[27] the log time's length */
    if (ok && version >= 3)
        ok = dispatch_rd_i64(t[26], &detected) && dispatch_rd_u64(t[27], &loglen) &&
             loglen < sizeof(c->log_time) && (logt = dispatch_rd_take(rd, loglen));
    /* version 5: t[29] unconfirmed, t[30] candidates, t[31] the ledger's errno */
    if (ok && version >= 5)
        ok = dispatch_rd_u64(t[29], &v5[0]) && v5[0] <= 1 && dispatch_rd_u64(t[30], &v5[1]) &&
             v5[1] <= SIZE_MAX && dispatch_rd_u64(t[31], &v5[2]) && v5[2] < 4096;
    ok = ok && rd->p < rd->end && *rd->p == '\n';
    if (ok) {
        rd->p++;
        dispatch_copy(c->rule, sizeof(c->rule), rule);
        dispatch_copy(c->backend, sizeof(c->backend), backend);
        dispatch_copy(c->log_time, sizeof(c->log_time), logt);
        c->scope = (enum usertable_scope)u[0];
        c->at_ms = s[0];
        c->detected_ms = detected > 0 ? detected : s[0];
        c->released_ms = s[1];
        c->resolved_wall_ms = s[2];
        c->window_ms = s[3];
        c->value = u[1];
        c->limit = u[2];
        c->monitor = u[3];
        c->acted = u[4];
        c->act = (struct alertmsg_actions){ .monitor = c->monitor,
                                            .confirmed = (size_t)u[5],
                                            .frozen = (size_t)u[6],
                                            .failed = (size_t)u[7],
                                            .backend = c->backend,
                                            .backend_done = (uint32_t)u[8],
                                            .backend_err = -(int)u[9],
                                            .preexisting = u[10],
                                            .unconfirmed = v5[0] != 0,
                                            .candidates = (size_t)v5[1],
                                            .ledger_err = -(int)v5[2] };
    }
    free(rule);
    free(backend);
    free(logt);
    if (!ok) {
        dispatch_incident_free(c);
        return -EBADMSG;
    }
    *ret = c;
    return 0;
}

/* A string of @n bytes and its newline: false when damaged. */
static bool
dispatch_rd_str(struct dispatch_rd *rd, uint64_t n, char *buf, size_t size)
{
    char *s;
    bool ok;

    if (n >= size || !(s = dispatch_rd_take(rd, n)))
        return false;
    dispatch_copy(buf, size, s);
    free(s);
    ok = rd->p < rd->end && *rd->p == '\n';
    rd->p += ok;
    return ok;
}

/* A destination's digest state (version 2): the D line's fields @t, its C and T records. */
static bool
dispatch_rd_digest(struct dispatch_rd *rd, const struct fg_str *t, struct dispatch_dest *g)
{
    struct fg_str tok[8];
    uint64_t u[9], v[6];
    int64_t start;
    bool ok = dispatch_rd_i64(t[5], &start);

    /* u: t[3] win_open, t[4] digest_mode, t[6] win_sent, t[7..9] held total, acted, failed,
     * t[10] ncounts, t[11] ntop (u[2] unused: t[5] is the window's start) */
    for (size_t i = 0; ok && i < 9; i++)
        ok = i == 2 || dispatch_rd_u64(t[3 + i], &u[i]);
    if (!ok || u[0] > 1 || u[1] > 1 || u[3] > UINT32_MAX || u[7] > DISPATCH_COUNTS_MAX ||
        u[8] > ALERTMSG_DIGEST_TOP)
        return false;
    g->win_open = u[0];
    g->digest_mode = u[1];
    g->win_start = start;
    g->win_sent = (uint32_t)u[3];
    g->held_total = u[4];
    g->held_acted = u[5];
    g->held_failed = u[6];
    for (g->ncounts = 0; g->ncounts < u[7]; g->ncounts++) {
        struct dispatch_dg_count *c = &g->counts[g->ncounts];

        if (dispatch_rd_line(rd, tok, N_ELEMS(tok)) != 4 || !fg_str_eq(tok[0], "C"))
            return false;
        for (size_t i = 0; i < 3; i++)
            if (!dispatch_rd_u64(tok[1 + i], &v[i]))
                return false;
        if (v[0] >= SCOPE__MAX || !dispatch_rd_str(rd, v[2], c->rule, sizeof(c->rule)))
            return false;
        c->scope = (enum usertable_scope)v[0];
        c->n = v[1];
    }
    for (g->ntop = 0; g->ntop < u[8]; g->ntop++) {
        struct dispatch_dg_item *it = &g->top[g->ntop];
        char *rule = NULL, *id = NULL, *metric = NULL;

        if (dispatch_rd_line(rd, tok, N_ELEMS(tok)) != 7 || !fg_str_eq(tok[0], "T"))
            return false;
        for (size_t i = 0; i < 6; i++)
            if (!dispatch_rd_u64(tok[1 + i], &v[i]))
                return false;
        ok = v[0] < SCOPE__MAX && v[3] < sizeof(it->rule) && v[4] < sizeof(it->identity) &&
             v[5] < sizeof(it->metric) && (rule = dispatch_rd_take(rd, v[3])) &&
             (id = dispatch_rd_take(rd, v[4])) && (metric = dispatch_rd_take(rd, v[5])) &&
             rd->p < rd->end && *rd->p == '\n';
        if (ok) {
            rd->p++;
            it->scope = (enum usertable_scope)v[0];
            it->value = v[1];
            it->limit = v[2];
            dispatch_copy(it->rule, sizeof(it->rule), rule);
            dispatch_copy(it->identity, sizeof(it->identity), id);
            dispatch_copy(it->metric, sizeof(it->metric), metric);
        }
        free(rule);
        free(id);
        free(metric);
        if (!ok)
            return false;
    }
    return true;
}

/* @g, decoded, has the running destination @dst's type, URL and secrets. */
static bool
dispatch_dest_same(const struct dispatch_dest *dst, const struct dispatch_dest *g)
{
    static const uint8_t unknown[DISPATCH_DEST_HASH];

    return memcmp(g->hash, unknown, sizeof(unknown)) != 0 &&
           memcmp(g->hash, dst->hash, sizeof(dst->hash)) == 0;
}

int
dispatch_decode(struct dispatch *d, const char *buf, size_t len)
{
    struct dispatch_rd rd = { buf, buf };
    struct dispatch_incident **inc = NULL;
    struct dispatch_dest *fd = NULL; /* the file's destinations: name, flag, digest state */
    size_t ninc = 0, nfd = 0, map[CONFIG_DESTS_MAX];
    struct outbox *ob = NULL;
    struct outbox_limits lim = dispatch_limits(d->cfg);
    const char *trailer;
    struct fg_str t[32];
    unsigned long crc = 0;
    int r = -EBADMSG, version;
    size_t n;

    /* the trailer: "END xxxxxxxx\n", the CRC of everything before it */
    if (len < sizeof(DISPATCH_ENCODE_MAGIC) + 13 || buf[len - 1] != '\n')
        return -EBADMSG;
    trailer = buf + len - 13;
    if (memcmp(buf, DISPATCH_ENCODE_MAGIC, strlen(DISPATCH_ENCODE_MAGIC)) == 0)
        version = 5;
    else if (memcmp(buf, DISPATCH_ENCODE_MAGIC_V4, strlen(DISPATCH_ENCODE_MAGIC_V4)) == 0)
        version = 4;
    else if (memcmp(buf, DISPATCH_ENCODE_MAGIC_V3, strlen(DISPATCH_ENCODE_MAGIC_V3)) == 0)
        version = 3;
    else if (memcmp(buf, DISPATCH_ENCODE_MAGIC_V2, strlen(DISPATCH_ENCODE_MAGIC_V2)) == 0)
        version = 2;
    else if (memcmp(buf, DISPATCH_ENCODE_MAGIC_V1, strlen(DISPATCH_ENCODE_MAGIC_V1)) == 0)
        version = 1;
    else
        return -EBADMSG;
    if (memcmp(trailer, "END ", 4) != 0)
        return -EBADMSG;
    for (size_t i = 4; i < 12; i++) {
        char c = trailer[i];
        unsigned v = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                                            : 16;
        if (v == 16)
            return -EBADMSG;
        crc = crc << 4 | v;
    }
    if (crc32(0L, (const Bytef *)buf, (uInt)(trailer - buf)) != crc)
        return -EBADMSG;
    rd.p = buf + strlen(DISPATCH_ENCODE_MAGIC);
    rd.end = trailer;
    inc = calloc(DISPATCH_INCIDENTS_MAX, sizeof(*inc));
    fd = calloc(CONFIG_DESTS_MAX, sizeof(*fd));
    if (!inc || !fd || outbox_new(&lim, &ob) < 0) {
        r = -ENOMEM;
        goto out;
    }
    for (;;) {
        n = dispatch_rd_line(&rd, t, N_ELEMS(t));
        if (n == (version == 1  ? 3
                  : version < 4 ? 12
                                : 13) &&
            fg_str_eq(t[0], "D") && nfd < CONFIG_DESTS_MAX &&
            util_copy_str(fd[nfd].name, CONFIG_NAME_MAX, t[1]) == 0 &&
            (fg_str_eq(t[2], "0") || fg_str_eq(t[2], "1"))) {
            fd[nfd].enabled = fg_str_eq(t[2], "1");
            if (version >= 4 && util_unhex(t[12].p, t[12].len, fd[nfd].hash, DISPATCH_DEST_HASH) < 0)
                goto out;
            if (version >= 2 && !dispatch_rd_digest(&rd, t, &fd[nfd]))
                goto out;
            nfd++;
        } else if (n == (version == 1   ? 22
                         : version == 2 ? 26
                         : version == 3 ? 28
                         : version == 4 ? 29
                                        : 32) &&
                   fg_str_eq(t[0], "I") && ninc < DISPATCH_INCIDENTS_MAX) {
            uint64_t held = 0, sent = 0, owed = 0, open = 0;
            int64_t due = 0;

            if (version >= 2 && (!dispatch_rd_u64(t[22], &held) || !dispatch_rd_i64(t[23], &due) ||
                                 !dispatch_rd_u64(t[24], &sent) || !dispatch_rd_u64(t[25], &owed) ||
                                 held > UINT32_MAX || sent > UINT32_MAX || owed > UINT32_MAX))
                goto out;
            /* version 4: t[28] the bits of the digests it is in; before, every one held */
            open = held;
            if (version >= 4 && (!dispatch_rd_u64(t[28], &open) || (open & ~held) != 0))
                goto out;
            if (dispatch_rd_incident(&rd, t, version, &inc[ninc]) < 0)
                goto out;
            inc[ninc]->held = (uint32_t)held;
            inc[ninc]->held_open = (uint32_t)open;
            inc[ninc]->fu_due_ms = due;
            inc[ninc]->fu_sent = (uint32_t)sent;
            inc[ninc]->fu_owed = (uint32_t)owed;
            ninc++;
        } else if (n == 2 && fg_str_eq(t[0], "O")) {
            uint64_t olen;
            if (!dispatch_rd_u64(t[1], &olen) || olen + 1 != (uint64_t)(rd.end - rd.p) ||
                outbox_decode(ob, rd.p, (size_t)olen) < 0 || rd.p[olen] != '\n')
                goto out;
            rd.p = rd.end;
            break;
        } else {
            goto out;
        }
    }
    /* all parsed: replace */
    for (size_t k = 0; k < nfd; k++)
        if (!dispatch_dest_find(d, fd[k].name, &map[k]))
            map[k] = SIZE_MAX;
    for (size_t k = 0; k < ninc; k++) {
        inc[k]->held = dispatch_remap(inc[k]->held, map, nfd);
        inc[k]->held_open = dispatch_remap(inc[k]->held_open, map, nfd);
        inc[k]->fu_sent = dispatch_remap(inc[k]->fu_sent, map, nfd);
        inc[k]->fu_owed = dispatch_remap(inc[k]->fu_owed, map, nfd);
    }
    for (size_t k = 0; k < d->ninc; k++)
        dispatch_incident_free(d->inc[k]);
    memcpy(d->inc, inc, ninc * sizeof(*inc));
    d->ninc = ninc;
    ninc = 0;
    outbox_free(d->ob);
    d->ob = ob;
    ob = NULL;
    for (size_t i = 0; i < d->ndests; i++) {
        struct dispatch_dest *dst = &d->dests[i];

        dst->am_next_ms = 0; /* re-assert every firing alert at once (§4.4) */
        dst->win_open = dst->digest_mode = false;
        dst->win_sent = 0;
        dispatch_dg_reset(dst);
    }
    for (size_t k = 0; k < nfd; k++) {
        struct dispatch_dest *dst, *g = &fd[k];

        if (map[k] == SIZE_MAX)
            continue;
        dst = &d->dests[map[k]];
        /* disabled or paused for the URL and secrets it had: a new one re-enables (§5.4);
         * before version 4 the file cannot tell, and every destination is tried again */
        dst->enabled = g->enabled || !dispatch_dest_same(dst, g);
        dst->win_open = g->win_open;
        dst->digest_mode = g->digest_mode;
        dst->win_start = g->win_start;
        dst->win_sent = g->win_sent;
        dst->held_total = g->held_total;
        dst->held_acted = g->held_acted;
        dst->held_failed = g->held_failed;
        memcpy(dst->counts, g->counts, g->ncounts * sizeof(g->counts[0]));
        dst->ncounts = g->ncounts;
        memcpy(dst->top, g->top, g->ntop * sizeof(g->top[0]));
        dst->ntop = g->ntop;
    }
    /* no digest pending at a destination: no incident is in one there */
    for (size_t i = 0; i < d->ndests; i++)
        if (d->dests[i].held_total == 0)
            for (size_t k = 0; k < d->ninc; k++)
                d->inc[k]->held_open &= ~(1u << i);
    dispatch_kick(d);
    r = 0;
out:
    for (size_t k = 0; k < ninc; k++)
        dispatch_incident_free(inc[k]);
    free(inc);
    free(fd);
    outbox_free(ob);
    return r;
}

uint64_t
dispatch_commit_begin(struct dispatch *d)
{
    /* the snapshot may be encoded in another process (a forked writer) */
    d->dirty = false;
    outbox_mark_clean(d->ob);
    return d->next_token++;
}

void
dispatch_commit_done(struct dispatch *d, uint64_t token)
{
    if (token > d->durable && token < d->next_token) {
        bool am = d->am_change > d->durable && d->am_change <= token;

        d->durable = token;
        for (size_t i = 0; am && i < d->ndests; i++)
            if (d->dests[i].type == ALERT_DEST_ALERTMANAGER)
                dispatch_am_touch(&d->dests[i], dispatch_now(d));
        dispatch_kick(d);
    }
}

bool
dispatch_dirty(const struct dispatch *d)
{
    return d->dirty || outbox_dirty(d->ob);
}

/* --- status ---------------------------------------------------------------------------- */

size_t
dispatch_dest_count(const struct dispatch *d)
{
    return d->ndests;
}

void
dispatch_dest_stats(const struct dispatch *d, size_t i, struct dispatch_dest_stats *ret)
{
    const struct dispatch_dest *dst;
    const struct outbox_entry *e;
    uint32_t ix;

    memset(ret, 0, sizeof(*ret));
    if (i >= d->ndests)
        return;
    dst = &d->dests[i];
    ret->name = dst->name;
    ret->type = dst->type;
    ret->enabled = dst->enabled;
    ix = outbox_dest_ix(d->ob, dst->name);
    for (size_t k = 0; ix != OUTBOX_DEST_NONE && (e = outbox_at(d->ob, k)) != NULL; k++) {
        if (e->dest_ix != ix)
            continue;
        ret->pending++;
        if (ret->oldest_ms == 0 || e->created_ms < ret->oldest_ms)
            ret->oldest_ms = e->created_ms;
    }
    ret->delivered = dst->delivered;
    ret->retried = dst->retried;
    ret->failed = dst->failed;
    ret->expired = dst->expired;
    ret->dropped = dst->dropped;
    ret->last_status = dst->last_status;
    dispatch_copy(ret->host, sizeof(ret->host), dst->host);
}

size_t
dispatch_open_incidents(const struct dispatch *d)
{
    size_t n = 0;

    for (size_t k = 0; k < d->ninc; k++)
        n += d->inc[k]->released_ms == 0;
    return n;
}

void
dispatch_delivery_hist(const struct dispatch *d, enum alert_dest_type type,
                       struct metrics_hist *ret)
{
    if ((unsigned)type < DISPATCH_KINDS) {
        *ret = d->hist[type];
        return;
    }
    memset(ret, 0, sizeof(*ret));
    ret->bounds = dispatch_duration_bounds;
    ret->nbounds = N_ELEMS(dispatch_duration_bounds);
}

