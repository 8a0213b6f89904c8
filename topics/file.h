/*
 * File operations as commands (contract 8.1): <root>/file/copy, move, delete
 * and mkdir (and <root>/file/<file.node>/<op> when file.node is set), with
 * the Node.js Butler's body keys (fromFile, toFile, overwrite,
 * preserveTimestamp, deleteFile, directory) plus requestId, and for mkdir
 * "qvd": true meaning directory is relative to file.qvd_path (createdirqvd).
 *
 * Each request gets exactly one answer on <root>/file/result (and on the
 * MQTT v5 Response Topic with its Correlation Data):
 *   {"requestId", "operation", "status": "done"|"refused"|"failed",
 *    "reason"?: "invalid"|"denied"|"not_found"|"io", "error"?}
 * "denied" means outside the approved directories (HTTP 403); the other
 * refusals are the request's fault (HTTP 400); "failed" is the file system's.
 *
 * The request schema and its parser are bridge/model/file_request.h (shared
 * with the HTTP API). The work is done by bridge/clients/file_system.c
 * beneath the approved directory that file.* names for the operation. Replay after a crash: an
 * operation noted done is answered without running; a move whose source is
 * gone and whose target is present is done; a delete whose file is gone is
 * done; a copy removes its own stale temporary files and runs again.
 */
#ifndef BUTLER_TOPICS_FILE_H
#define BUTLER_TOPICS_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "bridge/clients/file_system.h"
#include "bridge/model/file_request.h"
#include "bridge/core/runtime.h"
#include "topics/task_start.h"
#include "topics/message.h"

/* Resolved places of a request under `config`'s approved directories. The
 * normalized paths live in the struct. */
struct file_places {
    char source_root[FILE_PATH_MAX + 1], source_path[FILE_PATH_MAX + 1];
    char target_root[FILE_PATH_MAX + 1], target_path[FILE_PATH_MAX + 1];
    struct file_place source, target; /* source only: delete, mkdir */
};

/* Gates 1 and 2 of file_system.h against the approved lists: BUTLER_OK,
 * BUTLER_ERR_INVALID (bad path text) or BUTLER_ERR_DENIED (outside the
 * approved directories), with `error` naming the field and the reason.
 * Pure (no file system access), any thread. */
enum butler_status file_request_places(const struct butler_config *config,
                                       const struct file_request *request,
                                       struct file_places *places, char *error, size_t error_size);

/* The worker entry point for every file command topic: hands the command to
 * the file threads (file.workers), so a long copy never holds up the shared
 * workers. Takes `message`. */
void file_run(struct topic_worker *worker, struct topic_message *message);

/* The file threads: created at start-up when file.enable is set; stopped
 * (commands still queued after `grace_ms` stay in the spool) before the
 * shared pool; freed at teardown. */
enum butler_status file_setup(struct butler_runtime *runtime);
void file_stop(int grace_ms);
void file_teardown(void);

/* Recovery (main thread, start-up, after file_setup): a spooled file command
 * to replay holds its requestId, so no other copy runs before it. */
void file_recovered(const struct topic_message *message);
/* Recovery: the answer (`length` bytes, not owned) of a finished file
 * command, from its DONE record, for the requestId window. */
void file_recovered_answer(const char *answer, size_t length, uint64_t answered_wall_ms,
                           uint64_t spool_id);

/* topics.c: which instances subscribe (file.enable; and file.node set). */
bool file_wanted(const struct butler_config *config);
bool file_node_wanted(const struct butler_config *config);

#endif
