/*
 * File operations confined to approved directory trees (contract 8.1).
 *
 * Every path from a request goes through three gates before anything on
 * disk is touched:
 *   1. file_path_check(): the text itself (NUL bytes, length, control
 *      characters, Windows drive and UNC paths, backslashes, relative paths);
 *   2. file_path_normalize() + file_path_beneath(): lexically, after
 *      collapsing "." and ".." and repeated slashes, the path must lie beneath
 *      an approved root (the caller picks the root from its configuration);
 *   3. the remaining relative path is opened beneath an fd of that root with
 *      openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), so a symlink inside the
 *      tree that points out of it (or is swapped in while we work) is refused
 *      by the kernel. Without openat2 (Linux < 5.6) the path is walked one
 *      component at a time with openat(O_NOFOLLOW) from the root fd, which
 *      cannot be raced either; symlinks are then not followed at all.
 *
 * A copy is written to a temporary name in the target directory
 * (FILE_TEMP_PREFIX...) and renamed into place, so the target name never
 * holds half a file. Data moves with copy_file_range() (sendfile() where that
 * is not supported), holes in sparse files stay holes, and no user-space
 * buffer is used: memory does not grow with the file size.
 *
 * Errors: BUTLER_ERR_INVALID (bad path, target exists without overwrite, not
 * a regular file), BUTLER_ERR_DENIED (outside the approved tree),
 * BUTLER_ERR_NOT_FOUND (source missing), BUTLER_ERR_IO (the file system
 * failed), each with a human-readable reason in `error`.
 *
 * Threads: every function is reentrant; the openat2 probe is done once.
 */
#ifndef BUTLER_FILE_SYSTEM_H
#define BUTLER_FILE_SYSTEM_H

#include <stdbool.h>
#include <stddef.h>

#include "bridge/core/status.h"

enum {
    FILE_PATH_MAX = 4095, /* bytes, as Linux PATH_MAX less the NUL */
    FILE_NAME_MAX = 255,  /* one path component */
    FILE_ERROR_MAX = 256, /* size of the error buffers below */
};

/* Temporary copies are named FILE_TEMP_PREFIX<token>-<random>.tmp. */
#define FILE_TEMP_PREFIX ".butler-tmp-"

/* Gate 1. `absolute`: the path must start with '/'; otherwise it must not
 * (createdirqvd's directory is relative to file.qvd_path). `length` is the
 * byte length of `path` as received, so an embedded NUL is seen. */
enum butler_status file_path_check(const char *path, size_t length, bool absolute, char *error,
                                   size_t error_size);

/* Gate 2, part one: collapse "//", "." and ".." of an absolute path into
 * `out` (no trailing slash except for "/" itself). BUTLER_ERR_DENIED when
 * ".." would climb above "/", BUTLER_ERR_TOO_LARGE when out is too small. */
enum butler_status file_path_normalize(const char *path, char *out, size_t out_size);

/* Gate 2, part two: is normalized `path` equal to or beneath normalized
 * `root`, compared component by component ("/data/stage2" is not beneath
 * "/data/stage")? *rest points into path after the root and its slash
 * ("" for the root itself). */
bool file_path_beneath(const char *root, const char *path, const char **rest);

/* An operation's resolved paths: `root` is an approved directory (normalized,
 * absolute), `relative` the rest of the request path beneath it. */
struct file_place {
    const char *root;
    const char *relative;
};

struct file_copy_options {
    bool overwrite;          /* replace an existing target */
    bool preserve_timestamp; /* target gets the source's atime and mtime */
    /* Per-request token in the temporary name (see file_remove_temporaries). */
    const char *temp_token;
    /* Directory copies (file_copy of a directory); 0 = directories are refused. */
    long max_entries;    /* files and directories in the source tree, hard cap */
    long long max_bytes; /* bytes of the files in the source tree, hard cap */
    /* A replay of a directory copy: a target file that exists is kept, not an error (a
     * copy lands whole or not at all, so it is the crashed run's own copy). */
    bool keep_existing;
};

enum {
    FILE_TREE_DEPTH_MAX = 64, /* directory levels beneath a copied directory */
};

/*
 * Copy a regular file; missing directories beneath the target root are
 * created.
 *
 * A directory is copied recursively when options->max_entries > 0 (BUTLER_ERR_INVALID
 * otherwise), as the Node.js Butler does: the target directory is created or, when it
 * exists, merged into. Every entry goes through gate 3 beneath its approved root, exactly
 * as a single file does: a symbolic link is followed only while it stays beneath the source
 * root and only to a regular file (one leading out: BUTLER_ERR_DENIED; to a directory,
 * FIFO or device: BUTLER_ERR_INVALID), and each file lands atomically (temporary name,
 * then rename). A first pass checks the whole tree before anything is written: entries
 * beyond max_entries, bytes beyond max_bytes or levels beyond FILE_TREE_DEPTH_MAX are
 * BUTLER_ERR_TOO_LARGE, an existing target file without overwrite (and without
 * keep_existing) BUTLER_ERR_INVALID, a target inside the source BUTLER_ERR_INVALID; so a
 * refused copy writes nothing. The second pass copies, and stops at the first failure
 * (the files copied until then stay, each whole).
 */
enum butler_status file_copy(const struct file_place *source, const struct file_place *target,
                             const struct file_copy_options *options, char *error,
                             size_t error_size);

/* Move a file or directory (rename; across file systems a regular file is
 * copied as file_copy does, keeping its timestamps, and the source removed).
 * Missing target directories are created. Of `options`, preserve_timestamp
 * is ignored (always kept). */
enum butler_status file_move(const struct file_place *source, const struct file_place *target,
                             const struct file_copy_options *options, char *error,
                             size_t error_size);

/* Delete a file (or a symlink itself, never what it points to). Directories
 * are refused. */
enum butler_status file_delete(const struct file_place *place, char *error, size_t error_size);

/* Create `relative` and every missing parent beneath root; an existing
 * directory is fine. */
enum butler_status file_mkdir(const struct file_place *place, char *error, size_t error_size);

/* Remove temporary files of `temp_token` that a crash left in the directory
 * of `target` (a replay calls this, then re-runs into a fresh temporary
 * name). A missing directory is fine. */
void file_remove_temporaries(const struct file_place *target, const char *temp_token);

/* Does the entry exist (not following a final symlink)? Resolution beneath
 * the root as above; false on any error. */
bool file_exists(const struct file_place *place);

/* Tests: force the component walk even when openat2 is there. */
void file_system_force_walk(bool force);
/* Whether openat2 is used (probed once). */
bool file_system_has_openat2(void);

#endif
