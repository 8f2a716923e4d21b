/*
 * config.c - /etc/floodgate/floodgate.yml to struct config, validated in full.
 *
 * The file is loaded with libyaml's document API and then walked once, top down, against
 * fixed tables of known keys. The walk is all or nothing (sniproxy's reload model): the
 * first problem stops it, is described in a struct diag (file, 1-based line and column,
 * the key path such as "rules[1].window", a message) and the half-built config is freed;
 * a caller never sees a config that is only partly valid. A reload therefore keeps the
 * running config unless the new one is valid as a whole.
 *
 * What is checked: every key is known and appears once per map; every value has the
 * expected shape (scalar, list or map); numbers, durations, names and absolute paths are
 * in range; rule names are unique; at most CONFIG_RULES_MAX rules and at most
 * USERTABLE_SERIES_MAX distinct (metric, window) pairs per scope, so lib/policy can
 * always compile what this module accepts. Anchors and aliases are refused: nothing here
 * needs them and they would let a small file expand into a large walk. Inputs are bounded
 * before a tree is built: CONFIG_FILE_MAX bytes, CONFIG_DEPTH_MAX levels of nesting. A
 * plain null where a list or map is expected ("overrides:" with every entry commented
 * out) means empty.
 *
 * This module owns the config's strings; it does not log (callers format the diag) and,
 * besides libyaml and util, depends only on window_metric_parse(). Scope names are parsed
 * here rather than through usertable.c so that tests can fake the identity table.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "util.h"

#define CONFIG_PATHKEY_MAX      256              /* key paths while walking; diag keeps 64 */
#define CONFIG_WINDOW_MIN_MS    1000             /* a rule window of at least 1s */
#define CONFIG_WINDOW_MAX_MS    (7 * 86400000LL) /* and at most 7 days: counters are in memory */
#define CONFIG_COOLDOWN_MAX_MS  (30 * 86400000LL)
#define CONFIG_TIMEOUT_MAX_MS   (3600000LL) /* an action command slower than 1h is hung */
#define CONFIG_FACTOR_MAX       1000000.0
#define CONFIG_IDENTITIES_MAX   10000000u /* about 2 GB of counters; more is a typo */
#define CONFIG_FREEZE_BATCH_MAX 500u      /* lib/action's ACTION_BATCH_MAX: no silent cut */
#define CONFIG_ACTIONS_HOUR_MAX 100000u
/*
 * Our schema nests four deep (top, rules, a rule, its actions). libyaml's scanner keeps a
 * possible simple key per open flow collection and rescans them all on every token, so
 * "[[[[..." costs O(depth^2): a 1 MiB file would take hours. Depth is checked first.
 */
#define CONFIG_DEPTH_MAX 16

struct config_parser {
    yaml_document_t doc;
    const char *name;
    struct diag *diag;
    unsigned char *visited; /* one byte per node: a second visit means an alias */
    size_t nnodes;
    struct config *c;
};

/* Called for each pair of a map; returns -ENOENT for a key it does not know. */
typedef int (*config_pair_fn)(struct config_parser *p, const char *key, yaml_node_t *val,
                              const char *path, void *ctx);

static const char *const config_scope_names[SCOPE__MAX] = {
    [SCOPE_MAILBOX] = "mailbox",
    [SCOPE_ACCOUNT] = "account",
    [SCOPE_SCRIPT] = "script",
};

static const struct {
    const char *name;
    uint32_t bit;
} config_action_names[] = {
    { "freeze", CONFIG_ACTION_FREEZE },
    { "hold", CONFIG_ACTION_HOLD },
    { "suspend", CONFIG_ACTION_SUSPEND },
    { "alert", CONFIG_ACTION_ALERT },
};

static const char *const config_backend_names[] = {
    [CONFIG_BACKEND_EXIM] = "exim",
    [CONFIG_BACKEND_CPANEL] = "cpanel",
    [CONFIG_BACKEND_COMMAND] = "command",
};

static void config_diag_set(struct diag *d, const char *file, unsigned line, unsigned column,
                            const char *key, const char *fmt, va_list ap) FG_PRINTF(6, 0);

static void
config_diag_set(struct diag *d, const char *file, unsigned line, unsigned column, const char *key,
                const char *fmt, va_list ap)
{
    if (!d)
        return;
    memset(d, 0, sizeof(*d));
    if (snprintf(d->file, sizeof(d->file), "%s", file ? file : "") < 0)
        d->file[0] = '\0';
    d->line = line;
    d->column = column;
    if (snprintf(d->key, sizeof(d->key), "%s", key ? key : "") < 0)
        d->key[0] = '\0';
    if (vsnprintf(d->msg, sizeof(d->msg), fmt, ap) < 0)
        d->msg[0] = '\0';
}

static int config_fail_at(struct config_parser *p, int err, unsigned line, unsigned column,
                          const char *path, const char *fmt, ...) FG_PRINTF(6, 7);

static int
config_fail_at(struct config_parser *p, int err, unsigned line, unsigned column, const char *path,
               const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    config_diag_set(p->diag, p->name, line, column, path, fmt, ap);
    va_end(ap);
    return err;
}

static int config_fail(struct config_parser *p, const yaml_node_t *n, const char *path,
                       const char *fmt, ...) FG_PRINTF(4, 5);

