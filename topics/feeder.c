/*
 * The feeder (see feeder.h): a FIFO of spooled work between the MQTT network
 * thread and the shared worker queue, emptied by one thread that may wait for
 * room in that queue, which the network thread must never do.
 */
#include "topics/feeder.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/core/clock.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/link/mqtt_link.h"
#include "bridge/store/spool.h"
#include "topics/handoff.h"
#include "topics/publish.h"

#define MODULE "feeder"

enum {
    /* How long one wait for room in the worker queue lasts before the feeder
     * looks at its other duties (housekeeping, stopping). */
    SUBMIT_SLICE_MS = 200,
    /* Spool housekeeping at least this often while work flows or not. */
    HOUSEKEEPING_INTERVAL_MS = 500,
};

struct entry {
    topic_family_run run;
    uint64_t spool_id;
    struct topic_message *message; /* NULL: read it back from the spool */
    size_t bytes;                  /* counted in memory_bytes while message is set */
};

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
/* A ring: entry i is ring[(head + i) % capacity]. */
static struct entry *ring;
static size_t head, count, capacity;
static size_t memory_bytes;
static bool exiting, feeding_stopped, housekeeping_wanted;
static pthread_t thread;
static bool thread_started;
static struct butler_runtime *feeder_runtime;

static size_t message_bytes(const struct topic_message *message)
{
    return sizeof *message + strlen(message->topic) + message->payload_length +
           (message->response_topic ? strlen(message->response_topic) : 0) +
           message->correlation_length;
}

/* Caller holds the mutex. Doubles the ring up to FEEDER_ENTRIES_MAX. */
static enum butler_status grow(void)
{
    if (capacity >= FEEDER_ENTRIES_MAX)
        return BUTLER_ERR_FULL;
    size_t grown = capacity ? capacity * 2 : 256;
    if (grown > FEEDER_ENTRIES_MAX)
        grown = FEEDER_ENTRIES_MAX;
    struct entry *bigger = malloc(grown * sizeof *bigger);
    if (bigger == NULL)
        return BUTLER_ERR_NOMEM;
    for (size_t i = 0; i < count; i++)
        bigger[i] = ring[(head + i) % capacity];
    free(ring);
    ring = bigger;
    capacity = grown;
    head = 0;
    return BUTLER_OK;
}

enum butler_status feeder_push(topic_family_run run, struct topic_message *message)
{
    enum butler_status status = BUTLER_OK;
    bool copy_dropped = false;
    pthread_mutex_lock(&mutex);
    /* Fast path: nothing waits ahead of it and the worker queue has room now
     * (never waiting: timeout 0), so skip the hop through the feeder thread.
     * Under the mutex, so nothing pushed meanwhile can overtake it. */
    if (count == 0 && thread_started && !feeding_stopped &&
        topics_submit(run, message, 0) == BUTLER_OK) {
        pthread_mutex_unlock(&mutex);
        return BUTLER_OK;
    }
    if (count == capacity)
        status = grow();
    if (status != BUTLER_OK)
        goto out;
    struct entry entry = {.run = run, .spool_id = message->spool_id, .message = message};
    entry.bytes = message_bytes(message);
    /* Past the memory cap keep only the id of a spooled message; a replayed
     * one keeps its copy (its notes are not read back with it). */
    if (message->spool_id && !message->replay && memory_bytes + entry.bytes > FEEDER_MEMORY_MAX) {
        entry.message = NULL;
        copy_dropped = true;
    } else {
        memory_bytes += entry.bytes;
    }
    ring[(head + count) % capacity] = entry;
    count++;
    pthread_cond_signal(&changed);
out:
    pthread_mutex_unlock(&mutex);
    if (copy_dropped) {
        topic_message_keep(message); /* only the copy goes: the spool still has it */
        topic_message_free(message);
    }
    return status;
}

void feeder_wake(void)
{
    pthread_mutex_lock(&mutex);
    housekeeping_wanted = true;
    pthread_cond_signal(&changed);
    pthread_mutex_unlock(&mutex);
}

size_t feeder_depth(void)
{
    pthread_mutex_lock(&mutex);
    size_t depth = count;
    pthread_mutex_unlock(&mutex);
    return depth;
}

/* The message of an entry whose copy was dropped, read back from the spool.
 * NULL when it cannot be read now (it stays in the spool for the next start)
 * or is already finished. Feeder thread. */
static struct topic_message *read_back(uint64_t spool_id)
{
    struct spool *spool = feeder_runtime->spool;
    unsigned char *record = NULL;
    size_t length = 0;
    struct topic_message *message = NULL;
    enum butler_status status =
        spool ? spool_read(spool, spool_id, &record, &length) : BUTLER_ERR_NOT_FOUND;
    if (status != BUTLER_OK) {
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE,
                        "cannot read spooled work %llu back (%s); it is replayed at the next start",
                        (unsigned long long)spool_id, butler_status_str(status));
        goto out;
    }
    char family[256];
    message = topics_spool_decode(record, length, family);
    if (message == NULL) {
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE,
                        "spooled work %llu does not decode; it is replayed at the next start",
                        (unsigned long long)spool_id);
        goto out;
    }
    message->spool_id = spool_id;
out:
    free(record);
    return message;
}

/* Caller holds the mutex: drop the head entry (handed over or given up). */
static void pop_head(void)
{
    if (ring[head].message)
        memory_bytes -= ring[head].bytes;
    head = (head + 1) % capacity;
    count--;
}

/* While the link holds intake (spool full), release it once the spool could
 * take a good share of new work again: half of spool.max_bytes live at most
 * and half of its item cap, so that the broker's resends do not fill it at
 * once and hold again. */
