/*
 * libFuzzer target for the HTTP API's request-body parsers and converters
 * (bridge/ingress/http_body.c). The first byte selects the parser; the rest is the
 * input. Every parser must return cleanly and leak nothing on any input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/ingress/http_body.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *input = (const char *)data + 1;
    size_t length = size - 1;
    char error[256];
    switch (data[0] % 7) {
    case 0: {
        struct http_publish_body body;
        if (http_body_parse_publish(input, length, &body, error, sizeof error) == BUTLER_OK)
            http_publish_body_clear(&body);
        break;
    }
    case 1: {
        char *payload = NULL, *echo = NULL;
        http_body_parse_slack(input, length, &payload, &echo, error, sizeof error);
        free(payload);
        free(echo);
        break;
    }
    case 2: {
        char *payload = NULL;
        http_body_task_start_payload(
            (data[0] & 0x80) ? "-" : "5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91", input, length,
            (data[0] & 0x40) != 0, "fuzz", &payload, error, sizeof error);
        free(payload);
        break;
    }
    case 3: {
        char *node = NULL;
        http_body_task_result_to_node(input, length, &node);
        free(node);
        break;
    }
    case 4:
    case 5: {
        char out[HTTP_BASE_INPUT_MAX * 2];
        int from = data[0] % 7 == 4 ? 62 : 16;
        http_body_base_convert(input, length, from, from == 62 ? 16 : 62, out,
                               (data[0] & 0x80) ? 8 : sizeof out);
        break;
    }
    case 6: {
        /* Header parsers want NUL-terminated text. */
        char *text = malloc(length + 1);
        if (text == NULL)
            return 0;
        memcpy(text, input, length);
        text[length] = '\0';
        char *items[] = {"secret-token"};
        struct config_string_list tokens = {items, 1};
        http_body_bearer_allowed(text, &tokens);
        http_body_is_json_content_type(text);
        http_body_method("POST", text);
        free(text);
        break;
    }
    }
    return 0;
}
