#ifndef FLOODGATE_HTTP_H
#define FLOODGATE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;

/*
 * Asynchronous HTTP POST over libcurl's multi interface, driven by the libev loop
 * (alerting.md §5.9): nothing here waits for the network, DNS included. The alert
 * dispatcher reaches it through struct http_transport so tests swap in a fake.
 *
 * Every request has a connect and a total timeout, TLS verification on, no redirects
 * followed, https only unless the request allows http. Error messages never contain the
 * URL's path, query or credentials (alerting.md A9): at most scheme://host[:port].
 */

#define HTTP_BODY_MAX          4096 /* response bytes kept; the rest is read and discarded */
#define HTTP_HEADERS_MAX       8
#define HTTP_ERRMSG_MAX        256
#define HTTP_RETRY_AFTER_MAX_S 3600 /* a longer Retry-After is clamped to this */

/* How a request ended, when it got no HTTP status (alerting.md §5.3). */
enum http_error {
    HTTP_OK = 0,      /* a status line was received: see status */
    HTTP_ERR_TIMEOUT, /* connect or total timeout */
    HTTP_ERR_CONNECT, /* refused, unreachable */
    HTTP_ERR_RESOLVE, /* name did not resolve */
    HTTP_ERR_SEND,    /* connection broke while sending */
    HTTP_ERR_RECV,    /* connection broke while receiving, or closed with no answer */
    HTTP_ERR_TLS,     /* certificate, CA file, handshake */
    HTTP_ERR_CONFIG,  /* bad URL, protocol not allowed: a configuration error */
    HTTP_ERR_OTHER,
};

struct http_header {
    const char *name;
    const char *value;
};

struct http_request {
    const char *url;
    const struct http_header *headers; /* Content-Type, webhook-*, ...; at most HTTP_HEADERS_MAX */
    size_t nheaders;
    const void *body; /* copied by http_post() */
    size_t body_len;
    int64_t connect_timeout_ms;
    int64_t timeout_ms;
    const char *ca_file; /* NULL: the system's CA store */
    bool allow_http;     /* accept http:// (the config allows it for loopback only) */
};

struct http_response {
    enum http_error error;
    int status;                   /* HTTP status, 0 when error != HTTP_OK */
    int64_t retry_after_s;        /* Retry-After in seconds, clamped to [0, HTTP_RETRY_AFTER_MAX_S];
                                   * -1 when absent */
    int64_t duration_ms;          /* from http_post() to completion */
    char body[HTTP_BODY_MAX + 1]; /* NUL-terminated, capped */
    size_t body_len;
    char errmsg[HTTP_ERRMSG_MAX]; /* redacted, for logs: "" when error == HTTP_OK */
};

/* Called once per request, from the loop, never from inside http_post(). */
typedef void (*http_done_fn)(void *ctx, const struct http_response *r);

/* The seam the dispatcher uses: lib/http's client, or a fake in tests. */
struct http_transport {
    /* Start a POST; 0, or -errno (then @done is never called). */
    int (*post)(void *ctx, const struct http_request *rq, http_done_fn done, void *done_ctx);
    void *ctx;
};

struct http_client;

/*
 * A client on @loop (kept until http_client_free()); at most @max_per_host connections per
 * host (CURLMOPT_MAX_HOST_CONNECTIONS, 0: no limit). Returns 0 and *ret (owned), -EINVAL,
 * -ENOMEM, or -ENOTSUP when libcurl has no asynchronous resolver (CURL_VERSION_ASYNCHDNS).
 */
int http_client_new(struct ev_loop *loop, long max_per_host, struct http_client **ret);
/*
 * Cancel everything in flight without calling back; NULL-safe. May be called from a done
 * callback: the rest is cancelled at once and the client freed when the callback returns.
 */
void http_client_free(struct http_client *c);
/*
 * Start a POST of @rq (borrowed: URL, headers and body are copied). @done is then called
 * exactly once, from the loop, with @done_ctx (kept until then). Returns 0, -EINVAL (a NULL
 * field, a timeout <= 0, a header name or value that is not a single header line), -E2BIG
 * (more than HTTP_HEADERS_MAX headers, or one too long), -EAGAIN (too many in flight),
 * -ECANCELED (the client is being freed), -ENOMEM; then @done is never called. A URL or
 * protocol libcurl refuses is reported through @done as HTTP_ERR_CONFIG.
 */
int http_post(struct http_client *c, const struct http_request *rq, http_done_fn done,
              void *done_ctx);
/* Requests started and not yet called back (0 for NULL). */
size_t http_inflight(const struct http_client *c);
/* The transport for @c (its post calls http_post). */
struct http_transport http_client_transport(struct http_client *c);

/*
 * Write "scheme://host[:port]" of @url into @buf (never the path, query or userinfo).
 * Pure. Returns 0, -EINVAL when @url has no scheme and host or its host holds spaces or
 * control bytes, -E2BIG when @size is too small (@buf then holds "?", or "" if it fits
 * no more).
 */
int http_url_redact(const char *url, char *buf, size_t size);

#endif
