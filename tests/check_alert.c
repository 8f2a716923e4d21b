/*
 * check_alert.c - lib/alert: the Standard Webhooks vector, rotation signatures checked by
 * an independent implementation (python3's hmac), escaping of hostile log text, the
 * classification table, backoff bounds and Retry-After, the token bucket.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "alert.h"
#include "testrun.h"
#include "util.h"

/* From the Standard Webhooks reference library (libraries/go/webhook_test.go). */
#define SW_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SW_ID     "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define SW_TS     1614265330
#define SW_BODY   "{\"test\": 2432232314}"
#define SW_SIG    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

START_TEST(test_alert_sign_vector)
{
    struct alert_secret s;
    char sig[ALERT_SIG_MAX];

    ck_assert_int_eq(alert_secret_decode(SW_SECRET, &s), 0);
    ck_assert_uint_eq(s.len, 24);
    ck_assert_int_eq(alert_sign(&s, 1, SW_ID, SW_TS, SW_BODY, strlen(SW_BODY), sig, sizeof(sig)),
                     0);
    ck_assert_str_eq(sig, SW_SIG);
    /* without the prefix the key is the same */
    ck_assert_int_eq(alert_secret_decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &s), 0);
    ck_assert_int_eq(alert_sign(&s, 1, SW_ID, SW_TS, SW_BODY, strlen(SW_BODY), sig, sizeof(sig)),
                     0);
    ck_assert_str_eq(sig, SW_SIG);
}
END_TEST

START_TEST(test_alert_sign_bad)
{
    static const char *const bad_secrets[] = {
        "",
        "whsec_",
        "whsec_abc",                              /* not a multiple of 4 */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS!", /* not base64 */
        "whsec_MfKQ9r8GKYqrTwjU",                 /* 12 bytes: too short */
        "whsec_MfKQ=r8GKYqrTwjUPD8ILPZIo2LaLaSw", /* padding inside */
    };
    struct alert_secret s;
    char sig[ALERT_SIG_MAX], small[10];

    for (size_t i = 0; i < N_ELEMS(bad_secrets); i++)
        ck_assert_msg(alert_secret_decode(bad_secrets[i], &s) == -EINVAL, "%s", bad_secrets[i]);
    ck_assert_int_eq(alert_secret_decode(SW_SECRET, &s), 0);
    ck_assert_int_eq(alert_sign(&s, 1, "a.b", 1, "x", 1, sig, sizeof(sig)), -EINVAL);
    ck_assert_int_eq(alert_sign(&s, 1, "", 1, "x", 1, sig, sizeof(sig)), -EINVAL);
    ck_assert_int_eq(alert_sign(&s, 0, "id", 1, "x", 1, sig, sizeof(sig)), -EINVAL);
    ck_assert_int_eq(alert_sign(&s, 1, "id", 1, "x", 1, small, sizeof(small)), -E2BIG);
}
END_TEST

/* Two secrets during a rotation; each signature verified by python3's hmac module. */
START_TEST(test_alert_sign_rotation_python)
{
    static const char *const keys[] = { SW_SECRET, "whsec_" /* 32 bytes of 0x01..0x20 */
                                                   "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=" };
    struct alert_secret s[2];
    char sig[2 * ALERT_SIG_MAX], cmd[2048];
    const char *body = "{\"type\":\"floodgate.trip.tripped\",\"data\":{\"x\":\"\\u00e9\"}}";
    FILE *f;
    char out[64] = "";

    if (system("command -v python3 >/dev/null 2>&1") != 0)
        return; /* the oracle is missing; the vector test above still ran */
    for (size_t i = 0; i < 2; i++)
        ck_assert_int_eq(alert_secret_decode(keys[i], &s[i]), 0);
    ck_assert_int_eq(
        alert_sign(s, 2, "fg_abc_tripped", 1700000000, body, strlen(body), sig, sizeof(sig)), 0);
    ck_assert_ptr_nonnull(strchr(sig, ' '));
    (void)snprintf(cmd, sizeof(cmd),
                   "python3 -c 'import sys,hmac,hashlib,base64\n"
                   "keys=[base64.b64decode(k[6:]) for k in sys.argv[1:3]]\n"
                   "msg=b\"fg_abc_tripped.1700000000.\"+sys.argv[4].encode()\n"
                   "sigs=[s.split(\",\",1)[1] for s in sys.argv[3].split(\" \")]\n"
                   "ok=all(hmac.compare_digest(base64.b64encode(hmac.new(k,msg,hashlib.sha256)"
                   ".digest()).decode(),s) for k,s in zip(keys,sigs))\n"
                   "print(\"ok\" if ok and len(sigs)==2 else \"bad\")' '%s' '%s' '%s' '%s'",
                   keys[0], keys[1], sig, body);
    f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(out, sizeof(out), f));
    (void)pclose(f);
    ck_assert_str_eq(out, "ok\n");
}
END_TEST

