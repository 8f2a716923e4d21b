/*
 * util.c - byte slices, bounded number readers, a capped string buffer, time formatting.
 *
 * Everything here is pure and allocation-free except strbuf, whose growth is bounded by
 * the maximum given at init: an append that would pass it fails with -E2BIG and leaves
 * the buffer as it was.
 */
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool
fg_str_eq(struct fg_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && (n == 0 || memcmp(s.p, lit, n) == 0);
}

bool
fg_str_has_prefix(struct fg_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len >= n && memcmp(s.p, lit, n) == 0;
}

bool
fg_str_eq_nocase(struct fg_str a, struct fg_str b)
{
    if (a.len != b.len)
        return false;
    for (size_t i = 0; i < a.len; i++)
        if (util_ascii_lower(a.p[i]) != util_ascii_lower(b.p[i]))
            return false;
    return true;
}

int
util_parse_u64(const char *p, size_t len, uint64_t *ret)
{
    uint64_t v = 0;

    if (len == 0)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -EINVAL;
        if (__builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, (uint64_t)(p[i] - '0'), &v))
            return -ERANGE;
    }
    *ret = v;
    return 0;
}

int
util_parse_u32(const char *p, size_t len, uint32_t *ret)
{
    uint64_t v;
    int r = util_parse_u64(p, len, &v);

    if (r < 0)
        return r;
    if (v > UINT32_MAX)
        return -ERANGE;
    *ret = (uint32_t)v;
    return 0;
}

int
util_parse_duration_ms(const char *s, int64_t *ret)
{
    static const struct {
        const char *suffix;
        uint64_t ms;
    } units[] = {
        { "ms", 1 },      { "s", 1000 },     { "m", 60000 },
        { "h", 3600000 }, { "d", 86400000 }, { "", 1000 },
    };
    size_t n = strlen(s), digits = 0;
    uint64_t v, ms;
    int r;

    while (digits < n && s[digits] >= '0' && s[digits] <= '9')
        digits++;
    r = util_parse_u64(s, digits, &v);
    if (r < 0)
        return r;
    for (size_t i = 0; i < N_ELEMS(units); i++) {
        if (strcmp(s + digits, units[i].suffix) != 0)
            continue;
        if (__builtin_mul_overflow(v, units[i].ms, &ms) || ms > INT64_MAX)
            return -ERANGE;
        if (ms == 0)
            return -ERANGE;
        *ret = (int64_t)ms;
        return 0;
    }
    return -EINVAL;
}

int64_t
util_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? (int64_t)m - 3 : (int64_t)m + 9) + 2) / 5 + (int64_t)d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void
util_format_time(int64_t ms, char *buf, size_t size)
{
    int64_t s = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
    int64_t z = (s >= 0 ? s / 86400 : (s - 86399) / 86400);
    int64_t sod = s - z * 86400;
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    (void)snprintf(buf, size, "%04lld-%02lld-%02lld %02lld:%02lld:%02lld", (long long)y,
                   (long long)m, (long long)d, (long long)(sod / 3600), (long long)(sod / 60 % 60),
                   (long long)(sod % 60));
}

void
strbuf_init(struct strbuf *b, size_t max)
{
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void
strbuf_done(struct strbuf *b)
{
    free(b->p);
    strbuf_init(b, b->max);
}

void
strbuf_reset(struct strbuf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

static int
strbuf_reserve(struct strbuf *b, size_t extra)
{
    size_t need, cap;
    char *p;

    if (!util_add_size(b->len, extra, &need) || !util_add_size(need, 1, &need))
        return -E2BIG;
    if (need > b->max + 1)
        return -E2BIG;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    p = realloc(b->p, cap);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

int
strbuf_append(struct strbuf *b, const char *p, size_t len)
{
    int r = strbuf_reserve(b, len);

    if (r < 0)
        return r;
    if (len)
        memcpy(b->p + b->len, p, len);
    b->len += len;
    b->p[b->len] = '\0';
    return 0;
}

int
strbuf_appends(struct strbuf *b, const char *s)
{
    return strbuf_append(b, s, strlen(s));
}

int
strbuf_printf(struct strbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n, r;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    r = strbuf_reserve(b, (size_t)n);
    if (r < 0)
        return r;
    va_start(ap, fmt);
    (void)vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int
strbuf_append_json(struct strbuf *b, const char *p, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t start = b->len;
    int r = 0;

    for (size_t i = 0; i < len && r == 0; i++) {
        unsigned char c = (unsigned char)p[i];
        char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };

        if (c == '"' || c == '\\') {
            char two[2] = { '\\', (char)c };
            r = strbuf_append(b, two, 2);
        } else if (c == '\n') {
            r = strbuf_append(b, "\\n", 2);
        } else if (c == '\t') {
            r = strbuf_append(b, "\\t", 2);
        } else if (c < 0x20 || c >= 0x7f) { /* keeps the output valid UTF-8 */
            r = strbuf_append(b, esc, 6);
        } else {
            r = strbuf_append(b, (const char *)&p[i], 1);
        }
    }
    if (r < 0) {
        b->len = start;
        if (b->p)
            b->p[start] = '\0';
    }
    return r;
}

const char *
strbuf_cstr(struct strbuf *b)
{
    return b->p ? b->p : "";
}

int
util_copy_str(char *dst, size_t size, struct fg_str s)
{
    if (size == 0 || s.len >= size)
        return -E2BIG;
    if (s.len)
        memcpy(dst, s.p, s.len);
    dst[s.len] = '\0';
    return 0;
}

int
strbuf_append_display(struct strbuf *b, const char *p, size_t len)
{
    size_t start = b->len;
    int r = 0;

    for (size_t i = 0; i < len && r == 0;) {
        unsigned char c = (unsigned char)p[i];
        size_t n = c >= 0x80 ? util_utf8_len((const unsigned char *)p + i, len - i) : 0;

        if (n > 0) {
            r = strbuf_append(b, p + i, n);
            i += n;
            continue;
        }
        if (c == '\\')
            r = strbuf_append(b, "\\\\", 2);
        else if (c >= 0x20 && c < 0x7f)
            r = strbuf_append(b, p + i, 1);
        else
            r = strbuf_printf(b, "\\x%02x", c);
        i++;
    }
    if (r < 0) {
        b->len = start;
        if (b->p)
            b->p[start] = '\0';
    }
    return r;
}

size_t
util_utf8_len(const unsigned char *p, size_t avail)
{
    unsigned c = p[0];
    size_t n;
    unsigned min;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    unsigned cp = c & (0x7fu >> n);
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

void
util_hex(char *out, const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

int
util_unhex(const char *s, size_t len, uint8_t *out, size_t n)
{
    if (len != 2 * n)
        return -EBADMSG;
    for (size_t i = 0; i < 2 * n; i++) {
        char c = s[i];
        unsigned v;
        if (c >= '0' && c <= '9')
            v = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = (unsigned)(c - 'a' + 10);
        else
            return -EBADMSG;
        if (i % 2 == 0)
            out[i / 2] = (uint8_t)(v << 4);
        else
            out[i / 2] = (uint8_t)(out[i / 2] | v);
    }
    return 0;
}
