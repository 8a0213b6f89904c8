/*
 * butler: process start-up, signals and orderly shutdown.
 *
 * Threads: main (this file: signals and housekeeping), the MQTT network
 * thread (bridge/link/mqtt_link.c), the workers (bridge/core/worker_pool.c), and later
 * the HTTP and UDP ingress threads. Signals are blocked in every thread and
 * taken here with sigtimedwait(), so no handler runs in async-signal context.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/core/clock.h"
#include "bridge/store/execution_ids.h"
#include "bridge/ingress/http_server.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/store/spool.h"
#include "bridge/link/mqtt_link.h"
#include "bridge/model/status_view.h"
#include "bridge/clients/qrs.h"
#include "bridge/core/runtime.h"
#include "bridge/ingress/udp_ingress.h"
#include "bridge/core/worker_pool.h"
#include "config/config.h"
#include "topics/app.h"
#include "topics/file.h"
#include "topics/events.h"
#include "topics/notifications.h"
#include "topics/kv.h"
#include "topics/schedules.h"
#include "topics/sense_monitors.h"
#include "topics/task_start.h"
#include "topics/topics.h"
#include "topics/users.h"

#define MODULE "main"

enum { EXIT_RUNTIME_FAILURE = 1, EXIT_USAGE = 2 };

static void usage(FILE *out)
{
    fprintf(out, "usage: butler --config FILE        run the daemon (foreground; logs to stderr)\n"
                 "       butler --check-config FILE  validate FILE, print the effective config "
                 "(secrets masked)\n"
                 "       butler --config-reference FORMAT  print every configuration key "
                 "(FORMAT: markdown, man or text)\n"
                 "       butler --version            print the version\n"
                 "       butler --help               this text\n"
                 "\n"
                 "Without --config Butler runs on the defaults: MQTT at 127.0.0.1:1883.\n"
                 "Environment variables BUTLER_<SECTION>_<KEY> override file values.\n");
}

/* `--config-reference FORMAT`: docs/configuration.md is this output (markdown). */
static int print_config_reference(const char *format_name)
{
    enum config_reference_format format;
    if (!config_reference_format_from_name(format_name, &format)) {
        fprintf(stderr, "butler: --config-reference takes markdown, man or text\n");
        return EXIT_USAGE;
    }
    if (config_reference(stdout, format) != BUTLER_OK || fflush(stdout) != 0)
        return EXIT_RUNTIME_FAILURE;
    return 0;
}

struct arguments {
    const char *config_path;
    bool check_only;
};

/* Returns -1 to continue, or the exit code. */
static int parse_arguments(int argc, char **argv, struct arguments *arguments)
{
    for (int i = 1; i < argc; i++) {
        const char *argument = argv[i];
        if (strcmp(argument, "--help") == 0 || strcmp(argument, "-h") == 0) {
            usage(stdout);
            fputc('\n', stdout);
            return print_config_reference("text");
        }
        if (strcmp(argument, "--config-reference") == 0)
            return print_config_reference(i + 1 < argc ? argv[i + 1] : NULL);
        if (strcmp(argument, "--version") == 0 || strcmp(argument, "-V") == 0) {
            printf("butler %s\n", BUTLER_VERSION);
            return 0;
        }
        if (strcmp(argument, "--config") == 0 || strcmp(argument, "-c") == 0 ||
            strcmp(argument, "--check-config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "butler: %s needs a file name\n", argument);
                usage(stderr);
                return EXIT_USAGE;
            }
            if (arguments->config_path) {
                fprintf(stderr, "butler: only one configuration file may be given\n");
                return EXIT_USAGE;
            }
            arguments->config_path = argv[++i];
            if (strcmp(argument, "--check-config") == 0)
                arguments->check_only = true;
            continue;
        }
        fprintf(stderr, "butler: unknown argument \"%s\"\n", argument);
        usage(stderr);
        return EXIT_USAGE;
    }
    return -1;
}

