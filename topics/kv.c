/*
 * The key-value store on the broker (see kv.h).
 *
 * Locking: `view_lock` guards the view; it is held only for in-memory work,
 * never across a publish, because the network thread takes it for every
 * <root>/kv/# message. `write_lock` serialises this instance's writers so an
 * eviction and the write that needed it are not interleaved with another.
 */
#include "topics/kv.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge/core/clock.h"
#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "topics/publish.h"
#include "bridge/model/task_request.h"

#define MODULE "kv"

enum {
    TOPIC_MAX = 2 * KV_NAME_MAX + 512,
    EXPIRED_PER_TICK_MAX = 256, /* broker deletes per housekeeping tick (3.1.1) */
};

/* ---- pure parts ---- */

bool kv_name_valid(const char *name)
{
    size_t length = name ? strlen(name) : 0;
    return length > 0 && length <= KV_NAME_MAX && strpbrk(name, "/+#") == NULL &&
           task_valid_utf8((const unsigned char *)name, length);
}

enum butler_status kv_record_build(const char *namespace_name, const char *key, const char *value,
                                   long long ttl_ms, uint64_t now_wall_ms, char **payload)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    cJSON *record = cJSON_CreateObject();
    *payload = NULL;
    if (record == NULL)
        goto out;
    char created[32], expires[32];
    clock_format_iso8601(now_wall_ms, created, sizeof created);
    if (!cJSON_AddStringToObject(record, "namespace", namespace_name) ||
        !cJSON_AddStringToObject(record, "key", key) ||
        !cJSON_AddStringToObject(record, "value", value) ||
        !cJSON_AddNumberToObject(record, "ttl", (double)(ttl_ms > 0 ? ttl_ms : 0)) ||
        !cJSON_AddStringToObject(record, "createdAt", created))
        goto out;
    if (ttl_ms > 0) {
        clock_format_iso8601(now_wall_ms + (uint64_t)ttl_ms, expires, sizeof expires);
        if (!cJSON_AddStringToObject(record, "expiresAt", expires))
            goto out;
    }
    *payload = cJSON_PrintUnformatted(record);
    if (*payload)
        status = BUTLER_OK;
out:
    cJSON_Delete(record);
    return status;
}

void kv_record_clear(struct kv_record *record)
{
    free(record->namespace_name);
    free(record->key);
    free(record->value);
    memset(record, 0, sizeof *record);
}

enum butler_status kv_record_parse(const unsigned char *payload, size_t length,
                                   struct kv_record *record)
{
    enum butler_status status = BUTLER_ERR_INVALID;
    memset(record, 0, sizeof *record);
    cJSON *json = json_parse_exact((const char *)payload, length, NULL);
    if (!cJSON_IsObject(json))
        goto out;
    const cJSON *ns = cJSON_GetObjectItemCaseSensitive(json, "namespace");
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(json, "key");
    const cJSON *value = cJSON_GetObjectItemCaseSensitive(json, "value");
    const cJSON *ttl = cJSON_GetObjectItemCaseSensitive(json, "ttl");
    const cJSON *created = cJSON_GetObjectItemCaseSensitive(json, "createdAt");
    const cJSON *expires = cJSON_GetObjectItemCaseSensitive(json, "expiresAt");
    if (!cJSON_IsString(ns) || !cJSON_IsString(key) || !cJSON_IsString(value) ||
        !kv_name_valid(ns->valuestring) || !kv_name_valid(key->valuestring))
        goto out;
    if (ttl && !(cJSON_IsNumber(ttl) && ttl->valuedouble >= 0 && ttl->valuedouble <= 4.0e12))
        goto out;
    record->ttl_ms = ttl ? (long long)ttl->valuedouble : 0;
    if (cJSON_IsString(created))
        clock_parse_iso8601(created->valuestring, &record->created_ms);
    if (expires && !(cJSON_IsString(expires) &&
                     clock_parse_iso8601(expires->valuestring, &record->expires_ms)))
        goto out;
    status = BUTLER_ERR_NOMEM;
    record->namespace_name = strdup(ns->valuestring);
    record->key = strdup(key->valuestring);
    record->value = strdup(value->valuestring);
    if (record->namespace_name && record->key && record->value)
        status = BUTLER_OK;
out:
    if (status != BUTLER_OK)
        kv_record_clear(record);
    cJSON_Delete(json);
    return status;
}

