/*
 * check_config.c - YAML to struct config: good files and the exact diag of bad ones.
 *
 * bad[] rows carry the line, column (0: not checked), key path and a piece of the message
 * an operator would see; good[] rows must parse, and the tests after them check values,
 * defaults, lookups and the shipped conf/floodgate.yml.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "config.h"
#include "testrun.h"
#include "util.h"
#include "window_metric_fallback.h"

#define RULE(name, extra)                                                                          \
    "  - name: " name "\n"                                                                         \
    "    scope: mailbox\n"                                                                         \
    "    metric: recipients\n"                                                                     \
    "    window: 10m\n"                                                                            \
    "    above: 300\n"                                                                             \
    "    actions: [freeze, alert]\n" extra

/* A rule whose one line under test follows the fixed lines name..metric (line 5 of file). */
#define RULE_WITH(line)                                                                            \
    "rules:\n"                                                                                     \
    "  - name: r0\n"                                                                               \
    "    scope: mailbox\n"                                                                         \
    "    metric: recipients\n" line

struct config_case {
    const char *name;
    const char *yaml;
    unsigned line;
    unsigned column; /* 0: not checked */
    const char *key;
    const char *msg; /* substring of the message */
    int err;         /* 0: -EINVAL */
};

static const struct config_case bad[] = {
    { "empty file", "", 1, 1, "", "empty file", 0 },
    { "only comments", "# nothing\n\n", 1, 1, "", "empty file", 0 },
    { "top is a scalar", "hello\n", 1, 1, "", "expected a map of settings at the top, got a scalar",
      0 },
    { "top is a list", "- mode\n", 1, 1, "", "got a list", 0 },
    { "syntax: unclosed flow list", "mode: enforce\nrules: [\n", 3, 1, "", "YAML syntax error", 0 },
    { "syntax: bad indentation", "mode: enforce\n  cooldown: 1h\n", 2, 11, "",
      "mapping values are not allowed", 0 },
    { "syntax: tab indentation", "exempt:\n\tmailboxes: []\n", 2, 1, "", "cannot start any token",
      0 },
    { "syntax: invalid utf-8", "mode: enforce\nlog_file: /x\xff\n", 2, 13, "", "YAML syntax error",
      0 },
    { "unknown top key", "mode: enforce\nmoed: monitor\n", 2, 1, "moed", "unknown key 'moed'", 0 },
    { "duplicate top key", "mode: enforce\ncooldown: 1h\nmode: monitor\n", 3, 1, "mode",
      "duplicate key 'mode' (first on line 1)", 0 },
    { "bad mode", "mode: on\n", 1, 7, "mode", "unknown mode 'on'", 0 },
    { "mode is a list", "mode: [enforce]\n", 1, 7, "mode", "expected a scalar, got a list", 0 },
    { "mode is empty", "mode:\n", 1, 0, "mode", "value is empty", 0 },
    { "mode has a NUL", "mode: \"enf\\0orce\"\n", 1, 7, "mode", "NUL byte", 0 },
    { "key is a list", "? [a, b]\n: c\n", 1, 3, "", "keys must be scalars", 0 },
    { "alias", "log_file: &p /var/log/x\nstate_dir: *p\n", 2, 1, "state_dir",
      "anchors and aliases are not supported", 0 },
    { "nested too deep", "rules: [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]\n", 1, 23, "",
      "nested deeper than 16 levels", 0 },
    { "two documents", "mode: enforce\n---\nmode: monitor\n", 3, 1, "",
      "more than one YAML document", 0 },
    { "rules is a map", "rules:\n  name: x\n", 2, 3, "rules", "expected a list, got a map", 0 },
    { "rule is a scalar", "rules:\n  - r0\n", 2, 5, "rules[0]", "expected a map, got a scalar", 0 },
    { "unknown rule key", RULE_WITH("    windw: 10m\n"), 5, 5, "rules[0].windw",
      "unknown key 'windw'", 0 },
    { "duplicate rule key",
      RULE_WITH("    above: 1\n    window: 1m\n    actions: [alert]\n    above: 2\n"), 8, 5,
      "rules[0].above", "duplicate key 'above' (first on line 5)", 0 },
    { "missing window", RULE_WITH("    above: 1\n    actions: [alert]\n"), 2, 5, "rules[0]",
      "missing required key 'window'", 0 },
    { "missing name",
      "rules:\n  - scope: mailbox\n    metric: messages\n    window: 1m\n    above: 1\n"
      "    actions: [alert]\n",
      2, 5, "rules[0]", "missing required key 'name'", 0 },
    { "second rule's window",
      "rules:\n" RULE("r0", "") "  - name: r1\n    scope: account\n    metric: failed\n"
                                "    window: 10x\n",
      11, 13, "rules[1].window", "bad duration '10x'", 0 },
    { "window with no unit or number", RULE_WITH("    window: m\n"), 5, 13, "rules[0].window",
      "bad duration 'm'", 0 },
    { "window negative", RULE_WITH("    window: -5m\n"), 5, 13, "rules[0].window", "bad duration",
      0 },
    { "window zero", RULE_WITH("    window: 0m\n"), 5, 13, "rules[0].window", "greater than zero",
      0 },
    { "window over 7 days", RULE_WITH("    window: 8d\n"), 5, 13, "rules[0].window", "out of range",
      0 },
    { "window just over 7 days", RULE_WITH("    window: 169h\n"), 5, 13, "rules[0].window",
      "out of range", 0 },
    { "window under 1s", RULE_WITH("    window: 500ms\n"), 5, 13, "rules[0].window", "out of range",
      0 },
    { "window overflows", RULE_WITH("    window: 99999999999999999999d\n"), 5, 13,
      "rules[0].window", "bad duration", 0 },
    { "window is a list", RULE_WITH("    window: [10m]\n"), 5, 13, "rules[0].window",
      "expected a scalar, got a list", 0 },
    { "above negative", RULE_WITH("    above: -5\n"), 5, 12, "rules[0].above", "negative", 0 },
    { "above words", RULE_WITH("    above: lots\n"), 5, 12, "rules[0].above",
      "'lots' is not a non-negative integer", 0 },
    { "above fraction", RULE_WITH("    above: 1.5\n"), 5, 12, "rules[0].above",
      "not a non-negative integer", 0 },
    { "above plus sign", RULE_WITH("    above: +5\n"), 5, 12, "rules[0].above",
      "not a non-negative integer", 0 },
    { "above overflows", RULE_WITH("    above: 18446744073709551616\n"), 5, 12, "rules[0].above",
      "out of range", 0 },
    { "above is a map", RULE_WITH("    above: {n: 1}\n"), 5, 12, "rules[0].above",
      "expected a scalar, got a map", 0 },
    { "unknown scope", "rules:\n  - name: r0\n    scope: domain\n", 3, 12, "rules[0].scope",
      "unknown scope 'domain'", 0 },
    { "unknown metric", "rules:\n  - name: r0\n    scope: mailbox\n    metric: bytes\n", 4, 13,
      "rules[0].metric", "unknown metric 'bytes'", 0 },
    { "unknown action", RULE_WITH("    actions: [freeze, delete]\n"), 5, 23, "rules[0].actions[1]",
      "unknown action 'delete'", 0 },
    { "actions is a scalar", RULE_WITH("    actions: freeze\n"), 5, 14, "rules[0].actions",
      "expected a list, got a scalar", 0 },
    { "actions empty", RULE_WITH("    actions: []\n"), 5, 14, "rules[0].actions", "no actions", 0 },
    { "actions null", RULE_WITH("    actions:\n    above: 1\n"), 5, 13, "rules[0].actions",
      "no actions", 0 },
    { "quoted empty is not null", "overrides: \"\"\n", 1, 12, "overrides",
      "expected a list, got a scalar", 0 },
    { "action twice", RULE_WITH("    actions: [alert, alert]\n"), 5, 22, "rules[0].actions[1]",
      "duplicate action 'alert'", 0 },
    { "action is a list", RULE_WITH("    actions: [[alert]]\n"), 5, 15, "rules[0].actions[0]",
      "expected a scalar, got a list", 0 },
    { "duplicate rule name", "rules:\n" RULE("same", "") RULE("same", ""), 8, 5, "rules[1]",
      "duplicate rule name 'same' (first on line 2)", 0 },
    { "rule name with a space", "rules:\n  - name: my rule\n", 2, 11, "rules[0].name",
      "may only hold", 0 },
    { "rule name too long",
      "rules:\n  - name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
      2, 11, "rules[0].name", "longer than 63 bytes", 0 },
    { "rule name starts with a dash", "rules:\n  - name: -r\n", 2, 11, "rules[0].name",
      "may only hold", 0 },
    { "exempt is a list", "exempt: [a]\n", 1, 9, "exempt", "expected a map, got a list", 0 },
    { "exempt unknown key", "exempt:\n  users: [a]\n", 2, 3, "exempt.users", "unknown key 'users'",
      0 },
    { "exempt mailbox without @", "exempt:\n  mailboxes: [a@b.example, nobody]\n", 2, 28,
      "exempt.mailboxes[1]", "'nobody' is not a mailbox", 0 },
    { "exempt mailbox two @", "exempt:\n  mailboxes: [a@b@c]\n", 2, 15, "exempt.mailboxes[0]",
      "not a mailbox", 0 },
    { "exempt mailbox with a space", "exempt:\n  mailboxes: ['a b@c']\n", 2, 15,
      "exempt.mailboxes[0]", "not a mailbox", 0 },
    { "exempt account is a map", "exempt:\n  accounts:\n    - {name: x}\n", 3, 7,
      "exempt.accounts[0]", "expected a scalar, got a map", 0 },
    { "exempt account with a slash", "exempt:\n  accounts: [a/b]\n", 2, 14, "exempt.accounts[0]",
      "not an account name", 0 },
    { "override factor zero", "overrides:\n  - account: big\n    factor: 0\n", 3, 13,
      "overrides[0].factor", "greater than 0", 0 },
    { "override factor 0.0", "overrides:\n  - account: big\n    factor: 0.0\n", 3, 13,
      "overrides[0].factor", "greater than 0", 0 },
    { "override factor negative", "overrides:\n  - account: big\n    factor: -2\n", 3, 13,
      "overrides[0].factor", "not a number", 0 },
    { "override factor exponent", "overrides:\n  - account: big\n    factor: 1e3\n", 3, 13,
      "overrides[0].factor", "not a number", 0 },
    { "override factor too big", "overrides:\n  - account: big\n    factor: 1000001\n", 3, 13,
      "overrides[0].factor", "not a number from 0 to 1000000", 0 },
    { "override missing factor", "overrides:\n  - account: big\n", 2, 5, "overrides[0]",
      "missing required key 'factor'", 0 },
    { "override missing account", "overrides:\n  - factor: 2\n", 2, 5, "overrides[0]",
      "missing required key 'account'", 0 },
    { "override twice",
      "overrides:\n  - account: big\n    factor: 2\n  - account: big\n    factor: 3\n", 4, 5,
      "overrides[1]", "second override for account 'big'", 0 },
    { "override unknown key", "overrides:\n  - account: big\n    factr: 2\n", 3, 5,
      "overrides[0].factr", "unknown key 'factr'", 0 },
    { "overrides is a map", "overrides:\n  big: 2\n", 2, 3, "overrides",
      "expected a list, got a map", 0 },
    { "cooldown words", "cooldown: soon\n", 1, 11, "cooldown", "bad duration 'soon'", 0 },
    { "cooldown over 30 days", "cooldown: 31d\n", 1, 11, "cooldown", "out of range", 0 },
    { "relative log_file", "log_file: var/log/exim_mainlog\n", 1, 11, "log_file",
      "'var/log/exim_mainlog' is not an absolute path", 0 },
    { "relative state_dir", "state_dir: ./state\n", 1, 12, "state_dir", "not an absolute path", 0 },
    { "path with a newline", "audit_log: \"/var/log/a\\nb\"\n", 1, 12, "audit_log",
      "control character", 0 },
    { "max_identities zero", "max_identities: 0\n", 1, 17, "max_identities",
      "out of range (1 to 10000000)", 0 },
    { "max_identities too many", "max_identities: 10000001\n", 1, 17, "max_identities",
      "out of range", 0 },
    { "actions is a list", "actions: [freeze]\n", 1, 10, "actions", "expected a map, got a list",
      0 },
    { "actions unknown key", "actions:\n  backend: exim\n  dry_run: yes\n", 3, 3, "actions.dry_run",
      "unknown key 'dry_run'", 0 },
    { "unknown backend", "actions:\n  backend: postfix\n", 2, 12, "actions.backend",
      "unknown backend 'postfix'", 0 },
    { "relative exim_path", "actions:\n  exim_path: exim\n", 2, 14, "actions.exim_path",
      "not an absolute path", 0 },
    { "relative exim_config", "actions:\n  exim_config: exim.conf\n", 2, 16, "actions.exim_config",
      "not an absolute path", 0 },
    { "relative command", "actions:\n  command: bin/act\n", 2, 12, "actions.command",
      "not an absolute path", 0 },
    { "command backend without command", "actions:\n  backend: command\n", 2, 3, "actions.command",
      "needs actions.command", 0 },
    { "timeout zero", "actions:\n  timeout: 0s\n", 2, 12, "actions.timeout", "greater than zero",
      0 },
    { "timeout over 1h", "actions:\n  timeout: 2h\n", 2, 12, "actions.timeout", "out of range", 0 },
    { "freeze_batch zero", "actions:\n  freeze_batch: 0\n", 2, 17, "actions.freeze_batch",
      "out of range (1 to 500)", 0 },
    { "freeze_batch over 500", "actions:\n  freeze_batch: 501\n", 2, 17, "actions.freeze_batch",
      "out of range (1 to 500)", 0 },
    { "max_per_hour words", "actions:\n  max_per_hour: many\n", 2, 17, "actions.max_per_hour",
      "not a non-negative integer", 0 },
    { "flow map, unknown key", "{mode: enforce, colldown: 1h}\n", 1, 17, "colldown",
      "unknown key 'colldown'", 0 },
};

