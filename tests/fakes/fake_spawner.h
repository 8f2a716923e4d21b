#ifndef FLOODGATE_FAKE_SPAWNER_H
#define FLOODGATE_FAKE_SPAWNER_H

#include <stdbool.h>
#include <stddef.h>

#include "spawn.h"

#define FAKE_SPAWNER_CALLS_MAX 64
#define FAKE_SPAWNER_LINE_MAX  1024

/*
 * A recording spawner: run() records the argv (joined with spaces) and queues the
 * command; fake_spawner_flush() completes queued commands (and those their callbacks
 * start) with a plausible answer: exim -Mf/-Mt say "Message <id> is now frozen" / "is no
 * longer frozen" for each id (ids listed in already_frozen say "is already frozen"),
 * whmapi1 and uapi print success JSON, anything else exits 0 silently.
 */
struct fake_spawner {
    struct spawner ops;
    char calls[FAKE_SPAWNER_CALLS_MAX][FAKE_SPAWNER_LINE_MAX];
    size_t ncalls;
    int exit_code;              /* for every command; default 0 */
    const char *already_frozen; /* an id exim answers "is already frozen" for, or NULL */
    int run_error;              /* run() returns it when non-zero */
    const char *bp_out;         /* what exim -bP prints (NULL: nothing) */
    struct fake_job *pending;
};

struct fake_spawner *fake_spawner_new(void);
/* Complete every queued command; returns how many ran. */
size_t fake_spawner_flush(struct fake_spawner *f);
/* Index of the first recorded call containing @needle, or -1. */
int fake_spawner_find(const struct fake_spawner *f, const char *needle);

#endif
