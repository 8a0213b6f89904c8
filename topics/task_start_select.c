/*
 * Task start: selection. Resolving a request's selectors to tasks through QRS
 * (task ids with cached names need no call), applying task_start.allow and
 * storing the request's key-value items.
 */
#include "topics/task_start_internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/core/runtime.h"
#include "topics/kv.h"

/* ---- allow-list ---- */

static bool allow_list_empty(const struct butler_config *config)
{
    return config->task_start.allow.task_ids.count == 0 &&
           config->task_start.allow.tags.count == 0 &&
           config->task_start.allow.custom_properties.count == 0;
}

bool task_start_allow_needs_metadata(const struct butler_config *config)
{
    return config->task_start.allow.tags.count > 0 ||
           config->task_start.allow.custom_properties.count > 0;
}

/* `task` is the QRS task/full object, or NULL when only ids are allow-listed. */
static bool task_allowed(const struct butler_config *config, const char *task_id, const cJSON *task)
{
    if (allow_list_empty(config))
        return true;
    const struct config_string_list *ids = &config->task_start.allow.task_ids;
    for (size_t i = 0; i < ids->count; i++)
        if (strcasecmp(ids->items[i], task_id) == 0)
            return true;
    if (task == NULL)
        return false;
    const struct config_string_list *tags = &config->task_start.allow.tags;
    const cJSON *tag;
    cJSON_ArrayForEach(tag, cJSON_GetObjectItemCaseSensitive(task, "tags"))
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(tag, "name");
        for (size_t i = 0; cJSON_IsString(name) && i < tags->count; i++)
            if (strcmp(tags->items[i], name->valuestring) == 0)
                return true;
    }
    const struct config_custom_property_list *properties =
        &config->task_start.allow.custom_properties;
    const cJSON *property;
    cJSON_ArrayForEach(property, cJSON_GetObjectItemCaseSensitive(task, "customProperties"))
    {
        const cJSON *definition = cJSON_GetObjectItemCaseSensitive(property, "definition");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(definition, "name");
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(property, "value");
        if (!cJSON_IsString(name) || !cJSON_IsString(value))
            continue;
        for (size_t i = 0; i < properties->count; i++)
            if (strcmp(properties->items[i].name, name->valuestring) == 0 &&
                strcmp(properties->items[i].value, value->valuestring) == 0)
                return true;
    }
    return false;
}

static bool grow_chosen(struct chosen_tasks *chosen)
{
    if (chosen->capacity >= TASK_CHOSEN_MAX)
        return false;
    size_t capacity =
        chosen->capacity * 2 < TASK_CHOSEN_MAX ? chosen->capacity * 2 : TASK_CHOSEN_MAX;
    struct chosen_task *items = malloc(capacity * sizeof *items);
    if (items == NULL) {
        LOG_ERROR(MODULE, "out of memory choosing tasks; the rest of the request's tasks are "
                          "not started");
        return false;
    }
    memcpy(items, chosen->items, chosen->count * sizeof *items);
    if (chosen->items != chosen->inline_items)
        free(chosen->items);
    chosen->items = items;
    chosen->capacity = capacity;
    return true;
}

static bool already_chosen(const struct chosen_tasks *chosen, const char *task_id)
{
    for (size_t i = 0; i < chosen->count; i++)
        if (strcasecmp(chosen->items[i].id, task_id) == 0)
            return true;
    return false;
}

static void choose(struct chosen_tasks *chosen, struct task_start_state *state, const char *id,
                   const char *name, const struct task_selector *selector, cJSON *task)
{
    if (already_chosen(chosen, id) || (chosen->count == chosen->capacity && !grow_chosen(chosen)))
        return;
    struct chosen_task *entry = &chosen->items[chosen->count++];
    snprintf(entry->id, sizeof entry->id, "%s", id);
    entry->name = strdup(name ? name : "");
    entry->selector = selector;
    entry->task = task;
    entry->execution_id[0] = '\0'; /* heap slots come from malloc: nothing is set for us */
    if (name && state->config->task_start.name_cache_s > 0)
        expiring_map_put(state->task_names, id, name,
                         (uint64_t)state->config->task_start.name_cache_s * 1000u, NULL);
}

