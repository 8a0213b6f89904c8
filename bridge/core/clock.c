#include "bridge/core/clock.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

uint64_t clock_monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
}

uint64_t clock_wall_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
}

void clock_format_iso8601(uint64_t wall_ms, char *out, size_t out_size)
{
    time_t seconds = (time_t)(wall_ms / 1000u);
    struct tm utc;
    gmtime_r(&seconds, &utc);
    snprintf(out, out_size, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", utc.tm_year + 1900,
             utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
             (unsigned)(wall_ms % 1000u));
}

void clock_sleep_ms(uint64_t ms)
{
    struct timespec delay = {.tv_sec = (time_t)(ms / 1000u),
                             .tv_nsec = (long)(ms % 1000u) * 1000000L};
    nanosleep(&delay, NULL);
}

void clock_deadline_after(clockid_t clock_id, uint64_t ms, struct timespec *deadline)
{
    clock_gettime(clock_id, deadline);
    deadline->tv_sec += (time_t)(ms / 1000u);
    deadline->tv_nsec += (long)(ms % 1000u) * 1000000L;
    if (deadline->tv_nsec >= 1000000000L) {
        deadline->tv_sec++;
        deadline->tv_nsec -= 1000000000L;
    }
}

bool clock_parse_iso8601(const char *text, uint64_t *wall_ms)
{
    int year, month, day, hour, minute, second, consumed = 0;
    unsigned millis = 0;
    if (text == NULL || sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d%n", &year, &month, &day, &hour,
                               &minute, &second, &consumed) != 6)
        return false;
    const char *rest = text + consumed;
    if (*rest == '.') {
        int digits = 0;
        for (rest++; *rest >= '0' && *rest <= '9'; rest++, digits++)
            if (digits < 3)
                millis = millis * 10 + (unsigned)(*rest - '0');
        while (digits > 0 && digits < 3) {
            millis *= 10;
            digits++;
        }
    }
    if (strcmp(rest, "Z") != 0 || year < 1970 || month < 1 || month > 12 || day < 1 || day > 31 ||
        hour > 23 || minute > 59 || second > 60)
        return false;
    struct tm tm = {.tm_year = year - 1900,
                    .tm_mon = month - 1,
                    .tm_mday = day,
                    .tm_hour = hour,
                    .tm_min = minute,
                    .tm_sec = second};
    time_t seconds = timegm(&tm); /* UTC: touches no time zone state */
    if (seconds < 0)
        return false;
    *wall_ms = (uint64_t)seconds * 1000u + millis;
    return true;
}
