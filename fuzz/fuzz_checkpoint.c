/*
 * The daemon's state file: "FLOODGATE-STATE 3\n" (or 2), the tail checkpoint as a
 * "<length>\n" section (state_checkpoint_decode), "<n>\n" and n rule names, with version 3
 * the dispatcher's section (its own harness, fuzz_dispatch), then the counters snapshot
 * (usertable_load into a table with the series of a small fixed config). The framing is
 * read as the daemon reads it (daemon/live.c, live_state_load_file).
 *
 * Both checksums stop almost every mutation early, so each input is also tried with its
 * checkpoint CRC and snapshot CRC recomputed. Invariants: whatever decodes encodes back to
 * the same value (checkpoint: decode(encode(x)) == x and encode is canonical; snapshot:
 * save, load into a fresh table, save again gives the same bytes), a failed load leaves
 * the table empty, and the table never holds more identities than its cap.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "engine.h"
#include "fuzz.h"
#include "state.h"

#define MAGIC_3 "FLOODGATE-STATE 3\n"
#define MAGIC_2 "FLOODGATE-STATE 2\n"
#define CAP     64

static const char fuzz_yaml[] = "mode: monitor\n"
                                "max_identities: 64\n"
                                "rules:\n"
                                "  - {name: m, scope: mailbox, metric: messages, window: 1m, "
                                "above: 2, actions: [alert]}\n"
                                "  - {name: r, scope: mailbox, metric: recipients, window: 10m, "
                                "above: 3, actions: [alert]}\n"
                                "  - {name: d, scope: account, metric: domains, window: 1h, "
                                "above: 2, actions: [alert]}\n"
                                "  - {name: s, scope: script, metric: messages, window: 5m, "
                                "above: 1, actions: [alert]}\n";

static struct usertable_params params; /* the daemon's table for fuzz_yaml, capped */

int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct config *cfg = fuzz_config(fuzz_yaml);
    struct engine_params ep = { .cfg = cfg, .key = { 9 } };
    struct engine *e = NULL;

    (void)argc;
    (void)argv;
    if (engine_new(&ep, &e) < 0)
        abort();
    params = *usertable_params(engine_table(e));
    params.cap = CAP;
    engine_free(e);
    config_free(cfg);
    return 0;
}

/* "<n>\n" then n bytes, as the daemon reads a section. */
static int
section(const char **pp, const char *end, const char **ret, size_t *ret_len)
{
    const char *p = *pp, *nl = memchr(p, '\n', (size_t)(end - p));
    uint64_t v;

    if (!nl || util_parse_u64(p, (size_t)(nl - p), &v) < 0 || v > (uint64_t)(end - nl - 1))
        return -EBADMSG;
    *ret = nl + 1;
    *ret_len = (size_t)v;
    *pp = nl + 1 + v;
    return 0;
}

/* "<n>\n" and n names, one a line. */
static int
rule_names(const char **pp, const char *end, char names[][CONFIG_NAME_MAX], size_t *ret_n)
{
    const char *p = *pp, *nl = memchr(p, '\n', (size_t)(end - p));
    uint64_t n;

    if (!nl || util_parse_u64(p, (size_t)(nl - p), &n) < 0 || n > CONFIG_RULES_MAX)
        return -EBADMSG;
    p = nl + 1;
    for (size_t i = 0; i < n; i++) {
        nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return -EBADMSG;
        (void)snprintf(names[i], CONFIG_NAME_MAX, "%.*s", (int)(nl - p), p);
        p = nl + 1;
    }
    *pp = p;
    *ret_n = (size_t)n;
    return 0;
}

static bool
pos_eq(const struct tail_pos *a, const struct tail_pos *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->offset == b->offset &&
           a->fp_len == b->fp_len && memcmp(a->fp, b->fp, sizeof(a->fp)) == 0 &&
           a->marker_len == b->marker_len && a->marker == b->marker;
}

static void
check_checkpoint(const char *text, size_t len)
{
    struct tail_pos pos, again;
    char buf[STATE_CHECKPOINT_MAX], buf2[STATE_CHECKPOINT_MAX];
    int r, n, n2;

    memset(&pos, 0x5a, sizeof(pos));
    r = state_checkpoint_decode(text, len, &pos);
    FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -EPROTONOSUPPORT);
    if (r < 0)
        return;
    FUZZ_CHECK(pos.ino != 0 && pos.marker_len <= pos.offset);
    n = state_checkpoint_encode(&pos, buf, sizeof(buf));
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof(buf));
    FUZZ_CHECK(state_checkpoint_decode(buf, (size_t)n, &again) == 0);
    FUZZ_CHECK(pos_eq(&pos, &again));
    n2 = state_checkpoint_encode(&again, buf2, sizeof(buf2));
    FUZZ_CHECK(n2 == n && memcmp(buf, buf2, (size_t)n) == 0);
}

static int
collect(void *ctx, const void *p, size_t n)
{
    return strbuf_append(ctx, p, n);
}

