/*
 * check_usertable.c - the identity table: SipHash reference vectors, lookups and key
 * bounds, LRU eviction and the cap, stale references, sparse and dense counters against an
 * exact reference model on a random stream, demotion, snapshots and their corruption.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <zlib.h>

#include "siphash.h"
#include "testrun.h"
#include "usertable.h"
#include "util.h"

/* SipHash-2-4, key 00..0f, message 00..len-1: the 64 vectors of the reference code. */
static const uint64_t usertable_sip_vectors[64] = {
    0x726fdb47dd0e0e31ULL, 0x74f839c593dc67fdULL, 0x0d6c8009d9a94f5aULL, 0x85676696d7fb7e2dULL,
    0xcf2794e0277187b7ULL, 0x18765564cd99a68dULL, 0xcbc9466e58fee3ceULL, 0xab0200f58b01d137ULL,
    0x93f5f5799a932462ULL, 0x9e0082df0ba9e4b0ULL, 0x7a5dbbc594ddb9f3ULL, 0xf4b32f46226bada7ULL,
    0x751e8fbc860ee5fbULL, 0x14ea5627c0843d90ULL, 0xf723ca908e7af2eeULL, 0xa129ca6149be45e5ULL,
    0x3f2acc7f57c29bdbULL, 0x699ae9f52cbe4794ULL, 0x4bc1b3f0968dd39cULL, 0xbb6dc91da77961bdULL,
    0xbed65cf21aa2ee98ULL, 0xd0f2cbb02e3b67c7ULL, 0x93536795e3a33e88ULL, 0xa80c038ccd5ccec8ULL,
    0xb8ad50c6f649af94ULL, 0xbce192de8a85b8eaULL, 0x17d835b85bbb15f3ULL, 0x2f2e6163076bcfadULL,
    0xde4daaaca71dc9a5ULL, 0xa6a2506687956571ULL, 0xad87a3535c49ef28ULL, 0x32d892fad841c342ULL,
    0x7127512f72f27cceULL, 0xa7f32346f95978e3ULL, 0x12e0b01abb051238ULL, 0x15e034d40fa197aeULL,
    0x314dffbe0815a3b4ULL, 0x027990f029623981ULL, 0xcadcd4e59ef40c4dULL, 0x9abfd8766a33735cULL,
    0x0e3ea96b5304a7d0ULL, 0xad0c42d6fc585992ULL, 0x187306c89bc215a9ULL, 0xd4a60abcf3792b95ULL,
    0xf935451de4f21df2ULL, 0xa9538f0419755787ULL, 0xdb9acddff56ca510ULL, 0xd06c98cd5c0975ebULL,
    0xe612a3cb9ecba951ULL, 0xc766e62cfcadaf96ULL, 0xee64435a9752fe72ULL, 0xa192d576b245165aULL,
    0x0a8787bf8ecb74b2ULL, 0x81b3e73d20b49b6fULL, 0x7fa8220ba3b2eceaULL, 0x245731c13ca42499ULL,
    0xb78dbfaf3a8d83bdULL, 0xea1ad565322a1a0bULL, 0x60e61c23a3795013ULL, 0x6606d7e446282b93ULL,
    0x6ca4ecb15c5f91e1ULL, 0x9f626da15c9625f3ULL, 0xe51b38608ef25f57ULL, 0x958a324ceb064572ULL,
};

START_TEST(test_usertable_siphash_vectors)
{
    uint8_t key[SIPHASH_KEY_LEN], msg[64];

    for (uint8_t i = 0; i < SIPHASH_KEY_LEN; i++)
        key[i] = i;
    for (uint8_t i = 0; i < 64; i++)
        msg[i] = i;
    ck_assert_msg(siphash(msg, (size_t)_i, key) == usertable_sip_vectors[_i], "len %d", _i);
}
END_TEST

