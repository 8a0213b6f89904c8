/*
 * The key table: every configuration key Butler reads, with its type, range,
 * default, the check its values must pass and a one-line description. The
 * loader (load.c), the environment layer (overrides.c), the printer (print.c)
 * and the generated reference (reference.c, docs/configuration.md) are all
 * driven by these tables, so a key added here is loadable, overridable,
 * printable, documented and released without touching any other file.
 *
 * To add a key: a field in struct butler_config (config.h), one line in
 * config_keys below (in its section, sections contiguous) with a `.doc`, then
 * regenerate docs/configuration.md (`butler --config-reference markdown`).
 */
#include "config/config_internal.h"

#include "bridge/clients/engine.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const log_level_names[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_format_names[] = {"text", "json", NULL};
static const char *const metrics_auth_names[] = {"token", "open", NULL};
static const char *const route_to_names[] = {"slack", "teams",    "email", "webhook",
                                             "mqtt",  "influxdb", NULL};
static const char *const http_method_names[] = {"POST", "PUT", NULL};
/* "" = take qrs.verify_peer. */
static const char *const inherit_bool_names[] = {"", "true", "false", NULL};
static const char *const heartbeat_method_names[] = {"GET", "POST", NULL};
static const char *const user_flag_rule_names[] = {"ignore", "yes", "no", NULL};

/* ---- value checks ---- */

