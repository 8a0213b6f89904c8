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
 *
 * Broker outage (contract 7): an event that cannot be published at once
 * (broker down, or the UDP ring above its threshold) is recorded in the
 * spool and published after reconnect; the record is marked done on the
 * PUBACK, and unfinished records are published after a restart. Events
 * published at once with the broker up never touch the spool.
 */
#ifndef BUTLER_TOPICS_EVENTS_H
#define BUTLER_TOPICS_EVENTS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/runtime.h"
#include "bridge/core/status.h"
#include "bridge/model/sense_event.h"

enum {
    /* QRS enrichment never delays an event longer; room to wait ~4.5 s for QRS
     * to show the run final (it lags the log line) and still read the log. */
    EVENTS_ENRICH_BUDGET_MS = 8000,
    /* Event messages held for the broker (each also recorded in the spool);
     * past EVENTS_BACKLOG_MAX_BYTES of text in memory only their spool ids are
     * kept and the text is read back from the spool when its turn comes. */
    EVENTS_BACKLOG_MAX = 65536,
    EVENTS_BACKLOG_MAX_BYTES = 2 * 1024 * 1024,
    EVENTS_LOG_TAIL_LINES = 20,
    EVENTS_LOG_TAIL_MAX_BYTES = 8192,
};

/* Start-up: remember the runtime. Call before udp_ingress_start. */
enum butler_status events_setup(struct butler_runtime *runtime);
/* After the UDP ingress and the link stopped: free the backlog (its messages
 * stay in the spool for the next start). */
void events_teardown(void);

/* Family name of event messages in the spool (see topics_spool_record). */
#define EVENTS_SPOOL_FAMILY "udp_event"

/* udp_ingress_sink callbacks; `context` is the struct butler_runtime. Run on
 * the UDP publisher thread. events_spill records the event in the spool and
 * queues it behind older ones (broker down, ring above its threshold, or
 * shutdown); BUTLER_ERR_FULL when the spool is at spool.max_bytes. */
enum butler_status events_deliver(const struct sense_event *event, uint64_t received_wall_ms,
                                  void *context);
enum butler_status events_spill(const struct sense_event *event, uint64_t received_wall_ms,
                                void *context);
void events_idle(void *context);

/*
 * Ready-made event messages from another UDP port (topics/users.c: the
 * proxy's session events), published through the same backlog and spool as
 * Sense events: [0] is the event, the rest its legacy copies (at most
 * EVENTS_PREPARED_MAX in all). Without `spill`: published now when nothing
 * older waits and the broker takes it (BUTLER_OK), else BUTLER_ERR_NOT_CONNECTED,
 * FULL or TIMEOUT (not taken: offer again or spill). With `spill`: recorded in
 * the spool and queued behind older ones, published after reconnect or the
 * next start; BUTLER_ERR_FULL when the spool is full (not taken). `type`
 * labels butler_events_published_total (a string literal). Copies everything.
 * Run on a UDP publisher thread.
 */
enum { EVENTS_PREPARED_MAX = 2 };
struct events_prepared {
    const char *topic;
    const char *payload; /* NUL-terminated */
};
enum butler_status events_deliver_prepared(const struct events_prepared *messages, size_t count,
                                           uint64_t received_wall_ms, const char *type, bool spill);

/*
 * Start-up recovery (topics_recover, main thread): an event message found
 * unfinished in the spool. It is published, before any new event, once the
 * UDP ingress runs and the broker is up; the record is marked done on the
 * PUBACK. Not BUTLER_OK: left unfinished for the next start.
 */
enum butler_status events_recovered(const char *topic, const void *payload, size_t length,
                                    uint64_t spool_id, uint64_t received_wall_ms);

/*
 * A task event heard from a QRS change notification (topics/notifications.c),
 * on a worker thread: enriched and published like a UDP event, with
 * "source": "qrs". The caller has already claimed the ExecutionId.
 */
enum butler_status events_deliver_qrs(const struct sense_event *event, uint64_t received_wall_ms);

/*
 * The event JSON (contract 3.2) as a cJSON object owned by the caller.
 * `qrs` (may be NULL) is added as "qrs" (the object is copied); when
 * `enrich_error` is not NULL, "qrs": null and "enrichError" are added.
 * Pure. NULL only when out of memory.
 */
cJSON *events_build_json(const struct sense_event *event, uint64_t received_wall_ms,
                         const cJSON *qrs, const char *enrich_error);

/* The event's topic under `root`. BUTLER_ERR_TOO_LARGE when it does not fit. Pure. */
enum butler_status events_topic(const char *root, const struct sense_event *event, char *out,
                                size_t out_size);

#endif
