/*
 * The pure parts of routes (unit-tested): filter coverage, the default alert
 * text, rate-limit keys and RFC 5322 e-mails. No I/O, no globals; any thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "topics/route_internal.h"
#include "topics/template.h"

enum {
    EMAIL_MAX_BYTES = 1 << 20,
};

/* Split off the next '/'-separated level of *p; returns its length. */
static size_t next_level(const char **p, const char **level)
{
    *level = *p;
    const char *slash = strchr(*p, '/');
    size_t length = slash ? (size_t)(slash - *p) : strlen(*p);
    *p = slash ? slash + 1 : NULL;
    return length;
}

bool route_filter_covers(const char *a, const char *b)
{
    const char *pa = a, *pb = b;
    while (pa && pb) {
        const char *la, *lb;
        size_t na = next_level(&pa, &la);
        size_t nb = next_level(&pb, &lb);
        if (na == 1 && la[0] == '#')
            return true;
        if (nb == 1 && lb[0] == '#')
            return false; /* b goes deeper than a non-# level of a can */
        if (na == 1 && la[0] == '+')
            continue;
        if (na != nb || memcmp(la, lb, na) != 0)
            return false;
    }
    if (pa && strcmp(pa, "#") == 0)
        return true; /* "x/#" also matches "x" */
    return pa == NULL && pb == NULL;
}

/* True when some topic is matched by both filters `a` and `b`. */
bool route_filters_overlap(const char *a, const char *b)
{
    const char *pa = a, *pb = b;
    while (pa && pb) {
        const char *la, *lb;
        size_t na = next_level(&pa, &la);
        size_t nb = next_level(&pb, &lb);
        if ((na == 1 && la[0] == '#') || (nb == 1 && lb[0] == '#'))
            return true;
        if ((na == 1 && la[0] == '+') || (nb == 1 && lb[0] == '+'))
            continue;
        if (na != nb || memcmp(la, lb, na) != 0)
            return false;
    }
    if (pa == NULL && pb == NULL)
        return true;
    /* One ended: "x/#" also matches "x". */
    return strcmp(pa ? pa : pb, "#") == 0;
}

enum butler_status route_filter_join(const char *a, const char *b, char *out, size_t size)
{
    const char *pa = a, *pb = b;
    size_t used = 0;
    bool done = false;
    if (size == 0)
        return BUTLER_ERR_TOO_LARGE;
    out[0] = '\0';
    while (!done && (pa || pb)) {
        const char *la = "#", *lb = "#", *level;
        size_t na = 1, nb = 1, n;
        /* A filter that ended before the other: the rest is covered only by '#'. */
        if (pa)
            na = next_level(&pa, &la);
        if (pb)
            nb = next_level(&pb, &lb);
        if ((na == 1 && la[0] == '#') || (nb == 1 && lb[0] == '#')) {
            level = "#", n = 1, done = true;
        } else if (na == nb && memcmp(la, lb, na) == 0) {
            level = la, n = na;
        } else {
            level = "+", n = 1;
        }
        if (used + n + 2 > size)
            return BUTLER_ERR_TOO_LARGE;
        if (used > 0)
            out[used++] = '/';
        memcpy(out + used, level, n);
        used += n;
        out[used] = '\0';
    }
    return BUTLER_OK;
}

enum butler_status route_subscription_plan(const char *const *filters, size_t count,
                                           bool (*refuse)(const char *joined, const char *a,
                                                          const char *b, void *context),
                                           void *context, char **out, size_t out_max,
                                           size_t *out_count, size_t *unjoined)
{
    enum butler_status status = BUTLER_OK;
    size_t n = 0;
    char joined[ROUTE_FILTER_MAX];
    *out_count = 0;
    *unjoined = 0;
    if (count > out_max)
        return BUTLER_ERR_TOO_LARGE;
    for (size_t i = 0; i < count; i++) {
        bool seen = false;
        for (size_t j = 0; j < n && !seen; j++)
            seen = strcmp(out[j], filters[i]) == 0;
        if (seen)
            continue;
        if ((out[n] = strdup(filters[i])) == NULL) {
            status = BUTLER_ERR_NOMEM;
            goto out;
        }
        n++;
    }
    /* Each accepted join removes one filter, so this ends after < count rounds. */
    for (bool changed = true; changed;) {
        changed = false;
        *unjoined = 0;
        for (size_t i = 0; i < n && !changed; i++) {
            for (size_t j = 0; j < n && !changed; j++) {
                if (i == j || !route_filters_overlap(out[i], out[j]))
                    continue;
                bool covered = route_filter_covers(out[i], out[j]);
                if (!covered) {
                    status = route_filter_join(out[i], out[j], joined, sizeof joined);
                    if (status != BUTLER_OK)
                        goto out;
                    if (refuse && refuse(joined, out[i], out[j], context)) {
                        if (i < j)
                            (*unjoined)++;
                        continue;
                    }
                    char *copy = strdup(joined);
                    if (copy == NULL) {
                        status = BUTLER_ERR_NOMEM;
                        goto out;
                    }
                    free(out[i]);
                    out[i] = copy;
                }
                /* out[i] now covers out[j]: drop out[j]. */
                free(out[j]);
                out[j] = out[--n];
                out[n] = NULL;
                changed = true;
            }
        }
    }
out:
    if (status != BUTLER_OK) {
        for (size_t i = 0; i < n; i++) {
            free(out[i]);
            out[i] = NULL;
        }
        n = 0;
    }
    *out_count = n;
    return status;
}

