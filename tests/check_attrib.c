/*
 * check_attrib.c - attribution rules (DESIGN.md "Attribution"), table-driven over
 * hand-built events, so the tests do not depend on the parser.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <check.h>

#include "attrib.h"
#include "testrun.h"

static const uint8_t attrib_test_key[SIPHASH_KEY_LEN] = { 1, 2,  3,  4,  5,  6,  7,  8,
                                                          9, 10, 11, 12, 13, 14, 15, 16 };

static const char attrib_test_userdomains[] = "example.com: acct1\n"
                                              "Shop.Example.NET: acct2\n"
                                              "# comment\n"
                                              "\n"
                                              "*: nobody\n";

struct attrib_case {
    const char *name;
    const char *sender;
    const char *host;
    const char *ident;
    const char *proto;
    const char *set_id;
    const char *rcpts;
    uint32_t nrcpt;
    int ret;
    uint32_t flags; /* flags that must be set */
    const char *mailbox, *account;
};

#define S(x) fg_str_make((x), strlen(x))

static const struct attrib_case good[] = {
    { "smtp auth", "a@example.com", "(pc) [192.0.2.1]:1", NULL, "esmtpsa", "A@Example.com",
      "x@gmail.com", 1, 1, ATTRIB_OUTBOUND, "a@example.com", "acct1" },
    { "cpanel plus form", "a@shop.example.net", "[192.0.2.1]", NULL, "esmtpa", "a+shop.example.net",
      "x@gmail.com", 1, 1, ATTRIB_OUTBOUND, "a@shop.example.net", "acct2" },
    { "cpanel percent form", "a@shop.example.net", "[192.0.2.1]", NULL, "esmtpa",
      "a%shop.example.net", "x@gmail.com", 1, 1, ATTRIB_OUTBOUND, "a@shop.example.net", "acct2" },
    { "www stripped", "b@www.example.com", "[192.0.2.1]", NULL, "esmtpa", "b@www.example.com",
      "x@gmail.com", 1, 1, ATTRIB_OUTBOUND, "b@www.example.com", "acct1" },
    { "system mailbox", "acct1@host.example", "[192.0.2.1]", NULL, "esmtpa", "acct1", "x@gmail.com",
      1, 1, ATTRIB_OUTBOUND, "acct1", "acct1" },
    { "unknown domain", "z@elsewhere.org", "[192.0.2.1]", NULL, "esmtpa", "z@elsewhere.org",
      "x@gmail.com", 1, 1, ATTRIB_OUTBOUND, "z@elsewhere.org", "" },
    { "spoofed sender", "ceo@bank.example", "[192.0.2.1]", NULL, "esmtpsa", "a@example.com",
      "x@gmail.com", 1, 1, ATTRIB_OUTBOUND | ATTRIB_MISMATCH, "a@example.com", "acct1" },
    { "local submission", "acct1@host.example", NULL, "acct1", "local", NULL, "x@gmail.com", 1, 1,
      ATTRIB_OUTBOUND, "", "acct1" },
    { "nobody", "nobody@host.example", NULL, "nobody", "local", NULL, "x@gmail.com", 1, 1,
      ATTRIB_OUTBOUND | ATTRIB_NOBODY, "", "nobody" },
    { "bounce", "<>", NULL, "mailnull", "local", NULL, "x@gmail.com", 1, 0, ATTRIB_BOUNCE, "",
      "mailnull" },
    { "cpanel service", "a@example.com", "[127.0.0.1]", NULL, "esmtpa",
      "__cpanel__service__auth__icontact__abc", "x@gmail.com", 1, 0, ATTRIB_SERVICE, NULL, NULL },
    { "inbound", "x@gmail.com", "mx.gmail.com [192.0.2.9]:25", NULL, "esmtps", NULL,
      "a@example.com", 1, 0, ATTRIB_INBOUND, "", "" },
    { "ident on smtp is not an account", "x@gmail.com", "[192.0.2.9]", "acct1", "esmtp", NULL,
      "z@gmail.com", 1, 0, ATTRIB_INBOUND, "", "" },
    { "local only", "a@example.com", "[192.0.2.1]", NULL, "esmtpa", "a@example.com",
      "b@example.com c@shop.example.net", 2, 0, ATTRIB_LOCAL_ONLY, "a@example.com", "acct1" },
    { "mixed recipients", "a@example.com", "[192.0.2.1]", NULL, "esmtpa", "a@example.com",
      "b@example.com c@gmail.com", 2, 1, ATTRIB_OUTBOUND, "a@example.com", "acct1" },
    /* "<>" is a bounce only when Exim wrote it: after SMTP AUTH or from a user it counts */
    { "null sender after auth", "<>", "(pc) [192.0.2.1]:1", NULL, "esmtpsa", "a@example.com",
      "x@gmail.com", 1, 1, ATTRIB_OUTBOUND | ATTRIB_NULL_SENDER, "a@example.com", "acct1" },
    { "null sender from a user", "<>", NULL, "acct1", "local", NULL, "x@gmail.com", 1, 1,
      ATTRIB_OUTBOUND | ATTRIB_NULL_SENDER, "", "acct1" },
    { "null sender from Exim (Debian)", "<>", NULL, "Debian-exim", "local", NULL, "x@gmail.com", 1,
      0, ATTRIB_BOUNCE, "", NULL },
    { "null sender from Exim (RHEL)", "<>", NULL, "exim", "local", NULL, "x@gmail.com", 1, 0,
      ATTRIB_BOUNCE, "", NULL },
    { "null sender from a remote host", "<>", "mx.gmail.com [192.0.2.9]:25", NULL, "esmtps", NULL,
      "a@example.com", 1, 0, ATTRIB_BOUNCE, "", "" },
};

