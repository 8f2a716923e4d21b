/*
 * check_metrics.c - the exposition builder (tables of exact texts and of refusals), a
 * strict exposition parser written here and applied to the builder's output (and shown
 * to reject broken texts), the /proc parsers, and the /metrics endpoint against real
 * loopback sockets: a server runs in a child's libev loop while the parent plays the
 * scraper with blocking sockets under receive timeouts.
 */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>
#include <ev.h>

#include "metrics.h"
#include "metrics_http.h"
#include "testrun.h"

/* --- a strict parser of the text format ------------------------------------------------ */

#define STRICT_FAMILIES_MAX 256
#define STRICT_SERIES_MAX   4096
#define STRICT_KEY_MAX      1024

struct strict_family {
    char name[METRICS_NAME_MAX + 1];
    char type[16];
    bool help, typed, samples, closed;
};

struct strict_series {
    char key[STRICT_KEY_MAX];  /* name{sorted labels} */
    char hkey[STRICT_KEY_MAX]; /* histogram: family{labels without le} */
    double last_bucket, inf;
    bool inf_seen;
};

struct strict {
    struct strict_family fam[STRICT_FAMILIES_MAX];
    size_t nfam;
    struct strict_series *ser;
    size_t nser;
    int cur; /* family of the previous sample, -1 none */
    char why[256];
};

struct strict_label {
    char name[METRICS_NAME_MAX + 1];
    char value[256];
};

static bool
strict_name_ok(const char *s, size_t n, bool colon)
{
    if (n == 0 || n > METRICS_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
              (i > 0 && c >= '0' && c <= '9')))
            return false;
    }
    return true;
}

static bool
strict_ends(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int
strict_fail(struct strict *st, size_t lineno, const char *what)
{
    (void)snprintf(st->why, sizeof(st->why), "line %zu: %s", lineno, what);
    return -1;
}

static int
strict_family(struct strict *st, const char *name, bool create)
{
    for (size_t i = 0; i < st->nfam; i++)
        if (strcmp(st->fam[i].name, name) == 0)
            return (int)i;
    if (!create || st->nfam == STRICT_FAMILIES_MAX)
        return -1;
    (void)snprintf(st->fam[st->nfam].name, sizeof(st->fam[0].name), "%s", name);
    return (int)st->nfam++;
}

static struct strict_series *
strict_series(struct strict *st, const char *key, bool hist)
{
    for (size_t i = 0; i < st->nser; i++)
        if (strcmp(hist ? st->ser[i].hkey : st->ser[i].key, key) == 0)
            return &st->ser[i];
    return NULL;
}

static int
strict_label_cmp(const void *a, const void *b)
{
    return strcmp(((const struct strict_label *)a)->name, ((const struct strict_label *)b)->name);
}

/* Escapes allowed in a label value (\\ \" \n) or, with !quote, in HELP text (\\ \n). */
static const char *
strict_unescape(const char *p, const char *end, bool quote, char *out, size_t size)
{
    size_t n = 0;

    while (p < end && (quote ? *p != '"' : *p != '\n')) {
        char c = *p++;
        if (c == '\n')
            return NULL;
        if (c == '\\') {
            if (p >= end)
                return NULL;
            c = *p++;
            if (c == 'n')
                c = '\n';
            else if (c != '\\' && !(quote && c == '"'))
                return NULL;
        }
        if (n + 1 >= size)
            return NULL;
        out[n++] = c;
    }
    out[n] = '\0';
    return p;
}

static bool
strict_value(const char *p, const char *end, double *ret)
{
    char buf[64], *e;
    size_t n = (size_t)(end - p);

    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, p, n);
    buf[n] = '\0';
    if (strcmp(buf, "+Inf") == 0 || strcmp(buf, "-Inf") == 0 || strcmp(buf, "NaN") == 0) {
        *ret = buf[0] == 'N' ? NAN : buf[0] == '+' ? INFINITY : -INFINITY;
        return true;
    }
    if (!((buf[0] >= '0' && buf[0] <= '9') || buf[0] == '-'))
        return false;
    *ret = strtod(buf, &e);
    return *e == '\0';
}

static int
strict_meta(struct strict *st, const char *p, const char *end, size_t ln)
{
    bool help = strncmp(p, "# HELP ", 7) == 0, type = strncmp(p, "# TYPE ", 7) == 0;
    const char *name, *sp;
    char nbuf[METRICS_NAME_MAX + 1], text[1024];
    int f;

    if (!help && !type)
        return strict_fail(st, ln, "comment that is neither HELP nor TYPE");
    name = p + 7;
    sp = memchr(name, ' ', (size_t)(end - name));
    if (!sp || !strict_name_ok(name, (size_t)(sp - name), true))
        return strict_fail(st, ln, "bad metric name in HELP/TYPE");
    memcpy(nbuf, name, (size_t)(sp - name));
    nbuf[sp - name] = '\0';
    f = strict_family(st, nbuf, true);
    if (f < 0)
        return strict_fail(st, ln, "too many families");
    if (st->fam[f].samples)
        return strict_fail(st, ln, "HELP/TYPE after the family's samples");
    if (help) {
        if (st->fam[f].help)
            return strict_fail(st, ln, "second HELP");
        if (!strict_unescape(sp + 1, end, false, text, sizeof(text)))
            return strict_fail(st, ln, "bad escape in HELP");
        st->fam[f].help = true;
        return 0;
    }
    if (st->fam[f].typed)
        return strict_fail(st, ln, "second TYPE");
    if ((size_t)(end - sp - 1) >= sizeof(st->fam[f].type))
        return strict_fail(st, ln, "bad type");
    memcpy(st->fam[f].type, sp + 1, (size_t)(end - sp - 1));
    st->fam[f].type[end - sp - 1] = '\0';
    if (strcmp(st->fam[f].type, "counter") && strcmp(st->fam[f].type, "gauge") &&
        strcmp(st->fam[f].type, "histogram"))
        return strict_fail(st, ln, "unknown type");
    if (strcmp(st->fam[f].type, "counter") == 0 && !strict_ends(nbuf, "_total"))
        return strict_fail(st, ln, "counter not ending in _total");
    st->fam[f].typed = true;
    return 0;
}

