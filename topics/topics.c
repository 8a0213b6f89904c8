/*
 * The table of topics Butler consumes, and the hand-off from the MQTT network
 * thread to the workers.
 *
 * on_message runs on the network thread and must return quickly: it copies the
 * message and queues it for a worker. With QoS 1 the PUBACK goes out only after
 * it returns, so a message is acknowledged only once it is recorded in the
 * spool and queued: if Butler dies after that, the spool replays it; if it
 * dies before, the broker redelivers it. When the spool or the queue is full
 * it waits (backpressure) instead of dropping.
 */
#include "topics/topics.h"

#include <pthread.h>
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
#include "topics/file.h"
#include "topics/kv.h"
#include "topics/newrelic.h"
#include "topics/notifications.h"
#include "topics/routes.h"
#include "topics/schedules.h"
#include "topics/sense_monitors.h"
#include "topics/publish.h"
#include "topics/slack.h"
#include "bridge/model/task_result.h"
#include "topics/task_start.h"

#define MODULE "topics"

typedef void (*topic_family_run)(struct topic_worker *worker, struct topic_message *message);

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
    /* No filter: routes subscribe their configured `match` filters themselves. */
    {"routes", NULL, true, false, routes_run, NULL, NULL},
    /* Not shared: the HTTP request waiting for a result may be on any instance. */
    {"task_result", "%s/task/result", false, false, NULL, task_result_on_message, NULL},
    /* Same waiter table, keyed by requestId: HTTP waits for app results too. */
    {"app_result", "%s/app/result", false, false, NULL, task_result_on_message, NULL},
    /* Not shared: every instance keeps the whole store from the retained messages. */
    {"kv", "%s/kv/#", false, false, NULL, kv_on_message, kv_wanted},
    {"schedules", "%s/schedules/+", false, false, NULL, schedules_on_message, schedules_wanted},
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
    copy->message_id = message->message_id;
    return copy;
}

void topic_message_free(struct topic_message *message)
{
    if (message == NULL)
        return;
    struct spool *spool = butler_runtime_current ? butler_runtime_current->spool : NULL;
    if (message->spool_id && !message->keep_in_spool && spool) {
        const char *answer = message->answer ? message->answer : "";
        enum butler_status status = spool_done(spool, message->spool_id, answer, strlen(answer));
        if (status != BUTLER_OK)
            LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "cannot mark spooled work %llu done: %s",
                            (unsigned long long)message->spool_id, butler_status_str(status));
    }
    free(message->topic);
    free(message->payload);
    free(message->response_topic);
    free(message->correlation_data);
    free(message->answer);
    for (size_t i = 0; i < message->note_count; i++)
        free(message->notes[i]);
    free(message->notes);
    free(message);
}

void topic_message_keep(struct topic_message *message)
{
    message->keep_in_spool = true;
}

enum butler_status topic_message_note(struct topic_message *message, const char *note)
{
    struct spool *spool = butler_runtime_current ? butler_runtime_current->spool : NULL;
    if (message->spool_id == 0 || spool == NULL)
        return BUTLER_OK;
    return spool_progress(spool, message->spool_id, note, strlen(note));
}

void topic_message_set_answer(struct topic_message *message, const char *answer)
{
    free(message->answer);
    message->answer = answer ? strdup(answer) : NULL;
}

/*
 * Spool record of a consumed message: the family name and the message, in a
 * length-prefixed binary form (payloads may be any bytes).
 *   u8 version(1) | u8 family length | family | u32 topic length | topic |
 *   u32 payload length | payload | u32 response length | response |
 *   u32 correlation length | correlation | u64 received_wall_ms
 */
static void put_u32(unsigned char **p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        *(*p)++ = (unsigned char)(v >> (8 * i));
}

static void put_bytes(unsigned char **p, const void *data, size_t length)
{
    put_u32(p, (uint32_t)length);
    if (length)
        memcpy(*p, data, length);
    *p += length;
}

static unsigned char *encode_message(const char *family, const struct topic_message *message,
                                     size_t *length_out)
{
    size_t family_length = strlen(family);
    size_t topic_length = strlen(message->topic);
    size_t response_length = message->response_topic ? strlen(message->response_topic) : 0;
    size_t length = 2 + family_length + 4 + topic_length + 4 + message->payload_length + 4 +
                    response_length + 4 + message->correlation_length + 8 + 2;
    unsigned char *buffer = malloc(length);
    if (buffer == NULL || family_length > 255)
        goto fail;
    unsigned char *p = buffer;
    *p++ = 1;
    *p++ = (unsigned char)family_length;
    memcpy(p, family, family_length);
    p += family_length;
    put_bytes(&p, message->topic, topic_length);
    put_bytes(&p, message->payload, message->payload_length);
    put_bytes(&p, message->response_topic, response_length);
    put_bytes(&p, message->correlation_data, message->correlation_length);
    for (int i = 0; i < 8; i++)
        *p++ = (unsigned char)(message->received_wall_ms >> (8 * i));
    /* Added later, at the end: a record without it still decodes (id 0). */
    *p++ = (unsigned char)(message->message_id & 0xff);
    *p++ = (unsigned char)(message->message_id >> 8);
    *length_out = length;
    return buffer;
fail:
    free(buffer);
    return NULL;
}

