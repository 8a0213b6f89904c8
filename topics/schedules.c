/*
 * Cron schedules on the broker and the scheduler thread (see schedules.h).
 *
 * Time zones: firing times are computed by topics/cron.c from TZif files it
 * reads itself, never with setenv("TZ")/tzset()/localtime(), whose global
 * state other threads (libcurl, libmosquitto) would race with. Zones are
 * loaded once per name into a small cache and never freed before shutdown,
 * so a compiled schedule can point at its zone without a lock.
 *
 * Locking: `lock` guards the list. It is never held across a publish.
 */
#include "topics/schedules.h"

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/core/clock.h"
#include "bridge/core/json.h"
#include "topics/cron.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "topics/kv.h"
#include "bridge/model/task_request.h"

#define MODULE "scheduler"

enum {
    ID_MAX = 64,
    /* A firing's requestId is "schedule-<id>-<epoch seconds>": with up to 11
     * digits it fits TASK_REQUEST_ID_MAX (64) only when the id is at most 44. */
    ID_TEXT_MAX = 44,
    NAME_MAX_BYTES = 1024,
    TAGS_MAX = 64,
    ZONES_MAX = 128,
    TICK_MS = 100,              /* firing precision */
    PUBLISH_TIMEOUT_MS = 5000,  /* scheduler thread: a firing waits this long for the broker */
    MISSED_COUNT_MAX = 1000000, /* counting missed firings stops here */
    RECORD_BYTES_MAX = 64 * 1024,
};

struct schedule {
    char id[ID_MAX + 1];
    char *name;
    char cron_text[CRON_TEXT_MAX + 1];
    char timezone[CRON_ZONE_NAME_MAX + 1];
    char task_id[40];
    char startup_state[16];
    cJSON *tags;  /* array of strings, owned */
    bool started; /* lastKnownState */
    char created[32];
    int64_t last_run_s; /* lastRunAt: the last firing time handled (0 = never) */
    /* Wall ms when this process saw the timing (expression, zone, state) set: the first
     * firing is for a slot strictly after that second. 0 = restored, not set here. */
    uint64_t timing_set_ms;

    /* Scheduler thread state. */
    struct cron_expr expr;
    const struct cron_zone *zone; /* from the zone cache; NULL = not compiled */
    bool dirty;                   /* cron/zone/state changed: recompile */
    bool seen;                    /* missed firings checked since this process started */
    int64_t next_s;
};

static struct {
    const struct butler_config *config;
    pthread_mutex_t lock;
    struct schedule **items;
    size_t count;
    size_t max;
    pthread_mutex_t zone_lock;
    struct cron_zone *zones[ZONES_MAX];
    size_t zone_count;
    pthread_t thread;
    bool thread_started;
    atomic_bool stop;
    struct butler_runtime *runtime;
} state = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .zone_lock = PTHREAD_MUTEX_INITIALIZER,
};

/* ---- records ---- */

static void schedule_free(struct schedule *schedule)
{
    if (schedule == NULL)
        return;
    free(schedule->name);
    cJSON_Delete(schedule->tags);
    free(schedule);
}

/* The Node.js schedule object; with_run_state adds lastRunAt (the retained
 * record). NULL on out of memory. */
static cJSON *schedule_json(const struct schedule *schedule, bool with_run_state)
{
    cJSON *json = cJSON_CreateObject();
    cJSON *tags = schedule->tags ? cJSON_Duplicate(schedule->tags, true) : cJSON_CreateArray();
    if (json == NULL || tags == NULL || !cJSON_AddStringToObject(json, "id", schedule->id) ||
        !cJSON_AddStringToObject(json, "created", schedule->created) ||
        !cJSON_AddStringToObject(json, "name", schedule->name) ||
        !cJSON_AddStringToObject(json, "cronSchedule", schedule->cron_text) ||
        !cJSON_AddStringToObject(json, "timezone", schedule->timezone) ||
        !cJSON_AddStringToObject(json, "qlikSenseTaskId", schedule->task_id) ||
        !cJSON_AddStringToObject(json, "startupState", schedule->startup_state) ||
        !cJSON_AddItemToObject(json, "tags", tags)) {
        cJSON_Delete(tags);
        cJSON_Delete(json);
        return NULL;
    }
    if (!cJSON_AddStringToObject(json, "lastKnownState", schedule->started ? "started" : "stopped"))
        goto fail;
    if (with_run_state && schedule->last_run_s > 0) {
        char at[32];
        clock_format_iso8601((uint64_t)schedule->last_run_s * 1000u, at, sizeof at);
        if (!cJSON_AddStringToObject(json, "lastRunAt", at))
            goto fail;
    }
    return json;
fail:
    cJSON_Delete(json);
    return NULL;
}

