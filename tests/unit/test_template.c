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

static char *render_for(const char *text, enum template_body body, const char *json)
{
    struct template_options options = {.body = body};
    cJSON *message = cJSON_Parse(json);
    char *out = NULL;
    UNIT_CHECK(template_render_for(text, &options, message, json, strlen(json), TEMPLATE_OUTPUT_MAX,
                                   &out, NULL) == BUTLER_OK);
    cJSON_Delete(message);
    return out;
}

static void check_for(const char *text, enum template_body body, const char *json,
                      const char *expected)
{
    char *out = render_for(text, body, json);
    UNIT_CHECK_STR(out, expected);
    free(out);
}

static const char *hostile =
    "{\"taskName\":\"x\\\", \\\"severity\\\": \\\"critical\\\", "
    "\\\"z\\\": \\\"\",\"n\":3,\"tags\":[\"a\"],\"ok\":true,"
    "\"ctl\":\"a\\u0001\\n\\\\b\",\"slack\":\"<!channel> & <http://e|x>\"}";

static void test_json_body_escapes_values(void)
{
    /* Inside a string: the value cannot close it. */
    char *out = render_for("{\"task\": \"{{taskName}}\", \"severity\": \"low\"}",
                           TEMPLATE_BODY_JSON, hostile);
    cJSON *parsed = cJSON_Parse(out);
    UNIT_CHECK(parsed != NULL);
    UNIT_CHECK_STR(cJSON_GetObjectItem(parsed, "severity")->valuestring, "low");
    UNIT_CHECK_STR(cJSON_GetObjectItem(parsed, "task")->valuestring,
                   "x\", \"severity\": \"critical\", \"z\": \"");
    UNIT_CHECK(cJSON_GetObjectItem(parsed, "z") == NULL);
    cJSON_Delete(parsed);
    free(out);
    check_for("\"{{ctl}}\"", TEMPLATE_BODY_JSON, hostile, "\"a\\u0001\\n\\\\b\"");
    /* Outside a string: whole JSON values. */
    check_for("{\"t\": {{taskName}}, \"n\": {{n}}, \"tags\": {{tags}}, \"ok\": {{ok}}, "
              "\"m\": {{missing}}}",
              TEMPLATE_BODY_JSON, "{\"taskName\":\"a\\\"b\",\"n\":3,\"tags\":[\"a\"],\"ok\":true}",
              "{\"t\": \"a\\\"b\", \"n\": 3, \"tags\": [\"a\"], \"ok\": true, \"m\": null}");
    check_for("{\"all\": {{payload}}}", TEMPLATE_BODY_JSON, "{\"a\":1}", "{\"all\": {\"a\":1}}");
    check_for("{\"all\": \"{{payload}}\"}", TEMPLATE_BODY_JSON, "{\"a\":1}",
              "{\"all\": \"{\\\"a\\\":1}\"}");
    /* A quote escaped in the template's own text does not end its string. */
    check_for("\"a\\\"{{n}}\"", TEMPLATE_BODY_JSON, "{\"n\":\"q\\\"\"}", "\"a\\\"q\\\"\"");
    /* The raw form is inserted as it is. */
    check_for("{{raw:taskName}}", TEMPLATE_BODY_JSON, "{\"taskName\":\"a\\\"b\"}", "a\"b");
    check_for("{{ raw:payload }}", TEMPLATE_BODY_JSON, "{\"a\":1}", "{\"a\":1}");
    /* Plain bodies are unchanged. */
    check_for("{{taskName}}", TEMPLATE_BODY_PLAIN, "{\"taskName\":\"a\\\"<b>\"}", "a\"<b>");
}

static void test_looks_like_json(void)
{
    UNIT_CHECK(template_looks_like_json(" {\"a\": 1}"));
    UNIT_CHECK(template_looks_like_json("[{{a}}]"));
    UNIT_CHECK(!template_looks_like_json("{{taskName}} / {{user}}"));
    UNIT_CHECK(!template_looks_like_json("text"));
    UNIT_CHECK(!template_looks_like_json(""));
}

static void test_slack_body_escapes_markup(void)
{
    check_for("<!here> {{slack}}", TEMPLATE_BODY_SLACK, hostile,
              "<!here> &lt;!channel&gt; &amp; &lt;http://e|x&gt;");
    check_for("{{raw:slack}}", TEMPLATE_BODY_SLACK, hostile, "<!channel> & <http://e|x>");
    char *out = NULL;
    UNIT_CHECK(template_escape_text("a<b>&", TEMPLATE_BODY_SLACK, 100, &out) == BUTLER_OK);
    UNIT_CHECK_STR(out, "a&lt;b&gt;&amp;");
    free(out);
}

/* A caller's escaper (the InfluxDB line-protocol hook): spaces as "\ ". */
static void escape_spaces(const char *text, size_t length, template_emit_fn emit, void *sink)
{
    for (size_t i = 0; i < length; i++)
        emit(sink, text[i] == ' ' ? "\\ " : text + i, text[i] == ' ' ? 2 : 1);
}

static void test_custom_escaper(void)
{
    struct template_options options = {.escape = escape_spaces};
    cJSON *message = cJSON_Parse("{\"h\":\"a b\"}");
    char *out = NULL;
    UNIT_CHECK(template_render_for("m,host={{h}} x={{raw:h}}", &options, message, "", 0, 100, &out,
                                   NULL) == BUTLER_OK);
    UNIT_CHECK_STR(out, "m,host=a\\ b x=a b");
    free(out);
    cJSON_Delete(message);
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_json_body_escapes_values),
    UNIT_TEST(test_slack_body_escapes_markup),
    UNIT_TEST(test_custom_escaper),
    UNIT_TEST(test_looks_like_json),
    UNIT_TEST(test_fields),
    UNIT_TEST(test_malformed_templates),
    UNIT_TEST(test_bounded),
    {0},
};
