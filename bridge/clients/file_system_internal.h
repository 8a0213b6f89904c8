/*
 * Shared between bridge/clients/file_system.c and file_tree_copy.c only: the gate-3 openers
 * and the one-file copy, so that a directory copy checks every entry exactly as a file copy
 * checks its one file. Not for other modules: they use file_system.h.
 *
 * Descriptors returned are the caller's to close. Threads: reentrant, as file_system.h.
 */
#ifndef BUTLER_FILE_SYSTEM_INTERNAL_H
#define BUTLER_FILE_SYSTEM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "bridge/clients/file_system.h"
#include "bridge/core/status.h"

/* errno of a failed lookup as a status (EXDEV/ELOOP: an escape, BUTLER_ERR_DENIED). */
enum butler_status file_lookup_status(int error_number);

/* Open normalized `relative` beneath root_fd (openat2 RESOLVE_BENEATH, or the O_NOFOLLOW
 * component walk); -1 with errno on failure. */
int file_open_beneath(int root_fd, const char *relative, int flags);

/* An O_PATH fd of approved directory `root`; -1 with *status and `error` set. */
int file_open_root(const char *root, char *error, size_t error_size, enum butler_status *status);

/* Directory `relative` beneath root_fd as an O_PATH fd into *out, creating missing
 * components when `create`; `role` ("source", "target") names it in errors. */
enum butler_status file_open_directory(int root_fd, const char *relative, bool create, int *out,
                                       const char *role, char *error, size_t error_size);

/* Copy open regular file src into directory_fd/name through a temporary file renamed into
 * place (options->overwrite decides whether an existing name is replaced). */
enum butler_status file_copy_into(int src, const struct stat *source_stat, int directory_fd,
                                  const char *name, const struct file_copy_options *options,
                                  char *error, size_t error_size);

/* Remove the temporary files of `token` that a crash left in directory_fd. */
void file_remove_stale_temporaries(int directory_fd, const char *token);

/*
 * The directory branch of file_copy: source_fd is the opened source directory beneath
 * from_root_fd. See file_copy in file_system.h for the rules. Implemented in
 * file_tree_copy.c.
 */
enum butler_status file_tree_copy(int from_root_fd, const struct file_place *source,
                                  const struct file_place *target,
                                  const struct file_copy_options *options, char *error,
                                  size_t error_size);

#endif
