/* libFuzzer target: input = template '\0' JSON message. Rendering must stay
 * within its bound and never crash, whatever either part holds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "topics/template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { FUZZ_OUTPUT_MAX = 4096 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    size_t template_length = strlen(copy);
    const char *json = template_length < size ? copy + template_length + 1 : "";
    cJSON *message = cJSON_Parse(json);
    char *out = NULL;
    if (template_render(copy, message, json, strlen(json), FUZZ_OUTPUT_MAX, &out, NULL) ==
            BUTLER_OK &&
        strlen(out) > FUZZ_OUTPUT_MAX)
        abort();
    free(out);
    cJSON_Delete(message);
    free(copy);
    return 0;
}
