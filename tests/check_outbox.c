/*
 * check_outbox.c - lib/outbox: idempotent insert, due order, retry and done, the limits
 * (lowest priority and oldest first, never one in flight nor one that matters more than
 * the newcomer; room without dropping), expiry, and the encoding: a
 * round trip keeps every field and body byte, any damage is refused and changes nothing;
 * and a random run checked step by step against a model that does everything by scanning.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <zlib.h>

#include "outbox.h"
#include "testrun.h"
#include "util.h"

static struct outbox *
outbox_make(size_t entries, size_t bytes)
{
    struct outbox_limits lim = { .max_entries = entries,
                                 .max_bytes = bytes,
                                 .max_age_ms = 3600000 };
    struct outbox *ob = NULL;

    ck_assert_int_eq(outbox_new(&lim, &ob), 0);
    return ob;
}

START_TEST(test_outbox_add_idempotent)
{
    struct outbox *ob = outbox_make(0, 0);

    ck_assert_int_eq(outbox_add(ob, "slack", "fg_a_tripped", OUTBOX_PRIO_INCIDENT, 10, "x", 1), 0);
    ck_assert_int_eq(outbox_add(ob, "slack", "fg_a_tripped", OUTBOX_PRIO_INCIDENT, 11, "y", 1), 1);
    ck_assert_int_eq(outbox_add(ob, "hook", "fg_a_tripped", OUTBOX_PRIO_INCIDENT, 10, "x", 1), 0);
    ck_assert_uint_eq(outbox_count(ob, NULL), 2);
    ck_assert_uint_eq(outbox_count(ob, "slack"), 1);
    ck_assert_uint_eq(outbox_stats(ob)->duplicates, 1);
    ck_assert_int_eq(outbox_add(ob, "a.b", "id", OUTBOX_PRIO_INCIDENT, 1, "", 0), -EINVAL);
    ck_assert_int_eq(outbox_add(ob, "slack", "fg.x", OUTBOX_PRIO_INCIDENT, 1, "", 0), -EINVAL);
    ck_assert_int_eq(outbox_add(ob, "slack", "", OUTBOX_PRIO_INCIDENT, 1, "", 0), -EINVAL);
    outbox_free(ob);
}
END_TEST

START_TEST(test_outbox_due_retry_done)
{
    struct outbox *ob = outbox_make(0, 0);
    struct outbox_entry *e;

    ck_assert_int_eq(outbox_add(ob, "d", "e1", OUTBOX_PRIO_INCIDENT, 100, "one", 3), 0);
    ck_assert_int_eq(outbox_add(ob, "d", "e2", OUTBOX_PRIO_INCIDENT, 200, "two", 3), 0);
    ck_assert_ptr_null(outbox_next_due(ob, "d", 99));
    ck_assert_int_eq(outbox_next_time(ob, "d"), 100);
    ck_assert_int_eq(outbox_next_time(ob, "other"), INT64_MAX);
    e = outbox_next_due(ob, "d", 1000);
    ck_assert_str_eq(e->event_id, "e1");
    outbox_begin(ob, e);
    ck_assert_uint_eq(e->attempts, 1);
    /* in flight: the next due is the second */
    ck_assert_str_eq(outbox_next_due(ob, "d", 1000)->event_id, "e2");
    outbox_retry(ob, e, 5000, 500);
    ck_assert_int_eq(e->last_status, 500);
    ck_assert_str_eq(outbox_next_due(ob, "d", 1000)->event_id, "e2");
    outbox_done(ob, outbox_next_due(ob, "d", 1000));
    ck_assert_ptr_null(outbox_next_due(ob, "d", 4999));
    ck_assert_str_eq(outbox_next_due(ob, "d", 5000)->event_id, "e1");
    ck_assert_uint_eq(outbox_count(ob, "d"), 1);
    ck_assert_uint_eq(outbox_stats(ob)->done, 1);
    outbox_free(ob);
}
END_TEST

