#include "topics/publish.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge/core/clock.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/core/runtime.h"
#include "bridge/model/task_request.h"
#include "topics/message.h"
#include "bridge/model/status_view.h"

#define MODULE "publish"

enum { STOP_CHECK_MS = 1000, RECONNECT_WAIT_MS = 1000 };

/* Worker thread. Sends again only what the link did not take (not connected,
 * in-flight window full). Once taken, the publish is the link's: it survives
 * reconnects (libmosquitto sends it again itself), so this waits for its
 * PUBACK however long that takes, until Butler stops; a copy sent from here
 * too reached subscribers twice. */
enum butler_status publish_reliably(const char *topic, const void *payload, size_t payload_length,
                                    const struct mqtt_publish_options *options)
{
    struct butler_runtime *runtime = butler_runtime_current;
    enum butler_status status;
    bool final_try = false;
    for (;;) {
        status = mqtt_link_publish_settled(runtime->link, topic, payload, payload_length, options,
                                           STOP_CHECK_MS, butler_runtime_stopping);
        if (status == BUTLER_OK) /* the status page's recent lists */
            status_view_note_publish(topic, payload, payload_length);
        /* Settled, or a refusal (by the broker, or too large for it) that is
         * final: sending it again would be refused again, forever. */
        if (status != BUTLER_ERR_NOT_CONNECTED && status != BUTLER_ERR_FULL)
            return status;
        /* At shutdown, one more try once the link had its chance, then give up:
         * the caller's work stays unfinished and is redelivered by the broker. */
        if (final_try)
            return BUTLER_ERR_SHUTDOWN;
        if (butler_runtime_stopping())
            final_try = true;
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "publish to %s waiting: %s", topic,
                        butler_status_str(status));
        mqtt_link_wait_connected(runtime->link, RECONNECT_WAIT_MS);
        if (status == BUTLER_ERR_FULL) {
            struct timespec pause = {0, 50 * 1000000L};
            nanosleep(&pause, NULL);
        }
    }
}

void publish_deadletter(const char *family, const char *topic, const unsigned char *payload,
                        size_t payload_length, const char *error, int attempts,
                        uint64_t first_attempt_wall_ms)
{
    const struct butler_config *config = butler_runtime_current->config;
    char letter_topic[1024];
    char first[32];
    char labels[96];
    char *text = NULL;
    cJSON *letter = cJSON_CreateObject();
    if (letter == NULL)
        goto out;
    snprintf(letter_topic, sizeof letter_topic, "%s/deadletter/%s", config->mqtt.topic_root, topic);
    clock_format_iso8601(first_attempt_wall_ms, first, sizeof first);
    bool printable = payload && task_valid_utf8(payload, payload_length);
    cJSON_AddStringToObject(letter, "topic", topic);
    cJSON_AddStringToObject(letter, "payload", printable ? (const char *)payload : "");
    cJSON_AddStringToObject(letter, "error", error ? error : "");
    cJSON_AddNumberToObject(letter, "attempts", attempts);
    cJSON_AddStringToObject(letter, "firstAttemptAt", first);
    text = cJSON_PrintUnformatted(letter);
    if (text == NULL)
        goto out;
    if (publish_reliably(letter_topic, text, strlen(text),
                         &(struct mqtt_publish_options){.qos = 1}) != BUTLER_OK) {
        LOG_ERROR(MODULE, "could not publish the dead letter for %s", topic);
        goto out;
    }
    snprintf(labels, sizeof labels, "family=\"%s\"", family);
    metrics_count("butler_deadletters_total", labels,
                  "Work that failed for good and went to <root>/deadletter/");
out:
    cJSON_Delete(letter);
    free(text);
}

/* ---- publishing without waiting ---- */

struct publish_group {
    pthread_mutex_t mutex;
    size_t pending;
    /* First failure that leaves the work unfinished (not sent because Butler
     * stopped, out of memory), or BUTLER_OK. Refusals do not count here. */
    enum butler_status status;
    size_t refused; /* parts the broker refused for good */
    void (*finished)(void *context, enum butler_status status);
    void *context;
};

struct publish_part {
    struct publish_group *group;
    char *topic;
    unsigned char *payload;
    size_t payload_length;
    struct mqtt_publish_options options;
    char *response_topic;
    unsigned char *correlation_data;
    char *content_type;
    struct publish_part *next_parked;
};

static pthread_mutex_t parked_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct publish_part *parked;

