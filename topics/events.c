/*
 * Sense events; see events.h.
 *
 * Fast path (qrs.url empty): the UDP publisher thread publishes with
 * mqtt_link_publish() and does not wait for the PUBACK, which is what lets it
 * keep up with tens of thousands of datagrams a second; nothing is spooled
 * there. When the outbound window is full the event waits in the UDP ring
 * (the ingress offers it again). When the broker is down, or the ring is
 * above its threshold, the ingress spills the event here instead: it is
 * recorded in the spool and queued on the backlog, which is sent, oldest
 * first, before any new event. A publish that was sent but never
 * acknowledged (the connection dropped) comes back through outbound_done()
 * and is spooled and backlogged the same way.
 *
 * QRS path: the event is copied to a worker (bounded worker queue; when full
 * the event waits in the UDP ring). The worker publishes without waiting for
 * the broker, parking the event in spool and backlog while the broker is
 * away. Every QRS call there has a short timeout
 * and one attempt, and a call starts only if it can finish within the
 * event's EVENTS_ENRICH_BUDGET_MS, so enrichment never holds an event long.
 */
#include "topics/events.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge/core/clock.h"
#include "bridge/clients/http_client.h"
#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/link/mqtt_link.h"
#include "bridge/clients/qrs.h"
#include "bridge/store/spool.h"
#include "bridge/core/worker_pool.h"
#include "topics/topics.h"

#define MODULE "events"

enum {
    TOPIC_MAX = 512,
    QRS_CALL_TIMEOUT_MS = 1500,
    QRS_CONNECT_TIMEOUT_MS = 1000,
    QRS_LAG_PAUSE_MS = 500,
    QRS_LAG_TRIES = 3,
    PATH_MAX_BYTES = 512,
    LEGACY_MAX = 2,
};

static struct butler_runtime *events_runtime;
/* The QRS settings enrichment uses: the configured ones with short timeouts
 * and a single attempt (we retry ourselves within the budget). */
static struct butler_config enrich_config;

/* ---------------------------------------------------------------- JSON */

static void add_field(cJSON *object, const char *name, const struct udp_event *event,
                      enum udp_field field)
{
    cJSON_AddStringToObject(object, name, event->fields[field]);
}

cJSON *events_build_json(const struct udp_event *event, uint64_t received_wall_ms, const cJSON *qrs,
                         const char *enrich_error)
{
    char received[32];
    clock_format_iso8601(received_wall_ms, received, sizeof received);
    cJSON *object = cJSON_CreateObject();
    if (object == NULL)
        return NULL;
    if (event->type == UDP_EVENT_ENGINE_RELOAD_FAILED) {
        cJSON_AddStringToObject(object, "type", "engine-reload-failed");
        add_field(object, "host", event, UDP_FIELD_HOST);
        add_field(object, "appId", event, UDP_FIELD_APP_ID);
        add_field(object, "sessionId", event, UDP_FIELD_SESSION_ID);
        add_field(object, "userDirectory", event, UDP_FIELD_USER_DIRECTORY);
        add_field(object, "userId", event, UDP_FIELD_USER_ID);
        add_field(object, "logTimestamp", event, UDP_FIELD_LOG_TIMESTAMP);
        add_field(object, "level", event, UDP_FIELD_LEVEL);
        add_field(object, "message", event, UDP_FIELD_MESSAGE);
    } else {
        cJSON_AddStringToObject(object, "type", udp_event_outcome(event->type));
        add_field(object, "host", event, UDP_FIELD_HOST);
        add_field(object, "taskName", event, UDP_FIELD_TASK_NAME);
        add_field(object, "appName", event, UDP_FIELD_APP_NAME);
        add_field(object, "user", event, UDP_FIELD_USER);
        add_field(object, "taskId", event, UDP_FIELD_TASK_ID);
        add_field(object, "appId", event, UDP_FIELD_APP_ID);
        add_field(object, "logTimestamp", event, UDP_FIELD_LOG_TIMESTAMP);
        add_field(object, "level", event, UDP_FIELD_LEVEL);
        add_field(object, "executionId", event, UDP_FIELD_EXECUTION_ID);
        add_field(object, "message", event, UDP_FIELD_MESSAGE);
    }
    cJSON_AddStringToObject(object, "receivedAt", received);
    if (enrich_error) {
        cJSON_AddNullToObject(object, "qrs");
        cJSON_AddStringToObject(object, "enrichError", enrich_error);
    } else if (qrs) {
        cJSON_AddItemToObject(object, "qrs", cJSON_Duplicate(qrs, true));
    }
    return object;
}

enum butler_status events_topic(const char *root, const struct udp_event *event, char *out,
                                size_t out_size)
{
    int written;
    if (event->type == UDP_EVENT_ENGINE_RELOAD_FAILED) {
        /* An empty app id would make an empty topic level; "-" is clearer. */
        const char *app_id = event->fields[UDP_FIELD_APP_ID];
        written = snprintf(out, out_size, "%s/events/engine/reload-failed/%s", root,
                           app_id[0] ? app_id : "-");
    } else {
        written = snprintf(out, out_size, "%s/events/task/%s/%s", root,
                           udp_event_outcome(event->type), event->fields[UDP_FIELD_TASK_ID]);
    }
    return (written < 0 || (size_t)written >= out_size) ? BUTLER_ERR_TOO_LARGE : BUTLER_OK;
}

/* -------------------------------------------------- messages of one event */

