#include "bridge/link/mqtt_link.h"

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "bridge/core/clock.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/link/mqtt_link_internal.h"
#include "bridge/link/mqtt_outlet.h"
#include "bridge/store/held_messages.h"
#include "bridge/model/status_view.h"

#define MODULE "mqtt"

enum {
    TOPIC_MAX = 65535,
    LOOP_TIMEOUT_MS = 100,
    LOOP_STALE_MIN_MS = 2000,
    /* A connection that lasted this long resets the reconnect backoff. */
    STABLE_CONNECTION_MS = 10000,
    /* A hold ends after this even if nobody released it: the next refusal
     * holds again, so a forgotten release cannot keep Butler away for good. */
    HOLD_MAX_MS = 30000,
};

static atomic_int library_users;

/* ---- pending publish table (callers hold link->mutex) ---- */

static struct pending_publish *pending_take(struct mqtt_link *link, int mid)
{
    struct pending_publish **slot = &link->pending_buckets[(unsigned)mid % PENDING_BUCKETS];
    for (; *slot; slot = &(*slot)->next) {
        if ((*slot)->mid == mid) {
            struct pending_publish *found = *slot;
            *slot = found->next;
            link->pending_count--;
            return found;
        }
    }
    return NULL;
}

static void pending_release(struct mqtt_link *link, struct pending_publish *node)
{
    mqtt_link_pending_release(link, node);
}

/*
 * Fail every publish still waiting for a PUBACK. Only once libmosquitto will
 * never send them again: after the network thread ended (mqtt_link_stop) or
 * at destroy. A dropped connection does NOT fail them: libmosquitto keeps its
 * unacknowledged QoS 1 publishes and sends each again, same packet id, right
 * after the next CONNACK (resumed session or not), and that PUBACK completes
 * the pending entry. It is the one owner of resends: a caller that sent its
 * own copy as well made subscribers get every cut answer twice.
 * Callbacks run without the mutex held.
 */
static void fail_all_pending(struct mqtt_link *link, enum butler_status status)
{
    struct pending_publish *detached = NULL;
    pthread_mutex_lock(&link->mutex);
    for (size_t bucket = 0; bucket < PENDING_BUCKETS; bucket++) {
        while (link->pending_buckets[bucket]) {
            struct pending_publish *node = link->pending_buckets[bucket];
            link->pending_buckets[bucket] = node->next;
            node->next = detached;
            detached = node;
        }
    }
    link->pending_count = 0;
    while (link->taken_back) {
        struct pending_publish *node = link->taken_back;
        link->taken_back = node->next;
        node->next = detached;
        detached = node;
    }
    link->taken_back_count = 0;
    pthread_mutex_unlock(&link->mutex);
    for (struct pending_publish *node = detached; node; node = node->next)
        if (node->done)
            node->done(node->context, status);
    pthread_mutex_lock(&link->mutex);
    while (detached) {
        struct pending_publish *next = detached->next;
        pending_release(link, detached);
        detached = next;
    }
    pthread_cond_broadcast(&link->changed);
    pthread_mutex_unlock(&link->mutex);
}

/* ---- helpers ---- */

static const char *rc_text(int rc)
{
    return mosquitto_strerror(rc);
}

static unsigned int next_random(struct mqtt_link *link)
{
    return (unsigned int)rand_r(&link->random_state);
}

/* Capped exponential backoff with "equal jitter": half fixed, half random, so
 * a fleet of Butlers does not reconnect to a restarted broker in lockstep. */
static uint64_t backoff_delay_ms(struct mqtt_link *link)
{
    uint64_t delay = (uint64_t)link->config->mqtt.reconnect_min_ms;
    for (unsigned int i = 0;
         i < link->backoff_attempt && delay < (uint64_t)link->config->mqtt.reconnect_max_ms; i++)
        delay *= 2;
    if (delay > (uint64_t)link->config->mqtt.reconnect_max_ms)
        delay = (uint64_t)link->config->mqtt.reconnect_max_ms;
    if (link->backoff_attempt < 32)
        link->backoff_attempt++;
    uint64_t half = delay / 2;
    return half + (half ? next_random(link) % (half + 1) : 0);
}

/* Sleep on the condition variable so mqtt_link_stop() can cut the wait short. */
static void wait_unless_stopping(struct mqtt_link *link, uint64_t ms)
{
    struct timespec deadline;
    clock_deadline_after(CLOCK_REALTIME, ms, &deadline);
    pthread_mutex_lock(&link->mutex);
    while (!link->stopping) {
        if (pthread_cond_timedwait(&link->changed, &link->mutex, &deadline) != 0)
            break;
    }
    pthread_mutex_unlock(&link->mutex);
}

