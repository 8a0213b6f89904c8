/*
 * Rules that span keys (a TLS certificate needs its key, a route to Slack
 * needs a webhook URL somewhere, ...), checked after every layer is applied,
 * pointing at where the offending key was set.
 *
 * Thread context: start-up only.
 */
#include "config/config_internal.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static const struct origin *origin_of(const struct loader *ld, const char *path)
{
    int index = config_find_key(&config_key_table, path);
    return index >= 0 ? &ld->state[index].value : NULL;
}

/* Checks within one route, and its name against the routes before it. */
void config_check_route(struct loader *ld, void *items, size_t index, const char *path,
                        const struct origin *at)
{
    struct config_route *routes = items;
    const struct config_route *route = &routes[index];
    char at_path[PATH_TEXT], name[ECHO_TEXT];

    if (route->to == CONFIG_ROUTE_MQTT && !route->topic[0]) {
        config_join_path(at_path, sizeof at_path, path, "topic");
        config_report(ld, at, at_path, "required when to is mqtt");
    }
    if (route->to == CONFIG_ROUTE_WEBHOOK && !route->webhook_url[0]) {
        config_join_path(at_path, sizeof at_path, path, "webhook_url");
        config_report(ld, at, at_path, "required when to is webhook");
    }
    if (route->to == CONFIG_ROUTE_INFLUXDB && !route->measurement[0]) {
        config_join_path(at_path, sizeof at_path, path, "measurement");
        config_report(ld, at, at_path, "required when to is influxdb");
    }
    if (route->to == CONFIG_ROUTE_INFLUXDB &&
        (route->rate_limit_window_s > 0 || route->condition_custom_property_name[0] ||
         route->condition_tag[0])) {
        /* Every matching message is one point: a time series with holes
         * would mislead; say so rather than ignore the keys. */
        config_join_path(at_path, sizeof at_path, path, "to");
        config_report(ld, at, at_path,
                      "influxdb routes take no rate_limit or condition: every message is a point");
    }
    if (route->to == CONFIG_ROUTE_INFLUXDB && route->fields.count == 0) {
        config_join_path(at_path, sizeof at_path, path, "fields");
        config_report(ld, at, at_path, "at least one field is required when to is influxdb");
    }
    if (route->to == CONFIG_ROUTE_EMAIL && route->recipients.count == 0) {
        config_join_path(at_path, sizeof at_path, path, "recipients");
        config_report(ld, at, at_path, "required when to is email");
    }
    if (!route->condition_custom_property_name[0] != !route->condition_custom_property_value[0]) {
        config_join_path(at_path, sizeof at_path, path, "condition.custom_property");
        config_report(ld, at, at_path, "needs both name and value");
    }
    for (size_t j = 0; j < index; j++) {
        if (strcmp(routes[j].name, route->name) == 0) {
            config_join_path(at_path, sizeof at_path, path, "name");
            config_report(ld, at, at_path, "duplicate route name %s (also used by routes[%zu])",
                          config_echo(name, sizeof name, route->name), j);
            break;
        }
    }
}

/* The first of two related keys that was set explicitly, for pointing at it. */
static const struct origin *either_origin(const struct loader *ld, const char *first,
                                          const char *second)
{
    const struct origin *a = origin_of(ld, first);
    const struct origin *b = origin_of(ld, second);
    if (a && (a->line || a->env[0]))
        return a;
    return b;
}

static bool listen_all_tls(const char *listen)
{
    for (const char *part = listen; part;) {
        const char *comma = strchr(part, ',');
        size_t length = comma ? (size_t)(comma - part) : strlen(part);
        if (length == 0 || part[length - 1] != 's')
            return false;
        part = comma ? comma + 1 : NULL;
    }
    return true;
}

/* smtp://[user@]host[:port]... names a loopback host: 127.x, [::1] or
 * localhost. */