/* Report a problem with node @n (its start mark); returns -EINVAL. */
static int
config_fail(struct config_parser *p, const yaml_node_t *n, const char *path, const char *fmt, ...)
{
    va_list ap;
    unsigned line = n ? (unsigned)n->start_mark.line + 1 : 0;
    unsigned column = n ? (unsigned)n->start_mark.column + 1 : 0;

    va_start(ap, fmt);
    config_diag_set(p->diag, p->name, line, column, path, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

void
diag_format(const struct diag *d, char *buf, size_t size)
{
    int r;

    if (size == 0)
        return;
    if (d->line > 0 && d->key[0])
        r = snprintf(buf, size, "%s:%u:%u: %s: %s", d->file, d->line, d->column, d->key, d->msg);
    else if (d->line > 0)
        r = snprintf(buf, size, "%s:%u:%u: %s", d->file, d->line, d->column, d->msg);
    else if (d->key[0])
        r = snprintf(buf, size, "%s: %s: %s", d->file, d->key, d->msg);
    else
        r = snprintf(buf, size, "%s: %s", d->file, d->msg);
    if (r < 0)
        buf[0] = '\0';
}

static const char *
config_kind_name(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE:
        return "a scalar";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_MAPPING_NODE:
        return "a map";
    case YAML_NO_NODE:
        break;
    }
    return "nothing";
}

/* Node @idx of the document, refusing a second visit (an alias) and dangling indexes. */
static int
config_node(struct config_parser *p, int idx, const char *path, const yaml_node_t *parent,
            yaml_node_t **ret)
{
    yaml_node_t *n = yaml_document_get_node(&p->doc, idx);

    if (!n || idx < 1 || (size_t)idx > p->nnodes)
        return config_fail(p, parent, path, "malformed document");
    if (p->visited[idx - 1]) /* the alias has no mark of its own: name where it is used */
        return config_fail(p, parent, path,
                           "anchors and aliases are not supported (anchor on line %u)",
                           (unsigned)n->start_mark.line + 1);
    p->visited[idx - 1] = 1;
    *ret = n;
    return 0;
}

static int
config_path_key(char *buf, size_t size, const char *path, const char *key)
{
    int r = snprintf(buf, size, "%s%s%s", path, path[0] ? "." : "", key);
    return (r < 0 || (size_t)r >= size) ? -E2BIG : 0;
}

static int
config_path_index(char *buf, size_t size, const char *path, size_t i)
{
    int r = snprintf(buf, size, "%s[%zu]", path, i);
    return (r < 0 || (size_t)r >= size) ? -E2BIG : 0;
}

/* The scalar text of @n; an error naming what was found when @n is not a scalar. */
static int
config_scalar(struct config_parser *p, const yaml_node_t *n, const char *path, const char **ret)
{
    const char *s;

    if (n->type != YAML_SCALAR_NODE)
        return config_fail(p, n, path, "expected a scalar, got %s", config_kind_name(n));
    s = (const char *)n->data.scalar.value;
    if (strlen(s) != n->data.scalar.length)
        return config_fail(p, n, path, "value contains a NUL byte");
    if (n->data.scalar.length == 0)
        return config_fail(p, n, path, "value is empty");
    *ret = s;
    return 0;
}

static int
config_expect(struct config_parser *p, const yaml_node_t *n, const char *path,
              yaml_node_type_t type)
{
    static const char *const want[] = {
        [YAML_SCALAR_NODE] = "a scalar",
        [YAML_SEQUENCE_NODE] = "a list",
        [YAML_MAPPING_NODE] = "a map",
    };

    if (n->type == type)
        return 0;
    return config_fail(p, n, path, "expected %s, got %s", want[type], config_kind_name(n));
}

/* A plain null ("key:" with nothing after it, "~", "null"): an empty list or map. */
static bool
config_is_null(const yaml_node_t *n)
{
    const char *s = (const char *)n->data.scalar.value;

    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (strcmp(s, "") == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
            strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0);
}

/*
 * Walk the map @n: every key a scalar, none twice, each pair handed to @fn; an unknown key
 * is reported by name. A null is an empty map.
 */
static int
config_walk_map(struct config_parser *p, yaml_node_t *n, const char *path, config_pair_fn fn,
                void *ctx)
{
    char sub[CONFIG_PATHKEY_MAX];
    yaml_node_pair_t *start, *top;
    int r;

    if (config_is_null(n))
        return 0;
    r = config_expect(p, n, path, YAML_MAPPING_NODE);
    if (r < 0)
        return r;
    start = n->data.mapping.pairs.start;
    top = n->data.mapping.pairs.top;
    for (yaml_node_pair_t *pair = start; pair < top; pair++) {
        yaml_node_t *k, *v;
        const char *key;

        r = config_node(p, pair->key, path, n, &k);
        if (r < 0)
            return r;
        if (k->type != YAML_SCALAR_NODE)
            return config_fail(p, k, path, "keys must be scalars, got %s", config_kind_name(k));
        key = (const char *)k->data.scalar.value;
        if (config_path_key(sub, sizeof(sub), path, key) < 0 ||
            strlen(key) != k->data.scalar.length)
            return config_fail(p, k, path, "malformed key");
        for (yaml_node_pair_t *q = start; q < pair; q++) {
            yaml_node_t *prev = yaml_document_get_node(&p->doc, q->key);
            if (prev && prev->type == YAML_SCALAR_NODE &&
                strcmp((const char *)prev->data.scalar.value, key) == 0)
                return config_fail(p, k, sub, "duplicate key '%s' (first on line %u)", key,
                                   (unsigned)prev->start_mark.line + 1);
        }
        r = config_node(p, pair->value, sub, k, &v);
        if (r < 0)
            return r;
        r = fn(p, key, v, sub, ctx);
        if (r == -ENOENT)
            return config_fail(p, k, sub, "unknown key '%s'", key);
        if (r < 0)
            return r;
    }
    return 0;
}

/* The number of items of list @n, at most @max of them; a null is an empty list. */
static int
config_list(struct config_parser *p, yaml_node_t *n, const char *path, size_t max,
            size_t *ret_count)
{
    size_t count;
    int r;

    if (config_is_null(n)) {
        *ret_count = 0;
        return 0;
    }
    r = config_expect(p, n, path, YAML_SEQUENCE_NODE);
    if (r < 0)
        return r;
    count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count > max) {
        char sub[CONFIG_PATHKEY_MAX];
        yaml_node_t *item = yaml_document_get_node(&p->doc, n->data.sequence.items.start[max]);
        if (config_path_index(sub, sizeof(sub), path, max) < 0)
            sub[0] = '\0';
        return config_fail(p, item ? item : n, sub, "more than %zu entries", max);
    }
    *ret_count = count;
    return 0;
}

