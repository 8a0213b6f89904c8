/*
 * Routes: subscription, per-route condition, rate limit, rendering and
 * delivery; see routes.h. Split by job: route_text.c (pure parts),
 * route_send.c (senders and bodies), route_condition.c, route_commands.c
 * (the teams/email/webhook command topics).
 *
 * Thread context: routes_setup/teardown at start-up and shutdown;
 * routes_wanted on the MQTT network thread (read-only table, no locks);
 * everything else on worker threads, each with its own HTTP and QRS client.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "bridge/core/clock.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/link/mqtt_link.h"
#include "bridge/store/expiring_map.h"
#include "topics/publish.h"
#include "topics/route_influxdb.h"
#include "topics/route_influxdb_node.h"
#include "topics/route_internal.h"
#include "topics/template.h"
#include "topics/topics.h"

#define MODULE "routes"

static struct butler_runtime *routes_runtime;
static struct expiring_map *rate_limits;

const struct butler_config *routes_config(void)
{
    return routes_runtime->config;
}

/* ------------------------------------------------------------- metrics */

static void count_route(const char *route, const char *outcome)
{
    char labels[256];
    snprintf(labels, sizeof labels, "route=\"%s\",outcome=\"%s\"", route, outcome);
    metrics_count("butler_route_deliveries_total", labels,
                  "Route deliveries by route and outcome (delivered, failed, rate_limited, "
                  "condition, condition_undecided)");
}

/* ------------------------------------------------------- rate-limit keys */

/* A key is "pending" while its delivery is in flight and "sent" once it was
 * delivered; a failed delivery removes it. Only a delivered alert holds the
 * key for the window, and a burst of one key still sends one. */
static const char RATE_KEY_PENDING[] = "pending";
static const char RATE_KEY_SENT[] = "sent";

enum {
    RATE_KEY_POLL_MS = 50,
    RATE_KEY_WAIT_MAX_MS = 120000, /* longer than any delivery's retries */
    ROUTE_NOTE_MAX = 300,          /* "route " and a route name */
};

/*
 * Worker thread. True when this delivery may go (the key is now pending and
 * ours to mark sent or remove); false when an alert with this key was
 * delivered within the window. While another delivery of the key is in
 * flight, waits (bounded) for its outcome.
 */
static bool rate_key_take(const char *key, uint64_t window_ms)
{
    uint64_t give_up = clock_monotonic_ms() + RATE_KEY_WAIT_MAX_MS;
    for (;;) {
        char *value = NULL;
        if (expiring_map_insert_new(rate_limits, key, RATE_KEY_PENDING, window_ms, &value) ==
            BUTLER_OK)
            return true;
        bool sent = value == NULL || strcmp(value, RATE_KEY_SENT) == 0;
        free(value);
        if (sent)
            return false;
        if (clock_monotonic_ms() >= give_up || butler_runtime_stopping()) {
            /* The other delivery is stuck: send this one rather than lose it. */
            expiring_map_put(rate_limits, key, RATE_KEY_PENDING, window_ms, NULL);
            return true;
        }
        struct timespec pause = {0, RATE_KEY_POLL_MS * 1000000L};
        nanosleep(&pause, NULL);
    }
}

/* ------------------------------------------------- delivery notes (spool) */

/*
 * Each route that delivered a spooled message, or dead-lettered it, notes
 * "route <name>" with it, so a replay after a restart (a crash between two
 * routes, a lost PUBACK and the broker's resend matched to the spooled copy)
 * runs only the routes that had not finished. What remains is in
 * docs/guarantees.md: a call that timed out after the receiver took it.
 */
static void note_route_done(struct topic_message *message, const struct config_route *route)
{
    char note[ROUTE_NOTE_MAX];
    snprintf(note, sizeof note, "route %s", route->name);
    if (topic_message_note(message, note) != BUTLER_OK)
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                        "route %s: cannot note the delivery in the spool; a replay after a "
                        "crash would send it again",
                        route->name);
}

static bool route_done_before(const struct topic_message *message, const struct config_route *route)
{
    for (size_t i = 0; i < message->note_count; i++)
        if (strncmp(message->notes[i], "route ", 6) == 0 &&
            strcmp(message->notes[i] + 6, route->name) == 0)
            return true;
    return false;
}

/* ------------------------------------------------------------ one route */

/* The body a route's template is rendered into: Slack text, a JSON body
 * (webhooks without a Content-Type of their own, or one naming JSON; MQTT
 * templates that start like JSON), else plain text. */
static enum template_body body_for(const struct config_route *route)
{
    switch (route->to) {
    case CONFIG_ROUTE_SLACK:
        return TEMPLATE_BODY_SLACK;
    case CONFIG_ROUTE_WEBHOOK:
        for (size_t i = 0; i < route->headers.count; i++)
            if (strcasecmp(route->headers.items[i].name, "Content-Type") == 0)
                return strstr(route->headers.items[i].value, "json") ? TEMPLATE_BODY_JSON
                                                                     : TEMPLATE_BODY_PLAIN;
        return TEMPLATE_BODY_JSON;
    case CONFIG_ROUTE_MQTT:
        return template_looks_like_json(route->template_text) ? TEMPLATE_BODY_JSON
                                                              : TEMPLATE_BODY_PLAIN;
    default:
        return TEMPLATE_BODY_PLAIN;
    }
}

