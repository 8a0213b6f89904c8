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
 *
 * This file holds the state, the entry points and batching; see
 * topics/task_start_internal.h for the other three.
 */
#include "topics/task_start.h"
#include "topics/handoff.h"

#include <cjson/cJSON.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/core/runtime.h"
#include "bridge/store/expiring_map.h"
#include "bridge/clients/qrs.h"
#include "topics/task_start_internal.h"

enum butler_status task_start_state_create(const struct butler_config *config,
                                           struct task_start_state **out)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    struct task_start_state *state = calloc(1, sizeof *state);
    if (state == NULL)
        goto out;
    state->config = config;
    status =
        request_window_create("task_start_requests", (size_t)config->task_start.dedup_max_requests,
                              config->task_start.dedup_ttl_s, &state->requests);
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
    request_window_destroy(state->requests);
    expiring_map_destroy(state->task_names);
    free(state);
}

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
void task_start_keep_for_next_start(struct request_work *work)
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
        task_start_answer_unreadable(state->config, message, &work->request, &work->answer);
        work->message = NULL;
        return false;
    }
    work->request_parsed = true;
    work->answer.follow = work->request.follow;
    return true;
}

/* A requestId already seen is answered with the earlier answer here (and the
 * message taken); true when the request is new and still held. */
static bool first_time(struct task_start_state *state, struct request_work *work)
{
    if (!task_start_answer_repeat(state->config, state, work->message, &work->request))
        return true;
    work->message = NULL;
    return false;
}

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
    count = task_start_note_shared(state, starts, count);
    if (count == 0)
        return;
    const char **ids = calloc(count, sizeof *ids);
    if (ids == NULL) {
        for (size_t i = 0; i < count; i++)
            task_start_each(worker, state, starts[i].work->message,
                            starts[i].work->request.request_id, &starts[i].task, 1,
                            &starts[i].work->answer);
        return;
    }
    char note[64];
    for (size_t i = 0; i < count; i++)
        ids[i] = starts[i].task->id;
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
            task_start_each(worker, state, work->message, work->request.request_id, &starts[i].task,
                            1, &work->answer);
            continue;
        }
        if (status == BUTLER_OK) {
            /* A "started" note lost (full disk) only makes a replay ask QRS. */
            snprintf(note, sizeof note, "started %s", ids[i]);
            topic_message_note(work->message, note);
        }
        task_start_record_outcome(state, &work->answer, work->request.request_id, starts[i].task,
                                  status, START_CALLED, &result);
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
        if (works[i].message && !works[i].message->replay && !works[i].answer.follow)
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
        /* A followed start needs its own synchronous call (the shared call
         * answers no execution ids). */
        if (starts == NULL || work->message->replay || work->answer.follow) {
            task_start_each(worker, state, work->message, work->request.request_id, work->startable,
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
        task_start_each(worker, state, starts[0].work->message, starts[0].work->request.request_id,
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
/* Requests that chose at least this many tasks together give their memory
 * back to the system once answered (malloc_trim). */
enum { TRIM_AFTER_CHOSEN = 100 };

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
    size_t count = 0, chosen = 0;
    if (!work_init(&works[count], first)) {
        task_start_keep_for_next_start(&works[count]);
        work_clear(&works[count]);
        for (size_t i = 0; i < taken; i++) { /* handled by the next start, like `first` */
            topic_message_keep(waiting[i]);
            topic_message_free(waiting[i]);
        }
        goto out;
    }
    if (parse_work(state, &works[count], legacy) && first_time(state, &works[count]))
        task_start_choose_work(worker, state, &works[count]);
    count++;
    for (size_t i = 0; i < taken; i++) {
        struct request_work *work = &works[count++];
        if (!work_init(work, waiting[i])) {
            task_start_keep_for_next_start(work);
            continue;
        }
        if (!parse_work(state, work, legacy))
            continue;
        /* Before the requestId is remembered: the next worker sees it as new.
         * A replay is never sent back behind new work: it may have started its
         * tasks before the restart, and a copy of it that ran first would
         * start them again. */
        if (!work->message->replay && !task_start_resolves_from_cache(state, work) &&
            topics_requeue(run, work->message) == BUTLER_OK) {
            work->message = NULL; /* another worker has it now */
            continue;
        }
        if (first_time(state, work))
            task_start_choose_work(worker, state, work);
    }
    start_works(worker, state, works, count);
    for (size_t i = 0; i < count; i++) {
        chosen += works[i].chosen.count;
        if (works[i].message && works[i].answer.keep) {
            LOG_WARN(MODULE,
                     "request %s kept for the next start: Butler is stopping and its start "
                     "attempt could not be recorded",
                     works[i].request.request_id);
            topic_message_keep(works[i].message);
        } else if (works[i].message) {
            task_start_finish_request(runtime->config, state, works[i].message, &works[i].request,
                                      &works[i].answer);
            works[i].message = NULL;
        }
        work_clear(&works[i]);
    }
out:
    if (works != &single)
        free(works);
    free(waiting);
    /* A request that chose many tasks (a tag on 1,000) parsed QRS answers of
     * megabytes into small cJSON nodes; once freed, glibc keeps nearly all of
     * it resident in the arena (bench/follow_bench.py: 8.5 MB RssAnon left by
     * 1,000 starts, 1.0 MB after a trim). Rare and bounded by such requests. */
    if (chosen >= TRIM_AFTER_CHOSEN)
        malloc_trim(0);
}

void task_start_recovered(struct task_start_state *state, const struct topic_message *message)
{
    struct task_request request;
    char error[256];
    if (task_request_parse(topic_task_id(message->topic), false, message->payload,
                           message->payload_length, &request, error, sizeof error) != BUTLER_OK)
        return; /* answered "invalid" when it runs: nothing to hold */
    /* The first spooled copy holds the requestId, so no other copy runs
     * before the replay. */
    if (!request.request_id_generated &&
        request_window_hold_replay(state->requests, request.request_id, message->spool_id))
        metrics_count("butler_task_start_replays_held_total", "",
                      "requestIds of replayed task starts held at recovery, so that no "
                      "other copy runs before the replay");
    task_request_clear(&request);
}

void task_start_run(struct topic_worker *worker, struct topic_message *message)
{
    run_requests(worker, message, false, task_start_run);
}

void task_start_run_legacy(struct topic_worker *worker, struct topic_message *message)
{
    run_requests(worker, message, true, task_start_run_legacy);
}
