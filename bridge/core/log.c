#include "bridge/core/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bridge/core/clock.h"

enum { LOG_LINE_MAX = 2048, LOG_BURST = 5, LOG_INTERVAL_MS = 10000 };

static atomic_int log_threshold = LOG_LEVEL_INFO;
static atomic_bool log_json = false;
static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_setup(enum log_level level, bool json_format)
{
    atomic_store(&log_threshold, (int)level);
    atomic_store(&log_json, json_format);
}

bool log_enabled(enum log_level level)
{
    return (int)level <= atomic_load(&log_threshold);
}

/* Append `text` to `out` as the inside of a JSON string; stops at the cap. */
static size_t json_escape_into(char *out, size_t used, size_t cap, const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p && used + 7 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            out[used++] = '\\';
            out[used++] = (char)*p;
        } else if (*p < 0x20) {
            used += (size_t)snprintf(out + used, cap - used, "\\u%04x", *p);
        } else {
            out[used++] = (char)*p;
        }
    }
    out[used] = '\0';
    return used;
}

/*
 * "2026-01-31T12:34:56.789Z". The calendar part is formatted once per second
 * and per thread (gmtime_r + strftime cost more than the rest of a log line).
 */
static void format_timestamp(const struct timespec *now, char *out, size_t out_size)
{
    static _Thread_local time_t cached_second = -1;
    static _Thread_local char cached[32];
    if (now->tv_sec != cached_second) {
        struct tm utc;
        gmtime_r(&now->tv_sec, &utc);
        if (strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &utc) == 0)
            cached[0] = '\0';
        cached_second = now->tv_sec;
    }
    snprintf(out, out_size, "%s.%03ldZ", cached, now->tv_nsec / 1000000);
}

void log_write(enum log_level level, const char *module, const char *format, ...)
{
    if (!log_enabled(level))
        return;
    char message[LOG_LINE_MAX];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    /* Control characters from hostile input must not forge log lines. */
    for (char *p = message; *p; p++)
        if ((unsigned char)*p < 0x20 && *p != '\t')
            *p = '?';

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char timestamp[40];
    format_timestamp(&now, timestamp, sizeof timestamp);

    char line[LOG_LINE_MAX + 256];
    if (atomic_load(&log_json)) {
        size_t used =
            (size_t)snprintf(line, sizeof line, "{\"time\":\"%s\",\"level\":\"%s\",\"module\":\"",
                             timestamp, level_names[level]);
        used = json_escape_into(line, used, sizeof line, module);
        used += (size_t)snprintf(line + used, sizeof line - used, "\",\"message\":\"");
        used = json_escape_into(line, used, sizeof line - 3, message);
        snprintf(line + used, sizeof line - used, "\"}");
    } else {
        snprintf(line, sizeof line, "%s %-5s [%s] %s", timestamp, level_names[level], module,
                 message);
    }
    /* One write per line: stderr is unbuffered, so fputs + fputc cost two
     * system calls, and a line must reach a journal or pipe whole anyway. */
    size_t length = strnlen(line, sizeof line - 2);
    line[length++] = '\n';
    pthread_mutex_lock(&log_mutex);
    fwrite(line, 1, length, stderr);
    fflush(stderr);
    pthread_mutex_unlock(&log_mutex);
}

bool log_rate_limit_allow(struct log_rate_limit *limit, uint32_t *suppressed_out)
{
    uint64_t now = clock_monotonic_ms();
    uint64_t start = atomic_load(&limit->window_start_ms);
    *suppressed_out = 0;
    if (start == 0 || now - start >= LOG_INTERVAL_MS) {
        /* One thread wins the new window; the others fall through to counting. */
        if (atomic_compare_exchange_strong(&limit->window_start_ms, &start, now)) {
            *suppressed_out = (uint32_t)atomic_exchange(&limit->suppressed, 0);
            atomic_store(&limit->emitted, 1);
            return true;
        }
    }
    if (atomic_fetch_add(&limit->emitted, 1) < LOG_BURST)
        return true;
    atomic_fetch_add(&limit->suppressed, 1);
    return false;
}

/* The last '@' among the first `length` bytes (userinfo ends there), or NULL. */
static const char *last_at(const char *text, size_t length)
{
    while (length > 0)
        if (text[--length] == '@')
            return text + length;
    return NULL;
}

void log_redact_url(const char *url, char *out, size_t out_size)
{
    if (out_size == 0)
        return;
    if (url == NULL || url[0] == '\0') {
        snprintf(out, out_size, "(none)");
        return;
    }
    const char *scheme_end = strstr(url, "://");
    const char *host = scheme_end ? scheme_end + 3 : url;
    /* A query or fragment may follow the host directly ("https://h?token="). */
    const char *path = strpbrk(host, "/?#");
    size_t host_length = path ? (size_t)(path - host) : strlen(host);
    const char *at = last_at(host, host_length);
    if (at) {
        host_length -= (size_t)(at + 1 - host);
        host = at + 1;
    }
    int scheme_length = scheme_end ? (int)(scheme_end - url) : 0;
    snprintf(out, out_size, "%.*s%s%.*s%s", scheme_length, url, scheme_end ? "://" : "",
             (int)host_length, host, path ? "/xxx" : "");
}

void log_mask_url(const char *url, char *out, size_t out_size)
{
    if (out_size == 0)
        return;
    if (url == NULL) {
        out[0] = '\0';
        return;
    }
    const char *scheme_end = strstr(url, "://");
    const char *host = scheme_end ? scheme_end + 3 : url;
    size_t authority_length = strcspn(host, "/?#");
    const char *at = last_at(host, authority_length);
    const char *rest = at ? at + 1 : host; /* host[:port][/path][?query] */
    size_t kept = strcspn(rest, "?#");
    snprintf(out, out_size, "%.*s%s%.*s%s", (int)(host - url), url, at ? "***@" : "", (int)kept,
             rest, rest[kept] ? "?***" : "");
}
