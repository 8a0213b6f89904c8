/*
 * Following started task runs to their end (contract section 9.1).
 *
 * A task start with "follow": true starts each task with the synchronous
 * start and hands the execution id here. One follower thread (not one per
 * run) polls each followed run's execution session at most
 * task_start.follow.poll_s apart, spread over the interval, runs due together
 * with one list call (topics/task_follow_poll.h); a session gone means the run
 * ended and GET /qrs/executionresult/full?filter=ExecutionId eq {id} gives the
 * outcome (the newest result when the task retried). The outcome
 * is published at QoS 1 on <root>/task/finished/<taskId> (and the request's
 * v5 Response Topic) before the follow is marked done in the spool, so a
 * follow survives a crash: recovery hands it back (task_follow_recovered)
 * and the follower resumes it.
 */
#ifndef BUTLER_TASK_FOLLOW_H
#define BUTLER_TASK_FOLLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/status.h"

struct butler_runtime;

/* Spool family of follow records. */
#define TASK_FOLLOW_SPOOL_FAMILY "task_follow"

/* Create the table (before the spool is read). Start-up thread. */
enum butler_status task_follow_setup(struct butler_runtime *runtime);
/* Start the follower thread (after recovery, with the link started). */
enum butler_status task_follow_start(void);
/* Stop the thread (Butler is stopping; unfinished follows stay in the spool). */
void task_follow_stop(void);
/* Free the table (after task_follow_stop). */
void task_follow_teardown(void);

/* What a task start hands over for one started execution. Strings are copied. */
struct task_follow_start {
    const char *request_id;
    const char *task_id;
    const char *task_name;
    const char *execution_id;
    const char *response_topic;       /* NULL = none */
    const unsigned char *correlation; /* v5 Correlation Data of the request */
    size_t correlation_length;
};

/* Reserve room for `count` follows (task_start.follow.max); false when the
 * table is too full. A reservation is used by task_follow_add or given back
 * with task_follow_release. Any thread. */
bool task_follow_reserve(size_t count);
void task_follow_release(size_t count);

/*
 * Record the follow in the spool and add it to the table (uses one
 * reservation). BUTLER_OK once followed: a record the spool refuses (full
 * disk, a write error) still leaves the run followed from memory, so its end
 * is published unless Butler restarts first (logged and counted). Otherwise
 * (out of memory) nothing is followed and the reservation is given back.
 * Worker thread.
 */
enum butler_status task_follow_add(const struct task_follow_start *start);

/* The execution id already followed for request_id's start of task_id (a
 * recovered follow; for a replayed task start), into out[37]. Any thread. */
bool task_follow_find(const char *request_id, const char *task_id, char out[37]);

/* Recovery: spool record `spool_id` (family TASK_FOLLOW_SPOOL_FAMILY) with its
 * payload, response topic and correlation data. Start-up thread. */
enum butler_status task_follow_recovered(uint64_t spool_id, const void *payload, size_t length,
                                         const char *response_topic,
                                         const unsigned char *correlation,
                                         size_t correlation_length);

/* A Sense task event carried this execution id: its follow is polled now
 * rather than at its next turn. Any thread; cheap when nothing is followed. */
void task_follow_poke(const char *execution_id);

/* Executions followed now (for tests and /metrics). */
size_t task_follow_count(void);

#endif
