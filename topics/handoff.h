/*
 * Handing messages to worker threads: the shared worker pool (task starts,
 * alerts, ...) and the pools of families with long work of their own (engine
 * app operations, file commands). Handlers include this, never topics.h.
 */
#ifndef BUTLER_TOPICS_HANDOFF_H
#define BUTLER_TOPICS_HANDOFF_H

#include <stddef.h>

#include "bridge/core/status.h"
#include "topics/message.h"

struct worker_pool;

/*
 * Queue `message` for `run` on the shared worker pool, waiting up to
 * `timeout_ms` for room. BUTLER_OK: the pool owns it (run, or kept in the
 * spool and freed at shutdown); otherwise the caller still does
 * (BUTLER_ERR_FULL, BUTLER_ERR_SHUTDOWN, BUTLER_ERR_NOMEM). Any thread but
 * the MQTT network thread.
 */
enum butler_status topics_submit(topic_family_run run, struct topic_message *message,
                                 int timeout_ms);

/*
 * From a family's run function (worker thread): take up to `max` more
 * messages for the same run function that wait at the front of the worker
 * queue, in arrival order, so one worker can handle them together (task
 * starts share one QRS call). The caller owns each taken message exactly as
 * if it had been handed to `run`. Returns how many were stored in messages[].
 */
size_t topics_take_waiting(topic_family_run run, struct topic_message **messages, size_t max);

/* Put a message taken with topics_take_waiting back at the end of the queue,
 * for a worker that runs it on its own (never taken into a batch again).
 * BUTLER_OK: the queue owns it; otherwise the caller still does (queue full
 * or stopping). Never waits. */
enum butler_status topics_requeue(topic_family_run run, struct topic_message *message);

/*
 * For families with long work on threads of their own (engine app operations,
 * file commands), so that it never holds up the shared workers: hand
 * `message` to `pool`. Waits while that queue is full (the message is in the
 * spool; the shared worker waits); when the pool is gone or Butler is
 * stopping, the message stays in the spool for the next start. Takes
 * `message`. `queue_key` names the cap in the log line. Worker thread.
 */
void topics_hand_over(struct worker_pool *pool, void (*run)(void *worker_state, void *item),
                      struct topic_message *message, const char *queue_key);

#endif
