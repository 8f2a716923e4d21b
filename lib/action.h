#ifndef FLOODGATE_ACTION_H
#define FLOODGATE_ACTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "config.h"
#include "spawn.h"
#include "spool.h"
#include "usertable.h"

struct ev_loop;
struct action;
struct action_backend;

/*
 * lib/action: what floodgate does to a tripped identity (ARCHITECTURE.md, "Invariants").
 *
 *   action_trip()        freeze the identity's queued mail (each id confirmed in the spool
 *                        first, exim -Mf in batches of cfg->freeze_batch, one command at a
 *                        time), then hold or suspend it through the configured backend,
 *                        then report (audit line + done callback: the caller alerts).
 *   action_freeze_more() freeze new arrivals of an identity already acted on.
 *   action_release()     undo the hold/suspension floodgate made, then thaw exactly the
 *                        messages floodgate froze.
 *
 * Every step is logged (log_emit, MESSAGE_ID=LOG_MSGID_ACTION) and written as one JSON line
 * to the audit callback: {"ts":<ms>,"event":"freeze|thaw|hold|suspend|unhold|unsuspend|
 * trip|acted|would_act|freeze_more|release|released|release_incomplete|circuit_open|
 * unconfirmed|not_acted|error",
 * "rule":..,"scope":..,"id":.., plus per-event fields ("ok", "status", "ids", "frozen",
 * "stderr", ...)}. Requests run one external command at a time, in the order made.
 *
 * The ledger <state_dir>/actions.ledger keeps, per identity, the state (acting, acted,
 * released), the backend actions wanted and done, whether the backend found the identity
 * already held/suspended by someone else (then release does not undo it), and every
 * message id floodgate froze. It is rewritten atomically after every step, so after a
 * restart action_is_active() still answers, a trip is not repeated, a release thaws what
 * was frozen before the restart, and a backend step cut short by the restart is re-run.
 *
 * Confirmation: a log line is evidence, not proof. An automatic trip
 * that wants a hold or a suspension acts only when at least one of its messages is
 * confirmed in Exim's spool (the -H file: spool_confirm()) as the identity's; otherwise
 * nothing is done, the identity is recorded as "unconfirmed" (listed, not active), the
 * trip is audited as "not_acted" with "result":"unconfirmed" and reported (done() with
 * o->unconfirmed), and an operator decides: a manual hold (action_request.ordered) acts
 * without confirmation, a release dismisses the record.
 *
 * Durability: the ledger write that records a step (the trip "acting", the ids of an
 * exim -Mf batch, a hold or suspension as attempted) is fsync'd before the step starts;
 * when it fails the step is not run, the failure is logged (file and errno text),
 * audited, and reported (o->ledger_err). A release is refused when the ledger cannot be
 * written.
 *
 * cfg->mode == CONFIG_MODE_MONITOR: nothing is spawned and nothing written but the audit
 * ("would_act" with the confirmed ids and the backend step). cfg->max_actions_per_hour
 * (0: no cap) caps trips per sliding hour; a trip over the cap is refused with -EBUSY,
 * logged at LOG_ERR and audited as "circuit_open".
 */

/* The JSON text is borrowed for the call; one line, no trailing newline. */
typedef void (*action_audit_fn)(void *ctx, const char *json_line);

/*
 * How the ledger reaches the disk: @write replaces the file at @path with @data durably
 * (written, fsync'd, renamed, directory fsync'd) and returns 0 or -errno. The default is
 * state_write_path(); tests pass a failing one.
 */
struct action_ledger_io {
    int (*write)(void *ctx, const char *path, const void *data, size_t len);
    void *ctx;
};