struct reader {
    const unsigned char *p;
    size_t left;
    bool ok;
};

static const unsigned char *take(struct reader *r, size_t length)
{
    if (!r->ok || length > r->left) {
        r->ok = false;
        return NULL;
    }
    const unsigned char *at = r->p;
    r->p += length;
    r->left -= length;
    return at;
}

static uint32_t take_u32(struct reader *r)
{
    const unsigned char *at = take(r, 4);
    uint32_t v = 0;
    for (int i = 3; at && i >= 0; i--)
        v = (v << 8) | at[i];
    return v;
}

/* Copy `length` bytes out of the reader as a NUL-terminated string. */
static char *take_string(struct reader *r, size_t length)
{
    const unsigned char *at = take(r, length);
    if (at == NULL)
        return NULL;
    char *copy = malloc(length + 1);
    if (copy == NULL) {
        r->ok = false;
        return NULL;
    }
    memcpy(copy, at, length);
    copy[length] = '\0';
    return copy;
}

unsigned char *topics_spool_record(const char *family, const char *topic, const void *payload,
                                   size_t payload_length, uint64_t received_wall_ms,
                                   size_t *length_out)
{
    /* Only the fields encode_message reads; nothing is copied or freed. */
    struct topic_message message = {
        .topic = (char *)topic,
        .payload = (unsigned char *)payload,
        .payload_length = payload_length,
        .received_wall_ms = received_wall_ms,
    };
    return encode_message(family, &message, length_out);
}

/* Inverse of encode_message; NULL on a malformed record. */
struct topic_message *topics_spool_decode(const unsigned char *data, size_t length,
                                          char family[256])
{
    struct reader r = {data, length, true};
    const unsigned char *version = take(&r, 1);
    if (version == NULL || *version != 1)
        return NULL;
    const unsigned char *family_length = take(&r, 1);
    const unsigned char *family_bytes = family_length ? take(&r, *family_length) : NULL;
    if (family_bytes == NULL)
        return NULL;
    memcpy(family, family_bytes, *family_length);
    family[*family_length] = '\0';
    struct topic_message *message = calloc(1, sizeof *message);
    if (message == NULL)
        return NULL;
    message->topic = take_string(&r, take_u32(&r));
    uint32_t payload_length = take_u32(&r);
    message->payload = (unsigned char *)take_string(&r, payload_length);
    message->payload_length = payload_length;
    uint32_t response_length = take_u32(&r);
    char *response = take_string(&r, response_length);
    if (response && response_length)
        message->response_topic = response;
    else
        free(response);
    uint32_t correlation_length = take_u32(&r);
    if (correlation_length) {
        message->correlation_data = (unsigned char *)take_string(&r, correlation_length);
        message->correlation_length = correlation_length;
    }
    const unsigned char *wall = take(&r, 8);
    for (int i = 7; wall && i >= 0; i--)
        message->received_wall_ms = (message->received_wall_ms << 8) | wall[i];
    if (r.ok && r.left >= 2) {
        const unsigned char *id = take(&r, 2);
        message->message_id = (uint16_t)(id[0] | (id[1] << 8));
    }
    if (!r.ok || message->topic == NULL || message->payload == NULL) {
        topic_message_free(message);
        return NULL;
    }
    return message;
}

/* The pool calls this with the run function smuggled through the item. */
struct queued_message {
    topic_family_run run;
    struct topic_message *message;
    bool solo; /* handed back by a batch: the next worker runs it on its own */
};

static void run_queued(void *worker_state, void *item)
{
    struct queued_message *queued = item;
    static struct topic_worker bare_worker; /* when per-worker setup ran out of memory */
    queued->run(worker_state ? worker_state : &bare_worker, queued->message);
    free(queued);
}

static void discard_queued(void *item);

/* A handed-over message that will not run (shutdown): kept for the next start. */
static void discard_handed_over(void *item)
{
    struct topic_message *message = item;
    LOG_WARN(MODULE, "shutdown: %s was not processed; it stays in the spool for the next start",
             message->topic);
    topic_message_keep(message);
    topic_message_free(message);
}

