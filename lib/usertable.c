/*
 * usertable.c - the identity table: (scope, key) to sliding counters, totals, last activity
 * and policy state. It owns the counters of every identity; it does not decide anything
 * (lib/policy reads the sums) and it does no I/O (snapshots go through a write callback).
 *
 * Index. Entries live in a slot array; a slot's generation grows each time its entry is
 * evicted, so a struct usertable_ref (slot, generation) taken earlier derefs to NULL once
 * the identity is gone. A chained hash index (bucket heads and per-entry links are slot
 * numbers) is keyed by SipHash-2-4 under params->key, so a sender who chooses addresses
 * cannot choose collisions. Buckets double when the load passes USERTABLE_LOAD_MAX (2). An
 * intrusive doubly linked LRU list (slot numbers again) orders entries by last lookup;
 * when the table holds params->cap entries, creating one evicts the tail in O(1). The new
 * entry is allocated before the victim is freed, so a failed create changes nothing.
 *
 * Time. Each identity has its own log clock, newest_ms: the latest time passed to
 * usertable_get() or an add. Events and sums before it are clamped to it, so out-of-order
 * lines land in the newest bucket of every series, a window never moves back, and the
 * sparse and dense forms below see the same monotone stream and give the same sums.
 *
 * Counters, two tiers. A dense ring per series (lib/window: 61 uint32 buckets, 264 bytes,
 * or a distinct set) costs about 0.8 KiB for a mailbox with three series: 80 MB for 100k
 * identities, four times the budget. Most identities send a few messages an hour, so an
 * entry starts sparse: a time-ordered list of exact events (8 bytes: a 32-bit time in
 * "units", and a 4-bit metric with a 28-bit amount or distinct-hash fragment). A unit is
 * the gcd of the scope's bucket widths (10 s for 10m and 1h windows), so an event's bucket
 * in every series is exact; unit numbers are kept mod 2^32 and read back relative to
 * newest_ms, which is safe because an event older than the longest window plus a bucket
 * (span, < 2^31 units since windows are at most 14 days) is purged on the next add, and a
 * jump of a whole span clears the entry. Same-metric events in the same unit merge; a
 * distinct value seen again moves to the tail, so each fragment occurs once. The first
 * events sit inline in the entry allocation (at least USERTABLE_INLINE_MIN, more when the
 * malloc chunk has room), the rest in a side array grown 3, 7, 15, 31 (each a full chunk).
 * Beyond USERTABLE_SPARSE_MAX events, or an amount over 28 bits, the entry is promoted: its
 * events are replayed into dense rings, which by the clamping above gives exactly the sums
 * the sparse form gave (tested on a random stream). When an add finds every window of an
 * identity empty (a whole span since its newest event), its storage is freed and it starts
 * sparse again.
 *
 * Bytes per identity on x86-64 glibc: the entry header is 56 bytes, plus 8 per total
 * (messages, recipients and every summed metric of the scope's series: 2 with the usual
 * rules), the key and its NUL, then inline events, all rounded to a 16-byte chunk with
 * malloc's 8-byte header; plus 12 bytes of slot and generation (grown by a quarter) and
 * about 3 of hash buckets. A message and its recipients in the same unit share one event
 * (10-bit message and 18-bit recipient counts), so a mailbox message costs 8 bytes plus
 * 8 per new recipient domain. A mailbox "info@example-domain.com" with the rules mailbox
 * recipients/10m, messages/1h, domains/10m and up to 5 events (two messages to one or two
 * domains): 56 + 16 + 24 + 40 = 136 -> a 144-byte chunk, ~160 bytes in all; up to 8 events
 * add a 32-byte chunk (~192). A dense mailbox adds the pointer array, two rings and a set
 * (~700 bytes more). tests/bench/bench_usertable measures 183 bytes per identity on
 * average for 100k identities (70% mailboxes, 1% busy), 19.3 MB resident with the process.
 * Sums are exact in the sparse form; the dense form saturates buckets at 2^32 - 1 and
 * distinct counts at WINDOW_DISTINCT_MAX.
 *
 * Snapshot (little-endian): "FGUT", version, the series of each scope, the entry count,
 * then entries from least to most recently active (so a load rebuilds the LRU order and a
 * smaller cap keeps the most recent), and a CRC-32 of everything before it. Sparse entries
 * are saved as (time ms, metric, amount) events and replayed; dense ones as raw rings,
 * matched to the loading table's series by (metric, window). Every field is bounds checked
 * after the CRC; any failure empties the table again and returns -EBADMSG.
 */
#include "usertable.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#define USERTABLE_NIL         UINT32_MAX
#define USERTABLE_SPARSE_MAX  32 /* exact events before promotion: 256 bytes, a third of dense */
#define USERTABLE_INLINE_MIN  4  /* events inline in the entry: a mailbox's first message */
#define USERTABLE_EV_BITS     28
#define USERTABLE_EV_MAX      ((UINT32_C(1) << USERTABLE_EV_BITS) - 1)
#define USERTABLE_EV_PAIR     15u /* code: messages (high 10 bits) and recipients (low 18) */
#define USERTABLE_PAIR_RBITS  18
#define USERTABLE_PAIR_MMAX   ((UINT32_C(1) << (USERTABLE_EV_BITS - USERTABLE_PAIR_RBITS)) - 1)
#define USERTABLE_PAIR_RMAX   ((UINT32_C(1) << USERTABLE_PAIR_RBITS) - 1)
#define USERTABLE_MALLOC_HDR  8 /* glibc chunk header, 16-byte chunks: sized to use slack */
#define USERTABLE_BUCKETS_MIN 1024
#define USERTABLE_SLOTS_MIN   1024
#define USERTABLE_LOAD_MAX    2 /* entries per hash bucket before doubling: chains of 1-2 */
#define USERTABLE_TIME_MAX    (INT64_C(1) << 52) /* log times beyond are refused on load */
#define USERTABLE_MAGIC       "FGUT"
#define USERTABLE_VERSION     1
#define USERTABLE_WBUF        65536

struct usertable_event {
    uint32_t t;  /* unit number mod 2^32 */
    uint32_t mv; /* metric << 28 | amount or distinct fragment */
};

