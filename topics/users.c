/*
 * Proxy events and active users; see users.h.
 *
 * Threads: users_deliver and users_idle run on the proxy port's publisher
 * thread (one), users_on_message on the MQTT network thread, and
 * active_users_summary on HTTP threads. The state is behind one mutex, held
 * only for the state change or for writing the summary text.
 */
#include "topics/users.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bridge/core/clock.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/model/active_users.h"
#include "topics/events.h"
#include "topics/users_state.h"

#define MODULE "users"

enum {
    TOPIC_MAX = 2600,           /* root + two 500-byte fields, each '/'-free */
    SUMMARY_INTERVAL_MS = 1000, /* contract: at most once a second */
    /* After the first CONNACK, wait this long for the retained summary
     * before publishing ours, so a restart does not overwrite it first. */
    REBUILD_GRACE_MS = 2000,
};

static struct {
    struct butler_runtime *runtime;
    pthread_mutex_t lock;
    struct users_state *state;
    bool dirty;                 /* the summary changed since it was last published */
    bool saw_event;             /* an event changed the state before the rebuild */
    atomic_bool rebuilt;        /* a summary came from the broker (or ours came back) */
    atomic_bool published;      /* this run published a summary of its own */
    atomic_bool summary_failed; /* the last summary publish was not acknowledged */
    uint64_t last_publish_ms, last_sweep_ms, connected_since_ms;
    struct metric *active, *evicted, *expired, *summaries;
} users = {.lock = PTHREAD_MUTEX_INITIALIZER};

bool users_wanted(const struct butler_config *config)
{
    return config->udp.proxy_listen != NULL && config->udp.proxy_listen[0] != '\0';
}

enum butler_status users_setup(struct butler_runtime *runtime)
{
    if (!users_wanted(runtime->config))
        return BUTLER_OK;
    users.runtime = runtime;
    users.active = metrics_get("butler_users_active", "", METRIC_GAUGE,
                               "Users active on Sense now (proxy session events)");
    users.evicted = metrics_get("butler_users_evicted_total", "", METRIC_COUNTER,
                                "Active users dropped because udp.active_users_max was reached");
    users.expired = metrics_get("butler_users_expired_total", "", METRIC_COUNTER,
                                "Active users dropped after udp.session_idle_s without activity");
    users.summaries = metrics_get("butler_users_summaries_published_total", "", METRIC_COUNTER,
                                  "Retained active-user summaries published");
    return users_state_create((size_t)runtime->config->udp.active_users_max, &users.state);
}

void users_teardown(void)
{
    pthread_mutex_lock(&users.lock);
    users_state_free(users.state);
    users.state = NULL;
    users.runtime = NULL;
    pthread_mutex_unlock(&users.lock);
}

/* ---- topics and payloads ---- */

/* Append `text` as one topic level: '/', '+' and '#' become '_'. */
static size_t append_level(char *out, size_t at, size_t size, const char *text)
{
    for (; *text && at + 1 < size; text++)
        out[at++] = (*text == '/' || *text == '+' || *text == '#') ? '_' : *text;
    out[at] = '\0';
    return at;
}

static bool event_topic(const char *root, const struct proxy_event *event, char *out, size_t size)
{
    int written = snprintf(out, size, "%s/events/%s/%s/", root, proxy_event_family(event->kind),
                           proxy_event_action(event->kind));
    if (written < 0 || (size_t)written >= size)
        return false;
    size_t at = append_level(out, (size_t)written, size, event->fields[PROXY_FIELD_USER_DIRECTORY]);
    if (at + 2 >= size)
        return false;
    out[at++] = '/';
    at = append_level(out, at, size, event->fields[PROXY_FIELD_USER_ID]);
    return at + 1 < size;
}

static char *event_json(const struct proxy_event *event, uint64_t received_wall_ms)
{
    static const struct {
        const char *name;
        enum proxy_field field;
    } members[] = {
        {"host", PROXY_FIELD_HOST},
        {"command", PROXY_FIELD_COMMAND},
        {"userDirectory", PROXY_FIELD_USER_DIRECTORY},
        {"userId", PROXY_FIELD_USER_ID},
        {"origin", PROXY_FIELD_ORIGIN},
        {"context", PROXY_FIELD_CONTEXT},
        {"message", PROXY_FIELD_MESSAGE},
    };
    char received[40];
    clock_format_iso8601(received_wall_ms, received, sizeof received);
    cJSON *object = cJSON_CreateObject();
    char *text = NULL;
    if (object == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof members / sizeof members[0]; i++)
        if (!cJSON_AddStringToObject(object, members[i].name, event->fields[members[i].field]))
            goto out;
    if (cJSON_AddStringToObject(object, "receivedAt", received))
        text = cJSON_PrintUnformatted(object);
out:
    cJSON_Delete(object);
    return text;
}

