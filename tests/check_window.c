/*
 * check_window.c - the ring and the distinct set: names, the one-bucket error bound at the
 * window's edge, clamping of time that goes backwards, saturation, distinct counts.
 */
#include <errno.h>
#include <stdlib.h>

#include <check.h>

#include "testrun.h"
#include "util.h"
#include "window.h"

static const struct window_name_case {
    const char *name;
    enum window_metric m;
    bool distinct;
} window_names[] = {
    { "messages", WINDOW_MESSAGES, false }, { "recipients", WINDOW_RECIPIENTS, false },
    { "failed", WINDOW_FAILED, false },     { "deferred", WINDOW_DEFERRED, false },
    { "domains", WINDOW_DOMAINS, true },    { "ips", WINDOW_IPS, true },
    { "mismatch", WINDOW_MISMATCH, false }, { "authfail", WINDOW_AUTHFAIL, false },
};

START_TEST(test_window_metric_names)
{
    const struct window_name_case *c = &window_names[_i];
    enum window_metric m;

    ck_assert_str_eq(window_metric_name(c->m), c->name);
    ck_assert_int_eq(window_metric_parse(c->name, &m), 0);
    ck_assert_msg(m == c->m, "%s", c->name);
    ck_assert_msg(window_metric_is_distinct(c->m) == c->distinct, "%s", c->name);
}
END_TEST

START_TEST(test_window_metric_parse_bad)
{
    static const char *const bad[] = { "", "Messages", "message", "ips ", "domain" };
    enum window_metric m = WINDOW_AUTHFAIL;

    for (size_t i = 0; i < N_ELEMS(bad); i++)
        ck_assert_msg(window_metric_parse(bad[i], &m) == -EINVAL, "'%s'", bad[i]);
    ck_assert(m == WINDOW_AUTHFAIL);
    ck_assert_ptr_null(window_metric_name(WINDOW_METRIC__MAX));
}
END_TEST

START_TEST(test_window_new_bounds)
{
    static const struct {
        int64_t window_ms;
        bool ok;
    } cases[] = {
        { 0, false },
        { -60000, false },
        { WINDOW_BUCKETS - 1, false },
        { WINDOW_BUCKETS, true },
        { 3600000, true },
        { WINDOW_MS_MAX, true },
        { WINDOW_MS_MAX + 1, false },
    };

    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        struct window *w = window_new(cases[i].window_ms);
        struct window_distinct *d = window_distinct_new(cases[i].window_ms);

        ck_assert_msg((w != NULL) == cases[i].ok, "window_ms %lld", (long long)cases[i].window_ms);
        ck_assert_msg((d != NULL) == cases[i].ok, "window_ms %lld", (long long)cases[i].window_ms);
        window_free(w);
        window_distinct_free(d);
    }
    ck_assert_int_eq(window_bucket_ms(600000), 10000);
    ck_assert_int_eq(window_bucket_ms(1000), 17);
    ck_assert_int_eq(window_bucket_of(-1, 1000), -1);
    ck_assert_int_eq(window_bucket_of(-1000, 1000), -1);
    ck_assert_int_eq(window_bucket_of(-1001, 1000), -2);
    ck_assert_int_eq(window_bucket_of(999, 1000), 0);
}
END_TEST

/*
 * The contract, exhaustively over one bucket's phases: an event at t counts at now when
 * now - t < W and never when now - t >= 61 * B (= W + B when W is a multiple of 60 ms,
 * W + B + up to 59 ms otherwise). Windows of whole and fractional buckets,
 * and times on both sides of the epoch.
 */
static const struct window_edge_case {
    const char *name;
    int64_t window_ms;
    int64_t base_ms;
} window_edges[] = {
    { "600ms", 600, 0 },
    { "1000ms (B=17, not a multiple of 60)", 1000, 0 },
    { "600ms before the epoch", 600, -100000 },
    { "6000ms at log-time scale", 6000, 1700000000000 },
};

