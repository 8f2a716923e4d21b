/*
 * check_signals.c - the engine's signals across identities: a campaign of mailboxes and
 * scripts each under every limit trips all of them with the key and their list, a spam
 * trap trips its sender at once, queued messages per identity (arrival without Completed),
 * and failed/deferred ratios over a minimum of recipients, evaluated on delivery lines.
 */
#include <stdio.h>
#include <string.h>

#include <check.h>

#include "engine.h"
#include "testrun.h"

static const char signals_yaml[] =
    "mode: monitor\n"
    "exempt:\n"
    "  mailboxes: [vip@example.com]\n"
    "rules:\n"
    "  - {name: camp, scope: campaign, metric: identities, key: subject, window: 30m,\n"
    "     above: 4, learn: 0s, actions: [freeze, hold, alert]}\n"
    "  - {name: camp-domains, scope: campaign, metric: identities, key: domains, window: 30m,\n"
    "     above: 3, learn: 0s, min_domains: 3, actions: [alert]}\n"
    "  - {name: trap, scope: trap, actions: [freeze, hold]}\n"
    "  - {name: queued, scope: mailbox, metric: queued, above: 2, actions: [alert]}\n"
    "  - {name: fail-ratio, scope: mailbox, metric: fail_ratio, window: 1h, above: 0.5,\n"
    "     min: 4, actions: [alert]}\n"
    "  - {name: defer-ratio, scope: script, metric: defer_ratio, window: 1h, above: 0.5,\n"
    "     min: 2, actions: [alert]}\n"
    "traps:\n"
    "  addresses: [Trap@Spam-Trap.example]\n"
    "  domains: [honeypot.example]\n";

struct signals_fixture {
    struct config *cfg;
    struct attrib_maps *maps;
    struct engine *e;
    struct engine_notice notes[ENGINE_NOTICES_MAX];
    uint64_t line;
    unsigned seq;
};

static struct signals_fixture fx;

static void
signals_setup(void)
{
    struct engine_params ep = { 0 };
    static const char ud[] = "example.com: acct1\nother.org: acct2\nthird.net: acct3\n";
    struct diag d;
    char buf[512];
    int r;

    memset(&fx, 0, sizeof(fx));
    r = config_parse(signals_yaml, strlen(signals_yaml), "test.yml", &fx.cfg, &d);
    diag_format(&d, buf, sizeof(buf));
    ck_assert_msg(r == 0, "%s", buf);
    fx.maps = attrib_maps_new(ep.key);
    ck_assert_int_eq(attrib_maps_add(fx.maps, ud, strlen(ud), true, NULL), 3);
    ep.cfg = fx.cfg;
    ep.maps = fx.maps;
    ck_assert_int_eq(engine_new(&ep, &fx.e), 0);
}

static void
signals_teardown(void)
{
    engine_free(fx.e);
    attrib_maps_free(fx.maps);
    config_free(fx.cfg);
}

static size_t
feed(const char *text)
{
    struct eximlog_record rec = { .text = text, .len = strlen(text) };

    return engine_feed(fx.e, &rec, ++fx.line, fx.notes, ENGINE_NOTICES_MAX);
}

/* An SMTP AUTH submission at 10:MM:SS; writes its id to @id. Returns the notices. */
static size_t
smtp(int min, int sec, const char *box, const char *subject, const char *rcpts, char *id)
{
    char line[1024];

    (void)snprintf(id, 17, "1vwqhc-%06u-xm", ++fx.seq);
    (void)snprintf(line, sizeof(line),
                   "2026-03-02 10:%02d:%02d %s <= %s H=(pc) [192.0.2.7]:4000 P=esmtpsa "
                   "A=dovecot_login:%s S=1200 T=\"%s\" for %s",
                   min, sec, id, box, box, subject, rcpts);
    return feed(line);
}

