/*
 * live_alert.c - alert delivery wired into the service: trips, action outcomes, releases
 * and health events go to lib/dispatch, which sends them through lib/http on the loop.
 *
 * Without alerts.destinations nothing is opened and d->alerts stays NULL. The dispatcher's
 * state (outbox, incidents, Alertmanager state) is part of the checkpoint (live.c): an
 * alert is first attempted once the state generation holding it is on disk, and a new
 * alert asks for a checkpoint at once, so that costs one background save, not a second.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "eximlog.h"
#include "http.h"
#include "live.h"
#include "log.h"

#define LIVE_ALERT_MAX_PER_HOST 2 /* concurrent connections per receiver host */
#define LIVE_ALERT_SAMPLE_MAX   200

/* Start delivery to @cfg's destinations (none: nothing is started). */
static int
live_alert_start(struct daemon *d, const struct config *cfg)
{
    struct dispatch_params p;
    int r;

    d->alerts = NULL;
    d->http = NULL;
    if (cfg->alerts.ndests == 0)
        return 0;
    r = http_client_new(d->loop, LIVE_ALERT_MAX_PER_HOST, &d->http);
    if (r == -ENOTSUP)
        return log_emit(LOG_ERR, r, NULL,
                        "alerts: this libcurl resolves names synchronously, which would stop "
                        "log reading; install a libcurl with an asynchronous resolver or remove "
                        "alerts.destinations");
    if (r < 0)
        return log_emit(LOG_ERR, r, NULL, "alerts: cannot start the HTTP client");
    p = (struct dispatch_params){
        .loop = d->loop,
        .clock = &clock_real,
        .cfg = cfg,
        .http = http_client_transport(d->http),
        .version = FLOODGATE_VERSION,
    };
    r = dispatch_new(&p, &d->alerts);
    if (r < 0) {
        http_client_free(d->http);
        d->http = NULL;
        return log_emit(LOG_ERR, r, NULL, "alerts: cannot start delivery");
    }
    log_emit(LOG_INFO, 0, NULL, "alerts: %zu destination%s", cfg->alerts.ndests,
             cfg->alerts.ndests == 1 ? "" : "s");
    return 0;
}

int
live_alert_open(struct daemon *d)
{
    return live_alert_start(d, d->cfg);
}

void
live_alert_free(struct daemon *d)
{
    /* the client first: it cancels what is in flight without calling back */
    http_client_free(d->http);
    d->http = NULL;
    dispatch_free(d->alerts);
    d->alerts = NULL;
}

int
live_alert_reload(struct daemon *d, const struct config *next)
{
    if (!d->alerts)
        return live_alert_start(d, next);
    return dispatch_set_config(d->alerts, next);
}

/*
 * Ask for a checkpoint now: what was queued is sent once it is on disk. When a save is
 * already running, live.c starts the next one as soon as it ends (d->alert_kick).
 */
static void
live_alert_commit_soon(struct daemon *d)
{
    d->dirty = true;
    d->alert_kick = true;
    if (d->have_state)
        (void)live_checkpoint_now(d, false);
}

/* The tripping record's subject, client address and recipient domains, for the message. */
struct live_alert_sample {
    char subject[LIVE_ALERT_SAMPLE_MAX + 1];
    char ip[64];
    char domains[DISPATCH_SAMPLES_MAX][LIVE_ALERT_SAMPLE_MAX + 1];
    const char *subjects[1], *ips[1], *domainp[DISPATCH_SAMPLES_MAX];
    size_t nsubjects, nips, ndomains;
};

static void
live_alert_copy(char *dst, size_t size, struct fg_str s)
{
    size_t n = s.len < size - 1 ? s.len : size - 1;

    memcpy(dst, s.p, n);
    dst[n] = '\0';
}

static void
live_alert_sample(const struct eximlog_record *rec, struct live_alert_sample *s)
{
    struct exim_event ev;
    struct fg_str addr;
    size_t pos = 0;

    memset(s, 0, sizeof(*s));
    if (!rec || eximlog_parse(rec->text, rec->len, &ev) != 1 || ev.type != EXIM_ARRIVAL)
        return;
    if (ev.subject.len) {
        live_alert_copy(s->subject, sizeof(s->subject), ev.subject);
        s->subjects[s->nsubjects++] = s->subject;
    }
    if (ev.host_ip.len) {
        live_alert_copy(s->ip, sizeof(s->ip), ev.host_ip);
        s->ips[s->nips++] = s->ip;
    }
    while (s->ndomains < DISPATCH_SAMPLES_MAX && eximlog_next_addr(ev.rcpts, &pos, &addr) == 1) {
        struct fg_str dom = eximlog_addr_domain(addr);
        char buf[LIVE_ALERT_SAMPLE_MAX + 1];
        bool seen = false;

        if (!dom.len)
            continue;
        live_alert_copy(buf, sizeof(buf), dom);
        for (size_t i = 0; i < s->ndomains && !seen; i++)
            seen = strcasecmp(s->domains[i], buf) == 0;
        if (seen)
            continue;
        memcpy(s->domains[s->ndomains], buf, sizeof(buf));
        s->domainp[s->ndomains] = s->domains[s->ndomains];
        s->ndomains++;
    }
}

