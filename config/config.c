/*
 * Configuration loader. One static table of keys (config_keys below) drives
 * defaults, YAML parsing, environment overrides, *_file secrets, printing and
 * freeing, so a key added to the table is loadable, overridable, printable and
 * released without touching any other code.
 *
 * Order of layers: table defaults -> YAML file -> BUTLER_* environment ->
 * *_file secrets -> cross-key checks. Every problem found is reported (up to
 * MAX_ERRORS) before failing, so a user can fix a file in one round.
 *
 * The YAML is read with libyaml's event API into a small tree that keeps
 * line/column marks, then the tree is walked against the table. Both stages
 * are bounded (file size, depth, node count, scalar length, list length), so a
 * hostile file costs bounded time and memory.
 *
 * Thread context: start-up only, on the main thread (getenv, strerror).
 */
#include "config/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

/* Hard caps. Nothing a legitimate Butler config needs comes near them. */
#define MAX_FILE_BYTES (4u * 1024u * 1024u)
#define MAX_SECRET_FILE_BYTES (64u * 1024u)
#define MAX_SCALAR_BYTES (64u * 1024u)
#define MAX_DEPTH 32u
#define MAX_LIST_ITEMS 10000u
#define MAX_MAP_ENTRIES 1000u
#define MAX_NODES 200000u
#define MAX_ROUTES 1000u
#define MAX_ERRORS 50u
#define MAX_KEY_TEXT 64u  /* a longer key cannot be in the table */
#define PATH_TEXT 256u    /* a displayed key path; longer ones are truncated */
#define ECHO_TEXT 96u     /* how much of a bad value an error message quotes */
#define ENV_NAME_TEXT 80u /* "BUTLER_" + longest path + "_FILE" fits easily */
#define MAX_SEGMENTS 8u   /* dots in a table path, plus one */

/* Enum fields are written through int pointers; that is only sound when the
 * compiler gives the enums int's size (GCC and Clang do for these). */
_Static_assert(sizeof(enum config_log_level) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_log_format) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_route_destination) == sizeof(int), "enum size");

/* ------------------------------------------------------------------------ */
/* The key table                                                             */
/* ------------------------------------------------------------------------ */

enum key_type {
    KEY_BOOL,
    KEY_INT,         /* int field, min..max */
    KEY_LONG,        /* long field, min..max */
    KEY_STRING,      /* char * field */
    KEY_SECRET,      /* char * field, never echoed or printed */
    KEY_ENUM,        /* C enum field; value = index in names */
    KEY_WORD,        /* char * field holding the canonical spelling from names */
    KEY_LIST,        /* struct config_string_list */
    KEY_SECRET_LIST, /* struct config_string_list, never echoed or printed */
    KEY_OBJECTS,     /* a list of mappings described by its own table */
};

struct loader;
struct origin;
struct object_list;

/* Returns NULL when the value is acceptable, else a static "expected ..." text. */
typedef const char *(*value_check)(const char *value);

struct key_def {
    const char *path; /* dotted, relative to the table's struct */
    enum key_type type;
    size_t offset;
    long long min, max;       /* KEY_INT, KEY_LONG */
    const char *def;          /* default as text, parsed like a file value; NULL = "" / empty */
    const char *const *names; /* KEY_ENUM, KEY_WORD: NULL-terminated */
    value_check check;        /* strings and list items */
    bool has_file;            /* secrets: a <path>_file key and BUTLER_<PATH>_FILE exist */
    bool required;            /* keys of an object table only */
    const struct object_list *objects;
};

struct key_table {
    const struct key_def *keys;
    size_t count;
};

/* How to reach the items of one kind of object list without type punning. */
struct object_list {
    const struct key_table *table;
    size_t item_size;
    size_t max_items;
    void *(*get)(const void *list, size_t *count);
    void (*set)(void *list, void *items, size_t count);
    /* Checks across the keys of one item (and against earlier items). */
    void (*check_item)(struct loader *ld, void *items, size_t index, const char *path,
                       const struct origin *at);
};

