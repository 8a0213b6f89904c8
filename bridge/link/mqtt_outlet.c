/*
 * The outlet (see mqtt_outlet.h): a publish-only connection on libmosquitto's
 * own thread (mosquitto_loop_start), used only while the link holds.
 */
#include "bridge/link/mqtt_outlet.h"

#include <mqtt_protocol.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/core/log.h"

#define MODULE "mqtt"

enum { OUTLET_RECONNECT_MAX_S = 5 };

struct outlet_pending {
    int mid; /* 0 = free */
    mqtt_publish_done done;
    void *context;
};

struct mqtt_outlet {
    const struct butler_config *config;
    struct mosquitto *mosq;
    void (*on_connected)(void *context);
    void *context;
    pthread_mutex_t mutex; /* guards what follows */
    bool started, connected;
    struct outlet_pending *pending; /* mqtt.max_inflight slots */
    size_t pending_max;
};

/* Fail every publish waiting for a PUBACK (callbacks without the mutex). */
static void fail_pending(struct mqtt_outlet *outlet, enum butler_status status)
{
    for (size_t i = 0; i < outlet->pending_max; i++) {
        pthread_mutex_lock(&outlet->mutex);
        struct outlet_pending slot = outlet->pending[i];
        outlet->pending[i].mid = 0;
        pthread_mutex_unlock(&outlet->mutex);
        if (slot.mid && slot.done)
            slot.done(slot.context, status);
    }
}

static void on_connect(struct mosquitto *mosq, void *object, int reason, int flags,
                       const mosquitto_property *properties)
{
    (void)mosq;
    (void)flags;
    (void)properties;
    struct mqtt_outlet *outlet = object;
    if (reason != 0) {
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "the broker refused the outlet connection (%d)",
                        reason);
        return;
    }
    LOG_INFO(MODULE, "outlet connected (publishes only, while intake is held)");
    pthread_mutex_lock(&outlet->mutex);
    outlet->connected = true;
    pthread_mutex_unlock(&outlet->mutex);
    outlet->on_connected(outlet->context);
}

static void on_disconnect(struct mosquitto *mosq, void *object, int reason,
                          const mosquitto_property *properties)
{
    (void)mosq;
    (void)reason;
    (void)properties;
    struct mqtt_outlet *outlet = object;
    pthread_mutex_lock(&outlet->mutex);
    outlet->connected = false;
    pthread_mutex_unlock(&outlet->mutex);
    /* Pending publishes stay pending: libmosquitto sends its unacknowledged
     * ones again after the loop thread's next CONNACK, and only it may (a
     * second copy from the caller reached subscribers twice). They fail only
     * at destroy. */
}

static void on_publish(struct mosquitto *mosq, void *object, int mid, int reason,
                       const mosquitto_property *properties)
{
    (void)mosq;
    (void)properties;
    struct mqtt_outlet *outlet = object;
    struct outlet_pending found = {0};
    pthread_mutex_lock(&outlet->mutex);
    for (size_t i = 0; i < outlet->pending_max && found.mid == 0; i++)
        if (outlet->pending[i].mid == mid) {
            found = outlet->pending[i];
            outlet->pending[i].mid = 0;
        }
    pthread_mutex_unlock(&outlet->mutex);
    if (found.mid && found.done)
        found.done(found.context, reason < 0x80 ? BUTLER_OK : BUTLER_ERR_REMOTE);
}

enum butler_status mqtt_outlet_create(const struct butler_config *config, int protocol_version,
                                      void (*connected)(void *context), void *context,
                                      struct mqtt_outlet **out)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    struct mqtt_outlet *outlet = calloc(1, sizeof *outlet);
    if (outlet == NULL)
        goto out;
    pthread_mutex_init(&outlet->mutex, NULL);
    outlet->config = config;
    outlet->on_connected = connected;
    outlet->context = context;
    outlet->pending_max = (size_t)config->mqtt.max_inflight;
    outlet->pending = calloc(outlet->pending_max, sizeof *outlet->pending);
    char client_id[300];
    snprintf(client_id, sizeof client_id, "%s-out", config->mqtt.client_id);
    outlet->mosq = outlet->pending ? mosquitto_new(client_id, true, outlet) : NULL;
    if (outlet->mosq == NULL)
        goto out;
    mosquitto_int_option(outlet->mosq, MOSQ_OPT_PROTOCOL_VERSION, protocol_version);
    mosquitto_int_option(outlet->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_v5_callback_set(outlet->mosq, on_connect);
    mosquitto_disconnect_v5_callback_set(outlet->mosq, on_disconnect);
    mosquitto_publish_v5_callback_set(outlet->mosq, on_publish);
    mosquitto_reconnect_delay_set(outlet->mosq, 1, OUTLET_RECONNECT_MAX_S, true);
    status = BUTLER_ERR_INVALID;
    if (config->mqtt.username[0] &&
        mosquitto_username_pw_set(outlet->mosq, config->mqtt.username,
                                  config->mqtt.password[0] ? config->mqtt.password : NULL) !=
            MOSQ_ERR_SUCCESS)
        goto out;
    if (config->mqtt.tls.enable) {
        if (mosquitto_tls_set(outlet->mosq,
                              config->mqtt.tls.ca_file[0] ? config->mqtt.tls.ca_file : NULL,
                              config->mqtt.tls.ca_file[0] ? NULL : "/etc/ssl/certs",
                              config->mqtt.tls.cert_file[0] ? config->mqtt.tls.cert_file : NULL,
                              config->mqtt.tls.key_file[0] ? config->mqtt.tls.key_file : NULL,
                              NULL) != MOSQ_ERR_SUCCESS)
            goto out;
        if (!config->mqtt.tls.verify_peer) {
            mosquitto_tls_opts_set(outlet->mosq, 0, NULL, NULL);
            mosquitto_tls_insecure_set(outlet->mosq, true);
        }
    }
    *out = outlet;
    outlet = NULL;
    status = BUTLER_OK;
out:
    mqtt_outlet_destroy(outlet);
    return status;
}

