/*
 * check_msgtrack.c - the table of queued messages: add, find, remove, forget the oldest
 * when full, and list an identity's queued ids in arrival order.
 */
#include <stdio.h>
#include <string.h>

#include <check.h>

#include "msgtrack.h"
#include "testrun.h"

static const uint8_t msgtrack_test_key[SIPHASH_KEY_LEN] = { 9 };

static struct fg_str
msgtrack_test_id(char *buf, unsigned i)
{
    int n = snprintf(buf, 24, "1vwqhc-%06u-Ab", i);
    return fg_str_make(buf, (size_t)n);
}

START_TEST(test_msgtrack_add_get_remove)
{
    struct msgtrack *t = msgtrack_new(1000, msgtrack_test_key);
    char buf[24];

    for (unsigned i = 0; i < 800; i++)
        ck_assert_ptr_nonnull(msgtrack_add(t, msgtrack_test_id(buf, i), i));
    ck_assert_ptr_null(msgtrack_add(t, msgtrack_test_id(buf, 5), 0)); /* duplicate */
    ck_assert_uint_eq(msgtrack_count(t), 800);
    for (unsigned i = 0; i < 800; i += 2)
        ck_assert(msgtrack_remove(t, msgtrack_test_id(buf, i)));
    ck_assert(!msgtrack_remove(t, msgtrack_test_id(buf, 0)));
    for (unsigned i = 0; i < 800; i++) {
        struct msgtrack_msg *m = msgtrack_get(t, msgtrack_test_id(buf, i));
        if (i % 2)
            ck_assert_msg(m && m->arrived_ms == i, "id %u lost", i);
        else
            ck_assert_ptr_null(m);
    }
    msgtrack_free(t);
}
END_TEST

START_TEST(test_msgtrack_forgets_oldest)
{
    struct msgtrack *t = msgtrack_new(100, msgtrack_test_key);
    char buf[24];

    for (unsigned i = 0; i < 250; i++)
        ck_assert_ptr_nonnull(msgtrack_add(t, msgtrack_test_id(buf, i), i));
    ck_assert_uint_eq(msgtrack_count(t), 100);
    ck_assert_uint_eq(msgtrack_forgotten(t), 150);
    ck_assert_ptr_null(msgtrack_get(t, msgtrack_test_id(buf, 149)));
    ck_assert_ptr_nonnull(msgtrack_get(t, msgtrack_test_id(buf, 150)));
    ck_assert_ptr_nonnull(msgtrack_get(t, msgtrack_test_id(buf, 249)));
    msgtrack_free(t);
}
END_TEST

START_TEST(test_msgtrack_queued_by_identity)
{
    struct msgtrack *t = msgtrack_new(64, msgtrack_test_key);
    struct usertable_ref a = { 3, 1 }, b = { 4, 1 }, stale = { 3, 2 };
    char ids[16][MSGTRACK_ID_MAX + 1], buf[24];

    for (unsigned i = 0; i < 10; i++) {
        struct msgtrack_msg *m = msgtrack_add(t, msgtrack_test_id(buf, i), i);
        m->refs[SCOPE_MAILBOX] = (i % 3 == 0) ? a : b;
        m->refs[SCOPE_ACCOUNT] = a;
    }
    (void)msgtrack_remove(t, msgtrack_test_id(buf, 3));
    ck_assert_uint_eq(msgtrack_queued(t, SCOPE_MAILBOX, a, ids, 16), 3);
    ck_assert_str_eq(ids[0], "1vwqhc-000000-Ab");
    ck_assert_str_eq(ids[1], "1vwqhc-000006-Ab");
    ck_assert_str_eq(ids[2], "1vwqhc-000009-Ab");
    ck_assert_uint_eq(msgtrack_queued(t, SCOPE_ACCOUNT, a, ids, 4), 4); /* capped by max */
    ck_assert_uint_eq(msgtrack_queued(t, SCOPE_MAILBOX, stale, ids, 16), 0);
    ck_assert_uint_eq(msgtrack_queued(t, SCOPE_SCRIPT, a, ids, 16), 0);
    msgtrack_free(t);
}
END_TEST

