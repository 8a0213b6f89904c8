/*
 * HTTP endpoints of the broker-backed stores, routed by http_api.c:
 * the key-value store (/v4/keyvalues..., /v4/keylist/..., allow-list name
 * keyValueStore) and schedules (/v4/schedules..., names createNewSchedule,
 * getSchedule, getScheduleStatusAll, deleteSchedule, startSchedule,
 * stopSchedule). Shapes and codes as the Node.js Butler; writes answer only
 * after the broker acknowledged them, 503 + Retry-After when it cannot.
 * CivetWeb worker threads.
 */
#ifndef BUTLER_HTTP_STORE_H
#define BUTLER_HTTP_STORE_H

#include "bridge/ingress/http_server.h"

void http_store_kv_namespaces(struct http_exchange *exchange); /* GET /v4/keyvaluesnamespaces */
void http_store_kv_namespace(struct http_exchange *exchange);  /* /v4/keyvalues/{ns} */
void http_store_kv_key(struct http_exchange *exchange);     /* /v4/keyvalues/{ns}/{key|keyexists} */
void http_store_kv_keylist(struct http_exchange *exchange); /* GET /v4/keylist/{ns} */

void http_store_schedules_get(struct http_exchange *exchange);    /* GET /v4/schedules */
void http_store_schedules_create(struct http_exchange *exchange); /* POST /v4/schedules */
void http_store_schedules_delete(struct http_exchange *exchange); /* DELETE /v4/schedules/{id} */
void http_store_schedules_start(struct http_exchange *exchange);  /* PUT .../{id}/start, startall */
void http_store_schedules_stop(struct http_exchange *exchange);   /* PUT .../{id}/stop, stopall */
void http_store_schedules_status(struct http_exchange *exchange); /* GET /v4/schedules/status */

#endif
