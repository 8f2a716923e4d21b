/*
 * check_outbox.c - lib/outbox: idempotent insert, due order, retry and done, the limits
 * (lowest priority and oldest first, never one in flight nor one that matters more than
 * the newcomer; room without dropping), expiry, and the encoding: a
 * round trip keeps every field and body byte, any damage is refused and changes nothing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "outbox.h"
#include "testrun.h"
#include "util.h"

static struct outbox *
outbox_make(size_t entries, size_t bytes)
{
    struct outbox_limits lim = { .max_entries = entries,
                                 .max_bytes = bytes,
                                 .max_age_ms = 3600000 };
    struct outbox *ob = NULL;

    ck_assert_int_eq(outbox_new(&lim, &ob), 0);
    return ob;
}

START_TEST(test_outbox_add_idempotent)
{
    struct outbox *ob = outbox_make(0, 0);

    ck_assert_int_eq(outbox_add(ob, "slack", "fg_a_tripped", OUTBOX_PRIO_INCIDENT, 10, "x", 1), 0);
    ck_assert_int_eq(outbox_add(ob, "slack", "fg_a_tripped", OUTBOX_PRIO_INCIDENT, 11, "y", 1), 1);
    ck_assert_int_eq(outbox_add(ob, "hook", "fg_a_tripped", OUTBOX_PRIO_INCIDENT, 10, "x", 1), 0);
    ck_assert_uint_eq(outbox_count(ob, NULL), 2);
    ck_assert_uint_eq(outbox_count(ob, "slack"), 1);
    ck_assert_uint_eq(outbox_stats(ob)->duplicates, 1);
    ck_assert_int_eq(outbox_add(ob, "a.b", "id", OUTBOX_PRIO_INCIDENT, 1, "", 0), -EINVAL);
    ck_assert_int_eq(outbox_add(ob, "slack", "fg.x", OUTBOX_PRIO_INCIDENT, 1, "", 0), -EINVAL);
    ck_assert_int_eq(outbox_add(ob, "slack", "", OUTBOX_PRIO_INCIDENT, 1, "", 0), -EINVAL);
    outbox_free(ob);
}
END_TEST

START_TEST(test_outbox_due_retry_done)
{
    struct outbox *ob = outbox_make(0, 0);
    struct outbox_entry *e;

    ck_assert_int_eq(outbox_add(ob, "d", "e1", OUTBOX_PRIO_INCIDENT, 100, "one", 3), 0);
    ck_assert_int_eq(outbox_add(ob, "d", "e2", OUTBOX_PRIO_INCIDENT, 200, "two", 3), 0);
    ck_assert_ptr_null(outbox_next_due(ob, "d", 99));
    ck_assert_int_eq(outbox_next_time(ob, "d"), 100);
    ck_assert_int_eq(outbox_next_time(ob, "other"), INT64_MAX);
    e = outbox_next_due(ob, "d", 1000);
    ck_assert_str_eq(e->event_id, "e1");
    outbox_begin(ob, e);
    ck_assert_uint_eq(e->attempts, 1);
    /* in flight: the next due is the second */
    ck_assert_str_eq(outbox_next_due(ob, "d", 1000)->event_id, "e2");
    outbox_retry(ob, e, 5000, 500);
    ck_assert_int_eq(e->last_status, 500);
    ck_assert_str_eq(outbox_next_due(ob, "d", 1000)->event_id, "e2");
    outbox_done(ob, outbox_next_due(ob, "d", 1000));
    ck_assert_ptr_null(outbox_next_due(ob, "d", 4999));
    ck_assert_str_eq(outbox_next_due(ob, "d", 5000)->event_id, "e1");
    ck_assert_uint_eq(outbox_count(ob, "d"), 1);
    ck_assert_uint_eq(outbox_stats(ob)->done, 1);
    outbox_free(ob);
}
END_TEST

