/*
 * The requestId window (see request_window.h). Values in the map:
 *   ""            the first copy is running: its answer is on the way;
 *   "@<spool id>" held at recovery for that replay, not run yet;
 *   "#<spool id>" answered; the answer is the spool's DONE record;
 *   other text    answered, not spooled: the answer itself (small ones only).
 */
#include "topics/request_window.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/core/clock.h"
#include "bridge/core/json.h"
#include "bridge/core/runtime.h"
#include "bridge/store/expiring_map.h"
#include "bridge/store/spool.h"

enum {
    ANSWER_BYTES_MAX = 4096, /* an unspooled answer kept in memory, at most */
};

#define REPLAY_MARK '@'

struct request_window {
    struct expiring_map *map;
    uint64_t ttl_ms;
};

enum butler_status request_window_create(const char *name, size_t max_requests, int ttl_s,
                                         struct request_window **out)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    struct request_window *window = calloc(1, sizeof *window);
    if (window == NULL)
        goto out;
    window->ttl_ms = (uint64_t)ttl_s * 1000u;
    status = expiring_map_create_named(name, max_requests, &window->map);
    if (status != BUTLER_OK)
        goto out;
    *out = window;
    window = NULL;
out:
    request_window_destroy(window);
    return status;
}

void request_window_destroy(struct request_window *window)
{
    if (window == NULL)
        return;
    expiring_map_destroy(window->map);
    free(window);
}

/* What the window keeps for an answer (see the top). malloc'd, or NULL. */
static char *remembered_value(uint64_t spool_id, const char *answer, size_t length)
{
    char reference[32];
    if (spool_id != 0) {
        snprintf(reference, sizeof reference, "#%llu", (unsigned long long)spool_id);
        return strdup(reference);
    }
    return strndup(length <= ANSWER_BYTES_MAX ? answer : "",
                   length <= ANSWER_BYTES_MAX ? length : 0);
}

/* The earlier answer for a repeated request: NULL while the first is still
 * running (its own answer is on the way). Returns malloc'd text. */
static char *earlier_answer(const char *remembered)
{
    if (remembered == NULL || remembered[0] == '\0' || remembered[0] == REPLAY_MARK)
        return NULL; /* running, or a replay that will run: its answer is on the way */
    if (remembered[0] != '#')
        return strdup(remembered);
    char *end = NULL;
    unsigned long long spool_id = strtoull(remembered + 1, &end, 10);
    unsigned char *data = NULL;
    size_t length = 0;
    struct spool *spool = butler_runtime_current ? butler_runtime_current->spool : NULL;
    if (spool == NULL || end == NULL || *end != '\0' ||
        spool_read_answer(spool, spool_id, &data, &length) != BUTLER_OK)
        return NULL; /* answered, but not yet recorded done: its answer is on the way */
    char *text = strndup((const char *)data, length);
    free(data);
    return text;
}

bool request_window_hold_replay(struct request_window *window, const char *request_id,
                                uint64_t spool_id)
{
    char mark[32];
    snprintf(mark, sizeof mark, "%c%llu", REPLAY_MARK, (unsigned long long)spool_id);
    /* The first spooled copy holds the requestId; an answer recovered from a
     * DONE record already holds it (insert_new then leaves it). */
    char *held = NULL;
    bool now =
        expiring_map_insert_new(window->map, request_id, mark, window->ttl_ms, &held) == BUTLER_OK;
    free(held);
    return now;
}

void request_window_recovered_answer(struct request_window *window, const char *answer,
                                     size_t length, uint64_t answered_wall_ms, uint64_t spool_id)
{
    cJSON *json = json_parse_exact(answer, length, NULL);
    const cJSON *request_id = cJSON_GetObjectItemCaseSensitive(json, "requestId");
    uint64_t age = clock_wall_ms() - answered_wall_ms;
    if (cJSON_IsString(request_id) && age < window->ttl_ms) {
        char *value = remembered_value(spool_id, answer, length);
        if (value)
            expiring_map_put(window->map, request_id->valuestring, value, window->ttl_ms - age,
                             NULL);
        free(value);
    }
    cJSON_Delete(json);
}

bool request_window_repeat(struct request_window *window, const char *request_id,
                           const struct topic_message *message, char **earlier_out)
{
    *earlier_out = NULL;
    char *remembered = NULL;
    if (expiring_map_insert_new(window->map, request_id, "", window->ttl_ms, &remembered) ==
        BUTLER_OK)
        return false;
    if (message->replay && remembered && remembered[0] == REPLAY_MARK) {
        char *end = NULL;
        unsigned long long holder = strtoull(remembered + 1, &end, 10);
        if (end && *end == '\0' && holder == message->spool_id) {
            /* Held for this replay at recovery: it runs now ("" while running). */
            expiring_map_put(window->map, request_id, "", window->ttl_ms, NULL);
            free(remembered);
            return false;
        }
    }
    *earlier_out = earlier_answer(remembered);
    free(remembered);
    return true;
}

bool request_window_answered(struct request_window *window, const char *request_id,
                             uint64_t spool_id, const char *answer)
{
    char *value = remembered_value(spool_id, answer, strlen(answer));
    bool evicted = false;
    if (value)
        expiring_map_put(window->map, request_id, value, window->ttl_ms, &evicted);
    free(value);
    return evicted;
}
