#include "bridge/core/worker_pool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "bridge/core/clock.h"
#include "bridge/core/log.h"

#define MODULE "workers"

struct queued_item {
    worker_run_fn run;
    worker_discard_fn discard;
    void *item;
};

struct worker_thread {
    struct worker_pool *pool;
    pthread_t thread;
    int index;
    bool started;
};

struct worker_pool {
    pthread_mutex_t mutex;
    pthread_cond_t has_work;
    pthread_cond_t has_room;
    pthread_cond_t idle;
    struct queued_item *ring; /* capacity entries */
    size_t capacity, head, count;
    size_t running;
    int idle_workers; /* waiting on has_work */
    bool accepting;
    bool exiting;
    struct worker_pool_callbacks callbacks;
    struct worker_thread *threads;
    int thread_count;
};

static void *worker_main(void *argument)
{
    struct worker_thread *self = argument;
    struct worker_pool *pool = self->pool;
    void *state = pool->callbacks.init_worker
                      ? pool->callbacks.init_worker(self->index, pool->callbacks.context)
                      : NULL;
    pthread_mutex_lock(&pool->mutex);
    for (;;) {
        while (pool->count == 0 && !pool->exiting) {
            pool->idle_workers++;
            pthread_cond_wait(&pool->has_work, &pool->mutex);
            pool->idle_workers--;
        }
        if (pool->count == 0 && pool->exiting)
            break;
        struct queued_item next = pool->ring[pool->head];
        pool->head = (pool->head + 1) % pool->capacity;
        pool->count--;
        pool->running++;
        pthread_cond_signal(&pool->has_room);
        pthread_mutex_unlock(&pool->mutex);
        next.run(state, next.item);
        pthread_mutex_lock(&pool->mutex);
        pool->running--;
        if (pool->count == 0 && pool->running == 0)
            pthread_cond_broadcast(&pool->idle);
    }
    pthread_mutex_unlock(&pool->mutex);
    if (pool->callbacks.cleanup_worker)
        pool->callbacks.cleanup_worker(state, pool->callbacks.context);
    return NULL;
}

enum butler_status worker_pool_create(int threads, size_t queue_max,
                                      const struct worker_pool_callbacks *callbacks,
                                      struct worker_pool **out)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    struct worker_pool *pool = calloc(1, sizeof *pool);
    if (pool == NULL)
        goto out;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->has_work, NULL);
    pthread_cond_init(&pool->has_room, NULL);
    pthread_cond_init(&pool->idle, NULL);
    pool->capacity = queue_max;
    pool->accepting = true;
    if (callbacks)
        pool->callbacks = *callbacks;
    pool->ring = calloc(queue_max, sizeof *pool->ring);
    pool->threads = calloc((size_t)threads, sizeof *pool->threads);
    if (pool->ring == NULL || pool->threads == NULL)
        goto out;
    pool->thread_count = threads;
    for (int i = 0; i < threads; i++) {
        pool->threads[i].pool = pool;
        pool->threads[i].index = i;
        if (pthread_create(&pool->threads[i].thread, NULL, worker_main, &pool->threads[i]) != 0) {
            status = BUTLER_ERR_INTERNAL;
            goto out;
        }
        pool->threads[i].started = true;
    }
    *out = pool;
    pool = NULL;
    status = BUTLER_OK;
out:
    if (pool)
        worker_pool_destroy(pool);
    return status;
}

