/*
 * eximlog.c - the Exim main log parser and record splitter (exim-log-format.md).
 *
 * eximlog_parse() reads one complete record strictly from left to right: the prefix
 * (date, time, optional .mmm, +HHMM, [pid], each optional part on its own), an optional
 * message id, then the body by record type. Unknown record types are EXIM_OTHER, never
 * errors.
 *
 * Arrivals are read from Exim's grammar only (5.1): the sender, HELO, id=, subject,
 * "from" and the recipients are chosen by whoever sent the mail, so nothing is found by
 * searching for " A=" or " S=". Every bracketed address that could end the H= value
 * starts one reading: the peer part in Exim's order, S=, then a tail that must be
 * exactly M8S= DKIM= ARC DMARC RT= Q= id= T= from for, each value with its own grammar
 * (T= closed by the first unescaped quote; addresses with balanced quotes under Exim's
 * backslash rule, which escapes the next byte inside and outside quotes). The first
 * reading that holds is taken; another that holds and differs is Exim's own ambiguity (a
 * HELO holding ") [ip]:port ...") and becomes ev->alt; a candidate inside the data of a
 * reading whose own reading fails is just data. With no reading, the record is anomalous
 * and names no one.
 *
 * The joiner turns physical lines into records (1.3, 9.1): continuation lines are
 * appended, empty lines dropped. An arrival whose sender, "from" or for-list ends inside
 * a quote (the only fields Exim writes raw, so the only ones a newline can be in) goes on
 * until the quote closes; a quote in a HELO, id= or T= opens nothing. A cwd= entry whose
 * first line lacks " N args:" (a directory with a newline) takes every line within the
 * span one write can hold, EXIMLOG_RECORD_MAX: the name can write whole lines and close
 * its entry early, so nothing after it tells where the write ends. A swallowed line never
 * starts a record. What a directory name writes after a first line that looks complete
 * leaves a remnant ending in the genuine " N args: ..." (EXIM_F_FORGED_TAIL).
 *
 * Pure: no syscalls, no allocation, no logging. Slices point into the caller's text.
 */
#include "eximlog.h"

#include <errno.h>
#include <string.h>

#define EXIMLOG_OVERFLOW_MARK "**** log string overflowed log buffer ****"

static bool eximlog_ends_overflow(const char *p, const char *end);

/* The first overflow marker in [p, end), or NULL (memchr for its '*': memmem's set-up for a
 * 42-byte needle costs more than the scan on the short texts asked). */
static const char *
eximlog_find_overflow(const char *p, const char *end)
{
    static const size_t n = sizeof(EXIMLOG_OVERFLOW_MARK) - 1;
    while ((size_t)(end - p) >= n && (p = memchr(p, '*', (size_t)(end - p) - n + 1)) != NULL) {
        if (memcmp(p, EXIMLOG_OVERFLOW_MARK, n) == 0)
            return p;
        p++;
    }
    return NULL;
}

/* The first " args:" at or after @q in [q, end), or NULL (by its colon, as colons are few). */
static const char *
eximlog_next_args(const char *q, const char *end)
{
    const char *c = q + 5;
    while (c < end && (c = memchr(c, ':', (size_t)(end - c))) != NULL) {
        if (memcmp(c - 5, " args", 5) == 0)
            return c - 5;
        c++;
    }
    return NULL;
}

/* Byte classes: 1 = [0-9A-Za-z] (message id digits), 2 = decimal digit, 4 = hex digit. */
static const unsigned char eximlog_class[256] = {
    ['0'] = 7, ['1'] = 7, ['2'] = 7, ['3'] = 7, ['4'] = 7, ['5'] = 7, ['6'] = 7, ['7'] = 7,
    ['8'] = 7, ['9'] = 7, ['A'] = 5, ['B'] = 5, ['C'] = 5, ['D'] = 5, ['E'] = 5, ['F'] = 5,
    ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
    ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1,
    ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 5, ['b'] = 5, ['c'] = 5, ['d'] = 5,
    ['e'] = 5, ['f'] = 5, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
    ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1,
    ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static inline bool
eximlog_is_alnum(char c)
{
    return (eximlog_class[(unsigned char)c] & 1) != 0;
}

static inline bool
eximlog_is_digit(char c)
{
    return (eximlog_class[(unsigned char)c] & 2) != 0;
}

static inline bool
eximlog_is_hex(char c)
{
    return (eximlog_class[(unsigned char)c] & 4) != 0;
}

/* Literal prefix test; the constant length lets the compiler inline the comparison. */
#define EXIMLOG_STARTS(p, end, lit)                                                                \
    ((size_t)((end) - (p)) >= sizeof(lit) - 1 && memcmp((p), (lit), sizeof(lit) - 1) == 0)

static inline struct fg_str
eximlog_slice(const char *b, const char *e)
{
    return fg_str_make(b, (size_t)(e - b));
}

/* Read exactly @n digits at @p into @ret. */
static bool
eximlog_digits(const char *p, size_t n, unsigned *ret)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!eximlog_is_digit(p[i]))
            return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    *ret = v;
    return true;
}

/*
 * Quote-aware token: from @p up to the first space outside double quotes (or @end).
 * Inside quotes a backslash escapes the next byte. *@open tells whether the text ended
 * inside a quote.
 */
static const char *
eximlog_qtoken(const char *p, const char *end, bool *open)
{
    bool inq = false;
    while (p < end) {
        if (!inq) {
            const char *sp = memchr(p, ' ', (size_t)(end - p));
            const char *lim = sp ? sp : end;
            const char *q = memchr(p, '"', (size_t)(lim - p));
            if (!q) {
                p = lim;
                break;
            }
            inq = true;
            p = q + 1;
        } else {
            char c = *p;
            if (c == '\\')
                p += (end - p >= 2) ? 2 : 1;
            else if (c == '"') {
                inq = false;
                p++;
            } else
                p++;
        }
    }
    if (open)
        *open = inq;
    return p;
}

bool
eximlog_msgid_valid(struct fg_str id)
{
    size_t a, b;
    if (id.len == 16) {
        a = 6;
        b = 6;
    } else if (id.len == 23) {
        a = 6;
        b = 11;
    } else
        return false;
    if (!id.p || id.p[a] != '-' || id.p[a + 1 + b] != '-')
        return false;
    /* three runs of base-62 digits around the two dashes (hot path: no per-byte branch) */
    unsigned ok = 1;
    for (size_t i = 0; i < a; i++)
        ok &= eximlog_class[(unsigned char)id.p[i]];
    for (size_t i = a + 1; i < a + 1 + b; i++)
        ok &= eximlog_class[(unsigned char)id.p[i]];
    for (size_t i = a + 2 + b; i < id.len; i++)
        ok &= eximlog_class[(unsigned char)id.p[i]];
    if (!(ok & 1))
        return false;
    return true;
}

static const char *const eximlog_type_names[EXIM_TYPE__MAX] = {
    [EXIM_OTHER] = "other",
    [EXIM_ARRIVAL] = "arrival",
    [EXIM_DELIVERY] = "delivery",
    [EXIM_DEFER] = "defer",
    [EXIM_FAIL] = "fail",
    [EXIM_COMPLETED] = "completed",
    [EXIM_FROZEN] = "frozen",
    [EXIM_UNFROZEN] = "unfrozen",
    [EXIM_MSG_OTHER] = "msg_other",
    [EXIM_CWD] = "cwd",
    [EXIM_AUTH_FAIL] = "auth_fail",
    [EXIM_REJECT] = "reject",
    [EXIM_CONNECTION] = "connection",
    [EXIM_QUEUE_RUN] = "queue_run",
};

const char *
eximlog_type_name(enum exim_type t)
{
    if ((unsigned)t >= EXIM_TYPE__MAX)
        return "unknown";
    return eximlog_type_names[t];
}

static const char *eximlog_addr_token(const char *p, const char *end, bool *open, bool *at);

int
eximlog_next_addr(struct fg_str list, size_t *pos, struct fg_str *ret_addr)
{
    if (list.len == 0)
        return 0;
    const char *end = list.p + list.len;
    while (*pos < list.len) {
        const char *p = list.p + *pos;
        bool open;
        while (p < end && (*p == ' ' || *p == '\n' || *p == '\t'))
            p++;
        if (p >= end) {
            *pos = list.len;
            return 0;
        }
        const char *e = eximlog_addr_token(p, end, &open, NULL);
        *pos = (size_t)(e - list.p);
        if ((size_t)(e - p) == 7 && memcmp(p, "<trunc>", 7) == 0)
            continue;
        *ret_addr = eximlog_slice(p, e);
        return 1;
    }
    return 0;
}

struct fg_str
eximlog_addr_domain(struct fg_str addr)
{
    const char *at = NULL;
    bool inq = false;
    if (addr.len == 0)
        return addr;
    /* a backslash escapes the next byte inside and outside quotes (parse.c) */
    for (size_t i = 0; i < addr.len; i++) {
        char c = addr.p[i];
        if (c == '\\') {
            i++;
        } else if (c == '"') {
            inq = !inq;
        } else if (!inq && c == '@') {
            at = addr.p + i;
        }
    }
    if (!at)
        return fg_str_make(addr.p + addr.len, 0);
    const char *e = addr.p + addr.len;
    if (e > at + 1 && e[-1] == '>')
        e--;
    return eximlog_slice(at + 1, e);
}

/* ---- prefix ---------------------------------------------------------------------- */

