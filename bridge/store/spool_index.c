/*
 * The spool's in-memory index: offsets of unfinished work (with its notes) and
 * of retained answers, never their data. Callers hold spool->mutex.
 */
#include <stdlib.h>
#include <string.h>

#include "bridge/core/clock.h"
#include "bridge/store/spool_internal.h"

/* ---- index ---- */

struct live_entry *spool_index_find_live(struct spool *spool, uint64_t id)
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

enum butler_status spool_index_push_live(struct spool *spool, uint64_t id, uint64_t wall_ms,
                                         struct record_ref add)
{
    if (spool->live_active >= SPOOL_LIVE_MAX)
        return BUTLER_ERR_FULL;
    size_t window = spool->live_count - spool->live_head;
    if (spool->live_count == spool->live_capacity && spool->live_active * 2 <= window) {
        /* Half the window is finished work behind an older unfinished item
         * (an InfluxDB batch waiting while InfluxDB is away, say): squeeze
         * the tombstones out, in order, instead of growing. Without this the
         * index grows with every item done after the oldest unfinished one. */
        size_t kept = 0;
        for (size_t i = spool->live_head; i < spool->live_count; i++)
            if (!spool->live[i].finished)
                spool->live[kept++] = spool->live[i];
        spool->live_head = 0;
        spool->live_count = kept;
    }
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

enum butler_status spool_index_push_note(struct spool *spool, struct live_entry *entry,
                                         struct record_ref note)
{
    if (entry->note_count >= SPOOL_NOTES_MAX)
        return BUTLER_ERR_LIMIT;
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

void spool_index_finish_live(struct spool *spool, struct live_entry *entry)
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
    if (spool->live_head == spool->live_count) {
        spool->live_head = spool->live_count = 0;
        if (spool->live_capacity > SPOOL_INDEX_KEEP_ENTRIES) {
            /* A burst is over: give the large array back. */
            free(spool->live);
            spool->live = NULL;
            spool->live_capacity = 0;
        }
    }
}

struct done_entry *spool_index_done_at(struct spool *spool, size_t index)
{
    return &spool->done[(spool->done_head + index) % spool->done_capacity];
}

/* Forget retained answers older than done_retention_ms, oldest first. */
void spool_index_expire_done(struct spool *spool, uint64_t now_wall_ms)
{
    while (spool->done_count > 0) {
        struct done_entry *oldest = spool_index_done_at(spool, 0);
        if (oldest->wall_ms + spool->options.done_retention_ms > now_wall_ms)
            break;
        spool->live_bytes -= oldest->record.length;
        spool->done_head = (spool->done_head + 1) % spool->done_capacity;
        spool->done_count--;
    }
}

void spool_index_evict_oldest_done(struct spool *spool)
{
    if (spool->done_count == 0)
        return;
    spool->live_bytes -= spool_index_done_at(spool, 0)->record.length;
    spool->done_head = (spool->done_head + 1) % spool->done_capacity;
    spool->done_count--;
    spool->stats.done_evicted++;
}

/*
 * Retain an answer for done_retention_ms. At max_done_entries the oldest is
 * forgotten early (counted): that only shortens de-duplication for it.
 */
void spool_index_push_done(struct spool *spool, uint64_t id, uint64_t wall_ms,
                           struct record_ref record)
{
    spool_index_expire_done(spool, clock_wall_ms());
    if (spool->done_count > 0 && spool->done_count >= spool->options.max_done_entries)
        spool_index_evict_oldest_done(spool);
    if (spool->done_count == spool->done_capacity) {
        size_t grown = spool->done_capacity ? spool->done_capacity * 2 : 64;
        if (grown > spool->options.max_done_entries)
            grown = spool->options.max_done_entries;
        struct done_entry *bigger = malloc(grown * sizeof *bigger);
        if (bigger == NULL)
            return; /* forgetting an old answer only weakens de-duplication */
        for (size_t i = 0; i < spool->done_count; i++)
            bigger[i] = *spool_index_done_at(spool, i);
        free(spool->done);
        spool->done = bigger;
        spool->done_head = 0;
        spool->done_capacity = grown;
    }
    spool->done_count++;
    *spool_index_done_at(spool, spool->done_count - 1) = (struct done_entry){id, wall_ms, record};
    spool->live_bytes += record.length;
}
