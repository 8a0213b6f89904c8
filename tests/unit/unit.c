#include "tests/unit/unit.h"

#include <stdio.h>

static int current_failures;

void unit_fail(const char *file, int line, const char *expression)
{
    fprintf(stderr, "  FAIL %s:%d: %s\n", file, line, expression);
    current_failures++;
}

void unit_fail_str(const char *file, int line, const char *expression, const char *actual,
                   const char *expected)
{
    fprintf(stderr, "  FAIL %s:%d: %s is \"%s\", expected \"%s\"\n", file, line, expression,
            actual ? actual : "(null)", expected);
    current_failures++;
}

int main(void)
{
    int passed = 0, failed = 0;
    for (const struct unit_test *test = unit_tests; test->name; test++) {
        current_failures = 0;
        test->run();
        if (current_failures == 0) {
            passed++;
        } else {
            failed++;
            fprintf(stderr, "FAILED %s\n", test->name);
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
