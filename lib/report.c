/*
 * report.c - the HTML picture of a replay: who sent what, against which threshold.
 *
 * Following. The engine's hook tells us of every message counted for an identity, right
 * before its rules are evaluated: for each rule of its scope we read its sliding value
 * (usertable_sum on the rule's series) and keep, per rule, the REPORT_TRACK identities that
 * reached the highest peaks. An identity whose value passed the rule's threshold ranks
 * above every one that did not, so a set full of busy but legitimate senders never
 * crowds out an offender. Rules are only evaluated on these calls (an arrival), so every
 * identity that can trip is seen at the moment it does. A followed identity's line starts
 * when it entered the set; before that it was below every followed one.
 *
 * Sampling. The log time is cut into steps (REPORT_STEP_MS first); when the clock passes
 * the end of a step, the value of every followed identity is read at that time and the
 * outbound messages of the step are counted. When REPORT_POINTS samples are full, pairs
 * are merged (the higher value, the sum of messages) and the step doubles, so any span of
 * log time fits and memory stays fixed. A value is read after the record that moved the
 * clock past the step, so it may hold that one record early.
 *
 * Evidence. For the identities past half the threshold of a rule, counted most recently
 * (REPORT_EV_SETS sets of REPORT_EV_WAYS, the least recently counted of a set making
 * room), the subjects, client
 * addresses and recipient domains of their messages are kept: a few distinct values each,
 * with counts, the least recently seen value making room. An identity sending a flood is
 * counted all the time and keeps its slot. A trip copies its evidence as it stood then.
 *
 * Rendering. Every piece of log text (identities, subjects, addresses, domains, times,
 * rule names) goes through strbuf_append_html and lands in element content only; the
 * page has no script, no external resource and a Content-Security-Policy that allows
 * neither, so a hostile subject stays text.
 */
#include "report.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct report_series {
    bool used;
    bool over; /* its value passed the rule's threshold (or it tripped) */
    struct usertable_ref ref;
    char id[USERTABLE_KEY_MAX];
    uint64_t peak;
    int64_t peak_ms;
    uint64_t threshold; /* the trip's (an account's override factor applied), else the rule's */
    uint64_t ntrips;
    size_t nmarks;
    int64_t mark_ms[REPORT_MARKS];
    uint64_t mark_value[REPORT_MARKS];
    uint32_t v[REPORT_POINTS];
};

struct report_rule {
    const struct config_rule *rule;
    size_t series;           /* index among the series of the rule's scope */
    struct report_series *s; /* REPORT_TRACK */
    size_t nused;
    size_t victim; /* once full: the one a newcomer must outrank */
    uint64_t trips;
};

struct report_trip {
    size_t rule;
    enum usertable_scope scope;
    char id[USERTABLE_KEY_MAX];
    char at[20];
    int64_t at_ms;
    uint64_t line, value, threshold;
    int64_t window_ms;
    bool has_ev;
    struct report_evidence ev;
};

/* The evidence of recently counted identities: REPORT_EV_WAYS-way sets, least recent out. */
struct report_ev_slot {
    bool used;
    struct usertable_ref ref;
    int64_t last_ms;
    struct report_evidence ev;
};

struct report {
    const struct config *cfg;
    struct report_ev_slot *evc; /* REPORT_EV_SETS * REPORT_EV_WAYS */
    bool scope_ruled[SCOPE__MAX];
    struct engine_hook hook;
    struct report_rule rule[CONFIG_RULES_MAX];
    size_t nrules;
    int64_t t0; /* start of the first step; INT64_MIN before the first timed record */
    int64_t step_ms;
    size_t npoints;
    uint64_t host[REPORT_POINTS]; /* outbound messages counted in each step */
    uint64_t outbound_seen;       /* the engine's count after the previous record */
    uint64_t outbound_mark;       /* ... at the last sample */
    struct report_trip *trips;
    size_t ntrips, captrips;
    uint64_t trips_total;
};

/* --- following ---------------------------------------------------------------------- */

static bool
report_ref_eq(struct usertable_ref a, struct usertable_ref b)
{
    return a.slot == b.slot && a.gen == b.gen;
}

/* Does (over, peak) of @a rank above that of @b? Passing the threshold first. */
static bool
report_ranks_above(bool over_a, uint64_t peak_a, bool over_b, uint64_t peak_b)
{
    return over_a != over_b ? over_a : peak_a > peak_b;
}

static void
report_find_victim(struct report_rule *rr)
{
    size_t v = 0;

    for (size_t i = 1; i < REPORT_TRACK; i++)
        if (report_ranks_above(rr->s[v].over, rr->s[v].peak, rr->s[i].over, rr->s[i].peak))
            v = i;
    rr->victim = v;
}