static int
strict_sample(struct strict *st, const char *p, const char *end, size_t ln)
{
    struct strict_label lab[METRICS_LABELS_MAX + 1];
    size_t nlab = 0, nlen = 0, klen;
    char name[METRICS_NAME_MAX + 1], base[METRICS_NAME_MAX + 1], key[STRICT_KEY_MAX];
    char hkey[STRICT_KEY_MAX];
    const char *suffix = "";
    double v;
    int f;

    while (p + nlen < end && p[nlen] != '{' && p[nlen] != ' ')
        nlen++;
    if (!strict_name_ok(p, nlen, true))
        return strict_fail(st, ln, "bad metric name");
    memcpy(name, p, nlen);
    name[nlen] = '\0';
    p += nlen;
    f = strict_family(st, name, false);
    if (f < 0 || !st->fam[f].typed) {
        static const char *const sfx[] = { "_bucket", "_sum", "_count" };
        for (size_t i = 0; i < N_ELEMS(sfx) && f < 0; i++) {
            if (!strict_ends(name, sfx[i]))
                continue;
            (void)snprintf(base, sizeof(base), "%.*s", (int)(nlen - strlen(sfx[i])), name);
            f = strict_family(st, base, false);
            if (f >= 0 && strcmp(st->fam[f].type, "histogram") != 0)
                f = -1;
            suffix = sfx[i];
        }
    }
    if (f < 0 || !st->fam[f].typed)
        return strict_fail(st, ln, "sample without a TYPE before it");
    if (strcmp(st->fam[f].type, "histogram") == 0 && suffix[0] == '\0')
        return strict_fail(st, ln, "histogram sample without _bucket/_sum/_count");
    if (st->cur != f) {
        if (st->fam[f].closed)
            return strict_fail(st, ln, "family's samples not together");
        if (st->cur >= 0)
            st->fam[st->cur].closed = true;
        st->cur = f;
    }
    st->fam[f].samples = true;
    if (p < end && *p == '{') {
        p++;
        while (p < end && *p != '}') {
            size_t k = 0;
            if (nlab == N_ELEMS(lab))
                return strict_fail(st, ln, "too many labels");
            while (p + k < end && p[k] != '=')
                k++;
            if (!strict_name_ok(p, k, false) || p + k + 1 >= end || p[k + 1] != '"')
                return strict_fail(st, ln, "bad label name");
            memcpy(lab[nlab].name, p, k);
            lab[nlab].name[k] = '\0';
            p = strict_unescape(p + k + 2, end, true, lab[nlab].value, sizeof(lab[0].value));
            if (!p || p >= end || *p != '"')
                return strict_fail(st, ln, "bad label value");
            p++;
            nlab++;
            if (p < end && *p == ',')
                p++;
            else if (p < end && *p != '}')
                return strict_fail(st, ln, "labels not separated by commas");
        }
        if (p >= end)
            return strict_fail(st, ln, "unterminated labels");
        p++;
    }
    if (p >= end || *p != ' ' || !strict_value(p + 1, end, &v))
        return strict_fail(st, ln, "bad value (or a timestamp, which we never write)");
    qsort(lab, nlab, sizeof(lab[0]), strict_label_cmp);
    klen = (size_t)snprintf(key, sizeof(key), "%s{", name);
    (void)snprintf(hkey, sizeof(hkey), "%s{", st->fam[f].name);
    for (size_t i = 0; i < nlab; i++) {
        if (i > 0 && strcmp(lab[i].name, lab[i - 1].name) == 0)
            return strict_fail(st, ln, "label repeated");
        klen +=
            (size_t)snprintf(key + klen, sizeof(key) - klen, "%s=%s,", lab[i].name, lab[i].value);
        if (strcmp(lab[i].name, "le") != 0) {
            size_t h = strlen(hkey);
            int n = snprintf(hkey + h, sizeof(hkey) - h, "%s=%s,", lab[i].name, lab[i].value);
            if (n < 0 || (size_t)n >= sizeof(hkey) - h)
                return strict_fail(st, ln, "series key too long");
        }
        if (klen >= sizeof(key))
            return strict_fail(st, ln, "series key too long");
    }
    if (strict_series(st, key, false))
        return strict_fail(st, ln, "duplicate series");
    if (st->nser == STRICT_SERIES_MAX)
        return strict_fail(st, ln, "too many series");
    struct strict_series *s = &st->ser[st->nser++];
    memset(s, 0, sizeof(*s));
    (void)snprintf(s->key, sizeof(s->key), "%s", key);
    if (strcmp(suffix, "_bucket") == 0) {
        const char *le = NULL;
        struct strict_series *h = strict_series(st, hkey, true);
        for (size_t i = 0; i < nlab; i++)
            if (strcmp(lab[i].name, "le") == 0)
                le = lab[i].value;
        if (!le)
            return strict_fail(st, ln, "bucket without le");
        if (!h) {
            h = s;
            (void)snprintf(h->hkey, sizeof(h->hkey), "%s", hkey);
            h->last_bucket = 0;
        } else if (h->inf_seen) {
            return strict_fail(st, ln, "bucket after le=\"+Inf\"");
        }
        if (v < h->last_bucket)
            return strict_fail(st, ln, "buckets not cumulative");
        h->last_bucket = v;
        if (strcmp(le, "+Inf") == 0) {
            h->inf_seen = true;
            h->inf = v;
        }
    } else if (strcmp(suffix, "_count") == 0) {
        struct strict_series *h = strict_series(st, hkey, true);
        if (!h || !h->inf_seen || h->inf != v)
            return strict_fail(st, ln, "_count without a matching le=\"+Inf\" bucket");
    }
    return 0;
}