/* The rule set of DESIGN.md's example, plus a few more series to exercise every path. */
static struct usertable_params
usertable_test_params(uint32_t cap)
{
    struct usertable_params p = { .cap = cap };

    for (uint8_t i = 0; i < SIPHASH_KEY_LEN; i++)
        p.key[i] = (uint8_t)(0xa0 + i);
    p.series[SCOPE_MAILBOX][0] = (struct usertable_series){ WINDOW_RECIPIENTS, 600000 };
    p.series[SCOPE_MAILBOX][1] = (struct usertable_series){ WINDOW_MESSAGES, 3600000 };
    p.series[SCOPE_MAILBOX][2] = (struct usertable_series){ WINDOW_DOMAINS, 600000 };
    p.series[SCOPE_MAILBOX][3] = (struct usertable_series){ WINDOW_IPS, 3600000 };
    p.series[SCOPE_MAILBOX][4] = (struct usertable_series){ WINDOW_FAILED, 300000 };
    p.series[SCOPE_MAILBOX][5] = (struct usertable_series){ WINDOW_RECIPIENTS, 3600000 };
    p.nseries[SCOPE_MAILBOX] = 6;
    p.series[SCOPE_ACCOUNT][0] = (struct usertable_series){ WINDOW_MESSAGES, 3600000 };
    p.nseries[SCOPE_ACCOUNT] = 1;
    p.series[SCOPE_SCRIPT][0] = (struct usertable_series){ WINDOW_MESSAGES, 300000 };
    p.nseries[SCOPE_SCRIPT] = 1;
    return p;
}

static struct usertable_entry *
usertable_test_get(struct usertable *t, enum usertable_scope s, const char *key, int64_t now)
{
    struct usertable_entry *e = NULL;

    ck_assert_int_eq(usertable_get(t, s, key, strlen(key), now, true, &e), 1);
    ck_assert_ptr_nonnull(e);
    return e;
}

START_TEST(test_usertable_scope_names)
{
    enum usertable_scope s;

    ck_assert_str_eq(usertable_scope_name(SCOPE_MAILBOX), "mailbox");
    ck_assert_str_eq(usertable_scope_name(SCOPE_ACCOUNT), "account");
    ck_assert_str_eq(usertable_scope_name(SCOPE_SCRIPT), "script");
    ck_assert_int_eq(usertable_scope_parse("script", &s), 0);
    ck_assert(s == SCOPE_SCRIPT);
    ck_assert_int_eq(usertable_scope_parse("user", &s), -EINVAL);
}
END_TEST

START_TEST(test_usertable_new_rejects_bad_params)
{
    struct usertable_params p = usertable_test_params(0);
    struct usertable *t;

    p.series[SCOPE_ACCOUNT][0].window_ms = 10; /* under one ms per bucket */
    ck_assert_ptr_null(usertable_new(&p));
    p = usertable_test_params(0);
    p.series[SCOPE_ACCOUNT][0].metric = WINDOW_METRIC__MAX;
    ck_assert_ptr_null(usertable_new(&p));
    p = usertable_test_params(0);
    p.nseries[SCOPE_SCRIPT] = USERTABLE_SERIES_MAX + 1;
    ck_assert_ptr_null(usertable_new(&p));
    p = usertable_test_params(0);
    t = usertable_new(&p);
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(usertable_count(t), 0);
    ck_assert(!usertable_is_full(t));
    usertable_free(t);
    usertable_free(NULL);
}
END_TEST

START_TEST(test_usertable_get_keys)
{
    struct usertable_params p = usertable_test_params(0);
    struct usertable *t = usertable_new(&p);
    struct usertable_entry *e, *f;
    char big[USERTABLE_KEY_MAX + 2];

    ck_assert_int_eq(usertable_get(t, SCOPE_MAILBOX, "a@b.c", 5, 0, false, &e), 0);
    e = usertable_test_get(t, SCOPE_MAILBOX, "a@b.c", 1000);
    /* the same key in another scope is another identity */
    f = usertable_test_get(t, SCOPE_ACCOUNT, "a@b.c", 1000);
    ck_assert_ptr_ne(e, f);
    ck_assert_int_eq(usertable_get(t, SCOPE_MAILBOX, "a@b.c", 5, 2000, false, &f), 1);
    ck_assert_ptr_eq(e, f);
    ck_assert_str_eq(usertable_entry_key(e), "a@b.c");
    ck_assert(usertable_entry_scope(e) == SCOPE_MAILBOX);
    ck_assert_int_eq(usertable_entry_last_ms(e), 2000);
    /* a key is bytes: a prefix is another identity */
    ck_assert_int_eq(usertable_get(t, SCOPE_MAILBOX, "a@b.c", 4, 0, false, &f), 0);

    memset(big, 'x', sizeof(big));
    big[USERTABLE_KEY_MAX + 1] = '\0';
    ck_assert_int_eq(usertable_get(t, SCOPE_SCRIPT, big, USERTABLE_KEY_MAX + 1, 0, true, &f),
                     -E2BIG);
    ck_assert_int_eq(usertable_get(t, SCOPE_SCRIPT, big, USERTABLE_KEY_MAX, 0, true, &f), 1);
    ck_assert_uint_eq(strlen(usertable_entry_key(f)), USERTABLE_KEY_MAX);
    ck_assert_int_eq(usertable_get(t, SCOPE__MAX, "x", 1, 0, true, &f), -EINVAL);
    ck_assert_uint_eq(usertable_count(t), 3);
    usertable_free(t);
}
END_TEST

