#ifndef FLOODGATE_SIPHASH_H
#define FLOODGATE_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#define SIPHASH_KEY_LEN 16

/* SipHash-2-4 of @len bytes under a 16-byte key: every table keyed by log text uses it. */
uint64_t siphash(const void *data, size_t len, const uint8_t key[SIPHASH_KEY_LEN]);

#endif
