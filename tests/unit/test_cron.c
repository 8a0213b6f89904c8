/* Unit tests: cron expressions, TZif zones and DST behaviour (topics/cron.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "topics/cron.h"
#include "tests/unit/unit.h"

static struct cron_zone utc_zone, stockholm_zone;

/* UTC epoch seconds of a calendar time (timegm: no TZ state involved). */
static int64_t utc(int year, int month, int day, int hour, int minute, int second)
{
    struct tm tm = {0};
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    return (int64_t)timegm(&tm);
}

static void load_zones(void)
{
    static bool loaded;
    if (loaded)
        return;
    UNIT_CHECK(cron_zone_load("UTC", NULL, &utc_zone) == BUTLER_OK);
    UNIT_CHECK(cron_zone_load("Europe/Stockholm", NULL, &stockholm_zone) == BUTLER_OK);
    loaded = true;
}

/* Next firing of `text` after `after` in `zone`; -1 on error. */
static int64_t next_of(const char *text, const struct cron_zone *zone, int64_t after)
{
    struct cron_expr expr;
    char error[160];
    int64_t next = -1;
    if (cron_parse(text, &expr, error, sizeof error) != BUTLER_OK) {
        fprintf(stderr, "  parse %s: %s\n", text, error);
        return -1;
    }
    if (cron_next(&expr, zone, after, &next) != BUTLER_OK)
        return -1;
    return next;
}

static void expect_invalid(const char *text, const char *needle)
{
    struct cron_expr expr;
    char error[160] = "";
    enum butler_status status = cron_parse(text, &expr, error, sizeof error);
    UNIT_CHECK(status == BUTLER_ERR_INVALID || status == BUTLER_ERR_TOO_LARGE);
    if (strstr(error, needle) == NULL) {
        fprintf(stderr, "  \"%s\": error \"%s\" lacks \"%s\"\n", text, error, needle);
        UNIT_CHECK(!"error message");
    }
}

static void test_basic_fields(void)
{
    load_zones();
    const int64_t t = utc(2024, 5, 10, 12, 0, 0); /* a Friday */
    UNIT_CHECK(next_of("* * * * *", &utc_zone, t) == t + 60);
    UNIT_CHECK(next_of("*/15 * * * *", &utc_zone, t) == t + 15 * 60);
    UNIT_CHECK(next_of("0,30 6 * * 1-5", &utc_zone, t) == utc(2024, 5, 13, 6, 0, 0));
    UNIT_CHECK(next_of("0 0 1 1 *", &utc_zone, t) == utc(2025, 1, 1, 0, 0, 0));
    UNIT_CHECK(next_of("5/20 * * * *", &utc_zone, t) == t + 5 * 60);
    UNIT_CHECK(next_of("10-20/5 * * * *", &utc_zone, t + 11 * 60) == t + 15 * 60);
    /* Names, either case, in ranges and lists. */
    UNIT_CHECK(next_of("0 0 * jan-MAR mon", &utc_zone, t) == utc(2025, 1, 6, 0, 0, 0));
    UNIT_CHECK(next_of("0 12 * * SAT,sun", &utc_zone, t) == utc(2024, 5, 11, 12, 0, 0));
    /* 7 is Sunday as well as 0. */
    UNIT_CHECK(next_of("0 0 * * 7", &utc_zone, t) == utc(2024, 5, 12, 0, 0, 0));
    UNIT_CHECK(next_of("0 0 * * 0", &utc_zone, t) == utc(2024, 5, 12, 0, 0, 0));
    /* '?' as in Quartz: same as '*'. */
    UNIT_CHECK(next_of("0 0 ? * MON", &utc_zone, t) == utc(2024, 5, 13, 0, 0, 0));
    UNIT_CHECK(next_of("@hourly", &utc_zone, t) == t + 3600);
    UNIT_CHECK(next_of("@daily", &utc_zone, t) == utc(2024, 5, 11, 0, 0, 0));
    UNIT_CHECK(next_of("@weekly", &utc_zone, t) == utc(2024, 5, 12, 0, 0, 0));
    UNIT_CHECK(next_of("@monthly", &utc_zone, t) == utc(2024, 6, 1, 0, 0, 0));
    UNIT_CHECK(next_of("@yearly", &utc_zone, t) == utc(2025, 1, 1, 0, 0, 0));
    UNIT_CHECK(next_of("  0   0  * *   *  ", &utc_zone, t) == utc(2024, 5, 11, 0, 0, 0));
    /* Year end rollover from the last second of a year. */
    UNIT_CHECK(next_of("0 0 * * *", &utc_zone, utc(2024, 12, 31, 23, 59, 59)) ==
               utc(2025, 1, 1, 0, 0, 0));
}

