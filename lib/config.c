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
 * Alert destinations carry credentials (a Slack URL is one; whsec_ keys): messages name
 * the key, the file and at most a URL's host, never its path, query, user info or a key;
 * url_file and secret_file are read through a small reader table (the one I/O of
 * config_parse()) and refused when others may read or write them or their group may write
 * them; what held a credential (read buffers, libyaml's copies of the file, the config's
 * URLs and keys) is wiped with explicit_bzero() before it is freed.
 *
 * This module owns the config's strings; it does not log (callers format the diag) and,
 * besides libyaml and util, depends only on window_metric_parse(), alert_secret_decode()
 * and outbox_name_valid(). Scope names are parsed here rather than through usertable.c so
 * that tests can fake the identity table.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "metrics_http.h"
#include "outbox.h"
#include "util.h"

#define CONFIG_PATHKEY_MAX      256              /* key paths while walking; diag keeps 64 */
#define CONFIG_WINDOW_MIN_MS    1000             /* a rule window of at least 1s */
#define CONFIG_WINDOW_MAX_MS    (7 * 86400000LL) /* and at most 7 days: counters are in memory */
#define CONFIG_COOLDOWN_MAX_MS  (30 * 86400000LL)
#define CONFIG_TIMEOUT_MAX_MS   (3600000LL) /* an action command slower than 1h is hung */
#define CONFIG_FACTOR_MAX       1000000.0
#define CONFIG_IDENTITIES_MAX   10000000u /* about 2 GB of counters; more is a typo */
#define CONFIG_FREEZE_BATCH_MAX 500u      /* lib/action's ACTION_BATCH_MAX: no silent cut */
#define CONFIG_ACTIONS_HOUR_MAX 100000u   /* lib/action's breaker counts any value up to it */
/*
 * Our schema nests four deep (top, rules, a rule, its actions). libyaml's scanner keeps a
 * possible simple key per open flow collection and rescans them all on every token, so
 * "[[[[..." costs O(depth^2): a 1 MiB file would take hours. Depth is checked first.
 */
#define CONFIG_DEPTH_MAX 16

struct config_reader;