static struct exim_event
attrib_event(const struct attrib_case *c)
{
    struct exim_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = EXIM_ARRIVAL;
    ev.ts_ms = 1000000;
    ev.sender = S(c->sender);
    if (c->host)
        ev.host = S(c->host);
    if (c->ident)
        ev.ident = S(c->ident);
    ev.proto = S(c->proto);
    if (c->set_id) {
        ev.auth = S("dovecot_login");
        ev.set_id = S(c->set_id);
    }
    ev.rcpts = S(c->rcpts);
    ev.nrcpt = c->nrcpt;
    return ev;
}

static struct attrib_maps *
attrib_test_maps(void)
{
    struct attrib_maps *m = attrib_maps_new(attrib_test_key);
    unsigned line = 0;

    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(
        attrib_maps_add(m, attrib_test_userdomains, strlen(attrib_test_userdomains), true, &line),
        2);
    return m;
}

START_TEST(test_attrib_arrival_good)
{
    const struct attrib_case *c = &good[_i];
    struct attrib_maps *m = attrib_test_maps();
    struct exim_event ev = attrib_event(c);
    struct attrib_result r;
    struct attrib a;

    attrib_init(&a);
    ck_assert_msg(attrib_arrival(&a, m, &ev, &r) == c->ret, "%s: return", c->name);
    ck_assert_msg((r.flags & c->flags) == c->flags, "%s: flags %#x", c->name, r.flags);
    if (c->mailbox)
        ck_assert_msg(strcmp(r.mailbox, c->mailbox) == 0, "%s: mailbox '%s'", c->name, r.mailbox);
    if (c->account)
        ck_assert_msg(strcmp(r.account, c->account) == 0, "%s: account '%s'", c->name, r.account);
    if (!(c->flags & ATTRIB_MISMATCH))
        ck_assert_msg(!(r.flags & ATTRIB_MISMATCH), "%s: unexpected mismatch", c->name);
    attrib_maps_free(m);
}
END_TEST

static struct exim_event
attrib_cwd_event(const char *dir, bool has_pid, uint32_t pid, int64_t ts)
{
    struct exim_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = EXIM_CWD;
    ev.flags = EXIM_F_CWD_SUBMISSION;
    ev.cwd = S(dir);
    ev.has_pid = has_pid;
    ev.pid = pid;
    ev.ts_ms = ts;
    return ev;
}

