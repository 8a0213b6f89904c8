/*
 * Datagram parser; see udp_datagram.h for the accepted layouts and policy.
 *
 * Invalid UTF-8 is decoded as upstream Butler does (one U+FFFD per maximal
 * invalid subpart, see utf8_sequence), so the alert still goes out; the event
 * says so (utf8_replaced) and the ingress counts it, so a mis-encoded
 * appender shows in /metrics. A replacement in a GUID field or the prefix
 * still drops the datagram (guid, prefix).
 *
 * Differences from upstream Butler, on purpose:
 *   - "(null)" app ids are accepted as empty (upstream drops the datagram),
 *     because log4net renders unset properties that way and dropping would
 *     silently lose external-program and distribute events;
 *   - the double-slash success prefix of the shipped appender file is accepted;
 *   - a UTF-8 BOM before the prefix is still a prefix mismatch, as upstream:
 *     log4net's UdpAppender never writes one, so it indicates another sender.
 */
#include "bridge/ingress/udp_datagram.h"

#include <string.h>

struct prefix_rule {
    const char *prefix; /* lower case, exactly one trailing '/' */
    enum sense_event_type type;
};

static const struct prefix_rule prefix_rules[] = {
    {"/scheduler-task-failed/", SENSE_EVENT_TASK_FAILED},
    {"/scheduler-reload-failed/", SENSE_EVENT_TASK_FAILED},
    {"/scheduler-reloadtask-failed/", SENSE_EVENT_TASK_FAILED},
    {"/scheduler-task-aborted/", SENSE_EVENT_TASK_ABORTED},
    {"/scheduler-reload-aborted/", SENSE_EVENT_TASK_ABORTED},
    {"/scheduler-task-success/", SENSE_EVENT_TASK_SUCCESS},
    {"/scheduler-reloadtask-success/", SENSE_EVENT_TASK_SUCCESS},
    {"/scheduler-distribute/", SENSE_EVENT_DISTRIBUTE},
    {"/engine-reload-failed/", SENSE_EVENT_ENGINE_RELOAD_FAILED},
};

enum {
    PREFIX_RULE_COUNT = sizeof prefix_rules / sizeof prefix_rules[0],
    SCHEDULER_FIELDS = 11,
    ENGINE_FIELDS = 9,
    /* Split positions kept; more fields only matter for distribute, whose
     * message is everything after the 10th ';'. */
    SPLIT_MAX = 12,
};

/* Field order of each layout (index 0 is the prefix, not stored). */
static const enum sense_field scheduler_layout[SCHEDULER_FIELDS - 1] = {
    SENSE_FIELD_HOST,         SENSE_FIELD_TASK_NAME, SENSE_FIELD_APP_NAME,      SENSE_FIELD_USER,
    SENSE_FIELD_TASK_ID,      SENSE_FIELD_APP_ID,    SENSE_FIELD_LOG_TIMESTAMP, SENSE_FIELD_LEVEL,
    SENSE_FIELD_EXECUTION_ID, SENSE_FIELD_MESSAGE,
};
static const enum sense_field engine_layout[ENGINE_FIELDS - 1] = {
    SENSE_FIELD_HOST,           SENSE_FIELD_APP_ID,  SENSE_FIELD_SESSION_ID,
    SENSE_FIELD_USER_DIRECTORY, SENSE_FIELD_USER_ID, SENSE_FIELD_LOG_TIMESTAMP,
    SENSE_FIELD_LEVEL,          SENSE_FIELD_MESSAGE,
};

const char *udp_drop_reason_name(enum udp_drop_reason reason)
{
    switch (reason) {
    case UDP_DROP_NONE:
        return "none";
    case UDP_DROP_SIZE:
        return "size";
    case UDP_DROP_PREFIX:
        return "prefix";
    case UDP_DROP_FIELD_COUNT:
        return "field_count";
    case UDP_DROP_GUID:
        return "guid";
    case UDP_DROP_EMPTY:
        return "empty";
    case UDP_DROP_COMMAND:
        return "command";
    case UDP_DROP_USER:
        return "user";
    case UDP_DROP_REASON_COUNT:
        break;
    }
    return "unknown";
}

