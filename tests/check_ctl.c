/*
 * check_ctl.c - the control socket: the request parser (table of good and bad lines) and a
 * real round trip over a unix socket in a temporary directory, served from a libev loop
 * in a child process while the parent plays floodgatectl.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>
#include <ev.h>

#include "ctl.h"
#include "testrun.h"

struct ctl_case {
    const char *name;
    const char *line;
    int ret;
    enum ctl_verb verb;
    enum usertable_scope scope;
    const char *id;
};

static const struct ctl_case cases[] = {
    { "status", "status", 0, CTL_STATUS, 0, NULL },
    { "release mailbox", "release mailbox box@example.com", 0, CTL_RELEASE, SCOPE_MAILBOX,
      "box@example.com" },
    { "release script with spaces", "release script u:/home/u/public html", 0, CTL_RELEASE,
      SCOPE_SCRIPT, "u:/home/u/public html" },
    { "release account", "release account acct1", 0, CTL_RELEASE, SCOPE_ACCOUNT, "acct1" },
    { "mailbox lowercased", "release mailbox Box@Example.COM", 0, CTL_RELEASE, SCOPE_MAILBOX,
      "box@example.com" },
    { "account case kept", "release account Acct1", 0, CTL_RELEASE, SCOPE_ACCOUNT, "Acct1" },
    { "unknown verb", "suspend account acct1", -EINVAL, 0, 0, NULL },
    { "status with junk", "status now", -EINVAL, 0, 0, NULL },
    { "no identity", "release mailbox", -EINVAL, 0, 0, NULL },
    { "empty identity", "release mailbox ", -EINVAL, 0, 0, NULL },
    { "bad scope", "release domain example.com", -EINVAL, 0, 0, NULL },
    { "control char", "release account ac\001ct", -EINVAL, 0, 0, NULL },
    { "empty", "", -EINVAL, 0, 0, NULL },
};

START_TEST(test_ctl_parse)
{
    const struct ctl_case *c = &cases[_i];
    struct ctl_request req;
    const char *why = NULL;
    int r = ctl_parse(c->line, strlen(c->line), &req, &why);

    ck_assert_msg(r == c->ret, "%s: returned %d", c->name, r);
    if (r < 0) {
        ck_assert_msg(why != NULL, "%s: no reason", c->name);
        return;
    }
    ck_assert_msg(req.verb == c->verb, "%s: verb", c->name);
    if (c->verb == CTL_RELEASE) {
        ck_assert_msg(req.scope == c->scope, "%s: scope", c->name);
        ck_assert_msg(strcmp(req.id, c->id) == 0, "%s: id '%s'", c->name, req.id);
    }
}
END_TEST

static int
ctl_test_status(void *ctx, struct strbuf *out)
{
    (void)ctx;
    return strbuf_appends(out, "{\"ready\":true}");
}

static int
ctl_test_release(void *ctx, enum usertable_scope scope, const char *id, struct strbuf *out)
{
    (void)ctx;
    if (strcmp(id, "known@example.com") != 0)
        return -ENOENT;
    return strbuf_printf(out, "{\"released\":\"%s:%s\"}", usertable_scope_name(scope), id);
}

START_TEST(test_ctl_round_trip)
{
    char dir[] = "/tmp/fg-ctl-XXXXXX", path[256];
    struct strbuf out;
    pid_t pid;
    int status;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    (void)snprintf(path, sizeof(path), "%s/ctl.sock", dir);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
        struct ctl_params p = {
            .loop = loop, .path = path, .status = ctl_test_status, .release = ctl_test_release
        };
        struct ctl *c = NULL;
        if (ctl_open(&p, &c) < 0)
            _exit(3);
        alarm(20); /* bounded even if the parent dies */
        ev_run(loop, 0);
        _exit(0);
    }
    strbuf_init(&out, CTL_RESPONSE_MAX);
    for (int i = 0; i < 200; i++) { /* wait for the socket, at most 2 s */
        if (access(path, F_OK) == 0)
            break;
        (void)usleep(10000);
    }
    ck_assert_int_eq(ctl_call(path, "status", &out), 0);
    ck_assert_str_eq(strbuf_cstr(&out), "{\"ready\":true}\n");
    strbuf_reset(&out);
    ck_assert_int_eq(ctl_call(path, "release mailbox known@example.com", &out), 0);
    ck_assert_str_eq(strbuf_cstr(&out), "{\"released\":\"mailbox:known@example.com\"}\n");
    strbuf_reset(&out);
    ck_assert_int_eq(ctl_call(path, "release mailbox other@example.com", &out), 0);
    ck_assert_ptr_nonnull(strstr(strbuf_cstr(&out), "\"error\""));
    strbuf_reset(&out);
    ck_assert_int_eq(ctl_call(path, "frobnicate", &out), 0);
    ck_assert_ptr_nonnull(strstr(strbuf_cstr(&out), "unknown request"));
    strbuf_done(&out);
    (void)kill(pid, SIGKILL);
    (void)waitpid(pid, &status, 0);
    (void)unlink(path);
    (void)rmdir(dir);
    /* no daemon: a clear error for the client */
    strbuf_init(&out, 64);
    ck_assert_int_lt(ctl_call(path, "status", &out), 0);
    strbuf_done(&out);
}
END_TEST

static Suite *
ctl_suite(void)
{
    Suite *s = suite_create("ctl");
    TCase *tc = tcase_create("parse");

    tcase_add_loop_test(tc, test_ctl_parse, 0, (int)N_ELEMS(cases));
    suite_add_tcase(s, tc);
    tc = tcase_create("socket");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_ctl_round_trip);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(ctl_suite());
}
