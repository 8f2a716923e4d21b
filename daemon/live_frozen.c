/*
 * live_frozen.c - messages floodgate froze, before Exim decides for the operator. Exim's
 * auto_thaw (thaws, and so delivers, a message that long after it was frozen) and
 * timeout_frozen_after (cancels a frozen message that long after it arrived) are read
 * with `exim -bP` at start and after a reload (lib/frozen). A timer walks the ledger's
 * active identities (lib/action: the ids and when each was frozen) and warns when one
 * passes FROZEN_WARN_PCT of the way: one alert per identity listing the ids and when Exim
 * will thaw or cancel them, so someone releases or removes them in time. The alert also
 * covers the identity's ids that reach the mark within the next tenth of the limit, so an
 * identity whose mail keeps being frozen (late arrivals, the ACL) gets at most one alert
 * per tenth of the limit, not one per tick.
 *
 * Monitor mode freezes nothing: nothing is read or checked there. What was warned is kept
 * in memory: a restart warns once more for the ids already past the mark.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "frozen.h"
#include "live.h"
#include "log.h"
#include "siphash.h"

#define LIVE_FROZEN_LISTED_MAX 20   /* ids named in one alert; the rest are counted */
#define LIVE_FROZEN_WARNED_MAX 4096 /* identities remembered as warned (oldest replaced) */

/* An identity (keyed hash of scope and id) warned for its ids due up to @until_ms. */
struct live_frozen_warned {
    uint64_t h;
    int64_t until_ms;
};

struct live_frozen {
    struct frozen_query q;
    struct frozen_limits l;
    bool known; /* l holds what Exim said */
    ev_timer timer;
    struct live_frozen_warned warned[LIVE_FROZEN_WARNED_MAX];
    size_t nwarned;
};

static struct live_frozen_warned *
live_frozen_warned(struct daemon *d, const struct action_info *info)
{
    struct live_frozen *lf = d->frozen;
    struct live_frozen_warned *oldest = NULL;
    uint8_t buf[1 + SPAWN_TEXT_MAX];
    size_t len = strlen(info->id);
    uint64_t h;

    buf[0] = (uint8_t)info->scope;
    if (len > sizeof(buf) - 1)
        len = sizeof(buf) - 1;
    memcpy(buf + 1, info->id, len);
    h = siphash(buf, len + 1, d->key);
    for (size_t i = 0; i < lf->nwarned; i++) {
        if (lf->warned[i].h == h)
            return &lf->warned[i];
        if (!oldest || lf->warned[i].until_ms < oldest->until_ms)
            oldest = &lf->warned[i];
    }
    if (lf->nwarned < LIVE_FROZEN_WARNED_MAX)
        oldest = &lf->warned[lf->nwarned++];
    *oldest = (struct live_frozen_warned){ h, 0 };
    return oldest;
}

struct live_frozen_walk {
    struct daemon *d;
    int64_t now_ms;
};

static void
live_frozen_identity(void *ctx, const struct action_info *info)
{
    struct live_frozen_walk *w = ctx;
    struct daemon *d = w->d;
    struct live_frozen *lf = d->frozen;
    const char *const *ids;
    const int64_t *at;
    size_t n = action_frozen_ids(d->action, info->scope, info->id, &ids), listed, total, more;
    struct frozen_warning warn[LIVE_FROZEN_LISTED_MAX];
    struct live_frozen_warned *wd;
    int64_t first = 0, until = 0;
    bool any_thaw = false;
    struct strbuf text, json;
    char when[40], key[16 + SPAWN_TEXT_MAX];

    if (n == 0 || action_frozen_times(d->action, info->scope, info->id, &at) != n)
        return;
    wd = live_frozen_warned(d, info);
    listed = frozen_select(&lf->l, ids, at, n, info->acted_ms, wd->until_ms, w->now_ms, warn,
                           N_ELEMS(warn), &total, &until);
    if (!listed)
        return;
    wd->until_ms = until;
    more = total - listed;
    strbuf_init(&text, 8192);
    strbuf_init(&json, 16384);
    for (size_t k = 0; k < listed; k++) {
        const struct frozen_fate *f = &warn[k].fate;
        const char *id = ids[warn[k].index];
        if (!first || f->deadline_ms < first)
            first = f->deadline_ms;
        any_thaw |= f->thaw;
        live_time_text(f->deadline_ms, when, sizeof(when));
        (void)strbuf_printf(&text, "%s%s (%s %s)", k ? ", " : "", id,
                            f->thaw ? "thawed and delivered" : "cancelled", when);
        (void)strbuf_printf(&json, "%s{\"msgid\":\"%s\",\"deadline\":%lld,\"exim\":\"%s\"}",
                            k ? "," : "", id, (long long)f->deadline_ms,
                            f->thaw ? "auto_thaw" : "timeout_frozen_after");
    }
    if (listed) {
        struct strbuf msg, audit;
        strbuf_init(&msg, 16384);
        strbuf_init(&audit, 32768);
        live_time_text(first, when, sizeof(when));
        (void)strbuf_printf(&msg, "%zu message%s frozen by floodgate for %s ", listed + more,
                            listed + more == 1 ? "" : "s", usertable_scope_name(info->scope));
        (void)strbuf_append_display(&msg, info->id, strlen(info->id));
        (void)strbuf_printf(&msg,
                            " near Exim's %s: the first at %s; release (floodgatectl release) "
                            "or remove (exim -Mrm) them before then: %s",
                            any_thaw ? "auto_thaw" : "timeout_frozen_after", when,
                            strbuf_cstr(&text));
        if (more)
            (void)strbuf_printf(&msg, " and %zu more", more);
        log_emit(LOG_WARNING, 0, NULL, "%s", strbuf_cstr(&msg));
        (void)strbuf_printf(&audit, "{\"event\":\"frozen_expiring\",\"scope\":\"%s\",\"id\":\"",
                            usertable_scope_name(info->scope));
        (void)strbuf_append_json(&audit, info->id, strlen(info->id));
        (void)strbuf_printf(&audit, "\",\"at\":%lld,\"more\":%zu,\"messages\":[%s]}\n",
                            (long long)w->now_ms, more, strbuf_cstr(&json));
        live_audit(d, strbuf_cstr(&audit));
        (void)snprintf(key, sizeof(key), "%s:%s", usertable_scope_name(info->scope), info->id);
        live_alert_health(d, "frozen_expiring", key, strbuf_cstr(&msg));
        strbuf_done(&msg);
        strbuf_done(&audit);
    }
    strbuf_done(&text);
    strbuf_done(&json);
}

