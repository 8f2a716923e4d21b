/*
 * check_state.c - lib/state: atomic replace, reads, the lock, the checkpoint format.
 * Each test works in a fresh temporary directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

#include "state.h"
#include "testdir.h"
#include "testrun.h"

static char dir[256];

static void
setup(void)
{
    testdir_make(dir, sizeof(dir), "check_state");
}

static void
teardown(void)
{
    testdir_remove(dir);
}

static struct tail_pos
sample_pos(void)
{
    struct tail_pos p = { .dev = 2049,
                          .ino = 1234567,
                          .offset = 987654321,
                          .fp_len = 1024,
                          .marker_len = 256,
                          .marker = 0x0123456789abcdefULL };
    for (unsigned i = 0; i < 32; i++)
        p.fp[i] = (uint8_t)(i * 7 + 3);
    return p;
}

static void
assert_content(const char *name, const char *want)
{
    char *buf = NULL;
    size_t len = 0;

    ck_assert_int_eq(state_read_file(dir, name, 1 << 20, &buf, &len), 0);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_mem_eq(buf, want, len);
    free(buf);
}

static bool
exists(const char *name)
{
    char p[400];

    (void)snprintf(p, sizeof(p), "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

START_TEST(test_state_write_read)
{
    char *buf = NULL;
    size_t len = 0;

    ck_assert_int_eq(state_write_atomic(dir, "snap", "hello", 5, 0), 0);
    assert_content("snap", "hello");
    ck_assert_int_eq(state_write_atomic(dir, "snap", "world!", 6, 0), 0);
    assert_content("snap", "world!");
    ck_assert(!exists("snap.tmp"));
    ck_assert(!exists("snap.prev"));
    ck_assert_int_eq(state_write_atomic(dir, "snap", "", 0, 0), 0);
    assert_content("snap", "");
    ck_assert_int_eq(state_read_file(dir, "nope", 100, &buf, &len), -ENOENT);
    ck_assert_int_eq(state_write_atomic(dir, "big", "0123456789", 10, 0), 0);
    ck_assert_int_eq(state_read_file(dir, "big", 9, &buf, &len), -E2BIG);
    ck_assert_int_eq(state_write_atomic(dir, "a/b", "x", 1, 0), -EINVAL);
    ck_assert_int_eq(state_write_atomic(dir, "..", "x", 1, 0), -EINVAL);
    ck_assert_int_eq(state_write_atomic(dir, "", "x", 1, 0), -EINVAL);
}
END_TEST

START_TEST(test_state_binary_and_mode)
{
    char blob[3000];
    char *buf = NULL;
    size_t len = 0;
    struct stat st;
    char p[400];

    for (size_t i = 0; i < sizeof(blob); i++)
        blob[i] = (char)(i * 31);
    ck_assert_int_eq(state_write_atomic(dir, "counters", blob, sizeof(blob), 0), 0);
    ck_assert_int_eq(state_read_file(dir, "counters", 1 << 20, &buf, &len), 0);
    ck_assert_uint_eq(len, sizeof(blob));
    ck_assert_mem_eq(buf, blob, len);
    free(buf);
    (void)snprintf(p, sizeof(p), "%s/counters", dir);
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
}
END_TEST

START_TEST(test_state_keep_prev)
{
    ck_assert_int_eq(state_write_atomic(dir, "ledger", "one", 3, STATE_KEEP_PREV), 0);
    ck_assert(!exists("ledger.prev"));
    ck_assert_int_eq(state_write_atomic(dir, "ledger", "two", 3, STATE_KEEP_PREV), 0);
    assert_content("ledger", "two");
    assert_content("ledger.prev", "one");
}
END_TEST

/* A symlink planted at the tmp name must not redirect the write. */
START_TEST(test_state_tmp_symlink)
{
    char p[400], target[400];

    (void)snprintf(p, sizeof(p), "%s/snap.tmp", dir);
    (void)snprintf(target, sizeof(target), "%s/victim", dir);
    ck_assert_int_eq(symlink(target, p), 0);
    ck_assert_int_eq(state_write_atomic(dir, "snap", "x", 1, 0), -ELOOP);
    ck_assert(!exists("victim"));
    ck_assert(!exists("snap.tmp"));
}
END_TEST

