/* GET /v4/status; see http_status.h. */
#include "bridge/ingress/http_status.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <yaml.h>

#include "bridge/core/clock.h"
#include "bridge/core/worker_pool.h"
#include "bridge/link/mqtt_link.h"
#include "bridge/model/active_users.h"
#include "bridge/model/schedule_store.h"
#include "bridge/model/status_view.h"
#include "bridge/store/spool.h"
#include "config/config.h"

/* Headers every status answer carries: the JSON holds task names, events and
 * the configuration, which no cache and no referrer should keep. */
static const char *const status_headers[] = {
    "Cache-Control", "no-store", "X-Content-Type-Options", "nosniff", "Referrer-Policy",
    "no-referrer",   NULL};

/* An ISO time, or JSON null for 0 ("never"). */
static bool add_time(cJSON *object, const char *name, uint64_t wall_ms)
{
    if (wall_ms == 0)
        return cJSON_AddNullToObject(object, name) != NULL;
    char text[32];
    clock_format_iso8601(wall_ms, text, sizeof text);
    return cJSON_AddStringToObject(object, name, text) != NULL;
}

/* {"state", "since", "lastOkAt", "lastError", "lastErrorAt"} of one client. */
static cJSON *client_json(enum status_client client, const char *state_text)
{
    struct status_client_state state;
    status_view_client(client, &state);
    cJSON *json = cJSON_CreateObject();
    if (json == NULL || !cJSON_AddStringToObject(json, "state", state_text) ||
        !add_time(json, "since", state.since_ms) || !add_time(json, "lastOkAt", state.last_ok_ms) ||
        !(state.last_error[0] ? cJSON_AddStringToObject(json, "lastError", state.last_error) != NULL
                              : cJSON_AddNullToObject(json, "lastError") != NULL) ||
        !add_time(json, "lastErrorAt", state.last_error_ms)) {
        cJSON_Delete(json);
        return NULL;
    }
    return json;
}

static const char *qrs_state(const struct butler_config *config)
{
    if (config->qrs.url == NULL || config->qrs.url[0] == '\0')
        return "off";
    struct status_client_state state;
    status_view_client(STATUS_CLIENT_QRS, &state);
    return !state.known ? "unknown" : state.ok ? "ok" : "failing";
}

/* The running configuration as --check-config prints it (config_print masks
 * every secret), as one YAML text. NULL on NOMEM; caller frees. */
