/*
 * The Node.js Butler's measurements; see route_influxdb_node.h. Names, tags
 * and fields follow the reference (7.5), including its spelling
 * (task_exeuctionStatusText).
 */
#include "topics/route_influxdb_node.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/core/clock.h"
#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "topics/route_influxdb.h"

#define MODULE "influxdb"

enum { LINES_MAX = 512 * 1024, TAG_NAME_MAX = 300 };

enum node_kind {
    NODE_NONE,
    NODE_TASK_FAILED,
    NODE_TASK_SUCCESS,
    NODE_SERVER_LICENSE,
    NODE_ACCESS_LICENSE,
    NODE_LICENSE_RELEASE,
    NODE_VERSION,
};

static const struct {
    const char *suffix; /* after "<root>/" */
    enum node_kind kind;
} node_topics[INFLUXDB_NODE_FILTERS] = {
    {"events/task/failed/+", NODE_TASK_FAILED},
    {"events/task/success/+", NODE_TASK_SUCCESS},
    {"sense/license/server", NODE_SERVER_LICENSE},
    {"sense/license/access", NODE_ACCESS_LICENSE},
    {"events/license/released/+", NODE_LICENSE_RELEASE},
    {"events/sense/version/changed", NODE_VERSION},
};

size_t route_influxdb_node_filters(const struct butler_config *config,
                                   char filters[][INFLUXDB_NODE_FILTER_MAX], size_t max)
{
    size_t n = 0;
    if (!config->influxdb.node_measurements || !config->influxdb.url[0])
        return 0;
    for (size_t i = 0; i < INFLUXDB_NODE_FILTERS && n < max; i++)
        snprintf(filters[n++], INFLUXDB_NODE_FILTER_MAX, "%s/%s", config->mqtt.topic_root,
                 node_topics[i].suffix);
    return n;
}

/* Which measurement `topic` feeds: its level after the root matched against
 * each suffix ('+' one level). */
static enum node_kind kind_of(const struct butler_config *config, const char *topic)
{
    if (!config->influxdb.node_measurements || !config->influxdb.url[0])
        return NODE_NONE;
    size_t root = strlen(config->mqtt.topic_root);
    if (strncmp(topic, config->mqtt.topic_root, root) != 0 || topic[root] != '/')
        return NODE_NONE;
    const char *rest = topic + root + 1;
    for (size_t i = 0; i < INFLUXDB_NODE_FILTERS; i++)
        if (mqtt_topic_matches(node_topics[i].suffix, rest))
            return node_topics[i].kind;
    return NODE_NONE;
}

bool route_influxdb_node_wanted(const struct butler_config *config, const char *topic)
{
    return kind_of(config, topic) != NODE_NONE;
}

static const char *text(const cJSON *object, const char *name)
{
    const char *value = json_string_member(object, name);
    return value ? value : "";
}

static void static_tags(const struct butler_config *config, struct line_protocol *lp)
{
    for (size_t i = 0; i < config->influxdb.tags.count; i++)
        lp_tag(lp, config->influxdb.tags.items[i].name, config->influxdb.tags.items[i].value);
}

/* A JSON number as an integer field, when it is one. */
static void int_field(struct line_protocol *lp, const char *key, const cJSON *object,
                      const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    if (cJSON_IsNumber(item) && item->valuedouble > -9e15 && item->valuedouble < 9e15)
        lp_field_int(lp, key, (long long)item->valuedouble);
}

/* `prefix<tag>` = "true" for each string of the array `name` in `qrs`. */
static void tag_flags(struct line_protocol *lp, const cJSON *qrs, const char *name,
                      const char *prefix)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(qrs, name))
    {
        if (!cJSON_IsString(item))
            continue;
        char tag[TAG_NAME_MAX];
        snprintf(tag, sizeof tag, "%s%s", prefix, item->valuestring);
        lp_tag(lp, tag, "true");
    }
}

