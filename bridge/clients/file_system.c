/*
 * File operations confined to approved directory trees (see file_system.h).
 * Every descriptor is opened relative to a descriptor of the approved root,
 * never by a full path, so what was checked is what is used.
 */
#define _GNU_SOURCE /* openat2 flags, copy_file_range, renameat2, O_PATH */
#include "bridge/clients/file_system.h"
#include "bridge/clients/file_system_internal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

enum {
    OPENAT2_UNKNOWN = 0,
    OPENAT2_PRESENT = 1,
    OPENAT2_ABSENT = 2,
    /* openat2 with RESOLVE_BENEATH answers EAGAIN when a rename elsewhere
     * raced the lookup; it is safe to try again a few times. */
    OPENAT2_RETRIES = 8,
    TEMP_TOKEN_MAX = 32,
    /* One copy_file_range/sendfile call; the kernel moves the data. */
    COPY_CHUNK = 1 << 30,
};

static atomic_int openat2_state;
static atomic_bool walk_forced;

static long call_openat2(int directory_fd, const char *path, int flags)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    return syscall(SYS_openat2, directory_fd, path, &how, sizeof how);
}

bool file_system_has_openat2(void)
{
    int state = atomic_load(&openat2_state);
    if (state == OPENAT2_UNKNOWN) {
        long fd = call_openat2(AT_FDCWD, ".", O_PATH | O_DIRECTORY);
        /* ENOSYS: kernel before 5.6; EPERM: a seccomp filter that predates it. */
        state = fd < 0 && (errno == ENOSYS || errno == EPERM) ? OPENAT2_ABSENT : OPENAT2_PRESENT;
        if (fd >= 0)
            close((int)fd);
        atomic_store(&openat2_state, state);
    }
    return state == OPENAT2_PRESENT;
}

void file_system_force_walk(bool force)
{
    atomic_store(&walk_forced, force);
}

/* ---- gate 1: the text ---- */

enum butler_status file_path_check(const char *path, size_t length, bool absolute, char *error,
                                   size_t error_size)
{
    if (path == NULL || length == 0) {
        butler_error_set(error, error_size, "the path is empty");
        return BUTLER_ERR_INVALID;
    }
    if (memchr(path, '\0', length) != NULL) {
        butler_error_set(error, error_size, "the path contains a NUL byte");
        return BUTLER_ERR_INVALID;
    }
    if (length > FILE_PATH_MAX) {
        butler_error_set(error, error_size, "the path is longer than %d bytes", FILE_PATH_MAX);
        return BUTLER_ERR_INVALID;
    }
    if (length >= 2 && (path[0] == '\\' || path[0] == '/') && (path[1] == '\\' || path[1] == '/') &&
        !(path[0] == '/' && path[1] == '/' && (length == 2 || path[2] == '/'))) {
        butler_error_set(
            error, error_size,
            "the path is a UNC path (\\\\server\\share): Windows network paths are not "
            "supported; give the path as it is mounted on the Butler host");
        return BUTLER_ERR_INVALID;
    }
    if (length >= 2 && isalpha((unsigned char)path[0]) && path[1] == ':') {
        butler_error_set(
            error, error_size,
            "the path is a Windows drive path (C:\\...): give the path as it is mounted "
            "on the Butler host");
        return BUTLER_ERR_INVALID;
    }
    if (memchr(path, '\\', length) != NULL) {
        butler_error_set(error, error_size,
                         "the path contains a backslash (a Windows path separator)");
        return BUTLER_ERR_INVALID;
    }
    size_t component = 0;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c < 0x20 || c == 0x7f) {
            butler_error_set(error, error_size, "the path contains a control character (byte %u)",
                             c);
            return BUTLER_ERR_INVALID;
        }
        component = c == '/' ? 0 : component + 1;
        if (component > FILE_NAME_MAX) {
            butler_error_set(error, error_size, "a path component is longer than %d bytes",
                             FILE_NAME_MAX);
            return BUTLER_ERR_INVALID;
        }
    }
    if (absolute && path[0] != '/') {
        butler_error_set(error, error_size, "the path is not absolute (it must start with /)");
        return BUTLER_ERR_INVALID;
    }
    return BUTLER_OK;
}

