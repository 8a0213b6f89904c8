/*
 * Licence release runs (see license_release.h for the rules and the crash
 * protocol). Worker threads only; no state outlives a run except the spool
 * notes of its message.
 */
#include "topics/license_release.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge/clients/qrs.h"
#include "bridge/core/clock.h"
#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/core/runtime.h"
#include "bridge/store/spool.h"
#include "topics/publish.h"

#define MODULE "license"

enum {
    DAY_MS = 86400000,
    ID_TEXT_MAX = 64,
    PATH_TEXT_MAX = 256,
    REASON_TEXT_MAX = 512,
};

static const char *const release_types[] = {"professional", "analyzer"};

/* One run at a time in this process: a run replayed after a crash and the
 * first timer run must not both DELETE the same allocation. */
static pthread_mutex_t run_lock = PTHREAD_MUTEX_INITIALIZER;

/* ------------------------------------------------------------ never-release rules */

static bool same_text(const char *a, const char *b)
{
    return a && b && strcasecmp(a, b) == 0;
}

static bool flag_rule_keeps(enum config_user_flag_rule rule, const cJSON *user, const char *field)
{
    const bool set = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(user, field));
    return (rule == CONFIG_FLAG_YES && set) || (rule == CONFIG_FLAG_NO && !set);
}

bool license_release_keep_reason(const struct butler_config *config, const cJSON *user,
                                 char *reason, size_t reason_size)
{
    const struct config_never_release *never = &config->license.release.never_release;
    const char *directory = json_string_member(user, "userDirectory");
    const char *user_id = json_string_member(user, "userId");
    for (size_t i = 0; i < never->users.count; i++)
        if (same_text(never->users.items[i].user_directory, directory) &&
            same_text(never->users.items[i].user_id, user_id)) {
            snprintf(reason, reason_size, "never_release.users");
            return true;
        }
    for (size_t i = 0; i < never->user_directories.count; i++)
        if (same_text(never->user_directories.items[i], directory)) {
            snprintf(reason, reason_size, "never_release.user_directories: %s", directory);
            return true;
        }
    const cJSON *item = NULL;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(user, "tags"))
    {
        const char *tag = json_string_member(item, "name");
        for (size_t i = 0; tag && i < never->tags.count; i++)
            if (same_text(never->tags.items[i], tag)) {
                snprintf(reason, reason_size, "never_release.tags: %s", tag);
                return true;
            }
    }
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(user, "customProperties"))
    {
        const char *name =
            json_string_member(cJSON_GetObjectItemCaseSensitive(item, "definition"), "name");
        const char *value = json_string_member(item, "value");
        for (size_t i = 0; name && value && i < never->custom_properties.count; i++)
            if (same_text(never->custom_properties.items[i].name, name) &&
                same_text(never->custom_properties.items[i].value, value)) {
                snprintf(reason, reason_size, "never_release.custom_properties: %s=%s", name,
                         value);
                return true;
            }
    }
    static const struct {
        size_t offset;
        const char *field; /* in QRS's User */
        const char *name;  /* in the config */
    } flags[] = {
        {offsetof(struct config_never_release, inactive), "inactive", "inactive"},
        {offsetof(struct config_never_release, blocked), "blacklisted", "blocked"},
        {offsetof(struct config_never_release, removed_externally), "removedExternally",
         "removed_externally"},
    };
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        enum config_user_flag_rule rule;
        memcpy(&rule, (const char *)never + flags[i].offset, sizeof rule);
        if (flag_rule_keeps(rule, user, flags[i].field)) {
            snprintf(reason, reason_size, "never_release.%s: %s", flags[i].name,
                     rule == CONFIG_FLAG_YES ? "yes" : "no");
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------ one run */

struct release_run {
    struct topic_worker *worker;
    struct topic_message *message;
    const struct butler_config *config;
    bool dry_run;
    uint64_t now_ms;
    cJSON *released; /* summary arrays, owned by the run */
    cJSON *kept;
    char *error;
    size_t error_size;
    size_t notes_used; /* notes the run's spooled message carries: at most SPOOL_NOTES_MAX */
};

/* Notes one release needs: "attempt" before the DELETE, "reported" after the event. */
enum { NOTES_PER_RELEASE = 2 };

/* A GUID-shaped id (what goes into a QRS path); anything else is refused. */
static bool is_plain_id(const char *id)
{
    if (id == NULL || strlen(id) != 36)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F') ||
              *p == '-'))
            return false;
    return true;
}

