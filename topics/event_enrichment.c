/*
 * QRS enrichment of Sense events (see event_enrichment.h): what QRS knows
 * about the task and app of an event (tags, custom properties, owner,
 * execution status, the script log tail of a failed run).
 *
 * Every QRS call has a short timeout and one attempt, and a call starts only
 * if it can finish within the event's EVENTS_ENRICH_BUDGET_MS, so enrichment
 * never holds an event long. Each worker thread keeps its own QRS and HTTP
 * clients (thread-specific data, freed when the thread ends).
 */
#include "topics/event_enrichment.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge/clients/http_client.h"
#include "bridge/clients/qrs.h"
#include "bridge/core/clock.h"
#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/core/runtime.h"
#include "bridge/model/sense_event.h"
#include "topics/events.h"
#include "topics/log_tail.h"

#define MODULE "events"

enum {
    QRS_CALL_TIMEOUT_MS = 1500,
    QRS_CONNECT_TIMEOUT_MS = 1000,
    QRS_LAG_PAUSE_MS = 300,
    QRS_LAG_TRIES = 3, /* script log reference tries */
    /* Kept back from waiting for QRS to catch up: the app read, the script
     * log reference and its download still need time after the wait. */
    QRS_LAG_RESERVE_MS = 2 * QRS_CALL_TIMEOUT_MS,
    PATH_MAX_BYTES = 512,
    /* Bytes of a script log's end read (the rest streams past): several
     * times the tail, so 20 long lines still fit. */
    LOG_READ_TAIL_BYTES = 64 * 1024,
};

/* The QRS settings enrichment uses: the configured ones with short timeouts
 * and a single attempt (we retry ourselves within the budget). */
static struct butler_config enrich_config;

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
static enum butler_status raw_get_bounded(struct http_client *http, const char *route,
                                          const char *path_and_query, size_t tail_bytes,
                                          char **text_out, size_t *length_out, bool *head_cut_out)
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
        .max_response_bytes = tail_bytes ? tail_bytes : 16 << 20,
        .keep_tail = tail_bytes > 0,
    };
    struct http_response response = {.retry_after_s = -1};
    enum butler_status status = http_client_perform(http, &request, &response);
    snprintf(labels, sizeof labels, "route=\"%s\",status=\"%ld\"", route, response.status);
    metrics_count("butler_qrs_calls_total", labels, "QRS calls by route and HTTP status");
    if (status == BUTLER_OK) {
        *text_out = response.body;
        if (length_out)
            *length_out = response.body_length;
        if (head_cut_out)
            *head_cut_out = response.head_cut;
        response.body = NULL;
    }
    http_response_clear(&response);
    return status;
}

static enum butler_status raw_get(struct http_client *http, const char *route,
                                  const char *path_and_query, char **text_out)
{
    return raw_get_bounded(http, route, path_and_query, 0, text_out, NULL, NULL);
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

/* The event's tail of a log (topics/log_tail.h) as a JSON string. */
static cJSON *log_tail_json(const char *text, size_t length, bool head_cut)
{
    char *tail = log_tail(text, length, head_cut, EVENTS_LOG_TAIL_LINES, EVENTS_LOG_TAIL_MAX_BYTES);
    if (tail == NULL)
        return NULL;
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
        size_t text_length = 0;
        bool head_cut = false;
        if (reference && reference[0] && can_call(deadline)) {
            /* A log of any size: only its last LOG_READ_TAIL_BYTES are kept. */
            snprintf(path, sizeof path, "download/reloadtask/%s/scriptlog.txt", reference);
            if (raw_get_bounded(state->http, "download/reloadtask/scriptlog.txt", path,
                                LOG_READ_TAIL_BYTES, &text, &text_length, &head_cut) != BUTLER_OK)
                text = NULL;
        }
        if (text) {
            cJSON *tail = log_tail_json(text, text_length, head_cut);
            free(text);
            cJSON_Delete(answer);
            return tail;
        }
        cJSON_Delete(answer);
    }
    return NULL;
}

/*
 * The newest ExecutionResult of `execution_id` (one per attempt when the
 * task retries; sense-interfaces.md 7.2), or NULL when QRS has none or the
 * call failed. Owned by the caller.
 */
static cJSON *result_of_execution(struct qrs_client *qrs, const char *execution_id)
{
    char filter[96];
    cJSON *answer = NULL, *newest = NULL;
    struct qrs_result result;
    snprintf(filter, sizeof filter, "ExecutionId eq %s", execution_id);
    if (qrs_get(qrs, "executionresult/full", filter, &answer, &result) != BUTLER_OK)
        return NULL;
    const cJSON *item;
    const char *newest_start = NULL;
    int index = 0, newest_index = -1;
    cJSON_ArrayForEach(item, answer)
    {
        const char *start = json_string_member(item, "startTime");
        start = start ? start : "";
        if (newest_index < 0 || strcmp(start, newest_start) >= 0)
            newest_start = start, newest_index = index;
        index++;
    }
    if (cJSON_IsArray(answer) && newest_index >= 0)
        newest = cJSON_DetachItemFromArray(answer, newest_index);
    cJSON_Delete(answer);
    return newest;
}

