/*
 * UDP ingress; see udp_ingress.h. The ring is single-producer (socket
 * thread) single-consumer (publisher thread): the producer parses into its
 * scratch event outside the lock, copies the event's used bytes into one
 * exactly-sized block and only publishes that block under the lock. A parsed
 * event reserves about 6.5 kB for its worst case but uses a few hundred bytes:
 * fixed full-size slots would touch a page or two each, about 40 MB of RSS once
 * a busy stream has gone round the ring, where a compact copy costs one
 * malloc, a memcpy of the used bytes and only what is queued.
 */
/* recvmmsg() and struct mmsghdr are GNU extensions. */
#define _GNU_SOURCE
#include "bridge/ingress/udp_ingress.h"

#include "bridge/ingress/proxy_datagram.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bridge/core/clock.h"
#include "bridge/store/execution_ids.h"
#include "bridge/store/expiring_map.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"

#define MODULE "udp"

enum {
    RECV_BATCH = 64,
    POLL_MS = 200,
    IDLE_MS = 50,
    RETRY_PAUSE_MS = 1,
    ALLOW_MAX = 256,
    SOURCE_TEXT_MAX = 24,
};

/* Extra drop reasons decided here rather than by the parser. */
enum ingress_drop {
    DROP_SOURCE = UDP_DROP_REASON_COUNT,
    DROP_DUPLICATE,
    DROP_QUEUE_FULL,
    DROP_SHUTDOWN,
    DROP_PUBLISH_FAILED,
    DROP_SPOOL_FULL,
    DROP_KIND_COUNT
};

static const char *const extra_drop_names[] = {"source",   "duplicate",      "queue_full",
                                               "shutdown", "publish_failed", "spool_full"};

struct allow_entry {
    uint32_t network, mask;
};

/* Which datagrams a port takes; decides the parser, the event type, the
 * sink and the metric names. */
enum port_kind {
    PORT_SCHEDULER,
    PORT_PROXY,
};

struct port_spec {
    enum port_kind kind;
    const char *listen;
    const char *listen_key; /* for log lines: "udp.listen" */
    const struct config_string_list *allowed;
    const char *allowed_key;
    const char *metric_prefix; /* "butler_udp" */
    const char *queue_label;   /* butler_queue_depth{queue="..."} */
    bool dedup;
};

/* Ring entries: one heap block each, the event holding only its used bytes. */
struct queued_event {
    uint64_t received_wall_ms;
    struct sense_event event;
};
struct queued_proxy {
    uint64_t received_wall_ms;
    struct proxy_event event;
};

/* The parse target of the socket thread. */
union scratch_event {
    struct sense_event sense;
    struct proxy_event proxy;
};

struct udp_ingress {
    const struct butler_config *config;
    struct port_spec spec;
    struct udp_ingress_sink sink;     /* PORT_SCHEDULER */
    struct udp_proxy_sink proxy_sink; /* PORT_PROXY */
    void (*idle)(void *context);      /* the kind's sink idle and context */
    void *sink_context;
    int fd;
    size_t max_bytes;
    uint64_t dedup_ttl_ms;
    struct expiring_map *dedup;
    struct allow_entry allow[ALLOW_MAX];
    size_t allow_count;

    /* Ring: slots[head .. head+count) hold compact copies (queued_*_copy):
     * struct queued_event on the scheduler port, queued_proxy on the proxy port. */
    void **slots;
    size_t head, count;
    pthread_mutex_t mutex;
    pthread_cond_t not_empty;
    atomic_bool stop_socket;
    atomic_bool stop_publisher; /* set after the grace period: drop the rest */
    bool socket_thread_started, publisher_thread_started;
    pthread_t socket_thread, publisher_thread;

    /* Receive batch, owned by the socket thread. */
    unsigned char *buffers; /* RECV_BATCH * (max_bytes + 1) */
    struct mmsghdr messages[RECV_BATCH];
    struct iovec iov[RECV_BATCH];
    struct sockaddr_in sources[RECV_BATCH];
    union scratch_event *scratch; /* parse target; queued as a compact copy */

    struct metric *received_total, *accepted_total, *utf8_replaced_total, *depth_gauge;
    struct metric *dropped[DROP_KIND_COUNT];
};

static const char *drop_name(int kind)
{
    if (kind < UDP_DROP_REASON_COUNT)
        return udp_drop_reason_name((enum udp_drop_reason)kind);
    return extra_drop_names[kind - UDP_DROP_REASON_COUNT];
}

