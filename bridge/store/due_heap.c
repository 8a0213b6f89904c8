/*
 * Bounded binary min-heap of (due, id) with a position index per id (see
 * bridge/store/due_heap.h for the contract).
 */
#include "bridge/store/due_heap.h"

#include <stdlib.h>

#define ABSENT UINT32_MAX

struct due_entry {
    uint64_t due;
    uint32_t id;
};

struct due_heap {
    struct due_entry *entries; /* [capacity]; entries[0..count) form the heap */
    uint32_t *position;        /* [capacity]: where id sits in entries, ABSENT = not there */
    size_t capacity, count;
};

enum butler_status due_heap_create(size_t capacity, struct due_heap **out)
{
    enum butler_status status = BUTLER_ERR_INVALID;
    struct due_heap *heap = NULL;
    *out = NULL;
    if (capacity == 0 || capacity >= ABSENT)
        goto out;
    status = BUTLER_ERR_NOMEM;
    heap = calloc(1, sizeof *heap);
    if (heap == NULL)
        goto out;
    heap->entries = malloc(capacity * sizeof *heap->entries);
    heap->position = malloc(capacity * sizeof *heap->position);
    if (heap->entries == NULL || heap->position == NULL)
        goto out;
    for (size_t i = 0; i < capacity; i++)
        heap->position[i] = ABSENT;
    heap->capacity = capacity;
    *out = heap;
    heap = NULL;
    status = BUTLER_OK;
out:
    due_heap_destroy(heap);
    return status;
}

void due_heap_destroy(struct due_heap *heap)
{
    if (heap == NULL)
        return;
    free(heap->entries);
    free(heap->position);
    free(heap);
}

static void place(struct due_heap *heap, size_t at, struct due_entry entry)
{
    heap->entries[at] = entry;
    heap->position[entry.id] = (uint32_t)at;
}

/* Move the entry at `at` towards the root while it is earlier than its parent. */
static void sift_up(struct due_heap *heap, size_t at)
{
    struct due_entry entry = heap->entries[at];
    while (at > 0) {
        size_t parent = (at - 1) / 2;
        if (heap->entries[parent].due <= entry.due)
            break;
        place(heap, at, heap->entries[parent]);
        at = parent;
    }
    place(heap, at, entry);
}

/* Move the entry at `at` towards the leaves while a child is earlier. */
static void sift_down(struct due_heap *heap, size_t at)
{
    struct due_entry entry = heap->entries[at];
    for (;;) {
        size_t child = 2 * at + 1;
        if (child >= heap->count)
            break;
        if (child + 1 < heap->count && heap->entries[child + 1].due < heap->entries[child].due)
            child++;
        if (entry.due <= heap->entries[child].due)
            break;
        place(heap, at, heap->entries[child]);
        at = child;
    }
    place(heap, at, entry);
}

bool due_heap_contains(const struct due_heap *heap, uint32_t id)
{
    return id < heap->capacity && heap->position[id] != ABSENT;
}

size_t due_heap_count(const struct due_heap *heap)
{
    return heap->count;
}

enum butler_status due_heap_push(struct due_heap *heap, uint32_t id, uint64_t due)
{
    /* count < capacity follows: each id is in at most once. */
    if (id >= heap->capacity || heap->position[id] != ABSENT)
        return BUTLER_ERR_INVALID;
    size_t at = heap->count++;
    place(heap, at, (struct due_entry){.due = due, .id = id});
    sift_up(heap, at);
    return BUTLER_OK;
}

bool due_heap_peek(const struct due_heap *heap, uint32_t *id_out, uint64_t *due_out)
{
    if (heap->count == 0)
        return false;
    if (id_out)
        *id_out = heap->entries[0].id;
    if (due_out)
        *due_out = heap->entries[0].due;
    return true;
}

/* Take the entry at `at` out and close the gap with the last entry. */
static void remove_at(struct due_heap *heap, size_t at)
{
    uint32_t id = heap->entries[at].id;
    heap->count--;
    if (at != heap->count) {
        struct due_entry last = heap->entries[heap->count];
        uint64_t old_due = heap->entries[at].due;
        place(heap, at, last);
        if (last.due < old_due)
            sift_up(heap, at);
        else
            sift_down(heap, at);
    }
    heap->position[id] = ABSENT;
}

bool due_heap_pop(struct due_heap *heap, uint32_t *id_out, uint64_t *due_out)
{
    if (!due_heap_peek(heap, id_out, due_out))
        return false;
    remove_at(heap, 0);
    return true;
}

bool due_heap_update(struct due_heap *heap, uint32_t id, uint64_t due)
{
    if (!due_heap_contains(heap, id))
        return false;
    size_t at = heap->position[id];
    uint64_t old_due = heap->entries[at].due;
    heap->entries[at].due = due;
    if (due < old_due)
        sift_up(heap, at);
    else
        sift_down(heap, at);
    return true;
}

bool due_heap_remove(struct due_heap *heap, uint32_t id)
{
    if (!due_heap_contains(heap, id))
        return false;
    remove_at(heap, heap->position[id]);
    return true;
}
