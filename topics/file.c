/*
 * File commands (see file.h): parse, check the paths against the approved
 * directories of file.*, run the operation through file_system.c, answer.
 */
#include "topics/file.h"
#include "topics/handoff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/core/runtime.h"
#include "bridge/core/worker_pool.h"
#include "topics/publish.h"
#include "topics/request_window.h"

#define MODULE "file"

/* PROGRESS note written once an operation succeeded: a replay answers it
 * without running it again (the crash came between the work and the answer). */
static const char done_note[] = "done";

/* PROGRESS note written before the operation (contract section 7: nothing
 * with an effect before its attempt is recorded), with what existed just
 * before: "attempt source=<0|1> target=<0|1>". A replay decides from its own
 * note, never from what others may have done to the same paths since. */
static const char attempt_format[] = "attempt source=%d target=%d";

/* The requestId window of file commands (task_start.dedup_ttl_s and
 * dedup_max_requests, the spool's retention of answers): a command
 * redelivered with the requestId of one that finished is answered again,
 * not run again. Created by file_setup, before recovery fills it. */
static struct request_window *file_requests;

bool file_wanted(const struct butler_config *config)
{
    return config->file.enable;
}

bool file_node_wanted(const struct butler_config *config)
{
    return config->file.enable && config->file.node[0] != '\0';
}

/* ---- approved directories ---- */

/* Gate 1 and normalization of one request path into `out`. */
static enum butler_status normalize_field(const char *field, const char *path, char *out,
                                          char *error, size_t error_size)
{
    char reason[FILE_ERROR_MAX];
    enum butler_status status = file_path_check(path, strlen(path), true, reason, sizeof reason);
    if (status != BUTLER_OK) {
        snprintf(error, error_size, "%s: %s", field, reason);
        return status;
    }
    status = file_path_normalize(path, out, FILE_PATH_MAX + 1);
    if (status == BUTLER_ERR_DENIED)
        snprintf(error, error_size, "%s: \"..\" leads above /", field);
    else if (status != BUTLER_OK)
        snprintf(error, error_size, "%s: the path is too long", field);
    return status;
}

/* Is normalized `path` beneath configured directory `root`? Fills root_out
 * (normalized) and *rest. */
static bool beneath_root(const char *root, const char *path, char *root_out, const char **rest)
{
    return file_path_normalize(root, root_out, FILE_PATH_MAX + 1) == BUTLER_OK &&
           file_path_beneath(root_out, path, rest);
}

/* The first approved pair with the source beneath `from` and the target
 * beneath `to`. */
static bool find_pair(const struct config_file_pair_list *pairs, struct file_places *places)
{
    for (size_t i = 0; i < pairs->count; i++)
        if (beneath_root(pairs->items[i].from, places->source_path, places->source_root,
                         &places->source.relative) &&
            beneath_root(pairs->items[i].to, places->target_path, places->target_root,
                         &places->target.relative))
            return true;
    return false;
}

static bool find_root(const struct config_string_list *roots, struct file_places *places)
{
    for (size_t i = 0; i < roots->count; i++)
        if (beneath_root(roots->items[i], places->source_path, places->source_root,
                         &places->source.relative))
            return true;
    return false;
}

