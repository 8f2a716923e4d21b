/*
 * Writes the seed corpora of the state-file harnesses (fuzz/corpus/{checkpoint,outbox,
 * dispatch}) from what the modules themselves encode: counters from the test fixture log,
 * alerts queued by trips, acts, releases and health events. Run by hand after a format
 * changes:  build-fuzz/make_seeds tests/fixtures/eximlog/generated-mixed.log fuzz/corpus
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "dispatch.h"
#include "engine.h"
#include "fuzz.h"
#include "outbox.h"
#include "state.h"

#define T0 1767225600000LL /* 2026-01-01 */

static const char *outdir;

static void
put(const char *sub, const char *name, const void *p, size_t len)
{
    char dir[512];

    (void)snprintf(dir, sizeof(dir), "%s/%s", outdir, sub);
    fuzz_write_file(dir, name, p, len);
}

static int
collect(void *ctx, const void *p, size_t n)
{
    return strbuf_append(ctx, p, n);
}

/* A dispatcher with @ntrips incidents, some acted on, released, and a health event. */
static void
dispatch_seed(struct dispatch *d, int ntrips, int64_t at)
{
    static const char *const subjects[] = { "Invoice", "Quote \"offer\"" };
    static const char *const ips[] = { "192.0.2.7", "2001:db8::1" };
    static const char *const doms[] = { "example.com", "example.org" };

    for (int i = 0; i < ntrips; i++) {
        char id[64];
        (void)snprintf(id, sizeof(id), "box%d@example.com", i);
        struct dispatch_trip t = { .rule = i % 2 ? "a" : "m",
                                   .scope = i % 2 ? SCOPE_ACCOUNT : SCOPE_MAILBOX,
                                   .id = i % 2 ? "acct1" : id,
                                   .account = "acct1",
                                   .metric = i % 2 ? "failed" : "messages",
                                   .window_ms = 60000,
                                   .value = 10 + (uint64_t)i,
                                   .limit = 2,
                                   .at_ms = at + i * 1000,
                                   .log_time = "2026-01-01 00:00:00",
                                   .subjects = subjects,
                                   .nsubjects = 2,
                                   .client_ips = ips,
                                   .nclient_ips = 2,
                                   .domains = doms,
                                   .ndomains = 2 };
        if (dispatch_tripped(d, &t) < 0)
            abort();
        if (i % 3 == 1) {
            struct dispatch_acted a = { .scope = t.scope,
                                        .id = t.id,
                                        .confirmed = 3,
                                        .frozen = 2,
                                        .failed = 1,
                                        .backend = "exim",
                                        .backend_done = CONFIG_ACTION_HOLD };
            (void)dispatch_acted(d, &a);
        }
        if (i % 4 == 3)
            (void)dispatch_released(d, t.scope, t.id, at + i * 1000 + 500);
    }
    if (ntrips > 2)
        (void)dispatch_health(d, "tail_gap", "the log was rotated twice while stopped");
}

