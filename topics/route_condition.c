/*
 * Route conditions: is a custom property set on the event's task?
 * Worker threads (uses the worker's QRS client).
 *
 * One rule, whichever way the properties were obtained (the event's
 * qrs.taskCustomProperties or the task read live from QRS): the name and
 * the value must belong to the same property, and both compare without
 * regard to letter case, as QRS compares strings (sense-interfaces.md 1.2).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "bridge/clients/qrs.h"
#include "bridge/model/sense_event.h"
#include "topics/route_internal.h"

enum {
    FILTER_MAX = 128,
};

/* A property's name in either shape: {"name"} (events) or
 * {"definition": {"name"}} (QRS entities). NULL when it has none. */
static const char *property_name(const cJSON *property)
{
    const char *name = json_string_member(property, "name");
    if (name == NULL)
        name = json_string_member(cJSON_GetObjectItemCaseSensitive(property, "definition"), "name");
    return name;
}

bool route_condition_matches(const cJSON *properties, const char *name, const char *value)
{
    const cJSON *property;
    cJSON_ArrayForEach(property, properties)
    {
        const char *got_name = property_name(property);
        const char *got_value = json_string_member(property, "value");
        if (got_name && strcasecmp(got_name, name) == 0 &&
            strcasecmp(got_value ? got_value : "", value ? value : "") == 0)
            return true;
    }
    return false;
}

/* True when `tags` (names, or {"name"} objects) holds `tag` exactly. */
static bool tags_hold(const cJSON *tags, const char *tag)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, tags)
    {
        const char *name =
            cJSON_IsString(item) ? item->valuestring : json_string_member(item, "name");
        if (name && strcmp(name, tag) == 0)
            return true;
    }
    return false;
}

/* condition.tag: a Qlik Cloud event's appTags, a Sense event's qrs.taskTags
 * or qrs.appTags (the Node.js Butler's per-app opt-in, exact tag name). An
 * event that carries no tags does not opt in. */
bool route_condition_tag_matches(const cJSON *event, const char *tag)
{
    const cJSON *qrs = cJSON_GetObjectItemCaseSensitive(event, "qrs");
    return tags_hold(cJSON_GetObjectItemCaseSensitive(event, "appTags"), tag) ||
           tags_hold(cJSON_GetObjectItemCaseSensitive(qrs, "taskTags"), tag) ||
           tags_hold(cJSON_GetObjectItemCaseSensitive(qrs, "appTags"), tag);
}

enum butler_status route_check_condition(struct topic_worker *worker,
                                         const struct config_route *route, const cJSON *event,
                                         char *error, size_t error_size)
{
    if (route_has_text(route->condition_tag) &&
        !route_condition_tag_matches(event, route->condition_tag))
        return BUTLER_ERR_DENIED;
    const char *name = route->condition_custom_property_name;
    const char *value = route->condition_custom_property_value;
    if (!route_has_text(name))
        return BUTLER_OK;
    const cJSON *qrs = cJSON_GetObjectItemCaseSensitive(event, "qrs");
    const cJSON *properties = cJSON_GetObjectItemCaseSensitive(qrs, "taskCustomProperties");
    if (cJSON_IsArray(properties))
        return route_condition_matches(properties, name, value) ? BUTLER_OK : BUTLER_ERR_DENIED;
    const char *task_id = route_json_string(event, "taskId");
    if (!sense_is_guid(task_id, strlen(task_id))) {
        snprintf(error, error_size, "condition needs a taskId in the message");
        return BUTLER_ERR_DENIED;
    }
    if (worker->qrs == NULL) {
        snprintf(error, error_size, "condition needs QRS (qrs.url) to look the task up");
        return BUTLER_ERR_REMOTE;
    }
    /* The whole task, then the same rule as above: a QRS filter on name and
     * value would match them on two different properties. */
    char filter[FILTER_MAX];
    snprintf(filter, sizeof filter, "id eq %s", task_id);
    cJSON *tasks = NULL;
    struct qrs_result result;
    enum butler_status status = qrs_find_tasks(worker->qrs, filter, &tasks, &result);
    if (status != BUTLER_OK) {
        snprintf(error, error_size, "condition lookup in QRS: %s",
                 result.error[0] ? result.error : butler_status_str(status));
        return BUTLER_ERR_REMOTE;
    }
    const cJSON *task = cJSON_GetArrayItem(tasks, 0);
    if (task == NULL) {
        snprintf(error, error_size, "condition: QRS has no task %s", task_id);
        status = BUTLER_ERR_DENIED;
    } else {
        status = route_condition_matches(cJSON_GetObjectItemCaseSensitive(task, "customProperties"),
                                         name, value)
                     ? BUTLER_OK
                     : BUTLER_ERR_DENIED;
    }
    cJSON_Delete(tasks);
    return status;
}
