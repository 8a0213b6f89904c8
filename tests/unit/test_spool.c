/* Unit tests: the spool keeps every complete record through crashes and garbage. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bridge/store/spool.h"
#include "tests/unit/unit.h"

struct collected {
    int adds, dones;
    char add_data[64][64];
    uint64_t add_ids[64];
    int notes[64];
    char done_data[64][64];
    char done_kind[64][16];
    size_t all_dones, most_notes;
};

static void collect(void *context, const struct spool_recovered *entry)
{
    struct collected *c = context;
    if (entry->type == SPOOL_DONE)
        c->all_dones++;
    if (entry->type == SPOOL_ADD && entry->note_count > c->most_notes)
        c->most_notes = entry->note_count;
    if (entry->type == SPOOL_ADD && c->adds < 64) {
        snprintf(c->add_data[c->adds], 64, "%.*s", (int)entry->length, entry->data);
        c->add_ids[c->adds] = entry->id;
        c->notes[c->adds] = (int)entry->note_count;
        c->adds++;
    } else if (entry->type == SPOOL_DONE && c->dones < 64) {
        snprintf(c->done_data[c->dones], 64, "%.*s", (int)entry->length, entry->data);
        snprintf(c->done_kind[c->dones], 16, "%s", entry->kind);
        c->dones++;
    }
}

static char directory[64];

static struct spool *open_spool_with(struct collected *c, uint64_t max_bytes, uint64_t retention_ms,
                                     uint64_t max_done_entries)
{
    struct spool_options options = {
        .directory = directory,
        .fsync = false,
        .max_bytes = max_bytes,
        .done_retention_ms = retention_ms,
        .max_done_entries = max_done_entries,
    };
    struct spool *spool = NULL;
    memset(c, 0, sizeof *c);
    UNIT_CHECK(spool_open(&options, collect, c, &spool) == BUTLER_OK);
    return spool;
}

static struct spool *open_spool(struct collected *c, uint64_t max_bytes)
{
    return open_spool_with(c, max_bytes, 600000, 0);
}

static void fresh_directory(void)
{
    snprintf(directory, sizeof directory, "/tmp/butler-spool-XXXXXX");
    UNIT_CHECK(mkdtemp(directory) != NULL);
}

static void remove_directory(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/spool.log", directory);
    unlink(path);
    snprintf(path, sizeof path, "%s/spool.log.tmp", directory);
    unlink(path);
    rmdir(directory);
}

static void test_replay_unfinished(void)
{
    fresh_directory();
    struct collected c;
    struct spool *spool = open_spool(&c, 1 << 20);
    uint64_t a, b, d;
    UNIT_CHECK(spool_add(spool, "alpha", 5, &a) == BUTLER_OK);
    UNIT_CHECK(spool_add(spool, "bravo", 5, &b) == BUTLER_OK);
    UNIT_CHECK(spool_add(spool, "delta", 5, &d) == BUTLER_OK);
    UNIT_CHECK(spool_progress(spool, b, "step1", 5) == BUTLER_OK);
    UNIT_CHECK(spool_done(spool, a, "answer-a", 8) == BUTLER_OK);
    UNIT_CHECK(spool_done(spool, a, "again", 5) == BUTLER_ERR_NOT_FOUND);
    spool_close(spool); /* like a crash: nothing else is written */

    spool = open_spool(&c, 1 << 20);
    UNIT_CHECK(c.adds == 2);
    UNIT_CHECK_STR(c.add_data[0], "bravo");
    UNIT_CHECK(c.notes[0] == 1);
    UNIT_CHECK_STR(c.add_data[1], "delta");
    UNIT_CHECK(c.dones == 1);
    UNIT_CHECK_STR(c.done_data[0], "answer-a");
    /* Ids keep growing across restarts. */
    uint64_t e;
    UNIT_CHECK(spool_add(spool, "echo", 4, &e) == BUTLER_OK);
    UNIT_CHECK(e > d);
    spool_close(spool);
    remove_directory();
}

