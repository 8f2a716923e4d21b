/*
 * window.c - sliding-window counters: the metric names, the ring of sub-buckets behind every
 * summed count, and the bounded set behind every distinct count. Pure: time is an argument.
 *
 * A window of W ms is cut into WINDOW_BUCKETS (60) sub-buckets of B = ceil(W / 60) ms; bucket
 * k holds the events with floor(t / B) = k. The ring keeps WINDOW_SLOTS = 61 counters: the
 * newest bucket h (partial: time is still inside it) and the 60 before it. window_sum(now)
 * with nb = floor(now / B) adds buckets nb - 60 .. nb, that is the log time
 * [(nb - 60) * B, now]. Since nb * B <= now < (nb + 1) * B, that span starts more than
 * 61 * B and at most 60 * B before now, so:
 *   - an event at t with now - t < W (<= 60 * B) always counts;
 *   - an event at t with now - t >= 61 * B (W + B when 60 * B = W) never counts;
 *   - in between (one sub-bucket's worth of log time) it may count: the error bound is the
 *     content of at most one sub-bucket, always an over-count, never an under-count.
 * When W is a multiple of 60 ms (whole minutes, or multiples of 3 s), 60 * B = W and the
 * edge is exactly W + B; otherwise 60 * B exceeds W by up to 59 ms and the edge moves out
 * by as much (tested with W = 1000 ms, B = 17 ms). add is
 * O(1) amortized: moving the head clears the buckets it passes, at most 61 of them.
 *
 * Log time goes backwards a little when lines come out of order or two logs are merged. An
 * event older than the newest bucket is added into the newest bucket: the ring never moves
 * back and never revives counts it already dropped. A sum asked for a time behind the head
 * reads at the head. Buckets saturate at UINT32_MAX; sums are 64-bit and cannot wrap.
 *
 * Distinct counts (recipient domains, client IPs) keep a set of (28-bit hash fragment,
 * last-seen bucket) pairs per window, at most WINDOW_DISTINCT_MAX (255), grown by doubling
 * from 8 (8 bytes per pair, so a busy set costs about 2 KiB). Adding a value refreshes its
 * pair or appends one, and drops the pairs whose bucket left the window (every add scans the
 * whole set, so no pair survives long enough for its 32-bit bucket number to wrap). The
 * count is the number of pairs inside the window, with the same one-bucket bound as sums.
 * Two values share a fragment with probability about n^2 / 2^29 (1e-4 at 255): the count is
 * then one low. When all 255 pairs are live and a new value comes, the set records the
 * overflow bucket and reads WINDOW_DISTINCT_MAX ("at least 255") until that bucket leaves
 * the window; every rule threshold on a distinct metric must be below 255 to be meaningful.
 */
#include "window.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW_DISTINCT_INITIAL 8

struct window {
    int64_t head;      /* newest bucket number; INT64_MIN while empty */
    int64_t bucket_ms; /* B */
    uint32_t n[WINDOW_SLOTS];
};

struct window_distinct {
    int64_t head;      /* newest bucket number; INT64_MIN while empty */
    int64_t sat;       /* bucket in which the set overflowed; INT64_MIN: never */
    int64_t bucket_ms; /* B */
    uint16_t n, cap;
    struct window_distinct_item *items;
};

static const char *const window_metric_names[WINDOW_METRIC__MAX] = {
    [WINDOW_MESSAGES] = "messages", [WINDOW_RECIPIENTS] = "recipients", [WINDOW_FAILED] = "failed",
    [WINDOW_DEFERRED] = "deferred", [WINDOW_DOMAINS] = "domains",       [WINDOW_IPS] = "ips",
    [WINDOW_MISMATCH] = "mismatch", [WINDOW_AUTHFAIL] = "authfail",
};

const char *
window_metric_name(enum window_metric m)
{
    if ((unsigned)m >= WINDOW_METRIC__MAX)
        return NULL;
    return window_metric_names[m];
}

int
window_metric_parse(const char *name, enum window_metric *ret)
{
    for (unsigned i = 0; i < WINDOW_METRIC__MAX; i++) {
        if (strcmp(name, window_metric_names[i]) == 0) {
            *ret = (enum window_metric)i;
            return 0;
        }
    }
    return -EINVAL;
}

