#ifndef FLOODGATE_TRIPS_H
#define FLOODGATE_TRIPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attrib.h"
#include "msgtrack.h"
#include "usertable.h"

/*
 * lib/trips: the daemon's recent trips, for floodgatectl tripped and show. Pure and
 * bounded: a ring of the last @cap trips (oldest forgotten), each with what was done
 * about it once lib/action reports it. Manual orders (floodgatectl hold, suspend) are kept
 * the same way, rule "manual". Every trip carries its identity's reference ("fg-1a2b3c4d",
 * trips_identity_ref()): the exim backend writes it into the blocklist line, the ACL quotes
 * it in the SMTP refusal, and floodgatectl show finds the identity by it.
 */

#define TRIPS_DEFAULT_CAP 1000 /* trips kept overall */
#define TRIPS_PER_ID      8    /* trips of one identity floodgatectl show lists */
#define TRIPS_RULE_MAX    64
#define TRIPS_SUBJECT_MAX 120 /* bytes of a sample subject (raw header text) */
#define TRIPS_DETAIL_MAX  240 /* bytes of what went wrong */
#define TRIPS_REF_MAX     12  /* "fg-" and 8 hex digits */

enum trips_result {
    TRIPS_PENDING,     /* the actions are still running (or none reported yet) */
    TRIPS_DONE,        /* acted as the rule asked (see what) */
    TRIPS_ALERTED,     /* the rule only alerts: nothing to hold */
    TRIPS_UNCONFIRMED, /* no message confirmed in the spool: nothing done, an operator decides */
    TRIPS_FAILED,      /* a step failed (detail says which) */
    TRIPS_WOULD_ACT,   /* monitor mode: nothing done */
    TRIPS_ALREADY,     /* already held by floodgate: nothing repeated */
    TRIPS_NOT_ACTED,   /* refused before acting (circuit breaker, validators) */
    TRIPS_RESULT__MAX,
};

/* "pending", "done", "alerted", "unconfirmed", "failed", "would_act", "already_held", ... */
const char *trips_result_name(enum trips_result r);

struct trip_rec {
    uint64_t seq;              /* 1, 2, ... in the order added */
    char ref[TRIPS_REF_MAX];   /* the identity's reference, "fg-xxxxxxxx" */
    char rule[TRIPS_RULE_MAX]; /* "manual" for an operator's order */
    enum usertable_scope scope;
    char id[USERTABLE_KEY_MAX];
    char account[ATTRIB_ACCOUNT_MAX]; /* "" when unknown */
    int64_t log_ms;                   /* log time of the tripping record; 0 for manual */
    char at[20];                      /* that time as logged; "" for manual */
    int64_t wall_ms;                  /* when floodgate saw it (epoch ms) */
    uint64_t value, threshold;        /* the sliding value against the limit */
    int64_t window_ms;
    uint32_t actions;                 /* CONFIG_ACTION_* the rule (or order) asked for */
    char msgid[MSGTRACK_ID_MAX + 1];  /* the tripping message; "" for manual */
    char subject[TRIPS_SUBJECT_MAX];  /* sample subject from the spool; "" unknown */
    enum trips_result result;
    uint32_t done;                    /* CONFIG_ACTION_HOLD/SUSPEND applied */
    size_t frozen, failed;            /* messages frozen, messages that could not be */
    char detail[TRIPS_DETAIL_MAX];    /* what failed, or why nothing was done */
};

struct trips;

/*
 * The reference of an identity: "fg-" and 8 hex digits of a fixed hash (FNV-1a) of its
 * scope and identity (a mailbox without case), the same on every host and across
 * restarts, so a line written before a restart still names it. Not a secret.
 */
void trips_identity_ref(enum usertable_scope scope, const char *id, char *buf, size_t size);

/* @cap trips kept (0: TRIPS_DEFAULT_CAP). */
struct trips *trips_new(size_t cap);
void trips_free(struct trips *t);

/*
 * Keep a copy of @rec (its seq, ref and result are set here: TRIPS_PENDING). Returns the
 * stored record (valid until the next trips_add), never NULL.
 */
struct trip_rec *trips_add(struct trips *t, const struct trip_rec *rec);

/*
 * The newest record of (@scope, @id) still TRIPS_PENDING, or NULL: where an outcome goes.
 * Mailboxes compare without case.
 */
struct trip_rec *trips_pending(struct trips *t, enum usertable_scope scope, const char *id);

/* The newest record of (@scope, @id) whatever its result, or NULL. */
const struct trip_rec *trips_last(const struct trips *t, enum usertable_scope scope,
                                  const char *id);

/* The newest record whose ref is @ref (case-insensitive), or NULL. */
const struct trip_rec *trips_find_ref(const struct trips *t, const char *ref);

/*
 * Up to @max records, newest first, into @ret (borrowed until the next trips_add); only
 * (@scope, @id)'s when @id is not NULL. Returns how many.
 */
size_t trips_list(const struct trips *t, const char *id, enum usertable_scope scope,
                  const struct trip_rec **ret, size_t max);

/* Records kept now, and added since trips_new (the ring forgets the oldest). */
size_t trips_count(const struct trips *t);
uint64_t trips_total(const struct trips *t);

#endif
