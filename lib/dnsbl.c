/*
 * dnsbl.c - the host's own reputation in DNS blocklists: query names, what an answer
 * means, and what changed (dnsbl.h). Pure: the lookups go through struct dnsbl_resolver.
 */
#include "dnsbl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define DNSBL_NAME_LIMIT 253 /* a DNS name's text, without the root's dot */

struct dnsbl_slot {
    struct dnsbl *d;
    size_t i;
};

struct dnsbl {
    struct dnsbl_entry *entries;
    struct dnsbl_slot *slots;
    size_t n;
    int64_t round_ms;
    dnsbl_change_fn on_change;
    dnsbl_lookup_fn on_lookup;
    void *ctx;
};

int
dnsbl_query_name(const char *ip, const char *zone, char *buf, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char a[16];
    char name[DNSBL_NAME_LIMIT + 64];
    size_t n = 0, zlen = zone ? strlen(zone) : 0;

    if (!ip || zlen == 0 || zone[0] == '.')
        return -EINVAL;
    if (inet_pton(AF_INET, ip, a) == 1) {
        n = (size_t)snprintf(name, sizeof(name), "%u.%u.%u.%u.", a[3], a[2], a[1], a[0]);
    } else if (inet_pton(AF_INET6, ip, a) == 1) {
        for (int i = 15; i >= 0; i--) {
            name[n++] = hex[a[i] & 0xf];
            name[n++] = '.';
            name[n++] = hex[a[i] >> 4];
            name[n++] = '.';
        }
    } else {
        return -EINVAL;
    }
    if (zone[zlen - 1] == '.') /* a fully qualified zone: the name is the same */
        zlen--;
    if (n + zlen > DNSBL_NAME_LIMIT || n + zlen + 1 > size)
        return -ENAMETOOLONG;
    memcpy(buf, name, n);
    memcpy(buf + n, zone, zlen);
    buf[n + zlen] = '\0';
    return 0;
}

static int
dnsbl_code_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

void
dnsbl_interpret(const struct dnsbl_answer *a, struct dnsbl_verdict *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->status = DNSBL_UNKNOWN;
    switch (a->rcode) {
    case DNSBL_R_NXDOMAIN:
    case DNSBL_R_NODATA:
        ret->status = DNSBL_CLEAR;
        return;
    case DNSBL_R_ERROR:
        ret->why = "lookup failed";
        return;
    case DNSBL_R_ANSWER:
        break;
    default:
        ret->why = "unexpected answer";
        return;
    }
    if (a->naddrs == 0) {
        ret->status = DNSBL_CLEAR;
        return;
    }
    for (size_t i = 0; i < a->naddrs && i < DNSBL_CODES_MAX; i++) {
        uint32_t v = a->addrs[i];
        if ((v & 0xffffff00u) == 0x7fffff00u) {
            ret->ncodes = 0;
            ret->why = "the list refused the query (127.255.255.x: a public or "
                       "over-quota resolver)";
            return;
        }
        if ((v & 0xffffff00u) != 0x7f000000u) {
            ret->ncodes = 0;
            ret->why = "answer outside 127.0.0.0/24 (a resolver that rewrites NXDOMAIN?)";
            return;
        }
        bool dup = false;
        for (size_t k = 0; k < ret->ncodes && !dup; k++)
            dup = ret->codes[k] == v;
        if (!dup)
            ret->codes[ret->ncodes++] = v;
    }
    qsort(ret->codes, ret->ncodes, sizeof(ret->codes[0]), dnsbl_code_cmp);
    ret->status = DNSBL_LISTED;
}

void
dnsbl_codes_text(const struct dnsbl_verdict *v, char *buf, size_t size)
{
    size_t n = 0;

    if (size == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; i < v->ncodes; i++) {
        uint32_t c = v->codes[i];
        int w = snprintf(buf + n, size - n, "%s%u.%u.%u.%u", i ? "," : "", c >> 24,
                         (c >> 16) & 0xff, (c >> 8) & 0xff, c & 0xff);
        if (w < 0 || (size_t)w >= size - n) {
            buf[n] = '\0';
            return;
        }
        n += (size_t)w;
    }
}

int
dnsbl_new(const struct dnsbl_params *p, struct dnsbl **ret)
{
    struct dnsbl *d;
    size_t n, k = 0;
    char name[DNSBL_NAME_MAX];

    if (!p || p->nips > DNSBL_IPS_MAX || p->nzones > DNSBL_ZONES_MAX || !p->on_change)
        return -EINVAL;
    n = p->nips * p->nzones;
    d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->entries = calloc(n ? n : 1, sizeof(*d->entries));
    d->slots = calloc(n ? n : 1, sizeof(*d->slots));
    if (!d->entries || !d->slots) {
        dnsbl_free(d);
        return -ENOMEM;
    }
    for (size_t i = 0; i < p->nips; i++) {
        for (size_t z = 0; z < p->nzones; z++) {
            struct dnsbl_entry *e = &d->entries[k];
            if (strlen(p->ips[i]) >= sizeof(e->ip) || strlen(p->zones[z]) >= sizeof(e->zone) ||
                dnsbl_query_name(p->ips[i], p->zones[z], name, sizeof(name)) < 0) {
                dnsbl_free(d);
                return -EINVAL;
            }
            memcpy(e->ip, p->ips[i], strlen(p->ips[i]) + 1);
            memcpy(e->zone, p->zones[z], strlen(p->zones[z]) + 1);
            e->last_error = "";
            d->slots[k] = (struct dnsbl_slot){ d, k };
            k++;
        }
    }
    d->n = n;
    d->on_change = p->on_change;
    d->on_lookup = p->on_lookup;
    d->ctx = p->ctx;
    *ret = d;
    return 0;
}

