/*
 * Qlik Cloud reload events (topics/cloud.h).
 */
#include "topics/cloud.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bridge/core/clock.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/link/mqtt_link.h"
#include "bridge/model/cloud_event.h"
#include "bridge/store/expiring_map.h"
#include "bridge/store/seen_ring.h"
#include "topics/cloud_enrich.h"
#include "topics/publish.h"

#define MODULE "cloud"
#define FAMILY "cloud"
#define SEEN_FILE "cloud-seen.ring" /* in spool.dir */

enum {
    RELOAD_KEY_SIZE = 2 * CLOUD_ID_MAX + 8, /* "<tenant id>:<reload id>" and its NUL */
};

static struct butler_runtime *cloud_runtime;
static struct expiring_map *seen_ids;
/* The reloads published within CLOUD_DEDUP_TTL_MS, on disk (NULL when the
 * file could not be opened: then they are remembered in memory only). */
static struct seen_ring *seen_file;

bool cloud_wanted(const struct butler_config *config)
{
    return config->qlik_cloud.tenants.count > 0;
}

/* seen_ring callback at start-up: a reload published before the restart is
 * a duplicate for the rest of its 24 h. */
static void remember_recovered(void *context, const char *key, uint64_t wall_ms)
{
    size_t *count = context;
    uint64_t now = clock_wall_ms();
    uint64_t age = now > wall_ms ? now - wall_ms : 0;
    if (age < CLOUD_DEDUP_TTL_MS &&
        expiring_map_put(seen_ids, key, NULL, CLOUD_DEDUP_TTL_MS - age, NULL) == BUTLER_OK)
        (*count)++;
}

/*
 * Start-up (main thread): open spool.dir/cloud-seen.ring and load the reloads
 * published within CLOUD_DEDUP_TTL_MS into seen_ids, oldest first. Only
 * published reloads are written there (cloud_run, after the broker has the
 * event), so a delivery spooled but not published before a crash is no
 * duplicate when the spool replays it. A file that cannot be opened leaves
 * de-duplication in memory, as it was, with an error logged.
 */
static void open_seen_file(const struct butler_config *config)
{
    char path[4200];
    if (snprintf(path, sizeof path, "%s/%s", config->spool.dir, SEEN_FILE) >= (int)sizeof path) {
        LOG_ERROR(MODULE,
                  "spool.dir is too long for %s: Qlik Cloud reloads are remembered in "
                  "memory only",
                  SEEN_FILE);
        return;
    }
    /* The spool creates its directory later in start-up; the file needs it now. */
    if (mkdir(config->spool.dir, 0700) != 0 && errno != EEXIST)
        LOG_WARN(MODULE, "cannot create %s: %s", config->spool.dir, strerror(errno));
    struct seen_ring_options options = {
        .path = path,
        .capacity = CLOUD_DEDUP_MAX,
        .key_max = RELOAD_KEY_SIZE - 1,
        .ttl_ms = CLOUD_DEDUP_TTL_MS,
        .fsync = config->spool.fsync,
    };
    size_t count = 0;
    if (seen_ring_open(&options, remember_recovered, &count, &seen_file) != BUTLER_OK) {
        LOG_ERROR(MODULE, "Qlik Cloud reloads are remembered in memory only: a redelivery after "
                          "a restart may be published again");
        seen_file = NULL;
        return;
    }
    if (count)
        LOG_INFO(MODULE, "%zu Qlik Cloud reload(s) published within 24 h remembered from %s", count,
                 SEEN_FILE);
}

enum butler_status cloud_setup(struct butler_runtime *runtime)
{
    const struct butler_config *config = runtime->config;
    cloud_runtime = runtime;
    if (!cloud_wanted(config) && config->qlik_cloud.mqtt_topic[0] == '\0')
        return BUTLER_OK;
    enum butler_status status =
        expiring_map_create_named("cloud_events", CLOUD_DEDUP_MAX, &seen_ids);
    if (status != BUTLER_OK)
        return status;
    open_seen_file(config);
    if (config->qlik_cloud.mqtt_topic[0] != '\0')
        status = mqtt_link_add_subscription(runtime->link, config->qlik_cloud.mqtt_topic, true);
    return status;
}

void cloud_teardown(void)
{
    cloud_enrich_teardown();
    expiring_map_destroy(seen_ids);
    seen_ids = NULL;
    seen_ring_close(seen_file);
    seen_file = NULL;
}

