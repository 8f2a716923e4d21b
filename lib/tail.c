/*
 * tail.c - follow exim_mainlog across rotation, truncation and restarts, and hand out
 * complete records (tailer-reliability.md is the specification; R-numbers below).
 *
 * Owns: an inotify instance (one ev_io), a reconcile ev_timer (stat safety net, retries),
 * a flush ev_timer (open records, predecessor grace), an ev_idle (bounded backlog work),
 * and up to TAIL_MAX_FILES open files, oldest first: predecessors still draining, then
 * the live file. Does not own: parsing (eximlog), checkpoint storage (state).
 *
 * Invariants:
 * - Events are hints (R2). Every watcher only sets flags and starts the idle watcher;
 *   tail_work() decides from stat()/fstat()/pread(). A regular file is never in an ev_io
 *   (it is always "readable"): an idle daemon wakes only for inotify and the reconcile
 *   timer.
 * - Files are read oldest first; a newer file is read only after every older one hit
 *   EOF in the same pass, so rotation never reorders records (R4). A predecessor stays
 *   open grace_ms after its last byte to catch Exim processes that wrote to the old inode.
 * - Each file has its own partial-line buffer and record joiner; a record never spans
 *   files. Physical lines go to the joiner (R8); bytes after the last newline are held.
 *   The committed offset of a file is eximlog_joiner_resume(line_end): never inside a
 *   pending record or a partial line (R7), so a restart re-reads and completes it.
 * - Work per pass is bounded by budget_bytes (R9); the rest continues from the idle
 *   watcher, which libev runs only when nothing else is pending.
 * - Identity is (dev, ino) plus SHA-256 of the first TAIL_FP_BYTES, which grows with the
 *   file (R1). A resume offset is trusted only if the hash of the bytes just before it
 *   (the marker) still matches.
 *
 * - No open() can block: every file is opened O_NONBLOCK and kept only if the open fd is
 *   a regular file (the one stat() saw), so a FIFO or device swapped in for the log is
 *   logged, counted in open_errors and retried like a missing file (tail_open_regular).
 *
 * Known limit: the position is one (file, offset). A late write to a predecessor that was
 * already finished moves the position back to it until it is drained again, so a crash
 * then re-reads the newer files (duplicates, never loss) - except in the instant between
 * the late write and the event that reports it.
 */
#include "tail.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/evp.h>
#include <zlib.h>

#include "log.h"

#define TAIL_READ_BYTES           (64 * 1024)
#define TAIL_INOTIFY_BUF          (64 * 1024)
#define TAIL_POLL_MS              250
#define TAIL_DEFAULT_RECONCILE_MS 2000
#define TAIL_DEFAULT_FLUSH_MS     200
#define TAIL_DEFAULT_BUDGET       (256 * 1024)
#define TAIL_SIBLINGS_MAX         64
#define TAIL_LOG_EVERY_MS         60000
/* Re-read before every pass: a truncate-and-regrow past our offset shows up as a mismatch. */
#define TAIL_CHECK_BYTES 64

/* ---- SHA-256 (OpenSSL libcrypto), for fingerprints and markers ---- */

static void
tail_sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 32;

    /* EVP_Digest cannot fail for SHA-256 on memory short of an allocation failure; a zero
     * digest then only makes a file look new, which costs a re-read, never a loss */
    if (!EVP_Digest(data, len, out, &n, EVP_sha256(), NULL))
        memset(out, 0, 32);
}

static uint64_t
tail_sha64(const void *data, size_t len)
{
    uint8_t d[32];
    uint64_t v = 0;

    tail_sha256(data, len, d);
    for (unsigned i = 0; i < 8; i++)
        v = v << 8 | d[i];
    return v;
}

/* ---- opening ---- */

/* What a file that is not a regular one is, for log lines. */
static const char *
tail_kind(mode_t m)
{
    return S_ISFIFO(m)  ? "a FIFO"
           : S_ISDIR(m) ? "a directory"
           : S_ISCHR(m) ? "a character device"
           : S_ISBLK(m) ? "a block device"
           : S_ISSOCK(m) ? "a socket"
                         : "not a regular file";
}

/*
 * Open @path for reading without ever blocking the loop. Whoever can write the log's
 * directory can swap a FIFO in between our stat() and open(): a plain open() of a FIFO
 * waits for a writer, and the whole loop (SIGTERM included) with it. So the open is
 * O_NONBLOCK (a FIFO opens at once, a device is not made our terminal), and the open fd is
 * what is checked: a regular file and, with @dev/@ino (what stat() saw, ino 0: no check),
 * the same file. O_NONBLOCK is then cleared: local file systems ignore it for regular
 * files, but network and FUSE ones may pass it on and answer EAGAIN, which the readers
 * here (and zlib) take for an error. Returns the fd with *@ret its fstat(), or -errno;
 * -EINVAL: not a regular file (*@ret says what), -ESTALE: another file than @dev/@ino.
 */
static int
tail_open_regular(const char *path, uint64_t dev, uint64_t ino, struct stat *ret)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY), fl, r = 0;

    if (fd < 0)
        return -errno;
    if (fstat(fd, ret) < 0)
        r = -errno;
    else if (!S_ISREG(ret->st_mode))
        r = -EINVAL;
    else if (ino != 0 && ((uint64_t)ret->st_ino != ino || (uint64_t)ret->st_dev != dev))
        r = -ESTALE;
    else if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
        r = -errno;
    if (r < 0) {
        (void)close(fd);
        return r;
    }
    return fd;
}

/* ---- files ---- */

struct tail_file {
    int fd;
    gzFile gz; /* rotated .gz found at resume; read sequentially */
    int wd;    /* inotify watch, -1 if none */
    uint64_t dev, ino;
    uint64_t read_off; /* next byte to read (decompressed for .gz) */
    uint64_t line_end; /* end of the last line consumed (pushed or skipped) */
    uint32_t fp_len;
    uint8_t fp[32];
    bool live;
    bool at_eof;   /* the last read in the last pass returned 0 */
    bool skipping; /* inside an over-long line: discard up to its newline */
    bool aligning; /* skipping the rest of a line we started inside (no count) */
    uint32_t tail_len;
    char tail[TAIL_CHECK_BYTES]; /* the last bytes before read_off, re-checked each pass */
    int64_t last_data_ms;        /* mono time of the last byte read or of demotion */
    size_t partial_len;
    char partial[TAIL_LINE_MAX];
    struct eximlog_joiner j;
    char name[64]; /* for log lines */
};

struct tail {
    struct ev_loop *loop;
    const struct clock *clock;
    tail_record_fn on_record;
    void *ctx;
    char *path, *dir, *base;
    int64_t reconcile_ms, flush_ms, grace_ms;
    size_t budget;

    int ifd;
    int dir_wd;
    ev_io iow;
    ev_timer reconcile;
    ev_timer flush;
    ev_idle idle;

