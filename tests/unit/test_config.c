/*
 * Unit tests for the configuration (the files in config/): defaults, every key type, exact error
 * texts with file:line:column and key path, environment and *_file layers,
 * masked printing that round-trips, the shipped example file, and hostile
 * input that must fail cleanly.
 */
#include "config/config.h"
#include "tests/unit/unit.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ---- */

/* Load `text` as file "t.yaml" without the environment. *errors_out gets the
 * error output (caller frees). */
static enum butler_status load_with_env(const char *text, size_t length, bool use_environment,
                                        struct butler_config *config, char **errors_out)
{
    char *errors = NULL;
    size_t errors_length = 0;
    FILE *stream = open_memstream(&errors, &errors_length);
    enum butler_status status;
    UNIT_CHECK(stream != NULL);
    status = config_load_buffer("t.yaml", text, length, use_environment, config, stream);
    fclose(stream);
    if (errors_out)
        *errors_out = errors;
    else
        free(errors);
    return status;
}

static enum butler_status load(const char *text, struct butler_config *config, char **errors_out)
{
    return load_with_env(text, strlen(text), false, config, errors_out);
}

/* Expect exactly `expected_errors` (all lines) for `text`. */
static void expect_errors(const char *text, const char *expected_errors)
{
    struct butler_config config;
    char *errors = NULL;
    enum butler_status status = load(text, &config, &errors);
    UNIT_CHECK(status == BUTLER_ERR_INVALID);
    UNIT_CHECK_STR(errors, expected_errors);
    free(errors);
}

/* Expect failure with at least `needle` somewhere in the error output. */
static void expect_error_containing(const char *text, size_t length, const char *needle)
{
    struct butler_config config;
    char *errors = NULL;
    enum butler_status status = load_with_env(text, length, false, &config, &errors);
    UNIT_CHECK(status == BUTLER_ERR_INVALID);
    if (!errors || !strstr(errors, needle))
        unit_fail_str(__FILE__, __LINE__, "errors", errors, needle);
    free(errors);
}

static bool all_zero(const void *memory, size_t size)
{
    const unsigned char *bytes = memory;
    for (size_t i = 0; i < size; i++)
        if (bytes[i])
            return false;
    return true;
}

static char *print_to_string(const struct butler_config *config)
{
    char *text = NULL;
    size_t length = 0;
    FILE *stream = open_memstream(&text, &length);
    UNIT_CHECK(stream != NULL);
    config_print(config, stream);
    fclose(stream);
    return text;
}

static size_t count_lines(const char *text)
{
    size_t lines = 0;
    for (; text && *text; text++)
        lines += *text == '\n';
    return lines;
}

static char temp_dir[64];

static const char *make_temp_dir(void)
{
    snprintf(temp_dir, sizeof temp_dir, "/tmp/butler-test-config-XXXXXX");
    UNIT_CHECK(mkdtemp(temp_dir) != NULL);
    return temp_dir;
}

static void write_file(char *path_out, size_t size, const char *name, const char *content)
{
    snprintf(path_out, size, "%s/%s", temp_dir, name);
    FILE *file = fopen(path_out, "w");
    UNIT_CHECK(file != NULL);
    if (file) {
        fputs(content, file);
        fclose(file);
    }
}

static void remove_temp(const char *const *names, size_t count)
{
    char path[256];
    for (size_t i = 0; i < count; i++) {
        snprintf(path, sizeof path, "%s/%s", temp_dir, names[i]);
        unlink(path);
    }
    UNIT_CHECK(rmdir(temp_dir) == 0);
}

/* ---- tests ---- */

static void check_defaults(const struct butler_config *c)
{
    UNIT_CHECK(c->shutdown_grace_s == 10);
    UNIT_CHECK(c->log.level == CONFIG_LOG_INFO);
    UNIT_CHECK(c->log.format == CONFIG_LOG_TEXT);
    UNIT_CHECK_STR(c->mqtt.host, "127.0.0.1");
    UNIT_CHECK(c->mqtt.port == 1883);
    UNIT_CHECK_STR(c->mqtt.client_id, "butler");
    UNIT_CHECK_STR(c->mqtt.username, "");
    UNIT_CHECK_STR(c->mqtt.password, "");
    UNIT_CHECK(!c->mqtt.tls.enable);
    UNIT_CHECK_STR(c->mqtt.tls.ca_file, "");
    UNIT_CHECK(c->mqtt.tls.verify_peer);
    UNIT_CHECK(c->mqtt.keepalive_s == 30);
    UNIT_CHECK(c->mqtt.session_expiry_s == 3600);
    UNIT_CHECK_STR(c->mqtt.topic_root, "butler");
    UNIT_CHECK_STR(c->mqtt.share_group, "");
    UNIT_CHECK(!c->mqtt.legacy_topics);
    UNIT_CHECK(c->mqtt.max_inflight == 1000);
    UNIT_CHECK(c->mqtt.reconnect_min_ms == 200);
    UNIT_CHECK(c->mqtt.reconnect_max_ms == 30000);
    UNIT_CHECK(c->http.enable);
    UNIT_CHECK_STR(c->http.listen, "127.0.0.1:8080");
    UNIT_CHECK_STR(c->http.tls.cert_file, "");
    UNIT_CHECK(c->http.tokens.count == 0 && c->http.tokens.items == NULL);
    UNIT_CHECK(c->http.max_body_bytes == 1048576);
    UNIT_CHECK(c->http.task_start_timeout_ms == 10000);
    UNIT_CHECK(c->http.endpoints.count == 0);
    UNIT_CHECK(c->http.threads == 32);
    UNIT_CHECK(c->udp.enable);
    UNIT_CHECK_STR(c->udp.listen, "127.0.0.1:9998");
    UNIT_CHECK(c->udp.allowed_sources.count == 0);
    UNIT_CHECK(c->udp.max_message_bytes == 65507);
    UNIT_CHECK(c->udp.dedup_ttl_s == 600);
    UNIT_CHECK_STR(c->qrs.url, "");
    UNIT_CHECK_STR(c->qrs.cert_file, "client.pem");
    UNIT_CHECK_STR(c->qrs.key_file, "client_key.pem");
    UNIT_CHECK_STR(c->qrs.ca_file, "root.pem");
    UNIT_CHECK(c->qrs.verify_peer);
    UNIT_CHECK_STR(c->qrs.user_directory, "INTERNAL");
    UNIT_CHECK_STR(c->qrs.user_id, "sa_repository");
    UNIT_CHECK(c->qrs.timeout_ms == 30000);
    UNIT_CHECK(c->qrs.connect_timeout_ms == 5000);
    UNIT_CHECK(c->task_start.allow.task_ids.count == 0);
    UNIT_CHECK(c->task_start.allow.tags.count == 0);
    UNIT_CHECK(c->task_start.allow.custom_properties.count == 0);
    UNIT_CHECK(c->task_start.dedup_ttl_s == 600);
    UNIT_CHECK(c->task_start.workers == 4);
    UNIT_CHECK(c->task_start.queue_max == 4096);
    UNIT_CHECK(c->task_start.name_cache_s == 60);
    UNIT_CHECK_STR(c->sense.qmc_url, "");
    UNIT_CHECK_STR(c->sense.hub_url, "");
    UNIT_CHECK_STR(c->slack.webhook_url, "");
    UNIT_CHECK_STR(c->teams.webhook_url, "");
    UNIT_CHECK_STR(c->smtp.url, "");
    UNIT_CHECK_STR(c->smtp.from, "");
    UNIT_CHECK_STR(c->smtp.password, "");
    UNIT_CHECK(c->routes.count == 0 && c->routes.items == NULL);
    UNIT_CHECK(c->retry.max_attempts == 5);
    UNIT_CHECK(c->retry.initial_backoff_ms == 200);
    UNIT_CHECK(c->retry.max_backoff_ms == 10000);
    UNIT_CHECK_STR(c->spool.dir, "state");
    UNIT_CHECK(!c->spool.fsync);
    UNIT_CHECK(c->spool.max_bytes == 268435456L);
    UNIT_CHECK(c->health.metrics);
    UNIT_CHECK(c->health.metrics_auth == CONFIG_METRICS_AUTH_TOKEN);
    UNIT_CHECK(c->kv.max_keys_per_namespace == 1000);
    UNIT_CHECK(c->kv.max_namespaces == 1000);
    UNIT_CHECK(c->kv.max_value_bytes == 65536);
    UNIT_CHECK(c->scheduler.enable);
    UNIT_CHECK(c->scheduler.max_schedules == 1000);
    UNIT_CHECK(c->scheduler.missed_max_reported == 100);
}

