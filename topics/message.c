/*
 * The consumed message handed to topic families: copying it off the network
 * thread, finishing it in the spool, and its spool record format.
 */
#include "topics/message.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/core/clock.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/core/runtime.h"
#include "bridge/store/spool.h"

#define MODULE "topics"

void topics_count(const char *family, const char *outcome)
{
    char labels[128];
    snprintf(labels, sizeof labels, "family=\"%s\",outcome=\"%s\"", family, outcome);
    metrics_count("butler_messages_in_total", labels,
                  "Messages consumed from the broker, by topic family and outcome");
}

struct topic_message *topic_message_copy(const struct mqtt_message *message)
{
    struct topic_message *copy = calloc(1, sizeof *copy);
    if (copy == NULL)
        return NULL;
    copy->topic = strdup(message->topic);
    copy->payload = malloc(message->payload_length + 1);
    if (message->response_topic)
        copy->response_topic = strdup(message->response_topic);
    if (message->correlation_length) {
        copy->correlation_data = malloc(message->correlation_length);
        if (copy->correlation_data)
            memcpy(copy->correlation_data, message->correlation_data, message->correlation_length);
        copy->correlation_length = message->correlation_length;
    }
    if (copy->topic == NULL || copy->payload == NULL ||
        (message->response_topic && copy->response_topic == NULL) ||
        (message->correlation_length && copy->correlation_data == NULL)) {
        topic_message_free(copy);
        return NULL;
    }
    if (message->payload_length)
        memcpy(copy->payload, message->payload, message->payload_length);
    copy->payload[message->payload_length] = '\0';
    copy->payload_length = message->payload_length;
    copy->received_wall_ms = clock_wall_ms();
    copy->message_id = message->message_id;
    return copy;
}

void topic_message_free(struct topic_message *message)
{
    if (message == NULL)
        return;
    struct spool *spool = butler_runtime_current ? butler_runtime_current->spool : NULL;
    if (message->spool_id && !message->keep_in_spool && spool) {
        const char *answer = message->answer ? message->answer : "";
        enum butler_status status =
            spool_done_kind(spool, message->spool_id, message->family, answer, strlen(answer));
        if (status != BUTLER_OK)
            LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "cannot mark spooled work %llu done: %s",
                            (unsigned long long)message->spool_id, butler_status_str(status));
    }
    free(message->topic);
    free(message->payload);
    free(message->response_topic);
    free(message->correlation_data);
    free(message->answer);
    for (size_t i = 0; i < message->note_count; i++)
        free(message->notes[i]);
    free(message->notes);
    free(message);
}

void topic_message_keep(struct topic_message *message)
{
    message->keep_in_spool = true;
}

enum butler_status topic_message_note(struct topic_message *message, const char *note)
{
    struct spool *spool = butler_runtime_current ? butler_runtime_current->spool : NULL;
    if (message->spool_id == 0 || spool == NULL)
        return BUTLER_OK;
    return spool_progress(spool, message->spool_id, note, strlen(note));
}

enum { ATTEMPT_RETRY_FIRST_MS = 50, ATTEMPT_RETRY_MAX_MS = 2000, ATTEMPT_SLICE_MS = 50 };

/* Wait `delay_ms` in short slices so shutdown is noticed; false when stopping. */
static bool wait_unless_stopping(uint64_t delay_ms)
{
    for (uint64_t waited = 0; waited < delay_ms; waited += ATTEMPT_SLICE_MS) {
        if (butler_runtime_stopping())
            return false;
        clock_sleep_ms(ATTEMPT_SLICE_MS);
    }
    return !butler_runtime_stopping();
}

/* Try `record` until it succeeds, can never succeed, or Butler stops. `what`
 * and `spool_id` are for the log only. */
