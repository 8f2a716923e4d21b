/*
 * campaign.c - many identities sending one thing: a spam run spread over compromised
 * mailboxes and scripts, each under every per-identity limit.
 *
 * A key is what makes messages one campaign: the normalized subject
 * (campaign_subject_norm) or the set of recipient domains, hashed with SipHash under the
 * engine's key. Per key the table remembers up to CAMPAIGN_MEMBERS distinct identities
 * (their identity-table references) with the log time each last sent it, and a baseline:
 * how many distinct identities sent the key within a window before, decayed. Periods for
 * the baseline are fixed spans of window_ms (log time / window_ms); each remembers the
 * highest sliding count it saw (what the trip compares, so a key's ordinary ups and downs
 * are in its baseline); when one ends, the baseline becomes the larger of that peak and the
 * old baseline times CAMPAIGN_DECAY (both decayed again for every empty period between).
 * The decay is slow: a key must be gone for hours before its surge counts as new.
 *
 * A key trips when the identities that sent it within the sliding window exceed "above",
 * factor x baseline and baseline + CAMPAIGN_NOISE_Z x sqrt(baseline) (a key with a mean of
 * 3 senders a window reaches 9 by chance now and then; a new key cannot), and not before
 * learn_ms after the first message the table saw: a shared host sends "Invoice" or "Hello"
 * from hundreds of senders every hour, which is the background (its baseline is high), not
 * a campaign; a campaign is a surge of a key the host was not sending. Once tripped, a key
 * stays so while its sliding count is above "above", and every identity that sends it
 * meanwhile is reported as a member.
 *
 * Bounded: cap keys allocated once; a key enters the table only when a second identity
 * sends it within the window (the first sender waits in the doorkeeper below), so the many
 * subjects only one sender ever uses cannot push out the keys with a history; a new key
 * takes the place of the least recently used one (counted). Counts saturate at CAMPAIGN_MEMBERS: an identity that finds the list full of identities
 * still inside the window is not remembered, and the count reads "at least
 * CAMPAIGN_MEMBERS" for a window. No allocation after campaign_new().
 *
 * Layout, for the cache: most keys are subjects one sender used once. Those stop at the
 * doorkeeper (struct campaign_door: a key enters the table when a second identity sends
 * it within the window, with its first sender). A key's hot part
 * (struct campaign_key, 64 bytes: hash chain, LRU links, baseline, its first member) is
 * all such a key ever touches; its cold part (struct campaign_cold: the shown text and
 * the member list) is written when a second identity sends it.
 */
#include "campaign.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define CAMPAIGN_NONE UINT32_MAX

/* A member: its identity-table reference and when it last sent the key (0: never). */
struct campaign_slot {
    uint32_t slot, gen;
    uint32_t last_s; /* seconds since the table's first message, plus one */
};

struct campaign_key {
    uint64_t hash;
    uint32_t hnext, prev, next; /* hash chain; LRU list (prev: more recent) */
    uint32_t touched;           /* c->tick when last moved to the front of its LRU list */
    uint32_t overflow_s;        /* last time (campaign_time) an identity found the list full */
    uint32_t epoch_peak;        /* highest sliding count seen in the current period */
    uint32_t epoch;             /* the current period: log time / window_ms */
    float baseline;
    uint8_t tripped, nmembers, first_scope;
    struct campaign_slot first; /* the member while there is one; then cold->members[0] */
};

struct campaign_cold {
    char text[CAMPAIGN_TEXT_MAX + 1];
    uint8_t scopes[CAMPAIGN_MEMBERS];
    struct campaign_slot members[CAMPAIGN_MEMBERS]; /* first seen first */
};

/*
 * The doorkeeper: a key's first sender waits here (one slot per hash, overwritten by any
 * other key) and the key enters the table only when a second identity sends it within the
 * window. Most subjects are sent once by one sender: they never touch the table.
 */
struct campaign_door {
    uint32_t tag; /* the key's hash, high half, never 0; 0: empty */
    uint32_t slot, gen, last_s;
    uint32_t scope;
};

