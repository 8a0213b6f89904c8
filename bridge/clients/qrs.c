#include "bridge/clients/qrs.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/core/clock.h"
#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/core/random.h"
#include "bridge/model/status_view.h"
#include "bridge/model/task_request.h"

#define MODULE "qrs"

enum { URL_MAX = 8192, HEADER_MAX = 512 };

struct qrs_client {
    const struct butler_config *config;
    struct http_client *http;
    bool (*should_stop)(void);
    char user_header[HEADER_MAX];
    struct retry_policy retry;
};

bool qrs_enabled(const struct butler_config *config)
{
    return config->qrs.url && config->qrs.url[0];
}

void qrs_make_xrfkey(char out[17])
{
    static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    unsigned char random_bytes[16];
    random_fill(random_bytes, sizeof random_bytes);
    for (size_t i = 0; i < 16; i++)
        out[i] = alphabet[random_bytes[i] % (sizeof alphabet - 1)];
    out[16] = '\0';
}

enum butler_status qrs_filter_quote(const char *value, char *out, size_t out_size)
{
    size_t used = 0;
    if (out_size < 3)
        return BUTLER_ERR_TOO_LARGE;
    out[used++] = '\'';
    for (const char *p = value; *p; p++) {
        bool escape = (*p == '\'' || *p == '\\');
        if (used + (escape ? 2 : 1) + 2 > out_size)
            return BUTLER_ERR_TOO_LARGE;
        if (escape)
            out[used++] = '\\';
        out[used++] = *p;
    }
    out[used++] = '\'';
    out[used] = '\0';
    return BUTLER_OK;
}

enum butler_status qrs_client_create(const struct butler_config *config, bool (*should_stop)(void),
                                     struct qrs_client **out)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    struct qrs_client *client = calloc(1, sizeof *client);
    if (client == NULL)
        goto out;
    client->config = config;
    client->should_stop = should_stop;
    client->retry = (struct retry_policy){
        .max_attempts = config->retry.max_attempts,
        .initial_backoff_ms = config->retry.initial_backoff_ms,
        .max_backoff_ms = config->retry.max_backoff_ms,
    };
    /* QRS documents directory and id as URL-encoded UTF-8. */
    char *directory = curl_easy_escape(NULL, config->qrs.user_directory, 0);
    char *user = curl_easy_escape(NULL, config->qrs.user_id, 0);
    if (directory && user)
        snprintf(client->user_header, sizeof client->user_header,
                 "X-Qlik-User: UserDirectory=%s; UserId=%s", directory, user);
    curl_free(directory);
    curl_free(user);
    if (client->user_header[0] == '\0')
        goto out;
    status = http_client_create(&client->http);
    if (status != BUTLER_OK)
        goto out;
    *out = client;
    client = NULL;
out:
    qrs_client_destroy(client);
    return status;
}

void qrs_client_destroy(struct qrs_client *client)
{
    if (client == NULL)
        return;
    http_client_destroy(client->http);
    free(client);
}

static void count_call(const char *route, long http_status, enum butler_status status)
{
    char labels[96];
    if (http_status > 0)
        snprintf(labels, sizeof labels, "route=\"%s\",status=\"%ld\"", route, http_status);
    else
        snprintf(labels, sizeof labels, "route=\"%s\",status=\"%s\"", route,
                 status == BUTLER_ERR_TIMEOUT ? "timeout" : "error");
    metrics_count("butler_qrs_calls_total", labels, "QRS calls by route and HTTP status");
}

struct qrs_attempt {
    struct qrs_client *client;
    const char *method;
    const char *route;
    const char *path_and_query;
    struct http_response *response;
    struct qrs_result *result;
    const char *body; /* NULL: POSTs send "{}" */
    size_t body_length;
    size_t tail_bytes; /* > 0: keep only the last tail_bytes of the body (logs) */
};

