/* Unit tests: the pure parts of the HTTP API (bridge/ingress/http_body.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bridge/core/log.h"
#include "bridge/ingress/http_body.h"
#include "bridge/ingress/http_guard.h"
#include "tests/unit/unit.h"

static void test_base62_to_base16_example(void)
{
    char out[128];
    const char *in = "6DMW88LpSok9Z7P7hUK0wv7bF";
    UNIT_CHECK(http_body_base_convert(in, strlen(in), 62, 16, out, sizeof out) == BUTLER_OK);
    UNIT_CHECK_STR(out, "3199af08bfeeaf5d420f27ed9c01e74370077");
    char back[128];
    UNIT_CHECK(http_body_base_convert(out, strlen(out), 16, 62, back, sizeof back) == BUTLER_OK);
    UNIT_CHECK_STR(back, in);
}

static void test_base_edge_cases(void)
{
    char out[64];
    UNIT_CHECK(http_body_base_convert("0", 1, 62, 16, out, sizeof out) == BUTLER_OK);
    UNIT_CHECK_STR(out, "0");
    UNIT_CHECK(http_body_base_convert("000a", 4, 16, 62, out, sizeof out) == BUTLER_OK);
    UNIT_CHECK_STR(out, "a");
    UNIT_CHECK(http_body_base_convert("FF", 2, 16, 62, out, sizeof out) == BUTLER_OK);
    UNIT_CHECK_STR(out, "47"); /* 255 = 4*62 + 7 */
    UNIT_CHECK(http_body_base_convert("Z", 1, 62, 16, out, sizeof out) == BUTLER_OK);
    UNIT_CHECK_STR(out, "3d"); /* 61 */
    UNIT_CHECK(http_body_base_convert("", 0, 62, 16, out, sizeof out) == BUTLER_ERR_INVALID);
    UNIT_CHECK(http_body_base_convert("ab-c", 4, 62, 16, out, sizeof out) == BUTLER_ERR_INVALID);
    UNIT_CHECK(http_body_base_convert("xyz", 3, 16, 62, out, sizeof out) == BUTLER_ERR_INVALID);
    UNIT_CHECK(http_body_base_convert("a\0b", 3, 62, 16, out, sizeof out) == BUTLER_ERR_INVALID);
    /* Output that does not fit is refused, not truncated. */
    UNIT_CHECK(http_body_base_convert("ZZZZ", 4, 62, 16, out, 3) == BUTLER_ERR_TOO_LARGE);
    char *long_input = malloc(HTTP_BASE_INPUT_MAX + 2);
    memset(long_input, 'Z', HTTP_BASE_INPUT_MAX + 1);
    long_input[HTTP_BASE_INPUT_MAX + 1] = '\0';
    char big[HTTP_BASE_INPUT_MAX * 2];
    UNIT_CHECK(http_body_base_convert(long_input, HTTP_BASE_INPUT_MAX + 1, 62, 16, big,
                                      sizeof big) == BUTLER_ERR_TOO_LARGE);
    /* The longest accepted input converts (arbitrary length, no overflow). */
    UNIT_CHECK(http_body_base_convert(long_input, HTTP_BASE_INPUT_MAX, 62, 16, big, sizeof big) ==
               BUTLER_OK);
    UNIT_CHECK(strlen(big) > HTTP_BASE_INPUT_MAX); /* too long to convert back: refused */
    char again[HTTP_BASE_INPUT_MAX + 2];
    UNIT_CHECK(http_body_base_convert(big, strlen(big), 16, 62, again, sizeof again) ==
               BUTLER_ERR_TOO_LARGE);
    /* 600 base62 digits fit both ways and round-trip. */
    UNIT_CHECK(http_body_base_convert(long_input, 600, 62, 16, big, sizeof big) == BUTLER_OK);
    UNIT_CHECK(http_body_base_convert(big, strlen(big), 16, 62, again, sizeof again) == BUTLER_OK);
    UNIT_CHECK(strlen(again) == 600 && again[0] == 'Z');
    free(long_input);
}

static void test_method_override(void)
{
    UNIT_CHECK(http_body_method("GET", NULL) == HTTP_METHOD_GET);
    UNIT_CHECK(http_body_method("POST", NULL) == HTTP_METHOD_POST);
    UNIT_CHECK(http_body_method("POST", "PUT") == HTTP_METHOD_PUT);
    UNIT_CHECK(http_body_method("POST", "delete") == HTTP_METHOD_DELETE);
    UNIT_CHECK(http_body_method("POST", "PATCH") == HTTP_METHOD_POST);
    /* Only POST is overridable: a GET cannot turn itself into a DELETE. */
    UNIT_CHECK(http_body_method("GET", "DELETE") == HTTP_METHOD_GET);
    UNIT_CHECK(http_body_method("PATCH", NULL) == HTTP_METHOD_OTHER);
}