static const struct config_case good[] = {
    { "one setting", "mode: monitor\n", 0, 0, NULL, NULL, 0 },
    { "document markers", "---\nmode: enforce\n...\n", 0, 0, NULL, NULL, 0 },
    { "empty rules", "rules: []\n", 0, 0, NULL, NULL, 0 },
    { "flow style", "{mode: enforce, rules: [], cooldown: 0}\n", 0, 0, NULL, NULL, 0 },
    { "one rule", "rules:\n" RULE("r0", ""), 0, 0, NULL, NULL, 0 },
    { "window exactly 7 days", RULE_WITH("    window: 168h\n    above: 0\n    actions: [alert]\n"),
      0, 0, NULL, NULL, 0 },
    { "window 1s", RULE_WITH("    window: 1s\n    above: 0\n    actions: [alert]\n"), 0, 0, NULL,
      NULL, 0 },
    { "quoted numbers", RULE_WITH("    window: '10m'\n    above: \"300\"\n    actions: [alert]\n"),
      0, 0, NULL, NULL, 0 },
    { "largest above",
      RULE_WITH("    window: 1m\n    above: 18446744073709551615\n"
                "    actions: [alert]\n"),
      0, 0, NULL, NULL, 0 },
    { "exempt lists empty", "exempt:\n  mailboxes: []\n  accounts: []\n", 0, 0, NULL, NULL, 0 },
    { "backend command", "actions:\n  backend: command\n  command: /usr/local/sbin/act\n", 0, 0,
      NULL, NULL, 0 },
    { "null sections", "rules:\nexempt:\n  mailboxes: ~\n  accounts: null\noverrides:\nactions:\n",
      0, 0, NULL, NULL, 0 },
    { "exempt mailbox punctuation", "exempt:\n  mailboxes: [\"o'brien@x.example\", a+tag@x]\n", 0,
      0, NULL, NULL, 0 },
    { "cooldown zero", "cooldown: 0s\n", 0, 0, NULL, NULL, 0 },
    { "crlf line ends", "mode: monitor\r\ncooldown: 10m\r\n", 0, 0, NULL, NULL, 0 },
};

