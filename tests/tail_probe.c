/*
 * tail_probe.c - a minimal tailing daemon for check_tail's SIGKILL test (not a ctest).
 *
 * Usage: tail_probe <log> <state dir> <out>. Takes the state dir lock, resumes from its
 * checkpoint (or reads the log from 0 without one), and appends to <out> with O_APPEND:
 * "R" when it is ready (SIGTERM handled from then on), each record's sequence number after the
 * record, and "C <seq>" after each durable checkpoint (every 100 ms when the position moved, and at
 * SIGTERM), where <seq> is the last record the checkpoint covers. The test kills it at random.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "clock.h"
#include "log.h"
#include "state.h"
#include "tail.h"

struct probe {
    int out;
    const char *statedir;
    struct tail *tail;
    struct tail_pos saved;
    long long last_seq;
    long long saved_seq;
};

static void
probe_write(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            exit(3);
        buf += w;
        n -= (size_t)w;
    }
}

static void
probe_record(void *ctx, const struct eximlog_record *rec)
{
    struct probe *p = ctx;
    const char *s = memmem(rec->text, rec->len, "seq=", 4);
    char line[32];
    long long v = 0;
    int n;

    if (!s)
        return;
    for (int i = 4; i < 11; i++)
        v = v * 10 + (s[i] - '0');
    p->last_seq = v;
    n = snprintf(line, sizeof(line), "%lld\n", v);
    probe_write(p->out, line, (size_t)n);
}

static void
probe_checkpoint(struct probe *p)
{
    struct tail_pos pos;
    char line[40];
    int n;

    tail_position(p->tail, &pos);
    if (pos.ino == 0 || memcmp(&pos, &p->saved, sizeof(pos)) == 0 || p->last_seq < 0)
        return;
    if (state_checkpoint_save(p->statedir, &pos) < 0)
        return;
    p->saved = pos;
    if (!getenv("TAIL_PROBE_QUIET"))
        fprintf(stderr, "tail_probe[%d]: saved ino %llu offset %llu (last seq %lld)\n",
                (int)getpid(), (unsigned long long)pos.ino, (unsigned long long)pos.offset,
                p->last_seq);
    if (p->last_seq != p->saved_seq) {
        p->saved_seq = p->last_seq;
        n = snprintf(line, sizeof(line), "C %lld\n", p->last_seq);
        probe_write(p->out, line, (size_t)n);
    }
}

static void
probe_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    probe_checkpoint(w->data);
}

static void
probe_term_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    probe_checkpoint(w->data);
    ev_break(loop, EVBREAK_ALL);
}

int
main(int argc, char **argv)
{
    struct ev_loop *loop = EV_DEFAULT;
    struct probe p = { .last_seq = -1, .saved_seq = -1 };
    struct tail_params tp = { 0 };
    struct tail_pos pos;
    ev_timer timer;
    ev_signal term;
    int lock, r;

    if (argc != 4) {
        fprintf(stderr, "usage: tail_probe <log> <state dir> <out>\n");
        return 2;
    }
    /* LOG_INFO: the resume decision (file, offset, gap) lands in the test's stderr */
    log_setup(LOG_SINK_STDERR, getenv("TAIL_PROBE_QUIET") ? LOG_ERR : LOG_INFO);
    p.statedir = argv[2];
    r = state_lock(argv[2], &lock);
    if (r < 0)
        return 2;
    p.out = open(argv[3], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (p.out < 0)
        return 2;
    r = state_checkpoint_load(argv[2], &pos);
    if (r == 0 && !getenv("TAIL_PROBE_QUIET"))
        fprintf(stderr, "tail_probe[%d]: checkpoint ino %llu offset %llu fp_len %u\n",
                (int)getpid(), (unsigned long long)pos.ino, (unsigned long long)pos.offset,
                (unsigned)pos.fp_len);
    tp.loop = loop;
    tp.path = argv[1];
    tp.clock = &clock_real;
    tp.on_record = probe_record;
    tp.ctx = &p;
    tp.resume = r == 0 ? &pos : NULL;
    tp.from_start = true;
    tp.grace_ms = 300;
    if (r == 0)
        p.saved = pos;
    if (tail_open(&tp, &p.tail) < 0)
        return 2;
    ev_timer_init(&timer, probe_timer_cb, 0.1, 0.1);
    timer.data = &p;
    ev_timer_start(loop, &timer);
    ev_signal_init(&term, probe_term_cb, SIGTERM);
    term.data = &p;
    ev_signal_start(loop, &term);
    /* After the SIGTERM watcher: the test may stop us as soon as it sees this line. */
    probe_write(p.out, "R\n", 2);
    ev_run(loop, 0);
    tail_free(p.tail);
    (void)close(p.out);
    (void)close(lock);
    return 0;
}
