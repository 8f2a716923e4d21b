#ifndef FLOODGATE_EXIMLOG_H
#define FLOODGATE_EXIMLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Exim never writes an entry longer than 8192 bytes (exim-log-format.md 1.2). */
#define EXIMLOG_RECORD_MAX 8192

enum exim_type {
    EXIM_OTHER = 0,  /* a record type we do not count (daemon start, warnings, ...) */
    EXIM_ARRIVAL,    /* <= (and (= fakereject, flagged) */
    EXIM_DELIVERY,   /* => -> *> >> */
    EXIM_DEFER,      /* == */
    EXIM_FAIL,       /* ** */
    EXIM_COMPLETED,  /* <id> Completed */
    EXIM_FROZEN,     /* <id> frozen by ..., Frozen ... */
    EXIM_UNFROZEN,   /* <id> unfrozen by ..., Unfrozen by ... */
    EXIM_MSG_OTHER,  /* another line with a message id (Sender identification, rejected after DATA
                        ...) */
    EXIM_CWD,        /* cwd=<dir> N args: ... */
    EXIM_AUTH_FAIL,  /* <authenticator> authenticator failed for ... */
    EXIM_REJECT,     /* H=... rejected RCPT / temporarily rejected ... */
    EXIM_CONNECTION, /* SMTP connection from ..., no MAIL in SMTP connection ..., lost ... */
    EXIM_QUEUE_RUN,  /* Start queue run / End queue run */
    EXIM_TYPE__MAX,
};

/* Flags on struct exim_event.flags */
#define EXIM_F_FAKEREJECT (1u << 0) /* (= instead of <= */
#define EXIM_F_LOCAL      (1u << 1) /* arrival without H=, P=local* */
#define EXIM_F_RCPT_TRUNC                                                                          \
    (1u << 2) /* the for-list ended with <trunc> or was cut at the buffer (EXIM_F_RCPT_CUT) */
#define EXIM_F_ANOMALOUS                                                                           \
    (1u << 3) /* arrival: no reading holds in Exim's grammar; host/ident/proto/auth/set_id         \
                 are then empty (nothing in the text is evidence of who sent it) */
#define EXIM_F_AMBIGUOUS_HOST                                                                      \
    (1u << 4) /* arrival: two readings of the peer part hold and differ (a HELO holding            \
                 ") [ip]:port ..."): the first in the fields, the other in alt; auth-fail,         \
                 reject, connection: a second candidate peer before the data */
#define EXIM_F_RETRY_WAIT     (1u << 5) /* == "retry time not reached": a repeat, not a new defer */
#define EXIM_F_CWD_SUBMISSION (1u << 6) /* cwd= invocation that reads a message (-t, rcpts ...) */
#define EXIM_F_CWD_FORGED     (1u << 7) /* cwd= entry absorbed following physical lines */
#define EXIM_F_OVERFLOW       (1u << 8) /* "**** log string overflowed log buffer ****" */
#define EXIM_F_INCOMPLETE     (1u << 9) /* record handed on before its syntax was complete */
#define EXIM_F_ENFORCED                                                                            \
    (1u << 10) /* consequence of a hold/suspension (R=enforce_mail_permissions) */
#define EXIM_F_ABSORBED                                                                            \
    (1u << 11)                      /* the record swallowed a physical line that did not start     \
                                       with a space/tab (raw newline in a field: 9.1) */
#define EXIM_F_FOREIGN   (1u << 13) /* no Exim prefix at all: not Exim's text (type OTHER) */
#define EXIM_F_CWD_MULTI (1u << 12) /* cwd= text holds several " N args: " parts */
#define EXIM_F_FORGED_TAIL                                                                         \
    (1u << 14) /* not a cwd= record, yet it ends in a top-level " N args: ..." (9.1 rule 4): the   \
                  remnant of a line forged through a directory name or argv; never counted */
#define EXIM_F_CWD_ARGC (1u << 15) /* cwd= whose " N args:" count does not match its arguments */
#define EXIM_F_HELO_FORGED                                                                         \
    (1u << 17) /* the HELO inside H= holds ") [ip]" or "[ip]:port": text shaped like a peer, which \
                  no honest client sends (5.3); the record still has one reading */
