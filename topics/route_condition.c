/*
 * Route conditions: is a custom property set on the event's task?
 * Worker threads (uses the worker's QRS client).
 */
#include <stdio.h>
#include <string.h>

#include "bridge/clients/qrs.h"
#include "bridge/model/sense_event.h"
#include "topics/route_internal.h"

enum {
    FILTER_MAX = 1024,
};

/* Is custom property name=value set on the event's task? Uses the event's
 * qrs data when present, else asks QRS. BUTLER_OK = yes, DENIED = no. */
enum butler_status route_check_condition(struct topic_worker *worker,
                                         const struct config_route *route, const cJSON *event,
                                         char *error, size_t error_size)
{
    const char *name = route->condition_custom_property_name;
    const char *value = route->condition_custom_property_value;
    if (!route_has_text(name))
        return BUTLER_OK;
    const cJSON *qrs = cJSON_GetObjectItemCaseSensitive(event, "qrs");
    const cJSON *properties = cJSON_GetObjectItemCaseSensitive(qrs, "taskCustomProperties");
    if (cJSON_IsArray(properties)) {
        const cJSON *property;
        cJSON_ArrayForEach(property, properties)
        {
            if (strcmp(route_json_string(property, "name"), name) == 0 &&
                strcmp(route_json_string(property, "value"), value ? value : "") == 0)
                return BUTLER_OK;
        }
        return BUTLER_ERR_DENIED;
    }
    const char *task_id = route_json_string(event, "taskId");
    if (!sense_is_guid(task_id, strlen(task_id))) {
        snprintf(error, error_size, "condition needs a taskId in the message");
        return BUTLER_ERR_DENIED;
    }
    if (worker->qrs == NULL) {
        snprintf(error, error_size, "condition needs QRS (qrs.url) to look the task up");
        return BUTLER_ERR_REMOTE;
    }
    char quoted_name[300], quoted_value[300], filter[FILTER_MAX];
    if (qrs_filter_quote(name, quoted_name, sizeof quoted_name) != BUTLER_OK ||
        qrs_filter_quote(value ? value : "", quoted_value, sizeof quoted_value) != BUTLER_OK)
        return BUTLER_ERR_TOO_LARGE;
    snprintf(filter, sizeof filter,
             "id eq %s and customProperties.definition.name eq %s and customProperties.value eq %s",
             task_id, quoted_name, quoted_value);
    cJSON *tasks = NULL;
    struct qrs_result result;
    enum butler_status status = qrs_find_tasks(worker->qrs, filter, &tasks, &result);
    if (status != BUTLER_OK) {
        snprintf(error, error_size, "condition lookup: %s", result.error);
        return BUTLER_ERR_REMOTE;
    }
    bool set = cJSON_GetArraySize(tasks) == 1;
    cJSON_Delete(tasks);
    return set ? BUTLER_OK : BUTLER_ERR_DENIED;
}
