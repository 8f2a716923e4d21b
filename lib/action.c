/*
 * action.c - freeze, then hold or suspend, then report; the ledger; release.
 *
 * Owns: turning a verdict into external effects in a fixed order (ARCHITECTURE.md)
 * (freeze queued mail first, so neither a suspension's bounces nor a hold's notices are
 * generated for it; then the backend step), confirming every message id in the spool
 * before exim -Mf sees it (a log line is evidence, not proof), the per-hour circuit
 * breaker, monitor mode, and the ledger that makes all of it survive a restart. Does not
 * own: deciding (lib/policy), alerting (the done callback hands the outcome to the
 * caller), exemptions (the caller does not trip exempt identities), the backends'
 * mechanics (action_<name>.c).
 *
 * Requests become jobs in one FIFO, and only the head job runs, one external command at
 * a time: this is the rate cap on exim -Mf (one batch of cfg->freeze_batch ids in flight,
 * whatever the number of identities) and it keeps the order of effects obvious. A job is
 * a small state machine: FREEZE (batches, then one delayed retry of "is locked" ids) ->
 * BACKEND -> DONE for a trip; UNBLOCK -> THAW -> DONE for a release. We learn which ids
 * we froze from exim's per-id lines ("Message <id> is now frozen"), never from its exit
 * status, which is 1 as soon as any id did not change. "is already frozen" ids are not
 * recorded as ours: someone else froze them and a release must not thaw them.
 *
 * Ledger: a text file, one "E" line per identity followed by its "F <msgid>" lines,
 * fields tab-separated and percent-encoded. A backend step is recorded as attempted before
 * it starts: if a restart cuts it short, the backend answers "already" when it is re-run,
 * and that answer must count as floodgate's doing, or release would never undo it. In
 * the same way the ids of an exim -Mf batch are written as "P <msgid>" lines before it
 * runs; after a restart they are frozen again and "is already frozen" among them is ours.
 * The ledger is rewritten whole, atomically, after every step; entries released more than
 * ACTION_LEDGER_KEEP_MS ago are dropped then.
 */
#include "action.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ev.h>

#include "action_backend.h"
#include "log.h"
#include "state.h"
#include "util.h"

#define ACTION_LEDGER_NAME     "actions.ledger"
#define ACTION_LEDGER_MAGIC    "floodgate-ledger 2"
#define ACTION_LEDGER_MAGIC_V1 "floodgate-ledger 1"      /* no attempted field: still read */
#define ACTION_LEDGER_MAX      (64u << 20)               /* refuse to load a larger ledger */
#define ACTION_LEDGER_KEEP_MS  (30LL * 24 * 3600 * 1000) /* released entries kept 30 days */
#define ACTION_FROZEN_MAX      100000 /* ids recorded per identity; more are not frozen */
#define ACTION_BATCH_MAX       500    /* argv size; config.c rejects a larger freeze_batch */
#define ACTION_LOCKED_RETRY_MS 2000   /* "is locked": a delivery is running; try once more */
/* An audit line: two id lists of up to ACTION_AUDIT_IDS_MAX each, exim's stdout and stderr
 * (SPAWN_OUTPUT_MAX each, up to 6 bytes per byte once JSON-escaped) and the fixed fields. */
#define ACTION_AUDIT_IDS_MAX (16u << 10) /* bytes of ids per list; the rest are counted */
#define ACTION_AUDIT_MAX     (2 * ACTION_AUDIT_IDS_MAX + 12 * SPAWN_OUTPUT_MAX + (8u << 10))
#define ACTION_RULE_MAX      CONFIG_NAME_MAX
#define ACTION_LIST_MAX      (16u << 20) /* cPanel's outgoing_mail_*_users files */

/* ENTRY_UNCONFIRMED: tripped, nothing done (no message confirmed in the spool); not active */
enum action_state { ENTRY_ACTING = 0, ENTRY_ACTED, ENTRY_RELEASED, ENTRY_UNCONFIRMED };
/* The names of enum action_state, in the ledger and in action_info. */
static const char *const action_state_names[] = { "acting", "acted", "released", "unconfirmed" };

struct action_entry {
    struct action_entry *next;
    enum usertable_scope scope;
    char *id;
    char *account; /* may be NULL */
    char rule[ACTION_RULE_MAX];
    enum action_state state;
    uint32_t want;      /* CONFIG_ACTION_HOLD/SUSPEND asked for */
    uint32_t done;      /* ... applied by us */
    uint32_t attempted; /* ... started, outcome not known yet (a restart may cut it) */
    bool preexisting;   /* backend said it was already in force, not ours */
    int64_t acted_ms, released_ms;
    char **frozen;
    size_t nfrozen, capfrozen;
    int64_t *frozen_ms; /* frozen_ms[i]: wall time frozen[i] was recorded (0: unknown, a
                         * ledger line without it); sized capfrozen_ms >= nfrozen */
    size_t capfrozen_ms;
    char **pending; /* ids of an exim -Mf batch running now: its outcome is not known yet */
    size_t npending, cappending;
    bool busy;    /* a job refers to it */
    char *reason; /* a manual action's reason, or NULL */
};

enum job_kind { JOB_TRIP, JOB_FREEZE_MORE, JOB_RELEASE, JOB_RESUME };
/* PH_SCAN: a trip's walk of the spool for the identity's backlog (then PH_FREEZE);
 * PH_RSCAN: a release's walk for what the ACL froze (then PH_THAW) */
enum job_phase { PH_FREEZE, PH_BACKEND, PH_UNBLOCK, PH_THAW, PH_DONE, PH_SCAN, PH_RSCAN };

struct action_job {
    struct action_job *next;
    struct action *a;
    enum job_kind kind;
    enum job_phase phase;
    struct action_entry *e;
    char **ids; /* to freeze, or (release) a copy of e->frozen to thaw; owned strings */
    size_t nids, capids, pos;
    size_t verified; /* ids confirmed in the spool as the identity's, frozen or not */
    bool *thawed;    /* release: ids[i] was thawed or has left the queue */
    char **locked;
    size_t nlocked;
    bool retried;
    bool rerun;            /* ids pending at a restart: "already frozen" may be our -Mf */
    uint32_t unblock_left; /* release: bits still to undo */
    bool undo_failed;      /* release: a backend undo step failed */
    struct spool_scan *scan; /* PH_SCAN, PH_RSCAN: the walk under way */
    int64_t scan_ms;         /* monotonic start of the walk */
    char **extra;            /* release: ids the ACL froze for the identity, not in e->frozen */
    size_t nextra, capextra;
    uint32_t login_uid;      /* the login's uid from a -H file naming it; UINT32_MAX unknown */
    struct action_outcome out;
};

struct action {
    struct ev_loop *loop;
    const struct clock *clock;
    const struct config *cfg;
    struct spawner *spawner;
    const struct action_backend *backend;
    bool backend_fixed; /* given by the params: a config swap keeps it */
    struct action_backend_env env;
    action_audit_fn audit;
    void *audit_ctx;
    action_done_fn done;
    void *done_ctx;
    spool_owner_fn owner;
    void *owner_ctx;
    char *exim_config_fallback; /* "-C" when cfg->exim_config is NULL; may be NULL */
    char *hold_file, *susp_file;
    char *ledger_path;
    struct action_ledger_io lio;
    struct action_entry *entries;
    struct action_job *head, *tail;
    size_t njobs;
    bool inflight;
    bool pumping;
    ev_timer retry_timer;
    ev_timer scan_timer; /* the next step of a spool walk, after the loop's other events */
    char **syslogins;    /* sorted: logins of the passwd file with uid < 1000 or >= 65534 */
    size_t nsyslogins;
    char *passwd_file, *cpanel_users_dir;
    struct action_breaker breaker; /* trips of the last hour (action_breaker_allow) */
    struct action_duration durations[ACTION_STEP__MAX];
};

static void action_step_observe(struct action *a, enum action_step step, int64_t started_ms);

static void action_pump(struct action *a);

/* Shared helpers (action_backend.h). */

int64_t
action_timeout_ms(const struct config *cfg)
{
    return cfg->action_timeout_ms > 0 ? cfg->action_timeout_ms : 30000;
}

int
action_list_contains(const char *path, const char *key)
{
    char *buf = NULL;
    size_t klen = strlen(key);
    int r = state_read_path(path, ACTION_LIST_MAX, &buf, NULL);

    /* cPanel edits these files in place: -E2BIG also means it grew while we read it. Once
     * more is enough, an edit takes milliseconds; a file really over the cap fails again. */
    if (r == -E2BIG)
        r = state_read_path(path, ACTION_LIST_MAX, &buf, NULL);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    r = 0;
    for (char *line = buf; *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        size_t k = 0;
        while (k < n && line[k] != ':' && line[k] != ' ' && line[k] != '\t' && line[k] != '\r')
            k++;
        if (line[0] != '#' && k > 0 && k == klen &&
            fg_str_eq_nocase(fg_str_make(line, k), fg_str_make(key, klen))) {
            r = 1;
            break;
        }
        if (!nl)
            break;
        line = nl + 1;
    }
    free(buf);
    return r;
}

/* Audit lines. */

/* Errors are sticky: after a failed append nothing more is added and no line is emitted,
 * so a line is whole or absent, never cut inside a field. */
struct action_audit {
    struct strbuf b;
    int err;
};

static void
audit_put(struct action_audit *au, int r)
{
    if (au->err == 0 && r < 0)
        au->err = r;
}

static void audit_str(struct action_audit *au, const char *key, const char *val, size_t len);

static void
audit_begin(const struct action *a, struct action_audit *au, const char *event, const char *rule,
            enum usertable_scope scope, const char *id)
{
    strbuf_init(&au->b, ACTION_AUDIT_MAX);
    au->err = 0;
    audit_put(au, strbuf_printf(&au->b, "{\"ts\":%lld,\"event\":\"%s\"",
                                (long long)clock_now_ms(a->clock), event));
    if (rule)
        audit_str(au, "rule", rule, strlen(rule));
    audit_str(au, "scope", usertable_scope_name(scope), strlen(usertable_scope_name(scope)));
    audit_str(au, "id", id, strlen(id));
}

static void
audit_str(struct action_audit *au, const char *key, const char *val, size_t len)
{
    if (au->err == 0)
        audit_put(au, strbuf_printf(&au->b, ",\"%s\":\"", key));
    if (au->err == 0)
        audit_put(au, strbuf_append_json(&au->b, val, len));
    if (au->err == 0)
        audit_put(au, strbuf_appends(&au->b, "\""));
}

static void
audit_num(struct action_audit *au, const char *key, long long v)
{
    if (au->err == 0)
        audit_put(au, strbuf_printf(&au->b, ",\"%s\":%lld", key, v));
}

static void
audit_bool(struct action_audit *au, const char *key, bool v)
{
    if (au->err == 0)
        audit_put(au, strbuf_printf(&au->b, ",\"%s\":%s", key, v ? "true" : "false"));
}

/* At most ACTION_AUDIT_IDS_MAX bytes of ids; the others are counted as "<key>_omitted". */
static void
audit_ids(struct action_audit *au, const char *key, char *const *ids, size_t n)
{
    size_t used = 0, i;

    if (au->err == 0)
        audit_put(au, strbuf_printf(&au->b, ",\"%s\":[", key));
    for (i = 0; i < n && au->err == 0; i++) {
        size_t len = strlen(ids[i]) + 3;
        if (used + len > ACTION_AUDIT_IDS_MAX)
            break;
        used += len;
        audit_put(au, strbuf_printf(&au->b, "%s\"%s\"", i ? "," : "", ids[i])); /* validated */
    }
    if (au->err == 0)
        audit_put(au, strbuf_appends(&au->b, "]"));
    if (i < n && au->err == 0)
        audit_put(au, strbuf_printf(&au->b, ",\"%s_omitted\":%zu", key, n - i));
}

