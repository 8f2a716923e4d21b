/*
 * ctl.c - the control socket behind floodgatectl (DESIGN.md "Operating it").
 *
 * One request per connection, one line each way, no state kept between connections, so
 * a slow or hostile client costs one descriptor and two bounded buffers until it is gone.
 * The kernel says who connected (SO_PEERCRED); every request is checked against the
 * permission matrix (ctl_allowed) after it is parsed, so a refusal names the verb.
 *
 * Nothing here asks the name service. The control group's membership (its gid, and the
 * uids of the users it lists) is resolved by the daemon when it applies a configuration
 * and handed over in struct ctl_access; a request only compares the peer's uid and gid
 * with that set (a binary search of at most CTL_MEMBERS_MAX uids), and the peer's own
 * supplementary groups as the kernel reports them (SO_PEERGROUPS, Linux 4.13), which
 * covers a user given the group by a name service that does not list members. getpwuid_r() and
 * getgrouplist() per request would wait on NSS, and with an LDAP or sssd backend that
 * can stall the loop, and the log tail with it, for seconds. The price: a change to the
 * group's members takes effect at the next reload.
 *
 * A client lives in three phases, each under its own timer, and never blocks the loop:
 * READ (CTL_IDLE_S for a full line of at most CTL_REQUEST_MAX bytes), PENDING (a handler
 * answers later through a token, CTL_PENDING_S; a client that hangs up meanwhile is
 * freed and the late answer finds nothing), WRITE (non-blocking, CTL_WRITE_S for the
 * client to read its answer). At most CTL_CLIENTS_MAX are served at once (further ones
 * wait in the listen backlog) and at most CTL_PER_UID_MAX per uid other than root and
 * the daemon's own, as OpenSMTPD's control.c caps them.
 */
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ev.h>

#include "log.h"

#define CTL_PER_UID_MAX 4
#define CTL_WHY_MAX     160

enum ctl_phase { CTL_PH_READ, CTL_PH_PENDING, CTL_PH_WRITE };

struct ctl_client {
    struct ctl *ctl;
    struct ctl_client *next;
    ev_io io;
    ev_timer timer;
    int fd;
    enum ctl_phase phase;
    uint64_t token;
    struct ctl_peer peer;
    char buf[CTL_REQUEST_MAX + 1];
    size_t len;
    struct strbuf out;
    size_t sent;
};

struct ctl {
    struct ctl_params p;
    char *path;
    char *group_name;
    uid_t *members; /* ascending, no repeats */
    int fd;
    ev_io io;
    ev_timer pause; /* accepting again after EMFILE/ENFILE */
    size_t nclients;
    struct ctl_client *clients;
    uint64_t next_token;
};

/* --- the request grammar (pure) ------------------------------------------------------ */

static const struct {
    const char *name;
    bool read_only;
} ctl_verbs[CTL__VERB_MAX] = {
    [CTL_STATUS] = { "status", true },
    [CTL_TOP] = { "top", true },
    [CTL_SHOW] = { "show", true },
    [CTL_HELD] = { "held", true },
    [CTL_RELEASE] = { "release", false },
    [CTL_HOLD] = { "hold", false },
    [CTL_SUSPEND] = { "suspend", false },
    [CTL_TRIPPED] = { "tripped", true },
    [CTL_RELOAD] = { "reload", false },
    [CTL_TEST_ALERT] = { "test-alert", false },
    [CTL_ALERT_ENABLE] = { "alert-enable", false },
};

const char *
ctl_verb_name(enum ctl_verb v)
{
    return (unsigned)v < CTL__VERB_MAX ? ctl_verbs[v].name : "?";
}

bool
ctl_verb_read_only(enum ctl_verb v)
{
    return (unsigned)v < CTL__VERB_MAX && ctl_verbs[v].read_only;
}

static bool
ctl_has_ctrl(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
            return true;
    return false;
}

