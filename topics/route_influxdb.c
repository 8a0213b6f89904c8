/*
 * InfluxDB routes; see route_influxdb.h for the guarantee. Worker threads add
 * points to the open batch under `influx.lock`; the writer thread closes
 * batches that are old enough, and writes waiting batches oldest first.
 */
#include "topics/route_influxdb.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/clients/influxdb.h"
#include "bridge/core/clock.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/store/spool.h"
#include "topics/publish.h"
#include "topics/route_influxdb_node.h"
#include "topics/template.h"

#define MODULE "influxdb"

enum {
    NAME_MAX_BYTES = 1024, /* rendered measurement, tag values */
    TOPIC_KEPT_MAX = 512,  /* of each point's topic, for its dead letter */
    BACKOFF_MIN_MS = 500,
    BACKOFF_MAX_MS = 30000,
    BACKOFF_TRIM_MS = 4000, /* from this backoff on, each failed write trims the heap */
    WAIT_SLICE_MS = 1000,
    ERROR_MAX = 512,
};

struct batch_ref {
    uint64_t id; /* spool record */
    uint64_t points;
};

static struct {
    struct butler_runtime *runtime;
    const struct butler_config *config;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* writer: a batch to close or write, or stop */
    pthread_cond_t room; /* workers: the open batch was closed */
    pthread_t thread;
    bool started, stop;
    bool thread_running; /* main thread only */
    /* The open batch: its lines, each point's topic ('\n' after each) and
     * the spool ids of the messages it holds. */
    char *lines;
    size_t lines_used, lines_capacity, points;
    char *topics;
    size_t topics_used, topics_capacity;
    uint64_t *message_ids;
    size_t message_count;
    uint64_t opened_ms;
    /* Batches in the spool, oldest first (a ring). */
    struct batch_ref *queue;
    size_t head, count, capacity;
    uint64_t waiting_points;
    atomic_uint_fast64_t sequence;
    struct metric *points_waiting;
} influx = {.lock = PTHREAD_MUTEX_INITIALIZER,
            .wake = PTHREAD_COND_INITIALIZER,
            .room = PTHREAD_COND_INITIALIZER};

static void count(const char *name, const char *outcome, uint64_t n, const char *help)
{
    char labels[64];
    snprintf(labels, sizeof labels, "outcome=\"%s\"", outcome);
    metrics_add(metrics_get(name, labels, METRIC_COUNTER, help), (int64_t)n);
}

static void count_points(const char *outcome, uint64_t n)
{
    count("butler_influxdb_points_total", outcome, n,
          "InfluxDB points by outcome (written, refused, invalid)");
}

static void count_writes(const char *outcome)
{
    count("butler_influxdb_writes_total", outcome, 1,
          "InfluxDB write requests by outcome (ok, retry, refused)");
}

/* Lock held. */
static void update_waiting(void)
{
    metrics_set(influx.points_waiting, (int64_t)(influx.waiting_points + influx.points));
}

/* ------------------------------------------------------------ the point */

int64_t route_influxdb_time_ns(const cJSON *event, uint64_t received_wall_ms, uint64_t sequence)
{
    static const char *const names[] = {"timestamp", "time", "logTimestamp", "receivedAt", "at"};
    uint64_t wall_ms = received_wall_ms;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(event, names[i]);
        uint64_t parsed;
        if (cJSON_IsString(item) && clock_parse_iso8601(item->valuestring, &parsed)) {
            wall_ms = parsed;
            break;
        }
    }
    /* Below the millisecond: a sequence number, so two messages of the same
     * millisecond and series stay two points. */
    return (int64_t)(wall_ms * 1000000u + sequence % 1000000u);
}

