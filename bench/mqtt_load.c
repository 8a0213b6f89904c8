/*
 * MQTT load generator for bench/run.sh (libmosquitto, QoS 1).
 *
 *   mqtt_load task   HOST PORT N TASK_ID [WINDOW]
 *       Publish N task-start requests {"taskId","requestId"} to butler/task/start,
 *       keeping at most WINDOW requests unanswered (default 64), and wait for each
 *       answer on butler/task/result. Latency = publish -> result.
 *   mqtt_load steady HOST PORT RATE SECONDS TASK_IDS [ROOT] [MAX_UNANSWERED]
 *       Publish task-start requests at a steady RATE per second for SECONDS (paced
 *       in 1 ms slices, not in a window), cycling over the comma-separated TASK_IDS,
 *       a fresh requestId each, to ROOT/task/start (ROOT default "butler"); answers
 *       on ROOT/task/result. Prints "READY" once subscribed, then one JSON line with
 *       the counts, publish->result p50/p99/max overall and the p99 of every 10 s of
 *       publishing (a pause, e.g. a compaction, shows there). If more than
 *       MAX_UNANSWERED (default 100000) are outstanding, publishing waits and the
 *       time spent waiting is reported (the rate was then not held).
 *   mqtt_load broker HOST PORT N [WINDOW]
 *       The broker's own pub->sub ceiling: one publisher and one subscriber client,
 *       200-byte payloads at QoS 1, at most WINDOW messages in flight (default 1000).
 *   mqtt_load pub    HOST PORT N TOPIC PAYLOAD_FILE [WINDOW]
 *       Publish N copies of PAYLOAD_FILE to TOPIC at QoS 1, WINDOW unacknowledged.
 *   mqtt_load count  HOST PORT FILTER N TIMEOUT_S IDLE_S
 *       Subscribe to FILTER at QoS 1, print "READY", count messages until N arrived,
 *       TIMEOUT_S passed, or IDLE_S passed without a message.
 *
 * Every mode prints one JSON line on stdout. Times are CLOCK_MONOTONIC.
 */
#define _GNU_SOURCE
#include <mosquitto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "bench_common.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static long n_total, n_published, n_done, n_started, n_other, n_subscribed;
static double *t_pub, *latency;
static double t_first_done, t_last_done;
static char run_tag[32];
static char result_key[64]; /* "requestId":"<run_tag>- */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void on_subscribe(struct mosquitto *m, void *u, int mid, int n, const int *q)
{
    (void)m, (void)u, (void)mid, (void)n, (void)q;
    pthread_mutex_lock(&lock);
    n_subscribed++;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

static void count_done(void)
{
    double t = now_ms();
    if (n_done == 0)
        t_first_done = t;
    t_last_done = t;
    n_done++;
    pthread_cond_broadcast(&changed);
}

/* task mode: answers on butler/task/result */
static void on_result(struct mosquitto *m, void *u, const struct mosquitto_message *msg)
{
    (void)m, (void)u;
    char buf[4096];
    size_t len =
        (size_t)msg->payloadlen < sizeof buf - 1 ? (size_t)msg->payloadlen : sizeof buf - 1;
    memcpy(buf, msg->payload, len);
    buf[len] = 0;
    const char *p = strstr(buf, result_key);
    if (!p)
        return; /* someone else's answer */
    long i = strtol(p + strlen(result_key), NULL, 10);
    double t = now_ms();
    pthread_mutex_lock(&lock);
    if (i >= 0 && i < n_total && latency[i] < 0) {
        latency[i] = t - t_pub[i];
        if (strstr(buf, "\"status\":\"started\""))
            n_started++;
        else if (n_other++ < 3)
            fprintf(stderr, "mqtt_load: answer not started: %s\n", buf);
        count_done();
    }
    pthread_mutex_unlock(&lock);
}

/* broker / count modes: every message counts */
static void on_any(struct mosquitto *m, void *u, const struct mosquitto_message *msg)
{
    (void)m, (void)u, (void)msg;
    pthread_mutex_lock(&lock);
    count_done();
    pthread_mutex_unlock(&lock);
}

/* pub mode: the window is on PUBACKs */
static void on_publish(struct mosquitto *m, void *u, int mid)
{
    (void)m, (void)u, (void)mid;
    pthread_mutex_lock(&lock);
    count_done();
    pthread_mutex_unlock(&lock);
}

static struct mosquitto *client(const char *host, int port, const char *id,
                                void (*msg)(struct mosquitto *, void *,
                                            const struct mosquitto_message *))
{
    struct mosquitto *m = mosquitto_new(id, true, NULL);
    if (!m) {
        perror("mosquitto_new");
        exit(1);
    }
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_int_option(m, MOSQ_OPT_SEND_MAXIMUM, 65535);
    mosquitto_max_inflight_messages_set(m, 0);
    if (msg)
        mosquitto_message_callback_set(m, msg);
    mosquitto_subscribe_callback_set(m, on_subscribe);
    if (mosquitto_connect(m, host, port, 30) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "mqtt_load: cannot connect to %s:%d\n", host, port);
        exit(1);
    }
    mosquitto_loop_start(m);
    return m;
}

