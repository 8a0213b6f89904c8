/*
 * Message templates for routes (contract 3.3): `{{a.b}}` is the field at that
 * dotted path of the message's JSON (array elements by number: `{{tags.0}}`),
 * `{{payload}}` is the whole payload as received. Strings render as they are,
 * numbers and booleans as JSON text, objects and arrays as compact JSON, null
 * and missing paths as nothing. Whitespace inside the braces is ignored; a
 * `{{` without a closing `}}` is copied literally.
 *
 * Values are written for the body they go into (struct template_options):
 * PLAIN as they are; JSON escaped for a JSON document (inside a string
 * literal of the template: the string's content with `"`, `\` and control
 * characters escaped; outside one: a whole JSON value, a string quoted,
 * a missing value `null`, `{{payload}}` the payload itself when it is
 * JSON), so a value can never add keys; SLACK with `&`, `<` and `>` as
 * `&amp;`, `&lt;`, `&gt;` (Slack's own markup), so a value cannot ping
 * `<!channel>` or hide a link; or a caller's escape function (e.g. InfluxDB
 * line protocol). `{{raw:path}}` (and `{{raw:payload}}`) inserts the value
 * as is, for whoever needs that. The template's own text is never changed.
 *
 * Pure and bounded: the output never exceeds `out_max` bytes (cut on a UTF-8
 * boundary), whatever the template, message or payload. Thread: any.
 */
#ifndef BUTLER_TOPICS_TEMPLATE_H
#define BUTLER_TOPICS_TEMPLATE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "bridge/core/status.h"

enum {
    TEMPLATE_OUTPUT_MAX = 256 * 1024, /* default bound for callers */
    TEMPLATE_PATH_MAX = 256,          /* longer placeholders render empty */
};

enum template_body {
    TEMPLATE_BODY_PLAIN = 0,
    TEMPLATE_BODY_JSON,
    TEMPLATE_BODY_SLACK,
};

/* Hands `length` bytes of escaped output on (to the renderer's buffer). */
typedef void (*template_emit_fn)(void *sink, const char *bytes, size_t length);

/* A caller's escaping of one value's text (PLAIN bodies only): write the
 * escaped form of text[0..length) through emit(sink, ...). */
typedef void (*template_escape_fn)(const char *text, size_t length, template_emit_fn emit,
                                   void *sink);

struct template_options {
    enum template_body body;
    template_escape_fn escape; /* NULL: none */
};

/*
 * Render `text` (NUL-terminated) with `message` (may be NULL: every path is
 * missing) and the raw `payload` (may be NULL). On BUTLER_OK *out is a
 * NUL-terminated string owned by the caller (free()); *truncated_out (may be
 * NULL) tells whether the output hit `out_max`. BUTLER_ERR_NOMEM only.
 */
enum butler_status template_render(const char *text, const cJSON *message, const char *payload,
                                   size_t payload_length, size_t out_max, char **out,
                                   bool *truncated_out);

/* The same, values written as `options` says (NULL: PLAIN, no escaping). */
enum butler_status template_render_for(const char *text, const struct template_options *options,
                                       const cJSON *message, const char *payload,
                                       size_t payload_length, size_t out_max, char **out,
                                       bool *truncated_out);

/* `text` escaped as a value for `body` (JSON: string content, not quoted),
 * bounded by out_max. *out owned by the caller. BUTLER_ERR_NOMEM only. */
enum butler_status template_escape_text(const char *text, enum template_body body, size_t out_max,
                                        char **out);

/* True when a template (after leading white space) starts a JSON object or
 * array (not a placeholder's "{{"): such a template is rendered as a JSON body. */
bool template_looks_like_json(const char *text);

/* The item at dotted `path` (length `path_length`) in `message`, or NULL. */
const cJSON *template_lookup(const cJSON *message, const char *path, size_t path_length);

#endif