/* 0 when @text is a strictly valid exposition, else -1 and the reason in st->why. */
static int
strict_parse(struct strict *st, const char *text, size_t len)
{
    const char *p = text, *end = text + len;
    size_t ln = 0;
    int r = 0;

    memset(st, 0, sizeof(*st));
    st->cur = -1;
    st->ser = calloc(STRICT_SERIES_MAX, sizeof(*st->ser));
    ck_assert_ptr_nonnull(st->ser);
    if (len > 0 && text[len - 1] != '\n')
        r = strict_fail(st, 0, "no final newline");
    while (r == 0 && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        ln++;
        if (nl == p)
            r = strict_fail(st, ln, "empty line");
        else if (*p == '#')
            r = strict_meta(st, p, nl, ln);
        else
            r = strict_sample(st, p, nl, ln);
        p = nl + 1;
    }
    for (size_t i = 0; r == 0 && i < st->nfam; i++)
        if (!st->fam[i].typed)
            r = strict_fail(st, 0, "HELP without TYPE");
    free(st->ser);
    st->ser = NULL;
    return r;
}

static void
assert_strict(const char *what, const char *text, size_t len)
{
    struct strict *st = calloc(1, sizeof(*st));

    ck_assert_ptr_nonnull(st);
    ck_assert_msg(strict_parse(st, text, len) == 0, "%s: %s\n%s", what, st->why, text);
    free(st);
}

/* --- builder: exact texts ---------------------------------------------------------------- */

static const double test_bounds[] = { 0.25, 1, 10 }; /* binary-exact, like the sums below */

static int
build_counter(struct metrics *m)
{
    (void)metrics_family(m, "fg_lines_total", METRICS_COUNTER, "Lines read.");
    return metrics_sample_u64(m, NULL, 0, 42);
}

static int
build_label_escape(struct metrics *m)
{
    const struct metrics_label l[] = { { "rule", "a\\b\"c\nd" }, { "scope", "mailbox" } };
    (void)metrics_family(m, "fg_trips_total", METRICS_COUNTER, "Trips.");
    return metrics_sample_u64(m, l, 2, 1);
}

static int
build_help_escape(struct metrics *m)
{
    (void)metrics_family(m, "fg_g", METRICS_GAUGE, "two\nlines, a \\ and \"quotes\"");
    return metrics_sample(m, NULL, 0, 1);
}

static int
build_values(struct metrics *m)
{
    const struct metrics_label a = { "k", "a" }, b = { "k", "b" }, c = { "k", "c" },
                               d = { "k", "d" }, e = { "k", "e" }, f = { "k", "f" },
                               g = { "k", "g" };
    (void)metrics_family(m, "fg_v", METRICS_GAUGE, "Values.");
    (void)metrics_sample(m, &a, 1, 0.5);
    (void)metrics_sample(m, &b, 1, -0.0);
    (void)metrics_sample(m, &c, 1, 1e20);
    (void)metrics_sample(m, &d, 1, INFINITY);
    (void)metrics_sample(m, &e, 1, NAN);
    (void)metrics_sample(m, &f, 1, 1772409600.143);
    return metrics_sample(m, &g, 1, -3);
}

static int
build_families_together(struct metrics *m)
{
    const struct metrics_label x = { "scope", "mailbox" }, y = { "scope", "account" };
    (void)metrics_family(m, "fg_a_total", METRICS_COUNTER, "A.");
    (void)metrics_sample_u64(m, &x, 1, 1);
    (void)metrics_sample_u64(m, &y, 1, 2);
    (void)metrics_family(m, "fg_b", METRICS_GAUGE, "B.");
    return metrics_sample(m, NULL, 0, 3);
}

static int
build_histogram(struct metrics *m)
{
    struct metrics_hist h = { .bounds = test_bounds, .nbounds = N_ELEMS(test_bounds) };
    const struct metrics_label l = { "action", "freeze" };
    const double obs[] = { 0.0625, 0.5, 0.5, 5, 50, 0.25 }; /* 0.25: le is inclusive */
    for (size_t i = 0; i < N_ELEMS(obs); i++)
        metrics_hist_observe(&h, obs[i]);
    (void)metrics_family(m, "fg_duration_seconds", METRICS_HISTOGRAM, "Durations.");
    return metrics_histogram(m, &l, 1, &h);
}

static int
build_empty(struct metrics *m)
{
    (void)m;
    return 0;
}

struct build_case {
    const char *name;
    int (*build)(struct metrics *m);
    const char *text;
};

