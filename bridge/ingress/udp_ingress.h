/*
 * UDP ingress: a socket that hears Qlik Sense log appenders and hands each
 * accepted event, in arrival order, to a sink. One instance per port: the
 * scheduler port (udp.listen, contract section 5, struct sense_event) and
 * the proxy port (udp.proxy_listen, contract 9.5, struct proxy_event). Each
 * has its own socket, allow-list, ring, threads and counters, so a flood on
 * one cannot delay or drop the other's events.
 *
 * Two threads:
 *   - the socket thread drains the socket with recvmmsg() in batches (large
 *     SO_RCVBUF), checks the source allow-list, parses each datagram
 *     (udp_datagram.h), de-duplicates on ExecutionId and appends the event to
 *     a bounded ring; it never blocks on anything but the socket;
 *   - the publisher thread takes events off the ring and calls the sink.
 *     When the sink cannot take an event now because the outbound window is
 *     full, the event stays at the head of the ring and is offered again.
 *     When the broker is down, the ring is above UDP_SPILL_THRESHOLD, or
 *     Butler is stopping, the event is spilled instead: the sink records it
 *     in the spool and publishes it later (contract 7), so the ring drains
 *     to disk during a broker outage. When the spool is full the event is
 *     dropped (reason "spool_full"); when the ring is full, new events are
 *     dropped (reason "queue_full").
 *
 * Memory is bounded: the ring has UDP_QUEUE_MAX fixed slots allocated at
 * start, the receive batch is fixed, and the de-duplication map is capped.
 * Drops are counted in butler_udp_dropped_total{reason="..."} (the proxy
 * port: butler_udp_proxy_dropped_total) with a rate-limited log line. The
 * proxy port has no de-duplication (sessions carry no ExecutionId).
 */
#ifndef BUTLER_UDP_INGRESS_H
#define BUTLER_UDP_INGRESS_H

#include <stdint.h>

#include "bridge/core/status.h"
#include "bridge/ingress/udp_datagram.h"
#include "bridge/model/proxy_event.h"
#include "config/config.h"

enum {
    UDP_QUEUE_MAX = 4096,        /* events between socket and publisher */
    UDP_DEDUP_MAX = 200000,      /* ExecutionIds remembered */
    UDP_RCVBUF_BYTES = 16 << 20, /* asked for; the kernel may cap it (net.core.rmem_max) */
    /* Above this depth the publisher spills to the spool rather than wait
     * for the outbound window: the ring keeps room for bursts. */
    UDP_SPILL_THRESHOLD = UDP_QUEUE_MAX / 2,
};

struct udp_ingress;

/*
 * Offer one event to the sink, on the publisher thread. Return BUTLER_OK when
 * the sink took it over; BUTLER_ERR_NOT_CONNECTED, BUTLER_ERR_FULL or
 * BUTLER_ERR_TIMEOUT to be offered the same event again shortly; any other
 * status drops it (counted as "publish_failed"). `event` is valid only during
 * the call.
 */
struct udp_ingress_sink {
    enum butler_status (*deliver)(const struct sense_event *event, uint64_t received_wall_ms,
                                  void *context);
    /* Called on the publisher thread when idle or waiting (about every 50 ms);
     * may be NULL. Lets the sink retry its own failed publishes. */
    void (*idle)(void *context);
    /* Take the event durably for later (spool) instead of now; may be NULL.
     * BUTLER_OK when taken, BUTLER_ERR_FULL when the spool is full (the event
     * is dropped, reason "spool_full"); anything else: offered again. */
    enum butler_status (*spill)(const struct sense_event *event, uint64_t received_wall_ms,
                                void *context);
    void *context;
};

/*
 * The proxy port's sink: as udp_ingress_sink, for proxy events. `spill` may be
 * NULL: an event the sink cannot take now then stays in the ring (dropped as
 * "queue_full" once the ring is full).
 */
struct udp_proxy_sink {
    enum butler_status (*deliver)(const struct proxy_event *event, uint64_t received_wall_ms,
                                  void *context);
    void (*idle)(void *context);
    enum butler_status (*spill)(const struct proxy_event *event, uint64_t received_wall_ms,
                                void *context);
    void *context;
};

/*
 * Bind udp.proxy_listen (allow-list udp.proxy_allowed_sources, or
 * udp.allowed_sources when that is empty) and start both threads; otherwise
 * as udp_ingress_start.
 */
enum butler_status udp_ingress_start_proxy(const struct butler_config *config,
                                           const struct udp_proxy_sink *sink,
                                           struct udp_ingress **out);

/*
 * Bind udp.listen and start both threads. `config` and `sink->context` must
 * outlive the ingress. Fails with BUTLER_ERR_IO when the socket cannot be
 * bound and BUTLER_ERR_INVALID for a bad listen address.
 */
enum butler_status udp_ingress_start(const struct butler_config *config,
                                     const struct udp_ingress_sink *sink, struct udp_ingress **out);

/* Events waiting in the ring (gauge). Any thread. */
size_t udp_ingress_depth(struct udp_ingress *ingress);

/*
 * Stop hearing datagrams, give the publisher up to `grace_ms` to hand the
 * queued events to the sink, then spill what is left (or, without a spill
 * callback or when spilling fails, drop and count it, reason "shutdown"),
 * join both threads and free everything. NULL is a no-op.
 */
void udp_ingress_stop(struct udp_ingress *ingress, int grace_ms);

/* Parse "a.b.c.d" or "a.b.c.d/n" into a network and mask (host order).
 * Exposed for unit tests. */
enum butler_status udp_parse_cidr(const char *text, uint32_t *network, uint32_t *mask);

#endif
