/*
 * Routes (contract 3.3): send the messages of a topic filter to Slack, Teams,
 * a webhook, email or another MQTT topic; plus the command topics
 * <root>/teams/post, <root>/email/send and <root>/webhook/<name>.
 *
 * Each route's `match` is subscribed (through $share/<group>/ when
 * mqtt.share_group is set, so a fleet alerts once) as a set in which no two
 * filters overlap (route_subscription_plan): the broker sends one copy of a
 * message per matching subscription, so a message arrives once and runs
 * every matching route once. Per route: the condition
 * (custom property), the rate limit per rendered key, rendering, delivery
 * with retries, and <root>/deadletter/<topic> when delivery fails for good.
 * Counted in butler_route_deliveries_total{route,outcome}.
 *
 * The HTTP and dead-letter helpers are shared with topics/slack.c.
 */
#ifndef BUTLER_TOPICS_ROUTES_H
#define BUTLER_TOPICS_ROUTES_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/runtime.h"
#include "bridge/core/status.h"
#include "config/config.h"
#include "topics/message.h"

enum {
    ROUTE_TEXT_MAX = 30000,       /* rendered alert text */
    ROUTE_KEY_MAX = 512,          /* rendered rate-limit key */
    ROUTE_RATE_KEYS_MAX = 100000, /* keys remembered across all routes */
    ROUTE_SUBSCRIPTIONS_MAX = 256,
    ROUTE_HEADERS_MAX = 32,  /* extra headers of one route (the config allows no more) */
    ROUTE_FILTER_MAX = 1024, /* one subscription filter */
};

/* Start-up: subscribe every route filter on runtime->link. Needs config only. */
enum butler_status routes_setup(struct butler_runtime *runtime);
void routes_teardown(void);

/* Network thread: does any route want this topic? (cheap, no allocation) */
bool routes_wanted(const char *topic);

/* Worker entry points (own and free `message`). */
void routes_run(struct topic_worker *worker, struct topic_message *message);
void routes_teams_run(struct topic_worker *worker, struct topic_message *message);
void routes_email_run(struct topic_worker *worker, struct topic_message *message);
void routes_webhook_run(struct topic_worker *worker, struct topic_message *message);

/* ---- pure parts (unit-tested) ---- */

/* True when every topic matched by filter `b` is matched by filter `a`. */
bool route_filter_covers(const char *a, const char *b);

/* True when at least one topic is matched by both filters. */
bool route_filters_overlap(const char *a, const char *b);

/* The narrowest filter that covers both `a` and `b` (levels that differ
 * become '+', a '#' or a length difference ends it with '#'), into `out`.
 * BUTLER_ERR_TOO_LARGE when it does not fit in `size`. */
enum butler_status route_filter_join(const char *a, const char *b, char *out, size_t size);

/*
 * The filters to subscribe for `count` route filters so that no topic is
 * matched by two of them: the broker sends one copy of a message per
 * matching subscription, and each copy would run every matching route.
 * Duplicates and covered filters are dropped; overlapping ones are replaced
 * by their join unless `refuse(joined, a, b, context)` says no (e.g. the join
 * would reach Butler's own command topics); *unjoined counts such pairs,
 * which stay overlapping. out[0..*out_count) are malloc'd, owned by the
 * caller; out_max >= count or BUTLER_ERR_TOO_LARGE. On error nothing is
 * left allocated.
 */
enum butler_status route_subscription_plan(const char *const *filters, size_t count,
                                           bool (*refuse)(const char *joined, const char *a,
                                                          const char *b, void *context),
                                           void *context, char **out, size_t out_max,
                                           size_t *out_count, size_t *unjoined);

/*
 * A readable text for an event that has no template: what happened, task,
 * app, host, time, log message, and QMC/Hub links when the URLs are set.
 * `event` may be NULL or any JSON (then the topic and payload are shown).
 * *out is owned by the caller.
 */
enum butler_status route_default_text(const cJSON *event, const char *topic, const char *payload,
                                      const char *qmc_url, const char *hub_url, char **out);

/* The rate-limit key: route name, US, rendered rate_limit.key (empty key =
 * one budget per route). Bounded by ROUTE_KEY_MAX. *out owned by the caller. */
enum butler_status route_rate_key(const struct config_route *route, const cJSON *event,
                                  const char *payload, size_t payload_length, char **out);

/* The route condition's one rule: does `properties` (an array of
 * {"name","value"} or QRS's {"definition":{"name"},"value"}) hold one
 * property with this name and this value, both compared without regard to
 * letter case (as QRS compares strings)? `value` NULL means "". */
bool route_condition_matches(const cJSON *properties, const char *name, const char *value);

/* condition.tag: true when the event's appTags (Qlik Cloud) or qrs.taskTags /
 * qrs.appTags (Sense) hold `tag` exactly (names or {"name"} objects). Pure. */
bool route_condition_tag_matches(const cJSON *event, const char *tag);

/* RFC 5322 message for SMTP; CR/LF removed from header values so a payload
 * cannot inject headers. *out owned by the caller. */
enum butler_status route_build_email(const char *from, const struct config_string_list *to,
                                     const char *subject, const char *text, uint64_t wall_ms,
                                     char **out);

/* ---- shared delivery helpers (worker thread) ---- */

/* POST/PUT `body` (JSON) to `url` with the `retry` policy. On failure `error`
 * names the redacted URL and reason; *attempts_out gets the attempts made. */
enum butler_status route_http_send(struct http_client *http, const struct butler_config *config,
                                   const char *method, const char *url, const char *body,
                                   char *error, size_t error_size, int *attempts_out);

/* The same with a route's extra `headers` (may be NULL); a Content-Type among
 * them replaces the JSON default. */
enum butler_status route_http_send_with_headers(struct http_client *http,
                                                const struct butler_config *config,
                                                const char *method, const char *url,
                                                const char *body,
                                                const struct config_header_list *extra, char *error,
                                                size_t error_size, int *attempts_out);

#endif
