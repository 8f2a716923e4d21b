/*
 * check_engine.c - the pipeline from records to notices: trips on the right identity and
 * only once, queued ids per identity, delivery lines counted against their message's
 * identities, our own consequences and retry repeats never counted, release and
 * cooldown, a forged cwd= record never counted, reload keeping or resetting counters.
 */
#include <stdio.h>
#include <string.h>

#include <check.h>

#include "engine.h"
#include "testrun.h"

static const char engine_test_yaml[] = "mode: monitor\n"
                                       "cooldown: 10m\n"
                                       "rules:\n"
                                       "  - name: box-msgs\n"
                                       "    scope: mailbox\n"
                                       "    metric: messages\n"
                                       "    window: 1m\n"
                                       "    above: 3\n"
                                       "    actions: [freeze, suspend, alert]\n"
                                       "  - name: box-failed\n"
                                       "    scope: mailbox\n"
                                       "    metric: failed\n"
                                       "    window: 10m\n"
                                       "    above: 2\n"
                                       "    actions: [alert]\n"
                                       "  - name: box-deferred\n"
                                       "    scope: mailbox\n"
                                       "    metric: deferred\n"
                                       "    window: 10m\n"
                                       "    above: 2\n"
                                       "    actions: [alert]\n"
                                       "  - name: script-msgs\n"
                                       "    scope: script\n"
                                       "    metric: messages\n"
                                       "    window: 1m\n"
                                       "    above: 2\n"
                                       "    actions: [freeze, hold, alert]\n";

struct engine_fixture {
    struct config *cfg;
    struct attrib_maps *maps;
    struct engine *e;
    struct engine_notice notes[ENGINE_NOTICES_MAX];
    uint64_t line;
};

static struct engine_fixture fx;

static void
engine_setup(void)
{
    struct engine_params ep = { 0 };
    static const char ud[] = "example.com: acct1\nother.org: acct2\n";
    struct diag d;

    memset(&fx, 0, sizeof(fx));
    ck_assert_int_eq(
        config_parse(engine_test_yaml, strlen(engine_test_yaml), "test.yml", &fx.cfg, &d), 0);
    fx.maps = attrib_maps_new(ep.key);
    ck_assert_int_eq(attrib_maps_add(fx.maps, ud, strlen(ud), true, NULL), 2);
    ep.cfg = fx.cfg;
    ep.maps = fx.maps;
    ck_assert_int_eq(engine_new(&ep, &fx.e), 0);
}

static void
engine_teardown(void)
{
    engine_free(fx.e);
    attrib_maps_free(fx.maps);
    config_free(fx.cfg);
}

/* Feed one record; returns the number of notices. */
static size_t
engine_feed_text(const char *text)
{
    struct eximlog_record rec = { .text = text, .len = strlen(text) };

    return engine_feed(fx.e, &rec, ++fx.line, fx.notes, ENGINE_NOTICES_MAX);
}

static size_t
engine_smtp(const char *t, const char *id, const char *box, const char *from)
{
    char line[512];

    (void)snprintf(line, sizeof(line),
                   "2026-03-02 10:%s %s <= %s H=(pc) [192.0.2.7]:4000 P=esmtpsa "
                   "A=dovecot_login:%s S=1200 for a@gmail.com",
                   t, id, from ? from : box, box);
    return engine_feed_text(line);
}

static size_t
engine_count_trips(size_t n, const char *rule)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++)
        if (fx.notes[i].kind == ENGINE_TRIP && strcmp(fx.notes[i].verdict.rule_name, rule) == 0)
            k++;
    return k;
}

