/*
 * live_metrics.c - the daemon's Prometheus metrics (docs/configure.md, "Metrics"): what the running
 * modules know, formatted by lib/metrics, written to the node_exporter textfile
 * (cfg->metrics_file: <file>.tmp in the same directory, then rename; every
 * LIVE_METRICS_FILE_MS, once at start and once at shutdown) and served by lib/metrics_http
 * on cfg->metrics_listen when set.
 *
 * Wiring only. Most figures are read when the exposition is built (tail and engine
 * statistics, the identity table, the ledger, the alert destinations, /proc/self); the
 * counters no module keeps - trips per rule, action steps per result, circuit breaker
 * refusals, reloads, state commits - are counted by the hooks live.c calls. Every label
 * value is an enumeration fixed here or a name from the operator's configuration (rule,
 * destination, backend),
 * never text from the log (labels never carry log text). Trip counts are keyed by rule name,
 * since a reload can reorder, rename or drop rules; names gone from the configuration
 * keep their counts (a counter must not go back), within LIVE_METRICS_RULES_MAX.
 *
 * The textfile needs no fsync: a lost file is rewritten at the next tick. A failing write
 * is logged once, and its recovery once. metrics_listen is bound at start; a reload that
 * changes it is logged and needs a restart, like the other bound paths.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ev.h>

#include "clock.h"
#include "live.h"
#include "log.h"
#include "metrics.h"
#include "metrics_http.h"
#include "state.h"

#ifndef FLOODGATE_VERSION
#define FLOODGATE_VERSION "unknown"
#endif
#ifndef FLOODGATE_REVISION
#define FLOODGATE_REVISION "unknown"
#endif

#define LIVE_METRICS_FILE_MS   15000
#define LIVE_METRICS_TEXT_MAX  (1u << 20)             /* a full exposition is ~10 KiB */
#define LIVE_METRICS_RULES_MAX (4 * CONFIG_RULES_MAX) /* rule names remembered across reloads */
#define LIVE_METRICS_FDS_MAX   (1u << 20)             /* bound on the /proc/self/fd walk */

enum live_metrics_step { LM_FREEZE, LM_HOLD, LM_SUSPEND, LM_RELEASE, LM_STEP__MAX };
enum live_metrics_result {
    LM_OK,
    LM_FAILED,
    LM_SKIPPED,
    LM_TIMEOUT,
    LM_UNCONFIRMED,
    LM_RESULT__MAX
};
#define LM_BACKEND__MAX CONFIG_BACKEND__MAX

static const char *const live_metrics_steps[] = { "freeze", "hold", "suspend", "release" };
static const char *const live_metrics_results[] = { "ok", "failed", "skipped", "timeout",
                                                    "unconfirmed" };

struct live_metrics_rule {
    char name[CONFIG_NAME_MAX];
    enum usertable_scope scope;
    uint64_t trips;
};

struct live_metrics {
    struct metrics_http *http;
    char *listen; /* what the endpoint was bound to (reloads keep it) */
    ev_timer timer;
    bool file_failing;
    struct live_metrics_rule rules[LIVE_METRICS_RULES_MAX];
    size_t nrules;
    uint64_t steps[LM_STEP__MAX][LM_BACKEND__MAX][LM_RESULT__MAX];
    uint64_t frozen;
    uint64_t breaker; /* trips and holds the circuit breaker refused */
    uint64_t reloads, reloads_ok;
    bool reload_ok;
    int64_t reload_ok_ms;
    uint64_t commits_ok, commits_failed;
    int64_t commit_ms;
    uint64_t boot_s; /* 0: /proc/stat unreadable, process_start_time_seconds is left out */
    long ticks, page;
};

/* --- counting ------------------------------------------------------------------------- */

static struct live_metrics_rule *
live_metrics_rule(struct live_metrics *lm, const struct config *cfg, const char *name,
                  enum usertable_scope scope)
{
    size_t i;