static void
audit_result(struct action_audit *au, const struct spawn_result *res)
{
    char st[128];

    if (!res)
        return;
    spawn_result_describe(res, st, sizeof(st));
    audit_str(au, "status", st, strlen(st));
    if (res->err_len)
        audit_str(au, "stderr", res->err_text, res->err_len);
    if (res->out_len)
        audit_str(au, "stdout", res->out, res->out_len);
}

static void
audit_end(struct action *a, struct action_audit *au)
{
    if (au->err == 0)
        audit_put(au, strbuf_appends(&au->b, "}"));
    if (au->err == 0 && a->audit)
        a->audit(a->audit_ctx, strbuf_cstr(&au->b));
    else if (au->err < 0)
        (void)log_emit(LOG_WARNING, au->err, NULL, "action: audit line dropped");
    strbuf_done(&au->b);
}

static void
action_log(int prio, int err, const char *rule, enum usertable_scope scope, const char *id,
           const char *fmt_what, const char *detail)
{
    const struct log_field f[] = {
        { "MESSAGE_ID", LOG_MSGID_ACTION },
        { "RULE", rule },
        { "SCOPE", usertable_scope_name(scope) },
        { "IDENTITY", id },
        { "DETAIL", detail },
        { NULL, NULL },
    };
    (void)log_emit(prio, err, f, "action: %s", fmt_what);
}

/* Entries. */

static struct action_entry *
action_find(const struct action *a, enum usertable_scope scope, const char *id)
{
    for (struct action_entry *e = a->entries; e; e = e->next)
        if (e->scope == scope &&
            (scope == SCOPE_MAILBOX ? strcasecmp(e->id, id) == 0 : strcmp(e->id, id) == 0))
            return e;
    return NULL;
}

static void
entry_free(struct action_entry *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->nfrozen; i++)
        free(e->frozen[i]);
    free(e->frozen);
    free(e->frozen_ms);
    for (size_t i = 0; i < e->npending; i++)
        free(e->pending[i]);
    free(e->pending);
    free(e->id);
    free(e->account);
    free(e->reason);
    free(e);
}

static bool
action_ids_has(char *const *v, size_t n, const char *msgid)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], msgid) == 0)
            return true;
    return false;
}

/* Append a copy of @msgid; the array grows geometrically. */
static int
action_ids_append(char ***v, size_t *n, size_t *cap, const char *msgid)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16, bytes;
        if (!util_mul_size(ncap, sizeof(char *), &bytes))
            return -ENOMEM;
        char **nv = realloc(*v, bytes);
        if (!nv)
            return -ENOMEM;
        *v = nv;
        *cap = ncap;
    }
    if (!((*v)[*n] = strdup(msgid)))
        return -ENOMEM;
    (*n)++;
    return 0;
}

/* The same, unless @msgid is there already. */
static int
action_ids_add(char ***v, size_t *n, size_t *cap, const char *msgid)
{
    return action_ids_has(*v, *n, msgid) ? 0 : action_ids_append(v, n, cap, msgid);
}

static bool
entry_has_frozen(const struct action_entry *e, const char *msgid)
{
    return action_ids_has(e->frozen, e->nfrozen, msgid);
}

/* The id just appended at @i was frozen at @ms; on -ENOMEM the id is dropped again. */
static int
entry_frozen_at(struct action_entry *e, size_t i, int64_t ms)
{
    if (e->capfrozen_ms < e->capfrozen) {
        size_t bytes;
        int64_t *v;
        if (!util_mul_size(e->capfrozen, sizeof(int64_t), &bytes) ||
            !(v = realloc(e->frozen_ms, bytes))) {
            free(e->frozen[i]);
            e->nfrozen = i;
            return -ENOMEM;
        }
        memset(v + e->capfrozen_ms, 0, (e->capfrozen - e->capfrozen_ms) * sizeof(int64_t));
        e->frozen_ms = v;
        e->capfrozen_ms = e->capfrozen;
    }
    e->frozen_ms[i] = ms;
    return 0;
}

static int
entry_add_frozen(struct action_entry *e, const char *msgid, int64_t ms)
{
    size_t i = e->nfrozen;
    int r = action_ids_add(&e->frozen, &e->nfrozen, &e->capfrozen, msgid);

    return r == 0 && e->nfrozen > i ? entry_frozen_at(e, i, ms) : r;
}

static int
entry_append_frozen(struct action_entry *e, const char *msgid, int64_t ms)
{
    size_t i = e->nfrozen;
    int r = action_ids_append(&e->frozen, &e->nfrozen, &e->capfrozen, msgid);

    return r == 0 ? entry_frozen_at(e, i, ms) : r;
}

static int
entry_add_pending(struct action_entry *e, const char *msgid)
{
    return action_ids_add(&e->pending, &e->npending, &e->cappending, msgid);
}

static void
entry_drop_pending(struct action_entry *e, const char *msgid)
{
    for (size_t i = 0; i < e->npending; i++)
        if (strcmp(e->pending[i], msgid) == 0) {
            free(e->pending[i]);
            e->pending[i] = e->pending[--e->npending]; /* order does not matter */
            return;
        }
}

/* Ledger. */

static int
ledger_put(struct strbuf *b, const char *s)
{
    int r = 0;

    for (; *s && r == 0; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || c == '%')
            r = strbuf_printf(b, "%%%02X", c);
        else
            r = strbuf_append(b, s, 1);
    }
    return r;
}

static int
ledger_unescape(const char *p, size_t len, char **ret)
{
    char *o = malloc(len + 1);
    size_t n = 0;

    if (!o)
        return -ENOMEM;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '%') {
            unsigned v = 0;
            if (i + 2 >= len) {
                free(o);
                return -EBADMSG;
            }
            for (int k = 1; k <= 2; k++) {
                char c = p[i + (size_t)k];
                v <<= 4;
                if (c >= '0' && c <= '9')
                    v |= (unsigned)(c - '0');
                else if (c >= 'A' && c <= 'F')
                    v |= (unsigned)(c - 'A' + 10);
                else {
                    free(o);
                    return -EBADMSG;
                }
            }
            if (v == 0) {
                free(o);
                return -EBADMSG;
            }
            o[n++] = (char)v;
            i += 2;
        } else {
            o[n++] = p[i];
        }
    }
    o[n] = '\0';
    *ret = o;
    return 0;
}

/* One entry's lines. Stops at the first failed append and returns it. */
static int
ledger_put_entry(struct strbuf *b, const struct action_entry *e)
{
    int r;

    r = strbuf_printf(b, "E\t%s\t%s\t%u\t%u\t%d\t%lld\t%lld\t", action_state_names[e->state],
                      usertable_scope_name(e->scope), e->want, e->done, e->preexisting ? 1 : 0,
                      (long long)e->acted_ms, (long long)e->released_ms);
    if (r == 0)
        r = ledger_put(b, e->id);
    if (r == 0)
        r = strbuf_appends(b, "\t");
    if (r == 0)
        r = ledger_put(b, e->account ? e->account : "-");
    if (r == 0)
        r = strbuf_appends(b, "\t");
    if (r == 0)
        r = ledger_put(b, e->rule);
    if (r == 0)
        r = strbuf_printf(b, "\t%u", e->attempted);
    if (r == 0 && e->reason) /* optional last field: older ledgers have none */
        r = strbuf_appends(b, "\t");
    if (r == 0 && e->reason)
        r = ledger_put(b, e->reason);
    if (r == 0)
        r = strbuf_appends(b, "\n");
    /* F <id> [<frozen at, wall ms>]: ledgers written before the time have none */
    for (size_t i = 0; r == 0 && i < e->nfrozen; i++)
        r = e->frozen_ms[i] > 0
                ? strbuf_printf(b, "F\t%s\t%lld\n", e->frozen[i], (long long)e->frozen_ms[i])
                : strbuf_printf(b, "F\t%s\n", e->frozen[i]);
    for (size_t i = 0; r == 0 && i < e->npending; i++)
        r = strbuf_printf(b, "P\t%s\n", e->pending[i]);
    return r;
}

/*
 * Rewrite the ledger. Any failed append aborts the write: after one, a later smaller
 * append could still succeed and put F lines under the wrong E; the old file stays.
 */
static int
ledger_save(struct action *a)
{
    struct strbuf b;
    int64_t now = clock_now_ms(a->clock);
    int r;

    strbuf_init(&b, ACTION_LEDGER_MAX);
    r = strbuf_appends(&b, ACTION_LEDGER_MAGIC "\n");
    for (struct action_entry *e = a->entries; e && r == 0; e = e->next) {
        if (e->state == ENTRY_RELEASED && !e->busy && now - e->released_ms > ACTION_LEDGER_KEEP_MS)
            continue;
        r = ledger_put_entry(&b, e);
    }
    if (r == 0)
        r = a->lio.write(a->lio.ctx, a->ledger_path, strbuf_cstr(&b), b.len);
    strbuf_done(&b);
    if (r < 0)
        (void)log_emit(LOG_ERR, r, NULL, "action: cannot write the ledger %s", a->ledger_path);
    return r;
}

static int
ledger_write_default(void *ctx, const char *path, const void *data, size_t len)
{
    (void)ctx;
    return state_write_path(path, data, len, 0600);
}

/* An entry that is acting or acted: action_is_active(). */
static bool
entry_active(const struct action_entry *e)
{
    return e->state == ENTRY_ACTING || e->state == ENTRY_ACTED;
}

/* The audit line of a step not run because the ledger could not record it. */
static void
audit_ledger_failed(struct action *a, struct action_audit *au, int err)
{
    audit_str(au, "error", "ledger write failed", strlen("ledger write failed"));
    audit_str(au, "ledger", a->ledger_path, strlen(a->ledger_path));
    audit_str(au, "errno", strerror(-err), strlen(strerror(-err)));
}

/* Split @line on tabs into at most @max fields (in place). Returns the count. */
static size_t
ledger_split(char *line, char **f, size_t max)
{
    size_t n = 0;

    f[n++] = line;
    for (char *p = line; *p && n < max; p++)
        if (*p == '\t') {
            *p = '\0';
            f[n++] = p + 1;
        }
    return n;
}

static int
ledger_parse_i64(const char *s, int64_t *ret)
{
    uint64_t v;
    int r = util_parse_u64(s, strlen(s), &v);
    if (r < 0 || v > INT64_MAX)
        return -EBADMSG;
    *ret = (int64_t)v;
    return 0;
}

static int
ledger_parse_entry(char **f, size_t n, struct action_entry **ret)
{
    struct action_entry *e;
    uint32_t want, done, pre;
    int r;

    if (n != 10)
        return -EBADMSG;
    e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    if (strcmp(f[1], "acting") == 0)
        e->state = ENTRY_ACTING;
    else if (strcmp(f[1], "acted") == 0)
        e->state = ENTRY_ACTED;
    else if (strcmp(f[1], "released") == 0)
        e->state = ENTRY_RELEASED;
    else if (strcmp(f[1], "unconfirmed") == 0)
        e->state = ENTRY_UNCONFIRMED;
    else
        goto bad;
    if (usertable_scope_parse(f[2], &e->scope) < 0 ||
        util_parse_u32(f[3], strlen(f[3]), &want) < 0 ||
        util_parse_u32(f[4], strlen(f[4]), &done) < 0 ||
        util_parse_u32(f[5], strlen(f[5]), &pre) < 0 || ledger_parse_i64(f[6], &e->acted_ms) < 0 ||
        ledger_parse_i64(f[7], &e->released_ms) < 0)
        goto bad;
    e->want = want;
    e->done = done;
    e->preexisting = pre != 0;
    if ((r = ledger_unescape(f[8], strlen(f[8]), &e->id)) < 0 ||
        (r = ledger_unescape(f[9], strlen(f[9]), &e->account)) < 0)
        goto fail;
    if (strcmp(e->account, "-") == 0) {
        free(e->account);
        e->account = NULL;
    }
    *ret = e;
    return 0;
bad:
    r = -EBADMSG;
fail:
    entry_free(e);
    return r;
}

