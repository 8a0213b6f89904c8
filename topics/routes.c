/*
 * Routes and the teams/email/webhook command topics; see routes.h.
 *
 * Thread context: routes_setup/teardown at start-up and shutdown;
 * routes_wanted on the MQTT network thread (read-only table, no locks);
 * everything else on worker threads, each with its own HTTP and QRS client.
 */
#include "topics/routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "bridge/core/clock.h"
#include "bridge/store/expiring_map.h"
#include "bridge/clients/http_client.h"
#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/link/mqtt_link.h"
#include "bridge/clients/qrs.h"
#include "bridge/clients/smtp_client.h"
#include "bridge/model/sense_event.h"
#include "topics/publish.h"
#include "topics/template.h"

#define MODULE "routes"

enum {
    HTTP_TIMEOUT_MS = 10000,
    HTTP_CONNECT_TIMEOUT_MS = 5000,
    SLACK_BLOCK_TEXT_MAX = 2900, /* Slack refuses section text over 3000 */
    EMAIL_RECIPIENTS_MAX = 50,
    EMAIL_MAX_BYTES = 1 << 20,
    TOPIC_MAX = 1024,
    ERROR_MAX = 512,
    FILTER_MAX = 1024,
};

static struct butler_runtime *routes_runtime;
static struct expiring_map *rate_limits;

/* ------------------------------------------------------------ pure parts */

/* Split off the next '/'-separated level of *p; returns its length. */
static size_t next_level(const char **p, const char **level)
{
    *level = *p;
    const char *slash = strchr(*p, '/');
    size_t length = slash ? (size_t)(slash - *p) : strlen(*p);
    *p = slash ? slash + 1 : NULL;
    return length;
}

bool route_filter_covers(const char *a, const char *b)
{
    const char *pa = a, *pb = b;
    while (pa && pb) {
        const char *la, *lb;
        size_t na = next_level(&pa, &la);
        size_t nb = next_level(&pb, &lb);
        if (na == 1 && la[0] == '#')
            return true;
        if (nb == 1 && lb[0] == '#')
            return false; /* b goes deeper than a non-# level of a can */
        if (na == 1 && la[0] == '+')
            continue;
        if (na != nb || memcmp(la, lb, na) != 0)
            return false;
    }
    if (pa && strcmp(pa, "#") == 0)
        return true; /* "x/#" also matches "x" */
    return pa == NULL && pb == NULL;
}

/* A bounded text builder: appends stop at `max`; never fails but for memory. */
struct text {
    char *data;
    size_t used, max;
    bool failed;
};

static void text_add(struct text *text, const char *s, size_t n)
{
    if (text->failed || n == 0)
        return;
    if (text->data == NULL) {
        text->data = malloc(text->max + 1);
        if (text->data == NULL) {
            text->failed = true;
            return;
        }
    }
    if (n > text->max - text->used) {
        n = text->max - text->used;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--; /* keep UTF-8 whole */
    }
    memcpy(text->data + text->used, s, n);
    text->used += n;
}

static void text_str(struct text *text, const char *s)
{
    text_add(text, s, strlen(s));
}

static enum butler_status text_finish(struct text *text, char **out)
{
    text_add(text, "", 0);
    if (text->data == NULL && !text->failed)
        text->data = malloc(text->max + 1);
    if (text->failed || text->data == NULL) {
        free(text->data);
        return BUTLER_ERR_NOMEM;
    }
    text->data[text->used] = '\0';
    *out = text->data;
    return BUTLER_OK;
}

/* A member's string value, "" when absent: the senders print it as is. */
static const char *json_string(const cJSON *object, const char *name)
{
    const char *value = json_string_member(object, name);
    return value ? value : "";
}

/* "Label: value\n" when value is not empty. */
static void text_line(struct text *text, const char *label, const char *value)
{
    if (value == NULL || value[0] == '\0')
        return;
    text_str(text, label);
    text_str(text, value);
    text_str(text, "\n");
}