struct campaign {
    struct campaign_params p;
    struct campaign_door *door;
    uint32_t ndoor; /* a power of two, twice the keys */
    uint8_t key[SIPHASH_KEY_LEN];
    struct campaign_key *keys;
    struct campaign_cold *cold; /* per key, written from its second identity on */
    uint32_t *buckets;
    uint32_t nbuckets; /* a power of two */
    uint32_t nused;
    uint32_t lru_head, lru_tail; /* most, least recently used */
    int64_t start_ms;  /* first message seen, INT64_MIN: none yet */
    uint32_t window_s; /* the window in whole seconds, rounded up */
    uint32_t tick;     /* notes so far (wraps): how recently a key was moved */
    struct campaign_stats stats;
};

struct campaign *
campaign_new(const struct campaign_params *p, const uint8_t key[SIPHASH_KEY_LEN])
{
    struct campaign *c;

    if (p->cap == 0 || p->window_ms <= 0 || p->above >= CAMPAIGN_MEMBERS || p->factor < 1.0)
        return NULL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->p = *p;
    memcpy(c->key, key, SIPHASH_KEY_LEN);
    c->nbuckets = 16;
    while (c->nbuckets < p->cap && c->nbuckets < (1u << 30))
        c->nbuckets <<= 1;
    /* calloc: the pages of keys never used are never touched */
    c->keys = calloc(p->cap, sizeof(*c->keys));
    c->cold = calloc(p->cap, sizeof(*c->cold));
    c->buckets = malloc(c->nbuckets * sizeof(*c->buckets));
    c->ndoor = c->nbuckets < (1u << 29) ? 2 * c->nbuckets : c->nbuckets;
    c->door = calloc(c->ndoor, sizeof(*c->door));
    if (!c->keys || !c->cold || !c->buckets || !c->door) {
        campaign_free(c);
        return NULL;
    }
    memset(c->buckets, 0xff, c->nbuckets * sizeof(*c->buckets));
    c->lru_head = c->lru_tail = CAMPAIGN_NONE;
    c->start_ms = INT64_MIN;
    c->window_s = (uint32_t)((p->window_ms + 999) / 1000);
    return c;
}

void
campaign_free(struct campaign *c)
{
    if (!c)
        return;
    free(c->keys);
    free(c->cold);
    free(c->door);
    free(c->buckets);
    free(c);
}

const struct campaign_stats *
campaign_stats(const struct campaign *c)
{
    return &c->stats;
}

uint64_t
campaign_key_of(const struct campaign *c, const void *p, size_t n)
{
    return siphash(p, n, c->key);
}

/* Shell sort in place: no allocation (qsort may allocate), and sets are small. */
static void
campaign_sort(uint64_t *v, size_t n)
{
    static const size_t gaps[] = { 301, 132, 57, 23, 10, 4, 1 };

    for (size_t g = 0; g < N_ELEMS(gaps); g++) {
        size_t gap = gaps[g];
        for (size_t i = gap; i < n; i++) {
            uint64_t x = v[i];
            size_t j = i;
            for (; j >= gap && v[j - gap] > x; j -= gap)
                v[j] = v[j - gap];
            v[j] = x;
        }
    }
}

uint64_t
campaign_set_key(const struct campaign *c, uint64_t *hashes, size_t n, size_t min)
{
    size_t out = 0;

    if (n < min || n == 0)
        return 0;
    campaign_sort(hashes, n);
    for (size_t i = 0; i < n; i++)
        if (out == 0 || hashes[i] != hashes[out - 1])
            hashes[out++] = hashes[i];
    if (out < min)
        return 0;
    return siphash(hashes, out * sizeof(*hashes), c->key) | 1; /* never 0 */
}

/* --- the LRU list and the hash chains ---------------------------------------------- */

static void
campaign_lru_unlink(struct campaign *c, struct campaign_key *k)
{
    if (k->prev != CAMPAIGN_NONE)
        c->keys[k->prev].next = k->next;
    else
        c->lru_head = k->next;
    if (k->next != CAMPAIGN_NONE)
        c->keys[k->next].prev = k->prev;
    else
        c->lru_tail = k->prev;
}

static void
campaign_lru_front(struct campaign *c, struct campaign_key *k)
{
    uint32_t i = (uint32_t)(k - c->keys);

    k->prev = CAMPAIGN_NONE;
    k->next = c->lru_head;
    if (c->lru_head != CAMPAIGN_NONE)
        c->keys[c->lru_head].prev = i;
    else
        c->lru_tail = i;
    c->lru_head = i;
    k->touched = c->tick;
}

