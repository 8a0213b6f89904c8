/*
 * The proxy port's own cost per datagram, without the broker: how many
 * session datagrams a second one core parses (bridge/ingress/proxy_datagram.c)
 * and applies to the active-user state (topics/users_state.c), measured side
 * by side with the scheduler port's parser (udp_parse) on its datagram in the
 * same run. The broker is what limits the end-to-end rate on a shared machine
 * (see bench.py's users scenario); this says how far below the ceiling the
 * proxy path's own work is.
 *
 *   proxy_path [N]     (default 1,000,000 datagrams each; prints one JSON line)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge/ingress/proxy_datagram.h"
#include "bridge/ingress/udp_datagram.h"
#include "topics/users_state.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 1000000;
    static struct proxy_event proxy;
    static struct sense_event sense;
    struct users_state *state = NULL;
    if (n <= 0 || users_state_create(100000, &state) != BUTLER_OK)
        return 2;
    char text[512];
    long accepted = 0;
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        int length = snprintf(text, sizeof text,
                              "/proxy-session/;sense-proxy-01;Start session;CORP;u%lx;AppAccess;"
                              "/hub/;Start session for user 'CORP\\u%lx'",
                              i, i);
        if (proxy_parse((const unsigned char *)text, (size_t)length, 65507, &proxy) !=
            UDP_DROP_NONE)
            continue;
        struct users_change change = {0};
        users_state_start(state, proxy.fields[PROXY_FIELD_USER_DIRECTORY],
                          proxy.fields[PROXY_FIELD_USER_ID], proxy.fields[PROXY_FIELD_HOST],
                          (uint64_t)i, &change);
        accepted++;
    }
    double proxy_s = now_s() - t0;
    long parsed = 0;
    t0 = now_s();
    for (long i = 0; i < n; i++) {
        int length = snprintf(text, sizeof text,
                              "/scheduler-task-failed/;sense-node-01;Reload Sales Dashboard;"
                              "Sales Dashboard;INTERNAL\\sa_scheduler;"
                              "5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;"
                              "1e2feb89-414c-443c-9027-c4d1c386bbc4;2026-11-27 20:31:54,760;"
                              "ERROR;0000abcd-7311-48a3-82ce-%012lx;"
                              "Task finished with state FinishedFail. Max retries reached.",
                              i);
        if (udp_parse((const unsigned char *)text, (size_t)length, 65507, &sense) == UDP_DROP_NONE)
            parsed++;
    }
    double sense_s = now_s() - t0;
    printf("{\"datagrams\":%ld,\"proxy_accepted\":%ld,\"proxy_per_s\":%.0f,"
           "\"scheduler_parsed\":%ld,\"scheduler_per_s\":%.0f,\"active_users\":%zu}\n",
           n, accepted, n / proxy_s, parsed, n / sense_s, users_state_count(state));
    users_state_free(state);
    return 0;
}
