/*
 * CivetWeb transport for the HTTP API (see http_server.h).
 *
 * TLS: Debian 12's CivetWeb 1.15 loads OpenSSL at run time by the names
 * "libssl.so"/"libcrypto.so" and needs SSL_get_peer_certificate, which
 * OpenSSL 3 only has as a macro. Butler links a tiny library whose SONAME is
 * "libssl.so" (bridge/ingress/ssl_compat/) that provides the old name on top of
 * libssl.so.3; CivetWeb's dlopen("libssl.so") then returns that
 * already-loaded library and dlsym() finds every symbol in it or its
 * dependencies. Certificates are loaded by init_ssl() below with OpenSSL
 * directly, so key and certificate may live in separate files.
 */
#include "bridge/ingress/http_server.h"

#include <cjson/cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/ingress/http_guard.h"
#include "bridge/ingress/ssl_compat/ssl_compat.h"

#define MODULE "http"

enum {
    BODY_INITIAL_CHUNK = 16 * 1024,
    /* Request line + headers Butler accepts; larger is 431. */
    HEADER_BYTES_MAX = 16 * 1024,
    /* CivetWeb's max_request_size: its read buffer for the request line and
     * headers (one per connection). Larger than HEADER_BYTES_MAX so that an
     * oversized header block still reaches handle_request and gets its 431:
     * past this buffer CivetWeb 1.15 reports "Malformed message" (400), the
     * same words it uses for a control character in a header, so the two
     * cannot be told apart there. */
    HEADER_READ_BUFFER = 4 * HEADER_BYTES_MAX,
    KEEP_ALIVE_MS = 5000,
    /* The health listener: probes send their request at once. */
    HEALTH_TIMEOUT_MS = 2000,
};

#define HEALTH_THREADS "4"

struct http_server {
    struct mg_context *context;
    struct mg_context *health_context; /* http.health_listen, or NULL */
    struct butler_runtime *runtime;
    struct http_guard *guard;
};

/* ---- listeners ---- */

/* Copy the next comma-separated entry of *cursor into out (trimmed);
 * false at the end. Entries longer than out are truncated (they are then
 * rejected by CivetWeb anyway). */
static bool next_listener(const char **cursor, char *out, size_t out_size)
{
    const char *at = *cursor;
    while (*at == ' ' || *at == ',')
        at++;
    if (*at == '\0')
        return false;
    size_t length = strcspn(at, ",");
    *cursor = at + length;
    while (length > 0 && at[length - 1] == ' ')
        length--;
    snprintf(out, out_size, "%.*s", (int)length, at);
    return true;
}

static bool listen_has_tls(const char *listen)
{
    char entry[256];
    for (const char *cursor = listen; next_listener(&cursor, entry, sizeof entry);) {
        size_t length = strlen(entry);
        if (length > 0 && entry[length - 1] == 's')
            return true;
    }
    return false;
}

/* A listener is loopback when its host part is 127.x.x.x, localhost or ::1;
 * a bare port listens on every interface. */
static void warn_if_exposed(const struct butler_config *config)
{
    if (config->http.tokens.count > 0)
        return;
    char entry[256];
    for (const char *cursor = config->http.listen; next_listener(&cursor, entry, sizeof entry);) {
        bool loopback = strncmp(entry, "127.", 4) == 0 || strncmp(entry, "localhost:", 10) == 0 ||
                        strncmp(entry, "[::1]:", 6) == 0;
        if (!loopback)
            LOG_WARN(MODULE,
                     "listener %s is not loopback and http.tokens is empty: anyone who can reach "
                     "it can start tasks and publish; set http.tokens",
                     entry);
    }
}

/*
 * CivetWeb calls this once while creating the server's SSL_CTX (start-up,
 * main thread). Returns 1 ("certificate set up here") or -1 (fail start).
 */
