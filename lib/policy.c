/*
 * policy.c - rules, counters and a log time in; verdicts out.
 *
 * policy_new() compiles the config's rules once: every scope gets the list of distinct
 * (metric, window) series its rules read, rules with the same pair share one series, and
 * each rule remembers its series index. policy_usertable_series() hands those lists to
 * the identity table, so the table counts exactly what the rules need and nothing else.
 *
 * policy_eval() is pure: no clock, no I/O, no logging, no allocation. Per identity the
 * state is struct usertable_policy, stored with the entry: bit i of `tripped` means rule i
 * fired and was not released (clear -> tripped; lib/action tracks acted), and
 * `quiet_until_ms` is the end of the cooldown after a release. A rule fires when the
 * sliding value is strictly greater than its threshold, `above` times the account's
 * override factor rounded down (saturating at UINT64_MAX). Exemptions and overrides are
 * looked up only when a rule would fire, so an ordinary event costs one usertable_sum()
 * per rule of its scope. The mode (enforce or monitor) does not change evaluation: it
 * decides only whether lib/action acts.
 *
 * Only usertable_sum(), usertable_entry_scope(), usertable_entry_key() and
 * usertable_entry_policy() are used from the identity table; tests fake exactly those.
 */
#include "policy.h"

#include <stdlib.h>
#include <string.h>

struct policy {
    const struct config *cfg; /* borrowed for the policy's life */
    struct usertable_series series[SCOPE__MAX][USERTABLE_SERIES_MAX];
    size_t nseries[SCOPE__MAX];
    size_t rule_series[CONFIG_RULES_MAX]; /* rule index -> series index within its scope */
    size_t rule_total[CONFIG_RULES_MAX];  /* ratio rules: the recipients series */
    bool has_ratio[SCOPE__MAX];           /* the scope has a ratio rule */
    double min_factor;                    /* smallest override factor, at most 1 */
};

/* Index of (metric, window) in the scope's series, added when new; -1 when full. */
static int
policy_series_index(struct policy *p, enum usertable_scope scope, enum window_metric metric,
                    int64_t window_ms, size_t *ret)
{
    size_t n = p->nseries[scope];

    for (size_t i = 0; i < n; i++) {
        const struct usertable_series *s = &p->series[scope][i];
        if (s->metric == metric && s->window_ms == window_ms) {
            *ret = i;
            return 0;
        }
    }
    if (n == USERTABLE_SERIES_MAX)
        return -1;
    p->series[scope][n] = (struct usertable_series){ .metric = metric, .window_ms = window_ms };
    p->nseries[scope] = n + 1;
    *ret = n;
    return 0;
}

struct policy *
policy_new(const struct config *cfg)
{
    struct policy *p;

    if (cfg->nrules > CONFIG_RULES_MAX)
        return NULL;
    p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->cfg = cfg;
    p->min_factor = 1.0;
    for (size_t i = 0; i < cfg->noverrides; i++)
        if (cfg->overrides[i].factor < p->min_factor)
            p->min_factor = cfg->overrides[i].factor;
    for (size_t i = 0; i < cfg->nrules; i++) {
        const struct config_rule *r = &cfg->rules[i];
        bool counted = r->kind == CONFIG_RULE_RATE || r->kind == CONFIG_RULE_RATIO;
        if ((unsigned)r->scope >= SCOPE__MAX ||
            (counted &&
             policy_series_index(p, r->scope, r->metric, r->window_ms, &p->rule_series[i]) < 0) ||
            (r->kind == CONFIG_RULE_RATIO &&
             policy_series_index(p, r->scope, WINDOW_RECIPIENTS, r->window_ms,
                                 &p->rule_total[i]) < 0)) {
            policy_free(p);
            return NULL;
        }
        if (r->kind == CONFIG_RULE_RATIO)
            p->has_ratio[r->scope] = true;
    }
    return p;
}

void
policy_free(struct policy *p)
{
    free(p);
}

void
policy_usertable_series(const struct policy *p, struct usertable_params *ret)
{
    memcpy(ret->series, p->series, sizeof(ret->series));
    memcpy(ret->nseries, p->nseries, sizeof(ret->nseries));
}

