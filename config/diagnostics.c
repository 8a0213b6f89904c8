/*
 * Error reporting for the configuration loader: one line per problem,
 * "FILE:LINE:COLUMN: KEY.PATH: message", with values quoted safely (never a
 * secret) and a cap on how many lines are printed.
 *
 * Thread context: start-up only, on the main thread.
 */
#include "config/config_internal.h"

#include <stdarg.h>
#include <string.h>

bool config_stopped(const struct loader *ld)
{
    return ld->status != BUTLER_OK || ld->error_count >= MAX_ERRORS;
}

struct origin config_origin_at(size_t line, size_t column)
{
    struct origin at = {.line = line, .column = column};
    return at;
}

/* One line "WHERE: PATH: message". Counts every error, prints the first
 * MAX_ERRORS; load_common adds a closing line when it stopped early. */
__attribute__((format(printf, 4, 5))) void config_report(struct loader *ld, const struct origin *at,
                                                         const char *path, const char *format, ...)
{
    va_list args;
    ld->error_count++;
    if (!ld->errors || ld->error_count > MAX_ERRORS)
        return;
    if (at && at->env[0])
        fprintf(ld->errors, "environment:%s: ", at->env);
    else if (at && at->line)
        fprintf(ld->errors, "%s:%zu:%zu: ", ld->name, at->line, at->column);
    else
        fprintf(ld->errors, "%s: ", ld->name);
    if (path && *path)
        fprintf(ld->errors, "%s: ", path);
    va_start(args, format);
    vfprintf(ld->errors, format, args);
    va_end(args);
    fputc('\n', ld->errors);
}

void config_out_of_memory(struct loader *ld)
{
    if (ld->status == BUTLER_OK && ld->errors)
        fprintf(ld->errors, "%s: out of memory while loading the configuration\n", ld->name);
    ld->status = BUTLER_ERR_NOMEM;
}

/* Quote `text` for an error message: ASCII-only, escaped, truncated. Returns buffer. */
const char *config_echo(char *buffer, size_t size, const char *text)
{
    size_t used = 0;
    const unsigned char *p = (const unsigned char *)text;
    buffer[used++] = '"';
    /* Each step writes at most 4 bytes; 8 keeps room for `..."` and the NUL. */
    for (; *p && used + 8 < size; p++) {
        if (*p == '"' || *p == '\\') {
            buffer[used++] = '\\';
            buffer[used++] = (char)*p;
        } else if (*p >= 0x20 && *p < 0x7f) {
            buffer[used++] = (char)*p;
        } else {
            snprintf(buffer + used, size - used, "\\x%02X", *p);
            used += 4;
        }
    }
    if (*p) {
        memcpy(buffer + used, "...", 3);
        used += 3;
    }
    buffer[used++] = '"';
    buffer[used] = '\0';
    return buffer;
}

/* Display and lookup paths. Lookups never truncate (keys are at most
 * MAX_KEY_TEXT and the table is shallow); display paths may, harmlessly. */
void config_join_path(char *out, size_t size, const char *prefix, const char *key)
{
    int length = prefix && *prefix ? snprintf(out, size, "%s.%s", prefix, key)
                                   : snprintf(out, size, "%s", key);
    if (length < 0 || (size_t)length >= size)
        out[size - 1] = '\0';
}

/* Display paths only ("routes[2]"): a truncated path still makes a useful
 * message, and checking the result keeps -Wformat-truncation quiet. */
void config_index_path(char *out, size_t size, const char *path, size_t index)
{
    int length = snprintf(out, size, "%s[%zu]", path, index);
    if (length < 0 || (size_t)length >= size)
        out[size - 1] = '\0';
}

const char *config_describe_expected(const struct key_def *key, char *buffer, size_t size)
{
    size_t used = 0;
    switch (key->type) {
    case KEY_BOOL:
        return "a boolean (true/false, yes/no, on/off)";
    case KEY_INT:
    case KEY_LONG:
        snprintf(buffer, size, "an integer %lld..%lld", key->min, key->max);
        return buffer;
    case KEY_ENUM:
    case KEY_WORD:
        used = (size_t)snprintf(buffer, size, "one of ");
        for (size_t i = 0; key->names[i] && used < size; i++)
            used +=
                (size_t)snprintf(buffer + used, size - used, "%s%s", i ? "|" : "", key->names[i]);
        return buffer;
    case KEY_STRING:
    case KEY_SECRET:
        return "a string";
    case KEY_LIST:
    case KEY_SECRET_LIST:
        return "a list of strings";
    case KEY_OBJECTS:
        return "a list of mappings";
    case KEY_HEADERS:
        return "a mapping of HTTP header names to values";
    case KEY_MAP:
        return "a mapping of names to values";
    }
    return "a value";
}
