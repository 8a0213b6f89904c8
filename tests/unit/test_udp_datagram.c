/* Unit tests for the UDP datagram parser: every layout, every drop reason,
 * and the malformed variants M01-M23 of sense-interfaces.md 5.3 that the
 * parser decides on its own (the rest need QRS or the socket). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/ingress/udp_datagram.h"
#include "bridge/ingress/udp_ingress.h"
#include "unit.h"

#define MAXB 65507

#define FAILED_V15                                                                                 \
    "/scheduler-task-failed/;sense-node-01;Reload Sales Dashboard;Sales Dashboard;"                \
    "INTERNAL\\sa_scheduler;5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;"                                 \
    "a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34;2026-03-14 02:16:07,482;ERROR;"                          \
    "9d8c7b6a-5e4f-4a3b-8c2d-1e0f9a8b7c6d;Task finished with state FinishedFail. Max retries "     \
    "reached."

static struct sense_event *event;

static enum udp_drop_reason parse_len(const char *text, size_t length)
{
    if (event == NULL)
        event = malloc(sizeof *event);
    return udp_parse((const unsigned char *)text, length, MAXB, event);
}

static enum udp_drop_reason parse(const char *text)
{
    return parse_len(text, strlen(text));
}

static void test_failed_v15(void)
{
    UNIT_CHECK(parse(FAILED_V15) == UDP_DROP_NONE);
    UNIT_CHECK(event->type == SENSE_EVENT_TASK_FAILED);
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_HOST], "sense-node-01");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_TASK_NAME], "Reload Sales Dashboard");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_APP_NAME], "Sales Dashboard");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_USER], "INTERNAL\\sa_scheduler");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_TASK_ID], "5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_APP_ID], "a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_LOG_TIMESTAMP], "2026-03-14 02:16:07,482");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_LEVEL], "ERROR");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_EXECUTION_ID], "9d8c7b6a-5e4f-4a3b-8c2d-1e0f9a8b7c6d");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_MESSAGE],
                   "Task finished with state FinishedFail. Max retries reached.");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_SESSION_ID], "");
    UNIT_CHECK(!event->sanitized);
}

static void test_every_scheduler_prefix(void)
{
    static const struct {
        const char *prefix;
        enum sense_event_type type;
    } cases[] = {
        {"/scheduler-task-failed/", SENSE_EVENT_TASK_FAILED},
        {"/scheduler-reload-failed/", SENSE_EVENT_TASK_FAILED},
        {"/scheduler-reloadtask-failed/", SENSE_EVENT_TASK_FAILED},
        {"/scheduler-task-aborted/", SENSE_EVENT_TASK_ABORTED},
        {"/scheduler-reload-aborted/", SENSE_EVENT_TASK_ABORTED},
        {"/scheduler-task-success/", SENSE_EVENT_TASK_SUCCESS},
        {"/scheduler-task-success//", SENSE_EVENT_TASK_SUCCESS},  /* M05, as shipped */
        {"/scheduler-task-success///", SENSE_EVENT_TASK_SUCCESS}, /* any run of '/' */
        {"/scheduler-reloadtask-success/", SENSE_EVENT_TASK_SUCCESS},
        {"/scheduler-distribute/", SENSE_EVENT_DISTRIBUTE},
        {"/SCHEDULER-TASK-FAILED/", SENSE_EVENT_TASK_FAILED}, /* M04 */
        {"/Scheduler-Task-Aborted/", SENSE_EVENT_TASK_ABORTED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512];
        snprintf(text, sizeof text,
                 "%s;h;t;a;u;5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;;2026-03-14 02:16:07,482;INFO;"
                 "9d8c7b6a-5e4f-4a3b-8c2d-1e0f9a8b7c6d;msg",
                 cases[i].prefix);
        UNIT_CHECK(parse(text) == UDP_DROP_NONE);
        UNIT_CHECK(event->type == cases[i].type);
    }
}