static const struct build_case builds[] = {
    { "counter", build_counter,
      "# HELP fg_lines_total Lines read.\n# TYPE fg_lines_total counter\nfg_lines_total 42\n" },
    { "label escaping", build_label_escape,
      "# HELP fg_trips_total Trips.\n# TYPE fg_trips_total counter\n"
      "fg_trips_total{rule=\"a\\\\b\\\"c\\nd\",scope=\"mailbox\"} 1\n" },
    { "help escaping", build_help_escape,
      "# HELP fg_g two\\nlines, a \\\\ and \"quotes\"\n# TYPE fg_g gauge\nfg_g 1\n" },
    { "values", build_values,
      "# HELP fg_v Values.\n# TYPE fg_v gauge\nfg_v{k=\"a\"} 0.5\nfg_v{k=\"b\"} 0\n"
      "fg_v{k=\"c\"} 1e+20\nfg_v{k=\"d\"} +Inf\nfg_v{k=\"e\"} NaN\nfg_v{k=\"f\"} 1772409600.143\n"
      "fg_v{k=\"g\"} -3\n" },
    { "families together", build_families_together,
      "# HELP fg_a_total A.\n# TYPE fg_a_total counter\nfg_a_total{scope=\"mailbox\"} 1\n"
      "fg_a_total{scope=\"account\"} 2\n# HELP fg_b B.\n# TYPE fg_b gauge\nfg_b 3\n" },
    { "histogram", build_histogram,
      "# HELP fg_duration_seconds Durations.\n# TYPE fg_duration_seconds histogram\n"
      "fg_duration_seconds_bucket{action=\"freeze\",le=\"0.25\"} 2\n"
      "fg_duration_seconds_bucket{action=\"freeze\",le=\"1\"} 4\n"
      "fg_duration_seconds_bucket{action=\"freeze\",le=\"10\"} 5\n"
      "fg_duration_seconds_bucket{action=\"freeze\",le=\"+Inf\"} 6\n"
      "fg_duration_seconds_sum{action=\"freeze\"} 56.3125\n"
      "fg_duration_seconds_count{action=\"freeze\"} 6\n" },
    { "empty", build_empty, "" },
};

START_TEST(test_metrics_build)
{
    const struct build_case *c = &builds[_i];
    struct strbuf b;
    struct metrics m;

    strbuf_init(&b, 1 << 16);
    metrics_init(&m, &b);
    ck_assert_msg(c->build(&m) == 0, "%s: build failed", c->name);
    ck_assert_msg(metrics_finish(&m) == 0, "%s: finish failed", c->name);
    ck_assert_msg(strcmp(strbuf_cstr(&b), c->text) == 0, "%s: got\n%s\nwant\n%s", c->name,
                  strbuf_cstr(&b), c->text);
    assert_strict(c->name, b.p ? b.p : "", b.len);
    strbuf_done(&b);
}
END_TEST

/* --- builder: refusals ------------------------------------------------------------------- */

static int
bad_counter_suffix(struct metrics *m)
{
    return metrics_family(m, "fg_lines", METRICS_COUNTER, "x");
}

static int
bad_name_digit(struct metrics *m)
{
    return metrics_family(m, "9fg", METRICS_GAUGE, "x");
}

static int
bad_name_dash(struct metrics *m)
{
    return metrics_family(m, "fg-x", METRICS_GAUGE, "x");
}

static int
bad_duplicate_family(struct metrics *m)
{
    (void)metrics_family(m, "fg_x", METRICS_GAUGE, "x");
    (void)metrics_sample(m, NULL, 0, 1);
    (void)metrics_family(m, "fg_y", METRICS_GAUGE, "y");
    (void)metrics_sample(m, NULL, 0, 1);
    return metrics_family(m, "fg_x", METRICS_GAUGE, "x");
}

static int
bad_sample_first(struct metrics *m)
{
    return metrics_sample(m, NULL, 0, 1);
}

static int
bad_label_reserved(struct metrics *m)
{
    const struct metrics_label l = { "__name", "v" };
    (void)metrics_family(m, "fg_x", METRICS_GAUGE, "x");
    return metrics_sample(m, &l, 1, 1);
}

static int
bad_label_name(struct metrics *m)
{
    const struct metrics_label l = { "a:b", "v" };
    (void)metrics_family(m, "fg_x", METRICS_GAUGE, "x");
    return metrics_sample(m, &l, 1, 1);
}

static int
bad_label_twice(struct metrics *m)
{
    const struct metrics_label l[] = { { "a", "v" }, { "a", "w" } };
    (void)metrics_family(m, "fg_x", METRICS_GAUGE, "x");
    return metrics_sample(m, l, 2, 1);
}

static int
bad_label_utf8(struct metrics *m)
{
    const struct metrics_label l = { "a", "\xc3\x28" };
    (void)metrics_family(m, "fg_x", METRICS_GAUGE, "x");
    return metrics_sample(m, &l, 1, 1);
}

static int
bad_negative_counter(struct metrics *m)
{
    (void)metrics_family(m, "fg_x_total", METRICS_COUNTER, "x");
    return metrics_sample(m, NULL, 0, -1);
}

static int
bad_hist_suffix(struct metrics *m)
{
    return metrics_family(m, "fg_x_count", METRICS_HISTOGRAM, "x");
}

static int
bad_hist_le(struct metrics *m)
{
    struct metrics_hist h = { .bounds = test_bounds, .nbounds = N_ELEMS(test_bounds) };
    const struct metrics_label l = { "le", "1" };
    (void)metrics_family(m, "fg_x_seconds", METRICS_HISTOGRAM, "x");
    return metrics_histogram(m, &l, 1, &h);
}

static int
bad_hist_bounds(struct metrics *m)
{
    static const double b[] = { 1, 1 };
    struct metrics_hist h = { .bounds = b, .nbounds = 2 };
    (void)metrics_family(m, "fg_x_seconds", METRICS_HISTOGRAM, "x");
    return metrics_histogram(m, NULL, 0, &h);
}

static int
bad_sample_on_hist(struct metrics *m)
{
    (void)metrics_family(m, "fg_x_seconds", METRICS_HISTOGRAM, "x");
    return metrics_sample(m, NULL, 0, 1);
}

static int
bad_cap(struct metrics *m)
{
    (void)metrics_family(m, "fg_x", METRICS_GAUGE, "a help text longer than the tiny cap");
    return metrics_sample(m, NULL, 0, 1);
}