struct config_parser {
    yaml_document_t doc;
    const char *name;
    struct diag *diag;
    unsigned char *visited; /* one byte per node: a second visit means an alias */
    size_t nnodes;
    struct config *c;
    const struct config_reader *reader; /* url_file, secret_file */
    unsigned file_mode;                 /* the config file's mode (config_load), 0: unknown */
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

static const char *const config_backend_names[CONFIG_BACKEND__MAX] = {
    [CONFIG_BACKEND_EXIM] = "exim",
    [CONFIG_BACKEND_CPANEL] = "cpanel",
    [CONFIG_BACKEND_COMMAND] = "command",
};

static const char *const config_mode_names[] = {
    [CONFIG_MODE_ENFORCE] = "enforce",
    [CONFIG_MODE_MONITOR] = "monitor",
};

static const char *const config_campaign_key_names[] = {
    [CONFIG_CAMPAIGN_SUBJECT] = "subject",
    [CONFIG_CAMPAIGN_DOMAINS] = "domains",
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

/*
 * A scalar that must be one of the @count @names: its index in *ret, else the error
 * "unknown @what '<value>' (@choices)".
 */
static int
config_parse_choice(struct config_parser *p, const yaml_node_t *n, const char *path,
                    const char *const *names, size_t count, const char *what, const char *choices,
                    size_t *ret)
{
    const char *s;
    int r = config_scalar(p, n, path, &s);

    if (r < 0)
        return r;
    for (size_t i = 0; i < count; i++) {
        if (names[i] && strcmp(s, names[i]) == 0) {
            *ret = i;
            return 0;
        }
    }
    return config_fail(p, n, path, "unknown %s '%s' (%s)", what, s, choices);
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


/* A limit for people, as it would be written in the file: 7d, 1h, 10m, 1s, 500ms. */
static void
config_fmt_duration(int64_t ms, char *buf, size_t size)
{
    if (ms > 0 && ms % 86400000 == 0)
        (void)snprintf(buf, size, "%lldd", (long long)(ms / 86400000));
    else if (ms > 0 && ms % 3600000 == 0)
        (void)snprintf(buf, size, "%lldh", (long long)(ms / 3600000));
    else if (ms > 0 && ms % 60000 == 0)
        (void)snprintf(buf, size, "%lldm", (long long)(ms / 60000));
    else if (ms % 1000 == 0)
        (void)snprintf(buf, size, "%llds", (long long)(ms / 1000));
    else
        (void)snprintf(buf, size, "%lldms", (long long)ms);
}

/* A size limit for people: 16MiB, 4KiB, 100 bytes. */
static void
config_fmt_size(uint64_t b, char *buf, size_t size)
{
    if (b > 0 && b % (1ull << 30) == 0)
        (void)snprintf(buf, size, "%lluGiB", (unsigned long long)(b >> 30));
    else if (b > 0 && b % (1ull << 20) == 0)
        (void)snprintf(buf, size, "%lluMiB", (unsigned long long)(b >> 20));
    else if (b > 0 && b % 1024 == 0)
        (void)snprintf(buf, size, "%lluKiB", (unsigned long long)(b >> 10));
    else
        (void)snprintf(buf, size, "%llu bytes", (unsigned long long)b);
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
    if (ms < min_ms || ms > max_ms) {
        char lo[32], hi[32];
        config_fmt_duration(min_ms, lo, sizeof(lo));
        config_fmt_duration(max_ms, hi, sizeof(hi));
        return config_fail(p, n, path, "duration '%s' is out of range (%s to %s)", s, lo, hi);
    }
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
    if (s[0] == '-' && max == UINT64_MAX)
        return config_fail(p, n, path, "'%s' is negative; expected an integer of at least %llu", s,
                           (unsigned long long)min);
    if (s[0] == '-')
        return config_fail(p, n, path, "'%s' is negative; expected an integer from %llu to %llu", s,
                           (unsigned long long)min, (unsigned long long)max);
    r = util_parse_u64(s, strlen(s), &v);
    if (r == -EINVAL)
        return config_fail(p, n, path, "'%s' is not a non-negative integer", s);
    if (r < 0 && max == UINT64_MAX)
        return config_fail(p, n, path, "%s is too large for a 64-bit count", s);
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

/* A decimal such as "5", "0.5" or "2.25", over 0 and at most @max: no exponent, sign or locale. */
static int
config_parse_decimal(struct config_parser *p, yaml_node_t *n, const char *path, const char *what,
                     double max, double *ret)
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
    if (r < 0 || ip > (uint64_t)max)
        return config_fail(p, n, path, "%s '%s' is not a number from 0 to %.0f (e.g. 2.5)", what, s,
                           max);
    for (size_t i = 0; i < flen; i++)
        scale *= 10.0;
    v = (double)ip + (double)fp / scale;
    if (!(v > 0.0))
        return config_fail(p, n, path, "%s must be greater than 0", what);
    if (v > max)
        return config_fail(p, n, path, "%s %s is over %.0f", what, s, max);
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
    yaml_node_t *above; /* read once the kind is known (a fraction for ratios) */
    yaml_node_t *scope, *metric;
    unsigned ext_seen; /* keys of config_rule_ext_pair() */
};

/*
 * Rule kinds beyond a sliding count: ratios of failed or deferred recipients, messages
 * still queued, campaigns across identities, spam-trap hits. The scope and metric keys
 * decide the kind; config_rule_finish() checks the keys each kind takes.
 */
#define CONFIG_LEARN_MAX_MS (7 * 86400000LL)

static const struct {
    const char *name;
    enum config_rule_kind kind;
    enum window_metric metric;
} config_metric_ext[] = {
    { "fail_ratio", CONFIG_RULE_RATIO, WINDOW_FAILED },
    { "defer_ratio", CONFIG_RULE_RATIO, WINDOW_DEFERRED },
    { "queued", CONFIG_RULE_QUEUED, WINDOW_MESSAGES },
    { "identities", CONFIG_RULE_CAMPAIGN, WINDOW_MESSAGES },
};

enum {
    CONFIG_RULE_MIN = 1u << 0,
    CONFIG_RULE_KEY = 1u << 1,
    CONFIG_RULE_FACTOR = 1u << 2,
    CONFIG_RULE_LEARN = 1u << 3,
    CONFIG_RULE_KEYS = 1u << 4,
    CONFIG_RULE_MIN_DOMAINS = 1u << 5,
};

/* scope: campaign or trap. 0, or -ENOENT for another name. */
static int
config_rule_scope_ext(const char *s, struct config_rule *rule)
{
    if (strcmp(s, "campaign") == 0)
        rule->kind = CONFIG_RULE_CAMPAIGN;
    else if (strcmp(s, "trap") == 0)
        rule->kind = CONFIG_RULE_TRAP;
    else
        return -ENOENT;
    rule->scope = SCOPE_MAILBOX;
    return 0;
}

/* metric: fail_ratio, defer_ratio, queued, identities (the kind is settled at the end). */
static int
config_rule_metric_ext(const char *s, struct config_rule *rule)
{
    for (size_t i = 0; i < N_ELEMS(config_metric_ext); i++)
        if (strcmp(s, config_metric_ext[i].name) == 0) {
            rule->metric = config_metric_ext[i].metric;
            return 0;
        }
    return -ENOENT;
}

static bool
config_rule_metric_is_ratio(const yaml_node_t *metric)
{
    const char *s = (const char *)metric->data.scalar.value;

    return strcmp(s, "fail_ratio") == 0 || strcmp(s, "defer_ratio") == 0;
}

const char *
config_rule_metric_name(const struct config_rule *r)
{
    switch (r->kind) {
    case CONFIG_RULE_RATIO:
        return r->metric == WINDOW_FAILED ? "fail_ratio" : "defer_ratio";
    case CONFIG_RULE_QUEUED:
        return "queued";
    case CONFIG_RULE_CAMPAIGN:
        return "identities";
    case CONFIG_RULE_TRAP:
        return "trap";
    default:
        return window_metric_name(r->metric);
    }
}

static int
config_rule_ext_pair(struct config_parser *p, const char *key, yaml_node_t *v, const char *path,
                     struct config_rule_ctx *rc)
{
    struct config_rule *rule = rc->rule;
    size_t choice;
    int r;

    if (strcmp(key, "min") == 0) {
        rc->ext_seen |= CONFIG_RULE_MIN;
        return config_parse_u64(p, v, path, 1, UINT32_MAX, &rule->min);
    }
    if (strcmp(key, "key") == 0) {
        rc->ext_seen |= CONFIG_RULE_KEY;
        r = config_parse_choice(p, v, path, config_campaign_key_names,
                                N_ELEMS(config_campaign_key_names), "campaign key",
                                "subject or domains", &choice);
        if (r == 0)
            rule->key = (enum config_campaign_key)choice;
        return r;
    }
    if (strcmp(key, "factor") == 0) {
        rc->ext_seen |= CONFIG_RULE_FACTOR;
        r = config_parse_decimal(p, v, path, "factor", 1000.0, &rule->factor);
        if (r == 0 && rule->factor < 1.0)
            return config_fail(p, v, path, "factor must be at least 1 (times the baseline)");
        return r;
    }
    if (strcmp(key, "learn") == 0) {
        rc->ext_seen |= CONFIG_RULE_LEARN;
        return config_parse_duration(p, v, path, true, 0, CONFIG_LEARN_MAX_MS, &rule->learn_ms);
    }
    if (strcmp(key, "keys") == 0) {
        rc->ext_seen |= CONFIG_RULE_KEYS;
        return config_parse_u32(p, v, path, 16, 1u << 20, &rule->keys);
    }
    if (strcmp(key, "min_domains") == 0) {
        rc->ext_seen |= CONFIG_RULE_MIN_DOMAINS;
        return config_parse_u32(p, v, path, 2, 64, &rule->min_domains);
    }
    return -ENOENT;
}

/* Is key @bit (CONFIG_RULE_*) of config_rule_keys required for the rule's kind? */
static bool
config_rule_needs(const struct config_rule *rule, const struct config_rule_ctx *rc, unsigned bit)
{
    bool queued = rc->metric && rule->kind == CONFIG_RULE_RATE &&
                  strcmp((const char *)rc->metric->data.scalar.value, "queued") == 0;

    if (rule->kind == CONFIG_RULE_TRAP)
        return bit == CONFIG_RULE_NAME || bit == CONFIG_RULE_SCOPE || bit == CONFIG_RULE_ACTIONS;
    if (queued)
        return bit != CONFIG_RULE_WINDOW;
    return true;
}

/* Settle the kind, read above: for it, and check the keys it takes. */
static int
config_rule_finish(struct config_parser *p, yaml_node_t *n, const char *path,
                   struct config_rule_ctx *rc)
{
    struct config_rule *rule = rc->rule;
    const char *metric = rc->metric ? (const char *)rc->metric->data.scalar.value : "";
    enum config_rule_kind mk = CONFIG_RULE_RATE;
    char sub[CONFIG_PATHKEY_MAX];
    unsigned allowed = 0;

    for (size_t i = 0; i < N_ELEMS(config_metric_ext); i++)
        if (strcmp(metric, config_metric_ext[i].name) == 0)
            mk = config_metric_ext[i].kind;
    if (rule->kind == CONFIG_RULE_CAMPAIGN || rule->kind == CONFIG_RULE_TRAP) {
        if (rule->kind == CONFIG_RULE_CAMPAIGN && mk != CONFIG_RULE_CAMPAIGN)
            return config_fail(p, rc->metric, "metric",
                               "scope campaign counts identities (metric: identities)");
        if (rule->kind == CONFIG_RULE_TRAP && (rc->metric || rc->above || (rc->seen & CONFIG_RULE_WINDOW)))
            return config_fail(p, n, path,
                               "a trap rule trips on one message: no metric, window or above");
    } else if (mk == CONFIG_RULE_CAMPAIGN) {
        return config_fail(p, rc->metric, "metric", "metric identities needs scope: campaign");
    } else {
        rule->kind = mk;
    }
    (void)config_path_key(sub, sizeof(sub), path, "above");
    switch (rule->kind) {
    case CONFIG_RULE_RATIO:
        allowed = CONFIG_RULE_MIN;
        if (config_parse_decimal(p, rc->above, sub, "a ratio", 1.0, &rule->ratio) < 0)
            return -EINVAL;
        if (!(rc->ext_seen & CONFIG_RULE_MIN))
            rule->min = 1;
        break;
    case CONFIG_RULE_CAMPAIGN:
        allowed = CONFIG_RULE_KEY | CONFIG_RULE_FACTOR | CONFIG_RULE_LEARN | CONFIG_RULE_KEYS |
                  (rule->key == CONFIG_CAMPAIGN_DOMAINS ? CONFIG_RULE_MIN_DOMAINS : 0);
        if (config_parse_u64(p, rc->above, sub, 1, CONFIG_CAMPAIGN_ABOVE_MAX, &rule->above) < 0)
            return -EINVAL;
        if (!(rc->ext_seen & CONFIG_RULE_FACTOR))
            rule->factor = CONFIG_CAMPAIGN_FACTOR_DEFAULT;
        if (!(rc->ext_seen & CONFIG_RULE_LEARN))
            rule->learn_ms = 2 * rule->window_ms;
        if (!(rc->ext_seen & CONFIG_RULE_KEYS))
            rule->keys = CONFIG_CAMPAIGN_KEYS_DEFAULT;
        if (!(rc->ext_seen & CONFIG_RULE_MIN_DOMAINS))
            rule->min_domains = CONFIG_CAMPAIGN_MIN_DOMAINS;
        break;
    case CONFIG_RULE_TRAP:
        break;
    default:
        if (config_parse_u64(p, rc->above, sub, 0, UINT64_MAX, &rule->above) < 0)
            return -EINVAL;
    }
    if (rc->ext_seen & ~allowed) {
        static const char *const names[] = { "min",   "key",  "factor",
                                             "learn", "keys", "min_domains" };
        for (size_t i = 0; i < N_ELEMS(names); i++)
            if (rc->ext_seen & ~allowed & (1u << i))
                return config_fail(p, n, path, "key '%s' does not apply to a %s rule", names[i],
                                   rule->kind == CONFIG_RULE_TRAP       ? "trap"
                                   : rule->kind == CONFIG_RULE_CAMPAIGN ? "campaign"
                                                                        : metric);
    }
    return 0;
}

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
        rc->scope = v;
        for (size_t i = 0; i < SCOPE__MAX; i++) {
            if (strcmp(s, config_scope_names[i]) == 0) {
                rule->scope = (enum usertable_scope)i;
                return 0;
            }
        }
        if (config_rule_scope_ext(s, rule) == 0)
            return 0;
        return config_fail(p, v, path,
                           "unknown scope '%s' (mailbox, account, script, campaign or trap)", s);
    }
    if (strcmp(key, "metric") == 0) {
        rc->seen |= CONFIG_RULE_METRIC;
        r = config_scalar(p, v, path, &s);
        if (r < 0)
            return r;
        rc->metric = v;
        if (config_rule_metric_ext(s, rule) == 0)
            return 0;
        if (window_metric_parse(s, &rule->metric) < 0)
            return config_fail(p, v, path,
                               "unknown metric '%s' (messages, recipients, failed, deferred, "
                               "domains, ips, mismatch, authfail, fail_ratio, defer_ratio, "
                               "queued or identities)",
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
        rc->above = v;
        /* a count is checked at once; a ratio's fraction once the metric says so */
        if (rc->metric && !config_rule_metric_is_ratio(rc->metric))
            return config_parse_u64(p, v, path, 0, UINT64_MAX, &rule->above);
        return 0;
    }
    if (strcmp(key, "actions") == 0) {
        rc->seen |= CONFIG_RULE_ACTIONS;
        return config_parse_rule_actions(p, v, path, &rule->actions);
    }
    return config_rule_ext_pair(p, key, v, path, rc);
}

/* Each scope's distinct (metric, window) pairs must fit a usertable_params row. */
static int
config_check_series(struct config_parser *p, const yaml_node_t *n, const char *path)
{
    struct config *c = p->c;
    const struct config_rule *last = &c->rules[c->nrules - 1];
    size_t distinct = 0;

    struct usertable_series pairs[2 * CONFIG_RULES_MAX];
    size_t npairs = 0;

    for (size_t i = 0; i < c->nrules; i++) {
        const struct config_rule *a = &c->rules[i];
        struct usertable_series want[2] = { { a->metric, a->window_ms },
                                            { WINDOW_RECIPIENTS, a->window_ms } };
        size_t nwant = a->kind == CONFIG_RULE_RATIO ? 2 : a->kind == CONFIG_RULE_RATE ? 1 : 0;
        if (a->scope != last->scope)
            continue;
        for (size_t w = 0; w < nwant; w++) {
            bool first = true;
            for (size_t j = 0; first && j < npairs; j++)
                if (pairs[j].metric == want[w].metric && pairs[j].window_ms == want[w].window_ms)
                    first = false;
            if (first)
                pairs[npairs++] = want[w];
        }
    }
    distinct = npairs;
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
        if (!(rc.seen & (1u << i)) && config_rule_needs(rc.rule, &rc, 1u << i))
            return config_fail(p, n, path, "missing required key '%s'", config_rule_keys[i]);
    r = config_rule_finish(p, n, path, &rc);
    if (r < 0)
        return r;
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

/* Sort the @n owned strings of @v and free the repeats, @n becoming the count left. */
static void
config_strv_sort(char **v, size_t *n)
{
    size_t out = 1;

    if (*n < 2)
        return;
    qsort(v, *n, sizeof(*v), config_strcmp);
    for (size_t i = 1; i < *n; i++) {
        if (strcmp(v[i], v[out - 1]) == 0)
            free(v[i]);
        else
            v[out++] = v[i];
    }
    *n = out;
}

/* Free the @n owned strings of @v and @v itself. */
static void
config_strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int config_parse_bool(struct config_parser *p, yaml_node_t *n, const char *path, bool *ret);

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
    config_strv_sort(v, &len);
    config_strv_free(*ret, *ret_n);
    *ret = v;
    *ret_n = len;
    return 0;
fail:
    config_strv_free(v, len);
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
        return config_parse_decimal(p, v, path, "factor", CONFIG_FACTOR_MAX, &oc->o->factor);
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
    size_t choice;
    int r;

    (void)ctx;
    if (strcmp(key, "backend") == 0) {
        r = config_parse_choice(p, v, path, config_backend_names, N_ELEMS(config_backend_names),
                                "backend", "exim, cpanel or command", &choice);
        if (r == 0)
            c->backend = (enum config_backend)choice;
        return r;
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
    if (strcmp(key, "never_hold") == 0)
        return config_parse_names(p, v, path, false, &c->never_hold, &c->nnever_hold);
    if (strcmp(key, "hold_system_logins") == 0)
        return config_parse_bool(p, v, path, &c->hold_system_logins);
    return -ENOENT;
}

/* Alerts: destinations, their URLs and secrets */

#define CONFIG_URL_MAX        2048 /* a Slack URL is about 80 bytes; more is a paste error */
#define CONFIG_CRED_FILE_MAX  4096 /* url_file, secret_file: a line or two */
#define CONFIG_GROUP_MAX      32   /* shadow-utils' default group name limit */
#define CONFIG_HOST_MAX       253  /* a DNS name */
#define CONFIG_RATE_MAX       1000.0
#define CONFIG_BURST_MAX      1000.0
#define CONFIG_PENDING_MIN    10u
#define CONFIG_PENDING_MAX    1000000u
#define CONFIG_BYTES_MIN      (64ull * 1024)
#define CONFIG_BYTES_MAX      (1024ull * 1024 * 1024)
#define CONFIG_DIGEST_MAX     1000u
#define CONFIG_CONNECT_MIN_MS 100
#define CONFIG_CONNECT_MAX_MS 60000
#define CONFIG_SEND_MIN_MS    1000
#define CONFIG_SEND_MAX_MS    120000

/*
 * The files a destination names (url_file, secret_file) are read through this table, the
 * one I/O of config_parse(); what they may be (regular, small, not readable by others) is
 * decided by the caller on what it reports.
 */
struct config_reader {
    /*
     * Read the regular file @path: at most @size bytes into @buf, its length into *ret_len
     * and its st_mode into *ret_mode. 0, -E2BIG (longer than @size), -EISDIR (not a regular
     * file; *ret_mode set), or -errno of open/fstat/read.
     */
    int (*read)(void *ctx, const char *path, char *buf, size_t size, size_t *ret_len,
                unsigned *ret_mode);
    void *ctx;
};

static int
config_read_file(void *ctx, const char *path, char *buf, size_t size, size_t *ret_len,
                 unsigned *ret_mode)
{
    struct stat st;
    size_t len = 0;
    int fd, r = 0;

    (void)ctx;
    /* O_NONBLOCK: a FIFO put in place of the file must not hang a reload */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto out;
    }
    *ret_mode = (unsigned)st.st_mode;
    if (!S_ISREG(st.st_mode)) {
        r = -EISDIR;
        goto out;
    }
    for (;;) {
        char extra;
        ssize_t n = len < size ? read(fd, buf + len, size - len) : read(fd, &extra, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            break;
        }
        if (n == 0)
            break;
        if (len == size) {
            r = -E2BIG;
            break;
        }
        len += (size_t)n;
    }
    *ret_len = len;
out:
    (void)close(fd);
    return r;
}

static const struct config_reader config_reader_system = { config_read_file, NULL };

/* Per type (alerting.md §2.5, §3.3, §5.7, §5.8). */
static const struct {
    double rate, burst;
    int64_t connect_timeout_ms, timeout_ms;
    bool individual;
} config_dest_defaults[] = {
    [ALERT_DEST_SLACK] = { 1.0, 3.0, 5000, 15000, false },
    [ALERT_DEST_WEBHOOK] = { 5.0, 10.0, 5000, 30000, true },
    [ALERT_DEST_ALERTMANAGER] = { 0.0, 1.0, 3000, 10000, false },
};

enum {
    CONFIG_DEST_NAME,
    CONFIG_DEST_TYPE,
    CONFIG_DEST_URL,
    CONFIG_DEST_URL_FILE,
    CONFIG_DEST_SECRET,
    CONFIG_DEST_SECRET_FILE,
    CONFIG_DEST_CA_FILE,
    CONFIG_DEST_ALLOW_HTTP,
    CONFIG_DEST_RATE,
    CONFIG_DEST_BURST,
    CONFIG_DEST_CONNECT_TIMEOUT,
    CONFIG_DEST_TIMEOUT,
    CONFIG_DEST_INDIVIDUAL,
    CONFIG_DEST_GENERATOR_URL,
    CONFIG_DEST__MAX
};

#define CONFIG_DEST_ALL                                                                            \
    ((1u << ALERT_DEST_SLACK) | (1u << ALERT_DEST_WEBHOOK) | (1u << ALERT_DEST_ALERTMANAGER))
#define CONFIG_DEST_WEBHOOK (1u << ALERT_DEST_WEBHOOK)
#define CONFIG_DEST_AM      (1u << ALERT_DEST_ALERTMANAGER)

/* The keys of a destination and the types each applies to (a bit per enum alert_dest_type). */
static const struct {
    const char *name;
    unsigned types;
} config_dest_keys[CONFIG_DEST__MAX] = {
    [CONFIG_DEST_NAME] = { "name", CONFIG_DEST_ALL },
    [CONFIG_DEST_TYPE] = { "type", CONFIG_DEST_ALL },
    [CONFIG_DEST_URL] = { "url", CONFIG_DEST_ALL },
    [CONFIG_DEST_URL_FILE] = { "url_file", CONFIG_DEST_ALL },
    [CONFIG_DEST_SECRET] = { "secret", CONFIG_DEST_WEBHOOK },
    [CONFIG_DEST_SECRET_FILE] = { "secret_file", CONFIG_DEST_WEBHOOK },
    [CONFIG_DEST_CA_FILE] = { "ca_file", CONFIG_DEST_ALL },
    [CONFIG_DEST_ALLOW_HTTP] = { "allow_http", CONFIG_DEST_ALL },
    [CONFIG_DEST_RATE] = { "rate", CONFIG_DEST_ALL },
    [CONFIG_DEST_BURST] = { "burst", CONFIG_DEST_ALL },
    [CONFIG_DEST_CONNECT_TIMEOUT] = { "connect_timeout", CONFIG_DEST_ALL },
    [CONFIG_DEST_TIMEOUT] = { "timeout", CONFIG_DEST_ALL },
    [CONFIG_DEST_INDIVIDUAL] = { "individual", CONFIG_DEST_WEBHOOK },
    [CONFIG_DEST_GENERATOR_URL] = { "generator_url", CONFIG_DEST_AM },
};

/* Keys whose inline value is a credential. */
static const size_t config_inline_creds[] = { CONFIG_DEST_URL, CONFIG_DEST_SECRET };

static int
config_parse_bool(struct config_parser *p, yaml_node_t *n, const char *path, bool *ret)
{
    const char *s;
    int r;

    r = config_scalar(p, n, path, &s);
    if (r < 0)
        return r;
    if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0)
        *ret = true;
    else if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0)
        *ret = false;
    else
        return config_fail(p, n, path, "'%s' is not true or false", s);
    return 0;
}