/* A bounded text builder: appends stop at `max`; never fails but for memory. */
struct text {
    char *data;
    size_t used, max;
    bool failed;
};

static void text_add(struct text *text, const char *s, size_t n)
{
    if (text->failed || n == 0)
        return;
    if (text->data == NULL) {
        text->data = malloc(text->max + 1);
        if (text->data == NULL) {
            text->failed = true;
            return;
        }
    }
    if (n > text->max - text->used) {
        n = text->max - text->used;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--; /* keep UTF-8 whole */
    }
    memcpy(text->data + text->used, s, n);
    text->used += n;
}

static void text_str(struct text *text, const char *s)
{
    text_add(text, s, strlen(s));
}

static enum butler_status text_finish(struct text *text, char **out)
{
    text_add(text, "", 0);
    if (text->data == NULL && !text->failed)
        text->data = malloc(text->max + 1);
    if (text->failed || text->data == NULL) {
        free(text->data);
        return BUTLER_ERR_NOMEM;
    }
    text->data[text->used] = '\0';
    *out = text->data;
    return BUTLER_OK;
}

/* "Label: value\n" when value is not empty. */
static void text_line(struct text *text, const char *label, const char *value)
{
    if (value == NULL || value[0] == '\0')
        return;
    text_str(text, label);
    text_str(text, value);
    text_str(text, "\n");
}

/* A Qlik Cloud reload event (<root>/events/cloud/reload/..., topics/cloud.c):
 * its own fields; the first line is also an e-mail's default subject. */
static enum butler_status cloud_text(const cJSON *event, struct text *text, char **out)
{
    bool failed = strcmp(route_json_string(event, "status"), "error") == 0;
    const char *app_name = route_json_string(event, "appName");
    const char *app_id = route_json_string(event, "appId");
    text_str(text, failed ? "Qlik Cloud reload failed: " : "Qlik Cloud reload succeeded: ");
    text_str(text, app_name[0] ? app_name : app_id);
    text_str(text, " (tenant ");
    text_str(text, route_json_string(event, "tenant"));
    text_str(text, ")\n");
    text_line(text, "App id: ", app_id);
    text_line(text, "Reload id: ", route_json_string(event, "reloadId"));
    text_line(text, "Started: ", route_json_string(event, "startTime"));
    text_line(text, "Ended: ", route_json_string(event, "endTime"));
    const cJSON *duration = cJSON_GetObjectItemCaseSensitive(event, "durationMs");
    if (cJSON_IsNumber(duration)) {
        char seconds[32];
        snprintf(seconds, sizeof seconds, "%.1f s", duration->valuedouble / 1000.0);
        text_line(text, "Duration: ", seconds);
    }
    const cJSON *owner = cJSON_GetObjectItemCaseSensitive(event, "owner");
    const char *owner_name = route_json_string(owner, "name");
    const char *owner_email = route_json_string(owner, "email");
    if (owner_name[0] || owner_email[0]) {
        text_str(text, "Owner: ");
        text_str(text, owner_name[0] ? owner_name : route_json_string(owner, "id"));
        if (owner_email[0]) {
            text_str(text, " <");
            text_str(text, owner_email);
            text_str(text, ">");
        }
        text_str(text, "\n");
    }
    const cJSON *error;
    cJSON_ArrayForEach(error, cJSON_GetObjectItemCaseSensitive(event, "errors"))
    {
        if (cJSON_IsString(error))
            text_line(text, "Error: ", error->valuestring);
    }
    const char *tail = route_json_string(event, "scriptLogTail");
    if (tail[0]) {
        text_str(text, "Script log (last lines):\n");
        text_str(text, tail);
        text_str(text, "\n");
    }
    text_line(text, "Not enriched: ", route_json_string(event, "enrichError"));
    if (text->used > 0 && text->data && text->data[text->used - 1] == '\n')
        text->used--;
    return text_finish(text, out);
}

