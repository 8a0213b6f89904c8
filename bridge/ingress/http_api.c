/*
 * The HTTP API: routing, bearer-token authentication, the endpoint
 * allow-list and the endpoints themselves (contract section 4). Each
 * request that publishes answers 2xx only after the broker acknowledged the
 * message, and 503 + Retry-After within http.task_start_timeout_ms when the
 * broker cannot be reached. Runs on CivetWeb worker threads.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <civetweb.h>
#include <cjson/cJSON.h>

#include "bridge/core/clock.h"
#include "bridge/ingress/http_app.h"
#include "bridge/ingress/http_cloud.h"
#include "bridge/ingress/http_body.h"
#include "bridge/ingress/http_command.h"
#include "bridge/ingress/http_file.h"
#include "bridge/ingress/http_follow.h"
#include "bridge/ingress/http_newrelic.h"
#include "bridge/ingress/http_users.h"
#include "bridge/ingress/http_openapi.h"
#include "bridge/ingress/http_status.h"
#include "bridge/ingress/http_server.h"
#include "bridge/ingress/http_store.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/link/mqtt_link.h"
#include "bridge/model/qrs_callback.h"
#include "bridge/model/task_request.h"
#include "bridge/model/task_result.h"

#define MODULE "http"

enum {
    M_GET = 1 << HTTP_METHOD_GET,
    M_POST = 1 << HTTP_METHOD_POST,
    M_PUT = 1 << HTTP_METHOD_PUT,
    M_DELETE = 1 << HTTP_METHOD_DELETE,
};

static const char *const retry_after[] = {"Retry-After", "5", NULL};

typedef void (*route_handler)(struct http_exchange *exchange);

struct route {
    const char *name;    /* allow-list key (the Node.js restServerEndpointsEnable name) */
    const char *pattern; /* '*' matches one non-empty path segment */
    unsigned methods;
    const char *allow; /* Allow header for 405 */
    bool v4;           /* under /v4: bearer token and allow-list apply */
    route_handler handler;
};

static void handle_ping(struct http_exchange *exchange);
static void handle_task_start(struct http_exchange *exchange);
static void handle_mqtt_publish(struct http_exchange *exchange);
static void handle_slack_post(struct http_exchange *exchange);
static void handle_endpoints(struct http_exchange *exchange);
static void handle_base62_to_base16(struct http_exchange *exchange);
static void handle_base16_to_base62(struct http_exchange *exchange);
static void handle_health(struct http_exchange *exchange);
static void handle_qrs_notification(struct http_exchange *exchange);
static void handle_metrics(struct http_exchange *exchange);