bool
window_metric_is_distinct(enum window_metric m)
{
    return m == WINDOW_DOMAINS || m == WINDOW_IPS;
}

int64_t
window_bucket_ms(int64_t window_ms)
{
    return (window_ms + WINDOW_BUCKETS - 1) / WINDOW_BUCKETS;
}

int64_t
window_bucket_of(int64_t ts_ms, int64_t bucket_ms)
{
    int64_t q = ts_ms / bucket_ms;

    if (ts_ms % bucket_ms != 0 && ts_ms < 0)
        q--;
    return q;
}

bool
window_ms_valid(int64_t window_ms)
{
    return window_ms >= WINDOW_BUCKETS && window_ms <= WINDOW_MS_MAX;
}

static size_t
window_slot(int64_t bucket)
{
    int64_t s = bucket % WINDOW_SLOTS;

    return (size_t)(s < 0 ? s + WINDOW_SLOTS : s);
}

struct window *
window_new(int64_t window_ms)
{
    struct window *w;

    if (!window_ms_valid(window_ms))
        return NULL;
    w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->head = INT64_MIN;
    w->bucket_ms = window_bucket_ms(window_ms);
    return w;
}

void
window_free(struct window *w)
{
    free(w);
}

void
window_add(struct window *w, int64_t ts_ms, uint32_t n)
{
    int64_t b = window_bucket_of(ts_ms, w->bucket_ms);
    uint32_t *c;

    if (w->head == INT64_MIN || b - w->head >= WINDOW_SLOTS) {
        memset(w->n, 0, sizeof(w->n));
        w->head = b;
    } else if (b > w->head) {
        for (int64_t k = w->head + 1; k <= b; k++)
            w->n[window_slot(k)] = 0;
        w->head = b;
    }
    /* A clock step or two merged logs must not move a window back and revive old counts. */
    c = &w->n[window_slot(w->head)];
    *c = (*c > UINT32_MAX - n) ? UINT32_MAX : *c + n;
}

uint64_t
window_sum(const struct window *w, int64_t now_ms)
{
    int64_t nb, lo;
    uint64_t sum = 0;

    if (w->head == INT64_MIN)
        return 0;
    nb = window_bucket_of(now_ms, w->bucket_ms);
    if (nb < w->head)
        nb = w->head;
    lo = nb - WINDOW_BUCKETS;
    for (int64_t k = lo > w->head - WINDOW_BUCKETS ? lo : w->head - WINDOW_BUCKETS; k <= w->head;
         k++)
        sum += w->n[window_slot(k)];
    return sum;
}

bool
window_is_empty(const struct window *w, int64_t now_ms)
{
    return w->head == INT64_MIN ||
           window_bucket_of(now_ms, w->bucket_ms) - w->head > WINDOW_BUCKETS;
}

void
window_export(const struct window *w, int64_t *ret_head, uint32_t ret_counts[WINDOW_SLOTS])
{
    *ret_head = w->head;
    for (int64_t i = 0; i < WINDOW_SLOTS; i++)
        ret_counts[i] = w->head == INT64_MIN ? 0 : w->n[window_slot(w->head - WINDOW_BUCKETS + i)];
}

void
window_import(struct window *w, int64_t head, const uint32_t counts[WINDOW_SLOTS])
{
    memset(w->n, 0, sizeof(w->n));
    w->head = head;
    if (head == INT64_MIN)
        return;
    for (int64_t i = 0; i < WINDOW_SLOTS; i++)
        w->n[window_slot(head - WINDOW_BUCKETS + i)] = counts[i];
}

uint32_t
window_distinct_frag(uint64_t hash)
{
    return (uint32_t)(hash & ((UINT32_C(1) << WINDOW_DISTINCT_FRAG_BITS) - 1));
}

struct window_distinct *
window_distinct_new(int64_t window_ms)
{
    struct window_distinct *d;

    if (!window_ms_valid(window_ms))
        return NULL;
    d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->head = INT64_MIN;
    d->sat = INT64_MIN;
    d->bucket_ms = window_bucket_ms(window_ms);
    return d;
}