int
main(int argc, char **argv)
{
    struct config *scfg, *acfg;
    struct engine_params ep = { .key = { 9 } };
    struct clock_fake cf;
    struct clock clk = clock_fake_init(&cf, T0);
    struct eximlog_joiner *j = calloc(1, sizeof(*j));
    struct engine_notice notes[ENGINE_NOTICES_MAX];
    static const int nrecords[] = {
        0, 1, 2, 3, 5, 8, 13, 20, 40, 80, 120, 200, 400, 600, 1000, 1600
    };
    static const int ntrips[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 13, 16, 21, 30, 40, 55 };
    char *log;
    size_t loglen;
    int r;

    if (argc != 3 || !j) {
        (void)fprintf(stderr, "usage: make_seeds <exim log> <corpus dir>\n");
        return 2;
    }
    outdir = argv[2];
    if ((r = state_read_path(argv[1], 1u << 24, &log, &loglen)) < 0) {
        (void)fprintf(stderr, "%s: %s\n", argv[1], strerror(-r));
        return 1;
    }
    scfg = fuzz_config("max_identities: 64\n"
                       "rules:\n"
                       "  - {name: m, scope: mailbox, metric: messages, window: 1m, "
                       "above: 2, actions: [alert]}\n"
                       "  - {name: r, scope: mailbox, metric: recipients, window: 10m, "
                       "above: 3, actions: [alert]}\n"
                       "  - {name: d, scope: account, metric: domains, window: 1h, "
                       "above: 2, actions: [alert]}\n"
                       "  - {name: s, scope: script, metric: messages, window: 5m, "
                       "above: 1, actions: [alert]}\n");
    acfg = fuzz_config(fuzz_alerts_yaml);
    ep.cfg = scfg;

    /* the state file: checkpoint, rule names, alerts, counters after n records */
    for (size_t k = 0; k < sizeof(nrecords) / sizeof(nrecords[0]); k++) {
        struct engine *e = NULL;
        struct eximlog_record rec;
        struct tail_pos pos = { .dev = 2049, .ino = 131 + k, .offset = 0, .fp_len = 64 };
        char text[STATE_CHECKPOINT_MAX], name[32];
        struct strbuf b, al;
        int fed = 0;
        const char *p = log, *end = log + loglen;

        if (engine_new(&ep, &e) < 0)
            abort();
        eximlog_joiner_init(j);
        while (p < end && fed < nrecords[k]) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
            uint64_t at = (uint64_t)(p - log);
            if (eximlog_joiner_push(j, p, len, at, at + len + 1, &rec) == 1) {
                (void)engine_feed(e, &rec, (uint64_t)++fed, notes, ENGINE_NOTICES_MAX);
                pos.offset = rec.end;
            }
            p += len + (nl ? 1 : 0);
        }
        for (size_t i = 0; i < sizeof(pos.fp); i++)
            pos.fp[i] = (uint8_t)(i * 7 + k);
        pos.marker_len = pos.offset < 64 ? (uint32_t)pos.offset : 64;
        pos.marker = 0x0123456789abcdefULL ^ k;
        r = state_checkpoint_encode(&pos, text, sizeof(text));
        if (r < 0)
            abort();
        strbuf_init(&b, 1u << 26);
        strbuf_init(&al, 1u << 26);
        if (k % 2) {
            struct dispatch *d = fuzz_dispatch(acfg, &clk);
            dispatch_seed(d, (int)k, T0);
            if (dispatch_encode(d, &al) < 0)
                abort();
            dispatch_free(d);
        }
        (void)strbuf_appends(&b, k == 2 ? "FLOODGATE-STATE 2\n" : "FLOODGATE-STATE 3\n");
        (void)strbuf_printf(&b, "%zu\n%s%zu\n", strlen(text), text, scfg->nrules);
        for (size_t i = 0; i < scfg->nrules; i++)
            (void)strbuf_printf(&b, "%s\n", scfg->rules[i].name);
        if (k != 2) {
            (void)strbuf_printf(&b, "%zu\n", al.len);
            (void)strbuf_append(&b, al.p, al.len);
        }
        if (usertable_save(engine_table(e), collect, &b) < 0)
            abort();
        (void)snprintf(name, sizeof(name), "state-%zu", k);
        put("checkpoint", name, b.p, b.len);
        strbuf_done(&b);
        strbuf_done(&al);
        engine_free(e);
    }

    /* the dispatcher's section on its own */
    for (size_t k = 0; k < sizeof(ntrips) / sizeof(ntrips[0]); k++) {
        struct dispatch *d = fuzz_dispatch(acfg, &clk);
        struct strbuf b;
        char name[32];

        strbuf_init(&b, 1u << 26);
        dispatch_seed(d, ntrips[k], T0 + (int64_t)k * 7000);
        if (dispatch_encode(d, &b) < 0)
            abort();
        (void)snprintf(name, sizeof(name), "dispatch-%zu", k);
        put("dispatch", name, b.p, b.len);
        strbuf_done(&b);
        dispatch_free(d);
    }

    /* the outbox encoding */
    for (size_t k = 0; k < 16; k++) {
        struct outbox_limits lim = { .max_entries = 20,
                                     .max_bytes = 1u << 16,
                                     .max_age_ms = 86400000 };
        static const char *const dests[] = { "slack", "hook", "am" };
        struct outbox *ob = NULL;
        struct strbuf b;
        char name[32];

        if (outbox_new(&lim, &ob) < 0)
            abort();
        for (size_t i = 0; i < k * 2; i++) {
            char ev[32], body[96];
            int n = snprintf(body, sizeof(body), "{\"text\":\"alert %zu\\n\",\"n\":%zu}", i, k);
            (void)snprintf(ev, sizeof(ev), "fg_%zuab%zu", i, k);
            if (outbox_add(ob, dests[i % 3], ev, (enum outbox_priority)(i % 3),
                           T0 + (int64_t)i * 1000, body, i % 5 == 4 ? 0 : (size_t)n) < 0)
                abort();
        }
        strbuf_init(&b, 1u << 26);
        if (outbox_encode(ob, &b) < 0)
            abort();
        (void)snprintf(name, sizeof(name), "outbox-%zu", k);
        put("outbox", name, b.p, b.len);
        strbuf_done(&b);
        outbox_free(ob);
    }
    config_free(scfg);
    config_free(acfg);
    free(log);
    free(j);
    return 0;
}