/* An arrival the parser could not read strictly is never anyone's (even if a field were set) */
START_TEST(test_attrib_anomalous_is_no_one)
{
    struct attrib_maps *m = attrib_test_maps();
    struct attrib_result r;
    struct attrib a;

    attrib_init(&a);
    for (size_t i = 0; i < 8; i++) {
        struct exim_event ev = attrib_event(&good[i]);
        ev.flags |= EXIM_F_ANOMALOUS;
        ck_assert_int_eq(attrib_arrival(&a, m, &ev, &r), 0);
        ck_assert_str_eq(r.mailbox, "");
        ck_assert_str_eq(r.account, "");
    }
    attrib_maps_free(m);
}
END_TEST
START_TEST(test_attrib_cwd_ties_by_pid)
{
    struct attrib_maps *m = attrib_test_maps();
    struct attrib_case c = good[7];
    struct exim_event cwd1 = attrib_cwd_event("/home/acct1/public_html/a", true, 100, 1000000);
    struct exim_event cwd2 = attrib_cwd_event("/home/acct1/public_html/b", true, 200, 1000000);
    struct exim_event ev = attrib_event(&c);
    struct attrib_result r;
    struct attrib a;

    attrib_init(&a);
    attrib_note_cwd(&a, &cwd1);
    attrib_note_cwd(&a, &cwd2);
    ev.has_pid = true;
    ev.pid = 100;
    ck_assert_int_eq(attrib_arrival(&a, m, &ev, &r), 1);
    ck_assert_str_eq(r.script, "acct1:/home/acct1/public_html/a");
    /* consumed: a second arrival of the same pid has no script */
    ck_assert_int_eq(attrib_arrival(&a, m, &ev, &r), 1);
    ck_assert_str_eq(r.script, "");
    ev.pid = 200;
    ck_assert_int_eq(attrib_arrival(&a, m, &ev, &r), 1);
    ck_assert_str_eq(r.script, "acct1:/home/acct1/public_html/b");
    attrib_maps_free(m);
}
END_TEST

/*
 * PHP run by the web server (U=nobody on a mod_php host) counts for the cPanel account whose
 * home holds the directory it ran in; a directory outside every account's home, or no
 * cwd= at all, leaves it the web server's.
 */
START_TEST(test_attrib_web_user_home)
{
    struct attrib_maps *m = attrib_test_maps();
    struct attrib_case c = good[7];
    struct exim_event ev, cwd;
    struct attrib_result r;
    struct attrib a;

    c.ident = "nobody";
    ev = attrib_event(&c);
    ev.has_pid = true;
    ev.pid = 300;
    attrib_init(&a);
    cwd = attrib_cwd_event("/home2/acct2/public_html/shop", true, 300, ev.ts_ms);
    attrib_note_cwd(&a, &cwd);
    ck_assert_int_eq(attrib_arrival(&a, m, &ev, &r), 1);
    ck_assert_str_eq(r.account, "acct2");
    ck_assert_str_eq(r.script, "acct2:/home2/acct2/public_html/shop");
    ck_assert(r.flags & ATTRIB_NOBODY);
    ck_assert(r.flags & ATTRIB_WEB_HOME);
    /* a home that is no cPanel account's */
    cwd = attrib_cwd_event("/home/stranger/public_html", true, 300, ev.ts_ms);
    attrib_note_cwd(&a, &cwd);
    ck_assert_int_eq(attrib_arrival(&a, m, &ev, &r), 1);
    ck_assert_str_eq(r.account, "nobody");
    ck_assert_str_eq(r.script, "nobody:/home/stranger/public_html");
    ck_assert(!(r.flags & ATTRIB_WEB_HOME));
    /* no cwd= record */
    ck_assert_int_eq(attrib_arrival(&a, m, &ev, &r), 1);
    ck_assert_str_eq(r.account, "nobody");
    ck_assert_str_eq(r.script, "");
    /* another login's mail from an account's home stays that login's */
    c.ident = "acct1";
    ev = attrib_event(&c);
    ev.has_pid = true;
    ev.pid = 300;
    cwd = attrib_cwd_event("/home2/acct2/public_html/shop", true, 300, ev.ts_ms);
    attrib_note_cwd(&a, &cwd);
    ck_assert_int_eq(attrib_arrival(&a, m, &ev, &r), 1);
    ck_assert_str_eq(r.account, "acct1");
    ck_assert(attrib_maps_is_account(m, "acct1") && attrib_maps_is_account(m, "acct2"));
    ck_assert(!attrib_maps_is_account(m, "acct") && !attrib_maps_is_account(m, "nobody"));
    attrib_maps_free(m);
}
END_TEST