START_TEST(test_outbox_limits)
{
    struct outbox *ob = outbox_make(3, 100);
    struct outbox_entry *e;

    ck_assert_int_eq(outbox_add(ob, "d", "h1", OUTBOX_PRIO_HEALTH, 1, "h", 1), 0);
    ck_assert_int_eq(outbox_add(ob, "d", "i1", OUTBOX_PRIO_INCIDENT, 2, "i", 1), 0);
    ck_assert_int_eq(outbox_add(ob, "d", "h2", OUTBOX_PRIO_HEALTH, 3, "h", 1), 0);
    /* full: the oldest health event goes first, then the next */
    ck_assert_int_eq(outbox_add(ob, "d", "i2", OUTBOX_PRIO_INCIDENT, 4, "i", 1), 0);
    ck_assert_ptr_null(outbox_next_due(ob, "d", 0));
    e = outbox_next_due(ob, "d", 100);
    ck_assert_str_eq(e->event_id, "i1");
    ck_assert_int_eq(outbox_add(ob, "d", "i3", OUTBOX_PRIO_INCIDENT, 5, "i", 1), 0);
    ck_assert_uint_eq(outbox_stats(ob)->dropped, 2);
    /* only incidents left: the oldest goes, unless it is in flight */
    outbox_begin(ob, outbox_next_due(ob, "d", 100)); /* i1 */
    ck_assert_int_eq(outbox_add(ob, "d", "i4", OUTBOX_PRIO_INCIDENT, 6, "i", 1), 0);
    ck_assert_str_eq(outbox_next_due(ob, "d", 100)->event_id, "i3");
    ck_assert_uint_eq(outbox_count(ob, "d"), 3);
    /* another destination has its own limits */
    ck_assert_int_eq(outbox_add(ob, "x", "i1", OUTBOX_PRIO_HEALTH, 1, "h", 1), 0);
    ck_assert_uint_eq(outbox_count(ob, "d"), 3);
    /* bytes: a body over the whole limit is refused, a big one pushes others out */
    char big[101] = { 0 };
    ck_assert_int_eq(outbox_add(ob, "x", "b1", OUTBOX_PRIO_INCIDENT, 1, big, 101), -E2BIG);
    ck_assert_int_eq(outbox_add(ob, "x", "b2", OUTBOX_PRIO_INCIDENT, 1, big, 100), 0);
    ck_assert_uint_eq(outbox_count(ob, "x"), 1);
    outbox_free(ob);
}
END_TEST

START_TEST(test_outbox_priority_room)
{
    struct outbox *ob = outbox_make(3, 100);

    ck_assert(outbox_room(ob, "d", 100));
    ck_assert(!outbox_room(ob, "d", 101));
    ck_assert_int_eq(outbox_add(ob, "d", "h1", OUTBOX_PRIO_HEALTH, 1, "h", 1), 0);
    ck_assert_int_eq(outbox_add(ob, "d", "i1", OUTBOX_PRIO_INCIDENT, 2, "i", 1), 0);
    ck_assert(outbox_room(ob, "d", 98));
    ck_assert(!outbox_room(ob, "d", 99));
    ck_assert_int_eq(outbox_add(ob, "d", "i2", OUTBOX_PRIO_INCIDENT, 3, "i", 1), 0);
    ck_assert(!outbox_room(ob, "d", 0));
    ck_assert(outbox_room(ob, "x", 0));
    /* full: a digest pushes out the health event, never an incident */
    ck_assert_int_eq(outbox_add(ob, "d", "g1", OUTBOX_PRIO_DIGEST, 4, "g", 1), 0);
    ck_assert_ptr_null(outbox_find(ob, "d", "h1"));
    ck_assert_int_eq(outbox_add(ob, "d", "h2", OUTBOX_PRIO_HEALTH, 5, "h", 1), -ENOBUFS);
    ck_assert_int_eq(outbox_add(ob, "d", "g2", OUTBOX_PRIO_DIGEST, 6, "g", 1), 0);
    ck_assert_ptr_null(outbox_find(ob, "d", "g1"));
    ck_assert_ptr_nonnull(outbox_find(ob, "d", "i1"));
    ck_assert_ptr_nonnull(outbox_find(ob, "d", "i2"));
    ck_assert_uint_eq(outbox_stats(ob)->dropped, 2);
    ck_assert_uint_eq(outbox_count(ob, "d"), 3);
    /* full, but an entry's own place is room for one of the bytes it frees */
    ck_assert(outbox_room_instead(ob, outbox_find(ob, "d", "i1"), 98));
    ck_assert(!outbox_room_instead(ob, outbox_find(ob, "d", "i1"), 99));
    ck_assert(!outbox_room(ob, "d", 1));
    /* over lowered limits, one place is not enough */
    outbox_set_limits(ob, &(struct outbox_limits){ .max_entries = 2, .max_bytes = 100 });
    ck_assert(!outbox_room_instead(ob, outbox_find(ob, "d", "i1"), 1));
    outbox_free(ob);
}
END_TEST