/*
 * The UTF-8 sequence at s[0..n): its length (1..4) when it is one character
 * of strict UTF-8 (RFC 3629: no overlongs, no surrogates, nothing above
 * U+10FFFF), else 0 with *invalid_length set to the bytes one U+FFFD
 * replaces: the "maximal subpart" of the Unicode standard (chapter 3, U+FFFD
 * substitution), which is what WHATWG decoders, and so the Node.js Butler,
 * do: the lead byte plus the continuation bytes that could still have
 * completed it, or 1 for a byte that starts nothing. An ASCII byte is never
 * part of an invalid subpart, so ';' splits decoded and raw text alike.
 */
static size_t utf8_sequence(const unsigned char *s, size_t n, size_t *invalid_length)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        *invalid_length = 1; /* 80..BF alone, C0, C1, F5..FF */
        return 0;
    }
    size_t k = 1;
    while (k <= need && k < n && s[k] >= (k == 1 ? lo : 0x80) && s[k] <= (k == 1 ? hi : 0xBF))
        k++;
    if (k == need + 1)
        return k;
    *invalid_length = k;
    return 0;
}

static bool is_control(unsigned char c)
{
    return c < 0x20 || c == 0x7F;
}

bool udp_is_blank(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_control(s[i]) && s[i] != ' ' && s[i] != ';')
            return false;
    return true;
}

size_t udp_decode_field(const unsigned char *s, size_t n, char *out, bool *sanitized,
                        bool *utf8_replaced)
{
    static const unsigned char replacement[] = {0xEF, 0xBF, 0xBD}; /* U+FFFD */
    size_t used = 0;
    for (size_t i = 0; i < n;) {
        size_t invalid_length = 0;
        size_t length = utf8_sequence(s + i, n - i, &invalid_length);
        const unsigned char *bytes = length ? s + i : replacement;
        size_t out_length = length ? length : sizeof replacement;
        i += length ? length : invalid_length;
        if (length == 1 && is_control(*bytes)) {
            *sanitized = true;
            continue;
        }
        if (used + out_length > SENSE_FIELD_MAX_BYTES) {
            *sanitized = true;
            break;
        }
        memcpy(out + used, bytes, out_length);
        used += out_length;
        if (length == 0)
            *utf8_replaced = true;
    }
    out[used] = '\0';
    return used;
}

/* Decode one field into the event's storage (see udp_decode_field); storage
 * always has room (SENSE_EVENT_STORAGE_MAX) because the cap is on the output. */
static const char *store_field(struct sense_event *event, const unsigned char *s, size_t n)
{
    char *start = event->storage + event->storage_used;
    size_t used = udp_decode_field(s, n, start, &event->sanitized, &event->utf8_replaced);
    event->storage_used += used + 1;
    return start;
}

