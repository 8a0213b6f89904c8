/*
 * The Node.js Butler's engine endpoints (contract 8.2), routed by http_api.c:
 *   PUT /v4/app/{appId}/reload            -> <root>/app/reload; 201 {appId} once the broker
 *                                            has it (?wait=true: after the outcome)
 *   GET /v4/apps/list, /v4/senselistapps  -> <root>/app/list; 200 [{id, name}]
 *   GET /v4/app/{appId}/dump, /v4/senseappdump/{appId} -> <root>/app/dump; 200 the dump
 * Answers are awaited on <root>/app/result through the task-result waiter
 * table (keyed by requestId). CivetWeb worker threads.
 */
#ifndef BUTLER_HTTP_APP_H
#define BUTLER_HTTP_APP_H

#include "bridge/ingress/http_server.h"

void http_app_reload(struct http_exchange *exchange);
void http_app_list(struct http_exchange *exchange);
void http_app_dump(struct http_exchange *exchange);

#endif
