#ifndef FLOODGATE_ACTION_BACKEND_H
#define FLOODGATE_ACTION_BACKEND_H

/*
 * Internal to lib/action*.c: the backend table (STYLE.md, OpenSMTPD's table_backend) and
 * the helpers the backends share.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "spawn.h"
#include "usertable.h"

/* What a backend gets from lib/action. Borrowed for the call. */
struct action_backend_env {
    const struct config *cfg;
    struct spawner *spawner;
    const char *hold_users_file;
    const char *suspended_users_file;
};

/* The identity a backend acts on; all validated by lib/action before any backend sees it. */
struct action_target {
    enum usertable_scope scope;
    const char *id;      /* mailbox (lower case), account, or "user:/dir" */
    const char *account; /* the owning account: for an account itself and for a script, the
                          * user; for a mailbox as given by the caller (may be NULL) */
    const char *rule;
};

/* Result codes of a backend step (returned directly or passed to the callback). */
#define ACTION_BE_PENDING 0 /* returned only: the callback follows */
#define ACTION_BE_DONE    1 /* applied (or undone) */
#define ACTION_BE_ALREADY 2 /* already in that state, not by us: do not undo it later */

/*
 * @code: ACTION_BE_DONE, ACTION_BE_ALREADY or -errno. @res: the command's result, or NULL
 * when no command ran. @detail: short text for logs ("metadata.result=0: reason"), or NULL.
 */
typedef void (*action_be_done_fn)(void *ctx, int code, const struct spawn_result *res,
                                  const char *detail);

/*
 * hold/suspend/release return ACTION_BE_PENDING (callback later, exactly once), or a
 * result code directly (no callback). release undoes @what (CONFIG_ACTION_HOLD or
 * CONFIG_ACTION_SUSPEND). query writes the CONFIG_ACTION_HOLD/SUSPEND bits now in force for
 * the target (synchronous; -ENOTSUP when the backend cannot tell).
 */
struct action_backend {
    const char *name;
    int (*hold)(const struct action_backend_env *env, const struct action_target *t,
                action_be_done_fn done, void *ctx);
    int (*suspend)(const struct action_backend_env *env, const struct action_target *t,
                   action_be_done_fn done, void *ctx);
    int (*release)(const struct action_backend_env *env, const struct action_target *t,
                   uint32_t what, action_be_done_fn done, void *ctx);
    int (*query)(const struct action_backend_env *env, const struct action_target *t,
                 uint32_t *ret);
};

extern const struct action_backend action_backend_exim;
extern const struct action_backend action_backend_cpanel;
extern const struct action_backend action_backend_command;

/*
 * Is @key listed in an lsearch-style file (cpanel.md §2.4: key up to the first ':' or white
 * space, case-insensitive, '#' and blank lines skipped)? Returns 1, 0 (also when the file
 * does not exist), or -errno.
 */
int action_list_contains(const char *path, const char *key);

/*
 * The exim blocklist's key for @t, as conf/exim-acl.conf looks it up (lib/action_exim.c):
 * the lower-cased mailbox, the account, or a script's quoted "user:/dir" with control bytes
 * as \xHH. Returns 0 or -EINVAL (no key, or longer than @size).
 */
#define ACTION_EXIM_KEY_MAX (2 * SPAWN_TEXT_MAX + 4)
int action_exim_key(const struct action_target *t, char *key, size_t size);

/* Timeout for one backend or exim command. */
int64_t action_timeout_ms(const struct config *cfg);

#endif