static int init_ssl(void *ssl_context, void *user_data)
{
    SSL_CTX *ctx = ssl_context;
    const struct http_server *server = user_data;
    const struct butler_config *config = server->runtime->config;
    char error[256] = "";
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, config->http.tls.cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, config->http.tls.key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        ERR_error_string_n(ERR_get_error(), error, sizeof error);
        LOG_ERROR(MODULE, "http.tls: cannot use %s / %s: %s", config->http.tls.cert_file,
                  config->http.tls.key_file, error);
        return -1;
    }
    if (config->http.tls.ca_file[0]) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(config->http.tls.ca_file);
        if (SSL_CTX_load_verify_locations(ctx, config->http.tls.ca_file, NULL) != 1 ||
            names == NULL) {
            ERR_error_string_n(ERR_get_error(), error, sizeof error);
            LOG_ERROR(MODULE, "http.tls.ca_file %s: %s", config->http.tls.ca_file, error);
            if (names)
                sk_X509_NAME_pop_free(names, X509_NAME_free);
            return -1;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    return 1;
}

static int log_message(const struct mg_connection *connection, const char *message)
{
    (void)connection;
    LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "civetweb: %s", message);
    return 1;
}

/* ---- replies ---- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 421:
        return "Misdirected Request";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    }
    return "Error";
}

/* True while the request still has body bytes we did not read. */
static bool body_pending(const struct http_exchange *exchange)
{
    if (exchange->body_read)
        return false;
    const struct mg_request_info *info = mg_get_request_info(exchange->connection);
    if (info->content_length > 0)
        return true;
    const char *encoding = mg_get_header(exchange->connection, "Transfer-Encoding");
    return encoding != NULL && strcasecmp(encoding, "identity") != 0;
}

void http_exchange_reply(struct http_exchange *exchange, int status, const char *content_type,
                         const char *body, size_t body_length, const char *const *extra_headers)
{
    struct mg_connection *connection = exchange->connection;
    const bool pending = body_pending(exchange);
    exchange->status = status;
    /* A body we refused to read would be parsed as the next request, and
     * CivetWeb would otherwise try to discard it first (holding this worker
     * for up to request_timeout_ms on a client that never sends it): close. */
    if (pending)
        mg_disable_connection_keep_alive(connection);
    mg_response_header_start(connection, status);
    if (content_type)
        mg_response_header_add(connection, "Content-Type", content_type, -1);
    char length[32];
    snprintf(length, sizeof length, "%zu", body ? body_length : 0);
    if (status != 204)
        mg_response_header_add(connection, "Content-Length", length, -1);
    mg_response_header_add(connection, "Cache-Control", "no-store", -1);
    for (size_t i = 0; extra_headers && extra_headers[i] && extra_headers[i + 1]; i += 2)
        mg_response_header_add(connection, extra_headers[i], extra_headers[i + 1], -1);
    if (exchange->cors_origin) {
        mg_response_header_add(connection, "Access-Control-Allow-Origin", exchange->cors_origin,
                               -1);
        mg_response_header_add(connection, "Vary", "Origin", -1);
    }
    if (pending)
        mg_response_header_add(connection, "Connection", "close", -1);
    mg_response_header_send(connection);
    /* A HEAD answer is headers only: body bytes would be read as the start
     * of the next answer on a kept-alive connection. */
    if (body && body_length > 0 && status != 204 && exchange->method != HTTP_METHOD_HEAD)
        mg_write(connection, body, body_length);
}

void http_exchange_reply_json(struct http_exchange *exchange, int status, const char *json,
                              const char *const *extra_headers)
{
    http_exchange_reply(exchange, status, json ? "application/json; charset=utf-8" : NULL, json,
                        json ? strlen(json) : 0, extra_headers);
}

void http_exchange_reply_cjson(struct http_exchange *exchange, int status, struct cJSON *json)
{
    char *text = json ? cJSON_PrintUnformatted(json) : NULL;
    if (text == NULL)
        http_exchange_reply_error(exchange, 500, "out of memory", NULL);
    else
        http_exchange_reply_json(exchange, status, text, NULL);
    free(text);
    cJSON_Delete(json);
}

