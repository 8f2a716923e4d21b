/*
 * action_command.c - backend that runs the operator's executable (cfg->command_path).
 *
 * The documented interface, one argv element each, never through a shell:
 *
 *     <command_path> hold|suspend|release <scope> <identity> <rule>
 *
 * <scope> is mailbox, account or script; <identity> the mailbox address (lower case),
 * the account name, or "user:/dir" for a script (may contain spaces; never starts with
 * '-'; a directory with bytes outside printable ASCII comes with each such byte and '%'
 * as %XX); <rule> the rule that tripped. "release" undoes whatever hold or suspend floodgate
 * asked for earlier. The command runs as root with stdin on /dev/null, the environment
 * PATH, LANG=C and LC_ALL=C only, its own process group, cfg->action_timeout_ms to finish.
 * Exit status 0: done. Exit status 3: it was already in force, not by floodgate (a later
 * release will not ask to undo it). Anything else is a failure; the first 4 KiB of its
 * stdout and stderr are logged and audited.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "action_backend.h"

#define COMMAND_EXIT_ALREADY 3

struct command_call {
    action_be_done_fn done;
    void *ctx;
};

static void
command_done(void *ctx, const struct spawn_result *res)
{
    struct command_call *c = ctx;
    int code = spawn_result_ok(res)                                      ? ACTION_BE_DONE
               : (res->exited && res->exit_code == COMMAND_EXIT_ALREADY) ? ACTION_BE_ALREADY
                                                                         : -EIO;
    c->done(c->ctx, code, res, NULL);
    free(c);
}

/*
 * A script identity whose directory holds bytes outside printable ASCII: every such byte
 * and '%' as %XX (as in the action ledger). 0, or -E2BIG when it does not fit.
 */
static int
command_escape(const char *s, char *buf, size_t size)
{
    size_t n = 0;

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (n + 4 > size)
            return -E2BIG;
        if (c < 0x20 || c >= 0x7f || c == '%')
            n += (size_t)snprintf(buf + n, size - n, "%%%02X", c);
        else
            buf[n++] = (char)c;
    }
    buf[n] = '\0';
    return 0;
}

static int
command_run(const struct action_backend_env *env, const char *op, const struct action_target *t,
            action_be_done_fn done, void *ctx)
{
    struct command_call *c;
    char *argv[6];
    int r;

    char shown[SPAWN_TEXT_MAX + 1];
    const char *id = t->id;

    /* a script directory that is not printable ASCII reaches the command escaped */
    if (t->scope == SCOPE_SCRIPT && id && !spawn_valid_text(id)) {
        if (command_escape(id, shown, sizeof(shown)) < 0)
            return -EINVAL;
        id = shown;
    }
    if (!env->cfg->command_path || env->cfg->command_path[0] != '/' || !spawn_valid_text(id) ||
        !spawn_valid_text(t->rule))
        return -EINVAL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->done = done;
    c->ctx = ctx;
    argv[0] = env->cfg->command_path;
    argv[1] = (char *)(uintptr_t)op;
    argv[2] = (char *)(uintptr_t)usertable_scope_name(t->scope);
    argv[3] = (char *)(uintptr_t)id;
    argv[4] = (char *)(uintptr_t)t->rule;
    argv[5] = NULL;
    r = spawner_run(env->spawner, argv, action_timeout_ms(env->cfg), command_done, c);
    if (r < 0) {
        free(c);
        return r;
    }
    return ACTION_BE_PENDING;
}

static int
command_hold(const struct action_backend_env *env, const struct action_target *t,
             action_be_done_fn done, void *ctx)
{
    return command_run(env, "hold", t, done, ctx);
}

static int
command_suspend(const struct action_backend_env *env, const struct action_target *t,
                action_be_done_fn done, void *ctx)
{
    return command_run(env, "suspend", t, done, ctx);
}

static int
command_release(const struct action_backend_env *env, const struct action_target *t, uint32_t what,
                action_be_done_fn done, void *ctx)
{
    (void)what;
    return command_run(env, "release", t, done, ctx);
}

static int
command_query(const struct action_backend_env *env, const struct action_target *t, uint32_t *ret)
{
    (void)env;
    (void)t;
    (void)ret;
    return -ENOTSUP;
}

const struct action_backend action_backend_command = {
    .name = "command",
    .hold = command_hold,
    .suspend = command_suspend,
    .release = command_release,
    .query = command_query,
};
