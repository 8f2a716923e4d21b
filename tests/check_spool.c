/*
 * check_spool.c - the -H parser on real spool files and on tables of cut and hostile
 * inputs, identity confirmation, and finding files in flat and split spools.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

#include "spool.h"
#include "testdir.h"
#include "testrun.h"
#include "util.h"

static size_t
read_fixture(const char *name, char *buf, size_t size)
{
    char path[1024];
    (void)snprintf(path, sizeof(path), "%s/spool/%s", FG_FIXTURES_DIR, name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "fixture %s", path);
    size_t n = fread(buf, 1, size, f);
    fclose(f);
    return n;
}

START_TEST(test_spool_parse_real_smtp)
{
    char buf[SPOOL_HEADER_READ_MAX];
    size_t n = read_fixture("smtp-auth-frozen-H", buf, sizeof(buf));
    struct spool_header h;

    ck_assert_int_eq(spool_parse_header(buf, n, &h), 0);
    ck_assert(fg_str_eq(h.id, "1xVYNi-0001Xt-23"));
    ck_assert(fg_str_eq(h.login, "Debian-exim"));
    ck_assert_uint_eq(h.uid, 102);
    ck_assert(fg_str_eq(h.sender, "box@example.com"));
    ck_assert(fg_str_eq(h.auth_id, "box@example.com"));
    ck_assert(fg_str_eq(h.host_address, "[127.0.0.1]:60398"));
    ck_assert(fg_str_eq(h.host_auth, "plain"));
    ck_assert(h.frozen);
    ck_assert_int_eq(h.frozen_s, 1795457018);
    ck_assert(!h.local);
    ck_assert_ptr_null(h.ident.p);
    ck_assert(spool_confirm(&h, SCOPE_MAILBOX, "Box@Example.COM", NULL, NULL));
    ck_assert(!spool_confirm(&h, SCOPE_MAILBOX, "other@example.com", NULL, NULL));
    ck_assert(!spool_confirm(&h, SCOPE_ACCOUNT, "box", NULL, NULL));
}
END_TEST

START_TEST(test_spool_parse_real_local)
{
    char buf[SPOOL_HEADER_READ_MAX];
    size_t n = read_fixture("local-ident-H", buf, sizeof(buf));
    struct spool_header h;

    ck_assert_int_eq(spool_parse_header(buf, n, &h), 0);
    ck_assert(fg_str_eq(h.ident, "alice"));
    ck_assert(fg_str_eq(h.auth_id, "root"));
    ck_assert(fg_str_eq(h.sender, "root@fg-test.example"));
    ck_assert(h.local);
    ck_assert(!h.frozen);
    ck_assert(spool_confirm(&h, SCOPE_ACCOUNT, "alice", NULL, NULL));
    ck_assert(spool_confirm(&h, SCOPE_SCRIPT, "alice:/home/alice/public_html", NULL, NULL));
    ck_assert(!spool_confirm(&h, SCOPE_ACCOUNT, "bob", NULL, NULL));
    ck_assert(!spool_confirm(&h, SCOPE_MAILBOX, "alice", NULL, NULL));
    /* cut inside the options: not confirmable */
    const char *opt = strstr(buf, "-local\n");
    ck_assert_int_eq(spool_parse_header(buf, (size_t)(opt - buf) + 3, &h), -EBADMSG);
}
END_TEST

struct parse_case {
    const char *name;
    const char *in;
    int ret;
    const char *auth_id; /* NULL: absent */
    const char *ident;
    bool frozen;
};

