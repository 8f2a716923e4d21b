#ifndef FLOODGATE_ENGINE_H
#define FLOODGATE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attrib.h"
#include "config.h"
#include "eximlog.h"
#include "msgtrack.h"
#include "policy.h"
#include "usertable.h"

/*
 * The detection pipeline shared by the live daemon and --replay: one record in,
 * notices out. Pure in DESIGN.md's sense: the record's own timestamp is the clock.
 */

#define ENGINE_NOTICES_MAX (POLICY_VERDICTS_MAX * SCOPE__MAX + SCOPE__MAX)

enum engine_notice_kind {
    ENGINE_TRIP,            /* a rule fired for an identity */
    ENGINE_TRIPPED_ARRIVAL, /* a new message from an identity that has tripped before */
    ENGINE_FROZEN_BY_ACL,   /* Exim froze a tripped identity's new message ("frozen by ACL") */
};

struct engine_notice {
    enum engine_notice_kind kind;
    struct policy_verdict verdict; /* ENGINE_TRIP */
    enum usertable_scope scope;
    char id[USERTABLE_KEY_MAX];
    char account[ATTRIB_ACCOUNT_MAX]; /* "" when unknown */
    struct usertable_ref ref;
    int64_t at_ms;                   /* log time of the record */
    char at[20];                     /* "YYYY-MM-DD HH:MM:SS" as logged */
    uint64_t line;                   /* first line of the record (caller's numbering) */
    char msgid[MSGTRACK_ID_MAX + 1]; /* the arrival's (or frozen message's) id */
};

struct engine_stats {
    uint64_t records;
    uint64_t parse_errors;
    uint64_t other;
    uint64_t arrivals;
    uint64_t outbound;
    uint64_t bounces;
    uint64_t service;
    uint64_t inbound;
    uint64_t local_only;
    uint64_t deliveries;
    uint64_t deferrals;
    uint64_t failures;
    uint64_t enforced; /* deliveries refused by our own hold or suspension */
    uint64_t completed;
    uint64_t cwd_forged; /* cwd= records that absorbed lines: log injection attempts */
    uint64_t incomplete;
    uint64_t keys_refused; /* identities over USERTABLE_KEY_MAX */
    uint64_t trips;
};

struct engine_params {
    const struct config *cfg;       /* kept until engine_free or engine_set_config */
    const struct attrib_maps *maps; /* kept, may be NULL; engine_set_maps replaces it */
    uint8_t key[SIPHASH_KEY_LEN];   /* hash key for every table */
};

struct engine;

/* Returns 0 and *ret (owned), -ENOMEM, -EINVAL (no config). */
int engine_new(const struct engine_params *p, struct engine **ret);
void engine_free(struct engine *e);

/*
 * Parse and count one complete record from the log. Borrows @rec. Writes at most @max
 * notices to @ret and returns how many (0 for most records).
 */
size_t engine_feed(struct engine *e, const struct eximlog_record *rec, uint64_t line,
                   struct engine_notice *ret, size_t max);

/* Queued message ids of the notice's identity, oldest first; returns the count. */
size_t engine_queued(const struct engine *e, const struct engine_notice *n,
                     char (*ret)[MSGTRACK_ID_MAX + 1], size_t max);

/*
 * Release an identity: its trips are cleared and its cooldown starts now in log time (the
 * newest record's). Returns 1 when it was found, 0 when not, -EINVAL for a bad scope.
 */
int engine_release(struct engine *e, enum usertable_scope scope, const char *id);

/*
 * Rename the rule bits of every identity's trips: @from are the rule names, by position,
 * of the config they were set under (a reload, a restored snapshot); each bit moves to
 * the rule of the same name in the current config or is dropped.
 */
void engine_remap_trips(struct engine *e, const char *const *from, size_t nfrom);

/*
 * Swap in a new configuration (reload). Counters survive when the new rules need the same
 * series; otherwise the table is rebuilt (1 is returned) and only the trips and cooldowns
 * carry over. Either way trips follow their rules by name. Keeps @cfg; the caller frees
 * the old one after this returns. 0 on a seamless swap, -ENOMEM (old config kept).
 */
int engine_set_config(struct engine *e, const struct config *cfg);
void engine_set_maps(struct engine *e, const struct attrib_maps *maps);

const struct engine_stats *engine_stats(const struct engine *e);
struct usertable *engine_table(struct engine *e);
/* Newest log time seen (the pipeline's clock), 0 before the first record. */
int64_t engine_now_ms(const struct engine *e);
/* Account of an identity: itself for accounts, the prefix of a script, the domain owner. */
void engine_account_of(const struct engine *e, enum usertable_scope scope, const char *id,
                       char *buf, size_t size);

/* One row of engine_top(): the key is borrowed until the table next changes. */
struct engine_top_row {
    const char *id;
    uint64_t value;
};

/*
 * The @max identities of @scope with the highest value now (engine_now_ms) of series
 * @series of that scope (an index into usertable_params(engine_table(e))->series[scope]),
 * highest first, ties by identity; identities at 0 are left out. Pure: one pass over the
 * table keeping the best @max. Returns the number written, 0 for a bad scope or series.
 */
size_t engine_top(struct engine *e, enum usertable_scope scope, size_t series,
                  struct engine_top_row *ret, size_t max);

/* Queued message ids of the identity (@scope, @id), oldest first; returns the count. */
size_t engine_identity_queued(struct engine *e, enum usertable_scope scope, const char *id,
                              char (*ret)[MSGTRACK_ID_MAX + 1], size_t max);

#endif
