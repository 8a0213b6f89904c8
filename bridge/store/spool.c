/*
 * The spool's records on disk and its public calls (see spool.h); the index
 * is spool_index.c, recovery and compaction spool_compact.c.
 */
#include "bridge/store/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bridge/core/clock.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/store/spool_internal.h"

#define MODULE "spool"

/* ---- CRC-32 ---- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t spool_crc32(const void *data, size_t length)
{
    pthread_once(&crc_once, crc_init);
    uint32_t crc = 0xFFFFFFFFu;
    const unsigned char *bytes = data;
    for (size_t i = 0; i < length; i++)
        crc = crc_table[(crc ^ bytes[i]) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

/* ---- writing ---- */

enum butler_status spool_write_all(int fd, const unsigned char *data, size_t length)
{
    while (length > 0) {
        ssize_t written = write(fd, data, length);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            return BUTLER_ERR_IO;
        }
        data += written;
        length -= (size_t)written;
    }
    return BUTLER_OK;
}

/*
 * Put the file back to the `file_bytes` the index knows, so the next record
 * starts exactly where the index expects it: a write or flush that failed may
 * have left bytes behind (a partial record, or a whole one that was never
 * counted, which would shift every later offset). A file shorter than the
 * index is records lost from under us: refused, never written over.
 * Caller holds the mutex.
 */
static enum butler_status restore_end(struct spool *spool)
{
    struct stat info;
    if (fstat(spool->fd, &info) != 0) {
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "cannot check the end of %s: %s", spool->path,
                        strerror(errno));
        return BUTLER_ERR_IO;
    }
    if ((uint64_t)info.st_size == spool->file_bytes)
        return BUTLER_OK;
    if ((uint64_t)info.st_size < spool->file_bytes) {
        spool->stats.append_failures++;
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE,
                        "%s is %llu bytes but holds %llu: it was cut from outside; refusing to "
                        "append",
                        spool->path, (unsigned long long)info.st_size,
                        (unsigned long long)spool->file_bytes);
        return BUTLER_ERR_IO;
    }
    if (ftruncate(spool->fd, (off_t)spool->file_bytes) != 0) {
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "cannot cut a failed append from %s: %s",
                        spool->path, strerror(errno));
        return BUTLER_ERR_IO;
    }
    return BUTLER_OK;
}

/*
 * Append one record and report where it went. The record is built in one
 * buffer (on the stack when small, as most are) and written with one write()
 * so a crash leaves at most one partial record at the end. The end of the
 * file is checked first (restore_end), and any failure after the write began
 * (the write itself or, with `sync`, the flush) cuts the file back, so a
 * refused record is never on disk and later offsets never shift. The file is
 * open with O_APPEND (spool_open compacts into such a descriptor), so a
 * truncation moves where the next write lands. Caller holds the mutex.
 */
static enum butler_status append_record(struct spool *spool, bool sync, enum spool_record_type type,
                                        uint8_t flags, uint64_t id, uint64_t wall_ms,
                                        const void *data, size_t length, struct record_ref *where)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    unsigned char small[STACK_RECORD_BYTES];
    size_t body = BODY_FIXED_BYTES + length;
    unsigned char *buffer =
        HEADER_BYTES + body <= sizeof small ? small : malloc(HEADER_BYTES + body);
    if (buffer == NULL)
        goto out;
    status = restore_end(spool);
    if (status != BUTLER_OK)
        goto out;
    unsigned char *p = buffer + HEADER_BYTES;
    p[0] = (unsigned char)type;
    p[1] = flags;
    p[2] = p[3] = 0;
    store_put64(p + 4, id);
    store_put64(p + 12, wall_ms);
    if (length)
        memcpy(p + BODY_FIXED_BYTES, data, length);
    store_put32(buffer, RECORD_MAGIC);
    store_put32(buffer + 4, (uint32_t)body);
    store_put32(buffer + 8, spool_crc32(p, body));
    status = spool_write_all(spool->fd, buffer, HEADER_BYTES + body);
    if (status == BUTLER_OK && sync && fdatasync(spool->fd) != 0)
        status = BUTLER_ERR_IO;
    if (status != BUTLER_OK) {
        spool->stats.append_failures++;
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "cannot append to %s: %s", spool->path,
                        strerror(errno));
        /* Cut off whatever was written; if this fails too, the next append
         * tries again before writing (restore_end). */
        if (ftruncate(spool->fd, (off_t)spool->file_bytes) != 0)
            LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "cannot cut a failed append: %s",
                            strerror(errno));
        goto out;
    }
    if (where) {
        where->offset = spool->file_bytes;
        where->length = (uint32_t)(HEADER_BYTES + body);
    }
    spool->file_bytes += HEADER_BYTES + body;