void http_exchange_reply_error(struct http_exchange *exchange, int status, const char *message,
                               const char *const *extra_headers)
{
    /* Built by hand so an out-of-memory condition still gets an answer. */
    char escaped[512];
    size_t used = 0;
    for (const char *c = message; c && *c && used + 7 < sizeof escaped; c++) {
        unsigned char ch = (unsigned char)*c;
        if (ch == '"' || ch == '\\') {
            escaped[used++] = '\\';
            escaped[used++] = (char)ch;
        } else if (ch < 0x20) {
            used += (size_t)snprintf(escaped + used, sizeof escaped - used, "\\u%04x", ch);
        } else {
            escaped[used++] = (char)ch;
        }
    }
    escaped[used] = '\0';
    char body[768];
    snprintf(body, sizeof body, "{\"statusCode\":%d,\"error\":\"%s\",\"message\":\"%s\"}", status,
             reason_phrase(status), escaped);
    http_exchange_reply_json(exchange, status, body, extra_headers);
}

bool http_exchange_has_body(const struct http_exchange *exchange)
{
    return exchange->body_read ? exchange->body_length > 0 : body_pending(exchange);
}

bool http_exchange_is_tls(const struct http_exchange *exchange)
{
    return mg_get_request_info(exchange->connection)->is_ssl != 0;
}

const char *http_exchange_request_method(const struct http_exchange *exchange)
{
    const char *method = mg_get_request_info(exchange->connection)->request_method;
    return method ? method : "";
}

const char *http_exchange_header(const struct http_exchange *exchange, const char *name)
{
    return mg_get_header(exchange->connection, name);
}

/* ---- bodies ---- */

enum butler_status http_exchange_read_body(struct http_exchange *exchange)
{
    const size_t cap = (size_t)exchange->runtime->config->http.max_body_bytes;
    const struct mg_request_info *info = mg_get_request_info(exchange->connection);
    enum butler_status status = BUTLER_ERR_TOO_LARGE;
    char *buffer = NULL;
    size_t used = 0;
    if (exchange->body_read)
        return BUTLER_OK;
    if (info->content_length > 0 && (unsigned long long)info->content_length > cap)
        goto out; /* refused on the declared length, before reading a byte */
    size_t capacity =
        info->content_length >= 0 ? (size_t)info->content_length + 1 : BODY_INITIAL_CHUNK;
    if (capacity > cap + 1)
        capacity = cap + 1;
    status = BUTLER_ERR_NOMEM;
    buffer = malloc(capacity);
    if (buffer == NULL)
        goto out;
    for (;;) {
        if (used + 1 >= capacity) {
            /* Grow only up to cap + 1 bytes (the body and its NUL). A body of
             * exactly `cap` bytes is allowed: it is too large only if one
             * more byte comes. */
            if (capacity >= cap + 1) {
                char probe;
                int more = mg_read(exchange->connection, &probe, 1);
                if (more == 0)
                    break;
                status = more < 0 ? BUTLER_ERR_IO : BUTLER_ERR_TOO_LARGE;
                goto out;
            }
            size_t grown = capacity * 2 > cap + 1 ? cap + 1 : capacity * 2;
            char *bigger = realloc(buffer, grown);
            if (bigger == NULL)
                goto out;
            buffer = bigger;
            capacity = grown;
        }
        int got = mg_read(exchange->connection, buffer + used, capacity - 1 - used);
        if (got < 0) {
            status = BUTLER_ERR_IO;
            goto out;
        }
        if (got == 0)
            break;
        used += (size_t)got;
        if (used > cap) {
            status = BUTLER_ERR_TOO_LARGE;
            goto out;
        }
    }
    buffer[used] = '\0';
    exchange->body = buffer;
    exchange->body_length = used;
    exchange->body_read = true;
    buffer = NULL;
    status = BUTLER_OK;
out:
    free(buffer);
    return status;
}

