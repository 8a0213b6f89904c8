/*
 * influxdb.node_measurements (contract 9.3): the Node.js Butler's InfluxDB
 * measurements, names, tags and fields as it writes them (reference 7.5), so
 * an existing Grafana dashboard keeps working. Each comes from one of our own
 * topics (docs/influxdb.md lists the mapping and what we cannot fill):
 *   <root>/events/task/failed/+     reload_task_failed
 *   <root>/events/task/success/+    reload_task_success
 *   <root>/sense/license/server     qlik_sense_server_license
 *   <root>/sense/license/access     qlik_sense_license (one point per type)
 *   <root>/events/license/released/+  qlik_sense_license_release
 *   <root>/events/sense/version/changed  qlik_sense_version
 *   Butler's own memory every influxdb.butler_interval_s  butler_memory_usage
 * Points go through route_influxdb.c (same batches, spool and guarantee).
 */
#ifndef BUTLER_TOPICS_ROUTE_INFLUXDB_NODE_H
#define BUTLER_TOPICS_ROUTE_INFLUXDB_NODE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/clients/line_protocol.h"
#include "config/config.h"
#include "topics/message.h"

enum { INFLUXDB_NODE_FILTERS = 6, INFLUXDB_NODE_FILTER_MAX = 300 };

/* The topic filters to subscribe (with the topic root), none when
 * node_measurements is off. Returns how many were written to filters[]. */
size_t route_influxdb_node_filters(const struct butler_config *config,
                                   char filters[][INFLUXDB_NODE_FILTER_MAX], size_t max);

/* Does a node measurement come from `topic`? Network thread; no allocation. */
bool route_influxdb_node_wanted(const struct butler_config *config, const char *topic);

/*
 * Pure (unit-tested): the points of the message on `topic` into `lp` (none
 * for a topic that has no node measurement); `*sequence` advances per point.
 * Returns how many points were added.
 */
size_t route_influxdb_node_points(const struct butler_config *config, const char *topic,
                                  const cJSON *event, uint64_t received_wall_ms, uint64_t *sequence,
                                  struct line_protocol *lp);

/* Pure: one butler_memory_usage point from the given figures (bytes). */
enum butler_status route_influxdb_node_memory(const struct butler_config *config,
                                              uint64_t heap_used, uint64_t heap_total,
                                              uint64_t mapped, uint64_t rss, int64_t time_ns,
                                              struct line_protocol *lp);

/* Worker thread: add the points of `message` (see route_influxdb_take). */
bool route_influxdb_node_take(const struct butler_config *config,
                              const struct topic_message *message, const cJSON *event);

/* Writer thread: Butler's memory now, as one point. */
void route_influxdb_node_memory_now(const struct butler_config *config);

#endif