/* A PHP script's submission (cwd= then the arrival). */
static size_t
script(int min, int sec, const char *acct, const char *dir, const char *subject, const char *rcpts,
       char *id)
{
    char line[1024];

    (void)snprintf(line, sizeof(line), "2026-03-02 10:%02d:%02d [%u] cwd=%s 3 args: "
                   "/usr/sbin/sendmail -t -i", min, sec, 5000 + fx.seq, dir);
    (void)feed(line);
    (void)snprintf(id, 17, "1vwqhc-%06u-xm", ++fx.seq);
    (void)snprintf(line, sizeof(line),
                   "2026-03-02 10:%02d:%02d [%u] %s <= %s@server.example U=%s P=local S=900 "
                   "T=\"%s\" for %s",
                   min, sec, 5000 + fx.seq - 1, id, acct, acct, subject, rcpts);
    return feed(line);
}

static size_t
trips(size_t n, const char *rule)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++)
        if (fx.notes[i].kind == ENGINE_TRIP && strcmp(fx.notes[i].verdict.rule_name, rule) == 0)
            k++;
    return k;
}

static const struct engine_notice *
find_trip(size_t n, const char *rule, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (fx.notes[i].kind == ENGINE_TRIP && strcmp(fx.notes[i].verdict.rule_name, rule) == 0 &&
            strcmp(fx.notes[i].id, id) == 0)
            return &fx.notes[i];
    return NULL;
}

START_TEST(test_signals_campaign)
{
    static const char *const boxes[] = { "a@example.com", "b@example.com", "c@other.org",
                                         "d@third.net" };
    const struct engine_notice *t;
    char id[20];
    size_t n;

    /* four mailboxes, each one message, subjects varied the way a template varies them */
    ck_assert_uint_eq(smtp(0, 1, boxes[0], "Your parcel 1234 is waiting", "x@gmail.com", id), 0);
    ck_assert_uint_eq(smtp(1, 1, boxes[1], "YOUR PARCEL #99-A is  waiting!", "y@gmail.com", id), 0);
    ck_assert_uint_eq(smtp(2, 1, boxes[2], "your parcel 7 is waiting", "z@gmail.com", id), 0);
    ck_assert_uint_eq(smtp(3, 1, boxes[3], "Y\\320\\276ur parcel 55 is waiting", "w@gmail.com",
                           id), 0);
    /* a script is the fifth identity: the campaign trips all five at once */
    n = script(4, 1, "acct1", "/home/acct1/public_html/wp", "Your parcel 0 is waiting",
               "v@gmail.com", id);
    ck_assert_uint_eq(trips(n, "camp"), 5);
    for (size_t i = 0; i < N_ELEMS(boxes); i++) {
        t = find_trip(n, "camp", boxes[i]);
        ck_assert_msg(t != NULL, "%s not tripped", boxes[i]);
        ck_assert_int_eq(t->scope, SCOPE_MAILBOX);
        ck_assert_uint_eq(t->verdict.value, 5);
        ck_assert_uint_eq(t->verdict.actions, CONFIG_ACTION_FREEZE | CONFIG_ACTION_HOLD |
                                                  CONFIG_ACTION_ALERT);
        ck_assert_ptr_nonnull(strstr(t->detail, "campaign subject \"your parcel # is waiting\""));
        ck_assert_ptr_nonnull(strstr(t->detail, "a@example.com, b@example.com, c@other.org"));
    }
    t = find_trip(n, "camp", "acct1:/home/acct1/public_html/wp");
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t->account, "acct1");
    /* the freeze path finds each member's queued messages */
    {
        char q[4][MSGTRACK_ID_MAX + 1];
        ck_assert_uint_eq(engine_queued(fx.e, find_trip(n, "camp", boxes[2]), q, 4), 1);
    }
    /* a sixth sender joins later and trips alone; a member sending again does not */
    n = smtp(5, 1, "e@example.com", "your parcel 8 is waiting", "u@gmail.com", id);
    ck_assert_uint_eq(trips(n, "camp"), 1);
    ck_assert_ptr_nonnull(find_trip(n, "camp", "e@example.com"));
    ck_assert_uint_eq(trips(smtp(6, 1, boxes[0], "your parcel 9 is waiting", "u@gmail.com", id),
                            "camp"),
                      0);
    /* an exempt mailbox in the campaign is never tripped */
    ck_assert_uint_eq(trips(smtp(7, 1, "vip@example.com", "your parcel 10 is waiting",
                                 "u@gmail.com", id),
                            "camp"),
                      0);
    ck_assert_uint_eq(engine_stats(fx.e)->campaign_trips, 1);
}
END_TEST

