/*
 * libFuzzer target for the configuration loader: any byte string must load
 * or be refused with errors, never crash, hang or leak. The environment is
 * off so runs are reproducible; *_file keys may still name files, which the
 * loader opens non-blocking and only when regular.
 */
#include "config/config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *sink;
    struct butler_config config;

    if (!sink)
        sink = fopen("/dev/null", "w");
    if (config_load_buffer("fuzz.yaml", (const char *)data, size, false, &config, sink) ==
        BUTLER_OK) {
        /* Printing walks every field, including lists and routes. */
        config_print(&config, sink);
        config_free(&config);
    }
    return 0;
}
