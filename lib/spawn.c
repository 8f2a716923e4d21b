/*
 * spawn.c - run external commands without a shell, on the libev loop.
 *
 * Owns: starting a command with posix_spawn() (absolute path, argv array, a built
 * environment, its own process group, /dev/null on stdin, default signals), watching it
 * with an ev_child beside an ev_timer, collecting the first SPAWN_OUTPUT_MAX bytes of its
 * stdout and stderr through non-blocking pipes read by ev_io watchers, and reporting one
 * struct spawn_result to the caller's callback. Does not own: what the command means,
 * logging its result (the caller logs), retries.
 *
 * Invariants: every descriptor we open is O_CLOEXEC, so concurrent children never inherit
 * each other's pipes; the child is reaped only through libev's SIGCHLD handling, so
 * nothing here calls waitpid() but spawner_free(); the timeout sends SIGKILL to the whole
 * process group while the leader is still unreaped, so the group id cannot have been
 * reused. A command's callback runs exactly once, normally when the leader has been
 * reaped; pipes are drained then and closed even if a straggler of the group still holds
 * them (we never wait on them). A leader that is not reaped SPAWN_KILL_GRACE_MS after the
 * SIGKILL (stuck in the kernel, or reaped behind libev's back) is killed again with a
 * warning, and after SPAWN_KILL_TRIES attempts (or at once when its group is gone) it is
 * reported as timed out and forgotten: one stuck child must not stall the caller's queue.
 *
 * Also here: the validators for arguments taken from log text, because every argv that
 * reaches run() passes one of them first.
 */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "log.h"

#define SPAWN_KILL_GRACE_MS 5000 /* after a SIGKILL, how long the leader has to be reaped */
#define SPAWN_KILL_TRIES    6    /* SIGKILLs before a command is given up on (~30 s) */
#define SPAWN_FREE_WAIT_MS  2000 /* spawner_free(): time all killed children get to die */

struct spawn_real;

struct spawn_job {
    struct spawn_real *sp;
    struct spawn_job *prev, *next;
    pid_t pid;
    ev_child child;
    ev_timer timer;
    ev_io io_out, io_err;
    int fd_out, fd_err;
    spawn_done_fn done;
    void *ctx;
    unsigned kills; /* SIGKILLs sent after the timeout */
    struct spawn_result res;
};

struct spawn_real {
    struct spawner ops; /* first: the table callers see */
    struct ev_loop *loop;
    char *cwd;
    char env_path[sizeof("PATH=" SPAWN_PATH)];
    char env_lang[sizeof("LANG=C")];
    char env_lcall[sizeof("LC_ALL=C")];
    struct spawn_job *jobs;
};

bool
spawn_result_ok(const struct spawn_result *r)
{
    return r->err == 0 && !r->timed_out && r->exited && r->exit_code == 0;
}

void
spawn_result_describe(const struct spawn_result *r, char *buf, size_t size)
{
    if (r->err < 0)
        (void)snprintf(buf, size, "spawn failed: %s", strerror(-r->err));
    else if (r->timed_out)
        (void)snprintf(buf, size, "timeout");
    else if (r->signaled)
        (void)snprintf(buf, size, "signal %d", r->signo);
    else
        (void)snprintf(buf, size, "exit %d", r->exit_code);
}

static void
spawn_close(int *fd)
{
    if (*fd >= 0) {
        (void)close(*fd);
        *fd = -1;
    }
}

/* Read what is there; returns true at EOF or on a hard error (the fd is then done). */
static bool
spawn_read_into(int fd, char *buf, size_t *len, bool *truncated)
{
    char tmp[4096];

    for (;;) {
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n == 0)
            return true;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno != EAGAIN;
        }
        size_t got = (size_t)n, room = SPAWN_OUTPUT_MAX - *len;
        if (got > room) {
            *truncated = true;
            got = room;
        }
        memcpy(buf + *len, tmp, got);
        *len += got;
        buf[*len] = '\0';
    }
}