    for (i = 0; i < lm->nrules; i++)
        if (strcmp(lm->rules[i].name, name) == 0 && lm->rules[i].scope == scope)
            return &lm->rules[i];
    if (lm->nrules == LIVE_METRICS_RULES_MAX) {
        /* full of old names: the oldest one no longer configured makes room */
        for (i = 0; i < lm->nrules; i++) {
            bool configured = false;
            for (size_t k = 0; k < cfg->nrules && !configured; k++)
                configured = strcmp(cfg->rules[k].name, lm->rules[i].name) == 0;
            if (!configured)
                break;
        }
        if (i == lm->nrules)
            return NULL;
        memmove(&lm->rules[i], &lm->rules[i + 1], (lm->nrules - i - 1) * sizeof(lm->rules[0]));
        lm->nrules--;
    }
    i = lm->nrules++;
    (void)snprintf(lm->rules[i].name, sizeof(lm->rules[i].name), "%s", name);
    lm->rules[i].scope = scope;
    lm->rules[i].trips = 0;
    return &lm->rules[i];
}

/* Every configured rule has its series (0 until it trips); forget unconfigured zeros. */
static void
live_metrics_sync_rules(struct live_metrics *lm, const struct config *cfg)
{
    size_t n = 0;

    for (size_t i = 0; i < lm->nrules; i++) {
        bool configured = false;
        for (size_t k = 0; k < cfg->nrules && !configured; k++)
            configured = strcmp(cfg->rules[k].name, lm->rules[i].name) == 0 &&
                         cfg->rules[k].scope == lm->rules[i].scope;
        if (configured || lm->rules[i].trips > 0)
            lm->rules[n++] = lm->rules[i];
    }
    lm->nrules = n;
    for (size_t k = 0; k < cfg->nrules; k++)
        (void)live_metrics_rule(lm, cfg, cfg->rules[k].name, cfg->rules[k].scope);
}

void
live_metrics_trip(struct daemon *d, const char *rule, enum usertable_scope scope)
{
    struct live_metrics_rule *r;

    if (!d->metrics || !rule)
        return;
    r = live_metrics_rule(d->metrics, d->cfg, rule, scope);
    if (r)
        r->trips++;
}

static enum live_metrics_result
live_metrics_backend_result(const struct action_outcome *o, uint32_t bit)
{
    if (o->unconfirmed)
        return LM_UNCONFIRMED; /* no message confirmed in the spool: nothing done */
    if (o->monitor)
        return LM_SKIPPED;
    if (o->backend_err == -ETIMEDOUT)
        return LM_TIMEOUT;
    if (o->backend_err < 0)
        return LM_FAILED;
    if (o->backend_preexisting)
        return LM_SKIPPED; /* already in force by others: nothing of ours applied */
    return (o->backend_done & bit) ? LM_OK : LM_SKIPPED;
}

void
live_metrics_action(struct daemon *d, const struct action_outcome *o)
{
    struct live_metrics *lm = d->metrics;
    unsigned be = (unsigned)d->cfg->backend < LM_BACKEND__MAX ? (unsigned)d->cfg->backend : 0;
    enum live_metrics_result res;
    uint32_t want = 0;

    if (!lm)
        return;
    if (strcmp(o->what, "release") == 0) {
        res = o->backend_err == -ETIMEDOUT                      ? LM_TIMEOUT
              : o->backend_err < 0 || o->remaining || o->failed ? LM_FAILED
                                                                : LM_OK;
        lm->steps[LM_RELEASE][be][res]++;
        return;
    }
    if (o->monitor || (o->confirmed == 0 && o->frozen == 0 && o->failed == 0))
        res = LM_SKIPPED;
    else
        res = o->failed ? LM_FAILED : LM_OK;
    lm->steps[LM_FREEZE][be][res]++;
    if (!o->monitor)
        lm->frozen += o->frozen;
    if (strcmp(o->what, "freeze_more") == 0)
        return; /* new arrivals of an identity already held: no backend step */
    /* what the ledger's record wants: a manual hold or suspension has no rule to ask */
    {
        struct action_info in;
        if (action_info(d->action, o->scope, o->id, &in) == 0)
            want = in.want | in.done;
    }
    for (size_t k = 0; !want && o->rule && k < d->cfg->nrules; k++)
        if (strcmp(d->cfg->rules[k].name, o->rule) == 0)
            want = d->cfg->rules[k].actions;
    if (want & CONFIG_ACTION_SUSPEND)
        lm->steps[LM_SUSPEND][be][live_metrics_backend_result(o, CONFIG_ACTION_SUSPEND)]++;
    else if (want & CONFIG_ACTION_HOLD)
        lm->steps[LM_HOLD][be][live_metrics_backend_result(o, CONFIG_ACTION_HOLD)]++;
}