/* Count a drop and say so, a few lines per interval at most. */
static void count_drop(struct udp_ingress *ingress, int kind, const char *source)
{
    metrics_add(ingress->dropped[kind], 1);
    LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "dropped a datagram from %s: %s", source,
                    drop_name(kind));
}

enum butler_status udp_parse_cidr(const char *text, uint32_t *network, uint32_t *mask)
{
    char address[INET_ADDRSTRLEN];
    const char *slash = strchr(text, '/');
    size_t length = slash ? (size_t)(slash - text) : strlen(text);
    long bits = 32;
    if (length == 0 || length >= sizeof address)
        return BUTLER_ERR_INVALID;
    memcpy(address, text, length);
    address[length] = '\0';
    struct in_addr binary;
    if (inet_pton(AF_INET, address, &binary) != 1)
        return BUTLER_ERR_INVALID;
    if (slash) {
        char *end = NULL;
        errno = 0;
        bits = strtol(slash + 1, &end, 10);
        if (errno != 0 || end == slash + 1 || *end != '\0' || bits < 0 || bits > 32)
            return BUTLER_ERR_INVALID;
    }
    *mask = bits == 0 ? 0 : (uint32_t)(0xFFFFFFFFu << (32 - bits));
    *network = ntohl(binary.s_addr) & *mask;
    return BUTLER_OK;
}

static bool source_allowed(const struct udp_ingress *ingress, const struct sockaddr_in *source)
{
    if (ingress->allow_count == 0)
        return true;
    uint32_t address = ntohl(source->sin_addr.s_addr);
    for (size_t i = 0; i < ingress->allow_count; i++)
        if ((address & ingress->allow[i].mask) == ingress->allow[i].network)
            return true;
    return false;
}

/*
 * Resolve "host:port" (IPv4 literal or name) into *address. Start-up only.
 */
static enum butler_status parse_listen(const char *listen, struct sockaddr_in *address)
{
    enum butler_status status = BUTLER_ERR_INVALID;
    struct addrinfo *found = NULL;
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || (size_t)(colon - listen) >= sizeof host)
        goto out;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_DGRAM};
    if (getaddrinfo(host[0] ? host : "0.0.0.0", colon + 1, &hints, &found) != 0 || found == NULL)
        goto out;
    memcpy(address, found->ai_addr, sizeof *address);
    status = BUTLER_OK;
out:
    if (found)
        freeaddrinfo(found);
    return status;
}

/* A heap block holding `event` with only its used storage; fields[] re-pointed. */
static struct queued_event *queued_event_copy(const struct sense_event *event, uint64_t received)
{
    size_t used = offsetof(struct queued_event, event.storage) + event->storage_used;
    struct queued_event *copy = malloc(used);
    if (copy == NULL)
        return NULL;
    copy->received_wall_ms = received;
    memcpy(&copy->event, event, offsetof(struct sense_event, storage) + event->storage_used);
    for (size_t i = 0; i < SENSE_FIELD_COUNT; i++)
        copy->event.fields[i] = copy->event.storage + (event->fields[i] - event->storage);
    return copy;
}

static struct queued_proxy *queued_proxy_copy(const struct proxy_event *event, uint64_t received)
{
    size_t used = offsetof(struct queued_proxy, event.storage) + event->storage_used;
    struct queued_proxy *copy = malloc(used);
    if (copy == NULL)
        return NULL;
    copy->received_wall_ms = received;
    memcpy(&copy->event, event, offsetof(struct proxy_event, storage) + event->storage_used);
    for (size_t i = 0; i < PROXY_FIELD_COUNT; i++)
        copy->event.fields[i] = copy->event.storage + (event->fields[i] - event->storage);
    return copy;
}

/* What the socket thread needs to know of a parsed datagram, whatever its kind. */
struct parsed {
    enum udp_drop_reason reason;
    bool sanitized, utf8_replaced;
    const char *dedup_key; /* NULL or "" = none */
};

