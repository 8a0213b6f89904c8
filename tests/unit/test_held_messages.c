/* Unit tests: recognising the broker's resend of a message the spool already took. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

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

/*
 * The ring survives a restart (held.ring): messages that were spooled and
 * had even finished before a SIGKILL that lost their PUBACKs are recognised
 * when the broker resends them. Recovery's unfinished ones are not counted
 * twice, and a new session empties the file.
 */
static void test_the_ring_survives_a_restart(void)
{
    char directory[64];
    snprintf(directory, sizeof directory, "/tmp/butler-held-XXXXXX");
    UNIT_CHECK(mkdtemp(directory) != NULL);
    held_messages_clear();
    UNIT_CHECK(held_messages_open(directory) == BUTLER_OK);
    UNIT_CHECK(held_messages_count() == 0);
    for (unsigned i = 1; i <= 1500; i++)
        held_messages_add((uint16_t)i, "butler/file/move", &i, sizeof i);
    held_messages_close(); /* killed: memory gone, the file stays */
    held_messages_clear();
    /* The restart: recovery hands back two unfinished ones first, one the
     * file knows (1500) and one it does not (an older spool's, id 7). */
    unsigned last = 1500, older = 7;
    held_messages_add_recovered(1500, "butler/file/move", &last, sizeof last);
    held_messages_add_recovered(7, "butler/file/move", &older, sizeof older);
    UNIT_CHECK(held_messages_open(directory) == BUTLER_OK);
    UNIT_CHECK(held_messages_count() == HELD_MESSAGES_MAX + 1);
    held_messages_connected(true);
    for (unsigned i = 1401; i <= 1500; i++)
        UNIT_CHECK(held_messages_take((uint16_t)i, "butler/file/move", &i, sizeof i));
    UNIT_CHECK(held_messages_take(7, "butler/file/move", &older, sizeof older));
    unsigned gone = 100; /* older than the newest 1,024 */
    UNIT_CHECK(!held_messages_take(100, "butler/file/move", &gone, sizeof gone));
    /* A new session: nothing will be resent, now or after the next restart. */
    held_messages_connected(false);
    held_messages_close();
    held_messages_clear();
    UNIT_CHECK(held_messages_open(directory) == BUTLER_OK);
    UNIT_CHECK(held_messages_count() == 0);
    held_messages_close();
    held_messages_clear();
    char path[128];
    snprintf(path, sizeof path, "%s/held.ring", directory);
    unlink(path);
    rmdir(directory);
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_the_ring_survives_a_restart),
    UNIT_TEST(test_a_repeat_is_taken_once),
    UNIT_TEST(test_the_first_new_message_ends_matching),
    UNIT_TEST(test_packet_id_topic_and_payload_must_all_match),
    UNIT_TEST(test_the_newest_are_kept),
    UNIT_TEST(test_every_resumed_connack_matches_again),
    {0},
};
