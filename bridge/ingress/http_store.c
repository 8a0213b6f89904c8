/*
 * HTTP endpoints of the key-value store and schedules (see http_store.h).
 * The stores themselves are topics/kv.c and topics/schedules.c, reached only
 * through their interfaces in bridge/model/kv_store.h and schedule_store.h;
 * this file only turns requests into calls and results into the Node.js
 * shapes.
 */
#include "bridge/ingress/http_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>
#include <cjson/cJSON.h>

#include "bridge/ingress/http_body.h"
#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/model/kv_store.h"
#include "bridge/model/schedule_store.h"

#define MODULE "http"

static const char *const retry_after[] = {"Retry-After", "5", NULL};

/* ---- helpers ---- */

static int timeout_ms(const struct http_exchange *exchange)
{
    return exchange->runtime->config->http.task_start_timeout_ms;
}

/* A store call failed: 400 for the request's fault, 503 for the broker's. */
static void reply_store_error(struct http_exchange *exchange, enum butler_status status,
                              const char *message)
{
    switch (status) {
    case BUTLER_ERR_INVALID:
    case BUTLER_ERR_TOO_LARGE:
    case BUTLER_ERR_DENIED:
    case BUTLER_ERR_NOT_FOUND:
        http_exchange_reply_error(exchange, 400, message, NULL);
        return;
    case BUTLER_ERR_NOMEM:
    case BUTLER_ERR_INTERNAL:
        http_exchange_reply_error(exchange, 500, message, NULL);
        return;
    default: {
        char text[256];
        snprintf(text, sizeof text, "the MQTT broker did not acknowledge the write (%s); try again",
                 butler_status_str(status));
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "store write: %s", butler_status_str(status));
        http_exchange_reply_error(exchange, 503, text, retry_after);
    }
    }
}

/* Path segment `index` (0-based, after the leading '/') into out; false when
 * absent or longer than out. */
static bool path_segment(const char *path, int index, char *out, size_t out_size)
{
    const char *at = path;
    for (int i = 0; i <= index; i++) {
        if (*at != '/')
            return false;
        at++;
        size_t length = strcspn(at, "/");
        if (i == index) {
            if (length == 0 || length >= out_size)
                return false;
            memcpy(out, at, length);
            out[length] = '\0';
            return true;
        }
        at += length;
    }
    return false;
}

/* Required query variable `name`: false (answered 400) when missing. */
static bool required_query(struct http_exchange *exchange, const char *name, char *out,
                           size_t out_size)
{
    int length = mg_get_var(exchange->query, strlen(exchange->query), name, out, out_size);
    if (length > 0 && strlen(out) == (size_t)length)
        return true;
    char message[128];
    snprintf(message, sizeof message,
             length == -2 ? "query parameter %s is too long"
                          : "required query parameter %s is missing",
             name);
    http_exchange_reply_error(exchange, 400, message, NULL);
    return false;
}

static cJSON *kv_object(const char *namespace_name, const char *key, const char *value)
{
    cJSON *json = cJSON_CreateObject();
    if (json && (!cJSON_AddStringToObject(json, "namespace", namespace_name) ||
                 !cJSON_AddStringToObject(json, "key", key) ||
                 !cJSON_AddStringToObject(json, "value", value))) {
        cJSON_Delete(json);
        return NULL;
    }
    return json;
}

/* ---- key-value store ---- */

void http_store_kv_namespaces(struct http_exchange *exchange)
{
    http_exchange_reply_cjson(exchange, 200, kv_namespaces());
}

static void kv_get(struct http_exchange *exchange, const char *namespace_name)
{
    char key[KV_NAME_MAX + 1];
    if (!required_query(exchange, "key", key, sizeof key))
        return;
    struct kv_record record;
    enum kv_lookup found = kv_lookup(namespace_name, key, &record);
    if (found != KV_FOUND) {
        http_exchange_reply_error(exchange, 400,
                                  found == KV_NO_NAMESPACE ? "namespace not found"
                                                           : "key not found in this namespace",
                                  NULL);
        return;
    }
    http_exchange_reply_cjson(exchange, 200, kv_object(namespace_name, key, record.value));
    kv_record_clear(&record);
}

