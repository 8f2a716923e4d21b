#ifndef FLOODGATE_CONFIG_H
#define FLOODGATE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alert.h"
#include "usertable.h"
#include "window.h"

#define CONFIG_RULES_MAX 32 /* one bit each in struct usertable_policy */
#define CONFIG_NAME_MAX  64
#define CONFIG_PATH_MAX  1024
#define CONFIG_LIST_MAX  4096          /* exempt entries, overrides */
#define CONFIG_FILE_MAX  (1024 * 1024) /* config_load() and config_parse() refuse more */

#define CONFIG_ACTION_FREEZE  (1u << 0)
#define CONFIG_ACTION_HOLD    (1u << 1)
#define CONFIG_ACTION_SUSPEND (1u << 2)
#define CONFIG_ACTION_ALERT   (1u << 3)

enum config_mode { CONFIG_MODE_ENFORCE = 0, CONFIG_MODE_MONITOR };
enum config_backend {
    CONFIG_BACKEND_EXIM = 0,
    CONFIG_BACKEND_CPANEL,
    CONFIG_BACKEND_COMMAND,
    CONFIG_BACKEND__MAX
};

/* What a rule measures (the "scope" and "metric" keys decide it). */
enum config_rule_kind {
    CONFIG_RULE_RATE = 0, /* a sliding count or distinct count of one identity */
    CONFIG_RULE_RATIO,    /* fail_ratio, defer_ratio: failed or deferred / recipients */
    CONFIG_RULE_QUEUED,   /* messages of one identity still queued (no Completed yet) */
    CONFIG_RULE_CAMPAIGN, /* scope: campaign: distinct identities sending one campaign key */
    CONFIG_RULE_TRAP,     /* scope: trap: one message to a spam-trap address (traps:) */
};

/* What makes messages one campaign (key: of a campaign rule). */
enum config_campaign_key {
    CONFIG_CAMPAIGN_SUBJECT = 0, /* the normalized subject */
    CONFIG_CAMPAIGN_DOMAINS,     /* the set of remote recipient domains (2 or more) */
};

#define CONFIG_CAMPAIGN_KEYS_DEFAULT 8192
#define CONFIG_CAMPAIGN_MIN_DOMAINS  4
#define CONFIG_CAMPAIGN_FACTOR_DEFAULT 3.0
#define CONFIG_CAMPAIGN_ABOVE_MAX      40 /* lib/campaign counts up to CAMPAIGN_MEMBERS */

struct config_rule {
    char name[CONFIG_NAME_MAX];
    enum usertable_scope scope; /* RATE, RATIO, QUEUED; campaign and trap trips name each
                                 * identity's own scope */
    enum window_metric metric;  /* RATIO: WINDOW_FAILED or WINDOW_DEFERRED */
    int64_t window_ms;          /* QUEUED: unused (0 when not given) */
    uint64_t above;   /* trips when the sliding value is strictly greater */
    uint32_t actions; /* CONFIG_ACTION_* */
    unsigned line;    /* where it was defined, for messages */
    enum config_rule_kind kind;
    double ratio;                    /* RATIO: the fraction "above:" gave (0 < ratio <= 1) */
    uint64_t min;                    /* RATIO: recipients in the window before it counts */
    enum config_campaign_key key;    /* CAMPAIGN */
    double factor;                   /* CAMPAIGN: times the key's baseline; default 3 */
    int64_t learn_ms;                /* CAMPAIGN: no trip this long after the first record;
                                      * default twice the window */
    uint32_t keys;                   /* CAMPAIGN: keys remembered (LRU); default 8192 */
    uint32_t min_domains;            /* CAMPAIGN key domains: sets of at least this many
                                      * distinct domains; default 4 */
};

/* Spam-trap recipients (traps:, traps_file:): lowercased, sorted, unique. */
struct config_traps {
    char **addresses; /* local@domain */
    size_t naddresses;
    char **domains; /* every address of the domain is a trap */
    size_t ndomains;
    char *file; /* traps_file: one address or domain a line; NULL: none */
};

