#include "bridge/store/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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

#define MODULE "spool"

enum {
    RECORD_MAGIC = 0x524c5442u, /* "BTLR" little-endian */
    HEADER_BYTES = 12,          /* magic, body length, crc32 */
    BODY_FIXED_BYTES = 20,      /* type, 3 reserved, id, wall_ms */
    PATH_MAX_BYTES = 4096,
    /* Records up to this size are built on the stack: most are. */
    STACK_RECORD_BYTES = 1024,
    /* Compaction writes the new file through a buffer of this size. */
    COMPACT_BUFFER_BYTES = 1024 * 1024,
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
 * went. The record is built in one buffer (on the stack when small, as most
 * are) and written with one write() so a crash leaves at most one partial
 * record at the end.
 */
static enum butler_status append_record(int fd, bool sync, uint64_t *file_bytes,
                                        enum spool_record_type type, uint64_t id, uint64_t wall_ms,
                                        const void *data, size_t length, struct record_ref *where)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    unsigned char small[STACK_RECORD_BYTES];
    size_t body = BODY_FIXED_BYTES + length;
    unsigned char *buffer =
        HEADER_BYTES + body <= sizeof small ? small : malloc(HEADER_BYTES + body);
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
    if (buffer != small)
        free(buffer);
    return status;
}

/* ---- index ---- */

static struct live_entry *find_live(struct spool *spool, uint64_t id)
{
    size_t low = spool->live_head, high = spool->live_count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
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
    if (spool->live_active >= SPOOL_LIVE_MAX)
        return BUTLER_ERR_FULL;
    if (spool->live_count == spool->live_capacity && spool->live_head > 0) {
        /* Slide the window to the front before growing. */
        memmove(spool->live, spool->live + spool->live_head,
                (spool->live_count - spool->live_head) * sizeof *spool->live);
        spool->live_count -= spool->live_head;
        spool->live_head = 0;
    }
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
    if (entry->note_count >= SPOOL_NOTES_MAX)
        return BUTLER_ERR_FULL;
    if (entry->note_count == entry->note_capacity) {
        size_t grown = entry->note_capacity ? entry->note_capacity * 2 : 4;
        if (grown > SPOOL_NOTES_MAX)
            grown = SPOOL_NOTES_MAX;
        struct record_ref *bigger = realloc(entry->notes, grown * sizeof *bigger);
        if (bigger == NULL)
            return BUTLER_ERR_NOMEM;
        entry->notes = bigger;
        entry->note_capacity = grown;
    }
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
    entry->note_count = entry->note_capacity = 0;
    entry->finished = true;
    spool->live_active--;
    /* Work mostly finishes in the order it came: drop finished entries from
     * the front so the index holds what is in flight, not what was done. */
    while (spool->live_head < spool->live_count && spool->live[spool->live_head].finished)
        spool->live_head++;
    if (spool->live_head == spool->live_count)
        spool->live_head = spool->live_count = 0;
}

static struct done_entry *done_at(struct spool *spool, size_t index)
{
    return &spool->done[(spool->done_head + index) % spool->done_capacity];
}

/* Forget retained answers older than done_retention_ms, oldest first. */
static void expire_done(struct spool *spool, uint64_t now_wall_ms)
{
    while (spool->done_count > 0) {
        struct done_entry *oldest = done_at(spool, 0);
        if (oldest->wall_ms + spool->options.done_retention_ms > now_wall_ms)
            break;
        spool->live_bytes -= oldest->record.length;
        spool->done_head = (spool->done_head + 1) % spool->done_capacity;
        spool->done_count--;
    }
}

/*
 * Retain an answer for done_retention_ms. At max_done_entries the oldest is
 * forgotten early (counted): that only shortens de-duplication for it.
 */
