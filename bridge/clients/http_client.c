#include "bridge/clients/http_client.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge/clients/destination_limiter.h"
#include "bridge/core/clock.h"
#include "bridge/core/log.h"

#define MODULE "http-out"

enum { DEFAULT_MAX_RESPONSE = 4 * 1024 * 1024 };

struct http_client {
    CURL *easy;
    /* The TLS settings the handle was last set up with: while a request asks
     * for the same ones, only its own options are set (no curl_easy_reset,
     * no re-copying file names), which is most of a call's setup cost. */
    bool configured;
    bool verify_peer;
    char *ca_file, *client_cert_file, *client_key_file;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_global_setup(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

enum butler_status http_client_create(struct http_client **out)
{
    pthread_once(&curl_once, curl_global_setup);
    struct http_client *client = calloc(1, sizeof *client);
    if (client == NULL)
        return BUTLER_ERR_NOMEM;
    client->easy = curl_easy_init();
    if (client->easy == NULL) {
        free(client);
        return BUTLER_ERR_INTERNAL;
    }
    *out = client;
    return BUTLER_OK;
}

static void forget_tls_settings(struct http_client *client)
{
    free(client->ca_file);
    free(client->client_cert_file);
    free(client->client_key_file);
    client->ca_file = client->client_cert_file = client->client_key_file = NULL;
    client->configured = false;
}

void http_client_destroy(struct http_client *client)
{
    if (client == NULL)
        return;
    curl_easy_cleanup(client->easy);
    forget_tls_settings(client);
    free(client);
}

void http_response_clear(struct http_response *response)
{
    free(response->body);
    memset(response, 0, sizeof *response);
    response->retry_after_s = -1;
}

struct body_sink {
    struct http_response *response;
    size_t capacity;
    size_t limit;
    bool overflow;
    bool keep_tail;
};

/* keep_tail: make room for `length` more bytes by dropping the oldest, so
 * the buffer never holds more than 2 * limit (amortised: a shift happens
 * once per `limit` bytes received). */
static void drop_head(struct body_sink *sink, const char **data, size_t *length)
{
    struct http_response *response = sink->response;
    if (*length >= sink->limit) {
        *data += *length - sink->limit;
        *length = sink->limit;
        response->body_length = 0;
        response->head_cut = true;
    } else if (response->body_length + *length > 2 * sink->limit) {
        size_t keep = sink->limit - *length;
        memmove(response->body, response->body + response->body_length - keep, keep);
        response->body_length = keep;
        response->head_cut = true;
    }
}

/* Grows the body buffer geometrically up to the cap; returning a short count
 * makes curl abort the transfer when the cap is passed. */
static size_t write_body(char *data, size_t size, size_t count, void *user)
{
    struct body_sink *sink = user;
    size_t length = size * count, taken = length;
    struct http_response *response = sink->response;
    size_t cap = sink->keep_tail ? 2 * sink->limit : sink->limit;
    if (sink->keep_tail)
        drop_head(sink, (const char **)&data, &length);
    if (response->body_length + length > cap) {
        sink->overflow = true;
        return 0;
    }
    if (response->body_length + length + 1 > sink->capacity) {
        size_t grown = sink->capacity ? sink->capacity * 2 : 1024;
        while (grown < response->body_length + length + 1)
            grown *= 2;
        if (grown > cap + 1)
            grown = cap + 1;
        char *bigger = realloc(response->body, grown);
        if (bigger == NULL)
            return 0;
        response->body = bigger;
        sink->capacity = grown;
    }
    memcpy(response->body + response->body_length, data, length);
    response->body_length += length;
    response->body[response->body_length] = '\0';
    return taken;
}

static size_t read_header(char *data, size_t size, size_t count, void *user)
{
    struct http_response *response = user;
    size_t length = size * count;
    static const char name[] = "retry-after:";
    if (length > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0) {
        char value[64];
        size_t value_length = length - (sizeof name - 1);
        if (value_length >= sizeof value)
            value_length = sizeof value - 1;
        memcpy(value, data + sizeof name - 1, value_length);
        value[value_length] = '\0';
        value[strcspn(value, "\r\n")] = '\0';
        /* Seconds or an HTTP-date (RFC 9110 10.2.3). */
        long seconds = destination_retry_after_s(value, (int64_t)(clock_wall_ms() / 1000u));
        if (seconds >= 0)
            response->retry_after_s = seconds;
    }
    return length;
}

/* NULL and "" both mean "not set" (the file option is then left at curl's default). */
static bool same_setting(const char *stored, const char *asked)
{
    if (asked == NULL || asked[0] == '\0')
        return stored == NULL;
    return stored != NULL && strcmp(stored, asked) == 0;
}

static char *copy_setting(const char *asked, bool *failed)
{
    if (asked == NULL || asked[0] == '\0')
        return NULL;
    char *copy = strdup(asked);
    if (copy == NULL)
        *failed = true;
    return copy;
}

/* Reset the handle (its connection cache stays) and set what every request of
 * this client shares; remembered so the next request with the same TLS
 * settings skips this. */
static void configure_handle(struct http_client *client, const struct http_request *request)
{
    CURL *easy = client->easy;
    forget_tls_settings(client);
    curl_easy_reset(easy);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_body);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, read_header);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, request->verify_peer ? 1L : 0L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, request->verify_peer ? 2L : 0L);
    if (request->ca_file && request->ca_file[0])
        curl_easy_setopt(easy, CURLOPT_CAINFO, request->ca_file);
    if (request->client_cert_file && request->client_cert_file[0])
        curl_easy_setopt(easy, CURLOPT_SSLCERT, request->client_cert_file);
    if (request->client_key_file && request->client_key_file[0])
        curl_easy_setopt(easy, CURLOPT_SSLKEY, request->client_key_file);
    bool failed = false;
    client->verify_peer = request->verify_peer;
    client->ca_file = copy_setting(request->ca_file, &failed);
    client->client_cert_file = copy_setting(request->client_cert_file, &failed);
    client->client_key_file = copy_setting(request->client_key_file, &failed);
    if (failed)
        forget_tls_settings(client); /* configured again next time */
    else
        client->configured = true;
}