/* ---- the request callback ---- */

static void count_request(const struct http_exchange *exchange)
{
    char labels[160];
    snprintf(labels, sizeof labels, "endpoint=\"%s\",status=\"%d\"", exchange->endpoint,
             exchange->status);
    metrics_count("butler_http_requests_total", labels,
                  "HTTP API requests answered, by endpoint and status");
}

/* The request line and headers as sent, near enough: CivetWeb keeps them
 * parsed, with the URI decoded (so this never counts more than was sent). */
static size_t header_block_bytes(const struct mg_request_info *info)
{
    size_t bytes = 4; /* the request line's two spaces, CRLF, and the final CRLF */
    const char *const parts[] = {info->request_method, info->request_uri, info->query_string,
                                 info->http_version};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        bytes += parts[i] ? strlen(parts[i]) + 1 : 0; /* '?', "HTTP/" are near the +1 */
    for (int i = 0; i < info->num_headers; i++)
        bytes += strlen(info->http_headers[i].name) + strlen(info->http_headers[i].value) + 4;
    return bytes;
}

/* 431 when the request line and headers are over HEADER_BYTES_MAX, or fill
 * every one of CivetWeb's MG_MAX_HEADERS slots (it drops the fields past
 * them without a word, so a request that reaches the limit is refused rather
 * than served without some of its headers). True = answered. */
static bool refuse_large_headers(struct http_exchange *exchange, const struct mg_request_info *info)
{
    if (info->num_headers < MG_MAX_HEADERS && header_block_bytes(info) <= HEADER_BYTES_MAX)
        return false;
    char message[160];
    snprintf(message, sizeof message,
             "the request line and headers must be at most %d bytes in fewer than %d fields",
             HEADER_BYTES_MAX, MG_MAX_HEADERS);
    exchange->endpoint = "headersTooLarge";
    mg_disable_connection_keep_alive(exchange->connection);
    http_exchange_reply_error(exchange, 431, message, NULL);
    return true;
}

/* CivetWeb worker thread: one call per request. On the health listener
 * (health_only) only /health and /metrics are served. */
static int serve(struct http_server *server, struct mg_connection *connection, bool health_only)
{
    const struct mg_request_info *info = mg_get_request_info(connection);
    struct http_exchange exchange = {
        .connection = connection,
        .runtime = server->runtime,
        .method = http_body_method(info->request_method,
                                   mg_get_header(connection, "X-HTTP-Method-Override")),
        .path = info->local_uri ? info->local_uri : "/",
        .query = info->query_string ? info->query_string : "",
        .endpoint = "unknown",
    };
    /* Each step answers itself when it refuses (431, 421/403, 404). */
    const bool refused =
        refuse_large_headers(&exchange, info) || !http_guard_check(server->guard, &exchange);
    const bool health_path =
        strcmp(exchange.path, "/health") == 0 || strcmp(exchange.path, "/metrics") == 0;
    if (!refused && health_only && !health_path)
        http_exchange_reply_error(&exchange, 404,
                                  "this listener (http.health_listen) serves /health and /metrics "
                                  "only",
                                  NULL);
    else if (!refused)
        http_api_handle(&exchange);
    if (exchange.status == 0)
        http_exchange_reply_error(&exchange, 500, "no answer was produced", NULL);
    count_request(&exchange);
    /* The QRS callback path carries its secret: never log it. */
    bool secret_path = strncmp(exchange.path, "/qrs-notification/", 18) == 0;
    LOG_DEBUG(MODULE, "%s %s -> %d", info->request_method,
              secret_path ? "/qrs-notification/<secret>" : exchange.path, exchange.status);
    free(exchange.body);
    return exchange.status;
}

static int handle_request(struct mg_connection *connection, void *user_data)
{
    return serve(user_data, connection, false);
}

static int handle_health_request(struct mg_connection *connection, void *user_data)
{
    return serve(user_data, connection, true);
}