static void test_engine(void)
{
    UNIT_CHECK(parse("/engine-reload-failed/;sense-node-01;a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34;"
                     "d6e7f809-1a2b-4c34-8567-89abcdef0123;CORP;jdoe;2026-03-14 11:02:33,417;ERROR;"
                     "Reload failed: Field 'Amount' not found") == UDP_DROP_NONE);
    UNIT_CHECK(event->type == SENSE_EVENT_ENGINE_RELOAD_FAILED);
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_APP_ID], "a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_SESSION_ID], "d6e7f809-1a2b-4c34-8567-89abcdef0123");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_USER_DIRECTORY], "CORP");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_USER_ID], "jdoe");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_MESSAGE], "Reload failed: Field 'Amount' not found");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_TASK_ID], "");
    /* exactly 9 */
    UNIT_CHECK(parse("/engine-reload-failed/;h;;s;CORP;jdoe;d;ERROR;msg;extra") ==
               UDP_DROP_FIELD_COUNT);
    UNIT_CHECK(parse("/engine-reload-failed/;h;;s;CORP;jdoe;d;ERROR") == UDP_DROP_FIELD_COUNT);
    UNIT_CHECK(parse("/engine-reload-failed/;h;;s;CORP;jdoe;d;ERROR;msg") == UDP_DROP_NONE);
    UNIT_CHECK(parse("/engine-reload-failed/;h;not-a-guid;s;CORP;jdoe;d;ERROR;msg") ==
               UDP_DROP_GUID);
}

static void test_distribute_rejoins_message(void)
{
    /* M02: for distribute a ';' in the message is kept. */
    UNIT_CHECK(parse("/scheduler-distribute/;sense-node-02;Distribute;;INTERNAL\\sa_scheduler;"
                     "3d4e5f6a-7b8c-4d9e-8f0a-1b2c3d4e5f6a;;2026-03-14 03:10:55,640;INFO;"
                     "b4c5d6e7-f809-4a12-b345-6789abcdef01;Exiting execute; Result: a;b;c") ==
               UDP_DROP_NONE);
    UNIT_CHECK(event->type == SENSE_EVENT_DISTRIBUTE);
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_MESSAGE], "Exiting execute; Result: a;b;c");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_EXECUTION_ID], "b4c5d6e7-f809-4a12-b345-6789abcdef01");
    /* ...but failed/aborted/success need exactly 11. */
    UNIT_CHECK(parse(FAILED_V15 "; see log") == UDP_DROP_FIELD_COUNT);
    /* Many ';' (more than the parser keeps boundaries for). */
    char text[600];
    snprintf(text, sizeof text,
             "/scheduler-distribute/;h;t;;u;3d4e5f6a-7b8c-4d9e-8f0a-1b2c3d4e5f6a;;d;INFO;e;"
             "m0;m1;m2;m3;m4;m5");
    UNIT_CHECK(parse(text) == UDP_DROP_NONE);
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_MESSAGE], "m0;m1;m2;m3;m4;m5");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_EXECUTION_ID], "e");
}

static void test_field_count(void)
{
    /* M01: 10 fields */
    UNIT_CHECK(parse("/scheduler-task-failed/;h;t;a;u;5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;;d;E;"
                     "x") == UDP_DROP_FIELD_COUNT);
    UNIT_CHECK(parse("/scheduler-distribute/;h;t;a;u;5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;;d;E;"
                     "x") == UDP_DROP_FIELD_COUNT);
}

static void test_prefix(void)
{
    /* M03 */
    UNIT_CHECK(parse("/scheduler-task-failure/;h;t;a;u;5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;;d;E;"
                     "x;m") == UDP_DROP_PREFIX);
    UNIT_CHECK(parse("scheduler-task-failed;h;t;a;u;5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;;d;E;x;"
                     "m") == UDP_DROP_PREFIX);
    UNIT_CHECK(parse("/foo/") == UDP_DROP_PREFIX);
    /* M06: prefix-less legacy */
    UNIT_CHECK(parse("sense-node-01;Reload Sales;Sales;INTERNAL\\sa_scheduler;"
                     "5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34;"
                     "2020-11-05 10:12:33,120;ERROR;e7f80912-2b3c-4d45-8678-9abcdef01234;Max "
                     "retries reached") == UDP_DROP_PREFIX);
    UNIT_CHECK(parse("sense-node-01;Reload Sales;Sales;sa_scheduler") == UDP_DROP_PREFIX);
    UNIT_CHECK(parse("sense-node-01;Reload Sales;Sales;msg;ERROR") == UDP_DROP_PREFIX);
    /* M10: BOM */
    UNIT_CHECK(parse("\xEF\xBB\xBF" FAILED_V15) == UDP_DROP_PREFIX);
    /* M23 and session messages are not for this port. */
    UNIT_CHECK(parse("/proxy-connection/;p;Open connection;CORP;jdoe;AppAccess;/app/x;conn; "
                     "UserAgent: 'a;b'") == UDP_DROP_PREFIX);
    /* Over-long prefix. */
    char longp[300];
    memset(longp, '/', sizeof longp - 1);
    longp[sizeof longp - 1] = '\0';
    UNIT_CHECK(parse(longp) == UDP_DROP_PREFIX);
}