static bool state_is_started(const char *text)
{
    return strcmp(text, "start") == 0 || strcmp(text, "started") == 0;
}

/*
 * Build a schedule from JSON (an API body when `id` is NULL, a retained
 * record otherwise). Validates every field and the cron expression; the
 * zone name only for shape (loading is the caller's business). The result
 * is owned by the caller.
 */
static enum butler_status schedule_from_json(const cJSON *json, const char *id,
                                             struct schedule **out, char *error, size_t error_size)
{
    enum butler_status status = BUTLER_ERR_INVALID;
    struct schedule *schedule = calloc(1, sizeof *schedule);
    *out = NULL;
    if (schedule == NULL) {
        snprintf(error, error_size, "out of memory");
        return BUTLER_ERR_NOMEM;
    }
    const char *name = json_string_member(json, "name");
    const char *cron_text = json_string_member(json, "cronSchedule");
    const char *zone = json_string_member(json, "timezone");
    const char *task = json_string_member(json, "qlikSenseTaskId");
    const char *startup = json_string_member(json, "startupState");
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(json, "tags");
    if (!cJSON_IsObject(json) || !name || !cron_text || !zone || !task || !startup) {
        snprintf(error, error_size,
                 "required: name, cronSchedule, timezone, qlikSenseTaskId and "
                 "startupState (strings)");
        goto out;
    }
    if (name[0] == '\0' || strlen(name) > NAME_MAX_BYTES) {
        snprintf(error, error_size, "name must be 1..%d bytes", NAME_MAX_BYTES);
        goto out;
    }
    if (!task_is_guid(task, strlen(task))) {
        snprintf(error, error_size, "qlikSenseTaskId must be a task GUID");
        goto out;
    }
    if (!state_is_started(startup) && strcmp(startup, "stop") != 0 &&
        strcmp(startup, "stopped") != 0) {
        snprintf(error, error_size, "startupState must be start, started, stop or stopped");
        goto out;
    }
    if (strlen(zone) > CRON_ZONE_NAME_MAX) {
        snprintf(error, error_size, "timezone is too long");
        goto out;
    }
    if (tags && (!cJSON_IsArray(tags) || cJSON_GetArraySize(tags) > TAGS_MAX)) {
        snprintf(error, error_size, "tags must be an array of at most %d strings", TAGS_MAX);
        goto out;
    }
    const cJSON *tag;
    cJSON_ArrayForEach(tag, tags)
    {
        if (!cJSON_IsString(tag) || strlen(tag->valuestring) > NAME_MAX_BYTES) {
            snprintf(error, error_size, "tags must be strings");
            goto out;
        }
    }
    char cron_error[160];
    status = cron_parse(cron_text, &schedule->expr, cron_error, sizeof cron_error);
    if (status != BUTLER_OK) {
        snprintf(error, error_size, "cronSchedule \"%.64s\": %s", cron_text, cron_error);
        status = BUTLER_ERR_INVALID;
        goto out;
    }
    status = BUTLER_ERR_NOMEM;
    schedule->name = strdup(name);
    schedule->tags = tags ? cJSON_Duplicate(tags, true) : cJSON_CreateArray();
    if (schedule->name == NULL || schedule->tags == NULL)
        goto out;
    snprintf(schedule->cron_text, sizeof schedule->cron_text, "%s", cron_text);
    snprintf(schedule->timezone, sizeof schedule->timezone, "%s", zone);
    snprintf(schedule->task_id, sizeof schedule->task_id, "%s", task);
    snprintf(schedule->startup_state, sizeof schedule->startup_state, "%s", startup);
    schedule->dirty = true;
    if (id == NULL) {
        /* A new schedule: its state is its startupState; nothing is missed
         * before it existed. */
        char uuid[37];
        task_make_uuid(uuid);
        snprintf(schedule->id, sizeof schedule->id, "%s", uuid);
        uint64_t now = clock_wall_ms();
        clock_format_iso8601(now, schedule->created, sizeof schedule->created);
        schedule->started = state_is_started(startup);
        schedule->last_run_s = (int64_t)(now / 1000);
        schedule->timing_set_ms = now;
    } else {
        const char *created = json_string_member(json, "created");
        const char *last_state = json_string_member(json, "lastKnownState");
        const char *last_run = json_string_member(json, "lastRunAt");
        uint64_t last_run_ms = 0;
        snprintf(schedule->id, sizeof schedule->id, "%s", id);
        snprintf(schedule->created, sizeof schedule->created, "%s", created ? created : "");
        schedule->started = last_state ? state_is_started(last_state) : state_is_started(startup);
        if (last_run && clock_parse_iso8601(last_run, &last_run_ms))
            schedule->last_run_s = (int64_t)(last_run_ms / 1000);
    }
    *out = schedule;
    schedule = NULL;
    status = BUTLER_OK;
out:
    schedule_free(schedule);
    return status;
}

