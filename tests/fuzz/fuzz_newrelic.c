/* libFuzzer target: input = one byte (0 event, else metric) + a request body.
 * Building the New Relic body must never crash or leak, whatever the body
 * holds, and a body it builds must be JSON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bridge/core/json.h"
#include "topics/newrelic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static char name[] = "service", value[] = "butler";
    struct config_custom_property attribute = {name, value};
    struct config_custom_property_list attributes = {&attribute, 1};
    cJSON *request = json_parse_exact((const char *)data + 1, size - 1, NULL);
    char *body = NULL;
    char error[512] = "";
    if (newrelic_build_body(data[0] != 0, request, &attributes, 1767225600000u, &body, error,
                            sizeof error) == BUTLER_OK) {
        cJSON *check = cJSON_Parse(body);
        if (check == NULL)
            abort();
        cJSON_Delete(check);
    }
    free(body);
    cJSON_Delete(request);
    return 0;
}