enum butler_status file_request_places(const struct butler_config *config,
                                       const struct file_request *request,
                                       struct file_places *places, char *error, size_t error_size)
{
    enum butler_status status;
    memset(places, 0, sizeof *places);
    places->source.root = places->source_root;
    places->target.root = places->target_root;
    switch (request->operation) {
    case FILE_OPERATION_COPY:
    case FILE_OPERATION_MOVE: {
        bool copy = request->operation == FILE_OPERATION_COPY;
        status =
            normalize_field("fromFile", request->from_file, places->source_path, error, error_size);
        if (status == BUTLER_OK)
            status =
                normalize_field("toFile", request->to_file, places->target_path, error, error_size);
        if (status != BUTLER_OK)
            return status;
        if (!find_pair(copy ? &config->file.copy : &config->file.move, places)) {
            snprintf(error, error_size,
                     "fromFile and toFile are not beneath an approved pair of directories "
                     "(file.%s)",
                     copy ? "copy" : "move");
            return BUTLER_ERR_DENIED;
        }
        return BUTLER_OK;
    }
    case FILE_OPERATION_DELETE:
        status = normalize_field("deleteFile", request->delete_file, places->source_path, error,
                                 error_size);
        if (status != BUTLER_OK)
            return status;
        if (!find_root(&config->file.delete_roots, places)) {
            snprintf(error, error_size,
                     "deleteFile is not beneath an approved directory (file.delete)");
            return BUTLER_ERR_DENIED;
        }
        return BUTLER_OK;
    case FILE_OPERATION_MKDIR:
        break;
    }
    if (!request->qvd) {
        status = normalize_field("directory", request->directory, places->source_path, error,
                                 error_size);
        if (status != BUTLER_OK)
            return status;
        if (!find_root(&config->file.mkdir_roots, places)) {
            snprintf(error, error_size,
                     "directory is not beneath an approved directory (file.mkdir)");
            return BUTLER_ERR_DENIED;
        }
        return BUTLER_OK;
    }
    /* createdirqvd: directory is relative to file.qvd_path. */
    char reason[FILE_ERROR_MAX];
    status = file_path_check(request->directory, strlen(request->directory), false, reason,
                             sizeof reason);
    if (status != BUTLER_OK) {
        snprintf(error, error_size, "directory: %s", reason);
        return status;
    }
    if (config->file.qvd_path[0] == '\0') {
        snprintf(error, error_size, "file.qvd_path is not set on this Butler");
        return BUTLER_ERR_DENIED;
    }
    char joined[2 * (FILE_PATH_MAX + 1)];
    snprintf(joined, sizeof joined, "%s/%s", config->file.qvd_path, request->directory);
    status = normalize_field("directory", joined, places->source_path, error, error_size);
    if (status != BUTLER_OK)
        return status;
    if (!beneath_root(config->file.qvd_path, places->source_path, places->source_root,
                      &places->source.relative)) {
        snprintf(error, error_size, "directory leads out of file.qvd_path");
        return BUTLER_ERR_DENIED;
    }
    return BUTLER_OK;
}

/* ---- the worker ---- */

static const char *reason_of(enum butler_status status)
{
    switch (status) {
    case BUTLER_ERR_DENIED:
        return "denied";
    case BUTLER_ERR_NOT_FOUND:
        return "not_found";
    case BUTLER_ERR_INVALID:
    case BUTLER_ERR_TOO_LARGE:
        return "invalid";
    default:
        return "io";
    }
}

/* The result topic of file commands, into `topic`. */
static void result_topic(char *topic, size_t size)
{
    snprintf(topic, size, "%s/file/result", butler_runtime_current->config->mqtt.topic_root);
}

/* Answer `message` (taken) with `status`. `claimed`: its requestId holds a
 * place in the window, which now remembers the answer for repeats. */
