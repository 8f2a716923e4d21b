/*
 * engine.c - the pipeline between the tailer and the actions: parse a record, attribute
 * it, count it, evaluate the policy, and say what tripped.
 *
 * It owns the identity table, the table of queued messages and the policy; it borrows
 * the configuration and the domain maps. It never acts: trips come back as notices and
 * the caller (the live daemon or --replay) decides what to do with them. Time is the
 * record's own timestamp, clamped so that it never goes backwards (two merged logs or a
 * clock step must not revive old counts), so replay and live agree exactly. It is also
 * bounded forwards (engine_clock): a record dated more than ENGINE_CLOCK_AHEAD_MS past the
 * wall clock (live) or past the oldest of the ENGINE_CLOCK_CONFIRM records that follow it
 * (replay: engine_delay, so a real gap in the log still moves the clock at its first
 * record) is counted at the current clock and reported, so one forged line dated 2099
 * cannot stop every window from sliding.
 *
 * Hostile input (a newline in a HELO, a subject, a directory or argv) shows as parser
 * flags: the swallowed text is never counted, the genuine writer is counted as usual, and
 * an ENGINE_INJECTION notice names it. A HELO that reads as two peers counts the message
 * for the identities of both readings (neither a framed victim nor a hidden sender).
 *
 * Delivery lines carry only a message id: they find their identities through msgtrack.
 * Failures and deferrals that our own hold or suspension caused (R=enforce_mail_permissions)
 * and "retry time not reached" repeats are never counted.
 */
#include "engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct engine {
    struct attrib_result ar;      /* scratch for the arrival being counted (4 KiB) */
    struct attrib_maps *own_maps; /* empty maps when the caller has none */
    const struct config *cfg;
    const struct attrib_maps *maps;
    struct policy *policy;
    struct usertable *table;
    struct msgtrack *msgs;
    struct msgtrack_seen *seen; /* recipients counted for messages with a cut for-list */
    struct attrib attrib;
    struct engine_stats stats;
    struct attrib_result ar2; /* the second reading of a forged HELO (4 KiB) */
    uint8_t key[SIPHASH_KEY_LEN];
    const struct engine_wall *wall;
    const struct engine_hook *hook;
    int64_t now_ms;
    int64_t bound_ms; /* without a wall clock: engine_delay's bound, INT64_MAX: none */
    /* signals across identities (the section at the end of this file) */
    struct campaign *campaigns[CONFIG_RULES_MAX]; /* per campaign rule, NULL for others */
    unsigned sig; /* ENGINE_SIG_* the config asks for */
};

#define ENGINE_SIG_QUEUED   (1u << 0)
#define ENGINE_SIG_RATIO    (1u << 1)
#define ENGINE_SIG_TRAP     (1u << 2)
#define ENGINE_SIG_CAMPAIGN (1u << 3)

static int engine_signals_swap(struct engine *e, const struct config *old, const struct config *cfg,
                               bool fresh);
static void engine_signals_free(struct engine *e);
static size_t engine_signals_arrival(struct engine *e, const struct exim_event *ev,
                                     const struct attrib_result *ar, struct msgtrack_msg *msg,
                                     uint64_t line, struct engine_notice *ret, size_t max);
static size_t engine_signals_delivery(struct engine *e, const struct exim_event *ev, uint64_t line,
                                      struct engine_notice *ret, size_t max);
static void engine_queued_forget(void *ctx, const struct msgtrack_msg *msg);

const char *
engine_injection_name(enum engine_injection k)
{
    static const char *const names[ENGINE_INJ__MAX] = { "absorbed", "cwd", "tail", "helo" };

    return (unsigned)k < ENGINE_INJ__MAX ? names[k] : "?";
}

const char *
engine_injection_reason(enum engine_injection k)
{
    static const char *const why[ENGINE_INJ__MAX] = {
        "an arrival swallowed a line that starts like a log record (a raw newline in a field)",
        "a cwd= record swallowed lines (a newline in a directory name or argv)",
        "the remnant of a forged line (dropped, not counted)",
        "forged HELO: the peer fields read two ways (counted for both readings)",
    };

    return (unsigned)k < ENGINE_INJ__MAX ? why[k] : "?";
}

static struct usertable *
engine_table_new(const struct engine *e, const struct policy *p)
{
    struct usertable_params up;

    memset(&up, 0, sizeof(up));
    up.cap = e->cfg->max_identities;
    memcpy(up.key, e->key, SIPHASH_KEY_LEN);
    policy_usertable_series(p, &up);
    return usertable_new(&up);
}

int
engine_new(const struct engine_params *p, struct engine **ret)
{
    struct engine *e;

    if (!p->cfg)
        return -EINVAL;
    e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->cfg = p->cfg;
    e->maps = p->maps;
    if (!e->maps) {
        /* recipient domains are hashed with the maps' key: keep an empty map to hold one */
        e->own_maps = attrib_maps_new(p->key);
        e->maps = e->own_maps;
    }
    memcpy(e->key, p->key, SIPHASH_KEY_LEN);
    e->wall = p->wall;
    e->hook = p->hook;
    e->bound_ms = INT64_MAX;
    attrib_init(&e->attrib);
    e->attrib.exim_user = e->cfg->exim_user;
    e->policy = policy_new(e->cfg);
    if (e->policy)
        e->table = engine_table_new(e, e->policy);
    e->msgs = msgtrack_new(0, e->key);
    e->seen = msgtrack_seen_new();
    if (!e->policy || !e->table || !e->msgs || !e->maps || !e->seen ||
        engine_signals_swap(e, NULL, e->cfg, true) < 0) {
        engine_free(e);
        return -ENOMEM;
    }
    msgtrack_set_forget(e->msgs, engine_queued_forget, e);
    *ret = e;
    return 0;
}

void
engine_free(struct engine *e)
{
    if (!e)
        return;
    policy_free(e->policy);
    usertable_free(e->table);
    msgtrack_free(e->msgs);
    msgtrack_seen_free(e->seen);
    attrib_maps_free(e->own_maps);
    engine_signals_free(e);
    free(e);
}

static bool
engine_same_series(const struct usertable_params *a, const struct usertable_params *b)
{
    for (size_t s = 0; s < SCOPE__MAX; s++) {
        if (a->nseries[s] != b->nseries[s])
            return false;
        for (size_t i = 0; i < a->nseries[s]; i++)
            if (a->series[s][i].metric != b->series[s][i].metric ||
                a->series[s][i].window_ms != b->series[s][i].window_ms)
                return false;
    }
    return a->cap == b->cap;
}

/*
 * Bit i of an identity's trips means "rule i of the config it tripped under". Map each
 * bit to the rule of the same name in @to (dropped when the rule is gone), so a reload or
 * a restart with edited rules neither forgets a trip nor pins it on another rule.
 */
static uint32_t
engine_remap_bits(uint32_t bits, const char *const *from, size_t nfrom, const struct config *to)
{
    uint32_t out = 0;

    for (size_t i = 0; i < nfrom && bits; i++) {
        if (!(bits & (1u << i)))
            continue;
        for (size_t k = 0; k < to->nrules; k++)
            if (strcmp(from[i], to->rules[k].name) == 0)
                out |= 1u << k;
    }
    return out;
}

void
engine_remap_trips(struct engine *e, const char *const *from, size_t nfrom)
{
    struct usertable_entry *ent;
    size_t pos = 0;

    while ((ent = usertable_next(e->table, &pos)) != NULL) {
        struct usertable_policy *st = usertable_entry_policy(ent);
        if (st->tripped)
            st->tripped = engine_remap_bits(st->tripped, from, nfrom, e->cfg);
    }
}