static void test_token_compare(void)
{
    char *items[] = {"alpha-token", "beta"};
    struct config_string_list tokens = {items, 2};
    UNIT_CHECK(http_body_bearer_allowed("Bearer alpha-token", &tokens));
    UNIT_CHECK(http_body_bearer_allowed("bearer beta", &tokens));
    UNIT_CHECK(!http_body_bearer_allowed("Bearer alpha", &tokens));
    UNIT_CHECK(!http_body_bearer_allowed("Bearer alpha-token2", &tokens));
    UNIT_CHECK(!http_body_bearer_allowed("Bearer ", &tokens));
    UNIT_CHECK(!http_body_bearer_allowed("Basic YmV0YQ==", &tokens));
    UNIT_CHECK(!http_body_bearer_allowed(NULL, &tokens));
    UNIT_CHECK(http_body_token_equal("beta", 4, "beta"));
    UNIT_CHECK(!http_body_token_equal("bet", 3, "beta"));
    UNIT_CHECK(!http_body_token_equal("", 0, ""));
}

static void test_content_type(void)
{
    UNIT_CHECK(http_body_is_json_content_type("application/json"));
    UNIT_CHECK(http_body_is_json_content_type("Application/JSON; charset=utf-8"));
    UNIT_CHECK(http_body_is_json_content_type("application/vnd.api+json"));
    UNIT_CHECK(!http_body_is_json_content_type("text/plain"));
    UNIT_CHECK(!http_body_is_json_content_type("application/jsonx"));
    UNIT_CHECK(!http_body_is_json_content_type(NULL));
}

static void test_publish_body(void)
{
    struct http_publish_body body;
    char error[256];
    const char *ok = "{\"topic\":\"a/b\",\"message\":\"hi\",\"qos\":0,\"retain\":true}";
    UNIT_CHECK(http_body_parse_publish(ok, strlen(ok), &body, error, sizeof error) == BUTLER_OK);
    UNIT_CHECK_STR(body.topic, "a/b");
    UNIT_CHECK_STR(body.message, "hi");
    UNIT_CHECK(body.qos == 0 && body.retain);
    UNIT_CHECK_STR(body.echo, ok);
    http_publish_body_clear(&body);
    const char *defaults = "{\"topic\":\"x\",\"message\":\"\"}";
    UNIT_CHECK(http_body_parse_publish(defaults, strlen(defaults), &body, error, sizeof error) ==
               BUTLER_OK);
    UNIT_CHECK(body.qos == 1 && !body.retain);
    http_publish_body_clear(&body);
    const char *bad[] = {"",
                         "[]",
                         "{",
                         "{\"topic\":\"a/#\",\"message\":\"m\"}",
                         "{\"topic\":\"a\"}",
                         "{\"topic\":\"a\",\"message\":1}",
                         "{\"topic\":\"a\",\"message\":\"m\",\"qos\":3}",
                         "{\"topic\":\"a\",\"message\":\"m\",\"qos\":1.5}",
                         "{\"topic\":\"a\",\"message\":\"m\",\"retain\":\"yes\"}",
                         "{\"topic\":\"a\",\"message\":\"m\"} x",
                         NULL};
    for (size_t i = 0; bad[i]; i++) {
        UNIT_CHECK(http_body_parse_publish(bad[i], strlen(bad[i]), &body, error, sizeof error) ==
                   BUTLER_ERR_INVALID);
        UNIT_CHECK(error[0] != '\0');
    }
}

static void test_slack_body(void)
{
    char *payload = NULL, *echo = NULL;
    char error[256];
    const char *ok = "{\"channel\":\"#qlik\",\"from_user\":\"Butler\",\"msg\":\"Hello\","
                     "\"emoji\":\":ghost:\"}";
    UNIT_CHECK(http_body_parse_slack(ok, strlen(ok), &payload, &echo, error, sizeof error) ==
               BUTLER_OK);
    UNIT_CHECK_STR(payload, "{\"text\":\"Hello\",\"channel\":\"#qlik\",\"username\":\"Butler\","
                            "\"icon_emoji\":\":ghost:\"}");
    UNIT_CHECK_STR(echo, ok);
    free(payload);
    free(echo);
    const char *missing = "{\"channel\":\"#qlik\",\"msg\":\"Hello\"}";
    UNIT_CHECK(http_body_parse_slack(missing, strlen(missing), &payload, &echo, error,
                                     sizeof error) == BUTLER_ERR_INVALID);
    UNIT_CHECK(payload == NULL && echo == NULL);
    UNIT_CHECK(strstr(error, "from_user") != NULL);
}

