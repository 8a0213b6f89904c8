/*
 * Sending for routes and the command topics: HTTP with the retry policy,
 * e-mail, and the Slack and Teams bodies. Worker threads; each worker has
 * its own HTTP client.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge/clients/http_client.h"
#include "bridge/clients/smtp_client.h"
#include "bridge/core/clock.h"
#include "bridge/core/log.h"
#include "topics/route_internal.h"
#include "topics/template.h"

enum {
    HTTP_TIMEOUT_MS = 10000,
    HTTP_CONNECT_TIMEOUT_MS = 5000,
    SLACK_BLOCK_TEXT_MAX = 2900, /* Slack refuses section text over 3000 */
};

static enum butler_status http_send_lines(struct http_client *http,
                                          const struct butler_config *config, const char *method,
                                          const char *url, const char *body,
                                          const char *const *headers, char *error,
                                          size_t error_size, int *attempts_out);

enum butler_status route_http_send(struct http_client *http, const struct butler_config *config,
                                   const char *method, const char *url, const char *body,
                                   char *error, size_t error_size, int *attempts_out)
{
    return route_http_send_with_headers(http, config, method, url, body, NULL, error, error_size,
                                        attempts_out);
}

enum butler_status route_http_send_with_headers(struct http_client *http,
                                                const struct butler_config *config,
                                                const char *method, const char *url,
                                                const char *body,
                                                const struct config_header_list *extra, char *error,
                                                size_t error_size, int *attempts_out)
{
    /* "Content-Type: application/json" unless the route sets its own, the
     * route's headers, NULL. Values were checked single-line at load. */
    char *lines[ROUTE_HEADERS_MAX + 2] = {0};
    size_t line_count = 0;
    bool own_content_type = false;
    enum butler_status status = BUTLER_OK;
    for (size_t i = 0; extra && i < extra->count && i < ROUTE_HEADERS_MAX; i++) {
        size_t length = strlen(extra->items[i].name) + strlen(extra->items[i].value) + 3;
        lines[line_count] = malloc(length);
        if (lines[line_count] == NULL) {
            snprintf(error, error_size, "out of memory");
            status = BUTLER_ERR_NOMEM;
            goto out;
        }
        snprintf(lines[line_count++], length, "%s: %s", extra->items[i].name,
                 extra->items[i].value);
        own_content_type =
            own_content_type || strcasecmp(extra->items[i].name, "Content-Type") == 0;
    }
    if (!own_content_type &&
        (lines[line_count] = strdup("Content-Type: application/json")) == NULL) {
        snprintf(error, error_size, "out of memory");
        status = BUTLER_ERR_NOMEM;
        goto out;
    }
    status = http_send_lines(http, config, method, url, body, (const char *const *)lines, error,
                             error_size, attempts_out);
out:
    for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) {
        if (lines[i])
            memset(lines[i], 0, strlen(lines[i])); /* API keys */
        free(lines[i]);
    }
    return status;
}

static enum butler_status http_send_lines(struct http_client *http,
                                          const struct butler_config *config, const char *method,
                                          const char *url, const char *body,
                                          const char *const *headers, char *error,
                                          size_t error_size, int *attempts_out)
{
    struct http_response response = {.retry_after_s = -1};
    char redacted[256];
    *attempts_out = 0;
    log_redact_url(url, redacted, sizeof redacted);
    if (http == NULL) {
        snprintf(error, error_size, "no HTTP client on this worker (out of memory)");
        return BUTLER_ERR_NOMEM;
    }
    struct http_request request = {
        .method = method,
        .url = url,
        .headers = headers,
        .body = body,
        .body_length = strlen(body),
        .timeout_ms = HTTP_TIMEOUT_MS,
        .connect_timeout_ms = HTTP_CONNECT_TIMEOUT_MS,
        .verify_peer = true,
        .max_response_bytes = 64 * 1024,
    };
    struct retry_policy policy = {config->retry.max_attempts, config->retry.initial_backoff_ms,
                                  config->retry.max_backoff_ms};
    enum butler_status status = http_client_perform_with_retry(
        http, &request, &policy, butler_runtime_stopping, &response, attempts_out);
    if (status != BUTLER_OK)
        snprintf(error, error_size, "%s %s: %s (HTTP %ld%s%s)", method, redacted,
                 butler_status_str(status), response.status, response.error[0] ? ", " : "",
                 response.error);
    http_response_clear(&response);
    return status;
}

/* The e-mail for `to`, sent with the `retry` policy (bridge/clients/smtp_client.c). */
enum butler_status route_smtp_send(const struct butler_config *config,
                                   const struct config_string_list *to, const char *subject,
                                   const char *body, char *error, size_t error_size,
                                   int *attempts_out)
{
    char *message = NULL;
    enum butler_status status;
    *attempts_out = 0;
    if (config->smtp.url == NULL || config->smtp.url[0] == '\0') {
        snprintf(error, error_size, "smtp.url is not set");
        return BUTLER_ERR_INVALID;
    }
    if (to->count == 0) {
        snprintf(error, error_size, "no recipients");
        return BUTLER_ERR_INVALID;
    }
    status = route_build_email(config->smtp.from, to, subject, body, clock_wall_ms(), &message);
    if (status != BUTLER_OK)
        return status;
    status = smtp_client_send(config, to, message, butler_runtime_stopping, error, error_size,
                              attempts_out);
    free(message);
    return status;
}

/* ------------------------------------------------------ bodies per sender */

