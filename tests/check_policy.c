/*
 * check_policy.c - rules and counters to verdicts: thresholds, exemptions, overrides,
 * once per identity and rule, release and cooldown, series compilation.
 *
 * policy.c reads the identity table only through usertable_sum(), usertable_entry_scope(),
 * usertable_entry_key() and usertable_entry_policy(); this file defines those four over a
 * fake entry whose series values the test sets directly, so the policy is tested apart
 * from the real table. Configs come from YAML through config_parse().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "config.h"
#include "policy.h"
#include "testrun.h"
#include "usertable.h"
#include "util.h"
#include "window_metric_fallback.h"

/* The fake identity table: values per series index, set by the test. */
struct usertable {
    int64_t last_now_ms;
    unsigned sums; /* how many usertable_sum() calls */
};

struct usertable_entry {
    enum usertable_scope scope;
    char key[USERTABLE_KEY_MAX];
    struct usertable_policy pol;
    uint64_t value[USERTABLE_SERIES_MAX];
};

uint64_t
usertable_sum(const struct usertable *t, const struct usertable_entry *e, size_t idx,
              int64_t now_ms)
{
    struct usertable *mt = (struct usertable *)(uintptr_t)t; /* a fake may count */

    ck_assert_uint_lt(idx, USERTABLE_SERIES_MAX);
    mt->last_now_ms = now_ms;
    mt->sums++;
    return e->value[idx];
}

enum usertable_scope
usertable_entry_scope(const struct usertable_entry *e)
{
    return e->scope;
}

const char *
usertable_entry_key(const struct usertable_entry *e)
{
    return e->key;
}

struct usertable_policy *
usertable_entry_policy(struct usertable_entry *e)
{
    return &e->pol;
}

/*
 * Series: mailbox 0 = (recipients, 10m), 1 = (messages, 1h); script 0 = (messages, 5m);
 * account 0 = (messages, 1h), 1 = (failed, 1h).
 */
static const char policy_yaml[] = "rules:\n"
                                  "  - name: mb-rcpt\n"
                                  "    scope: mailbox\n"
                                  "    metric: recipients\n"
                                  "    window: 10m\n"
                                  "    above: 300\n"
                                  "    actions: [freeze, suspend, alert]\n"
                                  "  - name: mb-msgs\n"
                                  "    scope: mailbox\n"
                                  "    metric: messages\n"
                                  "    window: 1h\n"
                                  "    above: 100\n"
                                  "    actions: [alert]\n"
                                  "  - name: mb-rcpt-high\n"
                                  "    scope: mailbox\n"
                                  "    metric: recipients\n"
                                  "    window: 10m\n"
                                  "    above: 500\n"
                                  "    actions: [alert]\n"
                                  "  - name: script-msgs\n"
                                  "    scope: script\n"
                                  "    metric: messages\n"
                                  "    window: 5m\n"
                                  "    above: 50\n"
                                  "    actions: [freeze, hold, alert]\n"
                                  "  - name: acct-msgs\n"
                                  "    scope: account\n"
                                  "    metric: messages\n"
                                  "    window: 1h\n"
                                  "    above: 500\n"
                                  "    actions: [freeze, hold, alert]\n"
                                  "  - name: acct-failed\n"
                                  "    scope: account\n"
                                  "    metric: failed\n"
                                  "    window: 1h\n"
                                  "    above: 0\n"
                                  "    actions: [alert]\n"
                                  "exempt:\n"
                                  "  mailboxes: [VIP@Example.com]\n"
                                  "  accounts: [reseller1]\n"
                                  "overrides:\n"
                                  "  - account: big\n"
                                  "    factor: 5\n"
                                  "  - account: small\n"
                                  "    factor: 0.5\n"
                                  "  - account: odd\n"
                                  "    factor: 0.3333\n"
                                  "cooldown: 1h\n";

#define R(i) (1u << (i))
#define NOW  1700000000000LL

