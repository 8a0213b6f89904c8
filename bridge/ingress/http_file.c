/*
 * File-operation endpoints (see http_file.h). The body is checked with the
 * same parser the worker uses (topics/file.c), so a malformed request is
 * answered 400 here without a round trip; the paths themselves are judged by
 * the worker against its own approved directories.
 */
#include "bridge/ingress/http_file.h"
#include "bridge/ingress/http_command.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/model/file_request.h"
#include "bridge/model/task_request.h"

#define MODULE "http"

/* ?node= is a topic level: the same characters file.node allows. */
static bool valid_node(const char *node)
{
    size_t length = strlen(node);
    if (length == 0 || length > 64)
        return false;
    for (const char *p = node; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
            return false;
    return true;
}

/* The command published for the worker: the Node.js keys plus requestId. */
static cJSON *command_json(const struct file_request *request)
{
    cJSON *json = cJSON_CreateObject();
    if (json == NULL)
        return NULL;
    cJSON_AddStringToObject(json, "requestId", request->request_id);
    switch (request->operation) {
    case FILE_OPERATION_COPY:
    case FILE_OPERATION_MOVE:
        cJSON_AddStringToObject(json, "fromFile", request->from_file);
        cJSON_AddStringToObject(json, "toFile", request->to_file);
        cJSON_AddBoolToObject(json, "overwrite", request->overwrite);
        if (request->operation == FILE_OPERATION_COPY)
            cJSON_AddBoolToObject(json, "preserveTimestamp", request->preserve_timestamp);
        break;
    case FILE_OPERATION_DELETE:
        cJSON_AddStringToObject(json, "deleteFile", request->delete_file);
        break;
    case FILE_OPERATION_MKDIR:
        cJSON_AddStringToObject(json, "directory", request->directory);
        if (request->qvd)
            cJSON_AddBoolToObject(json, "qvd", true);
        break;
    }
    return json;
}

/* The Node.js Butler's success answers. */
static void reply_done(struct http_exchange *exchange, const struct file_request *request)
{
    if (request->operation == FILE_OPERATION_DELETE) {
        http_exchange_reply(exchange, 204, NULL, NULL, 0, NULL);
        return;
    }
    cJSON *echo = cJSON_CreateObject();
    if (echo && request->operation == FILE_OPERATION_MKDIR) {
        cJSON_AddStringToObject(echo, "directory", request->directory);
    } else if (echo) {
        cJSON_AddStringToObject(echo, "fromFile", request->from_file);
        cJSON_AddStringToObject(echo, "toFile", request->to_file);
        cJSON_AddBoolToObject(echo, "overwrite", request->overwrite);
        if (request->operation == FILE_OPERATION_COPY)
            cJSON_AddBoolToObject(echo, "preserveTimestamp", request->preserve_timestamp);
    }
    http_exchange_reply_cjson(exchange, 201, echo);
}

/* The worker's answer as an HTTP answer. */
static void reply_result(struct http_exchange *exchange, const struct file_request *request,
                         const char *result, size_t length)
{
    cJSON *json = json_parse_exact(result, length, NULL);
    const char *status = json_string_member(json, "status");
    const char *reason = json_string_member(json, "reason");
    const char *error = json_string_member(json, "error");
    if (status && strcmp(status, "done") == 0)
        reply_done(exchange, request);
    else if (status && strcmp(status, "refused") == 0)
        http_exchange_reply_error(exchange, reason && strcmp(reason, "denied") == 0 ? 403 : 400,
                                  error ? error : "refused", NULL);
    else
        http_exchange_reply_error(exchange, 500, error ? error : "the file operation failed", NULL);
    cJSON_Delete(json);
}

static void handle(struct http_exchange *exchange, enum file_operation operation, bool qvd)
{
    const struct butler_config *config = exchange->runtime->config;
    struct file_request request = {0};
    cJSON *command_body = NULL;
    char *payload = NULL, *result = NULL;
    size_t result_length = 0;
    char error[512], node[72], topic_suffix[128];
    if (!http_api_read_json_body(exchange))
        goto out;
    /* No body at all: the missing-parameter answer, as for an empty object. */
    const char *body = exchange->body_length ? exchange->body : "{}";
    size_t body_length = exchange->body_length ? exchange->body_length : 2;
    if (file_request_parse(operation, (const unsigned char *)body, body_length, &request, error,
                           sizeof error) != BUTLER_OK) {
        metrics_count("butler_rejected_total", "family=\"file\",reason=\"http_body\"",
                      "Messages rejected as malformed, by topic family and reason");
        http_exchange_reply_error(exchange, 400, error, NULL);
        goto out;
    }
    if (operation == FILE_OPERATION_MKDIR)
        request.qvd = qvd;
    /* Without ?requestId= the parser's own UUID stays. */
    char request_id[TASK_REQUEST_ID_MAX + 1];
    if (http_api_query_var(exchange, "requestId", request_id, sizeof request_id) != -1) {
        if (!http_api_request_id(exchange, request_id, sizeof request_id))
            goto out;
        snprintf(request.request_id, sizeof request.request_id, "%s", request_id);
    }
    int found = http_api_query_var(exchange, "node", node, sizeof node);
    if (found != -1 && (found != 0 || !valid_node(node))) {
        http_exchange_reply_error(
            exchange, 400, "query parameter node must be 1 to 64 characters of A-Z a-z 0-9 - _",
            NULL);
        goto out;
    }
    command_body = command_json(&request);
    payload = command_body ? cJSON_PrintUnformatted(command_body) : NULL;
    if (payload == NULL) {
        http_exchange_reply_error(exchange, 500, "out of memory", NULL);
        goto out;
    }
    if (found == 0)
        snprintf(topic_suffix, sizeof topic_suffix, "file/%s/%s", node,
                 file_operation_name(operation));
    else
        snprintf(topic_suffix, sizeof topic_suffix, "file/%s", file_operation_name(operation));
    const struct http_command command = {
        .topic_suffix = topic_suffix,
        .payload = payload,
        .request_id = request.request_id,
        .publish_timeout_ms = config->http.task_start_timeout_ms,
        .answer_timeout_ms = -1,
        .pending_metric = "butler_http_file_pending_total",
        .pending_help = "File commands accepted by the broker but not answered within the timeout",
    };
    switch (http_command_run(exchange, &command, &result, &result_length)) {
    case HTTP_COMMAND_PENDING:
        http_api_reply_pending(exchange, 202, request.request_id, "pending");
        break;
    case HTTP_COMMAND_ANSWERED:
        reply_result(exchange, &request, result, result_length);
        break;
    case HTTP_COMMAND_FAILED:
    case HTTP_COMMAND_PUBLISHED:
        break;
    }
out:
    file_request_clear(&request);
    cJSON_Delete(command_body);
    free(payload);
    free(result);
}

void http_file_copy(struct http_exchange *exchange)
{
    handle(exchange, FILE_OPERATION_COPY, false);
}

void http_file_move(struct http_exchange *exchange)
{
    handle(exchange, FILE_OPERATION_MOVE, false);
}

void http_file_delete(struct http_exchange *exchange)
{
    handle(exchange, FILE_OPERATION_DELETE, false);
}

void http_file_create_dir(struct http_exchange *exchange)
{
    handle(exchange, FILE_OPERATION_MKDIR, false);
}

void http_file_create_dir_qvd(struct http_exchange *exchange)
{
    handle(exchange, FILE_OPERATION_MKDIR, true);
}