struct usertable_scope_info {
    int64_t unit_ms;     /* gcd of the bucket widths */
    int64_t span_ms;     /* max 61 * B: older events count nowhere */
    uint32_t span_units; /* span_ms / unit_ms */
    int64_t bucket_ms[USERTABLE_SERIES_MAX];
    bool used[WINDOW_METRIC__MAX]; /* some series counts this metric */
    uint8_t totmask;               /* metrics with a lifetime total */
};

struct usertable {
    struct usertable_params p;
    struct usertable_scope_info sc[SCOPE__MAX];
    uint32_t cap;
    struct usertable_entry **slots;
    uint32_t *gens;
    uint32_t nslots, slots_cap;
    uint32_t *buckets;
    uint32_t nbuckets;           /* a power of two */
    uint32_t lru_head, lru_tail; /* most and least recently active */
    size_t count;
    uint64_t evictions, nomem;
};

struct usertable_entry {
    int64_t newest_ms;
    struct usertable_policy policy;
    void *store; /* sparse: side events (or NULL); dense: one window pointer per series */
    uint32_t prev, next, hnext, slot;
    uint16_t keylen;
    uint8_t scope, dense;
    uint8_t nin, nev, ext_cap; /* inline capacity, sparse events, side capacity */
    uint8_t totmask;           /* bit m: tail[] holds the total of metric m */
    uint64_t tail[];           /* totals, then the key and its NUL, then inline events */
};

static const char *const usertable_scope_names[SCOPE__MAX] = {
    [SCOPE_MAILBOX] = "mailbox",
    [SCOPE_ACCOUNT] = "account",
    [SCOPE_SCRIPT] = "script",
};

const char *
usertable_scope_name(enum usertable_scope s)
{
    if ((unsigned)s >= SCOPE__MAX)
        return NULL;
    return usertable_scope_names[s];
}

int
usertable_scope_parse(const char *name, enum usertable_scope *ret)
{
    for (unsigned i = 0; i < SCOPE__MAX; i++) {
        if (strcmp(name, usertable_scope_names[i]) == 0) {
            *ret = (enum usertable_scope)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* Layout of one entry's variable part. */

/* Bits set in a metric mask (inline: without -mpopcnt the builtin is a libgcc call, per add). */
static inline unsigned
usertable_popcount(uint32_t x)
{
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    x = (x + (x >> 4)) & 0x0f0f0f0fu;
    return (x * 0x01010101u) >> 24;
}

static size_t
usertable_key_off(unsigned totmask)
{
    return offsetof(struct usertable_entry, tail) +
           (size_t)usertable_popcount(totmask) * sizeof(uint64_t);
}

static size_t
usertable_ev_off(const struct usertable_entry *e)
{
    return (usertable_key_off(e->totmask) + e->keylen + 1 + 3) & ~(size_t)3;
}

/* Index of metric @m's total in tail[], or -1 when the entry keeps none. */
static int
usertable_tot_idx(const struct usertable_entry *e, enum window_metric m)
{
    if ((unsigned)m >= WINDOW_METRIC__MAX || !(e->totmask & (1u << m)))
        return -1;
    return (int)usertable_popcount(e->totmask & ((1u << m) - 1));
}

static struct usertable_event *
usertable_ev(struct usertable_entry *e, size_t i)
{
    if (i < e->nin)
        return (struct usertable_event *)((char *)e + usertable_ev_off(e)) + i;
    return (struct usertable_event *)e->store + (i - e->nin);
}

static struct usertable_event
usertable_ev_get(const struct usertable_entry *e, size_t i)
{
    struct usertable_event ev;
    const char *p;

    if (i < e->nin)
        p = (const char *)e + usertable_ev_off(e) + i * sizeof(ev);
    else
        p = (const char *)e->store + (i - e->nin) * sizeof(ev);
    memcpy(&ev, p, sizeof(ev));
    return ev;
}

/* The metric of an event, or USERTABLE_EV_PAIR. */
static unsigned
usertable_ev_code(struct usertable_event ev)
{
    return ev.mv >> USERTABLE_EV_BITS;
}

static uint32_t
usertable_ev_value(struct usertable_event ev)
{
    return ev.mv & USERTABLE_EV_MAX;
}

/* The amount of summed metric @m that @ev carries. */
static uint32_t
usertable_ev_amount(struct usertable_event ev, enum window_metric m)
{
    if (usertable_ev_code(ev) == USERTABLE_EV_PAIR) {
        if (m == WINDOW_MESSAGES)
            return usertable_ev_value(ev) >> USERTABLE_PAIR_RBITS;
        if (m == WINDOW_RECIPIENTS)
            return ev.mv & USERTABLE_PAIR_RMAX;
        return 0;
    }
    return usertable_ev_code(ev) == (unsigned)m ? usertable_ev_value(ev) : 0;
}

/* Absolute unit number of @ev, read relative to the entry's newest unit. */
static int64_t
usertable_ev_unit(const struct usertable *t, const struct usertable_entry *e,
                  struct usertable_event ev)
{
    int64_t nu = window_bucket_of(e->newest_ms, t->sc[e->scope].unit_ms);

    return nu - (int64_t)(uint32_t)((uint32_t)nu - ev.t);
}

/* Params and construction. */

static int64_t
usertable_gcd(int64_t a, int64_t b)
{
    while (b) {
        int64_t r = a % b;
        a = b;
        b = r;
    }
    return a;
}

static int
usertable_scope_init(struct usertable_scope_info *sc, const struct usertable_series *series,
                     size_t n)
{
    int64_t unit = 0;

    if (n > USERTABLE_SERIES_MAX)
        return -EINVAL;
    sc->span_ms = 0;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned)series[i].metric >= WINDOW_METRIC__MAX ||
            !window_ms_valid(series[i].window_ms))
            return -EINVAL;
        sc->bucket_ms[i] = window_bucket_ms(series[i].window_ms);
        unit = usertable_gcd(sc->bucket_ms[i], unit);
        if (WINDOW_SLOTS * sc->bucket_ms[i] > sc->span_ms)
            sc->span_ms = WINDOW_SLOTS * sc->bucket_ms[i];
        sc->used[series[i].metric] = true;
    }
    sc->unit_ms = unit ? unit : 1;
    sc->span_units = (uint32_t)(sc->span_ms / sc->unit_ms);
    for (unsigned m = 0; m < WINDOW_METRIC__MAX; m++) {
        if (window_metric_is_distinct((enum window_metric)m))
            continue;
        if (m == WINDOW_MESSAGES || m == WINDOW_RECIPIENTS || sc->used[m])
            sc->totmask = (uint8_t)(sc->totmask | 1u << m);
    }
    return 0;
}