static int
config_list_item(struct config_parser *p, yaml_node_t *list, size_t i, const char *path, char *sub,
                 size_t subsize, yaml_node_t **ret)
{
    if (config_path_index(sub, subsize, path, i) < 0)
        return config_fail(p, list, path, "malformed key");
    return config_node(p, list->data.sequence.items.start[i], sub, list, ret);
}

static int
config_parse_string(struct config_parser *p, yaml_node_t *n, const char *path, size_t max,
                    char **ret)
{
    const char *s;
    char *dup;
    int r;

    r = config_scalar(p, n, path, &s);
    if (r < 0)
        return r;
    if (strlen(s) >= max)
        return config_fail(p, n, path, "longer than %zu bytes", max - 1);
    dup = strdup(s);
    if (!dup)
        return -ENOMEM;
    free(*ret);
    *ret = dup;
    return 0;
}

/* An absolute path: the daemon runs from / and must not depend on its working directory. */
static int
config_parse_path(struct config_parser *p, yaml_node_t *n, const char *path, char **ret)
{
    const char *s;
    int r;

    r = config_scalar(p, n, path, &s);
    if (r < 0)
        return r;
    if (s[0] != '/')
        return config_fail(p, n, path, "'%s' is not an absolute path", s);
    for (const char *q = s; *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f)
            return config_fail(p, n, path, "path contains a control character");
    return config_parse_string(p, n, path, CONFIG_PATH_MAX, ret);
}

static bool
config_duration_unit(const char *s)
{
    static const char *const units[] = { "", "ms", "s", "m", "h", "d" };

    for (size_t i = 0; i < N_ELEMS(units); i++)
        if (strcmp(s, units[i]) == 0)
            return true;
    return false;
}

static int
config_parse_duration(struct config_parser *p, yaml_node_t *n, const char *path, bool allow_zero,
                      int64_t min_ms, int64_t max_ms, int64_t *ret)
{
    size_t zeros;
    const char *s;
    int64_t ms;
    int r;

    r = config_scalar(p, n, path, &s);
    if (r < 0)
        return r;
    /* util refuses zero; only cooldown may be zero ("0", "0s") */
    zeros = strspn(s, "0");
    if (zeros > 0 && config_duration_unit(s + zeros)) {
        if (!allow_zero)
            return config_fail(p, n, path, "duration must be greater than zero");
        *ret = 0;
        return 0;
    }
    r = util_parse_duration_ms(s, &ms);
    if (r < 0)
        return config_fail(p, n, path,
                           "bad duration '%s' (use a number with ms, s, m, h or d, e.g. 10m)", s);
    if (ms < min_ms || ms > max_ms)
        return config_fail(p, n, path, "duration '%s' is out of range (%lldms to %lldms)", s,
                           (long long)min_ms, (long long)max_ms);
    *ret = ms;
    return 0;
}

static int
config_parse_u64(struct config_parser *p, yaml_node_t *n, const char *path, uint64_t min,
                 uint64_t max, uint64_t *ret)
{
    const char *s;
    uint64_t v;
    int r;

    r = config_scalar(p, n, path, &s);
    if (r < 0)
        return r;
    if (s[0] == '-')
        return config_fail(p, n, path, "'%s' is negative; expected an integer from %llu to %llu", s,
                           (unsigned long long)min, (unsigned long long)max);
    r = util_parse_u64(s, strlen(s), &v);
    if (r == -EINVAL)
        return config_fail(p, n, path, "'%s' is not a non-negative integer", s);
    if (r < 0 || v < min || v > max)
        return config_fail(p, n, path, "%s is out of range (%llu to %llu)", s,
                           (unsigned long long)min, (unsigned long long)max);
    *ret = v;
    return 0;
}

static int
config_parse_u32(struct config_parser *p, yaml_node_t *n, const char *path, uint32_t min,
                 uint32_t max, uint32_t *ret)
{
    uint64_t v;
    int r = config_parse_u64(p, n, path, min, max, &v);

    if (r < 0)
        return r;
    *ret = (uint32_t)v;
    return 0;
}

/* A decimal factor such as "5", "0.5" or "2.25": no exponent, sign or locale. */
static int
config_parse_factor(struct config_parser *p, yaml_node_t *n, const char *path, double *ret)
{
    const char *s, *dot;
    uint64_t ip = 0, fp = 0;
    size_t ilen, flen = 0;
    double v, scale = 1.0;
    int r;

    r = config_scalar(p, n, path, &s);
    if (r < 0)
        return r;
    dot = strchr(s, '.');
    ilen = dot ? (size_t)(dot - s) : strlen(s);
    r = util_parse_u64(s, ilen, &ip);
    if (r == 0 && dot) {
        flen = strlen(dot + 1);
        r = flen > 9 ? -EINVAL : util_parse_u64(dot + 1, flen, &fp);
    }
    if (r < 0 || ip > (uint64_t)CONFIG_FACTOR_MAX)
        return config_fail(p, n, path, "factor '%s' is not a number from 0 to %.0f (e.g. 2.5)", s,
                           CONFIG_FACTOR_MAX);
    for (size_t i = 0; i < flen; i++)
        scale *= 10.0;
    v = (double)ip + (double)fp / scale;
    if (!(v > 0.0))
        return config_fail(p, n, path, "factor must be greater than 0");
    if (v > CONFIG_FACTOR_MAX)
        return config_fail(p, n, path, "factor %s is over %.0f", s, CONFIG_FACTOR_MAX);
    *ret = v;
    return 0;
}