/* kv and scheduler: values, ranges and the error format. */
static void test_kv_and_scheduler(void)
{
    struct butler_config c;
    UNIT_CHECK(load("kv: {max_keys_per_namespace: 5, max_namespaces: 2, max_value_bytes: 10}\n"
                    "scheduler: {enable: false, max_schedules: 3, missed_max_reported: 7}\n",
                    &c, NULL) == BUTLER_OK);
    UNIT_CHECK(c.kv.max_keys_per_namespace == 5 && c.kv.max_namespaces == 2 &&
               c.kv.max_value_bytes == 10);
    UNIT_CHECK(!c.scheduler.enable && c.scheduler.max_schedules == 3 &&
               c.scheduler.missed_max_reported == 7);
    config_free(&c);
    expect_errors("kv:\n  max_keys_per_namespace: 0\n",
                  "t.yaml:2:27: kv.max_keys_per_namespace: expected an integer 1..100000, got "
                  "\"0\"\n");
    expect_errors("kv:\n  max_value_bytes: 2000000\n",
                  "t.yaml:2:20: kv.max_value_bytes: expected an integer 1..1048576, got "
                  "\"2000000\"\n");
    expect_errors("scheduler:\n  enable: maybe\n",
                  "t.yaml:2:11: scheduler.enable: expected a boolean (true/false, yes/no, on/off), "
                  "got \"maybe\"\n");
    expect_errors("scheduler:\n  fire: true\n", "t.yaml:2:3: scheduler.fire: unknown key\n");
}

/* qlik_cloud.tenants: secrets inline or from *_file inside a list item, masked in print. */
static void test_qlik_cloud_tenant_secret_files(void)
{
    static const char *const names[] = {"webhook_secret", "api_key"};
    char webhook_path[256], key_path[256], text[1024], printed[16384];
    struct butler_config c;
    char *errors = NULL;
    make_temp_dir();
    write_file(webhook_path, sizeof webhook_path, names[0], "whsec-0123456789-0123456789-abcd\n");
    write_file(key_path, sizeof key_path, names[1], "APIKEY-FROM-FILE\r\n");
    snprintf(text, sizeof text,
             "qlik_cloud:\n  tenants:\n    - name: prod\n      tenant_id: t-1\n"
             "      url: https://acme.eu.qlikcloud.com\n      api_key_file: %s\n"
             "      oauth: {client_id: cid, client_secret_file: %s}\n"
             "      webhook_secret_file: %s\n",
             key_path, key_path, webhook_path);
    UNIT_CHECK(load(text, &c, &errors) == BUTLER_OK);
    UNIT_CHECK_STR(errors, "");
    free(errors);
    UNIT_CHECK(c.qlik_cloud.tenants.count == 1);
    if (c.qlik_cloud.tenants.count == 1) {
        UNIT_CHECK_STR(c.qlik_cloud.tenants.items[0].webhook_secret,
                       "whsec-0123456789-0123456789-abcd");
        UNIT_CHECK_STR(c.qlik_cloud.tenants.items[0].api_key, "APIKEY-FROM-FILE");
        UNIT_CHECK_STR(c.qlik_cloud.tenants.items[0].client_secret, "APIKEY-FROM-FILE");
    }
    FILE *out = fmemopen(printed, sizeof printed, "w");
    UNIT_CHECK(out != NULL);
    if (out) {
        config_print(&c, out);
        fclose(out);
        printed[sizeof printed - 1] = '\0';
        UNIT_CHECK(strstr(printed, "APIKEY-FROM-FILE") == NULL);
        UNIT_CHECK(strstr(printed, "whsec-") == NULL);
    }
    config_free(&c);
    /* Both the key and its file, in either order. */
    snprintf(text, sizeof text,
             "qlik_cloud:\n  tenants:\n    - name: prod\n      tenant_id: t-1\n"
             "      url: https://acme.eu.qlikcloud.com\n      webhook_secret: abc\n"
             "      webhook_secret_file: %s\n",
             webhook_path);
    UNIT_CHECK(load(text, &c, &errors) == BUTLER_ERR_INVALID);
    UNIT_CHECK(errors && strstr(errors, "cannot be combined") != NULL);
    free(errors);
    snprintf(text, sizeof text,
             "qlik_cloud:\n  tenants:\n    - name: prod\n      tenant_id: t-1\n"
             "      url: https://acme.eu.qlikcloud.com\n      webhook_secret_file: %s\n"
             "      webhook_secret: abc\n",
             webhook_path);
    UNIT_CHECK(load(text, &c, &errors) == BUTLER_ERR_INVALID);
    UNIT_CHECK(errors && strstr(errors, "cannot be combined") != NULL);
    free(errors);
    remove_temp(names, 2);
}

/* qrs.notifications: defaults, values, secret_file, masking and the cross-key checks. */
static void test_qrs_notifications(void)
{
    static const char *const names[] = {"notify_secret"};
    char secret_path[256], text[1024], printed[8192];
    struct butler_config c;
    char *errors = NULL;
    UNIT_CHECK(load("", &c, NULL) == BUTLER_OK);
    UNIT_CHECK(!c.qrs.notifications.enable && c.qrs.notifications.check_interval_s == 300);
    UNIT_CHECK_STR(c.qrs.notifications.callback_url, "");
    UNIT_CHECK_STR(c.qrs.notifications.secret, "");
    UNIT_CHECK_STR(c.qrs.notifications.filter, "");
    config_free(&c);

    make_temp_dir();
    write_file(secret_path, sizeof secret_path, names[0], "0123456789abcdef-XYZ\n");
    snprintf(text, sizeof text,
             "qrs:\n  url: https://sense:4242\n  notifications:\n    enable: true\n"
             "    callback_url: https://butler.example:8443/\n    secret_file: %s\n"
             "    filter: \"taskID eq 5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91\"\n"
             "    check_interval_s: 30\n",
             secret_path);
    UNIT_CHECK(load_with_env(text, strlen(text), false, &c, &errors) == BUTLER_OK);
    UNIT_CHECK_STR(errors, "");
    free(errors);
    UNIT_CHECK(c.qrs.notifications.enable && c.qrs.notifications.check_interval_s == 30);
    UNIT_CHECK_STR(c.qrs.notifications.secret, "0123456789abcdef-XYZ");
    UNIT_CHECK_STR(c.qrs.notifications.callback_url, "https://butler.example:8443/");
    UNIT_CHECK_STR(c.qrs.notifications.filter, "taskID eq 5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91");
    FILE *out = fmemopen(printed, sizeof printed, "w");
    UNIT_CHECK(out != NULL);
    if (out) {
        config_print(&c, out);
        fclose(out);
        printed[sizeof printed - 1] = '\0';
        UNIT_CHECK(strstr(printed, "0123456789abcdef-XYZ") == NULL);
    }
    config_free(&c);
    remove_temp(names, 1);

    expect_errors("qrs:\n  notifications: {enable: true, callback_url: \"http://b:8080\", "
                  "secret: 0123456789abcdef}\n",
                  "t.yaml:2:27: qrs.notifications.enable: needs qrs.url\n");
    expect_errors(
        "qrs:\n  url: https://s:4242\n  notifications: {enable: true, secret: "
        "0123456789abcdef}\n",
        "t.yaml:3:27: qrs.notifications.callback_url: required when qrs.notifications.enable is "
        "true (the URL Sense reaches Butler at)\n");
    expect_errors("qrs:\n  url: https://s:4242\n  notifications: {enable: true, callback_url: "
                  "\"http://b:8080\", secret: short/x}\n",
                  "t.yaml:3:72: qrs.notifications.secret: expected 16..256 characters of A-Z a-z "
                  "0-9 - _ . ~ (it is a URL path segment)\n");
    expect_errors("qrs:\n  notifications: {check_interval_s: 0}\n",
                  "t.yaml:2:37: qrs.notifications.check_interval_s: expected an integer "
                  "1..86400, got \"0\"\n");
    expect_errors("qrs:\n  notifications: {callback_url: ftp://x}\n",
                  "t.yaml:2:33: qrs.notifications.callback_url: expected an http:// or https:// "
                  "URL, or \"\", got \"ftp://x\"\n");
}

