/*
 * spool.c - confirm queued messages against Exim's spool before acting on them.
 *
 * Owns: finding a message's -H file (flat or split_spool_directory layout), parsing its
 * envelope lines (the pure spool_parse_header()), and deciding whether a message belongs
 * to an identity (the pure spool_confirm()), and walking the queue's -H files in bounded
 * steps (spool_scan_*: a trip looks for the identity's messages queued before the daemon
 * started, a release for what the ACL froze). Does not own: freezing (lib/action runs exim
 * -Mf), the ids learnt from the log (lib/msgtrack).
 *
 * The -H format (Exim spec "Format of spool files", spool_out.c): "<id>-H", "<login> <uid>
 * <gid>", "<sender>", "<time> <warning count>", then option lines that start with '-',
 * then the non-recipients tree. We stop at the first line after line 4 that does not
 * start with '-', so a header text a sender controls is never read as an option.
 */
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spawn.h"

/* Next line of [*pos, end): returns false when no complete line is left. */
static bool
spool_next_line(const char *buf, size_t len, size_t *pos, struct fg_str *ret)
{
    const char *nl;

    if (*pos >= len)
        return false;
    nl = memchr(buf + *pos, '\n', len - *pos);
    if (!nl)
        return false;
    *ret = fg_str_make(buf + *pos, (size_t)(nl - (buf + *pos)));
    *pos = (size_t)(nl - buf) + 1;
    return true;
}

static int
spool_parse_u32_field(struct fg_str *rest, uint32_t *ret)
{
    const char *sp = memchr(rest->p, ' ', rest->len);
    size_t n = sp ? (size_t)(sp - rest->p) : rest->len;
    int r = util_parse_u32(rest->p, n, ret);
    if (r < 0)
        return r;
    rest->p += sp ? n + 1 : n;
    rest->len -= sp ? n + 1 : n;
    return 0;
}

static int
spool_parse_ids(struct fg_str l, struct spool_header *h)
{
    const char *sp = memchr(l.p, ' ', l.len);
    struct fg_str rest;

    if (!sp || sp == l.p)
        return -EBADMSG;
    h->login = fg_str_make(l.p, (size_t)(sp - l.p));
    rest = fg_str_make(sp + 1, l.len - h->login.len - 1);
    if (spool_parse_u32_field(&rest, &h->uid) < 0 || spool_parse_u32_field(&rest, &h->gid) < 0 ||
        rest.len != 0)
        return -EBADMSG;
    return 0;
}

/* Split an option line "-name value" (or "--name", "--(quoter)name"); false if malformed. */
static bool
spool_option_split(struct fg_str l, struct fg_str *n, struct fg_str *v)
{
    const char *p = l.p + 1, *end = l.p + l.len, *name, *sp;

    if (p < end && *p == '-') { /* tainted value */
        p++;
        if (p < end && *p == '(') {
            const char *cl = memchr(p, ')', (size_t)(end - p));
            if (!cl)
                return false;
            p = cl + 1;
        }
    }
    name = p;
    sp = memchr(name, ' ', (size_t)(end - name));
    *n = fg_str_make(name, (size_t)((sp ? sp : end) - name));
    *v = sp ? fg_str_make(sp + 1, (size_t)(end - sp - 1)) : fg_str_make(end, 0);
    return true;
}

/*
 * "-aclm <name> <length>" (or aclc): the value is the next <length> bytes and a newline
 * (acl_var_write() in Exim's acl.c). Consumes them; keeps the two variables we set.
 */
static int
spool_parse_aclvar(const char *buf, size_t len, size_t *pos, struct fg_str v, bool msgvar,
                   struct spool_header *h)
{
    const char *sp = memchr(v.p, ' ', v.len);
    struct fg_str name;
    uint64_t count;

    if (!sp)
        return -EBADMSG;
    name = fg_str_make(v.p, (size_t)(sp - v.p));
    if (util_parse_u64(sp + 1, v.len - name.len - 1, &count) < 0 || count > len ||
        *pos + count >= len || buf[*pos + count] != '\n')
        return -EBADMSG; /* cut inside the value, or not Exim's format */
    if (msgvar && fg_str_eq(name, "_floodgate"))
        h->marker = fg_str_make(buf + *pos, (size_t)count);
    else if (msgvar && fg_str_eq(name, "_floodgate_cwd"))
        h->cwd = fg_str_make(buf + *pos, (size_t)count);
    *pos += (size_t)count + 1;
    return 0;
}