static void push_done(struct spool *spool, uint64_t id, uint64_t wall_ms, struct record_ref record)
{
    expire_done(spool, clock_wall_ms());
    if (spool->done_count > 0 && spool->done_count >= spool->options.max_done_entries) {
        spool->live_bytes -= done_at(spool, 0)->record.length;
        spool->done_head = (spool->done_head + 1) % spool->done_capacity;
        spool->done_count--;
        spool->stats.done_evicted++;
    }
    if (spool->done_count == spool->done_capacity) {
        size_t grown = spool->done_capacity ? spool->done_capacity * 2 : 64;
        if (grown > spool->options.max_done_entries)
            grown = spool->options.max_done_entries;
        struct done_entry *bigger = malloc(grown * sizeof *bigger);
        if (bigger == NULL)
            return; /* forgetting an old answer only weakens de-duplication */
        for (size_t i = 0; i < spool->done_count; i++)
            bigger[i] = *done_at(spool, i);
        free(spool->done);
        spool->done = bigger;
        spool->done_head = 0;
        spool->done_capacity = grown;
    }
    spool->done_count++;
    *done_at(spool, spool->done_count - 1) = (struct done_entry){id, wall_ms, record};
    spool->live_bytes += record.length;
}

/* ---- compaction ---- */

static uint64_t monotonic_us(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
}

/* The compacted file being written: records gathered in a buffer, written in
 * large pieces, so a compaction costs a few system calls, not two a record. */
struct compact_writer {
    int fd;
    unsigned char *buffer; /* COMPACT_BUFFER_BYTES, mapped for this compaction only */
    size_t buffered;
    uint64_t written; /* bytes in the new file, buffered ones included */
    enum butler_status status;
};

static void compact_flush(struct compact_writer *writer)
{
    if (writer->status == BUTLER_OK && writer->buffered > 0)
        writer->status = write_all(writer->fd, writer->buffer, writer->buffered);
    writer->buffered = 0;
}

/* Append the record at `ref` of the mapped old file to the new one. */
static void compact_copy(struct compact_writer *writer, const unsigned char *map, size_t map_size,
                         const struct record_ref *ref)
{
    if (writer->status != BUTLER_OK)
        return;
    if (ref->offset + ref->length > map_size) {
        writer->status = BUTLER_ERR_IO;
        return;
    }
    if (writer->buffered + ref->length > COMPACT_BUFFER_BYTES)
        compact_flush(writer);
    if (ref->length > COMPACT_BUFFER_BYTES) {
        if (writer->status == BUTLER_OK)
            writer->status = write_all(writer->fd, map + ref->offset, ref->length);
    } else {
        memcpy(writer->buffer + writer->buffered, map + ref->offset, ref->length);
        writer->buffered += ref->length;
    }
    writer->written += ref->length;
}

/*
 * Visit every record a compaction keeps, in the order it writes them: each
 * unfinished item (its ADD, then its notes), then the retained answers,
 * oldest first. Writing and re-pointing the index use the same walk, so the
 * new offsets are a running sum and need no array of their own.
 */
static void for_each_kept_record(struct spool *spool,
                                 void (*visit)(void *context, struct record_ref *ref),
                                 void *context)
{
    for (size_t i = spool->live_head; i < spool->live_count; i++) {
        struct live_entry *entry = &spool->live[i];
        if (entry->finished)
            continue;
        visit(context, &entry->add);
        for (size_t n = 0; n < entry->note_count; n++)
            visit(context, &entry->notes[n]);
    }
    for (size_t i = 0; i < spool->done_count; i++)
        visit(context, &done_at(spool, i)->record);
}

struct compact_copy_context {
    struct compact_writer *writer;
    const unsigned char *map;
    size_t map_size;
};

static void visit_copy(void *context, struct record_ref *ref)
{
    struct compact_copy_context *copy = context;
    compact_copy(copy->writer, copy->map, copy->map_size, ref);
}

static void visit_repoint(void *context, struct record_ref *ref)
{
    uint64_t *offset = context;
    ref->offset = *offset;
    *offset += ref->length;
}

