/*
 * Cron expressions and TZif time zones (see cron.h). Everything here is pure
 * except cron_zone_load(), which reads one file.
 */
#include "topics/cron.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    SECONDS_PER_DAY = 86400,
    ZONE_FILE_MAX = 256 * 1024,
    /* Searching further than this many days finds nothing a user meant. */
    SEARCH_DAYS_MAX = 366 * 30,
    /* Offset periods crossed in one cron_next call (two DST changes a year). */
    SEARCH_PERIODS_MAX = 200,
};

/* ---- civil calendar (proleptic Gregorian, H. Hinnant's algorithms) ---- */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    const int64_t era = floor_div(y, 400);
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *year, int *month, int *day)
{
    z += 719468;
    const int64_t era = floor_div(z, 146097);
    const int64_t doe = z - era * 146097;
    const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const int64_t mp = (5 * doy + 2) / 153;
    *day = (int)(doy - (153 * mp + 2) / 5 + 1);
    *month = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = (int)(yoe + era * 400 + (*month <= 2));
}

/* 0 = Sunday */
static int weekday_from_days(int64_t z)
{
    int64_t w = (z + 4) % 7;
    return (int)(w < 0 ? w + 7 : w);
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int lengths[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : lengths[m - 1];
}

/* ---- expression parsing ---- */

struct field_spec {
    const char *name;
    int min, max;
    const char *const *names; /* names[i] stands for min_name + i */
    int min_name;
};

static const char *const month_names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL",
                                          "AUG", "SEP", "OCT", "NOV", "DEC", NULL};
