/*
 * The key-value store as the HTTP API (bridge/ingress/http_store.c) sees it:
 * the record shape, reads of the in-memory view and writes through the
 * broker. This is an interface: topics/kv.c implements it, because that is
 * where the view is kept (from the retained <root>/kv/# messages, see
 * topics/kv.h). The ingress includes only this header, so it never reaches
 * into a handler's files; the handler includes it too, so the two cannot
 * drift.
 */
#ifndef BUTLER_MODEL_KV_STORE_H
#define BUTLER_MODEL_KV_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "bridge/core/status.h"

struct butler_runtime;

enum {
    KV_NAME_MAX = 1024, /* bytes in a namespace or key name */
};

/* One pair as the view holds it and <root>/kv/<ns>/<key> carries it. */
struct kv_record {
    char *namespace_name;
    char *key;
    char *value;
    long long ttl_ms;
    uint64_t created_ms;
    uint64_t expires_ms; /* 0 = never */
};

/* Free a record's strings (kv_lookup and kv_record_parse fill them). */
void kv_record_clear(struct kv_record *record);

/* Pairs expired at the time of the lookup count as absent. */
enum kv_lookup {
    KV_FOUND,
    KV_NO_KEY,
    KV_NO_NAMESPACE,
};

/*
 * Store one pair: evicts the oldest-written key first when the namespace is
 * full, publishes the retained record and waits for the broker's PUBACK, then
 * updates the view (read-your-writes). timeout_ms > 0: give up after that
 * long (BUTLER_ERR_NOT_CONNECTED / TIMEOUT: answer 503); timeout_ms <= 0:
 * wait for the broker like every worker publish (publish_reliably).
 * BUTLER_ERR_INVALID bad names, BUTLER_ERR_TOO_LARGE value over
 * kv.max_value_bytes, BUTLER_ERR_DENIED kv.max_namespaces reached; `error`
 * says which. Worker or HTTP threads, never the network thread.
 */
enum butler_status kv_put(struct butler_runtime *runtime, const char *namespace_name,
                          const char *key, const char *value, long long ttl_ms, int timeout_ms,
                          char *error, size_t error_size);

/* Delete one pair / a whole namespace (empty retained messages, acknowledged).
 * BUTLER_ERR_NOT_FOUND when absent. Same threads and timeouts as kv_put. */
enum butler_status kv_delete(struct butler_runtime *runtime, const char *namespace_name,
                             const char *key, int timeout_ms);
enum butler_status kv_delete_namespace(struct butler_runtime *runtime, const char *namespace_name,
                                       int timeout_ms);

/* Reads from the view (copies; any thread). */
enum kv_lookup kv_lookup(const char *namespace_name, const char *key, struct kv_record *record);
cJSON *kv_namespaces(void);
cJSON *kv_keys(const char *namespace_name, bool *exists);

#endif