/* The zone named `name` from the cache, loading it on first use. NULL when
 * it does not exist (error set). HTTP or scheduler thread: reads a file. */
static const struct cron_zone *zone_get(const char *name, char *error, size_t error_size)
{
    const struct cron_zone *found = NULL;
    struct cron_zone *loaded = NULL;
    pthread_mutex_lock(&state.zone_lock);
    for (size_t i = 0; i < state.zone_count && found == NULL; i++)
        if (strcmp(state.zones[i]->name, name) == 0)
            found = state.zones[i];
    if (found)
        goto out;
    if (state.zone_count >= ZONES_MAX) {
        snprintf(error, error_size, "more than %d different time zones are in use", ZONES_MAX);
        goto out;
    }
    loaded = malloc(sizeof *loaded);
    if (loaded == NULL) {
        snprintf(error, error_size, "out of memory");
        goto out;
    }
    enum butler_status status = cron_zone_load(name, NULL, loaded);
    if (status != BUTLER_OK) {
        snprintf(error, error_size, "timezone \"%.64s\" is not a known IANA time zone (%s)", name,
                 butler_status_str(status));
        goto out;
    }
    state.zones[state.zone_count++] = loaded;
    found = loaded;
    loaded = NULL;
out:
    pthread_mutex_unlock(&state.zone_lock);
    free(loaded);
    return found;
}

/* ---- the list ---- */

static long find_index(const char *id)
{
    for (size_t i = 0; i < state.count; i++)
        if (strcmp(state.items[i]->id, id) == 0)
            return (long)i;
    return -1;
}

/* Insert or replace by id (takes ownership). Keeps the scheduler state of an
 * existing entry unless its timing changed. Caller holds `lock`. */
static enum butler_status upsert_locked(struct schedule *schedule)
{
    long index = find_index(schedule->id);
    if (index >= 0) {
        struct schedule *old = state.items[index];
        bool same_timing = strcmp(old->cron_text, schedule->cron_text) == 0 &&
                           strcmp(old->timezone, schedule->timezone) == 0 &&
                           old->started == schedule->started;
        if (same_timing) {
            schedule->zone = old->zone;
            schedule->next_s = old->next_s;
            schedule->dirty = old->dirty;
            schedule->timing_set_ms = old->timing_set_ms;
        } else if (schedule->timing_set_ms == 0) {
            /* A changed record from the broker (edited, or another Butler): the new
             * expression owes nothing for the second already begun. */
            schedule->timing_set_ms = clock_wall_ms();
        }
        schedule->seen = old->seen;
        if (old->last_run_s > schedule->last_run_s)
            schedule->last_run_s = old->last_run_s;
        schedule_free(old);
        state.items[index] = schedule;
        return BUTLER_OK;
    }
    if (state.count >= state.max)
        return BUTLER_ERR_FULL;
    if (state.items == NULL) {
        state.items = calloc(state.max, sizeof *state.items);
        if (state.items == NULL)
            return BUTLER_ERR_NOMEM;
    }
    state.items[state.count++] = schedule;
    return BUTLER_OK;
}

static void remove_locked(const char *id)
{
    long index = find_index(id);
    if (index < 0)
        return;
    schedule_free(state.items[index]);
    state.items[index] = state.items[--state.count];
}

