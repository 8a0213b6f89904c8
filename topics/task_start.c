/*
 * <root>/task/start — start Qlik Sense tasks.
 *
 * A request names tasks by id, name, tag or custom property. The worker:
 *   1. parses it (task_start_request.c); a request it cannot read is answered
 *      "invalid" at once;
 *   2. drops a repeated requestId seen within task_start.dedup_ttl_s, repeating
 *      the earlier answer instead of starting the tasks again;
 *   3. resolves the selectors to tasks through QRS (task/full with a filter;
 *      task names by id come from a short-lived cache, so a repeated start by
 *      id costs one QRS call);
 *   4. applies task_start.allow to every task, whatever path the request took;
 *   5. stores the request's key-values (retained <root>/kv/<ns>/<key>);
 *   6. starts each allowed task with POST /qrs/task/{id}/start, retrying
 *      temporary failures per `retry`;
 *   7. answers once on <root>/task/result and on the request's MQTT v5
 *      Response Topic; a request that failed for good also goes to
 *      <root>/deadletter/<topic>.
 */
#include "topics/task_start.h"
#include "topics/handoff.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "bridge/core/clock.h"
#include "bridge/store/expiring_map.h"
#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/link/mqtt_link.h"
#include "bridge/store/spool.h"
#include "bridge/clients/qrs.h"
#include "topics/kv.h"
#include "topics/publish.h"

#define MODULE "task-start"

enum {
    NAME_CACHE_MAX = 4096,
    RESULT_CACHE_BYTES_MAX = 4096,
    FILTER_MAX = 4096,
    TASK_CHOSEN_MAX = TASK_SELECTORS_MAX * 4, /* tasks one request may start */
};

struct task_start_state {
    const struct butler_config *config;
    struct expiring_map *requests;   /* requestId -> cached answer ("" while running) */
    struct expiring_map *task_names; /* taskId -> name */
};

enum butler_status task_start_state_create(const struct butler_config *config,
                                           struct task_start_state **out)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    struct task_start_state *state = calloc(1, sizeof *state);
    if (state == NULL)
        goto out;
    state->config = config;
    status = expiring_map_create_named(
        "task_start_requests", (size_t)config->task_start.dedup_max_requests, &state->requests);
    if (status != BUTLER_OK)
        goto out;
    status = expiring_map_create_named("task_names", NAME_CACHE_MAX, &state->task_names);
    if (status != BUTLER_OK)
        goto out;
    *out = state;
    state = NULL;
out:
    task_start_state_destroy(state);
    return status;
}

void task_start_state_destroy(struct task_start_state *state)
{
    if (state == NULL)
        return;
    expiring_map_destroy(state->requests);
    expiring_map_destroy(state->task_names);
    free(state);
}

/*
 * What the requestId window keeps for an answered request: a reference to
 * the answer's DONE record in the spool ("#<id>") when it was spooled, so
 * that memory per remembered request stays small (the answer is read back
 * only when a request repeats); the answer itself otherwise. *text_out is
 * malloc'd, owned by the caller.
 */
static char *remembered_value(uint64_t spool_id, const char *answer, size_t length)
{
    char reference[32];
    if (spool_id != 0) {
        snprintf(reference, sizeof reference, "#%llu", (unsigned long long)spool_id);
        return strdup(reference);
    }
    return strndup(length <= RESULT_CACHE_BYTES_MAX ? answer : "",
                   length <= RESULT_CACHE_BYTES_MAX ? length : 0);
}

/* The earlier answer for a repeated request: NULL while the first is still
 * running (its own answer is on the way). Returns malloc'd text. */
static char *earlier_answer(const char *remembered)
{
    if (remembered == NULL || remembered[0] == '\0')
        return NULL;
    if (remembered[0] != '#')
        return strdup(remembered);
    char *end = NULL;
    unsigned long long spool_id = strtoull(remembered + 1, &end, 10);
    unsigned char *data = NULL;
    size_t length = 0;
    struct spool *spool = butler_runtime_current ? butler_runtime_current->spool : NULL;
    if (spool == NULL || end == NULL || *end != '\0' ||
        spool_read_answer(spool, spool_id, &data, &length) != BUTLER_OK)
        return NULL; /* answered, but not yet recorded done: its answer is on the way */
    char *text = strndup((const char *)data, length);
    free(data);
    return text;
}