    struct tail_file *files[TAIL_MAX_FILES]; /* oldest first; the live file, if any, last */
    size_t nfiles;
    bool check_path;   /* stat the path in the next pass */
    bool verify_heads; /* re-hash the live file's head (truncate-and-regrow) */
    bool caught_up;
    bool started;      /* the path was considered once (start-at-end applies) */
    bool restart_pass; /* a copy was inserted before the file being read */
    int64_t long_logged_ms;
    bool start_valid; /* no checkpoint: file at start and its size then */
    uint64_t start_dev, start_ino, start_size;
    bool missing_logged, error_logged;
    int64_t odd_logged_ms; /* a rotated sibling that is not a regular file */
    int64_t overflow_logged_ms;
    struct tail_stats st;
    char buf[TAIL_READ_BYTES];
};

static void tail_kick(struct tail *t);
static void tail_add_between(struct tail *t, const struct tail_file *old, uint64_t live_ino);

static int64_t
tail_now(const struct tail *t)
{
    return clock_mono_ms(t->clock);
}

static void
tail_file_close(struct tail *t, struct tail_file *f)
{
    if (!f)
        return;
    if (f->wd >= 0 && t->ifd >= 0)
        (void)inotify_rm_watch(t->ifd, f->wd);
    if (f->gz)
        (void)gzclose_r(f->gz);
    if (f->fd >= 0)
        (void)close(f->fd);
    free(f);
}

static struct tail_file *
tail_file_new(int fd, const struct stat *st, const char *name)
{
    struct tail_file *f = calloc(1, sizeof(*f));

    if (!f)
        return NULL;
    f->fd = fd;
    f->wd = -1;
    f->dev = (uint64_t)st->st_dev;
    f->ino = (uint64_t)st->st_ino;
    eximlog_joiner_init(&f->j);
    (void)snprintf(f->name, sizeof(f->name), "%s", name);
    return f;
}

/* Read up to @len bytes at @off; -errno on error. For plain files only. */
static ssize_t
tail_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* Hash the first @len bytes of a plain file. 0, or -ENODATA if shorter, -errno. */
static int
tail_head_hash(int fd, uint32_t len, uint8_t out[32])
{
    char head[TAIL_FP_BYTES];
    ssize_t n = tail_pread_full(fd, head, len, 0);

    if (n < 0)
        return (int)n;
    if ((size_t)n < len)
        return -ENODATA;
    tail_sha256(head, len, out);
    return 0;
}

/*
 * Grow the fingerprint of a plain file towards TAIL_FP_BYTES as its head gets written.
 * Returns -ESTALE when the bytes already hashed changed (the file was rewritten).
 */
static int
tail_file_grow_fp(struct tail_file *f, uint64_t size)
{
    uint32_t want = size < TAIL_FP_BYTES ? (uint32_t)size : TAIL_FP_BYTES;
    char head[TAIL_FP_BYTES];
    uint8_t h[32];

    if (f->gz || want <= f->fp_len)
        return 0;
    if (tail_pread_full(f->fd, head, want, 0) != (ssize_t)want)
        return 0;
    if (f->fp_len > 0) {
        tail_sha256(head, f->fp_len, h);
        if (memcmp(h, f->fp, 32) != 0)
            return -ESTALE;
    }
    tail_sha256(head, want, f->fp);
    f->fp_len = want;
    return 0;
}

/* Start reading a plain file at @off (a line boundary), remembering the bytes before it. */
static void
tail_file_seek(struct tail_file *f, uint64_t off)
{
    uint32_t n = off < TAIL_CHECK_BYTES ? (uint32_t)off : TAIL_CHECK_BYTES;

    f->read_off = f->line_end = off;
    f->tail_len = 0;
    if (!f->gz && n > 0 && tail_pread_full(f->fd, f->tail, n, off - n) == (ssize_t)n)
        f->tail_len = n;
}

/* Do the bytes just before read_off still hold what we read there? */
static bool
tail_file_tail_ok(const struct tail_file *f)
{
    char b[TAIL_CHECK_BYTES];

    if (f->gz || f->tail_len == 0 || f->read_off < f->tail_len)
        return true;
    if (tail_pread_full(f->fd, b, f->tail_len, f->read_off - f->tail_len) != (ssize_t)f->tail_len)
        return false;
    return memcmp(b, f->tail, f->tail_len) == 0;
}

static void
tail_emit(struct tail *t, const struct eximlog_record *rec)
{
    t->st.records++;
    if (rec->truncated)
        t->st.truncated_records++;
    if (rec->flags & EXIM_F_INCOMPLETE)
        t->st.incomplete_records++;
    t->on_record(t->ctx, rec);
}

static void
tail_push_line(struct tail *t, struct tail_file *f, const char *p, size_t len, uint64_t start,
               uint64_t end)
{
    struct eximlog_record rec;

    t->st.lines++;
    f->line_end = end;
    if (eximlog_joiner_push(&f->j, p, len, start, end, &rec) == 1)
        tail_emit(t, &rec);
}

/*
 * An over-long run without a newline: stop buffering and discard it up to its newline.
 * Its bytes never reach the joiner, so text after the cut can never start a record (R8,
 * 5.4); tail_skip_done() tells the joiner the byte range once the newline is found.
 */
static void
tail_cut_line(struct tail *t, struct tail_file *f)
{
    t->st.long_lines++;
    f->partial_len = 0;
    f->skipping = true;
    if (t->long_logged_ms == 0 || tail_now(t) - t->long_logged_ms >= TAIL_LOG_EVERY_MS) {
        t->long_logged_ms = tail_now(t);
        (void)log_emit(LOG_WARNING, 0, NULL,
                       "%s: line over %d bytes at offset %llu cut and skipped (%llu so far)",
                       f->name, TAIL_LINE_MAX, (unsigned long long)f->line_end,
                       (unsigned long long)t->st.long_lines);
    }
}

static void
tail_skip_done(struct tail *t, struct tail_file *f, uint64_t end)
{
    struct eximlog_record rec;

    f->skipping = false;
    if (f->aligning)
        f->aligning = false;
    else if (eximlog_joiner_overlong(&f->j, f->line_end, end, &rec) == 1)
        tail_emit(t, &rec);
    f->line_end = end;
}

/* Split @n bytes read at f->read_off into physical lines. */
static void
tail_remember(struct tail_file *f, const char *p, size_t n)
{
    if (n >= TAIL_CHECK_BYTES) {
        memcpy(f->tail, p + n - TAIL_CHECK_BYTES, TAIL_CHECK_BYTES);
        f->tail_len = TAIL_CHECK_BYTES;
        return;
    }
    if (f->tail_len + n > TAIL_CHECK_BYTES) {
        size_t drop = f->tail_len + n - TAIL_CHECK_BYTES;
        memmove(f->tail, f->tail + drop, f->tail_len - drop);
        f->tail_len = (uint32_t)(f->tail_len - drop);
    }
    memcpy(f->tail + f->tail_len, p, n);
    f->tail_len += (uint32_t)n;
}

