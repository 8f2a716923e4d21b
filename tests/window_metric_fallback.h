/*
 * window_metric_fallback.h - test-only stand-ins for lib/window.c's metric names.
 *
 * config.c parses metric names with window_metric_parse(). Until window.c is in this tree
 * the tests that link config.c get these weak copies; once it is, the real definitions win
 * and these are ignored. Include from exactly one translation unit per test program.
 */
#ifndef FLOODGATE_WINDOW_METRIC_FALLBACK_H
#define FLOODGATE_WINDOW_METRIC_FALLBACK_H

#include <errno.h>
#include <string.h>

#include "window.h"

static const char *const window_fallback_names[WINDOW_METRIC__MAX] = {
    "messages", "recipients", "failed", "deferred", "domains", "ips", "mismatch", "authfail",
};

__attribute__((weak)) const char *
window_metric_name(enum window_metric m)
{
    return (unsigned)m < WINDOW_METRIC__MAX ? window_fallback_names[m] : "unknown";
}

__attribute__((weak)) int
window_metric_parse(const char *name, enum window_metric *ret)
{
    for (unsigned i = 0; i < WINDOW_METRIC__MAX; i++) {
        if (strcmp(name, window_fallback_names[i]) == 0) {
            *ret = (enum window_metric)i;
            return 0;
        }
    }
    return -EINVAL;
}

__attribute__((weak)) bool
window_metric_is_distinct(enum window_metric m)
{
    return m == WINDOW_DOMAINS || m == WINDOW_IPS;
}

#endif
