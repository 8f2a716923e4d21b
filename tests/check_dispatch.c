/*
 * check_dispatch.c - lib/dispatch against a fake transport (records every request; the
 * test completes it with the answer it chooses) and a fake clock: the durability rule
 * (nothing leaves before its commit), retries with the same body and id but a new
 * signature, Retry-After and the halved bucket, permanent failures, disabling and
 * re-enabling, restarts through encode/decode, the outbreak bound, Alertmanager's
 * re-sends, merged follow-ups, expiry and floodgatectl test-alert (alerting.md §7).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <zlib.h>

#include "alert.h"
#include "alertmsg.h"
#include "clock.h"
#include "config.h"
#include "dispatch.h"
#include "http.h"
#include "outbox.h"
#include "testrun.h"
#include "util.h"

#define SECRET   "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SLACKURL "https://hooks.slack.com/services/T000/B000/SECRETPATH"
#define T0       1787306798000LL

/* --- the fake transport ---------------------------------------------------------------- */

struct fake_req {
    char url[256];
    char ca_file[256]; /* "" for none */
    char hname[HTTP_HEADERS_MAX][32];
    char hval[HTTP_HEADERS_MAX][256];
    size_t nh;
    char *body;
    size_t len;
    int64_t at_ms;
    http_done_fn done;
    void *ctx;
    bool completed;
};

struct fake_http {
    struct fake_req *v;
    size_t n, cap;
    struct clock_fake *cf;
};

static int
fake_post(void *ctx, const struct http_request *rq, http_done_fn done, void *done_ctx)
{
    struct fake_http *fh = ctx;
    struct fake_req *q;

    if (fh->n == fh->cap) {
        fh->cap = fh->cap ? fh->cap * 2 : 64;
        fh->v = realloc(fh->v, fh->cap * sizeof(*fh->v));
        ck_assert_ptr_nonnull(fh->v);
    }
    q = &fh->v[fh->n++];
    memset(q, 0, sizeof(*q));
    (void)snprintf(q->url, sizeof(q->url), "%s", rq->url);
    (void)snprintf(q->ca_file, sizeof(q->ca_file), "%s", rq->ca_file ? rq->ca_file : "");
    ck_assert_uint_le(rq->nheaders, HTTP_HEADERS_MAX);
    for (size_t i = 0; i < rq->nheaders; i++) {
        (void)snprintf(q->hname[i], sizeof(q->hname[i]), "%s", rq->headers[i].name);
        (void)snprintf(q->hval[i], sizeof(q->hval[i]), "%s", rq->headers[i].value);
    }
    q->nh = rq->nheaders;
    q->body = malloc(rq->body_len + 1);
    memcpy(q->body, rq->body, rq->body_len);
    q->body[rq->body_len] = '\0';
    q->len = rq->body_len;
    q->at_ms = fh->cf->now_ms;
    q->done = done;
    q->ctx = done_ctx;
    ck_assert_int_gt(rq->timeout_ms, 0);
    ck_assert_int_gt(rq->connect_timeout_ms, 0);
    return 0;
}

static const char *
fake_hdr(const struct fake_req *q, const char *name)
{
    for (size_t i = 0; i < q->nh; i++)
        if (strcmp(q->hname[i], name) == 0)
            return q->hval[i];
    return NULL;
}

static void
fake_complete_ms(struct fake_http *fh, size_t i, int status, int64_t retry_after_s,
                 const char *body, int64_t duration_ms)
{
    static struct http_response r;

    ck_assert_uint_lt(i, fh->n);
    ck_assert(!fh->v[i].completed);
    memset(&r, 0, sizeof(r));
    r.duration_ms = duration_ms;
    r.status = status;
    r.retry_after_s = retry_after_s;
    (void)snprintf(r.body, sizeof(r.body), "%s", body ? body : "");
    r.body_len = strlen(r.body);
    fh->v[i].completed = true;
    fh->v[i].done(fh->v[i].ctx, &r);
}

static void
fake_complete(struct fake_http *fh, size_t i, int status, int64_t retry_after_s, const char *body)
{
    fake_complete_ms(fh, i, status, retry_after_s, body, 0);
}

/* Request @i fails without an answer (@err: a connection or TLS failure). */
static void
fake_fail(struct fake_http *fh, size_t i, enum http_error err, const char *errmsg)
{
    static struct http_response r;

    ck_assert_uint_lt(i, fh->n);
    ck_assert(!fh->v[i].completed);
    memset(&r, 0, sizeof(r));
    r.error = err;
    r.retry_after_s = -1;
    (void)snprintf(r.errmsg, sizeof(r.errmsg), "%s", errmsg);
    fh->v[i].completed = true;
    fh->v[i].done(fh->v[i].ctx, &r);
}

/* Answer every request still open with @status. */
static void
fake_answer_all(struct fake_http *fh, int status)
{
    for (size_t k = 0; k < fh->n; k++)
        if (!fh->v[k].completed)
            fake_complete(fh, k, status, -1, "ok");
}

/* Requests to @prefix since @from whose body holds @needle. */
static size_t
fake_count_body(const struct fake_http *fh, const char *prefix, size_t from, const char *needle)
{
    size_t n = 0;

    for (size_t i = from; i < fh->n; i++)
        n += strncmp(fh->v[i].url, prefix, strlen(prefix)) == 0 && strstr(fh->v[i].body, needle);
    return n;
}

/* Requests to URLs starting with @prefix since index @from. */
static size_t
fake_count(const struct fake_http *fh, const char *prefix, size_t from)
{
    size_t n = 0;

    for (size_t i = from; i < fh->n; i++)
        n += strncmp(fh->v[i].url, prefix, strlen(prefix)) == 0;
    return n;
}

static void
fake_free(struct fake_http *fh)
{
    for (size_t i = 0; i < fh->n; i++)
        free(fh->v[i].body);
    free(fh->v);
    memset(fh, 0, sizeof(*fh));
}

/* --- the environment ------------------------------------------------------------------- */

enum { D_SLACK = 0, D_HOOK, D_AM, D_N };

struct env {
    struct clock_fake cf;
    struct clock clk;
    struct fake_http fh;
    struct config cfg;
    struct config_dest dests[D_N];
    char urls[D_N][128];
    struct dispatch *d;
};

static uint64_t
env_random(void *ctx)
{
    (void)ctx;
    return 1000; /* backoff of a first retry: 1000 ms */
}

/* Destinations [first, first + n) of slack, hook, am. */
static void
env_config(struct env *e, size_t first, size_t n)
{
    memset(&e->cfg, 0, sizeof(e->cfg));
    memset(e->dests, 0, sizeof(e->dests));
    (void)snprintf(e->urls[D_SLACK], sizeof(e->urls[0]), "%s", SLACKURL);
    (void)snprintf(e->urls[D_HOOK], sizeof(e->urls[0]), "https://hook.example.net/in/secret");
    (void)snprintf(e->urls[D_AM], sizeof(e->urls[0]), "https://am.example.net:9093/");
    e->dests[D_SLACK] = (struct config_dest){
        .name = "slack", .type = ALERT_DEST_SLACK, .url = e->urls[D_SLACK], .rate = 1, .burst = 3
    };
    e->dests[D_HOOK] = (struct config_dest){ .name = "hook",
                                             .type = ALERT_DEST_WEBHOOK,
                                             .url = e->urls[D_HOOK],
                                             .rate = 5,
                                             .burst = 10,
                                             .individual = true,
                                             .nsecrets = 1 };
    ck_assert_int_eq(alert_secret_decode(SECRET, &e->dests[D_HOOK].secrets[0]), 0);
    e->dests[D_AM] =
        (struct config_dest){ .name = "am", .type = ALERT_DEST_ALERTMANAGER, .url = e->urls[D_AM] };
    e->cfg.alerts = (struct config_alerts){ .digest_threshold = 5,
                                            .digest_interval_ms = 60000,
                                            .followup_ms = 30000,
                                            .resend_ms = 60000,
                                            .resolved_keep_ms = 300000,
                                            .max_age_ms = 24 * 3600 * 1000LL,
                                            .max_pending = 10000,
                                            .max_bytes = 16u << 20,
                                            .dests = &e->dests[first],
                                            .ndests = n };
}

static struct dispatch *
env_dispatch(struct env *e)
{
    struct dispatch_params p = { .clock = &e->clk,
                                 .cfg = &e->cfg,
                                 .http = { fake_post, &e->fh },
                                 .random = env_random,
                                 .host_name = "host7",
                                 .version = "1.2.3" };
    struct dispatch *d = NULL;

    ck_assert_int_eq(dispatch_new(&p, &d), 0);
    return d;
}

static void
env_init(struct env *e, size_t first, size_t n)
{
    memset(e, 0, sizeof(*e));
    e->clk = clock_fake_init(&e->cf, T0);
    e->fh.cf = &e->cf;
    env_config(e, first, n);
    e->d = env_dispatch(e);
}

static void
env_done(struct env *e)
{
    dispatch_free(e->d);
    fake_free(&e->fh);
}

static void
env_commit(struct env *e)
{
    dispatch_commit_done(e->d, dispatch_commit_begin(e->d));
}

static void
env_advance(struct env *e, int64_t ms)
{
    clock_fake_advance(&e->cf, ms);
    (void)dispatch_poll(e->d);
}

static struct dispatch_trip
trip_make(const char *id, int64_t at_ms, uint64_t value)
{
    static const char *const subjects[] = { "<!channel> win", "invoice" };
    return (struct dispatch_trip){ .rule = "mailbox-burst",
                                   .scope = SCOPE_MAILBOX,
                                   .id = id,
                                   .account = "examplec",
                                   .metric = "recipients",
                                   .window_ms = 600000,
                                   .value = value,
                                   .limit = 300,
                                   .at_ms = at_ms,
                                   .subjects = subjects,
                                   .nsubjects = 2 };
}

static void
stats_of(struct env *e, size_t i, struct dispatch_dest_stats *st)
{
    dispatch_dest_stats(e->d, i, st);
}

/* The signature header recomputed independently from what was received. */
static void
check_signature(const struct fake_req *q)
{
    struct alert_secret s;
    char sig[ALERT_SIG_MAX];
    uint64_t ts;

    ck_assert_int_eq(alert_secret_decode(SECRET, &s), 0);
    ck_assert_ptr_nonnull(fake_hdr(q, "webhook-timestamp"));
    ck_assert_int_eq(util_parse_u64(fake_hdr(q, "webhook-timestamp"),
                                    strlen(fake_hdr(q, "webhook-timestamp")), &ts),
                     0);
    ck_assert_int_eq((int64_t)ts, q->at_ms / 1000);
    ck_assert_int_eq(alert_sign(&s, 1, fake_hdr(q, "webhook-id"), (int64_t)ts, q->body, q->len, sig,
                                sizeof(sig)),
                     0);
    ck_assert_str_eq(sig, fake_hdr(q, "webhook-signature"));
}

/* --- durability ------------------------------------------------------------------------ */

/* stderr (where log_emit writes) into a temporary file, between begin and end. */
struct capture {
    FILE *f;
    int saved;
};

