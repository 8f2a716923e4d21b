#ifndef FLOODGATE_WINDOW_H
#define FLOODGATE_WINDOW_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Sliding-window counters. A window of W ms is a ring of WINDOW_BUCKETS sub-buckets of
 * W/WINDOW_BUCKETS ms each; window_sum() may include at most one bucket older than W.
 */
#define WINDOW_BUCKETS 60

enum window_metric {
    WINDOW_MESSAGES = 0, /* outbound messages accepted */
    WINDOW_RECIPIENTS,   /* recipients of those messages (corrected by delivery lines) */
    WINDOW_FAILED,       /* ** lines for those messages */
    WINDOW_DEFERRED,     /* == lines (not retry-time-not-reached, not our own hold) */
    WINDOW_DOMAINS,      /* distinct recipient domains (bounded distinct count) */
    WINDOW_IPS,          /* distinct client IP addresses (bounded distinct count) */
    WINDOW_MISMATCH,     /* envelope sender differs from the authenticated id */
    WINDOW_AUTHFAIL,     /* failed SMTP AUTH attempts for the set_id */
    WINDOW_METRIC__MAX,
};

/* "messages", "recipients", "failed", "deferred", "domains", "ips", "mismatch", "authfail" */
const char *window_metric_name(enum window_metric m);
/* Returns 0 and writes @ret, or -EINVAL for an unknown name. */
int window_metric_parse(const char *name, enum window_metric *ret);
/* Distinct metrics count unique 64-bit hashes, not amounts. */
bool window_metric_is_distinct(enum window_metric m);

#endif
