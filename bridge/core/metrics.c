#include "bridge/core/metrics.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { METRICS_MAX = 1024, METRIC_NAME_MAX = 96, METRIC_LABELS_MAX = 160 };

struct metric {
    char name[METRIC_NAME_MAX];
    char labels[METRIC_LABELS_MAX];
    const char *help;
    enum metric_kind kind;
    atomic_llong value;
};

static struct metric metrics_table[METRICS_MAX];
static atomic_size_t metrics_used; /* published after the slot is filled */
static pthread_mutex_t metrics_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct metric metrics_overflow = {
    .name = "butler_metrics_overflow_total",
    .help = "Updates to metrics that did not fit the metrics table",
    .kind = METRIC_COUNTER,
};

static struct metric *find_metric(const char *name, const char *labels, size_t used)
{
    for (size_t i = 0; i < used; i++)
        if (strcmp(metrics_table[i].name, name) == 0 &&
            strcmp(metrics_table[i].labels, labels) == 0)
            return &metrics_table[i];
    return NULL;
}

struct metric *metrics_get(const char *name, const char *labels, enum metric_kind kind,
                           const char *help)
{
    if (labels == NULL)
        labels = "";
    struct metric *found = find_metric(name, labels, atomic_load(&metrics_used));
    if (found)
        return found;
    pthread_mutex_lock(&metrics_mutex);
    size_t used = atomic_load(&metrics_used);
    found = find_metric(name, labels, used);
    if (found == NULL) {
        if (used >= METRICS_MAX || strlen(name) >= METRIC_NAME_MAX ||
            strlen(labels) >= METRIC_LABELS_MAX) {
            found = &metrics_overflow;
        } else {
            found = &metrics_table[used];
            snprintf(found->name, sizeof found->name, "%s", name);
            snprintf(found->labels, sizeof found->labels, "%s", labels);
            found->help = help;
            found->kind = kind;
            atomic_store(&found->value, 0);
            atomic_store(&metrics_used, used + 1);
        }
    }
    pthread_mutex_unlock(&metrics_mutex);
    return found;
}

void metrics_add(struct metric *metric, int64_t delta)
{
    if (metric == NULL) /* a module that never ran its setup */
        return;
    if (metric == &metrics_overflow)
        delta = 1;
    atomic_fetch_add(&metric->value, delta);
}

void metrics_set(struct metric *metric, int64_t value)
{
    if (metric == NULL)
        return;
    if (metric == &metrics_overflow)
        atomic_fetch_add(&metric->value, 1);
    else
        atomic_store(&metric->value, value);
}

int64_t metrics_value(const struct metric *metric)
{
    return atomic_load(&metric->value);
}

void metrics_count(const char *name, const char *labels, const char *help)
{
    metrics_add(metrics_get(name, labels, METRIC_COUNTER, help), 1);
}

int64_t metrics_lookup(const char *name, const char *labels)
{
    struct metric *found = find_metric(name, labels ? labels : "", atomic_load(&metrics_used));
    return found ? atomic_load(&found->value) : 0;
}

/* Append to a growing buffer; the render output is bounded by the table size. */
static bool append(char **buffer, size_t *length, size_t *capacity, const char *format, ...)
    __attribute__((format(printf, 4, 5)));

static bool append(char **buffer, size_t *length, size_t *capacity, const char *format, ...)
{
    for (;;) {
        va_list args;
        va_start(args, format);
        int needed = vsnprintf(*buffer + *length, *capacity - *length, format, args);
        va_end(args);
        if (needed < 0)
            return false;
        if ((size_t)needed < *capacity - *length) {
            *length += (size_t)needed;
            return true;
        }
        size_t grown = *capacity * 2 + (size_t)needed;
        char *bigger = realloc(*buffer, grown);
        if (bigger == NULL)
            return false;
        *buffer = bigger;
        *capacity = grown;
    }
}

/*
 * Prometheus text: one HELP/TYPE block per metric name, then every label set.
 * Names registered under several label sets are grouped by scanning for the
 * first occurrence, which keeps the table append-only and lock-free to read.
 */
enum butler_status metrics_render(char **out, size_t *out_length)
{
    enum butler_status status = BUTLER_ERR_NOMEM;
    size_t capacity = 16384, length = 0;
    char *buffer = malloc(capacity);
    if (buffer == NULL)
        goto out;
    buffer[0] = '\0';
    size_t used = atomic_load(&metrics_used);
    for (size_t i = 0; i < used; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(metrics_table[j].name, metrics_table[i].name) == 0;
        if (seen)
            continue;
        if (!append(&buffer, &length, &capacity, "# HELP %s %s\n# TYPE %s %s\n",
                    metrics_table[i].name, metrics_table[i].help ? metrics_table[i].help : "",
                    metrics_table[i].name,
                    metrics_table[i].kind == METRIC_COUNTER ? "counter" : "gauge"))
            goto out;
        for (size_t j = i; j < used; j++) {
            if (strcmp(metrics_table[j].name, metrics_table[i].name) != 0)
                continue;
            const char *labels = metrics_table[j].labels;
            if (!append(&buffer, &length, &capacity, "%s%s%s%s %lld\n", metrics_table[j].name,
                        labels[0] ? "{" : "", labels, labels[0] ? "}" : "",
                        (long long)atomic_load(&metrics_table[j].value)))
                goto out;
        }
    }
    if (!append(&buffer, &length, &capacity, "# HELP %s %s\n# TYPE %s counter\n%s %lld\n",
                metrics_overflow.name, metrics_overflow.help, metrics_overflow.name,
                metrics_overflow.name, (long long)atomic_load(&metrics_overflow.value)))
        goto out;
    *out = buffer;
    *out_length = length;
    buffer = NULL;
    status = BUTLER_OK;
out:
    free(buffer);
    return status;
}