void task_start_remember_answer(struct task_start_state *state, const char *answer, size_t length,
                                uint64_t answered_wall_ms, uint64_t spool_id)
{
    cJSON *json = json_parse_exact(answer, length, NULL);
    const cJSON *request_id = cJSON_GetObjectItemCaseSensitive(json, "requestId");
    uint64_t ttl = (uint64_t)state->config->task_start.dedup_ttl_s * 1000u;
    uint64_t age = clock_wall_ms() - answered_wall_ms;
    if (cJSON_IsString(request_id) && age < ttl) {
        char *value = remembered_value(spool_id, answer, length);
        if (value)
            expiring_map_put(state->requests, request_id->valuestring, value, ttl - age, NULL);
        free(value);
    }
    cJSON_Delete(json);
}

/* ---- the answer being built for one request ---- */

struct task_answer {
    cJSON *started, *invalid, *denied, *failed, *skipped;
    bool key_values_only;   /* the request names no task, only key-value items */
    bool key_values_stored; /* ... and they were stored */
    char error[512];
    int attempts;
};

static const char *selector_field(enum task_selector_kind kind)
{
    switch (kind) {
    case TASK_SELECT_ID:
        return "taskId";
    case TASK_SELECT_NAME:
        return "taskName";
    case TASK_SELECT_TAG:
        return "tag";
    case TASK_SELECT_CUSTOM_PROPERTY:
        return "customProperty";
    }
    return "taskId";
}

/* {"taskId": ".."} / {"tag": ".."} / {"customProperty": {"name", "value"}} */
static cJSON *selector_json(const struct task_selector *selector)
{
    cJSON *item = cJSON_CreateObject();
    if (item == NULL)
        return NULL;
    if (selector->kind == TASK_SELECT_CUSTOM_PROPERTY) {
        cJSON *property = cJSON_AddObjectToObject(item, "customProperty");
        if (property) {
            cJSON_AddStringToObject(property, "name", selector->value);
            cJSON_AddStringToObject(property, "value", selector->property_value);
        }
    } else {
        cJSON_AddStringToObject(item, selector_field(selector->kind), selector->value);
    }
    return item;
}

/* A task entry for started/denied/failed lists: the task and how it was selected. */
static cJSON *task_json(const char *task_id, const char *task_name,
                        const struct task_selector *selector)
{
    cJSON *item = cJSON_CreateObject();
    if (item == NULL)
        return NULL;
    cJSON_AddStringToObject(item, "taskId", task_id);
    cJSON_AddStringToObject(item, "taskName", task_name ? task_name : "");
    cJSON_AddStringToObject(item, "via", selector_field(selector->kind));
    if (selector->kind == TASK_SELECT_TAG) {
        cJSON_AddStringToObject(item, "tag", selector->value);
    } else if (selector->kind == TASK_SELECT_CUSTOM_PROPERTY) {
        cJSON *property = cJSON_AddObjectToObject(item, "customProperty");
        if (property) {
            cJSON_AddStringToObject(property, "name", selector->value);
            cJSON_AddStringToObject(property, "value", selector->property_value);
        }
    }
    return item;
}

static void note_error(struct task_answer *answer, const char *format, const char *detail)
{
    if (answer->error[0] == '\0')
        snprintf(answer->error, sizeof answer->error, format, detail);
}

/* ---- allow-list ---- */

static bool allow_list_empty(const struct butler_config *config)
{
    return config->task_start.allow.task_ids.count == 0 &&
           config->task_start.allow.tags.count == 0 &&
           config->task_start.allow.custom_properties.count == 0;
}

static bool allow_needs_metadata(const struct butler_config *config)
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

/* ---- resolving selectors ---- */

/* A task chosen for starting, in request order, unique by id. */
struct chosen_task {
    char id[37];
    char *name;
    const struct task_selector *selector;
    cJSON *task; /* task/full object or NULL; borrowed from `lookups` */
};

/* Most requests choose one task: the first few slots are inline, more go to
 * the heap (up to TASK_CHOSEN_MAX). A 64 kB array per request made glibc
 * consolidate its free lists on every task start. */
enum { CHOSEN_INLINE = 8 };