START_TEST(test_config_parse_bad)
{
    const struct config_case *t = &bad[_i];
    struct config *c = (struct config *)0x1;
    struct diag d;
    int r;

    r = config_parse(t->yaml, strlen(t->yaml), "test.yml", &c, &d);
    ck_assert_msg(r == (t->err ? t->err : -EINVAL), "%s: r=%d", t->name, r);
    ck_assert_msg(c == (struct config *)0x1, "%s: ret written on failure", t->name);
    ck_assert_msg(strcmp(d.file, "test.yml") == 0, "%s: file '%s'", t->name, d.file);
    ck_assert_msg(d.line == t->line, "%s: line %u, want %u (%s)", t->name, d.line, t->line, d.msg);
    ck_assert_msg(t->column == 0 || d.column == t->column, "%s: column %u, want %u (%s)", t->name,
                  d.column, t->column, d.msg);
    ck_assert_msg(strcmp(d.key, t->key) == 0, "%s: key '%s', want '%s' (%s)", t->name, d.key,
                  t->key, d.msg);
    ck_assert_msg(strstr(d.msg, t->msg) != NULL, "%s: message '%s' lacks '%s'", t->name, d.msg,
                  t->msg);
}
END_TEST

START_TEST(test_config_parse_bad_without_diag)
{
    struct config *c = NULL;

    ck_assert_int_eq(config_parse(bad[_i].yaml, strlen(bad[_i].yaml), NULL, &c, NULL),
                     bad[_i].err ? bad[_i].err : -EINVAL);
    ck_assert_ptr_null(c);
}
END_TEST

