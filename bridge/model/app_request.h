/*
 * An app request (contract 8.2): the schema both the MQTT command topics
 * <root>/app/reload|list|dump (handled by topics/app.c) and the HTTP API
 * (bridge/ingress/http_app.c) turn a body into. The HTTP API checks the
 * payload it builds with this parser before publishing it, so an HTTP caller
 * gets a 400 for exactly what the handler would refuse.
 *
 * Pure: no I/O, no globals; any thread.
 */
#ifndef BUTLER_MODEL_APP_REQUEST_H
#define BUTLER_MODEL_APP_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include "bridge/core/status.h"

enum {
    APP_REQUEST_ID_MAX = 64,
    APP_ID_MAX = 128,
    APP_CHAINED_TASKS_MAX = 64, /* per list (on success, on failure) */
};

enum app_operation { APP_OP_RELOAD, APP_OP_LIST, APP_OP_DUMP };

struct app_request {
    enum app_operation operation;
    char request_id[APP_REQUEST_ID_MAX + 1];
    char app_id[APP_ID_MAX + 1]; /* reload and dump */
    int reload_mode;             /* 0..2 as the engine's qMode */
    bool partial_reload;
    char on_success[APP_CHAINED_TASKS_MAX][37]; /* task GUIDs */
    size_t on_success_count;
    char on_failure[APP_CHAINED_TASKS_MAX][37];
    size_t on_failure_count;
};

/*
 * Parse a payload (at most TASK_MESSAGE_MAX bytes, the cap of every
 * command payload) for `operation`. On BUTLER_OK *request is filled (a
 * requestId is generated when absent). On BUTLER_ERR_INVALID / TOO_LARGE,
 * `error` says why and request->request_id is still set so the answer can
 * carry it. Pure: no I/O, any thread, nothing to free.
 */
enum butler_status app_request_parse(enum app_operation operation, const unsigned char *payload,
                                     size_t payload_length, struct app_request *request,
                                     char *error, size_t error_size);

#endif
