#ifndef FLOODGATE_SPAWN_H
#define FLOODGATE_SPAWN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;

#define SPAWN_OUTPUT_MAX 4096 /* bytes of stdout and of stderr kept (STYLE.md), each */
#define SPAWN_ARGV_MAX   1024 /* arguments per command, argv[0] included */
#define SPAWN_PATH       "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* What became of one command. */
struct spawn_result {
    int err;     /* 0, or -errno when the command could not be started at all */
    bool exited; /* exited normally: see exit_code */
    int exit_code;
    bool signaled; /* killed by a signal: see signo */
    int signo;
    bool timed_out;                 /* we killed its process group after the timeout */
    char out[SPAWN_OUTPUT_MAX + 1]; /* first bytes of stdout, NUL-terminated */
    size_t out_len;
    bool out_truncated;
    char err_text[SPAWN_OUTPUT_MAX + 1]; /* first bytes of stderr, NUL-terminated */
    size_t err_len;
    bool err_truncated;
};

/* True when the command ran and exited with status 0 in time. */
bool spawn_result_ok(const struct spawn_result *r);
/* "exit 0", "exit 3", "signal 9", "timeout", "spawn failed: ..." into @buf. */
void spawn_result_describe(const struct spawn_result *r, char *buf, size_t size);

/*
 * Called once per command from the loop (or, for -errno spawn failures, never: run()
 * returns the error instead). Borrows @r for the call only.
 */
typedef void (*spawn_done_fn)(void *ctx, const struct spawn_result *r);

/*
 * A way to run commands. The real one (spawner_new) uses posix_spawn and libev; tests
 * substitute a recording fake that fills the same table.
 *
 * run(): @argv is NULL-terminated, argv[0] an absolute path; it is borrowed for the call
 * only (copied into the child). @timeout_ms > 0. Returns 0 and later calls @done exactly
 * once with @ctx, or returns -errno (-EINVAL bad argv, -ENOMEM, spawn errors) and never
 * calls @done. free() kills (SIGKILL to the group) and forgets every running command
 * without calling their callbacks.
 */
struct spawner {
    int (*run)(struct spawner *s, char *const argv[], int64_t timeout_ms, spawn_done_fn done,
               void *ctx);
    void (*free)(struct spawner *s);
};

static inline int
spawner_run(struct spawner *s, char *const argv[], int64_t timeout_ms, spawn_done_fn done,
            void *ctx)
{
    return s->run(s, argv, timeout_ms, done, ctx);
}

static inline void
spawner_free(struct spawner *s)
{
    if (s)
        s->free(s);
}

/*
 * The real spawner on @loop, which must be libev's default loop (only it has child
 * watchers). Children start in @cwd (borrowed; NULL: "/"), with stdin on /dev/null, their own
 * process group, default signal dispositions and an empty signal mask, and the environment
 * PATH=SPAWN_PATH LANG=C LC_ALL=C only. Returns owned (spawner_free) or NULL (-ENOMEM, or
 * @loop is not the default loop: *ret_err says which when non-NULL).
 */
struct spawner *spawner_new(struct ev_loop *loop, const char *cwd, int *ret_err);

/*
 * Validators for arguments that come from log text (STYLE.md "Running commands"). None
 * accepts an empty string, a leading '-' or control characters; only spawn_valid_text()
 * accepts spaces.
 */
#define SPAWN_USER_MAX    32  /* cPanel account names are at most 16; system users 32 */
#define SPAWN_MAILBOX_MAX 254 /* RFC 5321 path limit less the brackets */
#define SPAWN_MSGID_MAX   23  /* Exim 4.97+ ids: 6-11-4 */
#define SPAWN_TEXT_MAX    1024

/* Account or login: [a-z_][a-z0-9_.-]* up to SPAWN_USER_MAX (lower case only, as cPanel). */
bool spawn_valid_user(const char *s);
/* local@domain: dot-atom local part characters, domain [A-Za-z0-9.-] with a dot or not. */
bool spawn_valid_mailbox(const char *s);
/* Exim message id: base62 6-6-2 (up to 4.96) or 6-11-4 (4.97 and later). */
bool spawn_valid_msgid(const char *s);
/* Free text (rule names, script ids): printable ASCII and spaces, no '-' first. */
bool spawn_valid_text(const char *s);

#endif