static void test_empty(void)
{
    /* M07 */
    UNIT_CHECK(parse_len("", 0) == UDP_DROP_EMPTY);
    UNIT_CHECK(parse(";;;;") == UDP_DROP_EMPTY);
    UNIT_CHECK(parse(" ") == UDP_DROP_EMPTY);
    UNIT_CHECK(parse_len("\0\0\r\n", 4) == UDP_DROP_EMPTY);
}

static void test_size(void)
{
    /* M08 (a): over a small limit; (b) exactly the limit is parsed. */
    size_t length = strlen(FAILED_V15);
    UNIT_CHECK(udp_parse((const unsigned char *)FAILED_V15, length, length - 1, event) ==
               UDP_DROP_SIZE);
    UNIT_CHECK(udp_parse((const unsigned char *)FAILED_V15, length, length, event) ==
               UDP_DROP_NONE);
    char *big = malloc(MAXB + 1);
    memset(big, 'x', MAXB + 1);
    memcpy(big, FAILED_V15, length);
    UNIT_CHECK(parse_len(big, MAXB + 1) == UDP_DROP_SIZE);
    UNIT_CHECK(parse_len(big, MAXB) == UDP_DROP_NONE); /* message truncated to 500 */
    UNIT_CHECK(strlen(event->fields[SENSE_FIELD_MESSAGE]) == SENSE_FIELD_MAX_BYTES);
    UNIT_CHECK(event->sanitized);
    free(big);
}

#define FFFD "\xEF\xBF\xBD"

static void test_utf8_decoded_with_replacement(void)
{
    /* M09 and more: each invalid sequence in the task name and in the message
     * is decoded as a standard decoder does (one U+FFFD per maximal invalid
     * subpart; the expectations are what Python's and WHATWG's decoders give),
     * and the event still goes out. */
    static const struct {
        const char *bad, *decoded;
    } cases[] = {
        {"\x80", FFFD},
        {"\xE2\x82", FFFD},               /* truncated 3-byte sequence: one */
        {"\xC0\xAF", FFFD FFFD},          /* overlong: C0 starts nothing */
        {"\xED\xA0\x80", FFFD FFFD FFFD}, /* surrogate: A0 not after ED */
        {"\xE0\x80\xAF", FFFD FFFD FFFD}, /* overlong 3-byte */
        {"\xFE", FFFD},
        {"\xFF", FFFD},
        {"F\xF6rs\xE4ljning", "F" FFFD "rs" FFFD "ljning"}, /* Latin-1 */
        {"\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD},          /* above U+10FFFF */
        {"\xF0\x9F\x98", FFFD},                             /* truncated 4-byte */
        {"\xE2(\xA1", FFFD "(" FFFD},
        {"\xF0\x9F\x98\x80\x80", "\xF0\x9F\x98\x80" FFFD},
        {"\xF1\x80\x80\xC2\xB0", FFFD "\xC2\xB0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512], expected[64];
        snprintf(text, sizeof text,
                 "/scheduler-task-failed/;h;T%s;a;u;5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;;d;E;x;m",
                 cases[i].bad);
        UNIT_CHECK(parse(text) == UDP_DROP_NONE);
        snprintf(expected, sizeof expected, "T%s", cases[i].decoded);
        UNIT_CHECK_STR(event->fields[SENSE_FIELD_TASK_NAME], expected);
        UNIT_CHECK(event->utf8_replaced && !event->sanitized);
        snprintf(text, sizeof text,
                 "/scheduler-task-failed/;h;T;a;u;5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;;d;E;x;m%s",
                 cases[i].bad);
        UNIT_CHECK(parse(text) == UDP_DROP_NONE);
        snprintf(expected, sizeof expected, "m%s", cases[i].decoded);
        UNIT_CHECK_STR(event->fields[SENSE_FIELD_MESSAGE], expected);
        UNIT_CHECK(event->utf8_replaced);
    }
    /* An invalid byte never swallows the ';' after it: the fields stay where they are. */
    UNIT_CHECK(parse("/scheduler-task-failed/;h;T\xE2\x82;A\xC3;u;"
                     "5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;;d;E;x;m\xF0") == UDP_DROP_NONE);
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_TASK_NAME], "T" FFFD);
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_APP_NAME], "A" FFFD);
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_USER], "u");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_MESSAGE], "m" FFFD);
    /* Valid multi-byte text is kept as is, and not reported as replaced. */
    UNIT_CHECK(parse("/scheduler-task-failed/;h;F\xC3\xB6rs\xC3\xA4ljning \xE2\x82\xAC "
                     "\xF0\x9F\x98\x80;a;u;5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;;d;E;x;m") ==
               UDP_DROP_NONE);
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_TASK_NAME],
                   "F\xC3\xB6rs\xC3\xA4ljning \xE2\x82\xAC \xF0\x9F\x98\x80");
    UNIT_CHECK(!event->utf8_replaced);
    /* Everything else malformed is still dropped: a replaced byte in a GUID or
     * in the prefix makes it no GUID or no prefix. */
    UNIT_CHECK(parse("/scheduler-task-failed/;h;t;a;u;5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a9\xFF;;d;"
                     "E;x;m") == UDP_DROP_GUID);
    UNIT_CHECK(parse("/scheduler-task-failed/;h;t;a;u;5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;"
                     "\xC3\xA3"
                     "c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34;d;E;x;m") == UDP_DROP_GUID);
    UNIT_CHECK(parse("/scheduler-task-failed/\xFF;h;t;a;u;5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;;d;"
                     "E;x;m") == UDP_DROP_PREFIX);
    /* M19: UTF-16LE has NULs and a garbled prefix. */
    const char utf16[] = "/\0s\0c\0h\0;\0";
    UNIT_CHECK(parse_len(utf16, sizeof utf16 - 1) == UDP_DROP_PREFIX);
}

