/*
 * The embedded HTTP server (CivetWeb 1.15) serving Butler's HTTP API.
 *
 * http_server.c owns the transport: listeners from http.listen (suffix 's' =
 * TLS, certificates loaded through OpenSSL directly; http.tls.ca_file set =
 * client certificates required), worker threads (http.threads), body
 * reading with the hard cap http.max_body_bytes, JSON replies and errors, and
 * per-endpoint request counters. http_api.c owns routing, authentication and
 * the endpoints; it sees a request only through struct http_exchange.
 *
 * Threads: CivetWeb runs each request on one of its worker threads; an
 * exchange belongs to that thread for the duration of the request.
 */
#ifndef BUTLER_HTTP_SERVER_H
#define BUTLER_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "bridge/ingress/http_body.h"
#include "bridge/core/runtime.h"
#include "bridge/core/status.h"

struct http_server;
struct mg_connection;
struct cJSON;

/* One request being answered. Owned by http_server.c; valid during the
 * http_api_handle() call only. */
struct http_exchange {
    struct mg_connection *connection;
    struct butler_runtime *runtime;
    enum http_method method; /* after X-HTTP-Method-Override */
    const char *path;        /* URL-decoded, without the query */
    const char *query;       /* raw query string, or "" */
    const char *endpoint;    /* metrics label, set by the router ("unknown" until then) */
    char *body;              /* after http_exchange_read_body(): NUL-terminated */
    size_t body_length;
    bool body_read;
    int status; /* the status answered, 0 until then */
    /* Set by http_guard_check for an origin in http.allowed_origins: the
     * answer carries Access-Control-Allow-Origin with it (borrowed header). */
    const char *cors_origin;
};

/* Start listening per the `http` config. Returns BUTLER_OK with *out NULL
 * when http.enable is false. Start-up only (main thread). */
enum butler_status http_server_start(struct butler_runtime *runtime, struct http_server **out);

/* Stop accepting, let running requests finish (each is bounded by
 * task_start_timeout_ms), free everything. NULL is a no-op. Takes ~2 s
 * (CivetWeb's master thread polls). */
void http_server_stop(struct http_server *server);

/* Read the request body into exchange->body, at most http.max_body_bytes
 * (decoded, chunked bodies included). BUTLER_ERR_TOO_LARGE as soon as the
 * declared or received length passes the cap, without reading the rest. */
enum butler_status http_exchange_read_body(struct http_exchange *exchange);

/* True while the request has a body (declared or chunked), read or not. */
bool http_exchange_has_body(const struct http_exchange *exchange);
/* True on a TLS listener. */
bool http_exchange_is_tls(const struct http_exchange *exchange);
/* The request line's method as sent ("OPTIONS"), never NULL. */
const char *http_exchange_request_method(const struct http_exchange *exchange);

/* A request header, or NULL. */
const char *http_exchange_header(const struct http_exchange *exchange, const char *name);

/* Answer with `json` (may be NULL for an empty body, e.g. 204). A HEAD
 * request gets the headers only (Content-Length of the body it would get).
 * `extra_headers` (may be NULL) is a NULL-terminated list of name, value
 * pairs: {"Retry-After", "5", NULL}. */
void http_exchange_reply(struct http_exchange *exchange, int status, const char *content_type,
                         const char *body, size_t body_length, const char *const *extra_headers);
void http_exchange_reply_json(struct http_exchange *exchange, int status, const char *json,
                              const char *const *extra_headers);
/* Answer with `json` printed compactly, then delete it (NULL or a failed
 * print answers 500). Takes ownership of `json`. */
void http_exchange_reply_cjson(struct http_exchange *exchange, int status, struct cJSON *json);
/* {"statusCode", "error", "message"} */
void http_exchange_reply_error(struct http_exchange *exchange, int status, const char *message,
                               const char *const *extra_headers);

/* Implemented by http_api.c: route and answer one request. */
void http_api_handle(struct http_exchange *exchange);
/* Implemented by http_api.c for endpoints in other files: read a JSON body
 * (answers 415/413/400 itself and returns false). */
bool http_api_read_json_body(struct http_exchange *exchange);
/* The optional ?requestId= into out (TASK_REQUEST_ID_MAX + 1 bytes): absent
 * or empty = a fresh UUID; 1..64 of A-Z a-z 0-9 - _ . : is taken; anything
 * else is answered 400 and returns false. */
bool http_api_request_id(struct http_exchange *exchange, char *out, size_t out_size);
/* Answer {"requestId": id[, "status": state]} (state may be NULL), built
 * with cJSON so the id can never add keys. */
void http_api_reply_pending(struct http_exchange *exchange, int status, const char *request_id,
                            const char *state);
/* Optional boolean query flag: absent = false; true/1, false/0; anything else
 * is answered 400 and returns false. */
bool http_api_query_flag(struct http_exchange *exchange, const char *name, bool *value);
/* A query variable into out: 0 found, -1 absent, -2 too long, -3 holds a NUL. */
int http_api_query_var(const struct http_exchange *exchange, const char *name, char *out,
                       size_t out_size);

/* Implemented by http_api.c: check http.endpoints at start-up; logs unknown
 * names. BUTLER_ERR_INVALID when a name is not an endpoint at all. */
enum butler_status http_api_check_config(const struct butler_config *config);

#endif