/* Carry the identities that tripped (and their cooldowns) into a table with new windows. */
static int
engine_carry_trips(struct engine *e, struct usertable *to, const char *const *from, size_t nfrom)
{
    struct usertable_entry *ent, *copy;
    size_t pos = 0;
    int r;

    while ((ent = usertable_next(e->table, &pos)) != NULL) {
        const struct usertable_policy *st = usertable_entry_policy(ent);
        const char *key = usertable_entry_key(ent);
        if (!st->tripped && !st->quiet_until_ms)
            continue;
        r = usertable_get(to, usertable_entry_scope(ent), key, strlen(key), e->now_ms, true, &copy);
        if (r < 0)
            return r;
        usertable_entry_policy(copy)->tripped = engine_remap_bits(st->tripped, from, nfrom, e->cfg);
        usertable_entry_policy(copy)->quiet_until_ms = st->quiet_until_ms;
    }
    return 0;
}

int
engine_set_config(struct engine *e, const struct config *cfg)
{
    const struct config *old = e->cfg;
    const char *names[CONFIG_RULES_MAX];
    struct usertable_params up;
    struct usertable *table = NULL;
    struct msgtrack *msgs = NULL;
    struct policy *p = policy_new(cfg);
    int r;

    if (!p)
        return -ENOMEM;
    for (size_t i = 0; i < old->nrules; i++)
        names[i] = old->rules[i].name; /* old stays alive until we return */
    memset(&up, 0, sizeof(up));
    up.cap = cfg->max_identities;
    memcpy(up.key, e->key, SIPHASH_KEY_LEN);
    policy_usertable_series(p, &up);
    if (engine_same_series(&up, usertable_params(e->table))) {
        if (engine_signals_swap(e, old, cfg, false) < 0) {
            policy_free(p);
            return -ENOMEM;
        }
        policy_free(e->policy);
        e->policy = p;
        e->cfg = cfg;
        e->attrib.exim_user = cfg->exim_user;
        engine_remap_trips(e, names, old->nrules);
        return 0;
    }
    /* build everything first: a failure leaves the running config untouched */
    table = usertable_new(&up);
    msgs = msgtrack_new(0, e->key);
    e->cfg = cfg; /* engine_carry_trips() maps onto the new rules */
    r = (table && msgs) ? engine_carry_trips(e, table, names, old->nrules) : -ENOMEM;
    /* campaign members name slots of the old table: start them afresh */
    if (r == 0)
        r = engine_signals_swap(e, old, cfg, true);
    if (r < 0) {
        e->cfg = old;
        usertable_free(table);
        msgtrack_free(msgs);
        policy_free(p);
        return r;
    }
    usertable_free(e->table);
    policy_free(e->policy);
    /* queued messages pointed into the old table: their refs are stale now */
    msgtrack_free(e->msgs);
    e->table = table;
    e->policy = p;
    e->msgs = msgs;
    msgtrack_set_forget(e->msgs, engine_queued_forget, e);
    e->attrib.exim_user = cfg->exim_user;
    return 1;
}

void
engine_set_maps(struct engine *e, const struct attrib_maps *maps)
{
    e->maps = maps ? maps : e->own_maps;
}

void
engine_account_of(const struct engine *e, enum usertable_scope scope, const char *id, char *buf,
                  size_t size)
{
    const char *sep, *owner;
    size_t n;

    buf[0] = '\0';
    switch (scope) {
    case SCOPE_ACCOUNT:
        n = strlen(id);
        break;
    case SCOPE_SCRIPT:
        sep = strchr(id, ':');
        n = sep ? (size_t)(sep - id) : 0;
        break;
    case SCOPE_MAILBOX:
        sep = strchr(id, '@');
        if (!sep) {
            n = strlen(id);
            break;
        }
        owner = attrib_maps_owner(e->maps, fg_str_make(sep + 1, strlen(sep + 1)));
        id = owner ? owner : "";
        n = strlen(id);
        break;
    default:
        n = 0;
    }
    if (n >= size)
        n = 0;
    memcpy(buf, id, n);
    buf[n] = '\0';
}

static void
engine_notice_fill(struct engine_notice *n, enum engine_notice_kind kind,
                   enum usertable_scope scope, const char *id, const char *account,
                   const struct engine *e, struct usertable_entry *ent, const struct exim_event *ev,
                   uint64_t line)
{
    memset(n, 0, sizeof(*n));
    n->kind = kind;
    n->scope = scope;
    (void)util_copy_str(n->id, sizeof(n->id), fg_str_make(id, strlen(id)));
    (void)util_copy_str(n->account, sizeof(n->account), fg_str_make(account, strlen(account)));
    n->ref = usertable_ref(e->table, ent);
    n->at_ms = ev->ts_ms;
    (void)util_copy_str(n->at, sizeof(n->at), ev->time);
    n->line = line;
    (void)util_copy_str(n->msgid, sizeof(n->msgid), ev->msgid);
}

/* Count one outbound arrival against one identity and evaluate its rules. */
static size_t
engine_count(struct engine *e, enum usertable_scope scope, const char *id, const char *account,
             const struct exim_event *ev, const struct attrib_result *ar, uint64_t ip_hash,
             struct msgtrack_msg *msg, uint64_t line, struct engine_notice *ret, size_t max)
{
    struct policy_verdict v[POLICY_VERDICTS_MAX];
    struct usertable_entry *ent;
    size_t k = 0, n;
    bool was_tripped;
    int r;

    r = usertable_get(e->table, scope, id, strlen(id), e->now_ms, true, &ent);
    if (r <= 0) {
        e->stats.keys_refused++;
        return 0;
    }
    was_tripped = usertable_entry_policy(ent)->tripped != 0;
    usertable_add(e->table, ent, WINDOW_MESSAGES, e->now_ms, 1);
    usertable_add(e->table, ent, WINDOW_RECIPIENTS, e->now_ms, ar->remote_rcpts);
    if (ar->flags & ATTRIB_MISMATCH)
        usertable_add(e->table, ent, WINDOW_MISMATCH, e->now_ms, 1);
    for (size_t i = 0; i < ar->ndomains; i++)
        usertable_add_distinct(e->table, ent, WINDOW_DOMAINS, e->now_ms, ar->domains[i]);
    if (ev->host_ip.len)
        usertable_add_distinct(e->table, ent, WINDOW_IPS, e->now_ms, ip_hash);
    if (msg)
        msg->refs[scope] = usertable_ref(e->table, ent);
    if (e->hook && e->hook->counted)
        e->hook->counted(e->hook->ctx, e->table, ent, ev, e->now_ms);

    if (was_tripped && k < max) {
        engine_notice_fill(&ret[k++], ENGINE_TRIPPED_ARRIVAL, scope, id, account, e, ent, ev, line);
    }
    n = policy_eval(e->policy, e->table, ent, account[0] ? account : NULL, e->now_ms, v,
                    N_ELEMS(v));
    for (size_t i = 0; i < n && k < max; i++) {
        engine_notice_fill(&ret[k], ENGINE_TRIP, scope, id, account, e, ent, ev, line);
        ret[k++].verdict = v[i];
        e->stats.trips++;
    }
    return k;
}

