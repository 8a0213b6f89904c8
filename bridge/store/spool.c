#include "bridge/store/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bridge/core/clock.h"
#include "bridge/core/log.h"

#define MODULE "spool"

enum {
    RECORD_MAGIC = 0x524c5442u, /* "BTLR" little-endian */
    HEADER_BYTES = 12,          /* magic, body length, crc32 */
    BODY_FIXED_BYTES = 20,      /* type, 3 reserved, id, wall_ms */
    NOTES_MAX = 64,
    LIVE_MAX = 100000,
    DONE_MAX = 100000,
    COMPACT_MIN_BYTES = 4 * 1024 * 1024,
    PATH_MAX_BYTES = 4096,
};

struct record_ref {
    uint64_t offset; /* of the record header in the current file */
    uint32_t length; /* whole record: header + body */
};

struct live_entry {
    uint64_t id;
    uint64_t wall_ms;
    bool finished; /* tombstone until the next compaction squeezes it out */
    struct record_ref add;
    struct record_ref *notes;
    size_t note_count;
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
    struct live_entry *live; /* sorted by id (ids only grow) */
    size_t live_count, live_capacity, live_active;
    struct done_entry *done; /* oldest first */
    size_t done_count, done_capacity;
    struct spool_stats stats;
};

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

/* ---- little-endian fields ---- */

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* ---- writing ---- */

static enum butler_status write_all(int fd, const unsigned char *data, size_t length)
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
 * Append one record to `fd` (whose size is *file_bytes) and report where it
 * went. The record is built in one buffer and written with one write() so a
 * crash leaves at most one partial record at the end.
 */
static enum butler_status append_record(int fd, bool sync, uint64_t *file_bytes,
                                        enum spool_record_type type, uint64_t id, uint64_t wall_ms,
                                        const void *data, size_t length, struct record_ref *where)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    size_t body = BODY_FIXED_BYTES + length;
    unsigned char *buffer = malloc(HEADER_BYTES + body);
    if (buffer == NULL)
        goto out;
    unsigned char *p = buffer + HEADER_BYTES;
    p[0] = (unsigned char)type;
    p[1] = p[2] = p[3] = 0;
    put64(p + 4, id);
    put64(p + 12, wall_ms);
    if (length)
        memcpy(p + BODY_FIXED_BYTES, data, length);
    put32(buffer, RECORD_MAGIC);
    put32(buffer + 4, (uint32_t)body);
    put32(buffer + 8, spool_crc32(p, body));
    status = write_all(fd, buffer, HEADER_BYTES + body);
    if (status != BUTLER_OK) {
        /* Cut off whatever part was written, so the next record starts clean. */
        if (ftruncate(fd, (off_t)*file_bytes) != 0)
            LOG_ERROR(MODULE, "cannot truncate a failed write: %s", strerror(errno));
        goto out;
    }
    if (sync && fdatasync(fd) != 0) {
        status = BUTLER_ERR_IO;
        goto out;
    }
    if (where) {
        where->offset = *file_bytes;
        where->length = (uint32_t)(HEADER_BYTES + body);
    }
    *file_bytes += HEADER_BYTES + body;
out:
    free(buffer);
    return status;
}

/* ---- index ---- */

static struct live_entry *find_live(struct spool *spool, uint64_t id)
{
    size_t low = 0, high = spool->live_count;
    while (low < high) {
        size_t middle = (low + high) / 2;
        if (spool->live[middle].id < id)
            low = middle + 1;
        else
            high = middle;
    }
    if (low < spool->live_count && spool->live[low].id == id && !spool->live[low].finished)
        return &spool->live[low];
    return NULL;
}

static enum butler_status push_live(struct spool *spool, uint64_t id, uint64_t wall_ms,
                                    struct record_ref add)
{
    if (spool->live_active >= LIVE_MAX)
        return BUTLER_ERR_FULL;
    if (spool->live_count == spool->live_capacity) {
        size_t grown = spool->live_capacity ? spool->live_capacity * 2 : 64;
        struct live_entry *bigger = realloc(spool->live, grown * sizeof *bigger);
        if (bigger == NULL)
            return BUTLER_ERR_NOMEM;
        spool->live = bigger;
        spool->live_capacity = grown;
    }
    spool->live[spool->live_count++] =
        (struct live_entry){.id = id, .wall_ms = wall_ms, .add = add};
    spool->live_active++;
    spool->live_bytes += add.length;
    return BUTLER_OK;
}

