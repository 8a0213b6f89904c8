/*
 * Template rendering; see template.h. Output goes into one buffer allocated
 * at out_max + 1 up front only when needed: it grows by doubling but never
 * past out_max, so a hostile template cannot make Butler allocate more.
 */
#include "topics/template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct output {
    char *data;
    size_t used, capacity, max;
    bool truncated;
    bool failed;
};

/* Ensure room for `more` bytes, capped at max. Returns the bytes available. */
static size_t reserve(struct output *out, size_t more)
{
    size_t want = out->used + more;
    if (want > out->max)
        want = out->max;
    if (want + 1 > out->capacity) {
        size_t capacity = out->capacity ? out->capacity : 256;
        while (capacity < want + 1)
            capacity *= 2;
        if (capacity > out->max + 1)
            capacity = out->max + 1;
        char *grown = realloc(out->data, capacity);
        if (grown == NULL) {
            out->failed = true;
            return 0;
        }
        out->data = grown;
        out->capacity = capacity;
    }
    return want - out->used;
}

/* Append, cutting at the cap on a UTF-8 character boundary. */
static void append(struct output *out, const char *text, size_t length)
{
    if (out->failed || out->truncated || length == 0)
        return;
    size_t room = reserve(out, length);
    if (out->failed)
        return;
    if (room < length) {
        out->truncated = true;
        /* Do not split a multi-byte character. */
        while (room > 0 && ((unsigned char)text[room] & 0xC0) == 0x80)
            room--;
        length = room;
    }
    memcpy(out->data + out->used, text, length);
    out->used += length;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Parse a decimal array index; false when `s` is not all digits or too big. */
static bool parse_index(const char *s, size_t n, int *index)
{
    if (n == 0 || n > 9)
        return false;
    int value = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        value = value * 10 + (s[i] - '0');
    }
    *index = value;
    return true;
}

const cJSON *template_lookup(const cJSON *message, const char *path, size_t path_length)
{
    char segment[TEMPLATE_PATH_MAX + 1];
    const cJSON *item = message;
    size_t start = 0;
    if (path_length == 0 || path_length > TEMPLATE_PATH_MAX)
        return NULL;
    while (item && start <= path_length) {
        const char *dot = memchr(path + start, '.', path_length - start);
        size_t end = dot ? (size_t)(dot - path) : path_length;
        size_t n = end - start;
        memcpy(segment, path + start, n);
        segment[n] = '\0';
        int index;
        if (cJSON_IsArray(item) && parse_index(segment, n, &index))
            item = cJSON_GetArrayItem(item, index);
        else if (cJSON_IsObject(item))
            item = cJSON_GetObjectItemCaseSensitive(item, segment);
        else
            item = NULL;
        if (dot == NULL)
            break;
        start = end + 1;
    }
    return item;
}

/* Append the text form of one JSON value. */
static void append_value(struct output *out, const cJSON *item)
{
    if (item == NULL || cJSON_IsNull(item))
        return;
    if (cJSON_IsString(item)) {
        append(out, item->valuestring, strlen(item->valuestring));
        return;
    }
    if (cJSON_IsBool(item)) {
        append(out, cJSON_IsTrue(item) ? "true" : "false", cJSON_IsTrue(item) ? 4 : 5);
        return;
    }
    if (cJSON_IsNumber(item)) {
        char number[64];
        double value = item->valuedouble;
        /* Range first: converting an out-of-range double to an integer is undefined. */
        if (value > -1e15 && value < 1e15 && value == (double)(long long)value)
            snprintf(number, sizeof number, "%lld", (long long)value);
        else
            snprintf(number, sizeof number, "%.17g", value);
        append(out, number, strlen(number));
        return;
    }
    char *json = cJSON_PrintUnformatted(item);
    if (json == NULL) {
        out->failed = true;
        return;
    }
    append(out, json, strlen(json));
    cJSON_free(json);
}

enum butler_status template_render(const char *text, const cJSON *message, const char *payload,
                                   size_t payload_length, size_t out_max, char **out,
                                   bool *truncated_out)
{
    struct output output = {.max = out_max};
    enum butler_status status = BUTLER_ERR_NOMEM;
    const char *p = text;
    *out = NULL;
    while (*p && !output.failed && !output.truncated) {
        const char *open = strstr(p, "{{");
        const char *close = open ? strstr(open + 2, "}}") : NULL;
        if (open == NULL || close == NULL) {
            append(&output, p, strlen(p));
            break;
        }
        append(&output, p, (size_t)(open - p));
        const char *name = open + 2;
        const char *name_end = close;
        while (name < name_end && is_space(*name))
            name++;
        while (name_end > name && is_space(name_end[-1]))
            name_end--;
        size_t name_length = (size_t)(name_end - name);
        if (name_length == 7 && memcmp(name, "payload", 7) == 0) {
            if (payload)
                append(&output, payload, payload_length);
        } else {
            append_value(&output, template_lookup(message, name, name_length));
        }
        p = close + 2;
    }
    if (output.failed)
        goto out;
    reserve(&output, 0); /* room for the NUL */
    if (output.failed)
        goto out;
    if (output.data == NULL) {
        output.data = malloc(1);
        if (output.data == NULL)
            goto out;
    }
    output.data[output.used] = '\0';
    if (truncated_out)
        *truncated_out = output.truncated;
    *out = output.data;
    output.data = NULL;
    status = BUTLER_OK;
out:
    free(output.data);
    return status;
}