/* The key of recipient @addr of message @msgid in e->seen (address case folded). */
static uint64_t
engine_rcpt_key(const struct engine *e, struct fg_str msgid, struct fg_str addr)
{
    char buf[MSGTRACK_ID_MAX + 1 + USERTABLE_KEY_MAX];
    size_t n = msgid.len < MSGTRACK_ID_MAX ? msgid.len : MSGTRACK_ID_MAX;

    memcpy(buf, msgid.p, n);
    buf[n++] = ' ';
    for (size_t i = 0; i < addr.len && n < sizeof(buf); i++)
        buf[n++] = util_ascii_lower(addr.p[i]);
    return siphash(buf, n, e->key);
}

/* A cut for-list: the recipients it lists are counted; delivery lines add the others. */
static void
engine_note_listed(struct engine *e, const struct exim_event *ev)
{
    struct fg_str addr;
    size_t pos = 0;

    while (eximlog_next_addr(ev->rcpts, &pos, &addr) > 0)
        (void)msgtrack_seen_add(e->seen, engine_rcpt_key(e, ev->msgid, addr));
}

/* A notice about a log injection; @id may be "" (the writer is not known). */
static size_t
engine_injection(struct engine *e, enum engine_injection kind, enum usertable_scope scope,
                 const char *id, const struct exim_event *ev, uint64_t line,
                 struct engine_notice *ret, size_t max)
{
    struct engine_notice *n = ret;

    e->stats.injections[kind]++;
    if (max == 0)
        return 0;
    memset(n, 0, sizeof(*n));
    n->kind = ENGINE_INJECTION;
    n->injection = kind;
    n->scope = scope;
    n->ref.slot = UINT32_MAX;
    (void)util_copy_str(n->id, sizeof(n->id), fg_str_make(id, strlen(id)));
    if (id[0])
        engine_account_of(e, scope, id, n->account, sizeof(n->account));
    n->at_ms = ev->ts_ms;
    (void)util_copy_str(n->at, sizeof(n->at), ev->time);
    n->line = line;
    (void)util_copy_str(n->msgid, sizeof(n->msgid), ev->msgid);
    return 1;
}

/* The identity an injection notice names: the mailbox, else the account, else the script. */
static const char *
engine_lead_identity(const struct attrib_result *ar, enum usertable_scope *ret_scope)
{
    *ret_scope = ar->mailbox[0] ? SCOPE_MAILBOX : ar->account[0] ? SCOPE_ACCOUNT : SCOPE_SCRIPT;
    return ar->mailbox[0] ? ar->mailbox : ar->account[0] ? ar->account : ar->script;
}

/* The event as its second peer reading (EXIM_F_AMBIGUOUS_HOST with ev->alt) has it. */
static void
engine_alt_reading(const struct exim_event *ev, struct exim_event *ret)
{
    *ret = *ev;
    ret->host = ev->alt.host;
    ret->host_ip = ev->alt.host_ip;
    ret->ident = ev->alt.ident;
    ret->proto = ev->alt.proto;
    ret->auth = ev->alt.auth;
    ret->set_id = ev->alt.set_id;
    ret->flags &= ~EXIM_F_ANOMALOUS; /* the parser read this one in full */
}

static bool
engine_has_alt(const struct exim_event *ev)
{
    const struct exim_peer *a = &ev->alt;

    return (ev->flags & EXIM_F_AMBIGUOUS_HOST) &&
           (a->host.len || a->host_ip.len || a->ident.len || a->proto.len || a->auth.len ||
            a->set_id.len);
}

static void
engine_not_outbound_stats(struct engine *e, const struct attrib_result *ar)
{
    if (ar->flags & ATTRIB_BOUNCE)
        e->stats.bounces++;
    else if (ar->flags & ATTRIB_SERVICE)
        e->stats.service++;
    else if (ar->flags & ATTRIB_LOCAL_ONLY)
        e->stats.local_only++;
    else if (ar->flags & ATTRIB_INBOUND)
        e->stats.inbound++;
}

/* Count @ar's identities; with @skip, those it holds already are not counted twice. */
static size_t
engine_count_all(struct engine *e, const struct exim_event *ev, const struct attrib_result *ar,
                 const struct attrib_result *skip, uint64_t ip_hash, struct msgtrack_msg *msg,
                 uint64_t line, struct engine_notice *ret, size_t max)
{
    const char *ids[SCOPE__MAX] = { [SCOPE_MAILBOX] = ar->mailbox,
                                    [SCOPE_ACCOUNT] = ar->account,
                                    [SCOPE_SCRIPT] = ar->script };
    const char *dup[SCOPE__MAX] = { [SCOPE_MAILBOX] = skip ? skip->mailbox : "",
                                    [SCOPE_ACCOUNT] = skip ? skip->account : "",
                                    [SCOPE_SCRIPT] = skip ? skip->script : "" };
    size_t k = 0;

    for (size_t s = 0; s < SCOPE__MAX; s++) {
        struct msgtrack_msg *m = msg;
        if (!ids[s][0] || strcmp(ids[s], dup[s]) == 0)
            continue;
        /* a delivery line counts against one identity per scope: the first reading's */
        if (m && m->refs[s].slot != UINT32_MAX)
            m = NULL;
        k += engine_count(e, (enum usertable_scope)s, ids[s], ar->account, ev, ar, ip_hash, m,
                          line, ret + k, max - k);
    }
    return k;
}

static size_t
engine_arrival(struct engine *e, const struct exim_event *ev, uint32_t flags, uint64_t line,
               struct engine_notice *ret, size_t max)
{
    struct attrib_result *ar = &e->ar, *ar2 = &e->ar2;
    struct exim_event gen = *ev, alt;
    struct msgtrack_msg *msg;
    enum usertable_scope sc, sc2;
    const char *lead, *lead2;
    uint64_t ip_hash = 0;
    bool helo = engine_has_alt(ev), out, out2 = false;
    size_t k = 0;

    e->stats.arrivals++;
    /* An arrival absorbs following lines only while a quote is open in the sender, the
     * from <...> or the for-list, the fields Exim writes raw (lib/eximlog's joiner): the
     * swallowed text lies inside that quoted address, and the fields Exim wrote around it
     * name the genuine writer. */
    out = attrib_arrival(&e->attrib, e->maps, &gen, ar) > 0;
    if (helo) {
        engine_alt_reading(&gen, &alt);
        out2 = attrib_arrival(&e->attrib, e->maps, &alt, ar2) > 0;
    }

    /* the signals first: they are news even when the message is not outbound */
    lead = engine_lead_identity(ar, &sc);
    if (flags & EXIM_F_ABSORBED)
        k += engine_injection(e, ENGINE_INJ_ABSORBED, sc, lead, ev, line, ret + k, max - k);
    if (ar->flags & ATTRIB_CWD_FORGED) {
        /* the cwd= record named the home owner already unless it is another login */
        const char *dir = strchr(ar->script, ':');
        char home[ATTRIB_ACCOUNT_MAX];
        if (!dir || attrib_home_owner(fg_str_make(dir + 1, strlen(dir + 1)), home,
                                      sizeof(home)) == 0 ||
            strcmp(home, ar->account) != 0)
            k += engine_injection(e, ENGINE_INJ_CWD, SCOPE_ACCOUNT, ar->account, ev, line,
                                  ret + k, max - k);
    }
    if (helo) {
        lead2 = engine_lead_identity(ar2, &sc2);
        size_t w = engine_injection(e, ENGINE_INJ_HELO, sc, lead, ev, line, ret + k, max - k);
        if (w) {
            ret[k].other_scope = sc2;
            (void)util_copy_str(ret[k].other, sizeof(ret[k].other),
                                fg_str_make(lead2, strlen(lead2)));
        }
        k += w;
    } else if (flags & EXIM_F_HELO_FORGED) {
        /* one reading holds, but the HELO imitates a peer: news about who sent it */
        k += engine_injection(e, ENGINE_INJ_HELO, sc, lead, ev, line, ret + k, max - k);
    }

