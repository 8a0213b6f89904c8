/*
 * The New Relic endpoints (see http_newrelic.h). Answers come back through
 * the task-result waiter table, keyed by the requestId added here.
 */
#include "bridge/ingress/http_newrelic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bridge/core/clock.h"
#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/model/task_result.h"
#include "bridge/model/task_request.h"

#define MODULE "http"

static const char *const retry_after[] = {"Retry-After", "5", NULL};

static void post(struct http_exchange *exchange, const char *kind)
{
    const struct butler_config *config = exchange->runtime->config;
    const uint64_t deadline = clock_monotonic_ms() + (uint64_t)config->http.task_start_timeout_ms;
    struct task_result_waiter *waiter = NULL;
    cJSON *body = NULL, *answer = NULL;
    char *payload = NULL, *result = NULL;
    size_t result_length = 0;
    char request_id[TASK_REQUEST_ID_MAX + 1];
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
    if (task_result_register(request_id, &waiter) != BUTLER_OK) {
        http_exchange_reply_error(exchange, 503, "too many requests waiting for their result",
                                  retry_after);
        goto out;
    }
    char topic[512];
    snprintf(topic, sizeof topic, "%s/newrelic/%s", config->mqtt.topic_root, kind);
    if (!http_api_publish_acknowledged(exchange, topic, payload, strlen(payload),
                                       (int)(deadline - clock_monotonic_ms())))
        goto out;
    uint64_t now = clock_monotonic_ms();
    if (now >= deadline ||
        task_result_wait(waiter, (int)(deadline - now), &result, &result_length) != BUTLER_OK) {
        /* The broker holds it and it will be posted: 202, in the same text form. */
        char pending[128];
        int length = snprintf(pending, sizeof pending, "Pending %s", request_id);
        http_exchange_reply(exchange, 202, "text/plain; charset=utf-8", pending, (size_t)length,
                            NULL);
        goto out;
    }
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
    task_result_release(waiter);
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