/* Gauges that are cheaper to sample than to maintain on every change. */
static void update_gauges(struct butler_runtime *runtime)
{
    static struct metric *queue_depth, *inflight, *connected;
    if (queue_depth == NULL) {
        queue_depth = metrics_get("butler_queue_depth", "queue=\"workers\"", METRIC_GAUGE,
                                  "Items waiting in a bounded queue");
        inflight = metrics_get("butler_queue_depth", "queue=\"mqtt_inflight\"", METRIC_GAUGE,
                               "Items waiting in a bounded queue");
        connected = metrics_get("butler_mqtt_connected", "", METRIC_GAUGE,
                                "1 while the broker connection is up");
    }
    metrics_set(queue_depth, (int64_t)worker_pool_depth(runtime->pool));
    metrics_set(inflight, (int64_t)mqtt_link_inflight(runtime->link));
    metrics_set(connected, mqtt_link_connected(runtime->link) ? 1 : 0);
    spool_update_metrics(runtime->spool);
}

/* What main() starts besides the runtime, for stop_daemon(). */
struct daemon_parts {
    struct udp_ingress *udp;
    struct udp_ingress *proxy; /* udp.proxy_listen */
    struct http_server *http;
};

/*
 * Start every part in dependency order: task-start state and the MQTT link,
 * the workers and topic families (replaying unfinished work), then the
 * ingresses. Logs what failed; the caller stops whatever did start.
 */
static enum butler_status start_daemon(struct butler_runtime *runtime, struct daemon_parts *parts)
{
    const struct butler_config *config = runtime->config;
    status_view_setup(config->mqtt.topic_root); /* before the first publish */
    if (task_start_state_create(config, &runtime->task_start) != BUTLER_OK ||
        mqtt_link_create(config, runtime->started_at_wall_ms, &runtime->link) != BUTLER_OK) {
        LOG_ERROR(MODULE, "start-up failed");
        return BUTLER_ERR_INVALID;
    }
    struct worker_pool_callbacks callbacks = {
        .init_worker = topics_worker_init,
        .cleanup_worker = topics_worker_cleanup,
        .context = runtime,
    };
    if (worker_pool_create(config->task_start.workers, (size_t)config->task_start.queue_max,
                           &callbacks, &runtime->pool) != BUTLER_OK ||
        kv_setup(config) != BUTLER_OK || schedules_setup(config) != BUTLER_OK ||
        users_setup(runtime) != BUTLER_OK || app_setup(runtime) != BUTLER_OK ||
        file_setup(runtime) != BUTLER_OK || topics_setup(runtime) != BUTLER_OK ||
        topics_recover(runtime) != BUTLER_OK || mqtt_link_start(runtime->link) != BUTLER_OK) {
        LOG_ERROR(MODULE, "start-up failed");
        return BUTLER_ERR_INVALID;
    }
    /* Work left unfinished by the last run goes to the workers first. */
    topics_replay(runtime);
    /* UDP events after the link: until CONNACK they wait in the ingress ring.
     * The ingress copies the sink. */
    struct udp_ingress_sink udp_sink = {events_deliver, events_idle, events_spill, runtime};
    if (config->udp.enable && (events_setup(runtime) != BUTLER_OK ||
                               udp_ingress_start(config, &udp_sink, &parts->udp) != BUTLER_OK)) {
        LOG_ERROR(MODULE, "start-up failed: UDP ingress");
        return BUTLER_ERR_INVALID;
    }
    /* The proxy's port: its own socket, ring and threads (topics/users.c). */
    struct udp_proxy_sink proxy_sink = {users_deliver, users_idle, users_spill, runtime};
    if (users_wanted(config) &&
        (events_setup(runtime) != BUTLER_OK ||
         udp_ingress_start_proxy(config, &proxy_sink, &parts->proxy) != BUTLER_OK)) {
        LOG_ERROR(MODULE, "start-up failed: UDP proxy port");
        return BUTLER_ERR_INVALID;
    }
    /* Schedules fire from their own thread once the link runs. */
    if (schedules_start(runtime) != BUTLER_OK) {
        LOG_ERROR(MODULE, "start-up failed: scheduler");
        return BUTLER_ERR_INVALID;
    }
    /* Sense monitors fire as <root>/monitor/run/<name> messages once the link runs. */
    if (sense_monitors_start(runtime) != BUTLER_OK) {
        LOG_ERROR(MODULE, "start-up failed: Sense monitors");
        return BUTLER_ERR_INVALID;
    }
    /* QRS change notifications become events through the same path as UDP. */
    if (config->qrs.notifications.enable && !config->udp.enable &&
        events_setup(runtime) != BUTLER_OK) {
        LOG_ERROR(MODULE, "start-up failed: events");
        return BUTLER_ERR_INVALID;
    }
    /* HTTP after the link: requests publish, and answer 503 until CONNACK. */
    if (http_server_start(runtime, &parts->http) != BUTLER_OK) {
        LOG_ERROR(MODULE, "start-up failed: HTTP API");
        return BUTLER_ERR_INVALID;
    }
    /* After HTTP: QRS may call back as soon as the subscription exists. */
    if (notifications_start(runtime) != BUTLER_OK) {
        LOG_ERROR(MODULE, "start-up failed: QRS change notifications");
        return BUTLER_ERR_INVALID;
    }
    return BUTLER_OK;
}

