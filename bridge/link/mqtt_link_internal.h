/*
 * The MQTT link's state, shared by its files only (mqtt_link.c: connection and
 * publishing; mqtt_link_takeback.c: publishes taken back at a hold). Not for
 * anyone else: use mqtt_link.h.
 */
#ifndef BUTLER_BRIDGE_LINK_MQTT_LINK_INTERNAL_H
#define BUTLER_BRIDGE_LINK_MQTT_LINK_INTERNAL_H

#include <mosquitto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "bridge/core/metrics.h"
#include "bridge/link/mqtt_link.h"
#include "bridge/link/mqtt_outlet.h"

enum { PENDING_BUCKETS = 1024, SUBSCRIPTIONS_MAX = 64, STATUS_PAYLOAD_MAX = 256 };

/* A publish waiting for its PUBACK; nodes come from a fixed pool. */
struct pending_publish {
    int mid;
    mqtt_publish_done done;
    void *context;
    struct pending_publish *next;
    /* The link's own copy of what was published (owned; freed when the node
     * goes back to the pool): what a hold takes back from libmosquitto and
     * sends through the outlet (mqtt_link_takeback.c). */
    char *topic;
    unsigned char *payload;
    size_t payload_length;
    struct mqtt_publish_options options; /* its pointers point into the copies below */
    char *response_topic;
    unsigned char *correlation_data;
    char *content_type;
    /* Short-lived connections in a row that ended while this publish waited
     * for its PUBACK (mqtt_link_count_drop): a broker that closes the
     * connection on a publish it refuses (Mosquitto 2.0.11 after a refused
     * PUBACK, which the close can lose) would otherwise get it again after
     * every CONNACK, for ever. Network thread, under link->mutex. */
    unsigned short_drops;
};

struct mqtt_link {
    const struct butler_config *config;
    struct mosquitto *mosq;
    pthread_t thread;
    bool thread_started;

    pthread_mutex_t mutex; /* guards everything below */
    pthread_cond_t changed;
    bool connected;
    bool stopping;
    bool stopped;
    int protocol_version; /* MQTT_PROTOCOL_V5 or MQTT_PROTOCOL_V311 */
    int connected_protocol;

    struct pending_publish *pending_pool;
    struct pending_publish *pending_free;
    struct pending_publish *pending_buckets[PENDING_BUCKETS];
    size_t pending_count;
    /* Taken back from libmosquitto when a hold cut the connection, waiting to
     * go out through the outlet or the next connection (mqtt_link_takeback.c). */
    struct pending_publish *taken_back;
    size_t taken_back_count;

    mqtt_message_handler handler;
    void *handler_context;
    void (*connect_hook)(void *context);
    void *connect_hook_context;
    char *subscriptions[SUBSCRIPTIONS_MAX];
    size_t subscription_count;
    size_t subscribe_pending; /* SUBSCRIBEs of this connection not yet acknowledged */

    char status_topic[512];
    char online_payload[STATUS_PAYLOAD_MAX];
    char offline_payload[STATUS_PAYLOAD_MAX];

    unsigned int backoff_attempt;
    uint64_t connected_at_ms; /* monotonic, of the latest CONNACK; network thread */
    /* Monotonic ms of the network loop's latest turn: a loop stuck in a
     * callback sends no PINGREQ, so the link is not "connected" for long. */
    _Atomic uint64_t loop_turn_ms;
    /* Set by mqtt_link_abort_connection, cleared by the next CONNACK: until
     * then inbound messages are dropped unacknowledged (the socket is shut,
     * so their PUBACKs never leave and the broker sends them again). */
    atomic_bool aborted;
    /* mqtt_link_hold: stay disconnected until released (or HOLD_MAX_MS),
     * publishing through the outlet meanwhile. */
    atomic_bool holding;
    _Atomic uint64_t hold_since_ms;
    struct mqtt_outlet *outlet; /* created at the first hold; guarded by mutex */
    bool session_resumed; /* CONNACK session-present of the current connection; network thread */
    unsigned int random_state;

    struct metric *published_total;
    struct metric *publish_refused_not_connected;
    struct metric *publish_refused_full;
    struct metric *publish_refused_broker;
    struct metric *publish_refused_too_large;
    struct metric *publish_refused_invalid;
    struct metric *received_total;
    struct metric *connects_total;
    struct metric *disconnects_total;
};

/* Network thread, with link->mutex NOT held: the connection is gone and the
 * link holds, or a publish reached POISON_DROPS; take every publish still
 * waiting for a PUBACK back from libmosquitto (which forgets them:
 * mosquitto_reinitialise) so that only the link sends them again, through
 * the outlet while holding. Those at POISON_DROPS are not sent again: their
 * `done` gets BUTLER_ERR_REMOTE, as for a refusal the broker answered. */
void mqtt_link_take_back(struct mqtt_link *link);

/* Any thread, link->mutex NOT held: send what was taken back, through the
 * connection if up, else the outlet if up; what neither takes keeps waiting. */
void mqtt_link_send_taken_back(struct mqtt_link *link);

/* Publishes waiting across this many short-lived connections in a row are
 * taken as refused by the broker (mqtt_link_count_drop). */
enum { POISON_DROPS = 3, POISON_CONNECTION_MS = 2000 };

/* Network thread, link->mutex NOT held, after a connection that had its
 * CONNACK ended: a connection shorter than POISON_CONNECTION_MS adds one to
 * every waiting publish's short_drops, a longer one clears them. True when a
 * publish reached POISON_DROPS: the caller takes back (mqtt_link_take_back),
 * which ends those as refused and sends the others once more itself. */
bool mqtt_link_count_drop(struct mqtt_link *link, bool short_lived);

/* Callers hold link->mutex. Set `node`'s copy of the publish; false when out
 * of memory (nothing kept). */
bool mqtt_link_pending_copy(struct pending_publish *node, const char *topic, const void *payload,
                            size_t payload_length, const struct mqtt_publish_options *options);

/* Callers hold link->mutex. Free `node`'s copy and put it back in the pool. */
void mqtt_link_pending_release(struct mqtt_link *link, struct pending_publish *node);

/* Set the client's options, callbacks, credentials, TLS and will (at create,
 * and again after a take-back reinitialised it). */
enum butler_status mqtt_link_configure_client(struct mqtt_link *link);

#endif
