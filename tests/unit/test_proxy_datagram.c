/* Unit tests for the proxy datagram parser (contract 9.5): each layout of
 * sense-interfaces.md 3.5, ';' inside the message (M23), invalid UTF-8 as on
 * the scheduler port (contract 5), and every drop reason. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/ingress/proxy_datagram.h"
#include "unit.h"

#define MAXB 65507

static struct proxy_event *event;

static enum udp_drop_reason parse_len(const char *text, size_t length, size_t max)
{
    if (event == NULL)
        event = malloc(sizeof *event);
    return proxy_parse((const unsigned char *)text, length, max, event);
}

static enum udp_drop_reason parse(const char *text)
{
    return parse_len(text, strlen(text), MAXB);
}

static void test_proxy_session(void)
{
    UNIT_CHECK(parse("/proxy-session/;sense-proxy-01;Start session;CORP;jdoe;AppAccess;/hub/;"
                     "Start session for user 'CORP\\jdoe'") == UDP_DROP_NONE);
    UNIT_CHECK(event->kind == PROXY_SESSION_START);
    UNIT_CHECK(!event->four_field);
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_HOST], "sense-proxy-01");
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_COMMAND], "Start session");
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_USER_DIRECTORY], "CORP");
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_USER_ID], "jdoe");
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_ORIGIN], "AppAccess");
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_CONTEXT], "/hub/");
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_MESSAGE], "Start session for user 'CORP\\jdoe'");
    UNIT_CHECK(!event->sanitized && !event->utf8_replaced);
    UNIT_CHECK_STR(proxy_event_family(event->kind), "session");
    UNIT_CHECK_STR(proxy_event_action(event->kind), "start");
}

/* M23: the message keeps its ';' (Butler 6 cut it at the first one). */
static void test_connection_message_with_semicolons(void)
{
    UNIT_CHECK(parse("/proxy-connection/;sense-proxy-01;Open connection;CORP;jdoe;AppAccess;"
                     "/app/a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34?reloaduri=https://sense/sense/app/"
                     "a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34;connection Opened for session "
                     "'f0e1d2c3-b4a5-4968-8776-655443322110'; UserAgent: 'Mozilla/5.0 (Windows NT "
                     "10.0; Win64; x64)'") == UDP_DROP_NONE);
    UNIT_CHECK(event->kind == PROXY_CONNECTION_OPEN);
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_CONTEXT],
                   "/app/a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34?reloaduri=https://sense/sense/app/"
                   "a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34");
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_MESSAGE],
                   "connection Opened for session 'f0e1d2c3-b4a5-4968-8776-655443322110'; "
                   "UserAgent: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64)'");
    UNIT_CHECK_STR(proxy_event_family(event->kind), "connection");
    UNIT_CHECK_STR(proxy_event_action(event->kind), "open");
    /* An empty message, and a message that is nothing but ';'. */
    UNIT_CHECK(parse("/proxy-connection/;h;Close connection;D;u;o;c;") == UDP_DROP_NONE);
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_MESSAGE], "");
    UNIT_CHECK(parse("/proxy-connection/;h;Close connection;D;u;o;c;;;") == UDP_DROP_NONE);
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_MESSAGE], ";;");
}

static void test_qseow_layouts(void)
{
    UNIT_CHECK(parse("/qseow-proxy-session/;sense-proxy-02;Stop session;CORP;asmith;"
                     "ManagementAccess;/qmc/;Stop session for user 'CORP\\asmith'") ==
               UDP_DROP_NONE);
    UNIT_CHECK(event->kind == PROXY_SESSION_STOP);
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_USER_ID], "asmith");
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_ORIGIN], "ManagementAccess");
    UNIT_CHECK(parse("/qseow-proxy-connection/;sense-proxy-02;Close connection;CORP;asmith;"
                     "AppAccess;/app/7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2910;connection Closed for "
                     "session '0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d'") == UDP_DROP_NONE);
    UNIT_CHECK(event->kind == PROXY_CONNECTION_CLOSE);
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_HOST], "sense-proxy-02");
    /* Prefix case and a doubled trailing slash, as on the scheduler port. */
    UNIT_CHECK(parse("/QSEOW-Proxy-Session//;h;START SESSION;D;u;o;c;m") == UDP_DROP_NONE);
    UNIT_CHECK(event->kind == PROXY_SESSION_START);
}

static void test_four_field_layout(void)
{
    UNIT_CHECK(parse("CORP-SENSE01;Start session;CORP;jdoe") == UDP_DROP_NONE);
    UNIT_CHECK(event->four_field);
    UNIT_CHECK(event->kind == PROXY_SESSION_START);
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_HOST], "CORP-SENSE01");
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_USER_DIRECTORY], "CORP");
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_USER_ID], "jdoe");
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_ORIGIN], "");
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_CONTEXT], "");
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_MESSAGE], "");
    UNIT_CHECK(parse("CORP-SENSE01;Close connection;CORP;jdoe") == UDP_DROP_NONE);
    UNIT_CHECK(event->kind == PROXY_CONNECTION_CLOSE);
    /* A trailing CR LF (pattern with %newline) is stripped, not a fifth field. */
    UNIT_CHECK(parse("CORP-SENSE01;Stop session;CORP;jdoe\r\n") == UDP_DROP_NONE);
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_USER_ID], "jdoe");
    UNIT_CHECK(event->sanitized);
}