/* Notes of the run's message ("<word> <rest>"): the rest of the first note
 * `word` with `id` as its first token, or NULL. */
static const char *find_note(const struct topic_message *message, const char *word, const char *id)
{
    size_t word_length = strlen(word), id_length = strlen(id);
    for (size_t i = 0; i < message->note_count; i++) {
        const char *note = message->notes[i];
        if (strncmp(note, word, word_length) == 0 && note[word_length] == ' ' &&
            strncasecmp(note + word_length + 1, id, id_length) == 0 &&
            (note[word_length + 1 + id_length] == ' ' || note[word_length + 1 + id_length] == '\0'))
            return note + word_length + 1;
    }
    return NULL;
}

static enum butler_status note(struct release_run *run, const char *word, const char *id,
                               const char *rest)
{
    char *text = NULL;
    size_t length = strlen(word) + strlen(id) + (rest ? strlen(rest) : 0) + 3;
    text = malloc(length);
    if (text == NULL)
        return BUTLER_ERR_NOMEM;
    snprintf(text, length, "%s %s%s%s", word, id, rest ? " " : "", rest ? rest : "");
    enum butler_status status = topic_message_note(run->message, text);
    free(text);
    if (status == BUTLER_OK)
        run->notes_used++;
    return status;
}

static cJSON *release_item(const char *type, const char *directory, const char *user_id,
                           const char *license_id, long days)
{
    cJSON *item = cJSON_CreateObject();
    if (item == NULL || !cJSON_AddStringToObject(item, "type", type) ||
        !cJSON_AddStringToObject(item, "userDirectory", directory ? directory : "") ||
        !cJSON_AddStringToObject(item, "userId", user_id ? user_id : "") ||
        !cJSON_AddStringToObject(item, "licenseId", license_id) ||
        !(days >= 0 ? cJSON_AddNumberToObject(item, "daysSinceLastUse", (double)days)
                    : cJSON_AddNullToObject(item, "daysSinceLastUse"))) {
        cJSON_Delete(item);
        return NULL;
    }
    return item;
}

static enum butler_status keep(struct release_run *run, const char *type, const char *directory,
                               const char *user_id, const char *reason)
{
    cJSON *item = cJSON_CreateObject();
    if (item == NULL || !cJSON_AddStringToObject(item, "type", type) ||
        !cJSON_AddStringToObject(item, "userDirectory", directory ? directory : "") ||
        !cJSON_AddStringToObject(item, "userId", user_id ? user_id : "") ||
        !cJSON_AddStringToObject(item, "reason", reason) ||
        !cJSON_AddItemToArray(run->kept, item)) {
        cJSON_Delete(item);
        return BUTLER_ERR_NOMEM;
    }
    return BUTLER_OK;
}

/*
 * Put a (would-be) release into the summary, then publish its event. The
 * summary entry stays whatever the event's fate: the release happened. Only
 * a failed event is returned (shutdown: the replay reports it again, as it
 * has no "reported" note).
 */
static enum butler_status report_release(struct release_run *run, const cJSON *item)
{
    const char *type = json_string_member(item, "type");
    char topic[512];
    snprintf(topic, sizeof topic, "%s/events/license/released/%s", run->config->mqtt.topic_root,
             type);
    cJSON *event = cJSON_Duplicate(item, true);
    cJSON *summary_item = cJSON_Duplicate(item, true);
    char *payload = NULL;
    enum butler_status status = BUTLER_ERR_NOMEM;
    if (event == NULL || summary_item == NULL || !cJSON_AddItemToArray(run->released, summary_item))
        goto out;
    summary_item = NULL;
    char labels[96];
    snprintf(labels, sizeof labels, "type=\"%s\",dry_run=\"%s\"", type,
             run->dry_run ? "true" : "false");
    metrics_count("butler_license_released_total", labels,
                  "Access allocations released (or, in a dry run, that would be)");
    cJSON_DeleteItemFromObjectCaseSensitive(event, "type");
    if (!cJSON_AddBoolToObject(event, "dryRun", run->dry_run) ||
        (payload = cJSON_PrintUnformatted(event)) == NULL)
        goto out;
    struct mqtt_publish_options options = {.qos = 1};
    status = publish_reliably(topic, payload, strlen(payload), &options);
out:
    cJSON_Delete(event);
    cJSON_Delete(summary_item);
    free(payload);
    return status;
}

/* After a release's event: note it, so a replay does not send it again. A
 * note that cannot be written costs at most a second event after a crash,
 * never the release's place in the summary: logged, not fatal. */
