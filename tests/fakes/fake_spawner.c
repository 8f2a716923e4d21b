/*
 * fake_spawner.c - the recording spawner for tests of lib/action (see fake_spawner.h).
 */
#include "fake_spawner.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fake_job {
    struct fake_job *next;
    spawn_done_fn done;
    void *ctx;
    struct spawn_result res;
};

static void
fake_answer(struct fake_spawner *f, char *const argv[], struct spawn_result *r)
{
    const char *base = strrchr(argv[0], '/');
    bool freeze = false, thaw = false;

    base = base ? base + 1 : argv[0];
    r->exited = true;
    r->exit_code = f->exit_code;
    for (size_t i = 1; argv[i]; i++) {
        if (strcmp(argv[i], "-Mf") == 0) {
            freeze = true;
            continue;
        }
        if (strcmp(argv[i], "-Mt") == 0) {
            thaw = true;
            continue;
        }
        if ((freeze || thaw) && spawn_valid_msgid(argv[i])) {
            const char *what = thaw ? "is no longer frozen"
                               : (f->already_frozen && strcmp(f->already_frozen, argv[i]) == 0)
                                   ? "is already frozen"
                                   : "is now frozen";
            size_t room = SPAWN_OUTPUT_MAX - r->out_len;
            int n = snprintf(r->out + r->out_len, room + 1, "Message %s %s\n", argv[i], what);
            if (n > 0 && (size_t)n <= room)
                r->out_len += (size_t)n;
        }
    }
    for (size_t i = 1; argv[i] && f->bp_out; i++)
        if (strcmp(argv[i], "-bP") == 0)
            r->out_len = (size_t)snprintf(r->out, sizeof(r->out), "%s", f->bp_out);
    if (strcmp(base, "whmapi1") == 0)
        r->out_len = (size_t)snprintf(r->out, sizeof(r->out),
                                      "{\"metadata\":{\"reason\":\"OK\",\"result\":1}}");
    else if (strcmp(base, "uapi") == 0)
        r->out_len =
            (size_t)snprintf(r->out, sizeof(r->out), "{\"result\":{\"errors\":null,\"status\":1}}");
}

static int
fake_run(struct spawner *s, char *const argv[], int64_t timeout_ms, spawn_done_fn done, void *ctx)
{
    struct fake_spawner *f = (struct fake_spawner *)s;
    struct fake_job *j, **tail;
    size_t n = 0;

    (void)timeout_ms;
    if (f->run_error)
        return f->run_error;
    if (!argv || !argv[0] || argv[0][0] != '/')
        return -EINVAL;
    if (f->ncalls < FAKE_SPAWNER_CALLS_MAX) {
        char *line = f->calls[f->ncalls++];
        line[0] = '\0';
        for (size_t i = 0; argv[i]; i++) {
            int k = snprintf(line + n, FAKE_SPAWNER_LINE_MAX - n, "%s%s", i ? " " : "", argv[i]);
            if (k < 0 || (size_t)k >= FAKE_SPAWNER_LINE_MAX - n)
                break;
            n += (size_t)k;
        }
    }
    j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->done = done;
    j->ctx = ctx;
    fake_answer(f, argv, &j->res);
    for (tail = &f->pending; *tail; tail = &(*tail)->next)
        ;
    *tail = j;
    return 0;
}

static void
fake_free(struct spawner *s)
{
    struct fake_spawner *f = (struct fake_spawner *)s;
    while (f->pending) {
        struct fake_job *j = f->pending;
        f->pending = j->next;
        free(j);
    }
    free(f);
}

struct fake_spawner *
fake_spawner_new(void)
{
    struct fake_spawner *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->ops.run = fake_run;
    f->ops.free = fake_free;
    return f;
}

size_t
fake_spawner_flush(struct fake_spawner *f)
{
    size_t n = 0;
    while (f->pending) {
        struct fake_job *j = f->pending;
        f->pending = j->next;
        j->done(j->ctx, &j->res);
        free(j);
        n++;
    }
    return n;
}

int
fake_spawner_find(const struct fake_spawner *f, const char *needle)
{
    for (size_t i = 0; i < f->ncalls; i++)
        if (strstr(f->calls[i], needle))
            return (int)i;
    return -1;
}
