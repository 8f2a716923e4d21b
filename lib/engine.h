#ifndef FLOODGATE_ENGINE_H
#define FLOODGATE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attrib.h"
#include "campaign.h"
#include "config.h"
#include "eximlog.h"
#include "msgtrack.h"
#include "policy.h"
#include "usertable.h"


/*
 * The detection pipeline shared by the live daemon and --replay: one record in,
 * notices out. Pure in DESIGN.md's sense: the record's own timestamp is the clock, bounded
 * (ENGINE_CLOCK_AHEAD_MS) so that one record dated in the future cannot move it there.
 */

/*
 * A forged HELO counts a message for the identities of two readings: twice the notices.
 * Signals across identities (engine_signals_*) add the members of campaigns that trip on
 * the record (ENGINE_CAMPAIGN_NOTICES; more members trip when they next send) and a trap.
 */
#define ENGINE_CAMPAIGN_NOTICES (2 * CAMPAIGN_TRIP_MAX)
#define ENGINE_NOTICES_MAX                                                                         \
    (2 * (POLICY_VERDICTS_MAX * SCOPE__MAX + SCOPE__MAX) + 4 + ENGINE_CAMPAIGN_NOTICES + 2)

/* engine_notice.detail: what a campaign or trap trip is about ("" for other trips). */
#define ENGINE_DETAIL_MAX 384

/*
 * The pipeline clock never moves more than ENGINE_CLOCK_AHEAD_MS ahead of the wall clock
 * (live) or, in replay, of the oldest of the ENGINE_CLOCK_CONFIRM records that follow
 * (engine_delay): a jump holds when the records after it agree (a gap in the log, the
 * server was down), not when they go on at the old time (one forged line). A record beyond
 * the bound is counted at the current clock and reported (ENGINE_CLOCK_AHEAD,
 * stats.clock_ahead).
 */
#define ENGINE_CLOCK_AHEAD_MS (5 * 60 * 1000)
#define ENGINE_CLOCK_CONFIRM  4

/*
 * The wall clock for the bound. Exim writes local time, read as UTC by the parser, unless
 * log_timezone is set (a "+HHMM" after the time: the parser converts to UTC); the engine
 * compares each record with the reading its own form calls for.
 */
struct engine_wall {
    int64_t (*utc_ms)(void *ctx);          /* now, epoch ms */
    int64_t (*local_offset_ms)(void *ctx); /* local time minus UTC now (negative west of it) */
    void *ctx;
};

enum engine_notice_kind {
    ENGINE_TRIP,            /* a rule fired for an identity */
    ENGINE_TRIPPED_ARRIVAL, /* a new message from an identity that has tripped before */
    ENGINE_FROZEN_BY_ACL,   /* Exim froze a tripped identity's new message ("frozen by ACL") */
    ENGINE_CLOCK_AHEAD,     /* a record dated beyond the bound: counted at the clock (at = the
                               time it claims, at_ms = the clock it was counted at) */
    ENGINE_INJECTION,       /* a record shows log injection (injection says how); id names
                               the genuine writer when known ("" else), other the second
                               reading's identity of a forged HELO */
};

/* How a log injection showed (engine_notice.injection, engine_stats.injections[]). */
enum engine_injection {
    ENGINE_INJ_ABSORBED, /* an arrival swallowed a line that started like a record */
    ENGINE_INJ_CWD,      /* a cwd= record swallowed lines (a newline in a directory or argv) */
    ENGINE_INJ_TAIL,     /* the remnant of a forged line (dropped, never counted) */
    ENGINE_INJ_HELO,     /* a HELO that reads as two peers: counted for both readings */
    ENGINE_INJ__MAX,
};

