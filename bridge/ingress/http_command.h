/*
 * Publish-and-wait for the HTTP endpoints that hand a command to a worker
 * over MQTT and answer with the worker's result: task start (http_api.c),
 * apps (http_app.c), files (http_file.c) and New Relic (http_newrelic.c).
 *
 * One sequence serves them all: take a long-wait slot if the wait may be
 * long, register the answer's waiter before publishing (a quick answer
 * cannot be missed), publish and wait for the broker's PUBACK, then wait for
 * the answer on the task-result waiter table.
 *
 * Threads: CivetWeb worker threads; the long-wait slot count is shared and
 * atomic.
 */
#ifndef BUTLER_HTTP_COMMAND_H
#define BUTLER_HTTP_COMMAND_H

#include <stdbool.h>
#include <stddef.h>

#include "bridge/ingress/http_server.h"

struct http_command {
    const char *topic_suffix; /* after "<root>/", e.g. "task/start" */
    const char *payload;      /* NUL-terminated; borrowed */
    const char *request_id;   /* the answer's key; NULL = publish only, wait for nothing */
    int publish_timeout_ms;   /* the broker's PUBACK must come within this */
    /* After the PUBACK, the answer must come within this; < 0: whatever is
     * left of publish_timeout_ms (one deadline for both). */
    int answer_timeout_ms;
    /* The wait may outlast http.task_start_timeout_ms (?wait=true reloads,
     * dumps): it takes one of http.long_waits_max slots, or is answered 503
     * before anything is published. */
    bool long_wait;
    const char *pending_metric; /* counted on HTTP_COMMAND_PENDING; NULL = none */
    const char *pending_help;
};

enum http_command_outcome {
    HTTP_COMMAND_FAILED,    /* answered here already (503, 400 or 500): send nothing more */
    HTTP_COMMAND_PUBLISHED, /* request_id was NULL: the broker holds the command */
    HTTP_COMMAND_PENDING,   /* the broker holds it; no answer came within the wait */
    HTTP_COMMAND_ANSWERED,  /* *answer holds the worker's answer */
};

/* Run `command` for `exchange`. On HTTP_COMMAND_ANSWERED *answer is the
 * answer text (NUL-terminated, *answer_length bytes), owned by the caller
 * (free()); otherwise *answer is NULL. */
enum http_command_outcome http_command_run(struct http_exchange *exchange,
                                           const struct http_command *command, char **answer,
                                           size_t *answer_length);

/* Publish `payload` on `topic` (QoS 1, or as given) and wait for the
 * broker's PUBACK within timeout_ms. Answers 503 (broker away or slow) or
 * 400 (the link refused topic or payload) itself and returns false. */
bool http_command_publish(struct http_exchange *exchange, const char *topic, const char *payload,
                          size_t length, int qos, bool retain, int timeout_ms);

/* Long waits in progress now (for /metrics and tests). */
int http_command_long_waits(void);

#endif