    if (!out && !out2) {
        engine_not_outbound_stats(e, ar);
        return k;
    }
    e->stats.outbound++;
    if ((out ? ar : ar2)->flags & ATTRIB_NULL_SENDER)
        e->stats.null_sender++;
    msg = msgtrack_add(e->msgs, ev->msgid, e->now_ms);
    if (msg) {
        msg->rcpts_counted = ev->nrcpt;
        if (flags & (EXIM_F_RCPT_TRUNC | EXIM_F_RCPT_CUT)) {
            msg->flags |= MSGTRACK_TRUNCATED;
            engine_note_listed(e, ev);
        }
    }
    if (ev->host_ip.len)
        ip_hash = siphash(ev->host_ip.p, ev->host_ip.len, e->key);
    if (out)
        k += engine_count_all(e, ev, ar, NULL, ip_hash, msg, line, ret + k, max - k);
    if (out2)
        k += engine_count_all(e, ev, ar2, out ? ar : NULL, ip_hash, msg, line, ret + k, max - k);
    if (e->sig)
        k += engine_signals_arrival(e, ev, out ? ar : ar2, msg, line, ret + k, max - k);
    return k;
}

/* Add @n of @m to every identity of a tracked message. */
static void
engine_count_msg(struct engine *e, struct msgtrack_msg *msg, enum window_metric m, uint32_t n)
{
    for (size_t s = 0; s < SCOPE__MAX; s++) {
        struct usertable_entry *ent;
        if (msg->refs[s].slot == UINT32_MAX)
            continue;
        ent = usertable_deref(e->table, msg->refs[s]);
        if (ent)
            usertable_add(e->table, ent, m, e->now_ms, n);
    }
}

/*
 * A recipient of a message whose for-list was cut, seen in a delivery, defer or failure
 * line: counted once, unless the for-list listed it or it is in a local domain (the
 * arrival counts only remote recipients).
 */
static void
engine_late_rcpt(struct engine *e, struct msgtrack_msg *msg, const struct exim_event *ev)
{
    if (!ev->addr.len || attrib_maps_is_local(e->maps, eximlog_addr_domain(ev->addr)))
        return;
    if (msgtrack_seen_add(e->seen, engine_rcpt_key(e, ev->msgid, ev->addr)) > 0)
        engine_count_msg(e, msg, WINDOW_RECIPIENTS, 1);
}

static void
engine_delivery(struct engine *e, const struct exim_event *ev)
{
    struct msgtrack_msg *msg;

    switch (ev->type) {
    case EXIM_DELIVERY:
        e->stats.deliveries++;
        break;
    case EXIM_DEFER:
        e->stats.deferrals++;
        break;
    default:
        e->stats.failures++;
    }
    if (ev->flags & EXIM_F_ENFORCED) {
        e->stats.enforced++;
        return;
    }
    msg = msgtrack_get(e->msgs, ev->msgid);
    if (!msg)
        return;
    /* a cut for-list undercounted the recipients: every line names one (each counted once) */
    if (msg->flags & MSGTRACK_TRUNCATED)
        engine_late_rcpt(e, msg, ev);
    if (ev->type == EXIM_DEFER) {
        if (!(ev->flags & EXIM_F_RETRY_WAIT))
            engine_count_msg(e, msg, WINDOW_DEFERRED, 1);
        return;
    }
    if (fg_str_eq(ev->flag, "*>") || fg_str_eq(ev->flag, ">>"))
        return;
    if (ev->type == EXIM_FAIL)
        engine_count_msg(e, msg, WINDOW_FAILED, 1);
    msg->rcpts_final++;
}

static void
engine_authfail(struct engine *e, const struct exim_event *ev)
{
    char box[USERTABLE_KEY_MAX];
    struct usertable_entry *ent;
    const char *at;
    size_t n = attrib_mailbox_norm(ev->set_id, box, sizeof(box));

    if (n == 0)
        return;
    at = strchr(box, '@');
    /* only mailboxes of hosted domains: random names from a scanner must not fill the table */
    if (!at || !attrib_maps_is_local(e->maps, fg_str_make(at + 1, strlen(at + 1))))
        return;
    if (usertable_get(e->table, SCOPE_MAILBOX, box, n, e->now_ms, true, &ent) > 0)
        usertable_add(e->table, ent, WINDOW_AUTHFAIL, e->now_ms, 1);
}

/*
 * The blocklist ACL freezes a blocked login's new local submissions on arrival: tell the
 * caller which tripped identities the message belongs to, so a release thaws it too.
 */
static size_t
engine_frozen_by_acl(struct engine *e, struct msgtrack_msg *msg, const struct exim_event *ev,
                     uint64_t line, struct engine_notice *ret, size_t max)
{
    size_t k = 0;

    for (size_t s = 0; s < SCOPE__MAX && k < max; s++) {
        struct usertable_entry *ent;
        char acct[ATTRIB_ACCOUNT_MAX];
        const char *id;
        if (msg->refs[s].slot == UINT32_MAX)
            continue;
        ent = usertable_deref(e->table, msg->refs[s]);
        if (!ent || usertable_entry_policy(ent)->tripped == 0)
            continue;
        id = usertable_entry_key(ent);
        engine_account_of(e, (enum usertable_scope)s, id, acct, sizeof(acct));
        engine_notice_fill(&ret[k++], ENGINE_FROZEN_BY_ACL, (enum usertable_scope)s, id, acct, e,
                           ent, ev, line);
    }
    return k;
}

/*
 * The bounded clock. The bound is the wall clock (live) or the oldest time among the
 * records that follow (replay, engine_delay); none: unbounded. Returns false when the
 * record's time was not taken (ev->ts_ms is set to the clock it is counted at either way).
 */
/* Did the record give its zone ("+HHMM" after the time: log_timezone)? Its time is UTC. */
static bool
engine_zoned(const struct exim_event *ev)
{
    const char *p = ev->time.p, *end = ev->body.p;

    if (!p || !end || end <= p + 19)
        return false;
    p += 19;
    if (end - p >= 4 && p[0] == '.')
        p += 4;
    if (p < end && *p == ' ')
        p++;
    return end - p >= 5 && (p[0] == '+' || p[0] == '-') && p[1] >= '0' && p[1] <= '9' &&
           p[4] >= '0' && p[4] <= '9';
}

static bool
engine_clock(struct engine *e, struct exim_event *ev)
{
    int64_t bound = e->bound_ms;

    if (e->wall) {
        bound = e->wall->utc_ms(e->wall->ctx);
        if (!engine_zoned(ev))
            bound += e->wall->local_offset_ms(e->wall->ctx);
    }

    if (bound != INT64_MAX && ev->ts_ms > bound + ENGINE_CLOCK_AHEAD_MS) {
        e->stats.clock_ahead++;
        ev->ts_ms = e->now_ms;
        return false;
    }
    if (ev->ts_ms > e->now_ms)
        e->now_ms = ev->ts_ms;
    ev->ts_ms = e->now_ms;
    return true;
}

