/* Small pieces the bench tools share (header-only: each tool is one file built with gcc). */
#ifndef BUTLER_BENCH_COMMON_H
#define BUTLER_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>

/* Command-line numbers: the whole argument must be a decimal integer. */
static inline long number_argument(const char *text)
{
    char *end = NULL;
    long value = strtol(text, &end, 10);
    if (end == text || *end != '\0') {
        fprintf(stderr, "not a number: %s\n", text);
        exit(2);
    }
    return value;
}

#ifdef CIVETWEB_HEADER_INCLUDED
#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t bench_stop;

static inline void bench_on_signal(int signal_number)
{
    (void)signal_number;
    bench_stop = 1;
}

/*
 * `PROGRAM PORT [THREADS]`: serve `handler` on 127.0.0.1:PORT with Butler's
 * CivetWeb options (tcp_nodelay, keep-alive, 32 threads) until SIGTERM/SIGINT.
 */
static inline int bench_serve(int argc, char **argv, mg_request_handler handler)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [THREADS]\n", argv[0]);
        return 2;
    }
    char ports[64];
    snprintf(ports, sizeof ports, "127.0.0.1:%s", argv[1]);
    const char *options[] = {"listening_ports",
                             ports,
                             "num_threads",
                             argc > 2 ? argv[2] : "32",
                             "tcp_nodelay",
                             "1",
                             "enable_keep_alive",
                             "yes",
                             "keep_alive_timeout_ms",
                             "5000",
                             NULL};
    signal(SIGTERM, bench_on_signal);
    signal(SIGINT, bench_on_signal);
    mg_init_library(0);
    struct mg_callbacks callbacks;
    memset(&callbacks, 0, sizeof callbacks);
    struct mg_context *context = mg_start(&callbacks, NULL, options);
    if (context == NULL) {
        fprintf(stderr, "cannot listen on %s\n", ports);
        return 1;
    }
    mg_set_request_handler(context, "/", handler, NULL);
    while (!bench_stop)
        pause();
    mg_stop(context);
    mg_exit_library();
    return 0;
}
#endif

#endif