/* "absorbed", "cwd", "tail", "helo": the metric's label and the audit log's kind. */
const char *engine_injection_name(enum engine_injection k);
/* A sentence for people: "a raw newline in a field swallowed a record-like line", ... */
const char *engine_injection_reason(enum engine_injection k);

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
    enum engine_injection injection; /* ENGINE_INJECTION */
    enum usertable_scope other_scope;    /* ENGINE_INJ_HELO: the second reading's identity */
    char other[USERTABLE_KEY_MAX];       /* "" when none */
    /*
     * ENGINE_TRIP of a campaign rule: 'campaign subject "<key>": N identities (baseline B):
     * <first identities>'; of a trap rule: "trap <address>"; otherwise "". Log text:
     * escape it for display (strbuf_append_json, util_term_escape).
     */
    char detail[ENGINE_DETAIL_MAX];
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
    uint64_t clock_ahead; /* records dated beyond the bound, counted at the clock */
    uint64_t null_sender; /* "<>" arrivals counted: authenticated or a user's submission */
    uint64_t injections[ENGINE_INJ__MAX];
    uint64_t trap_hits;          /* outbound messages to a spam trap */
    uint64_t campaign_trips;     /* campaign keys that tripped */
    uint64_t campaign_evictions; /* campaign keys forgotten for room (all campaign rules) */
};

/*
 * Told of each message counted for an identity, right after its counters moved and before
 * its rules are evaluated (replay's report keeps its evidence and follows its values).
 * Borrows everything for the call only; must not change the table.
 */
struct engine_hook {
    void (*counted)(void *ctx, const struct usertable *t, const struct usertable_entry *ent,
                    const struct exim_event *ev, int64_t now_ms);
    void *ctx;
};

struct engine_params {
    const struct config *cfg;       /* kept until engine_free or engine_set_config */
    const struct attrib_maps *maps; /* kept, may be NULL; engine_set_maps replaces it */
    uint8_t key[SIPHASH_KEY_LEN];   /* hash key for every table */
    /*
     * Live: the wall clock; the pipeline clock never passes it (as the log writes time)
     * by more than ENGINE_CLOCK_AHEAD_MS. NULL: replay (bounded by engine_delay), or
     * unbounded when records are fed directly. Kept until engine_free.
     */
    const struct engine_wall *wall;
    const struct engine_hook *hook; /* NULL: none (the daemon); kept until engine_free */
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

/*
 * engine_feed() after the parse: @ev as eximlog_parse() left it (returned 1, or 0 with
 * type EXIM_OTHER), @rec_flags the joiner's record flags. Borrows @ev (and its text).
 */
size_t engine_feed_event(struct engine *e, const struct exim_event *ev, uint32_t rec_flags,
                         uint64_t line, struct engine_notice *ret, size_t max);

/*
 * Replay has no wall clock: records go through a queue of ENGINE_CLOCK_CONFIRM + 1 and are
 * fed once that many follow them, each bounded by the oldest time among its followers
 * (records with a suspect text are no witnesses). Copies the record; ~40 KiB.
 * engine_delay_push feeds at most one record (its notices are returned, at most @max);
 * at the end of input call engine_delay_flush while engine_delay_pending is not 0 (the
 * last records have fewer followers: the bound is what follows, none for the very last).
 */
struct engine_delay;
struct engine_delay *engine_delay_new(void);
void engine_delay_free(struct engine_delay *q);
size_t engine_delay_push(struct engine_delay *q, struct engine *e, const struct eximlog_record *rec,
                         uint64_t line, struct engine_notice *ret, size_t max);
size_t engine_delay_flush(struct engine_delay *q, struct engine *e, struct engine_notice *ret,
                          size_t max);
size_t engine_delay_pending(const struct engine_delay *q);
/*
 * Strict: a record is parsed again when it is fed (engine_feed, the live daemon's path)
 * instead of reusing the event parsed for its time when it was pushed. Same results,
 * slower: a check of the fast path (floodgated --replay --strict).
 */
void engine_delay_set_strict(struct engine_delay *q, bool strict);
/* The log time of the newest record pushed that vouches for its time (a witness: it has
 * one and its text is not suspect), INT64_MIN before the first. Replay's file checks. */
int64_t engine_delay_last_ms(const struct engine_delay *q);

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
/* Newest accepted log time (the pipeline's clock, bounded), 0 before the first record. */
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