void
live_metrics_breaker(struct daemon *d)
{
    if (d->metrics)
        d->metrics->breaker++;
}

void
live_metrics_reload_begin(struct daemon *d)
{
    if (!d->metrics)
        return;
    d->metrics->reloads++;
    d->metrics->reload_ok = false; /* until live_metrics_reload_applied() */
}

void
live_metrics_reload_applied(struct daemon *d)
{
    struct live_metrics *lm = d->metrics;
    const char *now = d->cfg->metrics_listen;

    if (!lm)
        return;
    lm->reloads_ok++;
    lm->reload_ok = true;
    lm->reload_ok_ms = clock_now_ms(&clock_real);
    live_metrics_sync_rules(lm, d->cfg);
    if ((now == NULL) != (lm->listen == NULL) || (now && strcmp(now, lm->listen) != 0))
        log_emit(LOG_WARNING, 0, NULL, "reload: metrics_listen changes need a restart; still %s %s",
                 lm->listen ? "serving on" : "serving", lm->listen ? lm->listen : "none");
}

void
live_metrics_commit(struct daemon *d, bool ok)
{
    if (!d->metrics)
        return;
    if (ok) {
        d->metrics->commits_ok++;
        d->metrics->commit_ms = clock_now_ms(&clock_real);
    } else {
        d->metrics->commits_failed++;
    }
}

/* --- the exposition --------------------------------------------------------------------- */

static void
live_metrics_gauge(struct metrics *m, const char *name, const char *help, double v)
{
    (void)metrics_family(m, name, METRICS_GAUGE, help);
    (void)metrics_sample(m, NULL, 0, v);
}

static void
live_metrics_counter(struct metrics *m, const char *name, const char *help, uint64_t v)
{
    (void)metrics_family(m, name, METRICS_COUNTER, help);
    (void)metrics_sample_u64(m, NULL, 0, v);
}

static void
live_metrics_one(struct metrics *m, const char *label, const char *value, uint64_t v)
{
    const struct metrics_label l = { label, value };
    (void)metrics_sample_u64(m, &l, 1, v);
}

/* Bytes of the live log not read yet (see the HELP text). */
static uint64_t
live_metrics_backlog(struct daemon *d)
{
    struct tail_pos pos;
    struct stat st;

    if (!d->tail || stat(d->cfg->log_file, &st) < 0 || st.st_size <= 0)
        return 0;
    tail_position(d->tail, &pos);
    if (pos.ino == (uint64_t)st.st_ino && pos.dev == (uint64_t)st.st_dev)
        return (uint64_t)st.st_size > pos.offset ? (uint64_t)st.st_size - pos.offset : 0;
    return (uint64_t)st.st_size;
}