static enum butler_status push_note(struct spool *spool, struct live_entry *entry,
                                    struct record_ref note)
{
    if (entry->note_count >= NOTES_MAX)
        return BUTLER_ERR_FULL;
    struct record_ref *bigger = realloc(entry->notes, (entry->note_count + 1) * sizeof *bigger);
    if (bigger == NULL)
        return BUTLER_ERR_NOMEM;
    entry->notes = bigger;
    entry->notes[entry->note_count++] = note;
    spool->live_bytes += note.length;
    return BUTLER_OK;
}

static void finish_live(struct spool *spool, struct live_entry *entry)
{
    spool->live_bytes -= entry->add.length;
    for (size_t i = 0; i < entry->note_count; i++)
        spool->live_bytes -= entry->notes[i].length;
    free(entry->notes);
    entry->notes = NULL;
    entry->note_count = 0;
    entry->finished = true;
    spool->live_active--;
}

static void push_done(struct spool *spool, uint64_t id, uint64_t wall_ms, struct record_ref record)
{
    if (spool->done_count == DONE_MAX) {
        spool->live_bytes -= spool->done[0].record.length;
        memmove(spool->done, spool->done + 1, (spool->done_count - 1) * sizeof *spool->done);
        spool->done_count--;
    }
    if (spool->done_count == spool->done_capacity) {
        size_t grown = spool->done_capacity ? spool->done_capacity * 2 : 64;
        struct done_entry *bigger = realloc(spool->done, grown * sizeof *bigger);
        if (bigger == NULL)
            return; /* forgetting an old answer only weakens de-duplication */
        spool->done = bigger;
        spool->done_capacity = grown;
    }
    spool->done[spool->done_count++] = (struct done_entry){id, wall_ms, record};
    spool->live_bytes += record.length;
}

/* ---- compaction ---- */

static enum butler_status copy_record(int from, int to, uint64_t *to_bytes, struct record_ref *ref)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    unsigned char *buffer = malloc(ref->length);
    if (buffer == NULL)
        goto out;
    status = BUTLER_ERR_IO;
    if (pread(from, buffer, ref->length, (off_t)ref->offset) != (ssize_t)ref->length)
        goto out;
    status = write_all(to, buffer, ref->length);
    if (status != BUTLER_OK)
        goto out;
    ref->offset = *to_bytes;
    *to_bytes += ref->length;
out:
    free(buffer);
    return status;
}

