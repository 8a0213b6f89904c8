/*
 * A bounded string map whose entries expire: the de-duplication windows
 * (requestId, ExecutionId), the task-name cache and rate limits.
 *
 * Hard maximum of entries: inserting into a full map first drops expired
 * entries, then the oldest one, counted whichever call inserted
 * (butler_dedup_evictions_total{map="name"}, expiring_map_evictions();
 * expiring_map_put also says so through *evicted_out). Keys are hashed with a
 * seed drawn once per process, so keys chosen from outside cannot pile into
 * one bucket. Keys and values are copied. Thread-safe (one mutex).
 */
#ifndef BUTLER_EXPIRING_MAP_H
#define BUTLER_EXPIRING_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/status.h"

struct expiring_map;

/* `name` labels the map's eviction counter (a literal or a string that
 * outlives the call; it is copied). *out is owned by the caller
 * (expiring_map_destroy). expiring_map_create names it "other". */
enum butler_status expiring_map_create_named(const char *name, size_t max_entries,
                                             struct expiring_map **out);
enum butler_status expiring_map_create(size_t max_entries, struct expiring_map **out);
void expiring_map_destroy(struct expiring_map *map);

/*
 * Insert or replace `key` with `value` (may be NULL) for `ttl_ms`.
 * *evicted_out (may be NULL) is set when a live entry had to be dropped to
 * make room.
 */
enum butler_status expiring_map_put(struct expiring_map *map, const char *key, const char *value,
                                    uint64_t ttl_ms, bool *evicted_out);

/*
 * Insert only if `key` is absent or expired: returns BUTLER_OK when inserted,
 * BUTLER_ERR_DENIED when a live entry exists (then *existing_out, if not NULL,
 * receives a copy of its value or NULL; the caller frees it).
 */
enum butler_status expiring_map_insert_new(struct expiring_map *map, const char *key,
                                           const char *value, uint64_t ttl_ms, char **existing_out);

/* True when `key` is live; *value_out (may be NULL) gets a copy the caller frees. */
bool expiring_map_get(struct expiring_map *map, const char *key, char **value_out);

void expiring_map_remove(struct expiring_map *map, const char *key);
size_t expiring_map_count(struct expiring_map *map);
/* Live entries dropped to make room, since creation. */
uint64_t expiring_map_evictions(struct expiring_map *map);
/* Entries in the fullest bucket (a walk over every bucket: tests, diagnostics). */
size_t expiring_map_longest_chain(struct expiring_map *map);

/* Current time source in ms (monotonic); tests may override it. */
extern uint64_t (*expiring_map_clock)(void);

#endif
