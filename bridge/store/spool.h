/*
 * The spool: work Butler has accepted but not finished, on disk, so that a
 * crash (SIGKILL, power loss with spool.fsync) loses nothing acknowledged.
 *
 * One append-only file, spool.dir/spool.log, of checksummed records:
 *   ADD      a unit of work (opaque bytes chosen by the caller) gets an id;
 *   PROGRESS a note about that work (e.g. "task X started"), kept with it;
 *   DONE     the work is finished; its bytes (e.g. the answer) are kept for
 *            `done_retention_ms` so a redelivered request can be recognised.
 * On open, every complete record is read back: a record cut short by a crash
 * (always the last one: appends are single writes, and a failed append or
 * flush is cut back before anything else is written) or one whose checksum
 * fails is skipped whole, never searched inside (a payload may embed a valid
 * record); only garbage without a record header is scanned for the next one. Work with an ADD and
 * no DONE is handed back for replay. When the file grows past twice what is live (live: unfinished
 * work with its notes, and answers still within retention), and past SPOOL_COMPACT_MIN_BYTES, it is
 * compacted into a new file that replaces the old one atomically (rename). So the file follows what
 * is live, not max_bytes.
 *
 * Bounded: the file never grows past spool.max_bytes (a compaction briefly
 * writes a second, smaller file beside it). New work (spool_add) fills at
 * most 7/8 of it and each unfinished item keeps room for the DONE that
 * retires it, so work already taken can always note progress and always
 * finish: past the cap spool_add() and spool_progress() refuse with
 * BUTLER_ERR_FULL (after trying to compact) and spool_done() writes the DONE
 * without its answer (counted). See spool.c "The byte budget". The in-memory index holds offsets,
 * not data: about 64 bytes per unfinished item (plus 12 per note) and 24 per retained answer;
 * finished work leaves the index at once, retained answers when they expire.
 * Thread-safe: one mutex; appends are short writes (plus fdatasync with fsync on).
 */
#ifndef BUTLER_SPOOL_H
#define BUTLER_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/status.h"

struct spool;

enum spool_record_type {
    SPOOL_ADD = 1,
    SPOOL_PROGRESS = 2,
    SPOOL_DONE = 3,
};

enum {
    /* Largest data one record may carry. */
    SPOOL_RECORD_DATA_MAX = 2 * 1024 * 1024,
    /* Longest kind of a DONE (spool_done_kind). */
    SPOOL_KIND_MAX = 255,
    /* Unfinished items at once; spool_add() refuses beyond (BUTLER_ERR_FULL). */
    SPOOL_LIVE_MAX = 100000,
    /* Notes one item may carry (a task start notes two per task it starts);
     * spool_progress() refuses beyond with BUTLER_ERR_LIMIT. */
    SPOOL_NOTES_MAX = 4096,
    /* Retained answers when spool_options.max_done_entries is 0. */
    SPOOL_DONE_MAX_DEFAULT = 100000,
    /* Below this size the file is not compacted (rewriting a tiny file often
     * would cost more than it saves). */
    SPOOL_COMPACT_MIN_BYTES = 1024 * 1024,
};

struct spool_options {
    const char *directory;      /* created if missing */
    bool fsync;                 /* fdatasync after every ADD (PROGRESS and DONE ride along) */
    uint64_t max_bytes;         /* hard cap of the file */
    uint64_t done_retention_ms; /* how long a non-empty DONE (an answer) is kept */
    /* Most answers kept at once (0 = SPOOL_DONE_MAX_DEFAULT); past it the
     * oldest is forgotten early and counted in spool_stats.done_evicted. */
    uint64_t max_done_entries;
    /* Never compact inside spool_add or spool_done (they may run on a thread
     * that must not stall, the MQTT network thread): the owner calls
     * spool_housekeeping() from a thread of its own instead. */
    bool compact_in_housekeeping;
};

/* What recovery hands back. Pointers are valid only during the callback. */
struct spool_recovered {
    enum spool_record_type type; /* SPOOL_ADD (unfinished work) or SPOOL_DONE (recent answer) */
    uint64_t id;
    uint64_t wall_ms;          /* when the record was written */
    const unsigned char *data; /* SPOOL_ADD: the work; SPOOL_DONE: the answer */
    size_t length;
    /* For SPOOL_DONE: the kind given to spool_done_kind ("" without one, and
     * for files written before kinds existed). NUL-terminated. */
    const char *kind;
    /* For SPOOL_ADD: its PROGRESS notes, in order. */
    size_t note_count;
    const unsigned char *const *notes;
    const size_t *note_lengths;
};