/* Names land in logs, journal fields and alerts: keep them to a plain alphabet. */
static bool
config_name_valid(const char *s)
{
    if (!s[0] || s[0] == '-' || s[0] == '.')
        return false;
    for (; *s; s++) {
        char ch = *s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.')
            continue;
        return false;
    }
    return true;
}

/*
 * One '@' with text on both sides, no spaces or control characters. Local parts may hold
 * most punctuation (o'brien@, a+tag@) and UTF-8, so nothing stricter is checked.
 */
static bool
config_mailbox_valid(const char *s)
{
    const char *at = strchr(s, '@');

    if (!at || at == s || !at[1] || strchr(at + 1, '@') || strlen(s) >= USERTABLE_KEY_MAX)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            return false;
    return true;
}

static int
config_parse_name(struct config_parser *p, yaml_node_t *n, const char *path, char *buf, size_t size,
                  const char *what)
{
    const char *s;
    int r;

    r = config_scalar(p, n, path, &s);
    if (r < 0)
        return r;
    if (strlen(s) >= size)
        return config_fail(p, n, path, "%s is longer than %zu bytes", what, size - 1);
    if (!config_name_valid(s))
        return config_fail(p, n, path, "%s '%s' may only hold letters, digits, '-', '_' and '.'",
                           what, s);
    memcpy(buf, s, strlen(s) + 1);
    return 0;
}

/* Rules */

enum {
    CONFIG_RULE_NAME = 1u << 0,
    CONFIG_RULE_SCOPE = 1u << 1,
    CONFIG_RULE_METRIC = 1u << 2,
    CONFIG_RULE_WINDOW = 1u << 3,
    CONFIG_RULE_ABOVE = 1u << 4,
    CONFIG_RULE_ACTIONS = 1u << 5,
};

static const char *const config_rule_keys[] = {
    "name", "scope", "metric", "window", "above", "actions",
};

struct config_rule_ctx {
    struct config_rule *rule;
    unsigned seen;
};

static int
config_parse_rule_actions(struct config_parser *p, yaml_node_t *n, const char *path, uint32_t *ret)
{
    char sub[CONFIG_PATHKEY_MAX];
    uint32_t bits = 0;
    size_t count;
    int r;

    r = config_list(p, n, path, N_ELEMS(config_action_names), &count);
    if (r < 0)
        return r;
    if (count == 0)
        return config_fail(p, n, path, "no actions (use [alert] to only alert)");
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item;
        const char *s;
        size_t a;

        r = config_list_item(p, n, i, path, sub, sizeof(sub), &item);
        if (r < 0)
            return r;
        r = config_scalar(p, item, sub, &s);
        if (r < 0)
            return r;
        for (a = 0; a < N_ELEMS(config_action_names); a++)
            if (strcmp(s, config_action_names[a].name) == 0)
                break;
        if (a == N_ELEMS(config_action_names))
            return config_fail(p, item, sub, "unknown action '%s' (freeze, hold, suspend or alert)",
                               s);
        if (bits & config_action_names[a].bit)
            return config_fail(p, item, sub, "duplicate action '%s'", s);
        bits |= config_action_names[a].bit;
    }
    *ret = bits;
    return 0;
}

static int
config_rule_pair(struct config_parser *p, const char *key, yaml_node_t *v, const char *path,
                 void *ctx)
{
    struct config_rule_ctx *rc = ctx;
    struct config_rule *rule = rc->rule;
    const char *s;
    int r;

    if (strcmp(key, "name") == 0) {
        rc->seen |= CONFIG_RULE_NAME;
        return config_parse_name(p, v, path, rule->name, sizeof(rule->name), "rule name");
    }
    if (strcmp(key, "scope") == 0) {
        rc->seen |= CONFIG_RULE_SCOPE;
        r = config_scalar(p, v, path, &s);
        if (r < 0)
            return r;
        for (size_t i = 0; i < SCOPE__MAX; i++) {
            if (strcmp(s, config_scope_names[i]) == 0) {
                rule->scope = (enum usertable_scope)i;
                return 0;
            }
        }
        return config_fail(p, v, path, "unknown scope '%s' (mailbox, account or script)", s);
    }
    if (strcmp(key, "metric") == 0) {
        rc->seen |= CONFIG_RULE_METRIC;
        r = config_scalar(p, v, path, &s);
        if (r < 0)
            return r;
        if (window_metric_parse(s, &rule->metric) < 0)
            return config_fail(p, v, path,
                               "unknown metric '%s' (messages, recipients, failed, deferred, "
                               "domains, ips, mismatch or authfail)",
                               s);
        return 0;
    }
    if (strcmp(key, "window") == 0) {
        rc->seen |= CONFIG_RULE_WINDOW;
        return config_parse_duration(p, v, path, false, CONFIG_WINDOW_MIN_MS, CONFIG_WINDOW_MAX_MS,
                                     &rule->window_ms);
    }
    if (strcmp(key, "above") == 0) {
        rc->seen |= CONFIG_RULE_ABOVE;
        return config_parse_u64(p, v, path, 0, UINT64_MAX, &rule->above);
    }
    if (strcmp(key, "actions") == 0) {
        rc->seen |= CONFIG_RULE_ACTIONS;
        return config_parse_rule_actions(p, v, path, &rule->actions);
    }
    return -ENOENT;
}

