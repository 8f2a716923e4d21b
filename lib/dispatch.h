#ifndef FLOODGATE_DISPATCH_H
#define FLOODGATE_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "config.h"
#include "http.h"
#include "metrics.h"
#include "usertable.h"
#include "util.h"

struct ev_loop;

/*
 * lib/dispatch: alert delivery (alerting.md §1-§5). The daemon reports what happened
 * (a trip, what the actions did, a release, a health problem); this module turns it into
 * incidents, builds each destination's message (lib/alertmsg), queues it in the outbox
 * (lib/outbox), and sends it through an http_transport (lib/http, or a fake in tests)
 * within each destination's token bucket, with backoff and Retry-After, digests during an
 * outbreak, and Alertmanager's level-triggered re-sends.
 *
 * I/O only through the transport and the clock, so tests drive it with a fake of each.
 * With a loop it keeps one ev_timer and wakes itself; without one the caller calls
 * dispatch_poll().
 *
 * Durability (alerting.md §5.1): an alert is written to the state file before its first
 * attempt. The daemon calls dispatch_commit_begin() when it snapshots the state (the
 * encoding taken at that instant holds every entry queued so far) and
 * dispatch_commit_done() when that generation is durable; entries queued after the last
 * durable generation wait for the next one. Deliveries and drops are persisted at the next
 * commit: a crash in between re-sends once, with the same webhook-id.
 */

/* Another of the identity's sliding counts, for the message. */
struct dispatch_count {
    const char *metric; /* "messages", "recipients", ... */
    int64_t window_ms;
    uint64_t value;
};

/* What the daemon knows of a trip; every pointer is borrowed for the call. */
struct dispatch_trip {
    const char *rule;
    enum usertable_scope scope;
    const char *id;      /* mailbox, account or "user:/dir" */
    const char *account; /* owning account, NULL or "" when unknown */
    const char *metric;  /* the rule's metric name */
    int64_t window_ms;
    uint64_t value;
    uint64_t limit;
    /* log time of the tripping record: the incident's anchor (its id, stable across a
     * replay), not an epoch time: Exim logs local time without a zone */
    int64_t at_ms;
    int64_t detected_ms;  /* wall clock at detection: the times alerts show; 0: at_ms */
    const char *log_time; /* "YYYY-MM-DD HH:MM:SS" as logged (server local); may be NULL */
    const struct dispatch_count *counts; /* the identity's other windows; may be NULL */
    size_t ncounts;
    /* evidence, each list at most DISPATCH_SAMPLES_MAX items (more are ignored) */
    const char *const *subjects;
    size_t nsubjects;
    const char *const *client_ips;
    size_t nclient_ips;
    const char *const *domains; /* top recipient domains, heaviest first */
    size_t ndomains;
    bool monitor; /* monitor mode: nothing will be done */
};
#define DISPATCH_SAMPLES_MAX 5

/* What the actions did for an identity (lib/action's outcome, flattened). */
struct dispatch_acted {
    enum usertable_scope scope;
    const char *id;
    bool monitor;
    size_t confirmed;
    size_t frozen;
    size_t failed;
    const char *backend;   /* "exim", "cpanel", "command" */
    uint32_t backend_done; /* CONFIG_ACTION_HOLD / CONFIG_ACTION_SUSPEND */
    int backend_err;       /* 0 or -errno */
    bool preexisting;      /* already held/suspended by someone else */
    bool unconfirmed;      /* nothing held: no message confirmed in the spool */
    size_t candidates;     /* the message ids the log named */
    int ledger_err;        /* 0 or -errno: the ledger could not be written, nothing was done */
};

struct dispatch_params {
    struct ev_loop *loop;      /* NULL: the caller calls dispatch_poll() */
    const struct clock *clock; /* borrowed */
    const struct config *cfg;  /* borrowed until dispatch_set_config() / dispatch_free() */
    struct http_transport http;
    uint64_t (*random)(void *ctx); /* backoff jitter; NULL: getrandom() */
    void *random_ctx;
    const char *host_name; /* copied; NULL: cfg->alerts.host_name or gethostname() */
    const char *version;   /* User-Agent "floodgate/<version>" */
};

struct dispatch;

/* 0 and *ret (owned), -EINVAL (bad params), -ENOMEM. */
int dispatch_new(const struct dispatch_params *p, struct dispatch **ret);
/* Cancel nothing in flight (the transport owns it) and free; NULL-safe. The transport must
 * not call back afterwards: free the http client (which cancels without calling back) first. */
void dispatch_free(struct dispatch *d);

