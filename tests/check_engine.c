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
    ck_assert_uint_eq(engine_feed(fx.e, &rec, 99, fx.notes, ENGINE_NOTICES_MAX), 0);
    ck_assert_uint_eq(engine_stats(fx.e)->outbound, before);
    ck_assert_uint_eq(engine_stats(fx.e)->cwd_forged, 1);
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
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(engine_suite());
}
