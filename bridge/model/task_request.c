/*
 * Parsing of task-start payloads, in every form the contract accepts:
 *   - a bare task GUID (the Node.js Butler's qliksense/start_task form);
 *   - a JSON object with exactly one selector (taskId, taskName, tag,
 *     customProperty), optional requestId and kv items;
 *   - a JSON array of the Node.js Butler's typed items;
 *   - an empty payload on <root>/task/start/<taskId>.
 * Butler extension (used by the HTTP API): an object may carry "items" (a
 * typed-item array) instead of a selector, and "allTaskIdsMustExist".
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge/model/task_request.h"

#include "bridge/core/json.h"
#include "bridge/core/random.h"
#include "bridge/model/sense_event.h"

#include <cjson/cJSON.h>

bool task_is_guid(const char *text, size_t length)
{
    return sense_is_guid(text, length);
}

void task_make_uuid(char out[37])
{
    unsigned char bytes[16];
    random_fill(bytes, sizeof bytes);
    bytes[6] = (unsigned char)((bytes[6] & 0x0f) | 0x40);
    bytes[8] = (unsigned char)((bytes[8] & 0x3f) | 0x80);
    /* 8-4-4-4-12 by hand: one snprintf with 16 conversions cost more than the
     * rest of a request's parse, and every request gets an id up front. */
    static const char hex[] = "0123456789abcdef";
    size_t used = 0;
    for (size_t i = 0; i < sizeof bytes; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[used++] = '-';
        out[used++] = hex[bytes[i] >> 4];
        out[used++] = hex[bytes[i] & 0x0f];
    }
    out[used] = '\0';
}

bool task_valid_utf8(const unsigned char *text, size_t length)
{
    size_t i = 0;
    while (i < length) {
        unsigned char c = text[i];
        size_t extra;
        unsigned int code;
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            extra = 1;
            code = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            extra = 2;
            code = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            extra = 3;
            code = c & 0x07;
        } else {
            return false;
        }
        if (i + extra >= length)
            return false;
        for (size_t k = 1; k <= extra; k++) {
            if ((text[i + k] & 0xC0) != 0x80)
                return false;
            code = (code << 6) | (text[i + k] & 0x3F);
        }
        /* Overlong forms, UTF-16 surrogates and code points past U+10FFFF. */
        if ((extra == 2 && code < 0x800) || (extra == 3 && code < 0x10000) ||
            (code >= 0xD800 && code <= 0xDFFF) || code > 0x10FFFF)
            return false;
        i += extra + 1;
    }
    return true;
}

void task_request_clear(struct task_request *request)
{
    for (size_t i = 0; i < request->selector_count; i++) {
        free(request->selectors[i].value);
        free(request->selectors[i].property_value);
    }
    free(request->selectors);
    for (size_t i = 0; i < request->kv_count; i++) {
        free(request->kv[i].namespace_name);
        free(request->kv[i].key);
        free(request->kv[i].value);
    }
    free(request->kv);
    char request_id[TASK_REQUEST_ID_MAX + 1];
    bool generated = request->request_id_generated;
    memcpy(request_id, request->request_id, sizeof request_id);
    memset(request, 0, sizeof *request);
    /* The id survives clearing so an error answer can still carry it. */
    memcpy(request->request_id, request_id, sizeof request_id);
    request->request_id_generated = generated;
}

static char *copy_text(const char *text, size_t length)
{
    char *copy = malloc(length + 1);
    if (copy) {
        memcpy(copy, text, length);
        copy[length] = '\0';
    }
    return copy;
}

static void trim(const unsigned char **text, size_t *length)
{
    while (*length > 0 && isspace((*text)[0])) {
        (*text)++;
        (*length)--;
    }
    while (*length > 0 && isspace((*text)[*length - 1]))
        (*length)--;
}

