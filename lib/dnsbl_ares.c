/*
 * dnsbl_ares.c - DNS blocklist lookups with c-ares on the libev loop (dnsbl.h): c-ares
 * reports the sockets it wants watched (ARES_OPT_SOCK_STATE_CB), each gets an ev_io, and
 * one ev_timer follows ares_timeout(). Nothing blocks: a lookup that does not answer
 * times out inside c-ares and is reported as an error ("unknown", never a delisting).
 */
#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "dnsbl.h"
#include "util.h"

#define DNSBL_ARES_SOCKS_MAX 16 /* c-ares opens one UDP (and maybe one TCP) socket a server */
#define DNSBL_ARES_TRIES     2

struct dnsbl_ares_sock {
    ev_io io;
    int fd; /* -1: free */
    struct dnsbl_ares *owner;
};

struct dnsbl_ares_query {
    struct dnsbl_ares *owner;
    dnsbl_answer_fn done;
    void *arg;
};

struct dnsbl_ares {
    struct ev_loop *loop;
    ares_channel ch;
    ev_timer timer;
    struct dnsbl_ares_sock socks[DNSBL_ARES_SOCKS_MAX];
    bool closing; /* ares_destroy() calls back with ARES_EDESTRUCTION: say nothing */
};

static void dnsbl_ares_rearm(struct dnsbl_ares *a);

static void
dnsbl_ares_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct dnsbl_ares_sock *s = w->data;
    struct dnsbl_ares *a = s->owner;
    int fd = s->fd;

    (void)loop;
    ares_process_fd(a->ch, (revents & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    dnsbl_ares_rearm(a);
}

static void
dnsbl_ares_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct dnsbl_ares *a = w->data;

    (void)loop;
    (void)revents;
    ares_process_fd(a->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    dnsbl_ares_rearm(a);
}

/* The timer follows c-ares' next timeout; stopped when nothing is in flight. */
static void
dnsbl_ares_rearm(struct dnsbl_ares *a)
{
    struct timeval tv, *tvp;

    if (a->closing)
        return;
    ev_timer_stop(a->loop, &a->timer);
    tvp = ares_timeout(a->ch, NULL, &tv);
    if (!tvp)
        return;
    ev_timer_set(&a->timer, (double)tvp->tv_sec + (double)tvp->tv_usec / 1e6 + 0.001, 0.);
    ev_timer_start(a->loop, &a->timer);
}

static void
dnsbl_ares_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dnsbl_ares *a = data;
    struct dnsbl_ares_sock *s = NULL, *free_slot = NULL;

    for (size_t i = 0; i < DNSBL_ARES_SOCKS_MAX; i++) {
        if (a->socks[i].fd == (int)fd)
            s = &a->socks[i];
        else if (a->socks[i].fd < 0 && !free_slot)
            free_slot = &a->socks[i];
    }
    if (s)
        ev_io_stop(a->loop, &s->io);
    if (!readable && !writable) {
        if (s)
            s->fd = -1;
        return;
    }
    if (!s) {
        if (!free_slot)
            return; /* more sockets than we watch: c-ares times the query out */
        s = free_slot;
        s->fd = (int)fd;
    }
    ev_io_set(&s->io, (int)fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
    ev_io_start(a->loop, &s->io);
}

static void
dnsbl_ares_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dnsbl_ares_query *q = arg;
    struct dnsbl_answer ans = { .rcode = DNSBL_R_ERROR };
    struct ares_addrttl ttls[DNSBL_CODES_MAX];
    int nttls = DNSBL_CODES_MAX;

    (void)timeouts;
    if (q->owner->closing) {
        free(q);
        return;
    }
    if (status == ARES_SUCCESS) {
        int r = ares_parse_a_reply(abuf, alen, NULL, ttls, &nttls);
        if (r == ARES_SUCCESS) {
            ans.rcode = DNSBL_R_ANSWER;
            for (int i = 0; i < nttls && i < DNSBL_CODES_MAX; i++)
                ans.addrs[ans.naddrs++] = ntohl(ttls[i].ipaddr.s_addr);
        } else if (r == ARES_ENODATA) {
            ans.rcode = DNSBL_R_NODATA;
        } else {
            ans.error = ares_strerror(r);
        }
    } else if (status == ARES_ENOTFOUND) {
        ans.rcode = DNSBL_R_NXDOMAIN;
    } else if (status == ARES_ENODATA) {
        ans.rcode = DNSBL_R_NODATA;
    } else {
        ans.error = ares_strerror(status);
    }
    q->done(q->arg, &ans);
    free(q);
}

