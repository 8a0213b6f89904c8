/*
 * Message templates for routes (contract 3.3): `{{a.b}}` is the field at that
 * dotted path of the message's JSON (array elements by number: `{{tags.0}}`),
 * `{{payload}}` is the whole payload as received. Strings render as they are,
 * numbers and booleans as JSON text, objects and arrays as compact JSON, null
 * and missing paths as nothing. Whitespace inside the braces is ignored; a
 * `{{` without a closing `}}` is copied literally.
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

/*
 * Render `text` (NUL-terminated) with `message` (may be NULL: every path is
 * missing) and the raw `payload` (may be NULL). On BUTLER_OK *out is a
 * NUL-terminated string owned by the caller (free()); *truncated_out (may be
 * NULL) tells whether the output hit `out_max`. BUTLER_ERR_NOMEM only.
 */
enum butler_status template_render(const char *text, const cJSON *message, const char *payload,
                                   size_t payload_length, size_t out_max, char **out,
                                   bool *truncated_out);

/* The item at dotted `path` (length `path_length`) in `message`, or NULL. */
const cJSON *template_lookup(const cJSON *message, const char *path, size_t path_length);

#endif
