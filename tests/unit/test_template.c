/* Unit tests for route templates. */
#include <stdlib.h>
#include <string.h>

#include "topics/template.h"
#include "unit.h"

static char *render(const char *text, const char *json, size_t max)
{
    cJSON *message = json ? cJSON_Parse(json) : NULL;
    char *out = NULL;
    const char *payload = json ? json : "";
    UNIT_CHECK(template_render(text, message, payload, strlen(payload), max, &out, NULL) ==
               BUTLER_OK);
    cJSON_Delete(message);
    return out;
}

static void check(const char *text, const char *json, const char *expected)
{
    char *out = render(text, json, TEMPLATE_OUTPUT_MAX);
    UNIT_CHECK_STR(out, expected);
    free(out);
}

static void test_fields(void)
{
    const char *event = "{\"taskName\":\"Reload Sales\",\"appName\":\"Sales\",\"host\":\"n1\","
                        "\"qrs\":{\"taskTags\":[\"nightly\",\"finance\"],\"taskType\":0,"
                        "\"ok\":true,\"x\":null,\"f\":1.5}}";
    check("Reload of {{taskName}} ({{appName}}) failed on {{host}}", event,
          "Reload of Reload Sales (Sales) failed on n1");
    check("{{ qrs.taskTags.1 }}", event, "finance");
    check("{{qrs.taskTags}}", event, "[\"nightly\",\"finance\"]");
    check("{{qrs.taskType}}/{{qrs.ok}}/{{qrs.x}}/{{qrs.f}}", event, "0/true//1.5");
    check("[{{missing}}][{{qrs.missing.deep}}][{{taskName.x}}][{{qrs.taskTags.9}}]", event,
          "[][][][]");
    check("{{payload}}", "{\"a\":1}", "{\"a\":1}");
    check("no placeholders", event, "no placeholders");
    check("", event, "");
}

static void test_malformed_templates(void)
{
    check("open {{taskName", "{\"taskName\":\"t\"}", "open {{taskName");
    check("{{}}x", "{\"taskName\":\"t\"}", "x");
    check("}}{{taskName}}{{", "{\"taskName\":\"t\"}", "}}t{{");
    check("{{a}}", NULL, "");
    check("{{a}}", "[1,2]", "");
    check("{{0}}", "[\"first\"]", "first");
}

static void test_bounded(void)
{
    char *out = render("abcdefghij{{payload}}", "{\"a\":\"0123456789\"}", 8);
    UNIT_CHECK_STR(out, "abcdefgh");
    free(out);
    /* Never split a UTF-8 character: a-umlaut is 2 bytes at offset 3..4. */
    out = render("abc\xC3\xA4z", NULL, 4);
    UNIT_CHECK_STR(out, "abc");
    free(out);
    bool truncated = false;
    char *text = NULL;
    UNIT_CHECK(template_render("{{payload}}{{payload}}", NULL, "xyz", 3, 4, &text, &truncated) ==
               BUTLER_OK);
    UNIT_CHECK_STR(text, "xyzx");
    UNIT_CHECK(truncated);
    free(text);
    /* Path over TEMPLATE_PATH_MAX renders empty. */
    char long_template[600];
    memset(long_template, 'a', sizeof long_template);
    memcpy(long_template, "{{", 2);
    memcpy(long_template + 596, "}}", 2);
    long_template[598] = '\0';
    out = render(long_template, "{\"a\":1}", TEMPLATE_OUTPUT_MAX);
    UNIT_CHECK_STR(out, "");
    free(out);
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_fields),
    UNIT_TEST(test_malformed_templates),
    UNIT_TEST(test_bounded),
    {0},
};
