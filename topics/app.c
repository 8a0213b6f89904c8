/*
 * App reload, list and dump through the Sense engine (topics/app.h).
 *
 * A reload: OpenDoc, DoReloadEx with the mode and partial flag asked for,
 * GetProgress while it runs (the log tail for the event), DoSave when the
 * engine says it succeeded, then the answer, the event and the chained task
 * starts. Crash safety: the request is in the spool until answered; a PROGRESS
 * note "attempt <wall ms>" is recorded before DoReloadEx (the reload waits
 * while the spool refuses it) and "reloaded" once the engine finished
 * successfully. A replay decides from its own notes: "reloaded" -> not
 * reloaded again; an attempt without "reloaded" -> it asks the engine
 * (GetAppLayout's qLastReloadTime) whether the app was reloaded since that
 * attempt; no attempt -> the reload never began, so it runs (someone else's
 * reload of the same app since the request arrived never counts).
 */
#include "topics/app.h"
#include "topics/handoff.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/clients/engine.h"
#include "bridge/core/clock.h"
#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/core/worker_pool.h"
#include "bridge/store/expiring_map.h"
#include "topics/publish.h"
#include "topics/task_start.h"

#define MODULE "app"

enum {
    LOG_TAIL_MAX = 4096,     /* bytes of reload log kept for the event */
    PROGRESS_POLL_MS = 1000, /* GetProgress while a reload runs */
    DUMP_LIST_ITEMS_MAX = 10000,
    RELOAD_REQUESTS_MAX = 20000, /* requestIds remembered; the oldest go first */
    REMEMBERED_ANSWER_MAX = 4096,
    SUBMIT_SLICE_MS = 1000,
};

static struct engine_client *engine;
static struct worker_pool *app_pool;
/* Reload requestIds seen within task_start.dedup_ttl_s, with their answers
 * (or "" while running): a redelivered request is not reloaded again. */
static struct expiring_map *reload_requests;

static const char *const operation_names[] = {"reload", "list", "dump"};

/* ---- answering ---- */

/* Answer on <root>/app/result and the Response Topic; takes `message`. */
static void send_answer(struct topic_message *message, cJSON *answer)
{
    const struct butler_config *config = butler_runtime_current->config;
    char *text = cJSON_PrintUnformatted(answer);
    if (text && strlen(text) > TOPIC_PAYLOAD_MAX) {
        /* A dump too big to carry: say so instead of sending it. */
        free(text);
        cJSON_DeleteItemFromObjectCaseSensitive(answer, "dump");
        cJSON_ReplaceItemInObjectCaseSensitive(answer, "status", cJSON_CreateString("failed"));
        cJSON_DeleteItemFromObjectCaseSensitive(answer, "error");
        cJSON_AddStringToObject(answer, "error", "the app dump is larger than 1 MiB");
        text = cJSON_PrintUnformatted(answer);
    }
    if (text == NULL) {
        LOG_ERROR(MODULE, "out of memory answering %s; kept for the next start", message->topic);
        topic_message_keep(message);
        topic_message_free(message);
        return;
    }
    const char *op = json_string_member(answer, "op");
    const char *request_id = json_string_member(answer, "requestId");
    if (reload_requests && op && strcmp(op, "reload") == 0 && request_id)
        expiring_map_put(reload_requests, request_id,
                         strlen(text) <= REMEMBERED_ANSWER_MAX ? text : "",
                         (uint64_t)config->task_start.dedup_ttl_s * 1000u, NULL);
    char topic[512];
    snprintf(topic, sizeof topic, "%s/app/result", config->mqtt.topic_root);
    publish_answer(topic, message, text);
    free(text);
}

static cJSON *new_answer(const struct app_request *request)
{
    cJSON *answer = cJSON_CreateObject();
    cJSON_AddStringToObject(answer, "requestId", request->request_id);
    cJSON_AddStringToObject(answer, "op", operation_names[request->operation]);
    if (request->app_id[0])
        cJSON_AddStringToObject(answer, "appId", request->app_id);
    return answer;
}

static void set_outcome(cJSON *answer, const char *status, const char *error)
{
    cJSON_AddStringToObject(answer, "status", status);
    if (error && error[0])
        cJSON_AddStringToObject(answer, "error", error);
    char labels[64];
    snprintf(labels, sizeof labels, "status=\"%s\"", status);
    metrics_count("butler_app_requests_total", labels, "App requests answered, by status");
}

/* ---- engine helpers ---- */

