/*
 * preflight.c - lib/preflight's findings to a terminal (--check-config) or the journal
 * (start, reload).
 */
#include "preflight.h"

#include <string.h>

#include "daemon.h"
#include "log.h"

void
daemon_preflight_print(const struct preflight_report *r, FILE *f)
{
    char line[CONFIG_PATH_MAX + 512];

    for (size_t i = 0; i < r->n; i++) {
        preflight_format(&r->items[i], line, sizeof(line));
        fprintf(f, "%s\n", line);
    }
    if (r->dropped)
        fprintf(f, "(%zu more not shown)\n", r->dropped);
}

size_t
daemon_preflight(const struct config *cfg, const char *when)
{
    static struct preflight_report r;
    char line[CONFIG_PATH_MAX + 512];

    memset(&r, 0, sizeof(r));
    preflight_run(cfg, &preflight_fs_real, &r);
    for (size_t i = 0; i < r.n; i++) {
        const struct log_field fields[] = { { "FLOODGATE_KEY", r.items[i].key },
                                            { "FLOODGATE_PATH", r.items[i].path },
                                            { NULL, NULL } };
        preflight_format(&r.items[i], line, sizeof(line));
        log_emit(r.items[i].level == PREFLIGHT_ERROR ? LOG_ERR : LOG_WARNING, 0, fields,
                 "%s: %s", when, line);
    }
    if (r.nerrors > 0)
        log_emit(LOG_ERR, 0, NULL,
                 "%s: %zu preflight error%s: refusing to run %s in %s mode (fix the paths, or "
                 "set mode: monitor while you do)",
                 when, r.nerrors, r.nerrors == 1 ? "" : "s", cfg->path ? cfg->path : "the config",
                 cfg->mode == CONFIG_MODE_MONITOR ? "monitor" : "enforce");
    return r.nerrors;
}
