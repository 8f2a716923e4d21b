/*
 * metrics.c - Prometheus text exposition 0.0.4 (alerting.md §6.4), and the parsers of the
 * /proc text behind the standard process_* exports.
 *
 * Owns the syntax only: which metrics exist and what they mean is the daemon's
 * (daemon/live_metrics.c). Pure: no clock, no I/O, no allocation but the caller's capped
 * strbuf.
 *
 * Invariants of the text written: every family has exactly one HELP and one TYPE line
 * before its samples, and its samples are contiguous (a family is closed by opening the
 * next one; reopening a name is refused with -EEXIST, found by looking for its TYPE line
 * in the text written so far - an exposition has tens of families, so the scan is cheaper
 * than keeping a set). Metric and label names are checked against the format's grammar,
 * label values and HELP text are escaped (\ " newline, and \ newline for HELP) and must
 * be UTF-8. Label values only ever come from enumerations and operator-configured names
 * (the cardinality rule, alerting.md §6.2); escaping is a second line of defence.
 */
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const metrics_type_names[] = {
    [METRICS_COUNTER] = "counter",
    [METRICS_GAUGE] = "gauge",
    [METRICS_HISTOGRAM] = "histogram",
};

static int
metrics_fail(struct metrics *m, int r)
{
    if (r < 0 && m->err == 0)
        m->err = r;
    return r;
}

static bool
metrics_has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* for metrics (@colon), [a-zA-Z_][a-zA-Z0-9_]* for labels. */
static bool
metrics_name_valid(const char *s, bool colon)
{
    size_t n = strlen(s);

    if (n == 0 || n > METRICS_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

/* Well-formed UTF-8: no overlongs, no surrogates, nothing above U+10FFFF. */
static bool
metrics_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s);

    for (size_t i = 0, n; i < len; i += n)
        if ((n = util_utf8_len(p + i, len - i)) == 0)
            return false;
    return true;
}

/* Append @s escaping backslash and newline, and the double quote when @quote. */
static int
metrics_append_escaped(struct strbuf *b, const char *s, bool quote)
{
    const char *run = s;
    int r = 0;

    for (const char *p = s; *p && r == 0; p++) {
        const char *esc = *p == '\\'             ? "\\\\"
                          : *p == '\n'           ? "\\n"
                          : (quote && *p == '"') ? "\\\""
                                                 : NULL;
        if (!esc)
            continue;
        r = strbuf_append(b, run, (size_t)(p - run));
        if (r == 0)
            r = strbuf_appends(b, esc);
        run = p + 1;
    }
    return r < 0 ? r : strbuf_appends(b, run);
}

/* Shortest text that reads back as @v; integers without exponent or fraction. */
static void
metrics_format_value(double v, char *buf, size_t size)
{
    if (isnan(v)) {
        (void)snprintf(buf, size, "NaN");
    } else if (isinf(v)) {
        (void)snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
    } else if (v == 0) {
        (void)snprintf(buf, size, "0"); /* never "-0" */
    } else if (v == floor(v) && fabs(v) < 1e15) {
        (void)snprintf(buf, size, "%.0f", v);
    } else {
        (void)snprintf(buf, size, "%.15g", v);
        if (strtod(buf, NULL) != v)
            (void)snprintf(buf, size, "%.17g", v);
    }
}

void
metrics_init(struct metrics *m, struct strbuf *out)
{
    memset(m, 0, sizeof(*m));
    m->out = out;
    m->start = out->len;
}

static bool
metrics_family_written(const struct metrics *m, const char *name)
{
    const char *p = m->out->p ? m->out->p + m->start : NULL;
    size_t left = m->out->len - m->start, n = strlen(name);

    while (p && left > 0) {
        const char *nl = memchr(p, '\n', left);
        size_t line = nl ? (size_t)(nl - p) : left;
        if (line > 7 + n && memcmp(p, "# TYPE ", 7) == 0 && memcmp(p + 7, name, n) == 0 &&
            p[7 + n] == ' ')
            return true;
        if (!nl)
            break;
        left -= line + 1;
        p = nl + 1;
    }
    return false;
}