struct chosen_tasks {
    struct chosen_task *items; /* inline_items, or a heap array once more are chosen */
    size_t count, capacity;
    cJSON *lookups; /* array owning every QRS answer */
    struct chosen_task inline_items[CHOSEN_INLINE];
};

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
        cJSON_AddItemToArray(answer->invalid, selector_json(selector));
        note_error(answer, "not a valid task selector: %s", selector->value);
        return;
    }
    if (selector->kind == TASK_SELECT_ID && !allow_needs_metadata(config)) {
        char *cached_name = NULL;
        if (expiring_map_get(state->task_names, selector->value, &cached_name)) {
            choose(chosen, state, selector->value, cached_name, selector, NULL);
            free(cached_name);
            return;
        }
    }
    if (worker->qrs == NULL) {
        cJSON_AddItemToArray(answer->failed, selector_json(selector));
        note_error(answer, "%s", "QRS is not configured (qrs.url is empty)");
        return;
    }
    char filter[FILTER_MAX];
    if (build_filter(selector, filter, sizeof filter) != BUTLER_OK) {
        cJSON_AddItemToArray(answer->invalid, selector_json(selector));
        note_error(answer, "selector too long: %.64s", selector->value);
        return;
    }
    cJSON *tasks = NULL;
    struct qrs_result result;
    enum butler_status status = qrs_find_tasks(worker->qrs, filter, &tasks, &result);
    if (result.attempts > answer->attempts)
        answer->attempts = result.attempts;
    if (status != BUTLER_OK) {
        cJSON_AddItemToArray(answer->failed, selector_json(selector));
        note_error(answer, "%s", result.error[0] ? result.error : butler_status_str(status));
        return;
    }
    cJSON_AddItemToArray(chosen->lookups, tasks);
    if (cJSON_GetArraySize(tasks) == 0) {
        cJSON_AddItemToArray(answer->invalid, selector_json(selector));
        note_error(answer, "no task matches %s", filter);
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
            note_error(answer, "storing key-values failed: %s", error);
            return status;
        }
    }
    return BUTLER_OK;
}

/* ---- answering ---- */

static const char *answer_status(const struct task_answer *answer, bool unreadable)
{
    int started = cJSON_GetArraySize(answer->started);
    int invalid = cJSON_GetArraySize(answer->invalid);
    int denied = cJSON_GetArraySize(answer->denied);
    int failed = cJSON_GetArraySize(answer->failed);
    int skipped = cJSON_GetArraySize(answer->skipped);
    if (unreadable)
        return "invalid";
    if (answer->key_values_only) /* everything asked for was storing */
        return answer->key_values_stored ? "started" : "failed";
    if (started > 0)
        return (invalid + denied + failed + skipped) ? "partial" : "started";
    if (failed > 0)
        return "failed";
    if (denied > 0 && invalid == 0)
        return "denied";
    return "invalid";
}

