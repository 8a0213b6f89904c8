/*
 * The key-value store (the Node.js Butler's /v4/keyvalues API), kept on the
 * broker: each pair is a retained message <root>/kv/<namespace>/<key> with
 * payload {"namespace","key","value","ttl","createdAt","expiresAt"?}; a TTL is
 * also the MQTT v5 message expiry. Deleting publishes an empty retained
 * message. Every Butler subscribes (not shared) to <root>/kv/# and keeps a
 * bounded in-memory view that answers reads, so the store survives restarts
 * and every instance on the broker sees the same pairs.
 *
 * Limits: kv.max_namespaces, kv.max_keys_per_namespace (a new key in a full
 * namespace evicts the oldest-written key, as the Node.js Butler's LRU store
 * drops its oldest entry), kv.max_value_bytes.
 *
 * With an MQTT 3.1.1 broker (no message expiry) Butler deletes expired pairs
 * itself from expiresAt: kv_housekeeping(), on the main thread once a second.
 *
 * The calls the HTTP API makes (reads of the view, writes through the broker)
 * are declared in bridge/model/kv_store.h and implemented in topics/kv.c.
 */
#ifndef BUTLER_TOPICS_KV_H
#define BUTLER_TOPICS_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "bridge/link/mqtt_link.h"
#include "bridge/core/runtime.h"
#include "bridge/core/status.h"
#include "bridge/model/kv_store.h"

/* ---- pure parts (unit-tested) ---- */

/* Non-empty, at most KV_NAME_MAX bytes, UTF-8, none of / + # (topic levels). */
bool kv_name_valid(const char *name);

/* The retained payload for one pair (caller frees). BUTLER_ERR_NOMEM only. */
enum butler_status kv_record_build(const char *namespace_name, const char *key, const char *value,
                                   long long ttl_ms, uint64_t now_wall_ms, char **payload);

/* Parse a retained payload; BUTLER_ERR_INVALID when it is not a kv record.
 * On BUTLER_OK the caller owns *record (kv_record_clear). */
enum butler_status kv_record_parse(const unsigned char *payload, size_t length,
                                   struct kv_record *record);

/* Split "<root>/kv/<ns>/<key>" into its names (pointers into `topic`,
 * lengths out). False for anything else. */
bool kv_topic_split(const char *root, const char *topic, const char **namespace_name,
                    size_t *namespace_length, const char **key, size_t *key_length);

/* The bounded view: namespaces of pairs. Not thread-safe by itself. */
struct kv_view;

enum butler_status kv_view_create(size_t max_namespaces, size_t max_keys, struct kv_view **out);
void kv_view_destroy(struct kv_view *view);
/* Insert or replace (copies). BUTLER_ERR_FULL when a new namespace or key
 * would pass a cap: nothing is changed then. */
enum butler_status kv_view_put(struct kv_view *view, const struct kv_record *record,
                               uint64_t written_ms);
/* True if the pair existed. An emptied namespace disappears. */
bool kv_view_remove(struct kv_view *view, const char *namespace_name, const char *key);
/* Pairs expired at `now_ms` count as absent. *record (may be NULL) receives
 * copies on KV_FOUND, owned by the caller. */
enum kv_lookup kv_view_lookup(const struct kv_view *view, const char *namespace_name,
                              const char *key, uint64_t now_ms, struct kv_record *record);
/* Key count of a namespace (expired included), 0 when absent. */
size_t kv_view_key_count(const struct kv_view *view, const char *namespace_name);
bool kv_view_namespace_exists(const struct kv_view *view, const char *namespace_name);
/* The oldest-written key of a namespace (copy into out), false when empty. */
bool kv_view_oldest(const struct kv_view *view, const char *namespace_name, char *out,
                    size_t out_size);
/* JSON array of namespace names / of {"key"} objects (NULL: out of memory or,
 * for keys, no such namespace -> *exists false). */
cJSON *kv_view_namespaces(const struct kv_view *view);
cJSON *kv_view_keys(const struct kv_view *view, const char *namespace_name, uint64_t now_ms,
                    bool *exists);
/* Remove up to `max` pairs expired at now_ms, appending their (namespace,
 * key) pairs to `out` as a JSON array of [ns, key]. Returns how many. */
size_t kv_view_take_expired(struct kv_view *view, uint64_t now_ms, size_t max, cJSON *out);

/* ---- the daemon's store (topics/kv.c) ---- */

/* Start-up (main thread) and shutdown. */
enum butler_status kv_setup(const struct butler_config *config);
void kv_teardown(void);

/* Direct family handler for <root>/kv/#: network thread, never blocks long. */
void kv_on_message(const struct mqtt_message *message, void *context);

/* Main thread, once a second: drop expired pairs from the view; with an MQTT
 * 3.1.1 broker also delete them on the broker (empty retained). */
void kv_housekeeping(struct butler_runtime *runtime);

#endif
