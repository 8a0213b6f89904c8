/*
 * The table of topics Butler consumes, and the hand-off from the MQTT network
 * thread to the workers.
 *
 * on_message runs on the network thread and must return quickly: it copies the
 * message and queues it for a worker. With QoS 1 the PUBACK goes out only after
 * it returns, so a message is acknowledged only once it is queued; when the
 * queue is full it waits (backpressure) instead of dropping. (The spool of
 * contract section 7 slots in here: record, then queue.)
 */
#include "topics/topics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/clock.h"
#include "bridge/http_client.h"
#include "bridge/log.h"
#include "bridge/metrics.h"
#include "bridge/qrs.h"
#include "bridge/worker_pool.h"
#include "topics/task_start.h"

#define MODULE "topics"

typedef void (*topic_family_run)(struct topic_worker *worker, struct topic_message *message);

struct topic_family {
    const char *name;
    const char *filter_format; /* %s = topic root; no %s = absolute topic */
    bool shared;               /* through $share/<group>/ when mqtt.share_group is set */
    bool legacy;               /* only with mqtt.legacy_topics */
    topic_family_run run;
};

static const struct topic_family families[] = {
    {"task_start", "%s/task/start", true, false, task_start_run},
    {"task_start", "%s/task/start/+", true, false, task_start_run},
    {"legacy_start_task", "qliksense/start_task", true, true, task_start_run_legacy},
};

enum { FAMILY_COUNT = sizeof families / sizeof families[0], SUBMIT_SLICE_MS = 1000 };

/* Filters expanded with the topic root at start-up, parallel to `families`. */
static char *family_filters[FAMILY_COUNT];

void topics_count(const char *family, const char *outcome)
{
    char labels[128];
    snprintf(labels, sizeof labels, "family=\"%s\",outcome=\"%s\"", family, outcome);
    metrics_count("butler_messages_in_total", labels,
                  "Messages consumed from the broker, by topic family and outcome");
}

struct topic_message *topic_message_copy(const struct mqtt_message *message)
{
    struct topic_message *copy = calloc(1, sizeof *copy);
    if (copy == NULL)
        return NULL;
    copy->topic = strdup(message->topic);
    copy->payload = malloc(message->payload_length + 1);
    if (message->response_topic)
        copy->response_topic = strdup(message->response_topic);
    if (message->correlation_length) {
        copy->correlation_data = malloc(message->correlation_length);
        if (copy->correlation_data)
            memcpy(copy->correlation_data, message->correlation_data, message->correlation_length);
        copy->correlation_length = message->correlation_length;
    }
    if (copy->topic == NULL || copy->payload == NULL ||
        (message->response_topic && copy->response_topic == NULL) ||
        (message->correlation_length && copy->correlation_data == NULL)) {
        topic_message_free(copy);
        return NULL;
    }
    if (message->payload_length)
        memcpy(copy->payload, message->payload, message->payload_length);
    copy->payload[message->payload_length] = '\0';
    copy->payload_length = message->payload_length;
    copy->received_wall_ms = clock_wall_ms();
    return copy;
}

void topic_message_free(struct topic_message *message)
{
    if (message == NULL)
        return;
    free(message->topic);
    free(message->payload);
    free(message->response_topic);
    free(message->correlation_data);
    free(message);
}

/* The pool calls this with the run function smuggled through the item. */
struct queued_message {
    topic_family_run run;
    struct topic_message *message;
};

static void run_queued(void *worker_state, void *item)
{
    struct queued_message *queued = item;
    static struct topic_worker bare_worker; /* when per-worker setup ran out of memory */
    queued->run(worker_state ? worker_state : &bare_worker, queued->message);
    free(queued);
}

static void discard_queued(void *item)
{
    struct queued_message *queued = item;
    LOG_WARN(MODULE, "shutdown: %s was not processed; the broker will redeliver it after restart "
                     "only if it was not yet acknowledged",
             queued->message->topic);
    topic_message_free(queued->message);
    free(queued);
}

