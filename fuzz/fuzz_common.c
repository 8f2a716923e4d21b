/* Helpers shared by the harnesses (fuzz.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dispatch.h"
#include "fuzz.h"
#include "http.h"

void
fuzz_fail(const char *file, int line, const char *what)
{
    (void)fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, what);
    abort();
}

bool
fuzz_slice_within(struct fg_str s, const char *base, size_t len)
{
    if (s.len == 0)
        return true;
    return s.p && s.p >= base && s.len <= len && (size_t)(s.p - base) <= len - s.len;
}

struct config *
fuzz_config(const char *yaml)
{
    struct config *c = NULL;
    struct diag d;
    char msg[512];

    if (config_parse(yaml, strlen(yaml), "fuzz.yml", &c, &d) < 0) {
        diag_format(&d, msg, sizeof(msg));
        (void)fprintf(stderr, "fuzz: built-in configuration refused: %s\n", msg);
        abort();
    }
    return c;
}

static char fuzz_dir[256];

/* The scratch directory holds plain files only. */
static void
fuzz_tmpdir_remove(void)
{
    DIR *d = opendir(fuzz_dir);
    struct dirent *de;

    while (d && (de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            (void)unlinkat(dirfd(d), de->d_name, 0);
    if (d)
        (void)closedir(d);
    (void)rmdir(fuzz_dir);
}

const char *
fuzz_tmpdir(void)
{
    const char *base = getenv("TMPDIR");

    if (fuzz_dir[0])
        return fuzz_dir;
    if (!base || !*base)
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"; /* fsync is free there */
    if ((size_t)snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/floodgate-fuzz.XXXXXX", base) >=
            sizeof(fuzz_dir) ||
        !mkdtemp(fuzz_dir)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    (void)atexit(fuzz_tmpdir_remove);
    return fuzz_dir;
}

void
fuzz_write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[512];
    const char *p = data;
    int fd;

    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        abort();
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror("fuzz: open");
        abort();
    }
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            perror("fuzz: write");
            abort();
        }
        p += n;
        len -= (size_t)n;
    }
    (void)close(fd);
}

static int
fuzz_spawner_run(struct spawner *s, char *const argv[], int64_t timeout_ms, spawn_done_fn done,
                 void *ctx)
{
    (void)s;
    (void)argv;
    (void)timeout_ms;
    (void)done;
    (void)ctx;
    return -EPERM;
}

static void
fuzz_spawner_free(struct spawner *s)
{
    (void)s;
}

struct spawner *
fuzz_spawner(void)
{
    static struct spawner s = { fuzz_spawner_run, fuzz_spawner_free };

    return &s;
}

const char fuzz_alerts_yaml[] =
    "mode: monitor\n"
    "rules:\n"
    "  - {name: m, scope: mailbox, metric: messages, window: 1m, above: 2, actions: [alert]}\n"
    "  - {name: a, scope: account, metric: failed, window: 10m, above: 1, actions: [alert]}\n"
    "alerts:\n"
    "  host_name: fuzzhost\n"
    "  digest_threshold: 3\n"
    "  max_pending: 50\n"
    "  destinations:\n"
    "    - name: slack\n"
    "      type: slack\n"
    "      url: https://hooks.slack.com/services/T000/B000/XXXX\n"
    "    - name: hook\n"
    "      type: webhook\n"
    "      url: https://hook.example.net/in\n"
    "      secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"
    "    - name: am\n"
    "      type: alertmanager\n"
    "      url: https://am.example.net:9093/\n";

static int
fuzz_post(void *ctx, const struct http_request *rq, http_done_fn done, void *done_ctx)
{
    (void)ctx;
    (void)rq;
    (void)done;
    (void)done_ctx;
    return -ECONNREFUSED;
}

static uint64_t
fuzz_random(void *ctx)
{
    (void)ctx;
    return 1000;
}

struct dispatch *
fuzz_dispatch(const struct config *cfg, const struct clock *clk)
{
    struct dispatch_params p = { .clock = clk,
                                 .cfg = cfg,
                                 .http = { fuzz_post, NULL },
                                 .random = fuzz_random,
                                 .host_name = "fuzzhost",
                                 .version = "0.0.0" };
    struct dispatch *d = NULL;

    if (dispatch_new(&p, &d) < 0)
        abort();
    return d;
}
