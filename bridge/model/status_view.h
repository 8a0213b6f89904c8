/*
 * What the status page (GET /v4/status, contract 9.4) shows that no other
 * module keeps: the recent lists and the connection states with their
 * since-times. Fed by small hooks where Butler publishes (topics/publish.c,
 * topics/events.c), where the broker link changes state (bridge/link/) and
 * where a QRS call ends (bridge/clients/qrs.c); read by the ingress
 * (bridge/ingress/http_status.c), which includes only this header.
 *
 * Memory is bounded: each ring keeps at most STATUS_VIEW_RING_MAX entries and an
 * entry keeps a payload only up to STATUS_VIEW_PAYLOAD_MAX bytes (a longer one is
 * listed with its size and without its body), so four full rings stay well
 * under 1 MB. Every function is safe from any thread, including the MQTT
 * network thread: each takes one mutex for a copy or a pointer swap.
 */
#ifndef BUTLER_MODEL_STATUS_VIEW_H
#define BUTLER_MODEL_STATUS_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/status.h"

enum {
    STATUS_VIEW_RING_MAX = 50,      /* entries per recent list */
    STATUS_VIEW_PAYLOAD_MAX = 2048, /* payload bytes kept per entry */
    STATUS_VIEW_ERROR_MAX = 256,    /* bytes of a client's last error */
};

enum status_client {
    STATUS_CLIENT_BROKER,
    STATUS_CLIENT_QRS,
    STATUS_CLIENT_COUNT,
};

/* The topic root the publish hook classifies under (copied, at most 255
 * bytes). Start-up, before the first publish; until then nothing is noted. */
void status_view_setup(const char *topic_root);

/*
 * A message Butler published (acknowledged by the broker). Classified by its
 * topic under mqtt.topic_root: task/result -> taskResults, task/finished/# ->
 * finished, events/# (but session and connection events) -> events,
 * deadletter/# -> deadLetters, sense/license/server|access -> the licence
 * state. Anything else is ignored. Everything is copied.
 */
void status_view_note_publish(const char *topic, const void *payload, size_t length);

/* A client's state now: ok = connected / answered; error (may be NULL) is kept
 * as its last error. `since` moves only when ok changes. */
void status_view_note_client(enum status_client client, bool ok, const char *error);

/*
 * {"taskResults": [..], "finished": [..], "events": [..], "deadLetters": [..]},
 * newest first, each entry {"at", "topic", "payload"|null, "payloadBytes"}.
 * *json is malloc'd, owned by the caller (free()). BUTLER_ERR_NOMEM.
 */
enum butler_status status_view_recent(char **json, size_t *length);

/* {"server": <payload>|null, "access": <payload>|null}; same ownership. */
enum butler_status status_view_license(char **json, size_t *length);

/* A client's state as the view saw it last. `known` false: never reported. */
struct status_client_state {
    bool known;
    bool ok;
    uint64_t since_ms;   /* wall ms of the last change of ok */
    uint64_t last_ok_ms; /* wall ms of the last success, 0 = never */
    uint64_t last_error_ms;
    char last_error[STATUS_VIEW_ERROR_MAX];
};
void status_view_client(enum status_client client, struct status_client_state *out);

/* Forget everything (tests; shutdown, after every thread stopped). */
void status_view_reset(void);

#endif