/*
 * Network thread. Oversized payloads are still handed on (the family answers
 * them with an error) but not copied beyond the cap.
 */
static void on_message(const struct mqtt_message *message, void *context)
{
    struct butler_runtime *runtime = context;
    const struct topic_family *family = NULL;
    for (size_t i = 0; i < FAMILY_COUNT && family == NULL; i++)
        if (family_filters[i] && mqtt_topic_matches(family_filters[i], message->topic))
            family = &families[i];
    if (family == NULL) {
        topics_count("unknown", "ignored");
        return;
    }
    struct mqtt_message bounded = *message;
    if (bounded.payload_length > TOPIC_PAYLOAD_MAX) {
        /* Keep one byte over the cap so the parser still reports "too large". */
        bounded.payload_length = TOPIC_PAYLOAD_MAX + 1;
    }
    struct queued_message *queued = calloc(1, sizeof *queued);
    if (queued)
        queued->message = topic_message_copy(&bounded);
    if (queued == NULL || queued->message == NULL) {
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "out of memory: dropping a message on %s",
                        message->topic);
        topics_count(family->name, "dropped_nomem");
        free(queued);
        return;
    }
    queued->run = family->run;
    /* Backpressure: wait for room rather than acknowledge what we cannot hold. */
    for (;;) {
        enum butler_status status =
            worker_pool_submit(runtime->pool, run_queued, discard_queued, queued, SUBMIT_SLICE_MS);
        if (status == BUTLER_OK) {
            topics_count(family->name, "queued");
            return;
        }
        if (status == BUTLER_ERR_FULL) {
            LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "worker queue full; holding %s",
                            message->topic);
            continue;
        }
        LOG_WARN(MODULE, "not accepting %s: %s", message->topic, butler_status_str(status));
        topic_message_free(queued->message);
        free(queued);
        return;
    }
}

enum butler_status topics_setup(struct butler_runtime *runtime)
{
    const struct butler_config *config = runtime->config;
    for (size_t i = 0; i < FAMILY_COUNT; i++) {
        if (families[i].legacy && !config->mqtt.legacy_topics)
            continue;
        char filter[1024];
        snprintf(filter, sizeof filter, families[i].filter_format, config->mqtt.topic_root);
        family_filters[i] = strdup(filter);
        if (family_filters[i] == NULL)
            return BUTLER_ERR_NOMEM;
        enum butler_status status =
            mqtt_link_add_subscription(runtime->link, filter, families[i].shared);
        if (status != BUTLER_OK)
            return status;
    }
    mqtt_link_set_handler(runtime->link, on_message, runtime);
    return BUTLER_OK;
}

void topics_stop_intake(struct butler_runtime *runtime)
{
    mqtt_link_unsubscribe_all(runtime->link);
}

void topics_teardown(void)
{
    for (size_t i = 0; i < FAMILY_COUNT; i++) {
        free(family_filters[i]);
        family_filters[i] = NULL;
    }
}

void *topics_worker_init(int worker_index, void *context)
{
    struct butler_runtime *runtime = context;
    struct topic_worker *worker = calloc(1, sizeof *worker);
    if (worker == NULL)
        return NULL;
    worker->index = worker_index;
    if (qrs_enabled(runtime->config) &&
        qrs_client_create(runtime->config, butler_runtime_stopping, &worker->qrs) != BUTLER_OK)
        LOG_ERROR(MODULE, "worker %d: cannot create its QRS client", worker_index);
    if (http_client_create(&worker->http) != BUTLER_OK)
        LOG_ERROR(MODULE, "worker %d: cannot create its HTTP client", worker_index);
    return worker;
}

void topics_worker_cleanup(void *worker_state, void *context)
{
    (void)context;
    struct topic_worker *worker = worker_state;
    if (worker == NULL)
        return;
    qrs_client_destroy(worker->qrs);
    http_client_destroy(worker->http);
    free(worker);
}
