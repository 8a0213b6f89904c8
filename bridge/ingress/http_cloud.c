/*
 * POST /qlik-cloud/webhook (http_cloud.h). Order of checks: method, body
 * (413 over http.max_body_bytes, 400 unreadable or truncated), signature
 * over the raw bytes (401; nothing of the body is parsed before it), then
 * the envelope (400), the tenant id against the tenant whose secret signed
 * it (403), the event type (other types: 204, nothing published). Every
 * outcome is counted in butler_cloud_webhooks_total{result}.
 */
#include "bridge/ingress/http_cloud.h"

#include <stdio.h>
#include <string.h>

#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/ingress/http_command.h"
#include "bridge/model/cloud_event.h"

#define MODULE "http"

static void count(const char *result)
{
    char labels[64];
    snprintf(labels, sizeof labels, "result=\"%s\"", result);
    metrics_count("butler_cloud_webhooks_total", labels,
                  "Qlik Cloud webhook deliveries by outcome (accepted, ignored_type, unsigned, "
                  "bad_signature, not_json, wrong_shape, unknown_tenant, too_large, unreadable, "
                  "publish_failed)");
}

/* The tenant that signed the body and whose id the event carries: two
 * tenants may share a secret, so the id decides among those that match. */
static const struct config_cloud_tenant *tenant_of(const struct butler_config *config,
                                                   const struct config_cloud_tenant *signer,
                                                   const struct http_exchange *exchange,
                                                   const char *signature, const char *tenant_id)
{
    if (strcmp(signer->tenant_id, tenant_id) == 0)
        return signer;
    const struct config_cloud_tenant *named = cloud_tenant_by_id(config, tenant_id);
    if (named && cloud_signature_matches(named->webhook_secret, exchange->body,
                                         exchange->body_length, signature))
        return named;
    return NULL;
}

static void handle_webhook(struct http_exchange *exchange)
{
    const struct butler_config *config = exchange->runtime->config;
    exchange->endpoint = "qlikCloudWebhook";
    if (exchange->method != HTTP_METHOD_POST) {
        static const char *const allow[] = {"Allow", "POST", NULL};
        http_exchange_reply_error(exchange, 405, "method not allowed on this endpoint", allow);
        return;
    }
    if (config->qlik_cloud.tenants.count == 0) {
        http_exchange_reply_error(exchange, 404, "no such endpoint (or it is disabled)", NULL);
        return;
    }
    enum butler_status status = http_exchange_read_body(exchange);
    if (status == BUTLER_ERR_TOO_LARGE) {
        count("too_large");
        http_exchange_reply_error(exchange, 413, "the body is larger than http.max_body_bytes",
                                  NULL);
        return;
    }
    if (status != BUTLER_OK) {
        count("unreadable");
        http_exchange_reply_error(exchange, 400, "the body could not be read", NULL);
        return;
    }
    const char *signature = http_exchange_header(exchange, "Qlik-Signature");
    const struct config_cloud_tenant *signer =
        cloud_tenant_for_signature(config, exchange->body, exchange->body_length, signature);
    if (signer == NULL) {
        count(signature ? "bad_signature" : "unsigned");
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "refused a Qlik Cloud webhook: %s",
                        signature ? "Qlik-Signature matches no tenant's webhook_secret"
                                  : "no Qlik-Signature header");
        http_exchange_reply_error(exchange, 401, "missing or wrong Qlik-Signature", NULL);
        return;
    }
    struct cloud_event event;
    const char *reason = NULL;
    enum cloud_parse_result parsed =
        cloud_event_parse(exchange->body, exchange->body_length, &event, &reason);
    if (parsed != CLOUD_PARSE_OK) {
        count(parsed == CLOUD_PARSE_NOT_JSON ? "not_json" : "wrong_shape");
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "refused a Qlik Cloud webhook of tenant %s: %s",
                        signer->name, reason);
        http_exchange_reply_error(exchange, 400, reason, NULL);
        return;
    }
    const struct config_cloud_tenant *tenant =
        tenant_of(config, signer, exchange, signature, event.tenant_id);
    if (tenant == NULL) {
        count("unknown_tenant");
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                        "refused a Qlik Cloud webhook signed for tenant %s naming another tenant",
                        signer->name);
        http_exchange_reply_error(exchange, 403, "the event's tenant id is not this tenant's",
                                  NULL);
        return;
    }
    if (event.kind == CLOUD_EVENT_OTHER) {
        count("ignored_type");
        http_exchange_reply_json(exchange, 204, NULL, NULL);
        return;
    }
    char topic[512];
    snprintf(topic, sizeof topic, "%s/cloud/webhook/%s", config->mqtt.topic_root, tenant->name);
    if (!http_command_publish(exchange, topic, exchange->body, exchange->body_length, 1, false,
                              config->http.task_start_timeout_ms)) {
        count("publish_failed");
        return;
    }
    count("accepted");
    http_exchange_reply_json(exchange, 204, NULL, NULL);
}

bool http_cloud_handle(struct http_exchange *exchange)
{
    if (strcmp(exchange->path, HTTP_CLOUD_WEBHOOK_PATH) != 0)
        return false;
    handle_webhook(exchange);
    return true;
}