void
live_alert_trip(struct daemon *d, const struct engine_notice *n, const struct eximlog_record *rec)
{
    struct dispatch_count counts[USERTABLE_SERIES_MAX];
    struct live_alert_sample sample;
    struct usertable *t;
    struct usertable_entry *e;
    const struct usertable_params *up;
    const char *metric = "messages";
    size_t ncounts = 0;
    int r;

    /* a rule without "alert" in its actions acts silently (audit log and journal only) */
    if (!d->alerts || !(n->verdict.actions & CONFIG_ACTION_ALERT))
        return;
    t = engine_table(d->engine);
    up = usertable_params(t);
    e = usertable_deref(t, n->ref);
    for (size_t i = 0; i < up->nseries[n->scope] && e; i++) {
        counts[ncounts++] = (struct dispatch_count){
            .metric = window_metric_name(up->series[n->scope][i].metric),
            .window_ms = up->series[n->scope][i].window_ms,
            .value = usertable_sum(t, e, i, n->at_ms),
        };
    }
    if (n->verdict.rule < d->cfg->nrules)
        metric = config_rule_metric_name(&d->cfg->rules[n->verdict.rule]);
    live_alert_sample(rec, &sample);
    struct dispatch_trip trip = {
        .rule = n->verdict.rule_name,
        .scope = n->scope,
        .id = n->id,
        .account = n->account,
        .metric = metric,
        .window_ms = n->verdict.window_ms,
        .value = n->verdict.value,
        .limit = n->verdict.threshold,
        .at_ms = n->at_ms,
        .detected_ms = clock_now_ms(&clock_real),
        .log_time = n->at,
        .counts = counts,
        .ncounts = ncounts,
        .subjects = sample.subjects,
        .nsubjects = sample.nsubjects,
        .client_ips = sample.ips,
        .nclient_ips = sample.nips,
        .domains = sample.domainp,
        .ndomains = sample.ndomains,
        .monitor = d->cfg->mode == CONFIG_MODE_MONITOR,
    };
    r = dispatch_tripped(d->alerts, &trip);
    if (r < 0)
        log_emit(LOG_WARNING, r, NULL, "alerts: cannot queue the trip of %s",
                 n->verdict.rule_name);
    live_alert_commit_soon(d);
}

void
live_alert_injection(struct daemon *d, const struct engine_notice *n, uint64_t quiet)
{
    struct strbuf b;
    int r;

    if (!d->alerts)
        return;
    /* the identity is shown escaped (strbuf_append_display); alertmsg escapes the rest of
     * the way for each destination, as for a trip */
    strbuf_init(&b, 4096);
    live_injection_text(&b, n);
    if (quiet)
        (void)strbuf_printf(&b, " (%" PRIu64 " more of this kind since the last alert)", quiet);
    (void)strbuf_appends(&b, n->injection == ENGINE_INJ_HELO
                                 ? "; counted for both readings: confirm in the spool before "
                                   "acting on either"
                                 : "; see the audit log");
    r = dispatch_health(d->alerts, "log_injection", strbuf_cstr(&b));
    strbuf_done(&b);
    if (r < 0)
        log_emit(LOG_WARNING, r, NULL, "alerts: cannot queue a log_injection event");
    live_alert_commit_soon(d);
}

void
live_alert_outcome(struct daemon *d, const struct action_outcome *o)
{
    int r;

    /* "freeze_more" (a late arrival frozen) is not news: the incident's "acted" said what
     * the trip did ("resume" finishes a trip a restart cut short) */
    if (!d->alerts || strcmp(o->what, "freeze_more") == 0)
        return;
    if (strcmp(o->what, "release") == 0) {
        if (!o->remaining) /* else not finished: the identity stays held */
            live_alert_released(d, o->scope, o->id);
        return;
    }
    struct dispatch_acted a = {
        .scope = o->scope,
        .id = o->id,
        .monitor = o->monitor,
        .confirmed = o->confirmed,
        .frozen = o->frozen,
        .failed = o->failed,
        .backend = config_backend_name(d->cfg->backend),
        .backend_done = o->backend_done,
        .backend_err = o->backend_err,
        .preexisting = o->backend_preexisting,
        .unconfirmed = o->unconfirmed,
        .candidates = o->candidates,
        .ledger_err = o->ledger_err,
    };
    r = dispatch_acted(d->alerts, &a);
    if (r < 0)
        log_emit(LOG_WARNING, r, NULL, "alerts: cannot queue the %s of %s", o->what, o->id);
    live_alert_commit_soon(d);
}

