/*
 * Qlik Cloud reload events: signature check and envelope parser
 * (cloud_event.h). Field names from sense-interfaces.md 7.3.
 */
#include "bridge/model/cloud_event.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "bridge/core/json.h"

static const char APP_RELOAD_FINISHED[] = "com.qlik.v1.app.reload.finished";
static const char RELOAD_FINISHED[] = "com.qlik.v1.reload.finished";

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool cloud_signature_matches(const char *secret, const void *body, size_t length,
                             const char *header)
{
    if (secret == NULL || secret[0] == '\0' || header == NULL)
        return false;
    unsigned char given[32];
    /* Only the 64 hex digits of a SHA-256 digest can match; their length is
     * not a secret, the digits are compared in constant time below. */
    if (strlen(header) != 2 * sizeof given)
        return false;
    for (size_t i = 0; i < sizeof given; i++) {
        int high = hex_value(header[2 * i]), low = hex_value(header[2 * i + 1]);
        if (high < 0 || low < 0)
            return false;
        given[i] = (unsigned char)(high << 4 | low);
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_length = 0;
    static const unsigned char empty[1];
    if (HMAC(EVP_sha256(), secret, (int)strlen(secret), length ? body : empty, length, digest,
             &digest_length) == NULL ||
        digest_length != sizeof given)
        return false;
    return CRYPTO_memcmp(given, digest, sizeof given) == 0;
}

const struct config_cloud_tenant *cloud_tenant_for_signature(const struct butler_config *config,
                                                             const void *body, size_t length,
                                                             const char *header)
{
    for (size_t i = 0; i < config->qlik_cloud.tenants.count; i++) {
        const struct config_cloud_tenant *tenant = &config->qlik_cloud.tenants.items[i];
        if (cloud_signature_matches(tenant->webhook_secret, body, length, header))
            return tenant;
    }
    return NULL;
}

const struct config_cloud_tenant *cloud_tenant_by_id(const struct butler_config *config,
                                                     const char *tenant_id)
{
    for (size_t i = 0; tenant_id && i < config->qlik_cloud.tenants.count; i++)
        if (strcmp(config->qlik_cloud.tenants.items[i].tenant_id, tenant_id) == 0)
            return &config->qlik_cloud.tenants.items[i];
    return NULL;
}

const struct config_cloud_tenant *cloud_tenant_by_name(const struct butler_config *config,
                                                       const char *name)
{
    for (size_t i = 0; name && i < config->qlik_cloud.tenants.count; i++)
        if (strcmp(config->qlik_cloud.tenants.items[i].name, name) == 0)
            return &config->qlik_cloud.tenants.items[i];
    return NULL;
}

/* Copy the string member `name` of `object` (NULL = absent) into out.
 * False when it is present but not a string, too long or holds a control
 * character (ids become topic levels and log words). */
static bool take(const cJSON *object, const char *name, char *out, size_t size)
{
    out[0] = '\0';
    const cJSON *item = object ? cJSON_GetObjectItemCaseSensitive(object, name) : NULL;
    if (item == NULL || cJSON_IsNull(item))
        return true;
    if (!cJSON_IsString(item))
        return false;
    size_t length = strlen(item->valuestring);
    if (length >= size)
        return false;
    for (size_t i = 0; i < length; i++)
        if ((unsigned char)item->valuestring[i] < 0x20)
            return false;
    memcpy(out, item->valuestring, length + 1);
    return true;
}

/* The first non-empty of two members (CloudEvents name, legacy name). */
static bool take_either(const cJSON *first, const char *first_name, const cJSON *second,
                        const char *second_name, char *out, size_t size)
{
    if (!take(first, first_name, out, size))
        return false;
    if (out[0] == '\0' && !take(second, second_name, out, size))
        return false;
    return true;
}

static bool topic_level_ok(const char *value)
{
    return value[0] != '\0' && strpbrk(value, "/+#") == NULL;
}

/* errors[] of app.reload.finished: item shape undocumented, so strings are
 * taken as they are and objects by their message (else their JSON text). */
static void take_errors(const cJSON *errors, struct cloud_event *out)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, errors)
    {
        if (out->error_count >= CLOUD_ERRORS_MAX)
            break;
        char *text = out->errors[out->error_count];
        const char *message = NULL;
        if (cJSON_IsString(item))
            message = item->valuestring;
        else if (cJSON_IsObject(item))
            message = json_string_member(item, "message");
        if (message) {
            snprintf(text, CLOUD_ERROR_TEXT, "%s", message);
        } else {
            char *printed = cJSON_PrintUnformatted(item);
            if (printed == NULL)
                continue;
            snprintf(text, CLOUD_ERROR_TEXT, "%s", printed);
            cJSON_free(printed);
        }
        out->error_count++;
    }
}

