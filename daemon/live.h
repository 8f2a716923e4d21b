#ifndef FLOODGATE_LIVE_H
#define FLOODGATE_LIVE_H

/*
 * live.h - the service's one struct, shared by the files that wire it: live.c (start,
 * tail, state, signals, actions), live_ctl.c (the control socket's handlers),
 * live_metrics.c (metrics), live_alert.c (alert delivery). Wiring only: every decision
 * lives in lib/.
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <ev.h>

#include "action.h"
#include "attrib.h"
#include "config.h"
#include "ctl.h"
#include "dispatch.h"
#include "engine.h"
#include "spawn.h"
#include "tail.h"
#include "util.h"

#define LIVE_CHECKPOINT_MS 1000
#define LIVE_SAVER_NICE    10 /* the checkpoint writer's niceness above the daemon's */
#define LIVE_SAVER_SPACING 3  /* a save that took D ms waits D * this after it to start again */
#define LIVE_STATUS_MS     5000
#define LIVE_STATE_FILE    "state"
#define LIVE_STATE_MAGIC   "FLOODGATE-STATE 3\n" /* 3: with the alert dispatcher's state */
#define LIVE_STATE_MAGIC_2 "FLOODGATE-STATE 2\n" /* before alerts: read, never written */
#define LIVE_STATE_MAX     (512u << 20)
#define LIVE_QUEUED_MAX    4096 /* queued ids handed to one freeze */

/* cPanel's outgoing Exim configuration: exim -C it when actions.exim_config is unset */
#define LIVE_EXIM_OUTGOING_CONF "/etc/exim_outgoing.conf"

/* checkpoints failed in a row before a health alert from memory */
#define LIVE_STATE_FAIL_ALERT 3

struct daemon {
    struct ev_loop *loop;
    const char *config_path;
    struct config *cfg;
    struct attrib_maps *maps;
    struct engine *engine;
    struct tail *tail;
    struct action *action;
    struct spawner *spawner;
    struct ctl *ctl;
    uint8_t key[SIPHASH_KEY_LEN];
    int lock_fd;
    int audit_fd;
    char uid_warning[384]; /* not root: who else may use the control socket ("" when root) */
    bool ready;
    bool dirty;         /* records applied since the last checkpoint */
    bool have_state;    /* a checkpoint exists: without one a restart starts at the end */
    bool state_failing; /* the last checkpoint failed: log again only on recovery */
    uint64_t lines;     /* records fed */
    uint64_t status_lines;
    int64_t last_record_mono; /* when the newest record was read (0: none yet) */
    int64_t status_mono;
    ev_signal sighup, sigterm, sigint;
    ev_timer checkpoint, status, watchdog;
    ev_child saver; /* the background checkpoint writer */

    unsigned state_failures; /* checkpoints failed in a row */
    bool state_alerted;      /* live_alert_state_failing() alerted since the last success */

    pid_t saver_pid;
    int64_t saver_mono;      /* when the running background save was forked */
    int64_t saver_next_mono; /* no background save before (see live_saver_cb) */
    struct engine_notice notes[ENGINE_NOTICES_MAX]; /* ~250 KiB: not on the stack per record */
    struct engine_wall wall;  /* the wall clock that bounds the engine's */
    int64_t gmtoff_ms;        /* local time minus UTC (see live_local_offset) */
    int64_t gmtoff_until_ms;  /* when to look it up again */
    int64_t ahead_mono;       /* last journal line about a record dated ahead */
    uint64_t ahead_quiet;     /* records dated ahead since, not logged one by one */
    int64_t inj_mono[ENGINE_INJ__MAX]; /* last journal line / alert per injection kind */
    uint64_t inj_quiet[ENGINE_INJ__MAX];

    /* live_ctl.c (control socket) */
    int64_t start_wall_ms; /* when the daemon started (uptime) */
    struct live_ctl_test *ctl_tests; /* test-alert requests still collecting results */
    struct live_ctl_order *ctl_orders; /* hold, suspend, release waiting for their steps */
    struct trips *trips;               /* recent trips and their outcomes (lib/trips) */