static void
live_metrics_tail(struct metrics *m, struct daemon *d)
{
    struct tail_stats ts;
    int64_t mono = clock_mono_ms(&clock_real), wall = clock_now_ms(&clock_real);
    double lag = 0, last = 0;

    memset(&ts, 0, sizeof(ts));
    if (d->tail)
        tail_get_stats(d->tail, &ts);
    if (d->last_record_mono > 0) {
        lag = (double)(mono - d->last_record_mono) / 1000.0;
        last = (double)(wall - (mono - d->last_record_mono)) / 1000.0;
    }
    live_metrics_counter(m, "floodgate_lines_total", "Physical lines read from the Exim log.",
                         ts.lines);
    live_metrics_counter(m, "floodgate_tail_records_total",
                         "Complete log records read (a record may span lines).", ts.records);
    live_metrics_counter(m, "floodgate_tail_bytes_total", "Bytes consumed from log files.",
                         ts.bytes);
    live_metrics_gauge(m, "floodgate_tail_backlog_bytes",
                       "Bytes of the live log not read yet: its size minus the read position, "
                       "or its whole size while an older rotated file is still being read.",
                       (double)live_metrics_backlog(d));
    live_metrics_gauge(m, "floodgate_tail_last_record_timestamp_seconds",
                       "Wall-clock time when the newest record was read (0: none yet). Exim's "
                       "log times are local and zoneless, so this is the daemon's clock.",
                       last);
    live_metrics_gauge(m, "floodgate_log_lag_seconds",
                       "Seconds since the newest record was read, on the monotonic clock "
                       "(0 before the first): how long the log has been quiet or the tailer stuck.",
                       lag);
    (void)metrics_family(m, "floodgate_tail_rotations_total", METRICS_COUNTER,
                         "Rotations handled: rename (the path names another file), truncate.");
    live_metrics_one(m, "kind", "rename", ts.rotations);
    live_metrics_one(m, "kind", "truncate", ts.truncations);
    live_metrics_counter(m, "floodgate_tail_gaps_total",
                         "Unrecoverable losses detected (truncation, a rotated file gone).",
                         ts.gaps);
    live_metrics_counter(m, "floodgate_tail_records_truncated_total",
                         "Records cut at the record size cap.", ts.truncated_records);
    live_metrics_counter(m, "floodgate_tail_long_lines_total",
                         "Lines over the line cap, cut and skipped to their newline.",
                         ts.long_lines);
    live_metrics_counter(m, "floodgate_tail_partial_dropped_total",
                         "Unterminated fragments dropped at the end of a drained file.",
                         ts.partial_dropped);
    live_metrics_counter(m, "floodgate_tail_incomplete_entries_total",
                         "Records handed on unfinished at the multi-line flush deadline.",
                         ts.incomplete_records);
    live_metrics_counter(m, "floodgate_tail_inotify_overflows_total",
                         "inotify queue overflows (IN_Q_OVERFLOW) seen.", ts.overflows);
    live_metrics_counter(m, "floodgate_tail_open_errors_total",
                         "Failed attempts to open or stat the log path.", ts.open_errors);
    live_metrics_counter(m, "floodgate_tail_recovered_copies_total",
                         "copytruncate copies read to recover unread bytes.", ts.recovered_copies);
    live_metrics_gauge(m, "floodgate_tail_files_open", "Log files open (live plus draining).",
                       (double)ts.files_open);
    live_metrics_gauge(m, "floodgate_tail_poll_mode", "1 when polling instead of inotify.",
                       ts.poll_mode ? 1 : 0);
}

static void
live_metrics_engine(struct metrics *m, struct daemon *d)
{
    const struct engine_stats *st = engine_stats(d->engine);

    live_metrics_counter(m, "floodgate_parse_errors_total", "Records the parser rejected.",
                         st->parse_errors);
    (void)metrics_family(m, "floodgate_events_total", METRICS_COUNTER, "Parsed events by type.");
    live_metrics_one(m, "type", "arrival", st->arrivals);
    live_metrics_one(m, "type", "delivery", st->deliveries);
    live_metrics_one(m, "type", "defer", st->deferrals);
    live_metrics_one(m, "type", "fail", st->failures);
    live_metrics_one(m, "type", "completed", st->completed);
    live_metrics_one(m, "type", "other", st->other);
    (void)metrics_family(m, "floodgate_arrivals_total", METRICS_COUNTER,
                         "Arrivals by what attribution made of them.");
    live_metrics_one(m, "kind", "outbound", st->outbound);
    live_metrics_one(m, "kind", "bounce", st->bounces);
    live_metrics_one(m, "kind", "service", st->service);
    live_metrics_one(m, "kind", "inbound", st->inbound);
    live_metrics_one(m, "kind", "local_only", st->local_only);
    live_metrics_counter(m, "floodgate_enforced_deliveries_total",
                         "Deliveries refused by floodgate's own hold or suspension (not counted).",
                         st->enforced);
    live_metrics_counter(m, "floodgate_forged_records_total",
                         "cwd= records that absorbed following lines (log injection attempts).",
                         st->cwd_forged);
    live_metrics_counter(m, "floodgate_identity_keys_refused_total",
                         "Identities refused for a key over the size cap.", st->keys_refused);
    (void)metrics_family(m, "floodgate_log_injection_total", METRICS_COUNTER,
                         "Records that show log injection, by how (absorbed line, cwd=, forged "
                         "tail, forged HELO).");
    for (size_t k = 0; k < ENGINE_INJ__MAX; k++)
        live_metrics_one(m, "kind", engine_injection_name((enum engine_injection)k),
                         st->injections[k]);
    live_metrics_counter(m, "floodgate_records_clock_ahead_total",
                         "Records dated more than 5 minutes ahead of the clock, counted at the "
                         "current time.",
                         st->clock_ahead);
    live_metrics_counter(m, "floodgate_trap_hits_total",
                         "Outbound messages with a spam trap among their recipients.",
                         st->trap_hits);
    live_metrics_counter(m, "floodgate_campaign_trips_total",
                         "Campaign keys that passed their threshold (each tripping its identities).",
                         st->campaign_trips);
    live_metrics_counter(m, "floodgate_campaign_keys_evicted_total",
                         "Campaign keys forgotten to make room for new ones (campaign rules' keys).",
                         st->campaign_evictions);
}

