/*
 * The table of topics Butler consumes, and the hand-off from the MQTT network
 * thread to the workers.
 *
 * on_message runs on the network thread and never waits for another thread:
 * it copies the message, records it in the spool and pushes it to the feeder
 * (topics/feeder.c), whose thread waits for room in the worker queue. With
 * QoS 1 the PUBACK goes out only after it returns, so a message is
 * acknowledged only once it is recorded in the spool: if Butler dies after
 * that, the spool replays it; if it dies before, the broker redelivers it.
 * When the spool cannot take it, the connection is cut before the PUBACK
 * leaves (the broker holds the message) instead of dropping it.
 */
#include "topics/topics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/core/clock.h"
#include "bridge/clients/http_client.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/clients/qrs.h"
#include "bridge/store/held_messages.h"
#include "bridge/store/spool.h"
#include "bridge/core/worker_pool.h"
#include "topics/app.h"
#include "topics/events.h"
#include "topics/feeder.h"
#include "topics/file.h"
#include "topics/handoff.h"
#include "topics/kv.h"
#include "topics/newrelic.h"
#include "topics/notifications.h"
#include "topics/cloud.h"
#include "topics/route_influxdb.h"
#include "topics/routes.h"
#include "topics/schedules.h"
#include "topics/users.h"
#include "topics/sense_monitors.h"
#include "topics/publish.h"
#include "topics/slack.h"
#include "bridge/model/task_result.h"
#include "topics/task_follow.h"
#include "topics/task_start.h"

#define MODULE "topics"

struct topic_family {
    const char *name;
    const char *filter_format; /* %s = topic root; no %s = absolute topic */
    bool shared;               /* through $share/<group>/ when mqtt.share_group is set */
    bool legacy;               /* only with mqtt.legacy_topics */
    topic_family_run run;
    /* Set instead of `run` for families handled on the network thread itself
     * (no copy, no worker): they must not block. Subscribed only with the
     * HTTP API enabled, which is their only consumer. */
    mqtt_message_handler direct;
    /* Set for direct families every instance needs whatever http.enable
     * says (the stores kept on the broker); NULL = the rule above. */
    bool (*wanted)(const struct butler_config *config);
};

/* The key-value view answers HTTP reads and, on 3.1.1 brokers, drives key
 * expiry; schedules are needed to serve the API or to fire them. */
static bool kv_wanted(const struct butler_config *config)
{
    (void)config; /* always: task starts write keys, and 3.1.1 expiry needs the view */
    return true;
}

static bool schedules_wanted(const struct butler_config *config)
{
    return config->http.enable || config->scheduler.enable;
}

