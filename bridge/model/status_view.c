/* The status page's recent lists and client states; see status_view.h. */
#include "bridge/model/status_view.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bridge/core/clock.h"

enum ring_kind { RING_TASK_RESULTS, RING_FINISHED, RING_EVENTS, RING_DEAD_LETTERS, RING_COUNT };

static const char *const ring_names[RING_COUNT] = {"taskResults", "finished", "events",
                                                   "deadLetters"};

/* A ring of preformatted JSON entries: rendering is a copy, not a print. */
struct ring {
    char *entries[STATUS_VIEW_RING_MAX]; /* owned; NULL = empty slot */
    size_t lengths[STATUS_VIEW_RING_MAX];
    size_t next; /* slot the next entry goes to */
};

static struct {
    pthread_mutex_t lock;
    char root[256];
    size_t root_length;
    struct ring rings[RING_COUNT];
    char *license_server; /* owned, preformatted JSON or NULL */
    char *license_access;
    struct status_client_state clients[STATUS_CLIENT_COUNT];
} view = {.lock = PTHREAD_MUTEX_INITIALIZER};

void status_view_setup(const char *topic_root)
{
    pthread_mutex_lock(&view.lock);
    snprintf(view.root, sizeof view.root, "%s", topic_root ? topic_root : "");
    view.root_length = strlen(view.root);
    pthread_mutex_unlock(&view.lock);
}

static bool starts_with(const char *text, const char *prefix)
{
    return strncmp(text, prefix, strlen(prefix)) == 0;
}

/* The payload as JSON when it is JSON and small enough, else null. */
static cJSON *payload_json(const void *payload, size_t length)
{
    if (payload == NULL || length == 0 || length > STATUS_VIEW_PAYLOAD_MAX)
        return cJSON_CreateNull();
    const char *end = NULL;
    cJSON *parsed = cJSON_ParseWithLengthOpts(payload, length, &end, false);
    if (parsed == NULL || end != (const char *)payload + length) {
        cJSON_Delete(parsed);
        /* Text that is not JSON (a legacy payload) is kept as a string. */
        char *text = malloc(length + 1);
        if (text == NULL)
            return cJSON_CreateNull();
        memcpy(text, payload, length);
        text[length] = '\0';
        cJSON *string = strlen(text) == length ? cJSON_CreateString(text) : cJSON_CreateNull();
        free(text);
        return string;
    }
    return parsed;
}

/* {"at", "topic", "payload", "payloadBytes"} printed compactly; NULL on NOMEM. */
static char *entry_text(const char *topic, const void *payload, size_t length, size_t *out_length)
{
    char at[32];
    clock_format_iso8601(clock_wall_ms(), at, sizeof at);
    cJSON *entry = cJSON_CreateObject();
    char *text = NULL;
    if (entry == NULL || !cJSON_AddStringToObject(entry, "at", at) ||
        !cJSON_AddStringToObject(entry, "topic", topic) ||
        !cJSON_AddItemToObject(entry, "payload", payload_json(payload, length)) ||
        !cJSON_AddNumberToObject(entry, "payloadBytes", (double)length))
        goto out;
    text = cJSON_PrintUnformatted(entry);
    if (text)
        *out_length = strlen(text);
out:
    cJSON_Delete(entry);
    return text;
}

static void ring_push(struct ring *ring, char *text, size_t length)
{
    free(ring->entries[ring->next]);
    ring->entries[ring->next] = text;
    ring->lengths[ring->next] = length;
    ring->next = (ring->next + 1) % STATUS_VIEW_RING_MAX;
}

void status_view_note_publish(const char *topic, const void *payload, size_t length)
{
    if (topic == NULL)
        return;
    pthread_mutex_lock(&view.lock);
    size_t root_length = view.root_length;
    bool under_root =
        root_length > 0 && strncmp(topic, view.root, root_length) == 0 && topic[root_length] == '/';
    pthread_mutex_unlock(&view.lock);
    if (!under_root)
        return;
    const char *rest = topic + root_length + 1;
    int ring = -1;
    char **license = NULL;
    if (strcmp(rest, "task/result") == 0)
        ring = RING_TASK_RESULTS;
    else if (starts_with(rest, "task/finished/"))
        ring = RING_FINISHED;
    else if (starts_with(rest, "events/") && !starts_with(rest, "events/session/") &&
             !starts_with(rest, "events/connection/"))
        ring = RING_EVENTS; /* user activity is its own list (activeUsers) */
    else if (starts_with(rest, "deadletter/"))
        ring = RING_DEAD_LETTERS;
    else if (strcmp(rest, "sense/license/server") == 0)
        license = &view.license_server;
    else if (strcmp(rest, "sense/license/access") == 0)
        license = &view.license_access;
    else
        return;
    size_t text_length = 0;
    char *text = NULL;
    if (license) {
        cJSON *json = payload_json(payload, length);
        text = json ? cJSON_PrintUnformatted(json) : NULL;
        cJSON_Delete(json);
    } else {
        text = entry_text(topic, payload, length, &text_length);
    }
    if (text == NULL)
        return; /* out of memory: the page misses one entry, nothing else */
    pthread_mutex_lock(&view.lock);
    if (license) {
        free(*license);
        *license = text;
    } else {
        ring_push(&view.rings[ring], text, text_length);
    }
    pthread_mutex_unlock(&view.lock);
}