START_TEST(test_signals_campaign_domains)
{
    char id[20];
    size_t n = 0;

    /* the same three recipient domains from four mailboxes, subjects all different */
    smtp(0, 1, "a@example.com", "hello there", "p@alpha.example q@beta.example r@gamma.example",
         id);
    smtp(0, 2, "b@example.com", "meeting notes", "x@gamma.example y@alpha.example z@beta.example",
         id);
    /* two domains only: not a key (min_domains 3) */
    smtp(0, 3, "c@other.org", "other thing", "x@gamma.example y@alpha.example", id);
    smtp(0, 4, "c@other.org", "quarterly", "s@beta.example t@alpha.example u@gamma.example", id);
    n = smtp(0, 5, "d@third.net", "lunch", "Q@Alpha.example w@beta.example v@gamma.example", id);
    ck_assert_uint_eq(trips(n, "camp-domains"), 4);
    ck_assert_ptr_nonnull(
        strstr(find_trip(n, "camp-domains", "a@example.com")->detail,
               "campaign domains \"alpha.example beta.example gamma.example\": 4 identities"));
    ck_assert_uint_eq(trips(n, "camp"), 0);
}
END_TEST

START_TEST(test_signals_trap)
{
    const struct engine_notice *t;
    char id[20];
    size_t n;

    ck_assert_uint_eq(smtp(0, 1, "a@example.com", "hi", "x@gmail.com y@spam-trap.example", id), 0);
    n = smtp(0, 2, "a@example.com", "hi", "x@gmail.com TRAP@spam-trap.EXAMPLE", id);
    ck_assert_uint_eq(trips(n, "trap"), 1);
    t = find_trip(n, "trap", "a@example.com");
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t->detail, "trap TRAP@spam-trap.EXAMPLE");
    ck_assert_str_eq(t->msgid, id);
    /* once per identity; a script's trap hit names the script */
    ck_assert_uint_eq(trips(smtp(0, 3, "a@example.com", "hi", "k@honeypot.example", id), "trap"),
                      0);
    n = script(0, 4, "acct2", "/home/acct2/public_html", "x", "anyone@honeypot.example", id);
    ck_assert_ptr_nonnull(find_trip(n, "trap", "acct2:/home/acct2/public_html"));
    /* a subdomain of a trap domain is not the trap domain */
    ck_assert_uint_eq(trips(smtp(0, 5, "b@example.com", "hi", "k@sub.honeypot.example", id),
                            "trap"),
                      0);
    ck_assert_uint_eq(engine_stats(fx.e)->trap_hits, 3);
}
END_TEST

START_TEST(test_signals_queued)
{
    char ids[4][20], line[256];
    size_t n;

    ck_assert_uint_eq(trips(smtp(0, 1, "q@example.com", "a", "x@gmail.com", ids[0]), "queued"),
                      0);
    ck_assert_uint_eq(trips(smtp(0, 2, "q@example.com", "b", "x@gmail.com", ids[1]), "queued"),
                      0);
    /* one completes: still two queued after the next arrival, not three */
    (void)snprintf(line, sizeof(line), "2026-03-02 10:00:03 %s Completed", ids[0]);
    feed(line);
    ck_assert_uint_eq(trips(smtp(0, 4, "q@example.com", "c", "x@gmail.com", ids[2]), "queued"),
                      0);
    n = smtp(0, 5, "q@example.com", "d", "x@gmail.com", ids[3]);
    ck_assert_uint_eq(trips(n, "queued"), 1);
    ck_assert_uint_eq(find_trip(n, "queued", "q@example.com")->verdict.value, 3);
}
END_TEST