/* A file where the directory should be: a clear error. */
START_TEST(test_state_dir_is_file)
{
    char p[400];
    int fd;

    (void)snprintf(p, sizeof(p), "%s/notadir", dir);
    fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    (void)close(fd);
    ck_assert_int_eq(state_write_atomic(p, "snap", "x", 1, 0), -ENOTDIR);
    ck_assert_int_eq(state_write_atomic("/nonexistent/dir", "snap", "x", 1, 0), -ENOENT);
}
END_TEST

/*
 * Not writable: as root (which ignores modes) the test drops to nobody first; Check runs
 * each test in its own child. The old file must stay intact and no tmp file remain.
 */
START_TEST(test_state_dir_not_writable)
{
    const char *f = getenv("CK_FORK");

    if (geteuid() == 0) {
        if (f && strcmp(f, "no") == 0)
            return;
        ck_assert_int_eq(chown(dir, 65534, 65534), 0);
        ck_assert_int_eq(setgroups(0, NULL), 0);
        ck_assert_int_eq(setresgid(65534, 65534, 65534), 0);
        ck_assert_int_eq(setresuid(65534, 65534, 65534), 0);
    }
    ck_assert_int_eq(state_write_atomic(dir, "snap", "old", 3, 0), 0);
    ck_assert_int_eq(chmod(dir, 0500), 0);
    ck_assert_int_eq(state_write_atomic(dir, "snap", "new", 3, 0), -EACCES);
    assert_content("snap", "old");
    ck_assert(!exists("snap.tmp"));
    ck_assert_int_eq(chmod(dir, 0700), 0);
}
END_TEST

/*
 * A write that fails half way (disk full). ENOSPC needs a full filesystem; RLIMIT_FSIZE
 * makes write() fail the same way (EFBIG) after the first bytes, on any filesystem.
 */
START_TEST(test_state_write_fails_midway)
{
    struct rlimit rl = { 4096, 4096 };
    char *big = malloc(100000);

    memset(big, 'n', 100000);
    ck_assert_int_eq(state_write_atomic(dir, "snap", "old", 3, STATE_KEEP_PREV), 0);
    (void)signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    ck_assert_int_eq(state_write_atomic(dir, "snap", big, 100000, STATE_KEEP_PREV), -EFBIG);
    assert_content("snap", "old");
    ck_assert(!exists("snap.tmp"));
    ck_assert(!exists("snap.prev"));
    free(big);
}
END_TEST

START_TEST(test_state_lock)
{
    int a = -1, b = -1;

    ck_assert_int_eq(state_lock(dir, &a), 0);
    ck_assert_int_eq(state_lock(dir, &b), -EBUSY);
    (void)close(a);
    ck_assert_int_eq(state_lock(dir, &b), 0);
    (void)close(b);
    ck_assert_int_eq(state_lock("/nonexistent/dir", &a), -ENOENT);
}
END_TEST

START_TEST(test_state_checkpoint_roundtrip)
{
    struct tail_pos p = sample_pos(), q;
    char buf[STATE_CHECKPOINT_MAX];
    int n = state_checkpoint_encode(&p, buf, sizeof(buf));

    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(state_checkpoint_decode(buf, (size_t)n, &q), 0);
    ck_assert_mem_eq(&p, &q, sizeof(p));
    ck_assert_int_eq(state_checkpoint_encode(&p, buf, 50), -E2BIG);
    /* Zero marker, short fingerprint. */
    p.fp_len = 10;
    p.marker_len = 0;
    p.marker = 0;
    n = state_checkpoint_encode(&p, buf, sizeof(buf));
    ck_assert_int_eq(state_checkpoint_decode(buf, (size_t)n, &q), 0);
    ck_assert_mem_eq(&p, &q, sizeof(p));
}
END_TEST

/* Any single changed byte, and any truncation, is -EBADMSG (or another version). */
START_TEST(test_state_checkpoint_corrupt)
{
    struct tail_pos p = sample_pos(), q = { 0 };
    char buf[STATE_CHECKPOINT_MAX];
    int n = state_checkpoint_encode(&p, buf, sizeof(buf));

    for (int i = 0; i < n; i++) {
        char saved = buf[i];
        int r;
        buf[i] = (char)(saved ^ 0x01);
        r = state_checkpoint_decode(buf, (size_t)n, &q);
        ck_assert_msg(r == -EBADMSG || r == -EPROTONOSUPPORT, "byte %d: %d", i, r);
        buf[i] = saved;
    }
    for (int len = 0; len < n; len++)
        ck_assert_int_eq(state_checkpoint_decode(buf, (size_t)len, &q), -EBADMSG);
    ck_assert_uint_eq(q.ino, 0); /* never written on failure */
}
END_TEST