static int
ledger_load(struct action *a)
{
    char *buf = NULL, *line, *f[13];
    struct action_entry *last = NULL;
    size_t len = 0;
    int r = state_read_path(a->ledger_path, ACTION_LEDGER_MAX, &buf, &len);

    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    /* the ledger is text: a NUL would end it silently and lose every entry after it */
    if (memchr(buf, '\0', len)) {
        r = -EBADMSG;
        goto out;
    }
    line = buf;
    char *nl = strchr(line, '\n');
    size_t efields = 12;
    if (nl && (size_t)(nl - line) == strlen(ACTION_LEDGER_MAGIC_V1) &&
        memcmp(line, ACTION_LEDGER_MAGIC_V1, strlen(ACTION_LEDGER_MAGIC_V1)) == 0) {
        efields = 11;
    } else if (!nl || (size_t)(nl - line) != strlen(ACTION_LEDGER_MAGIC) ||
               memcmp(line, ACTION_LEDGER_MAGIC, strlen(ACTION_LEDGER_MAGIC)) != 0) {
        r = -EBADMSG;
        goto out;
    }
    for (line = nl + 1; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl) {
            r = -EBADMSG; /* a complete file always ends with a newline */
            goto out;
        }
        *nl = '\0';
        size_t n = ledger_split(line, f, N_ELEMS(f));
        if (strcmp(f[0], "E") == 0) {
            struct action_entry *e = NULL;
            char *rule = NULL;
            /* E, 9 fields to the account, the rule, then (version 2) attempted and an
             * optional reason */
            if (n != efields && !(efields == 12 && n == 13)) {
                r = -EBADMSG;
                goto out;
            }
            if ((r = ledger_parse_entry(f, 10, &e)) < 0)
                goto out;
            if ((r = ledger_unescape(f[10], strlen(f[10]), &rule)) < 0 ||
                strlen(rule) >= sizeof(e->rule)) {
                free(rule);
                entry_free(e);
                r = r < 0 ? r : -EBADMSG;
                goto out;
            }
            memcpy(e->rule, rule, strlen(rule) + 1);
            free(rule);
            if (n >= 12 && util_parse_u32(f[11], strlen(f[11]), &e->attempted) < 0) {
                entry_free(e);
                r = -EBADMSG;
                goto out;
            }
            if (n == 13 && (r = ledger_unescape(f[12], strlen(f[12]), &e->reason)) < 0) {
                entry_free(e);
                goto out;
            }
            if (last)
                last->next = e;
            else
                a->entries = e;
            last = e;
        } else if (strcmp(f[0], "F") == 0 && (n == 2 || n == 3) && last &&
                   spawn_valid_msgid(f[1])) {
            int64_t at = 0;
            if (n == 3 && (ledger_parse_i64(f[2], &at) < 0 || at <= 0)) {
                r = -EBADMSG;
                goto out;
            }
            /* no duplicate check: we wrote the file, and it would make loading O(n^2) */
            if ((r = entry_append_frozen(last, f[1], at)) < 0)
                goto out;
        } else if (strcmp(f[0], "P") == 0 && n == 2 && last && spawn_valid_msgid(f[1])) {
            if ((r = entry_add_pending(last, f[1])) < 0)
                goto out;
        } else {
            r = -EBADMSG;
            goto out;
        }
    }
    r = 0;
out:
    free(buf);
    return r;
}

/* Jobs. */

static void
job_free(struct action_job *j)
{
    spool_scan_free(j->scan);
    for (size_t i = 0; i < j->nextra; i++)
        free(j->extra[i]);
    free(j->extra);
    for (size_t i = 0; i < j->nids; i++)
        free(j->ids[i]);
    free(j->ids);
    free(j->thawed);
    for (size_t i = 0; i < j->nlocked; i++)
        free(j->locked[i]);
    free(j->locked);
    free(j);
}

static void
job_enqueue(struct action *a, struct action_job *j)
{
    j->a = a;
    j->e->busy = true;
    if (a->tail)
        a->tail->next = j;
    else
        a->head = j;
    a->tail = j;
    a->njobs++;
}

static struct action_job *
job_new(enum job_kind kind, struct action_entry *e, const char *what)
{
    struct action_job *j = calloc(1, sizeof(*j));

    if (!j)
        return NULL;
    j->kind = kind;
    j->e = e;
    j->out.what = what;
    j->login_uid = UINT32_MAX;
    j->out.rule = e->rule;
    j->out.scope = e->scope;
    j->out.id = e->id;
    return j;
}

/* Lower-case a mailbox, copy others: the ledger and the blocklist key on this form. */
static char *
action_norm_id(enum usertable_scope scope, const char *id)
{
    char *s = strdup(id);
    if (s && scope == SCOPE_MAILBOX)
        for (char *p = s; *p; p++)
            *p = util_ascii_lower(*p);
    return s;
}

/* A manual action's reason: printable ASCII, 1 to ACTION_REASON_MAX bytes. */
static bool
action_valid_reason(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > ACTION_REASON_MAX)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

static bool
action_valid_identity(enum usertable_scope scope, const char *id)
{
    const char *colon;
    char user[SPAWN_USER_MAX + 1];

    if (!id)
        return false;
    switch (scope) {
    case SCOPE_MAILBOX:
        return spawn_valid_mailbox(id);
    case SCOPE_ACCOUNT:
        return spawn_valid_user(id);
    case SCOPE_SCRIPT:
        /* account:directory. The directory is the bytes Exim logged (any but NUL): it is
         * a key, never an argument as it is (action_command escapes it, the other
         * backends act on the account or on message ids) */
        colon = strchr(id, ':');
        if (!colon || colon[1] == '\0' || strlen(id) >= USERTABLE_KEY_MAX ||
            util_copy_str(user, sizeof(user), fg_str_make(id, (size_t)(colon - id))) < 0)
            return false;
        return spawn_valid_user(user);
    case SCOPE__MAX:
        break;
    }
    return false;
}

/* The login of an account or script identity into @buf ("" for a mailbox or when too long). */
static void
action_login_of(enum usertable_scope scope, const char *id, char *buf, size_t size)
{
    const char *colon = scope == SCOPE_SCRIPT ? strchr(id, ':') : NULL;
    size_t n = colon ? (size_t)(colon - id) : strlen(id);

    buf[0] = '\0';
    if (scope == SCOPE_MAILBOX || (scope == SCOPE_SCRIPT && !colon) || n >= size)
        return;
    memcpy(buf, id, n);
    buf[n] = '\0';
}

/*
 * Confirm candidate ids against the spool and the identity; count them in j->verified and,
 * with @freeze, append the ones not yet frozen by us to the job (without, the first
 * confirmed id is enough). Unconfirmed ids are audited: a log line naming a message that
 * is not the identity's may be a forgery (a log line is evidence, not proof).
 */
static int
job_collect(struct action *a, struct action_job *j, const char *const *msgids, size_t n,
            bool freeze)
{
    char buf[SPOOL_HEADER_READ_MAX];
    char login[SPAWN_USER_MAX + 1];
    char **bad = NULL;
    size_t nbad = 0;
    int r = 0;

    if (n == 0)
        return 0;
    action_login_of(j->e->scope, j->e->id, login, sizeof(login));
    j->ids = calloc(n, sizeof(char *));
    bad = calloc(n, sizeof(char *));
    if (!j->ids || !bad) {
        free(bad);
        return -ENOMEM;
    }
    j->capids = n;
    for (size_t i = 0; i < n; i++) {
        const char *id = msgids[i];
        struct spool_header h;
        size_t len = 0;
        bool dup = false;

        if (!spawn_valid_msgid(id)) {
            bad[nbad++] = (char *)(uintptr_t) "(invalid)";
            continue;
        }
        for (size_t k = 0; k < j->nids && !dup; k++)
            dup = strcmp(j->ids[k], id) == 0;
        if (dup || (freeze && entry_has_frozen(j->e, id)))
            continue;
        if (freeze && j->e->nfrozen + j->nids >= ACTION_FROZEN_MAX) {
            j->out.failed += n - i;
            action_log(LOG_WARNING, 0, j->e->rule, j->e->scope, j->e->id,
                       "ACTION_FROZEN_MAX ids recorded: newer ids are not frozen", NULL);
            break;
        }
        r = spool_read_header(a->cfg->spool_dir, id, buf, sizeof(buf), &len);
        if (r == -ENOENT)
            continue; /* left the queue already */
        /* The -H file must name the id we asked for: a file copied or linked under another
         * name would confirm one message and freeze another. */
        if (r < 0 || spool_parse_header(buf, len, &h) < 0 || !fg_str_eq(h.id, id) ||
            !spool_confirm(&h, j->e->scope, j->e->id, a->owner, a->owner_ctx)) {
            bad[nbad++] = (char *)(uintptr_t)id;
            continue;
        }
        j->verified++;
        if (login[0] && fg_str_eq(h.login, login))
            j->login_uid = h.uid; /* "login uid gid": the submitting process's */
        if (!freeze)
            break; /* one confirmed message is what the hold needs */
        if (h.frozen && spool_marker_names(&h, j->e->scope, j->e->id))
            continue; /* our ACL froze it on arrival: a release finds it by its mark */
        if (!(j->ids[j->nids] = strdup(id))) {
            free(bad);
            return -ENOMEM;
        }
        j->nids++;
    }
    j->out.confirmed += j->nids;
    if (nbad) {
        struct action_audit au;
        audit_begin(a, &au, "unconfirmed", j->e->rule, j->e->scope, j->e->id);
        audit_ids(&au, "ids", bad, nbad);
        audit_end(a, &au);
        action_log(LOG_WARNING, 0, j->e->rule, j->e->scope, j->e->id,
                   "message ids not confirmed in the spool as the identity's, not acted on", NULL);
    }
    free(bad);
    return 0;
}

static size_t
action_batch(const struct action *a)
{
    uint32_t b = a->cfg->freeze_batch;
    return b == 0 ? 50 : (b > ACTION_BATCH_MAX ? ACTION_BATCH_MAX : b);
}

/* argv: exim [-C cfg] -Mf|-Mt ids... ; the strings are borrowed from the job/entry. */
static int
action_exim_argv(struct action *a, const char *op, char *const *ids, size_t n, char ***ret)
{
    size_t k = 0;
    char **argv = calloc(n + 5, sizeof(char *));

    if (!argv)
        return -ENOMEM;
    char *conf = a->cfg->exim_config ? a->cfg->exim_config : a->exim_config_fallback;

    argv[k++] = a->cfg->exim_path;
    if (conf) {
        argv[k++] = (char *)(uintptr_t) "-C";
        argv[k++] = conf;
    }
    argv[k++] = (char *)(uintptr_t)op;
    for (size_t i = 0; i < n; i++)
        argv[k++] = ids[i];
    argv[k] = NULL;
    *ret = argv;
    return 0;
}

/* Does exim's output say "Message <id> <what>"? */
static bool
action_exim_says(const char *out, const char *id, const char *what)
{
    char needle[64];
    (void)snprintf(needle, sizeof(needle), "Message %s %s", id, what);
    return strstr(out, needle) != NULL;
}

struct job_batch {
    struct action_job *j;
    size_t start, n;
    bool thaw;
    int64_t started_ms; /* monotonic */
};