static void kv_post(struct http_exchange *exchange, const char *namespace_name)
{
    char error[256];
    char *value_text = NULL;
    cJSON *body = NULL;
    if (!http_api_read_json_body(exchange))
        goto out;
    body = json_parse_exact(exchange->body, exchange->body_length, NULL);
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(body, "key");
    const cJSON *value = cJSON_GetObjectItemCaseSensitive(body, "value");
    const cJSON *ttl = cJSON_GetObjectItemCaseSensitive(body, "ttl");
    if (!cJSON_IsObject(body) || !cJSON_IsString(key)) {
        http_exchange_reply_error(exchange, 400, "the body needs a string \"key\"", NULL);
        goto out;
    }
    if (ttl && !cJSON_IsNull(ttl) &&
        !(cJSON_IsNumber(ttl) && ttl->valuedouble >= 0 && ttl->valuedouble <= 4.0e12)) {
        http_exchange_reply_error(exchange, 400, "\"ttl\" must be a number of milliseconds >= 0",
                                  NULL);
        goto out;
    }
    /* The Node.js Butler stores the value as given; numbers and booleans are
     * kept in their JSON text, an absent value as "". */
    value_text = value == NULL || cJSON_IsNull(value) ? strdup("")
                 : cJSON_IsString(value)              ? strdup(value->valuestring)
                                                      : cJSON_PrintUnformatted(value);
    if (value_text == NULL) {
        http_exchange_reply_error(exchange, 500, "out of memory", NULL);
        goto out;
    }
    long long ttl_ms = cJSON_IsNumber(ttl) ? (long long)ttl->valuedouble : 0;
    enum butler_status status =
        kv_put(exchange->runtime, namespace_name, key->valuestring, value_text, ttl_ms,
               timeout_ms(exchange), error, sizeof error);
    if (status != BUTLER_OK) {
        reply_store_error(exchange, status, error);
        goto out;
    }
    cJSON *answer = kv_object(namespace_name, key->valuestring, value_text);
    if (answer)
        cJSON_AddNumberToObject(answer, "ttl", (double)ttl_ms);
    http_exchange_reply_cjson(exchange, 201, answer);
out:
    free(value_text);
    cJSON_Delete(body);
}

/* /v4/keyvalues/{namespace}: GET ?key=, POST {key, value, ttl}, DELETE. */
void http_store_kv_namespace(struct http_exchange *exchange)
{
    char namespace_name[KV_NAME_MAX + 1];
    if (!path_segment(exchange->path, 2, namespace_name, sizeof namespace_name)) {
        http_exchange_reply_error(exchange, 400, "the namespace in the path is too long", NULL);
        return;
    }
    if (exchange->method == HTTP_METHOD_GET) {
        kv_get(exchange, namespace_name);
    } else if (exchange->method == HTTP_METHOD_POST) {
        kv_post(exchange, namespace_name);
    } else {
        enum butler_status status =
            kv_delete_namespace(exchange->runtime, namespace_name, timeout_ms(exchange));
        if (status == BUTLER_OK)
            http_exchange_reply_json(exchange, 204, NULL, NULL);
        else
            reply_store_error(exchange, status, "namespace not found");
    }
}

/* /v4/keyvalues/{namespace}/keyexists (GET) and /v4/keyvalues/{namespace}/{key} (DELETE). */
void http_store_kv_key(struct http_exchange *exchange)
{
    char namespace_name[KV_NAME_MAX + 1], key[KV_NAME_MAX + 1];
    if (!path_segment(exchange->path, 2, namespace_name, sizeof namespace_name) ||
        !path_segment(exchange->path, 3, key, sizeof key)) {
        http_exchange_reply_error(exchange, 400, "the namespace or key in the path is too long",
                                  NULL);
        return;
    }
    if (exchange->method == HTTP_METHOD_DELETE) {
        enum butler_status status =
            kv_delete(exchange->runtime, namespace_name, key, timeout_ms(exchange));
        if (status == BUTLER_OK)
            http_exchange_reply_json(exchange, 204, NULL, NULL);
        else
            reply_store_error(exchange, status, "namespace or key not found");
        return;
    }
    if (strcmp(key, "keyexists") != 0) {
        const char *const allow[] = {"Allow", "DELETE", NULL};
        http_exchange_reply_error(exchange, 405, "GET is only for .../keyexists?key=", allow);
        return;
    }
    char wanted[KV_NAME_MAX + 1];
    if (!required_query(exchange, "key", wanted, sizeof wanted))
        return;
    struct kv_record record;
    enum kv_lookup found = kv_lookup(namespace_name, wanted, &record);
    if (found == KV_NO_NAMESPACE) {
        http_exchange_reply_error(exchange, 400, "namespace not found", NULL);
        return;
    }
    cJSON *answer = cJSON_CreateObject();
    cJSON *value =
        found == KV_FOUND ? kv_object(namespace_name, wanted, record.value) : cJSON_CreateObject();
    if (answer && value) {
        cJSON_AddBoolToObject(answer, "keyExists", found == KV_FOUND);
        cJSON_AddItemToObject(answer, "keyValue", value);
        value = NULL;
    }
    cJSON_Delete(value);
    if (found == KV_FOUND)
        kv_record_clear(&record);
    http_exchange_reply_cjson(exchange, 200, answer);
}

