#include "bridge/store/execution_ids.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/core/clock.h"
#include "bridge/core/runtime.h"

enum { CLAIM_WAIT_SLICE_MS = 20 };

/* Written at start-up before any user thread exists, read-only afterwards. */
static struct expiring_map *shared_map;

enum butler_status execution_ids_open(struct expiring_map **out)
{
    enum butler_status status = BUTLER_OK;
    if (shared_map == NULL)
        status = expiring_map_create_named("execution_ids", EXECUTION_IDS_MAX, &shared_map);
    *out = status == BUTLER_OK ? shared_map : NULL;
    return status;
}

void execution_ids_close(void)
{
    expiring_map_destroy(shared_map);
    shared_map = NULL;
}

void execution_ids_key(const char *execution_id, const char *outcome, char *out, size_t size)
{
    snprintf(out, size, "%s/%s", outcome, execution_id);
}

void execution_ids_release(const char *execution_id, const char *outcome)
{
    char key[EXECUTION_IDS_KEY_MAX];
    if (shared_map == NULL || execution_id == NULL || execution_id[0] == '\0')
        return;
    execution_ids_key(execution_id, outcome, key, sizeof key);
    expiring_map_remove(shared_map, key);
}

enum butler_status execution_ids_claim(const char *key, uint64_t ttl_ms, uint64_t wait_ms)
{
    if (shared_map == NULL)
        return BUTLER_OK; /* no window: nothing to de-duplicate against */
    for (uint64_t waited = 0;; waited += CLAIM_WAIT_SLICE_MS) {
        char *existing = NULL;
        if (expiring_map_insert_new(shared_map, key, EXECUTION_IDS_PENDING, ttl_ms, &existing) ==
            BUTLER_OK)
            return BUTLER_OK;
        bool pending = existing && strcmp(existing, EXECUTION_IDS_PENDING) == 0;
        free(existing);
        if (!pending || waited >= wait_ms)
            return BUTLER_ERR_DENIED;
        if (butler_runtime_stopping())
            return BUTLER_ERR_SHUTDOWN;
        clock_sleep_ms(CLAIM_WAIT_SLICE_MS);
    }
}

void execution_ids_confirm(const char *execution_id, const char *outcome, uint64_t ttl_ms)
{
    char key[EXECUTION_IDS_KEY_MAX];
    if (shared_map == NULL || execution_id == NULL || execution_id[0] == '\0')
        return;
    execution_ids_key(execution_id, outcome, key, sizeof key);
    expiring_map_put(shared_map, key, NULL, ttl_ms, NULL);
}