/* butler_events_published_total{type=...}: a string literal per kind. */
static const char *event_type(const struct proxy_event *event)
{
    static const char *const types[] = {
        [PROXY_SESSION_START] = "session-start",
        [PROXY_SESSION_STOP] = "session-stop",
        [PROXY_CONNECTION_OPEN] = "connection-open",
        [PROXY_CONNECTION_CLOSE] = "connection-close",
    };
    return (unsigned)event->kind < sizeof types / sizeof types[0] ? types[event->kind] : "proxy";
}

static void summary_done(void *context, enum butler_status status)
{
    (void)context;
    if (status != BUTLER_OK)
        atomic_store(&users.summary_failed, true);
}

/* ---- the state and the summary ---- */

/* Apply one event to the state (idempotent: an event offered again after a
 * refused publish changes nothing more). Publisher thread. */
static void apply(const struct proxy_event *event, uint64_t now_ms)
{
    const char *directory = event->fields[PROXY_FIELD_USER_DIRECTORY];
    const char *user = event->fields[PROXY_FIELD_USER_ID];
    const char *host = event->fields[PROXY_FIELD_HOST];
    struct users_change change = {0};
    pthread_mutex_lock(&users.lock);
    if (event->kind == PROXY_SESSION_START) {
        if (users_state_start(users.state, directory, user, host, now_ms, &change) != BUTLER_OK)
            LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "out of memory: %s\\%s not counted as active",
                            directory, user);
    } else if (event->kind == PROXY_SESSION_STOP) {
        users_state_stop(users.state, directory, user, &change);
    } else {
        users_state_touch(users.state, directory, user, host, now_ms, &change);
    }
    if (change.changed) {
        users.dirty = true;
        users.saw_event = true;
    }
    size_t count = users_state_count(users.state);
    pthread_mutex_unlock(&users.lock);
    if (change.evicted)
        metrics_add(users.evicted, 1);
    metrics_set(users.active, (int64_t)count);
}

/*
 * Publisher thread, after each event and when idle: expire idle users once a
 * second, and publish the retained summary when it changed and a second has
 * passed since the last one.
 */
static void tick(void)
{
    const struct butler_config *config = users.runtime->config;
    uint64_t now = clock_monotonic_ms();
    bool connected = mqtt_link_connected(users.runtime->link);
    if (!connected) {
        users.connected_since_ms = 0;
    } else if (users.connected_since_ms == 0) {
        users.connected_since_ms = now;
    }
    if (atomic_exchange(&users.summary_failed, false)) {
        pthread_mutex_lock(&users.lock);
        users.dirty = true;
        pthread_mutex_unlock(&users.lock);
    }
    if (now - users.last_sweep_ms >= SUMMARY_INTERVAL_MS) {
        users.last_sweep_ms = now;
        pthread_mutex_lock(&users.lock);
        size_t expired =
            users_state_expire(users.state, now, (uint64_t)config->udp.session_idle_s * 1000u);
        if (expired)
            users.dirty = true;
        size_t count = users_state_count(users.state);
        pthread_mutex_unlock(&users.lock);
        metrics_add(users.expired, (int64_t)expired);
        metrics_set(users.active, (int64_t)count);
    }
    if (!connected || now - users.last_publish_ms < SUMMARY_INTERVAL_MS)
        return;
    if (!atomic_load(&users.rebuilt) && now - users.connected_since_ms < REBUILD_GRACE_MS)
        return;
    char *summary = NULL;
    size_t length = 0;
    pthread_mutex_lock(&users.lock);
    if (users.dirty)
        summary = users_state_summary(users.state, clock_wall_ms(), &length);
    if (summary)
        users.dirty = false;
    pthread_mutex_unlock(&users.lock);
    if (summary == NULL)
        return;
    char topic[TOPIC_MAX];
    snprintf(topic, sizeof topic, "%s/sense/users/active", config->mqtt.topic_root);
    const struct mqtt_publish_options options = {
        .qos = 1, .retain = true, .content_type = "application/json"};
    enum butler_status status = mqtt_link_publish(users.runtime->link, topic, summary, length,
                                                  &options, summary_done, NULL);
    users_state_summary_free(summary);
    users.last_publish_ms = now;
    if (status == BUTLER_OK) {
        atomic_store(&users.published, true);
        metrics_add(users.summaries, 1);
    } else {
        pthread_mutex_lock(&users.lock);
        users.dirty = true; /* next second */
        pthread_mutex_unlock(&users.lock);
    }
}

/* ---- sink callbacks ---- */

/*
 * Publish (or, with `spill`, spool) one event and its legacy copy through the
 * Sense events' backlog (topics/events.h), and update the state first: the
 * state change is idempotent, so an event offered again changes nothing more.
 */
