/*
 * What a browser may do to Butler (docs/security.md): every request is
 * checked here before it is routed.
 *
 * - Host must name this machine: a listener's address, localhost, an address
 *   of one of the machine's interfaces, its host name, or http.allowed_hosts.
 *   Anything else (DNS rebinding: a page on evil.example whose name now points
 *   at Butler) is answered 421.
 * - Origin, when sent (browsers send it on cross-origin requests and on every
 *   POST/PUT/DELETE), must be Butler's own (scheme://Host of this request) or
 *   listed in http.allowed_origins; else 403. curl, load scripts and the Qlik
 *   REST connector send no Origin and are unaffected.
 * - CORS preflights (OPTIONS with Origin and Access-Control-Request-Method)
 *   reach Butler (CivetWeb's own answering is switched off in http_server.c):
 *   403 unless the origin is listed, then 204 with the CORS headers.
 *
 * Threads: built once at start-up (main thread), then read-only from every
 * CivetWeb worker thread.
 */
#ifndef BUTLER_HTTP_GUARD_H
#define BUTLER_HTTP_GUARD_H

#include <stdbool.h>

#include "bridge/core/status.h"
#include "bridge/ingress/http_server.h"

struct http_guard;

/* Collect the names Host may carry (bounded: HTTP_GUARD_HOSTS_MAX; past it
 * the rest are left out with a warning). *out is freed with
 * http_guard_free(). BUTLER_ERR_NOMEM only. */
enum butler_status http_guard_create(const struct butler_config *config, struct http_guard **out);
void http_guard_free(struct http_guard *guard);

/* Check one request. True: go on routing (exchange->cors_origin set when the
 * answer must carry Access-Control-Allow-Origin). False: answered here
 * (421, 403, or a preflight's 204). */
bool http_guard_check(const struct http_guard *guard, struct http_exchange *exchange);

/* Unit-testable pieces. The host part of a Host header value into out
 * (lower case, without port or brackets, one trailing dot dropped); false
 * when it does not fit or is empty. */
bool http_guard_host_name(const char *host_header, char *out, size_t out_size);
bool http_guard_host_allowed(const struct http_guard *guard, const char *host_header);

#endif