/* One option line "-name value": sets the fields we use, ignores the rest. */
static void
spool_parse_option(struct fg_str l, struct spool_header *h)
{
    struct fg_str n, v;

    if (!spool_option_split(l, &n, &v))
        return;
    if (fg_str_eq(n, "auth_id"))
        h->auth_id = v;
    else if (fg_str_eq(n, "ident"))
        h->ident = v;
    else if (fg_str_eq(n, "host_address"))
        h->host_address = v;
    else if (fg_str_eq(n, "host_auth"))
        h->host_auth = v;
    else if (fg_str_eq(n, "local"))
        h->local = true;
    else if (fg_str_eq(n, "frozen")) {
        uint64_t t = 0;
        h->frozen = true;
        if (util_parse_u64(v.p, v.len, &t) == 0 && t <= INT64_MAX)
            h->frozen_s = (int64_t)t;
    }
}

int
spool_parse_header(const char *buf, size_t len, struct spool_header *ret)
{
    struct spool_header h;
    struct fg_str l;
    size_t pos = 0;
    uint64_t t;

    memset(&h, 0, sizeof(h));
    if (!spool_next_line(buf, len, &pos, &l) || l.len < 3 || l.p[l.len - 2] != '-' ||
        l.p[l.len - 1] != 'H')
        return -EBADMSG;
    h.id = fg_str_make(l.p, l.len - 2);
    if (!spool_next_line(buf, len, &pos, &l) || spool_parse_ids(l, &h) < 0)
        return -EBADMSG;
    if (!spool_next_line(buf, len, &pos, &l) || l.len < 2 || l.p[0] != '<' || l.p[l.len - 1] != '>')
        return -EBADMSG;
    h.sender = fg_str_make(l.p + 1, l.len - 2);
    if (!spool_next_line(buf, len, &pos, &l))
        return -EBADMSG;
    {
        const char *sp = memchr(l.p, ' ', l.len);
        if (!sp || util_parse_u64(l.p, (size_t)(sp - l.p), &t) < 0 || t > INT64_MAX)
            return -EBADMSG;
        h.received_s = (int64_t)t;
    }
    for (;;) {
        if (!spool_next_line(buf, len, &pos, &l))
            return -EBADMSG; /* cut inside the options: cannot tell */
        if (l.len == 0 || l.p[0] != '-')
            break;
        struct fg_str n, v;
        if (spool_option_split(l, &n, &v) && (fg_str_eq(n, "aclm") || fg_str_eq(n, "aclc"))) {
            if (spool_parse_aclvar(buf, len, &pos, v, n.p[3] == 'm', &h) < 0)
                return -EBADMSG;
            continue;
        }
        spool_parse_option(l, &h);
    }
    *ret = h;
    return 0;
}

int
spool_header_subject(const char *buf, size_t len, char *out, size_t size)
{
    struct fg_str l;
    size_t pos = 0, n = 0;

    if (size == 0)
        return -EINVAL;
    out[0] = '\0';
    /* the envelope (id, ids, sender, time, options, recipients) has no empty line; the
     * empty line after the recipients starts the headers */
    do {
        if (!spool_next_line(buf, len, &pos, &l))
            return -EBADMSG;
    } while (l.len > 0);
    while (pos < len) {
        size_t d = pos, hlen = 0;
        const char *text;
        while (d < len && buf[d] >= '0' && buf[d] <= '9' && d - pos < 6)
            hlen = hlen * 10 + (size_t)(buf[d++] - '0');
        /* "NNNc " then NNN bytes of header text, continuation lines included */
        if (d - pos < 3 || d + 2 > len || buf[d + 1] != ' ' || hlen == 0)
            return -EBADMSG;
        text = buf + d + 2;
        if (hlen > len - (d + 2))
            return -EBADMSG; /* cut by the read: the subject may be further on */
        pos = d + 2 + hlen;
        if (buf[d] == '*' || hlen < 8 || strncasecmp(text, "Subject:", 8) != 0)
            continue;
        /* unfolded: line breaks and the white space after them become one space */
        for (size_t i = 8; i < hlen && n + 1 < size; i++) {
            char c = text[i];
            if (c == '\r' || c == '\n' || c == '\t')
                c = ' ';
            if (c == ' ' && (n == 0 || out[n - 1] == ' '))
                continue;
            out[n++] = c;
        }
        while (n > 0 && out[n - 1] == ' ')
            n--;
        out[n] = '\0';
        return 0;
    }
    return -ENOENT;
}