/* Append code point @cp (not 0, not a surrogate, at most U+FFFF) as UTF-8 at *@w. */
static void
ctl_put_utf8(char **w, unsigned cp)
{
    char *o = *w;

    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xc0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *o++ = (char)(0xe0 | cp >> 12);
        *o++ = (char)(0x80 | (cp >> 6 & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    }
    *w = o;
}

/*
 * Identities may be given as floodgate shows them to people: "\\" a backslash, "\xHH"
 * any byte, "\uXXXX" a code point (as UTF-8), so a script directory with control bytes
 * or bytes that are not UTF-8 can be named exactly. Unescapes @id in place (never longer:
 * each escape is at least as long as what it stands for); -EINVAL for a bad escape or a
 * NUL.
 */
static int
ctl_unescape_id(char *id)
{
    char *w = id;

    for (const char *r = id; *r;) {
        unsigned v = 0;
        size_t nhex;

        if (*r != '\\') {
            *w++ = *r++;
            continue;
        }
        if (r[1] == '\\') {
            *w++ = '\\';
            r += 2;
            continue;
        }
        if (r[1] != 'x' && r[1] != 'u')
            return -EINVAL;
        nhex = r[1] == 'x' ? 2 : 4;
        for (size_t i = 0; i < nhex; i++) {
            char c = util_ascii_lower(r[2 + i]);
            if (c >= '0' && c <= '9')
                v = v << 4 | (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f')
                v = v << 4 | (unsigned)(c - 'a' + 10);
            else
                return -EINVAL; /* also the NUL at the end */
        }
        if (v == 0 || (nhex == 4 && v >= 0xd800 && v <= 0xdfff))
            return -EINVAL;
        if (nhex == 2)
            *w++ = (char)v;
        else
            ctl_put_utf8(&w, v);
        r += 2 + nhex;
    }
    *w = '\0';
    return 0;
}

/* "<scope> <identity>[\t<reason>]" (the reason only when @reason is set). */
static int
ctl_parse_identity(const char *p, const char *end, struct ctl_request *ret, bool reason,
                   const char **why)
{
    const char *sp = memchr(p, ' ', (size_t)(end - p)), *tab;
    char scope[16];

    if (!sp || (size_t)(sp - p) >= sizeof(scope)) {
        *why = "needs a scope (mailbox, account, script) and an identity";
        return -EINVAL;
    }
    memcpy(scope, p, (size_t)(sp - p));
    scope[sp - p] = '\0';
    if (usertable_scope_parse(scope, &ret->scope) < 0) {
        *why = "unknown scope (mailbox, account, script)";
        return -EINVAL;
    }
    p = sp + 1;
    tab = reason ? memchr(p, '\t', (size_t)(end - p)) : NULL;
    if (tab) {
        size_t rlen = (size_t)(end - tab - 1);
        if (rlen == 0 || rlen > CTL_REASON_MAX) {
            *why = "reason empty or longer than 200 bytes";
            return -EINVAL;
        }
        for (const char *q = tab + 1; q < end; q++)
            if ((unsigned char)*q < 0x20 || (unsigned char)*q > 0x7e) {
                *why = "reason must be printable ASCII";
                return -EINVAL;
            }
        memcpy(ret->reason, tab + 1, rlen);
        ret->reason[rlen] = '\0';
        end = tab;
    }
    if (p == end || (size_t)(end - p) >= sizeof(ret->id)) {
        *why = "identity empty or too long";
        return -EINVAL;
    }
    if (ctl_has_ctrl(p, (size_t)(end - p))) {
        *why = "identity holds control characters";
        return -EINVAL;
    }
    memcpy(ret->id, p, (size_t)(end - p));
    ret->id[end - p] = '\0';
    if (ctl_unescape_id(ret->id) < 0) {
        *why = "identity holds a bad escape (\\\\, \\xHH or \\uXXXX, not 0)";
        return -EINVAL;
    }
    if (ret->scope == SCOPE_MAILBOX) /* mailboxes are counted lowercased */
        for (char *c = ret->id; *c; c++)
            *c = util_ascii_lower(*c);
    return 0;
}

/* "[scope=S] [window=D] [n=N]" in any order, each at most once. */
static int
ctl_parse_top(const char *p, const char *end, struct ctl_request *ret, const char **why)
{
    bool seen_scope = false, seen_window = false, seen_n = false;

    ret->any_scope = true;
    ret->n = CTL_TOP_DEFAULT;
    while (p < end) {
        const char *sp = memchr(p, ' ', (size_t)(end - p)), *eq;
        const char *tok_end = sp ? sp : end;
        char val[32];
        size_t klen, vlen;

        eq = memchr(p, '=', (size_t)(tok_end - p));
        if (!eq || eq == p || (vlen = (size_t)(tok_end - eq - 1)) == 0 || vlen >= sizeof(val)) {
            *why = "top takes scope=S, window=DURATION and n=N";
            return -EINVAL;
        }
        klen = (size_t)(eq - p);
        memcpy(val, eq + 1, vlen);
        val[vlen] = '\0';
        if (klen == 5 && memcmp(p, "scope", 5) == 0 && !seen_scope) {
            seen_scope = true;
            if (usertable_scope_parse(val, &ret->scope) < 0) {
                *why = "unknown scope (mailbox, account, script)";
                return -EINVAL;
            }
            ret->any_scope = false;
        } else if (klen == 6 && memcmp(p, "window", 6) == 0 && !seen_window) {
            seen_window = true;
            if (util_parse_duration_ms(val, &ret->window_ms) < 0) {
                *why = "window: not a duration (e.g. 60s, 10m, 1h)";
                return -EINVAL;
            }
        } else if (klen == 1 && *p == 'n' && !seen_n) {
            uint32_t n;
            seen_n = true;
            if (util_parse_u32(val, vlen, &n) < 0 || n == 0 || n > CTL_TOP_MAX) {
                *why = "n: a number from 1 to 100";
                return -EINVAL;
            }
            ret->n = n;
        } else {
            *why = "top takes scope=S, window=DURATION and n=N, each once";
            return -EINVAL;
        }
        if (!sp)
            break;
        p = sp + 1;
        if (p == end) {
            *why = "trailing space";
            return -EINVAL;
        }
    }
    return 0;
}

static int
ctl_parse_name(const char *p, const char *end, struct ctl_request *ret, const char **why)
{
    size_t len = (size_t)(end - p);

    if (len == 0 || len >= CTL_NAME_MAX) {
        *why = "destination name empty or too long";
        return -EINVAL;
    }
    for (const char *q = p; q < end; q++) {
        char c = *q;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_')) {
            *why = "destination name: letters, digits, '-' and '_' only";
            return -EINVAL;
        }
    }
    memcpy(ret->id, p, len);
    ret->id[len] = '\0';
    return 0;
}

int
ctl_parse(const char *line, size_t len, struct ctl_request *ret, const char **why)
{
    const char *end = line + len, *sp = memchr(line, ' ', len);
    size_t vlen = sp ? (size_t)(sp - line) : len;
    const char *args = sp ? sp + 1 : end;
    int v = -1, r;

    memset(ret, 0, sizeof(*ret));
    *why = NULL;
    for (int i = 0; i < CTL__VERB_MAX; i++)
        if (strlen(ctl_verbs[i].name) == vlen && memcmp(line, ctl_verbs[i].name, vlen) == 0)
            v = i;
    if (v < 0) {
        *why = "unknown request (status, top, show, held, tripped, release, hold, suspend, "
               "reload, test-alert, alert-enable)";
        return -EINVAL;
    }
    ret->verb = (enum ctl_verb)v;
    switch (ret->verb) {
    case CTL_STATUS:
    case CTL_HELD:
    case CTL_TRIPPED:
    case CTL_RELOAD:
    case CTL_TEST_ALERT:
        if (sp) {
            *why = "this request takes no arguments";
            return -EINVAL;
        }
        return 0;
    case CTL_TOP:
        if (sp && args == end) {
            *why = "trailing space";
            return -EINVAL;
        }
        r = ctl_parse_top(args, end, ret, why);
        break;
    case CTL_SHOW:
    case CTL_RELEASE:
    case CTL_HOLD:
    case CTL_SUSPEND:
        if (!sp) {
            *why = "needs a scope (mailbox, account, script) and an identity";
            return -EINVAL;
        }
        r = ctl_parse_identity(args, end, ret,
                               ret->verb == CTL_HOLD || ret->verb == CTL_SUSPEND, why);
        break;
    case CTL_ALERT_ENABLE:
        r = ctl_parse_name(args, end, ret, why);
        break;
    default:
        r = -EINVAL;
        *why = "unknown request";
        break;
    }
    if (r < 0) {
        struct ctl_request keep = { .verb = ret->verb };
        *ret = keep;
    }
    return r;
}

/* --- who may ask what (pure) --------------------------------------------------------- */

static int
ctl_uid_cmp(const void *a, const void *b)
{
    uid_t x = *(const uid_t *)a, y = *(const uid_t *)b;

    return (x > y) - (x < y);
}

/* Is @uid one of the group's listed members (@acc->members ascending)? */
static bool
ctl_listed(const struct ctl_access *acc, uid_t uid)
{
    size_t n = acc->nmembers < CTL_MEMBERS_MAX ? acc->nmembers : CTL_MEMBERS_MAX;

    return n > 0 && acc->members && bsearch(&uid, acc->members, n, sizeof(uid), ctl_uid_cmp);
}

int
ctl_allowed(enum ctl_verb verb, const struct ctl_peer *peer, const struct ctl_access *acc,
            char *why, size_t size)
{
    const char *name = ctl_verb_name(verb);
    bool member = false;

    if (peer->uid == 0 || peer->uid == acc->self)
        return 0;
    if (acc->has_group)
        member = peer->gid == acc->group || peer->in_group || ctl_listed(acc, peer->uid);
    if (ctl_verb_read_only(verb) && member)
        return 0;
    if (!ctl_verb_read_only(verb) || !acc->has_group) {
        if (acc->self == 0)
            (void)snprintf(why, size, "permission denied: %s needs root", name);
        else
            (void)snprintf(why, size, "permission denied: %s needs root or uid %u", name,
                           (unsigned)acc->self);
    } else if (acc->group_name) {
        (void)snprintf(why, size, "permission denied: %s needs root or group %s", name,
                       acc->group_name);
    } else {
        (void)snprintf(why, size, "permission denied: %s needs root or gid %u", name,
                       (unsigned)acc->group);
    }
    return -EPERM;
}

/* --- the server ---------------------------------------------------------------------- */

#define CTL_PEERGROUPS_MAX 65536 /* NGROUPS_MAX on Linux */

/* Is @group among the peer's supplementary groups? The kernel's answer; false if unknown. */
static bool
ctl_peer_in_group(int fd, gid_t group)
{
#ifdef SO_PEERGROUPS
    gid_t small[64], *gids = small;
    socklen_t len = sizeof(small);
    bool found = false;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, gids, &len) < 0) {
        if (errno != ERANGE || len > CTL_PEERGROUPS_MAX * sizeof(gid_t))
            return false;
        gids = malloc(len);
        if (!gids || getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, gids, &len) < 0) {
            free(gids);
            return false;
        }
    }
    for (size_t i = 0; i < len / sizeof(gid_t) && !found; i++)
        found = gids[i] == group;
    if (gids != small)
        free(gids);
    return found;
