/*
 * The one ExecutionId de-duplication window of the process.
 *
 * A Sense task execution can reach Butler twice: as a log-appender datagram
 * (bridge/ingress/udp_ingress.c) and as a QRS change notification
 * (topics/notifications.c). Both sources claim the execution's id in this
 * one map before they publish, so whichever comes first publishes and the
 * other is dropped as a duplicate: one execution, one event. The window is
 * udp.dedup_ttl_s for both.
 *
 * Thread-safe (the map has its own mutex). Opened at start-up, closed after
 * every user stopped.
 */
#ifndef BUTLER_EXECUTION_IDS_H
#define BUTLER_EXECUTION_IDS_H

#include <stdint.h>

#include "bridge/store/expiring_map.h"
#include "bridge/core/status.h"

enum {
    EXECUTION_IDS_MAX = 20000,   /* keys remembered, hard cap: ~33 executions/s for the default
                                    10-minute window */
    EXECUTION_IDS_KEY_MAX = 640, /* an ExecutionId field (500 bytes at most) and an outcome */
};

/*
 * The window's key for one execution and outcome word ("failed", "success",
 * "distribute", ...): "<outcome>/<executionId>". A success and a distribute
 * datagram of one execution are two events; the UDP and QRS sources of the
 * same outcome are one. Cut to `size` (callers pass EXECUTION_IDS_KEY_MAX).
 */
void execution_ids_key(const char *execution_id, const char *outcome, char *out, size_t size);

/*
 * Give up the claim on `execution_id`/`outcome` (the window must be open):
 * its event was dropped before the broker or the spool had it, so the other
 * source (a QRS notification, a resent datagram) may still deliver it. A
 * claim is taken when a source accepts an event and kept once the event is
 * published or spooled. Any thread.
 */
void execution_ids_release(const char *execution_id, const char *outcome);

/*
 * What a claim holds while its event is in flight (taken by a source, not yet
 * published or spooled): a notification that finds it waits for it to
 * resolve (execution_ids_claim) instead of taking it for a duplicate, since
 * the event may still be lost.
 */
#define EXECUTION_IDS_PENDING "pending"

/*
 * Claim `key` (execution_ids_key) for `ttl_ms`, pending. BUTLER_OK when
 * claimed now; BUTLER_ERR_DENIED when another claim holds it (confirmed, or
 * still pending after `wait_ms`: an event in flight that long is taken as on
 * its way); BUTLER_ERR_SHUTDOWN when Butler stops while waiting. With
 * `wait_ms` > 0 the caller waits (in short slices) for a pending claim to be
 * confirmed or released: worker threads only, never the UDP thread.
 */
enum butler_status execution_ids_claim(const char *key, uint64_t ttl_ms, uint64_t wait_ms);

/*
 * The event of the claim on `execution_id`/`outcome` was published or
 * spooled: the claim is confirmed (no longer pending) for `ttl_ms` from now,
 * so a later notification of that run is a duplicate at once. Any thread.
 */
void execution_ids_confirm(const char *execution_id, const char *outcome, uint64_t ttl_ms);

/* The shared map, created on the first call. Start-up only (main thread).
 * The map stays owned by this module. */
enum butler_status execution_ids_open(struct expiring_map **out);

/* Free the map; after every thread that uses it stopped. */
void execution_ids_close(void);

#endif
