#ifndef FLOODGATE_MSGTRACK_H
#define FLOODGATE_MSGTRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "siphash.h"
#include "usertable.h"
#include "util.h"

#define MSGTRACK_CAP_DEFAULT 131072 /* messages in flight (~80 B each); oldest forgotten first */
#define MSGTRACK_ID_MAX      23
#define MSGTRACK_REFS        SCOPE__MAX

/* struct msgtrack_msg.flags */
#define MSGTRACK_FROZEN    (1u << 0) /* Exim logged it frozen */
#define MSGTRACK_TRUNCATED (1u << 1) /* its for-list was cut: delivery lines add recipients */
#define MSGTRACK_QUEUED    (1u << 2) /* counted in its identities' queued messages */

/* What we remember of an arrival until its Completed line. */
struct msgtrack_msg {
    char id[MSGTRACK_ID_MAX + 1];
    uint8_t idlen;
    struct usertable_ref refs[MSGTRACK_REFS]; /* per scope; slot UINT32_MAX: none */
    int64_t arrived_ms;
    uint32_t flags;
    uint32_t rcpts_counted; /* recipients counted at arrival */
    uint32_t rcpts_final;   /* =>, ->, ** lines seen */
};

struct msgtrack;

/* Returns owned, NULL when out of memory. @cap 0: MSGTRACK_CAP_DEFAULT. */
struct msgtrack *msgtrack_new(uint32_t cap, const uint8_t key[SIPHASH_KEY_LEN]);
void msgtrack_free(struct msgtrack *t);

/*
 * Start tracking message @id (a valid Exim id). A full table forgets its oldest message.
 * Returns the entry (borrowed until the next add or remove), NULL if @id is too long or
 * already tracked.
 */
struct msgtrack_msg *msgtrack_add(struct msgtrack *t, struct fg_str id, int64_t ts_ms);
/* Called with each message about to be dropped: msgtrack_remove() or forgotten for room. */
typedef void (*msgtrack_forget_fn)(void *ctx, const struct msgtrack_msg *msg);
void msgtrack_set_forget(struct msgtrack *t, msgtrack_forget_fn fn, void *ctx);

/* The tracked message @id, or NULL. Borrowed until the next add or remove. */
struct msgtrack_msg *msgtrack_get(struct msgtrack *t, struct fg_str id);
/* Forget @id (its Completed line); returns true if it was tracked. */
bool msgtrack_remove(struct msgtrack *t, struct fg_str id);

/*
 * Write the ids of queued messages whose scope-@scope identity is @ref into @ret (each
 * MSGTRACK_ID_MAX + 1 bytes), oldest first, at most @max. Returns the number written.
 */
size_t msgtrack_queued(const struct msgtrack *t, enum usertable_scope scope,
                       struct usertable_ref ref, char (*ret)[MSGTRACK_ID_MAX + 1], size_t max);

size_t msgtrack_count(const struct msgtrack *t);

/*
 * Recipients already counted for messages whose for-list was cut: a bounded set of recent
 * 64-bit keys (hashes of message id and address), two generations of MSGTRACK_SEEN_SLOTS
 * slots; when the newer one is half full it becomes the older and the older is dropped,
 * so at least MSGTRACK_SEEN_SLOTS / 2 recent keys are always remembered. The slots are
 * allocated on first use (2 MiB).
 */
#define MSGTRACK_SEEN_SLOTS 65536

struct msgtrack_seen;

struct msgtrack_seen *msgtrack_seen_new(void);
void msgtrack_seen_free(struct msgtrack_seen *s);
/* Remember @key; 1 when it is new, 0 when seen already, -ENOMEM. */
int msgtrack_seen_add(struct msgtrack_seen *s, uint64_t key);
uint64_t msgtrack_forgotten(const struct msgtrack *t);

#endif
