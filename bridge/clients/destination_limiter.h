/*
 * One limiter per destination for outbound HTTP: when a server answers 429
 * or 503 with Retry-After, every thread sending to that destination waits
 * until then, not only the one that got the answer (Slack's incoming
 * webhooks allow about one message a second; many workers each learning the
 * limit on their own keep it exceeded). A destination is the URL without its
 * query. Thread-safe (one mutex); at most DESTINATION_LIMITER_MAX
 * destinations are held at once, the one released soonest giving way.
 */
#ifndef BUTLER_DESTINATION_LIMITER_H
#define BUTLER_DESTINATION_LIMITER_H

#include <stdbool.h>
#include <stdint.h>

enum {
    DESTINATION_LIMITER_MAX = 256,
    DESTINATION_KEY_MAX = 256, /* longer URLs share a key by their first bytes */
    DESTINATION_HOLD_MAX_S = 60,
};

/*
 * Retry-After's value in seconds from now: delta-seconds ("120") or an
 * HTTP-date ("Wed, 21 Oct 2015 07:28:00 GMT", RFC 9110 5.6.7), -1 when it is
 * neither; a date in the past gives 0. `now_wall_s`: seconds since the epoch.
 */
long destination_retry_after_s(const char *value, int64_t now_wall_s);

/* Hold `url`'s destination for `seconds` (capped at DESTINATION_HOLD_MAX_S)
 * from now; a longer hold already there stays. */
void destination_hold(const char *url, long seconds);

/* Before a request: wait while `url`'s destination is held, polling
 * `should_stop` (may be NULL). Returns the milliseconds waited. */
uint64_t destination_wait(const char *url, bool (*should_stop)(void));

#endif
