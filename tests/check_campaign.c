/*
 * check_campaign.c - campaigns across identities: the subject's campaign form (Exim's
 * escapes, case, digits and ids, look-alikes, whitespace), domain sets, a surge of a new
 * key trips and names its identities, the background (a key many identities always send)
 * stays quiet, the learning time, the baseline's decay, the bounded tables.
 */
#include <stdio.h>
#include <string.h>

#include <check.h>

#include "campaign.h"
#include "testrun.h"
#include "util.h"

static const uint8_t campaign_test_key[SIPHASH_KEY_LEN] = { 3, 1, 4 };

#define MIN_MS (60 * 1000LL)

struct norm_case {
    const char *in, *out;
};

static const struct norm_case norm_cases[] = {
    { "Invoice 12345 attached", "invoice # attached" },
    { "INVOICE   #9981-AB  attached!!", "invoice # attached" },
    { "Re: Invoice 77 attached", "invoice # attached" },
    { "Fwd: RE: invoice 1 attached", "invoice # attached" },
    /* \ooo: UTF-8 of Cyrillic look-alikes ("Іnvоісе" with Cyrillic I, o, i, c, e) */
    { "\\320\\206nv\\320\\276\\321\\226\\321\\201\\320\\265 5 attached", "invoice # attached" },
    /* fullwidth letters, a zero-width space inside a word, accents */
    { "\\357\\274\\251nvoice 4 att\\342\\200\\213ached", "invoice # attached" },
    { "Factur\\303\\251 4 attached", "facture # attached" },
    /* Exim's escapes for quotes, backslashes and folded lines */
    { "Your \\\"parcel\\\"\\n  is waiting \\\\ ref A1B2C3", "your parcel is waiting ref #" },
    { "order xk7qwz9 shipped", "order # shipped" },
    { "Ref HSNzu and nERiQz for Invoice INVOICE", "ref # and # for invoice invoice" },
    { "token abcdefghijklmnopqrstuvwxyzabc here", "token # here" },
    { "\\t  \\001 ", "" },
    { "", "" },
    { "Hello", "hello" },
};

START_TEST(test_campaign_subject_norm)
{
    const struct norm_case *t = &norm_cases[_i];
    char out[CAMPAIGN_TEXT_MAX + 1];
    size_t n = campaign_subject_norm(t->in, strlen(t->in), out, sizeof(out));

    ck_assert_msg(strcmp(out, t->out) == 0, "'%s' -> '%s', want '%s'", t->in, out, t->out);
    ck_assert_uint_eq(n, strlen(t->out));
}
END_TEST

START_TEST(test_campaign_subject_bounded)
{
    char in[400], out[16];
    size_t n;

    memset(in, 'a', sizeof(in));
    for (size_t i = 10; i < sizeof(in); i += 11)
        in[i] = ' ';
    n = campaign_subject_norm(in, sizeof(in), out, sizeof(out));
    ck_assert_uint_lt(n, sizeof(out));
    ck_assert_uint_eq(strlen(out), n);
    ck_assert_str_eq(out, "aaaaaaaaaa");
}
END_TEST

static struct campaign *
campaign_test_new(uint64_t above, int64_t learn_ms, uint32_t cap)
{
    struct campaign_params p = {
        .window_ms = 30 * MIN_MS, .above = above, .factor = 3.0, .learn_ms = learn_ms, .cap = cap
    };
    struct campaign *c = campaign_new(&p, campaign_test_key);

    ck_assert_ptr_nonnull(c);
    return c;
}

static struct campaign_member
campaign_test_member(uint32_t i)
{
    return (struct campaign_member){ { i, 1 }, SCOPE_MAILBOX };
}

static void
campaign_test_text(void *ctx, char *buf, size_t size)
{
    (void)snprintf(buf, size, "%s", (const char *)ctx);
}

