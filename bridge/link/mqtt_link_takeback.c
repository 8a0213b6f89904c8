/*
 * Publishes a hold takes back from libmosquitto (see mqtt_link_internal.h).
 *
 * libmosquitto keeps every QoS 1 publish it has not seen a PUBACK for and
 * sends it again after the next CONNACK, and it is the one that does so across
 * an ordinary reconnect (mqtt_link.c never sends its own copy). A hold is the
 * exception: the connection stays down (up to HOLD_MAX_MS) while answers go
 * out through the outlet, and a worker waiting for one of those PUBACKs keeps
 * the spool from making room, so the hold would last its full time. Then the
 * link takes them back: libmosquitto forgets them (mosquitto_reinitialise) and
 * the link sends its own copy, once, through the outlet or the next connection.
 */
#include <stdlib.h>
#include <string.h>

#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/link/mqtt_link_internal.h"

#define MODULE "mqtt"

static void copy_free(struct pending_publish *node)
{
    free(node->topic);
    free(node->payload);
    free(node->response_topic);
    free(node->correlation_data);
    free(node->content_type);
    node->topic = node->response_topic = node->content_type = NULL;
    node->payload = node->correlation_data = NULL;
    node->payload_length = 0;
    node->short_drops = 0;
}

bool mqtt_link_pending_copy(struct pending_publish *node, const char *topic, const void *payload,
                            size_t payload_length, const struct mqtt_publish_options *options)
{
    node->topic = strdup(topic);
    node->payload = malloc(payload_length ? payload_length : 1);
    node->payload_length = payload_length;
    node->options = *options;
    if (options->response_topic)
        node->response_topic = strdup(options->response_topic);
    if (options->correlation_length)
        node->correlation_data = malloc(options->correlation_length);
    if (options->content_type)
        node->content_type = strdup(options->content_type);
    if (node->topic == NULL || node->payload == NULL ||
        (options->response_topic && node->response_topic == NULL) ||
        (options->correlation_length && node->correlation_data == NULL) ||
        (options->content_type && node->content_type == NULL)) {
        copy_free(node);
        return false;
    }
    if (payload_length)
        memcpy(node->payload, payload, payload_length);
    if (options->correlation_length)
        memcpy(node->correlation_data, options->correlation_data, options->correlation_length);
    node->options.response_topic = node->response_topic;
    node->options.correlation_data = node->correlation_data;
    node->options.content_type = node->content_type;
    return true;
}

void mqtt_link_pending_release(struct mqtt_link *link, struct pending_publish *node)
{
    copy_free(node);
    node->next = link->pending_free;
    link->pending_free = node;
}

bool mqtt_link_count_drop(struct mqtt_link *link, bool short_lived)
{
    bool poisoned = false;
    pthread_mutex_lock(&link->mutex);
    for (size_t bucket = 0; bucket < PENDING_BUCKETS; bucket++)
        for (struct pending_publish *node = link->pending_buckets[bucket]; node;
             node = node->next) {
            node->short_drops = short_lived ? node->short_drops + 1 : 0;
            if (node->short_drops >= POISON_DROPS)
                poisoned = true;
        }
    pthread_mutex_unlock(&link->mutex);
    return poisoned;
}

/* Ends the publishes on `refused` (taken out of the table, mutex NOT held):
 * each `done` gets BUTLER_ERR_REMOTE, counted and logged as a refusal. */
static void end_refused(struct mqtt_link *link, struct pending_publish *refused)
{
    while (refused) {
        struct pending_publish *node = refused;
        refused = node->next;
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                        "the broker closed the connection each of the last %d times a publish to "
                        "%s was sent: taken as refused, not sent again",
                        POISON_DROPS, node->topic ? node->topic : "?");
        metrics_add(link->publish_refused_broker, 1);
        mqtt_publish_done done = node->done;
        void *context = node->context;
        pthread_mutex_lock(&link->mutex);
        mqtt_link_pending_release(link, node);
        pthread_cond_broadcast(&link->changed);
        pthread_mutex_unlock(&link->mutex);
        if (done)
            done(context, BUTLER_ERR_REMOTE);
    }
}

