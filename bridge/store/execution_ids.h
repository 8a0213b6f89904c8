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

#include "bridge/store/expiring_map.h"
#include "bridge/core/status.h"

enum {
    EXECUTION_IDS_MAX = 20000
}; /* ExecutionIds remembered, hard cap: ~33 executions/s for the default 10-minute window */

/* The shared map, created on the first call. Start-up only (main thread).
 * The map stays owned by this module. */
enum butler_status execution_ids_open(struct expiring_map **out);

/* Free the map; after every thread that uses it stopped. */
void execution_ids_close(void);

#endif
