#include "bridge/clients/retry.h"

#include <stdlib.h>

#include "bridge/core/clock.h"

enum { RETRY_AFTER_CAP_S = 60, SLEEP_SLICE_MS = 100 };

uint64_t retry_backoff_ms(const struct retry_policy *policy, int attempt, long retry_after_s,
                          unsigned int *random_state)
{
    uint64_t delay = (uint64_t)policy->initial_backoff_ms;
    for (int i = 1; i < attempt && delay < (uint64_t)policy->max_backoff_ms; i++)
        delay *= 2;
    if (delay > (uint64_t)policy->max_backoff_ms)
        delay = (uint64_t)policy->max_backoff_ms;
    /* Half fixed, half random: many workers do not retry a recovering server in step. */
    uint64_t half = delay / 2;
    uint64_t jittered = half + (half ? (uint64_t)rand_r(random_state) % (half + 1) : 0);
    if (retry_after_s >= 0) {
        long capped = retry_after_s > RETRY_AFTER_CAP_S ? RETRY_AFTER_CAP_S : retry_after_s;
        uint64_t asked = (uint64_t)capped * 1000u;
        if (asked > jittered)
            jittered = asked;
    }
    return jittered;
}

enum butler_status retry_run(const struct retry_policy *policy, bool (*should_stop)(void),
                             retry_attempt_fn attempt_fn, void *context, int *attempts_out)
{
    enum butler_status status = BUTLER_ERR_INTERNAL;
    int max_attempts = policy->max_attempts > 0 ? policy->max_attempts : 1;
    unsigned int random_state = (unsigned int)(clock_monotonic_ms() ^ (uintptr_t)context);
    int attempt = 0;
    for (;;) {
        attempt++;
        long retry_after_s = -1;
        status = attempt_fn(context, attempt, &retry_after_s);
        if (status != BUTLER_ERR_RETRYABLE || attempt >= max_attempts ||
            (should_stop && should_stop()))
            break;
        uint64_t delay = retry_backoff_ms(policy, attempt, retry_after_s, &random_state);
        /* Sleep in slices so shutdown is not held up by a long Retry-After. */
        for (uint64_t slept = 0; slept < delay; slept += SLEEP_SLICE_MS) {
            if (should_stop && should_stop())
                break;
            clock_sleep_ms(delay - slept < SLEEP_SLICE_MS ? delay - slept : SLEEP_SLICE_MS);
        }
    }
    if (attempts_out)
        *attempts_out = attempt;
    return status;
}
