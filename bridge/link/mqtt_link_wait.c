/*
 * Helpers of the MQTT link that need none of its state: publishing and
 * waiting for the PUBACK, and topic matching (see mqtt_link.h).
 */
#include <mosquitto.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "bridge/core/clock.h"
#include "bridge/link/mqtt_link.h"

/* A waiter outlives a timed-out caller: whoever finishes last frees it. */
struct publish_waiter {
    pthread_mutex_t mutex;
    pthread_cond_t done_cond;
    bool finished;
    enum butler_status status;
    int references;
};

static void waiter_release(struct publish_waiter *waiter)
{
    pthread_mutex_lock(&waiter->mutex);
    bool last = --waiter->references == 0;
    pthread_mutex_unlock(&waiter->mutex);
    if (last) {
        pthread_mutex_destroy(&waiter->mutex);
        pthread_cond_destroy(&waiter->done_cond);
        free(waiter);
    }
}

static bool never_give_up(void)
{
    return false;
}

static void waiter_done(void *context, enum butler_status status)
{
    struct publish_waiter *waiter = context;
    pthread_mutex_lock(&waiter->mutex);
    waiter->finished = true;
    waiter->status = status;
    pthread_cond_signal(&waiter->done_cond);
    pthread_mutex_unlock(&waiter->mutex);
    waiter_release(waiter);
}

/* Shared by both waits: publish, then wait in slices of `slice_ms`; after each
 * slice, stop when `give_up` is NULL (one slice: a plain timeout) or says so. */
static enum butler_status publish_and_wait(struct mqtt_link *link, const char *topic,
                                           const void *payload, size_t payload_length,
                                           const struct mqtt_publish_options *options, int slice_ms,
                                           bool (*give_up)(void))
{
    struct publish_waiter *waiter = calloc(1, sizeof *waiter);
    if (waiter == NULL)
        return BUTLER_ERR_NOMEM;
    pthread_mutex_init(&waiter->mutex, NULL);
    pthread_cond_init(&waiter->done_cond, NULL);
    waiter->references = 2;
    enum butler_status status =
        mqtt_link_publish(link, topic, payload, payload_length, options, waiter_done, waiter);
    if (status != BUTLER_OK) {
        waiter->references = 1;
        waiter_release(waiter);
        return status;
    }
    pthread_mutex_lock(&waiter->mutex);
    for (;;) {
        struct timespec deadline;
        clock_deadline_after(CLOCK_REALTIME, (uint64_t)slice_ms, &deadline);
        while (!waiter->finished)
            if (pthread_cond_timedwait(&waiter->done_cond, &waiter->mutex, &deadline) != 0)
                break;
        if (waiter->finished || give_up == NULL)
            break;
        pthread_mutex_unlock(&waiter->mutex);
        bool stop = give_up();
        pthread_mutex_lock(&waiter->mutex);
        if (stop)
            break;
    }
    status = waiter->finished  ? waiter->status
             : give_up != NULL ? BUTLER_ERR_SHUTDOWN
                               : BUTLER_ERR_TIMEOUT;
    pthread_mutex_unlock(&waiter->mutex);
    waiter_release(waiter);
    return status;
}

enum butler_status mqtt_link_publish_settled(struct mqtt_link *link, const char *topic,
                                             const void *payload, size_t payload_length,
                                             const struct mqtt_publish_options *options,
                                             int check_ms, bool (*give_up)(void))
{
    return publish_and_wait(link, topic, payload, payload_length, options, check_ms,
                            give_up ? give_up : never_give_up);
}

enum butler_status mqtt_link_publish_wait(struct mqtt_link *link, const char *topic,
                                          const void *payload, size_t payload_length,
                                          const struct mqtt_publish_options *options,
                                          int timeout_ms)
{
    return publish_and_wait(link, topic, payload, payload_length, options, timeout_ms, NULL);
}

bool mqtt_topic_matches(const char *filter, const char *topic)
{
    bool result = false;
    return mosquitto_topic_matches_sub(filter, topic, &result) == MOSQ_ERR_SUCCESS && result;
}