static void test_seconds_field(void)
{
    load_zones();
    const int64_t t = utc(2024, 5, 10, 12, 0, 0);
    UNIT_CHECK(next_of("*/2 * * * * *", &utc_zone, t) == t + 2);
    UNIT_CHECK(next_of("*/2 * * * * *", &utc_zone, t + 1) == t + 2);
    UNIT_CHECK(next_of("15 * * * * *", &utc_zone, t) == t + 15);
    UNIT_CHECK(next_of("15 * * * * *", &utc_zone, t + 15) == t + 75);
    UNIT_CHECK(next_of("*/30 * * * * *", &utc_zone, t + 59) == t + 60);
    UNIT_CHECK(next_of("0 0 0 * * *", &utc_zone, t) == utc(2024, 5, 11, 0, 0, 0));
    /* Five fields fire at second 0. */
    UNIT_CHECK(next_of("* * * * *", &utc_zone, t + 1) == t + 60);
}

static void test_feb_29(void)
{
    load_zones();
    UNIT_CHECK(next_of("0 0 29 2 *", &utc_zone, utc(2024, 3, 1, 0, 0, 0)) ==
               utc(2028, 2, 29, 0, 0, 0));
    UNIT_CHECK(next_of("0 0 29 2 *", &utc_zone, utc(2024, 2, 28, 12, 0, 0)) ==
               utc(2024, 2, 29, 0, 0, 0));
    /* 2100 is not a leap year: 2096 -> 2104. */
    UNIT_CHECK(next_of("0 0 29 2 *", &utc_zone, utc(2096, 3, 1, 0, 0, 0)) ==
               utc(2104, 2, 29, 0, 0, 0));
    /* Last day of February, leap or not. */
    UNIT_CHECK(next_of("0 0 28,29 2 *", &utc_zone, utc(2023, 2, 1, 0, 0, 0)) ==
               utc(2023, 2, 28, 0, 0, 0));
    /* Day 31 skips the short months. */
    UNIT_CHECK(next_of("0 0 31 * *", &utc_zone, utc(2024, 4, 1, 0, 0, 0)) ==
               utc(2024, 5, 31, 0, 0, 0));
}

static void test_day_or_rule(void)
{
    load_zones();
    /* Both restricted: the 13th OR any Friday. 2024-09-01 is a Sunday. */
    const int64_t t = utc(2024, 9, 1, 0, 0, 0);
    int64_t first = next_of("0 0 13 * FRI", &utc_zone, t);
    UNIT_CHECK(first == utc(2024, 9, 6, 0, 0, 0));
    int64_t second = next_of("0 0 13 * FRI", &utc_zone, first);
    UNIT_CHECK(second == utc(2024, 9, 13, 0, 0, 0));
    UNIT_CHECK(next_of("0 0 13 * FRI", &utc_zone, second) == utc(2024, 9, 20, 0, 0, 0));
    UNIT_CHECK(next_of("0 0 1 * MON", &utc_zone, utc(2024, 9, 3, 0, 0, 0)) ==
               utc(2024, 9, 9, 0, 0, 0));
    /* A day field starting with '*' is "unrestricted": AND. Days 1,11,21,31
     * that are Mondays: 2024-10-21. */
    UNIT_CHECK(next_of("0 0 */10 * MON", &utc_zone, t) == utc(2024, 10, 21, 0, 0, 0));
    /* Feb 30 never exists, but with a weekday the OR rule still fires. */
    UNIT_CHECK(next_of("0 0 30 2 MON", &utc_zone, t) == utc(2025, 2, 3, 0, 0, 0));
}

