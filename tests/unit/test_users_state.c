/* Unit tests for the active-user state (topics/users_state.c): start, stop,
 * activity, idle expiry, eviction of the least recently active at the cap,
 * the summary text, and the rebuild from a summary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "topics/users_state.h"
#include "unit.h"

static struct users_state *make(size_t max)
{
    struct users_state *state = NULL;
    UNIT_CHECK(users_state_create(max, &state) == BUTLER_OK);
    return state;
}

static cJSON *summary(const struct users_state *state)
{
    size_t length = 0;
    char *text = users_state_summary(state, 1700000000000ULL, &length);
    UNIT_CHECK(text != NULL && strlen(text) == length);
    cJSON *json = cJSON_Parse(text);
    UNIT_CHECK(json != NULL);
    users_state_summary_free(text);
    return json;
}

static bool has_user(const cJSON *json, const char *name)
{
    const cJSON *user;
    cJSON_ArrayForEach(user, cJSON_GetObjectItem(json, "users"))
    {
        if (strcmp(user->valuestring, name) == 0)
            return true;
    }
    return false;
}

static double per_host(const cJSON *json, const char *host)
{
    const cJSON *n = cJSON_GetObjectItem(cJSON_GetObjectItem(json, "perHost"), host);
    return n ? n->valuedouble : -1;
}

static void test_start_stop_touch(void)
{
    struct users_state *state = make(10);
    struct users_change change = {0};
    UNIT_CHECK(users_state_start(state, "CORP", "jdoe", "proxy-1", 1000, &change) == BUTLER_OK);
    UNIT_CHECK(change.changed && !change.evicted);
    change = (struct users_change){0};
    UNIT_CHECK(users_state_start(state, "CORP", "jdoe", "proxy-1", 2000, &change) == BUTLER_OK);
    UNIT_CHECK(!change.changed); /* seen again: the summary is the same */
    users_state_start(state, "CORP", "asmith", "proxy-2", 2000, &change);
    UNIT_CHECK(users_state_count(state) == 2);
    /* A connection of someone without a session does not make them active. */
    change = (struct users_change){0};
    users_state_touch(state, "CORP", "nobody", "proxy-1", 2000, &change);
    UNIT_CHECK(!change.changed && users_state_count(state) == 2);
    /* A connection on another host moves the user there. */
    users_state_touch(state, "CORP", "jdoe", "proxy-2", 3000, &change);
    UNIT_CHECK(change.changed);
    cJSON *json = summary(state);
    UNIT_CHECK(cJSON_GetObjectItem(json, "count")->valuedouble == 2);
    UNIT_CHECK(has_user(json, "CORP\\jdoe") && has_user(json, "CORP\\asmith"));
    UNIT_CHECK(per_host(json, "proxy-2") == 2);
    UNIT_CHECK(per_host(json, "proxy-1") == -1); /* hosts with nobody are left out */
    UNIT_CHECK_STR(cJSON_GetObjectItem(json, "at")->valuestring, "2023-11-14T22:13:20.000Z");
    cJSON_Delete(json);
    change = (struct users_change){0};
    users_state_stop(state, "CORP", "jdoe", &change);
    UNIT_CHECK(change.changed && users_state_count(state) == 1);
    change = (struct users_change){0};
    users_state_stop(state, "CORP", "jdoe", &change);
    UNIT_CHECK(!change.changed);
    users_state_free(state);
}

static void test_idle_expiry(void)
{
    struct users_state *state = make(10);
    struct users_change change = {0};
    users_state_start(state, "D", "a", "h", 10000, &change);
    users_state_start(state, "D", "b", "h", 10000, &change);
    users_state_touch(state, "D", "b", "h", 15000, &change);
    UNIT_CHECK(users_state_expire(state, 14000, 5000) == 0);
    UNIT_CHECK(users_state_expire(state, 16000, 5000) == 1); /* a: idle 6 s */
    UNIT_CHECK(users_state_count(state) == 1);
    UNIT_CHECK(users_state_expire(state, 21000, 5000) == 1); /* b: idle 6 s */
    UNIT_CHECK(users_state_count(state) == 0);
    users_state_free(state);
}

static void test_eviction_at_the_cap(void)
{
    struct users_state *state = make(3);
    struct users_change change = {0};
    users_state_start(state, "D", "u1", "h", 1000, &change);
    users_state_start(state, "D", "u2", "h", 2000, &change);
    users_state_start(state, "D", "u3", "h", 3000, &change);
    users_state_touch(state, "D", "u1", "h", 4000, &change); /* u2 is now the oldest */
    change = (struct users_change){0};
    UNIT_CHECK(users_state_start(state, "D", "u4", "h", 5000, &change) == BUTLER_OK);
    UNIT_CHECK(change.evicted && users_state_count(state) == 3);
    cJSON *json = summary(state);
    UNIT_CHECK(!has_user(json, "D\\u2") && has_user(json, "D\\u1") && has_user(json, "D\\u4"));
    UNIT_CHECK(per_host(json, "h") == 3);
    cJSON_Delete(json);
    users_state_free(state);
}

