/*
 * Sense apps through the engine (contract 8.2): <root>/app/reload,
 * <root>/app/list and <root>/app/dump, each answered once on <root>/app/result
 * (and the MQTT v5 Response Topic); a reload outcome is also the event
 * <root>/events/app/reload/<success|failed>/<appId> and starts the chained
 * tasks through <root>/task/start.
 *
 * Engine work runs on its own engine.max_sessions threads (one engine session
 * each), fed by a bounded queue (engine.queue_max), so a long reload never
 * holds the shared workers that start tasks.
 *
 * The request parser is separate so it can be unit-tested and fuzzed.
 */
#ifndef BUTLER_TOPICS_APP_H
#define BUTLER_TOPICS_APP_H

#include <stdbool.h>
#include <stddef.h>

#include "bridge/core/runtime.h"
#include "bridge/core/status.h"
#include "topics/topics.h"

enum {
    APP_REQUEST_ID_MAX = 64,
    APP_ID_MAX = 128,
    APP_CHAINED_TASKS_MAX = 64, /* per list (on success, on failure) */
};

enum app_operation { APP_OP_RELOAD, APP_OP_LIST, APP_OP_DUMP };

struct app_request {
    enum app_operation operation;
    char request_id[APP_REQUEST_ID_MAX + 1];
    char app_id[APP_ID_MAX + 1]; /* reload and dump */
    int reload_mode;             /* 0..2 as the engine's qMode */
    bool partial_reload;
    char on_success[APP_CHAINED_TASKS_MAX][37]; /* task GUIDs */
    size_t on_success_count;
    char on_failure[APP_CHAINED_TASKS_MAX][37];
    size_t on_failure_count;
};

/*
 * Parse a payload for `operation`. On BUTLER_OK *request is filled (a
 * requestId is generated when absent). On BUTLER_ERR_INVALID / TOO_LARGE,
 * `error` says why and request->request_id is still set so the answer can
 * carry it. Pure: no I/O, any thread, nothing to free.
 */
enum butler_status app_request_parse(enum app_operation operation, const unsigned char *payload,
                                     size_t payload_length, struct app_request *request,
                                     char *error, size_t error_size);

/* Start the engine client (when engine.url is set) and the app threads.
 * Start-up, after the worker pool exists. */
enum butler_status app_setup(struct butler_runtime *runtime);

/* Shutdown: stop taking app work, give queued and running work up to
 * grace_ms, then cancel engine calls (that work stays in the spool) and join
 * the threads. Main thread, while the MQTT link still runs. */
void app_stop(int grace_ms);

/* Free what app_setup made (after app_stop). */
void app_teardown(void);

/* Topic-table entry for <root>/app/reload|list|dump (shared worker thread):
 * hands the message to the app threads. Owns `message`. */
void app_run(struct topic_worker *worker, struct topic_message *message);

#endif
