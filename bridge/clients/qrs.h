/*
 * Client for the Qlik Sense Repository Service (QRS) REST API.
 *
 * HTTPS with the client certificate, key and CA exported from the QMC; a
 * fresh 16-character Xrfkey in both the query and X-Qlik-Xrfkey on every
 * call; X-Qlik-User from config. One struct qrs_client per worker thread: it
 * keeps its connection open, so a call costs no TLS handshake.
 * Not thread-safe: a client belongs to one thread.
 */
#ifndef BUTLER_QRS_H
#define BUTLER_QRS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "bridge/clients/http_client.h"
#include "bridge/core/status.h"
#include "config/config.h"

struct qrs_client;

/* Outcome of one logical QRS call (after retries). */
struct qrs_result {
    long http_status; /* last HTTP status, 0 if none arrived */
    int attempts;
    char error[256]; /* human-readable reason when not BUTLER_OK; may name hosts and
                      * ports: for the log, never for an answer (qrs_plain_reason) */
    bool verified;   /* a start: an attempt went unanswered and QRS confirmed the task
                      * started since, so it was not sent again */
};

enum butler_status qrs_client_create(const struct butler_config *config, bool (*should_stop)(void),
                                     struct qrs_client **out);
void qrs_client_destroy(struct qrs_client *client);

/* True when qrs.url is set. */
bool qrs_enabled(const struct butler_config *config);

/*
 * GET /qrs/<path>[?filter=<filter>]: `filter` (may be NULL) is URL-encoded
 * here. On BUTLER_OK *json_out is the parsed body, owned by the caller
 * (cJSON_Delete). 404 -> BUTLER_ERR_NOT_FOUND.
 */
enum butler_status qrs_get(struct qrs_client *client, const char *path, const char *filter,
                           cJSON **json_out, struct qrs_result *result);

/* The same with `route` as the call metric's label, for paths that carry ids
 * (one label per id would grow /metrics without bound). */
enum butler_status qrs_get_route(struct qrs_client *client, const char *route, const char *path,
                                 const char *filter, cJSON **json_out, struct qrs_result *result);

/*
 * GET /qrs/<path_and_query> as text (script logs): with tail_bytes > 0 only
 * the body's last tail_bytes are kept (*head_cut_out set when some were
 * dropped). On BUTLER_OK *text_out is NUL-terminated, owned by the caller
 * (free). 404 -> BUTLER_ERR_NOT_FOUND. Thread: the owning one.
 */
enum butler_status qrs_get_text(struct qrs_client *client, const char *route,
                                const char *path_and_query, size_t tail_bytes, char **text_out,
                                size_t *length_out, bool *head_cut_out, struct qrs_result *result);

/* POST /qrs/task/{id}/start. 204/2xx -> OK; 404 or 400 -> BUTLER_ERR_NOT_FOUND
 * (no such task); retryable failures are retried per the `retry` section, but
 * an attempt that got no clear refusal (a timeout, a broken connection, a 5xx)
 * may have been accepted: before each retry QRS is asked whether the task
 * started since the first attempt (qrs_task_started_since), and if so it is
 * not sent again (result->verified). */
enum butler_status qrs_task_start(struct qrs_client *client, const char *task_id,
                                  struct qrs_result *result);

/*
 * POST /qrs/task/{id}/start/synchronous: the execution session id QRS answers
 * ({"value": "<guid>"} or a bare JSON string, sense-interfaces.md 7.2) into
 * execution_id[37]; all zeros when Sense did not start the task. Retried as
 * qrs_task_start, but the check before a resend looks for the run the
 * unanswered attempt may have created (qrs_task_execution_since): when there
 * is one, its execution id is taken and the start is not sent again
 * (result->verified). 404 or 400 -> BUTLER_ERR_NOT_FOUND; an answer without
 * an id -> BUTLER_ERR_REMOTE. Thread: the owning worker.
 */
enum butler_status qrs_task_start_synchronous(struct qrs_client *client, const char *task_id,
                                              char execution_id[37], struct qrs_result *result);

/*
 * The execution id of a run of task `task_id` that QRS created at or after
 * `since_wall_ms`: GET /qrs/executionresult/full?filter=taskID eq {id} and
 * createdDate ge '{since}'. The earliest such result wins (a run's retries
 * share its execution id; a later result is someone else's start). BUTLER_OK
 * with execution_id[37] set; BUTLER_ERR_NOT_FOUND when QRS has no such run;
 * any other status when QRS could not tell. Thread: the owning worker.
 */
enum butler_status qrs_task_execution_since(struct qrs_client *client, const char *task_id,
                                            uint64_t since_wall_ms, char execution_id[37]);

/*
 * POST /qrs/task/start/many with the JSON array of `count` task ids (at most
 * QRS_START_MANY_MAX; an id may repeat, each occurrence is a start). One call
 * for several starts that wait together. 204/2xx -> OK for every id; 404 or
 * 400 -> BUTLER_ERR_NOT_FOUND (QRS refused the list: the caller starts the
 * tasks one by one to learn which); retried per the `retry` section.
 */
enum { QRS_START_MANY_MAX = 1000 };
/* (The same check before each retry: one call is accepted as a whole or not at
 * all, so any listed task started since the first attempt means it was.) */
enum butler_status qrs_task_start_many(struct qrs_client *client, const char *const *task_ids,
                                       size_t count, struct qrs_result *result);

/*
 * POST /qrs/<path_and_query> with `body` (sent as is, Content-Type JSON; NULL
 * sends "{}"). `route` labels the call metric (no ids in it). A JSON answer
 * is returned in *json_out (NULL for an empty body), owned by the caller.
 * 404/400 -> BUTLER_ERR_NOT_FOUND. Retried per the `retry` section.
 */
enum butler_status qrs_post(struct qrs_client *client, const char *route,
                            const char *path_and_query, const char *body, cJSON **json_out,
                            struct qrs_result *result);

/* DELETE /qrs/<path_and_query>. 2xx -> OK; 404/400 -> BUTLER_ERR_NOT_FOUND. */
enum butler_status qrs_delete(struct qrs_client *client, const char *route,
                              const char *path_and_query, struct qrs_result *result);

/* GET /qrs/task/full?filter=...; *tasks_out is a JSON array owned by the caller. */
enum butler_status qrs_find_tasks(struct qrs_client *client, const char *filter, cJSON **tasks_out,
                                  struct qrs_result *result);

/*
 * Did task `task_id` start at or after `since_wall_ms` (its last execution's
 * startTime), or is a run of it under way now? BUTLER_OK with *started set;
 * any other status when QRS could not tell (the caller decides what doubt
 * means). Thread: the owning worker.
 */
enum butler_status qrs_task_started_since(struct qrs_client *client, const char *task_id,
                                          uint64_t since_wall_ms, bool *started);

/* A reason for an answer, from a failed call's status and result: what QRS
 * answered or that it could not be reached, never hosts, ports or transport
 * errors (those stay in the log). Writes into `out`. */
void qrs_plain_reason(enum butler_status status, const struct qrs_result *result, char *out,
                      size_t out_size);

/*
 * Write `value` as a QRS filter string literal: single-quoted, with ' and \
 * escaped by a backslash (QRS rejects the OData '' form). Returns
 * BUTLER_ERR_TOO_LARGE if `out` is too small.
 */
enum butler_status qrs_filter_quote(const char *value, char *out, size_t out_size);

/* 16 characters of [0-9A-Za-z] plus NUL into out[17]. */
void qrs_make_xrfkey(char out[17]);

#endif
