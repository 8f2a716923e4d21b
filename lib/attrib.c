/*
 * attrib.c - who sent it: an arrival record to the identities it counts against.
 *
 * DESIGN.md "Attribution" and exim-log-format.md 9.2 define the rules. The only evidence
 * we trust is what Exim itself decided: the authenticated id (A=), the calling user of a
 * local submission (U= without H=), and the cwd= record written by the same process just
 * before the arrival. The envelope sender is never an identity (cPanel lets any local
 * user set it); a sender that differs from the authenticated mailbox is counted as a
 * mismatch against that mailbox.
 *
 * cwd= records are held in a small ring (ATTRIB_CWD_SLOTS) for ATTRIB_CWD_TTL_MS of log
 * time. With +pid a cwd= record ties only to the arrival with the same pid; without it,
 * to the next local arrival (the newest pending cwd= without a pid). A cwd= record is
 * never an arrival itself, so a forged one can at worst name the wrong directory for a
 * message its own process submitted.
 *
 * The domain maps are an open-addressing table keyed by SipHash of the lowercased domain;
 * they are built once per load and only read afterwards.
 */
#include "attrib.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct attrib_domain {
    char *name;  /* lowercased; NULL: empty slot */
    char *owner; /* NULL: local domain without a known owner */
    uint64_t hash;
};

struct attrib_maps {
    uint8_t key[SIPHASH_KEY_LEN];
    struct attrib_domain *slots;
    size_t cap; /* power of two */
    size_t count;
    char **accounts; /* the owners named in userdomains, sorted, unique */
    size_t naccounts, accounts_cap;
};

#define ATTRIB_DOMAIN_MAX 255

struct attrib_maps *
attrib_maps_new(const uint8_t key[SIPHASH_KEY_LEN])
{
    struct attrib_maps *m = calloc(1, sizeof(*m));

    if (!m)
        return NULL;
    memcpy(m->key, key, SIPHASH_KEY_LEN);
    return m;
}

void
attrib_maps_free(struct attrib_maps *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++) {
        free(m->slots[i].name);
        free(m->slots[i].owner);
    }
    free(m->slots);
    for (size_t i = 0; i < m->naccounts; i++)
        free(m->accounts[i]);
    free(m->accounts);
    free(m);
}

/* Lowercase @d into @buf, dropping a leading "www." as cPanel's lookups do. */
static size_t
attrib_domain_norm(struct fg_str d, char buf[ATTRIB_DOMAIN_MAX + 1])
{
    size_t n = 0;

    if (d.len > 4 && fg_str_eq_nocase(fg_str_make(d.p, 4), fg_str_make("www.", 4))) {
        d.p += 4;
        d.len -= 4;
    }
    if (d.len > ATTRIB_DOMAIN_MAX)
        return 0;
    for (size_t i = 0; i < d.len; i++)
        buf[n++] = util_ascii_lower(d.p[i]);
    buf[n] = '\0';
    return n;
}

/* The entry of @domain or NULL; *@ret_hash (when given) gets the normalized name's hash. */
static const struct attrib_domain *
attrib_maps_find_hash(const struct attrib_maps *m, struct fg_str domain, uint64_t *ret_hash)
{
    char name[ATTRIB_DOMAIN_MAX + 1];
    size_t n = attrib_domain_norm(domain, name);
    uint64_t h;

    if (n == 0)
        return NULL;
    h = siphash(name, n, m->key);
    if (ret_hash)
        *ret_hash = h;
    if (m->cap == 0)
        return NULL;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        const struct attrib_domain *s = &m->slots[i];
        if (!s->name)
            return NULL;
        if (s->hash == h && strcmp(s->name, name) == 0)
            return s;
    }
}

