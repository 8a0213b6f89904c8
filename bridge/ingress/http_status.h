/*
 * The status page (contract 9.4): GET /v4/status, its JSON, and GET /, the
 * page itself with its stylesheet and script (built into the binary from
 * bridge/ingress/status_page/). Read-only: nothing here publishes or changes
 * anything. HTTP worker threads.
 */
#ifndef BUTLER_HTTP_STATUS_H
#define BUTLER_HTTP_STATUS_H

#include "bridge/ingress/http_server.h"

void http_status_json(struct http_exchange *exchange);
/* GET /, /status.css, /status.js, /favicon.svg (by exchange->path); 404 while
 * http.status_page is false. No token: the files hold no data. */
void http_status_page(struct http_exchange *exchange);

#endif