struct outbound {
    struct outbound *next;
    char *topic;
    char *payload;
    size_t length;
    uint64_t received_wall_ms; /* kept in the spool record */
    uint64_t spool_id;         /* 0 = not recorded in the spool */
    const char *count_type;    /* event type to count when published from the backlog */
};

static void outbound_free(struct outbound *message)
{
    if (message == NULL)
        return;
    free(message->topic);
    free(message->payload);
    free(message);
}

static struct outbound *outbound_new(const char *topic, const char *payload)
{
    struct outbound *message = calloc(1, sizeof *message);
    if (message == NULL)
        return NULL;
    message->topic = strdup(topic);
    message->payload = strdup(payload);
    message->length = strlen(payload);
    if (message->topic == NULL || message->payload == NULL) {
        outbound_free(message);
        return NULL;
    }
    return message;
}

static void count_published(const char *type)
{
    char labels[64];
    snprintf(labels, sizeof labels, "type=\"%s\"", type);
    metrics_count("butler_events_published_total", labels,
                  "Sense events handed to the broker, by type");
}

static void count_lost(const char *why)
{
    char labels[64];
    snprintf(labels, sizeof labels, "reason=\"%s\"", why);
    metrics_count("butler_events_lost_total", labels,
                  "Event messages given up after acceptance, by reason");
}

/*
 * The messages for one event: [0] the event topic, then the legacy copies.
 * Returns how many were built (0 = out of memory). Caller frees each.
 */
static size_t build_messages(const struct udp_event *event, const cJSON *json,
                             struct outbound *messages[1 + 2 * LEGACY_MAX])
{
    const struct butler_config *config = events_runtime->config;
    char topic[TOPIC_MAX];
    size_t count = 0;
    char *payload = cJSON_PrintUnformatted(json);
    if (payload == NULL ||
        events_topic(config->mqtt.topic_root, event, topic, sizeof topic) != BUTLER_OK)
        goto out;
    messages[count] = outbound_new(topic, payload);
    if (messages[count] == NULL)
        goto out;
    count++;
    if (config->mqtt.legacy_topics &&
        (event->type == UDP_EVENT_TASK_FAILED || event->type == UDP_EVENT_TASK_ABORTED)) {
        bool failed = event->type == UDP_EVENT_TASK_FAILED;
        struct outbound *name =
            outbound_new(failed ? "qliksense/task_failure" : "qliksense/task_aborted",
                         event->fields[UDP_FIELD_TASK_NAME]);
        struct outbound *full = outbound_new(
            failed ? "qliksense/task_failure_full" : "qliksense/task_aborted_full", payload);
        if (name)
            messages[count++] = name;
        if (full)
            messages[count++] = full;
    }
out:
    cJSON_free(payload);
    return count;
}

static const struct mqtt_publish_options event_options = {.qos = 1,
                                                          .content_type = "application/json"};

/* ------------------------------------------------ fast path and backlog */

/*
 * The backlog: event messages that could not be handed to the broker at
 * once, oldest first. Every message put here is recorded in the spool first
 * (family EVENTS_SPOOL_FAMILY), so a broker outage followed by a SIGKILL
 * loses nothing; the spool record is marked done on the broker's PUBACK.
 * Messages that publish at once while the broker is up never touch the
 * spool: that is what keeps the fast path at tens of thousands a second.
 *
 * One consumer (the UDP publisher thread) pops; producers (the publisher,
 * the MQTT network thread when an unacknowledged publish comes back, the
 * enrichment workers, start-up recovery) push under the mutex. Bounded by
 * EVENTS_BACKLOG_MAX messages and EVENTS_BACKLOG_MAX_BYTES.
 */
static pthread_mutex_t backlog_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct outbound *backlog_head, *backlog_tail;
static size_t backlog_count, backlog_bytes;
static struct metric *backlog_gauge, *spooled_total;

static struct spool *current_spool(void)
{
    return butler_runtime_current ? butler_runtime_current->spool : NULL;
}

/* Memory a backlog entry holds; an entry whose text lives only in the spool
 * costs just its struct. */
static size_t outbound_bytes(const struct outbound *message)
{
    return sizeof *message + (message->topic ? strlen(message->topic) + message->length : 0);
}

/* Load the topic and payload of an entry kept only in the spool. */
static enum butler_status outbound_reload(struct outbound *message)
{
    struct spool *spool = current_spool();
    unsigned char *record = NULL;
    size_t length = 0;
    enum butler_status status =
        spool ? spool_read(spool, message->spool_id, &record, &length) : BUTLER_ERR_NOT_FOUND;
    if (status != BUTLER_OK)
        return status;
    char family[256];
    struct topic_message *decoded = topics_spool_decode(record, length, family);
    free(record);
    if (decoded == NULL)
        return BUTLER_ERR_INVALID;
    message->topic = decoded->topic;
    message->payload = (char *)decoded->payload;
    message->length = decoded->payload_length;
    decoded->topic = NULL;
    decoded->payload = NULL;
    topic_message_free(decoded);
    return BUTLER_OK;
}

static void register_backlog_metrics(void)
{
    if (backlog_gauge)
        return;
    backlog_gauge = metrics_get("butler_queue_depth", "queue=\"events_backlog\"", METRIC_GAUGE,
                                "Items waiting in a bounded queue");
    spooled_total = metrics_get("butler_events_spooled_total", "", METRIC_COUNTER,
                                "Event messages recorded in the spool because they could not "
                                "be published at once");
}

/* Record `message` in the spool unless it already is. BUTLER_ERR_FULL when
 * the spool is at spool.max_bytes. Without a spool (unit tests) it is kept
 * in memory only. */