static bool
eximlog_leap(unsigned y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/*
 * Parse the prefix into @ev; returns the body start, or NULL when there is no valid
 * date and time.
 */
static const char *
eximlog_prefix(const char *p, const char *end, struct exim_event *ev)
{
    static const unsigned char mdays[13] = { 0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    unsigned y, mo, d, h, mi, s, ms = 0;

    if (end - p < 19 || p[4] != '-' || p[7] != '-' || p[10] != ' ' || p[13] != ':' || p[16] != ':')
        return NULL;
    if (!eximlog_digits(p, 4, &y) || !eximlog_digits(p + 5, 2, &mo) ||
        !eximlog_digits(p + 8, 2, &d) || !eximlog_digits(p + 11, 2, &h) ||
        !eximlog_digits(p + 14, 2, &mi) || !eximlog_digits(p + 17, 2, &s))
        return NULL;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo] || (mo == 2 && d == 29 && !eximlog_leap(y)) ||
        h > 23 || mi > 59 || s > 60)
        return NULL;
    ev->time = fg_str_make(p, 19);
    p += 19;
    if (end - p >= 4 && p[0] == '.' && eximlog_digits(p + 1, 3, &ms))
        p += 4;

    int64_t t = util_days_from_civil(y, mo, d) * 86400000 + (int64_t)h * 3600000 +
                (int64_t)mi * 60000 + (int64_t)s * 1000 + ms;
    if (p < end && *p != ' ')
        return NULL;
    if (p < end)
        p++;
    /* zone: "+HHMM " or "-HHMM " */
    if (end - p >= 5 && (p[0] == '+' || p[0] == '-') && (end - p == 5 || p[5] == ' ')) {
        unsigned zh, zm;
        if (eximlog_digits(p + 1, 2, &zh) && eximlog_digits(p + 3, 2, &zm) && zm < 60 && zh < 24) {
            int64_t off = (int64_t)zh * 3600000 + (int64_t)zm * 60000;
            t -= (p[0] == '+') ? off : -off;
            p += (end - p == 5) ? 5 : 6;
        }
    }
    ev->ts_ms = t;
    /* pid: "[digits] " */
    if (p < end && *p == '[') {
        const char *q = p + 1;
        while (q < end && q - p <= 11 && eximlog_is_digit(*q))
            q++;
        /* at most 11 digits: a uint64_t cannot overflow here */
        uint64_t pid = 0;
        for (const char *c = p + 1; c < q; c++)
            pid = pid * 10 + (uint64_t)(*c - '0');
        if (q < end && *q == ']' && q > p + 1 && (q + 1 == end || q[1] == ' ') &&
            pid <= UINT32_MAX) {
            ev->has_pid = true;
            ev->pid = (uint32_t)pid;
            p = (q + 1 == end) ? q + 1 : q + 2;
        }
    }
    /* message id */
    size_t rest = (size_t)(end - p);
    for (size_t n = 16; n <= 23; n += 7) {
        if (rest >= n && (rest == n || p[n] == ' ') && p[6] == '-' &&
            eximlog_msgid_valid(fg_str_make(p, n))) {
            ev->msgid = fg_str_make(p, n);
            p += (rest == n) ? n : n + 1;
            break;
        }
    }
    return p;
}

/* ---- host parts (5.3) ------------------------------------------------------------ */

/* A syntactically valid IPv4 or IPv6 literal. */
static bool
eximlog_ip_valid(const char *p, size_t n)
{
    if (n == 0 || n > 45)
        return false;
    if (memchr(p, ':', n) == NULL) {
        unsigned parts = 0, digits = 0, v = 0;
        for (size_t i = 0; i < n; i++) {
            if (eximlog_is_digit(p[i])) {
                v = v * 10 + (unsigned)(p[i] - '0');
                if (++digits > 3 || v > 255)
                    return false;
            } else if (p[i] == '.' && digits > 0) {
                parts++;
                digits = 0;
                v = 0;
            } else
                return false;
        }
        return digits > 0 && parts == 3;
    }
    unsigned colons = 0, hex = 0;
    bool dbl = false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == ':') {
            colons++;
            if (i + 1 < n && p[i + 1] == ':') {
                if (dbl)
                    return false;
                dbl = true;
            }
            hex = 0;
        } else if (eximlog_is_hex(c)) {
            if (++hex > 4)
                return false;
        } else if (c == '.') {
            hex = 0; /* embedded IPv4 tail; checked loosely */
        } else
            return false;
    }
    return colons >= 2 && colons <= 7;
}

/*
 * Is [s, b) a possible host text before the peer literal: empty, "name ", "(helo) " or
 * "name (helo) "? The HELO may contain anything, the name no space.
 */
static bool
eximlog_host_form(const char *s, const char *b)
{
    if (s == b)
        return true;
    if (b[-1] != ' ')
        return false;
    const char *u = b - 1;
    if (u == s)
        return false;
    if (u[-1] == ')') {
        if (*s == '(')
            return true;
        const char *sp = memchr(s, ' ', (size_t)(u - s));
        return sp && sp + 1 < u && sp[1] == '(' && memchr(s, '(', (size_t)(sp - s)) == NULL;
    }
    return memchr(s, ' ', (size_t)(u - s)) == NULL && memchr(s, '(', (size_t)(u - s)) == NULL;
}

struct eximlog_cand {
    const char *ip, *ip_end; /* inside the brackets */
    const char *end;         /* past "]" and ":port" */
};

/*
 * The next bracketed address in [*@pos, @end) that may end the host part starting at @s:
 * a valid literal, an optional ":port", then the end of the record or one of @follow
 * (each starting right after the literal), and host text of a legal shape before it.
 * Advances *@pos past the '['. Returns false when there is none.
 */
static bool
eximlog_host_next(const char *s, const char **pos, const char *end, const char *const *follow,
                  struct eximlog_cand *ret)
{
    const char *p = *pos;
    while (p < end) {
        const char *b = memchr(p, '[', (size_t)(end - p));
        if (!b)
            break;
        p = b + 1;
        const char *cl = memchr(b, ']', (size_t)(end - b) < 48 ? (size_t)(end - b) : 48);
        if (!cl || !eximlog_ip_valid(b + 1, (size_t)(cl - b - 1)))
            continue;
        const char *e = cl + 1;
        if (e + 1 < end && *e == ':' && eximlog_is_digit(e[1])) {
            e++;
            while (e < end && eximlog_is_digit(*e))
                e++;
        }
        bool ok = (e == end);
        for (size_t i = 0; !ok && follow[i]; i++) {
            /* does [e, end) start with follow[i]? (short literals: inline) */
            const char *f = follow[i], *q = e;
            while (*f && q < end && *q == *f) {
                f++;
                q++;
            }
            ok = *f == '\0';
        }
        if (!ok || !eximlog_host_form(s, b))
            continue;
        *ret = (struct eximlog_cand){ b + 1, cl, e };
        *pos = p;
        return true;
    }
    *pos = end;
    return false;
}