/* One attempt: a fresh xrfkey in the query and the header every time. */
static enum butler_status qrs_attempt_once(void *context, int attempt, long *retry_after_s)
{
    struct qrs_attempt *call = context;
    struct qrs_client *client = call->client;
    char url[URL_MAX];
    char xrf_header[64];
    const char *headers[] = {xrf_header, client->user_header, "Content-Type: application/json",
                             "Accept: application/json", NULL};
    const char *base = client->config->qrs.url;
    size_t base_length = strlen(base);
    while (base_length > 0 && base[base_length - 1] == '/')
        base_length--;
    char xrfkey[17];
    qrs_make_xrfkey(xrfkey);
    snprintf(xrf_header, sizeof xrf_header, "X-Qlik-Xrfkey: %s", xrfkey);
    int written =
        snprintf(url, sizeof url, "%.*s/qrs/%s%sxrfkey=%s", (int)base_length, base,
                 call->path_and_query, strchr(call->path_and_query, '?') ? "&" : "?", xrfkey);
    if (written < 0 || (size_t)written >= sizeof url) {
        snprintf(call->response->error, sizeof call->response->error, "QRS URL too long");
        return BUTLER_ERR_TOO_LARGE;
    }
    bool post = strcmp(call->method, "POST") == 0;
    struct http_request request = {
        .method = call->method,
        .url = url,
        .headers = headers,
        .body = call->body ? call->body
                : post     ? "{}"
                           : NULL,
        .body_length = call->body ? call->body_length
                       : post     ? 2
                                  : 0,
        .timeout_ms = client->config->qrs.timeout_ms,
        .connect_timeout_ms = client->config->qrs.connect_timeout_ms,
        .client_cert_file = client->config->qrs.cert_file,
        .client_key_file = client->config->qrs.key_file,
        .ca_file = client->config->qrs.ca_file,
        .verify_peer = client->config->qrs.verify_peer,
        .max_response_bytes = call->tail_bytes,
        .keep_tail = call->tail_bytes > 0,
    };
    enum butler_status status = http_client_perform(client->http, &request, call->response);
    *retry_after_s = call->response->retry_after_s;
    call->result->http_status = call->response->status;
    count_call(call->route, call->response->status, status);
    if (status == BUTLER_ERR_RETRYABLE)
        LOG_DEBUG(MODULE, "%s %s attempt %d failed: %s", call->method, call->route, attempt,
                  call->response->error);
    return status;
}

/*
 * One logical QRS call, retried per the `retry` section. `path_and_query` is
 * relative to /qrs/ and may already carry a query. Thread: the owning worker.
 */
static enum butler_status qrs_call_tail(struct qrs_client *client, const char *method,
                                        const char *route, const char *path_and_query,
                                        size_t tail_bytes, struct http_response *response,
                                        struct qrs_result *result);

static enum butler_status qrs_call(struct qrs_client *client, const char *method, const char *route,
                                   const char *path_and_query, struct http_response *response,
                                   struct qrs_result *result)
{
    return qrs_call_tail(client, method, route, path_and_query, 0, response, result);
}

static enum butler_status qrs_call_tail(struct qrs_client *client, const char *method,
                                        const char *route, const char *path_and_query,
                                        size_t tail_bytes, struct http_response *response,
                                        struct qrs_result *result)
{
    memset(result, 0, sizeof *result);
    if (!qrs_enabled(client->config)) {
        snprintf(result->error, sizeof result->error, "QRS is not configured (qrs.url is empty)");
        return BUTLER_ERR_REMOTE;
    }
    struct qrs_attempt call = {client, method, route, path_and_query, response,
                               result, NULL,   0,     tail_bytes};
    enum butler_status status =
        retry_run(&client->retry, client->should_stop, qrs_attempt_once, &call, &result->attempts);
    if (status != BUTLER_OK) {
        if (response->error[0])
            snprintf(result->error, sizeof result->error, "QRS %s %s: %s%s%.120s", method, route,
                     response->error, response->body && response->body[0] ? ": " : "",
                     response->body ? response->body : "");
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "%s %s failed after %d attempt(s): %s", method,
                        route, result->attempts, response->error);
    }
    /* The status page: a 4xx is QRS answering (unknown task), not QRS down. */
    bool answered = status == BUTLER_OK || (response->status >= 400 && response->status < 500);
    status_view_note_client(STATUS_CLIENT_QRS, answered,
                            status == BUTLER_OK ? NULL : result->error);
    return status;
}