static void append_bytes(const char *bytes, size_t length, bool truncate_last)
{
    char path[128];
    snprintf(path, sizeof path, "%s/spool.log", directory);
    if (truncate_last) {
        struct stat info;
        UNIT_CHECK(stat(path, &info) == 0);
        UNIT_CHECK(truncate(path, info.st_size - (off_t)length) == 0);
        return;
    }
    int fd = open(path, O_WRONLY | O_APPEND);
    UNIT_CHECK(fd >= 0);
    UNIT_CHECK(write(fd, bytes, length) == (ssize_t)length);
    close(fd);
}

static void test_torn_write_and_garbage(void)
{
    fresh_directory();
    struct collected c;
    struct spool *spool = open_spool(&c, 1 << 20);
    uint64_t id;
    UNIT_CHECK(spool_add(spool, "first", 5, &id) == BUTLER_OK);
    spool_close(spool);
    /* Garbage between records, then a complete record, then a torn one. */
    append_bytes("\x42TLR garbage garbage \x00\x01\x02", 24, false);
    spool = open_spool(&c, 1 << 20);
    UNIT_CHECK(c.adds == 1);
    UNIT_CHECK(spool_add(spool, "second", 6, &id) == BUTLER_OK);
    UNIT_CHECK(spool_add(spool, "third!", 6, &id) == BUTLER_OK);
    spool_close(spool);
    append_bytes(NULL, 3, true); /* crash in the middle of "third!" */
    append_bytes("\xff\xfe\xfd garbage at the end", 22, false);
    spool = open_spool(&c, 1 << 20);
    UNIT_CHECK(c.adds == 2);
    UNIT_CHECK_STR(c.add_data[0], "first");
    UNIT_CHECK_STR(c.add_data[1], "second");
    struct spool_stats stats;
    spool_get_stats(spool, &stats);
    UNIT_CHECK(stats.skipped_bytes > 0);
    spool_close(spool);
    /* After the clean rewrite nothing is skipped any more. */
    spool = open_spool(&c, 1 << 20);
    spool_get_stats(spool, &stats);
    UNIT_CHECK(stats.skipped_bytes == 0);
    UNIT_CHECK(c.adds == 2);
    spool_close(spool);
    remove_directory();
}

static void test_cap_and_compaction(void)
{
    fresh_directory();
    struct collected c;
    struct spool *spool = open_spool(&c, 64 * 1024);
    char data[1000];
    memset(data, 'x', sizeof data);
    uint64_t id = 0;
    int added = 0;
    while (spool_add(spool, data, sizeof data, &id) == BUTLER_OK)
        added++;
    UNIT_CHECK(added > 50 && added < 70);
    UNIT_CHECK(spool_add(spool, data, sizeof data, &id) == BUTLER_ERR_FULL);
    /* Finishing work frees room once compaction runs (on demand when full). */
    for (uint64_t i = id - (uint64_t)added + 1; i <= id; i++)
        spool_done(spool, i, NULL, 0);
    UNIT_CHECK(spool_add(spool, data, sizeof data, &id) == BUTLER_OK);
    struct spool_stats stats;
    spool_get_stats(spool, &stats);
    UNIT_CHECK(stats.compactions >= 2);
    UNIT_CHECK(stats.live_entries == 1);
    UNIT_CHECK(stats.file_bytes < 64 * 1024);
    spool_close(spool);
    UNIT_CHECK(spool_crc32("123456789", 9) == 0xCBF43926u);
    remove_directory();
}

/* With compact_in_housekeeping, spool_add and spool_done never compact (the
 * MQTT network thread calls them); spool_housekeeping does, on demand once an
 * add was refused for room. */