/* Each scope's distinct (metric, window) pairs must fit a usertable_params row. */
static int
config_check_series(struct config_parser *p, const yaml_node_t *n, const char *path)
{
    struct config *c = p->c;
    const struct config_rule *last = &c->rules[c->nrules - 1];
    size_t distinct = 0;

    for (size_t i = 0; i < c->nrules; i++) {
        const struct config_rule *a = &c->rules[i];
        bool first = a->scope == last->scope;
        for (size_t j = 0; first && j < i; j++) {
            const struct config_rule *b = &c->rules[j];
            if (b->scope == a->scope && b->metric == a->metric && b->window_ms == a->window_ms)
                first = false;
        }
        distinct += first;
    }
    if (distinct > USERTABLE_SERIES_MAX)
        return config_fail(p, n, path, "more than %d distinct (metric, window) pairs for scope %s",
                           USERTABLE_SERIES_MAX, config_scope_names[last->scope]);
    return 0;
}

static int
config_parse_rule(struct config_parser *p, yaml_node_t *n, const char *path)
{
    struct config *c = p->c;
    struct config_rule_ctx rc = { .rule = &c->rules[c->nrules], .seen = 0 };
    int r;

    memset(rc.rule, 0, sizeof(*rc.rule));
    rc.rule->line = (unsigned)n->start_mark.line + 1;
    r = config_walk_map(p, n, path, config_rule_pair, &rc);
    if (r < 0)
        return r;
    for (size_t i = 0; i < N_ELEMS(config_rule_keys); i++)
        if (!(rc.seen & (1u << i)))
            return config_fail(p, n, path, "missing required key '%s'", config_rule_keys[i]);
    for (size_t i = 0; i < c->nrules; i++)
        if (strcmp(c->rules[i].name, rc.rule->name) == 0)
            return config_fail(p, n, path, "duplicate rule name '%s' (first on line %u)",
                               rc.rule->name, c->rules[i].line);
    c->nrules++;
    return config_check_series(p, n, path);
}

static int
config_parse_rules(struct config_parser *p, yaml_node_t *n, const char *path)
{
    char sub[CONFIG_PATHKEY_MAX];
    size_t count;
    int r;

    r = config_list(p, n, path, CONFIG_RULES_MAX, &count);
    if (r == -EINVAL && n->type == YAML_SEQUENCE_NODE && p->diag)
        (void)snprintf(p->diag->msg, sizeof(p->diag->msg),
                       "more than %d rules (one bit each in an identity's state)",
                       CONFIG_RULES_MAX);
    if (r < 0)
        return r;
    p->c->nrules = 0;
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item;

        r = config_list_item(p, n, i, path, sub, sizeof(sub), &item);
        if (r < 0)
            return r;
        r = config_parse_rule(p, item, sub);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Exemptions and overrides */

static int
config_strcmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A list of names into an owned, sorted, de-duplicated array (replacing any earlier one). */
static int
config_parse_names(struct config_parser *p, yaml_node_t *n, const char *path, bool mailbox,
                   char ***ret, size_t *ret_n)
{
    char sub[CONFIG_PATHKEY_MAX];
    char **v = NULL;
    size_t count, len = 0;
    int r;

    r = config_list(p, n, path, CONFIG_LIST_MAX, &count);
    if (r < 0)
        return r;
    if (count > 0) {
        v = calloc(count, sizeof(*v));
        if (!v)
            return -ENOMEM;
    }
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item;
        const char *s;

        r = config_list_item(p, n, i, path, sub, sizeof(sub), &item);
        if (r < 0)
            goto fail;
        r = config_scalar(p, item, sub, &s);
        if (r < 0)
            goto fail;
        if (mailbox && !config_mailbox_valid(s)) {
            r = config_fail(p, item, sub, "'%s' is not a mailbox (user@domain)", s);
            goto fail;
        }
        if (!mailbox && (strlen(s) >= CONFIG_NAME_MAX || !config_name_valid(s))) {
            r = config_fail(p, item, sub, "'%s' is not an account name", s);
            goto fail;
        }
        v[len] = strdup(s);
        if (!v[len]) {
            r = -ENOMEM;
            goto fail;
        }
        if (mailbox)
            for (char *q = v[len]; *q; q++)
                *q = util_ascii_lower(*q);
        len++;
    }
    if (len > 1) {
        size_t out = 1;
        qsort(v, len, sizeof(*v), config_strcmp);
        for (size_t i = 1; i < len; i++) {
            if (strcmp(v[i], v[out - 1]) == 0)
                free(v[i]);
            else
                v[out++] = v[i];
        }
        len = out;
    }
    for (size_t i = 0; i < *ret_n; i++)
        free((*ret)[i]);
    free(*ret);
    *ret = v;
    *ret_n = len;
    return 0;
fail:
    for (size_t i = 0; i < len; i++)
        free(v[i]);
    free(v);
    return r;
}

static int
config_exempt_pair(struct config_parser *p, const char *key, yaml_node_t *v, const char *path,
                   void *ctx)
{
    struct config *c = p->c;

    (void)ctx;
    if (strcmp(key, "mailboxes") == 0)
        return config_parse_names(p, v, path, true, &c->exempt_mailboxes, &c->nexempt_mailboxes);
    if (strcmp(key, "accounts") == 0)
        return config_parse_names(p, v, path, false, &c->exempt_accounts, &c->nexempt_accounts);
    return -ENOENT;
}

struct config_override_ctx {
    struct config_override *o;
    unsigned seen;
};

static int
config_override_pair(struct config_parser *p, const char *key, yaml_node_t *v, const char *path,
                     void *ctx)
{
    struct config_override_ctx *oc = ctx;

    if (strcmp(key, "account") == 0) {
        oc->seen |= 1u;
        return config_parse_name(p, v, path, oc->o->account, sizeof(oc->o->account), "account");
    }
    if (strcmp(key, "factor") == 0) {
        oc->seen |= 2u;
        return config_parse_factor(p, v, path, &oc->o->factor);
    }
    return -ENOENT;
}

