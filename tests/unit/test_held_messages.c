/* Unit tests: recognising the broker's resend of a message the spool already took. */
#include "bridge/store/held_messages.h"
#include "tests/unit/unit.h"

static void test_a_repeat_is_taken_once(void)
{
    held_messages_clear();
    UNIT_CHECK(!held_messages_active());
    held_messages_add(7, "butler/file/move", "{\"a\":1}", 7);
    held_messages_add(8, "butler/task/start", "{\"b\":2}", 7);
    UNIT_CHECK(!held_messages_active()); /* nothing is resent before a CONNACK */
    held_messages_connected(true);
    UNIT_CHECK(held_messages_active());
    UNIT_CHECK(held_messages_take(7, "butler/file/move", "{\"a\":1}", 7));
    UNIT_CHECK(held_messages_take(8, "butler/task/start", "{\"b\":2}", 7));
    /* Taken once: the same message again is new work, and ends matching. */
    UNIT_CHECK(!held_messages_take(7, "butler/file/move", "{\"a\":1}", 7));
    UNIT_CHECK(!held_messages_active());
}

static void test_the_first_new_message_ends_matching(void)
{
    held_messages_clear();
    held_messages_add(3, "t", "x", 1);
    held_messages_add(4, "t", "y", 1);
    held_messages_connected(true);
    /* Same packet id, other payload: not a repeat, and nothing after it is one. */
    UNIT_CHECK(!held_messages_take(3, "t", "z", 1));
    UNIT_CHECK(!held_messages_active());
    UNIT_CHECK(!held_messages_take(4, "t", "y", 1));
}

static void test_packet_id_topic_and_payload_must_all_match(void)
{
    held_messages_clear();
    held_messages_add(5, "a/b", "p", 1);
    held_messages_connected(true);
    UNIT_CHECK(!held_messages_take(6, "a/b", "p", 1)); /* another packet id */
    held_messages_clear();
    held_messages_add(5, "a/b", "p", 1);
    held_messages_connected(true);
    UNIT_CHECK(!held_messages_take(5, "a/c", "p", 1)); /* another topic */
    held_messages_clear();
    held_messages_add(0, "a/b", "p", 1); /* id unknown (older record): not held */
    held_messages_connected(true);
    UNIT_CHECK(!held_messages_active());
}

/*
 * Past the ring's size the oldest are forgotten and the newest kept: the
 * broker resends only its newest unacknowledged messages (at most the receive
 * maximum), so those are the ones that must be recognised. (The list used to
 * keep the first 4,096 and drop the rest: with 4,100 queued, the resend of the
 * 4,097th ran twice.)
 */
static void test_the_newest_are_kept(void)
{
    held_messages_clear();
    const unsigned total = 4100;
    for (unsigned i = 1; i <= total; i++)
        held_messages_add((uint16_t)i, "butler/file/move", &i, sizeof i);
    UNIT_CHECK(held_messages_count() == HELD_MESSAGES_MAX);
    held_messages_connected(true);
    /* The broker resends the last 100, in order. */
    for (unsigned i = total - 99; i <= total; i++)
        UNIT_CHECK(held_messages_take((uint16_t)i, "butler/file/move", &i, sizeof i));
    UNIT_CHECK(held_messages_active());
    unsigned oldest = 1; /* long gone from the ring */
    UNIT_CHECK(!held_messages_take(1, "butler/file/move", &oldest, sizeof oldest));
    held_messages_clear();
}

/*
 * Matching starts again at every CONNACK that resumes the session, not only
 * after a restart: a keepalive drop mid-backlog loses PUBACKs without any
 * crash. Messages spooled while connected are remembered as they come.
 */
static void test_every_resumed_connack_matches_again(void)
{
    held_messages_clear();
    held_messages_connected(false); /* the first connect: a new session */
    UNIT_CHECK(!held_messages_active());
    for (unsigned i = 1; i <= 300; i++)
        held_messages_add((uint16_t)i, "t", &i, sizeof i);
    /* Dropped, reconnected: the broker resends 201..300. */
    held_messages_connected(true);
    for (unsigned i = 201; i <= 300; i++)
        UNIT_CHECK(held_messages_take((uint16_t)i, "t", &i, sizeof i));
    unsigned fresh = 301;
    UNIT_CHECK(!held_messages_take(301, "t", &fresh, sizeof fresh)); /* new: ends matching */
    held_messages_add(301, "t", &fresh, sizeof fresh);
    /* Dropped again before 301's PUBACK left: it is recognised too. */
    held_messages_connected(true);
    UNIT_CHECK(held_messages_take(301, "t", &fresh, sizeof fresh));
    /* A new session forgets everything: nothing will be resent. */
    held_messages_add(302, "t", "x", 1);
    held_messages_connected(false);
    UNIT_CHECK(!held_messages_active());
    UNIT_CHECK(held_messages_count() == 0);
    held_messages_connected(true);
    UNIT_CHECK(!held_messages_take(302, "t", "x", 1));
    held_messages_clear();
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_a_repeat_is_taken_once),
    UNIT_TEST(test_the_first_new_message_ends_matching),
    UNIT_TEST(test_packet_id_topic_and_payload_must_all_match),
    UNIT_TEST(test_the_newest_are_kept),
    UNIT_TEST(test_every_resumed_connack_matches_again),
    {0},
};
