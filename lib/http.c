/*
 * http.c - asynchronous HTTP POST over libcurl's multi interface, on the libev loop.
 *
 * Owns: one curl multi handle per client, wired to libev as libcurl's evhiperfifo example
 * does (alerting.md §5.9): the socket callback keeps one ev_io per socket (stored with
 * curl_multi_assign(), re-set with ev_io_set() each time libcurl (re)adds it), the timer
 * callback only arms one ev_timer, and every I/O event or timer expiry calls
 * curl_multi_socket_action() and then drains curl_multi_info_read(). Each request is a
 * struct http_req reached through CURLOPT_PRIVATE; it holds the copied body, its header
 * list, the capped response and its redacted URL. Does not own: what a status means
 * (lib/alert classifies), retries and backoff (the dispatcher), logging (callers log the
 * redacted errmsg).
 *
 * Invariants:
 * - Nothing waits for the network: the client refuses to start without libcurl's
 *   asynchronous resolver, and every request has a connect and a total timeout.
 * - A done callback runs exactly once per accepted request, always from the loop (an I/O
 *   event, curl's timer, or a zero timer for a request that failed while being set up),
 *   never from inside http_post(). http_client_free() cancels the rest silently; called
 *   from inside a done callback it cancels at once and frees when the callback returns.
 * - Error messages are built from curl_easy_strerror() and http_url_redact(); curl's own
 *   error buffer is appended only when it holds no URL syntax and no piece of the URL's
 *   path, query or credentials (alerting.md A9).
 * - Retry-After is read from the response headers ourselves, so an absent header (-1) is
 *   told apart from "Retry-After: 0"; an HTTP date becomes seconds from now (wall clock),
 *   clamped to [0, HTTP_RETRY_AFTER_MAX_S].
 * - Bounded: at most HTTP_INFLIGHT_MAX requests at once, HTTP_BODY_MAX response bytes
 *   kept per request (the rest is read and discarded).
 */
#include "http.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <ev.h>

#include "clock.h"
#include "util.h"

/* Requests in flight per client: far above what the token buckets let through. */
#define HTTP_INFLIGHT_MAX 1024
/* A header line we build ("name: value"): room for a long bearer token. */
#define HTTP_HEADER_LINE_MAX 8192
/* The longest Retry-After value we parse (an IMF-fixdate is 29 bytes). */
#define HTTP_RETRY_AFTER_LEN_MAX 64

struct http_client;

/* One socket libcurl asked us to watch. */
struct http_sock {
    struct http_client *c;
    struct http_sock *prev, *next;
    curl_socket_t fd;
    ev_io io;
};

struct http_req {
    struct http_client *c;
    struct http_req *prev, *next;
    CURL *easy;
    bool in_multi;
    struct curl_slist *headers;
    http_done_fn done;
    void *done_ctx;
    int64_t start_ms;
    ev_timer defer; /* a request that failed while being set up completes from here */
    CURLcode defer_code;
    int64_t retry_after_s;
    char host[HTTP_ERRMSG_MAX / 2]; /* http_url_redact() of the URL */
    char *url_secret;               /* the URL past its host, to keep it out of errmsg */
    char errbuf[CURL_ERROR_SIZE];
    struct http_response r;
};

struct http_client {
    struct ev_loop *loop;
    CURLM *multi;
    bool global_init;
    ev_timer timer; /* libcurl's single timeout */
    struct http_req *reqs;
    struct http_sock *socks;
    size_t inflight;
    unsigned depth; /* > 0 while our loop callbacks run */
    bool dying;     /* http_client_free() was called from a done callback */
};

/* --- URLs ---------------------------------------------------------------------------- */

static bool
http_is_scheme_char(char ch, bool first)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
        return true;
    return !first && ((ch >= '0' && ch <= '9') || ch == '+' || ch == '-' || ch == '.');
}

/* Split @url: scheme length, and the authority [*auth, *auth_end). 0 or -EINVAL. */
static int
http_url_split(const char *url, size_t *scheme_len, const char **auth, const char **auth_end)
{
    size_t n = 0;
    const char *a, *e;

    if (!url)
        return -EINVAL;
    while (http_is_scheme_char(url[n], n == 0))
        n++;
    if (n == 0 || strncmp(url + n, "://", 3) != 0)
        return -EINVAL;
    a = url + n + 3;
    e = a + strcspn(a, "/?#");
    *scheme_len = n;
    *auth = a;
    *auth_end = e;
    return 0;
}

