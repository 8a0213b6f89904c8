/*
 * Sense monitors: the timer that turns intervals into <root>/monitor/run/<name>
 * messages, and the runs of the server-licence, access-licence, version and
 * heartbeat monitors (the licence release lives in license_release.c).
 *
 * Threads: the timer thread only publishes; runs happen on worker threads
 * with the worker's own QRS and HTTP clients; sense_version_on_message runs on
 * the MQTT network thread. `version_lock` guards the remembered version.
 */
#include "topics/sense_monitors.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/clients/http_client.h"
#include "bridge/clients/qrs.h"
#include "bridge/core/clock.h"
#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "topics/license_release.h"
#include "topics/publish.h"

#define MODULE "monitors"

enum monitor_kind {
    MONITOR_LICENSE_SERVER,
    MONITOR_LICENSE_ACCESS,
    MONITOR_SENSE_VERSION,
    MONITOR_HEARTBEAT,
    MONITOR_LICENSE_RELEASE,
    MONITOR_COUNT,
};

static const char *const monitor_names[MONITOR_COUNT] = {
    "license_server", "license_access", "sense_version", "heartbeat", "license_release",
};

enum {
    TIMER_TICK_MS = 200,
    /* After the first CONNACK: time for the retained version to arrive
     * before the first version run compares against it. */
    FIRST_RUN_DELAY_MS = 1000,
    PUBLISH_TIMEOUT_MS = 5000,
    PUBLISH_RETRY_MS = 5000,
    HEARTBEAT_TIMEOUT_MS = 10000,
    HEARTBEAT_CONNECT_TIMEOUT_MS = 5000,
    VERSION_TEXT_MAX = 256,
    DAY_MS = 86400000,
};

static bool monitor_enabled(const struct butler_config *config, enum monitor_kind kind)
{
    switch (kind) {
    case MONITOR_LICENSE_SERVER:
    case MONITOR_LICENSE_ACCESS:
        return config->license.monitor.enable;
    case MONITOR_SENSE_VERSION:
        return config->sense.version.enable;
    case MONITOR_HEARTBEAT:
        return config->heartbeat.enable;
    case MONITOR_LICENSE_RELEASE:
        return config->license.release.enable;
    case MONITOR_COUNT:
        break;
    }
    return false;
}

static int monitor_interval_s(const struct butler_config *config, enum monitor_kind kind)
{
    switch (kind) {
    case MONITOR_LICENSE_SERVER:
    case MONITOR_LICENSE_ACCESS:
        return config->license.monitor.interval_s;
    case MONITOR_SENSE_VERSION:
        return config->sense.version.interval_s;
    case MONITOR_HEARTBEAT:
        return config->heartbeat.interval_s;
    case MONITOR_LICENSE_RELEASE:
        return config->license.release.interval_s;
    case MONITOR_COUNT:
        break;
    }
    return 0;
}

bool sense_monitors_wanted(const struct butler_config *config)
{
    for (int kind = 0; kind < MONITOR_COUNT; kind++)
        if (monitor_enabled(config, (enum monitor_kind)kind))
            return true;
    return false;
}

bool sense_version_wanted(const struct butler_config *config)
{
    return config->sense.version.enable;
}

static void count_run(const char *monitor, const char *outcome)
{
    char labels[128];
    snprintf(labels, sizeof labels, "monitor=\"%s\",outcome=\"%s\"", monitor, outcome);
    metrics_count("butler_monitor_runs_total", labels,
                  "Sense monitor runs by monitor and outcome (ok, failed, refused)");
}

/* ------------------------------------------------------------ the timer */

static struct {
    struct butler_runtime *runtime;
    pthread_t thread;
    bool thread_started;
    atomic_bool stop;
} timer;

static enum butler_status publish_run_command(struct butler_runtime *runtime,
                                              enum monitor_kind kind)
{
    char topic[512];
    char at[32];
    char payload[128];
    clock_format_iso8601(clock_wall_ms(), at, sizeof at);
    snprintf(topic, sizeof topic, "%s/monitor/run/%s", runtime->config->mqtt.topic_root,
             monitor_names[kind]);
    snprintf(payload, sizeof payload, "{\"monitor\":\"%s\",\"at\":\"%s\"}", monitor_names[kind],
             at);
    struct mqtt_publish_options options = {.qos = 1};
    return mqtt_link_publish_wait(runtime->link, topic, payload, strlen(payload), &options,
                                  PUBLISH_TIMEOUT_MS);
}