static const struct {
    const char *name;
    const char *text;
    int want;
} bad[] = {
    { "empty", "", -EBADMSG },
    { "version 2", "floodgate-checkpoint 2\n", -EPROTONOSUPPORT },
    { "other magic", "tail-checkpoint 1\ndev 1\n", -EBADMSG },
    { "garbage", "\x01\x02\x03\n", -EBADMSG },
};

START_TEST(test_state_checkpoint_bad)
{
    struct tail_pos q;

    ck_assert_msg(state_checkpoint_decode(bad[_i].text, strlen(bad[_i].text), &q) == bad[_i].want,
                  "%s", bad[_i].name);
}
END_TEST

/* Bad values under a valid CRC are still refused. */
START_TEST(test_state_checkpoint_range)
{
    struct tail_pos p = sample_pos(), q;
    char buf[STATE_CHECKPOINT_MAX];
    int n;

    p.fp_len = TAIL_FP_BYTES + 1;
    n = state_checkpoint_encode(&p, buf, sizeof(buf));
    ck_assert_int_eq(state_checkpoint_decode(buf, (size_t)n, &q), -EBADMSG);
    p = sample_pos();
    p.marker_len = 300;
    n = state_checkpoint_encode(&p, buf, sizeof(buf));
    ck_assert_int_eq(state_checkpoint_decode(buf, (size_t)n, &q), -EBADMSG);
    p = sample_pos();
    p.ino = 0;
    n = state_checkpoint_encode(&p, buf, sizeof(buf));
    ck_assert_int_eq(state_checkpoint_decode(buf, (size_t)n, &q), -EBADMSG);
}
END_TEST

START_TEST(test_state_checkpoint_save_load)
{
    struct tail_pos p = sample_pos(), q;
    char p1[400];
    int fd;

    ck_assert_int_eq(state_checkpoint_load(dir, &q), -ENOENT);
    ck_assert_int_eq(state_checkpoint_save(dir, &p), 0);
    ck_assert_int_eq(state_checkpoint_load(dir, &q), 0);
    ck_assert_mem_eq(&p, &q, sizeof(p));
    p.offset += 100;
    ck_assert_int_eq(state_checkpoint_save(dir, &p), 0);
    ck_assert_int_eq(state_checkpoint_load(dir, &q), 0);
    ck_assert_uint_eq(q.offset, p.offset);
    /* Corrupt the newest: fall back one generation. */
    (void)snprintf(p1, sizeof(p1), "%s/%s", dir, STATE_CHECKPOINT_NAME);
    fd = open(p1, O_WRONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, "X", 1, 30), 1);
    (void)close(fd);
    ck_assert_int_eq(state_checkpoint_load(dir, &q), 0);
    ck_assert_uint_eq(q.offset, p.offset - 100);
    /* Crash between the two renames: only .prev exists. */
    ck_assert_int_eq(unlink(p1), 0);
    ck_assert_int_eq(state_checkpoint_load(dir, &q), 0);
    ck_assert_uint_eq(q.offset, p.offset - 100);
    /* Both corrupt. */
    (void)snprintf(p1, sizeof(p1), "%s/%s.prev", dir, STATE_CHECKPOINT_NAME);
    fd = open(p1, O_WRONLY | O_TRUNC | O_CLOEXEC);
    (void)close(fd);
    ck_assert_int_eq(state_checkpoint_load(dir, &q), -EBADMSG);
}
END_TEST

static Suite *
state_suite(void)
{
    Suite *s = suite_create("state");
    TCase *tc;

    tc = tcase_create("files");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_state_write_read);
    tcase_add_test(tc, test_state_binary_and_mode);
    tcase_add_test(tc, test_state_keep_prev);
    tcase_add_test(tc, test_state_tmp_symlink);
    tcase_add_test(tc, test_state_dir_is_file);
    tcase_add_test(tc, test_state_dir_not_writable);
    tcase_add_test(tc, test_state_write_fails_midway);
    tcase_add_test(tc, test_state_lock);
    suite_add_tcase(s, tc);

    tc = tcase_create("checkpoint");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_state_checkpoint_roundtrip);
    tcase_add_test(tc, test_state_checkpoint_corrupt);
    tcase_add_loop_test(tc, test_state_checkpoint_bad, 0, (int)(sizeof(bad) / sizeof(bad[0])));
    tcase_add_test(tc, test_state_checkpoint_range);
    tcase_add_test(tc, test_state_checkpoint_save_load);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(state_suite());
}