static const struct route routes[] = {
    {"butlerping", "/v4/butlerping", M_GET, "GET", true, handle_ping},
    {"senseStartTask", "/v4/reloadtask/*/start", M_PUT | M_POST, "PUT, POST", true,
     handle_task_start},
    {"mqttPublishMessage", "/v4/mqttpublishmessage", M_PUT, "PUT", true, handle_mqtt_publish},
    {"slackPostMessage", "/v4/slackpostmessage", M_PUT, "PUT", true, handle_slack_post},
    /* New Relic (bridge/ingress/http_newrelic.c). */
    {"postNewRelicEvent", "/v4/newrelic/event", M_POST, "POST", true, http_newrelic_event},
    {"postNewRelicMetric", "/v4/newrelic/metric", M_POST, "POST", true, http_newrelic_metric},
    {"apiListEnabledEndpoints", "/v4/configfile/endpointsenabled", M_GET, "GET", true,
     handle_endpoints},
    /* Active users from the Sense proxy (bridge/ingress/http_users.c). */
    {"getActiveUsers", "/v4/activeusers", M_GET, "GET", true, http_users_active},
    /* The status page's data (bridge/ingress/http_status.c). */
    {"getStatus", "/v4/status", M_GET, "GET", true, http_status_json},
    {"base62ToBase16", "/v4/base62tobase16", M_GET, "GET", true, handle_base62_to_base16},
    {"base16ToBase62", "/v4/base16tobase62", M_GET, "GET", true, handle_base16_to_base62},
    /* Key-value store and schedules (bridge/ingress/http_store.c). Several routes may
     * share a path with different methods; the router picks by both. */
    {"keyValueStore", "/v4/keyvaluesnamespaces", M_GET, "GET", true, http_store_kv_namespaces},
    {"keyValueStore", "/v4/keyvalues/*", M_GET | M_POST | M_DELETE, "GET, POST, DELETE", true,
     http_store_kv_namespace},
    {"keyValueStore", "/v4/keyvalues/*/*", M_GET | M_DELETE, "GET, DELETE", true,
     http_store_kv_key},
    {"keyValueStore", "/v4/keylist/*", M_GET, "GET", true, http_store_kv_keylist},
    {"getScheduleStatusAll", "/v4/schedules/status", M_GET, "GET", true,
     http_store_schedules_status},
    {"startSchedule", "/v4/schedules/startall", M_PUT, "PUT", true, http_store_schedules_start},
    {"stopSchedule", "/v4/schedules/stopall", M_PUT, "PUT", true, http_store_schedules_stop},
    {"getSchedule", "/v4/schedules", M_GET, "GET", true, http_store_schedules_get},
    {"createNewSchedule", "/v4/schedules", M_POST, "POST", true, http_store_schedules_create},
    {"deleteSchedule", "/v4/schedules/*", M_DELETE, "DELETE", true, http_store_schedules_delete},
    {"startSchedule", "/v4/schedules/*/start", M_PUT, "PUT", true, http_store_schedules_start},
    {"stopSchedule", "/v4/schedules/*/stop", M_PUT, "PUT", true, http_store_schedules_stop},
    /* Sense engine apps (bridge/ingress/http_app.c). */
    {"senseAppReload", "/v4/app/*/reload", M_PUT, "PUT", true, http_app_reload},
    {"senseAppDump", "/v4/app/*/dump", M_GET, "GET", true, http_app_dump},
    {"senseAppDump", "/v4/senseappdump/*", M_GET, "GET", true, http_app_dump},
    {"senseListApps", "/v4/apps/list", M_GET, "GET", true, http_app_list},
    {"senseListApps", "/v4/senselistapps", M_GET, "GET", true, http_app_list},
    /* File operations (bridge/ingress/http_file.c). */
    {"fileCopy", "/v4/filecopy", M_PUT, "PUT", true, http_file_copy},
    {"fileMove", "/v4/filemove", M_PUT, "PUT", true, http_file_move},
    {"fileDelete", "/v4/filedelete", M_DELETE, "DELETE", true, http_file_delete},
    {"createDir", "/v4/createdir", M_POST, "POST", true, http_file_create_dir},
    {"createDirQVD", "/v4/createdirqvd", M_POST, "POST", true, http_file_create_dir_qvd},
    {"health", "/health", M_GET, "GET", false, handle_health},
    {"metrics", "/metrics", M_GET, "GET", false, handle_metrics},
    {"openapi", "/openapi.json", M_GET, "GET", false, http_openapi_serve},
    /* The status page's files; its data is /v4/status (bridge/ingress/http_status.c). */
    {"statusPage", "/", M_GET, "GET", false, http_status_page},
    {"statusPage", "/status.css", M_GET, "GET", false, http_status_page},
    {"statusPage", "/status.js", M_GET, "GET", false, http_status_page},
    {"statusPage", "/favicon.svg", M_GET, "GET", false, http_status_page},
};

enum { ROUTE_COUNT = sizeof routes / sizeof routes[0] };

/* Names the Node.js Butler knows but Butler does not serve (yet): accepted in
 * http.endpoints with a warning, so a migrated allow-list still loads. */
static const char *const node_only_endpoints[] = {
    "updateSchedule",
    NULL,
};

/* "scheduler.getSchedule" and "getSchedule" name the same switch. */
static const char *leaf_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot ? dot + 1 : name;
}

static bool endpoint_enabled(const struct butler_config *config, const char *name)
{
    if (config->http.endpoints.count == 0)
        return true;
    for (size_t i = 0; i < config->http.endpoints.count; i++)
        if (strcasecmp(leaf_name(config->http.endpoints.items[i]), name) == 0)
            return true;
    return false;
}

/* Endpoints that need a configured back end: the engine ones are off (404,
 * not listed) while engine.url is empty, as the Node.js Butler does not
 * register an endpoint that is not enabled. */
static bool route_available(const struct butler_config *config, const struct route *route)
{
    if (route->handler == http_app_reload || route->handler == http_app_dump ||
        route->handler == http_app_list)
        return config->engine.url[0] != '\0';
    return true;
}