static cJSON *link_button(const char *label, const char *url)
{
    cJSON *button = cJSON_CreateObject();
    cJSON *text = cJSON_AddObjectToObject(button, "text");
    cJSON_AddStringToObject(button, "type", "button");
    cJSON_AddStringToObject(text, "type", "plain_text");
    cJSON_AddStringToObject(text, "text", label);
    cJSON_AddStringToObject(button, "url", url);
    return button;
}

/* Slack incoming-webhook body: "text", or Block Kit for default texts. */
char *route_slack_body(const struct butler_config *config, const struct config_route *route,
                       const char *text, bool block_kit)
{
    cJSON *body = cJSON_CreateObject();
    if (block_kit) {
        /* The default text is all event fields: escaped, since Slack reads
         * "text" as markup (a task name could ping <!channel>). The section
         * below is plain_text, which Slack shows as it is. */
        char *escaped = NULL;
        if (template_escape_text(text, TEMPLATE_BODY_SLACK, 4 * ROUTE_TEXT_MAX, &escaped) !=
            BUTLER_OK) {
            cJSON_Delete(body);
            return NULL;
        }
        cJSON_AddStringToObject(body, "text", escaped);
        free(escaped);
    } else {
        cJSON_AddStringToObject(body, "text", text); /* escaped when rendered */
    }
    if (route_has_text(route->channel))
        cJSON_AddStringToObject(body, "channel", route->channel);
    if (route_has_text(route->username))
        cJSON_AddStringToObject(body, "username", route->username);
    if (route_has_text(route->icon_emoji))
        cJSON_AddStringToObject(body, "icon_emoji", route->icon_emoji);
    if (block_kit) {
        char section_text[SLACK_BLOCK_TEXT_MAX + 1];
        size_t n = strlen(text);
        if (n > SLACK_BLOCK_TEXT_MAX) {
            n = SLACK_BLOCK_TEXT_MAX;
            while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
                n--;
        }
        memcpy(section_text, text, n);
        section_text[n] = '\0';
        cJSON *blocks = cJSON_AddArrayToObject(body, "blocks");
        cJSON *section = cJSON_CreateObject();
        cJSON_AddStringToObject(section, "type", "section");
        cJSON *section_body = cJSON_AddObjectToObject(section, "text");
        cJSON_AddStringToObject(section_body, "type", "plain_text");
        cJSON_AddStringToObject(section_body, "text", section_text);
        cJSON_AddItemToArray(blocks, section);
        if (route_has_text(config->sense.qmc_url) || route_has_text(config->sense.hub_url)) {
            cJSON *actions = cJSON_CreateObject();
            cJSON_AddStringToObject(actions, "type", "actions");
            cJSON *elements = cJSON_AddArrayToObject(actions, "elements");
            if (route_has_text(config->sense.qmc_url))
                cJSON_AddItemToArray(elements, link_button("Open QMC", config->sense.qmc_url));
            if (route_has_text(config->sense.hub_url))
                cJSON_AddItemToArray(elements, link_button("Open Hub", config->sense.hub_url));
            cJSON_AddItemToArray(blocks, actions);
        }
    }
    char *printed = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    return printed;
}

/* Teams workflow webhook body: an Adaptive Card 1.3 in a "message". */
char *route_teams_body(const struct butler_config *config, const char *title, const char *text)
{
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "type", "message");
    cJSON *attachments = cJSON_AddArrayToObject(body, "attachments");
    cJSON *attachment = cJSON_CreateObject();
    cJSON_AddItemToArray(attachments, attachment);
    cJSON_AddStringToObject(attachment, "contentType", "application/vnd.microsoft.card.adaptive");
    cJSON *card = cJSON_AddObjectToObject(attachment, "content");
    cJSON_AddStringToObject(card, "$schema", "http://adaptivecards.io/schemas/adaptive-card.json");
    cJSON_AddStringToObject(card, "type", "AdaptiveCard");
    cJSON_AddStringToObject(card, "version", "1.3");
    cJSON *msteams = cJSON_AddObjectToObject(card, "msteams");
    cJSON_AddStringToObject(msteams, "width", "Full");
    cJSON *items = cJSON_AddArrayToObject(card, "body");
    if (route_has_text(title)) {
        cJSON *heading = cJSON_CreateObject();
        cJSON_AddStringToObject(heading, "type", "TextBlock");
        cJSON_AddStringToObject(heading, "text", title);
        cJSON_AddStringToObject(heading, "weight", "Bolder");
        cJSON_AddStringToObject(heading, "size", "Medium");
        cJSON_AddTrueToObject(heading, "wrap");
        cJSON_AddItemToArray(items, heading);
    }
    cJSON *block = cJSON_CreateObject();
    cJSON_AddStringToObject(block, "type", "TextBlock");
    cJSON_AddStringToObject(block, "text", text);
    cJSON_AddTrueToObject(block, "wrap");
    cJSON_AddItemToArray(items, block);
    if (route_has_text(config->sense.qmc_url) || route_has_text(config->sense.hub_url)) {
        cJSON *actions = cJSON_AddArrayToObject(card, "actions");
        const char *labels[] = {"Open QMC", "Open Hub"};
        const char *urls[] = {config->sense.qmc_url, config->sense.hub_url};
        for (size_t i = 0; i < 2; i++) {
            if (!route_has_text(urls[i]))
                continue;
            cJSON *action = cJSON_CreateObject();
            cJSON_AddStringToObject(action, "type", "Action.OpenUrl");
            cJSON_AddStringToObject(action, "title", labels[i]);
            cJSON_AddStringToObject(action, "url", urls[i]);
            cJSON_AddItemToArray(actions, action);
        }
    }
    char *printed = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    return printed;
}
