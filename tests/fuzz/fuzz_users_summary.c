/* libFuzzer target: any bytes as the retained active-user summary a restart
 * rebuilds from (users_state_load, topics/users_state.c, with its own JSON
 * reader). It must never crash, read out of bounds or recurse without end;
 * what it accepts must be JSON cJSON accepts too (a separate parser), and the
 * state must stay within its cap and give a summary cJSON can read. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "topics/users_state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct users_state *state = NULL;
    if (users_state_create(50, &state) != BUTLER_OK)
        abort();
    size_t added = 0;
    enum butler_status status = users_state_load(state, (const char *)data, size, 1000, &added);
    if (status == BUTLER_OK) {
        /* cJSON reads a NUL-terminated copy; inputs with a NUL byte are not judged. */
        if (memchr(data, 0, size) == NULL) {
            cJSON *json = cJSON_ParseWithLength((const char *)data, size);
            if (json == NULL || !cJSON_IsObject(json))
                abort();
            cJSON_Delete(json);
        }
        if (added != users_state_count(state) || added > 50)
            abort();
    }
    size_t length = 0;
    char *text = users_state_summary(state, 0, &length);
    if (text == NULL)
        abort();
    cJSON *summary = cJSON_ParseWithLength(text, length);
    if (summary == NULL)
        abort();
    cJSON_Delete(summary);
    users_state_summary_free(text);
    users_state_free(state);
    return 0;
}
