/*
 * Recursive directory copy beneath approved roots (file_copy of a directory; the rules are
 * in file_system.h). Two passes over the source tree with the same walk: the first checks
 * every entry, the bounds and the target, and writes nothing; the second copies. Every
 * entry is opened by its path relative to the approved root's descriptor through
 * file_open_beneath, exactly as a single-file copy opens its source, so a symbolic link (or
 * a directory swapped for one mid-copy) cannot lead out of the root; every file lands
 * through file_copy_into (temporary name, fsync, rename).
 *
 * Memory: two path buffers and one DIR per directory level (FILE_TREE_DEPTH_MAX levels at
 * most, so at most that many descriptors open at once); nothing grows with the tree.
 */
#define _GNU_SOURCE /* O_PATH */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bridge/clients/file_system.h"
#include "bridge/clients/file_system_internal.h"

struct tree_walk {
    int from_root;
    int to_root;
    const struct file_copy_options *options;
    bool copying; /* false: the checking pass */
    long entries;
    long long bytes;
    char source[FILE_PATH_MAX + 1]; /* current entry, relative to the source root */
    char target[FILE_PATH_MAX + 1]; /* the same entry beneath the target root */
    size_t skip;                    /* bytes of `source` before the copied directory's inside */
    char *error;
    size_t error_size;
};

/* The current entry as the user named it: relative to the copied directory. */
static const char *inside(const struct tree_walk *walk)
{
    const char *rest = walk->source + walk->skip;
    return rest[0] == '/' ? rest + 1 : rest;
}

/* Append "/name" to both paths; false (error set) when a path would be too long. */
static bool push(struct tree_walk *walk, const char *name, size_t *source_length,
                 size_t *target_length)
{
    *source_length = strlen(walk->source);
    *target_length = strlen(walk->target);
    size_t name_length = strlen(name);
    if (*source_length + 1 + name_length > FILE_PATH_MAX ||
        *target_length + 1 + name_length > FILE_PATH_MAX) {
        butler_error_set(walk->error, walk->error_size,
                         "a path in the copy is longer than %d bytes", FILE_PATH_MAX);
        return false;
    }
    snprintf(walk->source + *source_length, sizeof walk->source - *source_length, "/%s", name);
    snprintf(walk->target + *target_length, sizeof walk->target - *target_length, "/%s", name);
    return true;
}

static void pop(struct tree_walk *walk, size_t source_length, size_t target_length)
{
    walk->source[source_length] = '\0';
    walk->target[target_length] = '\0';
}

/* What is at the current target path (not following a final symlink): 0 none, else st_mode. */
static enum butler_status target_mode(const struct tree_walk *walk, mode_t *mode)
{
    *mode = 0;
    int fd = file_open_beneath(walk->to_root, walk->target, O_PATH | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return BUTLER_OK;
        int saved = errno;
        enum butler_status status = file_lookup_status(saved);
        if (status == BUTLER_ERR_DENIED)
            butler_error_set(walk->error, walk->error_size,
                             "the target of %s leads out of its approved directory (through a "
                             "symbolic link)",
                             inside(walk)[0] ? inside(walk) : "the directory");
        else
            butler_error_set(walk->error, walk->error_size, "the target of %s cannot be used: %s",
                             inside(walk)[0] ? inside(walk) : "the directory", strerror(saved));
        return status;
    }
    struct stat st;
    enum butler_status status = BUTLER_OK;
    if (fstat(fd, &st) == 0)
        *mode = st.st_mode;
    else
        status = BUTLER_ERR_IO;
    close(fd);
    return status;
}

