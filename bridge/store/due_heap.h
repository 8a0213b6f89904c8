/*
 * A bounded binary min-heap of ids ordered by due time: the follower's
 * schedule (topics/task_follow.c), where each followed run is polled again at
 * its due time.
 *
 * Ids are small integers in [0, capacity) chosen by the caller (slots of its
 * own table); each id is in the heap at most once, and the heap remembers
 * where each id sits, so changing or removing one id is O(log n) rather than a
 * scan. The capacity is the hard maximum, fixed at creation: nothing grows
 * afterwards. Memory: 16 bytes per entry plus 4 per id, allocated once.
 * Not thread-safe: the owner locks around it.
 */
#ifndef BUTLER_DUE_HEAP_H
#define BUTLER_DUE_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/status.h"

struct due_heap;

/* *out is owned by the caller (due_heap_destroy). capacity >= 1, at most
 * UINT32_MAX - 1. BUTLER_ERR_INVALID for a capacity out of range,
 * BUTLER_ERR_NOMEM when the arrays cannot be allocated. */
enum butler_status due_heap_create(size_t capacity, struct due_heap **out);
void due_heap_destroy(struct due_heap *heap);

/* Add `id` due at `due`. BUTLER_ERR_INVALID when id >= capacity or already
 * in the heap (nothing changes). */
enum butler_status due_heap_push(struct due_heap *heap, uint32_t id, uint64_t due);

/* The earliest entry (ties in no particular order); false when empty. Either
 * out pointer may be NULL. */
bool due_heap_peek(const struct due_heap *heap, uint32_t *id_out, uint64_t *due_out);

/* Remove and return the earliest entry; false when empty. */
bool due_heap_pop(struct due_heap *heap, uint32_t *id_out, uint64_t *due_out);

/* Move `id` to a new due time (earlier or later); false when it is not in
 * the heap. */
bool due_heap_update(struct due_heap *heap, uint32_t id, uint64_t due);

/* Take `id` out; false when it is not in the heap. */
bool due_heap_remove(struct due_heap *heap, uint32_t id);

bool due_heap_contains(const struct due_heap *heap, uint32_t id);
size_t due_heap_count(const struct due_heap *heap);

#endif
