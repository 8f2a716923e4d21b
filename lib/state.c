/*
 * state.c - durable files in the state directory (/var/lib/floodgate): atomic replace,
 * whole-file reads, the directory lock, and the tail checkpoint's text format.
 *
 * Owns no memory between calls and no state: every function opens what it needs and
 * closes it. What the files mean belongs to their owners (tail position here; counters
 * snapshot from usertable_save, the action ledger): this module only moves bytes durably.
 *
 * Atomic replace (R10, tailer-reliability.md 7.3): write <name>.tmp, fsync it, rename it
 * over <name>, fsync the directory (fsync(2): syncing a file does not make its directory
 * entry durable). A crash leaves the old file or the new one. On any failure the tmp file
 * is unlinked and the old file is left as it was; the caller keeps its state in memory
 * and retries at its next commit. With STATE_KEEP_PREV the old file first becomes
 * <name>.prev, so a reader can fall back one generation if the newest is corrupt.
 *
 * The checkpoint is text so an operator can read it, versioned, and closed by a CRC-32
 * (zlib) of every byte before the crc line: a torn or edited file is -EBADMSG, never a
 * wrong position.
 */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "util.h"

#define STATE_NAME_MAX     200
#define STATE_CKPT_MAGIC   "floodgate-checkpoint"
#define STATE_CKPT_VERSION 1

static int
state_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;

    if (n == 0 || n > STATE_NAME_MAX || strchr(name, '/') || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0)
        return -EINVAL;
    return 0;
}

static int
state_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int
state_write_at(const char *dir, const char *name, const void *data, size_t len, unsigned flags,
               mode_t mode)
{
    char tmp[STATE_NAME_MAX + 8], prev[STATE_NAME_MAX + 8];
    int dfd, fd, r;

    r = state_name_ok(name);
    if (r < 0 || (!data && len > 0))
        return -EINVAL;
    (void)snprintf(tmp, sizeof(tmp), "%s.tmp", name);
    (void)snprintf(prev, sizeof(prev), "%s.prev", name);
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        r = -errno;
        goto out;
    }
    r = fchmod(fd, mode) < 0 ? -errno : 0; /* the umask must not narrow what readers need */
    if (r == 0)
        r = state_write_all(fd, data, len);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r < 0)
        goto unlink_tmp;
    if ((flags & STATE_KEEP_PREV) && renameat(dfd, name, dfd, prev) < 0 && errno != ENOENT) {
        r = -errno;
        goto unlink_tmp;
    }
    if (renameat(dfd, tmp, dfd, name) < 0) {
        r = -errno;
        goto unlink_tmp;
    }
    if (fsync(dfd) < 0)
        r = -errno; /* renamed, but durability unknown: report it */
    goto out;
unlink_tmp:
    (void)unlinkat(dfd, tmp, 0);
out:
    (void)close(dfd);
    return r;
}

int
state_write_atomic(const char *dir, const char *name, const void *data, size_t len, unsigned flags)
{
    return state_write_at(dir, name, data, len, flags, 0600);
}

/* Split @path into its directory (into @dir) and its last component. */
static int
state_split(const char *path, char *dir, size_t size, const char **ret_name)
{
    const char *slash = strrchr(path, '/');
    size_t n;

    if (!slash) {
        (void)snprintf(dir, size, ".");
        *ret_name = path;
        return 0;
    }
    n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= size)
        return -ENAMETOOLONG;
    memcpy(dir, path, n);
    dir[n] = '\0';
    *ret_name = slash + 1;
    return 0;
}

int
state_write_path(const char *path, const void *data, size_t len, unsigned mode)
{
    char dir[PATH_MAX];
    const char *name;
    int r = state_split(path, dir, sizeof(dir), &name);

    return r < 0 ? r : state_write_at(dir, name, data, len, 0, (mode_t)mode);
}

/* Read all of @fd (at most @max bytes, NUL-terminated); takes @fd. */
static int
state_read_fd(int fd, size_t max, char **ret_buf, size_t *ret_len)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int r = 0;

    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = -EINVAL;
        goto out;
    }
    if ((uint64_t)st.st_size > max) {
        r = -E2BIG;
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        r = -ENOMEM;
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, (size_t)st.st_size + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > (size_t)st.st_size) {
            /* grew while we read: a writer is not using an atomic replace */
            r = -E2BIG;
            goto out;
        }
    }
    buf[len] = '\0';
    *ret_buf = buf;
    if (ret_len)
        *ret_len = len;
    buf = NULL;
out:
    free(buf);
    (void)close(fd);
    return r;
}

int
state_read_path(const char *path, size_t max, char **ret_buf, size_t *ret_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    return fd < 0 ? -errno : state_read_fd(fd, max, ret_buf, ret_len);
}

int
state_read_file(const char *dir, const char *name, size_t max, char **ret_buf, size_t *ret_len)
{
    int dfd, fd, r;

    r = state_name_ok(name);
    if (r < 0)
        return r;
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    r = fd < 0 ? -errno : 0;
    (void)close(dfd);
    if (r < 0)
        return r;
    return state_read_fd(fd, max, ret_buf, ret_len);
}

int
state_lock(const char *dir, int *ret_fd)
{
    char pid[32];
    int dfd, fd, r, n;

    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    fd = openat(dfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    r = fd < 0 ? -errno : 0;
    (void)close(dfd);
    if (r < 0)
        return r;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        r = errno == EWOULDBLOCK ? -EBUSY : -errno;
        (void)close(fd);
        return r;
    }
    /* For people: which process holds it. */
    n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) == 0)
        (void)!pwrite(fd, pid, (size_t)n, 0);
    *ret_fd = fd;
    return 0;
}