static void wait_subscribed(long n)
{
    pthread_mutex_lock(&lock);
    while (n_subscribed < n)
        pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
}

/* Block while `window` or more published items are not yet done. */
static void wait_window(long window)
{
    pthread_mutex_lock(&lock);
    while (n_published - n_done >= window)
        pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
}

/* Wait until n items are done or nothing happened for idle_ms; returns done. */
static long wait_done(long n, double idle_ms, double timeout_ms)
{
    double start = now_ms();
    pthread_mutex_lock(&lock);
    while (n_done < n) {
        double t = now_ms();
        double last = n_done ? t_last_done : start;
        if (t - last > idle_ms || t - start > timeout_ms)
            break;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 50 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&changed, &lock, &until);
    }
    long done = n_done;
    pthread_mutex_unlock(&lock);
    return done;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double percentile(double *sorted, long n, double p)
{
    if (n == 0)
        return 0;
    long i = (long)(p * (n - 1) + 0.5);
    return sorted[i];
}

/* The latencies of answered requests, sorted, into `sorted` (n_total slots); returns how many. */
static long answered_latencies(double *sorted)
{
    long k = 0;
    for (long i = 0; i < n_total; i++)
        if (latency[i] >= 0)
            sorted[k++] = latency[i];
    qsort(sorted, (size_t)k, sizeof *sorted, cmp_double);
    return k;
}

static int mode_task(const char *host, int port, long n, const char *task_id, long window)
{
    n_total = n;
    t_pub = calloc((size_t)n, sizeof *t_pub);
    latency = malloc((size_t)n * sizeof *latency);
    for (long i = 0; i < n; i++)
        latency[i] = -1;
    snprintf(run_tag, sizeof run_tag, "b%ld%d", (long)time(NULL), (int)getpid());
    snprintf(result_key, sizeof result_key, "\"requestId\":\"%s-", run_tag);
    struct mosquitto *m = client(host, port, NULL, on_result);
    mosquitto_subscribe(m, NULL, "butler/task/result", 1);
    wait_subscribed(1);
    double t0 = now_ms();
    for (long i = 0; i < n; i++) {
        wait_window(window);
        char payload[160];
        int len = snprintf(payload, sizeof payload, "{\"taskId\":\"%s\",\"requestId\":\"%s-%ld\"}",
                           task_id, run_tag, i);
        pthread_mutex_lock(&lock);
        t_pub[i] = now_ms();
        n_published++;
        pthread_mutex_unlock(&lock);
        mosquitto_publish(m, NULL, "butler/task/start", len, payload, 1, false);
    }
    long done = wait_done(n, 15000, 600000);
    double seconds = (t_last_done - t0) / 1e3;
    double *sorted = malloc((size_t)n * sizeof *sorted);
    long k = answered_latencies(sorted);
    printf("{\"mode\":\"task\",\"sent\":%ld,\"answered\":%ld,\"started\":%ld,\"window\":%ld,"
           "\"seconds\":%.3f,\"rate\":%.0f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f}\n",
           n, done, n_started, window, seconds, seconds > 0 ? done / seconds : 0,
           percentile(sorted, k, 0.5), percentile(sorted, k, 0.99), k ? sorted[k - 1] : 0);
    mosquitto_disconnect(m);
    mosquitto_loop_stop(m, false);
    return done == n ? 0 : 1;
}

/* Sleep until `ms` on the CLOCK_MONOTONIC scale of now_ms(). */
static void sleep_until_ms(double ms)
{
    struct timespec until;
    until.tv_sec = (time_t)(ms / 1e3);
    until.tv_nsec = (long)((ms - until.tv_sec * 1e3) * 1e6);
    if (until.tv_nsec < 0)
        until.tv_nsec = 0;
    if (until.tv_nsec >= 1000000000L)
        until.tv_nsec = 999999999L;
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL);
}