static size_t
engine_clock_notice(struct engine *e, const struct exim_event *ev, int64_t claimed_ms,
                    uint64_t line, struct engine_notice *ret, size_t max)
{
    if (max == 0)
        return 0;
    memset(ret, 0, sizeof(*ret));
    ret->kind = ENGINE_CLOCK_AHEAD;
    ret->ref.slot = UINT32_MAX;
    ret->at_ms = claimed_ms;
    (void)util_copy_str(ret->at, sizeof(ret->at), ev->time);
    ret->line = line;
    (void)util_copy_str(ret->msgid, sizeof(ret->msgid), ev->msgid);
    (void)e;
    return 1;
}

/* A cwd= record that swallowed lines: name the owner of its home directory (if any). */
static size_t
engine_forged_cwd(struct engine *e, const struct exim_event *ev, uint64_t line,
                  struct engine_notice *ret, size_t max)
{
    char home[ATTRIB_ACCOUNT_MAX];

    if (attrib_home_owner(ev->cwd, home, sizeof(home)) == 0)
        home[0] = '\0';
    return engine_injection(e, ENGINE_INJ_CWD, SCOPE_ACCOUNT, home, ev, line, ret, max);
}

/* The remnant of a forged line: never counted; a pending cwd= of its process names the login. */
static size_t
engine_forged_tail(struct engine *e, const struct exim_event *ev, uint64_t line,
                   struct engine_notice *ret, size_t max)
{
    char home[ATTRIB_ACCOUNT_MAX];
    struct fg_str dir = attrib_peek_cwd(&e->attrib, ev->has_pid, ev->pid);

    if (!dir.len || attrib_home_owner(dir, home, sizeof(home)) == 0)
        home[0] = '\0';
    return engine_injection(e, ENGINE_INJ_TAIL, SCOPE_ACCOUNT, home, ev, line, ret, max);
}

size_t
engine_feed(struct engine *e, const struct eximlog_record *rec, uint64_t line,
            struct engine_notice *ret, size_t max)
{
    struct exim_event ev;

    if (eximlog_parse(rec->text, rec->len, &ev) < 0) {
        e->stats.records++;
        e->stats.parse_errors++;
        return 0;
    }
    return engine_feed_event(e, &ev, rec->flags, line, ret, max);
}

size_t
engine_feed_event(struct engine *e, const struct exim_event *parsed, uint32_t rec_flags,
                  uint64_t line, struct engine_notice *ret, size_t max)
{
    struct exim_event ev = *parsed;
    uint32_t flags = ev.flags | rec_flags;
    int64_t claimed = ev.ts_ms;
    size_t k = 0;

    e->stats.records++;
    if (rec_flags & EXIM_F_CWD_FORGED)
        e->stats.cwd_forged++;
    if (rec_flags & EXIM_F_INCOMPLETE)
        e->stats.incomplete++;
    if (flags & EXIM_F_FORGED_TAIL) {
        /* its prefix is the forger's: it neither moves the clock nor counts */
        ev.ts_ms = e->now_ms;
        return engine_forged_tail(e, &ev, line, ret, max);
    }
    if (!engine_clock(e, &ev))
        k += engine_clock_notice(e, &ev, claimed, line, ret, max);
    if (ev.type == EXIM_OTHER) {
        e->stats.other++;
        /* an overflowed cwd= record still names the directory Exim wrote */
        if ((ev.flags & EXIM_F_OVERFLOW) && ev.cwd.len)
            attrib_note_cwd(&e->attrib, &ev);
        return k;
    }
    switch (ev.type) {
    case EXIM_ARRIVAL:
        if (rec_flags & EXIM_F_CWD_FORGED)
            return k;
        return k + engine_arrival(e, &ev, flags, line, ret + k, max - k);
    case EXIM_DELIVERY:
    case EXIM_DEFER:
    case EXIM_FAIL:
        engine_delivery(e, &ev);
        if (e->sig & ENGINE_SIG_RATIO)
            k += engine_signals_delivery(e, &ev, line, ret + k, max - k);
        return k;
    case EXIM_COMPLETED:
        e->stats.completed++;
        (void)msgtrack_remove(e->msgs, ev.msgid); /* queued counts: engine_queued_forget() */
        return k;
    case EXIM_FROZEN:
    case EXIM_UNFROZEN: {
        struct msgtrack_msg *msg = msgtrack_get(e->msgs, ev.msgid);
        if (!msg)
            return k;
        if (ev.type == EXIM_UNFROZEN) {
            msg->flags &= ~MSGTRACK_FROZEN;
            return k;
        }
        msg->flags |= MSGTRACK_FROZEN;
        return k + (fg_str_eq(ev.text, "ACL")
                        ? engine_frozen_by_acl(e, msg, &ev, line, ret + k, max - k)
                        : 0);
    }
    case EXIM_CWD:
        ev.flags = flags;
        /* the swallowed lines are part of the directory text, never records of their own;
         * the directory still ties its process's arrival (counted for its login) */
        attrib_note_cwd(&e->attrib, &ev);
        if (flags & (EXIM_F_CWD_FORGED | EXIM_F_ABSORBED))
            k += engine_forged_cwd(e, &ev, line, ret + k, max - k);
        return k;
    case EXIM_AUTH_FAIL:
        engine_authfail(e, &ev);
        return k;
    default:
        return k;
    }
}

size_t
engine_queued(const struct engine *e, const struct engine_notice *n,
              char (*ret)[MSGTRACK_ID_MAX + 1], size_t max)
{
    return msgtrack_queued(e->msgs, n->scope, n->ref, ret, max);
}

int
engine_release(struct engine *e, enum usertable_scope scope, const char *id)
{
    struct usertable_entry *ent;
    int r;

    if (scope >= SCOPE__MAX)
        return -EINVAL;
    /* the pipeline's clock is log time: a wall-clock release time would move the identity
     * hours ahead on a host west of UTC and keep it from ever tripping again meanwhile */
    r = usertable_get(e->table, scope, id, strlen(id), e->now_ms, false, &ent);
    if (r <= 0)
        return r == 0 ? 0 : r;
    policy_release(e->policy, ent, e->now_ms);
    return 1;
}

const struct engine_stats *
engine_stats(const struct engine *e)
{
    return &e->stats;
}

struct usertable *
engine_table(struct engine *e)
{
    return e->table;
}

int64_t
engine_now_ms(const struct engine *e)
{
    return e->now_ms;
}

/* Does @a (value, id) rank above @b? Higher values first, then identities in byte order. */
static bool
engine_top_above(uint64_t va, const char *ia, const struct engine_top_row *b)
{
    return va != b->value ? va > b->value : strcmp(ia, b->id) < 0;
}

size_t
engine_top(struct engine *e, enum usertable_scope scope, size_t series,
           struct engine_top_row *ret, size_t max)
{
    const struct usertable_params *up = usertable_params(e->table);
    struct usertable_entry *ent;
    size_t pos = 0, n = 0;

    if (scope >= SCOPE__MAX || series >= up->nseries[scope] || max == 0)
        return 0;
    while ((ent = usertable_next(e->table, &pos))) {
        const char *id;
        uint64_t v;
        size_t i;

        if (usertable_entry_scope(ent) != scope)
            continue;
        v = usertable_sum(e->table, ent, series, e->now_ms);
        id = usertable_entry_key(ent);
        if (v == 0 || (n == max && !engine_top_above(v, id, &ret[n - 1])))
            continue;
        /* insertion into the sorted best-@max: at most @max moves per identity */
        i = n < max ? n++ : n - 1;
        while (i > 0 && engine_top_above(v, id, &ret[i - 1])) {
            ret[i] = ret[i - 1];
            i--;
        }
        ret[i] = (struct engine_top_row){ .id = id, .value = v };
    }
    return n;
}