static bool is_stopping(struct mqtt_link *link)
{
    pthread_mutex_lock(&link->mutex);
    bool stopping = link->stopping;
    pthread_mutex_unlock(&link->mutex);
    return stopping;
}

/* ---- libmosquitto callbacks (network thread) ---- */

static void subscribe_all(struct mqtt_link *link)
{
    pthread_mutex_lock(&link->mutex);
    link->subscribe_pending = link->subscription_count;
    for (size_t i = 0; i < link->subscription_count; i++) {
        int rc = mosquitto_subscribe_v5(link->mosq, NULL, link->subscriptions[i], 1, 0, NULL);
        if (rc != MOSQ_ERR_SUCCESS) {
            link->subscribe_pending--;
            LOG_WARN(MODULE, "subscribe to %s failed: %s", link->subscriptions[i], rc_text(rc));
        } else
            LOG_DEBUG(MODULE, "subscribed to %s", link->subscriptions[i]);
    }
    pthread_mutex_unlock(&link->mutex);
}

static void on_connect(struct mosquitto *mosq, void *object, int reason, int flags,
                       const mosquitto_property *properties)
{
    (void)mosq;
    (void)properties;
    struct mqtt_link *link = object;
    if (reason != 0) {
        bool protocol_refused = (link->protocol_version == MQTT_PROTOCOL_V5 &&
                                 (reason == MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION ||
                                  reason == CONNACK_REFUSED_PROTOCOL_VERSION));
        if (protocol_refused) {
            LOG_WARN(MODULE, "broker refused MQTT v5; falling back to MQTT 3.1.1");
            link->protocol_version = MQTT_PROTOCOL_V311;
            mosquitto_int_option(link->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
        } else {
            LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "broker refused the connection: %s (%d)",
                            link->protocol_version == MQTT_PROTOCOL_V5
                                ? mosquitto_reason_string(reason)
                                : mosquitto_connack_string(reason),
                            reason);
        }
        return; /* the loop sees the broker close the socket and reconnects */
    }
    LOG_INFO(MODULE, "connected to %s:%d as %s (MQTT %s, session %s)", link->config->mqtt.host,
             link->config->mqtt.port, link->config->mqtt.client_id,
             link->protocol_version == MQTT_PROTOCOL_V5 ? "5" : "3.1.1",
             (flags & 1) ? "resumed" : "new");
    metrics_add(link->connects_total, 1);
    atomic_store(&link->aborted, false);
    /* The backoff is reset only once this connection has stayed up a while
     * (network_thread): a broker that accepts and then drops Butler at once
     * (a packet it refuses, an ACL) must not get a reconnect storm. */
    link->connected_at_ms = clock_monotonic_ms();
    link->session_resumed = (flags & 1) != 0;
    /* Before any message of this connection: a resumed session may resend
     * what was spooled but not acknowledged. */
    held_messages_connected(link->session_resumed);
    /* With a log callback set, libmosquitto formats a debug line (malloc +
     * vsnprintf + free) for every packet it sends or receives, six per task
     * start, only for on_log to drop it. Once connected, listen only when debug
     * logging is on; the callback is back before every connect attempt, where
     * its errors (TLS, DNS) are the useful ones. */
    if (!log_enabled(LOG_LEVEL_DEBUG))
        mosquitto_log_callback_set(link->mosq, NULL);
    subscribe_all(link);
    int rc = mosquitto_publish_v5(link->mosq, NULL, link->status_topic,
                                  (int)strlen(link->online_payload), link->online_payload, 1, true,
                                  NULL);
    if (rc != MOSQ_ERR_SUCCESS)
        LOG_WARN(MODULE, "publishing online status failed: %s", rc_text(rc));
    pthread_mutex_lock(&link->mutex);
    link->connected = true;
    link->connected_protocol = link->protocol_version;
    pthread_cond_broadcast(&link->changed);
    pthread_mutex_unlock(&link->mutex);
    mqtt_link_send_taken_back(link); /* what a hold took back and the outlet did not send */
    status_view_note_client(STATUS_CLIENT_BROKER, true, NULL);
    if (link->connect_hook)
        link->connect_hook(link->connect_hook_context);
}

/* Network thread. Once every subscription of this connection is acknowledged,
 * say so: from then on nothing published to a command topic is missed (tests
 * and operators wait for this line, not for the CONNACK). */