static enum campaign_result
note(struct campaign *c, const char *key, uint32_t who, int64_t t, struct campaign_trip *ret)
{
    char text[64];

    (void)snprintf(text, sizeof(text), "%s", key);
    return campaign_note(c, campaign_key_of(c, key, strlen(key)), campaign_test_text, text,
                         campaign_test_member(who), t, ret);
}

START_TEST(test_campaign_surge_trips)
{
    struct campaign *c = campaign_test_new(8, 60 * MIN_MS, 64);
    struct campaign_trip trip;
    int64_t t0 = 1000 * MIN_MS;

    /* the table learns first: the same surge during the first hour says nothing */
    for (uint32_t i = 0; i < 12; i++)
        ck_assert_int_eq(note(c, "early", 100 + i, t0 + i * 1000, &trip), CAMPAIGN_QUIET);
    /* a new key, 9 identities within minutes: the 9th trips and names all of them */
    for (uint32_t i = 0; i < 8; i++)
        ck_assert_int_eq(note(c, "your parcel", i, t0 + 90 * MIN_MS + i * MIN_MS, &trip),
                         CAMPAIGN_QUIET);
    /* one identity sending again is no new identity */
    ck_assert_int_eq(note(c, "your parcel", 3, t0 + 99 * MIN_MS, &trip), CAMPAIGN_QUIET);
    ck_assert_int_eq(note(c, "your parcel", 8, t0 + 100 * MIN_MS, &trip), CAMPAIGN_TRIPPED);
    ck_assert_str_eq(trip.text, "your parcel");
    ck_assert_uint_eq(trip.identities, 9);
    ck_assert_uint_eq(trip.threshold, 8);
    ck_assert_uint_eq(trip.nmembers, 9);
    for (uint32_t i = 0; i < 9; i++)
        ck_assert_uint_eq(trip.members[i].ref.slot, i);
    /* later senders of the tripped key are members, one at a time */
    ck_assert_int_eq(note(c, "your parcel", 42, t0 + 101 * MIN_MS, &trip), CAMPAIGN_MEMBER);
    ck_assert_uint_eq(trip.nmembers, 1);
    ck_assert_uint_eq(trip.members[0].ref.slot, 42);
    ck_assert_uint_eq(campaign_stats(c)->trips, 1);
    campaign_free(c);
}
END_TEST

START_TEST(test_campaign_background_quiet)
{
    struct campaign *c = campaign_test_new(8, 60 * MIN_MS, 64);
    struct campaign_trip trip;
    uint32_t who = 0;

    /* "hello" from 15 different senders every half hour, for 5 hours, then 30 at once:
     * twice its usual, under 3 x the baseline */
    for (int64_t w = 0; w < 10; w++)
        for (int64_t i = 0; i < 15; i++)
            ck_assert_int_eq(note(c, "hello", who++, w * 30 * MIN_MS + i * 2 * MIN_MS, &trip),
                             CAMPAIGN_QUIET);
    for (int64_t i = 0; i < 30; i++)
        ck_assert_int_eq(note(c, "hello", who++, 300 * MIN_MS + i * 10000, &trip),
                         CAMPAIGN_QUIET);
    campaign_free(c);
}
END_TEST

START_TEST(test_campaign_key_gone_then_surge)
{
    struct campaign *c = campaign_test_new(8, 0, 64);
    struct campaign_trip trip;
    enum campaign_result r = CAMPAIGN_QUIET;

    /* 6 senders in one window: a baseline of 6, threshold 18 in the next windows */
    for (uint32_t i = 0; i < 6; i++)
        ck_assert_int_eq(note(c, "newsletter", i, i * MIN_MS, &trip), CAMPAIGN_QUIET);
    for (uint32_t i = 0; i < 12; i++)
        ck_assert_int_eq(note(c, "newsletter", 100 + i, 31 * MIN_MS + i * MIN_MS, &trip),
                         CAMPAIGN_QUIET);
    /* a day later the baseline has decayed: 9 senders are a surge again */
    for (uint32_t i = 0; i < 9 && r == CAMPAIGN_QUIET; i++)
        r = note(c, "newsletter", 200 + i, 24 * 60 * MIN_MS + i * MIN_MS, &trip);
    ck_assert_int_eq(r, CAMPAIGN_TRIPPED);
    ck_assert_double_lt(trip.baseline, 1.0);
    campaign_free(c);
}
END_TEST

