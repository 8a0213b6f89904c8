/*
 * QIX client on libwebsockets: one service thread owns the lws context and
 * every socket; callers queue requests under one mutex and wait on one
 * condition variable (sessions are few: max_sessions).
 *
 * Lifetime rule: a session is freed only by the service thread, and only
 * once the caller released it and its socket is gone (WSI_DESTROY), so a
 * callback never sees a freed session and a caller never waits on one.
 */
#include "bridge/clients/engine.h"

#include <libwebsockets.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge/core/clock.h"
#include "bridge/core/json.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"

#define MODULE "engine"

enum {
    HOST_MAX = 256,
    PATH_MAX_LENGTH = 1024,
    HEADER_MAX = 600,
    OUTGOING_MAX = ENGINE_CALLS_MAX + 1,
};

enum socket_state { SOCKET_NONE, SOCKET_LIVE, SOCKET_GONE };

struct pending_call {
    bool used;
    bool done;
    int id;
    enum butler_status status;
    cJSON *result;
    char error[ENGINE_ERROR_MAX];
};

struct outgoing {
    unsigned char *buffer; /* LWS_PRE bytes of headroom, then the text */
    size_t length;
};

struct engine_session {
    struct engine_client *client;
    struct engine_session *next;
    struct lws *wsi;
    enum socket_state socket;
    bool connect_wanted;
    bool open;    /* upgrade done */
    bool dead;    /* closed or failed: no more answers */
    bool release; /* the caller is done with it */
    bool close_wanted;
    enum butler_status dead_status;
    char dead_error[ENGINE_ERROR_MAX];
    char path[PATH_MAX_LENGTH];
    int next_id;
    struct pending_call calls[ENGINE_CALLS_MAX];
    struct outgoing queue[OUTGOING_MAX];
    size_t queue_count;
    char *received; /* one incoming message being assembled */
    size_t received_length, received_capacity;
};

struct engine_client {
    struct lws_context *context;
    pthread_t thread;
    bool thread_started;
    atomic_bool stop_thread;
    pthread_mutex_t mutex;
    pthread_cond_t changed; /* any session state or slot change */
    bool cancelled;
    int open_sessions;
    struct engine_session *sessions;
    struct engine_session **batch; /* service-thread scratch, max_sessions entries */
    char host[HOST_MAX];
    int port;
    bool tls;
    bool verify_peer;
    char base_path[PATH_MAX_LENGTH];
    char user_header[HEADER_MAX];
    int timeout_ms;
    int max_sessions;
    size_t max_message_bytes;
};

/* ---- small helpers ---- */

static void deadline_in(int timeout_ms, struct timespec *deadline)
{
    clock_deadline_after(CLOCK_MONOTONIC, (uint64_t)timeout_ms, deadline);
}

/* Wait on the client's condition; false once the deadline passed. */
static bool wait_changed(struct engine_client *client, const struct timespec *deadline)
{
    if (deadline == NULL) {
        pthread_cond_wait(&client->changed, &client->mutex);
        return true;
    }
    return pthread_cond_timedwait(&client->changed, &client->mutex, deadline) == 0;
}

enum butler_status engine_parse_url(const char *url, char *host, size_t host_size, int *port,
                                    bool *tls)
{
    static const struct {
        const char *prefix;
        bool tls;
    } schemes[] = {{"wss://", true}, {"https://", true}, {"ws://", false}, {"http://", false}};
    const char *rest = NULL;
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0] && rest == NULL; i++)
        if (strncasecmp(url, schemes[i].prefix, strlen(schemes[i].prefix)) == 0) {
            rest = url + strlen(schemes[i].prefix);
            *tls = schemes[i].tls;
        }
    if (rest == NULL)
        return BUTLER_ERR_INVALID;
    size_t host_length = strcspn(rest, ":/");
    if (host_length == 0 || host_length >= host_size)
        return BUTLER_ERR_INVALID;
    memcpy(host, rest, host_length);
    host[host_length] = '\0';
    *port = 4747;
    if (rest[host_length] == ':') {
        char *end = NULL;
        long value = strtol(rest + host_length + 1, &end, 10);
        if (end == rest + host_length + 1 || value < 1 || value > 65535 ||
            (*end != '\0' && *end != '/'))
            return BUTLER_ERR_INVALID;
        *port = (int)value;
    }
    return BUTLER_OK;
}

