/* App request parser (topics/app.c) and the engine client's pure parts
 * (bridge/clients/engine.c): URLs and incoming messages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/clients/engine.h"
#include "tests/unit/unit.h"
#include "bridge/model/app_request.h"

#define TASK_A "5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91"

static enum butler_status parse(enum app_operation operation, const char *text,
                                struct app_request *request, char *error)
{
    return app_request_parse(operation, (const unsigned char *)text, strlen(text), request, error,
                             256);
}

static void test_reload_full(void)
{
    struct app_request request;
    char error[256];
    UNIT_CHECK(parse(APP_OP_RELOAD,
                     "{\"appId\":\"a1\",\"requestId\":\"r1\",\"reloadMode\":2,"
                     "\"partialReload\":true,\"startQSEoWTaskOnSuccess\":[\"" TASK_A "\"],"
                     "\"startQSEoWTaskOnFailure\":[{\"taskId\":\"" TASK_A "\"}]}",
                     &request, error) == BUTLER_OK);
    UNIT_CHECK_STR(request.app_id, "a1");
    UNIT_CHECK_STR(request.request_id, "r1");
    UNIT_CHECK(request.reload_mode == 2 && request.partial_reload);
    UNIT_CHECK(request.on_success_count == 1 && request.on_failure_count == 1);
    UNIT_CHECK_STR(request.on_success[0], TASK_A);
}

static void test_reload_defaults_and_strings(void)
{
    struct app_request request;
    char error[256];
    UNIT_CHECK(parse(APP_OP_RELOAD,
                     "{\"appId\":\"a1\",\"partialReload\":\"true\",\"reloadMode\":\"1\"}", &request,
                     error) == BUTLER_OK);
    UNIT_CHECK(request.partial_reload && request.reload_mode == 1);
    UNIT_CHECK(strlen(request.request_id) == 36); /* generated */
    UNIT_CHECK(parse(APP_OP_RELOAD, "{\"appId\":\"a1\"}", &request, error) == BUTLER_OK);
    UNIT_CHECK(!request.partial_reload && request.reload_mode == 0);
}

static void test_reload_rejects(void)
{
    struct app_request request;
    char error[256];
    static const char *const bad[] = {
        "",
        "[]",
        "{}",
        "{\"appId\":\"\"}",
        "{\"appId\":5}",
        "{\"appId\":\"a\",\"reloadMode\":3}",
        "{\"appId\":\"a\",\"reloadMode\":1.5}",
        "{\"appId\":\"a\",\"partialReload\":\"yes\"}",
        "{\"appId\":\"a\",\"startQSEoWTaskOnSuccess\":\"" TASK_A "\"}",
        "{\"appId\":\"a\",\"startQSEoWTaskOnFailure\":[\"not-a-guid\"]}",
        "{\"appId\":\"a\\u0001\"}",
        "{\"appId\":\"a\",\"requestId\":\"\"}",
        "{\"appId\":\"a\"} trailing",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        error[0] = '\0';
        UNIT_CHECK(parse(APP_OP_RELOAD, bad[i], &request, error) != BUTLER_OK);
        UNIT_CHECK(error[0] != '\0');
        UNIT_CHECK(request.request_id[0] != '\0'); /* the answer can still carry one */
    }
    /* 65 chained ids: over the cap. */
    char text[4096];
    size_t used =
        (size_t)snprintf(text, sizeof text, "{\"appId\":\"a\",\"startQSEoWTaskOnSuccess\":[");
    for (int i = 0; i < APP_CHAINED_TASKS_MAX + 1; i++)
        used += (size_t)snprintf(text + used, sizeof text - used, "%s\"" TASK_A "\"", i ? "," : "");
    snprintf(text + used, sizeof text - used, "]}");
    UNIT_CHECK(parse(APP_OP_RELOAD, text, &request, error) == BUTLER_ERR_TOO_LARGE);
}

static void test_list_and_dump(void)
{
    struct app_request request;
    char error[256];
    UNIT_CHECK(parse(APP_OP_LIST, "", &request, error) == BUTLER_OK);
    UNIT_CHECK(parse(APP_OP_LIST, "{\"requestId\":\"l\"}", &request, error) == BUTLER_OK);
    UNIT_CHECK_STR(request.request_id, "l");
    UNIT_CHECK(parse(APP_OP_DUMP, "{\"requestId\":\"d\"}", &request, error) != BUTLER_OK);
    UNIT_CHECK(parse(APP_OP_DUMP, "{\"appId\":\"x\"}", &request, error) == BUTLER_OK);
}

