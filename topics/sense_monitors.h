/*
 * Sense monitors (contract 8.3): the server licence, access licences, the
 * Sense version, the heartbeat and the licence release run (license_release.c).
 *
 * Every firing is a topic message: a timer thread publishes
 * <root>/monitor/run/<name> (license_server, license_access, sense_version,
 * heartbeat, license_release) at start and then every interval of that
 * monitor; the "monitor" topic family runs it on a worker, so an operator can
 * also run a monitor at once by publishing to that topic, and a run is
 * spooled like any command. Monitors that are not enabled refuse to run.
 *
 * Results are retained topics (<root>/sense/license/server,
 * <root>/sense/license/access, <root>/sense/version) and events under
 * <root>/events/... that routes turn into alerts.
 */
#ifndef BUTLER_TOPICS_SENSE_MONITORS_H
#define BUTLER_TOPICS_SENSE_MONITORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/runtime.h"
#include "bridge/core/status.h"
#include "bridge/link/mqtt_link.h"
#include "config/config.h"
#include "topics/message.h"

/* True when any monitor is enabled (the run topic is then subscribed). */
bool sense_monitors_wanted(const struct butler_config *config);
/* True when the version monitor is enabled (its retained topic is then read). */
bool sense_version_wanted(const struct butler_config *config);

/* Start the timer thread (after the link starts); no thread when nothing is enabled. */
enum butler_status sense_monitors_start(struct butler_runtime *runtime);
/* Stop and join the timer thread; safe to call when it never started. */
void sense_monitors_stop(void);

/* Worker: run the monitor named by the last topic level (owns `message`). */
void sense_monitors_run(struct topic_worker *worker, struct topic_message *message);

/* Network thread: the retained <root>/sense/version, remembered as the
 * version to compare the next reading with (it survives restarts that way). */
void sense_version_on_message(const struct mqtt_message *message, void *context);

/* ---- pure parts (unit-tested) ---- */

/*
 * The date of the "Valid To:" line of QRS keyDetails (YYYY-MM-DD, the rest of
 * the line ignored) into date_out, and the end of that day (UTC) in
 * *valid_until_ms. False when there is no such line or it holds no date.
 */
bool sense_license_valid_to(const char *key_details, char date_out[11], uint64_t *valid_until_ms);

/* Whole days from `now_ms` to `valid_until_ms`, negative once past. */
long sense_license_days_left(uint64_t valid_until_ms, uint64_t now_ms);

#endif
