/*
 * QRS change subscriptions as a second source of Sense task events
 * (docs/qrs-notifications.md; config qrs.notifications).
 *
 * Three parts:
 *   - the keeper thread registers an ExecutionResult/Update change
 *     subscription whose callback is <callback_url>/qrs-notification/<secret>,
 *     re-registers it every check_interval_s (QRS forgets subscriptions when
 *     it restarts and offers no listing, so Butler registers a new one and
 *     deletes the old handle: a DELETE that finds nothing tells it QRS had
 *     restarted), deletes it on clean shutdown, and keeps the live handles in
 *     <spool.dir>/qrs-notification.handles so a crash-restart deletes the
 *     previous ones first;
 *   - the HTTP ingress (bridge/ingress/http_api.c) checks the secret path segment
 *     with qrs_callback_secret_matches() (bridge/model/qrs_callback.h) and publishes what QRS sent
 * to <root>/qrs/notification;
 *   - the worker family notifications_run() reads each changed
 *     ExecutionResult from QRS and, when it is final, publishes the same
 *     <root>/events/task/<outcome>/<taskId> event as the UDP path (with
 *     "source": "qrs"), de-duplicated with the UDP path on the ExecutionId.
 */
#ifndef BUTLER_TOPICS_NOTIFICATIONS_H
#define BUTLER_TOPICS_NOTIFICATIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "bridge/core/runtime.h"
#include "bridge/core/status.h"
#include "bridge/model/qrs_callback.h"
#include "bridge/model/sense_event.h"
#include "topics/message.h"

enum {
    NOTIFICATIONS_HANDLES_MAX = 8,    /* handles remembered for deletion, hard cap */
    NOTIFICATIONS_CHANGES_MAX = 1000, /* changes read from one callback body */
    NOTIFICATIONS_RETRY_S = 5,        /* registration retry while QRS is away */
};

/* Start-up (main thread, after the HTTP ingress is up): start the keeper
 * thread when qrs.notifications.enable. BUTLER_OK and nothing done otherwise. */
enum butler_status notifications_start(struct butler_runtime *runtime);

/* Shutdown (main thread, before the HTTP ingress stops): delete the
 * subscriptions in QRS (bounded to a few seconds) and join the thread. */
void notifications_stop(void);

/* The family of <root>/qrs/notification (worker thread). */
void notifications_run(struct topic_worker *worker, struct topic_message *message);

/* ExecutionResult status (and task type) -> event type; false while the
 * execution is not final or has no event (Skipped). Pure. */
bool notifications_outcome(int status, int task_type, enum sense_event_type *out);

#endif