static const struct parse_case parse_cases[] = {
    { "minimal", "1xVYNi-0001Xt-23-H\nu 1 2\n<>\n100 0\nXX\n", 0, NULL, NULL, false },
    { "quoter", "id-H\nu 1 2\n<a@b>\n100 0\n--(pgsql)auth_id x@y\n-ident u\nXX\n", 0, "x@y", "u",
      false },
    { "frozen", "id-H\nu 1 2\n<a@b>\n100 0\n-frozen 17\n-manual_thaw\nXX\n", 0, NULL, NULL, true },
    { "empty auth", "id-H\nu 1 2\n<a@b>\n100 0\n-auth_id\nXX\n", 0, "", NULL, false },
    { "header not option", "id-H\nu 1 2\n<a@b>\n100 0\nXX\n1\nr@x\n\n020F -auth_id evil\n", 0, NULL,
      NULL, false },
    { "no -H", "id\nu 1 2\n<a@b>\n100 0\nXX\n", -EBADMSG, NULL, NULL, false },
    { "bad uid", "id-H\nu x 2\n<a@b>\n100 0\nXX\n", -EBADMSG, NULL, NULL, false },
    { "extra ids", "id-H\nu 1 2 3\n<a@b>\n100 0\nXX\n", -EBADMSG, NULL, NULL, false },
    { "no brackets", "id-H\nu 1 2\na@b\n100 0\nXX\n", -EBADMSG, NULL, NULL, false },
    { "bad time", "id-H\nu 1 2\n<a@b>\nabc 0\nXX\n", -EBADMSG, NULL, NULL, false },
    { "cut", "id-H\nu 1 2\n<a@b>\n100 0\n-auth_id x", -EBADMSG, NULL, NULL, false },
    { "empty", "", -EBADMSG, NULL, NULL, false },
    /* ACL variables come before -auth_id (spool_out.c): skipped by their length */
    { "acl var then auth", "id-H\nu 1 2\n<a@b>\n100 0\n-aclm _x 3\nabc\n-auth_id x@y\nXX\n", 0,
      "x@y", NULL, false },
    { "acl var value looks like an option",
      "id-H\nu 1 2\n<a@b>\n100 0\n-aclc _x 13\n-auth_id evil\n-ident u\nXX\n", 0, NULL, "u",
      false },
    { "acl var with newlines", "id-H\nu 1 2\n<a@b>\n100 0\n--aclm _x 5\na\nb\nc\n-frozen 1\nXX\n",
      0, NULL, NULL, true },
    { "acl var cut", "id-H\nu 1 2\n<a@b>\n100 0\n-aclm _x 30\nabc\nXX\n", -EBADMSG, NULL, NULL,
      false },
    { "acl var bad length", "id-H\nu 1 2\n<a@b>\n100 0\n-aclm _x 2\nabc\nXX\n", -EBADMSG, NULL,
      NULL, false },
};

START_TEST(test_spool_parse_table)
{
    const struct parse_case *c = &parse_cases[_i];
    struct spool_header h;
    int r = spool_parse_header(c->in, strlen(c->in), &h);

    ck_assert_msg(r == c->ret, "%s: %d", c->name, r);
    if (r < 0)
        return;
    if (c->auth_id)
        ck_assert_msg(h.auth_id.p && fg_str_eq(h.auth_id, c->auth_id), "%s", c->name);
    else
        ck_assert_msg(!h.auth_id.p, "%s", c->name);
    if (c->ident)
        ck_assert_msg(h.ident.p && fg_str_eq(h.ident, c->ident), "%s", c->name);
    ck_assert_msg(h.frozen == c->frozen, "%s", c->name);
}
END_TEST

static bool
owner_stub(void *ctx, struct fg_str domain, const char *account)
{
    (void)ctx;
    return fg_str_eq(domain, "example.com") && strcmp(account, "exacct") == 0;
}

struct confirm_case {
    const char *name;
    const char *in;
    enum usertable_scope scope;
    const char *id;
    bool ok;
};

