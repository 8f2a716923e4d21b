/*
 * check_dnsbl.c - lib/dnsbl: query names (reversed octets, IPv6 nibbles), what an answer
 * means (127.0.0.x listed with its codes, NXDOMAIN clear, errors and refusals unknown),
 * and the changes worth an alert through a fake resolver: listed, delisted, an outage
 * never a delisting, a reload that carries what is known.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <check.h>

#include "dnsbl.h"
#include "testrun.h"
#include "util.h"

START_TEST(test_query_names)
{
    char buf[DNSBL_NAME_MAX];

    ck_assert_int_eq(dnsbl_query_name("192.0.2.25", "zen.spamhaus.org", buf, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "25.2.0.192.zen.spamhaus.org");
    ck_assert_int_eq(dnsbl_query_name("192.0.2.25", "bl.spamcop.net.", buf, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "25.2.0.192.bl.spamcop.net");
    ck_assert_int_eq(dnsbl_query_name("2001:db8::1", "zen.spamhaus.org", buf, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2."
                          "zen.spamhaus.org");
    ck_assert_int_eq(dnsbl_query_name("192.0.2", "zen.spamhaus.org", buf, sizeof(buf)), -EINVAL);
    ck_assert_int_eq(dnsbl_query_name("example.com", "zen.spamhaus.org", buf, sizeof(buf)),
                     -EINVAL);
    ck_assert_int_eq(dnsbl_query_name("192.0.2.1", "", buf, sizeof(buf)), -EINVAL);
    ck_assert_int_eq(dnsbl_query_name("192.0.2.1", "zen.spamhaus.org", buf, 20), -ENAMETOOLONG);
    char zone[240];
    memset(zone, 'a', sizeof(zone) - 1);
    zone[sizeof(zone) - 1] = '\0';
    ck_assert_int_eq(dnsbl_query_name("2001:db8::1", zone, buf, sizeof(buf)), -ENAMETOOLONG);
}
END_TEST

#define A(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (d))

START_TEST(test_interpret)
{
    struct dnsbl_answer a = { .rcode = DNSBL_R_ANSWER,
                              .addrs = { A(127, 0, 0, 4), A(127, 0, 0, 2), A(127, 0, 0, 4) },
                              .naddrs = 3 };
    struct dnsbl_verdict v;
    char text[64];

    dnsbl_interpret(&a, &v);
    ck_assert_int_eq(v.status, DNSBL_LISTED);
    ck_assert_uint_eq(v.ncodes, 2);
    dnsbl_codes_text(&v, text, sizeof(text));
    ck_assert_str_eq(text, "127.0.0.2,127.0.0.4");
    dnsbl_codes_text(&v, text, 12);
    ck_assert_str_eq(text, "127.0.0.2");

    a = (struct dnsbl_answer){ .rcode = DNSBL_R_NXDOMAIN };
    dnsbl_interpret(&a, &v);
    ck_assert_int_eq(v.status, DNSBL_CLEAR);
    a = (struct dnsbl_answer){ .rcode = DNSBL_R_NODATA };
    dnsbl_interpret(&a, &v);
    ck_assert_int_eq(v.status, DNSBL_CLEAR);
    a = (struct dnsbl_answer){ .rcode = DNSBL_R_ERROR, .error = "Timeout" };
    dnsbl_interpret(&a, &v);
    ck_assert_int_eq(v.status, DNSBL_UNKNOWN);
    /* Spamhaus' "refused" codes are not a listing */
    a = (struct dnsbl_answer){ .rcode = DNSBL_R_ANSWER,
                               .addrs = { A(127, 0, 0, 2), A(127, 255, 255, 254) },
                               .naddrs = 2 };
    dnsbl_interpret(&a, &v);
    ck_assert_int_eq(v.status, DNSBL_UNKNOWN);
    ck_assert_ptr_nonnull(strstr(v.why, "127.255.255"));
    /* a resolver that answers NXDOMAIN with its own address */
    a = (struct dnsbl_answer){ .rcode = DNSBL_R_ANSWER,
                               .addrs = { A(198, 51, 100, 7) },
                               .naddrs = 1 };
    dnsbl_interpret(&a, &v);
    ck_assert_int_eq(v.status, DNSBL_UNKNOWN);
    a = (struct dnsbl_answer){ .rcode = DNSBL_R_ANSWER, .addrs = { A(127, 1, 0, 2) }, .naddrs = 1 };
    dnsbl_interpret(&a, &v);
    ck_assert_int_eq(v.status, DNSBL_UNKNOWN);
}
END_TEST

