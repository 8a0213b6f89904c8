/*
 * The ceiling for Butler's HTTP API: a minimal CivetWeb server with the same
 * options Butler uses (num_threads, tcp_nodelay 1, keep-alive) answering the
 * /v4/butlerping JSON from one handler. bench/http_bench.sh runs wrk against
 * this and against Butler and prints the ratio.
 * Usage: civetweb_ceiling PORT [THREADS]   (runs until SIGTERM/SIGINT)
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <civetweb.h>

static volatile sig_atomic_t stop;

static void on_signal(int signal_number)
{
    (void)signal_number;
    stop = 1;
}

static int hello(struct mg_connection *connection, void *data)
{
    (void)data;
    static const char body[] = "{\"response\":\"Butler reporting for duty\",\"butlerVersion\":"
                               "\"0.1.0\"}";
    mg_response_header_start(connection, 200);
    mg_response_header_add(connection, "Content-Type", "application/json; charset=utf-8", -1);
    mg_response_header_add(connection, "Content-Length", "64", -1);
    mg_response_header_add(connection, "Cache-Control", "no-store", -1);
    mg_response_header_send(connection);
    mg_write(connection, body, sizeof body - 1);
    return 200;
}

int main(int argc, char **argv)
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
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    mg_init_library(0);
    struct mg_callbacks callbacks;
    memset(&callbacks, 0, sizeof callbacks);
    struct mg_context *context = mg_start(&callbacks, NULL, options);
    if (context == NULL) {
        fprintf(stderr, "cannot listen on %s\n", ports);
        return 1;
    }
    mg_set_request_handler(context, "/", hello, NULL);
    while (!stop)
        pause();
    mg_stop(context);
    mg_exit_library();
    return 0;
}
