/*
 * check_frozen.c - lib/frozen: Exim's time format, `exim -bP auto_thaw
 * timeout_frozen_after` read through a fake spawner, the arrival time in a message id, and
 * when a frozen message is due for a warning (80 % of the nearer of auto_thaw since the
 * freeze and timeout_frozen_after since the arrival).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <check.h>

#include "fake_spawner.h"
#include "frozen.h"
#include "testrun.h"
#include "util.h"

#define ID_T 1795456990000LL /* "1xVYNi": the seconds in the ids below */

START_TEST(test_exim_time)
{
    static const struct {
        const char *s;
        int64_t ms; /* -1: refused */
    } cases[] = {
        { "0s", 0 },
        { "10s", 10000 },
        { "3d", 3 * 86400000LL },
        { "1h30m", 5400000 },
        { "1w", 7 * 86400000LL },
        { "1w2d3h4m5s", 788645000LL },
        { "", -1 },
        { "10", -1 },
        { "1x", -1 },
        { "h", -1 },
        { "-1s", -1 },
        { "1h 30m", -1 },
        { "99999999999999w", -1 },
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        int64_t ms = -2;
        int r = frozen_parse_exim_time(cases[i].s, strlen(cases[i].s), &ms);
        if (cases[i].ms < 0) {
            ck_assert_msg(r == -EINVAL, "%s accepted", cases[i].s);
        } else {
            ck_assert_msg(r == 0, "%s refused", cases[i].s);
            ck_assert_int_eq(ms, cases[i].ms);
        }
    }
}
END_TEST

START_TEST(test_bp_output)
{
    struct frozen_limits l;
    static const char ok[] = "auto_thaw = 0s\ntimeout_frozen_after = 1w\n";
    static const char both[] = "auto_thaw = 10s\ntimeout_frozen_after = 3d\n";

    ck_assert_int_eq(frozen_parse_bp(ok, strlen(ok), &l), 0);
    ck_assert_int_eq(l.auto_thaw_ms, 0);
    ck_assert_int_eq(l.timeout_ms, 7 * 86400000LL);
    ck_assert_int_eq(frozen_parse_bp(both, strlen(both), &l), 0);
    ck_assert_int_eq(l.auto_thaw_ms, 10000);
    static const char *const bad[] = {
        "auto_thaw = 0s\n",                                       /* one missing */
        "auto_thaw = 0s\ntimeout_frozen_after = 1w\nother = 1\n", /* unknown */
        "auto_thaw = 0s\nauto_thaw = 1s\ntimeout_frozen_after = 1w\n",
        "auto_thaw=0s\ntimeout_frozen_after = 1w\n",
        "auto_thaw = soon\ntimeout_frozen_after = 1w\n",
        "Exim configuration error in line 3\n",
    };
    for (size_t i = 0; i < N_ELEMS(bad); i++)
        ck_assert_msg(frozen_parse_bp(bad[i], strlen(bad[i]), &l) == -EINVAL, "%s", bad[i]);
}
END_TEST

