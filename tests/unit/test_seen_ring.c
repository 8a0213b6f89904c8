/* Unit tests: the on-disk ring of seen keys (Qlik Cloud de-duplication across
 * a restart): keys come back oldest first within their ttl, at most
 * `capacity` of them (the newest), a torn slot costs only its own key, a
 * failed write is reported and costs only its own key, and a file of another
 * layout is started afresh. */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bridge/core/clock.h"
#include "bridge/store/seen_ring.h"
#include "tests/unit/unit.h"

#define TTL_MS (24ULL * 3600 * 1000)

static char directory[64];
static char path[128];

enum { SEEN_MAX = 64 };

/* What the recovery callback handed back, in order. */
struct seen {
    size_t count;
    char keys[SEEN_MAX][64];
    uint64_t walls[SEEN_MAX];
};

static void collect(void *context, const char *key, uint64_t wall_ms)
{
    struct seen *seen = context;
    if (seen->count < SEEN_MAX) {
        snprintf(seen->keys[seen->count], sizeof seen->keys[0], "%s", key);
        seen->walls[seen->count] = wall_ms;
    }
    seen->count++;
}

static void make_directory(void)
{
    snprintf(directory, sizeof directory, "/tmp/butler-seen-XXXXXX");
    UNIT_CHECK(mkdtemp(directory) != NULL);
    snprintf(path, sizeof path, "%s/seen.ring", directory);
}

static void remove_directory(void)
{
    unlink(path);
    rmdir(directory);
}

static struct seen_ring *open_ring(size_t capacity, struct seen *seen)
{
    struct seen_ring_options options = {
        .path = path, .capacity = capacity, .key_max = 40, .ttl_ms = TTL_MS};
    struct seen_ring *ring = NULL;
    *seen = (struct seen){0};
    UNIT_CHECK(seen_ring_open(&options, collect, seen, &ring) == BUTLER_OK);
    return ring;
}

static void add_numbered(struct seen_ring *ring, int first, int last, uint64_t wall_ms)
{
    char key[32];
    for (int i = first; i <= last; i++) {
        snprintf(key, sizeof key, "t:reload-%d", i);
        UNIT_CHECK(seen_ring_add(ring, key, wall_ms) == BUTLER_OK);
    }
}

static void test_keys_come_back_after_a_reopen_oldest_first(void)
{
    make_directory();
    struct seen seen;
    struct seen_ring *ring = open_ring(8, &seen);
    UNIT_CHECK(seen.count == 0);
    uint64_t now = clock_wall_ms();
    add_numbered(ring, 1, 3, now);
    seen_ring_close(ring); /* no flush asked: the page cache has it, as after a SIGKILL */
    ring = open_ring(8, &seen);
    UNIT_CHECK(seen.count == 3);
    UNIT_CHECK_STR(seen.keys[0], "t:reload-1");
    UNIT_CHECK_STR(seen.keys[2], "t:reload-3");
    UNIT_CHECK(seen.walls[0] == now);
    /* Numbering goes on after the reopen: a fourth key comes back last. */
    add_numbered(ring, 4, 4, now);
    seen_ring_close(ring);
    ring = open_ring(8, &seen);
    UNIT_CHECK(seen.count == 4);
    UNIT_CHECK_STR(seen.keys[3], "t:reload-4");
    seen_ring_close(ring);
    remove_directory();
}

static void test_keys_past_their_ttl_are_not_handed_back(void)
{
    make_directory();
    struct seen seen;
    struct seen_ring *ring = open_ring(8, &seen);
    uint64_t now = clock_wall_ms();
    add_numbered(ring, 1, 1, now - TTL_MS - 1000);  /* a day and a second ago */
    add_numbered(ring, 2, 2, now - TTL_MS + 60000); /* a minute left */
    add_numbered(ring, 3, 3, now + 3600000);        /* clock set back since: still young */
    seen_ring_close(ring);
    ring = open_ring(8, &seen);
    UNIT_CHECK(seen.count == 2);
    UNIT_CHECK_STR(seen.keys[0], "t:reload-2");
    UNIT_CHECK_STR(seen.keys[1], "t:reload-3");
    seen_ring_close(ring);
    remove_directory();
}

/* Past capacity the oldest are overwritten: the newest `capacity` come back,
 * in order, across several laps, and the file stays at its bound. */