struct policy_case {
    const char *name;
    enum usertable_scope scope;
    const char *key;
    const char *account;
    uint64_t value[3];
    uint32_t want;       /* rules that fire */
    uint64_t threshold0; /* threshold in the first verdict, 0: not checked */
};

static const struct policy_case cases[] = {
    { "nothing counted", SCOPE_MAILBOX, "a@b.example", "acct", { 0, 0 }, 0, 0 },
    { "at the threshold", SCOPE_MAILBOX, "a@b.example", "acct", { 300, 100 }, 0, 0 },
    { "one over", SCOPE_MAILBOX, "a@b.example", "acct", { 301, 0 }, R(0), 300 },
    { "shared series, both rules",
      SCOPE_MAILBOX,
      "a@b.example",
      "acct",
      { 501, 0 },
      R(0) | R(2),
      300 },
    { "every mailbox rule",
      SCOPE_MAILBOX,
      "a@b.example",
      NULL,
      { 501, 101 },
      R(0) | R(1) | R(2),
      300 },
    { "messages only", SCOPE_MAILBOX, "a@b.example", NULL, { 0, 101 }, R(1), 100 },
    { "huge value", SCOPE_MAILBOX, "a@b.example", NULL, { UINT64_MAX, 0 }, R(0) | R(2), 300 },
    { "exempt mailbox, any case", SCOPE_MAILBOX, "vip@EXAMPLE.com", "acct", { 9999, 9999 }, 0, 0 },
    { "exempt account of a mailbox",
      SCOPE_MAILBOX,
      "x@reseller.example",
      "reseller1",
      { 9999, 9999 },
      0,
      0 },
    { "factor 5, at threshold", SCOPE_MAILBOX, "a@big.example", "big", { 1500, 500 }, 0, 0 },
    { "factor 5, over", SCOPE_MAILBOX, "a@big.example", "big", { 1501, 0 }, R(0), 1500 },
    { "factor 0.5, at threshold", SCOPE_MAILBOX, "a@s.example", "small", { 150, 50 }, 0, 0 },
    { "factor 0.5, over", SCOPE_MAILBOX, "a@s.example", "small", { 151, 51 }, R(0) | R(1), 150 },
    { "factor 0.5 below base",
      SCOPE_MAILBOX,
      "a@s.example",
      "small",
      { 251, 0 },
      R(0) | R(2),
      150 },
    { "factor 0.3333 rounds down", SCOPE_MAILBOX, "a@o.example", "odd", { 100, 0 }, R(0), 99 },
    { "factor 0.3333 at floor", SCOPE_MAILBOX, "a@o.example", "odd", { 99, 34 }, R(1), 33 },
    { "script over", SCOPE_SCRIPT, "joe:/home/joe/public_html/x", "joe", { 51 }, R(3), 50 },
    { "script at threshold", SCOPE_SCRIPT, "joe:/home/joe/public_html/x", "joe", { 50 }, 0, 0 },
    { "script account from key, exempt",
      SCOPE_SCRIPT,
      "reseller1:/home/reseller1/x",
      NULL,
      { 5000 },
      0,
      0 },
    { "script account from key, factor",
      SCOPE_SCRIPT,
      "big:/home/big/x",
      NULL,
      { 251 },
      R(3),
      250 },
    { "script key without account", SCOPE_SCRIPT, "weird", NULL, { 51 }, R(3), 50 },
    { "account over", SCOPE_ACCOUNT, "joe", NULL, { 501, 0 }, R(4), 500 },
    { "account above 0", SCOPE_ACCOUNT, "joe", NULL, { 0, 1 }, R(5), 0 },
    { "account key is the account, exempt",
      SCOPE_ACCOUNT,
      "reseller1",
      NULL,
      { 9999, 9999 },
      0,
      0 },
    { "account key is the account, factor", SCOPE_ACCOUNT, "big", NULL, { 2500, 0 }, 0, 0 },
    { "account factor over", SCOPE_ACCOUNT, "big", NULL, { 2501, 0 }, R(4), 2500 },
    { "explicit account wins over key", SCOPE_ACCOUNT, "big", "joe", { 501, 0 }, R(4), 500 },
};

