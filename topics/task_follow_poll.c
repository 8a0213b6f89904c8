/*
 * Polling one followed run, or many with one call, and publishing its end
 * (see topics/task_follow_poll.h). Everything here runs on the follower
 * thread, on follows it has marked busy: no lock is needed or taken.
 */
#include "topics/task_follow_poll.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge/clients/qrs.h"
#include "bridge/core/clock.h"
#include "config/config.h"
#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"
#include "bridge/core/runtime.h"
#include "bridge/model/task_request.h"
#include "bridge/store/spool.h"
#include "topics/events.h"
#include "topics/log_tail.h"
#include "topics/publish.h"

#define MODULE "task-follow"

enum {
    RESULT_LOOKUPS_MAX = 3, /* session gone and no result: tries before `error` */
    POKE_PAUSE_MS = 300,
    FINAL_LAG_PAUSE_MS = 500, /* session gone, result not final yet: look again soon */
    COALESCE_MAX_MS = 1000,   /* the most a poll is taken early to join a wake-up */
    /* After QRS refused the list form (a 4xx), sessions are polled one by
     * one; the list is tried again after this long. */
    SESSION_LIST_RETRY_MS = 10 * 60 * 1000,
    SCRIPT_LOG_READ_BYTES = 64 * 1024, /* only the end of a log of any size is read */
    /* One list call's filter: SESSION_LIST_MAX terms of "ExecutionId eq <36>"
     * and " or " (55 bytes each), the longer of the two forms. */
    SESSION_LIST_FILTER_BYTES = SESSION_LIST_MAX * 56,
};

static const struct butler_config *poll_config;
static uint64_t session_list_refused_until; /* monotonic ms */

void task_follow_poll_setup(const struct butler_config *config)
{
    poll_config = config;
    session_list_refused_until = 0;
}

size_t task_follow_poll_batch_max(uint64_t now_mono_ms)
{
    return now_mono_ms >= session_list_refused_until ? SESSION_LIST_MAX : 1;
}

/* The finished message's status for a QRS execution status code, or NULL
 * while not final. */
static const char *status_name(int code)
{
    switch (code) {
    case 7:
        return "success";
    case 8:
        return "failed";
    case 6:
        return "aborted";
    case 9:
        return "skipped";
    case 0:
    case 11:
    case 12:
        return "error";
    default:
        return NULL; /* not final */
    }
}

/* The newest result of an array (latest startTime; ISO-8601 strings of one
 * format sort as text) of run `execution_id` (NULL: of any run, the array
 * holds one run's), or NULL. Borrowed. */
static const cJSON *newest_result(const cJSON *results, const char *execution_id)
{
    const cJSON *newest = NULL, *item;
    const char *newest_start = "";
    cJSON_ArrayForEach(item, results)
    {
        const char *start = json_string_member(item, "startTime");
        const char *run = json_string_member(item, "executionID");
        if (!cJSON_IsObject(item) || (execution_id && (!run || strcasecmp(run, execution_id))))
            continue;
        if (newest == NULL || (start && strcmp(start, newest_start) >= 0)) {
            newest = item;
            newest_start = start ? start : "";
        }
    }
    return newest;
}

/* The script-log download ticket of one call's answer ({"value": ..} or a
 * bare string), or NULL. Borrowed from `answer`. */
static const char *ticket_of(const cJSON *answer)
{
    const cJSON *value =
        cJSON_IsObject(answer) ? cJSON_GetObjectItemCaseSensitive(answer, "value") : answer;
    return cJSON_IsString(value) && value->valuestring[0] ? value->valuestring : NULL;
}

/*
 * The tail of a finished run's script log as a JSON string, or NULL when QRS
 * has none (not an error): the newer scriptlogfile?executionResultId= first,
 * then the older scriptlog?fileReferenceId=, then the download of the ticket.
 * Owned by the caller.
 */