static enum butler_status spool_message(struct outbound *message)
{
    struct spool *spool = current_spool();
    if (message->spool_id != 0 || spool == NULL)
        return BUTLER_OK;
    size_t length = 0;
    unsigned char *record =
        topics_spool_record(EVENTS_SPOOL_FAMILY, message->topic, message->payload, message->length,
                            message->received_wall_ms, &length);
    if (record == NULL)
        return BUTLER_ERR_NOMEM;
    enum butler_status status = spool_add(spool, record, length, &message->spool_id);
    free(record);
    if (status == BUTLER_OK)
        metrics_add(spooled_total, 1);
    return status;
}

/* The broker has the message for good (or refused it for good): the spool
 * must not replay it. */
static void spool_finish(struct outbound *message)
{
    struct spool *spool = current_spool();
    if (message->spool_id == 0 || spool == NULL)
        return;
    enum butler_status status = spool_done(spool, message->spool_id, "", 0);
    if (status != BUTLER_OK)
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "cannot mark spooled event %llu done: %s",
                        (unsigned long long)message->spool_id, butler_status_str(status));
    message->spool_id = 0;
}

/* Append (or, for the consumer giving one back, prepend) to the backlog.
 * BUTLER_ERR_FULL when the backlog is at its caps; the caller keeps the
 * message. */
static enum butler_status backlog_push(struct outbound *message, bool front)
{
    size_t bytes = outbound_bytes(message);
    pthread_mutex_lock(&backlog_mutex);
    if (!front && backlog_count >= EVENTS_BACKLOG_MAX) {
        pthread_mutex_unlock(&backlog_mutex);
        return BUTLER_ERR_FULL;
    }
    if (backlog_bytes + bytes > (size_t)EVENTS_BACKLOG_MAX_BYTES && message->topic) {
        if (message->spool_id == 0 && !front) {
            pthread_mutex_unlock(&backlog_mutex);
            return BUTLER_ERR_FULL;
        }
        if (message->spool_id != 0) {
            /* Over the memory budget: the spool has the text; keep the id only. */
            free(message->topic);
            free(message->payload);
            message->topic = NULL;
            message->payload = NULL;
            bytes = outbound_bytes(message);
        }
    }
    message->next = NULL;
    if (front) {
        message->next = backlog_head;
        backlog_head = message;
        if (backlog_tail == NULL)
            backlog_tail = message;
    } else {
        if (backlog_tail)
            backlog_tail->next = message;
        else
            backlog_head = message;
        backlog_tail = message;
    }
    backlog_count++;
    backlog_bytes += bytes;
    size_t depth = backlog_count;
    pthread_mutex_unlock(&backlog_mutex);
    metrics_set(backlog_gauge, (int64_t)depth);
    return BUTLER_OK;
}

static struct outbound *backlog_pop_entry(void)
{
    pthread_mutex_lock(&backlog_mutex);
    struct outbound *message = backlog_head;
    if (message) {
        backlog_head = message->next;
        if (backlog_head == NULL)
            backlog_tail = NULL;
        backlog_count--;
        backlog_bytes -= outbound_bytes(message);
    }
    size_t depth = backlog_count;
    pthread_mutex_unlock(&backlog_mutex);
    metrics_set(backlog_gauge, (int64_t)depth);
    return message;
}

/* The oldest backlog entry with its text in memory; entries whose spool
 * record cannot be read back any more are counted and dropped. */
static struct outbound *backlog_pop(void)
{
    struct outbound *message;
    while ((message = backlog_pop_entry()) != NULL) {
        if (message->topic)
            return message;
        enum butler_status status = outbound_reload(message);
        if (status == BUTLER_OK)
            return message;
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "spooled event %llu cannot be read back: %s",
                        (unsigned long long)message->spool_id, butler_status_str(status));
        metrics_count("butler_udp_dropped_total", "reason=\"spool_read\"",
                      "UDP datagrams dropped, by reason");
        spool_finish(message);
        outbound_free(message);
    }
    return NULL;
}

static bool backlog_empty(void)
{
    pthread_mutex_lock(&backlog_mutex);
    bool empty = backlog_head == NULL;
    pthread_mutex_unlock(&backlog_mutex);
    return empty;
}

/*
 * Make `message` durable and queue it behind older ones. On error the
 * message is freed and the loss counted, except BUTLER_ERR_FULL for a new
 * event (`refuse_when_full`): then the caller still owns it and counts the
 * drop as "spool_full".
 */
static enum butler_status park(struct outbound *message, bool refuse_when_full)
{
    enum butler_status status = spool_message(message);
    if (status == BUTLER_OK)
        status = backlog_push(message, false);
    if (status == BUTLER_OK)
        return BUTLER_OK;
    if (refuse_when_full && status == BUTLER_ERR_FULL)
        return status;
    /* Already accepted: if it is in the spool the next start publishes it. */
    LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "cannot hold the event message for %s: %s%s",
                    message->topic, butler_status_str(status),
                    message->spool_id ? " (kept in the spool for the next start)" : "");
    count_lost(status == BUTLER_ERR_FULL ? "spool_full" : "nomem");
    outbound_free(message);
    return status;
}

/* MQTT network thread (or shutdown): PUBACK or failure of a publish. */
static void outbound_done(void *context, enum butler_status status)
{
    struct outbound *message = context;
    if (status == BUTLER_OK || status == BUTLER_ERR_REMOTE) {
        if (status == BUTLER_ERR_REMOTE) {
            LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "broker refused %s", message->topic);
            count_lost("broker_refused");
        }
        spool_finish(message);
        outbound_free(message);
        return;
    }
    if (butler_runtime_stopping() || status == BUTLER_ERR_SHUTDOWN) {
        /* Recorded in the spool, it is published after the next start. */
        if (spool_message(message) != BUTLER_OK)
            count_lost("shutdown");
        outbound_free(message);
        return;
    }
    /* The connection dropped before the PUBACK: send it again after reconnect. */
    park(message, false);
}

