/*
 * ctl.c - the control socket behind floodgatectl (DESIGN.md "Operating it").
 *
 * One request per connection, one line each way, no state kept between connections, so
 * a slow or hostile client costs one descriptor and a bounded buffer until it is gone.
 * The peer's uid is checked with SO_PEERCRED before the request is read: only root or
 * the daemon's own uid may ask for anything. At most CTL_CLIENTS_MAX connections are
 * served at once; further ones wait in the listen backlog.
 */
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ev.h>

#include "log.h"

#define CTL_CLIENT_IDLE_S 5.0 /* a client that sends no full request by then is dropped */

struct ctl_client {
    struct ctl *ctl;
    ev_io io;
    ev_timer idle;
    int fd;
    char buf[CTL_REQUEST_MAX + 1];
    size_t len;
};

struct ctl {
    struct ctl_params p;
    char *path;
    int fd;
    ev_io io;
    size_t nclients;
};

int
ctl_parse(const char *line, size_t len, struct ctl_request *ret, const char **why)
{
    const char *sp, *end = line + len;
    char scope[16];

    memset(ret, 0, sizeof(*ret));
    *why = NULL;
    if (len == 6 && memcmp(line, "status", 6) == 0) {
        ret->verb = CTL_STATUS;
        return 0;
    }
    if (len < 8 || memcmp(line, "release ", 8) != 0) {
        *why = "unknown request (status, release <scope> <identity>)";
        return -EINVAL;
    }
    line += 8;
    sp = memchr(line, ' ', (size_t)(end - line));
    if (!sp || (size_t)(sp - line) >= sizeof(scope)) {
        *why = "release needs a scope (mailbox, account, script) and an identity";
        return -EINVAL;
    }
    memcpy(scope, line, (size_t)(sp - line));
    scope[sp - line] = '\0';
    if (usertable_scope_parse(scope, &ret->scope) < 0) {
        *why = "unknown scope (mailbox, account, script)";
        return -EINVAL;
    }
    line = sp + 1;
    if (line == end || (size_t)(end - line) >= sizeof(ret->id)) {
        *why = "identity empty or too long";
        return -EINVAL;
    }
    for (const char *q = line; q < end; q++) {
        if ((unsigned char)*q < 0x20 || *q == 0x7f) {
            *why = "identity holds control characters";
            return -EINVAL;
        }
    }
    memcpy(ret->id, line, (size_t)(end - line));
    ret->id[end - line] = '\0';
    if (ret->scope == SCOPE_MAILBOX) /* mailboxes are counted lowercased */
        for (char *c = ret->id; *c; c++)
            *c = util_ascii_lower(*c);
    ret->verb = CTL_RELEASE;
    return 0;
}

static void
ctl_client_close(struct ctl_client *c)
{
    ev_io_stop(c->ctl->p.loop, &c->io);
    ev_timer_stop(c->ctl->p.loop, &c->idle);
    (void)close(c->fd);
    c->ctl->nclients--;
    if (c->ctl->nclients == CTL_CLIENTS_MAX - 1)
        ev_io_start(c->ctl->p.loop, &c->ctl->io);
    free(c);
}

static void
ctl_reply(struct ctl_client *c, struct strbuf *out)
{
    const char *p;
    size_t left;

    (void)strbuf_append(out, "\n", 1);
    p = strbuf_cstr(out);
    left = out->len;
    /* a blocking write bounded by SO_SNDTIMEO: answers are small, clients are local */
    (void)fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) & ~O_NONBLOCK);
    while (left > 0) {
        ssize_t n = write(c->fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        p += n;
        left -= (size_t)n;
    }
}

static void
ctl_error(struct strbuf *out, int err, const char *why)
{
    strbuf_reset(out);
    (void)strbuf_appends(out, "{\"error\":\"");
    why = why ? why : strerror(-err);
    (void)strbuf_append_json(out, why, strlen(why));
    (void)strbuf_appends(out, "\"}");
}

