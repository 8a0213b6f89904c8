/*
 * InfluxDB writes; see influxdb.h. One http_client per influxdb client keeps
 * the connection (and TLS session) open between writes.
 */
#include "bridge/clients/influxdb.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "bridge/clients/http_client.h"
#include "bridge/core/log.h"

#define MODULE "influxdb"

enum {
    URL_MAX = 2048,
    AUTH_MAX = 1024,
    CONNECT_TIMEOUT_MS = 5000,
    RESPONSE_MAX = 64 * 1024,
};

struct influxdb_client {
    struct influxdb_options options;
    struct http_client *http;
    char write_url[URL_MAX];
    char query_url[URL_MAX];      /* v1: where CREATE DATABASE goes */
    char authorization[AUTH_MAX]; /* "Authorization: ..." or "" (a secret) */
};

/* Append "&name=<encoded value>" (or "?name=" first) to url. */
static bool add_param(char *url, size_t url_size, const char *name, const char *value)
{
    char encoded[URL_MAX];
    if (!http_client_escape(value, encoded, sizeof encoded))
        return false;
    size_t used = strlen(url);
    int n = snprintf(url + used, url_size - used, "%c%s=%s", strchr(url, '?') ? '&' : '?', name,
                     encoded);
    return n > 0 && (size_t)n < url_size - used;
}

/* The base URL without trailing slashes, then `path`. */
static bool base_and_path(char *url, size_t url_size, const char *base, const char *path)
{
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        n--;
    int written = snprintf(url, url_size, "%.*s%s", (int)n, base, path);
    return written > 0 && (size_t)written < url_size;
}

static bool build_urls(struct influxdb_client *client)
{
    const struct influxdb_options *o = &client->options;
    char *url = client->write_url;
    size_t size = sizeof client->write_url;
    switch (o->version) {
    case 2:
        return base_and_path(url, size, o->url, "/api/v2/write") &&
               add_param(url, size, "org", o->org) && add_param(url, size, "bucket", o->bucket) &&
               add_param(url, size, "precision", "ns");
    case 3:
        return base_and_path(url, size, o->url, "/api/v3/write_lp") &&
               add_param(url, size, "db", o->database) &&
               add_param(url, size, "precision", "nanosecond");
    default:
        if (!base_and_path(url, size, o->url, "/write") || !add_param(url, size, "db", o->database))
            return false;
        if (o->retention_policy[0] && !add_param(url, size, "rp", o->retention_policy))
            return false;
        return add_param(url, size, "precision", "ns") &&
               base_and_path(client->query_url, sizeof client->query_url, o->url, "/query");
    }
}

/* "Authorization: Basic base64(user:password)" (v1), Token (v2), Bearer (v3). */
static bool build_authorization(struct influxdb_client *client)
{
    const struct influxdb_options *o = &client->options;
    client->authorization[0] = '\0';
    if (o->version == 1) {
        if (!o->username[0])
            return true;
        char plain[512];
        unsigned char encoded[700];
        int n = snprintf(plain, sizeof plain, "%s:%s", o->username, o->password);
        if (n < 0 || (size_t)n >= sizeof plain)
            return false;
        EVP_EncodeBlock(encoded, (const unsigned char *)plain, n);
        snprintf(client->authorization, sizeof client->authorization, "Authorization: Basic %s",
                 (const char *)encoded);
        OPENSSL_cleanse(plain, sizeof plain);
        return true;
    }
    if (!o->token[0])
        return true;
    int n = snprintf(client->authorization, sizeof client->authorization, "Authorization: %s %s",
                     o->version == 2 ? "Token" : "Bearer", o->token);
    return n > 0 && (size_t)n < sizeof client->authorization;
}

enum butler_status influxdb_client_create(const struct influxdb_options *options,
                                          struct influxdb_client **out)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    struct influxdb_client *client = calloc(1, sizeof *client);
    *out = NULL;
    if (client == NULL)
        goto out;
    client->options = *options;
    if (!build_urls(client) || !build_authorization(client)) {
        status = BUTLER_ERR_TOO_LARGE;
        goto out;
    }
    status = http_client_create(&client->http);
    if (status != BUTLER_OK)
        goto out;
    *out = client;
    client = NULL;
out:
    if (client)
        OPENSSL_cleanse(client->authorization, sizeof client->authorization);
    free(client);
    return status;
}

void influxdb_client_destroy(struct influxdb_client *client)
{
    if (client == NULL)
        return;
    http_client_destroy(client->http);
    OPENSSL_cleanse(client->authorization, sizeof client->authorization);
    free(client);
}

