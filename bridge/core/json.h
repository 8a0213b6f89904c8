/*
 * JSON parsing with cJSON where the whole input must be one JSON value.
 * cJSON's own require_null_terminated mode wants a NUL byte inside `length`,
 * which a length-delimited MQTT payload or HTTP body does not have; this
 * checks instead that only whitespace follows the value. Nesting is bounded
 * by cJSON (CJSON_NESTING_LIMIT). The result is owned by the caller
 * (cJSON_Delete); NULL on any error, with *error_offset (may be NULL) set to
 * where parsing stopped.
 */
#ifndef BUTLER_JSON_H
#define BUTLER_JSON_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* Deepest nesting any Butler input may have. cJSON recurses once per level,
 * and a few hundred levels overflow a small thread stack (CivetWeb's). */
enum { JSON_DEPTH_MAX = 64 };

cJSON *json_parse_exact(const char *text, size_t length, size_t *error_offset);

/* The string value of member `name`, or NULL when absent or not a string.
 * Borrowed from `object`. */
const char *json_string_member(const cJSON *object, const char *name);

/* True when arrays/objects nest at most `max_depth` levels (strings skipped).
 * Cheap enough to run before every parse. */
bool json_depth_within(const char *text, size_t length, int max_depth);

/* True when the JSON text holds a NUL character, raw or as the \u0000
 * escape. cJSON ends its C strings there, so a string value would be cut
 * short silently; callers for which that matters (file paths) refuse it. */
bool json_has_nul_escape(const char *text, size_t length);

#endif