enum butler_status route_influxdb_point(const struct config_route *route,
                                        const struct config_header_list *static_tags,
                                        const cJSON *event, const char *payload,
                                        size_t payload_length, uint64_t received_wall_ms,
                                        uint64_t sequence, struct line_protocol *lp, char *error,
                                        size_t error_size)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    char *text = NULL;
    if (template_render(route->measurement, event, payload, payload_length, NAME_MAX_BYTES, &text,
                        NULL) != BUTLER_OK)
        goto out;
    status = lp_begin(lp, text);
    if (status != BUTLER_OK) {
        snprintf(error, error_size, "route %s: the measurement rendered empty", route->name);
        goto out;
    }
    for (size_t i = 0; i < route->tags.count; i++) {
        free(text);
        text = NULL;
        status = template_render(route->tags.items[i].value, event, payload, payload_length,
                                 NAME_MAX_BYTES, &text, NULL);
        if (status != BUTLER_OK)
            goto out;
        lp_tag(lp, route->tags.items[i].name, text);
    }
    for (size_t i = 0; static_tags && i < static_tags->count; i++)
        lp_tag(lp, static_tags->items[i].name, static_tags->items[i].value);
    for (size_t i = 0; i < route->fields.count; i++) {
        free(text);
        text = NULL;
        status = template_render(route->fields.items[i].value, event, payload, payload_length,
                                 LINE_PROTOCOL_STRING_MAX, &text, NULL);
        if (status != BUTLER_OK)
            goto out;
        lp_field_auto(lp, route->fields.items[i].name, text);
    }
    status = lp_end(lp, route_influxdb_time_ns(event, received_wall_ms, sequence));
    if (status == BUTLER_ERR_INVALID)
        snprintf(error, error_size, "route %s: no field rendered a value", route->name);
    else if (status != BUTLER_OK)
        snprintf(error, error_size, "route %s: point too large or out of memory", route->name);
out:
    free(text);
    return status;
}

/* ------------------------------------------------------ the open batch */

/* Lock held. Write the open batch to the spool as one record, queue it, and
 * finish the messages it holds. */
static enum butler_status close_batch(void)
{
    enum butler_status status = BUTLER_OK;
    unsigned char *record = NULL;
    size_t length = 0;
    if (influx.points == 0)
        return BUTLER_OK;
    struct spool *spool = influx.runtime->spool;
    if (influx.count == influx.capacity) {
        size_t grown = influx.capacity ? influx.capacity * 2 : 64;
        if (grown > INFLUXDB_QUEUE_MAX)
            grown = INFLUXDB_QUEUE_MAX;
        if (grown == influx.capacity)
            return BUTLER_ERR_FULL;
        struct batch_ref *bigger = malloc(grown * sizeof *bigger);
        if (bigger == NULL)
            return BUTLER_ERR_NOMEM;
        for (size_t i = 0; i < influx.count; i++)
            bigger[i] = influx.queue[(influx.head + i) % influx.capacity];
        free(influx.queue);
        influx.queue = bigger;
        influx.head = 0;
        influx.capacity = grown;
    }
    record = topics_spool_record(INFLUXDB_SPOOL_FAMILY, influx.topics ? influx.topics : "",
                                 influx.lines, influx.lines_used, clock_wall_ms(), &length);
    if (record == NULL)
        return BUTLER_ERR_NOMEM;
    uint64_t id = 0;
    status = spool ? spool_add(spool, record, length, &id) : BUTLER_ERR_INVALID;
    if (status != BUTLER_OK) {
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "cannot spool a batch of %zu point(s): %s",
                        influx.points, butler_status_str(status));
        goto out;
    }
    influx.queue[(influx.head + influx.count) % influx.capacity] =
        (struct batch_ref){id, influx.points};
    influx.count++;
    influx.waiting_points += influx.points;
    for (size_t i = 0; i < influx.message_count; i++)
        (void)spool_done(spool, influx.message_ids[i], NULL, 0);
    influx.lines_used = 0;
    influx.points = 0;
    influx.topics_used = 0;
    influx.message_count = 0;
    pthread_cond_broadcast(&influx.room);
    pthread_cond_signal(&influx.wake);
out:
    free(record);
    return status;
}

/* Lock held. Grow `*buffer` to hold `need` bytes (never past a batch's bytes). */
static bool ensure(char **buffer, size_t *capacity, size_t need)
{
    if (need <= *capacity)
        return true;
    size_t grown = *capacity ? *capacity : 4096;
    while (grown < need)
        grown *= 2;
    if (grown > INFLUXDB_BATCH_BYTES_MAX + 2)
        grown = INFLUXDB_BATCH_BYTES_MAX + 2;
    char *bigger = realloc(*buffer, grown);
    if (bigger == NULL)
        return false;
    *buffer = bigger;
    *capacity = grown;
    return true;
}

