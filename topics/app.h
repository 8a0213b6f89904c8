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
 * The request schema and its parser are bridge/model/app_request.h, shared
 * with the HTTP API (bridge/ingress/http_app.c), unit-tested and fuzzed.
 */
#ifndef BUTLER_TOPICS_APP_H
#define BUTLER_TOPICS_APP_H

#include <stdbool.h>
#include <stddef.h>

#include "bridge/core/runtime.h"
#include "bridge/core/status.h"
#include "bridge/model/app_request.h"
#include "topics/message.h"

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