static int
bad_sticky(struct metrics *m)
{
    (void)metrics_family(m, "fg_bad", METRICS_COUNTER, "x"); /* -EINVAL, kept */
    (void)metrics_family(m, "fg_ok", METRICS_GAUGE, "x");
    return metrics_sample(m, NULL, 0, 1);
}

struct bad_case {
    const char *name;
    int (*build)(struct metrics *m);
    int err;
    size_t max;
};

static const struct bad_case bads[] = {
    { "counter without _total", bad_counter_suffix, -EINVAL, 4096 },
    { "name starting with a digit", bad_name_digit, -EINVAL, 4096 },
    { "name with a dash", bad_name_dash, -EINVAL, 4096 },
    { "family twice", bad_duplicate_family, -EEXIST, 4096 },
    { "sample before a family", bad_sample_first, -EINVAL, 4096 },
    { "label name with __", bad_label_reserved, -EINVAL, 4096 },
    { "label name with a colon", bad_label_name, -EINVAL, 4096 },
    { "label twice", bad_label_twice, -EINVAL, 4096 },
    { "label value not UTF-8", bad_label_utf8, -EINVAL, 4096 },
    { "negative counter", bad_negative_counter, -EINVAL, 4096 },
    { "histogram named _count", bad_hist_suffix, -EINVAL, 4096 },
    { "histogram with an le label", bad_hist_le, -EINVAL, 4096 },
    { "histogram bounds not increasing", bad_hist_bounds, -EINVAL, 4096 },
    { "plain sample on a histogram", bad_sample_on_hist, -EINVAL, 4096 },
    { "over the buffer's cap", bad_cap, -E2BIG, 24 },
    { "first error sticks", bad_sticky, -EINVAL, 4096 },
};

START_TEST(test_metrics_refuse)
{
    const struct bad_case *c = &bads[_i];
    struct strbuf b;
    struct metrics m;
    int r;

    strbuf_init(&b, c->max);
    metrics_init(&m, &b);
    r = c->build(&m);
    ck_assert_msg(r == c->err, "%s: returned %d, want %d", c->name, r, c->err);
    ck_assert_msg(metrics_finish(&m) == c->err, "%s: finish forgot the error", c->name);
    strbuf_done(&b);
}
END_TEST

/* --- the strict parser rejects what it must --------------------------------------------- */

struct strict_case {
    const char *name;
    const char *text;
};