static char *answer_json(const char *request_id, const char *status, struct task_answer *answer)
{
    cJSON *root = cJSON_CreateObject();
    if (root == NULL)
        return NULL;
    cJSON_AddStringToObject(root, "requestId", request_id);
    cJSON_AddStringToObject(root, "status", status);
    cJSON_AddItemReferenceToObject(root, "started", answer->started);
    cJSON_AddItemReferenceToObject(root, "invalid", answer->invalid);
    cJSON_AddItemReferenceToObject(root, "denied", answer->denied);
    if (cJSON_GetArraySize(answer->failed))
        cJSON_AddItemReferenceToObject(root, "failed", answer->failed);
    if (cJSON_GetArraySize(answer->skipped))
        cJSON_AddItemReferenceToObject(root, "skipped", answer->skipped);
    if (strcmp(status, "started") != 0)
        cJSON_AddStringToObject(root, "error", answer->error[0] ? answer->error : status);
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

/* Answer on <root>/task/result and the request's Response Topic; takes
 * ownership of `message` (see publish_answer). */
static void send_answer(const struct butler_config *config, struct topic_message *message,
                        const char *text)
{
    char topic[512];
    snprintf(topic, sizeof topic, "%s/task/result", config->mqtt.topic_root);
    publish_answer(topic, message, text);
}

/* ---- replay after a crash ---- */

/* What the spool's notes say this request did for one task before a crash. */
enum replay_noted {
    REPLAY_NOTHING_NOTED, /* never tried: start it like any request */
    REPLAY_ATTEMPT_NOTED, /* a QRS start call may or may not have reached QRS */
    REPLAY_STARTED_NOTED, /* QRS accepted the start */
};

/* Notes are "attempt <taskId>" (written just before the QRS start call) and
 * "started <taskId>" (just after QRS accepted it). */
static enum replay_noted replay_noted_for(const struct topic_message *message, const char *task_id)
{
    enum replay_noted noted = REPLAY_NOTHING_NOTED;
    for (size_t i = 0; i < message->note_count; i++) {
        const char *note = message->notes[i];
        if (strncmp(note, "started ", 8) == 0 && strcasecmp(note + 8, task_id) == 0)
            return REPLAY_STARTED_NOTED;
        if (strncmp(note, "attempt ", 8) == 0 && strcasecmp(note + 8, task_id) == 0)
            noted = REPLAY_ATTEMPT_NOTED;
    }
    return noted;
}

/*
 * The one window recording cannot close: Butler killed after QRS accepted a
 * start but before the "started" note was written. Ask QRS whether the task
 * started (or is running) since the request arrived. On any doubt (QRS
 * unreachable) answer false: a rare double start beats a lost one.
 */
static bool started_since(struct topic_worker *worker, const char *task_id, uint64_t since_wall_ms)
{
    char filter[64];
    snprintf(filter, sizeof filter, "id eq %s", task_id);
    cJSON *tasks = NULL;
    struct qrs_result result;
    if (worker->qrs == NULL || qrs_find_tasks(worker->qrs, filter, &tasks, &result) != BUTLER_OK)
        return false;
    const cJSON *operational =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(tasks, 0), "operational");
    const cJSON *last = cJSON_GetObjectItemCaseSensitive(operational, "lastExecutionResult");
    const cJSON *start = cJSON_GetObjectItemCaseSensitive(last, "startTime");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(last, "status");
    uint64_t start_ms = 0;
    bool started = cJSON_IsString(start) && clock_parse_iso8601(start->valuestring, &start_ms) &&
                   start_ms >= since_wall_ms;
    /* Triggered, started, queued, aborting, retrying, distributing: a run is under way. */
    int code = cJSON_IsNumber(status) ? status->valueint : 0;
    bool running = code == 1 || code == 2 || code == 3 || code == 4 || code == 5 || code == 10 ||
                   code == 13 || code == 14;
    cJSON_Delete(tasks);
    return started || running;
}

/* How one task's start came about, for the answer entry. */
enum start_outcome_source {
    START_CALLED,          /* this request's own QRS start call */
    START_NOTED_BEFORE,    /* replay: this request's start was noted before the crash */
    START_REPLAY_VERIFIED, /* replay: attempt noted, QRS says the task started since */
};

/*
 * Start one task for `message`, noting the attempt before the QRS call and
 * the start after it, so that a replay after a crash can tell (contract
 * section 7). A replayed request uses only its own notes: what other requests
 * did to the same task never counts. Worker thread.
 */
static enum butler_status start_task_once(struct topic_worker *worker,
                                          struct topic_message *message, const char *task_id,
                                          struct qrs_result *result,
                                          enum start_outcome_source *source)
{
    char note[64];
    *source = START_CALLED;
    if (message->replay) {
        enum replay_noted noted = replay_noted_for(message, task_id);
        if (noted == REPLAY_STARTED_NOTED) {
            *source = START_NOTED_BEFORE;
            return BUTLER_OK;
        }
        if (noted == REPLAY_ATTEMPT_NOTED &&
            started_since(worker, task_id, message->received_wall_ms)) {
            *source = START_REPLAY_VERIFIED;
            return BUTLER_OK;
        }
    }
    if (worker->qrs == NULL)
        return BUTLER_ERR_REMOTE;
    snprintf(note, sizeof note, "attempt %s", task_id);
    if (topic_message_note(message, note) != BUTLER_OK)
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                        "cannot note the start attempt of task %s; a crash now could start it "
                        "twice",
                        task_id);
    enum butler_status status = qrs_task_start(worker->qrs, task_id, result);
    if (status == BUTLER_OK) {
        snprintf(note, sizeof note, "started %s", task_id);
        topic_message_note(message, note);
    }
    return status;
}

/* ---- the worker entry points ---- */

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
            cJSON_AddItemToArray(answer->skipped, task_json(task->id, task->name, task->selector));
            note_error(answer, "%s",
                       "allTaskIdsMustExist: an invalid task id kept the others "
                       "from starting");
        } else if (!task_allowed(config, task->id, task->task)) {
            cJSON_AddItemToArray(answer->denied, task_json(task->id, task->name, task->selector));
            note_error(answer, "task %s is not in task_start.allow", task->id);
            metrics_count("butler_task_start_denied_total", "",
                          "Tasks refused by task_start.allow");
        } else {
            startable[to_start++] = task;
        }
    }
    return to_start;
}