enum butler_status schedules_setup(const struct butler_config *config)
{
    state.config = config;
    state.max = (size_t)config->scheduler.max_schedules;
    atomic_store(&state.stop, false);
    return BUTLER_OK;
}

/* A schedule id Butler holds: 1..ID_TEXT_MAX of A-Z a-z 0-9 - _, so its
 * firings' requestIds are valid and it needs no escaping anywhere. */
static bool id_valid(const char *id)
{
    size_t length = strlen(id);
    if (length == 0 || length > ID_TEXT_MAX)
        return false;
    for (const char *p = id; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
            return false;
    return true;
}

/* "<root>/schedules/<id>" -> id (bounded); false for other topics. */
static bool topic_id(const char *topic, char *id, size_t id_size)
{
    const char *root = state.config->mqtt.topic_root;
    size_t root_length = strlen(root);
    if (strncmp(topic, root, root_length) != 0 ||
        strncmp(topic + root_length, "/schedules/", 11) != 0)
        return false;
    const char *at = topic + root_length + 11;
    if (at[0] == '\0' || strchr(at, '/') || strlen(at) >= id_size)
        return false;
    snprintf(id, id_size, "%s", at);
    return true;
}

/* Network thread: record what the broker holds; parsing is bounded and
 * nothing here reads files or publishes. */
void schedules_on_message(const struct mqtt_message *message, void *context)
{
    (void)context;
    char id[ID_MAX + 1], error[256];
    if (state.config == NULL || !topic_id(message->topic, id, sizeof id))
        return;
    if (!id_valid(id)) {
        metrics_count("butler_rejected_total", "family=\"schedules\",reason=\"bad_id\"",
                      "Messages rejected as malformed, by topic family and reason");
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                        "ignoring schedule record %s: an id is 1 to %d of A-Z a-z 0-9 - _",
                        message->topic, ID_TEXT_MAX);
        return;
    }
    if (message->payload_length == 0) {
        pthread_mutex_lock(&state.lock);
        remove_locked(id);
        pthread_mutex_unlock(&state.lock);
        return;
    }
    struct schedule *schedule = NULL;
    cJSON *json =
        message->payload_length <= RECORD_BYTES_MAX
            ? json_parse_exact((const char *)message->payload, message->payload_length, NULL)
            : NULL;
    enum butler_status status =
        json ? schedule_from_json(json, id, &schedule, error, sizeof error) : BUTLER_ERR_INVALID;
    cJSON_Delete(json);
    if (status != BUTLER_OK) {
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "ignoring schedule record %s: %s", message->topic,
                        json ? error : "not JSON or too large");
        return;
    }
    pthread_mutex_lock(&state.lock);
    status = upsert_locked(schedule);
    pthread_mutex_unlock(&state.lock);
    if (status != BUTLER_OK) {
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "not holding schedule %s: %s (max_schedules %d)",
                        id, butler_status_str(status), state.config->scheduler.max_schedules);
        schedule_free(schedule);
    }
}

/* ---- publishing ---- */

static enum butler_status publish_wait(struct butler_runtime *runtime, const char *topic,
                                       const char *payload, bool retain, int timeout_ms)
{
    struct mqtt_publish_options options = {.qos = 1, .retain = retain};
    if (!mqtt_link_connected(runtime->link))
        return BUTLER_ERR_NOT_CONNECTED;
    return mqtt_link_publish_wait(runtime->link, topic, payload ? payload : "",
                                  payload ? strlen(payload) : 0, &options, timeout_ms);
}

/* Publish the retained record of `schedule` (a copy made under the lock). */
static enum butler_status persist(struct butler_runtime *runtime, const struct schedule *schedule,
                                  int timeout_ms)
{
    char topic[512];
    cJSON *json = schedule_json(schedule, true);
    char *payload = json ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    if (payload == NULL)
        return BUTLER_ERR_NOMEM;
    snprintf(topic, sizeof topic, "%s/schedules/%s", state.config->mqtt.topic_root, schedule->id);
    enum butler_status status = publish_wait(runtime, topic, payload, true, timeout_ms);
    free(payload);
    return status;
}