START_TEST(test_fate)
{
    struct frozen_limits l = { .auto_thaw_ms = 10000, .timeout_ms = 0 };
    struct frozen_fate f;

    ck_assert_int_eq(frozen_msgid_time("1xVYNi-0001Xt-01"), ID_T);
    ck_assert_int_eq(frozen_msgid_time("1xVYNi-000000001Xt-0001"), ID_T);
    ck_assert_int_eq(frozen_msgid_time("not-an-id"), -1);
    /* auto_thaw counts from the freeze */
    ck_assert_int_eq(frozen_fate(&l, "1xVYNi-0001Xt-01", ID_T + 60000, 1, &f), 0);
    ck_assert(f.thaw);
    ck_assert_int_eq(f.deadline_ms, ID_T + 70000);
    ck_assert_int_eq(f.warn_ms, ID_T + 68000);
    /* an unknown freeze time: the trip's */
    ck_assert_int_eq(frozen_fate(&l, "1xVYNi-0001Xt-01", 0, ID_T + 1000, &f), 0);
    ck_assert_int_eq(f.deadline_ms, ID_T + 11000);
    /* timeout_frozen_after counts from the arrival, and the nearer wins */
    l = (struct frozen_limits){ .auto_thaw_ms = 3600000, .timeout_ms = 1800000 };
    ck_assert_int_eq(frozen_fate(&l, "1xVYNi-0001Xt-01", ID_T + 600000, 0, &f), 0);
    ck_assert(!f.thaw);
    ck_assert_int_eq(f.deadline_ms, ID_T + 1800000);
    ck_assert_int_eq(f.warn_ms, ID_T + 1440000);
    l.timeout_ms = 7 * 86400000LL;
    ck_assert_int_eq(frozen_fate(&l, "1xVYNi-0001Xt-01", ID_T + 600000, 0, &f), 0);
    ck_assert(f.thaw);
    ck_assert_int_eq(f.deadline_ms, ID_T + 4200000);
    /* neither set */
    l = (struct frozen_limits){ 0, 0 };
    ck_assert_int_eq(frozen_fate(&l, "1xVYNi-0001Xt-01", ID_T, 0, &f), -ENOENT);
    ck_assert_int_eq(frozen_check_interval_ms(&l), 0);
    ck_assert_int_eq(frozen_nearer_ms(&l), 0);
    l.auto_thaw_ms = 10000;
    ck_assert_int_eq(frozen_nearer_ms(&l), 10000);
    ck_assert_int_eq(frozen_check_interval_ms(&l), 1000);
    l.timeout_ms = 7 * 86400000LL;
    ck_assert_int_eq(frozen_check_interval_ms(&l), 1000);
    ck_assert_int_eq(frozen_nearer_ms(&l), 10000);
    l.auto_thaw_ms = 0;
    ck_assert_int_eq(frozen_check_interval_ms(&l), 60000);
    ck_assert_int_eq(frozen_nearer_ms(&l), 7 * 86400000LL);
}
END_TEST

/* One identity's ids over time: warned once each, grouped within a tenth of the limit. */
START_TEST(test_select)
{
    const struct frozen_limits l = { .auto_thaw_ms = 10000, .timeout_ms = 0 };
    const char *ids[] = { "1xVYNi-0001Xt-01", "1xVYNi-0001Xt-02", "1xVYNi-0001Xt-03" };
    const int64_t at[] = { ID_T, ID_T + 500, ID_T + 3000 };
    struct frozen_warning w[3];
    size_t total = 99;
    int64_t until = 0;

    /* before the first mark (80 % of 10 s after the freeze): nothing */
    ck_assert_uint_eq(frozen_select(&l, ids, at, 3, 0, 0, ID_T + 7999, w, 3, &total, &until), 0);
    ck_assert_uint_eq(total, 0);
    /* the first mark: the first id, and the second (its mark within the next second) */
    ck_assert_uint_eq(frozen_select(&l, ids, at, 3, 0, 0, ID_T + 8000, w, 3, &total, &until), 2);
    ck_assert_uint_eq(total, 2);
    ck_assert_int_eq(until, ID_T + 9000);
    ck_assert_uint_eq(w[0].index, 0);
    ck_assert_int_eq(w[0].fate.deadline_ms, ID_T + 10000);
    ck_assert(w[0].fate.thaw);
    ck_assert_uint_eq(w[1].index, 1);
    /* the second's own mark passes: already warned */
    ck_assert_uint_eq(
        frozen_select(&l, ids, at, 3, 0, ID_T + 9000, ID_T + 9500, w, 3, &total, &until), 0);
    /* the third's mark: only it */
    ck_assert_uint_eq(
        frozen_select(&l, ids, at, 3, 0, ID_T + 9000, ID_T + 11000, w, 3, &total, &until), 1);
    ck_assert_uint_eq(w[0].index, 2);
    ck_assert_int_eq(until, ID_T + 12000);
    ck_assert_uint_eq(
        frozen_select(&l, ids, at, 3, 0, ID_T + 12000, ID_T + 20000, w, 3, &total, &until), 0);
    /* a cap on what is returned, the total still counted */
    ck_assert_uint_eq(frozen_select(&l, ids, at, 3, 0, 0, ID_T + 8000, w, 1, &total, &until), 1);
    ck_assert_uint_eq(total, 2);
    /* unknown freeze times (an older ledger): the trip's time instead */
    const int64_t unknown[] = { 0, 0, 0 };
    ck_assert_uint_eq(
        frozen_select(&l, ids, unknown, 3, ID_T + 1000, 0, ID_T + 9000, w, 3, &total, &until), 3);
    /* no limit set: never */
    const struct frozen_limits none = { 0, 0 };
    ck_assert_uint_eq(
        frozen_select(&none, ids, at, 3, 0, 0, ID_T + 999999999, w, 3, &total, &until), 0);
}
END_TEST

