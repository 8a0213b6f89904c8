/*
 * QRS enrichment of Sense events: the "qrs" object of an event (contract
 * 3.2), read from QRS within a deadline. Used by the event delivery
 * (topics/events.c) on worker threads; knows nothing about publishing.
 */
#ifndef BUTLER_TOPICS_EVENT_ENRICHMENT_H
#define BUTLER_TOPICS_EVENT_ENRICHMENT_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "bridge/core/status.h"
#include "bridge/model/sense_event.h"
#include "config/config.h"

/* Start-up (main thread, before any worker runs): remember the QRS settings,
 * with enrichment's short timeouts and single attempt. `config` must outlive
 * every enrichment (its strings are shared, not copied). */
void event_enrichment_setup(const struct butler_config *config);

/*
 * Worker thread: fill `out` (a cJSON object owned by the caller) with the
 * "qrs" object of `event`, calling QRS only while the monotonic `deadline`
 * allows. BUTLER_OK, or an error with `error` set (the caller then publishes
 * "qrs": null and the error as "enrichError"). The thread's QRS and HTTP
 * clients are created on first use and freed when the thread exits.
 */
enum butler_status event_enrichment_run(const struct sense_event *event, uint64_t deadline,
                                        cJSON *out, char *error, size_t error_size);

#endif