static struct parsed parse_datagram(struct udp_ingress *ingress, const unsigned char *data,
                                    size_t length)
{
    struct parsed parsed = {0};
    if (ingress->spec.kind == PORT_PROXY) {
        struct proxy_event *event = &ingress->scratch->proxy;
        parsed.reason = proxy_parse(data, length, ingress->max_bytes, event);
        parsed.sanitized = event->sanitized;
        parsed.utf8_replaced = event->utf8_replaced;
        return parsed;
    }
    struct sense_event *event = &ingress->scratch->sense;
    parsed.reason = udp_parse(data, length, ingress->max_bytes, event);
    parsed.sanitized = event->sanitized;
    parsed.utf8_replaced = event->utf8_replaced;
    parsed.dedup_key = event->fields[SENSE_FIELD_EXECUTION_ID];
    return parsed;
}

static void *scratch_copy(struct udp_ingress *ingress, uint64_t received)
{
    if (ingress->spec.kind == PORT_PROXY)
        return queued_proxy_copy(&ingress->scratch->proxy, received);
    return queued_event_copy(&ingress->scratch->sense, received);
}

/*
 * Handle one received datagram on the socket thread: allow-list, parse into
 * scratch, de-duplicate, commit a compact copy to the tail slot.
 */
static void handle_datagram(struct udp_ingress *ingress, const unsigned char *data, size_t length,
                            bool truncated, const struct sockaddr_in *source, uint64_t now_wall)
{
    char source_text[SOURCE_TEXT_MAX];
    metrics_add(ingress->received_total, 1);
    if (!inet_ntop(AF_INET, &source->sin_addr, source_text, sizeof source_text))
        snprintf(source_text, sizeof source_text, "?");
    if (!source_allowed(ingress, source)) {
        count_drop(ingress, DROP_SOURCE, source_text);
        return;
    }
    pthread_mutex_lock(&ingress->mutex);
    bool full = ingress->count >= UDP_QUEUE_MAX;
    size_t tail = (ingress->head + ingress->count) % UDP_QUEUE_MAX;
    pthread_mutex_unlock(&ingress->mutex);
    /* Only this thread adds, so the tail slot stays free until we commit. */
    struct parsed parsed = {.reason = UDP_DROP_SIZE};
    if (!truncated)
        parsed = parse_datagram(ingress, data, length);
    if (parsed.reason != UDP_DROP_NONE) {
        count_drop(ingress, (int)parsed.reason, source_text);
        return;
    }
    if (parsed.sanitized)
        LOG_RATELIMITED(LOG_LEVEL_INFO, MODULE,
                        "datagram from %s sanitised (control characters or over-long fields)",
                        source_text);
    if (parsed.utf8_replaced)
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                        "datagram from %s is not valid UTF-8: decoded with U+FFFD (is the "
                        "appender's encoding utf-8?)",
                        source_text);
    const char *execution_id = parsed.dedup_key;
    bool keyed =
        ingress->spec.dedup && execution_id && execution_id[0] != '\0' && ingress->dedup_ttl_ms > 0;
    /* Keyed by outcome too: a success and a distribute datagram of one
     * execution are two events (execution_ids.h). */
    char key[EXECUTION_IDS_KEY_MAX] = "";
    if (keyed)
        execution_ids_key(execution_id, sense_event_outcome(ingress->scratch->sense.type), key,
                          sizeof key);
    /* Pending until the event is published or spooled (execution_ids.h); a
     * pending claim of the other source is a duplicate here: the UDP thread
     * never waits. */
    if (keyed && expiring_map_insert_new(ingress->dedup, key, EXECUTION_IDS_PENDING,
                                         ingress->dedup_ttl_ms, NULL) != BUTLER_OK) {
        count_drop(ingress, DROP_DUPLICATE, source_text);
        return;
    }
    if (full) {
        /* The publisher spills to the spool above UDP_SPILL_THRESHOLD, so a
         * full ring means the disk cannot keep up either. The ExecutionId is
         * released so a resend is not taken for a duplicate. */
        if (keyed)
            expiring_map_remove(ingress->dedup, key);
        count_drop(ingress, DROP_QUEUE_FULL, source_text);
        return;
    }
    void *copy = scratch_copy(ingress, now_wall);
    if (copy == NULL) {
        if (keyed)
            expiring_map_remove(ingress->dedup, key);
        count_drop(ingress, DROP_QUEUE_FULL, source_text);
        return;
    }
    metrics_add(ingress->accepted_total, 1);
    if (parsed.utf8_replaced)
        metrics_add(ingress->utf8_replaced_total, 1);
    pthread_mutex_lock(&ingress->mutex);
    ingress->slots[tail] = copy;
    ingress->count++;
    pthread_cond_signal(&ingress->not_empty);
    pthread_mutex_unlock(&ingress->mutex);
}