static int
spool_read_path(const char *path, char *buf, size_t size, size_t *ret_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    size_t got = 0;

    if (fd < 0)
        return -errno;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int r = -errno;
            (void)close(fd);
            return r;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    (void)close(fd);
    *ret_len = got;
    return 0;
}

int
spool_read_header(const char *spool_dir, const char *msgid, char *buf, size_t size, size_t *ret_len)
{
    char path[4096];
    int n, r;

    if (!spawn_valid_msgid(msgid))
        return -EINVAL;
    n = snprintf(path, sizeof(path), "%s/input/%s-H", spool_dir, msgid);
    if (n < 0 || (size_t)n >= sizeof(path))
        return -ENAMETOOLONG;
    r = spool_read_path(path, buf, size, ret_len);
    if (r != -ENOENT)
        return r;
    (void)snprintf(path, sizeof(path), "%s/input/%c/%s-H", spool_dir, msgid[5], msgid);
    return spool_read_path(path, buf, size, ret_len);
}

static bool
spool_eq_nocase(struct fg_str a, const char *b)
{
    return a.p && fg_str_eq_nocase(a, fg_str_make(b, strlen(b)));
}

static bool
spool_confirm_account(const struct spool_header *h, struct fg_str acct, spool_owner_fn owner,
                      void *owner_ctx)
{
    char name[SPAWN_USER_MAX + 1];
    const char *at;

    if (acct.len == 0 || util_copy_str(name, sizeof(name), acct) < 0)
        return false;
    if (h->ident.p && fg_str_eq_nocase(h->ident, acct) && !h->host_address.p)
        return true;
    if (!h->auth_id.p)
        return false;
    if (fg_str_eq_nocase(h->auth_id, acct))
        return true;
    at = memchr(h->auth_id.p, '@', h->auth_id.len);
    if (!at || !owner)
        return false;
    return owner(owner_ctx, fg_str_make(at + 1, h->auth_id.len - (size_t)(at + 1 - h->auth_id.p)),
                 name);
}

bool
spool_confirm(const struct spool_header *h, enum usertable_scope scope, const char *id,
              spool_owner_fn owner, void *owner_ctx)
{
    const char *colon;

    if (!id || !id[0])
        return false;
    switch (scope) {
    case SCOPE_MAILBOX:
        return spool_eq_nocase(h->auth_id, id);
    case SCOPE_ACCOUNT:
        return spool_confirm_account(h, fg_str_make(id, strlen(id)), owner, owner_ctx);
    case SCOPE_SCRIPT:
        colon = strchr(id, ':');
        if (!colon)
            return false;
        /* the ACL recorded the directory: a message from another of the login's
         * directories is not the script's */
        if (h->cwd.p && !fg_str_eq(h->cwd, colon + 1))
            return false;
        return spool_confirm_account(h, fg_str_make(id, (size_t)(colon - id)), owner, owner_ctx);
    case SCOPE__MAX:
        break;
    }
    return false;
}

/* The next %-decoded byte of [*p, end) (the blocklist's encoding); -1 when malformed. */
static int
spool_decode_byte(const char **p, const char *end)
{
    unsigned v = 0;

    if (**p != '%') {
        return (unsigned char)*(*p)++;
    }
    if (end - *p < 3)
        return -1;
    for (int k = 1; k <= 2; k++) {
        char c = (*p)[k];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else
            return -1;
    }
    *p += 3;
    return (int)v;
}