static bool smtp_url_is_loopback(const char *url)
{
    const char *host = strstr(url, "://");
    if (host == NULL)
        return false;
    host += 3;
    size_t authority = strcspn(host, "/?#");
    const char *at = memchr(host, '@', authority);
    if (at)
        host = at + 1;
    size_t length = strcspn(host, ":/?#");
    if (host[0] == '[')
        return strncmp(host, "[::1]", 5) == 0;
    return (length > 4 && strncmp(host, "127.", 4) == 0) ||
           (length == 9 && strncasecmp(host, "localhost", 9) == 0);
}

static bool listen_has_tls(const char *listen)
{
    for (const char *part = listen; part;) {
        const char *comma = strchr(part, ',');
        size_t length = comma ? (size_t)(comma - part) : strlen(part);
        if (length > 0 && part[length - 1] == 's')
            return true;
        part = comma ? comma + 1 : NULL;
    }
    return false;
}

/* Rules that span keys, checked after every layer is applied. */
/* The secret travels as a URL path segment (QRS cannot add headers to its
 * callback), so it must need no escaping, and be long enough not to guess. */
static bool secret_is_url_safe(const char *secret)
{
    size_t length = strlen(secret);
    if (length < 16 || length > 256)
        return false;
    for (const char *p = secret; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.' && *p != '~')
            return false;
    return true;
}

static void validate_notifications(struct loader *ld, const struct butler_config *c)
{
    if (!c->qrs.notifications.enable)
        return;
    const struct origin *at = origin_of(ld, "qrs.notifications.enable");
    if (!c->qrs.url[0])
        config_report(ld, at, "qrs.notifications.enable", "needs qrs.url");
    if (!c->http.enable)
        config_report(ld, at, "qrs.notifications.enable",
                      "needs http.enable (QRS calls Butler back)");
    if (!c->qrs.notifications.callback_url[0])
        config_report(
            ld, at, "qrs.notifications.callback_url",
            "required when qrs.notifications.enable is true (the URL Sense reaches Butler at)");
    if (!secret_is_url_safe(c->qrs.notifications.secret))
        config_report(
            ld, origin_of(ld, "qrs.notifications.secret"), "qrs.notifications.secret",
            "expected 16..256 characters of A-Z a-z 0-9 - _ . ~ (it is a URL path segment)");
}

/* The monitors all read QRS, except the heartbeat, which needs its URL. */
static void validate_monitors(struct loader *ld, const struct butler_config *c)
{
    static const char *const qrs_users[] = {"license.monitor.enable", "license.release.enable",
                                            "sense.version.enable"};
    const bool enabled[] = {c->license.monitor.enable, c->license.release.enable,
                            c->sense.version.enable};
    for (size_t i = 0; i < sizeof qrs_users / sizeof qrs_users[0]; i++)
        if (enabled[i] && !c->qrs.url[0])
            config_report(ld, origin_of(ld, qrs_users[i]), qrs_users[i], "needs qrs.url");
    if (c->heartbeat.enable && !c->heartbeat.url[0])
        config_report(ld, origin_of(ld, "heartbeat.enable"), "heartbeat.url",
                      "required when heartbeat.enable is true");
}

void config_validate(struct loader *ld, const struct butler_config *c)
{
    const struct key_state *routes_state = &ld->state[config_find_key(&config_key_table, "routes")];
    char path[PATH_TEXT];

    if (c->mqtt.reconnect_min_ms > c->mqtt.reconnect_max_ms)
        config_report(ld, either_origin(ld, "mqtt.reconnect_min_ms", "mqtt.reconnect_max_ms"),
                      "mqtt.reconnect_min_ms", "must not exceed mqtt.reconnect_max_ms (%d)",
                      c->mqtt.reconnect_max_ms);
    if (c->retry.initial_backoff_ms > c->retry.max_backoff_ms)
        config_report(ld, either_origin(ld, "retry.initial_backoff_ms", "retry.max_backoff_ms"),
                      "retry.initial_backoff_ms", "must not exceed retry.max_backoff_ms (%d)",
                      c->retry.max_backoff_ms);
    if (!c->mqtt.tls.cert_file[0] != !c->mqtt.tls.key_file[0])
        config_report(ld, either_origin(ld, "mqtt.tls.cert_file", "mqtt.tls.key_file"),
                      "mqtt.tls.cert_file", "mqtt.tls.cert_file and mqtt.tls.key_file go together");
    if (!c->http.tls.cert_file[0] != !c->http.tls.key_file[0])
        config_report(ld, either_origin(ld, "http.tls.cert_file", "http.tls.key_file"),
                      "http.tls.cert_file", "http.tls.cert_file and http.tls.key_file go together");
    if (c->http.enable && listen_has_tls(c->http.listen) && !c->http.tls.cert_file[0])
        config_report(ld, origin_of(ld, "http.listen"), "http.listen",
                      "a TLS port (suffix 's') needs http.tls.cert_file and http.tls.key_file");
    /* Client certificates are only asked for on TLS ports: on a plain port the
     * "required" certificate would silently not be. */
    if (c->http.enable && c->http.tls.ca_file[0] && !listen_all_tls(c->http.listen))
        config_report(ld, origin_of(ld, "http.tls.ca_file"), "http.tls.ca_file",
                      "client certificates need every http.listen port to be TLS (suffix 's'); "
                      "a plain port would serve clients without one");
    if (c->http.enable && c->http.long_waits_max >= c->http.threads)
        config_report(ld, either_origin(ld, "http.long_waits_max", "http.threads"),
                      "http.long_waits_max", "must be below http.threads (%d)", c->http.threads);
    if (c->smtp.plaintext_auth_loopback && c->smtp.url[0] && !smtp_url_is_loopback(c->smtp.url))
        config_report(ld, origin_of(ld, "smtp.plaintext_auth_loopback"),
                      "smtp.plaintext_auth_loopback",
                      "only allowed when smtp.url names a loopback host (127.x, [::1], localhost)");

    if (c->influxdb.url[0] && c->influxdb.version == 2 &&
        (!c->influxdb.org[0] || !c->influxdb.bucket[0] || !c->influxdb.token[0]))
        config_report(ld, origin_of(ld, "influxdb.version"), "influxdb.version",
                      "version 2 needs influxdb.org, influxdb.bucket and influxdb.token");
    if (c->influxdb.node_measurements && !c->influxdb.url[0])
        config_report(ld, origin_of(ld, "influxdb.node_measurements"), "influxdb.node_measurements",
                      "needs influxdb.url");
    validate_notifications(ld, c);
    validate_monitors(ld, c);

    for (size_t i = 0; i < c->routes.count; i++) {
        const struct config_route *route = &c->routes.items[i];
        const struct origin *at = i < routes_state->item_count ? &routes_state->items[i] : NULL;
        snprintf(path, sizeof path, "routes[%zu].webhook_url", i);
        if (route->to == CONFIG_ROUTE_SLACK && !route->webhook_url[0] && !c->slack.webhook_url[0])
            config_report(ld, at, path, "required when to is slack and slack.webhook_url is empty");
        if (route->to == CONFIG_ROUTE_TEAMS && !route->webhook_url[0] && !c->teams.webhook_url[0])
            config_report(ld, at, path, "required when to is teams and teams.webhook_url is empty");
        if (route->to == CONFIG_ROUTE_INFLUXDB && !c->influxdb.url[0]) {
            snprintf(path, sizeof path, "routes[%zu].to", i);
            config_report(ld, at, path, "influxdb routes need influxdb.url");
        }
        if (route->to == CONFIG_ROUTE_EMAIL && !c->smtp.url[0]) {
            snprintf(path, sizeof path, "routes[%zu].to", i);
            config_report(ld, at, path, "email routes need smtp.url");
        }
    }
}