/* The path part of the URL (a virtual proxy prefix), without a trailing '/'. */
static void url_base_path(const char *url, char *path, size_t path_size)
{
    const char *after_scheme = strstr(url, "://");
    const char *slash = after_scheme ? strchr(after_scheme + 3, '/') : NULL;
    snprintf(path, path_size, "%s", slash ? slash : "");
    size_t length = strlen(path);
    while (length > 0 && path[length - 1] == '/')
        path[--length] = '\0';
}

/* ---- session state changes (mutex held) ---- */

static void fail_calls(struct engine_session *session)
{
    for (int i = 0; i < ENGINE_CALLS_MAX; i++) {
        struct pending_call *call = &session->calls[i];
        if (call->used && !call->done) {
            call->done = true;
            call->status = session->dead_status;
            snprintf(call->error, sizeof call->error, "%s", session->dead_error);
        }
    }
}

static void mark_dead(struct engine_session *session, enum butler_status status, const char *why)
{
    if (!session->dead) {
        session->dead = true;
        session->dead_status = status;
        snprintf(session->dead_error, sizeof session->dead_error, "%s", why);
    }
    fail_calls(session);
    pthread_cond_broadcast(&session->client->changed);
}

static void free_outgoing(struct engine_session *session)
{
    for (size_t i = 0; i < session->queue_count; i++)
        free(session->queue[i].buffer);
    session->queue_count = 0;
}

static void session_free(struct engine_session *session)
{
    free_outgoing(session);
    for (int i = 0; i < ENGINE_CALLS_MAX; i++)
        cJSON_Delete(session->calls[i].result);
    free(session->received);
    free(session);
}

/* Free released sessions whose socket is gone (service thread, mutex held). */
static void reap_sessions(struct engine_client *client)
{
    struct engine_session **link = &client->sessions;
    while (*link) {
        struct engine_session *session = *link;
        if (session->release && session->socket != SOCKET_LIVE) {
            *link = session->next;
            session_free(session);
            client->open_sessions--;
            pthread_cond_broadcast(&client->changed);
        } else {
            link = &session->next;
        }
    }
}

/* ---- incoming messages (service thread) ---- */

void engine_message_clear(struct engine_message *message)
{
    cJSON_Delete(message->result);
    message->result = NULL;
}

enum butler_status engine_message_parse(const char *text, size_t length, struct engine_message *out)
{
    memset(out, 0, sizeof *out);
    cJSON *message = json_parse_exact(text, length, NULL);
    if (!cJSON_IsObject(message)) {
        cJSON_Delete(message);
        return BUTLER_ERR_INVALID;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(message, "id");
    const char *method = json_string_member(message, "method");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(message, "params");
    if (cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble <= 2147483647.0) {
        out->kind = ENGINE_MESSAGE_ANSWER;
        out->id = id->valueint;
        const cJSON *error = cJSON_GetObjectItemCaseSensitive(message, "error");
        if (error != NULL) {
            const char *text_message = json_string_member(error, "message");
            const char *parameter = json_string_member(error, "parameter");
            const cJSON *code = cJSON_GetObjectItemCaseSensitive(error, "code");
            out->is_error = true;
            snprintf(out->error, sizeof out->error, "%.200s%s%.200s (engine error %d)",
                     text_message ? text_message : "engine error",
                     parameter && parameter[0] ? ": " : "", parameter ? parameter : "",
                     cJSON_IsNumber(code) ? code->valueint : 0);
        } else {
            out->result = cJSON_DetachItemFromObjectCaseSensitive(message, "result");
            if (out->result == NULL)
                out->result = cJSON_CreateObject();
        }
    } else if (method != NULL) {
        out->kind = ENGINE_MESSAGE_NOTIFICATION;
        snprintf(out->method, sizeof out->method, "%s", method);
        out->must_authenticate =
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(params, "mustAuthenticate"));
        const char *state = json_string_member(params, "qSessionState");
        snprintf(out->session_state, sizeof out->session_state, "%s", state ? state : "");
    } else {
        cJSON_Delete(message);
        return BUTLER_ERR_INVALID;
    }
    cJSON_Delete(message);
    return BUTLER_OK;
}