void status_view_note_client(enum status_client client, bool ok, const char *error)
{
    if ((unsigned)client >= STATUS_CLIENT_COUNT)
        return;
    uint64_t now = clock_wall_ms();
    pthread_mutex_lock(&view.lock);
    struct status_client_state *state = &view.clients[client];
    if (!state->known || state->ok != ok)
        state->since_ms = now;
    state->known = true;
    state->ok = ok;
    if (ok)
        state->last_ok_ms = now;
    if (error && error[0]) {
        snprintf(state->last_error, sizeof state->last_error, "%s", error);
        state->last_error_ms = now;
    }
    pthread_mutex_unlock(&view.lock);
}

void status_view_client(enum status_client client, struct status_client_state *out)
{
    memset(out, 0, sizeof *out);
    if ((unsigned)client >= STATUS_CLIENT_COUNT)
        return;
    pthread_mutex_lock(&view.lock);
    *out = view.clients[client];
    pthread_mutex_unlock(&view.lock);
}

/* Append to a buffer sized beforehand (no bounds to check: see callers). */
static char *put(char *at, const char *text, size_t length)
{
    memcpy(at, text, length);
    return at + length;
}

enum butler_status status_view_recent(char **json, size_t *length)
{
    *json = NULL;
    *length = 0;
    pthread_mutex_lock(&view.lock);
    /* {"name":[e,e],...}: names, brackets, commas, quotes and colons. */
    size_t size = 2;
    for (int r = 0; r < RING_COUNT; r++) {
        size += strlen(ring_names[r]) + 6;
        for (size_t i = 0; i < STATUS_VIEW_RING_MAX; i++)
            if (view.rings[r].entries[i])
                size += view.rings[r].lengths[i] + 1;
    }
    char *text = malloc(size + 1);
    if (text == NULL) {
        pthread_mutex_unlock(&view.lock);
        return BUTLER_ERR_NOMEM;
    }
    char *at = put(text, "{", 1);
    for (int r = 0; r < RING_COUNT; r++) {
        const struct ring *ring = &view.rings[r];
        if (r > 0)
            at = put(at, ",", 1);
        at = put(at, "\"", 1);
        at = put(at, ring_names[r], strlen(ring_names[r]));
        at = put(at, "\":[", 3);
        bool first = true;
        /* Newest first: walk back from the slot before `next`. */
        for (size_t k = 1; k <= STATUS_VIEW_RING_MAX; k++) {
            size_t i = (ring->next + STATUS_VIEW_RING_MAX - k) % STATUS_VIEW_RING_MAX;
            if (ring->entries[i] == NULL)
                break;
            if (!first)
                at = put(at, ",", 1);
            at = put(at, ring->entries[i], ring->lengths[i]);
            first = false;
        }
        at = put(at, "]", 1);
    }
    at = put(at, "}", 1);
    *at = '\0';
    pthread_mutex_unlock(&view.lock);
    *json = text;
    *length = (size_t)(at - text);
    return BUTLER_OK;
}

enum butler_status status_view_license(char **json, size_t *length)
{
    pthread_mutex_lock(&view.lock);
    const char *server = view.license_server ? view.license_server : "null";
    const char *access = view.license_access ? view.license_access : "null";
    size_t size = strlen(server) + strlen(access) + 32;
    char *text = malloc(size);
    if (text)
        snprintf(text, size, "{\"server\":%s,\"access\":%s}", server, access);
    pthread_mutex_unlock(&view.lock);
    *json = text;
    *length = text ? strlen(text) : 0;
    return text ? BUTLER_OK : BUTLER_ERR_NOMEM;
}

void status_view_reset(void)
{
    pthread_mutex_lock(&view.lock);
    for (int r = 0; r < RING_COUNT; r++) {
        for (size_t i = 0; i < STATUS_VIEW_RING_MAX; i++)
            free(view.rings[r].entries[i]);
        memset(&view.rings[r], 0, sizeof view.rings[r]);
    }
    free(view.license_server);
    free(view.license_access);
    view.license_server = view.license_access = NULL;
    memset(view.clients, 0, sizeof view.clients);
    pthread_mutex_unlock(&view.lock);
}