void mqtt_link_take_back(struct mqtt_link *link)
{
    pthread_mutex_lock(&link->mutex);
    if (link->connected || link->stopping || link->pending_count == 0) {
        pthread_mutex_unlock(&link->mutex);
        return;
    }
    size_t taken = 0;
    struct pending_publish *refused = NULL;
    for (size_t bucket = 0; bucket < PENDING_BUCKETS; bucket++) {
        while (link->pending_buckets[bucket]) {
            struct pending_publish *node = link->pending_buckets[bucket];
            link->pending_buckets[bucket] = node->next;
            if (node->short_drops >= POISON_DROPS) {
                node->next = refused;
                refused = node;
                continue;
            }
            node->next = link->taken_back;
            link->taken_back = node;
            taken++;
        }
    }
    link->taken_back_count += taken;
    link->pending_count = 0;
    /* Under the mutex: mqtt_link_publish and mqtt_link_stop use the client
     * under it too. A client that cannot be set up again is reported; the
     * next connect attempt fails and says why. */
    enum butler_status status = BUTLER_ERR_INTERNAL;
    if (mosquitto_reinitialise(link->mosq, link->config->mqtt.client_id, false, link) ==
        MOSQ_ERR_SUCCESS)
        status = mqtt_link_configure_client(link);
    pthread_mutex_unlock(&link->mutex);
    if (status != BUTLER_OK)
        LOG_ERROR(MODULE, "cannot set the MQTT client up again after taking back publishes: %s",
                  butler_status_str(status));
    metrics_add(metrics_get("butler_mqtt_publishes_taken_back_total", "", METRIC_COUNTER,
                            "Unacknowledged publishes a hold (or a publish the broker closed "
                            "the connection on) took back from the cut connection and sent "
                            "once more itself (through the outlet or the next connection)"),
                (int64_t)taken);
    LOG_WARN(MODULE, "took back %zu unacknowledged publish(es) from the cut connection", taken);
    end_refused(link, refused);
    mqtt_link_send_taken_back(link);
}

/* Callers hold link->mutex; the link is connected. Hand `node` to libmosquitto
 * again (a new packet id). BUTLER_ERR_NOT_CONNECTED: try again later. */
static enum butler_status send_on_link(struct mqtt_link *link, struct pending_publish *node)
{
    mosquitto_property *properties = link->connected_protocol == MQTT_PROTOCOL_V5
                                         ? mqtt_publish_properties(&node->options)
                                         : NULL;
    int mid = 0;
    int rc =
        mosquitto_publish_v5(link->mosq, &mid, node->topic, (int)node->payload_length,
                             node->payload, node->options.qos, node->options.retain, properties);
    mosquitto_property_free_all(&properties);
    if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_NOMEM)
        return BUTLER_ERR_NOT_CONNECTED;
    if (rc != MOSQ_ERR_SUCCESS)
        return rc == MOSQ_ERR_OVERSIZE_PACKET || rc == MOSQ_ERR_PAYLOAD_SIZE ? BUTLER_ERR_TOO_LARGE
                                                                             : BUTLER_ERR_INVALID;
    node->mid = mid;
    struct pending_publish **bucket = &link->pending_buckets[(unsigned)mid % PENDING_BUCKETS];
    node->next = *bucket;
    *bucket = node;
    link->pending_count++;
    return BUTLER_OK;
}

void mqtt_link_send_taken_back(struct mqtt_link *link)
{
    for (;;) {
        pthread_mutex_lock(&link->mutex);
        struct pending_publish *node = link->taken_back;
        struct mqtt_outlet *outlet = atomic_load(&link->holding) ? link->outlet : NULL;
        if (node == NULL || link->stopping ||
            (!link->connected && (outlet == NULL || !mqtt_outlet_connected(outlet)))) {
            pthread_mutex_unlock(&link->mutex);
            return;
        }
        link->taken_back = node->next;
        link->taken_back_count--;
        enum butler_status status;
        if (link->connected) {
            status = send_on_link(link, node);
        } else {
            bool v5 = link->protocol_version == MQTT_PROTOCOL_V5;
            pthread_mutex_unlock(&link->mutex);
            status =
                mqtt_outlet_publish(outlet, v5, node->topic, node->payload, node->payload_length,
                                    &node->options, node->done, node->context);
            pthread_mutex_lock(&link->mutex);
            if (status == BUTLER_OK)
                mqtt_link_pending_release(link, node); /* the outlet calls `done` */
        }
        if (status == BUTLER_ERR_NOT_CONNECTED || status == BUTLER_ERR_FULL) {
            node->next = link->taken_back;
            link->taken_back = node;
            link->taken_back_count++;
            pthread_mutex_unlock(&link->mutex);
            return; /* later: the next outlet or link connect, or hold turn */
        }
        mqtt_publish_done done = NULL;
        void *context = NULL;
        if (status != BUTLER_OK) { /* refused for good */
            done = node->done;
            context = node->context;
            mqtt_link_pending_release(link, node);
        }
        pthread_cond_broadcast(&link->changed);
        pthread_mutex_unlock(&link->mutex);
        if (done)
            done(context, status);
    }
}