START_TEST(test_engine_trips_once_on_mailbox)
{
    static const char *const ids[] = { "1vwqhc-00CLY1-xm", "1vwqhc-00CLY2-xm", "1vwqhc-00CLY3-xm",
                                       "1vwqhc-00CLY4-xm", "1vwqhc-00CLY5-xm" };
    char q[8][MSGTRACK_ID_MAX + 1];
    size_t n;

    for (int i = 0; i < 3; i++)
        ck_assert_uint_eq(engine_smtp("00:0"
                                      "1",
                                      ids[i], "Box@Example.com", NULL),
                          0);
    n = engine_smtp("00:02", ids[3], "box@example.com", NULL);
    ck_assert_uint_eq(engine_count_trips(n, "box-msgs"), 1);
    ck_assert_str_eq(fx.notes[0].id, "box@example.com");
    ck_assert_str_eq(fx.notes[0].account, "acct1");
    ck_assert_str_eq(fx.notes[0].at, "2026-03-02 10:00:02");
    ck_assert_uint_eq(fx.notes[0].line, 4);
    ck_assert_uint_eq(fx.notes[0].verdict.value, 4);
    /* the four queued messages of that mailbox, oldest first */
    ck_assert_uint_eq(engine_queued(fx.e, &fx.notes[0], q, 8), 4);
    ck_assert_str_eq(q[0], ids[0]);
    ck_assert_str_eq(q[3], ids[3]);
    /* once tripped, further messages are reported as arrivals of a tripped identity */
    n = engine_smtp("00:03", ids[4], "box@example.com", NULL);
    ck_assert_uint_eq(engine_count_trips(n, "box-msgs"), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(fx.notes[0].kind, ENGINE_TRIPPED_ARRIVAL);
    ck_assert_str_eq(fx.notes[0].msgid, ids[4]);
    /* Completed removes a message from the queue */
    engine_feed_text("2026-03-02 10:00:04 1vwqhc-00CLY1-xm Completed");
    n = engine_smtp("00:05", "1vwqhc-00CLY6-xm", "box@example.com", NULL);
    ck_assert_uint_eq(engine_queued(fx.e, &fx.notes[0], q, 8), 5);
    ck_assert_str_eq(q[0], ids[1]);
}
END_TEST

START_TEST(test_engine_other_mailboxes_do_not_trip)
{
    char id[32], box[64];

    for (int i = 0; i < 50; i++) {
        (void)snprintf(id, sizeof(id), "1vwqhc-00C%03d-xm", i);
        (void)snprintf(box, sizeof(box), "u%d@example.com", i % 17);
        ck_assert_uint_eq(engine_count_trips(engine_smtp("00:01", id, box, NULL), "box-msgs"), 0);
    }
    ck_assert_uint_eq(engine_stats(fx.e)->outbound, 50);
}
END_TEST

START_TEST(test_engine_frozen_by_acl)
{
    char id[32];
    size_t n = 0;

    for (int i = 0; i < 4; i++) {
        (void)snprintf(id, sizeof(id), "1vwqhc-00JJJ%d-xm", i);
        n = engine_smtp("00:01", id, "box@example.com", NULL);
    }
    ck_assert_uint_eq(engine_count_trips(n, "box-msgs"), 1);
    /* a tripped identity's message frozen by the ACL: reported for adoption */
    n = engine_feed_text("2026-03-02 10:00:02 1vwqhc-00JJJ3-xm frozen by ACL");
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(fx.notes[0].kind, ENGINE_FROZEN_BY_ACL);
    ck_assert_int_eq(fx.notes[0].scope, SCOPE_MAILBOX);
    ck_assert_str_eq(fx.notes[0].id, "box@example.com");
    ck_assert_str_eq(fx.notes[0].msgid, "1vwqhc-00JJJ3-xm");
    /* frozen by an administrator, or a message of an identity that did not trip: nothing */
    ck_assert_uint_eq(engine_feed_text("2026-03-02 10:00:02 1vwqhc-00JJJ2-xm frozen by root"), 0);
    engine_smtp("00:03", "1vwqhc-00KKK1-xm", "calm@example.com", NULL);
    ck_assert_uint_eq(engine_feed_text("2026-03-02 10:00:04 1vwqhc-00KKK1-xm frozen by ACL"), 0);
}
END_TEST

START_TEST(test_engine_not_outbound)
{
    /* inbound, bounce, cPanel service sender, local-only recipients */
    engine_feed_text("2026-03-02 10:00:01 1vwqhc-00AAA1-xm <= x@gmail.com H=mx.gmail.com "
                     "[192.0.2.9]:25 P=esmtps S=100 for box@example.com");
    engine_feed_text("2026-03-02 10:00:01 1vwqhc-00AAA2-xm <= <> R=1vwqhc-00AAA1-xm U=mailnull "
                     "P=local S=100 for box@example.com");
    engine_feed_text("2026-03-02 10:00:01 1vwqhc-00AAA3-xm <= a@example.com H=(h) [127.0.0.1]:1 "
                     "P=esmtpa A=dovecot_login:__cpanel__service__auth__icontact__x S=100 "
                     "for z@gmail.com");
    engine_feed_text("2026-03-02 10:00:01 1vwqhc-00AAA4-xm <= a@example.com H=(h) [192.0.2.1]:1 "
                     "P=esmtpa A=dovecot_login:a@example.com S=100 for b@other.org");
    ck_assert_uint_eq(engine_stats(fx.e)->arrivals, 4);
    ck_assert_uint_eq(engine_stats(fx.e)->outbound, 0);
    ck_assert_uint_eq(engine_stats(fx.e)->inbound, 1);
    ck_assert_uint_eq(engine_stats(fx.e)->bounces, 1);
    ck_assert_uint_eq(engine_stats(fx.e)->service, 1);
    ck_assert_uint_eq(engine_stats(fx.e)->local_only, 1);
    ck_assert_uint_eq(usertable_count(engine_table(fx.e)), 0);
}
END_TEST

START_TEST(test_engine_failures_and_deferrals)
{
    size_t n = 0, trips = 0;

    engine_smtp("00:01", "1vwqhc-00BBB1-xm", "box@example.com", NULL);
    /* our own hold and retry repeats never count */
    for (int i = 0; i < 5; i++) {
        engine_feed_text("2026-03-02 10:00:02 1vwqhc-00BBB1-xm == a@gmail.com "
                         "R=enforce_mail_permissions defer (-1): \"Sender box@example.com has "
                         "an outgoing mail hold.\"");
        engine_feed_text("2026-03-02 10:00:02 1vwqhc-00BBB1-xm == a@gmail.com R=dkim_lookuphost "
                         "T=dkim_remote_smtp defer (-53): retry time not reached");
    }
    ck_assert_uint_eq(engine_stats(fx.e)->trips, 0);
    for (int i = 0; i < 3; i++) {
        n = engine_feed_text("2026-03-02 10:00:03 1vwqhc-00BBB1-xm == a@gmail.com "
                             "R=dkim_lookuphost T=dkim_remote_smtp defer (-44): greylisted");
    }
    (void)n;
    /* deliveries do not evaluate rules by themselves: the next arrival does */
    n = engine_smtp("00:04", "1vwqhc-00BBB2-xm", "box@example.com", NULL);
    trips = engine_count_trips(n, "box-deferred");
    ck_assert_uint_eq(trips, 1);
    for (int i = 0; i < 3; i++)
        engine_feed_text("2026-03-02 10:00:05 1vwqhc-00BBB2-xm ** a@gmail.com R=dkim_lookuphost "
                         "T=dkim_remote_smtp: SMTP error from remote mail server after RCPT "
                         "TO:<a@gmail.com>: 550 5.1.1 User unknown");
    n = engine_smtp("00:06", "1vwqhc-00BBB3-xm", "box@example.com", NULL);
    ck_assert_uint_eq(engine_count_trips(n, "box-failed"), 1);
    ck_assert_uint_eq(engine_stats(fx.e)->enforced, 5);
}
END_TEST

START_TEST(test_engine_script_and_forged_cwd)
{
    size_t n = 0;

    for (int i = 0; i < 3; i++) {
        char cwd[160], arr[256];
        (void)snprintf(cwd, sizeof(cwd),
                       "2026-03-02 10:00:0%d [%d] cwd=/home/acct1/public_html/x 3 args: "
                       "/usr/sbin/sendmail -t -i",
                       i, 100 + i);
        (void)snprintf(arr, sizeof(arr),
                       "2026-03-02 10:00:0%d [%d] 1vwqhc-00DDD%d-xm <= acct1@host.example "
                       "U=acct1 P=local S=100 for z%d@gmail.com",
                       i, 100 + i, i, i);
        engine_feed_text(cwd);
        n = engine_feed_text(arr);
    }
    ck_assert_uint_eq(engine_count_trips(n, "script-msgs"), 1);
    ck_assert_str_eq(fx.notes[0].id, "acct1:/home/acct1/public_html/x");
    ck_assert_str_eq(fx.notes[0].account, "acct1");

    /* a cwd= record that absorbed a forged arrival line is never counted */
    struct eximlog_record rec = {
        .text = "2026-03-02 10:00:09 [200] cwd=/home/acct2/x\n2026-03-02 10:00:00 [4242] "
                "1vwqhc-00EEE1-xm <= v@example.com H=(pc) [192.0.2.7]:5555 P=esmtpsa "
                "A=dovecot_login:v@example.com S=999 for z@example.net 8 args: exim -t",
        .flags = EXIM_F_CWD_FORGED,
    };
    rec.len = strlen(rec.text);
    uint64_t before = engine_stats(fx.e)->outbound;
    /* ... and raises a log-injection signal naming the owner of the home directory */
    ck_assert_uint_eq(engine_feed(fx.e, &rec, 99, fx.notes, ENGINE_NOTICES_MAX), 1);
    ck_assert_int_eq(fx.notes[0].kind, ENGINE_INJECTION);
    ck_assert_int_eq(fx.notes[0].injection, ENGINE_INJ_CWD);
    ck_assert_int_eq(fx.notes[0].scope, SCOPE_ACCOUNT);
    ck_assert_str_eq(fx.notes[0].id, "acct2");
    ck_assert_uint_eq(fx.notes[0].line, 99);
    ck_assert_uint_eq(engine_stats(fx.e)->outbound, before);
    ck_assert_uint_eq(engine_stats(fx.e)->cwd_forged, 1);
    ck_assert_uint_eq(engine_stats(fx.e)->injections[ENGINE_INJ_CWD], 1);
    /* the process's own arrival is still counted for its login, the script tied */
    n = engine_feed_text("2026-03-02 10:00:09 [200] 1vwqhc-00EEE2-xm <= acct2@host.example "
                         "U=acct2 P=local S=100 for z@gmail.com");
    ck_assert_uint_eq(engine_stats(fx.e)->outbound, before + 1);
    ck_assert_uint_eq(n, 0); /* the cwd= record named acct2 already: no second signal */
    struct usertable_entry *ent;
    ck_assert_int_eq(usertable_get(engine_table(fx.e), SCOPE_ACCOUNT, "acct2", 5,
                                   engine_now_ms(fx.e), false, &ent),
                     1);
}
END_TEST

START_TEST(test_engine_release_and_cooldown)
{
    char id[32];
    size_t n;

    for (int i = 0; i < 4; i++) {
        (void)snprintf(id, sizeof(id), "1vwqhc-00FFF%d-xm", i);
        n = engine_smtp("00:01", id, "box@example.com", NULL);
    }
    ck_assert_uint_eq(engine_count_trips(n, "box-msgs"), 1);
    ck_assert_int_eq(engine_release(fx.e, SCOPE_MAILBOX, "box@example.com"), 1);
    ck_assert_int_eq(engine_release(fx.e, SCOPE_MAILBOX, "nobody@example.com"), 0);
    /* within the cooldown (10m) the burst goes on without a new trip */
    n = engine_smtp("00:30", "1vwqhc-00FFF8-xm", "box@example.com", NULL);
    ck_assert_uint_eq(engine_count_trips(n, "box-msgs"), 0);
    ck_assert_uint_eq(n, 0); /* released: no longer a tripped identity */
    /* after it, the next burst trips again */
    for (int i = 0; i < 4; i++) {
        (void)snprintf(id, sizeof(id), "1vwqhc-00GGG%d-xm", i);
        n = engine_smtp("12:00", id, "box@example.com", NULL);
    }
    ck_assert_uint_eq(engine_count_trips(n, "box-msgs"), 1);
}
END_TEST

START_TEST(test_engine_time_never_goes_back)
{
    engine_smtp("05:00", "1vwqhc-00HHH1-xm", "box@example.com", NULL);
    engine_smtp("01:00", "1vwqhc-00HHH2-xm", "box@example.com", NULL);
    ck_assert_int_eq(engine_now_ms(fx.e),
                     util_days_from_civil(2026, 3, 2) * 86400000 + (10 * 3600 + 5 * 60) * 1000LL);
}
END_TEST

START_TEST(test_engine_reload)
{
    static const char same[] = "rules:\n  - name: renamed\n    scope: mailbox\n    metric: "
                               "messages\n    window: 1m\n    above: 3\n    actions: [alert]\n"
                               "  - name: b\n    scope: mailbox\n    metric: failed\n"
                               "    window: 10m\n    above: 2\n    actions: [alert]\n"
                               "  - name: c\n    scope: mailbox\n    metric: deferred\n"
                               "    window: 10m\n    above: 2\n    actions: [alert]\n"
                               "  - name: d\n    scope: script\n    metric: messages\n"
                               "    window: 1m\n    above: 2\n    actions: [alert]\n";
    static const char other[] = "rules:\n  - name: x\n    scope: mailbox\n    metric: messages\n"
                                "    window: 5m\n    above: 3\n    actions: [alert]\n";
    struct config *c1 = NULL, *c2 = NULL;
    struct diag d;

    engine_smtp("00:01", "1vwqhc-00III1-xm", "box@example.com", NULL);
    ck_assert_int_eq(config_parse(same, strlen(same), "same.yml", &c1, &d), 0);
    ck_assert_int_eq(engine_set_config(fx.e, c1), 0); /* same series: counters kept */
    ck_assert_uint_eq(usertable_count(engine_table(fx.e)), 2);
    config_free(fx.cfg);
    fx.cfg = c1;
    ck_assert_int_eq(config_parse(other, strlen(other), "other.yml", &c2, &d), 0);
    ck_assert_int_eq(engine_set_config(fx.e, c2), 1); /* new windows: counters restart */
    ck_assert_uint_eq(usertable_count(engine_table(fx.e)), 0);
    config_free(fx.cfg);
    fx.cfg = c2;
}
END_TEST

START_TEST(test_engine_trips_follow_rule_names)
{
    /* the same series, rules in another order and one removed: the trip stays on its rule */
    static const char moved[] = "rules:\n"
                                "  - name: script-msgs\n    scope: script\n    metric: messages\n"
                                "    window: 1m\n    above: 2\n    actions: [alert]\n"
                                "  - name: box-deferred\n    scope: mailbox\n    metric: deferred\n"
                                "    window: 10m\n    above: 2\n    actions: [alert]\n"
                                "  - name: box-failed\n    scope: mailbox\n    metric: failed\n"
                                "    window: 10m\n    above: 2\n    actions: [alert]\n"
                                "  - name: box-msgs\n    scope: mailbox\n    metric: messages\n"
                                "    window: 1m\n    above: 3\n    actions: [alert]\n";
    static const char rewindowed[] =
        "rules:\n"
        "  - name: box-msgs\n    scope: mailbox\n    metric: messages\n"
        "    window: 5m\n    above: 3\n    actions: [alert]\n";
    struct config *c1 = NULL, *c2 = NULL;
    struct usertable_entry *ent;
    struct diag d;
    char id[32];
    size_t n;

    for (int i = 0; i < 4; i++) {
        (void)snprintf(id, sizeof(id), "1vwqhc-00LLL%d-xm", i);
        n = engine_smtp("00:01", id, "box@example.com", NULL);
    }
    ck_assert_uint_eq(engine_count_trips(n, "box-msgs"), 1);
    ck_assert_int_eq(config_parse(moved, strlen(moved), "moved.yml", &c1, &d), 0);
    ck_assert_int_ge(engine_set_config(fx.e, c1), 0); /* series in another order: rebuilt */
    config_free(fx.cfg);
    fx.cfg = c1;
    ck_assert_int_eq(usertable_get(engine_table(fx.e), SCOPE_MAILBOX, "box@example.com", 15,
                                   engine_now_ms(fx.e), false, &ent),
                     1);
    ck_assert_uint_eq(usertable_entry_policy(ent)->tripped, 1u << 3); /* box-msgs is rule 3 now */
    /* still tripped: more mail is a tripped arrival, not a new trip of another rule */
    n = engine_smtp("00:02", "1vwqhc-00LLL8-xm", "box@example.com", NULL);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(fx.notes[0].kind, ENGINE_TRIPPED_ARRIVAL);
    /* new windows rebuild the table; the trip carries over */
    ck_assert_int_eq(config_parse(rewindowed, strlen(rewindowed), "re.yml", &c2, &d), 0);
    ck_assert_int_eq(engine_set_config(fx.e, c2), 1);
    config_free(fx.cfg);
    fx.cfg = c2;
    n = engine_smtp("00:03", "1vwqhc-00LLL9-xm", "box@example.com", NULL);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(fx.notes[0].kind, ENGINE_TRIPPED_ARRIVAL);
}
END_TEST

START_TEST(test_engine_distinct_domains)
{
    static const char yaml[] = "rules:\n  - name: spread\n    scope: mailbox\n"
                               "    metric: domains\n    window: 10m\n    above: 3\n"
                               "    actions: [alert]\n";
    static const char *const rcpts[] = {
        "a@one.example b@ONE.example", /* one domain, twice */
        "c@two.example d@example.com", /* example.com is local: not counted */
        "e@www.two.example",           /* www. stripped: two.example again */
        "f@three.example",
        "g@four.example",
    };
    struct config *c = NULL;
    struct diag d;
    char line[512];
    size_t n = 0;

    ck_assert_int_eq(config_parse(yaml, strlen(yaml), "d.yml", &c, &d), 0);
    ck_assert_int_ge(engine_set_config(fx.e, c), 0);
    config_free(fx.cfg);
    fx.cfg = c;
    for (size_t i = 0; i < N_ELEMS(rcpts); i++) {
        (void)snprintf(line, sizeof(line),
                       "2026-03-02 10:00:0%zu 1vwqhc-00MMM%zu-xm <= box@example.com H=(pc) "
                       "[192.0.2.7]:4000 P=esmtpsa A=dovecot_login:box@example.com S=1 for %s",
                       i, i, rcpts[i]);
        n = engine_feed_text(line);
        /* one, two, two, three: 3 distinct, not above 3 yet */
        if (i < 4)
            ck_assert_msg(engine_count_trips(n, "spread") == 0, "tripped early at %zu", i);
    }
    ck_assert_uint_eq(engine_count_trips(n, "spread"), 1);
    ck_assert_uint_eq(fx.notes[0].verdict.value, 4);
}
END_TEST

/* Index of the (scope, metric, window) series in the table, or SIZE_MAX. */
static size_t
engine_series_index(enum usertable_scope scope, enum window_metric m, int64_t window_ms)
{
    const struct usertable_params *up = usertable_params(engine_table(fx.e));

    for (size_t i = 0; i < up->nseries[scope]; i++)
        if (up->series[scope][i].metric == m && up->series[scope][i].window_ms == window_ms)
            return i;
    return SIZE_MAX;
}

START_TEST(test_engine_top)
{
    /* messages per mailbox: c 3, a 2, b 2 (a tie, by name), d 1 */
    static const struct {
        const char *box;
        int n;
    } senders[] = { { "d@example.com", 1 }, { "b@example.com", 2 }, { "c@example.com", 3 },
                    { "a@example.com", 2 } };
    struct engine_top_row rows[8];
    char q[8][MSGTRACK_ID_MAX + 1];
    size_t msgs = engine_series_index(SCOPE_MAILBOX, WINDOW_MESSAGES, 60000);
    size_t failed = engine_series_index(SCOPE_MAILBOX, WINDOW_FAILED, 600000);
    int seq = 0;

    ck_assert_uint_ne(msgs, SIZE_MAX);
    ck_assert_uint_ne(failed, SIZE_MAX);
    for (size_t i = 0; i < N_ELEMS(senders); i++)
        for (int k = 0; k < senders[i].n; k++) {
            char id[32];
            (void)snprintf(id, sizeof(id), "1vwqhc-00T%03d-xm", seq++);
            (void)engine_smtp("00:10", id, senders[i].box, NULL);
        }
    ck_assert_uint_eq(engine_top(fx.e, SCOPE_MAILBOX, msgs, rows, 8), 4);
    ck_assert_str_eq(rows[0].id, "c@example.com");
    ck_assert_uint_eq(rows[0].value, 3);
    ck_assert_str_eq(rows[1].id, "a@example.com");
    ck_assert_uint_eq(rows[1].value, 2);
    ck_assert_str_eq(rows[2].id, "b@example.com");
    ck_assert_uint_eq(rows[2].value, 2);
    ck_assert_str_eq(rows[3].id, "d@example.com");
    ck_assert_uint_eq(rows[3].value, 1);
    /* only the best @max are kept, in order */
    ck_assert_uint_eq(engine_top(fx.e, SCOPE_MAILBOX, msgs, rows, 2), 2);
    ck_assert_str_eq(rows[0].id, "c@example.com");
    ck_assert_str_eq(rows[1].id, "a@example.com");
    ck_assert_uint_eq(engine_top(fx.e, SCOPE_MAILBOX, msgs, rows, 1), 1);
    ck_assert_str_eq(rows[0].id, "c@example.com");
    /* identities at 0 are left out; so are other scopes and bad arguments */
    ck_assert_uint_eq(engine_top(fx.e, SCOPE_MAILBOX, failed, rows, 8), 0);
    ck_assert_uint_eq(engine_top(fx.e, SCOPE_ACCOUNT, 0, rows, 8), 0);
    ck_assert_uint_eq(engine_top(fx.e, SCOPE_MAILBOX, 99, rows, 8), 0);
    ck_assert_uint_eq(engine_top(fx.e, SCOPE__MAX, 0, rows, 8), 0);
    ck_assert_uint_eq(engine_top(fx.e, SCOPE_MAILBOX, msgs, rows, 0), 0);
    /* queued ids of one identity, oldest first */
    ck_assert_uint_eq(engine_identity_queued(fx.e, SCOPE_MAILBOX, "c@example.com", q, 8), 3);
    ck_assert_str_eq(q[0], "1vwqhc-00T003-xm");
    ck_assert_str_eq(q[2], "1vwqhc-00T005-xm");
    ck_assert_uint_eq(engine_identity_queued(fx.e, SCOPE_MAILBOX, "c@example.com", q, 2), 2);
    ck_assert_uint_eq(engine_identity_queued(fx.e, SCOPE_MAILBOX, "nobody@example.com", q, 8), 0);
    /* "now" is log time: two minutes later the 1m window has emptied */
    (void)engine_smtp("02:30", "1vwqhc-00T100-xm", "e@example.com", NULL);
    ck_assert_uint_eq(engine_top(fx.e, SCOPE_MAILBOX, msgs, rows, 8), 1);
    ck_assert_str_eq(rows[0].id, "e@example.com");
}
END_TEST


/* --- hostile input ---------------------------------------------------------------- */

static const char hostile_yaml[] = "mode: monitor\n"
                                   "rules:\n"
                                   "  - name: box-hour\n"
                                   "    scope: mailbox\n"
                                   "    metric: messages\n"
                                   "    window: 1h\n"
                                   "    above: 20\n"
                                   "    actions: [alert]\n"
                                   "  - name: box-rcpts\n"
                                   "    scope: mailbox\n"
                                   "    metric: recipients\n"
                                   "    window: 1h\n"
                                   "    above: 100000\n"
                                   "    actions: [alert]\n"
                                   "  - name: acct-hour\n"
                                   "    scope: account\n"
                                   "    metric: messages\n"
                                   "    window: 1h\n"
                                   "    above: 20\n"
                                   "    actions: [alert]\n";

/* A new engine on hostile_yaml (and @wall, NULL for none) in place of the fixture's. */
static void
engine_restart(const struct engine_wall *wall)
{
    struct engine_params ep = { 0 };
    struct diag d;

    engine_free(fx.e);
    config_free(fx.cfg);
    ck_assert_int_eq(config_parse(hostile_yaml, strlen(hostile_yaml), "h.yml", &fx.cfg, &d), 0);
    ep.cfg = fx.cfg;
    ep.maps = fx.maps;
    ep.wall = wall;
    ck_assert_int_eq(engine_new(&ep, &fx.e), 0);
}

static int64_t
engine_log_ms(int day, int h, int m)
{
    return util_days_from_civil(2026, 3, (unsigned)day) * 86400000 + (h * 3600 + m * 60) * 1000LL;
}

/* One SMTP arrival at 2026-03-@day @h:@m from @box; @seq makes the message id. */
static void
engine_arrival_text(char *buf, size_t size, int day, int h, int m, int seq, const char *box)
{
    (void)snprintf(buf, size,
                   "2026-03-%02d %02d:%02d:00 1vwqhc-0%05d-xm <= %s H=(pc) [192.0.2.7]:4000 "
                   "P=esmtpsa A=dovecot_login:%s S=1200 for a@gmail.com",
                   day, h, m, seq, box, box);
}

static const char forged_2099[] = "2099-01-01 00:00:00 1vwqhc-0FORGE-xm <= f@example.com H=(pc) "
                                  "[192.0.2.9]:4000 P=esmtpsa A=dovecot_login:f@example.com "
                                  "S=1 for a@gmail.com";

/* A wall clock for tests: UTC now and the local offset, moved by hand. */
struct engine_test_wall {
    int64_t utc_ms, offset_ms;
};

static int64_t
engine_test_utc(void *ctx)
{
    return ((struct engine_test_wall *)ctx)->utc_ms;
}

static int64_t
engine_test_offset(void *ctx)
{
    return ((struct engine_test_wall *)ctx)->offset_ms;
}

/* Live: one record dated 2099 does not move the clock; 6 messages an hour never trip 20/h. */
START_TEST(test_engine_clock_bounded_live)
{
    struct engine_test_wall f = { engine_log_ms(2, 10, 0), 0 };
    struct engine_wall wall = { engine_test_utc, engine_test_offset, &f };
    char line[512];
    size_t n, trips = 0, ahead = 0;

    engine_restart(&wall);
    engine_arrival_text(line, sizeof(line), 2, 10, 0, 0, "six@example.com");
    engine_feed_text(line);
    n = engine_feed_text(forged_2099);
    for (size_t i = 0; i < n; i++)
        ahead += fx.notes[i].kind == ENGINE_CLOCK_AHEAD;
    ck_assert_uint_eq(ahead, 1);
    ck_assert_int_eq(fx.notes[0].at_ms, util_days_from_civil(2099, 1, 1) * 86400000);
    ck_assert_str_eq(fx.notes[0].at, "2099-01-01 00:00:00");
    ck_assert_int_eq(engine_now_ms(fx.e), engine_log_ms(2, 10, 0));
    for (int i = 1; i <= 30; i++) {
        f.utc_ms += 10 * 60000;
        engine_arrival_text(line, sizeof(line), 2, 10 + i / 6, (i % 6) * 10, i,
                            "six@example.com");
        trips += engine_count_trips(engine_feed_text(line), "box-hour");
    }
    ck_assert_uint_eq(trips, 0);
    ck_assert_int_eq(engine_now_ms(fx.e), engine_log_ms(2, 15, 0));
    ck_assert_uint_eq(engine_stats(fx.e)->clock_ahead, 1);
    /* a few minutes ahead of the wall clock is still taken (clock skew, buffering) */
    engine_arrival_text(line, sizeof(line), 2, 15, 4, 99, "six@example.com");
    ck_assert_uint_eq(engine_feed_text(line), 0);
    ck_assert_int_eq(engine_now_ms(fx.e), engine_log_ms(2, 15, 4));
    ck_assert_uint_eq(engine_stats(fx.e)->clock_ahead, 1);

    /* west of UTC (-05:00): a log in local time is 5 h behind UTC, so a record at UTC now
     * is 5 h ahead of it; a log_timezone record ("-0500") is compared with UTC */
    f.offset_ms = -5 * 3600000LL;
    f.utc_ms = engine_log_ms(2, 20, 10);
    engine_arrival_text(line, sizeof(line), 2, 15, 9, 100, "six@example.com");
    ck_assert_uint_eq(engine_feed_text(line), 0);
    ck_assert_int_eq(engine_now_ms(fx.e), engine_log_ms(2, 15, 9));
    engine_arrival_text(line, sizeof(line), 2, 20, 10, 101, "six@example.com");
    n = engine_feed_text(line);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(fx.notes[0].kind, ENGINE_CLOCK_AHEAD);
    ck_assert_int_eq(engine_now_ms(fx.e), engine_log_ms(2, 15, 9));
    ck_assert_uint_eq(engine_feed_text("2026-03-02 15:11:00 -0500 1vwqhc-0ZONE1-xm <= "
                                       "six@example.com H=(pc) [192.0.2.7]:4000 P=esmtpsa "
                                       "A=dovecot_login:six@example.com S=1 for a@gmail.com"),
                      0);
    ck_assert_int_eq(engine_now_ms(fx.e), engine_log_ms(2, 20, 11));
    ck_assert_uint_eq(engine_stats(fx.e)->clock_ahead, 2);
}
END_TEST

/* Feed @text through the replay queue; returns the notices of the record that came out. */
static size_t
engine_delay_text(struct engine_delay *q, const char *text)
{
    struct eximlog_record rec = { .text = text, .len = strlen(text) };

    return engine_delay_push(q, fx.e, &rec, ++fx.line, fx.notes, ENGINE_NOTICES_MAX);
}

static size_t
engine_delay_drain(struct engine_delay *q, const char *rule)
{
    size_t trips = 0;

    while (engine_delay_pending(q))
        trips += engine_count_trips(engine_delay_flush(q, fx.e, fx.notes, ENGINE_NOTICES_MAX),
                                    rule);
    return trips;
}

/* Replay: the following records decide; a forged jump is refused, a real gap is taken. */
START_TEST(test_engine_clock_bounded_replay)
{
    struct engine_delay *q = engine_delay_new();
    char line[512];
    size_t trips = 0;
    int seq = 0;

    ck_assert_ptr_nonnull(q);
    ck_assert_int_eq(engine_delay_last_ms(q), INT64_MIN);
    engine_restart(NULL);
    engine_arrival_text(line, sizeof(line), 2, 10, 0, seq++, "six@example.com");
    trips += engine_count_trips(engine_delay_text(q, line), "box-hour");
    /* the newest witness pushed, before it is fed; a record without a time is none */
    ck_assert_int_eq(engine_delay_last_ms(q), engine_log_ms(2, 10, 0));
    trips += engine_count_trips(engine_delay_text(q, "no time at all"), "box-hour");
    ck_assert_int_eq(engine_delay_last_ms(q), engine_log_ms(2, 10, 0));
    trips += engine_count_trips(engine_delay_text(q, forged_2099), "box-hour");
    for (int i = 1; i <= 30; i++) {
        engine_arrival_text(line, sizeof(line), 2, 10 + i / 6, (i % 6) * 10, seq++,
                            "six@example.com");
        trips += engine_count_trips(engine_delay_text(q, line), "box-hour");
    }
    trips += engine_delay_drain(q, "box-hour");
    ck_assert_uint_eq(trips, 0);
    ck_assert_uint_eq(engine_stats(fx.e)->clock_ahead, 1);
    ck_assert_int_eq(engine_now_ms(fx.e), engine_log_ms(2, 15, 0));

    /* the server was down for a day: the records after the gap agree, the clock moves at
     * the first of them (as the wall clock would let it live), and the hour-old burst of
     * 18 does not add to the 5 new ones */
    for (int i = 0; i < 18; i++) {
        engine_arrival_text(line, sizeof(line), 2, 16, i, seq++, "burst@example.com");
        trips += engine_count_trips(engine_delay_text(q, line), "box-hour");
    }
    for (int i = 0; i < 5; i++) {
        engine_arrival_text(line, sizeof(line), 3, 16, 30 + i, seq++, "burst@example.com");
        trips += engine_count_trips(engine_delay_text(q, line), "box-hour");
    }
    ck_assert_int_eq(engine_delay_last_ms(q), engine_log_ms(3, 16, 34));
    trips += engine_delay_drain(q, "box-hour");
    ck_assert_uint_eq(trips, 0);
    ck_assert_uint_eq(engine_stats(fx.e)->clock_ahead, 1);
    ck_assert_int_eq(engine_now_ms(fx.e), engine_log_ms(3, 16, 34));
    engine_delay_free(q);
}
END_TEST

/* "<>" counts unless it is Exim's own message (R=<id>, or Exim's user) */
START_TEST(test_engine_null_sender)
{
    struct usertable_entry *ent;
    size_t n = 0;

    for (int i = 0; i < 4; i++) {
        char id[32];
        (void)snprintf(id, sizeof(id), "1vwqhc-00NUL%d-xm", i);
        n = engine_smtp("00:01", id, "box@example.com", "<>");
    }
    ck_assert_uint_eq(engine_count_trips(n, "box-msgs"), 1);
    ck_assert_uint_eq(engine_stats(fx.e)->null_sender, 4);
    /* no sender mismatch for "<>" */
    engine_feed_text("2026-03-02 10:00:02 1vwqhc-00NUL8-xm <= <> U=acct1 P=local S=100 "
                     "for a@gmail.com");
    ck_assert_int_eq(usertable_get(engine_table(fx.e), SCOPE_ACCOUNT, "acct1", 5,
                                   engine_now_ms(fx.e), false, &ent),
                     1);
    ck_assert_uint_eq(engine_stats(fx.e)->null_sender, 5);
    /* bounces: R=<id>, or written by Exim's own user */
    engine_feed_text("2026-03-02 10:00:03 1vwqhc-00NUL9-xm <= <> R=1vwqhc-00NUL8-xm "
                     "U=Debian-exim P=local S=100 for a@gmail.com");
    engine_feed_text("2026-03-02 10:00:03 1vwqhc-00NULA-xm <= <> U=mailnull P=local S=100 "
                     "for a@gmail.com");
    engine_feed_text("2026-03-02 10:00:03 1vwqhc-00NULB-xm <= <> R=1vwqhc-00NUL8-xm "
                     "U=acct1 P=local S=100 for a@gmail.com");
    ck_assert_uint_eq(engine_stats(fx.e)->bounces, 3);
    ck_assert_uint_eq(engine_stats(fx.e)->outbound, 5);
}
END_TEST

/*
 * An arrival that swallowed a forged line (a local sender's quoted address with a raw
 * newline, the way Exim writes -f): counted for its writer only, and signalled.
 */
START_TEST(test_engine_absorbed_arrival)
{
    struct usertable_entry *ent;
    size_t n;
    struct eximlog_record rec = {
        .text = "2026-03-02 10:00:01 1vwqhc-00ABS1-xm <= \"a\n"
                "2026-03-02 10:00:01 1vwqhc-00ABS2-xm <= v@other.org H=(x) [192.0.2.8]:1 "
                "P=esmtpsa A=dovecot_login:victim@other.org S=1 for z@gmail.com\"@example.com "
                "U=acct1 P=local S=1200 for a@gmail.com",
        .flags = EXIM_F_ABSORBED,
    };

    rec.len = strlen(rec.text);
    n = engine_feed(fx.e, &rec, 7, fx.notes, ENGINE_NOTICES_MAX);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(fx.notes[0].kind, ENGINE_INJECTION);
    ck_assert_int_eq(fx.notes[0].injection, ENGINE_INJ_ABSORBED);
    ck_assert_int_eq(fx.notes[0].scope, SCOPE_ACCOUNT);
    ck_assert_str_eq(fx.notes[0].id, "acct1");
    ck_assert_str_eq(fx.notes[0].msgid, "1vwqhc-00ABS1-xm");
    ck_assert_uint_eq(engine_stats(fx.e)->outbound, 1);
    ck_assert_int_eq(usertable_get(engine_table(fx.e), SCOPE_ACCOUNT, "acct1", 5,
                                   engine_now_ms(fx.e), false, &ent),
                     1);
    ck_assert_int_eq(usertable_get(engine_table(fx.e), SCOPE_MAILBOX, "victim@other.org", 16,
                                   engine_now_ms(fx.e), false, &ent),
                     0);

    /* the same through a recipient's quoted address */
    rec.text = "2026-03-02 10:00:02 1vwqhc-00ABS3-xm <= acct1@example.com U=acct1 P=local "
               "S=1200 for \"r\n2026-03-02 10:00:02 1vwqhc-00ABS4-xm <= v@other.org H=(pc) "
               "[192.0.2.7]:4000 P=esmtpsa A=dovecot_login:victim@other.org S=1200 "
               "for a@gmail.com\"@gmail.com";
    rec.len = strlen(rec.text);
    n = engine_feed(fx.e, &rec, 8, fx.notes, ENGINE_NOTICES_MAX);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(fx.notes[0].id, "acct1");
    ck_assert_uint_eq(engine_stats(fx.e)->outbound, 2);
    ck_assert_int_eq(usertable_get(engine_table(fx.e), SCOPE_MAILBOX, "victim@other.org", 16,
                                   engine_now_ms(fx.e), false, &ent),
                     0);
    ck_assert_uint_eq(engine_stats(fx.e)->injections[ENGINE_INJ_ABSORBED], 2);
}
END_TEST

/* The remnant of a forged line is dropped and named by its process's cwd= when there is one. */
START_TEST(test_engine_forged_tail)
{
    struct eximlog_record rec = {
        .text = "2026-03-02 10:00:01 [300] 1vwqhc-00TTT1-xm <= v@example.com H=(pc) "
                "[192.0.2.7]:4000 P=esmtpsa A=dovecot_login:v@example.com S=9 for z@gmail.com "
                "4 args: /usr/sbin/sendmail -t -i x",
        .flags = EXIM_F_FORGED_TAIL,
    };
    size_t n;

    rec.len = strlen(rec.text);
    n = engine_feed(fx.e, &rec, 3, fx.notes, ENGINE_NOTICES_MAX);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(fx.notes[0].kind, ENGINE_INJECTION);
    ck_assert_int_eq(fx.notes[0].injection, ENGINE_INJ_TAIL);
    ck_assert_str_eq(fx.notes[0].id, "");
    ck_assert_uint_eq(engine_stats(fx.e)->outbound, 0);
    ck_assert_uint_eq(engine_stats(fx.e)->arrivals, 0);
    ck_assert_int_eq(engine_now_ms(fx.e), 0); /* nor does it move the clock */
    engine_feed_text("2026-03-02 10:00:02 [300] cwd=/home/acct1/public_html 3 args: "
                     "/usr/sbin/sendmail -t -i");
    n = engine_feed(fx.e, &rec, 5, fx.notes, ENGINE_NOTICES_MAX);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(fx.notes[0].id, "acct1");
    ck_assert_uint_eq(engine_stats(fx.e)->injections[ENGINE_INJ_TAIL], 2);
    ck_assert_uint_eq(engine_stats(fx.e)->outbound, 0);
}
END_TEST

/* A HELO read two ways: the message counts for both readings' identities, signalled. */
START_TEST(test_engine_forged_helo)
{
    static const char t[] = "2026-03-02 10:00:01 1vwqhc-00HEL1-xm <= box@example.com H=(pc) "
                            "[192.0.2.7]:4000 P=esmtpsa A=dovecot_login:box@example.com S=1200 "
                            "for a@gmail.com";
    struct usertable_entry *ent;
    struct exim_event ev;
    size_t n, helo = 0, trips = 0;

    ck_assert_int_eq(eximlog_parse(t, strlen(t), &ev), 1);
    ev.flags |= EXIM_F_AMBIGUOUS_HOST;
    ev.alt = (struct exim_peer){
        .host = fg_str_make("(x)", 3),
        .host_ip = fg_str_make("192.0.2.8", 9),
        .proto = fg_str_make("esmtpsa", 7),
        .auth = fg_str_make("dovecot_login", 13),
        .set_id = fg_str_make("victim@other.org", 16),
    };
    for (int i = 0; i < 4; i++) {
        n = engine_feed_event(fx.e, &ev, 0, 10, fx.notes, ENGINE_NOTICES_MAX);
        trips += engine_count_trips(n, "box-msgs");
        for (size_t k = 0; k < n; k++)
            if (fx.notes[k].kind == ENGINE_INJECTION) {
                helo++;
                ck_assert_int_eq(fx.notes[k].injection, ENGINE_INJ_HELO);
                ck_assert_str_eq(fx.notes[k].id, "box@example.com");
                ck_assert_str_eq(fx.notes[k].other, "victim@other.org");
                ck_assert_int_eq(fx.notes[k].other_scope, SCOPE_MAILBOX);
            }
    }
    ck_assert_uint_eq(helo, 4);
    ck_assert_uint_eq(trips, 2); /* both readings' mailboxes went over 3 */
    ck_assert_uint_eq(engine_stats(fx.e)->outbound, 4);
    ck_assert_int_eq(usertable_get(engine_table(fx.e), SCOPE_MAILBOX, "victim@other.org", 16,
                                   engine_now_ms(fx.e), false, &ent),
                     1);
    ck_assert_int_eq(usertable_get(engine_table(fx.e), SCOPE_ACCOUNT, "acct2", 5,
                                   engine_now_ms(fx.e), false, &ent),
                     1);
    /* both readings the same identity: counted once */
    ev.alt.set_id = fg_str_make("box@example.com", 15);
    ev.msgid = fg_str_make("1vwqhc-00HEL2-xm", 16);
    n = engine_feed_event(fx.e, &ev, 0, 11, fx.notes, ENGINE_NOTICES_MAX);
    ck_assert_uint_eq(engine_stats(fx.e)->outbound, 5);

    /* one reading only, but the HELO imitates a peer: signalled, counted for the real one */
    {
        static const char h[] = "2026-03-02 10:00:02 1vwqhc-00HEL3-xm <= box@example.com "
                                "H=(x) [10.0.0.1]:1 P=esmtpsa A=dovecot_login:victim@other.org "
                                "S=1 (y) [192.0.2.7]:4000 P=esmtpsa A=dovecot_login:box@example.com "
                                "S=1200 for a@gmail.com";
        struct eximlog_record rec = { .text = h, .len = sizeof(h) - 1 };
        size_t before = engine_stats(fx.e)->injections[ENGINE_INJ_HELO];
        n = engine_feed(fx.e, &rec, 12, fx.notes, ENGINE_NOTICES_MAX);
        ck_assert_uint_ge(n, 1);
        ck_assert_int_eq(fx.notes[0].kind, ENGINE_INJECTION);
        ck_assert_int_eq(fx.notes[0].injection, ENGINE_INJ_HELO);
        ck_assert_str_eq(fx.notes[0].id, "box@example.com");
        ck_assert_uint_eq(engine_stats(fx.e)->injections[ENGINE_INJ_HELO], before + 1);
    }
}
END_TEST

/* A cut for-list: 1,500 recipients listed as 353 end up 1,500 from the delivery lines. */
START_TEST(test_engine_cut_for_list)
{
    static char rec[EXIMLOG_RECORD_MAX + 1];
    size_t pos, rcpts = SIZE_MAX;
    struct engine_top_row rows[2];
    const struct usertable_params *up;
    char line[256];
    int i;

    engine_restart(NULL);
    pos = (size_t)snprintf(rec, sizeof(rec),
                           "2026-03-02 10:00:00 1vwqhc-00CUT1-xm <= box@example.com H=(pc) "
                           "[192.0.2.7]:4000 P=esmtpsa A=dovecot_login:box@example.com S=1200 "
                           "for");
    for (i = 0; i < 353; i++)
        pos += (size_t)snprintf(rec + pos, sizeof(rec) - pos, " r%04d@gmail.com", i);
    ck_assert_uint_lt(pos, EXIMLOG_RECORD_MAX);
    struct exim_event ev;
    ck_assert_int_eq(eximlog_parse(rec, pos, &ev), 1);
    ck_assert_uint_eq(ev.nrcpt, 353);
    ev.flags |= EXIM_F_RCPT_TRUNC | EXIM_F_RCPT_CUT;
    (void)engine_feed_event(fx.e, &ev, 0, 1, fx.notes, ENGINE_NOTICES_MAX);
    /* deliveries, deferrals (twice each), failures; one recipient in a local domain */
    for (i = 0; i < 1500; i++) {
        const char *what = i < 1000   ? "=> r%04d@gmail.com R=dkim_lookuphost T=dkim_remote_smtp"
                           : i < 1300 ? "== r%04d@gmail.com R=dkim_lookuphost "
                                        "T=dkim_remote_smtp defer (-44): x"
                                      : "** r%04d@gmail.com R=dkim_lookuphost "
                                        "T=dkim_remote_smtp: 550 no";
        char addr[32];
        (void)snprintf(addr, sizeof(addr), "r%04d@gmail.com", i);
        (void)snprintf(line, sizeof(line), "2026-03-02 10:01:00 1vwqhc-00CUT1-xm %.2s %s%s", what,
                       addr, what + 18);
        engine_feed_text(line);
        if (i >= 1000 && i < 1300)
            engine_feed_text(line);
    }
    engine_feed_text("2026-03-02 10:01:00 1vwqhc-00CUT1-xm => x@example.com R=local");
    up = usertable_params(engine_table(fx.e));
    for (size_t k = 0; k < up->nseries[SCOPE_MAILBOX]; k++)
        if (up->series[SCOPE_MAILBOX][k].metric == WINDOW_RECIPIENTS)
            rcpts = k;
    ck_assert_uint_ne(rcpts, SIZE_MAX);
    ck_assert_uint_eq(engine_top(fx.e, SCOPE_MAILBOX, rcpts, rows, 2), 1);
    ck_assert_uint_eq(rows[0].value, 1500);
    /* a second message with the same recipients counts them again */
    pos = (size_t)snprintf(rec, sizeof(rec),
                           "2026-03-02 10:02:00 1vwqhc-00CUT2-xm <= box@example.com H=(pc) "
                           "[192.0.2.7]:4000 P=esmtpsa A=dovecot_login:box@example.com S=1200 "
                           "for r0000@gmail.com");
    ck_assert_int_eq(eximlog_parse(rec, pos, &ev), 1);
    ev.flags |= EXIM_F_RCPT_CUT;
    (void)engine_feed_event(fx.e, &ev, 0, 2, fx.notes, ENGINE_NOTICES_MAX);
    engine_feed_text("2026-03-02 10:02:01 1vwqhc-00CUT2-xm => r0000@gmail.com R=x T=y");
    engine_feed_text("2026-03-02 10:02:01 1vwqhc-00CUT2-xm => r0001@gmail.com R=x T=y");
    ck_assert_uint_eq(engine_top(fx.e, SCOPE_MAILBOX, rcpts, rows, 2), 1);
    ck_assert_uint_eq(rows[0].value, 1502);
}
END_TEST

static Suite *
engine_suite(void)
{
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("pipeline");

    tcase_add_checked_fixture(tc, engine_setup, engine_teardown);
    tcase_add_test(tc, test_engine_trips_once_on_mailbox);
    tcase_add_test(tc, test_engine_other_mailboxes_do_not_trip);
    tcase_add_test(tc, test_engine_not_outbound);
    tcase_add_test(tc, test_engine_frozen_by_acl);
    tcase_add_test(tc, test_engine_failures_and_deferrals);
    tcase_add_test(tc, test_engine_script_and_forged_cwd);
    tcase_add_test(tc, test_engine_release_and_cooldown);
    tcase_add_test(tc, test_engine_time_never_goes_back);
    tcase_add_test(tc, test_engine_reload);
    tcase_add_test(tc, test_engine_trips_follow_rule_names);
    tcase_add_test(tc, test_engine_distinct_domains);
    tcase_add_test(tc, test_engine_top);
    tcase_add_test(tc, test_engine_clock_bounded_live);
    tcase_add_test(tc, test_engine_clock_bounded_replay);
    tcase_add_test(tc, test_engine_null_sender);
    tcase_add_test(tc, test_engine_absorbed_arrival);
    tcase_add_test(tc, test_engine_forged_tail);
    tcase_add_test(tc, test_engine_forged_helo);
    tcase_add_test(tc, test_engine_cut_for_list);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(engine_suite());
}
