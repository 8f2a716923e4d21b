/*
 * trips.c - the recent trips of the daemon in a fixed ring (trips.h).
 */
#include "trips.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct trips {
    struct trip_rec *ring;
    size_t cap, n, head; /* head: where the next one goes */
    uint64_t seq;
};

static const char *const trips_names[TRIPS_RESULT__MAX] = {
    [TRIPS_PENDING] = "pending",         [TRIPS_DONE] = "done",
    [TRIPS_ALERTED] = "alerted",         [TRIPS_UNCONFIRMED] = "unconfirmed",
    [TRIPS_FAILED] = "failed",           [TRIPS_WOULD_ACT] = "would_act",
    [TRIPS_ALREADY] = "already_held",    [TRIPS_NOT_ACTED] = "not_acted",
};

const char *
trips_result_name(enum trips_result r)
{
    return (unsigned)r < TRIPS_RESULT__MAX ? trips_names[r] : "?";
}

struct trips *
trips_new(size_t cap)
{
    struct trips *t = calloc(1, sizeof(*t));

    if (!t)
        return NULL;
    t->cap = cap ? cap : TRIPS_DEFAULT_CAP;
    t->ring = calloc(t->cap, sizeof(*t->ring));
    if (!t->ring) {
        free(t);
        return NULL;
    }
    return t;
}

void
trips_free(struct trips *t)
{
    if (!t)
        return;
    free(t->ring);
    free(t);
}

/* The i-th newest record (0: the newest); i < t->n. */
static struct trip_rec *
trips_at(const struct trips *t, size_t i)
{
    return &t->ring[(t->head + t->cap - 1 - i) % t->cap];
}

void
trips_identity_ref(enum usertable_scope scope, const char *id, char *buf, size_t size)
{
    const char *name = usertable_scope_name(scope);
    uint32_t h = 2166136261u;

    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    h = (h ^ ':') * 16777619u;
    for (const char *p = id; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (scope == SCOPE_MAILBOX && c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        h = (h ^ c) * 16777619u;
    }
    (void)snprintf(buf, size, "fg-%08x", (unsigned)h);
}

struct trip_rec *
trips_add(struct trips *t, const struct trip_rec *rec)
{
    struct trip_rec *r = &t->ring[t->head];

    *r = *rec;
    r->seq = ++t->seq;
    r->result = TRIPS_PENDING;
    r->rule[sizeof(r->rule) - 1] = '\0';
    r->id[sizeof(r->id) - 1] = '\0';
    trips_identity_ref(r->scope, r->id, r->ref, sizeof(r->ref));
    r->account[sizeof(r->account) - 1] = '\0';
    r->at[sizeof(r->at) - 1] = '\0';
    r->msgid[sizeof(r->msgid) - 1] = '\0';
    r->subject[sizeof(r->subject) - 1] = '\0';
    r->detail[sizeof(r->detail) - 1] = '\0';
    t->head = (t->head + 1) % t->cap;
    if (t->n < t->cap)
        t->n++;
    return r;
}

static bool
trips_is(const struct trip_rec *r, enum usertable_scope scope, const char *id)
{
    return r->scope == scope &&
           (scope == SCOPE_MAILBOX ? strcasecmp(r->id, id) == 0 : strcmp(r->id, id) == 0);
}

struct trip_rec *
trips_pending(struct trips *t, enum usertable_scope scope, const char *id)
{
    for (size_t i = 0; i < t->n; i++) {
        struct trip_rec *r = trips_at(t, i);
        if (r->result == TRIPS_PENDING && trips_is(r, scope, id))
            return r;
    }
    return NULL;
}

const struct trip_rec *
trips_last(const struct trips *t, enum usertable_scope scope, const char *id)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct trip_rec *r = trips_at(t, i);
        if (trips_is(r, scope, id))
            return r;
    }
    return NULL;
}

const struct trip_rec *
trips_find_ref(const struct trips *t, const char *ref)
{
    for (size_t i = 0; ref && i < t->n; i++) {
        const struct trip_rec *r = trips_at(t, i);
        if (strcasecmp(r->ref, ref) == 0)
            return r;
    }
    return NULL;
}

size_t
trips_list(const struct trips *t, const char *id, enum usertable_scope scope,
           const struct trip_rec **ret, size_t max)
{
    size_t k = 0;

    for (size_t i = 0; i < t->n && k < max; i++) {
        const struct trip_rec *r = trips_at(t, i);
        if (!id || trips_is(r, scope, id))
            ret[k++] = r;
    }
    return k;
}

size_t
trips_count(const struct trips *t)
{
    return t->n;
}

uint64_t
trips_total(const struct trips *t)
{
    return t->seq;
}