/* Main thread: housekeeping once a second until SIGTERM or SIGINT. Returns
 * the signal, or 0 when waiting for signals failed. */
static int wait_for_signal(const sigset_t *signals, struct butler_runtime *runtime)
{
    for (;;) {
        struct timespec tick = {1, 0};
        int received = sigtimedwait(signals, NULL, &tick);
        if (received == SIGHUP) {
            LOG_INFO(MODULE, "SIGHUP ignored: restart Butler to apply a new configuration");
        } else if (received > 0) {
            return received;
        } else if (received < 0 && errno != EAGAIN && errno != EINTR) {
            LOG_ERROR(MODULE, "sigtimedwait failed");
            return 0;
        }
        update_gauges(runtime);
        kv_housekeeping(runtime);
    }
}

/* Orderly shutdown of whatever start_daemon() started, in the order that
 * loses nothing: intake first, then in-flight work, then the link. */
static void stop_daemon(struct butler_runtime *runtime, struct daemon_parts *parts)
{
    const struct butler_config *config = runtime->config;
    /* No new firings once stopping: a firing now would be work started
     * after SIGTERM; one that falls during the restart is reported missed. */
    schedules_stop();
    sense_monitors_stop();
    /* Ask QRS to stop calling back before the HTTP ingress goes away. */
    notifications_stop();
    /* HTTP first, while results can still arrive for requests in flight. */
    http_server_stop(parts->http);
    parts->http = NULL;
    if (runtime->link)
        topics_stop_intake(runtime);
    /* UDP first: its queued events still go to the workers that drain next. */
    udp_ingress_stop(parts->udp, config->shutdown_grace_s * 1000 / 2);
    parts->udp = NULL;
    udp_ingress_stop(parts->proxy, 1000);
    parts->proxy = NULL;
    uint64_t drain_started_ms = clock_monotonic_ms();
    if (runtime->pool)
        worker_pool_drain(runtime->pool, config->shutdown_grace_s * 1000);
    /* Engine work in what is left of the grace; reloads still running then
     * are cancelled and stay in the spool. */
    uint64_t drained_ms = clock_monotonic_ms() - drain_started_ms;
    uint64_t grace_ms = (uint64_t)config->shutdown_grace_s * 1000u;
    app_stop(drained_ms >= grace_ms ? 0 : (int)(grace_ms - drained_ms));
    /* File commands likewise: what is still queued after the grace stays in the spool. */
    drained_ms = clock_monotonic_ms() - drain_started_ms;
    file_stop(drained_ms >= grace_ms ? 0 : (int)(grace_ms - drained_ms));
    /* Grace is over: retries and waits for the broker give up from here. */
    atomic_store(&runtime->stopping, true);
    topics_stop_replay();
    if (runtime->pool)
        worker_pool_stop(runtime->pool, 0);
    if (runtime->link)
        mqtt_link_stop(runtime->link, 2000);
    worker_pool_destroy(runtime->pool);
    app_teardown();
    file_teardown();
    mqtt_link_destroy(runtime->link);
    topics_teardown();
    schedules_teardown();
    kv_teardown();
    events_teardown();
    users_teardown();
    execution_ids_close(); /* the UDP ingress and the workers are gone */
    task_start_state_destroy(runtime->task_start);
    status_view_reset(); /* every thread that feeds it is gone */
}