static void answer(struct topic_message *message, const struct file_request *request,
                   enum butler_status status, const char *error, bool claimed)
{
    const char *operation = file_operation_name(request->operation);
    bool refused = status == BUTLER_ERR_DENIED || status == BUTLER_ERR_NOT_FOUND ||
                   status == BUTLER_ERR_INVALID || status == BUTLER_ERR_TOO_LARGE;
    const char *outcome = status == BUTLER_OK ? "done" : refused ? "refused" : "failed";
    cJSON *root = cJSON_CreateObject();
    if (root) {
        cJSON_AddStringToObject(root, "requestId", request->request_id);
        cJSON_AddStringToObject(root, "operation", operation);
        cJSON_AddStringToObject(root, "status", outcome);
        if (status != BUTLER_OK) {
            cJSON_AddStringToObject(root, "reason", reason_of(status));
            cJSON_AddStringToObject(root, "error", error);
        }
    }
    char *text = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    char labels[96];
    snprintf(labels, sizeof labels, "operation=\"%s\",status=\"%s\"", operation, outcome);
    metrics_count("butler_file_operations_total", labels,
                  "File commands answered, by operation and status");
    if (status == BUTLER_OK)
        LOG_INFO(MODULE, "%s %s done", operation, request->request_id);
    else
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "%s %s %s: %s", operation, request->request_id,
                        outcome, error);
    if (text == NULL) {
        LOG_ERROR(MODULE, "out of memory answering %s; kept for the next start",
                  request->request_id);
        topic_message_keep(message);
        topic_message_free(message);
        return;
    }
    char topic[512];
    result_topic(topic, sizeof topic);
    /* Kept with the DONE record (family "file"): recovery hands it back to
     * this window (file_recovered_answer). */
    topic_message_set_answer(message, text);
    if (claimed && file_requests &&
        request_window_answered(file_requests, request->request_id, message->spool_id, text))
        metrics_count("butler_file_dedup_evicted_total", "",
                      "Remembered file requestIds forgotten before task_start.dedup_ttl_s "
                      "because task_start.dedup_max_requests was reached");
    publish_answer(topic, message, text);
    free(text);
}

static bool noted_done(const struct topic_message *message)
{
    for (size_t i = 0; i < message->note_count; i++)
        if (strcmp(message->notes[i], done_note) == 0)
            return true;
    return false;
}

/* What existed before the operation: from the attempt note of a replay. */
struct file_attempt {
    bool noted;
    bool source; /* source (copy, move) or the path (delete, mkdir) existed */
    bool target; /* target (copy, move) existed */
};

static struct file_attempt noted_attempt(const struct topic_message *message)
{
    struct file_attempt attempt = {0};
    for (size_t i = 0; i < message->note_count; i++) {
        int source = 0, target = 0;
        if (sscanf(message->notes[i], attempt_format, &source, &target) == 2) {
            attempt = (struct file_attempt){true, source != 0, target != 0};
            break; /* the first attempt saw the state before any effect */
        }
    }
    return attempt;
}

/* Record the attempt with what exists now; waits while the spool refuses. */
static enum butler_status note_attempt(struct topic_message *message,
                                       const struct file_request *request,
                                       const struct file_places *places)
{
    bool two =
        request->operation == FILE_OPERATION_COPY || request->operation == FILE_OPERATION_MOVE;
    char note[64];
    snprintf(note, sizeof note, attempt_format, file_exists(&places->source) ? 1 : 0,
             two && file_exists(&places->target) ? 1 : 0);
    enum butler_status status;
    uint64_t delay_ms = 0;
    do { /* a failed flush may have lost the note: write it again */
        status = topic_message_note_attempt(message, note);
        if (status == BUTLER_OK)
            status = topic_message_flush_attempts(&delay_ms);
    } while (status == BUTLER_ERR_IO);
    return status;
}

/*
 * A replay whose attempt was noted but not its outcome: did the operation
 * take effect before the crash? Judged only from this request's own note and
 * the paths now (a move: the source was there and is gone, the target is
 * there; a copy: the target was not there and now is, complete, since copies
 * land by rename; a delete: the file was there and is gone).
 */
static bool took_effect(const struct file_request *request, const struct file_places *places,
                        const struct file_attempt *attempt)
{
    switch (request->operation) {
    case FILE_OPERATION_MOVE:
        return attempt->source && !file_exists(&places->source) && file_exists(&places->target);
    case FILE_OPERATION_COPY:
        return !attempt->target && file_exists(&places->target);
    case FILE_OPERATION_DELETE:
        return attempt->source && !file_exists(&places->source);
    case FILE_OPERATION_MKDIR:
        return false; /* making a directory again is harmless */
    }
    return false;
}

