/*
 * A fast HTTP sink for the routes benchmark (CivetWeb, like Butler's own server):
 * answers every request 200 "ok" (as a Slack incoming webhook does) and counts the
 * requests other than GET /_count, which answers {"count": N}.
 *
 *   http_sink PORT [THREADS]     (runs until SIGTERM/SIGINT)
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <civetweb.h>

#include "bench_common.h"

static atomic_long received;

static int handle(struct mg_connection *connection, void *data)
{
    (void)data;
    const struct mg_request_info *info = mg_get_request_info(connection);
    if (strcmp(info->local_uri, "/_count") == 0 && strcmp(info->request_method, "GET") == 0) {
        char body[64];
        int n = snprintf(body, sizeof body, "{\"count\":%ld}", (long)atomic_load(&received));
        mg_printf(
            connection,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", n,
            body);
        return 200;
    }
    char buffer[8192];
    while (mg_read(connection, buffer, sizeof buffer) > 0)
        ;
    atomic_fetch_add(&received, 1);
    mg_printf(connection,
              "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok");
    return 200;
}

int main(int argc, char **argv)
{
    return bench_serve(argc, argv, handle);
}