static void test_zone_offsets(void)
{
    load_zones();
    UNIT_CHECK(cron_zone_offset(&stockholm_zone, utc(2024, 1, 15, 12, 0, 0)) == 3600);
    UNIT_CHECK(cron_zone_offset(&stockholm_zone, utc(2024, 7, 15, 12, 0, 0)) == 7200);
    /* Far future: past the file's last transition, the footer rule decides. */
    UNIT_CHECK(cron_zone_offset(&stockholm_zone, utc(2100, 7, 15, 12, 0, 0)) == 7200);
    UNIT_CHECK(cron_zone_offset(&stockholm_zone, utc(2100, 12, 15, 12, 0, 0)) == 3600);
    /* The change instants themselves (01:00 UTC). */
    UNIT_CHECK(cron_zone_offset(&stockholm_zone, utc(2024, 3, 31, 0, 59, 59)) == 3600);
    UNIT_CHECK(cron_zone_offset(&stockholm_zone, utc(2024, 3, 31, 1, 0, 0)) == 7200);
    UNIT_CHECK(cron_zone_offset(&stockholm_zone, utc(2024, 10, 27, 0, 59, 59)) == 7200);
    UNIT_CHECK(cron_zone_offset(&stockholm_zone, utc(2024, 10, 27, 1, 0, 0)) == 3600);
    UNIT_CHECK(cron_zone_offset(&utc_zone, utc(2024, 7, 1, 0, 0, 0)) == 0);
    struct cron_local_time local;
    cron_local(&stockholm_zone, utc(2024, 7, 1, 22, 30, 5), &local);
    UNIT_CHECK(local.year == 2024 && local.month == 7 && local.day == 2 && local.hour == 0 &&
               local.minute == 30 && local.second == 5 && local.weekday == 2);
    /* Other zones load (southern hemisphere, half-hour offsets). */
    struct cron_zone *zone = malloc(sizeof *zone);
    UNIT_CHECK(zone && cron_zone_load("Australia/Sydney", NULL, zone) == BUTLER_OK);
    UNIT_CHECK(cron_zone_offset(zone, utc(2024, 1, 15, 0, 0, 0)) == 11 * 3600);
    UNIT_CHECK(cron_zone_offset(zone, utc(2024, 7, 15, 0, 0, 0)) == 10 * 3600);
    UNIT_CHECK(cron_zone_load("Asia/Kolkata", NULL, zone) == BUTLER_OK);
    UNIT_CHECK(cron_zone_offset(zone, utc(2024, 7, 15, 0, 0, 0)) == 5 * 3600 + 1800);
    UNIT_CHECK(next_of("0 9 * * *", zone, utc(2024, 7, 15, 0, 0, 0)) == utc(2024, 7, 15, 3, 30, 0));
    free(zone);
}

static void test_dst_spring_forward(void)
{
    load_zones();
    /* 2024-03-31 02:00 CET -> 03:00 CEST in Stockholm: 02:30 does not exist
     * that day, so a daily 02:30 job skips to the next day. */
    UNIT_CHECK(next_of("30 2 * * *", &stockholm_zone, utc(2024, 3, 30, 12, 0, 0)) ==
               utc(2024, 4, 1, 0, 30, 0));
    /* The day before it runs at 02:30 CET = 01:30 UTC. */
    UNIT_CHECK(next_of("30 2 * * *", &stockholm_zone, utc(2024, 3, 29, 12, 0, 0)) ==
               utc(2024, 3, 30, 1, 30, 0));
    /* Every 30 minutes keeps going across the jump: 01:30 CET, then 03:00 CEST. */
    UNIT_CHECK(next_of("*/30 * * * *", &stockholm_zone, utc(2024, 3, 31, 0, 15, 0)) ==
               utc(2024, 3, 31, 0, 30, 0));
    UNIT_CHECK(next_of("*/30 * * * *", &stockholm_zone, utc(2024, 3, 31, 0, 30, 0)) ==
               utc(2024, 3, 31, 1, 0, 0));
    /* 03:00 local daily: the first instant of CEST. */
    UNIT_CHECK(next_of("0 3 * * *", &stockholm_zone, utc(2024, 3, 30, 12, 0, 0)) ==
               utc(2024, 3, 31, 1, 0, 0));
    /* Far future, from the footer rule: 2099-03-29 is the last Sunday. */
    UNIT_CHECK(next_of("30 2 * * *", &stockholm_zone, utc(2099, 3, 28, 12, 0, 0)) ==
               utc(2099, 3, 30, 0, 30, 0));
}

