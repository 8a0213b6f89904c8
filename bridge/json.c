#include "bridge/json.h"

cJSON *json_parse_exact(const char *text, size_t length, size_t *error_offset)
{
    const char *end = NULL;
    cJSON *json = cJSON_ParseWithLengthOpts(text, length, &end, 0);
    if (json == NULL) {
        if (error_offset)
            *error_offset = end ? (size_t)(end - text) : 0;
        return NULL;
    }
    size_t offset = (size_t)(end - text);
    while (offset < length && (text[offset] == ' ' || text[offset] == '\t' || text[offset] == '\n' ||
                               text[offset] == '\r'))
        offset++;
    if (offset != length) {
        cJSON_Delete(json);
        if (error_offset)
            *error_offset = offset;
        return NULL;
    }
    return json;
}
