#ifndef FLOODGATE_PREFLIGHT_H
#define FLOODGATE_PREFLIGHT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "config.h"

/*
 * Preflight: before the daemon starts, reloads, or `--check-config` says "ok", every path
 * the configured backend and mode will use is checked for existence, type and access, and
 * a sample of the log is read to see what its log_selector lets the rules see. A problem
 * is an error in enforce mode (the daemon refuses to start or reload into it) and a
 * warning in monitor mode. The file system is reached only through struct preflight_fs,
 * so tests give it a fake one.
 */

#define PREFLIGHT_ITEMS_MAX 32
#define PREFLIGHT_SAMPLE    (256 * 1024) /* bytes of the log's end read by the log check */

struct preflight_fs {
    void *ctx;
    /* stat(2) of @path into @st: 0 or -errno. */
    int (*stat)(void *ctx, const char *path, struct stat *st);
    /* access(2) of @path with R_OK/W_OK/X_OK: 0 or -errno. */
    int (*access)(void *ctx, const char *path, int mode);
    /* The last @size bytes (or fewer) of the regular file @path into @buf: the byte count,
     * or -errno. */
    ssize_t (*read_tail)(void *ctx, const char *path, char *buf, size_t size);
};

/* The real file system. */
extern const struct preflight_fs preflight_fs_real;

enum preflight_level { PREFLIGHT_WARNING = 0, PREFLIGHT_ERROR };

struct preflight_item {
    enum preflight_level level;
    char key[CONFIG_NAME_MAX];  /* the configuration key ("log_file", "actions.exim_path") */
    char path[CONFIG_PATH_MAX]; /* the path concerned; "" when none */
    char msg[320];
};

struct preflight_report {
    struct preflight_item items[PREFLIGHT_ITEMS_MAX];
    size_t n;
    size_t nerrors;
    size_t dropped; /* items past PREFLIGHT_ITEMS_MAX */
};

/*
 * Check every path @cfg will use (log file or its directory, state directory, audit log
 * directory, control socket directory, the exim binary and spool for freezing, the
 * backend's blocklist directory or cPanel tools and state, the command) and sample the
 * log's end for what its log_selector shows. Appends to @r (zeroed by the caller).
 */
void preflight_run(const struct config *cfg, const struct preflight_fs *fs,
                   struct preflight_report *r);

/*
 * Pure: what a sample of the main log (@buf, whole lines) shows about its log_selector.
 * Arrivals without a " for " list make recipients and domains rules blind; local
 * submissions (P=local) without any cwd= line make script rules blind. Each finding is a
 * warning naming the rules that cannot see. Needs at least a few arrivals to say anything.
 */
void preflight_log_sample(const struct config *cfg, const char *buf, size_t len,
                          struct preflight_report *r);

/* "error: actions.exim_path: /usr/sbin/exim9: No such file or directory" */
void preflight_format(const struct preflight_item *it, char *buf, size_t size);

#endif
