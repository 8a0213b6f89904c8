/*
 * Task start's private parts, shared by its four files (split by job):
 *   task_start.c         state, the worker entry points and batching: taking the starts that
 *                        wait behind one, sharing QRS calls (POST /qrs/task/start/many);
 *   task_start_select.c  selection: resolving selectors through QRS, the allow-list,
 *                        key-value items;
 *   task_start_replay.c  starting one task with its attempt/started notes, and what a replay
 *                        after a crash decides from them;
 *   task_start_answer.c  answers: building, publishing and remembering them (the requestId
 *                        window).
 * Nothing here is for other modules: they use topics/task_start.h. Every
 * function runs on a worker thread unless its comment says otherwise.
 */
#ifndef BUTLER_TASK_START_INTERNAL_H
#define BUTLER_TASK_START_INTERNAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "bridge/clients/qrs.h"
#include "bridge/store/expiring_map.h"
#include "topics/request_window.h"
#include "topics/task_start.h"

#define MODULE "task-start"

enum {
    NAME_CACHE_MAX = 4096,
    FILTER_MAX = 4096,
    TASK_CHOSEN_MAX = TASK_SELECTORS_MAX * 4, /* tasks one request may start */
};

struct task_start_state {
    const struct butler_config *config;
    struct request_window *requests; /* requestIds seen, and their answers */
    struct expiring_map *task_names; /* taskId -> name */
};

/* ---- the answer being built for one request ---- */

struct task_answer {
    cJSON *started, *invalid, *denied, *failed, *skipped;
    bool key_values_only;   /* the request names no task, only key-value items */
    bool key_values_stored; /* ... and they were stored */
    char error[512];
    int attempts;
    /* Butler began stopping while a start waited for its attempt note: the
     * request stays in the spool unanswered and the next start replays it. */
    bool keep;
    bool follow; /* "follow": true: synchronous starts, each run followed (task_follow.h) */
};

/* A task chosen for starting, in request order, unique by id. */
struct chosen_task {
    char id[37];
    char *name;
    const struct task_selector *selector;
    cJSON *task;           /* task/full object or NULL; borrowed from `lookups` */
    char execution_id[37]; /* follow: what the synchronous start answered ("" = none) */
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

/* How one task's start came about, for the answer entry. */
enum start_outcome_source {
    START_CALLED,          /* this request's own QRS start call */
    START_NOTED_BEFORE,    /* replay: this request's start was noted before the crash */
    START_REPLAY_VERIFIED, /* replay: attempt noted, QRS says the task started since */
    START_NOT_RECORDED,    /* the attempt note can never be recorded: not started */
};

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

/* ---- task_start_answer.c ---- */

/* Answer entries; the returned cJSON is owned by the caller (or NULL). */
cJSON *task_start_selector_json(const struct task_selector *selector);
cJSON *task_start_task_json(const char *task_id, const char *task_name,
                            const struct task_selector *selector);
/* Keeps the first error only. */
void task_start_note_error(struct task_answer *answer, const char *format, const char *detail);
void task_start_record_outcome(struct task_start_state *state, struct task_answer *answer,
                               const char *request_id, const struct chosen_task *task,
                               enum butler_status status, enum start_outcome_source source,
                               const struct qrs_result *result);
/* The three below take ownership of `message`. */
void task_start_answer_unreadable(const struct butler_config *config, struct topic_message *message,
                                  const struct task_request *request, struct task_answer *answer);
bool task_start_answer_repeat(const struct butler_config *config, struct task_start_state *state,
                              struct topic_message *message, const struct task_request *request);
void task_start_finish_request(const struct butler_config *config, struct task_start_state *state,
                               struct topic_message *message, const struct task_request *request,
                               struct task_answer *answer);

/* ---- task_start_select.c ---- */

bool task_start_allow_needs_metadata(const struct butler_config *config);
bool task_start_resolves_from_cache(struct task_start_state *state,
                                    const struct request_work *work);
void task_start_choose_work(struct topic_worker *worker, struct task_start_state *state,
                            struct request_work *work);

/* ---- task_start_replay.c ---- */

/* Note the attempts of several starts before one shared call (and flush them
 * with spool.fsync), waiting while the spool refuses. starts[i] whose note
 * cannot be made is filed in its request's answer (or the request marked
 * keep); returns how many remain, moved to the front. */
struct batched_start {
    struct request_work *work;
    struct chosen_task *task;
};
size_t task_start_note_shared(struct task_start_state *state, struct batched_start *starts,
                              size_t count);

void task_start_each(struct topic_worker *worker, struct task_start_state *state,
                     struct topic_message *message, const char *request_id,
                     struct chosen_task **startable, size_t to_start, struct task_answer *answer);

/* ---- task_start.c ---- */

void task_start_keep_for_next_start(struct request_work *work);

#endif