static struct report_series *
report_find(struct report_rule *rr, struct usertable_ref ref)
{
    for (size_t i = 0; i < rr->nused; i++)
        if (report_ref_eq(rr->s[i].ref, ref))
            return &rr->s[i];
    return NULL;
}

/* Take a slot for @ent (free, its own older entry if it was evicted and came back, or the
 * victim's); NULL when it ranks below every followed identity. */
static struct report_series *
report_admit(struct report_rule *rr, const struct usertable_entry *ent, struct usertable_ref ref,
             bool over, uint64_t v)
{
    const char *key = usertable_entry_key(ent);
    struct report_series *s;

    if (rr->nused == REPORT_TRACK &&
        !report_ranks_above(over, v, rr->s[rr->victim].over, rr->s[rr->victim].peak))
        return NULL;
    for (size_t i = 0; i < rr->nused; i++) {
        s = &rr->s[i];
        if (strcmp(s->id, key) == 0) {
            s->ref = ref; /* evicted from the table and back: its line goes on */
            return s;
        }
    }
    s = rr->nused < REPORT_TRACK ? &rr->s[rr->nused++] : &rr->s[rr->victim];
    memset(s, 0, offsetof(struct report_series, v));
    for (size_t i = 0; i < REPORT_POINTS; i++)
        s->v[i] = REPORT_NONE;
    s->used = true;
    s->ref = ref;
    s->threshold = rr->rule->above;
    (void)util_copy_str(s->id, sizeof(s->id), fg_str_make(key, strlen(key)));
    return s;
}

/* Keep @text among @n samples: counted when known, else in the least recently seen slot. */
static void
report_sample_add(struct report_sample *smp, size_t n, struct fg_str text, int64_t now_ms)
{
    size_t len = text.len < REPORT_TEXT_MAX ? text.len : REPORT_TEXT_MAX;
    size_t old = 0;

    if (!text.len)
        return;
    /* a cut text ends on a whole UTF-8 sequence when it was one */
    if (len < text.len)
        for (size_t k = 0; k < 3 && len > 0 && ((unsigned char)text.p[len] & 0xc0) == 0x80; k++)
            len--;
    for (size_t i = 0; i < n; i++) {
        if (smp[i].count && smp[i].len == len && memcmp(smp[i].text, text.p, len) == 0) {
            smp[i].count++;
            smp[i].last_ms = now_ms;
            return;
        }
        if (smp[i].count == 0 || (smp[old].count && smp[i].last_ms < smp[old].last_ms))
            old = i;
        if (smp[i].count == 0)
            break;
    }
    smp[old].count = 1;
    smp[old].len = (uint16_t)len;
    smp[old].last_ms = now_ms;
    memcpy(smp[old].text, text.p, len);
}

static void
report_evidence_add(struct report_evidence *ev, const struct exim_event *e, int64_t now_ms)
{
    struct fg_str addr;
    size_t pos = 0;

    ev->messages++;
    report_sample_add(ev->subject, REPORT_SUBJECTS, e->subject, now_ms);
    report_sample_add(ev->ip, REPORT_IPS, e->host_ip, now_ms);
    /* the domains of the first few recipients: enough to see where a flood goes */
    for (size_t k = 0; k < 8 && eximlog_next_addr(e->rcpts, &pos, &addr) > 0; k++) {
        size_t at = addr.len;
        while (at > 0 && addr.p[at - 1] != '@')
            at--;
        if (at > 0)
            report_sample_add(ev->domain, REPORT_DOMAINS, fg_str_make(addr.p + at, addr.len - at),
                              now_ms);
    }
}

static size_t
report_ev_set(struct usertable_ref ref)
{
    return ((ref.slot * 0x9e3779b1u) >> 16) % REPORT_EV_SETS * REPORT_EV_WAYS;
}

/* The evidence kept for @ref, NULL when none (it was not counted lately). */
static const struct report_evidence *
report_ev_find(const struct report *r, struct usertable_ref ref)
{
    const struct report_ev_slot *set = r->evc + report_ev_set(ref);

    for (size_t w = 0; w < REPORT_EV_WAYS; w++)
        if (set[w].used && report_ref_eq(set[w].ref, ref))
            return &set[w].ev;
    return NULL;
}

/* The evidence of @ref, taking the set's free or least recently counted slot if needed. */
static struct report_evidence *
report_ev_get(struct report *r, struct usertable_ref ref, int64_t now_ms)
{
    struct report_ev_slot *set = r->evc + report_ev_set(ref), *old = set;

    for (size_t w = 0; w < REPORT_EV_WAYS; w++) {
        if (set[w].used && report_ref_eq(set[w].ref, ref)) {
            set[w].last_ms = now_ms;
            return &set[w].ev;
        }
        if (!set[w].used || (old->used && set[w].last_ms < old->last_ms))
            old = &set[w];
    }
    memset(old, 0, sizeof(*old));
    old->used = true;
    old->ref = ref;
    old->last_ms = now_ms;
    return &old->ev;
}

