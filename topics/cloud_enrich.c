/*
 * Enrichment of Qlik Cloud reload events (topics/cloud_enrich.h).
 */
#include "topics/cloud_enrich.h"

#include <stdio.h>
#include <string.h>

void cloud_enrich(const struct config_cloud_tenant *tenant, const struct cloud_event *event,
                  int script_log_tail_lines, struct cloud_enriched *out)
{
    (void)event;
    (void)script_log_tail_lines;
    memset(out, 0, sizeof *out);
    if (tenant->api_key[0] == '\0' && tenant->client_id[0] == '\0') {
        snprintf(out->error, sizeof out->error,
                 "no api_key or oauth.client_id configured for tenant %s", tenant->name);
        return;
    }
    snprintf(out->error, sizeof out->error, "REST enrichment is not built yet");
}

void cloud_enrich_teardown(void)
{
}
