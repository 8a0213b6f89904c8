#include "bridge/core/status.h"

#include <stdarg.h>
#include <stdio.h>

const char *butler_status_str(enum butler_status status)
{
    switch (status) {
    case BUTLER_OK:
        return "ok";
    case BUTLER_ERR_NOMEM:
        return "out of memory";
    case BUTLER_ERR_INVALID:
        return "invalid input";
    case BUTLER_ERR_TOO_LARGE:
        return "too large";
    case BUTLER_ERR_FULL:
        return "queue full";
    case BUTLER_ERR_NOT_FOUND:
        return "not found";
    case BUTLER_ERR_DENIED:
        return "denied";
    case BUTLER_ERR_IO:
        return "i/o error";
    case BUTLER_ERR_TIMEOUT:
        return "timeout";
    case BUTLER_ERR_NOT_CONNECTED:
        return "broker not connected";
    case BUTLER_ERR_REMOTE:
        return "remote error";
    case BUTLER_ERR_RETRYABLE:
        return "temporary remote error";
    case BUTLER_ERR_SHUTDOWN:
        return "shutting down";
    case BUTLER_ERR_INTERNAL:
        return "internal error";
    case BUTLER_ERR_LIMIT:
        return "per-item limit reached";
    }
    return "unknown error";
}

void butler_error_set(char *error, size_t error_size, const char *format, ...)
{
    if (error == NULL || error_size == 0)
        return;
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(error, error_size, format, arguments);
    va_end(arguments);
}