static void test_defaults(void)
{
    struct butler_config config;
    UNIT_CHECK(config_load_buffer("x", NULL, 0, false, &config, stderr) == BUTLER_OK);
    check_defaults(&config);
    UNIT_CHECK_STR(config.source_file, "");
    config_free(&config);
    UNIT_CHECK(all_zero(&config, sizeof config));

    /* path == NULL: defaults plus environment, which this test process does not set. */
    UNIT_CHECK(config_load(NULL, &config, stderr) == BUTLER_OK);
    check_defaults(&config);
    config_free(&config);
    UNIT_CHECK(config_load("", &config, stderr) == BUTLER_OK);
    config_free(&config);
}

static void test_empty_and_comment_only_files(void)
{
    static const char *const texts[] = {
        "",
        "\n\n",
        "# only a comment\n  # and another\n",
        "---\n",
        "---\n...\n",
        "~\n",
        "mqtt:\n",
        "mqtt: ~\nhttp:\n  tls:\n",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        struct butler_config config;
        char *errors = NULL;
        UNIT_CHECK(load(texts[i], &config, &errors) == BUTLER_OK);
        UNIT_CHECK_STR(errors, "");
        check_defaults(&config);
        config_free(&config);
        free(errors);
    }
}

static void test_null_values_keep_defaults(void)
{
    struct butler_config config;
    UNIT_CHECK(load("mqtt:\n  port:\n  host: ~\n  username: null\nhttp:\n  tokens:\n"
                    "routes: ~\n",
                    &config, NULL) == BUTLER_OK);
    check_defaults(&config);
    config_free(&config);
}

static void test_every_type(void)
{
    static const char text[] =
        "shutdown_grace_s: 0\n"
        "log: {level: DEBUG, format: json}\n"
        "mqtt:\n"
        "  host: broker.example.com\n"
        "  port: \"1884\"\n"
        "  username: user\n"
        "  password: pw\n"
        "  tls: {enable: yes, verify_peer: Off, cert_file: c.pem, key_file: k.pem}\n"
        "  session_expiry_s: 0\n"
        "  share_group: grp\n"
        "  legacy_topics: TRUE\n"
        "  max_inflight: 100000\n"
        "http:\n"
        "  listen: \"0.0.0.0:8080,8443s\"\n"
        "  tls: {cert_file: c.pem, key_file: k.pem}\n"
        "  tokens: [t1, t2]\n"
        "  max_body_bytes: 2048\n"
        "  endpoints:\n"
        "    - butlerping\n"
        "    - base62tobase16\n"
        "udp:\n"
        "  enable: no\n"
        "  allowed_sources: [10.0.0.0/8, 192.168.1.1, \"::1\", \"fe80::/10\"]\n"
        "  max_message_bytes: 64\n"
        "task_start:\n"
        "  allow:\n"
        "    task_ids: [5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91]\n"
        "    tags: [nightly]\n"
        "    custom_properties:\n"
        "      - {name: ButlerStart, value: \"yes\"}\n"
        "  workers: 64\n"
        "qrs: {url: \"https://sense:4242\", verify_peer: false}\n"
        "spool: {max_bytes: 1099511627776, fsync: on}\n"
        "health: {metrics_auth: Open}\n"
        "smtp: {url: \"smtp://mail:25\", from: butler@example.com, password: sp}\n"
        "routes:\n"
        "  - name: w\n"
        "    match: a/+/b\n"
        "    to: WEBHOOK\n"
        "    webhook_url: https://hook.example/x\n"
        "    method: put\n"
        "    rate_limit: {key: \"{{taskId}}\", window_s: 60}\n"
        "    condition: {custom_property: {name: cp, value: v}}\n"
        "  - name: e\n"
        "    match: \"#\"\n"
        "    to: email\n"
        "    recipients: [a@example.com, b@example.com]\n"
        "    subject: Failed\n"
        "    template: |\n"
        "      line one\n"
        "      line two\n";
    struct butler_config c;
    char *errors = NULL;
    UNIT_CHECK(load(text, &c, &errors) == BUTLER_OK);
    UNIT_CHECK_STR(errors, "");
    free(errors);
    UNIT_CHECK(c.shutdown_grace_s == 0);
    UNIT_CHECK(c.log.level == CONFIG_LOG_DEBUG);
    UNIT_CHECK(c.log.format == CONFIG_LOG_JSON);
    UNIT_CHECK(c.health.metrics_auth == CONFIG_METRICS_AUTH_OPEN);
    UNIT_CHECK_STR(c.mqtt.host, "broker.example.com");
    UNIT_CHECK(c.mqtt.port == 1884);
    UNIT_CHECK_STR(c.mqtt.password, "pw");
    UNIT_CHECK(c.mqtt.tls.enable);
    UNIT_CHECK(!c.mqtt.tls.verify_peer);
    UNIT_CHECK(c.mqtt.session_expiry_s == 0);
    UNIT_CHECK(c.mqtt.legacy_topics);
    UNIT_CHECK(c.mqtt.max_inflight == 100000);
    UNIT_CHECK_STR(c.http.listen, "0.0.0.0:8080,8443s");
    UNIT_CHECK(c.http.tokens.count == 2);
    if (c.http.tokens.count == 2) {
        UNIT_CHECK_STR(c.http.tokens.items[0], "t1");
        UNIT_CHECK_STR(c.http.tokens.items[1], "t2");
    }
    UNIT_CHECK(c.http.max_body_bytes == 2048);
    UNIT_CHECK(c.http.endpoints.count == 2);
    UNIT_CHECK(!c.udp.enable);
    UNIT_CHECK(c.udp.allowed_sources.count == 4);
    UNIT_CHECK(c.udp.max_message_bytes == 64);
    UNIT_CHECK(c.task_start.allow.task_ids.count == 1);
    UNIT_CHECK(c.task_start.allow.custom_properties.count == 1);
    if (c.task_start.allow.custom_properties.count == 1) {
        UNIT_CHECK_STR(c.task_start.allow.custom_properties.items[0].name, "ButlerStart");
        UNIT_CHECK_STR(c.task_start.allow.custom_properties.items[0].value, "yes");
    }
    UNIT_CHECK(c.task_start.workers == 64);
    UNIT_CHECK_STR(c.qrs.url, "https://sense:4242");
    UNIT_CHECK(!c.qrs.verify_peer);
    UNIT_CHECK(c.spool.max_bytes == 1099511627776L);
    UNIT_CHECK(c.spool.fsync);
    UNIT_CHECK(c.routes.count == 2);
    if (c.routes.count == 2) {
        const struct config_route *w = &c.routes.items[0], *e = &c.routes.items[1];
        UNIT_CHECK_STR(w->name, "w");
        UNIT_CHECK_STR(w->match, "a/+/b");
        UNIT_CHECK(w->to == CONFIG_ROUTE_WEBHOOK);
        UNIT_CHECK_STR(w->method, "PUT");
        UNIT_CHECK_STR(w->rate_limit_key, "{{taskId}}");
        UNIT_CHECK(w->rate_limit_window_s == 60);
        UNIT_CHECK_STR(w->condition_custom_property_name, "cp");
        UNIT_CHECK_STR(w->condition_custom_property_value, "v");
        UNIT_CHECK_STR(w->topic, "");
        UNIT_CHECK(e->to == CONFIG_ROUTE_EMAIL);
        UNIT_CHECK_STR(e->method, "POST");
        UNIT_CHECK(e->rate_limit_window_s == 0);
        UNIT_CHECK(e->recipients.count == 2);
        UNIT_CHECK_STR(e->template_text, "line one\nline two\n");
        UNIT_CHECK_STR(e->webhook_url, "");
        UNIT_CHECK_STR(e->channel, "");
    }
    config_free(&c);
}

