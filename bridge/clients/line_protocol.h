/*
 * InfluxDB line protocol writer (reference 7.4): one point per line,
 *   measurement[,tag=value...] field=value[,field=value...] [timestamp]
 *
 * Escaping, by part (every version of InfluxDB reads these the same way):
 *   measurement           ',' and ' ' get a backslash
 *   tag keys and values,  ',', '=' and ' ' get a backslash
 *   field keys
 *   string field values   quoted with '"'; '"' and '\' get a backslash;
 *                         a newline stays as it is (the quotes hold it)
 * In the unquoted parts a newline or carriage return cannot be written at all
 * (InfluxDB ends the line there): each becomes a space. InfluxDB reads a
 * backslash before a special character as an escape and has no escape for a
 * backslash itself, so a backslash that would escape the next character (or
 * the separator after the part) becomes '/'; elsewhere it stays literal.
 * Bytes that are not valid UTF-8 become U+FFFD; valid non-ASCII text is
 * copied unchanged. An empty tag key or value, an empty field key or an
 * empty auto-typed value is skipped (InfluxDB refuses empty tags); a point
 * left without fields is refused. String values are cut at
 * LINE_PROTOCOL_STRING_MAX bytes on a character boundary (InfluxDB 1.x
 * refuses longer strings).
 *
 * Bounded: the buffer never grows past `max` bytes; a point that would is
 * taken back whole (lp_end returns BUTLER_ERR_TOO_LARGE), earlier points stay.
 * Not thread-safe: one writer per buffer. Owns its buffer (lp_free).
 */
#ifndef BUTLER_LINE_PROTOCOL_H
#define BUTLER_LINE_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/status.h"

enum {
    LINE_PROTOCOL_STRING_MAX = 64 * 1024 - 1,
    /* lp_end: no timestamp, InfluxDB uses its own clock. */
};
#define LINE_PROTOCOL_NO_TIME INT64_MIN

struct line_protocol {
    char *data; /* NUL-terminated when not NULL; lines end with '\n' */
    size_t used, capacity, max;
    size_t points;     /* complete points in data */
    size_t line_start; /* where the open point began */
    int fields;        /* fields in the open point */
    bool open;         /* lp_begin called, lp_end not yet */
    bool failed;       /* the open point hit the bound or memory ran out */
    bool no_memory;
};

/* An empty buffer that will hold at most `max` bytes. */
void lp_init(struct line_protocol *lp, size_t max);
/* Forget every point (keeps the allocation). */
void lp_reset(struct line_protocol *lp);
void lp_free(struct line_protocol *lp);

/* Start a point. BUTLER_ERR_INVALID when `measurement` is empty. A point
 * already open is taken back first. */
enum butler_status lp_begin(struct line_protocol *lp, const char *measurement);
/* Tags: all before the first field. Skipped when key or value is empty. */
void lp_tag(struct line_protocol *lp, const char *key, const char *value);
void lp_field_float(struct line_protocol *lp, const char *key, double value); /* NaN/inf skipped */
void lp_field_int(struct line_protocol *lp, const char *key, long long value);
void lp_field_bool(struct line_protocol *lp, const char *key, bool value);
void lp_field_string(struct line_protocol *lp, const char *key, const char *value);
/* A rendered template value (contract 9.3): a JSON-style number is a float,
 * "true"/"false" a boolean, anything else a string; "" is skipped. */
void lp_field_auto(struct line_protocol *lp, const char *key, const char *text);
/*
 * End the point with `timestamp` (in the precision the writer sends, or
 * LINE_PROTOCOL_NO_TIME). BUTLER_OK: the point is in data. Otherwise the point
 * is taken back: BUTLER_ERR_INVALID (no fields), BUTLER_ERR_TOO_LARGE (over
 * max), BUTLER_ERR_NOMEM.
 */
enum butler_status lp_end(struct line_protocol *lp, int64_t timestamp);

/* True when `text` is a number as JSON writes one (what lp_field_auto takes
 * as a number). */
bool lp_is_number(const char *text);

#endif