/* Lock held. Append one point (a complete line); false when the open batch
 * has no room for it (count, bytes or memory). */
static bool append_point(const char *line, size_t length, const char *topic, uint64_t message_id)
{
    size_t topic_length = strlen(topic);
    if (topic_length > TOPIC_KEPT_MAX)
        topic_length = TOPIC_KEPT_MAX;
    size_t max_points = (size_t)influx.config->influxdb.batch_max;
    if (influx.points >= max_points ||
        influx.lines_used + length + influx.topics_used + topic_length + 2 >
            INFLUXDB_BATCH_BYTES_MAX)
        return false;
    if (influx.message_ids == NULL) {
        influx.message_ids = malloc(max_points * sizeof *influx.message_ids);
        if (influx.message_ids == NULL)
            return false;
    }
    if (!ensure(&influx.topics, &influx.topics_capacity, influx.topics_used + topic_length + 2) ||
        !ensure(&influx.lines, &influx.lines_capacity, influx.lines_used + length + 1))
        return false;
    memcpy(influx.lines + influx.lines_used, line, length);
    influx.lines_used += length;
    influx.lines[influx.lines_used] = '\0';
    if (influx.points == 0)
        influx.opened_ms = clock_monotonic_ms();
    influx.points++;
    for (size_t i = 0; i < topic_length; i++)
        influx.topics[influx.topics_used++] = topic[i] == '\n' ? ' ' : topic[i];
    influx.topics[influx.topics_used++] = '\n';
    influx.topics[influx.topics_used] = '\0';
    if (message_id)
        influx.message_ids[influx.message_count++] = message_id;
    return true;
}

enum butler_status route_influxdb_add(const char *line, size_t length, const char *topic,
                                      uint64_t message_spool_id)
{
    enum butler_status status = BUTLER_OK;
    pthread_mutex_lock(&influx.lock);
    if (!influx.started) {
        status = BUTLER_ERR_INVALID;
        goto out;
    }
    while (!append_point(line, length, topic, message_spool_id)) {
        if (influx.points == 0) {
            status = BUTLER_ERR_TOO_LARGE; /* cannot fit even alone */
            goto out;
        }
        if (close_batch() == BUTLER_OK)
            continue;
        /* The spool is full: wait for the writer to make room (InfluxDB
         * back), like every other producer waits for the spool. */
        if (influx.stop || butler_runtime_stopping()) {
            status = BUTLER_ERR_SHUTDOWN;
            goto out;
        }
        struct timespec deadline;
        clock_deadline_after(CLOCK_REALTIME, WAIT_SLICE_MS, &deadline);
        pthread_cond_timedwait(&influx.room, &influx.lock, &deadline);
    }
    if (influx.points == 1)
        pthread_cond_signal(&influx.wake); /* start the flush clock */
    update_waiting();
out:
    pthread_mutex_unlock(&influx.lock);
    return status;
}

bool route_influxdb_take(const struct config_route *route, const struct topic_message *message,
                         const cJSON *event)
{
    char error[ERROR_MAX] = "";
    struct line_protocol lp;
    lp_init(&lp, INFLUXDB_BATCH_BYTES_MAX / 2);
    /* The spool id when there is one: a message replayed after a crash (its
     * batch spooled, its own DONE not yet) makes the very same point again,
     * which InfluxDB keeps once. */
    uint64_t sequence = message->spool_id ? message->spool_id : route_influxdb_next_sequence(1);
    enum butler_status status = route_influxdb_point(
        route, &influx.config->influxdb.tags, event, (const char *)message->payload,
        message->payload_length, message->received_wall_ms, sequence, &lp, error, sizeof error);
    bool kept = false;
    if (status == BUTLER_OK) {
        status = route_influxdb_add(lp.data, lp.used, message->topic, message->spool_id);
        if (status == BUTLER_OK) {
            kept = message->spool_id != 0;
        } else {
            snprintf(error, sizeof error, "route %s: point not queued: %s", route->name,
                     butler_status_str(status));
        }
    }
    if (status != BUTLER_OK) {
        count_points("invalid", 1);
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "%s", error);
        if (status != BUTLER_ERR_SHUTDOWN)
            publish_deadletter(INFLUXDB_SPOOL_FAMILY, message->topic, message->payload,
                               message->payload_length, error, 1, message->received_wall_ms);
        else
            kept = message->spool_id != 0; /* shutting down: replayed at the next start */
    }
    lp_free(&lp);
    return kept;
}