static void fsync_directory(const char *directory)
{
    int fd = open(directory, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/*
 * Rewrite the file with only live work and retained answers, then rename it
 * over the old one. The index's offsets are updated only once the new file is
 * in place, so a failure leaves the old file and index as they were.
 * Caller holds the mutex.
 */
static enum butler_status compact(struct spool *spool)
{
    enum butler_status status = BUTLER_ERR_IO;
    uint64_t now = clock_wall_ms();
    int to = open(spool->temporary_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    struct live_entry *live = NULL;
    struct done_entry *done = NULL;
    size_t live_count = 0, done_count = 0;
    uint64_t to_bytes = 0, kept_bytes = 0;
    if (to < 0) {
        LOG_ERROR(MODULE, "cannot create %s: %s", spool->temporary_path, strerror(errno));
        goto out;
    }
    status = BUTLER_ERR_NOMEM;
    live = calloc(spool->live_active ? spool->live_active : 1, sizeof *live);
    done = calloc(spool->done_count ? spool->done_count : 1, sizeof *done);
    if (live == NULL || done == NULL)
        goto out;
    for (size_t i = 0; i < spool->live_count; i++) {
        if (spool->live[i].finished)
            continue;
        struct live_entry copy = spool->live[i];
        copy.notes = copy.note_count ? malloc(copy.note_count * sizeof *copy.notes) : NULL;
        if (copy.note_count && copy.notes == NULL)
            goto out;
        if (copy.note_count)
            memcpy(copy.notes, spool->live[i].notes, copy.note_count * sizeof *copy.notes);
        live[live_count++] = copy;
        status = copy_record(spool->fd, to, &to_bytes, &live[live_count - 1].add);
        for (size_t n = 0; status == BUTLER_OK && n < copy.note_count; n++)
            status = copy_record(spool->fd, to, &to_bytes, &live[live_count - 1].notes[n]);
        if (status != BUTLER_OK)
            goto out;
        status = BUTLER_ERR_NOMEM;
    }
    for (size_t i = 0; i < spool->done_count; i++) {
        if (spool->done[i].wall_ms + spool->options.done_retention_ms <= now)
            continue;
        done[done_count] = spool->done[i];
        status = copy_record(spool->fd, to, &to_bytes, &done[done_count].record);
        if (status != BUTLER_OK)
            goto out;
        done_count++;
    }
    status = BUTLER_ERR_IO;
    if (fsync(to) != 0 || close(to) != 0) {
        to = -1;
        goto out;
    }
    to = -1;
    if (rename(spool->temporary_path, spool->path) != 0) {
        LOG_ERROR(MODULE, "cannot replace %s: %s", spool->path, strerror(errno));
        goto out;
    }
    fsync_directory(spool->directory);
    int fd = open(spool->path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (fd < 0) {
        LOG_ERROR(MODULE, "cannot reopen %s: %s", spool->path, strerror(errno));
        goto out;
    }
    close(spool->fd);
    spool->fd = fd;
    for (size_t i = 0; i < spool->live_count; i++)
        free(spool->live[i].notes);
    free(spool->live);
    free(spool->done);
    for (size_t i = 0; i < live_count; i++) {
        kept_bytes += live[i].add.length;
        for (size_t n = 0; n < live[i].note_count; n++)
            kept_bytes += live[i].notes[n].length;
    }
    for (size_t i = 0; i < done_count; i++)
        kept_bytes += done[i].record.length;
    spool->live = live;
    spool->live_count = spool->live_active = live_count;
    spool->live_capacity = spool->live_active ? spool->live_active : 1;
    spool->done = done;
    spool->done_count = done_count;
    spool->done_capacity = spool->done_count ? spool->done_count : 1;
    spool->file_bytes = to_bytes;
    spool->live_bytes = kept_bytes;
    spool->stats.compactions++;
    live = NULL;
    done = NULL;
    status = BUTLER_OK;
out:
    if (to >= 0) {
        close(to);
        unlink(spool->temporary_path);
    }
    if (live) {
        for (size_t i = 0; i < live_count; i++)
            free(live[i].notes);
        free(live);
    }
    free(done);
    return status;
}

static void maybe_compact(struct spool *spool)
{
    if (spool->file_bytes >= COMPACT_MIN_BYTES && spool->file_bytes > 2 * spool->live_bytes)
        if (compact(spool) != BUTLER_OK)
            LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "compaction failed; the spool keeps growing");
}

/* ---- recovery ---- */

static size_t find_magic(const unsigned char *map, size_t size, size_t from)
{
    for (size_t i = from; i + 4 <= size; i++) {
        const unsigned char *hit = memchr(map + i, 0x42, size - i);
        if (hit == NULL)
            break;
        i = (size_t)(hit - map);
        if (i + 4 <= size && get32(hit) == RECORD_MAGIC)
            return i;
    }
    return size;
}

/*
 * Walk the mapped file. A bad header, an impossible length or a checksum
 * mismatch means a torn write or garbage: skip ahead to the next magic number
 * and try again, so every complete record is kept.
 */
static void scan_file(struct spool *spool, const unsigned char *map, size_t size)
{
    size_t offset = 0;
    while (offset + HEADER_BYTES + BODY_FIXED_BYTES <= size) {
        const unsigned char *p = map + offset;
        uint32_t body = get32(p + 4);
        bool ok = get32(p) == RECORD_MAGIC && body >= BODY_FIXED_BYTES &&
                  body <= BODY_FIXED_BYTES + SPOOL_RECORD_DATA_MAX &&
                  offset + HEADER_BYTES + body <= size &&
                  spool_crc32(p + HEADER_BYTES, body) == get32(p + 8);
        if (!ok) {
            size_t next_offset = find_magic(map, size, offset + 1);
            spool->stats.skipped_bytes += next_offset - offset;
            offset = next_offset;
            continue;
        }
        const unsigned char *b = p + HEADER_BYTES;
        enum spool_record_type type = b[0];
        uint64_t id = get64(b + 4);
        uint64_t wall_ms = get64(b + 12);
        struct record_ref ref = {offset, HEADER_BYTES + body};
        if (id >= spool->next_id)
            spool->next_id = id + 1;
        if (type == SPOOL_ADD) {
            if (find_live(spool, id) == NULL &&
                (spool->live_count == 0 || spool->live[spool->live_count - 1].id < id))
                push_live(spool, id, wall_ms, ref);
        } else if (type == SPOOL_PROGRESS) {
            struct live_entry *entry = find_live(spool, id);
            if (entry)
                push_note(spool, entry, ref);
        } else if (type == SPOOL_DONE) {
            struct live_entry *entry = find_live(spool, id);
            if (entry)
                finish_live(spool, entry);
            push_done(spool, id, wall_ms, ref);
        }
        offset += ref.length;
    }
    if (offset < size)
        spool->stats.skipped_bytes += size - offset;
}

static void report_recovered(struct spool *spool, const unsigned char *map,
                             void (*recovered)(void *, const struct spool_recovered *),
                             void *context)
{
    uint64_t now = clock_wall_ms();
    for (size_t i = 0; i < spool->done_count && recovered; i++) {
        const struct done_entry *done = &spool->done[i];
        if (done->wall_ms + spool->options.done_retention_ms <= now)
            continue;
        struct spool_recovered entry = {
            .type = SPOOL_DONE,
            .id = done->id,
            .wall_ms = done->wall_ms,
            .data = map + done->record.offset + HEADER_BYTES + BODY_FIXED_BYTES,
            .length = done->record.length - HEADER_BYTES - BODY_FIXED_BYTES,
        };
        recovered(context, &entry);
    }
    for (size_t i = 0; i < spool->live_count; i++) {
        const struct live_entry *live = &spool->live[i];
        if (live->finished)
            continue;
        const unsigned char *notes[NOTES_MAX];
        size_t note_lengths[NOTES_MAX];
        for (size_t n = 0; n < live->note_count; n++) {
            notes[n] = map + live->notes[n].offset + HEADER_BYTES + BODY_FIXED_BYTES;
            note_lengths[n] = live->notes[n].length - HEADER_BYTES - BODY_FIXED_BYTES;
        }
        struct spool_recovered entry = {
            .type = SPOOL_ADD,
            .id = live->id,
            .wall_ms = live->wall_ms,
            .data = map + live->add.offset + HEADER_BYTES + BODY_FIXED_BYTES,
            .length = live->add.length - HEADER_BYTES - BODY_FIXED_BYTES,
            .note_count = live->note_count,
            .notes = notes,
            .note_lengths = note_lengths,
        };
        spool->stats.recovered_entries++;
        if (recovered)
            recovered(context, &entry);
    }
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
        scan_file(spool, map, map_size);
    }
    spool->file_bytes = map_size;
    report_recovered(spool, map, recovered, context);
    if (spool->stats.skipped_bytes)
        LOG_WARN(MODULE, "skipped %llu corrupt or truncated bytes in %s",
                 (unsigned long long)spool->stats.skipped_bytes, spool->path);
    if (spool->stats.recovered_entries)
        LOG_INFO(MODULE, "recovered %llu unfinished item(s) from %s",
                 (unsigned long long)spool->stats.recovered_entries, spool->path);
    /* Start from a clean, compact file: drops garbage and finished work. */
    status = compact(spool);
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

enum butler_status spool_add(struct spool *spool, const void *data, size_t length, uint64_t *id_out)
{
    if (length > SPOOL_RECORD_DATA_MAX)
        return BUTLER_ERR_TOO_LARGE;
    enum butler_status status;
    pthread_mutex_lock(&spool->mutex);
    uint64_t record_bytes = HEADER_BYTES + BODY_FIXED_BYTES + length;
    if (spool->file_bytes + record_bytes > spool->options.max_bytes && compact(spool) != BUTLER_OK)
        LOG_RATELIMITED(LOG_LEVEL_ERROR, MODULE, "compaction of a full spool failed");
    if (spool->file_bytes + record_bytes > spool->options.max_bytes ||
        spool->live_active >= LIVE_MAX) {
        status = BUTLER_ERR_FULL;
        goto out;
    }
    uint64_t id = spool->next_id++;
    uint64_t wall_ms = clock_wall_ms();
    struct record_ref ref;
    status = append_record(spool->fd, spool->options.fsync, &spool->file_bytes, SPOOL_ADD, id,
                           wall_ms, data, length, &ref);
    if (status != BUTLER_OK)
        goto out;
    status = push_live(spool, id, wall_ms, ref);
    if (status != BUTLER_OK)
        goto out;
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
    struct live_entry *entry = find_live(spool, id);
    if (entry == NULL)
        goto out;
    status = BUTLER_ERR_FULL;
    if (entry->note_count >= NOTES_MAX)
        goto out;
    struct record_ref ref;
    /* Not flushed even with spool.fsync: a note lost to a power cut only
     * makes the replay ask QRS whether the task started (the contract's
     * check for exactly that window), and the next flush of an ADD carries it. */
    status = append_record(spool->fd, false, &spool->file_bytes, SPOOL_PROGRESS, id,
                           clock_wall_ms(), data, length, &ref);
    if (status == BUTLER_OK)
        status = push_note(spool, entry, ref);
out:
    pthread_mutex_unlock(&spool->mutex);
    return status;
}

enum butler_status spool_done(struct spool *spool, uint64_t id, const void *data, size_t length)
{
    if (length > SPOOL_RECORD_DATA_MAX)
        return BUTLER_ERR_TOO_LARGE;
    enum butler_status status = BUTLER_ERR_NOT_FOUND;
    pthread_mutex_lock(&spool->mutex);
    struct live_entry *entry = find_live(spool, id);
    if (entry == NULL)
        goto out;
    struct record_ref ref;
    uint64_t wall_ms = clock_wall_ms();
    /* Not flushed either: a DONE lost to a power cut replays finished work,
     * which the notes, the QRS check and the requestId window make harmless. */
    status = append_record(spool->fd, false, &spool->file_bytes, SPOOL_DONE, id, wall_ms, data,
                           length, &ref);
    if (status != BUTLER_OK)
        goto out;
    finish_live(spool, entry);
    if (spool->options.done_retention_ms > 0)
        push_done(spool, id, wall_ms, ref);
    maybe_compact(spool);
out:
    pthread_mutex_unlock(&spool->mutex);
    return status;
}

enum butler_status spool_read(struct spool *spool, uint64_t id, unsigned char **data_out,
                              size_t *length_out)
{
    enum butler_status status = BUTLER_ERR_NOT_FOUND;
    unsigned char *record = NULL;
    *data_out = NULL;
    pthread_mutex_lock(&spool->mutex);
    struct live_entry *entry = find_live(spool, id);
    if (entry == NULL)
        goto out;
    status = BUTLER_ERR_NOMEM;
    record = malloc(entry->add.length);
    if (record == NULL)
        goto out;
    status = BUTLER_ERR_IO;
    if (pread(spool->fd, record, entry->add.length, (off_t)entry->add.offset) !=
            (ssize_t)entry->add.length ||
        spool_crc32(record + HEADER_BYTES, entry->add.length - HEADER_BYTES) != get32(record + 8))
        goto out;
    size_t length = entry->add.length - HEADER_BYTES - BODY_FIXED_BYTES;
    /* Move the data to the front of the buffer the caller gets. */
    memmove(record, record + HEADER_BYTES + BODY_FIXED_BYTES, length);
    *data_out = record;
    *length_out = length;
    record = NULL;
    status = BUTLER_OK;
out:
    pthread_mutex_unlock(&spool->mutex);
    free(record);
    return status;
}

void spool_get_stats(struct spool *spool, struct spool_stats *stats)
{
    pthread_mutex_lock(&spool->mutex);
    *stats = spool->stats;
    stats->file_bytes = spool->file_bytes;
    stats->live_entries = spool->live_active;
    pthread_mutex_unlock(&spool->mutex);
}

void spool_close(struct spool *spool)
{
    if (spool == NULL)
        return;
    if (spool->fd >= 0)
        close(spool->fd);
    for (size_t i = 0; i < spool->live_count; i++)
        free(spool->live[i].notes);
    free(spool->live);
    free(spool->done);
    pthread_mutex_destroy(&spool->mutex);
    free(spool);
}