struct config_override {
    char account[CONFIG_NAME_MAX];
    double factor; /* thresholds of this account's identities are multiplied by it */
};

#define CONFIG_DESTS_MAX 16

/*
 * One alert destination (alerts.destinations[i]). The URL and the secrets are credentials
 * (alerting.md A9): never logged, never printed by floodgatectl; zeroed by config_free().
 */
struct config_dest {
    char name[CONFIG_NAME_MAX];     /* [A-Za-z0-9_-], unique; metric label and log name */
    enum alert_dest_type type;      /* slack, webhook, alertmanager */
    char *url;                      /* from "url:" or the first line of "url_file:";
                                     * alertmanager: the base, without one trailing '/'
                                     * (/api/v2/alerts is appended) */
    struct alert_secret secrets[ALERT_SECRETS_MAX]; /* webhook: "secret:"/"secret_file:"
                                                     * (one or two whsec_ keys, new first) */
    size_t nsecrets;
    char *ca_file;                  /* NULL: the system's CA store */
    bool allow_http;                /* http:// accepted, for a loopback host only */
    double rate;                    /* sends per second; default slack 1, webhook 5, am 0 (none) */
    double burst;                   /* default slack 3, webhook 10, am 1 (unused at rate 0) */
    int64_t connect_timeout_ms;     /* default slack 5s, webhook 5s, alertmanager 3s */
    int64_t timeout_ms;             /* default slack 15s, webhook 30s, alertmanager 10s */
    bool individual;                /* webhook: every incident as well as digests (default
                                     * true); false for slack and alertmanager */
    char *generator_url;            /* alertmanager: base of generatorURL, without one
                                     * trailing '/'; NULL: omitted */
    unsigned line;                  /* where it was defined, for messages */
};

/* The alerts: section (alerting.md §5). No destinations: alerting is off. */
struct config_alerts {
    char *host_name;             /* NULL: gethostname() at start */
    uint32_t digest_threshold;   /* incidents sent one by one per window; default 5 */
    int64_t digest_interval_ms;  /* the grouping window; default 60s */
    int64_t followup_ms;         /* "acted" sent at the latest this long after "tripped"; 30s */
    int64_t resend_ms;           /* alertmanager re-send of firing alerts; default 60s */
    int64_t resolved_keep_ms;    /* alertmanager: resolved alerts re-sent this long; 5m */
    int64_t max_age_ms;          /* an undelivered alert expires; default 24h */
    uint32_t max_pending;        /* per destination; default 10000 */
    uint64_t max_bytes;          /* per destination; default 16 MiB */
    struct config_dest *dests;
    size_t ndests;
};

#define CONFIG_REP_IPS_MAX   16  /* lib/dnsbl's DNSBL_IPS_MAX */
#define CONFIG_REP_ZONES_MAX 8   /* lib/dnsbl's DNSBL_ZONES_MAX */
#define CONFIG_REP_ZONE_MAX  179 /* bytes of a zone (lib/dnsbl's DNSBL_ZONE_MAX less the NUL) */

/*
 * The reputation: section: the host's sending addresses looked up in DNS blocklists. Off
 * unless both ips and zones are given.
 */
struct config_reputation {
    char **ips; /* IPv4 or IPv6, normalised (inet_ntop) */
    size_t nips;
    char **zones; /* lower case, without a trailing dot */
    size_t nzones;
    int64_t interval_ms; /* default 15m, at least 1m */
    int64_t timeout_ms;  /* per DNS try; default 5s */
    char *nameserver;    /* "ip:port", "[ip6]:port" or an address; NULL: resolv.conf */
};

