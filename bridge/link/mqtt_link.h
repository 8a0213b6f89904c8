/*
 * The MQTT link: Butler's one connection to the broker, on libmosquitto.
 *
 * - Fixed client id, clean start off with a session expiry (MQTT v5; falls
 *   back to 3.1.1 when the broker refuses v5), optional username/password/TLS.
 * - Retained <root>/status "online" after every CONNACK, "offline" as the last
 *   will and on clean shutdown. Nothing is published before CONNACK.
 * - Reconnects with capped, jittered exponential backoff and resubscribes.
 * - Outbound publishes are bounded: at most mqtt.max_inflight wait for their
 *   PUBACK; beyond that mqtt_link_publish() refuses with BUTLER_ERR_FULL.
 *   While disconnected it refuses with BUTLER_ERR_NOT_CONNECTED instead of
 *   queueing without limit inside libmosquitto.
 *
 * Threads: one network thread owned by the link runs every callback (message
 * handler, publish completions). Other functions are safe from any thread.
 */
#ifndef BUTLER_MQTT_LINK_H
#define BUTLER_MQTT_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/status.h"
#include "config/config.h"

struct mqtt_link;

/* An inbound message, valid only during the handler call (libmosquitto owns it). */
struct mqtt_message {
    const char *topic;
    const unsigned char *payload; /* not NUL-terminated */
    size_t payload_length;
    int qos;
    bool retain;
    uint16_t message_id;        /* the broker's packet id (QoS 1/2); a resend keeps it */
    bool session_resumed;       /* the broker kept the session across the connect (CONNACK flag):
                                   only then can it send an unacknowledged message again */
    const char *response_topic; /* MQTT v5 Response Topic, or NULL */
    const unsigned char *correlation_data;
    size_t correlation_length;
};

/*
 * Called on the network thread for every inbound message. With QoS 1 the
 * broker's PUBACK is written only after this returns, so whatever the handler
 * has recorded (queued, spooled) before returning is what the broker considers
 * delivered. It may block briefly for backpressure, never on network I/O.
 */
typedef void (*mqtt_message_handler)(const struct mqtt_message *message, void *context);

/* Called once per accepted publish, on the network thread (or on the caller's
 * thread at shutdown): BUTLER_OK when the broker acknowledged it. */
typedef void (*mqtt_publish_done)(void *context, enum butler_status status);

struct mqtt_publish_options {
    int qos;
    bool retain;
    const char *response_topic;            /* v5 only; NULL = none */
    const unsigned char *correlation_data; /* v5 only */
    size_t correlation_length;
    uint32_t message_expiry_s; /* v5 only; 0 = none */
    const char *content_type;  /* v5 only; NULL = none */
};

/* Create the link (no network activity yet). *out is owned by the caller and
 * released with mqtt_link_destroy(). `config` must outlive the link. */
enum butler_status mqtt_link_create(const struct butler_config *config, uint64_t started_at_wall_ms,
                                    struct mqtt_link **out);

/* Register the inbound handler and the filters to (re)subscribe on every
 * connect. `shared` filters get the $share/<group>/ prefix when mqtt.share_group
 * is set. Call before mqtt_link_start(). */
void mqtt_link_set_handler(struct mqtt_link *link, mqtt_message_handler handler, void *context);
enum butler_status mqtt_link_add_subscription(struct mqtt_link *link, const char *filter,
                                              bool shared);

/* Unsubscribe every registered filter and stop resubscribing (shutdown:
 * stop intake while results can still be published). Any thread. */
void mqtt_link_unsubscribe_all(struct mqtt_link *link);

/* Shut the socket down at once, without DISCONNECT, so packets libmosquitto
 * has queued (a PUBACK for a message we could not record) are never sent.
 * Messages still read from that connection are dropped unacknowledged (the
 * broker sends them again). The link reconnects as after any network
 * failure. Any thread. */
void mqtt_link_abort_connection(struct mqtt_link *link);

/*
 * Hold intake (the spool is full): cut the connection now, as
 * mqtt_link_abort_connection, and stay disconnected until
 * mqtt_link_release_hold() (at most 30 s: a refusal after that holds again),
 * so the broker keeps every unacknowledged message. Meanwhile publishes go
 * through a second, publish-only connection (the outlet), so the answers
 * that make room in the spool still get out. Any thread.
 */
