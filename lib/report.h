#ifndef FLOODGATE_REPORT_H
#define FLOODGATE_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "engine.h"
#include "util.h"

/*
 * The picture of a replay (floodgated --replay --html): per rule, the identities whose
 * sliding value went highest, each with its value over log time against the rule's
 * threshold and its trips; the host-wide rate of counted messages; the evidence of every
 * trip (subjects, client addresses, recipient domains). One self-contained HTML page.
 *
 * Pure: it reads the engine (values through the usertable, stats, the clock) and the
 * events its hook hands over, and renders into a strbuf. Every bound is fixed: the memory
 * does not grow with the log (about REPORT_TRACK * 2.6 KiB per rule, 2.5 MiB of evidence,
 * the trips kept with theirs).
 */

#define REPORT_POINTS    512   /* samples per series; the step doubles when they are full */
#define REPORT_STEP_MS   10000 /* the first step of log time between two samples */
#define REPORT_TRACK     32    /* identities followed per rule */
#define REPORT_SHOW      10    /* of them, charted per rule */
#define REPORT_MARKS     8     /* trip moments kept per identity and rule */
#define REPORT_TRIPS_MAX 500   /* trips listed with their evidence; later ones only counted */
#define REPORT_SUBJECTS  4     /* evidence kept per identity and rule: distinct values, */
#define REPORT_IPS       4     /*   the least recently seen replaced first */
#define REPORT_DOMAINS   6
#define REPORT_TEXT_MAX  160 /* bytes kept of one subject (cut), address or domain */
#define REPORT_EV_SETS   256 /* evidence kept for the 1024 identities counted last */
#define REPORT_EV_WAYS   4
#define REPORT_HTML_MAX  (64u << 20) /* the page never grows past this */

/* A value that was not sampled (the identity was not followed yet, or was evicted). */
#define REPORT_NONE UINT32_MAX

struct report_sample {
    uint32_t count; /* 0: empty slot */
    uint16_t len;
    int64_t last_ms;
    char text[REPORT_TEXT_MAX];
};

struct report_evidence {
    struct report_sample subject[REPORT_SUBJECTS];
    struct report_sample ip[REPORT_IPS];
    struct report_sample domain[REPORT_DOMAINS];
    uint64_t messages; /* counted since the identity took its evidence slot */
};

struct report;

/*
 * Owned; NULL when out of memory or @cfg has no rules. Borrows @cfg for its life (the
 * engine's). Install report_hook(r) in engine_params.hook before engine_new().
 */
struct report *report_new(const struct config *cfg);
void report_free(struct report *r); /* NULL-safe */
const struct engine_hook *report_hook(struct report *r);

/*
 * After each record the engine was fed (its @n notices at @notes): trips are kept, and
 * every step of log time the clock passed is sampled. report_finish() samples the last,
 * partial step.
 */
void report_step(struct report *r, struct engine *e, const struct engine_notice *notes, size_t n);
void report_finish(struct report *r, struct engine *e);

/* What the page says about the run (borrowed, shown escaped). */
struct report_meta {
    const char *const *files;
    size_t nfiles;
    uint64_t lines;
};

/* Append the page to @out: 0, or -E2BIG (past @out's cap) / -ENOMEM. */
int report_render(const struct report *r, struct engine *e, const struct report_meta *m,
                  struct strbuf *out);

/* For tests: the sampling step now, the points filled, the identities followed by @rule. */
int64_t report_step_ms(const struct report *r);
size_t report_points(const struct report *r);
size_t report_followed(const struct report *r, size_t rule);

#endif
