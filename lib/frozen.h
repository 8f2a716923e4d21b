#ifndef FLOODGATE_FROZEN_H
#define FLOODGATE_FROZEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spawn.h"

/*
 * lib/frozen: messages floodgate froze, before Exim decides for the operator. Exim thaws a
 * frozen message (other than a bounce) auto_thaw after it was frozen, and cancels a
 * frozen message timeout_frozen_after after it arrived (the time in its id). Both are
 * read once at start and reload with `exim -bP auto_thaw timeout_frozen_after` through a
 * spawner; a message is due for a warning once FROZEN_WARN_PCT of the nearer of its two
 * delays has passed, so someone can release or remove it in time. Pure but for the
 * spawner.
 */

#define FROZEN_WARN_PCT 80

struct frozen_limits {
    int64_t auto_thaw_ms; /* 0: Exim never thaws frozen messages by itself */
    int64_t timeout_ms;   /* timeout_frozen_after; 0: never cancelled */
};

/*
 * Exim's time format (readconf_readtime, as -bP prints it): numbers each followed by a
 * unit w, d, h, m or s, summed ("3d", "1h30m", "0s"). 0 and *ret_ms, or -EINVAL.
 */
int frozen_parse_exim_time(const char *s, size_t len, int64_t *ret_ms);

/*
 * The output of `exim -bP auto_thaw timeout_frozen_after`: a line "name = value" for each.
 * 0 and *ret, or -EINVAL (a line not understood or one of the two missing).
 */
int frozen_parse_bp(const char *out, size_t len, struct frozen_limits *ret);

/* When Exim received @msgid (the base-62 seconds its id starts with), in ms; -1: not an id. */
int64_t frozen_msgid_time(const char *msgid);

/* What becomes of one frozen message, and when. */
struct frozen_fate {
    int64_t warn_ms;     /* FROZEN_WARN_PCT of the way to the nearer deadline */
    int64_t deadline_ms; /* the nearer one: Exim thaws or cancels it at its next queue run after */
    bool thaw;           /* true: auto_thaw (delivered then!), false: timeout_frozen_after */
};

/*
 * The fate of @msgid, frozen at @frozen_ms (0: unknown; @fallback_ms is used, the trip's
 * time: the freeze came at or after it). 0 and *ret, or -ENOENT (neither limit applies).
 */
int frozen_fate(const struct frozen_limits *l, const char *msgid, int64_t frozen_ms,
                int64_t fallback_ms, struct frozen_fate *ret);

/* One id of an identity's warning. */
struct frozen_warning {
    size_t index; /* into the identity's ids */
    struct frozen_fate fate;
};

/*
 * Which of one identity's frozen ids to warn about at @now_ms, given that it was warned
 * for the marks up to @warned_until_ms (0: never). Nothing unless one id's mark passed
 * since; then every id whose mark is after @warned_until_ms and at most a tenth of the
 * nearer limit ahead (so mail frozen a little later rides the same alert, and an
 * identity whose mail keeps being frozen gets at most one alert per tenth of the limit).
 * Returns how many (the first @max into @ret; *ret_total counts all of them) and, when
 * any, the new warned-until in *ret_until. @frozen_ms[i] 0: @fallback_ms (frozen_fate).
 */
size_t frozen_select(const struct frozen_limits *l, const char *const *ids,
                     const int64_t *frozen_ms, size_t n, int64_t fallback_ms,
                     int64_t warned_until_ms, int64_t now_ms, struct frozen_warning *ret,
                     size_t max, size_t *ret_total, int64_t *ret_until);

/* The nearer of the two limits that are set (0: neither). */
int64_t frozen_nearer_ms(const struct frozen_limits *l);

/* How often to look: a tenth of the nearer limit, from 1 s to 60 s (0: no limit set). */
int64_t frozen_check_interval_ms(const struct frozen_limits *l);

/*
 * Ask Exim: runs @exim_path [-C @conf] -bP auto_thaw timeout_frozen_after through @s;
 * @q->done gets 0 and the limits, or -EINVAL/-EIO and a reason (@why, borrowed for the
 * call). @q is the caller's and must outlive the command (a spawner freed first calls
 * nothing). Returns 0 (done called later) or -errno (not started; done never called).
 */
typedef void (*frozen_limits_fn)(void *ctx, int err, const struct frozen_limits *l,
                                 const char *why);
struct frozen_query {
    frozen_limits_fn done;
    void *ctx;
};
int frozen_query_limits(struct frozen_query *q, struct spawner *s, const char *exim_path,
                        const char *conf, int64_t timeout_ms);

#endif