void
dnsbl_free(struct dnsbl *d)
{
    if (!d)
        return;
    free(d->entries);
    free(d->slots);
    free(d);
}

void
dnsbl_carry(struct dnsbl *d, const struct dnsbl *old)
{
    if (!d || !old)
        return;
    for (size_t i = 0; i < d->n; i++) {
        struct dnsbl_entry *e = &d->entries[i];
        for (size_t k = 0; k < old->n; k++) {
            const struct dnsbl_entry *o = &old->entries[k];
            if (strcmp(o->ip, e->ip) != 0 || strcmp(o->zone, e->zone) != 0)
                continue;
            e->known = o->known;
            e->since_ms = o->since_ms;
            e->checked_ms = o->checked_ms;
            e->errors = o->errors;
            memcpy(e->last_error_buf, o->last_error_buf, sizeof(e->last_error_buf));
            e->last_error = o->last_error == o->last_error_buf ? e->last_error_buf : o->last_error;
            break;
        }
    }
}

static void
dnsbl_error(struct dnsbl *d, struct dnsbl_entry *e, const char *why, const char *detail)
{
    e->errors++;
    if (detail && *detail) {
        (void)snprintf(e->last_error_buf, sizeof(e->last_error_buf), "%s: %s", why, detail);
        e->last_error = e->last_error_buf;
    } else {
        e->last_error = why;
    }
    if (d->on_lookup)
        d->on_lookup(d->ctx, e, true);
}

static void
dnsbl_answered(void *arg, const struct dnsbl_answer *a)
{
    struct dnsbl_slot *s = arg;
    struct dnsbl *d = s->d;
    struct dnsbl_entry *e = &d->entries[s->i];
    struct dnsbl_verdict v;
    struct dnsbl_change c = { .e = e };

    e->inflight = false;
    dnsbl_interpret(a, &v);
    if (v.status == DNSBL_UNKNOWN) {
        dnsbl_error(d, e, v.why, a->rcode == DNSBL_R_ERROR ? a->error : NULL);
        return;
    }
    e->checked_ms = d->round_ms;
    e->last_error = "";
    if (v.status == DNSBL_LISTED && e->known.status != DNSBL_LISTED) {
        c.kind = DNSBL_CHANGE_LISTED;
        e->since_ms = d->round_ms;
    } else if (v.status == DNSBL_CLEAR && e->known.status == DNSBL_LISTED) {
        c.kind = DNSBL_CHANGE_DELISTED;
        c.was_since_ms = e->since_ms;
        e->since_ms = d->round_ms;
    } else if (v.status != e->known.status) {
        e->since_ms = d->round_ms; /* unknown -> clear: nothing to say */
    }
    e->known = v;
    if (d->on_lookup)
        d->on_lookup(d->ctx, e, false);
    if (c.kind)
        d->on_change(d->ctx, &c);
}

size_t
dnsbl_round(struct dnsbl *d, const struct dnsbl_resolver *r, int64_t now_ms)
{
    char name[DNSBL_NAME_MAX];
    size_t started = 0;

    d->round_ms = now_ms;
    for (size_t i = 0; i < d->n; i++) {
        struct dnsbl_entry *e = &d->entries[i];
        int err;

        if (e->inflight)
            continue;
        if (dnsbl_query_name(e->ip, e->zone, name, sizeof(name)) < 0)
            continue; /* dnsbl_new() checked every pair */
        e->inflight = true;
        err = r->query(r->ctx, name, dnsbl_answered, &d->slots[i]);
        if (err < 0) {
            e->inflight = false;
            dnsbl_error(d, e, "lookup not started", strerror(-err));
            continue;
        }
        started++;
    }
    return started;
}

size_t
dnsbl_inflight(const struct dnsbl *d)
{
    size_t n = 0;

    for (size_t i = 0; d && i < d->n; i++)
        n += d->entries[i].inflight;
    return n;
}

size_t
dnsbl_count(const struct dnsbl *d)
{
    return d ? d->n : 0;
}

const struct dnsbl_entry *
dnsbl_entry(const struct dnsbl *d, size_t i)
{
    return d && i < d->n ? &d->entries[i] : NULL;
}