size_t
engine_identity_queued(struct engine *e, enum usertable_scope scope, const char *id,
                       char (*ret)[MSGTRACK_ID_MAX + 1], size_t max)
{
    struct usertable_entry *ent;

    if (scope >= SCOPE__MAX || !id ||
        usertable_get(e->table, scope, id, strlen(id), e->now_ms, false, &ent) <= 0)
        return 0;
    return msgtrack_queued(e->msgs, scope, usertable_ref(e->table, ent), ret, max);
}

/* --- signals across identities: campaigns, spam traps, queue and bounce ratios ----- */

static bool
engine_campaign_same(const struct config_rule *a, const struct config_rule *b)
{
    return a->kind == CONFIG_RULE_CAMPAIGN && b->kind == CONFIG_RULE_CAMPAIGN &&
           strcmp(a->name, b->name) == 0 && a->key == b->key && a->window_ms == b->window_ms &&
           a->above == b->above && a->factor == b->factor && a->learn_ms == b->learn_ms &&
           a->keys == b->keys && a->min_domains == b->min_domains;
}

/*
 * Take @cfg's signals: campaign tables (kept across a reload for an unchanged rule unless
 * @fresh: the identity table was rebuilt, so members name stale slots).
 * All or nothing: -ENOMEM leaves the engine as it was.
 */
static int
engine_signals_swap(struct engine *e, const struct config *old, const struct config *cfg,
                    bool fresh)
{
    struct campaign *next[CONFIG_RULES_MAX] = { NULL };
    bool kept[CONFIG_RULES_MAX] = { false }, reused[CONFIG_RULES_MAX] = { false };
    unsigned sig = 0;

    for (size_t i = 0; i < cfg->nrules; i++) {
        const struct config_rule *r = &cfg->rules[i];
        sig |= r->kind == CONFIG_RULE_QUEUED   ? ENGINE_SIG_QUEUED
               : r->kind == CONFIG_RULE_RATIO  ? ENGINE_SIG_RATIO
               : r->kind == CONFIG_RULE_TRAP   ? ENGINE_SIG_TRAP
               : r->kind == CONFIG_RULE_CAMPAIGN ? ENGINE_SIG_CAMPAIGN
                                                 : 0;
        if (r->kind != CONFIG_RULE_CAMPAIGN)
            continue;
        for (size_t j = 0; old && !fresh && j < old->nrules && !next[i]; j++)
            if (!kept[j] && e->campaigns[j] && engine_campaign_same(&old->rules[j], r)) {
                next[i] = e->campaigns[j];
                kept[j] = reused[i] = true;
            }
        if (!next[i]) {
            struct campaign_params cp = { .window_ms = r->window_ms, .above = r->above,
                                          .factor = r->factor, .learn_ms = r->learn_ms,
                                          .cap = r->keys };
            next[i] = campaign_new(&cp, e->key);
            if (!next[i])
                goto nomem;
        }
    }
    /* commit */
    for (size_t j = 0; j < CONFIG_RULES_MAX; j++)
        if (e->campaigns[j] && !kept[j])
            campaign_free(e->campaigns[j]);
    memcpy(e->campaigns, next, sizeof(next));
    e->sig = sig;
    return 0;
nomem:
    for (size_t i = 0; i < CONFIG_RULES_MAX; i++)
        if (!reused[i])
            campaign_free(next[i]);
    return -ENOMEM;
}

static void
engine_signals_free(struct engine *e)
{
    for (size_t i = 0; i < CONFIG_RULES_MAX; i++)
        campaign_free(e->campaigns[i]);
}

/* Queued messages of an identity (kept with its policy state): add @delta (+1 or -1). */
static uint32_t
engine_queued_add(struct usertable_entry *ent, int delta)
{
    uint32_t *q = &usertable_entry_policy(ent)->queued;

    if (delta > 0 && *q < UINT32_MAX)
        (*q)++;
    else if (delta < 0 && *q > 0)
        (*q)--;
    return *q;
}

static void
engine_queued_msg(struct engine *e, const struct msgtrack_msg *msg, int delta)
{
    for (size_t s = 0; s < SCOPE__MAX; s++) {
        struct usertable_entry *ent;
        if (msg->refs[s].slot != UINT32_MAX && (ent = usertable_deref(e->table, msg->refs[s])))
            (void)engine_queued_add(ent, delta);
    }
}

/* A message leaves the table (its Completed line, or forgotten for room): not queued now. */
static void
engine_queued_forget(void *ctx, const struct msgtrack_msg *msg)
{
    if (msg->flags & MSGTRACK_QUEUED)
        engine_queued_msg(ctx, msg, -1);
}


/* One ENGINE_TRIP for @ent when policy_fire() lets @rule fire; 0 or 1 notices. */
static size_t
engine_fire(struct engine *e, struct usertable_entry *ent, size_t rule, uint64_t value,
            uint64_t threshold, const char *detail, const struct exim_event *ev, uint64_t line,
            struct engine_notice *ret, size_t max)
{
    enum usertable_scope scope = usertable_entry_scope(ent);
    const char *id = usertable_entry_key(ent);
    char acct[ATTRIB_ACCOUNT_MAX];
    struct policy_verdict v;

    if (max == 0)
        return 0;
    engine_account_of(e, scope, id, acct, sizeof(acct));
    if (!policy_fire(e->policy, ent, acct[0] ? acct : NULL, rule, value, threshold, e->now_ms, &v))
        return 0;
    engine_notice_fill(ret, ENGINE_TRIP, scope, id, acct, e, ent, ev, line);
    ret->verdict = v;
    (void)util_copy_str(ret->detail, sizeof(ret->detail), fg_str_make(detail, strlen(detail)));
    e->stats.trips++;
    return 1;
}

/* The identity a cross-identity signal names: the mailbox, else the script, else the account. */
static struct usertable_entry *
engine_sender(struct engine *e, const struct attrib_result *ar, const struct msgtrack_msg *msg)
{
    enum usertable_scope s = ar->mailbox[0] ? SCOPE_MAILBOX
                             : ar->script[0] ? SCOPE_SCRIPT
                                             : SCOPE_ACCOUNT;
    const char *id = s == SCOPE_MAILBOX ? ar->mailbox : s == SCOPE_SCRIPT ? ar->script : ar->account;
    struct usertable_entry *ent = NULL;

    if (!id[0])
        return NULL;
    if (msg && msg->refs[s].slot != UINT32_MAX)
        ent = usertable_deref(e->table, msg->refs[s]);
    if (!ent && usertable_get(e->table, s, id, strlen(id), e->now_ms, false, &ent) <= 0)
        return NULL;
    return ent;
}

/* Queued messages: count this one, then the QUEUED rules of each of its identities. */
static size_t
engine_sig_queued(struct engine *e, const struct exim_event *ev, struct msgtrack_msg *msg,
                  uint64_t line, struct engine_notice *ret, size_t max)
{
    const struct config *cfg = e->cfg;
    size_t k = 0;

    if (!msg || (msg->flags & MSGTRACK_QUEUED))
        return 0;
    msg->flags |= MSGTRACK_QUEUED;
    for (size_t s = 0; s < SCOPE__MAX; s++) {
        struct usertable_entry *ent;
        uint32_t n;
        if (msg->refs[s].slot == UINT32_MAX ||
            !(ent = usertable_deref(e->table, msg->refs[s])))
            continue;
        n = engine_queued_add(ent, 1);
        for (size_t i = 0; i < cfg->nrules; i++)
            if (cfg->rules[i].kind == CONFIG_RULE_QUEUED && cfg->rules[i].scope == s)
                k += engine_fire(e, ent, i, n, POLICY_THRESHOLD_RULE, "", ev, line, ret + k,
                                 max - k);
    }
    return k;
}

