/*
 * check_trips.c - the bounded trip history: a full ring forgets the oldest, outcomes go
 * to the newest pending trip of the identity, mailboxes match without case, an identity's
 * reference is fixed and finds it, and listing is newest first, per identity or all.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "trips.h"
#include "testrun.h"

static struct trip_rec
rec(enum usertable_scope scope, const char *id, uint64_t value)
{
    struct trip_rec r;

    memset(&r, 0, sizeof(r));
    r.scope = scope;
    (void)snprintf(r.id, sizeof(r.id), "%s", id);
    (void)snprintf(r.rule, sizeof(r.rule), "burst");
    r.value = value;
    r.threshold = 10;
    r.window_ms = 3600000;
    return r;
}

START_TEST(test_trips_ring)
{
    struct trips *t = trips_new(4);
    const struct trip_rec *got[8];
    size_t n;

    ck_assert_ptr_nonnull(t);
    for (uint64_t v = 1; v <= 6; v++) {
        struct trip_rec r = rec(SCOPE_MAILBOX, v % 2 ? "a@x.example" : "b@x.example", v);
        struct trip_rec *s = trips_add(t, &r);
        ck_assert_uint_eq(s->seq, v);
        ck_assert_int_eq(s->result, TRIPS_PENDING);
    }
    ck_assert_uint_eq(trips_count(t), 4);
    ck_assert_uint_eq(trips_total(t), 6);
    n = trips_list(t, NULL, 0, got, 8);
    ck_assert_uint_eq(n, 4);
    for (size_t i = 0; i < n; i++) /* newest first: 6 5 4 3; 1 and 2 forgotten */
        ck_assert_uint_eq(got[i]->value, 6 - i);
    n = trips_list(t, "A@X.example", SCOPE_MAILBOX, got, 8);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(got[0]->value, 5);
    ck_assert_uint_eq(got[1]->value, 3);
    ck_assert_uint_eq(trips_list(t, "a@x.example", SCOPE_ACCOUNT, got, 8), 0);
    ck_assert_uint_eq(trips_list(t, NULL, 0, got, 1), 1);
    trips_free(t);
}
END_TEST

START_TEST(test_trips_outcome)
{
    struct trips *t = trips_new(0);
    struct trip_rec r = rec(SCOPE_ACCOUNT, "acct1", 20), *p;

    (void)trips_add(t, &r);
    r.value = 30;
    (void)trips_add(t, &r);
    p = trips_pending(t, SCOPE_ACCOUNT, "acct1");
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(p->value, 30); /* the newest */
    p->result = TRIPS_FAILED;
    p = trips_pending(t, SCOPE_ACCOUNT, "acct1");
    ck_assert_uint_eq(p->value, 20); /* then the one before */
    p->result = TRIPS_DONE;
    ck_assert_ptr_null(trips_pending(t, SCOPE_ACCOUNT, "acct1"));
    ck_assert_ptr_null(trips_pending(t, SCOPE_ACCOUNT, "ACCT1")); /* accounts keep case */
    ck_assert_int_eq(trips_last(t, SCOPE_ACCOUNT, "acct1")->result, TRIPS_FAILED);
    ck_assert_ptr_null(trips_last(t, SCOPE_MAILBOX, "acct1"));
    ck_assert_str_eq(trips_result_name(TRIPS_ALREADY), "already_held");
    ck_assert_str_eq(trips_result_name(TRIPS_WOULD_ACT), "would_act");
    trips_free(t);
}
END_TEST

START_TEST(test_trips_refs)
{
    struct trips *t = trips_new(3000);
    char ref[TRIPS_REF_MAX], again[TRIPS_REF_MAX], id[64];
    const struct trip_rec *f;

    /* fixed: the same on every host and run (a line written before a restart still works) */
    trips_identity_ref(SCOPE_MAILBOX, "box@example.com", ref, sizeof(ref));
    ck_assert_uint_eq(strlen(ref), 11);
    ck_assert(strncmp(ref, "fg-", 3) == 0);
    trips_identity_ref(SCOPE_MAILBOX, "Box@Example.COM", again, sizeof(again));
    ck_assert_str_eq(ref, again); /* mailboxes without case */
    trips_identity_ref(SCOPE_ACCOUNT, "box@example.com", again, sizeof(again));
    ck_assert_str_ne(ref, again); /* the scope counts */
    trips_identity_ref(SCOPE_ACCOUNT, "acct1", ref, sizeof(ref));
    trips_identity_ref(SCOPE_ACCOUNT, "Acct1", again, sizeof(again));
    ck_assert_str_ne(ref, again); /* accounts keep case */
    for (int i = 0; i < 3000; i++) {
        struct trip_rec r;
        (void)snprintf(id, sizeof(id), "user%d", i);
        r = rec(SCOPE_ACCOUNT, id, (uint64_t)i);
        struct trip_rec *s = trips_add(t, &r);
        trips_identity_ref(SCOPE_ACCOUNT, id, ref, sizeof(ref));
        ck_assert_str_eq(s->ref, ref);
    }
    /* 3000 identities: each found by its own reference, in capitals too */
    for (int i = 0; i < 3000; i++) {
        (void)snprintf(id, sizeof(id), "user%d", i);
        trips_identity_ref(SCOPE_ACCOUNT, id, ref, sizeof(ref));
        f = trips_find_ref(t, ref);
        ck_assert_ptr_nonnull(f);
        ck_assert_str_eq(f->id, id);
        for (char *c = ref; *c; c++)
            if (*c >= 'a' && *c <= 'z')
                *c = (char)(*c - 'a' + 'A');
        ck_assert_ptr_eq(trips_find_ref(t, ref), f);
    }
    ck_assert_ptr_null(trips_find_ref(t, "fg-zzzzzzzz"));
    ck_assert_ptr_null(trips_find_ref(t, NULL));
    trips_free(t);
}
END_TEST

static Suite *
trips_suite(void)
{
    Suite *s = suite_create("trips");
    TCase *tc = tcase_create("trips");

    tcase_add_test(tc, test_trips_ring);
    tcase_add_test(tc, test_trips_outcome);
    tcase_add_test(tc, test_trips_refs);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(trips_suite());
}