static void
capture_begin(struct capture *c)
{
    c->f = tmpfile();
    ck_assert_ptr_nonnull(c->f);
    fflush(stderr);
    c->saved = dup(2);
    ck_assert_int_ge(c->saved, 0);
    ck_assert_int_eq(dup2(fileno(c->f), 2), 2);
}

/* Restore stderr; what was written goes to @buf (NUL-terminated), when not NULL. */
static void
capture_end(struct capture *c, char *buf, size_t size)
{
    size_t n;

    fflush(stderr);
    ck_assert_int_eq(dup2(c->saved, 2), 2);
    close(c->saved);
    if (buf) {
        rewind(c->f);
        n = fread(buf, 1, size - 1, c->f);
        buf[n] = '\0';
    }
    fclose(c->f);
}

/* Trips of u<from>@example.com .. u<to - 1>@example.com: at T0 + i * @at_step, value
 * @value + i * @value_step. */
static void
trip_users(struct env *e, int from, int to, int at_step, uint64_t value, uint64_t value_step)
{
    char id[32];

    for (int i = from; i < to; i++) {
        struct dispatch_trip t;
        (void)snprintf(id, sizeof(id), "u%d@example.com", i);
        t = trip_make(id, T0 + (int64_t)i * at_step, value + (uint64_t)i * value_step);
        ck_assert_int_eq(dispatch_tripped(e->d, &t), 0);
    }
}

START_TEST(test_dispatch_waits_for_commit)
{
    struct env e;
    struct dispatch_trip t1 = trip_make("a@example.com", T0, 412);
    struct dispatch_trip t2 = trip_make("b@example.com", T0, 500);
    uint64_t token;
    const struct fake_req *q;

    env_init(&e, D_SLACK, 2);
    ck_assert_int_eq(dispatch_tripped(e.d, &t1), 0);
    ck_assert(dispatch_dirty(e.d));
    env_advance(&e, 5000);
    ck_assert_uint_eq(e.fh.n, 0);
    token = dispatch_commit_begin(e.d);
    /* the snapshot may be encoded by a forked writer: begin alone makes it clean */
    ck_assert(!dispatch_dirty(e.d));
    /* queued after the snapshot: waits for the next commit */
    ck_assert_int_eq(dispatch_tripped(e.d, &t2), 0);
    ck_assert(dispatch_dirty(e.d));
    env_advance(&e, 1000);
    ck_assert_uint_eq(e.fh.n, 0);
    dispatch_commit_done(e.d, token);
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(e.fh.n, 2);
    ck_assert_uint_eq(fake_count(&e.fh, SLACKURL, 0), 1);
    ck_assert_ptr_nonnull(strstr(e.fh.v[0].body, "a@example.com"));
    ck_assert_ptr_null(strstr(e.fh.v[0].body, "b@example.com"));
    ck_assert_str_eq(e.fh.v[0].url, SLACKURL);
    q = &e.fh.v[1];
    ck_assert_str_eq(q->url, "https://hook.example.net/in/secret");
    ck_assert_str_eq(fake_hdr(q, "Content-Type"), "application/json");
    ck_assert_str_eq(fake_hdr(q, "User-Agent"), "floodgate/1.2.3");
    ck_assert_ptr_nonnull(strstr(fake_hdr(q, "webhook-id"), "_tripped"));
    ck_assert_ptr_null(strchr(fake_hdr(q, "webhook-id"), '.'));
    check_signature(q);
    ck_assert_ptr_null(fake_hdr(&e.fh.v[0], "webhook-id"));
    env_commit(&e);
    (void)dispatch_poll(e.d);
    /* slack sends one at a time: b waits for a's answer */
    ck_assert_uint_eq(fake_count(&e.fh, SLACKURL, 0), 1);
    ck_assert_uint_eq(fake_count(&e.fh, "https://hook.", 0), 2);
    env_done(&e);
}
END_TEST

/* --- retries and failures -------------------------------------------------------------- */

START_TEST(test_dispatch_retry_same_body)
{
    struct env e;
    struct dispatch_trip t = trip_make("a@example.com", T0, 412);
    struct dispatch_dest_stats st;

    env_init(&e, D_HOOK, 1);
    ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(e.fh.n, 1);
    fake_complete(&e.fh, 0, 500, -1, "rollup_error");
    env_advance(&e, 999);
    ck_assert_uint_eq(e.fh.n, 1);
    env_advance(&e, 1500);
    ck_assert_uint_eq(e.fh.n, 2);
    ck_assert_uint_eq(e.fh.v[1].len, e.fh.v[0].len);
    ck_assert_mem_eq(e.fh.v[1].body, e.fh.v[0].body, e.fh.v[0].len);
    ck_assert_str_eq(fake_hdr(&e.fh.v[1], "webhook-id"), fake_hdr(&e.fh.v[0], "webhook-id"));
    ck_assert_str_ne(fake_hdr(&e.fh.v[1], "webhook-timestamp"),
                     fake_hdr(&e.fh.v[0], "webhook-timestamp"));
    ck_assert_str_ne(fake_hdr(&e.fh.v[1], "webhook-signature"),
                     fake_hdr(&e.fh.v[0], "webhook-signature"));
    check_signature(&e.fh.v[0]);
    check_signature(&e.fh.v[1]);
    fake_complete(&e.fh, 1, 200, -1, "");
    stats_of(&e, 0, &st);
    ck_assert_uint_eq(st.retried, 1);
    ck_assert_uint_eq(st.delivered, 1);
    ck_assert_uint_eq(st.pending, 0);
    env_done(&e);
}
END_TEST

START_TEST(test_dispatch_retry_after_halves_bucket)
{
    struct env e;
    int64_t last = 0, gap = 0;

    env_init(&e, D_SLACK, 1);
    e.cfg.alerts.digest_threshold = 100;
    {
        struct dispatch_trip t = trip_make("first@example.com", T0, 1);
        ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    }
    env_commit(&e);
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(e.fh.n, 1);
    fake_complete(&e.fh, 0, 429, 7, "rate_limited");
    env_advance(&e, 6999);
    ck_assert_uint_eq(e.fh.n, 1);
    env_advance(&e, 1);
    ck_assert_uint_eq(e.fh.n, 2);
    ck_assert_int_ge(e.fh.v[1].at_ms - e.fh.v[0].at_ms, 7000);
    fake_complete(&e.fh, 1, 200, -1, "ok");
    /* four more (so few that the queue drains within 10 s even at the halved rate): once
     * the burst is spent they leave one per 2 s, not per 1 s */
    trip_users(&e, 0, 4, 1, 1, 0);
    env_commit(&e);
    for (int step = 0; step < 400 && e.fh.n < 6; step++) {
        (void)dispatch_poll(e.d);
        for (size_t i = 2; i < e.fh.n; i++) {
            if (!e.fh.v[i].completed) {
                if (last)
                    gap = e.fh.v[i].at_ms - last;
                last = e.fh.v[i].at_ms;
                fake_complete(&e.fh, i, 200, -1, "ok");
            }
        }
        clock_fake_advance(&e.cf, 100);
    }
    ck_assert_uint_eq(e.fh.n, 6);
    ck_assert_int_ge(gap, 1900);
    env_done(&e);
}
END_TEST

START_TEST(test_dispatch_shared_slack_bucket)
{
    struct env e;
    struct config_dest two[2];

    env_init(&e, D_SLACK, 1);
    two[0] = e.dests[D_SLACK];
    two[1] = e.dests[D_SLACK];
    (void)snprintf(two[1].name, sizeof(two[1].name), "slack2");
    e.cfg.alerts.dests = two;
    e.cfg.alerts.ndests = 2;
    e.cfg.alerts.digest_threshold = 100;
    ck_assert_int_eq(dispatch_set_config(e.d, &e.cfg), 0);
    trip_users(&e, 0, 4, 0, 1, 0);
    env_commit(&e);
    /* one URL, one bucket of burst 3: three messages now, not six */
    for (int i = 0; i < 5; i++) {
        (void)dispatch_poll(e.d);
        for (size_t k = 0; k < e.fh.n; k++)
            if (!e.fh.v[k].completed)
                fake_complete(&e.fh, k, 200, -1, "ok");
    }
    ck_assert_uint_eq(e.fh.n, 3);
    env_advance(&e, 1000);
    ck_assert_uint_eq(e.fh.n, 4);
    env_done(&e);
}
END_TEST

START_TEST(test_dispatch_400_permanent)
{
    struct env e;
    struct dispatch_trip t = trip_make("a@example.com", T0, 412);
    struct dispatch_dest_stats st;

    struct dispatch_acted a = { .scope = SCOPE_MAILBOX, .id = "a@example.com", .frozen = 1 };

    env_init(&e, D_SLACK, 1);
    ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    fake_complete(&e.fh, 0, 400, -1, "invalid_payload");
    ck_assert_int_eq(dispatch_acted(e.d, &a), 0); /* its follow-up, which is accepted */
    env_commit(&e);
    env_advance(&e, 3600 * 1000);
    ck_assert_uint_eq(e.fh.n, 2);
    ck_assert_ptr_nonnull(strstr(e.fh.v[1].body, "Outbound spam stopped"));
    fake_complete(&e.fh, 1, 200, -1, "ok");
    env_advance(&e, 3600 * 1000);
    ck_assert_uint_eq(e.fh.n, 2); /* the refused one is never tried again */
    stats_of(&e, 0, &st);
    ck_assert_uint_eq(st.failed, 1);
    ck_assert(st.enabled);
    ck_assert_uint_eq(st.pending, 0);
    ck_assert_int_eq(st.last_status, 200);
    ck_assert_str_eq(st.host, "https://hooks.slack.com");
    ck_assert_str_eq(st.name, "slack");
    env_done(&e);
}
END_TEST

START_TEST(test_dispatch_disable_and_enable)
{
    struct env e;
    struct dispatch_trip t = trip_make("a@example.com", T0, 412);
    struct dispatch_dest_stats st;
    size_t before;
    static char newurl[] = "https://hooks.slack.com/services/T000/B000/NEWPATH";

    env_init(&e, D_SLACK, 2);
    ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(e.fh.n, 2);
    for (size_t i = 0; i < 2; i++)
        fake_complete(&e.fh, i, strcmp(e.fh.v[i].url, SLACKURL) == 0 ? 404 : 200, -1, "no_service");
    stats_of(&e, 0, &st);
    ck_assert(!st.enabled);
    ck_assert_uint_eq(st.pending, 1);
    /* the other destination hears of it, by name and host only */
    env_commit(&e);
    env_advance(&e, 1000);
    ck_assert_uint_eq(e.fh.n, 3);
    ck_assert_str_eq(e.fh.v[2].url, "https://hook.example.net/in/secret");
    ck_assert_ptr_nonnull(strstr(e.fh.v[2].body, "floodgate.daemon.degraded"));
    ck_assert_ptr_nonnull(strstr(e.fh.v[2].body, "slack (https://hooks.slack.com)"));
    ck_assert_ptr_null(strstr(e.fh.v[2].body, "SECRETPATH"));
    /* and how to bring it back, by a command that exists */
    ck_assert_ptr_nonnull(strstr(e.fh.v[2].body, "`floodgatectl alert-enable slack`"));
    fake_complete(&e.fh, 2, 200, -1, "");
    env_advance(&e, 600000);
    ck_assert_uint_eq(e.fh.n, 3);
    /* a reload with a new URL re-enables it and the kept alert goes out */
    e.dests[D_SLACK].url = newurl;
    ck_assert_int_eq(dispatch_set_config(e.d, &e.cfg), 0);
    stats_of(&e, 0, &st);
    ck_assert(st.enabled);
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(e.fh.n, 4);
    ck_assert_str_eq(e.fh.v[3].url, newurl);
    fake_complete(&e.fh, 3, 410, -1, "channel_is_archived");
    stats_of(&e, 0, &st);
    ck_assert(!st.enabled);
    /* the same URL again does not re-enable; floodgatectl alert enable does */
    ck_assert_int_eq(dispatch_set_config(e.d, &e.cfg), 0);
    stats_of(&e, 0, &st);
    ck_assert(!st.enabled);
    ck_assert_int_eq(dispatch_enable(e.d, "nope"), -ENOENT);
    ck_assert_int_eq(dispatch_enable(e.d, "slack"), 0);
    before = e.fh.n;
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(fake_count(&e.fh, newurl, before), 1);
    env_done(&e);
}
END_TEST

