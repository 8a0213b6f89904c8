/*
 * POST /v4/newrelic/event and /v4/newrelic/metric (the Node.js Butler's
 * postNewRelicEvent / postNewRelicMetric): the body, with a requestId added,
 * is published to <root>/newrelic/event|metric and the answer awaited on
 * <root>/newrelic/result (topics/newrelic.c). 202 "Accepted" once New Relic
 * accepted it for every account; 400 for a body New Relic would refuse; 502
 * when New Relic kept failing; 202 "Pending <requestId>" when the
 * broker holds the request but no answer came within
 * http.task_start_timeout_ms (it will still be posted, so do not retry).
 * CivetWeb worker threads.
 */
#ifndef BUTLER_HTTP_NEWRELIC_H
#define BUTLER_HTTP_NEWRELIC_H

#include "bridge/ingress/http_server.h"

void http_newrelic_event(struct http_exchange *exchange);
void http_newrelic_metric(struct http_exchange *exchange);

#endif