static void note_reported(struct release_run *run, const char *license_id)
{
    enum butler_status status = note(run, "reported", license_id, NULL);
    if (status != BUTLER_OK)
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                        "cannot note that the release of %s was reported (%s): a crash now "
                        "would report it again",
                        license_id, butler_status_str(status));
}

/* Report a release noted before a crash, unless its event already went out. */
static enum butler_status report_noted(struct release_run *run, const cJSON *item,
                                       const char *license_id)
{
    if (find_note(run->message, "reported", license_id)) {
        cJSON *copy = cJSON_Duplicate(item, true);
        if (copy == NULL || !cJSON_AddItemToArray(run->released, copy)) {
            cJSON_Delete(copy);
            return BUTLER_ERR_NOMEM;
        }
        return BUTLER_OK;
    }
    enum butler_status status = report_release(run, item);
    if (status == BUTLER_OK)
        note_reported(run, license_id);
    return status == BUTLER_ERR_SHUTDOWN ? status : BUTLER_OK;
}

/* True when a note before `index` is an attempt for `license_id`. */
static bool attempted_before(const struct topic_message *message, size_t index,
                             const char *license_id)
{
    size_t id_length = strlen(license_id);
    for (size_t i = 0; i < index; i++)
        if (strncmp(message->notes[i], "attempt ", 8) == 0 &&
            strncasecmp(message->notes[i] + 8, license_id, id_length) == 0 &&
            message->notes[i][8 + id_length] == ' ')
            return true;
    return false;
}

/*
 * Replay: settle every allocation noted as attempted before the crash. A
 * noted release, or an attempted allocation QRS no longer has, was released:
 * report it. One QRS still has was not: the normal pass decides again.
 */
static enum butler_status settle_attempts(struct release_run *run)
{
    for (size_t i = 0; i < run->message->note_count; i++) {
        const char *text = run->message->notes[i];
        if (strncmp(text, "attempt ", 8) != 0)
            continue;
        const char *space = strchr(text + 8, ' ');
        cJSON *item = space ? json_parse_exact(space + 1, strlen(space + 1), NULL) : NULL;
        const char *license_id = json_string_member(item, "licenseId");
        const char *type = json_string_member(item, "type");
        enum butler_status status = BUTLER_OK;
        if (!is_plain_id(license_id) || type == NULL) {
            LOG_WARN(MODULE, "replay: ignoring an unreadable attempt note");
        } else if (attempted_before(run->message, i, license_id)) {
            /* Attempted again after an earlier replay: settled with the first note. */
        } else if (find_note(run->message, "released", license_id) ||
                   find_note(run->message, "reported", license_id)) {
            status = report_noted(run, item, license_id);
        } else {
            char path[PATH_TEXT_MAX];
            snprintf(path, sizeof path, "license/%saccesstype/%s", type, license_id);
            cJSON *still = NULL;
            struct qrs_result result = {0};
            status = qrs_get(run->worker->qrs, path, NULL, &still, &result);
            cJSON_Delete(still);
            if (status == BUTLER_ERR_NOT_FOUND) {
                LOG_INFO(MODULE, "replay: %s allocation %s was released before the restart", type,
                         license_id);
                status = report_noted(run, item, license_id);
            } else if (status != BUTLER_OK) {
                snprintf(run->error, run->error_size, "replay: GET /qrs/%s: %s", path,
                         result.error[0] ? result.error : butler_status_str(status));
            }
        }
        cJSON_Delete(item);
        if (status != BUTLER_OK)
            return status;
    }
    return BUTLER_OK;
}