static void
live_metrics_identities(struct metrics *m, struct daemon *d)
{
    struct usertable *t = engine_table(d->engine);
    uint64_t scopes[SCOPE__MAX] = { 0 }, tripped[CONFIG_RULES_MAX] = { 0 };
    struct usertable_entry *e;
    size_t pos = 0;

    while ((e = usertable_next(t, &pos)) != NULL) {
        uint32_t bits = usertable_entry_policy(e)->tripped;
        scopes[usertable_entry_scope(e)]++;
        for (size_t i = 0; bits && i < CONFIG_RULES_MAX; i++)
            tripped[i] += (bits >> i) & 1u;
    }
    (void)metrics_family(m, "floodgate_identities", METRICS_GAUGE, "Identities tracked, by scope.");
    for (int s = 0; s < SCOPE__MAX; s++)
        live_metrics_one(m, "scope", usertable_scope_name((enum usertable_scope)s), scopes[s]);
    live_metrics_gauge(m, "floodgate_identities_max", "The identity table's cap.",
                       (double)usertable_params(t)->cap);
    live_metrics_counter(m, "floodgate_identities_evicted_total",
                         "Identities evicted (least recently active) at the table cap.",
                         usertable_evictions(t));
    (void)metrics_family(m, "floodgate_trips_total", METRICS_COUNTER,
                         "Verdicts that tripped, by rule name and scope.");
    for (size_t i = 0; i < d->metrics->nrules; i++) {
        const struct metrics_label l[] = {
            { "rule", d->metrics->rules[i].name },
            { "scope", usertable_scope_name(d->metrics->rules[i].scope) },
        };
        (void)metrics_sample_u64(m, l, 2, d->metrics->rules[i].trips);
    }
    (void)metrics_family(m, "floodgate_tripped_identities", METRICS_GAUGE,
                         "Identities currently tripped (or acted on) and not released, by rule.");
    for (size_t i = 0; i < d->cfg->nrules; i++)
        live_metrics_one(m, "rule", d->cfg->rules[i].name, tripped[i]);
}

/* Every step from the start, at 0 until it has run (lib/action times them). */
static void
live_metrics_action_durations(struct metrics *m, struct daemon *d)
{
    const struct action_duration *dur = action_durations(d->action);

    _Static_assert(ACTION_DURATION_BUCKETS <= METRICS_BUCKETS_MAX, "a histogram's bounds");

    (void)metrics_family(m, "floodgate_action_duration_seconds", METRICS_HISTOGRAM,
                         "Time per action step, from its start to its outcome.");
    for (unsigned s = 0; s < ACTION_STEP__MAX; s++) {
        const struct metrics_label l[] = { { "action", action_step_name(s) } };
        struct metrics_hist h = {
            .bounds = action_duration_bounds,
            .nbounds = ACTION_DURATION_BUCKETS,
            .sum = (double)dur[s].sum_ms / 1000.0,
        };
        memcpy(h.counts, dur[s].counts, sizeof(dur[s].counts));
        (void)metrics_histogram(m, l, 1, &h);
    }
}