START_TEST(test_window_sum_edges)
{
    const struct window_edge_case *c = &window_edges[_i];
    int64_t b = window_bucket_ms(c->window_ms);

    for (int64_t t = c->base_ms; t < c->base_ms + 2 * b; t++) {
        struct window *w = window_new(c->window_ms);

        ck_assert_ptr_nonnull(w);
        window_add(w, t, 1);
        for (int64_t d = 0; d < c->window_ms + 2 * b; d++) {
            uint64_t s = window_sum(w, t + d);

            if (d < c->window_ms)
                ck_assert_msg(s == 1, "%s: t=%lld d=%lld missing", c->name, (long long)t,
                              (long long)d);
            else if (d >= WINDOW_SLOTS * b)
                ck_assert_msg(s == 0, "%s: t=%lld d=%lld still counted", c->name, (long long)t,
                              (long long)d);
        }
        ck_assert(window_is_empty(w, t + WINDOW_SLOTS * b));
        window_free(w);
    }
}
END_TEST

/* One event every ms: the sum is never below the exact count and over it by at most B. */
START_TEST(test_window_sum_error_bound)
{
    const int64_t wms = 60000, b = 1000;
    struct window *w = window_new(wms);

    for (int64_t t = 0; t < 5 * wms; t += 7) {
        int64_t first = t - wms + 1, exact;
        uint64_t s;

        window_add(w, t, 1);
        /* events at multiples of 7 in (t - W, t] */
        first = first < 0 ? 0 : (first + 6) / 7 * 7;
        exact = (t - first) / 7 + 1;
        s = window_sum(w, t);
        ck_assert_msg(s >= (uint64_t)exact, "t=%lld sum %llu < exact %lld", (long long)t,
                      (unsigned long long)s, (long long)exact);
        ck_assert_msg(s <= (uint64_t)exact + (uint64_t)(b / 7 + 1), "t=%lld sum %llu exact %lld",
                      (long long)t, (unsigned long long)s, (long long)exact);
    }
    window_free(w);
}
END_TEST

START_TEST(test_window_clamp_backwards)
{
    struct window *w = window_new(60000);

    window_add(w, 100000, 1);
    /* 50 s older, a bucket the ring already holds: counted in the newest bucket instead */
    window_add(w, 50000, 1);
    ck_assert_uint_eq(window_sum(w, 100000), 2);
    /* in its own bucket it would be gone at 111 s; in the newest it lives until 161 s */
    ck_assert_uint_eq(window_sum(w, 120000), 2);
    ck_assert_uint_eq(window_sum(w, 159999), 2);
    ck_assert_uint_eq(window_sum(w, 161000), 0);
    /* a sum asked behind the head reads at the head */
    ck_assert_uint_eq(window_sum(w, 0), 2);
    window_free(w);
}
END_TEST

START_TEST(test_window_clamp_never_revives)
{
    struct window *w = window_new(60000);

    window_add(w, 0, 5);
    window_add(w, 200000, 1); /* the ring moves past the old count, dropping it */
    window_add(w, 0, 1);      /* late line from the old bucket */
    ck_assert_uint_eq(window_sum(w, 200000), 2);
    ck_assert_uint_eq(window_sum(w, 0), 2);
    window_free(w);
}
END_TEST

START_TEST(test_window_saturates)
{
    struct window *w = window_new(60000);

    window_add(w, 0, UINT32_MAX - 1);
    window_add(w, 1, 5);
    ck_assert_uint_eq(window_sum(w, 1), UINT32_MAX);
    window_add(w, 1000, UINT32_MAX);
    window_add(w, 2000, UINT32_MAX);
    ck_assert_uint_eq(window_sum(w, 2000), 3 * (uint64_t)UINT32_MAX);
    window_free(w);
}
END_TEST

START_TEST(test_window_export_import)
{
    struct window *w = window_new(60000), *v = window_new(60000);
    uint32_t counts[WINDOW_SLOTS];
    int64_t head;

    window_export(w, &head, counts);
    ck_assert(head == INT64_MIN);
    for (int64_t t = 0; t < 120000; t += 900)
        window_add(w, t, (uint32_t)(t / 900));
    window_export(w, &head, counts);
    window_import(v, head, counts);
    for (int64_t t = 119000; t < 200000; t += 500)
        ck_assert_uint_eq(window_sum(v, t), window_sum(w, t));
    window_free(w);
    window_free(v);
}
END_TEST