static void
job_batch_done(void *ctx, const struct spawn_result *res)
{
    struct job_batch *bt = ctx;
    struct action_job *j = bt->j;
    struct action *a = j->a;
    struct action_entry *e = j->e;
    char **ids = j->ids;
    char **mine = calloc(bt->n ? bt->n : 1, sizeof(char *));
    size_t nmine = 0, nfail = 0, nalready = 0, ngone = 0;
    struct action_audit au;
    char st[128];

    action_step_observe(a, bt->thaw ? ACTION_STEP_THAW : ACTION_STEP_FREEZE, bt->started_ms);
    for (size_t i = bt->start; i < bt->start + bt->n; i++) {
        const char *id = ids[i];
        char gone[64];

        /* "Spool data file for <id> does not exist": it left the queue; not a failure. */
        (void)snprintf(gone, sizeof(gone), "%s does not exist", id);
        if (strstr(res->out, gone) || strstr(res->err_text, gone)) {
            if (bt->thaw)
                j->thawed[i] = true; /* nothing left to thaw: forget it */
            ngone++;
            continue;
        }
        if (!bt->thaw && action_exim_says(res->out, id, "is now frozen")) {
            if (entry_add_frozen(e, id, clock_now_ms(a->clock)) == 0 && mine)
                mine[nmine++] = ids[i];
            j->out.frozen++;
        } else if (!bt->thaw && action_exim_says(res->out, id, "is locked") && !j->retried) {
            char **l = realloc(j->locked, (j->nlocked + 1) * sizeof(char *));
            if (l) {
                j->locked = l;
                if ((l[j->nlocked] = strdup(id)))
                    j->nlocked++;
            }
        } else if (!bt->thaw && action_exim_says(res->out, id, "is already frozen")) {
            nalready++;
            if (!j->rerun)
                continue; /* frozen by someone else: not ours to thaw later */
            if (entry_add_frozen(e, id, clock_now_ms(a->clock)) == 0 && mine)
                mine[nmine++] = ids[i]; /* our -Mf ran before the restart */
            j->out.frozen++;
        } else if (bt->thaw && (action_exim_says(res->out, id, "is no longer frozen") ||
                                action_exim_says(res->out, id, "is not frozen"))) {
            j->thawed[i] = true;
            if (mine)
                mine[nmine++] = ids[i];
            j->out.frozen++;
        } else {
            nfail++; /* exim failed, timed out, or said something we do not know */
        }
    }
    j->out.failed += nfail;
    if (!bt->thaw)
        for (size_t i = bt->start; i < bt->start + bt->n; i++)
            entry_drop_pending(e, ids[i]);
    audit_begin(a, &au, bt->thaw ? "thaw" : "freeze", e->rule, e->scope, e->id);
    audit_ids(&au, "ids", ids + bt->start, bt->n);
    audit_ids(&au, bt->thaw ? "thawed" : "frozen", mine, nmine);
    audit_bool(&au, "ok", nfail == 0);
    audit_result(&au, res);
    audit_end(a, &au);
    spawn_result_describe(res, st, sizeof(st));
    {
        /* per id, as exim said it: its exit status is 1 as soon as one id did not change */
        char what[400], more[96] = "";
        size_t k = 0;
        if (nalready && !j->rerun)
            k += (size_t)snprintf(more + k, sizeof(more) - k, ", %zu already frozen", nalready);
        if (ngone && k < sizeof(more))
            k += (size_t)snprintf(more + k, sizeof(more) - k, ", %zu left the queue", ngone);
        if (nfail && k < sizeof(more))
            (void)snprintf(more + k, sizeof(more) - k, ", %zu failed", nfail);
        (void)snprintf(what, sizeof(what), "exim %s: %zu of %zu ids %s%s (%s)",
                       bt->thaw ? "-Mt" : "-Mf", nmine, bt->n, bt->thaw ? "thawed" : "frozen", more,
                       st);
        action_log(nfail ? LOG_WARNING : LOG_NOTICE, 0, e->rule, e->scope, e->id, what,
                   res->err_len ? res->err_text : NULL);
    }
    free(mine);
    free(bt);
    (void)ledger_save(a);
    a->inflight = false;
    action_pump(a);
}

/* Start one exim batch over ids[start..]; returns 1 started, 0 nothing started. */
static int
job_start_batch(struct action *a, struct action_job *j, bool thaw)
{
    char **ids = j->ids;
    size_t n = j->nids - j->pos, batch = action_batch(a);
    struct job_batch *bt;
    char **argv = NULL;
    int r;

    if (n > batch)
        n = batch;
    bt = calloc(1, sizeof(*bt));
    if (!bt || action_exim_argv(a, thaw ? "-Mt" : "-Mf", ids + j->pos, n, &argv) < 0) {
        free(bt);
        j->out.failed += n;
        j->pos += n;
        return 0;
    }
    bt->j = j;
    bt->start = j->pos;
    bt->n = n;
    bt->thaw = thaw;
    j->pos += n;
    if (!thaw) {
        /* on disk before exim runs, so a restart knows which ids may be frozen by us; if
         * the ledger cannot say so, exim does not run */
        for (size_t i = 0; i < n; i++)
            (void)entry_add_pending(j->e, ids[bt->start + i]);
        r = ledger_save(a);
        if (r < 0) {
            struct action_audit au;
            for (size_t i = 0; i < n; i++)
                entry_drop_pending(j->e, ids[bt->start + i]);
            audit_begin(a, &au, "freeze", j->e->rule, j->e->scope, j->e->id);
            audit_ids(&au, "ids", ids + bt->start, n);
            audit_bool(&au, "ok", false);
            audit_ledger_failed(a, &au, r);
            audit_end(a, &au);
            action_log(LOG_ERR, r, j->e->rule, j->e->scope, j->e->id,
                       "exim -Mf not run: the ledger cannot record it", a->ledger_path);
            j->out.failed += n;
            j->out.ledger_err = r;
            free(argv);
            free(bt);
            return 0;
        }
    }
    bt->started_ms = clock_mono_ms(a->clock);
    r = spawner_run(a->spawner, argv, action_timeout_ms(a->cfg), job_batch_done, bt);
    free(argv);
    if (r < 0) {
        struct action_audit au;
        audit_begin(a, &au, thaw ? "thaw" : "freeze", j->e->rule, j->e->scope, j->e->id);
        audit_ids(&au, "ids", ids + bt->start, n);
        audit_bool(&au, "ok", false);
        audit_str(&au, "error", strerror(-r), strlen(strerror(-r)));
        audit_end(a, &au);
        action_log(LOG_ERR, r, j->e->rule, j->e->scope, j->e->id, "cannot run exim", NULL);
        for (size_t i = 0; !thaw && i < n; i++)
            entry_drop_pending(j->e, ids[bt->start + i]);
        j->out.failed += n;
        free(bt);
        return 0;
    }
    a->inflight = true;
    return 1;
}

/* The retry and the scan timer: the wait is over, the pump takes the next step. */
static void
action_resume_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct action *a = w->data;

    (void)loop;
    (void)revents;
    a->inflight = false;
    action_pump(a);
}

/* The locked ids become the job's ids for one more pass after a short delay. */
static int
job_retry_locked(struct action *a, struct action_job *j)
{
    for (size_t i = 0; i < j->nids; i++)
        free(j->ids[i]);
    free(j->ids);
    j->ids = j->locked;
    j->nids = j->capids = j->nlocked;
    j->locked = NULL;
    j->nlocked = 0;
    j->pos = 0;
    j->retried = true;
    if (!a->loop)
        return 0;
    ev_timer_set(&a->retry_timer, (double)ACTION_LOCKED_RETRY_MS / 1000.0, 0.);
    ev_timer_start(a->loop, &a->retry_timer);
    a->inflight = true;
    return 1;
}

/* The step a backend call is: hold or suspend, or its undoing. */
static enum action_step
action_be_op_step(uint32_t op, bool undo)
{
    if (op & CONFIG_ACTION_SUSPEND)
        return undo ? ACTION_STEP_UNSUSPEND : ACTION_STEP_SUSPEND;
    return undo ? ACTION_STEP_UNHOLD : ACTION_STEP_HOLD;
}

static const char *
action_be_op_name(uint32_t op, bool undo)
{
    return action_step_name(action_be_op_step(op, undo));
}

static void
action_target_of(const struct action_entry *e, struct action_target *t, char *user, size_t usize)
{
    t->scope = e->scope;
    t->id = e->id;
    t->rule = e->rule;
    t->account = e->account;
    if (e->scope == SCOPE_ACCOUNT) {
        t->account = e->id;
    } else if (e->scope == SCOPE_SCRIPT) {
        const char *colon = strchr(e->id, ':');
        if (colon && util_copy_str(user, usize, fg_str_make(e->id, (size_t)(colon - e->id))) == 0)
            t->account = user;
    }
}

struct be_call {
    struct action_job *j;
    uint32_t op;
    bool undo;
    bool rerun;         /* a restart cut an earlier attempt of this step short */
    int64_t started_ms; /* monotonic */
};

/* The file the exim backend writes, or the command the others run ("" when unset). */
static const char *
action_be_where(const struct action *a, const struct action_entry *e)
{
    const char *p = a->backend == &action_backend_exim      ? a->cfg->blocklist_file
                    : a->backend == &action_backend_command ? a->cfg->command_path
                    : e->scope == SCOPE_MAILBOX             ? a->cfg->uapi_path
                                                            : a->cfg->whmapi1_path;
    return p ? p : "";
}

static void
job_backend_result(struct action *a, struct action_job *j, const struct be_call *c, int code,
                   const struct spawn_result *res, const char *detail)
{
    uint32_t op = c->op;
    bool undo = c->undo;
    struct action_entry *e = j->e;
    struct action_audit au;
    const char *name = action_be_op_name(op, undo);
    bool resumed = false;
    char what[1280];

    if (c->started_ms >= 0)
        action_step_observe(a, action_be_op_step(op, undo), c->started_ms);
    if (!undo && code == ACTION_BE_ALREADY && c->rerun) {
        code = ACTION_BE_DONE; /* our own step, applied before a restart cut it short */
        resumed = true;
    }
    if (!undo && code > 0)
        e->attempted &= ~op;
    if (code == ACTION_BE_DONE) {
        if (undo)
            e->done &= ~op;
        else
            e->done |= op;
        j->out.backend_done |= op;
    } else if (code == ACTION_BE_ALREADY) {
        if (undo)
            e->done &= ~op; /* nothing of ours left to undo */
        else
            e->preexisting = true;
        j->out.backend_preexisting = !undo;
    } else {
        j->out.backend_err = code < 0 ? code : -EIO;
        if (undo)
            j->undo_failed = true; /* e->done keeps the bit: a later release retries */
    }
    audit_begin(a, &au, name, e->rule, e->scope, e->id);
    audit_str(&au, "backend", a->backend->name, strlen(a->backend->name));
    audit_bool(&au, "ok", code > 0);
    if (code == ACTION_BE_ALREADY)
        audit_bool(&au, "already", true);
    if (resumed)
        audit_bool(&au, "resumed", true);
    if (code < 0)
        audit_str(&au, "error", strerror(-code), strlen(strerror(-code)));
    if (detail)
        audit_str(&au, "detail", detail, strlen(detail));
    audit_result(&au, res);
    audit_end(a, &au);
    /* a failure names what the backend writes or runs, so the journal line says where */
    (void)snprintf(what, sizeof(what), "%s %s through %s%s%s", name,
                   code == ACTION_BE_DONE      ? "done"
                   : code == ACTION_BE_ALREADY ? "already in force (not ours)"
                                               : "failed",
                   a->backend->name, code > 0 ? "" : " ", code > 0 ? "" : action_be_where(a, e));
    action_log(code > 0 ? LOG_NOTICE : LOG_ERR, code < 0 ? code : 0, e->rule, e->scope, e->id, what,
               detail ? detail : (res && res->err_len ? res->err_text : NULL));
    (void)ledger_save(a);
}

