/* libFuzzer target: app request payloads (topics/app.c) for every operation,
 * engine messages and engine URLs (bridge/clients/engine.c). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/clients/engine.h"
#include "bridge/model/app_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char error[256];
    struct app_request request;
    for (int operation = APP_OP_RELOAD; operation <= APP_OP_DUMP; operation++)
        (void)app_request_parse((enum app_operation)operation, data, size, &request, error,
                                sizeof error);
    struct engine_message message;
    if (engine_message_parse((const char *)data, size, &message) == BUTLER_OK)
        engine_message_clear(&message);
    char *url = malloc(size + 1);
    if (url != NULL) {
        memcpy(url, data, size);
        url[size] = '\0';
        char host[256];
        int port;
        bool tls;
        (void)engine_parse_url(url, host, sizeof host, &port, &tls);
        free(url);
    }
    return 0;
}
