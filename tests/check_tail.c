/*
 * check_tail.c - scenario tests for lib/tail on real files (tailer-reliability.md 9).
 *
 * Each test gets a fresh temporary directory and its own libev loop. A writer (this
 * process, or a forked child when the scenario needs writes racing the tailer) appends
 * Exim-shaped lines carrying "seq=NNNNNNN", one write() per line. The sink records the
 * sequence numbers of the records handed out; the oracle checks that every line was seen
 * exactly once and in order (EXACT), or at most once for a set the test knows is at risk
 * (GAP). The loop is driven by ev_run(EVRUN_ONCE) with a 5 ms heartbeat until a
 * condition holds or a deadline passes; nothing sleeps and hopes.
 */
/* this file defines open() below (the FIFO-swap seam): no fortify wrapper for it here */
#undef _FORTIFY_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <ev.h>
#include <zlib.h>

#include "clock.h"
#include "log.h"
#include "state.h"
#include "tail.h"
#include "testdir.h"
#include "testrun.h"

/* The burst: 1M lines normally; 200k under ASan, where each record costs ~5x more. */
#if defined(__SANITIZE_ADDRESS__)
#define BURST_LINES 200000
#else
#define BURST_LINES 1000000
#endif
#define SIGKILL_ROUNDS 60
#define SIGKILL_LINES  24000
#define SEQ_NONE       UINT32_MAX

struct sink {
    uint32_t *seq;
    size_t n, cap;
    uint64_t bad;
};

static char tmpdir[256];
static char logpath[300];
static struct ev_loop *loop;
static struct sink sink;
static ev_timer heartbeat;
static uint64_t heartbeats;

/* ---- the FIFO-swap seam ---- */

/*
 * open() and open64() for the whole test binary (lib/tail.c included: its calls bind to
 * these, the executable's own definitions, before the C library's). While fifo_swaps is
 * non-zero, a read-only open of the log path first renames a FIFO over it: the race of a
 * local user who swaps a FIFO in between the tailer's stat() and open(). A FIFO without
 * a writer makes a blocking open() wait forever; alarm() turns that into a failure.
 */
static int fifo_swaps;

static int
fifo_seam(const char *path, int flags, va_list ap)
{
    mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, unsigned) : 0;

    if (fifo_swaps > 0 && (flags & O_ACCMODE) == O_RDONLY && strcmp(path, logpath) == 0) {
        char tmp[320];
        fifo_swaps--;
        (void)snprintf(tmp, sizeof(tmp), "%s.swap", logpath);
        if (mkfifo(tmp, 0600) < 0 || rename(tmp, logpath) < 0)
            abort();
    }
    return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}

int
open(const char *path, int flags, ...)
{
    va_list ap;
    int r;

    va_start(ap, flags);
    r = fifo_seam(path, flags, ap);
    va_end(ap);
    return r;
}

int
open64(const char *path, int flags, ...)
{
    va_list ap;
    int r;

    va_start(ap, flags);
    r = fifo_seam(path, flags, ap);
    va_end(ap);
    return r;
}

/* ---- helpers ---- */

static int64_t
now_ms(void)
{
    return clock_mono_ms(&clock_real);
}

static void
sink_record(void *ctx, const struct eximlog_record *rec)
{
    struct sink *s = ctx;
    const char *p = memmem(rec->text, rec->len, "seq=", 4);
    uint32_t v = 0;

    if (!p) {
        s->bad++;
        return;
    }
    p += 4;
    for (int i = 0; i < 7; i++)
        v = v * 10 + (uint32_t)(p[i] - '0');
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->seq = realloc(s->seq, s->cap * sizeof(s->seq[0]));
        ck_assert_ptr_nonnull(s->seq);
    }
    s->seq[s->n++] = v;
}

static size_t
fmt_line(char *buf, size_t size, uint32_t seq)
{
    int n = snprintf(buf, size,
                     "2026-03-02 00:%02u:%02u 1wXyZa-00%04u-Ab <= user%u@example.com "
                     "H=mail.example.net [192.0.2.%u] P=esmtpsa A=dovecot_login:user%u@example.com "
                     "S=%u id=m%u@example.com seq=%07u\n",
                     (seq / 60) % 60, seq % 60, seq % 10000, seq % 97, seq % 250, seq % 97,
                     1000 + seq % 9000, seq, seq);
    ck_assert(n > 0 && (size_t)n < size);
    return (size_t)n;
}

static void
write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            abort();
        p += w;
        n -= (size_t)w;
    }
}

static int
open_log(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        abort();
    return fd;
}

/* Append lines [from, to) to @path, one write() each. */
static void
append_lines(const char *path, uint32_t from, uint32_t to)
{
    char b[512];
    int fd = open_log(path);

    for (uint32_t s = from; s < to; s++)
        write_all(fd, b, fmt_line(b, sizeof(b), s));
    (void)close(fd);
}

static void
sub_path(char *buf, size_t size, const char *suffix)
{
    (void)snprintf(buf, size, "%s%s", logpath, suffix);
}

static void
hb_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)w;
    (void)revents;
    heartbeats++;
}

/* Run the loop until @cond(@arg) or @timeout_ms; returns the condition's last value. */
static bool
run_until(bool (*cond)(void *), void *arg, int64_t timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;

    while (!cond(arg)) {
        if (now_ms() > end)
            return false;
        ev_run(loop, EVRUN_ONCE);
    }
    return true;
}

static bool
have_n(void *arg)
{
    return sink.n >= *(size_t *)arg;
}

static bool
caught_up(void *arg)
{
    return tail_caught_up(arg);
}

/* Run for @ms of loop time (lets flush and grace deadlines pass). */
static bool
never(void *arg)
{
    (void)arg;
    return false;
}

static void
run_for(int64_t ms)
{
    (void)run_until(never, NULL, ms);
}

static size_t
wait_n(size_t n, int64_t timeout_ms)
{
    (void)run_until(have_n, &n, timeout_ms);
    return sink.n;
}

/* EXACT over [from, to): every seq once, in order, nothing else. */
static void
assert_exact(uint32_t from, uint32_t to)
{
    ck_assert_uint_eq(sink.bad, 0);
    ck_assert_msg(sink.n == (size_t)(to - from), "expected %u records, got %zu", to - from, sink.n);
    for (size_t i = 0; i < sink.n; i++)
        ck_assert_msg(sink.seq[i] == from + i, "record %zu: seq %u, expected %zu", i, sink.seq[i],
                      from + i);
}

/*
 * GAP: seqs in [0, total) outside [risk_from, risk_to) exactly once; inside at most once;
 * all in increasing order. Returns how many of the risky ones were seen.
 */
static uint32_t
assert_gap(uint32_t total, uint32_t risk_from, uint32_t risk_to)
{
    uint32_t seen_risky = 0;
    uint8_t *seen = calloc(total, 1);

    ck_assert_ptr_nonnull(seen);
    ck_assert_uint_eq(sink.bad, 0);
    for (size_t i = 0; i < sink.n; i++) {
        uint32_t s = sink.seq[i];
        ck_assert_msg(s < total, "seq %u out of range", s);
        ck_assert_msg(i == 0 || s > sink.seq[i - 1], "order: %u after %u", s, sink.seq[i - 1]);
        seen[s]++;
    }
    for (uint32_t s = 0; s < total; s++) {
        if (s >= risk_from && s < risk_to) {
            ck_assert_uint_le(seen[s], 1);
            seen_risky += seen[s];
        } else {
            ck_assert_msg(seen[s] == 1, "seq %u seen %u times", s, seen[s]);
        }
    }
    free(seen);
    return seen_risky;
}

static struct tail *
open_tail(const struct tail_params *extra)
{
    struct tail_params p = { 0 };
    struct tail *t = NULL;

    if (extra)
        p = *extra;
    p.loop = loop;
    p.path = logpath;
    p.clock = &clock_real;
    p.on_record = sink_record;
    p.ctx = &sink;
    ck_assert_int_eq(tail_open(&p, &t), 0);
    return t;
}

