#ifndef FLOODGATE_CAMPAIGN_H
#define FLOODGATE_CAMPAIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "siphash.h"
#include "usertable.h"

/*
 * Campaigns across identities: many identities sending mail with one key (a normalized
 * subject, a set of recipient domains) in a window, each of them under every per-identity
 * limit. Pure: keys, identities and log times in, trips out. See campaign.c.
 */
#define CAMPAIGN_MEMBERS  48 /* distinct identities remembered per key; counts saturate here */
#define CAMPAIGN_TRIP_MAX 32 /* identities a trip names */
#define CAMPAIGN_TEXT_MAX 96 /* the key as shown (normalized subject, domains) */
#define CAMPAIGN_DECAY    0.8 /* the baseline's weight after each window that goes by */
#define CAMPAIGN_NOISE_Z  5.0 /* a surge is this many Poisson deviations over the baseline */

struct campaign_params {
    int64_t window_ms; /* the sliding window and the baseline's period */
    uint64_t above;    /* distinct identities must exceed it (below CAMPAIGN_MEMBERS) */
    double factor;     /* ... and factor x the key's baseline */
    int64_t learn_ms;  /* no trip before this long after the first message */
    uint32_t cap;      /* keys remembered (from their second identity on); the least
                        * recently used is forgotten */
};

/* An identity, as the engine's identity table knows it. */
struct campaign_member {
    struct usertable_ref ref;
    enum usertable_scope scope;
};

struct campaign_trip {
    char text[CAMPAIGN_TEXT_MAX + 1]; /* the key as shown */
    uint32_t identities;              /* distinct identities in the window */
    double baseline;                  /* what the key had before (distinct per window, decayed) */
    uint64_t threshold;               /* max(above, factor x baseline): what was passed */
    size_t nmembers;
    struct campaign_member members[CAMPAIGN_TRIP_MAX]; /* oldest first */
};

enum campaign_result {
    CAMPAIGN_QUIET = 0,  /* nothing to act on */
    CAMPAIGN_TRIPPED,    /* the key just passed its threshold: members lists its identities */
    CAMPAIGN_MEMBER,     /* the key has tripped and this identity sends it: members is it */
};

struct campaign_stats {
    uint64_t keys;      /* keys held now */
    uint64_t evictions; /* keys forgotten for room */
    uint64_t trips;     /* keys that tripped */
};

struct campaign;

/* Returns owned, or NULL (out of memory, bad params). Allocates every key once. */
struct campaign *campaign_new(const struct campaign_params *p, const uint8_t key[SIPHASH_KEY_LEN]);
void campaign_free(struct campaign *c); /* NULL-safe */

/* Writes the key as shown into @buf (NUL-terminated); called only for a new key. */
typedef void (*campaign_text_fn)(void *ctx, char *buf, size_t size);

/*
 * Identity @m sent a message with key @key (a hash from campaign_key_of()) at @now_ms.
 * @text is asked for only when the key is new. Returns enum campaign_result and fills
 * @ret for CAMPAIGN_TRIPPED and CAMPAIGN_MEMBER. No allocation.
 */
enum campaign_result campaign_note(struct campaign *c, uint64_t key, campaign_text_fn text,
                                   void *text_ctx, struct campaign_member m, int64_t now_ms,
                                   struct campaign_trip *ret);

/* The table's hash of @n bytes (a normalized subject). */
uint64_t campaign_key_of(const struct campaign *c, const void *p, size_t n);

/*
 * The hash of a set of domain hashes (order and repeats do not matter): 0 when it holds
 * fewer than @min distinct ones. Sorts @hashes in place.
 */
uint64_t campaign_set_key(const struct campaign *c, uint64_t *hashes, size_t n, size_t min);

const struct campaign_stats *campaign_stats(const struct campaign *c);

/*
 * The campaign form of a subject as Exim logs it (T="..." without the quotes, escaped):
 * \ooo, \n, \t, \", \\ ... decoded to bytes; ASCII case folded; Cyrillic and Greek
 * look-alikes, fullwidth forms and accented Latin-1 letters folded to ASCII, zero-width
 * characters dropped; - _ . / : # join a word ("INV-2024-0042"); every word holding a
 * digit (numbers, order ids), longer than 24, or whose ASCII letters change case the way
 * random ids do (an upper after a lower, a lower after two uppers: xIB, HSNzu; not
 * Invoice or INVOICE) becomes '#' (runs of them one '#');
 * other punctuation and whitespace runs become one space; leading "re", "fw",
 * "fwd" words dropped. Writes at most @size - 1 bytes and a NUL; returns the length (0:
 * no key, an empty subject).
 */
size_t campaign_subject_norm(const char *esc, size_t len, char *out, size_t size);

#endif