START_TEST(test_outbox_expire)
{
    struct outbox *ob = outbox_make(0, 0);

    ck_assert_int_eq(outbox_add(ob, "d", "busy", OUTBOX_PRIO_INCIDENT, 0, "", 0), 0);
    ck_assert_int_eq(outbox_add(ob, "d", "old", OUTBOX_PRIO_INCIDENT, 0, "", 0), 0);
    ck_assert_int_eq(outbox_add(ob, "d", "new", OUTBOX_PRIO_INCIDENT, 3000000, "", 0), 0);
    outbox_begin(ob, outbox_next_due(ob, "d", 10));   /* busy: in flight, kept */
    ck_assert_uint_eq(outbox_expire(ob, 3600000), 0); /* not older than the max age yet */
    ck_assert_uint_eq(outbox_expire(ob, 3600001), 1);
    ck_assert_uint_eq(outbox_count(ob, "d"), 2);
    ck_assert_uint_eq(outbox_stats(ob)->expired, 1);
    ck_assert_str_eq(outbox_next_due(ob, "d", INT64_MAX)->event_id, "new");
    outbox_free(ob);
}
END_TEST

START_TEST(test_outbox_roundtrip)
{
    struct outbox *a = outbox_make(0, 0), *b = outbox_make(0, 0);
    struct strbuf s1, s2;
    struct outbox_entry *e;

    strbuf_init(&s1, 1 << 20);
    strbuf_init(&s2, 1 << 20);
    ck_assert_int_eq(outbox_add(a, "slack", "fg_1_tripped", OUTBOX_PRIO_INCIDENT, 1700000000123,
                                "{\"a\":1}\nE x y 2 0 0 0 0 3\nabc", 28),
                     0);
    ck_assert_int_eq(outbox_add(a, "hook", "fg_2_digest", OUTBOX_PRIO_DIGEST, 5, "", 0), 0);
    ck_assert_int_eq(outbox_add(a, "hook", "fg_3_bin", OUTBOX_PRIO_HEALTH, 6, "\0\n\xff", 3), 0);
    e = outbox_next_due(a, "hook", 100);
    outbox_begin(a, e);
    outbox_retry(a, e, 99000, 503);
    ck_assert(outbox_dirty(a));
    ck_assert_int_eq(outbox_encode(a, &s1), 0);
    ck_assert(!outbox_dirty(a));
    ck_assert_int_eq(outbox_decode(b, s1.p, s1.len), 0);
    ck_assert_int_eq(outbox_encode(b, &s2), 0);
    ck_assert_uint_eq(s1.len, s2.len);
    ck_assert(memcmp(s1.p, s2.p, s1.len) == 0);
    ck_assert_uint_eq(outbox_count(b, NULL), 3);
    e = outbox_next_due(b, "hook", 100);
    ck_assert_str_eq(e->event_id, "fg_3_bin");
    ck_assert_uint_eq(e->body_len, 3);
    ck_assert(memcmp(e->body, "\0\n\xff", 3) == 0);
    e = outbox_next_due(b, "hook", 99000);
    ck_assert_str_eq(e->event_id, "fg_2_digest");
    ck_assert_uint_eq(e->attempts, 1);
    ck_assert_int_eq(e->last_status, 503);
    ck_assert_int_eq(e->prio, OUTBOX_PRIO_DIGEST);
    e = outbox_next_due(b, "slack", INT64_MAX);
    ck_assert_int_eq(e->created_ms, 1700000000123);
    ck_assert_uint_eq(e->body_len, 28);
    strbuf_done(&s1);
    strbuf_done(&s2);
    outbox_free(a);
    outbox_free(b);
}
END_TEST