int
http_url_redact(const char *url, char *buf, size_t size)
{
    size_t scheme_len, host_len;
    const char *auth, *end, *host;
    int n;

    if (!buf || size == 0)
        return -EINVAL;
    if (size >= 2)
        memcpy(buf, "?", 2);
    else
        buf[0] = '\0';
    if (http_url_split(url, &scheme_len, &auth, &end) < 0)
        return -EINVAL;
    host = auth;
    for (const char *p = auth; p < end; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= 0x20 || ch >= 0x7f || ch == '\\')
            return -EINVAL; /* not a host we would name in a log line */
        if (ch == '@')
            host = p + 1; /* userinfo: never shown */
    }
    host_len = (size_t)(end - host);
    if (host_len == 0 || host[0] == ':')
        return -EINVAL;
    if (scheme_len > INT32_MAX || host_len > INT32_MAX)
        return -EINVAL;
    n = snprintf(buf, size, "%.*s://%.*s", (int)scheme_len, url, (int)host_len, host);
    if (n < 0 || (size_t)n >= size) {
        if (size >= 2)
            memcpy(buf, "?", 2);
        return -E2BIG;
    }
    return 0;
}

/* The part of @url that must never be logged: userinfo, path, query, fragment. */
static char *
http_url_secret(const char *url)
{
    size_t scheme_len;
    const char *auth, *end, *at = NULL;
    size_t ui_len, rest_len, len;
    char *s;

    if (http_url_split(url, &scheme_len, &auth, &end) < 0)
        return strdup(url ? url : "");
    for (const char *p = auth; p < end; p++)
        if (*p == '@')
            at = p;
    ui_len = at ? (size_t)(at - auth) : 0;
    rest_len = strlen(end);
    len = ui_len + 1 + rest_len;
    s = malloc(len + 1);
    if (!s)
        return NULL;
    memcpy(s, auth, ui_len);
    s[ui_len] = ' ';
    memcpy(s + ui_len + 1, end, rest_len);
    s[len] = '\0';
    return s;
}

/*
 * Whether curl's error text @msg may be shown: it must hold no URL syntax and no piece
 * (4 bytes or longer, split at URL delimiters) of @secret.
 */
static bool
http_errbuf_is_safe(const char *msg, const char *secret)
{
    const char *p = secret;

    if (strpbrk(msg, "/?#@&=%") != NULL)
        return false;
    while (p && *p) {
        size_t n = strcspn(p, "/?#@&=;:+ ");
        if (n >= 4) {
            char piece[HTTP_ERRMSG_MAX];
            if (n >= sizeof(piece))
                return false;
            memcpy(piece, p, n);
            piece[n] = '\0';
            if (strstr(msg, piece))
                return false;
        }
        p += n;
        if (*p)
            p++;
    }
    return true;
}

/* --- Retry-After ------------------------------------------------------------------- */

/* Seconds from @v (delta-seconds or an HTTP date), clamped; -1 when unreadable. */
static int64_t
http_retry_after_parse(const char *v, size_t len)
{
    char tmp[HTTP_RETRY_AFTER_LEN_MAX + 1];
    uint64_t secs;
    time_t when;
    int64_t delta;

    while (len > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    while (len > 0 &&
           (v[len - 1] == ' ' || v[len - 1] == '\t' || v[len - 1] == '\r' || v[len - 1] == '\n'))
        len--;
    if (len == 0 || len > HTTP_RETRY_AFTER_LEN_MAX)
        return -1;
    if (v[0] >= '0' && v[0] <= '9') {
        int r = util_parse_u64(v, len, &secs);
        if (r == -ERANGE)
            return HTTP_RETRY_AFTER_MAX_S;
        if (r < 0)
            return -1;
        return secs > HTTP_RETRY_AFTER_MAX_S ? HTTP_RETRY_AFTER_MAX_S : (int64_t)secs;
    }
    memcpy(tmp, v, len);
    tmp[len] = '\0';
    when = curl_getdate(tmp, NULL);
    if (when == (time_t)-1)
        return -1;
    delta = (int64_t)when - clock_now_ms(&clock_real) / 1000;
    if (delta < 0)
        return 0;
    return delta > HTTP_RETRY_AFTER_MAX_S ? HTTP_RETRY_AFTER_MAX_S : delta;
}

static size_t
http_header_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
    struct http_req *rq = userdata;
    size_t len = size * nitems; /* size is always 1 */
    static const char name[] = "retry-after:";

    /* A new status line (100 Continue, then the answer): forget the previous one's. */
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0)
        rq->retry_after_s = -1;
    else if (len >= sizeof(name) - 1 && fg_str_eq_nocase(fg_str_make(buf, sizeof(name) - 1),
                                                         fg_str_make(name, sizeof(name) - 1)))
        rq->retry_after_s =
            http_retry_after_parse(buf + sizeof(name) - 1, len - (sizeof(name) - 1));
    return len;
}