#define EXIM_F_RCPT_CUT                                                                            \
    (1u << 16) /* the for-list may have been cut at Exim's buffer without "<trunc>" (<= 4.97:      \
                  the record ends within 259 bytes of 8192): complete it from the delivery         \
                  records */

/*
 * One reading of an arrival's peer part: H= and the fields Exim writes between it and S=.
 * A HELO that contains ") [ip]:port ..." can make two readings parse (5.3).
 */
struct exim_peer {
    struct fg_str host, host_ip, ident, proto, auth, set_id;
};

/*
 * One parsed record. Every slice points into the record text given to eximlog_parse()
 * and dies with it. Absent fields are { NULL, 0 }.
 */
struct exim_event {
    enum exim_type type;
    uint32_t flags;
    int64_t ts_ms;      /* log time as epoch ms: the local wall time read as UTC, minus the
                           +HHMM offset when log_timezone is on */
    struct fg_str time; /* "YYYY-MM-DD HH:MM:SS" as written (for reports) */
    bool has_pid;
    uint32_t pid;
    struct fg_str msgid; /* 16 or 23 characters, validated */
    struct fg_str body;  /* everything after the prefix and message id */

    /* EXIM_ARRIVAL */
    struct fg_str sender;    /* envelope sender as logged ("<>" for the null sender), quotes kept */
    struct fg_str bounce_of; /* R= */
    struct fg_str host;      /* H= value, whole */
    struct fg_str host_ip;   /* the peer address inside the last [..] of H= */
    struct fg_str ident;     /* U= */
    struct fg_str proto;     /* P= */
    struct fg_str auth;      /* A= authenticator name */
    struct fg_str set_id;    /* A= set_id (not split further) */
    uint64_t size;           /* S= */
    struct fg_str subject;   /* T= value without the outer quotes, still escaped */
    struct fg_str rcpts;     /* text after " for ", iterate with eximlog_next_addr() */
    uint32_t nrcpt;          /* number of addresses in rcpts */
    struct exim_peer alt;    /* EXIM_F_AMBIGUOUS_HOST: the other reading that also parses in
                                full (the fields above hold the first); empty otherwise */

    /* EXIM_DELIVERY, EXIM_DEFER, EXIM_FAIL */
    struct fg_str flag;      /* "=>", "->", "*>", ">>", "==", "**" */
    struct fg_str addr;      /* the first address of the address part */
    struct fg_str router;    /* R= */
    struct fg_str transport; /* T= */
    struct fg_str text;      /* defer / failure message, frozen-by user, auth-fail host ... */

    /* EXIM_CWD */
    struct fg_str cwd;  /* the directory */
    uint32_t argc;      /* N of " N args:" */
    struct fg_str args; /* the argv text after "args: " */

    /* EXIM_AUTH_FAIL: auth = authenticator, set_id = set_id, host = the host part,
       host_ip = client */
    /* EXIM_REJECT: host, host_ip, sender (F=, without <>), auth/set_id (A=), addr (the RCPT
       address, without <>), text (from "rejected" / "temporarily rejected" on) */
    /* EXIM_CONNECTION: host_ip (when one peer is unambiguous), text = body */
};

/*
 * Parse one complete record (joined continuation lines, newlines kept, no trailing
 * newline). Pure. Borrows @rec: on success the slices in @ret_ev point into it.
 * Returns 1 (an event of a type we count, ret_ev filled), 0 (EXIM_OTHER: a record we do
 * not count; ret_ev->type, ts_ms and time are still set when the prefix parsed),
 * -EBADMSG (a malformed record of a known type, or no valid prefix), -E2BIG (over
 * EXIMLOG_RECORD_MAX).
 */
int eximlog_parse(const char *rec, size_t len, struct exim_event *ret_ev);

