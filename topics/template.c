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

/* ---- escaping: every value goes through write_text() ---- */

struct render {
    struct output *out;
    const struct template_options *options;
    bool in_string; /* JSON body: inside a string literal of the template */
};

static void emit_to_output(void *sink, const char *bytes, size_t length)
{
    append(sink, bytes, length);
}

/* JSON string content: `"`, `\` and control characters escaped. */
static void escape_json(struct output *out, const char *text, size_t length)
{
    size_t run = 0;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        append(out, text + run, i - run);
        char escaped[8];
        switch (c) {
        case '"':
            append(out, "\\\"", 2);
            break;
        case '\\':
            append(out, "\\\\", 2);
            break;
        case '\n':
            append(out, "\\n", 2);
            break;
        case '\r':
            append(out, "\\r", 2);
            break;
        case '\t':
            append(out, "\\t", 2);
            break;
        default:
            snprintf(escaped, sizeof escaped, "\\u%04x", c);
            append(out, escaped, 6);
        }
        run = i + 1;
    }
    append(out, text + run, length - run);
}

/* Slack text: & < > as entities, so a value cannot form <!channel> or <url|x>. */
static void escape_slack(struct output *out, const char *text, size_t length)
{
    size_t run = 0;
    for (size_t i = 0; i < length; i++) {
        const char *entity = text[i] == '&'   ? "&amp;"
                             : text[i] == '<' ? "&lt;"
                             : text[i] == '>' ? "&gt;"
                                              : NULL;
        if (entity == NULL)
            continue;
        append(out, text + run, i - run);
        append(out, entity, strlen(entity));
        run = i + 1;
    }
    append(out, text + run, length - run);
}

/* One value's text, escaped for the body. `quote`: JSON outside a string,
 * where a string must become a whole JSON string. */
static void write_text(struct render *render, const char *text, size_t length, bool raw, bool quote)
{
    const struct template_options *options = render->options;
    struct output *out = render->out;
    if (raw || options == NULL) {
        append(out, text, length);
        return;
    }
    switch (options->body) {
    case TEMPLATE_BODY_JSON:
        if (quote)
            append(out, "\"", 1);
        escape_json(out, text, length);
        if (quote)
            append(out, "\"", 1);
        return;
    case TEMPLATE_BODY_SLACK:
        escape_slack(out, text, length);
        return;
    case TEMPLATE_BODY_PLAIN:
        break;
    }
    if (options->escape)
        options->escape(text, length, emit_to_output, out);
    else
        append(out, text, length);
}

static bool json_outside_string(const struct render *render)
{
    return render->options && render->options->body == TEMPLATE_BODY_JSON && !render->in_string;
}

/* Append one JSON value: its text form (strings as they are, numbers and
 * booleans as JSON text, objects and arrays as compact JSON, null and
 * missing as nothing), escaped for the body. */
static void append_value(struct render *render, const cJSON *item, bool raw)
{
    bool whole_value = json_outside_string(render) && !raw;
    if (item == NULL || cJSON_IsNull(item)) {
        if (whole_value)
            append(render->out, "null", 4);
        return;
    }
    if (cJSON_IsString(item)) {
        write_text(render, item->valuestring, strlen(item->valuestring), raw, whole_value);
        return;
    }
    if (cJSON_IsBool(item)) {
        write_text(render, cJSON_IsTrue(item) ? "true" : "false", cJSON_IsTrue(item) ? 4 : 5,
                   raw || whole_value, false);
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
        write_text(render, number, strlen(number), raw || whole_value, false);
        return;
    }
    char *json = cJSON_PrintUnformatted(item);
    if (json == NULL) {
        render->out->failed = true;
        return;
    }
    /* Outside a JSON string, compact JSON is already a valid value. */
    write_text(render, json, strlen(json), raw || whole_value, false);
    cJSON_free(json);
}

/* Template text between placeholders: copied as it is; in a JSON body it
 * moves us in and out of string literals. */
static void append_literal(struct render *render, const char *text, size_t length)
{
    append(render->out, text, length);
    if (render->options == NULL || render->options->body != TEMPLATE_BODY_JSON)
        return;
    for (size_t i = 0; i < length; i++) {
        if (render->in_string && text[i] == '\\')
            i++; /* the escaped character cannot end the string */
        else if (text[i] == '"')
            render->in_string = !render->in_string;
    }
}

enum butler_status template_escape_text(const char *text, enum template_body body, size_t out_max,
                                        char **out)
{
    struct output output = {.max = out_max};
    struct template_options options = {.body = body};
    struct render render = {.out = &output, .options = &options, .in_string = true};
    write_text(&render, text, strlen(text), false, false);
    reserve(&output, 0);
    if (!output.failed && output.data == NULL)
        output.data = malloc(1);
    if (output.failed || output.data == NULL) {
        free(output.data);
        *out = NULL;
        return BUTLER_ERR_NOMEM;
    }
    output.data[output.used] = '\0';
    *out = output.data;
    return BUTLER_OK;
}

bool template_looks_like_json(const char *text)
{
    while (text && is_space(*text))
        text++;
    /* "{{" opens a placeholder, not an object. */
    return text && ((text[0] == '{' && text[1] != '{') || text[0] == '[');
}

enum butler_status template_render(const char *text, const cJSON *message, const char *payload,
                                   size_t payload_length, size_t out_max, char **out,
                                   bool *truncated_out)
{
    return template_render_for(text, NULL, message, payload, payload_length, out_max, out,
                               truncated_out);
}

enum butler_status template_render_for(const char *text, const struct template_options *options,
                                       const cJSON *message, const char *payload,
                                       size_t payload_length, size_t out_max, char **out,
                                       bool *truncated_out)
{
    struct output output = {.max = out_max};
    struct render render = {.out = &output, .options = options};
    enum butler_status status = BUTLER_ERR_NOMEM;
    const char *p = text;
    *out = NULL;
    while (*p && !output.failed && !output.truncated) {
        const char *open = strstr(p, "{{");
        const char *close = open ? strstr(open + 2, "}}") : NULL;
        if (open == NULL || close == NULL) {
            append_literal(&render, p, strlen(p));
            break;
        }
        append_literal(&render, p, (size_t)(open - p));
        const char *name = open + 2;
        const char *name_end = close;
        while (name < name_end && is_space(*name))
            name++;
        while (name_end > name && is_space(name_end[-1]))
            name_end--;
        bool raw = (size_t)(name_end - name) >= 4 && memcmp(name, "raw:", 4) == 0;
        if (raw)
            name += 4;
        size_t name_length = (size_t)(name_end - name);
        if (name_length == 7 && memcmp(name, "payload", 7) == 0) {
            /* Outside a JSON string, a payload that is JSON goes in as itself. */
            bool as_is = raw || (json_outside_string(&render) && message != NULL);
            if (payload)
                write_text(&render, payload, payload_length, as_is, json_outside_string(&render));
            else if (json_outside_string(&render) && !raw)
                append(&output, "null", 4);
        } else {
            append_value(&render, template_lookup(message, name, name_length), raw);
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
