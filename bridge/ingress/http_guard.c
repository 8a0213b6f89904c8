/*
 * Host, Origin and CORS preflight checks (see http_guard.h).
 */
#include "bridge/ingress/http_guard.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bridge/core/log.h"
#include "bridge/core/metrics.h"

#define MODULE "http"

enum {
    HTTP_GUARD_HOSTS_MAX = 256,
    HOST_NAME_TEXT = 256,
};

struct http_guard {
    const struct butler_config *config;
    size_t count;
    char *hosts[HTTP_GUARD_HOSTS_MAX]; /* lower case, no brackets, owned */
};

bool http_guard_host_name(const char *host_header, char *out, size_t out_size)
{
    const char *start = host_header;
    size_t length;
    if (start[0] == '[') {
        const char *close = strchr(start, ']');
        if (close == NULL)
            return false;
        start++;
        length = (size_t)(close - start);
        if (close[1] != '\0' && close[1] != ':')
            return false;
    } else {
        length = strcspn(start, ":");
        /* More than one colon without brackets is not a host[:port]. */
        if (start[length] == ':' && strchr(start + length + 1, ':'))
            return false;
    }
    if (length > 0 && start[length - 1] == '.')
        length--;
    if (length == 0 || length >= out_size)
        return false;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)start[i];
        if (c <= 0x20 || c >= 0x7f || c == '/' || c == '@')
            return false;
        out[i] = (char)tolower(c);
    }
    out[length] = '\0';
    return true;
}

/* Add one name (copied, lower-cased, brackets and port removed); duplicates
 * are skipped. */
static enum butler_status add_host(struct http_guard *guard, const char *name)
{
    char host[HOST_NAME_TEXT];
    if (!http_guard_host_name(name, host, sizeof host))
        return BUTLER_OK;
    for (size_t i = 0; i < guard->count; i++)
        if (strcmp(guard->hosts[i], host) == 0)
            return BUTLER_OK;
    if (guard->count >= HTTP_GUARD_HOSTS_MAX) {
        LOG_WARN(MODULE, "more than %d host names for the Host check: %s and later are left out",
                 HTTP_GUARD_HOSTS_MAX, host);
        return BUTLER_OK;
    }
    char *copy = strdup(host);
    if (copy == NULL)
        return BUTLER_ERR_NOMEM;
    guard->hosts[guard->count++] = copy;
    return BUTLER_OK;
}

/* The host parts of a listen list ("127.0.0.1:8080,[::1]:8443s,9090"). */
static enum butler_status add_listeners(struct http_guard *guard, const char *listen)
{
    for (const char *at = listen; at && *at;) {
        size_t length = strcspn(at, ",");
        char entry[HOST_NAME_TEXT];
        snprintf(entry, sizeof entry, "%.*s", (int)(length < sizeof entry ? length : 0), at);
        const char *colon = strrchr(entry, ':');
        if (colon) {
            entry[colon - entry] = '\0';
            if (add_host(guard, entry) != BUTLER_OK)
                return BUTLER_ERR_NOMEM;
        }
        at = at[length] ? at + length + 1 : NULL;
    }
    return BUTLER_OK;
}

/* Every address of the machine's interfaces: a bare-port or 0.0.0.0
 * listener answers on each of them. */
static enum butler_status add_interfaces(struct http_guard *guard)
{
    struct ifaddrs *list = NULL;
    if (getifaddrs(&list) != 0)
        return BUTLER_OK;
    enum butler_status status = BUTLER_OK;
    for (struct ifaddrs *it = list; it && status == BUTLER_OK; it = it->ifa_next) {
        char text[INET6_ADDRSTRLEN + 1] = "";
        if (it->ifa_addr == NULL)
            continue;
        if (it->ifa_addr->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)it->ifa_addr)->sin_addr,
                      text, sizeof text);
        else if (it->ifa_addr->sa_family == AF_INET6)
            inet_ntop(AF_INET6,
                      &((const struct sockaddr_in6 *)(const void *)it->ifa_addr)->sin6_addr, text,
                      sizeof text);
        if (text[0] && strchr(text, ':')) {
            char bracketed[INET6_ADDRSTRLEN + 3];
            snprintf(bracketed, sizeof bracketed, "[%s]", text);
            status = add_host(guard, bracketed);
        } else if (text[0]) {
            status = add_host(guard, text);
        }
    }
    freeifaddrs(list);
    return status;
}