/* OpenDoc on a session opened for the app: the document handle, or -1. */
static int open_doc(struct engine_session *session, const char *app_id, char *error,
                    size_t error_size, enum butler_status *status)
{
    cJSON *params = cJSON_CreateObject();
    cJSON *result = NULL;
    int handle = -1;
    cJSON_AddStringToObject(params, "qDocName", app_id);
    *status = engine_call(session, -1, "OpenDoc", params, 0, &result, error, error_size);
    const cJSON *value = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(result, "qReturn"), "qHandle");
    if (*status == BUTLER_OK && cJSON_IsNumber(value))
        handle = value->valueint;
    else if (*status == BUTLER_OK) {
        *status = BUTLER_ERR_REMOTE;
        snprintf(error, error_size, "OpenDoc answered without a document handle");
    }
    cJSON_Delete(params);
    cJSON_Delete(result);
    return handle;
}

/* Open a session for `app_id` (NULL: engineData) and, for an app, its doc. */
static enum butler_status open_app(const char *app_id, struct engine_session **session, int *doc,
                                   char *error, size_t error_size)
{
    *session = NULL;
    *doc = -1;
    enum butler_status status = engine_session_open(engine, app_id, session, error, error_size);
    if (status != BUTLER_OK || app_id == NULL)
        return status;
    *doc = open_doc(*session, app_id, error, error_size, &status);
    if (status != BUTLER_OK) {
        engine_session_close(*session);
        *session = NULL;
    }
    return status;
}

/* The member `name` of a call's result (detached; the caller frees). */
static cJSON *call_member(struct engine_session *session, int handle, const char *method,
                          cJSON *params, const char *name, enum butler_status *status, char *error,
                          size_t error_size)
{
    cJSON *result = NULL;
    *status = engine_call(session, handle, method, params, 0, &result, error, error_size);
    cJSON *member = result ? cJSON_DetachItemFromObjectCaseSensitive(result, name) : NULL;
    cJSON_Delete(result);
    if (*status == BUTLER_OK && member == NULL)
        member = cJSON_CreateNull();
    return member;
}

/* ---- list ---- */

static void run_list(struct topic_message *message, const struct app_request *request,
                     cJSON *answer)
{
    char error[ENGINE_ERROR_MAX] = "";
    struct engine_session *session = NULL;
    int doc;
    enum butler_status status = open_app(NULL, &session, &doc, error, sizeof error);
    cJSON *documents = NULL;
    if (status == BUTLER_OK)
        documents =
            call_member(session, -1, "GetDocList", NULL, "qDocList", &status, error, sizeof error);
    engine_session_close(session);
    if (status == BUTLER_ERR_SHUTDOWN) {
        topic_message_keep(message);
        topic_message_free(message);
        cJSON_Delete(documents);
        cJSON_Delete(answer);
        return;
    }
    if (status == BUTLER_OK) {
        cJSON *apps = cJSON_AddArrayToObject(answer, "apps");
        const cJSON *document;
        cJSON_ArrayForEach(document, documents)
        {
            const char *id = json_string_member(document, "qDocId");
            const char *name = json_string_member(document, "qDocName");
            if (id == NULL)
                continue;
            cJSON *entry = cJSON_CreateObject();
            cJSON_AddStringToObject(entry, "id", id);
            cJSON_AddStringToObject(entry, "name", name ? name : "");
            cJSON_AddItemToArray(apps, entry);
        }
        set_outcome(answer, "done", NULL);
    } else {
        set_outcome(answer, "failed", error);
    }
    LOG_INFO(MODULE, "app list %s: %s", request->request_id, status == BUTLER_OK ? "done" : error);
    cJSON_Delete(documents);
    send_answer(message, answer);
    cJSON_Delete(answer);
}

/* ---- dump ---- */

struct dump_list {
    const char *key;    /* in the dump and the session object */
    const char *def;    /* list definition */
    const char *type;   /* qType for object and bookmark lists */
    const char *list;   /* in the layout */
    const char *getter; /* per item: NULL = keep the list item as is */
    const char *reader; /* GetFullPropertyTree or GetProperties */
    const char *member; /* member of the reader's result */
};

