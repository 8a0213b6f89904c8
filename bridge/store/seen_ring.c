/*
 * The on-disk ring of recently seen keys (see seen_ring.h). Layout,
 * little-endian:
 *   header (HEADER_BYTES): "BTLSEEN1", u32 slot size, u32 capacity,
 *                          u32 check over the 16 bytes before it, zeros;
 *   slot i (slot size each, right after the header): u64 sequence (0 =
 *          empty), u64 wall ms, u16 key length, key bytes (key_max, zero
 *          padded), u32 check over everything before it in the slot.
 * The slot size is 22 + key_max rounded up to 8.
 */
#include "bridge/store/seen_ring.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bridge/core/clock.h"
#include "bridge/core/log.h"
#include "bridge/store/little_endian.h"

#define MODULE "store"

enum {
    HEADER_BYTES = 32,
    SLOT_FIXED_BYTES = 22, /* sequence, wall time, key length, check */
    CHUNK_SLOTS = 64,      /* slots read at once at open */
};

static const char MAGIC[8] = {'B', 'T', 'L', 'S', 'E', 'E', 'N', '1'};

struct seen_ring {
    pthread_mutex_t mutex;
    int fd;
    bool fsync;
    size_t capacity, key_max, slot_bytes;
    uint64_t next_sequence;
    unsigned char *slot; /* one slot's bytes for seen_ring_add (under the mutex) */
};

/* FNV-1a folded to 32 bits: catches torn and foreign bytes, not an attacker
 * (the file is Butler's own, mode 0600). */
static uint32_t check_of(const unsigned char *bytes, size_t length)
{
    uint64_t hash = 1469598103934665603ULL;
    for (size_t i = 0; i < length; i++)
        hash = (hash ^ bytes[i]) * 1099511628211ULL;
    return (uint32_t)(hash ^ (hash >> 32));
}

static void encode_header(const struct seen_ring *ring, unsigned char header[HEADER_BYTES])
{
    memset(header, 0, HEADER_BYTES);
    memcpy(header, MAGIC, sizeof MAGIC);
    store_put32(header + 8, (uint32_t)ring->slot_bytes);
    store_put32(header + 12, (uint32_t)ring->capacity);
    store_put32(header + 16, check_of(header, 16));
}

/* The key of slot `index` when the slot is valid for that index: its
 * sequence (0 when not valid) and the key copied into `key` (key_max + 1). */
static uint64_t decode_slot(const struct seen_ring *ring, const unsigned char *slot, size_t index,
                            char *key, uint64_t *wall_ms)
{
    uint64_t sequence = store_get64(slot);
    size_t length = (size_t)slot[16] | (size_t)slot[17] << 8;
    if (sequence == 0 || sequence % ring->capacity != index || length == 0 ||
        length > ring->key_max ||
        store_get32(slot + ring->slot_bytes - 4) != check_of(slot, ring->slot_bytes - 4) ||
        memchr(slot + 18, '\0', length) != NULL)
        return 0;
    memcpy(key, slot + 18, length);
    key[length] = '\0';
    *wall_ms = store_get64(slot + 8);
    return sequence;
}

/* Slots read at open, CHUNK_SLOTS at a time, for walks that mostly go up. */
struct reader {
    const struct seen_ring *ring;
    size_t slots; /* slots the file holds */
    unsigned char *chunk;
    size_t first, count; /* the slots in `chunk` */
};

/* Slot `index` (< reader->slots), or NULL when it cannot be read. */
static const unsigned char *read_slot(struct reader *reader, size_t index)
{
    if (index < reader->first || index >= reader->first + reader->count) {
        size_t count = reader->slots - index < CHUNK_SLOTS ? reader->slots - index : CHUNK_SLOTS;
        size_t bytes = count * reader->ring->slot_bytes;
        ssize_t got = pread(reader->ring->fd, reader->chunk, bytes,
                            (off_t)(HEADER_BYTES + index * reader->ring->slot_bytes));
        if (got < 0 || (size_t)got < reader->ring->slot_bytes) {
            reader->count = 0;
            return NULL;
        }
        reader->first = index;
        reader->count = (size_t)got / reader->ring->slot_bytes;
    }
    return reader->chunk + (index - reader->first) * reader->ring->slot_bytes;
}

/* Hand back the keys younger than ttl_ms, oldest first, and set the next
 * sequence. The newest valid slot decides where the ring starts; a slot
 * left from an earlier lap (its write in this lap lost) is skipped. */