static cJSON *script_log_tail(struct qrs_client *qrs, const char *task_id, const cJSON *result)
{
    const char *result_id = json_string_member(result, "id");
    const char *file_reference = json_string_member(result, "fileReferenceID");
    char path[256];
    cJSON *answer = NULL;
    struct qrs_result call = {0};
    const char *ticket = NULL;
    if (result_id && task_is_guid(result_id, strlen(result_id))) {
        snprintf(path, sizeof path, "reloadtask/%s/scriptlogfile?executionResultId=%s", task_id,
                 result_id);
        if (qrs_get_route(qrs, "reloadtask/scriptlogfile", path, NULL, &answer, &call) == BUTLER_OK)
            ticket = ticket_of(answer);
    }
    if (ticket == NULL && file_reference && task_is_guid(file_reference, strlen(file_reference)) &&
        strcmp(file_reference, "00000000-0000-0000-0000-000000000000") != 0) {
        cJSON_Delete(answer);
        answer = NULL;
        snprintf(path, sizeof path, "reloadtask/%s/scriptlog?fileReferenceId=%s", task_id,
                 file_reference);
        if (qrs_get_route(qrs, "reloadtask/scriptlog", path, NULL, &answer, &call) == BUTLER_OK)
            ticket = ticket_of(answer);
    }
    cJSON *tail = NULL;
    char *text = NULL;
    size_t length = 0;
    bool head_cut = false;
    /* The ticket goes into a path: a GUID-like token only. */
    if (ticket && strlen(ticket) < 100 &&
        strspn(ticket, "0123456789abcdefABCDEF-") == strlen(ticket)) {
        snprintf(path, sizeof path, "download/reloadtask/%s/scriptlog.txt", ticket);
        if (qrs_get_text(qrs, "download/reloadtask/scriptlog.txt", path, SCRIPT_LOG_READ_BYTES,
                         &text, &length, &head_cut, &call) == BUTLER_OK) {
            char *lines =
                log_tail(text, length, head_cut, EVENTS_LOG_TAIL_LINES, EVENTS_LOG_TAIL_MAX_BYTES);
            if (lines)
                tail = cJSON_CreateString(lines);
            free(lines);
        }
    }
    free(text);
    cJSON_Delete(answer);
    return tail;
}

/* Publish the finished message, then mark the follow done in the spool.
 * False when Butler stopped first (the follow stays in the spool). */
static bool finish(struct follow *follow, const char *status, const cJSON *result,
                   const char *reason, cJSON *log_tail_json)
{
    cJSON *json = cJSON_CreateObject();
    if (json == NULL) {
        cJSON_Delete(log_tail_json);
        return false;
    }
    cJSON_AddStringToObject(json, "requestId", follow->request_id);
    cJSON_AddStringToObject(json, "taskId", follow->task_id);
    cJSON_AddStringToObject(json, "taskName", follow->task_name);
    cJSON_AddStringToObject(json, "executionId", follow->execution_id);
    cJSON_AddStringToObject(json, "status", status);
    if (follow->last_status >= 0)
        cJSON_AddNumberToObject(json, "statusCode", follow->last_status);
    else
        cJSON_AddNullToObject(json, "statusCode");
    const char *start = json_string_member(result, "startTime");
    const char *stop = json_string_member(result, "stopTime");
    const char *node = json_string_member(result, "executingNodeName");
    const cJSON *duration = cJSON_GetObjectItemCaseSensitive(result, "duration");
    if (start)
        cJSON_AddStringToObject(json, "startTime", start);
    if (stop && strncmp(stop, "1753-", 5) != 0) /* QRS's unset date */
        cJSON_AddStringToObject(json, "stopTime", stop);
    if (cJSON_IsNumber(duration))
        cJSON_AddNumberToObject(json, "durationMs", duration->valuedouble);
    if (node)
        cJSON_AddStringToObject(json, "executingNode", node);
    if (log_tail_json)
        cJSON_AddItemToObject(json, "scriptLogTail", log_tail_json); /* takes it */
    if (reason)
        cJSON_AddStringToObject(json, "error", reason);
    char *text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    if (text == NULL)
        return false;
    char topic[600];
    snprintf(topic, sizeof topic, "%s/task/finished/%s", poll_config->mqtt.topic_root,
             follow->task_id);
    struct mqtt_publish_options options = {.qos = 1, .content_type = "application/json"};
    enum butler_status published = publish_reliably(topic, text, strlen(text), &options);
    if (published == BUTLER_OK && follow->response_topic) {
        struct mqtt_publish_options respond = {
            .qos = 1,
            .correlation_data = follow->correlation,
            .correlation_length = follow->correlation_length,
            .content_type = "application/json",
        };
        published = publish_reliably(follow->response_topic, text, strlen(text), &respond);
        if (published != BUTLER_OK && published != BUTLER_ERR_SHUTDOWN)
            published = BUTLER_OK; /* refused for good: the topic message went out */
    }
    free(text);
    if (published == BUTLER_ERR_SHUTDOWN)
        return false;
    if (published != BUTLER_OK)
        LOG_ERROR(MODULE, "finished message of execution %s refused by the broker: %s",
                  follow->execution_id, butler_status_str(published));
    struct spool *spool = butler_runtime_current ? butler_runtime_current->spool : NULL;
    if (spool && follow->spool_id)
        spool_done(spool, follow->spool_id, "", 0);
    char labels[64];
    snprintf(labels, sizeof labels, "status=\"%s\"", status);
    metrics_count("butler_task_follows_finished_total", labels,
                  "Followed task runs that ended, by status");
    LOG_INFO(MODULE, "execution %s of task %s ended: %s", follow->execution_id, follow->task_id,
             status);
    return true;
}

