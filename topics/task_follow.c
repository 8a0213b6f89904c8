/*
 * The follower: one thread that watches every followed task run (contract
 * section 9.1; see topics/task_follow.h for the contract of each call).
 *
 * The table holds at most task_start.follow.max follows (reserved before a
 * task start with follow starts anything). Each follow has a monotonic due
 * time; the thread sleeps until the earliest one (or a poke), polls what is
 * due, and schedules it again poll_s later. The first poll of a new follow
 * is spread over the first interval so that 1,000 runs started together do
 * not reach QRS in one burst. QRS failures (5xx, 429, garbage, no answer)
 * are retried with a doubling backoff capped at poll_s; the follow is kept.
 */
#include "topics/task_follow.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge/clients/qrs.h"
#include "bridge/core/clock.h"
#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/core/runtime.h"
#include "bridge/model/task_request.h"
#include "bridge/store/spool.h"
#include "topics/events.h"
#include "topics/log_tail.h"
#include "topics/message.h"
#include "topics/publish.h"

#define MODULE "task-follow"

enum {
    RESULT_LOOKUPS_MAX = 3,
    POKE_TRIES = 10, /* after a task event: quick looks while QRS catches up */
    POKE_PAUSE_MS = 300,
    SCRIPT_LOG_READ_BYTES = 64 * 1024,
    /* only the end of a log of any size is read */ /* session gone and no result: tries before
                                                       `error` */
    BACKOFF_FIRST_MS = 500,                         /* first pause after a failed QRS call */
    FINAL_LAG_PAUSE_MS = 500, /* session gone, result not final yet: look again soon */
};

struct follow {
    uint64_t spool_id;
    char request_id[65];
    char task_id[37];
    char execution_id[37];
    char *task_name;
    char *response_topic;
    unsigned char *correlation;
    size_t correlation_length;
    uint64_t started_wall_ms; /* when the start answered (timeout_s counts from it) */
    uint64_t started_mono_ms; /* the same on the monotonic clock (this process) */
    uint64_t due_mono_ms;
    uint64_t backoff_ms;
    int last_status; /* QRS execution status last seen; -1 = none */
    int result_misses;
    int poked; /* a task event named this run: look again soon this many times */
    bool busy; /* being polled by the thread (not in the schedule) */
};