/*
 * Walk an address list (the for-list of an arrival): reads the next address, quote-aware,
 * from *@pos within @list and advances *@pos. Returns 1 with @ret_addr set, 0 at the end.
 * The "<trunc>" marker is not an address.
 */
int eximlog_next_addr(struct fg_str list, size_t *pos, struct fg_str *ret_addr);

/* The domain part of an address (after the last '@' outside quotes); empty if none. */
struct fg_str eximlog_addr_domain(struct fg_str addr);

/* True for a syntactically valid message id of either format. */
bool eximlog_msgid_valid(struct fg_str id);

const char *eximlog_type_name(enum exim_type t);

/*
 * Record splitter (exim-log-format.md 1.3 and 9.1), pure: physical lines in, complete
 * records out. A line starting with a space or tab continues the record; an empty line
 * is dropped; an arrival whose sender, "from" or for-list ends inside a double quote (or
 * after a backslash) absorbs the following lines, even timestamped ones, until it closes;
 * a cwd= record whose first line lacks " N args:" absorbs every line within
 * EXIMLOG_RECORD_MAX bytes of its start (the most one Exim write holds). Both are
 * bounded by EXIMLOG_RECORD_MAX. Offsets are the caller's (byte positions in its file).
 */
struct eximlog_joiner {
    char buf[EXIMLOG_RECORD_MAX + 1];
    size_t len;
    bool pending;   /* a record is being assembled */
    bool open;      /* its syntax is unfinished (cwd= without args, open quote) */
    bool truncated; /* it hit EXIMLOG_RECORD_MAX */
    bool absorbed;  /* it absorbed a line that started like a record */
    uint64_t start; /* offset of its first byte */
    uint64_t end;   /* offset just past its last line's newline */
    uint64_t lines; /* physical lines pushed, ever */
    uint64_t truncated_records;
    uint64_t orphan_lines;            /* continuation lines with no record to continue */
    uint64_t absorbed_lines;          /* lines swallowed by an open cwd=/quote (rules 2-3 of 9.1) */
    uint8_t kind;                     /* what the pending record is: EXIMLOG_JOIN_* (internal) */
    char out[EXIMLOG_RECORD_MAX + 1]; /* the record handed out last */
};

/* A complete record handed out by the joiner; text borrowed until the next push/flush. */
struct eximlog_record {
    const char *text;
    size_t len;
    uint64_t start, end; /* byte range in the file, newline included */
    uint32_t flags;      /* EXIM_F_INCOMPLETE, EXIM_F_CWD_FORGED */
    bool truncated;
};

void eximlog_joiner_init(struct eximlog_joiner *j);

/*
 * Push one physical line (without its newline) that occupies [@start, @end) of the file.
 * If the line begins a new record, the previously pending record is complete: it is
 * written to @ret and 1 is returned (the new line is kept pending). Returns 0 when
 * nothing completed. Never fails; over-long records are cut and counted.
 */
int eximlog_joiner_push(struct eximlog_joiner *j, const char *line, size_t len, uint64_t start,
                        uint64_t end, struct eximlog_record *ret);

/*
 * Hand out the pending record, if any, as complete. With @force false a record whose
 * syntax is still open stays pending (returns 0); with @force true it is handed out
 * flagged EXIM_F_INCOMPLETE. Returns 1 if @ret was written.
 */
int eximlog_joiner_flush(struct eximlog_joiner *j, bool force, struct eximlog_record *ret);

/*
 * Resume offset: the start of the record still being assembled, or @committed_end when
 * nothing is pending. A checkpoint never passes it.
 */
uint64_t eximlog_joiner_resume(const struct eximlog_joiner *j, uint64_t committed_end);

/*
 * The tailer met a line longer than its own cap (tailer-reliability.md 5.4) and skipped
 * [@start, @end) without passing the text. Closes the pending record like a new record
 * would (written to @ret, returns 1), counts a truncated record, and makes sure nothing of
 * the skipped bytes starts or continues a record.
 */
int eximlog_joiner_overlong(struct eximlog_joiner *j, uint64_t start, uint64_t end,
                            struct eximlog_record *ret);

#endif
