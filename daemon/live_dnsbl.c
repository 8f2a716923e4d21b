/*
 * live_dnsbl.c - the host's own reputation wired into the service: every
 * reputation.interval each configured address is looked up in each configured zone
 * (lib/dnsbl, through c-ares on the same libev loop: the tailer never waits for DNS). A
 * listing or a delisting is logged, audited and sent as a health alert naming the
 * identities that tripped in the hour before; floodgate_dnsbl_listed{zone,ip} and the
 * lookup error counter come from here (live_dnsbl_metrics).
 *
 * What is known lives in memory: a reload keeps it for the pairs still configured, a
 * restart learns it again (a listing still in force is alerted once more).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "dnsbl.h"
#include "live.h"
#include "log.h"

#define LIVE_DNSBL_TRIPS_MAX     64        /* recent trips remembered */
#define LIVE_DNSBL_TRIP_ID_MAX   256       /* bytes of an identity kept (longer: cut) */
#define LIVE_DNSBL_LOOKBACK_MS   3600000LL /* trips named in an alert: the hour before */
#define LIVE_DNSBL_NAMED_MAX     10        /* identities named in one alert */
#define LIVE_DNSBL_FIRST_DELAY_S 1.0       /* the first round, once the loop runs */

struct live_dnsbl_trip {
    char id[LIVE_DNSBL_TRIP_ID_MAX];
    char rule[CONFIG_NAME_MAX];
    enum usertable_scope scope;
    int64_t wall_ms; /* 0: empty slot */
};

struct live_dnsbl {
    struct dnsbl *bl;        /* NULL: reputation is off */
    struct dnsbl_ares *ares; /* the resolver of the running configuration */
    ev_timer timer;
    struct live_dnsbl_trip trips[LIVE_DNSBL_TRIPS_MAX];
    size_t next_trip;
};

void
live_dnsbl_trip(struct daemon *d, const struct engine_notice *n)
{
    struct live_dnsbl *ld = d->dnsbl;
    struct live_dnsbl_trip *t;
    size_t len;

    if (!ld)
        return;
    t = &ld->trips[ld->next_trip];
    ld->next_trip = (ld->next_trip + 1) % LIVE_DNSBL_TRIPS_MAX;
    len = strnlen(n->id, sizeof(t->id) - 1); /* a longer one is cut: it is only shown */
    memcpy(t->id, n->id, len);
    t->id[len] = '\0';
    len = strnlen(n->verdict.rule_name, sizeof(t->rule) - 1);
    memcpy(t->rule, n->verdict.rule_name, len);
    t->rule[len] = '\0';
    t->scope = n->scope;
    t->wall_ms = clock_now_ms(&clock_real);
}

/* ", identities that tripped in the hour before: mailbox a@b (rule r), ..." into @b. */
static size_t
live_dnsbl_recent(struct live_dnsbl *ld, int64_t now_ms, struct strbuf *b, struct strbuf *json)
{
    size_t named = 0, more = 0;

    /* newest first */
    for (size_t k = 0; k < LIVE_DNSBL_TRIPS_MAX; k++) {
        size_t i = (ld->next_trip + LIVE_DNSBL_TRIPS_MAX - 1 - k) % LIVE_DNSBL_TRIPS_MAX;
        const struct live_dnsbl_trip *t = &ld->trips[i];
        bool dup = false;

        if (!t->wall_ms || now_ms - t->wall_ms > LIVE_DNSBL_LOOKBACK_MS)
            continue;
        for (size_t j = 0; j < k && !dup; j++) {
            const struct live_dnsbl_trip *o =
                &ld->trips[(ld->next_trip + LIVE_DNSBL_TRIPS_MAX - 1 - j) % LIVE_DNSBL_TRIPS_MAX];
            dup = o->wall_ms && now_ms - o->wall_ms <= LIVE_DNSBL_LOOKBACK_MS &&
                  o->scope == t->scope && strcmp(o->id, t->id) == 0;
        }
        if (dup)
            continue;
        if (named == LIVE_DNSBL_NAMED_MAX) {
            more++;
            continue;
        }
        (void)strbuf_appends(b, named ? ", " : "; identities that tripped in the hour before: ");
        (void)strbuf_printf(b, "%s ", usertable_scope_name(t->scope));
        (void)strbuf_append_display(b, t->id, strlen(t->id));
        (void)strbuf_appends(b, " (rule ");
        (void)strbuf_append_display(b, t->rule, strlen(t->rule));
        (void)strbuf_appends(b, ")");
        (void)strbuf_appends(json, named ? ",\"" : "\"");
        (void)strbuf_append_json(json, t->id, strlen(t->id));
        (void)strbuf_appends(json, "\"");
        named++;
    }
    if (more)
        (void)strbuf_printf(b, " and %zu more", more);
    if (!named)
        (void)strbuf_appends(b, "; no identity tripped in the hour before");
    return named;
}

