/*
 * check_preflight.c - the paths a config needs, against a fake file system (a table of
 * paths with their type and access) and the real one; what a log sample says about its
 * log_selector.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

#include "config.h"
#include "preflight.h"
#include "testdir.h"
#include "testrun.h"

struct fake_entry {
    const char *path;
    mode_t type;  /* S_IFREG, S_IFDIR, S_IFIFO */
    int deny;     /* access bits refused */
    const char *text; /* a regular file's content */
};

struct fake_fs {
    const struct fake_entry *e;
    size_t n;
};

static const struct fake_entry *
fake_find(const struct fake_fs *f, const char *path)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->e[i].path, path) == 0)
            return &f->e[i];
    return NULL;
}

static int
fake_stat(void *ctx, const char *path, struct stat *st)
{
    const struct fake_entry *e = fake_find(ctx, path);
    if (!e)
        return -ENOENT;
    memset(st, 0, sizeof(*st));
    st->st_mode = e->type | 0755;
    st->st_size = e->text ? (off_t)strlen(e->text) : 0;
    return 0;
}

static int
fake_access(void *ctx, const char *path, int mode)
{
    const struct fake_entry *e = fake_find(ctx, path);
    if (!e)
        return -ENOENT;
    return (e->deny & mode) ? -EACCES : 0;
}

static ssize_t
fake_read_tail(void *ctx, const char *path, char *buf, size_t size)
{
    const struct fake_entry *e = fake_find(ctx, path);
    size_t n;
    if (!e)
        return -ENOENT;
    if (!e->text)
        return 0;
    n = strlen(e->text);
    if (n > size)
        n = size;
    memcpy(buf, e->text + strlen(e->text) - n, n);
    return (ssize_t)n;
}

static struct config *
load(const char *yaml)
{
    struct config *c = NULL;
    struct diag d;
    memset(&d, 0, sizeof(d));
    int r = config_parse(yaml, strlen(yaml), "t.yml", &c, &d);
    ck_assert_msg(r == 0, "config: %s", d.msg);
    return c;
}

static struct preflight_report report;

static void
run(const char *yaml, const struct fake_entry *e, size_t n)
{
    struct fake_fs f = { e, n };
    struct preflight_fs fs = { &f, fake_stat, fake_access, fake_read_tail };
    struct config *c = load(yaml);
    memset(&report, 0, sizeof(report));
    preflight_run(c, &fs, &report);
    config_free(c);
}

/* The item naming @key and @path, or NULL. */
static const struct preflight_item *
item(const char *key, const char *path)
{
    for (size_t i = 0; i < report.n; i++)
        if (strcmp(report.items[i].key, key) == 0 &&
            (!path || strcmp(report.items[i].path, path) == 0))
            return &report.items[i];
    return NULL;
}

#define PATHS                                                                                      \
    "log_file: /var/log/exim_mainlog\nstate_dir: /var/lib/floodgate\n"                             \
    "audit_log: /var/log/floodgate/audit.jsonl\n"

/* A cPanel-like host where everything the exim backend needs exists. */
static const struct fake_entry good_host[] = {
    { "/var/log", S_IFDIR, 0, NULL },
    { "/var/log/exim_mainlog", S_IFREG, 0, "" },
    { "/var/lib", S_IFDIR, 0, NULL },
    { "/var/log/floodgate", S_IFDIR, 0, NULL },
    { "/usr/sbin/exim", S_IFREG, 0, NULL },
    { "/var/spool/exim", S_IFDIR, 0, NULL },
    { "/var/spool/exim/input", S_IFDIR, 0, NULL },
    { "/etc/exim", S_IFDIR, 0, NULL },
};

START_TEST(test_preflight_good_host)
{
    run("mode: enforce\n" PATHS, good_host, sizeof(good_host) / sizeof(good_host[0]));
    for (size_t i = 0; i < report.n; i++) {
        char line[2048];
        preflight_format(&report.items[i], line, sizeof(line));
        ck_abort_msg("unexpected: %s", line);
    }
    ck_assert_uint_eq(report.nerrors, 0);
}
END_TEST

/* The shipped defaults on a Debian host: /etc/exim and /usr/sbin/exim do not exist. */
static const struct fake_entry debian_host[] = {
    { "/var/log", S_IFDIR, 0, NULL },
    { "/var/log/exim4", S_IFDIR, 0, NULL },
    { "/var/log/exim4/mainlog", S_IFREG, 0, "" },
    { "/var/lib", S_IFDIR, 0, NULL },
    { "/var/log/floodgate", S_IFDIR, 0, NULL },
    { "/usr/sbin/exim4", S_IFREG, 0, NULL },
    { "/var/spool/exim4", S_IFDIR, 0, NULL },
    { "/var/spool/exim4/input", S_IFDIR, 0, NULL },
    { "/etc/exim4", S_IFDIR, 0, NULL },
};