static enum butler_status build_filter(const struct task_selector *selector, char *filter,
                                       size_t filter_size)
{
    char quoted[TASK_TEXT_MAX * 2 + 8];
    char quoted_value[TASK_TEXT_MAX * 2 + 8];
    enum butler_status status;
    switch (selector->kind) {
    case TASK_SELECT_ID:
        /* GUIDs are written unquoted in QRS filters; the parser checked the form. */
        snprintf(filter, filter_size, "id eq %s", selector->value);
        return BUTLER_OK;
    case TASK_SELECT_NAME:
        status = qrs_filter_quote(selector->value, quoted, sizeof quoted);
        if (status == BUTLER_OK)
            snprintf(filter, filter_size, "name eq %s", quoted);
        return status;
    case TASK_SELECT_TAG:
        status = qrs_filter_quote(selector->value, quoted, sizeof quoted);
        if (status == BUTLER_OK)
            snprintf(filter, filter_size, "tags.name eq %s", quoted);
        return status;
    case TASK_SELECT_CUSTOM_PROPERTY:
        status = qrs_filter_quote(selector->value, quoted, sizeof quoted);
        if (status == BUTLER_OK)
            status = qrs_filter_quote(selector->property_value, quoted_value, sizeof quoted_value);
        if (status == BUTLER_OK)
            snprintf(filter, filter_size,
                     "(customProperties.definition.name eq %s) and (customProperties.value eq %s)",
                     quoted, quoted_value);
        return status;
    }
    return BUTLER_ERR_INVALID;
}

/*
 * Turn one selector into chosen tasks, or an invalid/failed entry.
 * Thread: worker (uses the worker's QRS client).
 */
static void resolve_selector(struct topic_worker *worker, struct task_start_state *state,
                             const struct task_selector *selector, struct chosen_tasks *chosen,
                             struct task_answer *answer)
{
    const struct butler_config *config = state->config;
    if (!selector->valid) {
        cJSON_AddItemToArray(answer->invalid, task_start_selector_json(selector));
        task_start_note_error(answer, "not a valid task selector: %s", selector->value);
        return;
    }
    if (selector->kind == TASK_SELECT_ID && !task_start_allow_needs_metadata(config)) {
        char *cached_name = NULL;
        if (expiring_map_get(state->task_names, selector->value, &cached_name)) {
            choose(chosen, state, selector->value, cached_name, selector, NULL);
            free(cached_name);
            return;
        }
    }
    if (worker->qrs == NULL) {
        cJSON_AddItemToArray(answer->failed, task_start_selector_json(selector));
        task_start_note_error(answer, "%s", "QRS is not configured (qrs.url is empty)");
        return;
    }
    char filter[FILTER_MAX];
    if (build_filter(selector, filter, sizeof filter) != BUTLER_OK) {
        cJSON_AddItemToArray(answer->invalid, task_start_selector_json(selector));
        task_start_note_error(answer, "selector too long: %.64s", selector->value);
        return;
    }
    cJSON *tasks = NULL;
    struct qrs_result result;
    enum butler_status status = qrs_find_tasks(worker->qrs, filter, &tasks, &result);
    if (result.attempts > answer->attempts)
        answer->attempts = result.attempts;
    if (status != BUTLER_OK) {
        char reason[128]; /* hosts and ports stay in the log (qrs.c logged the failure) */
        qrs_plain_reason(status, &result, reason, sizeof reason);
        cJSON_AddItemToArray(answer->failed, task_start_selector_json(selector));
        task_start_note_error(answer, "%s", reason);
        return;
    }
    cJSON_AddItemToArray(chosen->lookups, tasks);
    if (cJSON_GetArraySize(tasks) == 0) {
        cJSON_AddItemToArray(answer->invalid, task_start_selector_json(selector));
        task_start_note_error(answer, "no task matches %s", filter);
        return;
    }
    const cJSON *task;
    cJSON_ArrayForEach(task, tasks)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(task, "id");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(task, "name");
        if (cJSON_IsString(id) && task_is_guid(id->valuestring, strlen(id->valuestring)))
            choose(chosen, state, id->valuestring, cJSON_IsString(name) ? name->valuestring : "",
                   selector, (cJSON *)task);
    }
}

/* ---- key-value items ---- */

/* Stored through the key-value store (topics/kv.c): retained
 * <root>/kv/<namespace>/<key>, the TTL as the MQTT v5 message expiry. Waits
 * for the broker like every worker publish. */
