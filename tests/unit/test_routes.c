/* Unit tests for the pure parts of routes: default texts, rate-limit keys,
 * filter coverage and the e-mail message. */
#include <stdlib.h>
#include <string.h>

#include "topics/routes.h"
#include "unit.h"

static const char *failed_event =
    "{\"type\":\"failed\",\"host\":\"sense-node-01\",\"taskName\":\"Reload Sales\","
    "\"appName\":\"Sales\",\"user\":\"INTERNAL\\\\sa_scheduler\","
    "\"taskId\":\"5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91\","
    "\"appId\":\"a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34\",\"logTimestamp\":\"2026-03-14 "
    "02:16:07,482\",\"level\":\"ERROR\",\"executionId\":\"e\",\"message\":\"Max retries "
    "reached\",\"receivedAt\":\"2026-03-14T01:16:07.500Z\","
    "\"qrs\":{\"scriptLogTail\":\"line 1\\nline 2\"}}";

static char *default_text(const char *json, const char *qmc, const char *hub)
{
    cJSON *event = cJSON_Parse(json);
    char *out = NULL;
    UNIT_CHECK(route_default_text(event, "butler/events/task/failed/x", json, qmc, hub, &out) ==
               BUTLER_OK);
    cJSON_Delete(event);
    return out;
}

static void test_default_text_failed(void)
{
    char *text = default_text(failed_event, "https://s/qmc", "https://s/hub");
    UNIT_CHECK_STR(text, "Qlik Sense task failed: Reload Sales\n"
                         "App: Sales (a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34)\n"
                         "Task id: 5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91\n"
                         "Host: sense-node-01\n"
                         "Time: 2026-03-14 02:16:07,482\n"
                         "User: INTERNAL\\sa_scheduler\n"
                         "Log message: Max retries reached\n"
                         "Script log (last lines):\nline 1\nline 2\n"
                         "QMC: https://s/qmc\n"
                         "Hub: https://s/hub");
    free(text);
    text = default_text(failed_event, "", "");
    UNIT_CHECK(strstr(text, "QMC:") == NULL && strstr(text, "Hub:") == NULL);
    free(text);
}

static void test_default_text_types(void)
{
    static const struct {
        const char *type, *headline;
    } cases[] = {
        {"aborted", "Qlik Sense task aborted: T"},
        {"success", "Qlik Sense task succeeded: T"},
        {"distribute", "Qlik Sense distribute task finished: T"},
    };
    for (size_t i = 0; i < 3; i++) {
        char json[200];
        snprintf(json, sizeof json, "{\"type\":\"%s\",\"taskName\":\"T\",\"host\":\"h\"}",
                 cases[i].type);
        char *text = default_text(json, NULL, NULL);
        UNIT_CHECK(strncmp(text, cases[i].headline, strlen(cases[i].headline)) == 0);
        UNIT_CHECK(strstr(text, "App:") == NULL); /* empty fields are left out */
        free(text);
    }
    char *text = default_text("{\"type\":\"engine-reload-failed\",\"appId\":\"a\",\"host\":\"h\","
                              "\"message\":\"boom\"}",
                              NULL, NULL);
    UNIT_CHECK_STR(text, "Qlik Sense engine reload failed\nApp: a\nHost: h\nLog message: boom");
    free(text);
    text = default_text("{\"hello\":1}", NULL, NULL);
    UNIT_CHECK_STR(text, "Message on butler/events/task/failed/x:\n{\"hello\":1}");
    free(text);
    char *out = NULL;
    UNIT_CHECK(route_default_text(NULL, "t/x", "plain", NULL, NULL, &out) == BUTLER_OK);
    UNIT_CHECK_STR(out, "Message on t/x:\nplain");
    free(out);
}

static void test_rate_key(void)
{
    struct config_route route = {.name = "r1", .rate_limit_key = "{{taskId}}"};
    cJSON *event = cJSON_Parse(failed_event);
    char *key = NULL;
    UNIT_CHECK(route_rate_key(&route, event, failed_event, strlen(failed_event), &key) ==
               BUTLER_OK);
    UNIT_CHECK_STR(key, "r1\x1f"
                        "5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91");
    free(key);
    route.rate_limit_key = "";
    UNIT_CHECK(route_rate_key(&route, event, failed_event, strlen(failed_event), &key) ==
               BUTLER_OK);
    UNIT_CHECK_STR(key, "r1\x1f");
    free(key);
    route.rate_limit_key = "{{payload}}{{payload}}{{payload}}";
    UNIT_CHECK(route_rate_key(&route, event, failed_event, strlen(failed_event), &key) ==
               BUTLER_OK);
    UNIT_CHECK(strlen(key) <= ROUTE_KEY_MAX);
    free(key);
    cJSON_Delete(event);
}