struct usertable *
usertable_new(const struct usertable_params *p)
{
    struct usertable *t;

    t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->p = *p;
    t->cap = p->cap ? p->cap : USERTABLE_CAP_DEFAULT;
    if (t->cap >= USERTABLE_NIL)
        goto fail;
    for (unsigned s = 0; s < SCOPE__MAX; s++)
        if (usertable_scope_init(&t->sc[s], p->series[s], p->nseries[s]) < 0)
            goto fail;
    t->nbuckets = USERTABLE_BUCKETS_MIN;
    t->buckets = malloc(t->nbuckets * sizeof(*t->buckets));
    if (!t->buckets)
        goto fail;
    memset(t->buckets, 0xff, t->nbuckets * sizeof(*t->buckets));
    t->lru_head = t->lru_tail = USERTABLE_NIL;
    return t;
fail:
    usertable_free(t);
    return NULL;
}

/* Counter storage. */

static void
usertable_counters_clear(const struct usertable *t, struct usertable_entry *e)
{
    if (e->dense) {
        void **w = e->store;
        const struct usertable_series *series = t->p.series[e->scope];

        for (size_t i = 0; i < t->p.nseries[e->scope]; i++) {
            if (window_metric_is_distinct(series[i].metric))
                window_distinct_free(w[i]);
            else
                window_free(w[i]);
        }
    }
    free(e->store);
    e->store = NULL;
    e->dense = 0;
    e->nev = 0;
    e->ext_cap = 0;
}

static void
usertable_entry_free(const struct usertable *t, struct usertable_entry *e)
{
    if (!e)
        return;
    usertable_counters_clear(t, e);
    free(e);
}

void
usertable_free(struct usertable *t)
{
    if (!t)
        return;
    for (uint32_t i = 0; i < t->nslots; i++)
        usertable_entry_free(t, t->slots[i]);
    free(t->slots);
    free(t->gens);
    free(t->buckets);
    free(t);
}

/* Sparse events. */

static void
usertable_sparse_drop(struct usertable_entry *e, size_t i, size_t k)
{
    for (size_t j = i; j + k < e->nev; j++)
        *usertable_ev(e, j) = usertable_ev_get(e, j + k);
    e->nev = (uint8_t)(e->nev - k);
    if (e->nev <= e->nin && e->store) {
        free(e->store);
        e->store = NULL;
        e->ext_cap = 0;
    }
}

static int
usertable_sparse_push(struct usertable_entry *e, struct usertable_event ev)
{
    if (e->nev >= USERTABLE_SPARSE_MAX)
        return -ENOSPC;
    if (e->nev >= e->nin + e->ext_cap) {
        size_t cap = e->ext_cap ? (size_t)e->ext_cap * 2 + 1 : 3;
        void *p;

        if (cap > (size_t)(USERTABLE_SPARSE_MAX - e->nin))
            cap = (size_t)(USERTABLE_SPARSE_MAX - e->nin);
        p = realloc(e->store, cap * sizeof(ev));
        if (!p)
            return -ENOMEM;
        e->store = p;
        e->ext_cap = (uint8_t)cap;
    }
    *usertable_ev(e, e->nev++) = ev;
    return 0;
}

/* Drop the events that count in no series at the entry's newest time. */
static void
usertable_sparse_purge(const struct usertable *t, struct usertable_entry *e)
{
    const struct usertable_scope_info *sc = &t->sc[e->scope];
    uint32_t nu = (uint32_t)window_bucket_of(e->newest_ms, sc->unit_ms);
    size_t k = 0;

    while (k < e->nev && (uint32_t)(nu - usertable_ev_get(e, k).t) >= sc->span_units)
        k++;
    if (k)
        usertable_sparse_drop(e, 0, k);
}

/*
 * Merge into an event of the same unit and metric, or for a distinct metric drop the older
 * sighting of the same fragment. Returns true when @ev was absorbed.
 */
static bool
usertable_sparse_merge(struct usertable_entry *e, struct usertable_event ev, bool distinct)
{
    if (distinct) {
        for (size_t i = 0; i < e->nev; i++) {
            if (usertable_ev_get(e, i).mv == ev.mv) {
                usertable_sparse_drop(e, i, 1);
                return false;
            }
        }
        return false;
    }
    for (size_t i = e->nev; i-- > 0;) {
        struct usertable_event *p = usertable_ev(e, i);
        uint32_t msgs, rcpts;

        if (p->t != ev.t)
            break;
        if (usertable_ev_code(*p) == usertable_ev_code(ev) &&
            usertable_ev_value(*p) + usertable_ev_value(ev) <= USERTABLE_EV_MAX) {
            p->mv += usertable_ev_value(ev);
            return true;
        }
        /* A message and its recipients share one event: 8 bytes per message saved. */
        if (usertable_ev_code(ev) > WINDOW_RECIPIENTS)
            continue;
        if (usertable_ev_code(*p) > WINDOW_RECIPIENTS && usertable_ev_code(*p) != USERTABLE_EV_PAIR)
            continue;
        msgs = usertable_ev_amount(*p, WINDOW_MESSAGES) + usertable_ev_amount(ev, WINDOW_MESSAGES);
        rcpts =
            usertable_ev_amount(*p, WINDOW_RECIPIENTS) + usertable_ev_amount(ev, WINDOW_RECIPIENTS);
        if (msgs <= USERTABLE_PAIR_MMAX && rcpts <= USERTABLE_PAIR_RMAX) {
            p->mv = USERTABLE_EV_PAIR << USERTABLE_EV_BITS | msgs << USERTABLE_PAIR_RBITS | rcpts;
            return true;
        }
    }
    return false;
}

/* Dense rings. */