static void handle_notification(struct engine_session *session,
                                const struct engine_message *message)
{
    if (strcmp(message->method, "OnAuthenticationInformation") == 0) {
        if (message->must_authenticate)
            mark_dead(session, BUTLER_ERR_DENIED,
                      "the engine asks for authentication: the client certificate or "
                      "X-Qlik-User was not accepted");
        return;
    }
    if (strcmp(message->method, "OnConnected") == 0) {
        if (strncmp(message->session_state, "SESSION_ERROR", 13) == 0) {
            char why[160];
            snprintf(why, sizeof why, "the engine refused the session: %.100s",
                     message->session_state);
            mark_dead(session, BUTLER_ERR_REMOTE, why);
        }
        return;
    }
    LOG_DEBUG(MODULE, "engine notification %.64s ignored", message->method);
}

static void handle_message(struct engine_session *session, const char *text, size_t length)
{
    struct engine_message message;
    if (engine_message_parse(text, length, &message) != BUTLER_OK) {
        metrics_count("butler_engine_errors_total", "reason=\"bad_message\"",
                      "Engine client failures by reason");
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                        "engine sent a message that is neither an answer nor a notification");
        return;
    }
    if (message.kind == ENGINE_MESSAGE_NOTIFICATION) {
        handle_notification(session, &message);
        return;
    }
    struct pending_call *call = NULL;
    for (int i = 0; i < ENGINE_CALLS_MAX && call == NULL; i++)
        if (session->calls[i].used && !session->calls[i].done && session->calls[i].id == message.id)
            call = &session->calls[i];
    if (call == NULL) {
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "engine answered id %d, which nobody waits for",
                        message.id);
        engine_message_clear(&message);
        return;
    }
    call->status = message.is_error ? BUTLER_ERR_REMOTE : BUTLER_OK;
    snprintf(call->error, sizeof call->error, "%s", message.error);
    call->result = message.result;
    call->done = true;
    pthread_cond_broadcast(&session->client->changed);
}

/* Append a fragment; a message over max_message_bytes kills the session. */
static bool receive_fragment(struct engine_session *session, const void *data, size_t length)
{
    struct engine_client *client = session->client;
    if (session->received_length + length > client->max_message_bytes) {
        char why[160];
        snprintf(why, sizeof why, "an engine message exceeded engine.max_message_bytes (%zu)",
                 client->max_message_bytes);
        metrics_count("butler_engine_errors_total", "reason=\"too_large\"",
                      "Engine client failures by reason");
        mark_dead(session, BUTLER_ERR_TOO_LARGE, why);
        return false;
    }
    size_t needed = session->received_length + length + 1;
    if (needed > session->received_capacity) {
        size_t grown = session->received_capacity ? session->received_capacity : 4096;
        while (grown < needed)
            grown *= 2;
        if (grown > client->max_message_bytes + 1)
            grown = client->max_message_bytes + 1;
        char *bigger = realloc(session->received, grown);
        if (bigger == NULL) {
            mark_dead(session, BUTLER_ERR_NOMEM, "out of memory reading an engine message");
            return false;
        }
        session->received = bigger;
        session->received_capacity = grown;
    }
    memcpy(session->received + session->received_length, data, length);
    session->received_length += length;
    return true;
}

/* ---- libwebsockets callback (service thread) ---- */

