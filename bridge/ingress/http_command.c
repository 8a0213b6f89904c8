/*
 * Publish-and-wait for the HTTP endpoints (see http_command.h).
 */
#include "bridge/ingress/http_command.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/core/clock.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/link/mqtt_link.h"
#include "bridge/model/task_result.h"

#define MODULE "http"

static const char *const retry_after[] = {"Retry-After", "5", NULL};

/* Requests in a long wait now, across every worker thread. */
static atomic_int long_waits;

int http_command_long_waits(void)
{
    return atomic_load(&long_waits);
}

bool http_command_publish(struct http_exchange *exchange, const char *topic, const char *payload,
                          size_t length, int qos, bool retain, int timeout_ms)
{
    struct mqtt_link *link = exchange->runtime->link;
    if (timeout_ms <= 0 || !mqtt_link_connected(link)) {
        http_exchange_reply_error(exchange, 503, "the MQTT broker is unreachable; try again later",
                                  retry_after);
        return false;
    }
    struct mqtt_publish_options options = {.qos = qos, .retain = retain};
    enum butler_status status =
        mqtt_link_publish_wait(link, topic, payload, length, &options, timeout_ms);
    if (status == BUTLER_OK)
        return true;
    if (status == BUTLER_ERR_INVALID) {
        http_exchange_reply_error(exchange, 400, "the broker link refused this topic or payload",
                                  NULL);
        return false;
    }
    char message[160];
    snprintf(message, sizeof message, "the MQTT broker did not acknowledge the message (%s)",
             butler_status_str(status));
    LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "publish to %s: %s", topic, butler_status_str(status));
    http_exchange_reply_error(exchange, 503, message, retry_after);
    return false;
}

/* Take a long-wait slot; false (answered 503, counted) when all are taken. */
static bool take_long_wait(struct http_exchange *exchange)
{
    const struct butler_config *config = exchange->runtime->config;
    const int max = config->http.long_waits_max ? config->http.long_waits_max
                    : config->http.threads >= 8 ? config->http.threads / 4
                                                : 1;
    int now = atomic_load(&long_waits);
    do {
        if (now >= max) {
            metrics_count("butler_http_long_wait_refused_total", "",
                          "Long-waiting HTTP requests refused because http.long_waits_max "
                          "were already waiting");
            LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                            "%d long-waiting requests already in progress (http.long_waits_max): "
                            "answered 503",
                            max);
            http_exchange_reply_error(exchange, 503,
                                      "too many long-waiting requests in progress; try again later",
                                      retry_after);
            return false;
        }
    } while (!atomic_compare_exchange_weak(&long_waits, &now, now + 1));
    return true;
}

enum http_command_outcome http_command_run(struct http_exchange *exchange,
                                           const struct http_command *command, char **answer,
                                           size_t *answer_length)
{
    const struct butler_config *config = exchange->runtime->config;
    const uint64_t deadline = clock_monotonic_ms() + (uint64_t)command->publish_timeout_ms;
    enum http_command_outcome outcome = HTTP_COMMAND_FAILED;
    struct task_result_waiter *waiter = NULL;
    bool slot = false;
    *answer = NULL;
    *answer_length = 0;
    if (command->long_wait) {
        if (!take_long_wait(exchange))
            goto out;
        slot = true;
    }
    if (command->request_id && task_result_register(command->request_id, &waiter) != BUTLER_OK) {
        http_exchange_reply_error(exchange, 503, "too many requests waiting for their result",
                                  retry_after);
        goto out;
    }
    char topic[512];
    snprintf(topic, sizeof topic, "%s/%s", config->mqtt.topic_root, command->topic_suffix);
    if (!http_command_publish(exchange, topic, command->payload, strlen(command->payload), 1, false,
                              (int)(deadline - clock_monotonic_ms())))
        goto out;
    if (command->request_id == NULL) {
        outcome = HTTP_COMMAND_PUBLISHED;
        goto out;
    }
    uint64_t now = clock_monotonic_ms();
    int wait_ms = command->answer_timeout_ms >= 0 ? command->answer_timeout_ms
                  : now < deadline                ? (int)(deadline - now)
                                                  : 0;
    if (wait_ms <= 0 || task_result_wait(waiter, wait_ms, answer, answer_length) != BUTLER_OK) {
        free(*answer);
        *answer = NULL;
        *answer_length = 0;
        if (command->pending_metric)
            metrics_count(command->pending_metric, "", command->pending_help);
        outcome = HTTP_COMMAND_PENDING;
        goto out;
    }
    outcome = HTTP_COMMAND_ANSWERED;
out:
    task_result_release(waiter);
    if (slot)
        atomic_fetch_sub(&long_waits, 1);
    return outcome;
}
