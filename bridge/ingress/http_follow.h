/*
 * PUT|POST /v4/reloadtask/{taskId|-}/start?wait=finished (contract 9.1): the
 * task start is published with "follow": true and the request waits for the
 * end of every run it started. 200 in the Node.js shape plus "finished" (the
 * finished objects) once every started run ended; 202 {"requestId",
 * "executionIds"} after http.task_finish_timeout_s (the finished messages
 * still go out on MQTT). CivetWeb worker thread; takes a long-wait slot.
 */
#ifndef BUTLER_HTTP_FOLLOW_H
#define BUTLER_HTTP_FOLLOW_H

#include "bridge/ingress/http_server.h"

/* `payload` is the task-start request built from the HTTP call (borrowed). */
void http_follow_task_start(struct http_exchange *exchange, const char *payload,
                            const char *request_id);

#endif
