/*
 * Outbound HTTP(S) on libcurl: one struct http_client per thread, so its
 * connections (and TLS sessions) are reused call after call. Every request has
 * a connect and a total timeout and a cap on the response body.
 *
 * Status mapping shared by QRS, Slack, Teams and webhooks:
 *   2xx -> BUTLER_OK; 429, 5xx, timeouts, connection errors -> BUTLER_ERR_RETRYABLE;
 *   other 4xx -> BUTLER_ERR_REMOTE (not retried); body over the cap -> BUTLER_ERR_TOO_LARGE.
 * Not thread-safe: a client belongs to one thread.
 */
#ifndef BUTLER_HTTP_CLIENT_H
#define BUTLER_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/clients/retry.h"
#include "bridge/core/status.h"

struct http_client;

struct http_request {
    const char *method; /* "GET", "POST", "PUT", "DELETE" */
    const char *url;
    const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
    const char *body;           /* may be NULL */
    size_t body_length;
    long timeout_ms;
    long connect_timeout_ms;
    const char *client_cert_file; /* PEM; NULL = none */
    const char *client_key_file;
    const char *ca_file; /* NULL = system store */
    bool verify_peer;
    size_t max_response_bytes; /* 0 = 4 MiB */
    /* Keep the last max_response_bytes of a longer body instead of failing
     * (a log's tail): memory stays bounded whatever the body's size. */
    bool keep_tail;
};

struct http_response {
    long status; /* 0 when no HTTP answer arrived */
    char *body;  /* NUL-terminated, owned by the response; free with http_response_clear */
    size_t body_length;
    long retry_after_s; /* from Retry-After (seconds or HTTP-date form, in seconds from now), -1 if
                           absent */
    bool head_cut;      /* keep_tail: the start of the body was dropped */
    char error[256];    /* transport error text, or "" */
};

enum butler_status http_client_create(struct http_client **out);
void http_client_destroy(struct http_client *client);

/* One attempt. Fills *response (caller clears it) even on error statuses. */
enum butler_status http_client_perform(struct http_client *client,
                                       const struct http_request *request,
                                       struct http_response *response);

/*
 * Up to policy->max_attempts attempts of a retryable failure, sleeping a
 * capped, jittered exponential backoff between them (honouring Retry-After,
 * capped at max_backoff_ms... or 60 s when larger). `*attempts_out` (may be
 * NULL) receives the number of attempts made. `should_stop` (may be NULL) is
 * polled between attempts to abort at shutdown.
 */
enum butler_status
http_client_perform_with_retry(struct http_client *client, const struct http_request *request,
                               const struct retry_policy *policy, bool (*should_stop)(void),
                               struct http_response *response, int *attempts_out);

void http_response_clear(struct http_response *response);

/* Percent-encode `value` (everything but A-Z a-z 0-9 - . _ ~, as libcurl's
 * curl_easy_escape does) into out, NUL-terminated; false when out of memory or
 * it does not fit out_size. Any thread. */
bool http_client_escape(const char *value, char *out, size_t out_size);

#endif