static void
check_snapshot(const char *p, size_t len)
{
    struct usertable *t = usertable_new(&params), *t2 = usertable_new(&params);
    struct strbuf a, b;
    int r;

    if (!t || !t2)
        abort();
    r = usertable_load(t, p, len);
    FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -EINVAL || r == -ENOMEM);
    FUZZ_CHECK(usertable_count(t) <= CAP);
    if (r < 0) {
        FUZZ_CHECK(usertable_count(t) == 0);
        goto out;
    }
    strbuf_init(&a, 64u << 20);
    strbuf_init(&b, 64u << 20);
    FUZZ_CHECK(usertable_save(t, collect, &a) == 0);
    FUZZ_CHECK(usertable_load(t2, a.p, a.len) == 0);
    FUZZ_CHECK(usertable_count(t2) == usertable_count(t));
    FUZZ_CHECK(usertable_save(t2, collect, &b) == 0);
    FUZZ_CHECK(a.len == b.len && memcmp(a.p, b.p, a.len) == 0);
    strbuf_done(&a);
    strbuf_done(&b);
out:
    usertable_free(t);
    usertable_free(t2);
}

/* One state file: 0 when its framing held (whatever its parts decoded to). */
static void
check_state(const char *buf, size_t len)
{
    const char *p = buf, *end = buf + len, *text, *alerts;
    char names[CONFIG_RULES_MAX][CONFIG_NAME_MAX];
    size_t tlen, alen, nnames = 0;
    int version;

    if (len >= strlen(MAGIC_3) && memcmp(p, MAGIC_3, strlen(MAGIC_3)) == 0)
        version = 3;
    else if (len >= strlen(MAGIC_2) && memcmp(p, MAGIC_2, strlen(MAGIC_2)) == 0)
        version = 2;
    else
        return;
    p += strlen(MAGIC_3);
    if (section(&p, end, &text, &tlen) < 0)
        return;
    check_checkpoint(text, tlen);
    if (rule_names(&p, end, names, &nnames) < 0)
        return;
    if (version >= 3 && section(&p, end, &alerts, &alen) < 0)
        return;
    (void)nnames; /* the daemon remaps trips by these names (lib/engine) */
    check_snapshot(p, (size_t)(end - p));
}

/*
 * The same file with both checksums made right: the checkpoint's "crc" line rewritten
 * (added when missing), the snapshot's trailing CRC-32 recomputed. NULL when the framing
 * does not hold.
 */
static char *
repair(const char *buf, size_t len, size_t *ret_len)
{
    const char *p = buf, *end = buf + len, *text, *rest, *tail;
    size_t tlen, keep, tail_len;
    char *out, *o;
    uLong crc;

    if (len < strlen(MAGIC_3) || memcmp(buf, MAGIC_3, strlen(MAGIC_3) - 2) != 0)
        return NULL;
    p += strlen(MAGIC_3);
    if (section(&p, end, &text, &tlen) < 0)
        return NULL;
    rest = p;
    /* the checkpoint text up to its crc line (or all of it) */
    keep = tlen;
    for (size_t i = 0; i + 4 <= tlen; i++)
        if ((i == 0 || text[i - 1] == '\n') && memcmp(text + i, "crc ", 4) == 0)
            keep = i;
    out = malloc(len + 64);
    if (!out)
        abort();
    o = out;
    memcpy(o, buf, strlen(MAGIC_3));
    o += strlen(MAGIC_3);
    crc = crc32(0L, (const Bytef *)text, (uInt)keep);
    o += sprintf(o, "%zu\n", keep + 13);
    memcpy(o, text, keep);
    o += keep;
    o += sprintf(o, "crc %08lx\n", crc);
    tail = rest;
    tail_len = (size_t)(end - rest);
    memcpy(o, tail, tail_len);
    o += tail_len;
    *ret_len = (size_t)(o - out);
    /* the snapshot is the end of the file: its last 4 bytes are the CRC of the rest */
    {
        const char *q = out + strlen(MAGIC_3), *qend = o, *t2, *al;
        char names[CONFIG_RULES_MAX][CONFIG_NAME_MAX];
        size_t t2len, alen, nn;

        if (section(&q, qend, &t2, &t2len) == 0 && rule_names(&q, qend, names, &nn) == 0 &&
            (out[16] != '3' || section(&q, qend, &al, &alen) == 0) && qend - q >= 12) {
            size_t ulen = (size_t)(qend - q);
            uLong c = crc32(crc32(0L, Z_NULL, 0), (const Bytef *)q, (uInt)(ulen - 4));
            unsigned char *w = (unsigned char *)out + (q - out) + ulen - 4;

            w[0] = (unsigned char)c;
            w[1] = (unsigned char)(c >> 8);
            w[2] = (unsigned char)(c >> 16);
            w[3] = (unsigned char)(c >> 24);
        }
    }
    return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t rlen;
    char *fixed;

    check_state((const char *)data, size);
    fixed = repair((const char *)data, size, &rlen);
    if (fixed) {
        check_state(fixed, rlen);
        free(fixed);
    }
    return 0;
}
