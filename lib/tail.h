#ifndef FLOODGATE_TAIL_H
#define FLOODGATE_TAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "eximlog.h"

struct ev_loop;

/* Bytes of a file's head that identify it (tailer-reliability.md 2.2): SHA-256 over them. */
#define TAIL_FP_BYTES 1024
/* Bytes before the committed offset that prove it still points into the same content. */
#define TAIL_MARKER_BYTES 256
/* A run of bytes without a newline longer than this is cut and skipped (twice Exim's 8 KiB). */
#define TAIL_LINE_MAX (16 * 1024)
/* Files open at once: the live file plus predecessors still draining, e.g. every log
 * rotated while the daemon was down (a weekly rotation keeps far fewer). */
#define TAIL_MAX_FILES 64

/*
 * A resumable position: the file (identity + fingerprint) and the byte offset just past the
 * last record handed to on_record, never inside a record under assembly or a partial line.
 * Plain data: the daemon stores it through state_checkpoint_encode().
 */
struct tail_pos {
    uint64_t dev, ino;
    uint64_t offset;
    uint32_t fp_len;     /* 0..TAIL_FP_BYTES head bytes hashed into fp (0: empty file) */
    uint8_t fp[32];      /* SHA-256 of the first fp_len bytes (decompressed for .gz) */
    uint32_t marker_len; /* 0..TAIL_MARKER_BYTES bytes before offset hashed into marker */
    uint64_t marker;     /* first 8 bytes of their SHA-256; marker_len 0: not checked */
};

/* One complete record (borrowed: valid during the call only). */
typedef void (*tail_record_fn)(void *ctx, const struct eximlog_record *rec);

/* Zero means "default" for every number. */
struct tail_params {
    struct ev_loop *loop;      /* borrowed, must outlive the tail */
    const char *path;          /* the live log, e.g. /var/log/exim_mainlog (copied) */
    const struct clock *clock; /* borrowed; mono_ms drives flush and grace deadlines */
    tail_record_fn on_record;
    void *ctx;
    const struct tail_pos *resume; /* copied; NULL: no checkpoint */
    bool from_start;               /* no checkpoint: read the live file from 0, not its end */
    int64_t reconcile_ms;          /* stat safety net and retry period (2000) */
    int64_t flush_ms;              /* idle time before an open record is forced out (200) */
    int64_t grace_ms;              /* a drained predecessor stays open this long (reconcile_ms) */
    size_t budget_bytes;           /* bytes read per loop iteration (256 KiB) */
    bool no_inotify;               /* test seam / NFS: poll every min(reconcile_ms, 250) */
};

struct tail_stats {
    uint64_t lines;              /* physical lines pushed to the joiner */
    uint64_t bytes;              /* bytes read */
    uint64_t records;            /* records handed to on_record */
    uint64_t rotations;          /* the path started naming another file */
    uint64_t truncations;        /* size fell below the read offset or the head changed */
    uint64_t gaps;               /* bytes that may have been lost (truncation, missing file) */
    uint64_t long_lines;         /* lines over TAIL_LINE_MAX: cut and skipped to their newline */
    uint64_t truncated_records;  /* records the joiner cut at EXIMLOG_RECORD_MAX */
    uint64_t incomplete_records; /* records forced out by flush_ms with open syntax */
    uint64_t partial_dropped;    /* predecessor ended in a partial line after its grace */
    uint64_t overflows;          /* IN_Q_OVERFLOW */
    uint64_t open_errors;        /* open/stat of the path failed (EACCES, not regular ...) */
    uint64_t recovered_copies;   /* copytruncate copies read to recover unread bytes */
    uint32_t files_open;
    bool poll_mode; /* inotify unavailable: polling */
};

struct tail;

/*
 * Start tailing @p->path on @p->loop. With @p->resume, continue from that position,
 * following rotated siblings (<name>.1, .01, -YYYYMMDD, optionally .gz) if the file is no
 * longer live (tailer-reliability.md 7.5); a position that no longer verifies, or whose file
 * rotation deleted, counts a gap and reads every rotated sibling still there (all newer
 * than it, oldest first) before the live file from 0 - never a silent jump to the live file.
 * Without it, start at the end of the live file (or at 0 with from_start, or when the file appears
 * only later). A missing or unreadable file is not an error: it is logged once and retried on the
 * reconcile timer. Returns 0, -EINVAL, -ENOMEM or the errno of inotify setup; records only flow
 * from the loop, never from this call.
 */
int tail_open(const struct tail_params *p, struct tail **ret);

/* Stop every watcher and close every file. NULL-safe. */
void tail_free(struct tail *t);

/*
 * Position after the last record handed to on_record in the oldest file not yet finished
 * (never inside a pending record or a partial line). Reads at most TAIL_MARKER_BYTES
 * with pread(). Before any file was opened, returns an all-zero position (ino 0).
 */
void tail_position(const struct tail *t, struct tail_pos *ret);

/* No backlog: every open file was read to its end in the last pass (READY=1). */
bool tail_caught_up(const struct tail *t);

void tail_get_stats(const struct tail *t, struct tail_stats *ret);

#endif
