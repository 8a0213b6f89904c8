/*
 * The New Relic endpoints (see http_newrelic.h). Answers come back through
 * the task-result waiter table, keyed by the requestId added here.
 */
#include "bridge/ingress/http_newrelic.h"
#include "bridge/ingress/http_command.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/model/task_request.h"

#define MODULE "http"

static void post(struct http_exchange *exchange, const char *kind)
{
    const struct butler_config *config = exchange->runtime->config;
    cJSON *body = NULL, *answer = NULL;
    char *payload = NULL, *result = NULL;
    size_t result_length = 0;
    char request_id[TASK_REQUEST_ID_MAX + 1], topic_suffix[32];
    if (!http_api_read_json_body(exchange))
        goto out;
    body = json_parse_exact(exchange->body, exchange->body_length, NULL);
    if (!cJSON_IsObject(body)) {
        http_exchange_reply_error(exchange, 400, "the body must be a JSON object", NULL);
        goto out;
    }
    task_make_uuid(request_id);
    cJSON_DeleteItemFromObjectCaseSensitive(body, "requestId");
    if (!cJSON_AddStringToObject(body, "requestId", request_id) ||
        (payload = cJSON_PrintUnformatted(body)) == NULL) {
        http_exchange_reply_error(exchange, 500, "out of memory", NULL);
        goto out;
    }
    snprintf(topic_suffix, sizeof topic_suffix, "newrelic/%s", kind);
    const struct http_command command = {
        .topic_suffix = topic_suffix,
        .payload = payload,
        .request_id = request_id,
        .publish_timeout_ms = config->http.task_start_timeout_ms,
        .answer_timeout_ms = -1,
    };
    enum http_command_outcome outcome =
        http_command_run(exchange, &command, &result, &result_length);
    if (outcome == HTTP_COMMAND_PENDING) {
        /* The broker holds it and it will be posted: 202, in the same text
         * form. The id is Butler's own UUID, never the caller's. */
        char pending[128];
        int length = snprintf(pending, sizeof pending, "Pending %s", request_id);
        http_exchange_reply(exchange, 202, "text/plain; charset=utf-8", pending, (size_t)length,
                            NULL);
        goto out;
    }
    if (outcome != HTTP_COMMAND_ANSWERED)
        goto out;
    answer = json_parse_exact(result, result_length, NULL);
    const char *status = json_string_member(answer, "status");
    const char *error = json_string_member(answer, "error");
    if (status && strcmp(status, "accepted") == 0) {
        /* The Node.js Butler answers New Relic's status text. */
        http_exchange_reply(exchange, 202, "text/plain; charset=utf-8", "Accepted", 8, NULL);
    } else if (status && strcmp(status, "invalid") == 0) {
        http_exchange_reply_error(exchange, 400, error ? error : "invalid request", NULL);
    } else {
        http_exchange_reply_error(exchange, 502, error ? error : "New Relic did not accept it",
                                  NULL);
    }
out:
    cJSON_Delete(body);
    cJSON_Delete(answer);
    free(payload);
    free(result);
}

void http_newrelic_event(struct http_exchange *exchange)
{
    post(exchange, "event");
}

void http_newrelic_metric(struct http_exchange *exchange)
{
    post(exchange, "metric");
}