out:
    if (buffer != small)
        free(buffer);
    return status;
}

/* Take back the record just appended at `ref` (its index entry could not be
 * made): the caller is told it failed, so it must not be on disk either. */
static void take_back(struct spool *spool, const struct record_ref *ref)
{
    spool->file_bytes = ref->offset;
    if (ftruncate(spool->fd, (off_t)ref->offset) != 0)
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "cannot take back a record: %s", strerror(errno));
}

enum butler_status spool_open(const struct spool_options *options,
                              void (*recovered)(void *context, const struct spool_recovered *entry),
                              void *context, struct spool **out)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    unsigned char *map = NULL;
    size_t map_size = 0;
    struct spool *spool = calloc(1, sizeof *spool);
    if (spool == NULL)
        goto out;
    pthread_mutex_init(&spool->mutex, NULL);
    spool->fd = -1;
    spool->options = *options;
    if (spool->options.max_done_entries == 0)
        spool->options.max_done_entries = SPOOL_DONE_MAX_DEFAULT;
    spool->next_id = 1;
    status = BUTLER_ERR_INVALID;
    if (snprintf(spool->directory, sizeof spool->directory, "%s", options->directory) >=
            (int)sizeof spool->directory ||
        snprintf(spool->path, sizeof spool->path, "%s/spool.log", options->directory) >=
            (int)sizeof spool->path ||
        snprintf(spool->temporary_path, sizeof spool->temporary_path, "%s/spool.log.tmp",
                 options->directory) >= (int)sizeof spool->temporary_path)
        goto out;
    spool->options.directory = spool->directory;
    status = BUTLER_ERR_IO;
    if (mkdir(spool->directory, 0700) != 0 && errno != EEXIST) {
        LOG_ERROR(MODULE, "cannot create spool directory %s: %s", spool->directory,
                  strerror(errno));
        goto out;
    }
    int fd = open(spool->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        LOG_ERROR(MODULE, "cannot open %s: %s", spool->path, strerror(errno));
        goto out;
    }
    spool->fd = fd;
    struct stat info;
    if (fstat(fd, &info) != 0)
        goto out;
    map_size = (size_t)info.st_size;
    if (map_size > 0) {
        map = mmap(NULL, map_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            map = NULL;
            goto out;
        }
        spool_scan_file(spool, map, map_size);
    }
    spool->file_bytes = map_size;
    status = spool_report_recovered(spool, map, recovered, context);
    if (status != BUTLER_OK)
        goto out;
    if (spool->stats.skipped_bytes)
        LOG_WARN(MODULE, "skipped %llu corrupt or truncated bytes in %s",
                 (unsigned long long)spool->stats.skipped_bytes, spool->path);
    if (spool->stats.recovered_entries)
        LOG_INFO(MODULE, "recovered %llu unfinished item(s) from %s",
                 (unsigned long long)spool->stats.recovered_entries, spool->path);
    /* Start from a clean, compact file: drops garbage and finished work. */
    status = spool_compact(spool);
    if (status != BUTLER_OK)
        goto out;
    *out = spool;
    spool = NULL;
out:
    if (map)
        munmap(map, map_size);
    if (spool)
        spool_close(spool);
    return status;
}

