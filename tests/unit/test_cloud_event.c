/* Qlik Cloud events: signature check and envelope parser (bridge/model/cloud_event.c). */
#include <stdio.h>
#include <string.h>

#include "bridge/model/cloud_event.h"
#include "tests/unit/unit.h"

/* HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), RFC 4231 style
 * well-known vector. */
static const char FOX[] = "The quick brown fox jumps over the lazy dog";
static const char FOX_MAC[] = "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8";

static void test_signature_matches_the_known_vector(void)
{
    UNIT_CHECK(cloud_signature_matches("key", FOX, strlen(FOX), FOX_MAC));
    char upper[sizeof FOX_MAC];
    for (size_t i = 0; i < sizeof FOX_MAC; i++)
        upper[i] = (char)(FOX_MAC[i] >= 'a' && FOX_MAC[i] <= 'f' ? FOX_MAC[i] - 32 : FOX_MAC[i]);
    UNIT_CHECK(cloud_signature_matches("key", FOX, strlen(FOX), upper));
}

static void test_signature_refuses_anything_else(void)
{
    char wrong[sizeof FOX_MAC];
    memcpy(wrong, FOX_MAC, sizeof FOX_MAC);
    wrong[10] = wrong[10] == '0' ? '1' : '0';
    UNIT_CHECK(!cloud_signature_matches("key", FOX, strlen(FOX), wrong));
    UNIT_CHECK(!cloud_signature_matches("other", FOX, strlen(FOX), FOX_MAC));
    UNIT_CHECK(!cloud_signature_matches("key", FOX, strlen(FOX) - 1, FOX_MAC));
    UNIT_CHECK(!cloud_signature_matches("key", FOX, strlen(FOX), NULL));
    UNIT_CHECK(!cloud_signature_matches("", FOX, strlen(FOX), FOX_MAC));
    UNIT_CHECK(!cloud_signature_matches("key", FOX, strlen(FOX), "sha256=f7bc83f4"));
    char prefixed[80];
    snprintf(prefixed, sizeof prefixed, "sha256=%s", FOX_MAC);
    UNIT_CHECK(!cloud_signature_matches("key", FOX, strlen(FOX), prefixed));
    char bad_hex[sizeof FOX_MAC];
    memcpy(bad_hex, FOX_MAC, sizeof FOX_MAC);
    bad_hex[0] = 'g';
    UNIT_CHECK(!cloud_signature_matches("key", FOX, strlen(FOX), bad_hex));
}

static const char LEGACY[] =
    "{\"cloudEventsVersion\":\"0.1\",\"eventId\":\"e-1\",\"eventTime\":\"2026-01-01T00:00:00Z\","
    "\"eventType\":\"com.qlik.v1.app.reload.finished\",\"extensions\":{\"tenantId\":\"t-1\","
    "\"userId\":\"u-1\",\"ownerId\":\"o-1\",\"spaceId\":\"s-1\",\"topLevelResourceId\":\"app-1\"},"
    "\"data\":{\"status\":\"error\",\"reloadId\":\"0123456789abcdef01234567\",\"name\":\"Sales\","
    "\"duration\":1500,\"endTime\":\"2026-01-01T00:00:01Z\",\"errors\":[\"bad field\","
    "{\"message\":\"second\"},{\"code\":7}]}}";

static const char CLOUDEVENTS[] =
    "{\"specversion\":\"1.0\",\"id\":\"e-2\",\"time\":\"t\",\"type\":"
    "\"com.qlik.v1.reload.finished\",\"tenantid\":\"t-1\",\"toplevelresourceid\":\"app-2\","
    "\"data\":{\"id\":\"r-2\",\"appId\":\"app-2\",\"userId\":\"u-2\",\"succeeded\":false,"
    "\"status\":\"CANCELED\",\"errorMessage\":\"stopped\",\"startTime\":\"s\","
    "\"durationSeconds\":3}}";

static void test_legacy_app_reload(void)
{
    struct cloud_event event;
    UNIT_CHECK(cloud_event_parse(LEGACY, strlen(LEGACY), &event, NULL) == CLOUD_PARSE_OK);
    UNIT_CHECK(event.envelope == CLOUD_ENVELOPE_LEGACY);
    UNIT_CHECK(event.kind == CLOUD_EVENT_APP_RELOAD_FINISHED);
    UNIT_CHECK_STR(event.event_id, "e-1");
    UNIT_CHECK_STR(event.tenant_id, "t-1");
    UNIT_CHECK_STR(event.app_id, "app-1");
    UNIT_CHECK_STR(event.reload_id, "0123456789abcdef01234567");
    UNIT_CHECK_STR(event.owner_id, "o-1");
    UNIT_CHECK(event.failed && event.duration_ms == 1500);
    UNIT_CHECK(event.error_count == 3);
    UNIT_CHECK_STR(event.errors[0], "bad field");
    UNIT_CHECK_STR(event.errors[1], "second");
    UNIT_CHECK_STR(event.errors[2], "{\"code\":7}");
}

