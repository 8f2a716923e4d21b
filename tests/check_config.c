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
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

#include "config.h"
#include "testdir.h"
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
    { "window over 7 days", RULE_WITH("    window: 8d\n"), 5, 13, "rules[0].window",
      "duration '8d' is out of range (1s to 7d)", 0 },
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
      "too large for a 64-bit count", 0 },
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
    { "max_per_hour zero", "actions:\n  max_per_hour: 0\n", 2, 17, "actions.max_per_hour",
      "out of range (1 to 100000)", 0 },
    { "max_per_hour over 100000", "actions:\n  max_per_hour: 100001\n", 2, 17,
      "actions.max_per_hour", "out of range (1 to 100000)", 0 },
    { "never_hold not a list", "actions:\n  never_hold: root\n", 2, 15, "actions.never_hold",
      "a list", 0 },
    { "never_hold with a bad name", "actions:\n  never_hold: [ok, 'a b']\n", 2, 20,
      "actions.never_hold[1]", "'a b' is not an account name", 0 },
    { "hold_system_logins not a boolean", "actions:\n  hold_system_logins: maybe\n", 2, 23,
      "actions.hold_system_logins", "", 0 },
    { "flow map, unknown key", "{mode: enforce, colldown: 1h}\n", 1, 17, "colldown",
      "unknown key 'colldown'", 0 },
};