enum { STEADY_TASKS_MAX = 16, STEADY_SLICE_S = 10 };

static int mode_steady(const char *host, int port, long rate, long seconds, char *task_list,
                       const char *root, long max_unanswered)
{
    const char *tasks[STEADY_TASKS_MAX];
    int task_count = 0;
    for (char *save = NULL, *t = strtok_r(task_list, ",", &save);
         t && task_count < STEADY_TASKS_MAX; t = strtok_r(NULL, ",", &save))
        tasks[task_count++] = t;
    if (task_count == 0 || rate <= 0 || seconds <= 0) {
        fprintf(stderr, "mqtt_load steady: need RATE > 0, SECONDS > 0 and task ids\n");
        return 2;
    }
    long n = rate * seconds;
    n_total = n;
    t_pub = calloc((size_t)n, sizeof *t_pub);
    latency = malloc((size_t)n * sizeof *latency);
    double *sorted = malloc((size_t)n * sizeof *sorted);
    if (!t_pub || !latency || !sorted) {
        fprintf(stderr, "mqtt_load steady: out of memory for %ld requests\n", n);
        return 2;
    }
    for (long i = 0; i < n; i++)
        latency[i] = -1;
    snprintf(run_tag, sizeof run_tag, "s%ld%d", (long)time(NULL), (int)getpid());
    snprintf(result_key, sizeof result_key, "\"requestId\":\"%s-", run_tag);
    char start_topic[256], result_topic[256];
    snprintf(start_topic, sizeof start_topic, "%s/task/start", root);
    snprintf(result_topic, sizeof result_topic, "%s/task/result", root);
    struct mosquitto *m = client(host, port, NULL, on_result);
    mosquitto_subscribe(m, NULL, result_topic, 1);
    wait_subscribed(1);
    printf("READY\n");
    double t0 = now_ms();
    double waited_ms = 0;
    for (long i = 0; i < n; i++) {
        double due = t0 + (double)i * 1e3 / (double)rate;
        if (now_ms() < due)
            sleep_until_ms(due);
        if (n_published - n_done >= max_unanswered) {
            double before = now_ms();
            wait_window(max_unanswered);
            waited_ms += now_ms() - before;
        }
        char payload[200];
        int len = snprintf(payload, sizeof payload, "{\"taskId\":\"%s\",\"requestId\":\"%s-%ld\"}",
                           tasks[i % task_count], run_tag, i);
        pthread_mutex_lock(&lock);
        t_pub[i] = now_ms();
        n_published++;
        pthread_mutex_unlock(&lock);
        mosquitto_publish(m, NULL, start_topic, len, payload, 1, false);
    }
    double publish_seconds = (now_ms() - t0) / 1e3;
    long done = wait_done(n, 15000, 600000);
    pthread_mutex_lock(&lock); /* latency[] is written by the network thread */
    long k = answered_latencies(sorted);
    printf("{\"mode\":\"steady\",\"rate_asked\":%ld,\"sent\":%ld,\"answered\":%ld,\"started\":%ld,"
           "\"publish_seconds\":%.3f,\"rate_held\":%.0f,\"throttled_ms\":%.0f,"
           "\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f,\"p99_by_slice_ms\":[",
           rate, n, done, n_started, publish_seconds, n / publish_seconds, waited_ms,
           percentile(sorted, k, 0.5), percentile(sorted, k, 0.99), k ? sorted[k - 1] : 0);
    /* p99 of each STEADY_SLICE_S seconds of requests (by publish time); unanswered ones
     * count as the worst. */
    long per_slice = rate * STEADY_SLICE_S;
    for (long first = 0; first < n; first += per_slice) {
        long last = first + per_slice < n ? first + per_slice : n;
        long m_count = 0;
        for (long i = first; i < last; i++)
            sorted[m_count++] = latency[i] >= 0 ? latency[i] : 1e9;
        qsort(sorted, (size_t)m_count, sizeof *sorted, cmp_double);
        printf("%s%.2f", first ? "," : "", percentile(sorted, m_count, 0.99));
    }
    printf("]}\n");
    pthread_mutex_unlock(&lock);
    mosquitto_disconnect(m);
    mosquitto_loop_stop(m, false);
    return done == n ? 0 : 1;
}

