/*
 * Cron schedules that start Qlik Sense tasks (the Node.js Butler's
 * /v4/schedules API).
 *
 * Each schedule lives on the broker as a retained message
 * <root>/schedules/<id> (the Node.js schedule object plus "lastRunAt"), so it
 * survives restarts and every instance sees it; every Butler subscribes (not
 * shared) to <root>/schedules/+ and keeps the list in memory. Instances with
 * scheduler.enable run one scheduler thread that fires started schedules: a
 * firing publishes {"taskId", "requestId": "schedule-<id>-<epoch s>"} to
 * <root>/task/start, so the allow-list, de-duplication and the result on
 * <root>/task/result apply as for any other start. Firings that fell while no
 * Butler ran (between lastRunAt and start-up) are not replayed: they are
 * reported on <root>/events/schedule/missed/<id> and logged.
 *
 * lastKnownState ("started"/"stopped") is the schedule's state and is kept
 * on the broker, so a stopped schedule stays stopped across restarts;
 * startupState only sets the state a new schedule starts in.
 *
 * Threads: the scheduler thread is the only one that computes firing times;
 * the network thread only records messages; HTTP threads call the API in
 * bridge/model/schedule_store.h, which schedules.c implements.
 */
#ifndef BUTLER_TOPICS_SCHEDULES_H
#define BUTLER_TOPICS_SCHEDULES_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "bridge/link/mqtt_link.h"
#include "bridge/core/runtime.h"
#include "bridge/core/status.h"
#include "bridge/model/schedule_store.h"

/* Start-up (main thread): the in-memory list. */
enum butler_status schedules_setup(const struct butler_config *config);
/* Start the scheduler thread when scheduler.enable (after the link started). */
enum butler_status schedules_start(struct butler_runtime *runtime);
/* Stop and join the scheduler thread; then free everything. */
void schedules_stop(void);
void schedules_teardown(void);

/* Direct family handler for <root>/schedules/+ (network thread). */
void schedules_on_message(const struct mqtt_message *message, void *context);

#endif