static void
live_frozen_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct daemon *d = w->data;
    struct live_frozen_walk walk = { d, clock_now_ms(&clock_real) };

    (void)loop;
    (void)revents;
    if (!d->frozen->known)
        return;
    (void)action_list(d->action, false, live_frozen_identity, &walk);
}

static void
live_frozen_limits_cb(void *ctx, int err, const struct frozen_limits *l, const char *why)
{
    struct daemon *d = ctx;
    struct live_frozen *lf = d->frozen;
    int64_t every;
    char a[32], t[32];

    ev_timer_stop(d->loop, &lf->timer);
    if (err < 0) {
        lf->known = false;
        log_emit(LOG_WARNING, err, NULL,
                 "frozen messages: cannot read Exim's auto_thaw and timeout_frozen_after (%s); "
                 "no warning before Exim thaws or cancels what floodgate froze",
                 why);
        return;
    }
    lf->l = *l;
    lf->known = true;
    every = frozen_check_interval_ms(l);
    (void)snprintf(a, sizeof(a), "%llds", (long long)(l->auto_thaw_ms / 1000));
    (void)snprintf(t, sizeof(t), "%llds", (long long)(l->timeout_ms / 1000));
    log_emit(LOG_INFO, 0, NULL,
             "frozen messages: Exim's auto_thaw %s, timeout_frozen_after %s; a warning at %d%%%s",
             l->auto_thaw_ms ? a : "off", l->timeout_ms ? t : "off", FROZEN_WARN_PCT,
             every ? "" : " (neither is set: Exim keeps frozen messages)");
    if (!every)
        return;
    ev_timer_set(&lf->timer, 0., (double)every / 1000.0);
    ev_timer_start(d->loop, &lf->timer);
}

static void
live_frozen_query(struct daemon *d)
{
    struct live_frozen *lf = d->frozen;
    const char *conf = d->cfg->exim_config;
    int r;

    if (d->cfg->mode == CONFIG_MODE_MONITOR) {
        ev_timer_stop(d->loop, &lf->timer);
        lf->known = false;
        return;
    }
    if (!conf && access(LIVE_EXIM_OUTGOING_CONF, R_OK) == 0)
        conf = LIVE_EXIM_OUTGOING_CONF;
    r = frozen_query_limits(&lf->q, d->spawner, d->cfg->exim_path, conf, d->cfg->action_timeout_ms);
    if (r < 0)
        live_frozen_limits_cb(d, r, NULL, strerror(-r));
}

int
live_frozen_open(struct daemon *d)
{
    struct live_frozen *lf = calloc(1, sizeof(*lf));

    if (!lf)
        return -ENOMEM;
    d->frozen = lf;
    lf->q = (struct frozen_query){ live_frozen_limits_cb, d };
    ev_timer_init(&lf->timer, live_frozen_timer_cb, 0., 0.);
    lf->timer.data = d;
    live_frozen_query(d);
    return 0;
}

void
live_frozen_reload(struct daemon *d)
{
    if (d->frozen)
        live_frozen_query(d);
}

void
live_frozen_free(struct daemon *d)
{
    if (!d->frozen)
        return;
    ev_timer_stop(d->loop, &d->frozen->timer);
    free(d->frozen);
    d->frozen = NULL;
}