static void on_subscribe(struct mosquitto *mosq, void *object, int mid, int qos_count,
                         const int *granted_qos, const mosquitto_property *properties)
{
    (void)mosq;
    (void)mid;
    (void)properties;
    struct mqtt_link *link = object;
    for (int i = 0; i < qos_count; i++)
        if (granted_qos[i] >= 0x80)
            LOG_ERROR(MODULE, "the broker refused a subscription (reason %d)", granted_qos[i]);
    pthread_mutex_lock(&link->mutex);
    bool all = link->subscribe_pending > 0 && --link->subscribe_pending == 0;
    size_t count = link->subscription_count;
    pthread_mutex_unlock(&link->mutex);
    if (all)
        LOG_INFO(MODULE, "all %zu subscriptions acknowledged", count);
}

static void on_disconnect(struct mosquitto *mosq, void *object, int reason,
                          const mosquitto_property *properties)
{
    (void)mosq;
    (void)properties;
    struct mqtt_link *link = object;
    pthread_mutex_lock(&link->mutex);
    bool was_connected = link->connected;
    link->connected = false;
    bool stopping = link->stopping;
    pthread_cond_broadcast(&link->changed);
    pthread_mutex_unlock(&link->mutex);
    /* Pending publishes stay pending: libmosquitto sends them again after the
     * next CONNACK (see fail_all_pending). */
    if (was_connected) {
        status_view_note_client(STATUS_CLIENT_BROKER, false, rc_text(reason));
        metrics_add(link->disconnects_total, 1);
        if (stopping)
            LOG_INFO(MODULE, "disconnected from broker");
        else
            LOG_WARN(MODULE, "lost the broker connection: %s", rc_text(reason));
    }
}

static void on_publish(struct mosquitto *mosq, void *object, int mid, int reason,
                       const mosquitto_property *properties)
{
    (void)mosq;
    (void)properties;
    struct mqtt_link *link = object;
    pthread_mutex_lock(&link->mutex);
    struct pending_publish *node = pending_take(link, mid);
    mqtt_publish_done done = node ? node->done : NULL;
    void *context = node ? node->context : NULL;
    if (node)
        pending_release(link, node);
    pthread_cond_broadcast(&link->changed);
    pthread_mutex_unlock(&link->mutex);
    if (reason >= 0x80) {
        /* Refused for good (not authorized, quota, ...): not a reason to send
         * it again; the caller decides what the refusal means. */
        metrics_add(link->publish_refused_broker, 1);
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "the broker refused publish %d: %s (%d)", mid,
                        mosquitto_reason_string(reason), reason);
    }
    if (done)
        done(context, reason < 0x80 ? BUTLER_OK : BUTLER_ERR_REMOTE);
}

static void on_message(struct mosquitto *mosq, void *object, const struct mosquitto_message *msg,
                       const mosquitto_property *properties)
{
    (void)mosq;
    struct mqtt_link *link = object;
    metrics_add(link->received_total, 1);
    if (link->handler == NULL || atomic_load(&link->aborted))
        return;
    struct mqtt_message message = {
        .topic = msg->topic,
        .payload = msg->payload,
        .payload_length = (size_t)msg->payloadlen,
        .qos = msg->qos,
        .retain = msg->retain,
        .message_id = (uint16_t)msg->mid,
        .session_resumed = link->session_resumed,
    };
    char *response_topic = NULL;
    void *correlation = NULL;
    uint16_t correlation_length = 0;
    if (properties) {
        if (mosquitto_property_read_string(properties, MQTT_PROP_RESPONSE_TOPIC, &response_topic,
                                           false))
            message.response_topic = response_topic;
        if (mosquitto_property_read_binary(properties, MQTT_PROP_CORRELATION_DATA, &correlation,
                                           &correlation_length, false)) {
            message.correlation_data = correlation;
            message.correlation_length = correlation_length;
        }
    }
    link->handler(&message, link->handler_context);
    free(response_topic);
    free(correlation);
}

static void on_log(struct mosquitto *mosq, void *object, int level, const char *text)
{
    (void)mosq;
    (void)object;
    if (level == MOSQ_LOG_ERR)
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "libmosquitto: %s", text);
    else
        LOG_DEBUG(MODULE, "libmosquitto: %s", text);
}

/* ---- network thread ---- */

static int connect_once(struct mqtt_link *link)
{
    mosquitto_property *properties = NULL;
    if (link->protocol_version == MQTT_PROTOCOL_V5)
        mosquitto_property_add_int32(&properties, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                     (uint32_t)link->config->mqtt.session_expiry_s);
    int rc = mosquitto_connect_bind_v5(link->mosq, link->config->mqtt.host, link->config->mqtt.port,
                                       link->config->mqtt.keepalive_s, NULL, properties);
    mosquitto_property_free_all(&properties);
    return rc;
}

/*
 * Owns the socket: connects, runs mosquitto_loop() and reconnects with backoff.
 * We run our own loop rather than mosquitto_loop_start() to control the
 * backoff (jitter) and the v5 -> 3.1.1 fallback; mosquitto_threaded_set()
 * keeps libmosquitto's "queue, do not write from the callback" behaviour, so
 * a QoS 1 PUBACK still leaves only after on_message has returned.
 */
