/*
 * Task-start results for callers that wait for them: the HTTP API publishes
 * a request on <root>/task/start and blocks until the answer carrying its
 * requestId arrives on <root>/task/result (which may come from any Butler
 * instance sharing the command topics).
 *
 * A bounded table of waiters keyed by requestId (TASK_RESULT_WAITERS_MAX).
 * task_result_on_message() is the `direct` handler of the <root>/task/result
 * family: it runs on the MQTT network thread, never blocks, and only copies
 * the payload to a matching waiter. All functions are thread-safe.
 */
#ifndef BUTLER_TASK_RESULT_H
#define BUTLER_TASK_RESULT_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "bridge/link/mqtt_link.h"
#include "bridge/core/status.h"

enum {
    /* http.threads is at most 512 and each HTTP thread waits for at most one
     * result, so this never refuses a caller of a correctly sized server. */
    TASK_RESULT_WAITERS_MAX = 512,
    /* Finished messages one waiter keeps: a request starts at most this many tasks. */
    TASK_FINISHED_MAX = 1024,
};

struct task_result_waiter;

/* Register interest in `request_id` BEFORE publishing the request, so an
 * answer that comes back quickly is not missed. BUTLER_ERR_FULL when every
 * slot is taken. *out is released with task_result_release(). */
enum butler_status task_result_register(const char *request_id, struct task_result_waiter **out);

/* Block up to `timeout_ms` for the answer. BUTLER_OK: *result_out is the
 * answer's JSON text, NUL-terminated, owned by the caller (free()).
 * BUTLER_ERR_TIMEOUT otherwise. */
enum butler_status task_result_wait(struct task_result_waiter *waiter, int timeout_ms,
                                    char **result_out, size_t *length_out);

void task_result_release(struct task_result_waiter *waiter);

/* The direct handler for <root>/task/result (MQTT network thread). */
void task_result_on_message(const struct mqtt_message *message, void *context);

/*
 * The same for the end of followed runs (contract 9.1, ?wait=finished):
 * register BEFORE publishing the request (a run may end before its start is
 * answered); every <root>/task/finished message carrying `request_id` is
 * kept (at most TASK_FINISHED_MAX). Released with task_result_release().
 */
enum butler_status task_result_register_finished(const char *request_id,
                                                 struct task_result_waiter **out);

/* Block up to `timeout_ms` until a finished message of each of the `count`
 * execution ids arrived. BUTLER_OK: *finished_out is a JSON array of them in
 * that order, owned by the caller (cJSON_Delete). BUTLER_ERR_TIMEOUT otherwise. */
enum butler_status task_result_wait_finished(struct task_result_waiter *waiter,
                                             const char *const *execution_ids, size_t count,
                                             int timeout_ms, cJSON **finished_out);

/* The direct handler for <root>/task/finished/+ (MQTT network thread). */
void task_result_on_finished(const struct mqtt_message *message, void *context);

/* Waiters currently registered (for tests and /metrics). */
size_t task_result_waiting(void);

#endif