/* Release (or in a dry run, report) one allocation that passed every rule. */
static enum butler_status release_one(struct release_run *run, cJSON *item, const char *type,
                                      const char *license_id)
{
    const char *directory = json_string_member(item, "userDirectory");
    const char *user_id = json_string_member(item, "userId");
    if (run->dry_run) {
        enum butler_status status = report_release(run, item);
        return status == BUTLER_ERR_SHUTDOWN ? status : BUTLER_OK;
    }
    if (run->notes_used + NOTES_PER_RELEASE > SPOOL_NOTES_MAX)
        return keep(run, type, directory, user_id,
                    "deferred to the next run: one run notes at most this many releases");
    char *item_text = cJSON_PrintUnformatted(item);
    enum butler_status status =
        item_text ? note(run, "attempt", license_id, item_text) : BUTLER_ERR_NOMEM;
    free(item_text);
    if (status != BUTLER_OK) {
        /* Not noted: not released either, so a crash cannot hide a release. */
        char reason[REASON_TEXT_MAX];
        snprintf(reason, sizeof reason, "not released: cannot note the attempt (%s)",
                 butler_status_str(status));
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "%s allocation %s %s", type, license_id, reason);
        return keep(run, type, directory, user_id, reason);
    }
    char path[PATH_TEXT_MAX];
    snprintf(path, sizeof path, "license/%saccesstype/%s", type, license_id);
    struct qrs_result result = {0};
    status = qrs_delete(run->worker->qrs, "license.release", path, &result);
    if (status == BUTLER_ERR_NOT_FOUND && result.attempts > 1)
        status = BUTLER_OK; /* an earlier attempt went through before its answer was lost */
    if (status == BUTLER_ERR_NOT_FOUND)
        return keep(run, type, directory, user_id, "allocation already gone");
    if (status != BUTLER_OK) {
        char reason[REASON_TEXT_MAX];
        snprintf(reason, sizeof reason, "release failed: %s",
                 result.error[0] ? result.error : butler_status_str(status));
        LOG_ERROR(MODULE, "DELETE /qrs/%s: %s", path, reason);
        if (status == BUTLER_ERR_SHUTDOWN)
            return status;
        return keep(run, type, directory, user_id, reason);
    }
    LOG_INFO(MODULE, "released %s allocation %s of %s\\%s", type, license_id, directory, user_id);
    /* Released: from here on only shutdown ends the run early, so the
     * summary lists this release whatever else fails. */
    status = report_release(run, item);
    if (status == BUTLER_OK)
        note_reported(run, license_id);
    else if (status != BUTLER_ERR_SHUTDOWN)
        LOG_ERROR(MODULE, "the event for the release of %s was not published: %s", license_id,
                  butler_status_str(status));
    return status == BUTLER_ERR_SHUTDOWN ? status : BUTLER_OK;
}

static long days_since(const char *last_used, uint64_t now_ms)
{
    uint64_t at = 0;
    if (last_used == NULL || !clock_parse_iso8601(last_used, &at) || at > now_ms)
        return -1; /* QRS's "never" (1753-01-01) and anything unreadable */
    return (long)((now_ms - at) / DAY_MS);
}

/* Decide about one allocation of the candidate list. */
static enum butler_status consider(struct release_run *run, const char *type,
                                   const cJSON *allocation)
{
    const char *license_id = json_string_member(allocation, "id");
    const cJSON *user_ref = cJSON_GetObjectItemCaseSensitive(allocation, "user");
    const char *directory = json_string_member(user_ref, "userDirectory");
    const char *user_id = json_string_member(user_ref, "userId");
    const char *user_guid = json_string_member(user_ref, "id");
    if (!is_plain_id(license_id))
        return keep(run, type, directory, user_id, "allocation without a usable id");
    if (find_note(run->message, "released", license_id) ||
        find_note(run->message, "reported", license_id))
        return BUTLER_OK; /* settled by settle_attempts */
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(allocation, "quarantined")))
        return keep(run, type, directory, user_id, "quarantined");
    if (!is_plain_id(user_guid))
        return keep(run, type, directory, user_id, "allocation without a user");
    char path[PATH_TEXT_MAX];
    snprintf(path, sizeof path, "user/%s", user_guid);
    cJSON *user = NULL;
    struct qrs_result result = {0};
    enum butler_status status = qrs_get(run->worker->qrs, path, NULL, &user, &result);
    char reason[REASON_TEXT_MAX];
    bool kept = true;
    if (status == BUTLER_ERR_SHUTDOWN) {
        cJSON_Delete(user);
        return status;
    }
    if (status != BUTLER_OK)
        snprintf(reason, sizeof reason, "user lookup failed: %s",
                 result.error[0] ? result.error : butler_status_str(status));
    else
        kept = license_release_keep_reason(run->config, user, reason, sizeof reason);
    cJSON_Delete(user);
    if (kept)
        return keep(run, type, directory, user_id, reason);
    cJSON *item = release_item(type, directory, user_id, license_id,
                               days_since(json_string_member(allocation, "lastUsed"), run->now_ms));
    status = item ? release_one(run, item, type, license_id) : BUTLER_ERR_NOMEM;
    cJSON_Delete(item);
    return status;
}