static int
config_parse_overrides(struct config_parser *p, yaml_node_t *n, const char *path)
{
    struct config *c = p->c;
    char sub[CONFIG_PATHKEY_MAX];
    size_t count;
    int r;

    r = config_list(p, n, path, CONFIG_LIST_MAX, &count);
    if (r < 0)
        return r;
    free(c->overrides);
    c->overrides = NULL;
    c->noverrides = 0;
    if (count == 0)
        return 0;
    c->overrides = calloc(count, sizeof(*c->overrides));
    if (!c->overrides)
        return -ENOMEM;
    for (size_t i = 0; i < count; i++) {
        struct config_override_ctx oc = { .o = &c->overrides[i], .seen = 0 };
        yaml_node_t *item;

        r = config_list_item(p, n, i, path, sub, sizeof(sub), &item);
        if (r < 0)
            return r;
        r = config_walk_map(p, item, sub, config_override_pair, &oc);
        if (r < 0)
            return r;
        if (!(oc.seen & 1u))
            return config_fail(p, item, sub, "missing required key 'account'");
        if (!(oc.seen & 2u))
            return config_fail(p, item, sub, "missing required key 'factor'");
        for (size_t j = 0; j < i; j++)
            if (strcmp(c->overrides[j].account, oc.o->account) == 0)
                return config_fail(p, item, sub, "second override for account '%s'", oc.o->account);
        c->noverrides = i + 1;
    }
    return 0;
}

/* The actions: map (enforcement settings) */

static int
config_actions_pair(struct config_parser *p, const char *key, yaml_node_t *v, const char *path,
                    void *ctx)
{
    struct config *c = p->c;
    const char *s;
    int r;

    (void)ctx;
    if (strcmp(key, "backend") == 0) {
        r = config_scalar(p, v, path, &s);
        if (r < 0)
            return r;
        for (size_t i = 0; i < N_ELEMS(config_backend_names); i++) {
            if (strcmp(s, config_backend_names[i]) == 0) {
                c->backend = (enum config_backend)i;
                return 0;
            }
        }
        return config_fail(p, v, path, "unknown backend '%s' (exim, cpanel or command)", s);
    }
    if (strcmp(key, "exim_path") == 0)
        return config_parse_path(p, v, path, &c->exim_path);
    if (strcmp(key, "exim_config") == 0)
        return config_parse_path(p, v, path, &c->exim_config);
    if (strcmp(key, "spool_dir") == 0)
        return config_parse_path(p, v, path, &c->spool_dir);
    if (strcmp(key, "blocklist_file") == 0)
        return config_parse_path(p, v, path, &c->blocklist_file);
    if (strcmp(key, "whmapi1_path") == 0)
        return config_parse_path(p, v, path, &c->whmapi1_path);
    if (strcmp(key, "uapi_path") == 0)
        return config_parse_path(p, v, path, &c->uapi_path);
    if (strcmp(key, "command") == 0)
        return config_parse_path(p, v, path, &c->command_path);
    if (strcmp(key, "timeout") == 0)
        return config_parse_duration(p, v, path, false, 1000, CONFIG_TIMEOUT_MAX_MS,
                                     &c->action_timeout_ms);
    if (strcmp(key, "freeze_batch") == 0)
        return config_parse_u32(p, v, path, 1, CONFIG_FREEZE_BATCH_MAX, &c->freeze_batch);
    if (strcmp(key, "max_per_hour") == 0)
        return config_parse_u32(p, v, path, 1, CONFIG_ACTIONS_HOUR_MAX, &c->max_actions_per_hour);
    return -ENOENT;
}

struct config_top_ctx {
    yaml_node_t *actions; /* where actions: was, for checks across its keys */
};

static int
config_top_pair(struct config_parser *p, const char *key, yaml_node_t *v, const char *path,
                void *ctx)
{
    static const struct {
        const char *name;
        size_t offset;
    } paths[] = {
        { "userdomains_file", offsetof(struct config, userdomains_file) },
        { "localdomains_file", offsetof(struct config, localdomains_file) },
        { "log_file", offsetof(struct config, log_file) },
        { "state_dir", offsetof(struct config, state_dir) },
        { "audit_log", offsetof(struct config, audit_log) },
        { "control_socket", offsetof(struct config, control_socket) },
    };
    struct config_top_ctx *tc = ctx;
    struct config *c = p->c;
    const char *s;
    int r;

    for (size_t i = 0; i < N_ELEMS(paths); i++)
        if (strcmp(key, paths[i].name) == 0)
            return config_parse_path(p, v, path, (char **)((char *)c + paths[i].offset));
    if (strcmp(key, "mode") == 0) {
        r = config_scalar(p, v, path, &s);
        if (r < 0)
            return r;
        if (strcmp(s, "enforce") == 0)
            c->mode = CONFIG_MODE_ENFORCE;
        else if (strcmp(s, "monitor") == 0)
            c->mode = CONFIG_MODE_MONITOR;
        else
            return config_fail(p, v, path, "unknown mode '%s' (enforce or monitor)", s);
        return 0;
    }
    if (strcmp(key, "rules") == 0)
        return config_parse_rules(p, v, path);
    if (strcmp(key, "exempt") == 0)
        return config_walk_map(p, v, path, config_exempt_pair, NULL);
    if (strcmp(key, "overrides") == 0)
        return config_parse_overrides(p, v, path);
    if (strcmp(key, "cooldown") == 0)
        return config_parse_duration(p, v, path, true, 0, CONFIG_COOLDOWN_MAX_MS, &c->cooldown_ms);
    if (strcmp(key, "max_identities") == 0)
        return config_parse_u32(p, v, path, 1, CONFIG_IDENTITIES_MAX, &c->max_identities);
    if (strcmp(key, "actions") == 0) {
        tc->actions = v;
        return config_walk_map(p, v, path, config_actions_pair, NULL);
    }
    return -ENOENT;
}