static bool has_control(const char *value)
{
    for (const unsigned char *p = (const unsigned char *)value; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return true;
    return false;
}

static bool is_digits(const char *text, size_t length)
{
    if (length == 0)
        return false;
    for (size_t i = 0; i < length; i++)
        if (text[i] < '0' || text[i] > '9')
            return false;
    return true;
}

static bool is_port(const char *text, size_t length)
{
    if (length > 5 || !is_digits(text, length))
        return false;
    long port = 0;
    for (size_t i = 0; i < length; i++)
        port = port * 10 + (text[i] - '0');
    return port >= 1 && port <= 65535;
}

static const char *check_not_empty(const char *value)
{
    return *value && !has_control(value) ? NULL
                                         : "expected a non-empty string without control characters";
}

static const char *check_single_line(const char *value)
{
    return has_control(value) ? "expected a single line without control characters" : NULL;
}

/* '#' only as the whole last level, '+' only as a whole level (MQTT 4.7.1). */
static const char *check_topic_filter(const char *value)
{
    static const char message[] =
        "expected an MQTT topic filter ('+' alone in a level, '#' alone in the last level)";
    if (!*value)
        return message;
    const char *level = value;
    for (;;) {
        const char *slash = strchr(level, '/');
        size_t length = slash ? (size_t)(slash - level) : strlen(level);
        if (memchr(level, '#', length) && (length != 1 || slash))
            return message;
        if (memchr(level, '+', length) && length != 1)
            return message;
        if (!slash)
            return NULL;
        level = slash + 1;
    }
}

static const char *check_filter_or_empty(const char *value)
{
    return *value ? check_topic_filter(value) : NULL;
}

static const char *check_topic_or_empty(const char *value)
{
    return strpbrk(value, "+#") ? "expected an MQTT topic without '+' or '#'" : NULL;
}

static const char *check_topic_root(const char *value)
{
    size_t length = strlen(value);
    if (length == 0 || strpbrk(value, "+#") || value[0] == '$' || value[0] == '/' ||
        value[length - 1] == '/')
        return "expected a topic prefix without '+', '#', a leading '$' or a leading or trailing "
               "'/'";
    return NULL;
}

static const char *check_share_group(const char *value)
{
    return strpbrk(value, "/+#") ? "expected a share group name without '/', '+' or '#'" : NULL;
}

/* file.* directories: absolute, without "." or ".." components or Windows
 * forms, so the lexical checks in topics/file.c compare like with like. */
static const char *check_directory(const char *value)
{
    static const char message[] =
        "expected an absolute directory (starting with /) without \\, control characters, "
        "\".\" or \"..\" components, at most 4095 bytes";
    size_t length = strlen(value);
    if (length == 0 || length > 4095 || value[0] != '/' || has_control(value) ||
        strchr(value, '\\'))
        return message;
    for (const char *p = value; *p;) {
        while (*p == '/')
            p++;
        size_t n = strcspn(p, "/");
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return message;
        p += n;
    }
    return NULL;
}

static const char *check_directory_or_empty(const char *value)
{
    return *value ? check_directory(value) : NULL;
}

/* file.node is a topic level (<root>/file/<node>/<op>) next to the operation
 * names, so it must not be one of them. */
static const char *check_file_node(const char *value)
{
    static const char *const reserved[] = {"copy", "move", "delete", "mkdir", "result", NULL};
    if (strlen(value) > 64)
        return "expected at most 64 characters of A-Z a-z 0-9 - _";
    for (const char *p = value; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
            return "expected at most 64 characters of A-Z a-z 0-9 - _";
    for (size_t i = 0; reserved[i]; i++)
        if (strcmp(value, reserved[i]) == 0)
            return "must not be copy, move, delete, mkdir or result (those are topic levels)";
    return NULL;
}

/* Route names become topic levels (<root>/webhook/<name>). */
static const char *check_route_name(const char *value)
{
    if (!*value || strpbrk(value, "/+#") || has_control(value))
        return "expected a non-empty name without '/', '+', '#' or control characters";
    return NULL;
}

static bool has_scheme(const char *value, const char *scheme)
{
    size_t length = strlen(scheme);
    return strncasecmp(value, scheme, length) == 0 && value[length] != '\0';
}

static const char *check_http_url(const char *value)
{
    if (!*value)
        return NULL;
    if ((has_scheme(value, "http://") || has_scheme(value, "https://")) && !has_control(value) &&
        !strchr(value, ' '))
        return NULL;
    return "expected an http:// or https:// URL, or \"\"";
}

static const char *check_engine_url(const char *value)
{
    char host[256];
    int port = 0;
    bool tls = false;
    if (!*value)
        return NULL;
    if (!has_control(value) && !strchr(value, ' ') &&
        engine_parse_url(value, host, sizeof host, &port, &tls) == BUTLER_OK)
        return NULL;
    return "expected a wss:// (or ws://, https://) URL with a host and an optional port, or \"\"";
}

static const char *check_smtp_url(const char *value)
{
    if (!*value)
        return NULL;
    if ((has_scheme(value, "smtp://") || has_scheme(value, "smtps://")) && !has_control(value) &&
        !strchr(value, ' '))
        return NULL;
    return "expected an smtp:// or smtps:// URL, or \"\"";
}

/* Deliberately loose: only what keeps an address from breaking SMTP framing. */
static const char *check_email(const char *value)
{
    const char *at = strchr(value, '@');
    if (!at || at == value || at[1] == '\0' || strchr(at + 1, '@') || has_control(value) ||
        strpbrk(value, " <>,;\""))
        return "expected an e-mail address (name@example.com)";
    return NULL;
}

static const char *check_email_or_empty(const char *value)
{
    return *value ? check_email(value) : NULL;
}

static const char *check_guid(const char *value)
{
    static const char message[] = "expected a task id (GUID, 8-4-4-4-12 hex digits)";
    if (strlen(value) != 36)
        return message;
    for (size_t i = 0; i < 36; i++) {
        char c = value[i];
        bool hyphen = i == 8 || i == 13 || i == 18 || i == 23;
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (hyphen ? c != '-' : !hex)
            return message;
    }
    return NULL;
}

static const char *check_ip_or_cidr(const char *value)
{
    static const char message[] = "expected an IP address or CIDR block (e.g. 10.0.0.0/8)";
    char address[INET6_ADDRSTRLEN + 1];
    unsigned char binary[16];
    const char *slash = strchr(value, '/');
    size_t length = slash ? (size_t)(slash - value) : strlen(value);
    int bits;
    if (length == 0 || length >= sizeof address)
        return message;
    memcpy(address, value, length);
    address[length] = '\0';
    if (inet_pton(AF_INET, address, binary) == 1)
        bits = 32;
    else if (inet_pton(AF_INET6, address, binary) == 1)
        bits = 128;
    else
        return message;
    if (slash) {
        size_t prefix_length = strlen(slash + 1);
        if (prefix_length > 3 || !is_digits(slash + 1, prefix_length))
            return message;
        long prefix = strtol(slash + 1, NULL, 10);
        if (prefix > bits)
            return message;
    }
    return NULL;
}

static const char *check_host_port(const char *value)
{
    const char *colon = strrchr(value, ':');
    if (!colon || colon == value || has_control(value) || !is_port(colon + 1, strlen(colon + 1)))
        return "expected host:port with a port 1..65535";
    return NULL;
}

static const char *check_host_port_or_empty(const char *value)
{
    return *value ? check_host_port(value) : NULL;
}

/* CivetWeb listening_ports: comma-separated [host:]port with an optional s/r suffix. */
static const char *check_listen(const char *value);

/* Empty, or plain [host:]port entries (no TLS suffix). */
static const char *check_health_listen(const char *value)
{
    if (value[0] == '\0')
        return NULL;
    static const char message[] = "expected [host:]port entries without a TLS suffix, or \"\"";
    if (check_listen(value) != NULL)
        return message;
    for (const char *part = value; part; part = strchr(part, ',') ? strchr(part, ',') + 1 : NULL) {
        size_t length = strcspn(part, ",");
        if (length > 0 && (part[length - 1] == 's' || part[length - 1] == 'r'))
            return message;
    }
    return NULL;
}

/* A browser origin: scheme://host[:port], nothing after. */
static const char *check_origin(const char *value)
{
    const char *host = NULL;
    if (has_scheme(value, "http://"))
        host = value + 7;
    else if (has_scheme(value, "https://"))
        host = value + 8;
    if (host == NULL || host[0] == '\0' || has_control(value) || strpbrk(host, "/?# @") != NULL)
        return "expected an origin: http(s)://host[:port] without a path";
    return NULL;
}

static const char *check_listen(const char *value)
{
    static const char message[] =
        "expected [host:]port entries (port 1..65535, suffix 's' for TLS) separated by commas";
    const char *part = value;
    if (has_control(value))
        return message;
    for (;;) {
        const char *comma = strchr(part, ',');
        size_t length = comma ? (size_t)(comma - part) : strlen(part);
        if (length > 0 && (part[length - 1] == 's' || part[length - 1] == 'r'))
            length--;
        const char *port = part;
        for (size_t i = 0; i < length; i++)
            if (part[i] == ':')
                port = part + i + 1;
        if (port != part && port - 1 == part)
            return message; /* ":8080" */
        if (!is_port(port, length - (size_t)(port - part)))
            return message;
        if (!comma)
            return NULL;
        part = comma + 1;
    }
}

static const char *check_token(const char *value)
{
    if (!*value || has_control(value) || strchr(value, ' '))
        return "expected a non-empty token without spaces or control characters";
    return NULL;
}

/* What each check accepts, in the words of the reference (docs/configuration.md).
 * A check missing here makes `butler --config-reference` fail, so a new check
 * cannot reach the documentation undescribed. */
static const char *check_account_id(const char *value)
{
    if (strlen(value) <= 20 && is_digits(value, strlen(value)))
        return NULL;
    return "expected a New Relic account id (digits)";
}

static const struct {
    value_check check;
    const char *text;
} check_texts[] = {
    {check_not_empty, "non-empty, one line"},
    {check_single_line, "one line"},
    {check_topic_filter, "MQTT topic filter"},
    {check_topic_or_empty, "MQTT topic without + or #"},
    {check_filter_or_empty, "empty, or an MQTT topic filter"},
    {check_topic_root, "topic prefix without +, #, a leading $ or a leading or trailing /"},
    {check_share_group, "name without /, + or #"},
    {check_route_name, "non-empty name without /, + or #"},
    {check_http_url, "URL starting with http or https, or empty"},
    {check_engine_url, "wss://, ws:// or https:// URL with a host and optional port, or empty"},
    {check_smtp_url, "smtp:// or smtps:// URL, or empty"},
    {check_email, "e-mail address"},
    {check_email_or_empty, "e-mail address, or empty"},
    {check_guid, "task id (GUID)"},
    {check_ip_or_cidr, "IP address or CIDR block"},
    {check_host_port, "host:port"},
    {check_host_port_or_empty, "host:port, or empty"},
    {check_listen, "[host:]port[s], comma-separated"},
    {check_origin, "http(s)://host[:port]"},
    {check_health_listen, "plain [host:]port, comma-separated, or empty"},
    {check_token, "non-empty, no spaces"},
    {check_directory, "absolute directory without . or .. components"},
    {check_directory_or_empty, "absolute directory, or empty"},
    {check_file_node, "up to 64 of A-Z a-z 0-9 - _, not an operation name"},
    {check_account_id, "digits"},
};

const char *config_check_text(value_check check)
{
    for (size_t i = 0; i < ARRAY_COUNT(check_texts); i++)
        if (check_texts[i].check == check)
            return check_texts[i].text;
    return NULL;
}

/* ---- tables ---- */

#define CFG(field) offsetof(struct butler_config, field)
#define ROUTE(field) offsetof(struct config_route, field)
#define PROP(field) offsetof(struct config_custom_property, field)
#define PAIR(field) offsetof(struct config_file_pair, field)
#define USER_REF(field) offsetof(struct config_user_ref, field)
#define NR_ACCOUNT(field) offsetof(struct config_newrelic_account, field)

#define K_BOOL(p, o, d) .path = (p), .type = KEY_BOOL, .offset = (o), .def = (d)
#define K_INT(p, o, lo, hi, d)                                                                     \
    .path = (p), .type = KEY_INT, .offset = (o), .min = (lo), .max = (hi), .def = (d)
#define K_LONG(p, o, lo, hi, d)                                                                    \
    .path = (p), .type = KEY_LONG, .offset = (o), .min = (lo), .max = (hi), .def = (d)
#define K_STR(p, o, d, c) .path = (p), .type = KEY_STRING, .offset = (o), .def = (d), .check = (c)
#define K_SECRET(p, o, f) .path = (p), .type = KEY_SECRET, .offset = (o), .has_file = (f)
#define K_ENUM(p, o, n, d) .path = (p), .type = KEY_ENUM, .offset = (o), .names = (n), .def = (d)
#define K_WORD(p, o, n, d) .path = (p), .type = KEY_WORD, .offset = (o), .names = (n), .def = (d)
#define K_LIST(p, o, c) .path = (p), .type = KEY_LIST, .offset = (o), .check = (c)
#define K_SECRET_LIST(p, o, c, f)                                                                  \
    .path = (p), .type = KEY_SECRET_LIST, .offset = (o), .check = (c), .has_file = (f)
#define K_OBJECTS(p, o, l) .path = (p), .type = KEY_OBJECTS, .offset = (o), .objects = (l)
#define K_HEADERS(p, o) .path = (p), .type = KEY_HEADERS, .offset = (o)
#define K_MAP(p, o) .path = (p), .type = KEY_MAP, .offset = (o)

static const struct key_def custom_property_keys[] = {
    {K_STR("name", PROP(name), NULL, check_not_empty), .required = true,
     .doc = "Custom property name."},
    {K_STR("value", PROP(value), NULL, check_not_empty), .required = true,
     .doc = "Custom property value."},
};

static const struct key_def file_pair_keys[] = {
    {K_STR("from", PAIR(from), NULL, check_directory), .required = true,
     .doc = "Approved source directory (absolute)."},
    {K_STR("to", PAIR(to), NULL, check_directory), .required = true,
     .doc = "Approved target directory (absolute) for files from `from`."},
};

static const struct key_def route_keys[] = {
    {K_STR("name", ROUTE(name), NULL, check_route_name), .required = true,
     .doc = "Unique route name; also a topic level, so no '/', '+' or '#'."},
    {K_STR("match", ROUTE(match), NULL, check_topic_filter), .required = true,
     .doc = "MQTT topic filter whose messages the route forwards."},
    {K_ENUM("to", ROUTE(to), route_to_names, "slack"), .required = true,
     .doc = "Destination: slack, teams, email, webhook, mqtt or influxdb."},
    {K_SECRET("webhook_url", ROUTE(webhook_url), false),
     .doc = "Webhook for slack, teams or webhook routes; default: slack/teams.webhook_url."},
    {K_STR("channel", ROUTE(channel), NULL, check_single_line), .doc = "Slack channel."},
    {K_STR("username", ROUTE(username), NULL, check_single_line),
     .doc = "Slack user name shown on the post."},
    {K_STR("icon_emoji", ROUTE(icon_emoji), NULL, check_single_line), .doc = "Slack icon emoji."},
    {K_STR("title", ROUTE(title), NULL, check_single_line), .doc = "Teams card title."},
    {K_STR("subject", ROUTE(subject), NULL, check_single_line), .doc = "E-mail subject template."},
    {K_LIST("recipients", ROUTE(recipients), check_email),
     .doc = "E-mail recipients (required for email routes)."},
    {K_STR("topic", ROUTE(topic), NULL, check_topic_or_empty),
     .doc = "Destination topic (required for mqtt routes)."},
    {K_STR("template", ROUTE(template_text), NULL, NULL),
     .doc = "Message text template; empty = the default text (webhook and mqtt: the message as "
            "received)."},
    {K_WORD("method", ROUTE(method), http_method_names, "POST"),
     .doc = "HTTP method of webhook routes."},
    {K_STR("rate_limit.key", ROUTE(rate_limit_key), NULL, NULL),
     .doc = "Template whose value names a rate-limit bucket; empty = one bucket per route."},
    {K_INT("rate_limit.window_s", ROUTE(rate_limit_window_s), 0, 86400, "0"),
     .doc = "At most one message per bucket within this window; 0 = no limit."},
    {K_STR("condition.custom_property.name", ROUTE(condition_custom_property_name), NULL,
           check_single_line),
     .doc = "Fire only for tasks with this custom property (with .value)."},
    {K_STR("condition.custom_property.value", ROUTE(condition_custom_property_value), NULL,
           check_single_line),
     .doc = "The value the custom property must have."},
    {K_STR("condition.tag", ROUTE(condition_tag), NULL, check_single_line),
     .doc = "Fire only for events whose app or task carries this tag (appTags, qrs.taskTags, "
            "qrs.appTags; exact name)."},
    {K_HEADERS("headers", ROUTE(headers)),
     .doc = "Extra HTTP headers {Name: value} sent with each delivery; a Content-Type replaces "
            "the JSON default (values are secret)."},
    {K_STR("measurement", ROUTE(measurement), NULL, check_single_line),
     .doc = "InfluxDB routes: measurement name template (required for influxdb routes)."},
    {K_MAP("tags", ROUTE(tags)),
     .doc = "InfluxDB routes: {tag: template}; a tag whose value renders empty is left out."},
    {K_MAP("fields", ROUTE(fields)),
     .doc = "InfluxDB routes: {field: template}; numbers, true/false and text as such (at least "
            "one)."},
};

static const struct key_def user_ref_keys[] = {
    {K_STR("user_directory", USER_REF(user_directory), NULL, check_not_empty), .required = true,
     .doc = "User directory (matched without regard to case)."},
    {K_STR("user_id", USER_REF(user_id), NULL, check_not_empty), .required = true,
     .doc = "User id (matched without regard to case)."},
};

/* Object tables track which keys were given in a 64-bit mask. */
_Static_assert(ARRAY_COUNT(route_keys) <= 64, "route table too large for the seen mask");
_Static_assert(ARRAY_COUNT(custom_property_keys) <= 64, "table too large for the seen mask");

static const struct key_table route_table = {route_keys, ARRAY_COUNT(route_keys)};
static const struct key_table custom_property_table = {custom_property_keys,
                                                       ARRAY_COUNT(custom_property_keys)};

static const struct key_table user_ref_table = {user_ref_keys, ARRAY_COUNT(user_ref_keys)};

static const struct key_def newrelic_account_keys[] = {
    {K_STR("name", NR_ACCOUNT(name), NULL, check_not_empty), .required = true,
     .doc = "Account name (labels metrics and errors)."},
    {K_STR("account_id", NR_ACCOUNT(account_id), NULL, check_account_id), .required = true,
     .doc = "New Relic account id."},
    {K_SECRET("api_key", NR_ACCOUNT(api_key), false), .check = check_token, .required = true,
     .doc = "Insert/ingest API key, sent as the Api-Key header (secret)."},
};

static const struct key_table newrelic_account_table = {newrelic_account_keys,
                                                        ARRAY_COUNT(newrelic_account_keys)};

static void *newrelic_account_get(const void *list, size_t *count)
{
    const struct config_newrelic_account_list *accounts = list;
    *count = accounts->count;
    return accounts->items;
}

static void newrelic_account_set(void *list, void *items, size_t count)
{
    struct config_newrelic_account_list *accounts = list;
    accounts->items = items;
    accounts->count = count;
}

static const struct object_list newrelic_account_objects = {
    .table = &newrelic_account_table,
    .item_size = sizeof(struct config_newrelic_account),
    .max_items = 100,
    .get = newrelic_account_get,
    .set = newrelic_account_set,
    .check_item = NULL,
};

#define CLOUD_TENANT(field) offsetof(struct config_cloud_tenant, field)

static const struct key_def cloud_tenant_keys[] = {
    {K_STR("name", CLOUD_TENANT(name), NULL, check_route_name), .required = true,
     .doc = "Tenant name: a topic level and a label in alerts (no '/', '+' or '#')."},
    {K_STR("tenant_id", CLOUD_TENANT(tenant_id), NULL, check_not_empty), .required = true,
     .doc = "The tenant's id; events of other tenants are refused."},
    {K_STR("url", CLOUD_TENANT(url), NULL, check_http_url), .required = true,
     .doc = "The tenant's address, e.g. https://acme.eu.qlikcloud.com."},
    {K_SECRET("api_key", CLOUD_TENANT(api_key), true), .check = check_token,
     .doc = "API key sent as Bearer token to the tenant's REST API (secret; or api_key_file)."},
    {K_STR("oauth.client_id", CLOUD_TENANT(client_id), NULL, check_single_line),
     .doc = "OAuth client id (client credentials), instead of api_key."},
    {K_SECRET("oauth.client_secret", CLOUD_TENANT(client_secret), true), .check = check_token,
     .doc = "OAuth client secret (secret; or oauth.client_secret_file)."},
    {K_SECRET("webhook_secret", CLOUD_TENANT(webhook_secret), true), .check = check_token,
     .required = true,
     .doc = "The webhook's secret: Qlik-Signature is checked with it (secret; or "
            "webhook_secret_file)."},
    {K_STR("ca_file", CLOUD_TENANT(ca_file), NULL, check_single_line),
     .doc = "Trust this CA for the tenant's API; empty = the system's CAs."},
};

static const struct key_table cloud_tenant_table = {cloud_tenant_keys,
                                                    ARRAY_COUNT(cloud_tenant_keys)};

static void *cloud_tenant_get(const void *list, size_t *count)
{
    const struct config_cloud_tenant_list *tenants = list;
    *count = tenants->count;
    return tenants->items;
}

static void cloud_tenant_set(void *list, void *items, size_t count)
{
    struct config_cloud_tenant_list *tenants = list;
    tenants->items = items;
    tenants->count = count;
}

static const struct object_list cloud_tenant_objects = {
    .table = &cloud_tenant_table,
    .item_size = sizeof(struct config_cloud_tenant),
    .max_items = 32,
    .get = cloud_tenant_get,
    .set = cloud_tenant_set,
    .check_item = NULL,
};

static void *user_ref_get(const void *list, size_t *count)
{
    const struct config_user_ref_list *users = list;
    *count = users->count;
    return users->items;
}

static void user_ref_set(void *list, void *items, size_t count)
{
    struct config_user_ref_list *users = list;
    users->items = items;
    users->count = count;
}

static const struct object_list user_ref_objects = {
    .table = &user_ref_table,
    .item_size = sizeof(struct config_user_ref),
    .max_items = MAX_LIST_ITEMS,
    .get = user_ref_get,
    .set = user_ref_set,
    .check_item = NULL,
};

static void *route_get(const void *list, size_t *count)
{
    const struct config_route_list *routes = list;
    *count = routes->count;
    return routes->items;
}

static void route_set(void *list, void *items, size_t count)
{
    struct config_route_list *routes = list;
    routes->items = items;
    routes->count = count;
}

static void *custom_property_get(const void *list, size_t *count)
{
    const struct config_custom_property_list *properties = list;
    *count = properties->count;
    return properties->items;
}

static void custom_property_set(void *list, void *items, size_t count)
{
    struct config_custom_property_list *properties = list;
    properties->items = items;
    properties->count = count;
}

static const struct object_list route_objects = {
    .table = &route_table,
    .item_size = sizeof(struct config_route),
    .max_items = MAX_ROUTES,
    .get = route_get,
    .set = route_set,
    .check_item = config_check_route,
};

static const struct key_table file_pair_table = {file_pair_keys, ARRAY_COUNT(file_pair_keys)};

static void *file_pair_get(const void *list, size_t *count)
{
    const struct config_file_pair_list *pairs = list;
    *count = pairs->count;
    return pairs->items;
}

static void file_pair_set(void *list, void *items, size_t count)
{
    struct config_file_pair_list *pairs = list;
    pairs->items = items;
    pairs->count = count;
}

static const struct object_list file_pair_objects = {
    .table = &file_pair_table,
    .item_size = sizeof(struct config_file_pair),
    .max_items = MAX_ROUTES,
    .get = file_pair_get,
    .set = file_pair_set,
    .check_item = NULL,
};

static const struct object_list custom_property_objects = {
    .table = &custom_property_table,
    .item_size = sizeof(struct config_custom_property),
    .max_items = MAX_LIST_ITEMS,
    .get = custom_property_get,
    .set = custom_property_set,
    .check_item = NULL,
};

/* Order matters twice: config_print emits keys in this order (so every section
 * must be contiguous), and it is the order of the contract's example file. */
static const struct key_def config_keys[] = {
    {K_INT("shutdown_grace_s", CFG(shutdown_grace_s), 0, 3600, "10"),
     .doc = "On SIGTERM, how long in-flight work may finish or be spooled before Butler exits."},

    {K_ENUM("log.level", CFG(log.level), log_level_names, "info"),
     .doc = "Least severe log level written to stderr."},
    {K_ENUM("log.format", CFG(log.format), log_format_names, "text"),
     .doc = "Log line format: plain text or one JSON object per line."},

    {K_STR("mqtt.host", CFG(mqtt.host), "127.0.0.1", check_not_empty),
     .doc = "MQTT broker host name or address."},
    {K_INT("mqtt.port", CFG(mqtt.port), 1, 65535, "1883"), .doc = "MQTT broker port."},
    {K_STR("mqtt.client_id", CFG(mqtt.client_id), "butler", check_not_empty),
     .doc = "MQTT client id; keep it stable so the broker keeps the session (clean start is off)."},
    {K_STR("mqtt.username", CFG(mqtt.username), NULL, check_single_line),
     .doc = "MQTT user name; empty = connect without credentials."},
    {K_SECRET("mqtt.password", CFG(mqtt.password), true), .doc = "MQTT password."},
    {K_BOOL("mqtt.tls.enable", CFG(mqtt.tls.enable), "false"),
     .doc = "Connect to the broker over TLS."},
    {K_STR("mqtt.tls.ca_file", CFG(mqtt.tls.ca_file), NULL, check_single_line),
     .doc = "CA bundle that verifies the broker's certificate; empty = system store."},
    {K_STR("mqtt.tls.cert_file", CFG(mqtt.tls.cert_file), NULL, check_single_line),
     .doc = "Client certificate for the broker (goes with mqtt.tls.key_file)."},
    {K_STR("mqtt.tls.key_file", CFG(mqtt.tls.key_file), NULL, check_single_line),
     .doc = "Private key of mqtt.tls.cert_file."},
    {K_BOOL("mqtt.tls.verify_peer", CFG(mqtt.tls.verify_peer), "true"),
     .doc = "Verify the broker's certificate and host name."},
    {K_INT("mqtt.keepalive_s", CFG(mqtt.keepalive_s), 5, 65535, "30"),
     .doc = "MQTT keep-alive interval."},
    {K_INT("mqtt.session_expiry_s", CFG(mqtt.session_expiry_s), 0, INT_MAX, "3600"),
     .doc = "How long the broker keeps Butler's session (and queued messages) after a disconnect."},
    {K_STR("mqtt.topic_root", CFG(mqtt.topic_root), "butler", check_topic_root),
     .doc = "Prefix of every topic Butler subscribes and publishes to."},
    {K_STR("mqtt.share_group", CFG(mqtt.share_group), NULL, check_share_group),
     .doc = "Non-empty: subscribe through $share/<group>/... so several Butlers split the work."},
    {K_BOOL("mqtt.legacy_topics", CFG(mqtt.legacy_topics), "false"),
     .doc = "Also serve the Node.js Butler's topic names."},
    {K_INT("mqtt.max_inflight", CFG(mqtt.max_inflight), 1, 100000, "1000"),
     .doc = "Outbound publishes waiting for their PUBACK, hard cap."},
    {K_INT("mqtt.reconnect_min_ms", CFG(mqtt.reconnect_min_ms), 1, 3600000, "200"),
     .doc = "First delay before reconnecting to the broker."},
    {K_INT("mqtt.reconnect_max_ms", CFG(mqtt.reconnect_max_ms), 1, 3600000, "30000"),
     .doc = "Longest delay between reconnect attempts (the delay doubles up to it)."},

    {K_BOOL("http.enable", CFG(http.enable), "true"), .doc = "Serve the HTTP API."},
    {K_STR("http.listen", CFG(http.listen), "127.0.0.1:8080", check_listen),
     .doc = "Listening ports: [host:]port, comma-separated; suffix 's' for TLS."},
    {K_STR("http.tls.cert_file", CFG(http.tls.cert_file), NULL, check_single_line),
     .doc = "Server certificate for TLS ports (goes with http.tls.key_file)."},
    {K_STR("http.tls.key_file", CFG(http.tls.key_file), NULL, check_single_line),
     .doc = "Private key of http.tls.cert_file."},
    {K_STR("http.tls.ca_file", CFG(http.tls.ca_file), NULL, check_single_line),
     .doc = "Non-empty: clients must present a certificate signed by this CA."},
    {K_SECRET_LIST("http.tokens", CFG(http.tokens), check_token, true),
     .doc = "Non-empty: /v4/* requires 'Authorization: Bearer <token>' with one of these (a tokens "
            "file holds one per line)."},
    {K_LONG("http.max_body_bytes", CFG(http.max_body_bytes), 1, 1073741824LL, "1048576"),
     .doc = "Largest request body accepted; larger requests get 413."},
    {K_INT("http.task_start_timeout_ms", CFG(http.task_start_timeout_ms), 1, 600000, "10000"),
     .doc = "How long a synchronous task start waits for its result before answering."},
    {K_INT("http.task_finish_timeout_s", CFG(http.task_finish_timeout_s), 1, 86400, "600"),
     .doc = "?wait=finished on a task start: how long the request waits for every run's end "
            "before answering 202 with the execution ids (the finished messages still go out)."},
    {K_LIST("http.endpoints", CFG(http.endpoints), check_not_empty),
     .doc = "Empty = every implemented endpoint; else the allow-list of endpoint names."},
    {K_INT("http.threads", CFG(http.threads), 2, 512, "32"), .doc = "HTTP worker threads."},
    {K_INT("http.long_waits_max", CFG(http.long_waits_max), 0, 511, "0"),
     .doc = "Requests that may wait longer than http.task_start_timeout_ms (?wait=true app "
            "reloads, app dumps) at once; more get 503. 0 = a quarter of http.threads (at least "
            "1); else below http.threads."},
    {K_INT("http.header_timeout_ms", CFG(http.header_timeout_ms), 100, 600000, "5000"),
     .doc = "A connection must send its request line and headers (and each part of a body) "
            "within this, or it is closed: idle connections cannot hold worker threads."},
    {K_BOOL("http.status_page", CFG(http.status_page), "true"),
     .doc = "Serve the status page on GET / (it reads GET /v4/status, which needs a token like "
            "every /v4 path); false = 404."},
    {K_STR("http.health_listen", CFG(http.health_listen), NULL, check_health_listen),
     .doc = "Non-empty: a plain listener ([host:]port) of its own serving only /health and "
            "/metrics on threads of its own, answered while the API's threads are busy."},
    {K_LIST("http.allowed_origins", CFG(http.allowed_origins), check_origin),
     .doc = "Browser origins (scheme://host[:port]) besides Butler's own whose requests are "
            "served; any other Origin header is refused with 403."},
    {K_LIST("http.allowed_hosts", CFG(http.allowed_hosts), check_not_empty),
     .doc = "Host header names accepted besides the listeners' addresses, localhost, the "
            "machine's addresses and names (e.g. a reverse proxy's name); others get 421."},

    {K_BOOL("udp.enable", CFG(udp.enable), "true"),
     .doc = "Listen for Sense log-appender events over UDP."},
    {K_STR("udp.listen", CFG(udp.listen), "127.0.0.1:9998", check_host_port),
     .doc = "UDP host:port; 0.0.0.0:9998 to hear remote Sense nodes."},
    {K_LIST("udp.allowed_sources", CFG(udp.allowed_sources), check_ip_or_cidr),
     .doc = "Empty = any source; else the IP addresses and CIDR blocks allowed to send."},
    {K_INT("udp.max_message_bytes", CFG(udp.max_message_bytes), 64, 65507, "65507"),
     .doc = "Largest datagram accepted; longer ones are dropped and counted."},
    {K_INT("udp.dedup_ttl_s", CFG(udp.dedup_ttl_s), 0, 604800, "600"),
     .doc = "Events with the same ExecutionId within this window count as one."},
    {K_STR("udp.proxy_listen", CFG(udp.proxy_listen), "", check_host_port_or_empty),
     .doc = "UDP host:port for the Sense proxy's session and connection events (e.g. "
            "0.0.0.0:9997); empty = off."},
    {K_LIST("udp.proxy_allowed_sources", CFG(udp.proxy_allowed_sources), check_ip_or_cidr),
     .doc = "Allow-list of the proxy port; empty = the same as udp.allowed_sources."},
    {K_INT("udp.session_idle_s", CFG(udp.session_idle_s), 1, 2147483647, "1800"),
     .doc = "A user without session or connection activity for this long is no longer active."},
    {K_INT("udp.active_users_max", CFG(udp.active_users_max), 1, 10000000, "100000"),
     .doc = "Active users remembered; past it the least recently active is evicted and counted."},

    {K_STR("qrs.url", CFG(qrs.url), NULL, check_http_url),
     .doc = "Sense Repository Service URL (e.g. https://sense.example.com:4242); empty = QRS "
            "disabled."},
    {K_STR("qrs.cert_file", CFG(qrs.cert_file), "client.pem", check_single_line),
     .doc = "Client certificate exported from Sense."},
    {K_STR("qrs.key_file", CFG(qrs.key_file), "client_key.pem", check_single_line),
     .doc = "Private key of qrs.cert_file."},
    {K_STR("qrs.ca_file", CFG(qrs.ca_file), "root.pem", check_single_line),
     .doc = "CA that verifies the Sense server certificate."},
    {K_BOOL("qrs.verify_peer", CFG(qrs.verify_peer), "true"),
     .doc = "Verify the Sense server certificate."},
    {K_STR("qrs.user_directory", CFG(qrs.user_directory), "INTERNAL", check_not_empty),
     .doc = "User directory sent in the X-Qlik-User header."},
    {K_STR("qrs.user_id", CFG(qrs.user_id), "sa_repository", check_not_empty),
     .doc = "User id sent in the X-Qlik-User header."},
    {K_INT("qrs.timeout_ms", CFG(qrs.timeout_ms), 1, 3600000, "30000"),
     .doc = "Whole-request timeout for one QRS call."},
    {K_INT("qrs.connect_timeout_ms", CFG(qrs.connect_timeout_ms), 1, 600000, "5000"),
     .doc = "Connect timeout for one QRS call."},
    {K_BOOL("qrs.notifications.enable", CFG(qrs.notifications.enable), "false"),
     .doc =
         "Register for QRS change notifications on task results (needs qrs.url and http.enable)."},
    {K_STR("qrs.notifications.callback_url", CFG(qrs.notifications.callback_url), NULL,
           check_http_url),
     .doc = "Butler's HTTP API as Sense reaches it; QRS calls back here."},
    {K_SECRET("qrs.notifications.secret", CFG(qrs.notifications.secret), true),
     .doc = "Path segment of the callback that proves the call comes from QRS (16..256 of A-Z a-z "
            "0-9 - _ . ~)."},
    {K_STR("qrs.notifications.filter", CFG(qrs.notifications.filter), NULL, check_single_line),
     .doc = "QRS filter on ExecutionResult; empty = every update."},
    {K_INT("qrs.notifications.check_interval_s", CFG(qrs.notifications.check_interval_s), 1, 86400,
           "300"),
     .doc = "How often the registration is renewed (the old handle dropped)."},

    {K_LIST("task_start.allow.task_ids", CFG(task_start.allow.task_ids), check_guid),
     .doc = "Task ids that may be started; all allow lists empty = every task."},
    {K_LIST("task_start.allow.tags", CFG(task_start.allow.tags), check_not_empty),
     .doc = "Tags whose tasks may be started."},
    {K_OBJECTS("task_start.allow.custom_properties", CFG(task_start.allow.custom_properties),
               &custom_property_objects),
     .doc = "Custom property name/value pairs whose tasks may be started."},
    {K_INT("task_start.dedup_ttl_s", CFG(task_start.dedup_ttl_s), 0, 604800, "600"),
     .doc = "A requestId seen within this window is not started again (task starts and file "
            "commands, each their own window)."},
    {K_INT("task_start.dedup_max_requests", CFG(task_start.dedup_max_requests), 100, 10000000,
           "100000"),
     .doc = "requestIds remembered at once (and answers kept in the spool); past it the oldest "
            "is forgotten early and counted."},
    {K_INT("task_start.workers", CFG(task_start.workers), 1, 64, "4"),
     .doc = "Task-start worker threads, each with its own QRS connection."},
    {K_INT("task_start.queue_max", CFG(task_start.queue_max), 1, 1000000, "4096"),
     .doc = "Task starts waiting for a worker, hard cap."},
    {K_INT("task_start.name_cache_s", CFG(task_start.name_cache_s), 0, 86400, "60"),
     .doc = "How long a task id -> name lookup is reused."},
    {K_INT("task_start.batch_max", CFG(task_start.batch_max), 1, 1000, "50"),
     .doc = "Most task starts that waited together sent to QRS in one call (POST "
            "/qrs/task/start/many); a start that waits alone uses the one-task call. 1 = one "
            "call per task."},
    {K_INT("task_start.follow.poll_s", CFG(task_start.follow.poll_s), 1, 300, "5"),
     .doc = "A followed run's execution session is polled at most this many seconds apart."},
    {K_INT("task_start.follow.timeout_s", CFG(task_start.follow.timeout_s), 1, 31536000, "21600"),
     .doc = "A followed run that has not ended after this many seconds is reported as timeout."},
    {K_INT("task_start.follow.max", CFG(task_start.follow.max), 1, 100000, "1000"),
     .doc = "Executions followed at once; past it a request with follow is answered failed "
            "and starts nothing."},

    {K_STR("sense.qmc_url", CFG(sense.qmc_url), NULL, check_http_url),
     .doc = "QMC URL used for links in default alert texts."},
    {K_STR("sense.hub_url", CFG(sense.hub_url), NULL, check_http_url),
     .doc = "Hub URL used for links in default alert texts."},
    {K_BOOL("sense.version.enable", CFG(sense.version.enable), "false"),
     .doc = "Read /qrs/about at start and every interval: retained <root>/sense/version and "
            "<root>/events/sense/version/changed (needs qrs.url)."},
    {K_INT("sense.version.interval_s", CFG(sense.version.interval_s), 1, INT_MAX, "3600"),
     .doc = "Seconds between version checks."},

    {K_BOOL("license.monitor.enable", CFG(license.monitor.enable), "false"),
     .doc = "Watch the server licence and access licences at start and every interval (needs "
            "qrs.url)."},
    {K_INT("license.monitor.interval_s", CFG(license.monitor.interval_s), 1, INT_MAX, "21600"),
     .doc = "Seconds between licence checks."},
    {K_INT("license.monitor.warn_days", CFG(license.monitor.warn_days), 0, 36500, "30"),
     .doc = "The expiring event fires when the server licence has this many days left or fewer."},
    {K_INT("license.monitor.available_below", CFG(license.monitor.available_below), 0, 10000000,
           "0"),
     .doc = "An access type's low event fires when fewer are available; 0 = never."},
    {K_BOOL("license.release.enable", CFG(license.release.enable), "false"),
     .doc = "Release professional and analyzer allocations unused for too long (needs qrs.url)."},
    {K_BOOL("license.release.dry_run", CFG(license.release.dry_run), "true"),
     .doc = "Report what would be released, release nothing."},
    {K_INT("license.release.interval_s", CFG(license.release.interval_s), 1, INT_MAX, "86400"),
     .doc = "Seconds between release runs (the first at start)."},
    {K_INT("license.release.professional_days", CFG(license.release.professional_days), 1, 36500,
           "30"),
     .doc = "Release professional allocations not used for more than this many days."},
    {K_INT("license.release.analyzer_days", CFG(license.release.analyzer_days), 1, 36500, "30"),
     .doc = "Release analyzer allocations not used for more than this many days."},
    {K_OBJECTS("license.release.never_release.users", CFG(license.release.never_release.users),
               &user_ref_objects),
     .doc = "Users whose allocation is never released."},
    {K_LIST("license.release.never_release.user_directories",
            CFG(license.release.never_release.user_directories), check_not_empty),
     .doc = "User directories whose users' allocations are never released."},
    {K_LIST("license.release.never_release.tags", CFG(license.release.never_release.tags),
            check_not_empty),
     .doc = "User tags that keep a user's allocation."},
    {K_OBJECTS("license.release.never_release.custom_properties",
               CFG(license.release.never_release.custom_properties), &custom_property_objects),
     .doc = "User custom property name/value pairs that keep a user's allocation."},
    {K_ENUM("license.release.never_release.inactive", CFG(license.release.never_release.inactive),
            user_flag_rule_names, "ignore"),
     .doc = "yes: keep inactive users' allocations; no: keep active users'; ignore."},
    {K_ENUM("license.release.never_release.blocked", CFG(license.release.never_release.blocked),
            user_flag_rule_names, "ignore"),
     .doc = "yes: keep blocked users' allocations; no: keep unblocked users'; ignore."},
    {K_ENUM("license.release.never_release.removed_externally",
            CFG(license.release.never_release.removed_externally), user_flag_rule_names, "ignore"),
     .doc = "yes: keep allocations of users removed externally; no: of the others; ignore."},

    {K_OBJECTS("newrelic.accounts", CFG(newrelic.accounts), &newrelic_account_objects),
     .doc = "New Relic accounts; every event and metric goes to each."},
    {K_STR("newrelic.event_url", CFG(newrelic.event_url), "https://insights-collector.newrelic.com",
           check_http_url),
     .doc = "Event API base; events go to <event_url>/v1/accounts/<account_id>/events."},
    {K_STR("newrelic.metric_url", CFG(newrelic.metric_url),
           "https://metric-api.newrelic.com/metric/v1", check_http_url),
     .doc = "Metric API endpoint."},
    {K_OBJECTS("newrelic.attributes", CFG(newrelic.attributes), &custom_property_objects),
     .doc = "Attributes {name, value} added to every event and metric."},

    {K_OBJECTS("qlik_cloud.tenants", CFG(qlik_cloud.tenants), &cloud_tenant_objects),
     .doc = "Qlik Cloud tenants whose webhooks POST /qlik-cloud/webhook takes."},
    {K_STR("qlik_cloud.mqtt_topic", CFG(qlik_cloud.mqtt_topic), NULL, check_filter_or_empty),
     .doc = "Topic filter of events an existing forwarder publishes (e.g. qscloud/app/reload/#)."},
    {K_INT("qlik_cloud.script_log_tail_lines", CFG(qlik_cloud.script_log_tail_lines), 0, 1000,
           "20"),
     .doc = "Last lines of a failed reload's script log put in its event (0 = none)."},

    {K_BOOL("heartbeat.enable", CFG(heartbeat.enable), "false"),
     .doc = "Call heartbeat.url at start and every interval."},
    {K_SECRET("heartbeat.url", CFG(heartbeat.url), true), .check = check_http_url,
     .doc = "Heartbeat URL (secret: it carries the check's token; or heartbeat.url_file)."},
    {K_WORD("heartbeat.method", CFG(heartbeat.method), heartbeat_method_names, "GET"),
     .doc = "HTTP method of the heartbeat."},
    {K_INT("heartbeat.interval_s", CFG(heartbeat.interval_s), 1, INT_MAX, "300"),
     .doc = "Seconds between heartbeats."},

    {K_SECRET("slack.webhook_url", CFG(slack.webhook_url), true),
     .doc = "Default Slack incoming webhook for slack posts and routes."},
    {K_SECRET("teams.webhook_url", CFG(teams.webhook_url), true),
     .doc = "Default Teams webhook for routes."},

    {K_STR("smtp.url", CFG(smtp.url), NULL, check_smtp_url),
     .doc = "Mail server: smtp://host:25 or smtps://host:465."},
    {K_STR("smtp.from", CFG(smtp.from), NULL, check_email_or_empty),
     .doc = "Sender address of e-mail."},
    {K_STR("smtp.username", CFG(smtp.username), NULL, check_single_line),
     .doc = "SMTP user name; empty = no authentication."},
    {K_SECRET("smtp.password", CFG(smtp.password), true), .doc = "SMTP password."},
    {K_BOOL("smtp.plaintext_auth_loopback", CFG(smtp.plaintext_auth_loopback), "false"),
     .doc = "Send smtp.username/password without TLS, only to a relay on a loopback address "
            "(127.x, [::1], localhost); elsewhere credentials always need smtps:// or STARTTLS."},

    {K_OBJECTS("routes", CFG(routes), &route_objects),
     .doc = "Rules that forward matching MQTT messages to Slack, Teams, e-mail, a webhook or "
            "another topic."},

    {K_STR("influxdb.url", CFG(influxdb.url), NULL, check_http_url),
     .doc = "InfluxDB base URL (http(s)://host:8086); empty = no InfluxDB writes."},
    {K_INT("influxdb.version", CFG(influxdb.version), 1, 3, "1"),
     .doc = "InfluxDB API: 1 (/write), 2 (/api/v2/write) or 3 (/api/v3/write_lp)."},
    {K_STR("influxdb.database", CFG(influxdb.database), "butler", check_single_line),
     .doc = "Database (v1, created when missing; v3)."},
    {K_STR("influxdb.retention_policy", CFG(influxdb.retention_policy), NULL, check_single_line),
     .doc = "Retention policy (v1); empty = the database's default."},
    {K_STR("influxdb.username", CFG(influxdb.username), NULL, check_single_line),
     .doc = "User for basic authentication (v1); empty = none."},
    {K_SECRET("influxdb.password", CFG(influxdb.password), true),
     .doc = "Password for basic authentication (v1)."},
    {K_STR("influxdb.org", CFG(influxdb.org), NULL, check_single_line),
     .doc = "Organization (v2)."},
    {K_STR("influxdb.bucket", CFG(influxdb.bucket), NULL, check_single_line),
     .doc = "Bucket (v2)."},
    {K_SECRET("influxdb.token", CFG(influxdb.token), true),
     .doc = "API token (v2: Authorization: Token; v3: Bearer)."},
    {K_MAP("influxdb.tags", CFG(influxdb.tags)),
     .doc = "Static tags added to every point {tag: value}."},
    {K_BOOL("influxdb.node_measurements", CFG(influxdb.node_measurements), "false"),
     .doc = "Also write the Node.js Butler's measurements (docs/influxdb.md)."},
    {K_INT("influxdb.butler_interval_s", CFG(influxdb.butler_interval_s), 1, 86400, "900"),
     .doc = "Interval of butler_memory_usage points (with node_measurements)."},
    {K_INT("influxdb.batch_max", CFG(influxdb.batch_max), 1, 50000, "5000"),
     .doc = "Most points in one write."},
    {K_INT("influxdb.flush_ms", CFG(influxdb.flush_ms), 1, 60000, "1000"),
     .doc = "Longest a point waits for its batch to fill before it is written."},
    {K_INT("influxdb.timeout_ms", CFG(influxdb.timeout_ms), 100, 600000, "10000"),
     .doc = "Total timeout of one write request."},

    {K_INT("retry.max_attempts", CFG(retry.max_attempts), 1, 100, "5"),
     .doc = "Attempts per outbound call (QRS, HTTP, SMTP), the first included."},
    {K_INT("retry.initial_backoff_ms", CFG(retry.initial_backoff_ms), 1, 3600000, "200"),
     .doc = "Delay before the first retry; it doubles each time."},
    {K_INT("retry.max_backoff_ms", CFG(retry.max_backoff_ms), 1, 3600000, "10000"),
     .doc = "Longest delay between retries."},

    {K_STR("spool.dir", CFG(spool.dir), "state", check_not_empty),
     .doc = "Directory where unfinished work survives a crash; relative to the working directory."},
    {K_BOOL("spool.fsync", CFG(spool.fsync), "false"),
     .doc = "fsync spool writes: survive power loss too, at the cost of latency."},
    {K_LONG("spool.max_bytes", CFG(spool.max_bytes), 65536, 1099511627776LL, "268435456"),
     .doc = "Spool size cap; work is refused beyond it."},

    {K_BOOL("health.metrics", CFG(health.metrics), "true"),
     .doc = "Serve GET /metrics (Prometheus text format)."},
    {K_ENUM("health.metrics_auth", CFG(health.metrics_auth), metrics_auth_names, "token"),
     .doc = "Who may read /metrics when http.tokens is set: token (the API's bearer tokens) or "
            "open (anyone who reaches the listener). /health is always open."},

    {K_INT("kv.max_keys_per_namespace", CFG(kv.max_keys_per_namespace), 1, 100000, "1000"),
     .doc = "Keys per key-value namespace; over it the oldest-written key is evicted."},
    {K_INT("kv.max_namespaces", CFG(kv.max_namespaces), 1, 100000, "1000"),
     .doc = "Key-value namespaces, hard cap."},
    {K_INT("kv.max_value_bytes", CFG(kv.max_value_bytes), 1, 1048576, "65536"),
     .doc = "Largest key-value value."},

    {K_STR("engine.url", CFG(engine.url), NULL, check_engine_url),
     .doc = "Sense engine (QIX) URL, e.g. wss://sense.example.com:4747; empty = app reload, list "
            "and dump off."},
    {K_STR("engine.cert_file", CFG(engine.cert_file), NULL, check_single_line),
     .doc = "Client certificate for the engine; empty = qrs.cert_file."},
    {K_STR("engine.key_file", CFG(engine.key_file), NULL, check_single_line),
     .doc = "Private key of engine.cert_file; empty = qrs.key_file."},
    {K_STR("engine.ca_file", CFG(engine.ca_file), NULL, check_single_line),
     .doc = "CA that verifies the engine's certificate; empty = qrs.ca_file."},
    {K_WORD("engine.verify_peer", CFG(engine.verify_peer), inherit_bool_names, ""),
     .doc = "Verify the engine's certificate: true, false, or empty = qrs.verify_peer."},
    {K_STR("engine.user_directory", CFG(engine.user_directory), NULL, check_single_line),
     .doc = "User directory in X-Qlik-User; empty = qrs.user_directory."},
    {K_STR("engine.user_id", CFG(engine.user_id), NULL, check_single_line),
     .doc = "User id in X-Qlik-User; empty = qrs.user_id."},
    {K_INT("engine.timeout_ms", CFG(engine.timeout_ms), 1, 3600000, "30000"),
     .doc = "Connect, upgrade and every engine call except the reload itself."},
    {K_INT("engine.reload_timeout_s", CFG(engine.reload_timeout_s), 0, 604800, "0"),
     .doc = "The longest a reload may run before it is cancelled; 0 = as long as the engine "
            "takes."},
    {K_INT("engine.max_sessions", CFG(engine.max_sessions), 1, 256, "4"),
     .doc = "Engine WebSocket sessions open at once, all app operations together."},
    {K_LONG("engine.max_message_bytes", CFG(engine.max_message_bytes), 4096, 268435456LL,
            "8388608"),
     .doc = "Largest message accepted from the engine; a larger one fails the operation."},
    {K_INT("engine.queue_max", CFG(engine.queue_max), 1, 100000, "1000"),
     .doc = "App requests waiting for an engine session, hard cap."},

    {K_BOOL("scheduler.enable", CFG(scheduler.enable), "true"),
     .doc = "Fire cron schedules; false serves the schedule API but never fires."},
    {K_INT("scheduler.max_schedules", CFG(scheduler.max_schedules), 1, 100000, "1000"),
     .doc = "Schedules, hard cap."},
    {K_INT("scheduler.missed_max_reported", CFG(scheduler.missed_max_reported), 1, 10000, "100"),
     .doc = "Missed firing times listed in one missed-schedule event."},

    {K_BOOL("file.enable", CFG(file.enable), "false"),
     .doc = "Consume the file commands <root>/file/copy|move|delete|mkdir on this host."},
    {K_STR("file.node", CFG(file.node), NULL, check_file_node),
     .doc = "Also consume <root>/file/<node>/<op>: names this file server (A-Z a-z 0-9 - _)."},
    {K_OBJECTS("file.copy", CFG(file.copy), &file_pair_objects),
     .doc = "Approved copy pairs [{from, to}]: a file beneath from may be copied beneath to."},
    {K_OBJECTS("file.move", CFG(file.move), &file_pair_objects),
     .doc = "Approved move pairs [{from, to}]."},
    {K_LIST("file.delete", CFG(file.delete_roots), check_directory),
     .doc = "Directories beneath which files may be deleted."},
    {K_LIST("file.mkdir", CFG(file.mkdir_roots), check_directory),
     .doc = "Directories beneath which createdir may create directories."},
    {K_STR("file.qvd_path", CFG(file.qvd_path), NULL, check_directory_or_empty),
     .doc = "Base directory of createdirqvd; empty = createdirqvd refused."},
    {K_INT("file.workers", CFG(file.workers), 1, 64, "2"),
     .doc = "File commands run at once, on threads of their own: a long copy never holds up "
            "task starts."},
    {K_INT("file.queue_max", CFG(file.queue_max), 1, 100000, "1024"),
     .doc = "File commands waiting for those threads, hard cap; past it the broker keeps them."},
    {K_LONG("file.copy_max_entries", CFG(file.copy_max_entries), 1, 10000000, "10000"),
     .doc = "A directory copy: files and directories in the source tree, hard cap; a larger "
            "tree is refused before anything is written."},
    {K_LONG("file.copy_max_bytes", CFG(file.copy_max_bytes), 1, 1099511627776LL, "10737418240"),
     .doc = "A directory copy: bytes of the files in the source tree, hard cap; a larger tree "
            "is refused before anything is written."},
};

const struct key_table config_key_table = {config_keys, ARRAY_COUNT(config_keys)};