enum butler_status http_api_check_config(const struct butler_config *config)
{
    enum butler_status status = BUTLER_OK;
    for (size_t i = 0; i < config->http.endpoints.count; i++) {
        const char *name = leaf_name(config->http.endpoints.items[i]);
        bool known = false;
        for (size_t r = 0; r < ROUTE_COUNT && !known; r++)
            known = routes[r].v4 && strcasecmp(routes[r].name, name) == 0;
        if (known)
            continue;
        for (size_t n = 0; node_only_endpoints[n] && !known; n++)
            known = strcasecmp(node_only_endpoints[n], name) == 0;
        if (known) {
            LOG_WARN(MODULE, "http.endpoints: \"%s\" is not implemented by this Butler", name);
        } else {
            LOG_ERROR(MODULE, "http.endpoints: \"%s\" is not an endpoint name", name);
            status = BUTLER_ERR_INVALID;
        }
    }
    return status;
}

/* Match `path` against a pattern whose '*' is one non-empty segment; the
 * segment is returned through *wildcard (pointer into path, length). */
static bool path_matches(const char *pattern, const char *path, const char **wildcard,
                         size_t *wildcard_length)
{
    while (*pattern && *path) {
        if (*pattern == '*') {
            size_t length = strcspn(path, "/");
            if (length == 0)
                return false;
            *wildcard = path;
            *wildcard_length = length;
            path += length;
            pattern++;
            continue;
        }
        if (*pattern != *path)
            return false;
        pattern++;
        path++;
    }
    return *pattern == '\0' && *path == '\0';
}

void http_api_handle(struct http_exchange *exchange)
{
    const struct butler_config *config = exchange->runtime->config;
    /* QRS cannot send a bearer token: its callback is authenticated by the
     * secret path segment instead, so it is routed before the /v4 check. */
    size_t prefix_length = strlen(QRS_CALLBACK_PATH);
    if (strncmp(exchange->path, QRS_CALLBACK_PATH, prefix_length) == 0 &&
        (exchange->path[prefix_length] == '/' || exchange->path[prefix_length] == '\0')) {
        handle_qrs_notification(exchange);
        return;
    }
    /* Qlik Cloud signs its webhooks instead of sending a token. */
    if (http_cloud_handle(exchange))
        return;
    /* /health stays open (liveness probes); /metrics takes the API tokens
     * unless health.metrics_auth is "open". */
    bool needs_token = strncmp(exchange->path, "/v4/", 4) == 0 ||
                       (strcmp(exchange->path, "/metrics") == 0 &&
                        config->health.metrics_auth == CONFIG_METRICS_AUTH_TOKEN);
    if (needs_token && config->http.tokens.count > 0 &&
        !http_body_bearer_allowed(http_exchange_header(exchange, "Authorization"),
                                  &config->http.tokens)) {
        exchange->endpoint = "unauthorized";
        static const char *const challenge[] = {"WWW-Authenticate", "Bearer", NULL};
        http_exchange_reply_error(exchange, 401,
                                  "missing or wrong bearer token (Authorization: Bearer <token>)",
                                  challenge);
        return;
    }
    /* HEAD is GET without the body (http_exchange_reply leaves it out). */
    const unsigned method_bit =
        exchange->method == HTTP_METHOD_HEAD ? (unsigned)M_GET : 1u << exchange->method;
    const struct route *route = NULL;
    const char *wildcard = NULL;
    size_t wildcard_length = 0;
    const struct route *path_route = NULL; /* first route of the path, for 404/405 */
    unsigned path_methods = 0;
    for (size_t i = 0; i < ROUTE_COUNT; i++) {
        if (!path_matches(routes[i].pattern, exchange->path, &wildcard, &wildcard_length))
            continue;
        path_methods |= routes[i].methods;
        if (path_route == NULL)
            path_route = &routes[i];
        if (route == NULL && (routes[i].methods & method_bit))
            route = &routes[i];
    }
    if (route == NULL)
        route = path_route;
    if (route == NULL || (route->v4 && !endpoint_enabled(config, route->name)) ||
        (route->handler == handle_metrics && !config->health.metrics)) {
        http_exchange_reply_error(exchange, 404, "no such endpoint (or it is disabled)", NULL);
        return;
    }
    exchange->endpoint = route->name;
    if ((route->methods & method_bit) == 0) {
        /* Every method some route of this path takes. */
        static const struct {
            unsigned bit;
            const char *name;
        } methods[] = {{M_GET, "GET"}, {M_POST, "POST"}, {M_PUT, "PUT"}, {M_DELETE, "DELETE"}};
        char allowed[64] = "";
        for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
            if (path_methods & methods[i].bit)
                snprintf(allowed + strlen(allowed), sizeof allowed - strlen(allowed), "%s%s",
                         allowed[0] ? ", " : "", methods[i].name);
        const char *const allow[] = {"Allow", allowed[0] ? allowed : route->allow, NULL};
        http_exchange_reply_error(exchange, 405, "method not allowed on this endpoint", allow);
        return;
    }
    if (!route_available(config, route)) {
        http_exchange_reply_error(exchange, 404, "no such endpoint (or it is disabled)", NULL);
        return;
    }
    route->handler(exchange);
}

