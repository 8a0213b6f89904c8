/* libFuzzer target: any bytes through the proxy datagram parser, with a limit
 * taken from the first input byte so the size check is exercised too. The
 * parser must never crash or read out of bounds, and an accepted event must
 * have every field inside its storage, NUL-terminated, at most 500 bytes,
 * free of control characters and valid UTF-8, a known kind and a non-empty
 * user directory and id. The UTF-8 check is the task-start parser's
 * validator, a separate implementation from the decoder under test. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/ingress/proxy_datagram.h"
#include "bridge/model/task_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct proxy_event event;
    size_t limit = 65507;
    if (size > 0 && data[0] == 0xFF)
        limit = 64; /* a small configured udp.max_message_bytes */
    if (proxy_parse(data, size, limit, &event) != UDP_DROP_NONE)
        return 0;
    if (size > limit || event.storage_used > sizeof event.storage)
        abort();
    if (event.kind > PROXY_CONNECTION_CLOSE)
        abort();
    bool replaced = false;
    for (size_t i = 0; i < PROXY_FIELD_COUNT; i++) {
        const char *field = event.fields[i];
        if (field < event.storage || field >= event.storage + sizeof event.storage)
            abort();
        size_t length = strlen(field);
        if (length > PROXY_FIELD_MAX_BYTES)
            abort();
        for (size_t k = 0; k < length; k++)
            if ((unsigned char)field[k] < 0x20 || field[k] == 0x7F)
                abort();
        if (!task_valid_utf8((const unsigned char *)field, length))
            abort();
        replaced |= strstr(field, "\xEF\xBF\xBD") != NULL;
    }
    if (event.fields[PROXY_FIELD_USER_DIRECTORY][0] == '\0' ||
        event.fields[PROXY_FIELD_USER_ID][0] == '\0')
        abort();
    if (memchr(data, 0, size) == NULL && task_valid_utf8(data, size) && event.utf8_replaced)
        abort();
    if (event.utf8_replaced && !replaced)
        abort();
    return 0;
}
