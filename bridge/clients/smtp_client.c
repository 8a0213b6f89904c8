/*
 * Outbound e-mail through libcurl's SMTP (see smtp_client.h).
 */
#include "bridge/clients/smtp_client.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "bridge/clients/retry.h"
#include "bridge/core/log.h"
#include "bridge/core/metrics.h"

#define MODULE "smtp"

/* libcurl 7.69 to 8.1 (Debian 12 has 7.88) spell the option with three L. */
#if LIBCURL_VERSION_NUM >= 0x080200
#define SMTP_RCPT_ALLOWFAILS CURLOPT_MAIL_RCPT_ALLOWFAILS
#else
#define SMTP_RCPT_ALLOWFAILS CURLOPT_MAIL_RCPT_ALLLOWFAILS
#endif

enum {
    SMTP_TIMEOUT_MS = 30000,
    SMTP_CONNECT_TIMEOUT_MS = 10000,
};

struct upload {
    const char *data;
    size_t left;
};

static size_t upload_read(char *buffer, size_t size, size_t count, void *context)
{
    struct upload *upload = context;
    size_t n = size * count;
    if (n > upload->left)
        n = upload->left;
    memcpy(buffer, upload->data, n);
    upload->data += n;
    upload->left -= n;
    return n;
}

/* What the server answered to the RCPT TO commands of one attempt, read
 * from libcurl's protocol trace (it reports no per-recipient result). Only
 * command verbs and reply codes are looked at: AUTH lines are never kept. */
struct rcpt_trace {
    bool in_rcpt;    /* the last command sent was RCPT TO */
    int refused;     /* RCPT TO answered 4xx or 5xx */
    int refused_5xx; /* ...of which permanent */
    int accepted;
    char first_refused[256];
};

static int trace_smtp(CURL *curl, curl_infotype type, char *data, size_t size, void *context)
{
    struct rcpt_trace *trace = context;
    (void)curl;
    if (type == CURLINFO_HEADER_OUT) {
        trace->in_rcpt = size >= 8 && strncasecmp(data, "RCPT TO:", 8) == 0;
        if (trace->in_rcpt && trace->refused == 0) {
            /* Remember the address in case this one is refused. */
            size_t n = size - 8 < sizeof trace->first_refused - 1 ? size - 8
                                                                  : sizeof trace->first_refused - 1;
            memcpy(trace->first_refused, data + 8, n);
            trace->first_refused[n] = '\0';
            trace->first_refused[strcspn(trace->first_refused, "\r\n")] = '\0';
        }
    } else if (type == CURLINFO_HEADER_IN && trace->in_rcpt && size >= 3 && data[0] >= '2' &&
               data[0] <= '5' && (size == 3 || data[3] == ' ')) {
        /* The final line of the reply ("250 OK"; "550-..." continues). */
        trace->in_rcpt = false;
        if (data[0] == '4' || data[0] == '5') {
            trace->refused++;
            trace->refused_5xx += data[0] == '5';
        } else {
            trace->accepted++;
            if (trace->refused == 0)
                trace->first_refused[0] = '\0';
        }
    }
    return 0;
}

