/*
 * The follower: one thread that watches every followed task run (contract
 * section 9.1; see topics/task_follow.h for the contract of each call).
 *
 * The table holds at most task_start.follow.max follows (reserved before a
 * task start with follow starts anything), each a fixed-size record in a slot
 * allocated once, with its strings in one block of exactly their size. The
 * schedule is a binary heap of slots by due time (bridge/store/due_heap.h):
 * the thread sleeps on a condition variable until the earliest due time or a
 * poke (a new follow that is due first, a task event), then takes the follows
 * due within the next twentieth of poll_s (at most one second), up to
 * SESSION_LIST_MAX, and asks QRS about all of them with one filtered list
 * call (topics/task_follow_poll.c). At 1,000 followed runs one call per run
 * per poll_s cost 2.7 % of a core, nearly all of it the HTTPS call itself;
 * one call per ~25 runs costs 0.6 % (bench/follow_bench.py, BENCHMARKS.md).
 * A poll is never late for that, only up to that much early, so each run is
 * still polled at most poll_s apart. The first poll of a new follow lands at
 * a random point of the first interval and later ones keep that phase, so
 * 1,000 runs started together reach QRS spread over the interval, one call
 * at a time on the follower's one connection. QRS failures (5xx, 429,
 * garbage, no answer) are retried with a doubling backoff capped at poll_s;
 * the follow is kept.
 */
#include "topics/task_follow.h"
#include "topics/task_follow_poll.h"

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
#include "bridge/store/due_heap.h"
#include "bridge/store/spool.h"
#include "topics/message.h"
#include "topics/publish.h"

#define MODULE "task-follow"

