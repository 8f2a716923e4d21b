/*
 * check_action.c - lib/action with a recording fake spawner (order of effects, monitor
 * mode, circuit breaker, ledger across a restart, exact thaw, batching, confirmation), and
 * the cpanel backend against stand-in whmapi1/uapi scripts run by the real spawner
 * (tests/e2e/cpanel-stub/: cPanel itself cannot run here).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>
#include <ev.h>

#include "action.h"
#include "trips.h"
#include "clock.h"
#include "config.h"
#include "fake_spawner.h"
#include "log.h"
#include "state.h"
#include "testdir.h"
#include "testrun.h"
#include "util.h"

#define T0 1795456990000LL

/* Under ASan, an impossible allocation returns NULL as it does in production instead of
 * aborting: test_action_trip_enomem_leaves_nothing needs job_collect() to see it. */
const char *__asan_default_options(void);
const char *
__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

static char dir[256], spool[300], state[300], blocklist[300];
static char stubdir[400], holdf[400], suspf[400], argvlog[400];
static struct clock_fake fclock;
static struct clock clk;
static struct config *cfg;
static struct fake_spawner *fs;
static char events[64][48]; /* "freeze", "hold", ..., "alert" in order */
static size_t nevents;
static char audit[64][2048];
static size_t naudit;
static struct action_outcome last;
static int ndone;
static char audit_omitted[256];            /* the first "..._omitted":N seen */
static const char *spoil_match, *spoil_id; /* see spoil_run() */

static bool file_has(const char *path, const char *needle);

static void
f_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void
test_config_free(struct config *c)
{
    if (!c)
        return;
    free(c->exim_path);
    free(c->spool_dir);
    free(c->blocklist_file);
    free(c->whmapi1_path);
    free(c->uapi_path);
    free(c->command_path);
    free(c->exim_config);
    free(c);
}

static void
add_event(const char *e)
{
    if (nevents < N_ELEMS(events))
        (void)snprintf(events[nevents++], sizeof(events[0]), "%s", e);
}

static void
on_audit(void *ctx, const char *line)
{
    (void)ctx;
    const char *om = strstr(line, "_omitted\":");
    if (om && !audit_omitted[0]) {
        ck_assert_int_eq(line[strlen(line) - 1], '}');
        (void)snprintf(audit_omitted, sizeof(audit_omitted), "%.*s", (int)strcspn(om, ",}"), om);
    }
    if (naudit < N_ELEMS(audit))
        (void)snprintf(audit[naudit++], sizeof(audit[0]), "%s", line);
    const char *ev = strstr(line, "\"event\":\"");
    if (ev) {
        char name[48];
        size_t n = strcspn(ev + 9, "\"");
        if (n < sizeof(name)) {
            memcpy(name, ev + 9, n);
            name[n] = '\0';
            if (strcmp(name, "freeze") == 0 || strcmp(name, "hold") == 0 ||
                strcmp(name, "suspend") == 0 || strcmp(name, "thaw") == 0 ||
                strcmp(name, "unhold") == 0 || strcmp(name, "unsuspend") == 0)
                add_event(name);
        }
    }
}

static void
on_done(void *ctx, const struct action_outcome *o)
{
    (void)ctx;
    last = *o;
    ndone++;
    add_event("alert");
}

static bool
audit_has(const char *needle)
{
    for (size_t i = 0; i < naudit; i++)
        if (strstr(audit[i], needle))
            return true;
    return false;
}

static void
write_h(const char *id, const char *opts)
{
    char path[512];
    (void)snprintf(path, sizeof(path), "%s/input/%s-H", spool, id);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s-H\nDebian-exim 102 105\n<x@example.org>\n1795456990 0\n%sXX\n1\nr@x\n\n", id,
            opts);
    fclose(f);
}

static void
setup(void)
{
    testdir_make(dir, sizeof(dir), "check_action");
    (void)snprintf(spool, sizeof(spool), "%s/spool", dir);
    (void)snprintf(state, sizeof(state), "%s/state", dir);
    (void)snprintf(blocklist, sizeof(blocklist), "%s/blocklist", dir);
    ck_assert_int_eq(mkdir(spool, 0700), 0);
    char in[400];
    (void)snprintf(in, sizeof(in), "%s/input", spool);
    ck_assert_int_eq(mkdir(in, 0700), 0);
    ck_assert_int_eq(mkdir(state, 0700), 0);
    clk = clock_fake_init(&fclock, T0);
    cfg = calloc(1, sizeof(*cfg));
    ck_assert_ptr_nonnull(cfg);
    cfg->mode = CONFIG_MODE_ENFORCE;
    cfg->backend = CONFIG_BACKEND_EXIM;
    cfg->exim_path = strdup("/usr/sbin/exim");
    cfg->spool_dir = strdup(spool);
    cfg->blocklist_file = strdup(blocklist);
    cfg->whmapi1_path = strdup("/usr/local/cpanel/bin/whmapi1");
    cfg->uapi_path = strdup("/usr/local/cpanel/bin/uapi");
    cfg->action_timeout_ms = 10000;
    cfg->freeze_batch = 50;
    cfg->max_actions_per_hour = 100;
    fs = fake_spawner_new();
    nevents = naudit = 0;
    audit_omitted[0] = '\0';
    spoil_match = spoil_id = NULL;
    ndone = 0;
    memset(&last, 0, sizeof(last));
    log_setup(LOG_SINK_STDERR, LOG_WARNING);
    /* mailbox box@example.com over SMTP AUTH; account acct1 locally; another mailbox */
    write_h("1xVYNi-0001Xt-01", "--auth_id box@example.com\n-host_address [127.0.0.1]:1\n");
    write_h("1xVYNi-0001Xt-02", "--auth_id Box@Example.com\n-host_address [127.0.0.1]:2\n");
    write_h("1xVYNi-0001Xt-03", "--auth_id other@example.com\n-host_address [127.0.0.1]:3\n");
    write_h("1xVYNi-0001Xt-04", "--ident acct1\n-auth_id acct1\n-local\n");
    write_h("1xVYNi-0001Xt-05", "--ident acct1\n-auth_id acct1\n-local\n");
}

static void
teardown(void)
{
    spawner_free(&fs->ops);
    test_config_free(cfg);
    testdir_remove(dir);
}

/* An action over the fixture's clock, config, state dir and recorders; @p adds the rest. */
static struct action *
open_action_from(struct action_params p, struct spawner *sp)
{
    struct action *a = NULL;

    p.clock = &clk;
    p.cfg = cfg;
    p.state_dir = state;
    p.spawner = sp;
    p.audit = on_audit;
    p.done = on_done;
    ck_assert_int_eq(action_open(&p, &a), 0);
    return a;
}

static struct action *
open_action(struct spawner *sp, const struct action_backend *be)
{
    return open_action_from((struct action_params){ .backend = be }, sp);
}

/*
 * A spawner over the recording fake that spoils some answers: a command whose recorded
 * line contains spoil_match gets exit status 1 and loses the exim lines naming spoil_id
 * (every line when spoil_id is NULL), as when exim fails or times out part way.
 */
struct spoil_call {
    spawn_done_fn done;
    void *ctx;
    bool spoil;
};

static void
spoil_result(struct spawn_result *r)
{
    char keep[SPAWN_OUTPUT_MAX + 1];
    size_t n = 0;

    r->exit_code = 1;
    for (char *line = r->out, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) + 1 : strlen(line);
        if (spoil_id && !memmem(line, len, spoil_id, strlen(spoil_id)) && n + len < sizeof(keep)) {
            memcpy(keep + n, line, len);
            n += len;
        }
        if (!nl)
            break;
    }
    memcpy(r->out, keep, n);
    r->out[n] = '\0';
    r->out_len = n;
}

static void
spoil_done(void *ctx, const struct spawn_result *r)
{
    struct spoil_call *c = ctx;
    struct spawn_result copy = *r;

    if (c->spoil)
        spoil_result(&copy);
    c->done(c->ctx, &copy);
    free(c);
}

static int
spoil_run(struct spawner *s, char *const argv[], int64_t timeout_ms, spawn_done_fn done, void *ctx)
{
    struct spoil_call *c = calloc(1, sizeof(*c));
    size_t before = fs->ncalls;
    int r;

    (void)s;
    ck_assert_ptr_nonnull(c);
    c->done = done;
    c->ctx = ctx;
    r = spawner_run(&fs->ops, argv, timeout_ms, spoil_done, c);
    if (r < 0) {
        free(c);
        return r;
    }
    c->spoil = spoil_match && fs->ncalls > before && strstr(fs->calls[before], spoil_match);
    return 0;
}

static void
spoil_free(struct spawner *s)
{
    (void)s;
}

static struct spawner spoiler = { .run = spoil_run, .free = spoil_free };

static const char *const box_ids[] = { "1xVYNi-0001Xt-01", "1xVYNi-0001Xt-02", "1xVYNi-0001Xt-03",
                                       "1xVYNi-0001Xt-09" /* gone */ };

static struct action_request box_req(uint32_t actions);

