/* Unit tests: task-start payload parsing in every form, and hostile payloads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/unit.h"
#include "bridge/model/task_request.h"

static const char *const TASK = "5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91";

static enum butler_status parse(const char *payload, const char *topic_task_id, bool legacy,
                                struct task_request *request, char *error)
{
    return task_request_parse(topic_task_id, legacy, (const unsigned char *)payload,
                              strlen(payload), request, error, 256);
}

static void test_bare_guid(void)
{
    struct task_request request;
    char error[256];
    UNIT_CHECK(parse("  5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91\n", NULL, false, &request, error) ==
               BUTLER_OK);
    UNIT_CHECK(request.selector_count == 1);
    UNIT_CHECK(request.selectors[0].kind == TASK_SELECT_ID);
    UNIT_CHECK(request.selectors[0].valid);
    UNIT_CHECK_STR(request.selectors[0].value, TASK);
    UNIT_CHECK(request.request_id_generated);
    UNIT_CHECK(strlen(request.request_id) == 36);
    task_request_clear(&request);
    /* The legacy topic accepts only this form. */
    UNIT_CHECK(parse(TASK, NULL, true, &request, error) == BUTLER_OK);
    task_request_clear(&request);
    UNIT_CHECK(parse("{\"taskId\":\"5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91\"}", NULL, true, &request,
                     error) == BUTLER_ERR_INVALID);
    task_request_clear(&request);
}

static void test_object_selectors(void)
{
    struct task_request request;
    char error[256];
    UNIT_CHECK(parse("{\"taskName\":\"Reload Sales\",\"requestId\":\"r-1\"}", NULL, false, &request,
                     error) == BUTLER_OK);
    UNIT_CHECK(request.selectors[0].kind == TASK_SELECT_NAME);
    UNIT_CHECK_STR(request.request_id, "r-1");
    UNIT_CHECK(!request.request_id_generated);
    task_request_clear(&request);

    UNIT_CHECK(parse("{\"tag\":\"nightly\"}", NULL, false, &request, error) == BUTLER_OK);
    UNIT_CHECK(request.selectors[0].kind == TASK_SELECT_TAG);
    task_request_clear(&request);

    UNIT_CHECK(parse("{\"customProperty\":{\"name\":\"Department\",\"value\":\"HR\"},"
                     "\"kv\":[{\"namespace\":\"ns\",\"key\":\"k\",\"value\":\"v\",\"ttl\":5000}]}",
                     NULL, false, &request, error) == BUTLER_OK);
    UNIT_CHECK(request.selectors[0].kind == TASK_SELECT_CUSTOM_PROPERTY);
    UNIT_CHECK_STR(request.selectors[0].value, "Department");
    UNIT_CHECK_STR(request.selectors[0].property_value, "HR");
    UNIT_CHECK(request.kv_count == 1);
    UNIT_CHECK(request.kv[0].ttl_ms == 5000);
    task_request_clear(&request);

    /* Non-GUID ids are kept, marked invalid, so the answer can list them. */
    UNIT_CHECK(parse("{\"taskId\":\"task-123\"}", NULL, false, &request, error) == BUTLER_OK);
    UNIT_CHECK(!request.selectors[0].valid);
    task_request_clear(&request);
}

static void test_object_errors(void)
{
    struct task_request request;
    char error[256];
    UNIT_CHECK(parse("{\"taskId\":\""
                     "5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91"
                     "\",\"tag\":\"x\"}",
                     NULL, false, &request, error) == BUTLER_ERR_INVALID);
    UNIT_CHECK(strstr(error, "exactly one") != NULL);
    UNIT_CHECK(parse("{}", NULL, false, &request, error) == BUTLER_ERR_INVALID);
    UNIT_CHECK(parse("{\"taskid\":\"x\"}", NULL, false, &request, error) == BUTLER_ERR_INVALID);
    UNIT_CHECK(strstr(error, "unknown field") != NULL);
    UNIT_CHECK(parse("{\"tag\":5}", NULL, false, &request, error) == BUTLER_ERR_INVALID);
    /* requestId survives a rejection so the answer carries it. */
    UNIT_CHECK(parse("{\"requestId\":\"keep-me\",\"tag\":5}", NULL, false, &request, error) ==
               BUTLER_ERR_INVALID);
    UNIT_CHECK_STR(request.request_id, "keep-me");
    char long_id[100];
    memset(long_id, 'a', 65);
    long_id[65] = '\0';
    char payload[200];
    snprintf(payload, sizeof payload, "{\"requestId\":\"%s\",\"tag\":\"x\"}", long_id);
    UNIT_CHECK(parse(payload, NULL, false, &request, error) == BUTLER_ERR_INVALID);
    UNIT_CHECK(parse("{\"tag\":\"x\"} trailing", NULL, false, &request, error) ==
               BUTLER_ERR_INVALID);
    UNIT_CHECK(parse("{\"tag\":", NULL, false, &request, error) == BUTLER_ERR_INVALID);
    UNIT_CHECK(parse("not a guid", NULL, false, &request, error) == BUTLER_ERR_INVALID);
    UNIT_CHECK(parse("", NULL, false, &request, error) == BUTLER_ERR_INVALID);
    UNIT_CHECK(parse("42", NULL, false, &request, error) == BUTLER_ERR_INVALID);
}