START_TEST(test_dispatch_auth_pause)
{
    struct env e;
    struct dispatch_dest_stats st;

    env_init(&e, D_SLACK, 1);
    trip_users(&e, 0, 3, 0, 1, 0);
    env_commit(&e);
    for (int i = 0; i < 3; i++) {
        env_advance(&e, 1000);
        ck_assert_uint_eq(e.fh.n, (size_t)i + 1);
        stats_of(&e, 0, &st);
        ck_assert(st.enabled);
        fake_complete(&e.fh, (size_t)i, 403, -1, "invalid_token");
    }
    stats_of(&e, 0, &st);
    ck_assert(!st.enabled);
    ck_assert_uint_eq(st.failed, 3);
    env_done(&e);
}
END_TEST

/* Occurrences of @needle in @s. */
static size_t
count_in(const char *s, const char *needle)
{
    size_t n = 0;

    for (const char *p = s; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/*
 * A failing destination is not silent (alerting.md §5.3): a certificate problem is logged
 * at LOG_ERR once an hour and retried slowly, an alert failing 5 attempts in a row is
 * warned about once per 10 minutes, and the recovery is noted; by name, never by URL.
 */
START_TEST(test_dispatch_failures_logged)
{
    struct env e;
    struct dispatch_trip t = trip_make("a@example.com", T0, 412);
    char logbuf[65536];
    struct capture cap;
    size_t k;

    env_init(&e, D_HOOK, 1);
    ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    env_commit(&e);
    capture_begin(&cap);
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(e.fh.n, 1);
    fake_fail(&e.fh, 0, HTTP_ERR_TLS, "SSL certificate problem: unable to get local issuer");
    /* slowly: a quarter of the cap's upper half at least, not the usual 1 s */
    env_advance(&e, ALERT_BACKOFF_CAP_MS / 8 - 1);
    ck_assert_uint_eq(e.fh.n, 1);
    env_advance(&e, 2000);
    ck_assert_uint_eq(e.fh.n, 2);
    fake_fail(&e.fh, 1, HTTP_ERR_TLS, "SSL certificate problem: unable to get local issuer");
    /* then a server failing: 1 s apart; the 5th attempt warns, the next 10 minutes not */
    env_advance(&e, ALERT_BACKOFF_CAP_MS / 4 + 1000);
    for (k = 2; k < 700; k++) {
        ck_assert_uint_eq(e.fh.n, k + 1);
        fake_complete(&e.fh, k, 503, -1, "");
        env_advance(&e, 1000);
    }
    fake_complete(&e.fh, k, 200, -1, "");
    capture_end(&cap, logbuf, sizeof(logbuf));
    ck_assert_uint_eq(count_in(logbuf, "certificate or CA problem; verification stays on"), 1);
    ck_assert_uint_eq(count_in(logbuf, "ERROR alert destination hook: certificate"), 1);
    ck_assert_uint_eq(count_in(logbuf, "unable to get local issuer"), 1);
    /* attempt 5, then once more after 10 minutes */
    ck_assert_uint_eq(count_in(logbuf, "alert destination hook: an alert has failed"), 2);
    ck_assert_uint_eq(count_in(logbuf, "has failed 5 attempts in a row (last: HTTP 503)"), 1);
    ck_assert_uint_eq(count_in(logbuf, "alert destination hook delivers again after 700 failed"),
                      1);
    ck_assert_ptr_null(strstr(logbuf, "/in/secret"));
    ck_assert_ptr_null(strstr(logbuf, "hook.example.net"));
    env_done(&e);
}
END_TEST

/* A reload that changes what decides delivery (here the CA file) retries at once. */
START_TEST(test_dispatch_reload_retries_now)
{
    struct env e;
    struct dispatch_trip t = trip_make("a@example.com", T0, 412);
    static char ca[] = "/etc/floodgate/private-ca.pem";
    struct capture cap;

    env_init(&e, D_HOOK, 1);
    ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    env_commit(&e);
    capture_begin(&cap); /* the certificate error, out of the way */
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(e.fh.n, 1);
    fake_fail(&e.fh, 0, HTTP_ERR_TLS, "SSL certificate problem: self-signed certificate");
    capture_end(&cap, NULL, 0);
    env_advance(&e, 5000);
    ck_assert_uint_eq(e.fh.n, 1); /* TLS failures back off for minutes */
    /* the same settings again: still waiting */
    ck_assert_int_eq(dispatch_set_config(e.d, &e.cfg), 0);
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(e.fh.n, 1);
    /* the CA file that vouches for the receiver: now */
    e.dests[D_HOOK].ca_file = ca;
    ck_assert_int_eq(dispatch_set_config(e.d, &e.cfg), 0);
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(e.fh.n, 2);
    ck_assert_str_eq(e.fh.v[1].ca_file, ca);
    fake_complete(&e.fh, 1, 200, -1, "");
    e.dests[D_HOOK].ca_file = NULL;
    env_done(&e);
}
END_TEST

/* --- restarts -------------------------------------------------------------------------- */

START_TEST(test_dispatch_restart_resends)
{
    struct env e;
    struct dispatch_trip t1 = trip_make("a@example.com", T0, 412);
    struct dispatch_trip t2 = trip_make("b@example.com", T0, 413);
    struct dispatch_dest_stats st;
    struct strbuf s;
    char hook_body[4096], hook_id[64];
    size_t hook_first = SIZE_MAX;

    env_init(&e, D_SLACK, 3);
    ck_assert_int_eq(dispatch_tripped(e.d, &t1), 0);
    ck_assert_int_eq(dispatch_tripped(e.d, &t2), 0);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    /* slack: a in flight; hook: a and b; am: the array */
    ck_assert_uint_eq(e.fh.n, 4);
    for (size_t i = 0; i < e.fh.n; i++) {
        if (strncmp(e.fh.v[i].url, "https://hook.", 13) != 0)
            continue;
        if (hook_first == SIZE_MAX) {
            hook_first = i;
            fake_complete(&e.fh, i, 200, -1, ""); /* delivered: never again */
        } else {
            (void)snprintf(hook_body, sizeof(hook_body), "%s", e.fh.v[i].body);
            (void)snprintf(hook_id, sizeof(hook_id), "%s", fake_hdr(&e.fh.v[i], "webhook-id"));
            fake_complete(&e.fh, i, 503, -1, "");
        }
    }
    for (size_t i = 0; i < e.fh.n; i++)
        if (strcmp(e.fh.v[i].url, SLACKURL) == 0)
            fake_complete(&e.fh, i, 404, -1, "no_service");
    strbuf_init(&s, 1u << 30);
    ck_assert_int_eq(dispatch_encode(e.d, &s), 0);
    /* a corrupt copy is refused whole */
    s.p[s.len / 2] ^= 1;
    ck_assert_int_eq(dispatch_decode(e.d, s.p, s.len), -EBADMSG);
    s.p[s.len / 2] ^= 1;
    dispatch_free(e.d);
    fake_free(&e.fh);
    e.fh.cf = &e.cf;
    e.d = env_dispatch(&e);
    ck_assert_int_eq(dispatch_decode(e.d, s.p, s.len), 0);
    strbuf_done(&s);
    ck_assert_uint_eq(dispatch_open_incidents(e.d), 2);
    stats_of(&e, 0, &st);
    ck_assert(!st.enabled);
    ck_assert_uint_eq(st.pending, 2); /* a (kept at the 404) and b (never sent) */
    env_advance(&e, 10000);
    /* hook: the undelivered trip, same bytes and id, and the health event about slack; am:
     * both alerts re-asserted */
    ck_assert_uint_eq(fake_count(&e.fh, "https://hook.", 0), 2);
    ck_assert_uint_eq(fake_count(&e.fh, SLACKURL, 0), 0);
    ck_assert_uint_eq(fake_count(&e.fh, "https://am.example.net:9093/api/v2/alerts", 0), 1);
    for (size_t i = 0; i < e.fh.n; i++) {
        if (strncmp(e.fh.v[i].url, "https://hook.", 13) == 0 &&
            strstr(e.fh.v[i].body, "floodgate.daemon.degraded")) {
            check_signature(&e.fh.v[i]);
        } else if (strncmp(e.fh.v[i].url, "https://hook.", 13) == 0) {
            ck_assert_str_eq(e.fh.v[i].body, hook_body);
            ck_assert_str_eq(fake_hdr(&e.fh.v[i], "webhook-id"), hook_id);
            check_signature(&e.fh.v[i]);
        } else {
            ck_assert_ptr_nonnull(strstr(e.fh.v[i].body, "a@example.com"));
            ck_assert_ptr_nonnull(strstr(e.fh.v[i].body, "b@example.com"));
        }
    }
    /* a replay of the same trip is not a new incident */
    ck_assert_int_eq(dispatch_tripped(e.d, &t1), 0);
    ck_assert_uint_eq(dispatch_open_incidents(e.d), 2);
    env_done(&e);
}
END_TEST

/*
 * A destination disabled by a 410 stays disabled across a restart with the same URL and
 * secrets, and is enabled again by a restart with another URL or secret, as by a reload.
 */
START_TEST(test_dispatch_restart_new_url)
{
    static char newurl[] = "https://hooks.slack.com/services/T000/B000/NEWPATH";
    struct env e;
    struct dispatch_trip t = trip_make("a@example.com", T0, 412);
    struct dispatch_dest_stats st;
    struct strbuf s;

    env_init(&e, D_SLACK, 2);
    ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(e.fh.n, 2);
    fake_complete(&e.fh, 0, 410, -1, "channel_is_archived");
    fake_complete(&e.fh, 1, 410, -1, "");
    for (size_t i = 0; i < 2; i++) {
        stats_of(&e, i, &st);
        ck_assert(!st.enabled);
        ck_assert_uint_eq(st.pending, 2); /* the trip, and the other one's disabling */
    }
    strbuf_init(&s, 1u << 30);
    ck_assert_int_eq(dispatch_encode(e.d, &s), 0);
    ck_assert_ptr_null(strstr(s.p, "SECRETPATH")); /* the file never holds the URL */
    /* the same URL and secret: still disabled */
    dispatch_free(e.d);
    e.d = env_dispatch(&e);
    ck_assert_int_eq(dispatch_decode(e.d, s.p, s.len), 0);
    stats_of(&e, 0, &st);
    ck_assert(!st.enabled);
    stats_of(&e, 1, &st);
    ck_assert(!st.enabled);
    env_advance(&e, 10000);
    ck_assert_uint_eq(e.fh.n, 2);
    /* another Slack URL and another webhook secret: both tried again, their alerts sent */
    dispatch_free(e.d);
    e.dests[D_SLACK].url = newurl;
    e.dests[D_HOOK].secrets[0].key[0] ^= 1;
    e.d = env_dispatch(&e);
    ck_assert_int_eq(dispatch_decode(e.d, s.p, s.len), 0);
    strbuf_done(&s);
    for (size_t i = 0; i < 2; i++) {
        stats_of(&e, i, &st);
        ck_assert(st.enabled);
    }
    env_advance(&e, 10000);
    ck_assert_uint_eq(fake_count_body(&e.fh, newurl, 2, "a@example.com"), 1);
    ck_assert_uint_eq(fake_count_body(&e.fh, "https://hook.", 2, "a@example.com"), 1);
    for (int i = 0; i < 5; i++) {
        fake_answer_all(&e.fh, 200);
        env_advance(&e, 1000);
    }
    for (size_t i = 0; i < 2; i++) {
        stats_of(&e, i, &st);
        ck_assert_uint_eq(st.pending, 0);
        ck_assert_uint_eq(st.delivered, 2);
    }
    env_done(&e);
}
END_TEST

START_TEST(test_dispatch_crash_after_200)
{
    struct env e;
    struct dispatch_trip t = trip_make("a@example.com", T0, 412);
    struct strbuf s;
    char id[64];

    env_init(&e, D_HOOK, 1);
    ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    env_commit(&e);
    strbuf_init(&s, 1u << 30);
    ck_assert_int_eq(dispatch_encode(e.d, &s), 0); /* the durable generation */
    (void)dispatch_poll(e.d);
    (void)snprintf(id, sizeof(id), "%s", fake_hdr(&e.fh.v[0], "webhook-id"));
    fake_complete(&e.fh, 0, 200, -1, "");
    /* crash before the next commit: restart from the generation above */
    dispatch_free(e.d);
    e.d = env_dispatch(&e);
    ck_assert_int_eq(dispatch_decode(e.d, s.p, s.len), 0);
    strbuf_done(&s);
    /* the replay regenerates the trip: deduplicated */
    ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    env_commit(&e);
    env_advance(&e, 1000);
    ck_assert_uint_eq(e.fh.n, 2);
    ck_assert_str_eq(fake_hdr(&e.fh.v[1], "webhook-id"), id);
    fake_complete(&e.fh, 1, 200, -1, "");
    env_advance(&e, 600000);
    ck_assert_uint_eq(e.fh.n, 2);
    env_done(&e);
}
END_TEST

/* --- outbreak -------------------------------------------------------------------------- */

START_TEST(test_dispatch_outbreak_bounded)
{
    enum { N = 1000 };
    struct env e;
    size_t slack = 0, hook = 0, digests_slack = 0, digests_hook = 0, am = 0;
    const char *digest = NULL;
    char id[32];

    env_init(&e, D_SLACK, 3);
    for (int i = 0; i < N; i++) {
        struct dispatch_trip t;
        (void)snprintf(id, sizeof(id), "u%04d@example.com", i);
        t = trip_make(id, T0 + i * 59, (uint64_t)(301 + i));
        ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
        if (i % 17 == 0)
            env_commit(&e);
        clock_fake_advance(&e.cf, 59);
        (void)dispatch_poll(e.d);
        for (size_t k = 0; k < e.fh.n; k++)
            if (!e.fh.v[k].completed)
                fake_complete(&e.fh, k, 200, -1, "ok");
    }
    ck_assert_uint_eq(dispatch_open_incidents(e.d), N);
    env_commit(&e);
    for (int step = 0; step < 4000; step++) {
        clock_fake_advance(&e.cf, 100);
        (void)dispatch_poll(e.d);
        for (size_t k = 0; k < e.fh.n; k++)
            if (!e.fh.v[k].completed)
                fake_complete(&e.fh, k, 200, -1, "ok");
        if (step % 10 == 0)
            env_commit(&e);
    }
    for (size_t k = 0; k < e.fh.n; k++) {
        const char *b = e.fh.v[k].body;
        if (strcmp(e.fh.v[k].url, SLACKURL) == 0) {
            slack++;
            if (strstr(b, "Outbreak digest")) {
                digests_slack++;
                digest = b;
            }
        } else if (strncmp(e.fh.v[k].url, "https://hook.", 13) == 0) {
            hook += strstr(b, "floodgate.trip.tripped") != NULL;
            digests_hook += strstr(b, "floodgate.digest") != NULL;
        } else {
            am++;
        }
    }
    /* Slack: the threshold one by one, each with its follow-up at 30 s (no outcome came),
     * then one digest for the window */
    ck_assert_uint_eq(digests_slack, 1);
    ck_assert_uint_eq(slack, 5 + 5 + 1);
    ck_assert_ptr_nonnull(digest);
    ck_assert_ptr_nonnull(strstr(digest, "*995 incidents*"));
    ck_assert_ptr_nonnull(strstr(digest, "mailbox-burst (mailbox): 995"));
    ck_assert_ptr_nonnull(strstr(digest, "and 975 more — `floodgatectl top`"));
    ck_assert_ptr_nonnull(strstr(digest, "u0999@example.com")); /* the largest value */
    /* the webhook gets every incident and the digest; Alertmanager a bounded few posts */
    ck_assert_uint_eq(hook, N);
    ck_assert_uint_eq(digests_hook, 1);
    ck_assert_uint_le(am, 400);
    ck_assert_uint_ge(am, 1);
    for (size_t i = 0; i < dispatch_dest_count(e.d); i++) {
        struct dispatch_dest_stats st;
        stats_of(&e, i, &st);
        ck_assert_uint_eq(st.pending, 0);
        ck_assert_uint_eq(st.dropped, 0);
    }
    env_done(&e);
}
END_TEST

/* --- Alertmanager ---------------------------------------------------------------------- */

START_TEST(test_dispatch_am_resend_and_resolve)
{
    struct env e;
    struct dispatch_trip t = trip_make("a@example.com", T0, 412);
    const char *amurl = "https://am.example.net:9093/api/v2/alerts";
    int64_t rel;
    size_t n;

    env_init(&e, D_AM, 1);
    ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(e.fh.n, 1);
    ck_assert_str_eq(e.fh.v[0].url, amurl);
    ck_assert_ptr_nonnull(strstr(e.fh.v[0].body, "\"startsAt\":\"2026-08-21T10:06:38.000Z\""));
    /* endsAt = now + 4 x 60 s */
    ck_assert_ptr_nonnull(strstr(e.fh.v[0].body, "\"endsAt\":\"2026-08-21T10:10:38.000Z\""));
    fake_complete(&e.fh, 0, 200, -1, "");
    env_advance(&e, 59999);
    ck_assert_uint_eq(e.fh.n, 1);
    env_advance(&e, 1);
    ck_assert_uint_eq(e.fh.n, 2);
    ck_assert_ptr_nonnull(strstr(e.fh.v[1].body, "\"startsAt\":\"2026-08-21T10:06:38.000Z\""));
    ck_assert_ptr_nonnull(strstr(e.fh.v[1].body, "\"endsAt\":\"2026-08-21T10:11:38.000Z\""));
    fake_complete(&e.fh, 1, 200, -1, "");
    /* a release goes out within a second, ending at the release */
    env_advance(&e, 5000);
    rel = e.cf.now_ms;
    ck_assert_int_eq(dispatch_released(e.d, SCOPE_MAILBOX, "a@example.com", rel), 0);
    ck_assert_uint_eq(dispatch_open_incidents(e.d), 0);
    env_advance(&e, 1000);
    ck_assert_uint_eq(e.fh.n, 3);
    ck_assert_ptr_nonnull(strstr(e.fh.v[2].body, "\"endsAt\":\"2026-08-21T10:07:43.000Z\""));
    fake_complete(&e.fh, 2, 200, -1, "");
    /* re-sent resolved for resolved_keep_ms (5 min), then dropped */
    for (int i = 0; i < 8; i++) {
        env_advance(&e, 60000);
        for (size_t k = 0; k < e.fh.n; k++)
            if (!e.fh.v[k].completed)
                fake_complete(&e.fh, k, 200, -1, "");
    }
    n = e.fh.n;
    ck_assert_uint_ge(n, 3 + 4);
    ck_assert_uint_le(n, 3 + 5);
    ck_assert_ptr_nonnull(strstr(e.fh.v[n - 1].body, "\"endsAt\":\"2026-08-21T10:07:43.000Z\""));
    env_advance(&e, 600000);
    ck_assert_uint_eq(e.fh.n, n);
    env_done(&e);
}
END_TEST

/*
 * Every alert in the Alertmanager posts to @url since @from: startsAt is @starts and endsAt
 * comes after it. Returns how many alerts were seen.
 */
static size_t
am_check_times(const struct fake_http *fh, const char *url, size_t from, const char *starts)
{
    size_t n = 0;

    for (size_t i = from; i < fh->n; i++) {
        if (strcmp(fh->v[i].url, url) != 0)
            continue;
        for (const char *p = fh->v[i].body; (p = strstr(p, "\"startsAt\":\"")) != NULL; p++) {
            const char *e = strstr(p, "\"endsAt\":\"");
            char s0[32], e0[32];

            ck_assert_ptr_nonnull(e);
            (void)snprintf(s0, sizeof(s0), "%.24s", p + 12);
            (void)snprintf(e0, sizeof(e0), "%.24s", e + 10);
            ck_assert_str_eq(s0, starts);
            ck_assert_msg(strcmp(e0, s0) > 0, "endsAt %s not after startsAt %s", e0, s0);
            n++;
        }
    }
    return n;
}

/*
 * East of UTC the log time (local, read as UTC) is hours ahead of the wall clock: the
 * alerts show the detection time, so Alertmanager never sees endsAt before startsAt; the
 * incident id stays anchored on the log time; both survive a restart.
 */
START_TEST(test_dispatch_log_time_local)
{
    struct env e;
    struct dispatch_trip t = trip_make("a@example.com", T0 + 2 * 3600 * 1000, 412);
    const char *amurl = "https://am.example.net:9093/api/v2/alerts";
    char id[ALERTMSG_ID_MAX];
    struct strbuf s;
    size_t before;

    t.detected_ms = T0;
    t.log_time = "2026-08-21 12:06:38";
    env_init(&e, D_HOOK, 2);
    ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(e.fh.n, 2);
    alertmsg_incident_id("host7", "mailbox-burst", SCOPE_MAILBOX, "a@example.com",
                         T0 + 2 * 3600 * 1000, id);
    ck_assert_uint_eq(
        fake_count_body(&e.fh, "https://hook.", 0, "\"timestamp\":\"2026-08-21T10:06:38.000Z\""),
        1);
    ck_assert_uint_eq(
        fake_count_body(&e.fh, "https://hook.", 0, "\"tripped_at\":\"2026-08-21T10:06:38.000Z\""),
        1);
    ck_assert_uint_eq(
        fake_count_body(&e.fh, "https://hook.", 0, "\"log_time\":\"2026-08-21 12:06:38\""), 1);
    ck_assert_uint_eq(fake_count_body(&e.fh, "https://hook.", 0, id), 1);
    ck_assert_uint_eq(fake_count_body(&e.fh, amurl, 0, "2026-08-21 12:06:38 (server local)"), 1);
    fake_answer_all(&e.fh, 200);
    for (int i = 0; i < 3; i++) {
        env_advance(&e, 60000);
        fake_answer_all(&e.fh, 200);
    }
    ck_assert_uint_eq(am_check_times(&e.fh, amurl, 0, "2026-08-21T10:06:38.000Z"), 4);
    /* a restart keeps both times */
    strbuf_init(&s, 1u << 30);
    ck_assert_int_eq(dispatch_encode(e.d, &s), 0);
    dispatch_free(e.d);
    e.d = env_dispatch(&e);
    ck_assert_int_eq(dispatch_decode(e.d, s.p, s.len), 0);
    strbuf_done(&s);
    before = e.fh.n;
    env_advance(&e, 1000);
    fake_answer_all(&e.fh, 200);
    ck_assert_uint_eq(fake_count_body(&e.fh, amurl, before, "2026-08-21 12:06:38 (server local)"),
                      1);
    /* released now: ends at the release, still after the start */
    ck_assert_int_eq(dispatch_released(e.d, SCOPE_MAILBOX, "a@example.com", e.cf.now_ms), 0);
    env_commit(&e);
    for (int i = 0; i < 3; i++) {
        env_advance(&e, 60000);
        fake_answer_all(&e.fh, 200);
    }
    ck_assert_uint_eq(am_check_times(&e.fh, amurl, 0, "2026-08-21T10:06:38.000Z"),
                      fake_count(&e.fh, amurl, 0));
    ck_assert_uint_ge(fake_count(&e.fh, amurl, before), 3);
    env_done(&e);
}
END_TEST

/*
 * A second outcome for an incident that has one (a restart's "resume") never reuses the
 * "acted" event id with another body; a failure it reports is told with the release.
 */
START_TEST(test_dispatch_second_outcome)
{
    struct env e;
    struct dispatch_trip t = trip_make("a@example.com", T0, 412);
    struct dispatch_acted ok = { .scope = SCOPE_MAILBOX,
                                 .id = "a@example.com",
                                 .confirmed = 3,
                                 .frozen = 3,
                                 .backend = "cpanel",
                                 .backend_done = CONFIG_ACTION_HOLD };
    struct dispatch_acted bad = ok;
    char acted_id[ALERTMSG_ID_MAX], inc_id[ALERTMSG_ID_MAX];
    size_t before, nacted = 0;

    bad.frozen = 1;
    bad.failed = 2;
    bad.backend_err = -EIO;
    env_init(&e, D_SLACK, 2);
    ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    fake_answer_all(&e.fh, 200);
    ck_assert_int_eq(dispatch_acted(e.d, &ok), 0);
    env_commit(&e);
    env_advance(&e, 5000);
    fake_answer_all(&e.fh, 200);
    before = e.fh.n;
    /* the same outcome again, then a failure: nothing new goes out under any id */
    ck_assert_int_eq(dispatch_acted(e.d, &ok), 0);
    ck_assert_int_eq(dispatch_acted(e.d, &bad), 0);
    ck_assert_int_eq(dispatch_acted(e.d, &ok), 0); /* a later success does not hide it */
    env_commit(&e);
    env_advance(&e, 60000);
    fake_answer_all(&e.fh, 200);
    ck_assert_uint_eq(e.fh.n, before);
    alertmsg_incident_id("host7", "mailbox-burst", SCOPE_MAILBOX, "a@example.com", T0, inc_id);
    ck_assert_int_eq(alertmsg_event_id(inc_id, "acted", acted_id, sizeof(acted_id)), 0);
    for (size_t i = 0; i < e.fh.n; i++) {
        const char *h = fake_hdr(&e.fh.v[i], "webhook-id");
        nacted += h && strcmp(h, acted_id) == 0;
    }
    ck_assert_uint_eq(nacted, 1);
    /* the release tells the failure, at both */
    ck_assert_int_eq(dispatch_released(e.d, SCOPE_MAILBOX, "a@example.com", 0), 0);
    env_commit(&e);
    env_advance(&e, 2000);
    fake_answer_all(&e.fh, 200);
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, before, "the actions had failed"), 1);
    ck_assert_uint_eq(fake_count_body(&e.fh, "https://hook.", before, "floodgate.trip.released"),
                      1);
    ck_assert_uint_eq(fake_count_body(&e.fh, "https://hook.", before, "\"error\":5"), 1);
    env_done(&e);
}
END_TEST

