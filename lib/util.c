/*
 * util.c - byte slices, bounded number readers, a capped string buffer, time formatting,
 * the two renderings of log text (JSON strings; terminals).
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

/*
 * Code points that are valid UTF-8 but steer a terminal or a reader: C1 controls (CSI is
 * U+009B), the bidirectional marks, embeddings, overrides and isolates (U+061C, U+200E,
 * U+200F, U+202A..U+202E, U+2066..U+2069) and the line and paragraph separators.
 */
static bool
util_cp_steers(unsigned cp)
{
    return (cp >= 0x80 && cp <= 0x9f) || cp == 0x61c || cp == 0x200e || cp == 0x200f ||
           (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/* The code point of the well-formed sequence of @n bytes at @p. */
static unsigned
util_utf8_cp(const unsigned char *p, size_t n)
{
    unsigned cp = n == 1 ? p[0] : p[0] & (0x7fu >> n);

    for (size_t i = 1; i < n; i++)
        cp = (cp << 6) | (p[i] & 0x3fu);
    return cp;
}

/* The escape of @cp in one output syntax, or NULL when the walk below decides. */
typedef const char *(*util_escape_fn)(unsigned cp);

/*
 * Append @p as UTF-8 text: a byte that is not UTF-8 becomes U+FFFD, a code point @escape
 * names becomes its escape, a control or steering code point \uXXXX, any other is copied.
 * On failure the buffer is as it was.
 */
static int
strbuf_append_escaped(struct strbuf *b, const char *p, size_t len, util_escape_fn escape)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)p;
    size_t start = b->len;
    int r = 0;

    for (size_t i = 0; i < len && r == 0;) {
        size_t n = util_utf8_len(s + i, len - i);
        unsigned cp = n ? util_utf8_cp(s + i, n) : 0xfffd;
        const char *e = n ? escape(cp) : NULL;
        char esc[6] = { '\\', 'u', hex[cp >> 12 & 15], hex[cp >> 8 & 15], hex[cp >> 4 & 15],
                        hex[cp & 15] };

        if (n == 0)
            r = strbuf_append(b, "\xef\xbf\xbd", 3); /* not UTF-8: U+FFFD, as alerts */
        else if (e)
            r = strbuf_appends(b, e);
        else if (cp < 0x20 || cp == 0x7f || util_cp_steers(cp))
            r = strbuf_append(b, esc, 6);
        else
            r = strbuf_append(b, p + i, n);
        i += n ? n : 1;
    }
    if (r < 0) {
        b->len = start;
        if (b->p)
            b->p[start] = '\0';
    }
    return r;
}

static const char *
util_json_escape(unsigned cp)
{
    switch (cp) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\n':
        return "\\n";
    case '\t':
        return "\\t";
    default:
        return NULL;
    }
}

static const char *
util_html_escape(unsigned cp)
{
    switch (cp) {
    case '&':
        return "&amp;";
    case '<':
        return "&lt;";
    case '>':
        return "&gt;";
    case '"':
        return "&quot;";
    case '\'':
        return "&#39;";
    default:
        return NULL;
    }
}

int
strbuf_append_json(struct strbuf *b, const char *p, size_t len)
{
    return strbuf_append_escaped(b, p, len, util_json_escape);
}

int
strbuf_append_html(struct strbuf *b, const char *p, size_t len)
{
    return strbuf_append_escaped(b, p, len, util_html_escape);
}

/* One unit of terminal output for the bytes at @s: its text into @u, its input length. */
static size_t
util_term_unit(const unsigned char *s, size_t avail, char u[8], size_t *ret_len)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = util_utf8_len(s, avail);
    unsigned cp = n ? util_utf8_cp(s, n) : 0;

    if (n == 0 || cp < 0x20 || cp == 0x7f) {
        memcpy(u, (const char[]){ '\\', 'x', hex[s[0] >> 4], hex[s[0] & 15] }, 4);
        *ret_len = 4;
        return 1;
    }
    if (cp == '\\') {
        memcpy(u, "\\\\", 2);
        *ret_len = 2;
    } else if (util_cp_steers(cp)) {
        memcpy(u, (const char[]){ '\\', 'u', hex[cp >> 12 & 15], hex[cp >> 8 & 15],
                                  hex[cp >> 4 & 15], hex[cp & 15] },
               6);
        *ret_len = 6;
    } else {
        memcpy(u, s, n);
        *ret_len = n;
    }
    return n;
}

size_t
util_term_escape(char *out, size_t size, const char *p, size_t len)
{
    const unsigned char *s = (const unsigned char *)p;
    size_t need = 0, used = 0, room;
    char u[8];

    for (size_t i = 0, ulen; i < len; need += ulen)
        i += util_term_unit(s + i, len - i, u, &ulen);
    if (size == 0)
        return need;
    /* too long: whole units up to room for "..." */
    room = need < size ? need : (size > 4 ? size - 4 : size - 1);
    for (size_t i = 0, ulen, in; i < len; i += in) {
        in = util_term_unit(s + i, len - i, u, &ulen);
        if (used + ulen > room)
            break;
        memcpy(out + used, u, ulen);
        used += ulen;
    }
    if (need >= size && size > 4) {
        memcpy(out + used, "...", 3);
        used += 3;
    }
    out[used] = '\0';
    return need;
}

int
strbuf_append_term(struct strbuf *b, const char *p, size_t len)
{
    size_t need = util_term_escape(NULL, 0, p, len);
    int r = strbuf_reserve(b, need);

    if (r < 0)
        return r;
    (void)util_term_escape(b->p + b->len, need + 1, p, len);
    b->len += need;
    return 0;
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