static void test_dst_fall_back(void)
{
    load_zones();
    /* 2024-10-27 03:00 CEST -> 02:00 CET: 02:xx happens twice. A daily job
     * fires once, at the first 02:30 (CEST, 00:30 UTC). */
    const int64_t first = next_of("30 2 * * *", &stockholm_zone, utc(2024, 10, 26, 12, 0, 0));
    UNIT_CHECK(first == utc(2024, 10, 27, 0, 30, 0));
    UNIT_CHECK(next_of("30 2 * * *", &stockholm_zone, first) == utc(2024, 10, 28, 1, 30, 0));
    /* Starting inside the second pass does not fire the repeated time again. */
    UNIT_CHECK(next_of("30 2 * * *", &stockholm_zone, utc(2024, 10, 27, 1, 10, 0)) ==
               utc(2024, 10, 28, 1, 30, 0));
    /* An hourly-wildcard job fires in both passes: real-time rhythm. */
    int64_t t = utc(2024, 10, 27, 0, 30, 0); /* 02:30 CEST */
    const int64_t expected[] = {utc(2024, 10, 27, 1, 0, 0), utc(2024, 10, 27, 1, 30, 0),
                                utc(2024, 10, 27, 2, 0, 0)};
    for (size_t i = 0; i < 3; i++) {
        t = next_of("0,30 * * * *", &stockholm_zone, t);
        UNIT_CHECK(t == expected[i]);
    }
    /* Every 2 seconds across the change: exactly 2 s apart. */
    int64_t s = utc(2024, 10, 27, 0, 59, 57);
    int64_t n1 = next_of("*/2 * * * * *", &stockholm_zone, s);
    int64_t n2 = next_of("*/2 * * * * *", &stockholm_zone, n1);
    UNIT_CHECK(n1 == utc(2024, 10, 27, 0, 59, 58) && n2 == utc(2024, 10, 27, 1, 0, 0));
}

