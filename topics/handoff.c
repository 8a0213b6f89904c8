/*
 * Handing messages to worker threads (see handoff.h). The shared pool's items
 * carry the family's run function with the message, so a worker running a
 * task start can take the task starts queued behind it.
 */
#include "topics/handoff.h"

#include <stdbool.h>
#include <stdlib.h>

#include "bridge/core/log.h"
#include "bridge/core/runtime.h"
#include "bridge/core/worker_pool.h"

#define MODULE "topics"

enum { SUBMIT_SLICE_MS = 1000 };

/* The pool calls this with the run function smuggled through the item. */
struct queued_message {
    topic_family_run run;
    struct topic_message *message;
    bool solo; /* handed back by a batch: the next worker runs it on its own */
};

static void run_queued(void *worker_state, void *item)
{
    struct queued_message *queued = item;
    static struct topic_worker bare_worker; /* when per-worker setup ran out of memory */
    queued->run(worker_state ? worker_state : &bare_worker, queued->message);
    free(queued);
}

static void discard_queued(void *item);

/* A handed-over message that will not run (shutdown): kept for the next start. */
static void discard_handed_over(void *item)
{
    struct topic_message *message = item;
    LOG_WARN(MODULE, "shutdown: %s was not processed; it stays in the spool for the next start",
             message->topic);
    topic_message_keep(message);
    topic_message_free(message);
}

void topics_hand_over(struct worker_pool *pool, void (*run)(void *worker_state, void *item),
                      struct topic_message *message, const char *queue_key)
{
    for (;;) {
        enum butler_status status =
            pool ? worker_pool_submit(pool, run, discard_handed_over, message, SUBMIT_SLICE_MS)
                 : BUTLER_ERR_SHUTDOWN;
        if (status == BUTLER_OK)
            return;
        if (status == BUTLER_ERR_FULL && !butler_runtime_stopping()) {
            LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "queue full (%s); holding %s", queue_key,
                            message->topic);
            continue;
        }
        LOG_WARN(MODULE, "not accepting %s now; it stays in the spool", message->topic);
        topic_message_keep(message);
        topic_message_free(message);
        return;
    }
}

static bool same_family_run(worker_run_fn run, void *item, void *context)
{
    const struct queued_message *queued = item;
    const topic_family_run *wanted = context;
    return run == run_queued && queued->run == *wanted && !queued->solo;
}

size_t topics_take_waiting(topic_family_run run, struct topic_message **messages, size_t max)
{
    struct butler_runtime *runtime = butler_runtime_current;
    enum { TAKE_SLICE = 64 };
    void *items[TAKE_SLICE];
    topic_family_run wanted = run;
    size_t taken = 0;
    while (runtime && runtime->pool && taken < max) {
        size_t want = max - taken < TAKE_SLICE ? max - taken : TAKE_SLICE;
        size_t got =
            worker_pool_take_matching(runtime->pool, same_family_run, &wanted, items, want);
        for (size_t i = 0; i < got; i++) {
            struct queued_message *queued = items[i];
            messages[taken++] = queued->message;
            free(queued);
        }
        if (got < want)
            break;
    }
    return taken;
}

/* One queued item: `solo` items are never taken into a batch. */
static enum butler_status submit(topic_family_run run, struct topic_message *message, bool solo,
                                 int timeout_ms)
{
    struct butler_runtime *runtime = butler_runtime_current;
    struct queued_message *queued = calloc(1, sizeof *queued);
    if (queued == NULL)
        return BUTLER_ERR_NOMEM;
    *queued = (struct queued_message){.run = run, .message = message, .solo = solo};
    enum butler_status status =
        runtime && runtime->pool
            ? worker_pool_submit(runtime->pool, run_queued, discard_queued, queued, timeout_ms)
            : BUTLER_ERR_SHUTDOWN;
    if (status != BUTLER_OK)
        free(queued);
    return status;
}

enum butler_status topics_submit(topic_family_run run, struct topic_message *message,
                                 int timeout_ms)
{
    return submit(run, message, false, timeout_ms);
}

enum butler_status topics_requeue(topic_family_run run, struct topic_message *message)
{
    return submit(run, message, true, 0);
}

static void discard_queued(void *item)
{
    struct queued_message *queued = item;
    LOG_WARN(MODULE, "shutdown: %s was not processed; it stays in the spool for the next start",
             queued->message->topic);
    topic_message_keep(queued->message);
    topic_message_free(queued->message);
    free(queued);
}