/* Without a detection time (an older caller), the log time stands in for it. */
START_TEST(test_dispatch_detected_fallback)
{
    struct env e;
    struct dispatch_trip t = trip_make("a@example.com", T0 - 5000, 412);
    const char *amurl = "https://am.example.net:9093/api/v2/alerts";

    env_init(&e, D_HOOK, 2);
    ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(am_check_times(&e.fh, amurl, 0, "2026-08-21T10:06:33.000Z"), 1);
    ck_assert_uint_eq(fake_count_body(&e.fh, "https://hook.", 0, "\"log_time\":null"), 1);
    ck_assert_uint_eq(fake_count_body(&e.fh, amurl, 0, "server local"), 0);
    env_done(&e);
}
END_TEST

/* --- follow-ups, digests of the same trip, expiry -------------------------------------- */

START_TEST(test_dispatch_followups_merge)
{
    struct env e;
    struct dispatch_trip t = trip_make("a@example.com", T0, 412);
    struct dispatch_trip t2 = trip_make("b@example.com", T0, 412);
    struct dispatch_acted a = { .scope = SCOPE_MAILBOX,
                                .id = "a@example.com",
                                .confirmed = 390,
                                .frozen = 388,
                                .backend = "cpanel",
                                .backend_done = CONFIG_ACTION_HOLD };

    env_init(&e, D_SLACK, 2);
    /* not sent yet: tripped and acted become one message */
    ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    ck_assert_int_eq(dispatch_acted(e.d, &a), 0);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(e.fh.n, 2);
    for (size_t i = 0; i < 2; i++) {
        const struct fake_req *q = &e.fh.v[i];
        ck_assert_ptr_nonnull(strstr(q->body, "invoice")); /* the trip's evidence too */
        if (fake_hdr(q, "webhook-id")) {
            ck_assert_ptr_nonnull(strstr(q->body, "\"messages\":388,\"confirmed\":390"));
            ck_assert_ptr_nonnull(strstr(fake_hdr(q, "webhook-id"), "_acted"));
            ck_assert_ptr_nonnull(strstr(q->body, "\"type\":\"floodgate.trip.acted\""));
        } else {
            ck_assert_ptr_nonnull(strstr(q->body, "Outbound spam stopped on host7"));
            ck_assert_ptr_nonnull(strstr(q->body, "froze 388 of 390 messages"));
        }
        fake_complete(&e.fh, i, 200, -1, "ok");
    }
    /* sent already: the follow-up is a second message */
    ck_assert_int_eq(dispatch_tripped(e.d, &t2), 0);
    env_commit(&e);
    env_advance(&e, 2000);
    ck_assert_uint_eq(e.fh.n, 4);
    fake_complete(&e.fh, 2, 200, -1, "ok");
    fake_complete(&e.fh, 3, 200, -1, "ok");
    a.id = "b@example.com";
    a.failed = 2;
    ck_assert_int_eq(dispatch_acted(e.d, &a), 0);
    ck_assert_int_eq(dispatch_released(e.d, SCOPE_MAILBOX, "b@example.com", 0), 0);
    env_commit(&e);
    for (int i = 0; i < 10; i++) {
        env_advance(&e, 1000);
        for (size_t k = 0; k < e.fh.n; k++)
            if (!e.fh.v[k].completed)
                fake_complete(&e.fh, k, 200, -1, "ok");
    }
    ck_assert_uint_eq(e.fh.n, 8);
    ck_assert_uint_eq(fake_count(&e.fh, SLACKURL, 4), 2);
    for (size_t i = 4; i < 8; i++) {
        const char *b = e.fh.v[i].body;
        ck_assert(strstr(b, "floodgate.trip.action_failed") || strstr(b, "actions failed") ||
                  strstr(b, "released"));
        ck_assert_ptr_null(strstr(b, "invoice")); /* shown once already */
    }
    env_done(&e);
}
END_TEST