static void
report_counted(void *ctx, const struct usertable *t, const struct usertable_entry *ent,
               const struct exim_event *ev, int64_t now_ms)
{
    struct report *r = ctx;
    enum usertable_scope scope = usertable_entry_scope(ent);
    struct usertable_ref ref = usertable_ref(t, ent);
    bool hot = false;

    if (!r->scope_ruled[scope])
        return;
    for (size_t k = 0; k < r->nrules; k++) {
        struct report_rule *rr = &r->rule[k];
        struct report_series *s;
        bool over, admitted = false;
        uint64_t v;

        if (rr->rule->scope != scope)
            continue;
        v = usertable_sum(t, ent, rr->series, now_ms);
        over = v > rr->rule->above;
        hot |= v > rr->rule->above / 2;
        /* a full set's members all rank at or above its victim, so one that does not
         * outrank it cannot be new and cannot raise a member's peak: most counts end here */
        if (rr->nused == REPORT_TRACK &&
            !report_ranks_above(over, v, rr->s[rr->victim].over, rr->s[rr->victim].peak))
            continue;
        s = report_find(rr, ref);
        if (!s) {
            if (v == 0 || !(s = report_admit(rr, ent, ref, over, v)))
                continue;
            admitted = true;
        }
        if (v > s->peak) {
            s->peak = v;
            s->peak_ms = now_ms;
        }
        s->over |= over;
        if (rr->nused == REPORT_TRACK && (admitted || s == &rr->s[rr->victim]))
            report_find_victim(rr);
    }
    /* evidence only for those past half a threshold: every trip, little work */
    if (hot)
        report_evidence_add(report_ev_get(r, ref, now_ms), ev, now_ms);
}

/* --- sampling ----------------------------------------------------------------------- */

static uint32_t
report_merge(uint32_t a, uint32_t b)
{
    if (a == REPORT_NONE)
        return b;
    if (b == REPORT_NONE)
        return a;
    return a > b ? a : b;
}

/* Pairs of samples become one (the higher value, the sum of messages); the step doubles. */
static void
report_halve(struct report *r)
{
    size_t half = r->npoints / 2;

    for (size_t k = 0; k < r->nrules; k++)
        for (size_t i = 0; i < r->rule[k].nused; i++) {
            uint32_t *v = r->rule[k].s[i].v;
            for (size_t j = 0; j < half; j++)
                v[j] = report_merge(v[2 * j], v[2 * j + 1]);
            for (size_t j = half; j < REPORT_POINTS; j++)
                v[j] = REPORT_NONE;
        }
    for (size_t j = 0; j < half; j++)
        r->host[j] = r->host[2 * j] + r->host[2 * j + 1];
    memset(r->host + half, 0, (REPORT_POINTS - half) * sizeof(r->host[0]));
    r->npoints = half;
    r->step_ms *= 2;
}

/* Sample point r->npoints: values at log time @at_ms, the messages since the last one. */
static void
report_sample(struct report *r, struct engine *e, int64_t at_ms)
{
    struct usertable *t = engine_table(e);
    size_t i = r->npoints;

    for (size_t k = 0; k < r->nrules; k++)
        for (size_t j = 0; j < r->rule[k].nused; j++) {
            struct report_series *s = &r->rule[k].s[j];
            struct usertable_entry *ent = usertable_deref(t, s->ref);
            uint64_t v = ent ? usertable_sum(t, ent, r->rule[k].series, at_ms) : REPORT_NONE;
            s->v[i] = v < REPORT_NONE ? (uint32_t)v : (ent ? REPORT_NONE - 1 : REPORT_NONE);
        }
    r->host[i] = r->outbound_seen - r->outbound_mark;
    r->outbound_mark = r->outbound_seen;
    r->npoints++;
}

/* The end of step @i (its sample's time). */
static int64_t
report_point_ms(const struct report *r, size_t i)
{
    return r->t0 + (int64_t)(i + 1) * r->step_ms;
}