/* ---- helpers ---- */

/* Read the body; answers 413/400 itself and returns false on failure. */
static bool read_body(struct http_exchange *exchange)
{
    enum butler_status status = http_exchange_read_body(exchange);
    if (status == BUTLER_OK)
        return true;
    if (status == BUTLER_ERR_TOO_LARGE) {
        char message[96];
        snprintf(message, sizeof message, "the body is larger than http.max_body_bytes (%ld)",
                 exchange->runtime->config->http.max_body_bytes);
        http_exchange_reply_error(exchange, 413, message, NULL);
    } else {
        http_exchange_reply_error(exchange, 400, "the body could not be read", NULL);
    }
    return false;
}

/* 415 unless a request with a body declares it JSON. A body without a
 * Content-Type is what a browser's "simple" cross-origin POST sends (no
 * preflight), so it is refused too; no body needs no Content-Type. */
static bool require_json(struct http_exchange *exchange)
{
    const char *content_type = http_exchange_header(exchange, "Content-Type");
    if (content_type == NULL ? !http_exchange_has_body(exchange)
                             : http_body_is_json_content_type(content_type))
        return true;
    http_exchange_reply_error(exchange, 415,
                              "the body must be JSON (Content-Type: application/json)", NULL);
    return false;
}

/* A query variable into out; 0 found, -1 absent, -2 too long, -3 holds a
 * NUL byte (%00: the C string would silently stop there). */
static int query_var(const struct http_exchange *exchange, const char *name, char *out,
                     size_t out_size)
{
    int length = mg_get_var(exchange->query, strlen(exchange->query), name, out, out_size);
    if (length >= 0 && strlen(out) == (size_t)length)
        return 0;
    out[0] = '\0';
    return length >= 0 ? -3 : length == -1 ? -1 : -2;
}

/* Optional boolean query flag: absent = false. False on a bad value (answered 400). */
static bool query_flag(struct http_exchange *exchange, const char *name, bool *value)
{
    char text[16];
    int found = query_var(exchange, name, text, sizeof text);
    *value = false;
    if (found == -1 || (found == 0 && (strcasecmp(text, "false") == 0 || strcmp(text, "0") == 0 ||
                                       text[0] == '\0')))
        return true;
    if (found == 0 && (strcasecmp(text, "true") == 0 || strcmp(text, "1") == 0)) {
        *value = true;
        return true;
    }
    char message[96];
    snprintf(message, sizeof message, "query parameter %s must be true or false", name);
    http_exchange_reply_error(exchange, 400, message, NULL);
    return false;
}

/* For the endpoint files (http_file.c): the same helpers, see http_server.h. */
int http_api_query_var(const struct http_exchange *exchange, const char *name, char *out,
                       size_t out_size)
{
    return query_var(exchange, name, out, out_size);
}

/* ---- endpoints ---- */

static void handle_ping(struct http_exchange *exchange)
{
    http_exchange_reply_json(
        exchange, 200,
        "{\"response\":\"Butler reporting for duty\",\"butlerVersion\":\"" BUTLER_VERSION "\"}",
        NULL);
}

static void handle_endpoints(struct http_exchange *exchange)
{
    cJSON *names = cJSON_CreateArray();
    for (size_t i = 0; names && i < ROUTE_COUNT; i++) {
        bool listed = false; /* several routes share a name (keyValueStore) */
        for (size_t j = 0; j < i && !listed; j++)
            listed = strcmp(routes[j].name, routes[i].name) == 0;
        if (!listed && routes[i].v4 &&
            endpoint_enabled(exchange->runtime->config, routes[i].name) &&
            route_available(exchange->runtime->config, &routes[i]))
            cJSON_AddItemToArray(names, cJSON_CreateString(routes[i].name));
    }
    http_exchange_reply_cjson(exchange, 200, names);
}