/* How much earlier than its due time a poll may be taken to join a wake-up:
 * a twentieth of poll_s, at most COALESCE_MAX_MS. */
uint64_t task_follow_coalesce_ms(uint64_t poll_ms)
{
    return poll_ms / 20 < COALESCE_MAX_MS ? poll_ms / 20 : COALESCE_MAX_MS;
}

/*
 * The next regular poll after one answered 200: its due time moves on by
 * poll_s less the coalescing margin, so the run keeps its phase (the spread of
 * the first interval holds) and, taken early by at most that margin, is
 * polled at most poll_s after the last poll. After a stall (that time already
 * passed) it starts again from now.
 */
static void schedule_next(struct follow *follow, uint64_t now, uint64_t poll_ms)
{
    uint64_t period = poll_ms - task_follow_coalesce_ms(poll_ms);
    follow->paused = false;
    follow->due_mono_ms += period;
    if (follow->due_mono_ms <= now)
        follow->due_mono_ms = now + period;
}

/* Schedule `follow` again after a failed QRS call. */
static void back_off(struct follow *follow, uint64_t poll_ms)
{
    uint64_t backoff = follow->backoff_ms ? (uint64_t)follow->backoff_ms * 2 : BACKOFF_FIRST_MS;
    follow->backoff_ms = (uint32_t)(backoff > poll_ms ? poll_ms : backoff);
    follow->due_mono_ms = clock_monotonic_ms() + follow->backoff_ms;
    follow->paused = true;
    metrics_count("butler_task_follow_qrs_failures_total", "",
                  "QRS calls of the follower that failed (retried with backoff)");
}

/* Every attempt's result of `follow`'s run: GET executionresult/full?filter=
 * ExecutionId eq <id>. *json owned by the caller (cJSON_Delete). */
static enum butler_status results_of_run(struct qrs_client *qrs, const struct follow *follow,
                                         cJSON **json)
{
    char filter[80];
    struct qrs_result result = {0};
    snprintf(filter, sizeof filter, "ExecutionId eq %s", follow->execution_id);
    return qrs_get_route(qrs, "executionresult/full", "executionresult/full", filter, json,
                         &result);
}

/*
 * "<property> eq A or <property> eq B ..." for the execution ids of
 * follows[index[0..count)] into filter[size]. False when it does not fit,
 * which 36-character ids within SESSION_LIST_FILTER_BYTES cannot do; the
 * caller then takes the one-run path.
 */
