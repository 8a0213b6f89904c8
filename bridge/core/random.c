#include "bridge/core/random.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

enum { POOL_BYTES = 256 };

static _Thread_local unsigned char pool[POOL_BYTES];
static _Thread_local size_t pool_left; /* unused bytes at the end of pool */

static void refill(void)
{
    if (getrandom(pool, sizeof pool, 0) != (ssize_t)sizeof pool)
        for (size_t i = 0; i < sizeof pool; i++)
            pool[i] = (unsigned char)random();
    pool_left = sizeof pool;
}

void random_fill(void *out, size_t length)
{
    unsigned char *to = out;
    while (length > 0) {
        if (pool_left == 0)
            refill();
        size_t take = length < pool_left ? length : pool_left;
        unsigned char *from = pool + sizeof pool - pool_left;
        memcpy(to, from, take);
        memset(from, 0, take); /* a byte handed out is not kept */
        pool_left -= take;
        to += take;
        length -= take;
    }
}
