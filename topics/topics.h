/*
 * Topic families: what Butler does with a message on each topic it consumes.
 * topics.c owns the table (topic filter -> family) and the hand-off from the
 * MQTT network thread to the worker pool; one file per family holds its
 * behaviour (task_start.c: start Qlik Sense tasks, ...).
 */
#ifndef BUTLER_TOPICS_H
#define BUTLER_TOPICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/link/mqtt_link.h"
#include "bridge/core/runtime.h"
#include "bridge/core/status.h"

struct qrs_client;
struct http_client;

/* A consumed message copied off the network thread. Owned by its job. */
struct topic_message {
    char *topic;
    unsigned char *payload; /* NUL-terminated for convenience; payload_length excludes it */
    size_t payload_length;
    char *response_topic; /* NULL when absent */
    unsigned char *correlation_data;
    size_t correlation_length;
    uint64_t received_wall_ms;
    uint16_t message_id; /* the broker's packet id; 0 = unknown (spooled by an older version) */

    /* Spool bookkeeping (contract section 7). A message recorded in the spool
     * is marked finished when it is freed, unless the handler called
     * topic_message_keep() (work cut short at shutdown: replay it on restart). */
    uint64_t spool_id; /* 0 = not spooled */
    bool replay;       /* recovered from the spool after a restart */
    bool keep_in_spool;
    char *answer; /* kept with the DONE record (e.g. the task result) */
    char **notes; /* PROGRESS notes recorded before a crash (replay only) */
    size_t note_count;
};

/* Per-worker-thread resources, created on the worker thread. */
struct topic_worker {
    int index;
    struct qrs_client *qrs;   /* NULL when qrs.url is empty */
    struct http_client *http; /* Slack, Teams, webhooks */
};

/* Largest payload any consumer accepts; bigger messages are answered/dropped
 * with a counted error instead of being copied. */
enum { TOPIC_PAYLOAD_MAX = 1024 * 1024 };

/* Register subscriptions and the message handler on rt->link. Start-up only. */
enum butler_status topics_setup(struct butler_runtime *runtime);

/* Before shutdown: unsubscribe the command topics so no new work arrives. */
void topics_stop_intake(struct butler_runtime *runtime);

/* Free what topics_setup allocated (after the link and pool are gone). */
void topics_teardown(void);

/* Worker pool callbacks (per-thread QRS and HTTP clients). */
void *topics_worker_init(int worker_index, void *context);
void topics_worker_cleanup(void *worker_state, void *context);

struct topic_message *topic_message_copy(const struct mqtt_message *message);
/* Frees the message; a spooled message is marked finished first (with its
 * answer) unless topic_message_keep() was called. Worker threads. */
void topic_message_free(struct topic_message *message);
/* Leave a spooled message unfinished so it is replayed after a restart. */
void topic_message_keep(struct topic_message *message);
/* Record a PROGRESS note for a spooled message (e.g. "started <taskId>");
 * no-op when the message is not spooled. */
enum butler_status topic_message_note(struct topic_message *message, const char *note);
/* Set the answer stored with the DONE record (copied). */
void topic_message_set_answer(struct topic_message *message, const char *answer);

/* A spool record in the format recovery decodes (family, topic, payload,
 * receive time), for modules that spool outside on_message (topics/events.c).
 * NULL when out of memory or the family name is over 255 bytes; free(). */
unsigned char *topics_spool_record(const char *family, const char *topic, const void *payload,
                                   size_t payload_length, uint64_t received_wall_ms,
                                   size_t *length_out);

/* Inverse of topics_spool_record: a message (owned by the caller,
 * topic_message_free) and its family name, or NULL for a malformed record. */
struct topic_message *topics_spool_decode(const unsigned char *record, size_t length,
                                          char family[256]);

/* Recovery: hand work found in the spool to the workers, and answers of
 * recently finished work to the families that de-duplicate. Start-up only,
 * after the worker pool exists. */
enum butler_status topics_recover(struct butler_runtime *runtime);
/* Queue the recovered work (from a short-lived thread). After the link starts. */
void topics_replay(struct butler_runtime *runtime);
/* Wait for the replay thread (it stops once the pool stops accepting). */
void topics_stop_replay(void);

/*
 * From a family's run function (worker thread): take up to `max` more
 * messages for the same run function that wait at the front of the worker
 * queue, in arrival order, so one worker can handle them together (task
 * starts share one QRS call). The caller owns each taken message exactly as
 * if it had been handed to `run`. Returns how many were stored in messages[].
 */
size_t topics_take_waiting(void (*run)(struct topic_worker *, struct topic_message *),
                           struct topic_message **messages, size_t max);

/* Put a message taken with topics_take_waiting back at the end of the queue,
 * for a worker that runs it on its own (never taken into a batch again).
 * BUTLER_OK: the queue owns it; otherwise the caller still does (queue full
 * or stopping). Never waits. */
enum butler_status topics_requeue(void (*run)(struct topic_worker *, struct topic_message *),
                                  struct topic_message *message);

/*
 * For families with long work on threads of their own (engine app operations,
 * file commands), so that it never holds up the shared workers: hand
 * `message` to `pool`. Waits while that queue is full (the message is in the
 * spool; the shared worker waits, as the network thread does for the shared
 * queue); when the pool is gone or Butler is stopping, the message stays in
 * the spool for the next start. Takes `message`. `queue_key` names the cap in
 * the log line. Worker thread.
 */
struct worker_pool;
void topics_hand_over(struct worker_pool *pool, void (*run)(void *worker_state, void *item),
                      struct topic_message *message, const char *queue_key);

/* Count a consumed or rejected message for /metrics by family. */
void topics_count(const char *family, const char *outcome);

#endif
