/*
 * Routes `to: influxdb` (contract 9.3): each matching message becomes one
 * point (bridge/clients/line_protocol.h) from the route's measurement, tags
 * and fields templates, plus influxdb.tags; written in batches by one writer
 * thread through bridge/clients/influxdb.c.
 *
 * Nothing is lost (docs/guarantees.md): a message whose point waits in the
 * open batch stays unfinished in the spool; when the batch closes (by count,
 * influxdb.batch_max, or by age, influxdb.flush_ms) it is written to the spool
 * as one record of family INFLUXDB_SPOOL_FAMILY and only then are its
 * messages marked finished. A batch record is finished only when InfluxDB
 * answered 2xx. While InfluxDB is down or answers 5xx/429 (or 401/403/404),
 * batches wait in the spool and are written later, oldest first, with a
 * backoff; a restart finds them there. A batch answered with another 4xx is
 * written again in halves, refused halves in halves down to single points:
 * each point refused on its own goes to
 * <root>/deadletter/<topic> with InfluxDB's reason, the others are written.
 * Points are timestamped in nanoseconds (the message's time, plus a sequence
 * number below the millisecond) so that writing a batch twice changes
 * nothing: InfluxDB keeps one point per series and time.
 *
 * Memory while InfluxDB is away: only the open batch (at most batch_max
 * points) and 16 bytes per waiting batch; the points are in the spool.
 */
#ifndef BUTLER_TOPICS_ROUTE_INFLUXDB_H
#define BUTLER_TOPICS_ROUTE_INFLUXDB_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/clients/line_protocol.h"
#include "bridge/core/runtime.h"
#include "bridge/core/status.h"
#include "config/config.h"
#include "topics/message.h"

#define INFLUXDB_SPOOL_FAMILY "influxdb"

enum {
    /* Lines and topics of one batch: the open batch's memory, and one record
     * (under SPOOL_RECORD_DATA_MAX). ~4,000 points of 250 bytes. */
    INFLUXDB_BATCH_BYTES_MAX = 1024 * 1024,
    INFLUXDB_QUEUE_MAX = 100000, /* batches waiting (the spool holds no more items) */
};

/* Start-up (main thread), before recovery: nothing when influxdb.url is
 * empty; else points are taken from then on. */
enum butler_status route_influxdb_setup(struct butler_runtime *runtime);
/* Start-up (main thread), once the spool is open and recovered: the writer. */
void route_influxdb_start(void);
/* Shutdown, before the spool closes: the open batch goes to the spool, the
 * writer stops (a write in flight ends first). */
void route_influxdb_stop(void);

/* Recovery (start-up, main thread): a batch record found in the spool. */
void route_influxdb_recovered(uint64_t spool_id, const unsigned char *lines, size_t length);

/*
 * Worker thread: make the point of `message` for `route` and add it to the
 * open batch. Returns true when the message must stay unfinished in the
 * spool (the caller calls topic_message_keep before freeing it): the batch
 * finishes it once the batch itself is spooled. A message whose templates
 * render no field is dead-lettered here.
 */
bool route_influxdb_take(const struct config_route *route, const struct topic_message *message,
                         const cJSON *event);

/* Add a point built elsewhere (node measurements, no message of its own).
 * `topic` names where it came from in a dead letter. Any thread. */
enum butler_status route_influxdb_add(const char *line, size_t length, const char *topic,
                                      uint64_t message_spool_id);

/*
 * Pure (unit-tested): the point of `message` through `route` into `lp`:
 * measurement, tags and fields rendered with `event` (may be NULL) and the
 * payload, `static_tags` added, timestamp in ns from the message's time
 * (timestamp, time, logTimestamp, receivedAt or at, as ISO 8601) or
 * `received_wall_ms`, plus `sequence` % 1,000,000 ns. `error` says why a
 * point could not be made (BUTLER_ERR_INVALID: no measurement or field).
 */
enum butler_status route_influxdb_point(const struct config_route *route,
                                        const struct config_header_list *static_tags,
                                        const cJSON *event, const char *payload,
                                        size_t payload_length, uint64_t received_wall_ms,
                                        uint64_t sequence, struct line_protocol *lp, char *error,
                                        size_t error_size);

/* Reserve `count` sequence numbers (sub-millisecond parts of timestamps);
 * returns the first. Any thread. */
uint64_t route_influxdb_next_sequence(uint64_t count);

/* Length of the first line of `lines` (at most `length` bytes), its '\n'
 * included; a '\n' inside a quoted string does not end a line. */
size_t route_influxdb_line_length(const char *lines, size_t length);

/* Nanoseconds for a point: the message's own time when it has one. */
int64_t route_influxdb_time_ns(const cJSON *event, uint64_t received_wall_ms, uint64_t sequence);

#endif