void
live_alert_released(struct daemon *d, enum usertable_scope scope, const char *id)
{
    int r;

    if (!d->alerts)
        return;
    r = dispatch_released(d->alerts, scope, id, clock_now_ms(&clock_real));
    if (r < 0)
        log_emit(LOG_WARNING, r, NULL, "alerts: cannot queue the release of %s", id);
    live_alert_commit_soon(d);
}

void
live_alert_tick(struct daemon *d)
{
    struct tail_stats ts;
    char text[160];
    int r;

    if (!d->alerts || !d->tail)
        return;
    tail_get_stats(d->tail, &ts);
    if (ts.gaps <= d->alert_gaps)
        return;
    (void)snprintf(text, sizeof(text),
                   "the log tail lost up to %" PRIu64 " bytes (truncation or a missing file); "
                   "see the journal",
                   ts.gaps - d->alert_gaps);
    d->alert_gaps = ts.gaps;
    r = dispatch_health(d->alerts, "tail_gap", text);
    if (r < 0)
        log_emit(LOG_WARNING, r, NULL, "alerts: cannot queue a tail_gap event");
    live_alert_commit_soon(d);
}

void
live_alert_health(struct daemon *d, const char *kind, const char *key, const char *text)
{
    int r;

    if (!d->alerts)
        return;
    r = dispatch_health_keyed(d->alerts, kind, key, text);
    if (r < 0)
        log_emit(LOG_WARNING, r, NULL, "alerts: cannot queue a %s event", kind);
    live_alert_commit_soon(d);
}

void
live_alert_state_failing(struct daemon *d, int err)
{
    char text[CONFIG_PATH_MAX + 160];
    int r;

    (void)snprintf(text, sizeof(text), "checkpoint cannot be written: %s/%s: %s", d->cfg->state_dir,
                   LIVE_STATE_FILE, strerror(-err));
    if (!d->alerts) {
        if (!d->state_alerted)
            log_emit(LOG_ERR, err, NULL, "%s (%u attempts in a row); no alert destination", text,
                     d->state_failures);
        d->state_alerted = true;
        return;
    }
    r = dispatch_health_urgent(d->alerts, "state_unwritable", text);
    if (r == -EALREADY)
        return; /* one went out less than 10 minutes ago */
    d->state_alerted = true;
    if (r < 0)
        log_emit(LOG_ERR, r, NULL, "alerts: cannot queue the health alert: %s", text);
    else
        log_emit(LOG_ERR, err, NULL,
                 "checkpoint failed %u times in a row: health alert sent from memory, ahead of "
                 "the checkpoint (alerts for trips wait for it)",
                 d->state_failures);
}

void
live_alert_state_recovered(struct daemon *d)
{
    char text[CONFIG_PATH_MAX + 80];
    int r;

    d->state_alerted = false;
    if (!d->alerts)
        return;
    (void)snprintf(text, sizeof(text), "checkpoint written again in %s; held alerts follow",
                   d->cfg->state_dir);
    r = dispatch_health(d->alerts, "state_writable", text);
    if (r < 0)
        log_emit(LOG_WARNING, r, NULL, "alerts: cannot queue a state_writable event");
    live_alert_commit_soon(d);
}

size_t
live_alert_pending(const struct daemon *d)
{
    size_t n = 0;

    for (size_t i = 0; i < live_alert_dest_count(d); i++) {
        struct dispatch_dest_stats st;
        live_alert_dest_stats(d, i, &st);
        n += st.pending;
    }
    return n;
}

size_t
live_alert_dest_count(const struct daemon *d)
{
    return d->alerts ? dispatch_dest_count(d->alerts) : 0;
}

void
live_alert_dest_stats(const struct daemon *d, size_t i, struct dispatch_dest_stats *ret)
{
    memset(ret, 0, sizeof(*ret));
    if (d->alerts && i < dispatch_dest_count(d->alerts))
        dispatch_dest_stats(d->alerts, i, ret);
}

int
live_alert_test(struct daemon *d, dispatch_test_fn done, void *ctx)
{
    if (!d->alerts)
        return -ENOTSUP;
    return dispatch_test(d->alerts, done, ctx);
}

int
live_alert_enable(struct daemon *d, const char *name)
{
    /* no destination exists without d->alerts */
    return d->alerts ? dispatch_enable(d->alerts, name) : -ENOENT;
}