/* What a finished request did, for the caller's "acted" alert. Borrowed for the call. */
struct action_outcome {
    const char *what; /* "trip", "freeze_more", "release", "resume" */
    const char *rule;
    enum usertable_scope scope;
    const char *id;
    bool monitor;             /* monitor mode: nothing was done */
    size_t confirmed;         /* ids confirmed in the spool (trip, freeze_more) */
    size_t frozen;            /* ids this request froze (or thawed, for a release) */
    size_t failed;            /* ids that could not be frozen/thawed */
    size_t remaining;         /* release: ids still frozen by us; the identity stays active */
    uint32_t backend_done;    /* CONFIG_ACTION_HOLD/SUSPEND applied (or undone, for release) */
    bool backend_preexisting; /* the backend found it already held/suspended by others */
    int backend_err;          /* 0, or -errno of the failed backend step */
    bool unconfirmed;         /* trip: no message confirmed in the spool, nothing done */
    size_t candidates;        /* trip: the message ids the log named */
    int ledger_err;           /* 0, or -errno of a ledger write that failed: the step it
                               * was to record was not run */
    const char *not_held;     /* trip: the hold/suspension the rule asked for was not made
                               * because the login is protected: "system_login",
                               * "never_hold" or "not_cpanel_user" (static); else NULL */
    size_t backlog;           /* trip: queued ids found in the spool walk, not in the log */
    size_t scanned;           /* trip, release: -H files the spool walk read */
    size_t acl_thawed;        /* release: ids the spool walk found frozen on arrival by the
                               * ACL for the identity and not in the ledger (thawed with the
                               * ledger's; o->frozen counts what exim thawed) */
};
typedef void (*action_done_fn)(void *ctx, const struct action_outcome *o);

struct action_params {
    struct ev_loop *loop;      /* for the retry timer of "is locked" ids; may be NULL */
    const struct clock *clock; /* borrowed, must outlive the action */
    const struct config *cfg;  /* borrowed until freed or replaced by action_set_config() */
    const char *state_dir;     /* borrowed during action_open() */
    struct spawner *spawner;   /* borrowed, must outlive the action */
    action_audit_fn audit;     /* may be NULL */
    void *audit_ctx;
    action_done_fn done; /* may be NULL */
    void *done_ctx;
    spool_owner_fn owner; /* domain -> account map for account confirmation; or NULL */
    void *owner_ctx;
    const char *exim_config;              /* exim "-C <path>" when cfg->exim_config is NULL (e.g.
                                           * /etc/exim_outgoing.conf on cPanel MailScanner setups);
                                           * NULL: none. cfg->exim_config wins. */
    const char *hold_users_file;          /* cpanel: NULL = /etc/outgoing_mail_hold_users */
    const char *suspended_users_file;     /* cpanel: NULL = /etc/outgoing_mail_suspended_users */
    const struct action_backend *backend; /* NULL: the one cfg->backend names */
    const struct action_ledger_io *ledger_io; /* NULL: state_write_path(); borrowed */
    const char *passwd_file;      /* system logins (uid < 1000 or >= 65534) are read from it
                                   * at open and at each action_set_config(); NULL:
                                   * /etc/passwd */
    const char *cpanel_users_dir; /* cpanel: a login without a file here is not a cPanel
                                   * user; NULL: /var/cpanel/users */
};

/*
 * Open the action module: copies what it keeps of @p's strings, loads the ledger and
 * schedules any backend step a restart interrupted. Returns 0 and *@ret (owned,
 * action_free()), -EINVAL (missing params), -EBADMSG (the ledger is corrupt: it is left
 * untouched for the operator), -ENOMEM, or -errno reading the ledger.
 */
int action_open(const struct action_params *p, struct action **ret);
/* Forget requests in flight (their commands are the spawner's to kill) and free. */
void action_free(struct action *a);

/*
 * Use @cfg (borrowed until action_free() or the next swap) from now on, for reloads: the
 * queue, requests in flight, the ledger and the circuit breaker's count are kept. Every
 * later step reads the new values (freeze_batch, exim paths, exim_config, timeouts,
 * max_actions_per_hour, backend). The caller may free the old config on return. Returns
 * 0, -EINVAL (@cfg lacks exim_path or spool_dir, or names no known backend), or -EBUSY
 * (cfg->backend changes while requests are queued: nothing is changed; retry later).
 */
int action_set_config(struct action *a, const struct config *cfg);

struct action_request {
    const char *rule; /* rule name (spawn_valid_text) */
    enum usertable_scope scope;
    const char *id;            /* mailbox address, account name or "user:/dir" */
    const char *account;       /* owning account or NULL; needed by cpanel for mailboxes */
    uint32_t actions;          /* CONFIG_ACTION_*: FREEZE, HOLD, SUSPEND (SUSPEND wins) */
    const char *const *msgids; /* candidate queued ids from the log, may be NULL */
    size_t nmsgids;
    const char *reason; /* a manual action's reason (printable ASCII, ACTION_REASON_MAX), or
                         * NULL; kept in the ledger, audited, listed by action_list() */
    bool ordered;       /* an operator's explicit order (floodgatectl hold): the hold needs
                         * no message confirmed in the spool (each frozen id still does) */
};

