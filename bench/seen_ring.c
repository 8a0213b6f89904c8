/*
 * What cloud-seen.ring costs: per published Qlik Cloud reload, the in-memory
 * insert the worker already did (expiring_map_insert_new into a 50,000-entry
 * map) alone, then the same plus seen_ring_add (one 288-byte pwrite, fsync
 * off as by default), side by side in one run; and at start-up, reading back
 * a full ring (50,000 keys) into the map beside reading back an empty one.
 * Prints one JSON line.
 *
 *   seen_ring DIR [N]   (DIR: a scratch directory; default N = 200,000 per side)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bridge/store/expiring_map.h"
#include "bridge/store/seen_ring.h"

enum { CAPACITY = 50000, KEY_MAX = 263 };
#define TTL_MS (24ULL * 3600 * 1000)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* n reloads remembered from `first` on (ring may be NULL). Per second. */
static double run(struct expiring_map *map, struct seen_ring *ring, long first, long n)
{
    char key[96];
    double t0 = now_s();
    for (long i = first; i < first + n; i++) {
        snprintf(key, sizeof key, "3xLtmCbK1Ur1JNIUKjeT4yPvBkoLv2HC:65f1d0c2b8e6a3%010ld", i);
        if (expiring_map_insert_new(map, key, NULL, TTL_MS, NULL) != BUTLER_OK)
            return -1;
        if (ring && seen_ring_add(ring, key, wall_ms()) != BUTLER_OK)
            return -1;
    }
    return (double)n / (now_s() - t0);
}

static void into_map(void *context, const char *key, uint64_t wall)
{
    (void)wall;
    expiring_map_put(context, key, NULL, TTL_MS, NULL);
}

/* Open the ring at `path`, loading it into a fresh map: seconds taken. */
static double reopen(const char *path, size_t *loaded)
{
    struct expiring_map *map = NULL;
    struct seen_ring *ring = NULL;
    struct seen_ring_options options = {
        .path = path, .capacity = CAPACITY, .key_max = KEY_MAX, .ttl_ms = TTL_MS};
    if (expiring_map_create(CAPACITY, &map) != BUTLER_OK)
        return -1;
    double t0 = now_s();
    enum butler_status status = seen_ring_open(&options, into_map, map, &ring);
    double spent = now_s() - t0;
    *loaded = expiring_map_count(map);
    seen_ring_close(ring);
    expiring_map_destroy(map);
    return status == BUTLER_OK ? spent : -1;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    long n = argc > 2 ? strtol(argv[2], NULL, 10) : 200000;
    char full[4200], empty[4200];
    snprintf(full, sizeof full, "%s/full.ring", argv[1]);
    snprintf(empty, sizeof empty, "%s/empty.ring", argv[1]);
    struct seen_ring_options options = {
        .path = full, .capacity = CAPACITY, .key_max = KEY_MAX, .ttl_ms = TTL_MS};
    struct expiring_map *map = NULL;
    struct seen_ring *ring = NULL;
    if (n <= 0 || expiring_map_create(CAPACITY, &map) != BUTLER_OK ||
        seen_ring_open(&options, NULL, NULL, &ring) != BUTLER_OK)
        return 1;
    run(map, ring, 0, 20000); /* warm-up: page cache, allocator */
    double plain = run(map, NULL, 1000000, n);
    double with_ring = run(map, ring, 2000000, n);
    seen_ring_close(ring);
    expiring_map_destroy(map);
    size_t loaded_full = 0, loaded_empty = 0;
    double open_full = reopen(full, &loaded_full);
    double open_empty = reopen(empty, &loaded_empty);
    printf("{\"n\": %ld, \"map_insert_per_s\": %.0f, \"map_insert_and_ring_add_per_s\": %.0f, "
           "\"ratio\": %.3f, \"open_full_ms\": %.1f, \"keys_loaded\": %zu, "
           "\"open_empty_ms\": %.2f, \"keys_loaded_empty\": %zu}\n",
           n, plain, with_ring, with_ring / plain, open_full * 1000, loaded_full, open_empty * 1000,
           loaded_empty);
    return 0;
}