static void test_typed_items(void)
{
    struct task_request request;
    char error[256];
    const char *payload =
        "[{\"type\":\"starttaskid\",\"payload\":{\"taskId\":\"5e2f4c1a-8b7d-4a3e-9f10-"
        "2c6d8e4b7a91\"}},"
        "{\"type\":\"starttasktag\",\"payload\":{\"tag\":\"nightly\"}},"
        "{\"type\":\"starttaskcustomproperty\",\"payload\":{\"customPropertyName\":\"Department\","
        "\"customPropertyValue\":\"HR\"}},"
        "{\"type\":\"keyvaluestore\",\"payload\":{\"namespace\":\"ns\",\"key\":\"k\",\"value\":"
        "\"v\"}}]";
    UNIT_CHECK(parse(payload, NULL, false, &request, error) == BUTLER_OK);
    UNIT_CHECK(request.selector_count == 3);
    UNIT_CHECK(request.kv_count == 1);
    UNIT_CHECK(request.selectors[1].kind == TASK_SELECT_TAG);
    task_request_clear(&request);
    UNIT_CHECK(parse("[{\"type\":\"explode\",\"payload\":{}}]", NULL, false, &request, error) ==
               BUTLER_ERR_INVALID);
    UNIT_CHECK(parse("[{\"type\":\"starttaskid\"}]", NULL, false, &request, error) ==
               BUTLER_ERR_INVALID);
    /* Butler extension used by the HTTP API. */
    UNIT_CHECK(parse("{\"requestId\":\"h1\",\"allTaskIdsMustExist\":true,\"items\":"
                     "[{\"type\":\"starttasktag\",\"payload\":{\"tag\":\"a\"}}]}",
                     NULL, false, &request, error) == BUTLER_OK);
    UNIT_CHECK(request.all_task_ids_must_exist);
    task_request_clear(&request);
    /* Key-value items only: a request (stored, nothing started), as in the
     * Node.js Butler; an empty list still names nothing. */
    UNIT_CHECK(parse("[{\"type\":\"keyvaluestore\",\"payload\":{\"namespace\":\"ns\","
                     "\"key\":\"k\",\"value\":\"v\"}}]",
                     NULL, false, &request, error) == BUTLER_OK);
    UNIT_CHECK(request.selector_count == 0 && request.kv_count == 1);
    task_request_clear(&request);
    UNIT_CHECK(parse("[]", NULL, false, &request, error) == BUTLER_ERR_INVALID);
    UNIT_CHECK(parse("{\"items\":[]}", NULL, false, &request, error) == BUTLER_ERR_INVALID);
}

static void test_topic_task_id(void)
{
    struct task_request request;
    char error[256];
    UNIT_CHECK(parse("", TASK, false, &request, error) == BUTLER_OK);
    UNIT_CHECK(request.selector_count == 1);
    task_request_clear(&request);
    UNIT_CHECK(parse("{\"requestId\":\"t1\"}", TASK, false, &request, error) == BUTLER_OK);
    UNIT_CHECK_STR(request.request_id, "t1");
    task_request_clear(&request);
    UNIT_CHECK(parse("{\"tag\":\"x\"}", TASK, false, &request, error) == BUTLER_ERR_INVALID);
    UNIT_CHECK(parse("", "not-a-guid", false, &request, error) == BUTLER_ERR_INVALID);
}

