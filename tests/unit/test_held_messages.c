/* Unit tests: recognising the broker's repeat of a message the spool holds. */
#include "bridge/store/held_messages.h"
#include "tests/unit/unit.h"

static void test_a_repeat_is_taken_once(void)
{
    held_messages_clear();
    UNIT_CHECK(!held_messages_active());
    held_messages_add(7, "butler/file/move", "{\"a\":1}", 7);
    held_messages_add(8, "butler/task/start", "{\"b\":2}", 7);
    UNIT_CHECK(held_messages_active());
    UNIT_CHECK(held_messages_take(8, "butler/task/start", "{\"b\":2}", 7));
    UNIT_CHECK(held_messages_take(7, "butler/file/move", "{\"a\":1}", 7));
    /* All taken: matching ends, the same message again is new work. */
    UNIT_CHECK(!held_messages_active());
    UNIT_CHECK(!held_messages_take(7, "butler/file/move", "{\"a\":1}", 7));
}

static void test_the_first_new_message_ends_matching(void)
{
    held_messages_clear();
    held_messages_add(3, "t", "x", 1);
    held_messages_add(4, "t", "y", 1);
    /* Same packet id, other payload: not a repeat, and nothing after it is one. */
    UNIT_CHECK(!held_messages_take(3, "t", "z", 1));
    UNIT_CHECK(!held_messages_active());
    UNIT_CHECK(!held_messages_take(4, "t", "y", 1));
}

static void test_packet_id_topic_and_payload_must_all_match(void)
{
    held_messages_clear();
    held_messages_add(5, "a/b", "p", 1);
    UNIT_CHECK(!held_messages_take(6, "a/b", "p", 1)); /* another packet id */
    held_messages_clear();
    held_messages_add(5, "a/b", "p", 1);
    UNIT_CHECK(!held_messages_take(5, "a/c", "p", 1)); /* another topic */
    held_messages_clear();
    held_messages_add(0, "a/b", "p", 1); /* id unknown (older record): not held */
    UNIT_CHECK(!held_messages_active());
}

static void test_bounded(void)
{
    held_messages_clear();
    for (unsigned i = 0; i < HELD_MESSAGES_MAX + 10; i++)
        held_messages_add((uint16_t)(i % 65535 + 1), "t", &i, sizeof i);
    unsigned last = HELD_MESSAGES_MAX + 5; /* beyond the cap: not remembered */
    UNIT_CHECK(!held_messages_take((uint16_t)(last % 65535 + 1), "t", &last, sizeof last));
    held_messages_clear();
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_a_repeat_is_taken_once),
    UNIT_TEST(test_the_first_new_message_ends_matching),
    UNIT_TEST(test_packet_id_topic_and_payload_must_all_match),
    UNIT_TEST(test_bounded),
    {0},
};
