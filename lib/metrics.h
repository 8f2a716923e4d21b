#ifndef FLOODGATE_METRICS_H
#define FLOODGATE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/*
 * lib/metrics: Prometheus text exposition, format 0.0.4 (alerting.md §6.4). Pure: values in,
 * text out into a capped strbuf. A family (one metric name) is opened with its HELP and
 * TYPE, then takes its samples; opening the next family closes the previous one, so the
 * samples of a metric stay together and HELP/TYPE appear once. Errors are sticky: the
 * first one is kept and every later call does nothing, so a formatter checks once, in
 * metrics_finish().
 */

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define METRICS_NAME_MAX     128 /* metric and label names, longer ones are refused */
#define METRICS_LABELS_MAX   8   /* labels per sample, "le" included */
#define METRICS_BUCKETS_MAX  16  /* histogram upper bounds, +Inf excluded */

enum metrics_type {
    METRICS_COUNTER = 0, /* name must end in _total */
    METRICS_GAUGE,
    METRICS_HISTOGRAM, /* name must not end in _bucket, _sum, _count or _total */
};

struct metrics_label {
    const char *name;  /* [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" */
    const char *value; /* any UTF-8; \ " and newline are escaped */
};

/*
 * A histogram's data: @counts[i] observations in (bounds[i-1], bounds[i]] (not cumulative),
 * @counts[nbounds] those above the last bound. Bounds strictly increasing, finite.
 */
struct metrics_hist {
    const double *bounds;
    size_t nbounds; /* at most METRICS_BUCKETS_MAX */
    uint64_t counts[METRICS_BUCKETS_MAX + 1];
    double sum;
};

/* The builder; plain state, embedded by the caller. Keeps @out until metrics_finish(). */
struct metrics {
    struct strbuf *out;
    size_t start; /* where this exposition begins in @out */
    char family[METRICS_NAME_MAX + 1];
    enum metrics_type type;
    int err; /* first error, 0 while none */
};

/* Start an exposition appended to @out (borrowed until metrics_finish()). */
void metrics_init(struct metrics *m, struct strbuf *out);

/*
 * Open a family: writes "# HELP name help" (help escaped: \ and newline) and
 * "# TYPE name type". -EINVAL for a bad name, a counter not ending in _total, a histogram
 * with a reserved suffix; -EEXIST when the family was already written in this exposition.
 */
int metrics_family(struct metrics *m, const char *name, enum metrics_type type, const char *help);

/*
 * One sample of the open counter or gauge. @labels may be NULL when @nlabels is 0.
 * Integral values print exactly (no exponent); +Inf, -Inf and NaN as Prometheus spells
 * them. -EINVAL (no open family, a histogram, a bad label name, too many labels, a negative
 * or NaN counter), -E2BIG (over the buffer's cap).
 */
int metrics_sample(struct metrics *m, const struct metrics_label *labels, size_t nlabels,
                   double value);
/* The same for an exact 64-bit count (counters past 2^53 keep every digit). */
int metrics_sample_u64(struct metrics *m, const struct metrics_label *labels, size_t nlabels,
                       uint64_t value);

/*
 * One series of the open histogram: name_bucket{...,le="b"} cumulative for every bound
 * and le="+Inf", then name_sum and name_count. -EINVAL as above, or bad bounds.
 */
int metrics_histogram(struct metrics *m, const struct metrics_label *labels, size_t nlabels,
                      const struct metrics_hist *h);

/* Count @v into @h (bounds must be set). NaN is ignored. */
void metrics_hist_observe(struct metrics_hist *h, double v);

/*
 * End the exposition: returns 0 (the text in the strbuf ends with a newline, or is empty)
 * or the first error any call met.
 */
int metrics_finish(struct metrics *m);

/* --- process figures (the standard process_* exports), parsed from /proc text ---------- */

struct metrics_proc_stat {
    uint64_t utime_ticks, stime_ticks; /* fields 14 and 15 */
    uint64_t start_ticks;              /* field 22: after boot, in clock ticks */
    uint64_t vsize_bytes;              /* field 23 */
    uint64_t rss_pages;                /* field 24 */
};

/*
 * Parse the text of /proc/<pid>/stat. The command name (field 2) may hold spaces and ')',
 * so the fields are counted after its last ')'. Returns 0 or -EBADMSG.
 */
int metrics_parse_proc_stat(const char *buf, size_t len, struct metrics_proc_stat *ret);

/* The boot time ("btime N" line) of /proc/stat, in seconds since the epoch. 0 or -EBADMSG. */
int metrics_parse_btime(const char *buf, size_t len, uint64_t *ret);

#endif