static enum butler_status until_recorded(enum butler_status (*record)(void *), void *context,
                                         const char *what, uint64_t spool_id)
{
    uint64_t delay_ms = ATTEMPT_RETRY_FIRST_MS;
    bool waited = false;
    for (;;) {
        enum butler_status status = record(context);
        if (status == BUTLER_OK) {
            if (waited)
                LOG_INFO(MODULE, "%s for spooled work %llu recorded after waiting; going on", what,
                         (unsigned long long)spool_id);
            return BUTLER_OK;
        }
        if (status == BUTLER_ERR_NOT_FOUND || status == BUTLER_ERR_TOO_LARGE)
            return status;
        if (status == BUTLER_ERR_LIMIT) {
            /* This request's notes are at SPOOL_NOTES_MAX: nothing frees
             * room for it, so waiting would hold it until shutdown. */
            metrics_count("butler_attempt_notes_over_limit_total", "",
                          "Calls with an effect refused because their request already "
                          "carries the spool's maximum of notes");
            LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE,
                            "cannot record the %s for spooled work %llu: it carries the "
                            "maximum of %d notes; the call is refused",
                            what, (unsigned long long)spool_id, (int)SPOOL_NOTES_MAX);
            return status;
        }
        if (!waited)
            metrics_count("butler_attempt_note_waits_total", "",
                          "Calls with an effect that waited because the spool refused their "
                          "attempt note (full disk, write or flush error)");
        waited = true;
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                        "cannot record the %s for spooled work %llu (%s); the call waits until it "
                        "is recorded",
                        what, (unsigned long long)spool_id, butler_status_str(status));
        if (!wait_unless_stopping(delay_ms))
            return BUTLER_ERR_SHUTDOWN;
        delay_ms = delay_ms * 2 < ATTEMPT_RETRY_MAX_MS ? delay_ms * 2 : ATTEMPT_RETRY_MAX_MS;
    }
}

struct note_try {
    struct topic_message *message;
    const char *note;
};

static enum butler_status try_note(void *context)
{
    struct note_try *try = context;
    return topic_message_note(try->message, try->note);
}

enum butler_status topic_message_note_attempt(struct topic_message *message, const char *note)
{
    struct note_try try = {message, note};
    return until_recorded(try_note, &try, "attempt note", message->spool_id);
}

_Static_assert(SPOOL_NOTES_MAX == 4096, "topic_message_note_refusal names the limit");

const char *topic_message_note_refusal(enum butler_status status)
{
    if (status == BUTLER_ERR_LIMIT)
        return "the request reached the spool's limit of 4096 notes, so the attempt could not "
               "be recorded";
    return "the attempt could not be recorded in the spool";
}

enum butler_status topic_message_flush_attempts(uint64_t *delay_ms)
{
    struct spool *spool = butler_runtime_current ? butler_runtime_current->spool : NULL;
    if (spool == NULL)
        return BUTLER_OK;
    enum butler_status status = spool_flush(spool);
    if (status == BUTLER_OK)
        return BUTLER_OK;
    metrics_count("butler_attempt_note_waits_total", "",
                  "Calls with an effect that waited because the spool refused their "
                  "attempt note (full disk, write or flush error)");
    LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                    "cannot flush attempt notes (%s); the call waits, and its notes are "
                    "written again",
                    butler_status_str(status));
    *delay_ms = *delay_ms == 0                         ? ATTEMPT_RETRY_FIRST_MS
                : *delay_ms * 2 < ATTEMPT_RETRY_MAX_MS ? *delay_ms * 2
                                                       : ATTEMPT_RETRY_MAX_MS;
    return wait_unless_stopping(*delay_ms) ? BUTLER_ERR_IO : BUTLER_ERR_SHUTDOWN;
}

void topic_message_set_answer(struct topic_message *message, const char *answer)
{
    free(message->answer);
    message->answer = answer ? strdup(answer) : NULL;
}

/*
 * Spool record of a consumed message: the family name and the message, in a
 * length-prefixed binary form (payloads may be any bytes).
 *   u8 version(1) | u8 family length | family | u32 topic length | topic |
 *   u32 payload length | payload | u32 response length | response |
 *   u32 correlation length | correlation | u64 received_wall_ms
 */
static void put_u32(unsigned char **p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        *(*p)++ = (unsigned char)(v >> (8 * i));
}

static void put_bytes(unsigned char **p, const void *data, size_t length)
{
    put_u32(p, (uint32_t)length);
    if (length)
        memcpy(*p, data, length);
    *p += length;
}

