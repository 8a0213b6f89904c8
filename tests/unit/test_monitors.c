/* Unit tests for the pure parts of the Sense monitors: the "Valid To:" line of
 * the server licence, days left, and the licence-release never_release rules. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/core/clock.h"
#include "config/config.h"
#include "topics/license_release.h"
#include "topics/sense_monitors.h"
#include "unit.h"

static void test_valid_to_line(void)
{
    char date[11];
    uint64_t until = 0, day_start = 0;
    UNIT_CHECK(sense_license_valid_to("Serial: 1\nValid From: 2024-07-01\nValid To: 2027-06-30\n"
                                      "Professional: yes",
                                      date, &until));
    UNIT_CHECK_STR(date, "2027-06-30");
    UNIT_CHECK(clock_parse_iso8601("2027-07-01T00:00:00.000Z", &day_start));
    UNIT_CHECK(until == day_start);
    /* Indented, CRLF, a time after the date: the date counts. */
    UNIT_CHECK(sense_license_valid_to("  Valid To:   2026-01-31T12:00:00\r\n", date, &until));
    UNIT_CHECK_STR(date, "2026-01-31");
    UNIT_CHECK(!sense_license_valid_to("Valid From: 2024-07-01\n", date, &until));
    UNIT_CHECK(!sense_license_valid_to("Valid To: soon\n", date, &until));
    UNIT_CHECK(!sense_license_valid_to("Valid To: 2026-1", date, &until));
    UNIT_CHECK(!sense_license_valid_to("", date, &until));
}

static void test_days_left(void)
{
    const uint64_t day = 86400000;
    UNIT_CHECK(sense_license_days_left(10 * day, 0) == 10);
    UNIT_CHECK(sense_license_days_left(10 * day, 9 * day + 1) == 0); /* the last day */
    UNIT_CHECK(sense_license_days_left(10 * day, 10 * day) == -1);   /* expired */
    UNIT_CHECK(sense_license_days_left(10 * day, 12 * day + 5) == -3);
}

static struct butler_config load(const char *yaml)
{
    struct butler_config config;
    UNIT_CHECK(config_load_buffer("test.yaml", yaml, strlen(yaml), false, &config, stderr) ==
               BUTLER_OK);
    return config;
}

static const char *reason_for(const struct butler_config *config, const char *user_json)
{
    static char reason[256];
    cJSON *user = cJSON_Parse(user_json);
    UNIT_CHECK(user != NULL);
    bool kept = license_release_keep_reason(config, user, reason, sizeof reason);
    cJSON_Delete(user);
    return kept ? reason : "release";
}

static void test_never_release_rules(void)
{
    struct butler_config config =
        load("qrs: {url: \"https://q:4242\"}\n"
             "license:\n  release:\n    never_release:\n"
             "      users: [{user_directory: CORP, user_id: svc}]\n"
             "      user_directories: [partner]\n      tags: [Keep]\n"
             "      custom_properties: [{name: LicenseKeep, value: \"Yes\"}]\n"
             "      inactive: yes\n      blocked: no\n");
    UNIT_CHECK_STR(reason_for(&config, "{\"userDirectory\":\"corp\",\"userId\":\"SVC\"}"),
                   "never_release.users");
    UNIT_CHECK_STR(reason_for(&config, "{\"userDirectory\":\"PARTNER\",\"userId\":\"x\","
                                       "\"blacklisted\":true}"),
                   "never_release.user_directories: PARTNER");
    UNIT_CHECK_STR(reason_for(&config, "{\"userDirectory\":\"CORP\",\"userId\":\"a\","
                                       "\"blacklisted\":true,\"tags\":[{\"name\":\"keep\"}]}"),
                   "never_release.tags: keep");
    UNIT_CHECK_STR(reason_for(&config,
                              "{\"userDirectory\":\"CORP\",\"userId\":\"a\",\"blacklisted\":true,"
                              "\"customProperties\":[{\"value\":\"No\",\"definition\":{\"name\":"
                              "\"LicenseKeep\"}},{\"value\":\"Yes\",\"definition\":{\"name\":"
                              "\"LicenseKeep\"}}]}"),
                   "never_release.custom_properties: LicenseKeep=Yes");
    UNIT_CHECK_STR(reason_for(&config, "{\"userDirectory\":\"CORP\",\"userId\":\"a\","
                                       "\"inactive\":true,\"blacklisted\":true}"),
                   "never_release.inactive: yes");
    /* blocked: no keeps users that are not blocked. */
    UNIT_CHECK_STR(reason_for(&config, "{\"userDirectory\":\"CORP\",\"userId\":\"a\"}"),
                   "never_release.blocked: no");
    UNIT_CHECK_STR(reason_for(&config, "{\"userDirectory\":\"CORP\",\"userId\":\"a\","
                                       "\"blacklisted\":true,\"removedExternally\":true}"),
                   "release");
    config_free(&config);
}