/* Hand one message to the link; on OK the link's callback owns it. */
static enum butler_status send_outbound(struct outbound *message)
{
    return mqtt_link_publish(events_runtime->link, message->topic, message->payload,
                             message->length, &event_options, outbound_done, message);
}

static bool retryable(enum butler_status status)
{
    return status == BUTLER_ERR_NOT_CONNECTED || status == BUTLER_ERR_FULL ||
           status == BUTLER_ERR_TIMEOUT || status == BUTLER_ERR_NOMEM;
}

/* Publisher thread: send the backlog, oldest first. Stops at the first
 * refusal (the message goes back to the front) and returns it; BUTLER_OK
 * once the backlog is empty. Popped before sending because once sent the
 * network thread owns the message. */
static enum butler_status drain_backlog(void)
{
    struct outbound *message;
    while ((message = backlog_pop()) != NULL) {
        const char *type = message->count_type;
        enum butler_status status = send_outbound(message);
        if (status == BUTLER_OK) {
            if (type)
                count_published(type);
            continue;
        }
        if (retryable(status)) {
            backlog_push(message, true);
            return status;
        }
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "cannot publish %s: %s", message->topic,
                        butler_status_str(status));
        count_lost("invalid");
        spool_finish(message); /* it can never succeed: do not replay it */
        outbound_free(message);
    }
    return BUTLER_OK;
}

void events_idle(void *context)
{
    (void)context;
    if (events_runtime && mqtt_link_connected(events_runtime->link))
        drain_backlog();
}

static const char *event_type_label(const struct udp_event *event)
{
    return event->type == UDP_EVENT_ENGINE_RELOAD_FAILED ? "engine-reload-failed"
                                                         : udp_event_outcome(event->type);
}

/*
 * Worker or publisher thread: send an event's messages now when nothing older
 * waits and the broker takes them, otherwise park them. Consumes messages[].
 * With `refuse_when_full`, BUTLER_ERR_FULL means the event itself did not fit
 * the spool (nothing of it kept; the caller counts the drop).
 */
static enum butler_status send_or_park(struct outbound *messages[], size_t count, const char *type,
                                       bool refuse_when_full)
{
    enum butler_status status = BUTLER_ERR_NOT_CONNECTED;
    if (backlog_empty())
        status = send_outbound(messages[0]);
    if (status == BUTLER_OK) {
        count_published(type);
    } else {
        messages[0]->count_type = type;
        status = park(messages[0], refuse_when_full);
        if (status != BUTLER_OK) {
            for (size_t i = 1; i < count; i++)
                outbound_free(messages[i]);
            return status;
        }
    }
    /* Legacy copies follow the event; one the link refuses now is parked so
     * it cannot hold up the next event. */
    for (size_t i = 1; i < count; i++)
        if (send_outbound(messages[i]) != BUTLER_OK)
            park(messages[i], false);
    return BUTLER_OK;
}

/* The messages of one event without enrichment; 0 when out of memory. */
static size_t plain_messages(const struct udp_event *event, uint64_t received_wall_ms,
                             const char *enrich_error,
                             struct outbound *messages[1 + 2 * LEGACY_MAX])
{
    cJSON *json = events_build_json(event, received_wall_ms, NULL, enrich_error);
    size_t count = json ? build_messages(event, json, messages) : 0;
    cJSON_Delete(json);
    for (size_t i = 0; i < count; i++)
        messages[i]->received_wall_ms = received_wall_ms;
    return count;
}

static enum butler_status deliver_now(const struct udp_event *event, uint64_t received_wall_ms)
{
    struct outbound *messages[1 + 2 * LEGACY_MAX] = {0};
    enum butler_status status = drain_backlog();
    if (status != BUTLER_OK)
        return status; /* keep order: the ingress spills or offers it again */
    size_t count = plain_messages(event, received_wall_ms, NULL, messages);
    if (count == 0)
        return BUTLER_ERR_NOMEM; /* offered again shortly */
    status = send_outbound(messages[0]);
    if (status != BUTLER_OK) {
        for (size_t i = 0; i < count; i++)
            outbound_free(messages[i]);
        return status;
    }
    for (size_t i = 1; i < count; i++)
        if (send_outbound(messages[i]) != BUTLER_OK)
            park(messages[i], false);
    count_published(event_type_label(event));
    return BUTLER_OK;
}

enum butler_status events_spill(const struct udp_event *event, uint64_t received_wall_ms,
                                void *context)
{
    struct butler_runtime *runtime = context;
    struct outbound *messages[1 + 2 * LEGACY_MAX] = {0};
    /* With QRS, an event spilled here skips enrichment: it is held because
     * Butler is overloaded or stopping, and enrichment would hold it longer. */
    const char *skipped = qrs_enabled(runtime->config)
                              ? "not enriched: held in the spool while Butler was busy or stopping"
                              : NULL;
    size_t count = plain_messages(event, received_wall_ms, skipped, messages);
    if (count == 0)
        return BUTLER_ERR_NOMEM;
    messages[0]->count_type = event_type_label(event);
    enum butler_status status = park(messages[0], true);
    if (status != BUTLER_OK) {
        for (size_t i = 0; i < count; i++)
            outbound_free(messages[i]);
        return status;
    }
    for (size_t i = 1; i < count; i++)
        park(messages[i], false);
    return BUTLER_OK;
}

