/*
 * metrics_http.c - the loopback /metrics endpoint (alerting.md §6.5).
 *
 * Owns one listening socket and its connections; what the body says is the callback's.
 * Not a general HTTP server: one request per connection, the head read whole (at most
 * METRICS_HTTP_REQUEST_MAX bytes) before anything is answered, headers ignored, no
 * keep-alive, no request body. The request line is judged as soon as it is complete, so
 * garbage gets its 400 without waiting for a blank line that may never come.
 *
 * A connection lives under one deadline from accept to close (timeout_ms): READ the head,
 * WRITE the answer with non-blocking send(), then LINGER: the write side is shut and the
 * rest of what the client sent is read and thrown away until it closes, so the kernel does
 * not answer unread bytes with a reset that could cut the response short. A client that
 * sends nothing, or never reads, meets the deadline and is closed; meanwhile others are
 * served. At most conns_max connections are open: at the cap the listening watcher stops
 * and further clients wait in the kernel's backlog, as ctl.c does. accept() running out
 * of descriptors pauses the listener for a second rather than spinning on it.
 */
#include "metrics_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "log.h"
#include "metrics.h"

#define METRICS_HTTP_BACKLOG    64
#define METRICS_HTTP_PAUSE_S    1.0 /* after EMFILE and friends */
#define METRICS_HTTP_PATH       "/metrics"
#define METRICS_HTTP_METHOD_MAX 16

enum metrics_http_phase { METRICS_HTTP_READ, METRICS_HTTP_WRITE, METRICS_HTTP_LINGER };

struct metrics_http_conn {
    struct metrics_http *h;
    struct metrics_http_conn *next;
    ev_io io;
    ev_timer timer;
    int fd;
    enum metrics_http_phase phase;
    char buf[METRICS_HTTP_REQUEST_MAX];
    size_t len;
    size_t lingered; /* bytes thrown away after the answer */
    struct strbuf out;
    size_t sent;
};

struct metrics_http {
    struct ev_loop *loop;
    metrics_http_fill_fn fill;
    void *ctx;
    double timeout_s;
    size_t conns_max;
    int fd;
    uint16_t port;
    ev_io io;
    ev_timer pause;
    struct metrics_http_conn *conns;
    size_t nconns;
};

int
metrics_http_parse_listen(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len)
{
    const char *colon = s ? strrchr(s, ':') : NULL;
    char host[INET_ADDRSTRLEN];
    struct in_addr a4;
    size_t hlen;
    uint32_t port;

    if (!colon || strlen(colon + 1) > 5 ||
        util_parse_u32(colon + 1, strlen(colon + 1), &port) < 0 || port > 65535)
        return -EINVAL;
    hlen = (size_t)(colon - s);
    memset(ret, 0, sizeof(*ret));
    if (hlen < sizeof(host)) {
        memcpy(host, s, hlen);
        host[hlen] = '\0';
    }
    /* inet_pton takes strict dotted quads only (no "127.1", no octal) */
    if (hlen < sizeof(host) &&
        (strcmp(host, "localhost") == 0 ||
         (inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == IN_LOOPBACKNET))) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ret;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        sin->sin_addr.s_addr = host[0] == 'l' ? htonl(INADDR_LOOPBACK) : a4.s_addr;
        *ret_len = sizeof(*sin);
        return 0;
    }
    if (hlen == 5 && memcmp(s, "[::1]", 5) == 0) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ret;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        sin6->sin6_addr = in6addr_loopback;
        *ret_len = sizeof(*sin6);
        return 0;
    }
    return -EINVAL;
}

static void metrics_http_accept_cb(struct ev_loop *loop, ev_io *w, int revents);

