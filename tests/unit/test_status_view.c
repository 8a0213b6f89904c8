/* Unit tests for the status page's view (bridge/model/status_view.c): which
 * topics land in which recent list, the cap of STATUS_VIEW_RING_MAX newest
 * first, payloads over STATUS_VIEW_PAYLOAD_MAX kept without their body, text
 * payloads as strings, the licence state, and client since-times. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bridge/model/status_view.h"
#include "unit.h"

static cJSON *recent(void)
{
    char *text = NULL;
    size_t length = 0;
    UNIT_CHECK(status_view_recent(&text, &length) == BUTLER_OK);
    UNIT_CHECK(text != NULL && strlen(text) == length);
    cJSON *json = cJSON_Parse(text);
    UNIT_CHECK(json != NULL);
    free(text);
    return json;
}

static int list_size(const cJSON *json, const char *name)
{
    return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(json, name));
}

static void note(const char *topic, const char *payload)
{
    status_view_note_publish(topic, payload, strlen(payload));
}

static void test_topics_go_to_their_lists(void)
{
    status_view_reset();
    status_view_setup("butler");
    note("butler/task/result", "{\"status\":\"started\"}");
    note("butler/task/finished/t1", "{\"taskId\":\"t1\"}");
    note("butler/events/task/failed/t1", "{\"taskId\":\"t1\"}");
    note("butler/events/cloud/reload/failed/a1", "{\"appId\":\"a1\"}");
    note("butler/deadletter/butler/task/start", "{\"error\":\"x\"}");
    /* Not listed: user activity, other topics, another root, a prefix only. */
    note("butler/events/session/start/CORP/jdoe", "{}");
    note("butler/events/connection/open/CORP/jdoe", "{}");
    note("butler/kv/ns/key", "{}");
    note("other/task/result", "{}");
    note("butlerx/task/result", "{}");
    note("butler/task/result/extra", "{}");
    cJSON *json = recent();
    UNIT_CHECK(list_size(json, "taskResults") == 1);
    UNIT_CHECK(list_size(json, "finished") == 1);
    UNIT_CHECK(list_size(json, "events") == 2);
    UNIT_CHECK(list_size(json, "deadLetters") == 1);
    cJSON_Delete(json);
}

static void test_lists_keep_the_newest_fifty_newest_first(void)
{
    status_view_reset();
    status_view_setup("butler");
    char payload[64];
    for (int i = 0; i < STATUS_VIEW_RING_MAX + 17; i++) {
        snprintf(payload, sizeof payload, "{\"n\":%d}", i);
        note("butler/events/task/failed/x", payload);
    }
    cJSON *json = recent();
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(json, "events");
    UNIT_CHECK(cJSON_GetArraySize(events) == STATUS_VIEW_RING_MAX);
    for (int i = 0; i < STATUS_VIEW_RING_MAX; i++) {
        const cJSON *entry = cJSON_GetArrayItem(events, i);
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(entry, "payload"), "n");
        UNIT_CHECK(cJSON_IsNumber(n) && n->valueint == STATUS_VIEW_RING_MAX + 16 - i);
        UNIT_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(entry, "at")));
    }
    cJSON_Delete(json);
}

static void test_large_and_text_payloads(void)
{
    status_view_reset();
    status_view_setup("butler");
    size_t size = STATUS_VIEW_PAYLOAD_MAX + 10;
    char *big = malloc(size + 1);
    UNIT_CHECK(big != NULL);
    memset(big, 'a', size);
    big[0] = '"';
    big[size - 1] = '"';
    big[size] = '\0';
    note("butler/events/task/failed/big", big);
    free(big);
    note("butler/events/task/failed/text", "<b>not json</b>");
    cJSON *json = recent();
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(json, "events");
    const cJSON *text = cJSON_GetArrayItem(events, 0);
    const cJSON *large = cJSON_GetArrayItem(events, 1);
    UNIT_CHECK_STR(cJSON_GetObjectItemCaseSensitive(text, "payload")->valuestring,
                   "<b>not json</b>");
    UNIT_CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(large, "payload")));
    UNIT_CHECK(cJSON_GetObjectItemCaseSensitive(large, "payloadBytes")->valueint == (int)size);
    cJSON_Delete(json);
}

static void test_license_keeps_the_last(void)
{
    status_view_reset();
    status_view_setup("butler");
    char *text = NULL;
    size_t length = 0;
    UNIT_CHECK(status_view_license(&text, &length) == BUTLER_OK);
    UNIT_CHECK_STR(text, "{\"server\":null,\"access\":null}");
    free(text);
    note("butler/sense/license/server", "{\"daysLeft\":10}");
    note("butler/sense/license/server", "{\"daysLeft\":9}");
    note("butler/sense/license/access", "{\"professional\":{\"available\":3}}");
    UNIT_CHECK(status_view_license(&text, &length) == BUTLER_OK);
    UNIT_CHECK_STR(text, "{\"server\":{\"daysLeft\":9},\"access\":{\"professional\":{"
                         "\"available\":3}}}");
    free(text);
}

static void test_client_since_moves_on_change_only(void)
{
    status_view_reset();
    struct status_client_state state;
    status_view_client(STATUS_CLIENT_QRS, &state);
    UNIT_CHECK(!state.known && state.since_ms == 0);
    status_view_note_client(STATUS_CLIENT_QRS, false, "QRS GET task: connection refused");
    status_view_client(STATUS_CLIENT_QRS, &state);
    UNIT_CHECK(state.known && !state.ok && state.since_ms > 0 && state.last_ok_ms == 0);
    UNIT_CHECK_STR(state.last_error, "QRS GET task: connection refused");
    uint64_t failing_since = state.since_ms;
    status_view_note_client(STATUS_CLIENT_QRS, false, NULL);
    status_view_client(STATUS_CLIENT_QRS, &state);
    UNIT_CHECK(state.since_ms == failing_since);
    status_view_note_client(STATUS_CLIENT_QRS, true, NULL);
    status_view_client(STATUS_CLIENT_QRS, &state);
    UNIT_CHECK(state.ok && state.last_ok_ms >= failing_since && state.since_ms >= failing_since);
    /* The last error stays for the page after a recovery. */
    UNIT_CHECK_STR(state.last_error, "QRS GET task: connection refused");
    status_view_reset();
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_topics_go_to_their_lists),
    UNIT_TEST(test_lists_keep_the_newest_fifty_newest_first),
    UNIT_TEST(test_large_and_text_payloads),
    UNIT_TEST(test_license_keeps_the_last),
    UNIT_TEST(test_client_since_moves_on_change_only),
    {0},
};