/* ---- gate 2: lexically beneath a root ---- */

enum butler_status file_path_normalize(const char *path, char *out, size_t out_size)
{
    if (path == NULL || path[0] != '/' || out_size < 2)
        return BUTLER_ERR_INVALID;
    size_t length = 0;
    out[0] = '\0';
    for (const char *p = path; *p;) {
        while (*p == '/')
            p++;
        if (*p == '\0')
            break;
        size_t n = strcspn(p, "/");
        if (n == 1 && p[0] == '.') {
            /* nothing */
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            if (length == 0)
                return BUTLER_ERR_DENIED; /* above "/" */
            while (length > 0 && out[length - 1] != '/')
                length--;
            length--; /* the slash before the dropped component */
            out[length] = '\0';
        } else {
            if (length + 1 + n + 1 > out_size)
                return BUTLER_ERR_TOO_LARGE;
            out[length++] = '/';
            memcpy(out + length, p, n);
            length += n;
            out[length] = '\0';
        }
        p += n;
    }
    if (length == 0) {
        out[0] = '/';
        out[1] = '\0';
    }
    return BUTLER_OK;
}

bool file_path_beneath(const char *root, const char *path, const char **rest)
{
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/') {
        *rest = path[0] == '/' ? path + 1 : path;
        return true;
    }
    if (strncmp(root, path, n) != 0)
        return false;
    if (path[n] == '\0') {
        *rest = path + n;
        return true;
    }
    if (path[n] == '/') {
        *rest = path + n + 1;
        return true;
    }
    return false;
}

/* ---- gate 3: opening beneath the root ---- */

/* errno after a failed lookup, as a status: an escape is a policy refusal. */
enum butler_status file_lookup_status(int error_number)
{
    switch (error_number) {
    case ENOENT:
        return BUTLER_ERR_NOT_FOUND;
    case EXDEV: /* RESOLVE_BENEATH: the path (or a symlink in it) leaves the root */
    case ELOOP: /* a symlink where none is followed, a magic link, or a loop */
        return BUTLER_ERR_DENIED;
    case ENOTDIR:
    case ENAMETOOLONG:
    case EISDIR:
        return BUTLER_ERR_INVALID;
    default:
        return BUTLER_ERR_IO;
    }
}

/* Component walk for kernels without openat2: each step is openat() of one
 * name relative to the previous directory's fd with O_NOFOLLOW, so nothing
 * renamed or swapped in meanwhile can lead out of the root. `relative` is
 * normalized (no "", ".", ".." components). Sets errno on failure. */
