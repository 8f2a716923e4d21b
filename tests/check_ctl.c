/*
 * check_ctl.c - the control socket: the request parser (a table of good and bad lines),
 * the permission matrix (a table of peers against a control group's gid and listed
 * members, resolved beforehand), and the socket itself with a fake handler,
 * served from a libev loop in a child process while the parent plays the clients: round
 * trips, garbage, an oversized request, an idle client and one that never reads its
 * answer (both dropped while others are served), asynchronous answers, a late answer to
 * a client that hung up, and the socket's mode and group checks under another uid.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>
#include <ev.h>

#include "ctl.h"
#include "testrun.h"

/* --- the parser --------------------------------------------------------------------- */

struct ctl_case {
    const char *name;
    const char *line;
    int ret;
    enum ctl_verb verb;
    enum usertable_scope scope;
    const char *id;
};

static const struct ctl_case cases[] = {
    { "status", "status", 0, CTL_STATUS, 0, NULL },
    { "held", "held", 0, CTL_HELD, 0, NULL },
    { "reload", "reload", 0, CTL_RELOAD, 0, NULL },
    { "test-alert", "test-alert", 0, CTL_TEST_ALERT, 0, NULL },
    { "top", "top", 0, CTL_TOP, 0, NULL },
    { "top all options", "top scope=account window=10m n=5", 0, CTL_TOP, SCOPE_ACCOUNT, NULL },
    { "top options any order", "top n=100 scope=script", 0, CTL_TOP, SCOPE_SCRIPT, NULL },
    { "release mailbox", "release mailbox box@example.com", 0, CTL_RELEASE, SCOPE_MAILBOX,
      "box@example.com" },
    { "release script with spaces", "release script u:/home/u/public html", 0, CTL_RELEASE,
      SCOPE_SCRIPT, "u:/home/u/public html" },
    { "release account", "release account acct1", 0, CTL_RELEASE, SCOPE_ACCOUNT, "acct1" },
    { "mailbox lowercased", "release mailbox Box@Example.COM", 0, CTL_RELEASE, SCOPE_MAILBOX,
      "box@example.com" },
    { "account case kept", "release account Acct1", 0, CTL_RELEASE, SCOPE_ACCOUNT, "Acct1" },
    { "show", "show account acct1", 0, CTL_SHOW, SCOPE_ACCOUNT, "acct1" },
    { "hold", "hold mailbox a@b.example", 0, CTL_HOLD, SCOPE_MAILBOX, "a@b.example" },
    { "hold with reason", "hold account acct1\tspam run, ticket 42", 0, CTL_HOLD, SCOPE_ACCOUNT,
      "acct1" },
    { "alert-enable", "alert-enable ops-slack_2", 0, CTL_ALERT_ENABLE, 0, "ops-slack_2" },
    { "suspend", "suspend account acct1", 0, CTL_SUSPEND, SCOPE_ACCOUNT, "acct1" },
    { "suspend mailbox with reason", "suspend mailbox A@b.example\tphished", 0, CTL_SUSPEND,
      SCOPE_MAILBOX, "a@b.example" },
    { "tripped", "tripped", 0, CTL_TRIPPED, 0, NULL },
    /* bad lines */
    { "unknown verb", "freeze account acct1", -EINVAL, 0, 0, NULL },
    { "suspend without identity", "suspend account", -EINVAL, 0, 0, NULL },
    { "suspend empty reason", "suspend account acct1\t", -EINVAL, 0, 0, NULL },
    { "tripped with junk", "tripped all", -EINVAL, 0, 0, NULL },
    { "verb prefix", "stat", -EINVAL, 0, 0, NULL },
    { "verb longer", "statuses", -EINVAL, 0, 0, NULL },
    { "status with junk", "status now", -EINVAL, 0, 0, NULL },
    { "held trailing space", "held ", -EINVAL, 0, 0, NULL },
    { "reload with junk", "reload now", -EINVAL, 0, 0, NULL },
    { "test-alert with junk", "test-alert x", -EINVAL, 0, 0, NULL },
    { "no identity", "release mailbox", -EINVAL, 0, 0, NULL },
    { "empty identity", "release mailbox ", -EINVAL, 0, 0, NULL },
    { "show without scope", "show", -EINVAL, 0, 0, NULL },
    { "bad scope", "release domain example.com", -EINVAL, 0, 0, NULL },
    { "control char", "release account ac\001ct", -EINVAL, 0, 0, NULL },
    { "tab in a release", "release account acct1\tno reasons here", -EINVAL, 0, 0, NULL },
    { "empty reason", "hold account acct1\t", -EINVAL, 0, 0, NULL },
    { "reason with control char", "hold account acct1\tbad\001", -EINVAL, 0, 0, NULL },
    { "reason not ascii", "hold account acct1\tcaf\xc3\xa9", -EINVAL, 0, 0, NULL },
    { "hold without identity", "hold account \treason", -EINVAL, 0, 0, NULL },
    { "top unknown key", "top limit=5", -EINVAL, 0, 0, NULL },
    { "top n zero", "top n=0", -EINVAL, 0, 0, NULL },
    { "top n too big", "top n=101", -EINVAL, 0, 0, NULL },
    { "top n junk", "top n=5x", -EINVAL, 0, 0, NULL },
    { "top twice", "top n=5 n=6", -EINVAL, 0, 0, NULL },
    { "top bad window", "top window=soon", -EINVAL, 0, 0, NULL },
    { "top bad scope", "top scope=domain", -EINVAL, 0, 0, NULL },
    { "top empty value", "top n=", -EINVAL, 0, 0, NULL },
    { "top double space", "top n=5  scope=account", -EINVAL, 0, 0, NULL },
    { "top trailing space", "top ", -EINVAL, 0, 0, NULL },
    { "alert-enable empty", "alert-enable ", -EINVAL, 0, 0, NULL },
    { "alert-enable none", "alert-enable", -EINVAL, 0, 0, NULL },
    { "alert-enable bad name", "alert-enable ops/../x", -EINVAL, 0, 0, NULL },
    { "empty", "", -EINVAL, 0, 0, NULL },
    { "binary", "\xff\xfe\x01", -EINVAL, 0, 0, NULL },
};