static void
job_backend_done(void *ctx, int code, const struct spawn_result *res, const char *detail)
{
    struct be_call *c = ctx;
    struct action_job *j = c->j;
    struct action *a = j->a;

    job_backend_result(a, j, c, code, res, detail);
    free(c);
    a->inflight = false;
    action_pump(a);
}

/* Returns 1 when a command is in flight, 0 when the step finished synchronously. */
static int
job_backend_call(struct action *a, struct action_job *j, uint32_t op, bool undo)
{
    struct action_target t;
    char user[SPAWN_USER_MAX + 1];
    struct be_call *c = calloc(1, sizeof(*c));
    int r;

    if (!c) {
        struct be_call tmp = { .j = j, .op = op, .undo = undo, .started_ms = -1 }; /* not run */
        job_backend_result(a, j, &tmp, -ENOMEM, NULL, NULL);
        return 0;
    }
    c->j = j;
    c->op = op;
    c->undo = undo;
    if (!undo) {
        uint32_t before = j->e->attempted;
        c->rerun = (before & op) != 0;
        j->e->attempted |= op;
        r = ledger_save(a); /* on disk before the backend can act */
        if (r < 0) {
            /* not run: a hold the ledger does not know of could never be released */
            j->e->attempted = before;
            j->out.ledger_err = r;
            c->started_ms = -1;
            job_backend_result(a, j, c, r, NULL, "not run: the ledger cannot record it");
            free(c);
            return 0;
        }
    }
    action_target_of(j->e, &t, user, sizeof(user));
    c->started_ms = clock_mono_ms(a->clock);
    if (undo)
        r = a->backend->release(&a->env, &t, op, job_backend_done, c);
    else if (op & CONFIG_ACTION_SUSPEND)
        r = a->backend->suspend(&a->env, &t, job_backend_done, c);
    else
        r = a->backend->hold(&a->env, &t, job_backend_done, c);
    if (r == ACTION_BE_PENDING) {
        a->inflight = true;
        return 1;
    }
    job_backend_result(a, j, c, r, NULL, NULL);
    free(c);
    return 0;
}

/*
 * A release thaws a copy of the entry's ids: e->frozen keeps each id until exim said it
 * was thawed, so a failed or timed-out exim -Mt leaves it for the next release.
 */
static int
job_thaw_prepare(struct action_job *j)
{
    const struct action_entry *e = j->e;
    size_t total = e->nfrozen + j->nextra;

    if (total == 0)
        return 0;
    j->ids = calloc(total, sizeof(char *));
    j->thawed = calloc(total, sizeof(bool));
    if (!j->ids || !j->thawed)
        return -ENOMEM;
    j->capids = total;
    for (size_t i = 0; i < e->nfrozen; i++) {
        if (!(j->ids[i] = strdup(e->frozen[i])))
            return -ENOMEM;
        j->nids++;
    }
    /* then what the ACL froze for the identity (found by the walk, not in the ledger):
     * after the ledger's copies, so job_thaw_settle() pairs those up as before */
    for (size_t i = 0; i < j->nextra; i++) {
        j->ids[j->nids++] = j->extra[i];
        j->extra[i] = NULL;
    }
    j->nextra = 0;
    return 0;
}

/* A trip's walk: the identity's queued messages the log did not name. */
static void
job_scan_trip_cb(void *ctx, const char *msgid, const struct spool_header *h)
{
    struct action_job *j = ctx;
    struct action *a = j->a;
    struct action_entry *e = j->e;

    if (h->frozen)
        return; /* frozen already: by our ACL (a release finds it by its mark) or by others */
    /* a script's messages are known only by the directory the ACL recorded */
    if (e->scope == SCOPE_SCRIPT && !h->cwd.p)
        return;
    if (!spool_confirm(h, e->scope, e->id, a->owner, a->owner_ctx))
        return;
    if (entry_has_frozen(e, msgid) || action_ids_has(j->ids, j->nids, msgid))
        return;
    if (e->nfrozen + j->nids >= ACTION_FROZEN_MAX) {
        j->out.failed++;
        return;
    }
    if (action_ids_append(&j->ids, &j->nids, &j->capids, msgid) == 0) {
        j->out.backlog++;
        j->out.confirmed++;
    }
}

/* A release's walk: messages frozen on arrival by the ACL for this identity. */
static void
job_scan_release_cb(void *ctx, const char *msgid, const struct spool_header *h)
{
    struct action_job *j = ctx;
    struct action_entry *e = j->e;

    if (!h->frozen || !spool_marker_names(h, e->scope, e->id) || entry_has_frozen(e, msgid))
        return;
    if (j->nextra < ACTION_FROZEN_MAX)
        (void)action_ids_add(&j->extra, &j->nextra, &j->capextra, msgid);
}

/*
 * One step of the job's spool walk. Returns 1 when the next step waits for the loop (the
 * walk yields between steps, so a queue of ACTION_SCAN_MAX files never holds the loop for
 * more than one step), 0 when the walk is over (or could not start).
 */
static int
job_scan_step(struct action *a, struct action_job *j)
{
    bool trip = j->phase == PH_SCAN;
    spool_scan_fn fn = trip ? job_scan_trip_cb : job_scan_release_cb;
    size_t read, step;
    int r;

    if (!j->scan) {
        r = spool_scan_open(a->cfg->spool_dir, &j->scan);
        if (r < 0) {
            action_log(LOG_WARNING, r, j->e->rule, j->e->scope, j->e->id,
                       "cannot read the spool's input directory: only the ids from the log are "
                       "acted on",
                       a->cfg->spool_dir);
            return 0;
        }
        j->scan_ms = clock_mono_ms(a->clock);
    }
    for (;;) {
        read = spool_scan_files(j->scan);
        step = ACTION_SCAN_MAX - read < ACTION_SCAN_STEP ? ACTION_SCAN_MAX - read
                                                          : ACTION_SCAN_STEP;
        r = step ? spool_scan_step(j->scan, step, fn, j) : 1;
        read = spool_scan_files(j->scan);
        if (r == 1 && read < ACTION_SCAN_MAX) {
            if (!a->loop)
                continue; /* no loop to yield to (tests, tools): the whole walk now */
            ev_timer_set(&a->scan_timer, 0., 0.);
            ev_timer_start(a->loop, &a->scan_timer);
            a->inflight = true;
            return 1;
        }
        break;
    }
    j->out.scanned = read;
    {
        char what[200];
        int64_t ms = clock_mono_ms(a->clock) - j->scan_ms;
        if (r == 1)
            (void)snprintf(what, sizeof(what),
                           "spool walk stopped at %d -H files (ACTION_SCAN_MAX): later messages "
                           "of the queue were not looked at",
                           ACTION_SCAN_MAX);
        else if (trip)
            (void)snprintf(what, sizeof(what),
                           "spool walk: %zu -H files in %lld ms, %zu queued messages not in the log",
                           read, (long long)ms, j->out.backlog);
        else
            (void)snprintf(what, sizeof(what),
                           "spool walk: %zu -H files in %lld ms, %zu frozen on arrival by the ACL",
                           read, (long long)ms, j->nextra);
        action_log(r == 1 ? LOG_WARNING : LOG_INFO, 0, j->e->rule, j->e->scope, j->e->id, what,
                   NULL);
    }
    spool_scan_free(j->scan);
    j->scan = NULL;
    return 0;
}

/*
 * Forget the ids the release thawed (or that left the queue); returns how many stay. The
 * copy is in e->frozen's order and ids are only appended meanwhile (an adopted freeze), so
 * one walk pairs them up.
 */
static size_t
job_thaw_settle(struct action_job *j)
{
    struct action_entry *e = j->e;
    size_t k = 0, n = 0;

    for (size_t i = 0; i < e->nfrozen; i++) {
        bool drop = false;
        if (k < j->nids && strcmp(e->frozen[i], j->ids[k]) == 0) {
            drop = j->thawed && j->thawed[k];
            k++;
        }
        if (drop) {
            free(e->frozen[i]);
        } else {
            e->frozen_ms[n] = e->frozen_ms[i];
            e->frozen[n++] = e->frozen[i];
        }
    }
    e->nfrozen = n;
    return n;
}

static void
job_finish(struct action *a, struct action_job *j)
{
    struct action_entry *e = j->e;
    struct action_audit au;
    const char *event = "acted";

    if (j->kind == JOB_TRIP || j->kind == JOB_RESUME) {
        if (e->state == ENTRY_ACTING)
            e->state = ENTRY_ACTED;
    } else if (j->kind == JOB_RELEASE) {
        j->out.remaining = job_thaw_settle(j);
        if (j->out.remaining == 0 && !j->undo_failed) {
            event = "released";
            e->state = ENTRY_RELEASED;
            e->released_ms = clock_now_ms(a->clock);
            e->want = 0;
        } else {
            /* still active, so a second release retries what is still frozen */
            event = "release_incomplete";
        }
    } else {
        event = "freeze_more";
    }
    e->busy = false;
    {
        int r = ledger_save(a);
        if (r < 0 && j->kind == JOB_RELEASE) {
            /* done, but the ledger still lists it as held: say so (a restart would show it
             * held again, and a release then finds nothing left to undo) */
            j->out.ledger_err = r;
            action_log(LOG_ERR, r, e->rule, e->scope, e->id,
                       "released, but the ledger cannot record it", a->ledger_path);
        }
    }
    audit_begin(a, &au, event, e->rule, e->scope, e->id);
    audit_num(&au, "confirmed", (long long)j->out.confirmed);
    audit_num(&au, j->kind == JOB_RELEASE ? "thawed" : "frozen", (long long)j->out.frozen);
    audit_num(&au, "failed", (long long)j->out.failed);
    if (j->kind == JOB_RELEASE) {
        audit_num(&au, "remaining", (long long)j->out.remaining);
        audit_num(&au, "acl_frozen", (long long)j->out.acl_thawed);
    }
    if (j->kind == JOB_TRIP)
        audit_num(&au, "backlog", (long long)j->out.backlog);
    if (j->out.scanned)
        audit_num(&au, "scanned", (long long)j->out.scanned);
    if (j->out.not_held)
        audit_str(&au, "not_held", j->out.not_held, strlen(j->out.not_held));
    if (j->kind != JOB_FREEZE_MORE) {
        audit_str(&au, "backend", a->backend->name, strlen(a->backend->name));
        audit_num(&au, "backend_done", (long long)j->out.backend_done);
        audit_bool(&au, "backend_preexisting", j->out.backend_preexisting);
        audit_bool(&au, "backend_ok", j->out.backend_err == 0);
    }
    if (j->out.ledger_err < 0)
        audit_ledger_failed(a, &au, j->out.ledger_err);
    audit_end(a, &au);
    if (a->done)
        a->done(a->done_ctx, &j->out);
}

