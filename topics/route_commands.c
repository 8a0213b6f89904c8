/*
 * The command topics <root>/teams/post, <root>/email/send and
 * <root>/webhook/<name> (contract 3.3). Worker threads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/core/log.h"
#include "topics/publish.h"
#include "topics/route_internal.h"

#define MODULE "routes"

/* Teams webhook chosen by a payload: a teams route's name, or a URL that is
 * configured already; never an arbitrary URL from the message. */
static const char *choose_teams_webhook(const char *wanted)
{
    const struct butler_config *config = routes_config();
    if (!route_has_text(wanted))
        return route_has_text(config->teams.webhook_url) ? config->teams.webhook_url : NULL;
    if (route_has_text(config->teams.webhook_url) && strcmp(wanted, config->teams.webhook_url) == 0)
        return config->teams.webhook_url;
    for (size_t i = 0; i < config->routes.count; i++) {
        const struct config_route *route = &config->routes.items[i];
        if (route->to != CONFIG_ROUTE_TEAMS)
            continue;
        const char *url =
            route_has_text(route->webhook_url) ? route->webhook_url : config->teams.webhook_url;
        if (route_has_text(url) && (strcmp(route->name, wanted) == 0 || strcmp(url, wanted) == 0))
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
    char error[ROUTE_ERROR_MAX] = "";
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
        title = route_json_string(json, "title");
        wanted = route_json_string(json, "webhook");
    }
    const char *url = choose_teams_webhook(wanted);
    if (url == NULL) {
        snprintf(error, sizeof error, "no such Teams webhook configured");
        goto out;
    }
    body = route_teams_body(routes_config(), title, text);
    if (body == NULL) {
        status = BUTLER_ERR_NOMEM;
        snprintf(error, sizeof error, "out of memory");
        goto out;
    }
    status = route_http_send(worker->http, routes_config(), "POST", url, body, error, sizeof error,
                             &attempts);
out:
    finish_command("teams", message, status, error, attempts);
    free(body);
    cJSON_Delete(json);
    topic_message_free(message);
}

void routes_email_run(struct topic_worker *worker, struct topic_message *message)
{
    (void)worker;
    char error[ROUTE_ERROR_MAX] = "";
    int attempts = 0;
    enum butler_status status = BUTLER_ERR_INVALID;
    char *addresses[ROUTE_EMAIL_RECIPIENTS_MAX];
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
        if (to.count >= ROUTE_EMAIL_RECIPIENTS_MAX) {
            snprintf(error, sizeof error, "at most %d recipients", ROUTE_EMAIL_RECIPIENTS_MAX);
            goto out;
        }
        addresses[to.count++] = item->valuestring;
    }
    status = route_smtp_send(routes_config(), &to, subject->valuestring, text->valuestring, error,
                             sizeof error, &attempts);
out:
    finish_command("email", message, status, error, attempts);
    cJSON_Delete(json);
    topic_message_free(message);
}

void routes_webhook_run(struct topic_worker *worker, struct topic_message *message)
{
    const struct butler_config *config = routes_config();
    char error[ROUTE_ERROR_MAX] = "";
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
    if (route == NULL || !route_has_text(route->webhook_url)) {
        snprintf(error, sizeof error, "no webhook route named \"%.100s\"", name);
        goto out;
    }
    if (json == NULL) {
        snprintf(error, sizeof error, "payload is not JSON");
        goto out;
    }
    status = route_http_send_with_headers(worker->http, config,
                                          route_has_text(route->method) ? route->method : "POST",
                                          route->webhook_url, (const char *)message->payload,
                                          &route->headers, error, sizeof error, &attempts);
out:
    finish_command("webhook", message, status, error, attempts);
    cJSON_Delete(json);
    topic_message_free(message);
}