static struct {
    pthread_mutex_t mutex;
    pthread_cond_t wake;           /* CLOCK_MONOTONIC */
    struct follow *slots;          /* [max] */
    uint64_t *execution_keys;      /* [max]: execution_key() of each used slot, for pokes */
    uint32_t *free_slots;          /* [max]: stack of unused slot numbers */
    size_t free_count, slots_seen; /* slots_seen: slots ever used (scans stop there) */
    struct due_heap *schedule;     /* slots not busy, by due time */
    size_t max, count, reserved;
    const struct butler_config *config;
    pthread_t thread;
    bool started, stop;
    uint64_t seed;
} table = {.mutex = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static struct metric *followed_gauge;

/* Free what a follow owns (its string block); the record itself is a slot or
 * on the caller's stack. */
static void follow_clear(struct follow *follow)
{
    free(follow->text);
    follow->text = NULL;
}

/*
 * Copy the variable-length strings into one block of exactly their size and
 * point the follow's fields into it. BUTLER_ERR_NOMEM or BUTLER_ERR_TOO_LARGE
 * (correlation data past 4 GiB); on error nothing is allocated. Any thread.
 */
static enum butler_status follow_set_text(struct follow *follow, const char *request_id,
                                          const char *task_name, const char *response_topic,
                                          const unsigned char *correlation,
                                          size_t correlation_length)
{
    if (correlation_length > UINT32_MAX)
        return BUTLER_ERR_TOO_LARGE;
    task_name = task_name ? task_name : "";
    size_t request_size = strlen(request_id) + 1, name_size = strlen(task_name) + 1;
    size_t topic_size = response_topic ? strlen(response_topic) + 1 : 0;
    char *text = malloc(request_size + name_size + topic_size + correlation_length);
    if (text == NULL)
        return BUTLER_ERR_NOMEM;
    char *at = text;
    memcpy(at, request_id, request_size);
    follow->request_id = at;
    at += request_size;
    memcpy(at, task_name, name_size);
    follow->task_name = at;
    at += name_size;
    follow->response_topic = NULL;
    if (response_topic) {
        memcpy(at, response_topic, topic_size);
        follow->response_topic = at;
        at += topic_size;
    }
    follow->correlation = NULL;
    follow->correlation_length = (uint32_t)correlation_length;
    if (correlation_length > 0) {
        memcpy(at, correlation, correlation_length);
        follow->correlation = (unsigned char *)at;
    }
    follow->text = text;
    return BUTLER_OK;
}

/* The first 8 characters of an execution id, lower-cased, as one number: a
 * poke compares these across the table before comparing whole ids. */
static uint64_t execution_key(const char *execution_id)
{
    uint64_t key = 0;
    for (size_t i = 0; i < 8 && execution_id[i]; i++) {
        unsigned char c = (unsigned char)execution_id[i];
        key = key << 8 | (uint64_t)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    }
    return key;
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

/* Frees the table's arrays and schedule and leaves their pointers NULL; the
 * slots' own strings are the caller's to clear first. */
static void table_free_storage(void)
{
    free(table.slots);
    free(table.execution_keys);
    free(table.free_slots);
    due_heap_destroy(table.schedule);
    table.slots = NULL;
    table.execution_keys = NULL;
    table.free_slots = NULL;
    table.schedule = NULL;
}

/* Set up the table and its schedule. Start-up thread, before any other call. */
enum butler_status task_follow_setup(struct butler_runtime *runtime)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    table.config = runtime->config;
    task_follow_poll_setup(table.config);
    table.max = (size_t)runtime->config->task_start.follow.max;
    /* Large tables are mmapped zero pages: untouched slots cost no memory. */
    table.slots = calloc(table.max, sizeof *table.slots);
    table.execution_keys = calloc(table.max, sizeof *table.execution_keys);
    table.free_slots = malloc(table.max * sizeof *table.free_slots);
    if (table.slots == NULL || table.execution_keys == NULL || table.free_slots == NULL)
        goto out;
    status = due_heap_create(table.max, &table.schedule);
    if (status != BUTLER_OK)
        goto out;
    /* Popped from the end: slot 0 first, so the slots in use stay packed low. */
    for (size_t i = 0; i < table.max; i++)
        table.free_slots[i] = (uint32_t)(table.max - 1 - i);
    table.free_count = table.max;
    table.slots_seen = 0;
    /* Timed waits on the monotonic clock: a wall-clock step must not stall polls. */
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_destroy(&table.wake);
    int failed = pthread_cond_init(&table.wake, &attributes);
    pthread_condattr_destroy(&attributes);
    if (failed) {
        status = BUTLER_ERR_INTERNAL;
        goto out;
    }
    table.seed = clock_monotonic_ms() ^ (uint64_t)(uintptr_t)&table;
    followed_gauge = metrics_get("butler_task_follows", "", METRIC_GAUGE,
                                 "Task runs followed now (task_start.follow.max caps it)");
    status = BUTLER_OK;
out:
    if (status != BUTLER_OK) {
        table_free_storage();
        table.max = 0;
    }
    return status;
}

bool task_follow_reserve(size_t count)
{
    pthread_mutex_lock(&table.mutex);
    bool room = table.slots && table.count + table.reserved + count <= table.max;
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

/*
 * Move `follow` (a filled record; its string block now belongs to the table)
 * into a free slot and schedule its first poll at a random point of the
 * first interval. False when the table is full (the caller keeps the block).
 * `reserved`: it uses a reservation. Mutex held.
 */
static bool insert_locked(const struct follow *follow, bool reserved)
{
    if (reserved && table.reserved > 0)
        table.reserved--;
    if (table.slots == NULL || table.free_count == 0)
        return false;
    uint32_t slot = table.free_slots[--table.free_count];
    struct follow *into = &table.slots[slot];
    *into = *follow;
    uint64_t poll_ms = (uint64_t)table.config->task_start.follow.poll_s * 1000u;
    into->due_mono_ms = clock_monotonic_ms() + next_random() % (poll_ms + 1);
    into->used = true;
    into->busy = into->poke_pending = false;
    table.execution_keys[slot] = execution_key(into->execution_id);
    if (slot >= table.slots_seen)
        table.slots_seen = slot + 1u;
    uint64_t first_due = UINT64_MAX;
    due_heap_peek(table.schedule, NULL, &first_due);
    due_heap_push(table.schedule, slot, into->due_mono_ms); /* cannot fail: the slot was free */
    table.count++;
    metrics_set(followed_gauge, (int64_t)table.count);
    if (into->due_mono_ms < first_due) /* the thread sleeps until a later time */
        pthread_cond_signal(&table.wake);
    return true;
}

/* Give a slot back (its follow ended). Mutex held; the slot is out of the
 * schedule. */
static void release_slot_locked(uint32_t slot)
{
    follow_clear(&table.slots[slot]);
    memset(&table.slots[slot], 0, sizeof table.slots[slot]);
    table.execution_keys[slot] = 0;
    table.free_slots[table.free_count++] = slot;
    table.count--;
    metrics_set(followed_gauge, (int64_t)table.count);
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
    char *payload = NULL;
    struct follow follow = {.last_status = -1};
    snprintf(follow.task_id, sizeof follow.task_id, "%s", start->task_id);
    snprintf(follow.execution_id, sizeof follow.execution_id, "%s", start->execution_id);
    enum butler_status status =
        follow_set_text(&follow, start->request_id, start->task_name, start->response_topic,
                        start->correlation, start->correlation_length);
    if (status != BUTLER_OK)
        goto out;
    follow.started_wall_ms = clock_wall_ms();
    follow.started_mono_ms = clock_monotonic_ms();
    status = BUTLER_ERR_NOMEM;
    payload = record_payload(&follow);
    if (payload == NULL)
        goto out;
    status = spool_follow(&follow, payload);
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
    bool inserted = insert_locked(&follow, true);
    pthread_mutex_unlock(&table.mutex);
    if (!inserted) { /* cannot happen with a reservation; the spool keeps it for a restart */
        status = BUTLER_ERR_FULL;
        LOG_ERROR(MODULE, "follow table full; execution %s is followed after the next start",
                  start->execution_id);
        follow_clear(&follow);
        goto out_released;
    }
    /* From `start`: the slot's copy may be gone already (a first poll due at once). */
    LOG_INFO(MODULE, "following execution %s of task %s for request %s", start->execution_id,
             start->task_id, start->request_id);
out:
    if (status != BUTLER_OK) {
        task_follow_release(1);
        follow_clear(&follow);
    }
out_released:
    free(payload);
    return status;
}

bool task_follow_find(const char *request_id, const char *task_id, char out[37])
{
    bool found = false;
    pthread_mutex_lock(&table.mutex);
    for (size_t i = 0; i < table.slots_seen && !found; i++) {
        const struct follow *follow = &table.slots[i];
        if (follow->used && strcmp(follow->request_id, request_id) == 0 &&
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
    struct follow follow = {.last_status = -1};
    cJSON *json = json_parse_exact(payload, length, NULL);
    const char *request_id = string_of(json, "requestId");
    const char *task_id = string_of(json, "taskId");
    const char *execution_id = string_of(json, "executionId");
    const cJSON *started = cJSON_GetObjectItemCaseSensitive(json, "startedAt");
    if (!request_id || !task_id || !execution_id || !cJSON_IsNumber(started) ||
        strlen(task_id) != 36 || strlen(execution_id) != 36 || strlen(request_id) > 64)
        goto out;
    follow.spool_id = spool_id;
    snprintf(follow.task_id, sizeof follow.task_id, "%s", task_id);
    snprintf(follow.execution_id, sizeof follow.execution_id, "%s", execution_id);
    status = follow_set_text(&follow, request_id, string_of(json, "taskName"),
                             response_topic && response_topic[0] ? response_topic : NULL,
                             correlation, correlation_length);
    if (status != BUTLER_OK)
        goto out;
    follow.started_wall_ms = (uint64_t)started->valuedouble;
    /* The timeout counts from the start, across the restart. */
    uint64_t now_wall = clock_wall_ms(), now_mono = clock_monotonic_ms();
    uint64_t age = now_wall > follow.started_wall_ms ? now_wall - follow.started_wall_ms : 0;
    follow.started_mono_ms = now_mono > age ? now_mono - age : 0;
    pthread_mutex_lock(&table.mutex);
    bool inserted = insert_locked(&follow, false);
    pthread_mutex_unlock(&table.mutex);
    if (!inserted) {
        status = BUTLER_ERR_FULL; /* left in the spool for a start with a larger table */
        goto out;
    }
    follow.text = NULL; /* the slot has it */
    status = BUTLER_OK;
out:
    follow_clear(&follow);
    cJSON_Delete(json);
    return status;
}

void task_follow_poke(const char *execution_id)
{
    if (execution_id == NULL || execution_id[0] == '\0')
        return;
    uint64_t key = execution_key(execution_id);
    pthread_mutex_lock(&table.mutex);
    for (size_t i = 0; table.count > 0 && i < table.slots_seen; i++) {
        struct follow *follow = &table.slots[i];
        if (table.execution_keys[i] != key || !follow->used ||
            strcasecmp(follow->execution_id, execution_id) != 0)
            continue;
        if (follow->busy) {
            /* The poll in progress may predate the end. Only this flag: the
             * follower thread owns the rest of a busy follow. */
            follow->poke_pending = true;
        } else {
            follow->poked = POKE_TRIES;
            follow->due_mono_ms = clock_monotonic_ms();
            due_heap_update(table.schedule, (uint32_t)i, follow->due_mono_ms);
            pthread_cond_signal(&table.wake);
        }
        break;
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

/* After a poll: a follow that ended gives its slot back; one that stays is
 * scheduled again (`due` was its due time when taken). Mutex held. */
static void settle_locked(uint32_t slot, uint64_t due, bool ended)
{
    struct follow *follow = &table.slots[slot];
    follow->busy = false;
    if (ended) {
        release_slot_locked(slot);
        return;
    }
    if (follow->due_mono_ms == due) { /* not rescheduled (stopping, out of memory) */
        follow->due_mono_ms = clock_monotonic_ms() + BACKOFF_FIRST_MS;
        follow->paused = true;
    }
    if (follow->poke_pending) { /* a task event arrived during the poll */
        follow->poke_pending = false;
        follow->poked = POKE_TRIES;
        follow->due_mono_ms = clock_monotonic_ms();
    }
    due_heap_push(table.schedule, slot, follow->due_mono_ms); /* its slot: cannot fail */
}

/*
 * The follower thread. Sleeps until the earliest due time (or a signal: a
 * follow due earlier than that, a poke, stop), then takes every follow due
 * by the end of this wake-up's margin, up to SESSION_LIST_MAX, and polls
 * them with one list call (poll_many; one alone, or QRS refusing the list:
 * poll_one). Taken follows are out of the schedule (busy) while polled, so
 * the mutex is not held across QRS calls.
 */
static void *follower_main(void *unused)
{
    (void)unused;
    struct qrs_client *qrs = NULL;
    if (qrs_client_create(table.config, butler_runtime_stopping, &qrs) != BUTLER_OK) {
        LOG_ERROR(MODULE, "cannot create the follower's QRS client; follows wait for a restart");
        return NULL;
    }
    uint64_t poll_ms = (uint64_t)table.config->task_start.follow.poll_s * 1000u;
    uint64_t batch_end = 0; /* polls due up to here join the current wake-up */
    uint32_t slots[SESSION_LIST_MAX];
    uint64_t dues[SESSION_LIST_MAX];
    struct follow *taken[SESSION_LIST_MAX];
    bool ended[SESSION_LIST_MAX];
    pthread_mutex_lock(&table.mutex);
    while (!table.stop) {
        uint32_t slot = 0;
        uint64_t due = 0;
        if (!due_heap_peek(table.schedule, &slot, &due)) {
            batch_end = 0;
            pthread_cond_wait(&table.wake, &table.mutex);
            continue;
        }
        uint64_t now = clock_monotonic_ms();
        /* A pause (after a poke, a failure, a result not final yet) is waited
         * out in full: only a regular poll joins a wake-up early. */
        if (due > now && (due > batch_end || table.slots[slot].paused)) {
            batch_end = 0;
            struct timespec until;
            clock_deadline_after(CLOCK_MONOTONIC, due - now, &until);
            pthread_cond_timedwait(&table.wake, &table.mutex, &until);
            continue;
        }
        if (batch_end < now)
            batch_end = now + task_follow_coalesce_ms(poll_ms);
        size_t max = task_follow_poll_batch_max(now);
        size_t count = 0;
        while (count < max && due_heap_peek(table.schedule, &slot, &due) &&
               (due <= now || (due <= batch_end && !table.slots[slot].paused))) {
            due_heap_pop(table.schedule, NULL, NULL);
            slots[count] = slot;
            dues[count] = due;
            taken[count] = &table.slots[slot];
            taken[count]->busy = true;
            count++;
        }
        pthread_mutex_unlock(&table.mutex);
        if (count == 1)
            ended[0] = task_follow_poll_one(qrs, taken[0]);
        else
            task_follow_poll_many(qrs, taken, count, ended);
        pthread_mutex_lock(&table.mutex);
        for (size_t i = 0; i < count; i++)
            settle_locked(slots[i], dues[i], ended[i]);
        if (butler_runtime_stopping())
            break;
    }
    pthread_mutex_unlock(&table.mutex);
    qrs_client_destroy(qrs);
    return NULL;
}

enum butler_status task_follow_start(void)
{
    if (table.slots == NULL || table.started || !qrs_enabled(table.config))
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
    for (size_t i = 0; table.slots && i < table.slots_seen; i++)
        follow_clear(&table.slots[i]);
    table_free_storage();
    table.count = table.reserved = table.max = table.free_count = table.slots_seen = 0;
    pthread_mutex_unlock(&table.mutex);
}
