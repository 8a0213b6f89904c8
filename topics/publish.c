#include "topics/publish.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge/clock.h"
#include "bridge/log.h"
#include "bridge/metrics.h"
#include "bridge/runtime.h"
#include "topics/task_start.h"

#define MODULE "publish"

enum { ACK_TIMEOUT_MS = 10000, RECONNECT_WAIT_MS = 1000 };

enum butler_status publish_reliably(const char *topic, const void *payload, size_t payload_length,
                                    const struct mqtt_publish_options *options)
{
    struct butler_runtime *runtime = butler_runtime_current;
    enum butler_status status;
    bool final_try = false;
    for (;;) {
        status = mqtt_link_publish_wait(runtime->link, topic, payload, payload_length, options,
                                        ACK_TIMEOUT_MS);
        if (status == BUTLER_OK || status == BUTLER_ERR_INVALID || status == BUTLER_ERR_NOMEM)
            return status;
        /* At shutdown, one more try once the link had its chance, then give up:
         * the caller's work stays unfinished and is redelivered by the broker. */
        if (final_try)
            return BUTLER_ERR_SHUTDOWN;
        if (butler_runtime_stopping())
            final_try = true;
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "publish to %s waiting: %s", topic,
                        butler_status_str(status));
        mqtt_link_wait_connected(runtime->link, RECONNECT_WAIT_MS);
        if (status == BUTLER_ERR_FULL || status == BUTLER_ERR_TIMEOUT) {
            struct timespec pause = {0, 50 * 1000000L};
            nanosleep(&pause, NULL);
        }
    }
}

void publish_deadletter(const char *family, const char *topic, const unsigned char *payload,
                        size_t payload_length, const char *error, int attempts,
                        uint64_t first_attempt_wall_ms)
{
    const struct butler_config *config = butler_runtime_current->config;
    char letter_topic[1024];
    char first[32];
    char labels[96];
    char *text = NULL;
    cJSON *letter = cJSON_CreateObject();
    if (letter == NULL)
        goto out;
    snprintf(letter_topic, sizeof letter_topic, "%s/deadletter/%s", config->mqtt.topic_root, topic);
    clock_format_iso8601(first_attempt_wall_ms, first, sizeof first);
    bool printable = payload && task_valid_utf8(payload, payload_length);
    cJSON_AddStringToObject(letter, "topic", topic);
    cJSON_AddStringToObject(letter, "payload", printable ? (const char *)payload : "");
    cJSON_AddStringToObject(letter, "error", error ? error : "");
    cJSON_AddNumberToObject(letter, "attempts", attempts);
    cJSON_AddStringToObject(letter, "firstAttemptAt", first);
    text = cJSON_PrintUnformatted(letter);
    if (text == NULL)
        goto out;
    if (publish_reliably(letter_topic, text, strlen(text),
                         &(struct mqtt_publish_options){.qos = 1}) != BUTLER_OK) {
        LOG_ERROR(MODULE, "could not publish the dead letter for %s", topic);
        goto out;
    }
    snprintf(labels, sizeof labels, "family=\"%s\"", family);
    metrics_count("butler_deadletters_total", labels,
                  "Work that failed for good and went to <root>/deadletter/");
out:
    cJSON_Delete(letter);
    free(text);
}