static const char *const log_level_names[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_format_names[] = {"text", "json", NULL};
static const char *const route_to_names[] = {"slack", "teams", "email", "webhook", "mqtt", NULL};
static const char *const http_method_names[] = {"POST", "PUT", NULL};

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

static const char *check_topic_or_empty(const char *value)
{
    return strpbrk(value, "+#") ? "expected an MQTT topic without '+' or '#'" : NULL;
}

static const char *check_topic_root(const char *value)
{
    size_t length = strlen(value);
    if (length == 0 || strpbrk(value, "+#") || value[0] == '$' || value[0] == '/' ||
        value[length - 1] == '/')
        return "expected a topic prefix without '+', '#', a leading '$' or a leading or "
               "trailing '/'";
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
    size_t length = strlen(value);
    if (length > 64)
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

/* CivetWeb listening_ports: comma-separated [host:]port with an optional s/r suffix. */
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

/* ---- tables ---- */

#define CFG(field) offsetof(struct butler_config, field)
#define ROUTE(field) offsetof(struct config_route, field)
#define PROP(field) offsetof(struct config_custom_property, field)
#define PAIR(field) offsetof(struct config_file_pair, field)

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

#define ARRAY_COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const struct key_def custom_property_keys[] = {
    {K_STR("name", PROP(name), NULL, check_not_empty), .required = true},
    {K_STR("value", PROP(value), NULL, check_not_empty), .required = true},
};

static const struct key_def route_keys[] = {
    {K_STR("name", ROUTE(name), NULL, check_route_name), .required = true},
    {K_STR("match", ROUTE(match), NULL, check_topic_filter), .required = true},
    {K_ENUM("to", ROUTE(to), route_to_names, "slack"), .required = true},
    {K_SECRET("webhook_url", ROUTE(webhook_url), false)},
    {K_STR("channel", ROUTE(channel), NULL, check_single_line)},
    {K_STR("username", ROUTE(username), NULL, check_single_line)},
    {K_STR("icon_emoji", ROUTE(icon_emoji), NULL, check_single_line)},
    {K_STR("title", ROUTE(title), NULL, check_single_line)},
    {K_STR("subject", ROUTE(subject), NULL, check_single_line)},
    {K_LIST("recipients", ROUTE(recipients), check_email)},
    {K_STR("topic", ROUTE(topic), NULL, check_topic_or_empty)},
    {K_STR("template", ROUTE(template_text), NULL, NULL)},
    {K_WORD("method", ROUTE(method), http_method_names, "POST")},
    {K_STR("rate_limit.key", ROUTE(rate_limit_key), NULL, NULL)},
    {K_INT("rate_limit.window_s", ROUTE(rate_limit_window_s), 0, 86400, "0")},
    {K_STR("condition.custom_property.name", ROUTE(condition_custom_property_name), NULL,
           check_single_line)},
    {K_STR("condition.custom_property.value", ROUTE(condition_custom_property_value), NULL,
           check_single_line)},
};

static const struct key_def file_pair_keys[] = {
    {K_STR("from", PAIR(from), NULL, check_directory), .required = true},
    {K_STR("to", PAIR(to), NULL, check_directory), .required = true},
};

/* Object tables track which keys were given in a 64-bit mask. */
_Static_assert(ARRAY_COUNT(route_keys) <= 64, "route table too large for the seen mask");
_Static_assert(ARRAY_COUNT(custom_property_keys) <= 64, "table too large for the seen mask");

static const struct key_table route_table = {route_keys, ARRAY_COUNT(route_keys)};
static const struct key_table custom_property_table = {custom_property_keys,
                                                       ARRAY_COUNT(custom_property_keys)};
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

static void check_route(struct loader *ld, void *items, size_t index, const char *path,
                        const struct origin *at);

static const struct object_list route_objects = {
    .table = &route_table,
    .item_size = sizeof(struct config_route),
    .max_items = MAX_ROUTES,
    .get = route_get,
    .set = route_set,
    .check_item = check_route,
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
    {K_INT("shutdown_grace_s", CFG(shutdown_grace_s), 0, 3600, "10")},

    {K_ENUM("log.level", CFG(log.level), log_level_names, "info")},
    {K_ENUM("log.format", CFG(log.format), log_format_names, "text")},

    {K_STR("mqtt.host", CFG(mqtt.host), "127.0.0.1", check_not_empty)},
    {K_INT("mqtt.port", CFG(mqtt.port), 1, 65535, "1883")},
    {K_STR("mqtt.client_id", CFG(mqtt.client_id), "butler", check_not_empty)},
    {K_STR("mqtt.username", CFG(mqtt.username), NULL, check_single_line)},
    {K_SECRET("mqtt.password", CFG(mqtt.password), true)},
    {K_BOOL("mqtt.tls.enable", CFG(mqtt.tls.enable), "false")},
    {K_STR("mqtt.tls.ca_file", CFG(mqtt.tls.ca_file), NULL, check_single_line)},
    {K_STR("mqtt.tls.cert_file", CFG(mqtt.tls.cert_file), NULL, check_single_line)},
    {K_STR("mqtt.tls.key_file", CFG(mqtt.tls.key_file), NULL, check_single_line)},
    {K_BOOL("mqtt.tls.verify_peer", CFG(mqtt.tls.verify_peer), "true")},
    {K_INT("mqtt.keepalive_s", CFG(mqtt.keepalive_s), 5, 65535, "30")},
    {K_INT("mqtt.session_expiry_s", CFG(mqtt.session_expiry_s), 0, INT_MAX, "3600")},
    {K_STR("mqtt.topic_root", CFG(mqtt.topic_root), "butler", check_topic_root)},
    {K_STR("mqtt.share_group", CFG(mqtt.share_group), NULL, check_share_group)},
    {K_BOOL("mqtt.legacy_topics", CFG(mqtt.legacy_topics), "false")},
    {K_INT("mqtt.max_inflight", CFG(mqtt.max_inflight), 1, 100000, "1000")},
    {K_INT("mqtt.reconnect_min_ms", CFG(mqtt.reconnect_min_ms), 1, 3600000, "200")},
    {K_INT("mqtt.reconnect_max_ms", CFG(mqtt.reconnect_max_ms), 1, 3600000, "30000")},

    {K_BOOL("http.enable", CFG(http.enable), "true")},
    {K_STR("http.listen", CFG(http.listen), "127.0.0.1:8080", check_listen)},
    {K_STR("http.tls.cert_file", CFG(http.tls.cert_file), NULL, check_single_line)},
    {K_STR("http.tls.key_file", CFG(http.tls.key_file), NULL, check_single_line)},
    {K_STR("http.tls.ca_file", CFG(http.tls.ca_file), NULL, check_single_line)},
    {K_SECRET_LIST("http.tokens", CFG(http.tokens), check_token, true)},
    {K_LONG("http.max_body_bytes", CFG(http.max_body_bytes), 1, 1073741824LL, "1048576")},
    {K_INT("http.task_start_timeout_ms", CFG(http.task_start_timeout_ms), 1, 600000, "10000")},
    {K_LIST("http.endpoints", CFG(http.endpoints), check_not_empty)},
    {K_INT("http.threads", CFG(http.threads), 2, 512, "32")},

    {K_BOOL("udp.enable", CFG(udp.enable), "true")},
    {K_STR("udp.listen", CFG(udp.listen), "127.0.0.1:9998", check_host_port)},
    {K_LIST("udp.allowed_sources", CFG(udp.allowed_sources), check_ip_or_cidr)},
    {K_INT("udp.max_message_bytes", CFG(udp.max_message_bytes), 64, 65507, "65507")},
    {K_INT("udp.dedup_ttl_s", CFG(udp.dedup_ttl_s), 0, 604800, "600")},

    {K_STR("qrs.url", CFG(qrs.url), NULL, check_http_url)},
    {K_STR("qrs.cert_file", CFG(qrs.cert_file), "client.pem", check_single_line)},
    {K_STR("qrs.key_file", CFG(qrs.key_file), "client_key.pem", check_single_line)},
    {K_STR("qrs.ca_file", CFG(qrs.ca_file), "root.pem", check_single_line)},
    {K_BOOL("qrs.verify_peer", CFG(qrs.verify_peer), "true")},
    {K_STR("qrs.user_directory", CFG(qrs.user_directory), "INTERNAL", check_not_empty)},
    {K_STR("qrs.user_id", CFG(qrs.user_id), "sa_repository", check_not_empty)},
    {K_INT("qrs.timeout_ms", CFG(qrs.timeout_ms), 1, 3600000, "30000")},
    {K_INT("qrs.connect_timeout_ms", CFG(qrs.connect_timeout_ms), 1, 600000, "5000")},
    {K_BOOL("qrs.notifications.enable", CFG(qrs.notifications.enable), "false")},
    {K_STR("qrs.notifications.callback_url", CFG(qrs.notifications.callback_url), NULL,
           check_http_url)},
    {K_SECRET("qrs.notifications.secret", CFG(qrs.notifications.secret), true)},
    {K_STR("qrs.notifications.filter", CFG(qrs.notifications.filter), NULL, check_single_line)},
    {K_INT("qrs.notifications.check_interval_s", CFG(qrs.notifications.check_interval_s), 1, 86400,
           "300")},

    {K_LIST("task_start.allow.task_ids", CFG(task_start.allow.task_ids), check_guid)},
    {K_LIST("task_start.allow.tags", CFG(task_start.allow.tags), check_not_empty)},
    {K_OBJECTS("task_start.allow.custom_properties", CFG(task_start.allow.custom_properties),
               &custom_property_objects)},
    {K_INT("task_start.dedup_ttl_s", CFG(task_start.dedup_ttl_s), 0, 604800, "600")},
    {K_INT("task_start.workers", CFG(task_start.workers), 1, 64, "4")},
    {K_INT("task_start.queue_max", CFG(task_start.queue_max), 1, 1000000, "4096")},
    {K_INT("task_start.name_cache_s", CFG(task_start.name_cache_s), 0, 86400, "60")},

    {K_STR("sense.qmc_url", CFG(sense.qmc_url), NULL, check_http_url)},
    {K_STR("sense.hub_url", CFG(sense.hub_url), NULL, check_http_url)},

    {K_SECRET("slack.webhook_url", CFG(slack.webhook_url), true)},
    {K_SECRET("teams.webhook_url", CFG(teams.webhook_url), true)},

    {K_STR("smtp.url", CFG(smtp.url), NULL, check_smtp_url)},
    {K_STR("smtp.from", CFG(smtp.from), NULL, check_email_or_empty)},
    {K_STR("smtp.username", CFG(smtp.username), NULL, check_single_line)},
    {K_SECRET("smtp.password", CFG(smtp.password), true)},

    {K_OBJECTS("routes", CFG(routes), &route_objects)},

    {K_INT("retry.max_attempts", CFG(retry.max_attempts), 1, 100, "5")},
    {K_INT("retry.initial_backoff_ms", CFG(retry.initial_backoff_ms), 1, 3600000, "200")},
    {K_INT("retry.max_backoff_ms", CFG(retry.max_backoff_ms), 1, 3600000, "10000")},

    {K_STR("spool.dir", CFG(spool.dir), "state", check_not_empty)},
    {K_BOOL("spool.fsync", CFG(spool.fsync), "false")},
    {K_LONG("spool.max_bytes", CFG(spool.max_bytes), 65536, 1099511627776LL, "268435456")},

    {K_BOOL("health.metrics", CFG(health.metrics), "true")},

    {K_INT("kv.max_keys_per_namespace", CFG(kv.max_keys_per_namespace), 1, 100000, "1000")},
    {K_INT("kv.max_namespaces", CFG(kv.max_namespaces), 1, 100000, "1000")},
    {K_INT("kv.max_value_bytes", CFG(kv.max_value_bytes), 1, 1048576, "65536")},

    {K_BOOL("scheduler.enable", CFG(scheduler.enable), "true")},
    {K_INT("scheduler.max_schedules", CFG(scheduler.max_schedules), 1, 100000, "1000")},
    {K_INT("scheduler.missed_max_reported", CFG(scheduler.missed_max_reported), 1, 10000, "100")},

    {K_BOOL("file.enable", CFG(file.enable), "false")},
    {K_STR("file.node", CFG(file.node), NULL, check_file_node)},
    {K_OBJECTS("file.copy", CFG(file.copy), &file_pair_objects)},
    {K_OBJECTS("file.move", CFG(file.move), &file_pair_objects)},
    {K_LIST("file.delete", CFG(file.delete_roots), check_directory)},
    {K_LIST("file.mkdir", CFG(file.mkdir_roots), check_directory)},
    {K_STR("file.qvd_path", CFG(file.qvd_path), NULL, check_directory_or_empty)},
};

#define CONFIG_KEY_COUNT ARRAY_COUNT(config_keys)

static const struct key_table config_table = {config_keys, CONFIG_KEY_COUNT};

/* ------------------------------------------------------------------------ */
/* Loader state and error reporting                                          */
/* ------------------------------------------------------------------------ */

/* Where a value came from, for error messages. */
struct origin {
    size_t line; /* 1-based; 0 = not from the file */
    size_t column;
    char env[ENV_NAME_TEXT]; /* non-empty: set by this environment variable */
};

/* Per top-level key: where its value and its *_file path came from, so the
 * environment layer can override the file layer and later errors can point at
 * the right line. */
struct key_state {
    struct origin value;
    char *file_ref; /* owned; the <key>_file path, "" or NULL = none */
    struct origin file;
    struct origin *items; /* owned; KEY_OBJECTS: where each item starts */
    size_t item_count;
};

struct loader {
    const char *name; /* file name used in messages */
    FILE *errors;     /* may be NULL */
    unsigned error_count;
    enum butler_status status; /* non-OK (NOMEM) stops everything */
    struct key_state state[CONFIG_KEY_COUNT];
};

static bool stopped(const struct loader *ld)
{
    return ld->status != BUTLER_OK || ld->error_count >= MAX_ERRORS;
}

static struct origin origin_at(size_t line, size_t column)
{
    struct origin at = {.line = line, .column = column};
    return at;
}

/* One line "WHERE: PATH: message". Counts every error, prints the first
 * MAX_ERRORS; load_common adds a closing line when it stopped early. */
__attribute__((format(printf, 4, 5))) static void report(struct loader *ld, const struct origin *at,
                                                         const char *path, const char *format, ...)
{
    va_list args;
    ld->error_count++;
    if (!ld->errors || ld->error_count > MAX_ERRORS)
        return;
    if (at && at->env[0])
        fprintf(ld->errors, "environment:%s: ", at->env);
    else if (at && at->line)
        fprintf(ld->errors, "%s:%zu:%zu: ", ld->name, at->line, at->column);
    else
        fprintf(ld->errors, "%s: ", ld->name);
    if (path && *path)
        fprintf(ld->errors, "%s: ", path);
    va_start(args, format);
    vfprintf(ld->errors, format, args);
    va_end(args);
    fputc('\n', ld->errors);
}

static void out_of_memory(struct loader *ld)
{
    if (ld->status == BUTLER_OK && ld->errors)
        fprintf(ld->errors, "%s: out of memory while loading the configuration\n", ld->name);
    ld->status = BUTLER_ERR_NOMEM;
}

/* Quote `text` for an error message: ASCII-only, escaped, truncated. Returns buffer. */
static const char *echo(char *buffer, size_t size, const char *text)
{
    size_t used = 0;
    const unsigned char *p = (const unsigned char *)text;
    buffer[used++] = '"';
    /* Each step writes at most 4 bytes; 8 keeps room for `..."` and the NUL. */
    for (; *p && used + 8 < size; p++) {
        if (*p == '"' || *p == '\\') {
            buffer[used++] = '\\';
            buffer[used++] = (char)*p;
        } else if (*p >= 0x20 && *p < 0x7f) {
            buffer[used++] = (char)*p;
        } else {
            snprintf(buffer + used, size - used, "\\x%02X", *p);
            used += 4;
        }
    }
    if (*p) {
        memcpy(buffer + used, "...", 3);
        used += 3;
    }
    buffer[used++] = '"';
    buffer[used] = '\0';
    return buffer;
}

/* Display and lookup paths. Lookups never truncate (keys are at most
 * MAX_KEY_TEXT and the table is shallow); display paths may, harmlessly. */
static void join_path(char *out, size_t size, const char *prefix, const char *key)
{
    int length = prefix && *prefix ? snprintf(out, size, "%s.%s", prefix, key)
                                   : snprintf(out, size, "%s", key);
    if (length < 0 || (size_t)length >= size)
        out[size - 1] = '\0';
}

/* Display paths only ("routes[2]"): a truncated path still makes a useful
 * message, and checking the result keeps -Wformat-truncation quiet. */
static void index_path(char *out, size_t size, const char *path, size_t index)
{
    int length = snprintf(out, size, "%s[%zu]", path, index);
    if (length < 0 || (size_t)length >= size)
        out[size - 1] = '\0';
}

static const char *describe_expected(const struct key_def *key, char *buffer, size_t size)
{
    size_t used = 0;
    switch (key->type) {
    case KEY_BOOL:
        return "a boolean (true/false, yes/no, on/off)";
    case KEY_INT:
    case KEY_LONG:
        snprintf(buffer, size, "an integer %lld..%lld", key->min, key->max);
        return buffer;
    case KEY_ENUM:
    case KEY_WORD:
        used = (size_t)snprintf(buffer, size, "one of ");
        for (size_t i = 0; key->names[i] && used < size; i++)
            used +=
                (size_t)snprintf(buffer + used, size - used, "%s%s", i ? "|" : "", key->names[i]);
        return buffer;
    case KEY_STRING:
    case KEY_SECRET:
        return "a string";
    case KEY_LIST:
    case KEY_SECRET_LIST:
        return "a list of strings";
    case KEY_OBJECTS:
        return "a list of mappings";
    }
    return "a value";
}

/* ------------------------------------------------------------------------ */
/* Small parsers and string helpers                                          */
/* ------------------------------------------------------------------------ */

/* Strict decimal: optional sign, digits, nothing else (no spaces, 0x, 1e3, 1_000). */
static bool parse_integer(const char *text, long long *value)
{
    const char *digits = text + (text[0] == '-' || text[0] == '+');
    char *end = NULL;
    if (*digits < '0' || *digits > '9')
        return false;
    errno = 0;
    long long parsed = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0')
        return false;
    *value = parsed;
    return true;
}

static bool parse_bool(const char *text, bool *value)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < ARRAY_COUNT(yes); i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *value = true;
            return true;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *value = false;
            return true;
        }
    }
    return false;
}

