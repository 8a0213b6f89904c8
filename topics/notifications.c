/*
 * QRS change subscriptions; see notifications.h and docs/qrs-notifications.md.
 *
 * Handle bookkeeping: `handles` lists every subscription Butler may still
 * have in QRS, the current one first. The file <spool.dir>/qrs-notification.
 * handles mirrors it (written before a DELETE and after a POST), so after a
 * crash the next start deletes what the last process left behind; a handle
 * QRS no longer knows (it restarted) answers the DELETE with an error and
 * is forgotten.
 */
#include "topics/notifications.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bridge/core/clock.h"
#include "bridge/store/execution_ids.h"
#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/clients/qrs.h"
#include "topics/events.h"

#define MODULE "notifications"
#define HANDLES_FILE "qrs-notification.handles"
#define FAMILY "qrs_notification"

enum {
    GUID_TEXT = 37,
    URL_TEXT = 2048,
    PATH_TEXT = 4096,
    STOP_BUDGET_MS = 5000,  /* clean shutdown: time allowed for the DELETEs */
    CALL_TIMEOUT_MS = 5000, /* one keeper call, however long qrs.timeout_ms is */
    CALL_ATTEMPTS_MAX = 3,
    /* A pending claim of the same run (its UDP event in flight) is waited
     * for this long: a PUBACK or a spool write takes far less; past it the
     * event is taken as on its way (execution_ids_claim). */
    CLAIM_WAIT_MS = 3000,
};

struct keeper {
    struct butler_runtime *runtime;
    struct butler_config config; /* shallow copy with the keeper's timeouts */
    struct qrs_client *qrs;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    bool stop; /* under mutex */
    char handles[NOTIFICATIONS_HANDLES_MAX][GUID_TEXT];
    size_t handle_count;
    bool subscribed; /* handles[0] is this process's live subscription */
    char callback[URL_TEXT];
    char path_and_query[PATH_TEXT];
    char handles_path[PATH_TEXT];
};

static struct keeper *keeper;
/* Monotonic deadline after which QRS calls stop retrying (0 = none). */
static _Atomic uint64_t stop_deadline_ms;

static bool keeper_should_stop(void)
{
    uint64_t deadline = atomic_load(&stop_deadline_ms);
    return deadline != 0 && clock_monotonic_ms() >= deadline;
}

static void count(const char *name, const char *labels, const char *help)
{
    metrics_count(name, labels, help);
}

/* ------------------------------------------------------------ handle file */

static void handles_save(struct keeper *k)
{
    char temporary[PATH_TEXT + 8];
    snprintf(temporary, sizeof temporary, "%s.tmp", k->handles_path);
    if (k->handle_count == 0) {
        if (unlink(k->handles_path) != 0 && errno != ENOENT)
            LOG_WARN(MODULE, "cannot remove %s: %s", k->handles_path, strerror(errno));
        return;
    }
    FILE *file = fopen(temporary, "w");
    if (file == NULL) {
        LOG_WARN(MODULE, "cannot write %s: %s (a crash now could leave a subscription behind)",
                 temporary, strerror(errno));
        return;
    }
    for (size_t i = 0; i < k->handle_count; i++)
        fprintf(file, "%s\n", k->handles[i]);
    bool ok = fflush(file) == 0 && (!k->config.spool.fsync || fsync(fileno(file)) == 0);
    ok = (fclose(file) == 0) && ok;
    if (!ok || rename(temporary, k->handles_path) != 0)
        LOG_WARN(MODULE, "cannot write %s: %s", k->handles_path, strerror(errno));
}

static void handles_load(struct keeper *k)
{
    FILE *file = fopen(k->handles_path, "r");
    if (file == NULL)
        return;
    char line[128];
    while (k->handle_count < NOTIFICATIONS_HANDLES_MAX && fgets(line, sizeof line, file)) {
        size_t length = strcspn(line, "\r\n");
        if (length == GUID_TEXT - 1 && sense_is_guid(line, length))
            snprintf(k->handles[k->handle_count++], GUID_TEXT, "%.*s", (int)length, line);
    }
    fclose(file);
    if (k->handle_count > 0)
        LOG_INFO(MODULE, "%zu subscription handle(s) left by the previous run: deleting them",
                 k->handle_count);
}