bool cloud_forwarded(const char *topic)
{
    const struct butler_config *config = cloud_runtime ? cloud_runtime->config : NULL;
    return config && config->qlik_cloud.mqtt_topic[0] != '\0' &&
           mqtt_topic_matches(config->qlik_cloud.mqtt_topic, topic);
}

static void count_event(const char *outcome)
{
    char labels[64];
    snprintf(labels, sizeof labels, "outcome=\"%s\"", outcome);
    metrics_count("butler_cloud_events_total", labels,
                  "Qlik Cloud deliveries handled, by outcome (published, duplicate, ignored_type, "
                  "invalid, unknown_tenant, failed)");
}

/* First sight of this reload: false when its reload id was seen within
 * CLOUD_DEDUP_TTL_MS. One key per reload covers both rules of the contract:
 * a resent delivery (same event id) carries the same reload id, and the two
 * event types of one reload share it; one entry per event keeps the map at
 * half the memory of an event-id key beside it. */
static void reload_key(const struct cloud_event *event, char *key, size_t size)
{
    snprintf(key, size, "%s:%s", event->tenant_id, event->reload_id);
}

static bool first_sight(const struct cloud_event *event)
{
    char key[RELOAD_KEY_SIZE];
    reload_key(event, key, sizeof key);
    /* Out of memory remembering: publish (a duplicate beats a loss). */
    return expiring_map_insert_new(seen_ids, key, NULL, CLOUD_DEDUP_TTL_MS, NULL) !=
           BUTLER_ERR_DENIED;
}

/*
 * The event of this reload is published: write its key to the seen file
 * (worker thread), before the spool marks the delivery done. Killed before
 * this write, the replay publishes it again (a duplicate, never a loss);
 * killed after it, the replay finds it here and is a duplicate.
 */
static void remember_published(const struct cloud_event *event)
{
    if (seen_file == NULL)
        return;
    char key[RELOAD_KEY_SIZE];
    reload_key(event, key, sizeof key);
    enum butler_status status = seen_ring_add(seen_file, key, clock_wall_ms());
    if (status == BUTLER_OK)
        return;
    metrics_count("butler_cloud_dedup_unrecorded_total", "",
                  "Qlik Cloud reloads published but not written to cloud-seen.ring (a "
                  "redelivery after a restart may be published again)");
    LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE,
                    "cannot write reload %s to %s (%s): a redelivery after a restart may be "
                    "published again",
                    event->reload_id, SEEN_FILE, butler_status_str(status));
}

static void add_text(cJSON *object, const char *name, const char *value)
{
    if (value && value[0])
        cJSON_AddStringToObject(object, name, value);
    else
        cJSON_AddNullToObject(object, name);
}

static const char *first_of(const char *a, const char *b)
{
    return a && a[0] ? a : b;
}

