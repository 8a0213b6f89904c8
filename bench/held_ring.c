/*
 * What held.ring costs the network thread per consumed message: spool_add of
 * a 300-byte record alone, then spool_add plus held_messages_add (one 24-byte
 * pwrite into held.ring), side by side in one run on the same directory
 * (spool.fsync off, as by default; no compaction: items are finished in bulk
 * between rounds). Prints one JSON line with both rates and their ratio.
 *
 *   held_ring DIR [N]   (DIR: a scratch directory; default N = 200,000 per side)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge/store/held_messages.h"
#include "bridge/store/spool.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Add n records (with held.ring writes when `held`), finishing them in
 * batches of 1,000 outside the timed part. Returns adds per second. */
static double run(struct spool *spool, long n, int held)
{
    char record[300];
    memset(record, 'r', sizeof record);
    uint64_t ids[1000];
    double spent = 0;
    for (long done = 0; done < n; done += 1000) {
        double t0 = now_s();
        for (int i = 0; i < 1000; i++) {
            memcpy(record, &i, sizeof i);
            if (spool_add(spool, record, sizeof record, &ids[i]) != BUTLER_OK)
                return -1;
            if (held)
                held_messages_add((uint16_t)(i + 1), "butler/file/move", record, sizeof record);
        }
        spent += now_s() - t0;
        for (int i = 0; i < 1000; i++)
            spool_done(spool, ids[i], NULL, 0);
    }
    return (double)n / spent;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    long n = argc > 2 ? strtol(argv[2], NULL, 10) : 200000;
    struct spool_options options = {.directory = argv[1], .max_bytes = 1ull << 30};
    struct spool *spool = NULL;
    if (n <= 0 || spool_open(&options, NULL, NULL, &spool) != BUTLER_OK ||
        held_messages_open(argv[1]) != BUTLER_OK)
        return 1;
    run(spool, 20000, 1); /* warm-up: page cache, allocator */
    double plain = run(spool, n, 0);
    double with_ring = run(spool, n, 1);
    printf("{\"n\": %ld, \"spool_add_per_s\": %.0f, \"spool_add_and_held_ring_per_s\": %.0f, "
           "\"ratio\": %.3f}\n",
           n, plain, with_ring, with_ring / plain);
    held_messages_close();
    spool_close(spool);
    return 0;
}