int
metrics_family(struct metrics *m, const char *name, enum metrics_type type, const char *help)
{
    static const char *const reserved[] = { "_bucket", "_sum", "_count", "_total" };
    int r;

    if (m->err)
        return m->err;
    if (!name || !metrics_name_valid(name, true) || (unsigned)type >= N_ELEMS(metrics_type_names))
        return metrics_fail(m, -EINVAL);
    if (type == METRICS_COUNTER && !metrics_has_suffix(name, "_total"))
        return metrics_fail(m, -EINVAL);
    for (size_t i = 0; type == METRICS_HISTOGRAM && i < N_ELEMS(reserved); i++)
        if (metrics_has_suffix(name, reserved[i]))
            return metrics_fail(m, -EINVAL);
    if (help && !metrics_utf8_valid(help))
        return metrics_fail(m, -EINVAL);
    if (metrics_family_written(m, name))
        return metrics_fail(m, -EEXIST);
    r = strbuf_printf(m->out, "# HELP %s ", name);
    if (r == 0)
        r = metrics_append_escaped(m->out, help ? help : "", false);
    if (r == 0)
        r = strbuf_printf(m->out, "\n# TYPE %s %s\n", name, metrics_type_names[type]);
    if (r < 0)
        return metrics_fail(m, r);
    (void)snprintf(m->family, sizeof(m->family), "%s", name);
    m->type = type;
    return 0;
}

static int
metrics_check_labels(const struct metrics_label *labels, size_t nlabels, size_t reserve)
{
    if (nlabels > METRICS_LABELS_MAX - reserve || (nlabels > 0 && !labels))
        return -EINVAL;
    for (size_t i = 0; i < nlabels; i++) {
        const char *n = labels[i].name;
        if (!n || !labels[i].value || !metrics_name_valid(n, false) || strncmp(n, "__", 2) == 0 ||
            !metrics_utf8_valid(labels[i].value))
            return -EINVAL;
        if (reserve && strcmp(n, "le") == 0)
            return -EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(labels[j].name, n) == 0)
                return -EINVAL;
    }
    return 0;
}

/* "name<suffix>{labels[,le="…"]} value\n" */
static int
metrics_line(struct metrics *m, const char *suffix, const struct metrics_label *labels,
             size_t nlabels, const char *le, const char *value)
{
    struct strbuf *b = m->out;
    int r = strbuf_printf(b, "%s%s", m->family, suffix);

    for (size_t i = 0; i < nlabels && r == 0; i++) {
        r = strbuf_printf(b, "%s%s=\"", i == 0 ? "{" : ",", labels[i].name);
        if (r == 0)
            r = metrics_append_escaped(b, labels[i].value, true);
        if (r == 0)
            r = strbuf_append(b, "\"", 1);
    }
    if (r == 0 && le)
        r = strbuf_printf(b, "%sle=\"%s\"", nlabels ? "," : "{", le);
    if (r == 0 && (nlabels || le))
        r = strbuf_append(b, "}", 1);
    if (r == 0)
        r = strbuf_printf(b, " %s\n", value);
    return r;
}

static int
metrics_sample_text(struct metrics *m, const struct metrics_label *labels, size_t nlabels,
                    const char *value)
{
    int r;

    if (m->err)
        return m->err;
    if (m->family[0] == '\0' || m->type == METRICS_HISTOGRAM)
        return metrics_fail(m, -EINVAL);
    r = metrics_check_labels(labels, nlabels, 0);
    if (r == 0)
        r = metrics_line(m, "", labels, nlabels, NULL, value);
    if (r < 0)
        return metrics_fail(m, r);
    return 0;
}

int
metrics_sample(struct metrics *m, const struct metrics_label *labels, size_t nlabels, double value)
{
    char text[64];

    if (m->err)
        return m->err;
    if (m->type == METRICS_COUNTER && (isnan(value) || value < 0))
        return metrics_fail(m, -EINVAL);
    metrics_format_value(value, text, sizeof(text));
    return metrics_sample_text(m, labels, nlabels, text);
}

int
metrics_sample_u64(struct metrics *m, const struct metrics_label *labels, size_t nlabels,
                   uint64_t value)
{
    char text[24];

    (void)snprintf(text, sizeof(text), "%llu", (unsigned long long)value);
    return metrics_sample_text(m, labels, nlabels, text);
}

static bool
metrics_bounds_valid(const struct metrics_hist *h)
{
    if (h->nbounds > METRICS_BUCKETS_MAX || (h->nbounds > 0 && !h->bounds))
        return false;
    for (size_t i = 0; i < h->nbounds; i++)
        if (!isfinite(h->bounds[i]) || (i > 0 && h->bounds[i] <= h->bounds[i - 1]))
            return false;
    return true;
}