START_TEST(test_outbox_limits)
{
    struct outbox *ob = outbox_make(3, 100);
    struct outbox_entry *e;

    ck_assert_int_eq(outbox_add(ob, "d", "h1", OUTBOX_PRIO_HEALTH, 1, "h", 1), 0);
    ck_assert_int_eq(outbox_add(ob, "d", "i1", OUTBOX_PRIO_INCIDENT, 2, "i", 1), 0);
    ck_assert_int_eq(outbox_add(ob, "d", "h2", OUTBOX_PRIO_HEALTH, 3, "h", 1), 0);
    /* full: the oldest health event goes first, then the next */
    ck_assert_int_eq(outbox_add(ob, "d", "i2", OUTBOX_PRIO_INCIDENT, 4, "i", 1), 0);
    ck_assert_ptr_null(outbox_next_due(ob, "d", 0));
    e = outbox_next_due(ob, "d", 100);
    ck_assert_str_eq(e->event_id, "i1");
    ck_assert_int_eq(outbox_add(ob, "d", "i3", OUTBOX_PRIO_INCIDENT, 5, "i", 1), 0);
    ck_assert_uint_eq(outbox_stats(ob)->dropped, 2);
    /* only incidents left: the oldest goes, unless it is in flight */
    outbox_begin(ob, outbox_next_due(ob, "d", 100)); /* i1 */
    ck_assert_int_eq(outbox_add(ob, "d", "i4", OUTBOX_PRIO_INCIDENT, 6, "i", 1), 0);
    ck_assert_str_eq(outbox_next_due(ob, "d", 100)->event_id, "i3");
    ck_assert_uint_eq(outbox_count(ob, "d"), 3);
    /* another destination has its own limits */
    ck_assert_int_eq(outbox_add(ob, "x", "i1", OUTBOX_PRIO_HEALTH, 1, "h", 1), 0);
    ck_assert_uint_eq(outbox_count(ob, "d"), 3);
    /* bytes: a body over the whole limit is refused, a big one pushes others out */
    char big[101] = { 0 };
    ck_assert_int_eq(outbox_add(ob, "x", "b1", OUTBOX_PRIO_INCIDENT, 1, big, 101), -E2BIG);
    ck_assert_int_eq(outbox_add(ob, "x", "b2", OUTBOX_PRIO_INCIDENT, 1, big, 100), 0);
    ck_assert_uint_eq(outbox_count(ob, "x"), 1);
    outbox_free(ob);
}
END_TEST

START_TEST(test_outbox_priority_room)
{
    struct outbox *ob = outbox_make(3, 100);

    ck_assert(outbox_room(ob, "d", 100));
    ck_assert(!outbox_room(ob, "d", 101));
    ck_assert_int_eq(outbox_add(ob, "d", "h1", OUTBOX_PRIO_HEALTH, 1, "h", 1), 0);
    ck_assert_int_eq(outbox_add(ob, "d", "i1", OUTBOX_PRIO_INCIDENT, 2, "i", 1), 0);
    ck_assert(outbox_room(ob, "d", 98));
    ck_assert(!outbox_room(ob, "d", 99));
    ck_assert_int_eq(outbox_add(ob, "d", "i2", OUTBOX_PRIO_INCIDENT, 3, "i", 1), 0);
    ck_assert(!outbox_room(ob, "d", 0));
    ck_assert(outbox_room(ob, "x", 0));
    /* full: a digest pushes out the health event, never an incident */
    ck_assert_int_eq(outbox_add(ob, "d", "g1", OUTBOX_PRIO_DIGEST, 4, "g", 1), 0);
    ck_assert_ptr_null(outbox_find(ob, "d", "h1"));
    ck_assert_int_eq(outbox_add(ob, "d", "h2", OUTBOX_PRIO_HEALTH, 5, "h", 1), -ENOBUFS);
    ck_assert_int_eq(outbox_add(ob, "d", "g2", OUTBOX_PRIO_DIGEST, 6, "g", 1), 0);
    ck_assert_ptr_null(outbox_find(ob, "d", "g1"));
    ck_assert_ptr_nonnull(outbox_find(ob, "d", "i1"));
    ck_assert_ptr_nonnull(outbox_find(ob, "d", "i2"));
    ck_assert_uint_eq(outbox_stats(ob)->dropped, 2);
    ck_assert_uint_eq(outbox_count(ob, "d"), 3);
    /* full, but an entry's own place is room for one of the bytes it frees */
    ck_assert(outbox_room_instead(ob, outbox_find(ob, "d", "i1"), 98));
    ck_assert(!outbox_room_instead(ob, outbox_find(ob, "d", "i1"), 99));
    ck_assert(!outbox_room(ob, "d", 1));
    /* over lowered limits, one place is not enough */
    outbox_set_limits(ob, &(struct outbox_limits){ .max_entries = 2, .max_bytes = 100 });
    ck_assert(!outbox_room_instead(ob, outbox_find(ob, "d", "i1"), 1));
    outbox_free(ob);
}
END_TEST