size_t
policy_rule_series(const struct policy *p, size_t rule)
{
    return p->rule_series[rule];
}

/* above x factor, rounded down; a factor that overflows saturates instead of wrapping. */
static uint64_t
policy_threshold(uint64_t above, double factor)
{
    double t;

    if (factor == 1.0)
        return above;
    t = (double)above * factor;
    if (!(t >= 0.0))
        return 0;
    if (t >= 18446744073709551616.0) /* 2^64 */
        return UINT64_MAX;
    return (uint64_t)t;
}

/*
 * A ratio rule: the failed (or deferred) recipients in @value, the recipients in @total;
 * -1 while the recipients are under the rule's minimum.
 */
static int
policy_ratio(const struct policy *p, const struct usertable *t, const struct usertable_entry *e,
             size_t i, int64_t now_ms, uint64_t *value, uint64_t *total)
{
    *total = usertable_sum(t, e, p->rule_total[i], now_ms);
    if (*total == 0 || *total < p->cfg->rules[i].min)
        return -1;
    *value = usertable_sum(t, e, p->rule_series[i], now_ms);
    return 0;
}

/* ratio x factor x total, rounded down: the ratio trips when the count is strictly above. */
static uint64_t
policy_ratio_threshold(double ratio, double factor, uint64_t total)
{
    double t = ratio * factor;

    if (t >= 1.0)
        return total; /* a count never exceeds its total */
    return (uint64_t)(t * (double)total);
}

/* The account of a script identity is the part of its key before ':'. */
static const char *
policy_account(enum usertable_scope scope, const char *key, const char *account, char *buf,
               size_t size)
{
    const char *colon;
    size_t len;

    if (account)
        return account;
    if (scope == SCOPE_ACCOUNT)
        return key;
    if (scope != SCOPE_SCRIPT)
        return NULL;
    colon = strchr(key, ':');
    len = colon ? (size_t)(colon - key) : 0;
    if (len == 0 || len >= size)
        return NULL;
    memcpy(buf, key, len);
    buf[len] = '\0';
    return buf;
}

/* Looked up once per evaluation, and only when some rule would fire. */
struct policy_lazy {
    bool done;
    bool exempt;
    double factor;
};

static void
policy_lookup(const struct config *cfg, enum usertable_scope scope, const char *key,
              const char *account, struct policy_lazy *l)
{
    l->done = true;
    l->exempt = (scope == SCOPE_MAILBOX && config_is_exempt_mailbox(cfg, key)) ||
                (account && config_is_exempt_account(cfg, account));
    l->factor = config_factor(cfg, account);
}

static size_t policy_eval_kinds(const struct policy *p, const struct usertable *t,
                                struct usertable_entry *e, const char *account, int64_t now_ms,
                                bool ratios_only, struct policy_verdict *ret, size_t max);

size_t
policy_eval(const struct policy *p, const struct usertable *t, struct usertable_entry *e,
            const char *account, int64_t now_ms, struct policy_verdict *ret, size_t max)
{
    return policy_eval_kinds(p, t, e, account, now_ms, false, ret, max);
}

/*
 * Ratio rules are evaluated by policy_eval_ratios() alone: a ratio's count only grows on a
 * failure or deferral line, while an arrival only adds to its total.
 */

bool
policy_has_ratio(const struct policy *p, enum usertable_scope scope)
{
    return (unsigned)scope < SCOPE__MAX && p->has_ratio[scope];
}

size_t
policy_eval_ratios(const struct policy *p, const struct usertable *t, struct usertable_entry *e,
                   const char *account, int64_t now_ms, struct policy_verdict *ret, size_t max)
{
    return p->has_ratio[usertable_entry_scope(e)]
               ? policy_eval_kinds(p, t, e, account, now_ms, true, ret, max)
               : 0;
}

/* Rule @i (@r) trips: its bit set in @st (until a release) and its verdict. */
static struct policy_verdict
policy_trip(struct usertable_policy *st, const struct config_rule *r, size_t i,
            enum usertable_scope scope, uint64_t value, uint64_t threshold)
{
    st->tripped |= UINT32_C(1) << i;
    return (struct policy_verdict){
        .rule = i,
        .rule_name = r->name,
        .scope = scope,
        .value = value,
        .threshold = threshold,
        .window_ms = r->window_ms,
        .actions = r->actions,
    };
}