/* Socket thread: batch receive until stop_socket. */
static void *socket_main(void *argument)
{
    struct udp_ingress *ingress = argument;
    size_t slot_bytes = ingress->max_bytes + 1;
    while (!atomic_load(&ingress->stop_socket)) {
        struct pollfd pfd = {.fd = ingress->fd, .events = POLLIN};
        int ready = poll(&pfd, 1, POLL_MS);
        if (ready <= 0)
            continue;
        for (;;) {
            for (size_t i = 0; i < RECV_BATCH; i++) {
                ingress->iov[i].iov_base = ingress->buffers + i * slot_bytes;
                ingress->iov[i].iov_len = slot_bytes;
                ingress->messages[i].msg_hdr = (struct msghdr){
                    .msg_name = &ingress->sources[i],
                    .msg_namelen = sizeof ingress->sources[i],
                    .msg_iov = &ingress->iov[i],
                    .msg_iovlen = 1,
                };
                ingress->messages[i].msg_len = 0;
            }
            int received = recvmmsg(ingress->fd, ingress->messages, RECV_BATCH, MSG_DONTWAIT, NULL);
            if (received < 0) {
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                    LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "recvmmsg failed: %s",
                                    strerror(errno));
                break;
            }
            uint64_t now_wall = clock_wall_ms();
            for (int i = 0; i < received; i++) {
                const struct msghdr *header = &ingress->messages[i].msg_hdr;
                handle_datagram(ingress, ingress->iov[i].iov_base, ingress->messages[i].msg_len,
                                (header->msg_flags & MSG_TRUNC) != 0, &ingress->sources[i],
                                now_wall);
            }
            if (received < RECV_BATCH)
                break;
        }
    }
    return NULL;
}

