/*
 * Publishing from worker threads, where a message must get out: waits for the
 * broker's PUBACK, and while the broker is unreachable waits for it to come
 * back rather than dropping the message. Gives up only when Butler is
 * stopping (BUTLER_ERR_SHUTDOWN) or the message itself is refused for good:
 * not a valid topic (BUTLER_ERR_INVALID), over the broker's Maximum Packet
 * Size (BUTLER_ERR_TOO_LARGE), refused by the broker in its PUBACK, e.g. by
 * its ACL (BUTLER_ERR_REMOTE). Never call it from the MQTT network thread.
 */
#ifndef BUTLER_TOPICS_PUBLISH_H
#define BUTLER_TOPICS_PUBLISH_H

#include <stddef.h>
#include <stdint.h>

#include "bridge/link/mqtt_link.h"
#include "bridge/core/status.h"

enum butler_status publish_reliably(const char *topic, const void *payload, size_t payload_length,
                                    const struct mqtt_publish_options *options);

/* One message of a publish_all() batch; everything is copied. */
struct publish_item {
    const char *topic;
    const void *payload;
    size_t payload_length;
    struct mqtt_publish_options options;
};

/*
 * Publish every item at QoS 1 without blocking the worker on the PUBACKs:
 * `finished(context, status)` runs once every item was acknowledged or
 * refused for good (BUTLER_OK; refusals are counted in
 * butler_answers_refused_total and logged), or with BUTLER_ERR_SHUTDOWN when
 * Butler stops before one could be sent (BUTLER_ERR_NOMEM: out of memory). A publish the broker
 * never acknowledged because the connection dropped is parked and sent again after the next
 * CONNACK; while the broker is unreachable at the start, the calling worker waits for it as
 * publish_reliably does. `finished` may run on the network thread (must not block) or on the
 * calling thread.
 */
void publish_all(const struct publish_item *items, size_t count,
                 void (*finished)(void *context, enum butler_status status), void *context);

struct topic_message;

/*
 * Answer a consumed request: publish `text` on `result_topic` and, when the
 * request carried an MQTT v5 Response Topic, there too with its Correlation
 * Data. Takes ownership of `message`: it is freed (its spool record finished)
 * once the broker acknowledged or refused for good every answer (a Response
 * Topic outside Butler's ACL must not keep the request in the spool for
 * ever), or kept in the spool for the next start when Butler stops first. Worker threads; `text` is
 * copied.
 */
void publish_answer(const char *result_topic, struct topic_message *message, const char *text);

/* Send the parked publishes again now, as after a CONNACK: while the link
 * holds intake, the outlet may be up with no CONNACK to come (feeder thread). */
void publish_retry_parked(void);

/* Register the CONNACK hook that sends parked publishes again (start-up). */
void publish_setup(void);
/* Finish every parked publish with BUTLER_ERR_SHUTDOWN (after the link is gone). */
void publish_teardown(void);

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