static void release_hold_if_room(void)
{
    struct mqtt_link *link = feeder_runtime->link;
    struct spool *spool = feeder_runtime->spool;
    if (link == NULL || spool == NULL || !mqtt_link_holding(link))
        return;
    /* Answers parked when the hold cut the connection: the outlet may have
     * been up all along, so no CONNACK will send them. */
    publish_retry_parked();
    struct spool_stats stats;
    spool_get_stats(spool, &stats);
    uint64_t max_bytes = (uint64_t)feeder_runtime->config->spool.max_bytes;
    if (stats.live_bytes > max_bytes / 2 && stats.done_entries > 0) {
        /* Answers kept for repeated requests count as live, and only room for
         * a refused add evicted them: one record's worth each time, so a
         * spool full of answers (a burst of task starts) never got back to
         * half, and the hold lasted its 30 s again and again while a few
         * messages got in per reconnect. New work goes first: forget the
         * oldest answers down to half (live + 3/8 under the 7/8 limit). */
        spool_want_room(spool, max_bytes / 2 - max_bytes / 8);
        spool_housekeeping(spool);
        spool_get_stats(spool, &stats);
    }
    if (stats.live_bytes <= max_bytes / 2 && stats.live_entries < SPOOL_LIVE_MAX / 2)
        mqtt_link_release_hold(link);
}

static void housekeeping(uint64_t *last_ms, bool forced)
{
    uint64_t now = clock_monotonic_ms();
    if (!forced && now - *last_ms < HOUSEKEEPING_INTERVAL_MS)
        return;
    *last_ms = now;
    if (feeder_runtime->spool)
        spool_housekeeping(feeder_runtime->spool);
    release_hold_if_room();
    static struct metric *waiting;
    if (waiting == NULL)
        waiting =
            metrics_get("butler_feeder_waiting", "", METRIC_GAUGE,
                        "Consumed messages recorded in the spool, not yet queued for a worker");
    metrics_set(waiting, (int64_t)feeder_depth());
}

/*
 * Feeder thread: hand the head entry to the worker queue, waiting in slices
 * for room; between slices, housekeeping. Order is kept: the head leaves only
 * once the queue took it.
 */
static void *feeder_main(void *argument)
{
    (void)argument;
    uint64_t last_housekeeping_ms = clock_monotonic_ms();
    pthread_mutex_lock(&mutex);
    while (!exiting) {
        bool forced = housekeeping_wanted;
        housekeeping_wanted = false;
        if (forced || clock_monotonic_ms() - last_housekeeping_ms >= HOUSEKEEPING_INTERVAL_MS) {
            pthread_mutex_unlock(&mutex);
            housekeeping(&last_housekeeping_ms, forced);
            pthread_mutex_lock(&mutex);
            continue;
        }
        if (count == 0 || feeding_stopped) {
            struct timespec deadline;
            clock_deadline_after(CLOCK_REALTIME, HOUSEKEEPING_INTERVAL_MS, &deadline);
            pthread_cond_timedwait(&changed, &mutex, &deadline);
            continue;
        }
        struct entry entry = ring[head];
        pthread_mutex_unlock(&mutex);
        struct topic_message *message = entry.message ? entry.message : read_back(entry.spool_id);
        enum butler_status status =
            message ? topics_submit(entry.run, message, SUBMIT_SLICE_MS) : BUTLER_ERR_IO;
        pthread_mutex_lock(&mutex);
        if (status == BUTLER_OK || message == NULL) {
            pop_head();
            continue;
        }
        if (entry.message == NULL) {
            /* Read back but not taken: keep the copy for the next try. */
            ring[head].message = message;
            memory_bytes += ring[head].bytes;
        }
        if (status != BUTLER_ERR_FULL)
            feeding_stopped = true; /* the pool is stopping: the rest stays in the spool */
    }
    pthread_mutex_unlock(&mutex);
    return NULL;
}

enum butler_status feeder_start(struct butler_runtime *runtime)
{
    feeder_runtime = runtime;
    pthread_mutex_lock(&mutex);
    exiting = false;
    feeding_stopped = false;
    size_t recovered = count;
    pthread_mutex_unlock(&mutex);
    if (recovered)
        LOG_INFO(MODULE, "%zu item(s) from the spool go to the workers first", recovered);
    pthread_mutex_lock(&mutex); /* feeder_push reads it on the network thread */
    bool started = pthread_create(&thread, NULL, feeder_main, NULL) == 0;
    thread_started = started;
    pthread_mutex_unlock(&mutex);
    return started ? BUTLER_OK : BUTLER_ERR_INTERNAL;
}

void feeder_stop_feeding(void)
{
    pthread_mutex_lock(&mutex);
    feeding_stopped = true;
    pthread_cond_signal(&changed);
    pthread_mutex_unlock(&mutex);
}

void feeder_stop(void)
{
    pthread_mutex_lock(&mutex);
    exiting = true;
    feeding_stopped = true;
    pthread_cond_signal(&changed);
    pthread_mutex_unlock(&mutex);
    pthread_mutex_lock(&mutex);
    bool started = thread_started;
    thread_started = false;
    pthread_mutex_unlock(&mutex);
    if (started)
        pthread_join(thread, NULL);
    /* Never handed over: unfinished in the spool, replayed at the next start. */
    size_t left = count;
    while (count) {
        struct topic_message *message = ring[head].message;
        pop_head();
        if (message) {
            topic_message_keep(message);
            topic_message_free(message);
        }
    }
    if (left)
        LOG_INFO(MODULE, "%zu item(s) not yet handed to a worker stay in the spool", left);
    free(ring);
    ring = NULL;
    head = count = capacity = memory_bytes = 0;
}