/* Parsed and validated configuration; every string is owned by the struct. */
struct config {
    char *path; /* file it came from */
    enum config_mode mode;
    struct config_rule rules[CONFIG_RULES_MAX];
    size_t nrules;
    char **exempt_mailboxes; /* lowercased */
    size_t nexempt_mailboxes;
    char **exempt_accounts;
    size_t nexempt_accounts;
    struct config_override *overrides;
    size_t noverrides;
    int64_t cooldown_ms;     /* default 1h */
    char *userdomains_file;  /* default /etc/userdomains */
    char *localdomains_file; /* default /etc/localdomains */
    char *log_file;          /* default /var/log/exim_mainlog */
    char *state_dir;         /* default /var/lib/floodgate */
    char *audit_log;         /* default /var/log/floodgate/audit.jsonl */
    char *control_socket;    /* default /run/floodgate/ctl.sock */
    char *control_group;     /* members may run read-only floodgatectl commands; NULL: none */
    char *metrics_file;      /* node_exporter textfile (tmp + rename every 15s); NULL: none */
    char *metrics_listen;    /* "127.0.0.1:9567", "[::1]:9567" or "localhost:9567" as
                              * written: 127.0.0.0/8, [::1] or localhost only; NULL: none */
    struct config_alerts alerts;
    struct config_reputation reputation;
    struct config_traps traps;
    uint32_t max_identities; /* default 200000 */
    char *exim_user; /* Exim's own login: "<>" from it is a bounce; NULL (default): any of
                      * Debian-exim, exim, mailnull */

    /* actions */
    enum config_backend backend;   /* default exim */
    char *exim_path;               /* default /usr/sbin/exim */
    char *exim_config;             /* passed as exim -C; NULL (default): /etc/exim_outgoing.conf
                                    * when readable, else none */
    char *spool_dir;               /* default /var/spool/exim */
    char *blocklist_file;          /* exim backend; default /etc/exim/floodgate-blocklist */
    char *whmapi1_path;            /* default /usr/local/cpanel/bin/whmapi1 */
    char *uapi_path;               /* default /usr/local/cpanel/bin/uapi */
    char *command_path;            /* command backend: the operator's executable */
    int64_t action_timeout_ms;     /* default 30s */
    uint32_t freeze_batch;         /* message ids per exim -Mf; default 50 */
    uint32_t max_actions_per_hour; /* circuit breaker; default 100 */
    char **never_hold;             /* logins never held or suspended automatically */
    size_t nnever_hold;
    bool hold_system_logins;       /* false (default): root, uid < 1000 or >= 65534, Exim's
                                    * user and (cpanel) non-cPanel logins are never held or
                                    * suspended automatically */
};

/* Error detail for a person: which file, line and key, and what is wrong. */
struct diag {
    char file[CONFIG_PATH_MAX];
    unsigned line;
    unsigned column;
    char key[CONFIG_NAME_MAX];
    char msg[256];
};

/* Format @d as "file:line:column: key: message" into @buf. */
void diag_format(const struct diag *d, char *buf, size_t size);

/*
 * Parse and validate a whole configuration. @name labels messages. Returns 0 and *ret
 * (owned, config_free()), or -EINVAL (a bad value, unknown key, wrong type, an unreadable
 * or too open url_file/secret_file; *reterr filled when non-NULL), -E2BIG (over
 * CONFIG_FILE_MAX), -ENOMEM. Never returns a half-valid config. The only files it reads
 * are the url_file and secret_file of alert destinations.
 */
int config_parse(const char *buf, size_t len, const char *name, struct config **ret,
                 struct diag *reterr);
/* Read @path and config_parse() it; -errno of open/read is reported in *reterr too. */
int config_load(const char *path, struct config **ret, struct diag *reterr);
/* A config with every default and no rules. */
struct config *config_new_default(void);
void config_free(struct config *c); /* NULL-safe; frees half-built configs too */

/* "exim", "cpanel", "command"; NULL for a value outside the enum. */
const char *config_backend_name(enum config_backend b);

bool config_is_exempt_mailbox(const struct config *c, const char *mailbox);
bool config_is_exempt_account(const struct config *c, const char *account);
/* Is @addr (local@domain, any case) a spam trap: listed, or in a listed domain? */
bool config_is_trap(const struct config *c, const char *addr, size_t len);
/* "rate", ... for messages; the metric name a rule was written with ("fail_ratio", ...). */
const char *config_rule_metric_name(const struct config_rule *r);

/* Threshold factor for an account (1.0 when none). */
double config_factor(const struct config *c, const char *account);

#endif
