/* Unit tests: the spool keeps every complete record through crashes and garbage. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bridge/store/spool.h"
#include "tests/unit/unit.h"

struct collected {
    int adds, dones;
    char add_data[64][64];
    uint64_t add_ids[64];
    int notes[64];
    char done_data[64][64];
};

static void collect(void *context, const struct spool_recovered *entry)
{
    struct collected *c = context;
    if (entry->type == SPOOL_ADD && c->adds < 64) {
        snprintf(c->add_data[c->adds], 64, "%.*s", (int)entry->length, entry->data);
        c->add_ids[c->adds] = entry->id;
        c->notes[c->adds] = (int)entry->note_count;
        c->adds++;
    } else if (entry->type == SPOOL_DONE && c->dones < 64) {
        snprintf(c->done_data[c->dones], 64, "%.*s", (int)entry->length, entry->data);
        c->dones++;
    }
}

static char directory[64];

static struct spool *open_spool(struct collected *c, uint64_t max_bytes)
{
    struct spool_options options = {
        .directory = directory,
        .fsync = false,
        .max_bytes = max_bytes,
        .done_retention_ms = 600000,
    };
    struct spool *spool = NULL;
    memset(c, 0, sizeof *c);
    UNIT_CHECK(spool_open(&options, collect, c, &spool) == BUTLER_OK);
    return spool;
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

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_replay_unfinished),
    UNIT_TEST(test_torn_write_and_garbage),
    UNIT_TEST(test_cap_and_compaction),
    {0},
};