/*
 * Act on a tripped identity. Borrows @req for the call. Returns 0 (scheduled: done()
 * follows; or, for an unconfirmed trip, reported: done() was called with o->unconfirmed),
 * -EALREADY (already acted and not released: nothing repeated, the new ids are frozen as
 * by action_freeze_more()), -EBUSY (circuit breaker open), -EINVAL (an argument fails its
 * validator), -ENOMEM, or -errno writing the ledger (nothing was done; done() was called
 * with o->ledger_err). An "unconfirmed" record is no obstacle: the trip is tried again.
 */
int action_trip(struct action *a, const struct action_request *req);

/* Freeze @msgids of an identity that is active. Returns 0, -ENOENT (not active), -EINVAL. */
int action_freeze_more(struct action *a, enum usertable_scope scope, const char *id,
                       const char *const *msgids, size_t nmsgids);

/* Acted on (or acting) and not released, per the ledger. */
bool action_is_active(const struct action *a, enum usertable_scope scope, const char *id);

/*
 * Undo floodgate's hold/suspension of the identity, thaw what floodgate froze, mark it
 * released (an "unconfirmed" record is dismissed the same way). An id exim did not thaw
 * (failure, timeout) stays recorded and the identity stays active ("release_incomplete"):
 * calling again retries. Returns 0 (scheduled), -ENOENT (neither active nor unconfirmed),
 * -EBUSY (a request for it is still running), -ENOMEM, or -errno when the ledger cannot be
 * written (nothing is undone: a release the ledger does not record would be forgotten).
 */
int action_release(struct action *a, enum usertable_scope scope, const char *id);

/*
 * Record @msgid as frozen on floodgate's behalf: a local submission that the ACL snippet
 * froze on arrival ("frozen by ACL") because the identity is blocked. A release thaws it
 * with the rest. Returns 1 (adopted), 0 (already known), -ENOENT (identity not active),
 * -EINVAL (not a message id), -E2BIG (ACTION_FROZEN_MAX reached), or a ledger write error.
 */
int action_adopt_frozen(struct action *a, enum usertable_scope scope, const char *id,
                        const char *msgid);

/* Ids floodgate froze for the identity (borrowed until the next call into the module). */
size_t action_frozen_ids(const struct action *a, enum usertable_scope scope, const char *id,
                         const char *const **ret);

/*
 * When each of those ids was recorded frozen (wall ms, the same order; 0: unknown, from a
 * ledger written before the time was kept). Borrowed like action_frozen_ids().
 */
size_t action_frozen_times(const struct action *a, enum usertable_scope scope, const char *id,
                           const int64_t **ret);

/* Requests queued or running (for tests and for a clean shutdown). */
size_t action_pending(const struct action *a);

/* Backend by name ("exim", "cpanel", "command"), NULL when unknown. */
const struct action_backend *action_backend_lookup(const char *name);
const char *action_backend_name(const struct action_backend *be);

/*
 * Protected logins (not customers). Unless cfg->hold_system_logins, an automatic trip
 * (not action_request.ordered) of an account or script whose login is root, Exim's user
 * (Debian-exim, exim, mailnull), a system login of the passwd file
 * (uid < 1000 or >= 65534, read at config load), or whose queued -H files name it with
 * such a uid, is never held or suspended; neither is a login of cfg->never_hold, nor with
 * the cpanel backend a login that is not a cPanel user. The trip is still audited ("act"
 * or "not_acted" with "not_held":"<reason>"), logged and reported (o->not_held); the
 * freeze still runs when the rule asks for it. Returns the reason ("system_login",
 * "never_hold", "not_cpanel_user") or NULL; @uid is the login's uid when known (e.g. from
 * the spool), else UINT32_MAX. Mailboxes are never protected.
 */
const char *action_not_holdable(const struct action *a, enum usertable_scope scope,
                                const char *id, uint32_t uid);

/*
 * Spool walks (no new entry points): a trip with a freeze also walks the queue's -H files
 * (ACTION_SCAN_MAX files at most, ACTION_SCAN_STEP per loop iteration) for the identity's
 * messages that the log did not name (queued before the daemon started) and freezes them
 * too; a script's are found by the ACL's acl_m_floodgate_cwd, so without the ACL only the
 * ids from the log are frozen for a script. A release walks it for the messages the ACL
 * froze on arrival for the identity (acl_m_floodgate) and thaws them with the ledger's.
 */
