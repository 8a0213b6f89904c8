/*
 * HTTP endpoints of the file operations (contract 8.1), routed by
 * http_api.c with the Node.js Butler's paths, bodies, status codes and
 * answers: PUT /v4/filecopy and PUT /v4/filemove -> 201 echo, DELETE
 * /v4/filedelete -> 204, POST /v4/createdir and /v4/createdirqvd -> 201
 * echo; 400 bad request, missing source, existing target without overwrite,
 * Windows or UNC path; 403 outside the approved directories.
 *
 * Each request is published to <root>/file/<op> (or <root>/file/<node>/<op>
 * with ?node=, for the file server named by its file.node) and answered once
 * the worker's result arrives on <root>/file/result: 503 + Retry-After when
 * the broker is unreachable, 202 {"requestId", "status": "pending"} when no
 * result came within http.task_start_timeout_ms (the broker holds the
 * command; it will run). ?requestId= names the request (else one is made).
 * CivetWeb worker threads.
 */
#ifndef BUTLER_HTTP_FILE_H
#define BUTLER_HTTP_FILE_H

#include "bridge/ingress/http_server.h"

void http_file_copy(struct http_exchange *exchange);           /* PUT /v4/filecopy */
void http_file_move(struct http_exchange *exchange);           /* PUT /v4/filemove */
void http_file_delete(struct http_exchange *exchange);         /* DELETE /v4/filedelete */
void http_file_create_dir(struct http_exchange *exchange);     /* POST /v4/createdir */
void http_file_create_dir_qvd(struct http_exchange *exchange); /* POST /v4/createdirqvd */

#endif