/* A size in bytes, bare or with a KiB, MiB or GiB suffix. */
static int
config_parse_bytes(struct config_parser *p, yaml_node_t *n, const char *path, uint64_t min,
                   uint64_t max, uint64_t *ret)
{
    static const struct {
        const char *suffix;
        uint64_t mult;
    } units[] = {
        { "", 1 }, { "KiB", 1024 }, { "MiB", 1024 * 1024 }, { "GiB", 1024 * 1024 * 1024 }
    };
    const char *s;
    size_t digits;
    uint64_t v;
    int r;

    r = config_scalar(p, n, path, &s);
    if (r < 0)
        return r;
    digits = strspn(s, "0123456789");
    for (size_t i = 0; i < N_ELEMS(units); i++) {
        if (strcmp(s + digits, units[i].suffix) != 0)
            continue;
        r = util_parse_u64(s, digits, &v);
        if (r == -EINVAL)
            break;
        if (r < 0 || v > max / units[i].mult || v * units[i].mult < min) {
            char lo[32], hi[32];
            config_fmt_size(min, lo, sizeof(lo));
            config_fmt_size(max, hi, sizeof(hi));
            return config_fail(p, n, path, "size '%s' is out of range (%s to %s)", s, lo, hi);
        }
        *ret = v * units[i].mult;
        return 0;
    }
    return config_fail(p, n, path,
                       "bad size '%s' (a number of bytes, or with KiB, MiB or GiB, e.g. 16MiB)", s);
}