static void service_pending(struct engine_client *client);

static int on_event(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t length)
{
    (void)user;
    struct engine_client *client = lws_context_user(lws_get_context(wsi));
    if (reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED) {
        service_pending(client);
        return 0;
    }
    struct engine_session *session = lws_get_opaque_user_data(wsi);
    if (session == NULL)
        return 0;
    int answer = 0;
    pthread_mutex_lock(&client->mutex);
    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        unsigned char **position = (unsigned char **)in;
        unsigned char *end = *position + length;
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)"X-Qlik-User:",
                                        (const unsigned char *)client->user_header,
                                        (int)strlen(client->user_header), position, end))
            answer = -1;
        break;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        session->open = true;
        pthread_cond_broadcast(&client->changed);
        if (session->queue_count || session->close_wanted)
            lws_callback_on_writable(wsi);
        break;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        char why[ENGINE_ERROR_MAX];
        snprintf(why, sizeof why, "cannot connect to the engine at %s:%d: %.300s", client->host,
                 client->port, in ? (const char *)in : "connection failed");
        metrics_count("butler_engine_errors_total", "reason=\"connect\"",
                      "Engine client failures by reason");
        /* A refused upgrade (401/403) is the engine (or its proxy) saying no to us. */
        unsigned int http_status = lws_http_client_http_response(wsi);
        bool refused = http_status == 401 || http_status == 403;
        if (http_status >= 300)
            snprintf(why, sizeof why,
                     "the engine at %s:%d refused the WebSocket upgrade with HTTP %u%s",
                     client->host, client->port, http_status,
                     refused ? " (client certificate or X-Qlik-User not accepted)" : "");
        mark_dead(session, refused ? BUTLER_ERR_DENIED : BUTLER_ERR_IO, why);
        break;
    }
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (session->dead || session->release) {
            answer = session->release ? -1 : 0;
            break;
        }
        if (!receive_fragment(session, in, length)) {
            answer = -1;
            break;
        }
        if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
            session->received[session->received_length] = '\0';
            handle_message(session, session->received, session->received_length);
            session->received_length = 0;
        }
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (session->close_wanted || session->release) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
            answer = -1;
            break;
        }
        if (session->queue_count) {
            struct outgoing item = session->queue[0];
            memmove(&session->queue[0], &session->queue[1],
                    (session->queue_count - 1) * sizeof session->queue[0]);
            session->queue_count--;
            int written = lws_write(wsi, item.buffer + LWS_PRE, item.length, LWS_WRITE_TEXT);
            free(item.buffer);
            if (written < (int)item.length) {
                mark_dead(session, BUTLER_ERR_IO, "writing to the engine failed");
                answer = -1;
                break;
            }
            if (session->queue_count)
                lws_callback_on_writable(wsi);
        }
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        mark_dead(session, BUTLER_ERR_IO, "the engine closed the connection");
        break;
    case LWS_CALLBACK_WSI_DESTROY:
        mark_dead(session, BUTLER_ERR_IO, "the engine connection is gone");
        session->socket = SOCKET_GONE;
        session->wsi = NULL;
        lws_set_opaque_user_data(wsi, NULL);
        /* Reap on the next pass (not here: the pass may hold this session). */
        lws_cancel_service(lws_get_context(wsi));
        break;
    default:
        break;
    }
    pthread_mutex_unlock(&client->mutex);
    return answer;
}

