#ifndef FLOODGATE_CTL_H
#define FLOODGATE_CTL_H

#include <stddef.h>

#include "usertable.h"
#include "util.h"

struct ev_loop;

/*
 * Control socket for floodgatectl: a unix stream socket, one request line in, one JSON
 * line out, then the server closes. Only root (or the daemon's own uid) may talk to it,
 * checked with SO_PEERCRED on every connection.
 *
 * Requests:  "status"  |  "release <mailbox|account|script> <identity>"
 */
#define CTL_REQUEST_MAX  1024
#define CTL_RESPONSE_MAX (64u << 10)
#define CTL_CLIENTS_MAX  16

enum ctl_verb { CTL_STATUS, CTL_RELEASE };

struct ctl_request {
    enum ctl_verb verb;
    enum usertable_scope scope; /* release */
    char id[USERTABLE_KEY_MAX]; /* release */
};

/* Parse one request line (no newline). Pure. 0, or -EINVAL with a reason in @why. */
int ctl_parse(const char *line, size_t len, struct ctl_request *ret, const char **why);

struct ctl_params {
    struct ev_loop *loop;
    const char *path; /* copied */
    void *ctx;
    /* Append a JSON object to @out; return 0 or -errno (sent back as an error object). */
    int (*status)(void *ctx, struct strbuf *out);
    int (*release)(void *ctx, enum usertable_scope scope, const char *id, struct strbuf *out);
};

struct ctl;

/* Bind @p->path (replacing a stale socket), listen, serve from the loop. */
int ctl_open(const struct ctl_params *p, struct ctl **ret);
void ctl_free(struct ctl *c);

/*
 * Client side, blocking, for floodgatectl: send @request, read the one-line answer into
 * @out (at most CTL_RESPONSE_MAX). Returns 0 or -errno (-ENOENT/-ECONNREFUSED: no daemon).
 */
int ctl_call(const char *path, const char *request, struct strbuf *out);

#endif
