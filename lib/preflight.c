/*
 * preflight.c - the paths a configuration will use, checked before they are needed.
 *
 * A daemon that finds out at the first trip that /etc/exim/ does not exist has already
 * failed silently: the operator was told "ready" and the spammer was not held. Every
 * check here names the configuration key, the path and what is wrong with it. The level
 * follows the mode: an error in enforce mode (start and reload refuse the config), a
 * warning in monitor mode, where nothing is enforced automatically.
 *
 * The file system is reached only through struct preflight_fs; preflight_log_sample() is
 * pure.
 */
#include "preflight.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define PREFLIGHT_CPANEL_ROOT  "/usr/local/cpanel"
#define PREFLIGHT_CPANEL_USERS "/var/cpanel/users"

static void
preflight_add(struct preflight_report *r, enum preflight_level level, const char *key,
              const char *path, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void
preflight_add(struct preflight_report *r, enum preflight_level level, const char *key,
              const char *path, const char *fmt, ...)
{
    struct preflight_item *it;
    va_list ap;

    if (level == PREFLIGHT_ERROR)
        r->nerrors++;
    if (r->n >= PREFLIGHT_ITEMS_MAX) {
        r->dropped++;
        return;
    }
    it = &r->items[r->n++];
    it->level = level;
    (void)snprintf(it->key, sizeof(it->key), "%s", key);
    (void)snprintf(it->path, sizeof(it->path), "%s", path ? path : "");
    va_start(ap, fmt);
    (void)vsnprintf(it->msg, sizeof(it->msg), fmt, ap);
    va_end(ap);
}

/* The level of a problem with something the daemon needs in this mode. */
static enum preflight_level
preflight_level_of(const struct config *cfg)
{
    return cfg->mode == CONFIG_MODE_ENFORCE ? PREFLIGHT_ERROR : PREFLIGHT_WARNING;
}

/* The directory part of @path into @buf ("/" for "/x", "." for "x"). */
static void
preflight_dirname(const char *path, char *buf, size_t size)
{
    const char *slash = strrchr(path, '/');
    size_t n;

    if (!slash) {
        (void)snprintf(buf, size, ".");
        return;
    }
    n = (size_t)(slash - path);
    if (n == 0)
        n = 1;
    if (n >= size)
        n = size - 1;
    memcpy(buf, path, n);
    buf[n] = '\0';
}

static const char *
preflight_type_name(mode_t m)
{
    if (S_ISREG(m))
        return "a regular file";
    if (S_ISDIR(m))
        return "a directory";
    if (S_ISFIFO(m))
        return "a FIFO";
    if (S_ISSOCK(m))
        return "a socket";
    if (S_ISCHR(m))
        return "a character device";
    if (S_ISBLK(m))
        return "a block device";
    if (S_ISLNK(m))
        return "a symbolic link";
    return "not a regular file";
}

enum preflight_want { PREFLIGHT_FILE, PREFLIGHT_DIR, PREFLIGHT_EXEC };

/*
 * @path must exist as @want with @amode access (R_OK/W_OK/X_OK bits). Returns true when
 * it does; otherwise adds one item at @level.
 */
static bool
preflight_path(const struct preflight_fs *fs, struct preflight_report *r,
               enum preflight_level level, const char *key, const char *path,
               enum preflight_want want, int amode, const char *why)
{
    struct stat st;
    int e;

    if (!path || !path[0]) {
        preflight_add(r, level, key, "", "not set, but %s", why);
        return false;
    }
    e = fs->stat(fs->ctx, path, &st);
    if (e < 0) {
        preflight_add(r, level, key, path, "%s (%s)", strerror(-e), why);
        return false;
    }
    if ((want == PREFLIGHT_DIR && !S_ISDIR(st.st_mode)) ||
        (want != PREFLIGHT_DIR && !S_ISREG(st.st_mode))) {
        preflight_add(r, level, key, path, "is %s, expected %s (%s)",
                      preflight_type_name(st.st_mode),
                      want == PREFLIGHT_DIR ? "a directory" : "a regular file", why);
        return false;
    }
    if (amode && (e = fs->access(fs->ctx, path, amode)) < 0) {
        preflight_add(r, level, key, path, "%s%s%s access: %s (%s)", (amode & R_OK) ? "read" : "",
                      (amode & W_OK) ? ((amode & R_OK) ? "/write" : "write") : "",
                      (amode & X_OK) ? "execute" : "", strerror(-e), why);
        return false;
    }
    return true;
}

/*
 * The directory @dir must be writable, or not exist yet with a writable parent (the
 * daemon creates one level, like the state directory and the audit log's directory).
 */
static void
preflight_dir_or_parent(const struct preflight_fs *fs, struct preflight_report *r,
                        enum preflight_level level, const char *key, const char *dir,
                        const char *why)
{
    char parent[CONFIG_PATH_MAX];
    struct stat st;

    if (fs->stat(fs->ctx, dir, &st) == 0) {
        (void)preflight_path(fs, r, level, key, dir, PREFLIGHT_DIR, W_OK, why);
        return;
    }
    preflight_dirname(dir, parent, sizeof(parent));
    (void)preflight_path(fs, r, level, key, parent, PREFLIGHT_DIR, W_OK, why);
}

/* The directory that will hold @path must exist and be writable. */
static void
preflight_parent(const struct preflight_fs *fs, struct preflight_report *r,
                 enum preflight_level level, const char *key, const char *path, const char *why,
                 bool creatable)
{
    char dir[CONFIG_PATH_MAX];

    if (!path || !path[0]) {
        preflight_add(r, level, key, "", "not set, but %s", why);
        return;
    }
    preflight_dirname(path, dir, sizeof(dir));
    if (creatable)
        preflight_dir_or_parent(fs, r, level, key, dir, why);
    else
        (void)preflight_path(fs, r, level, key, dir, PREFLIGHT_DIR, W_OK, why);
}

/* Which enforcing actions any rule asks for. */
static uint32_t
preflight_actions(const struct config *cfg)
{
    uint32_t a = 0;

    for (size_t i = 0; i < cfg->nrules; i++)
        a |= cfg->rules[i].actions;
    return a;
}

static void
preflight_log(const struct config *cfg, const struct preflight_fs *fs, struct preflight_report *r)
{
    enum preflight_level lv = preflight_level_of(cfg);
    static char sample[PREFLIGHT_SAMPLE];
    char dir[CONFIG_PATH_MAX];
    struct stat st;
    ssize_t n;
    int e;

    if (!cfg->log_file || !cfg->log_file[0]) {
        preflight_add(r, PREFLIGHT_ERROR, "log_file", "", "not set");
        return;
    }
    e = fs->stat(fs->ctx, cfg->log_file, &st);
    if (e == -ENOENT) {
        preflight_dirname(cfg->log_file, dir, sizeof(dir));
        if (!preflight_path(fs, r, PREFLIGHT_ERROR, "log_file", dir, PREFLIGHT_DIR, R_OK,
                            "the main log's directory"))
            return;
        preflight_add(r, lv, "log_file", cfg->log_file,
                      "does not exist: nothing will be counted until Exim writes it (is this "
                      "Exim's main log? Debian: /var/log/exim4/mainlog)");
        return;
    }
    if (!preflight_path(fs, r, PREFLIGHT_ERROR, "log_file", cfg->log_file, PREFLIGHT_FILE, R_OK,
                        "the Exim main log to follow"))
        return;
    n = fs->read_tail(fs->ctx, cfg->log_file, sample, sizeof(sample));
    if (n > 0)
        preflight_log_sample(cfg, sample, (size_t)n, r);
}

static void
preflight_exim(const struct config *cfg, const struct preflight_fs *fs, struct preflight_report *r,
               enum preflight_level lv, uint32_t actions)
{
    (void)actions;
    (void)preflight_path(fs, r, lv, "actions.exim_path", cfg->exim_path, PREFLIGHT_EXEC, X_OK,
                         "exim -Mf freezes and -Mt thaws queued mail");
    /* input/ appears with the first queued message: the spool itself must be there */
    (void)preflight_path(fs, r, lv, "actions.spool_dir", cfg->spool_dir, PREFLIGHT_DIR, R_OK,
                         "queued messages are confirmed in its input/*-H files before acting");
    if (cfg->exim_config)
        (void)preflight_path(fs, r, lv, "actions.exim_config", cfg->exim_config, PREFLIGHT_FILE,
                             R_OK, "passed to exim as -C");
}

void
preflight_run(const struct config *cfg, const struct preflight_fs *fs, struct preflight_report *r)
{
    enum preflight_level lv = preflight_level_of(cfg);
    uint32_t actions = preflight_actions(cfg);

    preflight_log(cfg, fs, r);
    /* the daemon's own files: needed in any mode */
    if (cfg->state_dir)
        preflight_dir_or_parent(fs, r, PREFLIGHT_ERROR, "state_dir", cfg->state_dir,
                                "the checkpoint and the action ledger live there");
    if (cfg->audit_log)
        preflight_parent(fs, r, PREFLIGHT_ERROR, "audit_log", cfg->audit_log,
                         "the audit log is written there", true);
    if (cfg->metrics_file)
        preflight_parent(fs, r, PREFLIGHT_WARNING, "metrics_file", cfg->metrics_file,
                         "the metrics textfile is written there", false);

    /* freezing is exim -Mf whatever the backend; a manual hold freezes too */
    preflight_exim(cfg, fs, r, lv, actions);
    switch (cfg->backend) {
    case CONFIG_BACKEND_EXIM:
        preflight_parent(fs, r, lv, "actions.blocklist_file", cfg->blocklist_file,
                         "the exim backend holds identities by listing them there", false);
        break;
    case CONFIG_BACKEND_CPANEL:
        if (preflight_path(fs, r, lv, "actions.backend", PREFLIGHT_CPANEL_ROOT, PREFLIGHT_DIR, 0,
                           "backend cpanel needs a cPanel host")) {
            (void)preflight_path(fs, r, lv, "actions.whmapi1_path", cfg->whmapi1_path,
                                 PREFLIGHT_EXEC, X_OK, "holds and suspends accounts");
            (void)preflight_path(fs, r, lv, "actions.uapi_path", cfg->uapi_path, PREFLIGHT_EXEC,
                                 X_OK, "holds and suspends mailboxes");
            (void)preflight_path(fs, r, lv, "actions.backend", PREFLIGHT_CPANEL_USERS,
                                 PREFLIGHT_DIR, R_OK, "cPanel's list of its users");
        }
        break;
    case CONFIG_BACKEND_COMMAND:
        (void)preflight_path(fs, r, lv, "actions.command", cfg->command_path, PREFLIGHT_EXEC, X_OK,
                             "the command backend runs it to hold, suspend and release");
        break;
    default:
        break;
    }
}

/* ---- the log's own evidence ------------------------------------------------------- */

/* Is [p, e) an arrival line ("... <id> <= ")? Returns the text after "<= " or NULL. */
static const char *
preflight_arrival(const char *p, const char *e)
{
    const char *a = p;

    /* "<= " after the message id: find it within the first 80 bytes */
    for (size_t i = 0; i < 80 && a + 3 <= e; i++, a++)
        if (a[0] == '<' && a[1] == '=' && a[2] == ' ' && a > p && a[-1] == ' ')
            return a + 3;
    return NULL;
}

static bool
preflight_has(const char *p, const char *e, const char *lit)
{
    return memmem(p, (size_t)(e - p), lit, strlen(lit)) != NULL;
}

/* Names of the rules of @scope (all scopes when SCOPE__MAX) that count one of @metrics. */
static void
preflight_rule_names(const struct config *cfg, const enum window_metric *metrics, size_t nm,
                     enum usertable_scope scope, char *buf, size_t size)
{
    size_t k = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < cfg->nrules; i++) {
        const struct config_rule *rl = &cfg->rules[i];
        bool hit = false;
        if (scope != SCOPE__MAX && rl->scope != scope)
            continue;
        for (size_t m = 0; m < nm; m++)
            hit = hit || rl->metric == metrics[m];
        if (scope != SCOPE__MAX)
            hit = true;
        if (!hit)
            continue;
        int w = snprintf(buf + k, size - k, "%s%s", k ? ", " : "", rl->name);
        if (w < 0 || (size_t)w >= size - k)
            break;
        k += (size_t)w;
    }
}