unsigned char *topics_message_record(const char *family, const struct topic_message *message,
                                     size_t *length_out)
{
    size_t family_length = strlen(family);
    size_t topic_length = strlen(message->topic);
    size_t response_length = message->response_topic ? strlen(message->response_topic) : 0;
    size_t length = 2 + family_length + 4 + topic_length + 4 + message->payload_length + 4 +
                    response_length + 4 + message->correlation_length + 8 + 2;
    unsigned char *buffer = malloc(length);
    if (buffer == NULL || family_length > 255)
        goto fail;
    unsigned char *p = buffer;
    *p++ = 1;
    *p++ = (unsigned char)family_length;
    memcpy(p, family, family_length);
    p += family_length;
    put_bytes(&p, message->topic, topic_length);
    put_bytes(&p, message->payload, message->payload_length);
    put_bytes(&p, message->response_topic, response_length);
    put_bytes(&p, message->correlation_data, message->correlation_length);
    for (int i = 0; i < 8; i++)
        *p++ = (unsigned char)(message->received_wall_ms >> (8 * i));
    /* Added later, at the end: a record without it still decodes (id 0). */
    *p++ = (unsigned char)(message->message_id & 0xff);
    *p++ = (unsigned char)(message->message_id >> 8);
    *length_out = length;
    return buffer;
fail:
    free(buffer);
    return NULL;
}

struct reader {
    const unsigned char *p;
    size_t left;
    bool ok;
};

static const unsigned char *take(struct reader *r, size_t length)
{
    if (!r->ok || length > r->left) {
        r->ok = false;
        return NULL;
    }
    const unsigned char *at = r->p;
    r->p += length;
    r->left -= length;
    return at;
}

static uint32_t take_u32(struct reader *r)
{
    const unsigned char *at = take(r, 4);
    uint32_t v = 0;
    for (int i = 3; at && i >= 0; i--)
        v = (v << 8) | at[i];
    return v;
}

/* Copy `length` bytes out of the reader as a NUL-terminated string. */
static char *take_string(struct reader *r, size_t length)
{
    const unsigned char *at = take(r, length);
    if (at == NULL)
        return NULL;
    char *copy = malloc(length + 1);
    if (copy == NULL) {
        r->ok = false;
        return NULL;
    }
    memcpy(copy, at, length);
    copy[length] = '\0';
    return copy;
}

unsigned char *topics_spool_record(const char *family, const char *topic, const void *payload,
                                   size_t payload_length, uint64_t received_wall_ms,
                                   size_t *length_out)
{
    /* Only the fields topics_message_record reads; nothing is copied or freed. */
    struct topic_message message = {
        .topic = (char *)topic,
        .payload = (unsigned char *)payload,
        .payload_length = payload_length,
        .received_wall_ms = received_wall_ms,
    };
    return topics_message_record(family, &message, length_out);
}

/* Inverse of topics_message_record; NULL on a malformed record. */
struct topic_message *topics_spool_decode(const unsigned char *data, size_t length,
                                          char family[256])
{
    struct reader r = {data, length, true};
    const unsigned char *version = take(&r, 1);
    if (version == NULL || *version != 1)
        return NULL;
    const unsigned char *family_length = take(&r, 1);
    const unsigned char *family_bytes = family_length ? take(&r, *family_length) : NULL;
    if (family_bytes == NULL)
        return NULL;
    memcpy(family, family_bytes, *family_length);
    family[*family_length] = '\0';
    struct topic_message *message = calloc(1, sizeof *message);
    if (message == NULL)
        return NULL;
    message->topic = take_string(&r, take_u32(&r));
    uint32_t payload_length = take_u32(&r);
    message->payload = (unsigned char *)take_string(&r, payload_length);
    message->payload_length = payload_length;
    uint32_t response_length = take_u32(&r);
    char *response = take_string(&r, response_length);
    if (response && response_length)
        message->response_topic = response;
    else
        free(response);
    uint32_t correlation_length = take_u32(&r);
    if (correlation_length) {
        message->correlation_data = (unsigned char *)take_string(&r, correlation_length);
        message->correlation_length = correlation_length;
    }
    const unsigned char *wall = take(&r, 8);
    for (int i = 7; wall && i >= 0; i--)
        message->received_wall_ms = (message->received_wall_ms << 8) | wall[i];
    if (r.ok && r.left >= 2) {
        const unsigned char *id = take(&r, 2);
        message->message_id = (uint16_t)(id[0] | (id[1] << 8));
    }
    if (!r.ok || message->topic == NULL || message->payload == NULL) {
        topic_message_free(message);
        return NULL;
    }
    return message;
}