static const struct dump_list dump_lists[] = {
    {"sheets", "qAppObjectListDef", "sheet", "qAppObjectList", "GetObject", "GetFullPropertyTree",
     "qPropEntry"},
    {"stories", "qAppObjectListDef", "story", "qAppObjectList", "GetObject", "GetFullPropertyTree",
     "qPropEntry"},
    {"masterobjects", "qAppObjectListDef", "masterobject", "qAppObjectList", "GetObject",
     "GetFullPropertyTree", "qPropEntry"},
    {"appprops", "qAppObjectListDef", "appprops", "qAppObjectList", "GetObject",
     "GetFullPropertyTree", "qPropEntry"},
    {"dimensions", "qDimensionListDef", "dimension", "qDimensionList", "GetDimension",
     "GetProperties", "qProp"},
    {"measures", "qMeasureListDef", "measure", "qMeasureList", "GetMeasure", "GetProperties",
     "qProp"},
    {"bookmarks", "qBookmarkListDef", "bookmark", "qBookmarkList", "GetBookmark", "GetProperties",
     "qProp"},
    {"snapshots", "qBookmarkListDef", "snapshot", "qBookmarkList", "GetBookmark", "GetProperties",
     "qProp"},
    {"variables", "qVariableListDef", "variable", "qVariableList", "GetVariableById",
     "GetProperties", "qProp"},
    {"fields", "qFieldListDef", NULL, "qFieldList", NULL, NULL, NULL},
    {"embeddedmedia", "qMediaListDef", NULL, "qMediaList", NULL, NULL, NULL},
};

enum { DUMP_LIST_COUNT = sizeof dump_lists / sizeof dump_lists[0] };

/* One session object holding every list definition the dump needs. */
static cJSON *dump_lists_properties(void)
{
    cJSON *params = cJSON_CreateObject();
    cJSON *prop = cJSON_AddObjectToObject(params, "qProp");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(prop, "qInfo"), "qType", "ButlerAppDump");
    for (size_t i = 0; i < DUMP_LIST_COUNT; i++) {
        cJSON *definition = cJSON_AddObjectToObject(
            cJSON_AddObjectToObject(prop, dump_lists[i].key), dump_lists[i].def);
        if (dump_lists[i].type)
            cJSON_AddStringToObject(definition, "qType", dump_lists[i].type);
        if (strcmp(dump_lists[i].def, "qAppObjectListDef") == 0)
            cJSON_AddObjectToObject(definition, "qData");
        if (strcmp(dump_lists[i].def, "qFieldListDef") == 0) {
            cJSON_AddBoolToObject(definition, "qShowSystem", false);
            cJSON_AddBoolToObject(definition, "qShowHidden", true);
            cJSON_AddBoolToObject(definition, "qShowSrcTables", true);
            cJSON_AddBoolToObject(definition, "qShowDerivedFields", true);
            cJSON_AddBoolToObject(definition, "qShowImplicit", true);
        }
    }
    return params;
}

/* Each item's full properties through its getter and reader. */
static cJSON *dump_items(struct engine_session *session, int doc, const struct dump_list *list,
                         const cJSON *items, enum butler_status *status, char *error,
                         size_t error_size)
{
    cJSON *out = cJSON_CreateArray();
    const cJSON *item;
    int count = 0;
    cJSON_ArrayForEach(item, items)
    {
        if (++count > DUMP_LIST_ITEMS_MAX)
            break;
        if (list->getter == NULL) {
            cJSON_AddItemToArray(out, cJSON_Duplicate(item, 1));
            continue;
        }
        const char *id = json_string_member(cJSON_GetObjectItemCaseSensitive(item, "qInfo"), "qId");
        if (id == NULL)
            continue;
        cJSON *params = cJSON_CreateObject();
        cJSON_AddStringToObject(params, "qId", id);
        cJSON *handle_object =
            call_member(session, doc, list->getter, params, "qReturn", status, error, error_size);
        cJSON_Delete(params);
        const cJSON *handle = cJSON_GetObjectItemCaseSensitive(handle_object, "qHandle");
        cJSON *properties = NULL;
        if (*status == BUTLER_OK && cJSON_IsNumber(handle))
            properties = call_member(session, handle->valueint, list->reader, NULL, list->member,
                                     status, error, error_size);
        cJSON_Delete(handle_object);
        if (*status != BUTLER_OK) {
            cJSON_Delete(properties);
            break;
        }
        if (properties)
            cJSON_AddItemToArray(out, properties);
    }
    return out;
}

/*
 * The dump's "lineage": Doc.GetLineage's qLineage, [{qDiscriminator, qStatement}] (the LOAD,
 * SELECT and STORE statements of the script and where their data comes from), as the Node.js
 * Butler's dump carries it. Optional there too: an engine that answers GetLineage with an
 * error (an older release, an app without data) leaves it out and the dump goes on; a dead
 * session fails the dump like every other call.
 */