static void test_replacement_respects_the_field_cap(void)
{
    /* Each bad byte grows to 3 bytes: 400 of them would be 1200. The field is
     * cut at 500 bytes before the first replacement that does not fit whole. */
    char text[1024];
    int head = snprintf(text, 200, "/scheduler-task-failed/;h;");
    memset(text + head, 0xFF, 400);
    snprintf(text + head + 400, 200, ";a;u;5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;;d;E;x;m");
    UNIT_CHECK(parse(text) == UDP_DROP_NONE);
    const char *name = event->fields[SENSE_FIELD_TASK_NAME];
    UNIT_CHECK(strlen(name) == 498); /* 166 replacements */
    for (size_t i = 0; i < 498; i += 3)
        UNIT_CHECK(memcmp(name + i, FFFD, 3) == 0);
    UNIT_CHECK(event->utf8_replaced && event->sanitized);
    /* 499 ASCII bytes and then a bad byte: the replacement does not fit. */
    head = snprintf(text, 200, "/scheduler-task-failed/;h;");
    memset(text + head, 'a', 499);
    text[head + 499] = '\x80';
    snprintf(text + head + 500, 200, ";a;u;5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;;d;E;x;m");
    UNIT_CHECK(parse(text) == UDP_DROP_NONE);
    UNIT_CHECK(strlen(event->fields[SENSE_FIELD_TASK_NAME]) == 499);
    UNIT_CHECK(!event->utf8_replaced && event->sanitized);
    /* Every field at its worst at once still fits the event's storage. */
    char *big = malloc(MAXB);
    size_t used = (size_t)snprintf(big, MAXB, "/scheduler-distribute/");
    for (int f = 1; f <= 10; f++) {
        big[used++] = ';';
        if (f == 5) {
            used +=
                (size_t)snprintf(big + used, MAXB - used, "5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91");
            continue;
        }
        if (f == 6)
            continue;
        memset(big + used, 0xC3, 1000); /* lone lead bytes */
        used += 1000;
    }
    UNIT_CHECK(parse_len(big, used) == UDP_DROP_NONE);
    for (size_t f = 0; f < SENSE_FIELD_COUNT; f++)
        UNIT_CHECK(strlen(event->fields[f]) <= SENSE_FIELD_MAX_BYTES);
    UNIT_CHECK(event->storage_used <= SENSE_EVENT_STORAGE_MAX);
    free(big);
}