START_TEST(test_attrib_cwd_without_pid_and_ttl)
{
    struct attrib_maps *m = attrib_test_maps();
    struct attrib_case c = good[7];
    struct exim_event cwd = attrib_cwd_event("/home/acct1/x", false, 0, 1000000);
    struct exim_event ev = attrib_event(&c);
    struct exim_event smtp = attrib_event(&good[0]);
    struct attrib_result r;
    struct attrib a;

    attrib_init(&a);
    attrib_note_cwd(&a, &cwd);
    /* an SMTP arrival never takes a cwd= record */
    ck_assert_int_eq(attrib_arrival(&a, m, &smtp, &r), 1);
    ck_assert_str_eq(r.script, "");
    ck_assert_int_eq(attrib_arrival(&a, m, &ev, &r), 1);
    ck_assert_str_eq(r.script, "acct1:/home/acct1/x");
    /* too old to tie */
    attrib_note_cwd(&a, &cwd);
    ev.ts_ms = cwd.ts_ms + ATTRIB_CWD_TTL_MS + 1;
    ck_assert_int_eq(attrib_arrival(&a, m, &ev, &r), 1);
    ck_assert_str_eq(r.script, "");
    ck_assert_uint_eq(a.cwd_unmatched, 1);
    attrib_maps_free(m);
}
END_TEST

START_TEST(test_attrib_cwd_non_submission_ignored)
{
    struct attrib_maps *m = attrib_test_maps();
    struct attrib_case c = good[7];
    struct exim_event cwd = attrib_cwd_event("/var/spool/exim", false, 0, 1000000);
    struct exim_event ev = attrib_event(&c);
    struct attrib_result r;
    struct attrib a;

    cwd.flags = 0; /* e.g. exim -Mc <id>: not a submission */
    attrib_init(&a);
    attrib_note_cwd(&a, &cwd);
    ck_assert_int_eq(attrib_arrival(&a, m, &ev, &r), 1);
    ck_assert_str_eq(r.script, "");
    attrib_maps_free(m);
}
END_TEST

START_TEST(test_attrib_maps_errors)
{
    struct attrib_maps *m = attrib_maps_new(attrib_test_key);
    static const char bad[] = "example.com: acct1\nno-colon-here\n";
    unsigned line = 0;

    ck_assert_int_eq(attrib_maps_add(m, bad, strlen(bad), true, &line), -EBADMSG);
    ck_assert_uint_eq(line, 2);
    ck_assert_str_eq(attrib_maps_owner(m, S("EXAMPLE.com")), "acct1");
    ck_assert_ptr_null(attrib_maps_owner(m, S("other.com")));
    ck_assert_int_eq(attrib_maps_add(m, "local.example\n", 14, false, NULL), 1);
    ck_assert(attrib_maps_is_local(m, S("Local.Example")));
    ck_assert_ptr_null(attrib_maps_owner(m, S("local.example")));
    attrib_maps_free(m);
}
END_TEST

START_TEST(test_attrib_maps_many)
{
    struct attrib_maps *m = attrib_maps_new(attrib_test_key);
    char line[64];

    for (int i = 0; i < 5000; i++) {
        int n = snprintf(line, sizeof(line), "d%d.example: u%d\n", i, i % 97);
        ck_assert_int_eq(attrib_maps_add(m, line, (size_t)n, true, NULL), 1);
    }
    ck_assert_uint_eq(attrib_maps_count(m), 5000);
    ck_assert_str_eq(attrib_maps_owner(m, S("d4999.example")), "u52");
    attrib_maps_free(m);
}
END_TEST