void
live_time_text(int64_t ms, char *buf, size_t size)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;

    if (ms <= 0 || !gmtime_r(&s, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        (void)snprintf(buf, size, "an unknown time");
}

static void
live_dnsbl_changed(void *ctx, const struct dnsbl_change *c)
{
    struct daemon *d = ctx;
    const struct dnsbl_entry *e = c->e;
    bool listed = c->kind == DNSBL_CHANGE_LISTED;
    int64_t now = clock_now_ms(&clock_real);
    char codes[DNSBL_CODES_MAX * 16], since[40], key[DNSBL_IP_MAX + DNSBL_ZONE_MAX + 2];
    struct strbuf text, ids, audit;
    const struct log_field fields[] = {
        { "DNSBL_ZONE", e->zone },
        { "DNSBL_IP", e->ip },
        { "DNSBL_CODES", listed ? codes : NULL },
        { NULL, NULL },
    };

    dnsbl_codes_text(&e->known, codes, sizeof(codes));
    live_time_text(c->was_since_ms, since, sizeof(since));
    strbuf_init(&text, 8192);
    strbuf_init(&ids, 8192);
    strbuf_init(&audit, 16384);
    if (listed)
        (void)strbuf_printf(&text, "this host's address %s is listed in %s (%s)", e->ip, e->zone,
                            codes);
    else
        (void)strbuf_printf(&text,
                            "this host's address %s is no longer listed in %s (listed since %s)",
                            e->ip, e->zone, since);
    (void)live_dnsbl_recent(d->dnsbl, now, &text, &ids);
    log_emit(listed ? LOG_WARNING : LOG_NOTICE, 0, fields, "reputation: %s", strbuf_cstr(&text));
    (void)strbuf_printf(&audit,
                        "{\"event\":\"%s\",\"ip\":\"%s\",\"zone\":\"%s\",\"codes\":\"%s\","
                        "\"at\":%lld,\"recent_trips\":[%s]}\n",
                        listed ? "dnsbl_listed" : "dnsbl_delisted", e->ip, e->zone,
                        listed ? codes : "", (long long)now, strbuf_cstr(&ids));
    live_audit(d, strbuf_cstr(&audit));
    (void)snprintf(key, sizeof(key), "%s %s", e->ip, e->zone);
    live_alert_health(d, listed ? "dnsbl_listed" : "dnsbl_delisted", key, strbuf_cstr(&text));
    strbuf_done(&text);
    strbuf_done(&ids);
    strbuf_done(&audit);
}

static void
live_dnsbl_lookup(void *ctx, const struct dnsbl_entry *e, bool err)
{
    (void)ctx;
    if (err)
        log_emit(LOG_INFO, 0, NULL, "reputation: %s in %s: %s (unknown; what was known stands)",
                 e->ip, e->zone, e->last_error);
}

static void
live_dnsbl_round(struct daemon *d)
{
    struct live_dnsbl *ld = d->dnsbl;
    struct dnsbl_resolver r;

    if (!ld->bl || !ld->ares)
        return;
    r = dnsbl_ares_resolver(ld->ares);
    (void)dnsbl_round(ld->bl, &r, clock_now_ms(&clock_real));
}

static void
live_dnsbl_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    live_dnsbl_round(w->data);
}

/* Build the lookups for @cfg (off: ld->bl NULL), keeping what @old knew. */
static int
live_dnsbl_build(struct daemon *d, const struct config *cfg, struct dnsbl **ret_bl,
                 struct dnsbl_ares **ret_ares)
{
    const struct config_reputation *rp = &cfg->reputation;
    struct dnsbl_params p = {
        .ips = (const char *const *)rp->ips,
        .nips = rp->nips,
        .zones = (const char *const *)rp->zones,
        .nzones = rp->nzones,
        .on_change = live_dnsbl_changed,
        .on_lookup = live_dnsbl_lookup,
        .ctx = d,
    };
    int r;