/* A resolver that keeps queries until the test answers them. */
struct fake_query {
    char name[DNSBL_NAME_MAX];
    dnsbl_answer_fn done;
    void *arg;
};
struct fake_res {
    struct fake_query q[64];
    size_t n;
    int fail; /* -errno returned by query() */
};

static int
fake_query(void *ctx, const char *name, dnsbl_answer_fn done, void *arg)
{
    struct fake_res *f = ctx;

    if (f->fail)
        return f->fail;
    ck_assert_uint_lt(f->n, N_ELEMS(f->q));
    (void)snprintf(f->q[f->n].name, sizeof(f->q[f->n].name), "%s", name);
    f->q[f->n].done = done;
    f->q[f->n].arg = arg;
    f->n++;
    return 0;
}

/* Answer every pending query: @listed names get 127.0.0.2, the rest @other. */
static void
fake_answer(struct fake_res *f, const char *listed, enum dnsbl_rcode other)
{
    size_t n = f->n;

    f->n = 0;
    for (size_t i = 0; i < n; i++) {
        struct dnsbl_answer a = { .rcode = other, .error = "Timeout while contacting DNS servers" };
        if (listed && strcmp(f->q[i].name, listed) == 0)
            a = (struct dnsbl_answer){ .rcode = DNSBL_R_ANSWER,
                                       .addrs = { A(127, 0, 0, 2) },
                                       .naddrs = 1 };
        f->q[i].done(f->q[i].arg, &a);
    }
}

struct seen {
    char what[8][DNSBL_IP_MAX + DNSBL_ZONE_MAX + 16];
    size_t n;
    size_t errors, lookups;
};

static void
on_change(void *ctx, const struct dnsbl_change *c)
{
    struct seen *s = ctx;

    ck_assert_uint_lt(s->n, N_ELEMS(s->what));
    (void)snprintf(s->what[s->n++], sizeof(s->what[0]), "%s %s %s",
                   c->kind == DNSBL_CHANGE_LISTED ? "listed" : "delisted", c->e->ip, c->e->zone);
}

static void
on_lookup(void *ctx, const struct dnsbl_entry *e, bool err)
{
    struct seen *s = ctx;

    (void)e;
    s->lookups++;
    s->errors += err;
}