static size_t
http_write_cb(char *buf, size_t size, size_t nmemb, void *userdata)
{
    struct http_req *rq = userdata;
    size_t len = size * nmemb; /* size is always 1 */
    size_t room = HTTP_BODY_MAX - rq->r.body_len;
    size_t n = len < room ? len : room;

    memcpy(rq->r.body + rq->r.body_len, buf, n);
    rq->r.body_len += n;
    rq->r.body[rq->r.body_len] = '\0';
    return len; /* the rest is read and discarded, never an error */
}

/* --- results ------------------------------------------------------------------------ */

static enum http_error
http_error_from_curl(CURLcode code)
{
    switch (code) {
    case CURLE_OK:
        return HTTP_OK;
    case CURLE_OPERATION_TIMEDOUT:
        return HTTP_ERR_TIMEOUT;
    case CURLE_COULDNT_CONNECT:
        return HTTP_ERR_CONNECT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return HTTP_ERR_RESOLVE;
    case CURLE_SEND_ERROR:
        return HTTP_ERR_SEND;
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_BAD_CONTENT_ENCODING:
        return HTTP_ERR_RECV;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_USE_SSL_FAILED:
        return HTTP_ERR_TLS;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_LOGIN_DENIED:
        return HTTP_ERR_CONFIG;
    default:
        return HTTP_ERR_OTHER;
    }
}

static void
http_req_fill(struct http_req *rq, CURLcode code)
{
    struct http_response *r = &rq->r;
    long status = 0;
    int n;

    r->duration_ms = clock_mono_ms(&clock_real) - rq->start_ms;
    if (r->duration_ms < 0)
        r->duration_ms = 0;
    r->error = http_error_from_curl(code);
    if (r->error == HTTP_OK && rq->easy &&
        (curl_easy_getinfo(rq->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status <= 0 ||
         status > 999)) {
        code = CURLE_WEIRD_SERVER_REPLY; /* no status line: nothing we can classify */
        r->error = HTTP_ERR_RECV;
    }
    if (r->error == HTTP_OK) {
        r->status = (int)status;
        r->retry_after_s = rq->retry_after_s;
        r->errmsg[0] = '\0';
        return;
    }
    r->status = 0;
    r->retry_after_s = -1;
    /* curl's detail only when safe and when it fits: the host must not be cut off */
    n = -1;
    if (rq->errbuf[0] && http_errbuf_is_safe(rq->errbuf, rq->url_secret))
        n = snprintf(r->errmsg, sizeof(r->errmsg), "%s: %s (%s)", curl_easy_strerror(code),
                     rq->errbuf, rq->host);
    if (n < 0 || (size_t)n >= sizeof(r->errmsg))
        n = snprintf(r->errmsg, sizeof(r->errmsg), "%s (%s)", curl_easy_strerror(code), rq->host);
    if (n < 0)
        r->errmsg[0] = '\0';
}

static void
http_req_free(struct http_req *rq)
{
    if (!rq)
        return;
    if (rq->easy)
        curl_easy_cleanup(rq->easy);
    curl_slist_free_all(rq->headers);
    free(rq->url_secret);
    free(rq);
}

/* Take @rq out of the client (and out of the multi handle); the caller frees it. */
static void
http_req_detach(struct http_req *rq)
{
    struct http_client *c = rq->c;

    if (rq->in_multi) {
        (void)curl_multi_remove_handle(c->multi, rq->easy);
        rq->in_multi = false;
    }
    ev_timer_stop(c->loop, &rq->defer);
    if (rq->prev)
        rq->prev->next = rq->next;
    else
        c->reqs = rq->next;
    if (rq->next)
        rq->next->prev = rq->prev;
    rq->prev = rq->next = NULL;
    c->inflight--;
}

/* @rq ended with @code: report it (once) and free it. */
static void
http_req_complete(struct http_req *rq, CURLcode code)
{
    http_req_fill(rq, code);
    http_req_detach(rq);
    rq->done(rq->done_ctx, &rq->r);
    http_req_free(rq);
}

static void
http_drain(struct http_client *c)
{
    CURLMsg *msg;
    int left;

    while (!c->dying && (msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        char *priv = NULL;
        CURLcode code = msg->data.result; /* msg dies with curl_multi_remove_handle() */

        if (msg->msg != CURLMSG_DONE)
            continue;
        if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv) != CURLE_OK || !priv)
            continue;
        http_req_complete((struct http_req *)(void *)priv, code);
    }
}