static void
metrics_http_conn_close(struct metrics_http_conn *c)
{
    struct metrics_http *h = c->h;

    for (struct metrics_http_conn **pp = &h->conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    ev_io_stop(h->loop, &c->io);
    ev_timer_stop(h->loop, &c->timer);
    (void)close(c->fd);
    strbuf_done(&c->out);
    free(c);
    h->nconns--;
    /* below the cap again: take the next client from the backlog */
    if (h->fd >= 0 && h->nconns < h->conns_max && !ev_is_active(&h->pause))
        ev_io_start(h->loop, &h->io);
}

static void
metrics_http_conn_io(struct metrics_http_conn *c, int events)
{
    ev_io_stop(c->h->loop, &c->io);
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(c->h->loop, &c->io);
}

/* Send what the kernel takes now; once all is sent, shut the write side and linger. */
static void
metrics_http_flush(struct metrics_http_conn *c)
{
    while (c->sent < c->out.len) {
        ssize_t n = send(c->fd, c->out.p + c->sent, c->out.len - c->sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return; /* EV_WRITE calls again */
        if (n <= 0) {
            metrics_http_conn_close(c);
            return;
        }
        c->sent += (size_t)n;
    }
    (void)shutdown(c->fd, SHUT_WR);
    c->phase = METRICS_HTTP_LINGER;
    metrics_http_conn_io(c, EV_READ);
}

static void
metrics_http_respond(struct metrics_http_conn *c, int status, const char *body, size_t blen)
{
    const char *reason = status == 200   ? "OK"
                         : status == 400 ? "Bad Request"
                         : status == 404 ? "Not Found"
                         : status == 405 ? "Method Not Allowed"
                                         : "Internal Server Error";
    const char *type = status == 200 ? METRICS_CONTENT_TYPE : "text/plain; charset=utf-8";
    int r;

    strbuf_reset(&c->out);
    r = strbuf_printf(&c->out,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "%sConnection: close\r\n\r\n",
                      status, reason, type, blen, status == 405 ? "Allow: GET\r\n" : "");
    if (r == 0)
        r = strbuf_append(&c->out, body, blen);
    if (r < 0) {
        metrics_http_conn_close(c);
        return;
    }
    c->sent = 0;
    c->phase = METRICS_HTTP_WRITE;
    metrics_http_conn_io(c, EV_WRITE);
    metrics_http_flush(c);
}

static void
metrics_http_respond_text(struct metrics_http_conn *c, int status, const char *text)
{
    metrics_http_respond(c, status, text, strlen(text));
}

static void
metrics_http_serve(struct metrics_http_conn *c)
{
    struct strbuf body;
    int r;

    strbuf_init(&body, METRICS_HTTP_BODY_MAX);
    r = c->h->fill(c->h->ctx, &body);
    if (r < 0)
        metrics_http_respond_text(c, 500, "cannot produce the metrics\n");
    else
        metrics_http_respond(c, 200, body.p ? body.p : "", body.len);
    strbuf_done(&body);
}

/*
 * Judge the request line [p, p+len) (without its line end): 0 when it is a well-formed
 * GET /metrics, else the status to answer.
 */
static int
metrics_http_judge(const char *p, size_t len)
{
    const char *end = p + len, *sp1, *sp2, *q;
    size_t mlen, plen;

    sp1 = memchr(p, ' ', len);
    if (!sp1)
        return 400;
    mlen = (size_t)(sp1 - p);
    if (mlen == 0 || mlen > METRICS_HTTP_METHOD_MAX)
        return 400;
    for (q = p; q < sp1; q++)
        if (*q < 'A' || *q > 'Z')
            return 400;
    sp2 = memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1));
    if (!sp2 || sp2 == sp1 + 1 || sp1[1] != '/')
        return 400;
    for (q = sp1 + 1; q < sp2; q++)
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
            return 400;
    if ((size_t)(end - sp2 - 1) != 8 ||
        (memcmp(sp2 + 1, "HTTP/1.1", 8) != 0 && memcmp(sp2 + 1, "HTTP/1.0", 8) != 0))
        return 400;
    if (mlen != 3 || memcmp(p, "GET", 3) != 0)
        return 405;
    q = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
    plen = (size_t)((q ? q : sp2) - (sp1 + 1));
    if (plen != strlen(METRICS_HTTP_PATH) || memcmp(sp1 + 1, METRICS_HTTP_PATH, plen) != 0)
        return 404;
    return 0;
}

/* The head so far: answer when it is complete or already wrong; drop it when too long. */
static void
metrics_http_parse(struct metrics_http_conn *c)
{
    const char *nl = memchr(c->buf, '\n', c->len);
    size_t llen;
    int st;

    if (!nl) {
        if (c->len == sizeof(c->buf))
            metrics_http_conn_close(c); /* a request line over the cap: dropped */
        return;
    }
    llen = (size_t)(nl - c->buf);
    if (llen > 0 && c->buf[llen - 1] == '\r')
        llen--;
    st = metrics_http_judge(c->buf, llen);
    if (st == 400) {
        metrics_http_respond_text(c, 400, "bad request\n");
        return;
    }
    /* the head ends at the first empty line */
    for (const char *p = nl; p; p = memchr(p + 1, '\n', c->len - (size_t)(p + 1 - c->buf))) {
        const char *rest = p + 1;
        size_t left = c->len - (size_t)(rest - c->buf);
        if ((left >= 1 && rest[0] == '\n') || (left >= 2 && rest[0] == '\r' && rest[1] == '\n')) {
            if (st == 405)
                metrics_http_respond_text(c, 405, "only GET\n");
            else if (st == 404)
                metrics_http_respond_text(c, 404, "not found: try /metrics\n");
            else
                metrics_http_serve(c);
            return;
        }
        if (left == 0)
            break;
    }
    if (c->len == sizeof(c->buf))
        metrics_http_conn_close(c); /* a head over the cap: dropped unanswered */
}

