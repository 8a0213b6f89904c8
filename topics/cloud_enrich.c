/*
 * Enrichment of Qlik Cloud reload events (topics/cloud_enrich.h): five GETs
 * on the tenant's API (sense-interfaces.md 7.3), each optional: what fails
 * is named in out->error and the rest still fills the event.
 */
#include "topics/cloud_enrich.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/clients/qlik_cloud.h"
#include "bridge/core/json.h"
#include "topics/log_tail.h"

enum {
    TENANTS_MAX = 32,           /* qlik_cloud.tenants allows no more */
    LOG_BYTES_MAX = 256 * 1024, /* the end of a script log fetched for its tail */
    LOG_TAIL_BYTES = 16 * 1024, /* at most this much tail in the event */
};

/* One client per tenant, created at first use; the config outlives them. */
static pthread_mutex_t clients_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    const struct config_cloud_tenant *tenant;
    struct qlik_cloud_client *client;
} clients[TENANTS_MAX];

static struct qlik_cloud_client *client_for(const struct config_cloud_tenant *tenant)
{
    struct qlik_cloud_client *found = NULL;
    pthread_mutex_lock(&clients_lock);
    for (size_t i = 0; i < TENANTS_MAX && found == NULL; i++) {
        if (clients[i].tenant == tenant) {
            found = clients[i].client;
        } else if (clients[i].tenant == NULL) {
            if (qlik_cloud_client_create(tenant, &clients[i].client) == BUTLER_OK) {
                clients[i].tenant = tenant;
                found = clients[i].client;
            }
            break;
        }
    }
    pthread_mutex_unlock(&clients_lock);
    return found;
}

void cloud_enrich_teardown(void)
{
    pthread_mutex_lock(&clients_lock);
    for (size_t i = 0; i < TENANTS_MAX; i++) {
        qlik_cloud_client_destroy(clients[i].client);
        clients[i].client = NULL;
        clients[i].tenant = NULL;
    }
    pthread_mutex_unlock(&clients_lock);
}

/* Note the first failure only: the event carries one reason. */
static void failed(struct cloud_enriched *out, const char *what, const char *error)
{
    if (out->error[0] == '\0')
        snprintf(out->error, sizeof out->error, "%s: %s", what, error);
}

static void copy_member(const cJSON *object, const char *name, char *out, size_t size)
{
    const char *value = json_string_member(object, name);
    if (value && out[0] == '\0')
        snprintf(out, size, "%s", value);
}

/* GET a JSON answer; NULL (with out->error) when it failed. Caller deletes. */
static cJSON *get_json(struct qlik_cloud_client *client, const char *what, const char *path,
                       struct cloud_enriched *out)
{
    char *body = NULL, error[512];
    size_t length = 0;
    if (qlik_cloud_get(client, path, QLIK_CLOUD_BODY_MAX, false, &body, &length, NULL, error,
                       sizeof error) != BUTLER_OK) {
        failed(out, what, error);
        return NULL;
    }
    cJSON *json = json_depth_within(body, length, JSON_DEPTH_MAX)
                      ? json_parse_exact(body, length, NULL)
                      : NULL;
    free(body);
    if (json == NULL)
        failed(out, what, "the answer is not JSON");
    return json;
}

static void enrich_app(struct qlik_cloud_client *client, const char *app,
                       struct cloud_enriched *out)
{
    char path[512];
    snprintf(path, sizeof path, "/api/v1/apps/%s", app);
    cJSON *json = get_json(client, "app", path, out);
    const cJSON *attributes = cJSON_GetObjectItemCaseSensitive(json, "attributes");
    copy_member(attributes, "name", out->app_name, sizeof out->app_name);
    copy_member(attributes, "ownerId", out->owner_id, sizeof out->owner_id);
    copy_member(attributes, "spaceId", out->space_id, sizeof out->space_id);
    cJSON_Delete(json);

    snprintf(path, sizeof path, "/api/v1/items?resourceType=app&resourceId=%s", app);
    json = get_json(client, "app tags", path, out);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(json, "data");
    const cJSON *first = cJSON_IsArray(data) ? cJSON_GetArrayItem(data, 0) : NULL;
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(first, "meta");
    const cJSON *tag;
    cJSON_ArrayForEach(tag, cJSON_GetObjectItemCaseSensitive(meta, "tags"))
    {
        const char *name = json_string_member(tag, "name");
        if (out->tag_count >= CLOUD_TAGS_MAX)
            break;
        if (name && strlen(name) < CLOUD_ID_MAX)
            snprintf(out->tags[out->tag_count++], CLOUD_ID_MAX, "%s", name);
    }
    cJSON_Delete(json);
}

static void enrich_owner(struct qlik_cloud_client *client, const char *owner,
                         struct cloud_enriched *out)
{
    char escaped[3 * CLOUD_ID_MAX], path[512];
    if (!qlik_cloud_escape(owner, escaped, sizeof escaped))
        return;
    snprintf(path, sizeof path, "/api/v1/users/%s", escaped);
    cJSON *json = get_json(client, "owner", path, out);
    copy_member(json, "name", out->owner_name, sizeof out->owner_name);
    copy_member(json, "email", out->owner_email, sizeof out->owner_email); /* may be absent */
    cJSON_Delete(json);
}

static void enrich_reload(struct qlik_cloud_client *client, const char *reload,
                          struct cloud_enriched *out)
{
    char path[512];
    snprintf(path, sizeof path, "/api/v1/reloads/%s", reload);
    cJSON *json = get_json(client, "reload", path, out);
    copy_member(json, "startTime", out->start_time, sizeof out->start_time);
    copy_member(json, "endTime", out->end_time, sizeof out->end_time);
    cJSON_Delete(json);
}

static void enrich_log(struct qlik_cloud_client *client, const char *app, const char *reload,
                       int lines, struct cloud_enriched *out)
{
    char path[768], error[512], *body = NULL;
    size_t length = 0;
    bool head_cut = false;
    snprintf(path, sizeof path, "/api/v1/apps/%s/reloads/logs/%s", app, reload);
    if (qlik_cloud_get(client, path, LOG_BYTES_MAX, true, &body, &length, &head_cut, error,
                       sizeof error) != BUTLER_OK) {
        failed(out, "script log", error);
        return;
    }
    out->script_log_tail = log_tail(body, length, head_cut, lines, LOG_TAIL_BYTES);
    free(body);
}

void cloud_enrich(const struct config_cloud_tenant *tenant, const struct cloud_event *event,
                  int script_log_tail_lines, struct cloud_enriched *out)
{
    memset(out, 0, sizeof *out);
    if (tenant->api_key[0] == '\0' && tenant->client_id[0] == '\0') {
        snprintf(out->error, sizeof out->error,
                 "no api_key or oauth.client_id configured for tenant %s", tenant->name);
        return;
    }
    struct qlik_cloud_client *client = client_for(tenant);
    char app[3 * CLOUD_ID_MAX], reload[3 * CLOUD_ID_MAX];
    if (client == NULL || !qlik_cloud_escape(event->app_id, app, sizeof app) ||
        !qlik_cloud_escape(event->reload_id, reload, sizeof reload)) {
        snprintf(out->error, sizeof out->error, "out of memory");
        return;
    }
    enrich_app(client, app, out);
    const char *owner = out->owner_id[0] ? out->owner_id : event->owner_id;
    if (owner[0])
        enrich_owner(client, owner, out);
    enrich_reload(client, reload, out);
    if (event->failed && script_log_tail_lines > 0)
        enrich_log(client, app, reload, script_log_tail_lines, out);
}