static const struct topic_family families[] = {
    {"task_start", "%s/task/start", true, false, task_start_run, NULL, NULL},
    {"task_start", "%s/task/start/+", true, false, task_start_run, NULL, NULL},
    {"legacy_start_task", "qliksense/start_task", true, true, task_start_run_legacy, NULL, NULL},
    {"slack", "%s/slack/post", true, false, slack_run, NULL, NULL},
    /* Sense engine app operations (topics/app.c); answers on <root>/app/result. */
    {"app", "%s/app/reload", true, false, app_run, NULL, NULL},
    {"app", "%s/app/list", true, false, app_run, NULL, NULL},
    {"app", "%s/app/dump", true, false, app_run, NULL, NULL},
    {"teams", "%s/teams/post", true, false, routes_teams_run, NULL, NULL},
    {"email", "%s/email/send", true, false, routes_email_run, NULL, NULL},
    {"webhook", "%s/webhook/+", true, false, routes_webhook_run, NULL, NULL},
    /* QRS change notifications received by the HTTP ingress (topics/notifications.c). */
    {"qrs_notification", "%s/qrs/notification", true, false, notifications_run, NULL, NULL},
    /* Qlik Cloud webhooks the HTTP ingress took (topics/cloud.c); the same
     * family takes qlik_cloud.mqtt_topic, subscribed by cloud_setup(). */
    {"cloud", "%s/cloud/webhook/+", true, false, cloud_run, NULL, cloud_wanted},
    /* No filter: routes subscribe their configured `match` filters themselves. */
    {"routes", NULL, true, false, routes_run, NULL, NULL},
    /* Not shared: the HTTP request waiting for a result may be on any instance. */
    {"task_result", "%s/task/result", false, false, NULL, task_result_on_message, NULL},
    /* HTTP ?wait=finished waits for the end of followed runs (contract 9.1). */
    {"task_finished", "%s/task/finished/+", false, false, NULL, task_result_on_finished, NULL},
    /* Same waiter table, keyed by requestId: HTTP waits for app results too. */
    {"app_result", "%s/app/result", false, false, NULL, task_result_on_message, NULL},
    /* Not shared: every instance keeps the whole store from the retained messages. */
    {"kv", "%s/kv/#", false, false, NULL, kv_on_message, kv_wanted},
    {"schedules", "%s/schedules/+", false, false, NULL, schedules_on_message, schedules_wanted},
    /* Not shared: the active-user summary a restart rebuilds from (topics/users.c). */
    {"users", "%s/sense/users/active", false, false, NULL, users_on_message, users_wanted},
    /* File commands (topics/file.c); the second %s of the node filter is file.node. */
    {"file", "%s/file/copy", true, false, file_run, NULL, file_wanted},
    {"file", "%s/file/move", true, false, file_run, NULL, file_wanted},
    {"file", "%s/file/delete", true, false, file_run, NULL, file_wanted},
    {"file", "%s/file/mkdir", true, false, file_run, NULL, file_wanted},
    {"file", "%s/file/%s/+", true, false, file_run, NULL, file_node_wanted},
    /* Not shared, like task results; the same requestId waiters serve both. */
    {"file_result", "%s/file/result", false, false, NULL, task_result_on_message, NULL},
    /* Sense monitors and licence release (topics/sense_monitors.c). */
    {"monitor", "%s/monitor/run/+", true, false, sense_monitors_run, NULL, sense_monitors_wanted},
    {"sense_version", "%s/sense/version", false, false, NULL, sense_version_on_message,
     sense_version_wanted},
    /* New Relic posts (topics/newrelic.c); answers reuse the task-result waiters. */
    {"newrelic", "%s/newrelic/event", true, false, newrelic_run, NULL, newrelic_wanted},
    {"newrelic", "%s/newrelic/metric", true, false, newrelic_run, NULL, newrelic_wanted},
    {"newrelic_result", "%s/newrelic/result", false, false, NULL, task_result_on_message,
     newrelic_wanted},
};

enum { FAMILY_COUNT = sizeof families / sizeof families[0] };

/* Filters expanded with the topic root at start-up, parallel to `families`. */
static char *family_filters[FAMILY_COUNT];

/* Not recorded, so not to be acknowledged: cut the connection before the
 * PUBACK libmosquitto queued can leave; the broker keeps the message for the
 * session and sends it again after the reconnect (backpressure through the
 * broker, the documented hold point). A full spool (`full`) holds the link
 * down until there is room. Network thread. */
static void hold_unacknowledged(struct butler_runtime *runtime, const char *family,
                                const struct mqtt_message *message, const char *why, bool full)
{
    metrics_count("butler_spool_refused_total", "",
                  "Messages the spool could not take (full or failing); held back");
    if (message->qos == 0) {
        /* No PUBACK to hold back, and the broker will not send it again. */
        topics_count(family, "dropped");
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "cannot record %s (%s); dropping it (QoS 0)",
                        message->topic, why);
        return;
    }
    topics_count(family, "held");
    LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE,
                    "cannot record %s (%s); holding it unacknowledged: the broker sends it again",
                    message->topic, why);
    if (full) {
        /* Stay away until the feeder sees room (feeder.c), answering through
         * the outlet meanwhile: reconnecting at once would only be cut again
         * by the broker's resends, before any answer's PUBACK came back. */
        mqtt_link_hold(runtime->link);
        feeder_wake();
    } else {
        mqtt_link_abort_connection(runtime->link);
    }
}

/*
 * Network thread: never waits for another thread. A consumed message is
 * recorded in the spool (durable from then on, so its PUBACK may go out when
 * this returns) and pushed to the feeder, which waits for room in the worker
 * queue instead. Oversized payloads are still handed on (the family answers
 * them with an error) but not copied beyond the cap.
 */
static const struct topic_family *family_by_name(const char *name);

