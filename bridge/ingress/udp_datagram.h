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
 *     each field is cut to SENSE_FIELD_MAX_BYTES on a UTF-8 boundary.
 */
#ifndef BUTLER_UDP_DATAGRAM_H
#define BUTLER_UDP_DATAGRAM_H

#include <stdbool.h>
#include <stddef.h>

#include "bridge/model/sense_event.h"

/* Why a datagram was dropped; udp_drop_reason_name() gives the metric label. */
enum udp_drop_reason {
    UDP_DROP_NONE = 0,
    UDP_DROP_SIZE,        /* over the configured byte cap */
    UDP_DROP_PREFIX,      /* field 0 is not a known message type */
    UDP_DROP_FIELD_COUNT, /* wrong number of ';'-separated fields */
    UDP_DROP_GUID,        /* task id not a GUID, or app id neither GUID nor empty */
    UDP_DROP_EMPTY,       /* zero bytes, or nothing but blanks, controls and ';' */
    UDP_DROP_COMMAND,     /* proxy: Command unknown or not of the prefix's kind */
    UDP_DROP_USER,        /* proxy: empty user directory or user id */
    UDP_DROP_REASON_COUNT
};

/*
 * Parse `length` bytes at `data` (not NUL-terminated; may contain anything).
 * `max_bytes` is udp.max_message_bytes. On UDP_DROP_NONE *out holds the event;
 * otherwise *out is unspecified. Thread: any; no shared state.
 */
enum udp_drop_reason udp_parse(const unsigned char *data, size_t length, size_t max_bytes,
                               struct sense_event *out);

enum { UDP_PREFIX_MAX = 64 };

/*
 * Helpers shared with the proxy parser (proxy_datagram.h), so both ports
 * decode text the same way. Pure, any thread.
 *
 * udp_decode_field: decode [s, s+n) into `out` (at least
 * SENSE_FIELD_MAX_BYTES + 1 bytes): control characters removed, each invalid
 * UTF-8 subpart replaced by U+FFFD (3 bytes, so the text may grow), the result
 * cut to SENSE_FIELD_MAX_BYTES before the first character that does not fit
 * whole, and NUL-terminated. Sets *sanitized / *utf8_replaced (never clears
 * them). Returns the stored length.
 */
size_t udp_decode_field(const unsigned char *s, size_t n, char *out, bool *sanitized,
                        bool *utf8_replaced);

/* True when [s, s+n) carries nothing: blanks, controls and ';' only. */
bool udp_is_blank(const unsigned char *s, size_t n);

/* Start offsets of the first `max` ';'-separated fields of data go to
 * starts[0..max-1]; returns how many fields there are in all (at least 1).
 * Shared by the scheduler and proxy layouts. */
size_t udp_split_fields(const unsigned char *data, size_t length, size_t starts[], size_t max);

/* Field 0 normalised into `out`: lower case, controls and surrounding blanks
 * removed, a trailing run of '/' folded into one. False when it is longer
 * than any known prefix. */
bool udp_normalize_prefix(const unsigned char *s, size_t n, char out[UDP_PREFIX_MAX]);

/* Metric label for a reason: "size", "prefix", ... ("none" for UDP_DROP_NONE). */
const char *udp_drop_reason_name(enum udp_drop_reason reason);

#endif