/* Lower-case ASCII hex letters in place (GUIDs are canonical in topics). */
static void lower_ascii(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

/* Read log4net's NullText as "property not set". */
static void null_text_to_empty(struct sense_event *event, enum sense_field field)
{
    if (strcmp(event->fields[field], "(null)") == 0)
        event->fields[field] = event->storage; /* the shared "" */
}

bool udp_normalize_prefix(const unsigned char *s, size_t n, char out[UDP_PREFIX_MAX])
{
    char prefix[UDP_PREFIX_MAX];
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (is_control(c))
            continue;
        if (used + 1 >= sizeof prefix)
            return false; /* longer than any known prefix */
        prefix[used++] = (char)((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
    }
    while (used > 0 && prefix[used - 1] == ' ')
        used--;
    size_t start = 0;
    while (start < used && prefix[start] == ' ')
        start++;
    while (used - start >= 2 && prefix[used - 1] == '/' && prefix[used - 2] == '/')
        used--;
    memcpy(out, prefix + start, used - start);
    out[used - start] = '\0';
    return true;
}

/* Normalise field 0 (udp_normalize_prefix) and look it up. */
static bool match_prefix(const unsigned char *s, size_t n, enum sense_event_type *type)
{
    char prefix[UDP_PREFIX_MAX];
    if (!udp_normalize_prefix(s, n, prefix))
        return false;
    for (size_t i = 0; i < PREFIX_RULE_COUNT; i++) {
        if (strcmp(prefix, prefix_rules[i].prefix) == 0) {
            *type = prefix_rules[i].type;
            return true;
        }
    }
    return false;
}

size_t udp_split_fields(const unsigned char *data, size_t length, size_t starts[], size_t max)
{
    size_t field_count = 1;
    starts[0] = 0;
    for (size_t i = 0; i < length; i++) {
        if (data[i] != ';')
            continue;
        if (field_count < max)
            starts[field_count] = i + 1;
        field_count++;
    }
    return field_count;
}

enum udp_drop_reason udp_parse(const unsigned char *data, size_t length, size_t max_bytes,
                               struct sense_event *out)
{
    if (length > max_bytes)
        return UDP_DROP_SIZE;
    if (length == 0 || udp_is_blank(data, length))
        return UDP_DROP_EMPTY;

    /* Field boundaries: start offsets of the first SPLIT_MAX fields. */
    size_t starts[SPLIT_MAX + 1];
    size_t field_count = udp_split_fields(data, length, starts, SPLIT_MAX);
    size_t ends[SPLIT_MAX];
    size_t known = field_count < SPLIT_MAX ? field_count : SPLIT_MAX;
    for (size_t f = 0; f < known; f++)
        ends[f] = (f + 1 < known) ? starts[f + 1] - 1 : length;
    if (field_count > SPLIT_MAX) {
        /* ends[SPLIT_MAX-1] must stop at the next ';', not the datagram end. */
        const unsigned char *semi =
            memchr(data + starts[SPLIT_MAX - 1], ';', length - starts[SPLIT_MAX - 1]);
        ends[SPLIT_MAX - 1] = (size_t)(semi - data);
    }

    enum sense_event_type type;
    if (!match_prefix(data, ends[0], &type))
        return UDP_DROP_PREFIX;

    memset(out, 0, offsetof(struct sense_event, storage));
    out->type = type;
    out->storage[0] = '\0';
    out->storage_used = 1;
    for (size_t f = 0; f < SENSE_FIELD_COUNT; f++)
        out->fields[f] = out->storage;

    if (type == SENSE_EVENT_ENGINE_RELOAD_FAILED) {
        if (field_count != ENGINE_FIELDS)
            return UDP_DROP_FIELD_COUNT;
        for (size_t f = 1; f < ENGINE_FIELDS; f++)
            out->fields[engine_layout[f - 1]] =
                store_field(out, data + starts[f], ends[f] - starts[f]);
        null_text_to_empty(out, SENSE_FIELD_APP_ID);
        const char *app_id = out->fields[SENSE_FIELD_APP_ID];
        if (app_id[0] != '\0' && !sense_is_guid(app_id, strlen(app_id)))
            return UDP_DROP_GUID;
        lower_ascii((char *)out->fields[SENSE_FIELD_APP_ID]);
        return UDP_DROP_NONE;
    }

    if (type == SENSE_EVENT_DISTRIBUTE ? field_count < SCHEDULER_FIELDS
                                       : field_count != SCHEDULER_FIELDS)
        return UDP_DROP_FIELD_COUNT;
    for (size_t f = 1; f < SCHEDULER_FIELDS - 1; f++)
        out->fields[scheduler_layout[f - 1]] =
            store_field(out, data + starts[f], ends[f] - starts[f]);
    /* The message: for distribute, everything after the 10th ';' (re-joined
     * by taking the raw bytes, so embedded ';' survive). */
    out->fields[SENSE_FIELD_MESSAGE] = store_field(out, data + starts[10], length - starts[10]);

    null_text_to_empty(out, SENSE_FIELD_APP_NAME);
    null_text_to_empty(out, SENSE_FIELD_APP_ID);
    null_text_to_empty(out, SENSE_FIELD_EXECUTION_ID);
    const char *task_id = out->fields[SENSE_FIELD_TASK_ID];
    const char *app_id = out->fields[SENSE_FIELD_APP_ID];
    if (!sense_is_guid(task_id, strlen(task_id)))
        return UDP_DROP_GUID;
    if (app_id[0] != '\0' && !sense_is_guid(app_id, strlen(app_id)))
        return UDP_DROP_GUID;
    lower_ascii((char *)out->fields[SENSE_FIELD_TASK_ID]);
    lower_ascii((char *)out->fields[SENSE_FIELD_APP_ID]);
    if (sense_is_guid(out->fields[SENSE_FIELD_EXECUTION_ID],
                      strlen(out->fields[SENSE_FIELD_EXECUTION_ID])))
        lower_ascii((char *)out->fields[SENSE_FIELD_EXECUTION_ID]);
    return UDP_DROP_NONE;
}