START_TEST(test_window_distinct_counts)
{
    struct window_distinct *d = window_distinct_new(600000); /* 10 min, B = 10 s */

    ck_assert_uint_eq(window_distinct_count(d, 0), 0);
    for (uint64_t v = 0; v < 10; v++)
        for (int rep = 0; rep < 3; rep++)
            ck_assert_int_eq(window_distinct_add(d, (int64_t)(v * 1000), v * 0x9e3779b97f4a7c15),
                             0);
    ck_assert_uint_eq(window_distinct_count(d, 9000), 10);
    /* the same fragment is the same value: hashes differing only above 28 bits collide */
    ck_assert_int_eq(window_distinct_add(d, 9000, UINT64_C(1) << 40 | 12345), 0);
    ck_assert_int_eq(window_distinct_add(d, 9000, UINT64_C(1) << 41 | 12345), 0);
    ck_assert_uint_eq(window_distinct_count(d, 9000), 11);
    /* a value seen again stays alive from its last sighting */
    ck_assert_int_eq(window_distinct_add(d, 300000, 0), 0);
    ck_assert_uint_eq(window_distinct_count(d, 610000 + 9000), 1);
    ck_assert_uint_eq(window_distinct_count(d, 300000 + 610000), 0);
    ck_assert(window_distinct_is_empty(d, 300000 + 610000));
    window_distinct_free(d);
}
END_TEST

START_TEST(test_window_distinct_saturates)
{
    struct window_distinct *d = window_distinct_new(60000);
    struct window_distinct_item items[WINDOW_DISTINCT_MAX];
    struct window_distinct *e = window_distinct_new(60000);
    int64_t head, sat;
    size_t n;

    for (uint64_t v = 1; v <= 300; v++)
        ck_assert_int_eq(window_distinct_add(d, 5000, v), 0);
    ck_assert_uint_eq(window_distinct_count(d, 5000), WINDOW_DISTINCT_MAX);
    ck_assert_uint_eq(window_distinct_count(d, 64999), WINDOW_DISTINCT_MAX);
    n = window_distinct_export(d, &head, &sat, items);
    ck_assert_uint_eq(n, WINDOW_DISTINCT_MAX);
    ck_assert_int_eq(window_distinct_import(e, head, sat, items, n), 0);
    ck_assert_uint_eq(window_distinct_count(e, 5000), WINDOW_DISTINCT_MAX);
    ck_assert_int_eq(window_distinct_import(e, head, sat, items, n + 1), -EINVAL);
    /* the overflowed bucket leaves the window: the set empties and counts exactly again */
    ck_assert_uint_eq(window_distinct_count(d, 66000), 0);
    for (uint64_t v = 1; v <= 7; v++)
        ck_assert_int_eq(window_distinct_add(d, 70000, v), 0);
    ck_assert_uint_eq(window_distinct_count(d, 70000), 7);
    window_distinct_free(d);
    window_distinct_free(e);
}
END_TEST

START_TEST(test_window_distinct_edges)
{
    const int64_t wms = 600, b = 10;

    for (int64_t t = 0; t < 2 * b; t++) {
        struct window_distinct *d = window_distinct_new(wms);

        ck_assert_int_eq(window_distinct_add(d, t, 42), 0);
        window_distinct_add(d, t - 5, 43); /* clamped into t's bucket */
        for (int64_t dt = 0; dt < wms + 2 * b; dt++) {
            uint32_t c = window_distinct_count(d, t + dt);

            if (dt < wms)
                ck_assert_msg(c == 2, "t=%lld dt=%lld", (long long)t, (long long)dt);
            else if (dt >= wms + b)
                ck_assert_msg(c == 0, "t=%lld dt=%lld", (long long)t, (long long)dt);
        }
        window_distinct_free(d);
    }
}
END_TEST

static Suite *
window_suite(void)
{
    Suite *s = suite_create("window");
    TCase *tc;

    tc = tcase_create("names");
    tcase_add_loop_test(tc, test_window_metric_names, 0, N_ELEMS(window_names));
    tcase_add_test(tc, test_window_metric_parse_bad);
    tcase_add_test(tc, test_window_new_bounds);
    suite_add_tcase(s, tc);

    tc = tcase_create("ring");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_window_sum_edges, 0, N_ELEMS(window_edges));
    tcase_add_test(tc, test_window_sum_error_bound);
    tcase_add_test(tc, test_window_clamp_backwards);
    tcase_add_test(tc, test_window_clamp_never_revives);
    tcase_add_test(tc, test_window_saturates);
    tcase_add_test(tc, test_window_export_import);
    suite_add_tcase(s, tc);

    tc = tcase_create("distinct");
    tcase_add_test(tc, test_window_distinct_counts);
    tcase_add_test(tc, test_window_distinct_saturates);
    tcase_add_test(tc, test_window_distinct_edges);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(window_suite());
}
