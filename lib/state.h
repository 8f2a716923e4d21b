#ifndef FLOODGATE_STATE_H
#define FLOODGATE_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "tail.h"

/* Checkpoint file name in the state directory, and its previous generation (+ ".prev"). */
#define STATE_CHECKPOINT_NAME "tail.checkpoint"
/* Longest encoded checkpoint. */
#define STATE_CHECKPOINT_MAX 512

/* state_write_atomic() flags */
#define STATE_KEEP_PREV (1u << 0) /* move the current file to <name>.prev before replacing it */

/*
 * Replace @dir/@name with @len bytes of @data so that a crash leaves the old content or
 * the new, never a mix: write <name>.tmp (0600, O_NOFOLLOW), fsync, rename over @name,
 * fsync the directory. Borrows everything. On failure the tmp file is removed and the old
 * file is untouched. Returns 0 or -errno (-ENOSPC, -EDQUOT, -EROFS, -EACCES, -EIO,
 * -ENOTDIR, -EINVAL for a name with '/').
 */
int state_write_atomic(const char *dir, const char *name, const void *data, size_t len,
                       unsigned flags);

/*
 * Read @dir/@name whole. On success *@ret_buf is owned by the caller (free()), NUL
 * terminated after *@ret_len bytes. Returns 0, -ENOENT, -E2BIG (over @max bytes), -errno.
 */
int state_read_file(const char *dir, const char *name, size_t max, char **ret_buf, size_t *ret_len);

/*
 * The same for a file named by a full path outside the state directory (the exim
 * backend's blocklist, the action ledger, cPanel's maps): write with @mode (not narrowed
 * by the umask: other programs read these), read at most @max bytes, NUL-terminated.
 * Same returns as state_write_atomic() and state_read_file().
 */
int state_write_path(const char *path, const void *data, size_t len, unsigned mode);
int state_read_path(const char *path, size_t max, char **ret_buf, size_t *ret_len);

/*
 * Take the state directory's lock (@dir/lock, flock) so that two daemons never share a
 * state directory. *@ret_fd holds the lock until closed (O_CLOEXEC). Returns 0, -EBUSY
 * when another process (or another open of the file) holds it, -errno.
 */
int state_lock(const char *dir, int *ret_fd);

/*
 * Checkpoint text format, one "key value" per line, version first, CRC-32 of every byte
 * before the "crc" line last:
 *   floodgate-checkpoint 1 / dev / ino / offset / fp_len / fp (64 hex) / marker_len /
 *   marker (16 hex) / crc (8 hex)
 * encode returns the length written to @buf (< @size, NUL terminated) or -E2BIG.
 * decode returns 0, or -EBADMSG for anything malformed, out of range or failing the CRC
 * (-EPROTONOSUPPORT for another version); @ret is written only on success.
 */
int state_checkpoint_encode(const struct tail_pos *pos, char *buf, size_t size);
int state_checkpoint_decode(const char *buf, size_t len, struct tail_pos *ret);

/* Encode and write STATE_CHECKPOINT_NAME with STATE_KEEP_PREV. 0 or -errno. */
int state_checkpoint_save(const char *dir, const struct tail_pos *pos);

/*
 * Load the checkpoint; if it is missing or corrupt, the previous generation. Returns 0,
 * -ENOENT (neither exists), -EBADMSG (both corrupt), -errno.
 */
int state_checkpoint_load(const char *dir, struct tail_pos *ret);

#endif
