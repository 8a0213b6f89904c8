#include "bridge/core/json.h"

#include <string.h>

bool json_depth_within(const char *text, size_t length, int max_depth)
{
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < length; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth)
                return false;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return true;
}

cJSON *json_parse_exact(const char *text, size_t length, size_t *error_offset)
{
    const char *end = NULL;
    if (!json_depth_within(text, length, JSON_DEPTH_MAX)) {
        if (error_offset)
            *error_offset = 0;
        return NULL;
    }
    cJSON *json = cJSON_ParseWithLengthOpts(text, length, &end, 0);
    if (json == NULL) {
        if (error_offset)
            *error_offset = end ? (size_t)(end - text) : 0;
        return NULL;
    }
    size_t offset = (size_t)(end - text);
    while (offset < length && (text[offset] == ' ' || text[offset] == '\t' ||
                               text[offset] == '\n' || text[offset] == '\r'))
        offset++;
    if (offset != length) {
        cJSON_Delete(json);
        if (error_offset)
            *error_offset = offset;
        return NULL;
    }
    return json;
}

const char *json_string_member(const cJSON *object, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

bool json_has_nul_escape(const char *text, size_t length)
{
    /* A backslash appears only inside strings in valid JSON; each escape is
     * skipped whole so "\\u0000" (an escaped backslash) is not mistaken. */
    for (size_t i = 0; i + 1 < length; i++) {
        if (text[i] != '\\')
            continue;
        if (text[i + 1] == 'u' && i + 5 < length && text[i + 2] == '0' && text[i + 3] == '0' &&
            text[i + 4] == '0' && text[i + 5] == '0')
            return true;
        i++;
    }
    return memchr(text, '\0', length) != NULL;
}