START_TEST(test_msgtrack_churn)
{
    /* backward-shift deletion must keep every live id reachable under heavy churn */
    struct msgtrack *t = msgtrack_new(512, msgtrack_test_key);
    char buf[24];
    unsigned live_from = 0;

    for (unsigned i = 0; i < 20000; i++) {
        ck_assert_ptr_nonnull(msgtrack_add(t, msgtrack_test_id(buf, i), i));
        if (i >= 300) {
            ck_assert(msgtrack_remove(t, msgtrack_test_id(buf, live_from)));
            live_from++;
        }
    }
    for (unsigned i = live_from; i < 20000; i++)
        ck_assert_msg(msgtrack_get(t, msgtrack_test_id(buf, i)) != NULL, "id %u unreachable", i);
    ck_assert_uint_eq(msgtrack_forgotten(t), 0);
    msgtrack_free(t);
}
END_TEST

/* Recipients of cut for-lists: each key once; the last MSGTRACK_SEEN_SLOTS / 2 remembered. */
START_TEST(test_msgtrack_seen)
{
    struct msgtrack_seen *s = msgtrack_seen_new();
    const uint64_t n = MSGTRACK_SEEN_SLOTS * 2;

    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(msgtrack_seen_add(s, 0), 1); /* 0 is a key like any other */
    ck_assert_int_eq(msgtrack_seen_add(s, 0), 0);
    for (uint64_t k = 1; k <= n; k++)
        ck_assert_int_eq(msgtrack_seen_add(s, k * 0x9e3779b97f4a7c15ull), 1);
    /* the newest half of the slots is still there, in either generation */
    for (uint64_t k = n - MSGTRACK_SEEN_SLOTS / 2 + 1; k <= n; k++)
        ck_assert_int_eq(msgtrack_seen_add(s, k * 0x9e3779b97f4a7c15ull), 0);
    /* the oldest were dropped: bounded memory */
    ck_assert_int_eq(msgtrack_seen_add(s, 1 * 0x9e3779b97f4a7c15ull), 1);
    msgtrack_seen_free(s);
    msgtrack_seen_free(NULL);
}
END_TEST

static unsigned msgtrack_test_dropped;
static char msgtrack_test_last[MSGTRACK_ID_MAX + 1];

static void
msgtrack_test_forget(void *ctx, const struct msgtrack_msg *msg)
{
    (void)ctx;
    msgtrack_test_dropped++;
    memcpy(msgtrack_test_last, msg->id, msg->idlen);
    msgtrack_test_last[msg->idlen] = '\0';
}

/* The drop hook hears of every message that leaves: removed, or forgotten for room. */
START_TEST(test_msgtrack_forget_hook)
{
    struct msgtrack *t = msgtrack_new(4, msgtrack_test_key);
    char buf[24];

    msgtrack_set_forget(t, msgtrack_test_forget, NULL);
    for (unsigned i = 0; i < 4; i++)
        ck_assert_ptr_nonnull(msgtrack_add(t, msgtrack_test_id(buf, i), i));
    ck_assert_uint_eq(msgtrack_test_dropped, 0);
    ck_assert(msgtrack_remove(t, msgtrack_test_id(buf, 2)));
    ck_assert_uint_eq(msgtrack_test_dropped, 1);
    ck_assert_str_eq(msgtrack_test_last, "1vwqhc-000002-Ab");
    ck_assert(!msgtrack_remove(t, msgtrack_test_id(buf, 2)));
    ck_assert_uint_eq(msgtrack_test_dropped, 1);
    ck_assert_ptr_nonnull(msgtrack_add(t, msgtrack_test_id(buf, 4), 4)); /* room again */
    ck_assert_uint_eq(msgtrack_test_dropped, 1);
    ck_assert_ptr_nonnull(msgtrack_add(t, msgtrack_test_id(buf, 5), 5)); /* forgets id 0 */
    ck_assert_uint_eq(msgtrack_test_dropped, 2);
    ck_assert_str_eq(msgtrack_test_last, "1vwqhc-000000-Ab");
    msgtrack_free(t);
}
END_TEST

static Suite *
msgtrack_suite(void)
{
    Suite *s = suite_create("msgtrack");
    TCase *tc = tcase_create("table");

    tcase_add_test(tc, test_msgtrack_add_get_remove);
    tcase_add_test(tc, test_msgtrack_forgets_oldest);
    tcase_add_test(tc, test_msgtrack_forget_hook);
    tcase_add_test(tc, test_msgtrack_queued_by_identity);
    tcase_add_test(tc, test_msgtrack_churn);
    tcase_add_test(tc, test_msgtrack_seen);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(msgtrack_suite());
}
