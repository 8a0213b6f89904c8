/*
 * A Sense event: what a Qlik Sense scheduler or engine reported about one task
 * run or app reload. Two ingresses produce it (the UDP log-appender datagram
 * parser, bridge/ingress/udp_datagram.c, and QRS change notifications,
 * topics/notifications.c), and the event handlers (topics/events.c,
 * topics/routes.c) consume it without knowing which one it came from.
 *
 * Pure data plus two pure helpers: no I/O, no allocation, no globals.
 */
#ifndef BUTLER_MODEL_SENSE_EVENT_H
#define BUTLER_MODEL_SENSE_EVENT_H

#include <stdbool.h>
#include <stddef.h>

enum sense_event_type {
    SENSE_EVENT_TASK_FAILED = 0,
    SENSE_EVENT_TASK_ABORTED,
    SENSE_EVENT_TASK_SUCCESS,
    SENSE_EVENT_DISTRIBUTE,
    SENSE_EVENT_ENGINE_RELOAD_FAILED,
};

enum sense_field {
    SENSE_FIELD_HOST = 0,
    SENSE_FIELD_TASK_NAME,
    SENSE_FIELD_APP_NAME,
    SENSE_FIELD_USER,
    SENSE_FIELD_TASK_ID,
    SENSE_FIELD_APP_ID,
    SENSE_FIELD_LOG_TIMESTAMP,
    SENSE_FIELD_LEVEL,
    SENSE_FIELD_EXECUTION_ID,
    SENSE_FIELD_MESSAGE,
    SENSE_FIELD_SESSION_ID,     /* engine only */
    SENSE_FIELD_USER_DIRECTORY, /* engine only */
    SENSE_FIELD_USER_ID,        /* engine only */
    SENSE_FIELD_COUNT
};

enum {
    SENSE_FIELD_MAX_BYTES = 500,
    /* Every field plus its NUL, plus the shared empty string at offset 0. */
    SENSE_EVENT_STORAGE_MAX = 1 + SENSE_FIELD_COUNT * (SENSE_FIELD_MAX_BYTES + 1),
};

/*
 * A parsed event. fields[] are never NULL: absent fields point at "". The
 * strings live in storage[], so an event is one block.
 */
struct sense_event {
    enum sense_event_type type;
    bool sanitized;     /* a control character was stripped or a field truncated */
    bool utf8_replaced; /* invalid UTF-8 was stored as U+FFFD in some field */
    const char *fields[SENSE_FIELD_COUNT];
    size_t storage_used;
    char storage[SENSE_EVENT_STORAGE_MAX];
};

/* Outcome word used in topics and JSON: "failed", "aborted", "success",
 * "distribute", "reload-failed" (engine). */
const char *sense_event_outcome(enum sense_event_type type);

/* Validity of a GUID (8-4-4-4-12 hex digits, any case, no braces). */
bool sense_is_guid(const char *text, size_t length);

#endif