START_TEST(test_config_parse_good)
{
    const struct config_case *t = &good[_i];
    struct config *c = NULL;
    struct diag d;
    char buf[512];
    int r;

    r = config_parse(t->yaml, strlen(t->yaml), "test.yml", &c, &d);
    diag_format(&d, buf, sizeof(buf));
    ck_assert_msg(r == 0, "%s: r=%d %s", t->name, r, buf);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(c->path, "test.yml");
    config_free(c);
}
END_TEST

/* Build a config with @n rules, rule i reading window (i+1) minutes when @distinct. */
static char *
config_test_many_rules(size_t n, const char *scope, bool distinct)
{
    struct strbuf b;
    char *out;

    strbuf_init(&b, 1 << 20);
    ck_assert_int_eq(strbuf_appends(&b, "rules:\n"), 0);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(strbuf_printf(&b,
                                       "  - name: r%zu\n    scope: %s\n    metric: messages\n"
                                       "    window: %zum\n    above: 1\n    actions: [alert]\n",
                                       i, scope, distinct ? i + 1 : 1),
                         0);
    out = strdup(strbuf_cstr(&b));
    strbuf_done(&b);
    ck_assert_ptr_nonnull(out);
    return out;
}

START_TEST(test_config_rules_max)
{
    struct config *c = NULL;
    struct diag d;
    char *y;

    y = config_test_many_rules(CONFIG_RULES_MAX, "account", false);
    ck_assert_int_eq(config_parse(y, strlen(y), "t", &c, &d), 0);
    ck_assert_uint_eq(c->nrules, CONFIG_RULES_MAX);
    config_free(c);
    free(y);

    c = NULL;
    y = config_test_many_rules(CONFIG_RULES_MAX + 1, "account", false);
    ck_assert_int_eq(config_parse(y, strlen(y), "t", &c, &d), -EINVAL);
    ck_assert_ptr_null(c);
    ck_assert_str_eq(d.key, "rules[32]");
    ck_assert_uint_eq(d.line, 2 + 6 * CONFIG_RULES_MAX);
    ck_assert_ptr_nonnull(strstr(d.msg, "more than 32 rules"));
    free(y);
}
END_TEST

