/*
 * The ceiling for Butler's HTTP API: a minimal CivetWeb server with the same
 * options Butler uses (num_threads, tcp_nodelay 1, keep-alive) answering the
 * /v4/butlerping JSON from one handler. bench/http_bench.sh runs wrk against
 * this and against Butler and prints the ratio.
 * Usage: civetweb_ceiling PORT [THREADS]   (runs until SIGTERM/SIGINT)
 */
#include <stdio.h>
#include <string.h>

#include <civetweb.h>

#include "bench_common.h"

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
    return bench_serve(argc, argv, hello);
}