static void test_the_newest_capacity_keys_are_kept_and_the_file_is_bounded(void)
{
    make_directory();
    struct seen seen;
    struct seen_ring *ring = open_ring(5, &seen);
    uint64_t now = clock_wall_ms();
    add_numbered(ring, 1, 7, now);
    seen_ring_close(ring);
    ring = open_ring(5, &seen);
    UNIT_CHECK(seen.count == 5);
    UNIT_CHECK_STR(seen.keys[0], "t:reload-3");
    UNIT_CHECK_STR(seen.keys[4], "t:reload-7");
    add_numbered(ring, 8, 23, now);
    seen_ring_close(ring);
    ring = open_ring(5, &seen);
    UNIT_CHECK(seen.count == 5);
    UNIT_CHECK_STR(seen.keys[0], "t:reload-19");
    UNIT_CHECK_STR(seen.keys[4], "t:reload-23");
    struct stat info;
    UNIT_CHECK(stat(path, &info) == 0);
    UNIT_CHECK(info.st_size <= 32 + 5 * 64); /* header + 5 slots of 22 + 40 rounded to 64 */
    seen_ring_close(ring);
    remove_directory();
}

/* A damaged slot (a torn write, a power cut) loses that key only; the rest
 * come back in order. */
static void test_a_damaged_slot_costs_only_its_own_key(void)
{
    make_directory();
    struct seen seen;
    struct seen_ring *ring = open_ring(8, &seen);
    add_numbered(ring, 1, 4, clock_wall_ms());
    seen_ring_close(ring);
    int fd = open(path, O_RDWR);
    UNIT_CHECK(fd >= 0);
    unsigned char byte = 'X';
    /* Key 2 is in slot 2: header 32, slots of 64, its key from byte 18. */
    UNIT_CHECK(pwrite(fd, &byte, 1, 32 + 2 * 64 + 20) == 1);
    /* And a tail of garbage after the last slot: a whole slot and a torn half. */
    unsigned char tail[94];
    memset(tail, 0xAB, sizeof tail);
    UNIT_CHECK(pwrite(fd, tail, sizeof tail, 32 + 5 * 64) == (ssize_t)sizeof tail);
    close(fd);
    ring = open_ring(8, &seen);
    UNIT_CHECK(seen.count == 3);
    UNIT_CHECK_STR(seen.keys[0], "t:reload-1");
    UNIT_CHECK_STR(seen.keys[1], "t:reload-3");
    UNIT_CHECK_STR(seen.keys[2], "t:reload-4");
    seen_ring_close(ring);
    remove_directory();
}

static void test_another_layout_or_garbage_starts_afresh(void)
{
    make_directory();
    struct seen seen;
    struct seen_ring *ring = open_ring(8, &seen);
    add_numbered(ring, 1, 2, clock_wall_ms());
    seen_ring_close(ring);
    ring = open_ring(9, &seen); /* another capacity: slots would not line up */
    UNIT_CHECK(seen.count == 0);
    add_numbered(ring, 3, 3, clock_wall_ms());
    seen_ring_close(ring);
    ring = open_ring(9, &seen);
    UNIT_CHECK(seen.count == 1);
    UNIT_CHECK_STR(seen.keys[0], "t:reload-3");
    seen_ring_close(ring);
    FILE *file = fopen(path, "w");
    UNIT_CHECK(file != NULL);
    fputs("not a ring at all\n", file);
    fclose(file);
    ring = open_ring(9, &seen);
    UNIT_CHECK(seen.count == 0);
    seen_ring_close(ring);
    remove_directory();
}

/* The descriptor this process holds on `path` (the ring's own, private to
 * seen_ring.c), found through /proc/self/fd; -1 when none or several. */
static int descriptor_of_path(void)
{
    DIR *fds = opendir("/proc/self/fd");
    UNIT_CHECK(fds != NULL);
    int found = -1, matches = 0;
    struct dirent *entry;
    while ((entry = readdir(fds)) != NULL) {
        char link[PATH_MAX + 32], target[PATH_MAX];
        snprintf(link, sizeof link, "/proc/self/fd/%s", entry->d_name);
        ssize_t length = readlink(link, target, sizeof target - 1);
        if (length <= 0)
            continue;
        target[length] = '\0';
        if (strcmp(target, path) == 0) {
            found = (int)strtol(entry->d_name, NULL, 10);
            matches++;
        }
    }
    closedir(fds);
    return matches == 1 ? found : -1;
}

