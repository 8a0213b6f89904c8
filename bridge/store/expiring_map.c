#include "bridge/store/expiring_map.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/core/clock.h"
#include "bridge/core/metrics.h"
#include "bridge/core/random.h"

struct map_entry {
    char *value; /* NULL, or after the key in the same allocation */
    uint64_t expires_ms;
    struct map_entry *bucket_next;
    struct map_entry *older; /* insertion order: towards the oldest */
    struct map_entry *newer;
    /* Key and value in the same allocation: one malloc per entry, not two.
     * The de-duplication windows hold hundreds of thousands of entries. */
    char key[];
};

struct expiring_map {
    pthread_mutex_t mutex;
    struct map_entry **buckets;
    size_t bucket_count; /* power of two */
    size_t count, max_entries;
    struct map_entry *oldest, *newest;
    uint64_t evictions;
    struct metric *evictions_metric; /* butler_dedup_evictions_total{map="name"} */
};

uint64_t (*expiring_map_clock)(void) = clock_monotonic_ms;

/*
 * The hash's seed, drawn once per process: keys come from the network
 * (requestIds, ExecutionIds), and with a fixed hash anyone could send keys
 * that all land in one bucket, making every lookup walk them all (a chosen-key
 * flood slowed lookups 10^4 times). FNV-1a starts from the seed instead of its
 * fixed basis, and a final mix spreads the seed's effect to every bit the
 * bucket index uses (FNV-1a's low bits alone depend only on low bits).
 */
static uint64_t hash_seed;
static pthread_once_t hash_seed_once = PTHREAD_ONCE_INIT;

static void draw_hash_seed(void)
{
    random_fill(&hash_seed, sizeof hash_seed);
    hash_seed |= 1; /* never the all-zero state */
}

static size_t hash_key(const char *key)
{
    uint64_t hash = 1469598103934665603ull ^ hash_seed; /* FNV-1a, seeded */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        hash = (hash ^ *p) * 1099511628211ull;
    hash ^= hash_seed; /* then MurmurHash3's 64-bit finaliser */
    hash ^= hash >> 33;
    hash *= 0xff51afd7ed558ccdull;
    hash ^= hash >> 33;
    hash *= 0xc4ceb9fe1a85ec53ull;
    hash ^= hash >> 33;
    return (size_t)hash;
}

enum butler_status expiring_map_create(size_t max_entries, struct expiring_map **out)
{
    return expiring_map_create_named("other", max_entries, out);
}

enum butler_status expiring_map_create_named(const char *name, size_t max_entries,
                                             struct expiring_map **out)
{
    pthread_once(&hash_seed_once, draw_hash_seed);
    char labels[96];
    snprintf(labels, sizeof labels, "map=\"%s\"", name);
    struct expiring_map *map = calloc(1, sizeof *map);
    if (map == NULL)
        return BUTLER_ERR_NOMEM;
    map->max_entries = max_entries ? max_entries : 1;
    map->bucket_count = 16;
    while (map->bucket_count < map->max_entries && map->bucket_count < (1u << 20))
        map->bucket_count *= 2;
    map->buckets = calloc(map->bucket_count, sizeof *map->buckets);
    if (map->buckets == NULL) {
        free(map);
        return BUTLER_ERR_NOMEM;
    }
    pthread_mutex_init(&map->mutex, NULL);
    map->evictions_metric =
        metrics_get("butler_dedup_evictions_total", labels, METRIC_COUNTER,
                    "Live entries dropped from a full de-duplication window or cache, by map");
    *out = map;
    return BUTLER_OK;
}

static void unlink_entry(struct expiring_map *map, struct map_entry *entry)
{
    struct map_entry **slot = &map->buckets[hash_key(entry->key) & (map->bucket_count - 1)];
    while (*slot != entry)
        slot = &(*slot)->bucket_next;
    *slot = entry->bucket_next;
    if (entry->older)
        entry->older->newer = entry->newer;
    else
        map->oldest = entry->newer;
    if (entry->newer)
        entry->newer->older = entry->older;
    else
        map->newest = entry->older;
    map->count--;
    free(entry);
}

static struct map_entry *find(struct expiring_map *map, const char *key)
{
    struct map_entry *entry = map->buckets[hash_key(key) & (map->bucket_count - 1)];
    while (entry && strcmp(entry->key, key) != 0)
        entry = entry->bucket_next;
    return entry;
}

/* Entries are kept in insertion order, so expired ones are found from the old end.
 * Entries with a longer TTL than their neighbours may linger until evicted;
 * lookups check expiry themselves. */
static void sweep_expired(struct expiring_map *map, uint64_t now)
{
    while (map->oldest && map->oldest->expires_ms <= now)
        unlink_entry(map, map->oldest);
}