#else
    (void)fd;
    (void)group;
    return false;
#endif
}

static void
ctl_client_close(struct ctl_client *c)
{
    struct ctl *ctl = c->ctl;

    for (struct ctl_client **pp = &ctl->clients; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    ev_io_stop(ctl->p.loop, &c->io);
    ev_timer_stop(ctl->p.loop, &c->timer);
    (void)close(c->fd);
    strbuf_done(&c->out);
    ctl->nclients--;
    if (ctl->fd >= 0) { /* accepting again after CTL_CLIENTS_MAX or EMFILE; no-op if active */
        ev_timer_stop(ctl->p.loop, &ctl->pause);
        ev_io_start(ctl->p.loop, &ctl->io);
    }
    free(c);
}

static void
ctl_timer_set(struct ctl_client *c, double seconds)
{
    ev_timer_stop(c->ctl->p.loop, &c->timer);
    ev_timer_set(&c->timer, seconds, 0);
    ev_timer_start(c->ctl->p.loop, &c->timer);
}

/* Write what is left of the answer; close when done or when the client is gone. */
static void
ctl_client_flush(struct ctl_client *c)
{
    while (c->sent < c->out.len) {
        ssize_t n = send(c->fd, c->out.p + c->sent, c->out.len - c->sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return; /* the write watcher and its timer are armed */
        if (n <= 0) {
            ctl_client_close(c);
            return;
        }
        c->sent += (size_t)n;
    }
    ctl_client_close(c);
}

/* The answer is in c->out (a JSON object): send it with a newline. */
static void
ctl_client_reply(struct ctl_client *c)
{
    struct ev_loop *loop = c->ctl->p.loop;

    if (strbuf_append(&c->out, "\n", 1) < 0) { /* cannot happen: out->max leaves room */
        ctl_client_close(c);
        return;
    }
    c->phase = CTL_PH_WRITE;
    c->sent = 0;
    ev_io_stop(loop, &c->io);
    ev_io_set(&c->io, c->fd, EV_WRITE);
    ev_io_start(loop, &c->io);
    ctl_timer_set(c, CTL_WRITE_S);
    ctl_client_flush(c);
}

/* Replace c->out by {"error":"<text>"} (NULL text: strerror(-err)). */
static void
ctl_error_into(struct strbuf *out, int err, const char *text)
{
    char copy[512];

    (void)snprintf(copy, sizeof(copy), "%s", text && *text ? text : strerror(-err));
    strbuf_reset(out);
    (void)strbuf_appends(out, "{\"error\":\"");
    (void)strbuf_append_json(out, copy, strlen(copy));
    (void)strbuf_appends(out, "\"}");
}

static void
ctl_dispatch(struct ctl_client *c)
{
    struct ctl *ctl = c->ctl;
    struct ctl_request req;
    const char *why = NULL;
    char denied[CTL_WHY_MAX];
    int r;

    r = ctl_parse(c->buf, c->len, &req, &why);
    if (r < 0) {
        char msg[256];
        (void)snprintf(msg, sizeof(msg), "bad request: %s", why);
        ctl_error_into(&c->out, r, msg);
        ctl_client_reply(c);
        return;
    }
    /* the kernel's supplementary groups (as at connect), asked only when they decide */
    if (ctl->p.access.has_group && ctl_verb_read_only(req.verb) && c->peer.uid != 0 &&
        c->peer.uid != ctl->p.access.self && c->peer.gid != ctl->p.access.group &&
        !ctl_listed(&ctl->p.access, c->peer.uid))
        c->peer.in_group = ctl_peer_in_group(c->fd, ctl->p.access.group);
    r = ctl_allowed(req.verb, &c->peer, &ctl->p.access, denied, sizeof(denied));
    if (r < 0) {
        log_emit(LOG_NOTICE, 0, NULL, "control socket: uid %u refused: %s", (unsigned)c->peer.uid,
                 denied);
        ctl_error_into(&c->out, r, denied);
        ctl_client_reply(c);
        return;
    }
    c->token = ++ctl->next_token;
    r = ctl->p.handle(ctl->p.ctx, &req, &c->peer, c->token, &c->out);
    if (r == 1) {
        /* the handler answers later; a hang-up meanwhile frees the client (EV_READ) */
        c->phase = CTL_PH_PENDING;
        strbuf_reset(&c->out);
        ctl_timer_set(c, CTL_PENDING_S);
        return;
    }
    if (r < 0) /* ctl_error_into copies the handler's text before it resets the buffer */
        ctl_error_into(&c->out, r, strbuf_cstr(&c->out));
    ctl_client_reply(c);
}

static void
ctl_client_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct ctl_client *c = w->data;
    ssize_t n;
    char *nl;

    (void)loop;
    if (c->phase == CTL_PH_WRITE) {
        if (revents & EV_WRITE)
            ctl_client_flush(c);
        return;
    }
    if (c->phase == CTL_PH_PENDING) {
        char sink[256]; /* nothing more is expected: EOF or an error means the client left */
        n = recv(c->fd, sink, sizeof(sink), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            ctl_client_close(c);
        return;
    }
    n = recv(c->fd, c->buf + c->len, CTL_REQUEST_MAX - c->len, 0);
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
        return;
    }
    ctl_error_into(&c->out, -E2BIG, "request too long");
    ctl_client_reply(c);
}

static void
ctl_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct ctl_client *c = w->data;

    (void)loop;
    (void)revents;
    if (c->phase == CTL_PH_PENDING) {
        ctl_error_into(&c->out, -ETIMEDOUT, "timed out waiting for the answer");
        ctl_client_reply(c);
        return;
    }
    ctl_client_close(c); /* idle before a full request, or not reading its answer */
}