enum butler_status http_client_perform(struct http_client *client,
                                       const struct http_request *request,
                                       struct http_response *response)
{
    enum butler_status status = BUTLER_ERR_INTERNAL;
    CURL *easy = client->easy;
    struct curl_slist *headers = NULL;
    http_response_clear(response);
    struct body_sink sink = {
        .response = response,
        .limit = request->max_response_bytes ? request->max_response_bytes : DEFAULT_MAX_RESPONSE,
        .keep_tail = request->keep_tail,
    };
    char error_buffer[CURL_ERROR_SIZE] = "";

    if (!client->configured || client->verify_peer != request->verify_peer ||
        !same_setting(client->ca_file, request->ca_file) ||
        !same_setting(client->client_cert_file, request->client_cert_file) ||
        !same_setting(client->client_key_file, request->client_key_file))
        configure_handle(client, request);
    /* Every option a request sets is set on every call, so nothing of the
     * previous request's lingers. */
    curl_easy_setopt(easy, CURLOPT_URL, request->url);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, request->timeout_ms);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, request->connect_timeout_ms);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error_buffer);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, response);
    for (const char *const *line = request->headers; line && *line; line++) {
        struct curl_slist *grown = curl_slist_append(headers, *line);
        if (grown == NULL) {
            status = BUTLER_ERR_NOMEM;
            goto out;
        }
        headers = grown;
    }
    /* An empty Expect stops curl waiting a second for "100 Continue". */
    struct curl_slist *grown = curl_slist_append(headers, "Expect:");
    if (grown == NULL) {
        status = BUTLER_ERR_NOMEM;
        goto out;
    }
    headers = grown;
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    /* HTTPGET first: it ends an earlier request's POST mode (its body). */
    curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    if (strcmp(request->method, "GET") == 0) {
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, NULL);
    } else {
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, request->method);
        if (request->body || strcmp(request->method, "POST") == 0 ||
            strcmp(request->method, "PUT") == 0) {
            curl_easy_setopt(easy, CURLOPT_POSTFIELDS, request->body ? request->body : "");
            curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t)(request->body ? request->body_length : 0));
        }
    }

    CURLcode rc = curl_easy_perform(easy);
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &response->status);
    if (rc != CURLE_OK) {
        snprintf(response->error, sizeof response->error, "%s",
                 error_buffer[0] ? error_buffer : curl_easy_strerror(rc));
        if (sink.overflow) {
            status = BUTLER_ERR_TOO_LARGE;
        } else if (rc == CURLE_OUT_OF_MEMORY) {
            status = BUTLER_ERR_NOMEM;
        } else if (rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_SSL_CACERT_BADFILE ||
                   rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL ||
                   rc == CURLE_PEER_FAILED_VERIFICATION) {
            status = BUTLER_ERR_REMOTE; /* configuration problems: retrying will not help */
        } else {
            status = BUTLER_ERR_RETRYABLE;
        }
        goto out;
    }
    if (sink.keep_tail && response->body_length > sink.limit) {
        /* Only the last `limit` bytes are the caller's. */
        size_t drop = response->body_length - sink.limit;
        memmove(response->body, response->body + drop, sink.limit + 1);
        response->body_length = sink.limit;
        response->head_cut = true;
    }
    if (response->body == NULL) {
        response->body = calloc(1, 1);
        if (response->body == NULL) {
            status = BUTLER_ERR_NOMEM;
            goto out;
        }
    }
    if (response->status >= 200 && response->status < 300)
        status = BUTLER_OK;
    else if (response->status == 429 || response->status >= 500)
        status = BUTLER_ERR_RETRYABLE;
    else
        status = BUTLER_ERR_REMOTE;
    if (status != BUTLER_OK)
        snprintf(response->error, sizeof response->error, "HTTP %ld", response->status);