START_TEST(test_config_series_max)
{
    struct config *c = NULL;
    struct diag d;
    char *y;

    y = config_test_many_rules(USERTABLE_SERIES_MAX, "script", true);
    ck_assert_int_eq(config_parse(y, strlen(y), "t", &c, &d), 0);
    config_free(c);
    free(y);

    c = NULL;
    y = config_test_many_rules(USERTABLE_SERIES_MAX + 1, "script", true);
    ck_assert_int_eq(config_parse(y, strlen(y), "t", &c, &d), -EINVAL);
    ck_assert_str_eq(d.key, "rules[16]");
    ck_assert_ptr_nonnull(strstr(d.msg, "more than 16 distinct (metric, window) pairs for scope "
                                        "script"));
    free(y);
}
END_TEST

START_TEST(test_config_values)
{
    static const char y[] =
        "mode: monitor\n"
        "rules:\n" RULE(
            "r0", "") "  - name: script.burst_1\n"
                      "    scope: script\n"
                      "    metric: authfail\n"
                      "    window: 24h\n"
                      "    above: 0\n"
                      "    actions: [suspend, hold, freeze, alert]\n"
                      "exempt:\n"
                      "  mailboxes: [News@BigClient.Example, a@b.example, news@bigclient.example]\n"
                      "  accounts: [reseller1, nobody]\n"
                      "overrides:\n"
                      "  - account: big\n"
                      "    factor: 5\n"
                      "  - account: small\n"
                      "    factor: 0.25\n"
                      "cooldown: 90m\n"
                      "log_file: /var/log/exim/main.log\n"
                      "max_identities: 10000000\n"
                      "actions:\n"
                      "  backend: cpanel\n"
                      "  exim_config: /etc/exim_outgoing.conf\n"
                      "  timeout: 1m\n"
                      "  freeze_batch: 500\n"
                      "  max_per_hour: 7\n";
    struct config *c = NULL;
    struct diag d;

    ck_assert_int_eq(config_parse(y, sizeof(y) - 1, "v.yml", &c, &d), 0);
    ck_assert_int_eq(c->mode, CONFIG_MODE_MONITOR);
    ck_assert_uint_eq(c->nrules, 2);
    ck_assert_str_eq(c->rules[0].name, "r0");
    ck_assert_int_eq(c->rules[0].scope, SCOPE_MAILBOX);
    ck_assert_int_eq(c->rules[0].metric, WINDOW_RECIPIENTS);
    ck_assert_int_eq(c->rules[0].window_ms, 600000);
    ck_assert_uint_eq(c->rules[0].above, 300);
    ck_assert_uint_eq(c->rules[0].actions, CONFIG_ACTION_FREEZE | CONFIG_ACTION_ALERT);
    ck_assert_uint_eq(c->rules[0].line, 3);
    ck_assert_str_eq(c->rules[1].name, "script.burst_1");
    ck_assert_int_eq(c->rules[1].scope, SCOPE_SCRIPT);
    ck_assert_int_eq(c->rules[1].metric, WINDOW_AUTHFAIL);
    ck_assert_int_eq(c->rules[1].window_ms, 86400000);
    ck_assert_uint_eq(c->rules[1].above, 0);
    ck_assert_uint_eq(c->rules[1].actions, CONFIG_ACTION_FREEZE | CONFIG_ACTION_HOLD |
                                               CONFIG_ACTION_SUSPEND | CONFIG_ACTION_ALERT);
    ck_assert_uint_eq(c->rules[1].line, 9);
    /* lowercased, sorted, duplicates merged */
    ck_assert_uint_eq(c->nexempt_mailboxes, 2);
    ck_assert_str_eq(c->exempt_mailboxes[0], "a@b.example");
    ck_assert_str_eq(c->exempt_mailboxes[1], "news@bigclient.example");
    ck_assert_uint_eq(c->nexempt_accounts, 2);
    ck_assert(config_is_exempt_mailbox(c, "NEWS@bigclient.example"));
    ck_assert(config_is_exempt_mailbox(c, "a@b.example"));
    ck_assert(!config_is_exempt_mailbox(c, "a@b.example.org"));
    ck_assert(!config_is_exempt_mailbox(c, ""));
    ck_assert(config_is_exempt_account(c, "reseller1"));
    ck_assert(config_is_exempt_account(c, "nobody"));
    ck_assert(!config_is_exempt_account(c, "reseller"));
    ck_assert_uint_eq(c->noverrides, 2);
    ck_assert(config_factor(c, "big") == 5.0);
    ck_assert(config_factor(c, "small") == 0.25);
    ck_assert(config_factor(c, "other") == 1.0);
    ck_assert(config_factor(c, NULL) == 1.0);
    ck_assert_int_eq(c->cooldown_ms, 90 * 60000);
    ck_assert_str_eq(c->log_file, "/var/log/exim/main.log");
    ck_assert_str_eq(c->state_dir, "/var/lib/floodgate");
    ck_assert_uint_eq(c->max_identities, 10000000);
    ck_assert_int_eq(c->backend, CONFIG_BACKEND_CPANEL);
    ck_assert_int_eq(c->action_timeout_ms, 60000);
    ck_assert_uint_eq(c->freeze_batch, 500);
    ck_assert_uint_eq(c->max_actions_per_hour, 7);
    ck_assert_str_eq(c->exim_config, "/etc/exim_outgoing.conf");
    ck_assert_ptr_null(c->command_path);
    config_free(c);
}
END_TEST