    /* live_metrics.c (Prometheus exposition) */
    struct live_metrics *metrics;

    /* live_alert.c (alert delivery) */
    struct dispatch *alerts;
    struct http_client *http;
    uint64_t alert_token;  /* dispatch_commit_begin() of the save in flight */
    bool alert_kick;       /* alerts were queued: checkpoint again as soon as possible */
    uint64_t alert_gaps;   /* tail gaps already reported */

    /* live_dnsbl.c (the host's reputation; recent trips for its alerts) */
    struct live_dnsbl *dnsbl;
    /* live_frozen.c (frozen messages nearing Exim's auto_thaw / timeout_frozen_after) */
    struct live_frozen *frozen;
};

/* One JSON line to the audit log (a newline is added when missing). */
void live_audit(struct daemon *d, const char *json_line);

/*
 * Re-read the configuration; all or nothing (the running one is kept on any error).
 * 0, or -errno with the reason (config errors as file:line:column) in @msg; @msg may be NULL.
 */
int live_reload(struct daemon *d, char *msg, size_t size);

/* live_ctl.c: the control socket's handlers. */
int live_ctl_open(struct daemon *d);
/* Not running as root: d->uid_warning says who else may release and hold; logged loudly. */
void live_ctl_uid_warning(struct daemon *d);
/* After a reload: resolve control_group again and apply it to the socket. */
void live_ctl_reconfigure(struct daemon *d);
/* Close the socket and forget test-alert requests in flight. */
void live_ctl_close(struct daemon *d);
/* A trip about to be acted on: kept for floodgatectl tripped and show (lib/trips). */
void live_ctl_trip(struct daemon *d, const struct engine_notice *n);
/* action_trip() refused the trip at once (@err: -EALREADY, -EBUSY, ...). */
void live_ctl_trip_refused(struct daemon *d, const struct engine_notice *n, int err);
/* Held identities whose last step failed (a hold not applied, mail not frozen). */
size_t live_ctl_failed_count(struct daemon *d);
/* An action's outcome: recorded with its trip; answers a floodgatectl order waiting for it. */
void live_ctl_outcome(struct daemon *d, const struct action_outcome *o);
/*
 * What a backend step of @op (CONFIG_ACTION_HOLD/SUSPEND) goes through, for messages:
 * "exim blocklist /etc/exim/floodgate-blocklist", "command /usr/local/bin/x", ...
 */
void live_backend_target(const struct config *cfg, enum usertable_scope scope, char *buf,
                         size_t size);

/*
 * live_metrics.c: Prometheus metrics (the textfile cfg->metrics_file, the endpoint
 * cfg->metrics_listen). live_metrics_open() after the tailer starts (0 or -ENOMEM; a
 * listener that cannot bind is logged and skipped); the hooks count what no module keeps
 * and do nothing before it; live_metrics_flush() writes the textfile now (shutdown).
 */
int live_metrics_open(struct daemon *d);
void live_metrics_free(struct daemon *d);
void live_metrics_flush(struct daemon *d);
void live_metrics_trip(struct daemon *d, const char *rule, enum usertable_scope scope);
void live_metrics_action(struct daemon *d, const struct action_outcome *o);
void live_metrics_breaker(struct daemon *d);        /* action_trip() refused: -EBUSY */
void live_metrics_reload_begin(struct daemon *d);   /* a reload starts */
void live_metrics_reload_applied(struct daemon *d); /* ... and was applied */
void live_metrics_commit(struct daemon *d, bool ok);

/*
 * live_alert.c: alert delivery. Without alerts.destinations d->alerts is NULL and these
 * do nothing (counts are 0, live_alert_test() is -ENOTSUP). Queuing an alert asks for a
 * checkpoint at once: an alert is first sent once the state holding it is on disk.
 */
int live_alert_open(struct daemon *d);
void live_alert_free(struct daemon *d);
/* A reload hands @next's destinations over (its last fallible step). 0 or -errno. */
int live_alert_reload(struct daemon *d, const struct config *next);
/* live.c: the text of an injection notice for people, into @b (reset first). */
void live_injection_text(struct strbuf *b, const struct engine_notice *n);
/* A log-injection signal (already rate-limited by the caller): a health alert naming
 * the identity, escaped for display. */