static void
tail_feed(struct tail *t, struct tail_file *f, const char *p, size_t n)
{
    uint64_t off = f->read_off;

    tail_remember(f, p, n);

    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t seg = nl ? (size_t)(nl - p) : n;
        uint64_t next = off + seg + (nl ? 1 : 0);

        if (f->skipping) {
            if (nl)
                tail_skip_done(t, f, next);
        } else if (f->partial_len + seg > TAIL_LINE_MAX) {
            tail_cut_line(t, f);
            if (nl)
                tail_skip_done(t, f, next);
        } else if (!nl) {
            memcpy(f->partial + f->partial_len, p, seg);
            f->partial_len += seg;
        } else if (f->partial_len == 0) {
            tail_push_line(t, f, p, seg, off, next);
        } else {
            memcpy(f->partial + f->partial_len, p, seg);
            tail_push_line(t, f, f->partial, f->partial_len + seg, f->line_end, next);
            f->partial_len = 0;
        }
        p += seg + (nl ? 1 : 0);
        n -= seg + (nl ? 1 : 0);
        off = next;
    }
    f->read_off = off;
}

/* Committed offset of a file: never inside a pending record or a partial line. */
static uint64_t
tail_file_committed(const struct tail_file *f)
{
    return eximlog_joiner_resume(&f->j, f->line_end);
}

static bool
tail_file_finished(const struct tail_file *f)
{
    return !f->live && f->at_eof && !f->j.pending && f->partial_len == 0 && !f->skipping;
}

/* ---- sibling discovery (rotated files) ---- */

struct tail_cand {
    char name[NAME_MAX + 1];
    bool gz;
    int rank;   /* larger = newer within a naming scheme */
    bool dated; /* -YYYYMMDD[HH] rather than .N */
    struct timespec mtime;
    uint64_t dev, ino;
};

static bool
tail_all_digits(const char *p, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    return true;
}

/*
 * Is @name a rotated sibling of @base: base.N, base.NN (exicyclog), base-YYYYMMDD[HH]
 * (dateext), each optionally .gz? Sets the order rank (.1 newer than .2; later dates newer).
 */
static bool
tail_sibling_match(const char *base, const char *name, bool *ret_gz, int *ret_rank, bool *ret_dated)
{
    size_t bl = strlen(base), nl = strlen(name);
    const char *s;
    size_t sl;
    long v = 0;

    if (nl <= bl + 1 || strncmp(name, base, bl) != 0)
        return false;
    s = name + bl;
    sl = nl - bl;
    *ret_gz = sl > 3 && strcmp(s + sl - 3, ".gz") == 0;
    if (*ret_gz)
        sl -= 3;
    if (s[0] == '.' && sl >= 2 && sl <= 4 && tail_all_digits(s + 1, sl - 1)) {
        for (size_t i = 1; i < sl; i++)
            v = v * 10 + (s[i] - '0');
        *ret_rank = -(int)v;
        *ret_dated = false;
        return true;
    }
    if (s[0] == '-' && (sl == 9 || sl == 11) && tail_all_digits(s + 1, sl - 1)) {
        for (size_t i = 1; i < sl && i < 9; i++)
            v = v * 10 + (s[i] - '0');
        *ret_rank = (int)(v % 100000000);
        *ret_dated = true;
        return true;
    }
    return false;
}