static void
spawn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct spawn_job *j = w->data;
    bool is_out = (w == &j->io_out);
    int *fd = is_out ? &j->fd_out : &j->fd_err;
    bool eof;

    (void)revents;
    if (is_out)
        eof = spawn_read_into(*fd, j->res.out, &j->res.out_len, &j->res.out_truncated);
    else
        eof = spawn_read_into(*fd, j->res.err_text, &j->res.err_len, &j->res.err_truncated);
    if (eof) {
        ev_io_stop(loop, w);
        spawn_close(fd);
    }
}

static void
spawn_job_unlink(struct spawn_job *j)
{
    struct spawn_real *sp = j->sp;

    ev_child_stop(sp->loop, &j->child);
    ev_timer_stop(sp->loop, &j->timer);
    ev_io_stop(sp->loop, &j->io_out);
    ev_io_stop(sp->loop, &j->io_err);
    spawn_close(&j->fd_out);
    spawn_close(&j->fd_err);
    if (j->prev)
        j->prev->next = j->next;
    else
        sp->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
}

/* Collect what output is left, report, forget. */
static void
spawn_job_finish(struct spawn_job *j)
{
    if (j->fd_out >= 0)
        (void)spawn_read_into(j->fd_out, j->res.out, &j->res.out_len, &j->res.out_truncated);
    if (j->fd_err >= 0)
        (void)spawn_read_into(j->fd_err, j->res.err_text, &j->res.err_len, &j->res.err_truncated);
    spawn_job_unlink(j);
    j->done(j->ctx, &j->res);
    free(j);
}

static void
spawn_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
    struct spawn_job *j = w->data;

    (void)loop;
    (void)revents;
    if (WIFEXITED(w->rstatus)) {
        j->res.exited = true;
        j->res.exit_code = WEXITSTATUS(w->rstatus);
    } else if (WIFSIGNALED(w->rstatus)) {
        j->res.signaled = true;
        j->res.signo = WTERMSIG(w->rstatus);
    } else {
        return; /* stopped or continued: not the end */
    }
    spawn_job_finish(j);
}

static void
spawn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct spawn_job *j = w->data;

    int r;

    (void)revents;
    /* The leader is not reaped by libev yet (its callback would have stopped this timer),
     * so the group id is still ours. */
    j->res.timed_out = true;
    r = kill(-j->pid, SIGKILL) < 0 ? -errno : 0;
    j->kills++;
    if (r == 0 && j->kills < SPAWN_KILL_TRIES) {
        if (j->kills > 1)
            (void)log_emit(LOG_WARNING, 0, NULL,
                           "spawn: pid %d not reaped %u s after SIGKILL, killing again",
                           (int)j->pid, (j->kills - 1) * (SPAWN_KILL_GRACE_MS / 1000));
        ev_timer_stop(loop, w);
        ev_timer_set(w, (double)SPAWN_KILL_GRACE_MS / 1000.0, 0.);
        ev_timer_start(loop, w);
        return;
    }
    /* -ESRCH: the group is gone, so someone else reaped the leader and libev never will;
     * otherwise it is stuck. Either way waiting longer would stall the caller's queue. */
    (void)log_emit(LOG_ERR, r, NULL, "spawn: giving up on pid %d, not reaped after %u SIGKILLs",
                   (int)j->pid, j->kills);
    spawn_job_finish(j);
}

static int
spawn_pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
        return -errno;
    /* The child's end must block: a writer that gets EAGAIN may lose its own output. */
    int fl = fcntl(fds[1], F_GETFL);
    if (fl < 0 || fcntl(fds[1], F_SETFL, fl & ~O_NONBLOCK) < 0) {
        int r = -errno;
        (void)close(fds[0]);
        (void)close(fds[1]);
        return r;
    }
    return 0;
}

