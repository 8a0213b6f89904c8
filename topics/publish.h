/*
 * Publishing from worker threads, where a message must get out: waits for the
 * broker's PUBACK, and while the broker is unreachable waits for it to come
 * back rather than dropping the message. Gives up only when Butler is
 * stopping (BUTLER_ERR_SHUTDOWN) or the message itself is refused
 * (BUTLER_ERR_INVALID). Never call it from the MQTT network thread.
 */
#ifndef BUTLER_TOPICS_PUBLISH_H
#define BUTLER_TOPICS_PUBLISH_H

#include <stddef.h>
#include <stdint.h>

#include "bridge/mqtt_link.h"
#include "bridge/status.h"

enum butler_status publish_reliably(const char *topic, const void *payload, size_t payload_length,
                                    const struct mqtt_publish_options *options);

/*
 * Work that failed for good: publish {"topic","payload","error","attempts",
 * "firstAttemptAt"} on <root>/deadletter/<topic> and count it by `family`.
 * A payload that is not UTF-8 text is left out (it would make the letter
 * invalid JSON). Worker threads; waits for the broker like publish_reliably.
 */
void publish_deadletter(const char *family, const char *topic, const unsigned char *payload,
                        size_t payload_length, const char *error, int attempts,
                        uint64_t first_attempt_wall_ms);

#endif