static void *network_thread(void *argument)
{
    struct mqtt_link *link = argument;
    bool have_socket = false;
    while (!is_stopping(link)) {
        atomic_store(&link->loop_turn_ms, clock_monotonic_ms());
        if (!have_socket && atomic_load(&link->holding) &&
            clock_monotonic_ms() - atomic_load(&link->hold_since_ms) < HOLD_MAX_MS) {
            mqtt_link_send_taken_back(link); /* the outlet may have room again */
            wait_unless_stopping(link, LOOP_TIMEOUT_MS);
            continue;
        }
        if (!have_socket) {
            mosquitto_log_callback_set(link->mosq, on_log);
            int rc = connect_once(link);
            if (rc != MOSQ_ERR_SUCCESS) {
                LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "cannot reach broker %s:%d: %s",
                                link->config->mqtt.host, link->config->mqtt.port, rc_text(rc));
                wait_unless_stopping(link, backoff_delay_ms(link));
                continue;
            }
            have_socket = true;
        }
        int rc = mosquitto_loop(link->mosq, LOOP_TIMEOUT_MS, 1);
        if (rc != MOSQ_ERR_SUCCESS) {
            have_socket = false;
            pthread_mutex_lock(&link->mutex);
            bool was_connected = link->connected;
            link->connected = false;
            pthread_cond_broadcast(&link->changed);
            pthread_mutex_unlock(&link->mutex);
            if (was_connected) {
                LOG_WARN(MODULE, "broker connection closed: %s", rc_text(rc));
                status_view_note_client(STATUS_CLIENT_BROKER, false, rc_text(rc));
            }
            bool had_connack = link->connected_at_ms != 0;
            uint64_t lasted_ms = had_connack ? clock_monotonic_ms() - link->connected_at_ms : 0;
            if (had_connack && lasted_ms >= STABLE_CONNECTION_MS)
                link->backoff_attempt = 0;
            /* A publish the broker closes the connection on (its refusal lost
             * with the close) would otherwise be sent after every CONNACK. */
            bool poisoned =
                had_connack && mqtt_link_count_drop(link, lasted_ms < POISON_CONNECTION_MS);
            link->connected_at_ms = 0;
            uint64_t delay_ms = backoff_delay_ms(link);
            if (had_connack) /* the step shows whether a stable connection reset it */
                LOG_INFO(MODULE, "reconnecting in %llu ms (backoff step %u)",
                         (unsigned long long)delay_ms, link->backoff_attempt);
            mosquitto_disconnect(link->mosq);
            if (atomic_load(&link->holding) || poisoned)
                mqtt_link_take_back(link);
            wait_unless_stopping(link, delay_ms);
        }
    }
    /* Drain the clean DISCONNECT written by mqtt_link_stop(). */
    for (int i = 0; i < 10 && have_socket; i++)
        if (mosquitto_loop(link->mosq, 50, 1) != MOSQ_ERR_SUCCESS)
            break;
    return NULL;
}

/* ---- public API ---- */