bool kv_topic_split(const char *root, const char *topic, const char **namespace_name,
                    size_t *namespace_length, const char **key, size_t *key_length)
{
    size_t root_length = strlen(root);
    if (strncmp(topic, root, root_length) != 0 || strncmp(topic + root_length, "/kv/", 4) != 0)
        return false;
    const char *ns = topic + root_length + 4;
    const char *slash = strchr(ns, '/');
    if (slash == NULL || slash == ns || slash[1] == '\0' || strchr(slash + 1, '/'))
        return false;
    *namespace_name = ns;
    *namespace_length = (size_t)(slash - ns);
    *key = slash + 1;
    *key_length = strlen(slash + 1);
    return *namespace_length <= KV_NAME_MAX && *key_length <= KV_NAME_MAX;
}

/* ---- the view ---- */

struct kv_entry {
    char *key;
    char *value;
    long long ttl_ms;
    uint64_t expires_ms;
    uint64_t written_ms;
};

struct kv_namespace {
    char *name;
    struct kv_entry *entries;
    size_t count, capacity;
};

struct kv_view {
    struct kv_namespace *namespaces;
    size_t count, capacity;
    size_t max_namespaces, max_keys;
};

enum butler_status kv_view_create(size_t max_namespaces, size_t max_keys, struct kv_view **out)
{
    struct kv_view *view = calloc(1, sizeof *view);
    *out = view;
    if (view == NULL)
        return BUTLER_ERR_NOMEM;
    view->max_namespaces = max_namespaces;
    view->max_keys = max_keys;
    return BUTLER_OK;
}

static void entry_free(struct kv_entry *entry)
{
    free(entry->key);
    free(entry->value);
}

static void namespace_free(struct kv_namespace *ns)
{
    for (size_t i = 0; i < ns->count; i++)
        entry_free(&ns->entries[i]);
    free(ns->entries);
    free(ns->name);
}

void kv_view_destroy(struct kv_view *view)
{
    if (view == NULL)
        return;
    for (size_t i = 0; i < view->count; i++)
        namespace_free(&view->namespaces[i]);
    free(view->namespaces);
    free(view);
}

static struct kv_namespace *find_namespace(const struct kv_view *view, const char *name)
{
    for (size_t i = 0; i < view->count; i++)
        if (strcmp(view->namespaces[i].name, name) == 0)
            return &view->namespaces[i];
    return NULL;
}

static struct kv_entry *find_entry(const struct kv_namespace *ns, const char *key)
{
    for (size_t i = 0; ns && i < ns->count; i++)
        if (strcmp(ns->entries[i].key, key) == 0)
            return &ns->entries[i];
    return NULL;
}

/* Grow `*array` (of `element` bytes) to hold one more, never past `max`. */
static enum butler_status reserve(void **array, size_t *capacity, size_t count, size_t max,
                                  size_t element)
{
    if (count < *capacity)
        return BUTLER_OK;
    if (count >= max)
        return BUTLER_ERR_FULL;
    size_t grown = *capacity ? *capacity * 2 : 8;
    if (grown > max)
        grown = max;
    void *bigger = realloc(*array, grown * element);
    if (bigger == NULL)
        return BUTLER_ERR_NOMEM;
    *array = bigger;
    *capacity = grown;
    return BUTLER_OK;
}