static int
tail_cand_cmp(const void *a, const void *b)
{
    const struct tail_cand *x = a, *y = b;

    /* Within one naming scheme the name is the order: .1 is newer than .2(.gz) at the
     * instant of the listing, whatever the mtimes say - a .gz being written has a fresh
     * mtime until the compressor copies the original's. */
    if (x->dated == y->dated && x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    if (x->mtime.tv_sec != y->mtime.tv_sec)
        return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
    if (x->mtime.tv_nsec != y->mtime.tv_nsec)
        return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    return (x->gz ? 1 : 0) - (y->gz ? 1 : 0);
}

/* Rotated siblings of the log, oldest first. Returns their number (<= @max). */
static size_t
tail_list_siblings(const struct tail *t, struct tail_cand *c, size_t max)
{
    DIR *d = opendir(t->dir);
    struct dirent *de;
    size_t n = 0;

    if (!d)
        return 0;
    while ((de = readdir(d)) != NULL && n < max) {
        struct stat st;
        char p[PATH_MAX];

        if (!tail_sibling_match(t->base, de->d_name, &c[n].gz, &c[n].rank, &c[n].dated))
            continue;
        if (snprintf(p, sizeof(p), "%s/%s", t->dir, de->d_name) >= (int)sizeof(p))
            continue;
        if (stat(p, &st) < 0 || !S_ISREG(st.st_mode))
            continue;
        (void)snprintf(c[n].name, sizeof(c[n].name), "%s", de->d_name);
        c[n].mtime = st.st_mtim;
        c[n].dev = (uint64_t)st.st_dev;
        c[n].ino = (uint64_t)st.st_ino;
        n++;
    }
    (void)closedir(d);
    qsort(c, n, sizeof(c[0]), tail_cand_cmp);
    return n;
}

/* A sibling listed as a regular file and something else at open: skipped, counted. */
static void
tail_odd_sibling(struct tail *t, const char *path, mode_t mode)
{
    t->st.open_errors++;
    if (t->odd_logged_ms != 0 && tail_now(t) - t->odd_logged_ms < TAIL_LOG_EVERY_MS)
        return;
    t->odd_logged_ms = tail_now(t);
    (void)log_emit(LOG_WARNING, 0, NULL, "'%s' is %s, not a regular file: not read", path,
                   tail_kind(mode));
}

/*
 * Open a sibling and hash its head over @fp_len bytes (decompressed for .gz). Returns an
 * open file (offset 0, fingerprint grown to what the head holds) or NULL.
 */
static struct tail_file *
tail_open_cand(struct tail *t, const struct tail_cand *c, uint32_t fp_len, uint8_t ret_hash[32],
               bool *ret_hash_ok)
{
    char p[PATH_MAX], head[TAIL_FP_BYTES];
    struct stat st;
    struct tail_file *f;
    int fd;

    *ret_hash_ok = false;
    (void)snprintf(p, sizeof(p), "%s/%s", t->dir, c->name);
    /* no dev/ino check: names shift under a rotation, and callers compare what they got */
    fd = tail_open_regular(p, 0, 0, &st);
    if (fd == -EINVAL)
        tail_odd_sibling(t, p, st.st_mode);
    if (fd < 0)
        return NULL;
    if (!(f = tail_file_new(fd, &st, c->name))) {
        (void)close(fd);
        return NULL;
    }
    if (!c->gz) {
        (void)tail_file_grow_fp(f, (uint64_t)st.st_size);
        *ret_hash_ok = tail_head_hash(fd, fp_len, ret_hash) == 0;
        return f;
    }
    {
        int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        int n;

        f->gz = dfd >= 0 ? gzdopen(dfd, "rb") : NULL;
        if (!f->gz) {
            if (dfd >= 0)
                (void)close(dfd);
            tail_file_close(t, f);
            return NULL;
        }
        n = gzread(f->gz, head, sizeof(head));
        if (n < 0 || gzrewind(f->gz) < 0) {
            tail_file_close(t, f);
            return NULL;
        }
        f->fp_len = (uint32_t)n;
        tail_sha256(head, (size_t)n, f->fp);
        if ((uint32_t)n >= fp_len) {
            tail_sha256(head, fp_len, ret_hash);
            *ret_hash_ok = true;
        }
    }
    return f;
}

static int
tail_add_file(struct tail *t, struct tail_file *f, size_t at)
{
    if (t->nfiles == TAIL_MAX_FILES) {
        /* Close a finished predecessor early; failing that, the oldest, as a gap. */
        size_t k = 0;
        struct tail_file *old;
        while (k < t->nfiles && !tail_file_finished(t->files[k]))
            k++;
        if (k == t->nfiles) {
            k = 0;
            if (t->files[0]->live)
                return -E2BIG;
            t->st.gaps++;
            (void)log_emit(LOG_WARNING, 0, NULL, "%s: too many files open, closing it unread",
                           t->files[0]->name);
        }
        old = t->files[k];
        tail_file_close(t, old);
        memmove(t->files + k, t->files + k + 1, (t->nfiles - k - 1) * sizeof(t->files[0]));
        t->nfiles--;
        if (at > k)
            at--;
    }
    memmove(t->files + at + 1, t->files + at, (t->nfiles - at) * sizeof(t->files[0]));
    t->files[at] = f;
    t->nfiles++;
    return 0;
}

static void
tail_watch_file(struct tail *t, struct tail_file *f)
{
    char p[64];

    if (t->ifd < 0 || f->gz)
        return;
    /* Through /proc the watch lands on our inode even if the name moved meanwhile. */
    (void)snprintf(p, sizeof(p), "/proc/self/fd/%d", f->fd);
    f->wd = inotify_add_watch(
        t->ifd, p, IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVE_SELF | IN_DELETE_SELF);
}

/*
 * Truncation of a plain file we were reading: look for a copytruncate copy holding the
 * bytes we had not read yet, then restart at 0 (R5). Records already complete are handed
 * out unless the copy will hand them out again.
 */
static bool
tail_truncated(struct tail *t, struct tail_file *f, const char *why)
{
    struct tail_cand c[TAIL_SIBLINGS_MAX];
    struct eximlog_record rec;
    uint64_t committed = tail_file_committed(f);
    struct tail_file *copy = NULL;
    size_t n = f->fp_len > 0 ? tail_list_siblings(t, c, N_ELEMS(c)) : 0;

    t->st.truncations++;
    t->st.gaps++;
    for (size_t i = n; i-- > 0 && !copy;) {
        uint8_t h[32];
        bool ok;
        struct tail_file *g;

        if (c[i].gz || c[i].ino == f->ino)
            continue;
        g = tail_open_cand(t, &c[i], f->fp_len, h, &ok);
        if (!g)
            continue;
        if (ok && memcmp(h, f->fp, 32) == 0) {
            struct stat st;
            if (fstat(g->fd, &st) == 0 && (uint64_t)st.st_size > committed) {
                copy = g;
                break;
            }
        }
        tail_file_close(t, g);
    }
    if (copy) {
        size_t at = 0;
        tail_file_seek(copy, committed);
        copy->last_data_ms = tail_now(t);
        while (at < t->nfiles && t->files[at] != f)
            at++;
        copy->last_data_ms = tail_now(t);
        if (tail_add_file(t, copy, at) < 0) {
            tail_file_close(t, copy);
            copy = NULL;
        } else {
            t->st.recovered_copies++;
        }
    }
    if (!copy && eximlog_joiner_flush(&f->j, false, &rec) == 1)
        tail_emit(t, &rec);
    (void)log_emit(LOG_WARNING, 0, NULL,
                   "%s: %s at offset %llu, restarting at 0%s; lines written meanwhile may be lost",
                   f->name, why, (unsigned long long)f->read_off,
                   copy ? " after reading the rest of its copy" : "");
    eximlog_joiner_init(&f->j);
    f->partial_len = 0;
    f->skipping = false;
    f->read_off = f->line_end = 0;
    f->fp_len = 0;
    f->tail_len = 0;
    f->at_eof = false;
    return copy != NULL;
}

/* ---- the live path ---- */

static void
tail_demote_live(struct tail *t)
{
    struct tail_file *f = t->nfiles ? t->files[t->nfiles - 1] : NULL;

    if (!f || !f->live)
        return;
    f->live = false;
    f->last_data_ms = tail_now(t);
    t->st.rotations++;
}

static struct tail_file *
tail_live(const struct tail *t)
{
    struct tail_file *f = t->nfiles ? t->files[t->nfiles - 1] : NULL;

    return f && f->live ? f : NULL;
}

/* The path names something else than a regular file: retried like a missing one. */
static void
tail_not_regular(struct tail *t, mode_t mode)
{
    t->st.open_errors++;
    if (t->error_logged)
        return;
    t->error_logged = true;
    (void)log_emit(LOG_ERR, 0, NULL, "'%s' is %s, not a regular file: not read, retrying every %lld ms",
                   t->path, tail_kind(mode), (long long)t->reconcile_ms);
}

static void
tail_path_error(struct tail *t, int err, const char *what)
{
    t->st.open_errors++;
    if (t->error_logged)
        return;
    t->error_logged = true;
    (void)log_emit(LOG_ERR, err, NULL, "cannot %s '%s', retrying every %lld ms", what, t->path,
                   (long long)t->reconcile_ms);
}

/* Does the path name a new file? Open it as the live file (R2, 3.2). */
static void
tail_check_path(struct tail *t)
{
    struct tail_file *live = tail_live(t), *f;
    struct stat st, fst;
    int fd;

    t->check_path = false;
    t->started = true;
    if (stat(t->path, &st) < 0) {
        int err = -errno;
        if (live)
            tail_demote_live(t);
        if (err != -ENOENT) {
            tail_path_error(t, err, "stat");
        } else if (!t->missing_logged) {
            t->missing_logged = true;
            (void)log_emit(LOG_WARNING, 0, NULL, "'%s' does not exist, waiting for it", t->path);
        }
        return;
    }
    if (live && live->ino == (uint64_t)st.st_ino && live->dev == (uint64_t)st.st_dev)
        return;
    if (!S_ISREG(st.st_mode)) {
        if (live)
            tail_demote_live(t);
        tail_not_regular(t, st.st_mode);
        return;
    }
    fd = tail_open_regular(t->path, (uint64_t)st.st_dev, (uint64_t)st.st_ino, &fst);
    if (fd == -ESTALE) {
        /* Renamed between stat and open: look again in the next pass. */
        t->check_path = true;
        return;
    }
    if (fd == -EINVAL) {
        /* Swapped for a FIFO or a device after the stat(): the reconcile timer retries. */
        if (live)
            tail_demote_live(t);
        tail_not_regular(t, fst.st_mode);
        return;
    }
    if (fd < 0) {
        tail_path_error(t, fd, "open");
        return;
    }
    f = tail_file_new(fd, &fst, t->base);
    if (!f) {
        (void)close(fd);
        return;
    }
    f->live = true;
    f->last_data_ms = tail_now(t);
    if (t->start_valid && f->ino == t->start_ino && f->dev == t->start_dev) {
        /* No checkpoint: begin where the file ended at start-up, on a line boundary. */
        uint64_t at = t->start_size;
        char c = '\n';
        if (at > 0 && tail_pread_full(fd, &c, 1, at - 1) != 1)
            c = '\n';
        tail_file_seek(f, at);
        f->skipping = f->aligning = c != '\n';
    }
    t->start_valid = false;
    (void)tail_file_grow_fp(f, (uint64_t)fst.st_size);
    if (live) {
        tail_demote_live(t);
        /* Rotated more than once since we last looked: the files in between (R6). */
        tail_add_between(t, live, (uint64_t)fst.st_ino);
    }
    if (tail_add_file(t, f, t->nfiles) < 0) {
        tail_file_close(t, f);
        return;
    }
    tail_watch_file(t, f);
    if (t->missing_logged || t->error_logged)
        (void)log_emit(LOG_INFO, 0, NULL, "tailing '%s' again", t->path);
    t->missing_logged = t->error_logged = false;
}

/* ---- reading ---- */

/*
 * A predecessor rewritten under us (a rotated name reused by the next copytruncate, a
 * compressor rewriting in place): its new content is not ours to read. Finish it as is.
 */
static void
tail_drop_predecessor(struct tail *t, struct tail_file *f)
{
    struct eximlog_record rec;

    if (!tail_file_finished(f)) {
        t->st.gaps++;
        (void)log_emit(LOG_WARNING, 0, NULL,
                       "%s: rotated file rewritten at offset %llu before we finished it", f->name,
                       (unsigned long long)f->read_off);
    }
    if (eximlog_joiner_flush(&f->j, false, &rec) == 1)
        tail_emit(t, &rec);
    eximlog_joiner_init(&f->j);
    f->partial_len = 0;
    f->skipping = false;
    f->at_eof = true;
    f->last_data_ms -= t->grace_ms; /* closed by tail_expire() in this pass */
}

/*
 * Read one file within *@budget. Returns true when it reached its end (the next file
 * may be read), false when the budget ran out or an error stopped it.
 */
static bool
tail_file_read(struct tail *t, struct tail_file *f, size_t *budget)
{
    struct eximlog_record rec;

    if (!f->gz) {
        struct stat st;
        bool copy = false;
        if (fstat(f->fd, &st) < 0)
            return true;
        if (!f->live && ((uint64_t)st.st_size < f->read_off || !tail_file_tail_ok(f))) {
            tail_drop_predecessor(t, f);
            return true;
        }
        if ((uint64_t)st.st_size < f->read_off)
            copy = tail_truncated(t, f, "truncated");
        else if (!tail_file_tail_ok(f) || tail_file_grow_fp(f, (uint64_t)st.st_size) < 0)
            copy = tail_truncated(t, f, "content replaced");
        if (copy) {
            /* The copy holds older bytes: read it first. */
            t->restart_pass = true;
            return false;
        }
        (void)tail_file_grow_fp(f, (uint64_t)st.st_size);
    }
    f->at_eof = false;
    while (*budget > 0) {
        size_t want = *budget < sizeof(t->buf) ? *budget : sizeof(t->buf);
        ssize_t n;

        if (f->gz) {
            int r = gzread(f->gz, t->buf, (unsigned)want);
            n = r < 0 ? -EIO : r;
        } else {
            n = pread(f->fd, t->buf, want, (off_t)f->read_off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                n = -errno;
        }
        if (n < 0) {
            (void)log_emit(LOG_ERR, (int)n, NULL, "%s: read failed at offset %llu", f->name,
                           (unsigned long long)f->read_off);
            return false;
        }
        if (n == 0) {
            f->at_eof = true;
            break;
        }
        t->st.bytes += (uint64_t)n;
        *budget -= (size_t)n;
        f->last_data_ms = tail_now(t);
        tail_feed(t, f, t->buf, (size_t)n);
    }
    if (!f->at_eof)
        return false;
    /* Exim writes an entry with one write(): at EOF after a newline it is complete. */
    if (f->partial_len == 0 && !f->skipping && eximlog_joiner_flush(&f->j, false, &rec) == 1)
        tail_emit(t, &rec);
    return true;
}

/*
 * The newest plain file stays open while the path is missing (delete, or exicyclog
 * which leaves creating the new log to Exim's next write): late writes still land there.
 */
static bool
tail_file_kept(const struct tail *t, size_t i)
{
    return i + 1 == t->nfiles && t->files[i]->gz == NULL;
}

/* Force out open records after flush_ms; close predecessors past their grace (R4). */
static void
tail_expire(struct tail *t)
{
    int64_t now = tail_now(t);
    struct eximlog_record rec;

    for (size_t i = 0; i < t->nfiles;) {
        struct tail_file *f = t->files[i];

        if (f->at_eof && f->j.pending && now - f->last_data_ms >= t->flush_ms &&
            eximlog_joiner_flush(&f->j, true, &rec) == 1)
            tail_emit(t, &rec);
        if (f->live || !f->at_eof || now - f->last_data_ms < t->grace_ms || tail_file_kept(t, i)) {
            i++;
            continue;
        }
        if (f->partial_len > 0 || f->skipping) {
            t->st.partial_dropped++;
            (void)log_emit(LOG_WARNING, 0, NULL, "%s: ends in a partial line, dropped", f->name);
        }
        if (f->j.pending && eximlog_joiner_flush(&f->j, true, &rec) == 1)
            tail_emit(t, &rec);
        tail_file_close(t, f);
        memmove(t->files + i, t->files + i + 1, (t->nfiles - i - 1) * sizeof(t->files[0]));
        t->nfiles--;
    }
}

static bool
tail_needs_timer(const struct tail *t)
{
    for (size_t i = 0; i < t->nfiles; i++) {
        const struct tail_file *f = t->files[i];
        if (f->j.pending || (!f->live && !tail_file_kept(t, i)))
            return true;
    }
    return false;
}

/* Verify the live file's head still hashes to its fingerprint (truncate and regrow). */
static void
tail_verify_head(struct tail *t)
{
    struct tail_file *f = tail_live(t);
    uint8_t h[32];

    if (!f || f->fp_len == 0)
        return;
    if (tail_head_hash(f->fd, f->fp_len, h) == -ENODATA || memcmp(h, f->fp, 32) != 0)
        tail_truncated(t, f, "head changed");
}

static void
tail_work(struct tail *t)
{
    size_t budget = t->budget;
    bool more = false;

    if (t->check_path)
        tail_check_path(t);
    if (t->verify_heads) {
        t->verify_heads = false;
        tail_verify_head(t);
    }
    for (size_t i = 0; i < t->nfiles; i++) {
        if (tail_file_read(t, t->files[i], &budget))
            continue;
        if (t->restart_pass) {
            t->restart_pass = false;
            i = SIZE_MAX; /* from the oldest again */
            continue;
        }
        more = budget == 0;
        break;
    }
    tail_expire(t);
    t->caught_up = !more;
    if (more)
        ev_idle_start(t->loop, &t->idle);
    else
        ev_idle_stop(t->loop, &t->idle);
    if (tail_needs_timer(t)) {
        if (!ev_is_active(&t->flush))
            ev_timer_again(t->loop, &t->flush);
    } else {
        ev_timer_stop(t->loop, &t->flush);
    }
}

static void
tail_kick(struct tail *t)
{
    ev_idle_start(t->loop, &t->idle);
}

/* ---- watchers ---- */

static void
tail_idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)loop;
    (void)revents;
    tail_work(w->data);
}