static int find_name(const char *const *names, const char *text)
{
    for (int i = 0; names[i]; i++)
        if (strcasecmp(names[i], text) == 0)
            return i;
    return -1;
}

/* Strict UTF-8 decoder (no overlongs, surrogates or > U+10FFFF). Stops at NUL.
 * Returns the sequence length, or 0 when invalid. */
static size_t utf8_decode(const unsigned char *s, uint32_t *out)
{
    static const uint32_t minimum[] = {0, 0, 0x80, 0x800, 0x10000};
    uint32_t code;
    size_t length;
    if (s[0] < 0x80) {
        *out = s[0];
        return 1;
    } else if ((s[0] & 0xE0) == 0xC0) {
        code = s[0] & 0x1Fu;
        length = 2;
    } else if ((s[0] & 0xF0) == 0xE0) {
        code = s[0] & 0x0Fu;
        length = 3;
    } else if ((s[0] & 0xF8) == 0xF0) {
        code = s[0] & 0x07u;
        length = 4;
    } else {
        return 0;
    }
    for (size_t i = 1; i < length; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        code = (code << 6) | (s[i] & 0x3Fu);
    }
    if (code < minimum[length] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF))
        return 0;
    *out = code;
    return length;
}

static bool utf8_valid(const char *text)
{
    const unsigned char *p = (const unsigned char *)text;
    uint32_t code;
    while (*p) {
        size_t length = utf8_decode(p, &code);
        if (length == 0)
            return false;
        p += length;
    }
    return true;
}

static bool replace_string(struct loader *ld, char **field, const char *text, size_t length)
{
    char *copy = malloc(length + 1);
    if (!copy) {
        out_of_memory(ld);
        return false;
    }
    memcpy(copy, text, length);
    copy[length] = '\0';
    free(*field);
    *field = copy;
    return true;
}

