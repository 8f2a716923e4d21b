/*
 * engine.c - the pipeline between the tailer and the actions: parse a record, attribute
 * it, count it, evaluate the policy, and say what tripped.
 *
 * It owns the identity table, the table of queued messages and the policy; it borrows
 * the configuration and the domain maps. It never acts: trips come back as notices and
 * the caller (the live daemon or --replay) decides what to do with them. Time is the
 * record's own timestamp, clamped so that it never goes backwards (two merged logs or a
 * clock step must not revive old counts), so replay and live agree exactly.
 *
 * Delivery lines carry only a message id: they find their identities through msgtrack.
 * Failures and deferrals that our own hold or suspension caused (R=enforce_mail_permissions)
 * and "retry time not reached" repeats are never counted.
 */
#include "engine.h"

#include <errno.h>
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
    struct attrib attrib;
    struct engine_stats stats;
    uint8_t key[SIPHASH_KEY_LEN];
    int64_t now_ms;
};

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
    attrib_init(&e->attrib);
    e->policy = policy_new(e->cfg);
    if (e->policy)
        e->table = engine_table_new(e, e->policy);
    e->msgs = msgtrack_new(0, e->key);
    if (!e->policy || !e->table || !e->msgs || !e->maps) {
        engine_free(e);
        return -ENOMEM;
    }
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
    attrib_maps_free(e->own_maps);
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
        policy_free(e->policy);
        e->policy = p;
        e->cfg = cfg;
        engine_remap_trips(e, names, old->nrules);
        return 0;
    }
    /* build everything first: a failure leaves the running config untouched */
    table = usertable_new(&up);
    msgs = msgtrack_new(0, e->key);
    e->cfg = cfg; /* engine_carry_trips() maps onto the new rules */
    r = (table && msgs) ? engine_carry_trips(e, table, names, old->nrules) : -ENOMEM;
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

static size_t
engine_arrival(struct engine *e, const struct exim_event *ev, uint64_t line,
               struct engine_notice *ret, size_t max)
{
    struct attrib_result *ar = &e->ar;
    struct msgtrack_msg *msg;
    uint64_t ip_hash = 0;
    size_t k = 0;

    e->stats.arrivals++;
    if (attrib_arrival(&e->attrib, e->maps, ev, ar) <= 0) {
        if (ar->flags & ATTRIB_BOUNCE)
            e->stats.bounces++;
        else if (ar->flags & ATTRIB_SERVICE)
            e->stats.service++;
        else if (ar->flags & ATTRIB_LOCAL_ONLY)
            e->stats.local_only++;
        else if (ar->flags & ATTRIB_INBOUND)
            e->stats.inbound++;
        return 0;
    }
    e->stats.outbound++;
    msg = msgtrack_add(e->msgs, ev->msgid, e->now_ms);
    if (msg) {
        msg->rcpts_counted = ev->nrcpt;
        if (ev->flags & EXIM_F_RCPT_TRUNC)
            msg->flags |= MSGTRACK_TRUNCATED;
    }
    if (ev->host_ip.len)
        ip_hash = siphash(ev->host_ip.p, ev->host_ip.len, e->key);
    if (ar->mailbox[0])
        k += engine_count(e, SCOPE_MAILBOX, ar->mailbox, ar->account, ev, ar, ip_hash, msg, line,
                          ret + k, max - k);
    if (ar->account[0])
        k += engine_count(e, SCOPE_ACCOUNT, ar->account, ar->account, ev, ar, ip_hash, msg, line,
                          ret + k, max - k);
    if (ar->script[0])
        k += engine_count(e, SCOPE_SCRIPT, ar->script, ar->account, ev, ar, ip_hash, msg, line,
                          ret + k, max - k);
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
    /* a cut for-list undercounted the recipients: the delivery lines tell the rest */
    if ((msg->flags & MSGTRACK_TRUNCATED) && msg->rcpts_final > msg->rcpts_counted)
        engine_count_msg(e, msg, WINDOW_RECIPIENTS, 1);
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

size_t
engine_feed(struct engine *e, const struct eximlog_record *rec, uint64_t line,
            struct engine_notice *ret, size_t max)
{
    struct exim_event ev;
    int r;

    e->stats.records++;
    if (rec->flags & EXIM_F_CWD_FORGED)
        e->stats.cwd_forged++;
    if (rec->flags & EXIM_F_INCOMPLETE)
        e->stats.incomplete++;
    r = eximlog_parse(rec->text, rec->len, &ev);
    if (r < 0) {
        e->stats.parse_errors++;
        return 0;
    }
    if (ev.ts_ms > e->now_ms)
        e->now_ms = ev.ts_ms;
    ev.ts_ms = e->now_ms;
    if (r == 0) {
        e->stats.other++;
        return 0;
    }
    switch (ev.type) {
    case EXIM_ARRIVAL:
        if (rec->flags & EXIM_F_CWD_FORGED)
            return 0;
        return engine_arrival(e, &ev, line, ret, max);
    case EXIM_DELIVERY:
    case EXIM_DEFER:
    case EXIM_FAIL:
        engine_delivery(e, &ev);
        return 0;
    case EXIM_COMPLETED:
        e->stats.completed++;
        (void)msgtrack_remove(e->msgs, ev.msgid);
        return 0;
    case EXIM_FROZEN:
    case EXIM_UNFROZEN: {
        struct msgtrack_msg *msg = msgtrack_get(e->msgs, ev.msgid);
        if (!msg)
            return 0;
        if (ev.type == EXIM_UNFROZEN) {
            msg->flags &= ~MSGTRACK_FROZEN;
            return 0;
        }
        msg->flags |= MSGTRACK_FROZEN;
        return fg_str_eq(ev.text, "ACL") ? engine_frozen_by_acl(e, msg, &ev, line, ret, max) : 0;
    }
    case EXIM_CWD:
        if (!(rec->flags & EXIM_F_CWD_FORGED))
            attrib_note_cwd(&e->attrib, &ev);
        return 0;
    case EXIM_AUTH_FAIL:
        engine_authfail(e, &ev);
        return 0;
    default:
        return 0;
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