static void *timer_main(void *argument)
{
    struct butler_runtime *runtime = argument;
    const struct butler_config *config = runtime->config;
    uint64_t due_ms[MONITOR_COUNT] = {0}; /* 0 = first run not scheduled yet */
    while (!atomic_load(&timer.stop) && !atomic_load(&runtime->stopping)) {
        if (!mqtt_link_connected(runtime->link)) {
            clock_sleep_ms(TIMER_TICK_MS);
            continue;
        }
        uint64_t now = clock_monotonic_ms();
        for (int kind = 0; kind < MONITOR_COUNT && !atomic_load(&timer.stop); kind++) {
            if (!monitor_enabled(config, (enum monitor_kind)kind))
                continue;
            if (due_ms[kind] == 0)
                due_ms[kind] = now + FIRST_RUN_DELAY_MS;
            if (now < due_ms[kind])
                continue;
            enum butler_status status = publish_run_command(runtime, (enum monitor_kind)kind);
            if (status == BUTLER_OK) {
                due_ms[kind] = now + (uint64_t)monitor_interval_s(config, kind) * 1000u;
            } else {
                LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "could not publish the %s run: %s",
                                monitor_names[kind], butler_status_str(status));
                due_ms[kind] = now + PUBLISH_RETRY_MS;
            }
        }
        clock_sleep_ms(TIMER_TICK_MS);
    }
    return NULL;
}

enum butler_status sense_monitors_start(struct butler_runtime *runtime)
{
    timer.runtime = runtime;
    atomic_store(&timer.stop, false);
    if (!sense_monitors_wanted(runtime->config))
        return BUTLER_OK;
    if (pthread_create(&timer.thread, NULL, timer_main, runtime) != 0)
        return BUTLER_ERR_INTERNAL;
    timer.thread_started = true;
    for (int kind = 0; kind < MONITOR_COUNT; kind++)
        if (monitor_enabled(runtime->config, (enum monitor_kind)kind))
            LOG_INFO(MODULE, "monitor %s: at start, then every %d s", monitor_names[kind],
                     monitor_interval_s(runtime->config, (enum monitor_kind)kind));
    return BUTLER_OK;
}

void sense_monitors_stop(void)
{
    atomic_store(&timer.stop, true);
    if (timer.thread_started) {
        pthread_join(timer.thread, NULL);
        timer.thread_started = false;
    }
}

/* ------------------------------------------------------------ publishing */

/* Publish `json` on <root>/<suffix> at QoS 1; waits for the broker. */
static enum butler_status publish_json(const struct butler_config *config, const char *suffix,
                                       const cJSON *json, bool retain)
{
    char topic[512];
    snprintf(topic, sizeof topic, "%s/%s", config->mqtt.topic_root, suffix);
    char *payload = cJSON_PrintUnformatted(json);
    if (payload == NULL)
        return BUTLER_ERR_NOMEM;
    struct mqtt_publish_options options = {.qos = 1, .retain = retain};
    enum butler_status status = publish_reliably(topic, payload, strlen(payload), &options);
    free(payload);
    if (status != BUTLER_OK)
        LOG_ERROR(MODULE, "could not publish %s: %s", topic, butler_status_str(status));
    return status;
}

/* ------------------------------------------------------------ server licence */

bool sense_license_valid_to(const char *key_details, char date_out[11], uint64_t *valid_until_ms)
{
    static const char label[] = "Valid To:";
    for (const char *line = key_details; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t length = end ? (size_t)(end - line) : strlen(line);
        while (length && (*line == ' ' || *line == '\t')) {
            line++;
            length--;
        }
        if (length >= sizeof label - 1 && strncmp(line, label, sizeof label - 1) == 0) {
            const char *value = line + sizeof label - 1;
            while (*value == ' ' || *value == '\t')
                value++;
            if ((size_t)(value - line) + 10 > length)
                return false;
            char stamp[32];
            snprintf(stamp, sizeof stamp, "%.10sT00:00:00.000Z", value);
            uint64_t day_start = 0;
            if (!clock_parse_iso8601(stamp, &day_start))
                return false;
            memcpy(date_out, value, 10);
            date_out[10] = '\0';
            *valid_until_ms = day_start + DAY_MS; /* valid through that whole day */
            return true;
        }
        line = end ? end + 1 : NULL;
    }
    return false;
}

