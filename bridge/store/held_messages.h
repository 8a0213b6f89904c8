/*
 * Messages the spool holds from before a restart, as the broker may send them
 * again.
 *
 * Butler writes a consumed message to the spool before libmosquitto sends the
 * PUBACK. Killed between the two, it replays the spooled copy at the next
 * start, and the broker, which never saw the PUBACK, sends the message again
 * (same packet id, DUP set) on the resumed session. Run twice, a file move
 * would answer "done" and then "the source does not exist". Recovery lists
 * each unfinished spooled message here by packet id and a digest of its topic
 * and payload; the first messages after the restart that match are
 * acknowledged without a second copy.
 *
 * Matching stops at the first message that does not match: the broker sends
 * its unacknowledged messages first on a resumed session, so anything after
 * that is new, and an identical new message is not taken for a repeat. The
 * caller clears the list when the broker says the session is new (nothing
 * will be sent again).
 *
 * Thread-safe: recovery adds (start-up), the MQTT network thread takes.
 */
#ifndef BUTLER_HELD_MESSAGES_H
#define BUTLER_HELD_MESSAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most remembered; past it a held message is not recognised (and may run
 * twice, as without this list). */
enum { HELD_MESSAGES_MAX = 4096 };

/* Remember one unfinished spooled message (packet id from the spool record;
 * 0 = unknown, ignored). Start-up. */
void held_messages_add(uint16_t message_id, const char *topic, const void *payload,
                       size_t payload_length);

/* True when the list is still matching (cheap; checked first on every message). */
bool held_messages_active(void);

/*
 * Network thread, for each QoS 1/2 message that is not retained: true when it
 * is the broker's repeat of a held message (removed from the list: a repeat
 * is recognised once). A message that matches nothing ends matching.
 */
bool held_messages_take(uint16_t message_id, const char *topic, const void *payload,
                        size_t payload_length);

/* Forget everything (shutdown, tests). */
void held_messages_clear(void);

#endif
