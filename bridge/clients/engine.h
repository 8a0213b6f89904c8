/*
 * Qlik Sense engine (QIX) client: JSON-RPC 2.0 over a WebSocket,
 * wss://<host>:4747/app/<appId> (or /app/engineData for global calls), mutual
 * TLS with the QRS client certificate and an X-Qlik-User header.
 *
 * Built on libwebsockets (Debian's libwebsockets 4.1): it takes a separate
 * client certificate and key file, lets us add the X-Qlik-User header to the
 * upgrade request, and runs every connection on one service thread.
 * CivetWeb 1.15's WebSocket client can do none of the first two and starts a
 * thread per connection (see docs/engine.md).
 *
 * Threads: one service thread per client owns every socket. The functions
 * below are called from worker threads; they hand work to the service thread
 * and wait on a condition variable, each wait bounded by a deadline and
 * cut short by engine_client_cancel() at shutdown.
 *
 * Bounds: at most max_sessions sessions (sockets) at once, counted until
 * the socket is really gone; engine_session_open() waits for a free slot.
 * An incoming message over max_message_bytes closes the session with an
 * error; at most ENGINE_CALLS_MAX calls are outstanding per session.
 */
#ifndef BUTLER_ENGINE_H
#define BUTLER_ENGINE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "bridge/core/status.h"

struct engine_client;
struct engine_session;

enum { ENGINE_CALLS_MAX = 4, ENGINE_ERROR_MAX = 512 };

struct engine_client_options {
    const char *url; /* wss://host[:port] (https:// and ws:// are accepted too) */
    const char *cert_file;
    const char *key_file;
    const char *ca_file; /* empty: the system store */
    bool verify_peer;
    const char *user_directory; /* X-Qlik-User */
    const char *user_id;
    int timeout_ms; /* connect + upgrade, and each call given timeout 0 */
    int max_sessions;
    size_t max_message_bytes;
};

/* Start the service thread. Options are copied. Start-up, main thread. */
enum butler_status engine_client_create(const struct engine_client_options *options,
                                        struct engine_client **out);

/* Shutdown: every wait (slot, connect, call) returns BUTLER_ERR_SHUTDOWN from
 * now on and open sessions are closed. Any thread; idempotent. */
void engine_client_cancel(struct engine_client *client);

/* Cancel, wait up to 2 s for the sockets to close, stop the thread, free.
 * No session may be used any more. NULL is fine. */
void engine_client_destroy(struct engine_client *client);

/* Sessions open now (sockets not yet gone); for tests and metrics. */
int engine_client_open_sessions(struct engine_client *client);

/*
 * Open /app/<app_id> (app_id NULL: /app/engineData). Waits for a session slot
 * (until cancelled), then up to timeout_ms for the TLS handshake and the
 * upgrade. On BUTLER_OK *out is the caller's (engine_session_close). On error
 * `error` says why (BUTLER_ERR_TIMEOUT, BUTLER_ERR_IO, BUTLER_ERR_DENIED when
 * the engine refused the upgrade, BUTLER_ERR_SHUTDOWN).
 */
enum butler_status engine_session_open(struct engine_client *client, const char *app_id,
                                       struct engine_session **out, char *error, size_t error_size);

/*
 * Send {"jsonrpc":"2.0","id":N,"handle":handle,"method":method,"params":params}
 * without waiting; *call_id identifies it for engine_call_wait. `params`
 * (array or object; NULL = []) stays the caller's. Notifications from the
 * engine (no id: OnConnected, OnAuthenticationInformation, ...) are not
 * answers and are skipped.
 */
enum butler_status engine_call_start(struct engine_session *session, int handle, const char *method,
                                     const cJSON *params, int *call_id, char *error,
                                     size_t error_size);

/*
 * Wait for the answer to call_id up to timeout_ms (< 0: until it comes or the
 * session dies). BUTLER_OK: *result is the "result" member (caller frees).
 * BUTLER_ERR_REMOTE: the engine answered an error; `error` holds its message
 * (and parameter). BUTLER_ERR_TIMEOUT leaves the call pending: wait again or
 * close. Other errors: the session is dead.
 */
enum butler_status engine_call_wait(struct engine_session *session, int call_id, int timeout_ms,
                                    cJSON **result, char *error, size_t error_size);

/* engine_call_start + engine_call_wait; timeout_ms 0 = the client's timeout_ms. On
 * BUTLER_ERR_TIMEOUT the call is given up (a late answer is dropped). */
enum butler_status engine_call(struct engine_session *session, int handle, const char *method,
                               const cJSON *params, int timeout_ms, cJSON **result, char *error,
                               size_t error_size);

/* Close the socket (asynchronously) and release the caller's hold. NULL ok. */
void engine_session_close(struct engine_session *session);

/* One message from the engine, classified (pure; exposed for tests and fuzzing). */
enum engine_message_kind { ENGINE_MESSAGE_ANSWER = 1, ENGINE_MESSAGE_NOTIFICATION };
struct engine_message {
    enum engine_message_kind kind;
    int id;        /* answers */
    bool is_error; /* answers: "error" instead of "result" */
    char error[ENGINE_ERROR_MAX];
    cJSON *result;          /* answers without error; owned (engine_message_clear) */
    char method[64];        /* notifications (truncated) */
    bool must_authenticate; /* OnAuthenticationInformation */
    char session_state[64]; /* OnConnected's qSessionState */
};

/* BUTLER_ERR_INVALID for anything that is not a JSON object with a numeric
 * id (0..INT_MAX) or a method. Any thread. */
enum butler_status engine_message_parse(const char *text, size_t length,
                                        struct engine_message *out);
void engine_message_clear(struct engine_message *message);

/* Parse "wss://host[:port][/...]" into host and port (default 4747) and
 * whether TLS is used. Pure; exposed for unit tests. */
enum butler_status engine_parse_url(const char *url, char *host, size_t host_size, int *port,
                                    bool *tls);

#endif