long sense_license_days_left(uint64_t valid_until_ms, uint64_t now_ms)
{
    if (now_ms >= valid_until_ms)
        return -(long)((now_ms - valid_until_ms) / DAY_MS) - 1;
    return (long)((valid_until_ms - now_ms) / DAY_MS);
}

static enum butler_status run_license_server(struct topic_worker *worker,
                                             const struct butler_config *config, char *error,
                                             size_t error_size)
{
    cJSON *license = NULL, *report = NULL;
    struct qrs_result result = {0};
    enum butler_status status = qrs_get(worker->qrs, "license", NULL, &license, &result);
    if (status != BUTLER_OK) {
        snprintf(error, error_size, "GET /qrs/license: %s",
                 result.error[0] ? result.error : butler_status_str(status));
        goto out;
    }
    const char *details = json_string_member(license, "keyDetails");
    char date[11];
    uint64_t valid_until = 0;
    if (details == NULL || !sense_license_valid_to(details, date, &valid_until)) {
        snprintf(error, error_size, "the server licence has no \"Valid To:\" date in keyDetails");
        status = BUTLER_ERR_REMOTE;
        goto out;
    }
    const uint64_t now = clock_wall_ms();
    const long days_left = sense_license_days_left(valid_until, now);
    const bool expired =
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(license, "isExpired")) || now >= valid_until;
    report = cJSON_CreateObject();
    if (report == NULL || !cJSON_AddBoolToObject(report, "expired", expired) ||
        !cJSON_AddStringToObject(report, "expiresAt", date) ||
        !cJSON_AddNumberToObject(report, "daysLeft", (double)days_left)) {
        status = BUTLER_ERR_NOMEM;
        goto out;
    }
    /* The event before the retained state: a crash in between repeats the
     * event on the next run rather than losing it. */
    if (expired)
        status = publish_json(config, "events/license/server/expired", report, false);
    else if (days_left <= config->license.monitor.warn_days)
        status = publish_json(config, "events/license/server/expiring", report, false);
    if (status == BUTLER_OK)
        status = publish_json(config, "sense/license/server", report, true);
    if (status != BUTLER_OK)
        snprintf(error, error_size, "publishing the server licence state failed");
out:
    cJSON_Delete(license);
    cJSON_Delete(report);
    return status;
}

/* ------------------------------------------------------------ access licences */

static const struct {
    /* Member of GET /qrs/license/accesstypeoverview (sense-interfaces.md 7.1). Not the
     * "...AccessType" names: those belong to the older accesstypeinfo endpoint, and a real
     * server's overview has none of them. */
    const char *member;
    const char *name; /* in <root>/sense/license/access and the low event */
} access_types[] = {
    {"professionalAccess", "professional"},
    {"analyzerAccess", "analyzer"},
    {"userAccess", "user"},
    {"loginAccess", "login"},
    {"analyzerTimeAccess", "analyzer_time"},
};

/* The numbers of one access type, as QRS gives them. */
static cJSON *access_numbers(const cJSON *type)
{
    cJSON *numbers = cJSON_CreateObject();
    const cJSON *field = NULL;
    cJSON_ArrayForEach(field, type)
    {
        if (numbers && cJSON_IsNumber(field) && field->string &&
            !cJSON_AddNumberToObject(numbers, field->string, field->valuedouble)) {
            cJSON_Delete(numbers);
            return NULL;
        }
    }
    return numbers;
}

static enum butler_status publish_access_low(const struct butler_config *config, const char *name,
                                             const cJSON *numbers, double available)
{
    char suffix[128];
    snprintf(suffix, sizeof suffix, "events/license/access/low/%s", name);
    cJSON *event = cJSON_Duplicate(numbers, true);
    enum butler_status status = BUTLER_ERR_NOMEM;
    if (event && cJSON_AddStringToObject(event, "type", name) &&
        cJSON_AddNumberToObject(event, "availableBelow", config->license.monitor.available_below))
        status = publish_json(config, suffix, event, false);
    cJSON_Delete(event);
    if (status == BUTLER_OK)
        LOG_WARN(MODULE, "%s access licences low: %.0f available (threshold %d)", name, available,
                 config->license.monitor.available_below);
    return status;
}