static struct config *
policy_test_config(const char *yaml)
{
    struct config *c = NULL;
    struct diag d;
    char buf[512];
    int r;

    r = config_parse(yaml, strlen(yaml), "policy.yml", &c, &d);
    diag_format(&d, buf, sizeof(buf));
    ck_assert_msg(r == 0, "%s", buf);
    return c;
}

static void
policy_test_entry(struct usertable_entry *e, enum usertable_scope scope, const char *key)
{
    memset(e, 0, sizeof(*e));
    e->scope = scope;
    (void)snprintf(e->key, sizeof(e->key), "%s", key);
}

static uint32_t
policy_test_mask(const struct policy_verdict *v, size_t n)
{
    uint32_t mask = 0;

    for (size_t i = 0; i < n; i++)
        mask |= R(v[i].rule);
    return mask;
}

START_TEST(test_policy_eval_table)
{
    const struct policy_case *t = &cases[_i];
    struct config *c = policy_test_config(policy_yaml);
    struct policy *p = policy_new(c);
    struct policy_verdict v[POLICY_VERDICTS_MAX];
    struct usertable tab = { 0, 0 };
    struct usertable_entry e;
    size_t n;

    ck_assert_ptr_nonnull(p);
    policy_test_entry(&e, t->scope, t->key);
    memcpy(e.value, t->value, sizeof(t->value));
    n = policy_eval(p, &tab, &e, t->account, NOW, v, N_ELEMS(v));
    ck_assert_msg(policy_test_mask(v, n) == t->want, "%s: fired 0x%x, want 0x%x", t->name,
                  policy_test_mask(v, n), t->want);
    ck_assert_msg(e.pol.tripped == t->want, "%s: tripped 0x%x", t->name, e.pol.tripped);
    for (size_t i = 0; i < n; i++) {
        const struct config_rule *r = &c->rules[v[i].rule];
        ck_assert_msg(i == 0 || v[i].rule > v[i - 1].rule, "%s: order", t->name);
        ck_assert_msg(v[i].rule_name == r->name, "%s: name", t->name);
        ck_assert_msg(v[i].scope == t->scope, "%s: scope", t->name);
        ck_assert_msg(v[i].window_ms == r->window_ms, "%s: window", t->name);
        ck_assert_msg(v[i].actions == r->actions, "%s: actions", t->name);
        ck_assert_msg(v[i].value > v[i].threshold, "%s: value %llu threshold %llu", t->name,
                      (unsigned long long)v[i].value, (unsigned long long)v[i].threshold);
        ck_assert_msg(v[i].value == e.value[policy_rule_series(p, v[i].rule)], "%s: value",
                      t->name);
    }
    if (n > 0 && t->threshold0)
        ck_assert_msg(v[0].threshold == t->threshold0, "%s: threshold %llu, want %llu", t->name,
                      (unsigned long long)v[0].threshold, (unsigned long long)t->threshold0);
    ck_assert_msg(tab.sums == 0 || tab.last_now_ms == NOW, "%s: time", t->name);

    /* monitor mode evaluates the same: the mode matters to lib/action only */
    c->mode = CONFIG_MODE_MONITOR;
    e.pol.tripped = 0;
    n = policy_eval(p, &tab, &e, t->account, NOW, v, N_ELEMS(v));
    ck_assert_msg(policy_test_mask(v, n) == t->want, "%s: monitor", t->name);

    policy_free(p);
    config_free(c);
}
END_TEST