enum butler_status mqtt_link_configure_client(struct mqtt_link *link)
{
    const struct butler_config *config = link->config;
    mosquitto_int_option(link->mosq, MOSQ_OPT_PROTOCOL_VERSION, link->protocol_version);
    mosquitto_int_option(link->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_int_option(link->mosq, MOSQ_OPT_SEND_MAXIMUM, 1000);
    mosquitto_int_option(link->mosq, MOSQ_OPT_RECEIVE_MAXIMUM, 100);
    mosquitto_threaded_set(link->mosq, true);
    mosquitto_connect_v5_callback_set(link->mosq, on_connect);
    mosquitto_disconnect_v5_callback_set(link->mosq, on_disconnect);
    mosquitto_publish_v5_callback_set(link->mosq, on_publish);
    mosquitto_subscribe_v5_callback_set(link->mosq, on_subscribe);
    mosquitto_message_v5_callback_set(link->mosq, on_message);
    mosquitto_log_callback_set(link->mosq, on_log);

    if (config->mqtt.username[0] &&
        mosquitto_username_pw_set(link->mosq, config->mqtt.username,
                                  config->mqtt.password[0] ? config->mqtt.password : NULL) !=
            MOSQ_ERR_SUCCESS) {
        LOG_ERROR(MODULE, "cannot set the MQTT username");
        return BUTLER_ERR_INVALID;
    }
    if (config->mqtt.tls.enable) {
        int rc = mosquitto_tls_set(
            link->mosq, config->mqtt.tls.ca_file[0] ? config->mqtt.tls.ca_file : NULL,
            config->mqtt.tls.ca_file[0] ? NULL : "/etc/ssl/certs",
            config->mqtt.tls.cert_file[0] ? config->mqtt.tls.cert_file : NULL,
            config->mqtt.tls.key_file[0] ? config->mqtt.tls.key_file : NULL, NULL);
        if (rc != MOSQ_ERR_SUCCESS) {
            LOG_ERROR(MODULE, "MQTT TLS setup failed: %s", rc_text(rc));
            return BUTLER_ERR_INVALID;
        }
        if (!config->mqtt.tls.verify_peer) {
            mosquitto_tls_opts_set(link->mosq, 0, NULL, NULL);
            mosquitto_tls_insecure_set(link->mosq, true);
        }
    }

    if (mosquitto_will_set_v5(link->mosq, link->status_topic, (int)strlen(link->offline_payload),
                              link->offline_payload, 1, true, NULL) != MOSQ_ERR_SUCCESS) {
        LOG_ERROR(MODULE, "cannot set the last will on %s", link->status_topic);
        return BUTLER_ERR_INVALID;
    }
    return BUTLER_OK;
}

enum butler_status mqtt_link_create(const struct butler_config *config, uint64_t started_at_wall_ms,
                                    struct mqtt_link **out)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    struct mqtt_link *link = calloc(1, sizeof *link);
    if (link == NULL)
        goto out;
    link->config = config;
    pthread_mutex_init(&link->mutex, NULL);
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_cond_init(&link->changed, &attributes);
    pthread_condattr_destroy(&attributes);
    link->protocol_version = MQTT_PROTOCOL_V5;
    link->random_state = (unsigned int)(clock_monotonic_ms() ^ (uintptr_t)link);

    size_t pool_size = (size_t)config->mqtt.max_inflight;
    link->pending_pool = calloc(pool_size, sizeof *link->pending_pool);
    if (link->pending_pool == NULL)
        goto out;
    for (size_t i = 0; i < pool_size; i++)
        pending_release(link, &link->pending_pool[i]);

    if (atomic_fetch_add(&library_users, 1) == 0)
        mosquitto_lib_init();
    link->mosq = mosquitto_new(config->mqtt.client_id, false, link);
    if (link->mosq == NULL) {
        status = BUTLER_ERR_INTERNAL;
        goto out;
    }
    status = BUTLER_ERR_INVALID;
    char started_at[32];
    clock_format_iso8601(started_at_wall_ms, started_at, sizeof started_at);
    snprintf(link->status_topic, sizeof link->status_topic, "%s/status", config->mqtt.topic_root);
    snprintf(link->online_payload, sizeof link->online_payload,
             "{\"state\":\"online\",\"version\":\"%s\",\"startedAt\":\"%s\"}", BUTLER_VERSION,
             started_at);
    snprintf(link->offline_payload, sizeof link->offline_payload,
             "{\"state\":\"offline\",\"version\":\"%s\",\"startedAt\":\"%s\"}", BUTLER_VERSION,
             started_at);
    status = mqtt_link_configure_client(link);
    if (status != BUTLER_OK)
        goto out;

    link->published_total =
        metrics_get("butler_mqtt_published_total", "", METRIC_COUNTER,
                    "Messages Butler published and the broker accepted for delivery");
    link->publish_refused_not_connected =
        metrics_get("butler_mqtt_publish_refused_total", "reason=\"not_connected\"", METRIC_COUNTER,
                    "Publishes refused by the MQTT link");
    link->publish_refused_full =
        metrics_get("butler_mqtt_publish_refused_total", "reason=\"inflight_full\"", METRIC_COUNTER,
                    "Publishes refused by the MQTT link");
    link->publish_refused_broker =
        metrics_get("butler_mqtt_publish_refused_total", "reason=\"broker\"", METRIC_COUNTER,
                    "Publishes refused by the MQTT link");
    link->publish_refused_too_large =
        metrics_get("butler_mqtt_publish_refused_total", "reason=\"too_large\"", METRIC_COUNTER,
                    "Publishes refused by the MQTT link");
    link->publish_refused_invalid =
        metrics_get("butler_mqtt_publish_refused_total", "reason=\"invalid\"", METRIC_COUNTER,
                    "Publishes refused by the MQTT link");
    link->received_total = metrics_get("butler_mqtt_received_total", "", METRIC_COUNTER,
                                       "Messages received from the broker");
    link->connects_total = metrics_get("butler_mqtt_connects_total", "", METRIC_COUNTER,
                                       "Successful connections to the broker");
    link->disconnects_total =
        metrics_get("butler_mqtt_disconnects_total", "", METRIC_COUNTER, "Lost broker connections");
    *out = link;
    link = NULL;
    status = BUTLER_OK;
out:
    if (link)
        mqtt_link_destroy(link);
    return status;
}