/* Deliver `message` through `route`. Worker thread. */
static void deliver_route(struct topic_worker *worker, const struct config_route *route,
                          struct topic_message *message, const cJSON *event)
{
    const struct butler_config *config = routes_runtime->config;
    const char *payload = (const char *)message->payload;
    char error[ROUTE_ERROR_MAX] = "";
    char *text = NULL, *body = NULL, *key = NULL, *subject = NULL;
    int attempts = 0;
    bool delivered = false;
    enum butler_status status = route_check_condition(worker, route, event, error, sizeof error);
    if (status == BUTLER_ERR_DENIED) {
        count_route(route->name, "condition");
        goto out;
    }
    if (status != BUTLER_OK) {
        /* Undecided (QRS down after the client's retries): never dropped,
         * the dead letter says why. */
        char reason[ROUTE_ERROR_MAX];
        snprintf(reason, sizeof reason, "route %s: condition undecided: %s", route->name, error);
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "%s", reason);
        count_route(route->name, "condition_undecided");
        publish_deadletter("routes", message->topic, (const unsigned char *)payload,
                           message->payload_length, reason, 1, message->received_wall_ms);
        note_route_done(message, route);
        goto out;
    }
    if (route->rate_limit_window_s > 0) {
        if (route_rate_key(route, event, payload, message->payload_length, &key) != BUTLER_OK)
            goto out;
        if (!rate_key_take(key, (uint64_t)route->rate_limit_window_s * 1000u)) {
            count_route(route->name, "rate_limited");
            free(key);
            key = NULL; /* not ours: never released below */
            goto out;
        }
    }
    bool templated = route_has_text(route->template_text);
    if (templated) {
        /* Values escaped for the body they go into (template.h). */
        struct template_options options = {.body = body_for(route)};
        status = template_render_for(route->template_text, &options, event, payload,
                                     message->payload_length, ROUTE_TEXT_MAX, &text, NULL);
    } else {
        status = route_default_text(event, message->topic, payload, config->sense.qmc_url,
                                    config->sense.hub_url, &text);
    }
    if (status != BUTLER_OK)
        goto out;
    const char *url = route_has_text(route->webhook_url) ? route->webhook_url : NULL;
    switch (route->to) {
    case CONFIG_ROUTE_SLACK:
        url = url ? url : config->slack.webhook_url;
        body = route_slack_body(config, route, text, !templated);
        break;
    case CONFIG_ROUTE_TEAMS:
        url = url ? url : config->teams.webhook_url;
        body = route_teams_body(config, route->title, text);
        break;
    case CONFIG_ROUTE_WEBHOOK:
        body = strdup(templated ? text : payload);
        break;
    case CONFIG_ROUTE_EMAIL:
    case CONFIG_ROUTE_MQTT:
    case CONFIG_ROUTE_INFLUXDB: /* not here: routes_run hands them to route_influxdb.c */
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
        if (route_has_text(route->subject))
            status = template_render(route->subject, event, payload, message->payload_length, 900,
                                     &subject, NULL);
        else
            status = route_default_text(event, message->topic, payload, NULL, NULL, &subject);
        if (status == BUTLER_OK) {
            char *newline = strchr(subject, '\n');
            if (newline)
                *newline = '\0'; /* default subject: the headline */
            status = route_smtp_send(config, &route->recipients, subject, text, error, sizeof error,
                                     &attempts);
        }
    } else if (!route_has_text(url)) {
        snprintf(error, sizeof error, "route %s has no webhook_url", route->name);
        status = BUTLER_ERR_INVALID;
    } else if (body == NULL) {
        status = BUTLER_ERR_NOMEM;
        snprintf(error, sizeof error, "out of memory");
    } else {
        const char *method = route->to == CONFIG_ROUTE_WEBHOOK && route_has_text(route->method)
                                 ? route->method
                                 : "POST";
        status = route_http_send_with_headers(worker->http, config, method, url, body,
                                              &route->headers, error, sizeof error, &attempts);
    }
    if (status == BUTLER_OK) {
        if (key)
            expiring_map_put(rate_limits, key, RATE_KEY_SENT,
                             (uint64_t)route->rate_limit_window_s * 1000u, NULL);
        count_route(route->name, "delivered");
        note_route_done(message, route);
        delivered = true;
        goto out;
    }
    LOG_WARN(MODULE, "route %s: delivery failed for good after %d attempt(s): %s", route->name,
             attempts, error);
    count_route(route->name, "failed");
    /* Name the route: with overlapping filters one message may have several
     * dead letters, and each says which route did not deliver. */
    char reason[ROUTE_ERROR_MAX + 64];
    snprintf(reason, sizeof reason, "route %s: %s", route->name, error);
    publish_deadletter("routes", message->topic, (const unsigned char *)payload,
                       message->payload_length, reason, attempts, message->received_wall_ms);
    note_route_done(message, route);