START_TEST(test_signals_ratios)
{
    char id[20], line[512];
    size_t n = 0;

    /* 4 recipients, 2 fail: 0.5 is not above 0.5; the third failure trips on its line */
    smtp(0, 1, "f@example.com", "a", "a1@gmail.com a2@gmail.com a3@gmail.com a4@gmail.com", id);
    for (int i = 1; i <= 3; i++) {
        (void)snprintf(line, sizeof(line),
                       "2026-03-02 10:00:%02d %s ** a%d@gmail.com R=dkim_lookuphost "
                       "T=dkim_remote_smtp: retry timeout exceeded",
                       10 + i, id, i);
        n = feed(line);
        ck_assert_uint_eq(trips(n, "fail-ratio"), i == 3 ? 1 : 0);
    }
    ck_assert_uint_eq(find_trip(n, "fail-ratio", "f@example.com")->verdict.value, 3);
    ck_assert_uint_eq(find_trip(n, "fail-ratio", "f@example.com")->verdict.threshold, 2);
    /* under the minimum of recipients nothing trips, whatever the ratio */
    smtp(0, 30, "g@example.com", "a", "b1@gmail.com b2@gmail.com b3@gmail.com", id);
    for (int i = 1; i <= 3; i++) {
        (void)snprintf(line, sizeof(line),
                       "2026-03-02 10:00:%02d %s ** b%d@gmail.com R=dkim_lookuphost "
                       "T=dkim_remote_smtp: retry timeout exceeded",
                       30 + i, id, i);
        ck_assert_uint_eq(trips(feed(line), "fail-ratio"), 0);
    }
    /* deferrals of a script; retry-time-not-reached repeats are not deferrals */
    script(1, 0, "acct3", "/home/acct3/public_html", "x", "c1@gmail.com c2@gmail.com", id);
    (void)snprintf(line, sizeof(line),
                   "2026-03-02 10:01:05 %s == c1@gmail.com R=dkim_lookuphost T=dkim_remote_smtp "
                   "defer (-54): retry time not reached for any host for 'gmail.com'",
                   id);
    ck_assert_uint_eq(trips(feed(line), "defer-ratio"), 0);
    (void)snprintf(line, sizeof(line),
                   "2026-03-02 10:01:06 %s == c1@gmail.com R=dkim_lookuphost T=dkim_remote_smtp "
                   "defer (110): Connection timed out H=mx [192.0.2.9]",
                   id);
    ck_assert_uint_eq(trips(feed(line), "defer-ratio"), 0);
    (void)snprintf(line, sizeof(line),
                   "2026-03-02 10:01:07 %s == c2@gmail.com R=dkim_lookuphost T=dkim_remote_smtp "
                   "defer (110): Connection timed out H=mx [192.0.2.9]",
                   id);
    n = feed(line);
    ck_assert_uint_eq(trips(n, "defer-ratio"), 1);
    ck_assert_ptr_nonnull(find_trip(n, "defer-ratio", "acct3:/home/acct3/public_html"));
}
END_TEST

START_TEST(test_signals_reload_keeps_campaigns)
{
    struct config *cfg2;
    struct diag d;
    char id[20];

    for (int i = 0; i < 4; i++) {
        char box[32];
        (void)snprintf(box, sizeof(box), "m%d@example.com", i);
        ck_assert_uint_eq(smtp(0, i, box, "summer sale", "x@gmail.com", id), 0);
    }
    /* the same rules again: the campaign table and what it learnt survive the reload */
    ck_assert_int_eq(config_parse(signals_yaml, strlen(signals_yaml), "test.yml", &cfg2, &d), 0);
    ck_assert_int_eq(engine_set_config(fx.e, cfg2), 0);
    config_free(fx.cfg);
    fx.cfg = cfg2;
    ck_assert_uint_eq(trips(smtp(0, 9, "m9@example.com", "Summer sale!", "x@gmail.com", id), "camp"),
                      5);
}
END_TEST

static Suite *
signals_suite(void)
{
    Suite *s = suite_create("signals");
    TCase *tc = tcase_create("engine");

    tcase_add_checked_fixture(tc, signals_setup, signals_teardown);
    tcase_add_test(tc, test_signals_campaign);
    tcase_add_test(tc, test_signals_campaign_domains);
    tcase_add_test(tc, test_signals_trap);
    tcase_add_test(tc, test_signals_queued);
    tcase_add_test(tc, test_signals_ratios);
    tcase_add_test(tc, test_signals_reload_keeps_campaigns);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(signals_suite());
}
