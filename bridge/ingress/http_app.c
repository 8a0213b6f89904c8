/*
 * Engine endpoints (bridge/ingress/http_app.h): each request becomes one
 * message on <root>/app/<op>; the HTTP answer is built from the result on
 * <root>/app/result. The body is checked with the same parser the topic
 * uses, so a request the topic would refuse is a 400 here, before publishing.
 */
#include "bridge/ingress/http_app.h"
#include "bridge/ingress/http_command.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/core/json.h"
#include "bridge/model/app_request.h"
#include "bridge/model/task_request.h"

enum { RELOAD_WAIT_MAX_MS = 3600 * 1000 };

/* The appId path segment after `prefix`, into out; false (answered 400) when
 * too long. */
static bool path_app_id(struct http_exchange *exchange, const char *prefix, char *out,
                        size_t out_size)
{
    const char *start = exchange->path + strlen(prefix);
    size_t length = strcspn(start, "/");
    if (length == 0 || length >= out_size) {
        http_exchange_reply_error(exchange, 400, "the appId in the path is missing or too long",
                                  NULL);
        return false;
    }
    snprintf(out, out_size, "%.*s", (int)length, start);
    return true;
}

/*
 * Publish `payload` on <root>/app/<op> and wait up to wait_ms for its answer
 * (a long wait when it may outlast http.task_start_timeout_ms). Returns the
 * parsed answer (caller deletes), or NULL when the request was answered here
 * already (503) or *pending is set (accepted, not answered yet).
 */
static cJSON *publish_and_wait(struct http_exchange *exchange, const char *op,
                               const char *request_id, const char *payload, int wait_ms,
                               bool *pending)
{
    const struct butler_config *config = exchange->runtime->config;
    char topic_suffix[32], *text = NULL;
    size_t length = 0;
    cJSON *answer = NULL;
    snprintf(topic_suffix, sizeof topic_suffix, "app/%s", op);
    const struct http_command command = {
        .topic_suffix = topic_suffix,
        .payload = payload,
        .request_id = request_id,
        .publish_timeout_ms = config->http.task_start_timeout_ms,
        .answer_timeout_ms = wait_ms,
        .long_wait = wait_ms > config->http.task_start_timeout_ms,
        .pending_metric = "butler_http_app_pending_total",
        .pending_help = "App requests accepted by the broker but not answered in time",
    };
    enum http_command_outcome outcome = http_command_run(exchange, &command, &text, &length);
    *pending = outcome == HTTP_COMMAND_PENDING;
    if (outcome == HTTP_COMMAND_ANSWERED) {
        answer = json_parse_exact(text, length, NULL);
        if (answer == NULL)
            http_exchange_reply_error(exchange, 500, "the app answer could not be read", NULL);
    }
    free(text);
    return answer;
}

/* A failed or refused answer as an HTTP error. */
static void reply_failure(struct http_exchange *exchange, const cJSON *answer, const char *what)
{
    const char *status = json_string_member(answer, "status");
    const char *error = json_string_member(answer, "error");
    char message[700];
    snprintf(message, sizeof message, "%s: %s", what, error ? error : "no reason given");
    int code = status && strcmp(status, "refused") == 0 ? 400 : 500;
    /* The Node.js Butler answers 422 for an app the engine does not know. */
    if (error && strstr(error, "App not found") && strcmp(what, "app dump failed") == 0)
        code = 422;
    http_exchange_reply_error(exchange, code, message, NULL);
}

static int engine_wait_ms(const struct butler_config *config, int calls)
{
    long long wait = (long long)config->engine.timeout_ms * calls + 1000;
    return wait > RELOAD_WAIT_MAX_MS ? RELOAD_WAIT_MAX_MS : (int)wait;
}