static int
dnsbl_ares_query(void *ctx, const char *name, dnsbl_answer_fn done, void *arg)
{
    struct dnsbl_ares *a = ctx;
    struct dnsbl_ares_query *q = malloc(sizeof(*q));

    if (!q)
        return -ENOMEM;
    *q = (struct dnsbl_ares_query){ a, done, arg };
    /* ares_query: the name as given, no search list */
    ares_query(a->ch, name, ns_c_in, ns_t_a, dnsbl_ares_answer, q);
    dnsbl_ares_rearm(a);
    return 0;
}

struct dnsbl_resolver
dnsbl_ares_resolver(struct dnsbl_ares *a)
{
    return (struct dnsbl_resolver){ dnsbl_ares_query, a };
}

/* "ip:port", "[v6]:port" or an address alone into c-ares' csv form; -EINVAL when not. */
static int
dnsbl_ares_server(const char *s, char *buf, size_t size)
{
    unsigned char addr[16];
    char host[DNSBL_IP_MAX + 2];
    const char *port = NULL;
    size_t hl;

    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || (end[1] != '\0' && end[1] != ':'))
            return -EINVAL;
        hl = (size_t)(end - s - 1);
        if (hl >= sizeof(host))
            return -EINVAL;
        memcpy(host, s + 1, hl);
        host[hl] = '\0';
        if (inet_pton(AF_INET6, host, addr) != 1)
            return -EINVAL;
        port = end[1] == ':' ? end + 2 : NULL;
        if (port)
            return snprintf(buf, size, "[%s]:%s", host, port) < (int)size ? 0 : -EINVAL;
        return snprintf(buf, size, "[%s]:53", host) < (int)size ? 0 : -EINVAL;
    }
    if (inet_pton(AF_INET6, s, addr) == 1)
        return snprintf(buf, size, "[%s]:53", s) < (int)size ? 0 : -EINVAL;
    port = strchr(s, ':');
    hl = port ? (size_t)(port - s) : strlen(s);
    if (hl >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (inet_pton(AF_INET, host, addr) != 1)
        return -EINVAL;
    return snprintf(buf, size, "%s:%s", host, port ? port + 1 : "53") < (int)size ? 0 : -EINVAL;
}

int
dnsbl_ares_new(struct ev_loop *loop, const char *nameserver, int64_t timeout_ms,
               struct dnsbl_ares **ret)
{
    static bool lib_ready;
    struct ares_options o;
    struct dnsbl_ares *a;
    char csv[80];
    int r;

    if (!lib_ready) {
        if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
            return -EIO;
        lib_ready = true;
    }
    if (nameserver && dnsbl_ares_server(nameserver, csv, sizeof(csv)) < 0)
        return -EINVAL;
    a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->loop = loop;
    for (size_t i = 0; i < DNSBL_ARES_SOCKS_MAX; i++) {
        a->socks[i].fd = -1;
        a->socks[i].owner = a;
        ev_io_init(&a->socks[i].io, dnsbl_ares_io_cb, 0, 0);
        a->socks[i].io.data = &a->socks[i];
    }
    ev_timer_init(&a->timer, dnsbl_ares_timer_cb, 0., 0.);
    a->timer.data = a;
    memset(&o, 0, sizeof(o));
    o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
    o.timeout = (int)(timeout_ms > 0 && timeout_ms < 60000 ? timeout_ms : 5000);
    o.tries = DNSBL_ARES_TRIES;
    o.sock_state_cb = dnsbl_ares_sock_state;
    o.sock_state_cb_data = a;
    r = ares_init_options(
        &a->ch, &o, ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB);
    if (r != ARES_SUCCESS) {
        free(a);
        return r == ARES_ENOMEM ? -ENOMEM : -EIO;
    }
    if (nameserver && ares_set_servers_ports_csv(a->ch, csv) != ARES_SUCCESS) {
        ares_destroy(a->ch);
        free(a);
        return -EINVAL;
    }
    *ret = a;
    return 0;
}

void
dnsbl_ares_free(struct dnsbl_ares *a)
{
    if (!a)
        return;
    a->closing = true;
    ev_timer_stop(a->loop, &a->timer);
    for (size_t i = 0; i < DNSBL_ARES_SOCKS_MAX; i++)
        if (a->socks[i].fd >= 0)
            ev_io_stop(a->loop, &a->socks[i].io);
    ares_destroy(a->ch); /* calls every pending query back with ARES_EDESTRUCTION */
    free(a);
}