START_TEST(test_usertable_lru_eviction)
{
    struct usertable_params p = usertable_test_params(3);
    struct usertable *t = usertable_new(&p);
    struct usertable_entry *e;
    struct usertable_ref ra, rb, rd;

    ra = usertable_ref(t, usertable_test_get(t, SCOPE_ACCOUNT, "a", 1));
    rb = usertable_ref(t, usertable_test_get(t, SCOPE_ACCOUNT, "b", 2));
    (void)usertable_test_get(t, SCOPE_ACCOUNT, "c", 3);
    ck_assert(usertable_is_full(t));
    (void)usertable_test_get(t, SCOPE_ACCOUNT, "a", 4); /* a is now the most recent */
    rd = usertable_ref(t, usertable_test_get(t, SCOPE_ACCOUNT, "d", 5));
    ck_assert_uint_eq(usertable_count(t), 3);
    ck_assert_uint_eq(usertable_evictions(t), 1);
    ck_assert_int_eq(usertable_get(t, SCOPE_ACCOUNT, "b", 1, 6, false, &e), 0);
    /* b's slot went to d: the old reference must not reach d */
    ck_assert_uint_eq(rb.slot, rd.slot);
    ck_assert_ptr_null(usertable_deref(t, rb));
    e = usertable_deref(t, ra);
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(usertable_entry_key(e), "a");
    ck_assert_str_eq(usertable_entry_key(usertable_deref(t, rd)), "d");
    /* next victims in order: c, then a, then d */
    (void)usertable_test_get(t, SCOPE_ACCOUNT, "e", 7);
    ck_assert_int_eq(usertable_get(t, SCOPE_ACCOUNT, "c", 1, 8, false, &e), 0);
    (void)usertable_test_get(t, SCOPE_ACCOUNT, "f", 9);
    ck_assert_ptr_null(usertable_deref(t, ra));
    ck_assert_ptr_nonnull(usertable_deref(t, rd));
    ck_assert_uint_eq(usertable_evictions(t), 3);
    ck_assert_ptr_null(usertable_deref(t, (struct usertable_ref){ 0, 0 }));
    ck_assert_ptr_null(usertable_deref(t, (struct usertable_ref){ 1000, 1 }));
    usertable_free(t);
}
END_TEST

START_TEST(test_usertable_cap_respected)
{
    struct usertable_params p = usertable_test_params(1000);
    struct usertable *t = usertable_new(&p);
    size_t pos = 0, n = 0;
    char key[32];

    for (int i = 0; i < 20000; i++) {
        struct usertable_entry *e;

        (void)snprintf(key, sizeof(key), "user%d@example.com", i);
        e = usertable_test_get(t, SCOPE_MAILBOX, key, i);
        usertable_add(t, e, WINDOW_MESSAGES, i, 1);
        ck_assert_uint_le(usertable_count(t), 1000);
    }
    ck_assert_uint_eq(usertable_evictions(t), 19000);
    /* iteration sees exactly the 1000 most recent */
    while ((usertable_next(t, &pos)) != NULL)
        n++;
    ck_assert_uint_eq(n, 1000);
    for (int i = 19000; i < 20000; i++) {
        struct usertable_entry *e;

        (void)snprintf(key, sizeof(key), "user%d@example.com", i);
        ck_assert_int_eq(usertable_get(t, SCOPE_MAILBOX, key, strlen(key), 0, false, &e), 1);
    }
    usertable_free(t);
}
END_TEST

/* Exact reference: every event kept with its clamped time; sums by the window's rule. */
struct usertable_ref_event {
    int64_t t;
    enum window_metric m;
    uint32_t v; /* amount, or fragment */
};

struct usertable_model {
    int64_t clock;
    struct usertable_ref_event *ev;
    size_t n, cap;
    uint64_t tot[WINDOW_METRIC__MAX];
};

