#ifndef FLOODGATE_USERTABLE_H
#define FLOODGATE_USERTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "siphash.h"
#include "window.h"

enum usertable_scope {
    SCOPE_MAILBOX = 0, /* box@domain */
    SCOPE_ACCOUNT,     /* cPanel user */
    SCOPE_SCRIPT,      /* user:/home/user/public_html/dir */
    SCOPE__MAX,
};

const char *usertable_scope_name(enum usertable_scope s); /* "mailbox", "account", "script" */
int usertable_scope_parse(const char *name, enum usertable_scope *ret); /* 0 or -EINVAL */

#define USERTABLE_CAP_DEFAULT 200000
#define USERTABLE_KEY_MAX     512 /* longer identity keys are refused with -E2BIG */
#define USERTABLE_SERIES_MAX  16  /* (metric, window) pairs per scope */

/* One sliding count kept for every identity of a scope. */
struct usertable_series {
    enum window_metric metric;
    int64_t window_ms;
};

struct usertable_params {
    uint32_t cap; /* 0: USERTABLE_CAP_DEFAULT */
    uint8_t key[SIPHASH_KEY_LEN];
    struct usertable_series series[SCOPE__MAX][USERTABLE_SERIES_MAX];
    size_t nseries[SCOPE__MAX];
};

/* Per-identity policy state, owned by lib/policy, stored with the identity. */
struct usertable_policy {
    uint32_t tripped;       /* bit i: rule i has fired and not been released */
    uint32_t queued;        /* messages still queued (engine; not in snapshots: msgtrack
                             * is not either) */
    int64_t quiet_until_ms; /* after a release: no new trip before this log time */
};

/* A stable reference to an entry that survives its eviction (then deref gives NULL). */
struct usertable_ref {
    uint32_t slot;
    uint32_t gen;
};

struct usertable;
struct usertable_entry;

/* Returns owned (usertable_free()), or NULL when out of memory or the params are bad. */
struct usertable *usertable_new(const struct usertable_params *p);
void usertable_free(struct usertable *t);

/*
 * Find the identity (@scope, @key). With @create, a missing one is added, evicting the
 * least recently active identity when the table is full. Returns 1 (found or created,
 * *ret set; the entry is borrowed until the next create), 0 (absent and !create),
 * -E2BIG (key over USERTABLE_KEY_MAX), -ENOMEM.
 */
int usertable_get(struct usertable *t, enum usertable_scope scope, const char *key, size_t len,
                  int64_t now_ms, bool create, struct usertable_entry **ret);

/* Count @n of a summed metric at log time @ts_ms in every series of the entry's scope. */
void usertable_add(struct usertable *t, struct usertable_entry *e, enum window_metric m,
                   int64_t ts_ms, uint32_t n);
/* Record one value (its 64-bit hash) of a distinct metric at @ts_ms. */
void usertable_add_distinct(struct usertable *t, struct usertable_entry *e, enum window_metric m,
                            int64_t ts_ms, uint64_t hash);
/* Sliding value of series @idx of the entry's scope at log time @now_ms. */
uint64_t usertable_sum(const struct usertable *t, const struct usertable_entry *e, size_t idx,
                       int64_t now_ms);

/* Accessors. The key is NUL-terminated and borrowed while the entry lives. */
enum usertable_scope usertable_entry_scope(const struct usertable_entry *e);
const char *usertable_entry_key(const struct usertable_entry *e);
uint64_t usertable_entry_total(const struct usertable_entry *e, enum window_metric m);
int64_t usertable_entry_last_ms(const struct usertable_entry *e);
struct usertable_policy *usertable_entry_policy(struct usertable_entry *e);

struct usertable_ref usertable_ref(const struct usertable *t, const struct usertable_entry *e);
/* The entry @ref names, or NULL when it was evicted since. */
struct usertable_entry *usertable_deref(struct usertable *t, struct usertable_ref ref);

size_t usertable_count(const struct usertable *t);
uint64_t usertable_evictions(const struct usertable *t);
const struct usertable_params *usertable_params(const struct usertable *t);

/*
 * Snapshot: serialize every identity (scope, key, series buckets, totals, policy state)
 * through @write, a binary format with a version and a checksum; load restores into an
 * empty table built with the same params (series that no longer exist are dropped).
 * Load returns 0, -EBADMSG (corrupt or truncated), -EINVAL (other version), -ENOMEM.
 */
typedef int (*usertable_write_fn)(void *ctx, const void *p, size_t n);
int usertable_save(const struct usertable *t, usertable_write_fn write, void *ctx);
int usertable_load(struct usertable *t, const void *buf, size_t len);

/* Iteration in unspecified order: pass *@pos = 0 first; returns NULL at the end. */
struct usertable_entry *usertable_next(struct usertable *t, size_t *pos);

/*
 * Additions. A table is full when it holds its cap: the next create evicts. Allocation
 * failures inside usertable_add() and usertable_add_distinct() (which return nothing) drop
 * the event and are counted here, so the daemon can log and export them.
 */
bool usertable_is_full(const struct usertable *t);
uint64_t usertable_nomem(const struct usertable *t);
/* Counter storage of the entry: false while sparse (a few exact events), true once dense. */
bool usertable_entry_is_dense(const struct usertable_entry *e);

#endif
