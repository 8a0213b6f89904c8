/*
 * The running daemon's shared state, built once by main() and read by every
 * module. Owned by main(); everything here outlives the threads that use it.
 */
#ifndef BUTLER_RUNTIME_H
#define BUTLER_RUNTIME_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"

struct mqtt_link;
struct worker_pool;
struct task_start_state;
struct spool;

struct butler_runtime {
    const struct butler_config *config;
    struct mqtt_link *link;
    struct worker_pool *pool;
    struct task_start_state *task_start;
    struct spool *spool; /* NULL only in unit tests */
    uint64_t started_at_wall_ms;
    atomic_bool stopping;
};

/* The one runtime of this process (set by main before threads start). */
extern struct butler_runtime *butler_runtime_current;

/* True once SIGTERM/SIGINT arrived; long waits poll this. */
bool butler_runtime_stopping(void);

#endif