static int
attrib_maps_grow(struct attrib_maps *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    struct attrib_domain *slots = calloc(cap, sizeof(*slots));

    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        struct attrib_domain *s = &m->slots[i];
        size_t j;
        if (!s->name)
            continue;
        for (j = s->hash & (cap - 1); slots[j].name; j = (j + 1) & (cap - 1))
            ;
        slots[j] = *s;
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

static int
attrib_maps_put(struct attrib_maps *m, struct fg_str domain, struct fg_str owner)
{
    char name[ATTRIB_DOMAIN_MAX + 1];
    size_t n = attrib_domain_norm(domain, name), i;
    uint64_t h;
    int r;

    if (n == 0)
        return -EBADMSG;
    if ((m->count + 1) * 4 > m->cap * 3) {
        r = attrib_maps_grow(m);
        if (r < 0)
            return r;
    }
    h = siphash(name, n, m->key);
    for (i = h & (m->cap - 1); m->slots[i].name; i = (i + 1) & (m->cap - 1))
        if (m->slots[i].hash == h && strcmp(m->slots[i].name, name) == 0)
            break;
    if (!m->slots[i].name) {
        m->slots[i].name = strndup(name, n);
        if (!m->slots[i].name)
            return -ENOMEM;
        m->slots[i].hash = h;
        m->count++;
    }
    if (owner.len && !m->slots[i].owner) {
        m->slots[i].owner = strndup(owner.p, owner.len);
        if (!m->slots[i].owner)
            return -ENOMEM;
    }
    return 1;
}

/* Keep @owner in the sorted set of accounts (a load-time path: insertion in place). */
static int
attrib_maps_add_account(struct attrib_maps *m, struct fg_str owner)
{
    size_t lo = 0, hi = m->naccounts;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strncmp(m->accounts[mid], owner.p, owner.len);
        if (c == 0 && m->accounts[mid][owner.len] == '\0')
            return 1;
        if (c < 0 || (c == 0 && m->accounts[mid][owner.len] == '\0'))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (m->naccounts == m->accounts_cap) {
        size_t cap = m->accounts_cap ? m->accounts_cap * 2 : 64;
        char **v = realloc(m->accounts, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        m->accounts = v;
        m->accounts_cap = cap;
    }
    char *name = strndup(owner.p, owner.len);
    if (!name)
        return -ENOMEM;
    memmove(m->accounts + lo + 1, m->accounts + lo, (m->naccounts - lo) * sizeof(*m->accounts));
    m->accounts[lo] = name;
    m->naccounts++;
    return 1;
}

bool
attrib_maps_is_account(const struct attrib_maps *m, const char *login)
{
    size_t lo = 0, hi = m ? m->naccounts : 0;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->accounts[mid], login);
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static struct fg_str
attrib_trim(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        end--;
    return fg_str_make(p, (size_t)(end - p));
}

int
attrib_maps_add(struct attrib_maps *m, const char *buf, size_t len, bool owners, unsigned *ret_line)
{
    const char *p = buf, *end = buf + len;
    unsigned line = 0;
    int added = 0;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        struct fg_str text = attrib_trim(p, eol), domain, owner = FG_STR_NULL;
        int r;

        line++;
        p = nl ? nl + 1 : end;
        if (text.len == 0 || text.p[0] == '#')
            continue;
        if (owners) {
            const char *colon = memchr(text.p, ':', text.len);
            if (!colon)
                goto bad;
            domain = attrib_trim(text.p, colon);
            owner = attrib_trim(colon + 1, text.p + text.len);
            if (fg_str_eq(domain, "*"))
                continue;
            if (owner.len == 0 || owner.len >= ATTRIB_ACCOUNT_MAX)
                goto bad;
        } else {
            domain = text;
        }
        r = attrib_maps_put(m, domain, owner);
        if (r == -EBADMSG)
            goto bad;
        if (r == 1 && owner.len)
            r = attrib_maps_add_account(m, owner);
        if (r < 0)
            return r;
        added++;
        continue;
    bad:
        if (ret_line)
            *ret_line = line;
        return -EBADMSG;
    }
    return added;
}

static const struct attrib_domain *
attrib_maps_find(const struct attrib_maps *m, struct fg_str domain)
{
    return attrib_maps_find_hash(m, domain, NULL);
}

const char *
attrib_maps_owner(const struct attrib_maps *m, struct fg_str domain)
{
    const struct attrib_domain *s = m ? attrib_maps_find(m, domain) : NULL;

    return s ? s->owner : NULL;
}

bool
attrib_maps_is_local(const struct attrib_maps *m, struct fg_str domain)
{
    return m && attrib_maps_find(m, domain) != NULL;
}

size_t
attrib_maps_count(const struct attrib_maps *m)
{
    return m ? m->count : 0;
}

void
attrib_init(struct attrib *a)
{
    memset(a, 0, sizeof(*a));
}

void
attrib_note_cwd(struct attrib *a, const struct exim_event *ev)
{
    struct attrib_cwd *c;
    bool overflow = (ev->flags & EXIM_F_OVERFLOW) && ev->cwd.len;

    /* an overflowed record lost its argv: the submission flag cannot be known, but the
     * directory Exim wrote before the cut still names the script */
    if (!overflow && (ev->type != EXIM_CWD || !(ev->flags & EXIM_F_CWD_SUBMISSION)))
        return;
    if (ev->flags & EXIM_F_CWD_ARGC) {
        /* the args count does not match: the argv holds text that is not Exim's */
        a->cwd_argc++;
        return;
    }
    if (ev->cwd.len == 0 || ev->cwd.len >= sizeof(c->dir)) {
        a->keys_too_long++;
        return;
    }
    c = &a->cwd[a->next];
    if (c->used)
        a->cwd_unmatched++;
    a->next = (a->next + 1) % ATTRIB_CWD_SLOTS;
    c->used = true;
    c->has_pid = ev->has_pid;
    c->pid = ev->pid;
    c->forged = (ev->flags & (EXIM_F_CWD_FORGED | EXIM_F_ABSORBED)) != 0;
    c->ts_ms = ev->ts_ms;
    c->len = ev->cwd.len;
    memcpy(c->dir, ev->cwd.p, ev->cwd.len);
    c->dir[c->len] = '\0';
}

/* The pending cwd= record of the process that wrote @ev, consumed; NULL if none. */
static struct attrib_cwd *
attrib_take_cwd(struct attrib *a, const struct exim_event *ev)
{
    struct attrib_cwd *best = NULL;

    for (size_t i = 0; i < ATTRIB_CWD_SLOTS; i++) {
        struct attrib_cwd *c = &a->cwd[i];
        if (!c->used)
            continue;
        if (ev->ts_ms - c->ts_ms > ATTRIB_CWD_TTL_MS) {
            c->used = false;
            a->cwd_unmatched++;
            continue;
        }
        if (c->has_pid != ev->has_pid || (c->has_pid && c->pid != ev->pid))
            continue;
        if (!best || c->ts_ms >= best->ts_ms)
            best = c;
    }
    if (best)
        best->used = false;
    return best;
}

struct fg_str
attrib_peek_cwd(const struct attrib *a, bool has_pid, uint32_t pid)
{
    const struct attrib_cwd *best = NULL;

    for (size_t i = 0; i < ATTRIB_CWD_SLOTS; i++) {
        const struct attrib_cwd *c = &a->cwd[i];
        if (!c->used || (has_pid && (!c->has_pid || c->pid != pid)))
            continue;
        if (!best || c->ts_ms >= best->ts_ms)
            best = c;
    }
    return best ? fg_str_make(best->dir, best->len) : FG_STR_NULL;
}

size_t
attrib_home_owner(struct fg_str dir, char *buf, size_t size)
{
    const char *p = dir.p, *end = dir.p + dir.len, *user, *slash;
    size_t n;

    if (dir.len < 6 || memcmp(p, "/home", 5) != 0)
        return 0;
    p += 5;
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    if (p >= end || *p != '/')
        return 0;
    user = ++p;
    slash = memchr(user, '/', (size_t)(end - user));
    n = (size_t)((slash ? slash : end) - user);
    if (n == 0 || n >= size || n >= ATTRIB_ACCOUNT_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)user[i];
        /* a login name: no control bytes (a newline here is the forged part) */
        if (c <= 0x20 || c >= 0x7f)
            return 0;
    }
    memcpy(buf, user, n);
    buf[n] = '\0';
    return n;
}