enum butler_status route_default_text(const cJSON *event, const char *topic, const char *payload,
                                      const char *qmc_url, const char *hub_url, char **out)
{
    struct text text = {.max = ROUTE_TEXT_MAX};
    const char *type = route_json_string(event, "type");
    static const struct {
        const char *type, *headline;
    } headlines[] = {
        {"failed", "Qlik Sense task failed"},
        {"aborted", "Qlik Sense task aborted"},
        {"success", "Qlik Sense task succeeded"},
        {"distribute", "Qlik Sense distribute task finished"},
        {"engine-reload-failed", "Qlik Sense engine reload failed"},
    };
    const char *headline = NULL;
    for (size_t i = 0; i < sizeof headlines / sizeof headlines[0]; i++)
        if (strcmp(type, headlines[i].type) == 0)
            headline = headlines[i].headline;
    if (headline == NULL && route_json_string(event, "tenantId")[0] &&
        route_json_string(event, "reloadId")[0])
        return cloud_text(event, &text, out);
    if (headline == NULL) {
        /* Not a Sense event: say where it came from and show it. */
        text_str(&text, "Message on ");
        text_str(&text, topic);
        text_str(&text, ":\n");
        text_str(&text, payload ? payload : "");
        return text_finish(&text, out);
    }
    text_str(&text, headline);
    const char *task_name = route_json_string(event, "taskName");
    if (task_name[0]) {
        text_str(&text, ": ");
        text_str(&text, task_name);
    }
    text_str(&text, "\n");
    const char *app_name = route_json_string(event, "appName");
    const char *app_id = route_json_string(event, "appId");
    if (app_name[0] || app_id[0]) {
        text_str(&text, "App: ");
        text_str(&text, app_name[0] ? app_name : app_id);
        if (app_name[0] && app_id[0]) {
            text_str(&text, " (");
            text_str(&text, app_id);
            text_str(&text, ")");
        }
        text_str(&text, "\n");
    }
    text_line(&text, "Task id: ", route_json_string(event, "taskId"));
    text_line(&text, "Host: ", route_json_string(event, "host"));
    text_line(&text, "Time: ", route_json_string(event, "logTimestamp"));
    text_line(&text, "User: ", route_json_string(event, "user"));
    text_line(&text, "Log message: ", route_json_string(event, "message"));
    const cJSON *qrs = cJSON_GetObjectItemCaseSensitive(event, "qrs");
    const char *tail = route_json_string(qrs, "scriptLogTail");
    if (tail[0]) {
        text_str(&text, "Script log (last lines):\n");
        text_str(&text, tail);
        text_str(&text, "\n");
    }
    text_line(&text, "QMC: ", qmc_url);
    if (hub_url && hub_url[0]) {
        text_line(&text, "Hub: ", hub_url);
    }
    /* Drop the final newline. */
    if (text.used > 0 && text.data && text.data[text.used - 1] == '\n')
        text.used--;
    return text_finish(&text, out);
}

enum butler_status route_rate_key(const struct config_route *route, const cJSON *event,
                                  const char *payload, size_t payload_length, char **out)
{
    char *rendered = NULL;
    struct text text = {.max = ROUTE_KEY_MAX};
    const char *key_template = route->rate_limit_key ? route->rate_limit_key : "";
    if (template_render(key_template, event, payload, payload_length, ROUTE_KEY_MAX, &rendered,
                        NULL) != BUTLER_OK)
        return BUTLER_ERR_NOMEM;
    text_str(&text, route->name);
    text_str(&text, "\x1f");
    text_str(&text, rendered);
    free(rendered);
    return text_finish(&text, out);
}

/* Copy `s` into the message without CR and LF (header injection). */
static void text_header_value(struct text *text, const char *s)
{
    for (; *s; s++)
        if (*s != '\r' && *s != '\n')
            text_add(text, s, 1);
}

enum butler_status route_build_email(const char *from, const struct config_string_list *to,
                                     const char *subject, const char *text_body, uint64_t wall_ms,
                                     char **out)
{
    struct text text = {.max = EMAIL_MAX_BYTES};
    char date[64];
    time_t seconds = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&seconds, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    text_str(&text, "Date: ");
    text_str(&text, date);
    text_str(&text, "\r\nFrom: ");
    text_header_value(&text, from);
    text_str(&text, "\r\nTo: ");
    for (size_t i = 0; i < to->count; i++) {
        if (i)
            text_str(&text, ", ");
        text_header_value(&text, to->items[i]);
    }
    text_str(&text, "\r\nSubject: ");
    text_header_value(&text, subject);
    text_str(&text, "\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                    "Content-Transfer-Encoding: 8bit\r\n\r\n");
    /* Body: bare LF -> CRLF, and a leading '.' doubled (SMTP dot-stuffing is
     * done by libcurl, so only line endings here). */
    for (const char *p = text_body; *p; p++) {
        if (*p == '\n' && (p == text_body || p[-1] != '\r'))
            text_str(&text, "\r");
        text_add(&text, p, 1);
    }
    text_str(&text, "\r\n");
    return text_finish(&text, out);
}