static void
report_trip(struct report *r, const struct engine_notice *n)
{
    size_t k = n->verdict.rule;
    struct report_series *s = NULL;
    const struct report_evidence *ev = report_ev_find(r, n->ref);
    struct report_trip *t;

    if (k >= r->nrules)
        return;
    r->rule[k].trips++;
    r->trips_total++;
    s = report_find(&r->rule[k], n->ref);
    if (s) {
        s->over = true;
        s->threshold = n->verdict.threshold;
        if (s->nmarks < REPORT_MARKS) {
            s->mark_ms[s->nmarks] = n->at_ms;
            s->mark_value[s->nmarks++] = n->verdict.value;
        }
        s->ntrips++;
    }
    if (r->ntrips == REPORT_TRIPS_MAX)
        return;
    if (r->ntrips == r->captrips) {
        size_t cap = r->captrips ? r->captrips * 2 : 16;
        if (cap > REPORT_TRIPS_MAX)
            cap = REPORT_TRIPS_MAX;
        t = realloc(r->trips, cap * sizeof(*t));
        if (!t)
            return; /* listed as not kept: the count is still right */
        r->trips = t;
        r->captrips = cap;
    }
    t = &r->trips[r->ntrips++];
    memset(t, 0, sizeof(*t));
    t->rule = k;
    t->scope = n->scope;
    memcpy(t->id, n->id, sizeof(t->id));
    memcpy(t->at, n->at, sizeof(t->at));
    t->at_ms = n->at_ms;
    t->line = n->line;
    t->value = n->verdict.value;
    t->threshold = n->verdict.threshold;
    t->window_ms = n->verdict.window_ms;
    if (ev) {
        t->ev = *ev;
        t->has_ev = true;
    }
}

void
report_step(struct report *r, struct engine *e, const struct engine_notice *notes, size_t n)
{
    int64_t now = engine_now_ms(e);

    for (size_t i = 0; i < n; i++)
        if (notes[i].kind == ENGINE_TRIP)
            report_trip(r, &notes[i]);
    if (now != 0 || r->t0 != INT64_MIN) {
        if (r->t0 == INT64_MIN) {
            int64_t m = now % r->step_ms;
            r->t0 = now - (m < 0 ? m + r->step_ms : m);
        }
        /* bounded: each pass samples one point or halves, and halving doubles the step */
        while (now >= report_point_ms(r, r->npoints)) {
            if (r->npoints == REPORT_POINTS)
                report_halve(r);
            else
                report_sample(r, e, report_point_ms(r, r->npoints));
        }
    }
    r->outbound_seen = engine_stats(e)->outbound;
}

void
report_finish(struct report *r, struct engine *e)
{
    r->outbound_seen = engine_stats(e)->outbound;
    if (r->t0 == INT64_MIN)
        return;
    if (r->npoints == REPORT_POINTS)
        report_halve(r);
    /* the step the clock is in, sampled at the clock: the last point */
    report_sample(r, e, engine_now_ms(e));
}

/* --- life --------------------------------------------------------------------------- */

struct report *
report_new(const struct config *cfg)
{
    struct policy *p;
    struct report *r;

    if (!cfg || cfg->nrules == 0)
        return NULL;
    p = policy_new(cfg);
    r = calloc(1, sizeof(*r));
    if (!p || !r)
        goto fail;
    r->cfg = cfg;
    r->nrules = cfg->nrules;
    r->t0 = INT64_MIN;
    r->step_ms = REPORT_STEP_MS;
    r->hook.counted = report_counted;
    r->hook.ctx = r;
    r->evc = calloc(REPORT_EV_SETS * REPORT_EV_WAYS, sizeof(*r->evc));
    if (!r->evc)
        goto fail;
    for (size_t k = 0; k < r->nrules; k++) {
        r->scope_ruled[cfg->rules[k].scope] = true;
        r->rule[k].rule = &cfg->rules[k];
        r->rule[k].series = policy_rule_series(p, k);
        r->rule[k].s = calloc(REPORT_TRACK, sizeof(struct report_series));
        if (!r->rule[k].s)
            goto fail;
    }
    policy_free(p);
    return r;
fail:
    policy_free(p);
    report_free(r);
    return NULL;
}

void
report_free(struct report *r)
{
    if (!r)
        return;
    for (size_t k = 0; k < r->nrules; k++)
        free(r->rule[k].s);
    free(r->trips);
    free(r->evc);
    free(r);
}

const struct engine_hook *
report_hook(struct report *r)
{
    return &r->hook;
}

int64_t
report_step_ms(const struct report *r)
{
    return r->step_ms;
}

size_t
report_points(const struct report *r)
{
    return r->npoints;
}

size_t
report_followed(const struct report *r, size_t rule)
{
    return rule < r->nrules ? r->rule[rule].nused : 0;
}

/* --- rendering ---------------------------------------------------------------------- */

/* Chart geometry (SVG user units). */
#define RW  760.0
#define RH  170.0
#define RPL 64.0
#define RPR 16.0
#define RPT 12.0
#define RPB 28.0
#define RPW (RW - RPL - RPR)
#define RPH (RH - RPT - RPB)

struct report_out {
    struct strbuf *b;
    int err;
};

static void
out_s(struct report_out *o, const char *s)
{
    if (o->err == 0)
        o->err = strbuf_appends(o->b, s);
}

/* Our own text and numbers only (never log text), at most 511 bytes a call: longer is a
 * bug, reported as -E2BIG rather than cut. */
static void FG_PRINTF(2, 3) out_f(struct report_out *o, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        if (o->err == 0)
            o->err = -E2BIG;
        return;
    }
    out_s(o, buf);
}