void mqtt_link_set_handler(struct mqtt_link *link, mqtt_message_handler handler, void *context)
{
    link->handler = handler;
    link->handler_context = context;
}

void mqtt_link_set_connect_hook(struct mqtt_link *link, void (*hook)(void *context), void *context)
{
    link->connect_hook = hook;
    link->connect_hook_context = context;
}

enum butler_status mqtt_link_add_subscription(struct mqtt_link *link, const char *filter,
                                              bool shared)
{
    if (link->subscription_count >= SUBSCRIPTIONS_MAX)
        return BUTLER_ERR_FULL;
    const char *group = link->config->mqtt.share_group;
    size_t length = strlen(filter) + strlen(group) + 16;
    char *full = malloc(length);
    if (full == NULL)
        return BUTLER_ERR_NOMEM;
    if (shared && group[0])
        snprintf(full, length, "$share/%s/%s", group, filter);
    else
        snprintf(full, length, "%s", filter);
    link->subscriptions[link->subscription_count++] = full;
    return BUTLER_OK;
}

void mqtt_link_abort_connection(struct mqtt_link *link)
{
    int fd = mosquitto_socket(link->mosq);
    atomic_store(&link->aborted, true);
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
    LOG_WARN(MODULE, "connection aborted so an unrecorded message is not acknowledged");
}

/* Outlet thread, after its CONNACK: wake publishers waiting for a way out
 * and let the connect hook send what waits (publish.c's parked answers). */
static void outlet_connected(void *context)
{
    struct mqtt_link *link = context;
    pthread_mutex_lock(&link->mutex);
    pthread_cond_broadcast(&link->changed);
    pthread_mutex_unlock(&link->mutex);
    mqtt_link_send_taken_back(link);
    if (link->connect_hook && atomic_load(&link->holding))
        link->connect_hook(link->connect_hook_context);
}

void mqtt_link_hold(struct mqtt_link *link)
{
    atomic_store(&link->hold_since_ms, clock_monotonic_ms());
    bool was_holding = atomic_exchange(&link->holding, true);
    pthread_mutex_lock(&link->mutex);
    if (link->outlet == NULL &&
        mqtt_outlet_create(link->config, link->protocol_version, outlet_connected, link,
                           &link->outlet) != BUTLER_OK)
        LOG_ERROR(MODULE, "cannot create the outlet: answers wait for the hold to end");
    struct mqtt_outlet *outlet = link->outlet;
    pthread_mutex_unlock(&link->mutex);
    mqtt_link_abort_connection(link);
    if (!was_holding)
        LOG_WARN(MODULE, "intake held: disconnected until the spool has room; publishing "
                         "through the outlet meanwhile");
    if (outlet)
        mqtt_outlet_start(outlet);
}

void mqtt_link_release_hold(struct mqtt_link *link)
{
    if (!atomic_exchange(&link->holding, false))
        return;
    LOG_INFO(MODULE, "intake released: reconnecting");
    pthread_mutex_lock(&link->mutex);
    pthread_cond_broadcast(&link->changed);
    pthread_mutex_unlock(&link->mutex);
}

bool mqtt_link_holding(const struct mqtt_link *link)
{
    return atomic_load(&((struct mqtt_link *)link)->holding);
}

void mqtt_link_unsubscribe_all(struct mqtt_link *link)
{
    pthread_mutex_lock(&link->mutex);
    size_t count = link->subscription_count;
    link->subscription_count = 0; /* no resubscribe after a reconnect */
    bool connected = link->connected;
    pthread_mutex_unlock(&link->mutex);
    for (size_t i = 0; i < count; i++) {
        if (connected)
            mosquitto_unsubscribe_v5(link->mosq, NULL, link->subscriptions[i], NULL);
        free(link->subscriptions[i]);
        link->subscriptions[i] = NULL;
    }
}

enum butler_status mqtt_link_start(struct mqtt_link *link)
{
    if (pthread_create(&link->thread, NULL, network_thread, link) != 0)
        return BUTLER_ERR_INTERNAL;
    link->thread_started = true;
    return BUTLER_OK;
}

/* While holding: the same publish through the outlet (see mqtt_outlet.h). */
static enum butler_status publish_via_outlet(struct mqtt_link *link, struct mqtt_outlet *outlet,
                                             bool v5, const char *topic, const void *payload,
                                             size_t payload_length,
                                             const struct mqtt_publish_options *options,
                                             mqtt_publish_done done, void *context)
{
    enum butler_status status =
        mqtt_outlet_publish(outlet, v5, topic, payload, payload_length, options, done, context);
    if (status == BUTLER_OK)
        metrics_add(link->published_total, 1);
    else if (status == BUTLER_ERR_FULL)
        metrics_add(link->publish_refused_full, 1);
    return status;
}