/* A token for temporary names that is the same for a request and its replay. */
static void temp_token(const char *request_id, char out[17])
{
    uint64_t hash = 1469598103934665603ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)request_id; *p; p++)
        hash = (hash ^ *p) * 1099511628211ull;
    snprintf(out, 17, "%016llx", (unsigned long long)hash);
}

static enum butler_status run_operation(const struct file_request *request,
                                        const struct file_places *places, bool replay, char *error,
                                        size_t error_size)
{
    /* Replay decisions were made by the caller from the attempt note: here
     * every operation runs as it would the first time. */
    char token[17];
    temp_token(request->request_id, token);
    const struct butler_config *config = butler_runtime_current->config;
    const struct file_copy_options options = {
        .overwrite = request->overwrite,
        .preserve_timestamp = request->preserve_timestamp,
        .temp_token = token,
        .max_entries = config->file.copy_max_entries,
        .max_bytes = config->file.copy_max_bytes,
        /* Each file of a directory copy lands whole: on a replay, one already there was
         * copied by the run that crashed. */
        .keep_existing = replay,
    };
    /* A crash may have left this request's temporary file (its token is
     * stable: see stable_request_id): the re-run uses a fresh name, so remove
     * the old one first. */
    if (replay &&
        (request->operation == FILE_OPERATION_COPY || request->operation == FILE_OPERATION_MOVE))
        file_remove_temporaries(&places->target, token);
    switch (request->operation) {
    case FILE_OPERATION_COPY:
        return file_copy(&places->source, &places->target, &options, error, error_size);
    case FILE_OPERATION_MOVE:
        return file_move(&places->source, &places->target, &options, error, error_size);
    case FILE_OPERATION_DELETE:
        return file_delete(&places->source, error, error_size);
    case FILE_OPERATION_MKDIR:
        return file_mkdir(&places->source, error, error_size);
    }
    return BUTLER_ERR_INTERNAL;
}

/* One file command end to end, on a file thread. Takes `item` (the message). */
static void run_file(void *worker_state, void *item)
{
    (void)worker_state;
    struct topic_message *message = item;
    const struct butler_config *config = butler_runtime_current->config;
    struct file_request request;
    struct file_places *places = calloc(1, sizeof *places); /* 16 KiB: not on the stack */
    char error[512] = "";
    enum butler_status status;
    enum file_operation operation = FILE_OPERATION_COPY;
    bool claimed = false;
    const char *last = strrchr(message->topic, '/');
    bool known = last && file_operation_from_name(last + 1, &operation);
    status = file_request_parse(operation, message->payload, message->payload_length, &request,
                                error, sizeof error);
    if (request.request_id_generated && message->spool_id != 0)
        /* Without a requestId the parser makes a new one each time; the id
         * (and the temporary file's token from it) must be the same for the
         * replay, which finds and removes the crashed copy's temporary file. */
        snprintf(request.request_id, sizeof request.request_id, "spool-%llu-%llu",
                 (unsigned long long)message->spool_id,
                 (unsigned long long)message->received_wall_ms);
    if (!known) {
        snprintf(error, sizeof error, "unknown file operation in topic %s", message->topic);
        status = BUTLER_ERR_INVALID;
    }
    if (status != BUTLER_OK) {
        metrics_count("butler_rejected_total", "family=\"file\",reason=\"payload\"",
                      "Messages rejected as malformed, by topic family and reason");
        goto answer;
    }
    if (!request.request_id_generated && file_requests) {
        char *earlier = NULL;
        if (request_window_repeat(file_requests, request.request_id, message, &earlier)) {
            metrics_count("butler_file_duplicates_total", "",
                          "File commands whose requestId was already seen");
            LOG_INFO(MODULE, "file request %s already seen; not running it again",
                     request.request_id);
            char topic[512];
            result_topic(topic, sizeof topic);
            if (earlier)
                publish_answer(topic, message, earlier);
            else /* the first copy still runs: its answer is on the way */
                topic_message_free(message);
            free(earlier);
            file_request_clear(&request);
            free(places);
            return;
        }
        claimed = true;
    }
    if (places == NULL) {
        snprintf(error, sizeof error, "out of memory");
        status = BUTLER_ERR_NOMEM;
        goto answer;
    }
    status = file_request_places(config, &request, places, error, sizeof error);
    if (status != BUTLER_OK)
        goto answer;
    struct file_attempt attempt =
        message->replay ? noted_attempt(message) : (struct file_attempt){0};
    if (message->replay &&
        (noted_done(message) || (attempt.noted && took_effect(&request, places, &attempt)))) {
        LOG_INFO(MODULE, "replay: %s %s was done before the restart (%s)",
                 file_operation_name(operation), request.request_id,
                 noted_done(message) ? "noted" : "attempt noted, the paths show it");
        if (request.operation == FILE_OPERATION_COPY || request.operation == FILE_OPERATION_MOVE) {
            char token[17];
            temp_token(request.request_id, token);
            file_remove_temporaries(&places->target, token);
        }
        goto answer;
    }
    status = note_attempt(message, &request, places);
    if (status == BUTLER_ERR_SHUTDOWN) {
        /* Stopping before the attempt was recorded: the next start runs it. */
        topic_message_keep(message);
        topic_message_free(message);
        file_request_clear(&request);
        free(places);
        return;
    }
    if (status != BUTLER_OK) {
        snprintf(error, sizeof error, "%s", topic_message_note_refusal(status));
        status = BUTLER_ERR_IO;
        goto answer;
    }
    status = run_operation(&request, places, message->replay, error, sizeof error);
    if (status == BUTLER_OK) /* lost (full disk): the replay judges from the attempt note */
        topic_message_note(message, done_note);
answer:
    answer(message, &request, status, error, claimed);
    file_request_clear(&request);
    free(places);
}