START_TEST(test_campaign_members_bounded)
{
    struct campaign *c = campaign_test_new(39, 0, 64);
    struct campaign_trip trip;
    enum campaign_result r = CAMPAIGN_QUIET;
    uint32_t i;

    for (i = 0; i < 100 && r == CAMPAIGN_QUIET; i++)
        r = note(c, "blast", i, i * 1000, &trip);
    ck_assert_int_eq(r, CAMPAIGN_TRIPPED);
    ck_assert_uint_eq(i, 40);
    ck_assert_uint_eq(trip.nmembers, CAMPAIGN_TRIP_MAX);
    /* past CAMPAIGN_MEMBERS identities the count saturates ("at least") */
    for (; i < 100; i++)
        ck_assert_int_eq(note(c, "blast", i, i * 1000, &trip), CAMPAIGN_MEMBER);
    ck_assert_uint_eq(trip.identities, CAMPAIGN_MEMBERS);
    ck_assert_uint_eq(trip.members[0].ref.slot, 99);
    campaign_free(c);
}
END_TEST

START_TEST(test_campaign_lru_keeps_shared_keys)
{
    struct campaign *c = campaign_test_new(8, 0, 16);
    struct campaign_trip trip;
    char key[32];

    /* "shared": two senders, the second one lets it into the table */
    ck_assert_int_eq(note(c, "shared", 1, 0, &trip), CAMPAIGN_QUIET);
    ck_assert_int_eq(note(c, "shared", 2, 1000, &trip), CAMPAIGN_QUIET);
    /* a flood of one-off subjects stops at the doorkeeper: the table never sees them */
    for (uint32_t i = 0; i < 200; i++) {
        (void)snprintf(key, sizeof(key), "unique %u", i);
        ck_assert_int_eq(note(c, key, 1000 + i, 2000 + i, &trip), CAMPAIGN_QUIET);
    }
    ck_assert_uint_eq(campaign_stats(c)->keys, 1);
    ck_assert_uint_eq(campaign_stats(c)->evictions, 0);
    /* subjects of two senders each enter it, fill it and push the oldest out */
    for (uint32_t i = 0; i < 14; i++) {
        (void)snprintf(key, sizeof(key), "pair %u", i);
        ck_assert_int_eq(note(c, key, 3000 + i, 3000 + 2 * i, &trip), CAMPAIGN_QUIET);
        ck_assert_int_eq(note(c, key, 4000 + i, 3001 + 2 * i, &trip), CAMPAIGN_QUIET);
    }
    ck_assert_uint_eq(campaign_stats(c)->keys, 15);
    ck_assert_uint_eq(campaign_stats(c)->evictions, 0);
    for (uint32_t i = 14; i < 20; i++) {
        (void)snprintf(key, sizeof(key), "pair %u", i);
        ck_assert_int_eq(note(c, key, 3000 + i, 3000 + 2 * i, &trip), CAMPAIGN_QUIET);
        ck_assert_int_eq(note(c, key, 4000 + i, 3001 + 2 * i, &trip), CAMPAIGN_QUIET);
    }
    ck_assert_uint_eq(campaign_stats(c)->keys, 16);
    ck_assert_uint_eq(campaign_stats(c)->evictions, 5);
    /* the same sender twice is still one sender: its key stays out */
    ck_assert_int_eq(note(c, "solo", 7, 9000, &trip), CAMPAIGN_QUIET);
    ck_assert_int_eq(note(c, "solo", 7, 9001, &trip), CAMPAIGN_QUIET);
    ck_assert_uint_eq(campaign_stats(c)->evictions, 5);
    /* "shared" was used before the pairs: gone, and learnt again from its next senders */
    for (uint32_t i = 3; i < 11; i++)
        ck_assert_int_eq(note(c, "shared", i, 5000 + i, &trip), CAMPAIGN_QUIET);
    ck_assert_int_eq(note(c, "shared", 11, 6000, &trip), CAMPAIGN_TRIPPED);
    ck_assert_uint_eq(trip.identities, 9);
    ck_assert_uint_eq(trip.members[0].ref.slot, 3);
    campaign_free(c);
}
END_TEST