static void test_invalid_expressions(void)
{
    expect_invalid("", "empty");
    expect_invalid("* * * *", "got 4");
    expect_invalid("* * * * * * *", "more than 6");
    expect_invalid("60 * * * *", "field 1 (minute): 60 is out of range 0-59");
    expect_invalid("* 24 * * *", "field 2 (hour): 24 is out of range 0-23");
    expect_invalid("0 0 0 * *", "day-of-month): 0 is out of range 1-31");
    expect_invalid("0 0 * 13 *", "(month): 13 is out of range");
    expect_invalid("0 0 * * 8", "(day-of-week): 8 is out of range 0-7");
    expect_invalid("60 * * * * *", "field 1 (second)");
    expect_invalid("5-2 * * * *", "range 5-2 runs backwards");
    expect_invalid("*/0 * * * *", "bad step");
    expect_invalid("*/x * * * *", "bad step");
    expect_invalid("1,,2 * * * *", "empty list item");
    expect_invalid("1, * * * *", "empty list item");
    expect_invalid("FOO * * * *", "cannot read \"FOO\"");
    expect_invalid("0 0 * JANUARY *", "cannot read");
    expect_invalid("0 0 30 2 *", "never fires");
    expect_invalid("0 0 31 4,6,9,11 *", "never fires");
    expect_invalid("@every", "unknown shortcut");
    expect_invalid("@hourly *", "unknown shortcut");
    expect_invalid("-1 * * * *", "cannot read");
    expect_invalid("1-2-3 * * * *", "cannot read");
    expect_invalid("99999999999 * * * *", "cannot read");
    expect_invalid("?5 * * * *", "cannot read");
    char long_text[CRON_TEXT_MAX + 10];
    memset(long_text, '1', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    expect_invalid(long_text, "longer than");
}

static void test_zone_names_and_rules(void)
{
    struct cron_zone *zone = malloc(sizeof *zone);
    UNIT_CHECK(zone != NULL);
    UNIT_CHECK(cron_zone_load("../etc/passwd", NULL, zone) == BUTLER_ERR_INVALID);
    UNIT_CHECK(cron_zone_load("/etc/passwd", NULL, zone) == BUTLER_ERR_INVALID);
    UNIT_CHECK(cron_zone_load("Europe/Stock holm", NULL, zone) == BUTLER_ERR_INVALID);
    UNIT_CHECK(cron_zone_load("", NULL, zone) == BUTLER_ERR_INVALID);
    UNIT_CHECK(cron_zone_load("Nowhere/City", NULL, zone) == BUTLER_ERR_NOT_FOUND);
    UNIT_CHECK(cron_zone_load("Europe", NULL, zone) != BUTLER_OK); /* a directory */
    UNIT_CHECK(cron_zone_load("Etc/UTC", NULL, zone) == BUTLER_OK);
    free(zone);

    struct cron_tz_rule rule;
    UNIT_CHECK(cron_tz_rule_parse("CET-1CEST,M3.5.0,M10.5.0/3", &rule) == BUTLER_OK);
    UNIT_CHECK(rule.std_offset == 3600 && rule.dst_offset == 7200 && rule.has_dst);
    UNIT_CHECK(rule.end.time_s == 3 * 3600 && rule.start.time_s == 7200);
    UNIT_CHECK(cron_tz_rule_parse("EST5EDT,M3.2.0,M11.1.0", &rule) == BUTLER_OK);
    UNIT_CHECK(rule.std_offset == -5 * 3600 && rule.dst_offset == -4 * 3600);
    UNIT_CHECK(cron_tz_rule_parse("<+0330>-3:30", &rule) == BUTLER_OK);
    UNIT_CHECK(rule.std_offset == 3 * 3600 + 1800 && !rule.has_dst);
    UNIT_CHECK(cron_tz_rule_parse("IST-1GMT0,M10.5.0,M3.5.0/1", &rule) == BUTLER_OK);
    UNIT_CHECK(rule.std_offset == 3600 && rule.dst_offset == 0);
    UNIT_CHECK(cron_tz_rule_parse("<-03>3<-02>,M3.5.0/-2,M10.5.0/-1", &rule) == BUTLER_OK);
    UNIT_CHECK(rule.start.time_s == -7200);
    UNIT_CHECK(cron_tz_rule_parse("XX1", &rule) == BUTLER_ERR_INVALID);
    UNIT_CHECK(cron_tz_rule_parse("CET-1CEST,M13.5.0,M10.5.0", &rule) == BUTLER_ERR_INVALID);
    UNIT_CHECK(cron_tz_rule_parse("CET-1CEST,M3.5.0", &rule) == BUTLER_ERR_INVALID);

    /* A zone built from a rule alone (no transitions) behaves the same. */
    struct cron_zone *ruled = calloc(1, sizeof *ruled);
    UNIT_CHECK(ruled != NULL);
    ruled->has_rule = cron_tz_rule_parse("CET-1CEST,M3.5.0,M10.5.0/3", &ruled->rule) == BUTLER_OK;
    UNIT_CHECK(next_of("30 2 * * *", ruled, utc(2024, 10, 26, 12, 0, 0)) ==
               utc(2024, 10, 27, 0, 30, 0));
    UNIT_CHECK(next_of("30 2 * * *", ruled, utc(2024, 3, 30, 12, 0, 0)) ==
               utc(2024, 4, 1, 0, 30, 0));
    free(ruled);
}

/* Issue 23: "*\/2 * * * * *" created at :04.497 fired for the slot :04.000, a second that
 * began before it existed. The first firing is the first slot strictly after the second the
 * timing was set in, and never one already handled. */
static void test_first_firing_is_after_the_timing_was_set(void)
{
    load_zones();
    struct cron_expr every2, every1;
    char error[160];
    UNIT_CHECK(cron_parse("*/2 * * * * *", &every2, error, sizeof error) == BUTLER_OK);
    UNIT_CHECK(cron_parse("* * * * * *", &every1, error, sizeof error) == BUTLER_OK);
    const int64_t t4 = utc(2026, 12, 7, 1, 2, 4);
    const uint64_t created_ms = (uint64_t)t4 * 1000u + 497u;
    int64_t next = -1;
    /* Compiled in the creation second itself, and later in it. */
    UNIT_CHECK(cron_first_firing(&every2, &utc_zone, created_ms, t4, t4, &next) == BUTLER_OK);
    UNIT_CHECK(next == t4 + 2);
    UNIT_CHECK(cron_first_firing(&every1, &utc_zone, created_ms, 0, t4, &next) == BUTLER_OK);
    UNIT_CHECK(next == t4 + 1);
    /* Set exactly on a slot: that slot is not strictly after it. */
    UNIT_CHECK(cron_first_firing(&every2, &utc_zone, (uint64_t)t4 * 1000u, 0, t4, &next) ==
               BUTLER_OK);
    UNIT_CHECK(next == t4 + 2);
    /* Restored (set_ms 0): a slot of the current second still fires, unless handled. */
    UNIT_CHECK(cron_first_firing(&every2, &utc_zone, 0, t4 - 10, t4, &next) == BUTLER_OK);
    UNIT_CHECK(next == t4);
    UNIT_CHECK(cron_first_firing(&every2, &utc_zone, 0, t4, t4, &next) == BUTLER_OK);
    UNIT_CHECK(next == t4 + 2);
    /* Compiled a while after the change: slots in between are not owed here. */
    UNIT_CHECK(cron_first_firing(&every2, &utc_zone, created_ms, 0, t4 + 7, &next) == BUTLER_OK);
    UNIT_CHECK(next == t4 + 8);
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_basic_fields),
    UNIT_TEST(test_seconds_field),
    UNIT_TEST(test_feb_29),
    UNIT_TEST(test_day_or_rule),
    UNIT_TEST(test_zone_offsets),
    UNIT_TEST(test_dst_spring_forward),
    UNIT_TEST(test_dst_fall_back),
    UNIT_TEST(test_invalid_expressions),
    UNIT_TEST(test_zone_names_and_rules),
    UNIT_TEST(test_first_firing_is_after_the_timing_was_set),
    {0},
};