START_TEST(test_dispatch_same_trip_once)
{
    struct env e;
    struct dispatch_trip t = trip_make("a@example.com", T0, 412);
    struct dispatch_trip later = trip_make("a@example.com", T0 + 5000, 900);

    env_init(&e, D_SLACK, 1);
    ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    ck_assert_int_eq(dispatch_tripped(e.d, &later), 0); /* re-trip while open */
    ck_assert_uint_eq(dispatch_open_incidents(e.d), 1);
    env_commit(&e);
    env_advance(&e, 10000);
    ck_assert_uint_eq(e.fh.n, 1);
    fake_complete(&e.fh, 0, 200, -1, "ok");
    env_advance(&e, 10000);
    ck_assert_uint_eq(e.fh.n, 1);
    /* after a release, a new trip is a new incident */
    ck_assert_int_eq(dispatch_released(e.d, SCOPE_MAILBOX, "a@example.com", T0 + 20000), 0);
    ck_assert_uint_eq(dispatch_open_incidents(e.d), 0);
    later.at_ms = T0 + 30000;
    ck_assert_int_eq(dispatch_tripped(e.d, &later), 0);
    ck_assert_uint_eq(dispatch_open_incidents(e.d), 1);
    env_done(&e);
}
END_TEST

START_TEST(test_dispatch_expiry)
{
    struct env e;
    struct dispatch_trip t = trip_make("a@example.com", T0, 412);
    struct dispatch_dest_stats st;

    struct dispatch_acted a = { .scope = SCOPE_MAILBOX, .id = "a@example.com", .frozen = 1 };

    env_init(&e, D_SLACK, 1);
    e.cfg.alerts.max_age_ms = 60000;
    ck_assert_int_eq(dispatch_set_config(e.d, &e.cfg), 0);
    ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    ck_assert_int_eq(dispatch_acted(e.d, &a), 0); /* merged: one entry */
    env_commit(&e);
    (void)dispatch_poll(e.d);
    fake_complete(&e.fh, 0, 404, -1, "no_service"); /* disabled: the entry waits */
    env_advance(&e, 59000);
    stats_of(&e, 0, &st);
    ck_assert_uint_eq(st.pending, 1);
    ck_assert_int_eq(st.oldest_ms, T0);
    env_advance(&e, 2000);
    stats_of(&e, 0, &st);
    ck_assert_uint_eq(st.pending, 0);
    ck_assert_uint_eq(st.expired, 1);
    ck_assert_uint_eq(e.fh.n, 1);
    env_done(&e);
}
END_TEST