void live_alert_injection(struct daemon *d, const struct engine_notice *n, uint64_t quiet);
/* A trip; @rec is the record that tripped it (subject, client, recipient samples). */
void live_alert_trip(struct daemon *d, const struct engine_notice *n,
                     const struct eximlog_record *rec);
/* What an action request did (lib/action's done callback). */
void live_alert_outcome(struct daemon *d, const struct action_outcome *o);
/* An identity released with nothing for lib/action to undo (alert-only rules, monitor). */
void live_alert_released(struct daemon *d, enum usertable_scope scope, const char *id);
/* Once a status tick: a new tail gap becomes a health alert. */
void live_alert_tick(struct daemon *d);
/*
 * The checkpoint failed LIVE_STATE_FAIL_ALERT times in a row (@err: the last -errno): a
 * health alert from memory, past the commit gate no failing checkpoint would ever open
 * (dispatch_health_urgent(): at most one per 10 minutes), logged at LOG_ERR.
 */
void live_alert_state_failing(struct daemon *d, int err);
/* The checkpoint is written again after live_alert_state_failing() alerted. */
void live_alert_state_recovered(struct daemon *d);
size_t live_alert_pending(const struct daemon *d); /* alerts not yet delivered */
size_t live_alert_dest_count(const struct daemon *d);
void live_alert_dest_stats(const struct daemon *d, size_t i, struct dispatch_dest_stats *ret);
/* floodgatectl test-alert: @done once per destination. 0, or -ENOTSUP (none configured). */
int live_alert_test(struct daemon *d, dispatch_test_fn done, void *ctx);
/* floodgatectl alert-enable: 0, or -ENOENT (no such destination). */
int live_alert_enable(struct daemon *d, const char *name);

/* A health event (@kind, @text ours; @key tells apart events of a kind, see
 * dispatch_health_keyed) queued like the others; nothing without alerts. */
void live_alert_health(struct daemon *d, const char *kind, const char *key, const char *text);

/*
 * live_dnsbl.c: the host's addresses in DNS blocklists (reputation:), looked up on the
 * loop every reputation.interval; listings and delistings are logged, audited and alerted.
 * A reload prepares the new lookups first (fallible), then applies them (never fails) or
 * aborts them; applying looks again at once.
 */
struct dnsbl;
struct dnsbl_ares;
struct metrics;
struct live_dnsbl_next {
    struct dnsbl *bl;
    struct dnsbl_ares *ares;
};
int live_dnsbl_open(struct daemon *d);
void live_dnsbl_free(struct daemon *d);
int live_dnsbl_reload_prepare(struct daemon *d, const struct config *next,
                              struct live_dnsbl_next *ret);
void live_dnsbl_reload_abort(struct live_dnsbl_next *n);
void live_dnsbl_reload_apply(struct daemon *d, struct live_dnsbl_next *n);
/* A trip, remembered (bounded) so an alert can name who tripped in the hour before. */
void live_dnsbl_trip(struct daemon *d, const struct engine_notice *n);
void live_dnsbl_metrics(struct daemon *d, struct metrics *m);

/*
 * live_frozen.c: messages floodgate froze, before Exim's auto_thaw or timeout_frozen_after
 * decides (lib/frozen): the two are read with exim -bP at start and after a reload
 * (enforce mode only); one warning alert per identity whose messages reach 80 % of the
 * way.
 */
int live_frozen_open(struct daemon *d);
void live_frozen_reload(struct daemon *d);
void live_frozen_free(struct daemon *d);

/* "YYYY-MM-DD HH:MM:SS UTC" for a wall time in ms ("an unknown time" for 0). */
void live_time_text(int64_t ms, char *buf, size_t size);

/* live.c: save the state now (@sync) or in a forked writer. */
int live_checkpoint_now(struct daemon *d, bool sync);

#endif