static void part_free(struct publish_part *part)
{
    free(part->topic);
    free(part->payload);
    free(part->response_topic);
    free(part->correlation_data);
    free(part->content_type);
    free(part);
}

/* A publish refused for good: by the broker (PUBACK reason >= 0x80), too
 * large for it, or not a valid topic. Sending it again cannot help. */
static bool refused_for_good(enum butler_status status)
{
    return status == BUTLER_ERR_REMOTE || status == BUTLER_ERR_TOO_LARGE ||
           status == BUTLER_ERR_INVALID;
}

/* Drop one count of the group; the last one calls `finished` and frees it. */
static void group_release(struct publish_group *group, enum butler_status status)
{
    pthread_mutex_lock(&group->mutex);
    if (refused_for_good(status))
        group->refused++;
    else if (status != BUTLER_OK && group->status == BUTLER_OK)
        group->status = status;
    bool last = --group->pending == 0;
    pthread_mutex_unlock(&group->mutex);
    if (!last)
        return;
    group->finished(group->context, group->status);
    pthread_mutex_destroy(&group->mutex);
    free(group);
}

/* A part is over (acknowledged, refused or abandoned). */
static void part_finish(struct publish_part *part, enum butler_status status)
{
    struct publish_group *group = part->group;
    if (refused_for_good(status)) {
        metrics_count("butler_answers_refused_total", "",
                      "Answers and Response Topic copies the broker refused for good; the "
                      "request was finished without them");
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                        "the broker refused the publish to %s (%s): not sent again", part->topic,
                        butler_status_str(status));
    }
    part_free(part);
    group_release(group, status);
}

static void part_acknowledged(void *context, enum butler_status status);

static enum butler_status part_send(struct publish_part *part)
{
    return mqtt_link_publish(butler_runtime_current->link, part->topic, part->payload,
                             part->payload_length, &part->options, part_acknowledged, part);
}

static void park(struct publish_part *part)
{
    pthread_mutex_lock(&parked_mutex);
    part->next_parked = parked;
    parked = part;
    pthread_mutex_unlock(&parked_mutex);
}

/* Network thread (or the caller at shutdown): the broker's answer, or the link
 * stopped first. A dropped connection does not come here: the link keeps the
 * publish and libmosquitto sends it again itself. BUTLER_ERR_NOT_CONNECTED is
 * still parked for the next CONNACK, should a link ever report it. */
static void part_acknowledged(void *context, enum butler_status status)
{
    struct publish_part *part = context;
    if (status == BUTLER_ERR_NOT_CONNECTED && !butler_runtime_stopping()) {
        park(part);
        return;
    }
    if (status == BUTLER_OK)
        status_view_note_publish(part->topic, part->payload, part->payload_length);
    part_finish(part,
                status == BUTLER_OK || refused_for_good(status) ? status : BUTLER_ERR_SHUTDOWN);
}

static struct publish_part *take_parked(void)
{
    pthread_mutex_lock(&parked_mutex);
    struct publish_part *list = parked;
    parked = NULL;
    pthread_mutex_unlock(&parked_mutex);
    return list;
}

/* CONNACK hook (network thread): send what the last connection left unacknowledged. */
static void resend_parked(void *context)
{
    (void)context;
    struct publish_part *list = take_parked();
    while (list) {
        struct publish_part *part = list;
        list = list->next_parked;
        enum butler_status status = part_send(part);
        if (status == BUTLER_ERR_NOT_CONNECTED || status == BUTLER_ERR_FULL)
            park(part);
        else if (status != BUTLER_OK)
            part_finish(part, status);
    }
}

static struct publish_part *part_copy(struct publish_group *group, const struct publish_item *item)
{
    struct publish_part *part = calloc(1, sizeof *part);
    if (part == NULL)
        return NULL;
    part->group = group;
    part->topic = strdup(item->topic);
    part->payload = malloc(item->payload_length ? item->payload_length : 1);
    part->payload_length = item->payload_length;
    part->options = item->options;
    if (item->options.response_topic)
        part->response_topic = strdup(item->options.response_topic);
    if (item->options.correlation_length) {
        part->correlation_data = malloc(item->options.correlation_length);
        if (part->correlation_data)
            memcpy(part->correlation_data, item->options.correlation_data,
                   item->options.correlation_length);
    }
    if (item->options.content_type)
        part->content_type = strdup(item->options.content_type);
    if (part->topic == NULL || part->payload == NULL ||
        (item->options.response_topic && part->response_topic == NULL) ||
        (item->options.correlation_length && part->correlation_data == NULL) ||
        (item->options.content_type && part->content_type == NULL)) {
        part_free(part);
        return NULL;
    }
    if (item->payload_length)
        memcpy(part->payload, item->payload, item->payload_length);
    part->options.response_topic = part->response_topic;
    part->options.correlation_data = part->correlation_data;
    part->options.content_type = part->content_type;
    return part;
}

