/*
 * Helpers of the HTTP API (http_api.c) shared with the endpoint files beside
 * it (http_app.c, ...). Each answers the error itself and returns false when
 * the request cannot go on. CivetWeb worker threads.
 */
#ifndef BUTLER_HTTP_API_H
#define BUTLER_HTTP_API_H

#include <stdbool.h>
#include <stddef.h>

#include "bridge/ingress/http_server.h"

/* Read the body (413 over http.max_body_bytes, 400 unreadable). */
bool http_api_read_body(struct http_exchange *exchange);
/* 415 unless the request declares JSON (or nothing). */
bool http_api_require_json(struct http_exchange *exchange);
/* Optional boolean query flag (absent = false; 400 on a bad value). */
bool http_api_query_flag(struct http_exchange *exchange, const char *name, bool *value);
/* Publish at `qos` and wait up to timeout_ms for the broker's PUBACK
 * (503 + Retry-After when it is unreachable or does not acknowledge). */
bool http_api_publish_acknowledged(struct http_exchange *exchange, const char *topic,
                                   const char *payload, size_t length, int qos, int timeout_ms);

#endif