static void test_control_characters(void)
{
    /* M11 and M20 */
    UNIT_CHECK(parse("/scheduler-task-failed/;h\x1b;Ta\tsk;a;u;"
                     "5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;;d;E;x;Max retries reached\r\n") ==
               UDP_DROP_NONE);
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_HOST], "h");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_TASK_NAME], "Task");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_MESSAGE], "Max retries reached");
    UNIT_CHECK(event->sanitized);
    static const char with_nul[] =
        "/scheduler-task-failed/;h;T\0x;a;u;5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;;d;E;x;m\x7f";
    UNIT_CHECK(parse_len(with_nul, sizeof with_nul - 1) == UDP_DROP_NONE);
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_TASK_NAME], "Tx");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_MESSAGE], "m");
}

static void test_truncation_on_utf8_boundary(void)
{
    /* M12: 501 / 5000 / 60000 characters; and a 2-byte char across byte 500. */
    static const size_t lengths[] = {501, 5000, 60000};
    for (size_t k = 0; k < 3; k++) {
        size_t n = lengths[k];
        char *text = malloc(n + 200);
        int head = snprintf(text, 200, "/scheduler-task-failed/;h;");
        memset(text + head, 'a', n);
        snprintf(text + head + n, 200, ";a;u;5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;;d;E;x;m");
        UNIT_CHECK(parse(text) == UDP_DROP_NONE);
        UNIT_CHECK(strlen(event->fields[SENSE_FIELD_TASK_NAME]) == SENSE_FIELD_MAX_BYTES);
        free(text);
    }
    char text[1200];
    int head = snprintf(text, 200, "/scheduler-task-failed/;h;");
    memset(text + head, 'a', 499);
    memcpy(text + head + 499, "\xC3\xA4\xC3\xA4", 4); /* a-umlaut straddles byte 500 */
    snprintf(text + head + 503, 200, ";a;u;5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;;d;E;x;m");
    UNIT_CHECK(parse(text) == UDP_DROP_NONE);
    UNIT_CHECK(strlen(event->fields[SENSE_FIELD_TASK_NAME]) == 499);
    /* 3-byte char from byte 499. */
    head = snprintf(text, 200, "/scheduler-task-failed/;h;");
    memset(text + head, 'a', 498);
    memcpy(text + head + 498, "\xE2\x82\xAC", 3);
    snprintf(text + head + 501, 200, ";a;u;5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;;d;E;x;m");
    UNIT_CHECK(parse(text) == UDP_DROP_NONE);
    UNIT_CHECK(strlen(event->fields[SENSE_FIELD_TASK_NAME]) == 498);
    /* Exactly 500 with a multi-byte char at the end is kept whole. */
    head = snprintf(text, 200, "/scheduler-task-failed/;h;");
    memset(text + head, 'a', 497);
    memcpy(text + head + 497, "\xE2\x82\xAC", 3);
    snprintf(text + head + 500, 200, ";a;u;5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;;d;E;x;m");
    UNIT_CHECK(parse(text) == UDP_DROP_NONE);
    UNIT_CHECK(strlen(event->fields[SENSE_FIELD_TASK_NAME]) == 500);
    UNIT_CHECK(!event->sanitized);
}

static void test_guids(void)
{
    /* M13 */
    UNIT_CHECK(parse("/scheduler-task-failed/;h;t;a;u;task-123;;d;E;x;m") == UDP_DROP_GUID);
    UNIT_CHECK(parse("/scheduler-task-failed/;h;t;a;u;{5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91};;d;"
                     "E;x;m") == UDP_DROP_GUID);
    UNIT_CHECK(parse("/scheduler-task-failed/;h;t;a;u;;;d;E;x;m") == UDP_DROP_GUID);
    UNIT_CHECK(parse("/scheduler-task-failed/;h;t;a;u;5E2F4C1A-8B7D-4A3E-9F10-2C6D8E4B7A91;"
                     "A3C9E7D2-1F4B-4E8A-B6D5-7C2E9F0A1B34;d;E;X;m") == UDP_DROP_NONE);
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_TASK_ID], "5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_APP_ID], "a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34");
    UNIT_CHECK(parse("/scheduler-task-failed/;h;t;a;u;5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;"
                     "not-a-guid;d;E;x;m") == UDP_DROP_GUID);
    UNIT_CHECK(sense_is_guid("5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91", 36));
    UNIT_CHECK(!sense_is_guid("5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a9g", 36));
    UNIT_CHECK(!sense_is_guid("5e2f4c1a08b7d-4a3e-9f10-2c6d8e4b7a91", 36));
}