static void dump_lineage(struct engine_session *session, int doc, cJSON *dump,
                         enum butler_status *status, char *error, size_t error_size)
{
    char call_error[ENGINE_ERROR_MAX] = "";
    enum butler_status call_status;
    cJSON *lineage = call_member(session, doc, "GetLineage", NULL, "qLineage", &call_status,
                                 call_error, sizeof call_error);
    if (call_status == BUTLER_OK && cJSON_IsArray(lineage)) {
        cJSON_AddItemToObject(dump, "lineage", lineage);
        return;
    }
    cJSON_Delete(lineage);
    if (call_status == BUTLER_OK || call_status == BUTLER_ERR_REMOTE) {
        LOG_INFO(MODULE, "app dump: no lineage (%s)",
                 call_status == BUTLER_OK ? "qLineage is not an array" : call_error);
        return;
    }
    *status = call_status;
    snprintf(error, error_size, "%s", call_error);
}

static cJSON *dump_app(struct engine_session *session, int doc, const char *app_id,
                       enum butler_status *status, char *error, size_t error_size)
{
    cJSON *dump = cJSON_CreateObject();
    cJSON_AddStringToObject(dump, "appId", app_id);
    cJSON *member =
        call_member(session, doc, "GetAppProperties", NULL, "qProp", status, error, error_size);
    cJSON_AddItemToObject(dump, "properties", member ? member : cJSON_CreateNull());
    if (*status == BUTLER_OK) {
        member = call_member(session, doc, "GetScript", NULL, "qScript", status, error, error_size);
        cJSON_AddItemToObject(dump, "loadScript", member ? member : cJSON_CreateNull());
    }
    if (*status == BUTLER_OK) {
        member = call_member(session, doc, "GetConnections", NULL, "qConnections", status, error,
                             error_size);
        cJSON_AddItemToObject(dump, "dataconnections", member ? member : cJSON_CreateNull());
    }
    if (*status == BUTLER_OK)
        dump_lineage(session, doc, dump, status, error, error_size);
    cJSON *lists = NULL;
    if (*status == BUTLER_OK) {
        cJSON *params = dump_lists_properties();
        cJSON *object = call_member(session, doc, "CreateSessionObject", params, "qReturn", status,
                                    error, error_size);
        cJSON_Delete(params);
        const cJSON *handle = cJSON_GetObjectItemCaseSensitive(object, "qHandle");
        if (*status == BUTLER_OK && cJSON_IsNumber(handle))
            lists = call_member(session, handle->valueint, "GetLayout", NULL, "qLayout", status,
                                error, error_size);
        cJSON_Delete(object);
    }
    for (size_t i = 0; i < DUMP_LIST_COUNT && *status == BUTLER_OK; i++) {
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(lists, dump_lists[i].key), dump_lists[i].list),
            "qItems");
        cJSON_AddItemToObject(
            dump, dump_lists[i].key,
            dump_items(session, doc, &dump_lists[i], items, status, error, error_size));
    }
    cJSON_Delete(lists);
    return dump;
}

static void run_dump(struct topic_message *message, const struct app_request *request,
                     cJSON *answer)
{
    char error[ENGINE_ERROR_MAX] = "";
    struct engine_session *session = NULL;
    int doc;
    cJSON *dump = NULL;
    enum butler_status status = open_app(request->app_id, &session, &doc, error, sizeof error);
    if (status == BUTLER_OK)
        dump = dump_app(session, doc, request->app_id, &status, error, sizeof error);
    engine_session_close(session);
    if (status == BUTLER_ERR_SHUTDOWN) {
        topic_message_keep(message);
        topic_message_free(message);
        cJSON_Delete(dump);
        cJSON_Delete(answer);
        return;
    }
    if (status == BUTLER_OK) {
        set_outcome(answer, "done", NULL);
        cJSON_AddItemToObject(answer, "dump", dump);
        dump = NULL;
    } else {
        set_outcome(answer, "failed", error);
    }
    LOG_INFO(MODULE, "app dump %s of %s: %s", request->request_id, request->app_id,
             status == BUTLER_OK ? "done" : error);
    cJSON_Delete(dump);
    send_answer(message, answer);
    cJSON_Delete(answer);
}

/* ---- reload ---- */

struct reload_log {
    char text[LOG_TAIL_MAX + 1]; /* the last LOG_TAIL_MAX bytes */
    size_t length;
    char first_error[ENGINE_ERROR_MAX];
};

