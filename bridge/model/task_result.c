/*
 * Waiters for task-start results (see task_result.h). One mutex guards the
 * slot table; one condition variable (on the monotonic clock) is broadcast
 * when any answer lands, and each waiter checks its own slot. With at most
 * TASK_RESULT_WAITERS_MAX waiters a broadcast costs little and keeps the
 * table simple.
 */
#include "bridge/model/task_result.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "bridge/core/json.h"
#include "bridge/core/metrics.h"
#include "bridge/model/task_request.h"

struct task_result_waiter {
    bool used;
    bool finished; /* collects <root>/task/finished messages instead of one answer */
    char request_id[TASK_REQUEST_ID_MAX + 1];
    char *result; /* set by the network thread; taken by the waiter */
    size_t result_length;
    cJSON *collected; /* finished: array of finished objects, at most TASK_FINISHED_MAX */
};

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t answered;
static pthread_once_t answered_once = PTHREAD_ONCE_INIT;
static struct task_result_waiter slots[TASK_RESULT_WAITERS_MAX];
static size_t slots_used;

/* The condition variable waits on the monotonic clock so a wall-clock step
 * cannot stretch or cut an HTTP request's wait. */
static void init_condition(void)
{
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&answered, &attributes);
    pthread_condattr_destroy(&attributes);
}

enum butler_status task_result_register(const char *request_id, struct task_result_waiter **out)
{
    pthread_once(&answered_once, init_condition);
    *out = NULL;
    if (request_id == NULL || strlen(request_id) > TASK_REQUEST_ID_MAX)
        return BUTLER_ERR_INVALID;
    enum butler_status status = BUTLER_ERR_FULL;
    pthread_mutex_lock(&table_lock);
    for (size_t i = 0; i < TASK_RESULT_WAITERS_MAX; i++) {
        if (!slots[i].used) {
            slots[i].used = true;
            slots[i].finished = false;
            slots[i].collected = NULL;
            slots[i].result = NULL;
            slots[i].result_length = 0;
            strncpy(slots[i].request_id, request_id, TASK_REQUEST_ID_MAX);
            slots[i].request_id[TASK_REQUEST_ID_MAX] = '\0';
            slots_used++;
            *out = &slots[i];
            status = BUTLER_OK;
            break;
        }
    }
    pthread_mutex_unlock(&table_lock);
    return status;
}

enum butler_status task_result_wait(struct task_result_waiter *waiter, int timeout_ms,
                                    char **result_out, size_t *length_out)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    *result_out = NULL;
    *length_out = 0;
    pthread_mutex_lock(&table_lock);
    while (waiter->result == NULL) {
        if (pthread_cond_timedwait(&answered, &table_lock, &deadline) != 0 &&
            waiter->result == NULL)
            break;
    }
    enum butler_status status = BUTLER_ERR_TIMEOUT;
    if (waiter->result != NULL) {
        *result_out = waiter->result;
        *length_out = waiter->result_length;
        waiter->result = NULL;
        status = BUTLER_OK;
    }
    pthread_mutex_unlock(&table_lock);
    return status;
}

void task_result_release(struct task_result_waiter *waiter)
{
    if (waiter == NULL)
        return;
    pthread_mutex_lock(&table_lock);
    free(waiter->result);
    waiter->result = NULL;
    cJSON_Delete(waiter->collected);
    waiter->collected = NULL;
    waiter->used = false;
    slots_used--;
    pthread_mutex_unlock(&table_lock);
}

size_t task_result_waiting(void)
{
    pthread_mutex_lock(&table_lock);
    size_t count = slots_used;
    pthread_mutex_unlock(&table_lock);
    return count;
}

/*
 * Network thread. Cheap when nobody waits (the common case for answers to
 * MQTT-originated requests): no parsing at all. Otherwise the requestId is
 * read and the payload copied to the waiter; the copy is bounded by
 * TASK_MESSAGE_MAX.
 */