static void convert(struct http_exchange *exchange, const char *from_name, int from_base,
                    const char *to_name, int to_base)
{
    char input[HTTP_BASE_INPUT_MAX + 1];
    char output[HTTP_BASE_INPUT_MAX * 3 / 2 + 8];
    char message[128];
    int found = query_var(exchange, from_name, input, sizeof input);
    if (found == -1) {
        snprintf(message, sizeof message, "required query parameter %s is missing", from_name);
        http_exchange_reply_error(exchange, 400, message, NULL);
        return;
    }
    enum butler_status status = found == -2
                                    ? BUTLER_ERR_TOO_LARGE
                                    : http_body_base_convert(input, strlen(input), from_base,
                                                             to_base, output, sizeof output);
    if (status != BUTLER_OK) {
        snprintf(message, sizeof message,
                 status == BUTLER_ERR_TOO_LARGE ? "%s is longer than %d characters"
                                                : "%s must be a non-empty base%d number",
                 from_name, status == BUTLER_ERR_TOO_LARGE ? HTTP_BASE_INPUT_MAX : from_base);
        http_exchange_reply_error(exchange, 400, message, NULL);
        return;
    }
    cJSON *json = cJSON_CreateObject();
    if (json) {
        cJSON_AddStringToObject(json, from_name, input);
        cJSON_AddStringToObject(json, to_name, output);
    }
    http_exchange_reply_cjson(exchange, 200, json);
}

static void handle_base62_to_base16(struct http_exchange *exchange)
{
    convert(exchange, "base62", 62, "base16", 16);
}

static void handle_base16_to_base62(struct http_exchange *exchange)
{
    convert(exchange, "base16", 16, "base62", 62);
}

/* Butler's command topics under <root>/ and the endpoint that publishes each
 * (a trailing '/' matches any rest; file operations are matched by their
 * last level, with or without a node level before it). */
static const struct {
    const char *topic;
    const char *endpoint;
} command_topics[] = {
    {"task/start", "senseStartTask"},
    {"task/start/", "senseStartTask"},
    {"slack/post", "slackPostMessage"},
    {"app/reload", "senseAppReload"},
    {"app/dump", "senseAppDump"},
    {"app/list", "senseListApps"},
    {"newrelic/event", "postNewRelicEvent"},
    {"newrelic/metric", "postNewRelicMetric"},
    {"schedules/", "createNewSchedule"},
    {"kv/", "keyValueStore"},
};