enum butler_status http_guard_create(const struct butler_config *config, struct http_guard **out)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    struct http_guard *guard = calloc(1, sizeof *guard);
    *out = NULL;
    if (guard == NULL)
        goto out;
    guard->config = config;
    static const char *const fixed[] = {"localhost", "127.0.0.1", "[::1]"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (add_host(guard, fixed[i]) != BUTLER_OK)
            goto out;
    char name[HOST_NAME_TEXT] = "";
    if (gethostname(name, sizeof name - 1) == 0 && name[0]) {
        if (add_host(guard, name) != BUTLER_OK)
            goto out;
        char *dot = strchr(name, '.');
        if (dot) {
            *dot = '\0';
            if (add_host(guard, name) != BUTLER_OK)
                goto out;
        }
    }
    if (add_listeners(guard, config->http.listen) != BUTLER_OK ||
        add_listeners(guard, config->http.health_listen) != BUTLER_OK ||
        add_interfaces(guard) != BUTLER_OK)
        goto out;
    /* Sense calls back at the name it was given. */
    const char *callback = strstr(config->qrs.notifications.callback_url, "://");
    if (callback) {
        char authority[HOST_NAME_TEXT];
        callback += 3;
        size_t length = strcspn(callback, "/?#");
        if (length < sizeof authority && !memchr(callback, '@', length)) {
            snprintf(authority, sizeof authority, "%.*s", (int)length, callback);
            if (add_host(guard, authority) != BUTLER_OK)
                goto out;
        }
    }
    for (size_t i = 0; i < config->http.allowed_hosts.count; i++)
        if (add_host(guard, config->http.allowed_hosts.items[i]) != BUTLER_OK)
            goto out;
    *out = guard;
    guard = NULL;
    status = BUTLER_OK;
out:
    http_guard_free(guard);
    return status;
}

void http_guard_free(struct http_guard *guard)
{
    if (guard == NULL)
        return;
    for (size_t i = 0; i < guard->count; i++)
        free(guard->hosts[i]);
    free(guard);
}

bool http_guard_host_allowed(const struct http_guard *guard, const char *host_header)
{
    char host[HOST_NAME_TEXT];
    if (!http_guard_host_name(host_header, host, sizeof host))
        return false;
    for (size_t i = 0; i < guard->count; i++)
        if (strcmp(guard->hosts[i], host) == 0)
            return true;
    return false;
}

static void count_refused(const char *reason)
{
    char labels[64];
    snprintf(labels, sizeof labels, "reason=\"%s\"", reason);
    metrics_count("butler_http_refused_total", labels,
                  "HTTP requests refused before routing: wrong Host, foreign Origin, preflight");
}

/* Origin equals scheme://Host of this very request (a same-origin page). */
static bool own_origin(const struct http_exchange *exchange, const char *origin, const char *host)
{
    const char *scheme = http_exchange_is_tls(exchange) ? "https://" : "http://";
    size_t scheme_length = strlen(scheme);
    return host && strncasecmp(origin, scheme, scheme_length) == 0 &&
           strcasecmp(origin + scheme_length, host) == 0;
}

static bool listed_origin(const struct http_guard *guard, const char *origin)
{
    const struct config_string_list *list = &guard->config->http.allowed_origins;
    for (size_t i = 0; i < list->count; i++) {
        size_t length = strlen(list->items[i]);
        while (length > 0 && list->items[i][length - 1] == '/')
            length--;
        if (strlen(origin) == length && strncasecmp(origin, list->items[i], length) == 0)
            return true;
    }
    return false;
}

bool http_guard_check(const struct http_guard *guard, struct http_exchange *exchange)
{
    const char *host = http_exchange_header(exchange, "Host");
    const char *origin = http_exchange_header(exchange, "Origin");
    /* No Host at all is an HTTP/1.0 client, never a browser. */
    if (host && !http_guard_host_allowed(guard, host)) {
        exchange->endpoint = "refusedHost";
        count_refused("host");
        LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                        "refused a request for another host (Host header not this machine; "
                        "add it to http.allowed_hosts if it is a name of this Butler)");
        http_exchange_reply_error(exchange, 421,
                                  "the Host header does not name this server (see "
                                  "http.allowed_hosts)",
                                  NULL);
        return false;
    }
    const bool preflight = exchange->method == HTTP_METHOD_OTHER && origin &&
                           http_exchange_header(exchange, "Access-Control-Request-Method") &&
                           strcmp(http_exchange_request_method(exchange), "OPTIONS") == 0;
    if (origin == NULL)
        return true;
    const bool listed = listed_origin(guard, origin);
    if (preflight) {
        exchange->endpoint = "preflight";
        if (!listed) {
            count_refused("preflight");
            http_exchange_reply_error(exchange, 403,
                                      "cross-origin requests are not allowed (see "
                                      "http.allowed_origins)",
                                      NULL);
            return false;
        }
        exchange->cors_origin = origin;
        static const char *const cors[] = {
            "Access-Control-Allow-Methods",
            "GET, POST, PUT, DELETE",
            "Access-Control-Allow-Headers",
            "Authorization, Content-Type, X-HTTP-Method-Override",
            "Access-Control-Max-Age",
            "600",
            NULL,
        };
        http_exchange_reply(exchange, 204, NULL, NULL, 0, cors);
        return false;
    }
    if (listed) {
        exchange->cors_origin = origin;
        return true;
    }
    if (own_origin(exchange, origin, host))
        return true;
    exchange->endpoint = "refusedOrigin";
    count_refused("origin");
    LOG_RATELIMITED(LOG_LEVEL_WARN, MODULE,
                    "refused a request from a web page of another origin (see "
                    "http.allowed_origins)");
    http_exchange_reply_error(exchange, 403,
                              "requests from this Origin are not allowed (see "
                              "http.allowed_origins)",
                              NULL);
    return false;
}