static int http_error(struct mg_connection *connection, int status, const char *message);

/*
 * The listener of /health's own (http.health_listen): a few threads that the
 * API's requests never occupy, so a probe is answered while every API
 * thread is busy or held by idle connections. Its own read timeout is short:
 * probes send their request at once. Start-up only (main thread).
 */
static enum butler_status start_health_listener(struct http_server *server)
{
    const struct butler_config *config = server->runtime->config;
    char request_timeout[16], header_max[16];
    int timeout = config->http.header_timeout_ms < HEALTH_TIMEOUT_MS
                      ? config->http.header_timeout_ms
                      : HEALTH_TIMEOUT_MS;
    snprintf(request_timeout, sizeof request_timeout, "%d", timeout);
    snprintf(header_max, sizeof header_max, "%d", HEADER_READ_BUFFER);
    const char *options[] = {
        "listening_ports",
        config->http.health_listen,
        "num_threads",
        HEALTH_THREADS,
        "tcp_nodelay",
        "1",
        "request_timeout_ms",
        request_timeout,
        "enable_keep_alive",
        "no",
        "max_request_size",
        header_max,
        "enable_auth_domain_check",
        "no",
        "access_control_allow_origin",
        "",
        "access_control_allow_methods",
        "",
        "access_control_allow_headers",
        "",
        NULL,
    };
    struct mg_callbacks callbacks = {0};
    callbacks.log_message = log_message;
    callbacks.http_error = http_error;
    server->health_context = mg_start(&callbacks, server, options);
    if (server->health_context == NULL) {
        LOG_ERROR(MODULE, "cannot start the health listener on %s (port in use or bad address)",
                  config->http.health_listen);
        return BUTLER_ERR_IO;
    }
    mg_set_request_handler(server->health_context, "/", handle_health_request, server);
    LOG_INFO(MODULE, "health listener on %s (/health and /metrics, threads of its own)",
             config->http.health_listen);
    return BUTLER_OK;
}

/* CivetWeb's own errors (a malformed request, a header block past
 * HEADER_READ_BUFFER) in the API's JSON error shape; 0 = answered here. The
 * connection is closed afterwards: where the next request would start is
 * unknown. CivetWeb's "too large" (413) is about the header block here, never
 * a body (bodies are read by Butler), so it is answered 431. */
static int http_error(struct mg_connection *connection, int status, const char *message)
{
    struct http_exchange exchange = {
        .connection = connection,
        .endpoint = "malformed",
        .body_read = true,
    };
    char detail[160];
    mg_disable_connection_keep_alive(connection);
    if (status == 413) {
        status = 431;
        message = "the request line and headers are too large";
    } else if (status == 400 && message && strcmp(message, "Malformed message") == 0) {
        snprintf(detail, sizeof detail,
                 "malformed request line or headers (a control character, or over %d bytes)",
                 HEADER_READ_BUFFER);
        message = detail;
    }
    http_exchange_reply_error(&exchange, status, message && message[0] ? message : "bad request",
                              NULL);
    count_request(&exchange);
    return 0;
}

