/*
 * Qlik Cloud reload events (CONTRACT.md 9.2; sense-interfaces.md 7.3): what
 * both the webhook ingress (bridge/ingress/http_cloud.c) and the handler of
 * the delivered bodies (topics/cloud.c) need to know about them: the
 * Qlik-Signature check and the parser of the three envelopes (legacy,
 * CloudEvents 1.0, and the hybrid carrying both).
 *
 * Pure functions; any thread.
 */
#ifndef BUTLER_MODEL_CLOUD_EVENT_H
#define BUTLER_MODEL_CLOUD_EVENT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

enum {
    CLOUD_ID_MAX = 128,     /* ids: event, tenant, app, reload, user, space */
    CLOUD_TEXT_MAX = 512,   /* app name, times, status texts */
    CLOUD_ERRORS_MAX = 5,   /* errors[] kept (Qlik sends at most 5) */
    CLOUD_ERROR_TEXT = 512, /* one error's text, cut beyond this */
};

enum cloud_envelope {
    CLOUD_ENVELOPE_LEGACY,      /* cloudEventsVersion 0.1: eventId, eventType, extensions.* */
    CLOUD_ENVELOPE_CLOUDEVENTS, /* specversion 1.0: id, type, tenantid, toplevelresourceid */
    CLOUD_ENVELOPE_HYBRID,      /* both sets of fields (Qlik since November 2025) */
};

enum cloud_event_kind {
    CLOUD_EVENT_APP_RELOAD_FINISHED, /* com.qlik.v1.app.reload.finished */
    CLOUD_EVENT_RELOAD_FINISHED,     /* com.qlik.v1.reload.finished */
    CLOUD_EVENT_OTHER,               /* any other type: counted, not published */
};

enum cloud_parse_result {
    CLOUD_PARSE_OK,
    CLOUD_PARSE_NOT_JSON,    /* not one JSON value, or nested too deep */
    CLOUD_PARSE_WRONG_SHAPE, /* JSON, but no envelope, or a reload event without its fields */
};

/* One parsed delivery. Fixed-size fields: nothing to free. */
struct cloud_event {
    enum cloud_envelope envelope;
    enum cloud_event_kind kind;
    char type[CLOUD_TEXT_MAX];
    char event_id[CLOUD_ID_MAX];
    char tenant_id[CLOUD_ID_MAX];
    char event_time[CLOUD_TEXT_MAX];
    /* The reload (kind != CLOUD_EVENT_OTHER only). */
    char app_id[CLOUD_ID_MAX]; /* safe as a topic level: no '/', '+', '#' */
    char reload_id[CLOUD_ID_MAX];
    char app_name[CLOUD_TEXT_MAX];
    char user_id[CLOUD_ID_MAX];
    char owner_id[CLOUD_ID_MAX];
    char space_id[CLOUD_ID_MAX];
    bool failed;                     /* status "error" / FAILED, CANCELED, EXCEEDED_LIMIT */
    char qlik_status[CLOUD_ID_MAX];  /* as Qlik wrote it: ok, error, SUCCEEDED, FAILED, ... */
    long long duration_ms;           /* -1 = not given */
    char start_time[CLOUD_TEXT_MAX]; /* "" = not given */
    char end_time[CLOUD_TEXT_MAX];
    size_t error_count;
    char errors[CLOUD_ERRORS_MAX][CLOUD_ERROR_TEXT];
};

/*
 * Parse one delivery body (`length` bytes, need not be NUL-terminated) into
 * *out. On CLOUD_PARSE_OK with kind CLOUD_EVENT_OTHER only type, event_id,
 * tenant_id and envelope are meaningful. *reason (may be NULL) receives a
 * static text saying what was wrong.
 */
enum cloud_parse_result cloud_event_parse(const char *body, size_t length, struct cloud_event *out,
                                          const char **reason);

/*
 * True when `header` (the Qlik-Signature value, may be NULL) is the hex
 * HMAC-SHA256 of body under `secret`. Compared in constant time over the
 * digest; an empty secret never matches.
 */
bool cloud_signature_matches(const char *secret, const void *body, size_t length,
                             const char *header);

/* The first tenant whose webhook_secret signed `body`, or NULL (each secret
 * is tried, in constant time each). Borrowed from config. */
const struct config_cloud_tenant *cloud_tenant_for_signature(const struct butler_config *config,
                                                             const void *body, size_t length,
                                                             const char *header);

/* The tenant with this tenant_id, or NULL. Borrowed from config. */
const struct config_cloud_tenant *cloud_tenant_by_id(const struct butler_config *config,
                                                     const char *tenant_id);
/* The tenant with this name, or NULL. Borrowed from config. */
const struct config_cloud_tenant *cloud_tenant_by_name(const struct butler_config *config,
                                                       const char *name);

#endif