/* --- test-alert ------------------------------------------------------------------------ */

struct alert_result {
    char dest[32];
    bool ok;
    int status;
};

static struct alert_result results[8];
static size_t nresults;

static void
on_test(void *ctx, const char *dest, bool ok, int status, const char *detail)
{
    (void)ctx;
    ck_assert_ptr_nonnull(detail);
    ck_assert_uint_lt(nresults, N_ELEMS(results));
    (void)snprintf(results[nresults].dest, sizeof(results[0].dest), "%s", dest);
    results[nresults].ok = ok;
    results[nresults++].status = status;
}

START_TEST(test_dispatch_test_alert)
{
    struct env e;
    struct dispatch_dest_stats st;

    nresults = 0;
    env_init(&e, D_SLACK, 3);
    ck_assert_int_eq(dispatch_test(e.d, on_test, NULL), 0);
    ck_assert_uint_eq(e.fh.n, 3); /* outside the outbox and the commit */
    ck_assert_uint_eq(nresults, 0);
    ck_assert_str_eq(e.fh.v[2].url, "https://am.example.net:9093/api/v2/alerts");
    ck_assert_ptr_nonnull(strstr(e.fh.v[1].body, "floodgate.test"));
    check_signature(&e.fh.v[1]);
    fake_complete(&e.fh, 0, 200, -1, "ok");
    fake_complete(&e.fh, 1, 500, -1, "");
    fake_complete(&e.fh, 2, 404, -1, "");
    ck_assert_uint_eq(nresults, 3);
    ck_assert_str_eq(results[0].dest, "slack");
    ck_assert(results[0].ok);
    ck_assert_str_eq(results[1].dest, "hook");
    ck_assert(!results[1].ok);
    ck_assert_int_eq(results[1].status, 500);
    ck_assert(!results[2].ok);
    ck_assert_int_eq(results[2].status, 404);
    /* a test does not disable anything nor count */
    stats_of(&e, 2, &st);
    ck_assert(st.enabled);
    ck_assert_uint_eq(st.pending, 0);
    env_done(&e);
}
END_TEST

START_TEST(test_dispatch_reload_removes)
{
    struct env e;
    struct dispatch_trip t = trip_make("a@example.com", T0, 412);
    struct dispatch_dest_stats st;

    env_init(&e, D_SLACK, 2);
    ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    ck_assert_uint_eq(dispatch_dest_count(e.d), 2);
    e.cfg.alerts.dests = &e.dests[D_HOOK];
    e.cfg.alerts.ndests = 1;
    ck_assert_int_eq(dispatch_set_config(e.d, &e.cfg), 0);
    ck_assert_uint_eq(dispatch_dest_count(e.d), 1);
    stats_of(&e, 0, &st);
    ck_assert_str_eq(st.name, "hook");
    ck_assert_uint_eq(st.pending, 1);
    ck_assert_uint_eq(dispatch_open_incidents(e.d), 1);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(e.fh.n, 1);
    ck_assert_uint_eq(fake_count(&e.fh, SLACKURL, 0), 0);
    env_done(&e);
}
END_TEST

/* --- the follow-up deadline, Slack's backlog, the outbox cap (§2.5, §5.1) ------------- */

START_TEST(test_dispatch_followup_deadline)
{
    struct env e;
    struct dispatch_trip ta = trip_make("a@example.com", T0, 412);
    struct dispatch_trip tb = trip_make("b@example.com", T0, 413);
    struct dispatch_trip tc = trip_make("c@example.com", T0, 414);
    struct dispatch_trip tm = trip_make("m@example.com", T0, 415);
    struct dispatch_acted ok = { .scope = SCOPE_MAILBOX, .confirmed = 9, .frozen = 9 };
    struct dispatch_acted bad = { .scope = SCOPE_MAILBOX,
                                  .confirmed = 9,
                                  .frozen = 7,
                                  .failed = 2,
                                  .backend = "cpanel",
                                  .backend_err = -EIO };
    size_t before;

    env_init(&e, D_SLACK, 2);
    ck_assert_int_eq(dispatch_tripped(e.d, &ta), 0);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    fake_answer_all(&e.fh, 200);
    ck_assert_uint_eq(e.fh.n, 2);
    /* no outcome within alerts.followup: Slack's follow-up goes then; the webhook waits */
    env_advance(&e, 29999);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(e.fh.n, 2);
    env_advance(&e, 1);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(e.fh.n, 3);
    ck_assert_str_eq(e.fh.v[2].url, SLACKURL);
    ck_assert_ptr_nonnull(strstr(e.fh.v[2].body, "the actions have not reported after 30s"));
    fake_answer_all(&e.fh, 200);
    /* the outcome comes later and is no news: Slack hears nothing more, the webhook gets it */
    ok.id = "a@example.com";
    ck_assert_int_eq(dispatch_acted(e.d, &ok), 0);
    env_commit(&e);
    env_advance(&e, 5000);
    ck_assert_uint_eq(fake_count(&e.fh, SLACKURL, 3), 0);
    ck_assert_uint_eq(fake_count_body(&e.fh, "https://hook.", 3, "floodgate.trip.acted"), 1);
    fake_answer_all(&e.fh, 200);

    /* b: a failure arriving while the follow-up is still unsent takes its place */
    ck_assert_int_eq(dispatch_tripped(e.d, &tb), 0);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    fake_answer_all(&e.fh, 200);
    before = e.fh.n;
    env_advance(&e, 30000); /* the follow-up is queued, waiting for its commit */
    ck_assert_uint_eq(e.fh.n, before);
    bad.id = "b@example.com";
    ck_assert_int_eq(dispatch_acted(e.d, &bad), 0);
    env_commit(&e);
    env_advance(&e, 2000);
    fake_answer_all(&e.fh, 200);
    ck_assert_uint_eq(fake_count(&e.fh, SLACKURL, before), 1);
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, before, "Outbound spam: actions failed"), 1);

    /* c: a failure after the follow-up went is told with the release, not on its own */
    ck_assert_int_eq(dispatch_tripped(e.d, &tc), 0);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    fake_answer_all(&e.fh, 200);
    env_advance(&e, 30000);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    fake_answer_all(&e.fh, 200);
    before = e.fh.n;
    bad.id = "c@example.com";
    ck_assert_int_eq(dispatch_acted(e.d, &bad), 0);
    env_commit(&e);
    env_advance(&e, 5000);
    fake_answer_all(&e.fh, 200);
    ck_assert_uint_eq(fake_count(&e.fh, SLACKURL, before), 0);
    ck_assert_uint_eq(
        fake_count_body(&e.fh, "https://hook.", before, "floodgate.trip.action_failed"), 1);
    ck_assert_int_eq(dispatch_released(e.d, SCOPE_MAILBOX, "c@example.com", 0), 0);
    env_commit(&e);
    env_advance(&e, 2000);
    fake_answer_all(&e.fh, 200);
    ck_assert_uint_eq(fake_count(&e.fh, SLACKURL, before), 1);
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, before, "the actions had failed"), 1);
    /* each incident: at most two Slack messages plus the release */
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "a@example.com"), 2);
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "b@example.com"), 2);
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "c@example.com"), 3);

    /* monitor mode: the dry run's outcome is awaited the same way */
    tm.monitor = true;
    before = e.fh.n;
    ck_assert_int_eq(dispatch_tripped(e.d, &tm), 0);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    fake_answer_all(&e.fh, 200);
    env_advance(&e, 30000);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, before, "monitor mode: the would-be"), 1);
    env_done(&e);
}
END_TEST

START_TEST(test_dispatch_slack_backlog_digest)
{
    struct env e;
    struct dispatch_dest_stats st;
    char id[32];

    env_init(&e, D_SLACK, 1);
    e.cfg.alerts.digest_threshold = 100; /* only the bucket decides here */
    for (int i = 0; i < 20; i++) {
        struct dispatch_trip t;
        (void)snprintf(id, sizeof(id), "u%02d@example.com", i);
        t = trip_make(id, T0 + i, 1);
        ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    }
    /* burst 3 at 1/s: the 13th leaves 10 s from now, the 14th would wait longer */
    stats_of(&e, 0, &st);
    ck_assert_uint_eq(st.pending, 13);
    env_commit(&e);
    for (int step = 0; step < 700; step++) {
        env_advance(&e, 100);
        fake_answer_all(&e.fh, 200);
        if (step % 10 == 0)
            env_commit(&e);
    }
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "Outbreak digest"), 1);
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "*7 incidents*"), 1);
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "u19@example.com"), 1);
    env_done(&e);
}
END_TEST

START_TEST(test_dispatch_cap_folds_into_digest)
{
    struct env e;
    struct dispatch_dest_stats st;
    char logbuf[8192];
    struct capture cap;
    size_t lines = 0;

    env_init(&e, D_SLACK, 1);
    e.cfg.alerts.max_pending = 4;
    e.cfg.alerts.digest_threshold = 100;
    ck_assert_int_eq(dispatch_set_config(e.d, &e.cfg), 0);
    trip_users(&e, 0, 3, 0, 1, 0);
    ck_assert_int_eq(dispatch_health(e.d, "tail_gap", "a gap"), 0);
    /* full: five more incidents are folded, nothing is dropped for them */
    trip_users(&e, 3, 8, 0, 500, 1);
    stats_of(&e, 0, &st);
    ck_assert_uint_eq(st.pending, 4);
    ck_assert_uint_eq(st.dropped, 0);
    /* a health event does not push anything out: it is dropped itself, and logged */
    capture_begin(&cap);
    env_advance(&e, 1000); /* health event ids carry their second */
    ck_assert_int_eq(dispatch_health(e.d, "tail_gap", "another gap"), 0);
    env_advance(&e, 1000);
    ck_assert_int_eq(dispatch_health(e.d, "tail_gap", "a third gap"), 0);
    env_advance(&e, 1000); /* a second loss within the minute: not logged yet */
    stats_of(&e, 0, &st);
    ck_assert_uint_eq(st.dropped, 2);
    /* the window closes: the digest pushes out the oldest health event, not an incident */
    env_advance(&e, 60000);
    capture_end(&cap, logbuf, sizeof(logbuf));
    stats_of(&e, 0, &st);
    ck_assert_uint_eq(st.pending, 4);
    ck_assert_uint_eq(st.dropped, 3);
    for (const char *p = logbuf; (p = strstr(p, "alerts lost:")) != NULL; p++)
        lines++;
    ck_assert_uint_eq(lines, 2); /* the first loss, then the rest a minute later */
    ck_assert_ptr_nonnull(strstr(logbuf, "alerts lost: 1 dropped"));
    ck_assert_ptr_nonnull(strstr(logbuf, "alerts lost: 2 dropped"));
    env_commit(&e);
    for (int i = 0; i < 20; i++) {
        env_advance(&e, 1000);
        fake_answer_all(&e.fh, 200);
    }
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "*5 incidents*"), 1);
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "u7@example.com"), 1);
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "gap"), 0);
    env_done(&e);
}
END_TEST

/*
 * A "released" that does not fit pushes out no other incident's entry: it takes the place of
 * its own incident's unsent message, else it goes into the digest, else it is counted lost.
 */
