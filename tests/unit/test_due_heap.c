/* Unit tests: the bounded due-time heap behind the follower's schedule. */
#include <stdint.h>
#include <stdlib.h>

#include "bridge/store/due_heap.h"
#include "tests/unit/unit.h"

static void test_pops_in_due_order(void)
{
    struct due_heap *heap = NULL;
    UNIT_CHECK(due_heap_create(8, &heap) == BUTLER_OK);
    const uint64_t dues[] = {50, 10, 40, 30, 20, 60, 5, 45};
    for (uint32_t id = 0; id < 8; id++)
        UNIT_CHECK(due_heap_push(heap, id, dues[id]) == BUTLER_OK);
    UNIT_CHECK(due_heap_count(heap) == 8);
    uint32_t id = 0;
    uint64_t due = 0;
    UNIT_CHECK(due_heap_peek(heap, &id, &due) && id == 6 && due == 5);
    const uint32_t order[] = {6, 1, 4, 3, 2, 7, 0, 5};
    for (size_t i = 0; i < 8; i++) {
        UNIT_CHECK(due_heap_pop(heap, &id, &due));
        UNIT_CHECK(id == order[i] && due == dues[order[i]]);
        UNIT_CHECK(!due_heap_contains(heap, id));
    }
    UNIT_CHECK(!due_heap_pop(heap, &id, &due));
    UNIT_CHECK(!due_heap_peek(heap, NULL, NULL));
    UNIT_CHECK(due_heap_count(heap) == 0);
    due_heap_destroy(heap);
}

static void test_bounded_and_each_id_once(void)
{
    struct due_heap *heap = NULL;
    UNIT_CHECK(due_heap_create(0, &heap) == BUTLER_ERR_INVALID && heap == NULL);
    UNIT_CHECK(due_heap_create(3, &heap) == BUTLER_OK);
    UNIT_CHECK(due_heap_push(heap, 3, 1) == BUTLER_ERR_INVALID); /* past the capacity */
    UNIT_CHECK(due_heap_push(heap, 0, 7) == BUTLER_OK);
    UNIT_CHECK(due_heap_push(heap, 0, 1) == BUTLER_ERR_INVALID); /* already in */
    UNIT_CHECK(due_heap_push(heap, 1, 8) == BUTLER_OK);
    UNIT_CHECK(due_heap_push(heap, 2, 9) == BUTLER_OK);
    UNIT_CHECK(due_heap_count(heap) == 3); /* full: every id is in */
    uint64_t due = 0;
    UNIT_CHECK(due_heap_peek(heap, NULL, &due) && due == 7);
    UNIT_CHECK(!due_heap_update(heap, 5, 1) && !due_heap_remove(heap, 5));
    UNIT_CHECK(!due_heap_contains(heap, 5));
    due_heap_destroy(heap);
}

static void test_update_and_remove_keep_the_order(void)
{
    struct due_heap *heap = NULL;
    UNIT_CHECK(due_heap_create(5, &heap) == BUTLER_OK);
    for (uint32_t id = 0; id < 5; id++)
        UNIT_CHECK(due_heap_push(heap, id, 100 + 10 * id) == BUTLER_OK);
    uint32_t id = 99;
    UNIT_CHECK(due_heap_update(heap, 4, 0)); /* a poke: due now */
    UNIT_CHECK(due_heap_peek(heap, &id, NULL) && id == 4);
    UNIT_CHECK(due_heap_update(heap, 4, 1000)); /* later again */
    UNIT_CHECK(due_heap_peek(heap, &id, NULL) && id == 0);
    UNIT_CHECK(due_heap_remove(heap, 0)); /* the root */
    UNIT_CHECK(!due_heap_remove(heap, 0));
    UNIT_CHECK(due_heap_remove(heap, 2)); /* an inner entry */
    uint64_t due = 0;
    const uint32_t order[] = {1, 3, 4};
    for (size_t i = 0; i < 3; i++) {
        UNIT_CHECK(due_heap_pop(heap, &id, &due) && id == order[i]);
    }
    UNIT_CHECK(due == 1000);
    UNIT_CHECK(due_heap_push(heap, 0, 3) == BUTLER_OK); /* a removed id can come back */
    UNIT_CHECK(due_heap_pop(heap, &id, &due) && id == 0 && due == 3);
    due_heap_destroy(heap);
}

/* xorshift, fixed seed: the same sequence every run. */
static uint64_t next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

/* Random pushes, pops, updates and removes against a plain array that is
 * searched in full each time: the heap must always give the earliest due. */
static void test_random_operations_match_a_scan(void)
{
    enum { CAPACITY = 257, STEPS = 20000 };
    static uint64_t reference[CAPACITY];
    static bool present[CAPACITY];
    struct due_heap *heap = NULL;
    UNIT_CHECK(due_heap_create(CAPACITY, &heap) == BUTLER_OK);
    uint64_t state = 0x9e3779b97f4a7c15ull;
    size_t count = 0;
    for (int step = 0; step < STEPS; step++) {
        uint32_t id = (uint32_t)(next(&state) % CAPACITY);
        uint64_t due = next(&state) % 1000; /* small range: many ties */
        switch (next(&state) % 4) {
        case 0:
        case 1:
            UNIT_CHECK((due_heap_push(heap, id, due) == BUTLER_OK) == !present[id]);
            if (!present[id]) {
                present[id] = true;
                reference[id] = due;
                count++;
            }
            break;
        case 2:
            UNIT_CHECK(due_heap_update(heap, id, due) == present[id]);
            if (present[id])
                reference[id] = due;
            break;
        default:
            if (next(&state) % 2) {
                UNIT_CHECK(due_heap_remove(heap, id) == present[id]);
                if (present[id]) {
                    present[id] = false;
                    count--;
                }
            } else {
                uint32_t popped = 0;
                uint64_t popped_due = 0;
                bool any = due_heap_pop(heap, &popped, &popped_due);
                UNIT_CHECK(any == (count > 0));
                if (any) {
                    UNIT_CHECK(present[popped] && reference[popped] == popped_due);
                    for (size_t i = 0; i < CAPACITY; i++)
                        UNIT_CHECK(!present[i] || reference[i] >= popped_due);
                    present[popped] = false;
                    count--;
                }
            }
        }
        UNIT_CHECK(due_heap_count(heap) == count);
        UNIT_CHECK(due_heap_contains(heap, id) == present[id]);
    }
    due_heap_destroy(heap);
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_pops_in_due_order),
    UNIT_TEST(test_bounded_and_each_id_once),
    UNIT_TEST(test_update_and_remove_keep_the_order),
    UNIT_TEST(test_random_operations_match_a_scan),
    {0},
};