static bool
eximlog_same(struct fg_str a, struct fg_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* ---- arrivals (5.1) -------------------------------------------------------------- */

/* Positions in the table of 5.1, doubled so the development-branch items fit between. */
enum {
    EXIMLOG_A_SENDER = 4,
    EXIMLOG_A_R = 6,
    EXIMLOG_A_DS = 8,
    EXIMLOG_A_H = 10,
    EXIMLOG_A_I = 12,
    EXIMLOG_A_TFO = 14,
    EXIMLOG_A_U = 16,
    EXIMLOG_A_CI = 18,
    EXIMLOG_A_P = 20,
    EXIMLOG_A_L = 22,
    EXIMLOG_A_SPF = 23,
    EXIMLOG_A_X = 24,
    EXIMLOG_A_CV = 26,
    EXIMLOG_A_DN = 28,
    EXIMLOG_A_SNI = 30,
    EXIMLOG_A_A = 32,
    EXIMLOG_A_PRDR = 34,
    EXIMLOG_A_PRX = 36,
    EXIMLOG_A_K = 38,
    EXIMLOG_A_S = 40,
    EXIMLOG_A_M8S = 42,
    EXIMLOG_A_DKIM = 44,
    EXIMLOG_A_ARC = 46,
    EXIMLOG_A_DMARC = 47,
    EXIMLOG_A_RT = 48,
    EXIMLOG_A_Q = 50,
    EXIMLOG_A_ID = 52,
    EXIMLOG_A_T = 54,
    EXIMLOG_A_FROM = 56,
    EXIMLOG_A_FOR = 58,
};

struct eximlog_tag {
    const char *name; /* "X=" for valued tags, "K" for bare flags */
    unsigned char len;
    unsigned char idx;
};

#define EXIMLOG_TAG(s, i)                                                                          \
    {                                                                                              \
        s, sizeof(s) - 1, i                                                                        \
    }

/* Grouped by first byte: eximlog_arrival_tag() looks only at its group (hot path). */
static const struct eximlog_tag eximlog_arrival_tags[] = {
    /* 0 */ EXIMLOG_TAG("A=", EXIMLOG_A_A),
    /* 1 */ EXIMLOG_TAG("ARC", EXIMLOG_A_ARC),
    /* 2 */ EXIMLOG_TAG("CV=", EXIMLOG_A_CV),
    /* 3 */ EXIMLOG_TAG("Ci=", EXIMLOG_A_CI),
    /* 4 */ EXIMLOG_TAG("DS", EXIMLOG_A_DS),
    /* 5 */ EXIMLOG_TAG("DN=", EXIMLOG_A_DN),
    /* 6 */ EXIMLOG_TAG("DKIM=", EXIMLOG_A_DKIM),
    /* 7 */ EXIMLOG_TAG("DMARC", EXIMLOG_A_DMARC),
    /* 8 */ EXIMLOG_TAG("DMARC=", EXIMLOG_A_DMARC),
    /* 9 */ EXIMLOG_TAG("H=", EXIMLOG_A_H),
    /* 10 */ EXIMLOG_TAG("I=", EXIMLOG_A_I),
    /* 11 */ EXIMLOG_TAG("K", EXIMLOG_A_K),
    /* 12 */ EXIMLOG_TAG("M8S=", EXIMLOG_A_M8S),
    /* 13 */ EXIMLOG_TAG("P=", EXIMLOG_A_P),
    /* 14 */ EXIMLOG_TAG("PRDR", EXIMLOG_A_PRDR),
    /* 15 */ EXIMLOG_TAG("PRX=", EXIMLOG_A_PRX),
    /* 16 */ EXIMLOG_TAG("Q=", EXIMLOG_A_Q),
    /* 17 */ EXIMLOG_TAG("R=", EXIMLOG_A_R),
    /* 18 */ EXIMLOG_TAG("RT=", EXIMLOG_A_RT),
    /* 19 */ EXIMLOG_TAG("S=", EXIMLOG_A_S),
    /* 20 */ EXIMLOG_TAG("SPF", EXIMLOG_A_SPF),
    /* 21 */ EXIMLOG_TAG("SPF=", EXIMLOG_A_SPF),
    /* 22 */ EXIMLOG_TAG("SNI=", EXIMLOG_A_SNI),
    /* 23 */ EXIMLOG_TAG("T=", EXIMLOG_A_T),
    /* 24 */ EXIMLOG_TAG("TFO", EXIMLOG_A_TFO),
    /* 25 */ EXIMLOG_TAG("TFO*", EXIMLOG_A_TFO),
    /* 26 */ EXIMLOG_TAG("U=", EXIMLOG_A_U),
    /* 27 */ EXIMLOG_TAG("X=", EXIMLOG_A_X),
    /* 28 */ EXIMLOG_TAG("for", EXIMLOG_A_FOR),
    /* 29 */ EXIMLOG_TAG("from", EXIMLOG_A_FROM),
    /* 30 */ EXIMLOG_TAG("id=", EXIMLOG_A_ID),
    /* 31 */ EXIMLOG_TAG("id*=", EXIMLOG_A_ID),
};

/* The rows of eximlog_arrival_tags[] that start with @c, as [*lo, *hi). */
static void
eximlog_tag_group(char c, size_t *lo, size_t *hi)
{
#define EXIMLOG_GROUP(ch, l, h)                                                                    \
    case ch:                                                                                       \
        *lo = l;                                                                                   \
        *hi = h;                                                                                   \
        return
    switch (c) {
        EXIMLOG_GROUP('A', 0, 2);
        EXIMLOG_GROUP('C', 2, 4);
        EXIMLOG_GROUP('D', 4, 9);
        EXIMLOG_GROUP('H', 9, 10);
        EXIMLOG_GROUP('I', 10, 11);
        EXIMLOG_GROUP('K', 11, 12);
        EXIMLOG_GROUP('M', 12, 13);
        EXIMLOG_GROUP('P', 13, 16);
        EXIMLOG_GROUP('Q', 16, 17);
        EXIMLOG_GROUP('R', 17, 19);
        EXIMLOG_GROUP('S', 19, 23);
        EXIMLOG_GROUP('T', 23, 26);
        EXIMLOG_GROUP('U', 26, 27);
        EXIMLOG_GROUP('X', 27, 28);
        EXIMLOG_GROUP('f', 28, 30);
        EXIMLOG_GROUP('i', 30, 32);
    default:
        *lo = *hi = 0;
    }
#undef EXIMLOG_GROUP
}

/*
 * Identify the arrival tag at @p (just after a space). Bare words must be followed by a
 * space or the end; "L" flags are any run of L followed by -.* characters. Returns the
 * table position (0: unknown) and the value start in *@val.
 */
static unsigned
eximlog_arrival_tag(const char *p, const char *end, const char **val)
{
    size_t n = (size_t)(end - p), lo, hi;

    if (n == 0)
        return 0;
    if (p[0] == 'L') {
        size_t i = 1;
        while (i < n && (p[i] == '-' || p[i] == '.' || p[i] == '*' || p[i] == 'L'))
            i++;
        if (i == n || p[i] == ' ') {
            *val = p + i;
            return EXIMLOG_A_L;
        }
    }
    eximlog_tag_group(p[0], &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        const struct eximlog_tag *t = &eximlog_arrival_tags[i];
        size_t k = 0;
        /* names are 1-6 bytes: compared inline (a memcmp call each costs more) */
        while (k < t->len && k < n && p[k] == t->name[k])
            k++;
        if (k < t->len)
            continue;
        /* valued tags end in '='; bare words must end at a space or the end */
        if (t->name[t->len - 1] == '=' || n == t->len || p[t->len] == ' ') {
            *val = p + t->len;
            return t->idx;
        }
    }
    return 0;
}

static const char *const eximlog_arrival_host_follow[] = {
    " I=", " TFO", " U=", " Ci=", " P=", NULL
};

/*
 * Exim's address token (parse.c, read_local_part): from @p to the first space outside
 * double quotes, or @end. A backslash escapes the next byte inside and outside quotes.
 * *@open: the text ended inside a quote or right after a backslash (a raw newline in the
 * address continues it on the next line). *@at: an '@' outside quotes.
 */
static const char *
eximlog_addr_token(const char *p, const char *end, bool *open, bool *at)
{
    bool inq = false, sawat = false;
    *open = false;
    if (!at) {
        /* hot path: a token with neither quote nor backslash ends at the next space */
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        const char *e = sp ? sp : end;
        if (!memchr(p, '"', (size_t)(e - p)) && !memchr(p, '\\', (size_t)(e - p)))
            return e;
    }
    while (p < end) {
        char c = *p;
        if (c == '\\') {
            if (end - p < 2) {
                *open = true;
                p = end;
                break;
            }
            p += 2;
            continue;
        }
        if (c == '"')
            inq = !inq;
        else if (!inq && c == ' ')
            break;
        else if (!inq && c == '@')
            sawat = true;
        p++;
    }
    if (inq)
        *open = true;
    if (at)
        *at = sawat;
    return p;
}

/*
 * Could [p, e) (a token with balanced quotes) be an address Exim logged? Outside quotes
 * and escapes the local part holds none of RFC 5322's specials ()<>,;:[] (parse.c,
 * mac_iscntrl_or_special); after the '@' a domain literal may bring []: . Raw recipients
 * can be unqualified ("for www-data").
 */
static bool
eximlog_addr_shaped(const char *p, const char *e)
{
    static const unsigned char special[256] = {
        ['('] = 3, [')'] = 3, ['<'] = 3, ['>'] = 3, [','] = 3,
        [';'] = 3, [':'] = 1, ['['] = 1, [']'] = 1, ['\n'] = 3,
    };
    bool inq = false;
    unsigned mask = 1; /* 1: local part, 2: domain */
    if (p == e)
        return false;
    for (; p < e; p++) {
        char c = *p;
        if (c == '\\') {
            p++;
            continue;
        }
        if (c == '"')
            inq = !inq;
        else if (!inq && c == '@')
            mask = 2;
        else if (!inq && (special[(unsigned char)c] & mask))
            return false;
    }
    return true;
}

/*
 * The common recipient in one pass: bytes up to a space or the end with no quote,
 * backslash, control byte or special, an '@' and a domain. Returns 1 with *@ret_end,
 * or 0 when the token needs the full rules (eximlog_addr_token, eximlog_addr_shaped).
 */
static int
eximlog_plain_addr(const char *p, const char *end, const char **ret_end)
{
    /* 1: ends the token, 2: needs the full rules, 4: '@' */
    static const unsigned char cls[256] = {
        [0] = 2,   [1] = 2,   [2] = 2,    [3] = 2,   [4] = 2,   [5] = 2,   [6] = 2,   [7] = 2,
        [8] = 2,   [9] = 2,   [10] = 2,   [11] = 2,  [12] = 2,  [13] = 2,  [14] = 2,  [15] = 2,
        [16] = 2,  [17] = 2,  [18] = 2,   [19] = 2,  [20] = 2,  [21] = 2,  [22] = 2,  [23] = 2,
        [24] = 2,  [25] = 2,  [26] = 2,   [27] = 2,  [28] = 2,  [29] = 2,  [30] = 2,  [31] = 2,
        [' '] = 1, ['"'] = 2, ['\\'] = 2, ['('] = 2, [')'] = 2, ['<'] = 2, ['>'] = 2, [','] = 2,
        [';'] = 2, [':'] = 2, ['['] = 2,  [']'] = 2, ['@'] = 4, [127] = 2,
    };
    unsigned seen = 0;
    const char *q = p;
    for (; q < end; q++) {
        unsigned c = cls[(unsigned char)*q];
        if (c & 1)
            break;
        seen |= c;
    }
    if (q == p || (seen & 2) || !(seen & 4))
        return 0;
    *ret_end = q;
    return 1;
}

/* Is the token at @p (after a space) one that may follow A=<auth>:<set_id> ? */
static bool
eximlog_after_auth(const char *p, const char *end)
{
    const char *v;
    unsigned idx = eximlog_arrival_tag(p, end, &v);
    if (idx == EXIMLOG_A_S)
        return v < end && eximlog_is_digit(*v);
    return idx == EXIMLOG_A_PRDR || idx == EXIMLOG_A_PRX || idx == EXIMLOG_A_K;
}

/* DN="...": '"' is not escaped inside, so the value ends at a quote followed by a field
 * that may come after DN. */
static const char *
eximlog_dn_end(const char *v, const char *end)
{
    if (v >= end || *v != '"')
        return NULL;
    const char *p = v + 1;
    while (p < end) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (!q)
            return NULL;
        if (q + 1 < end && q[1] == ' ') {
            const char *val;
            unsigned idx = eximlog_arrival_tag(q + 2, end, &val);
            if (idx > EXIMLOG_A_DN && idx <= EXIMLOG_A_S)
                return q + 1;
        }
        p = q + 1;
    }
    return NULL;
}

/* T="...": ends at the first quote not escaped by a backslash. */
static const char *
eximlog_subject_end(const char *v, const char *end)
{
    if (v >= end || *v != '"')
        return NULL;
    const char *p = v + 1;
    while (p < end) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        const char *bs = memchr(p, '\\', (size_t)((q ? q : end) - p));
        if (!bs)
            return q ? q + 1 : NULL;
        p = end - bs >= 2 ? bs + 2 : end; /* the escaped byte is skipped */
    }
    return NULL;
}

/* A value of bytes from @set up to the next space (or the end); NULL if empty or if it
 * holds a byte outside the set. Sets: 'w' word [A-Za-z0-9._-], 't' any byte but space,
 * '"' and '\\', 'd' digits. */
static const char *
eximlog_value(const char *v, const char *end, char set)
{
    const char *p = v;
    for (; p < end && *p != ' '; p++) {
        char c = *p;
        bool ok;
        if (set == 'd')
            ok = eximlog_is_digit(c);
        else if (set == 'w')
            ok = eximlog_is_alnum(c) || c == '.' || c == '_' || c == '-';
        else
            ok = c != '"' && c != '\\' && c != '\n';
        if (!ok)
            return NULL;
    }
    return p == v ? NULL : p;
}

/* One reading of an arrival from the sender on: the peer part and the tail after S=. */
struct eximlog_reading {
    struct exim_peer peer;
    struct fg_str bounce_of, subject, rcpts;
    uint64_t size;
    uint32_t nrcpt, flags;
};

/* How readings failed: a malformed value of a known field, an unknown or out-of-order
 * field, or text that ran out inside a quote of the sender/from/for part. */
enum {
    EXIMLOG_W_BAD = 1,
    EXIMLOG_W_ANOMALOUS = 2,
    EXIMLOG_W_OPEN = 4,
};

struct eximlog_walk {
    const char *end;
    size_t reclen;   /* the whole record as Exim wrote it, prefix included (1.2) */
    unsigned nvalid; /* readings that are valid to the end */
    unsigned why;    /* EXIMLOG_W_* */
    bool have_alt;
    struct eximlog_reading first; /* the first valid reading */
    struct exim_peer alt;         /* the last valid reading whose peer differs from it */
};

static bool
eximlog_peer_differs(const struct exim_peer *a, const struct exim_peer *b)
{
    return !eximlog_same(a->host_ip, b->host_ip) || !eximlog_same(a->ident, b->ident) ||
           !eximlog_same(a->proto, b->proto) || !eximlog_same(a->auth, b->auth) ||
           !eximlog_same(a->set_id, b->set_id);
}

static void
eximlog_walk_valid(struct eximlog_walk *w, const struct eximlog_reading *r)
{
    if (w->nvalid++ == 0)
        w->first = *r;
    else if (eximlog_peer_differs(&w->first.peer, &r->peer)) {
        w->alt = r->peer;
        w->have_alt = true;
    }
}

/*
 * 4.96 stops adding recipients when the next one does not fit (log.c: LOG_BUFFER_SIZE -
 * ptr < len + 3) and leaves no mark. A list is taken as cut when the record ends within
 * reach of that bound for an address of up to EXIMLOG_CUT_ADDR bytes: the recipients are
 * then completed from the delivery records.
 */