START_TEST(test_dispatch_release_at_cap)
{
    struct env e;
    struct dispatch_dest_stats st;

    env_init(&e, D_SLACK, 1);
    e.cfg.alerts.max_pending = 3;
    e.cfg.alerts.digest_threshold = 100;
    ck_assert_int_eq(dispatch_set_config(e.d, &e.cfg), 0);
    trip_users(&e, 0, 3, 0, 400, 1);
    ck_assert_int_eq(dispatch_released(e.d, SCOPE_MAILBOX, "u2@example.com", T0 + 60000), 0);
    stats_of(&e, 0, &st);
    ck_assert_uint_eq(st.pending, 3);
    ck_assert_uint_eq(st.dropped, 0);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(e.fh.n, 1); /* u0's tripped, in flight */
    /* u0's own message was attempted: its release joins the digest, nothing is pushed out */
    ck_assert_int_eq(dispatch_released(e.d, SCOPE_MAILBOX, "u0@example.com", T0 + 61000), 0);
    stats_of(&e, 0, &st);
    ck_assert_uint_eq(st.pending, 3);
    ck_assert_uint_eq(st.dropped, 0);
    for (int i = 0; i < 200; i++) {
        env_advance(&e, 1000);
        fake_answer_all(&e.fh, 200);
        env_commit(&e);
    }
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "u0@example.com"), 2); /* + digest */
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "u1@example.com"), 2); /* + 30 s */
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "u2@example.com"), 1);
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "Released"), 1); /* u2's */
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "*1 incidents*"), 1);
    stats_of(&e, 0, &st);
    ck_assert_uint_eq(st.pending, 0);
    ck_assert_uint_eq(st.dropped, 0);
    env_done(&e);

    /* a webhook with `individual`: the digest has the incident already, the release is lost */
    env_init(&e, D_HOOK, 1);
    e.cfg.alerts.max_pending = 2;
    e.cfg.alerts.digest_threshold = 1;
    ck_assert_int_eq(dispatch_set_config(e.d, &e.cfg), 0);
    trip_users(&e, 0, 2, 0, 400, 1);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(e.fh.n, 2); /* both in flight */
    ck_assert_int_eq(dispatch_released(e.d, SCOPE_MAILBOX, "u1@example.com", T0 + 60000), 0);
    stats_of(&e, 0, &st);
    ck_assert_uint_eq(st.pending, 2);
    ck_assert_uint_eq(st.dropped, 1);
    env_done(&e);
}
END_TEST

/*
 * A digest with no room is held, not lost, and after downtime it is tried once, for the
 * window the clock is in, not once per window elapsed.
 */
START_TEST(test_dispatch_digest_held_not_lost)
{
    struct env e;
    struct dispatch_dest_stats st;

    env_init(&e, D_SLACK, 1);
    e.cfg.alerts.max_pending = 2;
    e.cfg.alerts.digest_threshold = 2;
    ck_assert_int_eq(dispatch_set_config(e.d, &e.cfg), 0);
    trip_users(&e, 0, 3, 0, 400, 1);
    env_advance(&e, 10 * 60000); /* ten windows at once, the outbox full of incidents */
    stats_of(&e, 0, &st);
    ck_assert_uint_eq(st.pending, 2);
    ck_assert_uint_eq(st.dropped, 0);
    env_commit(&e);
    for (int i = 0; i < 90; i++) {
        env_advance(&e, 1000);
        fake_answer_all(&e.fh, 200);
        env_commit(&e);
    }
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "Outbreak digest"), 1);
    /* 2026-08-21T10:06:38Z + 10 min: the window the clock was in */
    ck_assert_uint_eq(
        fake_count_body(&e.fh, SLACKURL, 0, "*1 incidents* from 2026-08-21T10:16:38.000Z"), 1);
    stats_of(&e, 0, &st);
    ck_assert_uint_eq(st.pending, 0);
    ck_assert_uint_eq(st.dropped, 0);
    env_done(&e);

    /* one step, however long the downtime: 20 years of 1 s windows would never end */
    env_init(&e, D_SLACK, 1);
    e.cfg.alerts.max_pending = 2;
    e.cfg.alerts.digest_threshold = 2;
    e.cfg.alerts.digest_interval_ms = 1000;
    ck_assert_int_eq(dispatch_set_config(e.d, &e.cfg), 0);
    trip_users(&e, 0, 3, 0, 400, 1);
    env_advance(&e, 20 * 365 * 24 * 3600 * 1000LL + 500);
    stats_of(&e, 0, &st);
    ck_assert_uint_eq(st.pending, 2);
    ck_assert_uint_eq(st.dropped, 0);
    env_done(&e);
}
END_TEST

/* --- delivery durations ---------------------------------------------------------------- */

START_TEST(test_dispatch_delivery_histogram)
{
    struct env e;
    struct dispatch_trip t = trip_make("a@example.com", T0, 412);
    struct metrics_hist h;

    nresults = 0;
    env_init(&e, D_SLACK, 3);
    ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    ck_assert_uint_eq(e.fh.n, 3);
    for (size_t i = 0; i < 3; i++) {
        bool slack = strcmp(e.fh.v[i].url, SLACKURL) == 0;
        bool hook = strncmp(e.fh.v[i].url, "https://hook.", 13) == 0;
        fake_complete_ms(&e.fh, i, slack ? 500 : 200, -1, "", slack ? 300 : hook ? 4 : 45000);
    }
    env_advance(&e, 3000); /* Slack's retry */
    ck_assert_uint_eq(e.fh.n, 4);
    fake_complete_ms(&e.fh, 3, 200, -1, "ok", 7);
    /* test-alert is not a delivery */
    ck_assert_int_eq(dispatch_test(e.d, on_test, NULL), 0);
    for (size_t i = 4; i < e.fh.n; i++)
        fake_complete_ms(&e.fh, i, 200, -1, "", 100);

    dispatch_delivery_hist(e.d, ALERT_DEST_SLACK, &h);
    ck_assert_uint_eq(h.nbounds, 12);
    ck_assert(h.bounds[0] == 0.005 && h.bounds[11] == 30);
    ck_assert_uint_eq(h.counts[1], 1); /* 7 ms: (0.005, 0.01] */
    ck_assert_uint_eq(h.counts[6], 1); /* 300 ms: (0.25, 0.5] */
    ck_assert(h.sum > 0.306 && h.sum < 0.308);
    dispatch_delivery_hist(e.d, ALERT_DEST_WEBHOOK, &h);
    ck_assert_uint_eq(h.counts[0], 1); /* 4 ms */
    for (size_t k = 1; k <= h.nbounds; k++)
        ck_assert_uint_eq(h.counts[k], 0);
    dispatch_delivery_hist(e.d, ALERT_DEST_ALERTMANAGER, &h);
    ck_assert_uint_eq(h.counts[12], 1); /* 45 s: above the last bound */
    ck_assert_str_eq(alert_dest_type_name(ALERT_DEST_ALERTMANAGER), "alertmanager");
    ck_assert_str_eq(alert_dest_type_name(ALERT_DEST_SLACK), "slack");
    ck_assert_str_eq(alert_dest_type_name(ALERT_DEST_WEBHOOK), "webhook");
    env_done(&e);
}
END_TEST

/* --- restarts: the digest state -------------------------------------------------------- */

/*
 * The checkpoint cannot be written: no commit is ever done, so a gated alert never leaves,
 * but the urgent health event does, to every destination, at most once per 10 minutes.
 */
/* Two events of one kind in the same second: unkeyed they are one event id (the second is
 * a duplicate), keyed by what they are about they are two alerts. */
START_TEST(test_dispatch_health_keyed)
{
    struct env e;
    struct dispatch_dest_stats st;

    env_init(&e, D_SLACK, 1);
    ck_assert_int_eq(dispatch_health(e.d, "dnsbl_listed", "first"), 0);
    ck_assert_int_eq(dispatch_health(e.d, "dnsbl_listed", "second"), 0);
    stats_of(&e, 0, &st);
    ck_assert_uint_eq(st.pending, 1);
    ck_assert_int_eq(dispatch_health_keyed(e.d, "dnsbl_listed", "192.0.2.25 a.example", "in-a"), 0);
    ck_assert_int_eq(dispatch_health_keyed(e.d, "dnsbl_listed", "192.0.2.25 b.example", "in-b"), 0);
    ck_assert_int_eq(dispatch_health_keyed(e.d, "dnsbl_listed", "192.0.2.25 b.example", "in-b"), 0);
    stats_of(&e, 0, &st);
    ck_assert_uint_eq(st.pending, 3);
    env_commit(&e);
    for (int i = 0; i < 4; i++) { /* Slack: one in flight at a time */
        env_advance(&e, 2000);
        fake_answer_all(&e.fh, 200);
    }
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "first"), 1);
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "second"), 0);
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "in-a"), 1);
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "in-b"), 1);
    env_done(&e);
}
END_TEST

START_TEST(test_dispatch_health_urgent_skips_commit)
{
    struct env e;
    struct dispatch_trip t = trip_make("u1@example.com", T0, 400);
    size_t before;

    env_init(&e, D_SLACK, 3);
    ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    (void)dispatch_commit_begin(e.d); /* a save started and failed: never done */
    ck_assert_int_eq(dispatch_health(e.d, "tail_gap", "gated"), 0);
    env_advance(&e, 5000);
    ck_assert_uint_eq(e.fh.n, 0); /* nothing leaves before a commit */
    ck_assert_int_eq(
        dispatch_health_urgent(e.d, "state_unwritable",
                               "checkpoint cannot be written: /s/state: No space left on device"),
        0);
    env_advance(&e, 100);
    ck_assert_uint_eq(fake_count(&e.fh, SLACKURL, 0), 1);
    ck_assert_uint_eq(fake_count(&e.fh, "https://hook.example.net/", 0), 1);
    ck_assert_uint_eq(fake_count(&e.fh, "https://am.example.net:9093/", 0), 1);
    ck_assert_uint_eq(fake_count_body(&e.fh, "https://", 0, "checkpoint cannot be written"), 3);
    ck_assert_uint_eq(fake_count_body(&e.fh, "https://", 0, "gated"), 0);
    ck_assert_uint_eq(fake_count_body(&e.fh, "https://", 0, "u1@example.com"), 0);
    fake_answer_all(&e.fh, 200);
    /* rate-limited: a second one within 10 minutes is refused, one after is sent */
    before = e.fh.n;
    env_advance(&e, 60000);
    ck_assert_int_eq(dispatch_health_urgent(e.d, "state_unwritable", "again"), -EALREADY);
    env_advance(&e, 600000);
    ck_assert_uint_eq(fake_count_body(&e.fh, "https://", before, "again"), 0);
    ck_assert_int_eq(dispatch_health_urgent(e.d, "state_unwritable", "later"), 0);
    env_advance(&e, 100);
    ck_assert_uint_eq(fake_count_body(&e.fh, "https://", before, "later"), 3);
    ck_assert_uint_eq(fake_count_body(&e.fh, "https://", 0, "u1@example.com"), 0);
    fake_answer_all(&e.fh, 200);
    /* the gated ones go once a commit is done */
    env_commit(&e);
    env_advance(&e, 100);
    ck_assert_uint_ge(fake_count_body(&e.fh, "https://", before, "u1@example.com"), 1);
    env_done(&e);
}
END_TEST