static void http_client_destroy(struct http_client *c);

static void
http_enter(struct http_client *c)
{
    c->depth++;
}

/* Leave a loop callback; frees @c if a done callback asked for it. */
static void
http_leave(struct http_client *c)
{
    c->depth--;
    if (c->depth == 0 && c->dying)
        http_client_destroy(c);
}

/* --- libcurl <-> libev --------------------------------------------------------------- */

static void
http_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct http_sock *s = w->data;
    struct http_client *c = s->c;
    curl_socket_t fd = s->fd; /* @s may be freed inside curl_multi_socket_action() */
    int action = 0, running = 0;

    (void)loop;
    if (revents & EV_READ)
        action |= CURL_CSELECT_IN;
    if (revents & EV_WRITE)
        action |= CURL_CSELECT_OUT;
    if (revents & EV_ERROR)
        action |= CURL_CSELECT_ERR;
    http_enter(c);
    (void)curl_multi_socket_action(c->multi, fd, action, &running);
    http_drain(c);
    http_leave(c);
}

static void
http_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct http_client *c = w->data;
    int running = 0;

    (void)loop;
    (void)revents;
    http_enter(c);
    (void)curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    http_drain(c);
    http_leave(c);
}

static void
http_defer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct http_req *rq = w->data;
    struct http_client *c = rq->c;

    (void)loop;
    (void)revents;
    http_enter(c);
    http_req_complete(rq, rq->defer_code);
    http_leave(c);
}

/* CURLMOPT_TIMERFUNCTION: only arm or stop our timer; never call libcurl from here. */
static int
http_curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct http_client *c = userp;

    (void)multi;
    ev_timer_stop(c->loop, &c->timer);
    if (timeout_ms >= 0) {
        ev_timer_set(&c->timer, (double)timeout_ms / 1000.0, 0.0);
        ev_timer_start(c->loop, &c->timer);
    }
    return 0;
}

static void
http_sock_free(struct http_client *c, struct http_sock *s)
{
    ev_io_stop(c->loop, &s->io);
    if (s->prev)
        s->prev->next = s->next;
    else
        c->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s);
}

/* CURLMOPT_SOCKETFUNCTION: may run at any time, curl_multi_cleanup() included. */
static int
http_curl_sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct http_client *c = userp;
    struct http_sock *s = socketp;
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s)
            http_sock_free(c, s);
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return -1;
        s->c = c;
        s->next = c->socks;
        if (c->socks)
            c->socks->prev = s;
        c->socks = s;
        ev_init(&s->io, http_io_cb);
        s->io.data = s;
        if (curl_multi_assign(c->multi, fd, s) != CURLM_OK) {
            http_sock_free(c, s);
            return -1;
        }
    } else {
        ev_io_stop(c->loop, &s->io);
    }
    if (what & CURL_POLL_IN)
        events |= EV_READ;
    if (what & CURL_POLL_OUT)
        events |= EV_WRITE;
    s->fd = fd;
    /* Always re-set: libcurl may have closed and reopened the same descriptor number. */
    ev_io_set(&s->io, fd, events);
    if (events)
        ev_io_start(c->loop, &s->io);
    return 0;
}

/* --- the client --------------------------------------------------------------------- */