/* One file (or a symlink to one) at walk->source; target_directory is open in pass two. */
static enum butler_status one_file(struct tree_walk *walk, int target_directory, const char *name)
{
    enum butler_status status;
    int source = file_open_beneath(walk->from_root, walk->source, O_RDONLY | O_NOCTTY | O_NONBLOCK);
    if (source < 0) {
        int saved = errno;
        status = file_lookup_status(saved);
        if (status == BUTLER_ERR_DENIED)
            butler_error_set(walk->error, walk->error_size,
                             "%s leads out of its approved directory (through a symbolic link)",
                             inside(walk));
        else
            butler_error_set(walk->error, walk->error_size, "%s cannot be opened: %s", inside(walk),
                             strerror(saved));
        return status;
    }
    struct stat st;
    if (fstat(source, &st) != 0 || !S_ISREG(st.st_mode)) {
        butler_error_set(walk->error, walk->error_size,
                         "%s is not a regular file (a symbolic link is followed only to a regular "
                         "file beneath the approved directory)",
                         inside(walk));
        status = BUTLER_ERR_INVALID;
        goto out;
    }
    walk->bytes += st.st_size;
    if (walk->bytes > walk->options->max_bytes) {
        butler_error_set(walk->error, walk->error_size,
                         "the directory holds more than %lld bytes (file.copy_max_bytes)",
                         walk->options->max_bytes);
        status = BUTLER_ERR_TOO_LARGE;
        goto out;
    }
    mode_t existing = 0;
    status = target_mode(walk, &existing);
    if (status != BUTLER_OK)
        goto out;
    if (S_ISDIR(existing)) {
        butler_error_set(walk->error, walk->error_size, "the target of %s is a directory",
                         inside(walk));
        status = BUTLER_ERR_INVALID;
        goto out;
    }
    const struct file_copy_options *options = walk->options;
    if (existing && !options->overwrite) {
        if (options->keep_existing && S_ISREG(existing))
            goto out; /* a replay: this file was copied, whole, before the restart */
        butler_error_set(walk->error, walk->error_size,
                         "the target of %s exists and overwrite is false", inside(walk));
        status = BUTLER_ERR_INVALID;
        goto out;
    }
    if (!walk->copying)
        goto out;
    fcntl(source, F_SETFL, fcntl(source, F_GETFL) & ~O_NONBLOCK);
    char reason[FILE_ERROR_MAX];
    status = file_copy_into(source, &st, target_directory, name, options, reason, sizeof reason);
    if (status != BUTLER_OK)
        butler_error_set(walk->error, walk->error_size, "%s: %s", inside(walk), reason);
out:
    close(source);
    return status;
}

/* The directory at walk->source, and everything beneath it. */
static enum butler_status one_directory(struct tree_walk *walk, int depth)
{
    enum butler_status status = BUTLER_OK;
    int target_directory = -1;
    DIR *directory = NULL;
    int fd = file_open_beneath(walk->from_root, walk->source, O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        int saved = errno;
        status = file_lookup_status(saved);
        butler_error_set(walk->error, walk->error_size, "%s%s%s",
                         inside(walk)[0] ? inside(walk) : "the source directory",
                         status == BUTLER_ERR_DENIED
                             ? " leads out of its approved directory (through a symbolic link)"
                             : " cannot be opened: ",
                         status == BUTLER_ERR_DENIED ? "" : strerror(saved));
        return status;
    }
    if (walk->copying) {
        status = file_open_directory(walk->to_root, walk->target, true, &target_directory, "target",
                                     walk->error, walk->error_size);
        if (status != BUTLER_OK)
            goto out;
        /* A crashed run of this request may have left its temporary files here. */
        file_remove_stale_temporaries(target_directory, walk->options->temp_token);
    } else {
        mode_t existing = 0;
        status = target_mode(walk, &existing);
        if (status == BUTLER_OK && existing && !S_ISDIR(existing)) {
            butler_error_set(walk->error, walk->error_size,
                             "the target of %s exists and is not a directory",
                             inside(walk)[0] ? inside(walk) : "the directory");
            status = BUTLER_ERR_INVALID;
        }
        if (status != BUTLER_OK)
            goto out;
    }
    directory = fdopendir(fd);
    if (directory == NULL) {
        butler_error_set(walk->error, walk->error_size, "cannot read %s: %s",
                         inside(walk)[0] ? inside(walk) : "the source directory", strerror(errno));
        status = BUTLER_ERR_IO;
        goto out;
    }
    fd = -1; /* the DIR owns it */
    const struct dirent *entry;
    while (status == BUTLER_OK && (errno = 0, entry = readdir(directory)) != NULL) {
        const char *name = entry->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
            strncmp(name, FILE_TEMP_PREFIX, strlen(FILE_TEMP_PREFIX)) == 0)
            continue; /* temporaries of other copies are never whole files */
        size_t source_length, target_length;
        if (!push(walk, name, &source_length, &target_length)) {
            status = BUTLER_ERR_INVALID;
            break;
        }
        struct stat st;
        if (++walk->entries > walk->options->max_entries) {
            butler_error_set(walk->error, walk->error_size,
                             "the directory holds more than %ld entries (file.copy_max_entries)",
                             walk->options->max_entries);
            status = BUTLER_ERR_TOO_LARGE;
        } else if (fstatat(dirfd(directory), name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            butler_error_set(walk->error, walk->error_size, "%s cannot be read: %s", inside(walk),
                             strerror(errno));
            status = BUTLER_ERR_IO;
        } else if (S_ISDIR(st.st_mode)) {
            if (depth + 1 > FILE_TREE_DEPTH_MAX) {
                butler_error_set(walk->error, walk->error_size,
                                 "the directory is more than %d levels deep", FILE_TREE_DEPTH_MAX);
                status = BUTLER_ERR_TOO_LARGE;
            } else {
                status = one_directory(walk, depth + 1);
            }
        } else if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) {
            status = one_file(walk, target_directory, name);
        } else {
            butler_error_set(walk->error, walk->error_size,
                             "%s is not a regular file or a directory", inside(walk));
            status = BUTLER_ERR_INVALID;
        }
        pop(walk, source_length, target_length);
    }
    if (status == BUTLER_OK && errno != 0) {
        butler_error_set(walk->error, walk->error_size, "cannot read %s: %s",
                         inside(walk)[0] ? inside(walk) : "the source directory", strerror(errno));
        status = BUTLER_ERR_IO;
    }