static int
spawn_start(struct spawn_real *sp, char *const argv[], pid_t *ret_pid, int *ret_out, int *ret_err)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t all, none;
    int pout[2] = { -1, -1 }, perr[2] = { -1, -1 };
    int r;
    char *envp[] = { sp->env_path, sp->env_lang, sp->env_lcall, NULL };

    r = spawn_pipe(pout);
    if (r < 0)
        return r;
    r = spawn_pipe(perr);
    if (r < 0) {
        (void)close(pout[0]);
        (void)close(pout[1]);
        return r;
    }
    (void)sigfillset(&all);
    (void)sigemptyset(&none);
    r = posix_spawn_file_actions_init(&fa);
    if (r != 0)
        goto fail_pipes;
    r = posix_spawnattr_init(&attr);
    if (r != 0) {
        (void)posix_spawn_file_actions_destroy(&fa);
        goto fail_pipes;
    }
    if ((r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) != 0 ||
        (r = posix_spawn_file_actions_adddup2(&fa, pout[1], 1)) != 0 ||
        (r = posix_spawn_file_actions_adddup2(&fa, perr[1], 2)) != 0 ||
        (r = posix_spawn_file_actions_addchdir_np(&fa, sp->cwd)) != 0 ||
        (r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF |
                                                 POSIX_SPAWN_SETSIGMASK)) != 0 ||
        (r = posix_spawnattr_setpgroup(&attr, 0)) != 0 ||
        (r = posix_spawnattr_setsigdefault(&attr, &all)) != 0 ||
        (r = posix_spawnattr_setsigmask(&attr, &none)) != 0)
        goto fail_all;
    r = posix_spawn(ret_pid, argv[0], &fa, &attr, argv, envp);
fail_all:
    (void)posix_spawnattr_destroy(&attr);
    (void)posix_spawn_file_actions_destroy(&fa);
fail_pipes:
    (void)close(pout[1]);
    (void)close(perr[1]);
    if (r != 0) {
        (void)close(pout[0]);
        (void)close(perr[0]);
        return -r;
    }
    *ret_out = pout[0];
    *ret_err = perr[0];
    return 0;
}

static int
spawn_real_run(struct spawner *s, char *const argv[], int64_t timeout_ms, spawn_done_fn done,
               void *ctx)
{
    struct spawn_real *sp = (struct spawn_real *)s;
    struct spawn_job *j;
    size_t argc = 0;
    int r;

    if (!argv || !argv[0] || argv[0][0] != '/' || timeout_ms <= 0 || !done)
        return -EINVAL;
    while (argv[argc])
        if (++argc >= SPAWN_ARGV_MAX)
            return -E2BIG;
    j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->sp = sp;
    j->done = done;
    j->ctx = ctx;
    j->fd_out = j->fd_err = -1;
    r = spawn_start(sp, argv, &j->pid, &j->fd_out, &j->fd_err);
    if (r < 0) {
        free(j);
        return r;
    }
    /* Start the child watcher before returning to the loop: libev only hands a reaped
     * status to a watcher that exists when the SIGCHLD is processed. */
    ev_child_init(&j->child, spawn_child_cb, j->pid, 0);
    j->child.data = j;
    ev_child_start(sp->loop, &j->child);
    ev_timer_init(&j->timer, spawn_timer_cb, (double)timeout_ms / 1000.0, 0.);
    j->timer.data = j;
    ev_timer_start(sp->loop, &j->timer);
    ev_io_init(&j->io_out, spawn_io_cb, j->fd_out, EV_READ);
    j->io_out.data = j;
    ev_io_start(sp->loop, &j->io_out);
    ev_io_init(&j->io_err, spawn_io_cb, j->fd_err, EV_READ);
    j->io_err.data = j;
    ev_io_start(sp->loop, &j->io_err);
    j->next = sp->jobs;
    if (sp->jobs)
        sp->jobs->prev = j;
    sp->jobs = j;
    return 0;
}

/*
 * Reap @pid, killed just before, waiting at most *@budget_ms (shared by all children, so
 * a shutdown never blocks long whatever their number). A child left is reaped by init
 * once we exit.
 */
static void
spawn_reap_bounded(pid_t pid, long *budget_ms)
{
    const struct timespec tick = { .tv_sec = 0, .tv_nsec = 10 * 1000 * 1000 };

    for (;;) {
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            return;
        if (*budget_ms <= 0) {
            (void)log_emit(LOG_WARNING, 0, NULL, "spawn: pid %d not reaped at shutdown", (int)pid);
            return;
        }
        (void)nanosleep(&tick, NULL);
        *budget_ms -= 10;
    }
}