static const struct strict_case strict_bad[] = {
    { "no final newline", "# TYPE a gauge\na 1" },
    { "sample before TYPE", "a 1\n# TYPE a gauge\n" },
    { "two TYPEs", "# TYPE a gauge\n# TYPE a gauge\na 1\n" },
    { "two HELPs", "# HELP a x\n# HELP a y\n# TYPE a gauge\na 1\n" },
    { "counter without _total", "# TYPE a counter\na 1\n" },
    { "duplicate series", "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n" },
    { "duplicate series, labels reordered",
      "# TYPE a gauge\na{x=\"1\",y=\"2\"} 1\na{y=\"2\",x=\"1\"} 2\n" },
    { "family split", "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"2\"} 1\n" },
    { "bad name", "# TYPE 1a gauge\n1a 1\n" },
    { "bad escape", "# TYPE a gauge\na{x=\"\\t\"} 1\n" },
    { "raw newline in HELP", "# HELP a x\ny\n# TYPE a gauge\na 1\n" },
    { "bad value", "# TYPE a gauge\na one\n" },
    { "timestamp", "# TYPE a gauge\na 1 1700000000000\n" },
    { "buckets decreasing",
      "# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n" },
    { "count not +Inf", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n" },
    { "empty line", "# TYPE a gauge\n\na 1\n" },
    { "other comment", "# hello\n" },
};

START_TEST(test_metrics_strict_rejects)
{
    const struct strict_case *c = &strict_bad[_i];
    struct strict *st = calloc(1, sizeof(*st));

    ck_assert_ptr_nonnull(st);
    ck_assert_msg(strict_parse(st, c->text, strlen(c->text)) < 0, "%s: accepted", c->name);
    free(st);
}
END_TEST

/* A full exposition of every kind, the shape the daemon writes, passes the parser. */
static int
build_everything(struct strbuf *b, uint64_t n)
{
    static const char *const scopes[] = { "mailbox", "account", "script" };
    struct metrics_hist h = { .bounds = test_bounds, .nbounds = N_ELEMS(test_bounds) };
    const struct metrics_label bi[] = { { "version", "0.1.0" }, { "revision", "unknown" } };
    struct metrics m;

    metrics_init(&m, b);
    (void)metrics_family(&m, "fg_build_info", METRICS_GAUGE, "Build.");
    (void)metrics_sample(&m, bi, 2, 1);
    (void)metrics_family(&m, "fg_requests_total", METRICS_COUNTER, "Requests served.");
    (void)metrics_sample_u64(&m, NULL, 0, n);
    (void)metrics_family(&m, "fg_identities", METRICS_GAUGE, "Identities.");
    for (size_t i = 0; i < N_ELEMS(scopes); i++) {
        const struct metrics_label l = { "scope", scopes[i] };
        (void)metrics_sample(&m, &l, 1, (double)i);
    }
    metrics_hist_observe(&h, 0.3);
    (void)metrics_family(&m, "fg_step_seconds", METRICS_HISTOGRAM, "Steps.");
    (void)metrics_histogram(&m, NULL, 0, &h);
    return metrics_finish(&m);
}

START_TEST(test_metrics_strict_accepts_builder)
{
    struct strbuf b;

    strbuf_init(&b, 1 << 16);
    ck_assert_int_eq(build_everything(&b, 7), 0);
    assert_strict("everything", b.p, b.len);
    strbuf_done(&b);
}
END_TEST

/* --- /proc parsers ----------------------------------------------------------------------- */

START_TEST(test_metrics_proc_stat)
{
    /* a command holding ") S 9 9" must not shift the fields */
    const char *line = "4242 (fg) S 9 9 (x) R 1 4242 4242 0 -1 4194560 100 0 0 0 "
                       "1234 567 0 0 20 0 1 0 98765 123456789 2048 18446744073709551615\n";
    const char *plain = "1 (floodgated) S 0 1 1 0 -1 4194560 5 0 0 0 7 8 0 0 20 0 1 0 "
                        "55 4096 3 184467440\n";
    const char *btime = "cpu  1 2 3\nintr 5\nbtime 1772409000\nprocesses 9\n";
    struct metrics_proc_stat st;
    uint64_t bt;

    ck_assert_int_eq(metrics_parse_proc_stat(line, strlen(line), &st), 0);
    ck_assert_uint_eq(st.utime_ticks, 1234);
    ck_assert_uint_eq(st.stime_ticks, 567);
    ck_assert_uint_eq(st.start_ticks, 98765);
    ck_assert_uint_eq(st.vsize_bytes, 123456789);
    ck_assert_uint_eq(st.rss_pages, 2048);
    ck_assert_int_eq(metrics_parse_proc_stat(plain, strlen(plain), &st), 0);
    ck_assert_uint_eq(st.utime_ticks, 7);
    ck_assert_uint_eq(st.rss_pages, 3);
    ck_assert_int_eq(metrics_parse_proc_stat("1 (x) S 2 3", 11, &st), -EBADMSG);
    ck_assert_int_eq(metrics_parse_proc_stat("no paren", 8, &st), -EBADMSG);
    ck_assert_int_eq(metrics_parse_btime(btime, strlen(btime), &bt), 0);
    ck_assert_uint_eq(bt, 1772409000);
    ck_assert_int_eq(metrics_parse_btime("cpu 1\n", 6, &bt), -EBADMSG);
    ck_assert_int_eq(metrics_parse_btime("btime x\n", 8, &bt), -EBADMSG);
}
END_TEST

/* --- listen addresses ---------------------------------------------------------------------- */

struct listen_case {
    const char *addr;
    int ret;
    int family;
    uint16_t port;
};

static const struct listen_case listens[] = {
    { "127.0.0.1:9567", 0, AF_INET, 9567 }, { "localhost:9567", 0, AF_INET, 9567 },
    { "[::1]:9567", 0, AF_INET6, 9567 },    { "127.0.0.1:0", 0, AF_INET, 0 },
    { "127.0.0.2:9567", 0, AF_INET, 9567 }, { "0.0.0.0:9567", -EINVAL, 0, 0 },
    { "128.0.0.1:9567", -EINVAL, 0, 0 },    { "127.1:9567", -EINVAL, 0, 0 },
    { "0177.0.0.1:9567", -EINVAL, 0, 0 },   { "192.0.2.1:9567", -EINVAL, 0, 0 },
    { "[::]:9567", -EINVAL, 0, 0 },         { "example.com:9567", -EINVAL, 0, 0 },
    { "127.0.0.1", -EINVAL, 0, 0 },         { "127.0.0.1:", -EINVAL, 0, 0 },
    { "127.0.0.1:65536", -EINVAL, 0, 0 },   { "127.0.0.1:09567x", -EINVAL, 0, 0 },
    { "127.0.0.1:-1", -EINVAL, 0, 0 },      { ":9567", -EINVAL, 0, 0 },
    { "::1:9567", -EINVAL, 0, 0 },          { "", -EINVAL, 0, 0 },
};

START_TEST(test_metrics_http_listen)
{
    const struct listen_case *c = &listens[_i];
    struct sockaddr_storage ss;
    socklen_t len = 0;
    int r = metrics_http_parse_listen(c->addr, &ss, &len);

    ck_assert_msg(r == c->ret, "%s: returned %d", c->addr, r);
    if (r < 0)
        return;
    ck_assert_msg(ss.ss_family == c->family, "%s: family", c->addr);
    if (c->family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
        ck_assert_uint_eq(ntohs(sin->sin_port), c->port);
        ck_assert_uint_eq(ntohl(sin->sin_addr.s_addr) >> 24, IN_LOOPBACKNET);
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
        ck_assert_uint_eq(ntohs(sin6->sin6_port), c->port);
        ck_assert(memcmp(&sin6->sin6_addr, &in6addr_loopback, sizeof(in6addr_loopback)) == 0);
    }
}
END_TEST

static int
http_test_fill(void *ctx, struct strbuf *out)
{
    static uint64_t served;
    struct metrics_http **h = ctx;
    struct metrics m;

    metrics_init(&m, out);
    (void)metrics_family(&m, "fg_served_total", METRICS_COUNTER, "Requests served.");
    (void)metrics_sample_u64(&m, NULL, 0, ++served);
    (void)metrics_family(&m, "fg_conns", METRICS_GAUGE, "Connections open now.");
    (void)metrics_sample_u64(&m, NULL, 0, metrics_http_conns(*h));
    return metrics_finish(&m);
}

START_TEST(test_metrics_http_refuses_public)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct metrics_http *h = NULL;
    struct metrics_http_params p = {
        .loop = loop, .listen = "0.0.0.0:0", .fill = http_test_fill, .ctx = &h
    };

    ck_assert_int_eq(metrics_http_open(&p, &h), -EINVAL);
    ck_assert_ptr_null(h);
    p.listen = "127.0.0.1:0";
    p.fill = NULL;
    ck_assert_int_eq(metrics_http_open(&p, &h), -EINVAL);
    ev_loop_destroy(loop);
}
END_TEST