START_TEST(test_outbox_decode_damage)
{
    struct outbox *a = outbox_make(0, 0), *b = outbox_make(0, 0);
    struct strbuf s;
    char *copy;

    strbuf_init(&s, 1 << 20);
    ck_assert_int_eq(outbox_add(a, "d", "e1", OUTBOX_PRIO_INCIDENT, 1, "body one", 8), 0);
    ck_assert_int_eq(outbox_add(a, "d", "e2", OUTBOX_PRIO_INCIDENT, 2, "body two", 8), 0);
    ck_assert_int_eq(outbox_encode(a, &s), 0);
    ck_assert_int_eq(outbox_add(b, "keep", "k", OUTBOX_PRIO_INCIDENT, 1, "k", 1), 0);
    copy = malloc(s.len);
    ck_assert_ptr_nonnull(copy);
    /* every truncation and every single flipped byte is refused, b unchanged */
    for (size_t cut = 0; cut < s.len; cut++)
        ck_assert_int_eq(outbox_decode(b, s.p, cut), -EBADMSG);
    for (size_t i = 0; i < s.len; i++) {
        memcpy(copy, s.p, s.len);
        copy[i] ^= 0x01;
        ck_assert_msg(outbox_decode(b, copy, s.len) == -EBADMSG, "flip at %zu", i);
    }
    ck_assert_uint_eq(outbox_count(b, NULL), 1);
    ck_assert_ptr_nonnull(outbox_next_due(b, "keep", 1));
    ck_assert_int_eq(outbox_decode(b, s.p, s.len), 0);
    ck_assert_uint_eq(outbox_count(b, NULL), 2);
    free(copy);
    strbuf_done(&s);
    outbox_free(a);
    outbox_free(b);
}
END_TEST

/* The same event twice for one destination (an edited file) is damage, not two entries:
 * the index could only name one of them. */
START_TEST(test_outbox_decode_duplicate)
{
    struct outbox *a = outbox_make(0, 0), *b = outbox_make(0, 0);
    struct strbuf s, d;
    const char *second;
    char trailer[64];

    strbuf_init(&s, 1 << 20);
    strbuf_init(&d, 1 << 20);
    ck_assert_int_eq(outbox_add(a, "d", "e1", OUTBOX_PRIO_INCIDENT, 1, "one", 3), 0);
    ck_assert_int_eq(outbox_add(a, "d", "e2", OUTBOX_PRIO_INCIDENT, 2, "two", 3), 0);
    ck_assert_int_eq(outbox_encode(a, &s), 0);
    /* rename e2 to e1 and give the file a right CRC: only the duplicate is wrong */
    second = strstr(strbuf_cstr(&s), "E d e2 ");
    ck_assert_ptr_nonnull(second);
    ck_assert_int_eq(strbuf_append(&d, s.p, (size_t)(second - s.p)), 0);
    ck_assert_int_eq(strbuf_appends(&d, "E d e1 "), 0);
    ck_assert_int_eq(strbuf_append(&d, second + 7, (size_t)(strstr(s.p, "END ") - second - 7)), 0);
    (void)snprintf(trailer, sizeof(trailer), "END 2 %08lx\n",
                   crc32(0L, (const Bytef *)d.p, (uInt)d.len));
    ck_assert_int_eq(strbuf_appends(&d, trailer), 0);
    ck_assert_int_eq(outbox_add(b, "keep", "k", OUTBOX_PRIO_INCIDENT, 1, "k", 1), 0);
    ck_assert_int_eq(outbox_decode(b, d.p, d.len), -EBADMSG);
    ck_assert_uint_eq(outbox_count(b, NULL), 1);
    ck_assert_ptr_nonnull(outbox_find(b, "keep", "k"));
    strbuf_done(&s);
    strbuf_done(&d);
    outbox_free(a);
    outbox_free(b);
}
END_TEST