static bool or_filter(char *filter, size_t size, const char *property,
                      struct follow *const *follows, const size_t *index, size_t count)
{
    size_t used = 0;
    filter[0] = '\0';
    for (size_t k = 0; k < count; k++) {
        int written = snprintf(filter + used, size - used, "%s%s eq %s", k ? " or " : "", property,
                               follows[index[k]]->execution_id);
        if (written < 0 || (size_t)written >= size - used)
            return false;
        used += (size_t)written;
    }
    return true;
}

/*
 * True when `follow` ran past task_start.follow.timeout_s: it is ended as
 * `timeout` (with the status of its newest result, when QRS has one) and
 * *ended says whether that end went out. Follower thread; `follow` is busy.
 */
static bool past_timeout(struct qrs_client *qrs, struct follow *follow, uint64_t now, bool *ended)
{
    uint64_t timeout_ms = (uint64_t)poll_config->task_start.follow.timeout_s * 1000u;
    if (now - follow->started_mono_ms < timeout_ms)
        return false;
    cJSON *json = NULL;
    const cJSON *newest = NULL;
    /* The session holds no status: the newest result has the last one seen. */
    if (results_of_run(qrs, follow, &json) == BUTLER_OK &&
        (newest = newest_result(json, NULL)) != NULL) {
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(newest, "status");
        if (cJSON_IsNumber(code))
            follow->last_status = (int16_t)code->valueint;
    }
    *ended = finish(follow, "timeout", newest, "task_start.follow.timeout_s passed without an end",
                    NULL);
    cJSON_Delete(json);
    return true;
}

/* QRS still has the run's session (`session`, its object, may lack fields):
 * the next poll is scheduled. Follower thread; `follow` is busy. */
static void still_running(struct follow *follow, const cJSON *session, uint64_t now,
                          uint64_t poll_ms)
{
    const cJSON *session_status = cJSON_GetObjectItemCaseSensitive(session, "status");
    if (cJSON_IsNumber(session_status))
        follow->last_status = (int16_t)session_status->valueint;
    follow->backoff_ms = 0;
    if (follow->poked > 0) {
        follow->due_mono_ms = now + POKE_PAUSE_MS;
        follow->paused = true;
        follow->poked--;
    } else {
        schedule_next(follow, now, poll_ms);
    }
}

/*
 * What the newest result (`newest`, NULL when QRS has none) says of a run
 * whose session is gone. True when the finished message went out; false when
 * the follow stays (no result, or not final, yet: looked at again soon).
 * Follower thread; `follow` is busy.
 */
static bool conclude(struct qrs_client *qrs, struct follow *follow, const cJSON *newest,
                     uint64_t now)
{
    if (newest == NULL) {
        if (++follow->result_misses >= RESULT_LOOKUPS_MAX)
            return finish(follow, "error", NULL,
                          "QRS knows neither the execution session nor a result for it", NULL);
        follow->due_mono_ms = now + FINAL_LAG_PAUSE_MS;
        follow->paused = true;
        return false;
    }
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(newest, "status");
    if (cJSON_IsNumber(code))
        follow->last_status = (int16_t)code->valueint;
    const char *name = cJSON_IsNumber(code) ? status_name(code->valueint) : NULL;
    if (name == NULL) { /* the session ended before the result shows the end */
        follow->due_mono_ms = now + FINAL_LAG_PAUSE_MS;
        follow->paused = true;
        return false;
    }
    cJSON *tail = strcmp(name, "failed") == 0 || strcmp(name, "aborted") == 0
                      ? script_log_tail(qrs, follow->task_id, newest)
                      : NULL;
    return finish(follow, name, newest, NULL, tail);
}

/*
 * The run's session is gone, so the run ended: its newest result gives the
 * outcome (conclude). False also when QRS failed (backed off) or Butler is
 * stopping. Follower thread; `follow` is busy.
 */