#define PREFLIGHT_MIN_ARRIVALS 20 /* fewer arrivals prove nothing about the selector */

void
preflight_log_sample(const struct config *cfg, const char *buf, size_t len,
                     struct preflight_report *r)
{
    static const enum window_metric rcpt_metrics[] = { WINDOW_RECIPIENTS, WINDOW_DOMAINS };
    size_t arrivals = 0, with_for = 0, local = 0, cwd = 0;
    const char *p = buf, *end = buf + len;
    char names[256];

    /* skip a partial first line when the sample starts mid-file */
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        const char *a = preflight_arrival(p, e);
        if (a) {
            arrivals++;
            if (preflight_has(a, e, " for "))
                with_for++;
            if (!preflight_has(a, e, " H=") && preflight_has(a, e, " P=local"))
                local++;
        } else if (preflight_has(p, e < p + 80 ? e : p + 80, "] cwd=") ||
                   preflight_has(p, e < p + 80 ? e : p + 80, " cwd=")) {
            cwd++;
        }
        p = nl ? nl + 1 : end;
    }
    if (arrivals < PREFLIGHT_MIN_ARRIVALS)
        return;
    if (with_for == 0) {
        preflight_rule_names(cfg, rcpt_metrics, N_ELEMS(rcpt_metrics), SCOPE__MAX, names,
                             sizeof(names));
        preflight_add(r, PREFLIGHT_WARNING, "log_file", cfg->log_file,
                      "none of the last %zu arrivals has a \"for\" list: add "
                      "+received_recipients to Exim's log_selector, or recipients and domains "
                      "rules cannot see%s%s",
                      arrivals, names[0] ? ": " : "", names);
    }
    if (local > 0 && cwd == 0) {
        preflight_rule_names(cfg, NULL, 0, SCOPE_SCRIPT, names, sizeof(names));
        preflight_add(r, PREFLIGHT_WARNING, "log_file", cfg->log_file,
                      "%zu local submissions but no cwd= line: add +arguments to Exim's "
                      "log_selector, or scripts cannot be told apart%s%s",
                      local, names[0] ? "; blind rules: " : "", names);
    }
}