static struct {
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    struct follow **items; /* [max], NULL = free slot */
    size_t max, count, reserved;
    const struct butler_config *config;
    struct spool *spool;
    pthread_t thread;
    bool started, stop;
    uint64_t seed;
} table = {.mutex = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static struct metric *followed_gauge;

static void follow_free(struct follow *follow)
{
    if (follow == NULL)
        return;
    free(follow->task_name);
    free(follow->response_topic);
    free(follow->correlation);
    free(follow);
}

/* xorshift: jitter only, not security. Mutex held. */
static uint64_t next_random(void)
{
    uint64_t x = table.seed ? table.seed : 0x9e3779b97f4a7c15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    table.seed = x;
    return x;
}

enum butler_status task_follow_setup(struct butler_runtime *runtime)
{
    table.config = runtime->config;
    table.max = (size_t)runtime->config->task_start.follow.max;
    table.items = calloc(table.max, sizeof *table.items);
    table.seed = clock_monotonic_ms() ^ (uint64_t)(uintptr_t)&table;
    followed_gauge = metrics_get("butler_task_follows", "", METRIC_GAUGE,
                                 "Task runs followed now (task_start.follow.max caps it)");
    return table.items ? BUTLER_OK : BUTLER_ERR_NOMEM;
}

bool task_follow_reserve(size_t count)
{
    pthread_mutex_lock(&table.mutex);
    bool room = table.items && table.count + table.reserved + count <= table.max;
    if (room)
        table.reserved += count;
    pthread_mutex_unlock(&table.mutex);
    return room;
}

void task_follow_release(size_t count)
{
    pthread_mutex_lock(&table.mutex);
    table.reserved -= count <= table.reserved ? count : table.reserved;
    pthread_mutex_unlock(&table.mutex);
}

/* Put `follow` in a free slot (mutex held); false when full. `reserved`: it
 * uses a reservation. The first poll lands at a random point of the first
 * interval. */
static bool insert_locked(struct follow *follow, bool reserved)
{
    if (reserved && table.reserved > 0)
        table.reserved--;
    if (table.items == NULL || table.count >= table.max)
        return false;
    for (size_t i = 0; i < table.max; i++)
        if (table.items[i] == NULL) {
            uint64_t poll_ms = (uint64_t)table.config->task_start.follow.poll_s * 1000u;
            follow->due_mono_ms = clock_monotonic_ms() + next_random() % (poll_ms + 1);
            table.items[i] = follow;
            table.count++;
            metrics_set(followed_gauge, (int64_t)table.count);
            pthread_cond_signal(&table.wake);
            return true;
        }
    return false;
}

/* The follow record's payload (owned by the caller), or NULL. */
static char *record_payload(const struct follow *follow)
{
    cJSON *json = cJSON_CreateObject();
    if (json == NULL)
        return NULL;
    cJSON_AddStringToObject(json, "requestId", follow->request_id);
    cJSON_AddStringToObject(json, "taskId", follow->task_id);
    cJSON_AddStringToObject(json, "taskName", follow->task_name ? follow->task_name : "");
    cJSON_AddStringToObject(json, "executionId", follow->execution_id);
    cJSON_AddNumberToObject(json, "startedAt", (double)follow->started_wall_ms);
    char *text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    return text;
}

static enum butler_status spool_follow(struct follow *follow, const char *payload)
{
    struct spool *spool = butler_runtime_current ? butler_runtime_current->spool : NULL;
    if (spool == NULL)
        return BUTLER_OK; /* unit tests: memory only */
    struct topic_message message = {
        .topic = "task_follow",
        .payload = (unsigned char *)payload,
        .payload_length = strlen(payload),
        .response_topic = follow->response_topic,
        .correlation_data = follow->correlation,
        .correlation_length = follow->correlation_length,
        .received_wall_ms = follow->started_wall_ms,
    };
    size_t length = 0;
    unsigned char *record = topics_message_record(TASK_FOLLOW_SPOOL_FAMILY, &message, &length);
    if (record == NULL)
        return BUTLER_ERR_NOMEM;
    enum butler_status status = spool_add(spool, record, length, &follow->spool_id);
    free(record);
    if (status == BUTLER_OK && butler_runtime_current->config->spool.fsync)
        status = spool_flush(spool);
    return status;
}

enum butler_status task_follow_add(const struct task_follow_start *start)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    char *payload = NULL;
    struct follow *follow = calloc(1, sizeof *follow);
    if (follow == NULL)
        goto out;
    snprintf(follow->request_id, sizeof follow->request_id, "%s", start->request_id);
    snprintf(follow->task_id, sizeof follow->task_id, "%s", start->task_id);
    snprintf(follow->execution_id, sizeof follow->execution_id, "%s", start->execution_id);
    follow->task_name = strdup(start->task_name ? start->task_name : "");
    follow->response_topic = start->response_topic ? strdup(start->response_topic) : NULL;
    if (start->correlation_length > 0) {
        follow->correlation = malloc(start->correlation_length);
        if (follow->correlation)
            memcpy(follow->correlation, start->correlation, start->correlation_length);
        follow->correlation_length = start->correlation_length;
    }
    follow->started_wall_ms = clock_wall_ms();
    follow->started_mono_ms = clock_monotonic_ms();
    follow->last_status = -1;
    if (follow->task_name == NULL || (start->response_topic && follow->response_topic == NULL) ||
        (start->correlation_length > 0 && follow->correlation == NULL))
        goto out;
    payload = record_payload(follow);
    if (payload == NULL)
        goto out;
    status = spool_follow(follow, payload);
    if (status != BUTLER_OK && status != BUTLER_ERR_NOMEM) {
        /* Better an end published unless a restart comes first than a run
         * nobody hears the end of. A refused add leaves spool_id 0, so
         * finish() marks nothing; after a failed flush the record may be in
         * the file, and its id is kept so that the end marks it done. */
        metrics_count("butler_task_follows_unrecorded_total", "",
                      "Followed runs whose follow record the spool refused (followed from "
                      "memory only: a restart before the end loses the finished message)");
        LOG_ERROR(MODULE,
                  "the spool refused the follow record of execution %s (%s); followed from "
                  "memory only, a restart before the run ends loses its finished message",
                  start->execution_id, butler_status_str(status));
        status = BUTLER_OK;
    }
    if (status != BUTLER_OK)
        goto out;
    pthread_mutex_lock(&table.mutex);
    bool inserted = insert_locked(follow, true);
    pthread_mutex_unlock(&table.mutex);
    if (!inserted) { /* cannot happen with a reservation; the spool keeps it for a restart */
        status = BUTLER_ERR_FULL;
        LOG_ERROR(MODULE, "follow table full; execution %s is followed after the next start",
                  start->execution_id);
        follow_free(follow);
        follow = NULL;
        goto out_nofree;
    }
    LOG_INFO(MODULE, "following execution %s of task %s for request %s", follow->execution_id,
             follow->task_id, follow->request_id);
    follow = NULL;
out:
    if (status != BUTLER_OK && follow != NULL) {
        task_follow_release(1);
        follow_free(follow);
    }
out_nofree:
    free(payload);
    return status;
}