/* libyaml's own words and mark for a syntax error, mapped to -EINVAL (or -ENOMEM). */
static int
config_yaml_error(struct config_parser *p, const yaml_parser_t *y, const char *buf, size_t len)
{
    const yaml_mark_t *m = &y->problem_mark;
    unsigned line = (unsigned)m->line + 1, column = (unsigned)m->column + 1;

    if (y->error == YAML_MEMORY_ERROR)
        return config_fail_at(p, -ENOMEM, 0, 0, "", "out of memory");
    if (y->error == YAML_READER_ERROR) {
        /* the reader reports a byte offset, not a mark */
        line = 1;
        column = 1;
        for (size_t i = 0; i < y->problem_offset && i < len; i++) {
            column++;
            if (buf[i] == '\n') {
                line++;
                column = 1;
            }
        }
    }
    if (y->context)
        return config_fail_at(p, -EINVAL, line, column, "", "YAML syntax error: %s %s", y->context,
                              y->problem ? y->problem : "");
    return config_fail_at(p, -EINVAL, line, column, "", "YAML syntax error: %s",
                          y->problem ? y->problem : "unknown problem");
}

/* Cross-key checks once everything is read. */
static int
config_check(struct config_parser *p, const struct config_top_ctx *tc)
{
    struct config *c = p->c;

    if (c->backend == CONFIG_BACKEND_COMMAND && !c->command_path)
        return config_fail(p, tc->actions, "actions.command",
                           "backend 'command' needs actions.command, an absolute path");
    return 0;
}

/* A first pass over the events: syntax errors and nesting, before any tree is built. */
static int
config_check_events(struct config_parser *p, const char *buf, size_t len)
{
    yaml_parser_t y;
    yaml_event_t ev;
    unsigned depth = 0;
    bool end = false;
    int r = 0;

    if (!yaml_parser_initialize(&y))
        return -ENOMEM;
    yaml_parser_set_input_string(&y, (const unsigned char *)buf, len);
    yaml_parser_set_encoding(&y, YAML_UTF8_ENCODING);
    while (!end) {
        if (!yaml_parser_parse(&y, &ev)) {
            r = config_yaml_error(p, &y, buf, len);
            break;
        }
        if (ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT)
            depth++;
        else if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT)
            depth--;
        end = ev.type == YAML_STREAM_END_EVENT;
        if (depth > CONFIG_DEPTH_MAX) {
            r = config_fail_at(p, -EINVAL, (unsigned)ev.start_mark.line + 1,
                               (unsigned)ev.start_mark.column + 1, "",
                               "nested deeper than %d levels", CONFIG_DEPTH_MAX);
            end = true;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&y);
    return r;
}

/* Load the one document of @buf into p->doc; on failure nothing is left to delete. */
static int
config_load_document(struct config_parser *p, const char *buf, size_t len)
{
    yaml_parser_t y;
    yaml_document_t extra;
    const yaml_node_t *root;
    int r;

    r = config_check_events(p, buf, len);
    if (r < 0)
        return r;
    if (!yaml_parser_initialize(&y))
        return -ENOMEM;
    yaml_parser_set_input_string(&y, (const unsigned char *)buf, len);
    yaml_parser_set_encoding(&y, YAML_UTF8_ENCODING);
    if (!yaml_parser_load(&y, &p->doc)) {
        r = config_yaml_error(p, &y, buf, len);
        goto out;
    }
    if (!yaml_document_get_root_node(&p->doc)) {
        r = config_fail_at(p, -EINVAL, 1, 1, "", "empty file: expected a map of settings");
        goto fail;
    }
    if (!yaml_parser_load(&y, &extra)) {
        r = config_yaml_error(p, &y, buf, len);
        goto fail;
    }
    root = yaml_document_get_root_node(&extra);
    if (root)
        r = config_fail_at(p, -EINVAL, (unsigned)root->start_mark.line + 1,
                           (unsigned)root->start_mark.column + 1, "",
                           "more than one YAML document");
    yaml_document_delete(&extra);
    if (r == 0)
        goto out;
fail:
    yaml_document_delete(&p->doc);
out:
    yaml_parser_delete(&y);
    return r;
}

int
config_parse(const char *buf, size_t len, const char *name, struct config **ret,
             struct diag *reterr)
{
    struct config_parser p = { .name = name ? name : "<config>", .diag = reterr };
    struct config_top_ctx tc = { NULL };
    bool loaded = false;
    yaml_node_t *root;
    int r;