/*
 * A reload: destinations are matched by name; one whose URL or secrets changed is
 * re-enabled; a removed one's pending alerts are dropped (counted); a new one starts
 * empty. Open incidents and their Alertmanager state are kept.
 */
int dispatch_set_config(struct dispatch *d, const struct config *cfg);

/*
 * A rule tripped. Opens an incident (rule, scope, id) unless one is open already (then
 * 0 and nothing is queued: a re-trip is not a new incident). Returns 0 or -ENOMEM.
 */
int dispatch_tripped(struct dispatch *d, const struct dispatch_trip *t);
/* The actions finished for an identity: updates every open incident of it. */
int dispatch_acted(struct dispatch *d, const struct dispatch_acted *a);
/* The identity was released: its incidents resolve. */
int dispatch_released(struct dispatch *d, enum usertable_scope scope, const char *id,
                      int64_t at_ms);
/* A daemon health event (outbox overflow, tail gap, destination disabled). @text is ours. */
int dispatch_health(struct dispatch *d, const char *kind, const char *text);
/*
 * The same for events of one kind about different things (@key: a blocklist and address,
 * an identity): the event id hashes @key too, so two in the same second are both sent.
 */
int dispatch_health_keyed(struct dispatch *d, const char *kind, const char *key,
                          const char *text);
/*
 * A health event that cannot wait for a commit: the checkpoint itself cannot be written, so
 * nothing gated by dispatch_commit_done() would ever leave. It goes to every destination
 * from memory, without the commit gate (the only entries that skip it; a crash before the
 * next durable checkpoint forgets it), through the outbox's retries and buckets. At most
 * one per DISPATCH_URGENT_MIN_MS (10 minutes): returns 0 (queued), -EALREADY (one went out
 * less than 10 minutes ago; nothing queued) or -ENOMEM.
 */
int dispatch_health_urgent(struct dispatch *d, const char *kind, const char *text);

/* floodgatectl test-alert: one test message to every destination, now, outside the
 * outbox and the buckets; @done is called once per destination. */
typedef void (*dispatch_test_fn)(void *ctx, const char *dest, bool ok, int status,
                                 const char *detail);
int dispatch_test(struct dispatch *d, dispatch_test_fn done, void *ctx);

/* Re-enable a destination disabled by a 404/410 (floodgatectl). 0 or -ENOENT. */
int dispatch_enable(struct dispatch *d, const char *dest);

/* Run what is due now; returns milliseconds until the next thing is due (-1: nothing). */
int64_t dispatch_poll(struct dispatch *d);

/* --- persistence -------------------------------------------------------------------- */

/* Everything to keep (outbox entries, incidents, Alertmanager state, disabled flags). */
int dispatch_encode(struct dispatch *d, struct strbuf *out);
/* All or nothing: -EBADMSG (damaged, nothing changed). A destination disabled or paused in
 * @buf stays so only when its URL and secrets are still the same (a restart re-enables one
 * whose URL or secret changed, as a reload does). */
int dispatch_decode(struct dispatch *d, const char *buf, size_t len);
/* A snapshot is being taken now; returns its token. */
uint64_t dispatch_commit_begin(struct dispatch *d);
/* The snapshot @token is durable: what it held may be sent. */
void dispatch_commit_done(struct dispatch *d, uint64_t token);
/* Something to persist since the last dispatch_commit_begin(). */
bool dispatch_dirty(const struct dispatch *d);

/* --- for status and metrics ---------------------------------------------------------- */

struct dispatch_dest_stats {
    const char *name; /* borrowed */
    enum alert_dest_type type;
    bool enabled;
    size_t pending;
    int64_t oldest_ms; /* wall time of the oldest pending entry, 0 when none */
    uint64_t delivered, retried, failed, expired, dropped;
    int last_status; /* HTTP status of the last attempt, 0 none */
    char host[128];  /* scheme://host of the URL (redacted) */
};
size_t dispatch_dest_count(const struct dispatch *d);
void dispatch_dest_stats(const struct dispatch *d, size_t i, struct dispatch_dest_stats *ret);
/* Open incidents (tripped or acted, not released). */
size_t dispatch_open_incidents(const struct dispatch *d);

/*
 * The duration of every delivery attempt since start (http_response.duration_ms, in
 * seconds; Slack, webhook and Alertmanager posts, not floodgatectl test-alert) to
 * destinations of @type, in fixed buckets from 5 ms to 30 s. A copy; the bounds it points
 * to are static.
 */
void dispatch_delivery_hist(const struct dispatch *d, enum alert_dest_type type,
                            struct metrics_hist *ret);

#endif
