/*
 * The active users as the HTTP API (bridge/ingress/http_users.c) reads them
 * for GET /v4/activeusers (contract 9.5). An interface: topics/users.c
 * implements it, because that is where the state is kept (from the proxy's
 * session and connection events); the ingress includes only this header.
 */
#ifndef BUTLER_MODEL_ACTIVE_USERS_H
#define BUTLER_MODEL_ACTIVE_USERS_H

#include <stddef.h>

#include "bridge/core/status.h"

/*
 * The summary object {"count", "users", "perHost", "at"}, the same as the
 * retained <root>/sense/users/active, as of now. *json is owned by the caller
 * and released with active_users_summary_free(). BUTLER_ERR_NOT_FOUND when
 * the proxy port is off (udp.proxy_listen empty), BUTLER_ERR_NOMEM. Any thread.
 */
enum butler_status active_users_summary(char **json, size_t *length);
void active_users_summary_free(char *json);

#endif
