/*
 * The alert dispatcher's section of the state file (dispatch_decode), for a fixed
 * configuration with a Slack, a webhook and an Alertmanager destination. Each input is
 * also tried with its "END <crc>" trailer recomputed. Invariants: a decode that fails
 * changes nothing (the dispatcher encodes as before); one that succeeds re-encodes to
 * bytes that a fresh dispatcher decodes and encodes to the very same bytes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "clock.h"
#include "dispatch.h"
#include "fuzz.h"

#define T0 1767225600000LL

static struct config *cfg;
static struct clock_fake cf;
static struct clock clk;

int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cfg = fuzz_config(fuzz_alerts_yaml);
    clk = clock_fake_init(&cf, T0);
    return 0;
}

/* A dispatcher holding one open incident, so that "changes nothing" means something. */
static struct dispatch *
dispatch_one(void)
{
    struct dispatch *d = fuzz_dispatch(cfg, &clk);
    struct dispatch_trip t = { .rule = "m",
                               .scope = SCOPE_MAILBOX,
                               .id = "before@example.com",
                               .metric = "messages",
                               .window_ms = 60000,
                               .value = 9,
                               .limit = 2,
                               .at_ms = T0 - 5000,
                               .log_time = "2025-12-31 23:59:55" };

    if (dispatch_tripped(d, &t) < 0)
        abort();
    return d;
}

static void
check(const char *buf, size_t len)
{
    struct dispatch *d = dispatch_one(), *again = fuzz_dispatch(cfg, &clk);
    struct strbuf before, a, b;
    int r;

    strbuf_init(&before, 1u << 26);
    strbuf_init(&a, 1u << 26);
    strbuf_init(&b, 1u << 26);
    FUZZ_CHECK(dispatch_encode(d, &before) == 0);
    r = dispatch_decode(d, buf, len);
    FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -ENOMEM);
    FUZZ_CHECK(dispatch_encode(d, &a) == 0);
    if (r < 0) {
        FUZZ_CHECK(a.len == before.len && memcmp(a.p, before.p, a.len) == 0);
        goto out;
    }
    FUZZ_CHECK(dispatch_decode(again, a.p, a.len) == 0);
    FUZZ_CHECK(dispatch_encode(again, &b) == 0);
    if (a.len != b.len || memcmp(a.p, b.p, a.len) != 0)
        (void)fprintf(stderr, "first encoding:\n%.*s\nsecond:\n%.*s\n", (int)a.len, a.p, (int)b.len,
                      b.p);
    FUZZ_CHECK(a.len == b.len && memcmp(a.p, b.p, a.len) == 0);
    /* the dispatcher still works on what it decoded */
    (void)dispatch_released(d, SCOPE_MAILBOX, "before@example.com", T0);
    (void)dispatch_poll(d);
out:
    strbuf_done(&before);
    strbuf_done(&a);
    strbuf_done(&b);
    dispatch_free(d);
    dispatch_free(again);
}

/* @buf with its trailer "END <crc32 of the rest, 8 hex>\n" recomputed (added if missing). */
static char *
repair(const char *buf, size_t len, size_t *ret_len)
{
    size_t keep = len;
    char *out;

    if (len >= 13 && memcmp(buf + len - 13, "END ", 4) == 0)
        keep = len - 13;
    out = malloc(keep + 16);
    if (!out)
        abort();
    memcpy(out, buf, keep);
    *ret_len = keep + (size_t)sprintf(out + keep, "END %08lx\n",
                                      crc32(0L, (const Bytef *)buf, (uInt)keep));
    return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t rlen;
    char *fixed;

    check((const char *)data, size);
    fixed = repair((const char *)data, size, &rlen);
    check(fixed, rlen);
    free(fixed);
    return 0;
}