struct got {
    int calls, err;
    struct frozen_limits l;
    char why[512];
};

static void
on_limits(void *ctx, int err, const struct frozen_limits *l, const char *why)
{
    struct got *g = ctx;

    g->calls++;
    g->err = err;
    if (l)
        g->l = *l;
    (void)snprintf(g->why, sizeof(g->why), "%s", why);
}

START_TEST(test_query)
{
    struct fake_spawner *fs = fake_spawner_new();
    struct got g = { 0 };
    struct frozen_query q = { on_limits, &g };

    fs->bp_out = "auto_thaw = 1h30m\ntimeout_frozen_after = 3d\n";
    ck_assert_int_eq(frozen_query_limits(&q, &fs->ops, "/usr/sbin/exim", "/etc/exim.conf", 5000),
                     0);
    ck_assert_uint_eq(fake_spawner_flush(fs), 1);
    ck_assert_str_eq(fs->calls[0],
                     "/usr/sbin/exim -C /etc/exim.conf -bP auto_thaw timeout_frozen_after");
    ck_assert_int_eq(g.calls, 1);
    ck_assert_int_eq(g.err, 0);
    ck_assert_int_eq(g.l.auto_thaw_ms, 5400000);
    ck_assert_int_eq(g.l.timeout_ms, 3 * 86400000LL);
    /* exim fails */
    fs->exit_code = 1;
    ck_assert_int_eq(frozen_query_limits(&q, &fs->ops, "/usr/sbin/exim", NULL, 5000), 0);
    fake_spawner_flush(fs);
    ck_assert_str_eq(fs->calls[1], "/usr/sbin/exim -bP auto_thaw timeout_frozen_after");
    ck_assert_int_eq(g.calls, 2);
    ck_assert_int_eq(g.err, -EIO);
    ck_assert_ptr_nonnull(strstr(g.why, "exit 1"));
    /* output not understood */
    fs->exit_code = 0;
    fs->bp_out = "auto_thaw = 0s\n";
    ck_assert_int_eq(frozen_query_limits(&q, &fs->ops, "/usr/sbin/exim", NULL, 5000), 0);
    fake_spawner_flush(fs);
    ck_assert_int_eq(g.err, -EINVAL);
    ck_assert_int_eq(frozen_query_limits(&q, &fs->ops, "exim", NULL, 5000), -EINVAL);
    fs->run_error = -ENOENT;
    ck_assert_int_eq(frozen_query_limits(&q, &fs->ops, "/nonexistent/exim", NULL, 5000), -ENOENT);
    ck_assert_int_eq(g.calls, 3);
    spawner_free(&fs->ops);
}
END_TEST

static Suite *
frozen_suite(void)
{
    Suite *s = suite_create("frozen");
    TCase *tc = tcase_create("frozen");

    tcase_add_test(tc, test_exim_time);
    tcase_add_test(tc, test_bp_output);
    tcase_add_test(tc, test_fate);
    tcase_add_test(tc, test_select);
    tcase_add_test(tc, test_query);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(frozen_suite());
}