int
http_client_new(struct ev_loop *loop, long max_per_host, struct http_client **ret)
{
    const curl_version_info_data *v;
    struct http_client *c;
    int r = -ENOMEM;

    if (!loop || !ret || max_per_host < 0)
        return -EINVAL;
    *ret = NULL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->loop = loop;
    ev_init(&c->timer, http_timer_cb);
    c->timer.data = c;
    /* Reference-counted by libcurl: one init per client, one cleanup in its free. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        goto fail;
    c->global_init = true;
    v = curl_version_info(CURLVERSION_NOW);
    if (!v || !(v->features & CURL_VERSION_ASYNCHDNS)) {
        r = -ENOTSUP; /* a lookup would block the loop */
        goto fail;
    }
    c->multi = curl_multi_init();
    if (!c->multi)
        goto fail;
    if (curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, http_curl_sock_cb) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, http_curl_timer_cb) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_per_host) != CURLM_OK) {
        r = -EINVAL;
        goto fail;
    }
    *ret = c;
    return 0;
fail:
    http_client_destroy(c);
    return r;
}

/* Drop every request without calling back. */
static void
http_client_cancel_all(struct http_client *c)
{
    while (c->reqs) {
        struct http_req *rq = c->reqs;
        http_req_detach(rq);
        http_req_free(rq);
    }
}

static void
http_client_destroy(struct http_client *c)
{
    if (!c)
        return;
    http_client_cancel_all(c);
    /* The socket and timer callbacks may fire in here: @c stays whole until after. */
    if (c->multi)
        (void)curl_multi_cleanup(c->multi);
    c->multi = NULL;
    while (c->socks)
        http_sock_free(c, c->socks);
    ev_timer_stop(c->loop, &c->timer);
    if (c->global_init)
        curl_global_cleanup();
    free(c);
}

void
http_client_free(struct http_client *c)
{
    if (!c)
        return;
    if (c->depth > 0) {
        /* Inside a done callback: nothing more may be called back; free on the way out. */
        http_client_cancel_all(c);
        c->dying = true;
        return;
    }
    http_client_destroy(c);
}

size_t
http_inflight(const struct http_client *c)
{
    return c ? c->inflight : 0;
}

/* --- one request -------------------------------------------------------------------- */

static bool
http_header_valid(const struct http_header *h)
{
    if (!h->name || !h->value || !h->name[0])
        return false;
    for (const char *p = h->name; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= 0x20 || ch >= 0x7f || ch == ':')
            return false;
    }
    /* CR or LF would let a value start a header of its own. */
    return strpbrk(h->value, "\r\n") == NULL;
}

static int
http_req_headers(struct http_req *rq, const struct http_request *in)
{
    char line[HTTP_HEADER_LINE_MAX];
    struct curl_slist *l;

    for (size_t i = 0; i < in->nheaders; i++) {
        const struct http_header *h = &in->headers[i];
        int n = snprintf(line, sizeof(line), "%s: %s", h->name, h->value);
        if (n < 0 || (size_t)n >= sizeof(line))
            return -E2BIG;
        l = curl_slist_append(rq->headers, line);
        if (!l)
            return -ENOMEM;
        rq->headers = l;
    }
    /* No "Expect: 100-continue" round trip (libcurl < 7.84 sends it above 1 KiB). */
    l = curl_slist_append(rq->headers, "Expect:");
    if (!l)
        return -ENOMEM;
    rq->headers = l;
    return 0;
}

/* Set every option; returns the first failure. */
static CURLcode
http_req_setopts(struct http_req *rq, const struct http_request *in)
{
    CURL *e = rq->easy;
    CURLcode rc = CURLE_OK;

#define HTTP_SETOPT(opt, val)                                                                      \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(e, opt, val);                                                    \
    } while (0)
    HTTP_SETOPT(CURLOPT_PRIVATE, (void *)rq);
    HTTP_SETOPT(CURLOPT_ERRORBUFFER, rq->errbuf);
    HTTP_SETOPT(CURLOPT_NOSIGNAL, 1L);
    HTTP_SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85.0: the *_STR forms; the bitmasks deprecated */
    HTTP_SETOPT(CURLOPT_PROTOCOLS_STR, in->allow_http ? "http,https" : "https");
    HTTP_SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, in->allow_http ? "http,https" : "https");
