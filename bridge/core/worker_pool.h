/*
 * A fixed set of worker threads fed by one bounded FIFO. The MQTT network
 * thread hands messages here so it never blocks on HTTPS; each worker keeps
 * its own per-thread state (for example a QRS connection that stays open).
 *
 * The queue has a hard maximum (task_start.queue_max). worker_pool_submit()
 * waits up to its timeout for room and then refuses with BUTLER_ERR_FULL: the
 * producer decides what refusal means (the MQTT path blocks, which withholds
 * the PUBACK and makes the broker hold the message for us).
 */
#ifndef BUTLER_WORKER_POOL_H
#define BUTLER_WORKER_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "bridge/core/status.h"

struct worker_pool;

/* Runs on a worker thread. `worker_state` is that thread's own state from
 * `init_worker`; `item` is owned by the callee from here on. */
typedef void (*worker_run_fn)(void *worker_state, void *item);
/* Frees an item that will never run (shutdown). Owns `item`. */
typedef void (*worker_discard_fn)(void *item);

struct worker_pool_callbacks {
    /* Called once on each worker thread before it takes work; returns the
     * thread's state (may be NULL). */
    void *(*init_worker)(int worker_index, void *context);
    void (*cleanup_worker)(void *worker_state, void *context);
    void *context;
};

enum butler_status worker_pool_create(int threads, size_t queue_max,
                                      const struct worker_pool_callbacks *callbacks,
                                      struct worker_pool **out);

/* Queue one item. On BUTLER_OK the pool owns `item` and will call exactly one
 * of run or discard. On any error the caller keeps `item`.
 * timeout_ms < 0 waits until there is room or the pool stops. */
enum butler_status worker_pool_submit(struct worker_pool *pool, worker_run_fn run,
                                      worker_discard_fn discard, void *item, int timeout_ms);

/*
 * From a running item (a worker thread): take up to `max` more items off the
 * front of the queue while `match(run, item, context)` says they belong with
 * it, so that one worker handles work that waits together in one go (task
 * starts share one QRS call). Stops at the first item that does not match;
 * order is kept. Taken items are owned by the caller, who runs or discards
 * each exactly as the pool would have. Returns how many were stored in items[].
 */
typedef bool (*worker_match_fn)(worker_run_fn run, void *item, void *context);
size_t worker_pool_take_matching(struct worker_pool *pool, worker_match_fn match, void *context,
                                 void **items, size_t max);

size_t worker_pool_depth(struct worker_pool *pool);
/* Items queued or running. */
size_t worker_pool_busy(struct worker_pool *pool);

/* Stop taking work and wait up to grace_ms for queued and running items;
 * then discard what is still queued. Threads keep running (items in progress
 * finish); worker_pool_stop() joins them. */
void worker_pool_drain(struct worker_pool *pool, int grace_ms);

/* Stop taking work; let queued and running items finish for up to grace_ms,
 * then discard what is still queued and join the threads. */
void worker_pool_stop(struct worker_pool *pool, int grace_ms);
void worker_pool_destroy(struct worker_pool *pool);

#endif