static void test_cloudevents_reload_finished(void)
{
    struct cloud_event event;
    UNIT_CHECK(cloud_event_parse(CLOUDEVENTS, strlen(CLOUDEVENTS), &event, NULL) == CLOUD_PARSE_OK);
    UNIT_CHECK(event.envelope == CLOUD_ENVELOPE_CLOUDEVENTS);
    UNIT_CHECK(event.kind == CLOUD_EVENT_RELOAD_FINISHED);
    UNIT_CHECK_STR(event.reload_id, "r-2");
    UNIT_CHECK_STR(event.app_id, "app-2");
    UNIT_CHECK(event.failed && event.duration_ms == 3000);
    UNIT_CHECK(event.error_count == 1);
    UNIT_CHECK_STR(event.errors[0], "stopped");
}

static void test_hybrid_is_recognised(void)
{
    static const char hybrid[] =
        "{\"cloudEventsVersion\":\"0.1\",\"eventType\":\"com.qlik.v1.app.reload.finished\","
        "\"specversion\":\"1.0\",\"id\":\"e-3\",\"type\":\"com.qlik.v1.app.reload.finished\","
        "\"tenantid\":\"t-1\",\"extensions\":{\"topLevelResourceId\":\"app-3\"},"
        "\"data\":{\"status\":\"ok\",\"reloadId\":\"r-3\"}}";
    struct cloud_event event;
    UNIT_CHECK(cloud_event_parse(hybrid, strlen(hybrid), &event, NULL) == CLOUD_PARSE_OK);
    UNIT_CHECK(event.envelope == CLOUD_ENVELOPE_HYBRID);
    UNIT_CHECK(!event.failed);
    UNIT_CHECK_STR(event.app_id, "app-3");
}

static void test_bad_bodies(void)
{
    struct cloud_event event;
    const char *reason = NULL;
    UNIT_CHECK(cloud_event_parse("{", 1, &event, &reason) == CLOUD_PARSE_NOT_JSON && reason);
    UNIT_CHECK(cloud_event_parse("[1]", 3, &event, NULL) == CLOUD_PARSE_WRONG_SHAPE);
    static const char *const shapes[] = {
        "{}",
        "{\"id\":\"e\",\"type\":\"com.qlik.v1.app.reload.finished\",\"tenantid\":\"t\"}",
        "{\"id\":\"e\",\"type\":\"com.qlik.v1.app.reload.finished\",\"tenantid\":\"t\","
        "\"toplevelresourceid\":\"a/b\",\"data\":{\"status\":\"ok\",\"reloadId\":\"r\"}}",
        "{\"id\":\"e\",\"type\":\"com.qlik.v1.app.reload.finished\",\"tenantid\":\"t\","
        "\"toplevelresourceid\":\"a\",\"data\":{\"status\":\"weird\",\"reloadId\":\"r\"}}",
        "{\"id\":\"e\",\"type\":\"com.qlik.v1.app.reload.finished\",\"tenantid\":\"t\","
        "\"toplevelresourceid\":\"a\",\"data\":{\"status\":\"ok\"}}",
        "{\"id\":7,\"type\":\"com.qlik.v1.app.reload.finished\",\"tenantid\":\"t\"}",
        "{\"id\":\"e\",\"type\":\"x\",\"tenantid\":\"t\",\"extensions\":5}",
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        UNIT_CHECK(cloud_event_parse(shapes[i], strlen(shapes[i]), &event, NULL) ==
                   CLOUD_PARSE_WRONG_SHAPE);
    static const char other[] = "{\"id\":\"e\",\"type\":\"com.qlik.v1.app.created\","
                                "\"tenantid\":\"t\"}";
    UNIT_CHECK(cloud_event_parse(other, strlen(other), &event, NULL) == CLOUD_PARSE_OK);
    UNIT_CHECK(event.kind == CLOUD_EVENT_OTHER);
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_signature_matches_the_known_vector),
    UNIT_TEST(test_signature_refuses_anything_else),
    UNIT_TEST(test_legacy_app_reload),
    UNIT_TEST(test_cloudevents_reload_finished),
    UNIT_TEST(test_hybrid_is_recognised),
    UNIT_TEST(test_bad_bodies),
    {0},
};