void publish_all(const struct publish_item *items, size_t count,
                 void (*finished)(void *context, enum butler_status status), void *context)
{
    struct publish_group *group = calloc(1, sizeof *group);
    if (group == NULL) {
        finished(context, BUTLER_ERR_NOMEM);
        return;
    }
    pthread_mutex_init(&group->mutex, NULL);
    group->finished = finished;
    group->context = context;
    /* One extra count held by this function, so the group cannot finish
     * while later items are still being handed out. */
    group->pending = count + 1;
    for (size_t i = 0; i < count; i++) {
        struct publish_part *part = part_copy(group, &items[i]);
        if (part == NULL) {
            group_release(group, BUTLER_ERR_NOMEM);
            continue;
        }
        enum butler_status status = part_send(part);
        if (status == BUTLER_OK)
            continue;
        /* Broker away or the in-flight window full: wait for it here, on the
         * worker, as every synchronous publish does. */
        if (status == BUTLER_ERR_NOT_CONNECTED || status == BUTLER_ERR_FULL)
            status =
                publish_reliably(part->topic, part->payload, part->payload_length, &part->options);
        part_finish(part, status);
    }
    group_release(group, BUTLER_OK); /* this function's own count */
}

void publish_retry_parked(void)
{
    resend_parked(NULL);
}

void publish_setup(void)
{
    mqtt_link_set_connect_hook(butler_runtime_current->link, resend_parked, NULL);
}

void publish_teardown(void)
{
    struct publish_part *list = take_parked();
    while (list) {
        struct publish_part *part = list;
        list = list->next_parked;
        part_finish(part, BUTLER_ERR_SHUTDOWN);
    }
}

/* Only now is the request finished; unanswered because of a disconnect or
 * shutdown, it stays in the spool. An answer the broker refused for good does
 * not keep it (publish_all reports BUTLER_OK then): replaying the request
 * would only be refused again at every start. */
static void answer_published(void *context, enum butler_status status)
{
    struct topic_message *message = context;
    if (status != BUTLER_OK) {
        LOG_WARN(MODULE, "answer to %s not acknowledged (%s); kept for the next start",
                 message->topic, butler_status_str(status));
        topic_message_keep(message);
    }
    topic_message_free(message);
}

/* An MQTT v5 Response Topic Butler answers on: anything outside <root>/, or
 * one of Butler's answer topics (<root>/.../result). Any other topic under
 * <root>/ would let a client that may only send commands make Butler publish
 * into a command or event topic (a webhook route, a file operation). */
static bool response_topic_allowed(const char *topic)
{
    const char *root = butler_runtime_current->config->mqtt.topic_root;
    size_t root_length = strlen(root);
    if (strncmp(topic, root, root_length) != 0 || topic[root_length] != '/')
        return true;
    size_t length = strlen(topic);
    return length >= 7 && strcmp(topic + length - 7, "/result") == 0;
}

void publish_answer(const char *result_topic, struct topic_message *message, const char *text)
{
    struct publish_item items[2] = {
        {.topic = result_topic,
         .payload = text,
         .payload_length = strlen(text),
         .options = {.qos = 1}},
    };
    size_t count = 1;
    bool respond = message->response_topic && message->response_topic[0];
    if (respond && !response_topic_allowed(message->response_topic)) {
        respond = false;
        metrics_count("butler_response_topic_refused_total", "",
                      "MQTT v5 Response Topics refused: under the topic root but not an answer "
                      "topic");
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                        "not answering on Response Topic %s: under the topic root and not an "
                        "answer topic (answered on %s only)",
                        message->response_topic, result_topic);
    }
    if (respond)
        items[count++] = (struct publish_item){
            .topic = message->response_topic,
            .payload = text,
            .payload_length = strlen(text),
            .options =
                {
                    .qos = 1,
                    .correlation_data = message->correlation_data,
                    .correlation_length = message->correlation_length,
                    .content_type = "application/json",
                },
        };
    publish_all(items, count, answer_published, message);
}