static int mode_broker(const char *host, int port, long n, long window)
{
    struct mosquitto *sub = client(host, port, NULL, on_any);
    mosquitto_subscribe(sub, NULL, "bench/ceiling", 1);
    wait_subscribed(1);
    struct mosquitto *pub = client(host, port, NULL, NULL);
    char payload[200];
    memset(payload, 'x', sizeof payload);
    double t0 = now_ms();
    for (long i = 0; i < n; i++) {
        wait_window(window);
        pthread_mutex_lock(&lock);
        n_published++;
        pthread_mutex_unlock(&lock);
        mosquitto_publish(pub, NULL, "bench/ceiling", sizeof payload, payload, 1, false);
    }
    long done = wait_done(n, 10000, 600000);
    double seconds = (t_last_done - t0) / 1e3;
    printf("{\"mode\":\"broker\",\"sent\":%ld,\"received\":%ld,\"window\":%ld,\"seconds\":%.3f,"
           "\"rate\":%.0f}\n",
           n, done, window, seconds, seconds > 0 ? done / seconds : 0);
    return done == n ? 0 : 1;
}

static int mode_pub(const char *host, int port, long n, const char *topic, const char *file,
                    long window)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        perror(file);
        return 2;
    }
    static char payload[65536];
    size_t len = fread(payload, 1, sizeof payload, f);
    fclose(f);
    struct mosquitto *pub = client(host, port, NULL, NULL);
    mosquitto_publish_callback_set(pub, on_publish);
    double t0 = now_ms();
    for (long i = 0; i < n; i++) {
        wait_window(window);
        pthread_mutex_lock(&lock);
        n_published++;
        pthread_mutex_unlock(&lock);
        mosquitto_publish(pub, NULL, topic, (int)len, payload, 1, false);
    }
    long done = wait_done(n, 10000, 600000);
    double seconds = (t_last_done - t0) / 1e3;
    printf("{\"mode\":\"pub\",\"sent\":%ld,\"acked\":%ld,\"seconds\":%.3f,\"rate\":%.0f}\n", n,
           done, seconds, seconds > 0 ? done / seconds : 0);
    mosquitto_disconnect(pub);
    mosquitto_loop_stop(pub, false);
    return done == n ? 0 : 1;
}

static int mode_count(const char *host, int port, const char *filter, long n, double timeout_s,
                      double idle_s)
{
    struct mosquitto *sub = client(host, port, NULL, on_any);
    mosquitto_subscribe(sub, NULL, filter, 1);
    wait_subscribed(1);
    printf("READY\n");
    fflush(stdout);
    double t0 = now_ms();
    /* Before the first message only the overall timeout applies. */
    pthread_mutex_lock(&lock);
    while (n_done == 0 && now_ms() - t0 < timeout_s * 1e3) {
        pthread_mutex_unlock(&lock);
        usleep(10000);
        pthread_mutex_lock(&lock);
    }
    pthread_mutex_unlock(&lock);
    long done = wait_done(n, idle_s * 1e3, timeout_s * 1e3 - (now_ms() - t0));
    double seconds = (t_last_done - t_first_done) / 1e3;
    printf("{\"mode\":\"count\",\"received\":%ld,\"seconds\":%.3f}\n", done, seconds);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    mosquitto_lib_init();
    if (argc >= 6 && strcmp(argv[1], "task") == 0)
        return mode_task(argv[2], (int)number_argument(argv[3]), number_argument(argv[4]), argv[5],
                         argc > 6 ? number_argument(argv[6]) : 64);
    if (argc >= 7 && strcmp(argv[1], "steady") == 0)
        return mode_steady(argv[2], (int)number_argument(argv[3]), number_argument(argv[4]),
                           number_argument(argv[5]), argv[6], argc > 7 ? argv[7] : "butler",
                           argc > 8 ? number_argument(argv[8]) : 100000);
    if (argc >= 5 && strcmp(argv[1], "broker") == 0)
        return mode_broker(argv[2], (int)number_argument(argv[3]), number_argument(argv[4]),
                           argc > 5 ? number_argument(argv[5]) : 1000);
    if (argc >= 7 && strcmp(argv[1], "pub") == 0)
        return mode_pub(argv[2], (int)number_argument(argv[3]), number_argument(argv[4]), argv[5],
                        argv[6], argc > 7 ? number_argument(argv[7]) : 1000);
    if (argc >= 8 && strcmp(argv[1], "count") == 0)
        return mode_count(argv[2], (int)number_argument(argv[3]), argv[4], number_argument(argv[5]),
                          atof(argv[6]), atof(argv[7]));
    fprintf(stderr, "usage: see the comment at the top of bench/mqtt_load.c\n");
    return 2;
}