enum butler_status qrs_get(struct qrs_client *client, const char *path, const char *filter,
                           cJSON **json_out, struct qrs_result *result)
{
    return qrs_get_route(client, path, path, filter, json_out, result);
}

enum butler_status qrs_get_text(struct qrs_client *client, const char *route,
                                const char *path_and_query, size_t tail_bytes, char **text_out,
                                size_t *length_out, bool *head_cut_out, struct qrs_result *result)
{
    struct http_response response = {.retry_after_s = -1};
    *text_out = NULL;
    enum butler_status status =
        qrs_call_tail(client, "GET", route, path_and_query, tail_bytes, &response, result);
    if (status == BUTLER_ERR_REMOTE && response.status == 404)
        status = BUTLER_ERR_NOT_FOUND;
    if (status == BUTLER_OK) {
        *text_out = response.body;
        *length_out = response.body_length;
        *head_cut_out = response.head_cut;
        response.body = NULL;
    }
    http_response_clear(&response);
    return status;
}

enum butler_status qrs_get_route(struct qrs_client *client, const char *route, const char *path,
                                 const char *filter, cJSON **json_out, struct qrs_result *result)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    struct http_response response = {.retry_after_s = -1};
    char path_and_query[URL_MAX];
    char *encoded = NULL;
    *json_out = NULL;
    if (filter) {
        encoded = curl_easy_escape(NULL, filter, 0);
        if (encoded == NULL)
            goto out;
        int written =
            snprintf(path_and_query, sizeof path_and_query, "%s?filter=%s", path, encoded);
        if (written < 0 || (size_t)written >= sizeof path_and_query) {
            status = BUTLER_ERR_TOO_LARGE;
            goto out;
        }
    } else {
        snprintf(path_and_query, sizeof path_and_query, "%s", path);
    }
    status = qrs_call(client, "GET", route, path_and_query, &response, result);
    if (status == BUTLER_ERR_REMOTE && response.status == 404) {
        status = BUTLER_ERR_NOT_FOUND;
        goto out;
    }
    if (status != BUTLER_OK)
        goto out;
    cJSON *json = json_parse_exact(response.body, response.body_length, NULL);
    if (json == NULL) {
        snprintf(result->error, sizeof result->error, "QRS GET %s: response is not JSON", path);
        status = BUTLER_ERR_REMOTE;
        goto out;
    }
    *json_out = json;
out:
    curl_free(encoded);
    http_response_clear(&response);
    return status;
}

enum butler_status qrs_find_tasks(struct qrs_client *client, const char *filter, cJSON **tasks_out,
                                  struct qrs_result *result)
{
    enum butler_status status = qrs_get(client, "task/full", filter, tasks_out, result);
    if (status == BUTLER_OK && !cJSON_IsArray(*tasks_out)) {
        cJSON_Delete(*tasks_out);
        *tasks_out = NULL;
        snprintf(result->error, sizeof result->error, "QRS task/full did not answer an array");
        status = BUTLER_ERR_REMOTE;
    }
    return status;
}

/*
 * A start call (one task or many) whose retries first ask QRS whether an
 * earlier attempt got through: a timeout or a broken connection does not say
 * QRS refused the start, and a short task started twice is the defect this
 * prevents. The licence DELETE path makes the same check before retrying.
 */
struct checked_start {
    struct qrs_attempt *call;
    const char *const *task_ids;
    size_t count;
    uint64_t since_wall_ms; /* just before the first attempt */
    /* A synchronous start (count 1): the check looks for the run itself and
     * puts its execution id here, so a verified start still has one. NULL for
     * the plain starts, whose check asks only whether the task started. */
    char *execution_id;
};

