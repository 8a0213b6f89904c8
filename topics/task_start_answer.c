/*
 * Task start: answers. Building the answer of one request, publishing it on
 * <root>/task/result (and the Response Topic, and the dead-letter topic for a
 * failure), and the requestId window that repeats an earlier answer.
 */
#include "topics/task_start_internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge/core/clock.h"
#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/core/runtime.h"
#include "bridge/store/spool.h"
#include "topics/publish.h"
#include "topics/request_window.h"

void task_start_remember_answer(struct task_start_state *state, const char *answer, size_t length,
                                uint64_t answered_wall_ms, uint64_t spool_id)
{
    request_window_recovered_answer(state->requests, answer, length, answered_wall_ms, spool_id);
}

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
cJSON *task_start_selector_json(const struct task_selector *selector)
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
cJSON *task_start_task_json(const char *task_id, const char *task_name,
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

void task_start_note_error(struct task_answer *answer, const char *format, const char *detail)
{
    if (answer->error[0] == '\0')
        snprintf(answer->error, sizeof answer->error, format, detail);
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

/* File one task's start outcome under started, invalid or failed. Worker thread. */
void task_start_record_outcome(struct task_start_state *state, struct task_answer *answer,
                               const char *request_id, const struct chosen_task *task,
                               enum butler_status status, enum start_outcome_source source,
                               const struct qrs_result *result)
{
    if (result->attempts > answer->attempts)
        answer->attempts = result->attempts;
    cJSON *entry = task_start_task_json(task->id, task->name, task->selector);
    if (status == BUTLER_OK && answer->follow &&
        strcmp(task->execution_id, "00000000-0000-0000-0000-000000000000") == 0) {
        /* Sense took the call but did not start the task (contract 9.1); a
         * replay reads the same all-zero id from its "started" note. */
        cJSON_AddItemToArray(answer->failed, entry);
        task_start_note_error(answer,
                              "Sense did not start task %s (all-zero execution id: "
                              "task disabled, no scheduler or app unavailable)",
                              task->id);
        return;
    }
    if (status == BUTLER_OK && task->execution_id[0] != '\0')
        cJSON_AddStringToObject(entry, "executionId", task->execution_id);
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
    } else if (source == START_NOT_RECORDED) {
        cJSON_AddItemToArray(answer->failed, entry);
        task_start_note_error(answer, "%s; not started", topic_message_note_refusal(status));
    } else if (status == BUTLER_ERR_NOT_FOUND) {
        cJSON_AddItemToArray(answer->invalid, entry);
        expiring_map_remove(state->task_names, task->id);
        task_start_note_error(answer, "QRS does not know task %s", task->id);
    } else {
        cJSON_AddItemToArray(answer->failed, entry);
        /* The transport error (hosts, ports) went to the log; the answer says
         * only what happened. */
        char reason[128] = "QRS is not configured (qrs.url is empty)"; /* no call was made */
        if (result->error[0] != '\0' || result->http_status != 0)
            qrs_plain_reason(status, result, reason, sizeof reason);
        task_start_note_error(answer, "%s", reason);
    }
}

/* A payload that could not be read: answered "invalid" at once. Takes `message`. */
void task_start_answer_unreadable(const struct butler_config *config, struct topic_message *message,
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
bool task_start_answer_repeat(const struct butler_config *config, struct task_start_state *state,
                              struct topic_message *message, const struct task_request *request)
{
    (void)config;
    char *earlier = NULL;
    if (!request_window_repeat(state->requests, request->request_id, message, &earlier))
        return false;
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
void task_start_finish_request(const struct butler_config *config, struct task_start_state *state,
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
        if (request_window_answered(state->requests, request->request_id, message->spool_id, text))
            metrics_count("butler_task_start_dedup_evicted_total", "",
                          "Remembered requestIds forgotten before task_start.dedup_ttl_s "
                          "because task_start.dedup_max_requests was reached");
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