out:
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(headers);
    return status;
}

struct retry_context {
    struct http_client *client;
    const struct http_request *request;
    struct http_response *response;
    bool (*should_stop)(void);
};

static enum butler_status attempt_once(void *context, int attempt, long *retry_after_s)
{
    struct retry_context *retry = context;
    /* Another thread may have been told to wait by this destination. */
    destination_wait(retry->request->url, retry->should_stop);
    enum butler_status status = http_client_perform(retry->client, retry->request, retry->response);
    *retry_after_s = retry->response->retry_after_s;
    if (status == BUTLER_ERR_RETRYABLE && *retry_after_s > 0) {
        char redacted[256];
        log_redact_url(retry->request->url, redacted, sizeof redacted);
        destination_hold(retry->request->url, *retry_after_s); /* for every thread */
        LOG_INFO(MODULE, "%s asked to wait %ld s (Retry-After): holding it for every worker",
                 redacted, *retry_after_s);
    }
    if (status == BUTLER_ERR_RETRYABLE)
        LOG_DEBUG(MODULE, "%s attempt %d failed: %s", retry->request->method, attempt,
                  retry->response->error);
    return status;
}

enum butler_status http_client_perform_with_retry(struct http_client *client,
                                                  const struct http_request *request,
                                                  const struct retry_policy *policy,
                                                  bool (*should_stop)(void),
                                                  struct http_response *response, int *attempts_out)
{
    struct retry_context context = {client, request, response, should_stop};
    return retry_run(policy, should_stop, attempt_once, &context, attempts_out);
}

bool http_client_escape(const char *value, char *out, size_t out_size)
{
    bool fits = false;
    char *escaped = curl_easy_escape(NULL, value, 0);
    if (escaped == NULL)
        goto out;
    size_t length = strlen(escaped);
    if (length >= out_size)
        goto out;
    memcpy(out, escaped, length + 1);
    fits = true;
out:
    curl_free(escaped);
    return fits;
}
