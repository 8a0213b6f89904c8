/* Unit tests for InfluxDB routes: the point of a message (templates, static
 * tags, auto types, the time) and the Node.js Butler's measurements. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "topics/route_influxdb.h"
#include "topics/route_influxdb_node.h"
#include "unit.h"

static const char config_text[] = "mqtt: {topic_root: butler}\n"
                                  "influxdb:\n"
                                  "  url: http://127.0.0.1:8086\n"
                                  "  node_measurements: true\n"
                                  "  tags: {site: north}\n"
                                  "routes:\n"
                                  "  - name: r\n"
                                  "    match: butler/events/task/#\n"
                                  "    to: influxdb\n"
                                  "    measurement: 'task_{{type}}'\n"
                                  "    tags: {host: '{{host}}', app: '{{appName}}'}\n"
                                  "    fields: {rows: '{{rows}}', ok: '{{ok}}', msg: '{{message}}',"
                                  " none: '{{missing}}'}\n";

static bool load(struct butler_config *config)
{
    char *errors = NULL;
    size_t length = 0;
    FILE *stream = open_memstream(&errors, &length);
    enum butler_status status =
        config_load_buffer("t.yaml", config_text, strlen(config_text), false, config, stream);
    fclose(stream);
    if (status != BUTLER_OK)
        fprintf(stderr, "%s", errors);
    free(errors);
    return status == BUTLER_OK;
}

static void test_point_from_templates(void)
{
    struct butler_config config;
    UNIT_CHECK(load(&config));
    const char *payload = "{\"type\":\"failed\",\"host\":\"node 1\",\"appName\":\"\",\"rows\":12,"
                          "\"ok\":false,\"message\":\"a \\\"b\\\"\",\"receivedAt\":"
                          "\"2024-05-01T00:30:11.140Z\"}";
    cJSON *event = cJSON_Parse(payload);
    struct line_protocol lp;
    char error[256] = "";
    lp_init(&lp, 4096);
    UNIT_CHECK(route_influxdb_point(&config.routes.items[0], &config.influxdb.tags, event, payload,
                                    strlen(payload), 5, 7, &lp, error, sizeof error) == BUTLER_OK);
    /* An empty tag is left out, an empty field skipped; the message's time
     * (receivedAt) in ns plus the sequence number. */
    UNIT_CHECK_STR(lp.data, "task_failed,host=node\\ 1,site=north rows=12,ok=false,"
                            "msg=\"a \\\"b\\\"\" 1714523411140000007\n");
    lp_free(&lp);
    cJSON_Delete(event);

    /* No JSON: measurement renders "task_", every field empty: refused, with a reason. */
    lp_init(&lp, 4096);
    UNIT_CHECK(route_influxdb_point(&config.routes.items[0], NULL, NULL, "x", 1, 5, 0, &lp, error,
                                    sizeof error) == BUTLER_ERR_INVALID);
    UNIT_CHECK(strstr(error, "no field rendered a value") != NULL);
    UNIT_CHECK(lp.used == 0);
    lp_free(&lp);
    config_free(&config);
}

static void test_time(void)
{
    cJSON *event = cJSON_Parse("{\"logTimestamp\":\"not a time\",\"at\":\"2024-01-01T00:00:00Z\"}");
    UNIT_CHECK(route_influxdb_time_ns(event, 99, 1000001) == 1704067200000000001LL);
    UNIT_CHECK(route_influxdb_time_ns(NULL, 99, 3) == 99000003LL);
    cJSON_Delete(event);
}

