/*
 * New Relic event and metric posts (see newrelic.h). Worker threads; no
 * state of its own.
 */
#include "topics/newrelic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/core/clock.h"
#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "topics/publish.h"
#include "topics/routes.h"
#include "topics/task_start.h"

#define MODULE "newrelic"

enum {
    ERROR_TEXT_MAX = 512,
    NAME_TEXT_MAX = 255,  /* New Relic's limit for event types and attribute names */
    ATTRIBUTES_MAX = 254, /* New Relic keeps at most 255 attributes per event */
    URL_TEXT_MAX = 2048,
};

bool newrelic_wanted(const struct butler_config *config)
{
    return config->newrelic.accounts.count > 0 || config->http.enable;
}

/* Copy {name, value} items (config or request) into `into`; later ones win. */
static enum butler_status add_config_attributes(cJSON *into,
                                                const struct config_custom_property_list *list)
{
    for (size_t i = 0; i < list->count; i++) {
        cJSON_DeleteItemFromObjectCaseSensitive(into, list->items[i].name);
        if (!cJSON_AddStringToObject(into, list->items[i].name, list->items[i].value))
            return BUTLER_ERR_NOMEM;
    }
    return BUTLER_OK;
}

static enum butler_status add_request_attributes(cJSON *into, const cJSON *attributes, char *error,
                                                 size_t error_size)
{
    if (attributes == NULL)
        return BUTLER_OK;
    if (!cJSON_IsArray(attributes) || cJSON_GetArraySize(attributes) > ATTRIBUTES_MAX) {
        snprintf(error, error_size, "attributes must be an array of at most %d {name, value}",
                 ATTRIBUTES_MAX);
        return BUTLER_ERR_INVALID;
    }
    const cJSON *item = NULL;
    cJSON_ArrayForEach(item, attributes)
    {
        const char *name = json_string_member(item, "name");
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(item, "value");
        if (name == NULL || !*name || strlen(name) > NAME_TEXT_MAX ||
            !(cJSON_IsString(value) || cJSON_IsNumber(value) || cJSON_IsBool(value))) {
            snprintf(error, error_size,
                     "each attribute needs a name and a string, number or boolean value");
            return BUTLER_ERR_INVALID;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(into, name);
        cJSON *copy = cJSON_Duplicate(value, false);
        if (copy == NULL || !cJSON_AddItemToObject(into, name, copy)) {
            cJSON_Delete(copy);
            return BUTLER_ERR_NOMEM;
        }
    }
    return BUTLER_OK;
}

/* timestamp (ms) from the request, else now. */
static bool request_timestamp(const cJSON *request, uint64_t now_ms, double *out)
{
    const cJSON *timestamp = cJSON_GetObjectItemCaseSensitive(request, "timestamp");
    if (timestamp == NULL) {
        *out = (double)now_ms;
        return true;
    }
    if (!cJSON_IsNumber(timestamp) || timestamp->valuedouble < 0)
        return false;
    *out = timestamp->valuedouble;
    return true;
}

static enum butler_status build_event(const cJSON *request,
                                      const struct config_custom_property_list *attributes,
                                      uint64_t now_ms, cJSON *event, char *error, size_t error_size)
{
    const char *event_type = json_string_member(request, "eventType");
    double timestamp = 0;
    if (event_type == NULL || !*event_type || strlen(event_type) > NAME_TEXT_MAX) {
        snprintf(error, error_size, "eventType is required (a string of 1..%d characters)",
                 NAME_TEXT_MAX);
        return BUTLER_ERR_INVALID;
    }
    if (!request_timestamp(request, now_ms, &timestamp)) {
        snprintf(error, error_size, "timestamp must be a number of milliseconds");
        return BUTLER_ERR_INVALID;
    }
    enum butler_status status = add_config_attributes(event, attributes);
    if (status == BUTLER_OK)
        status = add_request_attributes(
            event, cJSON_GetObjectItemCaseSensitive(request, "attributes"), error, error_size);
    if (status != BUTLER_OK)
        return status;
    /* eventType and timestamp last, so no attribute can replace them. */
    cJSON_DeleteItemFromObjectCaseSensitive(event, "eventType");
    cJSON_DeleteItemFromObjectCaseSensitive(event, "timestamp");
    if (!cJSON_AddStringToObject(event, "eventType", event_type) ||
        !cJSON_AddNumberToObject(event, "timestamp", timestamp))
        return BUTLER_ERR_NOMEM;
    return BUTLER_OK;
}

static enum butler_status build_metric(const cJSON *request,
                                       const struct config_custom_property_list *attributes,
                                       uint64_t now_ms, cJSON *batch, char *error,
                                       size_t error_size)
{
    const char *name = json_string_member(request, "name");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(request, "type");
    const cJSON *value = cJSON_GetObjectItemCaseSensitive(request, "value");
    const cJSON *interval = cJSON_GetObjectItemCaseSensitive(request, "interval");
    double timestamp = 0;
    if (name == NULL || !*name || strlen(name) > NAME_TEXT_MAX) {
        snprintf(error, error_size, "name is required (a string of 1..%d characters)",
                 NAME_TEXT_MAX);
        return BUTLER_ERR_INVALID;
    }
    if (type != NULL && !(cJSON_IsString(type) && strcmp(type->valuestring, "gauge") == 0)) {
        snprintf(error, error_size, "type must be \"gauge\"");
        return BUTLER_ERR_INVALID;
    }
    if (!cJSON_IsNumber(value)) {
        snprintf(error, error_size, "value is required (a number)");
        return BUTLER_ERR_INVALID;
    }
    if (!request_timestamp(request, now_ms, &timestamp) ||
        (interval != NULL && (!cJSON_IsNumber(interval) || interval->valuedouble < 0))) {
        snprintf(error, error_size, "timestamp and interval must be numbers of milliseconds");
        return BUTLER_ERR_INVALID;
    }
    cJSON *common = cJSON_AddObjectToObject(batch, "common");
    cJSON *common_attributes = common ? cJSON_AddObjectToObject(common, "attributes") : NULL;
    cJSON *metrics = cJSON_AddArrayToObject(batch, "metrics");
    cJSON *metric = cJSON_CreateObject();
    if (common_attributes == NULL || metrics == NULL || metric == NULL ||
        !cJSON_AddItemToArray(metrics, metric)) {
        cJSON_Delete(metric);
        return BUTLER_ERR_NOMEM;
    }
    cJSON *metric_attributes = cJSON_CreateObject();
    if (metric_attributes == NULL || !cJSON_AddStringToObject(metric, "name", name) ||
        !cJSON_AddStringToObject(metric, "type", "gauge") ||
        !cJSON_AddNumberToObject(metric, "value", value->valuedouble) ||
        !cJSON_AddNumberToObject(metric, "timestamp", timestamp) ||
        (interval && !cJSON_AddNumberToObject(metric, "interval.ms", interval->valuedouble)) ||
        !cJSON_AddItemToObject(metric, "attributes", metric_attributes)) {
        cJSON_Delete(metric_attributes);
        return BUTLER_ERR_NOMEM;
    }
    enum butler_status status = add_config_attributes(common_attributes, attributes);
    if (status != BUTLER_OK)
        return status;
    return add_request_attributes(metric_attributes,
                                  cJSON_GetObjectItemCaseSensitive(request, "attributes"), error,
                                  error_size);
}

enum butler_status newrelic_build_body(bool metric, const cJSON *request,
                                       const struct config_custom_property_list *attributes,
                                       uint64_t now_ms, char **body_out, char *error,
                                       size_t error_size)
{
    *body_out = NULL;
    cJSON *body = cJSON_CreateArray();
    cJSON *item = cJSON_CreateObject();
    enum butler_status status = BUTLER_ERR_NOMEM;
    if (body == NULL || item == NULL || !cJSON_AddItemToArray(body, item)) {
        cJSON_Delete(item);
        goto out;
    }
    if (!cJSON_IsObject(request)) {
        snprintf(error, error_size, "the body must be a JSON object");
        status = BUTLER_ERR_INVALID;
        goto out;
    }
    status = metric ? build_metric(request, attributes, now_ms, item, error, error_size)
                    : build_event(request, attributes, now_ms, item, error, error_size);
    if (status == BUTLER_OK && (*body_out = cJSON_PrintUnformatted(body)) == NULL)
        status = BUTLER_ERR_NOMEM;
out:
    if (status == BUTLER_ERR_NOMEM && !error[0])
        snprintf(error, error_size, "out of memory");
    cJSON_Delete(body);
    return status;
}

/* Post `body` to every account; the first failure is reported. */
static enum butler_status post_to_accounts(struct topic_worker *worker,
                                           const struct butler_config *config, bool metric,
                                           const char *body, char *error, size_t error_size,
                                           int *attempts_out)
{
    enum butler_status result = BUTLER_OK;
    for (size_t i = 0; i < config->newrelic.accounts.count; i++) {
        const struct config_newrelic_account *account = &config->newrelic.accounts.items[i];
        char url[URL_TEXT_MAX];
        if (metric)
            snprintf(url, sizeof url, "%s", config->newrelic.metric_url);
        else
            snprintf(url, sizeof url, "%s/v1/accounts/%s/events", config->newrelic.event_url,
                     account->account_id);
        struct config_header api_key = {.name = "Api-Key", .value = account->api_key};
        struct config_header_list headers = {.items = &api_key, .count = 1};
        char account_error[ERROR_TEXT_MAX] = "";
        int attempts = 0;
        enum butler_status status =
            route_http_send_with_headers(worker->http, config, "POST", url, body, &headers,
                                         account_error, sizeof account_error, &attempts);
        if (attempts > *attempts_out)
            *attempts_out = attempts;
        char labels[320];
        snprintf(labels, sizeof labels, "account=\"%.200s\",kind=\"%s\",outcome=\"%s\"",
                 account->name, metric ? "metric" : "event", status == BUTLER_OK ? "ok" : "failed");
        metrics_count("butler_newrelic_posts_total", labels,
                      "Posts to New Relic by account, kind and outcome");
        if (status != BUTLER_OK && result == BUTLER_OK) {
            result = status;
            snprintf(error, error_size, "account %s: %s", account->name, account_error);
        }
    }
    return result;
}

static void answer(const struct butler_config *config, const char *request_id, const char *kind,
                   const char *status_text, const char *error)
{
    cJSON *result = cJSON_CreateObject();
    char *payload = NULL;
    if (result == NULL || !cJSON_AddStringToObject(result, "requestId", request_id) ||
        !cJSON_AddStringToObject(result, "kind", kind) ||
        !cJSON_AddStringToObject(result, "status", status_text) ||
        (error && !cJSON_AddStringToObject(result, "error", error)) ||
        (payload = cJSON_PrintUnformatted(result)) == NULL) {
        LOG_ERROR(MODULE, "out of memory answering New Relic request %s", request_id);
        goto out;
    }
    char topic[512];
    snprintf(topic, sizeof topic, "%s/newrelic/result", config->mqtt.topic_root);
    struct mqtt_publish_options options = {.qos = 1};
    if (publish_reliably(topic, payload, strlen(payload), &options) != BUTLER_OK)
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "could not publish the answer to %s", request_id);
out:
    cJSON_Delete(result);
    free(payload);
}

