/*
 * The spool's private parts, shared by its three files:
 *   spool.c          records on disk (format, appending, reading back) and the public calls;
 *   spool_index.c    the in-memory index of unfinished work and retained answers;
 *   spool_compact.c  recovery at open and compaction.
 * Nothing here is for other modules: they use bridge/store/spool.h.
 * Every function here expects the caller to hold spool->mutex (or to be
 * spool_open, before the spool is shared).
 */
#ifndef BUTLER_SPOOL_INTERNAL_H
#define BUTLER_SPOOL_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bridge/store/little_endian.h"
#include "bridge/store/spool.h"

enum {
    RECORD_MAGIC = 0x524c5442u, /* "BTLR" little-endian */
    HEADER_BYTES = 12,          /* magic, body length, crc32 */
    BODY_FIXED_BYTES = 20,      /* type, 3 reserved, id, wall_ms */
    PATH_MAX_BYTES = 4096,
    /* Records up to this size are built on the stack: most are. */
    STACK_RECORD_BYTES = 1024,
    /* Compaction writes the new file through a buffer of this size. */
    COMPACT_BUFFER_BYTES = 1024 * 1024,
    /* An empty index keeps its array up to this many entries (64 kB). */
    SPOOL_INDEX_KEEP_ENTRIES = 1024,
};

struct record_ref {
    uint64_t offset; /* of the record header in the current file */
    uint32_t length; /* whole record: header + body */
};

struct live_entry {
    uint64_t id;
    uint64_t wall_ms;
    bool finished; /* tombstone until it reaches the front or the next compaction */
    struct record_ref add;
    struct record_ref *notes;
    size_t note_count, note_capacity;
};

struct done_entry {
    uint64_t id;
    uint64_t wall_ms;
    struct record_ref record;
};

struct spool {
    pthread_mutex_t mutex;
    struct spool_options options;
    char path[PATH_MAX_BYTES];
    char temporary_path[PATH_MAX_BYTES];
    char directory[PATH_MAX_BYTES];
    int fd;
    uint64_t file_bytes;
    uint64_t live_bytes; /* bytes compaction would keep */
    uint64_t next_id;
    /* Unfinished work, sorted by id (ids only grow): entries [live_head,
     * live_count) are the window; finished ones at the front are dropped at
     * once, so the array follows what is in flight, not what was done. */
    struct live_entry *live;
    size_t live_head, live_count, live_capacity, live_active;
    /* Retained answers, oldest first, as a ring: entry i is
     * done[(done_head + i) % done_capacity]. Expired ones leave from the front. */
    struct done_entry *done;
    size_t done_head, done_count, done_capacity;
    struct spool_stats stats;
    uint64_t room_wanted; /* largest ADD refused for room since the last housekeeping */
    bool compact_wanted;  /* an add was refused for room (compact_in_housekeeping) */
};

/* ---- record format: little-endian fields ---- */

/* Flag byte of a record body (byte 1): set on a DONE whose data starts with
 * its kind (u8 length | kind), see spool_done_kind. */
enum { DONE_FLAG_KIND = 1 };

/* A record body split into its kind (empty when it has none) and its data. */
struct spool_done_parts {
    const unsigned char *kind;
    size_t kind_length;
    const unsigned char *answer;
    size_t answer_length;
};

/* Split the body (`body_length` bytes from the type byte on) of a checked
 * record. A kind prefix that does not fit leaves it all data. */
static inline struct spool_done_parts spool_record_parts(const unsigned char *body,
                                                         size_t body_length)
{
    const unsigned char *data = body + BODY_FIXED_BYTES;
    size_t length = body_length - BODY_FIXED_BYTES;
    struct spool_done_parts parts = {(const unsigned char *)"", 0, data, length};
    if (body[0] == SPOOL_DONE && (body[1] & DONE_FLAG_KIND) && length >= 1 &&
        (size_t)data[0] + 1 <= length) {
        parts.kind = data + 1;
        parts.kind_length = data[0];
        parts.answer = data + 1 + data[0];
        parts.answer_length = length - 1 - data[0];
    }
    return parts;
}

/* spool.c */
enum butler_status spool_write_all(int fd, const unsigned char *data, size_t length);

/* spool_index.c */
struct live_entry *spool_index_find_live(struct spool *spool, uint64_t id);
enum butler_status spool_index_push_live(struct spool *spool, uint64_t id, uint64_t wall_ms,
                                         struct record_ref add);
enum butler_status spool_index_push_note(struct spool *spool, struct live_entry *entry,
                                         struct record_ref note);
void spool_index_finish_live(struct spool *spool, struct live_entry *entry);
struct done_entry *spool_index_done_at(struct spool *spool, size_t index);
void spool_index_expire_done(struct spool *spool, uint64_t now_wall_ms);
/* Forget the oldest retained answer before its time (counted in done_evicted). */
void spool_index_evict_oldest_done(struct spool *spool);
void spool_index_push_done(struct spool *spool, uint64_t id, uint64_t wall_ms,
                           struct record_ref record);

/* spool_compact.c */
enum butler_status spool_compact(struct spool *spool);
void spool_maybe_compact(struct spool *spool);
/* Read the mapped file into the index (torn or garbage bytes are skipped and
 * counted), then hand back unfinished work and retained answers. Start-up. */
void spool_scan_file(struct spool *spool, const unsigned char *map, size_t size);
enum butler_status spool_report_recovered(struct spool *spool, const unsigned char *map,
                                          void (*recovered)(void *, const struct spool_recovered *),
                                          void *context);

#endif
