/*
 * GET /v4/activeusers (contract 9.5): the active users on Sense as the
 * proxy's session events describe them, the same object as the retained
 * <root>/sense/users/active: {"count", "users", "perHost", "at"}. 404 when
 * the proxy port is off (udp.proxy_listen empty). CivetWeb worker threads;
 * reads the view in bridge/model/active_users.h, never blocks on the broker.
 */
#ifndef BUTLER_HTTP_USERS_H
#define BUTLER_HTTP_USERS_H

#include "bridge/ingress/http_server.h"

void http_users_active(struct http_exchange *exchange);

#endif