void
window_distinct_free(struct window_distinct *d)
{
    if (!d)
        return;
    free(d->items);
    free(d);
}

/* Bucket @b is inside the window whose newest bucket is @nb (both truncated to 32 bits). */
static bool
window_distinct_live(uint32_t nb, uint32_t b)
{
    return (uint32_t)(nb - b) <= WINDOW_BUCKETS;
}

static int
window_distinct_grow(struct window_distinct *d)
{
    uint16_t cap = d->cap ? (uint16_t)(d->cap * 2) : WINDOW_DISTINCT_INITIAL;
    struct window_distinct_item *p;

    if (cap > WINDOW_DISTINCT_MAX)
        cap = WINDOW_DISTINCT_MAX;
    p = realloc(d->items, cap * sizeof(*p));
    if (!p)
        return -ENOMEM;
    d->items = p;
    d->cap = cap;
    return 0;
}

int
window_distinct_add_frag(struct window_distinct *d, int64_t ts_ms, uint32_t frag)
{
    int64_t b = window_bucket_of(ts_ms, d->bucket_ms);
    uint32_t nb;
    bool found = false;
    int r;

    if (d->head != INT64_MIN && b < d->head)
        b = d->head;
    d->head = b;
    nb = (uint32_t)b;
    for (uint16_t i = 0; i < d->n;) {
        if (!window_distinct_live(nb, d->items[i].bucket)) {
            d->items[i] = d->items[--d->n];
            continue;
        }
        if (d->items[i].frag == frag) {
            d->items[i].bucket = nb;
            found = true;
        }
        i++;
    }
    if (found)
        return 0;
    if (d->n == d->cap) {
        if (d->cap == WINDOW_DISTINCT_MAX) {
            d->sat = b;
            return 0;
        }
        r = window_distinct_grow(d);
        if (r < 0)
            return r;
    }
    d->items[d->n++] = (struct window_distinct_item){ .frag = frag, .bucket = nb };
    return 0;
}

int
window_distinct_add(struct window_distinct *d, int64_t ts_ms, uint64_t hash)
{
    return window_distinct_add_frag(d, ts_ms, window_distinct_frag(hash));
}

uint32_t
window_distinct_count(const struct window_distinct *d, int64_t now_ms)
{
    int64_t nb;
    uint32_t c = 0;

    if (d->head == INT64_MIN)
        return 0;
    nb = window_bucket_of(now_ms, d->bucket_ms);
    if (nb < d->head)
        nb = d->head;
    if (nb - d->head > WINDOW_BUCKETS)
        return 0;
    if (d->sat != INT64_MIN && nb - d->sat <= WINDOW_BUCKETS)
        return WINDOW_DISTINCT_MAX;
    for (uint16_t i = 0; i < d->n; i++)
        if (window_distinct_live((uint32_t)nb, d->items[i].bucket))
            c++;
    return c;
}

bool
window_distinct_is_empty(const struct window_distinct *d, int64_t now_ms)
{
    return d->head == INT64_MIN ||
           window_bucket_of(now_ms, d->bucket_ms) - d->head > WINDOW_BUCKETS;
}

size_t
window_distinct_export(const struct window_distinct *d, int64_t *ret_head, int64_t *ret_sat,
                       struct window_distinct_item *ret_items)
{
    *ret_head = d->head;
    *ret_sat = d->sat;
    if (d->n)
        memcpy(ret_items, d->items, d->n * sizeof(*d->items));
    return d->n;
}

int
window_distinct_import(struct window_distinct *d, int64_t head, int64_t sat,
                       const struct window_distinct_item *items, size_t n)
{
    int r;

    if (n > WINDOW_DISTINCT_MAX)
        return -EINVAL;
    while (d->cap < n) {
        r = window_distinct_grow(d);
        if (r < 0)
            return r;
    }
    if (n)
        memcpy(d->items, items, n * sizeof(*items));
    d->n = (uint16_t)n;
    d->head = head;
    d->sat = sat;
    return 0;
}
