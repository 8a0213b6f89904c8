/*
 * The schedules as the HTTP API (bridge/ingress/http_store.c) sees them:
 * listing the in-memory list and changing it through the broker. This is an
 * interface: topics/schedules.c implements it, because that is where the
 * list is kept (from the retained <root>/schedules/+ messages, see
 * topics/schedules.h). The ingress includes only this header, so it never
 * reaches into a handler's files; the handler includes it too, so the two
 * cannot drift.
 */
#ifndef BUTLER_MODEL_SCHEDULE_STORE_H
#define BUTLER_MODEL_SCHEDULE_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "bridge/core/status.h"

struct butler_runtime;

/*
 * HTTP API helpers (HTTP threads). Writes publish the retained record and
 * wait up to timeout_ms for the broker (BUTLER_ERR_NOT_CONNECTED/TIMEOUT ->
 * 503); BUTLER_ERR_NOT_FOUND for an unknown id; BUTLER_ERR_INVALID with
 * `error` set for a bad body, BUTLER_ERR_DENIED over scheduler.max_schedules. Returned JSON is
 * owned by the caller.
 */
cJSON *schedules_list(const char *id, bool *found);
enum butler_status schedules_create(struct butler_runtime *runtime, const char *body,
                                    size_t body_length, int timeout_ms, cJSON **created,
                                    char *error, size_t error_size);
enum butler_status schedules_delete(struct butler_runtime *runtime, const char *id, int timeout_ms);
/* id NULL = every schedule. *out: the changed schedule(s) as an array. */
enum butler_status schedules_set_state(struct butler_runtime *runtime, const char *id, bool start,
                                       int timeout_ms, cJSON **out);
/* [{"id", "name", "cron", "timezone", "taskId", "state", "next"}] for the
 * status page; next is null for a stopped schedule. Caller owns; NULL on NOMEM. */
cJSON *schedules_overview(void);
/* "<id>: cron status: Running|Stopped\n" per schedule (caller frees). */
char *schedules_status_text(void);

#endif