static enum butler_status insert(struct expiring_map *map, const char *key, const char *value,
                                 uint64_t ttl_ms, uint64_t now, bool *evicted_out)
{
    size_t key_length = strlen(key);
    size_t value_length = value ? strlen(value) : 0;
    struct map_entry *entry =
        calloc(1, sizeof *entry + key_length + 1 + (value ? value_length + 1 : 0));
    if (entry == NULL)
        return BUTLER_ERR_NOMEM;
    memcpy(entry->key, key, key_length + 1);
    if (value) {
        entry->value = entry->key + key_length + 1;
        memcpy(entry->value, value, value_length + 1);
    }
    sweep_expired(map, now);
    if (map->count >= map->max_entries) {
        /* A live entry goes early: for a de-duplication window, a repeat of
         * it is no longer recognised. Counted whoever inserted. */
        unlink_entry(map, map->oldest);
        map->evictions++;
        metrics_add(map->evictions_metric, 1);
        if (evicted_out)
            *evicted_out = true;
    }
    entry->expires_ms = now + ttl_ms;
    size_t bucket = hash_key(key) & (map->bucket_count - 1);
    entry->bucket_next = map->buckets[bucket];
    map->buckets[bucket] = entry;
    entry->older = map->newest;
    if (map->newest)
        map->newest->newer = entry;
    else
        map->oldest = entry;
    map->newest = entry;
    map->count++;
    return BUTLER_OK;
}

enum butler_status expiring_map_put(struct expiring_map *map, const char *key, const char *value,
                                    uint64_t ttl_ms, bool *evicted_out)
{
    uint64_t now = expiring_map_clock();
    if (evicted_out)
        *evicted_out = false;
    pthread_mutex_lock(&map->mutex);
    struct map_entry *existing = find(map, key);
    if (existing)
        unlink_entry(map, existing);
    enum butler_status status = insert(map, key, value, ttl_ms, now, evicted_out);
    pthread_mutex_unlock(&map->mutex);
    return status;
}

enum butler_status expiring_map_insert_new(struct expiring_map *map, const char *key,
                                           const char *value, uint64_t ttl_ms, char **existing_out)
{
    uint64_t now = expiring_map_clock();
    enum butler_status status;
    if (existing_out)
        *existing_out = NULL;
    pthread_mutex_lock(&map->mutex);
    struct map_entry *existing = find(map, key);
    if (existing && existing->expires_ms > now) {
        if (existing_out && existing->value)
            *existing_out = strdup(existing->value);
        status = BUTLER_ERR_DENIED;
        goto out;
    }
    if (existing)
        unlink_entry(map, existing);
    status = insert(map, key, value, ttl_ms, now, NULL);
out:
    pthread_mutex_unlock(&map->mutex);
    return status;
}

bool expiring_map_get(struct expiring_map *map, const char *key, char **value_out)
{
    uint64_t now = expiring_map_clock();
    bool live = false;
    if (value_out)
        *value_out = NULL;
    pthread_mutex_lock(&map->mutex);
    struct map_entry *entry = find(map, key);
    if (entry && entry->expires_ms > now) {
        live = true;
        if (value_out && entry->value)
            *value_out = strdup(entry->value);
    }
    pthread_mutex_unlock(&map->mutex);
    return live;
}

void expiring_map_remove(struct expiring_map *map, const char *key)
{
    pthread_mutex_lock(&map->mutex);
    struct map_entry *entry = find(map, key);
    if (entry)
        unlink_entry(map, entry);
    pthread_mutex_unlock(&map->mutex);
}

uint64_t expiring_map_evictions(struct expiring_map *map)
{
    pthread_mutex_lock(&map->mutex);
    uint64_t evictions = map->evictions;
    pthread_mutex_unlock(&map->mutex);
    return evictions;
}

size_t expiring_map_longest_chain(struct expiring_map *map)
{
    size_t longest = 0;
    pthread_mutex_lock(&map->mutex);
    for (size_t i = 0; i < map->bucket_count; i++) {
        size_t length = 0;
        for (const struct map_entry *entry = map->buckets[i]; entry; entry = entry->bucket_next)
            length++;
        if (length > longest)
            longest = length;
    }
    pthread_mutex_unlock(&map->mutex);
    return longest;
}

size_t expiring_map_count(struct expiring_map *map)
{
    pthread_mutex_lock(&map->mutex);
    size_t count = map->count;
    pthread_mutex_unlock(&map->mutex);
    return count;
}

void expiring_map_destroy(struct expiring_map *map)
{
    if (map == NULL)
        return;
    while (map->oldest)
        unlink_entry(map, map->oldest);
    free(map->buckets);
    pthread_mutex_destroy(&map->mutex);
    free(map);
}