static void
usertable_dense_add(struct usertable *t, struct usertable_entry *e, enum window_metric m,
                    int64_t ts_ms, uint32_t v)
{
    const struct usertable_series *series = t->p.series[e->scope];
    void **w = e->store;

    for (size_t i = 0; i < t->p.nseries[e->scope]; i++) {
        if (series[i].metric != m)
            continue;
        if (!window_metric_is_distinct(m))
            window_add(w[i], ts_ms, v);
        else if (window_distinct_add_frag(w[i], ts_ms, v) < 0)
            t->nomem++;
    }
}

static int
usertable_dense_alloc(const struct usertable *t, struct usertable_entry *e, void ***ret)
{
    size_t n = t->p.nseries[e->scope];
    const struct usertable_series *series = t->p.series[e->scope];
    void **w = calloc(n ? n : 1, sizeof(*w));

    if (!w)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (window_metric_is_distinct(series[i].metric))
            w[i] = window_distinct_new(series[i].window_ms);
        else
            w[i] = window_new(series[i].window_ms);
        if (!w[i])
            goto fail;
    }
    *ret = w;
    return 0;
fail:
    for (size_t i = 0; i < n; i++) {
        if (window_metric_is_distinct(series[i].metric))
            window_distinct_free(w[i]);
        else
            window_free(w[i]);
    }
    free(w);
    return -ENOMEM;
}

/* Replay the sparse events into dense rings; on failure the entry stays sparse. */
static int
usertable_promote(struct usertable *t, struct usertable_entry *e)
{
    int64_t unit = t->sc[e->scope].unit_ms, ts[USERTABLE_SPARSE_MAX];
    struct usertable_event ev[USERTABLE_SPARSE_MAX];
    size_t n = e->nev;
    void **w;
    int r;

    r = usertable_dense_alloc(t, e, &w);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        ev[i] = usertable_ev_get(e, i);
        ts[i] = usertable_ev_unit(t, e, ev[i]) * unit;
    }
    usertable_counters_clear(t, e);
    e->store = w;
    e->dense = 1;
    for (size_t i = 0; i < n; i++) {
        unsigned code = usertable_ev_code(ev[i]);

        if (code != USERTABLE_EV_PAIR) {
            usertable_dense_add(t, e, (enum window_metric)code, ts[i], usertable_ev_value(ev[i]));
            continue;
        }
        usertable_dense_add(t, e, WINDOW_MESSAGES, ts[i],
                            usertable_ev_amount(ev[i], WINDOW_MESSAGES));
        usertable_dense_add(t, e, WINDOW_RECIPIENTS, ts[i],
                            usertable_ev_amount(ev[i], WINDOW_RECIPIENTS));
    }
    return 0;
}

/*
 * Record one event (@v an amount, or a fragment for a distinct metric) at @ts_ms, clamped
 * to the entry's clock. @total: also add to the lifetime total (not when replaying a
 * snapshot).
 */
static void
usertable_record(struct usertable *t, struct usertable_entry *e, enum window_metric m,
                 int64_t ts_ms, uint32_t v, bool total)
{
    const struct usertable_scope_info *sc = &t->sc[e->scope];
    bool distinct = window_metric_is_distinct(m);
    struct usertable_event ev;
    int r;

    if ((unsigned)m >= WINDOW_METRIC__MAX)
        return;
    if (ts_ms < e->newest_ms)
        ts_ms = e->newest_ms;
    if (total && usertable_tot_idx(e, m) >= 0) {
        uint64_t *p = &e->tail[usertable_tot_idx(e, m)];
        *p = (*p > UINT64_MAX - v) ? UINT64_MAX : *p + v;
    }
    if ((uint64_t)ts_ms - (uint64_t)e->newest_ms >= (uint64_t)sc->span_ms) /* ts_ms >= newest */
        usertable_counters_clear(t, e);
    e->newest_ms = ts_ms;
    if (!sc->used[m])
        return;
    if (e->dense) {
        usertable_dense_add(t, e, m, ts_ms, v);
        return;
    }
    usertable_sparse_purge(t, e);
    if (v <= USERTABLE_EV_MAX) {
        ev.t = (uint32_t)window_bucket_of(ts_ms, sc->unit_ms);
        ev.mv = (uint32_t)m << USERTABLE_EV_BITS | v;
        if (usertable_sparse_merge(e, ev, distinct))
            return;
        r = usertable_sparse_push(e, ev);
        if (r == 0)
            return;
        if (r == -ENOMEM) {
            t->nomem++;
            return;
        }
    }
    if (usertable_promote(t, e) < 0) {
        t->nomem++;
        return;
    }
    usertable_dense_add(t, e, m, ts_ms, v);
}

void
usertable_add(struct usertable *t, struct usertable_entry *e, enum window_metric m, int64_t ts_ms,
              uint32_t n)
{
    if ((unsigned)m >= WINDOW_METRIC__MAX || window_metric_is_distinct(m))
        return;
    usertable_record(t, e, m, ts_ms, n, true);
}

void
usertable_add_distinct(struct usertable *t, struct usertable_entry *e, enum window_metric m,
                       int64_t ts_ms, uint64_t hash)
{
    if (!window_metric_is_distinct(m))
        return;
    usertable_record(t, e, m, ts_ms, window_distinct_frag(hash), false);
}

uint64_t
usertable_sum(const struct usertable *t, const struct usertable_entry *e, size_t idx,
              int64_t now_ms)
{
    const struct usertable_scope_info *sc = &t->sc[e->scope];
    const struct usertable_series *s;
    int64_t nb, k;
    uint64_t sum = 0;

    if (idx >= t->p.nseries[e->scope])
        return 0;
    s = &t->p.series[e->scope][idx];
    if (now_ms < e->newest_ms)
        now_ms = e->newest_ms;
    if (e->dense) {
        void *const *w = e->store;

        if (window_metric_is_distinct(s->metric))
            return window_distinct_count(w[idx], now_ms);
        return window_sum(w[idx], now_ms);
    }
    nb = window_bucket_of(now_ms, sc->bucket_ms[idx]);
    k = sc->bucket_ms[idx] / sc->unit_ms;
    for (size_t i = 0; i < e->nev; i++) {
        struct usertable_event ev = usertable_ev_get(e, i);

        uint32_t v = window_metric_is_distinct(s->metric)
                         ? usertable_ev_code(ev) == (unsigned)s->metric
                         : usertable_ev_amount(ev, s->metric);

        if (v && nb - window_bucket_of(usertable_ev_unit(t, e, ev), k) <= WINDOW_BUCKETS)
            sum += v;
    }
    return sum;
}

