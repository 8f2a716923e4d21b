/*
 * frozen.c - frozen messages against Exim's auto_thaw and timeout_frozen_after (frozen.h).
 */
#include "frozen.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

#define FROZEN_TIME_MAX_MS (100LL * 365 * 86400000LL) /* beyond any sane setting */

int
frozen_parse_exim_time(const char *s, size_t len, int64_t *ret_ms)
{
    const char *end = s + len;
    int64_t total = 0;

    if (len == 0)
        return -EINVAL;
    while (s < end) {
        int64_t v = 0, unit;

        if (*s < '0' || *s > '9')
            return -EINVAL;
        while (s < end && *s >= '0' && *s <= '9') {
            v = v * 10 + (*s++ - '0');
            if (v > FROZEN_TIME_MAX_MS / 1000)
                return -EINVAL;
        }
        if (s == end)
            return -EINVAL; /* Exim wants a unit after every number */
        switch (*s++) {
        case 'w':
            unit = 7 * 86400000LL;
            break;
        case 'd':
            unit = 86400000LL;
            break;
        case 'h':
            unit = 3600000LL;
            break;
        case 'm':
            unit = 60000LL;
            break;
        case 's':
            unit = 1000LL;
            break;
        default:
            return -EINVAL;
        }
        if (v > (FROZEN_TIME_MAX_MS - total) / unit)
            return -EINVAL;
        total += v * unit;
    }
    *ret_ms = total;
    return 0;
}

int
frozen_parse_bp(const char *out, size_t len, struct frozen_limits *ret)
{
    const char *p = out, *end = out + len;
    bool have_thaw = false, have_timeout = false;
    struct frozen_limits l = { 0, 0 };

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end, *eq;
        size_t nlen;
        int64_t *slot;
        bool *seen;

        if (le == p) {
            p = le + 1;
            continue;
        }
        eq = memchr(p, '=', (size_t)(le - p));
        if (!eq || eq == p || eq[-1] != ' ' || eq + 2 > le || eq[1] != ' ')
            return -EINVAL;
        nlen = (size_t)(eq - 1 - p);
        if (nlen == 9 && memcmp(p, "auto_thaw", 9) == 0) {
            slot = &l.auto_thaw_ms;
            seen = &have_thaw;
        } else if (nlen == 20 && memcmp(p, "timeout_frozen_after", 20) == 0) {
            slot = &l.timeout_ms;
            seen = &have_timeout;
        } else {
            return -EINVAL;
        }
        if (*seen || frozen_parse_exim_time(eq + 2, (size_t)(le - eq - 2), slot) < 0)
            return -EINVAL;
        *seen = true;
        p = nl ? nl + 1 : end;
    }
    if (!have_thaw || !have_timeout)
        return -EINVAL;
    *ret = l;
    return 0;
}

