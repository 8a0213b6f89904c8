/*
 * Qlik Cloud reload events (CONTRACT.md 9.2): the family of
 * <root>/cloud/webhook/<tenant> (signed deliveries the HTTP ingress
 * published) and of qlik_cloud.mqtt_topic (bodies an existing forwarder
 * publishes, the Node.js Butler's layout). Each finished reload becomes one
 * <root>/events/cloud/reload/<ok|failed>/<appId> message, enriched through
 * the tenant's REST API when it can be (else with "enrichError").
 *
 * De-duplication: one reload id (per tenant) within 24 h is one event: a
 * resent delivery (same event id) carries the same reload id, and so do
 * com.qlik.v1.app.reload.finished and com.qlik.v1.reload.finished for one
 * reload (bounded map, CLOUD_DEDUP_MAX entries, the oldest dropped first).
 * The reloads published are also written to spool.dir/cloud-seen.ring
 * (bridge/store/seen_ring.h) and read back at start-up, so the window holds
 * across a restart; only published ones, so a spooled delivery replayed after
 * a crash is published, not taken for a duplicate.
 */
#ifndef BUTLER_TOPICS_CLOUD_H
#define BUTLER_TOPICS_CLOUD_H

#include <stdbool.h>

#include "bridge/core/runtime.h"
#include "bridge/core/status.h"
#include "topics/message.h"

enum {
    CLOUD_DEDUP_MAX = 50000, /* remembered reload ids, hard cap */
};

#define CLOUD_DEDUP_TTL_MS (24ULL * 3600 * 1000)

/* Start-up (main thread, before any message): keep `runtime`, create the
 * de-duplication map, load it from cloud-seen.ring (opened, created in
 * spool.dir if need be) and subscribe qlik_cloud.mqtt_topic when set. */
enum butler_status cloud_setup(struct butler_runtime *runtime);
void cloud_teardown(void);

/* True for qlik_cloud.tenants being configured (the webhook family's filter). */
bool cloud_wanted(const struct butler_config *config);

/* Network thread: true when `topic` is a forwarder's (qlik_cloud.mqtt_topic). */
bool cloud_forwarded(const char *topic);

/* The family's handler (worker thread); owns `message`. */
void cloud_run(struct topic_worker *worker, struct topic_message *message);

#endif