static void test_null_text(void)
{
    /* M14: "(null)" app name / app id accepted as empty (documented choice). */
    UNIT_CHECK(parse("/scheduler-task-failed/;sense-node-01;Nightly backup script;(null);"
                     "INTERNAL\\sa_scheduler;6b7c8d9e-0f1a-4b2c-8d3e-4f5a6b7c8d9e;(null);"
                     "2026-03-14 01:30:05,010;ERROR;5e6f7081-92a3-4b45-8c6d-7e8f90123456;Max "
                     "retries reached") == UDP_DROP_NONE);
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_APP_NAME], "");
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_APP_ID], "");
    /* M15: "(null)" execution id = empty = no de-duplication. */
    UNIT_CHECK(parse("/scheduler-task-failed/;h;t;a;u;6b7c8d9e-0f1a-4b2c-8d3e-4f5a6b7c8d9e;;d;E;"
                     "(null);m") == UDP_DROP_NONE);
    UNIT_CHECK_STR(event->fields[SENSE_FIELD_EXECUTION_ID], "");
    /* "(null)" task id is still not a GUID. */
    UNIT_CHECK(parse("/scheduler-task-failed/;h;t;a;u;(null);;d;E;x;m") == UDP_DROP_GUID);
}

static void test_reason_names(void)
{
    UNIT_CHECK_STR(udp_drop_reason_name(UDP_DROP_SIZE), "size");
    UNIT_CHECK_STR(udp_drop_reason_name(UDP_DROP_PREFIX), "prefix");
    UNIT_CHECK_STR(udp_drop_reason_name(UDP_DROP_FIELD_COUNT), "field_count");
    UNIT_CHECK_STR(udp_drop_reason_name(UDP_DROP_GUID), "guid");
    UNIT_CHECK_STR(udp_drop_reason_name(UDP_DROP_EMPTY), "empty");
    UNIT_CHECK_STR(sense_event_outcome(SENSE_EVENT_TASK_SUCCESS), "success");
    UNIT_CHECK_STR(sense_event_outcome(SENSE_EVENT_ENGINE_RELOAD_FAILED), "reload-failed");
}

static void test_cidr(void)
{
    uint32_t network, mask;
    UNIT_CHECK(udp_parse_cidr("10.1.2.3/8", &network, &mask) == BUTLER_OK);
    UNIT_CHECK(network == 0x0A000000u && mask == 0xFF000000u);
    UNIT_CHECK(udp_parse_cidr("127.0.0.2", &network, &mask) == BUTLER_OK);
    UNIT_CHECK(network == 0x7F000002u && mask == 0xFFFFFFFFu);
    UNIT_CHECK(udp_parse_cidr("0.0.0.0/0", &network, &mask) == BUTLER_OK && mask == 0);
    UNIT_CHECK(udp_parse_cidr("10.0.0.0/33", &network, &mask) != BUTLER_OK);
    UNIT_CHECK(udp_parse_cidr("::1", &network, &mask) != BUTLER_OK);
    UNIT_CHECK(udp_parse_cidr("10.0.0.0/", &network, &mask) != BUTLER_OK);
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_failed_v15),
    UNIT_TEST(test_every_scheduler_prefix),
    UNIT_TEST(test_engine),
    UNIT_TEST(test_distribute_rejoins_message),
    UNIT_TEST(test_field_count),
    UNIT_TEST(test_prefix),
    UNIT_TEST(test_empty),
    UNIT_TEST(test_size),
    UNIT_TEST(test_utf8_decoded_with_replacement),
    UNIT_TEST(test_replacement_respects_the_field_cap),
    UNIT_TEST(test_control_characters),
    UNIT_TEST(test_truncation_on_utf8_boundary),
    UNIT_TEST(test_guids),
    UNIT_TEST(test_null_text),
    UNIT_TEST(test_reason_names),
    UNIT_TEST(test_cidr),
    {0},
};