enum butler_status http_server_start(struct butler_runtime *runtime, struct http_server **out)
{
    const struct butler_config *config = runtime->config;
    enum butler_status status = BUTLER_ERR_INVALID;
    struct http_server *server = NULL;
    bool library = false;
    *out = NULL;
    if (!config->http.enable)
        return BUTLER_OK;
    if (http_api_check_config(config) != BUTLER_OK)
        goto out;
    bool tls = listen_has_tls(config->http.listen);
    /* mg_init_library() reference-counts; every successful call is paired
     * with mg_exit_library() (below on failure, in http_server_stop). */
    unsigned features = mg_init_library(tls ? MG_FEATURES_TLS : 0);
    library = true;
    /* Loading OpenSSL is where the 1.15 + OpenSSL 3 breakage shows. */
    if (tls && (!butler_ssl_compat_present() || (features & MG_FEATURES_TLS) == 0 ||
                !mg_check_feature(MG_FEATURES_TLS))) {
        LOG_ERROR(MODULE, "CivetWeb cannot load OpenSSL: TLS listeners are unavailable");
        status = BUTLER_ERR_INTERNAL;
        goto out;
    }
    status = BUTLER_ERR_NOMEM;
    server = calloc(1, sizeof *server);
    if (server == NULL)
        goto out;
    server->runtime = runtime;
    if (http_guard_create(config, &server->guard) != BUTLER_OK)
        goto out;
    char threads[16], request_timeout[16], keep_alive[16], header_max[16];
    snprintf(threads, sizeof threads, "%d", config->http.threads);
    /* Reading a request line and headers (and each read of a body) may take
     * this long (http.header_timeout_ms): a connection that sends half a
     * request and then nothing holds a worker thread no longer. The answer's
     * own wait is bounded separately (task_start_timeout_ms, long waits). */
    snprintf(request_timeout, sizeof request_timeout, "%d", config->http.header_timeout_ms);
    snprintf(keep_alive, sizeof keep_alive, "%d", KEEP_ALIVE_MS);
    snprintf(header_max, sizeof header_max, "%d", HEADER_READ_BUFFER);
    const char *options[] = {
        "listening_ports",
        config->http.listen,
        "num_threads",
        threads,
        "tcp_nodelay",
        "1", /* else keep-alive answers stall on Nagle + delayed ACK */
        "request_timeout_ms",
        request_timeout,
        "enable_keep_alive",
        "yes",
        "keep_alive_timeout_ms",
        keep_alive,
        "max_request_size",
        header_max,
        "enable_auth_domain_check",
        "no",
        /* Empty: CivetWeb neither answers CORS preflights itself (it would
         * allow any origin, method and header) nor adds
         * Access-Control-Allow-Origin: * to answers. http_guard.c decides. */
        "access_control_allow_origin",
        "",
        "access_control_allow_methods",
        "",
        "access_control_allow_headers",
        "",
        NULL,
    };
    struct mg_callbacks callbacks = {0};
    callbacks.log_message = log_message;
    callbacks.http_error = http_error;
    if (tls)
        callbacks.init_ssl = init_ssl;
    status = BUTLER_ERR_IO;
    server->context = mg_start(&callbacks, server, options);
    if (server->context == NULL) {
        LOG_ERROR(MODULE,
                  "cannot start the HTTP server on %s (port in use, bad address or TLS "
                  "set-up failed)",
                  config->http.listen);
        goto out;
    }
    mg_set_request_handler(server->context, "/", handle_request, server);
    if (config->http.health_listen[0] && start_health_listener(server) != BUTLER_OK) {
        mg_stop(server->context);
        goto out;
    }
    warn_if_exposed(config);
    if (config->http.tokens.count > 0 && config->health.metrics &&
        config->health.metrics_auth == CONFIG_METRICS_AUTH_OPEN)
        LOG_INFO(MODULE, "/metrics is readable without a token (health.metrics_auth: open)");
    LOG_INFO(MODULE, "HTTP API listening on %s (%d threads%s%s)", config->http.listen,
             config->http.threads, config->http.tokens.count ? ", bearer tokens" : "",
             config->http.tls.ca_file[0] ? ", client certificates required" : "");
    *out = server;
    server = NULL;
    status = BUTLER_OK;
out:
    if (status != BUTLER_OK && library)
        mg_exit_library();
    if (server)
        http_guard_free(server->guard);
    free(server);
    return status;
}

void http_server_stop(struct http_server *server)
{
    if (server == NULL)
        return;
    if (server->health_context)
        mg_stop(server->health_context);
    mg_stop(server->context);
    mg_exit_library(); /* pairs with mg_init_library() in http_server_start */
    http_guard_free(server->guard);
    free(server);
    LOG_INFO(MODULE, "HTTP API stopped");
}