void newrelic_run(struct topic_worker *worker, struct topic_message *message)
{
    const struct butler_config *config = butler_runtime_current->config;
    const char *kind = strrchr(message->topic, '/');
    kind = kind ? kind + 1 : "";
    const bool metric = strcmp(kind, "metric") == 0;
    char error[ERROR_TEXT_MAX] = "";
    char request_id[TASK_REQUEST_ID_MAX + 1];
    char *body = NULL;
    int attempts = 0;
    const char *outcome = "invalid";
    cJSON *request =
        message->payload_length <= TOPIC_PAYLOAD_MAX
            ? json_parse_exact((const char *)message->payload, message->payload_length, NULL)
            : NULL;
    const char *given_id = json_string_member(request, "requestId");
    if (given_id && strlen(given_id) <= TASK_REQUEST_ID_MAX)
        snprintf(request_id, sizeof request_id, "%s", given_id);
    else
        task_make_uuid(request_id);
    if (!metric && strcmp(kind, "event") != 0) {
        snprintf(error, sizeof error, "unknown New Relic command %s (event or metric)", kind);
        goto out;
    }
    if (request == NULL) {
        snprintf(error, sizeof error, "the payload is not a JSON object");
        goto out;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(request, "requestId");
    if (newrelic_build_body(metric, request, &config->newrelic.attributes, clock_wall_ms(), &body,
                            error, sizeof error) != BUTLER_OK)
        goto out;
    if (config->newrelic.accounts.count == 0) {
        snprintf(error, sizeof error, "no New Relic account is configured (newrelic.accounts)");
        outcome = "failed";
        goto out;
    }
    if (post_to_accounts(worker, config, metric, body, error, sizeof error, &attempts) !=
        BUTLER_OK) {
        outcome = "failed";
        LOG_WARN(MODULE, "%s post failed for good: %s", kind, error);
        publish_deadletter("newrelic", message->topic, message->payload, message->payload_length,
                           error, attempts, message->received_wall_ms);
        goto out;
    }
    outcome = "accepted";
out:
    topics_count("newrelic", outcome);
    answer(config, request_id, metric ? "metric" : "event", outcome, error[0] ? error : NULL);
    cJSON_Delete(request);
    free(body);
    topic_message_free(message);
}