static enum butler_status checked_start_once(void *context, int attempt, long *retry_after_s)
{
    struct checked_start *start = context;
    if (attempt == 1)
        start->since_wall_ms = clock_wall_ms();
    /* Only a failure that does not say QRS refused can hide an accepted start:
     * no answer at all (a timeout, a broken connection) or a gateway's 502/504.
     * An answer from QRS itself (a 503 or 429, say) is a refusal: retry as is. */
    long last_status = start->call->result->http_status;
    bool unclear = last_status == 0 || last_status == 502 || last_status == 504;
    for (size_t i = 0; attempt > 1 && unclear && i < start->count; i++) {
        bool started = false;
        /* On doubt (QRS cannot tell) the start is sent again: a rare double
         * start beats a lost one, as for a replay. */
        enum butler_status check;
        if (start->execution_id)
            started = (check = qrs_task_execution_since(start->call->client, start->task_ids[i],
                                                        start->since_wall_ms,
                                                        start->execution_id)) == BUTLER_OK;
        else
            check = qrs_task_started_since(start->call->client, start->task_ids[i],
                                           start->since_wall_ms, &started);
        if (check == BUTLER_OK && started) {
            start->call->result->verified = true;
            metrics_count("butler_qrs_start_retry_verified_total", "",
                          "QRS start calls not sent again because QRS confirmed an unanswered "
                          "attempt had started the task");
            LOG_WARN(MODULE,
                     "task %s started after an unanswered attempt (%s); not sending the "
                     "start again",
                     start->task_ids[i], start->call->response->error);
            return BUTLER_OK;
        }
    }
    return qrs_attempt_once(start->call, attempt, retry_after_s);
}

static enum butler_status qrs_call_body(struct qrs_client *client, const char *method,
                                        const char *route, const char *path_and_query,
                                        const char *body, struct http_response *response,
                                        struct qrs_result *result, struct checked_start *checked);
static enum butler_status qrs_post_checked(struct qrs_client *client, const char *route,
                                           const char *path_and_query, const char *body,
                                           cJSON **json_out, struct qrs_result *result,
                                           struct checked_start *checked);

enum butler_status qrs_task_start(struct qrs_client *client, const char *task_id,
                                  struct qrs_result *result)
{
    char path[128];
    struct http_response response = {.retry_after_s = -1};
    snprintf(path, sizeof path, "task/%s/start", task_id);
    const char *ids[1] = {task_id};
    struct checked_start checked = {.task_ids = ids, .count = 1};
    enum butler_status status =
        qrs_call_body(client, "POST", "task/start", path, NULL, &response, result, &checked);
    if (status != BUTLER_OK)
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "POST task/start failed after %d attempt(s): %s",
                        result->attempts, result->error);
    if (status == BUTLER_ERR_REMOTE && (response.status == 404 || response.status == 400))
        status = BUTLER_ERR_NOT_FOUND;
    http_response_clear(&response);
    return status;
}

enum butler_status qrs_task_start_synchronous(struct qrs_client *client, const char *task_id,
                                              char execution_id[37], struct qrs_result *result)
{
    char path[128];
    cJSON *json = NULL;
    execution_id[0] = '\0';
    snprintf(path, sizeof path, "task/%s/start/synchronous", task_id);
    const char *ids[1] = {task_id};
    struct checked_start checked = {.task_ids = ids, .count = 1, .execution_id = execution_id};
    enum butler_status status =
        qrs_post_checked(client, "task/start/synchronous", path, NULL, &json, result, &checked);
    if (status != BUTLER_OK || result->verified) /* verified: the check found the run's id */
        goto out;
    const cJSON *value =
        cJSON_IsObject(json) ? cJSON_GetObjectItemCaseSensitive(json, "value") : json;
    if (!cJSON_IsString(value) || !task_is_guid(value->valuestring, strlen(value->valuestring))) {
        status = BUTLER_ERR_REMOTE;
        snprintf(result->error, sizeof result->error,
                 "the synchronous start answered no execution id");
        goto out;
    }
    snprintf(execution_id, 37, "%s", value->valuestring);
out:
    cJSON_Delete(json);
    return status;
}

