/*
 * <root>/slack/post: post a message to a Slack incoming webhook.
 *
 * Payload: plain text, or JSON {"text", "channel"?, "username"?,
 * "icon_emoji"?, "blocks"?, "webhook"?}. "webhook" only chooses among
 * configured webhooks (a route's name, or a URL equal to slack.webhook_url or
 * to a route's webhook_url): a message can never send Butler to an arbitrary
 * URL. Delivery is retried per the `retry` config; what still fails goes to
 * <root>/deadletter/<topic>.
 */
#ifndef BUTLER_TOPICS_SLACK_H
#define BUTLER_TOPICS_SLACK_H

#include <stddef.h>

#include "bridge/core/status.h"
#include "config/config.h"
#include "topics/message.h"

enum { SLACK_TEXT_MAX = 40000 }; /* Slack's own limit on "text" */

/*
 * Pure: turn a slack/post payload into the JSON body for the webhook and the
 * webhook URL to use (a pointer into `config`, never copied from the
 * payload). BUTLER_ERR_INVALID with `error` filled for a malformed payload or
 * an unknown webhook, BUTLER_ERR_NOT_FOUND when no webhook is configured.
 * *body_out is owned by the caller.
 */
enum butler_status slack_build_request(const struct butler_config *config,
                                       const unsigned char *payload, size_t length, char **body_out,
                                       const char **url_out, char *error, size_t error_size);

/* Worker entry point: owns and frees `message`. */
void slack_run(struct topic_worker *worker, struct topic_message *message);

#endif