START_TEST(test_ctl_parse)
{
    const struct ctl_case *c = &cases[_i];
    struct ctl_request req;
    const char *why = NULL;
    int r = ctl_parse(c->line, strlen(c->line), &req, &why);

    ck_assert_msg(r == c->ret, "%s: returned %d", c->name, r);
    if (r < 0) {
        ck_assert_msg(why != NULL && *why, "%s: no reason", c->name);
        return;
    }
    ck_assert_msg(req.verb == c->verb, "%s: verb", c->name);
    if (c->id) {
        ck_assert_msg(strcmp(req.id, c->id) == 0, "%s: id '%s'", c->name, req.id);
        if (c->verb != CTL_ALERT_ENABLE)
            ck_assert_msg(req.scope == c->scope, "%s: scope", c->name);
    }
}
END_TEST

START_TEST(test_ctl_parse_values)
{
    struct ctl_request req;
    const char *why;
    char line[CTL_REQUEST_MAX];

    ck_assert_int_eq(ctl_parse("top", 3, &req, &why), 0);
    ck_assert(req.any_scope);
    ck_assert_int_eq(req.window_ms, 0);
    ck_assert_uint_eq(req.n, CTL_TOP_DEFAULT);
    ck_assert_int_eq(ctl_parse("top scope=account window=10m n=5", 32, &req, &why), 0);
    ck_assert(!req.any_scope);
    ck_assert_int_eq(req.scope, SCOPE_ACCOUNT);
    ck_assert_int_eq(req.window_ms, 600000);
    ck_assert_uint_eq(req.n, 5);
    ck_assert_int_eq(ctl_parse("hold account acct1\tspam run", 27, &req, &why), 0);
    ck_assert_str_eq(req.id, "acct1");
    ck_assert_str_eq(req.reason, "spam run");
    ck_assert_int_eq(ctl_parse("hold account acct1", 18, &req, &why), 0);
    ck_assert_str_eq(req.reason, "");
    /* the reason's cap is exact */
    memset(line, 0, sizeof(line));
    (void)snprintf(line, sizeof(line), "hold account a\t");
    memset(line + strlen(line), 'r', CTL_REASON_MAX);
    ck_assert_int_eq(ctl_parse(line, strlen(line), &req, &why), 0);
    ck_assert_uint_eq(strlen(req.reason), CTL_REASON_MAX);
    strcat(line, "r");
    ck_assert_int_eq(ctl_parse(line, strlen(line), &req, &why), -EINVAL);
    /* a NUL inside the line is a control character, not an end */
    ck_assert_int_eq(ctl_parse("show account a\0b", 16, &req, &why), -EINVAL);
    /* identities at and over USERTABLE_KEY_MAX */
    char big[USERTABLE_KEY_MAX + 32];
    (void)snprintf(big, sizeof(big), "show account ");
    memset(big + 13, 'a', USERTABLE_KEY_MAX - 1);
    big[13 + USERTABLE_KEY_MAX - 1] = '\0';
    ck_assert_int_eq(ctl_parse(big, strlen(big), &req, &why), 0);
    strcat(big, "a");
    ck_assert_int_eq(ctl_parse(big, strlen(big), &req, &why), -EINVAL);
    ck_assert_str_eq(ctl_verb_name(CTL_TEST_ALERT), "test-alert");
    ck_assert_int_eq(ctl_parse("suspend account acct1\tphished", 29, &req, &why), 0);
    ck_assert_int_eq(req.verb, CTL_SUSPEND);
    ck_assert_str_eq(req.reason, "phished");
    /* identities as floodgate shows them: \\, \xHH and \uXXXX name any byte or code point */
    static const char esc[] = "release script acct1:/home/acct1/caf\\xC3\\xa9 \\x01\\\\x";
    ck_assert_int_eq(ctl_parse(esc, strlen(esc), &req, &why), 0);
    ck_assert_str_eq(req.id, "acct1:/home/acct1/caf\xc3\xa9 \x01\\x");
    static const char uni[] = "release script acct1:/home/acct1/a\\u202eb\\u00e9";
    ck_assert_int_eq(ctl_parse(uni, strlen(uni), &req, &why), 0);
    ck_assert_str_eq(req.id, "acct1:/home/acct1/a\xe2\x80\xae" "b\xc3\xa9");
    static const char raw[] = "release script acct1:/home/acct1/caf\xc3\xa9";
    ck_assert_int_eq(ctl_parse(raw, strlen(raw), &req, &why), 0);
    ck_assert_str_eq(req.id, "acct1:/home/acct1/caf\xc3\xa9");
    ck_assert_int_eq(
        ctl_parse("release script a:/x\\x00", strlen("release script a:/x\\x00"), &req, &why),
        -EINVAL);
    ck_assert_int_eq(
        ctl_parse("release script a:/x\\xg1", strlen("release script a:/x\\xg1"), &req, &why),
        -EINVAL);
    ck_assert_int_eq(
        ctl_parse("release script a:/x\\", strlen("release script a:/x\\"), &req, &why), -EINVAL);
    ck_assert_int_eq(ctl_parse("release script a:/\\ud800", strlen("release script a:/\\ud800"),
                               &req, &why),
                     -EINVAL);
    ck_assert_int_eq(ctl_parse("release script a:/\\u00", strlen("release script a:/\\u00"), &req,
                               &why),
                     -EINVAL);
}
END_TEST