static struct tail *
open_tail_from_start(void)
{
    struct tail_params p = { .from_start = true };
    return open_tail(&p);
}

static void
setup(void)
{
    testdir_make(tmpdir, sizeof(tmpdir), "check_tail");
    (void)snprintf(logpath, sizeof(logpath), "%s/exim_mainlog", tmpdir);
    loop = ev_loop_new(EVFLAG_AUTO);
    ck_assert_ptr_nonnull(loop);
    memset(&sink, 0, sizeof(sink));
    heartbeats = 0;
    ev_timer_init(&heartbeat, hb_cb, 0.005, 0.005);
    ev_timer_start(loop, &heartbeat);
    log_setup(LOG_SINK_STDERR, LOG_WARNING);
}

static void
teardown(void)
{
    ev_timer_stop(loop, &heartbeat);
    ev_loop_destroy(loop);
    free(sink.seq);
    testdir_remove(tmpdir);
}

/* gzip @src into @dst (mtime kept, like gzip(1)) and unlink @src. */
static void
gzip_file(const char *src, const char *dst)
{
    char b[65536];
    struct stat st;
    int in = open(src, O_RDONLY | O_CLOEXEC);
    gzFile out = gzopen(dst, "wb");
    ssize_t n;
    struct timespec ts[2];

    ck_assert_int_ge(in, 0);
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(fstat(in, &st), 0);
    while ((n = read(in, b, sizeof(b))) > 0)
        ck_assert_int_eq(gzwrite(out, b, (unsigned)n), (int)n);
    ck_assert_int_eq(gzclose(out), Z_OK);
    (void)close(in);
    ts[0] = st.st_atim;
    ts[1] = st.st_mtim;
    ck_assert_int_eq(utimensat(AT_FDCWD, dst, ts, 0), 0);
    ck_assert_int_eq(unlink(src), 0);
}

static void
copy_file(const char *src, const char *dst)
{
    char b[65536];
    int in = open(src, O_RDONLY | O_CLOEXEC);
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    ssize_t n;

    if (in < 0 || out < 0)
        abort();
    while ((n = read(in, b, sizeof(b))) > 0)
        write_all(out, b, (size_t)n);
    (void)close(in);
    (void)close(out);
}

/* ---- the writer child ---- */

enum rot { ROT_NONE, ROT_RENAME, ROT_COPYTRUNCATE, ROT_DELETE };

struct writer {
    uint32_t total;
    uint32_t every; /* rotate after this many lines (0: never) */
    bool handshake; /* rename: rotate only once the tailer has read from the current file */
    enum rot rot;
    uint32_t pace;    /* lines between 1 ms pauses (0: full speed) */
    uint32_t w_lines; /* copytruncate: lines written between the copy and the truncate */
};

/*
 * Records the parent's tailer has delivered, shared with the writer child (writer.handshake):
 * logrotate never renames a log twice before a reader has opened it, but an unpaced writer
 * on a loaded machine could, and a file renamed on past every name the tailer looks for
 * before it was ever opened cannot be found again. Writes inside a file still race.
 */
static volatile uint32_t *seen_shm;

static void
writer_wait_seen(uint32_t n)
{
    for (int i = 0; i < 30000 && seen_shm && *seen_shm < n; i++) /* at most 30 s */
        (void)usleep(1000);
}

/* Child: write the lines, rotating as told; _exit() without touching the test's state. */
static void
writer_run(const struct writer *w)
{
    char b[512], p1[320];
    int fd = open_log(logpath);
    uint32_t gen = 0;

    sub_path(p1, sizeof(p1), ".1");
    for (uint32_t s = 0; s < w->total; s++) {
        if (w->every && s > 0 && s % w->every == 0) {
            gen++;
            if (w->rot == ROT_RENAME) {
                char old[340];
                if (w->handshake)
                    writer_wait_seen(s - w->every + 1);
                (void)snprintf(old, sizeof(old), "%s.r%u", logpath, gen);
                /* Shift like logrotate, so the tailer sees .1 move on. */
                (void)rename(p1, old);
                if (rename(logpath, p1) < 0)
                    _exit(3);
                (void)close(fd);
                fd = open_log(logpath);
            } else if (w->rot == ROT_DELETE) {
                (void)unlink(logpath);
                (void)close(fd);
                fd = open_log(logpath);
            } else if (w->rot == ROT_COPYTRUNCATE) {
                /* a reader more than a whole file behind at a copytruncate has lost its
                 * place whatever it does: rotate with the tailer at most half a file back */
                if (w->handshake)
                    writer_wait_seen(s - w->every / 2);
                copy_file(logpath, p1);
                for (uint32_t k = 0; k < w->w_lines && s < w->total; k++, s++)
                    write_all(fd, b, fmt_line(b, sizeof(b), s));
                if (ftruncate(fd, 0) < 0)
                    _exit(4);
            }
        }
        if (s < w->total)
            write_all(fd, b, fmt_line(b, sizeof(b), s));
        if (w->pace && s % w->pace == 0) {
            struct timespec ts = { 0, 1000000 };
            (void)nanosleep(&ts, NULL);
        }
    }
    (void)close(fd);
    _exit(0);
}