void http_store_kv_keylist(struct http_exchange *exchange)
{
    char namespace_name[KV_NAME_MAX + 1];
    bool exists = false;
    if (!path_segment(exchange->path, 2, namespace_name, sizeof namespace_name)) {
        http_exchange_reply_error(exchange, 400, "the namespace in the path is too long", NULL);
        return;
    }
    cJSON *keys = kv_keys(namespace_name, &exists);
    if (!exists) {
        http_exchange_reply_error(exchange, 400, "namespace not found", NULL);
        return;
    }
    cJSON *answer = cJSON_CreateObject();
    if (answer == NULL || keys == NULL) {
        cJSON_Delete(keys);
        cJSON_Delete(answer);
        http_exchange_reply_error(exchange, 500, "out of memory", NULL);
        return;
    }
    cJSON_AddStringToObject(answer, "namespace", namespace_name);
    cJSON_AddItemToObject(answer, "keys", keys);
    http_exchange_reply_cjson(exchange, 200, answer);
}

/* ---- schedules ---- */

void http_store_schedules_get(struct http_exchange *exchange)
{
    char id[80];
    int length = mg_get_var(exchange->query, strlen(exchange->query), "id", id, sizeof id);
    bool found = false;
    if (length == -2) {
        http_exchange_reply_error(exchange, 400, "unknown schedule id", NULL);
        return;
    }
    cJSON *list = schedules_list(length >= 0 ? id : NULL, &found);
    if (!found) {
        cJSON_Delete(list);
        http_exchange_reply_error(exchange, 400, "unknown schedule id", NULL);
        return;
    }
    http_exchange_reply_cjson(exchange, 200, list);
}

void http_store_schedules_create(struct http_exchange *exchange)
{
    char error[384] = "";
    cJSON *created = NULL;
    if (!http_api_read_json_body(exchange))
        return;
    enum butler_status status =
        schedules_create(exchange->runtime, exchange->body, exchange->body_length,
                         timeout_ms(exchange), &created, error, sizeof error);
    if (status != BUTLER_OK) {
        reply_store_error(exchange, status, error);
        return;
    }
    /* One schedule object (what the Node.js Butler answers), not an array. */
    http_exchange_reply_cjson(exchange, 201, created);
}

void http_store_schedules_delete(struct http_exchange *exchange)
{
    char id[80];
    if (!path_segment(exchange->path, 2, id, sizeof id)) {
        http_exchange_reply_error(exchange, 400, "unknown schedule id", NULL);
        return;
    }
    enum butler_status status = schedules_delete(exchange->runtime, id, timeout_ms(exchange));
    if (status == BUTLER_OK)
        http_exchange_reply_json(exchange, 204, NULL, NULL);
    else
        reply_store_error(exchange, status, "unknown schedule id");
}

/* .../{id}/start|stop (segment 2 is the id) or .../startall|stopall. */
static void set_state(struct http_exchange *exchange, bool start)
{
    char id[80];
    bool all = strcmp(exchange->path, "/v4/schedules/startall") == 0 ||
               strcmp(exchange->path, "/v4/schedules/stopall") == 0;
    if (!all && !path_segment(exchange->path, 2, id, sizeof id)) {
        http_exchange_reply_error(exchange, 400, "unknown schedule id", NULL);
        return;
    }
    cJSON *changed = NULL;
    enum butler_status status = schedules_set_state(exchange->runtime, all ? NULL : id, start,
                                                    timeout_ms(exchange), &changed);
    if (status != BUTLER_OK) {
        reply_store_error(exchange, status, "unknown schedule id");
        return;
    }
    /* startall/stopall: every schedule; one id: a one-element array. */
    if (all) {
        cJSON_Delete(changed);
        bool found;
        changed = schedules_list(NULL, &found);
    }
    http_exchange_reply_cjson(exchange, 200, changed);
}

void http_store_schedules_start(struct http_exchange *exchange)
{
    set_state(exchange, true);
}

void http_store_schedules_stop(struct http_exchange *exchange)
{
    set_state(exchange, false);
}

void http_store_schedules_status(struct http_exchange *exchange)
{
    char *text = schedules_status_text();
    if (text == NULL) {
        http_exchange_reply_error(exchange, 500, "out of memory", NULL);
        return;
    }
    http_exchange_reply(exchange, 200, "text/plain; charset=utf-8", text, strlen(text), NULL);
    free(text);
}
