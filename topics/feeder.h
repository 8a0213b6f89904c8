/*
 * The feeder: moves work that is recorded in the spool but not yet queued
 * into the shared worker queue, in spool order, on a thread of its own.
 *
 * Why: the MQTT network thread must never wait for the workers, because
 * workers wait for PUBACKs of their own publishes (answers, key-value items,
 * dead letters) that only the network thread reads. So the network thread
 * only records a consumed message in the spool (durable from then on: its
 * PUBACK may go out) and pushes it here; the feeder waits for room in the
 * worker queue instead. Work recovered from the spool at start-up goes through
 * the same FIFO, ahead of anything new. Backpressure comes from the spool's
 * own bound: when spool_add refuses, the message is held unacknowledged.
 *
 * The feeder also runs the spool's housekeeping (compaction), so that no
 * compaction runs on the network thread.
 *
 * Bounded: at most FEEDER_ENTRIES_MAX entries (the spool holds no more
 * unfinished items); message copies are kept in memory up to
 * FEEDER_MEMORY_MAX bytes, beyond that only the spool id (the feeder reads
 * the message back from the spool when its turn comes).
 */
#ifndef BUTLER_TOPICS_FEEDER_H
#define BUTLER_TOPICS_FEEDER_H

#include <stddef.h>
#include <stdint.h>

#include "bridge/core/runtime.h"
#include "bridge/core/status.h"
#include "topics/message.h"

enum {
    FEEDER_ENTRIES_MAX = 100000, /* SPOOL_LIVE_MAX: the spool refuses past it first */
    FEEDER_MEMORY_MAX = 16 * 1024 * 1024,
};

/*
 * Append `message` (to be run by `run`) to the FIFO. Takes `message` on
 * BUTLER_OK; a spooled message may be freed at once and read back later.
 * BUTLER_ERR_FULL / BUTLER_ERR_NOMEM: the caller keeps it. When nothing
 * waits in the FIFO and the worker queue has room, it is queued at once
 * (without waiting). Never waits for other threads beyond the feeder's and
 * the pool's short mutexes. Network thread and recovery.
 */
enum butler_status feeder_push(topic_family_run run, struct topic_message *message);

/* Start the feeder thread (after the worker pool exists). */
enum butler_status feeder_start(struct butler_runtime *runtime);

/* Stop handing work to the workers (shutdown, grace over). Any thread. */
void feeder_stop_feeding(void);

/* Join the thread; what it never handed over stays in the spool for the next
 * start. Main thread, after the network thread is gone. */
void feeder_stop(void);

/* Ask the feeder for a spool compaction soon (an add was refused). Any thread. */
void feeder_wake(void);

/* Entries waiting (gauge). Any thread. */
size_t feeder_depth(void);

#endif
