/* libFuzzer target: any bytes through the UDP datagram parser, with a limit
 * taken from the first input byte so the size check is exercised too. The
 * parser must never crash, read out of bounds or leave a field that is not
 * NUL-terminated, over 500 bytes or containing a control character. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/ingress/udp_datagram.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sense_event event;
    size_t limit = 65507;
    if (size > 0 && data[0] == 0xFF)
        limit = 64; /* a small configured udp.max_message_bytes */
    if (udp_parse(data, size, limit, &event) != UDP_DROP_NONE)
        return 0;
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
    }
    return 0;
}
