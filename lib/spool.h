#ifndef FLOODGATE_SPOOL_H
#define FLOODGATE_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "usertable.h"
#include "util.h"

#define SPOOL_HEADER_READ_MAX 16384 /* bytes of a -H file read: the envelope comes first */

/*
 * The envelope part of an Exim -H spool file (cpanel.md §4.4). Slices borrow the buffer
 * given to spool_parse_header(); absent options are { NULL, 0 }.
 */
struct spool_header {
    struct fg_str id;    /* line 1 without "-H" */
    struct fg_str login; /* line 2: submitting process's login */
    uint32_t uid, gid;
    struct fg_str sender;       /* line 3 without the brackets; empty for bounces */
    int64_t received_s;         /* line 4 */
    struct fg_str auth_id;      /* -auth_id */
    struct fg_str ident;        /* -ident */
    struct fg_str host_address; /* -host_address: present for mail that came over TCP */
    struct fg_str host_auth;    /* -host_auth: the authenticator's driver name */
    bool local;                 /* -local */
    bool frozen;                /* -frozen <epoch> */
    int64_t frozen_s;
    struct fg_str marker; /* ACL variable acl_m_floodgate: set by conf/exim-acl.conf when it
                           * froze the message on arrival: "<hold|suspend> <scope>
                           * <identity, %-encoded> <rule> <reference>" (the blocklist
                           * line's value; older lines have no reference) */
    struct fg_str cwd;    /* ACL variable acl_m_floodgate_cwd: the submitting process's
                           * working directory ($initial_cwd), local submissions only */
};

/*
 * Pure: parse the first lines of a -H file. ACL variables ("-aclm <name> <length>" and the
 * value on the lines after it) are skipped by their length, so a value never reads as an
 * option; Option lines may be written "-name value",
 * "--name value" (tainted) or "--(quoter)name value". @len may cut the file anywhere after
 * the option lines. Returns 0, or -EBADMSG (not a -H file, or cut inside the envelope).
 */
int spool_parse_header(const char *buf, size_t len, struct spool_header *ret);

/*
 * Pure: the Subject: header of a -H file (its header section, after the envelope), unfolded
 * and cut to @size - 1 bytes, raw (an encoded word stays encoded; print it escaped).
 * Returns 0, -ENOENT (no Subject:), -EBADMSG (not a -H file, or cut before the subject).
 */
int spool_header_subject(const char *buf, size_t len, char *out, size_t size);

/*
 * Read the first @size bytes of the -H file of @msgid under @spool_dir, trying
 * input/<id>-H and then input/<6th char of id>/<id>-H (split_spool_directory). Borrows the
 * strings. Returns 0 and *@ret_len, -EINVAL (not a valid message id), -ENOENT (in neither
 * place: the message has left the queue), or another -errno.
 */
int spool_read_header(const char *spool_dir, const char *msgid, char *buf, size_t size,
                      size_t *ret_len);

/* Does @account own mail domain @domain (e.g. /etc/userdomains)? Borrowed arguments. */
typedef bool (*spool_owner_fn)(void *ctx, struct fg_str domain, const char *account);

/*
 * Pure: does the message @h belong to identity (@scope, @id)? (cpanel.md §5, DESIGN.md
 * "Trust".) mailbox: -auth_id equals @id, ignoring case. account: a local submission
 * (-ident equals @id, no -host_address), or -auth_id equals @id, or -auth_id is an address
 * whose domain @owner says @id owns (@owner may be NULL). script ("user:/dir"): as the
 * account "user", and when the ACL recorded the working directory (h->cwd), only if it is
 * "/dir" exactly. Returns true only on a positive match.
 */
bool spool_confirm(const struct spool_header *h, enum usertable_scope scope, const char *id,
                   spool_owner_fn owner, void *owner_ctx);

/*
 * Pure: was @h frozen on arrival by floodgate's ACL on behalf of (@scope, @id), i.e. does
 * h->marker name that identity? (Scripts compare the whole "user:/dir"; mailboxes ignore
 * case.)
 */
bool spool_marker_names(const struct spool_header *h, enum usertable_scope scope, const char *id);

/*
 * Walking the queue: every -H file under <spool_dir>/input, flat and split
 * (input/<c>/), in directory order, a bounded number of files per step so a caller on an
 * event loop can spread a large queue over several iterations. Files that vanish (the
 * message was delivered) or do not parse are skipped. The callback's header borrows the
 * scan's buffer for the call.
 */
struct spool_scan;
typedef void (*spool_scan_fn)(void *ctx, const char *msgid, const struct spool_header *h);

/* Returns 0 and *@ret, -ENOMEM, or -errno opening <spool_dir>/input. */
int spool_scan_open(const char *spool_dir, struct spool_scan **ret);
/* Read up to @max more -H files. Returns 1 (more left), 0 (the walk is complete), -errno. */
int spool_scan_step(struct spool_scan *s, size_t max, spool_scan_fn fn, void *ctx);
/* -H files read so far. */
size_t spool_scan_files(const struct spool_scan *s);
void spool_scan_free(struct spool_scan *s);

#endif