static void
tail_flush_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    tail_kick(w->data);
}

static void
tail_reconcile_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct tail *t = w->data;

    (void)loop;
    (void)revents;
    t->check_path = true;
    t->verify_heads = true;
    tail_kick(t);
}

static void
tail_inotify_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct tail *t = w->data;
    char buf[TAIL_INOTIFY_BUF] __attribute__((aligned(__alignof__(struct inotify_event))));

    (void)loop;
    (void)revents;
    for (;;) {
        ssize_t n = read(t->ifd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)(void *)p;
            p += sizeof(*ev) + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                int64_t now = tail_now(t);
                t->st.overflows++;
                t->check_path = t->verify_heads = true;
                if (t->overflow_logged_ms == 0 || now - t->overflow_logged_ms > TAIL_LOG_EVERY_MS) {
                    t->overflow_logged_ms = now;
                    (void)log_emit(LOG_WARNING, 0, NULL,
                                   "inotify queue overflow, reconciling (%llu so far)",
                                   (unsigned long long)t->st.overflows);
                }
            } else if (ev->wd == t->dir_wd) {
                /* Other logs come and go in /var/log: only our name, or the dir itself. */
                if (ev->len == 0 || strcmp(ev->name, t->base) == 0)
                    t->check_path = true;
            } else if (ev->mask & ~(uint32_t)(IN_MODIFY | IN_CLOSE_WRITE)) {
                t->check_path = true;
            }
        }
    }
    tail_kick(t);
}

