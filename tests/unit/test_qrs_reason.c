/*
 * qrs_plain_reason: what a task-start answer says about a failed QRS call.
 * Transport errors name internal hosts and ports (issue 24 section 5); they
 * belong in the log, never in an answer.
 */
#include <stdio.h>
#include <string.h>

#include "bridge/clients/qrs.h"
#include "unit.h"

static void reason_for(enum butler_status status, long http_status, const char *error, char *out,
                       size_t out_size)
{
    struct qrs_result result = {.http_status = http_status};
    snprintf(result.error, sizeof result.error, "%s", error);
    qrs_plain_reason(status, &result, out, out_size);
}

static void test_transport_errors_carry_no_host_or_port(void)
{
    char reason[128];
    reason_for(BUTLER_ERR_RETRYABLE, 0,
               "QRS GET task/full: Failed to connect to qrs.internal.example port 4242 after 0 "
               "ms: Couldn't connect to server",
               reason, sizeof reason);
    UNIT_CHECK_STR(reason, "QRS could not be reached");
    reason_for(BUTLER_ERR_RETRYABLE, 0,
               "QRS POST task/start: Operation timed out after 3000 milliseconds with 0 bytes "
               "received from 10.0.0.7:4242",
               reason, sizeof reason);
    UNIT_CHECK_STR(reason, "QRS did not answer in time");
    reason_for(BUTLER_ERR_REMOTE, 0, "QRS GET task/full: SSL certificate problem at 10.0.0.7",
               reason, sizeof reason);
    UNIT_CHECK_STR(reason, "QRS could not be reached");
}

static void test_answers_from_qrs_say_the_status(void)
{
    char reason[128];
    reason_for(BUTLER_ERR_RETRYABLE, 503, "QRS POST task/start: HTTP 503: busy at host:4242",
               reason, sizeof reason);
    UNIT_CHECK_STR(reason, "QRS answered HTTP 503");
    reason_for(BUTLER_ERR_REMOTE, 200, "QRS task/full did not answer an array", reason,
               sizeof reason);
    UNIT_CHECK_STR(reason, "QRS answered with something Butler cannot read");
}

static void test_not_configured_and_shutdown(void)
{
    char reason[128];
    reason_for(BUTLER_ERR_REMOTE, 0, "QRS is not configured (qrs.url is empty)", reason,
               sizeof reason);
    UNIT_CHECK_STR(reason, "QRS is not configured (qrs.url is empty)");
    reason_for(BUTLER_ERR_SHUTDOWN, 0, "", reason, sizeof reason);
    UNIT_CHECK_STR(reason, "Butler is stopping");
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_transport_errors_carry_no_host_or_port),
    UNIT_TEST(test_answers_from_qrs_say_the_status),
    UNIT_TEST(test_not_configured_and_shutdown),
    {0},
};
