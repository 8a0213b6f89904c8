/*
 * A task-start request: the schema every ingress that starts Sense tasks
 * produces and the task-start handler (topics/task_start.c) consumes. The
 * MQTT topics <root>/task/start[/<taskId>] and qliksense/start_task carry it
 * as their payload; the HTTP API (bridge/ingress/http_body.c) builds such a
 * payload and checks it with the same parser before publishing it, so an
 * HTTP caller gets a 400 for exactly what the handler would refuse.
 *
 * Pure: no I/O, no globals; any thread.
 */
#ifndef BUTLER_MODEL_TASK_REQUEST_H
#define BUTLER_MODEL_TASK_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include "bridge/core/status.h"

enum {
    /* Largest task-start request or result message; the same cap as every
     * command payload (TOPIC_PAYLOAD_MAX, checked in topics/task_start.h). */
    TASK_MESSAGE_MAX = 1024 * 1024,
    TASK_REQUEST_ID_MAX = 64,
    TASK_SELECTORS_MAX = 256,
    TASK_KV_MAX = 256,
    TASK_TEXT_MAX = 1024, /* names, tags, custom property names/values, kv fields */
};

enum task_selector_kind {
    TASK_SELECT_ID,
    TASK_SELECT_NAME,
    TASK_SELECT_TAG,
    TASK_SELECT_CUSTOM_PROPERTY,
};

struct task_selector {
    enum task_selector_kind kind;
    char *value;          /* task id, name or tag; custom property name for CPs */
    char *property_value; /* custom property value (CP selectors only) */
    bool valid;           /* false: e.g. a task id that is not a GUID */
};

struct task_kv_item {
    char *namespace_name;
    char *key;
    char *value;
    long long ttl_ms; /* 0 = no expiry */
};

struct task_request {
    char request_id[TASK_REQUEST_ID_MAX + 1];
    bool request_id_generated;
    struct task_selector *selectors;
    size_t selector_count;
    struct task_kv_item *kv;
    size_t kv_count;
    bool all_task_ids_must_exist;
    /* "follow": true: start with the synchronous start and follow each run to
     * its end (contract 9.1, topics/task_follow.h). */
    bool follow;
};

/*
 * Parse a task-start payload. `topic_task_id` is the <taskId> of
 * <root>/task/start/<taskId> (NULL otherwise); `bare_guid_only` is set for the
 * legacy qliksense/start_task topic. On BUTLER_OK *request is filled and owned
 * by the caller (task_request_clear). On BUTLER_ERR_INVALID / TOO_LARGE,
 * `error` holds the reason and request->request_id is still set (taken from
 * the payload when it could be read, generated otherwise) so the answer can
 * carry it. Pure: no I/O, any thread.
 */
enum butler_status task_request_parse(const char *topic_task_id, bool bare_guid_only,
                                      const unsigned char *payload, size_t payload_length,
                                      struct task_request *request, char *error, size_t error_size);

void task_request_clear(struct task_request *request);

/* True for 8-4-4-4-12 hexadecimal, either case. */
bool task_is_guid(const char *text, size_t length);

/* A random (version 4) UUID in lower case into out[37]. */
void task_make_uuid(char out[37]);

/* True if `text` (length bytes) is well-formed UTF-8 without NUL bytes. */
bool task_valid_utf8(const unsigned char *text, size_t length);

#endif
