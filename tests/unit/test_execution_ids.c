/* Unit tests: the ExecutionId window's pending claims (issue 25 item 8). A
 * notification that finds the claim of an event still in flight waits for it
 * to resolve: given back (the event was lost) it claims and delivers;
 * confirmed (published or spooled) it is a duplicate; unresolved past its
 * bound it is a duplicate too, and never waits longer. */
#include <pthread.h>
#include <stdint.h>

#include "bridge/core/clock.h"
#include "bridge/store/execution_ids.h"
#include "tests/unit/unit.h"

#define RUN "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b"
#define TTL_MS 600000u

static char key[EXECUTION_IDS_KEY_MAX];

/* The in-flight event's side: after a while, lose the event or publish it. */
static bool lose_it;
static void *resolve_later(void *unused)
{
    (void)unused;
    clock_sleep_ms(100);
    if (lose_it)
        execution_ids_release(RUN, "failed");
    else
        execution_ids_confirm(RUN, "failed", TTL_MS);
    return NULL;
}

static void open_window(void)
{
    struct expiring_map *map = NULL;
    UNIT_CHECK(execution_ids_open(&map) == BUTLER_OK && map != NULL);
    execution_ids_key(RUN, "failed", key, sizeof key);
}

static void test_lost_event_lets_the_waiting_notification_deliver(void)
{
    open_window();
    UNIT_CHECK(execution_ids_claim(key, TTL_MS, 0) == BUTLER_OK); /* the UDP event */
    UNIT_CHECK(execution_ids_claim(key, TTL_MS, 0) == BUTLER_ERR_DENIED);
    lose_it = true;
    pthread_t thread;
    UNIT_CHECK(pthread_create(&thread, NULL, resolve_later, NULL) == 0);
    /* The notification: waits (bounded) and claims once the event is lost. */
    UNIT_CHECK(execution_ids_claim(key, TTL_MS, 30000) == BUTLER_OK);
    pthread_join(thread, NULL);
    /* Its own claim is pending now: a datagram of the same run is a duplicate. */
    UNIT_CHECK(execution_ids_claim(key, TTL_MS, 0) == BUTLER_ERR_DENIED);
    execution_ids_close();
}

static void test_published_event_makes_the_notification_a_duplicate(void)
{
    open_window();
    UNIT_CHECK(execution_ids_claim(key, TTL_MS, 0) == BUTLER_OK);
    lose_it = false;
    pthread_t thread;
    UNIT_CHECK(pthread_create(&thread, NULL, resolve_later, NULL) == 0);
    UNIT_CHECK(execution_ids_claim(key, TTL_MS, 30000) == BUTLER_ERR_DENIED);
    pthread_join(thread, NULL);
    /* Confirmed: still held, and a later notification is refused at once. */
    UNIT_CHECK(execution_ids_claim(key, TTL_MS, 30000) == BUTLER_ERR_DENIED);
    execution_ids_close();
}

static void test_unresolved_claim_is_waited_for_a_bounded_time(void)
{
    open_window();
    UNIT_CHECK(execution_ids_claim(key, TTL_MS, 0) == BUTLER_OK);
    /* Never resolved: refused after its bound (the test's 60 s timeout
     * catches an unbounded wait). */
    UNIT_CHECK(execution_ids_claim(key, TTL_MS, 200) == BUTLER_ERR_DENIED);
    execution_ids_release(RUN, "failed");
    UNIT_CHECK(execution_ids_claim(key, TTL_MS, 0) == BUTLER_OK);
    execution_ids_close();
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_lost_event_lets_the_waiting_notification_deliver),
    UNIT_TEST(test_published_event_makes_the_notification_a_duplicate),
    UNIT_TEST(test_unresolved_claim_is_waited_for_a_bounded_time),
    {0},
};