static void test_task_start_payload(void)
{
    char *payload = NULL;
    char error[256];
    const char *body = "[{\"type\":\"starttasktag\",\"payload\":{\"tag\":\"nightly\"}}]";
    UNIT_CHECK(http_body_task_start_payload("5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91", body,
                                            strlen(body), true, "req-1", &payload, error,
                                            sizeof error) == BUTLER_OK);
    cJSON *json = cJSON_Parse(payload);
    UNIT_CHECK_STR(cJSON_GetObjectItem(json, "requestId")->valuestring, "req-1");
    UNIT_CHECK(cJSON_IsTrue(cJSON_GetObjectItem(json, "allTaskIdsMustExist")));
    cJSON *items = cJSON_GetObjectItem(json, "items");
    UNIT_CHECK(cJSON_GetArraySize(items) == 2);
    UNIT_CHECK_STR(cJSON_GetObjectItem(cJSON_GetArrayItem(items, 0), "type")->valuestring,
                   "starttaskid");
    UNIT_CHECK_STR(cJSON_GetObjectItem(cJSON_GetArrayItem(items, 1), "type")->valuestring,
                   "starttasktag");
    cJSON_Delete(json);
    free(payload);
    /* "-" means everything is in the body. */
    UNIT_CHECK(http_body_task_start_payload("-", body, strlen(body), false, "req-2", &payload,
                                            error, sizeof error) == BUTLER_OK);
    json = cJSON_Parse(payload);
    UNIT_CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(json, "items")) == 1);
    cJSON_Delete(json);
    free(payload);
    /* No body at all is fine with a task id in the path. */
    UNIT_CHECK(http_body_task_start_payload("5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91", "", 0, false,
                                            "req-3", &payload, error, sizeof error) == BUTLER_OK);
    free(payload);
    /* "-" naming nothing (no body, blank, an empty array): OK, nothing to publish. */
    const char *const nothing[] = {"", " \n", "[]", " [ ]\r\n"};
    for (size_t i = 0; i < sizeof nothing / sizeof nothing[0]; i++) {
        payload = (char *)"sentinel";
        UNIT_CHECK(http_body_task_start_payload("-", nothing[i], strlen(nothing[i]), false, "r",
                                                &payload, error, sizeof error) == BUTLER_OK);
        UNIT_CHECK(payload == NULL);
    }
    /* ... but a malformed body is still a 400, even with "-". */
    UNIT_CHECK(http_body_task_start_payload("-", "[", 1, false, "r", &payload, error,
                                            sizeof error) == BUTLER_ERR_INVALID);
    /* A task id in the path with an empty array starts that task. */
    UNIT_CHECK(http_body_task_start_payload("5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91", "[]", 2, false,
                                            "r", &payload, error, sizeof error) == BUTLER_OK);
    UNIT_CHECK(payload != NULL && strstr(payload, "starttaskid") != NULL);
    free(payload);
    const char *not_array = "{\"type\":\"starttaskid\"}";
    UNIT_CHECK(http_body_task_start_payload("-", not_array, strlen(not_array), false, "r", &payload,
                                            error, sizeof error) == BUTLER_ERR_INVALID);
    UNIT_CHECK(payload == NULL);
    const char *bad_item = "[{\"type\":\"starttasktag\",\"payload\":{}}]";
    UNIT_CHECK(http_body_task_start_payload("-", bad_item, strlen(bad_item), false, "r", &payload,
                                            error, sizeof error) == BUTLER_ERR_INVALID);
}

static void test_task_start_nothing_shape(void)
{
    char *node = NULL;
    UNIT_CHECK(http_body_task_start_nothing("req \"q\"", &node) == BUTLER_OK);
    UNIT_CHECK_STR(node, "{\"tasksId\":{\"started\":[],\"invalid\":[],\"denied\":[]},"
                         "\"tasksTag\":[],\"tasksTagDenied\":[],\"tasksCP\":[],"
                         "\"tasksCPDenied\":[],\"requestId\":\"req \\\"q\\\"\"}");
    free(node);
}