enum butler_status worker_pool_submit(struct worker_pool *pool, worker_run_fn run,
                                      worker_discard_fn discard, void *item, int timeout_ms)
{
    enum butler_status status = BUTLER_OK;
    bool wake_worker = false;
    struct timespec deadline;
    if (timeout_ms >= 0)
        clock_deadline_after(CLOCK_REALTIME, (uint64_t)timeout_ms, &deadline);
    pthread_mutex_lock(&pool->mutex);
    while (pool->accepting && pool->count >= pool->capacity) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&pool->has_room, &pool->mutex);
        } else if (pthread_cond_timedwait(&pool->has_room, &pool->mutex, &deadline) != 0) {
            break;
        }
    }
    if (!pool->accepting) {
        status = BUTLER_ERR_SHUTDOWN;
        goto out;
    }
    if (pool->count >= pool->capacity) {
        status = BUTLER_ERR_FULL;
        goto out;
    }
    pool->ring[(pool->head + pool->count) % pool->capacity] =
        (struct queued_item){.run = run, .discard = discard, .item = item};
    pool->count++;
    wake_worker = pool->idle_workers > 0;
out:
    pthread_mutex_unlock(&pool->mutex);
    /* Signalled after unlocking, so the woken worker does not block at once on
     * the mutex this thread still holds (one context switch per hand-off, not
     * two), and only when a worker sleeps: a busy pool takes the item anyway. */
    if (wake_worker)
        pthread_cond_signal(&pool->has_work);
    return status;
}

size_t worker_pool_take_matching(struct worker_pool *pool, worker_match_fn match, void *context,
                                 void **items, size_t max)
{
    size_t taken = 0;
    pthread_mutex_lock(&pool->mutex);
    while (taken < max && pool->count > 0) {
        struct queued_item *front = &pool->ring[pool->head];
        if (!match(front->run, front->item, context))
            break;
        items[taken++] = front->item;
        pool->head = (pool->head + 1) % pool->capacity;
        pool->count--;
    }
    if (taken > 0)
        pthread_cond_broadcast(&pool->has_room);
    pthread_mutex_unlock(&pool->mutex);
    return taken;
}

size_t worker_pool_depth(struct worker_pool *pool)
{
    pthread_mutex_lock(&pool->mutex);
    size_t depth = pool->count;
    pthread_mutex_unlock(&pool->mutex);
    return depth;
}

size_t worker_pool_busy(struct worker_pool *pool)
{
    pthread_mutex_lock(&pool->mutex);
    size_t busy = pool->count + pool->running;
    pthread_mutex_unlock(&pool->mutex);
    return busy;
}

void worker_pool_drain(struct worker_pool *pool, int grace_ms)
{
    struct timespec deadline;
    clock_deadline_after(CLOCK_REALTIME, (uint64_t)(grace_ms > 0 ? grace_ms : 0), &deadline);
    pthread_mutex_lock(&pool->mutex);
    pool->accepting = false;
    pthread_cond_broadcast(&pool->has_room);
    while (pool->count + pool->running > 0)
        if (pthread_cond_timedwait(&pool->idle, &pool->mutex, &deadline) != 0)
            break;
    size_t discarded = pool->count;
    while (pool->count > 0) {
        struct queued_item dropped = pool->ring[pool->head];
        pool->head = (pool->head + 1) % pool->capacity;
        pool->count--;
        if (dropped.discard)
            dropped.discard(dropped.item);
    }
    pthread_mutex_unlock(&pool->mutex);
    if (discarded)
        LOG_WARN(MODULE, "%zu queued items were not run before shutdown", discarded);
}

void worker_pool_stop(struct worker_pool *pool, int grace_ms)
{
    worker_pool_drain(pool, grace_ms);
    pthread_mutex_lock(&pool->mutex);
    pool->exiting = true;
    pthread_cond_broadcast(&pool->has_work);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 0; i < pool->thread_count; i++) {
        if (pool->threads[i].started) {
            pthread_join(pool->threads[i].thread, NULL);
            pool->threads[i].started = false;
        }
    }
}

void worker_pool_destroy(struct worker_pool *pool)
{
    if (pool == NULL)
        return;
    worker_pool_stop(pool, 0);
    free(pool->ring);
    free(pool->threads);
    pthread_mutex_destroy(&pool->mutex);
    pthread_cond_destroy(&pool->has_work);
    pthread_cond_destroy(&pool->has_room);
    pthread_cond_destroy(&pool->idle);
    free(pool);
}