static void
campaign_unchain(struct campaign *c, struct campaign_key *k)
{
    uint32_t i = (uint32_t)(k - c->keys);
    uint32_t *pp = &c->buckets[k->hash & (c->nbuckets - 1)];

    while (*pp != CAMPAIGN_NONE && *pp != i)
        pp = &c->keys[*pp].hnext;
    if (*pp == i)
        *pp = k->hnext;
}

static struct campaign_key *
campaign_find(struct campaign *c, uint64_t hash)
{
    for (uint32_t i = c->buckets[hash & (c->nbuckets - 1)]; i != CAMPAIGN_NONE;
         i = c->keys[i].hnext)
        if (c->keys[i].hash == hash)
            return &c->keys[i];
    return NULL;
}

static struct campaign_key *
campaign_add(struct campaign *c, uint64_t hash, int64_t now_ms)
{
    struct campaign_key *k;
    uint32_t *head;

    if (c->nused < c->p.cap) {
        k = &c->keys[c->nused++];
        c->stats.keys++;
    } else {
        k = &c->keys[c->lru_tail];
        campaign_lru_unlink(c, k);
        campaign_unchain(c, k);
        c->stats.evictions++;
    }
    memset(k, 0, sizeof(*k));
    k->hash = hash;
    k->epoch = (uint32_t)(now_ms / c->p.window_ms);
    head = &c->buckets[hash & (c->nbuckets - 1)];
    k->hnext = *head;
    *head = (uint32_t)(k - c->keys);
    campaign_lru_front(c, k);
    return k;
}

/* --- counting ------------------------------------------------------------------------ */

static double
campaign_decay(double v, int64_t periods)
{
    for (int64_t i = 0; i < periods && v > 1e-3; i++)
        v *= CAMPAIGN_DECAY;
    return periods > 64 ? 0.0 : v;
}

/* Close the periods that ended before @now_ms into the baseline. */
static void
campaign_roll(const struct campaign *c, struct campaign_key *k, int64_t now_ms)
{
    uint32_t epoch = (uint32_t)(now_ms / c->p.window_ms);
    int64_t gone;
    double last, base;

    if (epoch <= k->epoch)
        return;
    gone = (int64_t)epoch - k->epoch;
    last = campaign_decay((double)k->epoch_peak, gone - 1);
    base = campaign_decay((double)k->baseline, gone);
    k->baseline = (float)(last > base ? last : base);
    k->epoch = epoch;
    k->epoch_peak = 0;
}

/*
 * What a key's count must pass: "above", factor x baseline, and the baseline plus
 * CAMPAIGN_NOISE_Z standard deviations of a Poisson count of that mean, so the chance ups
 * and downs of a key a few senders use now and then are not a surge.
 */
static uint64_t
campaign_threshold(const struct campaign *c, double baseline)
{
    double t = c->p.factor * baseline, noise = baseline + CAMPAIGN_NOISE_Z * sqrt(baseline);

    if (noise > t)
        t = noise;
    return t > (double)c->p.above ? (uint64_t)t : c->p.above;
}

