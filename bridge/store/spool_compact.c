/*
 * Recovery at open (reading the file back into the index) and compaction
 * (rewriting the file with only what is live). Callers hold spool->mutex.
 */
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
#include "bridge/store/spool_internal.h"

#define MODULE "spool"

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
        writer->status = spool_write_all(writer->fd, writer->buffer, writer->buffered);
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
            writer->status = spool_write_all(writer->fd, map + ref->offset, ref->length);
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
        visit(context, &spool_index_done_at(spool, i)->record);
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
enum butler_status spool_compact(struct spool *spool)
{
    enum butler_status status = BUTLER_ERR_IO;
    uint64_t start_us = monotonic_us();
    struct compact_writer writer = {.fd = -1, .buffer = MAP_FAILED, .status = BUTLER_OK};
    unsigned char *map = MAP_FAILED;
    size_t map_size = (size_t)spool->file_bytes;
    spool_index_expire_done(spool, clock_wall_ms());
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
void spool_maybe_compact(struct spool *spool)
{
    if (spool->file_bytes >= SPOOL_COMPACT_MIN_BYTES && spool->file_bytes > 2 * spool->live_bytes)
        if (spool_compact(spool) != BUTLER_OK)
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
        if (i + 4 <= size && store_get32(hit) == RECORD_MAGIC)
            return i;
    }
    return size;
}

/*
 * Walk the mapped file. Resynchronising is where a crafted payload could do
 * harm: a publisher can embed a complete, checksummed record in a message, so
 * a scan for the next magic number that starts inside a record's payload
 * would take that embedded record for a real one. So a record whose header
 * is intact (magic number, possible length) fixes its own extent, and the
 * scan never starts inside it:
 *   - it reaches past the end of the file: the torn tail of a crash (records
 *     are appended with one write, and a failed append is cut back), so
 *     nothing after its start is a record: the rest is skipped;
 *   - its checksum fails: its bytes are skipped, and the next record starts
 *     right after them.
 * Only when the header itself is not one (storage damage; never a crash of
 * ours) is the file scanned for the next magic number. Everything skipped is
 * counted.
 */
void spool_scan_file(struct spool *spool, const unsigned char *map, size_t size)
{
    size_t offset = 0;
    while (offset + HEADER_BYTES + BODY_FIXED_BYTES <= size) {
        const unsigned char *p = map + offset;
        uint32_t body = store_get32(p + 4);
        bool header_ok = store_get32(p) == RECORD_MAGIC && body >= BODY_FIXED_BYTES &&
                         body <= BODY_FIXED_BYTES + SPOOL_RECORD_DATA_MAX;
        if (!header_ok) {
            size_t next_offset = find_magic(map, size, offset + 1);
            spool->stats.skipped_bytes += next_offset - offset;
            offset = next_offset;
            continue;
        }
        if (offset + HEADER_BYTES + body > size) {
            spool->stats.skipped_bytes += size - offset; /* the torn tail */
            return;
        }
        if (spool_crc32(p + HEADER_BYTES, body) != store_get32(p + 8)) {
            spool->stats.skipped_bytes += HEADER_BYTES + body;
            offset += HEADER_BYTES + body;
            continue;
        }
        const unsigned char *b = p + HEADER_BYTES;
        enum spool_record_type type = b[0];
        uint64_t id = store_get64(b + 4);
        uint64_t wall_ms = store_get64(b + 12);
        struct record_ref ref = {offset, HEADER_BYTES + body};
        if (id >= spool->next_id)
            spool->next_id = id + 1;
        if (type == SPOOL_ADD) {
            if (spool_index_find_live(spool, id) == NULL &&
                (spool->live_count == 0 || spool->live[spool->live_count - 1].id < id))
                spool_index_push_live(spool, id, wall_ms, ref);
        } else if (type == SPOOL_PROGRESS) {
            struct live_entry *entry = spool_index_find_live(spool, id);
            if (entry)
                spool_index_push_note(spool, entry, ref);
        } else if (type == SPOOL_DONE) {
            struct live_entry *entry = spool_index_find_live(spool, id);
            if (entry)
                spool_index_finish_live(spool, entry);
            if (body > BODY_FIXED_BYTES) /* an empty answer is nothing to remember */
                spool_index_push_done(spool, id, wall_ms, ref);
        }
        offset += ref.length;
    }
    if (offset < size)
        spool->stats.skipped_bytes += size - offset;
}

enum butler_status spool_report_recovered(struct spool *spool, const unsigned char *map,
                                          void (*recovered)(void *, const struct spool_recovered *),
                                          void *context)
{
    enum butler_status status = BUTLER_OK;
    uint64_t now = clock_wall_ms();
    const unsigned char **notes = NULL;
    size_t *note_lengths = NULL;
    for (size_t i = 0; i < spool->done_count && recovered; i++) {
        const struct done_entry *done = spool_index_done_at(spool, i);
        if (done->wall_ms + spool->options.done_retention_ms <= now)
            continue;
        struct spool_done_parts parts = spool_record_parts(map + done->record.offset + HEADER_BYTES,
                                                           done->record.length - HEADER_BYTES);
        char kind[SPOOL_KIND_MAX + 1];
        memcpy(kind, parts.kind, parts.kind_length);
        kind[parts.kind_length] = '\0';
        struct spool_recovered entry = {
            .type = SPOOL_DONE,
            .id = done->id,
            .wall_ms = done->wall_ms,
            .data = parts.answer,
            .length = parts.answer_length,
            .kind = kind,
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
            .kind = "",
        };
        spool->stats.recovered_entries++;
        if (recovered)
            recovered(context, &entry);
    }
    free(notes);
    free(note_lengths);
    return status;
}