/*
 * The byte budget behind spool.max_bytes (a hard cap of the file):
 *   - every unfinished item keeps DONE_RESERVE_BYTES set aside for the empty
 *     DONE that retires it, so finishing work always fits and never waits
 *     for room that only finishing work can free;
 *   - new work (ADD) may fill the file only up to max_bytes minus
 *     ADD_HEADROOM of it, so the work already taken can still write its notes
 *     and answers when ADDs have filled their part;
 *   - notes and answers (PROGRESS, non-empty DONE) may use the rest;
 *     past it a note is refused (BUTLER_ERR_FULL: the caller waits, as for
 *     any note it cannot write; an item's SPOOL_NOTES_MAX is BUTLER_ERR_LIMIT) and an answer is
 * dropped: the DONE is written empty (the work is finished; only its answer is not kept for a
 *     repeated request), counted in spool_stats.answers_dropped.
 * Whatever would not fit first tries a compaction (or asks the housekeeping
 * thread for one with compact_in_housekeeping). Caller holds the mutex.
 */
enum {
    DONE_RESERVE_BYTES = HEADER_BYTES + BODY_FIXED_BYTES,
    ADD_HEADROOM_DIVISOR = 8, /* ADDs stop at 7/8 of max_bytes */
};

/* True when `bytes` more fit under `limit`, with the DONE reserve of
 * `reserved_items` unfinished items kept free. */
static bool fits(const struct spool *spool, uint64_t bytes, uint64_t limit, uint64_t reserved_items)
{
    return spool->file_bytes + bytes + reserved_items * DONE_RESERVE_BYTES <= limit;
}

/*
 * Compact, and when that is not enough for `bytes` (with new work, only:
 * `evict_answers`), forget the oldest retained answers, counted as evicted,
 * and compact again: new work goes before remembered answers, which only
 * serve repeated requests. Caller holds the mutex.
 */
static void compact_for(struct spool *spool, uint64_t bytes, uint64_t limit,
                        uint64_t reserved_items, bool evict_answers)
{
    if (spool_compact(spool) != BUTLER_OK) {
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "compaction of a full spool failed");
        return;
    }
    if (!evict_answers || fits(spool, bytes, limit, reserved_items) || spool->done_count == 0)
        return;
    /* After a compaction the file is what is live: evict until it would fit. */
    while (spool->done_count > 0 &&
           spool->live_bytes + bytes + reserved_items * DONE_RESERVE_BYTES > limit)
        spool_index_evict_oldest_done(spool);
    if (spool_compact(spool) != BUTLER_OK)
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "compaction of a full spool failed");
}

/* Make room for `bytes` under `limit` if a compaction can: inline, or (with
 * compact_in_housekeeping) by asking the housekeeping thread and refusing now. */
static bool make_room(struct spool *spool, uint64_t bytes, uint64_t limit, uint64_t reserved_items,
                      bool evict_answers)
{
    if (fits(spool, bytes, limit, reserved_items))
        return true;
    if (spool->options.compact_in_housekeeping) {
        spool->compact_wanted = true;
        if (evict_answers && bytes > spool->room_wanted)
            spool->room_wanted = bytes;
        return false;
    }
    compact_for(spool, bytes, limit, reserved_items, evict_answers);
    return fits(spool, bytes, limit, reserved_items);
}

static uint64_t add_limit(const struct spool *spool)
{
    return spool->options.max_bytes - spool->options.max_bytes / ADD_HEADROOM_DIVISOR;
}

enum butler_status spool_add(struct spool *spool, const void *data, size_t length, uint64_t *id_out)
{
    if (length > SPOOL_RECORD_DATA_MAX)
        return BUTLER_ERR_TOO_LARGE;
    enum butler_status status;
    pthread_mutex_lock(&spool->mutex);
    uint64_t record_bytes = HEADER_BYTES + BODY_FIXED_BYTES + length;
    if (spool->live_active >= SPOOL_LIVE_MAX ||
        !make_room(spool, record_bytes, add_limit(spool), spool->live_active + 1, true)) {
        status = BUTLER_ERR_FULL;
        goto out;
    }
    uint64_t id = spool->next_id++;
    uint64_t wall_ms = clock_wall_ms();
    struct record_ref ref;
    status =
        append_record(spool, spool->options.fsync, SPOOL_ADD, 0, id, wall_ms, data, length, &ref);
    if (status != BUTLER_OK)
        goto out;
    status = spool_index_push_live(spool, id, wall_ms, ref);
    if (status != BUTLER_OK) {
        take_back(spool, &ref);
        goto out;
    }
    *id_out = id;
out:
    pthread_mutex_unlock(&spool->mutex);
    return status;
}

