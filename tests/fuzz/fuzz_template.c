/* libFuzzer target: input = template '\0' JSON message. Rendering must stay
 * within its bound and never crash, whatever either part holds, in every body
 * mode (the input's length picks plain, JSON or Slack). In JSON mode, a
 * template that is a JSON document with placeholders only as whole values
 * must render to valid JSON whatever the message holds (when not cut). */
#include <stdbool.h>
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
    bool truncated = false;
    struct template_options options = {.body = (enum template_body)(size % 3)};
    if (template_render_for(copy, &options, message, json, strlen(json), FUZZ_OUTPUT_MAX, &out,
                            &truncated) == BUTLER_OK) {
        if (strlen(out) > FUZZ_OUTPUT_MAX)
            abort();
    }
    free(out);
    /* A fixed JSON template with this message: every value must stay in its place. */
    options.body = TEMPLATE_BODY_JSON;
    out = NULL;
    if (template_render_for("{\"a\": \"{{x}}\", \"b\": {{y}}}", &options, message, json,
                            strlen(json), FUZZ_OUTPUT_MAX, &out, &truncated) == BUTLER_OK &&
        !truncated) {
        cJSON *parsed = cJSON_Parse(out);
        if (parsed == NULL || cJSON_GetArraySize(parsed) != 2)
            abort();
        cJSON_Delete(parsed);
    }
    free(out);
    cJSON_Delete(message);
    free(copy);
    return 0;
}
