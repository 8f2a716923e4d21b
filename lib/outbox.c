/*
 * outbox.c - alerts waiting for their destination, in memory and as one encoded file.
 *
 * The entries are a flat array in insertion order (the order of delivery and of the
 * encoding). Beside it, two indexes the hot paths of an outbreak use on every trip:
 *
 *  - a table of the destination names present, each with its count and body bytes, so
 *    the limits (outbox_usage(), outbox_room(), outbox_count()) cost one look-up among the
 *    destinations, not a scan. Each entry carries its destination's number in that table
 *    (dest_ix), so the scans that remain (what is due, what to drop at the limits) and the
 *    caller's own compare integers. A name's slot is freed with its last entry and reused,
 *    so the table is as long as the most destinations ever present at once.
 *  - a hash of (dest_ix, event id) to the entry: open addressing, linear probing,
 *    backward-shift deletion, at most half full; SipHash under a fixed key (the ids are
 *    ours, and the limits bound the table). It answers outbox_find() and the duplicate
 *    check of outbox_add().
 *
 * Every insert goes through outbox_link() and every removal (done, remove, a drop at the
 * limits, expiry) through outbox_remove_at(); a decode builds a whole new outbox with
 * outbox_link() and swaps it in. What still grows with the pending alerts: a removal moves
 * the array behind the entry, and a drop at the limits scans for the one to drop
 * (comparing numbers), so an add at a full destination costs a scan, an add below the
 * limits none.
 *
 * Encoding (all text but the bodies):
 *
 *   FLOODGATE-OUTBOX 1\n
 *   E <dest> <event_id> <prio> <created_ms> <next_ms> <attempts> <status> <body_len>\n
 *   <body bytes>\n
 *   ...
 *   END <count> <crc32 of everything before this line, 8 hex digits>\n
 */
#include "outbox.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "siphash.h"

#define OUTBOX_MAGIC         "FLOODGATE-OUTBOX 1\n"
#define OUTBOX_DEFAULT_COUNT 10000
#define OUTBOX_DEFAULT_BYTES (16u << 20)
#define OUTBOX_DEFAULT_AGE   (24 * 3600 * 1000LL)

struct outbox_dest {
    char name[OUTBOX_NAME_MAX]; /* "" when free */
    size_t count, bytes;        /* entries and their body bytes; a free slot has none */
};

struct outbox {
    struct outbox_limits lim;
    struct outbox_entry **v;
    size_t n, cap;
    struct outbox_entry **slot; /* the hash of (dest_ix, event id): nslot, a power of 2 */
    size_t nslot;
    struct outbox_dest *dests; /* indexed by dest_ix */
    size_t ndests, capdests;
    struct outbox_stats stats;
    bool dirty;
};

int
outbox_new(const struct outbox_limits *lim, struct outbox **ret)
{
    struct outbox *ob = calloc(1, sizeof(*ob));

    if (!ob)
        return -ENOMEM;
    ob->lim = *lim;
    if (!ob->lim.max_entries)
        ob->lim.max_entries = OUTBOX_DEFAULT_COUNT;
    if (!ob->lim.max_bytes)
        ob->lim.max_bytes = OUTBOX_DEFAULT_BYTES;
    if (!ob->lim.max_age_ms)
        ob->lim.max_age_ms = OUTBOX_DEFAULT_AGE;
    *ret = ob;
    return 0;
}

static void
outbox_entry_free(struct outbox_entry *e)
{
    if (e) {
        free(e->body);
        free(e);
    }
}

/* Free every entry and index of @ob, not @ob itself. */
static void
outbox_release(struct outbox *ob)
{
    for (size_t i = 0; i < ob->n; i++)
        outbox_entry_free(ob->v[i]);
    free(ob->v);
    free(ob->slot);
    free(ob->dests);
}

void
outbox_free(struct outbox *ob)
{
    if (!ob)
        return;
    outbox_release(ob);
    free(ob);
}

bool
outbox_name_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n >= OUTBOX_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

static size_t
outbox_index(const struct outbox *ob, const struct outbox_entry *e)
{
    for (size_t i = 0; i < ob->n; i++)
        if (ob->v[i] == e)
            return i;
    return ob->n;
}

