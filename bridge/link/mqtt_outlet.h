/*
 * The outlet: a second, publish-only MQTT connection that the link uses while
 * it holds its own connection down (mqtt_link_hold: the spool is full, so
 * consumed messages must stay unacknowledged at the broker). Libmosquitto
 * acknowledges every message it hands to Butler, so the link's connection
 * cannot stay up while refusing; without the outlet, the answers whose
 * PUBACKs would make room in the spool could never get out (each reconnect
 * is cut at the broker's first resend), and the hold would never end.
 *
 * Client id "<mqtt.client_id>-out", clean start, no subscriptions, no will.
 * Started on first use, then kept. Internal to bridge/link/: nothing else
 * includes this. Thread-safe; callbacks run on the outlet's libmosquitto
 * thread.
 */
#ifndef BUTLER_MQTT_OUTLET_H
#define BUTLER_MQTT_OUTLET_H

#include <mosquitto.h>
#include <stdbool.h>
#include <stddef.h>

#include "bridge/core/status.h"
#include "bridge/link/mqtt_link.h"
#include "config/config.h"

struct mqtt_outlet;

/* `connected(context)` runs on the outlet's thread after each CONNACK. The
 * outlet is owned by the caller (mqtt_outlet_destroy). No network activity. */
enum butler_status mqtt_outlet_create(const struct butler_config *config, int protocol_version,
                                      void (*connected)(void *context), void *context,
                                      struct mqtt_outlet **out);

/* Connect (in the background, reconnecting by itself) unless started. */
void mqtt_outlet_start(struct mqtt_outlet *outlet);

bool mqtt_outlet_connected(struct mqtt_outlet *outlet);

/* As mqtt_link_publish (`v5`: with the options' v5 properties). `done` runs
 * exactly once when BUTLER_OK is returned: BUTLER_OK on PUBACK,
 * BUTLER_ERR_REMOTE on a refusal, BUTLER_ERR_SHUTDOWN at destroy. A dropped
 * connection does not end it: libmosquitto sends it again after reconnecting
 * (the only copy sent again), and that PUBACK calls `done`. */
enum butler_status mqtt_outlet_publish(struct mqtt_outlet *outlet, bool v5, const char *topic,
                                       const void *payload, size_t payload_length,
                                       const struct mqtt_publish_options *options,
                                       mqtt_publish_done done, void *context);

/* The v5 properties of a publish (NULL when none); the caller frees them
 * (mosquitto_property_free_all). Shared with mqtt_link.c. */
mosquitto_property *mqtt_publish_properties(const struct mqtt_publish_options *options);

/* Disconnect, fail what waits (BUTLER_ERR_SHUTDOWN), free. NULL-safe. */
void mqtt_outlet_destroy(struct mqtt_outlet *outlet);

#endif
