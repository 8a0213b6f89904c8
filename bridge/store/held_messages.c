/*
 * The rings of recently spooled messages matched against the broker's
 * resends (see held_messages.h). One mutex; fixed arrays, no allocation.
 *
 * The spooled ring is mirrored in spool.dir/held.ring: slot i of the file
 * holds the entry with sequence number s where s % HELD_MESSAGES_MAX == i,
 * as { u64 sequence (0 = empty), u64 digest, u16 packet id, u16 0,
 * u32 check }, little-endian. One pwrite per spooled message, no flush:
 * the page cache keeps it through a SIGKILL, like the spool without fsync.
 */
#include "bridge/store/held_messages.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bridge/core/log.h"
#include "bridge/store/little_endian.h"

#define MODULE "held"

enum { SLOT_BYTES = 24 };

struct held_message {
    uint64_t digest;
    uint16_t message_id;
    bool taken; /* recognised once already: a repeat is taken once */
};

struct ring {
    struct held_message entries[HELD_MESSAGES_MAX];
    size_t next;  /* where the next message goes */
    size_t count; /* entries in use, <= HELD_MESSAGES_MAX */
};

static pthread_mutex_t held_mutex = PTHREAD_MUTEX_INITIALIZER;
/* Every spooled message, newest last (mirrored in held.ring). */
static struct ring spooled;
/* Unfinished work recovery handed back that the spooled ring does not know
 * (a spool from before held.ring, or a ring file that lagged): newest last. */
static struct ring recovered;
static uint64_t next_sequence = 1;
static int ring_fd = -1;
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

static void ring_push(struct ring *ring, uint64_t digest, uint16_t message_id)
{
    ring->entries[ring->next] = (struct held_message){.digest = digest, .message_id = message_id};
    ring->next = (ring->next + 1) % HELD_MESSAGES_MAX;
    if (ring->count < HELD_MESSAGES_MAX)
        ring->count++;
}

/* Newest first: the resends are the newest spooled messages. */
static struct held_message *ring_find(struct ring *ring, uint64_t digest, uint16_t message_id)
{
    for (size_t n = 0; n < ring->count; n++) {
        struct held_message *held =
            &ring->entries[(ring->next + HELD_MESSAGES_MAX - 1 - n) % HELD_MESSAGES_MAX];
        if (held->message_id == message_id && held->digest == digest)
            return held;
    }
    return NULL;
}

/* A check over the first 20 bytes of a slot: a torn or foreign slot is ignored. */
static uint32_t slot_check(const unsigned char *slot)
{
    uint64_t hash = 1469598103934665603ULL;
    for (int i = 0; i < 20; i++)
        hash = (hash ^ slot[i]) * 1099511628211ULL;
    return (uint32_t)(hash ^ (hash >> 32));
}

static void encode_slot(unsigned char slot[SLOT_BYTES], uint64_t sequence, uint64_t digest,
                        uint16_t message_id)
{
    memset(slot, 0, SLOT_BYTES);
    store_put64(slot, sequence);
    store_put64(slot + 8, digest);
    slot[16] = (unsigned char)message_id;
    slot[17] = (unsigned char)(message_id >> 8);
    uint32_t check = slot_check(slot);
    for (int i = 0; i < 4; i++)
        slot[20 + i] = (unsigned char)(check >> (8 * i));
}

