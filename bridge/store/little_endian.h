/*
 * Little-endian fields of the store's on-disk records (spool, held-message
 * ring, Qlik Cloud seen ring): one definition, so every file Butler writes
 * reads back the same on any host.
 */
#ifndef BUTLER_STORE_LITTLE_ENDIAN_H
#define BUTLER_STORE_LITTLE_ENDIAN_H

#include <stdint.h>

static inline void store_put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline void store_put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint32_t store_get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline uint64_t store_get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#endif
