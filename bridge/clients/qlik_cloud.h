/*
 * A Qlik Cloud tenant's REST API (sense-interfaces.md 7.3): GET calls with
 * `Authorization: Bearer <token>`, the token being the tenant's API key or an
 * OAuth client-credentials token fetched from <url>/oauth/token, cached and
 * fetched again before it expires (or after a 401). The calls Butler makes
 * are rate-limit tier 1: a 429 blocks every call of the client until its
 * Retry-After has passed, then the call is tried again.
 *
 * One client per tenant, shared by every worker: calls are serialised by the
 * client's mutex, which also keeps its one libcurl connection reused. Each
 * call is bounded by QLIK_CLOUD_TIMEOUT_MS; a Retry-After beyond
 * QLIK_CLOUD_RETRY_AFTER_MAX_S fails the call instead of blocking.
 */
#ifndef BUTLER_QLIK_CLOUD_H
#define BUTLER_QLIK_CLOUD_H

#include <stdbool.h>
#include <stddef.h>

#include "bridge/core/status.h"
#include "config/config.h"

enum {
    QLIK_CLOUD_TIMEOUT_MS = 10000,
    QLIK_CLOUD_CONNECT_TIMEOUT_MS = 5000,
    QLIK_CLOUD_ATTEMPTS = 4,           /* per call, 429s and 5xx included */
    QLIK_CLOUD_RETRY_AFTER_MAX_S = 60, /* longer waits fail the call */
    QLIK_CLOUD_BODY_MAX = 1024 * 1024, /* JSON answers */
    QLIK_CLOUD_TOKEN_MARGIN_S = 60,    /* renew this long before expires_in */
};

struct qlik_cloud_client;

/* `tenant` is borrowed and must outlive the client. *out is freed with
 * qlik_cloud_client_destroy. BUTLER_ERR_NOMEM only. */
enum butler_status qlik_cloud_client_create(const struct config_cloud_tenant *tenant,
                                            struct qlik_cloud_client **out);
void qlik_cloud_client_destroy(struct qlik_cloud_client *client);

/*
 * GET <tenant url><path> (path begins with "/api/"; its variable parts must
 * be escaped with qlik_cloud_escape). On BUTLER_OK *body (NUL-terminated,
 * *length bytes) is the caller's (free()). With keep_tail, a body longer
 * than max_bytes keeps its last max_bytes and *head_cut says so. On failure
 * error[] says why (never a token). Worker threads; blocks.
 */
enum butler_status qlik_cloud_get(struct qlik_cloud_client *client, const char *path,
                                  size_t max_bytes, bool keep_tail, char **body, size_t *length,
                                  bool *head_cut, char *error, size_t error_size);

/* Percent-encode `value` as one path segment or query value into out; false
 * when it does not fit. */
bool qlik_cloud_escape(const char *value, char *out, size_t out_size);

/* Token fetches since creation (tests, /metrics). */
unsigned long qlik_cloud_token_fetches(const struct qlik_cloud_client *client);

#endif
