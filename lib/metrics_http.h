#ifndef FLOODGATE_METRICS_HTTP_H
#define FLOODGATE_METRICS_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "util.h"

struct ev_loop;

/*
 * lib/metrics_http: the optional /metrics endpoint (alerting.md §6.5), a tiny HTTP/1.x
 * server on a loopback address only. GET /metrics answers 200 with the exposition the
 * callback writes; other paths 404, other methods 405, a malformed request 400; every
 * answer closes the connection. Bounded: a request head of at most METRICS_HTTP_REQUEST_MAX
 * bytes (a longer one is dropped unanswered), METRICS_HTTP_TIMEOUT_MS per connection from
 * accept to the last byte sent (a client that sends nothing, or does not read its answer,
 * is dropped then), at most METRICS_HTTP_CONNS_MAX connections at once (further ones wait
 * in the listen backlog). Non-blocking throughout: it never stops the loop.
 */

#define METRICS_HTTP_REQUEST_MAX 8192
#define METRICS_HTTP_TIMEOUT_MS  5000
#define METRICS_HTTP_CONNS_MAX   16
#define METRICS_HTTP_BODY_MAX    (4u << 20) /* an exposition is a few KiB; a cap all the same */

/* Write the exposition into @out (empty, capped). Returns 0 or -errno (answered 500). */
typedef int (*metrics_http_fill_fn)(void *ctx, struct strbuf *out);

/* Zero means "default" for every number. */
struct metrics_http_params {
    struct ev_loop *loop; /* borrowed, must outlive the server */
    const char *listen;   /* "127.0.0.1:PORT", "localhost:PORT" or "[::1]:PORT" (borrowed) */
    metrics_http_fill_fn fill;
    void *ctx;
    int64_t timeout_ms; /* METRICS_HTTP_TIMEOUT_MS */
    size_t conns_max;   /* METRICS_HTTP_CONNS_MAX */
};

struct metrics_http;

/*
 * Parse a listen address into @ret (a sockaddr_in or sockaddr_in6) and its length. Only
 * loopback is accepted: a dotted quad in 127.0.0.0/8 (as the configuration allows),
 * "localhost" (127.0.0.1, never resolved) or "[::1]"; port 0 asks the kernel for a free
 * one. Returns 0 or -EINVAL.
 */
int metrics_http_parse_listen(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len);

/*
 * Bind and listen. Returns 0 and *ret (owned, metrics_http_free()), -EINVAL (not a loopback
 * address, no callback), -ENOMEM, or -errno of socket/bind/listen (-EADDRINUSE).
 */
int metrics_http_open(const struct metrics_http_params *p, struct metrics_http **ret);

/* Stop every watcher and close every connection. NULL-safe. */
void metrics_http_free(struct metrics_http *h);

/* The port bound (what port 0 became). */
uint16_t metrics_http_port(const struct metrics_http *h);

/* Connections open now (for tests). */
size_t metrics_http_conns(const struct metrics_http *h);

#endif