static void test_filter_covers(void)
{
    UNIT_CHECK(route_filter_covers("butler/events/#", "butler/events/task/failed/#"));
    UNIT_CHECK(route_filter_covers("butler/events/task/+/#", "butler/events/task/failed/#"));
    UNIT_CHECK(route_filter_covers("butler/#", "butler"));
    UNIT_CHECK(route_filter_covers("a/+/c", "a/b/c"));
    UNIT_CHECK(!route_filter_covers("butler/events/task/failed/#", "butler/events/#"));
    UNIT_CHECK(!route_filter_covers("a/+", "a/#"));
    UNIT_CHECK(!route_filter_covers("a/b", "a/+"));
    UNIT_CHECK(!route_filter_covers("a/b", "a/b/c"));
    UNIT_CHECK(route_filter_covers("a/b", "a/b"));
}

static void test_filters_overlap_and_join(void)
{
    char joined[ROUTE_FILTER_MAX];
    UNIT_CHECK(route_filters_overlap("butler/events/task/failed/#", "butler/events/task/+/+"));
    UNIT_CHECK(route_filters_overlap("a/+/c", "a/b/+"));
    UNIT_CHECK(route_filters_overlap("a/#", "a"));
    UNIT_CHECK(route_filters_overlap("a", "a/#"));
    UNIT_CHECK(!route_filters_overlap("a/b", "a/b/c"));
    UNIT_CHECK(!route_filters_overlap("a/+/c", "a/b/d"));
    UNIT_CHECK(!route_filters_overlap("a/+", "b/+"));
    UNIT_CHECK(route_filter_join("butler/events/task/failed/#", "butler/events/task/+/+", joined,
                                 sizeof joined) == BUTLER_OK);
    UNIT_CHECK_STR(joined, "butler/events/task/+/#");
    UNIT_CHECK(route_filter_join("a/+/c", "a/b/+", joined, sizeof joined) == BUTLER_OK);
    UNIT_CHECK_STR(joined, "a/+/+");
    UNIT_CHECK(route_filter_join("a", "a/#", joined, sizeof joined) == BUTLER_OK);
    UNIT_CHECK_STR(joined, "a/#");
    UNIT_CHECK(route_filter_join("a/b/c", "a/b/c", joined, sizeof joined) == BUTLER_OK);
    UNIT_CHECK_STR(joined, "a/b/c");
    UNIT_CHECK(route_filter_join("abc/d", "abc/e", joined, 5) == BUTLER_ERR_TOO_LARGE);
    /* Whatever the join, both filters are covered by it. */
    UNIT_CHECK(route_filter_join("x/+/y/#", "x/q/+", joined, sizeof joined) == BUTLER_OK);
    UNIT_CHECK(route_filter_covers(joined, "x/+/y/#") && route_filter_covers(joined, "x/q/+"));
}

static bool refuse_under_cmd(const char *joined, const char *a, const char *b, void *context)
{
    (void)a, (void)b;
    (*(int *)context)++;
    return route_filters_overlap(joined, "cmd/start");
}

static void test_subscription_plan_has_no_overlap(void)
{
    const char *filters[] = {"butler/events/task/failed/#",
                             "butler/events/task/+/+",
                             "butler/events/task/failed/#",
                             "other/x",
                             "other/+",
                             "a/+/c",
                             "a/b/+"};
    char *plan[8];
    size_t count = 0, unjoined = 0;
    int asked = 0;
    UNIT_CHECK(route_subscription_plan(filters, 7, refuse_under_cmd, &asked, plan, 8, &count,
                                       &unjoined) == BUTLER_OK);
    /* Every route filter is covered by exactly one planned filter. */
    for (size_t i = 0; i < 7; i++) {
        int covering = 0, overlapping = 0;
        for (size_t j = 0; j < count; j++) {
            covering += route_filter_covers(plan[j], filters[i]);
            overlapping += route_filters_overlap(plan[j], filters[i]);
        }
        UNIT_CHECK(covering == 1 && overlapping == 1);
    }
    for (size_t i = 0; i < count; i++)
        for (size_t j = i + 1; j < count; j++)
            UNIT_CHECK(!route_filters_overlap(plan[i], plan[j]));
    UNIT_CHECK(count == 3 && unjoined == 0 && asked > 0);
    for (size_t i = 0; i < count; i++)
        free(plan[i]);
    /* A refused join keeps both and says so. */
    const char *near_commands[] = {"cmd/+", "+/start"};
    UNIT_CHECK(route_subscription_plan(near_commands, 2, refuse_under_cmd, &asked, plan, 8, &count,
                                       &unjoined) == BUTLER_OK);
    UNIT_CHECK(count == 2 && unjoined == 1);
    for (size_t i = 0; i < count; i++)
        free(plan[i]);
    UNIT_CHECK(route_subscription_plan(filters, 7, NULL, NULL, plan, 6, &count, &unjoined) ==
               BUTLER_ERR_TOO_LARGE);
}