out:
    if (key && !delivered)
        expiring_map_remove(rate_limits, key); /* not delivered: the next one may go */
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
    return route_influxdb_node_wanted(routes_runtime->config, topic);
}

void routes_run(struct topic_worker *worker, struct topic_message *message)
{
    const struct config_route_list *routes = &routes_runtime->config->routes;
    cJSON *event = json_parse_exact((const char *)message->payload, message->payload_length, NULL);
    bool keep = false; /* a point waits in InfluxDB's open batch: that batch finishes it */
    if (!is_deadletter(message->topic))
        for (size_t i = 0; i < routes->count; i++) {
            const struct config_route *route = &routes->items[i];
            if (!mqtt_topic_matches(route->match, message->topic))
                continue;
            if (route->to == CONFIG_ROUTE_INFLUXDB) {
                keep |= route_influxdb_take(route, message, event);
            } else if (message->replay && route_done_before(message, route)) {
                count_route(route->name, "replay_skipped"); /* done before the restart */
            } else {
                deliver_route(worker, route, message, event);
            }
        }
    if (!is_deadletter(message->topic))
        keep |= route_influxdb_node_take(routes_runtime->config, message, event);
    if (keep)
        topic_message_keep(message);
    topics_count("routes", "done");
    cJSON_Delete(event);
    topic_message_free(message);
}

/* ---------------------------------------------------------------- setup */

/* A join may not reach a family's topics that neither route filter reached:
 * those messages would then come twice and run the command twice. */
static bool join_reaches_commands(const char *joined, const char *a, const char *b, void *context)
{
    (void)context;
    return topics_family_overlaps(joined) && !topics_family_overlaps(a) &&
           !topics_family_overlaps(b);
}

enum butler_status routes_setup(struct butler_runtime *runtime)
{
    const struct config_route_list *routes = &runtime->config->routes;
    enum butler_status status = BUTLER_OK;
    const char *filters[ROUTE_SUBSCRIPTIONS_MAX];
    char *plan[ROUTE_SUBSCRIPTIONS_MAX] = {0};
    size_t plan_count = 0, unjoined = 0;
    /* influxdb.node_measurements subscribes like routes do (one plan, so no
     * two subscriptions overlap). */
    char node_filters[INFLUXDB_NODE_FILTERS][INFLUXDB_NODE_FILTER_MAX];
    size_t node_count =
        route_influxdb_node_filters(runtime->config, node_filters, INFLUXDB_NODE_FILTERS);
    routes_runtime = runtime;
    status = route_influxdb_setup(runtime);
    if (status != BUTLER_OK || routes->count + node_count == 0)
        return status;
    if (routes->count + node_count > ROUTE_SUBSCRIPTIONS_MAX) {
        LOG_ERROR(MODULE, "more than %d routes", ROUTE_SUBSCRIPTIONS_MAX);
        return BUTLER_ERR_TOO_LARGE;
    }
    status = expiring_map_create_named("route_rate_limits", ROUTE_RATE_KEYS_MAX, &rate_limits);
    if (status != BUTLER_OK)
        return status;
    for (size_t i = 0; i < routes->count; i++)
        filters[i] = routes->items[i].match;
    for (size_t i = 0; i < node_count; i++)
        filters[routes->count + i] = node_filters[i];
    /* No two subscriptions may match one topic: the broker sends a copy per
     * matching subscription and each copy would run every matching route.
     * routes_wanted/routes_run filter per route, so a wider subscription
     * only costs the messages no route wants (counted "unknown"). */
    status = route_subscription_plan(filters, routes->count + node_count, join_reaches_commands,
                                     NULL, plan, ROUTE_SUBSCRIPTIONS_MAX, &plan_count, &unjoined);
    if (status != BUTLER_OK)
        goto out;
    if (unjoined > 0)
        LOG_WARN(MODULE,
                 "%zu pair(s) of route filters overlap and cannot be merged without reaching "
                 "Butler's command topics: a message matching both is delivered twice",
                 unjoined);
    for (size_t i = 0; i < plan_count; i++) {
        /* Shared: with share_group set, one instance of the fleet alerts. */
        status = mqtt_link_add_subscription(runtime->link, plan[i], true);
        if (status != BUTLER_OK)
            goto out;
        LOG_INFO(MODULE, "routes: subscribed %s", plan[i]);
    }
out:
    for (size_t i = 0; i < plan_count; i++)
        free(plan[i]);
    return status;
}

void routes_teardown(void)
{
    expiring_map_destroy(rate_limits);
    rate_limits = NULL;
    routes_runtime = NULL;
}
