/*
 * Task start: <root>/task/start, <root>/task/start/<taskId> and (legacy)
 * qliksense/start_task. A message names Qlik Sense tasks by id, name, tag or
 * custom property; Butler resolves them through QRS, applies the
 * task_start.allow list, stores any key-values, starts the tasks and answers
 * exactly once on <root>/task/result (and the MQTT v5 Response Topic).
 *
 * The request parser is separate from the handler so it can be unit-tested
 * and fuzzed without a broker or QRS.
 */
#ifndef BUTLER_TASK_START_H
#define BUTLER_TASK_START_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/status.h"
#include "topics/topics.h"

enum {
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

/* ---- handler (topics/task_start.c) ---- */

struct task_start_state;

enum butler_status task_start_state_create(const struct butler_config *config,
                                           struct task_start_state **out);
void task_start_state_destroy(struct task_start_state *state);

/* Recovery: an answer from the spool (the DONE record `spool_id`) re-enters
 * the requestId window, so a request redelivered after a restart is not
 * started again. Start-up thread. */
void task_start_remember_answer(struct task_start_state *state, const char *answer, size_t length,
                                uint64_t answered_wall_ms, uint64_t spool_id);

/* Worker entry point: owns and frees `message`. */
void task_start_run(struct topic_worker *worker, struct topic_message *message);
/* Same for qliksense/start_task (bare GUID payloads only). */
void task_start_run_legacy(struct topic_worker *worker, struct topic_message *message);

#endif