static void
ctl_dispatch(struct ctl_client *c)
{
    struct ctl *ctl = c->ctl;
    struct ctl_request req;
    const char *why = NULL;
    struct strbuf out;
    int r;

    strbuf_init(&out, CTL_RESPONSE_MAX);
    r = ctl_parse(c->buf, c->len, &req, &why);
    if (r == 0 && req.verb == CTL_STATUS)
        r = ctl->p.status(ctl->p.ctx, &out);
    else if (r == 0)
        r = ctl->p.release(ctl->p.ctx, req.scope, req.id, &out);
    if (r == -ENOENT && !why)
        why = "no such identity is tripped or known";
    if (r < 0)
        ctl_error(&out, r, why);
    ctl_reply(c, &out);
    strbuf_done(&out);
}

static void
ctl_client_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct ctl_client *c = w->data;
    ssize_t n;
    char *nl;

    (void)loop;
    (void)revents;
    n = read(c->fd, c->buf + c->len, CTL_REQUEST_MAX - c->len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        ctl_client_close(c);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    nl = memchr(c->buf, '\n', c->len);
    if (!nl && c->len < CTL_REQUEST_MAX)
        return;
    if (nl) {
        c->len = (size_t)(nl - c->buf);
        ctl_dispatch(c);
    } else {
        struct strbuf out;
        strbuf_init(&out, 256);
        ctl_error(&out, -E2BIG, "request too long");
        ctl_reply(c, &out);
        strbuf_done(&out);
    }
    ctl_client_close(c);
}

static void
ctl_idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    ctl_client_close(w->data);
}

static void
ctl_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct ctl *ctl = w->data;
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    struct ctl_client *c;
    struct timeval tv = { 1, 0 };
    int fd;

    (void)revents;
    fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
        (cred.uid != 0 && cred.uid != geteuid())) {
        static const char denied[] = "{\"error\":\"permission denied: root only\"}\n";
        (void)!write(fd, denied, sizeof(denied) - 1);
        (void)close(fd);
        return;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    c = calloc(1, sizeof(*c));
    if (!c) {
        (void)close(fd);
        return;
    }
    c->ctl = ctl;
    c->fd = fd;
    ev_io_init(&c->io, ctl_client_cb, fd, EV_READ);
    c->io.data = c;
    ev_io_start(loop, &c->io);
    ev_timer_init(&c->idle, ctl_idle_cb, CTL_CLIENT_IDLE_S, 0);
    c->idle.data = c;
    ev_timer_start(loop, &c->idle);
    if (++ctl->nclients == CTL_CLIENTS_MAX)
        ev_io_stop(loop, &ctl->io);
}

int
ctl_open(const struct ctl_params *p, struct ctl **ret)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct ctl *c;
    char dir[sizeof(sa.sun_path)];
    char *slash;
    int r;

    if (!p->path || strlen(p->path) >= sizeof(sa.sun_path))
        return -EINVAL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->p = *p;
    c->fd = -1;
    c->path = strdup(p->path);
    if (!c->path) {
        r = -ENOMEM;
        goto fail;
    }
    memcpy(dir, p->path, strlen(p->path) + 1);
    slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        (void)mkdir(dir, 0755);
    }
    memcpy(sa.sun_path, p->path, strlen(p->path) + 1);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        r = -errno;
        goto fail;
    }
    (void)unlink(p->path); /* a stale socket of a previous run; the state lock says we own it */
    if (bind(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(p->path, 0600) < 0 ||
        listen(c->fd, 16) < 0) {
        r = -errno;
        goto fail;
    }
    ev_io_init(&c->io, ctl_accept_cb, c->fd, EV_READ);
    c->io.data = c;
    ev_io_start(p->loop, &c->io);
    *ret = c;
    return 0;
fail:
    ctl_free(c);
    return r;
}

void
ctl_free(struct ctl *c)
{
    if (!c)
        return;
    if (c->fd >= 0) {
        ev_io_stop(c->p.loop, &c->io);
        (void)close(c->fd);
        (void)unlink(c->path);
    }
    free(c->path);
    free(c);
}

int
ctl_call(const char *path, const char *request, struct strbuf *out)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct timeval tv = { 10, 0 };
    char buf[4096];
    int fd, r = 0;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -EINVAL;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        r = -errno;
        goto out;
    }
    if (write(fd, request, strlen(request)) < 0 || write(fd, "\n", 1) < 0) {
        r = -errno;
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            break;
        }
        if (n == 0)
            break;
        r = strbuf_append(out, buf, (size_t)n);
        if (r < 0)
            break;
    }
out:
    (void)close(fd);
    return r;
}
