#ifndef FLOODGATE_FUZZ_H
#define FLOODGATE_FUZZ_H

/*
 * Shared by the libFuzzer harnesses (docs/fuzzing.md). A broken invariant aborts with a
 * message, which libFuzzer reports as a crash and saves the input for.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "spawn.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort with "invariant: <what>" on stderr. */
_Noreturn void fuzz_fail(const char *file, int line, const char *what);
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond);                                                  \
    } while (0)

/* @s is empty ({NULL, 0} or a zero length) or lies within [@base, @base + @len). */
bool fuzz_slice_within(struct fg_str s, const char *base, size_t len);

/* A configuration parsed from @yaml (aborts if it does not load: the harness is wrong). */
struct config *fuzz_config(const char *yaml);

/* A private scratch directory made once per process (mkdtemp under $TMPDIR, else
 * /dev/shm, else /tmp); removed at exit. */
const char *fuzz_tmpdir(void);

/* Write @len bytes to @dir/@name, replacing it (aborts on an I/O error). */
void fuzz_write_file(const char *dir, const char *name, const void *data, size_t len);

/* A spawner that refuses every command with -EPERM: nothing external ever runs. */
struct spawner *fuzz_spawner(void);

/* A configuration with one rule and three alert destinations (slack, webhook with a
 * secret, alertmanager), for the dispatcher's and the outbox's harnesses and their seeds. */
extern const char fuzz_alerts_yaml[];

struct dispatch;
struct clock;
/* A dispatcher on @cfg and @clk whose transport refuses every request. Aborts on failure. */
struct dispatch *fuzz_dispatch(const struct config *cfg, const struct clock *clk);

#endif