static void
live_metrics_actions(struct metrics *m, struct daemon *d)
{
    struct live_metrics *lm = d->metrics;

    live_metrics_gauge(m, "floodgate_held_identities",
                       "Identities floodgate has acted on and not released (its ledger).",
                       (double)action_list(d->action, false, NULL, NULL));
    live_metrics_gauge(m, "floodgate_actions_pending", "Action requests queued or running.",
                       (double)action_pending(d->action));
    live_metrics_gauge(m, "floodgate_actions_failed_identities",
                       "Held identities whose last action step failed (a hold or suspension "
                       "not applied, mail not frozen): floodgatectl held marks them FAILED.",
                       (double)live_ctl_failed_count(d));
    (void)metrics_family(m, "floodgate_actions_total", METRICS_COUNTER,
                         "Action steps by action, backend and result (skipped: monitor mode, "
                         "nothing to do, or already in force by others; unconfirmed: no message "
                         "confirmed in the spool, nothing done).");
    for (unsigned b = 0; b < LM_BACKEND__MAX; b++) {
        uint64_t any = 0;
        for (unsigned s = 0; s < LM_STEP__MAX; s++)
            for (unsigned r = 0; r < LM_RESULT__MAX; r++)
                any += lm->steps[s][b][r];
        /* the configured backend from the start; another only once it has counts */
        if (!any && b != (unsigned)d->cfg->backend)
            continue;
        for (unsigned s = 0; s < LM_STEP__MAX; s++) {
            for (unsigned r = 0; r < LM_RESULT__MAX; r++) {
                const struct metrics_label l[] = {
                    { "action", live_metrics_steps[s] },
                    { "backend", config_backend_name((enum config_backend)b) },
                    { "result", live_metrics_results[r] },
                };
                (void)metrics_sample_u64(m, l, 3, lm->steps[s][b][r]);
            }
        }
    }
    live_metrics_counter(m, "floodgate_frozen_messages_total", "Messages frozen by floodgate.",
                         lm->frozen);
    live_metrics_counter(m, "floodgate_circuit_breaker_refusals_total",
                         "Trips and holds not acted on: the circuit breaker was open "
                         "(max_actions_per_hour reached).",
                         lm->breaker);
    live_metrics_action_durations(m, d);
}

static void
live_metrics_alerts(struct metrics *m, struct daemon *d)
{
    static const char *const results[] = { "delivered", "retried", "failed", "expired", "dropped" };
    size_t n = live_alert_dest_count(d), pending = 0;
    struct dispatch_dest_stats st;

    if (n > 0) {
        (void)metrics_family(m, "floodgate_alerts_total", METRICS_COUNTER,
                             "Alert attempts and outcomes, by destination and result.");
        for (size_t i = 0; i < n; i++) {
            live_alert_dest_stats(d, i, &st);
            const uint64_t v[] = { st.delivered, st.retried, st.failed, st.expired, st.dropped };
            for (size_t k = 0; k < N_ELEMS(results); k++) {
                const struct metrics_label l[] = { { "destination", st.name ? st.name : "" },
                                                   { "result", results[k] } };
                (void)metrics_sample_u64(m, l, 2, v[k]);
            }
        }
        (void)metrics_family(m, "floodgate_alert_outbox_events", METRICS_GAUGE,
                             "Alerts pending, by destination.");
        for (size_t i = 0; i < n; i++) {
            live_alert_dest_stats(d, i, &st);
            live_metrics_one(m, "destination", st.name ? st.name : "", st.pending);
        }
        (void)metrics_family(
            m, "floodgate_alert_outbox_oldest_timestamp_seconds", METRICS_GAUGE,
            "Creation time of the oldest pending alert, by destination (0: none).");
        for (size_t i = 0; i < n; i++) {
            live_alert_dest_stats(d, i, &st);
            const struct metrics_label l = { "destination", st.name ? st.name : "" };
            (void)metrics_sample(m, &l, 1, (double)st.oldest_ms / 1000.0);
        }
        (void)metrics_family(m, "floodgate_alert_destination_enabled", METRICS_GAUGE,
                             "0 when a destination was disabled (HTTP 404/410).");
        for (size_t i = 0; i < n; i++) {
            live_alert_dest_stats(d, i, &st);
            live_metrics_one(m, "destination", st.name ? st.name : "", st.enabled ? 1 : 0);
        }
        (void)metrics_family(m, "floodgate_alert_delivery_duration_seconds", METRICS_HISTOGRAM,
                             "Time per alert delivery attempt, by destination type.");
        for (unsigned k = 0; k < ALERT_DEST_TYPES; k++) {
            const struct metrics_label l = { "kind",
                                             alert_dest_type_name((enum alert_dest_type)k) };
            struct metrics_hist h;

            dispatch_delivery_hist(d->alerts, (enum alert_dest_type)k, &h);
            (void)metrics_histogram(m, &l, 1, &h);
        }
    }
    for (size_t i = 0; i < n; i++) {
        live_alert_dest_stats(d, i, &st);
        pending += st.pending;
    }
    live_metrics_gauge(m, "floodgate_outbox_entries", "Alerts not yet delivered, all destinations.",
                       (double)pending);
}

