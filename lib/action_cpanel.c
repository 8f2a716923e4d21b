/*
 * action_cpanel.c - backend for cPanel & WHM: whmapi1 for accounts, uapi for mailboxes
 * (cpanel.md §2).
 *
 * Owns: the argv of each call, checking the current state first, and deciding success
 * from the JSON result. Does not own: the state files themselves (cPanel writes them
 * under a lock together with per-account records; we only read them).
 *
 *   account (and script: its user)  whmapi1 --output=json hold_outgoing_email user=ACCT
 *                                    (suspend_outgoing_email, release_outgoing_email,
 *                                     unsuspend_outgoing_email)
 *   mailbox                          uapi --user=ACCT --output=json Email hold_outgoing
 *                                    email=BOX (suspend_outgoing, release_outgoing,
 *                                    unsuspend_outgoing)
 *
 * Before acting, /etc/outgoing_mail_hold_users or /etc/outgoing_mail_suspended_users is
 * read the way Exim's lsearch reads it (§2.4): if the identity, or for a mailbox its
 * account, is listed already, someone else did it: ACTION_BE_ALREADY, and release will not
 * undo it. Before undoing, the file is read again: if our entry is gone (an administrator
 * released it), there is nothing to do. Success: exit 0 and metadata.result == 1 (WHM API
 * 1) or result.status == 1 (UAPI); anything else, including output that is not JSON, is a
 * failure whose text is logged. The JSON scanner is deliberately small and bounded: it
 * finds the first numeric value of a key, which is unambiguous in these outputs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action_backend.h"
#include "util.h"

enum cpanel_op { CP_HOLD, CP_SUSPEND, CP_RELEASE, CP_UNSUSPEND };

struct cpanel_call {
    action_be_done_fn done;
    void *ctx;
    bool uapi;
};

/* First numeric value of "@key" in @json. Returns 0 or -ENOENT. */
static int
cpanel_json_int(const char *json, const char *key, long *ret)
{
    char pat[64];
    size_t plen;
    const char *p = json;

    plen = (size_t)snprintf(pat, sizeof(pat), "\"%s\"", key);
    while ((p = strstr(p, pat)) != NULL) {
        const char *q = p + plen;
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
            q++;
        if (*q == ':') {
            q++;
            while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
                q++;
            if (*q >= '0' && *q <= '9') {
                long v = 0;
                for (int n = 0; *q >= '0' && *q <= '9' && n < 9; q++, n++)
                    v = v * 10 + (*q - '0');
                *ret = v;
                return 0;
            }
        }
        p += plen;
    }
    return -ENOENT;
}

/* First string value of "@key" (or first string of an array value) into @buf. */
static void
cpanel_json_str(const char *json, const char *key, char *buf, size_t size)
{
    char pat[64];
    const char *p;
    size_t n = 0;

    buf[0] = '\0';
    (void)snprintf(pat, sizeof(pat), "\"%s\"", key);
    p = strstr(json, pat);
    if (!p)
        return;
    p += strlen(pat);
    while (*p == ' ' || *p == ':' || *p == '[')
        p++;
    if (*p != '"')
        return;
    for (p++; *p && *p != '"' && n + 1 < size; p++) {
        if (*p == '\\' && p[1])
            p++;
        buf[n++] = ((unsigned char)*p < 0x20) ? ' ' : *p;
    }
    buf[n] = '\0';
}

static void
cpanel_done(void *ctx, const struct spawn_result *res)
{
    struct cpanel_call *c = ctx;
    char detail[256] = "", why[200];
    long v = 0;
    int code = -EIO;

    if (res->err < 0 || res->timed_out || !res->exited || res->exit_code != 0) {
        (void)snprintf(detail, sizeof(detail), "%s %s%s", c->uapi ? "uapi" : "whmapi1",
                       res->err < 0     ? "could not be started: "
                       : res->timed_out ? "timed out"
                       : res->signaled  ? "was killed by a signal"
                                        : "exited non-zero",
                       res->err < 0 ? strerror(-res->err) : "");
    } else if (c->uapi) {
        if (cpanel_json_int(res->out, "status", &v) < 0) {
            (void)snprintf(detail, sizeof(detail), "no result.status in the output");
        } else if (v != 1) {
            cpanel_json_str(res->out, "errors", why, sizeof(why));
            (void)snprintf(detail, sizeof(detail), "result.status=%ld: %s", v, why);
        } else {
            code = ACTION_BE_DONE;
        }
    } else {
        if (cpanel_json_int(res->out, "result", &v) < 0) {
            (void)snprintf(detail, sizeof(detail), "no metadata.result in the output");
        } else if (v != 1) {
            cpanel_json_str(res->out, "reason", why, sizeof(why));
            (void)snprintf(detail, sizeof(detail), "metadata.result=%ld: %s", v, why);
        } else {
            code = ACTION_BE_DONE;
        }
    }
    c->done(c->ctx, code, res, detail[0] ? detail : NULL);
    free(c);
}