out:
    if (directory)
        closedir(directory);
    if (fd >= 0)
        close(fd);
    if (target_directory >= 0)
        close(target_directory);
    return status;
}

enum butler_status file_tree_copy(int from_root_fd, const struct file_place *source,
                                  const struct file_place *target,
                                  const struct file_copy_options *options, char *error,
                                  size_t error_size)
{
    enum butler_status status = BUTLER_ERR_INVALID;
    struct tree_walk *walk = NULL;
    char source_full[FILE_PATH_MAX + 1], target_full[FILE_PATH_MAX + 1];
    const char *rest;
    if (target->relative[0] == '\0') {
        butler_error_set(error, error_size, "the target names an approved directory itself");
        goto out;
    }
    int written =
        snprintf(source_full, sizeof source_full, "%s/%s", source->root, source->relative);
    int written_target =
        snprintf(target_full, sizeof target_full, "%s/%s", target->root, target->relative);
    if (written < 0 || (size_t)written >= sizeof source_full || written_target < 0 ||
        (size_t)written_target >= sizeof target_full) {
        butler_error_set(error, error_size, "a path is longer than %d bytes", FILE_PATH_MAX);
        goto out;
    }
    if (file_path_beneath(source_full, target_full, &rest)) {
        butler_error_set(error, error_size, "the target is inside the source directory");
        goto out;
    }
    walk = calloc(1, sizeof *walk); /* 8 KiB of paths: not on a worker's stack */
    if (walk == NULL) {
        status = BUTLER_ERR_NOMEM;
        butler_error_set(error, error_size, "out of memory");
        goto out;
    }
    walk->to_root = -1;
    walk->from_root = from_root_fd;
    walk->options = options;
    walk->error = error;
    walk->error_size = error_size;
    walk->to_root = file_open_root(target->root, error, error_size, &status);
    if (walk->to_root < 0)
        goto out;
    for (int pass = 0; pass < 2; pass++) {
        walk->copying = pass == 1;
        walk->entries = 0;
        walk->bytes = 0;
        snprintf(walk->source, sizeof walk->source, "%s", source->relative);
        snprintf(walk->target, sizeof walk->target, "%s", target->relative);
        walk->skip = strlen(walk->source);
        status = one_directory(walk, 0);
        if (status != BUTLER_OK)
            break;
    }
out:
    if (walk && walk->to_root >= 0)
        close(walk->to_root);
    free(walk);
    return status;
}