static bool number_of(const cJSON *object, const char *name, double *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    if (!cJSON_IsNumber(item) || item->valuedouble < 0 || item->valuedouble > 1e15)
        return false;
    *out = item->valuedouble;
    return true;
}

static bool parse_app_reload(const cJSON *data, struct cloud_event *out, const char **reason)
{
    char status[CLOUD_ID_MAX];
    if (!take(data, "status", status, sizeof status) ||
        !take(data, "reloadId", out->reload_id, sizeof out->reload_id) ||
        !take(data, "name", out->app_name, sizeof out->app_name) ||
        !take(data, "endTime", out->end_time, sizeof out->end_time)) {
        *reason = "a data field is not a short string";
        return false;
    }
    if (strcmp(status, "ok") != 0 && strcmp(status, "error") != 0) {
        *reason = "data.status is neither \"ok\" nor \"error\"";
        return false;
    }
    snprintf(out->qlik_status, sizeof out->qlik_status, "%s", status);
    out->failed = strcmp(status, "error") == 0;
    double duration;
    if (number_of(data, "duration", &duration))
        out->duration_ms = (long long)duration;
    take_errors(cJSON_GetObjectItemCaseSensitive(data, "errors"), out);
    return true;
}

static bool parse_reload(const cJSON *data, struct cloud_event *out, const char **reason)
{
    char app_id[CLOUD_ID_MAX], message[CLOUD_ERROR_TEXT];
    if (!take(data, "id", out->reload_id, sizeof out->reload_id) ||
        !take(data, "appId", app_id, sizeof app_id) ||
        !take(data, "status", out->qlik_status, sizeof out->qlik_status) ||
        !take(data, "startTime", out->start_time, sizeof out->start_time) ||
        !take(data, "errorMessage", message, sizeof message)) {
        *reason = "a data field is not a short string";
        return false;
    }
    if (out->app_id[0] == '\0')
        memcpy(out->app_id, app_id, sizeof app_id);
    if (out->user_id[0] == '\0' && !take(data, "userId", out->user_id, sizeof out->user_id)) {
        *reason = "data.userId is not a short string";
        return false;
    }
    const cJSON *succeeded = cJSON_GetObjectItemCaseSensitive(data, "succeeded");
    if (strcmp(out->qlik_status, "SUCCEEDED") == 0)
        out->failed = false;
    else if (strcmp(out->qlik_status, "FAILED") == 0 || strcmp(out->qlik_status, "CANCELED") == 0 ||
             strcmp(out->qlik_status, "EXCEEDED_LIMIT") == 0)
        out->failed = true;
    else if (cJSON_IsBool(succeeded))
        out->failed = cJSON_IsFalse(succeeded);
    else {
        *reason = "data.status is not a known reload status";
        return false;
    }
    double seconds;
    if (number_of(data, "durationSeconds", &seconds))
        out->duration_ms = (long long)(seconds * 1000.0);
    if (message[0]) {
        memcpy(out->errors[0], message, sizeof message);
        out->error_count = 1;
    }
    return true;
}

