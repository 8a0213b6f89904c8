/*
 * POST /qlik-cloud/webhook: Qlik Cloud's webhook deliveries (CONTRACT.md
 * 9.2). The Qlik-Signature header is the authentication (no API token); a
 * signed reload event is published unchanged to
 * <root>/cloud/webhook/<tenant name> and answered 204 only after the
 * broker's PUBACK (503 while the broker is away: Qlik resends). What the
 * event becomes is topics/cloud.c's business.
 *
 * Threads: CivetWeb worker threads.
 */
#ifndef BUTLER_HTTP_CLOUD_H
#define BUTLER_HTTP_CLOUD_H

#include <stdbool.h>

#include "bridge/ingress/http_server.h"

#define HTTP_CLOUD_WEBHOOK_PATH "/qlik-cloud/webhook"

/* Handle the exchange when its path is HTTP_CLOUD_WEBHOOK_PATH (answered
 * here, true); false for any other path (nothing done). */
bool http_cloud_handle(struct http_exchange *exchange);

#endif