static void
spawn_real_free(struct spawner *s)
{
    struct spawn_real *sp = (struct spawn_real *)s;
    long budget_ms = SPAWN_FREE_WAIT_MS;

    for (struct spawn_job *j = sp->jobs; j; j = j->next)
        (void)kill(-j->pid, SIGKILL);
    while (sp->jobs) {
        struct spawn_job *j = sp->jobs;
        spawn_job_unlink(j);
        /* Reap here: nobody watches this pid any more and it must not stay a zombie. */
        spawn_reap_bounded(j->pid, &budget_ms);
        free(j);
    }
    free(sp->cwd);
    free(sp);
}

struct spawner *
spawner_new(struct ev_loop *loop, const char *cwd, int *ret_err)
{
    struct spawn_real *sp;

    if (!loop || !ev_is_default_loop(loop)) {
        if (ret_err)
            *ret_err = -EINVAL;
        return NULL;
    }
    sp = calloc(1, sizeof(*sp));
    if (!sp || !(sp->cwd = strdup(cwd ? cwd : "/"))) {
        free(sp);
        if (ret_err)
            *ret_err = -ENOMEM;
        return NULL;
    }
    sp->ops.run = spawn_real_run;
    sp->ops.free = spawn_real_free;
    sp->loop = loop;
    memcpy(sp->env_path, "PATH=" SPAWN_PATH, sizeof(sp->env_path));
    memcpy(sp->env_lang, "LANG=C", sizeof(sp->env_lang));
    memcpy(sp->env_lcall, "LC_ALL=C", sizeof(sp->env_lcall));
    return &sp->ops;
}

/* Validators. */

static bool
spawn_is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool
spawn_valid_user(const char *s)
{
    size_t n = 0;

    if (!s || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return false;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= SPAWN_USER_MAX)
            return false;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

bool
spawn_valid_mailbox(const char *s)
{
    const char *at;
    size_t n;

    if (!s || !(n = strlen(s)) || n > SPAWN_MAILBOX_MAX || s[0] == '-' || s[0] == '.')
        return false;
    at = strchr(s, '@');
    if (!at || at == s || strchr(at + 1, '@') || at[1] == '\0' || at[1] == '.' || at[1] == '-' ||
        at[-1] == '.')
        return false;
    for (const char *p = s; p < at; p++)
        if (!spawn_is_alnum(*p) && !strchr("!#$%&'*+/=?^_`{|}~.-", *p))
            return false;
    for (const char *p = at + 1; *p; p++) {
        if (!spawn_is_alnum(*p) && *p != '.' && *p != '-')
            return false;
        if (*p == '.' && (p[1] == '.' || p[1] == '\0'))
            return false;
    }
    return true;
}

static bool
spawn_base62_run(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!spawn_is_alnum(s[i]))
            return false;
    return true;
}

bool
spawn_valid_msgid(const char *s)
{
    size_t n;

    if (!s)
        return false;
    n = strlen(s);
    if (n == 16) /* 6-6-2 */
        return spawn_base62_run(s, 6) && s[6] == '-' && spawn_base62_run(s + 7, 6) &&
               s[13] == '-' && spawn_base62_run(s + 14, 2);
    if (n == 23) /* 6-11-4 */
        return spawn_base62_run(s, 6) && s[6] == '-' && spawn_base62_run(s + 7, 11) &&
               s[18] == '-' && spawn_base62_run(s + 19, 4);
    return false;
}

bool
spawn_valid_text(const char *s)
{
    size_t n = 0;

    if (!s || s[0] == '\0' || s[0] == '-')
        return false;
    for (; s[n]; n++)
        if (n >= SPAWN_TEXT_MAX || (unsigned char)s[n] < 0x20 || (unsigned char)s[n] >= 0x7f)
            return false;
    return true;
}