static void
live_metrics_service(struct metrics *m, struct daemon *d)
{
    struct live_metrics *lm = d->metrics;

    (void)metrics_family(m, "floodgate_state_commits_total", METRICS_COUNTER,
                         "State checkpoints (position and counters) written, by result.");
    live_metrics_one(m, "result", "ok", lm->commits_ok);
    live_metrics_one(m, "result", "failed", lm->commits_failed);
    live_metrics_gauge(m, "floodgate_state_last_commit_timestamp_seconds",
                       "Time of the last durable checkpoint (0: none since start).",
                       (double)lm->commit_ms / 1000.0);
    (void)metrics_family(m, "floodgate_config_reloads_total", METRICS_COUNTER,
                         "Configuration reloads, by result.");
    live_metrics_one(m, "result", "ok", lm->reloads_ok);
    live_metrics_one(m, "result", "failed", lm->reloads - lm->reloads_ok);
    live_metrics_gauge(m, "floodgate_config_last_reload_successful",
                       "1 if the last reload was applied (or none was tried since start).",
                       lm->reload_ok ? 1 : 0);
    live_metrics_gauge(m, "floodgate_config_last_reload_success_timestamp_seconds",
                       "Time the running configuration was applied (start or reload).",
                       (double)lm->reload_ok_ms / 1000.0);
}