enum butler_status mqtt_link_publish(struct mqtt_link *link, const char *topic, const void *payload,
                                     size_t payload_length,
                                     const struct mqtt_publish_options *options,
                                     mqtt_publish_done done, void *context)
{
    static const struct mqtt_publish_options defaults = {.qos = 1};
    if (options == NULL)
        options = &defaults;
    if (topic == NULL || topic[0] == '\0' || strlen(topic) > TOPIC_MAX ||
        mosquitto_pub_topic_check(topic) != MOSQ_ERR_SUCCESS ||
        payload_length > 256u * 1024 * 1024 ||
        (options->response_topic &&
         mosquitto_pub_topic_check(options->response_topic) != MOSQ_ERR_SUCCESS)) {
        metrics_add(link->publish_refused_invalid, 1);
        return BUTLER_ERR_INVALID;
    }

    enum butler_status status = BUTLER_OK;
    mosquitto_property *properties = NULL;
    pthread_mutex_lock(&link->mutex);
    if (!link->connected && !link->stopped && atomic_load(&link->holding) && link->outlet &&
        mqtt_outlet_connected(link->outlet)) {
        struct mqtt_outlet *outlet = link->outlet;
        bool v5 = link->protocol_version == MQTT_PROTOCOL_V5;
        pthread_mutex_unlock(&link->mutex);
        return publish_via_outlet(link, outlet, v5, topic, payload, payload_length, options, done,
                                  context);
    }
    if (!link->connected || link->stopped) {
        status = BUTLER_ERR_NOT_CONNECTED;
        metrics_add(link->publish_refused_not_connected, 1);
        goto out;
    }
    struct pending_publish *node = NULL;
    if (options->qos > 0) {
        if (link->pending_free == NULL) {
            status = BUTLER_ERR_FULL;
            metrics_add(link->publish_refused_full, 1);
            goto out;
        }
        node = link->pending_free;
        link->pending_free = node->next;
        node->next = NULL;
        /* The link's own copy, for a hold to take back (mqtt_link_takeback.c). */
        if (!mqtt_link_pending_copy(node, topic, payload, payload_length, options)) {
            pending_release(link, node);
            status = BUTLER_ERR_NOMEM;
            goto out;
        }
    }
    if (link->connected_protocol == MQTT_PROTOCOL_V5)
        properties = mqtt_publish_properties(options);
    /* The mutex is held across the call so that on_publish, which takes the
     * same mutex, cannot look for this mid before it is registered. */
    int mid = 0;
    int rc = mosquitto_publish_v5(link->mosq, &mid, topic, (int)payload_length, payload,
                                  options->qos, options->retain, properties);
    if (rc != MOSQ_ERR_SUCCESS) {
        if (node)
            pending_release(link, node);
        /* Larger than the broker's Maximum Packet Size (CONNACK): final. */
        bool too_large = rc == MOSQ_ERR_OVERSIZE_PACKET || rc == MOSQ_ERR_PAYLOAD_SIZE;
        status = (rc == MOSQ_ERR_NO_CONN) ? BUTLER_ERR_NOT_CONNECTED
                 : (rc == MOSQ_ERR_NOMEM) ? BUTLER_ERR_NOMEM
                 : too_large              ? BUTLER_ERR_TOO_LARGE
                                          : BUTLER_ERR_INVALID;
        if (status == BUTLER_ERR_TOO_LARGE)
            metrics_add(link->publish_refused_too_large, 1);
        else if (status == BUTLER_ERR_INVALID)
            metrics_add(link->publish_refused_invalid, 1);
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "publish to %s failed: %s", topic, rc_text(rc));
        goto out;
    }
    metrics_add(link->published_total, 1);
    if (node) {
        node->mid = mid;
        node->done = done;
        node->context = context;
        struct pending_publish **bucket = &link->pending_buckets[(unsigned)mid % PENDING_BUCKETS];
        node->next = *bucket;
        *bucket = node;
        link->pending_count++;
        done = NULL;
    }
out:
    pthread_mutex_unlock(&link->mutex);
    mosquitto_property_free_all(&properties);
    if (status == BUTLER_OK && done)
        done(context, BUTLER_OK); /* QoS 0: nothing to wait for */
    return status;
}

uint64_t mqtt_link_loop_age_ms(const struct mqtt_link *link)
{
    uint64_t turn = atomic_load(&((struct mqtt_link *)link)->loop_turn_ms);
    uint64_t now = clock_monotonic_ms();
    return link->thread_started && now > turn ? now - turn : 0;
}