START_TEST(test_preflight_debian_defaults_enforce)
{
    const struct preflight_item *it;

    run("mode: enforce\n" PATHS, debian_host, sizeof(debian_host) / sizeof(debian_host[0]));
    it = item("log_file", "/var/log/exim_mainlog");
    ck_assert_ptr_nonnull(it);
    ck_assert_int_eq(it->level, PREFLIGHT_ERROR);
    ck_assert_ptr_nonnull(strstr(it->msg, "/var/log/exim4/mainlog"));
    it = item("actions.exim_path", "/usr/sbin/exim");
    ck_assert_ptr_nonnull(it);
    ck_assert_int_eq(it->level, PREFLIGHT_ERROR);
    ck_assert_ptr_nonnull(strstr(it->msg, "No such file"));
    it = item("actions.spool_dir", "/var/spool/exim");
    ck_assert_ptr_nonnull(it);
    it = item("actions.blocklist_file", "/etc/exim");
    ck_assert_ptr_nonnull(it);
    ck_assert_int_eq(it->level, PREFLIGHT_ERROR);
    ck_assert_uint_eq(report.nerrors, 4);
}
END_TEST

START_TEST(test_preflight_monitor_warns_only)
{
    run("mode: monitor\n" PATHS, debian_host, sizeof(debian_host) / sizeof(debian_host[0]));
    ck_assert_uint_eq(report.nerrors, 0);
    ck_assert_uint_ge(report.n, 4);
    ck_assert_ptr_nonnull(item("actions.exim_path", "/usr/sbin/exim"));
}
END_TEST

START_TEST(test_preflight_default_mode_is_monitor)
{
    run(PATHS, debian_host, sizeof(debian_host) / sizeof(debian_host[0]));
    ck_assert_uint_eq(report.nerrors, 0);
}
END_TEST

START_TEST(test_preflight_cpanel_backend_without_cpanel)
{
    const struct preflight_item *it;

    run("mode: enforce\nactions:\n  backend: cpanel\n" PATHS, good_host,
        sizeof(good_host) / sizeof(good_host[0]));
    it = item("actions.backend", "/usr/local/cpanel");
    ck_assert_ptr_nonnull(it);
    ck_assert_int_eq(it->level, PREFLIGHT_ERROR);
    ck_assert_ptr_nonnull(strstr(it->msg, "cPanel host"));
    /* the blocklist is not the cpanel backend's business */
    ck_assert_ptr_null(item("actions.blocklist_file", NULL));
}
END_TEST

START_TEST(test_preflight_wrong_types)
{
    static const struct fake_entry host[] = {
        { "/var/log", S_IFDIR, 0, NULL },
        { "/var/log/exim_mainlog", S_IFIFO, 0, NULL },
        { "/var/lib", S_IFDIR, 0, NULL },
        { "/var/lib/floodgate", S_IFREG, 0, "" },
        { "/var/log/floodgate", S_IFDIR, W_OK, NULL },
        { "/usr/sbin/exim", S_IFREG, X_OK, NULL },
        { "/var/spool/exim", S_IFDIR, 0, NULL },
        { "/var/spool/exim/input", S_IFDIR, 0, NULL },
        { "/etc/exim", S_IFDIR, 0, NULL },
    };
    const struct preflight_item *it;

    run("mode: enforce\n" PATHS, host, sizeof(host) / sizeof(host[0]));
    it = item("log_file", "/var/log/exim_mainlog");
    ck_assert_ptr_nonnull(it);
    ck_assert_ptr_nonnull(strstr(it->msg, "a FIFO"));
    it = item("state_dir", "/var/lib/floodgate");
    ck_assert_ptr_nonnull(it);
    ck_assert_ptr_nonnull(strstr(it->msg, "expected a directory"));
    it = item("audit_log", "/var/log/floodgate");
    ck_assert_ptr_nonnull(it);
    ck_assert_ptr_nonnull(strstr(it->msg, "write access"));
    it = item("actions.exim_path", "/usr/sbin/exim");
    ck_assert_ptr_nonnull(it);
    ck_assert_ptr_nonnull(strstr(it->msg, "execute access"));
    ck_assert_uint_eq(report.nerrors, 4);
}
END_TEST

/* ---- log samples ---- */

static void
sample(const char *yaml, const char *log)
{
    struct config *c = load(yaml);
    memset(&report, 0, sizeof(report));
    preflight_log_sample(c, log, strlen(log), &report);
    config_free(c);
}

#define RULES                                                                                      \
    "rules:\n"                                                                                     \
    "  - {name: box-rcpts, scope: mailbox, metric: recipients, window: 1h, above: 100, actions: [alert]}\n"          \
    "  - {name: box-domains, scope: mailbox, metric: domains, window: 1h, above: 50, actions: [alert]}\n"            \
    "  - {name: box-msgs, scope: mailbox, metric: messages, window: 1h, above: 50, actions: [alert]}\n"              \
    "  - {name: scripts, scope: script, metric: messages, window: 1h, above: 20, actions: [alert]}\n"

