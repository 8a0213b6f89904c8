/*
 * The messages the broker may send again, so that a resend is acknowledged
 * and not run twice.
 *
 * Butler writes a consumed message to the spool before libmosquitto sends the
 * PUBACK. When that PUBACK never reaches the broker (Butler was killed before
 * sending it, or the connection dropped with it unsent or unread: a
 * keepalive drop while the network thread was busy), the broker sends the
 * message again on the resumed session, with the same packet id. Spooled
 * twice, a file move would answer "done" and then "the source does not
 * exist".
 *
 * So the last HELD_MESSAGES_MAX spooled messages are kept here, by packet id
 * and a digest of topic and payload: every message as it is spooled, and at
 * start-up the unfinished ones recovery hands back (newest last, so the ring
 * keeps the newest: the broker only ever has its newest unacknowledged ones,
 * at most the receive maximum of 100, to send again). Whether the spooled
 * copy has finished since does not matter: it ran, or will run, once.
 *
 * Matching starts at each CONNACK that resumes the session
 * (held_messages_connected), however often the link reconnects. The broker
 * sends its unacknowledged messages first, in order, so matching stops at the
 * first message that matches nothing: from there on every message is new,
 * and a new message identical to an old one is not taken for a repeat. A new
 * session (nothing to send again) forgets the ring.
 *
 * Residual: at start-up only unfinished work is in the ring; a message that
 * finished in the instant between spooling and the PUBACK of a killed
 * process is not recognised.
 *
 * Thread-safe: recovery adds (start-up), the MQTT network thread adds, takes
 * and reports connects.
 */
#ifndef BUTLER_HELD_MESSAGES_H
#define BUTLER_HELD_MESSAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Spooled messages remembered (a ring: the oldest goes first). At least the
 * receive maximum Butler announces (100), with room for the resends of a
 * broker that ignores it. */
enum { HELD_MESSAGES_MAX = 1024 };

/* Remember one spooled message (packet id from the broker or the spool
 * record; 0 = none (QoS 0, older record): ignored). Recovery (start-up) and
 * the network thread, right after spool_add. */
void held_messages_add(uint16_t message_id, const char *topic, const void *payload,
                       size_t payload_length);

/* The link's CONNACK: a resumed session starts matching, a new one forgets
 * everything. Network thread (mqtt_link's on_connect). */
void held_messages_connected(bool session_resumed);

/* True when the list is still matching (cheap; checked first on every message). */
bool held_messages_active(void);

/*
 * Network thread, for each QoS 1/2 message that is not retained: true when it
 * is the broker's repeat of a remembered message (removed from the ring: a
 * repeat is recognised once). A message that matches nothing ends matching
 * until the next resumed CONNACK.
 */
bool held_messages_take(uint16_t message_id, const char *topic, const void *payload,
                        size_t payload_length);

/* Messages in the ring (tests, diagnostics). */
size_t held_messages_count(void);

/* Forget everything (shutdown, tests). */
void held_messages_clear(void);

#endif