/* Put `handle` first (the current subscription); the oldest is forgotten
 * when the list is full (logged: it may stay in QRS until QRS restarts). */
static void handles_push_front(struct keeper *k, const char *handle)
{
    if (k->handle_count == NOTIFICATIONS_HANDLES_MAX) {
        LOG_WARN(MODULE, "too many undeleted subscriptions; forgetting %s",
                 k->handles[NOTIFICATIONS_HANDLES_MAX - 1]);
        k->handle_count--;
    }
    memmove(k->handles[1], k->handles[0], k->handle_count * GUID_TEXT);
    snprintf(k->handles[0], GUID_TEXT, "%s", handle);
    k->handle_count++;
}

static void handles_remove(struct keeper *k, size_t index)
{
    memmove(k->handles[index], k->handles[index + 1], (k->handle_count - index - 1) * GUID_TEXT);
    k->handle_count--;
}

/* ------------------------------------------------------------- QRS calls */

/* POST the subscription; its handle into out. */
static enum butler_status subscribe(struct keeper *k, char out[GUID_TEXT])
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    cJSON *answer = NULL;
    struct qrs_result result;
    /* The body is the callback URL as a JSON string, as public clients send it. */
    cJSON *url = cJSON_CreateString(k->callback);
    char *body = url ? cJSON_PrintUnformatted(url) : NULL;
    if (body == NULL)
        goto out;
    status = qrs_post(k->qrs, "notification", k->path_and_query, body, &answer, &result);
    if (status != BUTLER_OK) {
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "cannot register the QRS change subscription: %s",
                        result.error[0] ? result.error : butler_status_str(status));
        goto out;
    }
    /* Public clients read {"value": "<handle>"}; a bare string is accepted too. */
    const cJSON *value = cJSON_IsString(answer) ? answer : cJSON_GetObjectItem(answer, "value");
    status = BUTLER_ERR_REMOTE;
    if (!cJSON_IsString(value) || strlen(value->valuestring) != GUID_TEXT - 1 ||
        !sense_is_guid(value->valuestring, GUID_TEXT - 1)) {
        LOG_WARN(MODULE, "QRS answered the subscription without a handle GUID");
        goto out;
    }
    snprintf(out, GUID_TEXT, "%s", value->valuestring);
    status = BUTLER_OK;
out:
    count("butler_qrs_notification_subscribe_total",
          status == BUTLER_OK ? "outcome=\"ok\"" : "outcome=\"error\"",
          "QRS change subscriptions registered, by outcome");
    cJSON_Delete(answer);
    cJSON_Delete(url);
    cJSON_free(body);
    return status;
}

/* DELETE one handle. OK also when QRS no longer has it (gone). */
static enum butler_status unsubscribe(struct keeper *k, const char *handle)
{
    char path[96];
    struct qrs_result result;
    snprintf(path, sizeof path, "notification?handle=%s", handle);
    enum butler_status status = qrs_delete(k->qrs, "notification", path, &result);
    const char *outcome = "deleted";
    long http = result.http_status;
    bool refused_for_us = http == 401 || http == 403 || http == 408 || http == 429;
    if (status == BUTLER_ERR_NOT_FOUND ||
        (status == BUTLER_ERR_REMOTE && http >= 400 && http < 500 && !refused_for_us)) {
        /* QRS answered but does not know the handle: it restarted since (or
         * an operator removed it). Nothing is left to delete. */
        outcome = "gone";
        LOG_INFO(MODULE, "subscription %s was no longer in QRS (HTTP %ld): QRS restarted?", handle,
                 result.http_status);
        status = BUTLER_OK;
    } else if (status != BUTLER_OK) {
        outcome = "error";
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "cannot delete subscription %s: %s", handle,
                        result.error[0] ? result.error : butler_status_str(status));
    }
    char labels[48];
    snprintf(labels, sizeof labels, "outcome=\"%s\"", outcome);
    count("butler_qrs_notification_unsubscribe_total", labels,
          "QRS change subscriptions deleted; gone = QRS no longer had it (it restarted)");
    return status;
}