enum butler_status spool_progress(struct spool *spool, uint64_t id, const void *data, size_t length)
{
    if (length > SPOOL_RECORD_DATA_MAX)
        return BUTLER_ERR_TOO_LARGE;
    enum butler_status status = BUTLER_ERR_NOT_FOUND;
    pthread_mutex_lock(&spool->mutex);
    struct live_entry *entry = spool_index_find_live(spool, id);
    if (entry == NULL)
        goto out;
    /* The per-item cap is final for this item: a status of its own, so a
     * caller waiting for room (BUTLER_ERR_FULL) does not wait for nothing. */
    status = BUTLER_ERR_LIMIT;
    if (entry->note_count >= SPOOL_NOTES_MAX)
        goto out;
    status = BUTLER_ERR_FULL;
    if (!make_room(spool, HEADER_BYTES + BODY_FIXED_BYTES + length, spool->options.max_bytes,
                   spool->live_active, false)) {
        spool->stats.notes_refused++;
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "spool full: cannot note progress of %llu",
                        (unsigned long long)id);
        goto out;
    }
    /* A compaction moved the index: find the entry again. */
    entry = spool_index_find_live(spool, id);
    struct record_ref ref;
    /* Not flushed here: a caller about to make a call with an effect flushes
     * its notes once (spool_flush), so several notes share one flush. */
    status =
        append_record(spool, false, SPOOL_PROGRESS, 0, id, clock_wall_ms(), data, length, &ref);
    if (status == BUTLER_OK) {
        status = spool_index_push_note(spool, entry, ref);
        if (status != BUTLER_OK)
            take_back(spool, &ref);
    }
out:
    pthread_mutex_unlock(&spool->mutex);
    return status;
}

enum butler_status spool_flush(struct spool *spool)
{
    if (!spool->options.fsync)
        return BUTLER_OK;
    enum butler_status status = BUTLER_OK;
    pthread_mutex_lock(&spool->mutex);
    if (fdatasync(spool->fd) != 0) {
        spool->stats.append_failures++;
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "cannot flush %s: %s", spool->path,
                        strerror(errno));
        status = BUTLER_ERR_IO;
    }
    pthread_mutex_unlock(&spool->mutex);
    return status;
}

enum butler_status spool_done(struct spool *spool, uint64_t id, const void *data, size_t length)
{
    return spool_done_kind(spool, id, NULL, data, length);
}

/*
 * A DONE with an answer and a kind carries DONE_FLAG_KIND and, as its data,
 * u8 kind length | kind | answer; without either (and in files written
 * before kinds) the data is the answer alone. The flag byte was always 0, so
 * old files read as before.
 */