static int walk_beneath(int root_fd, const char *relative, int flags)
{
    if (relative[0] == '\0')
        return openat(root_fd, ".", flags | O_CLOEXEC);
    int current = root_fd;
    const char *p = relative;
    for (;;) {
        size_t n = strcspn(p, "/");
        char name[FILE_NAME_MAX + 1];
        if (n == 0 || n > FILE_NAME_MAX || (n <= 2 && strncmp(p, "..", n) == 0)) {
            if (current != root_fd)
                close(current);
            errno = n > FILE_NAME_MAX ? ENAMETOOLONG : EXDEV;
            return -1;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        bool last = p[n] == '\0';
        int next = openat(current, name,
                          last ? flags | O_NOFOLLOW | O_CLOEXEC
                               : O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int saved = errno;
        struct stat entry;
        /* O_NOFOLLOW|O_DIRECTORY on a symlink says ENOTDIR: report it as the
         * symlink refusal it is. */
        if (next < 0 && saved == ENOTDIR &&
            fstatat(current, name, &entry, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(entry.st_mode))
            saved = ELOOP;
        if (current != root_fd)
            close(current);
        if (next < 0) {
            errno = saved;
            return -1;
        }
        if (last)
            return next;
        current = next;
        p += n + 1;
    }
}

/* Open `relative` beneath root_fd. Sets errno on failure. */
int file_open_beneath(int root_fd, const char *relative, int flags)
{
    if (atomic_load(&walk_forced) || !file_system_has_openat2())
        return walk_beneath(root_fd, relative, flags);
    const char *path = relative[0] ? relative : ".";
    for (int attempt = 0; attempt < OPENAT2_RETRIES; attempt++) {
        long fd = call_openat2(root_fd, path, flags);
        if (fd >= 0)
            return (int)fd;
        if (errno != EAGAIN && errno != EINTR)
            return -1;
    }
    return -1;
}

int file_open_root(const char *root, char *error, size_t error_size, enum butler_status *status)
{
    int fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        butler_error_set(error, error_size, "approved directory %s cannot be opened: %s", root,
                         strerror(errno));
        *status = BUTLER_ERR_IO;
    }
    return fd;
}

/* Split normalized "a/b/c" into directory "a/b" (into `directory`) and name "c". */
static const char *split_last(const char *relative, char directory[FILE_PATH_MAX + 1])
{
    const char *slash = strrchr(relative, '/');
    if (slash == NULL) {
        directory[0] = '\0';
        return relative;
    }
    size_t n = (size_t)(slash - relative);
    memcpy(directory, relative, n);
    directory[n] = '\0';
    return slash + 1;
}

/*
 * Open directory `relative` beneath root_fd as an O_PATH fd, creating
 * missing components when `create`. Each component is created with mkdirat()
 * in the directory just opened beneath the root, then opened again beneath
 * the root: a symlink swapped in between is refused by that second lookup.
 */
enum butler_status file_open_directory(int root_fd, const char *relative, bool create, int *out,
                                       const char *role, char *error, size_t error_size)
{
    *out = file_open_beneath(root_fd, relative, O_PATH | O_DIRECTORY);
    if (*out >= 0)
        return BUTLER_OK;
    int saved = errno;
    if (saved == ENOENT && create) {
        int parent = file_open_beneath(root_fd, "", O_PATH | O_DIRECTORY);
        char prefix[FILE_PATH_MAX + 1];
        const char *p = relative;
        while (parent >= 0) {
            size_t n = strcspn(p, "/");
            size_t end = (size_t)(p - relative) + n;
            memcpy(prefix, relative, end);
            prefix[end] = '\0';
            int next = file_open_beneath(root_fd, prefix, O_PATH | O_DIRECTORY);
            if (next < 0 && errno == ENOENT) {
                char name[FILE_NAME_MAX + 1];
                snprintf(name, sizeof name, "%.*s", (int)n, p);
                if (mkdirat(parent, name, 0777) != 0 && errno != EEXIST) {
                    saved = errno;
                    close(parent);
                    parent = -1;
                    break;
                }
                next = file_open_beneath(root_fd, prefix, O_PATH | O_DIRECTORY);
            }
            saved = errno;
            close(parent);
            parent = next;
            if (next < 0 || p[n] == '\0')
                break;
            p += n + 1;
        }
        if (parent >= 0) {
            *out = parent;
            return BUTLER_OK;
        }
    }
    enum butler_status status = file_lookup_status(saved);
    if (status == BUTLER_ERR_DENIED)
        butler_error_set(error, error_size,
                         "the %s directory leads out of its approved directory (through a symbolic "
                         "link)",
                         role);
    else if (status == BUTLER_ERR_NOT_FOUND)
        butler_error_set(error, error_size, "the %s directory does not exist", role);
    else
        butler_error_set(error, error_size, "the %s directory cannot be opened: %s", role,
                         strerror(saved));
    return status;
}

/*
 * Open the approved root of `place` and, beneath it, the directory holding
 * the last component of place->relative (created when `create`); *name is
 * that component. `role` names the path in errors ("source", "target", ...).
 */
static enum butler_status open_parent(const struct file_place *place, const char *role, bool create,
                                      int *root_fd, int *directory_fd,
                                      char directory[FILE_PATH_MAX + 1], const char **name,
                                      char *error, size_t error_size)
{
    enum butler_status status = BUTLER_ERR_IO;
    *root_fd = *directory_fd = -1;
    if (place->relative[0] == '\0') {
        butler_error_set(error, error_size, "the %s names an approved directory itself", role);
        return BUTLER_ERR_INVALID;
    }
    *root_fd = file_open_root(place->root, error, error_size, &status);
    if (*root_fd < 0)
        return status;
    *name = split_last(place->relative, directory);
    status =
        file_open_directory(*root_fd, directory, create, directory_fd, role, error, error_size);
    if (status == BUTLER_ERR_NOT_FOUND)
        butler_error_set(error, error_size, "the %s does not exist", role);
    return status;
}

/* ---- copying ---- */

/* Copy [offset, offset + length) of src to the same offsets of dst. */
static enum butler_status copy_range(int src, int dst, off_t offset, off_t length)
{
    off_t in = offset, out = offset;
    bool use_sendfile = false;
    while (length > 0) {
        size_t chunk = length > COPY_CHUNK ? COPY_CHUNK : (size_t)length;
        ssize_t copied;
        if (!use_sendfile) {
            copied = copy_file_range(src, &in, dst, &out, chunk, 0);
            if (copied < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                               errno == EOPNOTSUPP || errno == EBADF)) {
                /* Not supported between these file systems: sendfile writes at
                 * dst's file position, so put it where we are. */
                use_sendfile = true;
                if (lseek(dst, out, SEEK_SET) < 0)
                    return BUTLER_ERR_IO;
                continue;
            }
        } else {
            copied = sendfile(dst, src, &in, chunk);
            out = in;
        }
        if (copied < 0) {
            if (errno == EINTR)
                continue;
            return BUTLER_ERR_IO;
        }
        if (copied == 0)
            break; /* the source shrank meanwhile; the size was fixed at the start */
        length -= copied;
    }
    return BUTLER_OK;
}

/* Copy the first `size` bytes of src; holes stay holes (SEEK_DATA/SEEK_HOLE). */
static enum butler_status copy_data(int src, int dst, off_t size)
{
    off_t offset = 0;
    while (offset < size) {
        off_t data = lseek(src, offset, SEEK_DATA);
        off_t end = size;
        if (data < 0) {
            if (errno == ENXIO)
                break; /* only a hole is left */
            if (errno != EINVAL)
                return BUTLER_ERR_IO;
            data = offset; /* no hole support here: copy it all */
        } else {
            end = lseek(src, data, SEEK_HOLE);
            if (end < 0 || end > size)
                end = size;
        }
        if (data >= size)
            break;
        enum butler_status status = copy_range(src, dst, data, end - data);
        if (status != BUTLER_OK)
            return status;
        offset = end;
    }
    return ftruncate(dst, size) == 0 ? BUTLER_OK : BUTLER_ERR_IO;
}

static bool temp_name_of_token(const char *name, const char *token)
{
    size_t prefix_length = strlen(FILE_TEMP_PREFIX), token_length = strlen(token);
    size_t length = strlen(name);
    return strncmp(name, FILE_TEMP_PREFIX, prefix_length) == 0 &&
           strncmp(name + prefix_length, token, token_length) == 0 &&
           name[prefix_length + token_length] == '-' && length > 4 &&
           strcmp(name + length - 4, ".tmp") == 0;
}

/* Keep only [A-Za-z0-9_-] of the caller's token, at most TEMP_TOKEN_MAX. */
static void clean_token(const char *token, char out[TEMP_TOKEN_MAX + 1])
{
    size_t n = 0;
    for (const char *p = token ? token : ""; *p && n < TEMP_TOKEN_MAX; p++)
        if (isalnum((unsigned char)*p) || *p == '_' || *p == '-')
            out[n++] = *p;
    if (n == 0)
        out[n++] = 'x';
    out[n] = '\0';
}

/* Remove temporary files of this token (a crash left them) from directory_fd. */
void file_remove_stale_temporaries(int directory_fd, const char *raw_token)
{
    char token[TEMP_TOKEN_MAX + 1];
    clean_token(raw_token, token);
    int fd = openat(directory_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *directory = fd >= 0 ? fdopendir(fd) : NULL;
    if (directory == NULL) {
        if (fd >= 0)
            close(fd);
        return;
    }
    const struct dirent *entry;
    while ((entry = readdir(directory)) != NULL)
        if (temp_name_of_token(entry->d_name, token))
            unlinkat(directory_fd, entry->d_name, 0);
    closedir(directory);
}

/* Rename temp over (overwrite) or beside (no overwrite) name, atomically. */
static int rename_into_place(int directory_fd, const char *temp, int target_fd, const char *name,
                             bool overwrite)
{
    if (overwrite)
        return renameat(directory_fd, temp, target_fd, name);
    if (renameat2(directory_fd, temp, target_fd, name, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    /* No RENAME_NOREPLACE on this file system: link() never replaces either. */
    if (linkat(directory_fd, temp, target_fd, name, 0) != 0)
        return -1;
    unlinkat(directory_fd, temp, 0);
    return 0;
}

/*
 * Copy open regular file src into directory_fd/name through a temporary file
 * in the same directory, then rename it into place.
 */
enum butler_status file_copy_into(int src, const struct stat *source_stat, int directory_fd,
                                  const char *name, const struct file_copy_options *options,
                                  char *error, size_t error_size)
{
    enum butler_status status = BUTLER_ERR_IO;
    char token[TEMP_TOKEN_MAX + 1], temp[FILE_NAME_MAX + 1];
    int temp_fd = -1;
    clean_token(options->temp_token, token);
    for (int attempt = 0; attempt < 8 && temp_fd < 0; attempt++) {
        uint64_t random_value = 0;
        if (getrandom(&random_value, sizeof random_value, 0) != (ssize_t)sizeof random_value)
            random_value = (uint64_t)rand() ^ ((uint64_t)getpid() << 32);
        snprintf(temp, sizeof temp, "%s%s-%016llx.tmp", FILE_TEMP_PREFIX, token,
                 (unsigned long long)random_value);
        temp_fd =
            openat(directory_fd, temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (temp_fd < 0 && errno != EEXIST)
            break;
    }
    if (temp_fd < 0) {
        butler_error_set(error, error_size,
                         "cannot create a temporary file in the target directory: %s",
                         strerror(errno));
        return BUTLER_ERR_IO;
    }
    if (copy_data(src, temp_fd, source_stat->st_size) != BUTLER_OK) {
        butler_error_set(error, error_size, "copying failed: %s", strerror(errno));
        goto out;
    }
    if (fchmod(temp_fd, source_stat->st_mode & 0777) != 0) {
        butler_error_set(error, error_size, "cannot set the copy's mode: %s", strerror(errno));
        goto out;
    }
    if (options->preserve_timestamp) {
        const struct timespec times[2] = {source_stat->st_atim, source_stat->st_mtim};
        if (futimens(temp_fd, times) != 0) {
            butler_error_set(error, error_size, "cannot set the copy's timestamps: %s",
                             strerror(errno));
            goto out;
        }
    }
    /* On disk before the name points at it: after a power loss the target
     * holds the old file or the whole new one. */
    if (fsync(temp_fd) != 0) {
        butler_error_set(error, error_size, "cannot flush the copy: %s", strerror(errno));
        goto out;
    }
    if (rename_into_place(directory_fd, temp, directory_fd, name, options->overwrite) != 0) {
        if (errno == EEXIST) {
            butler_error_set(error, error_size, "the target exists and overwrite is false");
            status = BUTLER_ERR_INVALID;
        } else {
            butler_error_set(error, error_size, "cannot rename the copy into place: %s",
                             strerror(errno));
        }
        goto out;
    }
    temp[0] = '\0'; /* renamed: nothing to remove */
    status = BUTLER_OK;
out:
    close(temp_fd);
    if (temp[0])
        unlinkat(directory_fd, temp, 0);
    return status;
}

/* The target side, shared by copy and move: open (creating) its directory and
 * check what is at its name. */
static enum butler_status prepare_target(const struct file_place *target, bool overwrite,
                                         int *root_fd, int *directory_fd, const char **name,
                                         char directory[FILE_PATH_MAX + 1], char *error,
                                         size_t error_size)
{
    enum butler_status status = open_parent(target, "target", true, root_fd, directory_fd,
                                            directory, name, error, error_size);
    if (status != BUTLER_OK)
        return status;
    struct stat existing;
    if (fstatat(*directory_fd, *name, &existing, AT_SYMLINK_NOFOLLOW) == 0) {
        if (!overwrite) {
            butler_error_set(error, error_size, "the target exists and overwrite is false");
            return BUTLER_ERR_INVALID;
        }
        if (S_ISDIR(existing.st_mode)) {
            butler_error_set(error, error_size, "the target is a directory");
            return BUTLER_ERR_INVALID;
        }
    }
    return BUTLER_OK;
}

static void close_all(int *fds, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

enum butler_status file_copy(const struct file_place *source, const struct file_place *target,
                             const struct file_copy_options *options, char *error,
                             size_t error_size)
{
    enum { FROM_ROOT, SOURCE, TO_ROOT, TARGET_DIRECTORY, FD_COUNT };
    int fds[FD_COUNT] = {-1, -1, -1, -1};
    enum butler_status status = BUTLER_ERR_IO;
    char directory[FILE_PATH_MAX + 1];
    const char *name = NULL;
    struct stat source_stat;
    if (source->relative[0] == '\0') {
        butler_error_set(error, error_size, "the source names an approved directory itself");
        status = BUTLER_ERR_INVALID;
        goto out;
    }
    fds[FROM_ROOT] = file_open_root(source->root, error, error_size, &status);
    if (fds[FROM_ROOT] < 0)
        goto out;
    /* O_NONBLOCK: a FIFO must not hang the worker; it is refused below. */
    fds[SOURCE] =
        file_open_beneath(fds[FROM_ROOT], source->relative, O_RDONLY | O_NOCTTY | O_NONBLOCK);
    if (fds[SOURCE] < 0) {
        int saved = errno;
        status = file_lookup_status(saved);
        if (status == BUTLER_ERR_NOT_FOUND)
            butler_error_set(error, error_size, "the source file does not exist");
        else if (status == BUTLER_ERR_DENIED)
            butler_error_set(
                error, error_size,
                "the source leads out of its approved directory (through a symbolic link)");
        else
            butler_error_set(error, error_size, "the source cannot be opened: %s", strerror(saved));
        goto out;
    }
    if (fstat(fds[SOURCE], &source_stat) == 0 && S_ISDIR(source_stat.st_mode) &&
        options->max_entries > 0) {
        status = file_tree_copy(fds[FROM_ROOT], source, target, options, error, error_size);
        goto out;
    }
    if (fstat(fds[SOURCE], &source_stat) != 0 || !S_ISREG(source_stat.st_mode)) {
        butler_error_set(error, error_size, "the source is not a regular file");
        status = BUTLER_ERR_INVALID;
        goto out;
    }
    /* Back to blocking reads for the copy itself. */
    fcntl(fds[SOURCE], F_SETFL, fcntl(fds[SOURCE], F_GETFL) & ~O_NONBLOCK);
    status = prepare_target(target, options->overwrite, &fds[TO_ROOT], &fds[TARGET_DIRECTORY],
                            &name, directory, error, error_size);
    if (status != BUTLER_OK)
        goto out;
    status = file_copy_into(fds[SOURCE], &source_stat, fds[TARGET_DIRECTORY], name, options, error,
                            error_size);
out:
    close_all(fds, FD_COUNT);
    return status;
}

enum butler_status file_move(const struct file_place *source, const struct file_place *target,
                             const struct file_copy_options *options, char *error,
                             size_t error_size)
{
    const bool overwrite = options->overwrite;
    enum { FROM_ROOT, SOURCE_DIRECTORY, TO_ROOT, TARGET_DIRECTORY, SOURCE, FD_COUNT };
    int fds[FD_COUNT] = {-1, -1, -1, -1, -1};
    enum butler_status status = BUTLER_ERR_IO;
    char source_directory[FILE_PATH_MAX + 1], target_directory[FILE_PATH_MAX + 1];
    const char *source_name = NULL, *target_name = NULL;
    struct stat source_stat;
    status = open_parent(source, "source", false, &fds[FROM_ROOT], &fds[SOURCE_DIRECTORY],
                         source_directory, &source_name, error, error_size);
    if (status != BUTLER_OK)
        goto out;
    if (fstatat(fds[SOURCE_DIRECTORY], source_name, &source_stat, AT_SYMLINK_NOFOLLOW) != 0) {
        status = errno == ENOENT ? BUTLER_ERR_NOT_FOUND : BUTLER_ERR_IO;
        butler_error_set(error, error_size, "the source does not exist");
        goto out;
    }
    if (!S_ISREG(source_stat.st_mode) && !S_ISDIR(source_stat.st_mode) &&
        !S_ISLNK(source_stat.st_mode)) {
        butler_error_set(error, error_size, "the source is not a file or directory");
        status = BUTLER_ERR_INVALID;
        goto out;
    }
    status = prepare_target(target, overwrite, &fds[TO_ROOT], &fds[TARGET_DIRECTORY], &target_name,
                            target_directory, error, error_size);
    if (status != BUTLER_OK)
        goto out;
    if (rename_into_place(fds[SOURCE_DIRECTORY], source_name, fds[TARGET_DIRECTORY], target_name,
                          overwrite) == 0) {
        status = BUTLER_OK;
        goto out;
    }
    if (errno == EEXIST || errno == ENOTEMPTY) {
        butler_error_set(error, error_size, "the target exists and overwrite is false");
        status = BUTLER_ERR_INVALID;
        goto out;
    }
    if (errno == EINVAL) { /* a directory into itself */
        butler_error_set(error, error_size, "cannot move a directory beneath itself");
        status = BUTLER_ERR_INVALID;
        goto out;
    }
    if (errno != EXDEV) {
        butler_error_set(error, error_size, "cannot move: %s", strerror(errno));
        status = BUTLER_ERR_IO;
        goto out;
    }
    /* Another file system: copy (through a temporary name), then remove. */
    if (!S_ISREG(source_stat.st_mode)) {
        butler_error_set(error, error_size,
                         "only regular files can be moved to another file system (the source is a "
                         "directory or a symbolic link)");
        status = BUTLER_ERR_INVALID;
        goto out;
    }
    fds[SOURCE] = openat(fds[SOURCE_DIRECTORY], source_name,
                         O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    struct stat opened;
    if (fds[SOURCE] < 0 || fstat(fds[SOURCE], &opened) != 0 ||
        opened.st_ino != source_stat.st_ino || !S_ISREG(opened.st_mode)) {
        butler_error_set(error, error_size, "the source changed while it was being moved");
        status = BUTLER_ERR_IO;
        goto out;
    }
    fcntl(fds[SOURCE], F_SETFL, fcntl(fds[SOURCE], F_GETFL) & ~O_NONBLOCK);
    struct file_copy_options copy_options = *options;
    copy_options.preserve_timestamp = true; /* a move keeps the file as it was */
    status = file_copy_into(fds[SOURCE], &opened, fds[TARGET_DIRECTORY], target_name, &copy_options,
                            error, error_size);
    if (status == BUTLER_OK && unlinkat(fds[SOURCE_DIRECTORY], source_name, 0) != 0) {
        butler_error_set(error, error_size, "copied, but the source cannot be removed: %s",
                         strerror(errno));
        status = BUTLER_ERR_IO;
    }
out:
    close_all(fds, FD_COUNT);
    return status;
}

enum butler_status file_delete(const struct file_place *place, char *error, size_t error_size)
{
    int root_fd = -1, directory_fd = -1;
    char directory[FILE_PATH_MAX + 1];
    const char *name = NULL;
    struct stat entry;
    enum butler_status status = open_parent(place, "file", false, &root_fd, &directory_fd,
                                            directory, &name, error, error_size);
    if (status != BUTLER_OK)
        goto out;
    if (fstatat(directory_fd, name, &entry, AT_SYMLINK_NOFOLLOW) != 0) {
        status = errno == ENOENT ? BUTLER_ERR_NOT_FOUND : BUTLER_ERR_IO;
        butler_error_set(error, error_size, "the file does not exist");
        goto out;
    }
    if (S_ISDIR(entry.st_mode)) {
        butler_error_set(error, error_size, "the path is a directory; only files are deleted");
        status = BUTLER_ERR_INVALID;
        goto out;
    }
    if (unlinkat(directory_fd, name, 0) != 0) {
        status = errno == ENOENT ? BUTLER_ERR_NOT_FOUND : BUTLER_ERR_IO;
        butler_error_set(error, error_size, "cannot delete: %s", strerror(errno));
        goto out;
    }
    status = BUTLER_OK;
out:
    if (directory_fd >= 0)
        close(directory_fd);
    if (root_fd >= 0)
        close(root_fd);
    return status;
}

enum butler_status file_mkdir(const struct file_place *place, char *error, size_t error_size)
{
    enum butler_status status = BUTLER_ERR_IO;
    int directory_fd = -1;
    int root_fd = file_open_root(place->root, error, error_size, &status);
    if (root_fd < 0)
        return status;
    status = file_open_directory(root_fd, place->relative, true, &directory_fd, "new", error,
                                 error_size);
    if (status == BUTLER_ERR_INVALID)
        butler_error_set(error, error_size, "a part of the path exists and is not a directory");
    if (directory_fd >= 0)
        close(directory_fd);
    close(root_fd);
    return status;
}

void file_remove_temporaries(const struct file_place *target, const char *temp_token)
{
    char directory[FILE_PATH_MAX + 1], token[TEMP_TOKEN_MAX + 1];
    const char *name = NULL;
    int root_fd, directory_fd;
    clean_token(temp_token, token);
    if (open_parent(target, "target", false, &root_fd, &directory_fd, directory, &name, NULL, 0) ==
        BUTLER_OK)
        file_remove_stale_temporaries(directory_fd, token);
    int fds[] = {root_fd, directory_fd};
    close_all(fds, 2);
}

bool file_exists(const struct file_place *place)
{
    char directory[FILE_PATH_MAX + 1];
    const char *name = NULL;
    int root_fd, directory_fd;
    struct stat entry;
    bool exists = open_parent(place, "path", false, &root_fd, &directory_fd, directory, &name, NULL,
                              0) == BUTLER_OK &&
                  fstatat(directory_fd, name, &entry, AT_SYMLINK_NOFOLLOW) == 0;
    int fds[] = {root_fd, directory_fd};
    close_all(fds, 2);
    return exists;
}
