/*
 * What a thread wake-up costs on this machine: two threads pass one byte back
 * and forth over two pipes (each side sleeps in read until the other writes),
 * first free to run on any CPU, then both pinned to CPU 0. Prints µs per round
 * trip (two wake-ups) for each, so a per-start figure that counts wake-ups can
 * be set beside it.
 *
 *   wake_cost [ROUND_TRIPS]      (default 100000)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"

static int to_peer[2], to_main[2];
static long round_trips = 100000;

static void *peer(void *argument)
{
    (void)argument;
    char byte;
    for (long i = 0; i < round_trips; i++)
        if (read(to_peer[0], &byte, 1) != 1 || write(to_main[1], &byte, 1) != 1)
            break;
    return NULL;
}

static double run(int pin)
{
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    if (pin) {
        cpu_set_t cpus;
        CPU_ZERO(&cpus);
        CPU_SET(0, &cpus);
        pthread_attr_setaffinity_np(&attributes, sizeof cpus, &cpus);
        pthread_setaffinity_np(pthread_self(), sizeof cpus, &cpus);
    }
    pthread_create(&thread, &attributes, peer, NULL);
    struct timespec t0, t1;
    char byte = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < round_trips; i++)
        if (write(to_peer[1], &byte, 1) != 1 || read(to_main[0], &byte, 1) != 1)
            break;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    pthread_join(thread, NULL);
    pthread_attr_destroy(&attributes);
    return ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e3 / round_trips;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        round_trips = number_argument(argv[1]);
    if (round_trips <= 0 || pipe(to_peer) != 0 || pipe(to_main) != 0)
        return 2;
    double any_cpu = run(0);
    double one_cpu = run(1);
    printf("{\"round_trips\":%ld,\"us_per_round_trip_any_cpu\":%.1f,"
           "\"us_per_round_trip_one_cpu\":%.1f}\n",
           round_trips, any_cpu, one_cpu);
    return 0;
}