static const struct lws_protocols protocols[] = {
    {"qix", on_event, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void connect_session(struct engine_client *client, struct engine_session *session)
{
    struct lws_client_connect_info info;
    memset(&info, 0, sizeof info);
    info.context = client->context;
    info.address = client->host;
    info.port = client->port;
    info.path = session->path;
    info.host = client->host;
    info.origin = client->host;
    info.protocol = NULL;
    info.local_protocol_name = "qix";
    info.opaque_user_data = session;
    if (client->tls) {
        info.ssl_connection = LCCSCF_USE_SSL;
        if (!client->verify_peer)
            info.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED |
                                   LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK | LCCSCF_ALLOW_EXPIRED;
    }
    struct lws *wsi = lws_client_connect_via_info(&info);
    pthread_mutex_lock(&client->mutex);
    if (wsi == NULL) {
        /* Any WSI_DESTROY for it already ran inside the call. */
        session->socket = SOCKET_GONE;
        char why[ENGINE_ERROR_MAX];
        snprintf(why, sizeof why, "cannot connect to the engine at %s:%d", client->host,
                 client->port);
        mark_dead(session, BUTLER_ERR_IO, why);
    } else if (session->socket == SOCKET_LIVE) {
        session->wsi = wsi;
    }
    pthread_mutex_unlock(&client->mutex);
}

/* The work callers queued: connects, writes, closes, then reaping. */
static void service_pending(struct engine_client *client)
{
    size_t count = 0;
    pthread_mutex_lock(&client->mutex);
    for (struct engine_session *s = client->sessions; s && count < (size_t)client->max_sessions;
         s = s->next)
        client->batch[count++] = s;
    for (size_t i = 0; i < count; i++) {
        struct engine_session *session = client->batch[i];
        if (client->cancelled && !session->dead)
            mark_dead(session, BUTLER_ERR_SHUTDOWN, "Butler is stopping");
        if (session->connect_wanted) {
            session->connect_wanted = false;
            if (!session->release && !session->dead) {
                /* LIVE before the call: its callbacks may run inside it. */
                session->socket = SOCKET_LIVE;
                pthread_mutex_unlock(&client->mutex);
                connect_session(client, session);
                pthread_mutex_lock(&client->mutex);
            }
            continue;
        }
        if (session->socket != SOCKET_LIVE || session->wsi == NULL)
            continue;
        if (session->release || session->close_wanted || client->cancelled) {
            session->close_wanted = true;
            if (session->open)
                lws_callback_on_writable(session->wsi);
            else
                lws_set_timeout(session->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        } else if (session->open && session->queue_count) {
            lws_callback_on_writable(session->wsi);
        }
    }
    reap_sessions(client);
    pthread_mutex_unlock(&client->mutex);
}

static void *service_main(void *argument)
{
    struct engine_client *client = argument;
    while (!atomic_load(&client->stop_thread))
        lws_service(client->context, 0);
    return NULL;
}

static void log_from_lws(int level, const char *line)
{
    size_t length = strlen(line);
    while (length > 0 && (line[length - 1] == '\n' || line[length - 1] == '\r'))
        length--;
    if (level & LLL_ERR)
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE, "libwebsockets: %.*s", (int)length, line);
    else
        LOG_DEBUG(MODULE, "libwebsockets: %.*s", (int)length, line);
}

/* ---- public interface ---- */

enum butler_status engine_client_create(const struct engine_client_options *options,
                                        struct engine_client **out)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    struct engine_client *client = calloc(1, sizeof *client);
    if (client == NULL)
        return BUTLER_ERR_NOMEM;
    pthread_mutex_init(&client->mutex, NULL);
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&client->changed, &attributes);
    pthread_condattr_destroy(&attributes);
    if (engine_parse_url(options->url, client->host, sizeof client->host, &client->port,
                         &client->tls) != BUTLER_OK) {
        status = BUTLER_ERR_INVALID;
        goto out;
    }
    url_base_path(options->url, client->base_path, sizeof client->base_path);
    snprintf(client->user_header, sizeof client->user_header, "UserDirectory=%s; UserId=%s",
             options->user_directory, options->user_id);
    client->verify_peer = options->verify_peer;
    client->timeout_ms = options->timeout_ms > 0 ? options->timeout_ms : 30000;
    client->max_sessions = options->max_sessions > 0 ? options->max_sessions : 1;
    client->max_message_bytes = options->max_message_bytes;
    client->batch = calloc((size_t)client->max_sessions, sizeof *client->batch);
    if (client->batch == NULL)
        goto out;

    lws_set_log_level(LLL_ERR | LLL_WARN, log_from_lws);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.user = client;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.gid = -1;
    info.uid = -1;
    /* Without a limit lws sizes its fd table by RLIMIT_NOFILE (can be 1M). */
    info.fd_limit_per_thread = (unsigned int)client->max_sessions + 8;
    unsigned int timeout_s = (unsigned int)((client->timeout_ms + 999) / 1000);
    info.timeout_secs = timeout_s;
    info.connect_timeout_secs = timeout_s;
    if (client->tls) {
        info.client_ssl_cert_filepath =
            options->cert_file && options->cert_file[0] ? options->cert_file : NULL;
        info.client_ssl_private_key_filepath =
            options->key_file && options->key_file[0] ? options->key_file : NULL;
        info.client_ssl_ca_filepath =
            options->ca_file && options->ca_file[0] ? options->ca_file : NULL;
    }
    client->context = lws_create_context(&info);
    if (client->context == NULL) {
        LOG_ERROR(MODULE, "cannot create the WebSocket client (check engine.cert_file, "
                          "engine.key_file and engine.ca_file)");
        status = BUTLER_ERR_INTERNAL;
        goto out;
    }
    if (pthread_create(&client->thread, NULL, service_main, client) != 0) {
        status = BUTLER_ERR_INTERNAL;
        goto out;
    }
    client->thread_started = true;
    *out = client;
    return BUTLER_OK;
out:
    engine_client_destroy(client);
    return status;
}