static bool session_gone(struct qrs_client *qrs, struct follow *follow, uint64_t now,
                         uint64_t poll_ms)
{
    cJSON *json = NULL;
    enum butler_status status = results_of_run(qrs, follow, &json);
    bool ended = false;
    if (status == BUTLER_OK && cJSON_IsArray(json))
        ended = conclude(qrs, follow, newest_result(json, NULL), now);
    else if (status != BUTLER_ERR_SHUTDOWN)
        back_off(follow, poll_ms);
    cJSON_Delete(json);
    return ended;
}

/*
 * Sessions gone from a list answer: the results of all of them with one call
 * (ExecutionId eq A or ExecutionId eq B ...), each concluded from its own
 * newest result. One alone, or the call failing, takes session_gone's path.
 * Follower thread; the follows are busy.
 */
static void sessions_gone(struct qrs_client *qrs, struct follow **follows, const size_t *gone,
                          size_t gone_count, bool *ended, uint64_t now, uint64_t poll_ms)
{
    char filter[SESSION_LIST_FILTER_BYTES];
    cJSON *json = NULL;
    struct qrs_result result = {0};
    enum butler_status status = BUTLER_ERR_INVALID;
    if (gone_count > 1 &&
        or_filter(filter, sizeof filter, "ExecutionId", follows, gone, gone_count))
        status = qrs_get_route(qrs, "executionresult/full", "executionresult/full", filter, &json,
                               &result);
    for (size_t k = 0; k < gone_count && status != BUTLER_ERR_SHUTDOWN; k++) {
        struct follow *follow = follows[gone[k]];
        const cJSON *newest = status == BUTLER_OK && cJSON_IsArray(json)
                                  ? newest_result(json, follow->execution_id)
                                  : NULL;
        /* A run the shared answer has no result for is asked about alone, so
         * that a miss is counted per run's own lookup (RESULT_LOOKUPS_MAX),
         * not once for every run of the batch. */
        if (newest)
            ended[gone[k]] = conclude(qrs, follow, newest, now);
        else
            ended[gone[k]] = session_gone(qrs, follow, now, poll_ms);
    }
    cJSON_Delete(json);
}

/*
 * Poll one follow: GET /qrs/executionsession/{id}, 200 while the run goes on,
 * 404 once it ended. True when it ended (finished message out, spool done);
 * false when it stays (due time set), also when Butler is stopping.
 * Follower thread; `follow` is busy, so nothing else touches it.
 */
bool task_follow_poll_one(struct qrs_client *qrs, struct follow *follow)
{
    uint64_t poll_ms = (uint64_t)poll_config->task_start.follow.poll_s * 1000u;
    uint64_t now = clock_monotonic_ms();
    bool ended = false;
    if (past_timeout(qrs, follow, now, &ended))
        return ended;
    char path[128];
    cJSON *json = NULL;
    struct qrs_result result = {0};
    snprintf(path, sizeof path, "executionsession/%s", follow->execution_id);
    enum butler_status status =
        qrs_get_route(qrs, "executionsession/{id}", path, NULL, &json, &result);
    if (status == BUTLER_OK)
        still_running(follow, json, now, poll_ms);
    cJSON_Delete(json);
    if (status == BUTLER_OK || status == BUTLER_ERR_SHUTDOWN)
        return false;
    if (status != BUTLER_ERR_NOT_FOUND) {
        back_off(follow, poll_ms);
        return false;
    }
    return session_gone(qrs, follow, now, poll_ms);
}

/* The session of `execution_id` in a list answer, or NULL. Borrowed. */
static const cJSON *listed_session(const cJSON *sessions, const char *execution_id)
{
    const cJSON *session;
    cJSON_ArrayForEach(session, sessions)
    {
        const char *id = json_string_member(session, "id");
        if (id && strcasecmp(id, execution_id) == 0)
            return session;
    }
    return NULL;
}