static enum butler_status run_type(struct release_run *run, const char *type, int days)
{
    char cutoff[32], filter[64], path[PATH_TEXT_MAX];
    clock_format_iso8601(run->now_ms - (uint64_t)days * DAY_MS, cutoff, sizeof cutoff);
    snprintf(filter, sizeof filter, "lastUsed le '%s'", cutoff);
    snprintf(path, sizeof path, "license/%saccesstype/full", type);
    cJSON *allocations = NULL;
    struct qrs_result result = {0};
    enum butler_status status = qrs_get(run->worker->qrs, path, filter, &allocations, &result);
    if (status == BUTLER_OK && !cJSON_IsArray(allocations))
        status = BUTLER_ERR_REMOTE;
    if (status != BUTLER_OK) {
        snprintf(run->error, run->error_size, "GET /qrs/%s: %s", path,
                 result.error[0] ? result.error : butler_status_str(status));
        cJSON_Delete(allocations);
        return status;
    }
    const cJSON *allocation = NULL;
    cJSON_ArrayForEach(allocation, allocations)
    {
        status = consider(run, type, allocation);
        if (status != BUTLER_OK)
            break;
    }
    cJSON_Delete(allocations);
    return status;
}

static bool type_days(const struct butler_config *config, const char *type, int *days)
{
    *days = strcmp(type, "professional") == 0 ? config->license.release.professional_days
                                              : config->license.release.analyzer_days;
    return *days > 0;
}

enum butler_status license_release_run(struct topic_worker *worker, struct topic_message *message,
                                       char *error, size_t error_size)
{
    const struct butler_config *config = butler_runtime_current->config;
    struct release_run run = {
        .worker = worker,
        .message = message,
        .config = config,
        .dry_run = config->license.release.dry_run,
        .now_ms = clock_wall_ms(),
        .released = cJSON_CreateArray(),
        .kept = cJSON_CreateArray(),
        .error = error,
        .error_size = error_size,
        .notes_used = message->note_count,
    };
    cJSON *summary = NULL;
    char *text = NULL;
    cJSON *request =
        json_parse_exact((const char *)message->payload, message->payload_length, NULL);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(request, "dryRun")))
        run.dry_run = true;
    cJSON_Delete(request);
    enum butler_status status = BUTLER_ERR_NOMEM;
    pthread_mutex_lock(&run_lock);
    if (run.released == NULL || run.kept == NULL)
        goto out;
    status = message->replay ? settle_attempts(&run) : BUTLER_OK;
    for (size_t i = 0; status == BUTLER_OK && i < sizeof release_types / sizeof *release_types;
         i++) {
        int days = 0;
        if (type_days(config, release_types[i], &days))
            status = run_type(&run, release_types[i], days);
    }
    if (status != BUTLER_OK)
        goto out;
    char at[32];
    clock_format_iso8601(run.now_ms, at, sizeof at);
    summary = cJSON_CreateObject();
    if (summary == NULL || !cJSON_AddBoolToObject(summary, "dryRun", run.dry_run) ||
        !cJSON_AddStringToObject(summary, "at", at) ||
        !cJSON_AddItemReferenceToObject(summary, "released", run.released) ||
        !cJSON_AddItemReferenceToObject(summary, "kept", run.kept) ||
        (text = cJSON_PrintUnformatted(summary)) == NULL) {
        status = BUTLER_ERR_NOMEM;
        goto out;
    }
    char topic[512];
    snprintf(topic, sizeof topic, "%s/sense/license/release", config->mqtt.topic_root);
    struct mqtt_publish_options options = {.qos = 1, .retain = true};
    status = publish_reliably(topic, text, strlen(text), &options);
    if (status == BUTLER_OK) {
        /* No answer kept with the DONE record: the summary is retained at
         * the broker, which acknowledged it just now, and a run is never
         * repeated by requestId, so recovery would have nothing to do with
         * it. A run cut short before this point is replayed from its notes
         * and publishes its summary then. */
        LOG_INFO(MODULE, "licence release run%s: %d released, %d kept",
                 run.dry_run ? " (dry run)" : "", cJSON_GetArraySize(run.released),
                 cJSON_GetArraySize(run.kept));
    }
out:
    pthread_mutex_unlock(&run_lock);
    if (status != BUTLER_OK && !error[0])
        snprintf(error, error_size, "%s", butler_status_str(status));
    if (status == BUTLER_ERR_SHUTDOWN) {
        /* Cut short by shutdown: finish it after the restart, notes and all. */
        topic_message_keep(message);
    }
    cJSON_Delete(summary);
    cJSON_Delete(run.released);
    cJSON_Delete(run.kept);
    free(text);
    return status;
}