static const char *const day_names[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", NULL};

static const struct field_spec field_specs[6] = {
    {"second", 0, 59, NULL, 0},       {"minute", 0, 59, NULL, 0},
    {"hour", 0, 23, NULL, 0},         {"day-of-month", 1, 31, NULL, 0},
    {"month", 1, 12, month_names, 1}, {"day-of-week", 0, 7, day_names, 0},
};

/* A number or (for month/day-of-week) a three-letter name at *at; advances
 * *at. False when neither is there. */
static bool parse_value(const char **at, const char *end, const struct field_spec *spec, int *value)
{
    const char *p = *at;
    if (p < end && isdigit((unsigned char)*p)) {
        long v = 0;
        while (p < end && isdigit((unsigned char)*p) && v < 1000)
            v = v * 10 + (*p++ - '0');
        if (p < end && isdigit((unsigned char)*p))
            return false; /* absurdly long number */
        *value = (int)v;
        *at = p;
        return true;
    }
    for (int i = 0; spec->names && spec->names[i]; i++) {
        if (end - p >= 3 && strncasecmp(p, spec->names[i], 3) == 0 &&
            (end - p == 3 || !isalpha((unsigned char)p[3]))) {
            *value = spec->min_name + i;
            *at = p + 3;
            return true;
        }
    }
    return false;
}

/* One comma-free item: '*', '?', a, a-b, with an optional /step. */
static enum butler_status parse_item(const char *p, const char *end, const struct field_spec *spec,
                                     uint64_t *bits, char *error, size_t error_size,
                                     int field_number)
{
    int low, high, step = 1;
    const int item_length = (int)(end - p);
    const char *item = p;
    if (p < end && (*p == '*' || *p == '?')) {
        low = spec->min;
        high = spec->max;
        p++;
        if (*item == '?' && p != end)
            goto bad;
    } else {
        if (!parse_value(&p, end, spec, &low))
            goto bad;
        high = low;
        if (p < end && *p == '-') {
            p++;
            if (!parse_value(&p, end, spec, &high))
                goto bad;
        }
    }
    if (p < end && *p == '/') {
        p++;
        const struct field_spec step_spec = {spec->name, 1, spec->max, NULL, 0};
        if (!parse_value(&p, end, &step_spec, &step) || step < 1) {
            snprintf(error, error_size, "field %d (%s): bad step in \"%.*s\"", field_number,
                     spec->name, item_length, item);
            return BUTLER_ERR_INVALID;
        }
        /* "a/n" means a, a+n, ... up to the field's maximum. */
        if (high == low && item[0] != '*' && memchr(item, '-', (size_t)item_length) == NULL)
            high = spec->max;
    }
    if (p != end)
        goto bad;
    if (low < spec->min || low > spec->max || high < spec->min || high > spec->max) {
        snprintf(error, error_size, "field %d (%s): %d is out of range %d-%d", field_number,
                 spec->name, low < spec->min || low > spec->max ? low : high, spec->min, spec->max);
        return BUTLER_ERR_INVALID;
    }
    if (low > high) {
        snprintf(error, error_size, "field %d (%s): range %d-%d runs backwards", field_number,
                 spec->name, low, high);
        return BUTLER_ERR_INVALID;
    }
    if (step > spec->max - spec->min + 1 && step > 1) {
        snprintf(error, error_size, "field %d (%s): step %d is larger than the field", field_number,
                 spec->name, step);
        return BUTLER_ERR_INVALID;
    }
    for (int v = low; v <= high; v += step)
        *bits |= (uint64_t)1 << v;
    return BUTLER_OK;
bad:
    snprintf(error, error_size, "field %d (%s): cannot read \"%.*s\"", field_number, spec->name,
             item_length, item);
    return BUTLER_ERR_INVALID;
}

static enum butler_status parse_field(const char *p, const char *end, const struct field_spec *spec,
                                      uint64_t *bits, char *error, size_t error_size,
                                      int field_number)
{
    *bits = 0;
    while (p <= end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item_end = comma ? comma : end;
        if (item_end == p) {
            snprintf(error, error_size, "field %d (%s): empty list item", field_number, spec->name);
            return BUTLER_ERR_INVALID;
        }
        enum butler_status status =
            parse_item(p, item_end, spec, bits, error, error_size, field_number);
        if (status != BUTLER_OK)
            return status;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return BUTLER_OK;
}

static const struct {
    const char *name;
    const char *expansion;
} shortcuts[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

/* True when some selected month has some selected day of the month. */
static bool days_possible(const struct cron_expr *expr)
{
    for (int m = 1; m <= 12; m++)
        if (expr->months & (1u << m))
            for (int d = 1; d <= days_in_month(2000, m); d++) /* 2000: Feb has 29 */
                if (expr->days & (1u << d))
                    return true;
    return false;
}

/*
 * Contract: cron.h. Splits on blanks, parses each field into a bit set and
 * rejects expressions that can never fire on day-of-month (Feb 30).
 */
enum butler_status cron_parse(const char *text, struct cron_expr *expr, char *error,
                              size_t error_size)
{
    enum butler_status status = BUTLER_ERR_INVALID;
    memset(expr, 0, sizeof *expr);
    if (text == NULL || text[0] == '\0') {
        snprintf(error, error_size, "empty cron expression");
        goto out;
    }
    if (strlen(text) > CRON_TEXT_MAX) {
        snprintf(error, error_size, "cron expression longer than %d characters", CRON_TEXT_MAX);
        status = BUTLER_ERR_TOO_LARGE;
        goto out;
    }
    while (*text == ' ' || *text == '\t')
        text++;
    if (text[0] == '@') {
        size_t length = strcspn(text, " \t");
        for (size_t i = 0; i < sizeof shortcuts / sizeof shortcuts[0]; i++)
            if (strlen(shortcuts[i].name) == length &&
                strncasecmp(text, shortcuts[i].name, length) == 0 &&
                text[length + strspn(text + length, " \t")] == '\0')
                return cron_parse(shortcuts[i].expansion, expr, error, error_size);
        snprintf(error, error_size,
                 "unknown shortcut \"%.*s\" (use @yearly, @monthly, @weekly, "
                 "@daily or @hourly)",
                 (int)(length > 32 ? 32 : length), text);
        goto out;
    }
    const char *starts[7], *ends[7];
    int count = 0;
    for (const char *p = text; *p;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        if (count == 6) {
            count++;
            break;
        }
        starts[count] = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        ends[count++] = p;
    }
    if (count != 5 && count != 6) {
        snprintf(error, error_size,
                 "expected 5 fields (minute hour day month weekday) or 6 (with seconds first), "
                 "got %s%d",
                 count > 6 ? "more than " : "", count > 6 ? 6 : count);
        goto out;
    }
    expr->has_seconds = count == 6;
    uint64_t bits[6] = {1, 0, 0, 0, 0, 0}; /* 5 fields: second 0 */
    for (int i = 0; i < count; i++) {
        const int field = count == 6 ? i : i + 1;
        status = parse_field(starts[i], ends[i], &field_specs[field], &bits[field], error,
                             error_size, i + 1);
        if (status != BUTLER_OK)
            goto out;
        const bool star = starts[i][0] == '*' || starts[i][0] == '?';
        if (field == 3)
            expr->days_star = star;
        if (field == 5)
            expr->weekdays_star = star;
        if (field == 2)
            expr->hours_star = ends[i] - starts[i] == 1 && star;
    }
    status = BUTLER_ERR_INVALID;
    if (bits[5] & (1u << 7)) /* 7 is Sunday too */
        bits[5] = (bits[5] | 1u) & 0x7f;
    expr->seconds = bits[0];
    expr->minutes = bits[1];
    expr->hours = (uint32_t)bits[2];
    expr->days = (uint32_t)bits[3];
    expr->months = (uint16_t)bits[4];
    expr->weekdays = (uint8_t)bits[5];
    /* With day-of-week '*' only day-of-month decides (no OR rule). */
    if (expr->weekdays_star && !days_possible(expr)) {
        snprintf(error, error_size,
                 "never fires: no selected day of the month exists in the selected months");
        goto out;
    }
    status = BUTLER_OK;
out:
    if (status != BUTLER_OK)
        memset(expr, 0, sizeof *expr);
    return status;
}

/* ---- matching in naive local time ---- */

/* Lowest set bit of `mask` at position >= from, or -1. */
static int next_bit(uint64_t mask, int from)
{
    if (from >= 64)
        return -1;
    mask &= ~(uint64_t)0 << from;
    return mask ? __builtin_ctzll(mask) : -1;
}

static bool day_matches(const struct cron_expr *expr, int64_t days)
{
    int year, month, day;
    civil_from_days(days, &year, &month, &day);
    if (!(expr->months & (1u << month)))
        return false;
    const bool dom = (expr->days >> day) & 1u;
    const bool dow = (expr->weekdays >> weekday_from_days(days)) & 1u;
    if (expr->days_star || expr->weekdays_star)
        return dom && dow;
    return dom || dow; /* both restricted: Vixie cron's OR rule */
}

/* First second of the day >= `from` (0..86399) that matches; -1 if none. */
static int time_of_day(const struct cron_expr *expr, int from)
{
    int h0 = from / 3600, m0 = (from / 60) % 60, s0 = from % 60;
    for (int h = next_bit(expr->hours, h0); h >= 0; h = next_bit(expr->hours, h + 1)) {
        int m_from = h == h0 ? m0 : 0;
        for (int m = next_bit(expr->minutes, m_from); m >= 0; m = next_bit(expr->minutes, m + 1)) {
            int s = next_bit(expr->seconds, h == h0 && m == m0 ? s0 : 0);
            if (s >= 0)
                return h * 3600 + m * 60 + s;
        }
    }
    return -1;
}

/* Smallest naive local time (seconds since 1970 on the wall clock) >= from
 * that matches; false if none within `max_days`. */
static bool naive_next(const struct cron_expr *expr, int64_t from, int64_t max_days, int64_t *out)
{
    int64_t days = floor_div(from, SECONDS_PER_DAY);
    int second = (int)(from - days * SECONDS_PER_DAY);
    const int64_t last_day = days + max_days;
    while (days <= last_day) {
        int year, month, day;
        civil_from_days(days, &year, &month, &day);
        if (!(expr->months & (1u << month))) {
            /* Jump to the first of the next month. */
            days =
                month == 12 ? days_from_civil(year + 1, 1, 1) : days_from_civil(year, month + 1, 1);
            second = 0;
            continue;
        }
        if (day_matches(expr, days)) {
            int t = time_of_day(expr, second);
            if (t >= 0) {
                *out = days * SECONDS_PER_DAY + t;
                return true;
            }
        }
        days++;
        second = 0;
    }
    return false;
}

/* ---- time zones ---- */

static int64_t rule_date_local(const struct cron_tz_rule_date *date, int64_t year)
{
    int64_t day;
    if (date->kind == 'M') {
        int64_t first = days_from_civil(year, date->month, 1);
        int wd = weekday_from_days(first);
        day = first + (date->day - wd + 7) % 7 + (int64_t)(date->week - 1) * 7;
        int64_t month_end = first + days_in_month(year, date->month);
        while (day >= month_end)
            day -= 7; /* week 5 = the last such weekday */
    } else if (date->kind == 'J') {
        day = days_from_civil(year, 1, 1) + date->yday - 1 +
              (is_leap(year) && date->yday >= 60 ? 1 : 0);
    } else {
        day = days_from_civil(year, 1, 1) + date->yday;
    }
    return day * SECONDS_PER_DAY + date->time_s;
}

/* The rule's two changes in `year` as UTC instants with the offset after each. */
static void rule_changes(const struct cron_tz_rule *rule, int64_t year, int64_t at[2],
                         int32_t after[2])
{
    at[0] = rule_date_local(&rule->start, year) - rule->std_offset; /* std -> dst */
    after[0] = rule->dst_offset;
    at[1] = rule_date_local(&rule->end, year) - rule->dst_offset; /* dst -> std */
    after[1] = rule->std_offset;
}

static int64_t utc_year(int64_t t)
{
    int year, month, day;
    civil_from_days(floor_div(t, SECONDS_PER_DAY), &year, &month, &day);
    return year;
}

/* Latest rule change <= t (its offset in *offset); INT64_MIN if none found. */
static int64_t rule_prev(const struct cron_tz_rule *rule, int64_t t, int32_t *offset)
{
    int64_t best = INT64_MIN;
    *offset = rule->std_offset;
    if (!rule->has_dst)
        return best;
    const int64_t year = utc_year(t);
    for (int64_t y = year - 1; y <= year + 1; y++) {
        int64_t at[2];
        int32_t after[2];
        rule_changes(rule, y, at, after);
        for (int i = 0; i < 2; i++)
            if (at[i] <= t && at[i] > best) {
                best = at[i];
                *offset = after[i];
            }
    }
    return best;
}

/* Earliest rule change > t; INT64_MAX if the rule has no DST. */
static int64_t rule_next(const struct cron_tz_rule *rule, int64_t t)
{
    int64_t best = INT64_MAX;
    if (!rule->has_dst)
        return best;
    const int64_t year = utc_year(t);
    for (int64_t y = year - 1; y <= year + 2; y++) {
        int64_t at[2];
        int32_t after[2];
        rule_changes(rule, y, at, after);
        for (int i = 0; i < 2; i++)
            if (at[i] > t && at[i] < best)
                best = at[i];
    }
    return best;
}

/* Index of the last listed transition <= t, or -1. */
static long listed_index(const struct cron_zone *zone, int64_t t)
{
    long low = 0, high = (long)zone->transition_count - 1, found = -1;
    while (low <= high) {
        long mid = low + (high - low) / 2;
        if (zone->transitions[mid] <= t) {
            found = mid;
            low = mid + 1;
        } else {
            high = mid - 1;
        }
    }
    return found;
}

int32_t cron_zone_offset(const struct cron_zone *zone, int64_t t)
{
    long i = listed_index(zone, t);
    if (zone->has_rule && (zone->transition_count == 0 || i == (long)zone->transition_count - 1)) {
        int32_t offset;
        rule_prev(&zone->rule, t, &offset);
        return offset;
    }
    if (i < 0)
        return zone->initial_offset;
    return zone->type_offsets[zone->transition_types[i]];
}

/* The period of constant offset containing t: [*start, *end). */
static void zone_period(const struct cron_zone *zone, int64_t t, int64_t *start, int64_t *end)
{
    long i = listed_index(zone, t);
    const bool past_list = zone->transition_count == 0 || i == (long)zone->transition_count - 1;
    if (past_list && zone->has_rule) {
        int32_t unused;
        int64_t prev = rule_prev(&zone->rule, t, &unused);
        int64_t listed = i >= 0 ? zone->transitions[i] : INT64_MIN;
        *start = prev > listed ? prev : listed;
        *end = rule_next(&zone->rule, t);
        return;
    }
    *start = i >= 0 ? zone->transitions[i] : INT64_MIN;
    *end = i + 1 < (long)zone->transition_count ? zone->transitions[i + 1] : INT64_MAX;
}

void cron_local(const struct cron_zone *zone, int64_t t, struct cron_local_time *out)
{
    out->offset = cron_zone_offset(zone, t);
    const int64_t local = t + out->offset;
    const int64_t days = floor_div(local, SECONDS_PER_DAY);
    const int64_t second = local - days * SECONDS_PER_DAY;
    civil_from_days(days, &out->year, &out->month, &out->day);
    out->hour = (int)(second / 3600);
    out->minute = (int)(second / 60 % 60);
    out->second = (int)(second % 60);
    out->weekday = weekday_from_days(days);
}

/*
 * Contract: cron.h. Walks the zone's periods of constant offset: within one
 * period local time is UTC plus a constant, so the naive search gives the
 * answer if it lands before the period ends; otherwise continue in the next
 * period. After a fall-back change the first (old - new offset) seconds of
 * the new period repeat local times: skipped unless the hour field is '*'.
 */
enum butler_status cron_next(const struct cron_expr *expr, const struct cron_zone *zone,
                             int64_t after, int64_t *next)
{
    if (expr->months == 0 || expr->hours == 0 || expr->minutes == 0 || expr->seconds == 0)
        return BUTLER_ERR_INVALID;
    int64_t s = after + 1;
    const int64_t horizon = s + (int64_t)SEARCH_DAYS_MAX * SECONDS_PER_DAY;
    for (int period = 0; period < SEARCH_PERIODS_MAX && s < horizon; period++) {
        int64_t start, end;
        zone_period(zone, s, &start, &end);
        const int32_t offset = cron_zone_offset(zone, s);
        int64_t repeated_until = INT64_MIN; /* naive end of repeated local times */
        if (start != INT64_MIN) {
            const int32_t before = cron_zone_offset(zone, start - 1);
            if (before > offset)
                repeated_until = start + before;
        }
        int64_t from = s + offset;
        for (;;) {
            int64_t naive;
            const int64_t days_left = (horizon - s) / SECONDS_PER_DAY + 1;
            if (!naive_next(expr, from, days_left, &naive))
                return BUTLER_ERR_NOT_FOUND;
            const int64_t u = naive - offset;
            if (end != INT64_MAX && u >= end)
                break;
            if (naive < repeated_until && !expr->hours_star) {
                from = repeated_until; /* fired in the first pass already */
                continue;
            }
            *next = u;
            return BUTLER_OK;
        }
        s = end;
    }
    return BUTLER_ERR_NOT_FOUND;
}

/* See cron.h. The lower bound "now - 1" lets a slot of the current second fire when the
 * scheduler compiles late in that second; the other two bounds keep that slot from being one
 * the schedule did not exist for (set_ms) or has already handled (last_run_s). */
enum butler_status cron_first_firing(const struct cron_expr *expr, const struct cron_zone *zone,
                                     uint64_t set_ms, int64_t last_run_s, int64_t now,
                                     int64_t *next)
{
    int64_t after = now - 1;
    const int64_t set_s = (int64_t)(set_ms / 1000u);
    if (set_s > after)
        after = set_s;
    if (last_run_s > after)
        after = last_run_s;
    return cron_next(expr, zone, after, next);
}

void cron_firings_between(const struct cron_expr *expr, const struct cron_zone *zone, int64_t after,
                          int64_t before, int64_t *times, size_t list_max, size_t count_max,
                          size_t *count)
{
    *count = 0;
    int64_t t = after;
    while (*count < count_max && cron_next(expr, zone, t, &t) == BUTLER_OK && t < before) {
        if (times && *count < list_max)
            times[*count] = t;
        (*count)++;
    }
}

/* ---- POSIX TZ strings ---- */

static bool tz_name(const char **p)
{
    const char *at = *p;
    if (*at == '<') {
        const char *close = strchr(at, '>');
        if (close == NULL || close - at < 4)
            return false;
        *p = close + 1;
        return true;
    }
    const char *begin = at;
    while (isalpha((unsigned char)*at))
        at++;
    if (at - begin < 3)
        return false;
    *p = at;
    return true;
}

/* [+-]hh[:mm[:ss]] with hours up to 167 (POSIX extension for rule times). */
static bool tz_time(const char **p, int32_t *seconds)
{
    const char *at = *p;
    int sign = 1;
    if (*at == '+' || *at == '-')
        sign = *at++ == '-' ? -1 : 1;
    if (!isdigit((unsigned char)*at))
        return false;
    long parts[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) {
        if (!isdigit((unsigned char)*at))
            return false;
        int digits = 0;
        while (isdigit((unsigned char)*at) && digits < 3) {
            parts[i] = parts[i] * 10 + (*at++ - '0');
            digits++;
        }
        if (*at != ':' || i == 2)
            break;
        at++;
    }
    if (parts[0] > 167 || parts[1] > 59 || parts[2] > 59)
        return false;
    *seconds = (int32_t)(sign * (parts[0] * 3600 + parts[1] * 60 + parts[2]));
    *p = at;
    return true;
}

static bool tz_number(const char **p, int min, int max, int *value)
{
    if (!isdigit((unsigned char)**p))
        return false;
    long v = 0;
    while (isdigit((unsigned char)**p) && v <= max)
        v = v * 10 + (*(*p)++ - '0');
    if (v < min || v > max)
        return false;
    *value = (int)v;
    return true;
}

static bool tz_date(const char **p, struct cron_tz_rule_date *date)
{
    memset(date, 0, sizeof *date);
    date->time_s = 7200;
    if (**p == 'M') {
        (*p)++;
        date->kind = 'M';
        if (!tz_number(p, 1, 12, &date->month) || *(*p)++ != '.' ||
            !tz_number(p, 1, 5, &date->week) || *(*p)++ != '.' || !tz_number(p, 0, 6, &date->day))
            return false;
    } else if (**p == 'J') {
        (*p)++;
        date->kind = 'J';
        if (!tz_number(p, 1, 365, &date->yday))
            return false;
    } else {
        date->kind = 'N';
        if (!tz_number(p, 0, 365, &date->yday))
            return false;
    }
    if (**p == '/') {
        (*p)++;
        if (!tz_time(p, &date->time_s))
            return false;
    }
    return true;
}

enum butler_status cron_tz_rule_parse(const char *text, struct cron_tz_rule *rule)
{
    const char *p = text;
    int32_t west;
    memset(rule, 0, sizeof *rule);
    if (!tz_name(&p) || !tz_time(&p, &west))
        return BUTLER_ERR_INVALID;
    rule->std_offset = -west; /* POSIX offsets count west of Greenwich */
    rule->dst_offset = rule->std_offset;
    if (*p == '\0')
        return BUTLER_OK;
    if (!tz_name(&p))
        return BUTLER_ERR_INVALID;
    rule->has_dst = true;
    rule->dst_offset = rule->std_offset + 3600;
    if (*p && *p != ',') {
        if (!tz_time(&p, &west))
            return BUTLER_ERR_INVALID;
        rule->dst_offset = -west;
    }
    if (*p == '\0') {
        /* POSIX leaves the default rule to the implementation; glibc uses
         * the US rules, and so does this. */
        rule->start = (struct cron_tz_rule_date){'M', 3, 2, 0, 0, 7200};
        rule->end = (struct cron_tz_rule_date){'M', 11, 1, 0, 0, 7200};
        return BUTLER_OK;
    }
    if (*p++ != ',' || !tz_date(&p, &rule->start) || *p++ != ',' || !tz_date(&p, &rule->end) ||
        *p != '\0')
        return BUTLER_ERR_INVALID;
    return BUTLER_OK;
}

/* ---- TZif files (RFC 8536) ---- */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

struct tzif_header {
    uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
};

static bool read_header(const unsigned char *p, size_t left, struct tzif_header *h, char *version)
{
    if (left < 44 || memcmp(p, "TZif", 4) != 0)
        return false;
    *version = (char)p[4];
    h->isutcnt = be32(p + 20);
    h->isstdcnt = be32(p + 24);
    h->leapcnt = be32(p + 28);
    h->timecnt = be32(p + 32);
    h->typecnt = be32(p + 36);
    h->charcnt = be32(p + 40);
    return true;
}

static uint64_t data_size(const struct tzif_header *h, int time_size)
{
    return (uint64_t)h->timecnt * (uint64_t)time_size + h->timecnt + (uint64_t)h->typecnt * 6 +
           h->charcnt + (uint64_t)h->leapcnt * (uint64_t)(time_size + 4) + h->isstdcnt + h->isutcnt;
}

/* Fill `zone` from a TZif image. BUTLER_ERR_INVALID on anything malformed. */
static enum butler_status parse_tzif(const unsigned char *data, size_t length,
                                     struct cron_zone *zone)
{
    struct tzif_header h;
    char version;
    if (!read_header(data, length, &h, &version))
        return BUTLER_ERR_INVALID;
    const unsigned char *p = data + 44;
    size_t left = length - 44;
    int time_size = 4;
    if (version >= '2') {
        uint64_t skip = data_size(&h, 4);
        if (skip > left)
            return BUTLER_ERR_INVALID;
        p += skip;
        left -= (size_t)skip;
        if (!read_header(p, left, &h, &version))
            return BUTLER_ERR_INVALID;
        p += 44;
        left -= 44;
        time_size = 8;
    }
    if (data_size(&h, time_size) > left || h.typecnt == 0 || h.typecnt > CRON_ZONE_TYPES_MAX)
        return BUTLER_ERR_INVALID;
    if (h.timecnt > CRON_ZONE_TRANSITIONS_MAX)
        return BUTLER_ERR_TOO_LARGE;
    const unsigned char *times = p;
    const unsigned char *indices = times + (size_t)h.timecnt * (size_t)time_size;
    const unsigned char *types = indices + h.timecnt;
    zone->transition_count = h.timecnt;
    zone->type_count = h.typecnt;
    for (uint32_t i = 0; i < h.typecnt; i++) {
        int32_t offset = (int32_t)be32(types + i * 6);
        if (offset < -26 * 3600 || offset > 26 * 3600)
            return BUTLER_ERR_INVALID;
        zone->type_offsets[i] = offset;
    }
    for (uint32_t i = 0; i < h.timecnt; i++) {
        zone->transitions[i] = time_size == 8 ? be64(times + (size_t)i * 8)
                                              : (int64_t)(int32_t)be32(times + (size_t)i * 4);
        zone->transition_types[i] = indices[i];
        if (indices[i] >= h.typecnt || (i > 0 && zone->transitions[i] <= zone->transitions[i - 1]))
            return BUTLER_ERR_INVALID;
    }
    zone->initial_offset = zone->type_offsets[0];
    zone->has_rule = false;
    p += data_size(&h, time_size);
    left -= (size_t)data_size(&h, time_size);
    if (time_size == 8 && left >= 2 && p[0] == '\n') {
        const unsigned char *close = memchr(p + 1, '\n', left - 1);
        char footer[128];
        size_t footer_length = close ? (size_t)(close - p - 1) : 0;
        if (close && footer_length > 0 && footer_length < sizeof footer) {
            memcpy(footer, p + 1, footer_length);
            footer[footer_length] = '\0';
            zone->has_rule = cron_tz_rule_parse(footer, &zone->rule) == BUTLER_OK;
        }
    }
    return BUTLER_OK;
}

static bool zone_name_valid(const char *name)
{
    size_t length = strlen(name);
    if (length == 0 || length > CRON_ZONE_NAME_MAX || name[0] == '/' || strstr(name, "..") ||
        strstr(name, "//"))
        return false;
    for (const char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '+' && *c != '-' && *c != '/')
            return false;
    return true;
}

/*
 * Contract: cron.h. The zone file is read whole (at most ZONE_FILE_MAX bytes)
 * into a heap buffer freed before returning; `zone` is owned by the caller.
 */
enum butler_status cron_zone_load(const char *name, const char *zoneinfo_dir,
                                  struct cron_zone *zone)
{
    enum butler_status status = BUTLER_ERR_INVALID;
    unsigned char *data = NULL;
    FILE *file = NULL;
    memset(zone, 0, sizeof *zone);
    if (name == NULL || !zone_name_valid(name))
        goto out;
    snprintf(zone->name, sizeof zone->name, "%s", name);
    if (strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0 || strcmp(name, "GMT") == 0 ||
        strcmp(name, "Z") == 0) {
        status = BUTLER_OK; /* offset 0, no transitions */
        goto out;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/%s", zoneinfo_dir ? zoneinfo_dir : "/usr/share/zoneinfo", name);
    file = fopen(path, "rb");
    if (file == NULL) {
        status = errno == ENOENT || errno == ENOTDIR ? BUTLER_ERR_NOT_FOUND : BUTLER_ERR_IO;
        goto out;
    }
    status = BUTLER_ERR_NOMEM;
    data = malloc(ZONE_FILE_MAX + 1);
    if (data == NULL)
        goto out;
    size_t length = fread(data, 1, ZONE_FILE_MAX + 1, file);
    status = BUTLER_ERR_INVALID;
    if (length == 0 || length > ZONE_FILE_MAX) /* a directory reads 0 bytes */
        goto out;
    status = parse_tzif(data, length, zone);
    snprintf(zone->name, sizeof zone->name, "%s", name);
out:
    if (file)
        fclose(file);
    free(data);
    if (status != BUTLER_OK)
        memset(zone, 0, sizeof *zone);
    return status;
}