static const struct config_case good[] = {
    { "one setting", "mode: monitor\n", 0, 0, NULL, NULL, 0 },
    { "max_per_hour at its maximum (the breaker counts it all)",
      "actions:\n  max_per_hour: 100000\n", 0, 0, NULL, NULL, 0 },
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
                      "  max_per_hour: 7\n"
                      "  never_hold: [cronmail, backup, cronmail]\n"
                      "  hold_system_logins: true\n";
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
    ck_assert_uint_eq(c->nnever_hold, 2); /* sorted, duplicates merged */
    ck_assert_str_eq(c->never_hold[0], "backup");
    ck_assert_str_eq(c->never_hold[1], "cronmail");
    ck_assert(c->hold_system_logins);
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
    ck_assert_int_eq(c->mode, CONFIG_MODE_MONITOR);
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
    ck_assert_int_eq(c->mode, CONFIG_MODE_MONITOR);
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

/* Alerts, metrics and the control group */

#define SLACK_URL  "https://hooks.slack.com/services/T000/B000/XXXXPATHSECRET"
#define SECRET_A   "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SECRET_B   "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define DESTS_HEAD "alerts:\n  destinations:\n"

/* One destination at line 3 with name, type and url on lines 3-5; @line is line 6. */
#define DEST_WITH(type, url, line)                                                                 \
    DESTS_HEAD "    - name: ops\n"                                                                 \
               "      type: " type "\n"                                                            \
               "      url: " url "\n" line
#define SLACK_WITH(line) DEST_WITH("slack", SLACK_URL, line)
#define WEBHOOK_WITH(line)                                                                         \
    DEST_WITH("webhook", "https://siem.example.net/in?token=QUERYSECRET", line)
#define AM_WITH(line) DEST_WITH("alertmanager", "https://am.example.net:9093/", line)

struct config_alert_case {
    const char *name;
    const char *yaml;
    unsigned line;
    const char *key;
    const char *msg;    /* substring of the message */
    const char *hidden; /* must not appear in the formatted diag; NULL: nothing secret */
};

#define D0 "alerts.destinations[0]"

static const struct config_alert_case alert_bad[] = {
    /* the alerts: map */
    { "alerts is a list", "alerts: [a]\n", 1, "alerts", "expected a map, got a list", NULL },
    { "alerts unknown key", "alerts:\n  digest: 5\n", 2, "alerts.digest", "unknown key 'digest'",
      NULL },
    { "digest_threshold zero", "alerts:\n  digest_threshold: 0\n", 2, "alerts.digest_threshold",
      "out of range (1 to 1000)", NULL },
    { "digest_threshold over 1000", "alerts:\n  digest_threshold: 1001\n", 2,
      "alerts.digest_threshold", "out of range", NULL },
    { "digest_interval under 10s", "alerts:\n  digest_interval: 9s\n", 2, "alerts.digest_interval",
      "out of range", NULL },
    { "digest_interval over 1h", "alerts:\n  digest_interval: 61m\n", 2, "alerts.digest_interval",
      "out of range", NULL },
    { "followup zero", "alerts:\n  followup: 0s\n", 2, "alerts.followup", "greater than zero",
      NULL },
    { "followup under 1s", "alerts:\n  followup: 999ms\n", 2, "alerts.followup", "out of range",
      NULL },
    { "followup over 10m", "alerts:\n  followup: 11m\n", 2, "alerts.followup", "out of range",
      NULL },
    { "resend_interval under 10s", "alerts:\n  resend_interval: 5s\n", 2, "alerts.resend_interval",
      "out of range", NULL },
    { "resend_interval over 10m", "alerts:\n  resend_interval: 601s\n", 2, "alerts.resend_interval",
      "out of range", NULL },
    { "resolved_keep under 1m", "alerts:\n  resolved_keep: 59s\n", 2, "alerts.resolved_keep",
      "out of range", NULL },
    { "resolved_keep over 1h", "alerts:\n  resolved_keep: 2h\n", 2, "alerts.resolved_keep",
      "out of range", NULL },
    { "max_age under 1m", "alerts:\n  max_age: 30s\n", 2, "alerts.max_age", "out of range", NULL },
    { "max_age over 7d", "alerts:\n  max_age: 8d\n", 2, "alerts.max_age", "out of range", NULL },
    { "max_pending under 10", "alerts:\n  max_pending: 9\n", 2, "alerts.max_pending",
      "out of range (10 to 1000000)", NULL },
    { "max_pending over 1000000", "alerts:\n  max_pending: 1000001\n", 2, "alerts.max_pending",
      "out of range", NULL },
    { "max_bytes under 64KiB", "alerts:\n  max_bytes: 63KiB\n", 2, "alerts.max_bytes",
      "out of range (64KiB to 1GiB)", NULL },
    { "max_bytes plain under 64KiB", "alerts:\n  max_bytes: 65535\n", 2, "alerts.max_bytes",
      "out of range", NULL },
    { "max_bytes over 1GiB", "alerts:\n  max_bytes: 1025MiB\n", 2, "alerts.max_bytes",
      "out of range", NULL },
    { "max_bytes overflows", "alerts:\n  max_bytes: 99999999999999999999GiB\n", 2,
      "alerts.max_bytes", "out of range", NULL },
    { "max_bytes with MB", "alerts:\n  max_bytes: 16MB\n", 2, "alerts.max_bytes", "bad size '16MB'",
      NULL },
    { "max_bytes with a space", "alerts:\n  max_bytes: 16 MiB\n", 2, "alerts.max_bytes", "bad size",
      NULL },
    { "max_bytes only a unit", "alerts:\n  max_bytes: MiB\n", 2, "alerts.max_bytes", "bad size",
      NULL },
    { "host_name with a space", "alerts:\n  host_name: my host\n", 2, "alerts.host_name",
      "host name 'my host' may only hold", NULL },
    { "host_name starts with a dash", "alerts:\n  host_name: -h\n", 2, "alerts.host_name",
      "may only hold", NULL },
    { "destinations is a map", "alerts:\n  destinations:\n    name: x\n", 3, "alerts.destinations",
      "expected a list, got a map", NULL },
    { "destination is a scalar", DESTS_HEAD "    - ops\n", 3, D0, "expected a map, got a scalar",
      NULL },

    /* a destination's keys */
    { "unknown destination key", SLACK_WITH("      colour: red\n"), 6, D0 ".colour",
      "unknown key 'colour'", "PATHSECRET" },
    { "duplicate destination key", SLACK_WITH("      url: " SLACK_URL "\n"), 6, D0 ".url",
      "duplicate key 'url' (first on line 5)", "PATHSECRET" },
    { "missing name", DESTS_HEAD "    - type: slack\n      url: " SLACK_URL "\n", 3, D0,
      "missing required key 'name'", "PATHSECRET" },
    { "missing type", DESTS_HEAD "    - name: ops\n      url: " SLACK_URL "\n", 3, D0,
      "missing required key 'type'", "PATHSECRET" },
    { "missing url", DESTS_HEAD "    - name: ops\n      type: slack\n", 3, D0,
      "missing required key 'url' (or 'url_file')", NULL },
    { "unknown type", DEST_WITH("teams", SLACK_URL, ""), 4, D0 ".type",
      "unknown destination type 'teams' (slack, webhook or alertmanager)", "PATHSECRET" },
    { "type is a list", DEST_WITH("[slack]", SLACK_URL, ""), 4, D0 ".type",
      "expected a scalar, got a list", "PATHSECRET" },
    { "name with a dot",
      DESTS_HEAD "    - name: ops.slack\n      type: slack\n      url: " SLACK_URL "\n", 3,
      D0 ".name", "destination name 'ops.slack' may only hold letters, digits, '-' and '_'",
      "PATHSECRET" },
    { "name too long",
      DESTS_HEAD "    - name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
                 "      type: slack\n      url: " SLACK_URL "\n",
      3, D0 ".name", "longer than 63 bytes", "PATHSECRET" },
    { "duplicate destination name",
      SLACK_WITH("    - name: ops\n      type: webhook\n      url: https://a.example/x\n"), 6,
      "alerts.destinations[1].name", "duplicate destination name 'ops' (first on line 3)",
      "PATHSECRET" },
    { "url and url_file", SLACK_WITH("      url_file: /etc/floodgate/slack.url\n"), 6,
      D0 ".url_file", "either url or url_file, not both", "PATHSECRET" },
    { "url is a list", DEST_WITH("slack", "[" SLACK_URL "]", ""), 5, D0 ".url",
      "expected a scalar, got a list", "PATHSECRET" },
    { "relative url_file", DESTS_HEAD "    - name: ops\n      type: slack\n      url_file: x.url\n",
      5, D0 ".url_file", "not an absolute path", NULL },
    { "relative ca_file", SLACK_WITH("      ca_file: ca.pem\n"), 6, D0 ".ca_file",
      "not an absolute path", "PATHSECRET" },

    /* keys that do not apply to the type */
    { "secret on slack", SLACK_WITH("      secret: " SECRET_A "\n"), 6, D0 ".secret",
      "'secret' does not apply to type slack", "MfKQ9r8" },
    { "secret_file on alertmanager", AM_WITH("      secret_file: /etc/floodgate/am.secret\n"), 6,
      D0 ".secret_file", "'secret_file' does not apply to type alertmanager", NULL },
    { "secret on alertmanager", AM_WITH("      secret: " SECRET_A "\n"), 6, D0 ".secret",
      "does not apply", "MfKQ9r8" },
    { "individual on slack", SLACK_WITH("      individual: true\n"), 6, D0 ".individual",
      "'individual' does not apply to type slack", "PATHSECRET" },
    { "individual on alertmanager", AM_WITH("      individual: false\n"), 6, D0 ".individual",
      "does not apply", NULL },
    { "generator_url on webhook",
      WEBHOOK_WITH("      generator_url: https://floodgate.example.net/incident\n"), 6,
      D0 ".generator_url", "'generator_url' does not apply to type webhook", "QUERYSECRET" },
    { "generator_url on slack",
      SLACK_WITH("      generator_url: https://floodgate.example.net/incident\n"), 6,
      D0 ".generator_url", "does not apply", "PATHSECRET" },
    { "secret and secret_file",
      WEBHOOK_WITH("      secret: " SECRET_A "\n      secret_file: /etc/floodgate/s\n"), 7,
      D0 ".secret_file", "either secret or secret_file, not both", "MfKQ9r8" },

    /* URLs: the message never quotes the path, the query or a password */
    { "http without allow_http", DEST_WITH("webhook", "http://127.0.0.1:8080/hook/PATHSECRET", ""),
      5, D0 ".url", "URL is http://: set allow_http: true", "PATHSECRET" },
    { "http to a remote host",
      DEST_WITH("webhook", "http://siem.example.net/hook/PATHSECRET", "      allow_http: true\n"),
      5, D0 ".url", "is http:// to siem.example.net: only a loopback host", "PATHSECRET" },
    { "http to 128.0.0.1",
      DEST_WITH("webhook", "http://128.0.0.1/PATHSECRET", "      allow_http: true\n"), 5, D0 ".url",
      "only a loopback host", "PATHSECRET" },
    { "http to a name under 127.0.0.1",
      DEST_WITH("webhook", "http://127.0.0.1.evil.example/PATHSECRET", "      allow_http: true\n"),
      5, D0 ".url", "only a loopback host", "PATHSECRET" },
    { "http to [::2]",
      DEST_WITH("webhook", "http://[::2]:80/PATHSECRET", "      allow_http: true\n"), 5, D0 ".url",
      "only a loopback host", "PATHSECRET" },
    { "userinfo", DEST_WITH("slack", "https://user:PASSWORD@hooks.slack.com/x/PATHSECRET", ""), 5,
      D0 ".url", "must not hold a user name or password", "PASSWORD" },
    { "user only", DEST_WITH("slack", "https://TOKENUSER@hooks.slack.com/x", ""), 5, D0 ".url",
      "user name or password", "TOKENUSER" },
    { "ftp scheme", DEST_WITH("slack", "ftp://hooks.slack.com/PATHSECRET", ""), 5, D0 ".url",
      "URL must start with https://", "PATHSECRET" },
    { "no scheme", DEST_WITH("slack", "hooks.slack.com/services/PATHSECRET", ""), 5, D0 ".url",
      "must start with https://", "PATHSECRET" },
    { "no host", DEST_WITH("slack", "https:///services/PATHSECRET", ""), 5, D0 ".url",
      "URL has no host", "PATHSECRET" },
    { "no host, only a port", DEST_WITH("slack", "https://:443/PATHSECRET", ""), 5, D0 ".url",
      "has no host", "PATHSECRET" },
    { "space in url", DEST_WITH("slack", "'https://hooks.slack.com/services/T0 PATHSECRET'", ""), 5,
      D0 ".url", "contains a space or a control character", "PATHSECRET" },
    { "newline in url", DEST_WITH("slack", "\"https://hooks.slack.com/\\nPATHSECRET\"", ""), 5,
      D0 ".url", "control character", "PATHSECRET" },
    { "bad port", DEST_WITH("slack", "https://hooks.slack.com:99999/PATHSECRET", ""), 5, D0 ".url",
      "bad port", "PATHSECRET" },
    { "port not a number", DEST_WITH("slack", "https://hooks.slack.com:PORTSECRET/x", ""), 5,
      D0 ".url", "bad port", "PORTSECRET" },
    { "host with a percent", DEST_WITH("slack", "https://hooks%2eslack.com/PATHSECRET", ""), 5,
      D0 ".url", "host with characters", "PATHSECRET" },
    { "bad ipv6", DEST_WITH("slack", "https://[::1/PATHSECRET", ""), 5, D0 ".url", "malformed IPv6",
      "PATHSECRET" },
    { "alertmanager with a query",
      DEST_WITH("alertmanager", "https://am.example.net/?token=QUERYSECRET", ""), 5, D0 ".url",
      "an Alertmanager base URL: no query or fragment", "QUERYSECRET" },
    { "allow_http not a boolean", SLACK_WITH("      allow_http: maybe\n"), 6, D0 ".allow_http",
      "'maybe' is not true or false", "PATHSECRET" },
    { "generator_url ftp", AM_WITH("      generator_url: ftp://floodgate.example.net/PATHSECRET\n"),
      6, D0 ".generator_url", "URL must start with https://", "PATHSECRET" },
    { "generator_url with a password",
      AM_WITH("      generator_url: https://u:PASSWORD@floodgate.example.net/\n"), 6,
      D0 ".generator_url", "user name or password", "PASSWORD" },

    /* secrets */
    { "secret not base64", WEBHOOK_WITH("      secret: whsec_not!base64SECRETTEXT\n"), 6,
      D0 ".secret", "secret is not a valid secret (whsec_ and the base64 of 24 to 64 bytes)",
      "SECRETTEXT" },
    { "secret too short", WEBHOOK_WITH("      secret: whsec_dGVzdFNFQ1JFVA==\n"), 6, D0 ".secret",
      "not a valid secret", "dGVzdFNFQ1JFVA" },
    { "secret is a list", WEBHOOK_WITH("      secret: [" SECRET_A "]\n"), 6, D0 ".secret",
      "expected a scalar, got a list", "MfKQ9r8" },
    { "relative secret_file", WEBHOOK_WITH("      secret_file: s.secret\n"), 6, D0 ".secret_file",
      "not an absolute path", "QUERYSECRET" },

    /* rate, burst, timeouts, individual */
    { "rate zero", SLACK_WITH("      rate: 0\n"), 6, D0 ".rate", "rate must be greater than 0",
      "PATHSECRET" },
    { "rate negative", SLACK_WITH("      rate: -1\n"), 6, D0 ".rate", "not a number from 0 to 1000",
      "PATHSECRET" },
    { "rate over 1000", SLACK_WITH("      rate: 1000.5\n"), 6, D0 ".rate",
      "rate 1000.5 is over 1000", "PATHSECRET" },
    { "rate words", AM_WITH("      rate: fast\n"), 6, D0 ".rate", "rate 'fast' is not a number",
      NULL },
    { "burst under 1", WEBHOOK_WITH("      burst: 0.5\n"), 6, D0 ".burst",
      "burst must be at least 1", "QUERYSECRET" },
    { "burst over 1000", WEBHOOK_WITH("      burst: 1001\n"), 6, D0 ".burst",
      "not a number from 0 to 1000", "QUERYSECRET" },
    { "connect_timeout under 100ms", SLACK_WITH("      connect_timeout: 99ms\n"), 6,
      D0 ".connect_timeout", "out of range (100ms to 1m)", "PATHSECRET" },
    { "connect_timeout over 60s", SLACK_WITH("      connect_timeout: 61s\n"), 6,
      D0 ".connect_timeout", "out of range", "PATHSECRET" },
    { "timeout under 1s", SLACK_WITH("      timeout: 999ms\n"), 6, D0 ".timeout",
      "out of range (1s to 2m)", "PATHSECRET" },
    { "timeout over 120s", SLACK_WITH("      timeout: 3m\n"), 6, D0 ".timeout", "out of range",
      "PATHSECRET" },
    { "connect_timeout over the default timeout", SLACK_WITH("      connect_timeout: 20s\n"), 6,
      D0 ".connect_timeout",
      "timeout (15s, the default) is shorter than connect_timeout (20s)", "PATHSECRET" },
    { "timeout under connect_timeout",
      AM_WITH("      timeout: 2s\n      connect_timeout: 2500ms\n"), 6, D0 ".timeout",
      "timeout (2s) is shorter than connect_timeout (2500ms)", NULL },
    { "individual not a boolean", WEBHOOK_WITH("      individual: 1\n"), 6, D0 ".individual",
      "'1' is not true or false", "QUERYSECRET" },

    /* metrics and the control group */
    { "metrics_file relative", "metrics_file: floodgate.prom\n", 1, "metrics_file",
      "not an absolute path", NULL },
    { "metrics_file without .prom", "metrics_file: /var/lib/node/floodgate.txt\n", 1,
      "metrics_file", "must end in .prom", NULL },
    { "metrics_file .prom.tmp", "metrics_file: /var/lib/node/floodgate.prom.tmp\n", 1,
      "metrics_file", "must end in .prom", NULL },
    { "metrics_file only .prom", "metrics_file: /var/lib/node/.prom\n", 1, "metrics_file",
      "must end in .prom", NULL },
    { "metrics_listen on every address", "metrics_listen: 0.0.0.0:9567\n", 1, "metrics_listen",
      "only a loopback address", NULL },
    { "metrics_listen on a LAN address", "metrics_listen: 192.168.1.5:9567\n", 1, "metrics_listen",
      "only a loopback address", NULL },
    { "metrics_listen on [::]", "metrics_listen: '[::]:9567'\n", 1, "metrics_listen",
      "only a loopback address", NULL },
    { "metrics_listen on a name", "metrics_listen: host7.example.net:9567\n", 1, "metrics_listen",
      "only a loopback address", NULL },
    { "metrics_listen short ipv4", "metrics_listen: 127.1:9567\n", 1, "metrics_listen",
      "only a loopback address", NULL },
    /* what the endpoint could not bind at start is refused here */
    { "metrics_listen zero-padded ipv4", "metrics_listen: 127.0.0.01:9567\n", 1,
      "metrics_listen", "only a loopback address", NULL },
    { "metrics_listen LOCALHOST", "metrics_listen: LOCALHOST:9567\n", 1, "metrics_listen",
      "only a loopback address", NULL },
    { "metrics_listen without port", "metrics_listen: 127.0.0.1\n", 1, "metrics_listen",
      "is not host:port", NULL },
    { "metrics_listen ipv6 without port", "metrics_listen: '[::1]9567'\n", 1, "metrics_listen",
      "is not host:port", NULL },
    { "metrics_listen port zero", "metrics_listen: 127.0.0.1:0\n", 1, "metrics_listen",
      "the port must be from 1 to 65535", NULL },
    { "metrics_listen port too big", "metrics_listen: localhost:65536\n", 1, "metrics_listen",
      "the port must be from 1 to 65535", NULL },
    { "metrics_listen port words", "metrics_listen: '[::1]:http'\n", 1, "metrics_listen",
      "the port must be", NULL },
    { "control_group with a space", "control_group: floodgate ro\n", 1, "control_group",
      "group name 'floodgate ro' may only hold", NULL },
    { "control_group with a dash first", "control_group: -ro\n", 1, "control_group",
      "may only hold", NULL },
    { "control_group too long", "control_group: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", 1,
      "control_group", "longer than 32 bytes", NULL },
    { "control_group is a list", "control_group: [wheel]\n", 1, "control_group",
      "expected a scalar, got a list", NULL },
    { "exim_user with a space", "exim_user: Debian exim\n", 1, "exim_user",
      "user name 'Debian exim' may only hold", NULL },
    { "exim_user too long", "exim_user: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", 1, "exim_user",
      "longer than 32 bytes", NULL },
};

START_TEST(test_config_alerts_bad)
{
    const struct config_alert_case *t = &alert_bad[_i];
    struct config *c = NULL;
    struct diag d;
    char buf[1024];
    int r;

    r = config_parse(t->yaml, strlen(t->yaml), "test.yml", &c, &d);
    diag_format(&d, buf, sizeof(buf));
    ck_assert_msg(r == -EINVAL, "%s: r=%d", t->name, r);
    ck_assert_ptr_null(c);
    ck_assert_msg(d.line == t->line, "%s: line %u, want %u (%s)", t->name, d.line, t->line, buf);
    ck_assert_msg(strcmp(d.key, t->key) == 0, "%s: key '%s', want '%s' (%s)", t->name, d.key,
                  t->key, buf);
    ck_assert_msg(strstr(d.msg, t->msg) != NULL, "%s: message '%s' lacks '%s'", t->name, d.msg,
                  t->msg);
    ck_assert_msg(!t->hidden || !strstr(buf, t->hidden), "%s: '%s' leaks '%s'", t->name, buf,
                  t->hidden);
}
END_TEST

static const struct config_case alert_good[] = {
    { "alerts with no destinations", "alerts:\n  digest_threshold: 1\n", 0, 0, NULL, NULL, 0 },
    { "alerts null", "alerts:\n", 0, 0, NULL, NULL, 0 },
    { "destinations null", "alerts:\n  destinations:\n", 0, 0, NULL, NULL, 0 },
    { "http to 127.0.0.1 with allow_http",
      DEST_WITH("webhook", "http://127.0.0.1:8080/hook", "      allow_http: true\n"), 0, 0, NULL,
      NULL, 0 },
    { "http to 127.255.0.9 with allow_http",
      DEST_WITH("webhook", "http://127.255.0.9/hook", "      allow_http: true\n"), 0, 0, NULL, NULL,
      0 },
    { "http to [::1] with allow_http",
      DEST_WITH("alertmanager", "'http://[::1]:9093'", "      allow_http: true\n"), 0, 0, NULL,
      NULL, 0 },
    { "http to localhost with allow_http",
      DEST_WITH("slack", "http://LocalHost:8080/x", "      allow_http: TRUE\n"), 0, 0, NULL, NULL,
      0 },
    { "https with allow_http", SLACK_WITH("      allow_http: true\n"), 0, 0, NULL, NULL, 0 },
    { "https ipv6 literal", DEST_WITH("alertmanager", "'https://[2001:db8::5]:9093'", ""), 0, 0,
      NULL, NULL, 0 },
    { "keys in any order",
      DESTS_HEAD "    - secret: " SECRET_A "\n      url: https://a.example/x\n"
                 "      individual: false\n      type: webhook\n      name: a_b-1\n",
      0, 0, NULL, NULL, 0 },
    { "flow style destination",
      "alerts: {destinations: [{name: x, type: slack, url: 'https://h.example/x'}]}\n", 0, 0, NULL,
      NULL, 0 },
    { "metrics_listen 127.0.0.1", "metrics_listen: 127.0.0.1:9567\n", 0, 0, NULL, NULL, 0 },
    { "metrics_listen 127.1.2.3:1", "metrics_listen: 127.1.2.3:1\n", 0, 0, NULL, NULL, 0 },
    { "metrics_listen [::1]", "metrics_listen: '[::1]:65535'\n", 0, 0, NULL, NULL, 0 },
    { "metrics_listen localhost", "metrics_listen: localhost:9567\n", 0, 0, NULL, NULL, 0 },
    { "control_group", "control_group: floodgate-ro\n", 0, 0, NULL, NULL, 0 },
    { "control_group of 32 bytes", "control_group: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.b\n", 0, 0, NULL,
      NULL, 0 },
    { "max_bytes bounds", "alerts:\n  max_bytes: 64KiB\n", 0, 0, NULL, NULL, 0 },
};

START_TEST(test_config_alerts_good)
{
    const struct config_case *t = &alert_good[_i];
    struct config *c = NULL;
    struct diag d;
    char buf[512];
    int r;

    r = config_parse(t->yaml, strlen(t->yaml), "test.yml", &c, &d);
    diag_format(&d, buf, sizeof(buf));
    ck_assert_msg(r == 0, "%s: r=%d %s", t->name, r, buf);
    config_free(c);
}
END_TEST

static struct config *
config_test_parse_ok(const char *yaml)
{
    struct config *c = NULL;
    struct diag d;
    char buf[1024];
    int r;

    r = config_parse(yaml, strlen(yaml), "test.yml", &c, &d);
    diag_format(&d, buf, sizeof(buf));
    ck_assert_msg(r == 0, "r=%d %s", r, buf);
    return c;
}

static void
config_test_secret_eq(const struct alert_secret *got, const char *text)
{
    struct alert_secret want;

    ck_assert_int_eq(alert_secret_decode(text, &want), 0);
    ck_assert_uint_eq(got->len, want.len);
    ck_assert(memcmp(got->key, want.key, want.len) == 0);
}

START_TEST(test_config_alerts_defaults)
{
    static const char y[] = DESTS_HEAD "    - name: ops-slack\n"
                                       "      type: slack\n"
                                       "      url: " SLACK_URL "\n"
                                       "    - name: siem\n"
                                       "      type: webhook\n"
                                       "      url: https://siem.example.net/in\n"
                                       "    - name: am1\n"
                                       "      type: alertmanager\n"
                                       "      url: https://am1.example.net:9093\n";
    struct config *c = config_new_default();
    const struct config_dest *d;

    /* config_new_default */
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_null(c->control_group);
    ck_assert_ptr_null(c->exim_user);
    ck_assert_ptr_null(c->metrics_file);
    ck_assert_ptr_null(c->metrics_listen);
    ck_assert_ptr_null(c->alerts.host_name);
    ck_assert_uint_eq(c->alerts.digest_threshold, 5);
    ck_assert_int_eq(c->alerts.digest_interval_ms, 60000);
    ck_assert_int_eq(c->alerts.followup_ms, 30000);
    ck_assert_int_eq(c->alerts.resend_ms, 60000);
    ck_assert_int_eq(c->alerts.resolved_keep_ms, 300000);
    ck_assert_int_eq(c->alerts.max_age_ms, 86400000);
    ck_assert_uint_eq(c->alerts.max_pending, 10000);
    ck_assert_uint_eq(c->alerts.max_bytes, 16u * 1024 * 1024);
    ck_assert_ptr_null(c->alerts.dests);
    ck_assert_uint_eq(c->alerts.ndests, 0);
    config_free(c);

    /* parsed: the section's defaults and each type's */
    c = config_test_parse_ok(y);
    ck_assert_uint_eq(c->alerts.digest_threshold, 5);
    ck_assert_int_eq(c->alerts.digest_interval_ms, 60000);
    ck_assert_int_eq(c->alerts.followup_ms, 30000);
    ck_assert_int_eq(c->alerts.resend_ms, 60000);
    ck_assert_int_eq(c->alerts.resolved_keep_ms, 300000);
    ck_assert_int_eq(c->alerts.max_age_ms, 86400000);
    ck_assert_uint_eq(c->alerts.max_pending, 10000);
    ck_assert_uint_eq(c->alerts.max_bytes, 16u * 1024 * 1024);
    ck_assert_uint_eq(c->alerts.ndests, 3);

    d = &c->alerts.dests[0];
    ck_assert_str_eq(d->name, "ops-slack");
    ck_assert_int_eq(d->type, ALERT_DEST_SLACK);
    ck_assert_str_eq(d->url, SLACK_URL);
    ck_assert_uint_eq(d->nsecrets, 0);
    ck_assert_ptr_null(d->ca_file);
    ck_assert(!d->allow_http);
    ck_assert(d->rate == 1.0);
    ck_assert(d->burst == 3.0);
    ck_assert_int_eq(d->connect_timeout_ms, 5000);
    ck_assert_int_eq(d->timeout_ms, 15000);
    ck_assert(!d->individual);
    ck_assert_ptr_null(d->generator_url);
    ck_assert_uint_eq(d->line, 3);

    d = &c->alerts.dests[1];
    ck_assert_str_eq(d->name, "siem");
    ck_assert_int_eq(d->type, ALERT_DEST_WEBHOOK);
    ck_assert_str_eq(d->url, "https://siem.example.net/in");
    ck_assert_uint_eq(d->nsecrets, 0); /* unsigned: allowed */
    ck_assert(d->rate == 5.0);
    ck_assert(d->burst == 10.0);
    ck_assert_int_eq(d->connect_timeout_ms, 5000);
    ck_assert_int_eq(d->timeout_ms, 30000);
    ck_assert(d->individual);
    ck_assert_uint_eq(d->line, 6);

    d = &c->alerts.dests[2];
    ck_assert_str_eq(d->name, "am1");
    ck_assert_int_eq(d->type, ALERT_DEST_ALERTMANAGER);
    ck_assert_str_eq(d->url, "https://am1.example.net:9093");
    ck_assert(d->rate == 0.0);
    ck_assert_int_eq(d->connect_timeout_ms, 3000);
    ck_assert_int_eq(d->timeout_ms, 10000);
    ck_assert(!d->individual);
    ck_assert_ptr_null(d->generator_url);
    config_free(c);
}
END_TEST

START_TEST(test_config_alerts_values)
{
    static const char y[] = "control_group: floodgate-ro\n"
                            "metrics_file: /var/lib/prometheus/node-exporter/floodgate.prom\n"
                            "metrics_listen: '[::1]:9567'\n"
                            "alerts:\n"
                            "  host_name: host7.example.net\n"
                            "  digest_threshold: 1000\n"
                            "  digest_interval: 10s\n"
                            "  followup: 1s\n"
                            "  resend_interval: 10m\n"
                            "  resolved_keep: 1h\n"
                            "  max_age: 7d\n"
                            "  max_pending: 1000000\n"
                            "  max_bytes: 1GiB\n"
                            "  destinations:\n"
                            "    - name: siem\n"
                            "      type: webhook\n"
                            "      url: http://127.0.0.1:8080/in?x=1\n"
                            "      allow_http: true\n"
                            "      secret: " SECRET_B "\n"
                            "      ca_file: /etc/floodgate/ca.pem\n"
                            "      rate: 0.5\n"
                            "      burst: 1\n"
                            "      connect_timeout: 100ms\n"
                            "      timeout: 120s\n"
                            "      individual: false\n"
                            "    - name: am\n"
                            "      type: alertmanager\n"
                            "      url: https://am.example.net:9093/\n"
                            "      rate: 1000\n"
                            "      burst: 1000\n"
                            "      connect_timeout: 60s\n"
                            "      timeout: 60s\n"
                            "      generator_url: https://floodgate.example.net/incident/\n"
                            "exim_user: Debian-exim\n";
    struct config *c = config_test_parse_ok(y);
    const struct config_dest *d;

    ck_assert_str_eq(c->control_group, "floodgate-ro");
    ck_assert_str_eq(c->exim_user, "Debian-exim");
    ck_assert_str_eq(c->metrics_file, "/var/lib/prometheus/node-exporter/floodgate.prom");
    ck_assert_str_eq(c->metrics_listen, "[::1]:9567");
    ck_assert_str_eq(c->alerts.host_name, "host7.example.net");
    ck_assert_uint_eq(c->alerts.digest_threshold, 1000);
    ck_assert_int_eq(c->alerts.digest_interval_ms, 10000);
    ck_assert_int_eq(c->alerts.followup_ms, 1000);
    ck_assert_int_eq(c->alerts.resend_ms, 600000);
    ck_assert_int_eq(c->alerts.resolved_keep_ms, 3600000);
    ck_assert_int_eq(c->alerts.max_age_ms, 7 * 86400000LL);
    ck_assert_uint_eq(c->alerts.max_pending, 1000000);
    ck_assert_uint_eq(c->alerts.max_bytes, 1024u * 1024 * 1024);
    ck_assert_uint_eq(c->alerts.ndests, 2);

    d = &c->alerts.dests[0];
    ck_assert_int_eq(d->type, ALERT_DEST_WEBHOOK);
    ck_assert_str_eq(d->url, "http://127.0.0.1:8080/in?x=1");
    ck_assert(d->allow_http);
    ck_assert_uint_eq(d->nsecrets, 1);
    config_test_secret_eq(&d->secrets[0], SECRET_B);
    ck_assert_uint_eq(d->secrets[0].len, 32);
    ck_assert_str_eq(d->ca_file, "/etc/floodgate/ca.pem");
    ck_assert(d->rate == 0.5);
    ck_assert(d->burst == 1.0);
    ck_assert_int_eq(d->connect_timeout_ms, 100);
    ck_assert_int_eq(d->timeout_ms, 120000);
    ck_assert(!d->individual);
    ck_assert_uint_eq(d->line, 15);

    d = &c->alerts.dests[1];
    ck_assert_int_eq(d->type, ALERT_DEST_ALERTMANAGER);
    ck_assert_str_eq(d->url, "https://am.example.net:9093"); /* one trailing '/' removed */
    ck_assert(d->rate == 1000.0);
    ck_assert(d->burst == 1000.0);
    ck_assert_int_eq(d->connect_timeout_ms, 60000);
    ck_assert_int_eq(d->timeout_ms, 60000);
    ck_assert_str_eq(d->generator_url, "https://floodgate.example.net/incident");
    config_free(c);

    /* sizes in plain bytes and KiB */
    c = config_test_parse_ok("alerts:\n  max_bytes: 65536\n");
    ck_assert_uint_eq(c->alerts.max_bytes, 65536);
    config_free(c);
    c = config_test_parse_ok("alerts:\n  max_bytes: 1048576KiB\n");
    ck_assert_uint_eq(c->alerts.max_bytes, 1024u * 1024 * 1024);
    config_free(c);
}
END_TEST

/* At most CONFIG_DESTS_MAX destinations; URLs of at most 2048 bytes. */
START_TEST(test_config_alerts_limits)
{
    struct config *c = NULL;
    struct strbuf b;
    struct diag d;
    char url[2100];
    char *y;

    strbuf_init(&b, 1 << 20);
    ck_assert_int_eq(strbuf_appends(&b, DESTS_HEAD), 0);
    for (int i = 0; i <= CONFIG_DESTS_MAX; i++)
        ck_assert_int_eq(strbuf_printf(&b,
                                       "    - name: d%d\n      type: webhook\n"
                                       "      url: https://h.example/%d\n",
                                       i, i),
                         0);
    y = strdup(strbuf_cstr(&b));
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(config_parse(y, strlen(y), "t", &c, &d), -EINVAL);
    ck_assert_ptr_null(c);
    ck_assert_str_eq(d.key, "alerts.destinations[16]");
    ck_assert_uint_eq(d.line, 3 + 3 * CONFIG_DESTS_MAX);
    ck_assert_ptr_nonnull(strstr(d.msg, "more than 16 destinations"));
    /* without the last one, all 16 are there */
    y[strlen(y) -
      strlen("    - name: d16\n      type: webhook\n      url: https://h.example/16\n")] = '\0';
    c = config_test_parse_ok(y);
    ck_assert_uint_eq(c->alerts.ndests, CONFIG_DESTS_MAX);
    ck_assert_str_eq(c->alerts.dests[15].name, "d15");
    config_free(c);
    free(y);

    /* a URL of exactly 2048 bytes, then 2049 */
    memset(url, 'a', sizeof(url));
    memcpy(url, "https://h.example/", 18);
    url[2048] = '\0';
    strbuf_reset(&b);
    ck_assert_int_eq(strbuf_printf(&b,
                                   SLACK_WITH("") "    - name: long\n      type: slack\n"
                                                  "      url: %s\n",
                                   url),
                     0);
    c = config_test_parse_ok(strbuf_cstr(&b));
    ck_assert_uint_eq(strlen(c->alerts.dests[1].url), 2048);
    config_free(c);
    url[2048] = 'a';
    url[2049] = '\0';
    strbuf_reset(&b);
    ck_assert_int_eq(strbuf_printf(&b,
                                   SLACK_WITH("") "    - name: long\n      type: slack\n"
                                                  "      url: %s\n",
                                   url),
                     0);
    c = NULL;
    ck_assert_int_eq(config_parse(strbuf_cstr(&b), b.len, "t", &c, &d), -EINVAL);
    ck_assert_str_eq(d.key, "alerts.destinations[1].url");
    ck_assert_uint_eq(d.line, 8);
    ck_assert_ptr_nonnull(strstr(d.msg, "longer than 2048 bytes"));
    ck_assert_ptr_null(strstr(d.msg, "aaaa"));
    strbuf_done(&b);
}
END_TEST

/* url_file and secret_file: real files in a temporary directory. */

static char config_test_dir[256];

static void
config_files_setup(void)
{
    testdir_make(config_test_dir, sizeof(config_test_dir), "check_config");
}

static void
config_files_teardown(void)
{
    testdir_remove(config_test_dir);
}

/* Write @text to @name in the test directory with @mode; returns the path (static). */
static const char *
config_test_file(const char *name, const char *text, mode_t mode)
{
    static char path[512];
    int fd;

    (void)snprintf(path, sizeof(path), "%s/%s", config_test_dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    ck_assert_int_eq(fchmod(fd, mode), 0);
    ck_assert_int_eq(close(fd), 0);
    return path;
}

/* Parse a destination of @type whose line 6 is "<key>: <path>"; 0 or -EINVAL with *d. */
static int
config_test_file_dest(const char *type, const char *key, const char *path, struct config **ret,
                      struct diag *d)
{
    char y[2048];

    if (strcmp(key, "url_file") == 0)
        (void)snprintf(y, sizeof(y),
                       DESTS_HEAD "    - name: ops\n      type: %s\n      allow_http: false\n"
                                  "      url_file: %s\n",
                       type, path);
    else
        (void)snprintf(y, sizeof(y),
                       DESTS_HEAD "    - name: ops\n      type: %s\n      url: https://a.example/\n"
                                  "      %s: %s\n",
                       type, key, path);
    *ret = NULL;
    return config_parse(y, strlen(y), "test.yml", ret, d);
}

/* The diag of a refused file: line 6, the key, a piece of the message, no secret. */
static void
config_test_file_refused(const char *type, const char *key, const char *path, const char *msg,
                         const char *hidden)
{
    struct config *c;
    struct diag d;
    char want[64], buf[1024];

    ck_assert_int_eq(config_test_file_dest(type, key, path, &c, &d), -EINVAL);
    ck_assert_ptr_null(c);
    diag_format(&d, buf, sizeof(buf));
    (void)snprintf(want, sizeof(want), "alerts.destinations[0].%s", key);
    ck_assert_msg(d.line == 6, "line %u: %s", d.line, buf);
    ck_assert_str_eq(d.key, want);
    ck_assert_msg(strstr(d.msg, msg) != NULL, "'%s' lacks '%s'", buf, msg);
    ck_assert_msg(strstr(d.msg, path) != NULL || strstr(msg, "absolute") != NULL ||
                      strstr(msg, "does not apply") != NULL,
                  "'%s' does not name the file", buf);
    ck_assert_msg(!hidden || !strstr(buf, hidden), "'%s' leaks '%s'", buf, hidden);
}

/* Inline credentials (a Slack or webhook URL, a whsec_ key) need a file others cannot read. */
START_TEST(test_config_inline_credentials_mode)
{
    static const struct {
        const char *yml;
        mode_t mode;
        const char *key; /* NULL: accepted */
    } rows[] = {
        { DESTS_HEAD "    - { name: s, type: slack, url: '" SLACK_URL "' }\n", 0600, NULL },
        { DESTS_HEAD "    - { name: s, type: slack, url: '" SLACK_URL "' }\n", 0640, NULL },
        { DESTS_HEAD "    - { name: s, type: slack, url: '" SLACK_URL "' }\n", 0644,
          "alerts.destinations[0].url" },
        { DESTS_HEAD "    - { name: s, type: slack, url: '" SLACK_URL "' }\n", 0660,
          "alerts.destinations[0].url" },
        { DESTS_HEAD "    - { name: w, type: webhook, url: 'https://a.example/h', secret: '" SECRET_A
                     "' }\n",
          0604, "alerts.destinations[0].url" },
        /* an Alertmanager base URL is no credential */
        { DESTS_HEAD "    - { name: a, type: alertmanager, url: 'https://am.example:9093' }\n",
          0644, NULL },
        { "mode: monitor\n", 0644, NULL },
    };
    char buf[1024];

    for (size_t i = 0; i < N_ELEMS(rows); i++) {
        const char *path = config_test_file("inline.yml", rows[i].yml, rows[i].mode);
        struct config *c = NULL;
        struct diag d;
        int r = config_load(path, &c, &d);

        diag_format(&d, buf, sizeof(buf));
        if (!rows[i].key) {
            ck_assert_msg(r == 0, "row %zu: %s", i, buf);
            config_free(c);
            continue;
        }
        ck_assert_msg(r == -EINVAL, "row %zu accepted", i);
        ck_assert_str_eq(d.key, rows[i].key);
        ck_assert_msg(strstr(d.msg, "chmod") && strstr(d.msg, "inline.yml"), "row %zu: %s", i, buf);
        ck_assert_msg(!strstr(buf, "PATHSECRET") && !strstr(buf, SECRET_A), "row %zu leaks: %s", i,
                      buf);
    }
    /* config_parse knows no file mode: the same text is accepted */
    struct config *c = NULL;
    ck_assert_int_eq(config_parse(rows[2].yml, strlen(rows[2].yml), "x.yml", &c, NULL), 0);
    config_free(c);
}
END_TEST

START_TEST(test_config_url_file)
{
    struct config *c;
    struct diag d;
    const char *path;

    /* 0600: the first line, its line end and blanks cut; the rest ignored */
    path = config_test_file("slack.url", SLACK_URL " \r\nsecond line\n", 0600);
    ck_assert_int_eq(config_test_file_dest("slack", "url_file", path, &c, &d), 0);
    ck_assert_str_eq(c->alerts.dests[0].url, SLACK_URL);
    config_free(c);

    /* 0640 (root:floodgate, say) and 0400 are fine; no final newline either */
    path = config_test_file("am.url", "https://am.example.net:9093/", 0640);
    ck_assert_int_eq(config_test_file_dest("alertmanager", "url_file", path, &c, &d), 0);
    ck_assert_str_eq(c->alerts.dests[0].url, "https://am.example.net:9093");
    config_free(c);
    path = config_test_file("ro.url", SLACK_URL "\n", 0400);
    ck_assert_int_eq(config_test_file_dest("slack", "url_file", path, &c, &d), 0);
    config_free(c);

    path = config_test_file("world.url", SLACK_URL "\n", 0644);
    config_test_file_refused("slack", "url_file", path, "has mode 0644", "PATHSECRET");
    path = config_test_file("groupw.url", SLACK_URL "\n", 0620);
    config_test_file_refused("slack", "url_file", path, "has mode 0620", "PATHSECRET");
    path = config_test_file("worldw.url", SLACK_URL "\n", 0602);
    config_test_file_refused("slack", "url_file", path, "has mode 0602", "PATHSECRET");
    path = config_test_file("empty.url", "\nhttps://a.example/\n", 0600);
    config_test_file_refused("slack", "url_file", path, "the first line is empty", NULL);
    path = config_test_file("http.url", "http://hooks.example.net/PATHSECRET\n", 0600);
    config_test_file_refused("webhook", "url_file", path, "the URL in", "PATHSECRET");
    config_test_file_refused("webhook", "url_file", path, "set allow_http: true", "PATHSECRET");
    path = config_test_file("zero.url", "", 0600);
    config_test_file_refused("slack", "url_file", path, "the first line is empty", NULL);

    /* missing, a directory, too large */
    {
        char missing[512], big[5000];

        (void)snprintf(missing, sizeof(missing), "%s/missing.url", config_test_dir);
        config_test_file_refused("slack", "url_file", missing, "cannot read", NULL);
        config_test_file_refused("slack", "url_file", config_test_dir, "not a regular file", NULL);
        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        path = config_test_file("big.url", big, 0600);
        config_test_file_refused("slack", "url_file", path, "larger than 4096 bytes", NULL);
    }
}
END_TEST

START_TEST(test_config_secret_file)
{
    struct config *c;
    struct diag d;
    const char *path;

    /* one key */
    path = config_test_file("one.secret", SECRET_A "\n", 0600);
    ck_assert_int_eq(config_test_file_dest("webhook", "secret_file", path, &c, &d), 0);
    ck_assert_uint_eq(c->alerts.dests[0].nsecrets, 1);
    config_test_secret_eq(&c->alerts.dests[0].secrets[0], SECRET_A);
    config_free(c);

    /* a rotation: the new key first, the old one second; CRLF and blank lines are fine */
    path = config_test_file("two.secret", SECRET_B "\r\n\n" SECRET_A "\n\n", 0600);
    ck_assert_int_eq(config_test_file_dest("webhook", "secret_file", path, &c, &d), 0);
    ck_assert_uint_eq(c->alerts.dests[0].nsecrets, 2);
    config_test_secret_eq(&c->alerts.dests[0].secrets[0], SECRET_B);
    config_test_secret_eq(&c->alerts.dests[0].secrets[1], SECRET_A);
    config_free(c);

    path = config_test_file("bad.secret", SECRET_A "\nwhsec_BADKEYTEXT\n", 0600);
    config_test_file_refused("webhook", "secret_file", path, "line 2 of", "BADKEYTEXT");
    config_test_file_refused("webhook", "secret_file", path, "is not a valid secret", "MfKQ9r8");
    path = config_test_file("three.secret", SECRET_A "\n" SECRET_B "\n" SECRET_A "\n", 0600);
    config_test_file_refused("webhook", "secret_file", path, "more than 2 keys", "MfKQ9r8");
    path = config_test_file("blank.secret", "\n\n", 0600);
    config_test_file_refused("webhook", "secret_file", path, "holds no secret", NULL);
    path = config_test_file("world.secret", SECRET_A "\n", 0644);
    config_test_file_refused("webhook", "secret_file", path, "has mode 0644", "MfKQ9r8");
    path = config_test_file("group.secret", SECRET_A "\n", 0620);
    config_test_file_refused("webhook", "secret_file", path, "has mode 0620", "MfKQ9r8");
    config_test_file_refused("webhook", "secret_file", "/nonexistent/floodgate.secret",
                             "cannot read /nonexistent/floodgate.secret", NULL);
    config_test_file_refused("webhook", "secret_file", "relative.secret", "not an absolute path",
                             NULL);
    /* the file is named, but a slack destination may not have one at all */
    path = config_test_file("slack.secret", SECRET_A "\n", 0600);
    config_test_file_refused("slack", "secret_file", path, "does not apply", "MfKQ9r8");
}
END_TEST


/* reputation: the host's addresses in DNS blocklists */

static const struct config_alert_case rep_bad[] = {
    { "ips without zones", "reputation:\n  ips: [192.0.2.25]\n", 2, "reputation",
      "no zones", NULL },
    { "zones without ips", "reputation:\n  zones: [zen.spamhaus.org]\n", 2, "reputation",
      "no ips", NULL },
    { "ip not an address", "reputation:\n  ips: [mail.example.com]\n  zones: [z.example]\n", 2,
      "reputation.ips[0]", "'mail.example.com' is not an IPv4 or IPv6 address", NULL },
    { "ip short form", "reputation:\n  ips: [127.1]\n  zones: [z.example]\n", 2,
      "reputation.ips[0]", "not an IPv4 or IPv6 address", NULL },
    { "ip twice", "reputation:\n  ips: [192.0.2.1, 192.0.2.1]\n  zones: [z.example]\n", 2,
      "reputation.ips[1]", "listed twice", NULL },
    { "ipv6 twice", "reputation:\n  ips: ['2001:db8::1', '2001:DB8:0::1']\n  zones: [z.example]\n",
      2, "reputation.ips[1]", "'2001:db8::1' is listed twice", NULL },
    { "zone with a space", "reputation:\n  ips: [192.0.2.1]\n  zones: ['zen spamhaus.org']\n", 3,
      "reputation.zones[0]", "may only hold labels", NULL },
    { "zone empty label", "reputation:\n  ips: [192.0.2.1]\n  zones: [zen..org]\n", 3,
      "reputation.zones[0]", "empty label", NULL },
    { "zone leading dot", "reputation:\n  ips: [192.0.2.1]\n  zones: [.zen.org]\n", 3,
      "reputation.zones[0]", "empty label", NULL },
    { "interval under 1m", "reputation:\n  interval: 59s\n", 2, "reputation.interval",
      "out of range (1m to 1d)", NULL },
    { "timeout over 30s", "reputation:\n  timeout: 31s\n", 2, "reputation.timeout",
      "out of range", NULL },
    { "nameserver a name", "reputation:\n  nameserver: dns.example:53\n", 2,
      "reputation.nameserver", "not an address with an optional port", NULL },
    { "nameserver port 0", "reputation:\n  nameserver: 127.0.0.1:0\n", 2,
      "reputation.nameserver", "the port must be from 1 to 65535", NULL },
    { "nameserver v6 without brackets and port", "reputation:\n  nameserver: '[::1]53'\n", 2,
      "reputation.nameserver", "not an address", NULL },
    { "unknown key", "reputation:\n  lists: [z.example]\n", 2, "reputation.lists",
      "unknown key 'lists'", NULL },
    { "too many ips",
      "reputation:\n  zones: [z.example]\n  ips: [10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4, "
      "10.0.0.5, 10.0.0.6, 10.0.0.7, 10.0.0.8, 10.0.0.9, 10.0.0.10, 10.0.0.11, 10.0.0.12, "
      "10.0.0.13, 10.0.0.14, 10.0.0.15, 10.0.0.16, 10.0.0.17]\n",
      3, "reputation.ips[16]", "more than 16 entries", NULL },
};

START_TEST(test_config_reputation_bad)
{
    const struct config_alert_case *t = &rep_bad[_i];
    struct config *c = NULL;
    struct diag d;
    char buf[1024];
    int r;

    r = config_parse(t->yaml, strlen(t->yaml), "test.yml", &c, &d);
    diag_format(&d, buf, sizeof(buf));
    ck_assert_msg(r == -EINVAL, "%s: r=%d", t->name, r);
    ck_assert_ptr_null(c);
    ck_assert_msg(d.line == t->line, "%s: line %u, want %u (%s)", t->name, d.line, t->line, buf);
    ck_assert_msg(strcmp(d.key, t->key) == 0, "%s: key '%s', want '%s' (%s)", t->name, d.key,
                  t->key, buf);
    ck_assert_msg(strstr(d.msg, t->msg) != NULL, "%s: message '%s' lacks '%s'", t->name, d.msg,
                  t->msg);
}
END_TEST

/* Signals across identities: campaign, trap, queued and ratio rules; traps: and traps_file: */

#define CAMPAIGN_RULE(extra)                                                                       \
    "rules:\n  - {name: c, scope: campaign, metric: identities, window: 30m, above: 8, "         \
    "actions: [alert]" extra "}\n"

static const struct config_case signal_bad[] = {
    { "campaign metric", "rules:\n  - {name: c, scope: campaign, metric: messages, window: 30m, "
                         "above: 8, actions: [alert]}\n",
      2, 0, "metric", "scope campaign counts identities", 0 },
    { "identities without campaign", "rules:\n  - {name: c, scope: mailbox, metric: identities, "
                                     "window: 30m, above: 8, actions: [alert]}\n",
      2, 0, "metric", "needs scope: campaign", 0 },
    { "campaign above too high", "rules:\n  - {name: c, scope: campaign, metric: identities, "
                                 "window: 30m, above: 41, actions: [alert]}\n",
      2, 0, "rules[0].above", "out of range", 0 },
    { "campaign without window", "rules:\n  - {name: c, scope: campaign, metric: identities, "
                                 "above: 8, actions: [alert]}\n",
      2, 0, "rules[0]", "missing required key 'window'", 0 },
    { "campaign key unknown", CAMPAIGN_RULE(", key: body"), 2, 0, "rules[0].key",
      "unknown campaign key 'body'", 0 },
    { "campaign factor under 1", CAMPAIGN_RULE(", factor: 0.5"), 2, 0, "rules[0].factor",
      "at least 1", 0 },
    { "campaign keys too few", CAMPAIGN_RULE(", keys: 3"), 2, 0, "rules[0].keys", "out of range",
      0 },
    { "min_domains on a subject key", CAMPAIGN_RULE(", min_domains: 3"), 2, 0, "rules[0]",
      "key 'min_domains' does not apply to a campaign rule", 0 },
    { "min on a campaign", CAMPAIGN_RULE(", min: 3"), 2, 0, "rules[0]",
      "key 'min' does not apply", 0 },
    { "ratio above 1", "rules:\n  - {name: r, scope: mailbox, metric: fail_ratio, window: 1h, "
                       "above: 1.5, min: 50, actions: [alert]}\n",
      2, 0, "rules[0].above", "is over 1", 0 },
    { "ratio above words", "rules:\n  - {name: r, scope: mailbox, metric: defer_ratio, window: 1h, "
                           "above: half, actions: [alert]}\n",
      2, 0, "rules[0].above", "not a number", 0 },
    { "ratio min zero", "rules:\n  - {name: r, scope: mailbox, metric: fail_ratio, window: 1h, "
                        "above: 0.3, min: 0, actions: [alert]}\n",
      2, 0, "rules[0].min", "out of range", 0 },
    { "min on a count", "rules:\n  - {name: r, scope: mailbox, metric: messages, window: 1h, "
                        "above: 3, min: 5, actions: [alert]}\n",
      2, 0, "rules[0]", "key 'min' does not apply to a messages rule", 0 },
    { "queued above fraction", "rules:\n  - {name: q, scope: mailbox, metric: queued, above: 0.5, "
                               "actions: [alert]}\n",
      2, 0, "rules[0].above", "not a non-negative integer", 0 },
    { "trap with above", "rules:\n  - {name: t, scope: trap, above: 1, actions: [alert]}\n"
                         "traps: {addresses: [t@x.example]}\n",
      2, 0, "rules[0]", "no metric, window or above", 0 },
    { "trap rule without traps", "rules:\n  - {name: t, scope: trap, actions: [alert]}\n", 2, 0,
      "traps", "list no address or domain", 0 },
    { "traps without a rule", "traps:\n  domains: [trap.example]\n", 0, 0, "traps",
      "no rule has scope: trap", 0 },
    { "trap address without @", "rules:\n  - {name: t, scope: trap, actions: [alert]}\n"
                                "traps:\n  addresses: [trap.example]\n",
      4, 0, "traps.addresses[0]", "is not an address", 0 },
    { "trap domain with @", "rules:\n  - {name: t, scope: trap, actions: [alert]}\n"
                            "traps:\n  domains: [a@trap.example]\n",
      4, 0, "traps.domains[0]", "is not a domain", 0 },
    { "traps unknown key", "traps:\n  hosts: [x]\n", 2, 0, "traps.hosts", "unknown key", 0 },
    { "traps_file relative", "traps_file: traps.txt\n", 1, 0, "traps_file",
      "not an absolute path", 0 },
    { "traps_file missing", "rules:\n  - {name: t, scope: trap, actions: [alert]}\n"
                            "traps_file: /nonexistent/floodgate-traps\n",
      0, 0, "traps_file", "No such file", 0 },
};

static const char *const signal_good[] = {
    CAMPAIGN_RULE(""),
    CAMPAIGN_RULE(", key: domains, min_domains: 3, factor: 2.5, learn: 0s, keys: 1024"),
    "rules:\n  - {name: r, scope: mailbox, metric: fail_ratio, window: 1h, above: 0.3, min: 50, "
    "actions: [alert]}\n  - {name: d, scope: script, metric: defer_ratio, window: 1h, "
    "above: 1, actions: [alert]}\n",
    "rules:\n  - {name: q, scope: account, metric: queued, above: 200, actions: [freeze]}\n",
    "rules:\n  - {name: t, scope: trap, actions: [freeze, hold]}\n"
    "traps:\n  addresses: [a@trap.example]\n  domains: [trap.example]\n",
};

START_TEST(test_config_signals_bad)
{
    const struct config_case *t = &signal_bad[_i];
    struct config *c = NULL;
    struct diag d;
    int r = config_parse(t->yaml, strlen(t->yaml), "test.yml", &c, &d);

    ck_assert_msg(r == -EINVAL, "%s: r=%d", t->name, r);
    ck_assert_ptr_null(c);
    ck_assert_msg(d.line == t->line, "%s: line %u, want %u (%s)", t->name, d.line, t->line, d.msg);
    ck_assert_msg(strcmp(d.key, t->key) == 0, "%s: key '%s', want '%s' (%s)", t->name, d.key,
                  t->key, d.msg);
    ck_assert_msg(strstr(d.msg, t->msg) != NULL, "%s: message '%s' lacks '%s'", t->name, d.msg,
                  t->msg);
}
END_TEST

START_TEST(test_config_reputation_values)
{
    static const char yaml[] = "reputation:\n"
                               "  ips: [192.0.2.25, '2001:DB8:0:0::25']\n"
                               "  zones: [Zen.Spamhaus.org., bl.spamcop.net]\n"
                               "  interval: 1m\n"
                               "  timeout: 2s\n"
                               "  nameserver: 127.0.0.1:5353\n";
    struct config *c = NULL;
    struct diag d;

    c = config_new_default();
    ck_assert_int_eq(c->reputation.interval_ms, 900000);
    ck_assert_int_eq(c->reputation.timeout_ms, 5000);
    ck_assert_uint_eq(c->reputation.nips, 0);
    ck_assert_ptr_null(c->reputation.nameserver);
    config_free(c);
    c = NULL;
    ck_assert_int_eq(config_parse(yaml, strlen(yaml), "test.yml", &c, &d), 0);
    ck_assert_uint_eq(c->reputation.nips, 2);
    ck_assert_str_eq(c->reputation.ips[0], "192.0.2.25");
    ck_assert_str_eq(c->reputation.ips[1], "2001:db8::25");
    ck_assert_uint_eq(c->reputation.nzones, 2);
    ck_assert_str_eq(c->reputation.zones[0], "zen.spamhaus.org");
    ck_assert_str_eq(c->reputation.zones[1], "bl.spamcop.net");
    ck_assert_int_eq(c->reputation.interval_ms, 60000);
    ck_assert_int_eq(c->reputation.timeout_ms, 2000);
    ck_assert_str_eq(c->reputation.nameserver, "127.0.0.1:5353");
    config_free(c);
    static const char *const ns[] = { "[::1]:53", "::1", "192.0.2.53" };
    for (size_t i = 0; i < N_ELEMS(ns); i++) {
        char buf[128];
        (void)snprintf(buf, sizeof(buf), "reputation:\n  nameserver: '%s'\n", ns[i]);
        c = NULL;
        ck_assert_msg(config_parse(buf, strlen(buf), "test.yml", &c, &d) == 0, "%s: %s", ns[i],
                      d.msg);
        config_free(c);
    }
}
END_TEST

START_TEST(test_config_signals_good)
{
    struct config *c = NULL;
    struct diag d;
    char buf[512];
    int r = config_parse(signal_good[_i], strlen(signal_good[_i]), "test.yml", &c, &d);

    diag_format(&d, buf, sizeof(buf));
    ck_assert_msg(r == 0, "case %d: %s", _i, buf);
    config_free(c);
}
END_TEST

START_TEST(test_config_signals_values)
{
    static const char yaml[] =
        CAMPAIGN_RULE("") "  - {name: cd, scope: campaign, metric: identities, key: domains, "
                          "window: 10m, above: 5, factor: 2.5, learn: 1h, actions: [freeze]}\n"
                          "  - {name: r, scope: mailbox, metric: defer_ratio, window: 1h, "
                          "above: 0.25, min: 40, actions: [alert]}\n"
                          "  - {name: q, scope: mailbox, metric: queued, above: 30, "
                          "actions: [alert]}\n";
    struct config *c = NULL;
    struct diag d;

    ck_assert_int_eq(config_parse(yaml, strlen(yaml), "test.yml", &c, &d), 0);
    ck_assert_int_eq(c->rules[0].kind, CONFIG_RULE_CAMPAIGN);
    ck_assert_int_eq(c->rules[0].key, CONFIG_CAMPAIGN_SUBJECT);
    ck_assert_double_eq(c->rules[0].factor, 3.0);
    ck_assert_int_eq(c->rules[0].learn_ms, 2 * 30 * 60000);
    ck_assert_uint_eq(c->rules[0].keys, CONFIG_CAMPAIGN_KEYS_DEFAULT);
    ck_assert_uint_eq(c->rules[1].min_domains, CONFIG_CAMPAIGN_MIN_DOMAINS);
    ck_assert_int_eq(c->rules[1].key, CONFIG_CAMPAIGN_DOMAINS);
    ck_assert_double_eq(c->rules[1].factor, 2.5);
    ck_assert_int_eq(c->rules[1].learn_ms, 3600000);
    ck_assert_int_eq(c->rules[2].kind, CONFIG_RULE_RATIO);
    ck_assert_int_eq(c->rules[2].metric, WINDOW_DEFERRED);
    ck_assert_double_eq(c->rules[2].ratio, 0.25);
    ck_assert_uint_eq(c->rules[2].min, 40);
    ck_assert_str_eq(config_rule_metric_name(&c->rules[2]), "defer_ratio");
    ck_assert_int_eq(c->rules[3].kind, CONFIG_RULE_QUEUED);
    ck_assert_uint_eq(c->rules[3].above, 30);
    ck_assert_int_eq(c->rules[3].window_ms, 0);
    ck_assert_str_eq(config_rule_metric_name(&c->rules[3]), "queued");
    config_free(c);
}
END_TEST

/* A ratio rule needs the recipients series too: it counts against USERTABLE_SERIES_MAX. */
START_TEST(test_config_signals_ratio_series)
{
    char yaml[4096];
    size_t n = (size_t)snprintf(yaml, sizeof(yaml), "rules:\n");
    struct config *c = NULL;
    struct diag d;

    for (int i = 0; i < USERTABLE_SERIES_MAX / 2; i++)
        n += (size_t)snprintf(yaml + n, sizeof(yaml) - n,
                              "  - {name: r%d, scope: mailbox, metric: fail_ratio, window: %dm, "
                              "above: 0.5, actions: [alert]}\n",
                              i, i + 1);
    ck_assert_int_eq(config_parse(yaml, n, "test.yml", &c, &d), 0);
    config_free(c);
    (void)snprintf(yaml + n, sizeof(yaml) - n,
                   "  - {name: last, scope: mailbox, metric: messages, window: 99m, above: 5, "
                   "actions: [alert]}\n");
    ck_assert_int_eq(config_parse(yaml, strlen(yaml), "test.yml", &c, &d), -EINVAL);
    ck_assert_ptr_nonnull(strstr(d.msg, "distinct (metric, window) pairs"));
}
END_TEST

START_TEST(test_config_traps_file)
{
    char yaml[1024];
    const char *path;
    struct config *c = NULL;
    struct diag d;

    path = config_test_file("traps", "# spam traps\n\nbait@Trap.example  # planted 2024\n"
                                     "  honeypot.example\nbait@trap.example\n",
                            0644);
    (void)snprintf(yaml, sizeof(yaml),
                   "rules:\n  - {name: t, scope: trap, actions: [alert]}\n"
                   "traps: {addresses: [x@y.example]}\ntraps_file: %s\n",
                   path);
    ck_assert_int_eq(config_parse(yaml, strlen(yaml), "test.yml", &c, &d), 0);
    ck_assert_uint_eq(c->traps.naddresses, 2); /* sorted, case folded, duplicates dropped */
    ck_assert_str_eq(c->traps.addresses[0], "bait@trap.example");
    ck_assert_uint_eq(c->traps.ndomains, 1);
    ck_assert(config_is_trap(c, "BAIT@trap.EXAMPLE", 17));
    ck_assert(config_is_trap(c, "anyone@honeypot.example", 23));
    ck_assert(config_is_trap(c, "x@y.example", 11));
    ck_assert(!config_is_trap(c, "bait@trap.example.com", 21));
    ck_assert(!config_is_trap(c, "bait@trap.exampl", 16));
    ck_assert(!config_is_trap(c, "a@sub.honeypot.example", 22));
    config_free(c);

    /* a bad line names the file and its line */
    path = config_test_file("traps", "ok@trap.example\n\nbad address@x\n", 0644);
    (void)snprintf(yaml, sizeof(yaml),
                   "rules:\n  - {name: t, scope: trap, actions: [alert]}\ntraps_file: %s\n", path);
    ck_assert_int_eq(config_parse(yaml, strlen(yaml), "test.yml", &c, &d), -EINVAL);
    ck_assert_str_eq(d.file, path);
    ck_assert_uint_eq(d.line, 3);
    ck_assert_ptr_nonnull(strstr(d.msg, "holds a space"));
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

    tc = tcase_create("alerts");
    tcase_add_loop_test(tc, test_config_alerts_bad, 0, (int)N_ELEMS(alert_bad));
    tcase_add_loop_test(tc, test_config_alerts_good, 0, (int)N_ELEMS(alert_good));
    tcase_add_test(tc, test_config_alerts_defaults);
    tcase_add_test(tc, test_config_alerts_values);
    tcase_add_test(tc, test_config_alerts_limits);
    suite_add_tcase(s, tc);

    tc = tcase_create("reputation");
    tcase_add_loop_test(tc, test_config_reputation_bad, 0, (int)N_ELEMS(rep_bad));
    tcase_add_test(tc, test_config_reputation_values);
    suite_add_tcase(s, tc);

    tc = tcase_create("credential_files");
    tcase_add_checked_fixture(tc, config_files_setup, config_files_teardown);
    tcase_add_test(tc, test_config_url_file);
    tcase_add_test(tc, test_config_secret_file);
    tcase_add_test(tc, test_config_inline_credentials_mode);
    suite_add_tcase(s, tc);

    tc = tcase_create("signals");
    tcase_add_checked_fixture(tc, config_files_setup, config_files_teardown);
    tcase_add_loop_test(tc, test_config_signals_bad, 0, (int)N_ELEMS(signal_bad));
    tcase_add_loop_test(tc, test_config_signals_good, 0, (int)N_ELEMS(signal_good));
    tcase_add_test(tc, test_config_signals_values);
    tcase_add_test(tc, test_config_signals_ratio_series);
    tcase_add_test(tc, test_config_traps_file);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return testrun_suite(config_suite());
}
