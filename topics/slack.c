/*
 * The Slack consumer (see slack.h). Runs on a worker thread with that
 * worker's own HTTP client, so connections to hooks.slack.com are reused.
 */
#include "topics/routes.h"
#include "topics/slack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bridge/core/clock.h"
#include "bridge/clients/http_client.h"
#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/core/runtime.h"
#include "topics/publish.h"
#include "bridge/model/task_request.h"

#define MODULE "slack"

/* The webhook a message asked for, resolved against configuration only. */
static const char *choose_webhook(const struct butler_config *config, const char *wanted)
{
    if (wanted == NULL || wanted[0] == '\0')
        return config->slack.webhook_url[0] ? config->slack.webhook_url : NULL;
    if (config->slack.webhook_url[0] && strcmp(wanted, config->slack.webhook_url) == 0)
        return config->slack.webhook_url;
    for (size_t i = 0; i < config->routes.count; i++) {
        const struct config_route *route = &config->routes.items[i];
        if (route->to != CONFIG_ROUTE_SLACK)
            continue;
        const char *url = route->webhook_url[0] ? route->webhook_url : config->slack.webhook_url;
        if (url[0] && (strcmp(wanted, route->name) == 0 || strcmp(wanted, url) == 0))
            return url;
    }
    return NULL;
}

/* Copy an optional string member; false when present with the wrong type. */
static bool copy_optional_string(cJSON *to, const cJSON *from, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(from, name);
    if (item == NULL || cJSON_IsNull(item))
        return true;
    if (!cJSON_IsString(item))
        return false;
    return item->valuestring[0] == '\0' || cJSON_AddStringToObject(to, name, item->valuestring);
}

enum butler_status slack_build_request(const struct butler_config *config,
                                       const unsigned char *payload, size_t length, char **body_out,
                                       const char **url_out, char *error, size_t error_size)
{
    enum butler_status status = BUTLER_ERR_INVALID;
    cJSON *root = NULL;
    cJSON *body = NULL;
    const char *wanted_webhook = NULL;
    *body_out = NULL;
    *url_out = NULL;
    if (length == 0 || length > TOPIC_PAYLOAD_MAX || !task_valid_utf8(payload, length)) {
        snprintf(error, error_size, "the payload must be 1 byte to 1 MiB of UTF-8");
        goto out;
    }
    body = cJSON_CreateObject();
    if (body == NULL) {
        status = BUTLER_ERR_NOMEM;
        goto out;
    }
    size_t start = 0;
    while (start < length && strchr(" \t\r\n", payload[start]) != NULL)
        start++;
    if (start < length && payload[start] == '{') {
        root = json_parse_exact((const char *)payload, length, NULL);
        if (!cJSON_IsObject(root)) {
            snprintf(error, error_size, "the payload starts with '{' but is not a JSON object");
            goto out;
        }
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(root, "text");
        const cJSON *blocks = cJSON_GetObjectItemCaseSensitive(root, "blocks");
        if ((text != NULL && !cJSON_IsString(text)) || (blocks != NULL && !cJSON_IsArray(blocks)) ||
            (!cJSON_IsString(text) && blocks == NULL)) {
            snprintf(error, error_size,
                     "\"text\" (string) or \"blocks\" (array) is required; \"blocks\" must be an "
                     "array");
            goto out;
        }
        if (text != NULL && strlen(text->valuestring) > SLACK_TEXT_MAX) {
            snprintf(error, error_size, "\"text\" is longer than %d bytes", SLACK_TEXT_MAX);
            goto out;
        }
        if ((text && !cJSON_AddStringToObject(body, "text", text->valuestring)) ||
            !copy_optional_string(body, root, "channel") ||
            !copy_optional_string(body, root, "username") ||
            !copy_optional_string(body, root, "icon_emoji")) {
            snprintf(error, error_size,
                     "\"channel\", \"username\" and \"icon_emoji\" must be strings");
            goto out;
        }
        if (blocks)
            cJSON_AddItemToObject(body, "blocks", cJSON_Duplicate(blocks, 1));
        const cJSON *webhook = cJSON_GetObjectItemCaseSensitive(root, "webhook");
        if (webhook != NULL && !cJSON_IsString(webhook)) {
            snprintf(error, error_size, "\"webhook\" must be a string");
            goto out;
        }
        wanted_webhook = webhook ? webhook->valuestring : NULL;
    } else {
        if (length > SLACK_TEXT_MAX) {
            snprintf(error, error_size, "the text is longer than %d bytes", SLACK_TEXT_MAX);
            goto out;
        }
        char *text = malloc(length + 1);
        if (text == NULL) {
            status = BUTLER_ERR_NOMEM;
            goto out;
        }
        memcpy(text, payload, length);
        text[length] = '\0';
        bool added = cJSON_AddStringToObject(body, "text", text) != NULL;
        free(text);
        if (!added) {
            status = BUTLER_ERR_NOMEM;
            goto out;
        }
    }
    *url_out = choose_webhook(config, wanted_webhook);
    if (*url_out == NULL) {
        if (wanted_webhook && wanted_webhook[0]) {
            /* Never echo the value: it may be a URL with a secret path. */
            snprintf(error, error_size,
                     "\"webhook\" names no configured Slack webhook (use a route name)");
        } else {
            snprintf(error, error_size, "no Slack webhook configured (slack.webhook_url)");
            status = BUTLER_ERR_NOT_FOUND;
        }
        goto out;
    }
    *body_out = cJSON_PrintUnformatted(body);
    if (*body_out == NULL) {
        status = BUTLER_ERR_NOMEM;
        goto out;
    }
    status = BUTLER_OK;
out:
    if (status != BUTLER_OK)
        *url_out = NULL;
    cJSON_Delete(root);
    cJSON_Delete(body);
    return status;
}

static void send_deadletter(const struct topic_message *message, const char *error, int attempts)
{
    publish_deadletter("slack", message->topic, message->payload, message->payload_length, error,
                       attempts, message->received_wall_ms);
}

static void count_delivery(const char *outcome)
{
    char labels[64];
    snprintf(labels, sizeof labels, "destination=\"slack\",outcome=\"%s\"", outcome);
    metrics_count(
        "butler_deliveries_total", labels,
        "Outbound deliveries (Slack, Teams, webhooks, email), by destination and outcome");
}

void slack_run(struct topic_worker *worker, struct topic_message *message)
{
    const struct butler_config *config = butler_runtime_current->config;
    char error[512] = "";
    char *body = NULL;
    const char *url = NULL;
    int attempts = 0;
    enum butler_status status = slack_build_request(
        config, message->payload, message->payload_length, &body, &url, error, sizeof error);
    if (status != BUTLER_OK) {
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "not posting %s: %s", message->topic, error);
        topics_count("slack", "rejected");
        count_delivery("rejected");
        send_deadletter(message, error, 0);
        goto out;
    }
    status =
        route_http_send(worker->http, config, "POST", url, body, error, sizeof error, &attempts);
    if (status == BUTLER_OK) {
        count_delivery("delivered");
        goto out;
    }
    LOG_WARN(MODULE, "delivery failed for good after %d attempt(s): %s", attempts, error);
    count_delivery("failed");
    send_deadletter(message, error, attempts);
out:
    free(body);
    topic_message_free(message);
}