/* Append a selector; `valid` false keeps it for the "invalid" answer. */
static enum butler_status add_selector(struct task_request *request, enum task_selector_kind kind,
                                       const char *value, const char *property_value, char *error,
                                       size_t error_size)
{
    if (request->selector_count >= TASK_SELECTORS_MAX) {
        snprintf(error, error_size, "more than %d task selectors in one request",
                 TASK_SELECTORS_MAX);
        return BUTLER_ERR_TOO_LARGE;
    }
    if (strlen(value) > TASK_TEXT_MAX ||
        (property_value && strlen(property_value) > TASK_TEXT_MAX)) {
        snprintf(error, error_size, "a task selector is longer than %d bytes", TASK_TEXT_MAX);
        return BUTLER_ERR_TOO_LARGE;
    }
    if (request->selector_count % 8 == 0) {
        struct task_selector *grown =
            realloc(request->selectors, (request->selector_count + 8) * sizeof *request->selectors);
        if (grown == NULL)
            return BUTLER_ERR_NOMEM;
        request->selectors = grown;
    }
    struct task_selector *selector = &request->selectors[request->selector_count];
    memset(selector, 0, sizeof *selector);
    selector->kind = kind;
    selector->value = copy_text(value, strlen(value));
    if (property_value)
        selector->property_value = copy_text(property_value, strlen(property_value));
    if (selector->value == NULL || (property_value && selector->property_value == NULL)) {
        free(selector->value);
        free(selector->property_value);
        return BUTLER_ERR_NOMEM;
    }
    selector->valid = (kind != TASK_SELECT_ID || task_is_guid(value, strlen(value))) &&
                      value[0] != '\0' && (property_value == NULL || property_value[0] != '\0');
    request->selector_count++;
    return BUTLER_OK;
}

/*
 * One kv item. The Node.js Butler takes the value as a string; numbers and
 * booleans are accepted and stored in their JSON text form.
 */
static enum butler_status add_kv(struct task_request *request, const cJSON *item, char *error,
                                 size_t error_size)
{
    const char *namespace_name = json_string_member(item, "namespace");
    const char *key = json_string_member(item, "key");
    const cJSON *value = cJSON_GetObjectItemCaseSensitive(item, "value");
    const cJSON *ttl = cJSON_GetObjectItemCaseSensitive(item, "ttl");
    if (!cJSON_IsObject(item) || namespace_name == NULL || key == NULL ||
        namespace_name[0] == '\0' || key[0] == '\0' || value == NULL) {
        snprintf(error, error_size,
                 "a key-value item needs string \"namespace\" and \"key\" and a \"value\"");
        return BUTLER_ERR_INVALID;
    }
    if (strchr(namespace_name, '/') || strchr(namespace_name, '+') || strchr(namespace_name, '#') ||
        strchr(key, '/') || strchr(key, '+') || strchr(key, '#')) {
        snprintf(error, error_size, "key-value namespace and key must not contain / + or #");
        return BUTLER_ERR_INVALID;
    }
    if (ttl && !(cJSON_IsNumber(ttl) && ttl->valuedouble >= 0 && ttl->valuedouble <= 4.0e12)) {
        snprintf(error, error_size, "key-value \"ttl\" must be a number of milliseconds >= 0");
        return BUTLER_ERR_INVALID;
    }
    if (request->kv_count >= TASK_KV_MAX) {
        snprintf(error, error_size, "more than %d key-value items", TASK_KV_MAX);
        return BUTLER_ERR_TOO_LARGE;
    }
    char *value_text = cJSON_IsString(value)
                           ? copy_text(value->valuestring, strlen(value->valuestring))
                           : cJSON_PrintUnformatted(value);
    if (value_text == NULL)
        return BUTLER_ERR_NOMEM;
    if (strlen(namespace_name) > TASK_TEXT_MAX || strlen(key) > TASK_TEXT_MAX ||
        strlen(value_text) > 64 * 1024) {
        free(value_text);
        snprintf(error, error_size, "key-value item too long");
        return BUTLER_ERR_TOO_LARGE;
    }
    if (request->kv_count % 8 == 0) {
        struct task_kv_item *grown =
            realloc(request->kv, (request->kv_count + 8) * sizeof *request->kv);
        if (grown == NULL) {
            free(value_text);
            return BUTLER_ERR_NOMEM;
        }
        request->kv = grown;
    }
    struct task_kv_item *kv = &request->kv[request->kv_count];
    kv->namespace_name = copy_text(namespace_name, strlen(namespace_name));
    kv->key = copy_text(key, strlen(key));
    kv->value = value_text;
    kv->ttl_ms = ttl ? (long long)ttl->valuedouble : 0;
    if (kv->namespace_name == NULL || kv->key == NULL) {
        free(kv->namespace_name);
        free(kv->key);
        free(kv->value);
        return BUTLER_ERR_NOMEM;
    }
    request->kv_count++;
    return BUTLER_OK;
}

