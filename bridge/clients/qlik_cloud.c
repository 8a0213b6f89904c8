/*
 * A Qlik Cloud tenant's REST API (qlik_cloud.h).
 */
#include "bridge/clients/qlik_cloud.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge/clients/http_client.h"
#include "bridge/core/clock.h"
#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"

#define MODULE "qlik_cloud"

struct qlik_cloud_client {
    const struct config_cloud_tenant *tenant;
    pthread_mutex_t lock;
    struct http_client *http;   /* under lock */
    char *token;                /* OAuth access token, under lock; NULL = none */
    uint64_t token_renew_at_ms; /* monotonic */
    uint64_t blocked_until_ms;  /* monotonic: 429's Retry-After, for every call */
    unsigned long token_fetches;
};

enum butler_status qlik_cloud_client_create(const struct config_cloud_tenant *tenant,
                                            struct qlik_cloud_client **out)
{
    *out = NULL;
    struct qlik_cloud_client *client = calloc(1, sizeof *client);
    if (client == NULL)
        return BUTLER_ERR_NOMEM;
    client->tenant = tenant;
    if (http_client_create(&client->http) != BUTLER_OK) {
        free(client);
        return BUTLER_ERR_NOMEM;
    }
    pthread_mutex_init(&client->lock, NULL);
    *out = client;
    return BUTLER_OK;
}

static void forget_token(struct qlik_cloud_client *client)
{
    if (client->token) {
        memset(client->token, 0, strlen(client->token));
        free(client->token);
        client->token = NULL;
    }
}

void qlik_cloud_client_destroy(struct qlik_cloud_client *client)
{
    if (client == NULL)
        return;
    forget_token(client);
    http_client_destroy(client->http);
    pthread_mutex_destroy(&client->lock);
    free(client);
}

unsigned long qlik_cloud_token_fetches(const struct qlik_cloud_client *client)
{
    return client->token_fetches;
}

bool qlik_cloud_escape(const char *value, char *out, size_t out_size)
{
    return http_client_escape(value, out, out_size);
}

static void count_call(const char *outcome)
{
    char labels[64];
    snprintf(labels, sizeof labels, "outcome=\"%s\"", outcome);
    metrics_count("butler_qlik_cloud_calls_total", labels,
                  "Qlik Cloud REST calls by outcome (ok, rate_limited, failed, token)");
}

static void sleep_ms(uint64_t ms)
{
    struct timespec pause = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&pause, &pause) != 0) {
    }
}

/* Wait out a Retry-After of the tier (lock held: every call of the tier
 * waits with this one). False when the wait is too long to sit out. */
static bool wait_for_tier(struct qlik_cloud_client *client, char *error, size_t error_size)
{
    uint64_t now = clock_monotonic_ms();
    if (client->blocked_until_ms <= now)
        return true;
    uint64_t wait = client->blocked_until_ms - now;
    if (wait > (uint64_t)QLIK_CLOUD_RETRY_AFTER_MAX_S * 1000) {
        snprintf(error, error_size, "rate limited by the tenant for %llu s more",
                 (unsigned long long)(wait / 1000));
        return false;
    }
    sleep_ms(wait);
    return true;
}

static void base_request(const struct qlik_cloud_client *client, struct http_request *request)
{
    memset(request, 0, sizeof *request);
    request->timeout_ms = QLIK_CLOUD_TIMEOUT_MS;
    request->connect_timeout_ms = QLIK_CLOUD_CONNECT_TIMEOUT_MS;
    request->verify_peer = true;
    request->ca_file = client->tenant->ca_file[0] ? client->tenant->ca_file : NULL;
}

/* POST /oauth/token (lock held). The token is kept until QLIK_CLOUD_TOKEN_MARGIN_S
 * (at most a tenth of its life) before expires_in. */
static enum butler_status fetch_token(struct qlik_cloud_client *client, char *error,
                                      size_t error_size)
{
    const struct config_cloud_tenant *tenant = client->tenant;
    enum butler_status status = BUTLER_ERR_REMOTE;
    char url[1024];
    char *body = NULL;
    cJSON *answer = NULL;
    struct http_response response = {0};
    cJSON *request_json = cJSON_CreateObject();
    if (request_json == NULL ||
        !cJSON_AddStringToObject(request_json, "client_id", tenant->client_id) ||
        !cJSON_AddStringToObject(request_json, "client_secret", tenant->client_secret) ||
        !cJSON_AddStringToObject(request_json, "grant_type", "client_credentials") ||
        (body = cJSON_PrintUnformatted(request_json)) == NULL) {
        status = BUTLER_ERR_NOMEM;
        snprintf(error, error_size, "out of memory");
        goto out;
    }
    snprintf(url, sizeof url, "%s/oauth/token", tenant->url);
    static const char *const headers[] = {"Content-Type: application/json",
                                          "Accept: application/json", NULL};
    struct http_request request;
    base_request(client, &request);
    request.method = "POST";
    request.url = url;
    request.headers = headers;
    request.body = body;
    request.body_length = strlen(body);
    request.max_response_bytes = 64 * 1024;
    client->token_fetches++;
    count_call("token");
    status = http_client_perform(client->http, &request, &response);
    if (status != BUTLER_OK) {
        snprintf(error, error_size, "token request: HTTP %ld%s%s", response.status,
                 response.error[0] ? " " : "", response.error);
        if (response.status == 429)
            client->blocked_until_ms =
                clock_monotonic_ms() +
                1000ULL * (uint64_t)(response.retry_after_s > 0 ? response.retry_after_s : 1);
        goto out;
    }
    answer = json_parse_exact(response.body, response.body_length, NULL);
    const char *token = json_string_member(answer, "access_token");
    const cJSON *expires = cJSON_GetObjectItemCaseSensitive(answer, "expires_in");
    if (token == NULL || token[0] == '\0' || !cJSON_IsNumber(expires) || expires->valuedouble < 1) {
        status = BUTLER_ERR_REMOTE;
        snprintf(error, error_size, "token answer without access_token and expires_in");
        goto out;
    }
    forget_token(client);
    client->token = strdup(token);
    if (client->token == NULL) {
        status = BUTLER_ERR_NOMEM;
        snprintf(error, error_size, "out of memory");
        goto out;
    }
    double life_s = expires->valuedouble > 1e7 ? 1e7 : expires->valuedouble;
    double margin_s =
        life_s / 10 < QLIK_CLOUD_TOKEN_MARGIN_S ? life_s / 10 : QLIK_CLOUD_TOKEN_MARGIN_S;
    client->token_renew_at_ms = clock_monotonic_ms() + (uint64_t)((life_s - margin_s) * 1000.0);
    status = BUTLER_OK;
out:
    if (body) {
        memset(body, 0, strlen(body)); /* it holds the client secret */
        cJSON_free(body);
    }
    cJSON_Delete(request_json);
    cJSON_Delete(answer);
    http_response_clear(&response);
    return status;
}