START_TEST(test_outbox_find_at_remove)
{
    struct outbox *ob = outbox_make(0, 0);
    struct outbox_entry *e;
    struct outbox_limits lim = { .max_entries = 1 };

    ck_assert_int_eq(outbox_add(ob, "d", "e1", OUTBOX_PRIO_INCIDENT, 1, "a", 1), 0);
    ck_assert_int_eq(outbox_add(ob, "d", "e2", OUTBOX_PRIO_INCIDENT, 2, "b", 1), 0);
    ck_assert_ptr_null(outbox_find(ob, "x", "e1"));
    e = outbox_find(ob, "d", "e2");
    ck_assert_ptr_eq(outbox_at(ob, 1), e);
    ck_assert_ptr_null(outbox_at(ob, 2));
    outbox_remove(ob, e);
    ck_assert_uint_eq(outbox_count(ob, NULL), 1);
    ck_assert_uint_eq(outbox_stats(ob)->done, 0);
    ck_assert_str_eq(outbox_at(ob, 0)->event_id, "e1");
    /* a lower limit bites at the next add */
    outbox_set_limits(ob, &lim);
    ck_assert_int_eq(outbox_add(ob, "d", "e3", OUTBOX_PRIO_INCIDENT, 3, "c", 1), 0);
    ck_assert_uint_eq(outbox_count(ob, "d"), 1);
    ck_assert_ptr_nonnull(outbox_find(ob, "d", "e3"));
    outbox_free(ob);
}
END_TEST

/*
 * The model check: a few thousand random operations on five destinations, each done to the
 * outbox and to a plain array in insertion order that does everything by scanning (what
 * the outbox was before its indexes), compared after every step: each entry in order with
 * its fields and destination number, count and room per destination, what is due and
 * when, find, stats. The limits are small so drops happen, a destination empties and
 * comes back (its number freed and reused), and a round trip decodes over the contents.
 *
 * Measured apart (-O2), not here: 16 destinations of 9,000 entries each, then 2,000 trips
 * of an outbox_add(), outbox_find() and outbox_room() each: 1.7 ms a trip when every one
 * was a scan, 0.6 us with the indexes. At the limits (9,990 each, so every add drops one)
 * 4 to 7 ms before, 0.8 ms after: the drop's scan and the array's move remain.
 */
#define MODEL_DESTS 5
#define MODEL_IDS   24
#define MODEL_MAX   64

struct model_entry {
    char dest[16], id[16];
    enum outbox_priority prio;
    int64_t created, next;
    uint32_t attempts;
    int status;
    bool inflight;
    size_t len;
    char body[MODEL_MAX];
};

struct model {
    struct model_entry v[MODEL_DESTS * 16];
    size_t n;
    struct outbox_limits lim;
    struct outbox_stats stats;
    uint64_t rng;
};

static uint64_t
model_rand(struct model *m, uint64_t below)
{
    m->rng ^= m->rng << 13; /* xorshift64: the same sequence on every run */
    m->rng ^= m->rng >> 7;
    m->rng ^= m->rng << 17;
    return m->rng % below;
}

static void
model_remove(struct model *m, size_t i)
{
    memmove(&m->v[i], &m->v[i + 1], (m->n - i - 1) * sizeof(m->v[0]));
    m->n--;
}

static size_t
model_usage(const struct model *m, const char *dest, size_t *bytes)
{
    size_t count = 0;

    *bytes = 0;
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->v[i].dest, dest) == 0) {
            count++;
            *bytes += m->v[i].len;
        }
    return count;
}