    if (reterr)
        memset(reterr, 0, sizeof(*reterr));
    if (len > CONFIG_FILE_MAX)
        return config_fail_at(&p, -E2BIG, 0, 0, "", "file is larger than %d bytes",
                              CONFIG_FILE_MAX);
    p.c = config_new_default();
    if (!p.c)
        return -ENOMEM;
    free(p.c->path);
    p.c->path = strdup(p.name);
    if (!p.c->path) {
        r = -ENOMEM;
        goto fail;
    }
    r = config_load_document(&p, buf, len);
    loaded = r == 0;
    if (r < 0)
        goto fail;
    p.nnodes = (size_t)(p.doc.nodes.top - p.doc.nodes.start);
    p.visited = calloc(p.nnodes, 1);
    if (!p.visited) {
        r = -ENOMEM;
        goto fail;
    }
    root = yaml_document_get_root_node(&p.doc);
    p.visited[0] = 1;
    if (root->type != YAML_MAPPING_NODE) {
        r = config_fail(&p, root, "", "expected a map of settings at the top, got %s",
                        config_kind_name(root));
        goto fail;
    }
    r = config_walk_map(&p, root, "", config_top_pair, &tc);
    if (r < 0)
        goto fail;
    r = config_check(&p, &tc);
    if (r < 0)
        goto fail;
    yaml_document_delete(&p.doc);
    free(p.visited);
    *ret = p.c;
    return 0;
fail:
    if (r == -ENOMEM && reterr && !reterr->msg[0])
        (void)config_fail_at(&p, r, 0, 0, "", "out of memory");
    if (loaded)
        yaml_document_delete(&p.doc);
    free(p.visited);
    config_free(p.c);
    return r;
}

int
config_load(const char *path, struct config **ret, struct diag *reterr)
{
    struct config_parser p = { .name = path, .diag = reterr };
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int fd, r;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        r = -errno;
        return config_fail_at(&p, r, 0, 0, "", "cannot open: %s", strerror(-r));
    }
    if (fstat(fd, &st) < 0) {
        r = -errno;
        (void)config_fail_at(&p, r, 0, 0, "", "cannot stat: %s", strerror(-r));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = config_fail_at(&p, -EINVAL, 0, 0, "", "not a regular file");
        goto out;
    }
    /* read one byte past the cap so an oversized file is refused, not cut */
    buf = malloc(CONFIG_FILE_MAX + 1);
    if (!buf) {
        r = -ENOMEM;
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, CONFIG_FILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            (void)config_fail_at(&p, r, 0, 0, "", "cannot read: %s", strerror(-r));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > CONFIG_FILE_MAX) {
            r = config_fail_at(&p, -E2BIG, 0, 0, "", "file is larger than %d bytes",
                               CONFIG_FILE_MAX);
            goto out;
        }
    }
    r = config_parse(buf, len, path, ret, reterr);
out:
    free(buf);
    (void)close(fd);
    return r;
}

static int
config_set_default(char **field, const char *value)
{
    *field = strdup(value);
    return *field ? 0 : -ENOMEM;
}

struct config *
config_new_default(void)
{
    struct config *c = calloc(1, sizeof(*c));
    int r = 0;

    if (!c)
        return NULL;
    c->mode = CONFIG_MODE_ENFORCE;
    c->cooldown_ms = 3600000;
    c->max_identities = USERTABLE_CAP_DEFAULT;
    c->backend = CONFIG_BACKEND_EXIM;
    c->action_timeout_ms = 30000;
    c->freeze_batch = 50;
    c->max_actions_per_hour = 100;
    r |= config_set_default(&c->path, "<default>");
    r |= config_set_default(&c->userdomains_file, "/etc/userdomains");
    r |= config_set_default(&c->localdomains_file, "/etc/localdomains");
    r |= config_set_default(&c->log_file, "/var/log/exim_mainlog");
    r |= config_set_default(&c->state_dir, "/var/lib/floodgate");
    r |= config_set_default(&c->audit_log, "/var/log/floodgate/audit.jsonl");
    r |= config_set_default(&c->control_socket, "/run/floodgate/ctl.sock");
    r |= config_set_default(&c->exim_path, "/usr/sbin/exim");
    r |= config_set_default(&c->spool_dir, "/var/spool/exim");
    r |= config_set_default(&c->blocklist_file, "/etc/exim/floodgate-blocklist");
    r |= config_set_default(&c->whmapi1_path, "/usr/local/cpanel/bin/whmapi1");
    r |= config_set_default(&c->uapi_path, "/usr/local/cpanel/bin/uapi");
    if (r < 0) {
        config_free(c);
        return NULL;
    }
    return c;
}

void
config_free(struct config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nexempt_mailboxes; i++)
        free(c->exempt_mailboxes[i]);
    free(c->exempt_mailboxes);
    for (size_t i = 0; i < c->nexempt_accounts; i++)
        free(c->exempt_accounts[i]);
    free(c->exempt_accounts);
    free(c->overrides);
    free(c->path);
    free(c->userdomains_file);
    free(c->localdomains_file);
    free(c->log_file);
    free(c->state_dir);
    free(c->audit_log);
    free(c->control_socket);
    free(c->exim_path);
    free(c->exim_config);
    free(c->spool_dir);
    free(c->blocklist_file);
    free(c->whmapi1_path);
    free(c->uapi_path);
    free(c->command_path);
    free(c);
}

/*
 * The lookups scan linearly: lists loaded here are sorted, but a config built by hand (in
 * tests, or by another tool) need not be, and lib/policy only asks once a rule would fire.
 */
bool
config_is_exempt_mailbox(const struct config *c, const char *mailbox)
{
    struct fg_str m;

    if (!mailbox)
        return false;
    m = fg_str_make(mailbox, strlen(mailbox));
    for (size_t i = 0; i < c->nexempt_mailboxes; i++) {
        const char *e = c->exempt_mailboxes[i];
        if (fg_str_eq_nocase(m, fg_str_make(e, strlen(e))))
            return true;
    }
    return false;
}

bool
config_is_exempt_account(const struct config *c, const char *account)
{
    if (!account)
        return false;
    for (size_t i = 0; i < c->nexempt_accounts; i++)
        if (strcmp(c->exempt_accounts[i], account) == 0)
            return true;
    return false;
}

double
config_factor(const struct config *c, const char *account)
{
    if (!account)
        return 1.0;
    for (size_t i = 0; i < c->noverrides; i++)
        if (strcmp(c->overrides[i].account, account) == 0)
            return c->overrides[i].factor;
    return 1.0;
}