/* The Node.js Butler's typed items: [{"type": "...", "payload": {...}}]. */
static enum butler_status parse_typed_items(const cJSON *array, struct task_request *request,
                                            char *error, size_t error_size)
{
    enum butler_status status = BUTLER_OK;
    const cJSON *item;
    cJSON_ArrayForEach(item, array)
    {
        const char *type = json_string_member(item, "type");
        const cJSON *payload = cJSON_GetObjectItemCaseSensitive(item, "payload");
        if (!cJSON_IsObject(item) || type == NULL || !cJSON_IsObject(payload)) {
            snprintf(error, error_size,
                     "each item needs a string \"type\" and an object \"payload\"");
            return BUTLER_ERR_INVALID;
        }
        if (strcasecmp(type, "starttaskid") == 0) {
            const char *task_id = json_string_member(payload, "taskId");
            if (task_id == NULL) {
                snprintf(error, error_size, "starttaskid needs payload.taskId (string)");
                return BUTLER_ERR_INVALID;
            }
            status = add_selector(request, TASK_SELECT_ID, task_id, NULL, error, error_size);
        } else if (strcasecmp(type, "starttasktag") == 0) {
            const char *tag = json_string_member(payload, "tag");
            if (tag == NULL) {
                snprintf(error, error_size, "starttasktag needs payload.tag (string)");
                return BUTLER_ERR_INVALID;
            }
            status = add_selector(request, TASK_SELECT_TAG, tag, NULL, error, error_size);
        } else if (strcasecmp(type, "starttaskcustomproperty") == 0) {
            const char *name = json_string_member(payload, "customPropertyName");
            const char *value = json_string_member(payload, "customPropertyValue");
            if (name == NULL || value == NULL) {
                snprintf(error, error_size,
                         "starttaskcustomproperty needs payload.customPropertyName and "
                         "payload.customPropertyValue (strings)");
                return BUTLER_ERR_INVALID;
            }
            status =
                add_selector(request, TASK_SELECT_CUSTOM_PROPERTY, name, value, error, error_size);
        } else if (strcasecmp(type, "keyvaluestore") == 0) {
            status = add_kv(request, payload, error, error_size);
        } else {
            snprintf(error, error_size, "unknown item type \"%.64s\"", type);
            return BUTLER_ERR_INVALID;
        }
        if (status != BUTLER_OK)
            return status;
    }
    return status;
}