static void sleep_ms(long ms)
{
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

/* Offer a ring entry to the port's sink (deliver), or take it for later (spill). */
static enum butler_status offer(struct udp_ingress *ingress, void *slot, bool spill)
{
    if (ingress->spec.kind == PORT_PROXY) {
        struct queued_proxy *entry = slot;
        const struct udp_proxy_sink *sink = &ingress->proxy_sink;
        return spill ? sink->spill(&entry->event, entry->received_wall_ms, sink->context)
                     : sink->deliver(&entry->event, entry->received_wall_ms, sink->context);
    }
    struct queued_event *entry = slot;
    const struct udp_ingress_sink *sink = &ingress->sink;
    return spill ? sink->spill(&entry->event, entry->received_wall_ms, sink->context)
                 : sink->deliver(&entry->event, entry->received_wall_ms, sink->context);
}

static bool can_spill(const struct udp_ingress *ingress)
{
    return ingress->spec.kind == PORT_PROXY ? ingress->proxy_sink.spill != NULL
                                            : ingress->sink.spill != NULL;
}

/* An event claimed its ExecutionId when it was taken; dropped here, before
 * the broker or the spool had it, it gives the claim back so the QRS
 * notification of that run can still deliver it (execution_ids.h). */
static void release_claim(struct udp_ingress *ingress, void *slot)
{
    if (!ingress->spec.dedup || ingress->spec.kind == PORT_PROXY)
        return;
    const struct queued_event *entry = slot;
    execution_ids_release(entry->event.fields[SENSE_FIELD_EXECUTION_ID],
                          sense_event_outcome(entry->event.type));
}

/* Publisher thread: hand the head event to the sink until stopped. */
static void *publisher_main(void *argument)
{
    struct udp_ingress *ingress = argument;
    for (;;) {
        pthread_mutex_lock(&ingress->mutex);
        bool idle = false;
        if (ingress->count == 0 && !atomic_load(&ingress->stop_socket)) {
            struct timespec deadline;
            clock_deadline_after(CLOCK_REALTIME, IDLE_MS, &deadline);
            pthread_cond_timedwait(&ingress->not_empty, &ingress->mutex, &deadline);
            idle = ingress->count == 0;
        }
        size_t count = ingress->count;
        void *slot = count ? ingress->slots[ingress->head] : NULL;
        pthread_mutex_unlock(&ingress->mutex);
        metrics_set(ingress->depth_gauge, (int64_t)count);
        if (idle && ingress->idle)
            ingress->idle(ingress->sink_context);
        if (slot == NULL) {
            if (atomic_load(&ingress->stop_socket))
                break; /* socket closed and nothing left */
            continue;
        }
        bool drop_rest = atomic_load(&ingress->stop_publisher);
        enum butler_status status = drop_rest ? BUTLER_ERR_SHUTDOWN : offer(ingress, slot, false);
        bool later = status == BUTLER_ERR_NOT_CONNECTED || status == BUTLER_ERR_FULL ||
                     status == BUTLER_ERR_TIMEOUT;
        /* Broker away, ring filling up, or stopping: to the spool, so the
         * ring keeps draining and a crash loses nothing. */
        if (can_spill(ingress) &&
            (status == BUTLER_ERR_NOT_CONNECTED || status == BUTLER_ERR_SHUTDOWN ||
             (later && count > UDP_SPILL_THRESHOLD))) {
            enum butler_status spilled = offer(ingress, slot, true);
            if (spilled == BUTLER_ERR_FULL) {
                count_drop(ingress, DROP_SPOOL_FULL, "queue");
                release_claim(ingress, slot);
                status = BUTLER_OK; /* counted: take it off the ring */
                later = false;
            } else if (spilled == BUTLER_OK) {
                status = BUTLER_OK;
                later = false;
            } else if (drop_rest) {
                status = BUTLER_ERR_SHUTDOWN;
            }
        }
        if (later) {
            /* Keep it at the head; the broker or the outbound window will come back. */
            if (ingress->idle)
                ingress->idle(ingress->sink_context);
            sleep_ms(RETRY_PAUSE_MS);
            continue;
        }
        if (status == BUTLER_ERR_SHUTDOWN) {
            count_drop(ingress, DROP_SHUTDOWN, "queue");
            release_claim(ingress, slot);
        } else if (status != BUTLER_OK) {
            count_drop(ingress, DROP_PUBLISH_FAILED, "queue");
            release_claim(ingress, slot);
        }
        pthread_mutex_lock(&ingress->mutex);
        ingress->slots[ingress->head] = NULL;
        ingress->head = (ingress->head + 1) % UDP_QUEUE_MAX;
        ingress->count--;
        pthread_mutex_unlock(&ingress->mutex);
        free(slot);
    }
    return NULL;
}

size_t udp_ingress_depth(struct udp_ingress *ingress)
{
    pthread_mutex_lock(&ingress->mutex);
    size_t count = ingress->count;
    pthread_mutex_unlock(&ingress->mutex);
    return count;
}

/* The port's counter `<prefix>_<suffix>` (e.g. butler_udp_proxy_received_total). */
static struct metric *port_metric(const struct udp_ingress *ingress, const char *suffix,
                                  const char *labels, enum metric_kind type, const char *help)
{
    char name[96];
    snprintf(name, sizeof name, "%s_%s", ingress->spec.metric_prefix, suffix);
    return metrics_get(name, labels, type, help);
}

static void register_metrics(struct udp_ingress *ingress)
{
    bool proxy = ingress->spec.kind == PORT_PROXY;
    ingress->received_total =
        port_metric(ingress, "received_total", "", METRIC_COUNTER,
                    proxy ? "UDP datagrams received from the Sense proxy's log appender"
                          : "UDP datagrams received from log appenders");
    ingress->accepted_total = port_metric(ingress, "accepted_total", "", METRIC_COUNTER,
                                          proxy ? "Proxy datagrams accepted as events"
                                                : "UDP datagrams accepted as events");
    ingress->utf8_replaced_total = port_metric(
        ingress, "utf8_replaced_total", "", METRIC_COUNTER,
        "UDP datagrams accepted although not valid UTF-8 (bad bytes decoded as U+FFFD)");
    char labels[64];
    snprintf(labels, sizeof labels, "queue=\"%s\"", ingress->spec.queue_label);
    ingress->depth_gauge =
        metrics_get("butler_queue_depth", labels, METRIC_GAUGE, "Items waiting in a bounded queue");
    for (int kind = UDP_DROP_SIZE; kind < DROP_KIND_COUNT; kind++) {
        if (!ingress->spec.dedup && kind == DROP_DUPLICATE)
            continue;
        snprintf(labels, sizeof labels, "reason=\"%s\"", drop_name(kind));
        ingress->dropped[kind] = port_metric(ingress, "dropped_total", labels, METRIC_COUNTER,
                                             proxy ? "Proxy datagrams dropped, by reason"
                                                   : "UDP datagrams dropped, by reason");
    }
}

/* Allow-list from config; IPv6 entries cannot match an IPv4 socket. */
static enum butler_status load_allow_list(struct udp_ingress *ingress)
{
    const struct config_string_list *list = ingress->spec.allowed;
    for (size_t i = 0; i < list->count; i++) {
        uint32_t network, mask;
        if (udp_parse_cidr(list->items[i], &network, &mask) != BUTLER_OK) {
            LOG_WARN(MODULE,
                     "%s: \"%s\" is not IPv4; it cannot match the IPv4 socket and is ignored",
                     ingress->spec.allowed_key, list->items[i]);
            continue;
        }
        if (ingress->allow_count >= ALLOW_MAX) {
            LOG_ERROR(MODULE, "%s: more than %d entries", ingress->spec.allowed_key, ALLOW_MAX);
            return BUTLER_ERR_TOO_LARGE;
        }
        ingress->allow[ingress->allow_count++] = (struct allow_entry){network, mask};
    }
    if (list->count > 0 && ingress->allow_count == 0) {
        /* Every entry was IPv6: refuse everything rather than open up. */
        ingress->allow[0] = (struct allow_entry){0xFFFFFFFFu, 0xFFFFFFFFu};
        ingress->allow_count = 1;
    }
    return BUTLER_OK;
}

static enum butler_status open_socket(struct udp_ingress *ingress)
{
    struct sockaddr_in address;
    if (parse_listen(ingress->spec.listen, &address) != BUTLER_OK) {
        LOG_ERROR(MODULE, "%s \"%s\": expected IPv4-host:port", ingress->spec.listen_key,
                  ingress->spec.listen);
        return BUTLER_ERR_INVALID;
    }
    ingress->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (ingress->fd < 0) {
        LOG_ERROR(MODULE, "socket: %s", strerror(errno));
        return BUTLER_ERR_IO;
    }
    /* A deep kernel buffer absorbs bursts while the publisher is busy;
     * SO_RCVBUFFORCE passes rmem_max when we have CAP_NET_ADMIN. */
    int size = UDP_RCVBUF_BYTES;
    if (setsockopt(ingress->fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
        setsockopt(ingress->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    int actual = 0;
    socklen_t actual_length = sizeof actual;
    getsockopt(ingress->fd, SOL_SOCKET, SO_RCVBUF, &actual, &actual_length);
    if (bind(ingress->fd, (struct sockaddr *)&address, sizeof address) != 0) {
        LOG_ERROR(MODULE, "cannot bind %s %s: %s", ingress->spec.listen_key, ingress->spec.listen,
                  strerror(errno));
        return BUTLER_ERR_IO;
    }
    LOG_INFO(MODULE, "%s: listening on %s (receive buffer %d bytes, %zu allowed sources)",
             ingress->spec.listen_key, ingress->spec.listen, actual, ingress->allow_count);
    /* As HTTP does for a listener without tokens: beyond loopback with no
     * allow-list, anyone who can reach the port can inject Sense events (and
     * so alerts, webhooks, e-mails). */
    if (ingress->allow_count == 0 && (ntohl(address.sin_addr.s_addr) >> 24) != 127)
        LOG_WARN(MODULE,
                 "%s %s is not loopback and %s is empty: anyone who can reach it can send "
                 "events that raise alerts; set %s",
                 ingress->spec.listen_key, ingress->spec.listen, ingress->spec.allowed_key,
                 ingress->spec.allowed_key);
    return BUTLER_OK;
}

/*
 * Start one port: `ingress` (calloc'd, spec and sink filled in by the caller)
 * is taken over: on failure it is freed and *out stays NULL.
 */
static enum butler_status start_port(struct udp_ingress *ingress,
                                     const struct butler_config *config, struct udp_ingress **out)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    *out = NULL;
    ingress->fd = -1;
    ingress->config = config;
    ingress->max_bytes = (size_t)config->udp.max_message_bytes;
    ingress->dedup_ttl_ms = (uint64_t)config->udp.dedup_ttl_s * 1000u;
    pthread_mutex_init(&ingress->mutex, NULL);
    pthread_cond_init(&ingress->not_empty, NULL);
    register_metrics(ingress);
    ingress->slots = calloc(UDP_QUEUE_MAX, sizeof *ingress->slots);
    ingress->buffers = malloc(RECV_BATCH * (ingress->max_bytes + 1));
    ingress->scratch = malloc(sizeof *ingress->scratch);
    if (ingress->slots == NULL || ingress->buffers == NULL || ingress->scratch == NULL)
        goto out;
    /* The window is shared with the QRS notification source (one execution,
     * one event, whichever source hears it first). */
    if (ingress->spec.dedup) {
        status = execution_ids_open(&ingress->dedup);
        if (status != BUTLER_OK)
            goto out;
    }
    status = load_allow_list(ingress);
    if (status != BUTLER_OK)
        goto out;
    status = open_socket(ingress);
    if (status != BUTLER_OK)
        goto out;
    status = BUTLER_ERR_INTERNAL;
    if (pthread_create(&ingress->publisher_thread, NULL, publisher_main, ingress) != 0)
        goto out;
    ingress->publisher_thread_started = true;
    if (pthread_create(&ingress->socket_thread, NULL, socket_main, ingress) != 0)
        goto out;
    ingress->socket_thread_started = true;
    status = BUTLER_OK;
    *out = ingress;
out:
    if (status != BUTLER_OK)
        udp_ingress_stop(ingress, 0);
    return status;
}

enum butler_status udp_ingress_start(const struct butler_config *config,
                                     const struct udp_ingress_sink *sink, struct udp_ingress **out)
{
    struct udp_ingress *ingress = calloc(1, sizeof *ingress);
    *out = NULL;
    if (ingress == NULL)
        return BUTLER_ERR_NOMEM;
    ingress->spec = (struct port_spec){
        .kind = PORT_SCHEDULER,
        .listen = config->udp.listen,
        .listen_key = "udp.listen",
        .allowed = &config->udp.allowed_sources,
        .allowed_key = "udp.allowed_sources",
        .metric_prefix = "butler_udp",
        .queue_label = "udp",
        .dedup = true,
    };
    ingress->sink = *sink;
    ingress->idle = sink->idle;
    ingress->sink_context = sink->context;
    return start_port(ingress, config, out);
}

enum butler_status udp_ingress_start_proxy(const struct butler_config *config,
                                           const struct udp_proxy_sink *sink,
                                           struct udp_ingress **out)
{
    struct udp_ingress *ingress = calloc(1, sizeof *ingress);
    *out = NULL;
    if (ingress == NULL)
        return BUTLER_ERR_NOMEM;
    bool own_list = config->udp.proxy_allowed_sources.count > 0;
    ingress->spec = (struct port_spec){
        .kind = PORT_PROXY,
        .listen = config->udp.proxy_listen,
        .listen_key = "udp.proxy_listen",
        .allowed = own_list ? &config->udp.proxy_allowed_sources : &config->udp.allowed_sources,
        .allowed_key = own_list ? "udp.proxy_allowed_sources" : "udp.allowed_sources",
        .metric_prefix = "butler_udp_proxy",
        .queue_label = "udp_proxy",
        .dedup = false,
    };
    ingress->proxy_sink = *sink;
    ingress->idle = sink->idle;
    ingress->sink_context = sink->context;
    return start_port(ingress, config, out);
}

void udp_ingress_stop(struct udp_ingress *ingress, int grace_ms)
{
    if (ingress == NULL)
        return;
    atomic_store(&ingress->stop_socket, true);
    if (ingress->socket_thread_started)
        pthread_join(ingress->socket_thread, NULL);
    if (ingress->fd >= 0)
        close(ingress->fd);
    if (ingress->publisher_thread_started) {
        /* Let the publisher empty the ring for up to grace_ms. */
        uint64_t deadline = clock_monotonic_ms() + (uint64_t)(grace_ms > 0 ? grace_ms : 0);
        while (udp_ingress_depth(ingress) > 0 && clock_monotonic_ms() < deadline)
            sleep_ms(20);
        atomic_store(&ingress->stop_publisher, true);
        pthread_mutex_lock(&ingress->mutex);
        pthread_cond_broadcast(&ingress->not_empty);
        pthread_mutex_unlock(&ingress->mutex);
        pthread_join(ingress->publisher_thread, NULL);
    }
    /* ingress->dedup is the shared window: execution_ids_close() frees it. */
    pthread_mutex_destroy(&ingress->mutex);
    pthread_cond_destroy(&ingress->not_empty);
    if (ingress->slots)
        for (size_t i = 0; i < ingress->count; i++)
            free(ingress->slots[(ingress->head + i) % UDP_QUEUE_MAX]);
    free(ingress->slots);
    free(ingress->buffers);
    free(ingress->scratch);
    free(ingress);
}