static const char *file_endpoint(const char *operation)
{
    static const char *const names[][2] = {{"copy", "fileCopy"},
                                           {"move", "fileMove"},
                                           {"delete", "fileDelete"},
                                           {"mkdir", "createDir"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(operation, names[i][0]) == 0)
            return names[i][1];
    return NULL;
}

/* The first topic levels under <root>/ that Butler reads or writes itself
 * (docs/topics.md). */
static const char *const butler_families[] = {
    "task", "slack", "teams",     "email",   "webhook",  "app",    "events",     "sense", "file",
    "qrs",  "kv",    "schedules", "monitor", "newrelic", "status", "deadletter", NULL,
};

/*
 * PUT /v4/mqttpublishmessage must not get around http.endpoints. With an
 * allow-list set, a topic in one of Butler's own families under <root>/ is
 * published only when it is the command topic of an endpoint the list
 * enables; Butler's events, answers and other command families are refused.
 * Other topics (outside <root>/, or a level Butler does not use) are the
 * caller's business.
 */
static bool publish_topic_allowed(const struct butler_config *config, const char *topic)
{
    size_t root_length = strlen(config->mqtt.topic_root);
    if (config->http.endpoints.count == 0 ||
        strncmp(topic, config->mqtt.topic_root, root_length) != 0 || topic[root_length] != '/')
        return true;
    const char *rest = topic + root_length + 1;
    size_t level = strcspn(rest, "/");
    bool family = false;
    for (size_t i = 0; butler_families[i] && !family; i++)
        family =
            strlen(butler_families[i]) == level && strncmp(rest, butler_families[i], level) == 0;
    if (!family)
        return true;
    for (size_t i = 0; i < sizeof command_topics / sizeof command_topics[0]; i++) {
        size_t length = strlen(command_topics[i].topic);
        bool prefix = command_topics[i].topic[length - 1] == '/';
        if (prefix ? strncmp(rest, command_topics[i].topic, length) == 0
                   : strcmp(rest, command_topics[i].topic) == 0)
            return endpoint_enabled(config, command_topics[i].endpoint);
    }
    if (strncmp(rest, "file/", 5) == 0) {
        const char *operation = strrchr(rest, '/') + 1;
        const char *endpoint = file_endpoint(operation);
        return endpoint &&
               (endpoint_enabled(config, endpoint) ||
                (strcmp(operation, "mkdir") == 0 && endpoint_enabled(config, "createDirQVD")));
    }
    return false;
}

static void handle_mqtt_publish(struct http_exchange *exchange)
{
    const struct butler_config *config = exchange->runtime->config;
    struct http_publish_body body;
    char error[256];
    if (!require_json(exchange) || !read_body(exchange))
        return;
    enum butler_status status =
        http_body_parse_publish(exchange->body, exchange->body_length, &body, error, sizeof error);
    if (status != BUTLER_OK) {
        http_exchange_reply_error(exchange, status == BUTLER_ERR_NOMEM ? 500 : 400, error, NULL);
        return;
    }
    if (!publish_topic_allowed(config, body.topic)) {
        metrics_count("butler_http_publish_refused_total", "",
                      "mqttPublishMessage requests refused: a topic under <root>/ whose "
                      "endpoint http.endpoints does not enable");
        http_exchange_reply_error(exchange, 403,
                                  "this topic is under the topic root and its endpoint is not "
                                  "enabled in http.endpoints",
                                  NULL);
        http_publish_body_clear(&body);
        return;
    }
    if (http_command_publish(exchange, body.topic, body.message, strlen(body.message), body.qos,
                             body.retain, config->http.task_start_timeout_ms))
        http_exchange_reply_json(exchange, 201, body.echo, NULL);
    http_publish_body_clear(&body);
}

static void handle_slack_post(struct http_exchange *exchange)
{
    const struct butler_config *config = exchange->runtime->config;
    char *payload = NULL, *echo = NULL;
    char error[256];
    if (!require_json(exchange) || !read_body(exchange))
        return;
    enum butler_status status = http_body_parse_slack(exchange->body, exchange->body_length,
                                                      &payload, &echo, error, sizeof error);
    if (status != BUTLER_OK) {
        http_exchange_reply_error(exchange, status == BUTLER_ERR_NOMEM ? 500 : 400, error, NULL);
        return;
    }
    char topic[512];
    snprintf(topic, sizeof topic, "%s/slack/post", config->mqtt.topic_root);
    if (http_command_publish(exchange, topic, payload, strlen(payload), 1, false,
                             config->http.task_start_timeout_ms))
        http_exchange_reply_json(exchange, 201, echo, NULL);
    free(payload);
    free(echo);
}

/*
 * PUT|POST /v4/reloadtask/{taskId|-}/start. The request is published to
 * <root>/task/start; the answer is awaited on <root>/task/result (waiter
 * registered before publishing so a quick answer cannot be missed).
 * "-" with no items (no body, blank, "[]"): 200 with empty lists at once,
 * nothing published. Within task_start_timeout_ms: 200 with the Node.js shape; broker down or
 * not acknowledging: 503; acknowledged but not answered in time: 202
 * {"requestId", "status": "pending"} -- the broker holds the request and it
 * will run, so the caller must not retry it as if it had failed.
 */
static void handle_task_start(struct http_exchange *exchange)
{
    const struct butler_config *config = exchange->runtime->config;
    char *payload = NULL, *result = NULL, *node = NULL;
    size_t result_length = 0;
    char error[512];
    char request_id[TASK_REQUEST_ID_MAX + 1];
    bool all_must_exist = false, asynchronous = false;
    /* "/v4/reloadtask/" is 15 bytes; the route guarantees "/start" follows. */
    const char *task_id_start = exchange->path + 15;
    char task_id[TASK_TEXT_MAX + 1];
    size_t task_id_length = strcspn(task_id_start, "/");
    if (task_id_length > TASK_TEXT_MAX) {
        http_exchange_reply_error(exchange, 400, "the task id in the path is too long", NULL);
        goto out;
    }
    snprintf(task_id, sizeof task_id, "%.*s", (int)task_id_length, task_id_start);
    if (!query_flag(exchange, "allTaskIdsMustExist", &all_must_exist) ||
        !query_flag(exchange, "async", &asynchronous))
        goto out;
    /* ?wait=finished (contract 9.1): follow the runs and answer once they ended. */
    char wait[16];
    bool wait_finished = query_var(exchange, "wait", wait, sizeof wait) == 0;
    if (wait_finished && (strcmp(wait, "finished") != 0 || asynchronous)) {
        http_exchange_reply_error(
            exchange, 400, "query parameter wait must be \"finished\" (and not with async)", NULL);
        goto out;
    }
    if (!read_body(exchange))
        goto out;
    /* A blank body names nothing, as no body does (the Node.js Butler's
     * "-" with nothing): it needs no Content-Type. */
    if (exchange->body_length > 0 && strspn(exchange->body, " \t\r\n") != exchange->body_length &&
        !require_json(exchange))
        goto out;
    /* Butler extension: ?requestId= lets a caller retry after a 503 without
     * starting the task twice (a requestId is started once within
     * task_start.dedup_ttl_s); without it every call gets a fresh one. */
    if (!http_api_request_id(exchange, request_id, sizeof request_id))
        goto out;
    enum butler_status status =
        http_body_task_start_payload(task_id, exchange->body, exchange->body_length, all_must_exist,
                                     request_id, &payload, error, sizeof error);
    if (status != BUTLER_OK) {
        http_exchange_reply_error(exchange, status == BUTLER_ERR_NOMEM ? 500 : 400, error, NULL);
        goto out;
    }
    if (payload == NULL) {
        /* "-" without items names no task: the Node.js Butler answers 200
         * with empty lists. Nothing is published (no task/result will
         * follow), so ?async=true gets this final answer too, not a 202. */
        if (http_body_task_start_nothing(request_id, &node) != BUTLER_OK)
            http_exchange_reply_error(exchange, 500, "out of memory", NULL);
        else
            http_exchange_reply_json(exchange, 200, node, NULL);
        goto out;
    }
    if (wait_finished) {
        http_follow_task_start(exchange, payload, request_id);
        goto out;
    }
    const struct http_command command = {
        .topic_suffix = "task/start",
        .payload = payload,
        .request_id = asynchronous ? NULL : request_id,
        .publish_timeout_ms = config->http.task_start_timeout_ms,
        .answer_timeout_ms = -1,
        .pending_metric = "butler_http_task_start_pending_total",
        .pending_help = "Task starts accepted by the broker but not answered within the timeout",
    };
    switch (http_command_run(exchange, &command, &result, &result_length)) {
    case HTTP_COMMAND_FAILED:
        break;
    case HTTP_COMMAND_PUBLISHED:
        http_api_reply_pending(exchange, 202, request_id, NULL);
        break;
    case HTTP_COMMAND_PENDING:
        http_api_reply_pending(exchange, 202, request_id, "pending");
        break;
    case HTTP_COMMAND_ANSWERED:
        if (http_body_task_result_to_node(result, result_length, &node) != BUTLER_OK)
            http_exchange_reply_error(exchange, 500, "the task-start answer could not be read",
                                      NULL);
        else
            http_exchange_reply_json(exchange, 200, node, NULL);
        break;
    }
out:
    free(payload);
    free(result);
    free(node);
}

/*
 * POST /qrs-notification/<secret>: QRS calling back for a change
 * subscription (topics/notifications.h). What QRS sent is published to
 * <root>/qrs/notification and answered 200 only after the PUBACK, so QRS
 * never hears "OK" for a notice the broker does not hold. A wrong or
 * missing secret looks like any unknown path (404) and is counted.
 */
static void handle_qrs_notification(struct http_exchange *exchange)
{
    const struct butler_config *config = exchange->runtime->config;
    const char *segment = exchange->path + strlen(QRS_CALLBACK_PATH);
    size_t length = 0;
    if (*segment == '/') {
        segment++;
        length = strlen(segment);
    }
    if (length == 0 || memchr(segment, '/', length) != NULL ||
        !qrs_callback_secret_matches(config, segment, length)) {
        exchange->endpoint = "qrsNotificationRefused";
        metrics_count("butler_qrs_notification_refused_total", "",
                      "QRS callbacks refused: wrong or missing secret, or notifications off");
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "refused a QRS callback without the secret");
        http_exchange_reply_error(exchange, 404, "no such endpoint (or it is disabled)", NULL);
        return;
    }
    exchange->endpoint = "qrsNotification";
    if (exchange->method != HTTP_METHOD_POST) {
        static const char *const allow[] = {"Allow", "POST", NULL};
        http_exchange_reply_error(exchange, 405, "method not allowed on this endpoint", allow);
        return;
    }
    if (!read_body(exchange))
        return;
    char topic[512];
    snprintf(topic, sizeof topic, "%s/qrs/notification", config->mqtt.topic_root);
    if (http_command_publish(exchange, topic, exchange->body, exchange->body_length, 1, false,
                             config->http.task_start_timeout_ms))
        http_exchange_reply_json(exchange, 200, "{\"status\":\"accepted\"}", NULL);
}