START_TEST(test_policy_once_per_rule)
{
    struct config *c = policy_test_config(policy_yaml);
    struct policy *p = policy_new(c);
    struct policy_verdict v[POLICY_VERDICTS_MAX];
    struct usertable tab = { 0, 0 };
    struct usertable_entry e;

    policy_test_entry(&e, SCOPE_MAILBOX, "a@b.example");
    e.value[0] = 301;
    ck_assert_uint_eq(policy_eval(p, &tab, &e, NULL, NOW, v, N_ELEMS(v)), 1);
    ck_assert_uint_eq(v[0].rule, 0);
    /* still over, and higher: no second verdict for the same rule */
    e.value[0] = 400;
    ck_assert_uint_eq(policy_eval(p, &tab, &e, NULL, NOW + 1000, v, N_ELEMS(v)), 0);
    /* another rule of the same identity still fires, once */
    e.value[0] = 501;
    ck_assert_uint_eq(policy_eval(p, &tab, &e, NULL, NOW + 2000, v, N_ELEMS(v)), 1);
    ck_assert_str_eq(v[0].rule_name, "mb-rcpt-high");
    /* the value dropping below does not clear a trip: only a release does */
    e.value[0] = 0;
    ck_assert_uint_eq(policy_eval(p, &tab, &e, NULL, NOW + 3000, v, N_ELEMS(v)), 0);
    ck_assert_uint_eq(e.pol.tripped, R(0) | R(2));
    e.value[0] = 9999;
    ck_assert_uint_eq(policy_eval(p, &tab, &e, NULL, NOW + 4000, v, N_ELEMS(v)), 0);

    /* another identity is independent */
    struct usertable_entry e2;
    policy_test_entry(&e2, SCOPE_MAILBOX, "c@d.example");
    e2.value[0] = 301;
    ck_assert_uint_eq(policy_eval(p, &tab, &e2, NULL, NOW, v, N_ELEMS(v)), 1);
    policy_free(p);
    config_free(c);
}
END_TEST

START_TEST(test_policy_release_cooldown)
{
    struct config *c = policy_test_config(policy_yaml);
    struct policy *p = policy_new(c);
    struct policy_verdict v[POLICY_VERDICTS_MAX];
    struct usertable tab = { 0, 0 };
    struct usertable_entry e;
    int64_t rel = NOW + 60000;

    policy_test_entry(&e, SCOPE_SCRIPT, "joe:/home/joe/x");
    e.value[0] = 51;
    ck_assert_uint_eq(policy_eval(p, &tab, &e, "joe", NOW, v, N_ELEMS(v)), 1);
    policy_release(p, &e, rel);
    ck_assert_uint_eq(e.pol.tripped, 0);
    ck_assert_int_eq(e.pol.quiet_until_ms, rel + 3600000);
    /* within the cooldown: nothing, and nothing is recorded */
    ck_assert_uint_eq(policy_eval(p, &tab, &e, "joe", rel, v, N_ELEMS(v)), 0);
    ck_assert_uint_eq(policy_eval(p, &tab, &e, "joe", rel + 3599999, v, N_ELEMS(v)), 0);
    ck_assert_uint_eq(e.pol.tripped, 0);
    /* the cooldown has passed: trips again */
    ck_assert_uint_eq(policy_eval(p, &tab, &e, "joe", rel + 3600000, v, N_ELEMS(v)), 1);
    ck_assert_uint_eq(e.pol.tripped, R(3));
    /* release with no trip just starts a cooldown */
    policy_release(p, &e, INT64_MAX - 5);
    ck_assert_int_eq(e.pol.quiet_until_ms, INT64_MAX); /* saturates */
    policy_free(p);
    config_free(c);
}
END_TEST

