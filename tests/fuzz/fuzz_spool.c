/*
 * libFuzzer target: recovery of a spool file with arbitrary contents (torn
 * writes, garbage, forged records), and decoding of the records it hands back.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge/store/spool.h"
#include "topics/message.h"

static char directory[64];

static void recovered(void *context, const struct spool_recovered *entry)
{
    size_t *total = context;
    *total += entry->length;
    for (size_t i = 0; i < entry->note_count; i++)
        *total += entry->note_lengths[i];
    char family[256];
    struct topic_message *message = topics_spool_decode(entry->data, entry->length, family);
    if (message) {
        message->spool_id = 0; /* not a live spool: nothing to mark done */
        topic_message_free(message);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (directory[0] == '\0') {
        snprintf(directory, sizeof directory, "/tmp/butler-fuzz-spool-XXXXXX");
        if (mkdtemp(directory) == NULL)
            abort();
    }
    char path[128];
    snprintf(path, sizeof path, "%s/spool.log", directory);
    FILE *file = fopen(path, "wb");
    if (file == NULL)
        abort();
    if (size && fwrite(data, 1, size, file) != size)
        abort();
    fclose(file);
    struct spool_options options = {
        .directory = directory,
        .fsync = false,
        .max_bytes = 1 << 20,
        .done_retention_ms = 600000,
    };
    struct spool *spool = NULL;
    size_t total = 0;
    if (spool_open(&options, recovered, &total, &spool) == BUTLER_OK) {
        uint64_t id;
        if (spool_add(spool, "x", 1, &id) == BUTLER_OK)
            spool_done(spool, id, NULL, 0);
        spool_close(spool);
    }
    return 0;
}