enum butler_status kv_view_put(struct kv_view *view, const struct kv_record *record,
                               uint64_t written_ms)
{
    struct kv_namespace *ns = find_namespace(view, record->namespace_name);
    struct kv_entry *entry = find_entry(ns, record->key);
    char *value = strdup(record->value);
    char *key = NULL, *name = NULL;
    enum butler_status status = BUTLER_ERR_NOMEM;
    if (value == NULL)
        goto out;
    if (entry) {
        free(entry->value);
        entry->value = value;
        value = NULL;
        goto set;
    }
    status = BUTLER_ERR_FULL;
    if (ns == NULL && view->count >= view->max_namespaces)
        goto out;
    if (ns && ns->count >= view->max_keys)
        goto out;
    status = BUTLER_ERR_NOMEM;
    key = strdup(record->key);
    if (key == NULL)
        goto out;
    if (ns == NULL) {
        name = strdup(record->namespace_name);
        if (name == NULL)
            goto out;
        status = reserve((void **)&view->namespaces, &view->capacity, view->count,
                         view->max_namespaces, sizeof *view->namespaces);
        if (status != BUTLER_OK)
            goto out;
        ns = &view->namespaces[view->count++];
        *ns = (struct kv_namespace){.name = name};
        name = NULL;
    }
    status = reserve((void **)&ns->entries, &ns->capacity, ns->count, view->max_keys,
                     sizeof *ns->entries);
    if (status != BUTLER_OK) {
        if (ns->count == 0) /* just created: do not leave it empty */
            kv_view_remove(view, record->namespace_name, "");
        goto out;
    }
    entry = &ns->entries[ns->count++];
    *entry = (struct kv_entry){.key = key, .value = value};
    key = value = NULL;
set:
    entry->ttl_ms = record->ttl_ms;
    entry->expires_ms = record->expires_ms;
    entry->written_ms = written_ms;
    status = BUTLER_OK;
out:
    free(value);
    free(key);
    free(name);
    return status;
}

bool kv_view_remove(struct kv_view *view, const char *namespace_name, const char *key)
{
    struct kv_namespace *ns = find_namespace(view, namespace_name);
    if (ns == NULL)
        return false;
    struct kv_entry *entry = find_entry(ns, key);
    if (entry) {
        entry_free(entry);
        *entry = ns->entries[--ns->count];
    }
    if (ns->count == 0) {
        namespace_free(ns);
        *ns = view->namespaces[--view->count];
    }
    return entry != NULL;
}

static bool expired(const struct kv_entry *entry, uint64_t now_ms)
{
    return entry->expires_ms != 0 && entry->expires_ms <= now_ms;
}

enum kv_lookup kv_view_lookup(const struct kv_view *view, const char *namespace_name,
                              const char *key, uint64_t now_ms, struct kv_record *record)
{
    const struct kv_namespace *ns = find_namespace(view, namespace_name);
    if (ns == NULL)
        return KV_NO_NAMESPACE;
    const struct kv_entry *entry = find_entry(ns, key);
    if (entry == NULL || expired(entry, now_ms))
        return KV_NO_KEY;
    if (record) {
        memset(record, 0, sizeof *record);
        record->namespace_name = strdup(namespace_name);
        record->key = strdup(key);
        record->value = strdup(entry->value);
        record->ttl_ms = entry->ttl_ms;
        record->expires_ms = entry->expires_ms;
        if (!record->namespace_name || !record->key || !record->value) {
            kv_record_clear(record);
            return KV_NO_KEY; /* out of memory reads as absent; logged by the caller */
        }
    }
    return KV_FOUND;
}

size_t kv_view_key_count(const struct kv_view *view, const char *namespace_name)
{
    const struct kv_namespace *ns = find_namespace(view, namespace_name);
    return ns ? ns->count : 0;
}

bool kv_view_namespace_exists(const struct kv_view *view, const char *namespace_name)
{
    return find_namespace(view, namespace_name) != NULL;
}

bool kv_view_oldest(const struct kv_view *view, const char *namespace_name, char *out,
                    size_t out_size)
{
    const struct kv_namespace *ns = find_namespace(view, namespace_name);
    const struct kv_entry *oldest = NULL;
    for (size_t i = 0; ns && i < ns->count; i++)
        if (oldest == NULL || ns->entries[i].written_ms < oldest->written_ms)
            oldest = &ns->entries[i];
    if (oldest == NULL)
        return false;
    snprintf(out, out_size, "%s", oldest->key);
    return true;
}

