/*
 * outbox.c - alerts waiting for their destination, in memory and as one encoded file.
 *
 * The entries are a flat array in insertion order; every operation is a scan. The limits
 * keep it small (10,000 entries per destination by default) and an alert is a rare event
 * next to a log line, so a scan per attempt costs nothing the log reader would notice.
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

#define OUTBOX_MAGIC         "FLOODGATE-OUTBOX 1\n"
#define OUTBOX_DEFAULT_COUNT 10000
#define OUTBOX_DEFAULT_BYTES (16u << 20)
#define OUTBOX_DEFAULT_AGE   (24 * 3600 * 1000LL)

struct outbox {
    struct outbox_limits lim;
    struct outbox_entry **v;
    size_t n, cap;
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

static void
outbox_clear(struct outbox_entry **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        outbox_entry_free(v[i]);
}

void
outbox_free(struct outbox *ob)
{
    if (!ob)
        return;
    outbox_clear(ob->v, ob->n);
    free(ob->v);
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

static void
outbox_remove_at(struct outbox *ob, size_t i)
{
    outbox_entry_free(ob->v[i]);
    memmove(&ob->v[i], &ob->v[i + 1], (ob->n - i - 1) * sizeof(ob->v[0]));
    ob->n--;
    ob->dirty = true;
}

static void
outbox_usage(const struct outbox *ob, const char *dest, size_t *count, size_t *bytes)
{
    *count = *bytes = 0;
    for (size_t i = 0; i < ob->n; i++) {
        if (strcmp(ob->v[i]->dest, dest) == 0) {
            (*count)++;
            *bytes += ob->v[i]->body_len;
        }
    }
}

/*
 * Drop @dest's oldest entry of the lowest priority not in flight, never one of a higher
 * priority than @prio (a digest does not push out an incident); false when none.
 */
static bool
outbox_drop_one(struct outbox *ob, const char *dest, enum outbox_priority prio)
{
    size_t best = ob->n;

    for (size_t i = 0; i < ob->n; i++) {
        const struct outbox_entry *e = ob->v[i];
        if (e->inflight || e->prio > prio || strcmp(e->dest, dest) != 0)
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

static int
outbox_push(struct outbox *ob, struct outbox_entry *e)
{
    if (ob->n == ob->cap) {
        size_t cap = ob->cap ? ob->cap * 2 : 64;
        struct outbox_entry **v = realloc(ob->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        ob->v = v;
        ob->cap = cap;
    }
    ob->v[ob->n++] = e;
    return 0;
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

    if (!outbox_name_valid(dest) || !outbox_name_valid(event_id) || prio > OUTBOX_PRIO_INCIDENT)
        return -EINVAL;
    if (body_len > ob->lim.max_bytes)
        return -E2BIG;
    for (size_t i = 0; i < ob->n; i++) {
        if (strcmp(ob->v[i]->dest, dest) == 0 && strcmp(ob->v[i]->event_id, event_id) == 0) {
            ob->stats.duplicates++;
            return 1;
        }
    }
    outbox_usage(ob, dest, &count, &bytes);
    while (count + 1 > ob->lim.max_entries || bytes + body_len > ob->lim.max_bytes) {
        if (!outbox_drop_one(ob, dest, prio))
            return -ENOBUFS; /* everything left is in flight or matters more */
        outbox_usage(ob, dest, &count, &bytes);
    }
    e = outbox_entry_new(dest, event_id, prio, created_ms, body, body_len);
    if (!e)
        return -ENOMEM;
    if (outbox_push(ob, e) < 0) {
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

    outbox_usage(ob, dest, &count, &bytes);
    return count + 1 <= ob->lim.max_entries && bytes + body_len <= ob->lim.max_bytes;
}

bool
outbox_room_instead(const struct outbox *ob, const struct outbox_entry *e, size_t body_len)
{
    size_t count, bytes;

    outbox_usage(ob, e->dest, &count, &bytes);
    return count >= 1 && bytes >= e->body_len && count <= ob->lim.max_entries &&
           bytes - e->body_len + body_len <= ob->lim.max_bytes;
}

struct outbox_entry *
outbox_next_due(struct outbox *ob, const char *dest, int64_t now_ms)
{
    for (size_t i = 0; i < ob->n; i++) {
        struct outbox_entry *e = ob->v[i];
        if (!e->inflight && e->next_ms <= now_ms && strcmp(e->dest, dest) == 0)
            return e;
    }
    return NULL;
}

int64_t
outbox_next_time(const struct outbox *ob, const char *dest)
{
    int64_t t = INT64_MAX;

    for (size_t i = 0; i < ob->n; i++) {
        const struct outbox_entry *e = ob->v[i];
        if (!e->inflight && e->next_ms < t && strcmp(e->dest, dest) == 0)
            t = e->next_ms;
    }
    return t;
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
    size_t n = 0;

    for (size_t i = 0; i < ob->n;) {
        const struct outbox_entry *e = ob->v[i];
        if (!e->inflight && now_ms - e->created_ms > ob->lim.max_age_ms) {
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
    for (size_t i = 0; i < ob->n; i++)
        if (strcmp(ob->v[i]->dest, dest) == 0 && strcmp(ob->v[i]->event_id, event_id) == 0)
            return ob->v[i];
    return NULL;
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
    size_t n = 0;

    if (!dest)
        return ob->n;
    for (size_t i = 0; i < ob->n; i++)
        n += strcmp(ob->v[i]->dest, dest) == 0;
    return n;
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
        e = outbox_entry_new(tmp.dest, tmp.event_id, tmp.prio, tmp.created_ms, p, blen);
        r = -ENOMEM;
        if (!e)
            goto fail;
        e->next_ms = tmp.next_ms;
        e->attempts = tmp.attempts;
        e->last_status = tmp.last_status;
        if (outbox_push(&next, e) < 0) {
            outbox_entry_free(e);
            goto fail;
        }
        p += blen + 1;
    }
    r = -EBADMSG;
    if (next.n != count)
        goto fail;
    outbox_clear(ob->v, ob->n);
    free(ob->v);
    ob->v = next.v;
    ob->n = next.n;
    ob->cap = next.cap;
    ob->dirty = false;
    return 0;
fail:
    outbox_clear(next.v, next.n);
    free(next.v);
    return r;
}