uint64_t route_influxdb_next_sequence(uint64_t n)
{
    return atomic_fetch_add(&influx.sequence, n);
}

/* ------------------------------------------------------------- writing */

/* The next line of `*p` (without its '\n'); false at the end. Lines of a
 * batch end with '\n' outside quotes; a quoted string may hold '\n'. */
static bool next_line(const char **p, const char *end, const char **line, size_t *length)
{
    const char *s = *p;
    if (s >= end)
        return false;
    bool quoted = false;
    const char *q = s;
    for (; q < end; q++) {
        if (*q == '\\' && q + 1 < end) {
            q++;
            continue;
        }
        if (*q == '"')
            quoted = !quoted;
        else if (*q == '\n' && !quoted)
            break;
    }
    *line = s;
    *length = (size_t)(q - s);
    *p = q < end ? q + 1 : end;
    return true;
}

size_t route_influxdb_line_length(const char *lines, size_t length)
{
    const char *p = lines, *line;
    size_t n;
    if (!next_line(&p, lines + length, &line, &n))
        return 0;
    return (size_t)(p - lines);
}

static void log_retry(const struct influxdb_result *result)
{
    LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "InfluxDB write failed, points wait: %s",
                    result->error);
}

/* Writer thread: keep points [first, n) of a batch as a new spool record
 * (*replacement; 0 when that fails: the whole batch is written again). */
static void keep_rest(const struct topic_message *batch, const size_t *offsets,
                      const size_t *topic_offsets, size_t first, size_t n, uint64_t *replacement)
{
    size_t record_length = 0;
    const char *lines = (const char *)batch->payload;
    unsigned char *record = topics_spool_record(
        INFLUXDB_SPOOL_FAMILY, batch->topic + topic_offsets[first], lines + offsets[first],
        offsets[n] - offsets[first], clock_wall_ms(), &record_length);
    if (record == NULL ||
        spool_add(influx.runtime->spool, record, record_length, replacement) != BUTLER_OK)
        *replacement = 0;
    free(record);
}

/*
 * Writer thread: InfluxDB refused the batch as a whole. Write it again in
 * halves, and halves of the halves that are refused, down to single points:
 * each point refused on its own goes to the dead letters with InfluxDB's
 * reason, the rest is written (writing a point twice is harmless). One bad
 * point among n costs about 2 log2(n) requests. If InfluxDB goes away
 * halfway, what is not yet written becomes *replacement. Returns BUTLER_OK
 * or BUTLER_ERR_RETRYABLE.
 */