#define EXIMLOG_LOG_BUFFER 8192
#define EXIMLOG_CUT_ADDR   256

/*
 * A reading that ran out inside a quote of "from" or the for-list: the record goes on
 * on the next line only for a local submission. Over SMTP (H=) an address cannot hold a
 * newline, so such a reading is simply wrong.
 */
static unsigned
eximlog_open_why(const struct eximlog_reading *r)
{
    return r->peer.host.p ? EXIMLOG_W_ANOMALOUS : EXIMLOG_W_OPEN;
}

/*
 * The tail after S=<size> (5.1 items 21-29), strictly: optional M8S= DKIM= ARC DMARC RT=
 * Q=, then id=<token>, T="...", from <...>, for <addr> ... Nothing in it supplies a field
 * of the peer part.
 */
static void
eximlog_tail(struct eximlog_walk *w, struct eximlog_reading *r, const char *p)
{
    const char *end = w->end;
    unsigned idx = EXIMLOG_A_S;
    bool open;

    while (p < end) {
        if (*p != ' ' || p + 1 >= end)
            goto anomalous;
        p++;
        const char *v, *e;
        unsigned tag = eximlog_arrival_tag(p, end, &v);
        if (tag <= idx)
            goto anomalous;
        idx = tag;
        switch (tag) {
        case EXIMLOG_A_M8S:
            e = eximlog_value(v, end, 'd');
            break;
        case EXIMLOG_A_ARC:
            e = v;
            break;
        case EXIMLOG_A_DMARC:
            e = (v < end && v[-1] == '=') ? eximlog_value(v, end, 'w') : v;
            break;
        case EXIMLOG_A_DKIM:
        case EXIMLOG_A_RT:
        case EXIMLOG_A_Q:
            e = eximlog_value(v, end, 't');
            break;
        case EXIMLOG_A_ID:
            /* printable-escaped, so it never ends inside a quote */
            e = eximlog_addr_token(v, end, &open, NULL);
            if (open || e == v)
                e = NULL;
            break;
        case EXIMLOG_A_T:
            e = eximlog_subject_end(v, end);
            if (e)
                r->subject = eximlog_slice(v + 1, e - 1);
            break;
        case EXIMLOG_A_FROM:
            if (end - v < 3 || v[0] != ' ' || v[1] != '<') {
                e = NULL;
                break;
            }
            /* the raw sender: an address token up to a '>' outside quotes */
            e = NULL;
            for (const char *q = v + 2; q < end; q++) {
                if (*q == '\\') {
                    if (++q == end) {
                        w->why |= eximlog_open_why(r);
                        return;
                    }
                } else if (*q == '"') {
                    const char *c = q + 1;
                    while (c < end && *c != '"')
                        c += (*c == '\\') ? 2 : 1;
                    if (c >= end) {
                        w->why |= eximlog_open_why(r);
                        return;
                    }
                    q = c;
                } else if (*q == '>' && (q + 1 == end || q[1] == ' ')) {
                    e = q + 1;
                    break;
                }
            }
            break;
        case EXIMLOG_A_FOR: {
            if (v < end && *v != ' ')
                goto anomalous;
            r->rcpts = eximlog_slice(v < end ? v + 1 : end, end);
            uint32_t n = 0;
            bool trunc = false;
            const char *q = r->rcpts.p;
            while (q < end) {
                /* hot path: a plain address, in one pass */
                int plain = eximlog_plain_addr(q, end, &e);
                if (plain > 0) {
                    n++;
                } else {
                    e = eximlog_addr_token(q, end, &open, NULL);
                    if (open) {
                        w->why |= eximlog_open_why(r);
                        return;
                    }
                    if (e - q == 7 && memcmp(q, "<trunc>", 7) == 0 && e == end)
                        trunc = true;
                    else if (!eximlog_addr_shaped(q, e))
                        goto anomalous;
                    else
                        n++;
                }
                if (e == end)
                    break;
                q = e + 1;
                if (q == end || *q == ' ')
                    goto anomalous;
            }
            r->nrcpt = n;
            if (trunc)
                r->flags |= EXIM_F_RCPT_TRUNC;
            else if (w->reclen + 3 + EXIMLOG_CUT_ADDR > EXIMLOG_LOG_BUFFER)
                r->flags |= EXIM_F_RCPT_TRUNC | EXIM_F_RCPT_CUT;
            else if (n == 0)
                goto anomalous; /* " for" with nothing after it, far from the bound */
            eximlog_walk_valid(w, r);
            return;
        }
        default:
            goto anomalous;
        }
        if (!e) {
            w->why |= EXIMLOG_W_BAD;
            return;
        }
        p = e;
    }
    eximlog_walk_valid(w, r);
    return;
anomalous:
    w->why |= EXIMLOG_W_ANOMALOUS;
}

static void eximlog_walk_host(struct eximlog_walk *w, const struct eximlog_reading *r,
                              const char *v);

/*
 * Walk the peer part from @p (at the space before a field) having passed table position
 * @idx, in Exim's order (5.1): every value read with its own grammar, S= mandatory, then
 * the tail. H= forks one reading per candidate peer address.
 */
static void
eximlog_walk(struct eximlog_walk *w, struct eximlog_reading r, const char *p, unsigned idx)
{
    const char *end = w->end;
    while (p < end) {
        if (*p != ' ' || p + 1 >= end)
            goto anomalous;
        p++;
        const char *v, *e;
        unsigned tag = eximlog_arrival_tag(p, end, &v);
        if (tag == 0 || tag <= idx || tag > EXIMLOG_A_S)
            goto anomalous;
        idx = tag;
        switch (tag) {
        case EXIMLOG_A_H:
            eximlog_walk_host(w, &r, v);
            return;
        case EXIMLOG_A_DS:
        case EXIMLOG_A_TFO:
        case EXIMLOG_A_L:
        case EXIMLOG_A_PRDR:
        case EXIMLOG_A_K:
            e = v;
            break;
        case EXIMLOG_A_SPF:
            e = (v[-1] == '=') ? eximlog_value(v, end, 'w') : v;
            break;
        case EXIMLOG_A_P:
            e = eximlog_value(v, end, 'w');
            if (e)
                r.peer.proto = eximlog_slice(v, e);
            break;
        case EXIMLOG_A_U: {
            /* the ident may hold spaces (a remote RFC 1413 reply): up to the first space
             * that is followed by a field that may come after U= */
            e = NULL;
            for (const char *s = v; s < end; s++) {
                const char *sv;
                s = memchr(s, ' ', (size_t)(end - s));
                if (!s)
                    break;
                unsigned t = eximlog_arrival_tag(s + 1, end, &sv);
                if (s > v && t > EXIMLOG_A_U && t <= EXIMLOG_A_S) {
                    e = s;
                    break;
                }
            }
            if (e)
                r.peer.ident = eximlog_slice(v, e);
            break;
        }
        case EXIMLOG_A_DN:
            e = eximlog_dn_end(v, end);
            break;
        case EXIMLOG_A_SNI:
            if (v < end && *v == '"') {
                bool open;
                e = eximlog_addr_token(v, end, &open, NULL);
                if (open)
                    e = NULL;
            } else
                e = eximlog_value(v, end, 't');
            break;
        case EXIMLOG_A_A: {
            /* set_id: spaces and colons unescaped (A=pl:u s:e r@example.com), up to the
             * first space followed by PRDR, PRX=, K or S=<digits> */
            e = NULL;
            for (const char *s = v; s < end; s++) {
                s = memchr(s, ' ', (size_t)(end - s));
                if (!s)
                    break;
                if (eximlog_after_auth(s + 1, end)) {
                    e = s;
                    break;
                }
            }
            if (!e)
                goto anomalous;
            const char *colon = memchr(v, ':', (size_t)(e - v));
            r.peer.auth = eximlog_slice(v, colon ? colon : e);
            r.peer.set_id = colon ? eximlog_slice(colon + 1, e) : fg_str_make(e, 0);
            if (r.peer.auth.len == 0)
                goto anomalous;
            break;
        }
        case EXIMLOG_A_S:
            e = eximlog_value(v, end, 'd');
            if (!e || util_parse_u64(v, (size_t)(e - v), &r.size) < 0) {
                w->why |= EXIMLOG_W_BAD;
                return;
            }
            if (!r.peer.proto.len)
                goto anomalous;
            eximlog_tail(w, &r, e);
            return;
        default: /* R= I= Ci= X= CV= PRX=: one word (what it holds decides nothing) */
            e = memchr(v, ' ', (size_t)(end - v));
            e = e ? e : end;
            if (e == v)
                e = NULL;
            if (e && tag == EXIMLOG_A_R)
                r.bounce_of = eximlog_slice(v, e);
            break;
        }
        if (!e) {
            w->why |= EXIMLOG_W_BAD;
            return;
        }
        p = e;
    }
    w->why |= EXIMLOG_W_BAD; /* ended before S= */
    return;
anomalous:
    w->why |= EXIMLOG_W_ANOMALOUS;
}

/* H=: one reading per bracketed address that may end the host part (5.3), in order. */
static void
eximlog_walk_host(struct eximlog_walk *w, const struct eximlog_reading *r, const char *v)
{
    struct eximlog_cand c;
    const char *pos = v;
    bool any = false;
    while (eximlog_host_next(v, &pos, w->end, eximlog_arrival_host_follow, &c)) {
        struct eximlog_reading t = *r;
        any = true;
        t.peer.host = eximlog_slice(v, c.end);
        t.peer.host_ip = eximlog_slice(c.ip, c.ip_end);
        eximlog_walk(w, t, c.end, EXIMLOG_A_H);
    }
    if (!any)
        w->why |= EXIMLOG_W_BAD;
}

/*
 * Read every reading of the arrival text after "<= " [@p, @end): the sender token, then
 * the fields. @reclen is the length of the whole record.
 */
static const char *
eximlog_arrival_walk(struct eximlog_walk *w, const char *p, const char *end, size_t reclen)
{
    bool open;
    w->end = end;
    w->reclen = reclen;
    w->nvalid = 0;
    w->why = 0;
    w->have_alt = false;
    const char *e = eximlog_addr_token(p, end, &open, NULL);
    if (open) {
        w->why = EXIMLOG_W_OPEN;
        return e;
    }
    if (e == p) {
        w->why = EXIMLOG_W_BAD;
        return e;
    }
    eximlog_walk(w, (struct eximlog_reading){ 0 }, e, EXIMLOG_A_SENDER);
    return e;
}

/*
 * Does the host text before its peer literal (the HELO part) hold a peer-shaped "[ip]:port"
 * or ") [ip]"? A HELO may be an address literal ("([10.0.0.1]) [192.0.2.1]", 5.3), never with
 * a port or after a closing parenthesis: only a HELO written to imitate the log does that.
 */