/* A shallow copy good for persist()/schedule_json (strings duplicated). */
static struct schedule *copy_schedule(const struct schedule *schedule)
{
    struct schedule *copy = malloc(sizeof *copy);
    if (copy == NULL)
        return NULL;
    *copy = *schedule;
    copy->name = strdup(schedule->name);
    copy->tags = cJSON_Duplicate(schedule->tags, true);
    if (copy->name == NULL || copy->tags == NULL) {
        schedule_free(copy);
        return NULL;
    }
    return copy;
}

/* ---- the scheduler thread ---- */

static void count_firing(const char *outcome)
{
    char labels[64];
    snprintf(labels, sizeof labels, "outcome=\"%s\"", outcome);
    metrics_count("butler_schedule_firings_total", labels,
                  "Schedule firings: published, failed to publish, or missed");
}

/* Report firings of `schedule` that nobody fired: an event and a log line,
 * never a replay. Scheduler thread. */
static void report_missed(struct butler_runtime *runtime, const struct schedule *schedule,
                          const int64_t *times, size_t listed, size_t count)
{
    char topic[512], at[32];
    cJSON *event = cJSON_CreateObject();
    cJSON *missed = cJSON_AddArrayToObject(event, "missed");
    for (size_t i = 0; missed && i < listed; i++) {
        clock_format_iso8601((uint64_t)times[i] * 1000u, at, sizeof at);
        cJSON_AddItemToArray(missed, cJSON_CreateString(at));
    }
    cJSON_AddItemToObject(event, "schedule", schedule_json(schedule, false));
    cJSON_AddNumberToObject(event, "count", (double)count);
    cJSON_AddBoolToObject(event, "truncated", listed < count);
    clock_format_iso8601(clock_wall_ms(), at, sizeof at);
    cJSON_AddStringToObject(event, "detectedAt", at);
    char *payload = event ? cJSON_PrintUnformatted(event) : NULL;
    cJSON_Delete(event);
    LOG_WARN(MODULE,
             "schedule %s (\"%s\", task %s): %zu firing(s) missed while no Butler ran; "
             "reported, not replayed",
             schedule->id, schedule->name, schedule->task_id, count);
    for (size_t i = 0; i < count; i++)
        count_firing("missed");
    snprintf(topic, sizeof topic, "%s/events/schedule/missed/%s", state.config->mqtt.topic_root,
             schedule->id);
    if (payload == NULL ||
        publish_wait(runtime, topic, payload, false, PUBLISH_TIMEOUT_MS) != BUTLER_OK)
        LOG_ERROR(MODULE, "could not publish the missed-firing event for schedule %s",
                  schedule->id);
    free(payload);
}

/* Publish the task start of one firing. Scheduler thread. */
static void fire(struct butler_runtime *runtime, const struct schedule *schedule, int64_t at)
{
    char topic[512], request_id[TASK_REQUEST_ID_MAX + 1];
    snprintf(topic, sizeof topic, "%s/task/start", state.config->mqtt.topic_root);
    snprintf(request_id, sizeof request_id, "schedule-%s-%lld", schedule->id, (long long)at);
    /* Built with cJSON: the record's fields are never pasted into JSON. */
    cJSON *json = cJSON_CreateObject();
    char *payload = json && cJSON_AddStringToObject(json, "taskId", schedule->task_id) &&
                            cJSON_AddStringToObject(json, "requestId", request_id)
                        ? cJSON_PrintUnformatted(json)
                        : NULL;
    cJSON_Delete(json);
    enum butler_status status =
        payload ? publish_wait(runtime, topic, payload, false, PUBLISH_TIMEOUT_MS)
                : BUTLER_ERR_NOMEM;
    free(payload);
    if (status == BUTLER_OK) {
        count_firing("published");
        LOG_INFO(MODULE, "schedule %s (\"%s\") fired: task %s", schedule->id, schedule->name,
                 schedule->task_id);
    } else {
        count_firing("failed");
        LOG_ERROR(MODULE, "schedule %s could not publish its task start: %s", schedule->id,
                  butler_status_str(status));
    }
}

/* Work found under the lock, done after releasing it. */
struct due {
    struct schedule *copy; /* owned */
    int64_t fire_at;       /* 0 = nothing to fire */
    size_t missed_count;
    size_t missed_listed;
    int64_t *missed_times; /* owned */
};

/*
 * One pass over the list (lock held): compile what changed, check missed
 * firings of schedules seen for the first time, and collect firings due at
 * `now`. Each entry that needs publishing is copied into `due`.
 */