enum butler_status qrs_task_start_many(struct qrs_client *client, const char *const *task_ids,
                                       size_t count, struct qrs_result *result)
{
    enum { ID_TEXT_MAX = 36 + 3 }; /* "<guid>", */
    enum butler_status status = BUTLER_ERR_INVALID;
    char *body = NULL;
    cJSON *answer = NULL;
    memset(result, 0, sizeof *result);
    if (count == 0 || count > QRS_START_MANY_MAX) {
        snprintf(result->error, sizeof result->error, "QRS start of %zu tasks in one call", count);
        goto out;
    }
    size_t body_size = count * ID_TEXT_MAX + 3;
    body = malloc(body_size);
    if (body == NULL) {
        status = BUTLER_ERR_NOMEM;
        goto out;
    }
    size_t used = 0;
    body[used++] = '[';
    for (size_t i = 0; i < count; i++) {
        /* Ids are checked GUIDs (36 characters, nothing to escape). */
        int written =
            snprintf(body + used, body_size - used, "%s\"%.36s\"", i ? "," : "", task_ids[i]);
        if (written < 0 || (size_t)written >= body_size - used)
            goto out;
        used += (size_t)written;
    }
    body[used++] = ']';
    body[used] = '\0';
    struct checked_start checked = {.task_ids = task_ids, .count = count};
    status = qrs_post_checked(client, "task/start/many", "task/start/many", body, &answer, result,
                              &checked);
out:
    cJSON_Delete(answer);
    free(body);
    return status;
}

/* qrs_call with a request body (change subscriptions, starts); `checked`
 * (may be NULL) makes it a start call checked before each retry. */
static enum butler_status qrs_call_body(struct qrs_client *client, const char *method,
                                        const char *route, const char *path_and_query,
                                        const char *body, struct http_response *response,
                                        struct qrs_result *result, struct checked_start *checked)
{
    memset(result, 0, sizeof *result);
    if (!qrs_enabled(client->config)) {
        snprintf(result->error, sizeof result->error, "QRS is not configured (qrs.url is empty)");
        return BUTLER_ERR_REMOTE;
    }
    struct qrs_attempt call = {
        client, method, route, path_and_query, response, result, body, body ? strlen(body) : 0, 0};
    enum butler_status status;
    if (checked) {
        checked->call = &call;
        status = retry_run(&client->retry, client->should_stop, checked_start_once, checked,
                           &result->attempts);
    } else {
        status = retry_run(&client->retry, client->should_stop, qrs_attempt_once, &call,
                           &result->attempts);
    }
    if (status != BUTLER_OK && response->error[0])
        snprintf(result->error, sizeof result->error, "QRS %s %s: %s%s%.120s", method, route,
                 response->error, response->body && response->body[0] ? ": " : "",
                 response->body ? response->body : "");
    return status;
}

enum butler_status qrs_post(struct qrs_client *client, const char *route,
                            const char *path_and_query, const char *body, cJSON **json_out,
                            struct qrs_result *result)
{
    return qrs_post_checked(client, route, path_and_query, body, json_out, result, NULL);
}

static enum butler_status qrs_post_checked(struct qrs_client *client, const char *route,
                                           const char *path_and_query, const char *body,
                                           cJSON **json_out, struct qrs_result *result,
                                           struct checked_start *checked)
{
    struct http_response response = {.retry_after_s = -1};
    *json_out = NULL;
    enum butler_status status =
        qrs_call_body(client, "POST", route, path_and_query, body, &response, result, checked);
    if (status == BUTLER_ERR_REMOTE && (response.status == 404 || response.status == 400))
        status = BUTLER_ERR_NOT_FOUND;
    /* A verified start sent nothing: the body is a failed attempt's, if any. */
    if (status == BUTLER_OK && response.body_length > 0 && !result->verified) {
        *json_out = json_parse_exact(response.body, response.body_length, NULL);
        if (*json_out == NULL) {
            snprintf(result->error, sizeof result->error, "QRS POST %s: response is not JSON",
                     route);
            status = BUTLER_ERR_REMOTE;
        }
    }
    http_response_clear(&response);
    return status;
}

enum butler_status qrs_delete(struct qrs_client *client, const char *route,
                              const char *path_and_query, struct qrs_result *result)
{
    struct http_response response = {.retry_after_s = -1};
    enum butler_status status =
        qrs_call_body(client, "DELETE", route, path_and_query, NULL, &response, result, NULL);
    if (status == BUTLER_ERR_REMOTE && (response.status == 404 || response.status == 400))
        status = BUTLER_ERR_NOT_FOUND;
    http_response_clear(&response);
    return status;
}

