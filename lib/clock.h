#ifndef FLOODGATE_CLOCK_H
#define FLOODGATE_CLOCK_H

#include <stdint.h>

/* The only source of time (DESIGN.md "Time"): injected everywhere, faked in tests. */
struct clock {
    int64_t (*now_ms)(void *ctx);  /* wall time, ms: stamps, ledger entries */
    int64_t (*mono_ms)(void *ctx); /* monotonic, ms: timers, retries, cooldown expiry */
    void *ctx;
};

extern const struct clock clock_real;

/* A fake clock for tests: both readings advance only by clock_fake_advance(). */
struct clock_fake {
    int64_t now_ms;
    int64_t mono_ms;
};

struct clock clock_fake_init(struct clock_fake *f, int64_t now_ms);
void clock_fake_advance(struct clock_fake *f, int64_t ms);

static inline int64_t
clock_now_ms(const struct clock *c)
{
    return c->now_ms(c->ctx);
}

static inline int64_t
clock_mono_ms(const struct clock *c)
{
    return c->mono_ms(c->ctx);
}

#endif