/* Many users in and out: the index, the slot list and the arena compaction
 * stay consistent (every remaining user is found, every removed one is not). */
static void test_churn(void)
{
    struct users_state *state = make(5000);
    struct users_change change = {0};
    char user[32];
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 5000; i++) {
            snprintf(user, sizeof user, "user%05d-%d", i, round);
            UNIT_CHECK(users_state_start(state, "DIR", user, "h", 1000, &change) == BUTLER_OK);
        }
        for (int i = 0; i < 5000; i += 2) {
            snprintf(user, sizeof user, "user%05d-%d", i, round);
            users_state_stop(state, "DIR", user, &change);
        }
    }
    /* Rounds evicted earlier users; the last round's odd users are all there. */
    UNIT_CHECK(users_state_count(state) == 2500);
    cJSON *json = summary(state);
    UNIT_CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(json, "users")) == 2500);
    UNIT_CHECK(has_user(json, "DIR\\user04999-3") && !has_user(json, "DIR\\user04998-3"));
    cJSON_Delete(json);
    for (int i = 1; i < 5000; i += 2) {
        snprintf(user, sizeof user, "user%05d-3", i);
        change = (struct users_change){0};
        users_state_stop(state, "DIR", user, &change);
        UNIT_CHECK(change.changed);
    }
    UNIT_CHECK(users_state_count(state) == 0);
    users_state_free(state);
}

/* A summary past 128 kB takes the mmap path; it must read the same. */
static void test_large_summary(void)
{
    struct users_state *state = make(20000);
    struct users_change change = {0};
    char user[64];
    for (int i = 0; i < 8000; i++) {
        snprintf(user, sizeof user, "a-rather-long-user-name-%05d", i);
        UNIT_CHECK(users_state_start(state, "DIR", user, "h", 1000, &change) == BUTLER_OK);
    }
    size_t length = 0;
    char *text = users_state_summary(state, 0, &length);
    UNIT_CHECK(text != NULL && length > 128 * 1024 && strlen(text) == length);
    cJSON *json = cJSON_Parse(text);
    UNIT_CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(json, "users")) == 8000);
    UNIT_CHECK(has_user(json, "DIR\\a-rather-long-user-name-07999"));
    cJSON_Delete(json);
    users_state_summary_free(text);
    users_state_summary_free(NULL);
    users_state_free(state);
}

static void test_summary_escapes(void)
{
    struct users_state *state = make(10);
    struct users_change change = {0};
    users_state_start(state, "CO\"RP", "j\\doe", "h\"1", 1000, &change);
    cJSON *json = summary(state);
    UNIT_CHECK(has_user(json, "CO\"RP\\j\\doe"));
    UNIT_CHECK(per_host(json, "h\"1") == 1);
    cJSON_Delete(json);
    users_state_free(state);
}

static void test_rebuild(void)
{
    struct users_state *state = make(3);
    struct users_change change = {0};
    users_state_start(state, "CORP", "live", "p9", 1000, &change);
    const char *text = "{\"count\":4,\"users\":[\"CORP\\\\a\",\"CORP\\\\b\",\"CORP\\\\live\","
                       "\"CORP\\\\c\"],\"perHost\":{\"p1\":2,\"p2\":2},\"at\":\"x\"}";
    size_t added = 0;
    UNIT_CHECK(users_state_load(state, text, strlen(text), 2000, &added) == BUTLER_OK);
    /* "live" is already there; the cap (3) leaves out "c". */
    UNIT_CHECK(added == 2 && users_state_count(state) == 3);
    cJSON *json = summary(state);
    UNIT_CHECK(has_user(json, "CORP\\a") && has_user(json, "CORP\\b"));
    UNIT_CHECK(per_host(json, "p1") == 2 && per_host(json, "p9") == 1);
    cJSON_Delete(json);
    /* A user taken over expires like any other, counted from the rebuild. */
    UNIT_CHECK(users_state_expire(state, 4000, 1000) == 3);
    UNIT_CHECK(users_state_load(state, "[1,2]", 5, 0, &added) == BUTLER_ERR_INVALID);
    UNIT_CHECK(users_state_load(state, "{\"users\":3}", 11, 0, &added) == BUTLER_ERR_INVALID);
    UNIT_CHECK(users_state_load(state, "not json", 8, 0, &added) == BUTLER_ERR_INVALID);
    users_state_free(state);
}

static enum butler_status load_text(struct users_state *state, const char *text, size_t *added)
{
    return users_state_load(state, text, strlen(text), 1000, added);
}

