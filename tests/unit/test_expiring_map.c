/* Unit tests: the bounded expiring map behind de-duplication and caches. */
#include <stdio.h>
#include <stdlib.h>

#include "bridge/core/metrics.h"
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

/* insert_new (the de-duplication windows' call) counts what it evicts too. */
static void test_insert_new_evictions_are_counted(void)
{
    expiring_map_clock = fake_clock;
    fake_now = 1;
    struct expiring_map *map = NULL;
    UNIT_CHECK(expiring_map_create_named("unit_window", 2, &map) == BUTLER_OK);
    UNIT_CHECK(expiring_map_insert_new(map, "a", NULL, 1000, NULL) == BUTLER_OK);
    UNIT_CHECK(expiring_map_insert_new(map, "b", NULL, 1000, NULL) == BUTLER_OK);
    UNIT_CHECK(expiring_map_evictions(map) == 0);
    UNIT_CHECK(expiring_map_insert_new(map, "c", NULL, 1000, NULL) == BUTLER_OK);
    UNIT_CHECK(expiring_map_insert_new(map, "d", NULL, 1000, NULL) == BUTLER_OK);
    UNIT_CHECK(expiring_map_evictions(map) == 2);
    UNIT_CHECK(metrics_lookup("butler_dedup_evictions_total", "map=\"unit_window\"") == 2);
    /* Expired entries leave without counting. */
    fake_now += 5000;
    UNIT_CHECK(expiring_map_insert_new(map, "e", NULL, 1000, NULL) == BUTLER_OK);
    UNIT_CHECK(expiring_map_evictions(map) == 2);
    expiring_map_destroy(map);
}

/* FNV-1a as it was, unseeded: what an attacker can compute offline. */
static uint64_t plain_fnv1a(const char *key)
{
    uint64_t hash = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        hash = (hash ^ *p) * 1099511628211ull;
    return hash;
}

/*
 * Keys chosen to share a bucket under the fixed hash (a flood of such
 * requestIds made every lookup walk one long chain) spread out once the hash
 * is seeded per process.
 */
static void test_chosen_keys_do_not_share_a_bucket(void)
{
    expiring_map_clock = fake_clock;
    fake_now = 1;
    struct expiring_map *map = NULL;
    UNIT_CHECK(expiring_map_create(1024, &map) == BUTLER_OK); /* 1024 buckets */
    char key[32];
    int chosen = 0;
    for (unsigned i = 0; chosen < 400; i++) {
        snprintf(key, sizeof key, "req-%u", i);
        if ((plain_fnv1a(key) & 1023) == 0) {
            UNIT_CHECK(expiring_map_insert_new(map, key, NULL, 1000, NULL) == BUTLER_OK);
            chosen++;
        }
    }
    UNIT_CHECK(expiring_map_count(map) == 400);
    /* 400 keys in 1024 buckets: a fair hash's fullest bucket holds a handful. */
    UNIT_CHECK(expiring_map_longest_chain(map) < 20);
    expiring_map_destroy(map);
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_insert_new_evictions_are_counted),
    UNIT_TEST(test_chosen_keys_do_not_share_a_bucket),
    UNIT_TEST(test_expiry_and_insert_new),
    UNIT_TEST(test_bounded),
    UNIT_TEST(test_many_keys),
    {0},
};