static void
usertable_model_add(struct usertable_model *r, int64_t t, enum window_metric m, uint32_t v)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->ev = realloc(r->ev, r->cap * sizeof(*r->ev));
        ck_assert_ptr_nonnull(r->ev);
    }
    if (t > r->clock)
        r->clock = t;
    r->ev[r->n++] = (struct usertable_ref_event){ r->clock, m, v };
    if (!window_metric_is_distinct(m))
        r->tot[m] += v;
}

static uint64_t
usertable_model_sum(const struct usertable_model *r, const struct usertable_series *s, int64_t now)
{
    int64_t b = window_bucket_ms(s->window_ms), nb;
    uint32_t seen[4096];
    uint64_t sum = 0;
    size_t nseen = 0;

    if (now < r->clock)
        now = r->clock;
    nb = window_bucket_of(now, b);
    for (size_t i = 0; i < r->n; i++) {
        const struct usertable_ref_event *ev = &r->ev[i];
        bool dup = false;

        if (ev->m != s->metric || nb - window_bucket_of(ev->t, b) > WINDOW_BUCKETS)
            continue;
        if (!window_metric_is_distinct(s->metric)) {
            sum += ev->v;
            continue;
        }
        for (size_t k = 0; k < nseen && !dup; k++)
            dup = seen[k] == ev->v;
        if (!dup && nseen < N_ELEMS(seen))
            seen[nseen++] = ev->v;
    }
    if (window_metric_is_distinct(s->metric))
        return nseen > WINDOW_DISTINCT_MAX ? WINDOW_DISTINCT_MAX : nseen;
    return sum;
}