/* File one task's start outcome under started, invalid or failed. Worker thread. */
static void record_outcome(struct task_start_state *state, struct task_answer *answer,
                           const char *request_id, const struct chosen_task *task,
                           enum butler_status status, enum start_outcome_source source,
                           const struct qrs_result *result)
{
    if (result->attempts > answer->attempts)
        answer->attempts = result->attempts;
    cJSON *entry = task_json(task->id, task->name, task->selector);
    if (status == BUTLER_OK) {
        if (source == START_REPLAY_VERIFIED)
            cJSON_AddStringToObject(entry, "replay", "verified");
        cJSON_AddItemToArray(answer->started, entry);
        if (source == START_CALLED) {
            metrics_count("butler_tasks_started_total", "", "Tasks QRS accepted for starting");
            LOG_INFO(MODULE, "started task %s (%s) for request %s", task->id, task->name,
                     request_id);
        } else {
            metrics_count("butler_task_start_replay_answered_total",
                          source == START_NOTED_BEFORE ? "evidence=\"noted\"" : "evidence=\"qrs\"",
                          "Replayed task starts answered without a new start, by evidence");
            LOG_INFO(MODULE,
                     "replay: task %s already started for request %s (%s); not starting it "
                     "again",
                     task->id, request_id,
                     source == START_NOTED_BEFORE ? "noted before the restart"
                                                  : "attempt noted, QRS confirms a run");
        }
    } else if (status == BUTLER_ERR_NOT_FOUND) {
        cJSON_AddItemToArray(answer->invalid, entry);
        expiring_map_remove(state->task_names, task->id);
        note_error(answer, "QRS does not know task %s", task->id);
    } else {
        cJSON_AddItemToArray(answer->failed, entry);
        note_error(answer, "%s",
                   result->error[0] ? result->error : "QRS is not configured (qrs.url is empty)");
    }
}

/* Start each startable task of one request, one QRS call each. Worker thread. */
static void start_tasks(struct topic_worker *worker, struct task_start_state *state,
                        struct topic_message *message, const char *request_id,
                        struct chosen_task **startable, size_t to_start, struct task_answer *answer)
{
    for (size_t i = 0; i < to_start; i++) {
        struct qrs_result result = {0};
        enum start_outcome_source source;
        enum butler_status status =
            start_task_once(worker, message, startable[i]->id, &result, &source);
        record_outcome(state, answer, request_id, startable[i], status, source, &result);
    }
}

/* A payload that could not be read: answered "invalid" at once. Takes `message`. */
static void answer_unreadable(const struct butler_config *config, struct topic_message *message,
                              const struct task_request *request, struct task_answer *answer)
{
    LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "rejected task start on %s: %s", message->topic,
                    answer->error);
    metrics_count("butler_rejected_total", "family=\"task_start\",reason=\"payload\"",
                  "Messages rejected as malformed, by topic family and reason");
    char *text = answer_json(request->request_id, "invalid", answer);
    if (text)
        send_answer(config, message, text);
    else
        topic_message_free(message);
    free(text);
    metrics_count("butler_task_start_requests_total", "status=\"invalid\"",
                  "Task-start requests answered, by status");
}

/*
 * Idempotency: a requestId seen within the window is answered with the earlier
 * answer, not run again. True when `message` was a repeat (and was taken).
 */
static bool answer_repeat(const struct butler_config *config, struct task_start_state *state,
                          struct topic_message *message, const struct task_request *request)
{
    char *remembered = NULL;
    if (expiring_map_insert_new(state->requests, request->request_id, "",
                                (uint64_t)config->task_start.dedup_ttl_s * 1000u,
                                &remembered) == BUTLER_OK)
        return false;
    char *earlier = earlier_answer(remembered);
    free(remembered);
    metrics_count("butler_task_start_duplicates_total", "",
                  "Task-start requests whose requestId was already seen");
    LOG_INFO(MODULE, "request %s already seen; not starting its tasks again", request->request_id);
    if (earlier)
        send_answer(config, message, earlier);
    else
        topic_message_free(message);
    free(earlier);
    return true;
}

