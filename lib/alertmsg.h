#ifndef FLOODGATE_ALERTMSG_H
#define FLOODGATE_ALERTMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alert.h"
#include "usertable.h"
#include "util.h"

/*
 * lib/alertmsg: the ids and the exact body bytes of every alert (alerting.md §1-§4), per
 * destination type: Slack (text + blocks), Standard Webhooks JSON (type, timestamp, data)
 * and Alertmanager v2 alerts. Pure: values and times in, bytes out. Every text taken from
 * the log goes through alert_append_text() (capped, UTF-8 repaired, Slack-escaped where
 * Slack parses it), so a body is always valid JSON and log text can neither mention a
 * channel nor forge a link.
 */

/* "fg_" + 26 base32 characters: the first 16 bytes of a SHA-256. */
#define ALERTMSG_ID_LEN      29
#define ALERTMSG_ID_MAX      64  /* any id built here, with its NUL (OUTBOX_NAME_MAX) */
#define ALERTMSG_TEXT_CAP    200 /* bytes of one log-derived value (identity, account) */
#define ALERTMSG_ITEM_CAP    100 /* bytes of one evidence item or digest identity */
#define ALERTMSG_SAMPLES_MAX 5
#define ALERTMSG_COUNTS_MAX  8
#define ALERTMSG_DIGEST_TOP  20
#define ALERTMSG_LABEL_HASH  8            /* hex digits ending a cut identity label */
#define ALERTMSG_BODY_MAX    (256 * 1024) /* no body comes near: every value is capped */

/*
 * Incident id over host, rule, scope, identity and the trip's log time, NUL-separated.
 * @buf holds at least ALERTMSG_ID_MAX bytes. The log time, not the detection time, so a
 * replay after a crash makes the same id.
 */
void alertmsg_incident_id(const char *host, const char *rule, enum usertable_scope scope,
                          const char *identity, int64_t at_ms, char *buf);
/* "<incident>_<kind>"; 0, -EINVAL (a character outbox_name_valid refuses), -E2BIG. */
int alertmsg_event_id(const char *incident, const char *kind, char *buf, size_t size);
/* Digest of a grouping window: "fg_<host hash>_digest_<window start, seconds>". */
void alertmsg_digest_id(const char *host, int64_t start_ms, char *buf);
/* Health event: "fg_<hash of host, kind, time>_health_<seconds>". */
void alertmsg_health_id(const char *host, const char *kind, int64_t at_ms, char *buf);
/* Test message: "fg_<host hash>_test_<seconds>". */
void alertmsg_test_id(const char *host, int64_t at_ms, char *buf);

/* RFC 3339 UTC with milliseconds: "2026-08-21T10:06:38.344Z" (@buf >= 32 bytes). */
void alertmsg_rfc3339(int64_t ms, char *buf, size_t size);

struct alertmsg_count {
    const char *metric;
    int64_t window_ms;
    uint64_t value;
};

/* What the actions did (dispatch_acted, flattened). */
struct alertmsg_actions {
    bool monitor;
    size_t confirmed, frozen, failed;
    const char *backend;   /* NULL or "" when none ran */
    uint32_t backend_done; /* CONFIG_ACTION_HOLD / CONFIG_ACTION_SUSPEND */
    int backend_err;       /* 0 or -errno */
    bool preexisting;
    bool unconfirmed;  /* nothing held: no message confirmed in the spool (an operator decides) */
    size_t candidates; /* with @unconfirmed: the messages the log named */
    int ledger_err;    /* 0, or -errno: the ledger could not be written, so nothing was done */
};

/* One incident, everything borrowed for the call. */
struct alertmsg_incident {
    const char *host;
    const char *incident_id;
    const char *rule;
    enum usertable_scope scope;
    const char *identity;
    const char *account; /* NULL or "" */
    const char *metric;
    int64_t window_ms;
    uint64_t value, limit;
    int64_t at_ms;        /* the trip's log time, local and zoneless: the ids' anchor, not a time */
    int64_t detected_ms;  /* wall clock at detection: every time shown; 0: @at_ms */
    const char *log_time; /* "YYYY-MM-DD HH:MM:SS" as logged (server local); NULL or "" */
    bool monitor;
    const struct alertmsg_count *counts; /* the identity's other windows */
    size_t ncounts;
    const char *const *subjects, *const *client_ips, *const *domains; /* evidence */
    size_t nsubjects, nclient_ips, ndomains;
    const struct alertmsg_actions *acted; /* NULL: not yet */
    int64_t released_ms;                  /* 0: not released */
    const char *generator_url;            /* Alertmanager; NULL: omitted */
    int64_t waited_ms;                    /* ALERTMSG_FOLLOWUP: how long the actions have run */
    bool late_outcome; /* ALERTMSG_RELEASED: @acted failed and was not told before */
};

