/*
 * The pure parts of the HTTP API: request-body parsers, base62/base16
 * conversion, method override, bearer-token comparison, and the mapping of a
 * <root>/task/result answer to the Node.js Butler's task-start response shape.
 *
 * Nothing here does I/O or touches global state, so every function is safe
 * from any thread and can be unit-tested and fuzzed directly
 * (tests/unit/test_http_api.c, tests/fuzz/fuzz_http_bodies.c).
 * Strings returned through `char **` are heap-allocated and owned by the
 * caller (free()).
 */
#ifndef BUTLER_HTTP_BODY_H
#define BUTLER_HTTP_BODY_H

#include <stdbool.h>
#include <stddef.h>

#include "bridge/core/status.h"
#include "config/config.h"

enum {
    /* Longest number accepted by the base conversions; a Qlik object id is
     * ~25 base62 digits, so 1024 is generous and keeps the O(n^2) work tiny. */
    HTTP_BASE_INPUT_MAX = 1024,
    /* Longest MQTT topic accepted from /v4/mqttpublishmessage. */
    HTTP_TOPIC_MAX = 1024,
};

enum http_method {
    HTTP_METHOD_OTHER = 0,
    HTTP_METHOD_GET,
    HTTP_METHOD_HEAD,
    HTTP_METHOD_POST,
    HTTP_METHOD_PUT,
    HTTP_METHOD_DELETE,
};

/* The effective method: POST with "X-HTTP-Method-Override: PUT|DELETE"
 * (case-insensitive) becomes PUT/DELETE, because the Qlik REST connector can
 * only GET and POST. Any other override value leaves POST. */
enum http_method http_body_method(const char *request_method, const char *override_header);
const char *http_body_method_name(enum http_method method);

/* Constant-time comparison of a presented token with an expected one: the
 * time taken depends only on the presented length, never on where the first
 * difference is. */
bool http_body_token_equal(const char *presented, size_t presented_length, const char *expected);

/* True when `authorization` ("Bearer <token>", scheme case-insensitive) names
 * one of `tokens`. Every token is compared, so timing does not reveal which
 * one matched. NULL header -> false. */
bool http_body_bearer_allowed(const char *authorization, const struct config_string_list *tokens);

/* True for application/json, application/<x>+json, with any parameters. */
bool http_body_is_json_content_type(const char *content_type);

/*
 * Numeric conversion between base62 (alphabet 0-9a-zA-Z) and base16
 * (0-9a-f; A-F accepted on input), as the Node.js Butler's any-base: leading
 * zeros are not kept and zero is "0". `from_base` and `to_base` are 16 or
 * 62. BUTLER_ERR_INVALID for an empty input or a character outside the
 * alphabet, BUTLER_ERR_TOO_LARGE for input over HTTP_BASE_INPUT_MAX or an
 * output that does not fit `out_size` (NUL included).
 */
enum butler_status http_body_base_convert(const char *input, size_t input_length, int from_base,
                                          int to_base, char *out, size_t out_size);

/* Body of PUT /v4/mqttpublishmessage. */
struct http_publish_body {
    char *topic;
    char *message;
    int qos;     /* default 1: Butler answers only after the broker acknowledged */
    bool retain; /* default false */
    char *echo;  /* the body as re-serialised JSON, for the 201 answer */
};

/* Parse {"topic","message","qos"?,"retain"?}. On BUTLER_OK the caller owns
 * *out (http_publish_body_clear). BUTLER_ERR_INVALID with `error` filled for
 * malformed JSON or bad fields. */
enum butler_status http_body_parse_publish(const char *body, size_t length,
                                           struct http_publish_body *out, char *error,
                                           size_t error_size);
void http_publish_body_clear(struct http_publish_body *body);

/* Parse {"channel","from_user","msg","emoji"?} and build the <root>/slack/post
 * payload {"text","channel","username","icon_emoji"?} into *payload_out and the
 * 201 echo into *echo_out. */
enum butler_status http_body_parse_slack(const char *body, size_t length, char **payload_out,
                                         char **echo_out, char *error, size_t error_size);

/*
 * Build the <root>/task/start payload for PUT|POST /v4/reloadtask/{id}/start:
 * {"requestId", "items": [<starttaskid for path_task_id unless "-">, <body
 * items>...], "allTaskIdsMustExist"}. `body` (may be empty) must be a JSON
 * array of typed items. The result is checked with the task-start parser so
 * that a bad request is a 400 here, not an "invalid" answer later.
 * BUTLER_OK with *payload_out == NULL: the path is "-" and the body is absent,
 * blank or "[]": the request names nothing, so nothing is to be published
 * (answer it with http_body_task_start_nothing).
 */
enum butler_status http_body_task_start_payload(const char *path_task_id, const char *body,
                                                size_t length, bool all_task_ids_must_exist,
                                                const char *request_id, char **payload_out,
                                                char *error, size_t error_size);

/*
 * Map a <root>/task/result answer to the Node.js Butler's 200 body:
 * {"tasksId": {"started": [{taskId, taskName}], "invalid": [{taskId}],
 *  "denied": [{taskId}]}, "tasksTag": [{taskId, taskName}],
 *  "tasksTagDenied": [{tag}], "tasksCP": [{taskId, taskName}],
 *  "tasksCPDenied": [{name, value}], "requestId", "status",
 *  "failed"? , "skipped"?, "error"?}.
 * BUTLER_ERR_INVALID when `result` is not a JSON object.
 */
enum butler_status http_body_task_result_to_node(const char *result, size_t length, char **out);

/* The answer to a task start that names nothing (see
 * http_body_task_start_payload): the Node.js Butler's shape with every list
 * empty, and Butler's "requestId". */
enum butler_status http_body_task_start_nothing(const char *request_id, char **out);

#endif