/*
 * glibc gives each thread that allocates its own arena (up to 8 per core), and
 * freed memory stays resident per arena: with ~40 threads (HTTP, workers, UDP,
 * MQTT) a burst leaves a peak in several arenas at once. Two arenas hold the
 * UDP overload peak ~15 % lower at the same CPU per task start (bench/soak,
 * BENCHMARKS.md); Butler's few busy threads barely contend on them.
 */
enum { MALLOC_ARENAS_MAX = 2 };

/*
 * Blocks from 256 kB up are mmapped and go back to the system when freed. By
 * default glibc raises this threshold after the first such free (up to 32 MB),
 * and from then on a large buffer used once (an InfluxDB batch read back from
 * the spool for a retry, its gzip copy) stays resident in the arena: with
 * InfluxDB away and 100,000 points waiting that was ~3 MB of RssAnon.
 */
enum { MALLOC_MMAP_THRESHOLD = 256 * 1024 };

int main(int argc, char **argv)
{
    mallopt(M_ARENA_MAX, MALLOC_ARENAS_MAX); /* before any thread exists */
    mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD);
    struct arguments arguments = {0};
    int exit_code = parse_arguments(argc, argv, &arguments);
    if (exit_code >= 0)
        return exit_code;

    struct butler_config config;
    if (config_load(arguments.config_path, &config, stderr) != BUTLER_OK)
        return EXIT_USAGE;
    if (arguments.check_only) {
        config_print(&config, stdout);
        config_free(&config);
        return 0;
    }
    log_setup((enum log_level)config.log.level, config.log.format == CONFIG_LOG_JSON);

    /* Block before any thread exists so every thread inherits the mask. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    static struct butler_runtime runtime;
    struct daemon_parts parts = {0};
    runtime.config = &config;
    runtime.started_at_wall_ms = clock_wall_ms();
    butler_runtime_current = &runtime;
    exit_code = EXIT_RUNTIME_FAILURE;

    LOG_INFO(MODULE, "butler %s starting (config: %s)", BUTLER_VERSION,
             arguments.config_path ? arguments.config_path : "defaults");
    if (!qrs_enabled(&config))
        LOG_WARN(MODULE, "qrs.url is empty: task starts will be answered \"failed\"");

    if (start_daemon(&runtime, &parts) == BUTLER_OK) {
        LOG_INFO(MODULE, "running: MQTT %s:%d, topic root \"%s\"", config.mqtt.host,
                 config.mqtt.port, config.mqtt.topic_root);
        int signal_number = wait_for_signal(&signals, &runtime);
        if (signal_number > 0) {
            LOG_INFO(MODULE, "%s: stopping intake, finishing in-flight work (up to %d s)",
                     strsignal(signal_number), config.shutdown_grace_s);
            exit_code = 0;
        }
    }
    stop_daemon(&runtime, &parts);
    LOG_INFO(MODULE, "stopped");
    butler_runtime_current = NULL;
    config_free(&config);
    return exit_code;
}
