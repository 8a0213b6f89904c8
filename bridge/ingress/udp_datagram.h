/*
 * Parser for one datagram from a Qlik Sense log4net UdpAppender (contract
 * section 5; sense-interfaces.md section 3). Pure: no I/O, no allocation, no
 * globals, so the fuzz target and unit tests exercise exactly what the daemon
 * runs.
 *
 * Accepted layouts (field 0 compared case-insensitively after any run of
 * trailing '/' is folded into one, so the shipped "/scheduler-task-success//"
 * is accepted):
 *   /scheduler-task-failed/, /scheduler-reload-failed/,
 *   /scheduler-reloadtask-failed/                       -> FAILED, exactly 11
 *   /scheduler-task-aborted/, /scheduler-reload-aborted/ -> ABORTED, exactly 11
 *   /scheduler-task-success/, /scheduler-reloadtask-success/ -> SUCCESS, 11
 *   /scheduler-distribute/       -> DISTRIBUTE, 11 or more (fields 10+ re-joined
 *                                   with ';' as the message)
 *   /engine-reload-failed/       -> ENGINE_RELOAD_FAILED, exactly 9
 *
 * Policy choices (where upstream Butler differs, see udp_datagram.c):
 *   - invalid UTF-8 is decoded, as upstream: each maximal invalid subpart
 *     becomes U+FFFD (the event's utf8_replaced says so); the field caps
 *     apply to the decoded text;
 *   - the task id must be a GUID (scheduler types); the app id must be a GUID
 *     or empty; "(null)" (log4net's NullText for an unset property) in the app
 *     name, app id and execution id is read as empty, so external-program,
 *     user-sync and distribute tasks are not dropped and "(null)" never
 *     becomes a de-duplication key shared by unrelated runs;
 *   - GUIDs are lower-cased so topics and de-duplication keys are canonical;
 *   - control characters (0x00-0x1F, 0x7F) are stripped from every field and
 *     each field is cut to UDP_FIELD_MAX_BYTES on a UTF-8 boundary.
 */
#ifndef BUTLER_UDP_DATAGRAM_H
#define BUTLER_UDP_DATAGRAM_H

#include <stdbool.h>
#include <stddef.h>

enum udp_event_type {
    UDP_EVENT_TASK_FAILED = 0,
    UDP_EVENT_TASK_ABORTED,
    UDP_EVENT_TASK_SUCCESS,
    UDP_EVENT_DISTRIBUTE,
    UDP_EVENT_ENGINE_RELOAD_FAILED,
};

/* Why a datagram was dropped; udp_drop_reason_name() gives the metric label. */
enum udp_drop_reason {
    UDP_DROP_NONE = 0,
    UDP_DROP_SIZE,        /* over the configured byte cap */
    UDP_DROP_PREFIX,      /* field 0 is not a known message type */
    UDP_DROP_FIELD_COUNT, /* wrong number of ';'-separated fields */
    UDP_DROP_GUID,        /* task id not a GUID, or app id neither GUID nor empty */
    UDP_DROP_EMPTY,       /* zero bytes, or nothing but blanks, controls and ';' */
    UDP_DROP_REASON_COUNT
};

enum udp_field {
    UDP_FIELD_HOST = 0,
    UDP_FIELD_TASK_NAME,
    UDP_FIELD_APP_NAME,
    UDP_FIELD_USER,
    UDP_FIELD_TASK_ID,
    UDP_FIELD_APP_ID,
    UDP_FIELD_LOG_TIMESTAMP,
    UDP_FIELD_LEVEL,
    UDP_FIELD_EXECUTION_ID,
    UDP_FIELD_MESSAGE,
    UDP_FIELD_SESSION_ID,     /* engine only */
    UDP_FIELD_USER_DIRECTORY, /* engine only */
    UDP_FIELD_USER_ID,        /* engine only */
    UDP_FIELD_COUNT
};

enum {
    UDP_FIELD_MAX_BYTES = 500,
    /* Every field plus its NUL, plus the shared empty string at offset 0. */
    UDP_EVENT_STORAGE_MAX = 1 + UDP_FIELD_COUNT * (UDP_FIELD_MAX_BYTES + 1),
};

/*
 * A parsed event. fields[] are never NULL: absent fields point at "". The
 * strings live in storage[], so an event is one block (see udp_event_clone).
 */
struct udp_event {
    enum udp_event_type type;
    bool sanitized;     /* a control character was stripped or a field truncated */
    bool utf8_replaced; /* invalid UTF-8 was stored as U+FFFD in some field */
    const char *fields[UDP_FIELD_COUNT];
    size_t storage_used;
    char storage[UDP_EVENT_STORAGE_MAX];
};

/*
 * Parse `length` bytes at `data` (not NUL-terminated; may contain anything).
 * `max_bytes` is udp.max_message_bytes. On UDP_DROP_NONE *out holds the event;
 * otherwise *out is unspecified. Thread: any; no shared state.
 */
enum udp_drop_reason udp_parse(const unsigned char *data, size_t length, size_t max_bytes,
                               struct udp_event *out);

/* Metric label for a reason: "size", "prefix", ... ("none" for UDP_DROP_NONE). */
const char *udp_drop_reason_name(enum udp_drop_reason reason);

/* Outcome word used in topics and JSON: "failed", "aborted", "success",
 * "distribute", "reload-failed" (engine). */
const char *udp_event_outcome(enum udp_event_type type);

/* Validity of a GUID (8-4-4-4-12 hex digits, any case, no braces). */
bool udp_is_guid(const char *text, size_t length);

#endif