void task_result_on_message(const struct mqtt_message *message, void *context)
{
    (void)context;
    pthread_once(&answered_once, init_condition);
    pthread_mutex_lock(&table_lock);
    size_t waiting = slots_used;
    pthread_mutex_unlock(&table_lock);
    if (waiting == 0 || message->payload_length > TASK_MESSAGE_MAX)
        return;
    cJSON *root = json_parse_exact((const char *)message->payload, message->payload_length, NULL);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "requestId");
    if (!cJSON_IsString(id)) {
        cJSON_Delete(root);
        return;
    }
    char *copy = malloc(message->payload_length + 1);
    if (copy != NULL) {
        memcpy(copy, message->payload, message->payload_length);
        copy[message->payload_length] = '\0';
    }
    bool delivered = false;
    pthread_mutex_lock(&table_lock);
    for (size_t i = 0; i < TASK_RESULT_WAITERS_MAX && copy != NULL && !delivered; i++) {
        /* The first answer wins; a duplicate answer (redelivery) is ignored. */
        if (slots[i].used && !slots[i].finished && slots[i].result == NULL &&
            strcmp(slots[i].request_id, id->valuestring) == 0) {
            slots[i].result = copy;
            slots[i].result_length = message->payload_length;
            delivered = true;
        }
    }
    if (delivered)
        pthread_cond_broadcast(&answered);
    pthread_mutex_unlock(&table_lock);
    if (!delivered)
        free(copy);
    cJSON_Delete(root);
}

enum butler_status task_result_register_finished(const char *request_id,
                                                 struct task_result_waiter **out)
{
    cJSON *collected = cJSON_CreateArray();
    if (collected == NULL)
        return BUTLER_ERR_NOMEM;
    enum butler_status status = task_result_register(request_id, out);
    if (status != BUTLER_OK) {
        cJSON_Delete(collected);
        return status;
    }
    pthread_mutex_lock(&table_lock);
    (*out)->finished = true;
    (*out)->collected = collected;
    pthread_mutex_unlock(&table_lock);
    return BUTLER_OK;
}

/* The collected message of `execution_id`, or NULL. Lock held. */
static const cJSON *collected_for(const struct task_result_waiter *waiter, const char *execution_id)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, waiter->collected)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "executionId");
        if (cJSON_IsString(id) && strcmp(id->valuestring, execution_id) == 0)
            return item;
    }
    return NULL;
}

enum butler_status task_result_wait_finished(struct task_result_waiter *waiter,
                                             const char *const *execution_ids, size_t count,
                                             int timeout_ms, cJSON **finished_out)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    *finished_out = NULL;
    enum butler_status status = BUTLER_ERR_TIMEOUT;
    pthread_mutex_lock(&table_lock);
    for (;;) {
        size_t have = 0;
        while (have < count && collected_for(waiter, execution_ids[have]) != NULL)
            have++;
        if (have == count) {
            status = BUTLER_OK;
            break;
        }
        if (pthread_cond_timedwait(&answered, &table_lock, &deadline) != 0)
            break;
    }
    if (status == BUTLER_OK) {
        cJSON *out = cJSON_CreateArray();
        for (size_t i = 0; out && i < count; i++)
            cJSON_AddItemToArray(out, cJSON_Duplicate(collected_for(waiter, execution_ids[i]), 1));
        *finished_out = out;
        if (out == NULL)
            status = BUTLER_ERR_NOMEM;
    }
    pthread_mutex_unlock(&table_lock);
    return status;
}

/* Network thread, as task_result_on_message: nothing is parsed while nobody
 * waits for finished runs. A repeated message (same executionId) is kept once. */
void task_result_on_finished(const struct mqtt_message *message, void *context)
{
    (void)context;
    pthread_once(&answered_once, init_condition);
    pthread_mutex_lock(&table_lock);
    bool any = false;
    for (size_t i = 0; i < TASK_RESULT_WAITERS_MAX && !any; i++)
        any = slots[i].used && slots[i].finished;
    pthread_mutex_unlock(&table_lock);
    if (!any || message->payload_length > TASK_MESSAGE_MAX)
        return;
    cJSON *root = json_parse_exact((const char *)message->payload, message->payload_length, NULL);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "requestId");
    const cJSON *execution = cJSON_GetObjectItemCaseSensitive(root, "executionId");
    if (!cJSON_IsString(id) || !cJSON_IsString(execution)) {
        cJSON_Delete(root);
        return;
    }
    bool delivered = false;
    pthread_mutex_lock(&table_lock);
    for (size_t i = 0; i < TASK_RESULT_WAITERS_MAX && !delivered; i++) {
        struct task_result_waiter *slot = &slots[i];
        if (slot->used && slot->finished && strcmp(slot->request_id, id->valuestring) == 0 &&
            collected_for(slot, execution->valuestring) == NULL &&
            cJSON_GetArraySize(slot->collected) < TASK_FINISHED_MAX) {
            cJSON_AddItemToArray(slot->collected, root);
            root = NULL;
            delivered = true;
        }
    }
    if (delivered)
        pthread_cond_broadcast(&answered);
    pthread_mutex_unlock(&table_lock);
    cJSON_Delete(root);
}
