/*
 * Unit tests: the spool under failing system calls. This executable defines
 * fdatasync() and ftruncate() itself; being in the executable, they take the
 * place of the C library's for the statically linked spool, so a test can make
 * the next call fail once.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bridge/store/spool.h"
#include "tests/unit/unit.h"

static int fdatasync_failures; /* calls still to fail */
static int ftruncate_failures;
static int fdatasync_calls;

int fdatasync(int fd)
{
    fdatasync_calls++;
    if (fdatasync_failures > 0) {
        fdatasync_failures--;
        errno = EIO;
        return -1;
    }
    return (int)syscall(SYS_fdatasync, fd);
}

int ftruncate(int fd, off_t length)
{
    if (ftruncate_failures > 0) {
        ftruncate_failures--;
        errno = EIO;
        return -1;
    }
    return (int)syscall(SYS_ftruncate, fd, length);
}

struct collected {
    int adds;
    char add_data[16][32];
};

static void collect(void *context, const struct spool_recovered *entry)
{
    struct collected *c = context;
    if (entry->type == SPOOL_ADD && c->adds < 16) {
        snprintf(c->add_data[c->adds], sizeof c->add_data[0], "%.*s", (int)entry->length,
                 entry->data);
        c->adds++;
    }
}

static char directory[64];

static struct spool *open_synced(struct collected *c)
{
    struct spool_options options = {
        .directory = directory,
        .fsync = true,
        .max_bytes = 1 << 20,
        .done_retention_ms = 600000,
    };
    struct spool *spool = NULL;
    memset(c, 0, sizeof *c);
    UNIT_CHECK(spool_open(&options, collect, c, &spool) == BUTLER_OK);
    return spool;
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

static void check_read(struct spool *spool, uint64_t id, const char *expected)
{
    unsigned char *data = NULL;
    size_t length = 0;
    UNIT_CHECK(spool_read(spool, id, &data, &length) == BUTLER_OK);
    char text[64];
    snprintf(text, sizeof text, "%.*s", (int)length, data ? (const char *)data : "");
    UNIT_CHECK_STR(text, expected);
    free(data);
}

static uint64_t file_size(void)
{
    char path[128];
    struct stat info;
    snprintf(path, sizeof path, "%s/spool.log", directory);
    UNIT_CHECK(stat(path, &info) == 0);
    return (uint64_t)info.st_size;
}

/*
 * One failed flush: the refused record must not stay in the file, or every
 * later offset in the index points one record early (a read returns another
 * message's bytes; a compaction keeps the wrong records).
 */
static void run_failed_flush(int truncate_failures)
{
    snprintf(directory, sizeof directory, "/tmp/butler-spoolf-XXXXXX");
    UNIT_CHECK(mkdtemp(directory) != NULL);
    struct collected c;
    struct spool *spool = open_synced(&c);
    uint64_t a = 0, b = 0, d = 0, e = 0;
    UNIT_CHECK(spool_add(spool, "alpha", 5, &a) == BUTLER_OK);
    fdatasync_failures = 1;
    ftruncate_failures = truncate_failures;
    int calls_before = fdatasync_calls;
    UNIT_CHECK(spool_add(spool, "bravo-refused", 13, &b) == BUTLER_ERR_IO);
    UNIT_CHECK(fdatasync_calls == calls_before + 1); /* the shim was really called */
    UNIT_CHECK(spool_add(spool, "delta", 5, &d) == BUTLER_OK);
    UNIT_CHECK(ftruncate_failures == 0);
    UNIT_CHECK(spool_add(spool, "echo", 4, &e) == BUTLER_OK);
    check_read(spool, a, "alpha");
    check_read(spool, d, "delta");
    check_read(spool, e, "echo");
    struct spool_stats stats;
    spool_get_stats(spool, &stats);
    UNIT_CHECK(stats.append_failures == 1);
    UNIT_CHECK(stats.file_bytes == file_size());
    /* Finish alpha and compact (through a reopen): delta and echo, the
     * unfinished ones, come back, and nothing of the refused record. */
    UNIT_CHECK(spool_done(spool, a, "answer", 6) == BUTLER_OK);
    spool_close(spool);
    spool = open_synced(&c);
    UNIT_CHECK(c.adds == 2);
    UNIT_CHECK_STR(c.add_data[0], "delta");
    UNIT_CHECK_STR(c.add_data[1], "echo");
    spool_get_stats(spool, &stats);
    UNIT_CHECK(stats.skipped_bytes == 0);
    spool_close(spool);
    remove_directory();
}

static void test_failed_flush_is_cut_back(void)
{
    run_failed_flush(0);
}

/* The cut itself fails: the next append finds the extra bytes at the end of
 * the file and removes them before writing. */
static void test_failed_cut_is_repaired_before_the_next_append(void)
{
    run_failed_flush(1);
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_failed_flush_is_cut_back),
    UNIT_TEST(test_failed_cut_is_repaired_before_the_next_append),
    {0},
};