static void test_wrong_type_errors(void)
{
    /* The contract's example, at its line and column. */
    expect_errors("# 1\n# 2\n# 3\n# 4\n# 5\n# 6\n# 7\n# 8\n# 9\n# 10\n# 11\n# 12\nmqtt:\n"
                  "  port: abc\n",
                  "t.yaml:14:9: mqtt.port: expected an integer 1..65535, got \"abc\"\n");
    expect_errors("mqtt:\n  port: 70000\n",
                  "t.yaml:2:9: mqtt.port: expected an integer 1..65535, got \"70000\"\n");
    expect_errors("mqtt: {port: 0x10}\n",
                  "t.yaml:1:14: mqtt.port: expected an integer 1..65535, got \"0x10\"\n");
    expect_errors("mqtt:\n  port: 1e3\n",
                  "t.yaml:2:9: mqtt.port: expected an integer 1..65535, got \"1e3\"\n");
    expect_errors("mqtt:\n  port: \" 12\"\n",
                  "t.yaml:2:9: mqtt.port: expected an integer 1..65535, got \" 12\"\n");
    expect_errors("spool:\n  max_bytes: 99999999999999999999999\n",
                  "t.yaml:2:14: spool.max_bytes: expected an integer 65536..1099511627776, got "
                  "\"99999999999999999999999\"\n");
    expect_errors("udp:\n  max_message_bytes: 63\n",
                  "t.yaml:2:22: udp.max_message_bytes: expected an integer 64..65507, got "
                  "\"63\"\n");
    expect_errors("mqtt:\n  tls:\n    enable: maybe\n",
                  "t.yaml:3:13: mqtt.tls.enable: expected a boolean (true/false, yes/no, "
                  "on/off), got \"maybe\"\n");
    expect_errors("log:\n  level: verbose\n",
                  "t.yaml:2:10: log.level: expected one of error|warn|info|debug, got "
                  "\"verbose\"\n");
    expect_errors("mqtt:\n  port: {a: 1}\n",
                  "t.yaml:2:9: mqtt.port: expected an integer 1..65535, got a mapping\n");
    expect_errors("mqtt:\n  host: [a]\n", "t.yaml:2:9: mqtt.host: expected a string, got a list\n");
    expect_errors("mqtt: [1]\n", "t.yaml:1:7: mqtt: expected a mapping, got a list\n");
    expect_errors("mqtt: 5\n", "t.yaml:1:7: mqtt: expected a mapping, got a string\n");
    /* A mis-indented secret must not be quoted back. */
    expect_errors("slack: https://hooks.slack.com/services/SECRET\n",
                  "t.yaml:1:8: slack: expected a mapping, got a string\n");
    expect_errors("http:\n  endpoints: abc\n",
                  "t.yaml:2:14: http.endpoints: expected a list of strings, got \"abc\"\n");
    expect_errors("http:\n  endpoints: [a, {b: 1}, ~]\n",
                  "t.yaml:2:18: http.endpoints[1]: expected a string, got a mapping\n"
                  "t.yaml:2:26: http.endpoints[2]: expected a string, got null\n");
    /* A secret is never echoed, even in a type error. */
    expect_errors("http:\n  tokens: secret-token\n",
                  "t.yaml:2:11: http.tokens: expected a list of strings, got a string\n");
    expect_errors("http:\n  tokens: [\"has space\"]\n",
                  "t.yaml:2:12: http.tokens[0]: expected a non-empty token without spaces or "
                  "control characters\n");
    expect_errors("- a\n- b\n",
                  "t.yaml:1:1: expected a mapping of sections at the top level, got a list\n");
    expect_errors("routes: {a: 1}\n",
                  "t.yaml:1:9: routes: expected a list of mappings, got a mapping\n");
}

static void test_value_checks(void)
{
    expect_errors("udp:\n  allowed_sources: [10.0.0.0/33, 300.1.1.1, 10.0.0.1/8]\n",
                  "t.yaml:2:21: udp.allowed_sources[0]: expected an IP address or CIDR block "
                  "(e.g. 10.0.0.0/8), got \"10.0.0.0/33\"\n"
                  "t.yaml:2:34: udp.allowed_sources[1]: expected an IP address or CIDR block "
                  "(e.g. 10.0.0.0/8), got \"300.1.1.1\"\n");
    expect_errors("task_start:\n  allow:\n    task_ids: [not-a-guid]\n",
                  "t.yaml:3:16: task_start.allow.task_ids[0]: expected a task id (GUID, "
                  "8-4-4-4-12 hex digits), got \"not-a-guid\"\n");
    expect_errors("udp:\n  listen: 9998\n",
                  "t.yaml:2:11: udp.listen: expected host:port with a port 1..65535, got "
                  "\"9998\"\n");
    expect_errors("http:\n  listen: \"127.0.0.1:0\"\n",
                  "t.yaml:2:11: http.listen: expected [host:]port entries (port 1..65535, "
                  "suffix 's' for TLS) separated by commas, got \"127.0.0.1:0\"\n");
    expect_errors("qrs:\n  url: ftp://x\n",
                  "t.yaml:2:8: qrs.url: expected an http:// or https:// URL, or \"\", got "
                  "\"ftp://x\"\n");
    expect_errors("mqtt:\n  topic_root: a/#\n",
                  "t.yaml:2:15: mqtt.topic_root: expected a topic prefix without '+', '#', a "
                  "leading '$' or a leading or trailing '/', got \"a/#\"\n");
    expect_errors("mqtt:\n  client_id: \"\"\n",
                  "t.yaml:2:14: mqtt.client_id: expected a non-empty string without control "
                  "characters, got \"\"\n");

    /* Topic filters: accepted and refused shapes. */
    static const char *const good[] = {"#", "+", "a/#", "a/+/b", "+/+", "/a", "a//b", "a/+"};
    static const char *const bad[] = {"", "a#", "a/#/b", "a+", "a/b+", "#/a", "a/##"};
    char text[256];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct butler_config config;
        snprintf(text, sizeof text, "routes:\n  - {name: r, match: \"%s\", to: mqtt, topic: out}\n",
                 good[i]);
        UNIT_CHECK(load(text, &config, NULL) == BUTLER_OK);
        config_free(&config);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "routes:\n  - {name: r, match: \"%s\", to: mqtt, topic: out}\n",
                 bad[i]);
        expect_error_containing(text, strlen(text), "routes[0].match: expected an MQTT topic");
    }
}

