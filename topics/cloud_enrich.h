/*
 * What the tenant's REST API adds to a Qlik Cloud reload event
 * (topics/cloud.c): app name, owner, space and tags, the reload's times and
 * the tail of its script log.
 */
#ifndef BUTLER_TOPICS_CLOUD_ENRICH_H
#define BUTLER_TOPICS_CLOUD_ENRICH_H

#include <stdbool.h>
#include <stddef.h>

#include "bridge/model/cloud_event.h"
#include "config/config.h"

enum { CLOUD_TAGS_MAX = 64 };

struct cloud_enriched {
    char app_name[CLOUD_TEXT_MAX];
    char owner_id[CLOUD_ID_MAX];
    char owner_name[CLOUD_TEXT_MAX];
    char owner_email[CLOUD_TEXT_MAX];
    char space_id[CLOUD_ID_MAX];
    char start_time[CLOUD_TEXT_MAX];
    char end_time[CLOUD_TEXT_MAX];
    size_t tag_count;
    char tags[CLOUD_TAGS_MAX][CLOUD_ID_MAX];
    char *script_log_tail; /* owned (free()); NULL = none */
    char error[256];       /* "" = every call worked */
};

/*
 * Fill *out for `event` of `tenant` (worker thread; blocks on the tenant's
 * API, each call bounded by its timeouts). Fields the API could not give
 * stay ""; out->error says why. The caller frees out->script_log_tail.
 */
void cloud_enrich(const struct config_cloud_tenant *tenant, const struct cloud_event *event,
                  int script_log_tail_lines, struct cloud_enriched *out);

/* Stop using the tenants' clients (shutdown, after the workers). */
void cloud_enrich_teardown(void);

#endif