static size_t scan_locked(int64_t now, struct due *due, size_t due_max)
{
    size_t found = 0;
    const size_t list_max = (size_t)state.config->scheduler.missed_max_reported;
    for (size_t i = 0; i < state.count && found < due_max; i++) {
        struct schedule *schedule = state.items[i];
        char error[256];
        if (schedule->dirty) {
            schedule->dirty = false;
            schedule->zone = zone_get(schedule->timezone, error, sizeof error);
            if (schedule->zone == NULL)
                LOG_ERROR(MODULE, "schedule %s cannot run: %s", schedule->id, error);
            if (schedule->zone == NULL ||
                cron_first_firing(&schedule->expr, schedule->zone, schedule->timing_set_ms,
                                  schedule->last_run_s, now, &schedule->next_s) != BUTLER_OK)
                schedule->next_s = 0;
        }
        if (!schedule->started || schedule->zone == NULL) {
            schedule->seen = true;
            continue;
        }
        struct due item = {0};
        if (!schedule->seen) {
            schedule->seen = true;
            int64_t after = schedule->last_run_s > 0 ? schedule->last_run_s : now;
            item.missed_times = calloc(list_max, sizeof *item.missed_times);
            if (item.missed_times)
                cron_firings_between(&schedule->expr, schedule->zone, after, now, item.missed_times,
                                     list_max, MISSED_COUNT_MAX, &item.missed_count);
            item.missed_listed = item.missed_count < list_max ? item.missed_count : list_max;
        }
        if (schedule->next_s > 0 && schedule->next_s <= now) {
            item.fire_at = schedule->next_s;
            /* Firings the thread could not keep up with (a stall, a suspend)
             * are reported as missed, not fired in a burst. */
            int64_t next = 0;
            if (cron_next(&schedule->expr, schedule->zone, now, &next) != BUTLER_OK)
                next = 0;
            schedule->next_s = next;
            schedule->last_run_s = item.fire_at;
        }
        if (item.missed_count > 0 && item.fire_at == 0)
            schedule->last_run_s = now; /* do not report these again */
        if (item.fire_at == 0 && item.missed_count == 0) {
            free(item.missed_times);
            continue;
        }
        item.copy = copy_schedule(schedule);
        if (item.copy == NULL) {
            free(item.missed_times);
            continue;
        }
        due[found++] = item;
    }
    return found;
}

enum { DUE_PER_PASS = 64 };

static void *scheduler_main(void *argument)
{
    struct butler_runtime *runtime = argument;
    struct due due[DUE_PER_PASS];
    while (!atomic_load(&state.stop) && !atomic_load(&runtime->stopping)) {
        /* Missed firings are judged against a connected link: before the
         * retained schedules arrive there is nothing to judge. */
        if (mqtt_link_connected(runtime->link)) {
            const int64_t now = (int64_t)(clock_wall_ms() / 1000);
            pthread_mutex_lock(&state.lock);
            size_t count = scan_locked(now, due, DUE_PER_PASS);
            pthread_mutex_unlock(&state.lock);
            for (size_t i = 0; i < count; i++) {
                if (due[i].missed_count > 0)
                    report_missed(runtime, due[i].copy, due[i].missed_times, due[i].missed_listed,
                                  due[i].missed_count);
                if (due[i].fire_at > 0)
                    fire(runtime, due[i].copy, due[i].fire_at);
                /* lastRunAt on the broker: what a restarted Butler compares
                 * against to find the firings it missed. */
                if (persist(runtime, due[i].copy, PUBLISH_TIMEOUT_MS) != BUTLER_OK)
                    LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                                    "could not record lastRunAt of schedule %s", due[i].copy->id);
                schedule_free(due[i].copy);
                free(due[i].missed_times);
            }
        }
        clock_sleep_ms(TICK_MS);
    }
    return NULL;
}

enum butler_status schedules_start(struct butler_runtime *runtime)
{
    state.runtime = runtime;
    if (!state.config->scheduler.enable) {
        LOG_INFO(MODULE, "scheduler.enable is false: schedules are served but not fired here");
        return BUTLER_OK;
    }
    if (pthread_create(&state.thread, NULL, scheduler_main, runtime) != 0)
        return BUTLER_ERR_INTERNAL;
    state.thread_started = true;
    return BUTLER_OK;
}

