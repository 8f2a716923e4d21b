/*
 * log.c - the daemon's one logging entry point.
 *
 * Two sinks: journald with structured FLOODGATE_* fields, or one stderr line
 * "LEVEL message KEY=value ...". The sink and level are the one piece of mutable global
 * state under lib/ (STYLE.md), set once at start. On the stderr sink log text is rendered
 * by util_term_escape (valid UTF-8 kept, every control, bad byte and bidirectional
 * control a visible escape), so a log text holding a newline cannot forge a line nor an
 * escape sequence drive the terminal.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#define LOG_TEXT_MAX   2048
#define LOG_FIELDS_MAX 16

static enum log_sink log_sink = LOG_SINK_STDERR;
static int log_max_prio = LOG_INFO;

void
log_setup(enum log_sink sink, int max_prio)
{
    if (sink == LOG_SINK_AUTO)
        sink = getenv("JOURNAL_STREAM") ? LOG_SINK_JOURNAL : LOG_SINK_STDERR;
    log_sink = sink;
    log_max_prio = max_prio;
}

static const char *
log_level_name(int prio)
{
    static const char *const names[] = { "EMERG", "ALERT",  "CRIT", "ERROR",
                                         "WARN",  "NOTICE", "INFO", "DEBUG" };
    return (prio >= 0 && prio < (int)N_ELEMS(names)) ? names[prio] : "LOG";
}

/* util_term_escape's rule: the stderr sink may be a terminal, and a line is one line */
/* util_term_escape's rule: the stderr sink may be a terminal, and a line is one line */
static void
log_escape(struct strbuf *b, const char *s)
{
    (void)strbuf_append_term(b, s, strlen(s));
}

static void
log_to_stderr(int prio, int err, const struct log_field *fields, const char *msg)
{
    struct strbuf b;

    strbuf_init(&b, LOG_TEXT_MAX * 4);
    (void)strbuf_printf(&b, "%s ", log_level_name(prio));
    log_escape(&b, msg);
    if (err < 0)
        (void)strbuf_printf(&b, ": %s", strerror(-err));
    for (size_t i = 0; fields && fields[i].key; i++) {
        if (!fields[i].value || strcmp(fields[i].key, "MESSAGE_ID") == 0)
            continue;
        (void)strbuf_printf(&b, " %s=\"", fields[i].key);
        log_escape(&b, fields[i].value);
        (void)strbuf_append(&b, "\"", 1);
    }
    (void)strbuf_append(&b, "\n", 1);
    (void)fwrite(strbuf_cstr(&b), 1, b.len, stderr);
    (void)fflush(stderr);
    strbuf_done(&b);
}

static void
log_to_journal(const char *file, int line, const char *func, int prio, int err,
               const struct log_field *fields, const char *msg)
{
    struct iovec iov[LOG_FIELDS_MAX + 8];
    char bufs[LOG_FIELDS_MAX + 8][LOG_TEXT_MAX];
    size_t n = 0;

#define LOG_IOV(...)                                                                               \
    do {                                                                                           \
        int len_ = snprintf(bufs[n], LOG_TEXT_MAX, __VA_ARGS__);                                   \
        iov[n].iov_base = bufs[n];                                                                 \
        iov[n].iov_len = len_ < 0 ? 0 : (len_ >= LOG_TEXT_MAX ? LOG_TEXT_MAX - 1 : (size_t)len_);  \
        n++;                                                                                       \
    } while (0)

    LOG_IOV("MESSAGE=%s%s%s", msg, err < 0 ? ": " : "", err < 0 ? strerror(-err) : "");
    LOG_IOV("PRIORITY=%d", prio);
    LOG_IOV("CODE_FILE=%s", file);
    LOG_IOV("CODE_LINE=%d", line);
    LOG_IOV("CODE_FUNC=%s", func);
    LOG_IOV("SYSLOG_IDENTIFIER=floodgated");
    if (err < 0)
        LOG_IOV("ERRNO=%d", -err);
    for (size_t i = 0; fields && fields[i].key && n < N_ELEMS(iov); i++) {
        if (!fields[i].value)
            continue;
        if (strcmp(fields[i].key, "MESSAGE_ID") == 0)
            LOG_IOV("MESSAGE_ID=%s", fields[i].value);
        else
            LOG_IOV("FLOODGATE_%s=%s", fields[i].key, fields[i].value);
    }
#undef LOG_IOV
    if (sd_journal_sendv(iov, (int)n) < 0)
        log_to_stderr(prio, err, fields, msg);
}

int
log_emit_at(const char *file, int line, const char *func, int prio, int err,
            const struct log_field *fields, const char *fmt, ...)
{
    char msg[LOG_TEXT_MAX];
    va_list ap;
    int saved = errno;

    if (prio > log_max_prio)
        return err;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (log_sink == LOG_SINK_JOURNAL)
        log_to_journal(file, line, func, prio, err, fields, msg);
    else
        log_to_stderr(prio, err, fields, msg);
    errno = saved;
    return err;
}

/* Is stderr the journal's stream? JOURNAL_STREAM holds its "device:inode". */
static bool
log_stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    return js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
           (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void
log_loud(int prio, const char *fmt, ...)
{
    char msg[LOG_TEXT_MAX];
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    (void)log_emit(prio, 0, NULL, "%s", msg);
    if (log_sink == LOG_SINK_JOURNAL && !log_stderr_is_journal())
        log_to_stderr(prio, 0, NULL, msg);
}