static enum butler_status parse_object(const cJSON *object, const char *topic_task_id,
                                       struct task_request *request, char *error, size_t error_size)
{
    static const char *const known[] = {"taskId",    "taskName", "tag",   "customProperty",
                                        "requestId", "kv",       "items", "allTaskIdsMustExist",
                                        "follow",    NULL};
    enum butler_status status = BUTLER_OK;
    const cJSON *member;
    int selectors = 0;
    cJSON_ArrayForEach(member, object)
    {
        bool is_known = false;
        for (const char *const *name = known; *name && !is_known; name++)
            is_known = strcmp(member->string, *name) == 0;
        if (!is_known) {
            snprintf(error, error_size, "unknown field \"%.64s\"", member->string);
            return BUTLER_ERR_INVALID;
        }
    }
    const cJSON *all_must_exist = cJSON_GetObjectItemCaseSensitive(object, "allTaskIdsMustExist");
    if (all_must_exist) {
        if (!cJSON_IsBool(all_must_exist)) {
            snprintf(error, error_size, "\"allTaskIdsMustExist\" must be true or false");
            return BUTLER_ERR_INVALID;
        }
        request->all_task_ids_must_exist = cJSON_IsTrue(all_must_exist);
    }
    const cJSON *follow = cJSON_GetObjectItemCaseSensitive(object, "follow");
    if (follow) {
        if (!cJSON_IsBool(follow)) {
            snprintf(error, error_size, "\"follow\" must be true or false");
            return BUTLER_ERR_INVALID;
        }
        request->follow = cJSON_IsTrue(follow);
    }
    const cJSON *task_id = cJSON_GetObjectItemCaseSensitive(object, "taskId");
    const cJSON *task_name = cJSON_GetObjectItemCaseSensitive(object, "taskName");
    const cJSON *tag = cJSON_GetObjectItemCaseSensitive(object, "tag");
    const cJSON *custom_property = cJSON_GetObjectItemCaseSensitive(object, "customProperty");
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(object, "items");
    selectors = (task_id != NULL) + (task_name != NULL) + (tag != NULL) +
                (custom_property != NULL) + (items != NULL);
    if (topic_task_id) {
        if (selectors != 0) {
            snprintf(error, error_size,
                     "the task id is in the topic; the payload must not name another selector");
            return BUTLER_ERR_INVALID;
        }
        status = add_selector(request, TASK_SELECT_ID, topic_task_id, NULL, error, error_size);
    } else if (selectors != 1) {
        snprintf(
            error, error_size,
            "exactly one of \"taskId\", \"taskName\", \"tag\", \"customProperty\" is required");
        return BUTLER_ERR_INVALID;
    } else if (task_id || task_name || tag) {
        const cJSON *selector = task_id ? task_id : task_name ? task_name : tag;
        if (!cJSON_IsString(selector)) {
            snprintf(error, error_size, "\"%s\" must be a string", selector->string);
            return BUTLER_ERR_INVALID;
        }
        status = add_selector(request,
                              task_id     ? TASK_SELECT_ID
                              : task_name ? TASK_SELECT_NAME
                                          : TASK_SELECT_TAG,
                              selector->valuestring, NULL, error, error_size);
    } else if (custom_property) {
        const char *name = json_string_member(custom_property, "name");
        const char *value = json_string_member(custom_property, "value");
        if (!cJSON_IsObject(custom_property) || name == NULL || value == NULL) {
            snprintf(error, error_size,
                     "\"customProperty\" must be {\"name\": string, \"value\": string}");
            return BUTLER_ERR_INVALID;
        }
        status = add_selector(request, TASK_SELECT_CUSTOM_PROPERTY, name, value, error, error_size);
    } else {
        if (!cJSON_IsArray(items)) {
            snprintf(error, error_size, "\"items\" must be an array of typed items");
            return BUTLER_ERR_INVALID;
        }
        status = parse_typed_items(items, request, error, error_size);
    }
    if (status != BUTLER_OK)
        return status;
    const cJSON *kv = cJSON_GetObjectItemCaseSensitive(object, "kv");
    if (kv) {
        if (!cJSON_IsArray(kv)) {
            snprintf(error, error_size, "\"kv\" must be an array");
            return BUTLER_ERR_INVALID;
        }
        const cJSON *item;
        cJSON_ArrayForEach(item, kv)
        {
            status = add_kv(request, item, error, error_size);
            if (status != BUTLER_OK)
                return status;
        }
    }
    return BUTLER_OK;
}

/* The requestId is read before anything else so even a rejected request is
 * answered under the id its sender is waiting for. */
