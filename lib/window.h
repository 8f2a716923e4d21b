#ifndef FLOODGATE_WINDOW_H
#define FLOODGATE_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
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

/*
 * The ring. A window of W ms has buckets of B = ceil(W / WINDOW_BUCKETS) ms; the ring keeps
 * WINDOW_SLOTS of them: the partial newest bucket and the WINDOW_BUCKETS full ones before it.
 * An event at t counts in window_sum(now) when now - t < W and never when now - t >= 61 * B,
 * which is W + B when W is a multiple of 60 ms (any whole number of minutes, or of 3 s).
 * Windows run from WINDOW_BUCKETS ms to WINDOW_MS_MAX (bucket numbers then fit 32-bit
 * wrapping arithmetic in lib/usertable's sparse events).
 */
#define WINDOW_SLOTS  (WINDOW_BUCKETS + 1)
#define WINDOW_MS_MAX (14LL * 24 * 3600 * 1000) /* 14 days */

/* ceil(@window_ms / WINDOW_BUCKETS): the width of one sub-bucket. */
int64_t window_bucket_ms(int64_t window_ms);
/* Absolute bucket number of @ts_ms (floor division, also below the epoch). */
int64_t window_bucket_of(int64_t ts_ms, int64_t bucket_ms);
/* True when @window_ms is one window_new() accepts. */
bool window_ms_valid(int64_t window_ms);

struct window;

/* Returns owned (window_free()), NULL when out of memory or @window_ms is invalid. */
struct window *window_new(int64_t window_ms);
void window_free(struct window *w);
/*
 * Count @n at log time @ts_ms, O(1). An event older than the newest bucket is counted in
 * the newest bucket: time going backwards never moves the ring back. Buckets saturate at
 * UINT32_MAX.
 */
void window_add(struct window *w, int64_t ts_ms, uint32_t n);
/* Sliding sum at @now_ms (a @now_ms behind the newest bucket reads as the newest bucket). */
uint64_t window_sum(const struct window *w, int64_t now_ms);
/* True when no event of the ring can count at @now_ms or later. */
bool window_is_empty(const struct window *w, int64_t now_ms);

/* Raw state for snapshots: the newest bucket (INT64_MIN: never used), counts oldest first. */
void window_export(const struct window *w, int64_t *ret_head, uint32_t ret_counts[WINDOW_SLOTS]);
void window_import(struct window *w, int64_t head, const uint32_t counts[WINDOW_SLOTS]);

/*
 * Bounded distinct count over the same sliding window: a set of at most
 * WINDOW_DISTINCT_MAX (28-bit hash fragment, last-seen bucket) pairs. Exact below the cap
 * except for fragment collisions (about n^2 / 2^29); at the cap the count reads
 * WINDOW_DISTINCT_MAX ("at least") until the bucket that overflowed leaves the window.
 */
#define WINDOW_DISTINCT_MAX       255
#define WINDOW_DISTINCT_FRAG_BITS 28

struct window_distinct_item {
    uint32_t frag;   /* window_distinct_frag() of the value */
    uint32_t bucket; /* last-seen bucket number, truncated to 32 bits */
};

struct window_distinct;

/* The fragment of a 64-bit value hash that distinct counts compare. */
uint32_t window_distinct_frag(uint64_t hash);
/* Returns owned (window_distinct_free()), NULL when out of memory or @window_ms is invalid. */
struct window_distinct *window_distinct_new(int64_t window_ms);
void window_distinct_free(struct window_distinct *d);
/*
 * Record the value whose hash is @hash at @ts_ms (clamped like window_add()). Returns 0, or
 * -ENOMEM when the set could not grow (the value is then not recorded).
 */
int window_distinct_add(struct window_distinct *d, int64_t ts_ms, uint64_t hash);
/* Same as window_distinct_add() with a fragment already computed. */
int window_distinct_add_frag(struct window_distinct *d, int64_t ts_ms, uint32_t frag);
/* Distinct values seen in the window at @now_ms, at most WINDOW_DISTINCT_MAX. */
uint32_t window_distinct_count(const struct window_distinct *d, int64_t now_ms);
bool window_distinct_is_empty(const struct window_distinct *d, int64_t now_ms);

/*
 * Snapshot state: writes the newest bucket, the overflow bucket (INT64_MIN: none) and up to
 * WINDOW_DISTINCT_MAX items to @ret_items; returns the number of items.
 */
size_t window_distinct_export(const struct window_distinct *d, int64_t *ret_head, int64_t *ret_sat,
                              struct window_distinct_item *ret_items);
/* Restore exported state; returns 0, -EINVAL (@n over the cap), -ENOMEM. */
int window_distinct_import(struct window_distinct *d, int64_t head, int64_t sat,
                           const struct window_distinct_item *items, size_t n);

#endif
