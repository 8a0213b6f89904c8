/*
 * The one retry loop for every outbound call (QRS, Slack, Teams, webhooks,
 * email): up to `max_attempts`, sleeping a capped, jittered exponential backoff
 * between attempts, honouring a server's Retry-After, and only for failures
 * worth retrying (BUTLER_ERR_RETRYABLE: 5xx, 429, timeouts, connection errors).
 */
#ifndef BUTLER_RETRY_H
#define BUTLER_RETRY_H

#include <stdbool.h>
#include <stdint.h>

#include "bridge/core/status.h"

struct retry_policy {
    int max_attempts;
    int initial_backoff_ms;
    int max_backoff_ms;
};

/*
 * One attempt (1-based). Returns its status; sets *retry_after_s to the
 * server's Retry-After in seconds, or leaves it at -1.
 */
typedef enum butler_status (*retry_attempt_fn)(void *context, int attempt, long *retry_after_s);

/*
 * Run `attempt` until it succeeds, fails for good, attempts run out, or
 * `should_stop` (may be NULL; polled every 100 ms while sleeping) says stop.
 * Returns the last attempt's status; *attempts_out (may be NULL) gets the
 * number of attempts made. Runs on the caller's thread.
 */
enum butler_status retry_run(const struct retry_policy *policy, bool (*should_stop)(void),
                             retry_attempt_fn attempt, void *context, int *attempts_out);

/* Delay before retry number `attempt` (1 = after the first failure). */
uint64_t retry_backoff_ms(const struct retry_policy *policy, int attempt, long retry_after_s,
                          unsigned int *random_state);

#endif
