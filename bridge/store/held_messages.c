#include "bridge/store/held_messages.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

struct held_message {
    uint64_t digest;
    uint16_t message_id;
};

static pthread_mutex_t held_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct held_message held[HELD_MESSAGES_MAX];
static size_t held_count;
static atomic_bool matching;

/* FNV-1a over the topic, a NUL and the payload: together with the packet id,
 * two different messages do not collide in practice. */
static uint64_t digest_of(const char *topic, const void *payload, size_t payload_length)
{
    uint64_t hash = 1469598103934665603ULL;
    const unsigned char *bytes = (const unsigned char *)topic;
    for (size_t i = 0, n = strlen(topic) + 1; i < n; i++)
        hash = (hash ^ bytes[i]) * 1099511628211ULL;
    bytes = payload;
    for (size_t i = 0; i < payload_length; i++)
        hash = (hash ^ bytes[i]) * 1099511628211ULL;
    return hash;
}

void held_messages_add(uint16_t message_id, const char *topic, const void *payload,
                       size_t payload_length)
{
    if (message_id == 0 || topic == NULL)
        return;
    uint64_t digest = digest_of(topic, payload, payload_length);
    pthread_mutex_lock(&held_mutex);
    if (held_count < HELD_MESSAGES_MAX) {
        held[held_count++] = (struct held_message){digest, message_id};
        atomic_store(&matching, true);
    }
    pthread_mutex_unlock(&held_mutex);
}

bool held_messages_active(void)
{
    return atomic_load_explicit(&matching, memory_order_relaxed);
}

bool held_messages_take(uint16_t message_id, const char *topic, const void *payload,
                        size_t payload_length)
{
    if (!held_messages_active())
        return false;
    uint64_t digest = digest_of(topic, payload, payload_length);
    bool found = false;
    pthread_mutex_lock(&held_mutex);
    for (size_t i = 0; i < held_count && !found; i++) {
        if (held[i].message_id == message_id && held[i].digest == digest) {
            held[i] = held[--held_count];
            found = true;
        }
    }
    if (!found || held_count == 0) {
        held_count = 0;
        atomic_store(&matching, false);
    }
    pthread_mutex_unlock(&held_mutex);
    return found;
}

void held_messages_clear(void)
{
    pthread_mutex_lock(&held_mutex);
    held_count = 0;
    atomic_store(&matching, false);
    pthread_mutex_unlock(&held_mutex);
}
