/*
 * The Sense event's helpers (see sense_event.h). Pure.
 */
#include "bridge/model/sense_event.h"

const char *sense_event_outcome(enum sense_event_type type)
{
    switch (type) {
    case SENSE_EVENT_TASK_FAILED:
        return "failed";
    case SENSE_EVENT_TASK_ABORTED:
        return "aborted";
    case SENSE_EVENT_TASK_SUCCESS:
        return "success";
    case SENSE_EVENT_DISTRIBUTE:
        return "distribute";
    case SENSE_EVENT_ENGINE_RELOAD_FAILED:
        return "reload-failed";
    }
    return "unknown";
}

static bool is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool sense_is_guid(const char *text, size_t length)
{
    if (length != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? text[i] != '-' : !is_hex((unsigned char)text[i]))
            return false;
    }
    return true;
}
