/*
 * The configuration loader: any bytes as a YAML file (config_parse, the same code
 * config_load runs on a file's contents). A configuration it accepts is whole and usable:
 * rules, lists and destinations within their caps, and the engine builds from it (the
 * daemon would start with it). A refusal names what is wrong. Parsing is deterministic.
 */
#include <errno.h>
#include <string.h>

#include "engine.h"
#include "fuzz.h"

#define ACTIONS_ALL                                                                                \
    (CONFIG_ACTION_FREEZE | CONFIG_ACTION_HOLD | CONFIG_ACTION_SUSPEND | CONFIG_ACTION_ALERT)

static void
check_config(struct config *c)
{
    struct engine_params ep = { .cfg = c };
    struct engine *e = NULL;

    FUZZ_CHECK(c->nrules <= CONFIG_RULES_MAX);
    for (size_t i = 0; i < c->nrules; i++) {
        const struct config_rule *r = &c->rules[i];
        FUZZ_CHECK(memchr(r->name, '\0', sizeof(r->name)) && r->name[0]);
        FUZZ_CHECK((unsigned)r->scope < SCOPE__MAX && (unsigned)r->metric < WINDOW_METRIC__MAX);
        FUZZ_CHECK(r->window_ms > 0 && r->actions != 0 && (r->actions & ~ACTIONS_ALL) == 0);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(c->rules[j].name, r->name) != 0);
    }
    FUZZ_CHECK(c->nexempt_mailboxes <= CONFIG_LIST_MAX && c->nexempt_accounts <= CONFIG_LIST_MAX);
    FUZZ_CHECK(c->noverrides <= CONFIG_LIST_MAX);
    for (size_t i = 0; i < c->nexempt_mailboxes; i++)
        FUZZ_CHECK(config_is_exempt_mailbox(c, c->exempt_mailboxes[i]));
    for (size_t i = 0; i < c->noverrides; i++)
        FUZZ_CHECK(c->overrides[i].factor > 0);
    FUZZ_CHECK(c->alerts.ndests <= CONFIG_DESTS_MAX);
    for (size_t i = 0; i < c->alerts.ndests; i++) {
        const struct config_dest *d = &c->alerts.dests[i];
        FUZZ_CHECK(d->url && d->url[0] && d->name[0]);
        FUZZ_CHECK(d->nsecrets <= ALERT_SECRETS_MAX);
        FUZZ_CHECK(alert_dest_type_name(d->type) != NULL);
    }
    FUZZ_CHECK(config_backend_name(c->backend) != NULL);
    FUZZ_CHECK(c->state_dir && c->log_file && c->exim_path && c->spool_dir);
    /* the engine takes what the loader accepts; a small table keeps the run cheap */
    if (c->max_identities > 1024)
        c->max_identities = 1024;
    FUZZ_CHECK(engine_new(&ep, &e) == 0);
    engine_free(e);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config *c = NULL, *again = NULL;
    struct diag d, d2;
    char msg[1024];
    int r, r2;

    memset(&d, 0, sizeof(d));
    r = config_parse((const char *)data, size, "fuzz.yml", &c, &d);
    FUZZ_CHECK(r == 0 || r == -EINVAL || r == -E2BIG || r == -ENOMEM);
    FUZZ_CHECK((r == 0) == (c != NULL));
    if (r == -EINVAL) {
        FUZZ_CHECK(memchr(d.msg, '\0', sizeof(d.msg)) && d.msg[0]);
        FUZZ_CHECK(memchr(d.key, '\0', sizeof(d.key)) && memchr(d.file, '\0', sizeof(d.file)));
        diag_format(&d, msg, sizeof(msg));
        FUZZ_CHECK(strstr(msg, "fuzz.yml") != NULL);
    }
    memset(&d2, 0, sizeof(d2));
    r2 = config_parse((const char *)data, size, "fuzz.yml", &again, &d2);
    FUZZ_CHECK(r2 == r);
    if (r == -EINVAL)
        FUZZ_CHECK(strcmp(d.msg, d2.msg) == 0 && d.line == d2.line && d.column == d2.column);
    if (r == 0) {
        FUZZ_CHECK(again->nrules == c->nrules && again->alerts.ndests == c->alerts.ndests);
        check_config(c);
    }
    config_free(again);
    config_free(c);
    return 0;
}