bool
attrib_is_web_user(struct fg_str login)
{
    static const char *const users[] = { ATTRIB_WEB_USERS };

    for (size_t i = 0; i < N_ELEMS(users); i++)
        if (fg_str_eq(login, users[i]))
            return true;
    return false;
}

bool
attrib_is_exim_user(const struct attrib *a, struct fg_str login)
{
    static const char *const defaults[] = { ATTRIB_EXIM_USERS_DEFAULT };

    if (login.len == 0)
        return false;
    if (a->exim_user)
        return fg_str_eq(login, a->exim_user);
    for (size_t i = 0; i < N_ELEMS(defaults); i++)
        if (fg_str_eq(login, defaults[i]))
            return true;
    return false;
}


size_t
attrib_mailbox_norm(struct fg_str set_id, char *buf, size_t size)
{
    bool at = set_id.len && memchr(set_id.p, '@', set_id.len) != NULL;
    size_t n = 0;

    if (set_id.len >= size)
        return 0;
    for (size_t i = 0; i < set_id.len; i++) {
        char c = util_ascii_lower(set_id.p[i]);
        if (!at && (c == '+' || c == '%' || c == ':')) {
            c = '@';
            at = true;
        }
        buf[n++] = c;
    }
    buf[n] = '\0';
    return n;
}

