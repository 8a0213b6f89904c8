/*
 * Paced UDP sender of Sense log-appender datagrams (butler-v15
 * /scheduler-task-failed/ layout, as tests/sim/appender_emu.py renders it), each
 * with a distinct ExecutionId so Butler's dedup keeps every one.
 *
 *   udp_load HOST PORT COUNT RATE [SEED [LAYOUT]]
 *
 * LAYOUT "proxy": the Sense proxy's /proxy-session/ "Start session" datagram
 * (8 fields, as tests/sim/appender_emu.py profile proxy-v5 renders it), each
 * for a distinct user <SEED><n>, so every datagram adds an active user.
 *
 * Sends in 1 ms slices of RATE/1000 datagrams. Prints one JSON line:
 * {"sent","seconds","rate"} (the achieved rate).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "bench_common.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST PORT COUNT RATE [SEED [proxy]]\n", argv[0]);
        return 2;
    }
    long count = number_argument(argv[3]);
    double rate = atof(argv[4]);
    unsigned seed = argc > 5 ? (unsigned)number_argument(argv[5]) : (unsigned)getpid();
    int proxy = argc > 6 && strcmp(argv[6], "proxy") == 0;
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)(int)number_argument(argv[2]))};
    inet_pton(AF_INET, argv[1], &to.sin_addr);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int big = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    connect(fd, (struct sockaddr *)&to, sizeof to);
    long per_slice = (long)(rate / 1000.0);
    if (per_slice < 1)
        per_slice = 1;
    double slice = per_slice / rate;
    double t0 = now_s();
    long sent = 0;
    char buf[1024];
    while (sent < count) {
        for (long k = 0; k < per_slice && sent < count; k++, sent++) {
            int len = proxy
                          ? snprintf(buf, sizeof buf,
                                     "/proxy-session/;sense-proxy-01;Start session;CORP;u%x-%lx;"
                                     "AppAccess;/hub/;Start session for user 'CORP\\u%x-%lx'",
                                     seed, sent, seed, sent)
                          : snprintf(buf, sizeof buf,
                                     "/scheduler-task-failed/;sense-node-01;Reload Sales Dashboard;"
                                     "Sales Dashboard;INTERNAL\\sa_scheduler;"
                                     "5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;"
                                     "1e2feb89-414c-443c-9027-c4d1c386bbc4;2026-11-27 20:31:54,760;"
                                     "ERROR;%08x-7311-48a3-82ce-%012lx;"
                                     "Task finished with state FinishedFail. Max retries reached.",
                                     seed, sent);
            send(fd, buf, (size_t)len, 0);
        }
        if (sent >= count)
            break;
        double due = t0 + (double)sent / (double)per_slice * slice;
        double wait = due - now_s();
        if (wait > 0) {
            struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
    double s = now_s() - t0;
    printf("{\"sent\":%ld,\"seconds\":%.3f,\"rate\":%.0f}\n", sent, s, sent / s);
    return 0;
}