static char *config_print_text(const struct butler_config *config)
{
    char *text = NULL;
    size_t length = 0;
    FILE *out = open_memstream(&text, &length);
    if (out == NULL)
        return NULL;
    config_print(config, out);
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

enum { YAML_DEPTH_MAX = 32 }; /* config_print nests 5 deep at most */

/* A plain YAML scalar as config_print writes it: true/false, a number, or
 * (quoted) a string. Quoted scalars are always strings. */
static cJSON *scalar_json(const yaml_event_t *event)
{
    const char *value = (const char *)event->data.scalar.value;
    if (event->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        if (strcmp(value, "true") == 0)
            return cJSON_CreateTrue();
        if (strcmp(value, "false") == 0)
            return cJSON_CreateFalse();
        if (value[0] == '\0' || strcmp(value, "null") == 0 || strcmp(value, "~") == 0)
            return cJSON_CreateNull();
        /* Decimal digits only: strtod alone would take inf, nan and 0x1f. */
        if (strspn(value, "-+.0123456789eE") == strlen(value)) {
            char *end = NULL;
            double number = strtod(value, &end);
            if (end && *end == '\0')
                return cJSON_CreateNumber(number);
        }
    }
    return cJSON_CreateString(value);
}

/*
 * The YAML that config_print writes as a JSON object (mappings, sequences,
 * scalars). NULL on NOMEM or text that is not that (which config_print never
 * writes). Caller owns the result.
 */
static cJSON *yaml_to_json(const char *text)
{
    yaml_parser_t parser;
    yaml_event_t event;
    cJSON *stack[YAML_DEPTH_MAX];
    char *keys[YAML_DEPTH_MAX] = {0}; /* a mapping's key waiting for its value */
    size_t depth = 0;
    cJSON *root = NULL;
    bool failed = false, done = false;
    if (!yaml_parser_initialize(&parser))
        return NULL;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    while (!failed && !done) {
        if (!yaml_parser_parse(&parser, &event)) {
            failed = true;
            break;
        }
        cJSON *item = NULL;
        bool push = false;
        switch (event.type) {
        case YAML_MAPPING_START_EVENT:
            item = cJSON_CreateObject();
            push = true;
            break;
        case YAML_SEQUENCE_START_EVENT:
            item = cJSON_CreateArray();
            push = true;
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            if (depth > 0)
                depth--;
            break;
        case YAML_SCALAR_EVENT:
            if (depth > 0 && cJSON_IsObject(stack[depth - 1]) && keys[depth - 1] == NULL) {
                keys[depth - 1] = strdup((const char *)event.data.scalar.value);
                failed = keys[depth - 1] == NULL;
            } else {
                item = scalar_json(&event);
            }
            break;
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        default: /* stream and document starts and ends, aliases (none written) */
            break;
        }
        if (!failed && (push || item)) {
            if (item == NULL || (push && depth == YAML_DEPTH_MAX)) {
                cJSON_Delete(item);
                failed = true;
            } else if (depth == 0) {
                cJSON_Delete(root); /* only one document is ever written */
                root = item;
            } else if (cJSON_IsObject(stack[depth - 1])) {
                const char *key = keys[depth - 1] ? keys[depth - 1] : "";
                cJSON_AddItemToObject(stack[depth - 1], key, item);
                free(keys[depth - 1]);
                keys[depth - 1] = NULL;
            } else {
                cJSON_AddItemToArray(stack[depth - 1], item);
            }
            if (!failed && push) {
                free(keys[depth]); /* a dangling key (never written) */
                keys[depth] = NULL;
                stack[depth++] = item;
            }
        }
        yaml_event_delete(&event);
    }
    yaml_parser_delete(&parser);
    for (size_t i = 0; i < YAML_DEPTH_MAX; i++)
        free(keys[i]);
    if (failed) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* The configuration never changes while Butler runs (SIGHUP is ignored: a new
 * one needs a restart), so it is printed once, on the first request, turned
 * into JSON and kept until exit. Borrowed; NULL on NOMEM (tried again next
 * time). */
static const char *config_text(const struct butler_config *config)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static char *printed; /* compact JSON of the printed YAML */
    pthread_mutex_lock(&lock);
    if (printed == NULL) {
        char *yaml = config_print_text(config);
        cJSON *json = yaml ? yaml_to_json(yaml) : NULL;
        printed = json ? cJSON_PrintUnformatted(json) : NULL;
        cJSON_Delete(json);
        free(yaml);
    }
    const char *text = printed;
    pthread_mutex_unlock(&lock);
    return text;
}

/* [{"name", "url"}] per configured Qlik Cloud tenant: the page links a cloud
 * reload event's app into its tenant's hub. No secret is listed. */
static bool add_cloud_tenants(cJSON *status, const struct butler_config *config)
{
    cJSON *tenants = cJSON_AddArrayToObject(status, "qlikCloud");
    for (size_t i = 0; tenants && i < config->qlik_cloud.tenants.count; i++) {
        const struct config_cloud_tenant *tenant = &config->qlik_cloud.tenants.items[i];
        cJSON *item = cJSON_CreateObject();
        if (item == NULL || !cJSON_AddItemToArray(tenants, item) ||
            !cJSON_AddStringToObject(item, "name", tenant->name ? tenant->name : "") ||
            !cJSON_AddStringToObject(item, "url", tenant->url ? tenant->url : ""))
            return false;
    }
    return tenants != NULL;
}

/* Everything but the recent lists and the configuration: small and cheap. */
static bool add_states(cJSON *status, const struct butler_runtime *runtime)
{
    const struct butler_config *config = runtime->config;
    char started[32];
    clock_format_iso8601(runtime->started_at_wall_ms, started, sizeof started);
    bool connected = runtime->link && mqtt_link_connected(runtime->link);
    cJSON *engine = cJSON_AddObjectToObject(status, "engine");
    if (engine == NULL ||
        !cJSON_AddStringToObject(
            engine, "state", config->engine.url && config->engine.url[0] ? "configured" : "off"))
        return false;
    struct spool_stats stats = {0};
    if (runtime->spool)
        spool_get_stats(runtime->spool, &stats);
    /* Added at once, so that no early return below can leak them. */
    cJSON *spool = cJSON_AddObjectToObject(status, "spool");
    cJSON *queues = cJSON_AddObjectToObject(status, "queues");
    return spool && queues && cJSON_AddStringToObject(status, "version", BUTLER_VERSION) &&
           cJSON_AddStringToObject(status, "startedAt", started) &&
           add_time(status, "now", clock_wall_ms()) &&
           cJSON_AddItemToObject(
               status, "broker",
               client_json(STATUS_CLIENT_BROKER, connected ? "connected" : "disconnected")) &&
           cJSON_AddItemToObject(status, "qrs",
                                 client_json(STATUS_CLIENT_QRS, qrs_state(config))) &&
           cJSON_AddStringToObject(status, "qrsUrl", config->qrs.url ? config->qrs.url : "") &&
           add_cloud_tenants(status, config) &&
           cJSON_AddNumberToObject(spool, "liveBytes", (double)stats.live_bytes) &&
           cJSON_AddNumberToObject(spool, "fileBytes", (double)stats.file_bytes) &&
           cJSON_AddNumberToObject(spool, "pending", (double)stats.live_entries) &&
           cJSON_AddNumberToObject(queues, "workerQueued",
                                   runtime->pool ? (double)worker_pool_depth(runtime->pool) : 0) &&
           cJSON_AddNumberToObject(queues, "workerBusy",
                                   runtime->pool ? (double)worker_pool_busy(runtime->pool) : 0);
}

/* One member of the answer: its name and its JSON text. */
struct status_part {
    const char *name;
    const char *json;
    size_t length;
};

/*
 * `head` (a printed JSON object with at least one member) with `parts`
 * appended as members, into one exact-size buffer (owned by the caller), or
 * NULL. The large members (the recent lists, ~65 kB when full; the
 * configuration) are ready-made JSON texts: added to the cJSON tree as raw
 * items they were copied twice more, through a print buffer grown by
 * doubling, for every request.
 */
static char *join_parts(const char *head, const struct status_part *parts, size_t count,
                        size_t *length_out)
{
    size_t head_length = strlen(head), total = head_length + 1;
    if (head_length < 3 || head[head_length - 1] != '}')
        return NULL;
    for (size_t i = 0; i < count; i++)
        total += strlen(parts[i].name) + 4 + parts[i].length; /* ,"name": */
    char *text = malloc(total);
    if (text == NULL)
        return NULL;
    size_t at = head_length - 1; /* over the closing brace */
    memcpy(text, head, at);
    for (size_t i = 0; i < count; i++) {
        size_t name_length = strlen(parts[i].name);
        text[at++] = ',';
        text[at++] = '"';
        memcpy(text + at, parts[i].name, name_length);
        at += name_length;
        text[at++] = '"';
        text[at++] = ':';
        memcpy(text + at, parts[i].json, parts[i].length);
        at += parts[i].length;
    }
    text[at++] = '}';
    text[at] = '\0';
    *length_out = at;
    return text;
}

void http_status_json(struct http_exchange *exchange)
{
    const struct butler_runtime *runtime = exchange->runtime;
    cJSON *status = cJSON_CreateObject();
    char *head = NULL, *recent = NULL, *license = NULL, *users = NULL, *text = NULL;
    size_t recent_length = 0, license_length = 0, users_length = 0, length = 0;
    bool ok = status && add_states(status, runtime);
    cJSON *schedules = ok ? schedules_overview() : NULL;
    ok = ok && cJSON_AddItemToObject(status, "schedules", schedules);
    if (!ok)
        cJSON_Delete(schedules); /* NULL or not added */
    head = ok ? cJSON_PrintUnformatted(status) : NULL;
    ok = head && status_view_recent(&recent, &recent_length) == BUTLER_OK;
    ok = ok && status_view_license(&license, &license_length) == BUTLER_OK;
    /* null while the proxy port is off (udp.proxy_listen empty). */
    enum butler_status users_status = ok ? active_users_summary(&users, &users_length) : BUTLER_OK;
    ok = ok && (users_status == BUTLER_OK || users_status == BUTLER_ERR_NOT_FOUND);
    const char *config = ok ? config_text(runtime->config) : NULL;
    if (ok && config) {
        const struct status_part parts[] = {
            {"recent", recent, recent_length},
            {"license", license, license_length},
            {"activeUsers", users_status == BUTLER_OK ? users : "null",
             users_status == BUTLER_OK ? users_length : 4},
            {"config", config, strlen(config)},
        };
        text = join_parts(head, parts, sizeof parts / sizeof parts[0], &length);
    }
    cJSON_Delete(status);
    cJSON_free(head);
    free(recent);
    free(license);
    active_users_summary_free(users);
    if (text == NULL) {
        http_exchange_reply_error(exchange, 500, "out of memory", status_headers);
        return;
    }
    http_exchange_reply(exchange, 200, "application/json; charset=utf-8", text, length,
                        status_headers);
    free(text);
}

/* The page's files (generated from bridge/ingress/status_page/ by CMakeLists.txt). */
extern const unsigned char http_status_page_html[], http_status_page_css[], http_status_page_js[],
    http_status_page_svg[];
extern const size_t http_status_page_html_length, http_status_page_css_length,
    http_status_page_js_length, http_status_page_svg_length;

/* A strict policy: only Butler's own files, nothing inline, no framing, no
 * form posting anywhere (the token form is handled by the script). */
static const char *const page_headers[] = {
    "Content-Security-Policy",
    "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options",
    "nosniff",
    "Referrer-Policy",
    "no-referrer",
    "X-Frame-Options",
    "DENY",
    "Cache-Control",
    "no-store",
    NULL};

void http_status_page(struct http_exchange *exchange)
{
    if (!exchange->runtime->config->http.status_page) {
        http_exchange_reply_error(exchange, 404, "the status page is off (http.status_page)", NULL);
        return;
    }
    const char *type = "text/html; charset=utf-8";
    const unsigned char *body = http_status_page_html;
    size_t length = http_status_page_html_length;
    if (strcmp(exchange->path, "/status.css") == 0) {
        type = "text/css; charset=utf-8";
        body = http_status_page_css;
        length = http_status_page_css_length;
    } else if (strcmp(exchange->path, "/status.js") == 0) {
        type = "text/javascript; charset=utf-8";
        body = http_status_page_js;
        length = http_status_page_js_length;
    } else if (strcmp(exchange->path, "/favicon.svg") == 0) {
        type = "image/svg+xml";
        body = http_status_page_svg;
        length = http_status_page_svg_length;
    }
    http_exchange_reply(exchange, 200, type, (const char *)body, length, page_headers);
}