START_TEST(test_changes)
{
    const char *ips[] = { "192.0.2.25", "2001:db8::25" };
    const char *zones[] = { "zen.example", "bl.example" };
    struct seen seen = { 0 };
    struct dnsbl_params p = { ips, 2, zones, 2, on_change, on_lookup, &seen };
    struct fake_res f = { 0 };
    struct dnsbl_resolver r = { fake_query, &f };
    struct dnsbl *d, *d2;
    const struct dnsbl_entry *e;

    ck_assert_int_eq(dnsbl_new(&p, &d), 0);
    ck_assert_uint_eq(dnsbl_count(d), 4);
    /* round 1: all clear, nothing to say */
    ck_assert_uint_eq(dnsbl_round(d, &r, 1000), 4);
    ck_assert_uint_eq(dnsbl_inflight(d), 4);
    ck_assert_uint_eq(dnsbl_round(d, &r, 1500), 0); /* nothing twice in flight */
    fake_answer(&f, NULL, DNSBL_R_NXDOMAIN);
    ck_assert_uint_eq(seen.n, 0);
    ck_assert_uint_eq(dnsbl_inflight(d), 0);
    /* round 2: listed in one zone */
    dnsbl_round(d, &r, 2000);
    fake_answer(&f, "25.2.0.192.bl.example", DNSBL_R_NXDOMAIN);
    ck_assert_uint_eq(seen.n, 1);
    ck_assert_str_eq(seen.what[0], "listed 192.0.2.25 bl.example");
    e = dnsbl_entry(d, 1);
    ck_assert_int_eq(e->known.status, DNSBL_LISTED);
    ck_assert_int_eq(e->since_ms, 2000);
    /* round 3: still listed: nothing new */
    dnsbl_round(d, &r, 3000);
    fake_answer(&f, "25.2.0.192.bl.example", DNSBL_R_NXDOMAIN);
    ck_assert_uint_eq(seen.n, 1);
    ck_assert_int_eq(dnsbl_entry(d, 1)->since_ms, 2000);
    /* round 4: the resolver fails: unknown, never a delisting */
    dnsbl_round(d, &r, 4000);
    fake_answer(&f, NULL, DNSBL_R_ERROR);
    ck_assert_uint_eq(seen.n, 1);
    ck_assert_uint_eq(seen.errors, 4);
    e = dnsbl_entry(d, 1);
    ck_assert_int_eq(e->known.status, DNSBL_LISTED);
    ck_assert_uint_eq(e->errors, 1);
    ck_assert_ptr_nonnull(strstr(e->last_error, "Timeout"));
    /* a query that cannot start is an error too */
    f.fail = -ENOMEM;
    ck_assert_uint_eq(dnsbl_round(d, &r, 4500), 0);
    ck_assert_uint_eq(seen.errors, 8);
    ck_assert_uint_eq(dnsbl_inflight(d), 0);
    f.fail = 0;
    /* a reload keeps what is known: no second "listed" */
    ck_assert_int_eq(dnsbl_new(&p, &d2), 0);
    dnsbl_carry(d2, d);
    dnsbl_free(d);
    d = d2;
    dnsbl_round(d, &r, 5000);
    fake_answer(&f, "25.2.0.192.bl.example", DNSBL_R_NXDOMAIN);
    ck_assert_uint_eq(seen.n, 1);
    /* round 6: delisted */
    dnsbl_round(d, &r, 6000);
    fake_answer(&f, NULL, DNSBL_R_NXDOMAIN);
    ck_assert_uint_eq(seen.n, 2);
    ck_assert_str_eq(seen.what[1], "delisted 192.0.2.25 bl.example");
    /* an IPv6 listing */
    dnsbl_round(d, &r, 7000);
    fake_answer(&f, "5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.example",
                DNSBL_R_NODATA);
    ck_assert_uint_eq(seen.n, 3);
    ck_assert_str_eq(seen.what[2], "listed 2001:db8::25 zen.example");
    dnsbl_free(d);
}
END_TEST

START_TEST(test_bad_params)
{
    const char *ips[] = { "not-an-ip" };
    const char *zones[] = { "zen.example" };
    struct seen seen = { 0 };
    struct dnsbl_params p = { ips, 1, zones, 1, on_change, NULL, &seen };
    struct dnsbl *d = NULL;

    ck_assert_int_eq(dnsbl_new(&p, &d), -EINVAL);
    p.nips = DNSBL_IPS_MAX + 1;
    ck_assert_int_eq(dnsbl_new(&p, &d), -EINVAL);
}
END_TEST

static Suite *
dnsbl_suite(void)
{
    Suite *s = suite_create("dnsbl");
    TCase *tc = tcase_create("dnsbl");

    tcase_add_test(tc, test_query_names);
    tcase_add_test(tc, test_interpret);
    tcase_add_test(tc, test_changes);
    tcase_add_test(tc, test_bad_params);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(dnsbl_suite());
}