enum butler_status events_recovered(const char *topic, const void *payload, size_t length,
                                    uint64_t spool_id, uint64_t received_wall_ms)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    register_backlog_metrics();
    struct outbound *message = calloc(1, sizeof *message);
    if (message == NULL)
        goto out;
    message->topic = strdup(topic);
    message->payload = malloc(length + 1);
    if (message->topic == NULL || message->payload == NULL)
        goto out;
    memcpy(message->payload, payload, length);
    message->payload[length] = '\0';
    message->length = length;
    message->received_wall_ms = received_wall_ms;
    message->count_type = "replayed";
    /* The spool record is finished on PUBACK; if the backlog is full it
     * stays unfinished and the next start tries again. */
    message->spool_id = spool_id;
    status = backlog_push(message, false);
    if (status == BUTLER_OK)
        message = NULL; /* owned by the backlog */
out:
    outbound_free(message);
    return status;
}
/* ----------------------------------------------------------- QRS path */

struct enrich_job {
    uint64_t received_wall_ms;
    const char *source; /* "qrs" for QRS change notifications; NULL = UDP (no field) */
    struct udp_event event;
};

/* Per worker thread: a QRS client with the short enrichment timeouts and an
 * HTTP client for the script log download (plain text, not JSON). */
struct enrich_thread {
    struct qrs_client *qrs;
    struct http_client *http;
};

static pthread_key_t enrich_key;
static pthread_once_t enrich_key_once = PTHREAD_ONCE_INIT;

static void enrich_thread_free(void *pointer)
{
    struct enrich_thread *state = pointer;
    if (state == NULL)
        return;
    qrs_client_destroy(state->qrs);
    http_client_destroy(state->http);
    free(state);
}

static void enrich_key_create(void)
{
    pthread_key_create(&enrich_key, enrich_thread_free);
}

static struct enrich_thread *enrich_thread_get(void)
{
    pthread_once(&enrich_key_once, enrich_key_create);
    struct enrich_thread *state = pthread_getspecific(enrich_key);
    if (state)
        return state;
    state = calloc(1, sizeof *state);
    if (state == NULL)
        return NULL;
    if (qrs_client_create(&enrich_config, butler_runtime_stopping, &state->qrs) != BUTLER_OK ||
        http_client_create(&state->http) != BUTLER_OK) {
        enrich_thread_free(state);
        return NULL;
    }
    pthread_setspecific(enrich_key, state);
    return state;
}

static int64_t remaining_ms(uint64_t deadline)
{
    uint64_t now = clock_monotonic_ms();
    return now >= deadline ? 0 : (int64_t)(deadline - now);
}

static bool can_call(uint64_t deadline)
{
    return remaining_ms(deadline) >= QRS_CALL_TIMEOUT_MS && !butler_runtime_stopping();
}

static void sleep_ms(long ms)
{
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

static const char *execution_status_name(int status)
{
    static const char *const names[] = {"NeverStarted",
                                        "Triggered",
                                        "Started",
                                        "Queued",
                                        "AbortInitiated",
                                        "Aborting",
                                        "Aborted",
                                        "FinishedSuccess",
                                        "FinishedFail",
                                        "Skipped",
                                        "Retry",
                                        "Error",
                                        "Reset",
                                        "DistributionQueue",
                                        "DistributionRunning"};
    if (status < 0 || (size_t)status >= sizeof names / sizeof names[0])
        return "Unknown";
    return names[status];
}

/* Triggered, Started, Queued, AbortInitiated, Aborting, Retry and the
 * distribution states: QRS has not caught up with the log line yet. */
static bool status_is_running(int status)
{
    return (status >= 1 && status <= 5) || status == 10 || status == 13 || status == 14;
}

/* [{"name"}] -> ["name", ...] */
static cJSON *tag_names(const cJSON *entity)
{
    cJSON *names = cJSON_CreateArray();
    const cJSON *tag;
    cJSON_ArrayForEach(tag, cJSON_GetObjectItemCaseSensitive(entity, "tags"))
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(tag, "name");
        if (cJSON_IsString(name))
            cJSON_AddItemToArray(names, cJSON_CreateString(name->valuestring));
    }
    return names;
}

/* customProperties[] -> [{"name", "value"}] */
static cJSON *custom_properties(const cJSON *entity)
{
    cJSON *list = cJSON_CreateArray();
    const cJSON *property;
    cJSON_ArrayForEach(property, cJSON_GetObjectItemCaseSensitive(entity, "customProperties"))
    {
        const cJSON *definition = cJSON_GetObjectItemCaseSensitive(property, "definition");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(definition, "name");
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(property, "value");
        if (!cJSON_IsString(name))
            continue;
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "name", name->valuestring);
        cJSON_AddStringToObject(item, "value", cJSON_IsString(value) ? value->valuestring : "");
        cJSON_AddItemToArray(list, item);
    }
    return list;
}

/* First element of a QRS array answer for `path?filter=id eq <id>`, or NULL. */
static cJSON *qrs_get_one(struct qrs_client *qrs, const char *path, const char *id, char *error,
                          size_t error_size)
{
    char filter[80];
    cJSON *answer = NULL;
    struct qrs_result result;
    snprintf(filter, sizeof filter, "id eq %s", id);
    enum butler_status status = qrs_get(qrs, path, filter, &answer, &result);
    if (status != BUTLER_OK) {
        snprintf(error, error_size, "%s",
                 result.error[0] ? result.error : butler_status_str(status));
        return NULL;
    }
    cJSON *first = cJSON_IsArray(answer) ? cJSON_DetachItemFromArray(answer, 0) : NULL;
    cJSON_Delete(answer);
    if (first == NULL)
        snprintf(error, error_size, "QRS %s has no entity with id %s", path, id);
    return first;
}

