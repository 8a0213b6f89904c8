/*
 * The ring of recently spooled messages matched against the broker's resends
 * (see held_messages.h). One mutex; the ring is a fixed array, no allocation.
 */
#include "bridge/store/held_messages.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

struct held_message {
    uint64_t digest;
    uint16_t message_id;
    bool taken; /* recognised once already: a repeat is taken once */
};

static pthread_mutex_t held_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct held_message ring[HELD_MESSAGES_MAX];
static size_t ring_next;  /* where the next message goes */
static size_t ring_count; /* entries in use, <= HELD_MESSAGES_MAX */
static atomic_bool matching;

/* FNV-1a over the topic, a NUL and the payload: together with the packet id,
 * two different messages do not collide in practice. (Not a lookup key, so a
 * chosen collision only makes a publisher's own message look like its own
 * earlier one.) */
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
    ring[ring_next] = (struct held_message){.digest = digest, .message_id = message_id};
    ring_next = (ring_next + 1) % HELD_MESSAGES_MAX;
    if (ring_count < HELD_MESSAGES_MAX)
        ring_count++;
    pthread_mutex_unlock(&held_mutex);
}

void held_messages_connected(bool session_resumed)
{
    pthread_mutex_lock(&held_mutex);
    if (!session_resumed)
        ring_count = ring_next = 0; /* a new session: the broker has nothing to send again */
    atomic_store(&matching, session_resumed && ring_count > 0);
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
    /* Newest first: the resends are the newest spooled messages. */
    for (size_t n = 0; n < ring_count && !found; n++) {
        struct held_message *held =
            &ring[(ring_next + HELD_MESSAGES_MAX - 1 - n) % HELD_MESSAGES_MAX];
        if (!held->taken && held->message_id == message_id && held->digest == digest) {
            held->taken = true;
            found = true;
        }
    }
    if (!found)
        atomic_store(&matching, false); /* the first new message: the resends are over */
    pthread_mutex_unlock(&held_mutex);
    return found;
}

size_t held_messages_count(void)
{
    pthread_mutex_lock(&held_mutex);
    size_t count = ring_count;
    pthread_mutex_unlock(&held_mutex);
    return count;
}

void held_messages_clear(void)
{
    pthread_mutex_lock(&held_mutex);
    ring_count = ring_next = 0;
    atomic_store(&matching, false);
    pthread_mutex_unlock(&held_mutex);
}