static void handle_health(struct http_exchange *exchange)
{
    const struct butler_runtime *runtime = exchange->runtime;
    bool connected = mqtt_link_connected(runtime->link);
    char started[32];
    clock_format_iso8601(runtime->started_at_wall_ms, started, sizeof started);
    uint64_t now = clock_wall_ms();
    char body[256];
    snprintf(body, sizeof body,
             "{\"status\":\"%s\",\"mqtt\":\"%s\",\"version\":\"%s\",\"startedAt\":\"%s\","
             "\"uptimeS\":%llu}",
             connected ? "ok" : "unavailable", connected ? "connected" : "disconnected",
             BUTLER_VERSION, started,
             (unsigned long long)(now > runtime->started_at_wall_ms
                                      ? (now - runtime->started_at_wall_ms) / 1000
                                      : 0));
    http_exchange_reply_json(exchange, connected ? 200 : 503, body, connected ? NULL : retry_after);
}

static void handle_metrics(struct http_exchange *exchange)
{
    char *text = NULL;
    size_t length = 0;
    metrics_set(metrics_get("butler_http_task_start_waiting", "", METRIC_GAUGE,
                            "HTTP task starts waiting for their result"),
                (int64_t)task_result_waiting());
    metrics_set(metrics_get("butler_http_long_waits", "", METRIC_GAUGE,
                            "HTTP requests in a long wait now (at most http.long_waits_max)"),
                (int64_t)http_command_long_waits());
    if (metrics_render(&text, &length) != BUTLER_OK) {
        http_exchange_reply_error(exchange, 500, "metrics could not be rendered", NULL);
        return;
    }
    http_exchange_reply(exchange, 200, "text/plain; version=0.0.4; charset=utf-8", text, length,
                        NULL);
    free(text);
}