static const char *
cpanel_state_file(const struct action_backend_env *env, enum cpanel_op op)
{
    return (op == CP_HOLD || op == CP_RELEASE) ? env->hold_users_file : env->suspended_users_file;
}

static int
cpanel_call(const struct action_backend_env *env, const struct action_target *t, enum cpanel_op op,
            action_be_done_fn done, void *ctx)
{
    static const char *const whm_fn[] = { "hold_outgoing_email", "suspend_outgoing_email",
                                          "release_outgoing_email", "unsuspend_outgoing_email" };
    static const char *const uapi_fn[] = { "hold_outgoing", "suspend_outgoing", "release_outgoing",
                                           "unsuspend_outgoing" };
    const char *file = cpanel_state_file(env, op);
    bool mailbox = t->scope == SCOPE_MAILBOX, undo = (op == CP_RELEASE || op == CP_UNSUSPEND);
    char fn[32], userarg[SPAWN_USER_MAX + sizeof("--user=")], boxarg[SPAWN_MAILBOX_MAX + 8];
    char json[] = "--output=json", email[] = "Email";
    char *argv[8];
    struct cpanel_call *c;
    int r;

    if (!t->account || !spawn_valid_user(t->account) || strcmp(t->account, "root") == 0 ||
        (mailbox && !spawn_valid_mailbox(t->id)))
        return -EINVAL;
    /* State first (cpanel.md §2.4): listed already means someone else did it. */
    r = action_list_contains(file, mailbox ? t->id : t->account);
    if (r < 0)
        return r;
    if (undo && r == 0)
        return ACTION_BE_DONE; /* nothing of ours left (released by someone else) */
    if (!undo && r == 1)
        return ACTION_BE_ALREADY;
    if (!undo && mailbox) {
        r = action_list_contains(file, t->account);
        if (r < 0)
            return r;
        if (r == 1)
            return ACTION_BE_ALREADY; /* the whole account is held/suspended already */
    }
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->done = done;
    c->ctx = ctx;
    c->uapi = mailbox;
    if (mailbox) {
        (void)snprintf(fn, sizeof(fn), "%s", uapi_fn[op]);
        (void)snprintf(userarg, sizeof(userarg), "--user=%s", t->account); /* length checked */
        (void)snprintf(boxarg, sizeof(boxarg), "email=%s", t->id);
        argv[0] = env->cfg->uapi_path;
        argv[1] = userarg;
        argv[2] = json;
        argv[3] = email;
        argv[4] = fn;
        argv[5] = boxarg;
        argv[6] = NULL;
    } else {
        (void)snprintf(fn, sizeof(fn), "%s", whm_fn[op]);
        (void)snprintf(userarg, sizeof(userarg), "user=%s", t->account);
        argv[0] = env->cfg->whmapi1_path;
        argv[1] = json;
        argv[2] = fn;
        argv[3] = userarg;
        argv[4] = NULL;
    }
    if (!argv[0]) {
        free(c);
        return -EINVAL;
    }
    r = spawner_run(env->spawner, argv, action_timeout_ms(env->cfg), cpanel_done, c);
    if (r < 0) {
        free(c);
        return r;
    }
    return ACTION_BE_PENDING;
}

static int
cpanel_hold(const struct action_backend_env *env, const struct action_target *t,
            action_be_done_fn done, void *ctx)
{
    return cpanel_call(env, t, CP_HOLD, done, ctx);
}

static int
cpanel_suspend(const struct action_backend_env *env, const struct action_target *t,
               action_be_done_fn done, void *ctx)
{
    return cpanel_call(env, t, CP_SUSPEND, done, ctx);
}

static int
cpanel_release(const struct action_backend_env *env, const struct action_target *t, uint32_t what,
               action_be_done_fn done, void *ctx)
{
    return cpanel_call(env, t, (what & CONFIG_ACTION_SUSPEND) ? CP_UNSUSPEND : CP_RELEASE, done,
                       ctx);
}

static int
cpanel_query(const struct action_backend_env *env, const struct action_target *t, uint32_t *ret)
{
    const char *key = t->scope == SCOPE_MAILBOX ? t->id : t->account;
    uint32_t bits = 0;
    int r;

    if (!key)
        return -EINVAL;
    for (int k = 0; k < 2; k++) {
        const char *file = k ? env->suspended_users_file : env->hold_users_file;
        r = action_list_contains(file, key);
        if (r == 0 && t->scope == SCOPE_MAILBOX && t->account)
            r = action_list_contains(file, t->account);
        if (r < 0)
            return r;
        if (r == 1)
            bits |= k ? CONFIG_ACTION_SUSPEND : CONFIG_ACTION_HOLD;
    }
    *ret = bits;
    return 0;
}

const struct action_backend action_backend_cpanel = {
    .name = "cpanel",
    .hold = cpanel_hold,
    .suspend = cpanel_suspend,
    .release = cpanel_release,
    .query = cpanel_query,
};