void schedules_stop(void)
{
    atomic_store(&state.stop, true);
    if (state.thread_started) {
        pthread_join(state.thread, NULL);
        state.thread_started = false;
    }
}

void schedules_teardown(void)
{
    schedules_stop();
    pthread_mutex_lock(&state.lock);
    for (size_t i = 0; i < state.count; i++)
        schedule_free(state.items[i]);
    free(state.items);
    state.items = NULL;
    state.count = 0;
    pthread_mutex_unlock(&state.lock);
    pthread_mutex_lock(&state.zone_lock);
    for (size_t i = 0; i < state.zone_count; i++)
        free(state.zones[i]);
    state.zone_count = 0;
    pthread_mutex_unlock(&state.zone_lock);
}

/* ---- HTTP API helpers ---- */

cJSON *schedules_list(const char *id, bool *found)
{
    cJSON *list = cJSON_CreateArray();
    *found = id == NULL;
    pthread_mutex_lock(&state.lock);
    for (size_t i = 0; list && i < state.count; i++) {
        if (id && strcmp(state.items[i]->id, id) != 0)
            continue;
        *found = true;
        cJSON *item = schedule_json(state.items[i], false);
        if (item == NULL || !cJSON_AddItemToArray(list, item)) {
            cJSON_Delete(item);
            cJSON_Delete(list);
            list = NULL;
        }
    }
    pthread_mutex_unlock(&state.lock);
    return list;
}

/* The status page's view: the next firing is the one the timer will keep
 * (next_s), so the page and the scheduler cannot disagree. */
cJSON *schedules_overview(void)
{
    cJSON *list = cJSON_CreateArray();
    pthread_mutex_lock(&state.lock);
    for (size_t i = 0; list && i < state.count; i++) {
        const struct schedule *schedule = state.items[i];
        char next[32] = "";
        if (schedule->started && schedule->next_s > 0)
            clock_format_iso8601((uint64_t)schedule->next_s * 1000, next, sizeof next);
        cJSON *item = cJSON_CreateObject();
        if (item == NULL || !cJSON_AddStringToObject(item, "id", schedule->id) ||
            !cJSON_AddStringToObject(item, "name", schedule->name) ||
            !cJSON_AddStringToObject(item, "cron", schedule->cron_text) ||
            !cJSON_AddStringToObject(item, "timezone", schedule->timezone) ||
            !cJSON_AddStringToObject(item, "taskId", schedule->task_id) ||
            !cJSON_AddStringToObject(item, "state", schedule->started ? "started" : "stopped") ||
            !(next[0] ? cJSON_AddStringToObject(item, "next", next)
                      : cJSON_AddNullToObject(item, "next")) ||
            !cJSON_AddItemToArray(list, item)) {
            cJSON_Delete(item);
            cJSON_Delete(list);
            list = NULL;
        }
    }
    pthread_mutex_unlock(&state.lock);
    return list;
}

enum butler_status schedules_create(struct butler_runtime *runtime, const char *body,
                                    size_t body_length, int timeout_ms, cJSON **created,
                                    char *error, size_t error_size)
{
    enum butler_status status = BUTLER_ERR_INVALID;
    struct schedule *schedule = NULL;
    cJSON *json = json_parse_exact(body, body_length, NULL);
    *created = NULL;
    if (!cJSON_IsObject(json)) {
        snprintf(error, error_size, "the body must be a JSON object");
        goto out;
    }
    status = schedule_from_json(json, NULL, &schedule, error, error_size);
    if (status != BUTLER_OK)
        goto out;
    /* Refuse an unknown zone now rather than at the first firing. */
    status = BUTLER_ERR_INVALID;
    if (zone_get(schedule->timezone, error, error_size) == NULL)
        goto out;
    pthread_mutex_lock(&state.lock);
    bool full = state.count >= state.max;
    pthread_mutex_unlock(&state.lock);
    if (full) {
        snprintf(error, error_size, "too many schedules (scheduler.max_schedules is %d)",
                 state.config->scheduler.max_schedules);
        status = BUTLER_ERR_DENIED;
        goto out;
    }
    status = persist(runtime, schedule, timeout_ms);
    if (status != BUTLER_OK) {
        snprintf(error, error_size, "the MQTT broker did not acknowledge the schedule (%s)",
                 butler_status_str(status));
        goto out;
    }
    *created = schedule_json(schedule, false);
    LOG_INFO(MODULE, "schedule %s (\"%s\", %s %s) created for task %s", schedule->id,
             schedule->name, schedule->cron_text, schedule->timezone, schedule->task_id);
    pthread_mutex_lock(&state.lock);
    status = upsert_locked(schedule);
    pthread_mutex_unlock(&state.lock);
    if (status == BUTLER_OK)
        schedule = NULL;
    else
        status = BUTLER_OK; /* on the broker; the echo retries the view */
out:
    schedule_free(schedule);
    cJSON_Delete(json);
    return status;
}