/* ---- checkpoint text ---- */

int
state_checkpoint_encode(const struct tail_pos *pos, char *buf, size_t size)
{
    char fp[65], mk[17];
    uint8_t m[8];
    int n, c;

    for (unsigned i = 0; i < 8; i++)
        m[i] = (uint8_t)(pos->marker >> (56 - 8 * i));
    util_hex(fp, pos->fp, sizeof(pos->fp));
    util_hex(mk, m, sizeof(m));
    n = snprintf(buf, size,
                 "%s %d\ndev %llu\nino %llu\noffset %llu\nfp_len %u\nfp %s\nmarker_len %u\n"
                 "marker %s\n",
                 STATE_CKPT_MAGIC, STATE_CKPT_VERSION, (unsigned long long)pos->dev,
                 (unsigned long long)pos->ino, (unsigned long long)pos->offset, pos->fp_len, fp,
                 pos->marker_len, mk);
    if (n < 0 || (size_t)n >= size)
        return -E2BIG;
    c = snprintf(buf + n, size - (size_t)n, "crc %08lx\n", crc32(0L, (const Bytef *)buf, (uInt)n));
    if (c < 0 || (size_t)(n + c) >= size)
        return -E2BIG;
    return n + c;
}

/* Next line of [*p, end) as "key value"; the key must be @key. */
static int
state_field(const char **p, const char *end, const char *key, struct fg_str *ret)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t kl = strlen(key);

    if (!nl || (size_t)(nl - *p) < kl + 2 || memcmp(*p, key, kl) != 0 || (*p)[kl] != ' ')
        return -EBADMSG;
    *ret = fg_str_make(*p + kl + 1, (size_t)(nl - *p) - kl - 1);
    *p = nl + 1;
    return 0;
}

int
state_checkpoint_decode(const char *buf, size_t len, struct tail_pos *ret)
{
    const char *p = buf, *end = buf + len, *crc_at;
    struct tail_pos pos = { 0 };
    struct fg_str v;
    uint64_t u;
    uint32_t ver;
    uint8_t m[8], c[4];

    if (!buf)
        return -EBADMSG;
    if (state_field(&p, end, STATE_CKPT_MAGIC, &v) < 0 || util_parse_u32(v.p, v.len, &ver) < 0)
        return -EBADMSG;
    if (ver != STATE_CKPT_VERSION)
        return -EPROTONOSUPPORT;
    if (state_field(&p, end, "dev", &v) < 0 || util_parse_u64(v.p, v.len, &pos.dev) < 0 ||
        state_field(&p, end, "ino", &v) < 0 || util_parse_u64(v.p, v.len, &pos.ino) < 0 ||
        state_field(&p, end, "offset", &v) < 0 || util_parse_u64(v.p, v.len, &pos.offset) < 0 ||
        state_field(&p, end, "fp_len", &v) < 0 || util_parse_u32(v.p, v.len, &pos.fp_len) < 0 ||
        state_field(&p, end, "fp", &v) < 0 || util_unhex(v.p, v.len, pos.fp, 32) < 0 ||
        state_field(&p, end, "marker_len", &v) < 0 ||
        util_parse_u32(v.p, v.len, &pos.marker_len) < 0 || state_field(&p, end, "marker", &v) < 0 ||
        util_unhex(v.p, v.len, m, 8) < 0)
        return -EBADMSG;
    crc_at = p;
    if (state_field(&p, end, "crc", &v) < 0 || util_unhex(v.p, v.len, c, 4) < 0 || p != end)
        return -EBADMSG;
    u = (uint64_t)c[0] << 24 | (uint64_t)c[1] << 16 | (uint64_t)c[2] << 8 | c[3];
    if (u != crc32(0L, (const Bytef *)buf, (uInt)(crc_at - buf)))
        return -EBADMSG;
    if (pos.fp_len > TAIL_FP_BYTES || pos.marker_len > TAIL_MARKER_BYTES ||
        pos.marker_len > pos.offset || pos.ino == 0)
        return -EBADMSG;
    for (unsigned i = 0; i < 8; i++)
        pos.marker = pos.marker << 8 | m[i];
    *ret = pos;
    return 0;
}

int
state_checkpoint_save(const char *dir, const struct tail_pos *pos)
{
    char buf[STATE_CHECKPOINT_MAX];
    int n = state_checkpoint_encode(pos, buf, sizeof(buf));

    if (n < 0)
        return n;
    return state_write_atomic(dir, STATE_CHECKPOINT_NAME, buf, (size_t)n, STATE_KEEP_PREV);
}

static int
state_checkpoint_load_one(const char *dir, const char *name, struct tail_pos *ret)
{
    char *buf;
    size_t len;
    int r = state_read_file(dir, name, STATE_CHECKPOINT_MAX, &buf, &len);

    if (r < 0)
        return r == -E2BIG ? -EBADMSG : r;
    r = state_checkpoint_decode(buf, len, ret);
    free(buf);
    return r;
}

int
state_checkpoint_load(const char *dir, struct tail_pos *ret)
{
    int r = state_checkpoint_load_one(dir, STATE_CHECKPOINT_NAME, ret);
    int r2;

    if (r == 0)
        return 0;
    r2 = state_checkpoint_load_one(dir, STATE_CHECKPOINT_NAME ".prev", ret);
    if (r2 == 0)
        return 0;
    if (r == -ENOENT && r2 == -ENOENT)
        return -ENOENT;
    return r == -ENOENT ? r2 : r;
}
