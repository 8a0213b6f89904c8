/*
 * Task start: <root>/task/start, <root>/task/start/<taskId> and (legacy)
 * qliksense/start_task. A message names Qlik Sense tasks by id, name, tag or
 * custom property; Butler resolves them through QRS, applies the
 * task_start.allow list, stores any key-values, starts the tasks and answers
 * exactly once on <root>/task/result (and the MQTT v5 Response Topic).
 *
 * The request schema and its parser live in bridge/model/task_request.h,
 * shared with the HTTP ingress, so they can be unit-tested and fuzzed
 * without a broker or QRS.
 */
#ifndef BUTLER_TASK_START_H
#define BUTLER_TASK_START_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/status.h"
#include "bridge/model/task_request.h"
#include "topics/message.h"

_Static_assert((long)TASK_MESSAGE_MAX == (long)TOPIC_PAYLOAD_MAX,
               "a task request must fit where every command payload fits");

struct task_start_state;

enum butler_status task_start_state_create(const struct butler_config *config,
                                           struct task_start_state **out);
void task_start_state_destroy(struct task_start_state *state);

/* Recovery: an answer from the spool (the DONE record `spool_id`) re-enters
 * the requestId window, so a request redelivered after a restart is not
 * started again. Start-up thread. */
void task_start_remember_answer(struct task_start_state *state, const char *answer, size_t length,
                                uint64_t answered_wall_ms, uint64_t spool_id);

/* Recovery: a task start found unfinished in the spool (message->replay,
 * message->spool_id set) holds its requestId from now on, so that a copy with
 * the same requestId (a client's retry, a resend) that reaches a worker first
 * waits for the replay's answer instead of starting the tasks again. Start-up
 * thread, before any worker runs a task start. Borrows `message`. */
void task_start_recovered(struct task_start_state *state, const struct topic_message *message);

/* Worker entry point: owns and frees `message`. */
void task_start_run(struct topic_worker *worker, struct topic_message *message);
/* Same for qliksense/start_task (bare GUID payloads only). */
void task_start_run_legacy(struct topic_worker *worker, struct topic_message *message);

#endif