static size_t task_point(const struct butler_config *config, const char *measurement,
                         const cJSON *event, int64_t time_ns, struct line_protocol *lp)
{
    const cJSON *qrs = cJSON_GetObjectItemCaseSensitive(event, "qrs");
    if (lp_begin(lp, measurement) != BUTLER_OK)
        return 0;
    lp_tag(lp, "host", text(event, "host"));
    lp_tag(lp, "user", text(event, "user"));
    lp_tag(lp, "task_id", text(event, "taskId"));
    lp_tag(lp, "task_name", text(event, "taskName"));
    lp_tag(lp, "app_id", text(event, "appId"));
    lp_tag(lp, "app_name", text(event, "appName"));
    lp_tag(lp, "log_level", text(event, "level"));
    lp_tag(lp, "task_exeuctionStatusText", text(qrs, "executionStatus"));
    tag_flags(lp, qrs, "appTags", "appTag_");
    tag_flags(lp, qrs, "taskTags", "taskTag_");
    static_tags(config, lp);
    lp_field_string(lp, "log_timestamp", text(event, "logTimestamp"));
    lp_field_string(lp, "execution_id", text(event, "executionId"));
    lp_field_string(lp, "log_message", text(event, "message"));
    const char *log = text(qrs, "scriptLogTail");
    lp_field_string(lp, "scriptLog", log[0] ? log : "Script log not available");
    return lp_end(lp, time_ns) == BUTLER_OK;
}

static size_t access_points(const struct butler_config *config, const cJSON *report,
                            int64_t time_ns, struct line_protocol *lp)
{
    static const struct {
        const char *type, *license_type;
        const char *fields[6][2]; /* {field, QRS member} */
    } types[] = {
        {"professional",
         "professional",
         {{"allocated", "allocated"},
          {"available", "available"},
          {"excess", "excess"},
          {"quarantined", "quarantined"},
          {"total", "total"},
          {"used", "used"}}},
        {"analyzer",
         "analyzer",
         {{"allocated", "allocated"},
          {"available", "available"},
          {"excess", "excess"},
          {"quarantined", "quarantined"},
          {"total", "total"},
          {"used", "used"}}},
        {"analyzer_time",
         "analyzer_capacity",
         {{"allocated_minutes", "allocatedMinutes"},
          {"unavailable_minutes", "unavailableMinutes"},
          {"used_minutes", "usedMinutes"}}},
        {"login",
         "token_login",
         {{"allocated_tokens", "allocatedTokens"},
          {"token_cost", "tokenCost"},
          {"unavailable_tokens", "unavailableTokens"},
          {"used_tokens", "usedTokens"}}},
        {"user",
         "token_user",
         {{"allocated_tokens", "allocatedTokens"},
          {"quarantined_tokens", "quarantinedTokens"},
          {"token_cost", "tokenCost"},
          {"used_tokens", "usedTokens"}}},
    };
    size_t points = 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const cJSON *numbers = cJSON_GetObjectItemCaseSensitive(report, types[i].type);
        if (!cJSON_IsObject(numbers) || lp_begin(lp, "qlik_sense_license") != BUTLER_OK)
            continue;
        lp_tag(lp, "license_type", types[i].license_type);
        static_tags(config, lp);
        for (size_t f = 0; f < 6 && types[i].fields[f][0]; f++)
            int_field(lp, types[i].fields[f][0], numbers, types[i].fields[f][1]);
        /* One series per type (the license_type tag): the same time is fine. */
        points += lp_end(lp, time_ns) == BUTLER_OK;
    }
    return points;
}

size_t route_influxdb_node_points(const struct butler_config *config, const char *topic,
                                  const cJSON *event, uint64_t received_wall_ms, uint64_t *sequence,
                                  struct line_protocol *lp)
{
    enum node_kind kind = kind_of(config, topic);
    if (kind == NODE_NONE || !cJSON_IsObject(event))
        return 0;
    int64_t time_ns = route_influxdb_time_ns(event, received_wall_ms, (*sequence)++);
    switch (kind) {
    case NODE_TASK_FAILED:
        return task_point(config, "reload_task_failed", event, time_ns, lp);
    case NODE_TASK_SUCCESS:
        return task_point(config, "reload_task_success", event, time_ns, lp);
    case NODE_SERVER_LICENSE: {
        if (lp_begin(lp, "qlik_sense_server_license") != BUTLER_OK)
            return 0;
        static_tags(config, lp);
        const cJSON *expired = cJSON_GetObjectItemCaseSensitive(event, "expired");
        if (cJSON_IsBool(expired))
            lp_field_bool(lp, "license_expired", cJSON_IsTrue(expired));
        lp_field_string(lp, "expiry_date", text(event, "expiresAt"));
        int_field(lp, "days_until_expiry", event, "daysLeft");
        return lp_end(lp, time_ns) == BUTLER_OK;
    }
    case NODE_ACCESS_LICENSE:
        return access_points(config, event, time_ns, lp);
    case NODE_LICENSE_RELEASE: {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(event, "dryRun")) ||
            lp_begin(lp, "qlik_sense_license_release") != BUTLER_OK)
            return 0; /* a dry run released nothing */
        char user[600];
        snprintf(user, sizeof user, "%s\\%s", text(event, "userDirectory"), text(event, "userId"));
        const char *slash = strrchr(topic, '/');
        lp_tag(lp, "license_type", slash ? slash + 1 : "");
        lp_tag(lp, "user", user);
        static_tags(config, lp);
        int_field(lp, "days_since_last_use", event, "daysSinceLastUse");
        return lp_end(lp, time_ns) == BUTLER_OK;
    }
    case NODE_VERSION: {
        /* Only the version: the other fields come from the product-info
         * endpoint Butler does not read (docs/influxdb.md). */
        if (lp_begin(lp, "qlik_sense_version") != BUTLER_OK)
            return 0;
        static_tags(config, lp);
        lp_field_string(lp, "version", text(event, "to"));
        return lp_end(lp, time_ns) == BUTLER_OK;
    }
    case NODE_NONE:
        break;
    }
    return 0;
}

