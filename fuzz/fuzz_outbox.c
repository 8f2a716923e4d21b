/*
 * The outbox encoding (outbox_decode), as read back from the state file. Each input is
 * also tried with its "END <count> <crc>" trailer recomputed, since the CRC stops almost
 * every mutation. Invariants: a decode that fails leaves the outbox exactly as it was (all
 * or nothing); one that succeeds holds the trailer's count, within the limits' names, and
 * re-encodes to bytes that decode to the same encoding again.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "fuzz.h"
#include "outbox.h"

static const struct outbox_limits lim = { .max_entries = 20,
                                          .max_bytes = 1u << 16,
                                          .max_age_ms = 86400000 };

static struct outbox *
outbox_make(void)
{
    struct outbox *ob = NULL;

    if (outbox_new(&lim, &ob) < 0)
        abort();
    return ob;
}

/* An outbox with one entry, to see that a failed decode leaves it alone. */
static struct outbox *
outbox_one(void)
{
    struct outbox *ob = outbox_make();

    if (outbox_add(ob, "hook", "fg_before", OUTBOX_PRIO_INCIDENT, 1000, "{}", 2) != 0)
        abort();
    return ob;
}

static void
check(const char *buf, size_t len)
{
    struct outbox *ob = outbox_one(), *again = outbox_make();
    struct strbuf before, a, b;
    int r;

    strbuf_init(&before, 1u << 26);
    strbuf_init(&a, 1u << 26);
    strbuf_init(&b, 1u << 26);
    FUZZ_CHECK(outbox_encode(ob, &before) == 0);
    r = outbox_decode(ob, buf, len);
    FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -ENOMEM);
    FUZZ_CHECK(outbox_encode(ob, &a) == 0);
    if (r < 0) {
        FUZZ_CHECK(a.len == before.len && memcmp(a.p, before.p, a.len) == 0);
        goto out;
    }
    FUZZ_CHECK(outbox_count(ob, NULL) <= len);
    for (size_t i = 0; i < outbox_count(ob, NULL); i++) {
        struct outbox_entry *e = outbox_at(ob, i);
        FUZZ_CHECK(e && outbox_name_valid(e->dest) && outbox_name_valid(e->event_id));
        FUZZ_CHECK(!e->inflight && e->tag == 0 && e->body_len <= len);
        FUZZ_CHECK(outbox_find(ob, e->dest, e->event_id) == e); /* the index agrees */
        FUZZ_CHECK(outbox_dest_ix(ob, e->dest) == e->dest_ix);
    }
    FUZZ_CHECK(outbox_decode(again, a.p, a.len) == 0);
    FUZZ_CHECK(outbox_count(again, NULL) == outbox_count(ob, NULL));
    FUZZ_CHECK(outbox_encode(again, &b) == 0);
    FUZZ_CHECK(a.len == b.len && memcmp(a.p, b.p, a.len) == 0);
out:
    strbuf_done(&before);
    strbuf_done(&a);
    strbuf_done(&b);
    outbox_free(ob);
    outbox_free(again);
}

/* @buf with its last line replaced by "END <count> <crc of the rest>". */
static char *
repair(const char *buf, size_t len, size_t *ret_len)
{
    const char *last = buf + len;
    unsigned long long count = 0;
    size_t keep;
    char *out;

    if (len && buf[len - 1] == '\n')
        last--;
    while (last > buf && last[-1] != '\n')
        last--;
    keep = (size_t)(last - buf);
    if (len - keep > 4 && memcmp(last, "END ", 4) == 0)
        count = strtoull(last + 4, NULL, 10) % 1000; /* stops at the first non-digit */
    else
        keep = len; /* no trailer: add one */
    if (keep && buf[keep - 1] != '\n')
        return NULL;
    out = malloc(keep + 64);
    if (!out)
        abort();
    memcpy(out, buf, keep);
    *ret_len = keep + (size_t)sprintf(out + keep, "END %llu %08lx\n", count,
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
    if (fixed) {
        check(fixed, rlen);
        free(fixed);
    }
    return 0;
}