/* Run the job's next step. 1: something is in flight; 0: the job is finished. */
static int
job_step(struct action *a, struct action_job *j)
{
    for (;;) {
        switch (j->phase) {
        case PH_SCAN:
            if (j->e->state == ENTRY_RELEASED || job_scan_step(a, j) == 0) {
                j->phase = PH_FREEZE;
                continue;
            }
            return 1;
        case PH_RSCAN:
            if (job_scan_step(a, j))
                return 1;
            j->out.acl_thawed = j->nextra;
            j->phase = PH_THAW;
            j->pos = 0;
            if (job_thaw_prepare(j) < 0) {
                j->out.failed += j->e->nfrozen;
                j->phase = PH_DONE; /* nothing is marked thawed: all stay */
            }
            continue;
        case PH_FREEZE:
            if (j->kind == JOB_FREEZE_MORE && j->e->state == ENTRY_RELEASED)
                j->pos = j->nids; /* released while queued: do not freeze any more */
            if (j->pos < j->nids) {
                if (job_start_batch(a, j, false))
                    return 1;
                continue;
            }
            if (j->nlocked && !j->retried) {
                if (job_retry_locked(a, j))
                    return 1;
                continue;
            }
            j->phase = (j->kind == JOB_FREEZE_MORE) ? PH_DONE : PH_BACKEND;
            continue;
        case PH_BACKEND: {
            uint32_t op = j->e->want & ~j->e->done;
            j->phase = PH_DONE;
            if (op && !j->e->preexisting && job_backend_call(a, j, op, false))
                return 1;
            continue;
        }
        case PH_UNBLOCK: {
            uint32_t op = j->unblock_left & CONFIG_ACTION_SUSPEND ? CONFIG_ACTION_SUSPEND
                                                                  : CONFIG_ACTION_HOLD;
            if (j->undo_failed) {
                /* Thawing while the identity is still held or suspended would deliver
                 * (or bounce to forged senders) exactly the mail we stopped. */
                j->phase = PH_DONE;
                continue;
            }
            if (!j->unblock_left) {
                j->phase = PH_RSCAN; /* then PH_THAW */
                continue;
            }
            j->unblock_left &= ~op;
            if (job_backend_call(a, j, op, true))
                return 1;
            continue;
        }
        case PH_THAW:
            if (j->pos < j->nids) {
                if (job_start_batch(a, j, true))
                    return 1;
                continue;
            }
            j->phase = PH_DONE;
            continue;
        case PH_DONE:
            return 0;
        }
    }
}

static void
action_pump(struct action *a)
{
    if (a->pumping)
        return; /* a synchronous completion inside job_step: the outer loop goes on */
    a->pumping = true;
    while (a->head && !a->inflight) {
        struct action_job *j = a->head;
        if (job_step(a, j))
            break;
        a->head = j->next;
        if (!a->head)
            a->tail = NULL;
        a->njobs--;
        job_finish(a, j);
        job_free(j);
    }
    a->pumping = false;
}

static int
action_monitor_trip(struct action *a, const struct action_request *req, struct action_entry *tmp)
{
    struct action_job *j = job_new(JOB_TRIP, tmp, "trip");
    struct action_audit au;
    uint32_t op = req->actions & CONFIG_ACTION_SUSPEND ? CONFIG_ACTION_SUSPEND
                  : req->actions & CONFIG_ACTION_HOLD  ? CONFIG_ACTION_HOLD
                                                       : 0;
    int r;

    if (!j)
        return -ENOMEM;
    r = ((req->actions & CONFIG_ACTION_FREEZE) || (op && !req->ordered))
            ? job_collect(a, j, req->msgids, req->nmsgids, req->actions & CONFIG_ACTION_FREEZE)
            : 0;
    if (r == 0) {
        /* as action_trip() decides: no backend step without a confirmed message */
        j->out.unconfirmed = op && !req->ordered && j->verified == 0;
        j->out.candidates = req->nmsgids;
        audit_begin(a, &au, "would_act", tmp->rule, tmp->scope, tmp->id);
        audit_ids(&au, "would_freeze", j->ids, j->nids);
        if (op && !j->out.unconfirmed)
            audit_str(&au, "would", action_be_op_name(op, false),
                      strlen(action_be_op_name(op, false)));
        if (j->out.unconfirmed)
            audit_str(&au, "result", "unconfirmed", strlen("unconfirmed"));
        audit_str(&au, "backend", a->backend->name, strlen(a->backend->name));
        audit_end(a, &au);
        action_log(LOG_NOTICE, 0, tmp->rule, tmp->scope, tmp->id, "monitor mode: would act", NULL);
        j->out.monitor = true;
        if (a->done)
            a->done(a->done_ctx, &j->out);
    }
    job_free(j);
    return r;
}

/*
 * A trip that did nothing (@result "unconfirmed" or "ledger_failed"): audited as
 * "not_acted", logged, and reported to done() like a finished request.
 */
static void
action_not_acted(struct action *a, struct action_job *j, const char *result)
{
    struct action_entry *e = j->e;
    struct action_audit au;
    char what[160];

    audit_begin(a, &au, "not_acted", e->rule, e->scope, e->id);
    audit_str(&au, "result", result, strlen(result));
    audit_num(&au, "candidates", (long long)j->out.candidates);
    audit_num(&au, "confirmed", (long long)j->verified);
    audit_num(&au, "want", (long long)e->want);
    if (j->out.ledger_err < 0)
        audit_ledger_failed(a, &au, j->out.ledger_err);
    audit_end(a, &au);
    if (j->out.unconfirmed)
        (void)snprintf(what, sizeof(what),
                       "not acted: none of the %zu messages the log names is confirmed in the "
                       "spool as the identity's; an operator decides (hold or release)",
                       j->out.candidates);
    else
        (void)snprintf(what, sizeof(what), "not acted: the ledger cannot record it");
    action_log(LOG_ERR, j->out.unconfirmed ? 0 : j->out.ledger_err, e->rule, e->scope, e->id, what,
               j->out.unconfirmed ? NULL : a->ledger_path);
    if (a->done)
        a->done(a->done_ctx, &j->out);
}

/* A trip of a protected login whose rule asked for nothing but the hold: reported only. */
static void
action_not_held(struct action *a, struct action_job *j, const char *why)
{
    struct action_entry *e = j->e;
    struct action_audit au;
    char res[64], what[160];

    (void)snprintf(res, sizeof(res), "%s: not held", why);
    audit_begin(a, &au, "not_acted", e->rule, e->scope, e->id);
    audit_str(&au, "result", res, strlen(res));
    audit_str(&au, "not_held", why, strlen(why));
    audit_num(&au, "candidates", (long long)j->out.candidates);
    audit_end(a, &au);
    (void)snprintf(what, sizeof(what),
                   "not acted: %s (actions.never_hold, actions.hold_system_logins)", res);
    action_log(LOG_WARNING, 0, e->rule, e->scope, e->id, what, NULL);
    if (a->done)
        a->done(a->done_ctx, &j->out);
}

static int
action_name_cmp(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static bool
action_names_has(char *const *v, size_t n, const char *name)
{
    return n && bsearch(&name, v, n, sizeof(char *), action_name_cmp) != NULL;
}

static void
action_syslogins_free(struct action *a)
{
    for (size_t i = 0; i < a->nsyslogins; i++)
        free(a->syslogins[i]);
    free(a->syslogins);
    a->syslogins = NULL;
    a->nsyslogins = 0;
}

#define ACTION_PASSWD_MAX    (8u << 20)
#define ACTION_SYSLOGINS_MAX 65536

/* (Re)read the system logins (uid < 1000 or >= 65534) of the passwd file; sorted. */
static void
action_syslogins_load(struct action *a)
{
    char *buf = NULL, **v = NULL;
    size_t n = 0, cap = 0;
    int r = state_read_path(a->passwd_file, ACTION_PASSWD_MAX, &buf, NULL);

    if (r < 0) {
        /* root, Exim's user and the spool's uids still protect; the rest is unknown */
        (void)log_emit(LOG_WARNING, r, NULL, "action: cannot read %s: system logins unknown",
                       a->passwd_file);
        return;
    }
    for (char *line = buf, *nl; *line && n < ACTION_SYSLOGINS_MAX; line = nl + 1) {
        char *f[4], *end;
        size_t k = 0;
        uint32_t uid;
        nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        f[k++] = line;
        for (char *p = line; *p && k < N_ELEMS(f); p++)
            if (*p == ':') {
                *p = '\0';
                f[k++] = p + 1;
            }
        end = k >= 4 ? strchr(f[2], ':') : NULL;
        if (k >= 3 && f[0][0] && f[0][0] != '#' && f[0][0] != '+' && f[0][0] != '-' &&
            util_parse_u32(f[2], end ? (size_t)(end - f[2]) : strlen(f[2]), &uid) == 0 &&
            (uid < 1000 || uid >= 65534)) {
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                char **nv = realloc(v, ncap * sizeof(char *));
                if (!nv)
                    break;
                v = nv;
                cap = ncap;
            }
            if (!(v[n] = strdup(f[0])))
                break;
            n++;
        }
        if (!nl)
            break;
    }
    free(buf);
    if (n > 1)
        qsort(v, n, sizeof(char *), action_name_cmp);
    action_syslogins_free(a);
    a->syslogins = v;
    a->nsyslogins = n;
}

const char *
action_not_holdable(const struct action *a, enum usertable_scope scope, const char *id,
                    uint32_t uid)
{
    static const char *const exim_users[] = { "Debian-exim", "exim", "mailnull" };
    const struct config *cfg = a->cfg;
    char login[SPAWN_USER_MAX + 1];

    if (!id)
        return NULL;
    action_login_of(scope, id, login, sizeof(login));
    if (!login[0])
        return NULL;
    if (action_names_has(cfg->never_hold, cfg->nnever_hold, login))
        return "never_hold";
    if (!cfg->hold_system_logins) {
        bool exim_user = false;
        for (size_t i = 0; i < N_ELEMS(exim_users); i++)
            exim_user = exim_user || strcmp(exim_users[i], login) == 0;
        if (strcmp(login, "root") == 0 || exim_user ||
            (uid != UINT32_MAX && (uid < 1000 || uid >= 65534)) ||
            action_names_has(a->syslogins, a->nsyslogins, login))
            return "system_login";
    }
    if (a->backend == &action_backend_cpanel) { /* whmapi1 cannot hold a non-cPanel login */
        char path[CONFIG_PATH_MAX];
        struct stat st;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", a->cpanel_users_dir, login) <
                sizeof(path) &&
            stat(path, &st) < 0 && errno == ENOENT)
            return "not_cpanel_user";
    }
    return NULL;
}