void engine_client_cancel(struct engine_client *client)
{
    if (client == NULL)
        return;
    pthread_mutex_lock(&client->mutex);
    client->cancelled = true;
    for (struct engine_session *s = client->sessions; s; s = s->next)
        mark_dead(s, BUTLER_ERR_SHUTDOWN, "Butler is stopping");
    pthread_cond_broadcast(&client->changed);
    pthread_mutex_unlock(&client->mutex);
    if (client->context)
        lws_cancel_service(client->context);
}

void engine_client_destroy(struct engine_client *client)
{
    if (client == NULL)
        return;
    engine_client_cancel(client);
    if (client->thread_started) {
        struct timespec deadline;
        deadline_in(2000, &deadline);
        pthread_mutex_lock(&client->mutex);
        while (client->sessions && wait_changed(client, &deadline))
            ;
        pthread_mutex_unlock(&client->mutex);
        atomic_store(&client->stop_thread, true);
        lws_cancel_service(client->context);
        pthread_join(client->thread, NULL);
    }
    if (client->context)
        lws_context_destroy(client->context);
    while (client->sessions) {
        struct engine_session *session = client->sessions;
        client->sessions = session->next;
        session_free(session);
    }
    free(client->batch);
    pthread_cond_destroy(&client->changed);
    pthread_mutex_destroy(&client->mutex);
    free(client);
}

int engine_client_open_sessions(struct engine_client *client)
{
    pthread_mutex_lock(&client->mutex);
    int count = client->open_sessions;
    pthread_mutex_unlock(&client->mutex);
    return count;
}

/* Percent-encode what a path segment cannot hold as is. */
static bool append_segment(char *path, size_t path_size, const char *segment)
{
    size_t length = strlen(path);
    for (const unsigned char *c = (const unsigned char *)segment; *c; c++) {
        bool plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                     (*c >= '0' && *c <= '9') || strchr("-._~", *c) != NULL;
        int written = plain ? snprintf(path + length, path_size - length, "%c", *c)
                            : snprintf(path + length, path_size - length, "%%%02X", *c);
        if (written < 0 || (size_t)written >= path_size - length)
            return false;
        length += (size_t)written;
    }
    return true;
}