/* "value" of {"value": ".."} or a bare JSON string. */
static const char *value_of(const cJSON *answer)
{
    if (cJSON_IsString(answer))
        return answer->valuestring;
    const cJSON *value = cJSON_GetObjectItemCaseSensitive(answer, "value");
    return cJSON_IsString(value) ? value->valuestring : NULL;
}

/*
 * GET /qrs/<path_and_query> and return the body as text. qrs_get() only
 * returns JSON and labels its metric with the path, which here carries ids;
 * this keeps one label per `route`. Same authentication as qrs.c: Xrfkey in
 * query and header, X-Qlik-User, client certificate. One attempt with the
 * enrichment timeouts. On OK *text_out is owned by the caller.
 */
static enum butler_status raw_get(struct http_client *http, const char *route,
                                  const char *path_and_query, char **text_out)
{
    const struct butler_config *config = &enrich_config;
    char xrfkey[17], url[1024], xrf_header[64], user_header[300], labels[128];
    qrs_make_xrfkey(xrfkey);
    const char *base = config->qrs.url;
    size_t base_length = strlen(base);
    while (base_length > 0 && base[base_length - 1] == '/')
        base_length--;
    snprintf(xrf_header, sizeof xrf_header, "X-Qlik-Xrfkey: %s", xrfkey);
    snprintf(user_header, sizeof user_header, "X-Qlik-User: UserDirectory=%s; UserId=%s",
             config->qrs.user_directory, config->qrs.user_id);
    int written = snprintf(url, sizeof url, "%.*s/qrs/%s%cxrfkey=%s", (int)base_length, base,
                           path_and_query, strchr(path_and_query, '?') ? '&' : '?', xrfkey);
    if (written < 0 || (size_t)written >= sizeof url)
        return BUTLER_ERR_TOO_LARGE;
    const char *headers[] = {xrf_header, user_header, NULL};
    struct http_request request = {
        .method = "GET",
        .url = url,
        .headers = headers,
        .timeout_ms = config->qrs.timeout_ms,
        .connect_timeout_ms = config->qrs.connect_timeout_ms,
        .client_cert_file = config->qrs.cert_file,
        .client_key_file = config->qrs.key_file,
        .ca_file = config->qrs.ca_file,
        .verify_peer = config->qrs.verify_peer,
        .max_response_bytes = 16 << 20,
    };
    struct http_response response = {.retry_after_s = -1};
    enum butler_status status = http_client_perform(http, &request, &response);
    snprintf(labels, sizeof labels, "route=\"%s\",status=\"%ld\"", route, response.status);
    metrics_count("butler_qrs_calls_total", labels, "QRS calls by route and HTTP status");
    if (status == BUTLER_OK) {
        *text_out = response.body;
        response.body = NULL;
    }
    http_response_clear(&response);
    return status;
}

/* raw_get of a JSON answer; *json_out owned by the caller. */
static enum butler_status raw_get_json(struct http_client *http, const char *route,
                                       const char *path_and_query, cJSON **json_out)
{
    char *text = NULL;
    enum butler_status status = raw_get(http, route, path_and_query, &text);
    *json_out = NULL;
    if (status == BUTLER_OK) {
        *json_out = json_parse_exact(text, strlen(text), NULL);
        status = *json_out ? BUTLER_OK : BUTLER_ERR_REMOTE;
    }
    free(text);
    return status;
}

/* The last EVENTS_LOG_TAIL_LINES lines of `text`, CR removed, bounded. */
static cJSON *log_tail(const char *text)
{
    size_t length = strlen(text);
    while (length > 0 && (text[length - 1] == '\n' || text[length - 1] == '\r'))
        length--;
    size_t start = length;
    int lines = 0;
    while (start > 0 && length - start < EVENTS_LOG_TAIL_MAX_BYTES) {
        if (text[start - 1] == '\n' && ++lines == EVENTS_LOG_TAIL_LINES)
            break;
        start--;
    }
    char *tail = malloc(length - start + 1);
    if (tail == NULL)
        return NULL;
    size_t used = 0;
    for (size_t i = start; i < length; i++)
        if (text[i] != '\r')
            tail[used++] = text[i];
    tail[used] = '\0';
    cJSON *string = cJSON_CreateString(tail);
    free(tail);
    return string;
}

/*
 * Script log tail of the task's last execution: the deprecated
 * scriptlog?fileReferenceId= first, scriptlogfile?executionResultId= as the
 * fallback, then the download. QRS may not have the log yet when the
 * datagram arrives, so a few tries within the budget. NULL when unavailable.
 */
