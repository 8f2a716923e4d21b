#ifndef FLOODGATE_ATTRIB_H
#define FLOODGATE_ATTRIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eximlog.h"
#include "siphash.h"
#include "usertable.h"

#define ATTRIB_ACCOUNT_MAX 64   /* cPanel user names are at most 16; 64 leaves room */
#define ATTRIB_CWD_SLOTS   64   /* pending cwd= records waiting for their arrival */
#define ATTRIB_CWD_TTL_MS  5000 /* a cwd= record older than this is not tied to an arrival */
#define ATTRIB_DOMAINS_MAX                                                                         \
    512 /* recipient domains hashed per message; distinct counts                                   \
           saturate far below (WINDOW_DISTINCT_MAX) */

/* struct attrib_result.flags */
#define ATTRIB_OUTBOUND   (1u << 0) /* counts toward send limits */
#define ATTRIB_BOUNCE     (1u << 1) /* null sender: bounce or notice from this host */
#define ATTRIB_SERVICE    (1u << 2) /* cPanel service sender (__cpanel__service__...) */
#define ATTRIB_INBOUND    (1u << 3) /* from a remote host without authentication */
#define ATTRIB_LOCAL_ONLY (1u << 4) /* every recipient is in a local domain */
#define ATTRIB_MISMATCH   (1u << 5) /* envelope sender differs from the authenticated mailbox */
#define ATTRIB_NOBODY     (1u << 6) /* submitted by the web server user (U=nobody) */
#define ATTRIB_SCRIPT     (1u << 7) /* tied to a cwd= record: script identity set */
#define ATTRIB_NULL_SENDER                                                                         \
    (1u << 8) /* "<>" that is not a bounce: authenticated, or a user's local submission */
#define ATTRIB_CWD_FORGED (1u << 9)  /* the tied cwd= record had swallowed lines (injection) */
#define ATTRIB_WEB_HOME                                                                            \
    (1u << 10) /* web server mail (ATTRIB_NOBODY) counted for the account whose home holds the  \
                  directory it ran in */

/* The logins web servers run PHP as on a shared host (mod_php/DSO, no per-user PHP). */
#define ATTRIB_WEB_USERS "nobody", "apache", "www-data"

/* Exim's own users when exim_user is not configured (Debian, RHEL, cPanel). */
#define ATTRIB_EXIM_USERS_DEFAULT "Debian-exim", "exim", "mailnull"

/*
 * Domain maps from cPanel's /etc/userdomains ("domain: user") and /etc/localdomains (one
 * domain per line). Pure once loaded; lookups are case-insensitive and strip "www.".
 */
struct attrib_maps;

struct attrib_maps *attrib_maps_new(const uint8_t key[SIPHASH_KEY_LEN]);
void attrib_maps_free(struct attrib_maps *m);
/*
 * Add the lines of a userdomains file (@owners true: "domain: user") or a localdomains
 * file (@owners false: "domain"). Borrows @buf. Returns the number of domains added, or
 * -EBADMSG with *@ret_line set to the first malformed line, or -ENOMEM. The "*: nobody"
 * catch-all line is ignored (an unknown owner stays unknown).
 */
int attrib_maps_add(struct attrib_maps *m, const char *buf, size_t len, bool owners,
                    unsigned *ret_line);
/* Owner account of @domain, or NULL. Borrowed while @m lives. */
const char *attrib_maps_owner(const struct attrib_maps *m, struct fg_str domain);
/* True when @domain is delivered on this host (in either file). */
bool attrib_maps_is_local(const struct attrib_maps *m, struct fg_str domain);
size_t attrib_maps_count(const struct attrib_maps *m);
/* True when @login owns a domain in the userdomains map (a cPanel account). */
bool attrib_maps_is_account(const struct attrib_maps *m, const char *login);

/*
 * A login as a mailbox identity: lowercased, cPanel's user+domain / user%domain /
 * user:domain forms (the first of + % :) written user@domain. Writes @buf (NUL-terminated)
 * and returns the length, or 0 when it does not fit in @size.
 */
size_t attrib_mailbox_norm(struct fg_str set_id, char *buf, size_t size);

/* The identities one arrival counts against; empty strings mean "none". */
struct attrib_result {
    uint32_t flags;
    char mailbox[USERTABLE_KEY_MAX];
    char account[ATTRIB_ACCOUNT_MAX];
    char script[USERTABLE_KEY_MAX];
    uint32_t remote_rcpts; /* recipients outside the local domains */
    uint32_t ndomains;     /* their domains, hashed with the maps' key (repeats included) */
    uint64_t domains[ATTRIB_DOMAINS_MAX];
};

/* Per-stream attribution state: cwd= records waiting for their arrival. */
struct attrib_cwd {
    bool used;
    bool has_pid;
    uint32_t pid;
    bool forged; /* it swallowed lines (EXIM_F_CWD_FORGED / EXIM_F_ABSORBED) */
    int64_t ts_ms;
    size_t len;
    char dir[USERTABLE_KEY_MAX];
};

struct attrib {
    struct attrib_cwd cwd[ATTRIB_CWD_SLOTS];
    size_t next;            /* round-robin slot to reuse */
    uint64_t cwd_unmatched; /* cwd= submissions that never met their arrival */
    uint64_t keys_too_long; /* identities refused: over USERTABLE_KEY_MAX */
    uint64_t cwd_argc;      /* cwd= records whose args count did not match: never tied */
    const char *exim_user;  /* Exim's own login (bounces); NULL: ATTRIB_EXIM_USERS_DEFAULT.
                               Borrowed (the engine's config) */
};

void attrib_init(struct attrib *a);

/*
 * Remember a cwd= submission record so the arrival of the same process can use it. An
 * overflowed cwd= record (EXIM_F_OVERFLOW, ev->cwd set) still names its directory; one
 * whose args count does not match (EXIM_F_CWD_ARGC) is never tied to an arrival.
 */
void attrib_note_cwd(struct attrib *a, const struct exim_event *ev);

/*
 * The account a cwd= directory belongs to: USER of /home/USER/... (or /homeN/USER/...),
 * written to @buf; 0 when the directory is not under a home tree. Pure.
 */
size_t attrib_home_owner(struct fg_str dir, char *buf, size_t size);

/*
 * The directory of the newest pending cwd= record of @pid's process (any when !@has_pid),
 * not consumed; an empty slice when none.
 */
struct fg_str attrib_peek_cwd(const struct attrib *a, bool has_pid, uint32_t pid);

/* True when @login is Exim's own user (a->exim_user or the defaults). */
bool attrib_is_exim_user(const struct attrib *a, struct fg_str login);
/* True for a login web servers run PHP as (ATTRIB_WEB_USERS). */
bool attrib_is_web_user(struct fg_str login);

/*
 * Attribute an arrival (DESIGN.md "Attribution"): mailbox from A=<auth>:<set_id>
 * (lowercased, cPanel's user+domain / user%domain / user:domain forms mapped to
 * user@domain), account from U= for local submissions or else the owner of the mailbox's
 * domain, script = account:cwd from the tied cwd= record. Bounces, cPanel service senders,
 * unauthenticated mail from remote hosts and mail to local domains only are not outbound.
 * Pure given @m. Returns 1 when the arrival is outbound, 0 when not (flags say why).
 */
int attrib_arrival(struct attrib *a, const struct attrib_maps *m, const struct exim_event *ev,
                   struct attrib_result *ret);

#endif