/* A spam trap among the recipients trips the sender at once (one trip per message). */
static size_t
engine_sig_trap(struct engine *e, const struct exim_event *ev, const struct attrib_result *ar,
                const struct msgtrack_msg *msg, uint64_t line, struct engine_notice *ret,
                size_t max)
{
    char detail[ENGINE_DETAIL_MAX];
    struct usertable_entry *ent;
    struct fg_str addr = { NULL, 0 };
    size_t pos = 0, k = 0;
    bool hit = false;

    while (!hit && eximlog_next_addr(ev->rcpts, &pos, &addr) > 0)
        hit = config_is_trap(e->cfg, addr.p, addr.len);
    if (!hit)
        return 0;
    e->stats.trap_hits++;
    ent = engine_sender(e, ar, msg);
    if (!ent)
        return 0;
    (void)snprintf(detail, sizeof(detail), "trap %.*s", (int)(addr.len < 300 ? addr.len : 300),
                   addr.p);
    for (size_t i = 0; i < e->cfg->nrules && k < max; i++)
        if (e->cfg->rules[i].kind == CONFIG_RULE_TRAP)
            k += engine_fire(e, ent, i, 1, 0, detail, ev, line, ret + k, max - k);
    return k;
}

/* The shown form of a domain-set key: its first domains, sorted, lowercase. */
struct engine_domains_text {
    const struct exim_event *ev;
};

/* Case-insensitive order of two domains. */
static int
engine_domain_cmp(struct fg_str a, struct fg_str b)
{
    for (size_t i = 0; i < a.len && i < b.len; i++) {
        char x = util_ascii_lower(a.p[i]), y = util_ascii_lower(b.p[i]);
        if (x != y)
            return (unsigned char)x < (unsigned char)y ? -1 : 1;
    }
    return a.len < b.len ? -1 : a.len > b.len;
}

static void
engine_domains_text(void *ctx, char *buf, size_t size)
{
    const struct engine_domains_text *t = ctx;
    struct fg_str doms[16], addr;
    size_t pos = 0, nd = 0, n = 0;

    /* the first 16 distinct domains of the for-list, in order (insertion sort) */
    while (nd < N_ELEMS(doms) && eximlog_next_addr(t->ev->rcpts, &pos, &addr) > 0) {
        struct fg_str d = eximlog_addr_domain(addr);
        size_t k = nd;
        int c = 1;
        if (d.len == 0)
            continue;
        while (k > 0 && (c = engine_domain_cmp(d, doms[k - 1])) < 0)
            k--;
        if (k > 0 && c == 0)
            continue;
        memmove(&doms[k + 1], &doms[k], (nd - k) * sizeof(doms[0]));
        doms[k] = d;
        nd++;
    }
    buf[0] = '\0';
    for (size_t i = 0; i < nd; i++) {
        if (n + (n ? 1 : 0) + doms[i].len + 1 > size)
            break;
        if (n)
            buf[n++] = ' ';
        for (size_t j2 = 0; j2 < doms[i].len; j2++)
            buf[n++] = util_ascii_lower(doms[i].p[j2]);
        buf[n] = '\0';
    }
}

static void
engine_subject_text(void *ctx, char *buf, size_t size)
{
    (void)util_copy_str(buf, size, fg_str_make(ctx, strlen(ctx)));
}

/* 'campaign subject "<key>": N identities (baseline B, threshold T): id, id, ...' */
static void
engine_campaign_detail(struct engine *e, const struct config_rule *r,
                       const struct campaign_trip *t, char *buf, size_t size)
{
    size_t n;
    int w = snprintf(buf, size, "campaign %s \"%s\": %u identities (baseline %.1f, threshold %llu)",
                     r->key == CONFIG_CAMPAIGN_DOMAINS ? "domains" : "subject", t->text,
                     (unsigned)t->identities, t->baseline, (unsigned long long)t->threshold);

    n = w < 0 ? 0 : (size_t)w < size ? (size_t)w : size - 1;
    for (size_t i = 0; i < t->nmembers && n + 8 < size; i++) {
        struct usertable_entry *ent = usertable_deref(e->table, t->members[i].ref);
        const char *id;
        size_t len;
        if (!ent)
            continue;
        id = usertable_entry_key(ent);
        len = strlen(id);
        if (n + 2 + len + 5 >= size) {
            memcpy(buf + n, ", ...", 5);
            n += 5;
            break;
        }
        buf[n++] = i ? ',' : ':';
        buf[n++] = ' ';
        memcpy(buf + n, id, len);
        n += len;
    }
    buf[n] = '\0';
}

static size_t
engine_sig_campaign(struct engine *e, const struct exim_event *ev, const struct attrib_result *ar,
                    const struct msgtrack_msg *msg, uint64_t line, struct engine_notice *ret,
                    size_t max)
{
    const struct config *cfg = e->cfg;
    char subject[CAMPAIGN_TEXT_MAX + 1], detail[ENGINE_DETAIL_MAX];
    uint64_t doms[ATTRIB_DOMAINS_MAX];
    struct engine_domains_text dt = { ev };
    struct usertable_entry *ent = engine_sender(e, ar, msg);
    struct campaign_member m;
    struct campaign_trip trip;
    size_t k = 0, nsubj = SIZE_MAX;
    uint64_t dkey = 0;
    uint32_t dkey_min = 0; /* the min_domains dkey was made for, 0: none yet */

    if (!ent)
        return 0;
    m.ref = usertable_ref(e->table, ent);
    m.scope = usertable_entry_scope(ent);
    for (size_t i = 0; i < cfg->nrules; i++) {
        const struct config_rule *r = &cfg->rules[i];
        enum campaign_result res;
        uint64_t key, evicted;

        if (r->kind != CONFIG_RULE_CAMPAIGN || !e->campaigns[i])
            continue;
        evicted = campaign_stats(e->campaigns[i])->evictions;
        if (r->key == CONFIG_CAMPAIGN_SUBJECT) {
            if (nsubj == SIZE_MAX)
                nsubj = ev->subject.len ? campaign_subject_norm(ev->subject.p, ev->subject.len,
                                                                subject, sizeof(subject))
                                        : 0;
            if (nsubj == 0)
                continue;
            key = campaign_key_of(e->campaigns[i], subject, nsubj);
            res = campaign_note(e->campaigns[i], key, engine_subject_text, subject, m, e->now_ms,
                                &trip);
        } else {
            if (dkey_min != r->min_domains) {
                size_t n = ar->ndomains < N_ELEMS(doms) ? ar->ndomains : N_ELEMS(doms);
                memcpy(doms, ar->domains, n * sizeof(doms[0]));
                dkey = campaign_set_key(e->campaigns[i], doms, n, r->min_domains);
                dkey_min = r->min_domains;
            }
            if (dkey == 0)
                continue;
            res = campaign_note(e->campaigns[i], dkey, engine_domains_text, &dt, m, e->now_ms,
                                &trip);
        }
        e->stats.campaign_evictions += campaign_stats(e->campaigns[i])->evictions - evicted;
        if (res == CAMPAIGN_QUIET)
            continue;
        if (res == CAMPAIGN_TRIPPED)
            e->stats.campaign_trips++;
        engine_campaign_detail(e, r, &trip, detail, sizeof(detail));
        for (size_t j = 0; j < trip.nmembers && k < max; j++) {
            struct usertable_entry *me = usertable_deref(e->table, trip.members[j].ref);
            if (me)
                k += engine_fire(e, me, i, trip.identities, trip.threshold, detail, ev, line,
                                 ret + k, max - k);
        }
    }
    return k;
}