START_TEST(test_policy_no_cooldown)
{
    struct config *c = policy_test_config("cooldown: 0\nrules:\n"
                                          "  - name: r\n    scope: account\n"
                                          "    metric: messages\n    window: 1m\n"
                                          "    above: 10\n    actions: [alert]\n");
    struct policy *p = policy_new(c);
    struct policy_verdict v[1];
    struct usertable tab = { 0, 0 };
    struct usertable_entry e;

    policy_test_entry(&e, SCOPE_ACCOUNT, "joe");
    e.value[0] = 11;
    ck_assert_uint_eq(policy_eval(p, &tab, &e, NULL, NOW, v, 1), 1);
    policy_release(p, &e, NOW);
    ck_assert_uint_eq(policy_eval(p, &tab, &e, NULL, NOW, v, 1), 1);
    policy_free(p);
    config_free(c);
}
END_TEST

START_TEST(test_policy_max_verdicts)
{
    struct config *c = policy_test_config(policy_yaml);
    struct policy *p = policy_new(c);
    struct policy_verdict v[POLICY_VERDICTS_MAX];
    struct usertable tab = { 0, 0 };
    struct usertable_entry e;

    policy_test_entry(&e, SCOPE_MAILBOX, "a@b.example");
    e.value[0] = 501;
    e.value[1] = 101;
    /* a verdict that does not fit is not recorded: it fires on the next call */
    ck_assert_uint_eq(policy_eval(p, &tab, &e, NULL, NOW, v, 1), 1);
    ck_assert_uint_eq(v[0].rule, 0);
    ck_assert_uint_eq(e.pol.tripped, R(0));
    ck_assert_uint_eq(policy_eval(p, &tab, &e, NULL, NOW, v, 0), 0);
    ck_assert_uint_eq(e.pol.tripped, R(0));
    ck_assert_uint_eq(policy_eval(p, &tab, &e, NULL, NOW, v, 1), 1);
    ck_assert_uint_eq(v[0].rule, 1);
    ck_assert_uint_eq(policy_eval(p, &tab, &e, NULL, NOW, v, N_ELEMS(v)), 1);
    ck_assert_uint_eq(v[0].rule, 2);
    ck_assert_uint_eq(e.pol.tripped, R(0) | R(1) | R(2));
    policy_free(p);
    config_free(c);
}
END_TEST

START_TEST(test_policy_series)
{
    struct config *c = policy_test_config(policy_yaml);
    struct policy *p = policy_new(c);
    struct usertable_params up = { .cap = 7 };

    ck_assert_ptr_nonnull(p);
    policy_usertable_series(p, &up);
    ck_assert_uint_eq(up.cap, 7); /* only the series are written */
    ck_assert_uint_eq(up.nseries[SCOPE_MAILBOX], 2);
    ck_assert_int_eq(up.series[SCOPE_MAILBOX][0].metric, WINDOW_RECIPIENTS);
    ck_assert_int_eq(up.series[SCOPE_MAILBOX][0].window_ms, 600000);
    ck_assert_int_eq(up.series[SCOPE_MAILBOX][1].metric, WINDOW_MESSAGES);
    ck_assert_int_eq(up.series[SCOPE_MAILBOX][1].window_ms, 3600000);
    ck_assert_uint_eq(up.nseries[SCOPE_SCRIPT], 1);
    ck_assert_int_eq(up.series[SCOPE_SCRIPT][0].metric, WINDOW_MESSAGES);
    ck_assert_int_eq(up.series[SCOPE_SCRIPT][0].window_ms, 300000);
    ck_assert_uint_eq(up.nseries[SCOPE_ACCOUNT], 2);
    ck_assert_int_eq(up.series[SCOPE_ACCOUNT][1].metric, WINDOW_FAILED);
    ck_assert_uint_eq(policy_rule_series(p, 0), 0);
    ck_assert_uint_eq(policy_rule_series(p, 1), 1);
    ck_assert_uint_eq(policy_rule_series(p, 2), 0); /* shared with rule 0 */
    ck_assert_uint_eq(policy_rule_series(p, 3), 0);
    ck_assert_uint_eq(policy_rule_series(p, 4), 0);
    ck_assert_uint_eq(policy_rule_series(p, 5), 1);
    policy_free(p);
    config_free(c);
    policy_free(NULL);
}
END_TEST