enum butler_status held_messages_open(const char *directory)
{
    char path[4200];
    if (snprintf(path, sizeof path, "%s/held.ring", directory) >= (int)sizeof path)
        return BUTLER_ERR_INVALID;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        LOG_ERROR(MODULE, "cannot open %s: %s", path, strerror(errno));
        return BUTLER_ERR_IO;
    }
    /* Read every valid slot, then replay them in sequence order. */
    static unsigned char file[HELD_MESSAGES_MAX * SLOT_BYTES];
    ssize_t got = pread(fd, file, sizeof file, 0);
    size_t slots = got > 0 ? (size_t)got / SLOT_BYTES : 0;
    uint64_t newest = 0;
    size_t newest_slot = 0, valid = 0;
    for (size_t i = 0; i < slots; i++) {
        const unsigned char *slot = file + i * SLOT_BYTES;
        uint64_t sequence = store_get64(slot);
        uint32_t check = (uint32_t)slot[20] | (uint32_t)slot[21] << 8 | (uint32_t)slot[22] << 16 |
                         (uint32_t)slot[23] << 24;
        if (sequence == 0 || sequence % HELD_MESSAGES_MAX != i || check != slot_check(slot))
            continue;
        valid++;
        if (sequence > newest) {
            newest = sequence;
            newest_slot = i;
        }
    }
    pthread_mutex_lock(&held_mutex);
    spooled = (struct ring){0};
    /* Oldest to newest: the slots after the newest one wrap round to it. */
    for (size_t n = 1; n <= slots && valid > 0; n++) {
        size_t i = (newest_slot + n) % HELD_MESSAGES_MAX;
        if (i >= slots)
            continue;
        const unsigned char *slot = file + i * SLOT_BYTES;
        uint64_t sequence = store_get64(slot);
        uint32_t check = (uint32_t)slot[20] | (uint32_t)slot[21] << 8 | (uint32_t)slot[22] << 16 |
                         (uint32_t)slot[23] << 24;
        if (sequence == 0 || sequence % HELD_MESSAGES_MAX != i || check != slot_check(slot) ||
            sequence + HELD_MESSAGES_MAX <= newest)
            continue;
        ring_push(&spooled, store_get64(slot + 8), (uint16_t)(slot[16] | slot[17] << 8));
    }
    next_sequence = newest + 1;
    /* Recovery may have run first: keep of its entries only those the file
     * does not know, in their order. */
    struct ring kept = {0};
    for (size_t n = recovered.count; n > 0; n--) {
        const struct held_message *held =
            &recovered.entries[(recovered.next + HELD_MESSAGES_MAX - n) % HELD_MESSAGES_MAX];
        if (ring_find(&spooled, held->digest, held->message_id) == NULL)
            ring_push(&kept, held->digest, held->message_id);
    }
    recovered = kept;
    if (ring_fd >= 0)
        close(ring_fd);
    ring_fd = fd;
    pthread_mutex_unlock(&held_mutex);
    return BUTLER_OK;
}

void held_messages_close(void)
{
    pthread_mutex_lock(&held_mutex);
    if (ring_fd >= 0)
        close(ring_fd);
    ring_fd = -1;
    pthread_mutex_unlock(&held_mutex);
}

void held_messages_add(uint16_t message_id, const char *topic, const void *payload,
                       size_t payload_length)
{
    if (message_id == 0 || topic == NULL)
        return;
    uint64_t digest = digest_of(topic, payload, payload_length);
    pthread_mutex_lock(&held_mutex);
    ring_push(&spooled, digest, message_id);
    uint64_t sequence = next_sequence++;
    if (ring_fd >= 0) {
        unsigned char slot[SLOT_BYTES];
        encode_slot(slot, sequence, digest, message_id);
        if (pwrite(ring_fd, slot, sizeof slot,
                   (off_t)((sequence % HELD_MESSAGES_MAX) * SLOT_BYTES)) != (ssize_t)sizeof slot)
            LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                            "cannot write held.ring (%s): after a restart, a resend of this "
                            "message may run again",
                            strerror(errno));
    }
    pthread_mutex_unlock(&held_mutex);
}

void held_messages_add_recovered(uint16_t message_id, const char *topic, const void *payload,
                                 size_t payload_length)
{
    if (message_id == 0 || topic == NULL)
        return;
    uint64_t digest = digest_of(topic, payload, payload_length);
    pthread_mutex_lock(&held_mutex);
    if (ring_find(&spooled, digest, message_id) == NULL)
        ring_push(&recovered, digest, message_id);
    pthread_mutex_unlock(&held_mutex);
}

void held_messages_connected(bool session_resumed)
{
    pthread_mutex_lock(&held_mutex);
    if (!session_resumed) {
        /* A new session: the broker has nothing to send again, and packet
         * ids of the old one must not match messages of the new one after a
         * later restart: the file is emptied too. */
        spooled = (struct ring){0};
        recovered = (struct ring){0};
        if (ring_fd >= 0 && ftruncate(ring_fd, 0) != 0)
            LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "cannot empty held.ring: %s", strerror(errno));
    }
    atomic_store(&matching, session_resumed && (spooled.count > 0 || recovered.count > 0));
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
    pthread_mutex_lock(&held_mutex);
    struct held_message *held = ring_find(&spooled, digest, message_id);
    if (held == NULL || held->taken)
        held = ring_find(&recovered, digest, message_id);
    bool found = held != NULL && !held->taken;
    if (found)
        held->taken = true;
    else
        atomic_store(&matching, false); /* the first new message: the resends are over */
    pthread_mutex_unlock(&held_mutex);
    return found;
}

size_t held_messages_count(void)
{
    pthread_mutex_lock(&held_mutex);
    size_t count = spooled.count + recovered.count;
    pthread_mutex_unlock(&held_mutex);
    return count;
}

void held_messages_clear(void)
{
    pthread_mutex_lock(&held_mutex);
    spooled = (struct ring){0};
    recovered = (struct ring){0};
    atomic_store(&matching, false);
    pthread_mutex_unlock(&held_mutex);
}