static char *
make_log(size_t n, bool with_for, bool local, bool cwd)
{
    size_t size = n * 400 + 1;
    char *buf = malloc(size);
    size_t k = 0;
    ck_assert_ptr_nonnull(buf);
    for (size_t i = 0; i < n; i++) {
        if (local && cwd)
            k += (size_t)snprintf(buf + k, size - k,
                                  "2026-12-01 10:00:%02zu [100] cwd=/home/u/public_html 3 args: "
                                  "/usr/sbin/sendmail -t -i\n",
                                  i % 60);
        k += (size_t)snprintf(
            buf + k, size - k, "2026-12-01 10:00:%02zu [100] 1abcde-0000%02zu-AB <= u@d.example %s S=100%s\n",
            i % 60, i % 100,
            local ? "U=u P=local" : "H=(pc) [192.0.2.1]:1234 P=esmtpa A=dovecot_login:u@d.example",
            with_for ? " for r@x.example" : "");
    }
    return buf;
}

START_TEST(test_preflight_sample_no_for_lists)
{
    char *log = make_log(30, false, false, false);
    const struct preflight_item *it;
    sample(RULES, log);
    it = item("log_file", NULL);
    ck_assert_ptr_nonnull(it);
    ck_assert_int_eq(it->level, PREFLIGHT_WARNING);
    ck_assert_ptr_nonnull(strstr(it->msg, "+received_recipients"));
    ck_assert_ptr_nonnull(strstr(it->msg, "box-rcpts, box-domains"));
    ck_assert_ptr_null(strstr(it->msg, "box-msgs"));
    free(log);
}
END_TEST

START_TEST(test_preflight_sample_no_cwd)
{
    char *log = make_log(30, true, true, false);
    const struct preflight_item *it;
    sample(RULES, log);
    ck_assert_uint_eq(report.n, 1);
    it = &report.items[0];
    ck_assert_ptr_nonnull(strstr(it->msg, "+arguments"));
    ck_assert_ptr_nonnull(strstr(it->msg, "scripts"));
    free(log);
}
END_TEST

START_TEST(test_preflight_sample_complete_or_short)
{
    char *log = make_log(30, true, true, true);
    sample(RULES, log);
    ck_assert_uint_eq(report.n, 0);
    free(log);
    /* a handful of arrivals proves nothing */
    log = make_log(5, false, true, false);
    sample(RULES, log);
    ck_assert_uint_eq(report.n, 0);
    free(log);
}
END_TEST

/* The real file system: a FIFO in the log's place is reported, never opened blocking. */
START_TEST(test_preflight_real_fs)
{
    char dir[512], path[600], yaml[4096];
    struct config *c;

    testdir_make(dir, sizeof(dir), "check_preflight");
    (void)snprintf(path, sizeof(path), "%s/mainlog", dir);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    (void)snprintf(yaml, sizeof(yaml),
                   "mode: enforce\nlog_file: %s\nstate_dir: %s/state\naudit_log: %s/audit.jsonl\n"
                   "actions:\n  exim_path: %s/exim\n  spool_dir: %s\n  blocklist_file: %s/bl\n",
                   path, dir, dir, dir, dir, dir);
    c = load(yaml);
    memset(&report, 0, sizeof(report));
    alarm(20); /* a blocking open of the FIFO would hang here */
    preflight_run(c, &preflight_fs_real, &report);
    alarm(0);
    ck_assert_ptr_nonnull(item("log_file", path));
    ck_assert_ptr_nonnull(strstr(item("log_file", path)->msg, "a FIFO"));
    ck_assert_ptr_nonnull(item("actions.exim_path", NULL));
    ck_assert_ptr_null(item("state_dir", NULL));
    config_free(c);
    testdir_remove(dir);
}
END_TEST

static Suite *
preflight_suite(void)
{
    Suite *s = suite_create("preflight");
    TCase *tc = tcase_create("paths");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_preflight_good_host);
    tcase_add_test(tc, test_preflight_debian_defaults_enforce);
    tcase_add_test(tc, test_preflight_monitor_warns_only);
    tcase_add_test(tc, test_preflight_default_mode_is_monitor);
    tcase_add_test(tc, test_preflight_cpanel_backend_without_cpanel);
    tcase_add_test(tc, test_preflight_wrong_types);
    tcase_add_test(tc, test_preflight_real_fs);
    suite_add_tcase(s, tc);
    tc = tcase_create("sample");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_preflight_sample_no_for_lists);
    tcase_add_test(tc, test_preflight_sample_no_cwd);
    tcase_add_test(tc, test_preflight_sample_complete_or_short);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(preflight_suite());
}