START_TEST(test_policy_series_overflow)
{
    struct config *c = config_new_default();
    struct policy *p;

    /* config_parse() refuses this; a hand-built config gets NULL, not a corrupt policy */
    c->nrules = USERTABLE_SERIES_MAX + 1;
    for (size_t i = 0; i < c->nrules; i++) {
        (void)snprintf(c->rules[i].name, sizeof(c->rules[i].name), "r%zu", i);
        c->rules[i].scope = SCOPE_ACCOUNT;
        c->rules[i].metric = WINDOW_MESSAGES;
        c->rules[i].window_ms = (int64_t)(i + 1) * 60000;
        c->rules[i].actions = CONFIG_ACTION_ALERT;
    }
    ck_assert_ptr_null(policy_new(c));
    c->nrules = USERTABLE_SERIES_MAX;
    p = policy_new(c);
    ck_assert_ptr_nonnull(p);
    policy_free(p);
    config_free(c);
}
END_TEST

START_TEST(test_policy_threshold_saturates)
{
    struct config *c = policy_test_config("rules:\n"
                                          "  - name: r\n    scope: account\n"
                                          "    metric: messages\n    window: 1m\n"
                                          "    above: 10000000000000000000\n"
                                          "    actions: [alert]\n"
                                          "overrides:\n  - account: big\n    factor: 1000\n");
    struct policy *p = policy_new(c);
    struct policy_verdict v[1];
    struct usertable tab = { 0, 0 };
    struct usertable_entry e;

    policy_test_entry(&e, SCOPE_ACCOUNT, "big");
    e.value[0] = UINT64_MAX; /* cannot be strictly greater than a saturated threshold */
    ck_assert_uint_eq(policy_eval(p, &tab, &e, NULL, NOW, v, 1), 0);
    policy_test_entry(&e, SCOPE_ACCOUNT, "joe");
    e.value[0] = UINT64_MAX;
    ck_assert_uint_eq(policy_eval(p, &tab, &e, NULL, NOW, v, 1), 1);
    ck_assert_uint_eq(v[0].threshold, 10000000000000000000u);
    policy_free(p);
    config_free(c);
}
END_TEST

START_TEST(test_policy_example_config)
{
    struct config *c = NULL;
    struct policy *p;
    struct usertable_params up = { 0 };
    struct diag d;

    ck_assert_int_eq(config_load(FG_FIXTURES_DIR "/../../conf/floodgate.yml", &c, &d), 0);
    p = policy_new(c);
    ck_assert_ptr_nonnull(p);
    policy_usertable_series(p, &up);
    ck_assert_uint_gt(up.nseries[SCOPE_MAILBOX], 0);
    ck_assert_uint_gt(up.nseries[SCOPE_SCRIPT], 0);
    ck_assert_uint_gt(up.nseries[SCOPE_ACCOUNT], 0);
    policy_free(p);
    config_free(c);
}
END_TEST

static Suite *
policy_suite(void)
{
    Suite *s = suite_create("policy");
    TCase *tc;

    tc = tcase_create("eval");
    tcase_add_loop_test(tc, test_policy_eval_table, 0, (int)N_ELEMS(cases));
    tcase_add_test(tc, test_policy_max_verdicts);
    tcase_add_test(tc, test_policy_threshold_saturates);
    suite_add_tcase(s, tc);

    tc = tcase_create("state");
    tcase_add_test(tc, test_policy_once_per_rule);
    tcase_add_test(tc, test_policy_release_cooldown);
    tcase_add_test(tc, test_policy_no_cooldown);
    suite_add_tcase(s, tc);

    tc = tcase_create("compile");
    tcase_add_test(tc, test_policy_series);
    tcase_add_test(tc, test_policy_series_overflow);
    tcase_add_test(tc, test_policy_example_config);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(policy_suite());
}