static enum butler_status store_kv(const struct task_request *request, struct task_answer *answer)
{
    struct butler_runtime *runtime = butler_runtime_current;
    for (size_t i = 0; i < request->kv_count; i++) {
        const struct task_kv_item *kv = &request->kv[i];
        char error[256];
        enum butler_status status = kv_put(runtime, kv->namespace_name, kv->key, kv->value,
                                           kv->ttl_ms, 0, error, sizeof error);
        if (status != BUTLER_OK) {
            task_start_note_error(answer, "storing key-values failed: %s", error);
            return status;
        }
    }
    return BUTLER_OK;
}

/* The tasks chosen for a request, split into skipped, denied and startable. */
static size_t sort_chosen(const struct butler_config *config, const struct task_request *request,
                          struct chosen_tasks *chosen, struct task_answer *answer,
                          struct chosen_task **startable)
{
    /* allTaskIdsMustExist: one missing id keeps every id-selected task from starting. */
    bool skip_ids = false;
    if (request->all_task_ids_must_exist)
        for (size_t i = 0; i < request->selector_count && !skip_ids; i++)
            if (request->selectors[i].kind == TASK_SELECT_ID) {
                const cJSON *entry;
                cJSON_ArrayForEach(entry, answer->invalid)
                {
                    const cJSON *id = cJSON_GetObjectItemCaseSensitive(entry, "taskId");
                    if (cJSON_IsString(id))
                        skip_ids = true;
                }
            }
    size_t to_start = 0;
    for (size_t i = 0; i < chosen->count; i++) {
        struct chosen_task *task = &chosen->items[i];
        if (skip_ids && task->selector->kind == TASK_SELECT_ID) {
            cJSON_AddItemToArray(answer->skipped,
                                 task_start_task_json(task->id, task->name, task->selector));
            task_start_note_error(answer, "%s",
                                  "allTaskIdsMustExist: an invalid task id kept the others "
                                  "from starting");
        } else if (!task_allowed(config, task->id, task->task)) {
            cJSON_AddItemToArray(answer->denied,
                                 task_start_task_json(task->id, task->name, task->selector));
            task_start_note_error(answer, "task %s is not in task_start.allow", task->id);
            metrics_count("butler_task_start_denied_total", "",
                          "Tasks refused by task_start.allow");
        } else {
            startable[to_start++] = task;
        }
    }
    return to_start;
}

/* True when every selector of a parsed request resolves without a QRS call
 * (task ids whose names are cached), so it can join a batch without making
 * the others wait for lookups. */
bool task_start_resolves_from_cache(struct task_start_state *state, const struct request_work *work)
{
    if (task_start_allow_needs_metadata(state->config))
        return false;
    for (size_t i = 0; i < work->request.selector_count; i++) {
        const struct task_selector *selector = &work->request.selectors[i];
        if (selector->valid && (selector->kind != TASK_SELECT_ID ||
                                !expiring_map_get(state->task_names, selector->value, NULL)))
            return false;
    }
    return true;
}

/* Resolve the selectors, apply the allow-list and store the key-values: what
 * is left in work->startable is to be started. Worker thread. */
void task_start_choose_work(struct topic_worker *worker, struct task_start_state *state,
                            struct request_work *work)
{
    struct task_request *request = &work->request;
    for (size_t i = 0; i < request->selector_count; i++)
        resolve_selector(worker, state, &request->selectors[i], &work->chosen, &work->answer);
    work->startable =
        malloc((work->chosen.count ? work->chosen.count : 1) * sizeof *work->startable);
    if (work->startable == NULL) {
        task_start_keep_for_next_start(work);
        return;
    }
    work->to_start =
        sort_chosen(state->config, request, &work->chosen, &work->answer, work->startable);
    if (request->selector_count == 0) {
        /* Key-value items only (the Node.js Butler's "-" with a body of
         * keyvaluestore items): store them, start nothing. */
        work->answer.key_values_only = true;
        work->answer.key_values_stored = store_kv(request, &work->answer) == BUTLER_OK;
        return;
    }
    if (work->to_start > 0 && request->kv_count > 0 &&
        store_kv(request, &work->answer) != BUTLER_OK) {
        for (size_t i = 0; i < work->to_start; i++)
            cJSON_AddItemToArray(work->answer.failed,
                                 task_start_task_json(work->startable[i]->id,
                                                      work->startable[i]->name,
                                                      work->startable[i]->selector));
        work->to_start = 0;
    }
}
