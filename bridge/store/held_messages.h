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
 * and a digest of topic and payload, as they are spooled, whether they have
 * finished since or not (the copy ran, or will run, once): the broker only
 * ever has its newest unacknowledged ones, at most the receive maximum of
 * 100, to send again, so the newest are kept. The ring is mirrored in
 * spool.dir/held.ring (one small write per message, no flush: a SIGKILL
 * keeps it, as it keeps the spool), so it survives a restart; recovery adds
 * the unfinished spooled messages the file does not know (a spool written
 * before the file existed, or a power cut that lost its last writes), newest
 * kept too.
 *
 * Matching starts at each CONNACK that resumes the session
 * (held_messages_connected), however often the link reconnects. The broker
 * sends its unacknowledged messages first, in order, so matching stops at the
 * first message that matches nothing: from there on every message is new,
 * and a new message identical to an old one is not taken for a repeat. A new
 * session (nothing to send again) forgets everything, file included.
 *
 * Residual: with spool.fsync and a power cut, held.ring (never flushed) may
 * lack the newest finished messages; unfinished ones come from the spool.
 *
 * Thread-safe: recovery adds (start-up), the MQTT network thread adds, takes
 * and reports connects.
 */
#ifndef BUTLER_HELD_MESSAGES_H
#define BUTLER_HELD_MESSAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/status.h"

/* Spooled messages remembered (a ring: the oldest goes first). At least the
 * receive maximum Butler announces (100), with room for the resends of a
 * broker that ignores it. */
enum { HELD_MESSAGES_MAX = 1024 };

/* Open (creating) spool.dir/held.ring and read back the ring it holds; the
 * recovered entries it knows are dropped from the recovered list. Start-up,
 * after spool_open (which creates the directory). BUTLER_ERR_IO: matching
 * still works for this run, from memory. */
enum butler_status held_messages_open(const char *directory);
/* Close the file (shutdown; the memory is kept until held_messages_clear). */
void held_messages_close(void);

/* Remember one spooled message (packet id from the broker; 0 = none (QoS 0):
 * ignored), in memory and in held.ring. Network thread, right after
 * spool_add. */
void held_messages_add(uint16_t message_id, const char *topic, const void *payload,
                       size_t payload_length);

/* Remember one unfinished message recovery handed back (packet id from its
 * spool record; 0 = an older record without one: ignored) unless the ring
 * knows it. Start-up. */
void held_messages_add_recovered(uint16_t message_id, const char *topic, const void *payload,
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
