/*
 * Who is on Sense now (contract 9.5): the proxy's session and connection
 * events on MQTT, and the active users.
 *
 * Each accepted proxy event (bridge/model/proxy_event.h) is published at
 * QoS 1 on <root>/events/session/<start|stop>/<dir>/<user> or
 * <root>/events/connection/<open|close>/<dir>/<user>, and with
 * mqtt.legacy_topics also on qliksense/session/start (etc.) as
 * "<host>: <dir>/<user>". Topic levels replace '/', '+' and '#' in a
 * directory or user id by '_' (the payload keeps them).
 *
 * The active users (topics/users_state.h; udp.active_users_max,
 * udp.session_idle_s) are summarised in the retained
 * <root>/sense/users/active, published at most once a second when the
 * summary changed, and answered by GET /v4/activeusers. After a restart the
 * state is rebuilt from the first retained summary the broker sends.
 *
 * Events go out through the Sense events' backlog (topics/events.h,
 * events_deliver_prepared): while the broker is away (or Butler stops) they
 * are spooled and published after reconnect, or after a restart, like task
 * events (contract 7). With the broker up and the outbound window full they
 * are not spooled but wait in the proxy port's bounded ring (dropped and
 * counted as "queue_full" beyond it), so a session flood never queues ahead of
 * task events. butler_events_published_total counts them by type
 * (session-start, ...).
 */
#ifndef BUTLER_TOPICS_USERS_H
#define BUTLER_TOPICS_USERS_H

#include <stdbool.h>
#include <stdint.h>

#include "bridge/core/runtime.h"
#include "bridge/core/status.h"
#include "bridge/link/mqtt_link.h"
#include "bridge/model/proxy_event.h"

/* Start-up, before topics_setup (main thread): create the state when
 * udp.proxy_listen is set; a no-op otherwise. */
enum butler_status users_setup(struct butler_runtime *runtime);
/* After the proxy port and the link stopped. */
void users_teardown(void);

/* True when the proxy port is configured (the retained summary is wanted). */
bool users_wanted(const struct butler_config *config);

/* udp_proxy_sink callbacks; `context` is the struct butler_runtime. Run on
 * the proxy port's publisher thread. events_setup() must have run. */
enum butler_status users_deliver(const struct proxy_event *event, uint64_t received_wall_ms,
                                 void *context);
enum butler_status users_spill(const struct proxy_event *event, uint64_t received_wall_ms,
                               void *context);
void users_idle(void *context);

/* Direct family (network thread, never blocks): <root>/sense/users/active. */
void users_on_message(const struct mqtt_message *message, void *context);

#endif
