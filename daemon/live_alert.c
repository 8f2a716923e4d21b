/*
 * live_alert.c - alert delivery wired into the service: trips, action outcomes and
 * releases go to lib/dispatch, which sends them through lib/http on the loop.
 */
#include <errno.h>
#include <string.h>

#include "live.h"

int
live_alert_open(struct daemon *d)
{
    d->alerts = NULL;
    return 0;
}

void
live_alert_free(struct daemon *d)
{
    d->alerts = NULL;
}

size_t
live_alert_pending(const struct daemon *d)
{
    (void)d;
    return 0;
}

size_t
live_alert_dest_count(const struct daemon *d)
{
    (void)d;
    return 0;
}

void
live_alert_dest_stats(const struct daemon *d, size_t i, struct dispatch_dest_stats *ret)
{
    (void)d;
    (void)i;
    memset(ret, 0, sizeof(*ret));
}

int
live_alert_test(struct daemon *d, dispatch_test_fn done, void *ctx)
{
    (void)d;
    (void)done;
    (void)ctx;
    return -ENOTSUP;
}

int
live_alert_enable(struct daemon *d, const char *name)
{
    /* no destination exists without d->alerts */
    return d->alerts ? dispatch_enable(d->alerts, name) : -ENOENT;
}
