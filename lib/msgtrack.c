/*
 * msgtrack.c - messages in the queue, as the log tells it: an arrival adds one, its
 * Completed line removes it. Delivery lines find the identities of their message here
 * (they carry only the id), and a trip asks for the identity's queued ids to freeze.
 *
 * Bounded: at most cap messages (MSGTRACK_CAP_DEFAULT); when full the oldest arrival is
 * forgotten and counted (a message queued that long is the retry queue's concern, and
 * freezing confirms every id against the spool anyway). Entries live in one array
 * linked by index into an age list (oldest first) and a free list; the hash is
 * open-addressing over SipHash of the id with backward-shift deletion, so there are no
 * tombstones and lookups stay short at 50% load.
 */
#include "msgtrack.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MSGTRACK_NONE UINT32_MAX

struct msgtrack_node {
    struct msgtrack_msg msg;
    uint32_t prev, next; /* age list, or free list (next) */
    uint32_t home;       /* its hash slot: deletion moves neighbours without rehashing */
    bool used;
};

struct msgtrack {
    uint8_t key[SIPHASH_KEY_LEN];
    struct msgtrack_node *nodes;
    uint32_t cap;
    uint32_t *index; /* hash slot -> node, MSGTRACK_NONE empty */
    size_t nindex;   /* power of two >= 2 * cap */
    uint32_t oldest, newest, free;
    uint32_t fresh; /* nodes [fresh, cap) were never used: untouched pages stay unmapped */
    size_t count;
    uint64_t forgotten;
    msgtrack_forget_fn forget; /* told of each message dropped: removed or forgotten */
    void *forget_ctx;
};

struct msgtrack *
msgtrack_new(uint32_t cap, const uint8_t key[SIPHASH_KEY_LEN])
{
    struct msgtrack *t = calloc(1, sizeof(*t));

    if (!t)
        return NULL;
    t->cap = cap ? cap : MSGTRACK_CAP_DEFAULT;
    for (t->nindex = 16; t->nindex < (size_t)t->cap * 2;)
        t->nindex *= 2;
    t->nodes = calloc(t->cap, sizeof(*t->nodes));
    t->index = malloc(t->nindex * sizeof(*t->index));
    if (!t->nodes || !t->index) {
        msgtrack_free(t);
        return NULL;
    }
    memcpy(t->key, key, SIPHASH_KEY_LEN);
    memset(t->index, 0xff, t->nindex * sizeof(*t->index));
    t->free = MSGTRACK_NONE;
    t->oldest = t->newest = MSGTRACK_NONE;
    return t;
}

void
msgtrack_free(struct msgtrack *t)
{
    if (!t)
        return;
    free(t->nodes);
    free(t->index);
    free(t);
}

static size_t
msgtrack_home(const struct msgtrack *t, const char *id, size_t len)
{
    return (size_t)siphash(id, len, t->key) & (t->nindex - 1);
}

/* Index slot holding @id, or the empty slot where it would go, probing from @home. */
static size_t
msgtrack_slot_from(const struct msgtrack *t, struct fg_str id, size_t home)
{
    size_t i = home;

    for (;; i = (i + 1) & (t->nindex - 1)) {
        uint32_t n = t->index[i];
        if (n == MSGTRACK_NONE)
            return i;
        if (t->nodes[n].msg.idlen == id.len && memcmp(t->nodes[n].msg.id, id.p, id.len) == 0)
            return i;
    }
}

static size_t
msgtrack_slot(const struct msgtrack *t, struct fg_str id)
{
    return msgtrack_slot_from(t, id, msgtrack_home(t, id.p, id.len));
}

static void
msgtrack_unindex(struct msgtrack *t, size_t i)
{
    size_t j = i;

    t->index[i] = MSGTRACK_NONE;
    for (;;) {
        j = (j + 1) & (t->nindex - 1);
        uint32_t n = t->index[j];
        if (n == MSGTRACK_NONE)
            return;
        size_t home = t->nodes[n].home;
        /* move n back to i unless its home lies cyclically in (i, j] */
        bool stays = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (stays)
            continue;
        t->index[i] = n;
        t->index[j] = MSGTRACK_NONE;
        i = j;
    }
}

static void
msgtrack_unlink(struct msgtrack *t, uint32_t n)
{
    struct msgtrack_node *x = &t->nodes[n];

    if (x->prev != MSGTRACK_NONE)
        t->nodes[x->prev].next = x->next;
    else
        t->oldest = x->next;
    if (x->next != MSGTRACK_NONE)
        t->nodes[x->next].prev = x->prev;
    else
        t->newest = x->prev;
    x->used = false;
    x->next = t->free;
    t->free = n;
    t->count--;
}

static void
msgtrack_drop(struct msgtrack *t, uint32_t n)
{
    const struct msgtrack_node *x = &t->nodes[n];

    msgtrack_unindex(t, msgtrack_slot_from(t, fg_str_make(x->msg.id, x->msg.idlen), x->home));
    msgtrack_unlink(t, n);
}