static enum butler_status recover(struct seen_ring *ring, off_t file_bytes, uint64_t ttl_ms,
                                  seen_ring_recovered_fn recovered, void *context)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    size_t slots =
        file_bytes > HEADER_BYTES ? (size_t)(file_bytes - HEADER_BYTES) / ring->slot_bytes : 0;
    if (slots > ring->capacity)
        slots = ring->capacity;
    struct reader reader = {.ring = ring, .slots = slots};
    char *key = malloc(ring->key_max + 1);
    reader.chunk = malloc(CHUNK_SLOTS * ring->slot_bytes);
    if (key == NULL || reader.chunk == NULL)
        goto out;
    uint64_t newest = 0, wall_ms = 0;
    size_t newest_slot = 0;
    for (size_t i = 0; i < slots; i++) {
        const unsigned char *slot = read_slot(&reader, i);
        if (slot == NULL) {
            status = BUTLER_ERR_IO;
            goto out;
        }
        uint64_t sequence = decode_slot(ring, slot, i, key, &wall_ms);
        if (sequence > newest) {
            newest = sequence;
            newest_slot = i;
        }
    }
    uint64_t now = clock_wall_ms();
    for (size_t n = 1; n <= ring->capacity && newest > 0; n++) {
        size_t i = (newest_slot + n) % ring->capacity;
        if (i >= slots)
            continue;
        const unsigned char *slot = read_slot(&reader, i);
        if (slot == NULL) {
            status = BUTLER_ERR_IO;
            goto out;
        }
        uint64_t sequence = decode_slot(ring, slot, i, key, &wall_ms);
        if (sequence == 0 || sequence + ring->capacity <= newest)
            continue;
        /* A clock set back makes a key look younger, never expired early. */
        uint64_t age = now > wall_ms ? now - wall_ms : 0;
        if (age < ttl_ms && recovered)
            recovered(context, key, wall_ms);
    }
    ring->next_sequence = newest + 1;
    status = BUTLER_OK;
out:
    free(key);
    free(reader.chunk);
    return status;
}

/* Start the file afresh: an empty ring under a header for these options. */
static enum butler_status start_afresh(struct seen_ring *ring)
{
    unsigned char header[HEADER_BYTES];
    encode_header(ring, header);
    if (ftruncate(ring->fd, 0) != 0 ||
        pwrite(ring->fd, header, sizeof header, 0) != (ssize_t)sizeof header ||
        (ring->fsync && fdatasync(ring->fd) != 0))
        return BUTLER_ERR_IO;
    ring->next_sequence = 1;
    return BUTLER_OK;
}

enum butler_status seen_ring_open(const struct seen_ring_options *options,
                                  seen_ring_recovered_fn recovered, void *context,
                                  struct seen_ring **out)
{
    enum butler_status status = BUTLER_ERR_INVALID;
    struct seen_ring *ring = NULL;
    if (options->path == NULL || options->capacity == 0 ||
        options->capacity > SEEN_RING_CAPACITY_MAX || options->key_max == 0 ||
        options->key_max > SEEN_RING_KEY_MAX)
        goto out;
    status = BUTLER_ERR_NOMEM;
    ring = calloc(1, sizeof *ring);
    if (ring == NULL)
        goto out;
    ring->fd = -1;
    ring->fsync = options->fsync;
    ring->capacity = options->capacity;
    ring->key_max = options->key_max;
    ring->slot_bytes = (SLOT_FIXED_BYTES + options->key_max + 7) / 8 * 8;
    ring->slot = malloc(ring->slot_bytes);
    if (ring->slot == NULL)
        goto out;
    pthread_mutex_init(&ring->mutex, NULL);
    status = BUTLER_ERR_IO;
    ring->fd = open(options->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct stat info;
    if (ring->fd < 0 || fstat(ring->fd, &info) != 0) {
        LOG_ERROR(MODULE, "cannot open %s: %s", options->path, strerror(errno));
        goto out;
    }
    unsigned char header[HEADER_BYTES], expected[HEADER_BYTES];
    encode_header(ring, expected);
    if (info.st_size >= HEADER_BYTES &&
        pread(ring->fd, header, sizeof header, 0) == (ssize_t)sizeof header &&
        memcmp(header, expected, sizeof header) == 0) {
        status = recover(ring, info.st_size, options->ttl_ms, recovered, context);
    } else {
        if (info.st_size > 0)
            LOG_WARN(MODULE, "%s was written for another layout or is damaged: starting it afresh",
                     options->path);
        status = start_afresh(ring);
    }
    if (status != BUTLER_OK) {
        LOG_ERROR(MODULE, "cannot read or start %s: %s (%s)", options->path,
                  butler_status_str(status), strerror(errno));
        goto out;
    }
    *out = ring;
    ring = NULL;
out:
    seen_ring_close(ring);
    return status;
}

enum butler_status seen_ring_add(struct seen_ring *ring, const char *key, uint64_t wall_ms)
{
    size_t length = strlen(key);
    if (length == 0 || length > ring->key_max)
        return BUTLER_ERR_TOO_LARGE;
    enum butler_status status = BUTLER_OK;
    pthread_mutex_lock(&ring->mutex);
    uint64_t sequence = ring->next_sequence++;
    unsigned char *slot = ring->slot;
    memset(slot, 0, ring->slot_bytes);
    store_put64(slot, sequence);
    store_put64(slot + 8, wall_ms);
    slot[16] = (unsigned char)length;
    slot[17] = (unsigned char)(length >> 8);
    memcpy(slot + 18, key, length);
    store_put32(slot + ring->slot_bytes - 4, check_of(slot, ring->slot_bytes - 4));
    off_t offset = (off_t)(HEADER_BYTES + (sequence % ring->capacity) * ring->slot_bytes);
    if (pwrite(ring->fd, slot, ring->slot_bytes, offset) != (ssize_t)ring->slot_bytes ||
        (ring->fsync && fdatasync(ring->fd) != 0))
        status = BUTLER_ERR_IO;
    pthread_mutex_unlock(&ring->mutex);
    return status;
}

void seen_ring_close(struct seen_ring *ring)
{
    if (ring == NULL)
        return;
    if (ring->slot) /* the mutex is initialised once the slot buffer exists */
        pthread_mutex_destroy(&ring->mutex);
    if (ring->fd >= 0)
        close(ring->fd);
    free(ring->slot);
    free(ring);
}
