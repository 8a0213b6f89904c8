/*
 * Task start: starting one task and replaying after a crash. Each start is
 * noted ("attempt <taskId>") before its QRS call and noted again ("started
 * <taskId>", with " <executionId>" for a followed start) after QRS accepted
 * it; a replayed request decides from its own notes whether to start again
 * (contract section 7; followed starts: docs/guarantees.md "Followed runs").
 */
#include "topics/task_start_internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/model/task_request.h"
#include "topics/task_follow.h"

/* ---- replay after a crash ---- */

/* What the spool's notes say this request did for one task before a crash. */
enum replay_noted {
    REPLAY_NOTHING_NOTED, /* never tried: start it like any request */
    REPLAY_ATTEMPT_NOTED, /* a QRS start call may or may not have reached QRS */
    REPLAY_STARTED_NOTED, /* QRS accepted the start */
};

/* Notes are "attempt <taskId>" (written just before the QRS start call) and
 * "started <taskId>" (just after QRS accepted it); a followed start's is
 * "started <taskId> <executionId>", so a replay can answer with the id after
 * the follow itself ended (its record done). That id goes into
 * execution_id[37] ("" when the note has none). */
static enum replay_noted replay_noted_for(const struct topic_message *message, const char *task_id,
                                          char execution_id[37])
{
    enum replay_noted noted = REPLAY_NOTHING_NOTED;
    size_t id_length = strlen(task_id);
    execution_id[0] = '\0';
    for (size_t i = 0; i < message->note_count; i++) {
        const char *note = message->notes[i];
        if (strncmp(note, "started ", 8) == 0 && strncasecmp(note + 8, task_id, id_length) == 0 &&
            (note[8 + id_length] == '\0' || note[8 + id_length] == ' ')) {
            const char *noted_id = note[8 + id_length] ? note + 9 + id_length : "";
            if (task_is_guid(noted_id, strlen(noted_id)))
                snprintf(execution_id, 37, "%s", noted_id);
            return REPLAY_STARTED_NOTED;
        }
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
    bool started = false;
    return worker->qrs != NULL &&
           qrs_task_started_since(worker->qrs, task_id, since_wall_ms, &started) == BUTLER_OK &&
           started;
}

static bool zero_id(const char *id)
{
    return strcmp(id, "00000000-0000-0000-0000-000000000000") == 0;
}

/*
 * Record the follow of the run task->execution_id (spool, then the follower's
 * table), using one task_start.follow.max reservation whatever happens: the
 * caller must not give it back. A follow that cannot be made (out of memory)
 * is logged: the run then gets no finished message. Worker thread.
 */
static void follow_run(const struct topic_message *message, const char *request_id,
                       const struct chosen_task *task)
{
    struct task_follow_start start = {
        .request_id = request_id,
        .task_id = task->id,
        .task_name = task->name,
        .execution_id = task->execution_id,
        .response_topic = message->response_topic,
        .correlation = message->correlation_data,
        .correlation_length = message->correlation_length,
    };
    enum butler_status status = task_follow_add(&start);
    if (status != BUTLER_OK)
        LOG_ERROR(MODULE, "execution %s of task %s started but cannot be followed (%s)",
                  task->execution_id, task->id, butler_status_str(status));
}

/*
 * A followed start's window between QRS starting the run and the follow
 * record (written right after the synchronous start answered): killed there,
 * the replay has only the attempt note and no execution id. QRS is asked for
 * a run of the task created since the request arrived; its execution id is
 * taken and followed from here. False when QRS has no such run, or cannot
 * tell (then the task is started again: a rare double start beats a run
 * nobody hears the end of).
 */
static bool found_unfollowed_run(struct topic_worker *worker, const struct topic_message *message,
                                 struct chosen_task *task)
{
    if (worker->qrs == NULL ||
        qrs_task_execution_since(worker->qrs, task->id, message->received_wall_ms,
                                 task->execution_id) != BUTLER_OK) {
        task->execution_id[0] = '\0';
        return false;
    }
    metrics_count("butler_task_follow_replay_found_total", "",
                  "Followed starts replayed after a crash whose run was found in QRS by task "
                  "and time, because the crash came before the follow was recorded");
    return true;
}

/*
 * Start one task for `message`, noting the attempt before the QRS call and
 * the start after it, so that a replay after a crash can tell (contract
 * section 7). A replayed request uses only its own notes: what other requests
 * did to the same task never counts. Worker thread.
 */
static enum butler_status start_task_once(struct topic_worker *worker,
                                          struct topic_message *message, const char *request_id,
                                          struct chosen_task *task, bool follow,
                                          struct qrs_result *result,
                                          enum start_outcome_source *source, bool *follow_called)
{
    char note[96];
    const char *task_id = task->id;
    *source = START_CALLED;
    *follow_called = false;
    if (message->replay) {
        enum replay_noted noted = replay_noted_for(message, task_id, task->execution_id);
        /* A follow recorded before the crash: the run it follows is this
         * request's start (the follow is written before the "started" note). */
        if (follow && noted != REPLAY_NOTHING_NOTED &&
            task_follow_find(request_id, task_id, task->execution_id)) {
            *source = START_NOTED_BEFORE;
            return BUTLER_OK;
        }
        if (noted == REPLAY_STARTED_NOTED) {
            *source = START_NOTED_BEFORE;
            return BUTLER_OK;
        }
        if (noted == REPLAY_ATTEMPT_NOTED && follow) {
            if (found_unfollowed_run(worker, message, task)) {
                follow_run(message, request_id, task);
                *follow_called = true;
                *source = START_REPLAY_VERIFIED;
                return BUTLER_OK;
            }
        } else if (noted == REPLAY_ATTEMPT_NOTED &&
                   started_since(worker, task_id, message->received_wall_ms)) {
            *source = START_REPLAY_VERIFIED;
            return BUTLER_OK;
        }
    }
    if (worker->qrs == NULL)
        return BUTLER_ERR_REMOTE;
    /* No start before its attempt note is recorded (and flushed with
     * spool.fsync): while the spool refuses it, the start waits. */
    snprintf(note, sizeof note, "attempt %s", task_id);
    enum butler_status status;
    uint64_t delay_ms = 0;
    do { /* a failed flush may have lost the note: write it again */
        status = topic_message_note_attempt(message, note);
        if (status == BUTLER_OK)
            status = topic_message_flush_attempts(&delay_ms);
    } while (status == BUTLER_ERR_IO);
    if (status != BUTLER_OK) {
        if (status != BUTLER_ERR_SHUTDOWN)
            *source = START_NOT_RECORDED;
        return status;
    }
    if (!follow) {
        status = qrs_task_start(worker->qrs, task_id, result);
    } else {
        /* Retried like qrs_task_start: a resend first looks for the run an
         * unanswered attempt created, and takes its execution id. */
        status = qrs_task_start_synchronous(worker->qrs, task_id, task->execution_id, result);
        if (status == BUTLER_OK && !zero_id(task->execution_id)) {
            /* Recorded before the "started" note and before the answer. */
            follow_run(message, request_id, task);
            *follow_called = true;
        }
    }
    if (status == BUTLER_OK) {
        if (follow)
            snprintf(note, sizeof note, "started %s %s", task_id, task->execution_id);
        else
            snprintf(note, sizeof note, "started %s", task_id);
        topic_message_note(message, note);
    }
    return status;
}

/* Start each startable task of one request, one QRS call each. Worker thread. */
void task_start_each(struct topic_worker *worker, struct task_start_state *state,
                     struct topic_message *message, const char *request_id,
                     struct chosen_task **startable, size_t to_start, struct task_answer *answer)
{
    /* Room for every run this request may follow, or nothing starts
     * (task_start.follow.max). Each start uses one reservation; what is left
     * is given back. */
    if (answer->follow && !message->replay && to_start > 0 && !task_follow_reserve(to_start)) {
        for (size_t i = 0; i < to_start; i++)
            cJSON_AddItemToArray(
                answer->failed,
                task_start_task_json(startable[i]->id, startable[i]->name, startable[i]->selector));
        task_start_note_error(answer, "%s",
                              "task_start.follow.max runs are followed already; nothing started");
        return;
    }
    size_t reserved = answer->follow && !message->replay ? to_start : 0;
    for (size_t i = 0; i < to_start && !answer->keep; i++) {
        struct qrs_result result = {0};
        enum start_outcome_source source;
        bool follow_called;
        if (answer->follow && message->replay && !task_follow_reserve(1)) {
            cJSON_AddItemToArray(
                answer->failed,
                task_start_task_json(startable[i]->id, startable[i]->name, startable[i]->selector));
            task_start_note_error(answer, "%s",
                                  "task_start.follow.max runs are followed already; not started");
            continue;
        }
        if (answer->follow && message->replay)
            reserved++;
        enum butler_status status =
            start_task_once(worker, message, request_id, startable[i], answer->follow, &result,
                            &source, &follow_called);
        if (answer->follow) { /* task_follow_add used the reservation when called */
            if (!follow_called)
                task_follow_release(1);
            reserved--;
        }
        if (status == BUTLER_ERR_SHUTDOWN && source == START_CALLED) {
            answer->keep = true; /* stopping before the attempt was recorded */
            break;
        }
        task_start_record_outcome(state, answer, request_id, startable[i], status, source, &result);
    }
    if (reserved > 0)
        task_follow_release(reserved);
}

size_t task_start_note_shared(struct task_start_state *state, struct batched_start *starts,
                              size_t count)
{
    char note[64];
    uint64_t delay_ms = 0;
    for (;;) {
        size_t kept = 0;
        for (size_t i = 0; i < count; i++) {
            struct request_work *work = starts[i].work;
            enum butler_status status = BUTLER_ERR_SHUTDOWN;
            if (!work->answer.keep) {
                snprintf(note, sizeof note, "attempt %s", starts[i].task->id);
                status = topic_message_note_attempt(work->message, note);
            }
            if (status == BUTLER_OK) {
                starts[kept++] = starts[i];
            } else if (status == BUTLER_ERR_SHUTDOWN) {
                work->answer.keep = true;
            } else {
                struct qrs_result none = {0};
                task_start_record_outcome(state, &work->answer, work->request.request_id,
                                          starts[i].task, status, START_NOT_RECORDED, &none);
            }
        }
        /* One flush for the whole shared call; after a failed one every
         * note is written again (the failed flush may have lost them). */
        enum butler_status status = kept > 0 ? topic_message_flush_attempts(&delay_ms) : BUTLER_OK;
        if (status == BUTLER_ERR_SHUTDOWN)
            for (size_t i = 0; i < kept; i++)
                starts[i].work->answer.keep = true;
        count = kept;
        if (status != BUTLER_ERR_IO)
            break;
    }
    /* A request marked keep part-way through keeps all its starts back. */
    size_t left = 0;
    for (size_t i = 0; i < count; i++)
        if (!starts[i].work->answer.keep)
            starts[left++] = starts[i];
    return left;
}