static void log_append(struct reload_log *log, const char *text)
{
    size_t add = strlen(text);
    if (add == 0)
        return;
    if (add + 1 > LOG_TAIL_MAX) {
        text += add - (LOG_TAIL_MAX - 1);
        add = LOG_TAIL_MAX - 1;
    }
    size_t keep = log->length + add + 1 > LOG_TAIL_MAX ? LOG_TAIL_MAX - add - 1 : log->length;
    memmove(log->text, log->text + log->length - keep, keep);
    memcpy(log->text + keep, text, add);
    log->text[keep + add] = '\n';
    log->length = keep + add + 1;
    log->text[log->length] = '\0';
}

/* Fold one GetProgress answer into the log tail. */
static void take_progress(struct engine_session *session, int reload_call, struct reload_log *log)
{
    char error[ENGINE_ERROR_MAX];
    enum butler_status status;
    cJSON *params = cJSON_CreateObject();
    cJSON_AddNumberToObject(params, "qRequestId", reload_call);
    cJSON *progress = call_member(session, -1, "GetProgress", params, "qProgressData", &status,
                                  error, sizeof error);
    cJSON_Delete(params);
    const char *persistent = json_string_member(progress, "qPersistentProgress");
    if (persistent)
        log_append(log, persistent);
    const cJSON *entry;
    cJSON_ArrayForEach(entry, cJSON_GetObjectItemCaseSensitive(progress, "qErrorData"))
    {
        const char *text = json_string_member(entry, "qErrorString");
        if (text && text[0] && log->first_error[0] == '\0')
            snprintf(log->first_error, sizeof log->first_error, "%s", text);
    }
    cJSON_Delete(progress);
}

/* Run DoReloadEx, polling GetProgress. BUTLER_OK with *success set when the
 * engine answered; an error (with `error`) otherwise. */
static enum butler_status reload_in_engine(struct engine_session *session, int doc,
                                           const struct app_request *request, bool *success,
                                           struct reload_log *log, char *error, size_t error_size)
{
    const struct butler_config *config = butler_runtime_current->config;
    cJSON *params = cJSON_CreateObject();
    cJSON *qualifiers = cJSON_AddObjectToObject(params, "qParams");
    cJSON_AddNumberToObject(qualifiers, "qMode", request->reload_mode);
    cJSON_AddBoolToObject(qualifiers, "qPartial", request->partial_reload);
    cJSON_AddBoolToObject(qualifiers, "qDebug", false);
    int call_id = 0;
    enum butler_status status =
        engine_call_start(session, doc, "DoReloadEx", params, &call_id, error, error_size);
    cJSON_Delete(params);
    uint64_t started = clock_monotonic_ms();
    uint64_t limit_ms = (uint64_t)config->engine.reload_timeout_s * 1000u;
    cJSON *result = NULL;
    while (status == BUTLER_OK) {
        status = engine_call_wait(session, call_id, PROGRESS_POLL_MS, &result, error, error_size);
        if (status != BUTLER_ERR_TIMEOUT)
            break;
        if (limit_ms && clock_monotonic_ms() - started >= limit_ms) {
            char ignored[ENGINE_ERROR_MAX];
            cJSON_Delete(call_member(session, -1, "CancelReload", NULL, "qReturn", &status, ignored,
                                     sizeof ignored));
            snprintf(error, error_size,
                     "the reload ran longer than engine.reload_timeout_s (%d s) and was "
                     "cancelled",
                     config->engine.reload_timeout_s);
            status = BUTLER_ERR_TIMEOUT;
            break;
        }
        take_progress(session, call_id, log);
        status = BUTLER_OK;
    }
    if (status == BUTLER_OK) {
        take_progress(session, call_id, log);
        const cJSON *outcome = cJSON_GetObjectItemCaseSensitive(result, "qResult");
        const cJSON *flag = cJSON_GetObjectItemCaseSensitive(outcome, "qSuccess");
        *success = cJSON_IsTrue(flag);
        if (!*success)
            snprintf(error, error_size, "%s",
                     log->first_error[0] ? log->first_error
                                         : "the engine reported the reload as unsuccessful");
    }
    cJSON_Delete(result);
    return status;
}

static bool noted(const struct topic_message *message, const char *note)
{
    for (size_t i = 0; i < message->note_count; i++)
        if (strcmp(message->notes[i], note) == 0)
            return true;
    return false;
}

