/* libFuzzer target: input = a Qlik Cloud webhook body. The envelope parser
 * must never crash, leak or read past the input, and what it accepts as a
 * reload event must have its ids (the app id usable as a topic level). The
 * signature check runs over the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/model/cloud_event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct cloud_event event;
    const char *reason = NULL;
    enum cloud_parse_result result = cloud_event_parse((const char *)data, size, &event, &reason);
    if (result != CLOUD_PARSE_OK && reason == NULL)
        abort();
    if (result == CLOUD_PARSE_OK && event.kind != CLOUD_EVENT_OTHER &&
        (event.app_id[0] == '\0' || strpbrk(event.app_id, "/+#") || event.reload_id[0] == '\0' ||
         event.event_id[0] == '\0' || event.tenant_id[0] == '\0' ||
         event.error_count > CLOUD_ERRORS_MAX))
        abort();
    /* A fixed 64-digit header: the check must simply not crash on any body. */
    (void)cloud_signature_matches(
        "fuzz-secret", data, size,
        "0000000000000000000000000000000000000000000000000000000000000000");
    return 0;
}