enum butler_status schedules_delete(struct butler_runtime *runtime, const char *id, int timeout_ms)
{
    char topic[512];
    pthread_mutex_lock(&state.lock);
    bool exists = find_index(id) >= 0;
    pthread_mutex_unlock(&state.lock);
    if (!exists || strlen(id) > ID_MAX)
        return BUTLER_ERR_NOT_FOUND;
    snprintf(topic, sizeof topic, "%s/schedules/%s", state.config->mqtt.topic_root, id);
    enum butler_status status = publish_wait(runtime, topic, NULL, true, timeout_ms);
    if (status != BUTLER_OK)
        return status;
    pthread_mutex_lock(&state.lock);
    remove_locked(id);
    pthread_mutex_unlock(&state.lock);
    LOG_INFO(MODULE, "schedule %s deleted", id);
    return BUTLER_OK;
}

enum butler_status schedules_set_state(struct butler_runtime *runtime, const char *id, bool start,
                                       int timeout_ms, cJSON **out)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    struct schedule **copies = NULL;
    size_t count = 0;
    *out = cJSON_CreateArray();
    if (*out == NULL)
        goto out;
    pthread_mutex_lock(&state.lock);
    copies = state.count ? calloc(state.count, sizeof *copies) : NULL;
    for (size_t i = 0; (copies || state.count == 0) && i < state.count; i++) {
        struct schedule *schedule = state.items[i];
        if (id && strcmp(schedule->id, id) != 0)
            continue;
        struct schedule *copy = copy_schedule(schedule);
        if (copy == NULL)
            continue;
        copy->started = start;
        /* A (re)started schedule owes nothing for the time it was stopped. */
        if (start && !schedule->started) {
            copy->timing_set_ms = clock_wall_ms();
            copy->last_run_s = (int64_t)(copy->timing_set_ms / 1000);
        }
        copies[count++] = copy;
    }
    pthread_mutex_unlock(&state.lock);
    if (state.count && copies == NULL)
        goto out;
    status = BUTLER_ERR_NOT_FOUND;
    if (id && count == 0)
        goto out;
    status = BUTLER_OK;
    for (size_t i = 0; i < count; i++) {
        status = persist(runtime, copies[i], timeout_ms);
        if (status != BUTLER_OK)
            goto out;
        cJSON_AddItemToArray(*out, schedule_json(copies[i], false));
        pthread_mutex_lock(&state.lock);
        long index = find_index(copies[i]->id);
        if (index >= 0) {
            struct schedule *schedule = state.items[index];
            if (schedule->started != start) {
                schedule->started = start;
                schedule->last_run_s = copies[i]->last_run_s;
                schedule->timing_set_ms = copies[i]->timing_set_ms;
                schedule->dirty = true;
            }
        }
        pthread_mutex_unlock(&state.lock);
        LOG_INFO(MODULE, "schedule %s %s", copies[i]->id, start ? "started" : "stopped");
    }
out:
    for (size_t i = 0; i < count; i++)
        schedule_free(copies[i]);
    free(copies);
    if (status != BUTLER_OK) {
        cJSON_Delete(*out);
        *out = NULL;
    }
    return status;
}

char *schedules_status_text(void)
{
    pthread_mutex_lock(&state.lock);
    size_t size = state.count * (ID_MAX + 32) + 1;
    char *text = malloc(size);
    size_t used = 0;
    if (text) {
        text[0] = '\0';
        for (size_t i = 0; i < state.count; i++)
            used += (size_t)snprintf(text + used, size - used, "%s: cron status: %s\n",
                                     state.items[i]->id,
                                     state.items[i]->started ? "Running" : "Stopped");
    }
    pthread_mutex_unlock(&state.lock);
    return text;
}