/* An unconfirmed or ledger-failed outcome survives a restart as it was told. */
START_TEST(test_dispatch_unconfirmed_roundtrip)
{
    struct env e;
    struct strbuf s, s2;
    struct dispatch_trip t = trip_make("u1@example.com", T0, 400);
    struct dispatch_acted a = { .scope = SCOPE_MAILBOX,
                                .id = "u1@example.com",
                                .backend = "cpanel",
                                .unconfirmed = true,
                                .candidates = 7,
                                .ledger_err = -ENOSPC };

    env_init(&e, D_HOOK, 1);
    ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    ck_assert_int_eq(dispatch_acted(e.d, &a), 0);
    strbuf_init(&s, 1u << 20);
    strbuf_init(&s2, 1u << 20);
    ck_assert_int_eq(dispatch_encode(e.d, &s), 0);
    ck_assert_ptr_nonnull(strstr(s.p, " 1 7 28\n"));
    dispatch_free(e.d);
    e.d = env_dispatch(&e);
    ck_assert_int_eq(dispatch_decode(e.d, s.p, s.len), 0);
    ck_assert_int_eq(dispatch_encode(e.d, &s2), 0);
    ck_assert_ptr_nonnull(strstr(s2.p, " 1 7 28\n"));
    strbuf_done(&s);
    strbuf_done(&s2);
    env_commit(&e);
    env_advance(&e, 100);
    ck_assert_uint_ge(fake_count_body(&e.fh, "https://", 0, "floodgate.trip.unconfirmed"), 1);
    env_done(&e);
}
END_TEST

START_TEST(test_dispatch_restart_keeps_digest)
{
    struct env e;
    struct strbuf s;
    struct dispatch_acted a = { .scope = SCOPE_MAILBOX, .id = "u3@example.com", .frozen = 1 };

    env_init(&e, D_SLACK, 1);
    e.cfg.alerts.digest_threshold = 2;
    trip_users(&e, 0, 5, 1, 400, 1);
    env_commit(&e);
    (void)dispatch_poll(e.d);
    fake_answer_all(&e.fh, 200);
    strbuf_init(&s, 1u << 30);
    ck_assert_int_eq(dispatch_encode(e.d, &s), 0);
    ck_assert_ptr_nonnull(strstr(s.p, "FLOODGATE-DISPATCH 5\n"));
    dispatch_free(e.d);
    e.d = env_dispatch(&e);
    ck_assert_int_eq(dispatch_decode(e.d, s.p, s.len), 0);
    strbuf_done(&s);
    env_advance(&e, 10000);
    fake_answer_all(&e.fh, 200);
    /* a held incident's outcome is not sent on its own; a new trip joins the digest */
    ck_assert_int_eq(dispatch_acted(e.d, &a), 0);
    {
        struct dispatch_trip t = trip_make("u5@example.com", T0 + 5, 405);
        ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    }
    env_commit(&e);
    for (int i = 0; i < 60; i++) {
        env_advance(&e, 1000);
        fake_answer_all(&e.fh, 200);
        env_commit(&e);
    }
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "Outbreak digest"), 1);
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "*4 incidents*"), 1);
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "u3@example.com"), 1); /* the digest */
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "u5@example.com"), 1);
    env_done(&e);
}
END_TEST

/*
 * A digest counts the outcomes of its own incidents only: not those of incidents an earlier,
 * already sent digest summarized, across a restart too. It never reports more acted than
 * incidents.
 */
START_TEST(test_dispatch_digest_counts_own_window)
{
    struct env e;
    struct strbuf s;
    char id[32];

    env_init(&e, D_SLACK, 1);
    e.cfg.alerts.digest_threshold = 1;
    trip_users(&e, 0, 3, 0, 400, 1);
    env_commit(&e);
    for (int i = 0; i < 61; i++) {
        env_advance(&e, 1000);
        fake_answer_all(&e.fh, 200);
        env_commit(&e);
    }
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "*2 incidents*"), 1);
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "actions finished for 0,"), 1);
    {
        struct dispatch_trip t = trip_make("u3@example.com", T0 + 61000, 403);
        ck_assert_int_eq(dispatch_tripped(e.d, &t), 0); /* digest mode: the next digest's */
    }
    strbuf_init(&s, 1u << 30);
    ck_assert_int_eq(dispatch_encode(e.d, &s), 0);
    dispatch_free(e.d);
    e.d = env_dispatch(&e);
    ck_assert_int_eq(dispatch_decode(e.d, s.p, s.len), 0);
    strbuf_done(&s);
    for (int i = 1; i < 4; i++) {
        struct dispatch_acted a = { .scope = SCOPE_MAILBOX, .id = id, .frozen = 1 };
        (void)snprintf(id, sizeof(id), "u%d@example.com", i);
        ck_assert_int_eq(dispatch_acted(e.d, &a), 0);
    }
    env_commit(&e);
    for (int i = 0; i < 61; i++) {
        env_advance(&e, 1000);
        fake_answer_all(&e.fh, 200);
        env_commit(&e);
    }
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "Outbreak digest"), 2);
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "*1 incidents*"), 1);
    ck_assert_uint_eq(fake_count_body(&e.fh, SLACKURL, 0, "actions finished for 1,"), 1);
    env_done(&e);
}
END_TEST

START_TEST(test_dispatch_decode_version1)
{
    struct env e;
    struct strbuf s, ob;
    struct outbox *empty = NULL;
    struct outbox_limits lim = { 0 };
    struct dispatch_trip t = trip_make("a@example.com", T0, 412);
    struct dispatch_dest_stats st;
    char id[ALERTMSG_ID_MAX];
    unsigned long crc;

    env_init(&e, D_SLACK, 1);
    e.cfg.alerts.digest_threshold = 1;
    /* a version 1 file: a disabled destination, one incident, an empty outbox */
    alertmsg_incident_id("host7", "mailbox-burst", SCOPE_MAILBOX, "old@example.com", T0, id);
    strbuf_init(&s, 1u << 20);
    strbuf_init(&ob, 1u << 20);
    ck_assert_int_eq(outbox_new(&lim, &empty), 0);
    ck_assert_int_eq(outbox_encode(empty, &ob), 0);
    outbox_free(empty);
    ck_assert_int_eq(strbuf_printf(&s,
                                   "FLOODGATE-DISPATCH 1\nD slack 0\n"
                                   "I %s 0 %lld 0 0 600000 412 300 0 1 9 9 0 0 0 0 13 15 8 10 6\n"
                                   "mailbox-burstold@example.comexamplecrecipientscpanel\n"
                                   "O %zu\n",
                                   id, (long long)T0, ob.len),
                     0);
    ck_assert_int_eq(strbuf_append(&s, ob.p, ob.len), 0);
    ck_assert_int_eq(strbuf_append(&s, "\n", 1), 0);
    crc = crc32(0L, (const Bytef *)s.p, (uInt)s.len);
    ck_assert_int_eq(strbuf_printf(&s, "END %08lx\n", crc), 0);
    ck_assert_int_eq(dispatch_decode(e.d, s.p, s.len), 0);
    ck_assert_uint_eq(dispatch_open_incidents(e.d), 1);
    stats_of(&e, 0, &st);
    ck_assert(st.enabled); /* an older file cannot tell whether the URL changed: tried again */
    /* no detection time in an older file: the log time stands in, no log text */
    {
        struct strbuf re;
        char want[96];

        strbuf_init(&re, 1u << 20);
        ck_assert_int_eq(dispatch_encode(e.d, &re), 0);
        (void)snprintf(want, sizeof(want), " %lld 0 0 0 0 0\nmailbox-burstold@example.com",
                       (long long)T0);
        ck_assert_ptr_nonnull(strstr(re.p, want));
        strbuf_done(&re);
    }
    /* no window was open: the next trip is the first of a new one, sent on its own */
    ck_assert_int_eq(dispatch_tripped(e.d, &t), 0);
    stats_of(&e, 0, &st);
    ck_assert_uint_eq(st.pending, 1);
    /* and a version 1 line in a version 2 file is refused */
    memcpy(s.p, "FLOODGATE-DISPATCH 2", 20);
    s.len -= 13;
    crc = crc32(0L, (const Bytef *)s.p, (uInt)s.len);
    ck_assert_int_eq(strbuf_printf(&s, "END %08lx\n", crc), 0);
    ck_assert_int_eq(dispatch_decode(e.d, s.p, s.len), -EBADMSG);
    strbuf_done(&s);
    strbuf_done(&ob);
    env_done(&e);
}
END_TEST

static Suite *
dispatch_suite(void)
{
    Suite *s = suite_create("dispatch");
    TCase *tc = tcase_create("delivery");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_dispatch_waits_for_commit);
    tcase_add_test(tc, test_dispatch_retry_same_body);
    tcase_add_test(tc, test_dispatch_retry_after_halves_bucket);
    tcase_add_test(tc, test_dispatch_400_permanent);
    tcase_add_test(tc, test_dispatch_shared_slack_bucket);
    tcase_add_test(tc, test_dispatch_disable_and_enable);
    tcase_add_test(tc, test_dispatch_reload_retries_now);
    tcase_add_test(tc, test_dispatch_auth_pause);
    tcase_add_test(tc, test_dispatch_failures_logged);
    tcase_add_test(tc, test_dispatch_expiry);
    tcase_add_test(tc, test_dispatch_test_alert);
    tcase_add_test(tc, test_dispatch_reload_removes);
    tcase_add_test(tc, test_dispatch_cap_folds_into_digest);
    tcase_add_test(tc, test_dispatch_release_at_cap);
    tcase_add_test(tc, test_dispatch_digest_held_not_lost);
    tcase_add_test(tc, test_dispatch_delivery_histogram);
    suite_add_tcase(s, tc);
    tc = tcase_create("incidents");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_dispatch_followups_merge);
    tcase_add_test(tc, test_dispatch_same_trip_once);
    tcase_add_test(tc, test_dispatch_outbreak_bounded);
    tcase_add_test(tc, test_dispatch_am_resend_and_resolve);
    tcase_add_test(tc, test_dispatch_followup_deadline);
    tcase_add_test(tc, test_dispatch_slack_backlog_digest);
    tcase_add_test(tc, test_dispatch_log_time_local);
    tcase_add_test(tc, test_dispatch_detected_fallback);
    tcase_add_test(tc, test_dispatch_second_outcome);
    suite_add_tcase(s, tc);
    tc = tcase_create("restart");
    tcase_add_test(tc, test_dispatch_restart_resends);
    tcase_add_test(tc, test_dispatch_restart_new_url);
    tcase_add_test(tc, test_dispatch_crash_after_200);
    tcase_add_test(tc, test_dispatch_restart_keeps_digest);
    tcase_add_test(tc, test_dispatch_health_urgent_skips_commit);
    tcase_add_test(tc, test_dispatch_health_keyed);
    tcase_add_test(tc, test_dispatch_unconfirmed_roundtrip);
    tcase_add_test(tc, test_dispatch_digest_counts_own_window);
    tcase_add_test(tc, test_dispatch_decode_version1);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(dispatch_suite());
}
