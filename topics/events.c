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
 * the event waits in the UDP ring). The worker enriches it within
 * EVENTS_ENRICH_BUDGET_MS (topics/event_enrichment.c) and publishes without
 * waiting for the broker, parking the event in spool and backlog while the
 * broker is away.
 */
#include "topics/events.h"
#include "topics/task_follow.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/core/clock.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/link/mqtt_link.h"
#include "bridge/clients/qrs.h"
#include "bridge/store/execution_ids.h"
#include "bridge/store/spool.h"
#include "bridge/core/worker_pool.h"
#include "topics/event_enrichment.h"
#include "topics/message.h"
#include "bridge/model/status_view.h"

#define MODULE "events"

enum {
    TOPIC_MAX = 512,
    LEGACY_MAX = 2,
};

static struct butler_runtime *events_runtime;

/* ---------------------------------------------------------------- JSON */

static void add_field(cJSON *object, const char *name, const struct sense_event *event,
                      enum sense_field field)
{
    cJSON_AddStringToObject(object, name, event->fields[field]);
}

cJSON *events_build_json(const struct sense_event *event, uint64_t received_wall_ms,
                         const cJSON *qrs, const char *enrich_error)
{
    char received[32];
    clock_format_iso8601(received_wall_ms, received, sizeof received);
    cJSON *object = cJSON_CreateObject();
    if (object == NULL)
        return NULL;
    if (event->type == SENSE_EVENT_ENGINE_RELOAD_FAILED) {
        cJSON_AddStringToObject(object, "type", "engine-reload-failed");
        add_field(object, "host", event, SENSE_FIELD_HOST);
        add_field(object, "appId", event, SENSE_FIELD_APP_ID);
        add_field(object, "sessionId", event, SENSE_FIELD_SESSION_ID);
        add_field(object, "userDirectory", event, SENSE_FIELD_USER_DIRECTORY);
        add_field(object, "userId", event, SENSE_FIELD_USER_ID);
        add_field(object, "logTimestamp", event, SENSE_FIELD_LOG_TIMESTAMP);
        add_field(object, "level", event, SENSE_FIELD_LEVEL);
        add_field(object, "message", event, SENSE_FIELD_MESSAGE);
    } else {
        cJSON_AddStringToObject(object, "type", sense_event_outcome(event->type));
        add_field(object, "host", event, SENSE_FIELD_HOST);
        add_field(object, "taskName", event, SENSE_FIELD_TASK_NAME);
        add_field(object, "appName", event, SENSE_FIELD_APP_NAME);
        add_field(object, "user", event, SENSE_FIELD_USER);
        add_field(object, "taskId", event, SENSE_FIELD_TASK_ID);
        add_field(object, "appId", event, SENSE_FIELD_APP_ID);
        add_field(object, "logTimestamp", event, SENSE_FIELD_LOG_TIMESTAMP);
        add_field(object, "level", event, SENSE_FIELD_LEVEL);
        add_field(object, "executionId", event, SENSE_FIELD_EXECUTION_ID);
        add_field(object, "message", event, SENSE_FIELD_MESSAGE);
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

enum butler_status events_topic(const char *root, const struct sense_event *event, char *out,
                                size_t out_size)
{
    int written;
    if (event->type == SENSE_EVENT_ENGINE_RELOAD_FAILED) {
        /* An empty app id would make an empty topic level; "-" is clearer. */
        const char *app_id = event->fields[SENSE_FIELD_APP_ID];
        written = snprintf(out, out_size, "%s/events/engine/reload-failed/%s", root,
                           app_id[0] ? app_id : "-");
    } else {
        written = snprintf(out, out_size, "%s/events/task/%s/%s", root,
                           sense_event_outcome(event->type), event->fields[SENSE_FIELD_TASK_ID]);
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
    /* The event's ExecutionId claim ("<outcome>/<id>" parts), on the event's
     * own message only, until the broker acknowledged it or the spool has
     * it; freed with the message before that = lost: the claim is given back. */
    char *claim_execution_id;
    const char *claim_outcome;
};

/* The claim leaves the message without being given back. */
static void claim_forget(struct outbound *message)
{
    free(message->claim_execution_id);
    message->claim_execution_id = NULL;
}

/* The message is kept (PUBACK or spooled): its claim stays taken, no longer
 * pending, so a notification of the same run waiting for it stops waiting. */
static void claim_keep(struct outbound *message)
{
    if (message->claim_execution_id && events_runtime)
        execution_ids_confirm(message->claim_execution_id, message->claim_outcome,
                              (uint64_t)events_runtime->config->udp.dedup_ttl_s * 1000u);
    claim_forget(message);
}

static void outbound_free(struct outbound *message)
{
    if (message == NULL)
        return;
    if (message->claim_execution_id) /* lost before the broker or spool had it */
        execution_ids_release(message->claim_execution_id, message->claim_outcome);
    free(message->claim_execution_id);
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
static size_t build_messages(const struct sense_event *event, const cJSON *json,
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
    if (event->fields[SENSE_FIELD_EXECUTION_ID][0] && config->udp.dedup_ttl_s > 0) {
        messages[count]->claim_execution_id = strdup(event->fields[SENSE_FIELD_EXECUTION_ID]);
        messages[count]->claim_outcome = sense_event_outcome(event->type);
    }
    count++;
    if (config->mqtt.legacy_topics &&
        (event->type == SENSE_EVENT_TASK_FAILED || event->type == SENSE_EVENT_TASK_ABORTED)) {
        bool failed = event->type == SENSE_EVENT_TASK_FAILED;
        struct outbound *name =
            outbound_new(failed ? "qliksense/task_failure" : "qliksense/task_aborted",
                         event->fields[SENSE_FIELD_TASK_NAME]);
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
    if (status == BUTLER_OK) {
        if (message->spool_id != 0)
            claim_keep(message); /* durable: the next start publishes it */
        status = backlog_push(message, false);
    }
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
    if (status == BUTLER_OK) {
        claim_keep(message);
        status_view_note_publish(message->topic, message->payload, message->length);
    }
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
        else
            claim_keep(message);
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

static const char *event_type_label(const struct sense_event *event)
{
    return event->type == SENSE_EVENT_ENGINE_RELOAD_FAILED ? "engine-reload-failed"
                                                           : sense_event_outcome(event->type);
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
static size_t plain_messages(const struct sense_event *event, uint64_t received_wall_ms,
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

static enum butler_status deliver_now(const struct sense_event *event, uint64_t received_wall_ms)
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
        claim_forget(messages[0]); /* the ingress still holds the event (and its
                                    * pending claim): offered again */
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

enum butler_status events_spill(const struct sense_event *event, uint64_t received_wall_ms,
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
        /* Only a refusal for room leaves messages[0] with us; any other failure
         * freed it and counted the loss, and offering it again would not help. */
        size_t first_owned = status == BUTLER_ERR_FULL ? 0 : 1;
        for (size_t i = first_owned; i < count; i++)
            outbound_free(messages[i]);
        return status == BUTLER_ERR_FULL ? status : BUTLER_OK;
    }
    for (size_t i = 1; i < count; i++)
        park(messages[i], false);
    return BUTLER_OK;
}

enum butler_status events_deliver_prepared(const struct events_prepared *prepared, size_t count,
                                           uint64_t received_wall_ms, const char *type, bool spill)
{
    struct outbound *messages[EVENTS_PREPARED_MAX] = {0};
    enum butler_status status = BUTLER_OK;
    if (count == 0 || count > EVENTS_PREPARED_MAX || events_runtime == NULL)
        return BUTLER_ERR_INVALID;
    if (!spill) {
        status = drain_backlog();
        if (status != BUTLER_OK)
            return status; /* keep order: the ingress spills or offers it again */
    }
    for (size_t i = 0; i < count; i++) {
        messages[i] = outbound_new(prepared[i].topic, prepared[i].payload);
        if (messages[i] == NULL) {
            status = BUTLER_ERR_FULL; /* out of memory: offered again shortly */
            goto out;
        }
        messages[i]->received_wall_ms = received_wall_ms;
    }
    if (spill) {
        messages[0]->count_type = type;
        status = park(messages[0], true);
        if (status != BUTLER_OK) {
            if (status == BUTLER_ERR_FULL)
                goto out;       /* still ours: not taken */
            messages[0] = NULL; /* park freed it and counted the loss */
            status = BUTLER_OK; /* taken (and lost): do not offer it again */
            goto out;
        }
    } else {
        status = send_outbound(messages[0]);
        if (status != BUTLER_OK)
            goto out;
        count_published(type);
    }
    messages[0] = NULL; /* the link or the backlog owns it */
    /* Legacy copies follow; one the link refuses now is parked. */
    for (size_t i = 1; i < count; i++) {
        if (spill || send_outbound(messages[i]) != BUTLER_OK)
            park(messages[i], false);
        messages[i] = NULL;
    }
out:
    for (size_t i = 0; i < count; i++)
        outbound_free(messages[i]);
    return status;
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

/* ---------------------------------------------- QRS path (enrichment) */

struct enrich_job {
    uint64_t received_wall_ms;
    const char *source; /* "qrs" for QRS change notifications; NULL = UDP (no field) */
    struct sense_event event;
};

/* Worker thread (worker_run_fn): enrich within the budget, then publish. */
static void enrich_run(void *worker_state, void *item)
{
    (void)worker_state;
    struct enrich_job *job = item;
    uint64_t deadline = clock_monotonic_ms() + EVENTS_ENRICH_BUDGET_MS;
    char error[300] = "";
    cJSON *qrs = cJSON_CreateObject();
    enum butler_status status = BUTLER_ERR_NOMEM;
    if (qrs == NULL)
        snprintf(error, sizeof error, "enrichment unavailable: out of memory");
    else
        status = event_enrichment_run(&job->event, deadline, qrs, error, sizeof error);
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
static void copy_event(struct sense_event *to, const struct sense_event *from)
{
    memcpy(to, from, offsetof(struct sense_event, storage) + from->storage_used);
    for (size_t i = 0; i < SENSE_FIELD_COUNT; i++)
        to->fields[i] = to->storage + (from->fields[i] - from->storage);
}

enum butler_status events_deliver(const struct sense_event *event, uint64_t received_wall_ms,
                                  void *context)
{
    struct butler_runtime *runtime = context;
    task_follow_poke(event->fields[SENSE_FIELD_EXECUTION_ID]); /* a followed run ended */
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
enum butler_status events_deliver_qrs(const struct sense_event *event, uint64_t received_wall_ms)
{
    task_follow_poke(event->fields[SENSE_FIELD_EXECUTION_ID]); /* a followed run ended */
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
    event_enrichment_setup(runtime->config);
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