bool task_follow_find(const char *request_id, const char *task_id, char out[37])
{
    bool found = false;
    pthread_mutex_lock(&table.mutex);
    for (size_t i = 0; table.items && i < table.max && !found; i++) {
        const struct follow *follow = table.items[i];
        if (follow && strcmp(follow->request_id, request_id) == 0 &&
            strcasecmp(follow->task_id, task_id) == 0) {
            memcpy(out, follow->execution_id, 37);
            found = true;
        }
    }
    pthread_mutex_unlock(&table.mutex);
    return found;
}

static const char *string_of(const cJSON *object, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

enum butler_status task_follow_recovered(uint64_t spool_id, const void *payload, size_t length,
                                         const char *response_topic,
                                         const unsigned char *correlation,
                                         size_t correlation_length)
{
    enum butler_status status = BUTLER_ERR_INVALID;
    struct follow *follow = NULL;
    cJSON *json = json_parse_exact(payload, length, NULL);
    const char *request_id = string_of(json, "requestId");
    const char *task_id = string_of(json, "taskId");
    const char *execution_id = string_of(json, "executionId");
    const cJSON *started = cJSON_GetObjectItemCaseSensitive(json, "startedAt");
    if (!request_id || !task_id || !execution_id || !cJSON_IsNumber(started) ||
        strlen(task_id) != 36 || strlen(execution_id) != 36 || strlen(request_id) > 64)
        goto out;
    status = BUTLER_ERR_NOMEM;
    follow = calloc(1, sizeof *follow);
    if (follow == NULL)
        goto out;
    follow->spool_id = spool_id;
    snprintf(follow->request_id, sizeof follow->request_id, "%s", request_id);
    snprintf(follow->task_id, sizeof follow->task_id, "%s", task_id);
    snprintf(follow->execution_id, sizeof follow->execution_id, "%s", execution_id);
    const char *name = string_of(json, "taskName");
    follow->task_name = strdup(name ? name : "");
    follow->response_topic = response_topic && response_topic[0] ? strdup(response_topic) : NULL;
    if (correlation_length > 0 && (follow->correlation = malloc(correlation_length)) != NULL) {
        memcpy(follow->correlation, correlation, correlation_length);
        follow->correlation_length = correlation_length;
    }
    follow->started_wall_ms = (uint64_t)started->valuedouble;
    /* The timeout counts from the start, across the restart. */
    uint64_t now_wall = clock_wall_ms(), now_mono = clock_monotonic_ms();
    uint64_t age = now_wall > follow->started_wall_ms ? now_wall - follow->started_wall_ms : 0;
    follow->started_mono_ms = now_mono > age ? now_mono - age : 0;
    follow->last_status = -1;
    if (follow->task_name == NULL)
        goto out;
    pthread_mutex_lock(&table.mutex);
    bool inserted = insert_locked(follow, false);
    pthread_mutex_unlock(&table.mutex);
    if (!inserted) {
        status = BUTLER_ERR_FULL; /* left in the spool for a start with a larger table */
        goto out;
    }
    follow = NULL;
    status = BUTLER_OK;
out:
    follow_free(follow);
    cJSON_Delete(json);
    return status;
}

void task_follow_poke(const char *execution_id)
{
    if (execution_id == NULL || execution_id[0] == '\0')
        return;
    pthread_mutex_lock(&table.mutex);
    for (size_t i = 0; table.count > 0 && i < table.max; i++) {
        struct follow *follow = table.items[i];
        if (follow && !follow->busy && strcasecmp(follow->execution_id, execution_id) == 0) {
            follow->due_mono_ms = 0;
            follow->poked = POKE_TRIES;
            pthread_cond_signal(&table.wake);
            break;
        }
    }
    pthread_mutex_unlock(&table.mutex);
}

size_t task_follow_count(void)
{
    pthread_mutex_lock(&table.mutex);
    size_t count = table.count;
    pthread_mutex_unlock(&table.mutex);
    return count;
}

/* ---- the follower thread ---- */

static const char *status_name(int code)
{
    switch (code) {
    case 7:
        return "success";
    case 8:
        return "failed";
    case 6:
        return "aborted";
    case 9:
        return "skipped";
    case 0:
    case 11:
    case 12:
        return "error";
    default:
        return NULL; /* not final */
    }
}

/* The newest result of an array (latest startTime; ISO-8601 strings of one
 * format sort as text), or NULL. Borrowed. */
static const cJSON *newest_result(const cJSON *results)
{
    const cJSON *newest = NULL, *item;
    const char *newest_start = "";
    cJSON_ArrayForEach(item, results)
    {
        const char *start = string_of(item, "startTime");
        if (!cJSON_IsObject(item))
            continue;
        if (newest == NULL || (start && strcmp(start, newest_start) >= 0)) {
            newest = item;
            newest_start = start ? start : "";
        }
    }
    return newest;
}

/* The script-log download ticket of one call's answer ({"value": ..} or a
 * bare string), or NULL. Borrowed from `answer`. */
static const char *ticket_of(const cJSON *answer)
{
    const cJSON *value =
        cJSON_IsObject(answer) ? cJSON_GetObjectItemCaseSensitive(answer, "value") : answer;
    return cJSON_IsString(value) && value->valuestring[0] ? value->valuestring : NULL;
}

/*
 * The tail of a finished run's script log as a JSON string, or NULL when QRS
 * has none (not an error): the newer scriptlogfile?executionResultId= first,
 * then the older scriptlog?fileReferenceId=, then the download of the ticket.
 * Follower thread.
 */
static cJSON *script_log_tail(struct qrs_client *qrs, const char *task_id, const cJSON *result)
{
    const char *result_id = string_of(result, "id");
    const char *file_reference = string_of(result, "fileReferenceID");
    char path[256];
    cJSON *answer = NULL;
    struct qrs_result call = {0};
    const char *ticket = NULL;
    if (result_id && task_is_guid(result_id, strlen(result_id))) {
        snprintf(path, sizeof path, "reloadtask/%s/scriptlogfile?executionResultId=%s", task_id,
                 result_id);
        if (qrs_get_route(qrs, "reloadtask/scriptlogfile", path, NULL, &answer, &call) == BUTLER_OK)
            ticket = ticket_of(answer);
    }
    if (ticket == NULL && file_reference && task_is_guid(file_reference, strlen(file_reference)) &&
        strcmp(file_reference, "00000000-0000-0000-0000-000000000000") != 0) {
        cJSON_Delete(answer);
        answer = NULL;
        snprintf(path, sizeof path, "reloadtask/%s/scriptlog?fileReferenceId=%s", task_id,
                 file_reference);
        if (qrs_get_route(qrs, "reloadtask/scriptlog", path, NULL, &answer, &call) == BUTLER_OK)
            ticket = ticket_of(answer);
    }
    cJSON *tail = NULL;
    char *text = NULL;
    size_t length = 0;
    bool head_cut = false;
    /* The ticket goes into a path: a GUID-like token only. */
    if (ticket && strlen(ticket) < 100 &&
        strspn(ticket, "0123456789abcdefABCDEF-") == strlen(ticket)) {
        snprintf(path, sizeof path, "download/reloadtask/%s/scriptlog.txt", ticket);
        if (qrs_get_text(qrs, "download/reloadtask/scriptlog.txt", path, SCRIPT_LOG_READ_BYTES,
                         &text, &length, &head_cut, &call) == BUTLER_OK) {
            char *lines =
                log_tail(text, length, head_cut, EVENTS_LOG_TAIL_LINES, EVENTS_LOG_TAIL_MAX_BYTES);
            if (lines)
                tail = cJSON_CreateString(lines);
            free(lines);
        }
    }
    free(text);
    cJSON_Delete(answer);
    return tail;
}

/* Publish the finished message, then mark the follow done in the spool.
 * False when Butler stopped first (the follow stays in the spool). */
static bool finish(struct follow *follow, const char *status, const cJSON *result,
                   const char *reason, cJSON *log_tail_json)
{
    cJSON *json = cJSON_CreateObject();
    if (json == NULL) {
        cJSON_Delete(log_tail_json);
        return false;
    }
    cJSON_AddStringToObject(json, "requestId", follow->request_id);
    cJSON_AddStringToObject(json, "taskId", follow->task_id);
    cJSON_AddStringToObject(json, "taskName", follow->task_name);
    cJSON_AddStringToObject(json, "executionId", follow->execution_id);
    cJSON_AddStringToObject(json, "status", status);
    if (follow->last_status >= 0)
        cJSON_AddNumberToObject(json, "statusCode", follow->last_status);
    else
        cJSON_AddNullToObject(json, "statusCode");
    const char *start = string_of(result, "startTime");
    const char *stop = string_of(result, "stopTime");
    const char *node = string_of(result, "executingNodeName");
    const cJSON *duration = cJSON_GetObjectItemCaseSensitive(result, "duration");
    if (start)
        cJSON_AddStringToObject(json, "startTime", start);
    if (stop && strncmp(stop, "1753-", 5) != 0) /* QRS's unset date */
        cJSON_AddStringToObject(json, "stopTime", stop);
    if (cJSON_IsNumber(duration))
        cJSON_AddNumberToObject(json, "durationMs", duration->valuedouble);
    if (node)
        cJSON_AddStringToObject(json, "executingNode", node);
    if (log_tail_json)
        cJSON_AddItemToObject(json, "scriptLogTail", log_tail_json); /* takes it */
    if (reason)
        cJSON_AddStringToObject(json, "error", reason);
    char *text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    if (text == NULL)
        return false;
    char topic[600];
    snprintf(topic, sizeof topic, "%s/task/finished/%s", table.config->mqtt.topic_root,
             follow->task_id);
    struct mqtt_publish_options options = {.qos = 1, .content_type = "application/json"};
    enum butler_status published = publish_reliably(topic, text, strlen(text), &options);
    if (published == BUTLER_OK && follow->response_topic) {
        struct mqtt_publish_options respond = {
            .qos = 1,
            .correlation_data = follow->correlation,
            .correlation_length = follow->correlation_length,
            .content_type = "application/json",
        };
        published = publish_reliably(follow->response_topic, text, strlen(text), &respond);
        if (published != BUTLER_OK && published != BUTLER_ERR_SHUTDOWN)
            published = BUTLER_OK; /* refused for good: the topic message went out */
    }
    free(text);
    if (published == BUTLER_ERR_SHUTDOWN)
        return false;
    if (published != BUTLER_OK)
        LOG_ERROR(MODULE, "finished message of execution %s refused by the broker: %s",
                  follow->execution_id, butler_status_str(published));
    struct spool *spool = butler_runtime_current ? butler_runtime_current->spool : NULL;
    if (spool && follow->spool_id)
        spool_done(spool, follow->spool_id, "", 0);
    char labels[64];
    snprintf(labels, sizeof labels, "status=\"%s\"", status);
    metrics_count("butler_task_follows_finished_total", labels,
                  "Followed task runs that ended, by status");
    LOG_INFO(MODULE, "execution %s of task %s ended: %s", follow->execution_id, follow->task_id,
             status);
    return true;
}

/* Schedule `follow` again after a failed QRS call. */
static void back_off(struct follow *follow, uint64_t poll_ms)
{
    follow->backoff_ms = follow->backoff_ms ? follow->backoff_ms * 2 : BACKOFF_FIRST_MS;
    if (follow->backoff_ms > poll_ms)
        follow->backoff_ms = poll_ms;
    follow->due_mono_ms = clock_monotonic_ms() + follow->backoff_ms;
    metrics_count("butler_task_follow_qrs_failures_total", "",
                  "QRS calls of the follower that failed (retried with backoff)");
}

/*
 * Poll one follow. True when it ended (finished message out, spool done);
 * false when it stays (due time set), also when Butler is stopping.
 * Follower thread; `follow` is marked busy, so nothing else touches it.
 */
static bool poll_one(struct qrs_client *qrs, struct follow *follow)
{
    uint64_t poll_ms = (uint64_t)table.config->task_start.follow.poll_s * 1000u;
    uint64_t timeout_ms = (uint64_t)table.config->task_start.follow.timeout_s * 1000u;
    uint64_t now = clock_monotonic_ms();
    char path[128], filter[80];
    cJSON *json = NULL;
    struct qrs_result result = {0};
    snprintf(filter, sizeof filter, "ExecutionId eq %s", follow->execution_id);
    if (now - follow->started_mono_ms >= timeout_ms) {
        /* The session holds no status: the newest result has the last one seen. */
        const cJSON *newest = NULL;
        if (qrs_get_route(qrs, "executionresult/full", "executionresult/full", filter, &json,
                          &result) == BUTLER_OK &&
            (newest = newest_result(json)) != NULL) {
            const cJSON *code = cJSON_GetObjectItemCaseSensitive(newest, "status");
            if (cJSON_IsNumber(code))
                follow->last_status = code->valueint;
        }
        bool ended = finish(follow, "timeout", newest,
                            "task_start.follow.timeout_s passed without an end", NULL);
        cJSON_Delete(json);
        return ended;
    }
    snprintf(path, sizeof path, "executionsession/%s", follow->execution_id);
    enum butler_status status =
        qrs_get_route(qrs, "executionsession/{id}", path, NULL, &json, &result);
    if (status == BUTLER_OK) {
        const cJSON *session_status = cJSON_GetObjectItemCaseSensitive(json, "status");
        if (cJSON_IsNumber(session_status))
            follow->last_status = session_status->valueint;
        cJSON_Delete(json);
        follow->backoff_ms = 0;
        follow->due_mono_ms = now + (follow->poked > 0 ? POKE_PAUSE_MS : poll_ms);
        if (follow->poked > 0)
            follow->poked--;
        return false;
    }
    cJSON_Delete(json);
    json = NULL;
    if (status == BUTLER_ERR_SHUTDOWN)
        return false;
    if (status != BUTLER_ERR_NOT_FOUND) {
        back_off(follow, poll_ms);
        return false;
    }
    /* The session is gone: the run ended. */
    memset(&result, 0, sizeof result);
    status =
        qrs_get_route(qrs, "executionresult/full", "executionresult/full", filter, &json, &result);
    if (status != BUTLER_OK || !cJSON_IsArray(json)) {
        cJSON_Delete(json);
        if (status == BUTLER_ERR_SHUTDOWN)
            return false;
        back_off(follow, poll_ms);
        return false;
    }
    const cJSON *newest = newest_result(json);
    if (newest == NULL) {
        cJSON_Delete(json);
        if (++follow->result_misses >= RESULT_LOOKUPS_MAX)
            return finish(follow, "error", NULL,
                          "QRS knows neither the execution session nor a result for it", NULL);
        follow->due_mono_ms = now + FINAL_LAG_PAUSE_MS;
        return false;
    }
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(newest, "status");
    if (cJSON_IsNumber(code))
        follow->last_status = code->valueint;
    const char *name = cJSON_IsNumber(code) ? status_name(code->valueint) : NULL;
    if (name == NULL) { /* the session ended before the result shows the end */
        cJSON_Delete(json);
        follow->due_mono_ms = now + FINAL_LAG_PAUSE_MS;
        return false;
    }
    cJSON *tail = strcmp(name, "failed") == 0 || strcmp(name, "aborted") == 0
                      ? script_log_tail(qrs, follow->task_id, newest)
                      : NULL;
    bool ended = finish(follow, name, newest, NULL, tail);
    cJSON_Delete(json);
    return ended;
}

static void *follower_main(void *unused)
{
    (void)unused;
    struct qrs_client *qrs = NULL;
    if (qrs_client_create(table.config, butler_runtime_stopping, &qrs) != BUTLER_OK) {
        LOG_ERROR(MODULE, "cannot create the follower's QRS client; follows wait for a restart");
        return NULL;
    }
    pthread_mutex_lock(&table.mutex);
    while (!table.stop) {
        uint64_t now = clock_monotonic_ms(), earliest = UINT64_MAX;
        struct follow *due = NULL;
        size_t due_slot = 0;
        for (size_t i = 0; i < table.max; i++) {
            struct follow *follow = table.items[i];
            if (follow == NULL || follow->busy)
                continue;
            if (follow->due_mono_ms <= now &&
                (due == NULL || follow->due_mono_ms < due->due_mono_ms)) {
                due = follow;
                due_slot = i;
            }
            if (follow->due_mono_ms < earliest)
                earliest = follow->due_mono_ms;
        }
        if (due == NULL) {
            if (earliest == UINT64_MAX) {
                pthread_cond_wait(&table.wake, &table.mutex);
            } else {
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                uint64_t wait_ms = earliest - now;
                until.tv_sec += (time_t)(wait_ms / 1000);
                until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
                if (until.tv_nsec >= 1000000000L) {
                    until.tv_sec++;
                    until.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&table.wake, &table.mutex, &until);
            }
            continue;
        }
        due->busy = true;
        pthread_mutex_unlock(&table.mutex);
        bool ended = poll_one(qrs, due);
        pthread_mutex_lock(&table.mutex);
        due->busy = false;
        if (ended) {
            table.items[due_slot] = NULL;
            table.count--;
            metrics_set(followed_gauge, (int64_t)table.count);
            follow_free(due);
        } else if (butler_runtime_stopping()) {
            break;
        }
    }
    pthread_mutex_unlock(&table.mutex);
    qrs_client_destroy(qrs);
    return NULL;
}

enum butler_status task_follow_start(void)
{
    if (table.items == NULL || table.started || !qrs_enabled(table.config))
        return BUTLER_OK;
    table.stop = false;
    if (pthread_create(&table.thread, NULL, follower_main, NULL) != 0)
        return BUTLER_ERR_NOMEM;
    table.started = true;
    return BUTLER_OK;
}

void task_follow_stop(void)
{
    if (!table.started)
        return;
    pthread_mutex_lock(&table.mutex);
    table.stop = true;
    pthread_cond_broadcast(&table.wake);
    pthread_mutex_unlock(&table.mutex);
    pthread_join(table.thread, NULL);
    table.started = false;
}

void task_follow_teardown(void)
{
    task_follow_stop();
    pthread_mutex_lock(&table.mutex);
    for (size_t i = 0; table.items && i < table.max; i++)
        follow_free(table.items[i]);
    free(table.items);
    table.items = NULL;
    table.count = table.reserved = table.max = 0;
    pthread_mutex_unlock(&table.mutex);
}