/* Index and LRU. */

static uint64_t
usertable_hash(const struct usertable *t, unsigned scope, const char *key, size_t len)
{
    return siphash(key, len, t->p.key) ^ ((uint64_t)(scope + 1) * UINT64_C(0x9e3779b97f4a7c15));
}

static const char *
usertable_key(const struct usertable_entry *e)
{
    return (const char *)e + usertable_key_off(e->totmask);
}

static void
usertable_lru_unlink(struct usertable *t, struct usertable_entry *e)
{
    if (e->prev != USERTABLE_NIL)
        t->slots[e->prev]->next = e->next;
    else
        t->lru_head = e->next;
    if (e->next != USERTABLE_NIL)
        t->slots[e->next]->prev = e->prev;
    else
        t->lru_tail = e->prev;
}

static void
usertable_lru_push(struct usertable *t, struct usertable_entry *e)
{
    e->prev = USERTABLE_NIL;
    e->next = t->lru_head;
    if (t->lru_head != USERTABLE_NIL)
        t->slots[t->lru_head]->prev = e->slot;
    else
        t->lru_tail = e->slot;
    t->lru_head = e->slot;
}

static uint32_t *
usertable_bucket(const struct usertable *t, const struct usertable_entry *e)
{
    uint64_t h = usertable_hash(t, e->scope, usertable_key(e), e->keylen);

    return &t->buckets[h & (t->nbuckets - 1)];
}

static void
usertable_hash_unlink(struct usertable *t, struct usertable_entry *e)
{
    uint32_t *p = usertable_bucket(t, e);

    while (*p != e->slot)
        p = &t->slots[*p]->hnext;
    *p = e->hnext;
}

static void
usertable_hash_grow(struct usertable *t)
{
    uint32_t n = t->nbuckets * 2, *b;

    if (n == 0 || n > (UINT32_C(1) << 31))
        return;
    b = malloc(n * sizeof(*b));
    if (!b)
        return; /* longer chains, still correct */
    memset(b, 0xff, n * sizeof(*b));
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
    for (uint32_t i = 0; i < t->nslots; i++) {
        struct usertable_entry *e = t->slots[i];
        uint32_t *head;

        if (!e)
            continue;
        head = usertable_bucket(t, e);
        e->hnext = *head;
        *head = e->slot;
    }
}

static int
usertable_slots_grow(struct usertable *t)
{
    /* +25%: realloc of a large block is an mremap, and doubling would waste up to half */
    uint32_t n = t->slots_cap ? t->slots_cap + t->slots_cap / 4 : USERTABLE_SLOTS_MIN;
    struct usertable_entry **s;
    uint32_t *g;

    if (n > t->cap || n < t->slots_cap)
        n = t->cap;
    s = realloc(t->slots, n * sizeof(*s));
    if (!s)
        return -ENOMEM;
    t->slots = s;
    g = realloc(t->gens, n * sizeof(*g));
    if (!g)
        return -ENOMEM;
    t->gens = g;
    t->slots_cap = n;
    return 0;
}

static void
usertable_evict(struct usertable *t, struct usertable_entry *e)
{
    usertable_lru_unlink(t, e);
    usertable_hash_unlink(t, e);
    t->slots[e->slot] = NULL;
    if (++t->gens[e->slot] == 0)
        t->gens[e->slot] = 1;
    usertable_entry_free(t, e);
    t->count--;
}

static struct usertable_entry *
usertable_entry_alloc(const struct usertable *t, unsigned scope, const char *key, size_t len,
                      int64_t now_ms)
{
    size_t key_off = usertable_key_off(t->sc[scope].totmask);
    size_t ev_off = (key_off + len + 1 + 3) & ~(size_t)3;
    size_t nin = t->p.nseries[scope] ? USERTABLE_INLINE_MIN : 0;
    size_t size = ev_off + nin * sizeof(struct usertable_event);
    struct usertable_entry *e;

    /* Fill the malloc chunk: the slack holds events for free. */
    size = ((size + USERTABLE_MALLOC_HDR + 15) & ~(size_t)15) - USERTABLE_MALLOC_HDR;
    if (t->p.nseries[scope])
        nin = (size - ev_off) / sizeof(struct usertable_event);
    if (nin > USERTABLE_SPARSE_MAX)
        nin = USERTABLE_SPARSE_MAX;
    e = calloc(1, size);
    if (!e)
        return NULL;
    e->newest_ms = now_ms;
    e->scope = (uint8_t)scope;
    e->keylen = (uint16_t)len;
    e->nin = (uint8_t)nin;
    e->totmask = t->sc[scope].totmask;
    memcpy((char *)e + key_off, key, len);
    return e;
}

static struct usertable_entry *
usertable_find(const struct usertable *t, unsigned scope, const char *key, size_t len, uint64_t h)
{
    for (uint32_t i = t->buckets[h & (t->nbuckets - 1)]; i != USERTABLE_NIL;) {
        struct usertable_entry *e = t->slots[i];

        if (e->scope == scope && e->keylen == len && memcmp(usertable_key(e), key, len) == 0)
            return e;
        i = e->hnext;
    }
    return NULL;
}

/* Add a new identity; the caller checked that it is absent. */
static int
usertable_create(struct usertable *t, unsigned scope, const char *key, size_t len, int64_t now_ms,
                 uint64_t h, struct usertable_entry **ret)
{
    struct usertable_entry *e;
    uint32_t slot, *head;

    if (t->count < t->cap && t->nslots == t->slots_cap && usertable_slots_grow(t) < 0)
        return -ENOMEM;
    e = usertable_entry_alloc(t, scope, key, len, now_ms);
    if (!e)
        return -ENOMEM;
    if (t->count == t->cap) {
        slot = t->lru_tail;
        usertable_evict(t, t->slots[slot]);
        t->evictions++;
    } else {
        slot = t->nslots++;
        t->gens[slot] = 1;
    }
    e->slot = slot;
    t->slots[slot] = e;
    t->count++;
    usertable_lru_push(t, e);
    if (t->count > USERTABLE_LOAD_MAX * (size_t)t->nbuckets) {
        usertable_hash_grow(t); /* relinks e too */
    } else {
        head = &t->buckets[h & (t->nbuckets - 1)];
        e->hnext = *head;
        *head = slot;
    }
    *ret = e;
    return 0;
}