/* Delete every handle but the first `keep`; failures stay for later. */
static void delete_old(struct keeper *k, size_t keep)
{
    for (size_t i = k->handle_count; i > keep; i--) {
        if (keeper_should_stop())
            return;
        if (unsubscribe(k, k->handles[i - 1]) == BUTLER_OK) {
            handles_remove(k, i - 1);
            handles_save(k);
        }
    }
}

/* ---------------------------------------------------------------- thread */

static bool wait_or_stop(struct keeper *k, uint64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(ms / 1000);
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&k->mutex);
    while (!k->stop)
        if (pthread_cond_timedwait(&k->wake, &k->mutex, &until) == ETIMEDOUT)
            break;
    bool stop = k->stop;
    pthread_mutex_unlock(&k->mutex);
    return stop;
}

/*
 * Register first, then delete the previous handles: there is never a moment
 * without a subscription, and an execution notified twice in between is one
 * event (ExecutionId de-duplication).
 */
static void *keeper_main(void *argument)
{
    struct keeper *k = argument;
    struct metric *subscribed = metrics_get("butler_qrs_notification_subscribed", "", METRIC_GAUGE,
                                            "1 while Butler holds a QRS change subscription");
    handles_load(k);
    for (;;) {
        char handle[GUID_TEXT];
        uint64_t pause_s = (uint64_t)k->config.qrs.notifications.check_interval_s;
        if (subscribe(k, handle) == BUTLER_OK) {
            /* A restarted QRS forgot the previous handle; either way the
             * previous one goes after the new one exists. */
            handles_push_front(k, handle);
            handles_save(k);
            if (!k->subscribed)
                LOG_INFO(MODULE, "QRS change subscription %s registered (ExecutionResult updates)",
                         handle);
            k->subscribed = true;
            metrics_set(subscribed, 1);
            delete_old(k, 1);
        } else {
            k->subscribed = false;
            metrics_set(subscribed, 0);
            delete_old(k, 0); /* nothing of ours is live; clean up what we can */
            if (pause_s > NOTIFICATIONS_RETRY_S)
                pause_s = NOTIFICATIONS_RETRY_S;
        }
        if (wait_or_stop(k, pause_s * 1000))
            break;
    }
    /* Clean shutdown: nothing of ours stays in QRS (what fails stays in the
     * handles file for the next start). */
    metrics_set(subscribed, 0);
    delete_old(k, 0);
    if (k->handle_count == 0)
        LOG_INFO(MODULE, "QRS change subscription removed");
    return NULL;
}

static enum butler_status build_urls(struct keeper *k)
{
    const struct butler_config *c = k->runtime->config;
    const char *base = c->qrs.notifications.callback_url;
    size_t base_length = strlen(base);
    while (base_length > 0 && base[base_length - 1] == '/')
        base_length--;
    int written = snprintf(k->callback, sizeof k->callback, "%.*s%s/%s", (int)base_length, base,
                           QRS_CALLBACK_PATH, c->qrs.notifications.secret);
    if (written < 0 || (size_t)written >= sizeof k->callback)
        return BUTLER_ERR_TOO_LARGE;
    const char *filter = c->qrs.notifications.filter;
    char *encoded = filter[0] ? curl_easy_escape(NULL, filter, 0) : NULL;
    if (filter[0] && encoded == NULL)
        return BUTLER_ERR_NOMEM;
    written = snprintf(k->path_and_query, sizeof k->path_and_query,
                       "notification?name=ExecutionResult&changetype=Update%s%s",
                       encoded ? "&filter=" : "", encoded ? encoded : "");
    curl_free(encoded);
    if (written < 0 || (size_t)written >= sizeof k->path_and_query)
        return BUTLER_ERR_TOO_LARGE;
    written =
        snprintf(k->handles_path, sizeof k->handles_path, "%s/%s", c->spool.dir, HANDLES_FILE);
    if (written < 0 || (size_t)written >= sizeof k->handles_path)
        return BUTLER_ERR_TOO_LARGE;
    return BUTLER_OK;
}

