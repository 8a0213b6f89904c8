/*
 * A very small unit-test harness. Each test file defines
 *     static void test_something(void) { UNIT_CHECK(...); }
 * and a table
 *     const struct unit_test unit_tests[] = { UNIT_TEST(test_something), {0} };
 * unit.c provides main(), runs every test and prints "N passed, N failed".
 */
#ifndef BUTLER_UNIT_H
#define BUTLER_UNIT_H

#include <stdbool.h>
#include <string.h>

struct unit_test {
    const char *name;
    void (*run)(void);
};

#define UNIT_TEST(fn)                                                                              \
    {                                                                                              \
#fn, fn                                                                                    \
    }

extern const struct unit_test unit_tests[];

void unit_fail(const char *file, int line, const char *expression);

#define UNIT_CHECK(expression)                                                                     \
    do {                                                                                           \
        if (!(expression))                                                                         \
            unit_fail(__FILE__, __LINE__, #expression);                                            \
    } while (0)

#define UNIT_CHECK_STR(actual, expected)                                                           \
    do {                                                                                           \
        const char *unit_actual_ = (actual);                                                       \
        const char *unit_expected_ = (expected);                                                   \
        if (unit_actual_ == NULL || strcmp(unit_actual_, unit_expected_) != 0)                     \
            unit_fail_str(__FILE__, __LINE__, #actual, unit_actual_, unit_expected_);              \
    } while (0)

void unit_fail_str(const char *file, int line, const char *expression, const char *actual,
                   const char *expected);

#endif