/* --- the permission matrix ---------------------------------------------------------- */

/* The users group 500 lists (gr_mem), as the daemon resolved them: ascending. */
static const uid_t listed[] = { 7, 999, 1000, 1002, 65533 };

struct perm_case {
    const char *name;
    uid_t uid;
    gid_t gid;      /* the peer's, from SO_PEERCRED */
    bool has_group; /* group 500, "mailops" */
    bool with_list; /* its members are listed[] (else none listed) */
    uid_t self;
    bool read_ok, write_ok;
};

static const struct perm_case perms[] = {
    { "root", 0, 0, false, false, 0, true, true },
    { "root with a group set", 0, 0, true, true, 0, true, true },
    { "daemon's own uid", 998, 998, false, false, 998, true, true },
    { "daemon's own uid, not listed", 998, 998, true, true, 998, true, true },
    { "stranger, no group", 1000, 1000, false, false, 0, false, false },
    { "stranger, group set", 1000, 1000, true, false, 0, false, false },
    { "member by primary gid", 1000, 500, true, false, 0, true, false },
    { "member listed only", 1000, 1000, true, true, 0, true, false },
    { "member listed first", 7, 7, true, true, 0, true, false },
    { "member listed last", 65533, 100, true, true, 0, true, false },
    { "not listed, between listed uids", 1001, 1000, true, true, 0, false, false },
    { "not listed, above every listed uid", 65534, 65534, true, true, 0, false, false },
    { "listed but no group set", 1000, 1000, false, true, 0, false, false },
    { "gid matches but no group set", 1000, 500, false, false, 0, false, false },
    { "member, daemon not root", 1000, 500, true, false, 998, true, false },
    { "listed, daemon not root", 999, 999, true, true, 998, true, false },
};