/* --- indexes ------------------------------------------------------------------------- */

/* Fixed: the hash is never written down, so any key would do; this one is "floodgate-outbox". */
static const uint8_t outbox_hash_key[SIPHASH_KEY_LEN] = {
    0x66, 0x6c, 0x6f, 0x6f, 0x64, 0x67, 0x61, 0x74, 0x65, 0x2d, 0x6f, 0x75, 0x74, 0x62, 0x6f, 0x78,
};

static size_t
outbox_home(uint32_t ix, const char *event_id, size_t nslot)
{
    uint8_t buf[sizeof(ix) + OUTBOX_NAME_MAX];
    size_t len = strlen(event_id);

    memcpy(buf, &ix, sizeof(ix));
    memcpy(buf + sizeof(ix), event_id, len);
    return (size_t)siphash(buf, sizeof(ix) + len, outbox_hash_key) & (nslot - 1);
}

static void
outbox_slot_put(struct outbox_entry **slot, size_t nslot, struct outbox_entry *e)
{
    size_t i = outbox_home(e->dest_ix, e->event_id, nslot);

    while (slot[i])
        i = (i + 1) & (nslot - 1);
    slot[i] = e;
}

/* Room in the hash for one more entry at a load of at most one half. */
static int
outbox_slot_reserve(struct outbox *ob)
{
    size_t nslot = ob->nslot ? ob->nslot : 64;
    struct outbox_entry **slot;

    while ((ob->n + 1) * 2 > nslot)
        nslot *= 2;
    if (nslot == ob->nslot)
        return 0;
    slot = calloc(nslot, sizeof(*slot));
    if (!slot)
        return -ENOMEM;
    for (size_t i = 0; i < ob->n; i++) /* in insertion order: of equal keys the first wins */
        outbox_slot_put(slot, nslot, ob->v[i]);
    free(ob->slot);
    ob->slot = slot;
    ob->nslot = nslot;
    return 0;
}

/* Take @e out of the hash, moving back the entries after it that may sit closer to home. */
static void
outbox_slot_del(struct outbox *ob, const struct outbox_entry *e)
{
    size_t mask = ob->nslot - 1, hole = outbox_home(e->dest_ix, e->event_id, ob->nslot);

    while (ob->slot[hole] != e)
        hole = (hole + 1) & mask;
    for (size_t j = (hole + 1) & mask; ob->slot[j]; j = (j + 1) & mask) {
        const struct outbox_entry *f = ob->slot[j];
        size_t home = outbox_home(f->dest_ix, f->event_id, ob->nslot);
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            ob->slot[hole] = ob->slot[j];
            hole = j;
        }
    }
    ob->slot[hole] = NULL;
}

static struct outbox_entry *
outbox_slot_find(const struct outbox *ob, uint32_t ix, const char *event_id)
{
    size_t i;

    if (ix == OUTBOX_DEST_NONE || ob->nslot == 0)
        return NULL;
    for (i = outbox_home(ix, event_id, ob->nslot); ob->slot[i]; i = (i + 1) & (ob->nslot - 1))
        if (ob->slot[i]->dest_ix == ix && strcmp(ob->slot[i]->event_id, event_id) == 0)
            return ob->slot[i];
    return NULL;
}

uint32_t
outbox_dest_ix(const struct outbox *ob, const char *dest)
{
    for (size_t i = 0; i < ob->ndests; i++)
        if (ob->dests[i].count > 0 && strcmp(ob->dests[i].name, dest) == 0)
            return (uint32_t)i;
    return OUTBOX_DEST_NONE;
}

/* @dest's number, given a free or new slot when it has none. */
static int
outbox_dest_get(struct outbox *ob, const char *dest, uint32_t *ret)
{
    uint32_t ix = outbox_dest_ix(ob, dest);
    struct outbox_dest *d;

    for (size_t i = 0; ix == OUTBOX_DEST_NONE && i < ob->ndests; i++)
        if (ob->dests[i].count == 0)
            ix = (uint32_t)i;
    if (ix == OUTBOX_DEST_NONE) {
        if (ob->ndests == ob->capdests) {
            size_t cap = ob->capdests ? ob->capdests * 2 : 8;
            d = realloc(ob->dests, cap * sizeof(*d));
            if (!d)
                return -ENOMEM;
            ob->dests = d;
            ob->capdests = cap;
        }
        ix = (uint32_t)ob->ndests++;
        ob->dests[ix] = (struct outbox_dest){ .count = 0 };
    }
    d = &ob->dests[ix];
    if (d->count == 0)
        (void)snprintf(d->name, sizeof(d->name), "%s", dest);
    *ret = ix;
    return 0;
}

