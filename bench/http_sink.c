/*
 * A fast HTTP sink for the routes benchmark (CivetWeb, like Butler's own server):
 * answers every request 200 "ok" (as a Slack incoming webhook does) and counts the
 * requests other than GET /_count, which answers {"count": N}.
 *
 *   http_sink PORT [THREADS]     (runs until SIGTERM/SIGINT)
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <civetweb.h>

static volatile sig_atomic_t stop;
static atomic_long received;

static void on_signal(int signal_number)
{
    (void)signal_number;
    stop = 1;
}

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
    mg_set_request_handler(context, "/", handle, NULL);
    while (!stop)
        pause();
    mg_stop(context);
    mg_exit_library();
    return 0;
}