/* A write that fails (the ring's descriptor swapped for a read-only one, as a
 * file system remounted read-only or a full disk would fail it) is reported
 * as BUTLER_ERR_IO, nothing crashes, later writes work once the file is
 * writable again, and only the key whose write failed is missing at the next
 * open (topics/cloud.c counts it in butler_cloud_dedup_unrecorded_total). */
static void test_a_failed_write_is_reported_and_costs_only_its_own_key(void)
{
    make_directory();
    struct seen seen;
    struct seen_ring_options options = {
        .path = path, .capacity = 8, .key_max = 40, .ttl_ms = TTL_MS, .fsync = true};
    struct seen_ring *ring = NULL;
    UNIT_CHECK(seen_ring_open(&options, NULL, NULL, &ring) == BUTLER_OK);
    uint64_t now = clock_wall_ms();
    UNIT_CHECK(seen_ring_add(ring, "t:reload-1", now) == BUTLER_OK);
    int ring_fd = descriptor_of_path();
    UNIT_CHECK(ring_fd >= 0);
    int read_only = open(path, O_RDONLY | O_CLOEXEC);
    int read_write = open(path, O_RDWR | O_CLOEXEC);
    UNIT_CHECK(read_only >= 0 && read_write >= 0);
    UNIT_CHECK(dup2(read_only, ring_fd) == ring_fd);
    UNIT_CHECK(seen_ring_add(ring, "t:reload-2", now) == BUTLER_ERR_IO);
    UNIT_CHECK(seen_ring_add(ring, "t:reload-3", now) == BUTLER_ERR_IO);
    UNIT_CHECK(dup2(read_write, ring_fd) == ring_fd);
    close(read_only);
    close(read_write);
    UNIT_CHECK(seen_ring_add(ring, "t:reload-4", now) == BUTLER_OK);
    seen_ring_close(ring);
    ring = open_ring(8, &seen);
    UNIT_CHECK(seen.count == 2);
    UNIT_CHECK_STR(seen.keys[0], "t:reload-1");
    UNIT_CHECK_STR(seen.keys[1], "t:reload-4");
    seen_ring_close(ring);
    remove_directory();
}

static void test_bad_keys_and_options_are_refused(void)
{
    make_directory();
    struct seen seen;
    struct seen_ring *ring = open_ring(8, &seen);
    char long_key[64];
    memset(long_key, 'k', 41);
    long_key[41] = '\0';
    UNIT_CHECK(seen_ring_add(ring, long_key, 1) == BUTLER_ERR_TOO_LARGE);
    UNIT_CHECK(seen_ring_add(ring, "", 1) == BUTLER_ERR_TOO_LARGE);
    long_key[40] = '\0';
    UNIT_CHECK(seen_ring_add(ring, long_key, clock_wall_ms()) == BUTLER_OK); /* exactly key_max */
    seen_ring_close(ring);
    ring = open_ring(8, &seen);
    UNIT_CHECK(seen.count == 1 && strlen(seen.keys[0]) == 40);
    seen_ring_close(ring);
    struct seen_ring_options options = {.path = path, .capacity = 0, .key_max = 40};
    UNIT_CHECK(seen_ring_open(&options, NULL, NULL, &ring) == BUTLER_ERR_INVALID);
    options =
        (struct seen_ring_options){.path = path, .capacity = 8, .key_max = SEEN_RING_KEY_MAX + 1};
    UNIT_CHECK(seen_ring_open(&options, NULL, NULL, &ring) == BUTLER_ERR_INVALID);
    options = (struct seen_ring_options){
        .path = "/nonexistent-dir/seen.ring", .capacity = 8, .key_max = 40};
    UNIT_CHECK(seen_ring_open(&options, NULL, NULL, &ring) == BUTLER_ERR_IO);
    remove_directory();
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_keys_come_back_after_a_reopen_oldest_first),
    UNIT_TEST(test_keys_past_their_ttl_are_not_handed_back),
    UNIT_TEST(test_the_newest_capacity_keys_are_kept_and_the_file_is_bounded),
    UNIT_TEST(test_a_damaged_slot_costs_only_its_own_key),
    UNIT_TEST(test_a_failed_write_is_reported_and_costs_only_its_own_key),
    UNIT_TEST(test_another_layout_or_garbage_starts_afresh),
    UNIT_TEST(test_bad_keys_and_options_are_refused),
    {0},
};