static enum butler_status enrich(struct enrich_thread *state, const struct sense_event *event,
                                 uint64_t deadline, cJSON *out, char *error, size_t error_size)
{
    const char *task_id = event->fields[SENSE_FIELD_TASK_ID];
    const char *app_id = event->fields[SENSE_FIELD_APP_ID];
    cJSON *task = NULL, *app = NULL;
    enum butler_status status = BUTLER_ERR_REMOTE;
    const cJSON *last_result = NULL;
    cJSON *run = NULL; /* the event's own execution result, when QRS has it */
    bool caught_up = true;
    int polls = 0;
    bool is_task = event->type != SENSE_EVENT_ENGINE_RELOAD_FAILED;

    if (is_task) {
        if (!can_call(deadline)) {
            snprintf(error, error_size, "QRS enrichment ran out of time");
            goto out;
        }
        task = qrs_get_one(state->qrs, "task/full", task_id, error, error_size);
        if (task == NULL)
            goto out;
        /* The run the event names, not whatever ran last; QRS lags the
         * scheduler's log line, so poll until it shows a final status. */
        const char *execution_id = event->fields[SENSE_FIELD_EXECUTION_ID];
        bool by_execution = sense_is_guid(execution_id, strlen(execution_id));
        for (;;) {
            cJSON_Delete(run);
            run = NULL;
            if (by_execution)
                run = result_of_execution(state->qrs, execution_id);
            if (run == NULL && polls > 0) {
                /* No result for that id: the task's newest, read again. */
                cJSON *fresh = qrs_get_one(state->qrs, "task/full", task_id, error, error_size);
                if (fresh) {
                    cJSON_Delete(task);
                    task = fresh;
                }
            }
            polls++;
            if (run) {
                last_result = run;
            } else {
                const cJSON *operational = cJSON_GetObjectItemCaseSensitive(task, "operational");
                last_result = cJSON_GetObjectItemCaseSensitive(operational, "lastExecutionResult");
            }
            const cJSON *run_status = cJSON_GetObjectItemCaseSensitive(last_result, "status");
            caught_up = !cJSON_IsNumber(run_status) || !status_is_running(run_status->valueint) ||
                        event->type == SENSE_EVENT_DISTRIBUTE;
            if (caught_up || remaining_ms(deadline) < QRS_LAG_PAUSE_MS + QRS_LAG_RESERVE_MS ||
                butler_runtime_stopping())
                break;
            sleep_ms(QRS_LAG_PAUSE_MS);
        }
        cJSON_AddStringToObject(out, "executionResultSource", run ? "executionId" : "task");
        /* False: QRS still showed the run as going on when the wait ended,
         * so executionStatus and the log tail may be from before its end. */
        cJSON_AddBoolToObject(out, "caughtUp", caught_up);
        if (!caught_up)
            metrics_count("butler_enrichment_not_caught_up_total", "",
                          "Events published before QRS showed their run's final status");
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
    if (event->type == SENSE_EVENT_TASK_FAILED || event->type == SENSE_EVENT_TASK_ABORTED)
        tail = script_log_tail(state, task_id, last_result, deadline);
    cJSON_AddItemToObject(out, "scriptLogTail", tail ? tail : cJSON_CreateNull());
    error[0] = '\0';
    status = BUTLER_OK;
out:
    cJSON_Delete(run);
    cJSON_Delete(task);
    cJSON_Delete(app);
    return status;
}

void event_enrichment_setup(const struct butler_config *config)
{
    enrich_config = *config; /* shallow: strings stay owned by the real config */
    if (enrich_config.qrs.timeout_ms > QRS_CALL_TIMEOUT_MS)
        enrich_config.qrs.timeout_ms = QRS_CALL_TIMEOUT_MS;
    if (enrich_config.qrs.connect_timeout_ms > QRS_CONNECT_TIMEOUT_MS)
        enrich_config.qrs.connect_timeout_ms = QRS_CONNECT_TIMEOUT_MS;
    enrich_config.retry.max_attempts = 1;
}

enum butler_status event_enrichment_run(const struct sense_event *event, uint64_t deadline,
                                        cJSON *out, char *error, size_t error_size)
{
    struct enrich_thread *state = enrich_thread_get();
    if (state == NULL) {
        snprintf(error, error_size, "enrichment unavailable: out of memory");
        return BUTLER_ERR_NOMEM;
    }
    return enrich(state, event, deadline, out, error, error_size);
}