static void fsync_directory(const char *directory)
{
    int fd = open(directory, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Squeeze finished entries out of the live window, in place. */
static void drop_finished_entries(struct spool *spool)
{
    size_t kept = 0;
    for (size_t i = spool->live_head; i < spool->live_count; i++)
        if (!spool->live[i].finished)
            spool->live[kept++] = spool->live[i];
    spool->live_head = 0;
    spool->live_count = kept;
}

/*
 * Rewrite the file with only live work and retained answers, then rename it
 * over the old one. The index is re-pointed only once the new file is in
 * place, so a failure leaves the old file and index as they were. Nothing is
 * allocated from the heap: the copy buffer is mapped for the compaction and
 * unmapped after it, so compactions leave no holes behind in a long-running
 * process. The new file is flushed to disk before the rename only with
 * spool.fsync: without it a power cut may lose recent work anyway, while a
 * SIGKILL never loses what the page cache holds. Caller holds the mutex.
 */
static enum butler_status compact(struct spool *spool)
{
    enum butler_status status = BUTLER_ERR_IO;
    uint64_t start_us = monotonic_us();
    struct compact_writer writer = {.fd = -1, .buffer = MAP_FAILED, .status = BUTLER_OK};
    unsigned char *map = MAP_FAILED;
    size_t map_size = (size_t)spool->file_bytes;
    expire_done(spool, clock_wall_ms());
    /* Opened for appending: once renamed, this descriptor is the spool's, so
     * no reopen can fail after the old file is gone. */
    writer.fd =
        open(spool->temporary_path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (writer.fd < 0) {
        LOG_ERROR(MODULE, "cannot create %s: %s", spool->temporary_path, strerror(errno));
        goto out;
    }
    if (map_size > 0) {
        map = mmap(NULL, map_size, PROT_READ, MAP_SHARED, spool->fd, 0);
        if (map == MAP_FAILED) {
            LOG_ERROR(MODULE, "cannot map %s: %s", spool->path, strerror(errno));
            goto out;
        }
    }
    status = BUTLER_ERR_NOMEM;
    writer.buffer = mmap(NULL, COMPACT_BUFFER_BYTES, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (writer.buffer == MAP_FAILED)
        goto out;
    struct compact_copy_context copy = {&writer, map, map_size};
    for_each_kept_record(spool, visit_copy, &copy);
    compact_flush(&writer);
    status = writer.status;
    if (status != BUTLER_OK)
        goto out;
    status = BUTLER_ERR_IO;
    if (spool->options.fsync && fsync(writer.fd) != 0)
        goto out;
    if (rename(spool->temporary_path, spool->path) != 0) {
        LOG_ERROR(MODULE, "cannot replace %s: %s", spool->path, strerror(errno));
        goto out;
    }
    if (spool->options.fsync)
        fsync_directory(spool->directory);
    close(spool->fd);
    spool->fd = writer.fd;
    writer.fd = -1;
    uint64_t offset = 0;
    for_each_kept_record(spool, visit_repoint, &offset);
    drop_finished_entries(spool);
    spool->file_bytes = writer.written;
    spool->live_bytes = writer.written;
    spool->stats.compactions++;
    spool->stats.last_compaction_us = monotonic_us() - start_us;
    if (spool->stats.last_compaction_us > spool->stats.max_compaction_us)
        spool->stats.max_compaction_us = spool->stats.last_compaction_us;
    status = BUTLER_OK;
out:
    if (map != MAP_FAILED)
        munmap(map, map_size);
    if (writer.buffer != MAP_FAILED)
        munmap(writer.buffer, COMPACT_BUFFER_BYTES);
    if (writer.fd >= 0) {
        close(writer.fd);
        unlink(spool->temporary_path);
    }
    return status;
}

/*
 * Compact once the file is more than twice what is live (and past a small
 * floor, so a nearly idle spool is not rewritten for every few records): the
 * file then stays within about twice the live records, whatever max_bytes is.
 */
static void maybe_compact(struct spool *spool)
{
    if (spool->file_bytes >= SPOOL_COMPACT_MIN_BYTES && spool->file_bytes > 2 * spool->live_bytes)
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
            if (body > BODY_FIXED_BYTES) /* an empty answer is nothing to remember */
                push_done(spool, id, wall_ms, ref);
        }
        offset += ref.length;
    }
    if (offset < size)
        spool->stats.skipped_bytes += size - offset;
}

static enum butler_status
report_recovered(struct spool *spool, const unsigned char *map,
                 void (*recovered)(void *, const struct spool_recovered *), void *context)
{
    enum butler_status status = BUTLER_OK;
    uint64_t now = clock_wall_ms();
    const unsigned char **notes = NULL;
    size_t *note_lengths = NULL;
    for (size_t i = 0; i < spool->done_count && recovered; i++) {
        const struct done_entry *done = done_at(spool, i);
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
    notes = malloc(SPOOL_NOTES_MAX * sizeof *notes);
    note_lengths = malloc(SPOOL_NOTES_MAX * sizeof *note_lengths);
    for (size_t i = spool->live_head; i < spool->live_count; i++) {
        const struct live_entry *live = &spool->live[i];
        if (live->finished)
            continue;
        if (notes == NULL || note_lengths == NULL) {
            status = BUTLER_ERR_NOMEM; /* start-up: Butler does not start */
            break;
        }
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
    free(notes);
    free(note_lengths);
    return status;
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
        scan_file(spool, map, map_size);
    }
    spool->file_bytes = map_size;
    status = report_recovered(spool, map, recovered, context);
    if (status != BUTLER_OK)
        goto out;
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
        spool->live_active >= SPOOL_LIVE_MAX) {
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
    if (entry->note_count >= SPOOL_NOTES_MAX)
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
    /* An empty answer is nothing to remember: the DONE only retires the ADD. */
    if (spool->options.done_retention_ms > 0 && length > 0)
        push_done(spool, id, wall_ms, ref);
    maybe_compact(spool);
out:
    pthread_mutex_unlock(&spool->mutex);
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
        spool_crc32(record + HEADER_BYTES, ref->length - HEADER_BYTES) != get32(record + 8))
        goto out;
    size_t length = ref->length - HEADER_BYTES - BODY_FIXED_BYTES;
    /* Move the data to the front of the buffer the caller gets. */
    memmove(record, record + HEADER_BYTES + BODY_FIXED_BYTES, length);
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
    struct live_entry *entry = find_live(spool, id);
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
    expire_done(spool, clock_wall_ms());
    /* Newest first: a repeated request usually follows its first soon. The
     * ring is in order of finishing, not of id, so this is a scan; it runs
     * only for repeated requests. */
    for (size_t i = spool->done_count; i > 0; i--) {
        const struct done_entry *done = done_at(spool, i - 1);
        if (done->id == id) {
            status = read_record_data(spool, &done->record, data_out, length_out);
            break;
        }
    }
    pthread_mutex_unlock(&spool->mutex);
    return status;
}

void spool_get_stats(struct spool *spool, struct spool_stats *stats)
{
    pthread_mutex_lock(&spool->mutex);
    *stats = spool->stats;
    stats->file_bytes = spool->file_bytes;
    stats->live_bytes = spool->live_bytes;
    stats->live_entries = spool->live_active;
    stats->done_entries = spool->done_count;
    pthread_mutex_unlock(&spool->mutex);
}

void spool_update_metrics(struct spool *spool)
{
    static struct metric *file_bytes, *live_bytes, *unfinished, *answers, *evicted, *compactions,
        *compaction_max_us;
    if (spool == NULL)
        return;
    if (file_bytes == NULL) {
        file_bytes = metrics_get("butler_spool_bytes", "part=\"file\"", METRIC_GAUGE,
                                 "Spool file size, and the part of it a compaction would keep");
        live_bytes = metrics_get("butler_spool_bytes", "part=\"live\"", METRIC_GAUGE,
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