/* File commands run on threads of their own (file.workers): a copy of
 * gigabytes must not hold up task starts on the shared workers. */
static struct worker_pool *file_pool;

void file_run(struct topic_worker *worker, struct topic_message *message)
{
    (void)worker;
    topics_hand_over(file_pool, run_file, message, "file.queue_max");
}

enum butler_status file_setup(struct butler_runtime *runtime)
{
    const struct butler_config *config = runtime->config;
    if (!config->file.enable)
        return BUTLER_OK;
    enum butler_status status =
        request_window_create("file_requests", (size_t)config->task_start.dedup_max_requests,
                              config->task_start.dedup_ttl_s, &file_requests);
    if (status != BUTLER_OK)
        return status;
    struct worker_pool_callbacks callbacks = {0};
    return worker_pool_create(config->file.workers, (size_t)config->file.queue_max, &callbacks,
                              &file_pool);
}

void file_recovered(const struct topic_message *message)
{
    enum file_operation operation = FILE_OPERATION_COPY;
    const char *last = strrchr(message->topic, '/');
    struct file_request request;
    char error[256];
    if (file_requests == NULL || last == NULL || !file_operation_from_name(last + 1, &operation) ||
        file_request_parse(operation, message->payload, message->payload_length, &request, error,
                           sizeof error) != BUTLER_OK)
        return; /* answered "refused" when it runs: nothing to hold */
    if (!request.request_id_generated &&
        request_window_hold_replay(file_requests, request.request_id, message->spool_id))
        metrics_count("butler_file_replays_held_total", "",
                      "requestIds of replayed file commands held at recovery, so that no "
                      "other copy runs before the replay");
    file_request_clear(&request);
}

void file_recovered_answer(const char *answer, size_t length, uint64_t answered_wall_ms,
                           uint64_t spool_id)
{
    if (file_requests)
        request_window_recovered_answer(file_requests, answer, length, answered_wall_ms, spool_id);
}

void file_stop(int grace_ms)
{
    if (file_pool)
        worker_pool_stop(file_pool, grace_ms);
}

void file_teardown(void)
{
    worker_pool_destroy(file_pool);
    file_pool = NULL;
    request_window_destroy(file_requests);
    file_requests = NULL;
}
