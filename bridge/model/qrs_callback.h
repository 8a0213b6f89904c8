/*
 * The QRS change-notification callback: the one fact both sides share. The
 * notifications keeper (topics/notifications.c) registers
 * <qrs.notifications.callback_url>QRS_CALLBACK_PATH/<secret> with QRS; the
 * HTTP ingress (bridge/ingress/http_api.c) serves that path, checks the
 * secret and publishes what QRS sent to <root>/qrs/notification.
 */
#ifndef BUTLER_MODEL_QRS_CALLBACK_H
#define BUTLER_MODEL_QRS_CALLBACK_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

/* The local path prefix of the callback; the secret is the next segment. */
#define QRS_CALLBACK_PATH "/qrs-notification"

/* Any thread: true when qrs.notifications is on and `segment` (length bytes, not
 * NUL-terminated) is the secret. Constant time in the segment's content. */
bool qrs_callback_secret_matches(const struct butler_config *config, const char *segment,
                                 size_t length);

#endif
