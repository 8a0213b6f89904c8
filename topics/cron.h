/*
 * Cron expressions and IANA time zones, without the C library's global TZ
 * state.
 *
 * Expressions: 5 fields (minute hour day-of-month month day-of-week) or 6
 * (a leading seconds field), each a '*', '?', a value, a range a-b, a step
 * (*\/n, a-b/n, a/n) or a comma list of those; month names JAN..DEC and day
 * names SUN..SAT (case-insensitive); day-of-week 7 is Sunday. Shortcuts
 * @yearly @annually @monthly @weekly @daily @midnight @hourly. When both
 * day fields are restricted a day matches if EITHER matches (Vixie cron's OR
 * rule); a field "restricted" means it does not start with '*' or '?'.
 *
 * Time zones are read from the system's TZif files (/usr/share/zoneinfo)
 * into a struct cron_zone, including the POSIX TZ rule in the file's footer
 * for instants past the last listed transition. No setenv("TZ")/tzset() and
 * no localtime(): those share process-wide state that other threads (libcurl,
 * libmosquitto, logging) read, so computing here is thread-safe and pure
 * once the zone is loaded.
 *
 * DST: the next firing is the first instant whose local wall-clock time
 * matches. Local times skipped by a spring-forward transition do not fire
 * that day. Local times repeated by a fall-back transition fire once (at
 * their first occurrence), unless the hour field is '*': then they fire in
 * both passes, so "every N minutes/seconds" keeps its rhythm in real time.
 */
#ifndef BUTLER_CRON_H
#define BUTLER_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/status.h"

enum {
    CRON_TEXT_MAX = 256,     /* longest expression accepted */
    CRON_ZONE_NAME_MAX = 64, /* longest IANA zone name accepted */
    CRON_ZONE_TRANSITIONS_MAX = 2048,
    CRON_ZONE_TYPES_MAX = 64,
};

struct cron_expr {
    uint64_t seconds; /* bit n = second n */
    uint64_t minutes;
    uint32_t hours;
    uint32_t days;    /* bits 1..31 */
    uint16_t months;  /* bits 1..12 */
    uint8_t weekdays; /* bits 0..6, 0 = Sunday */
    bool days_star;
    bool weekdays_star;
    bool hours_star;
    bool has_seconds;
};

/* A POSIX TZ rule ("CET-1CEST,M3.5.0,M10.5.0/3"): offsets in seconds east
 * of UTC; a rule without DST has has_dst false. */
struct cron_tz_rule_date {
    char kind; /* 'M' month.week.day, 'J' Julian 1..365 (no Feb 29), 'N' 0..365 */
    int month, week, day, yday;
    int32_t time_s; /* local time of the change, may be negative or > 24 h */
};

struct cron_tz_rule {
    int32_t std_offset;
    int32_t dst_offset;
    bool has_dst;
    struct cron_tz_rule_date start, end;
};

struct cron_zone {
    char name[CRON_ZONE_NAME_MAX + 1];
    size_t transition_count;
    int64_t transitions[CRON_ZONE_TRANSITIONS_MAX]; /* UTC seconds, ascending */
    uint8_t transition_types[CRON_ZONE_TRANSITIONS_MAX];
    size_t type_count;
    int32_t type_offsets[CRON_ZONE_TYPES_MAX];
    int32_t initial_offset; /* before the first transition */
    bool has_rule;
    struct cron_tz_rule rule; /* after the last transition */
};

/*
 * Parse `text` into *expr. On BUTLER_ERR_INVALID (or TOO_LARGE for text over
 * CRON_TEXT_MAX) `error` says what is wrong and where, e.g.
 * "field 2 (hour): 24 is out of range 0-23". Pure, any thread.
 */
enum butler_status cron_parse(const char *text, struct cron_expr *expr, char *error,
                              size_t error_size);

/* Parse a POSIX TZ string. Pure, any thread. */
enum butler_status cron_tz_rule_parse(const char *text, struct cron_tz_rule *rule);

/*
 * Load the IANA zone `name` ("Europe/Stockholm", "UTC") from `zoneinfo_dir`
 * (NULL = /usr/share/zoneinfo). Names with "..", a leading '/', or characters
 * outside [A-Za-z0-9_+-/] are refused (BUTLER_ERR_INVALID) before any file is
 * opened; a missing zone is BUTLER_ERR_NOT_FOUND. "UTC", "Etc/UTC", "GMT" and
 * "Z" work without a file. The zone is ~20 KB: callers allocate it. Reads a
 * file: call from the scheduler or a request thread, never the network thread.
 */
enum butler_status cron_zone_load(const char *name, const char *zoneinfo_dir,
                                  struct cron_zone *zone);

/* Offset east of UTC in seconds at UTC instant `t`. Pure. */
int32_t cron_zone_offset(const struct cron_zone *zone, int64_t t);

/*
 * The first UTC instant (seconds) strictly after `after` whose local time in
 * `zone` matches `expr`, searching at most ~30 years ahead (BUTLER_ERR_NOT_FOUND
 * beyond: e.g. "0 0 31 2 *"). Pure, any thread.
 */
enum butler_status cron_next(const struct cron_expr *expr, const struct cron_zone *zone,
                             int64_t after, int64_t *next);

/*
 * A schedule's next firing when its timing is (re)compiled at wall second `now`: the first
 * slot that is at or after `now`, strictly after the second in which the timing was set
 * (`set_ms`, wall milliseconds: creation, a changed expression or zone, a start; 0 when not
 * known, e.g. restored from the broker) and strictly after `last_run_s` (the last firing
 * handled, 0 = none). A slot is a whole second, so a schedule created at 04.497 first fires
 * for 05.000 or later, never for 04.000, a second that began before it existed. Pure.
 */
enum butler_status cron_first_firing(const struct cron_expr *expr, const struct cron_zone *zone,
                                     uint64_t set_ms, int64_t last_run_s, int64_t now,
                                     int64_t *next);

/*
 * Firings strictly between `after` and `before` (UTC seconds): up to
 * `list_max` of them into `times` (may be NULL with list_max 0), the total in
 * *count, counting at most `count_max` (the search stops there). Pure.
 */
void cron_firings_between(const struct cron_expr *expr, const struct cron_zone *zone, int64_t after,
                          int64_t before, int64_t *times, size_t list_max, size_t count_max,
                          size_t *count);

/* Local broken-down time of `t` in `zone` (no libc time zone state). */
struct cron_local_time {
    int year, month, day, hour, minute, second, weekday;
    int32_t offset;
};
void cron_local(const struct cron_zone *zone, int64_t t, struct cron_local_time *out);

#endif