static bool
eximlog_helo_forged(struct fg_str host)
{
    const char *s = host.p, *end, *b;

    if (!host.len)
        return false;
    end = s + host.len;
    /* the peer literal is the last '[': look only before it */
    for (b = end; b > s && b[-1] != '['; b--)
        ;
    if (b <= s + 1)
        return false;
    end = b - 1;
    for (const char *p = s; p < end && (p = memchr(p, '[', (size_t)(end - p))) != NULL; p++) {
        const char *cl = memchr(p, ']', (size_t)(end - p));
        if (!cl || !eximlog_ip_valid(p + 1, (size_t)(cl - p - 1)))
            continue;
        if ((cl + 2 <= end && cl[1] == ':' && eximlog_is_digit(cl[2])) ||
            (p - s >= 2 && p[-1] == ' ' && p[-2] == ')'))
            return true;
    }
    return false;
}

static void
eximlog_set_peer(struct exim_event *ev, const struct exim_peer *pr)
{
    ev->host = pr->host;
    ev->host_ip = pr->host_ip;
    ev->ident = pr->ident;
    ev->proto = pr->proto;
    ev->auth = pr->auth;
    ev->set_id = pr->set_id;
}

static int
eximlog_arrival(struct exim_event *ev, const char *p, const char *end, size_t reclen)
{
    struct eximlog_walk w;
    ev->type = EXIM_ARRIVAL;
    if (p[0] == '(')
        ev->flags |= EXIM_F_FAKEREJECT;
    ev->flag = fg_str_make(p, 2);
    p += 3;
    if (p >= end || *p == ' ')
        return -EBADMSG;
    const char *e = eximlog_arrival_walk(&w, p, end, reclen);
    ev->sender = eximlog_slice(p, e);
    if (w.nvalid == 0) {
        /* no reading holds: nothing in the text is evidence of who sent it */
        if (!(w.why & EXIMLOG_W_ANOMALOUS))
            return -EBADMSG;
        ev->flags |= EXIM_F_ANOMALOUS;
        return 1;
    }
    const struct eximlog_reading *r = &w.first;
    eximlog_set_peer(ev, &r->peer);
    ev->bounce_of = r->bounce_of;
    ev->size = r->size;
    ev->subject = r->subject;
    ev->rcpts = r->rcpts;
    ev->nrcpt = r->nrcpt;
    ev->flags |= r->flags;
    if (w.have_alt) {
        ev->flags |= EXIM_F_AMBIGUOUS_HOST;
        ev->alt = w.alt;
    }
    if (eximlog_helo_forged(ev->host))
        ev->flags |= EXIM_F_HELO_FORGED;
    if (!ev->host.p && (fg_str_eq(ev->proto, "local") || fg_str_has_prefix(ev->proto, "local-")))
        ev->flags |= EXIM_F_LOCAL;
    return 1;
}

/* ---- deliveries (6) -------------------------------------------------------------- */

static bool
eximlog_starts_nocase(const char *p, const char *end, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(end - p) < n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (util_ascii_lower(p[i]) != lit[i])
            return false;
    return true;
}

/* @p at "defer (": is it "defer (N): retry time not reached..."? */
static bool
eximlog_retry_wait(const char *p, const char *end)
{
    const char *q = p + 7;
    if (q < end && *q == '-')
        q++;
    while (q < end && eximlog_is_digit(*q))
        q++;
    if (!EXIMLOG_STARTS(q, end, "): "))
        return false;
    return eximlog_starts_nocase(q + 3, end, "retry time not reached");
}

static int
eximlog_delivery(struct exim_event *ev, const char *p, const char *end)
{
    char f0 = p[0];
    bool fail = (f0 == '*' && p[1] == '*');
    bool defer = (f0 == '=' && p[1] == '=');
    ev->type = fail ? EXIM_FAIL : defer ? EXIM_DEFER : EXIM_DELIVERY;
    ev->flag = fg_str_make(p, 2);
    p += 3;
    if (p >= end || *p == ' ')
        return -EBADMSG;

    /* address part: final [(parents)] [<top>] */
    const char *e = eximlog_qtoken(p, end, NULL);
    if (fail && e > p + 1 && e[-1] == ':' && (e == end || *e == ' ')) {
        ev->addr = eximlog_slice(p, e - 1);
        ev->text = (e + 1 < end) ? eximlog_slice(e + 1, end) : fg_str_make(end, 0);
        return 1;
    }
    ev->addr = eximlog_slice(p, e);
    p = e;
    if (end - p > 2 && p[1] == '(') {
        const char *q = memchr(p + 2, ')', (size_t)(end - p - 2));
        if (q && (q + 1 == end || q[1] == ' '))
            p = q + 1;
    }
    if (end - p > 2 && p[1] == '<') {
        e = eximlog_qtoken(p + 1, end, NULL);
        if (e[-1] == '>')
            p = e;
        else if (fail && e[-1] == ':' && e - 2 > p && e[-2] == '>') {
            ev->text = (e + 1 < end) ? eximlog_slice(e + 1, end) : fg_str_make(end, 0);
            return 1;
        }
    }

    /* fields up to the separator */
    while (p < end) {
        if (*p != ' ' || p + 1 >= end)
            break;
        p++;
        if (!fail && !defer && ev->router.p && ev->transport.p)
            break;
        if (defer && EXIMLOG_STARTS(p, end, "defer (")) {
            ev->text = eximlog_slice(p, end);
            if (eximlog_retry_wait(p, end))
                ev->flags |= EXIM_F_RETRY_WAIT;
            break;
        }
        if (*p == ':' && (p + 1 == end || p[1] == ' ')) { /* 4.99 " : " */
            ev->text = (p + 2 <= end) ? eximlog_slice(p + 2 < end ? p + 2 : end, end)
                                      : fg_str_make(end, 0);
            break;
        }
        e = eximlog_qtoken(p, end, NULL);
        bool sep = (fail || defer) && e[-1] == ':' && (e == end || *e == ' ');
        const char *ve = sep ? e - 1 : e;
        if (EXIMLOG_STARTS(p, end, "R=") && !ev->router.p)
            ev->router = eximlog_slice(p + 2, ve);
        else if (EXIMLOG_STARTS(p, end, "T=") && !ev->transport.p)
            ev->transport = eximlog_slice(p + 2, ve);
        if (sep) {
            ev->text = (e + 1 < end) ? eximlog_slice(e + 1, end) : fg_str_make(end, 0);
            break;
        }
        p = e;
    }
    if (fg_str_eq(ev->router, "enforce_mail_permissions"))
        ev->flags |= EXIM_F_ENFORCED;
    return 1;
}

/* ---- cwd= (7) -------------------------------------------------------------------- */

/* Find the last " N args:" in [p, end): *@num at N, returns the position of " args:". */
static const char *
eximlog_find_args(const char *p, const char *end, const char **num, size_t *count)
{
    const char *found = NULL;
    *count = 0;
    const char *q = p;
    while (q < end) {
        const char *a = eximlog_next_args(q, end);
        if (!a)
            break;
        q = a + 6;
        if (q < end && *q != ' ')
            continue;
        const char *d = a;
        while (d > p && eximlog_is_digit(d[-1]))
            d--;
        if (d == a || d == p || d[-1] != ' ')
            continue;
        found = a;
        *num = d;
        (*count)++;
    }
    return found;
}

/* Exim options that take the next argument as their value. */
static bool
eximlog_opt_takes_value(const char *p, size_t n)
{
    static const char *const opts[] = { "-f",    "-F",    "-r",    "-C",   "-L",   "-oMa",
                                        "-oMaa", "-oMai", "-oMas", "-oMi", "-oMm", "-oMr",
                                        "-oMs",  "-oMt",  "-oP",   "-oPX", "-X",   "-z" };
    if (n < 2 || n > 5 || p[0] != '-')
        return false; /* none is shorter, longer, or without the dash */
    for (size_t i = 0; i < N_ELEMS(opts); i++)
        if (strlen(opts[i]) == n && memcmp(opts[i], p, n) == 0)
            return true;
    return false;
}

/* Argument tokens as Exim writes them: wrapped in '"' when they contain white space. */
static const char *
eximlog_arg_end(const char *p, const char *end)
{
    if (*p == '"') {
        const char *q = p + 1;
        while (q < end) {
            const char *c = memchr(q, '"', (size_t)(end - q));
            if (!c)
                break;
            if (c + 1 == end || c[1] == ' ')
                return c + 1;
            q = c + 1;
        }
    }
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    return sp ? sp : end;
}

/* Does this argument list (argv[0] first) read a message? (7) */
static bool
eximlog_cwd_submission(const char *p, const char *end)
{
    bool reads = false, never = false, dash_e = false, null_sender = false, rcpt = false;
    bool opts = true, first = true;
    while (p < end) {
        while (p < end && *p == ' ')
            p++;
        if (p >= end)
            break;
        const char *e = eximlog_arg_end(p, end);
        size_t n = (size_t)(e - p);
        if (first) {
            first = false;
        } else if (opts && n == 2 && p[0] == '-' && p[1] == '-') {
            opts = false;
        } else if (opts && n >= 2 && p[0] == '-') {
            if (p[1] == 'M' || p[1] == 'q')
                never = true;
            else if (p[1] == 'b' && n >= 3) {
                if (p[2] == 'm' || p[2] == 's' || p[2] == 'S')
                    reads = true;
                else if (p[2] != 'n')
                    never = true;
            } else if (n == 2 && p[1] == 't')
                reads = true;
            else if (p[1] == 'E')
                dash_e = true;
            else if (n == 4 && memcmp(p, "-f<>", 4) == 0)
                null_sender = true;
            if (eximlog_opt_takes_value(p, n)) {
                const char *v = e;
                while (v < end && *v == ' ')
                    v++;
                if (v < end) {
                    const char *ve = eximlog_arg_end(v, end);
                    if ((p[1] == 'f' || p[1] == 'r') && ve - v == 2 && v[0] == '<' && v[1] == '>')
                        null_sender = true;
                    e = ve;
                }
            }
        } else {
            opts = false;
            rcpt = true;
        }
        p = e;
    }
    if (never || (dash_e && null_sender))
        return false;
    return reads || rcpt;
}

/*
 * How many arguments could the text @p..@end (" a0 a1 ...", as written after "args:") be?
 * exim.c writes each argument as " " + its printing form, wrapped in '"' when that is
 * empty or holds white space; inner quotes are not escaped, so the split is not always
 * unique. Sets [*@min, *@max] over every split Exim could have written; false when the
 * text is no such list (or too tangled to decide within a fixed amount of work).
 */
#define EXIMLOG_ARGV_WORK 200000