static int
model_add(struct model *m, const char *dest, const char *id, enum outbox_priority prio, int64_t now,
          const char *body, size_t len)
{
    size_t count, bytes;
    struct model_entry *e;

    if (len > m->lim.max_bytes)
        return -E2BIG;
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->v[i].dest, dest) == 0 && strcmp(m->v[i].id, id) == 0) {
            m->stats.duplicates++;
            return 1;
        }
    while ((count = model_usage(m, dest, &bytes)) + 1 > m->lim.max_entries ||
           bytes + len > m->lim.max_bytes) {
        size_t best = m->n;
        for (size_t i = 0; i < m->n; i++)
            if (strcmp(m->v[i].dest, dest) == 0 && !m->v[i].inflight && m->v[i].prio <= prio &&
                (best == m->n || m->v[i].prio < m->v[best].prio))
                best = i;
        if (best == m->n)
            return -ENOBUFS;
        model_remove(m, best);
        m->stats.dropped++;
    }
    ck_assert_uint_lt(m->n, N_ELEMS(m->v));
    e = &m->v[m->n++];
    *e = (struct model_entry){ .prio = prio, .created = now, .next = now, .len = len };
    strcpy(e->dest, dest);
    strcpy(e->id, id);
    memcpy(e->body, body, len);
    m->stats.added++;
    return 0;
}

/*
 * Compare first, assert once: every passing ck_assert costs Check a write to its pipe, and
 * the model compares thousands of fields per step (a loaded machine timed the test out).
 */
#define MC(cond)                                                                                   \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg("model mismatch at line %d: %s", __LINE__, #cond);                        \
    } while (0)
#define MC_EQ(a, b)    MC((a) == (b))
#define MC_STREQ(a, b) MC(strcmp((a), (b)) == 0)

/* The outbox and the model agree on everything a caller can see. */
static void
model_compare(struct outbox *ob, const struct model *m, int64_t now)
{
    const struct outbox_stats *st = outbox_stats(ob);
    size_t count, bytes;

    MC_EQ(outbox_count(ob, NULL), m->n);
    for (size_t i = 0; i < m->n; i++) {
        const struct model_entry *r = &m->v[i];
        struct outbox_entry *e = outbox_at(ob, i);
        MC((e) != NULL);
        MC_STREQ(e->dest, r->dest);
        MC_STREQ(e->event_id, r->id);
        MC_EQ(e->prio, r->prio);
        MC_EQ(e->created_ms, r->created);
        MC_EQ(e->next_ms, r->next);
        MC_EQ(e->attempts, r->attempts);
        MC_EQ(e->last_status, r->status);
        MC_EQ(e->inflight, r->inflight);
        MC_EQ(e->body_len, r->len);
        MC(memcmp(e->body, r->body, r->len) == 0);
        MC_EQ(outbox_find(ob, r->dest, r->id), e);
        MC_EQ(e->dest_ix, outbox_dest_ix(ob, r->dest));
        count = model_usage(m, r->dest, &bytes);
        MC(outbox_room_instead(ob, e, 20) ==
                  (count <= m->lim.max_entries && bytes - r->len + 20 <= m->lim.max_bytes));
    }
    MC((outbox_at(ob, m->n)) == NULL);
    for (int k = 0; k < MODEL_DESTS; k++) {
        char dest[16];
        const struct model_entry *due = NULL;
        int64_t next = INT64_MAX;

        (void)snprintf(dest, sizeof(dest), "d%d", k);
        count = model_usage(m, dest, &bytes);
        MC_EQ(outbox_count(ob, dest), count);
        MC(count > 0 || outbox_dest_ix(ob, dest) == OUTBOX_DEST_NONE);
        for (size_t len = 0; len <= m->lim.max_bytes + 1; len += 7)
            MC(outbox_room(ob, dest, len) ==
                      (count + 1 <= m->lim.max_entries && bytes + len <= m->lim.max_bytes));
        for (size_t i = 0; i < m->n; i++) {
            const struct model_entry *r = &m->v[i];
            if (r->inflight || strcmp(r->dest, dest) != 0)
                continue;
            if (!due && r->next <= now)
                due = r;
            if (r->next < next)
                next = r->next;
        }
        MC_EQ(outbox_next_time(ob, dest), next);
        if (due)
            MC_STREQ(outbox_next_due(ob, dest, now)->event_id, due->id);
        else
            MC((outbox_next_due(ob, dest, now)) == NULL);
        for (int id = 0; id < MODEL_IDS; id += 5) {
            char eid[16];
            bool found = false;
            (void)snprintf(eid, sizeof(eid), "e%d", id);
            for (size_t i = 0; i < m->n && !found; i++)
                found = strcmp(m->v[i].dest, dest) == 0 && strcmp(m->v[i].id, eid) == 0;
            MC_EQ(outbox_find(ob, dest, eid) != NULL, found);
        }
    }
    MC_EQ(st->added, m->stats.added);
    MC_EQ(st->duplicates, m->stats.duplicates);
    MC_EQ(st->dropped, m->stats.dropped);
    MC_EQ(st->expired, m->stats.expired);
    MC_EQ(st->done, m->stats.done);
}