enum butler_status influxdb_gzip(const char *data, size_t length, unsigned char **out,
                                 size_t *out_length)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    z_stream stream = {0};
    *out = NULL;
    *out_length = 0;
    if (length > (size_t)UINT32_MAX)
        return BUTLER_ERR_TOO_LARGE;
    /* 15 + 16: a gzip wrapper, as Content-Encoding: gzip means. Level 1: the
     * point is fewer bytes on the wire, not the last few percent. */
    if (deflateInit2(&stream, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return BUTLER_ERR_NOMEM;
    size_t bound = deflateBound(&stream, (uLong)length);
    unsigned char *buffer = malloc(bound);
    if (buffer == NULL)
        goto out;
    stream.next_in = (Bytef *)(uintptr_t)data;
    stream.avail_in = (uInt)length;
    stream.next_out = buffer;
    stream.avail_out = (uInt)bound;
    if (deflate(&stream, Z_FINISH) != Z_STREAM_END) {
        status = BUTLER_ERR_INTERNAL;
        goto out;
    }
    if (stream.total_out >= length) {
        status = BUTLER_ERR_TOO_LARGE;
        goto out;
    }
    *out = buffer;
    *out_length = stream.total_out;
    buffer = NULL;
    status = BUTLER_OK;
out:
    deflateEnd(&stream);
    free(buffer);
    return status;
}

/* InfluxDB's reason: "error" (v1, v3) or "message" (v2) of a JSON body, else
 * the body's start, else the transport error. */
static void take_reason(const struct http_response *response, struct influxdb_result *result)
{
    result->status = response->status;
    result->retry_after_s = response->retry_after_s;
    if (response->body && response->body_length) {
        cJSON *json = cJSON_ParseWithLength(response->body, response->body_length);
        const cJSON *error = cJSON_GetObjectItemCaseSensitive(json, "error");
        if (!cJSON_IsString(error))
            error = cJSON_GetObjectItemCaseSensitive(json, "message");
        if (cJSON_IsString(error))
            snprintf(result->error, sizeof result->error, "HTTP %ld: %s", response->status,
                     error->valuestring);
        else
            snprintf(result->error, sizeof result->error, "HTTP %ld: %.400s", response->status,
                     response->body);
        cJSON_Delete(json);
        return;
    }
    if (response->error[0])
        snprintf(result->error, sizeof result->error, "%s", response->error);
    else
        snprintf(result->error, sizeof result->error, "HTTP %ld", response->status);
}

static enum butler_status post(struct influxdb_client *client, const char *url, const char *body,
                               size_t length, bool gzipped, const char *content_type,
                               struct influxdb_result *result)
{
    const char *headers[4];
    size_t count = 0;
    headers[count++] = content_type;
    if (gzipped)
        headers[count++] = "Content-Encoding: gzip";
    if (client->authorization[0])
        headers[count++] = client->authorization;
    headers[count] = NULL;
    struct http_request request = {
        .method = "POST",
        .url = url,
        .headers = headers,
        .body = body,
        .body_length = length,
        .timeout_ms = client->options.timeout_ms,
        .connect_timeout_ms = CONNECT_TIMEOUT_MS,
        .verify_peer = true,
        .max_response_bytes = RESPONSE_MAX,
    };
    struct http_response response = {0};
    enum butler_status status = http_client_perform(client->http, &request, &response);
    take_reason(&response, result);
    http_response_clear(&response);
    if (status == BUTLER_ERR_NOMEM || status == BUTLER_ERR_INTERNAL)
        return status;
    long code = result->status;
    if (code >= 200 && code < 300)
        return BUTLER_OK;
    if (code == 0 || code == 429 || code >= 500 || code == 401 || code == 403 || code == 404)
        return BUTLER_ERR_RETRYABLE;
    return BUTLER_ERR_REMOTE;
}

/* v1: CREATE DATABASE (a no-op when it exists). */
static enum butler_status create_database(struct influxdb_client *client)
{
    char statement[600], body[2048];
    snprintf(statement, sizeof statement, "CREATE DATABASE \"%s\"", client->options.database);
    char encoded[sizeof body];
    if (!http_client_escape(statement, encoded, sizeof encoded))
        return BUTLER_ERR_TOO_LARGE;
    snprintf(body, sizeof body, "q=%s", encoded);
    struct influxdb_result result = {0};
    enum butler_status status = post(client, client->query_url, body, strlen(body), false,
                                     "Content-Type: application/x-www-form-urlencoded", &result);
    if (status == BUTLER_OK)
        LOG_INFO(MODULE, "created database %s", client->options.database);
    else
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "cannot create database %s: %s",
                        client->options.database, result.error);
    return status;
}

enum butler_status influxdb_write(struct influxdb_client *client, const char *lines, size_t length,
                                  struct influxdb_result *result)
{
    static const char content_type[] = "Content-Type: text/plain; charset=utf-8";
    unsigned char *compressed = NULL;
    size_t compressed_length = 0;
    *result = (struct influxdb_result){.retry_after_s = -1};
    if (length >= INFLUXDB_GZIP_MIN_BYTES)
        (void)influxdb_gzip(lines, length, &compressed, &compressed_length);
    const char *body = compressed ? (const char *)compressed : lines;
    size_t body_length = compressed ? compressed_length : length;
    enum butler_status status = post(client, client->write_url, body, body_length,
                                     compressed != NULL, content_type, result);
    if (status == BUTLER_ERR_RETRYABLE && result->status == 404 && client->options.version == 1 &&
        strstr(result->error, "database not found") && create_database(client) == BUTLER_OK)
        status = post(client, client->write_url, body, body_length, compressed != NULL,
                      content_type, result);
    free(compressed);
    return status;
}
