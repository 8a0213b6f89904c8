/*
 * Proxy datagram parser; see proxy_datagram.h for the layouts and policy.
 *
 * Upstream Butler 6 split on every ';' and kept fields 0-6, so a message with
 * ';' lost its tail; Butler SOS re-joins fields 7 and up. We re-join (the
 * message is the raw bytes after the 7th ';'), since the proxy writes
 * UserAgent strings such as "(Windows NT 10.0; Win64; x64)" there.
 */
#include "bridge/ingress/proxy_datagram.h"

#include <string.h>

enum {
    PREFIXED_FIELDS = 8,
    OLD_FIELDS = 4,
};

static const struct {
    const char *prefix;
    bool session;
} prefixes[] = {
    {"/proxy-session/", true},
    {"/qseow-proxy-session/", true},
    {"/proxy-connection/", false},
    {"/qseow-proxy-connection/", false},
};

static bool is_session(enum proxy_event_kind kind)
{
    return kind == PROXY_SESSION_START || kind == PROXY_SESSION_STOP;
}

static const char *store_field(struct proxy_event *event, const unsigned char *s, size_t n)
{
    char *start = event->storage + event->storage_used;
    size_t used = udp_decode_field(s, n, start, &event->sanitized, &event->utf8_replaced);
    event->storage_used += used + 1;
    return start;
}

enum udp_drop_reason proxy_parse(const unsigned char *data, size_t length, size_t max_bytes,
                                 struct proxy_event *out)
{
    if (length > max_bytes)
        return UDP_DROP_SIZE;
    if (length == 0 || udp_is_blank(data, length))
        return UDP_DROP_EMPTY;

    /* Start offsets of the first PREFIXED_FIELDS fields; count all of them. */
    size_t starts[PREFIXED_FIELDS + 1];
    size_t field_count = udp_split_fields(data, length, starts, PREFIXED_FIELDS);
    size_t known = field_count < PREFIXED_FIELDS ? field_count : PREFIXED_FIELDS;
    starts[known] = length + 1; /* the end of the last known field, less its ';' */

    char prefix[UDP_PREFIX_MAX];
    bool prefixed = false, session_prefix = false;
    if (udp_normalize_prefix(data, starts[1] - 1, prefix)) {
        for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
            if (strcmp(prefix, prefixes[i].prefix) == 0) {
                prefixed = true;
                session_prefix = prefixes[i].session;
            }
        }
    }
    /* Field 0 of the old layout is the host; a '/' there is another appender. */
    if (!prefixed && (field_count != OLD_FIELDS || memchr(data, '/', starts[1] - 1) != NULL))
        return UDP_DROP_PREFIX;
    if (prefixed && field_count < PREFIXED_FIELDS)
        return UDP_DROP_FIELD_COUNT;

    memset(out, 0, offsetof(struct proxy_event, storage));
    out->storage[0] = '\0';
    out->storage_used = 1;
    for (size_t f = 0; f < PROXY_FIELD_COUNT; f++)
        out->fields[f] = out->storage;
    out->four_field = !prefixed;
    size_t first = prefixed ? 1 : 0; /* raw index of the host field */
    /* Host, Command, UserDirectory, UserId, then Origin and Context when prefixed. */
    size_t stored = prefixed ? PREFIXED_FIELDS - 2 : OLD_FIELDS;
    for (size_t f = 0; f < stored; f++) {
        size_t raw = first + f;
        out->fields[PROXY_FIELD_HOST + f] =
            store_field(out, data + starts[raw], starts[raw + 1] - 1 - starts[raw]);
    }
    if (prefixed) /* everything after the 7th ';', embedded ';' kept */
        out->fields[PROXY_FIELD_MESSAGE] = store_field(out, data + starts[PREFIXED_FIELDS - 1],
                                                       length - starts[PREFIXED_FIELDS - 1]);

    if (!proxy_event_kind_from_command(out->fields[PROXY_FIELD_COMMAND], &out->kind))
        return UDP_DROP_COMMAND;
    if (prefixed && is_session(out->kind) != session_prefix)
        return UDP_DROP_COMMAND;
    if (out->fields[PROXY_FIELD_USER_DIRECTORY][0] == '\0' ||
        out->fields[PROXY_FIELD_USER_ID][0] == '\0')
        return UDP_DROP_USER;
    return UDP_DROP_NONE;
}