struct spool_stats {
    uint64_t file_bytes;
    uint64_t live_bytes; /* what a compaction would keep */
    uint64_t live_entries;
    uint64_t done_entries; /* answers retained for de-duplication */
    uint64_t done_evicted; /* answers forgotten before their retention ended */
    uint64_t last_compaction_us, max_compaction_us;
    uint64_t recovered_entries;
    uint64_t skipped_bytes; /* corrupt or truncated bytes skipped during recovery */
    uint64_t compactions;
    uint64_t append_failures; /* writes or flushes that failed (cut back, refused) */
    uint64_t notes_refused;   /* notes refused for room (max_bytes) */
    uint64_t answers_dropped; /* DONEs written without their answer for room (max_bytes) */
    uint64_t index_bytes;     /* the in-memory index's arrays (unfinished work, answers) */
};

/*
 * Open (creating) the spool and read it back: `recovered` is called for each
 * unfinished ADD (in id order) and each DONE within retention. The spool is
 * rewritten compactly before this returns. *out is owned by the caller
 * (spool_close). Thread: start-up.
 */
enum butler_status spool_open(const struct spool_options *options,
                              void (*recovered)(void *context, const struct spool_recovered *entry),
                              void *context, struct spool **out);

/* Record new work; *id_out identifies it. BUTLER_ERR_FULL when over max_bytes. */
enum butler_status spool_add(struct spool *spool, const void *data, size_t length,
                             uint64_t *id_out);
/* Record a note about unfinished work `id`. BUTLER_ERR_LIMIT when `id`
 * already carries SPOOL_NOTES_MAX notes (final for that item: the caller fails
 * it rather than waiting); BUTLER_ERR_FULL when the spool has no room now
 * (max_bytes: room may come, the caller may wait). */
enum butler_status spool_progress(struct spool *spool, uint64_t id, const void *data,
                                  size_t length);
/* With spool.fsync: flush what was appended so far (notes ride unflushed
 * otherwise), so a note written before a call with an effect survives a power
 * cut. BUTLER_OK at once without spool.fsync; BUTLER_ERR_IO when the flush
 * failed (the caller retries before its call). Any thread. */
enum butler_status spool_flush(struct spool *spool);
/* Mark `id` finished; non-empty `data` (the answer) is kept for
 * done_retention_ms and handed back by spool_open's recovery. */
enum butler_status spool_done(struct spool *spool, uint64_t id, const void *data, size_t length);
/* The same, and the answer carries `kind` (NULL or "" = none; at most
 * SPOOL_KIND_MAX bytes): recovery hands it back in spool_recovered.kind, so
 * the caller can give each answer to whoever it belongs to. */
enum butler_status spool_done_kind(struct spool *spool, uint64_t id, const char *kind,
                                   const void *data, size_t length);

/* Read back the data of unfinished work `id` (what spool_add recorded), so a
 * caller can keep only the id in memory. *data_out is malloc'd, owned by the
 * caller. BUTLER_ERR_NOT_FOUND if `id` is finished or unknown. */
enum butler_status spool_read(struct spool *spool, uint64_t id, unsigned char **data_out,
                              size_t *length_out);

/* Read back the answer retained for finished work `id` (what spool_done
 * recorded), so a caller can keep only the id in memory. *data_out is
 * malloc'd, owned by the caller. BUTLER_ERR_NOT_FOUND if `id` is unfinished,
 * its answer was empty, or its retention ended. Any thread. */
enum butler_status spool_read_answer(struct spool *spool, uint64_t id, unsigned char **data_out,
                                     size_t *length_out);

/* With compact_in_housekeeping: compact when the file is past twice what is
 * live, or when an add was refused for room since the last call. Returns
 * true when it compacted. Any thread but those that must not stall. */
bool spool_housekeeping(struct spool *spool);

/* Ask the next spool_housekeeping to make room for `bytes` of new work under
 * the new-work limit (7/8 of max_bytes), forgetting retained answers oldest
 * first (counted as evicted) when a compaction is not enough. For a held
 * intake: answers kept only for repeated requests must not keep new work out
 * (the hold ends at half of max_bytes live). Any thread. */
void spool_want_room(struct spool *spool, uint64_t bytes);

void spool_get_stats(struct spool *spool, struct spool_stats *stats);
/* Copy the stats into the /metrics gauges (butler_spool_*). NULL-safe. Any thread. */
void spool_update_metrics(struct spool *spool);
void spool_close(struct spool *spool);

/* CRC-32 (IEEE 802.3), exposed for tests. */
uint32_t spool_crc32(const void *data, size_t length);

#endif