/* ---- resume (7.5) ---- */

static bool
tail_marker_ok(int fd, const struct tail_pos *pos)
{
    char b[TAIL_MARKER_BYTES];

    if (pos->marker_len == 0)
        return true;
    if (pos->marker_len > TAIL_MARKER_BYTES || pos->offset < pos->marker_len)
        return false;
    if (tail_pread_full(fd, b, pos->marker_len, pos->offset - pos->marker_len) !=
        (ssize_t)pos->marker_len)
        return false;
    return tail_sha64(b, pos->marker_len) == pos->marker;
}

static bool
tail_same_head(int fd, const struct tail_pos *pos)
{
    uint8_t h[32];

    if (pos->fp_len == 0)
        return true;
    return tail_head_hash(fd, pos->fp_len, h) == 0 && memcmp(h, pos->fp, 32) == 0;
}

/*
 * The marker of a .gz candidate: decompress up to the bytes before the offset and compare
 * them (R1, the same proof as for a plain file). Leaves the stream at pos->offset.
 */
static bool
tail_gz_seek_verify(struct tail_file *g, const struct tail_pos *pos)
{
    char b[TAIL_MARKER_BYTES];
    uint64_t at;

    if (pos->marker_len > TAIL_MARKER_BYTES || pos->offset < pos->marker_len)
        return false;
    at = pos->offset - pos->marker_len;
    if (gzseek(g->gz, (z_off_t)at, SEEK_SET) != (z_off_t)at)
        return false;
    if (pos->marker_len > 0 && (gzread(g->gz, b, pos->marker_len) != (int)pos->marker_len ||
                                tail_sha64(b, pos->marker_len) != pos->marker))
        return false;
    g->read_off = g->line_end = pos->offset;
    return true;
}

/*
 * Is the .gz @g a compressed twin of the plain file @fd (its fingerprint holds the
 * decompressed head, fp_len bytes of it)? A gzip still being written has a fresh mtime
 * and a truncated stream: the plain twin is the one to read (4.3).
 */
static bool
tail_gz_twin_of(const struct tail_file *g, int fd)
{
    uint8_t h[32];

    return g->gz && g->fp_len > 0 && tail_head_hash(fd, g->fp_len, h) == 0 &&
           memcmp(h, g->fp, 32) == 0;
}

/* Do @a and @b hold the same content (a file and its twin)? */
static bool
tail_twins(const struct tail_file *a, const struct tail_file *b)
{
    if (a->ino == b->ino && a->dev == b->dev)
        return true;
    if (a->gz && !b->gz)
        return tail_gz_twin_of(a, b->fd);
    if (b->gz && !a->gz)
        return tail_gz_twin_of(b, a->fd);
    return a->fp_len > 0 && a->fp_len == b->fp_len && memcmp(a->fp, b->fp, 32) == 0;
}

/*
 * Queue the rotated siblings c[from..n) (oldest first) from offset 0, before the live
 * file: the chain from the checkpoint's file to the live one (R6). Skips the live inode,
 * files already queued and twins (a .gz of a plain file, preferring the plain one). If
 * they do not all fit next to the live file, the oldest are left out and counted as a gap.
 */