void mqtt_link_hold(struct mqtt_link *link);
void mqtt_link_release_hold(struct mqtt_link *link);
bool mqtt_link_holding(const struct mqtt_link *link);

/* Called on the network thread after each successful CONNACK (after the
 * subscriptions were sent). Used to flush work that waited for the broker. */
void mqtt_link_set_connect_hook(struct mqtt_link *link, void (*hook)(void *context), void *context);

/* Start the network thread; it connects and keeps reconnecting until stopped. */
enum butler_status mqtt_link_start(struct mqtt_link *link);

/*
 * Publish. `done` (may be NULL) is called exactly once if this returns
 * BUTLER_OK: with BUTLER_OK on PUBACK (or at once for QoS 0), BUTLER_ERR_REMOTE
 * when the broker refused it, or BUTLER_ERR_SHUTDOWN when the link stopped
 * first. A dropped connection does not end it: libmosquitto, the one owner of
 * resends, sends it again after the next CONNACK and that PUBACK calls `done`;
 * callers must not send their own copy. Returns BUTLER_ERR_NOT_CONNECTED while the
 * broker is unreachable, BUTLER_ERR_FULL when max_inflight publishes are
 * waiting, BUTLER_ERR_INVALID for a bad topic or payload. Payload is copied.
 */
enum butler_status mqtt_link_publish(struct mqtt_link *link, const char *topic, const void *payload,
                                     size_t payload_length,
                                     const struct mqtt_publish_options *options,
                                     mqtt_publish_done done, void *context);

/* Publish and block the calling thread (never the network thread) until the
 * broker acknowledged it or `timeout_ms` passed (BUTLER_ERR_TIMEOUT: the link
 * may still deliver it later, so sending it again can duplicate it). */
enum butler_status mqtt_link_publish_wait(struct mqtt_link *link, const char *topic,
                                          const void *payload, size_t payload_length,
                                          const struct mqtt_publish_options *options,
                                          int timeout_ms);

/* Publish once and block the calling thread (never the network thread) until
 * the link settles it (PUBACK, refusal, link stopped), through any number of
 * reconnects, or until `give_up()` (checked every `check_ms`) says so:
 * BUTLER_ERR_SHUTDOWN then, the publish may still go out. Only a publish the
 * link did not take (BUTLER_ERR_NOT_CONNECTED, BUTLER_ERR_FULL, ...) returns
 * at once; that one alone may be sent again by the caller. */
enum butler_status mqtt_link_publish_settled(struct mqtt_link *link, const char *topic,
                                             const void *payload, size_t payload_length,
                                             const struct mqtt_publish_options *options,
                                             int check_ms, bool (*give_up)(void));

/* Connected, and the network loop turned within half the keepalive (at least
 * 2 s): a loop stuck in a callback sends no PINGREQ and reads no PUBACK, so
 * the broker is about to drop the session and nothing published gets through.
 * What /health reports. Any thread. */
bool mqtt_link_connected(const struct mqtt_link *link);
/* Milliseconds since the network loop's latest turn (0 before it starts). */
uint64_t mqtt_link_loop_age_ms(const struct mqtt_link *link);
/* Block until connected, stopped or `timeout_ms` passed. */
enum butler_status mqtt_link_wait_connected(struct mqtt_link *link, int timeout_ms);
/* 5 or 4 (for 3.1.1) once connected; 0 before the first CONNACK. */
int mqtt_link_protocol_version(const struct mqtt_link *link);
/* Publishes waiting for PUBACK (gauge for /metrics). */
size_t mqtt_link_inflight(const struct mqtt_link *link);

/* Publish the retained "offline" status (waiting up to `timeout_ms` for the
 * PUBACK), disconnect cleanly and stop the network thread. Idempotent. */
void mqtt_link_stop(struct mqtt_link *link, int timeout_ms);

/* Stop if needed, fail outstanding publish callbacks, free everything. */
void mqtt_link_destroy(struct mqtt_link *link);

/* True if `topic` matches the MQTT `filter` (+ and # wildcards). */
bool mqtt_topic_matches(const char *filter, const char *topic);

#endif
