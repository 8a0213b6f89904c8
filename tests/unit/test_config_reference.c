/*
 * Unit tests for the generated configuration reference (config/reference.c):
 * every key of the table appears in every format, a key without a description
 * or a check without a text fails the generator (so docs/configuration.md
 * cannot silently lose a key), and markdown cells are escaped.
 */
#include "config/config_internal.h"
#include "tests/unit/unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Run the generator on `table` into a heap string (caller frees). */
static char *generate(enum config_reference_format format, const struct key_table *table,
                      enum butler_status *status)
{
    char *text = NULL;
    size_t length = 0;
    FILE *stream = open_memstream(&text, &length);
    UNIT_CHECK(stream != NULL);
    *status = config_reference_table(stream, format, table);
    fclose(stream);
    return text;
}

static void test_every_key_in_every_format(void)
{
    static const enum config_reference_format formats[] = {
        CONFIG_REFERENCE_MARKDOWN, CONFIG_REFERENCE_MAN, CONFIG_REFERENCE_TEXT};
    for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++) {
        enum butler_status status;
        char *text = generate(formats[f], &config_key_table, &status);
        UNIT_CHECK(status == BUTLER_OK);
        for (size_t k = 0; k < config_key_table.count; k++) {
            const struct key_def *key = &config_key_table.keys[k];
            UNIT_CHECK(key->doc != NULL && key->doc[0] != '\0');
            if (formats[f] == CONFIG_REFERENCE_MAN && strchr(key->path, '-'))
                continue; /* roff escapes '-'; no key has one today */
            UNIT_CHECK(strstr(text, key->path) != NULL);
        }
        free(text);
    }
}

static void test_markdown_rows(void)
{
    enum butler_status status;
    char *text = generate(CONFIG_REFERENCE_MARKDOWN, &config_key_table, &status);
    UNIT_CHECK(status == BUTLER_OK);
    UNIT_CHECK(strstr(text, "| `mqtt.port` | integer | 1..65535 | `1883` | MQTT broker port. |\n"));
    UNIT_CHECK(strstr(text, "| `log.format` | string | text \\| json | `text` |"));
    UNIT_CHECK(strstr(text, "| `mqtt.password` | string, secret |  | `\"\"` |"));
    UNIT_CHECK(strstr(text, "Also as `mqtt.password_file`."));
    UNIT_CHECK(strstr(text, "| `routes[].name` | string |"));
    UNIT_CHECK(strstr(text, "| required |"));
    UNIT_CHECK(strstr(text, "$share/&lt;group&gt;/"));                    /* not an HTML tag */
    UNIT_CHECK(strstr(text, "(e.g. `https://sense.example.com:4242`);")); /* not a link */
    free(text);
}

static const char *const two_names[] = {"a|b", "c", NULL};

struct small {
    int number;
    int choice;
};

static void test_missing_doc_fails(void)
{
    const struct key_def keys[] = {
        {.path = "one.number",
         .type = KEY_INT,
         .offset = offsetof(struct small, number),
         .min = 1,
         .max = 9,
         .def = "2",
         .doc = "Documented."},
        {.path = "one.choice",
         .type = KEY_ENUM,
         .offset = offsetof(struct small, choice),
         .names = two_names,
         .def = "c"},
    };
    const struct key_table table = {keys, 2};
    enum butler_status status;
    char *text = generate(CONFIG_REFERENCE_MARKDOWN, &table, &status);
    UNIT_CHECK(status == BUTLER_ERR_INVALID);
    UNIT_CHECK(strstr(text, "| `one.number` | integer | 1..9 | `2` | Documented. |"));
    UNIT_CHECK(strstr(text, "one.choice") == NULL);
    free(text);
}

/* A check without a text in keys.c is refused too. */
static const char *check_anything(const char *value)
{
    (void)value;
    return NULL;
}

static void test_undescribed_check_fails(void)
{
    const struct key_def keys[] = {
        {.path = "text", .type = KEY_STRING, .check = check_anything, .doc = "A string."},
    };
    const struct key_table table = {keys, 1};
    enum butler_status status;
    char *text = generate(CONFIG_REFERENCE_TEXT, &table, &status);
    UNIT_CHECK(status == BUTLER_ERR_INVALID);
    free(text);
}

static void test_format_names(void)
{
    enum config_reference_format format = CONFIG_REFERENCE_TEXT;
    UNIT_CHECK(config_reference_format_from_name("markdown", &format));
    UNIT_CHECK(format == CONFIG_REFERENCE_MARKDOWN);
    UNIT_CHECK(config_reference_format_from_name("man", &format));
    UNIT_CHECK(format == CONFIG_REFERENCE_MAN);
    UNIT_CHECK(!config_reference_format_from_name("html", &format));
    UNIT_CHECK(!config_reference_format_from_name(NULL, &format));
}

static void test_man_page_shape(void)
{
    enum butler_status status;
    char *text = generate(CONFIG_REFERENCE_MAN, &config_key_table, &status);
    UNIT_CHECK(status == BUTLER_OK);
    UNIT_CHECK(strncmp(text, ".TH BUTLER.YAML 5 ", 18) == 0);
    UNIT_CHECK(strstr(text, ".TP\n.B mqtt.port\ninteger (1..65535); default 1883.\n"));
    /* No line may start with a roff request by accident: every line starting
     * with '.' is one we wrote on purpose. */
    for (const char *line = text; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (line[0] == '.')
            UNIT_CHECK(strncmp(line, ".TH", 3) == 0 || strncmp(line, ".SH", 3) == 0 ||
                       strncmp(line, ".SS", 3) == 0 || strncmp(line, ".TP", 3) == 0 ||
                       strncmp(line, ".B ", 3) == 0 || strncmp(line, ".PP", 3) == 0);
    free(text);
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_every_key_in_every_format),
    UNIT_TEST(test_markdown_rows),
    UNIT_TEST(test_missing_doc_fails),
    UNIT_TEST(test_undescribed_check_fails),
    UNIT_TEST(test_format_names),
    UNIT_TEST(test_man_page_shape),
    {0},
};