void topics_hand_over(struct worker_pool *pool, void (*run)(void *worker_state, void *item),
                      struct topic_message *message, const char *queue_key)
{
    for (;;) {
        enum butler_status status =
            pool ? worker_pool_submit(pool, run, discard_handed_over, message, SUBMIT_SLICE_MS)
                 : BUTLER_ERR_SHUTDOWN;
        if (status == BUTLER_OK)
            return;
        if (status == BUTLER_ERR_FULL && !butler_runtime_stopping()) {
            LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "queue full (%s); holding %s", queue_key,
                            message->topic);
            continue;
        }
        LOG_WARN(MODULE, "not accepting %s now; it stays in the spool", message->topic);
        topic_message_keep(message);
        topic_message_free(message);
        return;
    }
}

static bool same_family_run(worker_run_fn run, void *item, void *context)
{
    const struct queued_message *queued = item;
    const topic_family_run *wanted = context;
    return run == run_queued && queued->run == *wanted && !queued->solo;
}

size_t topics_take_waiting(void (*run)(struct topic_worker *, struct topic_message *),
                           struct topic_message **messages, size_t max)
{
    struct butler_runtime *runtime = butler_runtime_current;
    enum { TAKE_SLICE = 64 };
    void *items[TAKE_SLICE];
    topic_family_run wanted = run;
    size_t taken = 0;
    while (runtime && runtime->pool && taken < max) {
        size_t want = max - taken < TAKE_SLICE ? max - taken : TAKE_SLICE;
        size_t got =
            worker_pool_take_matching(runtime->pool, same_family_run, &wanted, items, want);
        for (size_t i = 0; i < got; i++) {
            struct queued_message *queued = items[i];
            messages[taken++] = queued->message;
            free(queued);
        }
        if (got < want)
            break;
    }
    return taken;
}

enum butler_status topics_requeue(void (*run)(struct topic_worker *, struct topic_message *),
                                  struct topic_message *message)
{
    struct butler_runtime *runtime = butler_runtime_current;
    struct queued_message *queued = calloc(1, sizeof *queued);
    if (queued == NULL)
        return BUTLER_ERR_NOMEM;
    *queued = (struct queued_message){.run = run, .message = message, .solo = true};
    enum butler_status status =
        runtime && runtime->pool
            ? worker_pool_submit(runtime->pool, run_queued, discard_queued, queued, 0)
            : BUTLER_ERR_SHUTDOWN;
    if (status != BUTLER_OK)
        free(queued);
    return status;
}

static void discard_queued(void *item)
{
    struct queued_message *queued = item;
    LOG_WARN(MODULE, "shutdown: %s was not processed; it stays in the spool for the next start",
             queued->message->topic);
    topic_message_keep(queued->message);
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
    if (held_messages_active() && !bounded.session_resumed)
        held_messages_clear(); /* a new session: the broker has nothing to send again */
    if (held_messages_active() && bounded.qos > 0 && !bounded.retain &&
        held_messages_take(bounded.message_id, bounded.topic, bounded.payload,
                           bounded.payload_length)) {
        /* Spooled before the restart, not acknowledged: the spooled copy is
         * replayed, so this one is only acknowledged. */
        topics_count(family->name, "redelivered_held");
        LOG_INFO(MODULE,
                 "the broker sent %s again (packet %u) after the restart; the copy in the spool "
                 "is replayed instead",
                 bounded.topic, (unsigned)bounded.message_id);
        return;
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
    /* Record before acknowledging: once this returns, the PUBACK goes out. */
    if (runtime->spool) {
        size_t record_length = 0;
        unsigned char *record = encode_message(family->name, queued->message, &record_length);
        for (;;) {
            enum butler_status status = record ? spool_add(runtime->spool, record, record_length,
                                                           &queued->message->spool_id)
                                               : BUTLER_ERR_NOMEM;
            if (status == BUTLER_OK)
                break;
            metrics_count("butler_spool_refused_total", "",
                          "Messages the spool could not take (full or failing); held back");
            LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE,
                            "spool cannot take %s (%s); holding it until there is room",
                            message->topic, butler_status_str(status));
            if (atomic_load(&runtime->stopping) || status == BUTLER_ERR_TOO_LARGE) {
                /* Not recorded: the PUBACK libmosquitto has queued must never
                 * reach the broker, so cut the connection before returning;
                 * the broker keeps the message for the session. */
                mqtt_link_abort_connection(runtime->link);
                free(record);
                topic_message_free(queued->message);
                free(queued);
                return;
            }
            struct timespec pause = {0, 100 * 1000000L};
            nanosleep(&pause, NULL);
        }
        free(record);
    }
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
        topic_message_keep(queued->message); /* recorded: replayed at the next start */
        topic_message_free(queued->message);
        free(queued);
        return;
    }
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
    struct queued_message **items;
    size_t count, capacity;
    size_t malformed;
    size_t events; /* Sense event messages handed to topics/events.c */
};

static struct recovery recovered_work;
static pthread_t replay_thread;
static bool replay_thread_started;