enum cloud_parse_result cloud_event_parse(const char *body, size_t length, struct cloud_event *out,
                                          const char **reason)
{
    const char *unused;
    if (reason == NULL)
        reason = &unused;
    *reason = NULL;
    memset(out, 0, sizeof *out);
    out->duration_ms = -1;
    out->kind = CLOUD_EVENT_OTHER;
    enum cloud_parse_result result = CLOUD_PARSE_WRONG_SHAPE;
    cJSON *root = NULL;
    if (!json_depth_within(body, length, JSON_DEPTH_MAX) ||
        (root = json_parse_exact(body, length, NULL)) == NULL) {
        *reason = "the body is not JSON";
        result = CLOUD_PARSE_NOT_JSON;
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        *reason = "the body is not a JSON object";
        goto out;
    }
    const cJSON *extensions = cJSON_GetObjectItemCaseSensitive(root, "extensions");
    if (extensions && !cJSON_IsObject(extensions)) {
        *reason = "extensions is not an object";
        goto out;
    }
    bool has_ce = cJSON_GetObjectItemCaseSensitive(root, "specversion") != NULL ||
                  cJSON_GetObjectItemCaseSensitive(root, "type") != NULL;
    bool has_legacy = cJSON_GetObjectItemCaseSensitive(root, "eventType") != NULL ||
                      cJSON_GetObjectItemCaseSensitive(root, "cloudEventsVersion") != NULL;
    out->envelope = has_ce && has_legacy ? CLOUD_ENVELOPE_HYBRID
                    : has_ce             ? CLOUD_ENVELOPE_CLOUDEVENTS
                                         : CLOUD_ENVELOPE_LEGACY;
    if (!take_either(root, "type", root, "eventType", out->type, sizeof out->type) ||
        !take_either(root, "id", root, "eventId", out->event_id, sizeof out->event_id) ||
        !take_either(root, "time", root, "eventTime", out->event_time, sizeof out->event_time) ||
        !take_either(root, "tenantid", extensions, "tenantId", out->tenant_id,
                     sizeof out->tenant_id) ||
        !take_either(root, "toplevelresourceid", extensions, "topLevelResourceId", out->app_id,
                     sizeof out->app_id) ||
        !take_either(root, "userid", extensions, "userId", out->user_id, sizeof out->user_id) ||
        !take_either(root, "ownerid", extensions, "ownerId", out->owner_id, sizeof out->owner_id) ||
        !take_either(root, "spaceid", extensions, "spaceId", out->space_id, sizeof out->space_id)) {
        *reason = "an envelope field is not a short string";
        goto out;
    }
    if (out->type[0] == '\0' || out->event_id[0] == '\0' || out->tenant_id[0] == '\0') {
        *reason = "no event type, event id or tenant id";
        goto out;
    }
    if (strcmp(out->type, APP_RELOAD_FINISHED) == 0)
        out->kind = CLOUD_EVENT_APP_RELOAD_FINISHED;
    else if (strcmp(out->type, RELOAD_FINISHED) == 0)
        out->kind = CLOUD_EVENT_RELOAD_FINISHED;
    else {
        result = CLOUD_PARSE_OK; /* another type: the caller counts and ignores it */
        goto out;
    }
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    if (!cJSON_IsObject(data)) {
        *reason = "no data object";
        goto out;
    }
    if (!(out->kind == CLOUD_EVENT_APP_RELOAD_FINISHED ? parse_app_reload(data, out, reason)
                                                       : parse_reload(data, out, reason)))
        goto out;
    if (!topic_level_ok(out->app_id) || out->reload_id[0] == '\0') {
        *reason = "no app id (or one with '/', '+' or '#') or no reload id";
        goto out;
    }
    result = CLOUD_PARSE_OK;
out:
    cJSON_Delete(root);
    return result;
}