enum butler_status route_influxdb_node_memory(const struct butler_config *config,
                                              uint64_t heap_used, uint64_t heap_total,
                                              uint64_t mapped, uint64_t rss, int64_t time_ns,
                                              struct line_protocol *lp)
{
    const double mb = 1024.0 * 1024.0;
    enum butler_status status = lp_begin(lp, "butler_memory_usage");
    if (status != BUTLER_OK)
        return status;
    lp_tag(lp, "version", BUTLER_VERSION);
    static_tags(config, lp);
    lp_field_float(lp, "heap_used", (double)heap_used / mb);
    lp_field_float(lp, "heap_total", (double)heap_total / mb);
    lp_field_float(lp, "external", (double)mapped / mb);
    lp_field_float(lp, "process_memory", (double)rss / mb);
    return lp_end(lp, time_ns);
}

/* VmRSS of this process in bytes, 0 when unknown. */
static uint64_t rss_bytes(void)
{
    FILE *file = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kb = 0;
    while (file && fgets(line, sizeof line, file))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtoull(line + 6, NULL, 10);
            break;
        }
    if (file)
        fclose(file);
    return (uint64_t)kb * 1024u;
}

void route_influxdb_node_memory_now(const struct butler_config *config)
{
    struct mallinfo2 info = mallinfo2();
    struct line_protocol lp;
    lp_init(&lp, 4096);
    int64_t time_ns = (int64_t)clock_wall_ms() * 1000000;
    /* Heap: what the allocator handed out and holds (arenas and mmapped
     * blocks); "external" (V8's) becomes the allocator's mmapped blocks. */
    if (route_influxdb_node_memory(config, info.uordblks + info.hblkhd, info.arena + info.hblkhd,
                                   info.hblkhd, rss_bytes(), time_ns, &lp) == BUTLER_OK)
        (void)route_influxdb_add(lp.data, lp.used, "butler_memory_usage", 0);
    lp_free(&lp);
}

bool route_influxdb_node_take(const struct butler_config *config,
                              const struct topic_message *message, const cJSON *event)
{
    struct line_protocol lp;
    lp_init(&lp, LINES_MAX);
    /* As in route_influxdb_take: a replayed message makes the same points. */
    uint64_t sequence = message->spool_id ? message->spool_id : route_influxdb_next_sequence(1);
    size_t points = route_influxdb_node_points(config, message->topic, event,
                                               message->received_wall_ms, &sequence, &lp);
    bool kept = false;
    const char *line = lp.data, *end = lp.data ? lp.data + lp.used : NULL;
    /* One point per line (node fields hold no raw newline but scriptLog's,
     * which is quoted): add each; the message's spool id rides with the last,
     * so it is finished only when all its points are spooled. */
    for (size_t i = 0; i < points && line < end; i++) {
        size_t length = route_influxdb_line_length(line, (size_t)(end - line));
        bool last = i + 1 == points;
        enum butler_status status =
            route_influxdb_add(line, length, message->topic, last ? message->spool_id : 0);
        if (status != BUTLER_OK) {
            LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "node measurement from %s not queued: %s",
                            message->topic, butler_status_str(status));
            kept = status == BUTLER_ERR_SHUTDOWN && message->spool_id != 0;
            break;
        }
        kept = last && message->spool_id != 0;
        line += length;
    }
    lp_free(&lp);
    return kept;
}