static bool
eximlog_argv_range(const char *p, const char *end, uint32_t *min, uint32_t *max)
{
    /* lo/hi[i]: arguments in [p + i, end) when an argument starts at p + i (a space) */
    static const uint16_t none = UINT16_MAX;
    uint16_t lo[EXIMLOG_RECORD_MAX + 1], hi[EXIMLOG_RECORD_MAX + 1];
    size_t n = (size_t)(end - p), work = 0;

    if (n > EXIMLOG_RECORD_MAX)
        return false;
    if (!memchr(p, '"', n)) {
        /* no quote: the one split is at every space, each argument non-empty (the same
         * answer as the walk below, without it) */
        uint32_t c = 0;
        for (size_t i = 0; i < n;) {
            if (p[i] != ' ')
                return false;
            const char *sp = memchr(p + i + 1, ' ', n - i - 1);
            size_t next = sp ? (size_t)(sp - p) : n;
            if (next == i + 1)
                return false;
            c++;
            i = next;
        }
        *min = *max = c;
        return true;
    }
    lo[n] = hi[n] = 0;
    for (size_t i = n; i-- > 0;) {
        lo[i] = none;
        hi[i] = 0;
        if (p[i] != ' ')
            continue;
        /* unquoted: up to the next space, not empty */
        const char *sp = memchr(p + i + 1, ' ', n - i - 1);
        size_t next = sp ? (size_t)(sp - p) : n;
        if (next > i + 1 && lo[next] != none) {
            lo[i] = (uint16_t)(lo[next] + 1);
            hi[i] = (uint16_t)(hi[next] + 1);
        }
        /* quoted: '"' ... '"' before a space or the end, empty or holding white space */
        if (i + 1 < n && p[i + 1] == '"') {
            bool white = false;
            for (size_t j = i + 2; j < n; j++) {
                if (++work > EXIMLOG_ARGV_WORK)
                    return false;
                if (p[j] == ' ' || p[j] == '\t') {
                    white = true;
                    continue;
                }
                if (p[j] != '"' || (j + 1 < n && p[j + 1] != ' '))
                    continue;
                if ((j > i + 2 && !white) || lo[j + 1] == none)
                    continue;
                if (lo[j + 1] + 1 < lo[i])
                    lo[i] = (uint16_t)(lo[j + 1] + 1);
                if (hi[j + 1] + 1 > hi[i])
                    hi[i] = (uint16_t)(hi[j + 1] + 1);
            }
        }
    }
    if (n > 0 && lo[0] == none)
        return false;
    *min = lo[0];
    *max = hi[0];
    return true;
}

/*
 * Is the argument text after " <argc> args:" one Exim could have written for @argc
 * arguments? An entry whose list did not fit the 16 KiB work buffer ends in " ..." and
 * holds fewer (the rest follows in "..." entries).
 */
static bool
eximlog_argv_fits(const char *p, const char *end, uint32_t argc)
{
    uint32_t lo, hi;
    if (eximlog_argv_range(p, end, &lo, &hi) && lo <= argc && argc <= hi)
        return true;
    if (end - p >= 4 && memcmp(end - 4, " ...", 4) == 0 &&
        eximlog_argv_range(p, end - 4, &lo, &hi) && lo < argc)
        return true;
    return false;
}

/* The directory of a cwd= entry that has no " N args:" part: up to the overflow marker
 * (4.98+ cut the text there) or the end of its first line. */
static const char *
eximlog_cwd_cut(const char *d, const char *end)
{
    const char *m = eximlog_find_overflow(d, end);
    const char *nl = memchr(d, '\n', (size_t)(end - d));
    const char *e = m ? m : end;
    return nl && nl < e ? nl : e;
}

static int
eximlog_cwd(struct exim_event *ev, const char *p, const char *end)
{
    ev->type = EXIM_CWD;
    const char *num = NULL;
    size_t count;
    const char *a = eximlog_find_args(p + 4, end, &num, &count);
    if (!a) {
        /* an entry over the log buffer, cut by Exim (4.98+) before its arguments: the
         * directory is still what Exim wrote, as far as it goes */
        if (!eximlog_ends_overflow(p, end))
            return -EBADMSG;
        ev->flags |= EXIM_F_OVERFLOW;
        ev->cwd = eximlog_slice(p + 4, eximlog_cwd_cut(p + 4, end));
        ev->args = fg_str_make(end, 0);
        return 1;
    }
    if (count > 1)
        ev->flags |= EXIM_F_CWD_MULTI;
    if (util_parse_u32(num, (size_t)(a - num), &ev->argc) < 0)
        return -EBADMSG;
    ev->cwd = eximlog_slice(p + 4, num - 1);
    const char *args = a + 6;
    if (!eximlog_ends_overflow(args, end) && !eximlog_argv_fits(args, end, ev->argc))
        ev->flags |= EXIM_F_CWD_ARGC;
    if (args < end)
        args++;
    ev->args = eximlog_slice(args, end);
    if (memchr(p, '\n', (size_t)(end - p))) {
        const char *q = p;
        while ((q = memchr(q, '\n', (size_t)(end - q))) != NULL) {
            q++;
            if (q < end && *q != ' ' && *q != '\t') {
                ev->flags |= EXIM_F_CWD_FORGED | EXIM_F_ABSORBED;
                break;
            }
        }
        /* what names the writer: the directory as far as its first line goes */
        if (ev->flags & EXIM_F_CWD_FORGED)
            ev->cwd = eximlog_slice(p + 4, eximlog_cwd_cut(p + 4, end));
    }
    if (eximlog_cwd_submission(args, end))
        ev->flags |= EXIM_F_CWD_SUBMISSION;
    return 1;
}

/* Does [p, end) hold " args:"? (every record is asked: colons are few, memmem slower) */
static bool
eximlog_has_args_word(const char *p, const char *end)
{
    const char *q = p + 5;
    while (q < end && (q = memchr(q, ':', (size_t)(end - q))) != NULL) {
        if (memcmp(q - 5, " args", 5) == 0)
            return true;
        q++;
    }
    return false;
}

/*
 * 9.1 rule 4: a record other than cwd= whose text ends in " <N> args: <arguments>" that
 * Exim could have written for N arguments is what is left of a line forged through a
 * directory name: the genuine cwd= entry's tail. An occurrence inside a quoted address
 * of the for-list is data (a recipient may hold anything in quotes).
 */
static bool
eximlog_forged_tail(const struct exim_event *ev, const char *p, const char *end)
{
    const char *q = end, *a = NULL;
    /* the last " args:" that follows " <digits>" and precedes a space or the end */
    while (q - p >= 6) {
        const char *hit = NULL;
        for (const char *s = p; (s = memmem(s, (size_t)(q - s), " args:", 6)) != NULL; s++)
            hit = s;
        if (!hit)
            return false;
        q = hit;
        const char *d = hit;
        while (d > p && eximlog_is_digit(d[-1]))
            d--;
        if (d < hit && d > p && d[-1] == ' ' && (hit + 6 == end || hit[6] == ' ')) {
            a = d;
            break;
        }
    }
    if (!a)
        return false;
    if (ev->type == EXIM_ARRIVAL && ev->rcpts.p && a >= ev->rcpts.p &&
        a < ev->rcpts.p + ev->rcpts.len) {
        bool inq = false;
        for (const char *c = ev->rcpts.p; c < a; c++) {
            if (*c == '\\')
                c++;
            else if (*c == '"')
                inq = !inq;
        }
        if (inq)
            return false;
    }
    const char *colon = memchr(a, ' ', (size_t)(end - a));
    uint32_t argc;
    if (util_parse_u32(a, (size_t)(colon - a), &argc) < 0)
        return false;
    return eximlog_argv_fits(colon + 6, end, argc);
}

/* ---- records without a flag ------------------------------------------------------ */

static const char *const eximlog_authfail_follow[] = { ": ", " I=", " U=", NULL };

/*
 * "<auth> authenticator failed for [H=]<host>[ I=..][ U=..]: <text>[ (set_id=<id>)]".
 * The peer is the first candidate address of the host part (the set_id after it is
 * data); a later candidate before that reading's " (set_id=" means a HELO holding
 * another peer: flagged ambiguous.
 */
static int
eximlog_auth_fail(struct exim_event *ev, const char *p, const char *sp, const char *end)
{
    static const char lit[] = " authenticator failed for ";
    ev->type = EXIM_AUTH_FAIL;
    ev->auth = eximlog_slice(p, sp);
    const char *h = sp + sizeof(lit) - 1;
    if (EXIMLOG_STARTS(h, end, "H="))
        h += 2;
    struct eximlog_cand c, later;
    const char *pos = h;
    if (!eximlog_host_next(h, &pos, end, eximlog_authfail_follow, &c))
        return -EBADMSG;
    ev->host = eximlog_slice(h, c.end);
    ev->host_ip = eximlog_slice(c.ip, c.ip_end);
    ev->text = ev->host;
    const char *q = c.end;
    const char *colon = memmem(q, (size_t)(end - q), ": ", 2);
    const char *s = colon ? memmem(colon, (size_t)(end - colon), " (set_id=", 9) : NULL;
    const char *data = s ? s : end;
    if (eximlog_host_next(h, &pos, data, eximlog_authfail_follow, &later))
        ev->flags |= EXIM_F_AMBIGUOUS_HOST;
    if (s && end[-1] == ')')
        ev->set_id = eximlog_slice(s + 9, end - 1);
    return 1;
}

static const char *const eximlog_reject_follow[] = {
    " I=",   " U=", " X=", " CV=",       " DN=",
    " SNI=", " F=", " A=", " rejected ", " temporarily rejected ",
    NULL
};

/*
 * "H=<host> [..] [F=<sender>] [A=auth:id] rejected|temporarily rejected ..." or
 * "F=<sender> rejected ...". Other H= lines (warnings, verify failures) are EXIM_OTHER.
 * Each candidate peer address gives a reading; the first whose fields reach "rejected"
 * is taken, and nothing after that word (the RCPT address, the ACL's message) supplies a
 * field.
 */