enum butler_status notifications_start(struct butler_runtime *runtime)
{
    const struct butler_config *c = runtime->config;
    enum butler_status status = BUTLER_OK;
    struct keeper *k = NULL;
    struct expiring_map *unused;
    if (!c->qrs.notifications.enable)
        goto out;
    /* The window must exist before the first callback, UDP or not. */
    status = execution_ids_open(&unused);
    if (status != BUTLER_OK)
        goto out;
    status = BUTLER_ERR_NOMEM;
    k = calloc(1, sizeof *k);
    if (k == NULL)
        goto out;
    k->runtime = runtime;
    k->config = *c; /* shallow: strings stay owned by the real config */
    if (k->config.qrs.timeout_ms > CALL_TIMEOUT_MS)
        k->config.qrs.timeout_ms = CALL_TIMEOUT_MS;
    if (k->config.qrs.connect_timeout_ms > CALL_TIMEOUT_MS)
        k->config.qrs.connect_timeout_ms = CALL_TIMEOUT_MS;
    if (k->config.retry.max_attempts > CALL_ATTEMPTS_MAX)
        k->config.retry.max_attempts = CALL_ATTEMPTS_MAX;
    pthread_mutex_init(&k->mutex, NULL);
    /* wait_or_stop() computes its deadline on the monotonic clock. */
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&k->wake, &attributes);
    pthread_condattr_destroy(&attributes);
    status = build_urls(k);
    if (status != BUTLER_OK) {
        LOG_ERROR(MODULE, "qrs.notifications.callback_url or filter is too long");
        goto out;
    }
    if (mkdir(c->spool.dir, 0700) != 0 && errno != EEXIST)
        LOG_WARN(MODULE, "cannot create %s: %s", c->spool.dir, strerror(errno));
    status = qrs_client_create(&k->config, keeper_should_stop, &k->qrs);
    if (status != BUTLER_OK)
        goto out;
    status = BUTLER_ERR_INTERNAL;
    if (pthread_create(&k->thread, NULL, keeper_main, k) != 0)
        goto out;
    k->thread_started = true;
    char shown[URL_TEXT];
    snprintf(shown, sizeof shown, "%s", c->qrs.notifications.callback_url);
    LOG_INFO(MODULE, "QRS change notifications on: callback %s%s/<secret>, check every %d s", shown,
             QRS_CALLBACK_PATH, c->qrs.notifications.check_interval_s);
    keeper = k;
    k = NULL;
    status = BUTLER_OK;
out:
    if (k) {
        qrs_client_destroy(k->qrs);
        pthread_mutex_destroy(&k->mutex);
        pthread_cond_destroy(&k->wake);
        free(k);
    }
    return status;
}

void notifications_stop(void)
{
    struct keeper *k = keeper;
    if (k == NULL)
        return;
    atomic_store(&stop_deadline_ms, clock_monotonic_ms() + STOP_BUDGET_MS);
    pthread_mutex_lock(&k->mutex);
    k->stop = true;
    pthread_cond_signal(&k->wake);
    pthread_mutex_unlock(&k->mutex);
    if (k->thread_started)
        pthread_join(k->thread, NULL);
    keeper = NULL;
    qrs_client_destroy(k->qrs);
    pthread_mutex_destroy(&k->mutex);
    pthread_cond_destroy(&k->wake);
    free(k);
}

/* ------------------------------------------------------------ the family */

bool notifications_outcome(int status, int task_type, enum sense_event_type *out)
{
    switch (status) {
    case 7: /* FinishedSuccess */
        *out = task_type == 3 ? SENSE_EVENT_DISTRIBUTE : SENSE_EVENT_TASK_SUCCESS;
        return true;
    case 8:  /* FinishedFail */
    case 11: /* Error */
        *out = task_type == 3 ? SENSE_EVENT_DISTRIBUTE : SENSE_EVENT_TASK_FAILED;
        return true;
    case 6: /* Aborted */
        *out = task_type == 3 ? SENSE_EVENT_DISTRIBUTE : SENSE_EVENT_TASK_ABORTED;
        return true;
    }
    return false; /* running, queued, retrying, skipped, never started */
}