static bool
config_host_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.';
}

/* A DNS name as it goes into alerts: letters, digits, '-' and '.', not starting with either. */
static int
config_parse_host_name(struct config_parser *p, yaml_node_t *n, const char *path, char **ret)
{
    const char *s;
    int r;

    r = config_scalar(p, n, path, &s);
    if (r < 0)
        return r;
    if (strlen(s) > CONFIG_HOST_MAX)
        return config_fail(p, n, path, "host name is longer than %d bytes", CONFIG_HOST_MAX);
    for (const char *q = s; *q; q++)
        if (!config_host_char(*q) || (q == s && (*q == '-' || *q == '.')))
            return config_fail(p, n, path,
                               "host name '%s' may only hold letters, digits, '-' and '.'", s);
    return config_parse_string(p, n, path, CONFIG_HOST_MAX + 1, ret);
}

/* A TCP port, 1 to 65535, all of [p, p+len). */
static bool
config_port_valid(const char *p, size_t len)
{
    uint64_t v;

    return len > 0 && len <= 5 && util_parse_u64(p, len, &v) == 0 && v >= 1 && v <= 65535;
}

/* 127.0.0.0/8 as a dotted quad of plain decimals. */
static bool
config_ipv4_is_loopback(const char *h, size_t len)
{
    const char *end = h + len;
    unsigned parts = 0;
    uint64_t first = 0;

    while (h < end) {
        const char *dot = memchr(h, '.', (size_t)(end - h));
        size_t n = dot ? (size_t)(dot - h) : (size_t)(end - h);
        uint64_t v;

        if (n == 0 || n > 3 || util_parse_u64(h, n, &v) < 0 || v > 255 || ++parts > 4)
            return false;
        if (parts == 1)
            first = v;
        h += n;
        if (dot && ++h == end)
            return false; /* a trailing dot */
    }
    return parts == 4 && first == 127;
}

static bool
config_host_is_loopback(const char *h, size_t len)
{
    return (len == 9 && strncasecmp(h, "localhost", 9) == 0) ||
           (len == 5 && memcmp(h, "[::1]", 5) == 0) || config_ipv4_is_loopback(h, len);
}

struct config_url {
    bool https;
    const char *host; /* with its brackets for an IPv6 literal */
    size_t host_len;
    const char *rest; /* the path, query and fragment: "" or from '/', '?' or '#' */
};

/*
 * Split an http(s) URL. NULL, or the reason it is refused, phrased to follow "URL" and
 * never quoting it: a URL may be a credential (a Slack webhook) or carry one (user:pass@).
 */
static const char *
config_url_split(const char *s, struct config_url *ret)
{
    const char *auth, *end, *port;

    if (strlen(s) > CONFIG_URL_MAX)
        return "is longer than 2048 bytes";
    for (const char *q = s; *q; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f)
            return "contains a space or a control character";
    if (strncasecmp(s, "https://", 8) == 0) {
        ret->https = true;
        auth = s + 8;
    } else if (strncasecmp(s, "http://", 7) == 0) {
        ret->https = false;
        auth = s + 7;
    } else {
        return "must start with https:// (or http://)";
    }
    end = auth + strcspn(auth, "/?#");
    if (memchr(auth, '@', (size_t)(end - auth)))
        return "must not hold a user name or password (user:pass@)";
    if (auth[0] == '[') {
        const char *close = memchr(auth, ']', (size_t)(end - auth));
        if (!close || close == auth + 1)
            return "has a malformed IPv6 address";
        for (const char *q = auth + 1; q < close; q++)
            if (!strchr("0123456789abcdefABCDEF:.", *q))
                return "has a malformed IPv6 address";
        port = close + 1;
    } else {
        port = auth + strcspn(auth, ":/?#");
        for (const char *q = auth; q < port; q++)
            if (!config_host_char(*q) && *q != '_')
                return "has a host with characters other than letters, digits, '-', '_', '.'";
    }
    if (port == auth)
        return "has no host";
    if (port < end && (*port != ':' || !config_port_valid(port + 1, (size_t)(end - port - 1))))
        return "has a bad port (1 to 65535)";
    ret->host = auth;
    ret->host_len = (size_t)(port - auth);
    ret->rest = end;
    return NULL;
}

/* alertmanager's generator_url: a link put in each alert; one trailing '/' removed. */
static int
config_parse_generator_url(struct config_parser *p, yaml_node_t *n, const char *path, char **ret)
{
    struct config_url u;
    const char *s, *why;
    size_t len;
    int r;

    r = config_scalar(p, n, path, &s);
    if (r < 0)
        return r;
    why = config_url_split(s, &u);
    if (why)
        return config_fail(p, n, path, "URL %s", why);
    len = strlen(s);
    if (u.rest[0] && s[len - 1] == '/')
        len--;
    free(*ret);
    *ret = strndup(s, len);
    return *ret ? 0 : -ENOMEM;
}

struct config_dest_ctx {
    yaml_node_t *v[CONFIG_DEST__MAX];
    char path[CONFIG_DEST__MAX][CONFIG_PATHKEY_MAX];
};

static int
config_dest_pair(struct config_parser *p, const char *key, yaml_node_t *v, const char *path,
                 void *ctx)
{
    struct config_dest_ctx *dc = ctx;

    (void)p;
    (void)path;
    for (size_t i = 0; i < CONFIG_DEST__MAX; i++) {
        if (strcmp(key, config_dest_keys[i].name) == 0) {
            dc->v[i] = v;
            return 0;
        }
    }
    return -ENOENT;
}

/*
 * Read a url_file or secret_file into @buf (NUL-terminated, at most @size - 1 bytes) and
 * refuse one others may read or write or its group may write: it holds a credential.
 */
static int
config_read_credential(struct config_parser *p, yaml_node_t *n, const char *path, const char *file,
                       char *buf, size_t size)
{
    unsigned mode = 0;
    size_t len = 0;
    int r;

    r = p->reader->read(p->reader->ctx, file, buf, size - 1, &len, &mode);
    if (r == -E2BIG)
        return config_fail(p, n, path, "%s is larger than %zu bytes", file, size - 1);
    if (r == -EISDIR)
        return config_fail(p, n, path, "%s is not a regular file", file);
    if (r < 0)
        return config_fail(p, n, path, "cannot read %s: %s", file, strerror(-r));
    if (mode & (S_IRWXO | S_IWGRP))
        return config_fail(p, n, path,
                           "%s has mode %04o: it holds a credential, so others may not read or "
                           "write it nor its group write it (use 0600 or 0640)",
                           file, mode & 07777);
    buf[len] = '\0';
    if (strlen(buf) != len)
        return config_fail(p, n, path, "%s contains a NUL byte", file);
    return 0;
}

/* The next line of @s (advanced past it) into [*ret, *ret + *ret_len), trailing blanks cut. */
static bool
config_next_line(const char **s, const char **ret, size_t *ret_len)
{
    const char *start = *s, *end;
    size_t len;

    if (!*start)
        return false;
    end = start + strcspn(start, "\n");
    len = (size_t)(end - start);
    while (len > 0 && (start[len - 1] == '\r' || start[len - 1] == ' ' || start[len - 1] == '\t'))
        len--;
    *s = *end ? end + 1 : end;
    *ret = start;
    *ret_len = len;
    return true;
}

/* Validate @url for @d and keep it; @file is where it came from (NULL: inline). */
static int
config_dest_set_url(struct config_parser *p, struct config_dest *d, yaml_node_t *n,
                    const char *path, const char *url, const char *file)
{
    char what[CONFIG_PATH_MAX + 16];
    struct config_url u;
    const char *why;
    size_t len;

    if (snprintf(what, sizeof(what), file ? "the URL in %s" : "URL", file) < 0)
        what[0] = '\0';
    why = config_url_split(url, &u);
    if (why)
        return config_fail(p, n, path, "%s %s", what, why);
    if (!u.https && !d->allow_http)
        return config_fail(p, n, path, "%s is http://: set allow_http: true (loopback hosts only)",
                           what);
    if (!u.https && !config_host_is_loopback(u.host, u.host_len))
        return config_fail(p, n, path,
                           "%s is http:// to %.*s: only a loopback host (127.0.0.0/8, [::1], "
                           "localhost) may be reached without TLS",
                           what, (int)u.host_len, u.host);
    len = strlen(url);
    if (d->type == ALERT_DEST_ALERTMANAGER) {
        if (strpbrk(u.rest, "?#"))
            return config_fail(p, n, path,
                               "%s is an Alertmanager base URL: no query or fragment (%s is "
                               "appended to it)",
                               what, "/api/v2/alerts");
        if (u.rest[0] && url[len - 1] == '/')
            len--;
    }
    d->url = strndup(url, len);
    return d->url ? 0 : -ENOMEM;
}

/* One "whsec_" key for @d; @where names it in a message that must not quote it. */
static int
config_dest_add_secret(struct config_parser *p, struct config_dest *d, yaml_node_t *n,
                       const char *path, const char *key, size_t len, const char *where)
{
    char tmp[CONFIG_CRED_FILE_MAX + 1];
    int r = -EINVAL;

    if (d->nsecrets == ALERT_SECRETS_MAX)
        return config_fail(p, n, path, "%s: more than %d keys (the new one and the old one)", where,
                           ALERT_SECRETS_MAX);
    if (len < sizeof(tmp)) {
        memcpy(tmp, key, len);
        tmp[len] = '\0';
        r = alert_secret_decode(tmp, &d->secrets[d->nsecrets]);
        explicit_bzero(tmp, sizeof(tmp));
    }
    if (r < 0)
        return config_fail(p, n, path,
                           "%s is not a valid secret (whsec_ and the base64 of 24 to 64 bytes)",
                           where);
    d->nsecrets++;
    return 0;
}