/* Publish the final answer (and dead-letter a failure). Takes `message`. */
static void finish_request(const struct butler_config *config, struct task_start_state *state,
                           struct topic_message *message, const struct task_request *request,
                           struct task_answer *answer)
{
    const char *status = answer_status(answer, false);
    char *text = answer_json(request->request_id, status, answer);
    if (strcmp(status, "failed") == 0)
        publish_deadletter("task_start", message->topic, message->payload, message->payload_length,
                           answer->error, answer->attempts, message->received_wall_ms);
    if (text) {
        topic_message_set_answer(message, text);
        /* Remember the answer so a redelivered request gets the same one. */
        char *value = remembered_value(message->spool_id, text, strlen(text));
        bool evicted = false;
        if (value)
            expiring_map_put(state->requests, request->request_id, value,
                             (uint64_t)config->task_start.dedup_ttl_s * 1000u, &evicted);
        if (evicted)
            metrics_count("butler_task_start_dedup_evicted_total", "",
                          "Remembered requestIds forgotten before task_start.dedup_ttl_s "
                          "because task_start.dedup_max_requests was reached");
        free(value);
        send_answer(config, message, text);
    } else {
        topic_message_free(message);
    }
    free(text);
    char labels[48];
    snprintf(labels, sizeof labels, "status=\"%s\"", status);
    metrics_count("butler_task_start_requests_total", labels,
                  "Task-start requests answered, by status");
}

/* One request of a batch, from its message to its answer. */
struct request_work {
    struct topic_message *message; /* NULL once answered (or kept for the next start) */
    struct task_request request;
    bool request_parsed;
    struct task_answer answer;
    struct chosen_tasks chosen;
    struct chosen_task **startable; /* heap, once the tasks are chosen */
    size_t to_start;
};

static bool work_init(struct request_work *work, struct topic_message *message)
{
    memset(work, 0, sizeof *work);
    work->message = message;
    work->chosen.items = work->chosen.inline_items;
    work->chosen.capacity = CHOSEN_INLINE;
    work->chosen.lookups = cJSON_CreateArray();
    work->answer.started = cJSON_CreateArray();
    work->answer.invalid = cJSON_CreateArray();
    work->answer.denied = cJSON_CreateArray();
    work->answer.failed = cJSON_CreateArray();
    work->answer.skipped = cJSON_CreateArray();
    return work->chosen.lookups && work->answer.started && work->answer.invalid &&
           work->answer.denied && work->answer.failed && work->answer.skipped;
}

/* Frees everything; a message still held is freed too (marked done unless kept). */
static void work_clear(struct request_work *work)
{
    if (work->request_parsed)
        task_request_clear(&work->request);
    for (size_t i = 0; i < work->chosen.count; i++)
        free(work->chosen.items[i].name);
    if (work->chosen.items != work->chosen.inline_items)
        free(work->chosen.items);
    cJSON_Delete(work->chosen.lookups);
    free(work->startable);
    cJSON_Delete(work->answer.started);
    cJSON_Delete(work->answer.invalid);
    cJSON_Delete(work->answer.denied);
    cJSON_Delete(work->answer.failed);
    cJSON_Delete(work->answer.skipped);
    topic_message_free(work->message);
    work->message = NULL;
}

/* Out of memory on a request: it stays in the spool, so the next start replays it. */
static void keep_for_next_start(struct request_work *work)
{
    LOG_ERROR(MODULE, "out of memory handling a task start; kept for the next start");
    topic_message_keep(work->message);
    topic_message_free(work->message);
    work->message = NULL;
}

/* The topic's task id for <root>/task/start/<taskId>, or NULL. */
static const char *topic_task_id(const char *topic)
{
    char prefix[512];
    int length = snprintf(prefix, sizeof prefix, "%s/task/start/",
                          butler_runtime_current->config->mqtt.topic_root);
    if (length > 0 && (size_t)length < sizeof prefix && strncmp(topic, prefix, (size_t)length) == 0)
        return topic + length;
    return NULL;
}

/* Read the request; answer it "invalid" at once when unreadable. True when
 * it is still held. Worker thread. */
static bool parse_work(struct task_start_state *state, struct request_work *work, bool legacy)
{
    struct topic_message *message = work->message;
    if (task_request_parse(legacy ? NULL : topic_task_id(message->topic), legacy, message->payload,
                           message->payload_length, &work->request, work->answer.error,
                           sizeof work->answer.error) != BUTLER_OK) {
        answer_unreadable(state->config, message, &work->request, &work->answer);
        work->message = NULL;
        return false;
    }
    work->request_parsed = true;
    return true;
}