static const struct confirm_case confirm_cases[] = {
    { "mailbox ok", "i-H\nu 1 2\n<a@b>\n1 0\n-auth_id a@example.com\n-host_address 1.2.3.4\nXX\n",
      SCOPE_MAILBOX, "A@EXAMPLE.com", true },
    { "mailbox other", "i-H\nu 1 2\n<a@b>\n1 0\n-auth_id a@example.com\nXX\n", SCOPE_MAILBOX,
      "b@example.com", false },
    { "mailbox no auth", "i-H\nu 1 2\n<a@example.com>\n1 0\nXX\n", SCOPE_MAILBOX, "a@example.com",
      false },
    { "mailbox prefix", "i-H\nu 1 2\n<a@b>\n1 0\n-auth_id a@example.com.evil\nXX\n", SCOPE_MAILBOX,
      "a@example.com", false },
    { "account local", "i-H\nu 1 2\n<x@y>\n1 0\n-ident acct\n-local\nXX\n", SCOPE_ACCOUNT, "acct",
      true },
    { "account remote ident", "i-H\nu 1 2\n<x@y>\n1 0\n-ident acct\n-host_address 1.2.3.4\nXX\n",
      SCOPE_ACCOUNT, "acct", false },
    { "account auth owner", "i-H\nu 1 2\n<x@y>\n1 0\n-auth_id box@example.com\nXX\n", SCOPE_ACCOUNT,
      "exacct", true },
    { "account auth not owner", "i-H\nu 1 2\n<x@y>\n1 0\n-auth_id box@example.org\nXX\n",
      SCOPE_ACCOUNT, "exacct", false },
    { "account system login", "i-H\nu 1 2\n<x@y>\n1 0\n-auth_id acct\n-host_address 1.2.3.4\nXX\n",
      SCOPE_ACCOUNT, "acct", true },
    { "script", "i-H\nu 1 2\n<x@y>\n1 0\n--ident acct\nXX\n", SCOPE_SCRIPT, "acct:/home/acct/x",
      true },
    { "script no colon", "i-H\nu 1 2\n<x@y>\n1 0\n--ident acct\nXX\n", SCOPE_SCRIPT, "acct",
      false },
    { "script other", "i-H\nu 1 2\n<x@y>\n1 0\n--ident bob\nXX\n", SCOPE_SCRIPT, "acct:/x", false },
    /* the ACL recorded the working directory: only that script's messages are its own */
    { "script cwd same",
      "i-H\nu 1 2\n<x@y>\n1 0\n--ident acct\n-aclm _floodgate_cwd 7\n/home/x\nXX\n", SCOPE_SCRIPT,
      "acct:/home/x", true },
    { "script cwd other",
      "i-H\nu 1 2\n<x@y>\n1 0\n--ident acct\n-aclm _floodgate_cwd 7\n/home/y\nXX\n", SCOPE_SCRIPT,
      "acct:/home/x", false },
    { "script cwd deeper",
      "i-H\nu 1 2\n<x@y>\n1 0\n--ident acct\n-aclm _floodgate_cwd 9\n/home/x/a\nXX\n", SCOPE_SCRIPT,
      "acct:/home/x", false },
    { "account ignores cwd",
      "i-H\nu 1 2\n<x@y>\n1 0\n--ident acct\n-aclm _floodgate_cwd 7\n/home/y\nXX\n", SCOPE_ACCOUNT,
      "acct", true },
};

struct marker_case {
    const char *name;
    const char *marker;
    enum usertable_scope scope;
    const char *id;
    bool ok;
};

static const struct marker_case marker_cases[] = {
    { "script", "hold script shop1%3A/home/shop1/up%20x r1", SCOPE_SCRIPT, "shop1:/home/shop1/up x",
      true },
    { "script lower hex", "hold script shop1%3a/x r1", SCOPE_SCRIPT, "shop1:/x", true },
    { "other script", "hold script shop1%3A/home/shop1/up r1", SCOPE_SCRIPT, "shop1:/home/shop1",
      false },
    { "longer id", "hold script shop1%3A/x r1", SCOPE_SCRIPT, "shop1:/x/y", false },
    { "account", "suspend account shop1 r1", SCOPE_ACCOUNT, "shop1", true },
    { "with reference", "hold script shop1%3A/x r1 fg-0123abcd", SCOPE_SCRIPT, "shop1:/x", true },
    { "scope differs", "hold account shop1 r1", SCOPE_SCRIPT, "shop1", false },
    { "mailbox case", "hold mailbox box@example.com r", SCOPE_MAILBOX, "Box@Example.com", true },
    { "account case", "hold account Shop1 r", SCOPE_ACCOUNT, "shop1", false },
    { "bad escape", "hold script a%3/x r", SCOPE_SCRIPT, "a:/x", false },
    { "cut", "hold script", SCOPE_SCRIPT, "a:/x", false },
    { "absent", NULL, SCOPE_ACCOUNT, "a", false },
};

START_TEST(test_spool_marker_table)
{
    const struct marker_case *c = &marker_cases[_i];
    struct spool_header h;

    memset(&h, 0, sizeof(h));
    if (c->marker)
        h.marker = fg_str_make(c->marker, strlen(c->marker));
    ck_assert_msg(spool_marker_names(&h, c->scope, c->id) == c->ok, "%s", c->name);
}
END_TEST

START_TEST(test_spool_parse_marker)
{
    const char *in = "i-H\nu 1 2\n<x@y>\n1 0\n--ident acct\n-aclm _floodgate 24\n"
                     "hold account acct rule1\n\n-aclm _floodgate_cwd 2\n/x\n-frozen 5\nXX\n";
    struct spool_header h;

    ck_assert_int_eq(spool_parse_header(in, strlen(in), &h), 0);
    ck_assert(fg_str_eq(h.marker, "hold account acct rule1\n"));
    ck_assert(fg_str_eq(h.cwd, "/x"));
    ck_assert(h.frozen);
    ck_assert(spool_marker_names(&h, SCOPE_ACCOUNT, "acct"));
}
END_TEST

