/*
 * Butler's configuration: one table of keys (config/keys.c) with type, range
 * and default, loaded from YAML with libyaml, then overridden from the
 * environment (BUTLER_<PATH> with dots as underscores, upper case, e.g.
 * BUTLER_MQTT_PASSWORD, BUTLER_MQTT_TLS_CA_FILE).
 *
 * Ownership: config_load() fills a struct butler_config whose strings and
 * lists are heap-allocated and owned by the struct; config_free() releases all
 * of it. After start-up the struct is read-only and shared by every thread.
 */
#ifndef BUTLER_CONFIG_H
#define BUTLER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "bridge/core/status.h"

struct config_string_list {
    char **items; /* owned; each item owned */
    size_t count;
};

struct config_custom_property {
    char *name;
    char *value;
};

struct config_custom_property_list {
    struct config_custom_property *items;
    size_t count;
};

enum config_log_level {
    CONFIG_LOG_ERROR = 0,
    CONFIG_LOG_WARN = 1,
    CONFIG_LOG_INFO = 2,
    CONFIG_LOG_DEBUG = 3,
};

/* health.metrics_auth: "token" = /metrics takes the same bearer tokens as
 * /v4 (when http.tokens is set); "open" = anyone who reaches the listener. */
enum config_metrics_auth {
    CONFIG_METRICS_AUTH_TOKEN = 0,
    CONFIG_METRICS_AUTH_OPEN,
};

enum config_log_format {
    CONFIG_LOG_TEXT = 0,
    CONFIG_LOG_JSON = 1,
};

/* never_release.inactive / blocked / removed_externally (the Node.js Butler's
 * neverRelease flags): yes = keep the licence of users with the flag set,
 * no = keep the licence of users without it, ignore = the flag does not matter. */
enum config_user_flag_rule {
    CONFIG_FLAG_IGNORE = 0,
    CONFIG_FLAG_YES,
    CONFIG_FLAG_NO,
};

/* A user by directory and id (license.release.never_release.users). */
struct config_user_ref {
    char *user_directory;
    char *user_id;
};

struct config_user_ref_list {
    struct config_user_ref *items;
    size_t count;
};

enum config_route_destination {
    CONFIG_ROUTE_SLACK = 0,
    CONFIG_ROUTE_TEAMS,
    CONFIG_ROUTE_EMAIL,
    CONFIG_ROUTE_WEBHOOK,
    CONFIG_ROUTE_MQTT,
    CONFIG_ROUTE_INFLUXDB,
};

/* One New Relic account (newrelic.accounts); every event and metric goes to each. */
struct config_newrelic_account {
    char *name;
    char *account_id;
    char *api_key; /* secret: sent as the Api-Key header */
};

struct config_newrelic_account_list {
    struct config_newrelic_account *items;
    size_t count;
};

/* One Qlik Cloud tenant (qlik_cloud.tenants): its webhooks and its REST API. */
struct config_cloud_tenant {
    char *name;           /* a topic level and a label in alerts */
    char *tenant_id;      /* events naming another tenant are refused */
    char *url;            /* https://<tenant>.<region>.qlikcloud.com */
    char *api_key;        /* secret: Bearer key (or the OAuth client below) */
    char *client_id;      /* oauth.client_id */
    char *client_secret;  /* secret: oauth.client_secret */
    char *webhook_secret; /* secret: the webhook's HMAC key */
    char *ca_file;        /* "" = the system's CAs */
};

struct config_cloud_tenant_list {
    struct config_cloud_tenant *items;
    size_t count;
};

/* One extra HTTP header of a route (`headers: {Name: value}`). */
struct config_header {
    char *name;
    char *value; /* treated as a secret: API keys travel here */
};

struct config_header_list {
    struct config_header *items;
    size_t count;
};