static void on_message(const struct mqtt_message *message, void *context)
{
    struct butler_runtime *runtime = context;
    const struct topic_family *family = NULL;
    for (size_t i = 0; i < FAMILY_COUNT && family == NULL; i++)
        if (family_filters[i] && mqtt_topic_matches(family_filters[i], message->topic))
            family = &families[i];
    if (family == NULL && cloud_forwarded(message->topic))
        family = family_by_name("cloud");
    for (size_t i = 0; i < FAMILY_COUNT && family == NULL; i++)
        if (families[i].filter_format == NULL && routes_wanted(message->topic))
            family = &families[i];
    if (family == NULL) {
        topics_count("unknown", "ignored");
        return;
    }
    if (family->direct != NULL) {
        family->direct(message, context);
        return;
    }
    struct mqtt_message bounded = *message;
    if (bounded.payload_length > TOPIC_PAYLOAD_MAX) {
        /* Keep one byte over the cap so the parser still reports "too large". */
        bounded.payload_length = TOPIC_PAYLOAD_MAX + 1;
    }
    if (held_messages_active() && bounded.qos > 0 && !bounded.retain &&
        held_messages_take(bounded.message_id, bounded.topic, bounded.payload,
                           bounded.payload_length)) {
        /* Spooled before a restart or a dropped connection, its PUBACK
         * lost: the spooled copy runs (or ran), so this one is only
         * acknowledged. */
        topics_count(family->name, "redelivered_held");
        LOG_INFO(MODULE,
                 "the broker sent %s again (packet %u) on the resumed session; the copy in the "
                 "spool is run instead",
                 bounded.topic, (unsigned)bounded.message_id);
        return;
    }
    struct topic_message *copy = topic_message_copy(&bounded);
    if (copy == NULL) {
        hold_unacknowledged(runtime, family->name, &bounded, "out of memory", false);
        return;
    }
    copy->family = family->name;
    /* Record before acknowledging: once this returns, the PUBACK goes out. */
    if (runtime->spool) {
        size_t record_length = 0;
        unsigned char *record = topics_message_record(family->name, copy, &record_length);
        enum butler_status status =
            record ? spool_add(runtime->spool, record, record_length, &copy->spool_id)
                   : BUTLER_ERR_NOMEM;
        /* Should this PUBACK be lost, the broker's resend is recognised
         * (bridge/store/held_messages.h). */
        if (status == BUTLER_OK && bounded.qos > 0 && !bounded.retain)
            held_messages_add(bounded.message_id, bounded.topic, bounded.payload,
                              bounded.payload_length);
        free(record);
        if (status != BUTLER_OK) {
            hold_unacknowledged(runtime, family->name, &bounded, butler_status_str(status),
                                status == BUTLER_ERR_FULL);
            topic_message_free(copy); /* not spooled: marks nothing */
            return;
        }
    }
    enum butler_status status = feeder_push(family->run, copy);
    if (status != BUTLER_OK) {
        if (copy->spool_id == 0) {
            hold_unacknowledged(runtime, family->name, &bounded, butler_status_str(status), false);
            topic_message_free(copy);
            return;
        }
        /* Recorded (so acknowledged) but the feeder cannot take it now: the
         * spool replays it at the next start. */
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE,
                        "%s is in the spool but cannot be queued now (%s); it runs after the "
                        "next start",
                        message->topic, butler_status_str(status));
        topics_count(family->name, "deferred");
        topic_message_keep(copy);
        topic_message_free(copy);
        return;
    }
    topics_count(family->name, "queued");
}

bool topics_family_overlaps(const char *filter)
{
    for (size_t i = 0; i < FAMILY_COUNT; i++)
        if (family_filters[i] && route_filters_overlap(family_filters[i], filter))
            return true;
    return false;
}

enum butler_status topics_setup(struct butler_runtime *runtime)
{
    const struct butler_config *config = runtime->config;
    for (size_t i = 0; i < FAMILY_COUNT; i++) {
        if (families[i].filter_format == NULL)
            continue;
        if (families[i].legacy && !config->mqtt.legacy_topics)
            continue;
        if (families[i].wanted ? !families[i].wanted(config)
                               : families[i].direct != NULL && !config->http.enable)
            continue;
        char filter[1024];
        snprintf(filter, sizeof filter, families[i].filter_format, config->mqtt.topic_root,
                 config->file.node);
        family_filters[i] = strdup(filter);
        if (family_filters[i] == NULL)
            return BUTLER_ERR_NOMEM;
        enum butler_status status =
            mqtt_link_add_subscription(runtime->link, filter, families[i].shared);
        if (status != BUTLER_OK)
            return status;
    }
    enum butler_status cloud_status = cloud_setup(runtime);
    if (cloud_status != BUTLER_OK)
        return cloud_status;
    enum butler_status routes_status = routes_setup(runtime);
    if (routes_status != BUTLER_OK)
        return routes_status;
    mqtt_link_set_handler(runtime->link, on_message, runtime);
    publish_setup();
    return BUTLER_OK;
}