static size_t
ctl_count_uid(const struct ctl *ctl, uid_t uid)
{
    size_t n = 0;

    for (const struct ctl_client *c = ctl->clients; c; c = c->next)
        n += c->peer.uid == uid;
    return n;
}

static void
ctl_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct ctl *ctl = w->data;
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    struct ctl_client *c;
    int fd;

    (void)revents;
    fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE) { /* out of descriptors: pause, not spin */
            ev_io_stop(loop, &ctl->io);
            ev_timer_stop(loop, &ctl->pause);
            ev_timer_set(&ctl->pause, 1.0, 0);
            ev_timer_start(loop, &ctl->pause);
        }
        return;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
        (void)close(fd);
        return;
    }
    if (cred.uid != 0 && cred.uid != ctl->p.access.self &&
        ctl_count_uid(ctl, cred.uid) >= CTL_PER_UID_MAX) {
        static const char busy[] = "{\"error\":\"too many connections from this uid\"}\n";
        (void)!send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)close(fd);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        (void)close(fd);
        return;
    }
    c->ctl = ctl;
    c->fd = fd;
    c->peer.uid = cred.uid;
    c->peer.gid = cred.gid;
    strbuf_init(&c->out, CTL_RESPONSE_MAX + 1);
    ev_io_init(&c->io, ctl_client_cb, fd, EV_READ);
    c->io.data = c;
    ev_io_start(loop, &c->io);
    ev_timer_init(&c->timer, ctl_timer_cb, CTL_IDLE_S, 0);
    c->timer.data = c;
    ev_timer_start(loop, &c->timer);
    c->next = ctl->clients;
    ctl->clients = c;
    if (++ctl->nclients == CTL_CLIENTS_MAX)
        ev_io_stop(loop, &ctl->io);
}