enum butler_status spool_done_kind(struct spool *spool, uint64_t id, const char *kind,
                                   const void *data, size_t length)
{
    size_t kind_length = kind ? strlen(kind) : 0;
    if (kind_length > SPOOL_KIND_MAX)
        return BUTLER_ERR_INVALID;
    if (length + 1 + kind_length > SPOOL_RECORD_DATA_MAX)
        return BUTLER_ERR_TOO_LARGE;
    enum butler_status status = BUTLER_ERR_NOT_FOUND;
    unsigned char *tagged = NULL;
    pthread_mutex_lock(&spool->mutex);
    if (spool_index_find_live(spool, id) == NULL)
        goto out;
    /* This item's own reserve pays for an empty DONE; an answer must fit
     * beside the other items' reserves, else it is not kept. */
    if (length > 0 && !make_room(spool, HEADER_BYTES + BODY_FIXED_BYTES + 1 + kind_length + length,
                                 spool->options.max_bytes, spool->live_active - 1, false)) {
        spool->stats.answers_dropped++;
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                        "spool full: the answer of %llu is not kept (a repeated request runs "
                        "again)",
                        (unsigned long long)id);
        length = 0;
    }
    struct live_entry *entry = spool_index_find_live(spool, id);
    struct record_ref ref;
    uint64_t wall_ms = clock_wall_ms();
    /* Not flushed either: a DONE lost to a power cut replays finished work,
     * which the notes, the QRS check and the requestId window make harmless. */
    uint8_t flags = 0;
    if (length > 0 && kind_length > 0) {
        status = BUTLER_ERR_NOMEM;
        tagged = malloc(1 + kind_length + length);
        if (tagged == NULL)
            goto out;
        tagged[0] = (unsigned char)kind_length;
        memcpy(tagged + 1, kind, kind_length);
        memcpy(tagged + 1 + kind_length, data, length);
        data = tagged;
        length += 1 + kind_length;
        flags = DONE_FLAG_KIND;
    }
    status = append_record(spool, false, SPOOL_DONE, flags, id, wall_ms, data, length, &ref);
    if (status != BUTLER_OK)
        goto out;
    spool_index_finish_live(spool, entry);
    /* An empty answer is nothing to remember: the DONE only retires the ADD. */
    if (spool->options.done_retention_ms > 0 && length > 0)
        spool_index_push_done(spool, id, wall_ms, ref);
    if (!spool->options.compact_in_housekeeping)
        spool_maybe_compact(spool);
out:
    pthread_mutex_unlock(&spool->mutex);
    free(tagged);
    return status;
}

/* Copy the data of the record at `ref` into a malloc'd buffer, checking its
 * checksum. Caller holds the mutex. */
static enum butler_status read_record_data(struct spool *spool, const struct record_ref *ref,
                                           unsigned char **data_out, size_t *length_out)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    unsigned char *record = malloc(ref->length);
    if (record == NULL)
        goto out;
    status = BUTLER_ERR_IO;
    if (pread(spool->fd, record, ref->length, (off_t)ref->offset) != (ssize_t)ref->length ||
        spool_crc32(record + HEADER_BYTES, ref->length - HEADER_BYTES) != store_get32(record + 8))
        goto out;
    struct spool_done_parts parts =
        spool_record_parts(record + HEADER_BYTES, ref->length - HEADER_BYTES);
    size_t length = parts.answer_length;
    /* Move the data (a DONE's answer, without its kind) to the front of the
     * buffer the caller gets. */
    memmove(record, parts.answer, length);
    *data_out = record;
    *length_out = length;
    record = NULL;
    status = BUTLER_OK;
out:
    free(record);
    return status;
}

enum butler_status spool_read(struct spool *spool, uint64_t id, unsigned char **data_out,
                              size_t *length_out)
{
    enum butler_status status = BUTLER_ERR_NOT_FOUND;
    *data_out = NULL;
    pthread_mutex_lock(&spool->mutex);
    struct live_entry *entry = spool_index_find_live(spool, id);
    if (entry != NULL)
        status = read_record_data(spool, &entry->add, data_out, length_out);
    pthread_mutex_unlock(&spool->mutex);
    return status;
}

enum butler_status spool_read_answer(struct spool *spool, uint64_t id, unsigned char **data_out,
                                     size_t *length_out)
{
    enum butler_status status = BUTLER_ERR_NOT_FOUND;
    *data_out = NULL;
    pthread_mutex_lock(&spool->mutex);
    spool_index_expire_done(spool, clock_wall_ms());
    /* Newest first: a repeated request usually follows its first soon. The
     * ring is in order of finishing, not of id, so this is a scan; it runs
     * only for repeated requests. */
    for (size_t i = spool->done_count; i > 0; i--) {
        const struct done_entry *done = spool_index_done_at(spool, i - 1);
        if (done->id == id) {
            status = read_record_data(spool, &done->record, data_out, length_out);
            break;
        }
    }
    pthread_mutex_unlock(&spool->mutex);
    return status;
}