/* A requestId already seen is answered with the earlier answer here (and the
 * message taken); true when the request is new and still held. */
static bool first_time(struct task_start_state *state, struct request_work *work)
{
    if (!answer_repeat(state->config, state, work->message, &work->request))
        return true;
    work->message = NULL;
    return false;
}

/* True when every selector of a parsed request resolves without a QRS call
 * (task ids whose names are cached), so it can join a batch without making
 * the others wait for lookups. */
static bool resolves_from_cache(struct task_start_state *state, const struct request_work *work)
{
    if (allow_needs_metadata(state->config))
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
static void choose_work(struct topic_worker *worker, struct task_start_state *state,
                        struct request_work *work)
{
    struct task_request *request = &work->request;
    for (size_t i = 0; i < request->selector_count; i++)
        resolve_selector(worker, state, &request->selectors[i], &work->chosen, &work->answer);
    work->startable =
        malloc((work->chosen.count ? work->chosen.count : 1) * sizeof *work->startable);
    if (work->startable == NULL) {
        keep_for_next_start(work);
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
                                 task_json(work->startable[i]->id, work->startable[i]->name,
                                           work->startable[i]->selector));
        work->to_start = 0;
    }
}

/* One task start of a batch: which request, which task. */
struct batched_start {
    struct request_work *work;
    struct chosen_task *task;
};

/*
 * Start the tasks of several requests with one POST /qrs/task/start/many:
 * every request notes its attempts first and its starts after, as a lone
 * start does (a replay reads them the same way). When QRS refuses the list
 * (404/400) each task is started on its own, so the unknown one is told
 * apart. Worker thread.
 */
static void start_many(struct topic_worker *worker, struct task_start_state *state,
                       struct batched_start *starts, size_t count)
{
    const char **ids = calloc(count, sizeof *ids);
    if (ids == NULL) {
        for (size_t i = 0; i < count; i++)
            start_tasks(worker, state, starts[i].work->message, starts[i].work->request.request_id,
                        &starts[i].task, 1, &starts[i].work->answer);
        return;
    }
    char note[64];
    for (size_t i = 0; i < count; i++) {
        ids[i] = starts[i].task->id;
        snprintf(note, sizeof note, "attempt %s", ids[i]);
        if (topic_message_note(starts[i].work->message, note) != BUTLER_OK)
            LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                            "cannot note the start attempt of task %s; a crash now could start "
                            "it twice",
                            ids[i]);
    }
    struct qrs_result result = {0};
    enum butler_status status = qrs_task_start_many(worker->qrs, ids, count, &result);
    metrics_count("butler_task_start_shared_calls_total", "",
                  "QRS calls that carried several task starts (POST /qrs/task/start/many)");
    metrics_add(metrics_get("butler_task_start_shared_starts_total", "", METRIC_COUNTER,
                            "Task starts sent in shared QRS calls"),
                (int64_t)count);
    for (size_t i = 0; i < count; i++) {
        struct request_work *work = starts[i].work;
        if (status == BUTLER_ERR_NOT_FOUND) {
            start_tasks(worker, state, work->message, work->request.request_id, &starts[i].task, 1,
                        &work->answer);
            continue;
        }
        if (status == BUTLER_OK) {
            snprintf(note, sizeof note, "started %s", ids[i]);
            topic_message_note(work->message, note);
        }
        record_outcome(state, &work->answer, work->request.request_id, starts[i].task, status,
                       START_CALLED, &result);
    }
    free(ids);
}

/*
 * Start what the requests of a batch chose. Replayed requests and a start
 * that waits alone go one task per call, as before; the rest share calls of
 * up to task_start.batch_max starts. Worker thread.
 */