/* Log time as a member's last_s: whole seconds since the first message, plus one. */
static uint32_t
campaign_time(const struct campaign *c, int64_t now_ms)
{
    int64_t s = (now_ms - c->start_ms) / 1000 + 1;

    return s < 1 ? 1 : s > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

static bool
campaign_is(const struct campaign_slot *v, uint8_t scope, struct campaign_member m)
{
    return v->slot == m.ref.slot && v->gen == m.ref.gen && scope == (uint8_t)m.scope;
}

/*
 * Remember @m sent the key at @now (campaign_time) and count the identities that sent it
 * within the window (CAMPAIGN_MEMBERS: at least that many), in one pass. *@idx is the
 * member's index, or -1 when the list is full of identities still inside the window. A
 * key with one member keeps it in its hot part; the second moves the list to the cold
 * part (and the key's shown text with it: @text is asked for then).
 */
static uint32_t
campaign_remember(struct campaign *c, struct campaign_key *k, struct campaign_member m,
                  uint32_t now, campaign_text_fn text, void *text_ctx, int *idx)
{
    uint32_t since = now > c->window_s ? now - c->window_s : 0, count = 0;
    struct campaign_cold *cold = &c->cold[k - c->keys];
    size_t oldest = 0, n = k->nmembers, found = SIZE_MAX;
    struct campaign_slot *v = cold->members;

    if (n == 0 || (n == 1 && campaign_is(&k->first, k->first_scope, m))) {
        count = 1;
        k->first = (struct campaign_slot){ m.ref.slot, m.ref.gen, now };
        k->first_scope = (uint8_t)m.scope;
        k->nmembers = 1;
        *idx = 0;
        return count;
    }
    if (n == 1) { /* a second identity: the list moves to the cold part */
        v[0] = k->first;
        cold->scopes[0] = k->first_scope;
        if (text)
            text(text_ctx, cold->text, sizeof(cold->text));
        cold->text[sizeof(cold->text) - 1] = '\0';
    }
    for (size_t i = 0; i < n; i++) {
        count += v[i].last_s > since;
        if (campaign_is(&v[i], cold->scopes[i], m))
            found = i;
        if (v[i].last_s < v[oldest].last_s)
            oldest = i;
    }
    if (found != SIZE_MAX) {
        count += v[found].last_s <= since;
        v[found].last_s = now;
        *idx = (int)found;
    } else if (n < CAMPAIGN_MEMBERS) {
        v[n] = (struct campaign_slot){ m.ref.slot, m.ref.gen, now };
        cold->scopes[n] = (uint8_t)m.scope;
        k->nmembers++;
        count++;
        *idx = (int)n;
    } else if (v[oldest].last_s > since) {
        k->overflow_s = now;
        *idx = -1;
    } else {
        /* keep the list in first-seen order: the stale one leaves, the rest move up */
        memmove(&v[oldest], &v[oldest + 1], (n - oldest - 1) * sizeof(v[0]));
        memmove(&cold->scopes[oldest], &cold->scopes[oldest + 1], n - oldest - 1);
        v[n - 1] = (struct campaign_slot){ m.ref.slot, m.ref.gen, now };
        cold->scopes[n - 1] = (uint8_t)m.scope;
        count++;
        *idx = (int)(n - 1);
    }
    return k->overflow_s > since ? CAMPAIGN_MEMBERS : count;
}

static void
campaign_fill(const struct campaign *c, const struct campaign_key *k, uint32_t count,
              uint64_t threshold, struct campaign_trip *ret)
{
    memcpy(ret->text, c->cold[k - c->keys].text, sizeof(ret->text));
    ret->identities = count;
    ret->baseline = k->baseline;
    ret->threshold = threshold;
    ret->nmembers = 0;
}

enum campaign_result
campaign_note(struct campaign *c, uint64_t key, campaign_text_fn text, void *text_ctx,
              struct campaign_member m, int64_t now_ms, struct campaign_trip *ret)
{
    struct campaign_key *k = campaign_find(c, key);
    const struct campaign_cold *cold;
    uint64_t threshold;
    uint32_t count, now;
    int idx;

    if (c->start_ms == INT64_MIN)
        c->start_ms = now_ms;
    now = campaign_time(c, now_ms);
    c->tick++;
    if (!k) {
        struct campaign_door *d = &c->door[key & (c->ndoor - 1)];
        uint32_t tag = (uint32_t)(key >> 32) | 1;
        if (d->tag != tag || d->last_s + c->window_s <= now ||
            campaign_is(&(struct campaign_slot){ d->slot, d->gen, 0 }, (uint8_t)d->scope, m)) {
            *d = (struct campaign_door){ tag, m.ref.slot, m.ref.gen, now, (uint32_t)m.scope };
            return CAMPAIGN_QUIET;
        }
        /* a second identity within the window: the key enters with its first sender */
        k = campaign_add(c, key, now_ms);
        k->first = (struct campaign_slot){ d->slot, d->gen, d->last_s };
        k->first_scope = (uint8_t)d->scope;
        k->nmembers = 1;
        d->tag = 0;
    } else if (k->prev != CAMPAIGN_NONE && c->tick - k->touched > c->p.cap / 16) {
        /* a key moved to the front lately is still far from the end: leave it there */
        campaign_lru_unlink(c, k);
        campaign_lru_front(c, k);
    }
    campaign_roll(c, k, now_ms);
    count = campaign_remember(c, k, m, now, text, text_ctx, &idx);
    if (count > k->epoch_peak)
        k->epoch_peak = count;
    if (count <= c->p.above) { /* under every threshold: the common case ends here */
        k->tripped = 0;
        return CAMPAIGN_QUIET;
    }
    threshold = campaign_threshold(c, k->baseline);
    if (k->tripped) {
        campaign_fill(c, k, count, threshold, ret);
        ret->members[0] = m;
        ret->nmembers = 1;
        return CAMPAIGN_MEMBER;
    }
    if (count <= threshold || now_ms - c->start_ms < c->p.learn_ms)
        return CAMPAIGN_QUIET;
    k->tripped = 1;
    c->stats.trips++;
    campaign_fill(c, k, count, threshold, ret);
    cold = &c->cold[k - c->keys];
    for (size_t i = 0; i < k->nmembers && ret->nmembers < CAMPAIGN_TRIP_MAX; i++)
        if (cold->members[i].last_s + c->window_s > now)
            ret->members[ret->nmembers++] = (struct campaign_member){
                { cold->members[i].slot, cold->members[i].gen },
                (enum usertable_scope)cold->scopes[i]
            };
    /* the sender of this message is named even when the list is full */
    if (idx < 0 && ret->nmembers < CAMPAIGN_TRIP_MAX)
        ret->members[ret->nmembers++] = m;
    else if (idx < 0)
        ret->members[CAMPAIGN_TRIP_MAX - 1] = m;
    return CAMPAIGN_TRIPPED;
}

/* --- subjects ------------------------------------------------------------------------ */

/* Exim's T= escapes undone (string_printing and the backslash before '"' and '\'). */
static size_t
campaign_unescape(const char *s, size_t len, unsigned char *out, size_t size)
{
    size_t n = 0;

    for (size_t i = 0; i < len && n < size; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch != '\\' || i + 1 == len) {
            /* the run up to the next backslash at once: most subjects have none */
            const char *bs = memchr(s + i, '\\', len - i);
            size_t run = (bs ? (size_t)(bs - s) : len) - i;
            if (run > size - n)
                run = size - n;
            if (run == 0)
                run = 1;
            memcpy(out + n, s + i, run);
            n += run;
            i += run - 1;
            continue;
        }
        ch = (unsigned char)s[++i];
        if (ch >= '0' && ch <= '7' && i + 2 < len && s[i + 1] >= '0' && s[i + 1] <= '7' &&
            s[i + 2] >= '0' && s[i + 2] <= '7') {
            out[n++] = (unsigned char)(((ch - '0') << 6) | ((s[i + 1] - '0') << 3) | (s[i + 2] - '0'));
            i += 2;
        } else if (ch == 'n' || ch == 'r' || ch == 't' || ch == 'b' || ch == 'v' || ch == 'f') {
            out[n++] = ' ';
        } else {
            out[n++] = ch; /* \\ and \" */
        }
    }
    return n;
}