static void test_defaults_release_everyone_in_dry_run(void)
{
    struct butler_config config = load("");
    UNIT_CHECK(config.license.release.dry_run);
    UNIT_CHECK(!config.license.release.enable && !config.license.monitor.enable);
    UNIT_CHECK(!config.heartbeat.enable && !config.sense.version.enable);
    UNIT_CHECK_STR(reason_for(&config, "{\"userDirectory\":\"CORP\",\"userId\":\"a\","
                                       "\"inactive\":true,\"blacklisted\":true}"),
                   "release");
    config_free(&config);
}

static void test_monitor_config_checks(void)
{
    static const char *const bad[] = {
        "license: {monitor: {enable: true}}\n", /* needs qrs.url */
        "license: {release: {enable: true}}\n",
        "sense: {version: {enable: true}}\n",
        "heartbeat: {enable: true}\n", /* needs a URL */
        "heartbeat: {url: \"ftp://x\"}\n",
        "heartbeat: {method: PUT}\n",
        "license: {monitor: {interval_s: 0}}\n",
        "license: {release: {never_release: {inactive: maybe}}}\n",
        "license: {release: {never_release: {users: [{user_id: a}]}}}\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct butler_config config;
        FILE *sink = fopen("/dev/null", "w");
        UNIT_CHECK(config_load_buffer("t.yaml", bad[i], strlen(bad[i]), false, &config, sink) ==
                   BUTLER_ERR_INVALID);
        fclose(sink);
    }
}

static void test_route_headers(void)
{
    struct butler_config config =
        load("routes:\n  - {name: r, match: a/#, to: webhook, webhook_url: \"https://x/y\",\n"
             "     headers: {Api-Key: k1, Content-Type: \"text/plain\"}}\n");
    UNIT_CHECK(config.routes.count == 1 && config.routes.items[0].headers.count == 2);
    UNIT_CHECK_STR(config.routes.items[0].headers.items[0].name, "Api-Key");
    UNIT_CHECK_STR(config.routes.items[0].headers.items[0].value, "k1");
    config_free(&config);
    static const char *const bad[] = {
        "routes: [{name: r, match: a, to: webhook, webhook_url: \"https://x\", headers: [a]}]\n",
        "routes: [{name: r, match: a, to: webhook, webhook_url: \"https://x\", "
        "headers: {\"A B\": x}}]\n",
        "routes: [{name: r, match: a, to: webhook, webhook_url: \"https://x\", "
        "headers: {A: x, a: y}}]\n",
        "routes: [{name: r, match: a, to: webhook, webhook_url: \"https://x\", "
        "headers: {A: \"x\\r\\nB: y\"}}]\n",
        "newrelic: {accounts: [{name: a, account_id: \"12x\", api_key: k}]}\n",
        "newrelic: {accounts: [{name: a, account_id: \"12\"}]}\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct butler_config refused;
        FILE *sink = fopen("/dev/null", "w");
        UNIT_CHECK(config_load_buffer("t.yaml", bad[i], strlen(bad[i]), false, &refused, sink) ==
                   BUTLER_ERR_INVALID);
        fclose(sink);
    }
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_route_headers),
    UNIT_TEST(test_valid_to_line),
    UNIT_TEST(test_days_left),
    UNIT_TEST(test_never_release_rules),
    UNIT_TEST(test_defaults_release_everyone_in_dry_run),
    UNIT_TEST(test_monitor_config_checks),
    {0},
};