/* Half the keepalive: by then a PINGREQ was due, and the broker drops the
 * session at one and a half. Never below LOOP_STALE_MIN_MS (a slow disk under
 * the spool write is not an outage). */
static uint64_t loop_stale_ms(const struct mqtt_link *link)
{
    uint64_t half = (uint64_t)link->config->mqtt.keepalive_s * 500u;
    return half > LOOP_STALE_MIN_MS ? half : LOOP_STALE_MIN_MS;
}

bool mqtt_link_connected(const struct mqtt_link *link)
{
    struct mqtt_link *mutable_link = (struct mqtt_link *)link;
    pthread_mutex_lock(&mutable_link->mutex);
    bool connected = link->connected;
    pthread_mutex_unlock(&mutable_link->mutex);
    return connected && mqtt_link_loop_age_ms(link) < loop_stale_ms(link);
}

int mqtt_link_protocol_version(const struct mqtt_link *link)
{
    struct mqtt_link *mutable_link = (struct mqtt_link *)link;
    pthread_mutex_lock(&mutable_link->mutex);
    int version = link->connected_protocol == MQTT_PROTOCOL_V5     ? 5
                  : link->connected_protocol == MQTT_PROTOCOL_V311 ? 4
                                                                   : 0;
    pthread_mutex_unlock(&mutable_link->mutex);
    return version;
}

size_t mqtt_link_inflight(const struct mqtt_link *link)
{
    struct mqtt_link *mutable_link = (struct mqtt_link *)link;
    pthread_mutex_lock(&mutable_link->mutex);
    size_t count = link->pending_count + link->taken_back_count;
    pthread_mutex_unlock(&mutable_link->mutex);
    return count;
}

enum butler_status mqtt_link_wait_connected(struct mqtt_link *link, int timeout_ms)
{
    struct timespec deadline;
    clock_deadline_after(CLOCK_REALTIME, (uint64_t)timeout_ms, &deadline);
    pthread_mutex_lock(&link->mutex);
    while (!link->connected && !link->stopping &&
           !(atomic_load(&link->holding) && link->outlet && mqtt_outlet_connected(link->outlet)))
        if (pthread_cond_timedwait(&link->changed, &link->mutex, &deadline) != 0)
            break;
    bool outlet_up =
        atomic_load(&link->holding) && link->outlet && mqtt_outlet_connected(link->outlet);
    enum butler_status status = link->connected || outlet_up ? BUTLER_OK
                                : link->stopping             ? BUTLER_ERR_SHUTDOWN
                                                             : BUTLER_ERR_TIMEOUT;
    pthread_mutex_unlock(&link->mutex);
    return status;
}

void mqtt_link_stop(struct mqtt_link *link, int timeout_ms)
{
    if (!link->thread_started)
        return;
    if (mqtt_link_connected(link)) {
        enum butler_status status = mqtt_link_publish_wait(
            link, link->status_topic, link->offline_payload, strlen(link->offline_payload),
            &(struct mqtt_publish_options){.qos = 1, .retain = true}, timeout_ms);
        if (status != BUTLER_OK)
            LOG_WARN(MODULE, "offline status not acknowledged: %s", butler_status_str(status));
    }
    pthread_mutex_lock(&link->mutex);
    link->stopping = true;
    link->stopped = true;
    /* A normal DISCONNECT: the broker discards the will, which is right since
     * "offline" was published above. Under the mutex: a take-back may be
     * setting the client up again on the network thread. */
    mosquitto_disconnect_v5(link->mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
    pthread_cond_broadcast(&link->changed);
    pthread_mutex_unlock(&link->mutex);
    pthread_join(link->thread, NULL);
    link->thread_started = false;
    /* No loop will send them again now: their work stays unfinished (in the
     * spool) and nobody waits past this point. */
    fail_all_pending(link, BUTLER_ERR_SHUTDOWN);
}

void mqtt_link_destroy(struct mqtt_link *link)
{
    if (link == NULL)
        return;
    mqtt_link_stop(link, 1000);
    /* Fail what never got a PUBACK so no caller waits forever. */
    fail_all_pending(link, BUTLER_ERR_SHUTDOWN);
    if (link->mosq) {
        mosquitto_destroy(link->mosq);
        if (atomic_fetch_sub(&library_users, 1) == 1)
            mosquitto_lib_cleanup();
    }
    mqtt_outlet_destroy(link->outlet);
    for (size_t i = 0; i < link->subscription_count; i++)
        free(link->subscriptions[i]);
    free(link->pending_pool);
    pthread_mutex_destroy(&link->mutex);
    pthread_cond_destroy(&link->changed);
    free(link);
}