static void free_string_list(struct config_string_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

static void install_list(struct config_string_list *field, struct config_string_list *list)
{
    free_string_list(field);
    *field = *list;
    list->items = NULL;
    list->count = 0;
}

/* ------------------------------------------------------------------------ */
/* Setting values                                                            */
/* ------------------------------------------------------------------------ */

/*
 * Convert `text` for a scalar key and store it in the field at base+offset.
 * Reports and returns false when the text is not acceptable; the field then
 * keeps its previous value. `is_default` skips string checks, because some
 * defaults ("" for a required route name) are placeholders, not values.
 */
static bool set_scalar(struct loader *ld, const struct key_def *key, void *base, const char *text,
                       const struct origin *at, const char *path, bool is_default)
{
    void *field = (char *)base + key->offset;
    char expected[160], got[ECHO_TEXT];
    long long number = 0;
    bool flag = false;
    int index = -1;
    const char *problem;

    switch (key->type) {
    case KEY_BOOL:
        if (!parse_bool(text, &flag))
            break;
        *(bool *)field = flag;
        return true;
    case KEY_INT:
        if (!parse_integer(text, &number) || number < key->min || number > key->max ||
            number < INT_MIN || number > INT_MAX)
            break;
        *(int *)field = (int)number;
        return true;
    case KEY_LONG:
        if (!parse_integer(text, &number) || number < key->min || number > key->max ||
            number < LONG_MIN || number > LONG_MAX)
            break;
        *(long *)field = (long)number;
        return true;
    case KEY_ENUM:
        index = find_name(key->names, text);
        if (index < 0)
            break;
        *(int *)field = index;
        return true;
    case KEY_WORD:
        index = find_name(key->names, text);
        if (index < 0)
            break;
        return replace_string(ld, (char **)field, key->names[index], strlen(key->names[index]));
    case KEY_STRING:
    case KEY_SECRET:
        problem = is_default || !key->check ? NULL : key->check(text);
        if (problem) {
            if (key->type == KEY_SECRET)
                report(ld, at, path, "%s", problem);
            else
                report(ld, at, path, "%s, got %s", problem, echo(got, sizeof got, text));
            return false;
        }
        return replace_string(ld, (char **)field, text, strlen(text));
    case KEY_LIST:
    case KEY_SECRET_LIST:
    case KEY_OBJECTS:
        report(ld, at, path, "internal error: not a scalar key");
        return false;
    }
    report(ld, at, path, "expected %s, got %s", describe_expected(key, expected, sizeof expected),
           echo(got, sizeof got, text));
    return false;
}

/* List items share one check so YAML, environment and *_file lists agree. */
static bool check_list_item(struct loader *ld, const struct key_def *key, const char *text,
                            const struct origin *at, const char *path)
{
    char got[ECHO_TEXT];
    const char *problem = key->check ? key->check(text) : NULL;
    if (!problem)
        return true;
    if (key->type == KEY_SECRET_LIST)
        report(ld, at, path, "%s", problem);
    else
        report(ld, at, path, "%s, got %s", problem, echo(got, sizeof got, text));
    return false;
}

/*
 * Split `text` at `separator` into a string list for `key` (environment: ',';
 * tokens file: '\n'), trimming blanks and skipping empty items. Installs the
 * list only when every item is valid. `text` is not modified.
 */
static void set_list_from_text(struct loader *ld, const struct key_def *key, void *base,
                               const char *text, char separator, const struct origin *at)
{
    struct config_string_list list = {0};
    size_t capacity = 1;
    bool ok = true;
    char path[PATH_TEXT];

    for (const char *p = text; *p; p++)
        capacity += *p == separator;
    if (capacity > MAX_LIST_ITEMS) {
        report(ld, at, key->path, "more than %u items", MAX_LIST_ITEMS);
        goto out;
    }
    list.items = calloc(capacity, sizeof *list.items);
    if (!list.items) {
        out_of_memory(ld);
        goto out;
    }
    for (const char *p = text;;) {
        const char *end = strchr(p, separator);
        const char *next = end ? end + 1 : NULL;
        if (!end)
            end = p + strlen(p);
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
            p++;
        while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
            end--;
        if (end > p) {
            char *item = malloc((size_t)(end - p) + 1);
            if (!item) {
                out_of_memory(ld);
                goto out;
            }
            memcpy(item, p, (size_t)(end - p));
            item[end - p] = '\0';
            index_path(path, sizeof path, key->path, list.count);
            if (check_list_item(ld, key, item, at, path)) {
                list.items[list.count++] = item;
            } else {
                free(item);
                ok = false;
            }
        }
        if (!next)
            break;
        p = next;
    }
    if (ok)
        install_list((struct config_string_list *)((char *)base + key->offset), &list);
out:
    free_string_list(&list);
}

static void free_table(const struct key_table *table, void *base);

static void free_objects(const struct key_def *key, void *base)
{
    const struct object_list *objects = key->objects;
    void *list = (char *)base + key->offset;
    size_t count = 0;
    char *items = objects->get(list, &count);
    for (size_t i = 0; i < count; i++)
        free_table(objects->table, items + i * objects->item_size);
    free(items);
    objects->set(list, NULL, 0);
}

/* Release every owned field of one table's struct and leave them NULL/empty. */
static void free_table(const struct key_table *table, void *base)
{
    for (size_t i = 0; i < table->count; i++) {
        const struct key_def *key = &table->keys[i];
        void *field = (char *)base + key->offset;
        switch (key->type) {
        case KEY_STRING:
        case KEY_SECRET:
        case KEY_WORD:
            free(*(char **)field);
            *(char **)field = NULL;
            break;
        case KEY_LIST:
        case KEY_SECRET_LIST:
            free_string_list(field);
            break;
        case KEY_OBJECTS:
            free_objects(key, base);
            break;
        case KEY_BOOL:
        case KEY_INT:
        case KEY_LONG:
        case KEY_ENUM:
            break;
        }
    }
}

/* Fill one table's struct with its defaults; strings become "" when unset so
 * that consumers never see NULL. */
static void apply_defaults(struct loader *ld, const struct key_table *table, void *base)
{
    for (size_t i = 0; i < table->count && ld->status == BUTLER_OK; i++) {
        const struct key_def *key = &table->keys[i];
        if (key->type == KEY_LIST || key->type == KEY_SECRET_LIST || key->type == KEY_OBJECTS)
            continue;
        set_scalar(ld, key, base, key->def ? key->def : "", NULL, key->path, true);
    }
}

/* ------------------------------------------------------------------------ */
/* YAML -> tree                                                              */
/* ------------------------------------------------------------------------ */

enum node_kind { NODE_SCALAR, NODE_SEQUENCE, NODE_MAPPING };

struct node;

struct map_entry {
    char *key; /* owned */
    size_t line, column;
    struct node *value; /* owned */
};

struct node {
    enum node_kind kind;
    size_t line, column;       /* 1-based */
    bool is_null;              /* plain "", "~" or "null" */
    char *text;                /* NODE_SCALAR, owned, NUL-free */
    struct node **items;       /* NODE_SEQUENCE, owned */
    struct map_entry *entries; /* NODE_MAPPING, owned */
    size_t count, capacity;
};

/* Recursion is bounded by MAX_DEPTH, enforced while building. */
static void node_free(struct node *node)
{
    if (!node)
        return;
    for (size_t i = 0; i < node->count; i++) {
        if (node->kind == NODE_SEQUENCE) {
            node_free(node->items[i]);
        } else if (node->kind == NODE_MAPPING) {
            free(node->entries[i].key);
            node_free(node->entries[i].value);
        }
    }
    free(node->items);
    free(node->entries);
    free(node->text);
    free(node);
}

struct frame {
    struct node *node; /* borrowed: owned by the tree */
    char *key;         /* mapping: a key waiting for its value, owned */
    size_t key_line, key_column;
};

struct builder {
    struct loader *ld;
    struct node *root;
    struct frame stack[MAX_DEPTH];
    size_t depth;
    size_t nodes;
    unsigned documents;
};

static struct origin origin_of_mark(yaml_mark_t mark)
{
    return origin_at(mark.line + 1, mark.column + 1);
}

static struct node *new_node(struct builder *b, enum node_kind kind, yaml_mark_t mark)
{
    struct node *node;
    if (++b->nodes > MAX_NODES) {
        struct origin at = origin_of_mark(mark);
        report(b->ld, &at, NULL, "document too large (more than %u nodes)", MAX_NODES);
        return NULL;
    }
    node = calloc(1, sizeof *node);
    if (!node) {
        out_of_memory(b->ld);
        return NULL;
    }
    node->kind = kind;
    node->line = mark.line + 1;
    node->column = mark.column + 1;
    return node;
}

/* Hang `node` under the innermost open collection (or make it the root).
 * Always takes ownership of `node`: on failure it is freed. */
static bool attach(struct builder *b, struct node *node)
{
    struct frame *top;
    struct origin at = origin_at(node->line, node->column);

    if (b->depth == 0) {
        node_free(b->root); /* unreachable: a second document is refused earlier */
        b->root = node;
        return true;
    }
    top = &b->stack[b->depth - 1];
    if (top->node->kind == NODE_SEQUENCE) {
        if (top->node->count >= MAX_LIST_ITEMS) {
            report(b->ld, &at, NULL, "list longer than %u items", MAX_LIST_ITEMS);
            goto fail;
        }
        if (top->node->count == top->node->capacity) {
            size_t capacity = top->node->capacity ? top->node->capacity * 2 : 8;
            struct node **items = realloc(top->node->items, capacity * sizeof *items);
            if (!items) {
                out_of_memory(b->ld);
                goto fail;
            }
            top->node->items = items;
            top->node->capacity = capacity;
        }
        top->node->items[top->node->count++] = node;
        return true;
    }
    if (!top->key) {
        if (node->kind != NODE_SCALAR) {
            report(b->ld, &at, NULL, "mapping keys must be plain strings");
            goto fail;
        }
        top->key = node->text;
        top->key_line = node->line;
        top->key_column = node->column;
        node->text = NULL;
        node_free(node);
        return true;
    }
    if (top->node->count >= MAX_MAP_ENTRIES) {
        report(b->ld, &at, NULL, "mapping with more than %u keys", MAX_MAP_ENTRIES);
        goto fail;
    }
    if (top->node->count == top->node->capacity) {
        size_t capacity = top->node->capacity ? top->node->capacity * 2 : 8;
        struct map_entry *entries = realloc(top->node->entries, capacity * sizeof *entries);
        if (!entries) {
            out_of_memory(b->ld);
            goto fail;
        }
        top->node->entries = entries;
        top->node->capacity = capacity;
    }
    top->node->entries[top->node->count++] = (struct map_entry){
        .key = top->key, .line = top->key_line, .column = top->key_column, .value = node};
    top->key = NULL;
    return true;
fail:
    node_free(node);
    return false;
}

static bool is_null_word(const char *text)
{
    return !*text || strcmp(text, "~") == 0 || strcmp(text, "null") == 0 ||
           strcmp(text, "Null") == 0 || strcmp(text, "NULL") == 0;
}

static bool handle_scalar(struct builder *b, const yaml_event_t *event)
{
    const char *value = (const char *)event->data.scalar.value;
    size_t length = event->data.scalar.length;
    struct origin at = origin_of_mark(event->start_mark);
    struct node *node;

    if (length > MAX_SCALAR_BYTES) {
        report(b->ld, &at, NULL, "value longer than %u bytes", MAX_SCALAR_BYTES);
        return false;
    }
    /* "\0" in a double-quoted scalar would silently cut keys and values short. */
    if (memchr(value, '\0', length)) {
        report(b->ld, &at, NULL, "NUL character in a value");
        return false;
    }
    node = new_node(b, NODE_SCALAR, event->start_mark);
    if (!node)
        return false;
    node->text = malloc(length + 1);
    if (!node->text) {
        out_of_memory(b->ld);
        node_free(node);
        return false;
    }
    memcpy(node->text, value, length);
    node->text[length] = '\0';
    node->is_null = event->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && is_null_word(node->text);
    return attach(b, node);
}

static bool handle_event(struct builder *b, const yaml_event_t *event)
{
    struct origin at = origin_of_mark(event->start_mark);
    struct node *node;

    switch (event->type) {
    case YAML_NO_EVENT:
    case YAML_STREAM_START_EVENT:
    case YAML_STREAM_END_EVENT:
    case YAML_DOCUMENT_END_EVENT:
        return true;
    case YAML_DOCUMENT_START_EVENT:
        if (++b->documents > 1) {
            report(b->ld, &at, NULL, "only one YAML document is allowed");
            return false;
        }
        return true;
    case YAML_ALIAS_EVENT:
        /* Aliases make "billion laughs" expansion possible; no key needs them. */
        report(b->ld, &at, NULL, "YAML aliases (*name) are not supported");
        return false;
    case YAML_SCALAR_EVENT:
        return handle_scalar(b, event);
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        if (b->depth >= MAX_DEPTH) {
            report(b->ld, &at, NULL, "nested deeper than %u levels", MAX_DEPTH);
            return false;
        }
        node = new_node(b, event->type == YAML_SEQUENCE_START_EVENT ? NODE_SEQUENCE : NODE_MAPPING,
                        event->start_mark);
        if (!node || !attach(b, node))
            return false;
        b->stack[b->depth++] = (struct frame){.node = node};
        return true;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        if (b->depth > 0) {
            b->depth--;
            free(b->stack[b->depth].key); /* cannot be set: libyaml pairs keys */
            b->stack[b->depth].key = NULL;
        }
        return true;
    }
    return true;
}

static void report_yaml_error(struct loader *ld, const yaml_parser_t *parser, const char *text,
                              size_t length)
{
    struct origin at;
    const char *problem = parser->problem ? parser->problem : "syntax error";

    if (parser->error == YAML_MEMORY_ERROR) {
        out_of_memory(ld);
        return;
    }
    if (parser->error == YAML_READER_ERROR) {
        /* Reader errors carry a byte offset, not a mark. */
        size_t offset = parser->problem_offset < length ? parser->problem_offset : length;
        size_t line = 1, line_start = 0;
        for (size_t i = 0; i < offset; i++) {
            if (text[i] == '\n') {
                line++;
                line_start = i + 1;
            }
        }
        at = origin_at(line, offset - line_start + 1);
        report(ld, &at, NULL, "invalid input: %s", problem);
        return;
    }
    at = origin_of_mark(parser->problem_mark);
    if (parser->context)
        report(ld, &at, NULL, "invalid YAML: %s (%s started at line %zu, column %zu)", problem,
               parser->context, parser->context_mark.line + 1, parser->context_mark.column + 1);
    else
        report(ld, &at, NULL, "invalid YAML: %s", problem);
}

/*
 * Parse `text` into a tree. Returns the root (NULL for an empty document or on
 * error; errors are reported and counted in ld). The caller owns the tree.
 */
static struct node *build_tree(struct loader *ld, const char *text, size_t length)
{
    yaml_parser_t parser;
    yaml_event_t event;
    struct builder b = {.ld = ld};
    bool ok = false;

    if (!yaml_parser_initialize(&parser)) {
        out_of_memory(ld);
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, length);
    for (;;) {
        if (!yaml_parser_parse(&parser, &event)) {
            report_yaml_error(ld, &parser, text, length);
            goto out;
        }
        bool done = event.type == YAML_STREAM_END_EVENT;
        bool handled = handle_event(&b, &event);
        yaml_event_delete(&event);
        if (!handled)
            goto out;
        if (done)
            break;
    }
    ok = true;
out:
    yaml_parser_delete(&parser);
    for (size_t i = 0; i < b.depth; i++)
        free(b.stack[i].key);
    if (!ok) {
        node_free(b.root);
        b.root = NULL;
    }
    return b.root;
}

/* ------------------------------------------------------------------------ */
/* Tree -> struct                                                            */
/* ------------------------------------------------------------------------ */

/* What a node is, for "got ..." in messages. Only a known non-secret scalar
 * key may quote the value: anything else could be a secret in the wrong place
 * (a mis-indented webhook URL, say). */
static const char *describe_node(const struct node *node, bool secret, char *buffer, size_t size)
{
    if (node->kind == NODE_MAPPING)
        return "a mapping";
    if (node->kind == NODE_SEQUENCE)
        return "a list";
    if (node->is_null)
        return "null";
    return secret ? "a string" : echo(buffer, size, node->text);
}

static bool is_secret(const struct key_def *key)
{
    return key->type == KEY_SECRET || key->type == KEY_SECRET_LIST;
}

static int find_key(const struct key_table *table, const char *path)
{
    for (size_t i = 0; i < table->count; i++)
        if (strcmp(table->keys[i].path, path) == 0)
            return (int)i;
    return -1;
}

static bool is_section(const struct key_table *table, const char *path)
{
    size_t length = strlen(path);
    for (size_t i = 0; i < table->count; i++)
        if (strncmp(table->keys[i].path, path, length) == 0 && table->keys[i].path[length] == '.')
            return true;
    return false;
}

/* "mqtt.password_file" -> index of "mqtt.password" when it has a file variant. */
static int find_file_key(const struct key_table *table, const char *path)
{
    static const char suffix[] = "_file";
    char base_path[PATH_TEXT];
    size_t length = strlen(path);
    if (length <= sizeof suffix - 1 || length >= sizeof base_path ||
        strcmp(path + length - (sizeof suffix - 1), suffix) != 0)
        return -1;
    memcpy(base_path, path, length - (sizeof suffix - 1));
    base_path[length - (sizeof suffix - 1)] = '\0';
    int index = find_key(table, base_path);
    return index >= 0 && table->keys[index].has_file ? index : -1;
}

/* Table keys are [a-z0-9_]; anything else (dots included) cannot match. */
static bool valid_key_text(const char *key)
{
    size_t length = strlen(key);
    if (length == 0 || length > MAX_KEY_TEXT)
        return false;
    for (const char *p = key; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return false;
    return true;
}

static void walk_mapping(struct loader *ld, const struct key_table *table, void *base,
                         const struct node *map, const char *prefix, const char *display,
                         uint64_t *seen, struct key_state *states);

static void apply_list(struct loader *ld, const struct key_def *key, void *base,
                       const struct node *node, const char *path)
{
    struct config_string_list list = {0};
    bool secret = key->type == KEY_SECRET_LIST;
    bool ok = true;
    char got[ECHO_TEXT], item_path[PATH_TEXT];
    struct origin at = origin_at(node->line, node->column);

    if (node->kind != NODE_SEQUENCE) {
        report(ld, &at, path, "expected a list of strings, got %s",
               describe_node(node, secret, got, sizeof got));
        goto out;
    }
    if (node->count == 0)
        goto out; /* the default is already empty and keys cannot repeat */
    list.items = calloc(node->count, sizeof *list.items);
    if (!list.items) {
        out_of_memory(ld);
        goto out;
    }
    for (size_t i = 0; i < node->count; i++) {
        const struct node *item = node->items[i];
        struct origin item_at = origin_at(item->line, item->column);
        index_path(item_path, sizeof item_path, path, i);
        if (item->kind != NODE_SCALAR || item->is_null) {
            report(ld, &item_at, item_path, "expected a string, got %s",
                   describe_node(item, secret, got, sizeof got));
            ok = false;
            continue;
        }
        if (!check_list_item(ld, key, item->text, &item_at, item_path)) {
            ok = false;
            continue;
        }
        list.items[list.count] = strdup(item->text);
        if (!list.items[list.count]) {
            out_of_memory(ld);
            goto out;
        }
        list.count++;
    }
    if (ok)
        install_list((struct config_string_list *)((char *)base + key->offset), &list);
out:
    free_string_list(&list);
}

/*
 * A list of mappings, each walked against the object list's own table.
 * Items are installed even when some have errors (config_free releases them
 * when the load fails); item-level checks run only on items without errors so
 * one mistake does not cascade into several messages.
 */
static void walk_objects(struct loader *ld, const struct key_def *key, void *base,
                         const struct node *node, const char *path, struct key_state *state)
{
    const struct object_list *objects = key->objects;
    char *items = NULL;
    size_t count = node->count;
    struct origin *origins = NULL;
    char got[ECHO_TEXT], prefix[PATH_TEXT], required_path[PATH_TEXT];
    struct origin at = origin_at(node->line, node->column);

    if (node->kind != NODE_SEQUENCE) {
        report(ld, &at, path, "expected a list of mappings, got %s",
               describe_node(node, true, got, sizeof got));
        return;
    }
    if (count > objects->max_items) {
        report(ld, &at, path, "at most %zu items are allowed, got %zu", objects->max_items, count);
        return;
    }
    if (count == 0)
        return;
    items = calloc(count, objects->item_size);
    origins = calloc(count, sizeof *origins);
    if (!items || !origins) {
        out_of_memory(ld);
        goto out;
    }
    for (size_t i = 0; i < count; i++)
        apply_defaults(ld, objects->table, items + i * objects->item_size);
    if (ld->status != BUTLER_OK)
        goto out;

    for (size_t i = 0; i < count && !stopped(ld); i++) {
        void *item = items + i * objects->item_size;
        const struct node *child = node->items[i];
        unsigned errors_before = ld->error_count;
        uint64_t seen = 0;

        origins[i] = origin_at(child->line, child->column);
        index_path(prefix, sizeof prefix, path, i);
        if (child->kind != NODE_MAPPING) {
            report(ld, &origins[i], prefix, "expected a mapping, got %s",
                   describe_node(child, true, got, sizeof got));
            continue;
        }
        walk_mapping(ld, objects->table, item, child, "", prefix, &seen, NULL);
        for (size_t k = 0; k < objects->table->count; k++) {
            if (objects->table->keys[k].required && !(seen & (UINT64_C(1) << k))) {
                join_path(required_path, sizeof required_path, prefix,
                          objects->table->keys[k].path);
                report(ld, &origins[i], required_path, "required key is missing");
            }
        }
        if (ld->error_count == errors_before && objects->check_item)
            objects->check_item(ld, items, i, prefix, &origins[i]);
    }

    objects->set((char *)base + key->offset, items, count);
    items = NULL;
    if (state) {
        free(state->items);
        state->items = origins;
        state->item_count = count;
        origins = NULL;
    }
out:
    if (items) {
        for (size_t i = 0; i < count; i++)
            free_table(objects->table, items + i * objects->item_size);
        free(items);
    }
    free(origins);
}

static void apply_node(struct loader *ld, const struct key_table *table, size_t index, void *base,
                       const struct node *node, const char *path, uint64_t *seen,
                       struct key_state *states)
{
    const struct key_def *key = &table->keys[index];
    struct origin at = origin_at(node->line, node->column);
    char expected[160], got[ECHO_TEXT];

    /* A null value ("port:" or "port: ~") means "not set": keep the default. */
    if (node->kind == NODE_SCALAR && node->is_null)
        return;
    if (seen && index < 64)
        *seen |= UINT64_C(1) << index;
    if (states)
        states[index].value = at;
    switch (key->type) {
    case KEY_LIST:
    case KEY_SECRET_LIST:
        apply_list(ld, key, base, node, path);
        break;
    case KEY_OBJECTS:
        walk_objects(ld, key, base, node, path, states ? &states[index] : NULL);
        break;
    default:
        if (node->kind != NODE_SCALAR) {
            report(ld, &at, path, "expected %s, got %s",
                   describe_expected(key, expected, sizeof expected),
                   describe_node(node, is_secret(key), got, sizeof got));
            break;
        }
        set_scalar(ld, key, base, node->text, &at, path, false);
        break;
    }
}

/*
 * Apply one YAML mapping to the struct at `base`. `prefix` is the table path
 * of this mapping ("" or "mqtt.tls"); `display` is what error messages put in
 * front of it ("" or "routes[2]"). `states` is non-NULL only for the top-level
 * table, whose keys have environment and *_file layers.
 *
 * Duplicate detection is quadratic in the mapping size, but only keys that
 * pass the unknown-key test reach it after the first MAX_ERRORS, and the
 * table has fewer than 100 keys, so the work stays bounded.
 */
static void walk_mapping(struct loader *ld, const struct key_table *table, void *base,
                         const struct node *map, const char *prefix, const char *display,
                         uint64_t *seen, struct key_state *states)
{
    char relative[PATH_TEXT], shown[PATH_TEXT], got[ECHO_TEXT], section[PATH_TEXT];

    for (size_t i = 0; i < map->count && !stopped(ld); i++) {
        const struct map_entry *entry = &map->entries[i];
        const struct node *value = entry->value;
        struct origin key_at = origin_at(entry->line, entry->column);
        bool duplicate = false;
        int index;

        join_path(section, sizeof section, display, prefix);
        if (!valid_key_text(entry->key)) {
            report(ld, &key_at, section, "unknown key %s", echo(got, sizeof got, entry->key));
            continue;
        }
        join_path(relative, sizeof relative, prefix, entry->key);
        join_path(shown, sizeof shown, display, relative);
        for (size_t j = 0; j < i && !duplicate; j++)
            duplicate = strcmp(map->entries[j].key, entry->key) == 0;
        if (duplicate) {
            report(ld, &key_at, shown, "duplicate key");
            continue;
        }

        index = find_key(table, relative);
        if (index >= 0) {
            apply_node(ld, table, (size_t)index, base, value, shown, seen, states);
            continue;
        }
        if (is_section(table, relative)) {
            if (value->kind == NODE_MAPPING) {
                walk_mapping(ld, table, base, value, relative, display, seen, states);
            } else if (!(value->kind == NODE_SCALAR && value->is_null)) {
                struct origin at = origin_at(value->line, value->column);
                report(ld, &at, shown, "expected a mapping, got %s",
                       describe_node(value, true, got, sizeof got));
            }
            continue;
        }
        index = states ? find_file_key(table, relative) : -1;
        if (index >= 0) {
            struct key_state *state = &states[index];
            struct origin at = origin_at(value->line, value->column);
            if (value->kind != NODE_SCALAR) {
                report(ld, &at, shown, "expected a file path, got %s",
                       describe_node(value, true, got, sizeof got));
            } else if (!value->is_null &&
                       replace_string(ld, &state->file_ref, value->text, strlen(value->text))) {
                state->file = at;
            }
            continue;
        }
        report(ld, &key_at, shown, "unknown key");
    }
}

static void walk_root(struct loader *ld, const struct node *root, struct butler_config *config)
{
    char got[ECHO_TEXT];
    if (!root || (root->kind == NODE_SCALAR && root->is_null))
        return; /* empty file, comments only, or a bare "---" */
    if (root->kind != NODE_MAPPING) {
        struct origin at = origin_at(root->line, root->column);
        report(ld, &at, NULL, "expected a mapping of sections at the top level, got %s",
               describe_node(root, true, got, sizeof got));
        return;
    }
    walk_mapping(ld, &config_table, config, root, "", "", NULL, ld->state);
}

/* ------------------------------------------------------------------------ */
/* Environment, *_file secrets, cross-key checks                             */
/* ------------------------------------------------------------------------ */

/* "mqtt.tls.ca_file" -> "BUTLER_MQTT_TLS_CA_FILE" (+ suffix). */
static bool env_name(const char *path, const char *suffix, char *out, size_t size)
{
    int length = snprintf(out, size, "BUTLER_%s%s", path, suffix);
    if (length < 0 || (size_t)length >= size)
        return false;
    for (char *p = out; *p; p++) {
        if (*p == '.')
            *p = '_';
        else if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    }
    return true;
}

static bool secret_is_set(const struct key_def *key, const void *base)
{
    const void *field = (const char *)base + key->offset;
    if (key->type == KEY_SECRET_LIST)
        return ((const struct config_string_list *)field)->count > 0;
    return (*(char *const *)field)[0] != '\0';
}

static void clear_secret(struct loader *ld, const struct key_def *key, void *base)
{
    void *field = (char *)base + key->offset;
    if (key->type == KEY_SECRET_LIST)
        free_string_list(field);
    else
        replace_string(ld, (char **)field, "", 0);
}

/*
 * BUTLER_<PATH> overrides the file for every key except lists of mappings;
 * string lists are comma-separated. For secrets, the environment layer wins
 * over the file layer as a whole: BUTLER_X drops a file's x_file and
 * BUTLER_X_FILE drops a file's inline x. Both forms in one layer is an error
 * (reported by read_secret_files).
 */
static void apply_environment(struct loader *ld, struct butler_config *config)
{
    for (size_t i = 0; i < CONFIG_KEY_COUNT && !stopped(ld); i++) {
        const struct key_def *key = &config_keys[i];
        struct key_state *state = &ld->state[i];
        struct origin at = {0};
        const char *value;

        if (key->type == KEY_OBJECTS || !env_name(key->path, "", at.env, sizeof at.env))
            continue;
        value = getenv(at.env);
        if (value) {
            if (strlen(value) > MAX_SCALAR_BYTES)
                report(ld, &at, key->path, "value longer than %u bytes", MAX_SCALAR_BYTES);
            else if (!utf8_valid(value))
                report(ld, &at, key->path, "value is not valid UTF-8");
            else if (key->type == KEY_LIST || key->type == KEY_SECRET_LIST)
                set_list_from_text(ld, key, config, value, ',', &at);
            else
                set_scalar(ld, key, config, value, &at, key->path, false);
            state->value = at;
            if (key->has_file && state->file_ref && !state->file.env[0]) {
                free(state->file_ref);
                state->file_ref = NULL;
            }
        }
        if (!key->has_file || !env_name(key->path, "_FILE", at.env, sizeof at.env))
            continue;
        value = getenv(at.env);
        if (!value)
            continue;
        if (state->value.line > 0)
            clear_secret(ld, key, config);
        if (replace_string(ld, &state->file_ref, value, strlen(value)))
            state->file = at;
    }
}

enum read_result { READ_OK, READ_SYSTEM, READ_TOO_LARGE, READ_NOT_REGULAR, READ_NOMEM };

/*
 * Read a whole file, at most `cap` bytes, into a NUL-terminated heap buffer
 * (*text, owned by the caller on READ_OK). A regular file's size is checked
 * before reading. `regular_only` also opens non-blocking, so a FIFO or
 * device named by a hostile config can never block start-up.
 */
static enum read_result read_bounded(const char *path, size_t cap, bool regular_only, char **text,
                                     size_t *length, int *error_number)
{
    enum read_result result = READ_SYSTEM;
    struct stat info;
    char *buffer = NULL;
    size_t used = 0, capacity;
    int fd;

    *text = NULL;
    *length = 0;
    *error_number = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | (regular_only ? O_NONBLOCK : 0));
    if (fd < 0) {
        *error_number = errno;
        goto out;
    }
    if (fstat(fd, &info) != 0) {
        *error_number = errno;
        goto out;
    }
    if (S_ISDIR(info.st_mode)) {
        *error_number = EISDIR;
        goto out;
    }
    if (regular_only && !S_ISREG(info.st_mode)) {
        result = READ_NOT_REGULAR;
        goto out;
    }
    if (S_ISREG(info.st_mode) && (uintmax_t)info.st_size > cap) {
        result = READ_TOO_LARGE;
        goto out;
    }
    capacity = S_ISREG(info.st_mode) ? (size_t)info.st_size + 1 : 4096;
    for (;;) {
        if (used + 1 >= capacity) {
            /* Grown only for files that change under us or are not regular. */
            size_t bigger = capacity * 2 > cap + 2 ? cap + 2 : capacity * 2;
            char *grown;
            if (used > cap) {
                result = READ_TOO_LARGE;
                goto out;
            }
            grown = realloc(buffer, bigger);
            if (!grown) {
                result = READ_NOMEM;
                goto out;
            }
            buffer = grown;
            capacity = bigger;
        } else if (!buffer) {
            buffer = malloc(capacity);
            if (!buffer) {
                result = READ_NOMEM;
                goto out;
            }
        }
        ssize_t got = read(fd, buffer + used, capacity - used - 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            *error_number = errno;
            goto out;
        }
        if (got == 0)
            break;
        used += (size_t)got;
    }
    if (used > cap) {
        result = READ_TOO_LARGE;
        goto out;
    }
    if (!buffer) {
        buffer = malloc(1);
        if (!buffer) {
            result = READ_NOMEM;
            goto out;
        }
    }
    buffer[used] = '\0';
    *text = buffer;
    *length = used;
    buffer = NULL;
    result = READ_OK;
out:
    free(buffer);
    if (fd >= 0)
        close(fd);
    return result;
}

static void read_secret_file(struct loader *ld, const struct key_def *key, struct key_state *state,
                             struct butler_config *config)
{
    char path[PATH_TEXT], name[ECHO_TEXT];
    char *text = NULL;
    size_t length = 0;
    int error_number = 0;

    snprintf(path, sizeof path, "%s_file", key->path);
    if (secret_is_set(key, config)) {
        report(ld, &state->file, path, "cannot be combined with %s; set only one of them",
               key->path);
        goto out;
    }
    echo(name, sizeof name, state->file_ref);
    switch (
        read_bounded(state->file_ref, MAX_SECRET_FILE_BYTES, true, &text, &length, &error_number)) {
    case READ_OK:
        break;
    case READ_SYSTEM:
        report(ld, &state->file, path, "cannot read %s: %s", name, strerror(error_number));
        goto out;
    case READ_TOO_LARGE:
        report(ld, &state->file, path, "%s is larger than %u bytes", name, MAX_SECRET_FILE_BYTES);
        goto out;
    case READ_NOT_REGULAR:
        report(ld, &state->file, path, "%s is not a regular file", name);
        goto out;
    case READ_NOMEM:
        out_of_memory(ld);
        goto out;
    }
    if (memchr(text, '\0', length)) {
        report(ld, &state->file, path, "%s contains a NUL byte", name);
        goto out;
    }
    if (key->type == KEY_SECRET_LIST) {
        set_list_from_text(ld, key, config, text, '\n', &state->file);
    } else {
        while (length > 0 && (text[length - 1] == '\n' || text[length - 1] == '\r'))
            length--;
        replace_string(ld, (char **)((char *)config + key->offset), text, length);
    }
out:
    if (text)
        memset(text, 0, length); /* do not leave a secret in freed heap */
    free(text);
}

static void read_secret_files(struct loader *ld, struct butler_config *config)
{
    for (size_t i = 0; i < CONFIG_KEY_COUNT && !stopped(ld); i++) {
        struct key_state *state = &ld->state[i];
        if (config_keys[i].has_file && state->file_ref && state->file_ref[0])
            read_secret_file(ld, &config_keys[i], state, config);
    }
}

static const struct origin *origin_of(const struct loader *ld, const char *path)
{
    int index = find_key(&config_table, path);
    return index >= 0 ? &ld->state[index].value : NULL;
}

/* Checks within one route, and its name against the routes before it. */
static void check_route(struct loader *ld, void *items, size_t index, const char *path,
                        const struct origin *at)
{
    struct config_route *routes = items;
    const struct config_route *route = &routes[index];
    char at_path[PATH_TEXT], name[ECHO_TEXT];

    if (route->to == CONFIG_ROUTE_MQTT && !route->topic[0]) {
        join_path(at_path, sizeof at_path, path, "topic");
        report(ld, at, at_path, "required when to is mqtt");
    }
    if (route->to == CONFIG_ROUTE_WEBHOOK && !route->webhook_url[0]) {
        join_path(at_path, sizeof at_path, path, "webhook_url");
        report(ld, at, at_path, "required when to is webhook");
    }
    if (route->to == CONFIG_ROUTE_EMAIL && route->recipients.count == 0) {
        join_path(at_path, sizeof at_path, path, "recipients");
        report(ld, at, at_path, "required when to is email");
    }
    if (!route->condition_custom_property_name[0] != !route->condition_custom_property_value[0]) {
        join_path(at_path, sizeof at_path, path, "condition.custom_property");
        report(ld, at, at_path, "needs both name and value");
    }
    for (size_t j = 0; j < index; j++) {
        if (strcmp(routes[j].name, route->name) == 0) {
            join_path(at_path, sizeof at_path, path, "name");
            report(ld, at, at_path, "duplicate route name %s (also used by routes[%zu])",
                   echo(name, sizeof name, route->name), j);
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
        report(ld, at, "qrs.notifications.enable", "needs qrs.url");
    if (!c->http.enable)
        report(ld, at, "qrs.notifications.enable", "needs http.enable (QRS calls Butler back)");
    if (!c->qrs.notifications.callback_url[0])
        report(ld, at, "qrs.notifications.callback_url",
               "required when qrs.notifications.enable is true (the URL Sense reaches Butler at)");
    if (!secret_is_url_safe(c->qrs.notifications.secret))
        report(ld, origin_of(ld, "qrs.notifications.secret"), "qrs.notifications.secret",
               "expected 16..256 characters of A-Z a-z 0-9 - _ . ~ (it is a URL path segment)");
}

static void validate_config(struct loader *ld, const struct butler_config *c)
{
    const struct key_state *routes_state = &ld->state[find_key(&config_table, "routes")];
    char path[PATH_TEXT];

    if (c->mqtt.reconnect_min_ms > c->mqtt.reconnect_max_ms)
        report(ld, either_origin(ld, "mqtt.reconnect_min_ms", "mqtt.reconnect_max_ms"),
               "mqtt.reconnect_min_ms", "must not exceed mqtt.reconnect_max_ms (%d)",
               c->mqtt.reconnect_max_ms);
    if (c->retry.initial_backoff_ms > c->retry.max_backoff_ms)
        report(ld, either_origin(ld, "retry.initial_backoff_ms", "retry.max_backoff_ms"),
               "retry.initial_backoff_ms", "must not exceed retry.max_backoff_ms (%d)",
               c->retry.max_backoff_ms);
    if (!c->mqtt.tls.cert_file[0] != !c->mqtt.tls.key_file[0])
        report(ld, either_origin(ld, "mqtt.tls.cert_file", "mqtt.tls.key_file"),
               "mqtt.tls.cert_file", "mqtt.tls.cert_file and mqtt.tls.key_file go together");
    if (!c->http.tls.cert_file[0] != !c->http.tls.key_file[0])
        report(ld, either_origin(ld, "http.tls.cert_file", "http.tls.key_file"),
               "http.tls.cert_file", "http.tls.cert_file and http.tls.key_file go together");
    if (c->http.enable && listen_has_tls(c->http.listen) && !c->http.tls.cert_file[0])
        report(ld, origin_of(ld, "http.listen"), "http.listen",
               "a TLS port (suffix 's') needs http.tls.cert_file and http.tls.key_file");

    validate_notifications(ld, c);

    for (size_t i = 0; i < c->routes.count; i++) {
        const struct config_route *route = &c->routes.items[i];
        const struct origin *at = i < routes_state->item_count ? &routes_state->items[i] : NULL;
        snprintf(path, sizeof path, "routes[%zu].webhook_url", i);
        if (route->to == CONFIG_ROUTE_SLACK && !route->webhook_url[0] && !c->slack.webhook_url[0])
            report(ld, at, path, "required when to is slack and slack.webhook_url is empty");
        if (route->to == CONFIG_ROUTE_TEAMS && !route->webhook_url[0] && !c->teams.webhook_url[0])
            report(ld, at, path, "required when to is teams and teams.webhook_url is empty");
        if (route->to == CONFIG_ROUTE_EMAIL && !c->smtp.url[0]) {
            snprintf(path, sizeof path, "routes[%zu].to", i);
            report(ld, at, path, "email routes need smtp.url");
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */
/* ------------------------------------------------------------------------ */

static void loader_free(struct loader *ld)
{
    if (!ld)
        return;
    for (size_t i = 0; i < CONFIG_KEY_COUNT; i++) {
        free(ld->state[i].file_ref);
        free(ld->state[i].items);
    }
    free(ld);
}

/*
 * All layers, in order, into a private struct that is handed to the caller
 * only on success; on failure everything is freed and *config zeroed.
 */
static enum butler_status load_common(const char *name, const char *source, const char *text,
                                      size_t length, bool use_environment,
                                      struct butler_config *config, FILE *errors)
{
    struct butler_config loaded;
    struct loader *ld = calloc(1, sizeof *ld);
    struct node *root = NULL;
    enum butler_status status = BUTLER_ERR_NOMEM;

    memset(&loaded, 0, sizeof loaded);
    if (!ld)
        goto out;
    ld->name = name;
    ld->errors = errors;
    loaded.source_file = strdup(source);
    if (!loaded.source_file) {
        out_of_memory(ld);
        goto out;
    }
    apply_defaults(ld, &config_table, &loaded);
    if (ld->status != BUTLER_OK)
        goto out;

    if (length > MAX_FILE_BYTES) {
        report(ld, NULL, NULL, "larger than %u bytes", MAX_FILE_BYTES);
    } else if (length > 0) {
        root = build_tree(ld, text, length);
        walk_root(ld, root, &loaded);
    }
    if (use_environment)
        apply_environment(ld, &loaded);
    read_secret_files(ld, &loaded);
    if (ld->error_count == 0 && ld->status == BUTLER_OK)
        validate_config(ld, &loaded);

    if (ld->error_count >= MAX_ERRORS && errors)
        fprintf(errors, "%s: too many errors, stopped after %u\n", name, MAX_ERRORS);
    if (ld->status != BUTLER_OK)
        status = ld->status;
    else
        status = ld->error_count > 0 ? BUTLER_ERR_INVALID : BUTLER_OK;
out:
    if (status == BUTLER_ERR_NOMEM && !ld && errors)
        fprintf(errors, "%s: out of memory while loading the configuration\n", name);
    node_free(root);
    loader_free(ld);
    if (status == BUTLER_OK) {
        *config = loaded;
    } else {
        config_free(&loaded);
        memset(config, 0, sizeof *config);
    }
    return status;
}

enum butler_status config_load_buffer(const char *name, const char *text, size_t length,
                                      bool use_environment, struct butler_config *config,
                                      FILE *errors)
{
    if (!config)
        return BUTLER_ERR_INVALID;
    if (!text)
        length = 0;
    return load_common(name && *name ? name : "<buffer>", "", text ? text : "", length,
                       use_environment, config, errors);
}

enum butler_status config_load(const char *path, struct butler_config *config, FILE *errors)
{
    enum butler_status status = BUTLER_ERR_IO;
    char *text = NULL;
    size_t length = 0;
    int error_number = 0;

    if (!config)
        return BUTLER_ERR_INVALID;
    memset(config, 0, sizeof *config);
    if (!path || !*path)
        return load_common("<defaults>", "", "", 0, true, config, errors);

    switch (read_bounded(path, MAX_FILE_BYTES, false, &text, &length, &error_number)) {
    case READ_OK:
        status = load_common(path, path, text, length, true, config, errors);
        goto out;
    case READ_TOO_LARGE:
        if (errors)
            fprintf(errors, "%s: larger than %u bytes\n", path, MAX_FILE_BYTES);
        status = BUTLER_ERR_INVALID;
        goto out;
    case READ_NOMEM:
        if (errors)
            fprintf(errors, "%s: out of memory while reading\n", path);
        status = BUTLER_ERR_NOMEM;
        goto out;
    case READ_NOT_REGULAR: /* not requested for the main file */
    case READ_SYSTEM:
        if (errors)
            fprintf(errors, "%s: cannot read: %s\n", path, strerror(error_number));
        status = BUTLER_ERR_IO;
        goto out;
    }
out:
    free(text);
    return status;
}

void config_free(struct butler_config *config)
{
    if (!config)
        return;
    free_table(&config_table, config);
    free(config->source_file);
    memset(config, 0, sizeof *config);
}

/* ------------------------------------------------------------------------ */
/* Printing                                                                  */
/* ------------------------------------------------------------------------ */

/* Double-quoted YAML scalar that libyaml reads back to the same bytes:
 * everything libyaml's reader rejects raw is written as an escape. */
static void print_quoted(FILE *out, const char *text)
{
    const unsigned char *p = (const unsigned char *)text;
    fputc('"', out);
    while (*p) {
        uint32_t code;
        size_t length;
        if (*p == '"' || *p == '\\') {
            fputc('\\', out);
            fputc(*p++, out);
            continue;
        }
        if (*p >= 0x20 && *p < 0x7f) {
            fputc(*p++, out);
            continue;
        }
        length = utf8_decode(p, &code);
        if (length == 0) {
            fprintf(out, "\\x%02X", *p++);
            continue;
        }
        if (code >= 0xA0 && code != 0xFEFF && code != 0xFFFE && code != 0xFFFF)
            fwrite(p, 1, length, out);
        else if (code <= 0xFF)
            fprintf(out, "\\x%02X", (unsigned)code);
        else
            fprintf(out, "\\u%04X", (unsigned)code);
        p += length;
    }
    fputc('"', out);
}

/* Indentation for the next line; the first line of a list item gets "- ". */
static void print_indent(FILE *out, int indent, bool *dash)
{
    if (*dash) {
        fprintf(out, "%*s- ", indent - 2, "");
        *dash = false;
    } else {
        fprintf(out, "%*s", indent, "");
    }
}

static void print_table(FILE *out, const struct key_table *table, const void *base, int indent,
                        bool dash);

static void print_value(FILE *out, const struct key_def *key, const void *base, int indent)
{
    const void *field = (const char *)base + key->offset;
    bool no_dash = false;
    switch (key->type) {
    case KEY_BOOL:
        fprintf(out, " %s\n", *(const bool *)field ? "true" : "false");
        return;
    case KEY_INT:
        fprintf(out, " %d\n", *(const int *)field);
        return;
    case KEY_LONG:
        fprintf(out, " %ld\n", *(const long *)field);
        return;
    case KEY_STRING:
        fputc(' ', out);
        print_quoted(out, *(char *const *)field ? *(char *const *)field : "");
        fputc('\n', out);
        return;
    case KEY_SECRET: {
        const char *secret = *(char *const *)field;
        fprintf(out, " \"%s\"\n", secret && *secret ? "***" : "");
        return;
    }
    case KEY_ENUM: {
        int value = *(const int *)field;
        int names = 0;
        while (key->names[names])
            names++;
        fprintf(out, " %s\n", value >= 0 && value < names ? key->names[value] : key->names[0]);
        return;
    }
    case KEY_WORD:
        fputc(' ', out);
        print_quoted(out, *(char *const *)field ? *(char *const *)field : "");
        fputc('\n', out);
        return;
    case KEY_LIST:
    case KEY_SECRET_LIST: {
        const struct config_string_list *list = field;
        if (list->count == 0) {
            fputs(" []\n", out);
            return;
        }
        fputc('\n', out);
        for (size_t i = 0; i < list->count; i++) {
            print_indent(out, indent + 2, &no_dash);
            fputs("- ", out);
            if (key->type == KEY_SECRET_LIST)
                fputs("\"***\"", out);
            else
                print_quoted(out, list->items[i]);
            fputc('\n', out);
        }
        return;
    }
    case KEY_OBJECTS: {
        size_t count = 0;
        const char *items = key->objects->get(field, &count);
        if (count == 0) {
            fputs(" []\n", out);
            return;
        }
        fputc('\n', out);
        for (size_t i = 0; i < count; i++)
            print_table(out, key->objects->table, items + i * key->objects->item_size, indent + 4,
                        true);
        return;
    }
    }
}

static size_t split_path(const char *path, const char **segment, size_t *length)
{
    size_t count = 0;
    for (const char *p = path; count < MAX_SEGMENTS;) {
        const char *dot = strchr(p, '.');
        segment[count] = p;
        length[count] = dot ? (size_t)(dot - p) : strlen(p);
        count++;
        if (!dot)
            break;
        p = dot + 1;
    }
    return count;
}

/*
 * Print one table's keys as nested YAML, opening a section mapping whenever
 * the dotted prefix changes. Relies on each section's keys being contiguous
 * in the table. `dash` starts the first line with "- " (a list item).
 */
static void print_table(FILE *out, const struct key_table *table, const void *base, int indent,
                        bool dash)
{
    const char *open[MAX_SEGMENTS];
    size_t open_length[MAX_SEGMENTS];
    size_t open_count = 0;

    for (size_t k = 0; k < table->count; k++) {
        const char *segment[MAX_SEGMENTS];
        size_t length[MAX_SEGMENTS];
        size_t segments = split_path(table->keys[k].path, segment, length);
        size_t common = 0;
        while (common < open_count && common + 1 < segments &&
               open_length[common] == length[common] &&
               memcmp(open[common], segment[common], length[common]) == 0)
            common++;
        open_count = common;
        for (size_t s = common; s + 1 < segments; s++) {
            print_indent(out, indent + 2 * (int)s, &dash);
            fprintf(out, "%.*s:\n", (int)length[s], segment[s]);
            open[s] = segment[s];
            open_length[s] = length[s];
            open_count = s + 1;
        }
        int key_indent = indent + 2 * (int)(segments - 1);
        print_indent(out, key_indent, &dash);
        fprintf(out, "%.*s:", (int)length[segments - 1], segment[segments - 1]);
        print_value(out, &table->keys[k], base, key_indent);
    }
}

void config_print(const struct butler_config *config, FILE *out)
{
    if (!config || !out)
        return;
    fputs("# Effective Butler configuration. Secrets are shown as \"***\" (set) or \"\".\n", out);
    if (config->source_file && config->source_file[0]) {
        fputs("# Loaded from: ", out);
        for (const unsigned char *p = (const unsigned char *)config->source_file; *p; p++)
            fputc(*p >= 0x20 && *p != 0x7f ? *p : '?', out);
        fputc('\n', out);
    }
    print_table(out, &config_table, config, 0, false);
}