START_TEST(test_outbox_expire)
{
    struct outbox *ob = outbox_make(0, 0);

    ck_assert_int_eq(outbox_add(ob, "d", "busy", OUTBOX_PRIO_INCIDENT, 0, "", 0), 0);
    ck_assert_int_eq(outbox_add(ob, "d", "old", OUTBOX_PRIO_INCIDENT, 0, "", 0), 0);
    ck_assert_int_eq(outbox_add(ob, "d", "new", OUTBOX_PRIO_INCIDENT, 3000000, "", 0), 0);
    outbox_begin(ob, outbox_next_due(ob, "d", 10));   /* busy: in flight, kept */
    ck_assert_uint_eq(outbox_expire(ob, 3600000), 0); /* not older than the max age yet */
    ck_assert_uint_eq(outbox_expire(ob, 3600001), 1);
    ck_assert_uint_eq(outbox_count(ob, "d"), 2);
    ck_assert_uint_eq(outbox_stats(ob)->expired, 1);
    ck_assert_str_eq(outbox_next_due(ob, "d", INT64_MAX)->event_id, "new");
    outbox_free(ob);
}
END_TEST

START_TEST(test_outbox_roundtrip)
{
    struct outbox *a = outbox_make(0, 0), *b = outbox_make(0, 0);
    struct strbuf s1, s2;
    struct outbox_entry *e;

    strbuf_init(&s1, 1 << 20);
    strbuf_init(&s2, 1 << 20);
    ck_assert_int_eq(outbox_add(a, "slack", "fg_1_tripped", OUTBOX_PRIO_INCIDENT, 1700000000123,
                                "{\"a\":1}\nE x y 2 0 0 0 0 3\nabc", 28),
                     0);
    ck_assert_int_eq(outbox_add(a, "hook", "fg_2_digest", OUTBOX_PRIO_DIGEST, 5, "", 0), 0);
    ck_assert_int_eq(outbox_add(a, "hook", "fg_3_bin", OUTBOX_PRIO_HEALTH, 6, "\0\n\xff", 3), 0);
    e = outbox_next_due(a, "hook", 100);
    outbox_begin(a, e);
    outbox_retry(a, e, 99000, 503);
    ck_assert(outbox_dirty(a));
    ck_assert_int_eq(outbox_encode(a, &s1), 0);
    ck_assert(!outbox_dirty(a));
    ck_assert_int_eq(outbox_decode(b, s1.p, s1.len), 0);
    ck_assert_int_eq(outbox_encode(b, &s2), 0);
    ck_assert_uint_eq(s1.len, s2.len);
    ck_assert(memcmp(s1.p, s2.p, s1.len) == 0);
    ck_assert_uint_eq(outbox_count(b, NULL), 3);
    e = outbox_next_due(b, "hook", 100);
    ck_assert_str_eq(e->event_id, "fg_3_bin");
    ck_assert_uint_eq(e->body_len, 3);
    ck_assert(memcmp(e->body, "\0\n\xff", 3) == 0);
    e = outbox_next_due(b, "hook", 99000);
    ck_assert_str_eq(e->event_id, "fg_2_digest");
    ck_assert_uint_eq(e->attempts, 1);
    ck_assert_int_eq(e->last_status, 503);
    ck_assert_int_eq(e->prio, OUTBOX_PRIO_DIGEST);
    e = outbox_next_due(b, "slack", INT64_MAX);
    ck_assert_int_eq(e->created_ms, 1700000000123);
    ck_assert_uint_eq(e->body_len, 28);
    strbuf_done(&s1);
    strbuf_done(&s2);
    outbox_free(a);
    outbox_free(b);
}
END_TEST