START_TEST(test_config_factor_parse)
{
    static const struct {
        const char *text;
        double want;
    } rows[] = {
        { "5", 5.0 },
        { "0.5", 0.5 },
        { "2.25", 2.25 },
        { "1000000", 1000000.0 },
        { "0.000000001", 1e-9 },
        { "007", 7.0 },
    };

    for (size_t i = 0; i < N_ELEMS(rows); i++) {
        char y[128];
        struct config *c = NULL;
        struct diag d;
        double got;

        (void)snprintf(y, sizeof(y), "overrides:\n  - account: a\n    factor: %s\n", rows[i].text);
        ck_assert_msg(config_parse(y, strlen(y), "f", &c, &d) == 0, "%s: %s", rows[i].text, d.msg);
        got = config_factor(c, "a");
        ck_assert_msg(got > rows[i].want * 0.999999 && got < rows[i].want * 1.000001, "%s: got %g",
                      rows[i].text, got);
        config_free(c);
    }
}
END_TEST

START_TEST(test_config_defaults)
{
    struct config *c = config_new_default();

    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->mode, CONFIG_MODE_ENFORCE);
    ck_assert_uint_eq(c->nrules, 0);
    ck_assert_int_eq(c->cooldown_ms, 3600000);
    ck_assert_str_eq(c->userdomains_file, "/etc/userdomains");
    ck_assert_str_eq(c->localdomains_file, "/etc/localdomains");
    ck_assert_str_eq(c->log_file, "/var/log/exim_mainlog");
    ck_assert_str_eq(c->state_dir, "/var/lib/floodgate");
    ck_assert_str_eq(c->audit_log, "/var/log/floodgate/audit.jsonl");
    ck_assert_str_eq(c->control_socket, "/run/floodgate/ctl.sock");
    ck_assert_uint_eq(c->max_identities, 200000);
    ck_assert_int_eq(c->backend, CONFIG_BACKEND_EXIM);
    ck_assert_str_eq(c->exim_path, "/usr/sbin/exim");
    ck_assert_ptr_null(c->exim_config);
    ck_assert_str_eq(c->spool_dir, "/var/spool/exim");
    ck_assert_str_eq(c->blocklist_file, "/etc/exim/floodgate-blocklist");
    ck_assert_str_eq(c->whmapi1_path, "/usr/local/cpanel/bin/whmapi1");
    ck_assert_str_eq(c->uapi_path, "/usr/local/cpanel/bin/uapi");
    ck_assert_ptr_null(c->command_path);
    ck_assert_int_eq(c->action_timeout_ms, 30000);
    ck_assert_uint_eq(c->freeze_batch, 50);
    ck_assert_uint_eq(c->max_actions_per_hour, 100);
    ck_assert(!config_is_exempt_mailbox(c, "a@b"));
    ck_assert(!config_is_exempt_account(c, "a"));
    ck_assert(config_factor(c, "a") == 1.0);
    config_free(c);
    config_free(NULL);
}
END_TEST