static cJSON *script_log_tail(struct enrich_thread *state, const char *task_id,
                              const cJSON *last_result, uint64_t deadline)
{
    const cJSON *file_reference = cJSON_GetObjectItemCaseSensitive(last_result, "fileReferenceID");
    const cJSON *result_id = cJSON_GetObjectItemCaseSensitive(last_result, "id");
    for (int attempt = 0; attempt < QRS_LAG_TRIES; attempt++) {
        if (attempt > 0) {
            if (remaining_ms(deadline) < QRS_LAG_PAUSE_MS + 2 * QRS_CALL_TIMEOUT_MS)
                break;
            sleep_ms(QRS_LAG_PAUSE_MS);
        }
        char path[PATH_MAX_BYTES];
        cJSON *answer = NULL;
        enum butler_status status = BUTLER_ERR_NOT_FOUND;
        if (cJSON_IsString(file_reference) &&
            strcmp(file_reference->valuestring, "00000000-0000-0000-0000-000000000000") != 0 &&
            can_call(deadline)) {
            snprintf(path, sizeof path, "reloadtask/%s/scriptlog?fileReferenceId=%s", task_id,
                     file_reference->valuestring);
            status = raw_get_json(state->http, "reloadtask/scriptlog", path, &answer);
        }
        if ((status != BUTLER_OK || value_of(answer) == NULL) && cJSON_IsString(result_id) &&
            can_call(deadline)) {
            cJSON_Delete(answer);
            answer = NULL;
            snprintf(path, sizeof path, "reloadtask/%s/scriptlogfile?executionResultId=%s", task_id,
                     result_id->valuestring);
            status = raw_get_json(state->http, "reloadtask/scriptlogfile", path, &answer);
        }
        const char *reference = status == BUTLER_OK ? value_of(answer) : NULL;
        char *text = NULL;
        if (reference && reference[0] && can_call(deadline)) {
            snprintf(path, sizeof path, "download/reloadtask/%s/scriptlog.txt", reference);
            if (raw_get(state->http, "download/reloadtask/scriptlog.txt", path, &text) != BUTLER_OK)
                text = NULL;
        }
        if (text) {
            cJSON *tail = log_tail(text);
            free(text);
            cJSON_Delete(answer);
            return tail;
        }
        cJSON_Delete(answer);
    }
    return NULL;
}

/*
 * Fill `out` with the "qrs" object. BUTLER_OK, or an error with `error` set
 * (the caller then publishes "qrs": null). Worker thread.
 */
static enum butler_status enrich(struct enrich_thread *state, const struct udp_event *event,
                                 uint64_t deadline, cJSON *out, char *error, size_t error_size)
{
    const char *task_id = event->fields[UDP_FIELD_TASK_ID];
    const char *app_id = event->fields[UDP_FIELD_APP_ID];
    cJSON *task = NULL, *app = NULL;
    enum butler_status status = BUTLER_ERR_REMOTE;
    const cJSON *last_result = NULL;
    bool is_task = event->type != UDP_EVENT_ENGINE_RELOAD_FAILED;

    if (is_task) {
        for (int attempt = 0; attempt < QRS_LAG_TRIES; attempt++) {
            if (!can_call(deadline)) {
                snprintf(error, error_size, "QRS enrichment ran out of time");
                goto out;
            }
            cJSON_Delete(task);
            task = qrs_get_one(state->qrs, "task/full", task_id, error, error_size);
            if (task == NULL)
                goto out;
            const cJSON *operational = cJSON_GetObjectItemCaseSensitive(task, "operational");
            last_result = cJSON_GetObjectItemCaseSensitive(operational, "lastExecutionResult");
            const cJSON *run_status = cJSON_GetObjectItemCaseSensitive(last_result, "status");
            /* QRS lags the scheduler's log line: wait briefly for a final status. */
            bool settled = !cJSON_IsNumber(run_status) ||
                           !status_is_running(run_status->valueint) ||
                           event->type == UDP_EVENT_DISTRIBUTE;
            if (settled || remaining_ms(deadline) < QRS_LAG_PAUSE_MS + 3 * QRS_CALL_TIMEOUT_MS)
                break;
            sleep_ms(QRS_LAG_PAUSE_MS);
        }
        const cJSON *task_type = cJSON_GetObjectItemCaseSensitive(task, "taskType");
        if (cJSON_IsNumber(task_type))
            cJSON_AddNumberToObject(out, "taskType", task_type->valuedouble);
        else
            cJSON_AddNullToObject(out, "taskType");
        cJSON_AddItemToObject(out, "taskTags", tag_names(task));
        cJSON_AddItemToObject(out, "taskCustomProperties", custom_properties(task));
    }
    if (app_id[0] && can_call(deadline))
        app = qrs_get_one(state->qrs, "app/full", app_id, error, error_size);
    cJSON_AddItemToObject(out, "appTags", app ? tag_names(app) : cJSON_CreateArray());
    cJSON_AddItemToObject(out, "appCustomProperties",
                          app ? custom_properties(app) : cJSON_CreateArray());
    const cJSON *owner = cJSON_GetObjectItemCaseSensitive(app, "owner");
    if (cJSON_IsObject(owner)) {
        cJSON *owner_out = cJSON_CreateObject();
        const char *keys[] = {"userDirectory", "userId", "name"};
        for (size_t i = 0; i < 3; i++) {
            const cJSON *value = cJSON_GetObjectItemCaseSensitive(owner, keys[i]);
            cJSON_AddStringToObject(owner_out, keys[i],
                                    cJSON_IsString(value) ? value->valuestring : "");
        }
        cJSON_AddItemToObject(out, "appOwner", owner_out);
    } else {
        cJSON_AddNullToObject(out, "appOwner");
    }
    const cJSON *run_status = cJSON_GetObjectItemCaseSensitive(last_result, "status");
    if (cJSON_IsNumber(run_status))
        cJSON_AddStringToObject(out, "executionStatus",
                                execution_status_name(run_status->valueint));
    else
        cJSON_AddNullToObject(out, "executionStatus");
    cJSON *tail = NULL;
    if (event->type == UDP_EVENT_TASK_FAILED || event->type == UDP_EVENT_TASK_ABORTED)
        tail = script_log_tail(state, task_id, last_result, deadline);
    cJSON_AddItemToObject(out, "scriptLogTail", tail ? tail : cJSON_CreateNull());
    error[0] = '\0';
    status = BUTLER_OK;
out:
    cJSON_Delete(task);
    cJSON_Delete(app);
    return status;
}

