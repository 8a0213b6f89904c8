/*
 * Process-wide counters and gauges, rendered as Prometheus text on /metrics.
 *
 * A metric is identified by name plus a label string ("reason=\"size\"").
 * metrics_get() registers it on first use and returns a pointer that stays
 * valid for the life of the process, so hot paths look a metric up once and
 * then only do an atomic add. The table has a hard maximum (METRICS_MAX); past
 * it every new name/label pair shares one overflow slot, counted in
 * butler_metrics_overflow_total, instead of growing.
 * Thread-safe.
 */
#ifndef BUTLER_METRICS_H
#define BUTLER_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/status.h"

enum metric_kind {
    METRIC_COUNTER,
    METRIC_GAUGE,
};

struct metric;

/* `name` and `labels` are copied. `help` must be a string literal (kept by pointer). */
struct metric *metrics_get(const char *name, const char *labels, enum metric_kind kind,
                           const char *help);
/* Both accept NULL (a metric of a module that was not set up) and do nothing. */
void metrics_add(struct metric *metric, int64_t delta);
void metrics_set(struct metric *metric, int64_t value);
int64_t metrics_value(const struct metric *metric);

/* Convenience for call sites whose labels vary at run time. */
void metrics_count(const char *name, const char *labels, const char *help);

/* Render every metric. On success *out is a NUL-terminated string owned by the
 * caller (free()). */
enum butler_status metrics_render(char **out, size_t *out_length);

/* Look up a metric's current value by name and labels; 0 if absent. For tests. */
int64_t metrics_lookup(const char *name, const char *labels);

#endif
