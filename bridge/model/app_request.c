/*
 * App requests (see app_request.h): the parser of a reload, list or dump
 * body.
 */
#include "bridge/model/app_request.h"

#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bridge/core/json.h"
#include "bridge/model/task_request.h"

static bool is_text(const char *text)
{
    for (const unsigned char *c = (const unsigned char *)text; *c; c++)
        if (*c < 0x20 || *c == 0x7f)
            return false;
    return true;
}

static enum butler_status parse_task_list(const cJSON *root, const char *name, char (*ids)[37],
                                          size_t *count, char *error, size_t error_size)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, name);
    *count = 0;
    if (list == NULL || cJSON_IsNull(list))
        return BUTLER_OK;
    if (!cJSON_IsArray(list)) {
        snprintf(error, error_size, "%s must be an array of task ids", name);
        return BUTLER_ERR_INVALID;
    }
    if (cJSON_GetArraySize(list) > APP_CHAINED_TASKS_MAX) {
        snprintf(error, error_size, "%s has more than %d task ids", name, APP_CHAINED_TASKS_MAX);
        return BUTLER_ERR_TOO_LARGE;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, list)
    {
        /* The Node.js Butler takes plain ids; {"taskId": ".."} is accepted too. */
        const char *id =
            cJSON_IsString(item) ? item->valuestring : json_string_member(item, "taskId");
        if (id == NULL || !task_is_guid(id, strlen(id))) {
            snprintf(error, error_size, "%s: every entry must be a task GUID", name);
            return BUTLER_ERR_INVALID;
        }
        snprintf(ids[*count], 37, "%s", id);
        (*count)++;
    }
    return BUTLER_OK;
}

static bool parse_bool(const cJSON *value, bool *out)
{
    if (value == NULL || cJSON_IsNull(value))
        return true;
    if (cJSON_IsBool(value)) {
        *out = cJSON_IsTrue(value);
        return true;
    }
    /* Load scripts often send booleans as strings. */
    if (cJSON_IsString(value) &&
        (strcmp(value->valuestring, "true") == 0 || strcmp(value->valuestring, "false") == 0)) {
        *out = strcmp(value->valuestring, "true") == 0;
        return true;
    }
    return false;
}

enum butler_status app_request_parse(enum app_operation operation, const unsigned char *payload,
                                     size_t payload_length, struct app_request *request,
                                     char *error, size_t error_size)
{
    enum butler_status status = BUTLER_ERR_INVALID;
    cJSON *root = NULL;
    memset(request, 0, sizeof *request);
    request->operation = operation;
    task_make_uuid(request->request_id);
    error[0] = '\0';
    if (payload_length > TASK_MESSAGE_MAX) {
        snprintf(error, error_size, "payload larger than %d bytes", TASK_MESSAGE_MAX);
        return BUTLER_ERR_TOO_LARGE;
    }
    /* An empty payload is fine for a list. */
    bool empty = true;
    for (size_t i = 0; i < payload_length && empty; i++)
        empty = payload[i] == ' ' || payload[i] == '\t' || payload[i] == '\r' || payload[i] == '\n';
    if (empty && operation == APP_OP_LIST)
        return BUTLER_OK;
    root = json_parse_exact((const char *)payload, payload_length, NULL);
    if (!cJSON_IsObject(root)) {
        snprintf(error, error_size, "payload must be a JSON object");
        goto out;
    }
    const cJSON *request_id = cJSON_GetObjectItemCaseSensitive(root, "requestId");
    if (request_id && !cJSON_IsNull(request_id)) {
        if (!cJSON_IsString(request_id) || request_id->valuestring[0] == '\0' ||
            strlen(request_id->valuestring) > APP_REQUEST_ID_MAX ||
            !is_text(request_id->valuestring)) {
            snprintf(error, error_size, "requestId must be a string of 1..%d characters",
                     APP_REQUEST_ID_MAX);
            goto out;
        }
        snprintf(request->request_id, sizeof request->request_id, "%s", request_id->valuestring);
    }
    if (operation != APP_OP_LIST) {
        const char *app_id = json_string_member(root, "appId");
        if (app_id == NULL || app_id[0] == '\0' || strlen(app_id) > APP_ID_MAX ||
            !is_text(app_id)) {
            snprintf(error, error_size, "appId must be a string of 1..%d characters", APP_ID_MAX);
            goto out;
        }
        snprintf(request->app_id, sizeof request->app_id, "%s", app_id);
    }
    if (operation == APP_OP_RELOAD) {
        const cJSON *mode = cJSON_GetObjectItemCaseSensitive(root, "reloadMode");
        if (mode && !cJSON_IsNull(mode)) {
            double value = cJSON_IsNumber(mode) ? mode->valuedouble
                           : cJSON_IsString(mode) && strlen(mode->valuestring) == 1
                               ? mode->valuestring[0] - '0'
                               : -1;
            if (value != 0 && value != 1 && value != 2) {
                snprintf(error, error_size, "reloadMode must be 0, 1 or 2");
                goto out;
            }
            request->reload_mode = (int)value;
        }
        if (!parse_bool(cJSON_GetObjectItemCaseSensitive(root, "partialReload"),
                        &request->partial_reload)) {
            snprintf(error, error_size, "partialReload must be true or false");
            goto out;
        }
        status = parse_task_list(root, "startQSEoWTaskOnSuccess", request->on_success,
                                 &request->on_success_count, error, error_size);
        if (status == BUTLER_OK)
            status = parse_task_list(root, "startQSEoWTaskOnFailure", request->on_failure,
                                     &request->on_failure_count, error, error_size);
        if (status != BUTLER_OK)
            goto out;
    }
    status = BUTLER_OK;
out:
    cJSON_Delete(root);
    return status;
}
