/*
 * Topic families: what Butler does with a message on each topic it consumes.
 * topics.c owns the table (topic filter -> family) and the hand-off from the
 * MQTT network thread to the worker pool; one file per family holds its
 * behaviour (task_start.c: start Qlik Sense tasks, ...). Handlers include
 * topics/message.h and topics/handoff.h, never this header (main.c does).
 */
#ifndef BUTLER_TOPICS_H
#define BUTLER_TOPICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/runtime.h"
#include "bridge/core/status.h"

/* Register subscriptions and the message handler on rt->link. Start-up only. */
enum butler_status topics_setup(struct butler_runtime *runtime);

/* Before shutdown: unsubscribe the command topics so no new work arrives. */
void topics_stop_intake(struct butler_runtime *runtime);

/* Free what topics_setup allocated (after the link and pool are gone). */
void topics_teardown(void);

/* Start-up (after the family filters are set, i.e. from routes_setup): does
 * `filter` overlap the filter of a family Butler subscribed for itself?
 * Routes use it so a joined route subscription never doubles a command. */
bool topics_family_overlaps(const char *filter);

/* Worker pool callbacks (per-thread QRS and HTTP clients). */
void *topics_worker_init(int worker_index, void *context);
void topics_worker_cleanup(void *worker_state, void *context);

/* Recovery: hand work found in the spool to the workers, and answers of
 * recently finished work to the families that de-duplicate. Start-up only,
 * after the worker pool exists. */
enum butler_status topics_recover(struct butler_runtime *runtime);
/* Start the feeder thread (topics/feeder.h), which hands the recovered work
 * and then every consumed message to the workers. After the link starts. */
void topics_replay(struct butler_runtime *runtime);
/* Stop handing work to the workers (shutdown; what is left stays in the
 * spool). The thread itself is joined by topics_teardown. */
void topics_stop_replay(void);

#endif