static enum butler_status find_refused(struct influxdb_client *client,
                                       const struct topic_message *batch,
                                       const struct influxdb_result *refused, uint64_t *replacement)
{
    enum butler_status status = BUTLER_ERR_RETRYABLE;
    const char *lines = (const char *)batch->payload;
    const char *end = lines + batch->payload_length;
    size_t n = 0, *offsets = NULL, *topic_offsets = NULL;
    const char *p = lines, *line;
    size_t length;
    while (next_line(&p, end, &line, &length))
        n++;
    offsets = malloc((n + 1) * sizeof *offsets);
    topic_offsets = malloc((n + 1) * sizeof *topic_offsets);
    if (offsets == NULL || topic_offsets == NULL)
        goto out; /* try the whole batch again later */
    p = lines;
    const char *topics = batch->topic;
    for (size_t i = 0; i < n; i++) {
        offsets[i] = (size_t)(p - lines);
        topic_offsets[i] = (size_t)(topics - batch->topic);
        next_line(&p, end, &line, &length);
        const char *newline = strchr(topics, '\n');
        topics = newline ? newline + 1 : topics + strlen(topics);
    }
    offsets[n] = batch->payload_length;
    topic_offsets[n] = (size_t)(topics - batch->topic);
    /* Segments still to write, leftmost on top: everything left of the top
     * segment is done, so "the rest" is always [top.first, n). */
    struct {
        size_t first, last;
    } stack[2 * 64];
    size_t depth = 0;
    /* The whole batch first, known refused (the caller's write): its halves
     * go on the stack without writing it again. */
    if (n > 0) {
        stack[0].first = 0;
        stack[0].last = n;
        depth = 1;
    }
    bool whole = true;
    while (depth > 0) {
        depth--;
        size_t first = stack[depth].first, last = stack[depth].last;
        struct influxdb_result result = *refused;
        enum butler_status written = whole
                                         ? BUTLER_ERR_REMOTE
                                         : influxdb_write(client, lines + offsets[first],
                                                          offsets[last] - offsets[first], &result);
        whole = false;
        if (written == BUTLER_OK) {
            count_points("written", last - first);
            continue;
        }
        if (written != BUTLER_ERR_REMOTE) {
            log_retry(&result);
            keep_rest(batch, offsets, topic_offsets, first, n, replacement);
            goto out;
        }
        if (last - first > 1 && depth + 2 <= sizeof stack / sizeof stack[0]) {
            size_t middle = first + (last - first) / 2;
            stack[depth].first = middle; /* the right half after the left */
            stack[depth].last = last;
            stack[depth + 1].first = first;
            stack[depth + 1].last = middle;
            depth += 2;
            continue;
        }
        /* One point (or, past the stack, a run of them) refused on its own. */
        char topic[TOPIC_KEPT_MAX + 1];
        const char *topic_start = batch->topic + topic_offsets[first];
        const char *newline = strchr(topic_start, '\n');
        snprintf(topic, sizeof topic, "%.*s",
                 (int)(newline ? (size_t)(newline - topic_start) : strlen(topic_start)),
                 topic_start);
        size_t bytes = offsets[last] - offsets[first];
        if (bytes > 0 && lines[offsets[first] + bytes - 1] == '\n')
            bytes--;
        count_points("refused", last - first);
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "InfluxDB refused a point from %s: %s", topic,
                        result.error);
        publish_deadletter(INFLUXDB_SPOOL_FAMILY, topic,
                           (const unsigned char *)lines + offsets[first], bytes, result.error, 1,
                           clock_wall_ms());
    }
    status = BUTLER_OK;
out:
    free(offsets);
    free(topic_offsets);
    return status;
}

/*
 * Writer thread: write batch `id` whose lines and topics are in the spool.
 * BUTLER_OK: done with it (written, or refused points dead-lettered).
 * BUTLER_ERR_RETRYABLE: try again later; *replacement (when not 0) is a new
 * record holding only the points still to write.
 */
static enum butler_status write_batch(struct influxdb_client *client, uint64_t id, uint64_t points,
                                      uint64_t *replacement, uint64_t *retry_after_ms)
{
    enum butler_status status;
    unsigned char *record = NULL;
    size_t record_length = 0;
    struct topic_message *batch = NULL;
    struct influxdb_result result;
    char family[256];
    *replacement = 0;
    status = spool_read(influx.runtime->spool, id, &record, &record_length);
    if (status != BUTLER_OK)
        goto out; /* gone: nothing to write */
    batch = topics_spool_decode(record, record_length, family);
    if (batch == NULL) {
        LOG_ERROR(MODULE, "spooled batch %llu is malformed; dropped", (unsigned long long)id);
        status = BUTLER_OK;
        goto out;
    }
    const char *lines = (const char *)batch->payload;
    status = influxdb_write(client, lines, batch->payload_length, &result);
    if (status == BUTLER_OK) {
        count_writes("ok");
        count_points("written", points);
        goto out;
    }
    if (status != BUTLER_ERR_REMOTE) {
        count_writes("retry");
        log_retry(&result);
        *retry_after_ms = result.retry_after_s > 0 ? (uint64_t)result.retry_after_s * 1000u : 0;
        status = BUTLER_ERR_RETRYABLE;
        goto out;
    }
    /* Refused: find the points InfluxDB refuses on their own. */
    count_writes("refused");
    status = find_refused(client, batch, &result, replacement);
    goto out;
    status = BUTLER_OK;
out:
    if (batch)
        topic_message_free(batch); /* not spooled itself: marks nothing done */
    free(record);
    return status;
}