/*
 * Poll `count` follows (at most SESSION_LIST_MAX) with one call instead of
 * one each: GET /qrs/executionsession?filter=id eq A or id eq B ..., the
 * filtered list every QRS entity has (sense-interfaces.md 1.2). A session in
 * the answer goes on; one missing from it has ended, which is what a 404 of
 * /executionsession/{id} says. At 1,000 followed runs this is what keeps the
 * follower's cost in bounds: a poll costs Butler about one HTTPS call's CPU
 * (~130 us here, BENCHMARKS.md), 200 of them a second at poll_s 5 were 2.7 %
 * of a core. A QRS that refuses the list form (a 4xx: an older release, a
 * proxy that limits the query) is polled one session at a time now and for
 * SESSION_LIST_RETRY_MS. ended[i] is set for each follow whose end went out.
 * Follower thread; the follows are busy.
 */
void task_follow_poll_many(struct qrs_client *qrs, struct follow **follows, size_t count,
                           bool *ended)
{
    uint64_t poll_ms = (uint64_t)poll_config->task_start.follow.poll_s * 1000u;
    uint64_t now = clock_monotonic_ms();
    size_t asked[SESSION_LIST_MAX], asked_count = 0;
    char filter[SESSION_LIST_FILTER_BYTES];
    cJSON *json = NULL;
    struct qrs_result result = {0};
    for (size_t i = 0; i < count && i < SESSION_LIST_MAX; i++) {
        struct follow *follow = follows[i];
        ended[i] = false;
        if (past_timeout(qrs, follow, now, &ended[i]))
            continue;
        if (!task_is_guid(follow->execution_id, strlen(follow->execution_id))) {
            ended[i] = task_follow_poll_one(qrs, follow); /* not fit for a filter */
            continue;
        }
        asked[asked_count++] = i;
    }
    if (asked_count == 0)
        return;
    if (!or_filter(filter, sizeof filter, "id", follows, asked, asked_count)) {
        for (size_t k = 0; k < asked_count; k++)
            ended[asked[k]] = task_follow_poll_one(qrs, follows[asked[k]]);
        return;
    }
    enum butler_status status =
        qrs_get_route(qrs, "executionsession", "executionsession", filter, &json, &result);
    if (status == BUTLER_OK && !cJSON_IsArray(json))
        status = BUTLER_ERR_REMOTE;
    if (status == BUTLER_ERR_SHUTDOWN)
        goto out;
    /* QRS answered, but not the list (a 4xx, a 5xx, garbage): this round
     * asks each session on its own, so that a list that keeps failing cannot
     * hide runs' ends until timeout_s. A 4xx is a refusal of the form: one by
     * one for SESSION_LIST_RETRY_MS. A 429 or no answer at all backs off. */
    bool answered = result.http_status >= 200 && result.http_status != 429;
    if (status != BUTLER_OK && answered) {
        if (result.http_status >= 400 && result.http_status < 500) {
            session_list_refused_until = now + SESSION_LIST_RETRY_MS;
            metrics_count("butler_task_follow_session_list_refused_total", "",
                          "Times QRS refused the execution session list (follows then polled "
                          "one by one for 10 minutes)");
            LOG_WARN(MODULE,
                     "QRS answered HTTP %ld to the execution session list; polling each "
                     "session on its own for the next 10 minutes",
                     result.http_status);
        }
        for (size_t k = 0; k < asked_count; k++)
            ended[asked[k]] = task_follow_poll_one(qrs, follows[asked[k]]);
        goto out;
    }
    size_t gone[SESSION_LIST_MAX], gone_count = 0;
    for (size_t k = 0; k < asked_count; k++) {
        struct follow *follow = follows[asked[k]];
        const cJSON *session = NULL;
        if (status != BUTLER_OK)
            back_off(follow, poll_ms);
        else if ((session = listed_session(json, follow->execution_id)) != NULL)
            still_running(follow, session, now, poll_ms);
        else
            gone[gone_count++] = asked[k];
    }
    sessions_gone(qrs, follows, gone, gone_count, ended, now, poll_ms);
out:
    cJSON_Delete(json);
}
