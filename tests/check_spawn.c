/*
 * check_spawn.c - the real spawner against real programs (no shell between us and them),
 * and the argument validators as tables of cases.
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

#include "spawn.h"
#include "testrun.h"
#include "util.h"

struct run_ctx {
    int calls;
    struct spawn_result res;
};

static void
done_cb(void *ctx, const struct spawn_result *r)
{
    struct run_ctx *c = ctx;
    c->calls++;
    c->res = *r;
}

/* Run one argv to completion on the default loop; returns run()'s status. */
static int
run_argv(char *const argv[], int64_t timeout_ms, struct run_ctx *c)
{
    struct ev_loop *loop = EV_DEFAULT;
    int err = 0;
    struct spawner *sp = spawner_new(loop, "/", &err);
    int r;

    ck_assert_ptr_nonnull(sp);
    memset(c, 0, sizeof(*c));
    r = spawner_run(sp, argv, timeout_ms, done_cb, c);
    if (r == 0)
        ev_run(loop, 0);
    spawner_free(sp);
    return r;
}

START_TEST(test_spawn_true_false)
{
    char p_true[] = "/bin/true", p_false[] = "/bin/false";
    char *a1[] = { p_true, NULL }, *a2[] = { p_false, NULL };
    struct run_ctx c;

    ck_assert_int_eq(run_argv(a1, 5000, &c), 0);
    ck_assert_int_eq(c.calls, 1);
    ck_assert(spawn_result_ok(&c.res));
    ck_assert_int_eq(run_argv(a2, 5000, &c), 0);
    ck_assert_int_eq(c.calls, 1);
    ck_assert(!spawn_result_ok(&c.res));
    ck_assert(c.res.exited);
    ck_assert_int_eq(c.res.exit_code, 1);
}
END_TEST

START_TEST(test_spawn_output_no_shell)
{
    char p[] = "/bin/echo", a[] = "$HOME;`id` | x", p_ls[] = "/bin/ls", nx[] = "/nonexistent-fg";
    char *argv[] = { p, a, NULL }, *argv2[] = { p_ls, nx, NULL };
    struct run_ctx c;

    ck_assert_int_eq(run_argv(argv, 5000, &c), 0);
    ck_assert(spawn_result_ok(&c.res));
    ck_assert_str_eq(c.res.out, "$HOME;`id` | x\n");
    ck_assert_int_eq(run_argv(argv2, 5000, &c), 0);
    ck_assert(!spawn_result_ok(&c.res));
    ck_assert_ptr_nonnull(strstr(c.res.err_text, "nonexistent-fg"));
    ck_assert_uint_eq(c.res.out_len, 0);
}
END_TEST

START_TEST(test_spawn_environment_and_stdin)
{
    char p[] = "/usr/bin/env", pc[] = "/bin/cat";
    char *argv[] = { p, NULL }, *argv2[] = { pc, NULL };
    struct run_ctx c;

    (void)setenv("FG_SECRET_SHOULD_NOT_LEAK", "1", 1);
    ck_assert_int_eq(run_argv(argv, 5000, &c), 0);
    ck_assert_str_eq(c.res.out, "PATH=" SPAWN_PATH "\nLANG=C\nLC_ALL=C\n");
    /* stdin is /dev/null: cat ends at once with nothing */
    ck_assert_int_eq(run_argv(argv2, 5000, &c), 0);
    ck_assert(spawn_result_ok(&c.res));
    ck_assert_uint_eq(c.res.out_len, 0);
}
END_TEST

START_TEST(test_spawn_output_capped)
{
    char p[] = "/usr/bin/head", a1[] = "-c", a2[] = "100000", a3[] = "/dev/zero";
    char *argv[] = { p, a1, a2, a3, NULL };
    struct run_ctx c;

    ck_assert_int_eq(run_argv(argv, 5000, &c), 0);
    ck_assert(spawn_result_ok(&c.res));
    ck_assert_uint_eq(c.res.out_len, SPAWN_OUTPUT_MAX);
    ck_assert(c.res.out_truncated);
}
END_TEST

START_TEST(test_spawn_timeout_kills_group)
{
    /* A shell here is the test's child, not ours: it leaves a grandchild in the group. */
    char p[] = "/bin/sh", a1[] = "-c", a2[] = "sleep 30 & echo $!; wait";
    char *argv[] = { p, a1, a2, NULL };
    struct run_ctx c;
    int64_t t0 = (int64_t)(ev_time() * 1000);

    ck_assert_int_eq(run_argv(argv, 300, &c), 0);
    ck_assert_int_eq(c.calls, 1);
    ck_assert(c.res.timed_out);
    ck_assert(c.res.signaled);
    ck_assert_int_eq(c.res.signo, SIGKILL);
    ck_assert_int_lt((int64_t)(ev_time() * 1000) - t0, 5000);
    long gpid = strtol(c.res.out, NULL, 10);
    ck_assert_int_gt(gpid, 1);
    /* The grandchild is dead: gone, or a zombie waiting for init. */
    char path[64], buf[256] = "";
    (void)snprintf(path, sizeof(path), "/proc/%ld/stat", gpid);
    for (int i = 0; i < 200; i++) {
        FILE *f = fopen(path, "r");
        if (!f)
            return;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *rp = strrchr(buf, ')');
        if (rp && (rp[2] == 'Z' || rp[2] == 'X'))
            return;
        usleep(10000);
    }
    ck_abort_msg("grandchild %ld still alive: %s", gpid, buf);
}
END_TEST