/* Writer thread: close the open batch when it is old enough, write waiting
 * batches oldest first, back off while InfluxDB is away. */
static void *writer_main(void *context)
{
    (void)context;
    const struct butler_config *config = influx.config;
    struct influxdb_options options = {
        .url = config->influxdb.url,
        .version = config->influxdb.version,
        .database = config->influxdb.database,
        .retention_policy = config->influxdb.retention_policy,
        .username = config->influxdb.username,
        .password = config->influxdb.password,
        .org = config->influxdb.org,
        .bucket = config->influxdb.bucket,
        .token = config->influxdb.token,
        .timeout_ms = config->influxdb.timeout_ms,
    };
    struct influxdb_client *client = NULL;
    if (influxdb_client_create(&options, &client) != BUTLER_OK) {
        LOG_ERROR(MODULE, "cannot create the InfluxDB client; points stay in the spool");
        return NULL;
    }
    uint64_t backoff_ms = 0, retry_at_ms = 0, memory_at_ms = clock_monotonic_ms();
    pthread_mutex_lock(&influx.lock);
    while (!influx.stop) {
        uint64_t now = clock_monotonic_ms();
        if (config->influxdb.node_measurements && now >= memory_at_ms) {
            memory_at_ms = now + (uint64_t)config->influxdb.butler_interval_s * 1000u;
            pthread_mutex_unlock(&influx.lock);
            route_influxdb_node_memory_now(config);
            pthread_mutex_lock(&influx.lock);
            continue;
        }
        if (influx.points > 0 && now - influx.opened_ms >= (uint64_t)config->influxdb.flush_ms)
            (void)close_batch();
        if (influx.count > 0 && now >= retry_at_ms) {
            struct batch_ref batch = influx.queue[influx.head];
            pthread_mutex_unlock(&influx.lock);
            uint64_t replacement = 0, retry_after_ms = 0;
            enum butler_status status =
                write_batch(client, batch.id, batch.points, &replacement, &retry_after_ms);
            if (status == BUTLER_OK || replacement)
                (void)spool_done(influx.runtime->spool, batch.id, NULL, 0);
            pthread_mutex_lock(&influx.lock);
            if (status == BUTLER_OK) {
                influx.head = (influx.head + 1) % influx.capacity;
                influx.count--;
                influx.waiting_points -= batch.points;
                backoff_ms = 0;
                retry_at_ms = 0;
                pthread_cond_broadcast(&influx.room);
            } else {
                if (replacement)
                    influx.queue[influx.head].id = replacement;
                /* InfluxDB is away and points keep coming through the workers:
                 * give what they freed back to the system now, so waiting
                 * points cost disk (the spool), not memory. */
                if (backoff_ms == 0 || backoff_ms >= BACKOFF_TRIM_MS)
                    malloc_trim(0);
                backoff_ms = backoff_ms ? backoff_ms * 2 : BACKOFF_MIN_MS;
                if (backoff_ms > BACKOFF_MAX_MS)
                    backoff_ms = BACKOFF_MAX_MS;
                retry_at_ms = clock_monotonic_ms() +
                              (retry_after_ms > backoff_ms ? retry_after_ms : backoff_ms);
            }
            update_waiting();
            continue;
        }
        /* Sleep until the open batch is due, a retry is due, or a signal. */
        uint64_t wait_ms = WAIT_SLICE_MS;
        if (influx.points > 0) {
            uint64_t due = influx.opened_ms + (uint64_t)config->influxdb.flush_ms;
            wait_ms = due > now ? due - now : 0;
        }
        if (influx.count > 0 && retry_at_ms > now && retry_at_ms - now < wait_ms)
            wait_ms = retry_at_ms - now;
        if (config->influxdb.node_measurements && memory_at_ms - now < wait_ms)
            wait_ms = memory_at_ms - now;
        if (wait_ms > WAIT_SLICE_MS)
            wait_ms = WAIT_SLICE_MS;
        if (wait_ms > 0) {
            struct timespec deadline;
            clock_deadline_after(CLOCK_REALTIME, wait_ms, &deadline);
            pthread_cond_timedwait(&influx.wake, &influx.lock, &deadline);
        }
    }
    pthread_mutex_unlock(&influx.lock);
    influxdb_client_destroy(client);
    return NULL;
}