/* The wall time of this request's first reload attempt, 0 when none was noted. */
static uint64_t noted_attempt_ms(const struct topic_message *message)
{
    for (size_t i = 0; i < message->note_count; i++) {
        const char *note = message->notes[i];
        char *end = NULL;
        if (strncmp(note, "attempt ", 8) != 0)
            continue;
        unsigned long long ms = strtoull(note + 8, &end, 10);
        if (end != note + 8 && *end == '\0' && ms > 0)
            return (uint64_t)ms;
    }
    return 0;
}

/* Replay: did the engine reload the app after the request arrived? */
static bool reloaded_since(struct engine_session *session, int doc, uint64_t since_wall_ms,
                           char *when, size_t when_size)
{
    char error[ENGINE_ERROR_MAX];
    enum butler_status status;
    cJSON *layout =
        call_member(session, doc, "GetAppLayout", NULL, "qLayout", &status, error, sizeof error);
    const char *last = json_string_member(layout, "qLastReloadTime");
    uint64_t last_ms = 0;
    bool since = last && clock_parse_iso8601(last, &last_ms) && last_ms >= since_wall_ms;
    snprintf(when, when_size, "%s", last ? last : "");
    cJSON_Delete(layout);
    return since;
}

/* A requestId for a chained start, unique per request, list and index, so
 * task_start's de-duplication keeps a replayed chain from starting twice. */
static void chained_request_id(const char *request_id, const char *outcome, size_t index,
                               char out[TASK_REQUEST_ID_MAX + 1])
{
    uint64_t hash = 1469598103934665603ull; /* FNV-1a: short and stable */
    for (const unsigned char *c = (const unsigned char *)request_id; *c; c++)
        hash = (hash ^ *c) * 1099511628211ull;
    snprintf(out, TASK_REQUEST_ID_MAX + 1, "app-%016llx-%s-%zu", (unsigned long long)hash, outcome,
             index);
}

static void start_chained(const struct app_request *request, bool success)
{
    const struct butler_config *config = butler_runtime_current->config;
    char topic[512];
    snprintf(topic, sizeof topic, "%s/task/start", config->mqtt.topic_root);
    size_t count = success ? request->on_success_count : request->on_failure_count;
    for (size_t i = 0; i < count; i++) {
        const char *task_id = success ? request->on_success[i] : request->on_failure[i];
        char id[TASK_REQUEST_ID_MAX + 1];
        chained_request_id(request->request_id, success ? "ok" : "failed", i, id);
        char payload[256];
        snprintf(payload, sizeof payload, "{\"taskId\":\"%s\",\"requestId\":\"%s\"}", task_id, id);
        struct mqtt_publish_options options = {.qos = 1};
        enum butler_status status = publish_reliably(topic, payload, strlen(payload), &options);
        if (status != BUTLER_OK)
            LOG_WARN(MODULE, "chained start of task %s after app %s not published: %s", task_id,
                     request->app_id, butler_status_str(status));
    }
}

static void publish_event(const struct app_request *request, bool success, const char *error,
                          const struct reload_log *log, uint64_t started_wall_ms)
{
    const struct butler_config *config = butler_runtime_current->config;
    char topic[512], started[32], finished[32];
    snprintf(topic, sizeof topic, "%s/events/app/reload/%s/%s", config->mqtt.topic_root,
             success ? "success" : "failed", request->app_id);
    clock_format_iso8601(started_wall_ms, started, sizeof started);
    clock_format_iso8601(clock_wall_ms(), finished, sizeof finished);
    cJSON *event = cJSON_CreateObject();
    cJSON_AddStringToObject(event, "appId", request->app_id);
    cJSON_AddStringToObject(event, "requestId", request->request_id);
    cJSON_AddStringToObject(event, "outcome", success ? "success" : "failed");
    cJSON_AddNumberToObject(event, "reloadMode", request->reload_mode);
    cJSON_AddBoolToObject(event, "partialReload", request->partial_reload);
    if (!success)
        cJSON_AddStringToObject(event, "error", error);
    cJSON_AddStringToObject(event, "startedAt", started);
    cJSON_AddStringToObject(event, "finishedAt", finished);
    cJSON_AddStringToObject(event, "scriptLogTail", log->text);
    char *text = cJSON_PrintUnformatted(event);
    cJSON_Delete(event);
    if (text == NULL)
        return;
    struct mqtt_publish_options options = {.qos = 1, .content_type = "application/json"};
    if (publish_reliably(topic, text, strlen(text), &options) != BUTLER_OK)
        LOG_WARN(MODULE, "reload event for app %s not published", request->app_id);
    free(text);
}

