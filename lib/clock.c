/*
 * clock.c - the real and the fake time sources. This is the only file that reads the
 * system clock (scripts/checksrc enforces it).
 */
#include "clock.h"

#include <time.h>

static int64_t
clock_read(clockid_t id)
{
    struct timespec ts;

    (void)clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
clock_real_now(void *ctx)
{
    (void)ctx;
    return clock_read(CLOCK_REALTIME);
}

static int64_t
clock_real_mono(void *ctx)
{
    (void)ctx;
    return clock_read(CLOCK_MONOTONIC);
}

const struct clock clock_real = { clock_real_now, clock_real_mono, NULL };

static int64_t
clock_fake_now(void *ctx)
{
    return ((struct clock_fake *)ctx)->now_ms;
}

static int64_t
clock_fake_mono(void *ctx)
{
    return ((struct clock_fake *)ctx)->mono_ms;
}

struct clock
clock_fake_init(struct clock_fake *f, int64_t now_ms)
{
    f->now_ms = now_ms;
    f->mono_ms = 1000;
    return (struct clock){ clock_fake_now, clock_fake_mono, f };
}

void
clock_fake_advance(struct clock_fake *f, int64_t ms)
{
    f->now_ms += ms;
    f->mono_ms += ms;
}
