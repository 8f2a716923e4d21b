#ifndef FLOODGATE_DNSBL_H
#define FLOODGATE_DNSBL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * lib/dnsbl: the host's own reputation. Each configured sending address is looked up in
 * each configured DNS blocklist zone: "2.0.0.192.zen.spamhaus.org" for 192.0.2.0, the 32
 * reversed nibbles for an IPv6 address. What an answer means (dnsbl_interpret) and what
 * changed since the last one (a listing, a delisting) are pure; the lookups go through
 * struct dnsbl_resolver (lib/dnsbl_ares.c: c-ares on the libev loop; a fake in tests).
 *
 * An answer 127.0.0.x lists the address (every code kept); NXDOMAIN or an empty answer
 * does not. A failed lookup (SERVFAIL, timeout, refused), a 127.255.255.x answer (the
 * list's own "query refused": a public resolver, a quota) or an address outside
 * 127.0.0.0/8 (a resolver that rewrites NXDOMAIN) is "unknown": it is counted as an error
 * and never changes what is known, so an outage is never a delisting.
 */

#define DNSBL_NAME_MAX  256 /* a query name, with its NUL */
#define DNSBL_ZONE_MAX  180 /* a zone: 64 nibble labels + 180 bytes fit in 253 */
#define DNSBL_IP_MAX    46  /* INET6_ADDRSTRLEN */
#define DNSBL_CODES_MAX 8   /* return codes kept per listing */
#define DNSBL_IPS_MAX   16
#define DNSBL_ZONES_MAX 8

enum dnsbl_status { DNSBL_UNKNOWN = 0, DNSBL_CLEAR, DNSBL_LISTED };

/* What the resolver got for one A query. */
enum dnsbl_rcode {
    DNSBL_R_ANSWER = 0, /* NOERROR with A records (addrs) */
    DNSBL_R_NXDOMAIN,   /* the name does not exist */
    DNSBL_R_NODATA,     /* NOERROR without an A record */
    DNSBL_R_ERROR,      /* SERVFAIL, REFUSED, timeout, connection refused, ... */
};

struct dnsbl_answer {
    enum dnsbl_rcode rcode;
    uint32_t addrs[DNSBL_CODES_MAX]; /* IPv4 addresses in host order (more are dropped) */
    size_t naddrs;
    const char *error; /* DNSBL_R_ERROR: the resolver's words (borrowed); may be NULL */
};

struct dnsbl_verdict {
    enum dnsbl_status status;
    uint32_t codes[DNSBL_CODES_MAX]; /* DNSBL_LISTED: the 127.0.0.x answers, sorted */
    size_t ncodes;
    const char *why; /* DNSBL_UNKNOWN: a static reason */
};

/*
 * The query name for @ip (IPv4 dotted quad or IPv6 text) in @zone into @buf:
 * 0, -EINVAL (not an address, or an empty zone), -ENAMETOOLONG (over @size or 253 bytes).
 */
int dnsbl_query_name(const char *ip, const char *zone, char *buf, size_t size);

/* What @a means (above). */
void dnsbl_interpret(const struct dnsbl_answer *a, struct dnsbl_verdict *ret);

/* "127.0.0.2,127.0.0.4" into @buf (truncated to fit, NUL-terminated). */
void dnsbl_codes_text(const struct dnsbl_verdict *v, char *buf, size_t size);

/* --- the lookups -------------------------------------------------------------------- */

/* Called once per query started by query(); @a is borrowed for the call. */
typedef void (*dnsbl_answer_fn)(void *arg, const struct dnsbl_answer *a);

/*
 * A resolver: query() starts an A lookup of @name (a complete name: no search list) and
 * returns 0 and calls @done exactly once later, or returns -errno and never calls it.
 * Freeing the resolver drops queries in flight without calling back.
 */
struct dnsbl_resolver {
    int (*query)(void *ctx, const char *name, dnsbl_answer_fn done, void *arg);
    void *ctx;
};

/* One (address, zone) pair and what is known of it. */
struct dnsbl_entry {
    char ip[DNSBL_IP_MAX];
    char zone[DNSBL_ZONE_MAX];
    struct dnsbl_verdict known; /* UNKNOWN until a lookup answered; an error keeps it */
    int64_t since_ms;           /* when known.status was first seen (0: never) */
    int64_t checked_ms;         /* the last answered lookup (0: never) */
    uint64_t errors;            /* lookups that failed or answered nonsense */
    const char *last_error;     /* static or the resolver's reason; "" none */
    char last_error_buf[96];
    bool inflight;
};

/* A change worth an alert. */
enum dnsbl_change_kind { DNSBL_CHANGE_LISTED = 1, DNSBL_CHANGE_DELISTED };
struct dnsbl_change {
    enum dnsbl_change_kind kind;
    const struct dnsbl_entry *e; /* borrowed for the callback */
    int64_t was_since_ms;        /* delisted: when the listing was first seen */
};
typedef void (*dnsbl_change_fn)(void *ctx, const struct dnsbl_change *c);
/* Every lookup's outcome (metrics, logs); @err true for an unknown one. */
typedef void (*dnsbl_lookup_fn)(void *ctx, const struct dnsbl_entry *e, bool err);

struct dnsbl_params {
    const char *const *ips; /* each IPv4 or IPv6 text (normalised by the config) */
    size_t nips;            /* at most DNSBL_IPS_MAX */
    const char *const *zones;
    size_t nzones; /* at most DNSBL_ZONES_MAX */
    dnsbl_change_fn on_change;
    dnsbl_lookup_fn on_lookup; /* may be NULL */
    void *ctx;
};

struct dnsbl;

/* 0 and *ret (owned), -EINVAL (too many, a bad address or zone), -ENOMEM. */
int dnsbl_new(const struct dnsbl_params *p, struct dnsbl **ret);
/* NULL-safe. Free the resolver that may still call back first. */
void dnsbl_free(struct dnsbl *d);
/* Keep what @old knew of the pairs both watch (a reload must not alert again). */
void dnsbl_carry(struct dnsbl *d, const struct dnsbl *old);
/*
 * Start a lookup for every pair not still waiting for one, at @now_ms (wall clock, for
 * since_ms). Returns how many were started; a query() that fails counts as an error of
 * its pair (on_lookup) at once.
 */
size_t dnsbl_round(struct dnsbl *d, const struct dnsbl_resolver *r, int64_t now_ms);
/* Lookups started and not answered. */
size_t dnsbl_inflight(const struct dnsbl *d);
size_t dnsbl_count(const struct dnsbl *d);
const struct dnsbl_entry *dnsbl_entry(const struct dnsbl *d, size_t i);

/* lib/dnsbl_ares.c: c-ares on a libev loop. */
struct ev_loop;
struct dnsbl_ares;
/*
 * @nameserver: "ip:port", "[ipv6]:port" or a bare address; NULL: the system's resolv.conf.
 * @timeout_ms: per try (two tries). 0 and *ret, -ENOMEM, -EINVAL (the nameserver), -EIO.
 */
int dnsbl_ares_new(struct ev_loop *loop, const char *nameserver, int64_t timeout_ms,
                   struct dnsbl_ares **ret);
/* Drops every query in flight without calling back; NULL-safe. */
void dnsbl_ares_free(struct dnsbl_ares *a);
struct dnsbl_resolver dnsbl_ares_resolver(struct dnsbl_ares *a);

#endif