#define ACTION_SCAN_MAX  10000
#define ACTION_SCAN_STEP 250

/* --- listing (floodgatectl held, show) ---------------------------------------------- */

#define ACTION_REASON_MAX 200 /* bytes of a manual action's reason */

/* One identity of the ledger; every pointer is borrowed for the callback or the call. */
struct action_info {
    enum usertable_scope scope;
    const char *id;
    const char *account; /* may be NULL */
    const char *rule;    /* the rule that acted ("manual" for floodgatectl hold) */
    const char *reason;  /* "" unless a manual action gave one */
    const char *state;   /* "acting", "acted", "unconfirmed", "released" */
    bool active;         /* acting or acted: action_is_active() */
    bool unconfirmed;    /* tripped, nothing done: no message confirmed in the spool */
    uint32_t want;       /* CONFIG_ACTION_HOLD/SUSPEND asked for */
    uint32_t done;       /* ... applied by floodgate (a release undoes these) */
    bool preexisting;    /* the backend found it in force already (not undone) */
    size_t nfrozen;      /* message ids floodgate froze and has not thawed */
    int64_t acted_ms;    /* wall time of the (last) trip; 0 unknown */
    int64_t released_ms; /* wall time of the last release; 0 none */
};
typedef void (*action_list_fn)(void *ctx, const struct action_info *info);

/*
 * Call @fn for every identity of the ledger (with @all false: only the active ones), in
 * the ledger's order (@fn NULL: only count them). Returns how many were listed.
 */
size_t action_list(const struct action *a, bool all, action_list_fn fn, void *ctx);

/* The ledger's record of one identity: 0 and *@ret, or -ENOENT. */
int action_info(const struct action *a, enum usertable_scope scope, const char *id,
                struct action_info *ret);


/* --- step durations (floodgate_action_duration_seconds) ------------------------------ */

/* The external steps a request runs; each is timed from its start to its outcome. */
enum action_step {
    ACTION_STEP_FREEZE = 0, /* one exim -Mf batch */
    ACTION_STEP_THAW,       /* one exim -Mt batch */
    ACTION_STEP_HOLD,       /* the backend steps */
    ACTION_STEP_SUSPEND,
    ACTION_STEP_UNHOLD,
    ACTION_STEP_UNSUSPEND,
    ACTION_STEP__MAX,
};

#define ACTION_DURATION_BUCKETS 11 /* upper bounds; one more count for longer steps */

/* Upper bounds of the buckets in seconds: 0.01 0.05 0.1 0.25 0.5 1 2.5 5 10 30 60. */
extern const double action_duration_bounds[ACTION_DURATION_BUCKETS];

/* One step's durations, by the clock's monotonic reading (ms resolution). */
struct action_duration {
    uint64_t counts[ACTION_DURATION_BUCKETS + 1]; /* counts[i]: in (bounds[i-1], bounds[i]]
                                                   * (not cumulative); the last: over 60 s */
    uint64_t count;
    int64_t sum_ms;
};

/* "freeze", "thaw", "hold", "suspend", "unhold", "unsuspend" (the audit's event names). */
const char *action_step_name(enum action_step step);

/*
 * Durations of the steps run since action_open() (a reload keeps them), indexed by enum
 * action_step. A step counts once it has an outcome: a command that could not be started
 * is not timed. Borrowed until the next call into the module.
 */
const struct action_duration *action_durations(const struct action *a);

/* --- the circuit breaker's count -------------------------------------------------- */

#define ACTION_BREAKER_SLOTS 3601 /* one per second of the hour, and the current second */

/*
 * Trips of the last hour in bounded memory: a counter per second, whatever the configured
 * cap (a reload that changes it neither forgets nor miscounts earlier trips). A trip
 * counts against the cap for at least an hour and at most an hour and a second. Plain
 * state: zero it to start.
 */
struct action_breaker {
    uint32_t slots[ACTION_BREAKER_SLOTS]; /* trips in second s at slots[s % SLOTS] */
    int64_t sec;                          /* the newest second counted */
    uint64_t total;                       /* sum of slots */
    bool started;
};

/*
 * A trip at monotonic @mono_ms: returns false (not counted) when @cap (0: none) trips were
 * counted in the hour before it, true and counts it otherwise. The clock may not go back;
 * if it does, the trip is counted in the newest second.
 */
bool action_breaker_allow(struct action_breaker *b, int64_t mono_ms, uint32_t cap);

#endif