static void test_compaction_only_in_housekeeping(void)
{
    fresh_directory();
    struct spool_options options = {
        .directory = directory,
        .max_bytes = 64 * 1024,
        .done_retention_ms = 600000,
        .compact_in_housekeeping = true,
    };
    struct spool *spool = NULL;
    struct collected c = {0};
    UNIT_CHECK(spool_open(&options, collect, &c, &spool) == BUTLER_OK);
    struct spool_stats stats;
    spool_get_stats(spool, &stats);
    uint64_t at_open = stats.compactions;
    char data[1000];
    memset(data, 'x', sizeof data);
    uint64_t id = 0;
    int added = 0;
    while (spool_add(spool, data, sizeof data, &id) == BUTLER_OK)
        added++;
    UNIT_CHECK(added > 50 && added < 70);
    for (uint64_t i = id - (uint64_t)added + 1; i <= id; i++)
        UNIT_CHECK(spool_done(spool, i, NULL, 0) == BUTLER_OK);
    /* Still full: neither the refused add nor the DONEs compacted. */
    UNIT_CHECK(spool_add(spool, data, sizeof data, &id) == BUTLER_ERR_FULL);
    spool_get_stats(spool, &stats);
    UNIT_CHECK(stats.compactions == at_open);
    UNIT_CHECK(spool_housekeeping(spool));
    UNIT_CHECK(spool_add(spool, data, sizeof data, &id) == BUTLER_OK);
    spool_get_stats(spool, &stats);
    UNIT_CHECK(stats.compactions == at_open + 1);
    UNIT_CHECK(stats.live_entries == 1);
    /* Nothing wanted and nothing due: no compaction. */
    UNIT_CHECK(!spool_housekeeping(spool));
    spool_close(spool);
    remove_directory();
}

/*
 * A steady stream of work, each item with two notes and an answer: the index
 * and the file follow what is live (unfinished work and answers within
 * retention, capped), not how much work went through.
 */
static void test_steady_state_follows_live(void)
{
    fresh_directory();
    struct collected c;
    struct spool *spool = open_spool_with(&c, 256u * 1024 * 1024, 600000, 1000);
    char request[300], answer[300];
    memset(request, 'r', sizeof request);
    memset(answer, 'a', sizeof answer);
    uint64_t largest_file = 0;
    for (int i = 0; i < 20000; i++) {
        uint64_t id = 0;
        UNIT_CHECK(spool_add(spool, request, sizeof request, &id) == BUTLER_OK);
        UNIT_CHECK(spool_progress(spool, id, "attempt x", 9) == BUTLER_OK);
        UNIT_CHECK(spool_progress(spool, id, "started x", 9) == BUTLER_OK);
        UNIT_CHECK(spool_done(spool, id, answer, sizeof answer) == BUTLER_OK);
        struct spool_stats stats;
        spool_get_stats(spool, &stats);
        if (stats.file_bytes > largest_file)
            largest_file = stats.file_bytes;
        UNIT_CHECK(stats.done_entries <= 1000);
        UNIT_CHECK(stats.live_entries == 0);
    }
    struct spool_stats stats;
    spool_get_stats(spool, &stats);
    UNIT_CHECK(stats.done_entries == 1000);
    UNIT_CHECK(stats.done_evicted == 19000);
    UNIT_CHECK(stats.compactions > 10);
    /* 1000 answers of ~330 bytes are live: the file never held much more than
     * the compaction floor or twice that, however many items went through. */
    uint64_t bound = SPOOL_COMPACT_MIN_BYTES > 2 * stats.live_bytes ? SPOOL_COMPACT_MIN_BYTES
                                                                    : 2 * stats.live_bytes;
    UNIT_CHECK(largest_file <= bound + 1024);
    spool_close(spool);
    /* The retained answers come back after a restart, and only those. */
    spool = open_spool_with(&c, 256u * 1024 * 1024, 600000, 1000);
    UNIT_CHECK(c.all_dones == 1000);
    UNIT_CHECK(c.adds == 0);
    spool_close(spool);
    remove_directory();
}

/* One old item stays unfinished (an InfluxDB batch while InfluxDB is away)
 * while 100,000 newer ones come and go: the index holds what is unfinished,
 * not every item finished since the oldest one (64 bytes each: 6.4 MB). */