cJSON *kv_view_namespaces(const struct kv_view *view)
{
    cJSON *names = cJSON_CreateArray();
    for (size_t i = 0; names && i < view->count; i++) {
        cJSON *name = cJSON_CreateString(view->namespaces[i].name);
        if (name == NULL || !cJSON_AddItemToArray(names, name)) {
            cJSON_Delete(name);
            cJSON_Delete(names);
            return NULL;
        }
    }
    return names;
}

cJSON *kv_view_keys(const struct kv_view *view, const char *namespace_name, uint64_t now_ms,
                    bool *exists)
{
    const struct kv_namespace *ns = find_namespace(view, namespace_name);
    *exists = ns != NULL;
    if (ns == NULL)
        return NULL;
    cJSON *keys = cJSON_CreateArray();
    for (size_t i = 0; keys && i < ns->count; i++) {
        if (expired(&ns->entries[i], now_ms))
            continue;
        cJSON *item = cJSON_CreateObject();
        if (item == NULL || !cJSON_AddStringToObject(item, "key", ns->entries[i].key) ||
            !cJSON_AddItemToArray(keys, item)) {
            cJSON_Delete(item);
            cJSON_Delete(keys);
            return NULL;
        }
    }
    return keys;
}

size_t kv_view_take_expired(struct kv_view *view, uint64_t now_ms, size_t max, cJSON *out)
{
    size_t taken = 0;
    for (size_t n = 0; n < view->count && taken < max;) {
        struct kv_namespace *ns = &view->namespaces[n];
        bool removed_namespace = false;
        for (size_t i = 0; i < ns->count && taken < max;) {
            if (!expired(&ns->entries[i], now_ms)) {
                i++;
                continue;
            }
            cJSON *pair = cJSON_CreateArray();
            if (pair) {
                cJSON_AddItemToArray(pair, cJSON_CreateString(ns->name));
                cJSON_AddItemToArray(pair, cJSON_CreateString(ns->entries[i].key));
                cJSON_AddItemToArray(out, pair);
            }
            taken++;
            entry_free(&ns->entries[i]);
            ns->entries[i] = ns->entries[--ns->count];
            if (ns->count == 0) {
                namespace_free(ns);
                view->namespaces[n] = view->namespaces[--view->count];
                removed_namespace = true;
                break;
            }
        }
        if (!removed_namespace)
            n++;
    }
    return taken;
}

/* ---- the daemon's store ---- */

static struct kv_view *store;
static const struct butler_config *store_config;
static pthread_mutex_t view_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

enum butler_status kv_setup(const struct butler_config *config)
{
    store_config = config;
    return kv_view_create((size_t)config->kv.max_namespaces,
                          (size_t)config->kv.max_keys_per_namespace, &store);
}

void kv_teardown(void)
{
    pthread_mutex_lock(&view_lock);
    kv_view_destroy(store);
    store = NULL;
    pthread_mutex_unlock(&view_lock);
}

/*
 * Network thread. A retained record from the broker (at subscribe time) or a
 * live write by any instance updates the view; an empty payload deletes.
 * Records whose topic and content disagree are ignored: the topic is what
 * a delete would address.
 */