static pid_t
writer_start(const struct writer *w)
{
    pid_t pid;

    /* The log must exist before the tailer starts, or it would wait for it. */
    (void)close(open_log(logpath));
    if (w->handshake && !seen_shm) {
        void *m = mmap(NULL, sizeof(uint32_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                       -1, 0);
        ck_assert(m != MAP_FAILED);
        seen_shm = m;
    }
    if (seen_shm)
        *seen_shm = 0;
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        writer_run(w);
    return pid;
}

struct wait_writer {
    pid_t pid;
    int status;
    size_t want;
};

static bool
writer_done_and_seen(void *arg)
{
    struct wait_writer *ww = arg;

    if (seen_shm)
        *seen_shm = (uint32_t)sink.n;
    if (ww->pid > 0 && waitpid(ww->pid, &ww->status, WNOHANG) == ww->pid)
        ww->pid = 0;
    return ww->pid == 0 && sink.n >= ww->want;
}

/* Wait for the writer to finish and @want records, then let late work settle. */
static void
writer_finish(pid_t pid, size_t want, struct tail *t, int64_t timeout_ms)
{
    struct wait_writer ww = { pid, 0, want };

    (void)run_until(writer_done_and_seen, &ww, timeout_ms);
    ck_assert_msg(ww.pid == 0, "writer still running");
    ck_assert_msg(WIFEXITED(ww.status) && WEXITSTATUS(ww.status) == 0, "writer failed");
    (void)run_until(caught_up, t, 2000);
    run_for(50);
}

/* ---- scenarios ---- */

START_TEST(test_tail_rename_rotation_under_write)
{
    struct writer w = { .total = 100000, .every = 5000, .rot = ROT_RENAME, .handshake = true };
    struct tail_params p = { .grace_ms = 300 };
    struct tail *t;
    struct tail_stats st;
    pid_t pid;

    (void)close(open_log(logpath));
    t = open_tail(&p);
    pid = writer_start(&w);
    writer_finish(pid, w.total, t, 60000);
    assert_exact(0, w.total);
    tail_get_stats(t, &st);
    ck_assert_uint_eq(st.rotations, 19);
    ck_assert_uint_eq(st.gaps, 0);
    tail_free(t);
}
END_TEST

START_TEST(test_tail_delete_recreate_under_write)
{
    /*
     * Paced (~4 ms per 10 lines): a file that is created and unlinked again before the
     * tailer ever opened it has no name left to find; that is not a tailer bug.
     */
    struct writer w = { .total = 20000, .every = 2000, .rot = ROT_DELETE, .pace = 10 };
    struct tail_params p = { .grace_ms = 300 };
    struct tail *t;
    pid_t pid;

    (void)close(open_log(logpath));
    t = open_tail(&p);
    pid = writer_start(&w);
    writer_finish(pid, w.total, t, 60000);
    assert_exact(0, w.total);
    tail_free(t);
}
END_TEST

/* Deterministic: unread lines in the deleted file are still read through our fd. */
START_TEST(test_tail_delete_recreate_unread)
{
    struct tail *t;
    struct tail_stats st;

    append_lines(logpath, 0, 100);
    t = open_tail_from_start();
    ck_assert_uint_eq(wait_n(100, 5000), 100);
    append_lines(logpath, 100, 150);
    ck_assert_int_eq(unlink(logpath), 0);
    append_lines(logpath, 150, 250);
    ck_assert_uint_eq(wait_n(250, 5000), 250);
    run_for(50);
    assert_exact(0, 250);
    tail_get_stats(t, &st);
    ck_assert_uint_eq(st.rotations, 1);
    tail_free(t);
}
END_TEST

START_TEST(test_tail_copytruncate_under_write)
{
    /* w = 20 lines per rotation between the copy and the truncate: at most once. */
    struct writer w = {
        .total = 30000, .every = 3000, .rot = ROT_COPYTRUNCATE, .w_lines = 20, .pace = 50,
        .handshake = true
    };
    struct tail *t;
    struct tail_stats st;
    pid_t pid;
    uint32_t seen = 0, risky = 0;
    uint8_t *risk;

    (void)close(open_log(logpath));
    t = open_tail(NULL);
    pid = writer_start(&w);
    {
        struct wait_writer ww = { pid, 0, 0 };
        (void)run_until(writer_done_and_seen, &ww, 60000);
        ck_assert(ww.pid == 0 && WIFEXITED(ww.status) && WEXITSTATUS(ww.status) == 0);
        (void)run_until(caught_up, t, 2000);
        run_for(300);
    }
    /* Risky: seqs [k*every, k*every + w_lines) for each rotation k. */
    risk = calloc(w.total, 1);
    for (uint32_t k = 1; k * w.every < w.total; k++)
        for (uint32_t i = 0; i < w.w_lines; i++) {
            risk[k * w.every + i] = 1;
            risky++;
        }
    {
        uint8_t *cnt = calloc(w.total, 1);
        for (size_t i = 0; i < sink.n; i++) {
            ck_assert_uint_lt(sink.seq[i], w.total);
            ck_assert_msg(i == 0 || sink.seq[i] > sink.seq[i - 1], "order at %zu", i);
            cnt[sink.seq[i]]++;
        }
        for (uint32_t s = 0; s < w.total; s++) {
            if (risk[s]) {
                ck_assert_uint_le(cnt[s], 1);
                seen += cnt[s];
            } else {
                ck_assert_msg(cnt[s] == 1, "seq %u seen %u times", s, cnt[s]);
            }
        }
        free(cnt);
    }
    free(risk);
    tail_get_stats(t, &st);
    ck_assert_uint_eq(st.truncations, 9);
    fprintf(stderr, "copytruncate: %u of %u at-risk lines seen, %llu copies recovered\n", seen,
            risky, (unsigned long long)st.recovered_copies);
    tail_free(t);
}
END_TEST

/* Paused: 50 lines unread at the copy are recovered from it; the w lines are lost. */
/* Late writes to the renamed file (an Exim process that stat()ed before the rename). */
START_TEST(test_tail_late_writes_after_rename)
{
    char p1[320], b[512];
    struct tail_params p = { .from_start = true, .grace_ms = 1000 };
    struct tail *t;
    struct tail_stats st;
    uint8_t cnt[200] = { 0 };
    int old;

    sub_path(p1, sizeof(p1), ".1");
    old = open_log(logpath);
    for (uint32_t s = 0; s < 100; s++)
        write_all(old, b, fmt_line(b, sizeof(b), s));
    t = open_tail(&p);
    ck_assert_uint_eq(wait_n(100, 5000), 100);
    ck_assert_int_eq(rename(logpath, p1), 0);
    append_lines(logpath, 100, 150);
    ck_assert_uint_eq(wait_n(150, 5000), 150);
    for (uint32_t s = 150; s < 170; s++) /* late, into the predecessor */
        write_all(old, b, fmt_line(b, sizeof(b), s));
    (void)close(old);
    ck_assert_uint_eq(wait_n(170, 5000), 170);
    append_lines(logpath, 170, 200);
    ck_assert_uint_eq(wait_n(200, 5000), 200);
    run_for(1200); /* past the grace: the predecessor is closed */
    ck_assert_uint_eq(sink.n, 200);
    for (size_t i = 0; i < sink.n; i++)
        cnt[sink.seq[i]]++;
    for (uint32_t s = 0; s < 200; s++)
        ck_assert_msg(cnt[s] == 1, "seq %u seen %u times", s, cnt[s]);
    tail_get_stats(t, &st);
    ck_assert_uint_eq(st.files_open, 1);
    ck_assert_uint_eq(st.gaps, 0);
    tail_free(t);
}
END_TEST

START_TEST(test_tail_copytruncate_paused)
{
    char p1[320];
    struct tail *t;
    struct tail_stats st;
    int fd;

    sub_path(p1, sizeof(p1), ".1");
    append_lines(logpath, 0, 100);
    t = open_tail_from_start();
    ck_assert_uint_eq(wait_n(100, 5000), 100);
    append_lines(logpath, 100, 150); /* unread */
    copy_file(logpath, p1);
    append_lines(logpath, 150, 160); /* w: between copy and truncate */
    fd = open(logpath, O_WRONLY | O_TRUNC | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    (void)close(fd);
    append_lines(logpath, 160, 260);
    ck_assert_uint_eq(wait_n(250, 5000), 250);
    run_for(50);
    ck_assert_uint_eq(assert_gap(260, 150, 160), 0);
    tail_get_stats(t, &st);
    ck_assert_uint_eq(st.truncations, 1);
    ck_assert_uint_eq(st.gaps, 1);
    ck_assert_uint_eq(st.recovered_copies, 1);
    tail_free(t);
}
END_TEST

START_TEST(test_tail_truncate_to_zero)
{
    struct tail *t;
    struct tail_stats st;
    int fd;

    append_lines(logpath, 0, 100);
    t = open_tail_from_start();
    ck_assert_uint_eq(wait_n(100, 5000), 100);
    fd = open(logpath, O_WRONLY | O_TRUNC | O_CLOEXEC); /* : > exim_mainlog */
    ck_assert_int_ge(fd, 0);
    (void)close(fd);
    run_for(20);
    append_lines(logpath, 100, 150);
    ck_assert_uint_eq(wait_n(150, 5000), 150);
    run_for(50);
    assert_exact(0, 150);
    tail_get_stats(t, &st);
    ck_assert_uint_eq(st.truncations, 1);
    tail_free(t);
}
END_TEST

/* Truncated and regrown past our offset before we look: size checks alone miss it. */
START_TEST(test_tail_truncate_regrow_unseen)
{
    struct tail_params p = { .from_start = true, .no_inotify = true, .reconcile_ms = 100 };
    struct tail *t;
    struct tail_stats st;
    int fd;

    append_lines(logpath, 0, 100);
    t = open_tail(&p);
    ck_assert_uint_eq(wait_n(100, 5000), 100);
    fd = open(logpath, O_WRONLY | O_TRUNC | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    (void)close(fd);
    append_lines(logpath, 100, 300); /* larger than before, no loop run in between */
    ck_assert_uint_eq(wait_n(300, 5000), 300);
    run_for(250);
    assert_exact(0, 300);
    tail_get_stats(t, &st);
    ck_assert_uint_eq(st.truncations, 1);
    ck_assert(st.poll_mode);
    tail_free(t);
}
END_TEST

/*
 * Inode reuse: the checkpoint's inode now holds an unrelated file. ext4 often hands a
 * freed inode to the next create; where it does not, the test forges the checkpoint's
 * (dev, ino) to the new file's, which is exactly the state reuse produces.
 */
START_TEST(test_tail_inode_reuse)
{
    struct tail *t;
    struct tail_pos pos;
    struct tail_stats st;
    struct stat sb;
    int fd;
    char b[512];

    append_lines(logpath, 0, 100);
    t = open_tail_from_start();
    ck_assert_uint_eq(wait_n(100, 5000), 100);
    run_for(20);
    tail_position(t, &pos);
    tail_free(t);
    ck_assert_int_eq(unlink(logpath), 0);
    /* Different first bytes, longer than the old offset. */
    fd = open_log(logpath);
    write_all(fd, "2026-03-03 11:11:11 new file begins here seq=0001000\n", 53);
    for (uint32_t s = 1001; s < 1300; s++)
        write_all(fd, b, fmt_line(b, sizeof(b), s));
    (void)close(fd);
    ck_assert_int_eq(stat(logpath, &sb), 0);
    fprintf(stderr, "inode reuse: %s\n",
            (uint64_t)sb.st_ino == pos.ino ? "reused by the filesystem" : "forged");
    pos.ino = (uint64_t)sb.st_ino;
    pos.dev = (uint64_t)sb.st_dev;
    sink.n = 0;
    {
        struct tail_params p = { .resume = &pos };
        t = open_tail(&p);
    }
    ck_assert_uint_eq(wait_n(300, 5000), 300);
    run_for(50);
    assert_exact(1000, 1300);
    tail_get_stats(t, &st);
    ck_assert_uint_eq(st.gaps, 1);
    tail_free(t);
}
END_TEST

struct burst_state {
    pid_t pid;
    int status;
};

START_TEST(test_tail_burst)
{
    struct writer w = { .total = BURST_LINES };
    struct tail *t;
    int64_t t0, t1, hb0;
    double secs, expected_hb;

    (void)close(open_log(logpath));
    t = open_tail(NULL);
    run_for(10);
    t0 = now_ms();
    hb0 = (int64_t)heartbeats;
    writer_finish(writer_start(&w), w.total, t, 100000);
    t1 = now_ms();
    assert_exact(0, w.total);
    secs = (double)(t1 - t0) / 1000.0;
    expected_hb = secs / 0.005;
    fprintf(stderr, "burst: %u lines in %.2f s = %.0f lines/s; 5 ms timer fired %lld of ~%.0f\n",
            (unsigned)BURST_LINES, secs, (double)BURST_LINES / secs,
            (long long)((int64_t)heartbeats - hb0), expected_hb);
    /* Bounded work per iteration: the timer keeps running during the catch-up. */
    ck_assert_msg((double)((int64_t)heartbeats - hb0) >= 0.5 * expected_hb,
                  "timer starved: %lld of %.0f", (long long)((int64_t)heartbeats - hb0),
                  expected_hb);
    tail_free(t);
}
END_TEST

/* A backlog written before start: drained over many iterations, caught_up only at the end. */
START_TEST(test_tail_backlog_bounded)
{
    struct tail_params p = { .from_start = true, .budget_bytes = 64 * 1024 };
    struct tail *t;
    int iterations = 0;
    int64_t t0;

    append_lines(logpath, 0, 50000);
    t = open_tail(&p);
    ck_assert(!tail_caught_up(t));
    t0 = now_ms();
    while (sink.n < 50000 && iterations < 100000) {
        ev_run(loop, EVRUN_ONCE);
        iterations++;
    }
    fprintf(stderr, "backlog: 50000 lines drained in %lld ms over %d loop iterations\n",
            (long long)(now_ms() - t0), iterations);
    ck_assert_int_gt(iterations, 50); /* ~7 MB at 64 KiB per pass */
    (void)run_until(caught_up, t, 2000);
    ck_assert(tail_caught_up(t));
    assert_exact(0, 50000);
    tail_free(t);
}
END_TEST

START_TEST(test_tail_partial_line)
{
    char b[512];
    struct tail *t;
    struct tail_pos pos;
    size_t n = fmt_line(b, sizeof(b), 1);
    uint64_t before;
    int fd;

    append_lines(logpath, 0, 1);
    t = open_tail_from_start();
    ck_assert_uint_eq(wait_n(1, 5000), 1);
    before = n; /* line 0 and line 1 have the same length */
    fd = open_log(logpath);
    write_all(fd, b, 30);
    run_for(500); /* > flush_ms: a partial line is never flushed */
    ck_assert_uint_eq(sink.n, 1);
    tail_position(t, &pos);
    ck_assert_uint_eq(pos.offset, before);
    write_all(fd, b + 30, n - 30);
    (void)close(fd);
    ck_assert_uint_eq(wait_n(2, 5000), 2);
    run_for(50);
    assert_exact(0, 2);
    tail_position(t, &pos);
    ck_assert_uint_eq(pos.offset, 2 * before);
    tail_free(t);
}
END_TEST

/* Partial line across a restart: the committed offset never covers the half. */
START_TEST(test_tail_partial_line_restart)
{
    char b[512];
    struct tail *t;
    struct tail_pos pos;
    size_t n = fmt_line(b, sizeof(b), 1);
    int fd;

    append_lines(logpath, 0, 1);
    t = open_tail_from_start();
    ck_assert_uint_eq(wait_n(1, 5000), 1);
    fd = open_log(logpath);
    write_all(fd, b, 40);
    run_for(300);
    tail_position(t, &pos);
    tail_free(t);
    write_all(fd, b + 40, n - 40);
    (void)close(fd);
    {
        struct tail_params p = { .resume = &pos };
        t = open_tail(&p);
    }
    ck_assert_uint_eq(wait_n(2, 5000), 2);
    run_for(50);
    assert_exact(0, 2);
    tail_free(t);
}
END_TEST

START_TEST(test_tail_long_line)
{
    struct tail *t;
    struct tail_stats st;
    char *big = malloc(40000);
    char b[512];
    int fd;

    memset(big, 'x', 40000);
    /* A forged record start after the cut must never become a record. */
    memcpy(big + 20001, "2026-03-02 00:00:00 forged seq=9999999 ", 39);
    big[39999] = '\n';
    append_lines(logpath, 0, 10);
    fd = open_log(logpath);
    write_all(fd, big, 40000);
    for (uint32_t s = 10; s < 20; s++)
        write_all(fd, b, fmt_line(b, sizeof(b), s));
    (void)close(fd);
    t = open_tail_from_start();
    ck_assert_uint_eq(wait_n(20, 5000), 20);
    run_for(50);
    assert_exact(0, 20);
    tail_get_stats(t, &st);
    ck_assert_uint_eq(st.long_lines, 1);
    free(big);
    tail_free(t);
}
END_TEST

START_TEST(test_tail_restart_mid_file)
{
    struct tail *t;
    struct tail_pos pos;
    uint32_t *first;
    size_t nfirst;

    append_lines(logpath, 0, 20000);
    {
        struct tail_params p = { .from_start = true, .budget_bytes = 16 * 1024 };
        t = open_tail(&p);
    }
    ck_assert_uint_ge(wait_n(7000, 5000), 7000);
    tail_position(t, &pos);
    tail_free(t);
    nfirst = sink.n;
    first = sink.seq;
    memset(&sink, 0, sizeof(sink));
    append_lines(logpath, 20000, 21000);
    {
        struct tail_params p = { .resume = &pos };
        t = open_tail(&p);
    }
    ck_assert_uint_eq(wait_n(21000 - nfirst, 5000), 21000 - nfirst);
    run_for(50);
    /* Zero duplicates: the position is just past the last record handed out. */
    ck_assert_uint_eq(sink.n, 21000 - nfirst);
    ck_assert_uint_eq(sink.seq[0], first[nfirst - 1] + 1);
    for (size_t i = 0; i < sink.n; i++)
        ck_assert_uint_eq(sink.seq[i], nfirst + i);
    free(first);
    tail_free(t);
}
END_TEST

/* Down during two rotations: the checkpoint's file is now a .gz, then .1, then live. */
START_TEST(test_tail_rotation_while_stopped)
{
    char p1[320], p2gz[320];
    struct tail *t;
    struct tail_pos pos;
    struct tail_stats st;

    sub_path(p1, sizeof(p1), ".1");
    sub_path(p2gz, sizeof(p2gz), ".2.gz");
    append_lines(logpath, 0, 100);
    t = open_tail_from_start();
    ck_assert_uint_eq(wait_n(100, 5000), 100);
    run_for(20);
    tail_position(t, &pos);
    tail_free(t);
    sink.n = 0;

    append_lines(logpath, 100, 200);          /* rest of file A */
    ck_assert_int_eq(rename(logpath, p1), 0); /* A -> .1 */
    append_lines(logpath, 200, 300);          /* B */
    {
        char p2[320];
        sub_path(p2, sizeof(p2), ".2");
        ck_assert_int_eq(rename(p1, p2), 0); /* A -> .2 -> .2.gz (delaycompress) */
        gzip_file(p2, p2gz);
    }
    ck_assert_int_eq(rename(logpath, p1), 0); /* B -> .1 */
    append_lines(logpath, 300, 400);          /* C, live */
    {
        struct tail_params p = { .resume = &pos };
        t = open_tail(&p);
    }
    ck_assert_uint_eq(wait_n(300, 10000), 300);
    run_for(100);
    assert_exact(100, 400);
    tail_get_stats(t, &st);
    ck_assert_uint_eq(st.gaps, 0);
    tail_free(t);
}
END_TEST

/* Down during one rotation with copytruncate: the copy holds the unread rest. */
START_TEST(test_tail_copytruncate_while_stopped)
{
    char p1[320];
    struct tail *t;
    struct tail_pos pos;
    int fd;

    sub_path(p1, sizeof(p1), "-20260302");
    append_lines(logpath, 0, 100);
    t = open_tail_from_start();
    ck_assert_uint_eq(wait_n(100, 5000), 100);
    run_for(20);
    tail_position(t, &pos);
    tail_free(t);
    sink.n = 0;
    append_lines(logpath, 100, 150);
    copy_file(logpath, p1);
    fd = open(logpath, O_WRONLY | O_TRUNC | O_CLOEXEC);
    (void)close(fd);
    append_lines(logpath, 150, 160);
    {
        struct tail_params p = { .resume = &pos };
        t = open_tail(&p);
    }
    ck_assert_uint_eq(wait_n(60, 5000), 60);
    run_for(50);
    assert_exact(100, 160);
    tail_free(t);
}
END_TEST

/*
 * Rotate like exicyclog / logrotate with delaycompress, keeping @keep rotated files: drop
 * .keep.gz, shift .N.gz up, .1 -> .2 -> .2.gz, the live file -> .1.
 */
static void
rotate_shift(int keep)
{
    char a[320], b[320];

    (void)snprintf(a, sizeof(a), "%s.%d.gz", logpath, keep);
    (void)unlink(a);
    for (int i = keep - 1; i >= 2; i--) {
        (void)snprintf(a, sizeof(a), "%s.%d.gz", logpath, i);
        (void)snprintf(b, sizeof(b), "%s.%d.gz", logpath, i + 1);
        (void)rename(a, b);
    }
    sub_path(a, sizeof(a), ".1");
    sub_path(b, sizeof(b), ".2");
    if (access(a, F_OK) == 0 && keep >= 2) {
        char gz[320];
        ck_assert_int_eq(rename(a, b), 0);
        sub_path(gz, sizeof(gz), ".2.gz");
        gzip_file(b, gz);
    }
    ck_assert_int_eq(rename(logpath, a), 0);
}

/* Checkpoint mid-file, then rotations: the unread rest of each file, in order. */
static struct tail_pos
checkpoint_at(uint32_t lines, uint32_t file_end)
{
    struct tail *t;
    struct tail_pos pos;

    append_lines(logpath, 0, lines);
    t = open_tail_from_start();
    ck_assert_uint_eq(wait_n(lines, 5000), lines);
    run_for(20);
    tail_position(t, &pos);
    tail_free(t);
    sink.n = 0;
    append_lines(logpath, lines, file_end); /* written while we are down */
    return pos;
}

/*
 * Down for three rotations with delaycompress: the checkpoint's file went .1 -> .2.gz ->
 * .3.gz (a new inode; found by the decompressed fingerprint, its marker checked in the
 * decompressed stream), then every newer file from 0, then the live one. Exactly once.
 */
START_TEST(test_tail_resume_chain_gz)
{
    struct tail *t;
    struct tail_pos pos = checkpoint_at(100, 250);
    struct tail_stats st;

    rotate_shift(5);                 /* A -> .1 */
    append_lines(logpath, 250, 400); /* B */
    rotate_shift(5);                 /* A -> .2.gz, B -> .1 */
    append_lines(logpath, 400, 550); /* C */
    rotate_shift(5);                 /* A -> .3.gz, B -> .2.gz, C -> .1 */
    append_lines(logpath, 550, 600); /* D, live */
    {
        struct tail_params p = { .resume = &pos };
        t = open_tail(&p);
    }
    ck_assert_uint_eq(wait_n(500, 10000), 500);
    run_for(100);
    assert_exact(100, 600);
    tail_get_stats(t, &st);
    ck_assert_uint_eq(st.gaps, 0);
    tail_free(t);
}
END_TEST

/*
 * Down so long that rotation deleted the checkpoint's file (the SIGKILL test's "run starts
 * at 22500" failure): its unread rest is a gap, but every rotated file still there is newer
 * and must be read, oldest first, before the live file - not skipped.
 */
START_TEST(test_tail_resume_checkpoint_rotated_away)
{
    struct tail *t;
    struct tail_pos pos = checkpoint_at(100, 250);
    struct tail_stats st;

    rotate_shift(3);                 /* A -> .1 */
    append_lines(logpath, 250, 400); /* B */
    rotate_shift(3);                 /* A -> .2.gz, B -> .1 */
    append_lines(logpath, 400, 550); /* C */
    rotate_shift(3);                 /* A -> .3.gz, B -> .2.gz, C -> .1 */
    append_lines(logpath, 550, 700); /* D */
    rotate_shift(3);                 /* A deleted, B -> .3.gz, C -> .2.gz, D -> .1 */
    append_lines(logpath, 700, 750); /* E, live */
    {
        struct tail_params p = { .resume = &pos };
        t = open_tail(&p);
    }
    ck_assert_uint_eq(wait_n(500, 10000), 500);
    run_for(100);
    assert_exact(250, 750);
    tail_get_stats(t, &st);
    ck_assert_uint_eq(st.gaps, 1);
    tail_free(t);
}
END_TEST

/*
 * Resume while the compressor is still writing .2.gz next to .2 (fresh mtime, truncated
 * stream): the plain .2 is read, the half-written twin is not (it would repeat .2's head
 * after .1, or end early).
 */
START_TEST(test_tail_resume_gz_being_written)
{
    char p1[320], p2[320], gz[320];
    struct tail *t;
    struct tail_pos pos = checkpoint_at(100, 250);
    struct timespec ts = { 0, 20000000 };

    sub_path(p1, sizeof(p1), ".1");
    sub_path(p2, sizeof(p2), ".2");
    sub_path(gz, sizeof(gz), ".2.gz");
    ck_assert_int_eq(rename(logpath, p1), 0); /* A -> .1 */
    append_lines(logpath, 250, 400);          /* B */
    ck_assert_int_eq(rename(p1, p2), 0);      /* A -> .2 */
    ck_assert_int_eq(rename(logpath, p1), 0); /* B -> .1 */
    append_lines(logpath, 400, 450);          /* C, live */
    (void)nanosleep(&ts, NULL);               /* the gzip's mtime is the newest */
    {
        /* a gzip stream cut short: A's first lines, no trailer, less than a fingerprint */
        gzFile out = gzopen(gz, "wb");
        char b[512];
        struct stat st;
        for (uint32_t s = 0; s < 3; s++) {
            size_t n = fmt_line(b, sizeof(b), s);
            ck_assert_int_eq(gzwrite(out, b, (unsigned)n), (int)n);
        }
        ck_assert_int_eq(gzclose_w(out), Z_OK);
        ck_assert_int_eq(stat(gz, &st), 0);
        ck_assert_int_eq(truncate(gz, st.st_size - 40), 0);
    }
    {
        struct tail_params p = { .resume = &pos };
        t = open_tail(&p);
    }
    ck_assert_uint_eq(wait_n(350, 10000), 350);
    run_for(200);
    assert_exact(100, 450);
    tail_free(t);
}
END_TEST

/*
 * Two rotations between two looks (a starved tailer): the file that was live in between
 * was never opened by us; it is found among the siblings and read before the new live one.
 */
START_TEST(test_tail_double_rotation_unseen)
{
    struct tail *t;
    struct tail_stats st;

    append_lines(logpath, 0, 100);
    t = open_tail_from_start();
    ck_assert_uint_eq(wait_n(100, 5000), 100);
    run_for(20);
    append_lines(logpath, 100, 150); /* rest of A, unread */
    rotate_shift(5);                 /* A -> .1 */
    append_lines(logpath, 150, 300); /* B: live, never seen */
    rotate_shift(5);                 /* A -> .2.gz (A still open), B -> .1 */
    append_lines(logpath, 300, 400); /* C */
    rotate_shift(5);                 /* B -> .2.gz, C -> .1 */
    append_lines(logpath, 400, 450); /* D, live */
    ck_assert_uint_eq(wait_n(450, 10000), 450);
    run_for(100);
    assert_exact(0, 450);
    tail_get_stats(t, &st);
    ck_assert_uint_eq(st.gaps, 0);
    tail_free(t);
}
END_TEST

/* The checkpoint's file is gone for good: a gap, then the live file from 0. */
START_TEST(test_tail_checkpoint_file_gone)
{
    struct tail *t;
    struct tail_pos pos;
    struct tail_stats st;

    append_lines(logpath, 0, 100);
    t = open_tail_from_start();
    ck_assert_uint_eq(wait_n(100, 5000), 100);
    run_for(20);
    tail_position(t, &pos);
    tail_free(t);
    sink.n = 0;
    ck_assert_int_eq(unlink(logpath), 0);
    append_lines(logpath, 500, 550);
    {
        struct tail_params p = { .resume = &pos };
        t = open_tail(&p);
    }
    ck_assert_uint_eq(wait_n(50, 5000), 50);
    run_for(50);
    assert_exact(500, 550);
    tail_get_stats(t, &st);
    ck_assert_uint_eq(st.gaps, 1);
    tail_free(t);
}
END_TEST

START_TEST(test_tail_missing_at_start)
{
    struct tail *t = open_tail(NULL);
    struct tail_stats st;
    int64_t t0;

    run_for(100);
    ck_assert_uint_eq(sink.n, 0);
    tail_get_stats(t, &st);
    ck_assert_uint_eq(st.files_open, 0);
    ck_assert(tail_caught_up(t));
    t0 = now_ms();
    append_lines(logpath, 0, 100); /* created after start: read from 0 */
    ck_assert_uint_eq(wait_n(100, 5000), 100);
    ck_assert_int_lt(now_ms() - t0, 2000); /* within one reconcile interval */
    run_for(50);
    assert_exact(0, 100);
    tail_free(t);
}
END_TEST

/* Start without a checkpoint: history is skipped, only new lines are read. */
START_TEST(test_tail_start_at_end)
{
    struct tail *t;

    append_lines(logpath, 0, 100);
    t = open_tail(NULL);
    run_for(100);
    ck_assert_uint_eq(sink.n, 0);
    append_lines(logpath, 100, 150);
    ck_assert_uint_eq(wait_n(50, 5000), 50);
    run_for(50);
    assert_exact(100, 150);
    tail_free(t);
}
END_TEST

/*
 * Permission denied. Root reads anything (CAP_DAC_OVERRIDE), so as root this test
 * drops to nobody first: Check runs each test in its own child, so that is safe; with
 * CK_FORK=no it is skipped.
 */
START_TEST(test_tail_unreadable)
{
    struct tail_params p = { .from_start = true, .reconcile_ms = 100 };
    struct tail *t;
    struct tail_stats st;

    if (geteuid() == 0) {
        const char *f = getenv("CK_FORK");
        if (f && strcmp(f, "no") == 0)
            return;
        ck_assert_int_eq(chown(tmpdir, 65534, 65534), 0);
        ck_assert_int_eq(setgroups(0, NULL), 0);
        ck_assert_int_eq(setresgid(65534, 65534, 65534), 0);
        ck_assert_int_eq(setresuid(65534, 65534, 65534), 0);
    }
    append_lines(logpath, 0, 50);
    ck_assert_int_eq(chmod(logpath, 0), 0);
    t = open_tail(&p);
    run_for(300);
    ck_assert_uint_eq(sink.n, 0);
    tail_get_stats(t, &st);
    ck_assert_uint_ge(st.open_errors, 2); /* retried on the reconcile timer */
    ck_assert_int_eq(chmod(logpath, 0640), 0);
    ck_assert_uint_eq(wait_n(50, 5000), 50);
    append_lines(logpath, 50, 60);
    ck_assert_uint_eq(wait_n(60, 5000), 60);
    run_for(50);
    assert_exact(0, 60);
    tail_free(t);
}
END_TEST

/* The path names a directory (works as root too): clear error, retry, recover. */
START_TEST(test_tail_path_is_directory)
{
    struct tail_params p = { .from_start = true, .reconcile_ms = 100 };
    struct tail *t;
    struct tail_stats st;

    ck_assert_int_eq(mkdir(logpath, 0700), 0);
    t = open_tail(&p);
    run_for(300);
    tail_get_stats(t, &st);
    ck_assert_uint_ge(st.open_errors, 2);
    ck_assert_uint_eq(st.files_open, 0);
    ck_assert_int_eq(rmdir(logpath), 0);
    append_lines(logpath, 0, 20);
    ck_assert_uint_eq(wait_n(20, 5000), 20);
    run_for(50);
    assert_exact(0, 20);
    tail_free(t);
}
END_TEST

/* A guard, not a pass condition: a test that hangs dies of SIGALRM after @s seconds. */
static void
hang_guard(unsigned s)
{
    (void)signal(SIGALRM, SIG_DFL); /* not the handler Check's parent left behind */
    (void)alarm(s);
}

static void
sigterm_cb(struct ev_loop *l, ev_signal *w, int revents)
{
    (void)revents;
    *(bool *)w->data = true;
    ev_break(l, EVBREAK_ALL);
}

/* The daemon's shutdown: a SIGTERM watcher on the loop must run and stop it. */
static void
assert_sigterm_stops(void)
{
    ev_signal sw;
    bool stopped = false;

    ev_signal_init(&sw, sigterm_cb, SIGTERM);
    sw.data = &stopped;
    ev_signal_start(loop, &sw);
    ck_assert_int_eq(kill(getpid(), SIGTERM), 0);
    ev_run(loop, 0); /* returns through sigterm_cb only: the heartbeat repeats */
    ev_signal_stop(loop, &sw);
    ck_assert(stopped);
}

/* Rename a regular file holding lines [from, to) over the log path (the FIFO there). */
static void
replace_with_lines(uint32_t from, uint32_t to)
{
    char p[320];

    sub_path(p, sizeof(p), ".new");
    append_lines(p, from, to);
    ck_assert_int_eq(rename(p, logpath), 0);
}

/* A FIFO at the log path from the start: named in the log, counted, retried, no hang. */
START_TEST(test_tail_fifo_at_path)
{
    struct tail_params p = { .from_start = true, .reconcile_ms = 100 };
    struct tail *t;
    struct tail_stats st;

    hang_guard(10);
    ck_assert_int_eq(mkfifo(logpath, 0600), 0);
    t = open_tail(&p);
    run_for(300);
    tail_get_stats(t, &st);
    ck_assert_uint_ge(st.open_errors, 2);
    ck_assert_uint_eq(st.files_open, 0);
    assert_sigterm_stops();
    replace_with_lines(0, 20);
    ck_assert_uint_eq(wait_n(20, 5000), 20);
    run_for(50);
    assert_exact(0, 20);
    tail_free(t);
    (void)alarm(0);
}
END_TEST

/* Swapped for a FIFO between the tailer's stat() and open(): the open must not block. */
START_TEST(test_tail_fifo_swap_at_open)
{
    struct tail_params p = { .from_start = true, .reconcile_ms = 100 };
    struct tail *t;
    struct tail_stats st;

    hang_guard(10);
    append_lines(logpath, 0, 10); /* lost with the file the FIFO replaces */
    fifo_swaps = 1;
    t = open_tail(&p);
    run_for(300);
    ck_assert_int_eq(fifo_swaps, 0); /* the seam ran: the tailer opened the path */
    tail_get_stats(t, &st);
    ck_assert_uint_ge(st.open_errors, 1);
    ck_assert_uint_eq(st.files_open, 0);
    ck_assert_uint_eq(sink.n, 0);
    assert_sigterm_stops();
    replace_with_lines(10, 30);
    ck_assert_uint_eq(wait_n(20, 5000), 20);
    run_for(50);
    assert_exact(10, 30);
    tail_free(t);
    (void)alarm(0);
}
END_TEST

/* After a rotation the new file is swapped for a FIFO as the tailer opens it. */
START_TEST(test_tail_fifo_swap_after_rotation)
{
    struct tail_params p = { .from_start = true, .reconcile_ms = 100 };
    struct tail *t;
    struct tail_stats st;
    char rotated[320];

    hang_guard(10);
    append_lines(logpath, 0, 50);
    t = open_tail(&p);
    ck_assert_uint_eq(wait_n(50, 5000), 50);
    sub_path(rotated, sizeof(rotated), ".1");
    fifo_swaps = 1;
    ck_assert_int_eq(rename(logpath, rotated), 0);
    append_lines(rotated, 50, 60);  /* late writes to the rotated file: still read */
    append_lines(logpath, 60, 70);  /* the new file, replaced by a FIFO when opened */
    ck_assert_uint_eq(wait_n(60, 5000), 60);
    run_for(300);
    ck_assert_int_eq(fifo_swaps, 0);
    tail_get_stats(t, &st);
    ck_assert_uint_ge(st.open_errors, 1);
    assert_sigterm_stops();
    replace_with_lines(70, 80);
    ck_assert_uint_eq(wait_n(70, 5000), 70);
    run_for(50);
    ck_assert_uint_eq(sink.n, 70);
    for (size_t i = 0; i < sink.n; i++)
        ck_assert_uint_eq(sink.seq[i], i < 60 ? i : i + 10);
    tail_free(t);
    (void)alarm(0);
}
END_TEST

/* Multi-line records: continuation lines join their record; nothing splits across reads. */
START_TEST(test_tail_multiline)
{
    struct tail *t;
    char b[512];
    int fd;
    size_t n;

    t = open_tail_from_start();
    fd = open_log(logpath);
    for (uint32_t s = 0; s < 200; s++) {
        n = fmt_line(b, sizeof(b), s);
        memcpy(b + n, "  continuation line\n", 20);
        write_all(fd, b, n + 20); /* one write per entry, like Exim */
    }
    (void)close(fd);
    ck_assert_uint_eq(wait_n(200, 5000), 200);
    run_for(300);
    assert_exact(0, 200);
    tail_free(t);
}
END_TEST

/* ---- SIGKILL: tests/tail_probe restarted under a writer that rotates ---- */

struct probe_run {
    uint32_t first; /* first seq emitted in this run, SEQ_NONE if none */
    uint32_t last;
};

static pid_t
probe_start(const char *statedir, const char *out)
{
    char probe[512];
    pid_t pid;

    (void)snprintf(probe, sizeof(probe), "%s/tail_probe", FG_BUILD_DIR);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        execl(probe, probe, logpath, statedir, out, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Has a probe run written a checkpoint ("C <seq>" line) to @out yet? */
static bool
probe_has_checkpoint(const char *out)
{
    char buf[65536];
    int fd = open(out, O_RDONLY | O_CLOEXEC);
    ssize_t n;
    bool r = false;

    if (fd < 0)
        return false;
    while (!r && (n = read(fd, buf, sizeof(buf) - 1)) > 0) {
        buf[n] = '\0';
        r = buf[0] == 'C' || strstr(buf, "\nC ") != NULL;
    }
    (void)close(fd);
    return r;
}

/* Writer for the SIGKILL test: paced, rotating with shift and delayed gzip. */
static void
kill_writer_run(uint32_t total, uint32_t every, const char *probe_out)
{
    char b[512], p[6][340];
    int fd = open_log(logpath);
    bool first_rotation = true;

    for (int i = 1; i < 6; i++)
        (void)snprintf(p[i], sizeof(p[i]), "%s.%d%s", logpath, i, i >= 2 ? ".gz" : "");
    for (uint32_t s = 0; s < total; s++) {
        if (s > 0 && s % every == 0) {
            char p2[340];
            /* A run that never checkpointed starts over at the live file: lines left in
             * a file rotated before the first checkpoint are nobody's to find. Rotate the
             * first time only once some run has written one (at most 60 s). */
            for (int i = 0; first_rotation && i < 6000 && !probe_has_checkpoint(probe_out); i++)
                (void)usleep(10000);
            first_rotation = false;
            (void)unlink(p[5]);
            for (int i = 4; i >= 2; i--)
                (void)rename(p[i], p[i + 1]);
            (void)snprintf(p2, sizeof(p2), "%s.2", logpath);
            (void)rename(p[1], p2);
            if (rename(logpath, p[1]) < 0)
                _exit(3);
            (void)close(fd);
            fd = open_log(logpath);
            /* delaycompress: .2 is compressed one cycle later */
            if (access(p2, F_OK) == 0) {
                char c[65536];
                struct stat st;
                int in = open(p2, O_RDONLY | O_CLOEXEC);
                gzFile out = gzopen(p[2], "wb");
                ssize_t n;
                if (in < 0 || !out || fstat(in, &st) < 0)
                    _exit(5);
                while ((n = read(in, c, sizeof(c))) > 0)
                    (void)gzwrite(out, c, (unsigned)n);
                (void)gzclose(out);
                (void)close(in);
                {
                    struct timespec ts[2] = { st.st_atim, st.st_mtim };
                    (void)utimensat(AT_FDCWD, p[2], ts, 0);
                }
                (void)unlink(p2);
            }
        }
        write_all(fd, b, fmt_line(b, sizeof(b), s));
        if (s % 8 == 0) {
            struct timespec ts = { 0, 2000000 };
            (void)nanosleep(&ts, NULL);
        }
    }
    (void)close(fd);
    _exit(0);
}

/* Parse the probe's output: "R" starts a run, "C <seq>" a checkpoint, a number a record. */
static void
check_probe_output(const char *out, uint32_t total)
{
    FILE *f = fopen(out, "re");
    char line[64];
    uint32_t *cnt = calloc(total, sizeof(uint32_t));
    uint32_t last_ckpt = SEQ_NONE, prev = SEQ_NONE, last_emitted = SEQ_NONE;
    uint32_t run_ckpt = SEQ_NONE;
    bool run_start = false;
    unsigned runs = 0;
    uint64_t dups = 0, records = 0;

    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f)) {
        if (line[0] == 'R') {
            runs++;
            run_start = true;
            run_ckpt = last_ckpt;
            prev = SEQ_NONE;
            continue;
        }
        if (line[0] == 'C') {
            last_ckpt = (uint32_t)strtoul(line + 2, NULL, 10);
            continue;
        }
        {
            uint32_t s = (uint32_t)strtoul(line, NULL, 10);
            ck_assert_uint_lt(s, total);
            records++;
            if (run_start) {
                /* Resumes right after the last checkpoint, or later if a checkpoint
                   landed without its C line; never after a record not emitted yet. */
                uint32_t lo = run_ckpt == SEQ_NONE ? 0 : run_ckpt + 1;
                uint32_t hi = last_emitted == SEQ_NONE ? 0 : last_emitted + 1;
                ck_assert_msg(s >= lo && s <= hi, "run %u starts at %u, expected [%u, %u]", runs, s,
                              lo, hi);
                run_start = false;
            } else {
                ck_assert_msg(prev == SEQ_NONE || s == prev + 1, "run %u: %u after %u", runs, s,
                              prev);
            }
            if (cnt[s] > 0) {
                dups++;
                ck_assert_msg(run_ckpt == SEQ_NONE || s > run_ckpt,
                              "seq %u duplicated but covered by checkpoint %u", s, run_ckpt);
            }
            cnt[s]++;
            prev = s;
            if (last_emitted == SEQ_NONE || s > last_emitted)
                last_emitted = s;
        }
    }
    (void)fclose(f);
    for (uint32_t s = 0; s < total; s++)
        ck_assert_msg(cnt[s] >= 1, "seq %u lost", s);
    fprintf(stderr,
            "sigkill: %u runs, %llu records, %u lines, %llu duplicates (all after the "
            "last checkpoint)\n",
            runs, (unsigned long long)records, total, (unsigned long long)dups);
    free(cnt);
}

struct probe_wait {
    const char *out;
    uint32_t want_last;
};

/* Has the run that started writing at @from printed "R", and has anyone printed @last? */
static bool
probe_final_done(const char *out, off_t from, uint32_t last)
{
    char want[16], *buf;
    struct stat st;
    bool r = false;
    int fd = open(out, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return false;
    if (fstat(fd, &st) == 0 && st.st_size > from && (buf = malloc((size_t)st.st_size + 1))) {
        ssize_t n = pread(fd, buf, (size_t)st.st_size, 0);
        if (n == st.st_size) {
            buf[n] = '\0';
            (void)snprintf(want, sizeof(want), "\n%u\n", last);
            r = buf[from] == 'R' && strstr(buf, want) != NULL;
        }
        free(buf);
    }
    (void)close(fd);
    return r;
}

START_TEST(test_tail_sigkill)
{
    char statedir[300], out[300];
    unsigned seed = 20260302;
    pid_t writer, probe;
    int status, kills = 0;
    off_t from;
    int64_t deadline = now_ms() + 90000;

    (void)snprintf(statedir, sizeof(statedir), "%s/state", tmpdir);
    (void)snprintf(out, sizeof(out), "%s/out", tmpdir);
    ck_assert_int_eq(mkdir(statedir, 0700), 0);
    (void)close(open_log(logpath));
    fprintf(stderr, "sigkill: seed %u, %d kills\n", seed, SIGKILL_ROUNDS);
    writer = fork();
    ck_assert_int_ge(writer, 0);
    if (writer == 0)
        kill_writer_run(SIGKILL_LINES, 1500, out);
    while (kills < SIGKILL_ROUNDS && now_ms() < deadline) {
        long up_ms = 20 + rand_r(&seed) % 180;
        struct timespec ts = { 0, up_ms * 1000000L };
        probe = probe_start(statedir, out);
        (void)nanosleep(&ts, NULL); /* a random point in the probe's life, not a wait */
        ck_assert_int_eq(kill(probe, SIGKILL), 0);
        ck_assert_int_eq(waitpid(probe, &status, 0), probe);
        kills++;
        if (rand_r(&seed) % 4 == 0) {
            ts.tv_nsec = (long)(rand_r(&seed) % 100) * 1000000L; /* down for a while */
            (void)nanosleep(&ts, NULL);
        }
    }
    ck_assert_int_eq(kills, SIGKILL_ROUNDS);
    ck_assert_int_eq(waitpid(writer, &status, 0), writer);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* One last run to the end, then a clean stop. */
    {
        struct stat st;
        from = stat(out, &st) == 0 ? st.st_size : 0;
    }
    probe = probe_start(statedir, out);
    while (!probe_final_done(out, from, SIGKILL_LINES - 1) && now_ms() < deadline + 20000) {
        struct timespec ts = { 0, 10000000 };
        (void)nanosleep(&ts, NULL);
    }
    ck_assert_int_eq(kill(probe, SIGTERM), 0);
    ck_assert_int_eq(waitpid(probe, &status, 0), probe);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "probe status %d", status);
    if (getenv("CHECK_TAIL_KEEP")) { /* diagnostics: keep the probe's output */
        char cmd[700];
        (void)snprintf(cmd, sizeof(cmd), "cp %s %s", out, getenv("CHECK_TAIL_KEEP"));
        if (system(cmd) != 0)
            fprintf(stderr, "sigkill: could not keep %s\n", out);
    }
    check_probe_output(out, SIGKILL_LINES);
}
END_TEST

static Suite *
tail_suite(void)
{
    Suite *s = suite_create("tail");
    TCase *tc;

    tc = tcase_create("rotation");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, test_tail_rename_rotation_under_write);
    tcase_add_test(tc, test_tail_delete_recreate_under_write);
    tcase_add_test(tc, test_tail_delete_recreate_unread);
    tcase_add_test(tc, test_tail_late_writes_after_rename);
    tcase_add_test(tc, test_tail_copytruncate_under_write);
    tcase_add_test(tc, test_tail_copytruncate_paused);
    tcase_add_test(tc, test_tail_truncate_to_zero);
    tcase_add_test(tc, test_tail_truncate_regrow_unseen);
    tcase_add_test(tc, test_tail_inode_reuse);
    suite_add_tcase(s, tc);

    tc = tcase_create("reading");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_tail_burst);
    tcase_add_test(tc, test_tail_backlog_bounded);
    tcase_add_test(tc, test_tail_partial_line);
    tcase_add_test(tc, test_tail_partial_line_restart);
    tcase_add_test(tc, test_tail_long_line);
    tcase_add_test(tc, test_tail_multiline);
    suite_add_tcase(s, tc);

    tc = tcase_create("restart");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_tail_restart_mid_file);
    tcase_add_test(tc, test_tail_rotation_while_stopped);
    tcase_add_test(tc, test_tail_copytruncate_while_stopped);
    tcase_add_test(tc, test_tail_checkpoint_file_gone);
    tcase_add_test(tc, test_tail_resume_chain_gz);
    tcase_add_test(tc, test_tail_resume_checkpoint_rotated_away);
    tcase_add_test(tc, test_tail_resume_gz_being_written);
    tcase_add_test(tc, test_tail_double_rotation_unseen);
    tcase_add_test(tc, test_tail_start_at_end);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_tail_missing_at_start);
    tcase_add_test(tc, test_tail_unreadable);
    tcase_add_test(tc, test_tail_path_is_directory);
    tcase_add_test(tc, test_tail_fifo_at_path);
    tcase_add_test(tc, test_tail_fifo_swap_at_open);
    tcase_add_test(tc, test_tail_fifo_swap_after_rotation);
    suite_add_tcase(s, tc);

    tc = tcase_create("sigkill");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 150);
    tcase_add_test(tc, test_tail_sigkill);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(tail_suite());
}