static enum butler_status deliver(const struct proxy_event *event, uint64_t received_wall_ms,
                                  bool spill)
{
    const struct butler_config *config = users.runtime->config;
    char topic[TOPIC_MAX], legacy_topic[64], legacy[1600];
    apply(event, clock_monotonic_ms());
    enum butler_status status = BUTLER_ERR_FULL; /* out of memory: offered again */
    char *payload = NULL;
    if (!event_topic(config->mqtt.topic_root, event, topic, sizeof topic)) {
        status = BUTLER_ERR_TOO_LARGE; /* dropped, counted as publish_failed */
        goto out;
    }
    payload = event_json(event, received_wall_ms);
    if (payload == NULL)
        goto out;
    struct events_prepared messages[EVENTS_PREPARED_MAX] = {{topic, payload}};
    size_t count = 1;
    if (config->mqtt.legacy_topics) {
        /* The first Butler's "<host>: <dir>/<user>" on qliksense/<family>/<action>. */
        snprintf(legacy_topic, sizeof legacy_topic, "qliksense/%s/%s",
                 proxy_event_family(event->kind), proxy_event_action(event->kind));
        int length =
            snprintf(legacy, sizeof legacy, "%s: %s/%s", event->fields[PROXY_FIELD_HOST],
                     event->fields[PROXY_FIELD_USER_DIRECTORY], event->fields[PROXY_FIELD_USER_ID]);
        if (length > 0 && (size_t)length < sizeof legacy)
            messages[count++] = (struct events_prepared){legacy_topic, legacy};
    }
    status = events_deliver_prepared(messages, count, received_wall_ms, event_type(event), spill);
out:
    free(payload);
    tick();
    return status;
}

enum butler_status users_deliver(const struct proxy_event *event, uint64_t received_wall_ms,
                                 void *context)
{
    (void)context;
    return deliver(event, received_wall_ms, false);
}

/*
 * Spooled only while the broker is away or Butler is stopping. With the broker
 * up and the outbound window full (a flood), the event is not spooled: it
 * stays in the proxy port's ring (dropped as "queue_full" once that is full),
 * because spooled messages go out in order with the task events' backlog and
 * a session flood must never delay a task event.
 */
enum butler_status users_spill(const struct proxy_event *event, uint64_t received_wall_ms,
                               void *context)
{
    (void)context;
    if (mqtt_link_connected(users.runtime->link) && !butler_runtime_stopping())
        return BUTLER_ERR_TIMEOUT; /* offered again */
    return deliver(event, received_wall_ms, true);
}

void users_idle(void *context)
{
    /* Also drains the events' backlog (after an outage) when only this port runs. */
    events_idle(context);
    tick();
}

/* ---- rebuild after a restart, and the HTTP view ---- */

void users_on_message(const struct mqtt_message *message, void *context)
{
    (void)context;
    if (users.state == NULL || atomic_load(&users.rebuilt))
        return;
    /* A copy without the retain flag is either one the broker queued for our
     * persistent session while the last run was being killed (an older
     * summary: the retained copy that answers our subscription follows it and
     * is the newest) or our own summary coming back. Only the latter ends the
     * wait for the last run's state. */
    if (!message->retain) {
        if (atomic_load(&users.published))
            atomic_store(&users.rebuilt, true);
        return;
    }
    /* The retained summary is what the last run left; anything after it is
     * our own. Either way, from now on only events change the state. */
    atomic_store(&users.rebuilt, true);
    if (message->payload_length == 0)
        return;
    size_t added = 0;
    pthread_mutex_lock(&users.lock);
    enum butler_status status =
        users_state_load(users.state, (const char *)message->payload, message->payload_length,
                         clock_monotonic_ms(), &added);
    if (users.saw_event)
        users.dirty = true; /* the broker's copy misses what happened since */
    size_t count = users_state_count(users.state);
    pthread_mutex_unlock(&users.lock);
    metrics_set(users.active, (int64_t)count);
    if (status != BUTLER_OK)
        LOG_WARN(MODULE, "%s is not an active-user summary: starting with no active users",
                 message->topic);
    else
        LOG_INFO(MODULE, "%zu active users taken over from the retained summary", added);
}

enum butler_status active_users_summary(char **json, size_t *length)
{
    enum butler_status status = BUTLER_ERR_NOT_FOUND;
    *json = NULL;
    pthread_mutex_lock(&users.lock);
    if (users.state != NULL) {
        *json = users_state_summary(users.state, clock_wall_ms(), length);
        status = *json ? BUTLER_OK : BUTLER_ERR_NOMEM;
    }
    pthread_mutex_unlock(&users.lock);
    return status;
}

void active_users_summary_free(char *json)
{
    users_state_summary_free(json);
}
