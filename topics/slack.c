/*
 * The Slack consumer (see slack.h). Runs on a worker thread with that
 * worker's own HTTP client, so connections to hooks.slack.com are reused.
 */
#include "topics/slack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bridge/clock.h"
#include "bridge/http_client.h"
#include "bridge/json.h"
#include "bridge/log.h"
#include "bridge/metrics.h"
#include "bridge/runtime.h"
#include "topics/publish.h"
#include "topics/task_start.h"

#define MODULE "slack"

enum { SLACK_TIMEOUT_MS = 15000, SLACK_CONNECT_TIMEOUT_MS = 5000 };

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

/* Publish the message that failed for good to <root>/deadletter/<topic>. */
static void send_deadletter(const struct butler_config *config, const struct topic_message *message,
                            const char *error, int attempts)
{
    char topic[1024];
    snprintf(topic, sizeof topic, "%s/deadletter/%s", config->mqtt.topic_root, message->topic);
    char first_attempt[32];
    clock_format_iso8601(message->received_wall_ms, first_attempt, sizeof first_attempt);
    cJSON *letter = cJSON_CreateObject();
    char *text = NULL;
    if (letter == NULL)
        goto out;
    cJSON_AddStringToObject(letter, "topic", message->topic);
    cJSON_AddStringToObject(letter, "payload",
                            task_valid_utf8(message->payload, message->payload_length)
                                ? (const char *)message->payload
                                : "");
    cJSON_AddStringToObject(letter, "error", error);
    cJSON_AddNumberToObject(letter, "attempts", attempts);
    cJSON_AddStringToObject(letter, "firstAttemptAt", first_attempt);
    text = cJSON_PrintUnformatted(letter);
    if (text == NULL)
        goto out;
    if (publish_reliably(topic, text, strlen(text), &(struct mqtt_publish_options){.qos = 1}) !=
        BUTLER_OK)
        LOG_ERROR(MODULE, "could not publish the dead letter for %s", message->topic);
    else
        metrics_count("butler_deadletters_total", "family=\"slack\"",
                      "Work that failed for good and went to <root>/deadletter/");
out:
    cJSON_Delete(letter);
    free(text);
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
    struct http_response response = {0};
    int attempts = 0;
    enum butler_status status = slack_build_request(
        config, message->payload, message->payload_length, &body, &url, error, sizeof error);
    if (status != BUTLER_OK) {
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "not posting %s: %s", message->topic, error);
        topics_count("slack", "rejected");
        count_delivery("rejected");
        send_deadletter(config, message, error, 0);
        goto out;
    }
    if (worker->http == NULL) {
        snprintf(error, sizeof error, "this worker has no HTTP client (out of memory)");
        count_delivery("failed");
        send_deadletter(config, message, error, 0);
        goto out;
    }
    static const char *const headers[] = {"Content-Type: application/json", NULL};
    struct http_request request = {
        .method = "POST",
        .url = url,
        .headers = headers,
        .body = body,
        .body_length = strlen(body),
        .timeout_ms = SLACK_TIMEOUT_MS,
        .connect_timeout_ms = SLACK_CONNECT_TIMEOUT_MS,
        .verify_peer = true,
        .max_response_bytes = 64 * 1024,
    };
    struct retry_policy policy = {config->retry.max_attempts, config->retry.initial_backoff_ms,
                                  config->retry.max_backoff_ms};
    status = http_client_perform_with_retry(worker->http, &request, &policy,
                                            butler_runtime_stopping, &response, &attempts);
    char redacted[256];
    log_redact_url(url, redacted, sizeof redacted);
    if (status == BUTLER_OK) {
        count_delivery("delivered");
        LOG_DEBUG(MODULE, "posted to %s (%d attempt(s))", redacted, attempts);
        goto out;
    }
    snprintf(error, sizeof error, "Slack webhook %s: %s (HTTP %ld%s%s)", redacted,
             butler_status_str(status), response.status, response.error[0] ? ", " : "",
             response.error);
    LOG_WARN(MODULE, "delivery failed for good after %d attempt(s): %s", attempts, error);
    count_delivery("failed");
    send_deadletter(config, message, error, attempts);
out:
    http_response_clear(&response);
    free(body);
    topic_message_free(message);
}