bool http_api_read_json_body(struct http_exchange *exchange)
{
    return require_json(exchange) && read_body(exchange);
}

/* A query requestId is a key in answers, topics' payloads and logs: a
 * conservative alphabet keeps it from being anything else there. */
static bool request_id_text(const char *text)
{
    if (text[0] == '\0')
        return false;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if (!isalnum(*p) && *p != '-' && *p != '_' && *p != '.' && *p != ':')
            return false;
    return true;
}

bool http_api_request_id(struct http_exchange *exchange, char *out, size_t out_size)
{
    int found = query_var(exchange, "requestId", out, out_size);
    if (found == -1 || (found == 0 && out[0] == '\0')) {
        task_make_uuid(out);
        return true;
    }
    if (found == 0 && request_id_text(out))
        return true;
    http_exchange_reply_error(exchange, 400,
                              "query parameter requestId must be 1 to 64 characters of "
                              "A-Z a-z 0-9 - _ . :",
                              NULL);
    return false;
}

void http_api_reply_pending(struct http_exchange *exchange, int status, const char *request_id,
                            const char *state)
{
    cJSON *reply = cJSON_CreateObject();
    if (reply && (!cJSON_AddStringToObject(reply, "requestId", request_id) ||
                  (state && !cJSON_AddStringToObject(reply, "status", state)))) {
        cJSON_Delete(reply);
        reply = NULL;
    }
    http_exchange_reply_cjson(exchange, status, reply);
}

bool http_api_query_flag(struct http_exchange *exchange, const char *name, bool *value)
{
    return query_flag(exchange, name, value);
}