void spool_want_room(struct spool *spool, uint64_t bytes)
{
    pthread_mutex_lock(&spool->mutex);
    spool->compact_wanted = true;
    if (bytes > spool->room_wanted)
        spool->room_wanted = bytes;
    pthread_mutex_unlock(&spool->mutex);
}

bool spool_housekeeping(struct spool *spool)
{
    pthread_mutex_lock(&spool->mutex);
    uint64_t before = spool->stats.compactions;
    if (spool->compact_wanted) {
        /* Room for the largest refused ADD, answers evicted if need be. */
        compact_for(spool, spool->room_wanted, add_limit(spool), spool->live_active + 1,
                    spool->room_wanted > 0);
        spool->compact_wanted = false;
        spool->room_wanted = 0;
    } else {
        spool_maybe_compact(spool);
    }
    bool compacted = spool->stats.compactions != before;
    pthread_mutex_unlock(&spool->mutex);
    return compacted;
}

void spool_get_stats(struct spool *spool, struct spool_stats *stats)
{
    pthread_mutex_lock(&spool->mutex);
    *stats = spool->stats;
    stats->file_bytes = spool->file_bytes;
    stats->live_bytes = spool->live_bytes;
    stats->live_entries = spool->live_active;
    stats->done_entries = spool->done_count;
    stats->index_bytes = spool->live_capacity * sizeof(struct live_entry) +
                         spool->done_capacity * sizeof(struct done_entry);
    pthread_mutex_unlock(&spool->mutex);
}

void spool_update_metrics(struct spool *spool)
{
    static struct metric *file_bytes, *live_bytes, *max_bytes, *unfinished, *answers, *evicted,
        *compactions, *compaction_max_us;
    if (spool == NULL)
        return;
    if (file_bytes == NULL) {
        file_bytes = metrics_get("butler_spool_bytes", "part=\"file\"", METRIC_GAUGE,
                                 "Spool file size, and the part of it a compaction would keep");
        live_bytes = metrics_get("butler_spool_bytes", "part=\"live\"", METRIC_GAUGE,
                                 "Spool file size, and the part of it a compaction would keep");
        /* The cap, so an alert can say "near the cap" without knowing the config. */
        max_bytes = metrics_get("butler_spool_bytes", "part=\"max\"", METRIC_GAUGE,
                                "Spool file size, and the part of it a compaction would keep");
        unfinished = metrics_get("butler_spool_entries", "kind=\"unfinished\"", METRIC_GAUGE,
                                 "Unfinished work and retained answers in the spool");
        answers = metrics_get("butler_spool_entries", "kind=\"answers\"", METRIC_GAUGE,
                              "Unfinished work and retained answers in the spool");
        evicted = metrics_get("butler_spool_answers_evicted_total", "", METRIC_COUNTER,
                              "Answers forgotten before their retention ended (cap reached)");
        compactions = metrics_get("butler_spool_compactions_total", "", METRIC_COUNTER,
                                  "Spool compactions since start");
        compaction_max_us = metrics_get("butler_spool_compaction_max_microseconds", "",
                                        METRIC_GAUGE, "Longest spool compaction since start");
    }
    struct spool_stats stats;
    spool_get_stats(spool, &stats);
    metrics_set(file_bytes, (int64_t)stats.file_bytes);
    metrics_set(live_bytes, (int64_t)stats.live_bytes);
    metrics_set(max_bytes, (int64_t)spool->options.max_bytes);
    metrics_set(unfinished, (int64_t)stats.live_entries);
    metrics_set(answers, (int64_t)stats.done_entries);
    metrics_set(evicted, (int64_t)stats.done_evicted);
    metrics_set(compactions, (int64_t)stats.compactions);
    metrics_set(compaction_max_us, (int64_t)stats.max_compaction_us);
}

void spool_close(struct spool *spool)
{
    if (spool == NULL)
        return;
    if (spool->fd >= 0)
        close(spool->fd);
    for (size_t i = spool->live_head; i < spool->live_count; i++)
        free(spool->live[i].notes);
    free(spool->live);
    free(spool->done);
    pthread_mutex_destroy(&spool->mutex);
    free(spool);
}