static void test_node_measurements(void)
{
    struct butler_config config;
    UNIT_CHECK(load(&config));
    struct line_protocol lp;
    uint64_t sequence = 0;
    lp_init(&lp, 1 << 16);
    cJSON *event = cJSON_Parse(
        "{\"type\":\"failed\",\"host\":\"sense1\",\"taskName\":\"Reload "
        "Sales\",\"appName\":\"Sales\","
        "\"user\":\"INTERNAL\\\\sa_scheduler\",\"taskId\":\"t1\",\"appId\":\"a1\",\"logTimestamp\":"
        "\"2024-05-01 02:30:11,123\",\"level\":\"ERROR\",\"executionId\":\"e1\",\"message\":"
        "\"Reload failed\",\"receivedAt\":\"2024-05-01T00:30:11.140Z\",\"qrs\":{\"taskTags\":"
        "[\"nightly\"],\"appTags\":[],\"executionStatus\":\"FinishedFail\",\"scriptLogTail\":"
        "\"line 1\\nError\"}}");
    UNIT_CHECK(route_influxdb_node_wanted(&config, "butler/events/task/failed/t1"));
    UNIT_CHECK(!route_influxdb_node_wanted(&config, "butler/events/task/aborted/t1"));
    UNIT_CHECK(route_influxdb_node_points(&config, "butler/events/task/failed/t1", event, 0,
                                          &sequence, &lp) == 1);
    UNIT_CHECK_STR(lp.data, "reload_task_failed,host=sense1,user=INTERNAL\\sa_scheduler,task_id=t1,"
                            "task_name=Reload\\ Sales,app_id=a1,app_name=Sales,log_level=ERROR,"
                            "task_exeuctionStatusText=FinishedFail,taskTag_nightly=true,site=north "
                            "log_timestamp=\"2024-05-01 02:30:11,123\",execution_id=\"e1\","
                            "log_message=\"Reload failed\",scriptLog=\"line 1\nError\" "
                            "1714523411140000000\n");
    cJSON_Delete(event);

    lp_reset(&lp);
    event = cJSON_Parse("{\"professional\":{\"allocated\":10,\"available\":2,\"excess\":0,"
                        "\"quarantined\":1,\"total\":13,\"used\":8},\"analyzer_time\":"
                        "{\"allocatedMinutes\":600,\"usedMinutes\":20,\"unavailableMinutes\":0}}");
    UNIT_CHECK(route_influxdb_node_points(&config, "butler/sense/license/access", event, 1,
                                          &sequence, &lp) == 2);
    UNIT_CHECK(strstr(lp.data, "qlik_sense_license,license_type=professional,site=north "
                               "allocated=10i,available=2i,excess=0i,quarantined=1i,total=13i,"
                               "used=8i ") == lp.data);
    UNIT_CHECK(strstr(lp.data,
                      "\nqlik_sense_license,license_type=analyzer_capacity,site=north "
                      "allocated_minutes=600i,unavailable_minutes=0i,used_minutes=20i ") != NULL);
    cJSON_Delete(event);

    lp_reset(&lp);
    event = cJSON_Parse("{\"expired\":false,\"expiresAt\":\"2027-01-01\",\"daysLeft\":25}");
    UNIT_CHECK(route_influxdb_node_points(&config, "butler/sense/license/server", event, 1,
                                          &sequence, &lp) == 1);
    UNIT_CHECK(strncmp(lp.data,
                       "qlik_sense_server_license,site=north license_expired=false,"
                       "expiry_date=\"2027-01-01\",days_until_expiry=25i ",
                       strlen("qlik_sense_server_license,site=north license_expired=false,"
                              "expiry_date=\"2027-01-01\",days_until_expiry=25i ")) == 0);
    cJSON_Delete(event);

    lp_reset(&lp);
    event = cJSON_Parse("{\"userDirectory\":\"CORP\",\"userId\":\"anna\",\"licenseId\":\"l1\","
                        "\"daysSinceLastUse\":40,\"dryRun\":false}");
    UNIT_CHECK(route_influxdb_node_points(&config, "butler/events/license/released/analyzer", event,
                                          1, &sequence, &lp) == 1);
    UNIT_CHECK(strncmp(lp.data,
                       "qlik_sense_license_release,license_type=analyzer,user=CORP\\anna,"
                       "site=north days_since_last_use=40i ",
                       60) == 0);
    cJSON_Delete(event);

    lp_reset(&lp);
    UNIT_CHECK(route_influxdb_node_memory(&config, 2 * 1048576, 4 * 1048576, 0, 10 * 1048576, 5,
                                          &lp) == BUTLER_OK);
    UNIT_CHECK_STR(lp.data, "butler_memory_usage,version=" BUTLER_VERSION
                            ",site=north heap_used=2,heap_total=4,external=0,"
                            "process_memory=10 5\n");
    lp_free(&lp);
    config_free(&config);
}

static void test_line_length(void)
{
    const char lines[] = "m s=\"a\nb\" 1\nm x=1 2\n";
    size_t first = route_influxdb_line_length(lines, strlen(lines));
    UNIT_CHECK(first == strlen("m s=\"a\nb\" 1\n"));
    UNIT_CHECK(route_influxdb_line_length(lines + first, strlen(lines) - first) ==
               strlen("m x=1 2\n"));
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_point_from_templates),
    UNIT_TEST(test_time),
    UNIT_TEST(test_node_measurements),
    UNIT_TEST(test_line_length),
    {0},
};