/* ---- recovery and replay ---- */

struct recovery {
    struct butler_runtime *runtime;
    size_t replayed;
    size_t malformed;
    size_t events;  /* Sense event messages handed to topics/events.c */
    size_t follows; /* followed task runs handed to topics/task_follow.c */
};

static const struct topic_family *family_by_name(const char *name)
{
    for (size_t i = 0; i < FAMILY_COUNT; i++)
        if (families[i].run && strcmp(families[i].name, name) == 0)
            return &families[i];
    return NULL;
}

/* A retained answer from the spool, to the family that gave it: task starts
 * and file commands keep theirs in their requestId windows (answers written
 * before DONE records had a family, kind "", were task starts'). Licence
 * release runs keep no answer: their summary is stored only once the broker
 * acknowledged its retained publish, so there is nothing to publish again
 * (topics/license_release.c); older spools' summaries are counted and left. */
static void answer_recovered(struct recovery *recovery, const struct spool_recovered *entry)
{
    if (entry->kind[0] == '\0' || strcmp(entry->kind, "task_start") == 0 ||
        strcmp(entry->kind, "legacy_start_task") == 0) {
        task_start_remember_answer(recovery->runtime->task_start, (const char *)entry->data,
                                   entry->length, entry->wall_ms, entry->id);
        return;
    }
    if (strcmp(entry->kind, "file") == 0) {
        file_recovered_answer((const char *)entry->data, entry->length, entry->wall_ms, entry->id);
        return;
    }
    char labels[300];
    snprintf(labels, sizeof labels, "family=\"%.255s\"", entry->kind);
    metrics_count("butler_spool_answers_recovered_unused_total", labels,
                  "Answers read back from the spool at start-up that no family keeps");
}

/* Spool callback (start-up, main thread): data is valid only during the call.
 * Unfinished work goes to the feeder, in spool order, before anything new. */
static void on_recovered(void *context, const struct spool_recovered *entry)
{
    struct recovery *recovery = context;
    if (entry->type == SPOOL_DONE) {
        answer_recovered(recovery, entry);
        return;
    }
    char family[256];
    struct topic_message *message = topics_spool_decode(entry->data, entry->length, family);
    if (message && strcmp(family, INFLUXDB_SPOOL_FAMILY) == 0) {
        /* A batch of InfluxDB points: the writer takes it from the spool. */
        route_influxdb_recovered(entry->id, message->payload, message->payload_length);
        topic_message_free(message); /* not spooled itself: marks nothing done */
        return;
    }
    if (message && strcmp(family, TASK_FOLLOW_SPOOL_FAMILY) == 0) {
        /* A followed run: the follower resumes it (topics/task_follow.h). */
        if (task_follow_recovered(entry->id, message->payload, message->payload_length,
                                  message->response_topic, message->correlation_data,
                                  message->correlation_length) == BUTLER_OK)
            recovery->follows++;
        else
            recovery->malformed++;
        topic_message_free(message); /* not spooled itself: marks nothing done */
        return;
    }
    if (message && strcmp(family, EVENTS_SPOOL_FAMILY) == 0) {
        /* Sense events have their own path: they are published by the UDP
         * publisher in order, not run by a worker. */
        if (events_recovered(message->topic, message->payload, message->payload_length, entry->id,
                             message->received_wall_ms) == BUTLER_OK)
            recovery->events++;
        else
            recovery->malformed++;
        topic_message_free(message); /* not spooled itself: marks nothing done */
        return;
    }
    const struct topic_family *owner = message ? family_by_name(family) : NULL;
    topic_family_run run = owner ? owner->run : NULL;
    if (run == NULL) {
        /* Leave it in the spool (not marked done): the next start tries again. */
        recovery->malformed++;
        topic_message_free(message); /* spool_id 0: marks nothing */
        return;
    }
    message->spool_id = entry->id;
    message->replay = true;
    message->family = owner->name;
    message->notes = entry->note_count ? calloc(entry->note_count, sizeof *message->notes) : NULL;
    for (size_t i = 0; message->notes && i < entry->note_count; i++) {
        message->notes[i] = malloc(entry->note_lengths[i] + 1);
        if (message->notes[i] == NULL)
            break;
        memcpy(message->notes[i], entry->notes[i], entry->note_lengths[i]);
        message->notes[i][entry->note_lengths[i]] = '\0';
        message->note_count = i + 1;
    }
    /* The broker may send it again if the PUBACK never left: see held_messages.h. */
    held_messages_add_recovered(message->message_id, message->topic, message->payload,
                                message->payload_length);
    if (run == task_start_run) /* holds its requestId until it runs (task_start.h) */
        task_start_recovered(recovery->runtime->task_start, message);
    else if (run == file_run) /* likewise for file commands (file.h) */
        file_recovered(message);
    if ((entry->note_count && message->note_count != entry->note_count) ||
        feeder_push(run, message) != BUTLER_OK) {
        /* A replay without all its notes could run twice: the next start. */
        recovery->malformed++;
        topic_message_keep(message);
        topic_message_free(message);
        return;
    }
    recovery->replayed++;
}