static int
live_metrics_read_proc(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t n = 0;

    if (fd < 0)
        return -errno;
    while (n + 1 < size) {
        ssize_t r = read(fd, buf + n, size - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    (void)close(fd);
    buf[n] = '\0';
    return (int)n;
}

static uint64_t
live_metrics_open_fds(void)
{
    DIR *dir = opendir("/proc/self/fd");
    struct dirent *de;
    uint64_t n = 0;

    if (!dir)
        return 0;
    while (n < LIVE_METRICS_FDS_MAX && (de = readdir(dir)) != NULL)
        n += de->d_name[0] != '.';
    (void)closedir(dir);
    return n > 0 ? n - 1 : 0; /* the directory's own descriptor */
}

static void
live_metrics_process(struct metrics *m, struct live_metrics *lm)
{
    char buf[1024];
    struct metrics_proc_stat ps;
    struct rlimit rl;
    int n = live_metrics_read_proc("/proc/self/stat", buf, sizeof(buf));

    if (n > 0 && metrics_parse_proc_stat(buf, (size_t)n, &ps) == 0) {
        live_metrics_gauge(m, "process_resident_memory_bytes", "Resident memory size in bytes.",
                           (double)ps.rss_pages * (double)lm->page);
        live_metrics_gauge(m, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
                           (double)ps.vsize_bytes);
        (void)metrics_family(m, "process_cpu_seconds_total", METRICS_COUNTER,
                             "Total user and system CPU time spent in seconds.");
        (void)metrics_sample(m, NULL, 0,
                             (double)(ps.utime_ticks + ps.stime_ticks) / (double)lm->ticks);
        if (lm->boot_s > 0)
            live_metrics_gauge(m, "process_start_time_seconds",
                               "Start time of the process since unix epoch in seconds.",
                               (double)lm->boot_s + (double)ps.start_ticks / (double)lm->ticks);
    }
    live_metrics_gauge(m, "process_open_fds", "Number of open file descriptors.",
                       (double)live_metrics_open_fds());
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        live_metrics_gauge(m, "process_max_fds", "Maximum number of open file descriptors.",
                           (double)rl.rlim_cur);
}

/* The whole exposition into @out (empty, capped). 0 or the builder's first error. */
static int
live_metrics_render(struct daemon *d, struct strbuf *out)
{
    const struct metrics_label bi[] = { { "version", FLOODGATE_VERSION },
                                        { "revision", FLOODGATE_REVISION } };
    struct metrics m;

    metrics_init(&m, out);
    (void)metrics_family(&m, "floodgate_build_info", METRICS_GAUGE, "Build metadata; always 1.");
    (void)metrics_sample(&m, bi, N_ELEMS(bi), 1);
    live_metrics_gauge(&m, "floodgate_ready", "1 once the backlog was read at start (READY=1).",
                       d->ready ? 1 : 0);
    (void)metrics_family(&m, "floodgate_mode", METRICS_GAUGE, "1 for the running mode.");
    live_metrics_one(&m, "mode", "enforce", d->cfg->mode == CONFIG_MODE_ENFORCE);
    live_metrics_one(&m, "mode", "monitor", d->cfg->mode == CONFIG_MODE_MONITOR);
    live_metrics_tail(&m, d);
    live_metrics_engine(&m, d);
    live_metrics_identities(&m, d);
    live_metrics_actions(&m, d);
    live_metrics_alerts(&m, d);
    live_metrics_service(&m, d);
    live_dnsbl_metrics(d, &m);
    live_metrics_process(&m, d->metrics);
    return metrics_finish(&m);
}

static int
live_metrics_fill(void *ctx, struct strbuf *out)
{
    return live_metrics_render(ctx, out);
}

/* --- the textfile ------------------------------------------------------------------------- */

/*
 * <file>.tmp beside it, then rename (lib/state's atomic writer): node_exporter never reads
 * half a file. 0644 whatever the umask: node_exporter reads it.
 */
static int
live_metrics_write_file(struct daemon *d, const char *path)
{
    struct strbuf b;
    int r;

    strbuf_init(&b, LIVE_METRICS_TEXT_MAX);
    r = live_metrics_render(d, &b);
    if (r == 0)
        r = state_write_path(path, b.p ? b.p : "", b.len, 0644);
    strbuf_done(&b);
    return r;
}

/* Write cfg->metrics_file now (when set): a failure is logged once, the recovery once. */
void
live_metrics_flush(struct daemon *d)
{
    struct live_metrics *lm = d->metrics;
    const char *path = d->cfg->metrics_file;
    int r;

    if (!lm || !path)
        return;
    r = live_metrics_write_file(d, path);
    if (r < 0 && !lm->file_failing)
        log_emit(LOG_WARNING, r, NULL, "%s: cannot write the metrics file; retrying every %ds",
                 path, LIVE_METRICS_FILE_MS / 1000);
    else if (r == 0 && lm->file_failing)
        log_emit(LOG_NOTICE, 0, NULL, "%s: metrics file written again", path);
    lm->file_failing = r < 0;
}

static void
live_metrics_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    live_metrics_flush(w->data);
}

/* --- start and stop ------------------------------------------------------------------------ */

int
live_metrics_open(struct daemon *d)
{
    struct live_metrics *lm = calloc(1, sizeof(*lm));
    char buf[65536];
    int n, r;

    if (!lm)
        return -ENOMEM;
    d->metrics = lm;
    lm->reload_ok = true; /* the configuration at start counts as applied */
    lm->reload_ok_ms = clock_now_ms(&clock_real);
    lm->ticks = sysconf(_SC_CLK_TCK);
    lm->page = sysconf(_SC_PAGESIZE);
    if (lm->ticks <= 0)
        lm->ticks = 100;
    if (lm->page <= 0)
        lm->page = 4096;
    n = live_metrics_read_proc("/proc/stat", buf, sizeof(buf));
    if (n <= 0 || metrics_parse_btime(buf, (size_t)n, &lm->boot_s) < 0)
        lm->boot_s = 0;
    live_metrics_sync_rules(lm, d->cfg);
    if (d->cfg->metrics_listen) {
        struct metrics_http_params hp = {
            .loop = d->loop,
            .listen = d->cfg->metrics_listen,
            .fill = live_metrics_fill,
            .ctx = d,
        };
        lm->listen = strdup(d->cfg->metrics_listen);
        if (!lm->listen)
            return -ENOMEM;
        r = metrics_http_open(&hp, &lm->http);
        if (r == -ENOMEM)
            return r;
        /* degraded, going on: the textfile and everything else still work */
        if (r < 0)
            log_emit(LOG_WARNING, r, NULL, "metrics_listen %s: cannot serve /metrics%s",
                     d->cfg->metrics_listen, r == -EINVAL ? " (loopback addresses only)" : "");
        else
            log_emit(LOG_INFO, 0, NULL, "serving /metrics on %s", d->cfg->metrics_listen);
    }
    ev_timer_init(&lm->timer, live_metrics_timer_cb, LIVE_METRICS_FILE_MS / 1000.0,
                  LIVE_METRICS_FILE_MS / 1000.0);
    lm->timer.data = d;
    ev_timer_start(d->loop, &lm->timer);
    live_metrics_flush(d);
    return 0;
}

void
live_metrics_free(struct daemon *d)
{
    struct live_metrics *lm = d->metrics;

    if (!lm)
        return;
    ev_timer_stop(d->loop, &lm->timer);
    metrics_http_free(lm->http);
    free(lm->listen);
    free(lm);
    d->metrics = NULL;
}