void
preflight_format(const struct preflight_item *it, char *buf, size_t size)
{
    (void)snprintf(buf, size, "%s: %s: %s%s%s", it->level == PREFLIGHT_ERROR ? "error" : "warning",
                   it->key, it->path, it->path[0] ? ": " : "", it->msg);
}

/* ---- the real file system ---------------------------------------------------------- */

static int
preflight_real_stat(void *ctx, const char *path, struct stat *st)
{
    (void)ctx;
    return stat(path, st) == 0 ? 0 : -errno;
}

static int
preflight_real_access(void *ctx, const char *path, int mode)
{
    (void)ctx;
    return access(path, mode) == 0 ? 0 : -errno;
}

static ssize_t
preflight_real_read_tail(void *ctx, const char *path, char *buf, size_t size)
{
    struct stat st;
    ssize_t n;
    off_t off;
    int fd, e;

    (void)ctx;
    /* O_NONBLOCK: a FIFO put in the log's place must not stop the check */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        e = -errno;
        (void)close(fd);
        return e;
    }
    if (!S_ISREG(st.st_mode)) {
        (void)close(fd);
        return -EINVAL;
    }
    off = st.st_size > (off_t)size ? st.st_size - (off_t)size : 0;
    n = pread(fd, buf, size, off);
    e = n < 0 ? -errno : 0;
    (void)close(fd);
    if (n < 0)
        return e;
    /* drop the partial first line of a sample taken from the middle */
    if (off > 0) {
        char *nl = memchr(buf, '\n', (size_t)n);
        if (!nl)
            return 0;
        size_t skip = (size_t)(nl + 1 - buf);
        memmove(buf, nl + 1, (size_t)n - skip);
        n -= (ssize_t)skip;
    }
    return n;
}

const struct preflight_fs preflight_fs_real = {
    .ctx = NULL,
    .stat = preflight_real_stat,
    .access = preflight_real_access,
    .read_tail = preflight_real_read_tail,
};
