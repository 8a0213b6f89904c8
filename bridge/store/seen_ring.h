/*
 * A ring of recently seen keys, on disk, so a de-duplication window survives
 * a restart (SIGTERM or SIGKILL): the Qlik Cloud reloads already published
 * (topics/cloud.c) are the one user today.
 *
 * One file of fixed slots after a small header (magic, slot size, capacity).
 * Key number s (1, 2, ...) goes to slot s % capacity as { u64 s, u64 wall
 * time, u16 key length, key bytes, u32 check }, one pwrite per key, so the
 * file never holds more than `capacity` keys (the oldest is overwritten
 * first) and never grows past header + capacity slots. Without `fsync` the
 * page cache keeps a write through a SIGKILL, like the spool without
 * spool.fsync; with it each key is flushed (fdatasync) before add returns.
 * A torn or foreign slot fails its check and is skipped: that key is
 * forgotten (a duplicate may follow, never a loss). A file whose header does
 * not match the options (another capacity or key size) is started afresh.
 *
 * Why not the spool's DONE records: they are kept for task_start.dedup_ttl_s
 * (10 minutes by default) and share task starts' cap, while this window is
 * 24 h; and not a whole file rewritten per key: at 50,000 keys that is
 * megabytes per event.
 *
 * Thread-safe (one mutex per ring).
 */
#ifndef BUTLER_SEEN_RING_H
#define BUTLER_SEEN_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/status.h"

struct seen_ring;

enum {
    SEEN_RING_CAPACITY_MAX = 1000000, /* slots, hard cap of the option */
    SEEN_RING_KEY_MAX = 1024,         /* longest key_max of the option */
};

struct seen_ring_options {
    const char *path; /* the file; its directory must exist */
    size_t capacity;  /* keys kept, 1..SEEN_RING_CAPACITY_MAX */
    size_t key_max;   /* longest key in bytes, 1..SEEN_RING_KEY_MAX */
    uint64_t ttl_ms;  /* keys older than this are not handed back at open */
    bool fsync;       /* fdatasync after each key */
};

/* Called at open for each key younger than ttl_ms, oldest first; `key` is
 * NUL-terminated and valid only during the call. */
typedef void (*seen_ring_recovered_fn)(void *context, const char *key, uint64_t wall_ms);

/*
 * Open (creating) the ring file and hand back its keys still within ttl_ms
 * (`recovered` may be NULL). *out is owned by the caller (seen_ring_close).
 * BUTLER_ERR_INVALID for options out of range, BUTLER_ERR_IO when the file
 * cannot be opened, read or started (the caller remembers from memory only),
 * BUTLER_ERR_NOMEM. Thread: start-up.
 */
enum butler_status seen_ring_open(const struct seen_ring_options *options,
                                  seen_ring_recovered_fn recovered, void *context,
                                  struct seen_ring **out);

/*
 * Remember `key` as seen at `wall_ms` (one slot write, plus a flush with
 * fsync). BUTLER_ERR_TOO_LARGE for an empty key or one over key_max,
 * BUTLER_ERR_IO when the write or flush failed (the key may be forgotten at
 * the next start). Any thread.
 */
enum butler_status seen_ring_add(struct seen_ring *ring, const char *key, uint64_t wall_ms);

/* Close the file and free the ring. NULL-safe. */
void seen_ring_close(struct seen_ring *ring);

#endif