enum butler_status route_default_text(const cJSON *event, const char *topic, const char *payload,
                                      const char *qmc_url, const char *hub_url, char **out)
{
    struct text text = {.max = ROUTE_TEXT_MAX};
    const char *type = json_string(event, "type");
    static const struct {
        const char *type, *headline;
    } headlines[] = {
        {"failed", "Qlik Sense task failed"},
        {"aborted", "Qlik Sense task aborted"},
        {"success", "Qlik Sense task succeeded"},
        {"distribute", "Qlik Sense distribute task finished"},
        {"engine-reload-failed", "Qlik Sense engine reload failed"},
    };
    const char *headline = NULL;
    for (size_t i = 0; i < sizeof headlines / sizeof headlines[0]; i++)
        if (strcmp(type, headlines[i].type) == 0)
            headline = headlines[i].headline;
    if (headline == NULL) {
        /* Not a Sense event: say where it came from and show it. */
        text_str(&text, "Message on ");
        text_str(&text, topic);
        text_str(&text, ":\n");
        text_str(&text, payload ? payload : "");
        return text_finish(&text, out);
    }
    text_str(&text, headline);
    const char *task_name = json_string(event, "taskName");
    if (task_name[0]) {
        text_str(&text, ": ");
        text_str(&text, task_name);
    }
    text_str(&text, "\n");
    const char *app_name = json_string(event, "appName");
    const char *app_id = json_string(event, "appId");
    if (app_name[0] || app_id[0]) {
        text_str(&text, "App: ");
        text_str(&text, app_name[0] ? app_name : app_id);
        if (app_name[0] && app_id[0]) {
            text_str(&text, " (");
            text_str(&text, app_id);
            text_str(&text, ")");
        }
        text_str(&text, "\n");
    }
    text_line(&text, "Task id: ", json_string(event, "taskId"));
    text_line(&text, "Host: ", json_string(event, "host"));
    text_line(&text, "Time: ", json_string(event, "logTimestamp"));
    text_line(&text, "User: ", json_string(event, "user"));
    text_line(&text, "Log message: ", json_string(event, "message"));
    const cJSON *qrs = cJSON_GetObjectItemCaseSensitive(event, "qrs");
    const char *tail = json_string(qrs, "scriptLogTail");
    if (tail[0]) {
        text_str(&text, "Script log (last lines):\n");
        text_str(&text, tail);
        text_str(&text, "\n");
    }
    text_line(&text, "QMC: ", qmc_url);
    if (hub_url && hub_url[0]) {
        text_line(&text, "Hub: ", hub_url);
    }
    /* Drop the final newline. */
    if (text.used > 0 && text.data && text.data[text.used - 1] == '\n')
        text.used--;
    return text_finish(&text, out);
}

enum butler_status route_rate_key(const struct config_route *route, const cJSON *event,
                                  const char *payload, size_t payload_length, char **out)
{
    char *rendered = NULL;
    struct text text = {.max = ROUTE_KEY_MAX};
    const char *key_template = route->rate_limit_key ? route->rate_limit_key : "";
    if (template_render(key_template, event, payload, payload_length, ROUTE_KEY_MAX, &rendered,
                        NULL) != BUTLER_OK)
        return BUTLER_ERR_NOMEM;
    text_str(&text, route->name);
    text_str(&text, "\x1f");
    text_str(&text, rendered);
    free(rendered);
    return text_finish(&text, out);
}

/* Copy `s` into the message without CR and LF (header injection). */
static void text_header_value(struct text *text, const char *s)
{
    for (; *s; s++)
        if (*s != '\r' && *s != '\n')
            text_add(text, s, 1);
}

