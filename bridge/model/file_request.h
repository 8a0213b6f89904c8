/*
 * A file-operation request (contract 8.1): the schema both the MQTT command
 * topics <root>/file/copy|move|delete|mkdir (handled by topics/file.c) and
 * the HTTP API (bridge/ingress/http_file.c) turn a body into, with the
 * Node.js Butler's keys (fromFile, toFile, overwrite, preserveTimestamp,
 * deleteFile, directory) plus requestId, and for mkdir "qvd": true meaning
 * directory is relative to file.qvd_path. The HTTP API checks a body with
 * this parser before publishing it, so an HTTP caller gets a 400 for exactly
 * what the handler would refuse.
 *
 * Pure: no I/O, no globals; any thread.
 */
#ifndef BUTLER_MODEL_FILE_REQUEST_H
#define BUTLER_MODEL_FILE_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "bridge/core/status.h"
#include "bridge/model/task_request.h"

enum file_operation {
    FILE_OPERATION_COPY,
    FILE_OPERATION_MOVE,
    FILE_OPERATION_DELETE,
    FILE_OPERATION_MKDIR,
};

/* A parsed request; the strings are borrowed from `json`. */
struct file_request {
    enum file_operation operation;
    char request_id[TASK_REQUEST_ID_MAX + 1];
    bool request_id_generated; /* the payload had none: a new one on every parse */
    const char *from_file, *to_file, *delete_file, *directory;
    bool overwrite, preserve_timestamp, qvd;
    cJSON *json; /* owned; file_request_clear() */
};

/* Operation name ("copy", ...) of a topic's last level; false if none. */
bool file_operation_from_name(const char *name, enum file_operation *out);
/* "copy", "move", "delete" or "mkdir" (static storage). */
const char *file_operation_name(enum file_operation operation);

/* Parse a payload (at most TASK_MESSAGE_MAX bytes, the cap of every command
 * payload) for `operation`. On failure `error` says why and
 * request->request_id is still set (from the payload when readable). The
 * caller owns request->json either way: file_request_clear(). */
enum butler_status file_request_parse(enum file_operation operation, const unsigned char *payload,
                                      size_t length, struct file_request *request, char *error,
                                      size_t error_size);
void file_request_clear(struct file_request *request);

#endif