/* The Authorization header for the next call (lock held). */
static enum butler_status authorization(struct qlik_cloud_client *client, char *out,
                                        size_t out_size, char *error, size_t error_size)
{
    const struct config_cloud_tenant *tenant = client->tenant;
    if (tenant->api_key[0]) {
        snprintf(out, out_size, "Authorization: Bearer %s", tenant->api_key);
        return BUTLER_OK;
    }
    if (tenant->client_id[0] == '\0') {
        snprintf(error, error_size, "no api_key or oauth client configured");
        return BUTLER_ERR_INVALID;
    }
    if (client->token == NULL || clock_monotonic_ms() >= client->token_renew_at_ms) {
        enum butler_status status = fetch_token(client, error, error_size);
        if (status != BUTLER_OK)
            return status;
    }
    if ((size_t)snprintf(out, out_size, "Authorization: Bearer %s", client->token) >= out_size) {
        snprintf(error, error_size, "access token too long");
        return BUTLER_ERR_INVALID;
    }
    return BUTLER_OK;
}

enum butler_status qlik_cloud_get(struct qlik_cloud_client *client, const char *path,
                                  size_t max_bytes, bool keep_tail, char **body, size_t *length,
                                  bool *head_cut, char *error, size_t error_size)
{
    *body = NULL;
    *length = 0;
    if (head_cut)
        *head_cut = false;
    error[0] = '\0';
    char url[2048], auth[4096];
    if ((size_t)snprintf(url, sizeof url, "%s%s", client->tenant->url, path) >= sizeof url) {
        snprintf(error, error_size, "URL too long");
        return BUTLER_ERR_INVALID;
    }
    enum butler_status status = BUTLER_ERR_RETRYABLE;
    bool renewed = false;
    pthread_mutex_lock(&client->lock);
    for (int attempt = 1; attempt <= QLIK_CLOUD_ATTEMPTS; attempt++) {
        if (!wait_for_tier(client, error, error_size)) {
            status = BUTLER_ERR_RETRYABLE;
            break;
        }
        status = authorization(client, auth, sizeof auth, error, error_size);
        if (status == BUTLER_ERR_RETRYABLE)
            continue;
        if (status != BUTLER_OK)
            break;
        const char *headers[] = {auth, "Accept: application/json, text/plain", NULL};
        struct http_request request;
        base_request(client, &request);
        request.method = "GET";
        request.url = url;
        request.headers = headers;
        request.max_response_bytes = max_bytes;
        request.keep_tail = keep_tail;
        struct http_response response = {0};
        status = http_client_perform(client->http, &request, &response);
        memset(auth, 0, sizeof auth);
        if (status == BUTLER_OK) {
            *body = response.body;
            *length = response.body_length;
            if (head_cut)
                *head_cut = response.head_cut;
            response.body = NULL;
            http_response_clear(&response);
            count_call("ok");
            break;
        }
        snprintf(error, error_size, "GET %s: HTTP %ld%s%s", path, response.status,
                 response.error[0] ? " " : "", response.error);
        long code = response.status;
        long retry_after = response.retry_after_s;
        http_response_clear(&response);
        if (code == 429) {
            count_call("rate_limited");
            client->blocked_until_ms =
                clock_monotonic_ms() + 1000ULL * (uint64_t)(retry_after > 0 ? retry_after : 1);
            LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                            "tenant %s answered 429: every call waits %ld s (Retry-After)",
                            client->tenant->name, retry_after > 0 ? retry_after : 1);
            status = BUTLER_ERR_RETRYABLE;
            continue;
        }
        if (code == 401 && client->tenant->api_key[0] == '\0' && !renewed) {
            /* The token may have been revoked or the clock disagreed: once more with a new one. */
            forget_token(client);
            renewed = true;
            continue;
        }
        count_call("failed");
        if (status != BUTLER_ERR_RETRYABLE)
            break;
        sleep_ms(200ULL * (uint64_t)attempt);
    }
    pthread_mutex_unlock(&client->lock);
    return status;
}