/* Contract 5: invalid UTF-8 is decoded as U+FFFD and the event still goes out. */
static void test_invalid_utf8(void)
{
    UNIT_CHECK(parse("/proxy-session/;h;Start session;CORP;F\xF6rs\xE4ljning;o;c;m \xC0\xAF") ==
               UDP_DROP_NONE);
    UNIT_CHECK(event->utf8_replaced);
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_USER_ID], "F\xEF\xBF\xBDrs\xEF\xBF\xBDljning");
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_MESSAGE], "m \xEF\xBF\xBD\xEF\xBF\xBD");
    /* Valid UTF-8 is kept as is. */
    UNIT_CHECK(parse("/proxy-session/;h;Start session;CORP;F\xC3\xB6rs\xC3\xA4ljning;o;c;m") ==
               UDP_DROP_NONE);
    UNIT_CHECK(!event->utf8_replaced);
    UNIT_CHECK_STR(event->fields[PROXY_FIELD_USER_ID], "F\xC3\xB6rs\xC3\xA4ljning");
    /* A mangled prefix (UTF-16, BOM) is not a proxy prefix, nor a host. */
    UNIT_CHECK(parse("\xEF\xBB\xBF/proxy-session/;h;Start session;CORP;u;o;c;m") ==
               UDP_DROP_PREFIX);
}

static void test_field_caps(void)
{
    char text[2000];
    char message[1200];
    memset(message, 'x', sizeof message - 1);
    message[sizeof message - 1] = '\0';
    snprintf(text, sizeof text, "/proxy-session/;h;Start session;D;u;o;c;%s", message);
    UNIT_CHECK(parse(text) == UDP_DROP_NONE);
    UNIT_CHECK(strlen(event->fields[PROXY_FIELD_MESSAGE]) == PROXY_FIELD_MAX_BYTES);
    UNIT_CHECK(event->sanitized);
    UNIT_CHECK(event->storage_used <= sizeof event->storage);
}

static void test_drop_reasons(void)
{
    /* size */
    const char *ok = "/proxy-session/;h;Start session;D;u;o;c;m";
    UNIT_CHECK(parse_len(ok, strlen(ok), 20) == UDP_DROP_SIZE);
    /* empty */
    UNIT_CHECK(parse("") == UDP_DROP_EMPTY);
    UNIT_CHECK(parse(" ;;;; ") == UDP_DROP_EMPTY);
    /* prefix: a scheduler datagram sent to the proxy port, an unknown prefix,
     * an unprefixed datagram that is not four fields */
    UNIT_CHECK(parse("/scheduler-task-failed/;h;t;a;u;5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91;;d;E;"
                     "x;m") == UDP_DROP_PREFIX);
    UNIT_CHECK(parse("/proxy-sessions/;h;Start session;D;u;o;c;m") == UDP_DROP_PREFIX);
    UNIT_CHECK(parse("/foo/;Start session;D;u") == UDP_DROP_PREFIX);
    UNIT_CHECK(parse("h;Start session;D") == UDP_DROP_PREFIX);
    UNIT_CHECK(parse("h;Start session;D;u;extra") == UDP_DROP_PREFIX);
    UNIT_CHECK(parse("just text") == UDP_DROP_PREFIX);
    /* field_count */
    UNIT_CHECK(parse("/proxy-session/;h;Start session;D;u;o;c") == UDP_DROP_FIELD_COUNT);
    UNIT_CHECK(parse("/proxy-session/") == UDP_DROP_FIELD_COUNT);
    /* command: unknown, or of the other kind than the prefix */
    UNIT_CHECK(parse("/proxy-session/;h;Begin session;D;u;o;c;m") == UDP_DROP_COMMAND);
    UNIT_CHECK(parse("/proxy-session/;h;Open connection;D;u;o;c;m") == UDP_DROP_COMMAND);
    UNIT_CHECK(parse("/proxy-connection/;h;Stop session;D;u;o;c;m") == UDP_DROP_COMMAND);
    UNIT_CHECK(parse("h;Logout;D;u") == UDP_DROP_COMMAND);
    /* user */
    UNIT_CHECK(parse("/proxy-session/;h;Start session;;u;o;c;m") == UDP_DROP_USER);
    UNIT_CHECK(parse("/proxy-session/;h;Start session;D;;o;c;m") == UDP_DROP_USER);
    UNIT_CHECK(parse("h;Start session;D;\x01\x02") == UDP_DROP_USER);
    UNIT_CHECK_STR(udp_drop_reason_name(UDP_DROP_COMMAND), "command");
    UNIT_CHECK_STR(udp_drop_reason_name(UDP_DROP_USER), "user");
}

static void test_commands(void)
{
    enum proxy_event_kind kind;
    UNIT_CHECK(proxy_event_kind_from_command("stop SESSION", &kind) && kind == PROXY_SESSION_STOP);
    UNIT_CHECK(proxy_event_kind_from_command("Open connection", &kind) &&
               kind == PROXY_CONNECTION_OPEN);
    UNIT_CHECK(!proxy_event_kind_from_command("Open  connection", &kind));
    UNIT_CHECK(!proxy_event_kind_from_command("", &kind));
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_proxy_session),
    UNIT_TEST(test_connection_message_with_semicolons),
    UNIT_TEST(test_qseow_layouts),
    UNIT_TEST(test_four_field_layout),
    UNIT_TEST(test_invalid_utf8),
    UNIT_TEST(test_field_caps),
    UNIT_TEST(test_drop_reasons),
    UNIT_TEST(test_commands),
    {0},
};
