/*
 * action_probe.c - a small CLI over lib/action for the end-to-end tests (not a ctest).
 *
 *   action_probe [options] trip <rule> <scope> <id> <freeze,hold,suspend> [msgid...]
 *   action_probe [options] freeze-more <scope> <id> msgid...
 *   action_probe [options] release <scope> <id>
 *   action_probe [options] active <scope> <id>        exit 0 if active, 1 if not
 *
 * options: --state-dir D --spool-dir D --exim PATH --exim-config FILE --blocklist FILE
 *          --backend exim|cpanel|command --whmapi1 P --uapi P --command P
 *          --hold-file F --suspended-file F --account A --monitor --batch N --max-per-hour N
 *          --ordered (a trip is an operator's order: it acts without spool confirmation)
 *
 * Audit lines go to stdout, logs to stderr. It runs the real spawner on libev's default
 * loop until every request has finished, then exits 0 when the last request succeeded.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "action.h"
#include "log.h"

struct probe {
    int failed;
    bool finished;
};

static void
probe_audit(void *ctx, const char *line)
{
    (void)ctx;
    printf("%s\n", line);
    fflush(stdout);
}

static void
probe_done(void *ctx, const struct action_outcome *o)
{
    struct probe *p = ctx;
    p->finished = true;
    if (o->failed || o->backend_err)
        p->failed = 1;
}

static uint32_t
probe_actions(const char *s)
{
    uint32_t m = 0;
    if (strstr(s, "freeze"))
        m |= CONFIG_ACTION_FREEZE;
    if (strstr(s, "hold"))
        m |= CONFIG_ACTION_HOLD;
    if (strstr(s, "suspend"))
        m |= CONFIG_ACTION_SUSPEND;
    return m;
}

static int
probe_usage(void)
{
    fputs("usage: action_probe [options] trip|freeze-more|release|active ...\n", stderr);
    return 2;
}

int
main(int argc, char **argv)
{
    struct config cfg;
    struct action_params ap;
    struct action *a = NULL;
    struct probe pr = { 0, false };
    struct ev_loop *loop = EV_DEFAULT;
    struct spawner *sp;
    const char *state_dir = "/tmp", *account = NULL;
    enum usertable_scope scope;
    bool ordered = false;
    int i, r;

    log_setup(LOG_SINK_STDERR, LOG_DEBUG);
    memset(&cfg, 0, sizeof(cfg));
    memset(&ap, 0, sizeof(ap));
    cfg.exim_path = (char *)(uintptr_t) "/usr/sbin/exim";
    cfg.spool_dir = (char *)(uintptr_t) "/var/spool/exim";
    cfg.blocklist_file = (char *)(uintptr_t) "/etc/exim/floodgate-blocklist";
    cfg.whmapi1_path = (char *)(uintptr_t) "/usr/local/cpanel/bin/whmapi1";
    cfg.uapi_path = (char *)(uintptr_t) "/usr/local/cpanel/bin/uapi";
    cfg.action_timeout_ms = 30000;
    cfg.freeze_batch = 50;
    cfg.max_actions_per_hour = 100;
    for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(o, "--monitor") == 0) {
            cfg.mode = CONFIG_MODE_MONITOR;
            continue;
        }
        if (strcmp(o, "--ordered") == 0) { /* an operator's order: no spool confirmation */
            ordered = true;
            continue;
        }
        if (!v)
            return probe_usage();
        i++;
        if (strcmp(o, "--state-dir") == 0)
            state_dir = v;
        else if (strcmp(o, "--spool-dir") == 0)
            cfg.spool_dir = argv[i];
        else if (strcmp(o, "--exim") == 0)
            cfg.exim_path = argv[i];
        else if (strcmp(o, "--exim-config") == 0)
            ap.exim_config = v;
        else if (strcmp(o, "--blocklist") == 0)
            cfg.blocklist_file = argv[i];
        else if (strcmp(o, "--whmapi1") == 0)
            cfg.whmapi1_path = argv[i];
        else if (strcmp(o, "--uapi") == 0)
            cfg.uapi_path = argv[i];
        else if (strcmp(o, "--command") == 0)
            cfg.command_path = argv[i];
        else if (strcmp(o, "--hold-file") == 0)
            ap.hold_users_file = v;
        else if (strcmp(o, "--suspended-file") == 0)
            ap.suspended_users_file = v;
        else if (strcmp(o, "--account") == 0)
            account = v;
        else if (strcmp(o, "--batch") == 0)
            cfg.freeze_batch = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(o, "--max-per-hour") == 0)
            cfg.max_actions_per_hour = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(o, "--backend") == 0) {
            ap.backend = action_backend_lookup(v);
            if (!ap.backend)
                return probe_usage();
        } else
            return probe_usage();
    }
    if (argc - i < 3)
        return probe_usage();
    {
        const char *sc = argv[i + (strcmp(argv[i], "trip") == 0 ? 2 : 1)];
        if (strcmp(argv[i], "trip") == 0 && argc - i < 5)
            return probe_usage();
        if (strcmp(sc, "mailbox") == 0)
            scope = SCOPE_MAILBOX;
        else if (strcmp(sc, "account") == 0)
            scope = SCOPE_ACCOUNT;
        else if (strcmp(sc, "script") == 0)
            scope = SCOPE_SCRIPT;
        else
            return probe_usage();
    }
    sp = spawner_new(loop, state_dir, &r);
    if (!sp) {
        fprintf(stderr, "spawner_new: %s\n", strerror(-r));
        return 1;
    }
    ap.loop = loop;
    ap.clock = &clock_real;
    ap.cfg = &cfg;
    ap.state_dir = state_dir;
    ap.spawner = sp;
    ap.audit = probe_audit;
    ap.done = probe_done;
    ap.done_ctx = &pr;
    r = action_open(&ap, &a);
    if (r < 0) {
        fprintf(stderr, "action_open: %s\n", strerror(-r));
        spawner_free(sp);
        return 1;
    }
    ev_run(loop, 0); /* resumed steps, if any */
    if (strcmp(argv[i], "trip") == 0) {
        struct action_request req = {
            .rule = argv[i + 1],
            .scope = scope,
            .id = argv[i + 3],
            .account = account,
            .actions = probe_actions(argv[i + 4]),
            .msgids = (const char *const *)(argv + i + 5),
            .nmsgids = (size_t)(argc - i - 5),
            .ordered = ordered,
        };
        r = action_trip(a, &req);
    } else if (strcmp(argv[i], "freeze-more") == 0) {
        r = action_freeze_more(a, scope, argv[i + 2], (const char *const *)(argv + i + 3),
                               (size_t)(argc - i - 3));
    } else if (strcmp(argv[i], "release") == 0) {
        r = action_release(a, scope, argv[i + 2]);
    } else if (strcmp(argv[i], "active") == 0) {
        r = action_is_active(a, scope, argv[i + 2]) ? 0 : 1;
        action_free(a);
        spawner_free(sp);
        return r;
    } else {
        r = -EINVAL;
    }
    if (r < 0) {
        fprintf(stderr, "action_probe: %s: %s\n", argv[i], strerror(-r));
        pr.failed = 1;
    }
    ev_run(loop, 0);
    action_free(a);
    spawner_free(sp);
    return pr.failed;
}