START_TEST(test_outbox_decode_damage)
{
    struct outbox *a = outbox_make(0, 0), *b = outbox_make(0, 0);
    struct strbuf s;
    char *copy;

    strbuf_init(&s, 1 << 20);
    ck_assert_int_eq(outbox_add(a, "d", "e1", OUTBOX_PRIO_INCIDENT, 1, "body one", 8), 0);
    ck_assert_int_eq(outbox_add(a, "d", "e2", OUTBOX_PRIO_INCIDENT, 2, "body two", 8), 0);
    ck_assert_int_eq(outbox_encode(a, &s), 0);
    ck_assert_int_eq(outbox_add(b, "keep", "k", OUTBOX_PRIO_INCIDENT, 1, "k", 1), 0);
    copy = malloc(s.len);
    ck_assert_ptr_nonnull(copy);
    /* every truncation and every single flipped byte is refused, b unchanged */
    for (size_t cut = 0; cut < s.len; cut++)
        ck_assert_int_eq(outbox_decode(b, s.p, cut), -EBADMSG);
    for (size_t i = 0; i < s.len; i++) {
        memcpy(copy, s.p, s.len);
        copy[i] ^= 0x01;
        ck_assert_msg(outbox_decode(b, copy, s.len) == -EBADMSG, "flip at %zu", i);
    }
    ck_assert_uint_eq(outbox_count(b, NULL), 1);
    ck_assert_ptr_nonnull(outbox_next_due(b, "keep", 1));
    ck_assert_int_eq(outbox_decode(b, s.p, s.len), 0);
    ck_assert_uint_eq(outbox_count(b, NULL), 2);
    free(copy);
    strbuf_done(&s);
    outbox_free(a);
    outbox_free(b);
}
END_TEST

START_TEST(test_outbox_find_at_remove)
{
    struct outbox *ob = outbox_make(0, 0);
    struct outbox_entry *e;
    struct outbox_limits lim = { .max_entries = 1 };

    ck_assert_int_eq(outbox_add(ob, "d", "e1", OUTBOX_PRIO_INCIDENT, 1, "a", 1), 0);
    ck_assert_int_eq(outbox_add(ob, "d", "e2", OUTBOX_PRIO_INCIDENT, 2, "b", 1), 0);
    ck_assert_ptr_null(outbox_find(ob, "x", "e1"));
    e = outbox_find(ob, "d", "e2");
    ck_assert_ptr_eq(outbox_at(ob, 1), e);
    ck_assert_ptr_null(outbox_at(ob, 2));
    outbox_remove(ob, e);
    ck_assert_uint_eq(outbox_count(ob, NULL), 1);
    ck_assert_uint_eq(outbox_stats(ob)->done, 0);
    ck_assert_str_eq(outbox_at(ob, 0)->event_id, "e1");
    /* a lower limit bites at the next add */
    outbox_set_limits(ob, &lim);
    ck_assert_int_eq(outbox_add(ob, "d", "e3", OUTBOX_PRIO_INCIDENT, 3, "c", 1), 0);
    ck_assert_uint_eq(outbox_count(ob, "d"), 1);
    ck_assert_ptr_nonnull(outbox_find(ob, "d", "e3"));
    outbox_free(ob);
}
END_TEST

static Suite *
outbox_suite(void)
{
    Suite *s = suite_create("outbox");
    TCase *tc = tcase_create("queue");

    tcase_add_test(tc, test_outbox_add_idempotent);
    tcase_add_test(tc, test_outbox_due_retry_done);
    tcase_add_test(tc, test_outbox_limits);
    tcase_add_test(tc, test_outbox_priority_room);
    tcase_add_test(tc, test_outbox_expire);
    tcase_add_test(tc, test_outbox_find_at_remove);
    suite_add_tcase(s, tc);
    tc = tcase_create("encoding");
    tcase_add_test(tc, test_outbox_roundtrip);
    tcase_add_test(tc, test_outbox_decode_damage);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(outbox_suite());
}