int
action_trip(struct action *a, const struct action_request *req)
{
    struct action_entry *e, saved;
    struct action_job *j;
    char *account, *reason;
    const char *not_held;
    bool fresh, confirm, unconfirmed;
    uint32_t want;
    int r;

    if (!req || !req->rule || !spawn_valid_text(req->rule) ||
        strlen(req->rule) >= ACTION_RULE_MAX || !action_valid_identity(req->scope, req->id) ||
        (req->account && !spawn_valid_user(req->account)) ||
        (req->reason && !action_valid_reason(req->reason)))
        return -EINVAL;
    e = action_find(a, req->scope, req->id);
    if (e && entry_active(e)) {
        if (a->cfg->mode != CONFIG_MODE_MONITOR && (req->actions & CONFIG_ACTION_FREEZE) &&
            req->nmsgids)
            (void)action_freeze_more(a, req->scope, req->id, req->msgids, req->nmsgids);
        return -EALREADY;
    }
    /* monitor mode watches; an operator's order (floodgatectl hold, suspend) still acts */
    if (a->cfg->mode == CONFIG_MODE_MONITOR && !req->ordered) {
        struct action_entry tmp;
        memset(&tmp, 0, sizeof(tmp));
        tmp.scope = req->scope;
        tmp.id = (char *)(uintptr_t)req->id;
        memcpy(tmp.rule, req->rule, strlen(req->rule) + 1);
        return action_monitor_trip(a, req, &tmp);
    }
    want = req->actions & CONFIG_ACTION_SUSPEND ? CONFIG_ACTION_SUSPEND
           : req->actions & CONFIG_ACTION_HOLD  ? CONFIG_ACTION_HOLD
                                                : 0;
    /* a hold or suspension on the log's word alone needs one message the spool confirms;
     * an operator's order does not */
    confirm = want && !req->ordered;
    /* root, nobody, Exim's user...: counted and reported, never held automatically */
    not_held = want && !req->ordered ? action_not_holdable(a, req->scope, req->id, UINT32_MAX)
                                     : NULL;
    if (not_held) {
        want = 0;
        confirm = false;
    }
    /* Everything that can fail comes before the entry turns "acting": an entry left acting
     * with no job would block the identity for good (-EALREADY, never released). */
    fresh = !e;
    if (fresh) {
        e = calloc(1, sizeof(*e));
        if (!e || !(e->id = action_norm_id(req->scope, req->id))) {
            entry_free(e);
            return -ENOMEM;
        }
        e->scope = req->scope;
    }
    saved = *e;
    memcpy(e->rule, req->rule, strlen(req->rule) + 1); /* job_collect() audits with it */
    account = req->account ? strdup(req->account) : NULL;
    reason = req->reason ? strdup(req->reason) : NULL;
    j = job_new(JOB_TRIP, e, "trip");
    r = (!j || (req->account && !account) || (req->reason && !reason)) ? -ENOMEM : 0;
    if (r == 0 && ((req->actions & CONFIG_ACTION_FREEZE) || confirm))
        r = job_collect(a, j, req->msgids, req->nmsgids, req->actions & CONFIG_ACTION_FREEZE);
    if (r == 0 && want && !req->ordered && j->login_uid != UINT32_MAX &&
        (not_held = action_not_holdable(a, req->scope, req->id, j->login_uid))) {
        want = 0; /* the spool says the login is a system one (uid < 1000) */
        confirm = false;
    }
    if (r == 0 && not_held && !(req->actions & CONFIG_ACTION_FREEZE)) {
        /* nothing left to do: reported, no ledger record (nothing to undo) */
        j->out.not_held = not_held;
        j->out.candidates = req->nmsgids;
        action_not_held(a, j, not_held);
        goto undo; /* r == 0 */
    }
    unconfirmed = r == 0 && confirm && j->verified == 0;
    if (r == 0 && !unconfirmed &&
        !action_breaker_allow(&a->breaker, clock_mono_ms(a->clock), a->cfg->max_actions_per_hour)) {
        struct action_audit au;
        audit_begin(a, &au, "circuit_open", req->rule, req->scope, req->id);
        audit_num(&au, "max_actions_per_hour", a->cfg->max_actions_per_hour);
        audit_end(a, &au);
        action_log(LOG_ERR, 0, req->rule, req->scope, req->id,
                   "circuit breaker open: max_actions_per_hour reached, not acting", NULL);
        r = -EBUSY;
    }
    if (r < 0)
        goto undo;
    if (fresh) {
        e->next = a->entries;
        a->entries = e;
    }
    e->account = account;
    e->reason = reason;
    e->state = unconfirmed ? ENTRY_UNCONFIRMED : ENTRY_ACTING;
    e->want = want;
    /* e->done is not reset: a hold of ours still in force must stay recorded, or no
     * release would ever undo it. */
    e->preexisting = false;
    e->attempted = 0;
    e->acted_ms = clock_now_ms(a->clock);
    e->released_ms = 0;
    j->out.candidates = req->nmsgids;
    j->out.unconfirmed = unconfirmed;
    r = ledger_save(a); /* "acting" is on disk before the first effect */
    if (r < 0 && !unconfirmed) {
        /* nothing is done: an effect the ledger does not record could not be undone after
         * a restart. Memory goes back to what the ledger on disk says. */
        j->out.ledger_err = r;
        action_not_acted(a, j, "ledger_failed");
        job_free(j);
        if (fresh) {
            a->entries = e->next;
            entry_free(e);
        } else {
            free(account);
            free(reason);
            saved.next = e->next;
            *e = saved;
        }
        return r;
    }
    free(saved.account);
    free(saved.reason);
    if (unconfirmed) {
        /* recorded (listed by floodgatectl held) but not active; a ledger failure is
         * logged and changes nothing here, since nothing is done */
        j->out.ledger_err = r < 0 ? r : 0;
        action_not_acted(a, j, "unconfirmed");
        job_free(j);
        return 0;
    }
    {
        struct action_audit au;
        audit_begin(a, &au, "act", e->rule, e->scope, e->id);
        audit_num(&au, "candidates", (long long)req->nmsgids);
        audit_num(&au, "confirmed", (long long)j->nids);
        audit_num(&au, "verified", (long long)j->verified);
        audit_num(&au, "want", (long long)e->want);
        if (req->ordered)
            audit_bool(&au, "ordered", true);
        if (e->reason)
            audit_str(&au, "reason", e->reason, strlen(e->reason));
        if (not_held) {
            char res[64];
            (void)snprintf(res, sizeof(res), "%s: not held", not_held);
            audit_str(&au, "not_held", not_held, strlen(not_held));
            audit_str(&au, "result", res, strlen(res));
        }
        audit_end(a, &au);
    }
    if (not_held) {
        char what[160];
        (void)snprintf(what, sizeof(what),
                       "%s: not held or suspended (actions.never_hold, "
                       "actions.hold_system_logins); its queued mail is frozen",
                       not_held);
        action_log(LOG_WARNING, 0, e->rule, e->scope, e->id, what, NULL);
    }
    j->out.not_held = not_held;
    if (req->actions & CONFIG_ACTION_FREEZE)
        j->phase = PH_SCAN; /* the backlog the log did not name, then the freeze */
    job_enqueue(a, j);
    action_pump(a);
    return 0;
undo:
    /* before the entry turned "acting": it goes back to what it was */
    if (j)
        job_free(j);
    free(account);
    free(reason);
    if (fresh)
        entry_free(e);
    else
        memcpy(e->rule, saved.rule, sizeof(e->rule));
    return r;
}

/* Move @from's confirmed ids into the queued job @to (not started yet), skipping repeats. */
/*
 * Ids beyond ACTION_FROZEN_MAX are counted as failed and not frozen: one identity could
 * otherwise grow the queued job (and later the ledger) without bound. Returns how many
 * were left out, or -ENOMEM. The array grows geometrically: a burst merges one id at a
 * time, and exact reallocs would copy it O(n^2).
 */
static int
job_merge_ids(struct action_job *to, struct action_job *from)
{
    size_t used = to->e->nfrozen + to->nids, dropped = 0;

    for (size_t i = 0; i < from->nids; i++) {
        bool dup = false;
        for (size_t k = 0; k < to->nids && !dup; k++)
            dup = strcmp(to->ids[k], from->ids[i]) == 0;
        if (dup)
            continue;
        if (used >= ACTION_FROZEN_MAX) {
            dropped++;
            continue;
        }
        if (to->nids == to->capids) {
            size_t cap = to->capids ? to->capids * 2 : 16, bytes;
            char **ids;
            if (!util_mul_size(cap, sizeof(char *), &bytes))
                return -ENOMEM;
            ids = realloc(to->ids, bytes);
            if (!ids)
                return -ENOMEM;
            to->ids = ids;
            to->capids = cap;
        }
        to->ids[to->nids++] = from->ids[i];
        to->out.confirmed++;
        from->ids[i] = NULL;
        used++;
    }
    to->out.failed += dropped;
    return (int)(dropped > INT_MAX ? INT_MAX : dropped);
}

int
action_freeze_more(struct action *a, enum usertable_scope scope, const char *id,
                   const char *const *msgids, size_t nmsgids)
{
    struct action_entry *e = id ? action_find(a, scope, id) : NULL;
    struct action_job *j;
    int r;

    if (!e || !entry_active(e))
        return -ENOENT;
    if (a->cfg->mode == CONFIG_MODE_MONITOR)
        return 0;
    for (struct action_job *q = a->head; q; q = q->next)
        if (q->e == e && q->kind == JOB_RELEASE)
            return -ENOENT;
    j = job_new(JOB_FREEZE_MORE, e, "freeze_more");
    if (!j)
        return -ENOMEM;
    if ((r = job_collect(a, j, msgids, nmsgids, true)) < 0 || j->nids == 0) {
        job_free(j);
        return r;
    }
    /* a burst of late arrivals: one exim -Mf for all of them, not one each in the queue */
    for (struct action_job *q = a->head ? a->head->next : NULL; q; q = q->next) {
        if (q->e == e && q->kind == JOB_FREEZE_MORE && q->pos == 0) {
            r = job_merge_ids(q, j);
            job_free(j);
            if (r > 0)
                action_log(LOG_WARNING, 0, e->rule, e->scope, e->id,
                           "ACTION_FROZEN_MAX ids recorded: newer ids are not frozen", NULL);
            return r < 0 ? r : 0;
        }
    }
    job_enqueue(a, j);
    action_pump(a);
    return 0;
}

bool
action_is_active(const struct action *a, enum usertable_scope scope, const char *id)
{
    const struct action_entry *e = id ? action_find(a, scope, id) : NULL;
    return e && entry_active(e);
}

int
action_release(struct action *a, enum usertable_scope scope, const char *id)
{
    struct action_entry *e = id ? action_find(a, scope, id) : NULL;
    struct action_job *j;
    struct action_audit au;
    int r;

    if (!e || e->state == ENTRY_RELEASED)
        return -ENOENT;
    for (struct action_job *q = a->head; q; q = q->next)
        if (q->e == e && q->kind != JOB_FREEZE_MORE)
            return -EBUSY;
    j = job_new(JOB_RELEASE, e, "release");
    if (!j)
        return -ENOMEM;
    /* A release the ledger cannot record would be undone by a restart's view of it (held
     * again on paper, with its ids forgotten): refuse it while the ledger cannot be written. */
    r = ledger_save(a);
    if (r < 0) {
        audit_begin(a, &au, "release", e->rule, e->scope, e->id);
        audit_bool(&au, "ok", false);
        audit_ledger_failed(a, &au, r);
        audit_end(a, &au);
        action_log(LOG_ERR, r, e->rule, e->scope, e->id,
                   "release refused: the ledger cannot record it", a->ledger_path);
        job_free(j);
        return r;
    }
    j->phase = PH_UNBLOCK;
    j->unblock_left = e->done; /* set only for steps floodgate applied itself */
    audit_begin(a, &au, "release", e->rule, e->scope, e->id);
    audit_num(&au, "undo", (long long)j->unblock_left);
    audit_ids(&au, "thaw", e->frozen, e->nfrozen);
    audit_end(a, &au);
    job_enqueue(a, j);
    action_pump(a);
    return 0;
}

int
action_adopt_frozen(struct action *a, enum usertable_scope scope, const char *id, const char *msgid)
{
    struct action_entry *e = id ? action_find(a, scope, id) : NULL;
    struct action_audit au;
    int r;

    if (!e || !entry_active(e))
        return -ENOENT;
    if (!spawn_valid_msgid(msgid))
        return -EINVAL;
    if (entry_has_frozen(e, msgid))
        return 0;
    if (e->nfrozen >= ACTION_FROZEN_MAX)
        return -E2BIG;
    r = entry_add_frozen(e, msgid, clock_now_ms(a->clock));
    if (r < 0)
        return r;
    char idbuf[SPAWN_MSGID_MAX + 1], *idp = idbuf;
    (void)snprintf(idbuf, sizeof(idbuf), "%s", msgid); /* fits: spawn_valid_msgid() */
    audit_begin(a, &au, "adopt_frozen", e->rule, e->scope, e->id);
    audit_ids(&au, "ids", &idp, 1);
    audit_end(a, &au);
    r = ledger_save(a);
    return r < 0 ? r : 1;
}