START_TEST(test_spool_confirm_table)
{
    const struct confirm_case *c = &confirm_cases[_i];
    struct spool_header h;

    ck_assert_msg(spool_parse_header(c->in, strlen(c->in), &h) == 0, "%s", c->name);
    ck_assert_msg(spool_confirm(&h, c->scope, c->id, owner_stub, NULL) == c->ok, "%s", c->name);
}
END_TEST

static char tmpdir[256];

static void
setup_tmp(void)
{
    testdir_make(tmpdir, sizeof(tmpdir), "check_spool");
}

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(test_spool_read_flat_and_split)
{
    char path[512], buf[SPOOL_HEADER_READ_MAX];
    size_t n = 0;
    struct spool_header h;

    setup_tmp();
    (void)snprintf(path, sizeof(path), "%s/input", tmpdir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    (void)snprintf(path, sizeof(path), "%s/input/1xVYNi-0001Xt-23-H", tmpdir);
    write_file(path, "1xVYNi-0001Xt-23-H\nu 1 2\n<a@b>\n1 0\n-auth_id a@b\nXX\n");
    ck_assert_int_eq(spool_read_header(tmpdir, "1xVYNi-0001Xt-23", buf, sizeof(buf), &n), 0);
    ck_assert_int_eq(spool_parse_header(buf, n, &h), 0);
    ck_assert(fg_str_eq(h.id, "1xVYNi-0001Xt-23"));
    /* split: 6th character of the id */
    (void)snprintf(path, sizeof(path), "%s/input/r", tmpdir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    (void)snprintf(path, sizeof(path), "%s/input/r/1xVYNr-0001Yf-21-H", tmpdir);
    write_file(path, "1xVYNr-0001Yf-21-H\nu 1 2\n<a@b>\n1 0\nXX\n");
    ck_assert_int_eq(spool_read_header(tmpdir, "1xVYNr-0001Yf-21", buf, sizeof(buf), &n), 0);
    ck_assert_int_eq(spool_read_header(tmpdir, "1xVYNz-0001Yf-21", buf, sizeof(buf), &n), -ENOENT);
    ck_assert_int_eq(spool_read_header(tmpdir, "../../etc/passwd", buf, sizeof(buf), &n), -EINVAL);
    ck_assert_int_eq(spool_read_header(tmpdir, "-xVYNr-0001Yf-21", buf, sizeof(buf), &n), -EINVAL);
    testdir_remove(tmpdir);
}
END_TEST

START_TEST(test_spool_subject)
{
    char buf[SPOOL_HEADER_READ_MAX], subj[32];
    size_t n = read_fixture("smtp-auth-frozen-H", buf, sizeof(buf));
    static const char folded[] = "id-H\nu 1 2\n<a@b>\n100 0\n-ident u\nXX\n1\nr@x\n\n"
                                 "013* Subject: old\n"
                                 "024T To: \"Subject: no\" <r@x>\n"
                                 "027  subject:  Win\n\t a   prize!\n"
                                 "009  X-A: b c\n";
    static const char none[] = "id-H\nu 1 2\n<a@b>\n100 0\nXX\n1\nr@x\n\n009  X-A: b c\n";
    static const char cut[] = "id-H\nu 1 2\n<a@b>\n100 0\nXX\n1\nr@x\n\n040  Subject: cut by the rea";

    ck_assert_int_eq(spool_header_subject(buf, n, subj, sizeof(subj)), 0);
    ck_assert_str_eq(subj, "hi");
    n = read_fixture("local-ident-H", buf, sizeof(buf));
    ck_assert_int_eq(spool_header_subject(buf, n, subj, sizeof(subj)), 0);
    ck_assert_str_eq(subj, "local1");
    /* a deleted one and a To: that quotes "Subject:" are skipped; folding unfolded */
    ck_assert_int_eq(spool_header_subject(folded, strlen(folded), subj, sizeof(subj)), 0);
    ck_assert_str_eq(subj, "Win a prize!");
    ck_assert_int_eq(spool_header_subject(folded, strlen(folded), subj, 5), 0);
    ck_assert_str_eq(subj, "Win");
    ck_assert_int_eq(spool_header_subject(none, strlen(none), subj, sizeof(subj)), -ENOENT);
    ck_assert_int_eq(spool_header_subject(cut, strlen(cut), subj, sizeof(subj)), -EBADMSG);
    ck_assert_int_eq(spool_header_subject("id-H\nu 1 2\n", 11, subj, sizeof(subj)), -EBADMSG);
    ck_assert_str_eq(subj, "");
}
END_TEST

struct scan_seen {
    char ids[8][32];
    size_t n;
};

static void
scan_cb(void *ctx, const char *msgid, const struct spool_header *h)
{
    struct scan_seen *s = ctx;
    ck_assert(fg_str_eq(h->id, msgid));
    ck_assert_uint_lt(s->n, 8);
    (void)snprintf(s->ids[s->n++], sizeof(s->ids[0]), "%s", msgid);
}

static bool
scan_has(const struct scan_seen *s, const char *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->ids[i], id) == 0)
            return true;
    return false;
}