START_TEST(test_ctl_allowed)
{
    const struct perm_case *c = &perms[_i];
    struct ctl_peer peer = { .uid = c->uid, .gid = c->gid };
    struct ctl_access acc = {
        .self = c->self, .has_group = c->has_group, .group = 500, .group_name = "mailops"
    };
    char why[160];

    if (c->with_list) {
        acc.members = listed;
        acc.nmembers = N_ELEMS(listed);
    }
    for (int v = 0; v < CTL__VERB_MAX; v++) {
        bool ro = ctl_verb_read_only((enum ctl_verb)v);
        bool want = ro ? c->read_ok : c->write_ok;
        int r;
        why[0] = '\0';
        r = ctl_allowed((enum ctl_verb)v, &peer, &acc, why, sizeof(why));
        ck_assert_msg((r == 0) == want, "%s: %s gave %d", c->name, ctl_verb_name(v), r);
        if (r == 0)
            continue;
        ck_assert_int_eq(r, -EPERM);
        ck_assert_msg(strncmp(why, "permission denied: ", 19) == 0, "%s: '%s'", c->name, why);
        ck_assert_msg(strstr(why, ctl_verb_name(v)) != NULL, "%s: '%s'", c->name, why);
        ck_assert_msg(strchr(why, '\n') == NULL, "one line");
        if (ro && c->has_group)
            ck_assert_msg(strstr(why, "group mailops"), "%s: '%s'", c->name, why);
    }
    if (!c->write_ok && c->self == 0) {
        (void)ctl_allowed(CTL_RELEASE, &peer, &acc, why, sizeof(why));
        ck_assert_str_eq(why, "permission denied: release needs root");
        (void)ctl_allowed(CTL_SUSPEND, &peer, &acc, why, sizeof(why));
        ck_assert_str_eq(why, "permission denied: suspend needs root");
    }
}
END_TEST

/* A full member list: every listed uid found, every other one not, nothing past the cap. */
START_TEST(test_ctl_allowed_many)
{
    static uid_t many[CTL_MEMBERS_MAX + 1];
    struct ctl_access acc = { .self = 0, .has_group = true, .group = 500, .members = many };
    char why[160];

    for (size_t i = 0; i < N_ELEMS(many); i++)
        many[i] = (uid_t)(1000 + 2 * i);
    acc.nmembers = CTL_MEMBERS_MAX;
    for (uid_t u = 998; u <= 1000 + 2 * CTL_MEMBERS_MAX + 1; u++) {
        struct ctl_peer peer = { .uid = u, .gid = 100 };
        bool in = u >= 1000 && u < 1000 + 2 * CTL_MEMBERS_MAX && u % 2 == 0;
        ck_assert_msg((ctl_allowed(CTL_STATUS, &peer, &acc, why, sizeof(why)) == 0) == in, "uid %u",
                      (unsigned)u);
        ck_assert_int_eq(ctl_allowed(CTL_RELOAD, &peer, &acc, why, sizeof(why)), -EPERM);
    }
    /* a longer list than the cap is read only up to it */
    acc.nmembers = N_ELEMS(many);
    struct ctl_peer past = { .uid = many[CTL_MEMBERS_MAX], .gid = 100 };
    ck_assert_int_eq(ctl_allowed(CTL_STATUS, &past, &acc, why, sizeof(why)), -EPERM);
    /* the kernel's supplementary groups (SO_PEERGROUPS): read-only verbs, nothing more */
    struct ctl_peer supp = { .uid = 5000, .gid = 100, .in_group = true };
    ck_assert_int_eq(ctl_allowed(CTL_STATUS, &supp, &acc, why, sizeof(why)), 0);
    ck_assert_int_eq(ctl_allowed(CTL_HELD, &supp, &acc, why, sizeof(why)), 0);
    ck_assert_int_eq(ctl_allowed(CTL_RELEASE, &supp, &acc, why, sizeof(why)), -EPERM);
    acc.has_group = false;
    ck_assert_int_eq(ctl_allowed(CTL_STATUS, &supp, &acc, why, sizeof(why)), -EPERM);
    acc.has_group = true;
    /* a count without an array is no list */
    acc.members = NULL;
    acc.nmembers = 3;
    struct ctl_peer first = { .uid = 1000, .gid = 100 };
    ck_assert_int_eq(ctl_allowed(CTL_STATUS, &first, &acc, why, sizeof(why)), -EPERM);
}
END_TEST

