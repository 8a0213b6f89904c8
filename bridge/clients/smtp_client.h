/*
 * Outbound e-mail: one complete message to a list of recipients through
 * smtp.url (smtp:// or smtps://, STARTTLS when the server offers it), with
 * smtp.username/password when set, and the `retry` policy. A new libcurl
 * handle per attempt (mail is rare; nothing worth reusing). Knows nothing
 * about topics or routes: callers build the message.
 *
 * Thread context: any thread; blocks for up to max_attempts SMTP timeouts.
 */
#ifndef BUTLER_SMTP_CLIENT_H
#define BUTLER_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "bridge/core/status.h"
#include "config/config.h"

/*
 * Send `message` (headers and body, CRLF line ends) to every address in `to`,
 * from smtp.from. 4xx replies and transport errors are retried, 5xx are not;
 * `should_stop` ends the retries early (may be NULL). On failure `error`
 * holds one line for the log and dead letter; *attempts_out counts attempts.
 */
enum butler_status smtp_client_send(const struct butler_config *config,
                                    const struct config_string_list *to, const char *message,
                                    bool (*should_stop)(void), char *error, size_t error_size,
                                    int *attempts_out);

#endif
