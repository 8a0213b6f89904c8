/*
 * GET /openapi.json: the description of Butler's HTTP API (docs/api/openapi.json),
 * served from the binary itself. CMakeLists.txt turns the file into a byte array
 * at build time (its OPENAPI block), so an installed butler needs no data file and
 * always describes the API of the source it was built from.
 *
 * Threads: called on a CivetWeb worker thread; reads constant data only.
 */
#ifndef BUTLER_HTTP_OPENAPI_H
#define BUTLER_HTTP_OPENAPI_H

#include "bridge/ingress/http_server.h"

/* Answer 200 with the document, byte for byte, as application/json. */
void http_openapi_serve(struct http_exchange *exchange);

#endif