static const char *string_of(const cJSON *object, const char *name)
{
    const cJSON *item = cJSON_GetObjectItem(object, name); /* case-insensitive on purpose */
    return cJSON_IsString(item) ? item->valuestring : "";
}

/* Copy `value` into the event's storage as `field` (truncated like a datagram field). */
static void event_set(struct sense_event *event, enum sense_field field, const char *value)
{
    size_t length = strnlen(value, SENSE_FIELD_MAX_BYTES);
    if (length == 0 || event->storage_used + length + 1 > sizeof event->storage)
        return; /* stays the shared empty string */
    char *at = event->storage + event->storage_used;
    memcpy(at, value, length);
    at[length] = '\0';
    event->fields[field] = at;
    event->storage_used += length + 1;
    event->sanitized |= value[length] != '\0';
}

/* The newest detail's message (ISO dates compare as strings). */
static const char *newest_detail(const cJSON *result)
{
    const char *message = NULL, *newest = "";
    const cJSON *detail;
    cJSON_ArrayForEach(detail, cJSON_GetObjectItem(result, "details"))
    {
        const char *date = string_of(detail, "detailCreatedDate");
        const cJSON *text = cJSON_GetObjectItem(detail, "message");
        if (cJSON_IsString(text) && strcmp(date, newest) >= 0) {
            newest = date;
            message = text->valuestring;
        }
    }
    return message;
}

/* GET <path>?filter=id eq <id>: the first entity, or NULL (reason counted). */
static cJSON *get_one(struct topic_worker *worker, const char *path, const char *id,
                      const char **why)
{
    char filter[80];
    cJSON *answer = NULL;
    struct qrs_result result;
    snprintf(filter, sizeof filter, "id eq %s", id);
    enum butler_status status = qrs_get(worker->qrs, path, filter, &answer, &result);
    if (status != BUTLER_OK) {
        *why = status == BUTLER_ERR_NOT_FOUND ? "not_found" : "qrs_error";
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "QRS %s %s: %s", path, id,
                        result.error[0] ? result.error : butler_status_str(status));
        return NULL;
    }
    cJSON *first = cJSON_IsArray(answer) ? cJSON_DetachItemFromArray(answer, 0) : NULL;
    cJSON_Delete(answer);
    if (first == NULL)
        *why = "not_found";
    return first;
}

