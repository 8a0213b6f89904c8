/*
 * LD_PRELOAD shim for integration tests: makes the spool's file fail as a full
 * disk or a failing flush would, on demand, without root or a mount.
 *
 *   BUTLER_SPOOL_FAULTS=<directory>   where the test puts its switches:
 *     <directory>/enospc  exists -> write() of a PROGRESS or DONE record to a
 *                                   file named spool.log fails with ENOSPC
 *                                   (nothing written): a disk that filled up
 *                                   after the requests themselves were recorded;
 *     <directory>/eio     exists -> fdatasync()/fsync() of it fail with EIO while
 *                                   a PROGRESS note written since the switch
 *                                   was turned on has not been flushed (a flush
 *                                   with no such note pending works);
 *     <directory>/enospc_add exists -> write() of an ADD record fails with
 *                                   ENOSPC (nothing written): a disk that
 *                                   filled up while a worker records new
 *                                   work of its own (a followed run);
 *     <directory>/stall   exists -> write() of an ADD record to it blocks
 *                                   until the switch is removed: a hung disk
 *                                   (NFS) under the MQTT network thread, which
 *                                   records each message before its PUBACK.
 *     <directory>/seen_eio exists -> pwrite() to a file named cloud-seen.ring
 *                                   (bridge/store/seen_ring.c, the Qlik Cloud
 *                                   reloads published) fails with EIO, nothing
 *                                   written: a disk failing under that file.
 *
 * The record type is the byte after the 12-byte record header
 * (bridge/store/spool_internal.h); Butler writes each record with one write().
 * Only descriptors whose path ends in "/spool.log" (or, for pwrite, in
 * "/cloud-seen.ring") are touched; everything else goes straight to libc. Checking the switches
 * costs a stat() per call, which is fine for a test. Not linked into Butler.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool path_ends_with(int fd, const char *suffix)
{
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t length = readlink(link, path, sizeof path - 1);
    if (length <= 0)
        return false;
    path[length] = '\0';
    size_t suffix_length = strlen(suffix);
    return (size_t)length >= suffix_length && strcmp(path + length - suffix_length, suffix) == 0;
}

static bool is_spool(int fd)
{
    return path_ends_with(fd, "/spool.log");
}

static bool switched_on(const char *name)
{
    const char *directory = getenv("BUTLER_SPOOL_FAULTS");
    char path[PATH_MAX];
    struct stat info;
    if (directory == NULL)
        return false;
    snprintf(path, sizeof path, "%s/%s", directory, name);
    return stat(path, &info) == 0;
}

enum { RECORD_TYPE_OFFSET = 12, ADD = 1, PROGRESS = 2, DONE = 3 };

/* A PROGRESS note was written and no flush has succeeded since. */
static volatile bool note_unflushed;

ssize_t write(int fd, const void *data, size_t length)
{
    static ssize_t (*real)(int, const void *, size_t);
    if (real == NULL)
        real = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    if (length > RECORD_TYPE_OFFSET && is_spool(fd)) {
        int type = ((const unsigned char *)data)[RECORD_TYPE_OFFSET];
        while (type == ADD && switched_on("stall"))
            usleep(20000);
        if (type == ADD && switched_on("enospc_add")) {
            errno = ENOSPC;
            return -1;
        }
        if ((type == PROGRESS || type == DONE) && switched_on("enospc")) {
            errno = ENOSPC;
            return -1;
        }
        ssize_t written = real(fd, data, length);
        if (written > 0 && type == PROGRESS && switched_on("eio"))
            note_unflushed = true;
        return written;
    }
    return real(fd, data, length);
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (note_unflushed && switched_on("eio") && is_spool(fd)) {
        errno = EIO;
        return -1;
    }
    int status = real(fd);
    if (status == 0 && is_spool(fd))
        note_unflushed = false;
    return status;
}

int fsync(int fd)
{
    static int (*real)(int);
    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (note_unflushed && switched_on("eio") && is_spool(fd)) {
        errno = EIO;
        return -1;
    }
    int status = real(fd);
    if (status == 0 && is_spool(fd))
        note_unflushed = false;
    return status;
}

ssize_t pwrite(int fd, const void *data, size_t length, off_t offset)
{
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (real == NULL)
        real = (ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
    if (switched_on("seen_eio") && path_ends_with(fd, "/cloud-seen.ring")) {
        errno = EIO;
        return -1;
    }
    return real(fd, data, length, offset);
}