/*
 * ALERTMSG_FOLLOWUP is Slack's follow-up when the actions have not reported within
 * alerts.followup (alerting.md §2.5): the trip again, the actions "still running".
 */
enum alertmsg_kind { ALERTMSG_TRIPPED = 0, ALERTMSG_ACTED, ALERTMSG_RELEASED, ALERTMSG_FOLLOWUP };

/* "tripped", "acted", "released", "followup": the suffix of the event id. */
const char *alertmsg_kind_name(enum alertmsg_kind k);
/*
 * The actions failed in part (or could not run: the ledger write failed): the webhook type is
 * floodgate.trip.action_failed. An unconfirmed trip is no failure: floodgate.trip.unconfirmed.
 */
bool alertmsg_actions_failed(const struct alertmsg_actions *a);

/*
 * Body of one incident event for a Slack or webhook destination, appended to @out. An
 * acted event carries the trip's details too (so it stands alone when the tripped message
 * was merged into it, alerting.md §5.5) and the evidence when @inc has any. @at_ms is when
 * the event happened, wall clock (the webhook's timestamp). Alertmanager gets a one-alert
 * array (endsAt: the release, or @at_ms + @ends_after_ms). Times shown are the detection's
 * (@inc->detected_ms), never the zoneless log time, which is shown as text.
 * 0, -E2BIG (@out's cap), -EINVAL (ALERTMSG_FOLLOWUP for another type than Slack), -ENOMEM.
 */
int alertmsg_incident_body(struct strbuf *out, enum alert_dest_type type, enum alertmsg_kind kind,
                           const struct alertmsg_incident *inc, int64_t at_ms,
                           int64_t ends_after_ms);

/*
 * Alertmanager: one alert object (§4.1), startsAt the detection, endsAt = released_ms when
 * released, else @ends_ms. An identity over ALERTMSG_TEXT_CAP bytes is cut in its label and
 * ends "…" + ALERTMSG_LABEL_HASH hex digits of its SHA-256, so two never share a label set.
 * alertmsg_am_array(): "[" alert, ... "]" of @n incidents, for a re-send.
 */
int alertmsg_am_alert(struct strbuf *out, const struct alertmsg_incident *inc, int64_t ends_ms);
int alertmsg_am_array(struct strbuf *out, const struct alertmsg_incident *v, size_t n,
                      int64_t ends_ms);

/* A digest (§5.6): counts per rule and scope, the top identities by value. */
struct alertmsg_digest_count {
    const char *rule;
    enum usertable_scope scope;
    uint64_t n;
};

struct alertmsg_digest_item {
    const char *rule;
    enum usertable_scope scope;
    const char *identity;
    const char *metric;
    uint64_t value, limit;
};

struct alertmsg_digest {
    const char *host;
    const char *event_id;
    int64_t start_ms, end_ms; /* the grouping window */
    uint64_t total;           /* incidents summarized (>= nitems) */
    uint64_t acted, failed;   /* of those: actions finished, actions failed in part */
    const struct alertmsg_digest_count *counts;
    size_t ncounts;
    const struct alertmsg_digest_item *items; /* any number; the top ALERTMSG_DIGEST_TOP shown */
    size_t nitems;
};

/* Slack or webhook body of a digest (Alertmanager does its own grouping: -EINVAL). */
int alertmsg_digest_body(struct strbuf *out, enum alert_dest_type type,
                         const struct alertmsg_digest *dg);

/*
 * A daemon health event (floodgate.daemon.degraded): @kind and @text are ours. For
 * Alertmanager a one-alert array "FloodgateDegraded" ending @ends_after_ms after @at_ms.
 */
int alertmsg_health_body(struct strbuf *out, enum alert_dest_type type, const char *host,
                         const char *event_id, const char *kind, const char *text, int64_t at_ms,
                         int64_t ends_after_ms);
/* floodgatectl test-alert (floodgate.test); Alertmanager: an alert resolved at once. */
int alertmsg_test_body(struct strbuf *out, enum alert_dest_type type, const char *host,
                       const char *event_id, int64_t at_ms);

/* "10m", "1h", "90s", "250ms": a window for people. @buf >= 24 bytes. */
void alertmsg_duration(int64_t ms, char *buf, size_t size);

#endif