static enum butler_status run_license_access(struct topic_worker *worker,
                                             const struct butler_config *config, char *error,
                                             size_t error_size)
{
    cJSON *overview = NULL, *report = NULL;
    struct qrs_result result = {0};
    enum butler_status status =
        qrs_get(worker->qrs, "license/accesstypeoverview", NULL, &overview, &result);
    if (status != BUTLER_OK) {
        snprintf(error, error_size, "GET /qrs/license/accesstypeoverview: %s",
                 result.error[0] ? result.error : butler_status_str(status));
        goto out;
    }
    report = cJSON_CreateObject();
    if (report == NULL) {
        status = BUTLER_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < sizeof access_types / sizeof access_types[0]; i++) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(overview, access_types[i].member);
        if (!cJSON_IsObject(type) ||
            !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(type, "enabled")))
            continue;
        cJSON *numbers = access_numbers(type);
        if (numbers == NULL || !cJSON_AddItemToObject(report, access_types[i].name, numbers)) {
            cJSON_Delete(numbers);
            status = BUTLER_ERR_NOMEM;
            goto out;
        }
        const cJSON *available = cJSON_GetObjectItemCaseSensitive(numbers, "available");
        if (config->license.monitor.available_below > 0 && cJSON_IsNumber(available) &&
            available->valuedouble < config->license.monitor.available_below) {
            status =
                publish_access_low(config, access_types[i].name, numbers, available->valuedouble);
            if (status != BUTLER_OK)
                goto out;
        }
    }
    status = publish_json(config, "sense/license/access", report, true);
out:
    if (status != BUTLER_OK && !error[0])
        snprintf(error, error_size, "publishing the access licence state failed");
    cJSON_Delete(overview);
    cJSON_Delete(report);
    return status;
}

/* ------------------------------------------------------------ version */

static pthread_mutex_t version_lock = PTHREAD_MUTEX_INITIALIZER;
static char known_version[VERSION_TEXT_MAX]; /* "" = none known */
/* Set once a run of this process published the version: from then on the
 * remembered version is this process's own and the broker's copies are older
 * or equal, so they are no longer taken (see sense_version_on_message). */
static bool version_published;

/* from_broker: a copy of the retained topic, taken only until this process
 * published its own version. Any thread; takes version_lock. */
static void remember_version(const char *version, bool from_broker)
{
    pthread_mutex_lock(&version_lock);
    if (!from_broker || !version_published)
        snprintf(known_version, sizeof known_version, "%s", version ? version : "");
    if (!from_broker)
        version_published = true;
    pthread_mutex_unlock(&version_lock);
}

/* The retained `sense/version` tells a starting Butler which version the last
 * run saw, so an upgrade while it was down is announced. A copy can arrive
 * after this process's first run (a resumed session's, a re-subscription's):
 * taking it then would announce the same change again on the next run, so
 * only copies that come before the first publish count. Network thread. */
void sense_version_on_message(const struct mqtt_message *message, void *context)
{
    (void)context;
    if (message->payload_length == 0 || message->payload_length > 64 * 1024) {
        if (message->payload_length == 0)
            remember_version(NULL, true); /* retained state cleared */
        return;
    }
    cJSON *about = json_parse_exact((const char *)message->payload, message->payload_length, NULL);
    const char *version = json_string_member(about, "buildVersion");
    if (version)
        remember_version(version, true);
    cJSON_Delete(about);
}

static enum butler_status run_sense_version(struct topic_worker *worker,
                                            const struct butler_config *config, char *error,
                                            size_t error_size)
{
    cJSON *about = NULL, *change = NULL;
    struct qrs_result result = {0};
    enum butler_status status = qrs_get(worker->qrs, "about", NULL, &about, &result);
    if (status != BUTLER_OK) {
        snprintf(error, error_size, "GET /qrs/about: %s",
                 result.error[0] ? result.error : butler_status_str(status));
        goto out;
    }
    const char *version = json_string_member(about, "buildVersion");
    if (version == NULL || strlen(version) >= VERSION_TEXT_MAX) {
        snprintf(error, error_size, "/qrs/about has no usable buildVersion");
        status = BUTLER_ERR_REMOTE;
        goto out;
    }
    char previous[VERSION_TEXT_MAX];
    pthread_mutex_lock(&version_lock);
    memcpy(previous, known_version, sizeof previous);
    pthread_mutex_unlock(&version_lock);
    if (previous[0] && strcmp(previous, version) != 0) {
        change = cJSON_CreateObject();
        if (change == NULL || !cJSON_AddStringToObject(change, "from", previous) ||
            !cJSON_AddStringToObject(change, "to", version)) {
            status = BUTLER_ERR_NOMEM;
            goto out;
        }
        LOG_INFO(MODULE, "Sense version changed from %s to %s", previous, version);
        status = publish_json(config, "events/sense/version/changed", change, false);
    }
    if (status == BUTLER_OK)
        status = publish_json(config, "sense/version", about, true);
    if (status == BUTLER_OK)
        remember_version(version, false);
    else
        snprintf(error, error_size, "publishing the Sense version failed");
out:
    cJSON_Delete(about);
    cJSON_Delete(change);
    return status;
}