/* secret_file: one or two keys, one a line, the new one first; blank lines are skipped. */
static int
config_dest_secret_file(struct config_parser *p, struct config_dest *d, yaml_node_t *n,
                        const char *path, const char *file)
{
    char buf[CONFIG_CRED_FILE_MAX + 1];
    char where[CONFIG_PATH_MAX + 32];
    const char *s = buf, *line;
    unsigned lineno = 0;
    size_t len;
    int r;

    r = config_read_credential(p, n, path, file, buf, sizeof(buf));
    while (r == 0 && config_next_line(&s, &line, &len)) {
        lineno++;
        if (len == 0)
            continue;
        if (snprintf(where, sizeof(where), "line %u of %s", lineno, file) < 0)
            where[0] = '\0';
        r = config_dest_add_secret(p, d, n, path, line, len, where);
    }
    if (r == 0 && d->nsecrets == 0)
        r = config_fail(p, n, path, "%s holds no secret", file);
    explicit_bzero(buf, sizeof(buf));
    return r;
}

/* url_file: the URL is the first line. */
static int
config_dest_url_file(struct config_parser *p, struct config_dest *d, yaml_node_t *n,
                     const char *path, const char *file)
{
    char buf[CONFIG_CRED_FILE_MAX + 1];
    const char *s = buf, *line;
    size_t len = 0;
    int r;

    r = config_read_credential(p, n, path, file, buf, sizeof(buf));
    if (r == 0 && (!config_next_line(&s, &line, &len) || len == 0))
        r = config_fail(p, n, path, "%s: the first line is empty (it should hold the URL)", file);
    if (r == 0) {
        buf[len] = '\0'; /* the first line starts the buffer */
        r = config_dest_set_url(p, d, n, path, buf, file);
    }
    explicit_bzero(buf, sizeof(buf));
    return r;
}

/* A key holding a file name: parsed as an absolute path, handed to @fn, then forgotten. */
static int
config_dest_from_file(struct config_parser *p, struct config_dest *d, yaml_node_t *n,
                      const char *path,
                      int (*fn)(struct config_parser *, struct config_dest *, yaml_node_t *,
                                const char *, const char *))
{
    char *file = NULL;
    int r;

    r = config_parse_path(p, n, path, &file);
    if (r == 0)
        r = fn(p, d, n, path, file);
    free(file);
    return r;
}

/* The connection settings of @d: each one optional, over its type's defaults. */
static int
config_dest_limits(struct config_parser *p, struct config_dest *d, const struct config_dest_ctx *dc)
{
    yaml_node_t *const *v = dc->v;
    int r = 0;

    if (v[CONFIG_DEST_RATE]) {
        r = config_parse_decimal(p, v[CONFIG_DEST_RATE], dc->path[CONFIG_DEST_RATE], "rate",
                                 CONFIG_RATE_MAX, &d->rate);
        if (r < 0)
            return r;
    }
    if (v[CONFIG_DEST_BURST]) {
        r = config_parse_decimal(p, v[CONFIG_DEST_BURST], dc->path[CONFIG_DEST_BURST], "burst",
                                 CONFIG_BURST_MAX, &d->burst);
        if (r < 0)
            return r;
        if (d->burst < 1.0)
            return config_fail(p, v[CONFIG_DEST_BURST], dc->path[CONFIG_DEST_BURST],
                               "burst must be at least 1");
    }
    if (v[CONFIG_DEST_CONNECT_TIMEOUT]) {
        r = config_parse_duration(
            p, v[CONFIG_DEST_CONNECT_TIMEOUT], dc->path[CONFIG_DEST_CONNECT_TIMEOUT], false,
            CONFIG_CONNECT_MIN_MS, CONFIG_CONNECT_MAX_MS, &d->connect_timeout_ms);
        if (r < 0)
            return r;
    }
    if (v[CONFIG_DEST_TIMEOUT]) {
        r = config_parse_duration(p, v[CONFIG_DEST_TIMEOUT], dc->path[CONFIG_DEST_TIMEOUT], false,
                                  CONFIG_SEND_MIN_MS, CONFIG_SEND_MAX_MS, &d->timeout_ms);
        if (r < 0)
            return r;
    }
    if (d->timeout_ms < d->connect_timeout_ms) {
        unsigned k = v[CONFIG_DEST_TIMEOUT] ? CONFIG_DEST_TIMEOUT : CONFIG_DEST_CONNECT_TIMEOUT;
        char to[32], ct[32];
        config_fmt_duration(d->timeout_ms, to, sizeof(to));
        config_fmt_duration(d->connect_timeout_ms, ct, sizeof(ct));
        return config_fail(p, v[k], dc->path[k],
                           "timeout (%s%s) is shorter than connect_timeout (%s%s)", to,
                           v[CONFIG_DEST_TIMEOUT] ? "" : ", the default", ct,
                           v[CONFIG_DEST_CONNECT_TIMEOUT] ? "" : ", the default");
    }
    return 0;
}

/* One alerts.destinations[i]; its keys are read after the walk, so their order is free. */
static int
config_parse_dest(struct config_parser *p, yaml_node_t *n, const char *path, size_t i)
{
    struct config_alerts *a = &p->c->alerts;
    struct config_dest *d = &a->dests[i];
    struct config_dest_ctx dc;
    yaml_node_t *const *v = dc.v;
    const char *types[ALERT_DEST_TYPES];
    const char *s;
    size_t t;
    int r;

    memset(&dc, 0, sizeof(dc));
    d->line = (unsigned)n->start_mark.line + 1;
    r = config_walk_map(p, n, path, config_dest_pair, &dc);
    if (r < 0)
        return r;
    for (size_t k = 0; k < CONFIG_DEST__MAX; k++)
        if (config_path_key(dc.path[k], sizeof(dc.path[k]), path, config_dest_keys[k].name) < 0)
            return config_fail(p, n, path, "malformed key");
    if (!v[CONFIG_DEST_NAME])
        return config_fail(p, n, path, "missing required key 'name'");
    if (!v[CONFIG_DEST_TYPE])
        return config_fail(p, n, path, "missing required key 'type'");

    for (t = 0; t < ALERT_DEST_TYPES; t++)
        types[t] = alert_dest_type_name((enum alert_dest_type)t);
    r = config_parse_choice(p, v[CONFIG_DEST_TYPE], dc.path[CONFIG_DEST_TYPE], types,
                            ALERT_DEST_TYPES, "destination type", "slack, webhook or alertmanager",
                            &t);
    if (r < 0)
        return r;
    d->type = (enum alert_dest_type)t;
    d->rate = config_dest_defaults[t].rate;
    d->burst = config_dest_defaults[t].burst;
    d->connect_timeout_ms = config_dest_defaults[t].connect_timeout_ms;
    d->timeout_ms = config_dest_defaults[t].timeout_ms;
    d->individual = config_dest_defaults[t].individual;

    r = config_scalar(p, v[CONFIG_DEST_NAME], dc.path[CONFIG_DEST_NAME], &s);
    if (r < 0)
        return r;
    if (strlen(s) >= sizeof(d->name))
        return config_fail(p, v[CONFIG_DEST_NAME], dc.path[CONFIG_DEST_NAME],
                           "destination name is longer than %zu bytes", sizeof(d->name) - 1);
    if (!outbox_name_valid(s))
        return config_fail(p, v[CONFIG_DEST_NAME], dc.path[CONFIG_DEST_NAME],
                           "destination name '%s' may only hold letters, digits, '-' and '_'", s);
    for (size_t j = 0; j < i; j++)
        if (strcmp(a->dests[j].name, s) == 0)
            return config_fail(p, v[CONFIG_DEST_NAME], dc.path[CONFIG_DEST_NAME],
                               "duplicate destination name '%s' (first on line %u)", s,
                               a->dests[j].line);
    memcpy(d->name, s, strlen(s) + 1);

    for (size_t k = 0; k < CONFIG_DEST__MAX; k++)
        if (v[k] && !(config_dest_keys[k].types & (1u << t)))
            return config_fail(p, v[k], dc.path[k], "'%s' does not apply to type %s",
                               config_dest_keys[k].name,
                               alert_dest_type_name((enum alert_dest_type)t));
    if (v[CONFIG_DEST_URL] && v[CONFIG_DEST_URL_FILE])
        return config_fail(p, v[CONFIG_DEST_URL_FILE], dc.path[CONFIG_DEST_URL_FILE],
                           "give either url or url_file, not both");
    if (!v[CONFIG_DEST_URL] && !v[CONFIG_DEST_URL_FILE])
        return config_fail(p, n, path, "missing required key 'url' (or 'url_file')");
    if (v[CONFIG_DEST_SECRET] && v[CONFIG_DEST_SECRET_FILE])
        return config_fail(p, v[CONFIG_DEST_SECRET_FILE], dc.path[CONFIG_DEST_SECRET_FILE],
                           "give either secret or secret_file, not both");

    if (v[CONFIG_DEST_ALLOW_HTTP]) {
        r = config_parse_bool(p, v[CONFIG_DEST_ALLOW_HTTP], dc.path[CONFIG_DEST_ALLOW_HTTP],
                              &d->allow_http);
        if (r < 0)
            return r;
    }
    if (v[CONFIG_DEST_CA_FILE]) {
        r = config_parse_path(p, v[CONFIG_DEST_CA_FILE], dc.path[CONFIG_DEST_CA_FILE], &d->ca_file);
        if (r < 0)
            return r;
    }
    /* alerting.md §5.11: a Slack or webhook URL (a bearer of its own) or a whsec_ key inline
     * makes the file a secret (an Alertmanager base URL is not one) */
    for (size_t k = 0; k < N_ELEMS(config_inline_creds); k++) {
        size_t key = config_inline_creds[k];
        if (key == CONFIG_DEST_URL && t == ALERT_DEST_ALERTMANAGER)
            continue;
        if (v[key] && (p->file_mode & (S_IROTH | S_IWOTH | S_IWGRP)))
            return config_fail(p, v[key], dc.path[key],
                               "%s is a credential, but %s is mode %04o (others can read it); "
                               "chmod 0600 or 0640 it, or use %s_file",
                               config_dest_keys[key].name, p->name, p->file_mode & 07777,
                               config_dest_keys[key].name);
    }
    if (v[CONFIG_DEST_URL]) {
        r = config_scalar(p, v[CONFIG_DEST_URL], dc.path[CONFIG_DEST_URL], &s);
        if (r == 0)
            r = config_dest_set_url(p, d, v[CONFIG_DEST_URL], dc.path[CONFIG_DEST_URL], s, NULL);
    } else {
        r = config_dest_from_file(p, d, v[CONFIG_DEST_URL_FILE], dc.path[CONFIG_DEST_URL_FILE],
                                  config_dest_url_file);
    }
    if (r < 0)
        return r;
    if (v[CONFIG_DEST_SECRET]) {
        r = config_scalar(p, v[CONFIG_DEST_SECRET], dc.path[CONFIG_DEST_SECRET], &s);
        if (r == 0)
            r = config_dest_add_secret(p, d, v[CONFIG_DEST_SECRET], dc.path[CONFIG_DEST_SECRET], s,
                                       strlen(s), "secret");
    } else if (v[CONFIG_DEST_SECRET_FILE]) {
        r = config_dest_from_file(p, d, v[CONFIG_DEST_SECRET_FILE],
                                  dc.path[CONFIG_DEST_SECRET_FILE], config_dest_secret_file);
    }
    if (r < 0)
        return r;
    r = config_dest_limits(p, d, &dc);
    if (r < 0)
        return r;
    if (v[CONFIG_DEST_INDIVIDUAL]) {
        r = config_parse_bool(p, v[CONFIG_DEST_INDIVIDUAL], dc.path[CONFIG_DEST_INDIVIDUAL],
                              &d->individual);
        if (r < 0)
            return r;
    }
    if (v[CONFIG_DEST_GENERATOR_URL])
        return config_parse_generator_url(p, v[CONFIG_DEST_GENERATOR_URL],
                                          dc.path[CONFIG_DEST_GENERATOR_URL], &d->generator_url);
    return 0;
}

