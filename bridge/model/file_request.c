/*
 * File-operation requests (see file_request.h): the operation names and the
 * parser of a request body.
 */
#include "bridge/model/file_request.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "bridge/core/json.h"

static const char *const operation_names[] = {"copy", "move", "delete", "mkdir"};

bool file_operation_from_name(const char *name, enum file_operation *out)
{
    for (size_t i = 0; i < sizeof operation_names / sizeof operation_names[0]; i++)
        if (strcmp(name, operation_names[i]) == 0) {
            *out = (enum file_operation)i;
            return true;
        }
    return false;
}

const char *file_operation_name(enum file_operation operation)
{
    return operation_names[operation];
}

/* The Node.js Butler takes true/false and the strings "true"/"false". */
static bool read_flag(const cJSON *json, const char *name, bool *value, char *error,
                      size_t error_size)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, name);
    *value = false;
    if (item == NULL || cJSON_IsNull(item))
        return true;
    if (cJSON_IsBool(item)) {
        *value = cJSON_IsTrue(item);
        return true;
    }
    if (cJSON_IsString(item) && (strcasecmp(item->valuestring, "true") == 0 ||
                                 strcasecmp(item->valuestring, "false") == 0)) {
        *value = strcasecmp(item->valuestring, "true") == 0;
        return true;
    }
    snprintf(error, error_size, "%s must be true or false", name);
    return false;
}

static const char *required_string(const cJSON *json, const char *name, char *error,
                                   size_t error_size)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, name);
    if (item == NULL || cJSON_IsNull(item) || (cJSON_IsString(item) && !item->valuestring[0])) {
        snprintf(error, error_size, "required parameter %s is missing", name);
        return NULL;
    }
    if (!cJSON_IsString(item)) {
        snprintf(error, error_size, "%s must be a string", name);
        return NULL;
    }
    return item->valuestring;
}

enum butler_status file_request_parse(enum file_operation operation, const unsigned char *payload,
                                      size_t length, struct file_request *request, char *error,
                                      size_t error_size)
{
    memset(request, 0, sizeof *request);
    request->operation = operation;
    task_make_uuid(request->request_id);
    request->request_id_generated = true;
    if (length > TASK_MESSAGE_MAX) {
        snprintf(error, error_size, "the payload is larger than %d bytes", TASK_MESSAGE_MAX);
        return BUTLER_ERR_TOO_LARGE;
    }
    request->json = json_parse_exact((const char *)payload, length, NULL);
    if (!cJSON_IsObject(request->json)) {
        snprintf(error, error_size, "the payload must be a JSON object");
        return BUTLER_ERR_INVALID;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(request->json, "requestId");
    if (cJSON_IsString(id) && id->valuestring[0] &&
        strlen(id->valuestring) <= TASK_REQUEST_ID_MAX &&
        task_valid_utf8((const unsigned char *)id->valuestring, strlen(id->valuestring))) {
        snprintf(request->request_id, sizeof request->request_id, "%s", id->valuestring);
        request->request_id_generated = false;
    } else if (id != NULL) {
        snprintf(error, error_size, "requestId must be a string of 1 to %d characters",
                 TASK_REQUEST_ID_MAX);
        return BUTLER_ERR_INVALID;
    }
    /* cJSON would end a path at an embedded \u0000 without a word. */
    if (json_has_nul_escape((const char *)payload, length)) {
        snprintf(error, error_size, "the payload contains a NUL character (\\u0000)");
        return BUTLER_ERR_INVALID;
    }
    const cJSON *json = request->json;
    switch (operation) {
    case FILE_OPERATION_COPY:
    case FILE_OPERATION_MOVE:
        request->from_file = required_string(json, "fromFile", error, error_size);
        if (request->from_file == NULL)
            return BUTLER_ERR_INVALID;
        request->to_file = required_string(json, "toFile", error, error_size);
        if (request->to_file == NULL)
            return BUTLER_ERR_INVALID;
        if (!read_flag(json, "overwrite", &request->overwrite, error, error_size) ||
            !read_flag(json, "preserveTimestamp", &request->preserve_timestamp, error, error_size))
            return BUTLER_ERR_INVALID;
        break;
    case FILE_OPERATION_DELETE:
        request->delete_file = required_string(json, "deleteFile", error, error_size);
        if (request->delete_file == NULL)
            return BUTLER_ERR_INVALID;
        break;
    case FILE_OPERATION_MKDIR:
        request->directory = required_string(json, "directory", error, error_size);
        if (request->directory == NULL || !read_flag(json, "qvd", &request->qvd, error, error_size))
            return BUTLER_ERR_INVALID;
        break;
    }
    return BUTLER_OK;
}

void file_request_clear(struct file_request *request)
{
    cJSON_Delete(request->json);
    request->json = NULL;
}