static void test_hostile(void)
{
    struct task_request request;
    char error[256];
    const unsigned char invalid_utf8[] = "{\"tag\":\"\xC0\xAF\"}";
    UNIT_CHECK(task_request_parse(NULL, false, invalid_utf8, sizeof invalid_utf8 - 1, &request,
                                  error, sizeof error) == BUTLER_ERR_INVALID);
    UNIT_CHECK(strstr(error, "UTF-8") != NULL);
    const unsigned char with_nul[] = "5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91\0x";
    UNIT_CHECK(task_request_parse(NULL, false, with_nul, sizeof with_nul - 1, &request, error,
                                  sizeof error) == BUTLER_ERR_INVALID);
    size_t big = TASK_MESSAGE_MAX + 1;
    unsigned char *huge = malloc(big);
    memset(huge, ' ', big);
    UNIT_CHECK(task_request_parse(NULL, false, huge, big, &request, error, sizeof error) ==
               BUTLER_ERR_TOO_LARGE);
    free(huge);
    /* Deep nesting must be rejected, not recursed into without bound. */
    size_t depth = 5000;
    char *deep = malloc(depth * 2 + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[depth * 2] = '\0';
    UNIT_CHECK(parse(deep, NULL, false, &request, error) == BUTLER_ERR_INVALID);
    free(deep);
    /* Too many selectors. */
    size_t count = TASK_SELECTORS_MAX + 1, used = 0;
    size_t size = count * 64 + 8;
    char *many = malloc(size);
    used += (size_t)snprintf(many + used, size - used, "[");
    for (size_t i = 0; i < count; i++)
        used += (size_t)snprintf(many + used, size - used,
                                 "%s{\"type\":\"starttasktag\",\"payload\":{\"tag\":\"t\"}}",
                                 i ? "," : "");
    snprintf(many + used, size - used, "]");
    UNIT_CHECK(parse(many, NULL, false, &request, error) == BUTLER_ERR_TOO_LARGE);
    free(many);
}

static void test_utf8_and_guid(void)
{
    UNIT_CHECK(task_is_guid(TASK, 36));
    UNIT_CHECK(task_is_guid("5E2F4C1A-8B7D-4A3E-9F10-2C6D8E4B7A91", 36));
    UNIT_CHECK(!task_is_guid("{5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a9}", 37));
    UNIT_CHECK(!task_is_guid("5e2f4c1a-8b7d-4a3e-9f10_2c6d8e4b7a91", 36));
    UNIT_CHECK(task_valid_utf8((const unsigned char *)"F\xC3\xB6rs\xC3\xA4ljning", 12));
    UNIT_CHECK(!task_valid_utf8((const unsigned char *)"\xED\xA0\x80", 3));
    UNIT_CHECK(!task_valid_utf8((const unsigned char *)"\xE2\x82", 2));
    UNIT_CHECK(!task_valid_utf8((const unsigned char *)"\xF6", 1));
    UNIT_CHECK(task_valid_utf8((const unsigned char *)"\xF0\x9F\x98\x80", 4));
    char uuid[37];
    task_make_uuid(uuid);
    UNIT_CHECK(task_is_guid(uuid, strlen(uuid)));
    UNIT_CHECK(uuid[14] == '4');
}

/* "follow" (contract 9.1): a boolean on any object form; anything else is refused. */
static void test_follow(void)
{
    struct task_request request;
    char error[256];
    UNIT_CHECK(parse("{\"tag\":\"x\",\"follow\":true}", NULL, false, &request, error) == BUTLER_OK);
    UNIT_CHECK(request.follow);
    task_request_clear(&request);
    UNIT_CHECK(parse("{\"tag\":\"x\",\"follow\":false}", NULL, false, &request, error) ==
               BUTLER_OK);
    UNIT_CHECK(!request.follow);
    task_request_clear(&request);
    UNIT_CHECK(parse("{\"tag\":\"x\"}", NULL, false, &request, error) == BUTLER_OK);
    UNIT_CHECK(!request.follow);
    task_request_clear(&request);
    UNIT_CHECK(parse("{\"follow\":true}", TASK, false, &request, error) == BUTLER_OK);
    UNIT_CHECK(request.follow);
    task_request_clear(&request);
    static const char *const bad[] = {"\"yes\"", "1", "null", "[]", "{}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char payload[128];
        snprintf(payload, sizeof payload, "{\"requestId\":\"f\",\"tag\":\"x\",\"follow\":%s}",
                 bad[i]);
        UNIT_CHECK(parse(payload, NULL, false, &request, error) == BUTLER_ERR_INVALID);
        UNIT_CHECK(strstr(error, "\"follow\" must be true or false") != NULL);
        UNIT_CHECK_STR(request.request_id, "f");
    }
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_bare_guid),     UNIT_TEST(test_object_selectors), UNIT_TEST(test_object_errors),
    UNIT_TEST(test_typed_items),   UNIT_TEST(test_topic_task_id),    UNIT_TEST(test_hostile),
    UNIT_TEST(test_utf8_and_guid), UNIT_TEST(test_follow),           {0},
};
