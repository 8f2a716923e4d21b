#ifndef FLOODGATE_OUTBOX_H
#define FLOODGATE_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/*
 * lib/outbox: the alerts not yet accepted by their destination (alerting.md §5.1). Pure:
 * entries in memory, an encoding for the state directory, limits. Each entry is one event
 * for one destination, with the exact body bytes to send (re-signed per attempt, never
 * re-serialized). Insert is idempotent by (destination, event id). Over the limits the
 * oldest entry of the lowest priority goes first, never one that matters more than the
 * entry being added, and every drop and expiry is counted.
 */

#define OUTBOX_NAME_MAX 64 /* destination names and event ids: [A-Za-z0-9_-], no '.' */

enum outbox_priority { OUTBOX_PRIO_HEALTH = 0, OUTBOX_PRIO_DIGEST, OUTBOX_PRIO_INCIDENT };

struct outbox_limits {
    size_t max_entries; /* per destination; default 10000 */
    size_t max_bytes;   /* body bytes per destination; default 16 MiB */
    int64_t max_age_ms; /* an entry older than this expires; default 24h */
};

struct outbox_entry {
    char dest[OUTBOX_NAME_MAX];
    char event_id[OUTBOX_NAME_MAX];
    enum outbox_priority prio;
    int64_t created_ms; /* wall clock: survives a restart */
    int64_t next_ms;    /* not before this (wall clock) */
    uint32_t attempts;
    int last_status; /* HTTP status of the last attempt, 0 none */
    bool inflight;   /* not persisted: after a restart it is simply due */
    uint64_t tag;    /* the caller's, not persisted (0 after a decode) */
    char *body;
    size_t body_len;
    uint32_t dest_ix; /* set by the outbox: compare with outbox_dest_ix() */
};

struct outbox_stats {
    uint64_t added;
    uint64_t duplicates;
    uint64_t dropped; /* to stay within the limits */
    uint64_t expired;
    uint64_t done;
};

struct outbox;

int outbox_new(const struct outbox_limits *lim, struct outbox **ret);
void outbox_free(struct outbox *ob); /* NULL-safe */

/* A valid destination name or event id. */
bool outbox_name_valid(const char *s);

/*
 * Queue @body for @dest. Over the limits, @dest's oldest entries of the lowest priority not
 * above @prio and not in flight make room. Returns 0 (queued), 1 (already queued: nothing
 * changed), -EINVAL (a bad name), -E2BIG (the body alone exceeds max_bytes), -ENOBUFS (no
 * room: what is left is in flight or of a higher priority), -ENOMEM.
 */
int outbox_add(struct outbox *ob, const char *dest, const char *event_id, enum outbox_priority prio,
               int64_t created_ms, const void *body, size_t body_len);

/* Room for one more entry of @body_len bytes for @dest without dropping any. */
bool outbox_room(const struct outbox *ob, const char *dest, size_t body_len);
/* Room for an entry of @body_len bytes at @e's destination once @e is removed. */
bool outbox_room_instead(const struct outbox *ob, const struct outbox_entry *e, size_t body_len);

/*
 * The oldest entry of @dest due at @now_ms, not in flight, with a tag of at most @max_tag,
 * or NULL; then *@later (when not NULL) is when the next such entry is due (INT64_MAX: none).
 */
struct outbox_entry *outbox_due(struct outbox *ob, const char *dest, int64_t now_ms,
                                uint64_t max_tag, int64_t *later);
/* The oldest entry of @dest due at @now_ms and not in flight, or NULL. */
struct outbox_entry *outbox_next_due(struct outbox *ob, const char *dest, int64_t now_ms);
/* When the next entry of @dest not in flight is due (INT64_MAX: none). */
int64_t outbox_next_time(struct outbox *ob, const char *dest);

void outbox_begin(struct outbox *ob, struct outbox_entry *e);
/* Delivered or failed for good: forget @e (freed). */
void outbox_done(struct outbox *ob, struct outbox_entry *e);
/* Try @e again at @next_ms. */
void outbox_retry(struct outbox *ob, struct outbox_entry *e, int64_t next_ms, int status);
/* Drop entries older than max_age_ms (in flight ones stay); returns how many. */
size_t outbox_expire(struct outbox *ob, int64_t now_ms);
/* The same, telling @fn (may be NULL) of each entry just before it goes. */
typedef void (*outbox_expired_fn)(void *ctx, const struct outbox_entry *e);
size_t outbox_expire_each(struct outbox *ob, int64_t now_ms, outbox_expired_fn fn, void *ctx);

/* The entry with this destination and event id, or NULL. */
struct outbox_entry *outbox_find(struct outbox *ob, const char *dest, const char *event_id);
/* Entry @i (insertion order) of outbox_count(ob, NULL), for scans; borrowed until a change. */
struct outbox_entry *outbox_at(struct outbox *ob, size_t i);
/* Forget @e (freed) without counting it delivered: it was replaced or its destination went. */
void outbox_remove(struct outbox *ob, struct outbox_entry *e);
/* New limits (a reload); entries over them go at the next outbox_add() or outbox_expire(). */
void outbox_set_limits(struct outbox *ob, const struct outbox_limits *lim);

/*
 * The number the outbox gives @dest while it has entries (OUTBOX_DEST_NONE: it has none),
 * for scans that compare e->dest_ix instead of e->dest; stale once @dest's last entry goes.
 */
#define OUTBOX_DEST_NONE UINT32_MAX
uint32_t outbox_dest_ix(const struct outbox *ob, const char *dest);

/* Entries of @dest (NULL: all). */
size_t outbox_count(const struct outbox *ob, const char *dest);
const struct outbox_stats *outbox_stats(const struct outbox *ob);
/* Something changed since the last outbox_encode() or outbox_mark_clean(). */
bool outbox_dirty(const struct outbox *ob);
/* An encoding of the contents as they are now is being kept elsewhere (a forked writer). */
void outbox_mark_clean(struct outbox *ob);

/*
 * Encode every entry (a header, then each entry's fields and body, then a trailer with the
 * count and a CRC-32 of all before it) / replace the contents with a decoded encoding.
 * Decode is all or nothing: -EBADMSG on any damage (torn, edited), and then the outbox is
 * unchanged.
 */
int outbox_encode(struct outbox *ob, struct strbuf *out);
int outbox_decode(struct outbox *ob, const char *buf, size_t len);

#endif