/* One entry of `routes:` (contract 3.3). Empty strings mean "not set". */
struct config_route {
    char *name;  /* required, unique */
    char *match; /* required MQTT topic filter */
    enum config_route_destination to;
    char *webhook_url;                    /* secret; default: slack/teams webhook_url */
    char *channel;                        /* slack */
    char *username;                       /* slack */
    char *icon_emoji;                     /* slack */
    char *title;                          /* teams */
    char *subject;                        /* email subject template */
    struct config_string_list recipients; /* email */
    char *topic;                          /* mqtt destination topic */
    char *template_text;                  /* key `template` */
    char *method;                         /* webhook: POST (default) | PUT */
    char *rate_limit_key;                 /* rate_limit.key template; empty = one key per route */
    int rate_limit_window_s;              /* rate_limit.window_s; 0 = no rate limit */
    /* condition.custom_property: fire only for tasks whose QRS custom property
     * has this value (the Node.js Butler's per-task opt-in). Empty = always. */
    char *condition_custom_property_name;
    char *condition_custom_property_value;
    char *condition_tag; /* fire only when the event's app or task carries this tag */
    /* Sent with each webhook delivery; a Content-Type here replaces the JSON default. */
    struct config_header_list headers;
    /* influxdb: one point per message (contract 9.3); each value a template. */
    char *measurement;
    struct config_header_list tags;   /* {tag: template}, printed (not secret) */
    struct config_header_list fields; /* {field: template} */
};

struct config_route_list {
    struct config_route *items;
    size_t count;
};

/* One approved pair of file.copy or file.move (contract 8.1): a file beneath
 * `from` may go beneath `to`. Both absolute directories. */
struct config_file_pair {
    char *from;
    char *to;
};

struct config_file_pair_list {
    struct config_file_pair *items;
    size_t count;
};

struct butler_config {
    char *source_file; /* path given with --config, or "" for defaults */

    int shutdown_grace_s;

    struct {
        enum config_log_level level;
        enum config_log_format format;
    } log;

    struct {
        char *host;
        int port;
        char *client_id;
        char *username;
        char *password; /* secret; also password_file */
        struct {
            bool enable;
            char *ca_file;
            char *cert_file;
            char *key_file;
            bool verify_peer;
        } tls;
        int keepalive_s;
        int session_expiry_s;
        char *topic_root;
        char *share_group;
        bool legacy_topics;
        int max_inflight;     /* extension: outbound publishes awaiting PUBACK, hard cap */
        int reconnect_min_ms; /* extension: first reconnect delay */
        int reconnect_max_ms; /* extension: reconnect delay cap */
    } mqtt;

    struct {
        bool enable;
        char *listen;
        struct {
            char *cert_file;
            char *key_file;
            char *ca_file;
        } tls;
        struct config_string_list tokens; /* secret; also tokens_file (one per line) */
        long max_body_bytes;
        int task_start_timeout_ms;
        int task_finish_timeout_s; /* ?wait=finished: 202 with the execution ids after this */
        struct config_string_list endpoints;
        int threads;           /* extension: CivetWeb worker threads */
        int long_waits_max;    /* requests that may wait past the timeout */
        int header_timeout_ms; /* reading a request line and headers, each body read */
        char *health_listen;   /* "" = no listener of /health's own */
        struct config_string_list allowed_origins; /* cross-origin pages allowed in */
        struct config_string_list allowed_hosts;   /* Host names besides the machine's */
        bool status_page;                          /* GET / serves the status page (contract 9.4) */
    } http;

    struct {
        bool enable;
        char *listen;
        struct config_string_list allowed_sources;
        int max_message_bytes;
        int dedup_ttl_s;
        /* The Sense proxy's port (contract 9.5); "" = off. */
        char *proxy_listen;
        struct config_string_list proxy_allowed_sources;
        int session_idle_s;
        int active_users_max;
    } udp;

    struct {
        char *url;
        char *cert_file;
        char *key_file;
        char *ca_file;
        bool verify_peer;
        char *user_directory;
        char *user_id;
        int timeout_ms;
        int connect_timeout_ms; /* extension */
        /* QRS change subscriptions as a second event source (docs/qrs-notifications.md). */
        struct {
            bool enable;
            char *callback_url;   /* Butler's HTTP ingress as Sense reaches it */
            char *secret;         /* secret; also secret_file; a path segment of the callback */
            char *filter;         /* QRS filter on ExecutionResult; "" = every update */
            int check_interval_s; /* re-register (and drop the old handle) this often */
        } notifications;
    } qrs;