static void test_condition_one_rule(void)
{
    cJSON *event_shape = cJSON_Parse("[{\"name\":\"Department\",\"value\":\"HR\"},"
                                     "{\"name\":\"Env\",\"value\":\"Finance\"}]");
    cJSON *qrs_shape = cJSON_Parse("[{\"definition\":{\"name\":\"Department\"},\"value\":"
                                   "\"HR\"},{\"definition\":{\"name\":\"Env\"},\"value\":"
                                   "\"Finance\"}]");
    cJSON *shapes[] = {event_shape, qrs_shape};
    for (size_t i = 0; i < 2; i++) {
        UNIT_CHECK(route_condition_matches(shapes[i], "Department", "HR"));
        UNIT_CHECK(route_condition_matches(shapes[i], "department", "hr"));
        UNIT_CHECK(!route_condition_matches(shapes[i], "Department", "Finance")); /* pairing */
        UNIT_CHECK(!route_condition_matches(shapes[i], "Owner", "HR"));
        UNIT_CHECK(!route_condition_matches(shapes[i], "Department", NULL));
    }
    UNIT_CHECK(!route_condition_matches(NULL, "Department", "HR"));
    cJSON_Delete(event_shape);
    cJSON_Delete(qrs_shape);
}

static void test_email_no_header_injection(void)
{
    char *to_items[] = {"ops@example.com", "x@example.com"};
    struct config_string_list to = {to_items, 2};
    char *message = NULL;
    UNIT_CHECK(route_build_email("butler@example.com", &to, "Failed\r\nBcc: evil@example.com",
                                 "line 1\nline 2", 0, &message) == BUTLER_OK);
    UNIT_CHECK(strstr(message, "\r\nBcc:") == NULL);
    UNIT_CHECK(strstr(message, "Subject: FailedBcc: evil@example.com\r\n") != NULL);
    UNIT_CHECK(strstr(message, "To: ops@example.com, x@example.com\r\n") != NULL);
    UNIT_CHECK(strstr(message, "Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n") != NULL);
    UNIT_CHECK(strstr(message, "\r\n\r\nline 1\r\nline 2\r\n") != NULL);
    free(message);
}

static void test_default_text_cloud_reload(void)
{
    static const char cloud[] =
        "{\"tenant\":\"prod\",\"tenantId\":\"t-1\",\"appId\":\"app-1\",\"appName\":\"Sales\","
        "\"reloadId\":\"r-1\",\"status\":\"error\",\"durationMs\":65000,\"errors\":[\"bad field\"],"
        "\"owner\":{\"id\":\"u-1\",\"name\":\"Ann\",\"email\":\"ann@example.com\"},"
        "\"startTime\":\"s\",\"endTime\":\"e\",\"scriptLogTail\":\"a\\nb\"}";
    char *text = default_text(cloud, NULL, NULL);
    UNIT_CHECK_STR(text, "Qlik Cloud reload failed: Sales (tenant prod)\n"
                         "App id: app-1\n"
                         "Reload id: r-1\n"
                         "Started: s\n"
                         "Ended: e\n"
                         "Duration: 65.0 s\n"
                         "Owner: Ann <ann@example.com>\n"
                         "Error: bad field\n"
                         "Script log (last lines):\na\nb");
    free(text);
}

static void test_condition_tag(void)
{
    cJSON *cloud = cJSON_Parse("{\"appTags\":[\"butler-alert\",\"x\"]}");
    cJSON *sense = cJSON_Parse("{\"qrs\":{\"taskTags\":[\"t1\"],\"appTags\":[{\"name\":\"a1\"}]}}");
    UNIT_CHECK(route_condition_tag_matches(cloud, "butler-alert"));
    UNIT_CHECK(!route_condition_tag_matches(cloud, "Butler-Alert"));
    UNIT_CHECK(!route_condition_tag_matches(cloud, "butler"));
    UNIT_CHECK(route_condition_tag_matches(sense, "t1"));
    UNIT_CHECK(route_condition_tag_matches(sense, "a1"));
    UNIT_CHECK(!route_condition_tag_matches(sense, "butler-alert"));
    cJSON_Delete(cloud);
    cJSON_Delete(sense);
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_default_text_cloud_reload),
    UNIT_TEST(test_condition_tag),
    UNIT_TEST(test_default_text_failed),
    UNIT_TEST(test_default_text_types),
    UNIT_TEST(test_rate_key),
    UNIT_TEST(test_filter_covers),
    UNIT_TEST(test_filters_overlap_and_join),
    UNIT_TEST(test_subscription_plan_has_no_overlap),
    UNIT_TEST(test_email_no_header_injection),
    UNIT_TEST(test_condition_one_rule),
    {0},
};