START_TEST(test_attrib_bounce_and_exim_user)
{
    struct attrib_maps *m = attrib_test_maps();
    struct attrib_case c = good[7];
    struct exim_event ev;
    struct attrib_result r;
    struct attrib a;

    attrib_init(&a);
    c.sender = "<>";
    ev = attrib_event(&c);
    /* a bounce names the message it bounces: never counted, whoever runs the delivery */
    ev.bounce_of = S("1vwqhc-00AAAA-xm");
    ck_assert_int_eq(attrib_arrival(&a, m, &ev, &r), 0);
    ck_assert(r.flags & ATTRIB_BOUNCE);
    /* with exim_user set, only that login is Exim's own */
    a.exim_user = "exim";
    c.ident = "Debian-exim";
    ev = attrib_event(&c);
    ck_assert_int_eq(attrib_arrival(&a, m, &ev, &r), 1);
    ck_assert(r.flags & ATTRIB_NULL_SENDER);
    c.ident = "exim";
    ev = attrib_event(&c);
    ck_assert_int_eq(attrib_arrival(&a, m, &ev, &r), 0);
    ck_assert(r.flags & ATTRIB_BOUNCE);
    ck_assert(attrib_is_exim_user(&a, S("exim")));
    ck_assert(!attrib_is_exim_user(&a, S("mailnull")));
    attrib_maps_free(m);
}
END_TEST

/* An anomalous arrival (no reading of it holds) names no one, whatever its A= says. */
START_TEST(test_attrib_anomalous_auth)
{
    static const char in_order[] = "<= a@example.com H=[192.0.2.1] P=esmtpa "
                                   "A=dovecot_login:a@example.com S=1 X=? for x@gmail.com";
    static const char shifted[] = "<= a@example.com H=[192.0.2.1] P=esmtpa "
                                  "A=dovecot_login:victim@example.com U=zz for x@gmail.com";
    struct attrib_maps *m = attrib_test_maps();
    struct exim_event ev = attrib_event(&good[0]);
    struct attrib_result r;
    struct attrib a;
    const char *id;

    attrib_init(&a);
    ev.flags = EXIM_F_ANOMALOUS;
    ev.body = S(in_order);
    id = strstr(in_order, "a@example.com S=");
    ev.set_id = fg_str_make(id, 13);
    ck_assert_int_eq(attrib_arrival(&a, m, &ev, &r), 0);
    ck_assert_str_eq(r.mailbox, "");
    ck_assert(r.flags & ATTRIB_INBOUND);
    ev.body = S(shifted);
    id = strstr(shifted, "victim@");
    ev.set_id = fg_str_make(id, 18);
    ck_assert_int_eq(attrib_arrival(&a, m, &ev, &r), 0);
    ck_assert_str_eq(r.mailbox, "");
    ck_assert(r.flags & ATTRIB_INBOUND);
    /* the same event read in full is the mailbox's */
    ev.flags = 0;
    ck_assert_int_eq(attrib_arrival(&a, m, &ev, &r), 1);
    ck_assert_str_eq(r.mailbox, "victim@example.com");
    attrib_maps_free(m);
}
END_TEST

