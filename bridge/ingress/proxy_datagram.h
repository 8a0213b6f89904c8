/*
 * Parser for one datagram from the Qlik Sense proxy's log appender
 * (contract 9.5; sense-interfaces.md 3.4 and 3.5). Pure: no I/O, no
 * allocation, no globals, so the fuzz target and unit tests exercise exactly
 * what the daemon runs.
 *
 * Accepted layouts:
 *   /proxy-session/, /qseow-proxy-session/        (Butler 5-6, Butler SOS)
 *   /proxy-connection/, /qseow-proxy-connection/
 *       prefix;host;Command;UserDirectory;UserId;Origin;Context;message
 *       8 fields or more: the message is everything after the 7th ';'
 *       (the proxy's message may itself contain ';'); field 0 is compared as
 *       on the scheduler port (udp_normalize_prefix);
 *   host;Command;UserDirectory;UserId                   (before Butler 5.0)
 *       exactly 4 fields, no prefix.
 * Command is "Start session", "Stop session", "Open connection" or "Close
 * connection" (any case); with a prefix it must be of the prefix's kind.
 *
 * Text is decoded exactly as on the scheduler port (udp_decode_field:
 * invalid UTF-8 as U+FFFD, controls stripped, 500-byte cap per field).
 * Drop reasons: size, empty, prefix (a '/'-prefix that is not a proxy one,
 * or an unprefixed datagram that is not 4 fields), field_count (a proxy
 * prefix with fewer than 8 fields), command, user (empty directory or id).
 */
#ifndef BUTLER_PROXY_DATAGRAM_H
#define BUTLER_PROXY_DATAGRAM_H

#include <stddef.h>

#include "bridge/ingress/udp_datagram.h"
#include "bridge/model/proxy_event.h"

/*
 * Parse `length` bytes at `data` (not NUL-terminated; may contain anything).
 * `max_bytes` is udp.max_message_bytes. On UDP_DROP_NONE *out holds the event;
 * otherwise *out is unspecified. Thread: any; no shared state.
 */
enum udp_drop_reason proxy_parse(const unsigned char *data, size_t length, size_t max_bytes,
                                 struct proxy_event *out);

#endif