START_TEST(test_spool_scan_flat_and_split)
{
    static const char *const flat[] = { "1xVYNi-0001Xt-23", "1xVYNj-0001Xt-23" };
    static const char *const split[] = { "1xVYNr-0001Yf-21", "1xVYNr-0001Yg-21",
                                         "1xVYNr-0001Yh-21" };
    char path[512], text[256];
    struct spool_scan *sc;
    struct scan_seen seen = { .n = 0 };
    int r, steps = 0;

    setup_tmp();
    ck_assert_int_eq(spool_scan_open(tmpdir, &sc), -ENOENT); /* no input/ */
    (void)snprintf(path, sizeof(path), "%s/input", tmpdir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    (void)snprintf(path, sizeof(path), "%s/input/r", tmpdir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    for (size_t i = 0; i < N_ELEMS(flat); i++) {
        (void)snprintf(path, sizeof(path), "%s/input/%s-H", tmpdir, flat[i]);
        (void)snprintf(text, sizeof(text), "%s-H\nu 1 2\n<a@b>\n1 0\nXX\n", flat[i]);
        write_file(path, text);
        (void)snprintf(path, sizeof(path), "%s/input/%s-D", tmpdir, flat[i]);
        write_file(path, "body");
    }
    for (size_t i = 0; i < N_ELEMS(split); i++) {
        (void)snprintf(path, sizeof(path), "%s/input/r/%s-H", tmpdir, split[i]);
        (void)snprintf(text, sizeof(text), "%s-H\nu 1 2\n<a@b>\n1 0\nXX\n", split[i]);
        write_file(path, text);
    }
    /* a -H file under another id's name, and one that does not parse: read, not reported */
    (void)snprintf(path, sizeof(path), "%s/input/1xVYNk-0001Xt-23-H", tmpdir);
    write_file(path, "1xVYNi-0001Xt-23-H\nu 1 2\n<a@b>\n1 0\nXX\n");
    (void)snprintf(path, sizeof(path), "%s/input/1xVYNl-0001Xt-23-H", tmpdir);
    write_file(path, "garbage");
    ck_assert_int_eq(spool_scan_open(tmpdir, &sc), 0);
    do {
        r = spool_scan_step(sc, 2, scan_cb, &seen);
        ck_assert_int_ge(r, 0);
        ck_assert_uint_le(spool_scan_files(sc), (size_t)(steps + 1) * 2);
        steps++;
    } while (r == 1 && steps < 20);
    ck_assert_int_eq(r, 0);
    ck_assert_int_ge(steps, 4); /* 7 files, 2 a step */
    ck_assert_uint_eq(spool_scan_files(sc), 7);
    ck_assert_uint_eq(seen.n, 5);
    for (size_t i = 0; i < N_ELEMS(flat); i++)
        ck_assert(scan_has(&seen, flat[i]));
    for (size_t i = 0; i < N_ELEMS(split); i++)
        ck_assert(scan_has(&seen, split[i]));
    ck_assert_int_eq(spool_scan_step(sc, 2, scan_cb, &seen), 0); /* stays finished */
    spool_scan_free(sc);
    testdir_remove(tmpdir);
}
END_TEST

static Suite *
spool_suite(void)
{
    Suite *s = suite_create("spool");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_spool_parse_real_smtp);
    tcase_add_test(tc, test_spool_parse_real_local);
    tcase_add_loop_test(tc, test_spool_parse_table, 0, (int)N_ELEMS(parse_cases));
    tcase_add_loop_test(tc, test_spool_confirm_table, 0, (int)N_ELEMS(confirm_cases));
    tcase_add_test(tc, test_spool_subject);
    tcase_add_loop_test(tc, test_spool_marker_table, 0, (int)N_ELEMS(marker_cases));
    tcase_add_test(tc, test_spool_parse_marker);
    suite_add_tcase(s, tc);
    tc = tcase_create("files");
    tcase_add_test(tc, test_spool_read_flat_and_split);
    tcase_add_test(tc, test_spool_scan_flat_and_split);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(spool_suite());
}