static void test_unknown_and_duplicate_keys(void)
{
    expect_errors("mqtt:\n  hots: x\n", "t.yaml:2:3: mqtt.hots: unknown key\n");
    expect_errors("foo: 1\n", "t.yaml:1:1: foo: unknown key\n");
    expect_errors("mqtt.port: 5\n", "t.yaml:1:1: unknown key \"mqtt.port\"\n");
    expect_errors("mqtt:\n  Port: 5\n", "t.yaml:2:3: mqtt: unknown key \"Port\"\n");
    expect_errors("mqtt:\n  tls:\n    enabled: true\n",
                  "t.yaml:3:5: mqtt.tls.enabled: unknown key\n");
    expect_errors("routes:\n  - {name: a, match: b, to: mqtt, topic: c, colour: red}\n",
                  "t.yaml:2:45: routes[0].colour: unknown key\n");
    /* _file exists only for secrets. */
    expect_errors("mqtt:\n  username_file: /x\n", "t.yaml:2:3: mqtt.username_file: unknown key\n");

    expect_errors("mqtt:\n  port: 1\n  port: 2\n", "t.yaml:3:3: mqtt.port: duplicate key\n");
    expect_errors("mqtt: {}\nmqtt: {}\n", "t.yaml:2:1: mqtt: duplicate key\n");
    expect_errors("routes:\n  - {name: a, name: b}\n",
                  "t.yaml:2:15: routes[0].name: duplicate key\n"
                  "t.yaml:2:5: routes[0].match: required key is missing\n"
                  "t.yaml:2:5: routes[0].to: required key is missing\n");
}

static void test_all_errors_reported(void)
{
    struct butler_config config;
    char *errors = NULL;
    UNIT_CHECK(load("mqtt:\n  port: x\n  keepalive_s: y\nhttp:\n  threads: 1\nbogus: 1\n", &config,
                    &errors) == BUTLER_ERR_INVALID);
    UNIT_CHECK(count_lines(errors) == 4);
    UNIT_CHECK(all_zero(&config, sizeof config));
    free(errors);
}

static void test_routes(void)
{
    static const char text[] = "routes:\n"                /* 1 */
                               "  - name: ok\n"           /* 2 */
                               "    match: a/#\n"         /* 3 */
                               "    to: mqtt\n"           /* 4 */
                               "    topic: out\n"         /* 5 */
                               "  - name: bad\n"          /* 6 */
                               "    match: a/#/b\n"       /* 7 */
                               "    to: mqtt\n"           /* 8 */
                               "    topic: out\n"         /* 9 */
                               "  - match: x\n"           /* 10 */
                               "    to: pigeon\n"         /* 11 */
                               "  - name: ok\n"           /* 12 */
                               "    match: y\n"           /* 13 */
                               "    to: mqtt\n"           /* 14 */
                               "  - name: h\n"            /* 15 */
                               "    match: y\n"           /* 16 */
                               "    to: webhook\n"        /* 17 */
                               "    topic: \"a/+\"\n"     /* 18 */
                               "  - name: m\n"            /* 19 */
                               "    match: y\n"           /* 20 */
                               "    to: email\n"          /* 21 */
                               "    condition:\n"         /* 22 */
                               "      custom_property:\n" /* 23 */
                               "        name: x\n"        /* 24 */
                               "  - just a string\n";     /* 25 */
    expect_errors(text,
                  "t.yaml:7:12: routes[1].match: expected an MQTT topic filter ('+' alone in a "
                  "level, '#' alone in the last level), got \"a/#/b\"\n"
                  "t.yaml:11:9: routes[2].to: expected one of "
                  "slack|teams|email|webhook|mqtt|influxdb, got \"pigeon\"\n"
                  "t.yaml:10:5: routes[2].name: required key is missing\n"
                  "t.yaml:12:5: routes[3].topic: required when to is mqtt\n"
                  "t.yaml:12:5: routes[3].name: duplicate route name \"ok\" (also used by "
                  "routes[0])\n"
                  "t.yaml:18:12: routes[4].topic: expected an MQTT topic without '+' or '#', "
                  "got \"a/+\"\n"
                  "t.yaml:19:5: routes[5].recipients: required when to is email\n"
                  "t.yaml:19:5: routes[5].condition.custom_property: needs both name and "
                  "value\n"
                  "t.yaml:25:5: routes[6]: expected a mapping, got a string\n");

    /* Cross-section checks run once everything else is valid. */
    expect_errors("routes:\n  - {name: s, match: a, to: slack}\n  - {name: t, match: a, to: "
                  "teams}\n  - {name: e, match: a, to: email, recipients: [x@y.z]}\n",
                  "t.yaml:2:5: routes[0].webhook_url: required when to is slack and "
                  "slack.webhook_url is empty\n"
                  "t.yaml:3:5: routes[1].webhook_url: required when to is teams and "
                  "teams.webhook_url is empty\n"
                  "t.yaml:4:5: routes[2].to: email routes need smtp.url\n");
    expect_errors("task_start:\n  allow:\n    custom_properties:\n      - {name: a}\n",
                  "t.yaml:4:9: task_start.allow.custom_properties[0].value: required key is "
                  "missing\n");

    /* The slack default webhook satisfies a slack route. */
    struct butler_config config;
    UNIT_CHECK(load("slack: {webhook_url: \"https://hooks.slack.com/x\"}\nroutes:\n"
                    "  - {name: s, match: a, to: slack}\n",
                    &config, NULL) == BUTLER_OK);
    UNIT_CHECK(config.routes.count == 1);
    config_free(&config);

    /* Route count cap. */
    size_t size = 1100 * 64 + 16, used = 0;
    char *many = malloc(size);
    UNIT_CHECK(many != NULL);
    if (!many)
        return;
    used += (size_t)snprintf(many + used, size - used, "routes:\n");
    for (int i = 0; i < 1001; i++)
        used += (size_t)snprintf(many + used, size - used,
                                 "- {name: r%d, match: a, to: mqtt, topic: b}\n", i);
    expect_error_containing(many, used, "routes: at most 1000 items are allowed, got 1001");
    free(many);
}

/* influxdb routes: measurement, tags and fields (a printed mapping), and
 * the keys they need. */