int64_t
frozen_msgid_time(const char *msgid)
{
    int64_t t = 0;

    if (!spawn_valid_msgid(msgid))
        return -1;
    for (size_t i = 0; i < 6; i++) {
        char c = msgid[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'A' && c <= 'Z' ? c - 'A' + 10
                : c >= 'a' && c <= 'z' ? c - 'a' + 36
                                       : -1;
        if (d < 0)
            return -1;
        t = t * 62 + d;
    }
    return t * 1000;
}

int
frozen_fate(const struct frozen_limits *l, const char *msgid, int64_t frozen_ms,
            int64_t fallback_ms, struct frozen_fate *ret)
{
    int64_t from = frozen_ms > 0 ? frozen_ms : fallback_ms, arrived = frozen_msgid_time(msgid);
    bool have = false;

    memset(ret, 0, sizeof(*ret));
    if (l->auto_thaw_ms > 0 && from > 0) {
        ret->deadline_ms = from + l->auto_thaw_ms;
        ret->warn_ms = from + l->auto_thaw_ms / 100 * FROZEN_WARN_PCT +
                       l->auto_thaw_ms % 100 * FROZEN_WARN_PCT / 100;
        ret->thaw = true;
        have = true;
    }
    if (l->timeout_ms > 0 && arrived >= 0) {
        int64_t deadline = arrived + l->timeout_ms;
        if (!have || deadline < ret->deadline_ms) {
            ret->deadline_ms = deadline;
            ret->warn_ms = arrived + l->timeout_ms / 100 * FROZEN_WARN_PCT +
                           l->timeout_ms % 100 * FROZEN_WARN_PCT / 100;
            ret->thaw = false;
            have = true;
        }
    }
    return have ? 0 : -ENOENT;
}

int64_t
frozen_nearer_ms(const struct frozen_limits *l)
{
    int64_t m = 0;

    if (l->auto_thaw_ms > 0)
        m = l->auto_thaw_ms;
    if (l->timeout_ms > 0 && (m == 0 || l->timeout_ms < m))
        m = l->timeout_ms;
    return m;
}

size_t
frozen_select(const struct frozen_limits *l, const char *const *ids, const int64_t *frozen_ms,
              size_t n, int64_t fallback_ms, int64_t warned_until_ms, int64_t now_ms,
              struct frozen_warning *ret, size_t max, size_t *ret_total, int64_t *ret_until)
{
    int64_t until = now_ms + frozen_nearer_ms(l) / 10;
    size_t listed = 0, total = 0;
    bool due = false;

    *ret_total = 0;
    for (size_t i = 0; i < n && !due; i++) {
        struct frozen_fate f;
        due = frozen_fate(l, ids[i], frozen_ms[i], fallback_ms, &f) == 0 &&
              f.warn_ms > warned_until_ms && f.warn_ms <= now_ms;
    }
    if (!due)
        return 0;
    for (size_t i = 0; i < n; i++) {
        struct frozen_fate f;
        if (frozen_fate(l, ids[i], frozen_ms[i], fallback_ms, &f) < 0 ||
            f.warn_ms <= warned_until_ms || f.warn_ms > until)
            continue; /* no limit, warned already, or not soon */
        total++;
        if (listed < max)
            ret[listed++] = (struct frozen_warning){ i, f };
    }
    *ret_total = total;
    *ret_until = until;
    return listed;
}

int64_t
frozen_check_interval_ms(const struct frozen_limits *l)
{
    int64_t m = frozen_nearer_ms(l);

    if (m == 0)
        return 0;
    m /= 10;
    return m < 1000 ? 1000 : m > 60000 ? 60000 : m;
}

static void
frozen_query_done(void *ctx, const struct spawn_result *r)
{
    struct frozen_query *q = ctx;
    struct frozen_limits l;
    char why[SPAWN_OUTPUT_MAX + 160];

    if (!spawn_result_ok(r)) {
        char st[128];
        spawn_result_describe(r, st, sizeof(st));
        (void)snprintf(why, sizeof(why), "exim -bP: %s%s%.200s", st, r->err_len ? ": " : "",
                       r->err_text);
        q->done(q->ctx, -EIO, NULL, why);
        return;
    }
    if (frozen_parse_bp(r->out, r->out_len, &l) < 0) {
        (void)snprintf(why, sizeof(why), "exim -bP: output not understood: %.200s", r->out);
        q->done(q->ctx, -EINVAL, NULL, why);
        return;
    }
    q->done(q->ctx, 0, &l, "");
}

int
frozen_query_limits(struct frozen_query *q, struct spawner *s, const char *exim_path,
                    const char *conf, int64_t timeout_ms)
{
    char *argv[7];
    size_t k = 0;

    if (!q || !q->done || !s || !exim_path || exim_path[0] != '/')
        return -EINVAL;
    argv[k++] = (char *)(uintptr_t)exim_path;
    if (conf) {
        argv[k++] = (char *)(uintptr_t) "-C";
        argv[k++] = (char *)(uintptr_t)conf;
    }
    argv[k++] = (char *)(uintptr_t) "-bP";
    argv[k++] = (char *)(uintptr_t) "auto_thaw";
    argv[k++] = (char *)(uintptr_t) "timeout_frozen_after";
    argv[k] = NULL;
    return spawner_run(s, argv, timeout_ms, frozen_query_done, q);
}