    *ret_bl = NULL;
    *ret_ares = NULL;
    if (!rp->nips || !rp->nzones)
        return 0;
    r = dnsbl_ares_new(d->loop, rp->nameserver, rp->timeout_ms, ret_ares);
    if (r < 0)
        return log_emit(LOG_ERR, r, NULL, "reputation: cannot start the DNS resolver%s%s",
                        rp->nameserver ? " for " : "", rp->nameserver ? rp->nameserver : "");
    r = dnsbl_new(&p, ret_bl);
    if (r < 0) {
        dnsbl_ares_free(*ret_ares);
        *ret_ares = NULL;
        return log_emit(LOG_ERR, r, NULL, "reputation: cannot set up the lookups");
    }
    return 0;
}

static void
live_dnsbl_schedule(struct daemon *d, double first)
{
    struct live_dnsbl *ld = d->dnsbl;

    ev_timer_stop(d->loop, &ld->timer);
    if (!ld->bl)
        return;
    ev_timer_set(&ld->timer, first, (double)d->cfg->reputation.interval_ms / 1000.0);
    ev_timer_start(d->loop, &ld->timer);
}

int
live_dnsbl_open(struct daemon *d)
{
    struct live_dnsbl *ld = calloc(1, sizeof(*ld));
    int r;

    if (!ld)
        return -ENOMEM;
    d->dnsbl = ld;
    ev_timer_init(&ld->timer, live_dnsbl_timer_cb, 0., 0.);
    ld->timer.data = d;
    r = live_dnsbl_build(d, d->cfg, &ld->bl, &ld->ares);
    if (r < 0)
        return r;
    if (ld->bl)
        log_emit(LOG_INFO, 0, NULL, "reputation: %zu address%s in %zu zone%s every %llds",
                 d->cfg->reputation.nips, d->cfg->reputation.nips == 1 ? "" : "es",
                 d->cfg->reputation.nzones, d->cfg->reputation.nzones == 1 ? "" : "s",
                 (long long)(d->cfg->reputation.interval_ms / 1000));
    live_dnsbl_schedule(d, LIVE_DNSBL_FIRST_DELAY_S);
    return 0;
}

int
live_dnsbl_reload_prepare(struct daemon *d, const struct config *next, struct live_dnsbl_next *ret)
{
    return live_dnsbl_build(d, next, &ret->bl, &ret->ares);
}

void
live_dnsbl_reload_abort(struct live_dnsbl_next *n)
{
    dnsbl_ares_free(n->ares);
    dnsbl_free(n->bl);
}

void
live_dnsbl_reload_apply(struct daemon *d, struct live_dnsbl_next *n)
{
    struct live_dnsbl *ld = d->dnsbl;

    /* the old resolver first: it drops its queries without calling into the old table */
    dnsbl_ares_free(ld->ares);
    dnsbl_carry(n->bl, ld->bl);
    dnsbl_free(ld->bl);
    ld->bl = n->bl;
    ld->ares = n->ares;
    /* d->cfg is the new configuration by now: look again at once (a reload asks) */
    live_dnsbl_schedule(d, 0.);
}

void
live_dnsbl_free(struct daemon *d)
{
    struct live_dnsbl *ld = d->dnsbl;

    if (!ld)
        return;
    ev_timer_stop(d->loop, &ld->timer);
    dnsbl_ares_free(ld->ares);
    dnsbl_free(ld->bl);
    free(ld);
    d->dnsbl = NULL;
}

void
live_dnsbl_metrics(struct daemon *d, struct metrics *m)
{
    const struct live_dnsbl *ld = d->dnsbl;
    size_t n;

    if (!ld || !ld->bl)
        return;
    n = dnsbl_count(ld->bl);
    (void)metrics_family(m, "floodgate_dnsbl_listed", METRICS_GAUGE,
                         "1 while this host's address is listed in the zone, 0 while it is not "
                         "(absent until a lookup answered).");
    for (size_t i = 0; i < n; i++) {
        const struct dnsbl_entry *e = dnsbl_entry(ld->bl, i);
        const struct metrics_label l[] = { { "zone", e->zone }, { "ip", e->ip } };
        if (e->known.status != DNSBL_UNKNOWN)
            (void)metrics_sample_u64(m, l, 2, e->known.status == DNSBL_LISTED);
    }
    (void)metrics_family(m, "floodgate_dnsbl_lookup_errors_total", METRICS_COUNTER,
                         "Blocklist lookups that failed or answered nonsense (unknown).");
    for (size_t i = 0; i < n; i++) {
        const struct dnsbl_entry *e = dnsbl_entry(ld->bl, i);
        const struct metrics_label l[] = { { "zone", e->zone }, { "ip", e->ip } };
        (void)metrics_sample_u64(m, l, 2, e->errors);
    }
}