static bool
attrib_proto_is_local(struct fg_str proto)
{
    return fg_str_eq(proto, "local") || fg_str_has_prefix(proto, "local-");
}

/* Sender without quotes or angle brackets, lowercased, compared with the mailbox. */
static bool
attrib_sender_matches(struct fg_str sender, const char *mailbox, size_t mlen)
{
    if (sender.len >= 2 && sender.p[0] == '<' && sender.p[sender.len - 1] == '>') {
        sender.p++;
        sender.len -= 2;
    }
    return fg_str_eq_nocase(sender, fg_str_make(mailbox, mlen));
}

static void
attrib_set(char *dst, size_t size, const char *src, size_t len)
{
    if (len >= size)
        len = size - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

int
attrib_arrival(struct attrib *a, const struct attrib_maps *m, const struct exim_event *ev,
               struct attrib_result *ret)
{
    struct attrib_cwd *cwd = NULL;
    size_t mlen = 0, pos = 0;
    struct fg_str addr, set_id = ev->set_id, auth = ev->auth;
    bool local = !ev->host.len && attrib_proto_is_local(ev->proto);

    ret->flags = 0;
    ret->mailbox[0] = ret->account[0] = ret->script[0] = '\0';
    ret->remote_rcpts = 0;
    ret->ndomains = 0;
    if (ev->type != EXIM_ARRIVAL)
        return 0;
    if (local)
        cwd = attrib_take_cwd(a, ev);
    if (ev->flags & EXIM_F_ANOMALOUS)
        set_id = auth = FG_STR_NULL; /* no reading holds: its A= is nobody's */

    if (fg_str_eq(ev->sender, "<>")) {
        /* Exim's own messages (bounces: R=<id>, or written by Exim's user) are not
         * outbound; "<>" given by an authenticated client or a user's -f '<>' is */
        if (auth.len || set_id.len ||
            (!ev->bounce_of.len && local && ev->ident.len && !attrib_is_exim_user(a, ev->ident)))
            ret->flags |= ATTRIB_NULL_SENDER;
        else
            ret->flags |= ATTRIB_BOUNCE;
    }
    if (fg_str_has_prefix(set_id, "__cpanel__service__"))
        ret->flags |= ATTRIB_SERVICE;

    if (ev->flags & EXIM_F_ANOMALOUS) {
        /* no reading of the record holds: nothing in its text names who sent it */
        if (ev->host.len)
            ret->flags |= ATTRIB_INBOUND;
    } else if (set_id.len) {
        mlen = attrib_mailbox_norm(set_id, ret->mailbox, sizeof(ret->mailbox));
        if (mlen == 0) {
            a->keys_too_long++;
        } else {
            const char *at = memchr(ret->mailbox, '@', mlen);
            const char *owner;
            if (!at) {
                /* a set_id without a domain is the cPanel account's system mailbox */
                attrib_set(ret->account, sizeof(ret->account), ret->mailbox, mlen);
            } else {
                owner = attrib_maps_owner(
                    m, fg_str_make(at + 1, (size_t)(ret->mailbox + mlen - (at + 1))));
                if (owner)
                    attrib_set(ret->account, sizeof(ret->account), owner, strlen(owner));
            }
            if (at && !(ret->flags & (ATTRIB_BOUNCE | ATTRIB_NULL_SENDER)) &&
                !attrib_sender_matches(ev->sender, ret->mailbox, mlen))
                ret->flags |= ATTRIB_MISMATCH;
        }
    } else if (local && ev->ident.len) {
        char owner[ATTRIB_ACCOUNT_MAX];
        attrib_set(ret->account, sizeof(ret->account), ev->ident.p, ev->ident.len);
        if (attrib_is_web_user(ev->ident)) {
            /* PHP run by the web server (mod_php/DSO): the directory it ran in tells whose
             * site it is when it lies in a cPanel account's home. Evidence only: the spool
             * names the web server's login, so no hold follows without an operator. */
            ret->flags |= ATTRIB_NOBODY;
            if (cwd && attrib_home_owner(fg_str_make(cwd->dir, cwd->len), owner, sizeof(owner)) &&
                attrib_maps_is_account(m, owner)) {
                attrib_set(ret->account, sizeof(ret->account), owner, strlen(owner));
                ret->flags |= ATTRIB_WEB_HOME;
            }
        }
    } else if (ev->host.len) {
        ret->flags |= ATTRIB_INBOUND;
    }

    if (cwd && ret->account[0]) {
        size_t alen = strlen(ret->account);
        if (alen + 1 + cwd->len < sizeof(ret->script)) {
            memcpy(ret->script, ret->account, alen);
            ret->script[alen] = ':';
            memcpy(ret->script + alen + 1, cwd->dir, cwd->len + 1);
            ret->flags |= ATTRIB_SCRIPT;
            if (cwd->forged)
                ret->flags |= ATTRIB_CWD_FORGED;
        } else {
            a->keys_too_long++;
        }
    }

    /* inbound mail, bounces and service mail are decided without walking the recipients */
    if (ret->flags & (ATTRIB_BOUNCE | ATTRIB_SERVICE | ATTRIB_INBOUND))
        return 0;
    if (!ret->mailbox[0] && !ret->account[0])
        return 0;
    while (eximlog_next_addr(ev->rcpts, &pos, &addr) > 0) {
        uint64_t h = 0;
        struct fg_str dom = eximlog_addr_domain(addr);
        if (m && attrib_maps_find_hash(m, dom, &h))
            continue; /* a local domain */
        ret->remote_rcpts++;
        /* hashed once here for the distinct-domain counts of every identity */
        if (dom.len && m && ret->ndomains < ATTRIB_DOMAINS_MAX)
            ret->domains[ret->ndomains++] = h;
    }
    if (ev->nrcpt > 0 && ret->remote_rcpts == 0) {
        ret->flags |= ATTRIB_LOCAL_ONLY;
        return 0;
    }
    ret->flags |= ATTRIB_OUTBOUND;
    return 1;
}
