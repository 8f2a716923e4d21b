/*
 * maps.c - read cPanel's domain maps for attribution (the I/O half of lib/attrib).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "daemon.h"
#include "log.h"
#include "state.h"

#define MAPS_FILE_MAX (64u << 20) /* /etc/userdomains of a very large host is a few MB */

static int
maps_add_file(struct attrib_maps *m, const char *path, bool owners)
{
    unsigned line = 0;
    size_t len = 0;
    char *buf = NULL;
    int r;

    if (!path || !path[0])
        return 0;
    r = state_read_path(path, MAPS_FILE_MAX, &buf, &len);
    if (r == -ENOENT) {
        log_emit(LOG_WARNING, 0, NULL, "%s: not found; %s", path,
                 owners ? "mailboxes will have no account" : "no local domains known");
        return 0;
    }
    if (r == -EINVAL)
        return log_emit(LOG_ERR, r, NULL, "%s: not a regular file", path);
    if (r < 0)
        return log_emit(LOG_ERR, r, NULL, "%s: cannot read", path);
    r = attrib_maps_add(m, buf, len, owners, &line);
    free(buf);
    if (r == -EBADMSG)
        return log_emit(LOG_ERR, r, NULL, "%s:%u: expected \"%s\"", path, line,
                        owners ? "domain: user" : "domain");
    return r < 0 ? log_emit(LOG_ERR, r, NULL, "%s: cannot load", path) : 0;
}

int
daemon_maps_load(const struct config *cfg, const uint8_t key[SIPHASH_KEY_LEN],
                 struct attrib_maps **ret)
{
    struct attrib_maps *m = attrib_maps_new(key);
    int r;

    if (!m)
        return -ENOMEM;
    r = maps_add_file(m, cfg->userdomains_file, true);
    if (r == 0)
        r = maps_add_file(m, cfg->localdomains_file, false);
    if (r < 0) {
        attrib_maps_free(m);
        return r;
    }
    *ret = m;
    return 0;
}

void
daemon_random_key(uint8_t key[SIPHASH_KEY_LEN])
{
    size_t got = 0;

    while (got < SIPHASH_KEY_LEN) {
        ssize_t n = getrandom(key + got, SIPHASH_KEY_LEN - got, 0);
        if (n > 0)
            got += (size_t)n;
        else if (errno != EINTR)
            break;
    }
    /* getrandom() cannot fail after boot on Linux >= 3.17; a weak key is still a key */
}
