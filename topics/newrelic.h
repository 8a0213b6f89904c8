/*
 * New Relic events and metrics (contract 8.3): the command topics
 * <root>/newrelic/event and <root>/newrelic/metric take the Node.js Butler's
 * bodies (POST /v4/newrelic/event|metric publishes them here) and post them
 * to every account in newrelic.accounts, with the account's key in the
 * Api-Key header and the `retry` policy. Each command is answered on
 * <root>/newrelic/result {requestId, kind, status: accepted|invalid|failed,
 * error?}; a post that fails for good also goes to the dead-letter topic.
 */
#ifndef BUTLER_TOPICS_NEWRELIC_H
#define BUTLER_TOPICS_NEWRELIC_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/status.h"
#include "config/config.h"
#include "topics/message.h"

/* True when accounts are configured or the HTTP API may publish commands. */
bool newrelic_wanted(const struct butler_config *config);

/* Worker: post one event or metric (owns and frees `message`). */
void newrelic_run(struct topic_worker *worker, struct topic_message *message);

/*
 * Pure (unit-tested): the New Relic body for a Node.js-style `request`.
 * Event: [{eventType, timestamp, <attribute>: <value>...}]; metric:
 * [{common: {attributes}, metrics: [{name, type, value, timestamp,
 * interval.ms?, attributes}]}]. `attributes` (config, may be empty) come
 * first; the request's own attributes override them. timestamp defaults to
 * now_ms. BUTLER_ERR_INVALID with `error` for a bad request; *body_out
 * (owned by the caller) on success.
 */
enum butler_status newrelic_build_body(bool metric, const cJSON *request,
                                       const struct config_custom_property_list *attributes,
                                       uint64_t now_ms, char **body_out, char *error,
                                       size_t error_size);

#endif