static void
tail_add_siblings(struct tail *t, const struct tail_cand *c, size_t from, size_t n,
                  uint64_t live_ino)
{
    struct tail_file *g[TAIL_SIBLINGS_MAX];
    size_t ng = 0, room, skip;

    for (size_t i = from; i < n; i++) {
        uint8_t h[32];
        bool ok, dup = false;
        struct tail_file *f;

        if (c[i].ino == live_ino)
            continue;
        f = tail_open_cand(t, &c[i], 0, h, &ok);
        if (!f)
            continue;
        if (f->gz && f->fp_len == 0) {
            tail_file_close(t, f); /* nothing decompressed: nothing to read */
            continue;
        }
        for (size_t k = 0; k < t->nfiles && !dup; k++)
            dup = tail_twins(t->files[k], f);
        /* A .gz with a plain twin anywhere in the listing (even an older one, already
         * read): the compressor is still writing it and its fresh mtime sorts it wrongly. */
        for (size_t k = 0; k < n && !dup && f->gz; k++) {
            char p[PATH_MAX];
            struct stat st;
            int fd;

            if (c[k].gz || k == i)
                continue;
            (void)snprintf(p, sizeof(p), "%s/%s", t->dir, c[k].name);
            fd = tail_open_regular(p, 0, 0, &st);
            if (fd == -EINVAL)
                tail_odd_sibling(t, p, st.st_mode);
            if (fd < 0)
                continue;
            dup = tail_gz_twin_of(f, fd);
            (void)close(fd);
        }
        for (size_t k = 0; k < ng && !dup; k++) {
            if (!tail_twins(g[k], f))
                continue;
            if (g[k]->gz && !f->gz) {
                /* keep the plain twin, in the gz's place */
                tail_file_close(t, g[k]);
                g[k] = f;
                f = NULL;
            }
            dup = true;
        }
        if (dup) {
            if (f)
                tail_file_close(t, f);
            continue;
        }
        g[ng++] = f;
    }
    room = t->nfiles + 1 < TAIL_MAX_FILES ? TAIL_MAX_FILES - 1 - t->nfiles : 0;
    skip = ng > room ? ng - room : 0;
    if (skip > 0) {
        t->st.gaps++;
        (void)log_emit(LOG_WARNING, 0, NULL,
                       "'%s': %zu rotated files to read after downtime, more than %d open "
                       "files: the oldest %zu are skipped",
                       t->path, ng, TAIL_MAX_FILES, skip);
    }
    for (size_t k = 0; k < ng; k++) {
        if (k < skip || tail_add_file(t, g[k], t->nfiles) < 0) {
            tail_file_close(t, g[k]);
            continue;
        }
        g[k]->last_data_ms = tail_now(t);
        tail_watch_file(t, g[k]);
    }
}

/*
 * The path names a new file: if the old live file @old is among the rotated siblings,
 * every sibling newer than it was live in between, unseen (two rotations between two
 * looks, e.g. a starved process): queue them before the new live file, never skip them.
 */
static void
tail_add_between(struct tail *t, const struct tail_file *old, uint64_t live_ino)
{
    struct tail_cand c[TAIL_SIBLINGS_MAX];
    size_t n = tail_list_siblings(t, c, N_ELEMS(c)), at = SIZE_MAX;

    for (size_t i = n; i-- > 0 && at == SIZE_MAX;)
        if (c[i].ino == old->ino && c[i].dev == old->dev && !c[i].gz)
            at = i;
    /* already compressed: by its fingerprint (plain first, then .gz) */
    for (size_t pass = 0; pass < 2 && at == SIZE_MAX && old->fp_len > 0; pass++) {
        for (size_t i = n; i-- > 0 && at == SIZE_MAX;) {
            uint8_t h[32];
            bool ok;
            struct tail_file *g;

            if (c[i].ino == live_ino || c[i].gz != (pass == 1))
                continue;
            g = tail_open_cand(t, &c[i], old->fp_len, h, &ok);
            if (!g)
                continue;
            if (ok && memcmp(h, old->fp, 32) == 0)
                at = i;
            tail_file_close(t, g);
        }
    }
    if (at != SIZE_MAX && at + 1 < n)
        tail_add_siblings(t, c, at + 1, n, live_ino);
}

/*
 * Queue the live file seen at resume, from 0, after the rotated ones. It must be held
 * from here on: left to tail_check_path(), a rotation in between would turn it into a
 * sibling we never listed, and its lines would be skipped.
 */
static void
tail_resume_live(struct tail *t, int fd, const struct stat *st)
{
    struct tail_file *f;

    if (fd < 0)
        return;
    f = tail_file_new(fd, st, t->base);
    if (!f) {
        (void)close(fd);
        return;
    }
    f->live = true;
    f->last_data_ms = tail_now(t);
    (void)tail_file_grow_fp(f, (uint64_t)st->st_size);
    if (tail_add_file(t, f, t->nfiles) < 0) {
        tail_file_close(t, f);
        return;
    }
    tail_watch_file(t, f);
}

/*
 * Build the file list from a checkpoint: its file at the offset (live or a rotated
 * sibling), newer siblings from 0, then the live file from 0 (via tail_check_path).
 * If the checkpoint's file is gone (deleted by rotation while we were down), its unread
 * rest is a gap, but every rotated sibling still there is newer than it: read them all,
 * oldest first, then the live file - never jump to the live file and skip them.
 */
static void
tail_resume(struct tail *t, const struct tail_pos *pos)
{
    struct tail_cand c[TAIL_SIBLINGS_MAX];
    struct stat st;
    size_t n, found = SIZE_MAX;
    struct tail_file *m = NULL;
    bool live_truncated = false;
    uint64_t live_ino = 0;
    int live_fd = -1;
    struct stat live_st;
    size_t before;

    t->started = true;
    if (stat(t->path, &st) == 0 && S_ISREG(st.st_mode)) {
        struct stat fst;
        int fd = tail_open_regular(t->path, (uint64_t)st.st_dev, (uint64_t)st.st_ino, &fst);
        if (fd >= 0) {
            live_ino = (uint64_t)fst.st_ino;
            live_st = fst;
            if ((uint64_t)fst.st_ino == pos->ino && tail_same_head(fd, pos)) {
                if ((uint64_t)fst.st_size >= pos->offset && tail_marker_ok(fd, pos)) {
                    struct tail_file *f = tail_file_new(fd, &fst, t->base);
                    if (f) {
                        if ((uint64_t)fst.st_dev != pos->dev)
                            (void)log_emit(LOG_WARNING, 0, NULL,
                                           "'%s': device number changed, same inode and "
                                           "content: resuming",
                                           t->path);
                        f->live = true;
                        tail_file_seek(f, pos->offset);
                        f->last_data_ms = tail_now(t);
                        (void)tail_file_grow_fp(f, (uint64_t)fst.st_size);
                        (void)tail_add_file(t, f, 0);
                        tail_watch_file(t, f);
                        return;
                    }
                }
                live_truncated = true;
            }
            live_fd = fd; /* the live file, read from 0 after the rotated ones */
            fd = -1;
        }
        if (fd >= 0)
            (void)close(fd);
    }
    /*
     * Not the live file (rotated while we were down) or truncated: search the siblings,
     * newest first: by inode (pass 0), then by fingerprint among plain files (pass 1),
     * then among .gz (pass 2) - a plain file beats its .gz twin, which may still be
     * being written.
     */
    n = tail_list_siblings(t, c, N_ELEMS(c));
    for (size_t pass = 0; pass < 3 && !m; pass++) {
        for (size_t i = n; i-- > 0 && !m;) {
            uint8_t h[32];
            bool ok;
            struct tail_file *g;

            if (c[i].ino == live_ino || (pass == 0 && c[i].ino != pos->ino) ||
                (pass == 1 && c[i].gz) || (pass == 2 && !c[i].gz))
                continue;
            g = tail_open_cand(t, &c[i], pos->fp_len, h, &ok);
            if (!g)
                continue;
            /* An empty file had no fingerprint: its inode alone identifies it. */
            if (pos->fp_len == 0)
                ok = pass == 0 && !g->gz;
            else
                ok = ok && memcmp(h, pos->fp, 32) == 0;
            if (ok && (g->gz ? tail_gz_seek_verify(g, pos) : tail_marker_ok(g->fd, pos))) {
                m = g;
                found = i;
            } else {
                tail_file_close(t, g);
            }
        }
    }
    if (m && !m->gz)
        tail_file_seek(m, pos->offset);
    before = t->nfiles;
    if (!m) {
        t->st.gaps++;
        if (live_truncated)
            t->st.truncations++;
        tail_add_siblings(t, c, 0, n, live_ino);
        (void)log_emit(LOG_WARNING, 0, NULL,
                       "checkpoint file of '%s' (inode %llu, offset %llu) not found%s: "
                       "its unread rest is lost, reading %zu rotated file(s) and the live "
                       "file from 0",
                       t->path, (unsigned long long)pos->ino, (unsigned long long)pos->offset,
                       live_truncated ? " (truncated in place)" : "", t->nfiles - before);
        tail_resume_live(t, live_fd, &live_st);
        return;
    }
    m->last_data_ms = tail_now(t);
    (void)tail_add_file(t, m, t->nfiles);
    tail_watch_file(t, m);
    (void)log_emit(LOG_INFO, 0, NULL, "resuming '%s' in rotated '%s' at offset %llu", t->path,
                   m->name, (unsigned long long)pos->offset);
    /* Newer siblings, oldest first; skip twins (a .gz of a file we already have). */
    tail_add_siblings(t, c, found + 1, n, live_ino);
    tail_resume_live(t, live_fd, &live_st);
}