/* alerts.destinations: at most CONFIG_DESTS_MAX, names unique. */
static int
config_parse_dests(struct config_parser *p, yaml_node_t *n, const char *path)
{
    struct config_alerts *a = &p->c->alerts;
    char sub[CONFIG_PATHKEY_MAX];
    size_t count;
    int r;

    r = config_list(p, n, path, CONFIG_DESTS_MAX, &count);
    if (r == -EINVAL && n->type == YAML_SEQUENCE_NODE && p->diag)
        (void)snprintf(p->diag->msg, sizeof(p->diag->msg), "more than %d destinations",
                       CONFIG_DESTS_MAX);
    if (r < 0 || count == 0)
        return r;
    a->dests = calloc(count, sizeof(*a->dests));
    if (!a->dests)
        return -ENOMEM;
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item;

        a->ndests = i + 1; /* so that config_free() wipes a half-read one */
        r = config_list_item(p, n, i, path, sub, sizeof(sub), &item);
        if (r < 0)
            return r;
        r = config_parse_dest(p, item, sub, i);
        if (r < 0)
            return r;
    }
    return 0;
}

static int
config_alerts_pair(struct config_parser *p, const char *key, yaml_node_t *v, const char *path,
                   void *ctx)
{
    static const struct {
        const char *name;
        int64_t min_ms, max_ms;
        size_t offset;
    } durations[] = {
        { "digest_interval", 10000, 3600000, offsetof(struct config_alerts, digest_interval_ms) },
        { "followup", 1000, 600000, offsetof(struct config_alerts, followup_ms) },
        { "resend_interval", 10000, 600000, offsetof(struct config_alerts, resend_ms) },
        { "resolved_keep", 60000, 3600000, offsetof(struct config_alerts, resolved_keep_ms) },
        { "max_age", 60000, 7 * 86400000LL, offsetof(struct config_alerts, max_age_ms) },
    };
    struct config_alerts *a = &p->c->alerts;

    (void)ctx;
    for (size_t i = 0; i < N_ELEMS(durations); i++)
        if (strcmp(key, durations[i].name) == 0)
            return config_parse_duration(p, v, path, false, durations[i].min_ms,
                                         durations[i].max_ms,
                                         (int64_t *)((char *)a + durations[i].offset));
    if (strcmp(key, "host_name") == 0)
        return config_parse_host_name(p, v, path, &a->host_name);
    if (strcmp(key, "digest_threshold") == 0)
        return config_parse_u32(p, v, path, 1, CONFIG_DIGEST_MAX, &a->digest_threshold);
    if (strcmp(key, "max_pending") == 0)
        return config_parse_u32(p, v, path, CONFIG_PENDING_MIN, CONFIG_PENDING_MAX,
                                &a->max_pending);
    if (strcmp(key, "max_bytes") == 0)
        return config_parse_bytes(p, v, path, CONFIG_BYTES_MIN, CONFIG_BYTES_MAX, &a->max_bytes);
    if (strcmp(key, "destinations") == 0)
        return config_parse_dests(p, v, path);
    return -ENOENT;
}

/* Operator tooling: the control group and the metrics outputs */

static int
config_parse_group(struct config_parser *p, yaml_node_t *n, const char *path, char **ret)
{
    char buf[CONFIG_GROUP_MAX + 1];
    int r = config_parse_name(p, n, path, buf, sizeof(buf), "group name");

    if (r < 0)
        return r;
    return config_parse_string(p, n, path, sizeof(buf), ret);
}

/* node_exporter's textfile collector reads only *.prom files. */
static int
config_parse_prom_path(struct config_parser *p, yaml_node_t *n, const char *path, char **ret)
{
    const char *s, *base;
    size_t len;
    int r;

    r = config_scalar(p, n, path, &s);
    if (r < 0)
        return r;
    len = strlen(s);
    base = strrchr(s, '/');
    base = base ? base + 1 : s;
    if (len < 5 || strcmp(s + len - 5, ".prom") != 0 || strlen(base) <= 5)
        return config_fail(p, n, path,
                           "'%s' must end in .prom (the textfile collector reads only *.prom)", s);
    return config_parse_path(p, n, path, ret);
}

/* host:port, the host 127.0.0.0/8, [::1] or localhost: the endpoint is never public. */
static int
config_parse_listen(struct config_parser *p, yaml_node_t *n, const char *path, char **ret)
{
    const char *s, *colon;
    struct sockaddr_storage ss;
    socklen_t sslen;
    int r;

    r = config_scalar(p, n, path, &s);
    if (r < 0)
        return r;
    colon = s[0] == '[' ? strchr(s, ']') : strrchr(s, ':');
    if (colon && s[0] == '[')
        colon = colon[1] == ':' ? colon + 1 : NULL;
    if (!colon)
        return config_fail(p, n, path, "'%s' is not host:port (e.g. 127.0.0.1:9567)", s);
    if (!config_port_valid(colon + 1, strlen(colon + 1)))
        return config_fail(p, n, path, "'%s': the port must be from 1 to 65535", s);
    /* the endpoint's own parser: what is accepted here is what it can bind */
    if (metrics_http_parse_listen(s, &ss, &sslen) < 0)
        return config_fail(p, n, path,
                           "'%s': only a loopback address (127.0.0.0/8, [::1] or localhost) "
                           "may be listened on",
                           s);
    return config_parse_string(p, n, path, CONFIG_PATH_MAX, ret);
}

/* reputation: the host's own addresses in DNS blocklists */

#define CONFIG_REP_INTERVAL_MIN_MS 60000LL
#define CONFIG_REP_INTERVAL_MAX_MS 86400000LL
#define CONFIG_REP_TIMEOUT_MIN_MS  100LL
#define CONFIG_REP_TIMEOUT_MAX_MS  30000LL

static int
config_rep_add(struct config_parser *p, yaml_node_t *n, const char *path, char ***v, size_t *nv,
               const char *s)
{
    for (size_t i = 0; i < *nv; i++)
        if (strcmp((*v)[i], s) == 0)
            return config_fail(p, n, path, "'%s' is listed twice", s);
    char **nvv = realloc(*v, (*nv + 1) * sizeof(char *));
    if (!nvv)
        return -ENOMEM;
    *v = nvv;
    if (!(nvv[*nv] = strdup(s)))
        return -ENOMEM;
    (*nv)++;
    return 0;
}

/* An address of this host's: IPv4 or IPv6 text, kept normalised. */
static int
config_rep_ip(struct config_parser *p, yaml_node_t *n, const char *path, void *ctx)
{
    struct config_reputation *rp = ctx;
    unsigned char a[16];
    char norm[INET6_ADDRSTRLEN];
    const char *s;
    int r = config_scalar(p, n, path, &s);

    if (r < 0)
        return r;
    if (inet_pton(AF_INET, s, a) == 1)
        (void)inet_ntop(AF_INET, a, norm, sizeof(norm));
    else if (inet_pton(AF_INET6, s, a) == 1)
        (void)inet_ntop(AF_INET6, a, norm, sizeof(norm));
    else
        return config_fail(p, n, path, "'%s' is not an IPv4 or IPv6 address", s);
    return config_rep_add(p, n, path, &rp->ips, &rp->nips, norm);
}

