/*
 * The ceiling for a POST with a body: a minimal CivetWeb server with Butler's
 * options (bench_common.h) that reads the whole body and answers 204, as
 * POST /qlik-cloud/webhook does without the signature check, the parsing and
 * the broker. bench/cloud_webhook_bench.sh runs wrk against this and against
 * Butler with the same bodies and prints the ratio.
 * Usage: post_ceiling PORT [THREADS]   (runs until SIGTERM/SIGINT)
 */
#include <stdio.h>
#include <string.h>

#include <civetweb.h>

#include "bench_common.h"

static int accept_post(struct mg_connection *connection, void *data)
{
    (void)data;
    char buffer[16384];
    while (mg_read(connection, buffer, sizeof buffer) > 0) {
    }
    mg_response_header_start(connection, 204);
    mg_response_header_add(connection, "Cache-Control", "no-store", -1);
    mg_response_header_send(connection);
    return 204;
}

int main(int argc, char **argv)
{
    return bench_serve(argc, argv, accept_post);
}