START_TEST(test_ctl_read_only_set)
{
    ck_assert(ctl_verb_read_only(CTL_STATUS));
    ck_assert(ctl_verb_read_only(CTL_TOP));
    ck_assert(ctl_verb_read_only(CTL_SHOW));
    ck_assert(ctl_verb_read_only(CTL_HELD));
    ck_assert(!ctl_verb_read_only(CTL_RELEASE));
    ck_assert(!ctl_verb_read_only(CTL_HOLD));
    ck_assert(!ctl_verb_read_only(CTL_SUSPEND));
    ck_assert(ctl_verb_read_only(CTL_TRIPPED));
    ck_assert(!ctl_verb_read_only(CTL_RELOAD));
    ck_assert(!ctl_verb_read_only(CTL_TEST_ALERT));
    ck_assert(!ctl_verb_read_only(CTL_ALERT_ENABLE));
    ck_assert(!ctl_verb_read_only(CTL__VERB_MAX));
}
END_TEST

/* --- the socket, with a fake handler in a child process ----------------------------- */

static struct ctl *srv_ctl;
static struct ev_loop *srv_loop;
static char srv_note[300]; /* where the child writes what a late answer returned */
static ev_timer srv_late;
static uint64_t srv_token;

static void
srv_late_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    int r = ctl_answer(srv_ctl, srv_token, 0, "{\"late\":true}");
    FILE *f;

    (void)loop;
    (void)w;
    (void)revents;
    f = fopen(srv_note, "w");
    if (f) {
        fprintf(f, "%d\n", r);
        fclose(f);
    }
}

static int
srv_handle(void *ctx, const struct ctl_request *req, const struct ctl_peer *peer, uint64_t token,
           struct strbuf *out)
{
    (void)ctx;
    switch (req->verb) {
    case CTL_STATUS:
        return strbuf_printf(out, "{\"ready\":true,\"clients\":%zu,\"uid\":%u}",
                             ctl_clients(srv_ctl), (unsigned)peer->uid);
    case CTL_RELEASE:
        if (strcmp(req->id, "known@example.com") != 0) {
            (void)strbuf_appends(out, "no such identity");
            return -ENOENT;
        }
        return strbuf_printf(out, "{\"released\":\"%s:%s\"}", usertable_scope_name(req->scope),
                             req->id);
    case CTL_HELD: /* a large answer, for the client that never reads */
        (void)strbuf_appends(out, "{\"pad\":\"");
        for (int i = 0; i < 900; i++)
            (void)strbuf_appends(out,
                                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        return strbuf_appends(out, "\"}");
    case CTL_TEST_ALERT: /* answered later, from a timer */
        srv_token = token;
        ev_timer_stop(srv_loop, &srv_late);
        ev_timer_set(&srv_late, 0.3, 0);
        ev_timer_start(srv_loop, &srv_late);
        return 1;
    default:
        return -ENOTSUP;
    }
}

struct srv {
    char dir[64], path[128];
    pid_t pid;
};

/* Serve at a fresh path; with a group, @members are the uids it lists (any order). */
static void
srv_start(struct srv *s, bool with_group, gid_t group, const uid_t *members, size_t nmembers)
{
    (void)snprintf(s->dir, sizeof(s->dir), "/tmp/fg-ctl-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(s->dir));
    ck_assert_int_eq(chmod(s->dir, 0755), 0);
    (void)snprintf(s->path, sizeof(s->path), "%s/ctl.sock", s->dir);
    (void)snprintf(srv_note, sizeof(srv_note), "%s/late", s->dir);
    s->pid = fork();
    ck_assert_int_ge(s->pid, 0);
    if (s->pid == 0) {
        struct ctl_params p = { .path = s->path, .handle = srv_handle };
        srv_loop = ev_loop_new(EVFLAG_AUTO);
        p.loop = srv_loop;
        p.access = (struct ctl_access){
            .self = geteuid(),
            .has_group = with_group,
            .group = group,
            .group_name = "testgroup",
            .members = members,
            .nmembers = nmembers,
        };
        ev_timer_init(&srv_late, srv_late_cb, 0.3, 0);
        if (ctl_open(&p, &srv_ctl) < 0)
            _exit(3);
        alarm(60); /* bounded even if the parent dies */
        ev_run(srv_loop, 0);
        _exit(0);
    }
    /* wait until the server accepts, at most 60 s: the socket file exists from bind(),
     * before listen(), and a loaded machine may run the child late */
    bool up = false;
    for (int i = 0; i < 6000 && !up; i++) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fd, 0);
        memcpy(sa.sun_path, s->path, strlen(s->path) + 1);
        up = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        (void)close(fd);
        if (!up)
            (void)usleep(10000);
    }
    ck_assert_msg(up, "%s: the test server never accepted", s->path);
}