void kv_on_message(const struct mqtt_message *message, void *context)
{
    (void)context;
    const char *ns, *key;
    size_t ns_length, key_length;
    char ns_name[KV_NAME_MAX + 1], key_name[KV_NAME_MAX + 1];
    if (store == NULL || !kv_topic_split(store_config->mqtt.topic_root, message->topic, &ns,
                                         &ns_length, &key, &key_length))
        return;
    snprintf(ns_name, sizeof ns_name, "%.*s", (int)ns_length, ns);
    snprintf(key_name, sizeof key_name, "%.*s", (int)key_length, key);
    if (message->payload_length == 0) {
        pthread_mutex_lock(&view_lock);
        kv_view_remove(store, ns_name, key_name);
        pthread_mutex_unlock(&view_lock);
        return;
    }
    struct kv_record record = {0};
    /* Bounded before parsing: a record can hold at most the value cap plus
     * its names and fixed fields. */
    const size_t record_max = (size_t)store_config->kv.max_value_bytes * 6 + 4 * KV_NAME_MAX + 512;
    if (message->payload_length > record_max ||
        kv_record_parse(message->payload, message->payload_length, &record) != BUTLER_OK ||
        strcmp(record.namespace_name, ns_name) != 0 || strcmp(record.key, key_name) != 0) {
        kv_record_clear(&record);
        metrics_count("butler_kv_ignored_total", "reason=\"unreadable\"",
                      "Messages on <root>/kv/# not taken into the key-value view");
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "ignoring an unreadable record on %s",
                        message->topic);
        return;
    }
    pthread_mutex_lock(&view_lock);
    enum butler_status status = kv_view_put(store, &record, clock_wall_ms());
    pthread_mutex_unlock(&view_lock);
    if (status != BUTLER_OK) {
        metrics_count("butler_kv_ignored_total", "reason=\"full\"",
                      "Messages on <root>/kv/# not taken into the key-value view");
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                        "key-value view full (kv.max_namespaces / max_keys_per_namespace): "
                        "not holding %s",
                        message->topic);
    }
    kv_record_clear(&record);
}

static void kv_topic(char *out, size_t out_size, const char *namespace_name, const char *key)
{
    snprintf(out, out_size, "%s/kv/%s/%s", store_config->mqtt.topic_root, namespace_name, key);
}

/* Publish retained and wait for the PUBACK (see kv_put for timeout_ms). */
static enum butler_status publish_retained(struct butler_runtime *runtime, const char *topic,
                                           const char *payload, uint32_t expiry_s, int timeout_ms)
{
    struct mqtt_publish_options options = {.qos = 1, .retain = true, .message_expiry_s = expiry_s};
    size_t length = payload ? strlen(payload) : 0;
    if (timeout_ms <= 0)
        return publish_reliably(topic, payload ? payload : "", length, &options);
    if (!mqtt_link_connected(runtime->link))
        return BUTLER_ERR_NOT_CONNECTED;
    return mqtt_link_publish_wait(runtime->link, topic, payload ? payload : "", length, &options,
                                  timeout_ms);
}

