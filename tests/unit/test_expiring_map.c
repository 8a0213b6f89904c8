/* Unit tests: the bounded expiring map behind de-duplication and caches. */
#include <stdio.h>
#include <stdlib.h>

#include "bridge/store/expiring_map.h"
#include "tests/unit/unit.h"

static uint64_t fake_now;
static uint64_t fake_clock(void)
{
    return fake_now;
}

static void test_expiry_and_insert_new(void)
{
    expiring_map_clock = fake_clock;
    fake_now = 1000;
    struct expiring_map *map = NULL;
    UNIT_CHECK(expiring_map_create(4, &map) == BUTLER_OK);
    UNIT_CHECK(expiring_map_insert_new(map, "a", "1", 100, NULL) == BUTLER_OK);
    char *existing = NULL;
    UNIT_CHECK(expiring_map_insert_new(map, "a", "2", 100, &existing) == BUTLER_ERR_DENIED);
    UNIT_CHECK_STR(existing, "1");
    free(existing);
    fake_now += 100; /* expired exactly at the TTL */
    UNIT_CHECK(!expiring_map_get(map, "a", NULL));
    UNIT_CHECK(expiring_map_insert_new(map, "a", "3", 100, NULL) == BUTLER_OK);
    char *value = NULL;
    UNIT_CHECK(expiring_map_get(map, "a", &value));
    UNIT_CHECK_STR(value, "3");
    free(value);
    expiring_map_destroy(map);
}

static void test_bounded(void)
{
    expiring_map_clock = fake_clock;
    fake_now = 5000;
    struct expiring_map *map = NULL;
    UNIT_CHECK(expiring_map_create(3, &map) == BUTLER_OK);
    bool evicted = false;
    expiring_map_put(map, "k1", NULL, 1000, &evicted);
    expiring_map_put(map, "k2", NULL, 1000, &evicted);
    expiring_map_put(map, "k3", NULL, 1000, &evicted);
    UNIT_CHECK(!evicted);
    expiring_map_put(map, "k4", NULL, 1000, &evicted);
    UNIT_CHECK(evicted); /* the oldest live entry made room */
    UNIT_CHECK(expiring_map_count(map) == 3);
    UNIT_CHECK(!expiring_map_get(map, "k1", NULL));
    UNIT_CHECK(expiring_map_get(map, "k4", NULL));
    /* Expired entries are swept before anything live is evicted. */
    fake_now += 2000;
    expiring_map_put(map, "k5", "v", 1000, &evicted);
    UNIT_CHECK(!evicted);
    UNIT_CHECK(expiring_map_count(map) == 1);
    expiring_map_remove(map, "k5");
    UNIT_CHECK(expiring_map_count(map) == 0);
    expiring_map_destroy(map);
}

static void test_many_keys(void)
{
    expiring_map_clock = fake_clock;
    fake_now = 1;
    struct expiring_map *map = NULL;
    UNIT_CHECK(expiring_map_create(1000, &map) == BUTLER_OK);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        expiring_map_put(map, key, key, 10, NULL);
    }
    UNIT_CHECK(expiring_map_count(map) == 1000);
    UNIT_CHECK(expiring_map_get(map, "key-4999", NULL));
    UNIT_CHECK(!expiring_map_get(map, "key-3999", NULL));
    expiring_map_destroy(map);
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_expiry_and_insert_new),
    UNIT_TEST(test_bounded),
    UNIT_TEST(test_many_keys),
    {0},
};
