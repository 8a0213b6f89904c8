/* Unit tests for the InfluxDB line protocol writer: one per escaping rule. */
#include <stdlib.h>
#include <string.h>

#include "bridge/clients/line_protocol.h"
#include "unit.h"

/* A point with one tag and one string field, both taken from `value`. */
static void check_tag(const char *value, const char *expected)
{
    struct line_protocol lp;
    lp_init(&lp, 4096);
    UNIT_CHECK(lp_begin(&lp, "m") == BUTLER_OK);
    lp_tag(&lp, "t", value);
    lp_field_int(&lp, "n", 1);
    UNIT_CHECK(lp_end(&lp, 5) == BUTLER_OK);
    UNIT_CHECK_STR(lp.data, expected);
    lp_free(&lp);
}

static void check_string_field(const char *value, const char *expected)
{
    struct line_protocol lp;
    lp_init(&lp, 4096);
    UNIT_CHECK(lp_begin(&lp, "m") == BUTLER_OK);
    lp_field_string(&lp, "s", value);
    UNIT_CHECK(lp_end(&lp, LINE_PROTOCOL_NO_TIME) == BUTLER_OK);
    UNIT_CHECK_STR(lp.data, expected);
    lp_free(&lp);
}

static void check_measurement(const char *name, const char *expected)
{
    struct line_protocol lp;
    lp_init(&lp, 4096);
    UNIT_CHECK(lp_begin(&lp, name) == BUTLER_OK);
    lp_field_bool(&lp, "ok", true);
    UNIT_CHECK(lp_end(&lp, LINE_PROTOCOL_NO_TIME) == BUTLER_OK);
    UNIT_CHECK_STR(lp.data, expected);
    lp_free(&lp);
}

static void test_spaces(void)
{
    check_measurement("task run", "task\\ run ok=true\n");
    check_tag("Reload Sales", "m,t=Reload\\ Sales n=1i 5\n");
    check_string_field("a b", "m s=\"a b\"\n");
}

static void test_commas(void)
{
    check_measurement("a,b", "a\\,b ok=true\n");
    check_tag("x,y", "m,t=x\\,y n=1i 5\n");
    check_string_field("x,y", "m s=\"x,y\"\n");
}

static void test_equals_signs(void)
{
    check_measurement("a=b", "a=b ok=true\n"); /* not special in a measurement */
    check_tag("k=v", "m,t=k\\=v n=1i 5\n");
    struct line_protocol lp;
    lp_init(&lp, 4096);
    UNIT_CHECK(lp_begin(&lp, "m") == BUTLER_OK);
    lp_tag(&lp, "a b=c,d", "v");
    lp_field_float(&lp, "f=1", 2.5);
    UNIT_CHECK(lp_end(&lp, LINE_PROTOCOL_NO_TIME) == BUTLER_OK);
    UNIT_CHECK_STR(lp.data, "m,a\\ b\\=c\\,d=v f\\=1=2.5\n");
    lp_free(&lp);
}

static void test_quotes(void)
{
    check_string_field("say \"hi\"", "m s=\"say \\\"hi\\\"\"\n");
    check_tag("\"q\"", "m,t=\"q\" n=1i 5\n"); /* quotes are literal in tags */
}

static void test_backslashes(void)
{
    check_string_field("C:\\dir\\", "m s=\"C:\\\\dir\\\\\"\n");
    /* Literal where nothing follows that it could escape. */
    check_tag("C:\\dir", "m,t=C:\\dir n=1i 5\n");
    /* A '/' where it would escape the separator after the part or a special
     * character (InfluxDB has no escape for a backslash). */
    check_tag("end\\", "m,t=end/ n=1i 5\n");
    check_tag("a\\,b", "m,t=a/\\,b n=1i 5\n");
    check_tag("a\\\\,", "m,t=a\\/\\, n=1i 5\n");
    check_measurement("m\\ x\\", "m/\\ x/ ok=true\n");
}

