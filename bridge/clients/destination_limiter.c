/* Per-destination holds from Retry-After; see destination_limiter.h. */
#include "bridge/clients/destination_limiter.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "bridge/core/clock.h"

enum { WAIT_SLICE_MS = 100 };

struct hold {
    char key[DESTINATION_KEY_MAX];
    uint64_t until_ms; /* monotonic; 0 = free slot */
};

static struct hold holds[DESTINATION_LIMITER_MAX];
static pthread_mutex_t holds_mutex = PTHREAD_MUTEX_INITIALIZER;

static void destination_key(const char *url, char *key)
{
    size_t n = strcspn(url, "?#");
    if (n >= DESTINATION_KEY_MAX)
        n = DESTINATION_KEY_MAX - 1;
    memcpy(key, url, n);
    key[n] = '\0';
}

long destination_retry_after_s(const char *value, int64_t now_wall_s)
{
    while (*value == ' ' || *value == '\t')
        value++;
    if (*value >= '0' && *value <= '9') {
        char *end = NULL;
        long seconds = strtol(value, &end, 10);
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
            end++;
        return *end == '\0' && seconds >= 0 ? seconds : -1;
    }
    static const char months[][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    char weekday[4] = "", month[4] = "", zone[4] = "";
    int day, year, hour, minute, second;
    if (sscanf(value, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d %3[A-Z]", weekday, &day, month,
               &year, &hour, &minute, &second, zone) != 8 ||
        strcmp(zone, "GMT") != 0)
        return -1;
    struct tm tm = {0};
    tm.tm_mon = -1;
    for (int i = 0; i < 12; i++)
        if (strcasecmp(month, months[i]) == 0)
            tm.tm_mon = i;
    if (tm.tm_mon < 0 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
        return -1;
    tm.tm_mday = day;
    tm.tm_year = year - 1900;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    int64_t at = (int64_t)timegm(&tm);
    return at <= now_wall_s ? 0 : (long)(at - now_wall_s);
}

void destination_hold(const char *url, long seconds)
{
    char key[DESTINATION_KEY_MAX];
    if (seconds <= 0)
        return;
    if (seconds > DESTINATION_HOLD_MAX_S)
        seconds = DESTINATION_HOLD_MAX_S;
    destination_key(url, key);
    uint64_t now = clock_monotonic_ms();
    uint64_t until = now + (uint64_t)seconds * 1000u;
    pthread_mutex_lock(&holds_mutex);
    struct hold *slot = NULL, *soonest = &holds[0];
    for (size_t i = 0; i < DESTINATION_LIMITER_MAX && slot == NULL; i++) {
        if (holds[i].until_ms > now && strcmp(holds[i].key, key) == 0)
            slot = &holds[i];
        else if (holds[i].until_ms < soonest->until_ms)
            soonest = &holds[i]; /* free and expired slots have the smallest */
    }
    if (slot == NULL) {
        slot = soonest;
        memcpy(slot->key, key, sizeof key);
        slot->until_ms = 0;
    }
    if (until > slot->until_ms)
        slot->until_ms = until;
    pthread_mutex_unlock(&holds_mutex);
}

/* Milliseconds `key` stays held, 0 when free. */
static uint64_t held_for(const char *key, uint64_t now)
{
    uint64_t left = 0;
    pthread_mutex_lock(&holds_mutex);
    for (size_t i = 0; i < DESTINATION_LIMITER_MAX; i++)
        if (holds[i].until_ms > now && strcmp(holds[i].key, key) == 0)
            left = holds[i].until_ms - now;
    pthread_mutex_unlock(&holds_mutex);
    return left;
}

uint64_t destination_wait(const char *url, bool (*should_stop)(void))
{
    char key[DESTINATION_KEY_MAX];
    destination_key(url, key);
    uint64_t started = clock_monotonic_ms(), now = started, left;
    while ((left = held_for(key, now)) > 0 && !(should_stop && should_stop())) {
        clock_sleep_ms(left < WAIT_SLICE_MS ? left : WAIT_SLICE_MS);
        now = clock_monotonic_ms();
    }
    return now - started;
}
