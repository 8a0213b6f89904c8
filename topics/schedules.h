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
 * the network thread only records messages; HTTP threads call the API below.
 */
#ifndef BUTLER_TOPICS_SCHEDULES_H
#define BUTLER_TOPICS_SCHEDULES_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "bridge/link/mqtt_link.h"
#include "bridge/core/runtime.h"
#include "bridge/core/status.h"

/* Start-up (main thread): the in-memory list. */
enum butler_status schedules_setup(const struct butler_config *config);
/* Start the scheduler thread when scheduler.enable (after the link started). */
enum butler_status schedules_start(struct butler_runtime *runtime);
/* Stop and join the scheduler thread; then free everything. */
void schedules_stop(void);
void schedules_teardown(void);

/* Direct family handler for <root>/schedules/+ (network thread). */
void schedules_on_message(const struct mqtt_message *message, void *context);

/*
 * HTTP API helpers (HTTP threads). Writes publish the retained record and
 * wait up to timeout_ms for the broker (BUTLER_ERR_NOT_CONNECTED/TIMEOUT ->
 * 503); BUTLER_ERR_NOT_FOUND for an unknown id; BUTLER_ERR_INVALID with
 * `error` set for a bad body, BUTLER_ERR_DENIED over scheduler.max_schedules. Returned JSON is
 * owned by the caller.
 */
cJSON *schedules_list(const char *id, bool *found);
enum butler_status schedules_create(struct butler_runtime *runtime, const char *body,
                                    size_t body_length, int timeout_ms, cJSON **created,
                                    char *error, size_t error_size);
enum butler_status schedules_delete(struct butler_runtime *runtime, const char *id, int timeout_ms);
/* id NULL = every schedule. *out: the changed schedule(s) as an array. */
enum butler_status schedules_set_state(struct butler_runtime *runtime, const char *id, bool start,
                                       int timeout_ms, cJSON **out);
/* "<id>: cron status: Running|Stopped\n" per schedule (caller frees). */
char *schedules_status_text(void);

#endif