/* The threshold of rule @r at @factor: a rate's count, or a ratio's share of @total. */
static inline uint64_t
policy_rule_threshold(const struct config_rule *r, double factor, uint64_t total)
{
    return r->kind == CONFIG_RULE_RATIO ? policy_ratio_threshold(r->ratio, factor, total)
                                        : policy_threshold(r->above, factor);
}

static size_t
policy_eval_kinds(const struct policy *p, const struct usertable *t, struct usertable_entry *e,
                  const char *account, int64_t now_ms, bool ratios_only,
                  struct policy_verdict *ret, size_t max)
{
    const struct config *cfg = p->cfg;
    enum usertable_scope scope = usertable_entry_scope(e);
    struct usertable_policy *st = usertable_entry_policy(e);
    struct policy_lazy lazy = { false, false, 1.0 };
    char buf[CONFIG_NAME_MAX];
    const char *key = NULL;
    size_t n = 0;

    if (now_ms < st->quiet_until_ms)
        return 0;
    for (size_t i = 0; i < cfg->nrules && n < max; i++) {
        const struct config_rule *r = &cfg->rules[i];
        uint32_t bit = UINT32_C(1) << i;
        uint64_t value, threshold, total = 0;

        if (r->scope != scope || (st->tripped & bit) ||
            ratios_only != (r->kind == CONFIG_RULE_RATIO))
            continue;
        if (r->kind == CONFIG_RULE_RATIO) {
            if (policy_ratio(p, t, e, i, now_ms, &value, &total) < 0)
                continue;
        } else {
            if (r->kind != CONFIG_RULE_RATE)
                continue;
            value = usertable_sum(t, e, p->rule_series[i], now_ms);
        }
        /* below every possible threshold: no need to look the account up */
        if (!lazy.done && value <= policy_rule_threshold(r, p->min_factor, total))
            continue;
        if (!lazy.done) {
            key = usertable_entry_key(e);
            account = policy_account(scope, key, account, buf, sizeof(buf));
            policy_lookup(cfg, scope, key, account, &lazy);
        }
        if (lazy.exempt)
            return n;
        threshold = policy_rule_threshold(r, lazy.factor, total);
        if (value <= threshold)
            continue;
        ret[n++] = policy_trip(st, r, i, scope, value, threshold);
    }
    return n;
}

int
policy_fire(const struct policy *p, struct usertable_entry *e, const char *account, size_t rule,
            uint64_t value, uint64_t threshold, int64_t now_ms, struct policy_verdict *ret)
{
    const struct config *cfg = p->cfg;
    const struct config_rule *r;
    enum usertable_scope scope = usertable_entry_scope(e);
    struct usertable_policy *st = usertable_entry_policy(e);
    struct policy_lazy lazy;
    char buf[CONFIG_NAME_MAX];
    const char *key;

    if (rule >= cfg->nrules || now_ms < st->quiet_until_ms || (st->tripped & (UINT32_C(1) << rule)))
        return 0;
    r = &cfg->rules[rule];
    if (threshold == POLICY_THRESHOLD_RULE && value <= policy_threshold(r->above, p->min_factor))
        return 0;
    if (threshold != POLICY_THRESHOLD_RULE && value <= threshold)
        return 0;
    key = usertable_entry_key(e);
    account = policy_account(scope, key, account, buf, sizeof(buf));
    policy_lookup(cfg, scope, key, account, &lazy);
    if (lazy.exempt)
        return 0;
    if (threshold == POLICY_THRESHOLD_RULE) {
        threshold = policy_threshold(r->above, lazy.factor);
        if (value <= threshold)
            return 0;
    }
    *ret = policy_trip(st, r, rule, scope, value, threshold);
    return 1;
}

void
policy_release(const struct policy *p, struct usertable_entry *e, int64_t now_ms)
{
    struct usertable_policy *st = usertable_entry_policy(e);

    st->tripped = 0;
    if (__builtin_add_overflow(now_ms, p->cfg->cooldown_ms, &st->quiet_until_ms))
        st->quiet_until_ms = INT64_MAX;
}