static void
ctl_pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct ctl *ctl = w->data;

    (void)revents;
    if (ctl->nclients < CTL_CLIENTS_MAX)
        ev_io_start(loop, &ctl->io);
}

int
ctl_answer(struct ctl *ctl, uint64_t token, int err, const char *text)
{
    struct ctl_client *c;

    for (c = ctl->clients; c; c = c->next)
        if (c->token == token && c->phase == CTL_PH_PENDING)
            break;
    if (!c)
        return -ENOENT;
    strbuf_reset(&c->out);
    if (err < 0)
        ctl_error_into(&c->out, err, text);
    else if (strbuf_appends(&c->out, text) < 0)
        ctl_error_into(&c->out, -E2BIG, "answer too large");
    ctl_client_reply(c);
    return 0;
}

size_t
ctl_clients(const struct ctl *c)
{
    return c->nclients;
}

/* Mode and group of the socket file: 0600, or 0660 and the control group. */
static int
ctl_apply_access(struct ctl *c)
{
    gid_t g = c->p.access.has_group ? c->p.access.group : getegid();

    if (chown(c->path, (uid_t)-1, g) < 0)
        return -errno;
    if (chmod(c->path, c->p.access.has_group ? 0660 : 0600) < 0)
        return -errno;
    return 0;
}