START_TEST(test_campaign_window_slides)
{
    struct campaign *c = campaign_test_new(8, 0, 64);
    struct campaign_trip trip;

    /* 8 identities, one every 5 minutes: never more than 6 within 30 minutes */
    for (uint32_t i = 0; i < 20; i++)
        ck_assert_int_eq(note(c, "slow", i, i * 5 * MIN_MS, &trip), CAMPAIGN_QUIET);
    campaign_free(c);
}
END_TEST

START_TEST(test_campaign_set_key)
{
    struct campaign *c = campaign_test_new(8, 0, 64);
    uint64_t a[] = { 7, 3, 9, 3, 11 }, b[] = { 11, 9, 7, 3 }, d[] = { 1, 1, 1 };

    ck_assert_uint_ne(campaign_set_key(c, a, N_ELEMS(a), 4), 0);
    ck_assert_uint_eq(campaign_set_key(c, a, N_ELEMS(a), 4), campaign_set_key(c, b, N_ELEMS(b), 4));
    ck_assert_uint_eq(campaign_set_key(c, b, N_ELEMS(b), 5), 0);
    ck_assert_uint_eq(campaign_set_key(c, d, N_ELEMS(d), 2), 0);
    {
        /* a long set sorts and dedups the same in any order */
        uint64_t x[500], y[500];
        for (size_t i = 0; i < N_ELEMS(x); i++) {
            x[i] = (i * 7919u) % 300u;
            y[N_ELEMS(y) - 1 - i] = x[i];
        }
        ck_assert_uint_eq(campaign_set_key(c, x, N_ELEMS(x), 300),
                          campaign_set_key(c, y, N_ELEMS(y), 300));
        ck_assert_uint_eq(campaign_set_key(c, y, N_ELEMS(y), 301), 0);
        for (size_t i = 1; i < 300; i++)
            ck_assert_uint_lt(x[i - 1], x[i]);
    }
    campaign_free(c);
}
END_TEST

START_TEST(test_campaign_bad_params)
{
    struct campaign_params p = { .window_ms = 60000, .above = CAMPAIGN_MEMBERS, .factor = 3.0,
                                 .cap = 16 };

    ck_assert_ptr_null(campaign_new(&p, campaign_test_key));
    p.above = 8;
    p.cap = 0;
    ck_assert_ptr_null(campaign_new(&p, campaign_test_key));
    p.cap = 16;
    p.factor = 0.5;
    ck_assert_ptr_null(campaign_new(&p, campaign_test_key));
}
END_TEST

static Suite *
campaign_suite(void)
{
    Suite *s = suite_create("campaign");
    TCase *tc = tcase_create("subject");

    tcase_add_loop_test(tc, test_campaign_subject_norm, 0, (int)N_ELEMS(norm_cases));
    tcase_add_test(tc, test_campaign_subject_bounded);
    suite_add_tcase(s, tc);
    tc = tcase_create("table");
    tcase_add_test(tc, test_campaign_surge_trips);
    tcase_add_test(tc, test_campaign_background_quiet);
    tcase_add_test(tc, test_campaign_key_gone_then_surge);
    tcase_add_test(tc, test_campaign_members_bounded);
    tcase_add_test(tc, test_campaign_lru_keeps_shared_keys);
    tcase_add_test(tc, test_campaign_window_slides);
    tcase_add_test(tc, test_campaign_set_key);
    tcase_add_test(tc, test_campaign_bad_params);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(campaign_suite());
}