    struct {
        struct {
            struct config_string_list task_ids;
            struct config_string_list tags;
            struct config_custom_property_list custom_properties;
        } allow;
        int dedup_ttl_s;
        int dedup_max_requests; /* requestIds (and answers) remembered at once */
        int workers;            /* extension: worker threads, each with its own QRS connection */
        int queue_max;          /* extension: jobs waiting for a worker, hard cap */
        int name_cache_s;       /* extension: how long a task id -> name lookup is reused */
        int batch_max; /* extension: most waiting starts sent in one QRS call (1 = one each) */
        struct {
            int poll_s;    /* each followed execution polled at most this far apart */
            int timeout_s; /* a run not ended after this is reported as `timeout` */
            int max;       /* executions followed at once, hard cap */
        } follow;
    } task_start;

    struct {
        char *qmc_url;
        char *hub_url;
        struct {
            bool enable; /* GET /qrs/about at start, then every interval */
            int interval_s;
        } version;
    } sense;

    /* Sense licence monitors and release of unused allocations (contract 8.3). */
    struct {
        struct {
            bool enable;
            int interval_s;
            int warn_days;       /* expiring event when daysLeft <= warn_days */
            int available_below; /* access "low" event under this; 0 = never */
        } monitor;
        struct {
            bool enable;
            bool dry_run; /* true: report what would be released, release nothing */
            int interval_s;
            int professional_days;
            int analyzer_days;
            struct config_never_release {
                struct config_user_ref_list users;
                struct config_string_list user_directories;
                struct config_string_list tags;
                struct config_custom_property_list custom_properties;
                enum config_user_flag_rule inactive;
                enum config_user_flag_rule blocked;
                enum config_user_flag_rule removed_externally;
            } never_release;
        } release;
    } license;

    /* POST /v4/newrelic/event|metric -> <root>/newrelic/event|metric -> New Relic. */
    struct {
        struct config_newrelic_account_list accounts;
        char *event_url;  /* events go to <event_url>/v1/accounts/<account_id>/events */
        char *metric_url; /* the metric API endpoint itself */
        struct config_custom_property_list attributes; /* added to every event and metric */
    } newrelic;

    /* Qlik Cloud reload events: POST /qlik-cloud/webhook and mqtt_topic. */
    struct {
        struct config_cloud_tenant_list tenants;
        char *mqtt_topic; /* "" = none; a forwarder's topic filter */
        int script_log_tail_lines;
    } qlik_cloud;

    /* GET or POST a URL every interval (uptime services). */
    struct {
        bool enable;
        char *url; /* secret: healthcheck URLs carry their token */
        char *method;
        int interval_s;
    } heartbeat;

    struct {
        char *webhook_url; /* secret */
    } slack;
    struct {
        char *webhook_url; /* secret */
    } teams;
    struct {
        char *url;
        char *from;
        char *username;
        char *password;               /* secret */
        bool plaintext_auth_loopback; /* credentials without TLS to a loopback relay */
    } smtp;

    struct config_route_list routes;

    /* Time series (contract 9.3): routes `to: influxdb`, node_measurements. */
    struct {
        char *url; /* "" = off */
        int version;
        char *database;
        char *retention_policy;
        char *username;
        char *password; /* secret */
        char *org;
        char *bucket;
        char *token; /* secret */
        struct config_header_list tags;
        bool node_measurements;
        int butler_interval_s;
        int batch_max;
        int flush_ms;
        int timeout_ms;
    } influxdb;

    struct {
        int max_attempts;
        int initial_backoff_ms;
        int max_backoff_ms;
    } retry;

    struct {
        char *dir;
        bool fsync;
        long max_bytes; /* extension: size cap; work is refused beyond it */
    } spool;

    struct {
        bool metrics;
        enum config_metrics_auth metrics_auth; /* who may read /metrics when http.tokens is set */
    } health;