/* @acc into c->p.access, with copies of the group's name and of its members (sorted). */
static int
ctl_take_access(struct ctl *c, const struct ctl_access *acc)
{
    size_t n = acc->members ? acc->nmembers : 0, k = 0;
    char *name = NULL;
    uid_t *m = NULL;

    if (n > CTL_MEMBERS_MAX)
        return -E2BIG;
    if (acc->group_name && !(name = strdup(acc->group_name)))
        return -ENOMEM;
    if (n > 0) {
        m = malloc(n * sizeof(*m));
        if (!m) {
            free(name);
            return -ENOMEM;
        }
        memcpy(m, acc->members, n * sizeof(*m));
        qsort(m, n, sizeof(*m), ctl_uid_cmp);
        for (size_t i = 0; i < n; i++) /* a user listed twice, or two names for one uid */
            if (k == 0 || m[i] != m[k - 1])
                m[k++] = m[i];
    }
    free(c->group_name);
    free(c->members);
    c->group_name = name;
    c->members = m;
    c->p.access = *acc;
    c->p.access.group_name = name;
    c->p.access.members = m;
    c->p.access.nmembers = k;
    return 0;
}

int
ctl_set_access(struct ctl *c, const struct ctl_access *acc)
{
    int r = ctl_take_access(c, acc);

    return r < 0 ? r : ctl_apply_access(c);
}