int
usertable_get(struct usertable *t, enum usertable_scope scope, const char *key, size_t len,
              int64_t now_ms, bool create, struct usertable_entry **ret)
{
    struct usertable_entry *e;
    uint64_t h;
    int r;

    if ((unsigned)scope >= SCOPE__MAX)
        return -EINVAL;
    if (len > USERTABLE_KEY_MAX)
        return -E2BIG;
    h = usertable_hash(t, scope, key, len);
    e = usertable_find(t, scope, key, len, h);
    if (e) {
        usertable_lru_unlink(t, e);
        usertable_lru_push(t, e);
        if (now_ms > e->newest_ms)
            e->newest_ms = now_ms;
        *ret = e;
        return 1;
    }
    if (!create)
        return 0;
    r = usertable_create(t, scope, key, len, now_ms, h, &e);
    if (r < 0)
        return r;
    *ret = e;
    return 1;
}

/* Accessors. */

enum usertable_scope
usertable_entry_scope(const struct usertable_entry *e)
{
    return (enum usertable_scope)e->scope;
}

const char *
usertable_entry_key(const struct usertable_entry *e)
{
    return usertable_key(e);
}

uint64_t
usertable_entry_total(const struct usertable_entry *e, enum window_metric m)
{
    int i = usertable_tot_idx(e, m);

    return i < 0 ? 0 : e->tail[i];
}

int64_t
usertable_entry_last_ms(const struct usertable_entry *e)
{
    return e->newest_ms;
}

struct usertable_policy *
usertable_entry_policy(struct usertable_entry *e)
{
    return &e->policy;
}

bool
usertable_entry_is_dense(const struct usertable_entry *e)
{
    return e->dense;
}

struct usertable_ref
usertable_ref(const struct usertable *t, const struct usertable_entry *e)
{
    return (struct usertable_ref){ .slot = e->slot, .gen = t->gens[e->slot] };
}

struct usertable_entry *
usertable_deref(struct usertable *t, struct usertable_ref ref)
{
    if (ref.slot >= t->nslots || ref.gen == 0 || t->gens[ref.slot] != ref.gen)
        return NULL;
    return t->slots[ref.slot];
}

size_t
usertable_count(const struct usertable *t)
{
    return t->count;
}

uint64_t
usertable_evictions(const struct usertable *t)
{
    return t->evictions;
}

uint64_t
usertable_nomem(const struct usertable *t)
{
    return t->nomem;
}

bool
usertable_is_full(const struct usertable *t)
{
    return t->count >= t->cap;
}

const struct usertable_params *
usertable_params(const struct usertable *t)
{
    return &t->p;
}

struct usertable_entry *
usertable_next(struct usertable *t, size_t *pos)
{
    while (*pos < t->nslots) {
        struct usertable_entry *e = t->slots[(*pos)++];

        if (e)
            return e;
    }
    return NULL;
}

/* Snapshot writing: a buffer in front of the callback, with a running CRC-32. */

struct usertable_writer {
    usertable_write_fn write;
    void *ctx;
    unsigned char *buf;
    size_t len;
    uLong crc;
    int err;
};

static void
usertable_w_flush(struct usertable_writer *w)
{
    int r;

    if (w->err || !w->len)
        return;
    w->crc = crc32(w->crc, w->buf, (uInt)w->len);
    r = w->write(w->ctx, w->buf, w->len);
    if (r < 0)
        w->err = r;
    w->len = 0;
}

static void
usertable_w_put(struct usertable_writer *w, const void *p, size_t n)
{
    const unsigned char *s = p;

    while (n && !w->err) {
        size_t k = USERTABLE_WBUF - w->len;

        if (k > n)
            k = n;
        memcpy(w->buf + w->len, s, k);
        w->len += k;
        s += k;
        n -= k;
        if (w->len == USERTABLE_WBUF)
            usertable_w_flush(w);
    }
}

static void
usertable_w_u64(struct usertable_writer *w, uint64_t v, size_t n)
{
    unsigned char b[8];

    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    usertable_w_put(w, b, n);
}

static void
usertable_save_entry(const struct usertable *t, const struct usertable_entry *e,
                     struct usertable_writer *w)
{
    const struct usertable_series *series = t->p.series[e->scope];
    int64_t unit = t->sc[e->scope].unit_ms;