enum butler_status kv_put(struct butler_runtime *runtime, const char *namespace_name,
                          const char *key, const char *value, long long ttl_ms, int timeout_ms,
                          char *error, size_t error_size)
{
    enum butler_status status = BUTLER_ERR_INVALID;
    char *payload = NULL;
    char topic[TOPIC_MAX], oldest[KV_NAME_MAX + 1];
    bool locked = false;
    if (store == NULL) {
        snprintf(error, error_size, "the key-value store is not running");
        status = BUTLER_ERR_INTERNAL;
        goto out;
    }
    if (!kv_name_valid(namespace_name) || !kv_name_valid(key)) {
        snprintf(error, error_size,
                 "namespace and key must be 1..%d bytes of UTF-8 without / + or #", KV_NAME_MAX);
        goto out;
    }
    if (ttl_ms < 0 || ttl_ms > 4000000000000LL) {
        snprintf(error, error_size, "ttl must be a number of milliseconds >= 0");
        goto out;
    }
    if (strlen(value) > (size_t)store_config->kv.max_value_bytes) {
        snprintf(error, error_size, "the value is longer than kv.max_value_bytes (%d)",
                 store_config->kv.max_value_bytes);
        status = BUTLER_ERR_TOO_LARGE;
        goto out;
    }
    pthread_mutex_lock(&write_lock);
    locked = true;
    pthread_mutex_lock(&view_lock);
    bool namespace_exists = kv_view_namespace_exists(store, namespace_name);
    bool key_exists = kv_view_lookup(store, namespace_name, key, 0, NULL) == KV_FOUND;
    bool full_namespaces = !namespace_exists && store->count >= store->max_namespaces;
    bool evict = namespace_exists && !key_exists &&
                 kv_view_key_count(store, namespace_name) >= store->max_keys &&
                 kv_view_oldest(store, namespace_name, oldest, sizeof oldest);
    pthread_mutex_unlock(&view_lock);
    if (full_namespaces) {
        snprintf(error, error_size, "too many namespaces (kv.max_namespaces is %d)",
                 store_config->kv.max_namespaces);
        status = BUTLER_ERR_DENIED;
        goto out;
    }
    if (evict) {
        /* As the Node.js Butler's bounded store: the oldest entry makes room. */
        kv_topic(topic, sizeof topic, namespace_name, oldest);
        status = publish_retained(runtime, topic, NULL, 0, timeout_ms);
        if (status != BUTLER_OK)
            goto failed;
        pthread_mutex_lock(&view_lock);
        kv_view_remove(store, namespace_name, oldest);
        pthread_mutex_unlock(&view_lock);
        metrics_count("butler_kv_evicted_total", "",
                      "Keys evicted because their namespace was full");
        LOG_INFO(MODULE, "namespace \"%s\" is full (%d keys): evicted its oldest key \"%s\"",
                 namespace_name, store_config->kv.max_keys_per_namespace, oldest);
    }
    const uint64_t now = clock_wall_ms();
    status = kv_record_build(namespace_name, key, value, ttl_ms, now, &payload);
    if (status != BUTLER_OK)
        goto failed;
    kv_topic(topic, sizeof topic, namespace_name, key);
    /* The broker drops the retained copy itself at expiry (MQTT v5); rounded
     * up so it never disappears before expiresAt. */
    uint32_t expiry_s = ttl_ms > 0 ? (uint32_t)((ttl_ms + 999) / 1000) : 0;
    status = publish_retained(runtime, topic, payload, expiry_s, timeout_ms);
    if (status != BUTLER_OK)
        goto failed;
    struct kv_record record = {
        .namespace_name = (char *)namespace_name,
        .key = (char *)key,
        .value = (char *)value,
        .ttl_ms = ttl_ms > 0 ? ttl_ms : 0,
        .created_ms = now,
        .expires_ms = ttl_ms > 0 ? now + (uint64_t)ttl_ms : 0,
    };
    pthread_mutex_lock(&view_lock);
    if (kv_view_put(store, &record, now) != BUTLER_OK)
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "stored %s but the local view is full", topic);
    pthread_mutex_unlock(&view_lock);
    status = BUTLER_OK;
    goto out;
failed:
    snprintf(error, error_size, "the MQTT broker did not acknowledge the write (%s)",
             butler_status_str(status));
out:
    if (locked)
        pthread_mutex_unlock(&write_lock);
    free(payload);
    return status;
}

enum butler_status kv_delete(struct butler_runtime *runtime, const char *namespace_name,
                             const char *key, int timeout_ms)
{
    char topic[TOPIC_MAX];
    if (store == NULL || !kv_name_valid(namespace_name) || !kv_name_valid(key))
        return BUTLER_ERR_NOT_FOUND;
    pthread_mutex_lock(&write_lock);
    pthread_mutex_lock(&view_lock);
    enum kv_lookup found = kv_view_lookup(store, namespace_name, key, clock_wall_ms(), NULL);
    pthread_mutex_unlock(&view_lock);
    enum butler_status status = BUTLER_ERR_NOT_FOUND;
    if (found == KV_FOUND) {
        kv_topic(topic, sizeof topic, namespace_name, key);
        status = publish_retained(runtime, topic, NULL, 0, timeout_ms);
        if (status == BUTLER_OK) {
            pthread_mutex_lock(&view_lock);
            kv_view_remove(store, namespace_name, key);
            pthread_mutex_unlock(&view_lock);
        }
    }
    pthread_mutex_unlock(&write_lock);
    return status;
}

/* Every key of a namespace is deleted on the broker (one empty retained
 * message each), then the namespace leaves the view. */
