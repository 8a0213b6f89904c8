/*
 * Sense events (contract 3.2): turn an accepted UDP datagram into an MQTT
 * event on <root>/events/task/<outcome>/<taskId> or
 * <root>/events/engine/reload-failed/<appId>, plus the Node.js Butler legacy
 * topics when mqtt.legacy_topics is set.
 *
 * Without QRS the event is published at once from the UDP publisher thread
 * (asynchronous QoS 1 publishes; a publish the broker never acknowledged is
 * published again). With QRS the event goes to a worker, which enriches it
 * within EVENTS_ENRICH_BUDGET_MS and then publishes it with "qrs": {...}, or
 * with "qrs": null and "enrichError" when QRS did not answer in time.
 */
#ifndef BUTLER_TOPICS_EVENTS_H
#define BUTLER_TOPICS_EVENTS_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/runtime.h"
#include "bridge/status.h"
#include "bridge/udp_datagram.h"

enum {
    EVENTS_ENRICH_BUDGET_MS = 5000, /* QRS enrichment never delays an event longer */
    EVENTS_RETRY_MAX = 65536,       /* fast-path publishes waiting to be sent again */
    EVENTS_LOG_TAIL_LINES = 20,
    EVENTS_LOG_TAIL_MAX_BYTES = 8192,
};

/* Start-up: remember the runtime. Call before udp_ingress_start. */
enum butler_status events_setup(struct butler_runtime *runtime);
/* After the UDP ingress stopped: free fast-path publishes never acknowledged. */
void events_teardown(void);

/* udp_ingress_sink callbacks; `context` is the struct butler_runtime. Run on
 * the UDP publisher thread. */
enum butler_status events_deliver(const struct udp_event *event, uint64_t received_wall_ms,
                                  void *context);
void events_idle(void *context);

/*
 * The event JSON (contract 3.2) as a cJSON object owned by the caller.
 * `qrs` (may be NULL) is added as "qrs" (the object is copied); when
 * `enrich_error` is not NULL, "qrs": null and "enrichError" are added.
 * Pure. NULL only when out of memory.
 */
cJSON *events_build_json(const struct udp_event *event, uint64_t received_wall_ms, const cJSON *qrs,
                         const char *enrich_error);

/* The event's topic under `root`. BUTLER_ERR_TOO_LARGE when it does not fit. Pure. */
enum butler_status events_topic(const char *root, const struct udp_event *event, char *out,
                                size_t out_size);

#endif
