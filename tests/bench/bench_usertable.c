/*
 * bench_usertable.c - memory and speed of the identity table under a realistic load:
 * 100k identities (70% mailboxes, 20% scripts, 10% accounts) with one to three messages
 * each over an hour of log time, plus 1% busy identities with 300 messages each, under
 * the rule set mailbox recipients/10m, messages/1h, domains/10m; account messages/1h;
 * script messages/5m. Prints the resident set before and after, the peak, and ns per
 * lookup-plus-add and per sum. Not a ctest: figures, not pass or fail.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "usertable.h"

#define BENCH_IDS  100000
#define BENCH_BUSY (BENCH_IDS / 100)
#define BENCH_HOUR 3600000

struct bench_msg {
    int64_t ts;
    uint32_t id;
    uint32_t seed;
};

static long
bench_status_kb(const char *field)
{
    char line[256];
    size_t n = strlen(field);
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");

    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            kb = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return kb;
}

static int64_t
bench_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t
bench_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

static int
bench_cmp(const void *a, const void *b)
{
    const struct bench_msg *x = a, *y = b;

    return (x->ts > y->ts) - (x->ts < y->ts);
}

static enum usertable_scope
bench_key(uint32_t id, char *buf, size_t size)
{
    if (id % 10 < 7) {
        (void)snprintf(buf, size, "info%" PRIu32 "@example-domain%" PRIu32 ".com", id % 1000,
                       id / 1000);
        return SCOPE_MAILBOX;
    }
    if (id % 10 < 9) {
        (void)snprintf(buf, size,
                       "cpuser%" PRIu32 ":/home/cpuser%" PRIu32 "/public_html/wp-content/x%" PRIu32,
                       id / 10, id / 10, id % 10);
        return SCOPE_SCRIPT;
    }
    (void)snprintf(buf, size, "cpuser%" PRIu32, id);
    return SCOPE_ACCOUNT;
}

int
main(void)
{
    struct usertable_params p = { .cap = 0 };
    struct usertable *t;
    struct bench_msg *msgs;
    size_t nmsgs = 0, maxmsgs = (size_t)BENCH_IDS * 3 + (size_t)BENCH_BUSY * 300;
    uint64_t seed = 42, adds = 0, sums = 0, checksum = 0, dense = 0;
    long rss_base, rss0, rss1, hwm;
    int64_t t0, t1, t2, end = 0;
    char key[128];
    size_t pos = 0;
    struct usertable_entry *e;

    for (uint8_t i = 0; i < SIPHASH_KEY_LEN; i++)
        p.key[i] = i;
    p.series[SCOPE_MAILBOX][0] = (struct usertable_series){ WINDOW_RECIPIENTS, 600000 };
    p.series[SCOPE_MAILBOX][1] = (struct usertable_series){ WINDOW_MESSAGES, 3600000 };
    p.series[SCOPE_MAILBOX][2] = (struct usertable_series){ WINDOW_DOMAINS, 600000 };
    p.nseries[SCOPE_MAILBOX] = 3;
    p.series[SCOPE_ACCOUNT][0] = (struct usertable_series){ WINDOW_MESSAGES, 3600000 };
    p.nseries[SCOPE_ACCOUNT] = 1;
    p.series[SCOPE_SCRIPT][0] = (struct usertable_series){ WINDOW_MESSAGES, 300000 };
    p.nseries[SCOPE_SCRIPT] = 1;

    rss_base = bench_status_kb("VmRSS");
    msgs = malloc(maxmsgs * sizeof(*msgs));
    if (!msgs)
        return 1;
    for (uint32_t id = 0; id < BENCH_IDS; id++) {
        unsigned n = id < BENCH_BUSY ? 300 : 1 + (unsigned)(bench_rand(&seed) % 3);

        for (unsigned k = 0; k < n; k++)
            msgs[nmsgs++] = (struct bench_msg){
                .ts = 1700000000000 + (int64_t)(bench_rand(&seed) % BENCH_HOUR),
                .id = id,
                .seed = (uint32_t)bench_rand(&seed),
            };
    }
    qsort(msgs, nmsgs, sizeof(*msgs), bench_cmp);

    rss0 = bench_status_kb("VmRSS");
    t = usertable_new(&p);
    if (!t)
        return 1;
    t0 = bench_ns();
    for (size_t i = 0; i < nmsgs; i++) {
        const struct bench_msg *m = &msgs[i];
        enum usertable_scope s = bench_key(m->id, key, sizeof(key));
        unsigned rcpt = 1 + m->seed % 3;

        if (usertable_get(t, s, key, strlen(key), m->ts, true, &e) != 1)
            return 1;
        usertable_add(t, e, WINDOW_MESSAGES, m->ts, 1);
        usertable_add(t, e, WINDOW_RECIPIENTS, m->ts, rcpt);
        adds += 2;
        if (s == SCOPE_MAILBOX) {
            /* a few domains per identity, so distinct values repeat */
            for (unsigned d = 0; d < (rcpt > 1 ? 2u : 1u); d++)
                usertable_add_distinct(t, e, WINDOW_DOMAINS, m->ts,
                                       (uint64_t)((m->seed >> (8 + d * 4)) % 5 + m->id) *
                                           UINT64_C(0x9e3779b97f4a7c15));
            adds += rcpt > 1 ? 2 : 1;
        }
        end = m->ts;
    }
    t1 = bench_ns();
    while ((e = usertable_next(t, &pos)) != NULL) {
        enum usertable_scope s = usertable_entry_scope(e);

        for (size_t i = 0; i < p.nseries[s]; i++) {
            checksum += usertable_sum(t, e, i, end);
            sums++;
        }
        dense += usertable_entry_is_dense(e);
    }
    t2 = bench_ns();
    free(msgs); /* one mmap'd block: back to the kernel, so what stays is the table */
    rss1 = bench_status_kb("VmRSS");
    hwm = bench_status_kb("VmHWM");

    printf("identities         %zu (%" PRIu64 " dense, %d busy), %zu messages over 1 h\n",
           usertable_count(t), dense, BENCH_BUSY, nmsgs);
    printf("rss baseline       %ld KiB (process before anything)\n", rss_base);
    printf("rss with table     %ld KiB (after the bench's event list is freed)\n", rss1);
    printf("table growth       %ld KiB (%.0f bytes per identity)\n", rss1 - rss_base,
           (double)(rss1 - rss_base) * 1024.0 / (double)usertable_count(t));
    printf("peak rss (VmHWM)   %ld KiB (includes the bench's %zu KiB event list)\n", hwm,
           nmsgs * sizeof(*msgs) / 1024);
    (void)rss0;
    printf("lookup + add       %.0f ns per add (%" PRIu64 " adds, %zu lookups)\n",
           (double)(t1 - t0) / (double)adds, adds, nmsgs);
    printf("sum                %.0f ns per sum (%" PRIu64 " sums, checksum %" PRIu64 ")\n",
           (double)(t2 - t1) / (double)sums, sums, checksum);
    printf("allocation failures %" PRIu64 "\n", usertable_nomem(t));
    usertable_free(t);
    return 0;
}
