/* Unit tests: the pure parts of the key-value store (topics/kv.c). */
#include <stdlib.h>
#include <string.h>

#include "bridge/core/clock.h"
#include "tests/unit/unit.h"
#include "topics/kv.h"

static struct kv_record record_of(const char *ns, const char *key, const char *value,
                                  uint64_t expires_ms)
{
    return (struct kv_record){(char *)ns, (char *)key, (char *)value, 0, 0, expires_ms};
}

static void test_names_and_topics(void)
{
    UNIT_CHECK(kv_name_valid("Sales ETL step 2"));
    UNIT_CHECK(!kv_name_valid(""));
    UNIT_CHECK(!kv_name_valid("a/b") && !kv_name_valid("a+") && !kv_name_valid("#"));
    UNIT_CHECK(!kv_name_valid("\xff\xfe"));
    const char *ns, *key;
    size_t ns_length, key_length;
    UNIT_CHECK(
        kv_topic_split("butler", "butler/kv/etl/param1", &ns, &ns_length, &key, &key_length));
    UNIT_CHECK(ns_length == 3 && strncmp(ns, "etl", 3) == 0 && strcmp(key, "param1") == 0);
    UNIT_CHECK(!kv_topic_split("butler", "butler/kv/etl", &ns, &ns_length, &key, &key_length));
    UNIT_CHECK(!kv_topic_split("butler", "butler/kv/etl/a/b", &ns, &ns_length, &key, &key_length));
    UNIT_CHECK(!kv_topic_split("butler", "other/kv/etl/a", &ns, &ns_length, &key, &key_length));
    UNIT_CHECK(!kv_topic_split("butler", "butler/kv//a", &ns, &ns_length, &key, &key_length));
}

static void test_record_round_trip(void)
{
    char *payload = NULL;
    UNIT_CHECK(kv_record_build("etl", "p1", "42", 2500, 1700000000123ULL, &payload) == BUTLER_OK);
    UNIT_CHECK(strstr(payload, "\"createdAt\":\"2023-11-14T22:13:20.123Z\"") != NULL);
    UNIT_CHECK(strstr(payload, "\"expiresAt\":\"2023-11-14T22:13:22.623Z\"") != NULL);
    struct kv_record record;
    UNIT_CHECK(kv_record_parse((const unsigned char *)payload, strlen(payload), &record) ==
               BUTLER_OK);
    UNIT_CHECK_STR(record.namespace_name, "etl");
    UNIT_CHECK_STR(record.value, "42");
    UNIT_CHECK(record.ttl_ms == 2500 && record.expires_ms == 1700000002623ULL);
    UNIT_CHECK(record.created_ms == 1700000000123ULL);
    kv_record_clear(&record);
    free(payload);
    UNIT_CHECK(kv_record_build("etl", "p1", "x", 0, 1700000000000ULL, &payload) == BUTLER_OK);
    UNIT_CHECK(strstr(payload, "expiresAt") == NULL);
    free(payload);
    const char *bad[] = {"",
                         "[]",
                         "{\"namespace\":\"a\",\"key\":\"b\"}",
                         "{\"namespace\":\"a/b\",\"key\":\"b\",\"value\":\"v\"}",
                         "{\"namespace\":\"a\",\"key\":\"b\",\"value\":\"v\",\"ttl\":-1}",
                         "{\"namespace\":\"a\",\"key\":\"b\",\"value\":\"v\",\"expiresAt\":\"x\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        UNIT_CHECK(kv_record_parse((const unsigned char *)bad[i], strlen(bad[i]), &record) ==
                   BUTLER_ERR_INVALID);
    uint64_t ms = 0;
    UNIT_CHECK(clock_parse_iso8601("2024-02-29T23:59:59Z", &ms) && ms == 1709251199000ULL);
    UNIT_CHECK(clock_parse_iso8601("2024-02-29T23:59:59.5Z", &ms) && ms == 1709251199500ULL);
    UNIT_CHECK(!clock_parse_iso8601("2024-02-29 23:59:59Z", &ms));
    UNIT_CHECK(!clock_parse_iso8601("2024-02-29T23:59:59+01:00", &ms));
}

static void test_view_limits_and_expiry(void)
{
    struct kv_view *view = NULL;
    UNIT_CHECK(kv_view_create(2, 2, &view) == BUTLER_OK);
    struct kv_record a = record_of("n1", "a", "1", 0), b = record_of("n1", "b", "2", 1500);
    struct kv_record c = record_of("n1", "c", "3", 0);
    UNIT_CHECK(kv_view_put(view, &a, 100) == BUTLER_OK);
    UNIT_CHECK(kv_view_put(view, &b, 200) == BUTLER_OK);
    UNIT_CHECK(kv_view_put(view, &c, 300) == BUTLER_ERR_FULL); /* max_keys */
    UNIT_CHECK(kv_view_put(view, &a, 400) == BUTLER_OK);       /* replace is not growth */
    char oldest[16];
    UNIT_CHECK(kv_view_oldest(view, "n1", oldest, sizeof oldest) && strcmp(oldest, "b") == 0);
    struct kv_record n2 = record_of("n2", "x", "y", 0), n3 = record_of("n3", "x", "y", 0);
    UNIT_CHECK(kv_view_put(view, &n2, 1) == BUTLER_OK);
    UNIT_CHECK(kv_view_put(view, &n3, 1) == BUTLER_ERR_FULL); /* max_namespaces */
    struct kv_record got;
    UNIT_CHECK(kv_view_lookup(view, "n1", "b", 1000, &got) == KV_FOUND);
    UNIT_CHECK_STR(got.value, "2");
    kv_record_clear(&got);
    UNIT_CHECK(kv_view_lookup(view, "n1", "b", 1500, NULL) == KV_NO_KEY); /* expired */
    UNIT_CHECK(kv_view_lookup(view, "nx", "b", 0, NULL) == KV_NO_NAMESPACE);
    cJSON *taken = cJSON_CreateArray();
    UNIT_CHECK(kv_view_take_expired(view, 2000, 10, taken) == 1);
    UNIT_CHECK(cJSON_GetArraySize(taken) == 1);
    cJSON_Delete(taken);
    bool exists = false;
    cJSON *keys = kv_view_keys(view, "n1", 2000, &exists);
    UNIT_CHECK(exists && cJSON_GetArraySize(keys) == 1);
    cJSON_Delete(keys);
    /* The last key gone: the namespace goes too (as the Node.js Butler). */
    UNIT_CHECK(kv_view_remove(view, "n1", "a"));
    UNIT_CHECK(!kv_view_namespace_exists(view, "n1"));
    UNIT_CHECK(!kv_view_remove(view, "n1", "a"));
    cJSON *names = kv_view_namespaces(view);
    UNIT_CHECK(cJSON_GetArraySize(names) == 1);
    cJSON_Delete(names);
    kv_view_destroy(view);
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_names_and_topics),
    UNIT_TEST(test_record_round_trip),
    UNIT_TEST(test_view_limits_and_expiry),
    {0},
};