/* Worker thread (worker_run_fn): enrich within the budget, then publish. */
static void enrich_run(void *worker_state, void *item)
{
    (void)worker_state;
    struct enrich_job *job = item;
    uint64_t deadline = clock_monotonic_ms() + EVENTS_ENRICH_BUDGET_MS;
    char error[300] = "";
    cJSON *qrs = cJSON_CreateObject();
    struct enrich_thread *state = enrich_thread_get();
    enum butler_status status = BUTLER_ERR_NOMEM;
    if (qrs == NULL || state == NULL)
        snprintf(error, sizeof error, "enrichment unavailable: out of memory");
    else
        status = enrich(state, &job->event, deadline, qrs, error, sizeof error);
    metrics_count("butler_events_enriched_total",
                  status == BUTLER_OK ? "outcome=\"ok\"" : "outcome=\"error\"",
                  "Sense events enriched from QRS, by outcome");
    cJSON *json =
        events_build_json(&job->event, job->received_wall_ms, status == BUTLER_OK ? qrs : NULL,
                          status == BUTLER_OK ? NULL : error);
    if (json && job->source)
        cJSON_AddStringToObject(json, "source", job->source);
    struct outbound *messages[1 + 2 * LEGACY_MAX] = {0};
    size_t count = json ? build_messages(&job->event, json, messages) : 0;
    if (count == 0)
        count_lost("nomem");
    for (size_t i = 0; i < count; i++)
        messages[i]->received_wall_ms = job->received_wall_ms;
    /* Not waiting for the broker: while it is away the event goes to the
     * spool and the publisher thread sends it after reconnect. */
    if (count > 0)
        send_or_park(messages, count, event_type_label(&job->event), false);
    cJSON_Delete(json);
    cJSON_Delete(qrs);
    free(job);
}

static void enrich_discard(void *item)
{
    /* Queued for enrichment when the pool stopped: spooled unenriched, so the
     * next start publishes it. */
    struct enrich_job *job = item;
    if (events_spill(&job->event, job->received_wall_ms, events_runtime) != BUTLER_OK)
        count_lost("shutdown");
    free(job);
}

/* Copy an event; fields[] are re-pointed into the copy's storage. */
static void copy_event(struct udp_event *to, const struct udp_event *from)
{
    memcpy(to, from, offsetof(struct udp_event, storage) + from->storage_used);
    for (size_t i = 0; i < UDP_FIELD_COUNT; i++)
        to->fields[i] = to->storage + (from->fields[i] - from->storage);
}

enum butler_status events_deliver(const struct udp_event *event, uint64_t received_wall_ms,
                                  void *context)
{
    struct butler_runtime *runtime = context;
    if (!qrs_enabled(runtime->config))
        return deliver_now(event, received_wall_ms);
    struct enrich_job *job = malloc(sizeof *job);
    if (job == NULL)
        return BUTLER_ERR_NOMEM;
    job->received_wall_ms = received_wall_ms;
    job->source = NULL;
    copy_event(&job->event, event);
    enum butler_status status =
        worker_pool_submit(runtime->pool, enrich_run, enrich_discard, job, 0);
    if (status != BUTLER_OK) {
        free(job);
        /* A full worker queue is backpressure: the event waits in the UDP ring. */
        return status == BUTLER_ERR_SHUTDOWN ? status : BUTLER_ERR_FULL;
    }
    return BUTLER_OK;
}

/* QRS change notifications (topics/notifications.c) arrive on a worker
 * already: enrich and publish right here, the same way as a UDP event. */
enum butler_status events_deliver_qrs(const struct udp_event *event, uint64_t received_wall_ms)
{
    struct enrich_job *job = malloc(sizeof *job);
    if (job == NULL)
        return BUTLER_ERR_NOMEM;
    job->received_wall_ms = received_wall_ms;
    job->source = "qrs";
    copy_event(&job->event, event);
    enrich_run(NULL, job); /* frees job */
    return BUTLER_OK;
}

enum butler_status events_setup(struct butler_runtime *runtime)
{
    events_runtime = runtime;
    enrich_config = *runtime->config; /* shallow: strings stay owned by the real config */
    if (enrich_config.qrs.timeout_ms > QRS_CALL_TIMEOUT_MS)
        enrich_config.qrs.timeout_ms = QRS_CALL_TIMEOUT_MS;
    if (enrich_config.qrs.connect_timeout_ms > QRS_CONNECT_TIMEOUT_MS)
        enrich_config.qrs.connect_timeout_ms = QRS_CONNECT_TIMEOUT_MS;
    enrich_config.retry.max_attempts = 1;
    register_backlog_metrics();
    return BUTLER_OK;
}

void events_teardown(void)
{
    struct outbound *message;
    size_t kept = 0;
    while ((message = backlog_pop_entry()) != NULL) {
        /* Everything in the backlog is in the spool (unless the spool was
         * missing): the next start publishes it. */
        if (message->spool_id)
            kept++;
        else
            count_lost("shutdown");
        outbound_free(message);
    }
    if (kept)
        LOG_INFO(MODULE,
                 "%zu event message(s) not yet published stay in the spool for the next "
                 "start",
                 kept);
}