/* Append @e (owned by @ob on success) to the array and both indexes; all or nothing. */
static int
outbox_link(struct outbox *ob, struct outbox_entry *e)
{
    uint32_t ix;

    if (ob->n == ob->cap) {
        size_t cap = ob->cap ? ob->cap * 2 : 64;
        struct outbox_entry **v = realloc(ob->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        ob->v = v;
        ob->cap = cap;
    }
    if (outbox_slot_reserve(ob) < 0 || outbox_dest_get(ob, e->dest, &ix) < 0)
        return -ENOMEM;
    e->dest_ix = ix;
    ob->dests[ix].count++;
    ob->dests[ix].bytes += e->body_len;
    outbox_slot_put(ob->slot, ob->nslot, e);
    ob->v[ob->n++] = e;
    return 0;
}

/* The one way out: unlink entry @i from both indexes and free it. */
static void
outbox_remove_at(struct outbox *ob, size_t i)
{
    struct outbox_entry *e = ob->v[i];
    struct outbox_dest *d = &ob->dests[e->dest_ix];

    outbox_slot_del(ob, e);
    d->count--;
    d->bytes -= e->body_len;
    if (d->count == 0)
        d->name[0] = '\0';
    while (ob->ndests > 0 && ob->dests[ob->ndests - 1].count == 0)
        ob->ndests--;
    outbox_entry_free(e);
    memmove(&ob->v[i], &ob->v[i + 1], (ob->n - i - 1) * sizeof(ob->v[0]));
    ob->n--;
    ob->dirty = true;
}

static void
outbox_usage(const struct outbox *ob, uint32_t ix, size_t *count, size_t *bytes)
{
    *count = ix == OUTBOX_DEST_NONE ? 0 : ob->dests[ix].count;
    *bytes = ix == OUTBOX_DEST_NONE ? 0 : ob->dests[ix].bytes;
}

/*
 * Drop @dest's oldest entry of the lowest priority not in flight, never one of a higher
 * priority than @prio (a digest does not push out an incident); false when none.
 */
static bool
outbox_drop_one(struct outbox *ob, uint32_t ix, enum outbox_priority prio)
{
    size_t best = ob->n;

    for (size_t i = 0; i < ob->n; i++) {
        const struct outbox_entry *e = ob->v[i];
        if (e->inflight || e->prio > prio || e->dest_ix != ix)
            continue;
        if (best == ob->n || e->prio < ob->v[best]->prio)
            best = i; /* the array is in insertion order: the first of a priority is oldest */
    }
    if (best == ob->n)
        return false;
    outbox_remove_at(ob, best);
    ob->stats.dropped++;
    return true;
}

static struct outbox_entry *
outbox_entry_new(const char *dest, const char *event_id, enum outbox_priority prio,
                 int64_t created_ms, const void *body, size_t body_len)
{
    struct outbox_entry *e = calloc(1, sizeof(*e));

    if (!e)
        return NULL;
    e->body = malloc(body_len ? body_len : 1);
    if (!e->body) {
        free(e);
        return NULL;
    }
    if (body_len)
        memcpy(e->body, body, body_len);
    e->body_len = body_len;
    (void)snprintf(e->dest, sizeof(e->dest), "%s", dest);
    (void)snprintf(e->event_id, sizeof(e->event_id), "%s", event_id);
    e->prio = prio;
    e->created_ms = e->next_ms = created_ms;
    return e;
}

int
outbox_add(struct outbox *ob, const char *dest, const char *event_id, enum outbox_priority prio,
           int64_t created_ms, const void *body, size_t body_len)
{
    struct outbox_entry *e;
    size_t count, bytes;
    uint32_t ix;

    if (!outbox_name_valid(dest) || !outbox_name_valid(event_id) || prio > OUTBOX_PRIO_INCIDENT)
        return -EINVAL;
    if (body_len > ob->lim.max_bytes)
        return -E2BIG;
    ix = outbox_dest_ix(ob, dest);
    if (outbox_slot_find(ob, ix, event_id)) {
        ob->stats.duplicates++;
        return 1;
    }
    outbox_usage(ob, ix, &count, &bytes);
    while (count + 1 > ob->lim.max_entries || bytes + body_len > ob->lim.max_bytes) {
        if (!outbox_drop_one(ob, ix, prio))
            return -ENOBUFS; /* everything left is in flight or matters more */
        /* with its last entry gone, @dest has no number */
        ix = outbox_dest_ix(ob, dest);
        outbox_usage(ob, ix, &count, &bytes);
    }
    e = outbox_entry_new(dest, event_id, prio, created_ms, body, body_len);
    if (!e)
        return -ENOMEM;
    if (outbox_link(ob, e) < 0) {
        outbox_entry_free(e);
        return -ENOMEM;
    }
    ob->stats.added++;
    ob->dirty = true;
    return 0;
}

bool
outbox_room(const struct outbox *ob, const char *dest, size_t body_len)
{
    size_t count, bytes;

    outbox_usage(ob, outbox_dest_ix(ob, dest), &count, &bytes);
    return count + 1 <= ob->lim.max_entries && bytes + body_len <= ob->lim.max_bytes;
}

bool
outbox_room_instead(const struct outbox *ob, const struct outbox_entry *e, size_t body_len)
{
    size_t count, bytes;

    outbox_usage(ob, outbox_dest_ix(ob, e->dest), &count, &bytes);
    return count >= 1 && bytes >= e->body_len && count <= ob->lim.max_entries &&
           bytes - e->body_len + body_len <= ob->lim.max_bytes;
}

struct outbox_entry *
outbox_due(struct outbox *ob, const char *dest, int64_t now_ms, uint64_t max_tag,
           int64_t *later)
{
    uint32_t ix = outbox_dest_ix(ob, dest);
    int64_t t = INT64_MAX;

    for (size_t i = 0; ix != OUTBOX_DEST_NONE && i < ob->n; i++) {
        struct outbox_entry *e = ob->v[i];
        if (e->inflight || e->tag > max_tag || e->dest_ix != ix)
            continue;
        if (e->next_ms <= now_ms)
            return e;
        if (e->next_ms < t)
            t = e->next_ms;
    }
    if (later)
        *later = t;
    return NULL;
}

struct outbox_entry *
outbox_next_due(struct outbox *ob, const char *dest, int64_t now_ms)
{
    return outbox_due(ob, dest, now_ms, UINT64_MAX, NULL);
}

int64_t
outbox_next_time(struct outbox *ob, const char *dest)
{
    int64_t t;

    /* nothing is due before the beginning of time: *later is the earliest of all */
    return outbox_due(ob, dest, INT64_MIN, UINT64_MAX, &t) ? INT64_MIN : t;
}

void
outbox_begin(struct outbox *ob, struct outbox_entry *e)
{
    (void)ob;
    e->inflight = true;
    e->attempts++;
}

void
outbox_done(struct outbox *ob, struct outbox_entry *e)
{
    size_t i = outbox_index(ob, e);

    if (i < ob->n) {
        outbox_remove_at(ob, i);
        ob->stats.done++;
    }
}

void
outbox_retry(struct outbox *ob, struct outbox_entry *e, int64_t next_ms, int status)
{
    e->inflight = false;
    e->next_ms = next_ms;
    e->last_status = status;
    ob->dirty = true;
}

size_t
outbox_expire(struct outbox *ob, int64_t now_ms)
{
    return outbox_expire_each(ob, now_ms, NULL, NULL);
}

size_t
outbox_expire_each(struct outbox *ob, int64_t now_ms, outbox_expired_fn fn, void *ctx)
{
    size_t n = 0;

    for (size_t i = 0; i < ob->n;) {
        const struct outbox_entry *e = ob->v[i];
        if (!e->inflight && now_ms - e->created_ms > ob->lim.max_age_ms) {
            if (fn)
                fn(ctx, e);
            outbox_remove_at(ob, i);
            n++;
            continue;
        }
        i++;
    }
    ob->stats.expired += n;
    return n;
}

struct outbox_entry *
outbox_find(struct outbox *ob, const char *dest, const char *event_id)
{
    return outbox_slot_find(ob, outbox_dest_ix(ob, dest), event_id);
}

struct outbox_entry *
outbox_at(struct outbox *ob, size_t i)
{
    return i < ob->n ? ob->v[i] : NULL;
}

void
outbox_remove(struct outbox *ob, struct outbox_entry *e)
{
    size_t i = outbox_index(ob, e);

    if (i < ob->n)
        outbox_remove_at(ob, i);
}

void
outbox_set_limits(struct outbox *ob, const struct outbox_limits *lim)
{
    if (lim->max_entries)
        ob->lim.max_entries = lim->max_entries;
    if (lim->max_bytes)
        ob->lim.max_bytes = lim->max_bytes;
    if (lim->max_age_ms)
        ob->lim.max_age_ms = lim->max_age_ms;
}

size_t
outbox_count(const struct outbox *ob, const char *dest)
{
    size_t count, bytes;

    if (!dest)
        return ob->n;
    outbox_usage(ob, outbox_dest_ix(ob, dest), &count, &bytes);
    return count;
}

const struct outbox_stats *
outbox_stats(const struct outbox *ob)
{
    return &ob->stats;
}

bool
outbox_dirty(const struct outbox *ob)
{
    return ob->dirty;
}

void
outbox_mark_clean(struct outbox *ob)
{
    ob->dirty = false;
}

/* --- encoding ------------------------------------------------------------------------ */

int
outbox_encode(struct outbox *ob, struct strbuf *out)
{
    size_t start = out->len;
    uLong crc;
    int r = strbuf_appends(out, OUTBOX_MAGIC);

    for (size_t i = 0; i < ob->n && r == 0; i++) {
        const struct outbox_entry *e = ob->v[i];
        r = strbuf_printf(out, "E %s %s %d %" PRId64 " %" PRId64 " %" PRIu32 " %d %zu\n", e->dest,
                          e->event_id, (int)e->prio, e->created_ms, e->next_ms, e->attempts,
                          e->last_status, e->body_len);
        if (r == 0)
            r = strbuf_append(out, e->body, e->body_len);
        if (r == 0)
            r = strbuf_append(out, "\n", 1);
    }
    if (r < 0)
        return r;
    crc = crc32(0L, (const Bytef *)out->p + start, (uInt)(out->len - start));
    r = strbuf_printf(out, "END %zu %08lx\n", ob->n, (unsigned long)crc);
    if (r == 0)
        ob->dirty = false;
    return r;
}

/* Split @line (no newline) at single spaces into exactly @n tokens. */
static bool
outbox_tokens(struct fg_str line, struct fg_str *tok, size_t n)
{
    size_t k = 0, start = 0;

    for (size_t i = 0; i <= line.len; i++) {
        if (i < line.len && line.p[i] != ' ')
            continue;
        if (i == start || k == n)
            return false; /* empty token or too many */
        tok[k++] = fg_str_make(line.p + start, i - start);
        start = i + 1;
    }
    return k == n;
}

static bool
outbox_token_u64(struct fg_str t, uint64_t max, uint64_t *ret)
{
    return util_parse_u64(t.p, t.len, ret) == 0 && *ret <= max;
}

static bool
outbox_token_name(struct fg_str t, char *buf, size_t size)
{
    return util_copy_str(buf, size, t) == 0 && outbox_name_valid(buf);
}

/* One "E ..." line at *pp (before @end): its fields into @e; *pp moves past the newline. */
static int
outbox_decode_line(const char **pp, const char *end, struct outbox_entry *e, size_t *body_len)
{
    const char *nl = memchr(*pp, '\n', (size_t)(end - *pp));
    struct fg_str tok[9];
    uint64_t prio, created, next, attempts, status, blen;

    if (!nl || !outbox_tokens(fg_str_make(*pp, (size_t)(nl - *pp)), tok, N_ELEMS(tok)) ||
        !fg_str_eq(tok[0], "E") || !outbox_token_name(tok[1], e->dest, sizeof(e->dest)) ||
        !outbox_token_name(tok[2], e->event_id, sizeof(e->event_id)) ||
        !outbox_token_u64(tok[3], OUTBOX_PRIO_INCIDENT, &prio) ||
        !outbox_token_u64(tok[4], INT64_MAX, &created) ||
        !outbox_token_u64(tok[5], INT64_MAX, &next) ||
        !outbox_token_u64(tok[6], UINT32_MAX, &attempts) ||
        !outbox_token_u64(tok[7], 999, &status) || !outbox_token_u64(tok[8], SIZE_MAX, &blen))
        return -EBADMSG;
    e->prio = (enum outbox_priority)prio;
    e->created_ms = (int64_t)created;
    e->next_ms = (int64_t)next;
    e->attempts = (uint32_t)attempts;
    e->last_status = (int)status;
    *body_len = (size_t)blen;
    *pp = nl + 1;
    return 0;
}

/* The hex digits of @t (at most 8) as a CRC. */
static bool
outbox_token_crc(struct fg_str t, unsigned long *ret)
{
    unsigned long v = 0;

    if (t.len != 8)
        return false;
    for (size_t i = 0; i < t.len; i++) {
        char c = t.p[i];
        unsigned d = (c >= '0' && c <= '9')   ? (unsigned)(c - '0')
                     : (c >= 'a' && c <= 'f') ? (unsigned)(c - 'a' + 10)
                                              : 16u;
        if (d > 15)
            return false;
        v = v << 4 | d;
    }
    *ret = v;
    return true;
}

int
outbox_decode(struct outbox *ob, const char *buf, size_t len)
{
    const char *p = buf, *end = buf + len, *trailer;
    struct outbox next = { .lim = ob->lim };
    struct fg_str tok[3];
    uint64_t count = 0;
    unsigned long crc = 0;
    int r = -EBADMSG;

    if (len < strlen(OUTBOX_MAGIC) || memcmp(buf, OUTBOX_MAGIC, strlen(OUTBOX_MAGIC)) != 0)
        return -EBADMSG;
    /* the trailer is the last line */
    if (buf[len - 1] != '\n')
        return -EBADMSG;
    trailer = end - 1;
    while (trailer > buf && trailer[-1] != '\n')
        trailer--;
    if (!outbox_tokens(fg_str_make(trailer, (size_t)(end - trailer - 1)), tok, N_ELEMS(tok)) ||
        !fg_str_eq(tok[0], "END") || !outbox_token_u64(tok[1], SIZE_MAX, &count) ||
        !outbox_token_crc(tok[2], &crc) ||
        crc32(0L, (const Bytef *)buf, (uInt)(trailer - buf)) != crc)
        return -EBADMSG;
    p += strlen(OUTBOX_MAGIC);
    while (p < trailer) {
        struct outbox_entry tmp = { 0 }, *e;
        size_t blen;

        r = outbox_decode_line(&p, trailer, &tmp, &blen);
        if (r < 0)
            goto fail;
        r = -EBADMSG;
        if (blen > (size_t)(trailer - p) || (size_t)(trailer - p) - blen < 1 || p[blen] != '\n')
            goto fail;
        /* an event is queued once per destination (outbox_add); a second copy is an edit,
         * and would leave the index naming one of the two */
        if (outbox_find(&next, tmp.dest, tmp.event_id))
            goto fail;
        e = outbox_entry_new(tmp.dest, tmp.event_id, tmp.prio, tmp.created_ms, p, blen);
        r = -ENOMEM;
        if (!e)
            goto fail;
        e->next_ms = tmp.next_ms;
        e->attempts = tmp.attempts;
        e->last_status = tmp.last_status;
        if (outbox_link(&next, e) < 0) {
            outbox_entry_free(e);
            goto fail;
        }
        p += blen + 1;
    }
    r = -EBADMSG;
    if (next.n != count)
        goto fail;
    outbox_release(ob);
    next.stats = ob->stats;
    *ob = next;
    return 0;
fail:
    outbox_release(&next);
    return r;
}