/* The leader is reaped behind libev's back: the timeout must still end the command. */
START_TEST(test_spawn_timeout_unreaped_leader)
{
    struct ev_loop *loop = EV_DEFAULT;
    char p_true[] = "/bin/true";
    char *argv[] = { p_true, NULL };
    struct spawner *sp = spawner_new(loop, "/", NULL);
    struct run_ctx c;
    int st;

    ck_assert_ptr_nonnull(sp);
    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(spawner_run(sp, argv, 200, done_cb, &c), 0);
    while (waitpid(-1, &st, 0) < 0 && errno == EINTR)
        ;
    ev_run(loop, 0); /* without the give-up, the child watcher keeps this running forever */
    ck_assert_int_eq(c.calls, 1);
    ck_assert(c.res.timed_out);
    ck_assert(!spawn_result_ok(&c.res));
    spawner_free(sp);
}
END_TEST

START_TEST(test_spawn_bad_argv)
{
    char rel[] = "true", nx[] = "/nonexistent/bin/x";
    char *a1[] = { rel, NULL }, *a2[] = { nx, NULL };
    struct run_ctx c;

    ck_assert_int_eq(run_argv(a1, 1000, &c), -EINVAL);
    ck_assert_int_eq(run_argv(a2, 1000, &c), -ENOENT);
    ck_assert_int_eq(c.calls, 0);
}
END_TEST

START_TEST(test_spawn_not_default_loop)
{
    struct ev_loop *l = ev_loop_new(0);
    int err = 0;
    ck_assert_ptr_null(spawner_new(l, NULL, &err));
    ck_assert_int_eq(err, -EINVAL);
    ev_loop_destroy(l);
}
END_TEST

START_TEST(test_spawn_many_concurrent)
{
    struct ev_loop *loop = EV_DEFAULT;
    struct spawner *sp = spawner_new(loop, "/tmp", NULL);
    struct run_ctx c[8];
    char p[] = "/bin/pwd";
    char *argv[] = { p, NULL };

    memset(c, 0, sizeof(c));
    for (size_t i = 0; i < N_ELEMS(c); i++)
        ck_assert_int_eq(spawner_run(sp, argv, 5000, done_cb, &c[i]), 0);
    ev_run(loop, 0);
    for (size_t i = 0; i < N_ELEMS(c); i++) {
        ck_assert_int_eq(c[i].calls, 1);
        ck_assert_str_eq(c[i].res.out, "/tmp\n");
    }
    spawner_free(sp);
}
END_TEST

struct valid_case {
    const char *name;
    bool (*fn)(const char *);
    const char *in;
    bool ok;
};

static const struct valid_case valid_cases[] = {
    { "user plain", spawn_valid_user, "alice", true },
    { "user digits", spawn_valid_user, "bob2024", true },
    { "user dash first", spawn_valid_user, "-alice", false },
    { "user upper", spawn_valid_user, "Alice", false },
    { "user space", spawn_valid_user, "al ice", false },
    { "user empty", spawn_valid_user, "", false },
    { "user too long", spawn_valid_user, "abcdefghijklmnopqrstuvwxyzabcdefg", false },
    { "user eq", spawn_valid_user, "user=root", false },
    { "user newline", spawn_valid_user, "a\nb", false },
    { "box plain", spawn_valid_mailbox, "box@example.com", true },
    { "box plus", spawn_valid_mailbox, "Box.Name+tag@Sub.Example.com", true },
    { "box dash first", spawn_valid_mailbox, "-box@example.com", false },
    { "box no at", spawn_valid_mailbox, "example.com", false },
    { "box two at", spawn_valid_mailbox, "a@b@example.com", false },
    { "box space", spawn_valid_mailbox, "a b@example.com", false },
    { "box domain dotdot", spawn_valid_mailbox, "a@example..com", false },
    { "box empty domain", spawn_valid_mailbox, "a@", false },
    { "box newline", spawn_valid_mailbox, "a@ex\nample.com", false },
    { "box domain dash", spawn_valid_mailbox, "a@-x.com", false },
    { "id 4.96", spawn_valid_msgid, "1xVYNi-0001Xt-23", true },
    { "id 4.97", spawn_valid_msgid, "1rSX2k-00000000Gvk-0Mq6", true },
    { "id short", spawn_valid_msgid, "1xVYNi-0001Xt-2", false },
    { "id dash", spawn_valid_msgid, "-xVYNi-0001Xt-23", false },
    { "id bad char", spawn_valid_msgid, "1xVYNi-0001X/-23", false },
    { "text rule", spawn_valid_text, "mailbox-burst", true },
    { "text script", spawn_valid_text, "bob:/home/bob/public html", true },
    { "text dash", spawn_valid_text, "--help", false },
    { "text ctrl", spawn_valid_text, "a\tb", false },
    { "text high", spawn_valid_text, "caf\xc3\xa9", false },
};

START_TEST(test_spawn_validators)
{
    const struct valid_case *c = &valid_cases[_i];
    ck_assert_msg(c->fn(c->in) == c->ok, "%s", c->name);
}
END_TEST

static Suite *
spawn_suite(void)
{
    Suite *s = suite_create("spawn");
    TCase *tc = tcase_create("run");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_spawn_true_false);
    tcase_add_test(tc, test_spawn_output_no_shell);
    tcase_add_test(tc, test_spawn_environment_and_stdin);
    tcase_add_test(tc, test_spawn_output_capped);
    tcase_add_test(tc, test_spawn_timeout_kills_group);
    tcase_add_test(tc, test_spawn_timeout_unreaped_leader);
    tcase_add_test(tc, test_spawn_bad_argv);
    tcase_add_test(tc, test_spawn_not_default_loop);
    tcase_add_test(tc, test_spawn_many_concurrent);
    suite_add_tcase(s, tc);
    tc = tcase_create("validators");
    tcase_add_loop_test(tc, test_spawn_validators, 0, (int)N_ELEMS(valid_cases));
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(spawn_suite());
}
