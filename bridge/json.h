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
#include <stddef.h>

cJSON *json_parse_exact(const char *text, size_t length, size_t *error_offset);

#endif