static void test_index_follows_unfinished_behind_an_old_item(void)
{
    fresh_directory();
    struct collected c;
    struct spool *spool = open_spool(&c, 256u * 1024 * 1024);
    uint64_t old_id = 0, kept_id = 0;
    UNIT_CHECK(spool_add(spool, "old", 3, &old_id) == BUTLER_OK);
    uint64_t largest_index = 0;
    for (int i = 0; i < 100000; i++) {
        uint64_t id = 0;
        UNIT_CHECK(spool_add(spool, "item", 4, &id) == BUTLER_OK);
        if (i % 5000 == 4999)
            kept_id = id; /* every 5000th stays unfinished, like a batch */
        else
            UNIT_CHECK(spool_done(spool, id, NULL, 0) == BUTLER_OK);
        struct spool_stats stats;
        spool_get_stats(spool, &stats);
        if (stats.index_bytes > largest_index)
            largest_index = stats.index_bytes;
    }
    struct spool_stats stats;
    spool_get_stats(spool, &stats);
    UNIT_CHECK(stats.live_entries == 21);
    UNIT_CHECK(largest_index <= 64 * 1024);
    /* Ids are still found after the squeezes. */
    unsigned char *data = NULL;
    size_t length = 0;
    UNIT_CHECK(spool_read(spool, old_id, &data, &length) == BUTLER_OK && length == 3);
    free(data);
    UNIT_CHECK(spool_read(spool, kept_id, &data, &length) == BUTLER_OK && length == 4);
    free(data);
    UNIT_CHECK(spool_done(spool, old_id, NULL, 0) == BUTLER_OK);
    spool_close(spool);
    remove_directory();
}

/* Answers leave when their retention ends, and empty answers are not kept at all. */
static void test_done_retention(void)
{
    fresh_directory();
    struct collected c;
    struct spool *spool = open_spool_with(&c, 1024 * 1024, 50, 0);
    uint64_t id = 0;
    for (int i = 0; i < 10; i++) {
        UNIT_CHECK(spool_add(spool, "work", 4, &id) == BUTLER_OK);
        UNIT_CHECK(spool_done(spool, id, "answer", 6) == BUTLER_OK);
    }
    UNIT_CHECK(spool_add(spool, "work", 4, &id) == BUTLER_OK);
    UNIT_CHECK(spool_done(spool, id, NULL, 0) == BUTLER_OK);
    struct spool_stats stats;
    spool_get_stats(spool, &stats);
    UNIT_CHECK(stats.done_entries == 10);
    struct timespec pause = {0, 120 * 1000000L};
    nanosleep(&pause, NULL);
    UNIT_CHECK(spool_add(spool, "work", 4, &id) == BUTLER_OK);
    UNIT_CHECK(spool_done(spool, id, "answer", 6) == BUTLER_OK);
    spool_get_stats(spool, &stats);
    UNIT_CHECK(stats.done_entries == 1);
    UNIT_CHECK(stats.done_evicted == 0);
    spool_close(spool);
    remove_directory();
}

/* A request that starts many tasks notes two lines per task; all come back. */
static void test_many_notes(void)
{
    fresh_directory();
    struct collected c;
    struct spool *spool = open_spool(&c, 16 * 1024 * 1024);
    uint64_t id = 0;
    UNIT_CHECK(spool_add(spool, "request", 7, &id) == BUTLER_OK);
    for (int i = 0; i < 2048; i++)
        UNIT_CHECK(spool_progress(spool, id, "attempt 5e2f4c1a", 16) == BUTLER_OK);
    spool_close(spool);
    spool = open_spool(&c, 16 * 1024 * 1024);
    UNIT_CHECK(c.adds == 1);
    UNIT_CHECK(c.most_notes == 2048);
    for (int i = 2048; i < SPOOL_NOTES_MAX; i++)
        UNIT_CHECK(spool_progress(spool, c.add_ids[0], "n", 1) == BUTLER_OK);
    UNIT_CHECK(spool_progress(spool, c.add_ids[0], "n", 1) ==
               BUTLER_ERR_LIMIT); /* final for the item, not a full spool */
    spool_close(spool);
    remove_directory();
}

