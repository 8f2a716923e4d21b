#ifndef FLOODGATE_POLICY_H
#define FLOODGATE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "usertable.h"

#define POLICY_VERDICTS_MAX CONFIG_RULES_MAX

/* One rule that fired for one identity. */
struct policy_verdict {
    size_t rule;           /* index into config->rules */
    const char *rule_name; /* borrowed from the config */
    enum usertable_scope scope;
    uint64_t value;     /* the sliding value that passed the threshold */
    uint64_t threshold; /* after the account's override factor */
    int64_t window_ms;
    uint32_t actions; /* CONFIG_ACTION_* */
};

struct policy;

/*
 * Compile @cfg's rules: one series per distinct (scope, metric, window), shared by rules.
 * Keeps @cfg borrowed for the policy's life. Returns owned, NULL when out of memory or when
 * a scope needs more than USERTABLE_SERIES_MAX series (config_parse() never accepts that).
 */
struct policy *policy_new(const struct config *cfg);
void policy_free(struct policy *p); /* NULL-safe */

/* Fill @ret with the series every identity needs (feed to struct usertable_params). */
void policy_usertable_series(const struct policy *p, struct usertable_params *ret);

/* Index, within the series of its scope, of the series rule @rule reads (for display). */
size_t policy_rule_series(const struct policy *p, size_t rule);

/*
 * Evaluate every sliding-count rule of the entry's scope (ratio rules: policy_eval_ratios), pure in the sense of DESIGN.md: counters,
 * identity and log time in, verdicts out. @account is the identity's account (NULL when
 * unknown), for exemptions and overrides; a mailbox identity is also matched against the
 * mailbox exemptions. A verdict fires once per identity and rule: the rule's bit in the
 * entry's struct usertable_policy is set and stays set until policy_release(); after a
 * release the identity cannot trip again before the cooldown has passed.
 * Returns the number of verdicts written to @ret (at most @max).
 */
size_t policy_eval(const struct policy *p, const struct usertable *t, struct usertable_entry *e,
                   const char *account, int64_t now_ms, struct policy_verdict *ret, size_t max);

/*
 * A verdict decided outside policy_eval(): a QUEUED rule (@value messages still queued), a
 * campaign or a trap hit. Fires when @value is above @threshold, or with
 * POLICY_THRESHOLD_RULE above the rule's "above" times the account's override factor,
 * unless the identity is exempt, in its cooldown, or tripped by the rule already; sets the
 * rule's bit. Returns 1 and *ret, or 0.
 */
#define POLICY_THRESHOLD_RULE UINT64_MAX
int policy_fire(const struct policy *p, struct usertable_entry *e, const char *account, size_t rule,
                uint64_t value, uint64_t threshold, int64_t now_ms, struct policy_verdict *ret);

/* Does @scope have a ratio rule (fail_ratio, defer_ratio)? */
bool policy_has_ratio(const struct policy *p, enum usertable_scope scope);
/*
 * The ratio rules of the entry's scope, each once its recipients reach the rule's min:
 * called when a failure or deferral moved a ratio (an arrival only lowers one).
 */
size_t policy_eval_ratios(const struct policy *p, const struct usertable *t, struct usertable_entry *e,
                          const char *account, int64_t now_ms, struct policy_verdict *ret,
                          size_t max);

/* Clear every trip of the entry and start its cooldown at @now_ms. */
void policy_release(const struct policy *p, struct usertable_entry *e, int64_t now_ms);

#endif