    /* Key-value store on the broker (retained <root>/kv/<ns>/<key>). */
    struct {
        int max_keys_per_namespace; /* over it: the oldest-written key is evicted */
        int max_namespaces;         /* hard cap on the in-memory view */
        int max_value_bytes;        /* hard cap on one value */
    } kv;

    /* Sense engine (QIX) for app reload, list and dump (contract 8.2). */
    struct {
        char *url;       /* "" = engine operations off */
        char *cert_file; /* "" = qrs.cert_file; likewise key_file, ca_file */
        char *key_file;
        char *ca_file;
        char *verify_peer;    /* "", "true" or "false"; "" = qrs.verify_peer */
        char *user_directory; /* "" = qrs.user_directory (and user_id likewise) */
        char *user_id;
        int timeout_ms;         /* connect, upgrade and every call but the reload */
        int reload_timeout_s;   /* 0 = as long as the engine takes */
        int max_sessions;       /* engine sockets open at once */
        long max_message_bytes; /* extension: one engine message (an app dump part) */
        int queue_max;          /* extension: app requests waiting for a session */
    } engine;

    /* Cron schedules (retained <root>/schedules/<id>). */
    struct {
        bool enable; /* false: serve the API but never fire */
        int max_schedules;
        int missed_max_reported; /* missed firing times listed per event */
    } scheduler;

    /* File operations (contract 8.1, topics/file.c). Directories are absolute. */
    struct {
        bool enable;
        char *node; /* "" = only <root>/file/<op>; else also <root>/file/<node>/<op> */
        struct config_file_pair_list copy;
        struct config_file_pair_list move;
        struct config_string_list delete_roots; /* key file.delete */
        struct config_string_list mkdir_roots;  /* key file.mkdir */
        char *qvd_path;                         /* base of createdirqvd; "" = off */
        int workers;           /* extension: file commands run at once, on their own threads */
        int queue_max;         /* extension: file commands waiting for those threads, hard cap */
        long copy_max_entries; /* a directory copy: entries in the tree, hard cap */
        long copy_max_bytes;   /* a directory copy: bytes of its files, hard cap */
    } file;
};

/*
 * Load `path` (NULL or "" = defaults only) into *config, apply environment
 * overrides and read *_file secrets. On failure writes one line per problem to
 * `errors` in the form "FILE:LINE:COLUMN: KEY.PATH: message" and returns
 * BUTLER_ERR_INVALID (or BUTLER_ERR_IO when the file cannot be read).
 * On success the caller owns *config and releases it with config_free().
 * Thread: start-up only.
 */
enum butler_status config_load(const char *path, struct butler_config *config, FILE *errors);

/* Same as config_load but from a buffer (used by the fuzz target and unit tests).
 * `name` is used in error messages in place of a file name. Environment
 * overrides are applied only when `use_environment` is true. */
enum butler_status config_load_buffer(const char *name, const char *text, size_t length,
                                      bool use_environment, struct butler_config *config,
                                      FILE *errors);

/* Print the effective configuration as YAML with every secret masked. */
void config_print(const struct butler_config *config, FILE *out);

void config_free(struct butler_config *config);

/* The configuration reference, generated from the key table: every key with
 * its path, type, range, default and one-line description.
 *   MARKDOWN: docs/configuration.md (a ctest compares the committed file)
 *   MAN:      butler.yaml(5) in man(7) roff
 *   TEXT:     the compact key list at the end of `butler --help` */
enum config_reference_format {
    CONFIG_REFERENCE_MARKDOWN,
    CONFIG_REFERENCE_MAN,
    CONFIG_REFERENCE_TEXT,
};

/* "markdown", "man" or "text" -> *format; false when the name is unknown. */
bool config_reference_format_from_name(const char *name, enum config_reference_format *format);

/* Write the reference to `out`. BUTLER_ERR_INVALID when a key lacks its
 * description (a programming error the docs test catches). Thread: any. */
enum butler_status config_reference(FILE *out, enum config_reference_format format);

#endif
