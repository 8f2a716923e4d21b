#ifndef FLOODGATE_UTIL_H
#define FLOODGATE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define FG_MUST_CHECK     __attribute__((warn_unused_result))
#define FG_PRINTF(fi, ai) __attribute__((format(printf, fi, ai)))
#else
#define FG_MUST_CHECK
#define FG_PRINTF(fi, ai)
#endif

/* A slice of bytes owned by someone else; never NUL-terminated by contract. */
struct fg_str {
    const char *p;
    size_t len;
};

#define FG_STR_NULL ((struct fg_str){ NULL, 0 })

static inline struct fg_str
fg_str_make(const char *p, size_t len)
{
    return (struct fg_str){ p, len };
}

bool fg_str_eq(struct fg_str s, const char *lit);
bool fg_str_has_prefix(struct fg_str s, const char *lit);
bool fg_str_eq_nocase(struct fg_str a, struct fg_str b);

/*
 * Bounded readers: parse the whole of [p, p+len) or fail. No locale, no sign, no
 * whitespace. Return 0 and write @ret only on success, -EINVAL on a non-digit or empty
 * input, -ERANGE when the value does not fit.
 */
int util_parse_u64(const char *p, size_t len, uint64_t *ret);
int util_parse_u32(const char *p, size_t len, uint32_t *ret);

/*
 * Parse a duration such as "90s", "10m", "1h", "24h", "7d" or "250ms" into milliseconds.
 * A bare number means seconds. Returns 0, -EINVAL (syntax), -ERANGE (overflow or zero).
 */
int util_parse_duration_ms(const char *s, int64_t *ret);

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
int64_t util_days_from_civil(int64_t y, unsigned m, unsigned d);

/* Format epoch milliseconds as "YYYY-MM-DD HH:MM:SS" (UTC) into @buf (>= 20 bytes). */
void util_format_time(int64_t ms, char *buf, size_t size);

/* Overflow-checked size arithmetic: return false when the result would not fit. */
static inline bool
util_add_size(size_t a, size_t b, size_t *ret)
{
    return !__builtin_add_overflow(a, b, ret);
}

static inline bool
util_mul_size(size_t a, size_t b, size_t *ret)
{
    return !__builtin_mul_overflow(a, b, ret);
}

/* A byte buffer with a hard cap set at init; appends past the cap fail with -E2BIG. */
struct strbuf {
    char *p;
    size_t len;
    size_t cap;
    size_t max;
};

void strbuf_init(struct strbuf *b, size_t max);
void strbuf_done(struct strbuf *b);
void strbuf_reset(struct strbuf *b);
int strbuf_append(struct strbuf *b, const char *p, size_t len);
int strbuf_appends(struct strbuf *b, const char *s);
int strbuf_printf(struct strbuf *b, const char *fmt, ...) FG_PRINTF(2, 3);
/*
 * Append @p as the body of a JSON string (without quotes): the one rendering of log text
 * in every JSON output (audit log, control answers, replay, alerts). Valid UTF-8 is kept
 * as UTF-8; bytes that are not valid UTF-8 become U+FFFD each (util_utf8_len decides);
 * '"', '\\', controls, DEL, C1 controls, bidirectional controls and U+2028/U+2029 are
 * \uXXXX escapes, so the text is valid JSON and safe to print. -E2BIG leaves @b as it was.
 */
int strbuf_append_json(struct strbuf *b, const char *p, size_t len);
/*
 * Append @p as HTML text, safe in element content and in a quoted attribute value alike
 * (the replay report): valid UTF-8 kept; a byte that is not valid UTF-8 becomes U+FFFD;
 * '&', '<', '>', '"' and '\'' are character references; C0 controls, DEL, C1 controls,
 * bidirectional controls and U+2028/U+2029 are shown as the visible text "\uXXXX", so log
 * text can neither open markup nor reorder what surrounds it. -E2BIG leaves @b as it was.
 */
int strbuf_append_html(struct strbuf *b, const char *p, size_t len);
/*
 * Append @p for people (journal, alert text): printable ASCII and well-formed UTF-8 as
 * they are, a backslash doubled, any other byte as \xHH. Identities keep their exact bytes
 * (a script directory may hold anything but NUL); this is only how they are shown.
 */
int strbuf_append_display(struct strbuf *b, const char *p, size_t len);
/* NUL-terminated view of the buffer ("" when empty). Borrowed until the next append. */
const char *strbuf_cstr(struct strbuf *b);

/*
 * Length of the well-formed UTF-8 sequence at @p (1-4; no overlongs, surrogates or code
 * points above U+10FFFF) within @avail bytes, or 0 when the bytes there are not one.
 */
size_t util_utf8_len(const unsigned char *p, size_t avail);

/*
 * [@p, @p + @len) made safe for a terminal into @out (NUL-terminated when @size > 0):
 * printable ASCII and valid UTF-8 kept; C0 controls, DEL and each byte that is not valid
 * UTF-8 (raw C1 bytes included) as "\xHH"; C1 controls, bidirectional controls and
 * U+2028/U+2029 as "\uXXXX"; '\\' as "\\\\". Output that does not fit is cut at a
 * whole unit and ends in "...". Returns the length of the whole rendering (snprintf-like;
 * @size 0 only measures).
 */
size_t util_term_escape(char *out, size_t size, const char *p, size_t len);

/* Append util_term_escape's whole rendering of @p; -E2BIG leaves @b as it was. */
int strbuf_append_term(struct strbuf *b, const char *p, size_t len);

/* @n bytes as 2 * @n lowercase hex digits and a NUL into @out. */
void util_hex(char *out, const uint8_t *p, size_t n);
/* Exactly 2 * @n lowercase hex digits of [@s, @s + @len) into @n bytes: 0 or -EBADMSG. */
int util_unhex(const char *s, size_t len, uint8_t *out, size_t n);

/* Copy a slice into a fixed buffer with a terminator; -E2BIG if it does not fit. */
int util_copy_str(char *dst, size_t size, struct fg_str s);

static inline char
util_ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

#endif