/* ---- public ---- */

int
tail_open(const struct tail_params *p, struct tail **ret)
{
    struct tail *t;
    const char *slash;
    int r;

    if (!p || !p->loop || !p->path || !p->path[0] || !p->clock || !p->on_record)
        return -EINVAL;
    t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->ifd = -1;
    t->dir_wd = -1;
    t->loop = p->loop;
    t->clock = p->clock;
    t->on_record = p->on_record;
    t->ctx = p->ctx;
    t->reconcile_ms = p->reconcile_ms > 0 ? p->reconcile_ms : TAIL_DEFAULT_RECONCILE_MS;
    t->flush_ms = p->flush_ms > 0 ? p->flush_ms : TAIL_DEFAULT_FLUSH_MS;
    t->grace_ms = p->grace_ms > 0 ? p->grace_ms : t->reconcile_ms;
    t->budget = p->budget_bytes > 0 ? p->budget_bytes : TAIL_DEFAULT_BUDGET;
    ev_idle_init(&t->idle, tail_idle_cb);
    t->idle.data = t;
    ev_timer_init(&t->flush, tail_flush_cb, 0., (double)t->flush_ms / 1000.);
    t->flush.data = t;
    ev_io_init(&t->iow, tail_inotify_cb, -1, EV_READ);
    t->iow.data = t;

    t->path = strdup(p->path);
    slash = strrchr(p->path, '/');
    t->dir =
        slash ? strndup(p->path, slash == p->path ? 1 : (size_t)(slash - p->path)) : strdup(".");
    t->base = strdup(slash ? slash + 1 : p->path);
    if (!t->path || !t->dir || !t->base) {
        r = -ENOMEM;
        goto fail;
    }
    if (!t->base[0]) {
        r = -EINVAL;
        goto fail;
    }

    if (!p->no_inotify)
        t->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (t->ifd >= 0)
        t->dir_wd =
            inotify_add_watch(t->ifd, t->dir,
                              IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF |
                                  IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK);
    if (t->dir_wd < 0) {
        if (!p->no_inotify)
            (void)log_emit(LOG_WARNING, -errno, NULL, "no inotify on '%s', polling every %d ms",
                           t->dir, TAIL_POLL_MS);
        if (t->ifd >= 0)
            (void)close(t->ifd);
        t->ifd = -1;
        t->st.poll_mode = true;
        if (t->reconcile_ms > TAIL_POLL_MS)
            t->reconcile_ms = TAIL_POLL_MS;
    } else {
        ev_io_set(&t->iow, t->ifd, EV_READ);
        ev_io_start(t->loop, &t->iow);
    }
    ev_timer_init(&t->reconcile, tail_reconcile_cb, (double)t->reconcile_ms / 1000.,
                  (double)t->reconcile_ms / 1000.);
    t->reconcile.data = t;
    ev_timer_start(t->loop, &t->reconcile);

    if (p->resume && p->resume->ino != 0) {
        tail_resume(t, p->resume);
    } else if (!p->from_start) {
        struct stat st;
        if (stat(t->path, &st) == 0 && S_ISREG(st.st_mode)) {
            t->start_valid = true;
            t->start_dev = (uint64_t)st.st_dev;
            t->start_ino = (uint64_t)st.st_ino;
            t->start_size = (uint64_t)st.st_size;
        }
    }
    t->check_path = true;
    tail_kick(t);
    *ret = t;
    return 0;
fail:
    tail_free(t);
    return r;
}

void
tail_free(struct tail *t)
{
    if (!t)
        return;
    ev_idle_stop(t->loop, &t->idle);
    ev_timer_stop(t->loop, &t->flush);
    ev_timer_stop(t->loop, &t->reconcile);
    ev_io_stop(t->loop, &t->iow);
    for (size_t i = 0; i < t->nfiles; i++)
        tail_file_close(t, t->files[i]);
    if (t->ifd >= 0)
        (void)close(t->ifd);
    free(t->path);
    free(t->dir);
    free(t->base);
    free(t);
}

void
tail_position(const struct tail *t, struct tail_pos *ret)
{
    const struct tail_file *f = NULL;
    char b[TAIL_MARKER_BYTES];

    memset(ret, 0, sizeof(*ret));
    for (size_t i = 0; i < t->nfiles && !f; i++)
        if (!tail_file_finished(t->files[i]) || i + 1 == t->nfiles)
            f = t->files[i];
    if (!f)
        return;
    ret->dev = f->dev;
    ret->ino = f->ino;
    ret->offset = tail_file_committed(f);
    ret->fp_len = f->fp_len;
    memcpy(ret->fp, f->fp, sizeof(ret->fp));
    if (!f->gz) {
        uint32_t ml = ret->offset < TAIL_MARKER_BYTES ? (uint32_t)ret->offset : TAIL_MARKER_BYTES;
        if (ml > 0 && tail_pread_full(f->fd, b, ml, ret->offset - ml) == (ssize_t)ml) {
            ret->marker_len = ml;
            ret->marker = tail_sha64(b, ml);
        }
    }
}

bool
tail_caught_up(const struct tail *t)
{
    return t->caught_up && !ev_is_active(&t->idle);
}

void
tail_get_stats(const struct tail *t, struct tail_stats *ret)
{
    *ret = t->st;
    ret->files_open = (uint32_t)t->nfiles;
}