/* A complete record as the spool writes it (header and body), for crafted payloads. */
static size_t craft_record(unsigned char *out, uint8_t type, uint64_t id, const char *data)
{
    size_t length = strlen(data), body = 20 + length;
    memset(out, 0, 32);
    out[12] = type;
    for (int i = 0; i < 8; i++)
        out[16 + i] = (unsigned char)(id >> (8 * i));
    memcpy(out + 32, data, length);
    uint32_t words[3] = {0x524c5442u, (uint32_t)body, spool_crc32(out + 12, body)};
    for (int w = 0; w < 3; w++)
        for (int i = 0; i < 4; i++)
            out[4 * w + i] = (unsigned char)(words[w] >> (8 * i));
    return 12 + body;
}

/*
 * A publisher embeds a valid record in a message. When that message's record
 * is torn by a crash, or its checksum fails, recovery must not resynchronise
 * inside it and take the embedded record for a real one.
 */
static void test_resync_ignores_records_inside_a_payload(void)
{
    for (int damage = 0; damage < 2; damage++) {
        fresh_directory();
        struct collected c;
        struct spool *spool = open_spool(&c, 1 << 20);
        uint64_t first = 0, crafted = 0;
        UNIT_CHECK(spool_add(spool, "first", 5, &first) == BUTLER_OK);
        unsigned char payload[256];
        memcpy(payload, "prefix:", 7);
        size_t length = 7 + craft_record(payload + 7, SPOOL_ADD, 999, "embedded");
        length += craft_record(payload + length, SPOOL_DONE, first, "forged");
        memcpy(payload + length, ":suffix", 7);
        length += 7;
        UNIT_CHECK(spool_add(spool, payload, length, &crafted) == BUTLER_OK);
        spool_close(spool);
        if (damage == 0) {
            append_bytes(NULL, 3, true); /* torn: crash in the middle of the write */
        } else {
            /* Same length, one byte of the suffix changed: checksum fails. */
            append_bytes(NULL, 1, true);
            append_bytes("X", 1, false);
        }
        spool = open_spool(&c, 1 << 20);
        UNIT_CHECK(c.adds == 1);
        UNIT_CHECK_STR(c.add_data[0], "first"); /* not finished by the forged DONE */
        UNIT_CHECK(c.dones == 0);
        struct spool_stats stats;
        spool_get_stats(spool, &stats);
        UNIT_CHECK(stats.skipped_bytes > 0);
        spool_close(spool);
        remove_directory();
    }
}

/*
 * spool.max_bytes is a hard cap: notes and answers count too (they used to be
 * appended unchecked: 30 times the cap in a harness), and the work already
 * taken can still finish when the file is full (every item keeps room for
 * its DONE), with or without inline compaction.
 */
static void test_max_bytes_is_a_hard_cap(void)
{
    for (int housekeeping = 0; housekeeping < 2; housekeeping++) {
        fresh_directory();
        const uint64_t cap = 64 * 1024;
        struct spool_options options = {
            .directory = directory,
            .max_bytes = cap,
            .done_retention_ms = 600000,
            .compact_in_housekeeping = housekeeping,
        };
        struct spool *spool = NULL;
        UNIT_CHECK(spool_open(&options, NULL, NULL, &spool) == BUTLER_OK);
        struct spool_stats stats;
        char data[1000], note[200], answer[2000];
        memset(data, 'd', sizeof data);
        memset(note, 'n', sizeof note);
        memset(answer, 'a', sizeof answer);
        uint64_t ids[128];
        int added = 0;
        while (added < 128 && spool_add(spool, data, sizeof data, &ids[added]) == BUTLER_OK)
            added++;
        UNIT_CHECK(added > 20 && added < 128);
        spool_get_stats(spool, &stats);
        UNIT_CHECK(stats.file_bytes <= cap - cap / 8); /* ADDs leave the last eighth */
        int notes = 0, refused = 0;
        for (int round = 0; round < 20; round++)
            for (int i = 0; i < added; i++) {
                enum butler_status status = spool_progress(spool, ids[i], note, sizeof note);
                UNIT_CHECK(status == BUTLER_OK || status == BUTLER_ERR_FULL);
                status == BUTLER_OK ? notes++ : refused++;
                spool_get_stats(spool, &stats);
                UNIT_CHECK(stats.file_bytes <= cap);
            }
        UNIT_CHECK(notes > 0 && refused > 0);
        /* Full: every item still finishes, answer or not. */
        for (int i = 0; i < added; i++) {
            UNIT_CHECK(spool_done(spool, ids[i], answer, sizeof answer) == BUTLER_OK);
            spool_get_stats(spool, &stats);
            UNIT_CHECK(stats.file_bytes <= cap);
        }
        spool_get_stats(spool, &stats);
        UNIT_CHECK(stats.live_entries == 0);
        UNIT_CHECK(stats.notes_refused == (uint64_t)refused);
        UNIT_CHECK(stats.answers_dropped > 0);
        if (housekeeping)
            spool_housekeeping(spool);
        uint64_t id = 0;
        UNIT_CHECK(spool_add(spool, data, sizeof data, &id) == BUTLER_OK);
        spool_close(spool);
        remove_directory();
    }
}