enum butler_status engine_session_open(struct engine_client *client, const char *app_id,
                                       struct engine_session **out, char *error, size_t error_size)
{
    enum butler_status status = BUTLER_OK;
    struct engine_session *session = calloc(1, sizeof *session);
    if (session == NULL) {
        butler_error_set(error, error_size, "out of memory");
        return BUTLER_ERR_NOMEM;
    }
    session->client = client;
    session->next_id = 1;
    snprintf(session->path, sizeof session->path, "%s/app/", client->base_path);
    if (!append_segment(session->path, sizeof session->path, app_id ? app_id : "engineData")) {
        free(session);
        butler_error_set(error, error_size, "app id too long");
        return BUTLER_ERR_INVALID;
    }

    pthread_mutex_lock(&client->mutex);
    /* A free slot first: max_sessions sockets at most, all operations together. */
    while (!client->cancelled && client->open_sessions >= client->max_sessions)
        wait_changed(client, NULL);
    if (client->cancelled) {
        pthread_mutex_unlock(&client->mutex);
        free(session);
        butler_error_set(error, error_size, "Butler is stopping");
        return BUTLER_ERR_SHUTDOWN;
    }
    client->open_sessions++;
    session->connect_wanted = true;
    session->next = client->sessions;
    client->sessions = session;
    pthread_mutex_unlock(&client->mutex);
    lws_cancel_service(client->context);

    struct timespec deadline;
    deadline_in(client->timeout_ms, &deadline);
    pthread_mutex_lock(&client->mutex);
    while (!session->open && !session->dead)
        if (!wait_changed(client, &deadline))
            break;
    if (session->dead) {
        status = session->dead_status;
        butler_error_set(error, error_size, "%s", session->dead_error);
    } else if (!session->open) {
        status = BUTLER_ERR_TIMEOUT;
        butler_error_set(error, error_size,
                         "the engine at %s:%d did not accept the connection within %d ms",
                         client->host, client->port, client->timeout_ms);
        metrics_count("butler_engine_errors_total", "reason=\"timeout\"",
                      "Engine client failures by reason");
    }
    pthread_mutex_unlock(&client->mutex);
    if (status != BUTLER_OK) {
        engine_session_close(session);
        return status;
    }
    *out = session;
    return BUTLER_OK;
}

enum butler_status engine_call_start(struct engine_session *session, int handle, const char *method,
                                     const cJSON *params, int *call_id, char *error,
                                     size_t error_size)
{
    struct engine_client *client = session->client;
    enum butler_status status = BUTLER_OK;
    char *text = NULL;
    unsigned char *buffer = NULL;
    cJSON *request = cJSON_CreateObject();
    pthread_mutex_lock(&client->mutex);
    int id = session->next_id++;
    pthread_mutex_unlock(&client->mutex);
    if (request == NULL || !cJSON_AddStringToObject(request, "jsonrpc", "2.0") ||
        !cJSON_AddNumberToObject(request, "id", id) ||
        !cJSON_AddNumberToObject(request, "handle", handle) ||
        !cJSON_AddStringToObject(request, "method", method)) {
        status = BUTLER_ERR_NOMEM;
        goto out;
    }
    cJSON *copy = params ? cJSON_Duplicate(params, 1) : cJSON_CreateArray();
    if (copy == NULL || !cJSON_AddItemToObject(request, "params", copy)) {
        cJSON_Delete(copy);
        status = BUTLER_ERR_NOMEM;
        goto out;
    }
    text = cJSON_PrintUnformatted(request);
    size_t length = text ? strlen(text) : 0;
    buffer = text ? malloc(LWS_PRE + length) : NULL;
    if (buffer == NULL) {
        status = BUTLER_ERR_NOMEM;
        goto out;
    }
    memcpy(buffer + LWS_PRE, text, length);

    pthread_mutex_lock(&client->mutex);
    struct pending_call *call = NULL;
    for (int i = 0; i < ENGINE_CALLS_MAX && call == NULL; i++)
        if (!session->calls[i].used)
            call = &session->calls[i];
    if (session->dead) {
        status = session->dead_status;
        butler_error_set(error, error_size, "%s", session->dead_error);
    } else if (call == NULL || session->queue_count >= OUTGOING_MAX) {
        status = BUTLER_ERR_FULL;
        butler_error_set(error, error_size, "more than %d engine calls outstanding",
                         ENGINE_CALLS_MAX);
    } else {
        *call = (struct pending_call){.used = true, .id = id};
        session->queue[session->queue_count++] = (struct outgoing){buffer, length};
        buffer = NULL;
        *call_id = id;
    }
    pthread_mutex_unlock(&client->mutex);
    if (status == BUTLER_OK)
        lws_cancel_service(client->context);
out:
    if (status == BUTLER_ERR_NOMEM)
        butler_error_set(error, error_size, "out of memory");
    free(buffer);
    free(text);
    cJSON_Delete(request);
    return status;
}

