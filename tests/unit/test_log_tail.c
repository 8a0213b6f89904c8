/* Unit tests for script log tails (topics/log_tail.c). */
#include <stdlib.h>
#include <string.h>

#include "topics/log_tail.h"
#include "unit.h"

static void check(const char *text, bool head_cut, int lines, size_t bytes, const char *expected)
{
    char *out = log_tail(text, strlen(text), head_cut, lines, bytes);
    UNIT_CHECK_STR(out, expected);
    free(out);
}

static void test_lines_and_cr(void)
{
    check("a\r\nb\r\nc\r\n", false, 2, 100, "b\nc");
    check("a\nb\nc", false, 5, 100, "a\nb\nc");
    check("", false, 5, 100, "");
}

static void test_cut_on_character_boundary(void)
{
    /* "xä€" with a 4-byte budget: the cut would fall inside "ä". */
    check("x\xC3\xA4\xE2\x82\xAC", false, 5, 4, "\xE2\x82\xAC");
    check("\xF0\x9F\x98\x80z", false, 5, 2, "z");
}

static void test_invalid_bytes_become_replacement(void)
{
    /* Latin-1 "é" (0xE9) alone, a stray continuation byte, a surrogate. */
    check("caf\xE9 ok", false, 5, 100, "caf\xEF\xBF\xBD ok");
    check("a\x80z", false, 5, 100, "a\xEF\xBF\xBDz");
    check("\xED\xA0\x80!", false, 5, 100, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD!");
    /* A truncated sequence at the end: one U+FFFD for the maximal subpart. */
    check("ok\xE2\x82", false, 5, 100, "ok\xEF\xBF\xBD");
    char *out = log_tail("\xFF\xFF\xFF\xFF", 4, false, 5, 4);
    UNIT_CHECK(out && strlen(out) == 12);
    free(out);
}

static void test_head_cut_drops_the_fragment(void)
{
    check("rt of a line\nline 2\nline 3", true, 20, 1000, "line 2\nline 3");
    check("no newline at all", true, 20, 1000, "no newline at all");
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_lines_and_cr),
    UNIT_TEST(test_cut_on_character_boundary),
    UNIT_TEST(test_invalid_bytes_become_replacement),
    UNIT_TEST(test_head_cut_drops_the_fragment),
    {0},
};
