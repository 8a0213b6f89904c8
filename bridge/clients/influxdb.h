/*
 * InfluxDB write client (reference 7.4) on libcurl: one call writes a body of
 * line protocol (bridge/clients/line_protocol.h) in nanosecond precision.
 *   v1: POST <url>/write?db=<database>[&rp=<rp>]&precision=ns, basic auth when
 *       a username is set; a database that does not exist is created
 *       (POST /query q=CREATE DATABASE) and the write tried once more.
 *   v2: POST <url>/api/v2/write?org=<org>&bucket=<bucket>&precision=ns,
 *       Authorization: Token <token>.
 *   v3: POST <url>/api/v3/write_lp?db=<database>&precision=nanosecond,
 *       Authorization: Bearer <token> when a token is set.
 * Bodies of INFLUXDB_GZIP_MIN_BYTES or more go gzip-compressed
 * (Content-Encoding: gzip) when that makes them smaller. The connection is
 * kept between calls (one http_client per influxdb client). Secrets are only
 * ever put in headers, never in URLs or log lines.
 *
 * Knows nothing of topics or the spool: it writes and says how it went.
 * Not thread-safe: a client belongs to one thread.
 */
#ifndef BUTLER_INFLUXDB_H
#define BUTLER_INFLUXDB_H

#include <stddef.h>

#include "bridge/core/status.h"

enum { INFLUXDB_GZIP_MIN_BYTES = 1024, INFLUXDB_ERROR_MAX = 512 };

/* Borrowed strings: they must outlive the client ("" = not set). */
struct influxdb_options {
    const char *url; /* base, without a trailing path */
    int version;     /* 1, 2 or 3 */
    const char *database;
    const char *retention_policy;
    const char *username;
    const char *password;
    const char *org;
    const char *bucket;
    const char *token;
    long timeout_ms;
};

struct influxdb_client;

/* *out owned by the caller (influxdb_client_destroy). */
enum butler_status influxdb_client_create(const struct influxdb_options *options,
                                          struct influxdb_client **out);
void influxdb_client_destroy(struct influxdb_client *client);

struct influxdb_result {
    long status;                    /* HTTP status, 0 when none arrived */
    long retry_after_s;             /* Retry-After, -1 when absent */
    char error[INFLUXDB_ERROR_MAX]; /* InfluxDB's own reason, or the transport error */
};

/*
 * Write `length` bytes of line protocol. BUTLER_OK: InfluxDB answered 2xx.
 * BUTLER_ERR_RETRYABLE: no answer, 5xx, 429, or 401/403/404 (a credential or
 * database problem that a person fixes; the points wait). BUTLER_ERR_REMOTE:
 * another 4xx, the points were refused (result->error says why).
 * BUTLER_ERR_NOMEM. `result` is always filled.
 */
enum butler_status influxdb_write(struct influxdb_client *client, const char *lines, size_t length,
                                  struct influxdb_result *result);

/* gzip `length` bytes of `data` (exposed for the unit test). *out is malloc'd,
 * owned by the caller. BUTLER_ERR_NOMEM, or BUTLER_ERR_TOO_LARGE when the
 * result would not be smaller than the input. */
enum butler_status influxdb_gzip(const char *data, size_t length, unsigned char **out,
                                 size_t *out_length);

#endif