/* A DNS zone: labels of letters, digits and '-', one trailing dot allowed (dropped). */
static int
config_rep_zone(struct config_parser *p, yaml_node_t *n, const char *path, void *ctx)
{
    struct config_reputation *rp = ctx;
    char zone[CONFIG_REP_ZONE_MAX + 2];
    const char *s;
    size_t len, label = 0;
    int r = config_scalar(p, n, path, &s);

    if (r < 0)
        return r;
    len = strlen(s);
    if (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0 || len > CONFIG_REP_ZONE_MAX)
        return config_fail(p, n, path, "a zone is 1 to %d bytes", CONFIG_REP_ZONE_MAX);
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (label == 0)
                return config_fail(p, n, path, "zone '%s' has an empty label", s);
            label = 0;
        } else if (config_host_char(ch) && ++label <= 63) {
            zone[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
            continue;
        } else {
            return config_fail(p, n, path,
                               "zone '%s' may only hold labels of letters, digits and '-' "
                               "(63 bytes each)",
                               s);
        }
        zone[i] = '.';
    }
    zone[len] = '\0';
    return config_rep_add(p, n, path, &rp->zones, &rp->nzones, zone);
}

typedef int (*config_item_fn)(struct config_parser *p, yaml_node_t *n, const char *path, void *ctx);

/* A list of at most @max items, each handed to @fn with its own path. */
static int
config_each_item(struct config_parser *p, yaml_node_t *n, const char *path, size_t max,
                 config_item_fn fn, void *ctx)
{
    char sub[CONFIG_PATHKEY_MAX];
    size_t count;
    int r = config_list(p, n, path, max, &count);

    for (size_t i = 0; r == 0 && i < count; i++) {
        yaml_node_t *item;
        r = config_list_item(p, n, i, path, sub, sizeof(sub), &item);
        if (r == 0)
            r = fn(p, item, sub, ctx);
    }
    return r;
}

/* The resolver to ask: an address literal with an optional port (never a name to resolve). */
static int
config_rep_nameserver(struct config_parser *p, yaml_node_t *n, const char *path, char **ret)
{
    unsigned char a[16];
    char host[INET6_ADDRSTRLEN + 1];
    const char *s, *port = NULL;
    size_t hl;
    int r = config_scalar(p, n, path, &s);

    if (r < 0)
        return r;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        hl = end ? (size_t)(end - s - 1) : 0;
        if (!end || hl >= sizeof(host) || (end[1] && end[1] != ':'))
            goto bad;
        memcpy(host, s + 1, hl);
        host[hl] = '\0';
        if (inet_pton(AF_INET6, host, a) != 1)
            goto bad;
        port = end[1] ? end + 2 : NULL;
    } else if (inet_pton(AF_INET6, s, a) != 1) {
        const char *colon = strchr(s, ':');
        hl = colon ? (size_t)(colon - s) : strlen(s);
        if (hl >= sizeof(host))
            goto bad;
        memcpy(host, s, hl);
        host[hl] = '\0';
        if (inet_pton(AF_INET, host, a) != 1)
            goto bad;
        port = colon ? colon + 1 : NULL;
    }
    if (port && !config_port_valid(port, strlen(port)))
        return config_fail(p, n, path, "'%s': the port must be from 1 to 65535", s);
    return config_parse_string(p, n, path, CONFIG_HOST_MAX, ret);
bad:
    return config_fail(p, n, path,
                       "'%s' is not an address with an optional port (127.0.0.1:5353, "
                       "[::1]:53 or 192.0.2.53)",
                       s);
}

static int
config_reputation_pair(struct config_parser *p, const char *key, yaml_node_t *v, const char *path,
                       void *ctx)
{
    struct config_reputation *rp = &p->c->reputation;

    (void)ctx;
    if (strcmp(key, "ips") == 0)
        return config_each_item(p, v, path, CONFIG_REP_IPS_MAX, config_rep_ip, rp);
    if (strcmp(key, "zones") == 0)
        return config_each_item(p, v, path, CONFIG_REP_ZONES_MAX, config_rep_zone, rp);
    if (strcmp(key, "interval") == 0)
        return config_parse_duration(p, v, path, false, CONFIG_REP_INTERVAL_MIN_MS,
                                     CONFIG_REP_INTERVAL_MAX_MS, &rp->interval_ms);
    if (strcmp(key, "timeout") == 0)
        return config_parse_duration(p, v, path, false, CONFIG_REP_TIMEOUT_MIN_MS,
                                     CONFIG_REP_TIMEOUT_MAX_MS, &rp->timeout_ms);
    if (strcmp(key, "nameserver") == 0)
        return config_rep_nameserver(p, v, path, &rp->nameserver);
    return -ENOENT;
}

/* reputation: needs both ips and zones, or neither. */
static int
config_parse_reputation(struct config_parser *p, yaml_node_t *n, const char *path)
{
    const struct config_reputation *rp = &p->c->reputation;
    int r = config_walk_map(p, n, path, config_reputation_pair, NULL);

    if (r < 0)
        return r;
    if (rp->nips && !rp->nzones)
        return config_fail(p, n, path, "ips are set but no zones: name the blocklists to ask");
    if (rp->nzones && !rp->nips)
        return config_fail(p, n, path, "zones are set but no ips: name this host's addresses");
    return 0;
}

/* Spam traps: traps: { addresses: [...], domains: [...] } and traps_file: */

#define CONFIG_TRAPS_FILE_MAX (4u * 1024 * 1024)