/* The reader behind users_state_load: JSON escapes, strictness, other members. */
static void test_rebuild_reads_json_strictly(void)
{
    struct users_state *state = make(100);
    size_t added = 0;
    /* Escapes, \u with a surrogate pair, other members and nesting passed over. */
    UNIT_CHECK(load_text(state,
                         " {\"at\": \"x\", \"extra\": [1, -2.5e3, {\"a\": [true, false, null]}],"
                         " \"users\": [\"CO\\\"RP\\\\j\\u00e9\\ud83d\\ude00\", 7, \"D\\/x\"],"
                         " \"perHost\": {\"h1\": 5, \"h2\": \"x\"}, \"count\": 2} ",
                         &added) == BUTLER_OK);
    UNIT_CHECK(added == 2 && users_state_count(state) == 2);
    cJSON *json = summary(state);
    UNIT_CHECK(has_user(json, "CO\"RP\\j\xC3\xA9\xF0\x9F\x98\x80"));
    UNIT_CHECK(has_user(json, "D/x"));
    UNIT_CHECK(per_host(json, "h1") == 2);
    cJSON_Delete(json);
    /* Not JSON, or not a summary: nothing is taken. */
    static const char *const bad[] = {
        "{\"users\": [\"a\"]} x",           /* trailing text */
        "{\"users\": [\"a\",]}",            /* trailing comma */
        "{\"users\": [\"a\\q\"]}",          /* bad escape */
        "{\"users\": [\"\\udc00\"]}",       /* lone low surrogate */
        "{\"users\": [\"\\ud800x\"]}",      /* high surrogate without its pair */
        "{\"users\": [\"a\tb\"]}",          /* raw control character */
        "{\"users\": [01]}",                /* leading zero */
        "{\"users\": [\"a\"], \"x\": tru}", /* bad literal */
        "{\"users\": \"a\"}",               /* users not an array */
        "{\"count\": 1}",                   /* no users */
        "{\"users\": [\"a\"",               /* cut short */
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct users_state *fresh = make(10);
        UNIT_CHECK(load_text(fresh, bad[i], &added) == BUTLER_ERR_INVALID);
        UNIT_CHECK(users_state_count(fresh) == 0);
        users_state_free(fresh);
    }
    /* Nesting past the limit is refused rather than recursing without end. */
    char deep[200];
    size_t at = 0;
    at += (size_t)snprintf(deep, sizeof deep, "{\"users\": [], \"x\": ");
    for (int i = 0; i < 40; i++)
        deep[at++] = '[';
    for (int i = 0; i < 40; i++)
        deep[at++] = ']';
    deep[at++] = '}';
    deep[at] = '\0';
    UNIT_CHECK(load_text(state, deep, &added) == BUTLER_ERR_INVALID);
    users_state_free(state);
}

/* The round trip at the default cap: 100,000 users (a summary of about 2 MB,
 * past the 1 MB cap on command payloads) rebuild into a new state intact. */
static void test_rebuild_at_full_size(void)
{
    struct users_state *state = make(100000);
    struct users_change change = {0};
    char user[32], host[16];
    for (int i = 0; i < 100000; i++) {
        snprintf(user, sizeof user, "user-%06d", i);
        snprintf(host, sizeof host, "proxy-%d", i % 3);
        UNIT_CHECK(users_state_start(state, "CORP", user, host, 1000, &change) == BUTLER_OK);
    }
    size_t length = 0;
    char *text = users_state_summary(state, 0, &length);
    UNIT_CHECK(text != NULL && length > 1024 * 1024);
    struct users_state *rebuilt = make(100000);
    size_t added = 0;
    UNIT_CHECK(users_state_load(rebuilt, text, length, 5000, &added) == BUTLER_OK);
    UNIT_CHECK(added == 100000 && users_state_count(rebuilt) == 100000);
    size_t again_length = 0;
    char *again = users_state_summary(rebuilt, 0, &again_length);
    cJSON *before = cJSON_Parse(text), *after = cJSON_Parse(again);
    UNIT_CHECK(cJSON_Compare(cJSON_GetObjectItem(before, "users"),
                             cJSON_GetObjectItem(after, "users"), true));
    UNIT_CHECK(per_host(after, "proxy-0") + per_host(after, "proxy-1") +
                   per_host(after, "proxy-2") ==
               100000);
    UNIT_CHECK(per_host(after, "proxy-0") == per_host(before, "proxy-0"));
    cJSON_Delete(before);
    cJSON_Delete(after);
    users_state_summary_free(text);
    users_state_summary_free(again);
    users_state_free(state);
    users_state_free(rebuilt);
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_start_stop_touch),
    UNIT_TEST(test_idle_expiry),
    UNIT_TEST(test_eviction_at_the_cap),
    UNIT_TEST(test_churn),
    UNIT_TEST(test_large_summary),
    UNIT_TEST(test_summary_escapes),
    UNIT_TEST(test_rebuild),
    UNIT_TEST(test_rebuild_at_full_size),
    UNIT_TEST(test_rebuild_reads_json_strictly),
    {0},
};