/* The event message (CONTRACT.md 9.2). Caller frees the text (cJSON_free). */
static char *build_event(const struct config_cloud_tenant *tenant, const struct cloud_event *event,
                         const struct cloud_enriched *more, uint64_t received_wall_ms)
{
    cJSON *root = cJSON_CreateObject();
    char *text = NULL;
    if (root == NULL)
        return NULL;
    cJSON_AddStringToObject(root, "tenant", tenant->name);
    cJSON_AddStringToObject(root, "tenantId", event->tenant_id);
    cJSON_AddStringToObject(root, "appId", event->app_id);
    add_text(root, "appName", first_of(event->app_name, more->app_name));
    cJSON_AddStringToObject(root, "reloadId", event->reload_id);
    cJSON_AddStringToObject(root, "status", event->failed ? "error" : "ok");
    cJSON_AddStringToObject(root, "qlikStatus", event->qlik_status);
    if (event->duration_ms >= 0)
        cJSON_AddNumberToObject(root, "durationMs", (double)event->duration_ms);
    else
        cJSON_AddNullToObject(root, "durationMs");
    cJSON *errors = cJSON_AddArrayToObject(root, "errors");
    for (size_t i = 0; errors && i < event->error_count; i++)
        cJSON_AddItemToArray(errors, cJSON_CreateString(event->errors[i]));
    cJSON *owner = cJSON_AddObjectToObject(root, "owner");
    if (owner) {
        add_text(owner, "id", first_of(more->owner_id, event->owner_id));
        add_text(owner, "name", more->owner_name);
        add_text(owner, "email", more->owner_email);
    }
    cJSON *tags = cJSON_AddArrayToObject(root, "appTags");
    for (size_t i = 0; tags && i < more->tag_count; i++)
        cJSON_AddItemToArray(tags, cJSON_CreateString(more->tags[i]));
    add_text(root, "spaceId", first_of(event->space_id, more->space_id));
    add_text(root, "startTime", first_of(event->start_time, more->start_time));
    add_text(root, "endTime", first_of(event->end_time, more->end_time));
    add_text(root, "scriptLogTail", more->script_log_tail);
    cJSON_AddStringToObject(root, "eventId", event->event_id);
    cJSON_AddStringToObject(root, "eventType", event->type);
    char received[40];
    clock_format_iso8601(received_wall_ms, received, sizeof received);
    cJSON_AddStringToObject(root, "receivedAt", received);
    if (more->error[0])
        cJSON_AddStringToObject(root, "enrichError", more->error);
    text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

/* The tenant a delivery belongs to: the ingress names it in the topic (it
 * checked signature and tenant id); a forwarder's body names it by id. */
static const struct config_cloud_tenant *tenant_of(const struct butler_config *config,
                                                   const char *topic, const char *tenant_id)
{
    char prefix[512];
    int length = snprintf(prefix, sizeof prefix, "%s/cloud/webhook/", config->mqtt.topic_root);
    if (length > 0 && (size_t)length < sizeof prefix &&
        strncmp(topic, prefix, (size_t)length) == 0) {
        const struct config_cloud_tenant *tenant = cloud_tenant_by_name(config, topic + length);
        return tenant && strcmp(tenant->tenant_id, tenant_id) == 0 ? tenant : NULL;
    }
    return cloud_tenant_by_id(config, tenant_id);
}

void cloud_run(struct topic_worker *worker, struct topic_message *message)
{
    (void)worker;
    const struct butler_config *config = cloud_runtime->config;
    struct cloud_event *event = malloc(sizeof *event);
    struct cloud_enriched more = {0};
    char *text = NULL;
    const char *outcome = "invalid";
    if (event == NULL) {
        outcome = "failed";
        topic_message_keep(message); /* out of memory: try again after a restart */
        goto out;
    }
    const char *reason = NULL;
    if (cloud_event_parse((const char *)message->payload, message->payload_length, event,
                          &reason) != CLOUD_PARSE_OK) {
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "Qlik Cloud event on %s ignored: %s",
                        message->topic, reason);
        goto out;
    }
    if (event->kind == CLOUD_EVENT_OTHER) {
        outcome = "ignored_type";
        goto out;
    }
    const struct config_cloud_tenant *tenant = tenant_of(config, message->topic, event->tenant_id);
    if (tenant == NULL) {
        outcome = "unknown_tenant";
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                        "Qlik Cloud event on %s ignored: its tenant id is no configured tenant's",
                        message->topic);
        goto out;
    }
    if (!first_sight(event)) {
        outcome = "duplicate";
        goto out;
    }
    cloud_enrich(tenant, event, config->qlik_cloud.script_log_tail_lines, &more);
    if (more.error[0])
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "reload %s of app %s (tenant %s) not enriched: %s",
                        event->reload_id, event->app_id, tenant->name, more.error);
    text = build_event(tenant, event, &more, message->received_wall_ms);
    char topic[512];
    snprintf(topic, sizeof topic, "%s/events/cloud/reload/%s/%s", config->mqtt.topic_root,
             event->failed ? "failed" : "ok", event->app_id);
    struct mqtt_publish_options options = {.qos = 1, .content_type = "application/json"};
    enum butler_status status =
        text ? publish_reliably(topic, text, strlen(text), &options) : BUTLER_ERR_NOMEM;
    if (status == BUTLER_OK) {
        outcome = "published";
        remember_published(event);
    } else {
        outcome = "failed";
        /* Not published: forget the ids so the replay after a restart is not
         * taken for a duplicate, and keep the message for that replay. */
        char key[RELOAD_KEY_SIZE];
        reload_key(event, key, sizeof key);
        expiring_map_remove(seen_ids, key);
        if (status == BUTLER_ERR_SHUTDOWN || status == BUTLER_ERR_NOMEM)
            topic_message_keep(message);
        else
            publish_deadletter(FAMILY, message->topic, message->payload, message->payload_length,
                               butler_status_str(status), 1, message->received_wall_ms);
    }
out:
    count_event(outcome);
    topics_count(FAMILY, outcome);
    cJSON_free(text);
    free(more.script_log_tail);
    free(event);
    topic_message_free(message);
}