bool
spool_marker_names(const struct spool_header *h, enum usertable_scope scope, const char *id)
{
    const char *p = h->marker.p, *end = p ? p + h->marker.len : NULL, *sp;
    const char *sname = usertable_scope_name(scope);
    size_t k = 0, idlen;

    if (!p || !id || !id[0])
        return false;
    /* "<op> <scope> <identity> <rule> [<reference>]": only the first three words count */
    sp = memchr(p, ' ', (size_t)(end - p));
    if (!sp)
        return false;
    p = sp + 1;
    sp = memchr(p, ' ', (size_t)(end - p));
    if (!sp || !fg_str_eq(fg_str_make(p, (size_t)(sp - p)), sname))
        return false;
    p = sp + 1;
    idlen = strlen(id);
    while (p < end && *p != ' ') {
        int c = spool_decode_byte(&p, end);
        if (c < 0 || k >= idlen)
            return false;
        if (scope == SCOPE_MAILBOX ? util_ascii_lower((char)c) != util_ascii_lower(id[k])
                                   : (char)c != id[k])
            return false;
        k++;
    }
    return k == idlen;
}

/* Queue walks. */

struct spool_scan {
    DIR *top;     /* <spool_dir>/input */
    DIR *sub;     /* input/<c>/ being read, or NULL */
    size_t files; /* -H files read */
    char buf[SPOOL_HEADER_READ_MAX];
};

int
spool_scan_open(const char *spool_dir, struct spool_scan **ret)
{
    char path[4096];
    struct spool_scan *s;
    int n = snprintf(path, sizeof(path), "%s/input", spool_dir);

    if (n < 0 || (size_t)n >= sizeof(path))
        return -ENAMETOOLONG;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->top = opendir(path);
    if (!s->top) {
        int r = -errno;
        free(s);
        return r;
    }
    *ret = s;
    return 0;
}

/* "<msgid>-H": copies the id into @id (SPAWN_MSGID_MAX + 1 bytes); false for other names. */
static bool
spool_scan_name(const char *name, char *id)
{
    size_t n = strlen(name);

    if (n < 3 || n - 2 > SPAWN_MSGID_MAX || name[n - 2] != '-' || name[n - 1] != 'H')
        return false;
    memcpy(id, name, n - 2);
    id[n - 2] = '\0';
    return spawn_valid_msgid(id);
}

/* Read and parse one -H file in @dir; calls @fn when it parses and names @id. */
static void
spool_scan_file(struct spool_scan *s, DIR *dir, const char *name, const char *id, spool_scan_fn fn,
                void *ctx)
{
    int fd = openat(dirfd(dir), name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct spool_header h;
    size_t got = 0;

    if (fd < 0)
        return; /* delivered meanwhile */
    s->files++;
    while (got < sizeof(s->buf)) {
        ssize_t n = read(fd, s->buf + got, sizeof(s->buf) - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    (void)close(fd);
    if (spool_parse_header(s->buf, got, &h) == 0 && fg_str_eq(h.id, id))
        fn(ctx, id, &h);
}

int
spool_scan_step(struct spool_scan *s, size_t max, spool_scan_fn fn, void *ctx)
{
    char id[SPAWN_MSGID_MAX + 1];
    size_t start = s->files;

    while (s->files - start < max) {
        struct dirent *de;
        if (s->sub) {
            de = readdir(s->sub);
            if (!de) {
                (void)closedir(s->sub);
                s->sub = NULL;
                continue;
            }
            if (spool_scan_name(de->d_name, id))
                spool_scan_file(s, s->sub, de->d_name, id, fn, ctx);
            continue;
        }
        if (!s->top)
            return 0;
        de = readdir(s->top);
        if (!de) {
            (void)closedir(s->top);
            s->top = NULL;
            return 0;
        }
        if (spool_scan_name(de->d_name, id)) {
            spool_scan_file(s, s->top, de->d_name, id, fn, ctx);
        } else if (de->d_name[0] != '.' && de->d_name[1] == '\0' &&
                   (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN)) {
            /* split_spool_directory: input/<6th character of the id>/ */
            int fd =
                openat(dirfd(s->top), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
            if (fd >= 0 && !(s->sub = fdopendir(fd)))
                (void)close(fd);
        }
    }
    return s->top || s->sub ? 1 : 0;
}

size_t
spool_scan_files(const struct spool_scan *s)
{
    return s->files;
}

void
spool_scan_free(struct spool_scan *s)
{
    if (!s)
        return;
    if (s->sub)
        (void)closedir(s->sub);
    if (s->top)
        (void)closedir(s->top);
    free(s);
}
