/* libFuzzer target: any bytes through the UDP datagram parser, with a limit
 * taken from the first input byte so the size check is exercised too. The
 * parser must never crash, read out of bounds or leave a field that is not
 * NUL-terminated, over 500 bytes, containing a control character, or not
 * valid UTF-8 (invalid input is decoded with U+FFFD, which grows the text:
 * the caps apply to the decoded text). A replacement is reported only when
 * the input was not valid UTF-8. The UTF-8 check is the task-start parser's
 * validator, a separate implementation from the decoder under test. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/ingress/udp_datagram.h"
#include "bridge/model/task_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sense_event event;
    size_t limit = 65507;
    if (size > 0 && data[0] == 0xFF)
        limit = 64; /* a small configured udp.max_message_bytes */
    if (udp_parse(data, size, limit, &event) != UDP_DROP_NONE)
        return 0;
    if (event.storage_used > sizeof event.storage)
        abort();
    bool replaced = false;
    for (size_t i = 0; i < SENSE_FIELD_COUNT; i++) {
        const char *field = event.fields[i];
        if (field < event.storage || field >= event.storage + sizeof event.storage)
            abort();
        size_t length = strlen(field);
        if (length > SENSE_FIELD_MAX_BYTES)
            abort();
        for (size_t k = 0; k < length; k++)
            if ((unsigned char)field[k] < 0x20 || field[k] == 0x7F)
                abort();
        if (!task_valid_utf8((const unsigned char *)field, length))
            abort();
        replaced |= strstr(field, "\xEF\xBF\xBD") != NULL;
    }
    /* NUL bytes are valid UTF-8 but the oracle refuses them: only judge
     * inputs without any. */
    if (memchr(data, 0, size) == NULL && task_valid_utf8(data, size) && event.utf8_replaced)
        abort();
    if (event.utf8_replaced && !replaced)
        abort();
    return 0;
}