static void
srv_stop(struct srv *s)
{
    int status;

    (void)kill(s->pid, SIGKILL);
    (void)waitpid(s->pid, &status, 0);
    (void)unlink(s->path);
    (void)unlink(srv_note);
    (void)rmdir(s->dir);
}

/* A raw connection to the server. */
static int
raw_connect(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Read until EOF (at most @size - 1 bytes, at most 10 s); returns the length read. */
static size_t
raw_read_all(int fd, char *buf, size_t size)
{
    size_t len = 0;

    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        ssize_t n;
        if (poll(&pfd, 1, 10000) <= 0)
            break;
        n = read(fd, buf + len, size - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == size - 1)
            break;
    }
    buf[len] = '\0';
    return len;
}

/* The server's client count as its status reports it (this status call included). */
static long
srv_clients(const char *path)
{
    struct strbuf out;
    const char *p;
    long n = -1;

    strbuf_init(&out, CTL_RESPONSE_MAX);
    if (ctl_call(path, "status", &out) == 0 && (p = strstr(strbuf_cstr(&out), "\"clients\":")))
        n = strtol(p + 10, NULL, 10);
    strbuf_done(&out);
    return n;
}

/* Wait (at most @seconds) until only the status call itself is connected. */
static bool
srv_wait_alone(const char *path, int seconds)
{
    for (int i = 0; i < seconds * 10; i++) {
        if (srv_clients(path) == 1)
            return true;
        (void)usleep(100000);
    }
    return false;
}

