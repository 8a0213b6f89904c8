/*
 * A proxy event: a session start or stop, or a connection open or close, as
 * the Qlik Sense proxy's log appender reports it on udp.proxy_listen
 * (contract 9.5; sense-interfaces.md section 3.4). The UDP ingress produces it
 * (bridge/ingress/proxy_datagram.c), topics/users.c consumes it; this header
 * is the shape that crosses, so neither includes the other.
 *
 * Pure data plus pure helpers: no I/O, no allocation, no globals.
 */
#ifndef BUTLER_MODEL_PROXY_EVENT_H
#define BUTLER_MODEL_PROXY_EVENT_H

#include <stdbool.h>
#include <stddef.h>

enum proxy_event_kind {
    PROXY_SESSION_START = 0,
    PROXY_SESSION_STOP,
    PROXY_CONNECTION_OPEN,
    PROXY_CONNECTION_CLOSE,
};

enum proxy_field {
    PROXY_FIELD_HOST = 0,
    PROXY_FIELD_COMMAND,
    PROXY_FIELD_USER_DIRECTORY,
    PROXY_FIELD_USER_ID,
    PROXY_FIELD_ORIGIN,  /* "" in the old four-field layout */
    PROXY_FIELD_CONTEXT, /* "" in the old four-field layout */
    PROXY_FIELD_MESSAGE, /* fields 7 and up, re-joined with ';' */
    PROXY_FIELD_COUNT
};

enum {
    PROXY_FIELD_MAX_BYTES = 500, /* as the scheduler port (contract 5) */
    /* Every field plus its NUL, plus the shared empty string at offset 0. */
    PROXY_EVENT_STORAGE_MAX = 1 + PROXY_FIELD_COUNT * (PROXY_FIELD_MAX_BYTES + 1),
};

/* A parsed proxy event. fields[] are never NULL; the strings live in storage[]. */
struct proxy_event {
    enum proxy_event_kind kind;
    bool four_field;    /* the old host;Command;UserDirectory;UserId layout */
    bool sanitized;     /* a control character was stripped or a field truncated */
    bool utf8_replaced; /* invalid UTF-8 was stored as U+FFFD in some field */
    const char *fields[PROXY_FIELD_COUNT];
    size_t storage_used;
    char storage[PROXY_EVENT_STORAGE_MAX];
};

/* "session" or "connection": the topic level after events/. */
const char *proxy_event_family(enum proxy_event_kind kind);
/* "start", "stop", "open" or "close". */
const char *proxy_event_action(enum proxy_event_kind kind);

/* The Command text (case-insensitive: "Start session", "Stop session",
 * "Open connection", "Close connection") as a kind; false when unknown. */
bool proxy_event_kind_from_command(const char *command, enum proxy_event_kind *kind);

#endif
