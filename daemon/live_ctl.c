/*
 * live_ctl.c - the control socket's handlers: each floodgatectl request is answered from
 * the running daemon's modules (lib/ctl parses and guards the socket).
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "live.h"
#include "log.h"
#include "usertable.h"

static int
live_ctl_release(void *ctx, enum usertable_scope scope, const char *id, struct strbuf *out)
{
    struct daemon *d = ctx;
    int r = action_release(d->action, scope, id);
    int e = engine_release(d->engine, scope, id);

    if (r < 0 && r != -ENOENT)
        return r;
    if (r == -ENOENT && e <= 0)
        return -ENOENT;
    d->dirty = true;
    r = strbuf_printf(out, "{\"released\":true,\"scope\":\"%s\",\"actions\":%s,\"id\":\"",
                      usertable_scope_name(scope), r == 0 ? "true" : "false");
    if (r == 0)
        r = strbuf_append_json(out, id, strlen(id));
    return r < 0 ? r : strbuf_appends(out, "\"}");
}

static int
live_ctl_status(void *ctx, struct strbuf *out)
{
    struct daemon *d = ctx;
    const struct engine_stats *st = engine_stats(d->engine);
    struct tail_stats ts;
    int r;

    tail_get_stats(d->tail, &ts);
    r = strbuf_printf(out, "{\"ready\":%s,\"mode\":\"%s\",\"log_file\":\"",
                      d->ready ? "true" : "false",
                      d->cfg->mode == CONFIG_MODE_MONITOR ? "monitor" : "enforce");
    if (r == 0)
        r = strbuf_append_json(out, d->cfg->log_file, strlen(d->cfg->log_file));
    if (r == 0)
        r = strbuf_printf(out,
                          "\",\"records\":%" PRIu64 ",\"parse_errors\":%" PRIu64
                          ",\"outbound\":%" PRIu64 ",\"trips\":%" PRIu64
                          ",\"identities\":%zu,\"rotations\":%" PRIu64 ",\"truncations\":%" PRIu64
                          ",\"gaps\":%" PRIu64 ",\"log_time\":%lld}",
                          st->records, st->parse_errors, st->outbound, st->trips,
                          usertable_count(engine_table(d->engine)), ts.rotations, ts.truncations,
                          ts.gaps, (long long)engine_now_ms(d->engine));
    return r;
}


int
live_ctl_open(struct daemon *d)
{
    struct ctl_params cp = {
        .loop = d->loop,
        .path = d->cfg->control_socket,
        .ctx = d,
        .status = live_ctl_status,
        .release = live_ctl_release,
    };

    return ctl_open(&cp, &d->ctl);
}
