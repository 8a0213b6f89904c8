/*
 * Pure request-body parsing and response mapping for the HTTP API (see
 * http_body.h). No I/O: everything here is fuzzed.
 */
#include "bridge/ingress/http_body.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "bridge/core/json.h"
#include "bridge/model/task_request.h"

static const char base62_alphabet[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

enum http_method http_body_method(const char *request_method, const char *override_header)
{
    if (request_method == NULL)
        return HTTP_METHOD_OTHER;
    if (strcmp(request_method, "GET") == 0)
        return HTTP_METHOD_GET;
    if (strcmp(request_method, "HEAD") == 0)
        return HTTP_METHOD_HEAD;
    if (strcmp(request_method, "PUT") == 0)
        return HTTP_METHOD_PUT;
    if (strcmp(request_method, "DELETE") == 0)
        return HTTP_METHOD_DELETE;
    if (strcmp(request_method, "POST") != 0)
        return HTTP_METHOD_OTHER;
    /* Only POST may be overridden, and only to the methods the Qlik REST
     * connector cannot send itself. */
    if (override_header != NULL) {
        if (strcasecmp(override_header, "PUT") == 0)
            return HTTP_METHOD_PUT;
        if (strcasecmp(override_header, "DELETE") == 0)
            return HTTP_METHOD_DELETE;
    }
    return HTTP_METHOD_POST;
}

const char *http_body_method_name(enum http_method method)
{
    switch (method) {
    case HTTP_METHOD_GET:
        return "GET";
    case HTTP_METHOD_HEAD:
        return "HEAD";
    case HTTP_METHOD_POST:
        return "POST";
    case HTTP_METHOD_PUT:
        return "PUT";
    case HTTP_METHOD_DELETE:
        return "DELETE";
    case HTTP_METHOD_OTHER:
        break;
    }
    return "OTHER";
}

/*
 * Every byte of the presented token is compared against the expected one
 * (wrapping over it), and the length difference is folded into the result, so
 * the loop's duration depends on the presented length only.
 */
bool http_body_token_equal(const char *presented, size_t presented_length, const char *expected)
{
    if (presented == NULL || expected == NULL)
        return false;
    size_t expected_length = strlen(expected);
    if (expected_length == 0)
        return false;
    volatile unsigned char difference = (unsigned char)(presented_length != expected_length);
    for (size_t i = 0; i < presented_length; i++)
        difference |= (unsigned char)(presented[i] ^ expected[i % expected_length]);
    return difference == 0;
}

bool http_body_bearer_allowed(const char *authorization, const struct config_string_list *tokens)
{
    if (authorization == NULL || tokens == NULL)
        return false;
    if (strncasecmp(authorization, "Bearer ", 7) != 0)
        return false;
    const char *token = authorization + 7;
    while (*token == ' ')
        token++;
    size_t length = strlen(token);
    while (length > 0 && (token[length - 1] == ' ' || token[length - 1] == '\t'))
        length--;
    bool allowed = false;
    for (size_t i = 0; i < tokens->count; i++)
        allowed |= http_body_token_equal(token, length, tokens->items[i]);
    return allowed;
}

bool http_body_is_json_content_type(const char *content_type)
{
    if (content_type == NULL)
        return false;
    while (*content_type == ' ')
        content_type++;
    size_t length = strcspn(content_type, "; \t");
    if (length == 16 && strncasecmp(content_type, "application/json", 16) == 0)
        return true;
    /* application/<vendor>+json */
    return length > 17 && strncasecmp(content_type, "application/", 12) == 0 &&
           strncasecmp(content_type + length - 5, "+json", 5) == 0;
}

static int digit_value(char c, int base)
{
    if (base == 16) {
        if (c >= '0' && c <= '9')
            return c - '0';
        if (c >= 'a' && c <= 'f')
            return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
            return c - 'A' + 10;
        return -1;
    }
    const char *at = c ? strchr(base62_alphabet, c) : NULL;
    return at ? (int)(at - base62_alphabet) : -1;
}

/*
 * Schoolbook conversion: the output number is kept as little-endian digits
 * in `to_base` and multiplied by `from_base` plus each input digit in turn.
 * The digit buffer is sized for the worst case of HTTP_BASE_INPUT_MAX input
 * digits (base62 -> base16 grows by log(62)/log(16) < 1.5).
 */
enum butler_status http_body_base_convert(const char *input, size_t input_length, int from_base,
                                          int to_base, char *out, size_t out_size)
{
    enum { DIGITS_MAX = HTTP_BASE_INPUT_MAX * 3 / 2 + 2 };
    unsigned char digits[DIGITS_MAX];
    size_t count = 0;
    if (input == NULL || out == NULL || out_size == 0 || (from_base != 16 && from_base != 62) ||
        (to_base != 16 && to_base != 62))
        return BUTLER_ERR_INVALID;
    out[0] = '\0';
    if (input_length == 0)
        return BUTLER_ERR_INVALID;
    if (input_length > HTTP_BASE_INPUT_MAX)
        return BUTLER_ERR_TOO_LARGE;
    for (size_t i = 0; i < input_length; i++) {
        int value = digit_value(input[i], from_base);
        if (value < 0)
            return BUTLER_ERR_INVALID;
        unsigned carry = (unsigned)value;
        for (size_t d = 0; d < count; d++) {
            unsigned product = digits[d] * (unsigned)from_base + carry;
            digits[d] = (unsigned char)(product % (unsigned)to_base);
            carry = product / (unsigned)to_base;
        }
        while (carry > 0) {
            if (count >= DIGITS_MAX)
                return BUTLER_ERR_TOO_LARGE;
            digits[count++] = (unsigned char)(carry % (unsigned)to_base);
            carry /= (unsigned)to_base;
        }
    }
    if (count == 0)
        digits[count++] = 0; /* the number zero */
    if (count + 1 > out_size)
        return BUTLER_ERR_TOO_LARGE;
    for (size_t i = 0; i < count; i++)
        out[i] = base62_alphabet[digits[count - 1 - i]]; /* 0-9a-f are a prefix of it */
    out[count] = '\0';
    return BUTLER_OK;
}

/* Parse a body that must be one JSON object. The depth check comes first with
 * its own message: CivetWeb's handler threads have small stacks (see json.h). */
static cJSON *parse_object(const char *body, size_t length, char *error, size_t error_size)
{
    if (body == NULL || length == 0) {
        snprintf(error, error_size, "a JSON object body is required");
        return NULL;
    }
    if (!task_valid_utf8((const unsigned char *)body, length)) {
        snprintf(error, error_size, "the body is not valid UTF-8");
        return NULL;
    }
    if (!json_depth_within(body, length, JSON_DEPTH_MAX)) {
        snprintf(error, error_size, "the body is nested deeper than %d levels", JSON_DEPTH_MAX);
        return NULL;
    }
    size_t offset = 0;
    cJSON *root = json_parse_exact(body, length, &offset);
    if (root == NULL) {
        snprintf(error, error_size, "the body is not valid JSON (at byte %zu)", offset);
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        snprintf(error, error_size, "the body must be a JSON object");
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* A required non-empty string member, or NULL with `error` set. */
static const char *required_string(const cJSON *object, const char *name, char *error,
                                   size_t error_size)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    if (!cJSON_IsString(item) || item->valuestring[0] == '\0') {
        snprintf(error, error_size, "\"%s\" is required and must be a non-empty string", name);
        return NULL;
    }
    return item->valuestring;
}

void http_publish_body_clear(struct http_publish_body *body)
{
    if (body == NULL)
        return;
    free(body->topic);
    free(body->message);
    free(body->echo);
    memset(body, 0, sizeof *body);
}

enum butler_status http_body_parse_publish(const char *body, size_t length,
                                           struct http_publish_body *out, char *error,
                                           size_t error_size)
{
    enum butler_status status = BUTLER_ERR_INVALID;
    memset(out, 0, sizeof *out);
    out->qos = 1;
    cJSON *root = parse_object(body, length, error, error_size);
    if (root == NULL)
        goto out;
    const char *topic = required_string(root, "topic", error, error_size);
    if (topic == NULL)
        goto out;
    if (strlen(topic) > HTTP_TOPIC_MAX || strpbrk(topic, "+#") != NULL) {
        snprintf(error, error_size,
                 "\"topic\" must be at most %d bytes without the wildcards + and #",
                 HTTP_TOPIC_MAX);
        goto out;
    }
    const cJSON *message = cJSON_GetObjectItemCaseSensitive(root, "message");
    if (!cJSON_IsString(message)) {
        snprintf(error, error_size, "\"message\" is required and must be a string");
        goto out;
    }
    const cJSON *qos = cJSON_GetObjectItemCaseSensitive(root, "qos");
    if (qos != NULL) {
        if (!cJSON_IsNumber(qos) || qos->valuedouble < 0 || qos->valuedouble > 2 ||
            qos->valuedouble != (double)(int)qos->valuedouble) {
            snprintf(error, error_size, "\"qos\" must be 0, 1 or 2");
            goto out;
        }
        out->qos = (int)qos->valuedouble;
    }
    const cJSON *retain = cJSON_GetObjectItemCaseSensitive(root, "retain");
    if (retain != NULL) {
        if (!cJSON_IsBool(retain)) {
            snprintf(error, error_size, "\"retain\" must be true or false");
            goto out;
        }
        out->retain = cJSON_IsTrue(retain);
    }
    out->topic = strdup(topic);
    out->message = strdup(message->valuestring);
    out->echo = cJSON_PrintUnformatted(root);
    if (out->topic == NULL || out->message == NULL || out->echo == NULL) {
        snprintf(error, error_size, "out of memory");
        status = BUTLER_ERR_NOMEM;
        goto out;
    }
    status = BUTLER_OK;
out:
    if (status != BUTLER_OK)
        http_publish_body_clear(out);
    cJSON_Delete(root);
    return status;
}

enum butler_status http_body_parse_slack(const char *body, size_t length, char **payload_out,
                                         char **echo_out, char *error, size_t error_size)
{
    enum butler_status status = BUTLER_ERR_INVALID;
    cJSON *payload = NULL;
    *payload_out = NULL;
    *echo_out = NULL;
    cJSON *root = parse_object(body, length, error, error_size);
    if (root == NULL)
        goto out;
    const char *channel = required_string(root, "channel", error, error_size);
    const char *from_user = channel ? required_string(root, "from_user", error, error_size) : NULL;
    const char *msg = from_user ? required_string(root, "msg", error, error_size) : NULL;
    if (msg == NULL)
        goto out;
    const cJSON *emoji = cJSON_GetObjectItemCaseSensitive(root, "emoji");
    if (emoji != NULL && !cJSON_IsString(emoji)) {
        snprintf(error, error_size, "\"emoji\" must be a string");
        goto out;
    }
    status = BUTLER_ERR_NOMEM;
    snprintf(error, error_size, "out of memory");
    payload = cJSON_CreateObject();
    if (payload == NULL || !cJSON_AddStringToObject(payload, "text", msg) ||
        !cJSON_AddStringToObject(payload, "channel", channel) ||
        !cJSON_AddStringToObject(payload, "username", from_user))
        goto out;
    if (emoji != NULL && emoji->valuestring[0] != '\0' &&
        !cJSON_AddStringToObject(payload, "icon_emoji", emoji->valuestring))
        goto out;
    *payload_out = cJSON_PrintUnformatted(payload);
    *echo_out = cJSON_PrintUnformatted(root);
    if (*payload_out == NULL || *echo_out == NULL)
        goto out;
    error[0] = '\0';
    status = BUTLER_OK;
out:
    if (status != BUTLER_OK) {
        free(*payload_out);
        free(*echo_out);
        *payload_out = NULL;
        *echo_out = NULL;
    }
    cJSON_Delete(payload);
    cJSON_Delete(root);
    return status;
}

enum butler_status http_body_task_start_payload(const char *path_task_id, const char *body,
                                                size_t length, bool all_task_ids_must_exist,
                                                const char *request_id, char **payload_out,
                                                char *error, size_t error_size)
{
    enum butler_status status = BUTLER_ERR_INVALID;
    cJSON *body_items = NULL;
    cJSON *root = NULL;
    struct task_request check;
    bool check_filled = false;
    *payload_out = NULL;
    /* Whitespace-only counts as no body (some clients send "\n"). */
    size_t start = 0;
    while (body && start < length && strchr(" \t\r\n", body[start]) != NULL)
        start++;
    if (body != NULL && start < length) {
        if (!task_valid_utf8((const unsigned char *)body, length)) {
            snprintf(error, error_size, "the body is not valid UTF-8");
            goto out;
        }
        if (!json_depth_within(body, length, JSON_DEPTH_MAX)) {
            snprintf(error, error_size, "the body is nested deeper than %d levels", JSON_DEPTH_MAX);
            goto out;
        }
        size_t offset = 0;
        body_items = json_parse_exact(body, length, &offset);
        if (body_items == NULL) {
            snprintf(error, error_size, "the body is not valid JSON (at byte %zu)", offset);
            goto out;
        }
        if (!cJSON_IsArray(body_items)) {
            snprintf(error, error_size,
                     "the body must be a JSON array of {\"type\", \"payload\"} items");
            goto out;
        }
    }
    if (path_task_id == NULL || path_task_id[0] == '\0' || strlen(path_task_id) > TASK_TEXT_MAX) {
        snprintf(error, error_size, "the task id in the path is missing or too long");
        goto out;
    }
    /* "-" and no items: the Node.js Butler answers 200 with empty lists;
     * there is nothing to publish (no payload). */
    if (strcmp(path_task_id, "-") == 0 && cJSON_GetArraySize(body_items) == 0) {
        status = BUTLER_OK;
        error[0] = '\0';
        goto out;
    }
    snprintf(error, error_size, "out of memory");
    status = BUTLER_ERR_NOMEM;
    root = cJSON_CreateObject();
    cJSON *items = root ? cJSON_AddArrayToObject(root, "items") : NULL;
    if (items == NULL || !cJSON_AddStringToObject(root, "requestId", request_id) ||
        !cJSON_AddBoolToObject(root, "allTaskIdsMustExist", all_task_ids_must_exist))
        goto out;
    /* "-" is the Node.js Butler's "everything is in the body". */
    if (strcmp(path_task_id, "-") != 0) {
        cJSON *item = cJSON_CreateObject();
        cJSON *item_payload = item ? cJSON_AddObjectToObject(item, "payload") : NULL;
        if (item_payload == NULL) {
            cJSON_Delete(item);
            goto out;
        }
        cJSON_AddItemToArray(items, item);
        if (!cJSON_AddStringToObject(item, "type", "starttaskid") ||
            !cJSON_AddStringToObject(item_payload, "taskId", path_task_id))
            goto out;
    }
    if (body_items != NULL) {
        cJSON *item = body_items->child;
        while (item != NULL) {
            cJSON *next = item->next;
            cJSON_AddItemToArray(items, cJSON_DetachItemViaPointer(body_items, item));
            item = next;
        }
    }
    *payload_out = cJSON_PrintUnformatted(root);
    if (*payload_out == NULL)
        goto out;
    /* The worker parses the same text: reject here what it would reject. */
    status = task_request_parse(NULL, false, (const unsigned char *)*payload_out,
                                strlen(*payload_out), &check, error, error_size);
    check_filled = status == BUTLER_OK;
    if (status != BUTLER_OK)
        goto out;
    error[0] = '\0';
out:
    if (check_filled)
        task_request_clear(&check);
    if (status != BUTLER_OK) {
        free(*payload_out);
        *payload_out = NULL;
    }
    cJSON_Delete(body_items);
    cJSON_Delete(root);
    return status;
}

/* ---- result -> Node.js shape ---- */

static const char *string_of(const cJSON *object, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

/* {taskId, taskName} from a result entry; NULL when it has no taskId. */
static bool add_task(cJSON *array, const cJSON *entry)
{
    const char *id = string_of(entry, "taskId");
    const char *name = string_of(entry, "taskName");
    if (id == NULL)
        return true;
    cJSON *item = cJSON_CreateObject();
    if (item == NULL)
        return false;
    cJSON_AddItemToArray(array, item);
    return cJSON_AddStringToObject(item, "taskId", id) &&
           cJSON_AddStringToObject(item, "taskName", name ? name : "");
}

/* Append {field: value} unless an equal entry is there already (a tag that
 * matched several denied tasks is one denied tag in the Node.js shape). */
static bool add_unique(cJSON *array, const char *field, const char *value, const char *field2,
                       const char *value2)
{
    const cJSON *existing;
    cJSON_ArrayForEach(existing, array)
    {
        const char *a = string_of(existing, field);
        const char *b = field2 ? string_of(existing, field2) : NULL;
        if (a && strcmp(a, value) == 0 && (field2 == NULL || (b && strcmp(b, value2) == 0)))
            return true;
    }
    cJSON *item = cJSON_CreateObject();
    if (item == NULL)
        return false;
    cJSON_AddItemToArray(array, item);
    if (!cJSON_AddStringToObject(item, field, value))
        return false;
    return field2 == NULL || cJSON_AddStringToObject(item, field2, value2);
}

/* The customProperty {name, value} of an entry, or false. */
static bool custom_property_of(const cJSON *entry, const char **name, const char **value)
{
    const cJSON *property = cJSON_GetObjectItemCaseSensitive(entry, "customProperty");
    *name = string_of(property, "name");
    *value = string_of(property, "value");
    return *name != NULL && *value != NULL;
}

/* Copy each entry of `list` with a taskId as {taskId, taskName}. */
static bool copy_tasks(cJSON *out, const char *name, const cJSON *list)
{
    if (cJSON_GetArraySize(list) == 0)
        return true;
    cJSON *array = cJSON_AddArrayToObject(out, name);
    if (array == NULL)
        return false;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, list)
    {
        if (!add_task(array, entry))
            return false;
    }
    return true;
}

/* The Node.js shape of a parsed result object (see http_body_task_result_to_node). */
static enum butler_status node_from_result(const cJSON *root, char **out)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    cJSON *node = NULL;
    node = cJSON_CreateObject();
    cJSON *tasks_id = node ? cJSON_AddObjectToObject(node, "tasksId") : NULL;
    cJSON *id_started = tasks_id ? cJSON_AddArrayToObject(tasks_id, "started") : NULL;
    cJSON *id_invalid = tasks_id ? cJSON_AddArrayToObject(tasks_id, "invalid") : NULL;
    cJSON *id_denied = tasks_id ? cJSON_AddArrayToObject(tasks_id, "denied") : NULL;
    cJSON *tag = node ? cJSON_AddArrayToObject(node, "tasksTag") : NULL;
    cJSON *tag_denied = node ? cJSON_AddArrayToObject(node, "tasksTagDenied") : NULL;
    cJSON *cp = node ? cJSON_AddArrayToObject(node, "tasksCP") : NULL;
    cJSON *cp_denied = node ? cJSON_AddArrayToObject(node, "tasksCPDenied") : NULL;
    if (id_started == NULL || id_invalid == NULL || id_denied == NULL || tag == NULL ||
        tag_denied == NULL || cp == NULL || cp_denied == NULL)
        goto out;

    const cJSON *entry;
    cJSON_ArrayForEach(entry, cJSON_GetObjectItemCaseSensitive(root, "started"))
    {
        const char *via = string_of(entry, "via");
        cJSON *target = id_started;
        if (via && strcmp(via, "tag") == 0)
            target = tag;
        else if (via && strcmp(via, "customProperty") == 0)
            target = cp;
        if (!add_task(target, entry))
            goto out;
    }
    cJSON_ArrayForEach(entry, cJSON_GetObjectItemCaseSensitive(root, "invalid"))
    {
        /* Only ids are reported as invalid by the Node.js Butler; a tag or
         * custom property that matches no task is simply nothing started. */
        const char *id = string_of(entry, "taskId");
        if (id == NULL)
            id = string_of(entry, "taskName");
        if (id && !add_unique(id_invalid, "taskId", id, NULL, NULL))
            goto out;
    }
    cJSON_ArrayForEach(entry, cJSON_GetObjectItemCaseSensitive(root, "denied"))
    {
        const char *via = string_of(entry, "via");
        const char *name, *value;
        if (via && strcmp(via, "tag") == 0 && string_of(entry, "tag")) {
            if (!add_unique(tag_denied, "tag", string_of(entry, "tag"), NULL, NULL))
                goto out;
        } else if (via && strcmp(via, "customProperty") == 0 &&
                   custom_property_of(entry, &name, &value)) {
            if (!add_unique(cp_denied, "name", name, "value", value))
                goto out;
        } else if (string_of(entry, "taskId") &&
                   !add_unique(id_denied, "taskId", string_of(entry, "taskId"), NULL, NULL)) {
            goto out;
        }
    }
    /* Butler's additions, after the Node.js fields. */
    const char *request_id = string_of(root, "requestId");
    const char *result_status = string_of(root, "status");
    const char *error = string_of(root, "error");
    if ((request_id && !cJSON_AddStringToObject(node, "requestId", request_id)) ||
        (result_status && !cJSON_AddStringToObject(node, "status", result_status)) ||
        !copy_tasks(node, "failed", cJSON_GetObjectItemCaseSensitive(root, "failed")) ||
        !copy_tasks(node, "skipped", cJSON_GetObjectItemCaseSensitive(root, "skipped")) ||
        (error && !cJSON_AddStringToObject(node, "error", error)))
        goto out;
    *out = cJSON_PrintUnformatted(node);
    if (*out == NULL)
        goto out;
    status = BUTLER_OK;
out:
    cJSON_Delete(node);
    return status;
}

enum butler_status http_body_task_result_to_node(const char *result, size_t length, char **out)
{
    enum butler_status status = BUTLER_ERR_INVALID;
    *out = NULL;
    cJSON *root = result ? json_parse_exact(result, length, NULL) : NULL;
    if (cJSON_IsObject(root))
        status = node_from_result(root, out);
    cJSON_Delete(root);
    return status;
}

enum butler_status http_body_task_start_nothing(const char *request_id, char **out)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    *out = NULL;
    cJSON *root = cJSON_CreateObject();
    if (root != NULL && cJSON_AddStringToObject(root, "requestId", request_id) != NULL)
        status = node_from_result(root, out);
    cJSON_Delete(root);
    return status;
}