/* ---------------------------------------------------- setup, recovery */

enum butler_status route_influxdb_setup(struct butler_runtime *runtime)
{
    const struct butler_config *config = runtime->config;
    if (!config->influxdb.url[0])
        return BUTLER_OK;
    pthread_mutex_lock(&influx.lock);
    influx.runtime = runtime;
    influx.config = config;
    influx.stop = false;
    influx.points_waiting = metrics_get("butler_influxdb_points_waiting", "", METRIC_GAUGE,
                                        "InfluxDB points not yet written (in the spool)");
    influx.started = true;
    pthread_mutex_unlock(&influx.lock);
    return BUTLER_OK;
}

void route_influxdb_start(void)
{
    if (!influx.started || influx.thread_running)
        return;
    if (pthread_create(&influx.thread, NULL, writer_main, NULL) != 0) {
        LOG_ERROR(MODULE, "cannot start the InfluxDB writer; points stay in the spool");
        return;
    }
    influx.thread_running = true;
    char masked[512];
    log_mask_url(influx.config->influxdb.url, masked, sizeof masked);
    LOG_INFO(MODULE, "writing points to InfluxDB %d at %s", influx.config->influxdb.version,
             masked);
}

void route_influxdb_recovered(uint64_t spool_id, const unsigned char *lines, size_t length)
{
    uint64_t points = 0;
    for (size_t i = 0; i < length; i++)
        points += lines[i] == '\n'; /* an estimate for the gauge (quoted newlines count too) */
    pthread_mutex_lock(&influx.lock);
    if (influx.started && influx.count == influx.capacity) {
        size_t grown = influx.capacity ? influx.capacity * 2 : 64;
        struct batch_ref *bigger =
            grown <= INFLUXDB_QUEUE_MAX ? malloc(grown * sizeof *bigger) : NULL;
        if (bigger) {
            for (size_t i = 0; i < influx.count; i++)
                bigger[i] = influx.queue[(influx.head + i) % influx.capacity];
            free(influx.queue);
            influx.queue = bigger;
            influx.head = 0;
            influx.capacity = grown;
        }
    }
    if (!influx.started || influx.count == influx.capacity) {
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                        "a spooled InfluxDB batch waits for the next start (InfluxDB %s)",
                        influx.started ? "queue full" : "not configured");
    } else {
        influx.queue[(influx.head + influx.count) % influx.capacity] =
            (struct batch_ref){spool_id, points};
        influx.count++;
        influx.waiting_points += points;
        update_waiting();
        pthread_cond_signal(&influx.wake);
    }
    pthread_mutex_unlock(&influx.lock);
}

void route_influxdb_stop(void)
{
    pthread_mutex_lock(&influx.lock);
    if (!influx.started) {
        pthread_mutex_unlock(&influx.lock);
        return;
    }
    /* The open batch goes to the spool: its messages are finished only then. */
    (void)close_batch();
    influx.stop = true;
    pthread_cond_broadcast(&influx.wake);
    pthread_cond_broadcast(&influx.room);
    pthread_mutex_unlock(&influx.lock);
    if (influx.thread_running)
        pthread_join(influx.thread, NULL);
    influx.thread_running = false;
    pthread_mutex_lock(&influx.lock);
    influx.started = false;
    free(influx.lines);
    influx.lines = NULL;
    influx.lines_used = influx.lines_capacity = influx.points = 0;
    free(influx.topics);
    free(influx.message_ids);
    free(influx.queue);
    influx.topics = NULL;
    influx.message_ids = NULL;
    influx.queue = NULL;
    influx.topics_used = influx.topics_capacity = influx.message_count = 0;
    influx.head = influx.count = influx.capacity = 0;
    influx.waiting_points = 0;
    pthread_mutex_unlock(&influx.lock);
}