static void check_answer(struct spool *spool, uint64_t id, const char *expected)
{
    unsigned char *data = NULL;
    size_t length = 0;
    UNIT_CHECK(spool_read_answer(spool, id, &data, &length) == BUTLER_OK);
    char text[64];
    snprintf(text, sizeof text, "%.*s", (int)length, data ? (const char *)data : "");
    UNIT_CHECK_STR(text, expected);
    free(data);
}

/*
 * DONE records carry the kind (the family) of their answer, so recovery can
 * hand each answer to its own family, not all to task starts. A DONE without
 * one (and every DONE of a spool written before kinds) reads as kind "".
 */
static void test_answers_keep_their_kind(void)
{
    fresh_directory();
    struct collected c;
    struct spool *spool = open_spool(&c, 1 << 20);
    uint64_t a = 0, b = 0, d = 0, e = 0;
    UNIT_CHECK(spool_add(spool, "a", 1, &a) == BUTLER_OK);
    UNIT_CHECK(spool_add(spool, "b", 1, &b) == BUTLER_OK);
    UNIT_CHECK(spool_add(spool, "d", 1, &d) == BUTLER_OK);
    UNIT_CHECK(spool_add(spool, "e", 1, &e) == BUTLER_OK);
    UNIT_CHECK(spool_done_kind(spool, a, "task_start", "{\"requestId\":\"r1\"}", 18) == BUTLER_OK);
    UNIT_CHECK(spool_done_kind(spool, b, "file", "\x04file-answer", 12) == BUTLER_OK);
    UNIT_CHECK(spool_done(spool, d, "\x03old", 4) == BUTLER_OK);         /* no kind: as before */
    UNIT_CHECK(spool_done_kind(spool, e, "file", NULL, 0) == BUTLER_OK); /* nothing to keep */
    check_answer(spool, a, "{\"requestId\":\"r1\"}");
    check_answer(spool, b, "\x04file-answer");
    check_answer(spool, d, "\x03old");
    spool_close(spool);
    spool = open_spool(&c, 1 << 20);
    UNIT_CHECK(c.dones == 3);
    UNIT_CHECK_STR(c.done_kind[0], "task_start");
    UNIT_CHECK_STR(c.done_data[0], "{\"requestId\":\"r1\"}");
    UNIT_CHECK_STR(c.done_kind[1], "file");
    UNIT_CHECK_STR(c.done_data[1], "\x04file-answer");
    UNIT_CHECK_STR(c.done_kind[2], "");
    UNIT_CHECK_STR(c.done_data[2], "\x03old");
    check_answer(spool, b, "\x04file-answer"); /* after the compaction at open too */
    spool_close(spool);
    remove_directory();
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_answers_keep_their_kind),
    UNIT_TEST(test_max_bytes_is_a_hard_cap),
    UNIT_TEST(test_resync_ignores_records_inside_a_payload),
    UNIT_TEST(test_steady_state_follows_live),
    UNIT_TEST(test_index_follows_unfinished_behind_an_old_item),
    UNIT_TEST(test_done_retention),
    UNIT_TEST(test_many_notes),
    UNIT_TEST(test_replay_unfinished),
    UNIT_TEST(test_torn_write_and_garbage),
    UNIT_TEST(test_cap_and_compaction),
    UNIT_TEST(test_compaction_only_in_housekeeping),
    {0},
};