START_TEST(test_action_release_keeps_unthawed)
{
    struct action *a = open_action(&spoiler, NULL);
    struct action_request r = box_req(CONFIG_ACTION_FREEZE);
    const char *const *ids;

    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(last.frozen, 2);
    /* exim -Mt thaws 01 but fails on 02 */
    spoil_match = "-Mt";
    spoil_id = "1xVYNi-0001Xt-02";
    ck_assert_int_eq(action_release(a, SCOPE_MAILBOX, "box@example.com"), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(last.frozen, 1);
    ck_assert_uint_eq(last.failed, 1);
    ck_assert_uint_eq(last.remaining, 1);
    ck_assert(audit_has("\"event\":\"release_incomplete\""));
    ck_assert(action_is_active(a, SCOPE_MAILBOX, "box@example.com"));
    ck_assert_uint_eq(action_frozen_ids(a, SCOPE_MAILBOX, "box@example.com", &ids), 1);
    ck_assert_str_eq(ids[0], "1xVYNi-0001Xt-02");
    /* survives a restart, and a second release retries only what is left */
    action_free(a);
    a = open_action(&spoiler, NULL);
    spoil_match = NULL;
    ck_assert_int_eq(action_release(a, SCOPE_MAILBOX, "box@example.com"), 0);
    fake_spawner_flush(fs);
    ck_assert_str_eq(fs->calls[fs->ncalls - 1], "/usr/sbin/exim -Mt 1xVYNi-0001Xt-02");
    ck_assert_uint_eq(last.remaining, 0);
    ck_assert(!action_is_active(a, SCOPE_MAILBOX, "box@example.com"));
    ck_assert_uint_eq(action_frozen_ids(a, SCOPE_MAILBOX, "box@example.com", &ids), 0);
    action_free(a);
}
END_TEST

START_TEST(test_action_failed_undo_keeps_mail_frozen)
{
    struct action *a;
    struct action_request r = box_req(CONFIG_ACTION_FREEZE | CONFIG_ACTION_SUSPEND);
    const char *const *ids;

    cfg->backend = CONFIG_BACKEND_COMMAND;
    cfg->command_path = strdup("/usr/local/sbin/fg-act");
    a = open_action(&spoiler, NULL);
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(last.backend_done, CONFIG_ACTION_SUSPEND);
    /* the unsuspend fails: nothing may be thawed, the entry keeps its state */
    spoil_match = " release ";
    size_t before = fs->ncalls;
    ck_assert_int_eq(action_release(a, SCOPE_MAILBOX, "box@example.com"), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(fs->ncalls, before + 1);
    ck_assert_int_eq(fake_spawner_find(fs, "-Mt"), -1);
    ck_assert_int_lt(last.backend_err, 0);
    ck_assert(action_is_active(a, SCOPE_MAILBOX, "box@example.com"));
    ck_assert_uint_eq(action_frozen_ids(a, SCOPE_MAILBOX, "box@example.com", &ids), 2);
    ck_assert(audit_has("\"event\":\"release_incomplete\""));
    /* a repeated trip does not forget the suspension in force */
    ck_assert_int_eq(action_trip(a, &r), -EALREADY);
    fake_spawner_flush(fs);
    /* after a restart, the next release retries the unsuspend, then thaws */
    action_free(a);
    a = open_action(&spoiler, NULL);
    spoil_match = NULL;
    before = fs->ncalls;
    ck_assert_int_eq(action_release(a, SCOPE_MAILBOX, "box@example.com"), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(fs->ncalls, before + 2);
    ck_assert_str_eq(fs->calls[before], "/usr/local/sbin/fg-act release mailbox box@example.com "
                                        "mailbox-burst");
    ck_assert_str_eq(fs->calls[before + 1], "/usr/sbin/exim -Mt 1xVYNi-0001Xt-01 1xVYNi-0001Xt-02");
    ck_assert_uint_eq(last.backend_done, CONFIG_ACTION_SUSPEND);
    ck_assert(!action_is_active(a, SCOPE_MAILBOX, "box@example.com"));
    action_free(a);
}
END_TEST

static struct config *
config_copy(const struct config *c)
{
    struct config *n = calloc(1, sizeof(*n));

    ck_assert_ptr_nonnull(n);
    *n = *c;
    n->exim_path = strdup(c->exim_path);
    n->spool_dir = strdup(c->spool_dir);
    n->blocklist_file = c->blocklist_file ? strdup(c->blocklist_file) : NULL;
    n->whmapi1_path = c->whmapi1_path ? strdup(c->whmapi1_path) : NULL;
    n->uapi_path = c->uapi_path ? strdup(c->uapi_path) : NULL;
    n->command_path = c->command_path ? strdup(c->command_path) : NULL;
    n->exim_config = NULL;
    return n;
}

START_TEST(test_action_set_config_keeps_jobs)
{
    struct action *a = open_action(&fs->ops, NULL);
    struct action_request r = box_req(CONFIG_ACTION_FREEZE | CONFIG_ACTION_HOLD);
    const char *acct_ids[] = { "1xVYNi-0001Xt-04", "1xVYNi-0001Xt-05" };
    struct action_request r2 = { .rule = "acct",
                                 .scope = SCOPE_ACCOUNT,
                                 .id = "acct1",
                                 .actions = CONFIG_ACTION_FREEZE | CONFIG_ACTION_HOLD,
                                 .msgids = acct_ids,
                                 .nmsgids = 2 };
    struct config *next = config_copy(cfg), *bad;

    ck_assert_int_eq(action_trip(a, &r), 0); /* its exim -Mf is in flight */
    ck_assert_uint_eq(action_pending(a), 1);
    next->freeze_batch = 1;
    next->exim_config = strdup("/etc/exim_outgoing.conf");
    /* a backend change waits for an empty queue; an invalid config is refused */
    bad = config_copy(cfg);
    bad->backend = CONFIG_BACKEND_CPANEL;
    ck_assert_int_eq(action_set_config(a, bad), -EBUSY);
    free(bad->spool_dir);
    bad->spool_dir = NULL;
    bad->backend = CONFIG_BACKEND_EXIM;
    ck_assert_int_eq(action_set_config(a, bad), -EINVAL);
    test_config_free(bad);
    ck_assert_int_eq(action_set_config(a, next), 0);
    test_config_free(cfg); /* the caller frees the old config at once (ASan: no later use) */
    cfg = next;
    fake_spawner_flush(fs);
    ck_assert_int_eq(ndone, 1);
    ck_assert_uint_eq(last.frozen, 2);
    ck_assert_uint_eq(last.backend_done, CONFIG_ACTION_HOLD);
    ck_assert(action_is_active(a, SCOPE_MAILBOX, "box@example.com"));
    /* later jobs use the new batch size and exim_config */
    size_t before = fs->ncalls;
    ck_assert_int_eq(action_trip(a, &r2), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(fs->ncalls, before + 2);
    ck_assert_str_eq(fs->calls[before],
                     "/usr/sbin/exim -C /etc/exim_outgoing.conf -Mf 1xVYNi-0001Xt-04");
    ck_assert_str_eq(fs->calls[before + 1],
                     "/usr/sbin/exim -C /etc/exim_outgoing.conf -Mf 1xVYNi-0001Xt-05");
    /* with the queue empty the backend may change */
    bad = config_copy(cfg);
    bad->backend = CONFIG_BACKEND_CPANEL;
    ck_assert_int_eq(action_set_config(a, bad), 0);
    ck_assert_int_eq(action_set_config(a, cfg), 0);
    test_config_free(bad);
    action_free(a);
}
END_TEST

static void
copy_file(const char *from, const char *to)
{
    char buf[65536];
    FILE *in = fopen(from, "r"), *out;
    size_t n;

    ck_assert_ptr_nonnull(in);
    out = fopen(to, "w");
    ck_assert_ptr_nonnull(out);
    n = fread(buf, 1, sizeof(buf), in);
    ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
}

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* The cpanel backend on the recording spawner, its state files in the test directory. */
static struct action *
open_action_cpanel_files(struct spawner *sp)
{
    struct action_params p = {
        .clock = &clk,
        .cfg = cfg,
        .state_dir = state,
        .spawner = sp,
        .audit = on_audit,
        .done = on_done,
        .hold_users_file = holdf,
        .suspended_users_file = suspf,
    };
    struct action *a = NULL;

    (void)snprintf(holdf, sizeof(holdf), "%s/outgoing_mail_hold_users", dir);
    (void)snprintf(suspf, sizeof(suspf), "%s/outgoing_mail_suspended_users", dir);
    cfg->backend = CONFIG_BACKEND_CPANEL;
    ck_assert_int_eq(action_open(&p, &a), 0);
    return a;
}

START_TEST(test_action_restart_during_hold_is_ours)
{
    struct action *a = open_action_cpanel_files(&fs->ops);
    struct action_request r = box_req(CONFIG_ACTION_HOLD);
    char ledger[400], saved[400];

    (void)snprintf(ledger, sizeof(ledger), "%s/actions.ledger", state);
    (void)snprintf(saved, sizeof(saved), "%s/ledger.at-crash", dir);
    ck_assert_int_eq(action_trip(a, &r), 0);
    ck_assert_int_ge(fake_spawner_find(fs, "hold_outgoing"), 0); /* uapi in flight */
    copy_file(ledger, saved); /* the state a crash right now would leave */
    fake_spawner_flush(fs);
    action_free(a);

    /* restart: cPanel applied our hold before the crash; the resumed step hears "already" */
    copy_file(saved, ledger);
    write_file(holdf, "box@example.com\n");
    ndone = 0;
    a = open_action_cpanel_files(&fs->ops);
    ck_assert_int_eq(ndone, 1);
    ck_assert_str_eq(last.what, "resume");
    ck_assert(!last.backend_preexisting);
    ck_assert_uint_eq(last.backend_done, CONFIG_ACTION_HOLD);
    /* so the release undoes it */
    size_t before = fs->ncalls;
    ck_assert_int_eq(action_release(a, SCOPE_MAILBOX, "box@example.com"), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(fs->ncalls, before + 1);
    ck_assert_ptr_nonnull(
        strstr(fs->calls[before], "Email release_outgoing email=box@example.com"));
    action_free(a);

    /* a hold that really was someone else's stays "preexisting" */
    write_file(holdf, "box@example.com\nacct9\n");
    a = open_action_cpanel_files(&fs->ops);
    struct action_request r2 = {
        .rule = "r",
        .scope = SCOPE_ACCOUNT,
        .id = "acct9",
        .actions = CONFIG_ACTION_HOLD,
        .ordered = true /* nothing queued to confirm: an operator's order */
    };
    ck_assert_int_eq(action_trip(a, &r2), 0);
    fake_spawner_flush(fs);
    ck_assert(last.backend_preexisting);
    ck_assert_uint_eq(last.backend_done, 0);
    action_free(a);
}
END_TEST

START_TEST(test_action_restart_during_freeze_is_ours)
{
    struct action *a = open_action(&fs->ops, NULL);
    struct action_request r = box_req(CONFIG_ACTION_FREEZE | CONFIG_ACTION_HOLD);
    const char *const *ids;
    char ledger[400], saved[400];

    (void)snprintf(ledger, sizeof(ledger), "%s/actions.ledger", state);
    (void)snprintf(saved, sizeof(saved), "%s/ledger.at-crash", dir);
    ck_assert_int_eq(action_trip(a, &r), 0); /* exim -Mf 01 02 in flight */
    copy_file(ledger, saved);
    ck_assert(file_has(saved, "P\t1xVYNi-0001Xt-01\n"));
    fake_spawner_flush(fs);
    ck_assert(!file_has(ledger, "P\t")); /* settled once exim answered */
    action_free(a);

    /* restart: the -Mf had frozen 01 before the crash; resumed, exim says "already" */
    copy_file(saved, ledger);
    unlink(blocklist);
    fs->already_frozen = "1xVYNi-0001Xt-01";
    size_t before = fs->ncalls;
    a = open_action(&fs->ops, NULL);
    fake_spawner_flush(fs);
    ck_assert_str_eq(fs->calls[before], "/usr/sbin/exim -Mf 1xVYNi-0001Xt-01 1xVYNi-0001Xt-02");
    ck_assert_str_eq(last.what, "resume");
    ck_assert_uint_eq(last.frozen, 2);
    ck_assert_uint_eq(last.backend_done, CONFIG_ACTION_HOLD);
    ck_assert_uint_eq(action_frozen_ids(a, SCOPE_MAILBOX, "box@example.com", &ids), 2);
    ck_assert(!file_has(ledger, "P\t"));
    action_free(a);
}
END_TEST

START_TEST(test_action_audit_truncates_id_lists)
{
    char path[400];
    struct action *a;
    FILE *f;

    /* an identity with 3000 frozen ids: the release's audit line would pass 64 KiB */
    (void)snprintf(path, sizeof(path), "%s/actions.ledger", state);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "floodgate-ledger 2\nE\tacted\tmailbox\t0\t0\t0\t%lld\t0\tbox@example.com\t"
            "acct1\tr\t0\n",
            (long long)T0);
    for (int i = 0; i < 3000; i++)
        fprintf(f, "F\t1xVYNi-A%05d-00\n", i);
    fclose(f);
    a = open_action(&fs->ops, NULL);
    ck_assert_int_eq(action_release(a, SCOPE_MAILBOX, "box@example.com"), 0);
    ck_assert(audit_has("\"event\":\"release\""));
    ck_assert_str_eq(audit_omitted, "_omitted\":2138"); /* 862 ids of 19 bytes fit 16 KiB */
    fake_spawner_flush(fs);
    ck_assert(!action_is_active(a, SCOPE_MAILBOX, "box@example.com"));
    action_free(a);
}
END_TEST

START_TEST(test_action_trip_enomem_leaves_nothing)
{
    struct action *a = open_action(&fs->ops, NULL);
    struct action_request r = box_req(CONFIG_ACTION_FREEZE | CONFIG_ACTION_HOLD);

    r.nmsgids = (size_t)1 << 40; /* job_collect()'s arrays cannot be allocated */
    ck_assert_int_eq(action_trip(a, &r), -ENOMEM);
    ck_assert(!action_is_active(a, SCOPE_MAILBOX, "box@example.com"));
    ck_assert_uint_eq(action_pending(a), 0);
    /* the identity is not stuck: the next trip acts */
    r = box_req(CONFIG_ACTION_FREEZE | CONFIG_ACTION_HOLD);
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(last.frozen, 2);
    action_free(a);
}
END_TEST

START_TEST(test_action_merge_respects_frozen_max)
{
    char path[400];
    struct action *a;
    const char *m6[] = { "1xVYNi-0001Xt-06" }, *m7[] = { "1xVYNi-0001Xt-07" },
               *m8[] = { "1xVYNi-0001Xt-08" };
    FILE *f;

    /* one id short of ACTION_FROZEN_MAX (100000) recorded for the mailbox */
    (void)snprintf(path, sizeof(path), "%s/actions.ledger", state);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "floodgate-ledger 2\nE\tacted\tmailbox\t0\t0\t0\t%lld\t0\tbox@example.com\t"
            "acct1\tr\t0\n",
            (long long)T0);
    for (int i = 0; i < 99999; i++)
        fprintf(f, "F\t1xVYNi-%06d-00\n", i);
    fclose(f);
    for (int i = 6; i <= 8; i++) {
        char id[32];
        (void)snprintf(id, sizeof(id), "1xVYNi-0001Xt-%02d", i);
        write_h(id, "--auth_id box@example.com\n-host_address [127.0.0.1]:6\n");
    }
    a = open_action(&fs->ops, NULL);
    ck_assert_int_eq(action_freeze_more(a, SCOPE_MAILBOX, "box@example.com", m6, 1), 0);
    ck_assert_int_eq(action_freeze_more(a, SCOPE_MAILBOX, "box@example.com", m7, 1), 0);
    /* 07 fills the last place in the queued job; 08 would pass the cap */
    ck_assert_int_eq(action_freeze_more(a, SCOPE_MAILBOX, "box@example.com", m8, 1), 0);
    fake_spawner_flush(fs);
    ck_assert_int_ge(fake_spawner_find(fs, "-Mf 1xVYNi-0001Xt-07"), 0);
    ck_assert_int_eq(fake_spawner_find(fs, "1xVYNi-0001Xt-08"), -1);
    ck_assert_uint_eq(last.failed, 1);
    action_free(a);
}
END_TEST

START_TEST(test_action_exim_lines_before_operator_lines)
{
    struct action *a = open_action(&fs->ops, NULL);
    struct action_request r = {
        .rule = "r",
        .scope = SCOPE_ACCOUNT,
        .id = "bob",
        .actions = CONFIG_ACTION_SUSPEND,
        .ordered = true /* nothing queued to confirm: an operator's order */
    };
    char buf[4096];
    FILE *f;
    size_t n;

    write_file(blocklist, "# the operator's own\nbob: note from the operator\n");
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    f = fopen(blocklist, "r");
    ck_assert_ptr_nonnull(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* lsearch takes the first "bob:" line: it must be ours */
    ck_assert_ptr_nonnull(strstr(buf, "bob: note from the operator"));
    /* ... ending in the identity's reference, which the ACL quotes in its refusal */
    {
        char line[64], ref[TRIPS_REF_MAX];
        trips_identity_ref(SCOPE_ACCOUNT, "bob", ref, sizeof(ref));
        (void)snprintf(line, sizeof(line), "\nbob: suspend account bob r %s\n", ref);
        ck_assert_ptr_eq(strstr(buf, "\nbob:"), strstr(buf, line));
    }
    action_free(a);
}
END_TEST

START_TEST(test_action_spool_id_must_match)
{
    struct action *a = open_action(&fs->ops, NULL);
    const char *ids[] = { "1xVYNi-0001Xt-0A" };
    struct action_request r = box_req(CONFIG_ACTION_FREEZE);
    char from[512], to[512];

    /* the mailbox's -H file of message 01, found under another message's name */
    (void)snprintf(from, sizeof(from), "%s/input/1xVYNi-0001Xt-01-H", spool);
    (void)snprintf(to, sizeof(to), "%s/input/1xVYNi-0001Xt-0A-H", spool);
    copy_file(from, to);
    r.msgids = ids;
    r.nmsgids = 1;
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    /* the copy is never frozen; the spool walk finds the mailbox's real messages 01 and 02
     * (the walk, too, reads each file's id from inside it) */
    ck_assert_int_eq(fake_spawner_find(fs, "0A"), -1);
    ck_assert_int_eq(fake_spawner_find(fs, "-Mf "), 0);
    ck_assert_ptr_nonnull(strstr(fs->calls[0], "1xVYNi-0001Xt-01"));
    ck_assert_ptr_nonnull(strstr(fs->calls[0], "1xVYNi-0001Xt-02"));
    ck_assert_uint_eq(last.backlog, 2);
    ck_assert(audit_has("\"event\":\"unconfirmed\""));
    action_free(a);
}
END_TEST

static struct action_request
box_req(uint32_t actions)
{
    struct action_request r = {
        .rule = "mailbox-burst",
        .scope = SCOPE_MAILBOX,
        .id = "Box@Example.com",
        .account = "acct1",
        .actions = actions,
        .msgids = box_ids,
        .nmsgids = N_ELEMS(box_ids),
    };
    return r;
}

START_TEST(test_action_order_freeze_hold_alert)
{
    struct action *a;
    struct action_request r;

    cfg->backend = CONFIG_BACKEND_CPANEL;
    a = open_action(&fs->ops, NULL);
    r = box_req(CONFIG_ACTION_FREEZE | CONFIG_ACTION_HOLD | CONFIG_ACTION_ALERT);
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(fs->ncalls, 2);
    ck_assert_str_eq(fs->calls[0], "/usr/sbin/exim -Mf 1xVYNi-0001Xt-01 1xVYNi-0001Xt-02");
    ck_assert_str_eq(fs->calls[1], "/usr/local/cpanel/bin/uapi --user=acct1 --output=json "
                                   "Email hold_outgoing email=box@example.com");
    ck_assert_uint_eq(nevents, 3);
    ck_assert_str_eq(events[0], "freeze");
    ck_assert_str_eq(events[1], "hold");
    ck_assert_str_eq(events[2], "alert");
    ck_assert_int_eq(ndone, 1);
    ck_assert_uint_eq(last.frozen, 2);
    ck_assert_uint_eq(last.confirmed, 2);
    ck_assert_uint_eq(last.backend_done, CONFIG_ACTION_HOLD);
    ck_assert(audit_has("\"event\":\"unconfirmed\""));
    ck_assert(audit_has("1xVYNi-0001Xt-03")); /* named as unconfirmed, never frozen */
    ck_assert(action_is_active(a, SCOPE_MAILBOX, "box@example.com"));
    action_free(a);
}
END_TEST

/* The log names messages that are not the identity's (forged or framing lines): no hold. */
START_TEST(test_action_unconfirmed_holds_nothing)
{
    static const char *const framing[] = { "1xVYNi-0001Xt-03", "1xVYNi-0001Xt-09" };
    struct action *a;
    struct action_request r = box_req(CONFIG_ACTION_FREEZE | CONFIG_ACTION_HOLD);
    struct action_info in;

    cfg->backend = CONFIG_BACKEND_CPANEL;
    a = open_action(&fs->ops, NULL);
    r.msgids = framing;
    r.nmsgids = N_ELEMS(framing);
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(fs->ncalls, 0); /* neither exim -Mf nor the hold */
    ck_assert_int_eq(ndone, 1);
    ck_assert(last.unconfirmed);
    ck_assert_uint_eq(last.candidates, 2);
    ck_assert_uint_eq(last.backend_done, 0);
    ck_assert_str_eq(last.what, "trip");
    ck_assert(audit_has("\"event\":\"not_acted\""));
    ck_assert(audit_has("\"result\":\"unconfirmed\""));
    ck_assert(!audit_has("\"event\":\"hold\""));
    ck_assert(!action_is_active(a, SCOPE_MAILBOX, "box@example.com"));
    ck_assert_int_eq(action_info(a, SCOPE_MAILBOX, "box@example.com", &in), 0);
    ck_assert(in.unconfirmed);
    ck_assert(!in.active);
    ck_assert_str_eq(in.state, "unconfirmed");
    ck_assert_uint_eq(in.want, CONFIG_ACTION_HOLD);
    ck_assert_uint_eq(in.done, 0);
    /* recorded in the ledger: a restart still lists it for the operator */
    action_free(a);
    a = open_action(&fs->ops, NULL);
    ck_assert_int_eq(action_info(a, SCOPE_MAILBOX, "box@example.com", &in), 0);
    ck_assert(in.unconfirmed);
    ck_assert_uint_eq(fs->ncalls, 0);
    /* the operator's order acts without confirmation */
    r = box_req(CONFIG_ACTION_FREEZE | CONFIG_ACTION_HOLD);
    r.rule = "manual";
    r.msgids = framing;
    r.nmsgids = N_ELEMS(framing);
    r.ordered = true;
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    /* the spool walk freezes the mailbox's own 01 and 02; 03 is still not frozen */
    ck_assert_uint_eq(fs->ncalls, 2);
    ck_assert_ptr_nonnull(strstr(fs->calls[0], "/usr/sbin/exim -Mf 1xVYNi-0001Xt-0"));
    ck_assert_ptr_nonnull(strstr(fs->calls[0], "1xVYNi-0001Xt-01")); /* in directory order */
    ck_assert_ptr_nonnull(strstr(fs->calls[0], "1xVYNi-0001Xt-02"));
    ck_assert_ptr_null(strstr(fs->calls[0], "1xVYNi-0001Xt-03"));
    ck_assert_ptr_nonnull(strstr(fs->calls[1], "Email hold_outgoing email=box@example.com"));
    ck_assert(!last.unconfirmed);
    ck_assert_uint_eq(last.backend_done, CONFIG_ACTION_HOLD);
    ck_assert(action_is_active(a, SCOPE_MAILBOX, "box@example.com"));
    action_free(a);
}
END_TEST

/* A rule that holds without freezing still needs a confirmed message; one is enough. */
START_TEST(test_action_confirm_without_freeze)
{
    static const char *const mine[] = { "1xVYNi-0001Xt-03", "1xVYNi-0001Xt-04" };
    struct action *a = open_action(&fs->ops, NULL);
    struct action_request r = {
        .rule = "r",
        .scope = SCOPE_ACCOUNT,
        .id = "acct1",
        .actions = CONFIG_ACTION_SUSPEND,
        .msgids = mine,
        .nmsgids = 1, /* 03 only: not acct1's */
    };
    struct action_info in;

    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert(last.unconfirmed);
    ck_assert_int_eq(access(blocklist, F_OK), -1);
    /* a re-trip with acct1's own local submission acts, and freezes nothing */
    r.nmsgids = 2;
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert(!last.unconfirmed);
    ck_assert_uint_eq(last.backend_done, CONFIG_ACTION_SUSPEND);
    ck_assert_uint_eq(last.frozen, 0);
    ck_assert_uint_eq(fs->ncalls, 0);
    ck_assert(file_has(blocklist, "acct1"));
    ck_assert_int_eq(action_info(a, SCOPE_ACCOUNT, "acct1", &in), 0);
    ck_assert_str_eq(in.state, "acted");
    action_free(a);
}
END_TEST

START_TEST(test_action_monitor_says_unconfirmed)
{
    static const char *const framing[] = { "1xVYNi-0001Xt-03" };
    struct action *a;
    struct action_request r = box_req(CONFIG_ACTION_FREEZE | CONFIG_ACTION_SUSPEND);

    cfg->mode = CONFIG_MODE_MONITOR;
    a = open_action(&fs->ops, NULL);
    r.msgids = framing;
    r.nmsgids = 1;
    ck_assert_int_eq(action_trip(a, &r), 0);
    ck_assert(last.monitor);
    ck_assert(last.unconfirmed);
    ck_assert(audit_has("\"result\":\"unconfirmed\""));
    ck_assert(!audit_has("\"would\":\"suspend\""));
    action_free(a);
}
END_TEST

/* A ledger writer that fails from its @fail_from-th call on (1-based; 0: never). */
static int ledger_writes, ledger_fail_from;

static int
ledger_write_fake(void *ctx, const char *path, const void *data, size_t len)
{
    (void)ctx;
    if (ledger_fail_from && ++ledger_writes >= ledger_fail_from)
        return -ENOSPC;
    return state_write_path(path, data, len, 0600);
}

static const struct action_ledger_io ledger_fake = { .write = ledger_write_fake };

START_TEST(test_action_ledger_failure_acts_not)
{
    struct action *a;
    struct action_request r = box_req(CONFIG_ACTION_FREEZE | CONFIG_ACTION_HOLD);
    struct action_info in;
    char ledger[400];

    (void)snprintf(ledger, sizeof(ledger), "%s/actions.ledger", state);
    ledger_writes = 0;
    ledger_fail_from = 1; /* the state dir is full from the start */
    a = open_action_from((struct action_params){ .ledger_io = &ledger_fake }, &fs->ops);
    ck_assert_int_eq(action_trip(a, &r), -ENOSPC);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(fs->ncalls, 0);
    ck_assert_int_eq(access(blocklist, F_OK), -1);
    ck_assert_int_eq(ndone, 1);
    ck_assert_int_eq(last.ledger_err, -ENOSPC);
    ck_assert(!last.unconfirmed);
    ck_assert(audit_has("\"result\":\"ledger_failed\""));
    ck_assert(audit_has("No space left on device"));
    ck_assert(audit_has("actions.ledger"));
    ck_assert_int_eq(action_info(a, SCOPE_MAILBOX, "box@example.com", &in), -ENOENT);
    ck_assert_int_eq(access(ledger, F_OK), -1);
    action_free(a);

    /* the disk fills after "acting" is written: neither exim -Mf nor the hold runs */
    ledger_writes = 0;
    ledger_fail_from = 2;
    ndone = 0;
    a = open_action_from((struct action_params){ .ledger_io = &ledger_fake }, &fs->ops);
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(fs->ncalls, 0);
    ck_assert_int_eq(access(blocklist, F_OK), -1);
    ck_assert_int_eq(ndone, 1);
    ck_assert_int_eq(last.ledger_err, -ENOSPC);
    ck_assert_int_eq(last.backend_err, -ENOSPC);
    ck_assert_uint_eq(last.backend_done, 0);
    ck_assert_uint_eq(last.frozen, 0);
    action_free(a);
}
END_TEST

START_TEST(test_action_release_refused_without_ledger)
{
    struct action *a;
    struct action_request r = box_req(CONFIG_ACTION_FREEZE | CONFIG_ACTION_HOLD);

    ledger_writes = 0;
    ledger_fail_from = 0;
    a = open_action_from((struct action_params){ .ledger_io = &ledger_fake }, &fs->ops);
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert(file_has(blocklist, "box@example.com"));
    size_t before = fs->ncalls;
    ledger_fail_from = 1;
    ck_assert_int_eq(action_release(a, SCOPE_MAILBOX, "box@example.com"), -ENOSPC);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(fs->ncalls, before);             /* nothing thawed */
    ck_assert(file_has(blocklist, "box@example.com")); /* nor unheld */
    ck_assert(action_is_active(a, SCOPE_MAILBOX, "box@example.com"));
    ck_assert(audit_has("ledger write failed"));
    /* once the ledger can be written, the release goes through */
    ledger_fail_from = 0;
    ck_assert_int_eq(action_release(a, SCOPE_MAILBOX, "box@example.com"), 0);
    fake_spawner_flush(fs);
    ck_assert(!action_is_active(a, SCOPE_MAILBOX, "box@example.com"));
    ck_assert_int_eq(last.ledger_err, 0);
    action_free(a);
}
END_TEST

START_TEST(test_action_monitor_spawns_nothing)
{
    struct action *a;
    struct action_request r = box_req(CONFIG_ACTION_FREEZE | CONFIG_ACTION_SUSPEND);

    cfg->mode = CONFIG_MODE_MONITOR;
    a = open_action(&fs->ops, NULL);
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(fs->ncalls, 0);
    ck_assert_int_eq(ndone, 1);
    ck_assert(last.monitor);
    ck_assert(audit_has("\"event\":\"would_act\""));
    ck_assert(audit_has("\"would\":\"suspend\""));
    ck_assert(!action_is_active(a, SCOPE_MAILBOX, "box@example.com"));
    ck_assert_int_eq(access(blocklist, F_OK), -1);
    action_free(a);
}
END_TEST

START_TEST(test_action_circuit_breaker)
{
    struct action *a;
    char id[64];

    cfg->max_actions_per_hour = 2;
    a = open_action(&fs->ops, NULL);
    for (int i = 0; i < 3; i++) {
        struct action_request r = {
            .rule = "r",
            .scope = SCOPE_ACCOUNT,
            .id = id,
            .actions = CONFIG_ACTION_HOLD,
            .ordered = true /* nothing queued to confirm: an operator's order */
        };
        (void)snprintf(id, sizeof(id), "user%d", i);
        ck_assert_int_eq(action_trip(a, &r), i < 2 ? 0 : -EBUSY);
    }
    ck_assert(audit_has("\"event\":\"circuit_open\""));
    ck_assert(!action_is_active(a, SCOPE_ACCOUNT, "user2"));
    struct action_request r = {
        .rule = "r",
        .scope = SCOPE_ACCOUNT,
        .id = "user2",
        .actions = CONFIG_ACTION_HOLD,
        .ordered = true /* nothing queued to confirm: an operator's order */
    };
    /* a trip counts for at least an hour, at most an hour and a second */
    clock_fake_advance(&fclock, 3600 * 1000);
    ck_assert_int_eq(action_trip(a, &r), -EBUSY);
    clock_fake_advance(&fclock, 1000);
    ck_assert_int_eq(action_trip(a, &r), 0);
    action_free(a);
}
END_TEST

/*
 * A spawner over the recording fake whose commands take time: the fake clock advances by
 * slow_ms[i] while a command whose recorded line contains slow_match[i] runs.
 */
static const char *slow_match[4];
static int64_t slow_ms[4];

struct slow_call {
    spawn_done_fn done;
    void *ctx;
    int64_t ms;
};

static void
slow_done(void *ctx, const struct spawn_result *r)
{
    struct slow_call *c = ctx;

    clock_fake_advance(&fclock, c->ms);
    c->done(c->ctx, r);
    free(c);
}

static int
slow_run(struct spawner *s, char *const argv[], int64_t timeout_ms, spawn_done_fn done, void *ctx)
{
    struct slow_call *c = calloc(1, sizeof(*c));
    size_t before = fs->ncalls;
    int r;

    (void)s;
    ck_assert_ptr_nonnull(c);
    c->done = done;
    c->ctx = ctx;
    r = spawner_run(&fs->ops, argv, timeout_ms, slow_done, c);
    if (r < 0) {
        free(c);
        return r;
    }
    for (size_t i = 0; i < N_ELEMS(slow_match) && fs->ncalls > before; i++)
        if (slow_match[i] && strstr(fs->calls[before], slow_match[i]))
            c->ms = slow_ms[i];
    return 0;
}

static struct spawner slower = { .run = slow_run, .free = spoil_free };

/* The bucket index of the one observation of @d (which must have exactly one). */
static size_t
one_bucket(const struct action_duration *d)
{
    size_t k = SIZE_MAX;

    ck_assert_uint_eq(d->count, 1);
    for (size_t i = 0; i <= ACTION_DURATION_BUCKETS; i++)
        if (d->counts[i]) {
            ck_assert_uint_eq(d->counts[i], 1);
            k = i;
        }
    return k;
}

START_TEST(test_action_step_durations)
{
    struct action *a;
    struct action_request r = box_req(CONFIG_ACTION_FREEZE | CONFIG_ACTION_HOLD);
    const struct action_duration *d;

    ck_assert_str_eq(action_step_name(ACTION_STEP_FREEZE), "freeze");
    ck_assert_str_eq(action_step_name(ACTION_STEP_UNSUSPEND), "unsuspend");
    ck_assert(action_duration_bounds[0] == 0.01);
    ck_assert(action_duration_bounds[ACTION_DURATION_BUCKETS - 1] == 60);
    cfg->backend = CONFIG_BACKEND_COMMAND;
    cfg->command_path = strdup("/usr/local/sbin/fg-act");
    a = open_action(&slower, NULL);
    d = action_durations(a);
    for (size_t s = 0; s < ACTION_STEP__MAX; s++)
        ck_assert_uint_eq(d[s].count, 0);
    /* bounds are inclusive (le): 10 ms is in the first bucket, 251 ms past 0.25 s */
    slow_match[0] = " -Mf ", slow_ms[0] = 10;
    slow_match[1] = "fg-act hold ", slow_ms[1] = 251;
    slow_match[2] = " -Mt ", slow_ms[2] = 60001;
    slow_match[3] = "fg-act release ", slow_ms[3] = 1000;
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(fs->ncalls, 2);
    ck_assert_uint_eq(one_bucket(&d[ACTION_STEP_FREEZE]), 0);
    ck_assert_int_eq(d[ACTION_STEP_FREEZE].sum_ms, 10);
    ck_assert_uint_eq(one_bucket(&d[ACTION_STEP_HOLD]), 4);
    ck_assert_int_eq(d[ACTION_STEP_HOLD].sum_ms, 251);
    ck_assert_uint_eq(d[ACTION_STEP_THAW].count, 0);
    ck_assert_int_eq(action_release(a, SCOPE_MAILBOX, "box@example.com"), 0);
    fake_spawner_flush(fs);
    ck_assert(!action_is_active(a, SCOPE_MAILBOX, "box@example.com"));
    ck_assert_uint_eq(one_bucket(&d[ACTION_STEP_UNHOLD]), 5);                     /* exactly 1 s */
    ck_assert_uint_eq(one_bucket(&d[ACTION_STEP_THAW]), ACTION_DURATION_BUCKETS); /* > 60 s */
    ck_assert_int_eq(d[ACTION_STEP_THAW].sum_ms, 60001);
    ck_assert_uint_eq(d[ACTION_STEP_SUSPEND].count + d[ACTION_STEP_UNSUSPEND].count, 0);
    /* a command that cannot be started has no duration */
    fs->run_error = -EAGAIN;
    r = box_req(CONFIG_ACTION_FREEZE);
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(d[ACTION_STEP_FREEZE].count, 1);
    memset(slow_match, 0, sizeof(slow_match));
    action_free(a);
}
END_TEST

START_TEST(test_action_step_durations_sync_backend)
{
    struct action *a = open_action(&fs->ops, NULL);
    struct action_request r = box_req(CONFIG_ACTION_SUSPEND);
    const struct action_duration *d = action_durations(a);

    /* the exim backend writes its file without a command: timed all the same */
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(fs->ncalls, 0);
    ck_assert_uint_eq(one_bucket(&d[ACTION_STEP_SUSPEND]), 0);
    ck_assert_int_eq(d[ACTION_STEP_SUSPEND].sum_ms, 0);
    ck_assert_int_eq(action_release(a, SCOPE_MAILBOX, "box@example.com"), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(one_bucket(&d[ACTION_STEP_UNSUSPEND]), 0);
    ck_assert_uint_eq(d[ACTION_STEP_HOLD].count + d[ACTION_STEP_FREEZE].count, 0);
    action_free(a);
}
END_TEST

START_TEST(test_action_breaker_over_old_ring)
{
    /* more than the 10000 trips the breaker used to remember, up to config's maximum */
    static const uint32_t caps[] = { 1, 10000, 10001, 100000 };

    for (size_t k = 0; k < N_ELEMS(caps); k++) {
        struct action_breaker *b = calloc(1, sizeof(*b));
        int64_t t = 5000;

        ck_assert_ptr_nonnull(b);
        for (uint32_t i = 0; i < caps[k]; i++)
            ck_assert(action_breaker_allow(b, t + (int64_t)(i % 7) * 100, caps[k]));
        ck_assert(!action_breaker_allow(b, t + 1000, caps[k]));
        ck_assert(!action_breaker_allow(b, t + 3600 * 1000 - 1, caps[k]));
        ck_assert(!action_breaker_allow(b, t + 3600 * 1000, caps[k])); /* at least an hour */
        ck_assert(action_breaker_allow(b, t + 3601 * 1000, caps[k]));  /* at most and a second */
        free(b);
    }
}
END_TEST

START_TEST(test_action_breaker_sliding)
{
    struct action_breaker *b = calloc(1, sizeof(*b));
    int64_t t = -1500; /* the slots stay apart below zero too */

    ck_assert_ptr_nonnull(b);
    /* three trips spread over the hour; the cap of 3 frees one slot as each turns old */
    ck_assert(action_breaker_allow(b, t, 3));
    ck_assert(action_breaker_allow(b, t + 1000 * 1000, 3));
    ck_assert(action_breaker_allow(b, t + 2000 * 1000, 3));
    ck_assert(!action_breaker_allow(b, t + 3000 * 1000, 3));
    ck_assert(action_breaker_allow(b, t + 3601 * 1000, 3));
    ck_assert(!action_breaker_allow(b, t + 3602 * 1000, 3));
    ck_assert(action_breaker_allow(b, t + 4601 * 1000, 3));
    /* a clock that goes back counts in the newest second */
    ck_assert(!action_breaker_allow(b, t, 3));
    /* cap 0 counts without refusing; a later cap sees those trips */
    for (int i = 0; i < 5; i++)
        ck_assert(action_breaker_allow(b, t + 4700 * 1000, 0));
    ck_assert(!action_breaker_allow(b, t + 4700 * 1000, 7));
    ck_assert(action_breaker_allow(b, t + 4700 * 1000, 9));
    /* after more than an hour idle everything is forgotten at once */
    ck_assert(action_breaker_allow(b, t + 100000 * 1000, 1));
    ck_assert(!action_breaker_allow(b, t + 100000 * 1000, 1));
    free(b);
}
END_TEST

static bool
file_has(const char *path, const char *needle)
{
    char buf[8192];
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

START_TEST(test_action_ledger_restart)
{
    struct action *a = open_action(&fs->ops, NULL);
    struct action_request r = box_req(CONFIG_ACTION_FREEZE | CONFIG_ACTION_SUSPEND);
    const char *const *ids;

    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert(
        file_has(blocklist, "box@example.com: suspend mailbox box@example.com mailbox-burst"));
    action_free(a);

    /* restart: a new module, a new spawner, the same state dir */
    struct fake_spawner *fs2 = fake_spawner_new();
    a = open_action(&fs2->ops, NULL);
    ck_assert(action_is_active(a, SCOPE_MAILBOX, "BOX@example.com"));
    ck_assert_uint_eq(action_frozen_ids(a, SCOPE_MAILBOX, "box@example.com", &ids), 2);
    ck_assert_int_eq(action_trip(a, &r), -EALREADY); /* not repeated */
    fake_spawner_flush(fs2);
    ck_assert_uint_eq(fs2->ncalls, 0); /* both ids are already ours: nothing to freeze */
    ck_assert_int_eq(action_release(a, SCOPE_MAILBOX, "box@example.com"), 0);
    fake_spawner_flush(fs2);
    ck_assert_uint_eq(fs2->ncalls, 1);
    ck_assert_str_eq(fs2->calls[0], "/usr/sbin/exim -Mt 1xVYNi-0001Xt-01 1xVYNi-0001Xt-02");
    ck_assert(!file_has(blocklist, "box@example.com:"));
    ck_assert(!action_is_active(a, SCOPE_MAILBOX, "box@example.com"));
    action_free(a);

    /* and after another restart it stays released */
    a = open_action(&fs2->ops, NULL);
    ck_assert(!action_is_active(a, SCOPE_MAILBOX, "box@example.com"));
    ck_assert_int_eq(action_release(a, SCOPE_MAILBOX, "box@example.com"), -ENOENT);
    action_free(a);
    spawner_free(&fs2->ops);
}
END_TEST

START_TEST(test_action_release_thaws_exactly_ours)
{
    struct action *a = open_action(&fs->ops, NULL);
    struct action_request r = box_req(CONFIG_ACTION_FREEZE);

    fs->already_frozen = "1xVYNi-0001Xt-01"; /* frozen by someone else before us */
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(last.frozen, 1);
    /* a new arrival of the same identity */
    const char *more[] = { "1xVYNi-0001Xt-02", "1xVYNi-0001Xt-04" };
    write_h("1xVYNi-0001Xt-06", "--auth_id box@example.com\n-host_address [127.0.0.1]:6\n");
    const char *more2[] = { "1xVYNi-0001Xt-06" };
    ck_assert_int_eq(action_freeze_more(a, SCOPE_MAILBOX, "box@example.com", more, 2), 0);
    ck_assert_int_eq(action_freeze_more(a, SCOPE_MAILBOX, "box@example.com", more2, 1), 0);
    fake_spawner_flush(fs);
    ck_assert_int_eq(action_release(a, SCOPE_MAILBOX, "box@example.com"), 0);
    fake_spawner_flush(fs);
    ck_assert_int_ge(fake_spawner_find(fs, "-Mt"), 0);
    ck_assert_str_eq(fs->calls[fs->ncalls - 1],
                     "/usr/sbin/exim -Mt 1xVYNi-0001Xt-02 1xVYNi-0001Xt-06");
    ck_assert_int_eq(fake_spawner_find(fs, "1xVYNi-0001Xt-04"), -1); /* not the mailbox's */
    action_free(a);
}
END_TEST

START_TEST(test_action_adopt_frozen)
{
    struct action *a = open_action(&fs->ops, NULL);
    struct action_request r = box_req(CONFIG_ACTION_FREEZE);

    ck_assert_int_eq(action_adopt_frozen(a, SCOPE_MAILBOX, "box@example.com", "1xVYNi-0001Xt-09"),
                     -ENOENT); /* not active yet */
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_int_eq(action_adopt_frozen(a, SCOPE_MAILBOX, "box@example.com", "-oXbad"), -EINVAL);
    ck_assert_int_eq(action_adopt_frozen(a, SCOPE_MAILBOX, "box@example.com", "1xVYNi-0001Xt-09"),
                     1);
    ck_assert_int_eq(action_adopt_frozen(a, SCOPE_MAILBOX, "box@example.com", "1xVYNi-0001Xt-09"),
                     0);
    /* survives a restart (ledger) and is thawed by the release with the rest */
    action_free(a);
    a = open_action(&fs->ops, NULL);
    ck_assert_int_eq(action_release(a, SCOPE_MAILBOX, "box@example.com"), 0);
    fake_spawner_flush(fs);
    ck_assert_ptr_nonnull(strstr(fs->calls[fs->ncalls - 1], "1xVYNi-0001Xt-09"));
    ck_assert_ptr_nonnull(strstr(fs->calls[fs->ncalls - 1], "-Mt"));
    action_free(a);
}
END_TEST

/* Each frozen id keeps when it was frozen, across a restart; a ledger without times loads. */
START_TEST(test_action_frozen_times)
{
    struct action *a = open_action(&fs->ops, NULL);
    struct action_request r = box_req(CONFIG_ACTION_FREEZE);
    const char *const *ids;
    const int64_t *at;
    char path[400], buf[4096], out[4096];
    size_t n, k = 0;

    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    clock_fake_advance(&fclock, 5000);
    ck_assert_int_eq(action_adopt_frozen(a, SCOPE_MAILBOX, "box@example.com", "1xVYNi-0001Xt-09"),
                     1);
    ck_assert_uint_eq(action_frozen_ids(a, SCOPE_MAILBOX, "box@example.com", &ids), 3);
    ck_assert_uint_eq(action_frozen_times(a, SCOPE_MAILBOX, "box@example.com", &at), 3);
    ck_assert_int_eq(at[0], T0);
    ck_assert_int_eq(at[1], T0);
    ck_assert_int_eq(at[2], T0 + 5000);
    action_free(a);
    a = open_action(&fs->ops, NULL);
    ck_assert_uint_eq(action_frozen_times(a, SCOPE_MAILBOX, "box@example.com", &at), 3);
    ck_assert_int_eq(at[0], T0);
    ck_assert_int_eq(at[2], T0 + 5000);
    action_free(a);

    /* the same ledger as an older version wrote it: "F <id>" lines without the time */
    (void)snprintf(path, sizeof(path), "%s/actions.ledger", state);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (char *line = buf, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(nl);
        size_t len = (size_t)(nl - line);
        if (line[0] == 'F') {
            char *tab = memchr(line + 2, '\t', len - 2);
            ck_assert_ptr_nonnull(tab); /* the new writer put the time there */
            len = (size_t)(tab - line);
        }
        memcpy(out + k, line, len);
        k += len;
        out[k++] = '\n';
    }
    f = fopen(path, "w");
    ck_assert_uint_eq(fwrite(out, 1, k, f), k);
    fclose(f);
    a = open_action(&fs->ops, NULL);
    ck_assert(action_is_active(a, SCOPE_MAILBOX, "box@example.com"));
    ck_assert_uint_eq(action_frozen_times(a, SCOPE_MAILBOX, "box@example.com", &at), 3);
    ck_assert_int_eq(at[0], 0);
    ck_assert_int_eq(at[2], 0);
    action_free(a);
}
END_TEST

START_TEST(test_action_late_arrivals_share_one_freeze)
{
    struct action *a = open_action(&fs->ops, NULL);
    struct action_request r = box_req(CONFIG_ACTION_FREEZE | CONFIG_ACTION_SUSPEND);
    const char *late1[] = { "1xVYNi-0001Xt-07" }, *late2[] = { "1xVYNi-0001Xt-08" };
    size_t before;

    write_h("1xVYNi-0001Xt-07", "--auth_id box@example.com\n-host_address [127.0.0.1]:7\n");
    write_h("1xVYNi-0001Xt-08", "--auth_id box@example.com\n-host_address [127.0.0.1]:8\n");
    ck_assert_int_eq(action_trip(a, &r), 0); /* its exim -Mf is in flight */
    ck_assert_int_eq(action_freeze_more(a, SCOPE_MAILBOX, "box@example.com", late1, 1), 0);
    ck_assert_int_eq(action_freeze_more(a, SCOPE_MAILBOX, "box@example.com", late2, 1), 0);
    ck_assert_int_eq(action_freeze_more(a, SCOPE_MAILBOX, "box@example.com", late2, 1), 0);
    before = fs->ncalls;
    fake_spawner_flush(fs);
    /* the two late arrivals (one repeated) went into a single exim -Mf */
    size_t late_calls = 0;
    for (size_t i = before; i < fs->ncalls; i++)
        if (strstr(fs->calls[i], "1xVYNi-0001Xt-07") || strstr(fs->calls[i], "1xVYNi-0001Xt-08")) {
            late_calls++;
            ck_assert_str_eq(fs->calls[i], "/usr/sbin/exim -Mf 1xVYNi-0001Xt-07 1xVYNi-0001Xt-08");
        }
    ck_assert_uint_eq(late_calls, 1);
    action_free(a);
}
END_TEST

START_TEST(test_action_batches)
{
    struct action *a;
    const char *ids[5];
    char buf[5][32];

    cfg->freeze_batch = 2;
    a = open_action(&fs->ops, NULL);
    for (int i = 0; i < 5; i++) {
        (void)snprintf(buf[i], sizeof(buf[i]), "1xVYNi-0001Xu-%02d", i);
        write_h(buf[i], "--ident acct1\n-local\n");
        ids[i] = buf[i];
    }
    struct action_request r = { .rule = "script-burst",
                                .scope = SCOPE_SCRIPT,
                                .id = "acct1:/home/acct1/public_html",
                                .actions = CONFIG_ACTION_FREEZE | CONFIG_ACTION_HOLD,
                                .msgids = ids,
                                .nmsgids = 5 };
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(fs->ncalls, 3); /* 2 + 2 + 1; the exim backend spawns nothing */
    ck_assert_uint_eq(last.frozen, 5);
    /* keyed by login and directory: the ACL matches "$sender_ident:$initial_cwd" */
    ck_assert(file_has(blocklist, "\"acct1:/home/acct1/public_html\": hold script "
                                  "acct1%3A/home/acct1/public_html script-burst"));
    ck_assert(!file_has(blocklist, "\nacct1: "));
    action_free(a);
}
END_TEST

/* A script in a directory with any bytes is held and frozen, released by its exact key. */
START_TEST(test_action_script_any_bytes)
{
    static const char id[] = "acct1:/home/acct1/caf\xc3\xa9 \x01%/x";
    struct action *a;
    const char *ids[1] = { "1xVYNi-0001Xv-01" };
    const char *const *frozen;

    write_h(ids[0], "--ident acct1\n-local\n");
    a = open_action(&fs->ops, NULL);
    struct action_request r = { .rule = "script-burst",
                                .scope = SCOPE_SCRIPT,
                                .id = id,
                                .actions = CONFIG_ACTION_FREEZE | CONFIG_ACTION_HOLD,
                                .msgids = ids,
                                .nmsgids = 1 };
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(last.frozen, 1);
    /* the key carries the directory's bytes, a control byte as lsearch's \xHH escape: a
     * raw one could end the line and start another key */
    ck_assert(file_has(blocklist, "\"acct1:/home/acct1/caf\xc3\xa9 \\x01%/x\": hold script "
                                  "acct1%3A/home/acct1/caf%C3%A9%20%01%25/x"));
    ck_assert(action_is_active(a, SCOPE_SCRIPT, id));
    action_free(a);
    /* the ledger keeps the exact bytes across a restart */
    a = open_action(&fs->ops, NULL);
    ck_assert(action_is_active(a, SCOPE_SCRIPT, id));
    ck_assert_uint_eq(action_frozen_ids(a, SCOPE_SCRIPT, id, &frozen), 1);
    ck_assert_int_eq(action_release(a, SCOPE_SCRIPT, id), 0);
    fake_spawner_flush(fs);
    ck_assert(!action_is_active(a, SCOPE_SCRIPT, id));
    action_free(a);

    /* the command backend gets the directory escaped, never raw bytes */
    cfg->backend = CONFIG_BACKEND_COMMAND;
    cfg->command_path = strdup("/usr/local/sbin/fg-act");
    a = open_action(&fs->ops, NULL);
    r.actions = CONFIG_ACTION_HOLD;
    r.nmsgids = 0;
    r.ordered = true; /* nothing queued to confirm: an operator's order */
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_str_eq(fs->calls[fs->ncalls - 1],
                     "/usr/local/sbin/fg-act hold script "
                     "acct1:/home/acct1/caf%C3%A9 %01%25/x script-burst");
    action_free(a);
    cfg->backend = CONFIG_BACKEND_EXIM;
    /* a directory with a newline and a line of someone else's after it stays one key */
    a = open_action(&fs->ops, NULL);
    r.id = "acct1:/home/acct1/a\nceo@victim.test: suspend mailbox x r\n#";
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert(file_has(blocklist, "\"acct1:/home/acct1/a\\x0aceo@victim.test: suspend mailbox x "
                                  "r\\x0a#\": hold script"));
    ck_assert(!file_has(blocklist, "\nceo@victim.test"));
    action_free(a);
    r.id = id;
    cfg->backend = CONFIG_BACKEND_COMMAND;
    /* still refused: no account, a bad account, an empty directory */
    a = open_action(&fs->ops, NULL);
    r.id = "/home/x";
    ck_assert_int_eq(action_trip(a, &r), -EINVAL);
    r.id = "Root;x:/home/x";
    ck_assert_int_eq(action_trip(a, &r), -EINVAL);
    r.id = "acct1:";
    ck_assert_int_eq(action_trip(a, &r), -EINVAL);
    action_free(a);
}
END_TEST

/* A script key with lsearch's specials: quoted, '"' and '\\' escaped; released cleanly. */
START_TEST(test_action_exim_script_key_quoted)
{
    struct action *a = open_action(&fs->ops, NULL);
    struct action_request r = { .rule = "s",
                                .scope = SCOPE_SCRIPT,
                                .id = "acct1:/home/acct1/a \"b\\c",
                                .actions = CONFIG_ACTION_HOLD,
                                .ordered = true };

    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    {
        char *text = NULL, line[128], ref[TRIPS_REF_MAX];
        trips_identity_ref(SCOPE_SCRIPT, r.id, ref, sizeof(ref));
        (void)snprintf(line, sizeof(line),
                       "\n\"acct1:/home/acct1/a \\\"b\\\\c\": hold script "
                       "acct1%%3A/home/acct1/a%%20\"b\\c s %s\n",
                       ref);
        ck_assert_int_eq(state_read_path(blocklist, 1 << 16, &text, NULL), 0);
        ck_assert_msg(strstr(text, line), "%s", text);
        free(text);
    }
    ck_assert_int_eq(action_release(a, SCOPE_SCRIPT, "acct1:/home/acct1/a \"b\\c"), 0);
    fake_spawner_flush(fs);
    ck_assert(!file_has(blocklist, "acct1"));
    action_free(a);
}
END_TEST

static void
write_h_login(const char *id, const char *login_line, const char *opts)
{
    char path[512];
    (void)snprintf(path, sizeof(path), "%s/input/%s-H", spool, id);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s-H\n%s\n<x@example.org>\n1795456990 0\n%sXX\n1\nr@x\n\n", id, login_line, opts);
    fclose(f);
}

/* "-aclm <name> <len>\n<value>\n" as Exim writes an ACL variable into the -H file. */
static void
aclvar(char *buf, size_t size, const char *name, const char *value)
{
    size_t n = strlen(buf);
    (void)snprintf(buf + n, size - n, "-aclm %s %zu\n%s\n", name, strlen(value), value);
}

/* Queued before the daemon started: the log named one id, the spool walk finds the rest. */
START_TEST(test_action_trip_freezes_backlog)
{
    static const char *const one[] = { "1xVYNi-0001Xt-04", "1xVYNi-0001Xt-06" };
    char opts[512];
    struct action *a = open_action(&fs->ops, NULL);
    struct action_request r = { .rule = "acct-burst",
                                .scope = SCOPE_ACCOUNT,
                                .id = "acct1",
                                .actions = CONFIG_ACTION_FREEZE | CONFIG_ACTION_HOLD,
                                .msgids = one,
                                .nmsgids = N_ELEMS(one) };

    /* 06: frozen on arrival by our ACL for acct1: a release thaws it, -Mf does not see it;
     * 07: frozen by someone else; 08: another login */
    opts[0] = '\0';
    (void)snprintf(opts, sizeof(opts), "--ident acct1\n");
    aclvar(opts, sizeof(opts), "_floodgate", "hold account acct1 acct-burst");
    (void)strncat(opts, "-local\n-frozen 1795456991\n", sizeof(opts) - strlen(opts) - 1);
    write_h("1xVYNi-0001Xt-06", opts);
    write_h("1xVYNi-0001Xt-07", "--ident acct1\n-local\n-frozen 1795456991\n");
    write_h("1xVYNi-0001Xt-08", "--ident acct2\n-local\n");
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_ge(fs->ncalls, 1);
    ck_assert_str_eq(fs->calls[0],
                     "/usr/sbin/exim -Mf 1xVYNi-0001Xt-04 1xVYNi-0001Xt-05"); /* log's first */
    ck_assert_uint_eq(last.backlog, 1);
    ck_assert_uint_eq(last.frozen, 2);
    ck_assert_uint_eq(last.scanned, 8);
    ck_assert(audit_has("\"backlog\":1"));
    action_free(a);
}
END_TEST

/* A script's backlog is known by the directory the ACL recorded; the rest of the login's
 * mail (another directory, or no record) is not the script's. */
START_TEST(test_action_script_backlog_by_cwd)
{
    char opts[512];
    struct action *a = open_action(&fs->ops, NULL);
    struct action_request r = { .rule = "script-burst",
                                .scope = SCOPE_SCRIPT,
                                .id = "acct1:/home/acct1/up",
                                .actions = CONFIG_ACTION_FREEZE | CONFIG_ACTION_HOLD,
                                .ordered = true };

    (void)snprintf(opts, sizeof(opts), "--ident acct1\n");
    aclvar(opts, sizeof(opts), "_floodgate_cwd", "/home/acct1/up");
    (void)strncat(opts, "-local\n", sizeof(opts) - strlen(opts) - 1);
    write_h("1xVYNi-0001Xt-0A", opts);
    (void)snprintf(opts, sizeof(opts), "--ident acct1\n");
    aclvar(opts, sizeof(opts), "_floodgate_cwd", "/home/acct1/public_html");
    (void)strncat(opts, "-local\n", sizeof(opts) - strlen(opts) - 1);
    write_h("1xVYNi-0001Xt-0B", opts);
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_str_eq(fs->calls[0], "/usr/sbin/exim -Mf 1xVYNi-0001Xt-0A");
    ck_assert_uint_eq(last.backlog, 1);
    action_free(a);
}
END_TEST

/* Release thaws what the ACL froze for the identity, found by its mark in the spool, also
 * a message of another directory frozen because of the script (an older blocklist keyed
 * the whole login), and nothing frozen for others. */
START_TEST(test_action_release_thaws_acl_frozen)
{
    static const char *const ids[] = { "1xVYNi-0001Xt-04" };
    char opts[512];
    struct action *a = open_action(&fs->ops, NULL);
    struct action_request r = { .rule = "script-burst",
                                .scope = SCOPE_SCRIPT,
                                .id = "acct1:/home/acct1/up",
                                .actions = CONFIG_ACTION_HOLD,
                                .msgids = ids,
                                .nmsgids = 1 };

    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert(action_is_active(a, SCOPE_SCRIPT, "acct1:/home/acct1/up"));
    (void)snprintf(opts, sizeof(opts), "--ident acct1\n");
    aclvar(opts, sizeof(opts), "_floodgate_cwd", "/home/acct1/public_html");
    aclvar(opts, sizeof(opts), "_floodgate",
           "hold script acct1%3A/home/acct1/up script-burst fg-0123abcd");
    (void)strncat(opts, "-local\n-frozen 1795456991\n", sizeof(opts) - strlen(opts) - 1);
    write_h("1xVYNi-0001Xt-0B", opts);
    (void)snprintf(opts, sizeof(opts), "--ident acct2\n");
    aclvar(opts, sizeof(opts), "_floodgate", "hold account acct2 r");
    (void)strncat(opts, "-local\n-frozen 1795456991\n", sizeof(opts) - strlen(opts) - 1);
    write_h("1xVYNi-0001Xt-0C", opts);
    write_h("1xVYNi-0001Xt-0D", "--ident acct1\n-local\n-frozen 1795456991\n");
    fs->ncalls = 0;
    ck_assert_int_eq(action_release(a, SCOPE_SCRIPT, "acct1:/home/acct1/up"), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(fs->ncalls, 1);
    ck_assert_str_eq(fs->calls[0], "/usr/sbin/exim -Mt 1xVYNi-0001Xt-0B");
    ck_assert_uint_eq(last.acl_thawed, 1);
    ck_assert_uint_eq(last.frozen, 1);
    ck_assert(!action_is_active(a, SCOPE_SCRIPT, "acct1:/home/acct1/up"));
    ck_assert(audit_has("\"acl_frozen\":1"));
    action_free(a);
}
END_TEST

/* With a loop the walk yields between steps, and stops at ACTION_SCAN_MAX files. */
START_TEST(test_action_scan_steps_and_cap)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct action *a = open_action_from((struct action_params){ .loop = loop }, &fs->ops);
    static const char *const one[] = { "1xVYNi-0001Xt-04" };
    struct action_request r = { .rule = "acct-burst",
                                .scope = SCOPE_ACCOUNT,
                                .id = "acct1",
                                .actions = CONFIG_ACTION_FREEZE,
                                .msgids = one,
                                .nmsgids = 1 };
    char id[32];
    int iters = 0;

    for (int i = 0; i < ACTION_SCAN_MAX + 50; i++) {
        (void)snprintf(id, sizeof(id), "1xVYNj-%06d-01", i);
        write_h(id, "--ident acct3\n-local\n");
    }
    ck_assert_int_eq(action_trip(a, &r), 0);
    ck_assert_uint_eq(fs->ncalls, 0); /* the walk has begun, the loop runs the rest */
    while (action_pending(a) && iters < 1000) {
        fake_spawner_flush(fs);
        ev_run(loop, EVRUN_NOWAIT);
        iters++;
    }
    ck_assert_uint_eq(action_pending(a), 0);
    ck_assert_int_ge(iters, ACTION_SCAN_MAX / ACTION_SCAN_STEP - 1);
    ck_assert_uint_eq(last.scanned, ACTION_SCAN_MAX);
    /* the log's id first; acct1's 05 too if the walk reached it before the cap */
    ck_assert_ptr_nonnull(strstr(fs->calls[0], "/usr/sbin/exim -Mf 1xVYNi-0001Xt-04"));
    ck_assert_ptr_null(strstr(fs->calls[0], "1xVYNj-"));
    action_free(a);
    ev_loop_destroy(loop);
}
END_TEST

/* exim's exit status 1 for an id frozen already: the log line says so per id. */
START_TEST(test_action_already_frozen_logged)
{
    char path[512], text[4096] = "";
    struct action *a = open_action(&fs->ops, NULL);
    struct action_request r = box_req(CONFIG_ACTION_FREEZE);
    int saved = dup(2), fd;
    FILE *f;

    (void)snprintf(path, sizeof(path), "%s/stderr", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    fs->already_frozen = "1xVYNi-0001Xt-02";
    fs->exit_code = 1;
    ck_assert_int_eq(dup2(fd, 2), 2);
    log_setup(LOG_SINK_STDERR, LOG_DEBUG);
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    fflush(stderr);
    log_setup(LOG_SINK_STDERR, LOG_WARNING);
    ck_assert_int_eq(dup2(saved, 2), 2);
    close(fd);
    close(saved);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    ck_assert_msg(strstr(text, "exim -Mf: 1 of 2 ids frozen, 1 already frozen (exit 1)"), "%s",
                  text);
    action_free(a);
}
END_TEST

/* root, nobody, uid < 1000, Exim's user, never_hold, non-cPanel logins: never held
 * automatically; still reported, and frozen when the rule says freeze. */
START_TEST(test_action_system_logins_not_held)
{
    char passwd[400], cpusers[400], path[512];
    struct action *a;
    struct action_info in;
    struct action_request r = { .rule = "acct-burst",
                                .scope = SCOPE_ACCOUNT,
                                .actions = CONFIG_ACTION_HOLD };
    static const char *const rootmsg[] = { "1xVYNi-0001Xt-0R" };
    static const char *const legacymsg[] = { "1xVYNi-0001Xt-0L" };
    char cronmail[] = "cronmail", *never[] = { cronmail };

    (void)snprintf(passwd, sizeof(passwd), "%s/passwd", dir);
    f_write(passwd, "root:x:0:0:root:/root:/bin/bash\n"
                    "daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n"
                    "nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n"
                    "shop1:x:1001:1001::/home/shop1:/bin/bash\n");
    cfg->never_hold = never;
    cfg->nnever_hold = 1;
    a = open_action_from((struct action_params){ .passwd_file = passwd }, &fs->ops);
    ck_assert_str_eq(action_not_holdable(a, SCOPE_ACCOUNT, "root", UINT32_MAX), "system_login");
    ck_assert_str_eq(action_not_holdable(a, SCOPE_ACCOUNT, "daemon", UINT32_MAX), "system_login");
    ck_assert_str_eq(action_not_holdable(a, SCOPE_SCRIPT, "nobody:/var/www/x", UINT32_MAX),
                     "system_login");
    ck_assert_str_eq(action_not_holdable(a, SCOPE_ACCOUNT, "Debian-exim", UINT32_MAX),
                     "system_login");
    ck_assert_str_eq(action_not_holdable(a, SCOPE_ACCOUNT, "legacy", 500), "system_login");
    ck_assert_str_eq(action_not_holdable(a, SCOPE_ACCOUNT, "cronmail", UINT32_MAX), "never_hold");
    ck_assert_ptr_null(action_not_holdable(a, SCOPE_ACCOUNT, "shop1", UINT32_MAX));
    ck_assert_ptr_null(action_not_holdable(a, SCOPE_ACCOUNT, "legacy", UINT32_MAX));
    ck_assert_ptr_null(action_not_holdable(a, SCOPE_MAILBOX, "root@example.com", UINT32_MAX));

    /* hold only: nothing to do, reported, nothing recorded */
    r.id = "daemon";
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_int_eq(ndone, 1);
    ck_assert_str_eq(last.not_held, "system_login");
    ck_assert(audit_has("\"result\":\"system_login: not held\""));
    ck_assert_int_eq(action_info(a, SCOPE_ACCOUNT, "daemon", &in), -ENOENT);
    ck_assert(!file_has(blocklist, "daemon"));

    /* freeze and hold for root: its queued mail is frozen, root is not held */
    write_h_login("1xVYNi-0001Xt-0R", "root 0 0", "--ident root\n-local\n");
    r.id = "root";
    r.actions = CONFIG_ACTION_FREEZE | CONFIG_ACTION_HOLD;
    r.msgids = rootmsg;
    r.nmsgids = 1;
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_int_eq(fake_spawner_find(fs, "-Mf 1xVYNi-0001Xt-0R"), 0);
    ck_assert_str_eq(last.not_held, "system_login");
    ck_assert_uint_eq(last.backend_done, 0);
    ck_assert(!file_has(blocklist, "root"));
    ck_assert(action_is_active(a, SCOPE_ACCOUNT, "root")); /* frozen mail: a release thaws */

    /* the spool's "login uid gid" line tells a system login the passwd file does not list */
    write_h_login("1xVYNi-0001Xt-0L", "legacy 500 500", "--ident legacy\n-local\n");
    r.id = "legacy";
    r.actions = CONFIG_ACTION_HOLD;
    r.msgids = legacymsg;
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_str_eq(last.not_held, "system_login");
    ck_assert(!file_has(blocklist, "legacy"));

    /* an operator's order holds anyway */
    r.id = "daemon";
    r.rule = "manual";
    r.ordered = true;
    r.msgids = NULL;
    r.nmsgids = 0;
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert(file_has(blocklist, "daemon: hold account daemon manual"));
    action_free(a);

    /* hold_system_logins: true holds them; never_hold still wins */
    cfg->hold_system_logins = true;
    a = open_action_from((struct action_params){ .passwd_file = passwd }, &fs->ops);
    ck_assert_ptr_null(action_not_holdable(a, SCOPE_ACCOUNT, "root", UINT32_MAX));
    ck_assert_str_eq(action_not_holdable(a, SCOPE_ACCOUNT, "cronmail", UINT32_MAX), "never_hold");
    action_free(a);

    /* cpanel: a login without /var/cpanel/users/NAME is not a cPanel user */
    cfg->hold_system_logins = false;
    cfg->backend = CONFIG_BACKEND_CPANEL;
    (void)snprintf(cpusers, sizeof(cpusers), "%s/cpusers", dir);
    ck_assert_int_eq(mkdir(cpusers, 0700), 0);
    (void)snprintf(path, sizeof(path), "%s/shop1", cpusers);
    f_write(path, "USER=shop1\n");
    a = open_action_from(
        (struct action_params){ .passwd_file = passwd, .cpanel_users_dir = cpusers }, &fs->ops);
    ck_assert_str_eq(action_not_holdable(a, SCOPE_ACCOUNT, "legacy", UINT32_MAX),
                     "not_cpanel_user");
    ck_assert_ptr_null(action_not_holdable(a, SCOPE_SCRIPT, "shop1:/home/shop1/x", UINT32_MAX));
    action_free(a);
    cfg->never_hold = NULL;
    cfg->nnever_hold = 0;
}
END_TEST

START_TEST(test_action_rejects_bad_input)
{
    struct action *a = open_action(&fs->ops, NULL);
    struct action_request r = {
        .rule = "r", .scope = SCOPE_MAILBOX, .id = "-oX@example.com", .actions = CONFIG_ACTION_HOLD
    };
    ck_assert_int_eq(action_trip(a, &r), -EINVAL);
    r.scope = SCOPE_ACCOUNT;
    r.id = "root;rm";
    ck_assert_int_eq(action_trip(a, &r), -EINVAL);
    r.id = "ok";
    r.rule = "--evil";
    ck_assert_int_eq(action_trip(a, &r), -EINVAL);
    ck_assert_uint_eq(fs->ncalls, 0);
    action_free(a);
}
END_TEST

START_TEST(test_action_corrupt_ledger_refused)
{
    char path[400];
    struct action *a = NULL;
    struct action_params p = { .clock = &clk, .cfg = cfg, .state_dir = state, .spawner = &fs->ops };
    (void)snprintf(path, sizeof(path), "%s/actions.ledger", state);
    FILE *f = fopen(path, "w");
    fputs("floodgate-ledger 1\nE\tacted\tmailbox\n", f);
    fclose(f);
    ck_assert_int_eq(action_open(&p, &a), -EBADMSG);
}
END_TEST

/* A NUL byte in the ledger (a damaged file) is refused, not read as its end. */
START_TEST(test_action_ledger_nul_refused)
{
    char path[400];
    struct action *a = NULL;
    struct action_params p = { .clock = &clk, .cfg = cfg, .state_dir = state, .spawner = &fs->ops };
    static const char text[] = "floodgate-ledger 2\n\0E\tacted\n";
    (void)snprintf(path, sizeof(path), "%s/actions.ledger", state);
    FILE *f = fopen(path, "w");
    ck_assert_uint_eq(fwrite(text, 1, sizeof(text) - 1, f), sizeof(text) - 1);
    fclose(f);
    ck_assert_int_eq(action_open(&p, &a), -EBADMSG);
}
END_TEST

/* cpanel backend against the stand-in scripts, with the real spawner. */

static void
setup_stubs(void)
{
    char cmd[2048];
    (void)snprintf(stubdir, sizeof(stubdir), "%s/bin", dir);
    (void)snprintf(cmd, sizeof(cmd),
                   "mkdir -p %s && cp %s/../e2e/cpanel-stub/whmapi1 "
                   "%s/../e2e/cpanel-stub/uapi %s/",
                   stubdir, FG_FIXTURES_DIR, FG_FIXTURES_DIR, stubdir);
    ck_assert_int_eq(system(cmd), 0);
    (void)snprintf(holdf, sizeof(holdf), "%s/outgoing_mail_hold_users", dir);
    (void)snprintf(suspf, sizeof(suspf), "%s/outgoing_mail_suspended_users", dir);
    (void)snprintf(argvlog, sizeof(argvlog), "%s/argv.log", dir);
    free(cfg->whmapi1_path);
    free(cfg->uapi_path);
    (void)snprintf(cmd, sizeof(cmd), "%s/whmapi1", stubdir);
    cfg->whmapi1_path = strdup(cmd);
    (void)snprintf(cmd, sizeof(cmd), "%s/uapi", stubdir);
    cfg->uapi_path = strdup(cmd);
    cfg->backend = CONFIG_BACKEND_CPANEL;
}

static struct action *
open_cpanel(struct spawner *sp)
{
    return open_action_from((struct action_params){ .loop = EV_DEFAULT,
                                                    .hold_users_file = holdf,
                                                    .suspended_users_file = suspf },
                            sp);
}

START_TEST(test_action_cpanel_stub_mailbox_suspend)
{
    struct spawner *sp;
    struct action *a;
    struct action_request r = box_req(CONFIG_ACTION_SUSPEND);

    setup_stubs();
    sp = spawner_new(EV_DEFAULT, state, NULL);
    a = open_cpanel(sp);
    ck_assert_int_eq(action_trip(a, &r), 0);
    ev_run(EV_DEFAULT, 0);
    ck_assert_int_eq(ndone, 1);
    ck_assert_int_eq(last.backend_err, 0);
    ck_assert_uint_eq(last.backend_done, CONFIG_ACTION_SUSPEND);
    ck_assert(file_has(argvlog, "uapi --user=acct1 --output=json Email suspend_outgoing "
                                "email=box@example.com"));
    ck_assert(file_has(suspf, "box@example.com\n"));
    ck_assert_int_eq(action_release(a, SCOPE_MAILBOX, "box@example.com"), 0);
    ev_run(EV_DEFAULT, 0);
    ck_assert(file_has(argvlog, "Email unsuspend_outgoing email=box@example.com"));
    ck_assert(!file_has(suspf, "box@example.com"));
    action_free(a);
    spawner_free(sp);
}
END_TEST

START_TEST(test_action_cpanel_stub_preexisting_and_failure)
{
    struct spawner *sp;
    struct action *a;
    FILE *f;

    setup_stubs();
    f = fopen(holdf, "w");
    fputs("# held by the admin\nacct2\n", f);
    fclose(f);
    sp = spawner_new(EV_DEFAULT, state, NULL);
    a = open_cpanel(sp);
    struct action_request r = {
        .rule = "r",
        .scope = SCOPE_ACCOUNT,
        .id = "acct2",
        .actions = CONFIG_ACTION_HOLD,
        .ordered = true /* nothing queued to confirm: an operator's order */
    };
    ck_assert_int_eq(action_trip(a, &r), 0);
    ev_run(EV_DEFAULT, 0);
    ck_assert(last.backend_preexisting);
    ck_assert_int_eq(access(argvlog, F_OK), -1); /* no call: it was held already */
    ck_assert_int_eq(action_release(a, SCOPE_ACCOUNT, "acct2"), 0);
    ev_run(EV_DEFAULT, 0);
    ck_assert_int_eq(access(argvlog, F_OK), -1); /* not ours: not undone */
    ck_assert(file_has(holdf, "acct2"));

    /* WHM says no: metadata.result 0 */
    struct action_request r2 = {
        .rule = "r",
        .scope = SCOPE_ACCOUNT,
        .id = "fgfail",
        .actions = CONFIG_ACTION_SUSPEND,
        .ordered = true /* nothing queued to confirm: an operator's order */
    };
    ck_assert_int_eq(action_trip(a, &r2), 0);
    ev_run(EV_DEFAULT, 0);
    ck_assert(file_has(argvlog, "whmapi1 --output=json suspend_outgoing_email user=fgfail"));
    ck_assert_int_eq(last.backend_err, -EIO);
    ck_assert(audit_has("metadata.result=0: The user fgfail is not a cPanel user."));
    /* an account hold with the real whmapi1 stand-in */
    struct action_request r3 = {
        .rule = "r",
        .scope = SCOPE_ACCOUNT,
        .id = "acct3",
        .actions = CONFIG_ACTION_HOLD,
        .ordered = true /* nothing queued to confirm: an operator's order */
    };
    ck_assert_int_eq(action_trip(a, &r3), 0);
    ev_run(EV_DEFAULT, 0);
    ck_assert(file_has(argvlog, "whmapi1 --output=json hold_outgoing_email user=acct3"));
    ck_assert(file_has(holdf, "acct3"));
    ck_assert_int_eq(action_release(a, SCOPE_ACCOUNT, "acct3"), 0);
    ev_run(EV_DEFAULT, 0);
    ck_assert(file_has(argvlog, "whmapi1 --output=json release_outgoing_email user=acct3"));
    ck_assert(!file_has(holdf, "acct3"));
    action_free(a);
    spawner_free(sp);
}
END_TEST

struct list_seen {
    size_t n;
    struct action_info first;
    char id[128], rule[64], reason[256], state[16];
};

static void
on_list(void *ctx, const struct action_info *in)
{
    struct list_seen *l = ctx;

    if (l->n++ == 0) {
        l->first = *in;
        (void)snprintf(l->id, sizeof(l->id), "%s", in->id);
        (void)snprintf(l->rule, sizeof(l->rule), "%s", in->rule);
        (void)snprintf(l->reason, sizeof(l->reason), "%s", in->reason);
        (void)snprintf(l->state, sizeof(l->state), "%s", in->state);
    }
}

START_TEST(test_action_list_and_manual_reason)
{
    struct action *a = open_action(&fs->ops, NULL);
    struct action_request r = box_req(CONFIG_ACTION_FREEZE | CONFIG_ACTION_HOLD);
    struct list_seen l = { 0 };
    struct action_info in;
    char longer[ACTION_REASON_MAX + 2];

    /* reasons are validated: control characters, non-ASCII, empty, over the cap */
    r.rule = "manual";
    r.reason = "bad\nline";
    ck_assert_int_eq(action_trip(a, &r), -EINVAL);
    r.reason = "caf\xc3\xa9";
    ck_assert_int_eq(action_trip(a, &r), -EINVAL);
    r.reason = "";
    ck_assert_int_eq(action_trip(a, &r), -EINVAL);
    memset(longer, 'x', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    r.reason = longer;
    ck_assert_int_eq(action_trip(a, &r), -EINVAL);
    ck_assert_uint_eq(action_list(a, true, on_list, &l), 0);
    longer[ACTION_REASON_MAX] = '\0'; /* exactly at the cap */
    r.reason = longer;
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_int_eq(action_release(a, SCOPE_MAILBOX, "box@example.com"), 0);
    fake_spawner_flush(fs);
    /* a manual hold with a reason: listed, audited and kept across a restart */
    r.reason = "spam run, ticket 42";
    clock_fake_advance(&fclock, 5000);
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert(audit_has("\"reason\":\"spam run, ticket 42\""));
    ck_assert_uint_eq(action_list(a, false, on_list, &l), 1);
    ck_assert_str_eq(l.id, "box@example.com");
    ck_assert_str_eq(l.rule, "manual");
    ck_assert_str_eq(l.reason, "spam run, ticket 42");
    ck_assert_str_eq(l.state, "acted");
    ck_assert(l.first.active);
    ck_assert_uint_eq(l.first.want, CONFIG_ACTION_HOLD);
    ck_assert_uint_eq(l.first.done, CONFIG_ACTION_HOLD);
    ck_assert_uint_eq(l.first.nfrozen, 2);
    ck_assert_int_eq(l.first.acted_ms, T0 + 5000);
    ck_assert_int_eq(l.first.released_ms, 0); /* a new trip: the earlier release is past */
    ck_assert_str_eq(l.first.account, "acct1");
    ck_assert_uint_eq(action_list(a, false, NULL, NULL), 1); /* counting only */
    action_free(a);
    a = open_action(&fs->ops, NULL); /* a restart reads the reason back from the ledger */
    ck_assert_int_eq(action_info(a, SCOPE_MAILBOX, "BOX@example.com", &in), 0);
    ck_assert_str_eq(in.reason, "spam run, ticket 42");
    ck_assert_str_eq(in.rule, "manual");
    ck_assert_int_eq(in.acted_ms, T0 + 5000);
    ck_assert_int_eq(action_info(a, SCOPE_MAILBOX, "nobody@example.com", &in), -ENOENT);
    ck_assert_int_eq(action_info(a, SCOPE_ACCOUNT, "box@example.com", &in), -ENOENT);
    /* released: no longer listed as active, still in the ledger's listing */
    clock_fake_advance(&fclock, 1000);
    ck_assert_int_eq(action_release(a, SCOPE_MAILBOX, "box@example.com"), 0);
    fake_spawner_flush(fs);
    ck_assert_uint_eq(action_list(a, false, NULL, NULL), 0);
    memset(&l, 0, sizeof(l));
    ck_assert_uint_eq(action_list(a, true, on_list, &l), 1);
    ck_assert_str_eq(l.state, "released");
    ck_assert(!l.first.active);
    ck_assert_int_eq(l.first.released_ms, T0 + 6000);
    /* a rule's trip afterwards carries no reason */
    r = box_req(CONFIG_ACTION_FREEZE);
    ck_assert_int_eq(action_trip(a, &r), 0);
    fake_spawner_flush(fs);
    ck_assert_int_eq(action_info(a, SCOPE_MAILBOX, "box@example.com", &in), 0);
    ck_assert_str_eq(in.reason, "");
    ck_assert_str_eq(in.rule, "mailbox-burst");
    action_free(a);
}
END_TEST

static Suite *
action_suite(void)
{
    Suite *s = suite_create("action");
    TCase *tc = tcase_create("fake");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_action_order_freeze_hold_alert);
    tcase_add_test(tc, test_action_monitor_spawns_nothing);
    tcase_add_test(tc, test_action_unconfirmed_holds_nothing);
    tcase_add_test(tc, test_action_confirm_without_freeze);
    tcase_add_test(tc, test_action_monitor_says_unconfirmed);
    tcase_add_test(tc, test_action_ledger_failure_acts_not);
    tcase_add_test(tc, test_action_release_refused_without_ledger);
    tcase_add_test(tc, test_action_circuit_breaker);
    tcase_add_test(tc, test_action_breaker_over_old_ring);
    tcase_add_test(tc, test_action_breaker_sliding);
    tcase_add_test(tc, test_action_step_durations);
    tcase_add_test(tc, test_action_step_durations_sync_backend);
    tcase_add_test(tc, test_action_ledger_restart);
    tcase_add_test(tc, test_action_release_thaws_exactly_ours);
    tcase_add_test(tc, test_action_release_keeps_unthawed);
    tcase_add_test(tc, test_action_failed_undo_keeps_mail_frozen);
    tcase_add_test(tc, test_action_set_config_keeps_jobs);
    tcase_add_test(tc, test_action_restart_during_hold_is_ours);
    tcase_add_test(tc, test_action_restart_during_freeze_is_ours);
    tcase_add_test(tc, test_action_audit_truncates_id_lists);
    tcase_add_test(tc, test_action_trip_enomem_leaves_nothing);
    tcase_add_test(tc, test_action_merge_respects_frozen_max);
    tcase_add_test(tc, test_action_exim_lines_before_operator_lines);
    tcase_add_test(tc, test_action_spool_id_must_match);
    tcase_add_test(tc, test_action_adopt_frozen);
    tcase_add_test(tc, test_action_frozen_times);
    tcase_add_test(tc, test_action_list_and_manual_reason);
    tcase_add_test(tc, test_action_late_arrivals_share_one_freeze);
    tcase_add_test(tc, test_action_batches);
    tcase_add_test(tc, test_action_exim_script_key_quoted);
    tcase_add_test(tc, test_action_trip_freezes_backlog);
    tcase_add_test(tc, test_action_script_backlog_by_cwd);
    tcase_add_test(tc, test_action_release_thaws_acl_frozen);
    tcase_add_test(tc, test_action_scan_steps_and_cap);
    tcase_add_test(tc, test_action_already_frozen_logged);
    tcase_add_test(tc, test_action_system_logins_not_held);
    tcase_add_test(tc, test_action_rejects_bad_input);
    tcase_add_test(tc, test_action_script_any_bytes);
    tcase_add_test(tc, test_action_corrupt_ledger_refused);
    tcase_add_test(tc, test_action_ledger_nul_refused);
    suite_add_tcase(s, tc);
    tc = tcase_create("cpanel_stub");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_action_cpanel_stub_mailbox_suspend);
    tcase_add_test(tc, test_action_cpanel_stub_preexisting_and_failure);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(action_suite());
}