enum butler_status qrs_task_started_since(struct qrs_client *client, const char *task_id,
                                          uint64_t since_wall_ms, bool *started)
{
    char filter[64];
    snprintf(filter, sizeof filter, "id eq %s", task_id);
    cJSON *tasks = NULL;
    struct qrs_result result;
    *started = false;
    enum butler_status status = qrs_find_tasks(client, filter, &tasks, &result);
    if (status != BUTLER_OK)
        return status;
    const cJSON *operational =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(tasks, 0), "operational");
    const cJSON *last = cJSON_GetObjectItemCaseSensitive(operational, "lastExecutionResult");
    const cJSON *start = cJSON_GetObjectItemCaseSensitive(last, "startTime");
    const cJSON *run_status = cJSON_GetObjectItemCaseSensitive(last, "status");
    uint64_t start_ms = 0;
    bool since = cJSON_IsString(start) && clock_parse_iso8601(start->valuestring, &start_ms) &&
                 start_ms >= since_wall_ms;
    /* Triggered, started, queued, aborting, retrying, distributing: a run is under way. */
    int code = cJSON_IsNumber(run_status) ? run_status->valueint : 0;
    bool running = code == 1 || code == 2 || code == 3 || code == 4 || code == 5 || code == 10 ||
                   code == 13 || code == 14;
    *started = since || running;
    cJSON_Delete(tasks);
    return BUTLER_OK;
}

enum butler_status qrs_task_execution_since(struct qrs_client *client, const char *task_id,
                                            uint64_t since_wall_ms, char execution_id[37])
{
    char since[32], filter[128];
    clock_format_iso8601(since_wall_ms, since, sizeof since);
    snprintf(filter, sizeof filter, "taskID eq %s and createdDate ge '%s'", task_id, since);
    cJSON *results = NULL;
    struct qrs_result result;
    enum butler_status status = qrs_get_route(client, "executionresult/full",
                                              "executionresult/full", filter, &results, &result);
    /* A 404 of the list itself says nothing about the task's runs. */
    if (status == BUTLER_ERR_NOT_FOUND || (status == BUTLER_OK && !cJSON_IsArray(results)))
        status = BUTLER_ERR_REMOTE;
    if (status != BUTLER_OK)
        goto out;
    /* ISO-8601 dates of one format sort as text. */
    const cJSON *item, *earliest_id = NULL;
    const char *earliest = NULL;
    cJSON_ArrayForEach(item, results)
    {
        const cJSON *created = cJSON_GetObjectItemCaseSensitive(item, "createdDate");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "executionID");
        if (!cJSON_IsString(created) || !cJSON_IsString(id) ||
            !task_is_guid(id->valuestring, strlen(id->valuestring)))
            continue;
        if (earliest == NULL || strcmp(created->valuestring, earliest) < 0) {
            earliest = created->valuestring;
            earliest_id = id;
        }
    }
    if (earliest_id == NULL) {
        status = BUTLER_ERR_NOT_FOUND;
        goto out;
    }
    snprintf(execution_id, 37, "%s", earliest_id->valuestring);
out:
    cJSON_Delete(results);
    return status;
}

void qrs_plain_reason(enum butler_status status, const struct qrs_result *result, char *out,
                      size_t out_size)
{
    if (result->http_status == 0 && strstr(result->error, "not configured") != NULL)
        snprintf(out, out_size, "QRS is not configured (qrs.url is empty)");
    else if (status == BUTLER_ERR_SHUTDOWN)
        snprintf(out, out_size, "Butler is stopping");
    else if (result->http_status >= 300)
        snprintf(out, out_size, "QRS answered HTTP %ld", result->http_status);
    else if (result->http_status >= 200)
        snprintf(out, out_size, "QRS answered with something Butler cannot read");
    else if (status == BUTLER_ERR_TIMEOUT || strstr(result->error, "timed out") != NULL)
        snprintf(out, out_size, "QRS did not answer in time");
    else
        snprintf(out, out_size, "QRS could not be reached");
}