/* Add @s (@len bytes) lowercased to @v; NULL-safe growth. 0 or -ENOMEM. */
static int
config_trap_push(char ***v, size_t *n, const char *s, size_t len)
{
    char **nv, *copy;

    if ((*n & (*n - 1)) == 0) { /* 0, 1, 2, 4, ...: grow to the next power of two */
        nv = realloc(*v, (*n ? *n * 2 : 1) * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        *v = nv;
    }
    copy = malloc(len + 1);
    if (!copy)
        return -ENOMEM;
    for (size_t i = 0; i < len; i++)
        copy[i] = util_ascii_lower(s[i]);
    copy[len] = '\0';
    (*v)[(*n)++] = copy;
    return 0;
}

/* An address (local@domain) or a domain: printable, no spaces, one '@' for addresses. */
static const char *
config_trap_problem(const char *s, size_t len, bool address)
{
    const char *at = memchr(s, '@', len);

    if (len == 0 || len >= USERTABLE_KEY_MAX)
        return "empty or too long";
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return "holds a space or a control character";
    if (address && (!at || at == s || at == s + len - 1 || memchr(at + 1, '@', len - (size_t)(at - s) - 1)))
        return "is not an address (local@domain)";
    if (!address && (at || s[0] == '.' || s[len - 1] == '.'))
        return "is not a domain";
    return NULL;
}

/* One item of traps.addresses (@address) or traps.domains. */
static int
config_trap_item(struct config_parser *p, yaml_node_t *n, const char *path, bool address)
{
    struct config_traps *t = &p->c->traps;
    const char *s, *why;
    int r = config_scalar(p, n, path, &s);

    if (r < 0)
        return r;
    why = config_trap_problem(s, strlen(s), address);
    if (why)
        return config_fail(p, n, path, "'%s' %s", s, why);
    return address ? config_trap_push(&t->addresses, &t->naddresses, s, strlen(s))
                   : config_trap_push(&t->domains, &t->ndomains, s, strlen(s));
}

static int
config_trap_address(struct config_parser *p, yaml_node_t *n, const char *path, void *ctx)
{
    (void)ctx;
    return config_trap_item(p, n, path, true);
}

static int
config_trap_domain(struct config_parser *p, yaml_node_t *n, const char *path, void *ctx)
{
    (void)ctx;
    return config_trap_item(p, n, path, false);
}

static int
config_traps_pair(struct config_parser *p, const char *key, yaml_node_t *v, const char *path,
                  void *ctx)
{
    (void)ctx;
    if (strcmp(key, "addresses") == 0)
        return config_each_item(p, v, path, CONFIG_LIST_MAX, config_trap_address, NULL);
    if (strcmp(key, "domains") == 0)
        return config_each_item(p, v, path, CONFIG_LIST_MAX, config_trap_domain, NULL);
    return -ENOENT;
}

static int
config_traps_top_pair(struct config_parser *p, const char *key, yaml_node_t *v, const char *path)
{
    if (strcmp(key, "traps") == 0)
        return config_walk_map(p, v, path, config_traps_pair, NULL);
    if (strcmp(key, "traps_file") == 0)
        return config_parse_path(p, v, path, &p->c->traps.file);
    return -ENOENT;
}

static int config_fail_file(struct config_parser *p, const char *file, unsigned line,
                            const char *fmt, ...) FG_PRINTF(4, 5);

/* A problem in a file the config names: the diag points at that file and line. */
static int
config_fail_file(struct config_parser *p, const char *file, unsigned line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    config_diag_set(p->diag, file, line, 1, "traps_file", fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* traps_file: one address or domain a line; '#' starts a comment; blank lines skipped. */
static int
config_read_traps_file(struct config_parser *p)
{
    struct config_traps *t = &p->c->traps;
    unsigned mode = 0, lineno = 0;
    size_t len = 0;
    const char *s, *line;
    size_t n;
    char *buf;
    int r;

    buf = malloc(CONFIG_TRAPS_FILE_MAX + 1);
    if (!buf)
        return -ENOMEM;
    r = p->reader->read(p->reader->ctx, t->file, buf, CONFIG_TRAPS_FILE_MAX, &len, &mode);
    if (r < 0) {
        r = config_fail_file(p, t->file, 0, "%s",
                             r == -E2BIG    ? "larger than 4 MiB"
                             : r == -EISDIR ? "not a regular file"
                                            : strerror(-r));
        goto out;
    }
    buf[len] = '\0';
    if (strlen(buf) != len) {
        r = config_fail_file(p, t->file, 0, "contains a NUL byte");
        goto out;
    }
    s = buf;
    while (config_next_line(&s, &line, &n)) {
        const char *hash = memchr(line, '#', n), *why;
        bool address;
        lineno++;
        if (hash)
            n = (size_t)(hash - line);
        while (n > 0 && (line[0] == ' ' || line[0] == '\t')) {
            line++;
            n--;
        }
        while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r'))
            n--;
        if (n == 0)
            continue;
        address = memchr(line, '@', n) != NULL;
        why = config_trap_problem(line, n, address);
        if (why) {
            r = config_fail_file(p, t->file, lineno, "'%.*s' %s", (int)(n < 80 ? n : 80), line,
                                 why);
            goto out;
        }
        r = address ? config_trap_push(&t->addresses, &t->naddresses, line, n)
                    : config_trap_push(&t->domains, &t->ndomains, line, n);
        if (r < 0)
            goto out;
    }
    r = 0;
out:
    free(buf);
    return r;
}

/* After every key: read traps_file, sort, and pair the lists with a trap rule. */
static int
config_check_traps(struct config_parser *p)
{
    struct config *c = p->c;
    struct config_traps *t = &c->traps;
    const struct config_rule *rule = NULL;
    int r;

    if (t->file) {
        r = config_read_traps_file(p);
        if (r < 0)
            return r;
    }
    config_strv_sort(t->addresses, &t->naddresses);
    config_strv_sort(t->domains, &t->ndomains);
    for (size_t i = 0; i < c->nrules; i++)
        if (c->rules[i].kind == CONFIG_RULE_TRAP)
            rule = &c->rules[i];
    if (rule && t->naddresses + t->ndomains == 0)
        return config_fail_at(p, -EINVAL, rule->line, 1, "traps",
                              "rule '%s' has scope trap but traps: and traps_file: list no "
                              "address or domain",
                              rule->name);
    if (!rule && t->naddresses + t->ndomains > 0)
        return config_fail_at(p, -EINVAL, 0, 0, "traps",
                              "spam traps are listed but no rule has scope: trap (it says what "
                              "a hit does)");
    return 0;
}

static void
config_free_reputation(struct config_reputation *rp)
{
    config_strv_free(rp->ips, rp->nips);
    config_strv_free(rp->zones, rp->nzones);
    free(rp->nameserver);
}

static void
config_free_traps(struct config_traps *t)
{
    config_strv_free(t->addresses, t->naddresses);
    config_strv_free(t->domains, t->ndomains);
    free(t->file);
    memset(t, 0, sizeof(*t));
}

static bool
config_trap_find(char *const *v, size_t n, const char *s, size_t len)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *m = v[mid];
        int c = 0;
        size_t i = 0;
        for (; i < len && m[i]; i++) {
            unsigned char a = (unsigned char)util_ascii_lower(s[i]), b = (unsigned char)m[i];
            if (a != b) {
                c = a < b ? -1 : 1;
                break;
            }
        }
        if (c == 0)
            c = i == len ? (m[i] ? -1 : 0) : 1;
        if (c == 0)
            return true;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return false;
}

bool
config_is_trap(const struct config *c, const char *addr, size_t len)
{
    const struct config_traps *t = &c->traps;
    const char *at;

    if (t->naddresses + t->ndomains == 0 || len == 0)
        return false;
    if (config_trap_find(t->addresses, t->naddresses, addr, len))
        return true;
    at = NULL;
    for (size_t i = len; i > 0 && !at; i--)
        if (addr[i - 1] == '@')
            at = addr + i - 1;
    return at && config_trap_find(t->domains, t->ndomains, at + 1, len - (size_t)(at + 1 - addr));
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
    size_t choice;
    int r;

    for (size_t i = 0; i < N_ELEMS(paths); i++)
        if (strcmp(key, paths[i].name) == 0)
            return config_parse_path(p, v, path, (char **)((char *)c + paths[i].offset));
    if (strcmp(key, "mode") == 0) {
        r = config_parse_choice(p, v, path, config_mode_names, N_ELEMS(config_mode_names), "mode",
                                "enforce or monitor", &choice);
        if (r == 0)
            c->mode = (enum config_mode)choice;
        return r;
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
    if (strcmp(key, "control_group") == 0)
        return config_parse_group(p, v, path, &c->control_group);
    if (strcmp(key, "exim_user") == 0) {
        char buf[CONFIG_GROUP_MAX + 1];
        r = config_parse_name(p, v, path, buf, sizeof(buf), "user name");
        return r < 0 ? r : config_parse_string(p, v, path, sizeof(buf), &c->exim_user);
    }
    if (strcmp(key, "metrics_file") == 0)
        return config_parse_prom_path(p, v, path, &c->metrics_file);
    if (strcmp(key, "metrics_listen") == 0)
        return config_parse_listen(p, v, path, &c->metrics_listen);
    if (strcmp(key, "alerts") == 0)
        return config_walk_map(p, v, path, config_alerts_pair, NULL);
    if (strcmp(key, "reputation") == 0)
        return config_parse_reputation(p, v, path);
    return config_traps_top_pair(p, key, v, path);
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
    return config_check_traps(p);
}

/*
 * The file may hold URLs and secrets inline: libyaml's copies of it are wiped before they
 * are freed (its parser buffers, the document's scalars).
 */
static void
config_yaml_parser_delete(yaml_parser_t *y)
{
    if (y->buffer.start)
        explicit_bzero(y->buffer.start, (size_t)(y->buffer.end - y->buffer.start));
    if (y->raw_buffer.start)
        explicit_bzero(y->raw_buffer.start, (size_t)(y->raw_buffer.end - y->raw_buffer.start));
    yaml_parser_delete(y);
}

static void
config_doc_delete(yaml_document_t *doc)
{
    for (yaml_node_t *n = doc->nodes.start; n && n < doc->nodes.top; n++)
        if (n->type == YAML_SCALAR_NODE && n->data.scalar.value)
            explicit_bzero(n->data.scalar.value, n->data.scalar.length);
    yaml_document_delete(doc);
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
    config_yaml_parser_delete(&y);
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
    config_doc_delete(&extra);
    if (r == 0)
        goto out;
fail:
    config_doc_delete(&p->doc);
out:
    config_yaml_parser_delete(&y);
    return r;
}

static int
config_parse_file(const char *buf, size_t len, const char *name, unsigned mode,
                  struct config **ret, struct diag *reterr)
{
    struct config_parser p = {
        .name = name ? name : "<config>",
        .diag = reterr,
        .reader = &config_reader_system,
        .file_mode = mode,
    };
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
    config_doc_delete(&p.doc);
    free(p.visited);
    *ret = p.c;
    return 0;
fail:
    if (r == -ENOMEM && reterr && !reterr->msg[0])
        (void)config_fail_at(&p, r, 0, 0, "", "out of memory");
    if (loaded)
        config_doc_delete(&p.doc);
    free(p.visited);
    config_free(p.c);
    return r;
}

int
config_parse(const char *buf, size_t len, const char *name, struct config **ret,
             struct diag *reterr)
{
    return config_parse_file(buf, len, name, 0, ret, reterr);
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
    r = config_parse_file(buf, len, path, (unsigned)st.st_mode, ret, reterr);
out:
    if (buf)
        explicit_bzero(buf, len);
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
    c->mode = CONFIG_MODE_MONITOR; /* enforcing is always a line the admin wrote */
    c->cooldown_ms = 3600000;
    c->max_identities = USERTABLE_CAP_DEFAULT;
    c->backend = CONFIG_BACKEND_EXIM;
    c->action_timeout_ms = 30000;
    c->freeze_batch = 50;
    c->max_actions_per_hour = 100;
    c->alerts.digest_threshold = 5;
    c->alerts.digest_interval_ms = 60000;
    c->alerts.followup_ms = 30000;
    c->alerts.resend_ms = 60000;
    c->alerts.resolved_keep_ms = 300000;
    c->alerts.max_age_ms = 86400000;
    c->alerts.max_pending = 10000;
    c->alerts.max_bytes = 16ull * 1024 * 1024;
    c->reputation.interval_ms = 900000;
    c->reputation.timeout_ms = 5000;
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

static void
config_free_secret_string(char *s)
{
    if (s)
        explicit_bzero(s, strlen(s));
    free(s);
}

/* URLs and keys are credentials: wiped before their memory is returned. */
static void
config_free_alerts(struct config_alerts *a)
{
    for (size_t i = 0; i < a->ndests; i++) {
        struct config_dest *d = &a->dests[i];
        config_free_secret_string(d->url);
        config_free_secret_string(d->generator_url);
        free(d->ca_file);
    }
    if (a->dests)
        explicit_bzero(a->dests, a->ndests * sizeof(*a->dests));
    free(a->dests);
    free(a->host_name);
}

void
config_free(struct config *c)
{
    if (!c)
        return;
    config_strv_free(c->exempt_mailboxes, c->nexempt_mailboxes);
    config_strv_free(c->exempt_accounts, c->nexempt_accounts);
    config_strv_free(c->never_hold, c->nnever_hold);
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
    free(c->exim_user);
    config_free_traps(&c->traps);
    free(c->control_group);
    free(c->metrics_file);
    free(c->metrics_listen);
    config_free_alerts(&c->alerts);
    config_free_reputation(&c->reputation);
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

const char *
config_backend_name(enum config_backend b)
{
    return (unsigned)b < CONFIG_BACKEND__MAX ? config_backend_names[b] : NULL;
}