static size_t
engine_signals_arrival(struct engine *e, const struct exim_event *ev,
                       const struct attrib_result *ar, struct msgtrack_msg *msg, uint64_t line,
                       struct engine_notice *ret, size_t max)
{
    size_t k = 0;

    if (e->sig & ENGINE_SIG_QUEUED)
        k += engine_sig_queued(e, ev, msg, line, ret + k, max - k);
    if (e->sig & ENGINE_SIG_TRAP)
        k += engine_sig_trap(e, ev, ar, msg, line, ret + k, max - k);
    if (e->sig & ENGINE_SIG_CAMPAIGN)
        k += engine_sig_campaign(e, ev, ar, msg, line, ret + k, max - k);
    return k;
}

/* A failure or deferral moved a ratio: evaluate the rules of the message's identities. */
static size_t
engine_signals_delivery(struct engine *e, const struct exim_event *ev, uint64_t line,
                        struct engine_notice *ret, size_t max)
{
    struct policy_verdict v[POLICY_VERDICTS_MAX];
    struct msgtrack_msg *msg;
    size_t k = 0;

    if (ev->type == EXIM_DELIVERY || (ev->flags & (EXIM_F_ENFORCED | EXIM_F_RETRY_WAIT)))
        return 0;
    msg = msgtrack_get(e->msgs, ev->msgid);
    if (!msg)
        return 0;
    for (size_t s = 0; s < SCOPE__MAX && k < max; s++) {
        struct usertable_entry *ent;
        char acct[ATTRIB_ACCOUNT_MAX];
        const char *id;
        size_t n;
        if (msg->refs[s].slot == UINT32_MAX || !policy_has_ratio(e->policy, (enum usertable_scope)s))
            continue;
        ent = usertable_deref(e->table, msg->refs[s]);
        if (!ent)
            continue;
        id = usertable_entry_key(ent);
        engine_account_of(e, (enum usertable_scope)s, id, acct, sizeof(acct));
        n = policy_eval_ratios(e->policy, e->table, ent, acct[0] ? acct : NULL, e->now_ms, v,
                               N_ELEMS(v));
        for (size_t i = 0; i < n && k < max; i++) {
            engine_notice_fill(&ret[k], ENGINE_TRIP, (enum usertable_scope)s, id, acct, e, ent, ev,
                               line);
            ret[k++].verdict = v[i];
            e->stats.trips++;
        }
    }
    return k;
}

/* --- replay's bound: records fed ENGINE_CLOCK_CONFIRM late ------------------------ */

/* Records that cannot vouch for the time: their text is partly not Exim's. */
#define ENGINE_F_SUSPECT                                                                           \
    (EXIM_F_ABSORBED | EXIM_F_CWD_FORGED | EXIM_F_FORGED_TAIL | EXIM_F_AMBIGUOUS_HOST |           \
     EXIM_F_ANOMALOUS | EXIM_F_FOREIGN | EXIM_F_INCOMPLETE)

struct engine_delay_slot {
    struct eximlog_record rec; /* rec.text points at text */
    uint64_t line;
    int64_t ts_ms; /* INT64_MAX: not a witness (no time, or suspect) */
    int parsed;    /* eximlog_parse's answer: < 0, the record is a parse error */
    struct exim_event ev; /* parsed once, when pushed: its slices point into text */
    char text[EXIMLOG_RECORD_MAX + 2];
};

struct engine_delay {
    struct engine_delay_slot slot[ENGINE_CLOCK_CONFIRM + 1];
    size_t head, n;
    bool strict; /* parse again when fed (engine_feed) */
    int64_t last_ms; /* the newest witness pushed, INT64_MIN: none yet */
};

struct engine_delay *
engine_delay_new(void)
{
    struct engine_delay *q = calloc(1, sizeof(struct engine_delay));

    if (q)
        q->last_ms = INT64_MIN;
    return q;
}

void
engine_delay_free(struct engine_delay *q)
{
    free(q);
}

size_t
engine_delay_pending(const struct engine_delay *q)
{
    return q->n;
}

void
engine_delay_set_strict(struct engine_delay *q, bool strict)
{
    q->strict = strict;
}

int64_t
engine_delay_last_ms(const struct engine_delay *q)
{
    return q->last_ms;
}

/* Feed the oldest held record, bounded by the oldest witness time among the others. */
static size_t
engine_delay_pop(struct engine_delay *q, struct engine *e, struct engine_notice *ret, size_t max)
{
    struct engine_delay_slot *s = &q->slot[q->head];
    int64_t bound = INT64_MAX;
    size_t k;

    for (size_t i = 1; i < q->n; i++) {
        size_t at = q->head + i;
        const struct engine_delay_slot *f =
            &q->slot[at < N_ELEMS(q->slot) ? at : at - N_ELEMS(q->slot)];
        if (f->ts_ms < bound)
            bound = f->ts_ms;
    }
    e->bound_ms = bound;
    if (q->strict) {
        k = engine_feed(e, &s->rec, s->line, ret, max);
    } else if (s->parsed < 0) {
        e->stats.records++;
        e->stats.parse_errors++;
        k = 0;
    } else {
        k = engine_feed_event(e, &s->ev, s->rec.flags, s->line, ret, max);
    }
    e->bound_ms = INT64_MAX;
    q->head = q->head + 1 < N_ELEMS(q->slot) ? q->head + 1 : 0;
    q->n--;
    return k;
}

size_t
engine_delay_push(struct engine_delay *q, struct engine *e, const struct eximlog_record *rec,
                  uint64_t line, struct engine_notice *ret, size_t max)
{
    size_t at = q->head + q->n;
    struct engine_delay_slot *s = &q->slot[at < N_ELEMS(q->slot) ? at : at - N_ELEMS(q->slot)];
    struct exim_event *ev = &s->ev;
    /* a record over the limit stays over it (the parser refuses it the same way) */
    size_t len = rec->len <= EXIMLOG_RECORD_MAX ? rec->len : EXIMLOG_RECORD_MAX + 1;
    int r;

    memcpy(s->text, rec->text, len);
    s->text[len] = '\0';
    s->rec = *rec;
    s->rec.text = s->text;
    s->rec.len = len;
    s->line = line;
    r = eximlog_parse(s->text, len, ev);
    s->parsed = r;
    s->ts_ms = (r >= 0 && ev->time.len && !((ev->flags | rec->flags) & ENGINE_F_SUSPECT))
                   ? ev->ts_ms
                   : INT64_MAX;
    if (s->ts_ms != INT64_MAX)
        q->last_ms = s->ts_ms;
    q->n++;
    return q->n == N_ELEMS(q->slot) ? engine_delay_pop(q, e, ret, max) : 0;
}

size_t
engine_delay_flush(struct engine_delay *q, struct engine *e, struct engine_notice *ret, size_t max)
{
    return q->n ? engine_delay_pop(q, e, ret, max) : 0;
}