/* A random entry of the model (NULL: none) and the outbox's, by find. */
static struct model_entry *
model_pick(struct model *m, struct outbox *ob, struct outbox_entry **e)
{
    struct model_entry *r;

    if (m->n == 0)
        return NULL;
    r = &m->v[model_rand(m, m->n)];
    *e = outbox_find(ob, r->dest, r->id);
    ck_assert_ptr_nonnull(*e);
    return r;
}

START_TEST(test_outbox_model)
{
    struct model m = { .lim = { .max_entries = 4, .max_bytes = 160, .max_age_ms = 3000 },
                       .rng = 0x9e3779b97f4a7c15u };
    struct outbox *ob = NULL;
    struct strbuf s;
    int64_t now = 1000;
    unsigned seen = 0;

    strbuf_init(&s, 1 << 20);
    ck_assert_int_eq(outbox_new(&m.lim, &ob), 0);
    for (int step = 0; step < 6000; step++) {
        uint64_t op = model_rand(&m, 100);
        struct model_entry *r;
        struct outbox_entry *e = NULL;

        if (op < 40) { /* add, often a duplicate */
            char dest[16], id[16], body[MODEL_MAX];
            enum outbox_priority prio = (enum outbox_priority)model_rand(&m, 3);
            size_t len = (size_t)model_rand(&m, MODEL_MAX);
            int want;
            (void)snprintf(dest, sizeof(dest), "d%d", (int)model_rand(&m, MODEL_DESTS));
            (void)snprintf(id, sizeof(id), "e%d", (int)model_rand(&m, MODEL_IDS));
            for (size_t i = 0; i < len; i++)
                body[i] = (char)model_rand(&m, 256);
            want = model_add(&m, dest, id, prio, now, body, len);
            ck_assert_int_eq(outbox_add(ob, dest, id, prio, now, body, len), want);
            seen |= want == -ENOBUFS ? 1u : want == 0 ? 2u : want == 1 ? 4u : 8u;
        } else if (op < 52) { /* begin */
            if ((r = model_pick(&m, ob, &e)) && !r->inflight) {
                outbox_begin(ob, e);
                r->inflight = true;
                r->attempts++;
            }
        } else if (op < 62) { /* retry */
            if ((r = model_pick(&m, ob, &e)) && r->inflight) {
                r->next = now + (int64_t)model_rand(&m, 2000);
                r->status = 500 + (int)model_rand(&m, 4);
                r->inflight = false;
                outbox_retry(ob, e, r->next, r->status);
            }
        } else if (op < 70) { /* done */
            if ((r = model_pick(&m, ob, &e))) {
                outbox_done(ob, e);
                model_remove(&m, (size_t)(r - m.v));
                m.stats.done++;
            }
        } else if (op < 75) { /* remove */
            if ((r = model_pick(&m, ob, &e))) {
                outbox_remove(ob, e);
                model_remove(&m, (size_t)(r - m.v));
            }
        } else if (op < 77) { /* a destination goes: all its entries, its number freed */
            char dest[16];
            (void)snprintf(dest, sizeof(dest), "d%d", (int)model_rand(&m, MODEL_DESTS));
            while ((e = outbox_next_due(ob, dest, INT64_MAX)) != NULL)
                outbox_remove(ob, e);
            for (size_t i = 0; i < m.n;) {
                if (strcmp(m.v[i].dest, dest) == 0 && !m.v[i].inflight)
                    model_remove(&m, i);
                else
                    i++;
            }
        } else if (op < 87) { /* time passes; expiry */
            size_t n = 0;
            now += (int64_t)model_rand(&m, 600);
            if (model_rand(&m, 2)) {
                for (size_t i = 0; i < m.n;) {
                    if (!m.v[i].inflight && now - m.v[i].created > m.lim.max_age_ms) {
                        model_remove(&m, i);
                        n++;
                    } else {
                        i++;
                    }
                }
                m.stats.expired += n;
                ck_assert_uint_eq(outbox_expire(ob, now), n);
            }
        } else if (op < 90) { /* new limits */
            m.lim.max_entries = 1 + (size_t)model_rand(&m, 6);
            m.lim.max_bytes = 60 + (size_t)model_rand(&m, 200);
            m.lim.max_age_ms = 1000 + (int64_t)model_rand(&m, 4000);
            outbox_set_limits(ob, &m.lim);
        } else if (op < 92) { /* a round trip over the contents: in flight is forgotten */
            s.len = 0;
            ck_assert_int_eq(outbox_encode(ob, &s), 0);
            ck_assert_int_eq(outbox_decode(ob, s.p, s.len), 0);
            for (size_t i = 0; i < m.n; i++)
                m.v[i].inflight = false;
        } else { /* find what may or may not be there */
            char dest[16], id[16];
            bool found = false;
            (void)snprintf(dest, sizeof(dest), "d%d", (int)model_rand(&m, MODEL_DESTS + 1));
            (void)snprintf(id, sizeof(id), "e%d", (int)model_rand(&m, MODEL_IDS));
            for (size_t i = 0; i < m.n && !found; i++)
                found = strcmp(m.v[i].dest, dest) == 0 && strcmp(m.v[i].id, id) == 0;
            e = outbox_find(ob, dest, id);
            ck_assert_int_eq(e != NULL, found);
            if (e)
                ck_assert_str_eq(e->event_id, id);
        }
        model_compare(ob, &m, now);
    }
    ck_assert_uint_eq(seen & 7, 7); /* the run reached a refusal, an insert and a duplicate */
    ck_assert_uint_gt(m.stats.dropped, 0);
    ck_assert_uint_gt(m.stats.expired, 0);
    strbuf_done(&s);
    outbox_free(ob);
}
END_TEST

static Suite *
outbox_suite(void)
{
    Suite *s = suite_create("outbox");
    TCase *tc = tcase_create("queue");

    tcase_add_test(tc, test_outbox_add_idempotent);
    tcase_add_test(tc, test_outbox_due_retry_done);
    tcase_add_test(tc, test_outbox_limits);
    tcase_add_test(tc, test_outbox_priority_room);
    tcase_add_test(tc, test_outbox_expire);
    tcase_add_test(tc, test_outbox_find_at_remove);
    suite_add_tcase(s, tc);
    tc = tcase_create("encoding");
    tcase_add_test(tc, test_outbox_roundtrip);
    tcase_add_test(tc, test_outbox_decode_damage);
    tcase_add_test(tc, test_outbox_decode_duplicate);
    suite_add_tcase(s, tc);
    tc = tcase_create("model");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_outbox_model);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(outbox_suite());
}