int
metrics_histogram(struct metrics *m, const struct metrics_label *labels, size_t nlabels,
                  const struct metrics_hist *h)
{
    char le[64], text[64];
    uint64_t cum = 0;
    int r;

    if (m->err)
        return m->err;
    if (m->family[0] == '\0' || m->type != METRICS_HISTOGRAM || !h || !metrics_bounds_valid(h))
        return metrics_fail(m, -EINVAL);
    r = metrics_check_labels(labels, nlabels, 1);
    for (size_t i = 0; i <= h->nbounds && r == 0; i++) {
        cum += h->counts[i];
        if (i < h->nbounds)
            metrics_format_value(h->bounds[i], le, sizeof(le));
        else
            (void)snprintf(le, sizeof(le), "+Inf");
        (void)snprintf(text, sizeof(text), "%llu", (unsigned long long)cum);
        r = metrics_line(m, "_bucket", labels, nlabels, le, text);
    }
    if (r == 0) {
        metrics_format_value(h->sum, text, sizeof(text));
        r = metrics_line(m, "_sum", labels, nlabels, NULL, text);
    }
    if (r == 0) {
        (void)snprintf(text, sizeof(text), "%llu", (unsigned long long)cum);
        r = metrics_line(m, "_count", labels, nlabels, NULL, text);
    }
    if (r < 0)
        return metrics_fail(m, r);
    return 0;
}

void
metrics_hist_observe(struct metrics_hist *h, double v)
{
    size_t i = 0;

    if (isnan(v))
        return;
    while (i < h->nbounds && i < METRICS_BUCKETS_MAX && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
}

int
metrics_finish(struct metrics *m)
{
    struct strbuf *b = m->out;

    if (m->err)
        return m->err;
    /* every line written ends in '\n'; an empty exposition is valid as it is */
    if (b->len > m->start && b->p[b->len - 1] != '\n')
        return metrics_fail(m, -EINVAL);
    return 0;
}

/* --- /proc --------------------------------------------------------------------------- */

static int
metrics_field_u64(const char *p, const char *end, uint64_t *ret)
{
    /* fields that can be negative in theory (none of the ones read) would fail here */
    return util_parse_u64(p, (size_t)(end - p), ret) < 0 ? -EBADMSG : 0;
}

int
metrics_parse_proc_stat(const char *buf, size_t len, struct metrics_proc_stat *ret)
{
    /* 1-based field numbers from proc(5); the command is field 2 */
    static const struct {
        unsigned field;
        size_t off;
    } want[] = {
        { 14, offsetof(struct metrics_proc_stat, utime_ticks) },
        { 15, offsetof(struct metrics_proc_stat, stime_ticks) },
        { 22, offsetof(struct metrics_proc_stat, start_ticks) },
        { 23, offsetof(struct metrics_proc_stat, vsize_bytes) },
        { 24, offsetof(struct metrics_proc_stat, rss_pages) },
    };
    const char *p = buf, *end = buf + len, *close = NULL;
    unsigned field = 2;
    size_t w = 0;
    struct metrics_proc_stat st;

    for (const char *q = buf; q < end; q++)
        if (*q == ')')
            close = q;
    if (!close)
        return -EBADMSG;
    p = close + 1;
    memset(&st, 0, sizeof(st));
    while (w < N_ELEMS(want)) {
        const char *f;
        if (p >= end || *p != ' ')
            return -EBADMSG;
        f = ++p;
        while (p < end && *p != ' ' && *p != '\n')
            p++;
        field++;
        if (field == want[w].field) {
            uint64_t v;
            if (metrics_field_u64(f, p, &v) < 0)
                return -EBADMSG;
            memcpy((char *)&st + want[w].off, &v, sizeof(v));
            w++;
        }
    }
    *ret = st;
    return 0;
}

int
metrics_parse_btime(const char *buf, size_t len, uint64_t *ret)
{
    const char *p = buf, *end = buf + len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if ((size_t)(le - p) > 6 && memcmp(p, "btime ", 6) == 0)
            return util_parse_u64(p + 6, (size_t)(le - p - 6), ret) < 0 ? -EBADMSG : 0;
        p = le + 1;
    }
    return -EBADMSG;
}
