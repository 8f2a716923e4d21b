#ifndef FLOODGATE_LOG_H
#define FLOODGATE_LOG_H

#include <stdbool.h>
#include <syslog.h>

#include "util.h"

/* Fixed MESSAGE_ID= values, so one journalctl match finds every trip, action or reload. */
#define LOG_MSGID_TRIP   "5d1c8f0a3b7e4e2a9c61f0b4d7a2e901"
#define LOG_MSGID_ACTION "a3f2b1c4d5e6478f9a0b1c2d3e4f5a61"
#define LOG_MSGID_RELOAD "7c9e6b5a4d3c4b2a91807f6e5d4c3b2a"
#define LOG_MSGID_INJECTION "3aa15ea341a04a65a92df661019c73a5"

struct log_field {
    const char *key; /* A-Z0-9_, without the FLOODGATE_ prefix; MESSAGE_ID is passed as is */
    const char *value;
};

enum log_sink {
    LOG_SINK_AUTO, /* journald when JOURNAL_STREAM says it holds stderr, else stderr */
    LOG_SINK_STDERR,
    LOG_SINK_JOURNAL,
};

/* Set first, before any module logs: the sink and the most verbose level written. */
void log_setup(enum log_sink sink, int max_prio);

/*
 * Log one message. @err is 0 or a negative errno: it adds ERRNO= and the error text and is
 * returned, so `return log_emit(LOG_ERR, r, NULL, "...")` logs and propagates. @fields ends
 * with { NULL, NULL } and may be NULL. Values are escaped: text from the Exim log can hold
 * newlines and must not forge lines of ours.
 */
int log_emit_at(const char *file, int line, const char *func, int prio, int err,
                const struct log_field *fields, const char *fmt, ...) FG_PRINTF(7, 8);

/*
 * A warning nobody may miss: logged as log_emit() does, and also written to stderr when
 * the sink is the journal but stderr is something else (a person started the daemon by
 * hand while JOURNAL_STREAM was inherited).
 */
void log_loud(int prio, const char *fmt, ...) FG_PRINTF(2, 3);

#define log_emit(prio, err, fields, ...)                                                           \
    log_emit_at(__FILE__, __LINE__, __func__, (prio), (err), (fields), __VA_ARGS__)

#endif