/* One changed ExecutionResult; returns the outcome label for the metric. */
static const char *handle_result(struct topic_worker *worker, const char *result_id,
                                 uint64_t received_wall_ms)
{
    const char *why = "published";
    cJSON *task = NULL;
    struct sense_event *event = NULL;
    cJSON *result = get_one(worker, "executionresult/full", result_id, &why);
    if (result == NULL)
        goto out;
    const cJSON *status = cJSON_GetObjectItem(result, "status");
    const char *task_id = string_of(result, "taskID");
    const char *execution_id = string_of(result, "executionID");
    enum sense_event_type type;
    /* Most updates are a run moving between non-final states: decide on the
     * status before asking QRS for the task. */
    if (!cJSON_IsNumber(status) || !notifications_outcome(status->valueint, 0, &type)) {
        why = "not_final";
        goto out;
    }
    if (!sense_is_guid(task_id, strlen(task_id))) {
        why = "invalid";
        goto out;
    }
    task = get_one(worker, "task/full", task_id, &why);
    if (task == NULL)
        goto out;
    const cJSON *task_type = cJSON_GetObjectItem(task, "taskType");
    notifications_outcome(status->valueint, cJSON_IsNumber(task_type) ? task_type->valueint : 0,
                          &type);
    /* Claimed last: a failure above must not hide a later notice or datagram. */
    const struct butler_config *config = butler_runtime_current->config;
    uint64_t ttl_ms = (uint64_t)config->udp.dedup_ttl_s * 1000u;
    struct expiring_map *window = NULL;
    char key[EXECUTION_IDS_KEY_MAX];
    execution_ids_key(execution_id, sense_event_outcome(type), key, sizeof key);
    if (execution_id[0] && ttl_ms > 0 && execution_ids_open(&window) == BUTLER_OK) {
        /* The UDP event of this run may be in flight (its claim pending) and
         * still be lost: wait a bounded time for it to be published or given
         * back before taking this notification for a duplicate. */
        enum butler_status claimed = execution_ids_claim(key, ttl_ms, CLAIM_WAIT_MS);
        if (claimed != BUTLER_OK) {
            window = NULL; /* not ours to give back */
            why = claimed == BUTLER_ERR_SHUTDOWN ? "shutdown" : "duplicate";
            goto out;
        }
    }
    event = calloc(1, sizeof *event);
    if (event == NULL) {
        why = "nomem";
        if (window)
            expiring_map_remove(window, key);
        goto out;
    }
    event->type = type;
    event->storage_used = 1; /* storage[0] is the shared empty string */
    for (size_t i = 0; i < SENSE_FIELD_COUNT; i++)
        event->fields[i] = event->storage;
    const cJSON *app = cJSON_GetObjectItem(task, "app");
    const char *app_id = string_of(result, "appID");
    event_set(event, SENSE_FIELD_HOST, string_of(result, "executingNodeName"));
    event_set(event, SENSE_FIELD_TASK_NAME, string_of(task, "name"));
    event_set(event, SENSE_FIELD_APP_NAME, string_of(app, "name"));
    event_set(event, SENSE_FIELD_USER, string_of(result, "modifiedByUserName"));
    event_set(event, SENSE_FIELD_TASK_ID, task_id);
    event_set(event, SENSE_FIELD_APP_ID, app_id[0] ? app_id : string_of(app, "id"));
    event_set(event, SENSE_FIELD_LOG_TIMESTAMP, string_of(result, "stopTime"));
    event_set(event, SENSE_FIELD_LEVEL, type == SENSE_EVENT_TASK_FAILED ? "ERROR" : "INFO");
    event_set(event, SENSE_FIELD_EXECUTION_ID, execution_id);
    const char *message = newest_detail(result);
    event_set(event, SENSE_FIELD_MESSAGE, message ? message : "");
    if (events_deliver_qrs(event, received_wall_ms) != BUTLER_OK) {
        why = "nomem";
        if (window)
            expiring_map_remove(window, key);
    }
out:
    free(event);
    cJSON_Delete(task);
    cJSON_Delete(result);
    return why;
}

static void count_change(const char *outcome)
{
    char labels[64];
    snprintf(labels, sizeof labels, "outcome=\"%s\"", outcome);
    count("butler_qrs_notification_changes_total", labels,
          "ExecutionResult changes notified by QRS, by what Butler did with them");
}

void notifications_run(struct topic_worker *worker, struct topic_message *message)
{
    cJSON *body = json_parse_exact((const char *)message->payload, message->payload_length, NULL);
    if (body == NULL || worker->qrs == NULL) {
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "%s",
                        body ? "QRS change notification ignored: qrs.url is empty"
                             : "QRS change notification is not JSON");
        topics_count(FAMILY, "invalid");
        goto out;
    }
    /* Public consumers read a JSON array of change objects; one object is
     * taken as a one-element array. */
    const cJSON *changes = body;
    cJSON *single = NULL;
    if (cJSON_IsObject(body)) {
        single = cJSON_CreateArray();
        if (single)
            cJSON_AddItemReferenceToArray(single, body);
        changes = single;
    }
    size_t seen = 0;
    const cJSON *change;
    cJSON_ArrayForEach(change, changes)
    {
        if (++seen > NOTIFICATIONS_CHANGES_MAX) {
            LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "more than %d changes in one callback",
                            NOTIFICATIONS_CHANGES_MAX);
            break;
        }
        const char *type = string_of(change, "objectType");
        const char *id = string_of(change, "objectID");
        if (strcasecmp(type, "ExecutionResult") != 0 || !sense_is_guid(id, strlen(id))) {
            count_change("ignored");
            continue;
        }
        count_change(handle_result(worker, id, message->received_wall_ms));
    }
    cJSON_Delete(single);
    topics_count(FAMILY, "ok");
out:
    cJSON_Delete(body); /* the message itself is freed by topics.c */
}
