/*
 * The message a topic family's handler receives, and what a handler may do
 * with it (note progress, keep it in the spool, set its answer, free it).
 * A header of its own so that handlers need nothing from topics.c, which
 * dispatches to them (no include circle: topics.c -> handlers -> message.h).
 */
#ifndef BUTLER_TOPICS_MESSAGE_H
#define BUTLER_TOPICS_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/status.h"
#include "bridge/link/mqtt_link.h"

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
    /* The topic family that runs it (a name from the family table, static):
     * its DONE record carries it, so recovery gives the answer back to it. */
    const char *family;

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

/* A family's handler: runs on a worker thread and owns `message`. */
typedef void (*topic_family_run)(struct topic_worker *worker, struct topic_message *message);

/* Largest payload any consumer accepts; bigger messages are answered/dropped
 * with a counted error instead of being copied. */
enum { TOPIC_PAYLOAD_MAX = 1024 * 1024 };

/* A copy the caller owns (topic_message_free), or NULL when out of memory. */
struct topic_message *topic_message_copy(const struct mqtt_message *message);
/* Frees the message; a spooled message is marked finished first (with its
 * answer) unless topic_message_keep() was called. Any thread but the MQTT
 * network thread (marking done may compact the spool). */
void topic_message_free(struct topic_message *message);
/* Leave a spooled message unfinished so it is replayed after a restart. */
void topic_message_keep(struct topic_message *message);
/* Record a PROGRESS note for a spooled message (e.g. "started <taskId>");
 * no-op when the message is not spooled. */
enum butler_status topic_message_note(struct topic_message *message, const char *note);
/*
 * Record an attempt note before a call with an effect (contract section 7:
 * no such call before its note is recorded). While the spool refuses the
 * note (full disk, write error) the caller waits and the note is tried again,
 * with a counted, rate-limited warning. BUTLER_OK once recorded (or when the
 * message is not spooled); BUTLER_ERR_SHUTDOWN when Butler stops first (the
 * caller must then keep the message, not make the call); BUTLER_ERR_NOT_FOUND
 * or BUTLER_ERR_TOO_LARGE when it can never be recorded, and BUTLER_ERR_LIMIT
 * when the request already carries SPOOL_NOTES_MAX notes (the caller must not
 * make the call and fails it with topic_message_note_refusal()'s reason).
 * Worker threads only: it may wait.
 */
enum butler_status topic_message_note_attempt(struct topic_message *message, const char *note);
/* Static text saying why an attempt note refused with `status` stops the
 * call, for answers ("... could not be recorded in the spool" or the notes
 * limit). Never NULL, never freed. Any thread. */
const char *topic_message_note_refusal(enum butler_status status);
/*
 * After one or more attempt notes and before the call: with spool.fsync, flush
 * them. BUTLER_OK when flushed (at once without spool.fsync); BUTLER_ERR_SHUTDOWN
 * when Butler stops first; BUTLER_ERR_IO when the flush failed: the caller
 * must record its notes again and flush again, because after a failed flush
 * the kernel may have dropped them while a later flush reports success. This
 * call has then already waited *delay_ms (start it at 0; it doubles up to
 * 2 s). Worker threads only: it may wait.
 */
enum butler_status topic_message_flush_attempts(uint64_t *delay_ms);
/* Set the answer stored with the DONE record (copied). */
void topic_message_set_answer(struct topic_message *message, const char *answer);

/* A spool record in the format recovery decodes (family, topic, payload,
 * response topic, correlation data, receive time, packet id). NULL when out
 * of memory or the family name is over 255 bytes; the caller free()s it. */
unsigned char *topics_message_record(const char *family, const struct topic_message *message,
                                     size_t *length_out);

/* The same for modules that spool outside the consumed path (topics/events.c). */
unsigned char *topics_spool_record(const char *family, const char *topic, const void *payload,
                                   size_t payload_length, uint64_t received_wall_ms,
                                   size_t *length_out);

/* Inverse of topics_spool_record: a message (owned by the caller,
 * topic_message_free) and its family name, or NULL for a malformed record. */
struct topic_message *topics_spool_decode(const unsigned char *record, size_t length,
                                          char family[256]);

/* Count a consumed or rejected message for /metrics by family. */
void topics_count(const char *family, const char *outcome);

#endif
