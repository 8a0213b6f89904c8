/*
 * Line protocol writer; see line_protocol.h for the escaping rules. Every
 * append goes through put(), which refuses to grow past `max`: a point that
 * does not fit marks `failed` and lp_end takes it back.
 */
#include "bridge/clients/line_protocol.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum part {
    PART_MEASUREMENT,
    PART_KEY, /* tag keys, tag values, field keys */
    PART_STRING,
};

void lp_init(struct line_protocol *lp, size_t max)
{
    *lp = (struct line_protocol){.max = max};
}

void lp_reset(struct line_protocol *lp)
{
    lp->used = 0;
    lp->points = 0;
    lp->line_start = 0;
    lp->fields = 0;
    lp->open = false;
    lp->failed = false;
    lp->no_memory = false;
    if (lp->data)
        lp->data[0] = '\0';
}

void lp_free(struct line_protocol *lp)
{
    free(lp->data);
    *lp = (struct line_protocol){.max = lp->max};
}

/* Append n bytes; marks the open point failed when over max or out of memory. */
static void put(struct line_protocol *lp, const char *s, size_t n)
{
    if (lp->failed || n == 0)
        return;
    if (n > lp->max || lp->used > lp->max - n) {
        lp->failed = true;
        return;
    }
    if (lp->used + n + 1 > lp->capacity) {
        size_t capacity = lp->capacity ? lp->capacity : 1024;
        while (capacity < lp->used + n + 1)
            capacity *= 2;
        if (capacity > lp->max + 1)
            capacity = lp->max + 1;
        char *grown = realloc(lp->data, capacity);
        if (grown == NULL) {
            lp->failed = true;
            lp->no_memory = true;
            return;
        }
        lp->data = grown;
        lp->capacity = capacity;
    }
    memcpy(lp->data + lp->used, s, n);
    lp->used += n;
    lp->data[lp->used] = '\0';
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
static size_t utf8_length(const unsigned char *s)
{
    if (s[0] < 0x80)
        return 1;
    size_t n;
    unsigned min;
    unsigned code;
    if ((s[0] & 0xE0) == 0xC0) {
        n = 2;
        min = 0x80;
        code = s[0] & 0x1F;
    } else if ((s[0] & 0xF0) == 0xE0) {
        n = 3;
        min = 0x800;
        code = s[0] & 0x0F;
    } else if ((s[0] & 0xF8) == 0xF0) {
        n = 4;
        min = 0x10000;
        code = s[0] & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0; /* also stops at the NUL */
        code = (code << 6) | (s[i] & 0x3F);
    }
    if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF))
        return 0;
    return n;
}

/* Does `c` need a backslash in `part`? */
static bool is_special(enum part part, char c)
{
    switch (part) {
    case PART_MEASUREMENT:
        return c == ',' || c == ' ';
    case PART_KEY:
        return c == ',' || c == '=' || c == ' ';
    case PART_STRING:
        return c == '"' || c == '\\';
    }
    return false;
}

/* Append `text` escaped for `part`; at most `limit` source bytes are taken
 * (cut on a character boundary). */
static void put_escaped(struct line_protocol *lp, enum part part, const char *text, size_t limit)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t taken = 0;
    while (*s && !lp->failed) {
        size_t n = utf8_length(s);
        if (taken + (n ? n : 1) > limit)
            break;
        taken += n ? n : 1;
        if (n == 0) {
            put(lp, "\xEF\xBF\xBD", 3); /* U+FFFD for a byte that is not UTF-8 */
            s++;
            continue;
        }
        if (n > 1) {
            put(lp, (const char *)s, n);
            s += n;
            continue;
        }
        char c = (char)*s++;
        if (part != PART_STRING && (c == '\n' || c == '\r'))
            c = ' '; /* cannot be written outside quotes */
        if (part != PART_STRING && c == '\\') {
            /* InfluxDB takes any character after a backslash as escaped,
             * and has no escape for the backslash itself: one before a
             * character we escape, or at the end (before the separator),
             * cannot be written. It becomes '/'; elsewhere it is literal. */
            char next = (char)*s;
            bool escapes = next == '\0' || is_special(part, next) || next == '\n' || next == '\r';
            put(lp, escapes ? "/" : "\\", 1);
            continue;
        }
        if (is_special(part, c))
            put(lp, "\\", 1);
        put(lp, &c, 1);
    }
}

