#include "bridge/store/execution_ids.h"

#include <stddef.h>
#include <stdio.h>

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