/* A script is its directory's exact bytes, whatever they are; overflow and argc rules. */
START_TEST(test_attrib_cwd_bytes_overflow_argc)
{
    static const char dir[] = "/home/acct1/public_html/caf\xc3\xa9 \x01\xff/x";
    struct attrib_maps *m = attrib_test_maps();
    struct exim_event cwd = attrib_cwd_event(dir, true, 7, 1000000);
    struct exim_event ev = attrib_event(&good[7]);
    struct attrib_result r;
    struct attrib a;
    char home[ATTRIB_ACCOUNT_MAX];

    attrib_init(&a);
    ev.has_pid = true;
    ev.pid = 7;
    attrib_note_cwd(&a, &cwd);
    ck_assert_int_eq(attrib_arrival(&a, m, &ev, &r), 1);
    ck_assert_str_eq(r.script, "acct1:/home/acct1/public_html/caf\xc3\xa9 \x01\xff/x");
    /* an overflowed cwd= record (its argv cut) still names the directory */
    cwd = attrib_cwd_event("/home/acct1/big", true, 8, 1000000);
    cwd.type = EXIM_OTHER;
    cwd.flags = EXIM_F_OVERFLOW;
    attrib_note_cwd(&a, &cwd);
    ev.pid = 8;
    ck_assert_int_eq(attrib_arrival(&a, m, &ev, &r), 1);
    ck_assert_str_eq(r.script, "acct1:/home/acct1/big");
    /* a cwd= whose args count is off ties nothing; the arrival still counts for its login */
    cwd = attrib_cwd_event("/home/acct1/argc", true, 9, 1000000);
    cwd.flags |= EXIM_F_CWD_ARGC;
    attrib_note_cwd(&a, &cwd);
    ev.pid = 9;
    ck_assert_int_eq(attrib_arrival(&a, m, &ev, &r), 1);
    ck_assert_str_eq(r.script, "");
    ck_assert_str_eq(r.account, "acct1");
    ck_assert_uint_eq(a.cwd_argc, 1);
    /* a forged cwd= ties, marked */
    cwd = attrib_cwd_event("/home/acct1/x\n2026-03-02 10:00:00 forged", true, 10, 1000000);
    cwd.flags |= EXIM_F_CWD_FORGED;
    attrib_note_cwd(&a, &cwd);
    ck_assert_uint_eq(attrib_peek_cwd(&a, true, 10).len, strlen(cwd.cwd.p));
    ck_assert_uint_eq(attrib_peek_cwd(&a, true, 11).len, 0);
    ev.pid = 10;
    ck_assert_int_eq(attrib_arrival(&a, m, &ev, &r), 1);
    ck_assert(r.flags & ATTRIB_CWD_FORGED);
    /* the owner of a home directory */
    ck_assert_uint_eq(attrib_home_owner(S("/home/acct1/public_html"), home, sizeof(home)), 5);
    ck_assert_str_eq(home, "acct1");
    ck_assert_uint_eq(attrib_home_owner(S("/home2/bob"), home, sizeof(home)), 3);
    ck_assert_str_eq(home, "bob");
    ck_assert_uint_eq(attrib_home_owner(S("/homer/bob"), home, sizeof(home)), 0);
    ck_assert_uint_eq(attrib_home_owner(S("/var/www/x"), home, sizeof(home)), 0);
    ck_assert_uint_eq(attrib_home_owner(S("/home/a\nb/x"), home, sizeof(home)), 0);
    attrib_maps_free(m);
}
END_TEST

static Suite *
attrib_suite(void)
{
    Suite *s = suite_create("attrib");
    TCase *tc = tcase_create("arrival");

    tcase_add_loop_test(tc, test_attrib_arrival_good, 0, (int)N_ELEMS(good));
    suite_add_tcase(s, tc);
    tc = tcase_create("cwd");
    tcase_add_test(tc, test_attrib_anomalous_is_no_one);
    tcase_add_test(tc, test_attrib_cwd_ties_by_pid);
    tcase_add_test(tc, test_attrib_cwd_without_pid_and_ttl);
    tcase_add_test(tc, test_attrib_web_user_home);
    tcase_add_test(tc, test_attrib_cwd_non_submission_ignored);
    tcase_add_test(tc, test_attrib_cwd_bytes_overflow_argc);
    tcase_add_test(tc, test_attrib_bounce_and_exim_user);
    tcase_add_test(tc, test_attrib_anomalous_auth);
    suite_add_tcase(s, tc);
    tc = tcase_create("maps");
    tcase_add_test(tc, test_attrib_maps_errors);
    tcase_add_test(tc, test_attrib_maps_many);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(attrib_suite());
}