enum butler_status engine_call_wait(struct engine_session *session, int call_id, int timeout_ms,
                                    cJSON **result, char *error, size_t error_size)
{
    struct engine_client *client = session->client;
    struct timespec deadline;
    if (timeout_ms >= 0)
        deadline_in(timeout_ms, &deadline);
    enum butler_status status;
    pthread_mutex_lock(&client->mutex);
    struct pending_call *call = NULL;
    for (int i = 0; i < ENGINE_CALLS_MAX && call == NULL; i++)
        if (session->calls[i].used && session->calls[i].id == call_id)
            call = &session->calls[i];
    if (call == NULL) {
        pthread_mutex_unlock(&client->mutex);
        butler_error_set(error, error_size, "no such engine call");
        return BUTLER_ERR_INVALID;
    }
    while (!call->done)
        if (!wait_changed(client, timeout_ms >= 0 ? &deadline : NULL))
            break;
    if (!call->done) {
        pthread_mutex_unlock(&client->mutex);
        butler_error_set(error, error_size, "no answer from the engine within %d ms", timeout_ms);
        return BUTLER_ERR_TIMEOUT;
    }
    status = call->status;
    if (status == BUTLER_OK && result)
        *result = call->result;
    else
        cJSON_Delete(call->result);
    if (status != BUTLER_OK)
        butler_error_set(error, error_size, "%s", call->error);
    *call = (struct pending_call){0};
    pthread_mutex_unlock(&client->mutex);
    return status;
}

enum butler_status engine_call(struct engine_session *session, int handle, const char *method,
                               const cJSON *params, int timeout_ms, cJSON **result, char *error,
                               size_t error_size)
{
    int call_id = 0;
    enum butler_status status =
        engine_call_start(session, handle, method, params, &call_id, error, error_size);
    if (status != BUTLER_OK)
        return status;
    status = engine_call_wait(session, call_id,
                              timeout_ms == 0 ? session->client->timeout_ms : timeout_ms, result,
                              error, error_size);
    if (status == BUTLER_ERR_TIMEOUT) {
        /* Give the slot back: a late answer is then logged and dropped. */
        struct engine_client *client = session->client;
        pthread_mutex_lock(&client->mutex);
        for (int i = 0; i < ENGINE_CALLS_MAX; i++)
            if (session->calls[i].used && session->calls[i].id == call_id) {
                cJSON_Delete(session->calls[i].result);
                session->calls[i] = (struct pending_call){0};
            }
        pthread_mutex_unlock(&client->mutex);
        char why[ENGINE_ERROR_MAX];
        snprintf(why, sizeof why, "%s: %s", method, error ? error : "timed out");
        butler_error_set(error, error_size, "%s", why);
        metrics_count("butler_engine_errors_total", "reason=\"timeout\"",
                      "Engine client failures by reason");
    }
    return status;
}

void engine_session_close(struct engine_session *session)
{
    if (session == NULL)
        return;
    struct engine_client *client = session->client;
    pthread_mutex_lock(&client->mutex);
    session->release = true;
    session->close_wanted = true;
    pthread_mutex_unlock(&client->mutex);
    lws_cancel_service(client->context);
}