static void run_reload(struct topic_message *message, const struct app_request *request,
                       cJSON *answer)
{
    char error[ENGINE_ERROR_MAX] = "";
    struct reload_log *log = calloc(1, sizeof *log);
    struct engine_session *session = NULL;
    int doc = -1;
    bool success = false;
    uint64_t started_wall_ms = clock_wall_ms();
    enum butler_status status = log ? BUTLER_OK : BUTLER_ERR_NOMEM;
    if (status == BUTLER_OK)
        status = open_app(request->app_id, &session, &doc, error, sizeof error);
    bool already = false;
    char when[64] = "";
    uint64_t attempt_ms = message->replay ? noted_attempt_ms(message) : 0;
    if (status == BUTLER_OK && message->replay &&
        (noted(message, "reloaded") ||
         (attempt_ms > 0 && reloaded_since(session, doc, attempt_ms, when, sizeof when)))) {
        /* Reloaded before the crash: save (harmless twice) rather than reload. */
        already = true;
        success = true;
        LOG_INFO(MODULE,
                 "replay: app %s was reloaded after request %s arrived (%s); not reloading "
                 "again",
                 request->app_id, request->request_id, when[0] ? when : "noted");
        log_append(log, "Butler: reloaded before a restart; not reloaded again");
    } else if (status == BUTLER_OK) {
        /* No reload before its attempt is recorded (contract section 7). */
        char note[48];
        snprintf(note, sizeof note, "attempt %llu", (unsigned long long)clock_wall_ms());
        uint64_t delay_ms = 0;
        do { /* a failed flush may have lost the note: write it again */
            status = topic_message_note_attempt(message, note);
            if (status == BUTLER_OK)
                status = topic_message_flush_attempts(&delay_ms);
        } while (status == BUTLER_ERR_IO);
        if (status == BUTLER_ERR_NOT_FOUND || status == BUTLER_ERR_TOO_LARGE ||
            status == BUTLER_ERR_LIMIT) {
            snprintf(error, sizeof error, "%s", topic_message_note_refusal(status));
            status = BUTLER_ERR_IO;
        }
        if (status == BUTLER_OK)
            status = reload_in_engine(session, doc, request, &success, log, error, sizeof error);
        if (status == BUTLER_OK && success) /* lost: the replay asks the engine */
            topic_message_note(message, "reloaded");
    }
    if (status == BUTLER_OK && success) {
        cJSON_Delete(
            call_member(session, doc, "DoSave", NULL, "qReturn", &status, error, sizeof error));
        if (status != BUTLER_OK) {
            char reason[ENGINE_ERROR_MAX];
            snprintf(reason, sizeof reason, "reloaded but not saved: %s", error);
            snprintf(error, sizeof error, "%s", reason);
            success = false;
        }
    }
    engine_session_close(session);
    if (status == BUTLER_ERR_SHUTDOWN) {
        /* Cut short at shutdown: replayed (and checked) at the next start. */
        topic_message_keep(message);
        topic_message_free(message);
        cJSON_Delete(answer);
        free(log);
        return;
    }
    if (status != BUTLER_OK)
        success = false;
    set_outcome(answer, success ? "done" : "failed", success ? NULL : error);
    if (already)
        cJSON_AddBoolToObject(answer, "reloadedBeforeRestart", true);
    LOG_INFO(MODULE, "app reload %s of %s: %s", request->request_id, request->app_id,
             success ? "done" : error);
    if (log)
        publish_event(request, success, error, log, started_wall_ms);
    start_chained(request, success);
    send_answer(message, answer);
    cJSON_Delete(answer);
    free(log);
}

/* ---- threads ---- */

/* False for a reload requestId seen within the window: the message is then
 * answered with the earlier answer, or (still running) left to the first
 * copy's answer. Takes `message` when it returns false. */
static bool first_time(struct topic_message *message, const struct app_request *request)
{
    const struct butler_config *config = butler_runtime_current->config;
    char *earlier = NULL;
    if (reload_requests == NULL ||
        expiring_map_insert_new(reload_requests, request->request_id, "",
                                (uint64_t)config->task_start.dedup_ttl_s * 1000u,
                                &earlier) != BUTLER_ERR_DENIED)
        return true;
    metrics_count("butler_app_reload_duplicates_total", "",
                  "App reload requests whose requestId was already seen");
    LOG_INFO(MODULE, "reload request %s already seen; not reloading app %s again",
             request->request_id, request->app_id);
    if (earlier && earlier[0]) {
        char topic[512];
        snprintf(topic, sizeof topic, "%s/app/result", config->mqtt.topic_root);
        publish_answer(topic, message, earlier);
    } else {
        topic_message_free(message);
    }
    free(earlier);
    return false;
}