/* Log text: escaped, in element content. */
static void
out_h(struct report_out *o, const char *p, size_t len)
{
    if (o->err == 0)
        o->err = strbuf_append_html(o->b, p, len);
}

static void
out_hs(struct report_out *o, const char *s)
{
    out_h(o, s, strlen(s));
}

static void
out_time(struct report_out *o, int64_t ms)
{
    char t[24];

    util_format_time(ms, t, sizeof(t));
    out_hs(o, t);
}

static const char report_css[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#1d2327;"
    "background:#fff;padding:0 1em}"
    "h1{font-size:1.5em}h2{font-size:1.25em;margin-top:2em;border-bottom:2px solid #ccd}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccd;padding:.2em .5em;"
    "vertical-align:top;text-align:left}th{background:#eef}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}"
    "code{font:13px ui-monospace,monospace;overflow-wrap:anywhere;unicode-bidi:isolate}"
    "figure{margin:1em 0 1.5em}figcaption{margin-bottom:.2em}"
    ".meta{color:#555}.over{color:#b00;font-weight:600}"
    "svg{display:block;max-width:100%;height:auto;font:11px system-ui,sans-serif}"
    "svg .plot{fill:#fafbff;stroke:#ccd}svg .grid{stroke:#e2e4ee}"
    "svg .value{fill:none;stroke:#1f5fbf;stroke-width:1.6}"
    "svg .rate{fill:#cfe0f7;stroke:#1f5fbf;stroke-width:1.2}"
    "svg .threshold{stroke:#c00;stroke-width:1.4;stroke-dasharray:6 4}"
    "svg .thr{fill:#c00}svg .tripline{stroke:#c00;stroke-opacity:.35}"
    "svg .trip{fill:#c00;stroke:#fff;stroke-width:1.2}svg .lbl{fill:#555}"
    "ul.ev{margin:0;padding-left:1.2em}q{quotes:'\\201C' '\\201D'}"
    ".small{font-size:12px;color:#555}.trips td:nth-child(3) code{overflow-wrap:normal}";

/* A round number at least @v (1, 2 or 5 times a power of ten), for the y axis. */
static uint64_t
report_nice(uint64_t v)
{
    uint64_t p = 1;

    if (v <= 1)
        return 1;
    while (p <= UINT64_MAX / 10 && p * 10 < v)
        p *= 10;
    if (v <= p)
        return p;
    if (v <= 2 * p)
        return 2 * p;
    if (v <= 5 * p)
        return 5 * p;
    return p <= UINT64_MAX / 10 ? 10 * p : v;
}

struct report_axes {
    int64_t t0, t1; /* x: log time */
    double ymax;
};

static double
report_x(const struct report_axes *a, int64_t ms)
{
    double span = (double)(a->t1 - a->t0);
    double f = span > 0 ? (double)(ms - a->t0) / span : 0;

    if (f < 0)
        f = 0;
    if (f > 1)
        f = 1;
    return RPL + f * RPW;
}

static double
report_y(const struct report_axes *a, double v)
{
    double f = a->ymax > 0 ? v / a->ymax : 0;

    if (f > 1)
        f = 1;
    return RPT + RPH - f * RPH;
}

/* The frame, y grid with labels, x labels (start, middle, end). */
static void
report_frame(struct report_out *o, const struct report_axes *a, const char *unit)
{
    out_f(o, "<rect class=\"plot\" x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\"/>", RPL,
          RPT, RPW, RPH);
    for (int g = 1; g <= 4; g++) {
        double v = a->ymax * g / 4, y = report_y(a, v);
        out_f(o, "<line class=\"grid\" x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\"/>", RPL, y,
              RPL + RPW, y);
        out_f(o, "<text class=\"lbl\" x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>",
              RPL - 4, y + 4, v);
    }
    out_f(o, "<text class=\"lbl\" x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">0</text>", RPL - 4,
          RPT + RPH + 4);
    out_f(o,
          "<text class=\"lbl\" x=\"6\" y=\"%.0f\" transform=\"rotate(-90 10 %.0f)\" "
          "text-anchor=\"middle\">%s</text>",
          RPT + RPH / 2, RPT + RPH / 2, unit);
    for (int k = 0; k <= 2; k++) {
        int64_t ms = a->t0 + (a->t1 - a->t0) / 2 * k;
        out_f(o, "<text class=\"lbl\" x=\"%.1f\" y=\"%.0f\" text-anchor=\"%s\">", report_x(a, ms),
              RH - 8,
              k == 0   ? "start"
              : k == 1 ? "middle"
                       : "end");
        out_time(o, ms);
        out_s(o, "</text>");
    }
}

/* The time of point @i, the last one at the clock (report_finish). */
static int64_t
report_point_at(const struct report *r, size_t i, int64_t last_ms)
{
    int64_t t = report_point_ms(r, i);

    return i + 1 == r->npoints && last_ms < t && last_ms >= t - r->step_ms ? last_ms : t;
}

/* The x extent of the charts: the first step's start to the last point. */
static void
report_extent(const struct report *r, int64_t last_ms, struct report_axes *a)
{
    a->t0 = r->t0;
    a->t1 = r->npoints ? report_point_at(r, r->npoints - 1, last_ms) : r->t0 + r->step_ms;
}

/* Messages a minute in step @i (the last one may be partial). */
static double
report_rate(const struct report *r, size_t i, int64_t last_ms)
{
    int64_t dur = report_point_at(r, i, last_ms) - (r->t0 + (int64_t)i * r->step_ms);

    return (double)r->host[i] * 60000.0 / (double)(dur > 1000 ? dur : 1000);
}

static void
report_host_chart(struct report_out *o, const struct report *r, int64_t last_ms)
{
    struct report_axes a;
    double peak = 0;

    report_extent(r, last_ms, &a);
    for (size_t i = 0; i < r->npoints; i++)
        if (report_rate(r, i, last_ms) > peak)
            peak = report_rate(r, i, last_ms);
    a.ymax = (double)report_nice((uint64_t)(peak * 1.1) + 1);
    out_f(o,
          "<svg class=\"host\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %.0f %.0f\" "
          "width=\"%.0f\" height=\"%.0f\"><title>outbound messages per minute</title>",
          RW, RH, RW, RH);
    report_frame(o, &a, "messages/min");
    out_f(o, "<polygon class=\"rate\" points=\"%.1f,%.1f", report_x(&a, r->t0), RPT + RPH);
    for (size_t i = 0; i < r->npoints; i++) {
        double y = report_y(&a, report_rate(r, i, last_ms));
        out_f(o, " %.1f,%.1f %.1f,%.1f", report_x(&a, r->t0 + (int64_t)i * r->step_ms), y,
              report_x(&a, report_point_at(r, i, last_ms)), y);
    }
    out_f(o, " %.1f,%.1f\"/></svg>\n", report_x(&a, a.t1), RPT + RPH);
    out_f(o, "<p class=\"small\">peak %.1f messages a minute (averaged over steps of %lld s)</p>\n",
          peak, (long long)(r->step_ms / 1000));
}

static void
report_series_chart(struct report_out *o, const struct report *r, const struct report_rule *rr,
                    const struct report_series *s, int64_t last_ms)
{
    struct report_axes a;
    uint64_t top = s->peak > s->threshold ? s->peak : s->threshold;
    bool open = false;
    double ythr;

    report_extent(r, last_ms, &a);
    a.ymax = (double)report_nice(top + top / 8 + 1);
    out_f(o,
          "<svg class=\"series\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %.0f %.0f\" "
          "width=\"%.0f\" height=\"%.0f\"><title>",
          RW, RH, RW, RH);
    out_hs(o, s->id);
    out_s(o, "</title>");
    report_frame(o, &a, window_metric_name(rr->rule->metric));
    for (size_t i = 0; i < r->npoints; i++) {
        if (s->v[i] == REPORT_NONE) {
            if (open)
                out_s(o, "\"/>");
            open = false;
            continue;
        }
        out_f(o, "%s%.1f,%.1f", open ? " " : "<polyline class=\"value\" points=\"",
              report_x(&a, report_point_at(r, i, last_ms)), report_y(&a, (double)s->v[i]));
        open = true;
    }
    if (open)
        out_s(o, "\"/>");
    ythr = report_y(&a, (double)s->threshold);
    out_f(o,
          "<line class=\"threshold\" x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\"/>"
          "<text class=\"thr\" x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">above %llu</text>",
          RPL, ythr, RPL + RPW, ythr, RPL + RPW - 4, ythr - 4, (unsigned long long)s->threshold);
    for (size_t m = 0; m < s->nmarks; m++) {
        double x = report_x(&a, s->mark_ms[m]), y = report_y(&a, (double)s->mark_value[m]);
        out_f(o, "<line class=\"tripline\" x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\"/>", x,
              RPT, x, RPT + RPH);
        out_f(o, "<circle class=\"trip\" cx=\"%.1f\" cy=\"%.1f\" r=\"5\"><title>tripped at ", x, y);
        out_time(o, s->mark_ms[m]);
        out_f(o, ": %llu &gt; %llu</title></circle>", (unsigned long long)s->mark_value[m],
              (unsigned long long)s->threshold);
    }
    out_s(o, "</svg>\n");
}

static void
report_samples(struct report_out *o, const char *what, const struct report_sample *smp, size_t n,
               bool quote)
{
    bool any = false;

    for (size_t i = 0; i < n; i++) {
        if (!smp[i].count)
            continue;
        out_s(o, any ? ", " : "<li>");
        if (!any)
            out_f(o, "%s: ", what);
        any = true;
        out_s(o, quote ? "<q><code>" : "<code>");
        out_h(o, smp[i].text, smp[i].len);
        out_s(o, quote ? "</code></q>" : "</code>");
        if (smp[i].count > 1)
            out_f(o, " &#215;%u", smp[i].count);
    }
    if (any)
        out_s(o, "</li>");
}

static void
report_evidence_html(struct report_out *o, const struct report_evidence *ev)
{
    out_f(o, "<ul class=\"ev\"><li>messages seen: %llu</li>", (unsigned long long)ev->messages);
    report_samples(o, "subjects", ev->subject, REPORT_SUBJECTS, true);
    report_samples(o, "client addresses", ev->ip, REPORT_IPS, false);
    report_samples(o, "recipient domains", ev->domain, REPORT_DOMAINS, false);
    out_s(o, "</ul>");
}

static int
report_rank_cmp(const void *pa, const void *pb)
{
    const struct report_series *a = *(const struct report_series *const *)pa;
    const struct report_series *b = *(const struct report_series *const *)pb;

    if ((a->ntrips > 0) != (b->ntrips > 0))
        return a->ntrips > 0 ? -1 : 1;
    if (a->peak != b->peak)
        return a->peak > b->peak ? -1 : 1;
    return strcmp(a->id, b->id);
}

static void
report_rule_html(struct report_out *o, const struct report *r, size_t k, struct engine *e,
                 int64_t last_ms)
{
    const struct report_rule *rr = &r->rule[k];
    const struct report_series *order[REPORT_TRACK];
    size_t n = rr->nused, shown = n < REPORT_SHOW ? n : REPORT_SHOW;
    char acct[ATTRIB_ACCOUNT_MAX];

    for (size_t i = 0; i < n; i++)
        order[i] = &rr->s[i];
    qsort(order, n, sizeof(order[0]), report_rank_cmp);
    out_f(o, "<section class=\"rule\" id=\"rule-%zu\"><h2>rule <code>", k);
    out_hs(o, rr->rule->name);
    out_f(o, "</code></h2>\n<p>%s %s over %lld s, trips above %llu; %llu trip%s. ",
          usertable_scope_name(rr->rule->scope), window_metric_name(rr->rule->metric),
          (long long)(rr->rule->window_ms / 1000), (unsigned long long)rr->rule->above,
          (unsigned long long)rr->trips, rr->trips == 1 ? "" : "s");
    if (n == 0) {
        out_s(o, "No identity of this scope sent anything counted.</p></section>\n");
        return;
    }
    out_f(o, "The %zu highest of the %zu identities followed:</p>\n", shown, n);
    for (size_t i = 0; i < shown; i++) {
        const struct report_series *s = order[i];
        engine_account_of(e, rr->rule->scope, s->id, acct, sizeof(acct));
        out_f(o, "<figure class=\"ident\"><figcaption>%zu. <code class=\"id\">", i + 1);
        out_hs(o, s->id);
        out_s(o, "</code> <span class=\"meta\">");
        if (acct[0] && strcmp(acct, s->id) != 0) {
            out_s(o, "account <code>");
            out_hs(o, acct);
            out_s(o, "</code>, ");
        }
        out_f(o, "peak <span class=\"%s\">%llu</span> at ", s->peak > s->threshold ? "over" : "",
              (unsigned long long)s->peak);
        out_time(o, s->peak_ms);
        if (s->ntrips)
            out_f(o, ", <span class=\"over\">tripped %llu&#215;</span>",
                  (unsigned long long)s->ntrips);
        out_s(o, "</span></figcaption>\n");
        report_series_chart(o, r, rr, s, last_ms);
        out_s(o, "</figure>\n");
    }
    out_s(o, "</section>\n");
}

static void
report_summary_html(struct report_out *o, const struct report *r)
{
    out_s(o, "<table class=\"rules\"><tr><th>rule</th><th>scope, metric, window</th>"
             "<th>above</th><th>trips</th><th>lowest trip value</th>"
             "<th>highest peak that did not trip</th></tr>\n");
    for (size_t k = 0; k < r->nrules; k++) {
        const struct report_rule *rr = &r->rule[k];
        uint64_t low = UINT64_MAX, calm = 0;
        for (size_t i = 0; i < rr->nused; i++) {
            const struct report_series *s = &rr->s[i];
            for (size_t m = 0; m < s->nmarks; m++)
                if (s->mark_value[m] < low)
                    low = s->mark_value[m];
            if (s->ntrips == 0 && s->peak > calm)
                calm = s->peak;
        }
        out_f(o, "<tr><td><a href=\"#rule-%zu\"><code>", k);
        out_hs(o, rr->rule->name);
        out_f(o,
              "</code></a></td><td>%s %s %lld s</td><td class=\"n\">%llu</td>"
              "<td class=\"n\">%llu</td>",
              usertable_scope_name(rr->rule->scope), window_metric_name(rr->rule->metric),
              (long long)(rr->rule->window_ms / 1000), (unsigned long long)rr->rule->above,
              (unsigned long long)rr->trips);
        if (low == UINT64_MAX)
            out_s(o, "<td class=\"n\">-</td>");
        else
            out_f(o, "<td class=\"n\">%llu</td>", (unsigned long long)low);
        out_f(o, "<td class=\"n\">%llu</td></tr>\n", (unsigned long long)calm);
    }
    out_s(o, "</table>\n");
}

static void
report_trips_html(struct report_out *o, const struct report *r)
{
    out_f(o, "<h2 id=\"trips\">trips (%llu)</h2>\n", (unsigned long long)r->trips_total);
    if (r->trips_total == 0) {
        out_s(o, "<p>No rule tripped.</p>\n");
        return;
    }
    if (r->trips_total > r->ntrips)
        out_f(o, "<p>The first %zu are listed.</p>\n", r->ntrips);
    out_s(o, "<table class=\"trips\"><tr><th>log time</th><th>line</th><th>rule</th>"
             "<th>identity</th><th>value</th><th>evidence</th></tr>\n");
    for (size_t i = 0; i < r->ntrips; i++) {
        const struct report_trip *t = &r->trips[i];
        out_s(o, "<tr><td>");
        out_hs(o, t->at);
        out_f(o, "</td><td class=\"n\">%llu</td><td><code>", (unsigned long long)t->line);
        out_hs(o, r->rule[t->rule].rule->name);
        out_f(o, "</code></td><td>%s <code>", usertable_scope_name(t->scope));
        out_hs(o, t->id);
        out_f(o, "</code></td><td class=\"n\">%llu &gt; %llu in %lld s</td><td>",
              (unsigned long long)t->value, (unsigned long long)t->threshold,
              (long long)(t->window_ms / 1000));
        if (t->has_ev)
            report_evidence_html(o, &t->ev);
        else
            out_s(o, "not kept");
        out_s(o, "</td></tr>\n");
    }
    out_s(o, "</table>\n");
}

int
report_render(const struct report *r, struct engine *e, const struct report_meta *m,
              struct strbuf *out)
{
    const struct engine_stats *st = engine_stats(e);
    struct report_out o = { .b = out };
    int64_t last_ms = engine_now_ms(e);

    out_s(&o, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>"
              "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
              "style-src 'unsafe-inline'\"/>"
              "<title>floodgate replay report</title><style>");
    out_s(&o, report_css);
    out_s(&o, "</style></head>\n<body>\n<h1>floodgate replay report</h1>\n<p>");
    for (size_t i = 0; m && i < m->nfiles; i++) {
        out_s(&o, i ? ", <code>" : "<code>");
        out_hs(&o, m->files[i]);
        out_s(&o, "</code>");
    }
    out_f(&o, "</p>\n<p>%llu lines, %llu records, %llu outbound messages",
          (unsigned long long)(m ? m->lines : 0), (unsigned long long)st->records,
          (unsigned long long)st->outbound);
    if (r->t0 != INT64_MIN) {
        out_s(&o, ", log time ");
        out_time(&o, r->t0);
        out_s(&o, " to ");
        out_time(&o, last_ms);
    }
    out_f(&o, "; %llu trip%s. Times are the log&#8217;s own.</p>\n",
          (unsigned long long)r->trips_total, r->trips_total == 1 ? "" : "s");
    report_summary_html(&o, r);
    if (r->t0 != INT64_MIN && r->npoints) {
        out_s(&o, "<h2>host-wide rate</h2>\n");
        report_host_chart(&o, r, last_ms);
        for (size_t k = 0; k < r->nrules; k++)
            report_rule_html(&o, r, k, e, last_ms);
    }
    report_trips_html(&o, r);
    out_f(&o,
          "<p class=\"small\">Each chart is one identity&#8217;s sliding value, read every %lld s "
          "of log time (the higher of two merged samples once more than %d were taken); ",
          (long long)(r->step_ms / 1000), REPORT_POINTS);
    out_f(&o,
          "the dashed line is the rule&#8217;s threshold (an account&#8217;s override applied once "
          "it tripped), dots are trips. A line starts when the identity became one of the %d "
          "followed per rule. Evidence: up to %d subjects, %d client addresses and %d recipient "
          "domains per identity past half a threshold, the most recently seen kept, for the "
          "%d such identities counted last.</p>\n</body></html>\n",
          REPORT_TRACK, REPORT_SUBJECTS, REPORT_IPS, REPORT_DOMAINS,
          REPORT_EV_SETS * REPORT_EV_WAYS);
    return o.err;
}