enum butler_status kv_delete_namespace(struct butler_runtime *runtime, const char *namespace_name,
                                       int timeout_ms)
{
    enum butler_status status = BUTLER_ERR_NOT_FOUND;
    cJSON *keys = NULL;
    bool exists = false;
    char topic[TOPIC_MAX];
    if (store == NULL || !kv_name_valid(namespace_name))
        return status;
    pthread_mutex_lock(&write_lock);
    pthread_mutex_lock(&view_lock);
    keys = kv_view_keys(store, namespace_name, 0, &exists); /* 0: expired ones too */
    pthread_mutex_unlock(&view_lock);
    if (!exists)
        goto out;
    status = BUTLER_ERR_NOMEM;
    if (keys == NULL)
        goto out;
    const cJSON *item;
    status = BUTLER_OK;
    cJSON_ArrayForEach(item, keys)
    {
        const char *key = cJSON_GetObjectItemCaseSensitive(item, "key")->valuestring;
        kv_topic(topic, sizeof topic, namespace_name, key);
        status = publish_retained(runtime, topic, NULL, 0, timeout_ms);
        if (status != BUTLER_OK)
            goto out;
        pthread_mutex_lock(&view_lock);
        kv_view_remove(store, namespace_name, key);
        pthread_mutex_unlock(&view_lock);
    }
out:
    pthread_mutex_unlock(&write_lock);
    cJSON_Delete(keys);
    return status;
}

enum kv_lookup kv_lookup(const char *namespace_name, const char *key, struct kv_record *record)
{
    if (store == NULL)
        return KV_NO_NAMESPACE;
    pthread_mutex_lock(&view_lock);
    enum kv_lookup found = kv_view_lookup(store, namespace_name, key, clock_wall_ms(), record);
    pthread_mutex_unlock(&view_lock);
    return found;
}

cJSON *kv_namespaces(void)
{
    if (store == NULL)
        return cJSON_CreateArray();
    pthread_mutex_lock(&view_lock);
    cJSON *names = kv_view_namespaces(store);
    pthread_mutex_unlock(&view_lock);
    return names;
}

cJSON *kv_keys(const char *namespace_name, bool *exists)
{
    *exists = false;
    if (store == NULL)
        return NULL;
    pthread_mutex_lock(&view_lock);
    cJSON *keys = kv_view_keys(store, namespace_name, clock_wall_ms(), exists);
    pthread_mutex_unlock(&view_lock);
    return keys;
}

/*
 * Main thread. Publishes without waiting (the done callback is not needed:
 * a delete that does not get through is retried next tick, because the
 * broker still holds the record and delivers it again after a reconnect).
 */
void kv_housekeeping(struct butler_runtime *runtime)
{
    if (store == NULL)
        return;
    cJSON *taken = cJSON_CreateArray();
    if (taken == NULL)
        return;
    pthread_mutex_lock(&view_lock);
    size_t count = kv_view_take_expired(store, clock_wall_ms(), EXPIRED_PER_TICK_MAX, taken);
    pthread_mutex_unlock(&view_lock);
    /* MQTT v5 brokers drop expired retained messages themselves. */
    if (count > 0 && mqtt_link_protocol_version(runtime->link) == 4) {
        const cJSON *pair;
        cJSON_ArrayForEach(pair, taken)
        {
            const cJSON *ns = cJSON_GetArrayItem(pair, 0), *key = cJSON_GetArrayItem(pair, 1);
            if (!cJSON_IsString(ns) || !cJSON_IsString(key))
                continue;
            char topic[TOPIC_MAX];
            kv_topic(topic, sizeof topic, ns->valuestring, key->valuestring);
            struct mqtt_publish_options options = {.qos = 1, .retain = true};
            if (mqtt_link_publish(runtime->link, topic, "", 0, &options, NULL, NULL) != BUTLER_OK)
                LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                                "cannot delete expired %s now; it is retried after reconnect",
                                topic);
        }
    }
    if (count > 0)
        LOG_DEBUG(MODULE, "%zu expired key(s) removed", count);
    cJSON_Delete(taken);
}