enum butler_status route_build_email(const char *from, const struct config_string_list *to,
                                     const char *subject, const char *text_body, uint64_t wall_ms,
                                     char **out)
{
    struct text text = {.max = EMAIL_MAX_BYTES};
    char date[64];
    time_t seconds = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&seconds, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    text_str(&text, "Date: ");
    text_str(&text, date);
    text_str(&text, "\r\nFrom: ");
    text_header_value(&text, from);
    text_str(&text, "\r\nTo: ");
    for (size_t i = 0; i < to->count; i++) {
        if (i)
            text_str(&text, ", ");
        text_header_value(&text, to->items[i]);
    }
    text_str(&text, "\r\nSubject: ");
    text_header_value(&text, subject);
    text_str(&text, "\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                    "Content-Transfer-Encoding: 8bit\r\n\r\n");
    /* Body: bare LF -> CRLF, and a leading '.' doubled (SMTP dot-stuffing is
     * done by libcurl, so only line endings here). */
    for (const char *p = text_body; *p; p++) {
        if (*p == '\n' && (p == text_body || p[-1] != '\r'))
            text_str(&text, "\r");
        text_add(&text, p, 1);
    }
    text_str(&text, "\r\n");
    return text_finish(&text, out);
}

/* ------------------------------------------------------------- metrics */

static void count_route(const char *route, const char *outcome)
{
    char labels[256];
    snprintf(labels, sizeof labels, "route=\"%s\",outcome=\"%s\"", route, outcome);
    metrics_count("butler_route_deliveries_total", labels,
                  "Route deliveries by route and outcome (delivered, failed, rate_limited, "
                  "condition)");
}

/* ----------------------------------------------------- delivery helpers */

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
static enum butler_status smtp_send(const struct butler_config *config,
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

static bool has_text(const char *s)
{
    return s && s[0];
}

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
static char *slack_body(const struct config_route *route, const char *text, bool block_kit)
{
    const struct butler_config *config = routes_runtime->config;
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "text", text);
    if (has_text(route->channel))
        cJSON_AddStringToObject(body, "channel", route->channel);
    if (has_text(route->username))
        cJSON_AddStringToObject(body, "username", route->username);
    if (has_text(route->icon_emoji))
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
        if (has_text(config->sense.qmc_url) || has_text(config->sense.hub_url)) {
            cJSON *actions = cJSON_CreateObject();
            cJSON_AddStringToObject(actions, "type", "actions");
            cJSON *elements = cJSON_AddArrayToObject(actions, "elements");
            if (has_text(config->sense.qmc_url))
                cJSON_AddItemToArray(elements, link_button("Open QMC", config->sense.qmc_url));
            if (has_text(config->sense.hub_url))
                cJSON_AddItemToArray(elements, link_button("Open Hub", config->sense.hub_url));
            cJSON_AddItemToArray(blocks, actions);
        }
    }
    char *printed = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    return printed;
}

