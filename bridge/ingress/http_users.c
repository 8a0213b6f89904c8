/* GET /v4/activeusers; see http_users.h. */
#include "bridge/ingress/http_users.h"

#include "bridge/model/active_users.h"

void http_users_active(struct http_exchange *exchange)
{
    char *json = NULL;
    size_t length = 0;
    enum butler_status status = active_users_summary(&json, &length);
    if (status == BUTLER_ERR_NOT_FOUND)
        http_exchange_reply_error(exchange, 404,
                                  "active users are off: set udp.proxy_listen to hear the Sense "
                                  "proxy",
                                  NULL);
    else if (status != BUTLER_OK)
        http_exchange_reply_error(exchange, 500, "out of memory", NULL);
    else
        http_exchange_reply(exchange, 200, "application/json", json, length, NULL);
    active_users_summary_free(json);
}