    usertable_w_u64(w, e->scope, 1);
    usertable_w_u64(w, e->keylen, 2);
    usertable_w_put(w, usertable_key(e), e->keylen);
    usertable_w_u64(w, (uint64_t)e->newest_ms, 8);
    usertable_w_u64(w, e->policy.tripped, 4);
    usertable_w_u64(w, (uint64_t)e->policy.quiet_until_ms, 8);
    usertable_w_u64(w, (uint64_t)usertable_popcount(e->totmask), 1);
    for (unsigned m = 0; m < WINDOW_METRIC__MAX; m++) {
        if (usertable_tot_idx(e, (enum window_metric)m) < 0)
            continue;
        usertable_w_u64(w, m, 1);
        usertable_w_u64(w, usertable_entry_total(e, (enum window_metric)m), 8);
    }
    usertable_w_u64(w, e->dense, 1);
    if (!e->dense) {
        size_t n = e->nev;

        for (size_t i = 0; i < e->nev; i++)
            n += usertable_ev_code(usertable_ev_get(e, i)) == USERTABLE_EV_PAIR;
        usertable_w_u64(w, n, 1);
        for (size_t i = 0; i < e->nev; i++) {
            struct usertable_event ev = usertable_ev_get(e, i);
            uint64_t ts = (uint64_t)(usertable_ev_unit(t, e, ev) * unit);
            unsigned code = usertable_ev_code(ev);

            usertable_w_u64(w, ts, 8);
            if (code != USERTABLE_EV_PAIR) {
                usertable_w_u64(w, code, 1);
                usertable_w_u64(w, usertable_ev_value(ev), 4);
                continue;
            }
            usertable_w_u64(w, WINDOW_MESSAGES, 1);
            usertable_w_u64(w, usertable_ev_amount(ev, WINDOW_MESSAGES), 4);
            usertable_w_u64(w, ts, 8);
            usertable_w_u64(w, WINDOW_RECIPIENTS, 1);
            usertable_w_u64(w, usertable_ev_amount(ev, WINDOW_RECIPIENTS), 4);
        }
        return;
    }
    for (size_t i = 0; i < t->p.nseries[e->scope]; i++) {
        void *const *win = e->store;
        int64_t head, sat;

        if (window_metric_is_distinct(series[i].metric)) {
            struct window_distinct_item items[WINDOW_DISTINCT_MAX];
            size_t n = window_distinct_export(win[i], &head, &sat, items);

            usertable_w_u64(w, (uint64_t)head, 8);
            usertable_w_u64(w, (uint64_t)sat, 8);
            usertable_w_u64(w, n, 1);
            for (size_t k = 0; k < n; k++) {
                usertable_w_u64(w, items[k].frag, 4);
                usertable_w_u64(w, items[k].bucket, 4);
            }
        } else {
            uint32_t counts[WINDOW_SLOTS];

            window_export(win[i], &head, counts);
            usertable_w_u64(w, (uint64_t)head, 8);
            for (size_t k = 0; k < WINDOW_SLOTS; k++)
                usertable_w_u64(w, counts[k], 4);
        }
    }
}

int
usertable_save(const struct usertable *t, usertable_write_fn write, void *ctx)
{
    struct usertable_writer w = { .write = write, .ctx = ctx };
    unsigned char crc[4];

    w.buf = malloc(USERTABLE_WBUF);
    if (!w.buf)
        return -ENOMEM;
    w.crc = crc32(0L, Z_NULL, 0);
    usertable_w_put(&w, USERTABLE_MAGIC, 4);
    usertable_w_u64(&w, USERTABLE_VERSION, 4);
    for (unsigned s = 0; s < SCOPE__MAX; s++) {
        usertable_w_u64(&w, t->p.nseries[s], 1);
        for (size_t i = 0; i < t->p.nseries[s]; i++) {
            usertable_w_u64(&w, (uint64_t)t->p.series[s][i].metric, 1);
            usertable_w_u64(&w, (uint64_t)t->p.series[s][i].window_ms, 8);
        }
    }
    usertable_w_u64(&w, t->count, 4);
    for (uint32_t i = t->lru_tail; i != USERTABLE_NIL; i = t->slots[i]->prev)
        usertable_save_entry(t, t->slots[i], &w);
    usertable_w_flush(&w);
    for (size_t i = 0; i < 4; i++)
        crc[i] = (unsigned char)(w.crc >> (8 * i));
    if (!w.err)
        w.err = write(ctx, crc, sizeof(crc));
    if (w.err > 0)
        w.err = 0;
    free(w.buf);
    return w.err;
}

/* Snapshot reading: every read is bounds checked; a short read marks the reader bad. */

struct usertable_reader {
    const unsigned char *p, *end;
    bool bad;
};

static uint64_t
usertable_r_u64(struct usertable_reader *r, size_t n)
{
    uint64_t v = 0;

    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)r->p[i] << (8 * i);
    r->p += n;
    return v;
}

static int64_t
usertable_r_time(struct usertable_reader *r)
{
    int64_t v = (int64_t)usertable_r_u64(r, 8);

    if (v != INT64_MIN && (v > USERTABLE_TIME_MAX || v < -USERTABLE_TIME_MAX))
        r->bad = true;
    return v;
}

/* Saved series of each scope, mapped to the loading table's series (-1: dropped). */
struct usertable_load_map {
    size_t n[SCOPE__MAX];
    enum window_metric metric[SCOPE__MAX][USERTABLE_SERIES_MAX];
    int to[SCOPE__MAX][USERTABLE_SERIES_MAX];
};

static void
usertable_load_series(const struct usertable *t, struct usertable_reader *r,
                      struct usertable_load_map *map)
{
    for (unsigned s = 0; s < SCOPE__MAX; s++) {
        bool taken[USERTABLE_SERIES_MAX] = { false };

        map->n[s] = (size_t)usertable_r_u64(r, 1);
        if (map->n[s] > USERTABLE_SERIES_MAX) {
            r->bad = true;
            return;
        }
        for (size_t i = 0; i < map->n[s]; i++) {
            uint64_t m = usertable_r_u64(r, 1);
            int64_t win = (int64_t)usertable_r_u64(r, 8);

            if (m >= WINDOW_METRIC__MAX || !window_ms_valid(win)) {
                r->bad = true;
                return;
            }
            map->metric[s][i] = (enum window_metric)m;
            map->to[s][i] = -1;
            for (size_t j = 0; j < t->p.nseries[s]; j++) {
                if (!taken[j] && t->p.series[s][j].metric == (enum window_metric)m &&
                    t->p.series[s][j].window_ms == win) {
                    taken[j] = true;
                    map->to[s][i] = (int)j;
                    break;
                }
            }
        }
    }
}

static int
usertable_load_sparse(struct usertable *t, struct usertable_entry *e, struct usertable_reader *r,
                      int64_t newest)
{
    size_t n = (size_t)usertable_r_u64(r, 1);
    int64_t prev = INT64_MIN;

    if (n > 2 * USERTABLE_SPARSE_MAX) /* pairs are saved as two events */
        return -EBADMSG;
    for (size_t i = 0; i < n && !r->bad; i++) {
        int64_t ts = usertable_r_time(r);
        uint64_t m = usertable_r_u64(r, 1);
        uint32_t v = (uint32_t)usertable_r_u64(r, 4);

        if (r->bad || ts == INT64_MIN || m >= WINDOW_METRIC__MAX || ts < prev || ts > newest ||
            v > USERTABLE_EV_MAX)
            return -EBADMSG;
        prev = ts;
        /* ts <= newest here: the unsigned difference cannot overflow, a signed one can */
        if ((uint64_t)newest - (uint64_t)ts >= (uint64_t)t->sc[e->scope].span_ms)
            continue; /* counts nowhere; also keeps unit numbers within 2^31 of newest */
        if (e->nev == 0 && !e->dense)
            e->newest_ms = ts;
        usertable_record(t, e, (enum window_metric)m, ts, v, false);
    }
    return r->bad ? -EBADMSG : 0;
}