/* ------------------------------------------------------------ heartbeat */

static enum butler_status run_heartbeat(struct topic_worker *worker,
                                        const struct butler_config *config, char *error,
                                        size_t error_size)
{
    if (worker->http == NULL) {
        snprintf(error, error_size, "no HTTP client on this worker (out of memory)");
        return BUTLER_ERR_NOMEM;
    }
    struct http_request request = {
        .method = config->heartbeat.method,
        .url = config->heartbeat.url,
        .timeout_ms = HEARTBEAT_TIMEOUT_MS,
        .connect_timeout_ms = HEARTBEAT_CONNECT_TIMEOUT_MS,
        .verify_peer = true,
        .max_response_bytes = 64 * 1024,
    };
    struct retry_policy policy = {config->retry.max_attempts, config->retry.initial_backoff_ms,
                                  config->retry.max_backoff_ms};
    struct http_response response = {.retry_after_s = -1};
    int attempts = 0;
    enum butler_status status = http_client_perform_with_retry(
        worker->http, &request, &policy, butler_runtime_stopping, &response, &attempts);
    char redacted[256];
    log_redact_url(config->heartbeat.url, redacted, sizeof redacted);
    metrics_count("butler_heartbeat_total",
                  status == BUTLER_OK ? "outcome=\"ok\"" : "outcome=\"failed\"",
                  "Heartbeat calls by outcome (after retries)");
    if (status != BUTLER_OK)
        snprintf(error, error_size, "%s %s: %s (HTTP %ld, %d attempt(s))%s%s",
                 config->heartbeat.method, redacted, butler_status_str(status), response.status,
                 attempts, response.error[0] ? ": " : "", response.error);
    else if (attempts > 1)
        LOG_INFO(MODULE, "heartbeat reached %s after %d attempts", redacted, attempts);
    http_response_clear(&response);
    return status;
}

/* ------------------------------------------------------------ dispatch */

void sense_monitors_run(struct topic_worker *worker, struct topic_message *message)
{
    const struct butler_config *config = butler_runtime_current->config;
    const char *name = strrchr(message->topic, '/');
    name = name ? name + 1 : message->topic;
    int kind = 0;
    while (kind < MONITOR_COUNT && strcmp(monitor_names[kind], name) != 0)
        kind++;
    if (kind == MONITOR_COUNT || !monitor_enabled(config, (enum monitor_kind)kind)) {
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "%s: no such monitor enabled here; ignored",
                        message->topic);
        count_run(kind == MONITOR_COUNT ? "unknown" : monitor_names[kind], "refused");
        topic_message_free(message);
        return;
    }
    char error[512] = "";
    enum butler_status status = BUTLER_ERR_NOT_FOUND;
    if (kind != MONITOR_HEARTBEAT && worker->qrs == NULL) {
        snprintf(error, sizeof error, "no QRS client (qrs.url empty or client setup failed)");
    } else {
        switch ((enum monitor_kind)kind) {
        case MONITOR_LICENSE_SERVER:
            status = run_license_server(worker, config, error, sizeof error);
            break;
        case MONITOR_LICENSE_ACCESS:
            status = run_license_access(worker, config, error, sizeof error);
            break;
        case MONITOR_SENSE_VERSION:
            status = run_sense_version(worker, config, error, sizeof error);
            break;
        case MONITOR_HEARTBEAT:
            status = run_heartbeat(worker, config, error, sizeof error);
            break;
        case MONITOR_LICENSE_RELEASE:
            status = license_release_run(worker, message, error, sizeof error);
            break;
        case MONITOR_COUNT:
            break;
        }
    }
    count_run(monitor_names[kind], status == BUTLER_OK ? "ok" : "failed");
    if (status != BUTLER_OK)
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "monitor %s failed: %s", monitor_names[kind],
                        error[0] ? error : butler_status_str(status));
    topic_message_free(message);
}
