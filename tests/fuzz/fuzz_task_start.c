/* libFuzzer target: task-start payload parser, in its three entry modes. */
#include <stddef.h>
#include <stdint.h>

#include "bridge/model/task_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const topic_ids[] = {NULL, "5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91"};
    char error[256];
    for (int mode = 0; mode < 3; mode++) {
        struct task_request request;
        if (task_request_parse(mode == 1 ? topic_ids[1] : NULL, mode == 2, data, size, &request,
                               error, sizeof error) == BUTLER_OK)
            task_request_clear(&request);
    }
    return 0;
}