static void test_newlines(void)
{
    /* Kept inside a quoted string; a space where no quotes hold it. */
    check_string_field("line 1\nline 2\r\n", "m s=\"line 1\nline 2\r\n\"\n");
    check_tag("a\nb\rc", "m,t=a\\ b\\ c n=1i 5\n");
    check_measurement("x\ny", "x\\ y ok=true\n");
}

static void test_non_ascii(void)
{
    check_tag("Försäljning 売上", "m,t=Försäljning\\ 売上 n=1i 5\n");
    check_string_field("ünïcode ✓", "m s=\"ünïcode ✓\"\n");
    /* Invalid UTF-8 (a lone continuation byte, a cut sequence, an overlong
     * slash) becomes U+FFFD. */
    check_tag("a\x80z", "m,t=a\xEF\xBF\xBDz n=1i 5\n");
    check_string_field("\xC3", "m s=\"\xEF\xBF\xBD\"\n");
    check_string_field("\xC0\xAF", "m s=\"\xEF\xBF\xBD\xEF\xBF\xBD\"\n");
}

static void test_empty_values_skipped(void)
{
    struct line_protocol lp;
    lp_init(&lp, 4096);
    UNIT_CHECK(lp_begin(&lp, "") == BUTLER_ERR_INVALID);
    UNIT_CHECK(lp_begin(&lp, "m") == BUTLER_OK);
    lp_tag(&lp, "empty", "");
    lp_tag(&lp, "", "novalue");
    lp_tag(&lp, "host", "n1");
    lp_field_auto(&lp, "skipped", "");
    lp_field_string(&lp, "", "no key");
    lp_field_string(&lp, "kept", "");
    UNIT_CHECK(lp_end(&lp, 7) == BUTLER_OK);
    UNIT_CHECK_STR(lp.data, "m,host=n1 kept=\"\" 7\n");
    /* A point left without fields is refused and leaves nothing behind. */
    UNIT_CHECK(lp_begin(&lp, "m") == BUTLER_OK);
    lp_tag(&lp, "host", "n2");
    lp_field_auto(&lp, "x", "");
    lp_field_float(&lp, "nan", 0.0 / 0.0);
    UNIT_CHECK(lp_end(&lp, 8) == BUTLER_ERR_INVALID);
    UNIT_CHECK_STR(lp.data, "m,host=n1 kept=\"\" 7\n");
    UNIT_CHECK(lp.points == 1);
    lp_free(&lp);
}

static void test_value_types(void)
{
    struct line_protocol lp;
    lp_init(&lp, 4096);
    UNIT_CHECK(lp_begin(&lp, "m") == BUTLER_OK);
    lp_field_float(&lp, "f", 0.1);
    lp_field_float(&lp, "g", 3);
    lp_field_int(&lp, "i", -42);
    lp_field_bool(&lp, "b", false);
    lp_field_string(&lp, "s", "text");
    UNIT_CHECK(lp_end(&lp, 1700000000000LL) == BUTLER_OK);
    UNIT_CHECK_STR(lp.data, "m f=0.1,g=3,i=-42i,b=false,s=\"text\" 1700000000000\n");
    lp_free(&lp);

    /* Auto typing of rendered templates (contract 9.3). */
    lp_init(&lp, 4096);
    UNIT_CHECK(lp_begin(&lp, "m") == BUTLER_OK);
    lp_field_auto(&lp, "a", "12");
    lp_field_auto(&lp, "b", "-1.5e3");
    lp_field_auto(&lp, "c", "true");
    lp_field_auto(&lp, "d", "False");
    lp_field_auto(&lp, "e", "0x10");
    lp_field_auto(&lp, "f", "nan");
    lp_field_auto(&lp, "g", " 1");
    lp_field_auto(&lp, "h", "007");
    UNIT_CHECK(lp_end(&lp, LINE_PROTOCOL_NO_TIME) == BUTLER_OK);
    UNIT_CHECK_STR(lp.data, "m a=12,b=-1500,c=true,d=\"False\",e=\"0x10\",f=\"nan\",g=\" 1\","
                            "h=\"007\"\n");
    lp_free(&lp);
    UNIT_CHECK(lp_is_number("0") && lp_is_number("-0.5") && lp_is_number("1E+2"));
    UNIT_CHECK(!lp_is_number("") && !lp_is_number("-") && !lp_is_number("1.") &&
               !lp_is_number(".5") && !lp_is_number("1e") && !lp_is_number("inf"));
}