static void run_app(void *worker_state, void *item)
{
    (void)worker_state;
    struct topic_message *message = item;
    const struct butler_config *config = butler_runtime_current->config;
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s/app/", config->mqtt.topic_root);
    const char *name =
        strncmp(message->topic, prefix, strlen(prefix)) == 0 ? message->topic + strlen(prefix) : "";
    enum app_operation operation = strcmp(name, "list") == 0   ? APP_OP_LIST
                                   : strcmp(name, "dump") == 0 ? APP_OP_DUMP
                                                               : APP_OP_RELOAD;
    char error[256];
    struct app_request *request = malloc(sizeof *request);
    if (request == NULL) {
        LOG_ERROR(MODULE, "out of memory; %s kept for the next start", message->topic);
        topic_message_keep(message);
        topic_message_free(message);
        return;
    }
    enum butler_status parsed = app_request_parse(
        operation, message->payload, message->payload_length, request, error, sizeof error);
    cJSON *answer = new_answer(request);
    if (parsed != BUTLER_OK || engine == NULL) {
        if (parsed != BUTLER_OK)
            metrics_count("butler_rejected_total", "family=\"app\",reason=\"payload\"",
                          "Messages rejected as malformed, by topic family and reason");
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "refused %s: %s", message->topic,
                        parsed != BUTLER_OK ? error : "engine.url is empty");
        set_outcome(answer, "refused",
                    parsed != BUTLER_OK ? error
                                        : "the engine is not configured (engine.url is empty)");
        send_answer(message, answer);
        cJSON_Delete(answer);
    } else if (operation == APP_OP_LIST) {
        run_list(message, request, answer);
    } else if (operation == APP_OP_DUMP) {
        run_dump(message, request, answer);
    } else if (!first_time(message, request)) {
        cJSON_Delete(answer);
    } else {
        run_reload(message, request, answer);
    }
    free(request);
}

void app_run(struct topic_worker *worker, struct topic_message *message)
{
    (void)worker;
    topics_hand_over(app_pool, run_app, message, "engine.queue_max");
}

enum butler_status app_setup(struct butler_runtime *runtime)
{
    const struct butler_config *config = runtime->config;
    if (config->engine.url[0]) {
        const char *verify = config->engine.verify_peer;
        struct engine_client_options options = {
            .url = config->engine.url,
            .cert_file =
                config->engine.cert_file[0] ? config->engine.cert_file : config->qrs.cert_file,
            .key_file = config->engine.key_file[0] ? config->engine.key_file : config->qrs.key_file,
            .ca_file = config->engine.ca_file[0] ? config->engine.ca_file : config->qrs.ca_file,
            .verify_peer = verify[0] ? strcmp(verify, "true") == 0 : config->qrs.verify_peer,
            .user_directory = config->engine.user_directory[0] ? config->engine.user_directory
                                                               : config->qrs.user_directory,
            .user_id = config->engine.user_id[0] ? config->engine.user_id : config->qrs.user_id,
            .timeout_ms = config->engine.timeout_ms,
            .max_sessions = config->engine.max_sessions,
            .max_message_bytes = (size_t)config->engine.max_message_bytes,
        };
        enum butler_status status = engine_client_create(&options, &engine);
        if (status != BUTLER_OK) {
            char masked[512];
            log_mask_url(config->engine.url, masked, sizeof masked);
            LOG_ERROR(MODULE, "cannot start the engine client for %s: %s", masked,
                      butler_status_str(status));
            return status;
        }
    }
    if (expiring_map_create_named("app_reload_requests", RELOAD_REQUESTS_MAX, &reload_requests) !=
        BUTLER_OK)
        return BUTLER_ERR_NOMEM;
    /* One thread per engine session: a thread never waits for a slot. */
    struct worker_pool_callbacks callbacks = {0};
    return worker_pool_create(config->engine.max_sessions, (size_t)config->engine.queue_max,
                              &callbacks, &app_pool);
}

void app_stop(int grace_ms)
{
    if (app_pool)
        worker_pool_drain(app_pool, grace_ms);
    engine_client_cancel(engine);
    if (app_pool)
        worker_pool_stop(app_pool, 0);
}

void app_teardown(void)
{
    worker_pool_destroy(app_pool);
    app_pool = NULL;
    engine_client_destroy(engine);
    engine = NULL;
    expiring_map_destroy(reload_requests);
    reload_requests = NULL;
}