#else
    HTTP_SETOPT(CURLOPT_PROTOCOLS,
                in->allow_http ? (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS) : (long)CURLPROTO_HTTPS);
    HTTP_SETOPT(CURLOPT_REDIR_PROTOCOLS,
                in->allow_http ? (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS) : (long)CURLPROTO_HTTPS);
#endif
    HTTP_SETOPT(CURLOPT_URL, in->url);
    HTTP_SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)in->connect_timeout_ms);
    HTTP_SETOPT(CURLOPT_TIMEOUT_MS, (long)in->timeout_ms);
    if (in->ca_file)
        HTTP_SETOPT(CURLOPT_CAINFO, in->ca_file);
    HTTP_SETOPT(CURLOPT_HTTPHEADER, rq->headers);
    HTTP_SETOPT(CURLOPT_POST, 1L);
    HTTP_SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)in->body_len);
    HTTP_SETOPT(CURLOPT_COPYPOSTFIELDS, in->body_len ? (const char *)in->body : "");
    HTTP_SETOPT(CURLOPT_WRITEFUNCTION, http_write_cb);
    HTTP_SETOPT(CURLOPT_WRITEDATA, (void *)rq);
    HTTP_SETOPT(CURLOPT_HEADERFUNCTION, http_header_cb);
    HTTP_SETOPT(CURLOPT_HEADERDATA, (void *)rq);
#undef HTTP_SETOPT
    return rc;
}

int
http_post(struct http_client *c, const struct http_request *in, http_done_fn done, void *done_ctx)
{
    struct http_req *rq;
    CURLcode rc;
    int r;

    if (!c || !in || !in->url || !done || (in->nheaders && !in->headers) ||
        (in->body_len && !in->body))
        return -EINVAL;
    if (c->dying)
        return -ECANCELED;
    if (in->nheaders > HTTP_HEADERS_MAX)
        return -E2BIG;
    if (in->connect_timeout_ms <= 0 || in->timeout_ms <= 0 || in->connect_timeout_ms > LONG_MAX ||
        in->timeout_ms > LONG_MAX)
        return -EINVAL; /* libcurl's defaults (300 s connect, no total) are never used */
    for (size_t i = 0; i < in->nheaders; i++)
        if (!http_header_valid(&in->headers[i]))
            return -EINVAL;
    if (c->inflight >= HTTP_INFLIGHT_MAX)
        return -EAGAIN;

    rq = calloc(1, sizeof(*rq));
    if (!rq)
        return -ENOMEM;
    rq->c = c;
    rq->done = done;
    rq->done_ctx = done_ctx;
    rq->retry_after_s = -1;
    rq->start_ms = clock_mono_ms(&clock_real);
    ev_init(&rq->defer, http_defer_cb);
    rq->defer.data = rq;
    (void)http_url_redact(in->url, rq->host, sizeof(rq->host)); /* "?" when not a URL */
    rq->url_secret = http_url_secret(in->url);
    rq->easy = curl_easy_init();
    if (!rq->url_secret || !rq->easy) {
        r = -ENOMEM;
        goto fail;
    }
    r = http_req_headers(rq, in);
    if (r < 0)
        goto fail;
    rc = http_req_setopts(rq, in);
    if (rc == CURLE_OUT_OF_MEMORY) {
        r = -ENOMEM;
        goto fail;
    }

    rq->next = c->reqs;
    if (c->reqs)
        c->reqs->prev = rq;
    c->reqs = rq;
    c->inflight++;
    if (rc != CURLE_OK) {
        /* A protocol or option libcurl refuses: the caller hears it from the loop. */
        rq->defer_code = rc;
        ev_timer_set(&rq->defer, 0.0, 0.0);
        ev_timer_start(c->loop, &rq->defer);
        return 0;
    }
    if (curl_multi_add_handle(c->multi, rq->easy) != CURLM_OK) {
        http_req_detach(rq);
        r = -ENOMEM;
        goto fail;
    }
    rq->in_multi = true;
    return 0;
fail:
    http_req_free(rq);
    return r;
}

static int
http_transport_post(void *ctx, const struct http_request *rq, http_done_fn done, void *done_ctx)
{
    return http_post(ctx, rq, done, done_ctx);
}

struct http_transport
http_client_transport(struct http_client *c)
{
    return (struct http_transport){ .post = http_transport_post, .ctx = c };
}