size_t
action_frozen_ids(const struct action *a, enum usertable_scope scope, const char *id,
                  const char *const **ret)
{
    const struct action_entry *e = id ? action_find(a, scope, id) : NULL;

    *ret = e ? (const char *const *)e->frozen : NULL;
    return e ? e->nfrozen : 0;
}

size_t
action_frozen_times(const struct action *a, enum usertable_scope scope, const char *id,
                    const int64_t **ret)
{
    const struct action_entry *e = id ? action_find(a, scope, id) : NULL;

    *ret = e && e->nfrozen ? e->frozen_ms : NULL;
    return e && e->nfrozen ? e->nfrozen : 0;
}

size_t
action_pending(const struct action *a)
{
    return a->njobs;
}

static const struct action_backend *const action_backends[] = {
    &action_backend_cpanel,
    &action_backend_exim,
    &action_backend_command,
};

const struct action_backend *
action_backend_lookup(const char *name)
{
    for (size_t i = 0; name && i < N_ELEMS(action_backends); i++)
        if (strcmp(action_backends[i]->name, name) == 0)
            return action_backends[i];
    return NULL;
}

const char *
action_backend_name(const struct action_backend *be)
{
    return be->name;
}

static char *
action_strdup_or(const char *s, const char *dflt)
{
    return strdup(s ? s : dflt);
}

static int
action_config_backend(const struct action *a, const struct config *cfg,
                      const struct action_backend **ret)
{
    if (!cfg || !cfg->exim_path || !cfg->spool_dir)
        return -EINVAL;
    *ret = a->backend_fixed ? a->backend
                            : action_backend_lookup(config_backend_name(cfg->backend));
    return *ret ? 0 : -EINVAL;
}

int
action_set_config(struct action *a, const struct config *cfg)
{
    const struct action_backend *be;
    int r = action_config_backend(a, cfg, &be);

    if (r < 0)
        return r;
    /* A job half way through (a hold applied, its alert not sent) must finish with the
     * backend it started with. */
    if (be != a->backend && a->njobs > 0)
        return -EBUSY;
    /* Jobs and callbacks in flight hold no pointer into the config: each step reads a->cfg
     * when it starts, and spawned argv are copied. So the swap is one assignment. */
    a->cfg = cfg;
    a->env.cfg = cfg;
    a->backend = be;
    action_syslogins_load(a); /* a reload is when logins added since start are seen */
    return 0;
}

/* The job re-runs the entry's pending exim -Mf ids, then (a trip) its backend step. */
static int
job_resume_pending(struct action_job *j)
{
    const struct action_entry *e = j->e;

    j->phase = e->npending ? PH_FREEZE : PH_BACKEND;
    j->rerun = true;
    if (!e->npending)
        return 0;
    j->ids = calloc(e->npending, sizeof(char *));
    if (!j->ids)
        return -ENOMEM;
    j->capids = e->npending;
    for (size_t i = 0; i < e->npending; i++) {
        if (!(j->ids[i] = strdup(e->pending[i])))
            return -ENOMEM;
        j->nids++;
    }
    j->out.confirmed = j->nids;
    return 0;
}

int
action_open(const struct action_params *p, struct action **ret)
{
    struct action *a;
    char path[CONFIG_PATH_MAX];
    int r;

    if (!p || !p->clock || !p->cfg || !p->state_dir || !p->spawner || !p->cfg->exim_path ||
        !p->cfg->spool_dir)
        return -EINVAL;
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", p->state_dir, ACTION_LEDGER_NAME) >=
        sizeof(path))
        return -ENAMETOOLONG;
    a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->loop = p->loop;
    a->clock = p->clock;
    a->cfg = p->cfg;
    a->spawner = p->spawner;
    a->audit = p->audit;
    a->audit_ctx = p->audit_ctx;
    a->done = p->done;
    a->done_ctx = p->done_ctx;
    a->owner = p->owner;
    a->owner_ctx = p->owner_ctx;
    a->backend = p->backend;
    a->backend_fixed = p->backend != NULL;
    r = action_config_backend(a, p->cfg, &a->backend);
    if (r < 0) {
        action_free(a);
        return r;
    }
    a->ledger_path = strdup(path);
    a->lio =
        p->ledger_io ? *p->ledger_io : (struct action_ledger_io){ .write = ledger_write_default };
    a->hold_file = action_strdup_or(p->hold_users_file, "/etc/outgoing_mail_hold_users");
    a->susp_file = action_strdup_or(p->suspended_users_file, "/etc/outgoing_mail_suspended_users");
    a->exim_config_fallback = p->exim_config ? strdup(p->exim_config) : NULL;
    a->passwd_file = action_strdup_or(p->passwd_file, "/etc/passwd");
    a->cpanel_users_dir = action_strdup_or(p->cpanel_users_dir, "/var/cpanel/users");
    if (!a->ledger_path || !a->hold_file || !a->susp_file || !a->passwd_file ||
        !a->cpanel_users_dir ||
        (p->exim_config && !a->exim_config_fallback)) {
        action_free(a);
        return -ENOMEM;
    }
    a->env.cfg = a->cfg;
    a->env.spawner = a->spawner;
    a->env.hold_users_file = a->hold_file;
    a->env.suspended_users_file = a->susp_file;
    ev_init(&a->retry_timer, action_resume_cb);
    a->retry_timer.data = a;
    ev_init(&a->scan_timer, action_resume_cb);
    a->scan_timer.data = a;
    action_syslogins_load(a);
    r = ledger_load(a);
    if (r < 0) {
        (void)log_emit(LOG_ERR, r, NULL, "action: cannot load the ledger %s", a->ledger_path);
        action_free(a);
        return r;
    }
    /* A restart cut a trip or a freeze short: freeze its pending ids again, finish its
     * backend step (backends check state first). */
    if (a->cfg->mode != CONFIG_MODE_MONITOR)
        for (struct action_entry *e = a->entries; e; e = e->next) {
            if (!entry_active(e) || (e->state != ENTRY_ACTING && !e->npending))
                continue;
            struct action_job *j = e->state == ENTRY_ACTING
                                       ? job_new(JOB_RESUME, e, "resume")
                                       : job_new(JOB_FREEZE_MORE, e, "freeze_more");
            if (!j || job_resume_pending(j) < 0) {
                if (j)
                    job_free(j);
                (void)log_emit(LOG_ERR, -ENOMEM, NULL, "action: cannot resume %s", e->id);
                continue;
            }
            job_enqueue(a, j);
        }
    *ret = a;
    action_pump(a);
    return 0;
}

void
action_free(struct action *a)
{
    if (!a)
        return;
    if (a->loop) {
        ev_timer_stop(a->loop, &a->retry_timer);
        ev_timer_stop(a->loop, &a->scan_timer);
    }
    /* Jobs in flight hold callbacks registered with the spawner: the caller frees the
     * spawner first (which kills and forgets them) or has waited for action_pending() == 0. */
    while (a->head) {
        struct action_job *j = a->head;
        a->head = j->next;
        job_free(j);
    }
    while (a->entries) {
        struct action_entry *e = a->entries;
        a->entries = e->next;
        entry_free(e);
    }
    free(a->ledger_path);
    free(a->hold_file);
    free(a->susp_file);
    free(a->exim_config_fallback);
    free(a->passwd_file);
    free(a->cpanel_users_dir);
    action_syslogins_free(a);
    free(a);
}

static void
action_info_of(const struct action_entry *e, struct action_info *ret)
{
    *ret = (struct action_info){
        .scope = e->scope,
        .id = e->id,
        .account = e->account,
        .rule = e->rule,
        .reason = e->reason ? e->reason : "",
        .state = action_state_names[e->state],
        .active = entry_active(e),
        .unconfirmed = e->state == ENTRY_UNCONFIRMED,
        .want = e->want,
        .done = e->done,
        .preexisting = e->preexisting,
        .nfrozen = e->nfrozen,
        .acted_ms = e->acted_ms,
        .released_ms = e->released_ms,
    };
}

size_t
action_list(const struct action *a, bool all, action_list_fn fn, void *ctx)
{
    struct action_info info;
    size_t n = 0;

    for (const struct action_entry *e = a->entries; e; e = e->next) {
        if (!all && !entry_active(e))
            continue;
        if (fn) {
            action_info_of(e, &info);
            fn(ctx, &info);
        }
        n++;
    }
    return n;
}

int
action_info(const struct action *a, enum usertable_scope scope, const char *id,
            struct action_info *ret)
{
    const struct action_entry *e = id ? action_find(a, scope, id) : NULL;

    if (!e)
        return -ENOENT;
    action_info_of(e, ret);
    return 0;
}

/* Step durations. */

const double action_duration_bounds[ACTION_DURATION_BUCKETS] = { 0.01, 0.05, 0.1, 0.25, 0.5, 1,
                                                                 2.5,  5,    10,  30,   60 };
/* The same in ms, compared exactly: the clock reads whole ms. */
static const int64_t action_duration_bounds_ms[ACTION_DURATION_BUCKETS] = {
    10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000
};

const char *
action_step_name(enum action_step step)
{
    static const char *const names[ACTION_STEP__MAX] = {
        [ACTION_STEP_FREEZE] = "freeze", [ACTION_STEP_THAW] = "thaw",
        [ACTION_STEP_HOLD] = "hold",     [ACTION_STEP_SUSPEND] = "suspend",
        [ACTION_STEP_UNHOLD] = "unhold", [ACTION_STEP_UNSUSPEND] = "unsuspend",
    };
    return (unsigned)step < ACTION_STEP__MAX ? names[step] : "unknown";
}

/* Count one step that began at monotonic @started_ms and has its outcome now. */
static void
action_step_observe(struct action *a, enum action_step step, int64_t started_ms)
{
    struct action_duration *d = &a->durations[step];
    int64_t ms = clock_mono_ms(a->clock) - started_ms;
    size_t i = 0;

    if (ms < 0)
        ms = 0;
    while (i < ACTION_DURATION_BUCKETS && ms > action_duration_bounds_ms[i])
        i++;
    d->counts[i]++;
    d->count++;
    d->sum_ms += ms;
}

const struct action_duration *
action_durations(const struct action *a)
{
    return a->durations;
}

/* Circuit breaker. */

static uint32_t *
action_breaker_slot(struct action_breaker *b, int64_t sec)
{
    int64_t k = sec % ACTION_BREAKER_SLOTS;
    return &b->slots[k < 0 ? k + ACTION_BREAKER_SLOTS : k];
}

/* Forget the seconds from b->sec + 1 up to @sec, which becomes the newest. */
static void
action_breaker_advance(struct action_breaker *b, int64_t sec)
{
    if (!b->started) {
        b->started = true;
        b->sec = sec;
        return;
    }
    if (sec <= b->sec)
        return;
    if (sec - b->sec >= ACTION_BREAKER_SLOTS) {
        memset(b->slots, 0, sizeof(b->slots));
        b->total = 0;
    } else {
        for (int64_t s = b->sec + 1; s <= sec; s++) {
            uint32_t *slot = action_breaker_slot(b, s);
            b->total -= *slot;
            *slot = 0;
        }
    }
    b->sec = sec;
}

bool
action_breaker_allow(struct action_breaker *b, int64_t mono_ms, uint32_t cap)
{
    /* floor, so that slots stay apart for a clock below zero too */
    int64_t sec = mono_ms >= 0 ? mono_ms / 1000 : -((-mono_ms + 999) / 1000);
    uint32_t *slot;

    action_breaker_advance(b, sec);
    if (cap && b->total >= cap)
        return false;
    slot = action_breaker_slot(b, b->sec);
    if (*slot < UINT32_MAX) {
        (*slot)++;
        b->total++;
    }
    return true;
}