static void test_influxdb_routes(void)
{
    struct butler_config c;
    char *errors = NULL;
    const char *text = "influxdb:\n"
                       "  url: http://127.0.0.1:8086\n"
                       "  password: s3cret\n"
                       "  tags: {site: north}\n"
                       "routes:\n"
                       "  - name: failed\n"
                       "    match: butler/events/task/failed/#\n"
                       "    to: influxdb\n"
                       "    measurement: task_failed\n"
                       "    tags: {host: '{{host}}', task: '{{taskName}}'}\n"
                       "    fields: {message: '{{message}}'}\n";
    UNIT_CHECK(load(text, &c, &errors) == BUTLER_OK);
    free(errors);
    UNIT_CHECK(c.routes.count == 1 && c.routes.items[0].to == CONFIG_ROUTE_INFLUXDB);
    UNIT_CHECK_STR(c.routes.items[0].measurement, "task_failed");
    UNIT_CHECK(c.routes.items[0].tags.count == 2 && c.routes.items[0].fields.count == 1);
    UNIT_CHECK_STR(c.routes.items[0].tags.items[1].name, "task");
    UNIT_CHECK_STR(c.routes.items[0].tags.items[1].value, "{{taskName}}");
    UNIT_CHECK(c.influxdb.version == 1 && c.influxdb.batch_max == 5000);
    UNIT_CHECK_STR(c.influxdb.database, "butler");
    UNIT_CHECK(c.influxdb.tags.count == 1);
    char *printed = NULL;
    size_t printed_length = 0;
    FILE *out = open_memstream(&printed, &printed_length);
    UNIT_CHECK(out != NULL);
    if (out) {
        config_print(&c, out);
        fclose(out);
        /* Tags and fields are templates, not secrets: printed; the password is not. */
        UNIT_CHECK(strstr(printed, "\"task\": \"{{taskName}}\"") != NULL);
        UNIT_CHECK(strstr(printed, "\"site\": \"north\"") != NULL);
        UNIT_CHECK(strstr(printed, "s3cret") == NULL);
    }
    free(printed);
    config_free(&c);

    expect_errors("routes:\n"
                  "  - name: r\n"
                  "    match: a/#\n"
                  "    to: influxdb\n"
                  "    measurement: m\n"
                  "    fields: {v: '1'}\n"
                  "    tags: [a]\n",
                  "t.yaml:7:11: routes[0].tags: expected a mapping of names to values, got a "
                  "list\n");
    expect_errors("routes:\n"
                  "  - name: r\n"
                  "    match: a/#\n"
                  "    to: influxdb\n",
                  "t.yaml:2:5: routes[0].measurement: required when to is influxdb\n"
                  "t.yaml:2:5: routes[0].fields: at least one field is required when to is "
                  "influxdb\n");
    expect_errors("routes:\n"
                  "  - name: r\n"
                  "    match: a/#\n"
                  "    to: influxdb\n"
                  "    measurement: m\n"
                  "    fields: {v: '1'}\n",
                  "t.yaml:2:5: routes[0].to: influxdb routes need influxdb.url\n");
    expect_errors("influxdb: {url: http://h:8086}\n"
                  "routes:\n"
                  "  - name: r\n"
                  "    match: a/#\n"
                  "    to: influxdb\n"
                  "    measurement: m\n"
                  "    rate_limit: {window_s: 60}\n"
                  "    fields: {v: '1'}\n",
                  "t.yaml:3:5: routes[0].to: influxdb routes take no rate_limit or condition: "
                  "every message is a point\n");
    expect_errors("influxdb:\n"
                  "  url: http://h:8086\n"
                  "  version: 2\n",
                  "t.yaml:3:12: influxdb.version: version 2 needs influxdb.org, influxdb.bucket "
                  "and influxdb.token\n");
}

static void test_cross_key_checks(void)
{
    expect_errors("mqtt:\n  reconnect_min_ms: 5000\n  reconnect_max_ms: 1000\n",
                  "t.yaml:2:21: mqtt.reconnect_min_ms: must not exceed mqtt.reconnect_max_ms "
                  "(1000)\n");
    expect_errors("retry: {initial_backoff_ms: 20000}\n",
                  "t.yaml:1:29: retry.initial_backoff_ms: must not exceed retry.max_backoff_ms "
                  "(10000)\n");
    expect_errors("mqtt:\n  tls: {cert_file: c.pem}\n",
                  "t.yaml:2:20: mqtt.tls.cert_file: mqtt.tls.cert_file and mqtt.tls.key_file "
                  "go together\n");
    expect_errors("http:\n  listen: \"8443s\"\n",
                  "t.yaml:2:11: http.listen: a TLS port (suffix 's') needs http.tls.cert_file "
                  "and http.tls.key_file\n");
}

static void test_environment(void)
{
    struct butler_config config;
    char *errors = NULL;
    static const char text[] = "mqtt:\n  port: 1883\n  password_file: /nonexistent\n";

    setenv("BUTLER_MQTT_PORT", "1999", 1);
    setenv("BUTLER_MQTT_TLS_ENABLE", "on", 1);
    setenv("BUTLER_HTTP_LISTEN", "0.0.0.0:9090", 1);
    setenv("BUTLER_HTTP_TOKENS", " a , b,,", 1);
    setenv("BUTLER_LOG_LEVEL", "warn", 1);
    /* Environment wins over the file's password_file, which is then never read. */
    setenv("BUTLER_MQTT_PASSWORD", "from-env", 1);
    UNIT_CHECK(load_with_env(text, strlen(text), true, &config, &errors) == BUTLER_OK);
    UNIT_CHECK_STR(errors, "");
    free(errors);
    UNIT_CHECK(config.mqtt.port == 1999);
    UNIT_CHECK(config.mqtt.tls.enable);
    UNIT_CHECK_STR(config.http.listen, "0.0.0.0:9090");
    UNIT_CHECK(config.http.tokens.count == 2);
    if (config.http.tokens.count == 2) {
        UNIT_CHECK_STR(config.http.tokens.items[0], "a");
        UNIT_CHECK_STR(config.http.tokens.items[1], "b");
    }
    UNIT_CHECK(config.log.level == CONFIG_LOG_WARN);
    UNIT_CHECK_STR(config.mqtt.password, "from-env");
    config_free(&config);

    /* Without use_environment nothing applies (and password_file is read and fails). */
    UNIT_CHECK(load_with_env("mqtt: {port: 1883}\n", 19, false, &config, NULL) == BUTLER_OK);
    UNIT_CHECK(config.mqtt.port == 1883);
    config_free(&config);
    unsetenv("BUTLER_MQTT_TLS_ENABLE");
    unsetenv("BUTLER_HTTP_LISTEN");
    unsetenv("BUTLER_HTTP_TOKENS");
    unsetenv("BUTLER_LOG_LEVEL");
    unsetenv("BUTLER_MQTT_PASSWORD");

    setenv("BUTLER_MQTT_PORT", "x", 1);
    setenv("BUTLER_UDP_ALLOWED_SOURCES", "10.0.0.0/8,nope", 1);
    setenv("BUTLER_MQTT_PASSWORD", "never-echoed", 1);
    setenv("BUTLER_MQTT_PASSWORD_FILE", "/also/set", 1);
    UNIT_CHECK(load_with_env("", 0, true, &config, &errors) == BUTLER_ERR_INVALID);
    UNIT_CHECK_STR(errors,
                   "environment:BUTLER_MQTT_PORT: mqtt.port: expected an integer 1..65535, got "
                   "\"x\"\n"
                   "environment:BUTLER_UDP_ALLOWED_SOURCES: udp.allowed_sources[1]: expected an "
                   "IP address or CIDR block (e.g. 10.0.0.0/8), got \"nope\"\n"
                   "environment:BUTLER_MQTT_PASSWORD_FILE: mqtt.password_file: cannot be "
                   "combined with mqtt.password; set only one of them\n");
    UNIT_CHECK(errors && !strstr(errors, "never-echoed"));
    UNIT_CHECK(all_zero(&config, sizeof config));
    free(errors);
    unsetenv("BUTLER_MQTT_PORT");
    unsetenv("BUTLER_UDP_ALLOWED_SOURCES");
    unsetenv("BUTLER_MQTT_PASSWORD");
    unsetenv("BUTLER_MQTT_PASSWORD_FILE");

    /* Unrelated BUTLER_* variables (the test harness sets some) are ignored. */
    setenv("BUTLER_BINARY", "/usr/bin/true", 1);
    UNIT_CHECK(load_with_env("", 0, true, &config, NULL) == BUTLER_OK);
    config_free(&config);
    unsetenv("BUTLER_BINARY");
}