void http_app_reload(struct http_exchange *exchange)
{
    const struct butler_config *config = exchange->runtime->config;
    char app_id[APP_ID_MAX + 1], error[256];
    bool wait = false, pending = false;
    cJSON *body = NULL, *answer = NULL;
    char *payload = NULL;
    struct app_request *request = calloc(1, sizeof *request);
    if (request == NULL) {
        http_exchange_reply_error(exchange, 500, "out of memory", NULL);
        return;
    }
    if (!path_app_id(exchange, "/v4/app/", app_id, sizeof app_id) ||
        !http_api_query_flag(exchange, "wait", &wait) || !http_api_read_json_body(exchange))
        goto out;
    body = exchange->body_length > 0 ? json_parse_exact(exchange->body, exchange->body_length, NULL)
                                     : cJSON_CreateObject();
    if (!cJSON_IsObject(body)) {
        http_exchange_reply_error(exchange, 400, "the body must be a JSON object", NULL);
        goto out;
    }
    /* The path names the app; the request id is always Butler's own. */
    char request_id[TASK_REQUEST_ID_MAX + 1];
    task_make_uuid(request_id);
    cJSON_DeleteItemFromObjectCaseSensitive(body, "appId");
    cJSON_DeleteItemFromObjectCaseSensitive(body, "requestId");
    cJSON_AddStringToObject(body, "appId", app_id);
    cJSON_AddStringToObject(body, "requestId", request_id);
    payload = cJSON_PrintUnformatted(body);
    if (payload == NULL) {
        http_exchange_reply_error(exchange, 500, "out of memory", NULL);
        goto out;
    }
    if (app_request_parse(APP_OP_RELOAD, (const unsigned char *)payload, strlen(payload), request,
                          error, sizeof error) != BUTLER_OK) {
        http_exchange_reply_error(exchange, 400, error, NULL);
        goto out;
    }
    if (!wait) {
        const struct http_command command = {
            .topic_suffix = "app/reload",
            .payload = payload,
            .publish_timeout_ms = config->http.task_start_timeout_ms,
        };
        char *unused = NULL;
        size_t unused_length = 0;
        if (http_command_run(exchange, &command, &unused, &unused_length) != HTTP_COMMAND_PUBLISHED)
            goto out;
        cJSON *reply = cJSON_CreateObject();
        cJSON_AddStringToObject(reply, "appId", app_id);
        cJSON_AddStringToObject(reply, "requestId", request_id);
        http_exchange_reply_cjson(exchange, 201, reply);
        goto out;
    }
    /* Opening the app, saving, and the reload itself (unbounded when
     * engine.reload_timeout_s is 0: then at most an hour here). */
    long long wait_ms = (long long)engine_wait_ms(config, 4) +
                        (config->engine.reload_timeout_s ? config->engine.reload_timeout_s * 1000LL
                                                         : RELOAD_WAIT_MAX_MS);
    answer = publish_and_wait(exchange, "reload", request_id, payload,
                              wait_ms > RELOAD_WAIT_MAX_MS ? RELOAD_WAIT_MAX_MS : (int)wait_ms,
                              &pending);
    if (pending) {
        cJSON *reply = cJSON_CreateObject();
        cJSON_AddStringToObject(reply, "appId", app_id);
        cJSON_AddStringToObject(reply, "requestId", request_id);
        cJSON_AddStringToObject(reply, "status", "pending");
        http_exchange_reply_cjson(exchange, 202, reply);
    } else if (answer) {
        const char *status = json_string_member(answer, "status");
        if (status && strcmp(status, "done") == 0) {
            cJSON *reply = cJSON_CreateObject();
            cJSON_AddStringToObject(reply, "appId", app_id);
            cJSON_AddStringToObject(reply, "requestId", request_id);
            cJSON_AddStringToObject(reply, "status", "done");
            http_exchange_reply_cjson(exchange, 201, reply);
        } else {
            reply_failure(exchange, answer, "app reload failed");
        }
    }
out:
    cJSON_Delete(body);
    cJSON_Delete(answer);
    free(payload);
    free(request);
}

void http_app_list(struct http_exchange *exchange)
{
    const struct butler_config *config = exchange->runtime->config;
    char request_id[TASK_REQUEST_ID_MAX + 1];
    bool pending = false;
    task_make_uuid(request_id);
    cJSON *request = cJSON_CreateObject();
    char *payload = request && cJSON_AddStringToObject(request, "requestId", request_id)
                        ? cJSON_PrintUnformatted(request)
                        : NULL;
    cJSON_Delete(request);
    if (payload == NULL) {
        http_exchange_reply_error(exchange, 500, "out of memory", NULL);
        return;
    }
    cJSON *answer = publish_and_wait(exchange, "list", request_id, payload,
                                     engine_wait_ms(config, 2), &pending);
    free(payload);
    if (pending) {
        http_exchange_reply_error(exchange, 504, "the engine did not answer in time", NULL);
    } else if (answer) {
        const char *status = json_string_member(answer, "status");
        cJSON *apps = cJSON_DetachItemFromObjectCaseSensitive(answer, "apps");
        if (status && strcmp(status, "done") == 0 && cJSON_IsArray(apps)) {
            http_exchange_reply_cjson(exchange, 200, apps);
            apps = NULL;
        } else {
            reply_failure(exchange, answer, "app list failed");
        }
        cJSON_Delete(apps);
    }
    cJSON_Delete(answer);
}

void http_app_dump(struct http_exchange *exchange)
{
    const struct butler_config *config = exchange->runtime->config;
    char app_id[APP_ID_MAX + 1], request_id[TASK_REQUEST_ID_MAX + 1];
    bool pending = false;
    const char *prefix =
        strncmp(exchange->path, "/v4/app/", 8) == 0 ? "/v4/app/" : "/v4/senseappdump/";
    if (!path_app_id(exchange, prefix, app_id, sizeof app_id))
        return;
    task_make_uuid(request_id);
    cJSON *request = cJSON_CreateObject();
    cJSON_AddStringToObject(request, "appId", app_id);
    cJSON_AddStringToObject(request, "requestId", request_id);
    char *payload = cJSON_PrintUnformatted(request);
    cJSON_Delete(request);
    if (payload == NULL) {
        http_exchange_reply_error(exchange, 500, "out of memory", NULL);
        return;
    }
    /* A dump is many calls: a session, a list object, then two per item. */
    cJSON *answer = publish_and_wait(exchange, "dump", request_id, payload,
                                     engine_wait_ms(config, 20), &pending);
    free(payload);
    if (pending) {
        http_exchange_reply_error(exchange, 504, "the engine did not answer in time", NULL);
    } else if (answer) {
        const char *status = json_string_member(answer, "status");
        cJSON *dump = cJSON_DetachItemFromObjectCaseSensitive(answer, "dump");
        if (status && strcmp(status, "done") == 0 && cJSON_IsObject(dump)) {
            http_exchange_reply_cjson(exchange, 200, dump);
            dump = NULL;
        } else {
            reply_failure(exchange, answer, "app dump failed");
        }
        cJSON_Delete(dump);
    }
    cJSON_Delete(answer);
}
