/*
 * Sense events; see events.h.
 *
 * Fast path (qrs.url empty): the UDP publisher thread publishes with
 * mqtt_link_publish() and does not wait for the PUBACK, which is what lets it
 * keep up with tens of thousands of datagrams a second. A publish that the
 * link refuses up front leaves the event in the UDP ring (the ingress offers
 * it again); a publish that was sent but never acknowledged (the connection
 * dropped) comes back through outbound_done() onto a retry list that is
 * flushed before any new event, so nothing accepted is lost while Butler
 * runs. The retry list is bounded by the link's in-flight window plus the
 * legacy copies of one event, and by EVENTS_RETRY_MAX as a hard stop.
 *
 * QRS path: the event is copied to a worker (bounded worker queue; when full
 * the event waits in the UDP ring). Every QRS call there has a short timeout
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

#include "bridge/clock.h"
#include "bridge/http_client.h"
#include "bridge/json.h"
#include "bridge/log.h"
#include "bridge/metrics.h"
#include "bridge/mqtt_link.h"
#include "bridge/qrs.h"
#include "bridge/worker_pool.h"
#include "topics/publish.h"

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

/* ------------------------------------------------------------ fast path */

static pthread_mutex_t retry_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct outbound *retry_head, *retry_tail;
static size_t retry_count;

static void retry_push(struct outbound *message, bool front)
{
    pthread_mutex_lock(&retry_mutex);
    if (retry_count >= EVENTS_RETRY_MAX) {
        pthread_mutex_unlock(&retry_mutex);
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "retry list full: dropping a message for %s",
                        message->topic);
        count_lost("retry_full");
        outbound_free(message);
        return;
    }
    message->next = NULL;
    if (front) {
        message->next = retry_head;
        retry_head = message;
        if (retry_tail == NULL)
            retry_tail = message;
    } else {
        if (retry_tail)
            retry_tail->next = message;
        else
            retry_head = message;
        retry_tail = message;
    }
    retry_count++;
    pthread_mutex_unlock(&retry_mutex);
}

static struct outbound *retry_pop(void)
{
    pthread_mutex_lock(&retry_mutex);
    struct outbound *message = retry_head;
    if (message) {
        retry_head = message->next;
        if (retry_head == NULL)
            retry_tail = NULL;
        retry_count--;
    }
    pthread_mutex_unlock(&retry_mutex);
    return message;
}

/* MQTT network thread (or shutdown): PUBACK or failure of a fast publish. */
static void outbound_done(void *context, enum butler_status status)
{
    struct outbound *message = context;
    if (status == BUTLER_OK || status == BUTLER_ERR_REMOTE) {
        if (status == BUTLER_ERR_REMOTE) {
            LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "broker refused %s", message->topic);
            count_lost("broker_refused");
        }
        outbound_free(message);
        return;
    }
    if (butler_runtime_stopping() || status == BUTLER_ERR_SHUTDOWN) {
        /* SPOOL HOOK: unacknowledged event messages at shutdown. */
        count_lost("shutdown");
        outbound_free(message);
        return;
    }
    retry_push(message, false);
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

/* Publisher thread: send what the broker did not acknowledge, oldest first.
 * Stops at the first refusal (it stays at the front) and returns it. */
static enum butler_status flush_retries(void)
{
    struct outbound *message;
    while ((message = retry_pop()) != NULL) {
        enum butler_status status = send_outbound(message);
        if (status == BUTLER_OK)
            continue;
        if (retryable(status)) {
            retry_push(message, true);
            return status;
        }
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "cannot publish %s: %s", message->topic,
                        butler_status_str(status));
        count_lost("invalid");
        outbound_free(message);
    }
    return BUTLER_OK;
}

void events_idle(void *context)
{
    (void)context;
    if (events_runtime && mqtt_link_connected(events_runtime->link))
        flush_retries();
}

static enum butler_status deliver_now(const struct udp_event *event, uint64_t received_wall_ms)
{
    struct outbound *messages[1 + 2 * LEGACY_MAX] = {0};
    enum butler_status status = flush_retries();
    if (status != BUTLER_OK)
        return status; /* keep order: older messages first */
    cJSON *json = events_build_json(event, received_wall_ms, NULL, NULL);
    size_t count = json ? build_messages(event, json, messages) : 0;
    cJSON_Delete(json);
    if (count == 0)
        return BUTLER_ERR_NOMEM; /* offered again shortly */
    status = send_outbound(messages[0]);
    if (status != BUTLER_OK) {
        for (size_t i = 0; i < count; i++)
            outbound_free(messages[i]);
        return status;
    }
    /* The event itself is out; legacy copies that the link refuses now are
     * sent by the retry list so they cannot hold up the next event. */
    for (size_t i = 1; i < count; i++)
        if (send_outbound(messages[i]) != BUTLER_OK)
            retry_push(messages[i], false);
    count_published(event->type == UDP_EVENT_ENGINE_RELOAD_FAILED ? "engine-reload-failed"
                                                                  : udp_event_outcome(event->type));
    return BUTLER_OK;
}

/* ----------------------------------------------------------- QRS path */

struct enrich_job {
    uint64_t received_wall_ms;
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

/* Worker thread: publish one message, waiting for the broker if needed. */
static void publish_one(struct outbound *message)
{
    enum butler_status status =
        publish_reliably(message->topic, message->payload, message->length, &event_options);
    if (status != BUTLER_OK) {
        /* SPOOL HOOK: an enriched event not delivered at shutdown. */
        LOG_WARN(MODULE, "event for %s not published: %s", message->topic,
                 butler_status_str(status));
        count_lost(status == BUTLER_ERR_SHUTDOWN ? "shutdown" : "invalid");
    }
    outbound_free(message);
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
    struct outbound *messages[1 + 2 * LEGACY_MAX] = {0};
    size_t count = json ? build_messages(&job->event, json, messages) : 0;
    if (count == 0)
        count_lost("nomem");
    for (size_t i = 0; i < count; i++)
        publish_one(messages[i]);
    if (count > 0)
        count_published(job->event.type == UDP_EVENT_ENGINE_RELOAD_FAILED
                            ? "engine-reload-failed"
                            : udp_event_outcome(job->event.type));
    cJSON_Delete(json);
    cJSON_Delete(qrs);
    free(job);
}

static void enrich_discard(void *item)
{
    /* SPOOL HOOK: queued for enrichment when the pool stopped. */
    count_lost("shutdown");
    free(item);
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

enum butler_status events_setup(struct butler_runtime *runtime)
{
    events_runtime = runtime;
    enrich_config = *runtime->config; /* shallow: strings stay owned by the real config */
    if (enrich_config.qrs.timeout_ms > QRS_CALL_TIMEOUT_MS)
        enrich_config.qrs.timeout_ms = QRS_CALL_TIMEOUT_MS;
    if (enrich_config.qrs.connect_timeout_ms > QRS_CONNECT_TIMEOUT_MS)
        enrich_config.qrs.connect_timeout_ms = QRS_CONNECT_TIMEOUT_MS;
    enrich_config.retry.max_attempts = 1;
    return BUTLER_OK;
}

void events_teardown(void)
{
    struct outbound *message;
    while ((message = retry_pop()) != NULL) {
        /* SPOOL HOOK: event messages the broker never acknowledged. */
        count_lost("shutdown");
        outbound_free(message);
    }
}
