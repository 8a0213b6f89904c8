/* Proxy event helpers; see proxy_event.h. */
#include "bridge/model/proxy_event.h"

#include <strings.h>

static const struct {
    const char *command, *family, *action;
} kinds[] = {
    [PROXY_SESSION_START] = {"Start session", "session", "start"},
    [PROXY_SESSION_STOP] = {"Stop session", "session", "stop"},
    [PROXY_CONNECTION_OPEN] = {"Open connection", "connection", "open"},
    [PROXY_CONNECTION_CLOSE] = {"Close connection", "connection", "close"},
};

enum { KIND_COUNT = sizeof kinds / sizeof kinds[0] };

const char *proxy_event_family(enum proxy_event_kind kind)
{
    return (unsigned)kind < KIND_COUNT ? kinds[kind].family : "unknown";
}

const char *proxy_event_action(enum proxy_event_kind kind)
{
    return (unsigned)kind < KIND_COUNT ? kinds[kind].action : "unknown";
}

bool proxy_event_kind_from_command(const char *command, enum proxy_event_kind *kind)
{
    for (size_t i = 0; i < KIND_COUNT; i++) {
        if (strcasecmp(command, kinds[i].command) == 0) {
            *kind = (enum proxy_event_kind)i;
            return true;
        }
    }
    return false;
}
