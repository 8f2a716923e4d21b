/*
 * siphash.c - SipHash-2-4 (Aumasson and Bernstein, 2012), the keyed hash behind every
 * table whose keys come from the Exim log. The key is drawn from getrandom() at start,
 * so a sender who picks addresses cannot choose colliding keys. Checked against the
 * reference vectors in tests/check_usertable.c.
 */
#include "siphash.h"

#include <string.h>

#define SIPHASH_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

#define SIPHASH_ROUND(v0, v1, v2, v3)                                                              \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = SIPHASH_ROTL(v1, 13);                                                                 \
        v1 ^= v0;                                                                                  \
        v0 = SIPHASH_ROTL(v0, 32);                                                                 \
        v2 += v3;                                                                                  \
        v3 = SIPHASH_ROTL(v3, 16);                                                                 \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = SIPHASH_ROTL(v3, 21);                                                                 \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = SIPHASH_ROTL(v1, 17);                                                                 \
        v1 ^= v2;                                                                                  \
        v2 = SIPHASH_ROTL(v2, 32);                                                                 \
    } while (0)

static uint64_t
siphash_load64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

uint64_t
siphash(const void *data, size_t len, const uint8_t key[SIPHASH_KEY_LEN])
{
    const uint8_t *p = data, *end = p + (len & ~(size_t)7);
    uint64_t k0 = siphash_load64(key), k1 = siphash_load64(key + 8);
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    uint64_t b = (uint64_t)len << 56, m;

    for (; p != end; p += 8) {
        m = siphash_load64(p);
        v3 ^= m;
        SIPHASH_ROUND(v0, v1, v2, v3);
        SIPHASH_ROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)p[i] << (8 * i);
    v3 ^= b;
    SIPHASH_ROUND(v0, v1, v2, v3);
    SIPHASH_ROUND(v0, v1, v2, v3);
    v0 ^= b;
    v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        SIPHASH_ROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}
