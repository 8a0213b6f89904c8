/*
 * One error enum for every fallible function between modules. A function that
 * can fail returns an enum butler_status; errno never crosses a module boundary.
 */
#ifndef BUTLER_STATUS_H
#define BUTLER_STATUS_H

#include <stddef.h>

enum butler_status {
    BUTLER_OK = 0,
    BUTLER_ERR_NOMEM,         /* allocation failed */
    BUTLER_ERR_INVALID,       /* input rejected: malformed, out of range */
    BUTLER_ERR_TOO_LARGE,     /* input or buffer over its hard maximum */
    BUTLER_ERR_FULL,          /* a bounded queue or store is full: refused, not grown */
    BUTLER_ERR_NOT_FOUND,     /* the thing asked for does not exist */
    BUTLER_ERR_DENIED,        /* refused by policy (allow-list, token) */
    BUTLER_ERR_IO,            /* file or socket error */
    BUTLER_ERR_TIMEOUT,       /* a deadline passed */
    BUTLER_ERR_NOT_CONNECTED, /* the broker link is down */
    BUTLER_ERR_REMOTE,        /* a remote peer answered with an error */
    BUTLER_ERR_RETRYABLE,     /* a remote failure worth retrying (5xx, 429, reset) */
    BUTLER_ERR_SHUTDOWN,      /* the daemon is stopping */
    BUTLER_ERR_INTERNAL,      /* a library call failed unexpectedly */
    BUTLER_ERR_LIMIT,         /* a per-item hard cap reached (SPOOL_NOTES_MAX): final, unlike
                               * BUTLER_ERR_FULL, since waiting frees nothing for that item */
};

/* Static string for logs and error messages; never NULL, never freed. */
const char *butler_status_str(enum butler_status status);

/* Write a formatted reason into a caller's `error` buffer of `error_size`
 * bytes (truncated to fit; nothing when `error` is NULL or the size is 0). */
void butler_error_set(char *error, size_t error_size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

#endif