void mqtt_outlet_start(struct mqtt_outlet *outlet)
{
    pthread_mutex_lock(&outlet->mutex);
    bool start = !outlet->started;
    outlet->started = true;
    pthread_mutex_unlock(&outlet->mutex);
    if (!start)
        return;
    int rc = mosquitto_connect_async(outlet->mosq, outlet->config->mqtt.host,
                                     outlet->config->mqtt.port, outlet->config->mqtt.keepalive_s);
    if (rc != MOSQ_ERR_SUCCESS)
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "outlet: cannot reach the broker yet: %s",
                        mosquitto_strerror(rc));
    /* The loop thread reconnects by itself, also after a failed first try. */
    if (mosquitto_loop_start(outlet->mosq) != MOSQ_ERR_SUCCESS)
        LOG_ERROR(MODULE, "outlet: cannot start its thread");
}

bool mqtt_outlet_connected(struct mqtt_outlet *outlet)
{
    pthread_mutex_lock(&outlet->mutex);
    bool connected = outlet->connected;
    pthread_mutex_unlock(&outlet->mutex);
    return connected;
}

enum butler_status mqtt_outlet_publish(struct mqtt_outlet *outlet, bool v5, const char *topic,
                                       const void *payload, size_t payload_length,
                                       const struct mqtt_publish_options *options,
                                       mqtt_publish_done done, void *context)
{
    int qos = options->qos;
    mosquitto_property *properties = v5 ? mqtt_publish_properties(options) : NULL;
    enum butler_status status = BUTLER_ERR_NOT_CONNECTED;
    pthread_mutex_lock(&outlet->mutex);
    if (!outlet->connected)
        goto out;
    struct outlet_pending *slot = NULL;
    for (size_t i = 0; i < outlet->pending_max && slot == NULL; i++)
        if (outlet->pending[i].mid == 0)
            slot = &outlet->pending[i];
    status = BUTLER_ERR_FULL;
    if (qos > 0 && slot == NULL)
        goto out;
    /* Held across the call so on_publish cannot look for the mid first. */
    int mid = 0;
    int rc = mosquitto_publish_v5(outlet->mosq, &mid, topic, (int)payload_length, payload, qos,
                                  options->retain, properties);
    if (rc != MOSQ_ERR_SUCCESS) {
        status = rc == MOSQ_ERR_NO_CONN ? BUTLER_ERR_NOT_CONNECTED
                 : rc == MOSQ_ERR_NOMEM ? BUTLER_ERR_NOMEM
                 : (rc == MOSQ_ERR_OVERSIZE_PACKET || rc == MOSQ_ERR_PAYLOAD_SIZE)
                     ? BUTLER_ERR_TOO_LARGE
                     : BUTLER_ERR_INVALID;
        goto out;
    }
    status = BUTLER_OK;
    if (qos > 0) {
        *slot = (struct outlet_pending){.mid = mid, .done = done, .context = context};
        done = NULL;
    }
out:
    pthread_mutex_unlock(&outlet->mutex);
    mosquitto_property_free_all(&properties);
    if (status == BUTLER_OK && done)
        done(context, BUTLER_OK); /* QoS 0 */
    return status;
}

/* The v5 properties of a publish (NULL when none); the caller frees them. */
mosquitto_property *mqtt_publish_properties(const struct mqtt_publish_options *options)
{
    mosquitto_property *properties = NULL;
    if (options->response_topic)
        mosquitto_property_add_string(&properties, MQTT_PROP_RESPONSE_TOPIC,
                                      options->response_topic);
    if (options->correlation_data)
        mosquitto_property_add_binary(&properties, MQTT_PROP_CORRELATION_DATA,
                                      options->correlation_data,
                                      (uint16_t)options->correlation_length);
    if (options->message_expiry_s)
        mosquitto_property_add_int32(&properties, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL,
                                     options->message_expiry_s);
    if (options->content_type)
        mosquitto_property_add_string(&properties, MQTT_PROP_CONTENT_TYPE, options->content_type);
    return properties;
}

void mqtt_outlet_destroy(struct mqtt_outlet *outlet)
{
    if (outlet == NULL)
        return;
    if (outlet->mosq) {
        if (outlet->started) {
            mosquitto_disconnect_v5(outlet->mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
            /* Forced: a loop that never connected keeps retrying and would
             * not stop on its own; the outlet has no will to lose. */
            mosquitto_loop_stop(outlet->mosq, true);
        }
        mosquitto_destroy(outlet->mosq);
    }
    if (outlet->pending)
        fail_pending(outlet, BUTLER_ERR_SHUTDOWN);
    free(outlet->pending);
    pthread_mutex_destroy(&outlet->mutex);
    free(outlet);
}