int
ctl_open(const struct ctl_params *p, struct ctl **ret)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct ctl *c;
    char dir[sizeof(sa.sun_path)];
    char *slash;
    mode_t old;
    int r;

    if (!p->path || strlen(p->path) >= sizeof(sa.sun_path) || !p->handle || !p->loop)
        return -EINVAL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->p = *p;
    c->fd = -1;
    ev_timer_init(&c->pause, ctl_pause_cb, 1.0, 0);
    c->pause.data = c;
    c->path = strdup(p->path);
    if (!c->path) {
        r = -ENOMEM;
        goto fail;
    }
    c->p.access = (struct ctl_access){ 0 }; /* nothing borrowed from @p until taken */
    r = ctl_take_access(c, &p->access);
    if (r < 0)
        goto fail;
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
    /* born 0600: nobody else can connect before the group and mode are set (one thread) */
    old = umask(0177);
    r = bind(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
    (void)umask(old);
    if (r == 0)
        r = ctl_apply_access(c);
    if (r == 0 && listen(c->fd, 16) < 0)
        r = -errno;
    if (r < 0)
        goto fail;
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
    while (c->clients)
        ctl_client_close(c->clients);
    if (c->fd >= 0) {
        ev_io_stop(c->p.loop, &c->io);
        ev_timer_stop(c->p.loop, &c->pause);
        (void)close(c->fd);
        (void)unlink(c->path);
    }
    free(c->members);
    free(c->group_name);
    free(c->path);
    free(c);
}

/* --- the client ---------------------------------------------------------------------- */

static int
ctl_write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int
ctl_call(const char *path, const char *request, struct strbuf *out)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct timeval tv = { CTL_CALL_S, 0 };
    char buf[4096];
    int fd, r = 0;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -EINVAL;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        r = -errno;
        goto out;
    }
    if ((r = ctl_write_all(fd, request, strlen(request))) < 0 ||
        (r = ctl_write_all(fd, "\n", 1)) < 0)
        goto out;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = errno == EAGAIN ? -ETIMEDOUT : -errno;
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