static const struct text_case {
    const char *in;
    size_t len, cap;
    enum alert_text_mode mode;
    const char *want;
} text_cases[] = {
    { "<!channel> <https://x|y> & \"q\"", 0, 200, ALERT_TEXT_SLACK,
      "&lt;!channel&gt; &lt;https://x|y&gt; &amp; \\\"q\\\"" },
    { "<!channel> & \"q\"", 0, 200, ALERT_TEXT_JSON, "<!channel> & \\\"q\\\"" },
    { "a`b\nc\td", 0, 200, ALERT_TEXT_SLACK_CODE, "ab c d" },
    { "a\nb", 0, 200, ALERT_TEXT_SLACK, "a\\nb" },
    { "bad\xff\xfe byte", 0, 200, ALERT_TEXT_JSON, "bad\xef\xbf\xbd\xef\xbf\xbd byte" },
    { "\xc0\xaf overlong", 0, 200, ALERT_TEXT_JSON, "\xef\xbf\xbd\xef\xbf\xbd overlong" },
    { "\xed\xa0\x80 surrogate", 0, 200, ALERT_TEXT_JSON,
      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd surrogate" },
    { "caf\xc3\xa9", 0, 200, ALERT_TEXT_SLACK, "caf\xc3\xa9" },
    { "caf\xc3\xa9", 0, 4, ALERT_TEXT_SLACK, "caf" }, /* never cut a character */
    { "a&b&c", 0, 3, ALERT_TEXT_SLACK, "a&amp;b" },   /* cap counts input bytes */
    { "nul\0x", 5, 200, ALERT_TEXT_JSON, "nul\\u0000x" },
    { "\x1b[31m", 0, 200, ALERT_TEXT_SLACK, "\\u001b[31m" },
};

START_TEST(test_alert_text)
{
    const struct text_case *c = &text_cases[_i];
    struct strbuf b;

    strbuf_init(&b, 4096);
    ck_assert_int_eq(alert_append_text(&b, c->in, c->len ? c->len : strlen(c->in), c->cap, c->mode),
                     0);
    ck_assert_str_eq(strbuf_cstr(&b), c->want);
    strbuf_done(&b);
}
END_TEST

START_TEST(test_alert_text_full)
{
    struct strbuf b;

    strbuf_init(&b, 8);
    ck_assert_int_eq(alert_append_text(&b, "<<<<<<<<", 8, 200, ALERT_TEXT_SLACK), -E2BIG);
    strbuf_done(&b);
}
END_TEST

static const struct classify_case {
    enum alert_dest_type type;
    enum http_error error;
    int status;
    const char *body;
    enum alert_outcome want;
} classify_cases[] = {
    { ALERT_DEST_SLACK, HTTP_OK, 200, "ok", ALERT_DELIVERED },
    { ALERT_DEST_WEBHOOK, HTTP_OK, 204, "", ALERT_DELIVERED },
    { ALERT_DEST_SLACK, HTTP_OK, 400, "invalid_payload", ALERT_PERMANENT },
    { ALERT_DEST_SLACK, HTTP_OK, 403, "action_prohibited", ALERT_PERMANENT },
    { ALERT_DEST_SLACK, HTTP_OK, 404, "no_service", ALERT_DISABLE },
    { ALERT_DEST_SLACK, HTTP_OK, 410, "channel_is_archived", ALERT_DISABLE },
    { ALERT_DEST_SLACK, HTTP_OK, 400, "team_disabled", ALERT_DISABLE },
    { ALERT_DEST_WEBHOOK, HTTP_OK, 400, "team_disabled", ALERT_PERMANENT },
    { ALERT_DEST_WEBHOOK, HTTP_OK, 408, "", ALERT_RETRY },
    { ALERT_DEST_WEBHOOK, HTTP_OK, 429, "", ALERT_RETRY },
    { ALERT_DEST_SLACK, HTTP_OK, 500, "rollup_error", ALERT_RETRY },
    { ALERT_DEST_ALERTMANAGER, HTTP_OK, 503, "", ALERT_RETRY },
    { ALERT_DEST_WEBHOOK, HTTP_OK, 302, "", ALERT_PERMANENT },
    { ALERT_DEST_ALERTMANAGER, HTTP_OK, 400, "bad", ALERT_PERMANENT },
    { ALERT_DEST_WEBHOOK, HTTP_ERR_TIMEOUT, 0, "", ALERT_RETRY },
    { ALERT_DEST_WEBHOOK, HTTP_ERR_CONNECT, 0, "", ALERT_RETRY },
    { ALERT_DEST_WEBHOOK, HTTP_ERR_RECV, 0, "", ALERT_RETRY },
    { ALERT_DEST_WEBHOOK, HTTP_ERR_TLS, 0, "", ALERT_RETRY },
    { ALERT_DEST_WEBHOOK, HTTP_ERR_CONFIG, 0, "", ALERT_CONFIG },
};

START_TEST(test_alert_classify)
{
    const struct classify_case *c = &classify_cases[_i];
    struct http_response r = { .error = c->error, .status = c->status, .retry_after_s = -1 };

    (void)snprintf(r.body, sizeof(r.body), "%s", c->body);
    r.body_len = strlen(r.body);
    ck_assert_msg(alert_classify(c->type, &r) == c->want, "case %d: %s, want %s", _i,
                  alert_outcome_name(alert_classify(c->type, &r)), alert_outcome_name(c->want));
}
END_TEST

START_TEST(test_alert_backoff)
{
    /* full jitter: within [0, min(cap, base * 2^(n-1))] and reaching both ends */
    for (unsigned a = 1; a <= 20; a++) {
        int64_t ceiling = ALERT_BACKOFF_BASE_MS;
        for (unsigned i = 1; i < a; i++)
            ceiling = ceiling * 2 > ALERT_BACKOFF_CAP_MS ? ALERT_BACKOFF_CAP_MS : ceiling * 2;
        ck_assert_int_eq(alert_backoff_ms(a, -1, 0), 0);
        ck_assert_int_eq(alert_backoff_ms(a, -1, (uint64_t)ceiling), ceiling);
        for (uint64_t r = 1; r < 1000000; r = r * 7 + 3)
            ck_assert_int_le(alert_backoff_ms(a, -1, r * 2654435761u), ceiling);
    }
    ck_assert_int_eq(alert_backoff_ms(1000, -1, UINT64_MAX),
                     UINT64_MAX % (ALERT_BACKOFF_CAP_MS + 1));
    /* Retry-After is a floor, clamped to an hour */
    ck_assert_int_eq(alert_backoff_ms(1, 7, 0), 7000);
    ck_assert_int_eq(alert_backoff_ms(12, 0, 5000), 5000);
    ck_assert_int_eq(alert_backoff_ms(1, 99999, 0), HTTP_RETRY_AFTER_MAX_S * 1000LL);
}
END_TEST

START_TEST(test_alert_bucket)
{
    struct alert_bucket b;
    int64_t t = 1000;
    int sent = 0;

    alert_bucket_init(&b, 1.0, 3.0, t);
    for (int i = 0; i < 3; i++)
        ck_assert(alert_bucket_take(&b, t));
    ck_assert(!alert_bucket_take(&b, t));
    ck_assert_int_gt(alert_bucket_wait_ms(&b, t), 900);
    ck_assert_int_le(alert_bucket_wait_ms(&b, t), 1001);
    /* over 60 s at 1/s: at most 60 more */
    for (int64_t ms = 0; ms <= 60000; ms += 50)
        sent += alert_bucket_take(&b, t + ms);
    ck_assert_int_le(sent, 61);
    ck_assert_int_ge(sent, 59);
    /* a 429 halves the rate for ten minutes */
    t += 60000;
    alert_bucket_slow(&b, t);
    sent = 0;
    for (int64_t ms = 50; ms <= 60000; ms += 50)
        sent += alert_bucket_take(&b, t + ms);
    ck_assert_int_le(sent, 31);
    ck_assert_int_ge(sent, 29);
    t += ALERT_SLOW_MS + 1000;
    (void)alert_bucket_take(&b, t); /* refill at the slow rate up to here, capped */
    ck_assert(alert_bucket_take(&b, t));
    ck_assert_int_le(alert_bucket_wait_ms(&b, t + 1), 1001);
}
END_TEST

static Suite *
alert_suite(void)
{
    Suite *s = suite_create("alert");
    TCase *tc = tcase_create("webhooks");

    tcase_add_test(tc, test_alert_sign_vector);
    tcase_add_test(tc, test_alert_sign_bad);
    tcase_add_test(tc, test_alert_sign_rotation_python);
    suite_add_tcase(s, tc);
    tc = tcase_create("text");
    tcase_add_loop_test(tc, test_alert_text, 0, (int)N_ELEMS(text_cases));
    tcase_add_test(tc, test_alert_text_full);
    suite_add_tcase(s, tc);
    tc = tcase_create("delivery");
    tcase_add_loop_test(tc, test_alert_classify, 0, (int)N_ELEMS(classify_cases));
    tcase_add_test(tc, test_alert_backoff);
    tcase_add_test(tc, test_alert_bucket);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(alert_suite());
}