static int
usertable_load_dense(struct usertable *t, struct usertable_entry *e, struct usertable_reader *r,
                     const struct usertable_load_map *map)
{
    unsigned s = e->scope;
    void **w = NULL;
    int ret;

    if (t->p.nseries[s]) {
        ret = usertable_dense_alloc(t, e, &w);
        if (ret < 0)
            return ret;
        usertable_counters_clear(t, e);
        e->store = w;
        e->dense = 1;
    }
    for (size_t i = 0; i < map->n[s]; i++) {
        int to = map->to[s][i];
        int64_t head = usertable_r_time(r);

        if (window_metric_is_distinct(map->metric[s][i])) {
            struct window_distinct_item items[WINDOW_DISTINCT_MAX];
            int64_t sat = usertable_r_time(r);
            size_t n = (size_t)usertable_r_u64(r, 1);

            if (n > WINDOW_DISTINCT_MAX)
                return -EBADMSG;
            for (size_t k = 0; k < n; k++) {
                items[k].frag = (uint32_t)usertable_r_u64(r, 4);
                items[k].bucket = (uint32_t)usertable_r_u64(r, 4);
            }
            if (r->bad)
                return -EBADMSG;
            if (to >= 0) {
                ret = window_distinct_import(w[to], head, sat, items, n);
                if (ret < 0)
                    return ret;
            }
        } else {
            uint32_t counts[WINDOW_SLOTS];

            for (size_t k = 0; k < WINDOW_SLOTS; k++)
                counts[k] = (uint32_t)usertable_r_u64(r, 4);
            if (r->bad)
                return -EBADMSG;
            if (to >= 0)
                window_import(w[to], head, counts);
        }
    }
    return r->bad ? -EBADMSG : 0;
}

static int
usertable_load_entry(struct usertable *t, struct usertable_reader *r,
                     const struct usertable_load_map *map)
{
    struct usertable_entry *e;
    uint64_t scope = usertable_r_u64(r, 1), ntot, kind, h;
    size_t len = (size_t)usertable_r_u64(r, 2);
    const char *key = (const char *)r->p;
    struct usertable_policy pol = { 0 };
    uint64_t tot[WINDOW_METRIC__MAX] = { 0 };
    int64_t newest;
    int ret;

    if (r->bad || scope >= SCOPE__MAX || len > USERTABLE_KEY_MAX || (size_t)(r->end - r->p) < len)
        return -EBADMSG;
    r->p += len;
    newest = usertable_r_time(r);
    pol.tripped = (uint32_t)usertable_r_u64(r, 4);
    pol.quiet_until_ms = (int64_t)usertable_r_u64(r, 8);
    ntot = usertable_r_u64(r, 1);
    if (r->bad || ntot > WINDOW_METRIC__MAX || newest == INT64_MIN)
        return -EBADMSG;
    for (size_t i = 0; i < ntot; i++) {
        uint64_t m = usertable_r_u64(r, 1);

        if (m >= WINDOW_METRIC__MAX)
            return -EBADMSG;
        tot[m] = usertable_r_u64(r, 8);
    }
    kind = usertable_r_u64(r, 1);
    if (r->bad || kind > 1)
        return -EBADMSG;
    h = usertable_hash(t, (unsigned)scope, key, len);
    if (usertable_find(t, (unsigned)scope, key, len, h))
        return -EBADMSG; /* the same identity twice */
    ret = usertable_create(t, (unsigned)scope, key, len, newest, h, &e);
    if (ret < 0)
        return ret;
    e->policy = pol;
    for (unsigned m = 0; m < WINDOW_METRIC__MAX; m++) {
        int i = usertable_tot_idx(e, (enum window_metric)m);

        if (i >= 0)
            e->tail[i] = tot[m];
    }
    ret = kind ? usertable_load_dense(t, e, r, map) : usertable_load_sparse(t, e, r, newest);
    e->newest_ms = newest;
    return ret;
}

static void
usertable_clear(struct usertable *t)
{
    for (uint32_t i = 0; i < t->nslots; i++) {
        if (!t->slots[i])
            continue;
        usertable_entry_free(t, t->slots[i]);
        t->slots[i] = NULL;
        if (++t->gens[i] == 0)
            t->gens[i] = 1;
    }
    t->nslots = 0;
    t->count = 0;
    t->lru_head = t->lru_tail = USERTABLE_NIL;
    memset(t->buckets, 0xff, t->nbuckets * sizeof(*t->buckets));
}

int
usertable_load(struct usertable *t, const void *buf, size_t len)
{
    struct usertable_reader r = { .p = buf, .end = (const unsigned char *)buf + len };
    struct usertable_load_map map;
    uint64_t version, n;
    uLong crc;
    int ret = 0;

    if (t->count)
        return -EINVAL;
    if (len < 12 || memcmp(buf, USERTABLE_MAGIC, 4) != 0)
        return -EBADMSG;
    r.p += 4;
    version = usertable_r_u64(&r, 4);
    if (version != USERTABLE_VERSION)
        return -EINVAL;
    r.end -= 4;
    crc = crc32(crc32(0L, Z_NULL, 0), buf, (uInt)(len - 4));
    if (crc != (uLong)(r.end[0] | (uint32_t)r.end[1] << 8 | (uint32_t)r.end[2] << 16 |
                       (uint32_t)r.end[3] << 24))
        return -EBADMSG;
    usertable_load_series(t, &r, &map);
    n = usertable_r_u64(&r, 4);
    for (uint64_t i = 0; i < n && !r.bad && ret == 0; i++)
        ret = usertable_load_entry(t, &r, &map);
    if (ret == 0 && (r.bad || r.p != r.end))
        ret = -EBADMSG;
    if (ret < 0)
        usertable_clear(t);
    return ret;
}