static void test_secret_files(void)
{
    static const char *const names[] = {"password", "tokens", "webhook", "big", "empty"};
    char password[256], tokens[256], webhook[256], big[256], empty[256], text[2048];
    struct butler_config config;
    char *errors = NULL;

    make_temp_dir();
    write_file(password, sizeof password, names[0], "s3cret\r\n");
    write_file(tokens, sizeof tokens, names[1], "tok1\n\n  tok2 \r\n");
    write_file(webhook, sizeof webhook, names[2], "https://hooks.slack.com/services/T/B/X\n");
    write_file(empty, sizeof empty, names[4], "");
    snprintf(big, sizeof big, "%s/%s", temp_dir, names[3]);
    int fd = open(big, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    UNIT_CHECK(fd >= 0 && ftruncate(fd, 64 * 1024 + 1) == 0);
    close(fd);

    snprintf(text, sizeof text,
             "mqtt:\n  password_file: %s\nhttp:\n  tokens_file: %s\nsmtp:\n  password_file: %s\n",
             password, tokens, empty);
    setenv("BUTLER_SLACK_WEBHOOK_URL_FILE", webhook, 1);
    UNIT_CHECK(load_with_env(text, strlen(text), true, &config, &errors) == BUTLER_OK);
    unsetenv("BUTLER_SLACK_WEBHOOK_URL_FILE");
    UNIT_CHECK_STR(errors, "");
    free(errors);
    UNIT_CHECK_STR(config.mqtt.password, "s3cret");
    UNIT_CHECK(config.http.tokens.count == 2);
    if (config.http.tokens.count == 2) {
        UNIT_CHECK_STR(config.http.tokens.items[0], "tok1");
        UNIT_CHECK_STR(config.http.tokens.items[1], "tok2");
    }
    UNIT_CHECK_STR(config.slack.webhook_url, "https://hooks.slack.com/services/T/B/X");
    UNIT_CHECK_STR(config.smtp.password, "");
    config_free(&config);

    /* Inline and _file together. */
    snprintf(text, sizeof text, "mqtt:\n  password: inline\n  password_file: %s\n", password);
    UNIT_CHECK(load(text, &config, &errors) == BUTLER_ERR_INVALID);
    UNIT_CHECK_STR(errors, "t.yaml:3:18: mqtt.password_file: cannot be combined with "
                           "mqtt.password; set only one of them\n");
    free(errors);
    snprintf(text, sizeof text, "http:\n  tokens: [a]\n  tokens_file: %s\n", tokens);
    expect_error_containing(text, strlen(text),
                            "t.yaml:3:16: http.tokens_file: cannot be combined with http.tokens");

    /* BUTLER_X_FILE in the environment replaces an inline value from the file. */
    setenv("BUTLER_MQTT_PASSWORD_FILE", password, 1);
    UNIT_CHECK(load_with_env("mqtt: {password: inline}\n", 25, true, &config, NULL) == BUTLER_OK);
    UNIT_CHECK_STR(config.mqtt.password, "s3cret");
    config_free(&config);
    unsetenv("BUTLER_MQTT_PASSWORD_FILE");

    /* Unreadable, too large, not a regular file. */
    expect_errors("teams:\n  webhook_url_file: /nonexistent/x\n",
                  "t.yaml:2:21: teams.webhook_url_file: cannot read \"/nonexistent/x\": No such "
                  "file or directory\n");
    snprintf(text, sizeof text, "mqtt:\n  password_file: %s\n", big);
    expect_error_containing(text, strlen(text), "is larger than 65536 bytes");
    static const char dev_null[] = "mqtt:\n  password_file: /dev/null\n";
    static const char directory[] = "mqtt:\n  password_file: /tmp\n";
    expect_error_containing(dev_null, strlen(dev_null), "is not a regular file");
    expect_error_containing(directory, strlen(directory), "Is a directory");

    remove_temp(names, sizeof names / sizeof names[0]);
}

static void test_print_masks_secrets_and_round_trips(void)
{
    static const char text[] =
        "mqtt:\n"
        "  password: hunter2-secret\n"
        "  username: \"quote\\\" back\\\\slash\"\n"
        "http:\n"
        "  tokens: [tok-secret-1, tok-secret-2]\n"
        "  endpoints: [butlerping]\n"
        "slack: {webhook_url: \"https://hooks.slack.com/services/SECRETPATH\"}\n"
        "smtp: {url: \"smtps://mail:465\", password: smtp-secret}\n"
        "task_start:\n"
        "  allow:\n"
        "    tags: [\"\\u00FCber\", \"\\x85nel\"]\n"
        "    custom_properties: [{name: a, value: b}, {name: c, value: d}]\n"
        "routes:\n"
        "  - name: r1\n"
        "    match: butler/events/task/failed/#\n"
        "    to: webhook\n"
        "    webhook_url: \"https://hook.example/SECRETROUTE\"\n"
        "    template: \"line1\\nline2\\t{{taskName}} \\u2603 \\U0001F600\"\n"
        "    rate_limit: {key: k, window_s: 5}\n"
        "  - name: r2\n"
        "    match: \"+\"\n"
        "    to: email\n"
        "    recipients: [a@example.com]\n";
    static const char *const secrets[] = {"hunter2-secret", "tok-secret", "SECRETPATH",
                                          "smtp-secret", "SECRETROUTE"};
    struct butler_config first, second;
    char *errors = NULL;
    UNIT_CHECK(load(text, &first, &errors) == BUTLER_OK);
    UNIT_CHECK_STR(errors, "");
    free(errors);
    char *printed = print_to_string(&first);
    UNIT_CHECK(printed != NULL);
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
        UNIT_CHECK(printed && !strstr(printed, secrets[i]));
    UNIT_CHECK(printed && strstr(printed, "  password: \"***\"\n"));
    UNIT_CHECK(printed && strstr(printed, "  teams:") == NULL);
    UNIT_CHECK(printed && strstr(printed, "teams:\n  webhook_url: \"\"\n"));
    UNIT_CHECK(printed && strstr(printed, "mqtt:\n  host: \"127.0.0.1\"\n  port: 1883\n"));

    /* Reads back, and printing the result gives the same text. */
    UNIT_CHECK(load(printed, &second, &errors) == BUTLER_OK);
    UNIT_CHECK_STR(errors, "");
    free(errors);
    char *again = print_to_string(&second);
    UNIT_CHECK_STR(again, printed);
    UNIT_CHECK_STR(second.mqtt.username, first.mqtt.username);
    UNIT_CHECK(second.routes.count == 2);
    if (second.routes.count == 2)
        UNIT_CHECK_STR(second.routes.items[0].template_text, first.routes.items[0].template_text);
    UNIT_CHECK_STR(second.task_start.allow.tags.items[1], "\xC2\x85nel");
    free(again);
    free(printed);
    config_free(&second);
    config_free(&first);

    /* Defaults print and read back too. */
    UNIT_CHECK(load("", &first, NULL) == BUTLER_OK);
    printed = print_to_string(&first);
    UNIT_CHECK(load(printed, &second, &errors) == BUTLER_OK);
    UNIT_CHECK_STR(errors, "");
    check_defaults(&second);
    free(errors);
    free(printed);
    config_free(&second);
    config_free(&first);
}

static void test_example_file_loads(void)
{
    /* __FILE__ is ".../tests/unit/test_config.c"; the example lives in .../config/. */
    static const char suffix[] = "tests/unit/test_config.c";
    char path[1024];
    const char *file = __FILE__;
    size_t length = strlen(file);
    struct butler_config config;
    char *errors = NULL;
    size_t errors_length = 0;

    UNIT_CHECK(length >= sizeof suffix - 1 &&
               strcmp(file + length - (sizeof suffix - 1), suffix) == 0);
    snprintf(path, sizeof path, "%.*sconfig/butler.example.yaml",
             (int)(length - (sizeof suffix - 1)), file);
    FILE *stream = open_memstream(&errors, &errors_length);
    UNIT_CHECK(config_load(path, &config, stream) == BUTLER_OK);
    fclose(stream);
    UNIT_CHECK_STR(errors, "");
    free(errors);
    UNIT_CHECK_STR(config.source_file, path);
    UNIT_CHECK(config.routes.count == 2);
    if (config.routes.count == 2) {
        UNIT_CHECK(config.routes.items[0].to == CONFIG_ROUTE_SLACK);
        UNIT_CHECK_STR(config.routes.items[0].match, "butler/events/task/failed/#");
        UNIT_CHECK(config.routes.items[0].rate_limit_window_s == 300);
        UNIT_CHECK(config.routes.items[1].to == CONFIG_ROUTE_MQTT);
        UNIT_CHECK_STR(config.routes.items[1].topic, "qliksense/task_failure");
    }
    UNIT_CHECK(config.mqtt.port == 1883);
    config_free(&config);
}

static void test_file_errors(void)
{
    static const char *const names[] = {"huge.yaml"};
    struct butler_config config;
    char *errors = NULL;
    size_t errors_length = 0;
    char path[256];
    FILE *stream = open_memstream(&errors, &errors_length);

    memset(&config, 0xAB, sizeof config);
    UNIT_CHECK(config_load("/nonexistent/butler.yaml", &config, stream) == BUTLER_ERR_IO);
    UNIT_CHECK(all_zero(&config, sizeof config));
    UNIT_CHECK(config_load("/tmp", &config, stream) == BUTLER_ERR_IO);

    /* The size is checked before reading: a sparse 5 MiB file is refused. */
    make_temp_dir();
    snprintf(path, sizeof path, "%s/%s", temp_dir, names[0]);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    UNIT_CHECK(fd >= 0 && ftruncate(fd, 5 * 1024 * 1024) == 0);
    close(fd);
    UNIT_CHECK(config_load(path, &config, stream) == BUTLER_ERR_INVALID);
    fclose(stream);
    UNIT_CHECK(errors && strstr(errors, "/nonexistent/butler.yaml: cannot read: No such file"));
    UNIT_CHECK(errors && strstr(errors, "/tmp: cannot read: Is a directory"));
    UNIT_CHECK(errors && strstr(errors, "huge.yaml: larger than 4194304 bytes"));
    free(errors);
    remove_temp(names, 1);
}

static char *repeat(const char *head, const char *unit, size_t times, const char *tail,
                    size_t *length)
{
    size_t head_length = strlen(head), unit_length = strlen(unit), tail_length = strlen(tail);
    size_t total = head_length + unit_length * times + tail_length;
    char *text = malloc(total + 1);
    if (!text)
        return NULL;
    memcpy(text, head, head_length);
    for (size_t i = 0; i < times; i++)
        memcpy(text + head_length + i * unit_length, unit, unit_length);
    memcpy(text + head_length + unit_length * times, tail, tail_length);
    text[total] = '\0';
    *length = total;
    return text;
}

static void test_hostile_inputs(void)
{
    size_t length = 0;
    char *text;

    text = repeat("a: ", "[", 100000, "", &length);
    expect_error_containing(text, length, "nested deeper than 32 levels");
    free(text);
    text = repeat("", "{a: ", 1000, "", &length);
    expect_error_containing(text, length, "nested deeper than 32 levels");
    free(text);
    text = repeat("mqtt:\n  host: ", "x", 100000, "\n", &length);
    expect_error_containing(text, length, "t.yaml:2:9: value longer than 65536 bytes");
    free(text);
    text = repeat("http:\n  endpoints: [", "a,", 20000, "a]\n", &length);
    expect_error_containing(text, length, "list longer than 10000 items");
    free(text);
    text = repeat("", "a", 5 * 1024 * 1024, "", &length);
    expect_error_containing(text, length, "t.yaml: larger than 4194304 bytes");
    free(text);

    /* Thousands of unknown keys: the output is capped, not thousands of lines. */
    size_t size = 3000 * 24, used = 0;
    text = malloc(size);
    UNIT_CHECK(text != NULL);
    for (int i = 0; text && i < 999; i++)
        used += (size_t)snprintf(text + used, size - used, "k%d: 1\n", i);
    if (text) {
        struct butler_config config;
        char *errors = NULL;
        UNIT_CHECK(load_with_env(text, used, false, &config, &errors) == BUTLER_ERR_INVALID);
        UNIT_CHECK(count_lines(errors) == 51);
        UNIT_CHECK(errors && strstr(errors, "t.yaml: too many errors, stopped after 50\n"));
        free(errors);
        free(text);
    }

    expect_errors("a: &x 1\nb: *x\n", "t.yaml:2:4: YAML aliases (*name) are not supported\n");
    expect_error_containing("a: &a [\"lol\",\"lol\"]\nb: &b [*a,*a,*a]\nc: [*b,*b,*b]\n", 48,
                            "aliases");
    expect_errors("mqtt: {}\n---\nhttp: {}\n", "t.yaml:2:1: only one YAML document is allowed\n");
    expect_errors("mqtt:\n  host: \"a\\0b\"\n", "t.yaml:2:9: NUL character in a value\n");
    expect_errors("? [a]\n: 1\n", "t.yaml:1:3: mapping keys must be plain strings\n");
    expect_error_containing("mqtt:\n  host: [\n", 15, "t.yaml:3:1: invalid YAML:");
    expect_error_containing("mqtt:\n  host: \"\xff\"\n", 17, "t.yaml:2:10: invalid input:");
    expect_error_containing("a\0b: 1\n", 7, "invalid input");
    expect_error_containing("\t- x\n", 5, "invalid YAML");

    /* Binary garbage from a fixed-seed generator: must fail or succeed cleanly. */
    uint32_t seed = 12345;
    char garbage[4096];
    for (int round = 0; round < 200; round++) {
        size_t n = (size_t)(round * 20 + 1);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            garbage[i] = (char)(seed >> 16);
        }
        struct butler_config config;
        enum butler_status status = load_with_env(garbage, n, false, &config, NULL);
        UNIT_CHECK(status == BUTLER_OK || status == BUTLER_ERR_INVALID);
        if (status == BUTLER_OK)
            config_free(&config);
        else
            UNIT_CHECK(all_zero(&config, sizeof config));
    }
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_defaults),
    UNIT_TEST(test_empty_and_comment_only_files),
    UNIT_TEST(test_null_values_keep_defaults),
    UNIT_TEST(test_every_type),
    UNIT_TEST(test_wrong_type_errors),
    UNIT_TEST(test_value_checks),
    UNIT_TEST(test_unknown_and_duplicate_keys),
    UNIT_TEST(test_all_errors_reported),
    UNIT_TEST(test_routes),
    UNIT_TEST(test_influxdb_routes),
    UNIT_TEST(test_cross_key_checks),
    UNIT_TEST(test_environment),
    UNIT_TEST(test_secret_files),
    UNIT_TEST(test_print_masks_secrets_and_round_trips),
    UNIT_TEST(test_example_file_loads),
    UNIT_TEST(test_file_errors),
    UNIT_TEST(test_hostile_inputs),
    UNIT_TEST(test_kv_and_scheduler),
    UNIT_TEST(test_qrs_notifications),
    UNIT_TEST(test_qlik_cloud_tenant_secret_files),
    {0},
};