static topic_family_run family_by_name(const char *name)
{
    for (size_t i = 0; i < FAMILY_COUNT; i++)
        if (families[i].run && strcmp(families[i].name, name) == 0)
            return families[i].run;
    return NULL;
}

/* Spool callback (start-up, main thread): data is valid only during the call. */
static void on_recovered(void *context, const struct spool_recovered *entry)
{
    struct recovery *recovery = context;
    if (entry->type == SPOOL_DONE) {
        task_start_remember_answer(recovery->runtime->task_start, (const char *)entry->data,
                                   entry->length, entry->wall_ms, entry->id);
        return;
    }
    char family[256];
    struct topic_message *message = topics_spool_decode(entry->data, entry->length, family);
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
    topic_family_run run = message ? family_by_name(family) : NULL;
    struct queued_message *queued = run ? calloc(1, sizeof *queued) : NULL;
    if (queued && recovery->count == recovery->capacity) {
        size_t grown = recovery->capacity ? recovery->capacity * 2 : 64;
        struct queued_message **bigger = realloc(recovery->items, grown * sizeof *bigger);
        if (bigger) {
            recovery->items = bigger;
            recovery->capacity = grown;
        }
    }
    if (queued == NULL || recovery->count == recovery->capacity) {
        /* Leave it in the spool (not marked done): the next start tries again. */
        recovery->malformed++;
        free(queued);
        if (message)
            topic_message_keep(message);
        topic_message_free(message);
        return;
    }
    message->spool_id = entry->id;
    message->replay = true;
    /* The broker may send it again if the PUBACK never left: see held_messages.h. */
    held_messages_add(message->message_id, message->topic, message->payload,
                      message->payload_length);
    message->notes = entry->note_count ? calloc(entry->note_count, sizeof *message->notes) : NULL;
    for (size_t i = 0; message->notes && i < entry->note_count; i++) {
        message->notes[i] = malloc(entry->note_lengths[i] + 1);
        if (message->notes[i] == NULL)
            break;
        memcpy(message->notes[i], entry->notes[i], entry->note_lengths[i]);
        message->notes[i][entry->note_lengths[i]] = '\0';
        message->note_count = i + 1;
    }
    queued->run = run;
    queued->message = message;
    recovery->items[recovery->count++] = queued;
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
    };
    recovered_work = (struct recovery){.runtime = runtime};
    enum butler_status status =
        spool_open(&options, on_recovered, &recovered_work, &runtime->spool);
    if (status != BUTLER_OK) {
        LOG_ERROR(MODULE, "cannot open the spool in %s: %s", config->spool.dir,
                  butler_status_str(status));
        return status;
    }
    if (recovered_work.events)
        LOG_INFO(MODULE, "%zu Sense event message(s) from the spool will be published",
                 recovered_work.events);
    if (recovered_work.malformed)
        LOG_WARN(MODULE, "%zu spooled item(s) could not be replayed now; kept for the next start",
                 recovered_work.malformed);
    return BUTLER_OK;
}

/* Feed recovered work to the pool without holding up start-up or shutdown:
 * workers may wait for the broker, so the queue can stay full for a while. */
static void *replay_main(void *argument)
{
    struct butler_runtime *runtime = argument;
    size_t next = 0;
    while (next < recovered_work.count && !atomic_load(&runtime->stopping)) {
        struct queued_message *queued = recovered_work.items[next];
        enum butler_status status =
            worker_pool_submit(runtime->pool, run_queued, discard_queued, queued, SUBMIT_SLICE_MS);
        if (status == BUTLER_OK)
            next++;
        else if (status != BUTLER_ERR_FULL)
            break;
    }
    if (next)
        LOG_INFO(MODULE, "replayed %zu item(s) from the spool", next);
    for (; next < recovered_work.count; next++) {
        topic_message_keep(recovered_work.items[next]->message);
        topic_message_free(recovered_work.items[next]->message);
        free(recovered_work.items[next]);
    }
    free(recovered_work.items);
    recovered_work.items = NULL;
    recovered_work.count = 0;
    return NULL;
}

void topics_replay(struct butler_runtime *runtime)
{
    if (recovered_work.count == 0) {
        free(recovered_work.items);
        recovered_work.items = NULL;
        return;
    }
    if (pthread_create(&replay_thread, NULL, replay_main, runtime) == 0)
        replay_thread_started = true;
}

void topics_stop_intake(struct butler_runtime *runtime)
{
    mqtt_link_unsubscribe_all(runtime->link);
}

void topics_stop_replay(void)
{
    if (replay_thread_started) {
        pthread_join(replay_thread, NULL);
        replay_thread_started = false;
    }
}

void topics_teardown(void)
{
    topics_stop_replay();
    held_messages_clear();
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
