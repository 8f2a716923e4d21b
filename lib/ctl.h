#ifndef FLOODGATE_CTL_H
#define FLOODGATE_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "usertable.h"
#include "util.h"

struct ev_loop;

/*
 * Control socket for floodgatectl: a unix stream socket, one request line in, one JSON
 * line out, then the server closes. The peer's credentials (SO_PEERCRED) decide what it
 * may ask: root and the daemon's own uid anything, members of the control group the
 * read-only verbs, nobody else anything. A member is a peer whose gid is the group's or
 * whose uid is one the group lists; the daemon resolves that list when it applies its
 * configuration (start, reload), so no request waits on the name service.
 *
 * Requests (fields separated by one space; the identity runs to the end of the line, or
 * to a tab that starts a hold's reason):
 *
 *   status
 *   top [scope=mailbox|account|script] [window=DURATION] [n=N]    (each at most once)
 *   show <scope> <identity>
 *   held
 *   tripped
 *   release <scope> <identity>
 *   hold <scope> <identity>[\t<reason>]
 *   suspend <scope> <identity>[\t<reason>]
 *   reload
 *   test-alert
 *   alert-enable <destination>
 *
 * Answers: a JSON object, or {"error":"<one line>"} when refused or failed.
 */
#define CTL_REQUEST_MAX  1024
#define CTL_RESPONSE_MAX (1u << 20)
#define CTL_CLIENTS_MAX  16
#define CTL_REASON_MAX   200 /* bytes of a manual hold's or suspension's reason */
#define CTL_TOP_DEFAULT  10
#define CTL_TOP_MAX      100
#define CTL_NAME_MAX     64   /* alert destination names */
#define CTL_MEMBERS_MAX  4096 /* uids of the control group's listed members */
#define CTL_IDLE_S       5.0  /* a client that sends no full request by then is dropped */
#define CTL_WRITE_S      5.0  /* a client that does not read its answer by then is dropped */
#define CTL_PENDING_S    60.0 /* an answer a handler owes is given up after this */
#define CTL_CALL_S       75   /* floodgatectl waits this long for an answer */

enum ctl_verb {
    CTL_STATUS,
    CTL_TOP,
    CTL_SHOW,
    CTL_HELD,
    CTL_RELEASE,
    CTL_HOLD,
    CTL_SUSPEND, /* as hold, with the backend's suspension instead of its hold */
    CTL_TRIPPED, /* the recent trips (monitor mode's too) and what was done */
    CTL_RELOAD,
    CTL_TEST_ALERT,
    CTL_ALERT_ENABLE,
    CTL__VERB_MAX,
};

const char *ctl_verb_name(enum ctl_verb v); /* "status", "test-alert", ... */
bool ctl_verb_read_only(enum ctl_verb v);

struct ctl_request {
    enum ctl_verb verb;
    bool any_scope;                  /* top: no scope= given */
    enum usertable_scope scope;      /* top (with scope=), show, release, hold, suspend */
    int64_t window_ms;               /* top: 0 = every window the rules use */
    unsigned n;                      /* top: CTL_TOP_DEFAULT when not given */
    char id[USERTABLE_KEY_MAX];      /* show, release, hold, suspend: identity; alert-enable:
                                      * destination */
    char reason[CTL_REASON_MAX + 1]; /* hold, suspend: "" when none */
};

/* Parse one request line (no newline). Pure. 0, or -EINVAL with a reason in @why. */
int ctl_parse(const char *line, size_t len, struct ctl_request *ret, const char **why);

/* Who is asking: what the kernel says (SO_PEERCRED, SO_PEERGROUPS), nothing looked up. */
struct ctl_peer {
    uid_t uid;
    gid_t gid;
    bool in_group; /* the control group is among its supplementary groups (SO_PEERGROUPS) */
};

/*
 * Who may ask: the daemon's uid, and the control group (has_group false: none). The
 * group's members are a peer gid equal to @group (users whose primary group it is) and
 * the uids in @members (the users the group lists), resolved by the caller before: the
 * check itself never asks the name service. For ctl_allowed() @members is ascending;
 * ctl_open() and ctl_set_access() take any order and keep a sorted copy.
 */
struct ctl_access {
    uid_t self;
    bool has_group;
    gid_t group;
    const char *group_name; /* for messages; may be NULL */
    const uid_t *members;   /* may be NULL when @nmembers is 0 */
    size_t nmembers;        /* at most CTL_MEMBERS_MAX */
};

/*
 * The permission matrix. Pure: uid and gid in, a verdict out. 0 when @peer may ask
 * @verb; -EPERM with a one-line reason ("release needs root") written to @why (size
 * @size) otherwise.
 */
int ctl_allowed(enum ctl_verb verb, const struct ctl_peer *peer, const struct ctl_access *acc,
                char *why, size_t size);

struct ctl;

/*
 * A handler answers a parsed, permitted request:
 *  - returns 0 with a JSON object in @out;
 *  - returns -errno, with an optional one-line message (plain text) in @out;
 *  - returns 1: the answer comes later through ctl_answer(ctl, @token, ...). The client
 *    waits up to CTL_PENDING_S; if it has gone meanwhile, ctl_answer() says -ENOENT.
 */
typedef int (*ctl_handler_fn)(void *ctx, const struct ctl_request *req, const struct ctl_peer *peer,
                              uint64_t token, struct strbuf *out);

struct ctl_params {
    struct ev_loop *loop;
    const char *path; /* copied */
    ctl_handler_fn handle;
    void *ctx;
    struct ctl_access access; /* group_name and members copied */
};

/*
 * Bind @p->path (replacing a stale socket), mode 0600, or 0660 and the control group
 * when there is one; listen, serve from the loop. -E2BIG: more than CTL_MEMBERS_MAX
 * members.
 */
int ctl_open(const struct ctl_params *p, struct ctl **ret);
void ctl_free(struct ctl *c);

/*
 * A new control group or member list (a reload): the socket's group and mode follow.
 * 0 or -errno (-E2BIG: more than CTL_MEMBERS_MAX members; nothing changed).
 */
int ctl_set_access(struct ctl *c, const struct ctl_access *acc);

/*
 * Answer a pending request: @json is a JSON object, or, with @err < 0, a plain text
 * message (NULL: strerror). 0, or -ENOENT when the client is gone (nothing is sent).
 */
int ctl_answer(struct ctl *c, uint64_t token, int err, const char *text);

/* Clients connected now (for tests). */
size_t ctl_clients(const struct ctl *c);

/*
 * Client side, blocking, for floodgatectl: send @request, read the one-line answer into
 * @out (at most CTL_RESPONSE_MAX). Returns 0 or -errno (-ENOENT/-ECONNREFUSED: no daemon).
 */
int ctl_call(const char *path, const char *request, struct strbuf *out);

#endif