/* A server in a child's loop; returns its pid and writes the port bound. */
static pid_t
http_server_start(const char *listen, int64_t timeout_ms, size_t conns_max, uint16_t *ret_port)
{
    int pfd[2];
    pid_t pid;

    ck_assert_int_eq(pipe(pfd), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
        struct metrics_http *h = NULL;
        struct metrics_http_params p = {
            .loop = loop,
            .listen = listen,
            .fill = http_test_fill,
            .ctx = &h,
            .timeout_ms = timeout_ms,
            .conns_max = conns_max,
        };
        uint16_t port = 0;
        (void)close(pfd[0]);
        if (metrics_http_open(&p, &h) == 0)
            port = metrics_http_port(h);
        if (write(pfd[1], &port, sizeof(port)) != (ssize_t)sizeof(port) || port == 0)
            _exit(3);
        (void)close(pfd[1]);
        alarm(30); /* bounded even if the parent dies */
        ev_run(loop, 0);
        _exit(0);
    }
    (void)close(pfd[1]);
    ck_assert_int_eq(read(pfd[0], ret_port, sizeof(*ret_port)), (ssize_t)sizeof(*ret_port));
    (void)close(pfd[0]);
    return pid;
}

static void
http_server_stop(pid_t pid)
{
    int st;

    (void)kill(pid, SIGKILL);
    (void)waitpid(pid, &st, 0);
}

static int
http_connect(int family, uint16_t port, double timeout_s)
{
    struct sockaddr_storage ss;
    socklen_t len;
    struct timeval tv = { (time_t)timeout_s,
                          (suseconds_t)((timeout_s - (double)(time_t)timeout_s) * 1e6) };
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    memset(&ss, 0, sizeof(ss));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        sin6->sin6_addr = in6addr_loopback;
        len = sizeof(*sin6);
    }
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&ss, len), 0);
    return fd;
}

