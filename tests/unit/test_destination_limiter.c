/* Unit tests for the per-destination Retry-After limiter. */
#include <stdlib.h>
#include <string.h>

#include "bridge/clients/destination_limiter.h"
#include "bridge/core/clock.h"
#include "unit.h"

static void test_retry_after_forms(void)
{
    int64_t now = 1445412480; /* Wed, 21 Oct 2015 07:28:00 GMT */
    UNIT_CHECK(destination_retry_after_s("120", now) == 120);
    UNIT_CHECK(destination_retry_after_s(" 7 \r\n", now) == 7);
    UNIT_CHECK(destination_retry_after_s("Wed, 21 Oct 2015 07:28:30 GMT", now) == 30);
    UNIT_CHECK(destination_retry_after_s("Wed, 21 Oct 2015 07:27:00 GMT", now) == 0);
    UNIT_CHECK(destination_retry_after_s("Thu, 22 Oct 2015 07:28:00 GMT", now) == 86400);
    UNIT_CHECK(destination_retry_after_s("-5", now) == -1);
    UNIT_CHECK(destination_retry_after_s("soon", now) == -1);
    UNIT_CHECK(destination_retry_after_s("12abc", now) == -1);
    UNIT_CHECK(destination_retry_after_s("Wed, 21 Foo 2015 07:28:30 GMT", now) == -1);
    UNIT_CHECK(destination_retry_after_s("Wed, 21 Oct 2015 07:28:30 CET", now) == -1);
    UNIT_CHECK(destination_retry_after_s("", now) == -1);
}

static void test_hold_is_per_destination(void)
{
    destination_hold("http://127.0.0.1:9/hook-a?x=1", 1);
    uint64_t started = clock_monotonic_ms();
    /* Another destination is not held. */
    UNIT_CHECK(destination_wait("http://127.0.0.1:9/hook-b", NULL) < 500);
    /* The same one, whatever its query, waits out the hold. */
    destination_wait("http://127.0.0.1:9/hook-a?y=2", NULL);
    UNIT_CHECK(clock_monotonic_ms() - started >= 900);
    /* Capped, and no hold for 0. */
    destination_hold("http://127.0.0.1:9/hook-c", 0);
    UNIT_CHECK(destination_wait("http://127.0.0.1:9/hook-c", NULL) == 0);
}

static bool stop_now(void)
{
    return true;
}

static void test_wait_stops_at_shutdown(void)
{
    destination_hold("http://127.0.0.1:9/hook-d", 3600);
    UNIT_CHECK(destination_wait("http://127.0.0.1:9/hook-d", stop_now) < 500);
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_retry_after_forms),
    UNIT_TEST(test_hold_is_per_destination),
    UNIT_TEST(test_wait_stops_at_shutdown),
    {0},
};