START_TEST(test_ctl_round_trip)
{
    struct srv s;
    struct strbuf out;
    struct stat sb;

    srv_start(&s, false, 0, NULL, 0);
    ck_assert_int_eq(stat(s.path, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0600);
    strbuf_init(&out, CTL_RESPONSE_MAX);
    ck_assert_int_eq(ctl_call(s.path, "status", &out), 0);
    ck_assert_ptr_nonnull(strstr(strbuf_cstr(&out), "{\"ready\":true,\"clients\":1,"));
    ck_assert_int_eq(strbuf_cstr(&out)[out.len - 1], '\n');
    strbuf_reset(&out);
    ck_assert_int_eq(ctl_call(s.path, "release mailbox Known@Example.com", &out), 0);
    ck_assert_str_eq(strbuf_cstr(&out), "{\"released\":\"mailbox:known@example.com\"}\n");
    strbuf_reset(&out);
    ck_assert_int_eq(ctl_call(s.path, "release mailbox other@example.com", &out), 0);
    ck_assert_str_eq(strbuf_cstr(&out), "{\"error\":\"no such identity\"}\n");
    strbuf_reset(&out);
    ck_assert_int_eq(ctl_call(s.path, "frobnicate", &out), 0);
    ck_assert_ptr_nonnull(strstr(strbuf_cstr(&out), "{\"error\":\"bad request: unknown request"));
    strbuf_reset(&out);
    ck_assert_int_eq(ctl_call(s.path, "reload", &out), 0); /* the handler's errno */
    ck_assert_ptr_nonnull(strstr(strbuf_cstr(&out), "{\"error\":\""));
    strbuf_reset(&out);
    /* an asynchronous answer arrives when the handler gives it */
    ck_assert_int_eq(ctl_call(s.path, "test-alert", &out), 0);
    ck_assert_str_eq(strbuf_cstr(&out), "{\"late\":true}\n");
    strbuf_done(&out);
    srv_stop(&s);
    /* no daemon: a clear error for the client */
    strbuf_init(&out, 64);
    ck_assert_int_eq(ctl_call(s.path, "status", &out), -ENOENT);
    strbuf_done(&out);
}
END_TEST

START_TEST(test_ctl_hostile)
{
    struct srv s;
    char buf[4096], big[3 * CTL_REQUEST_MAX];
    int fd;

    srv_start(&s, false, 0, NULL, 0);
    /* garbage: one error line, then the server closes */
    fd = raw_connect(s.path);
    ck_assert_int_eq(write(fd, "\x01\x02\xff garbage \x7f\n", 14), 14);
    ck_assert_uint_gt(raw_read_all(fd, buf, sizeof(buf)), 0);
    ck_assert_ptr_nonnull(strstr(buf, "{\"error\":\"bad request: unknown request"));
    ck_assert_ptr_nonnull(strchr(buf, '\n'));
    (void)close(fd);
    /* oversized: refused once CTL_REQUEST_MAX bytes came without a newline */
    fd = raw_connect(s.path);
    memset(big, 'a', sizeof(big));
    (void)!send(fd, big, sizeof(big), MSG_NOSIGNAL);
    (void)raw_read_all(fd, buf, sizeof(buf));
    ck_assert_str_eq(buf, "{\"error\":\"request too long\"}\n");
    (void)close(fd);
    /* several requests on one connection: only the first is answered */
    fd = raw_connect(s.path);
    ck_assert_int_eq(write(fd, "status\nstatus\n", 14), 14);
    (void)raw_read_all(fd, buf, sizeof(buf));
    ck_assert_ptr_nonnull(strstr(buf, "\"ready\":true"));
    ck_assert_ptr_eq(strchr(buf, '\n'), buf + strlen(buf) - 1); /* one answer line */
    (void)close(fd);
    /* a client that hangs up without a newline costs nothing */
    fd = raw_connect(s.path);
    ck_assert_int_eq(write(fd, "stat", 4), 4);
    (void)close(fd);
    ck_assert(srv_wait_alone(s.path, 5));
    srv_stop(&s);
}
END_TEST

START_TEST(test_ctl_idle_and_slow_readers)
{
    struct srv s;
    char buf[256];
    int idle, slow;

    srv_start(&s, false, 0, NULL, 0);
    /* an idle client (no request) and one that never reads a large answer */
    idle = raw_connect(s.path);
    ck_assert_int_eq(write(idle, "sta", 3), 3);
    slow = raw_connect(s.path);
    ck_assert_int_eq(write(slow, "held\n", 5), 5);
    /* both are connected, and others are served meanwhile: the loop is not stalled */
    for (int i = 0; i < 50 && srv_clients(s.path) != 3; i++)
        (void)usleep(20000);
    ck_assert_int_eq(srv_clients(s.path), 3);
    /* both are dropped by their timers (CTL_IDLE_S, CTL_WRITE_S), bounded */
    ck_assert(srv_wait_alone(s.path, (int)CTL_WRITE_S + 5));
    ck_assert_uint_eq(raw_read_all(idle, buf, sizeof(buf)), 0); /* closed without an answer */
    (void)close(idle);
    (void)close(slow);
    srv_stop(&s);
}
END_TEST

START_TEST(test_ctl_late_answer_after_hangup)
{
    struct srv s;
    char buf[64] = "";
    FILE *f;
    int fd;

    srv_start(&s, false, 0, NULL, 0);
    fd = raw_connect(s.path);
    ck_assert_int_eq(write(fd, "test-alert\n", 11), 11);
    (void)usleep(50000); /* let the server take the request, then leave before the answer */
    (void)close(fd);
    /* the late answer comes after 0.3 s; the note may exist before its line is written:
     * wait for a whole line, at most 30 s (a loaded machine runs the server late) */
    for (int i = 0; i < 600 && !strchr(buf, '\n'); i++) {
        (void)usleep(50000);
        f = fopen(srv_note, "r");
        if (!f)
            continue;
        if (!fgets(buf, sizeof(buf), f))
            buf[0] = '\0';
        fclose(f);
    }
    ck_assert_msg(strchr(buf, '\n') != NULL, "no note from the late answer: '%s'", buf);
    ck_assert_int_eq(atoi(buf), -ENOENT); /* nobody to answer, nothing touched */
    ck_assert(srv_wait_alone(s.path, 5)); /* and the server still serves */
    srv_stop(&s);
}
END_TEST

/* A client run as nobody: exit 0 when @req is answered without error, 1 refused, 2 other. */
static int
nobody_call(const char *path, const char *req, gid_t gid, char *answer, size_t size)
{
    int pipefd[2], status;
    pid_t pid;

    ck_assert_int_eq(pipe(pipefd), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct strbuf out;
        int r;
        (void)close(pipefd[0]);
        if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(65534) < 0)
            _exit(3);
        strbuf_init(&out, CTL_RESPONSE_MAX);
        r = ctl_call(path, req, &out);
        if (r < 0) {
            (void)!write(pipefd[1], strerror(-r), strlen(strerror(-r)));
            _exit(2);
        }
        (void)!write(pipefd[1], strbuf_cstr(&out), out.len);
        _exit(strstr(strbuf_cstr(&out), "{\"error\"") ? 1 : 0);
    }
    (void)close(pipefd[1]);
    (void)raw_read_all(pipefd[0], answer, size);
    (void)close(pipefd[0]);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

START_TEST(test_ctl_other_uid)
{
    struct srv s;
    struct stat sb;
    char buf[512];

    if (geteuid() != 0) {
        fprintf(stderr, "test_ctl_other_uid: not root, skipped\n");
        return;
    }
    /* no control group: 0600, so another uid cannot even connect */
    srv_start(&s, false, 0, NULL, 0);
    ck_assert_int_eq(nobody_call(s.path, "status", 65534, buf, sizeof(buf)), 2);
    ck_assert_str_eq(buf, strerror(EACCES));
    srv_stop(&s);
    /* a control group: 0660 and that group; members may read, never change */
    srv_start(&s, true, 65534, NULL, 0);
    ck_assert_int_eq(stat(s.path, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0660);
    ck_assert_int_eq(sb.st_gid, 65534);
    ck_assert_int_eq(nobody_call(s.path, "status", 65534, buf, sizeof(buf)), 0);
    ck_assert_ptr_nonnull(strstr(buf, "\"uid\":65534"));
    ck_assert_int_eq(
        nobody_call(s.path, "release mailbox known@example.com", 65534, buf, sizeof(buf)), 1);
    ck_assert_str_eq(buf, "{\"error\":\"permission denied: release needs root\"}\n");
    /* the socket's mode keeps out everyone else */
    ck_assert_int_eq(chmod(s.path, 0666), 0); /* ... and if it did not, the daemon would */
    ck_assert_int_eq(nobody_call(s.path, "status", 12345, buf, sizeof(buf)), 1);
    ck_assert_str_eq(buf, "{\"error\":\"permission denied: status needs root or group "
                          "testgroup\"}\n");
    srv_stop(&s);
    /* a member the group only lists (gr_mem): its uid is in the set handed over, in any
     * order (a search of this one unsorted would miss 65534; ctl sorts its copy); no
     * look-up of the peer's groups happens (nobody is in no group 4242) */
    static const uid_t members[] = { 65534, 70000, 1, 2, 3, 3 };
    srv_start(&s, true, 4242, members, N_ELEMS(members));
    ck_assert_int_eq(stat(s.path, &sb), 0);
    ck_assert_int_eq(sb.st_gid, 4242);
    ck_assert_int_eq(chmod(s.path, 0666), 0); /* the client below holds no group 4242 */
    ck_assert_int_eq(nobody_call(s.path, "status", 12345, buf, sizeof(buf)), 0);
    ck_assert_ptr_nonnull(strstr(buf, "\"uid\":65534"));
    ck_assert_int_eq(nobody_call(s.path, "reload", 12345, buf, sizeof(buf)), 1);
    ck_assert_str_eq(buf, "{\"error\":\"permission denied: reload needs root\"}\n");
    srv_stop(&s);
    srv_start(&s, true, 4242, members, 1); /* 65534 alone: the edges of the search */
    ck_assert_int_eq(chmod(s.path, 0666), 0);
    ck_assert_int_eq(nobody_call(s.path, "status", 12345, buf, sizeof(buf)), 0);
    srv_stop(&s);
    srv_start(&s, true, 4242, members + 1, 5); /* nobody is not listed */
    ck_assert_int_eq(chmod(s.path, 0666), 0);
    ck_assert_int_eq(nobody_call(s.path, "status", 12345, buf, sizeof(buf)), 1);
    srv_stop(&s);
}
END_TEST

static Suite *
ctl_suite(void)
{
    Suite *s = suite_create("ctl");
    TCase *tc = tcase_create("parse");

    tcase_add_loop_test(tc, test_ctl_parse, 0, (int)N_ELEMS(cases));
    tcase_add_test(tc, test_ctl_parse_values);
    suite_add_tcase(s, tc);
    tc = tcase_create("allowed");
    tcase_add_loop_test(tc, test_ctl_allowed, 0, (int)N_ELEMS(perms));
    tcase_add_test(tc, test_ctl_allowed_many);
    tcase_add_test(tc, test_ctl_read_only_set);
    suite_add_tcase(s, tc);
    tc = tcase_create("socket");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_ctl_round_trip);
    tcase_add_test(tc, test_ctl_hostile);
    tcase_add_test(tc, test_ctl_idle_and_slow_readers);
    tcase_add_test(tc, test_ctl_late_answer_after_hangup);
    tcase_add_test(tc, test_ctl_other_uid);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(ctl_suite());
}