/* Teams workflow webhook body: an Adaptive Card 1.3 in a "message". */
static char *teams_body(const char *title, const char *text)
{
    const struct butler_config *config = routes_runtime->config;
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
    if (has_text(title)) {
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
    if (has_text(config->sense.qmc_url) || has_text(config->sense.hub_url)) {
        cJSON *actions = cJSON_AddArrayToObject(card, "actions");
        const char *labels[] = {"Open QMC", "Open Hub"};
        const char *urls[] = {config->sense.qmc_url, config->sense.hub_url};
        for (size_t i = 0; i < 2; i++) {
            if (!has_text(urls[i]))
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

/* ----------------------------------------------------------- conditions */

/* Is custom property name=value set on the event's task? Uses the event's
 * qrs data when present, else asks QRS. BUTLER_OK = yes, DENIED = no. */
static enum butler_status check_condition(struct topic_worker *worker,
                                          const struct config_route *route, const cJSON *event,
                                          char *error, size_t error_size)
{
    const char *name = route->condition_custom_property_name;
    const char *value = route->condition_custom_property_value;
    if (!has_text(name))
        return BUTLER_OK;
    const cJSON *qrs = cJSON_GetObjectItemCaseSensitive(event, "qrs");
    const cJSON *properties = cJSON_GetObjectItemCaseSensitive(qrs, "taskCustomProperties");
    if (cJSON_IsArray(properties)) {
        const cJSON *property;
        cJSON_ArrayForEach(property, properties)
        {
            if (strcmp(json_string(property, "name"), name) == 0 &&
                strcmp(json_string(property, "value"), value ? value : "") == 0)
                return BUTLER_OK;
        }
        return BUTLER_ERR_DENIED;
    }
    const char *task_id = json_string(event, "taskId");
    if (!sense_is_guid(task_id, strlen(task_id))) {
        snprintf(error, error_size, "condition needs a taskId in the message");
        return BUTLER_ERR_DENIED;
    }
    if (worker->qrs == NULL) {
        snprintf(error, error_size, "condition needs QRS (qrs.url) to look the task up");
        return BUTLER_ERR_REMOTE;
    }
    char quoted_name[300], quoted_value[300], filter[FILTER_MAX];
    if (qrs_filter_quote(name, quoted_name, sizeof quoted_name) != BUTLER_OK ||
        qrs_filter_quote(value ? value : "", quoted_value, sizeof quoted_value) != BUTLER_OK)
        return BUTLER_ERR_TOO_LARGE;
    snprintf(filter, sizeof filter,
             "id eq %s and customProperties.definition.name eq %s and customProperties.value eq %s",
             task_id, quoted_name, quoted_value);
    cJSON *tasks = NULL;
    struct qrs_result result;
    enum butler_status status = qrs_find_tasks(worker->qrs, filter, &tasks, &result);
    if (status != BUTLER_OK) {
        snprintf(error, error_size, "condition lookup: %s", result.error);
        return BUTLER_ERR_REMOTE;
    }
    bool set = cJSON_GetArraySize(tasks) == 1;
    cJSON_Delete(tasks);
    return set ? BUTLER_OK : BUTLER_ERR_DENIED;
}

/* ------------------------------------------------------------ one route */

/* Deliver `message` through `route`. Worker thread. */
static void deliver_route(struct topic_worker *worker, const struct config_route *route,
                          const struct topic_message *message, const cJSON *event)
{
    const struct butler_config *config = routes_runtime->config;
    const char *payload = (const char *)message->payload;
    char error[ERROR_MAX] = "";
    char *text = NULL, *body = NULL, *key = NULL, *subject = NULL;
    int attempts = 0;
    enum butler_status status = check_condition(worker, route, event, error, sizeof error);
    if (status != BUTLER_OK) {
        if (status != BUTLER_ERR_DENIED)
            LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "route %s: %s", route->name, error);
        count_route(route->name, status == BUTLER_ERR_DENIED ? "condition" : "condition_error");
        goto out;
    }
    if (route->rate_limit_window_s > 0) {
        if (route_rate_key(route, event, payload, message->payload_length, &key) != BUTLER_OK)
            goto out;
        if (expiring_map_insert_new(rate_limits, key, NULL,
                                    (uint64_t)route->rate_limit_window_s * 1000u,
                                    NULL) != BUTLER_OK) {
            count_route(route->name, "rate_limited");
            goto out;
        }
    }
    bool templated = has_text(route->template_text);
    status = templated ? template_render(route->template_text, event, payload,
                                         message->payload_length, ROUTE_TEXT_MAX, &text, NULL)
                       : route_default_text(event, message->topic, payload, config->sense.qmc_url,
                                            config->sense.hub_url, &text);
    if (status != BUTLER_OK)
        goto out;
    const char *url = has_text(route->webhook_url) ? route->webhook_url : NULL;
    switch (route->to) {
    case CONFIG_ROUTE_SLACK:
        url = url ? url : config->slack.webhook_url;
        body = slack_body(route, text, !templated);
        break;
    case CONFIG_ROUTE_TEAMS:
        url = url ? url : config->teams.webhook_url;
        body = teams_body(route->title, text);
        break;
    case CONFIG_ROUTE_WEBHOOK:
        body = strdup(templated ? text : payload);
        break;
    case CONFIG_ROUTE_EMAIL:
    case CONFIG_ROUTE_MQTT:
        break;
    }
    if (route->to == CONFIG_ROUTE_MQTT) {
        const char *out_payload = templated ? text : payload;
        size_t out_length = templated ? strlen(text) : message->payload_length;
        status = publish_reliably(route->topic, out_payload, out_length,
                                  &(struct mqtt_publish_options){.qos = 1});
        attempts = 1;
        if (status != BUTLER_OK)
            snprintf(error, sizeof error, "publish to %s: %s", route->topic,
                     butler_status_str(status));
    } else if (route->to == CONFIG_ROUTE_EMAIL) {
        if (has_text(route->subject))
            status = template_render(route->subject, event, payload, message->payload_length, 900,
                                     &subject, NULL);
        else
            status = route_default_text(event, message->topic, payload, NULL, NULL, &subject);
        if (status == BUTLER_OK) {
            char *newline = strchr(subject, '\n');
            if (newline)
                *newline = '\0'; /* default subject: the headline */
            status = smtp_send(config, &route->recipients, subject, text, error, sizeof error,
                               &attempts);
        }
    } else if (!has_text(url)) {
        snprintf(error, sizeof error, "route %s has no webhook_url", route->name);
        status = BUTLER_ERR_INVALID;
    } else if (body == NULL) {
        status = BUTLER_ERR_NOMEM;
        snprintf(error, sizeof error, "out of memory");
    } else {
        const char *method =
            route->to == CONFIG_ROUTE_WEBHOOK && has_text(route->method) ? route->method : "POST";
        status = route_http_send_with_headers(worker->http, config, method, url, body,
                                              &route->headers, error, sizeof error, &attempts);
    }
    if (status == BUTLER_OK) {
        count_route(route->name, "delivered");
        goto out;
    }
    LOG_WARN(MODULE, "route %s: delivery failed for good after %d attempt(s): %s", route->name,
             attempts, error);
    count_route(route->name, "failed");
    publish_deadletter("routes", message->topic, (const unsigned char *)payload,
                       message->payload_length, error, attempts, message->received_wall_ms);
out:
    free(text);
    free(body);
    free(key);
    free(subject);
}

/* ----------------------------------------------------------- families */

static bool is_deadletter(const char *topic)
{
    const char *root = routes_runtime->config->mqtt.topic_root;
    size_t n = strlen(root);
    return strncmp(topic, root, n) == 0 && strncmp(topic + n, "/deadletter/", 12) == 0;
}

bool routes_wanted(const char *topic)
{
    if (routes_runtime == NULL || is_deadletter(topic))
        return false;
    const struct config_route_list *routes = &routes_runtime->config->routes;
    for (size_t i = 0; i < routes->count; i++)
        if (mqtt_topic_matches(routes->items[i].match, topic))
            return true;
    return false;
}

void routes_run(struct topic_worker *worker, struct topic_message *message)
{
    const struct config_route_list *routes = &routes_runtime->config->routes;
    cJSON *event = json_parse_exact((const char *)message->payload, message->payload_length, NULL);
    if (!is_deadletter(message->topic))
        for (size_t i = 0; i < routes->count; i++)
            if (mqtt_topic_matches(routes->items[i].match, message->topic))
                deliver_route(worker, &routes->items[i], message, event);
    topics_count("routes", "done");
    cJSON_Delete(event);
    topic_message_free(message);
}

/* Teams webhook chosen by a payload: a teams route's name, or a URL that is
 * configured already; never an arbitrary URL from the message. */
static const char *choose_teams_webhook(const char *wanted)
{
    const struct butler_config *config = routes_runtime->config;
    if (!has_text(wanted))
        return has_text(config->teams.webhook_url) ? config->teams.webhook_url : NULL;
    if (has_text(config->teams.webhook_url) && strcmp(wanted, config->teams.webhook_url) == 0)
        return config->teams.webhook_url;
    for (size_t i = 0; i < config->routes.count; i++) {
        const struct config_route *route = &config->routes.items[i];
        if (route->to != CONFIG_ROUTE_TEAMS)
            continue;
        const char *url =
            has_text(route->webhook_url) ? route->webhook_url : config->teams.webhook_url;
        if (has_text(url) && (strcmp(route->name, wanted) == 0 || strcmp(url, wanted) == 0))
            return url;
    }
    return NULL;
}

/* Common end of the command topics: count, dead-letter on failure. */
static void finish_command(const char *family, const struct topic_message *message,
                           enum butler_status status, const char *error, int attempts)
{
    if (status == BUTLER_OK) {
        topics_count(family, "delivered");
        return;
    }
    topics_count(family, "failed");
    LOG_WARN(MODULE, "%s: %s", message->topic, error);
    publish_deadletter("routes", message->topic, message->payload, message->payload_length, error,
                       attempts, message->received_wall_ms);
}

void routes_teams_run(struct topic_worker *worker, struct topic_message *message)
{
    char error[ERROR_MAX] = "";
    char *body = NULL;
    int attempts = 0;
    enum butler_status status = BUTLER_ERR_INVALID;
    cJSON *json = json_parse_exact((const char *)message->payload, message->payload_length, NULL);
    const char *text = (const char *)message->payload, *title = "", *wanted = NULL;
    if (cJSON_IsObject(json)) {
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, "text");
        if (!cJSON_IsString(item)) {
            snprintf(error, sizeof error, "JSON payload needs a \"text\" string");
            goto out;
        }
        text = item->valuestring;
        title = json_string(json, "title");
        wanted = json_string(json, "webhook");
    }
    const char *url = choose_teams_webhook(wanted);
    if (url == NULL) {
        snprintf(error, sizeof error, "no such Teams webhook configured");
        goto out;
    }
    body = teams_body(title, text);
    if (body == NULL) {
        status = BUTLER_ERR_NOMEM;
        snprintf(error, sizeof error, "out of memory");
        goto out;
    }
    status = route_http_send(worker->http, routes_runtime->config, "POST", url, body, error,
                             sizeof error, &attempts);
out:
    finish_command("teams", message, status, error, attempts);
    free(body);
    cJSON_Delete(json);
    topic_message_free(message);
}

void routes_email_run(struct topic_worker *worker, struct topic_message *message)
{
    (void)worker;
    char error[ERROR_MAX] = "";
    int attempts = 0;
    enum butler_status status = BUTLER_ERR_INVALID;
    char *addresses[EMAIL_RECIPIENTS_MAX];
    struct config_string_list to = {addresses, 0};
    cJSON *json = json_parse_exact((const char *)message->payload, message->payload_length, NULL);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(json, "to");
    const cJSON *subject = cJSON_GetObjectItemCaseSensitive(json, "subject");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(json, "text");
    if (!cJSON_IsArray(list) || !cJSON_IsString(subject) || !cJSON_IsString(text)) {
        snprintf(error, sizeof error, "expected {\"to\": [..], \"subject\", \"text\"}");
        goto out;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, list)
    {
        /* An address with CR/LF or '<>' could rewrite the SMTP envelope. */
        if (!cJSON_IsString(item) || strchr(item->valuestring, '@') == NULL ||
            strpbrk(item->valuestring, "\r\n<> ,;") != NULL || strlen(item->valuestring) > 254) {
            snprintf(error, sizeof error, "\"to\" must hold plain e-mail addresses");
            goto out;
        }
        if (to.count >= EMAIL_RECIPIENTS_MAX) {
            snprintf(error, sizeof error, "at most %d recipients", EMAIL_RECIPIENTS_MAX);
            goto out;
        }
        addresses[to.count++] = item->valuestring;
    }
    status = smtp_send(routes_runtime->config, &to, subject->valuestring, text->valuestring, error,
                       sizeof error, &attempts);
out:
    finish_command("email", message, status, error, attempts);
    cJSON_Delete(json);
    topic_message_free(message);
}

void routes_webhook_run(struct topic_worker *worker, struct topic_message *message)
{
    const struct butler_config *config = routes_runtime->config;
    char error[ERROR_MAX] = "";
    int attempts = 0;
    enum butler_status status = BUTLER_ERR_INVALID;
    const char *name = strrchr(message->topic, '/');
    name = name ? name + 1 : "";
    const struct config_route *route = NULL;
    for (size_t i = 0; i < config->routes.count && route == NULL; i++)
        if (config->routes.items[i].to == CONFIG_ROUTE_WEBHOOK &&
            strcmp(config->routes.items[i].name, name) == 0)
            route = &config->routes.items[i];
    cJSON *json = json_parse_exact((const char *)message->payload, message->payload_length, NULL);
    if (route == NULL || !has_text(route->webhook_url)) {
        snprintf(error, sizeof error, "no webhook route named \"%.100s\"", name);
        goto out;
    }
    if (json == NULL) {
        snprintf(error, sizeof error, "payload is not JSON");
        goto out;
    }
    status = route_http_send_with_headers(
        worker->http, config, has_text(route->method) ? route->method : "POST", route->webhook_url,
        (const char *)message->payload, &route->headers, error, sizeof error, &attempts);
out:
    finish_command("webhook", message, status, error, attempts);
    cJSON_Delete(json);
    topic_message_free(message);
}

/* ---------------------------------------------------------------- setup */

enum butler_status routes_setup(struct butler_runtime *runtime)
{
    const struct config_route_list *routes = &runtime->config->routes;
    enum butler_status status = BUTLER_OK;
    routes_runtime = runtime;
    if (routes->count == 0)
        return BUTLER_OK;
    if (routes->count > ROUTE_SUBSCRIPTIONS_MAX) {
        LOG_ERROR(MODULE, "more than %d routes", ROUTE_SUBSCRIPTIONS_MAX);
        return BUTLER_ERR_TOO_LARGE;
    }
    status = expiring_map_create(ROUTE_RATE_KEYS_MAX, &rate_limits);
    if (status != BUTLER_OK)
        return status;
    for (size_t i = 0; i < routes->count; i++) {
        const char *filter = routes->items[i].match;
        /* One subscription per distinct coverage: the broker would otherwise
         * deliver a message once per overlapping subscription. */
        bool covered = false;
        for (size_t j = 0; j < routes->count && !covered; j++) {
            if (j == i)
                continue;
            const char *other = routes->items[j].match;
            bool same = strcmp(other, filter) == 0;
            covered = same ? j < i : route_filter_covers(other, filter);
        }
        if (covered)
            continue;
        /* Shared: with share_group set, one instance of the fleet alerts. */
        status = mqtt_link_add_subscription(runtime->link, filter, true);
        if (status != BUTLER_OK)
            return status;
        LOG_INFO(MODULE, "route %s: subscribed %s", routes->items[i].name, filter);
    }
    return BUTLER_OK;
}

void routes_teardown(void)
{
    expiring_map_destroy(rate_limits);
    rate_limits = NULL;
    routes_runtime = NULL;
}