struct msgtrack_msg *
msgtrack_add(struct msgtrack *t, struct fg_str id, int64_t ts_ms)
{
    struct msgtrack_node *x;
    size_t slot, home;
    uint32_t n;

    if (id.len == 0 || id.len > MSGTRACK_ID_MAX)
        return NULL;
    home = msgtrack_home(t, id.p, id.len);
    slot = msgtrack_slot_from(t, id, home);
    if (t->index[slot] != MSGTRACK_NONE)
        return NULL;
    if (t->free == MSGTRACK_NONE && t->fresh < t->cap) {
        t->nodes[t->fresh].next = MSGTRACK_NONE;
        t->free = t->fresh++;
    }
    if (t->free == MSGTRACK_NONE) {
        if (t->forget)
            t->forget(t->forget_ctx, &t->nodes[t->oldest].msg);
        msgtrack_drop(t, t->oldest);
        t->forgotten++;
        slot = msgtrack_slot_from(t, id, home);
    }
    n = t->free;
    x = &t->nodes[n];
    t->free = x->next;
    memset(&x->msg, 0, sizeof(x->msg));
    memcpy(x->msg.id, id.p, id.len);
    x->msg.idlen = (uint8_t)id.len;
    for (size_t i = 0; i < MSGTRACK_REFS; i++)
        x->msg.refs[i].slot = UINT32_MAX;
    x->msg.arrived_ms = ts_ms;
    x->home = (uint32_t)home;
    x->used = true;
    x->prev = t->newest;
    x->next = MSGTRACK_NONE;
    if (t->newest != MSGTRACK_NONE)
        t->nodes[t->newest].next = n;
    else
        t->oldest = n;
    t->newest = n;
    t->index[slot] = n;
    t->count++;
    return &x->msg;
}

void
msgtrack_set_forget(struct msgtrack *t, msgtrack_forget_fn fn, void *ctx)
{
    t->forget = fn;
    t->forget_ctx = ctx;
}

struct msgtrack_msg *
msgtrack_get(struct msgtrack *t, struct fg_str id)
{
    uint32_t n;

    if (id.len == 0 || id.len > MSGTRACK_ID_MAX)
        return NULL;
    n = t->index[msgtrack_slot(t, id)];
    return n == MSGTRACK_NONE ? NULL : &t->nodes[n].msg;
}

bool
msgtrack_remove(struct msgtrack *t, struct fg_str id)
{
    size_t slot;
    uint32_t n;

    if (id.len == 0 || id.len > MSGTRACK_ID_MAX)
        return false;
    slot = msgtrack_slot(t, id);
    n = t->index[slot];
    if (n == MSGTRACK_NONE)
        return false;
    if (t->forget)
        t->forget(t->forget_ctx, &t->nodes[n].msg);
    msgtrack_unindex(t, slot);
    msgtrack_unlink(t, n);
    return true;
}

size_t
msgtrack_queued(const struct msgtrack *t, enum usertable_scope scope, struct usertable_ref ref,
                char (*ret)[MSGTRACK_ID_MAX + 1], size_t max)
{
    size_t k = 0;

    for (uint32_t n = t->oldest; n != MSGTRACK_NONE && k < max; n = t->nodes[n].next) {
        const struct msgtrack_msg *m = &t->nodes[n].msg;
        if (m->refs[scope].slot == ref.slot && m->refs[scope].gen == ref.gen)
            memcpy(ret[k++], m->id, MSGTRACK_ID_MAX + 1);
    }
    return k;
}

size_t
msgtrack_count(const struct msgtrack *t)
{
    return t->count;
}

uint64_t
msgtrack_forgotten(const struct msgtrack *t)
{
    return t->forgotten;
}

/* --- recipients of messages with a cut for-list ------------------------------------- */

struct msgtrack_seen {
    uint64_t *gen[2]; /* [0] newer; 0 marks an empty slot */
    size_t count;     /* keys in gen[0] */
};

struct msgtrack_seen *
msgtrack_seen_new(void)
{
    return calloc(1, sizeof(struct msgtrack_seen));
}

void
msgtrack_seen_free(struct msgtrack_seen *s)
{
    if (!s)
        return;
    free(s->gen[0]);
    free(s->gen[1]);
    free(s);
}

/* Slot of @key in @g, or the empty slot where it would go (never full: at most half). */
static size_t
msgtrack_seen_slot(const uint64_t *g, uint64_t key)
{
    size_t i = (size_t)key & (MSGTRACK_SEEN_SLOTS - 1);

    while (g[i] && g[i] != key)
        i = (i + 1) & (MSGTRACK_SEEN_SLOTS - 1);
    return i;
}

int
msgtrack_seen_add(struct msgtrack_seen *s, uint64_t key)
{
    size_t i;

    key = key ? key : 1;
    if (!s->gen[0] && !(s->gen[0] = calloc(MSGTRACK_SEEN_SLOTS, sizeof(uint64_t))))
        return -ENOMEM;
    if (s->gen[1] && s->gen[1][msgtrack_seen_slot(s->gen[1], key)] == key)
        return 0;
    i = msgtrack_seen_slot(s->gen[0], key);
    if (s->gen[0][i] == key)
        return 0;
    if (s->count >= MSGTRACK_SEEN_SLOTS / 2) {
        /* the newer generation is half full: it becomes the older one */
        uint64_t *fresh = s->gen[1];
        if (fresh)
            memset(fresh, 0, MSGTRACK_SEEN_SLOTS * sizeof(uint64_t));
        else if (!(fresh = calloc(MSGTRACK_SEEN_SLOTS, sizeof(uint64_t))))
            return -ENOMEM;
        s->gen[1] = s->gen[0];
        s->gen[0] = fresh;
        s->count = 0;
        i = msgtrack_seen_slot(s->gen[0], key);
    }
    s->gen[0][i] = key;
    s->count++;
    return 1;
}