static int
eximlog_reject_fields(struct exim_event *t, const char *q, const char *end)
{
    while (q < end) {
        const char *e;
        if (EXIMLOG_STARTS(q, end, "rejected ") ||
            EXIMLOG_STARTS(q, end, "temporarily rejected ")) {
            t->type = EXIM_REJECT;
            t->text = eximlog_slice(q, end);
            const char *r = (const char *)memchr(q, ' ', (size_t)(end - q)) + 1;
            if (*q == 't')
                r = (const char *)memchr(r, ' ', (size_t)(end - r)) + 1;
            if (EXIMLOG_STARTS(r, end, "RCPT <")) {
                const char *a = r + 6;
                const char *ae = eximlog_qtoken(a, end, NULL);
                if (ae > a && ae[-1] == ':')
                    ae--;
                if (ae > a && ae[-1] == '>')
                    t->addr = eximlog_slice(a, ae - 1);
            }
            return 1;
        }
        e = eximlog_qtoken(q, end, NULL);
        if (EXIMLOG_STARTS(q, end, "F=<") && e[-1] == '>')
            t->sender = eximlog_slice(q + 3, e - 1);
        else if (EXIMLOG_STARTS(q, end, "A=")) {
            e = memchr(q, ' ', (size_t)(end - q));
            e = e ? e : end;
            const char *colon = memchr(q, ':', (size_t)(e - q));
            t->auth = eximlog_slice(q + 2, colon ? colon : e);
            t->set_id = colon ? eximlog_slice(colon + 1, e) : fg_str_make(e, 0);
        } else if (!(EXIMLOG_STARTS(q, end, "I=") || EXIMLOG_STARTS(q, end, "U=") ||
                     EXIMLOG_STARTS(q, end, "X=") || EXIMLOG_STARTS(q, end, "CV=") ||
                     EXIMLOG_STARTS(q, end, "SNI=") || EXIMLOG_STARTS(q, end, "DN=")))
            return 0; /* some other H= line */
        if (e >= end)
            break;
        q = e + 1;
    }
    return 0;
}

static int
eximlog_reject(struct exim_event *ev, const char *p, const char *end)
{
    struct exim_event t = *ev;
    if (!EXIMLOG_STARTS(p, end, "H=")) {
        if (eximlog_reject_fields(&t, p, end) != 1)
            return 0;
        *ev = t;
        return 1;
    }
    struct eximlog_cand c;
    const char *h = p + 2, *pos = h;
    while (eximlog_host_next(h, &pos, end, eximlog_reject_follow, &c)) {
        t = *ev;
        t.host = eximlog_slice(h, c.end);
        t.host_ip = eximlog_slice(c.ip, c.ip_end);
        const char *q = c.end < end ? c.end + 1 : end;
        if (eximlog_reject_fields(&t, q, end) == 1) {
            /* another candidate before the verdict: a HELO holding a second peer */
            struct eximlog_cand later;
            const char *lpos = pos;
            if (eximlog_host_next(h, &lpos, t.text.p, eximlog_reject_follow, &later))
                t.flags |= EXIM_F_AMBIGUOUS_HOST;
            *ev = t;
            return 1;
        }
    }
    return 0;
}

static const char *const eximlog_conn_follow[] = { " ", ":", NULL };

static int
eximlog_connection(struct exim_event *ev, const char *h, const char *end)
{
    ev->type = EXIM_CONNECTION;
    ev->text = ev->body;
    if (!h)
        return 1;
    struct eximlog_cand c, later;
    const char *pos = h;
    if (eximlog_host_next(h, &pos, end, eximlog_conn_follow, &c)) {
        ev->host = eximlog_slice(h, c.end);
        ev->host_ip = eximlog_slice(c.ip, c.ip_end);
        if (eximlog_host_next(h, &pos, end, eximlog_conn_follow, &later))
            ev->flags |= EXIM_F_AMBIGUOUS_HOST;
    }
    return 1;
}

static int
eximlog_no_id(struct exim_event *ev, const char *p, const char *end)
{
    size_t n = (size_t)(end - p);
    if (EXIMLOG_STARTS(p, end, "cwd="))
        return eximlog_cwd(ev, p, end);
    if (EXIMLOG_STARTS(p, end, "H=") || EXIMLOG_STARTS(p, end, "F=<"))
        return eximlog_reject(ev, p, end);
    if (EXIMLOG_STARTS(p, end, "SMTP connection from "))
        return eximlog_connection(ev, p + 21, end);
    if (EXIMLOG_STARTS(p, end, "no MAIL in SMTP connection from "))
        return eximlog_connection(ev, p + 32, end);
    if (EXIMLOG_STARTS(p, end, "SMTP call from ") || EXIMLOG_STARTS(p, end, "Connection from ") ||
        EXIMLOG_STARTS(p, end, "SMTP protocol error") ||
        EXIMLOG_STARTS(p, end, "SMTP protocol synchronization error") ||
        EXIMLOG_STARTS(p, end, "unexpected disconnection while reading SMTP command from ") ||
        EXIMLOG_STARTS(p, end, "SMTP command timeout") ||
        EXIMLOG_STARTS(p, end, "TLS error on connection from "))
        return eximlog_connection(ev, NULL, end);
    if (EXIMLOG_STARTS(p, end, "Start queue run:") || EXIMLOG_STARTS(p, end, "End queue run:")) {
        ev->type = EXIM_QUEUE_RUN;
        ev->text = ev->body;
        return 1;
    }
    /* "<auth> authenticator failed for " */
    const char *sp = memchr(p, ' ', n);
    if (sp && sp > p && EXIMLOG_STARTS(sp, end, " authenticator failed for "))
        return eximlog_auth_fail(ev, p, sp, end);
    /* a flag record whose message id is missing or malformed */
    if (n >= 3 && (p[2] == ' ' || n == 2)) {
        if ((p[0] == '<' || p[0] == '(') && p[1] == '=')
            return -EBADMSG;
    }
    if (sp && end - sp >= 3 && (sp + 3 == end || sp[3] == ' ')) {
        char a = sp[1], b = sp[2];
        bool flag = ((a == '<' || a == '(') && b == '=') || (a == '=' && b == '>') ||
                    (a == '-' && b == '>') || (a == '*' && b == '>') || (a == '>' && b == '>') ||
                    (a == '*' && b == '*') || (a == '=' && b == '=');
        if (flag && sp - p >= 14 && sp - p <= 25 && memchr(p, '-', (size_t)(sp - p)))
            return -EBADMSG;
    }
    return 0;
}

static int
eximlog_with_id(struct exim_event *ev, const char *p, const char *end, size_t reclen)
{
    size_t n = (size_t)(end - p);
    if (n >= 2 && (n == 2 || p[2] == ' ')) {
        char a = p[0], b = p[1];
        if ((a == '<' || a == '(') && b == '=')
            return eximlog_arrival(ev, p, end, reclen);
        if ((a == '=' && b == '>') || (a == '-' && b == '>') || (a == '*' && b == '>') ||
            (a == '>' && b == '>') || (a == '*' && b == '*') || (a == '=' && b == '='))
            return eximlog_delivery(ev, p, end);
    }
    ev->text = ev->body;
    if (EXIMLOG_STARTS(p, end, "Completed") && (n == 9 || p[9] == ' ')) {
        ev->type = EXIM_COMPLETED;
    } else if (EXIMLOG_STARTS(p, end, "frozen by ")) {
        ev->type = EXIM_FROZEN;
        ev->text = eximlog_slice(p + 10, end);
    } else if (EXIMLOG_STARTS(p, end, "Frozen") && (n == 6 || p[6] == ' ')) {
        ev->type = EXIM_FROZEN;
    } else if (EXIMLOG_STARTS(p, end, "unfrozen by ")) {
        ev->type = EXIM_UNFROZEN;
        ev->text = eximlog_slice(p + 12, end);
    } else if (EXIMLOG_STARTS(p, end, "Unfrozen by ")) {
        ev->type = EXIM_UNFROZEN;
        ev->text = eximlog_slice(p + 12, end);
    } else {
        ev->type = EXIM_MSG_OTHER;
    }
    return 1;
}

static bool
eximlog_ends_overflow(const char *p, const char *end)
{
    static const size_t n = sizeof(EXIMLOG_OVERFLOW_MARK) - 1;
    while (end > p && (end[-1] == '\n' || end[-1] == ' '))
        end--;
    return (size_t)(end - p) >= n && memcmp(end - n, EXIMLOG_OVERFLOW_MARK, n) == 0;
}

/* Reset @ev to what its prefix said: time, pid, message id, body, the overflow flag. */
static void
eximlog_keep_prefix(struct exim_event *ev)
{
    struct exim_event base = { 0 };

    base.type = EXIM_OTHER;
    base.flags = ev->flags & EXIM_F_OVERFLOW;
    base.ts_ms = ev->ts_ms;
    base.time = ev->time;
    base.has_pid = ev->has_pid;
    base.pid = ev->pid;
    base.msgid = ev->msgid;
    base.body = ev->body;
    *ev = base;
}

/* Does [p, end) start like "dddd-dd-dd dd:dd:dd"? */
static bool
eximlog_date_shaped(const char *p, const char *end)
{
    static const char pat[] = "dddd-dd-dd dd:dd:dd";

    if ((size_t)(end - p) < sizeof(pat) - 1)
        return false;
    for (size_t i = 0; i < sizeof(pat) - 1; i++)
        if (pat[i] == 'd' ? (p[i] < '0' || p[i] > '9') : p[i] != pat[i])
            return false;
    return true;
}

int
eximlog_parse(const char *rec, size_t len, struct exim_event *ret_ev)
{
    /* filled in place: the event is large, and a copy per record shows in replay */
    struct exim_event *ev = ret_ev;
    const char *end = rec + len;

    memset(ev, 0, sizeof(*ev));

    if (len > EXIMLOG_RECORD_MAX)
        return -E2BIG;
    /* an unclean shutdown leaves runs of NUL bytes before (or instead of) an entry */
    while (rec < end && *rec == '\0')
        rec++;
    if (rec == end && len > 0)
        return 0;
    const char *p = eximlog_prefix(rec, end, ev);
    if (!p) {
        /* the overflow marker may have eaten a prefix-less entry */
        if (eximlog_ends_overflow(rec, end)) {
            ret_ev->flags = EXIM_F_OVERFLOW;
            return 0;
        }
        /* a date-shaped start with impossible values is a damaged entry; anything else
         * (syslog framing, annotations, a torn write) is not Exim's and not an error */
        if (eximlog_date_shaped(rec, end))
            return -EBADMSG;
        ret_ev->flags = EXIM_F_FOREIGN;
        /* the remnant of a forged line need not start like an entry */
        if (eximlog_has_args_word(rec, end) && eximlog_forged_tail(ret_ev, rec, end))
            ret_ev->flags |= EXIM_F_FORGED_TAIL;
        return 0;
    }
    ev->body = eximlog_slice(p, end);
    bool overflow = eximlog_ends_overflow(p, end);
    int r =
        ev->msgid.p ? eximlog_with_id(ev, p, end, (size_t)(end - rec)) : eximlog_no_id(ev, p, end);
    if (overflow) {
        /* a cut arrival lost its structured tail: nothing in it can be trusted */
        if (r < 0 || (ev->type == EXIM_ARRIVAL && (ev->flags & EXIM_F_ANOMALOUS)))
            r = 0;
        ev->flags |= EXIM_F_OVERFLOW;
    }
    if (r < 0) {
        memset(ev, 0, sizeof(*ev));
        return r;
    }
    if (r == 0)
        eximlog_keep_prefix(ev); /* keep what identifies the line, drop half-read fields */
    if (ev->type != EXIM_CWD && eximlog_has_args_word(p, end) && eximlog_forged_tail(ev, p, end))
        ev->flags |= EXIM_F_FORGED_TAIL;
    if (ev->type == EXIM_ARRIVAL && memchr(p, '\n', (size_t)(end - p))) {
        const char *q = p;
        while ((q = memchr(q, '\n', (size_t)(end - q))) != NULL) {
            q++;
            if (q < end && *q != ' ' && *q != '\t') {
                ev->flags |= EXIM_F_ABSORBED;
                break;
            }
        }
    }
    return r;
}