/*
 * One code point folded: an ASCII letter or digit (lowercase), 0 for a separator, -1 to
 * drop (zero-width, and the joiners - _ . / : # that glue ids together: "INV-2024-0042" is
 * one word, so one '#'), or 1 to keep its bytes as part of a word.
 */
static int
campaign_fold(uint32_t cp)
{
    /* Latin-1 letters U+00C0..U+00FF without their accents; ' ' for the two signs */
    static const char latin1[] = "aaaaaaaceeeeiiiidnooooo ouuuuyts"
                                 "aaaaaaaceeeeiiiidnooooo ouuuuyty";
    /* look-alikes of Latin letters: Cyrillic and Greek, lower and upper case */
    static const struct {
        uint16_t cp;
        char ascii;
    } alike[] = {
        { 0x0391, 'a' }, { 0x0392, 'b' }, { 0x0395, 'e' }, { 0x0396, 'z' }, { 0x0397, 'h' },
        { 0x0399, 'i' }, { 0x039A, 'k' }, { 0x039C, 'm' }, { 0x039D, 'n' }, { 0x039F, 'o' },
        { 0x03A1, 'p' }, { 0x03A4, 't' }, { 0x03A5, 'y' }, { 0x03A7, 'x' }, { 0x03B1, 'a' },
        { 0x03B2, 'b' }, { 0x03B5, 'e' }, { 0x03B9, 'i' }, { 0x03BA, 'k' }, { 0x03BD, 'v' },
        { 0x03BF, 'o' }, { 0x03C1, 'p' }, { 0x03C4, 't' }, { 0x03C5, 'u' }, { 0x03C7, 'x' },
        { 0x0405, 's' }, { 0x0406, 'i' }, { 0x0408, 'j' }, { 0x0410, 'a' }, { 0x0412, 'b' },
        { 0x0415, 'e' }, { 0x041A, 'k' }, { 0x041C, 'm' }, { 0x041D, 'h' }, { 0x041E, 'o' },
        { 0x0420, 'p' }, { 0x0421, 'c' }, { 0x0422, 't' }, { 0x0423, 'y' }, { 0x0425, 'x' },
        { 0x0430, 'a' }, { 0x0432, 'b' }, { 0x0435, 'e' }, { 0x043A, 'k' }, { 0x043C, 'm' },
        { 0x043D, 'h' }, { 0x043E, 'o' }, { 0x0440, 'p' }, { 0x0441, 'c' }, { 0x0442, 't' },
        { 0x0443, 'y' }, { 0x0445, 'x' }, { 0x0455, 's' }, { 0x0456, 'i' }, { 0x0458, 'j' },
        { 0x0501, 'd' },
    };
    size_t lo = 0, hi = N_ELEMS(alike);

    if (cp >= 0xFF01 && cp <= 0xFF5E) /* fullwidth forms of ASCII */
        cp -= 0xFEE0;
    if (cp < 0x80) {
        if (cp >= 'A' && cp <= 'Z')
            return (int)(cp - 'A' + 'a');
        if ((cp >= 'a' && cp <= 'z') || (cp >= '0' && cp <= '9'))
            return (int)cp;
        if (cp == '-' || cp == '_' || cp == '.' || cp == '/' || cp == ':' || cp == '#')
            return -1;
        return 0;
    }
    if (cp == 0xAD || (cp >= 0x200B && cp <= 0x200D) || cp == 0x2060 || cp == 0xFEFF)
        return -1;
    if (cp >= 0xC0 && cp <= 0xFF)
        return latin1[cp - 0xC0] == ' ' ? 0 : latin1[cp - 0xC0];
    if (cp < 0xC0 || (cp >= 0x2000 && cp <= 0x206F) || cp == 0x3000)
        return 0; /* Latin-1 signs and spaces, general punctuation, ideographic space */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (alike[mid].cp == cp)
            return alike[mid].ascii;
        if (alike[mid].cp < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 1;
}

/* The code point at @p (at most @n bytes) and its length; a bad sequence is one byte. */
static uint32_t
campaign_utf8(const unsigned char *p, size_t n, size_t *len)
{
    uint32_t cp;
    size_t need;

    if (p[0] < 0x80) {
        *len = 1;
        return p[0];
    }
    if ((p[0] & 0xE0) == 0xC0) {
        need = 2;
        cp = p[0] & 0x1F;
    } else if ((p[0] & 0xF0) == 0xE0) {
        need = 3;
        cp = p[0] & 0x0F;
    } else if ((p[0] & 0xF8) == 0xF0) {
        need = 4;
        cp = p[0] & 0x07;
    } else {
        *len = 1;
        return 0x110000; /* not a code point: kept as a word byte */
    }
    if (need > n) {
        *len = 1;
        return 0x110000;
    }
    for (size_t i = 1; i < need; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            *len = 1;
            return 0x110000;
        }
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    *len = need;
    return cp;
}

#define CAMPAIGN_WORD_MAX 24 /* longer words are ids */

struct campaign_norm {
    char *out;
    size_t size, n;
    char word[CAMPAIGN_WORD_MAX];
    size_t wlen;
    bool digit, long_word, hash_last, full;
    uint8_t case_run; /* ASCII case pattern of the word so far (CAMPAIGN_CASE_*) */
};

/* A word whose letters change case the way random ids do (xIB2q, HSNzu) is an id. */
enum {
    CAMPAIGN_CASE_NONE = 0, /* no letter yet */
    CAMPAIGN_CASE_LOWER,    /* lower case after any first letter (Invoice, invoice) */
    CAMPAIGN_CASE_UPPER1,   /* one upper-case letter */
    CAMPAIGN_CASE_UPPERS,   /* two or more upper-case letters (INVOICE) */
    CAMPAIGN_CASE_MIXED,    /* upper after lower, or lower after two uppers: an id */
};

static void
campaign_case(struct campaign_norm *s, uint32_t cp)
{
    bool upper = cp >= 'A' && cp <= 'Z', lower = cp >= 'a' && cp <= 'z';

    if (!upper && !lower)
        return;
    switch (s->case_run) {
    case CAMPAIGN_CASE_NONE:
        s->case_run = upper ? CAMPAIGN_CASE_UPPER1 : CAMPAIGN_CASE_LOWER;
        break;
    case CAMPAIGN_CASE_LOWER:
        if (upper)
            s->case_run = CAMPAIGN_CASE_MIXED;
        break;
    case CAMPAIGN_CASE_UPPER1:
        s->case_run = upper ? CAMPAIGN_CASE_UPPERS : CAMPAIGN_CASE_LOWER;
        break;
    case CAMPAIGN_CASE_UPPERS:
        if (lower)
            s->case_run = CAMPAIGN_CASE_MIXED;
        break;
    default:
        break;
    }
}

/* Append a word; the first one that does not fit ends the output. */
static void
campaign_put(struct campaign_norm *s, const char *p, size_t n)
{
    if (s->full || s->n + (s->n ? 1 : 0) + n + 1 > s->size) {
        s->full = true;
        return;
    }
    if (s->n)
        s->out[s->n++] = ' ';
    memcpy(s->out + s->n, p, n);
    s->n += n;
}

static void
campaign_word_end(struct campaign_norm *s)
{
    bool id = s->digit || s->long_word || s->case_run == CAMPAIGN_CASE_MIXED;

    if (s->wlen == 0 && !s->long_word)
        return;
    if (id) {
        if (!s->hash_last)
            campaign_put(s, "#", 1);
        s->hash_last = true;
    } else if (!(s->n == 0 && ((s->wlen == 2 && memcmp(s->word, "re", 2) == 0) ||
                               (s->wlen == 2 && memcmp(s->word, "fw", 2) == 0) ||
                               (s->wlen == 3 && memcmp(s->word, "fwd", 3) == 0)))) {
        campaign_put(s, s->word, s->wlen);
        s->hash_last = false;
    }
    s->wlen = 0;
    s->digit = s->long_word = false;
    s->case_run = CAMPAIGN_CASE_NONE;
}

static void
campaign_word_byte(struct campaign_norm *s, char ch)
{
    if (s->wlen == CAMPAIGN_WORD_MAX)
        s->long_word = true;
    else
        s->word[s->wlen++] = ch;
}

static void
campaign_word_add(struct campaign_norm *s, const unsigned char *p, size_t n)
{
    if (s->wlen + n > CAMPAIGN_WORD_MAX) {
        s->long_word = true;
        return;
    }
    memcpy(s->word + s->wlen, p, n);
    s->wlen += n;
}

size_t
campaign_subject_norm(const char *esc, size_t len, char *out, size_t size)
{
    unsigned char raw[512];
    size_t n = campaign_unescape(esc, len, raw, sizeof(raw)), len1;
    struct campaign_norm s = { .out = out, .size = size };

    if (size == 0)
        return 0;
    for (size_t i = 0; i < n; i += len1) {
        uint32_t cp;
        if (raw[i] < 0x80) { /* ASCII: no decoding, no table search */
            unsigned char ch = raw[i];
            len1 = 1;
            if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') {
                campaign_case(&s, ch);
                campaign_word_byte(&s, (char)(ch | 0x20));
            } else if (ch >= '0' && ch <= '9') {
                s.digit = true;
                campaign_word_byte(&s, (char)ch);
            } else if (ch != '-' && ch != '_' && ch != '.' && ch != '/' && ch != ':' && ch != '#') {
                campaign_word_end(&s);
            }
            continue;
        }
        cp = campaign_utf8(raw + i, n - i, &len1);
        int f = cp == 0x110000 ? 1 : campaign_fold(cp);
        if (f == -1)
            continue;
        if (f == 0) {
            campaign_word_end(&s);
        } else if (f == 1) {
            campaign_word_add(&s, raw + i, len1);
        } else {
            unsigned char ch = (unsigned char)f;
            if (ch >= '0' && ch <= '9')
                s.digit = true;
            campaign_case(&s, cp);
            campaign_word_add(&s, &ch, 1);
        }
    }
    campaign_word_end(&s);
    out[s.n] = '\0';
    return s.n;
}