static void
metrics_http_read(struct metrics_http_conn *c)
{
    char sink[1024];
    ssize_t n;

    if (c->phase == METRICS_HTTP_LINGER) {
        n = recv(c->fd, sink, sizeof(sink), 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        c->lingered += n > 0 ? (size_t)n : 0;
        if (n <= 0 || c->lingered > METRICS_HTTP_REQUEST_MAX)
            metrics_http_conn_close(c);
        return;
    }
    n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        metrics_http_conn_close(c); /* gone, or reset, before a whole request */
        return;
    }
    c->len += (size_t)n;
    metrics_http_parse(c);
}

static void
metrics_http_conn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct metrics_http_conn *c = w->data;

    (void)loop;
    if (c->phase == METRICS_HTTP_WRITE && (revents & EV_WRITE))
        metrics_http_flush(c);
    else if (revents & EV_READ)
        metrics_http_read(c);
}

static void
metrics_http_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    metrics_http_conn_close(w->data);
}

static void
metrics_http_pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct metrics_http *h = w->data;

    (void)revents;
    ev_timer_stop(loop, w);
    if (h->nconns < h->conns_max)
        ev_io_start(loop, &h->io);
}

static int
metrics_http_conn_new(struct metrics_http *h, int fd)
{
    struct metrics_http_conn *c = calloc(1, sizeof(*c));

    if (!c)
        return -ENOMEM;
    c->h = h;
    c->fd = fd;
    c->phase = METRICS_HTTP_READ;
    strbuf_init(&c->out, METRICS_HTTP_BODY_MAX + 512);
    ev_io_init(&c->io, metrics_http_conn_cb, fd, EV_READ);
    ev_timer_init(&c->timer, metrics_http_timeout_cb, h->timeout_s, 0);
    c->io.data = c->timer.data = c;
    c->next = h->conns;
    h->conns = c;
    h->nconns++;
    ev_io_start(h->loop, &c->io);
    ev_timer_start(h->loop, &c->timer);
    return 0;
}

static void
metrics_http_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct metrics_http *h = w->data;

    (void)revents;
    /* bounded: at most the free slots, then the backlog keeps the rest */
    while (h->nconns < h->conns_max) {
        int fd = accept4(h->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && errno == EINTR)
            continue;
        if (fd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)) {
            log_emit(LOG_WARNING, -errno, NULL, "metrics endpoint: cannot accept, pausing");
            ev_io_stop(loop, w);
            ev_timer_set(&h->pause, METRICS_HTTP_PAUSE_S, 0);
            ev_timer_start(loop, &h->pause);
            return;
        }
        if (fd < 0)
            continue; /* ECONNABORTED and the like: that client is gone */
        if (metrics_http_conn_new(h, fd) < 0) {
            (void)close(fd);
            return;
        }
    }
    ev_io_stop(loop, w); /* at the cap: metrics_http_conn_close() starts it again */
}

int
metrics_http_open(const struct metrics_http_params *p, struct metrics_http **ret)
{
    struct sockaddr_storage ss, bound;
    socklen_t slen, blen = sizeof(bound);
    struct metrics_http *h;
    int one = 1, r;

    if (!p || !p->loop || !p->fill || metrics_http_parse_listen(p->listen, &ss, &slen) < 0)
        return -EINVAL;
    h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->loop = p->loop;
    h->fill = p->fill;
    h->ctx = p->ctx;
    h->timeout_s = (double)(p->timeout_ms > 0 ? p->timeout_ms : METRICS_HTTP_TIMEOUT_MS) / 1000.0;
    h->conns_max = p->conns_max > 0 ? p->conns_max : METRICS_HTTP_CONNS_MAX;
    ev_io_init(&h->io, metrics_http_accept_cb, -1, EV_READ);
    ev_timer_init(&h->pause, metrics_http_pause_cb, METRICS_HTTP_PAUSE_S, 0);
    h->io.data = h->pause.data = h;
    h->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (h->fd < 0) {
        r = -errno;
        goto fail;
    }
    (void)setsockopt(h->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(h->fd, (struct sockaddr *)&ss, slen) < 0 || listen(h->fd, METRICS_HTTP_BACKLOG) < 0 ||
        getsockname(h->fd, (struct sockaddr *)&bound, &blen) < 0) {
        r = -errno;
        goto fail;
    }
    h->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    ev_io_set(&h->io, h->fd, EV_READ);
    ev_io_start(h->loop, &h->io);
    *ret = h;
    return 0;
fail:
    metrics_http_free(h);
    return r;
}

void
metrics_http_free(struct metrics_http *h)
{
    if (!h)
        return;
    while (h->conns)
        metrics_http_conn_close(h->conns);
    ev_io_stop(h->loop, &h->io);
    ev_timer_stop(h->loop, &h->pause);
    if (h->fd >= 0)
        (void)close(h->fd);
    free(h);
}

uint16_t
metrics_http_port(const struct metrics_http *h)
{
    return h->port;
}

size_t
metrics_http_conns(const struct metrics_http *h)
{
    return h->nconns;
}