/* One SMTP attempt through libcurl. */
static enum butler_status smtp_send_once(const struct butler_config *config,
                                         const struct config_string_list *to, const char *message,
                                         char *error, size_t error_size)
{
    enum butler_status status = BUTLER_ERR_INTERNAL;
    struct curl_slist *recipients = NULL;
    char address[600];
    CURL *curl = curl_easy_init();
    struct upload upload = {message, strlen(message)};
    if (curl == NULL)
        goto out;
    for (size_t i = 0; i < to->count; i++) {
        snprintf(address, sizeof address, "<%s>", to->items[i]);
        struct curl_slist *grown = curl_slist_append(recipients, address);
        if (grown == NULL)
            goto out;
        recipients = grown;
    }
    snprintf(address, sizeof address, "<%s>", config->smtp.from);
    curl_easy_setopt(curl, CURLOPT_URL, config->smtp.url);
    curl_easy_setopt(curl, CURLOPT_MAIL_FROM, address);
    curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, recipients);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, upload_read);
    curl_easy_setopt(curl, CURLOPT_READDATA, &upload);
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    /* Credentials never travel in clear text: with a username, TLS is
     * required (smtps://, or STARTTLS that must succeed), unless the relay is
     * on loopback and smtp.plaintext_auth_loopback says so (config/validate.c
     * refuses that key for any other host). Without credentials STARTTLS is
     * used when offered. */
    const bool credentials = config->smtp.username && config->smtp.username[0];
    const bool tls_required = credentials && !config->smtp.plaintext_auth_loopback;
    curl_easy_setopt(curl, CURLOPT_USE_SSL, (long)(tls_required ? CURLUSESSL_ALL : CURLUSESSL_TRY));
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)SMTP_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)SMTP_CONNECT_TIMEOUT_MS);
    if (credentials) {
        curl_easy_setopt(curl, CURLOPT_USERNAME, config->smtp.username);
        curl_easy_setopt(curl, CURLOPT_PASSWORD,
                         config->smtp.password ? config->smtp.password : "");
    }
    /* One refused recipient must not cost the others their mail: libcurl
     * goes on while at least one RCPT TO is accepted (libcurl >= 7.69). */
    curl_easy_setopt(curl, SMTP_RCPT_ALLOWFAILS, 1L);
    struct rcpt_trace trace = {0};
    curl_easy_setopt(curl, CURLOPT_DEBUGFUNCTION, trace_smtp);
    curl_easy_setopt(curl, CURLOPT_DEBUGDATA, &trace);
    curl_easy_setopt(curl, CURLOPT_VERBOSE, 1L);
    CURLcode code = curl_easy_perform(curl);
    long reply = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply);
    if (code == CURLE_OK) {
        if (trace.refused > 0) {
            metrics_add(metrics_get("butler_email_recipients_refused_total", "", METRIC_COUNTER,
                                    "E-mail recipients the server refused; the others still "
                                    "got the mail"),
                        (int64_t)trace.refused);
            LOG_WARN(MODULE,
                     "%d of %zu recipient(s) refused by the server (first: %s); sent "
                     "to the others",
                     trace.refused, to->count, trace.first_refused);
        }
        status = BUTLER_OK;
        goto out;
    }
    if (code == CURLE_USE_SSL_FAILED) {
        snprintf(error, error_size,
                 "SMTP: the server offers no STARTTLS, and smtp.username is set: credentials are "
                 "sent only over TLS (use smtps://, or smtp.plaintext_auth_loopback for a relay "
                 "on loopback)");
        status = BUTLER_ERR_REMOTE;
        goto out;
    }
    if (trace.accepted == 0 && trace.refused > 0 && trace.refused_5xx == trace.refused) {
        /* Every recipient refused for good: retrying cannot help. */
        snprintf(error, error_size, "SMTP: every recipient refused (first: %s)",
                 trace.first_refused);
        status = BUTLER_ERR_REMOTE;
        goto out;
    }
    snprintf(error, error_size, "SMTP: %s (reply %ld)", curl_easy_strerror(code), reply);
    /* 4xx replies and transport trouble are temporary; 5xx replies are not. */
    bool temporary = (reply >= 400 && reply < 500) || code == CURLE_OPERATION_TIMEDOUT ||
                     code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST ||
                     code == CURLE_SEND_ERROR || code == CURLE_RECV_ERROR ||
                     code == CURLE_GOT_NOTHING;
    status = temporary ? BUTLER_ERR_RETRYABLE : BUTLER_ERR_REMOTE;
out:
    curl_slist_free_all(recipients);
    if (curl)
        curl_easy_cleanup(curl);
    return status;
}

struct smtp_attempt {
    const struct butler_config *config;
    const struct config_string_list *to;
    const char *message;
    char *error;
    size_t error_size;
};

static enum butler_status smtp_attempt_once(void *context, int attempt, long *retry_after_s)
{
    struct smtp_attempt *smtp = context;
    (void)attempt;
    (void)retry_after_s;
    return smtp_send_once(smtp->config, smtp->to, smtp->message, smtp->error, smtp->error_size);
}

enum butler_status smtp_client_send(const struct butler_config *config,
                                    const struct config_string_list *to, const char *message,
                                    bool (*should_stop)(void), char *error, size_t error_size,
                                    int *attempts_out)
{
    struct retry_policy policy = {config->retry.max_attempts, config->retry.initial_backoff_ms,
                                  config->retry.max_backoff_ms};
    struct smtp_attempt attempt = {config, to, message, error, error_size};
    return retry_run(&policy, should_stop, smtp_attempt_once, &attempt, attempts_out);
}