static uint64_t
usertable_rand(uint64_t *s)
{
    /* xorshift64*: deterministic, good enough to pick events */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

#define USERTABLE_MODEL_IDS 40

static void
usertable_check_all(struct usertable *t, struct usertable_model *model, char keys[][32],
                    int64_t now)
{
    const struct usertable_params *p = usertable_params(t);

    for (size_t id = 0; id < USERTABLE_MODEL_IDS; id++) {
        struct usertable_entry *e;

        if (!model[id].n)
            continue;
        ck_assert_int_eq(
            usertable_get(t, SCOPE_MAILBOX, keys[id], strlen(keys[id]), INT64_MIN, false, &e), 1);
        for (size_t s = 0; s < p->nseries[SCOPE_MAILBOX]; s++) {
            uint64_t want = usertable_model_sum(&model[id], &p->series[SCOPE_MAILBOX][s], now);
            uint64_t got = usertable_sum(t, e, s, now);

            ck_assert_msg(got == want, "id %zu series %zu now %lld: got %llu want %llu (%s)", id, s,
                          (long long)now, (unsigned long long)got, (unsigned long long)want,
                          usertable_entry_is_dense(e) ? "dense" : "sparse");
        }
        ck_assert_uint_eq(usertable_entry_total(e, WINDOW_MESSAGES),
                          model[id].tot[WINDOW_MESSAGES]);
        ck_assert_uint_eq(usertable_entry_total(e, WINDOW_RECIPIENTS),
                          model[id].tot[WINDOW_RECIPIENTS]);
        ck_assert_uint_eq(usertable_entry_total(e, WINDOW_FAILED), model[id].tot[WINDOW_FAILED]);
    }
}

/*
 * A random stream: skewed identities (a few busy ones go dense, most stay sparse), time
 * mostly forward with late lines up to 40 s old and idle gaps long enough to empty every
 * window. After every event, every series of every identity equals the exact model.
 */
static struct usertable *
usertable_random_stream(uint64_t seed, size_t nevents, struct usertable_model *model,
                        char keys[][32], bool *saw_dense, bool *saw_sparse)
{
    struct usertable_params p = usertable_test_params(0);
    struct usertable *t = usertable_new(&p);
    int64_t now = 1700000000000;

    for (size_t id = 0; id < USERTABLE_MODEL_IDS; id++)
        (void)snprintf(keys[id], 32, "box%zu@example-domain.com", id);
    for (size_t i = 0; i < nevents; i++) {
        uint64_t r = usertable_rand(&seed);
        size_t id = (r & 1) ? r % 4 : r % USERTABLE_MODEL_IDS;
        int64_t ts;
        struct usertable_entry *e;
        enum window_metric m;
        uint32_t v;

        r = usertable_rand(&seed);
        now += (int64_t)(r % 20000);
        if (r % 997 == 0)
            now += 2 * 3600000; /* idle: every window empties, dense demotes */
        ts = now - ((r >> 20) % 8 == 0 ? (int64_t)((r >> 24) % 40000) : 0);
        e = usertable_test_get(t, SCOPE_MAILBOX, keys[id], ts);
        if (ts > model[id].clock)
            model[id].clock = ts;
        m = (enum window_metric)((r >> 32) % 5);
        switch (m) {
        case WINDOW_MESSAGES:
        case WINDOW_RECIPIENTS:
            v = (uint32_t)(1 + (r >> 40) % 5);
            if ((r >> 40) % 5000 == 0)
                v = 300000000; /* over the 28-bit sparse amount: promotes */
            usertable_add(t, e, m, ts, v);
            break;
        case WINDOW_FAILED:
            v = 1;
            usertable_add(t, e, m, ts, v);
            break;
        default:
            m = ((r >> 40) & 1) ? WINDOW_DOMAINS : WINDOW_IPS;
            v = (uint32_t)((r >> 44) % 120);
            usertable_add_distinct(t, e, m, ts, (uint64_t)v * UINT64_C(0x9e3779b97f4a7c15));
            v = window_distinct_frag((uint64_t)v * UINT64_C(0x9e3779b97f4a7c15));
            break;
        }
        usertable_model_add(&model[id], ts, m, v);
        if (usertable_entry_is_dense(e))
            *saw_dense = true;
        else if (model[id].n > 3)
            *saw_sparse = true;
        if (i % 7 == 0)
            usertable_check_all(t, model, keys, ts + (int64_t)((r >> 50) % 4000000));
    }
    return t;
}

static void
usertable_models_free(struct usertable_model *model)
{
    for (size_t id = 0; id < USERTABLE_MODEL_IDS; id++)
        free(model[id].ev);
}

START_TEST(test_usertable_sparse_dense_match_model)
{
    struct usertable_model model[USERTABLE_MODEL_IDS] = { 0 };
    char keys[USERTABLE_MODEL_IDS][32];
    bool dense = false, sparse = false;
    struct usertable *t;

    t = usertable_random_stream(0x5eed0000u + (uint64_t)_i, 6000, model, keys, &dense, &sparse);
    ck_assert_msg(dense, "no identity was promoted");
    ck_assert_msg(sparse, "no identity stayed sparse");
    ck_assert_uint_eq(usertable_nomem(t), 0);
    usertable_free(t);
    usertable_models_free(model);
}
END_TEST

START_TEST(test_usertable_clamp_and_demote)
{
    struct usertable_params p = usertable_test_params(0);
    struct usertable *t = usertable_new(&p);
    struct usertable_entry *e = usertable_test_get(t, SCOPE_MAILBOX, "x@y.z", 1000000);

    /* a late line lands at the identity's newest time, in every series */
    usertable_add(t, e, WINDOW_RECIPIENTS, 1000000, 1);
    usertable_add(t, e, WINDOW_RECIPIENTS, 400000, 1);
    ck_assert_uint_eq(usertable_sum(t, e, 0, 1000000), 2);
    ck_assert_uint_eq(usertable_sum(t, e, 0, 1000000 + 599999), 2);
    ck_assert_uint_eq(usertable_sum(t, e, 0, 1000000 + 610000), 0);
    /* busy: promoted */
    for (int i = 0; i < 100; i++) /* 10 s apart: one unit each, no merging */
        usertable_add(t, e, WINDOW_MESSAGES, 1000000 + i * 10000, 1);
    ck_assert(usertable_entry_is_dense(e));
    ck_assert_uint_eq(usertable_sum(t, e, 1, 1990000), 100);
    /* idle past every window: the next event frees the rings */
    usertable_add(t, e, WINDOW_MESSAGES, 1990000 + 3660000, 1);
    ck_assert(!usertable_entry_is_dense(e));
    ck_assert_uint_eq(usertable_sum(t, e, 1, 1990000 + 3660000), 1);
    ck_assert_uint_eq(usertable_entry_total(e, WINDOW_MESSAGES), 101);
    ck_assert_uint_eq(usertable_entry_total(e, WINDOW_RECIPIENTS), 2);
    ck_assert_uint_eq(usertable_entry_total(e, WINDOW_DOMAINS), 0);
    /* a metric no series of the scope counts is still in the totals when tracked */
    e = usertable_test_get(t, SCOPE_ACCOUNT, "acct", 0);
    usertable_add(t, e, WINDOW_RECIPIENTS, 0, 7);
    ck_assert_uint_eq(usertable_entry_total(e, WINDOW_RECIPIENTS), 7);
    ck_assert_uint_eq(usertable_sum(t, e, 0, 0), 0);
    ck_assert_uint_eq(usertable_sum(t, e, 5, 0), 0); /* no such series */
    usertable_free(t);
}
END_TEST

/* Snapshots. */

struct usertable_buf {
    unsigned char *p;
    size_t len, cap;
};

static int
usertable_buf_write(void *ctx, const void *p, size_t n)
{
    struct usertable_buf *b = ctx;

    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            return -ENOMEM;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

static void
usertable_assert_same(struct usertable *a, struct usertable *b, int64_t now)
{
    size_t pos = 0;
    struct usertable_entry *e, *f;

    ck_assert_uint_eq(usertable_count(a), usertable_count(b));
    while ((e = usertable_next(a, &pos)) != NULL) {
        const char *key = usertable_entry_key(e);
        enum usertable_scope s = usertable_entry_scope(e);

        ck_assert_int_eq(usertable_get(b, s, key, strlen(key), INT64_MIN, false, &f), 1);
        ck_assert_int_eq(usertable_entry_last_ms(e), usertable_entry_last_ms(f));
        ck_assert(usertable_entry_is_dense(e) == usertable_entry_is_dense(f));
        ck_assert_uint_eq(usertable_entry_policy(e)->tripped, usertable_entry_policy(f)->tripped);
        ck_assert_int_eq(usertable_entry_policy(e)->quiet_until_ms,
                         usertable_entry_policy(f)->quiet_until_ms);
        for (unsigned m = 0; m < WINDOW_METRIC__MAX; m++)
            ck_assert_uint_eq(usertable_entry_total(e, (enum window_metric)m),
                              usertable_entry_total(f, (enum window_metric)m));
        for (size_t i = 0; i < usertable_params(a)->nseries[s]; i++)
            for (int64_t dt = 0; dt < 4000000; dt += 250000)
                ck_assert_uint_eq(usertable_sum(a, e, i, now + dt),
                                  usertable_sum(b, f, i, now + dt));
    }
}

START_TEST(test_usertable_snapshot_round_trip)
{
    struct usertable_model model[USERTABLE_MODEL_IDS] = { 0 };
    char keys[USERTABLE_MODEL_IDS][32];
    bool dense = false, sparse = false;
    struct usertable_params p = usertable_test_params(0);
    struct usertable *t, *u;
    struct usertable_buf b = { 0 };
    struct usertable_entry *e;

    t = usertable_random_stream(0xabcdef, 3000, model, keys, &dense, &sparse);
    e = usertable_test_get(t, SCOPE_SCRIPT, "cpaneluser:/home/cpaneluser/public_html/wp", 5);
    usertable_add(t, e, WINDOW_MESSAGES, 5, 3);
    usertable_entry_policy(e)->tripped = 5;
    usertable_entry_policy(e)->quiet_until_ms = 123456789;
    ck_assert_int_eq(usertable_save(t, usertable_buf_write, &b), 0);
    u = usertable_new(&p);
    ck_assert_int_eq(usertable_load(u, b.p, b.len), 0);
    usertable_assert_same(t, u, 1700000000000 + 3000 * 10000);
    /* only into an empty table */
    ck_assert_int_eq(usertable_load(u, b.p, b.len), -EINVAL);
    usertable_free(t);
    usertable_free(u);
    usertable_models_free(model);
    free(b.p);
}
END_TEST

START_TEST(test_usertable_snapshot_lru_and_params)
{
    struct usertable_params p = usertable_test_params(0), q;
    struct usertable *t = usertable_new(&p), *u;
    struct usertable_buf b = { 0 };
    struct usertable_entry *e;
    static const char *const keys[] = { "a@x", "b@x", "c@x", "d@x", "e@x" };

    for (size_t i = 0; i < N_ELEMS(keys); i++) {
        e = usertable_test_get(t, SCOPE_MAILBOX, keys[i], (int64_t)i * 1000);
        usertable_add(t, e, WINDOW_MESSAGES, (int64_t)i * 1000, 1);
        usertable_add(t, e, WINDOW_RECIPIENTS, (int64_t)i * 1000, 2);
    }
    for (int i = 0; i < 50; i++) /* make "e@x" dense */
        usertable_add_distinct(t, e, WINDOW_DOMAINS, 5000 + i, (uint64_t)i);
    ck_assert(usertable_entry_is_dense(e));
    ck_assert_int_eq(usertable_save(t, usertable_buf_write, &b), 0);

    /* a smaller cap keeps the most recently active */
    q = p;
    q.cap = 3;
    u = usertable_new(&q);
    ck_assert_int_eq(usertable_load(u, b.p, b.len), 0);
    ck_assert_uint_eq(usertable_count(u), 3);
    ck_assert_int_eq(usertable_get(u, SCOPE_MAILBOX, "b@x", 3, 0, false, &e), 0);
    ck_assert_int_eq(usertable_get(u, SCOPE_MAILBOX, "c@x", 3, 0, false, &e), 1);
    (void)usertable_test_get(u, SCOPE_MAILBOX, "f@x", 0); /* evicts d@x, the least recent */
    ck_assert_int_eq(usertable_get(u, SCOPE_MAILBOX, "d@x", 3, 0, false, &e), 0);
    ck_assert_int_eq(usertable_get(u, SCOPE_MAILBOX, "e@x", 3, 0, false, &e), 1);
    usertable_free(u);

    /* other series: kept ones carry over, dropped ones vanish, new ones start empty */
    q = p;
    q.series[SCOPE_MAILBOX][0] = (struct usertable_series){ WINDOW_FAILED, 60000 };
    u = usertable_new(&q);
    ck_assert_int_eq(usertable_load(u, b.p, b.len), 0);
    ck_assert_int_eq(usertable_get(u, SCOPE_MAILBOX, "e@x", 3, 0, false, &e), 1);
    ck_assert(usertable_entry_is_dense(e));
    ck_assert_uint_eq(usertable_sum(u, e, 0, 6000), 0);
    ck_assert_uint_eq(usertable_sum(u, e, 1, 6000), 1);
    ck_assert_uint_eq(usertable_sum(u, e, 2, 6000), 50);
    ck_assert_uint_eq(usertable_sum(u, e, 5, 6000), 2);
    ck_assert_int_eq(usertable_get(u, SCOPE_MAILBOX, "a@x", 3, 0, false, &e), 1);
    ck_assert_uint_eq(usertable_sum(u, e, 1, 6000), 1);
    ck_assert_uint_eq(usertable_sum(u, e, 5, 6000), 2);
    usertable_free(u);
    usertable_free(t);
    free(b.p);
}
END_TEST

static struct usertable_buf
usertable_small_snapshot(void)
{
    struct usertable_params p = usertable_test_params(0);
    struct usertable *t = usertable_new(&p);
    struct usertable_buf b = { 0 };
    struct usertable_entry *e;

    e = usertable_test_get(t, SCOPE_MAILBOX, "info@example.com", 1000);
    usertable_add(t, e, WINDOW_MESSAGES, 1000, 1);
    usertable_add_distinct(t, e, WINDOW_DOMAINS, 1000, 77);
    e = usertable_test_get(t, SCOPE_MAILBOX, "spam@example.com", 1000);
    for (int i = 0; i < 40; i++)
        usertable_add_distinct(t, e, WINDOW_DOMAINS, 1000 + i, (uint64_t)i);
    usertable_add(t, e, WINDOW_RECIPIENTS, 2000, 9);
    e = usertable_test_get(t, SCOPE_ACCOUNT, "cpaneluser", 2000);
    usertable_add(t, e, WINDOW_MESSAGES, 2000, 2);
    ck_assert_int_eq(usertable_save(t, usertable_buf_write, &b), 0);
    usertable_free(t);
    return b;
}

START_TEST(test_usertable_snapshot_corrupt)
{
    struct usertable_buf b = usertable_small_snapshot();
    struct usertable_params p = usertable_test_params(0);
    struct usertable *u = usertable_new(&p);

    for (size_t i = 0; i < b.len; i++) {
        for (unsigned x = 1; x < 256; x <<= 1) {
            int r;

            b.p[i] ^= (unsigned char)x;
            r = usertable_load(u, b.p, b.len);
            b.p[i] ^= (unsigned char)x;
            if (i >= 4 && i < 8)
                ck_assert_msg(r == -EINVAL, "byte %zu: version change gave %d", i, r);
            else
                ck_assert_msg(r == -EBADMSG, "byte %zu ^ %u: %d", i, x, r);
            ck_assert_uint_eq(usertable_count(u), 0);
        }
    }
    for (size_t len = 0; len < b.len; len++) {
        ck_assert_msg(usertable_load(u, b.p, len) == -EBADMSG, "truncated to %zu", len);
        ck_assert_uint_eq(usertable_count(u), 0);
    }
    ck_assert_int_eq(usertable_load(u, b.p, b.len), 0);
    ck_assert_uint_eq(usertable_count(u), 3);
    usertable_free(u);
    free(b.p);
}
END_TEST

/* Corrupt but with a valid CRC: the parser itself must hold (no crash, no leak). */
START_TEST(test_usertable_snapshot_corrupt_valid_crc)
{
    struct usertable_buf b = usertable_small_snapshot();
    struct usertable_params p = usertable_test_params(0);
    unsigned char *m = malloc(b.len);
    uint64_t seed = 0x1234;
    size_t ok = 0;

    for (int iter = 0; iter < 3000; iter++) {
        struct usertable *u = usertable_new(&p);
        size_t len = b.len, pos = 0;
        uLong crc;
        int r;

        memcpy(m, b.p, b.len);
        for (int k = 0; k < 1 + iter % 4; k++) {
            uint64_t x = usertable_rand(&seed);
            m[8 + x % (b.len - 12)] = (unsigned char)(x >> 32);
        }
        if (iter % 5 == 0)
            len = 12 + usertable_rand(&seed) % (b.len - 12);
        crc = crc32(crc32(0L, Z_NULL, 0), m, (uInt)(len - 4));
        for (size_t i = 0; i < 4; i++)
            m[len - 4 + i] = (unsigned char)(crc >> (8 * i));
        r = usertable_load(u, m, len);
        ck_assert_msg(r == 0 || r == -EBADMSG, "iteration %d: %d", iter, r);
        if (r < 0) {
            ck_assert_uint_eq(usertable_count(u), 0);
        } else {
            struct usertable_entry *e;

            ok++;
            while ((e = usertable_next(u, &pos)) != NULL)
                for (size_t i = 0; i < USERTABLE_SERIES_MAX; i++)
                    (void)usertable_sum(u, e, i, usertable_entry_last_ms(e));
        }
        usertable_free(u);
    }
    ck_assert_uint_gt(ok, 0); /* some mutations hit plain data, and those load */
    free(m);
    free(b.p);
}
END_TEST

static int
usertable_failing_write(void *ctx, const void *p, size_t n)
{
    (void)ctx;
    (void)p;
    (void)n;
    return -ENOSPC;
}

START_TEST(test_usertable_snapshot_write_error)
{
    struct usertable_params p = usertable_test_params(0);
    struct usertable *t = usertable_new(&p);

    (void)usertable_test_get(t, SCOPE_ACCOUNT, "cpaneluser", 0);
    ck_assert_int_eq(usertable_save(t, usertable_failing_write, NULL), -ENOSPC);
    usertable_free(t);
}
END_TEST

static Suite *
usertable_suite(void)
{
    Suite *s = suite_create("usertable");
    TCase *tc;

    tc = tcase_create("siphash");
    tcase_add_loop_test(tc, test_usertable_siphash_vectors, 0, 64);
    suite_add_tcase(s, tc);

    tc = tcase_create("index");
    tcase_add_test(tc, test_usertable_scope_names);
    tcase_add_test(tc, test_usertable_new_rejects_bad_params);
    tcase_add_test(tc, test_usertable_get_keys);
    tcase_add_test(tc, test_usertable_lru_eviction);
    tcase_add_test(tc, test_usertable_cap_respected);
    suite_add_tcase(s, tc);

    tc = tcase_create("counters");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_usertable_sparse_dense_match_model, 0, 4);
    tcase_add_test(tc, test_usertable_clamp_and_demote);
    suite_add_tcase(s, tc);

    tc = tcase_create("snapshot");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_usertable_snapshot_round_trip);
    tcase_add_test(tc, test_usertable_snapshot_lru_and_params);
    tcase_add_test(tc, test_usertable_snapshot_corrupt);
    tcase_add_test(tc, test_usertable_snapshot_corrupt_valid_crc);
    tcase_add_test(tc, test_usertable_snapshot_write_error);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(usertable_suite());
}