START_TEST(test_config_example_file)
{
    const char *path = FG_FIXTURES_DIR "/../../conf/floodgate.yml";
    struct config *c = NULL;
    struct diag d;
    char buf[512];
    int r;

    r = config_load(path, &c, &d);
    diag_format(&d, buf, sizeof(buf));
    ck_assert_msg(r == 0, "%s", buf);
    ck_assert_int_eq(c->mode, CONFIG_MODE_ENFORCE);
    ck_assert_uint_ge(c->nrules, 8);
    ck_assert_str_eq(c->rules[0].name, "mailbox-recipients-10m");
    ck_assert_uint_eq(c->rules[0].above, 300);
    ck_assert_uint_eq(c->rules[0].actions,
                      CONFIG_ACTION_FREEZE | CONFIG_ACTION_SUSPEND | CONFIG_ACTION_ALERT);
    ck_assert_int_eq(c->backend, CONFIG_BACKEND_EXIM);
    ck_assert_str_eq(c->path, path);
    config_free(c);
}
END_TEST

START_TEST(test_config_load_errors)
{
    char path[] = "/tmp/check_config.XXXXXX";
    struct config *c = NULL;
    struct diag d;
    char *big;
    int fd;

    ck_assert_int_eq(config_load("/nonexistent/floodgate.yml", &c, &d), -ENOENT);
    ck_assert_ptr_null(c);
    ck_assert_str_eq(d.file, "/nonexistent/floodgate.yml");
    ck_assert_uint_eq(d.line, 0);
    ck_assert_ptr_nonnull(strstr(d.msg, "cannot open"));

    ck_assert_int_eq(config_load("/tmp", &c, &d), -EINVAL);
    ck_assert_ptr_nonnull(strstr(d.msg, "not a regular file"));

    /* one byte over the cap, all comment: refused for its size, not parsed */
    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    big = malloc(CONFIG_FILE_MAX + 1);
    ck_assert_ptr_nonnull(big);
    memset(big, '#', CONFIG_FILE_MAX + 1);
    ck_assert_int_eq(write(fd, big, CONFIG_FILE_MAX + 1), CONFIG_FILE_MAX + 1);
    ck_assert_int_eq(config_load(path, &c, &d), -E2BIG);
    ck_assert_ptr_nonnull(strstr(d.msg, "larger than"));
    ck_assert_int_eq(config_parse(big, CONFIG_FILE_MAX + 1, "b", &c, &d), -E2BIG);
    ck_assert_ptr_null(c);

    /* a bad file through config_load reports the path and the line */
    ck_assert_int_eq(ftruncate(fd, 0), 0);
    ck_assert_int_eq(pwrite(fd, "mode: enforce\nmode: x\n", 22, 0), 22);
    ck_assert_int_eq(config_load(path, &c, &d), -EINVAL);
    ck_assert_str_eq(d.file, path);
    ck_assert_uint_eq(d.line, 2);
    free(big);
    (void)close(fd);
    (void)unlink(path);
}
END_TEST