/* ---- joiner (1.3, 9.1) ----------------------------------------------------------- */

enum {
    EXIMLOG_JOIN_PLAIN = 0,
    EXIMLOG_JOIN_CWD,
    EXIMLOG_JOIN_ARRIVAL,
};

void
eximlog_joiner_init(struct eximlog_joiner *j)
{
    j->cur = 0;
    j->len = 0;
    j->pending = false;
    j->open = false;
    j->truncated = false;
    j->absorbed = false;
    j->start = 0;
    j->end = 0;
    j->lines = 0;
    j->truncated_records = 0;
    j->orphan_lines = 0;
    j->absorbed_lines = 0;
    j->kind = EXIMLOG_JOIN_PLAIN;
}

/*
 * Is the arrival text [p, end) (after "<= ") unfinished: does its sender, "from <...>" or
 * for-list end inside a double quote or after a lone backslash (9.1 rule 3)? Only those
 * fields are written raw and can carry a newline; the HELO, id= and T= never open
 * anything. Fast path: the quotes of the whole text balance under Exim's backslash rule.
 * @reclen is the length of the record so far.
 */
static bool
eximlog_arrival_open(const char *p, const char *end, size_t reclen)
{
    bool inq = false, esc = false;
    if (!memchr(p, '\\', (size_t)(end - p))) {
        /* hot path: no backslash, so the quotes just alternate */
        for (const char *q = p; (q = memchr(q, '"', (size_t)(end - q))) != NULL; q++)
            inq = !inq;
    } else {
        for (const char *q = p; q < end; q++) {
            if (esc)
                esc = false;
            else if (*q == '\\')
                esc = true;
            else if (*q == '"')
                inq = !inq;
        }
    }
    if (!inq && !esc)
        return false;
    struct eximlog_walk w;
    eximlog_arrival_walk(&w, p, end, reclen);
    return w.nvalid == 0 && (w.why & EXIMLOG_W_OPEN);
}

/* Does [p, end) contain " <digits> args:" or the overflow marker? */
static bool
eximlog_joiner_has_args(const char *p, const char *end)
{
    const char *num;
    size_t count;
    if (eximlog_find_args(p, end, &num, &count))
        return true;
    return eximlog_find_overflow(p, end) != NULL;
}

/* The record being assembled. */
static inline char *
eximlog_jbuf(struct eximlog_joiner *j)
{
    return j->bufs[j->cur];
}

static void
eximlog_joiner_append(struct eximlog_joiner *j, const char *p, size_t n, bool newline)
{
    size_t room = EXIMLOG_RECORD_MAX - j->len;
    if (j->truncated)
        return;
    if (newline) {
        if (room == 0) {
            j->truncated = true;
            j->truncated_records++;
            return;
        }
        eximlog_jbuf(j)[j->len++] = '\n';
        room--;
    }
    if (n > room) {
        n = room;
        j->truncated = true;
        j->truncated_records++;
    }
    memcpy(eximlog_jbuf(j) + j->len, p, n);
    j->len += n;
}

static void
eximlog_joiner_emit(struct eximlog_joiner *j, struct eximlog_record *ret)
{
    char *text = eximlog_jbuf(j);
    text[j->len] = '\0';
    ret->text = text;
    j->cur ^= 1; /* the next record is assembled in the other buffer */
    ret->len = j->len;
    ret->start = j->start;
    ret->end = j->end;
    ret->flags = 0;
    if (j->open)
        ret->flags |= EXIM_F_INCOMPLETE;
    if (j->absorbed)
        ret->flags |= EXIM_F_ABSORBED | (j->kind == EXIMLOG_JOIN_CWD ? EXIM_F_CWD_FORGED : 0);
    ret->truncated = j->truncated;
    j->pending = false;
    j->open = false;
    j->len = 0;
}

/*
 * The joiner only needs to know where a line's text starts and whether it carries a
 * message id, for every line: skip the prefix by its shape and leave the checking of
 * dates, zones and pids to eximlog_parse(), which runs once per record (hot path).
 */
static const char *
eximlog_prefix_skip(const char *p, const char *end, bool *ret_has_id)
{
    *ret_has_id = false;
    /* "dddd-dd-dd dd:dd:dd": the separators rule out nearly every non-entry at once */
    if (end - p < 19 || p[4] != '-' || p[7] != '-' || p[10] != ' ' || p[13] != ':' || p[16] != ':')
        return NULL;
    if (!eximlog_is_digit(p[0]) || !eximlog_is_digit(p[3]) || !eximlog_is_digit(p[5]) ||
        !eximlog_is_digit(p[9]) || !eximlog_is_digit(p[11]) || !eximlog_is_digit(p[18]))
        return NULL;
    p += 19;
    if (end - p >= 4 && p[0] == '.' && eximlog_is_digit(p[1]) && eximlog_is_digit(p[2]) &&
        eximlog_is_digit(p[3]))
        p += 4;
    if (p < end && *p == ' ')
        p++;
    if (end - p >= 6 && (p[0] == '+' || p[0] == '-') && p[5] == ' ' && eximlog_is_digit(p[1]) &&
        eximlog_is_digit(p[4]))
        p += 6;
    if (p < end && *p == '[') {
        const char *q = p + 1;
        while (q < end && q - p <= 11 && eximlog_is_digit(*q))
            q++;
        if (q < end && *q == ']' && q > p + 1 && q + 1 < end && q[1] == ' ')
            p = q + 2;
    }
    /* the id's shape only: a token that merely looks like one makes the line a record with
     * an id here and an unknown record in eximlog_parse(), which checks every byte */
    for (size_t n = 16; n <= 23; n += 7) {
        if ((size_t)(end - p) > n && p[n] == ' ' && p[6] == '-' &&
            p[n - (n == 16 ? 3 : 5)] == '-') {
            *ret_has_id = true;
            return p + n + 1;
        }
    }
    return p;
}

/* Classify a line that starts a record and decide whether its syntax is open. */
static void
eximlog_joiner_begin(struct eximlog_joiner *j, const char *line, size_t len)
{
    const char *end = line + len;
    bool has_id = false;
    while (line < end && *line == '\0')
        line++;
    const char *p = eximlog_prefix_skip(line, end, &has_id);
    j->kind = EXIMLOG_JOIN_PLAIN;
    j->open = false;
    j->truncated = false;
    j->absorbed = false;
    if (!p)
        return;
    if (!has_id && EXIMLOG_STARTS(p, end, "cwd=")) {
        j->kind = EXIMLOG_JOIN_CWD;
        j->open = !eximlog_joiner_has_args(p + 4, end);
    } else if (has_id && end - p >= 3 && (p[0] == '<' || p[0] == '(') && p[1] == '=' &&
               p[2] == ' ') {
        j->kind = EXIMLOG_JOIN_ARRIVAL;
        j->open = eximlog_arrival_open(p + 3, end, len);
    }
}

int
eximlog_joiner_push(struct eximlog_joiner *j, const char *line, size_t len, uint64_t start,
                    uint64_t end, struct eximlog_record *ret)
{
    j->lines++;
    if (j->pending && j->open && j->kind == EXIMLOG_JOIN_CWD &&
        start - j->start >= EXIMLOG_RECORD_MAX)
        j->open = false; /* past the most one write can hold: the entry ended before */
    if (j->pending && j->open) {
        /* rules 2 and 3: the entry is not finished, whatever this line looks like */
        j->end = end;
        if (len > 0 && line[0] != ' ' && line[0] != '\t') {
            j->absorbed = true;
            j->absorbed_lines++;
        }
        size_t before = j->len;
        eximlog_joiner_append(j, line, len, true);
        const char *seg = eximlog_jbuf(j) + before;
        const char *segend = eximlog_jbuf(j) + j->len;
        if (j->kind == EXIMLOG_JOIN_CWD) {
            /* A directory name with a newline: nothing after it tells where Exim's write
             * ends (the name can hold " N args:" and whole lines of its own, and close
             * with a line of its choosing), but one write never exceeds the log buffer.
             * Every line within that span belongs to the entry, unless the overflow
             * marker ends it. */
            j->open = eximlog_find_overflow(seg, segend) == NULL;
        } else {
            bool has_id;
            const char *b = eximlog_jbuf(j);
            while (b < segend && *b == '\0')
                b++;
            const char *t = eximlog_prefix_skip(b, segend, &has_id);
            j->open = t && segend - t > 3 && eximlog_arrival_open(t + 3, segend, j->len);
        }
        if (j->truncated)
            j->open = false; /* bounded: the rest of the entry is lost, never a record */
        return 0;
    }
    if (len == 0) {
        if (j->pending)
            j->end = end;
        return 0;
    }
    if (line[0] == ' ' || line[0] == '\t') {
        if (!j->pending) {
            j->orphan_lines++;
            return 0;
        }
        j->end = end;
        eximlog_joiner_append(j, line, len, true);
        return 0;
    }
    int r = 0;
    if (j->pending) {
        eximlog_joiner_emit(j, ret);
        r = 1;
    }
    j->pending = true;
    j->start = start;
    j->end = end;
    j->len = 0;
    j->truncated = false;
    eximlog_joiner_begin(j, line, len);
    eximlog_joiner_append(j, line, len, false);
    if (j->truncated)
        j->open = false;
    return r;
}

int
eximlog_joiner_flush(struct eximlog_joiner *j, bool force, struct eximlog_record *ret)
{
    if (!j->pending)
        return 0;
    if (j->open && !force)
        return 0;
    eximlog_joiner_emit(j, ret);
    return 1;
}

uint64_t
eximlog_joiner_resume(const struct eximlog_joiner *j, uint64_t committed_end)
{
    return j->pending ? j->start : committed_end;
}

int
eximlog_joiner_overlong(struct eximlog_joiner *j, uint64_t start, uint64_t end,
                        struct eximlog_record *ret)
{
    int r = 0;
    (void)start;
    j->lines++;
    j->truncated_records++;
    if (j->pending) {
        if (j->open) {
            j->end = end; /* the skipped line belonged to the open entry */
            j->truncated = true;
        }
        eximlog_joiner_emit(j, ret);
        r = 1;
    }
    return r;
}
