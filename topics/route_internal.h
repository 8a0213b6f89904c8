/*
 * Shared between the route files (routes.c, route_text.c, route_send.c,
 * route_condition.c, route_commands.c); not part of the routes interface.
 * Everything here runs on worker threads unless said otherwise.
 */
#ifndef BUTLER_TOPICS_ROUTE_INTERNAL_H
#define BUTLER_TOPICS_ROUTE_INTERNAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "bridge/core/json.h"
#include "topics/routes.h"

enum {
    ROUTE_ERROR_MAX = 512, /* error texts that end up in dead letters */
    ROUTE_EMAIL_RECIPIENTS_MAX = 50,
};

/* The running configuration (set by routes_setup; read-only afterwards). */
const struct butler_config *routes_config(void);

/* A member's string value, "" when absent: the senders print it as is. */
static inline const char *route_json_string(const cJSON *object, const char *name)
{
    const char *value = json_string_member(object, name);
    return value ? value : "";
}

static inline bool route_has_text(const char *s)
{
    return s && s[0];
}

/* The e-mail for `to` with the `retry` policy (bridge/clients/smtp_client.c). */
enum butler_status route_smtp_send(const struct butler_config *config,
                                   const struct config_string_list *to, const char *subject,
                                   const char *body, char *error, size_t error_size,
                                   int *attempts_out);

/* Slack incoming-webhook body: "text", or Block Kit for default texts.
 * Returns a malloc'd string (caller frees) or NULL when out of memory. */
char *route_slack_body(const struct butler_config *config, const struct config_route *route,
                       const char *text, bool block_kit);

/* Teams workflow webhook body (Adaptive Card 1.3). Caller frees; NULL = no memory. */
char *route_teams_body(const struct butler_config *config, const char *title, const char *text);

/* Is the route's custom-property condition met by the event's task?
 * BUTLER_OK = yes, BUTLER_ERR_DENIED = no, anything else = undecided
 * (`error` says why). */
enum butler_status route_check_condition(struct topic_worker *worker,
                                         const struct config_route *route, const cJSON *event,
                                         char *error, size_t error_size);

#endif
