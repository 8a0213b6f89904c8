/*
 * The QRS simulator's own ceiling for POST /qrs/task/{id}/start, measured the way
 * Butler calls it: THREADS threads (Butler's task_start.workers, default 4), each
 * reusing one libcurl easy handle (one mutual-TLS keep-alive connection), a fresh
 * Xrfkey header and query per call, N calls in total.
 *
 *   qrs_ceiling URL PKI_DIR TASK_ID N [THREADS [RATE]]
 *
 * RATE > 0 paces the calls at RATE per second in total (each thread keeps its
 * share on an absolute schedule, sleeping between calls): the same HTTPS call
 * at a steady rate, to set beside Butler's cost per start at that rate.
 * Also prints the process's own CPU time per call (user + system, getrusage).
 * URL is e.g. https://127.0.0.1:4242; PKI_DIR holds client.pem, client_key.pem and
 * root.pem. Prints one JSON line: {"calls","ok","seconds","rate"}.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "bench_common.h"

static const char *base, *pki, *task;
static atomic_long next_call, ok_calls;
static long total;
static long rate; /* calls per second in total; 0 = as fast as answered */
static struct timespec started_at;

/* With a rate: sleep until call number `i` is due (absolute schedule). */
static void wait_turn(long i)
{
    if (rate <= 0)
        return;
    long long due_ns = (long long)i * 1000000000LL / rate;
    struct timespec due = started_at;
    due.tv_sec += (time_t)(due_ns / 1000000000LL);
    due.tv_nsec += (long)(due_ns % 1000000000LL);
    if (due.tv_nsec >= 1000000000L) {
        due.tv_sec++;
        due.tv_nsec -= 1000000000L;
    }
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL);
}

static size_t discard(char *p, size_t s, size_t n, void *u)
{
    (void)p, (void)u;
    return s * n;
}

static void *worker(void *arg)
{
    (void)arg;
    char cert[1024], key[1024], ca[1024];
    snprintf(cert, sizeof cert, "%s/client.pem", pki);
    snprintf(key, sizeof key, "%s/client_key.pem", pki);
    snprintf(ca, sizeof ca, "%s/root.pem", pki);
    CURL *easy = curl_easy_init();
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(easy, CURLOPT_SSLCERT, cert);
    curl_easy_setopt(easy, CURLOPT_SSLKEY, key);
    curl_easy_setopt(easy, CURLOPT_CAINFO, ca);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, 0L);
    unsigned seed = (unsigned)(uintptr_t)&easy;
    for (;;) {
        long i = atomic_fetch_add(&next_call, 1);
        if (i >= total)
            break;
        wait_turn(i);
        char xrf[17], url[1024], xrf_header[64];
        for (int k = 0; k < 16; k++)
            xrf[k] = "abcdefghijklmnopqrstuvwxyz012345"[rand_r(&seed) % 32];
        xrf[16] = 0;
        snprintf(url, sizeof url, "%s/qrs/task/%s/start?xrfkey=%s", base, task, xrf);
        snprintf(xrf_header, sizeof xrf_header, "X-Qlik-Xrfkey: %s", xrf);
        struct curl_slist *h = NULL;
        h = curl_slist_append(h, xrf_header);
        h = curl_slist_append(h, "X-Qlik-User: UserDirectory=INTERNAL; UserId=sa_repository");
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(easy, CURLOPT_URL, url);
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h);
        long code = 0;
        if (curl_easy_perform(easy) == CURLE_OK &&
            curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code / 100 == 2)
            atomic_fetch_add(&ok_calls, 1);
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, NULL);
        curl_slist_free_all(h);
    }
    curl_easy_cleanup(easy);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s URL PKI_DIR TASK_ID N [THREADS [RATE]]\n", argv[0]);
        return 2;
    }
    base = argv[1], pki = argv[2], task = argv[3], total = number_argument(argv[4]);
    int threads = argc > 5 ? (int)number_argument(argv[5]) : 4;
    rate = argc > 6 ? number_argument(argv[6]) : 0;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_t tid[64];
    struct timespec t0, t1;
    struct rusage usage0, usage1;
    getrusage(RUSAGE_SELF, &usage0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    started_at = t0;
    for (int i = 0; i < threads && i < 64; i++)
        pthread_create(&tid[i], NULL, worker, NULL);
    for (int i = 0; i < threads && i < 64; i++)
        pthread_join(tid[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    getrusage(RUSAGE_SELF, &usage1);
    double s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    double user_us = (usage1.ru_utime.tv_sec - usage0.ru_utime.tv_sec) * 1e6 +
                     (usage1.ru_utime.tv_usec - usage0.ru_utime.tv_usec);
    double system_us = (usage1.ru_stime.tv_sec - usage0.ru_stime.tv_sec) * 1e6 +
                       (usage1.ru_stime.tv_usec - usage0.ru_stime.tv_usec);
    printf("{\"calls\":%ld,\"ok\":%ld,\"threads\":%d,\"paced_rate\":%ld,\"seconds\":%.3f,"
           "\"rate\":%.0f,\"cpu_us_per_call\":%.1f,\"user_us_per_call\":%.1f}\n",
           total, (long)ok_calls, threads, rate, s, total / s, (user_us + system_us) / total,
           user_us / total);
    curl_global_cleanup();
    return ok_calls == total ? 0 : 1;
}
