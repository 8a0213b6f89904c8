/*
 * Levelled logging with a module tag, to stderr, as text or one JSON object a
 * line. Thread-safe. Secrets never go through here: callers log names, never
 * passwords, tokens, keys or webhook URLs (use log_redact_url for URLs).
 *
 * LOG_RATELIMITED() gives each call site its own budget (burst per interval)
 * so a flood of bad input produces a few lines and a count, not a flood.
 */
#ifndef BUTLER_LOG_H
#define BUTLER_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN = 1,
    LOG_LEVEL_INFO = 2,
    LOG_LEVEL_DEBUG = 3,
};

void log_setup(enum log_level level, bool json_format);
bool log_enabled(enum log_level level);

void log_write(enum log_level level, const char *module, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Per-call-site budget for LOG_RATELIMITED. Zero-initialised is valid. */
struct log_rate_limit {
    atomic_uint_fast64_t window_start_ms;
    atomic_uint_fast32_t emitted;
    atomic_uint_fast32_t suppressed;
};

/* True when the call site may log now; when it returns true after a period of
 * suppression, *suppressed_out holds how many lines were dropped meanwhile. */
bool log_rate_limit_allow(struct log_rate_limit *limit, uint32_t *suppressed_out);

#define LOG_RATELIMITED(level, module, ...)                                                        \
    do {                                                                                           \
        static struct log_rate_limit log_site_limit_;                                              \
        uint32_t log_suppressed_;                                                                  \
        if (log_enabled(level) && log_rate_limit_allow(&log_site_limit_, &log_suppressed_)) {      \
            if (log_suppressed_ > 0)                                                               \
                log_write(level, module, "(%u similar messages suppressed)",                       \
                          (unsigned)log_suppressed_);                                              \
            log_write(level, module, __VA_ARGS__);                                                 \
        }                                                                                          \
    } while (0)

#define LOG_ERROR(module, ...) log_write(LOG_LEVEL_ERROR, module, __VA_ARGS__)
#define LOG_WARN(module, ...) log_write(LOG_LEVEL_WARN, module, __VA_ARGS__)
#define LOG_INFO(module, ...) log_write(LOG_LEVEL_INFO, module, __VA_ARGS__)
#define LOG_DEBUG(module, ...)                                                                     \
    do {                                                                                           \
        if (log_enabled(LOG_LEVEL_DEBUG))                                                          \
            log_write(LOG_LEVEL_DEBUG, module, __VA_ARGS__);                                       \
    } while (0)

/* Copy `url` into `out` with everything after the host replaced by "/xxx" and
 * any user:password@ removed, so a webhook URL can be named in a log line
 * without leaking its secret path. Always NUL-terminates (out_size > 0). */
void log_redact_url(const char *url, char *out, size_t out_size);

/* Copy `url` into `out` with its user:password@ replaced by "***@" and any
 * query or fragment by "?***", keeping scheme, host, port and path: for a URL
 * whose path is not a secret (qrs.url, smtp.url, engine.url) in a log line or
 * --check-config. Always NUL-terminates (out_size > 0). */
void log_mask_url(const char *url, char *out, size_t out_size);

#endif