static enum butler_status take_request_id(const cJSON *object, struct task_request *request,
                                          char *error, size_t error_size)
{
    const cJSON *request_id = cJSON_GetObjectItemCaseSensitive(object, "requestId");
    if (request_id == NULL)
        return BUTLER_OK;
    if (!cJSON_IsString(request_id) || request_id->valuestring[0] == '\0' ||
        strlen(request_id->valuestring) > TASK_REQUEST_ID_MAX) {
        snprintf(error, error_size, "\"requestId\" must be a string of 1 to %d characters",
                 TASK_REQUEST_ID_MAX);
        return BUTLER_ERR_INVALID;
    }
    for (const unsigned char *p = (const unsigned char *)request_id->valuestring; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            snprintf(error, error_size, "\"requestId\" must not contain control characters");
            return BUTLER_ERR_INVALID;
        }
    }
    snprintf(request->request_id, sizeof request->request_id, "%s", request_id->valuestring);
    request->request_id_generated = false;
    return BUTLER_OK;
}

enum butler_status task_request_parse(const char *topic_task_id, bool bare_guid_only,
                                      const unsigned char *payload, size_t payload_length,
                                      struct task_request *request, char *error, size_t error_size)
{
    enum butler_status status = BUTLER_ERR_INVALID;
    cJSON *json = NULL;
    memset(request, 0, sizeof *request);
    task_make_uuid(request->request_id);
    request->request_id_generated = true;
    error[0] = '\0';

    if (payload_length > TASK_MESSAGE_MAX) {
        snprintf(error, error_size, "payload of %zu bytes is over the %d-byte limit",
                 payload_length, TASK_MESSAGE_MAX);
        status = BUTLER_ERR_TOO_LARGE;
        goto out;
    }
    if (!task_valid_utf8(payload, payload_length)) {
        snprintf(error, error_size, "payload is not valid UTF-8 text");
        goto out;
    }
    const unsigned char *text = payload;
    size_t length = payload_length;
    trim(&text, &length);

    if (topic_task_id && !task_is_guid(topic_task_id, strlen(topic_task_id))) {
        snprintf(error, error_size, "\"%.64s\" in the topic is not a task GUID", topic_task_id);
        goto out;
    }
    if (length == 0) {
        if (topic_task_id == NULL) {
            snprintf(error, error_size, "empty payload: expected a task GUID or a JSON request");
            goto out;
        }
        status = add_selector(request, TASK_SELECT_ID, topic_task_id, NULL, error, error_size);
        goto out;
    }
    if (text[0] != '{' && text[0] != '[') {
        if (topic_task_id) {
            snprintf(error, error_size, "payload must be empty or a JSON object");
            goto out;
        }
        if (!task_is_guid((const char *)text, length)) {
            snprintf(error, error_size, "payload is neither a task GUID nor JSON");
            goto out;
        }
        char task_id[37];
        memcpy(task_id, text, 36);
        task_id[36] = '\0';
        status = add_selector(request, TASK_SELECT_ID, task_id, NULL, error, error_size);
        goto out;
    }
    if (bare_guid_only) {
        snprintf(error, error_size, "qliksense/start_task takes a bare task GUID");
        goto out;
    }
    size_t error_offset = 0;
    json = json_parse_exact((const char *)text, length, &error_offset);
    if (json == NULL) {
        snprintf(error, error_size, "payload is not valid JSON (near byte %zu)", error_offset);
        goto out;
    }
    if (cJSON_IsObject(json)) {
        status = take_request_id(json, request, error, error_size);
        if (status == BUTLER_OK)
            status = parse_object(json, topic_task_id, request, error, error_size);
    } else if (cJSON_IsArray(json) && topic_task_id == NULL) {
        status = parse_typed_items(json, request, error, error_size);
    } else {
        snprintf(error, error_size, "payload must be a JSON object or array");
        status = BUTLER_ERR_INVALID;
    }
    /* Only key-value items is a request too, as in the Node.js Butler: the
     * items are stored and nothing is started. */
    if (status == BUTLER_OK && request->selector_count == 0 && request->kv_count == 0) {
        snprintf(error, error_size, "the request names no task");
        status = BUTLER_ERR_INVALID;
    }
out:
    cJSON_Delete(json);
    if (status != BUTLER_OK)
        task_request_clear(request);
    return status;
}
