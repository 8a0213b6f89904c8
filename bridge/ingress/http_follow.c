/*
 * ?wait=finished on the HTTP task start (see http_follow.h).
 */
#include "bridge/ingress/http_follow.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/ingress/http_body.h"
#include "bridge/ingress/http_command.h"
#include "bridge/model/task_request.h"
#include "bridge/model/task_result.h"

#define MODULE "http"

/* The request with "follow": true added; owned by the caller, or NULL. */
static char *with_follow(const char *payload)
{
    cJSON *json = json_parse_exact(payload, strlen(payload), NULL);
    char *text = NULL;
    if (cJSON_IsObject(json) && !cJSON_HasObjectItem(json, "follow") &&
        cJSON_AddTrueToObject(json, "follow"))
        text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    return text;
}

/* The execution ids of the answer's started tasks, as a JSON array (owned by
 * the caller), or NULL when the answer cannot be read. */
static cJSON *started_execution_ids(const char *answer, size_t length)
{
    cJSON *json = json_parse_exact(answer, length, NULL);
    const cJSON *started = cJSON_GetObjectItemCaseSensitive(json, "started");
    cJSON *ids = cJSON_IsObject(json) ? cJSON_CreateArray() : NULL;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, started)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(entry, "executionId");
        if (ids && cJSON_IsString(id))
            cJSON_AddItemToArray(ids, cJSON_CreateString(id->valuestring));
    }
    cJSON_Delete(json);
    return ids;
}

/* 202 {"requestId", "executionIds"}: the runs go on; their ends go to MQTT. */
static void reply_still_running(struct http_exchange *exchange, const char *request_id, cJSON *ids)
{
    cJSON *body = cJSON_CreateObject();
    char *text = NULL;
    if (body && cJSON_AddStringToObject(body, "requestId", request_id)) {
        cJSON_AddItemToObject(body, "executionIds", ids);
        ids = NULL;
        text = cJSON_PrintUnformatted(body);
    }
    if (text)
        http_exchange_reply_json(exchange, 202, text, NULL);
    else
        http_exchange_reply_error(exchange, 500, "out of memory", NULL);
    metrics_count("butler_http_task_finish_pending_total", "",
                  "?wait=finished task starts answered 202 after http.task_finish_timeout_s");
    free(text);
    cJSON_Delete(ids);
    cJSON_Delete(body);
}

/* 200: the Node.js shape of the answer plus "finished". Takes `finished`. */
static void reply_finished(struct http_exchange *exchange, const char *answer, size_t length,
                           cJSON *finished)
{
    char *node = NULL, *text = NULL;
    cJSON *body = NULL;
    if (http_body_task_result_to_node(answer, length, &node) == BUTLER_OK)
        body = json_parse_exact(node, strlen(node), NULL);
    if (cJSON_IsObject(body)) {
        cJSON_AddItemToObject(body, "finished", finished);
        finished = NULL;
        text = cJSON_PrintUnformatted(body);
    }
    if (text)
        http_exchange_reply_json(exchange, 200, text, NULL);
    else
        http_exchange_reply_error(exchange, 500, "the task-start answer could not be read", NULL);
    free(node);
    free(text);
    cJSON_Delete(body);
    cJSON_Delete(finished);
}

void http_follow_task_start(struct http_exchange *exchange, const char *payload,
                            const char *request_id)
{
    const struct butler_config *config = exchange->runtime->config;
    struct task_result_waiter *waiter = NULL;
    char *answer = NULL, *followed = with_follow(payload);
    size_t answer_length = 0;
    cJSON *ids = NULL;
    const char **id_list = NULL;
    if (followed == NULL) {
        http_exchange_reply_error(exchange, 500, "out of memory", NULL);
        goto out;
    }
    /* Before the start is published: a run may end before its start is answered. */
    if (task_result_register_finished(request_id, &waiter) != BUTLER_OK) {
        static const char *const retry_after[] = {"Retry-After", "5", NULL};
        http_exchange_reply_error(exchange, 503, "too many requests waiting for their result",
                                  retry_after);
        goto out;
    }
    const struct http_command command = {
        .topic_suffix = "task/start",
        .payload = followed,
        .request_id = request_id,
        .publish_timeout_ms = config->http.task_start_timeout_ms,
        .answer_timeout_ms = -1,
        .long_wait = true,
        .pending_metric = "butler_http_task_start_pending_total",
        .pending_help = "Task starts accepted by the broker but not answered within the timeout",
    };
    switch (http_command_run(exchange, &command, &answer, &answer_length)) {
    case HTTP_COMMAND_FAILED:
        goto out;
    case HTTP_COMMAND_PUBLISHED:
    case HTTP_COMMAND_PENDING:
        http_api_reply_pending(exchange, 202, request_id, "pending");
        goto out;
    case HTTP_COMMAND_ANSWERED:
        break;
    }
    ids = started_execution_ids(answer, answer_length);
    int count = ids ? cJSON_GetArraySize(ids) : 0;
    id_list = count > 0 ? calloc((size_t)count, sizeof *id_list) : NULL;
    if (ids == NULL || (count > 0 && id_list == NULL)) {
        http_exchange_reply_error(exchange, 500, "the task-start answer could not be read", NULL);
        goto out;
    }
    for (int i = 0; i < count; i++)
        id_list[i] = cJSON_GetArrayItem(ids, i)->valuestring;
    cJSON *finished = NULL;
    if (task_result_wait_finished(waiter, id_list, (size_t)count,
                                  config->http.task_finish_timeout_s * 1000,
                                  &finished) != BUTLER_OK) {
        reply_still_running(exchange, request_id, ids);
        ids = NULL;
        goto out;
    }
    reply_finished(exchange, answer, answer_length, finished);
out:
    task_result_release(waiter);
    free(id_list);
    cJSON_Delete(ids);
    free(answer);
    free(followed);
}