enum butler_status lp_begin(struct line_protocol *lp, const char *measurement)
{
    if (lp->open) {
        lp->used = lp->line_start;
        if (lp->data)
            lp->data[lp->used] = '\0';
    }
    lp->open = false;
    lp->failed = false;
    lp->no_memory = false;
    lp->fields = 0;
    if (measurement == NULL || measurement[0] == '\0')
        return BUTLER_ERR_INVALID;
    lp->line_start = lp->used;
    lp->open = true;
    put_escaped(lp, PART_MEASUREMENT, measurement, SIZE_MAX);
    return BUTLER_OK;
}

void lp_tag(struct line_protocol *lp, const char *key, const char *value)
{
    if (!lp->open || lp->fields > 0 || key == NULL || value == NULL || !key[0] || !value[0])
        return;
    put(lp, ",", 1);
    put_escaped(lp, PART_KEY, key, SIZE_MAX);
    put(lp, "=", 1);
    put_escaped(lp, PART_KEY, value, SIZE_MAX);
}

/* The separator and escaped key of a new field; false when it must be skipped. */
static bool field_key(struct line_protocol *lp, const char *key)
{
    if (!lp->open || key == NULL || key[0] == '\0')
        return false;
    put(lp, lp->fields == 0 ? " " : ",", 1);
    put_escaped(lp, PART_KEY, key, SIZE_MAX);
    put(lp, "=", 1);
    lp->fields++;
    return true;
}

void lp_field_float(struct line_protocol *lp, const char *key, double value)
{
    if (!isfinite(value) || !field_key(lp, key))
        return;
    char number[40];
    /* The shortest of 15 or 17 digits that reads back as the same double. */
    snprintf(number, sizeof number, "%.15g", value);
    if (strtod(number, NULL) != value)
        snprintf(number, sizeof number, "%.17g", value);
    put(lp, number, strlen(number));
}

void lp_field_int(struct line_protocol *lp, const char *key, long long value)
{
    if (!field_key(lp, key))
        return;
    char number[32];
    snprintf(number, sizeof number, "%lldi", value);
    put(lp, number, strlen(number));
}

void lp_field_bool(struct line_protocol *lp, const char *key, bool value)
{
    if (field_key(lp, key))
        put(lp, value ? "true" : "false", value ? 4 : 5);
}

void lp_field_string(struct line_protocol *lp, const char *key, const char *value)
{
    if (value == NULL || !field_key(lp, key))
        return;
    put(lp, "\"", 1);
    put_escaped(lp, PART_STRING, value, LINE_PROTOCOL_STRING_MAX);
    put(lp, "\"", 1);
}

bool lp_is_number(const char *text)
{
    const char *p = text;
    if (*p == '-')
        p++;
    if (*p < '0' || *p > '9')
        return false;
    if (*p == '0' && p[1] >= '0' && p[1] <= '9')
        return false; /* no leading zeros, as in JSON */
    while (*p >= '0' && *p <= '9')
        p++;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (*p < '0' || *p > '9')
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == '\0';
}

void lp_field_auto(struct line_protocol *lp, const char *key, const char *text)
{
    if (text == NULL || text[0] == '\0')
        return;
    if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0) {
        lp_field_bool(lp, key, text[0] == 't');
        return;
    }
    if (lp_is_number(text)) {
        double value = strtod(text, NULL);
        if (isfinite(value)) {
            lp_field_float(lp, key, value);
            return;
        }
    }
    lp_field_string(lp, key, text);
}

enum butler_status lp_end(struct line_protocol *lp, int64_t timestamp)
{
    enum butler_status status = BUTLER_OK;
    if (!lp->open)
        return BUTLER_ERR_INVALID;
    if (lp->fields == 0) {
        status = BUTLER_ERR_INVALID;
        goto out;
    }
    if (timestamp != LINE_PROTOCOL_NO_TIME) {
        char number[32];
        snprintf(number, sizeof number, " %lld", (long long)timestamp);
        put(lp, number, strlen(number));
    }
    put(lp, "\n", 1);
    if (lp->failed)
        status = lp->no_memory ? BUTLER_ERR_NOMEM : BUTLER_ERR_TOO_LARGE;
out:
    if (status != BUTLER_OK) {
        lp->used = lp->line_start; /* take the point back */
        if (lp->data)
            lp->data[lp->used] = '\0';
    } else {
        lp->points++;
        lp->line_start = lp->used;
    }
    lp->open = false;
    lp->failed = false;
    lp->fields = 0;
    return status;
}