/* Read until EOF; returns the bytes read, or -errno (-EAGAIN: the receive timeout hit). */
static ssize_t
http_read_all(int fd, char *buf, size_t size)
{
    size_t n = 0;

    while (n + 1 < size) {
        ssize_t r = recv(fd, buf + n, size - 1 - n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    return (ssize_t)n;
}

static ssize_t
http_exchange(int family, uint16_t port, const char *req, size_t len, char *buf, size_t size)
{
    int fd = http_connect(family, port, 5.0);
    ssize_t n;

    ck_assert_int_eq(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
    n = http_read_all(fd, buf, size);
    (void)close(fd);
    return n;
}

/* The body of a 200 after its head, checked: exact content type, length, close. */
static const char *
http_check_200(const char *resp, size_t len)
{
    const char *body = strstr(resp, "\r\n\r\n"), *cl;
    unsigned long want;

    ck_assert_msg(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0, "status line: %s", resp);
    ck_assert_ptr_nonnull(body);
    ck_assert_ptr_nonnull(
        strstr(resp, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    ck_assert_ptr_nonnull(strstr(resp, "\r\nConnection: close\r\n"));
    cl = strstr(resp, "\r\nContent-Length: ");
    ck_assert_ptr_nonnull(cl);
    want = strtoul(cl + 18, NULL, 10);
    body += 4;
    ck_assert_uint_eq(want, len - (size_t)(body - resp));
    return body;
}

START_TEST(test_metrics_http_answers)
{
    static const struct {
        const char *req;
        const char *status;
    } cases[] = {
        { "GET /other HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 404 Not Found\r\n" },
        { "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found\r\n" },
        { "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
          "HTTP/1.1 405 Method Not Allowed\r\n" },
        { "HEAD /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405 Method Not Allowed\r\n" },
        { "hello there\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n" },
        { "\x01\x02\x03\n", "HTTP/1.1 400 Bad Request\r\n" },
        { "GET /metrics SPDY/3\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n" },
        { "GET metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n" },
        { "get /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n" },
    };
    char buf[16384];
    uint16_t port;
    pid_t pid = http_server_start("127.0.0.1:0", 5000, 0, &port);
    ssize_t n;

    /* 200 twice (HTTP/1.1 and 1.0, a query string): the counter moves, the text parses */
    n = http_exchange(AF_INET, port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 43, buf,
                      sizeof(buf));
    ck_assert_int_gt(n, 0);
    const char *body = http_check_200(buf, (size_t)n);
    assert_strict("served", body, strlen(body));
    ck_assert_ptr_nonnull(strstr(body, "\nfg_served_total 1\n"));
    n = http_exchange(AF_INET, port, "GET /metrics?x=1 HTTP/1.0\n\n", 27, buf, sizeof(buf));
    ck_assert_int_gt(n, 0);
    body = http_check_200(buf, (size_t)n);
    ck_assert_ptr_nonnull(strstr(body, "\nfg_served_total 2\n"));
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        n = http_exchange(AF_INET, port, cases[i].req, strlen(cases[i].req), buf, sizeof(buf));
        ck_assert_msg(n > 0 && strncmp(buf, cases[i].status, strlen(cases[i].status)) == 0,
                      "request %zu: got %zd '%s'", i, n, n > 0 ? buf : "");
        ck_assert_msg(strstr(buf, "\r\nConnection: close\r\n") != NULL, "request %zu", i);
    }
    ck_assert_ptr_nonnull(strstr(buf, "\r\n") ? buf : NULL);
    /* the 405 says what is allowed */
    n = http_exchange(AF_INET, port, cases[2].req, strlen(cases[2].req), buf, sizeof(buf));
    ck_assert_ptr_nonnull(strstr(buf, "\r\nAllow: GET\r\n"));
    http_server_stop(pid);
}
END_TEST

START_TEST(test_metrics_http_oversized)
{
    char big[3 * METRICS_HTTP_REQUEST_MAX], buf[4096];
    uint16_t port;
    pid_t pid = http_server_start("127.0.0.1:0", 5000, 0, &port);
    ssize_t n;
    int fd;

    /* a request line that never ends */
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET /", 5);
    fd = http_connect(AF_INET, port, 5.0);
    (void)send(fd, big, METRICS_HTTP_REQUEST_MAX + 100, MSG_NOSIGNAL);
    n = http_read_all(fd, buf, sizeof(buf));
    ck_assert_msg(n == 0 || n == -ECONNRESET, "an oversized request got %zd: %s", n, buf);
    (void)close(fd);
    /* a good request line, then headers past the cap */
    memcpy(big, "GET /metrics HTTP/1.1\r\n", 23);
    for (size_t i = 123; i + 2 < sizeof(big); i += 100)
        memcpy(big + i, "\r\n", 2);
    fd = http_connect(AF_INET, port, 5.0);
    (void)send(fd, big, METRICS_HTTP_REQUEST_MAX + 100, MSG_NOSIGNAL);
    n = http_read_all(fd, buf, sizeof(buf));
    ck_assert_msg(n == 0 || n == -ECONNRESET, "an oversized head got %zd: %s", n, buf);
    (void)close(fd);
    /* and the server still serves */
    n = http_exchange(AF_INET, port, "GET /metrics HTTP/1.1\r\n\r\n", 25, buf, sizeof(buf));
    ck_assert_int_gt(n, 0);
    (void)http_check_200(buf, (size_t)n);
    http_server_stop(pid);
}
END_TEST

START_TEST(test_metrics_http_idle_dropped)
{
    char buf[4096];
    uint16_t port;
    pid_t pid = http_server_start("127.0.0.1:0", 1000, 0, &port);
    int idle = http_connect(AF_INET, port, 10.0);
    ssize_t n;

    /* the idle client holds its slot, and others are served meanwhile */
    for (int i = 0; i < 3; i++) {
        n = http_exchange(AF_INET, port, "GET /metrics HTTP/1.1\r\n\r\n", 25, buf, sizeof(buf));
        ck_assert_int_gt(n, 0);
        (void)http_check_200(buf, (size_t)n);
    }
    /* then the deadline closes it without an answer (EOF well before our 10 s bound) */
    n = http_read_all(idle, buf, sizeof(buf));
    ck_assert_msg(n == 0 || n == -ECONNRESET, "idle client got %zd", n);
    (void)close(idle);
    http_server_stop(pid);
}
END_TEST

START_TEST(test_metrics_http_conn_cap)
{
    char buf[4096];
    uint16_t port;
    pid_t pid = http_server_start("127.0.0.1:0", 1000, 2, &port);
    int a = http_connect(AF_INET, port, 10.0), b = http_connect(AF_INET, port, 10.0);
    ssize_t n;
    const char *body, *conns;

    /* a third client waits in the backlog until an idle one meets its deadline; while it is
     * served, never more than the cap are open (without the cap it would see 3) */
    n = http_exchange(AF_INET, port, "GET /metrics HTTP/1.1\r\n\r\n", 25, buf, sizeof(buf));
    ck_assert_int_gt(n, 0);
    body = http_check_200(buf, (size_t)n);
    conns = strstr(body, "\nfg_conns ");
    ck_assert_ptr_nonnull(conns);
    ck_assert_msg(strtoul(conns + 10, NULL, 10) <= 2, "%s", body);
    ck_assert_int_eq(http_read_all(a, buf, sizeof(buf)) <= 0, 1);
    ck_assert_int_eq(http_read_all(b, buf, sizeof(buf)) <= 0, 1);
    (void)close(a);
    (void)close(b);
    http_server_stop(pid);
}
END_TEST

START_TEST(test_metrics_http_ipv6)
{
    char buf[4096];
    uint16_t port;
    ssize_t n;
    pid_t pid;
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };

    /* no ::1 on this host (IPv6 disabled): nothing to test */
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin6, sizeof(sin6)) < 0) {
        if (fd >= 0)
            (void)close(fd);
        return;
    }
    (void)close(fd);
    pid = http_server_start("[::1]:0", 5000, 0, &port);
    n = http_exchange(AF_INET6, port, "GET /metrics HTTP/1.1\r\n\r\n", 25, buf, sizeof(buf));
    ck_assert_int_gt(n, 0);
    (void)http_check_200(buf, (size_t)n);
    http_server_stop(pid);
}
END_TEST

static Suite *
metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("builder");

    tcase_add_loop_test(tc, test_metrics_build, 0, (int)N_ELEMS(builds));
    tcase_add_loop_test(tc, test_metrics_refuse, 0, (int)N_ELEMS(bads));
    tcase_add_loop_test(tc, test_metrics_strict_rejects, 0, (int)N_ELEMS(strict_bad));
    tcase_add_test(tc, test_metrics_strict_accepts_builder);
    tcase_add_test(tc, test_metrics_proc_stat);
    suite_add_tcase(s, tc);
    tc = tcase_create("http");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, test_metrics_http_listen, 0, (int)N_ELEMS(listens));
    tcase_add_test(tc, test_metrics_http_refuses_public);
    tcase_add_test(tc, test_metrics_http_answers);
    tcase_add_test(tc, test_metrics_http_oversized);
    tcase_add_test(tc, test_metrics_http_idle_dropped);
    tcase_add_test(tc, test_metrics_http_conn_cap);
    tcase_add_test(tc, test_metrics_http_ipv6);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(metrics_suite());
}