static void test_bounded(void)
{
    struct line_protocol lp;
    lp_init(&lp, 40);
    UNIT_CHECK(lp_begin(&lp, "m") == BUTLER_OK);
    lp_field_int(&lp, "n", 1);
    UNIT_CHECK(lp_end(&lp, 1) == BUTLER_OK);
    UNIT_CHECK(lp_begin(&lp, "m") == BUTLER_OK);
    lp_field_string(&lp, "s", "this value is far too long for forty bytes");
    UNIT_CHECK(lp_end(&lp, 2) == BUTLER_ERR_TOO_LARGE);
    UNIT_CHECK_STR(lp.data, "m n=1i 1\n");
    UNIT_CHECK(lp.points == 1 && lp.used == 9);
    lp_free(&lp);

    /* A string field is cut at LINE_PROTOCOL_STRING_MAX, on a character boundary. */
    size_t n = LINE_PROTOCOL_STRING_MAX + 10;
    char *big = malloc(n + 1);
    UNIT_CHECK(big != NULL);
    if (big == NULL)
        return;
    memset(big, 'x', n);
    memcpy(big + LINE_PROTOCOL_STRING_MAX - 1, "\xC3\xA4", 2);
    big[n] = '\0';
    lp_init(&lp, 1 << 20);
    UNIT_CHECK(lp_begin(&lp, "m") == BUTLER_OK);
    lp_field_string(&lp, "s", big);
    UNIT_CHECK(lp_end(&lp, LINE_PROTOCOL_NO_TIME) == BUTLER_OK);
    UNIT_CHECK(lp.used == strlen("m s=\"\"\n") + LINE_PROTOCOL_STRING_MAX - 1);
    lp_free(&lp);
    free(big);
}

static void test_several_points(void)
{
    struct line_protocol lp;
    lp_init(&lp, 4096);
    for (int i = 0; i < 3; i++) {
        UNIT_CHECK(lp_begin(&lp, "m") == BUTLER_OK);
        lp_field_int(&lp, "i", i);
        UNIT_CHECK(lp_end(&lp, i) == BUTLER_OK);
    }
    /* An unfinished point is taken back by the next lp_begin. */
    UNIT_CHECK(lp_begin(&lp, "dropped") == BUTLER_OK);
    lp_field_int(&lp, "i", 9);
    lp_reset(&lp);
    UNIT_CHECK(lp.used == 0 && lp.points == 0);
    UNIT_CHECK(lp_begin(&lp, "x") == BUTLER_OK);
    lp_tag(&lp, "late", "no");
    lp_field_int(&lp, "i", 1);
    lp_tag(&lp, "after_field", "ignored");
    UNIT_CHECK(lp_end(&lp, LINE_PROTOCOL_NO_TIME) == BUTLER_OK);
    UNIT_CHECK_STR(lp.data, "x,late=no i=1i\n");
    lp_free(&lp);
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_spaces),         UNIT_TEST(test_commas),
    UNIT_TEST(test_equals_signs),   UNIT_TEST(test_quotes),
    UNIT_TEST(test_backslashes),    UNIT_TEST(test_newlines),
    UNIT_TEST(test_non_ascii),      UNIT_TEST(test_empty_values_skipped),
    UNIT_TEST(test_value_types),    UNIT_TEST(test_bounded),
    UNIT_TEST(test_several_points), {0},
};