static void start_works(struct topic_worker *worker, struct task_start_state *state,
                        struct request_work *works, size_t count)
{
    size_t shared = 0;
    for (size_t i = 0; i < count; i++)
        if (works[i].message && !works[i].message->replay)
            shared += works[i].to_start;
    size_t batch_max = (size_t)state->config->task_start.batch_max;
    struct batched_start *starts = NULL;
    if (shared >= 2 && batch_max >= 2 && worker->qrs != NULL)
        starts = malloc((shared < batch_max ? shared : batch_max) * sizeof *starts);
    size_t pending = 0;
    for (size_t i = 0; i < count; i++) {
        struct request_work *work = &works[i];
        if (work->message == NULL)
            continue;
        if (starts == NULL || work->message->replay) {
            start_tasks(worker, state, work->message, work->request.request_id, work->startable,
                        work->to_start, &work->answer);
            continue;
        }
        for (size_t t = 0; t < work->to_start; t++) {
            starts[pending++] = (struct batched_start){work, work->startable[t]};
            if (pending == batch_max) {
                start_many(worker, state, starts, pending);
                pending = 0;
            }
        }
    }
    if (pending == 1)
        start_tasks(worker, state, starts[0].work->message, starts[0].work->request.request_id,
                    &starts[0].task, 1, &starts[0].work->answer);
    else if (pending > 1)
        start_many(worker, state, starts, pending);
    free(starts);
}

/*
 * Handle `first` and, when task_start.batch_max allows, the task starts of the
 * same kind that wait behind it in the queue, end to end: each is parsed,
 * resolved and answered on its own, and their QRS starts share calls. A
 * waiting request that needs QRS lookups goes back to the queue for another
 * worker rather than hold up the batch. Runs on a worker thread; owns every
 * message it takes. Every path ends in exactly one answer per request.
 */
static void run_requests(struct topic_worker *worker, struct topic_message *first, bool legacy,
                         void (*run)(struct topic_worker *, struct topic_message *))
{
    struct butler_runtime *runtime = butler_runtime_current;
    struct task_start_state *state = runtime->task_start;
    size_t batch_max = (size_t)runtime->config->task_start.batch_max;
    /* Sized to what is actually waiting: a lone start allocates nothing here
     * (a ~60 kB array per start would make glibc consolidate its free lists
     * every time, as a 64 kB one once did). */
    struct request_work single;
    struct request_work *works = &single;
    struct topic_message **waiting =
        batch_max > 1 ? malloc((batch_max - 1) * sizeof *waiting) : NULL;
    size_t taken = waiting ? topics_take_waiting(run, waiting, batch_max - 1) : 0;
    if (taken > 0) {
        works = malloc((1 + taken) * sizeof *works);
        if (works == NULL) {
            works = &single;
            for (size_t i = 0; i < taken; i++)
                if (topics_requeue(run, waiting[i]) != BUTLER_OK) {
                    LOG_ERROR(MODULE, "out of memory taking task starts together; one is kept "
                                      "for the next start");
                    topic_message_keep(waiting[i]);
                    topic_message_free(waiting[i]);
                }
            taken = 0;
        }
    }
    size_t count = 0;
    if (!work_init(&works[count], first)) {
        keep_for_next_start(&works[count]);
        work_clear(&works[count]);
        for (size_t i = 0; i < taken; i++) { /* handled by the next start, like `first` */
            topic_message_keep(waiting[i]);
            topic_message_free(waiting[i]);
        }
        goto out;
    }
    if (parse_work(state, &works[count], legacy) && first_time(state, &works[count]))
        choose_work(worker, state, &works[count]);
    count++;
    for (size_t i = 0; i < taken; i++) {
        struct request_work *work = &works[count++];
        if (!work_init(work, waiting[i])) {
            keep_for_next_start(work);
            continue;
        }
        if (!parse_work(state, work, legacy))
            continue;
        /* Before the requestId is remembered: the next worker sees it as new. */
        if (!resolves_from_cache(state, work) && topics_requeue(run, work->message) == BUTLER_OK) {
            work->message = NULL; /* another worker has it now */
            continue;
        }
        if (first_time(state, work))
            choose_work(worker, state, work);
    }
    start_works(worker, state, works, count);
    for (size_t i = 0; i < count; i++) {
        if (works[i].message) {
            finish_request(runtime->config, state, works[i].message, &works[i].request,
                           &works[i].answer);
            works[i].message = NULL;
        }
        work_clear(&works[i]);
    }
out:
    if (works != &single)
        free(works);
    free(waiting);
}

void task_start_run(struct topic_worker *worker, struct topic_message *message)
{
    run_requests(worker, message, false, task_start_run);
}

void task_start_run_legacy(struct topic_worker *worker, struct topic_message *message)
{
    run_requests(worker, message, true, task_start_run_legacy);
}