START_TEST(test_config_diag_format)
{
    struct diag d = { .line = 12, .column = 5, .key = "rules[1].window" };
    char buf[256];

    (void)snprintf(d.file, sizeof(d.file), "/etc/floodgate/floodgate.yml");
    (void)snprintf(d.msg, sizeof(d.msg), "bad duration '10x'");
    diag_format(&d, buf, sizeof(buf));
    ck_assert_str_eq(buf, "/etc/floodgate/floodgate.yml:12:5: rules[1].window: bad duration '10x'");
    d.key[0] = '\0';
    diag_format(&d, buf, sizeof(buf));
    ck_assert_str_eq(buf, "/etc/floodgate/floodgate.yml:12:5: bad duration '10x'");
    d.line = 0;
    diag_format(&d, buf, sizeof(buf));
    ck_assert_str_eq(buf, "/etc/floodgate/floodgate.yml: bad duration '10x'");
    diag_format(&d, buf, 10);
    ck_assert_str_eq(buf, "/etc/floo");
}
END_TEST

static Suite *
config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc;

    tc = tcase_create("bad");
    tcase_add_loop_test(tc, test_config_parse_bad, 0, (int)N_ELEMS(bad));
    tcase_add_loop_test(tc, test_config_parse_bad_without_diag, 0, (int)N_ELEMS(bad));
    tcase_add_test(tc, test_config_rules_max);
    tcase_add_test(tc, test_config_series_max);
    suite_add_tcase(s, tc);

    tc = tcase_create("good");
    tcase_add_loop_test(tc, test_config_parse_good, 0, (int)N_ELEMS(good));
    tcase_add_test(tc, test_config_values);
    tcase_add_test(tc, test_config_factor_parse);
    tcase_add_test(tc, test_config_defaults);
    tcase_add_test(tc, test_config_example_file);
    suite_add_tcase(s, tc);

    tc = tcase_create("files");
    tcase_add_test(tc, test_config_load_errors);
    tcase_add_test(tc, test_config_diag_format);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(config_suite());
}
