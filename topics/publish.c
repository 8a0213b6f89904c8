#include "topics/publish.h"

#include <time.h>

#include "bridge/log.h"
#include "bridge/runtime.h"

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