static void test_result_to_node_shape(void)
{
    const char *result =
        "{\"requestId\":\"r1\",\"status\":\"partial\","
        "\"started\":[{\"taskId\":\"t1\",\"taskName\":\"A\",\"via\":\"taskId\"},"
        "{\"taskId\":\"t2\",\"taskName\":\"B\",\"via\":\"tag\",\"tag\":\"nightly\"},"
        "{\"taskId\":\"t3\",\"taskName\":\"C\",\"via\":\"customProperty\","
        "\"customProperty\":{\"name\":\"grp\",\"value\":\"x\"}}],"
        "\"invalid\":[{\"taskId\":\"nope\"},{\"tag\":\"empty\"}],"
        "\"denied\":[{\"taskId\":\"t4\",\"taskName\":\"D\",\"via\":\"taskId\"},"
        "{\"taskId\":\"t5\",\"taskName\":\"E\",\"via\":\"tag\",\"tag\":\"secret\"},"
        "{\"taskId\":\"t6\",\"taskName\":\"F\",\"via\":\"tag\",\"tag\":\"secret\"},"
        "{\"taskId\":\"t7\",\"taskName\":\"G\",\"via\":\"customProperty\","
        "\"customProperty\":{\"name\":\"grp\",\"value\":\"y\"}}],"
        "\"error\":\"task t4 is not in task_start.allow\"}";
    char *node = NULL;
    UNIT_CHECK(http_body_task_result_to_node(result, strlen(result), &node) == BUTLER_OK);
    UNIT_CHECK_STR(node, "{\"tasksId\":{\"started\":[{\"taskId\":\"t1\",\"taskName\":\"A\"}],"
                         "\"invalid\":[{\"taskId\":\"nope\"}],\"denied\":[{\"taskId\":\"t4\"}]},"
                         "\"tasksTag\":[{\"taskId\":\"t2\",\"taskName\":\"B\"}],"
                         "\"tasksTagDenied\":[{\"tag\":\"secret\"}],"
                         "\"tasksCP\":[{\"taskId\":\"t3\",\"taskName\":\"C\"}],"
                         "\"tasksCPDenied\":[{\"name\":\"grp\",\"value\":\"y\"}],"
                         "\"requestId\":\"r1\",\"status\":\"partial\","
                         "\"error\":\"task t4 is not in task_start.allow\"}");
    free(node);
    UNIT_CHECK(http_body_task_result_to_node("[]", 2, &node) == BUTLER_ERR_INVALID);
    UNIT_CHECK(node == NULL);
}

/* URLs in logs and --check-config: userinfo and queries never shown, also
 * when the query follows the host directly. */
static void test_url_masking(void)
{
    char out[256];
    log_redact_url("https://hooks.example.com?token=SECRET", out, sizeof out);
    UNIT_CHECK_STR(out, "https://hooks.example.com/xxx");
    log_redact_url("https://user:pw@hooks.example.com/services/SECRET", out, sizeof out);
    UNIT_CHECK_STR(out, "https://hooks.example.com/xxx");
    log_redact_url("https://hooks.example.com", out, sizeof out);
    UNIT_CHECK_STR(out, "https://hooks.example.com");
    log_mask_url("smtp://user:pa55@mail.example.com:587", out, sizeof out);
    UNIT_CHECK_STR(out, "smtp://***@mail.example.com:587");
    log_mask_url("https://sense.example.com:4242/qrs?xrfkey=SECRET#frag", out, sizeof out);
    UNIT_CHECK_STR(out, "https://sense.example.com:4242/qrs?***");
    log_mask_url("https://a@b@sense.example.com?x", out, sizeof out);
    UNIT_CHECK_STR(out, "https://***@sense.example.com?***");
    log_mask_url("wss://engine.example.com:4747/app", out, sizeof out);
    UNIT_CHECK_STR(out, "wss://engine.example.com:4747/app");
}

static void test_host_header_names(void)
{
    char out[64];
    UNIT_CHECK(http_guard_host_name("LocalHost:8080", out, sizeof out));
    UNIT_CHECK_STR(out, "localhost");
    UNIT_CHECK(http_guard_host_name("[::1]:8080", out, sizeof out));
    UNIT_CHECK_STR(out, "::1");
    UNIT_CHECK(http_guard_host_name("butler.example.", out, sizeof out));
    UNIT_CHECK_STR(out, "butler.example");
    UNIT_CHECK(!http_guard_host_name("", out, sizeof out));
    UNIT_CHECK(!http_guard_host_name(":8080", out, sizeof out));
    UNIT_CHECK(!http_guard_host_name("[::1", out, sizeof out));
    UNIT_CHECK(!http_guard_host_name("::1:80", out, sizeof out));
    UNIT_CHECK(!http_guard_host_name("a b", out, sizeof out));
    UNIT_CHECK(!http_guard_host_name("user@host", out, sizeof out));
    UNIT_CHECK(!http_guard_host_name("a-very-long-name-that-does-not-fit-in-the-buffer.example.com",
                                     out, 16));
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_base62_to_base16_example),
    UNIT_TEST(test_base_edge_cases),
    UNIT_TEST(test_method_override),
    UNIT_TEST(test_token_compare),
    UNIT_TEST(test_content_type),
    UNIT_TEST(test_publish_body),
    UNIT_TEST(test_slack_body),
    UNIT_TEST(test_task_start_payload),
    UNIT_TEST(test_task_start_nothing_shape),
    UNIT_TEST(test_result_to_node_shape),
    UNIT_TEST(test_url_masking),
    UNIT_TEST(test_host_header_names),
    {0},
};