enum butler_status topics_recover(struct butler_runtime *runtime)
{
    const struct butler_config *config = runtime->config;
    struct spool_options options = {
        .directory = config->spool.dir,
        .fsync = config->spool.fsync,
        .max_bytes = (uint64_t)config->spool.max_bytes,
        .done_retention_ms = (uint64_t)config->task_start.dedup_ttl_s * 1000u,
        .max_done_entries = (uint64_t)config->task_start.dedup_max_requests,
        /* The network thread adds and finishes records: it must never
         * compact. The feeder thread does (topics/feeder.c). */
        .compact_in_housekeeping = true,
    };
    struct recovery recovery = {.runtime = runtime};
    enum butler_status status = task_follow_setup(runtime);
    if (status != BUTLER_OK)
        return status;
    status = spool_open(&options, on_recovered, &recovery, &runtime->spool);
    if (status != BUTLER_OK) {
        LOG_ERROR(MODULE, "cannot open the spool in %s: %s", config->spool.dir,
                  butler_status_str(status));
        return status;
    }
    /* Resends the broker may still make of what was spooled before: see
     * held_messages.h. Without the file, matching works from memory. */
    held_messages_open(config->spool.dir);
    if (recovery.events)
        LOG_INFO(MODULE, "%zu Sense event message(s) from the spool will be published",
                 recovery.events);
    if (recovery.follows)
        LOG_INFO(MODULE, "resuming %zu followed task run(s) from the spool", recovery.follows);
    if (recovery.replayed)
        LOG_INFO(MODULE, "replaying %zu item(s) from the spool", recovery.replayed);
    if (recovery.malformed)
        LOG_WARN(MODULE, "%zu spooled item(s) could not be replayed now; kept for the next start",
                 recovery.malformed);
    return BUTLER_OK;
}

void topics_replay(struct butler_runtime *runtime)
{
    route_influxdb_start(); /* the spool is open and read: batches found in it can go */
    if (feeder_start(runtime) != BUTLER_OK)
        LOG_ERROR(MODULE, "cannot start the feeder thread: spooled work waits for the next start");
    if (task_follow_start() != BUTLER_OK)
        LOG_ERROR(MODULE,
                  "cannot start the follower thread: followed runs wait for the next start");
}

void topics_stop_intake(struct butler_runtime *runtime)
{
    mqtt_link_unsubscribe_all(runtime->link);
}

void topics_stop_replay(void)
{
    feeder_stop_feeding();
    task_follow_stop(); /* Butler is stopping: unfinished follows stay in the spool */
}

void topics_teardown(void)
{
    feeder_stop(); /* after the link: nothing pushes any more */
    held_messages_close();
    held_messages_clear();
    route_influxdb_stop(); /* its open batch goes to the spool, dead letters still publish */
    task_follow_teardown();
    publish_teardown(); /* before the spool closes: unanswered work stays in it */
    if (butler_runtime_current && butler_runtime_current->spool) {
        spool_close(butler_runtime_current->spool);
        butler_runtime_current->spool = NULL;
    }
    for (size_t i = 0; i < FAMILY_COUNT; i++) {
        free(family_filters[i]);
        family_filters[i] = NULL;
    }
    routes_teardown();
    cloud_teardown();
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
