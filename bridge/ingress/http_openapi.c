/*
 * GET /openapi.json (see http_openapi.h). No token, like /health: the
 * description says nothing a caller could not learn by trying the API.
 */
#include "bridge/ingress/http_openapi.h"

#include <stddef.h>

/* Defined in the generated build/generated/openapi_document.c: the file's
 * bytes, followed by a NUL that the length does not count. */
extern const unsigned char http_openapi_document[];
extern const size_t http_openapi_document_length;

void http_openapi_serve(struct http_exchange *exchange)
{
    http_exchange_reply(exchange, 200, "application/json; charset=utf-8",
                        (const char *)http_openapi_document, http_openapi_document_length, NULL);
}