static void test_engine_urls(void)
{
    char host[64];
    int port = 0;
    bool tls = false;
    UNIT_CHECK(engine_parse_url("wss://sense.example.com:4747", host, sizeof host, &port, &tls) ==
               BUTLER_OK);
    UNIT_CHECK_STR(host, "sense.example.com");
    UNIT_CHECK(port == 4747 && tls);
    UNIT_CHECK(engine_parse_url("wss://sense/prefix", host, sizeof host, &port, &tls) == BUTLER_OK);
    UNIT_CHECK(port == 4747);
    UNIT_CHECK(engine_parse_url("ws://h:80", host, sizeof host, &port, &tls) == BUTLER_OK);
    UNIT_CHECK(!tls && port == 80);
    UNIT_CHECK(engine_parse_url("ftp://h", host, sizeof host, &port, &tls) != BUTLER_OK);
    UNIT_CHECK(engine_parse_url("wss://", host, sizeof host, &port, &tls) != BUTLER_OK);
    UNIT_CHECK(engine_parse_url("wss://h:0", host, sizeof host, &port, &tls) != BUTLER_OK);
    UNIT_CHECK(engine_parse_url("wss://h:99999", host, sizeof host, &port, &tls) != BUTLER_OK);
    UNIT_CHECK(engine_parse_url("wss://h:12x", host, sizeof host, &port, &tls) != BUTLER_OK);
}

static enum butler_status message(const char *text, struct engine_message *out)
{
    return engine_message_parse(text, strlen(text), out);
}

static void test_engine_messages(void)
{
    struct engine_message m;
    UNIT_CHECK(message("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"qReturn\":true}}", &m) ==
               BUTLER_OK);
    UNIT_CHECK(m.kind == ENGINE_MESSAGE_ANSWER && m.id == 3 && !m.is_error);
    UNIT_CHECK(cJSON_IsTrue(cJSON_GetObjectItem(m.result, "qReturn")));
    engine_message_clear(&m);
    UNIT_CHECK(message("{\"id\":1,\"error\":{\"code\":1002,\"parameter\":\"x\",\"message\":\"App "
                       "not found\"}}",
                       &m) == BUTLER_OK);
    UNIT_CHECK(m.is_error && m.result == NULL);
    UNIT_CHECK_STR(m.error, "App not found: x (engine error 1002)");
    UNIT_CHECK(message("{\"jsonrpc\":\"2.0\",\"method\":\"OnAuthenticationInformation\","
                       "\"params\":{\"mustAuthenticate\":true}}",
                       &m) == BUTLER_OK);
    UNIT_CHECK(m.kind == ENGINE_MESSAGE_NOTIFICATION && m.must_authenticate);
    UNIT_CHECK(message("{\"method\":\"OnConnected\",\"params\":{\"qSessionState\":"
                       "\"SESSION_ERROR_NO_LICENSE\"}}",
                       &m) == BUTLER_OK);
    UNIT_CHECK_STR(m.session_state, "SESSION_ERROR_NO_LICENSE");
    UNIT_CHECK(message("{\"id\":-1,\"result\":{}}", &m) == BUTLER_ERR_INVALID);
    UNIT_CHECK(message("{\"id\":1e300,\"result\":{}}", &m) == BUTLER_ERR_INVALID);
    UNIT_CHECK(message("[1]", &m) == BUTLER_ERR_INVALID);
    UNIT_CHECK(message("{\"result\":{}}", &m) == BUTLER_ERR_INVALID);
    UNIT_CHECK(message("{\"id\":1,\"result\":{}} x", &m) == BUTLER_ERR_INVALID);
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_reload_full),
    UNIT_TEST(test_reload_defaults_and_strings),
    UNIT_TEST(test_reload_rejects),
    UNIT_TEST(test_list_and_dump),
    UNIT_TEST(test_engine_urls),
    UNIT_TEST(test_engine_messages),
    {0},
};
