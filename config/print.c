/*
 * `butler --check-config`: the effective configuration as YAML that loads back
 * to the same values, with every secret masked ("***" when set, "" when not).
 *
 * Thread context: any; reads the config only.
 */
#include "config/config_internal.h"
#include "bridge/core/log.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Double-quoted YAML scalar that libyaml reads back to the same bytes:
 * everything libyaml's reader rejects raw is written as an escape. */
static void print_quoted(FILE *out, const char *text)
{
    const unsigned char *p = (const unsigned char *)text;
    fputc('"', out);
    while (*p) {
        uint32_t code;
        size_t length;
        if (*p == '"' || *p == '\\') {
            fputc('\\', out);
            fputc(*p++, out);
            continue;
        }
        if (*p >= 0x20 && *p < 0x7f) {
            fputc(*p++, out);
            continue;
        }
        length = config_utf8_decode(p, &code);
        if (length == 0) {
            fprintf(out, "\\x%02X", *p++);
            continue;
        }
        if (code >= 0xA0 && code != 0xFEFF && code != 0xFFFE && code != 0xFFFF)
            fwrite(p, 1, length, out);
        else if (code <= 0xFF)
            fprintf(out, "\\x%02X", (unsigned)code);
        else
            fprintf(out, "\\u%04X", (unsigned)code);
        p += length;
    }
    fputc('"', out);
}

/* Indentation for the next line; the first line of a list item gets "- ". */
static void print_indent(FILE *out, int indent, bool *dash)
{
    if (*dash) {
        fprintf(out, "%*s- ", indent - 2, "");
        *dash = false;
    } else {
        fprintf(out, "%*s", indent, "");
    }
}

static void print_table(FILE *out, const struct key_table *table, const void *base, int indent,
                        bool dash);

static void print_value(FILE *out, const struct key_def *key, const void *base, int indent)
{
    const void *field = (const char *)base + key->offset;
    bool no_dash = false;
    switch (key->type) {
    case KEY_BOOL:
        fprintf(out, " %s\n", *(const bool *)field ? "true" : "false");
        return;
    case KEY_INT:
        fprintf(out, " %d\n", *(const int *)field);
        return;
    case KEY_LONG:
        fprintf(out, " %ld\n", *(const long *)field);
        return;
    case KEY_STRING: {
        /* A URL's user:password@ and query are masked (smtp://user:pass@..., a
         * token in qrs.url's query); the rest stays readable. */
        const char *value = *(char *const *)field ? *(char *const *)field : "";
        char *masked = strstr(value, "://") ? malloc(strlen(value) + 8) : NULL;
        if (masked)
            log_mask_url(value, masked, strlen(value) + 8);
        fputc(' ', out);
        print_quoted(out, masked ? masked : value);
        fputc('\n', out);
        free(masked);
        return;
    }
    case KEY_SECRET: {
        const char *secret = *(char *const *)field;
        fprintf(out, " \"%s\"\n", secret && *secret ? "***" : "");
        return;
    }
    case KEY_ENUM: {
        int value = *(const int *)field;
        int names = 0;
        while (key->names[names])
            names++;
        fprintf(out, " %s\n", value >= 0 && value < names ? key->names[value] : key->names[0]);
        return;
    }
    case KEY_WORD:
        fputc(' ', out);
        print_quoted(out, *(char *const *)field ? *(char *const *)field : "");
        fputc('\n', out);
        return;
    case KEY_LIST:
    case KEY_SECRET_LIST: {
        const struct config_string_list *list = field;
        if (list->count == 0) {
            fputs(" []\n", out);
            return;
        }
        fputc('\n', out);
        for (size_t i = 0; i < list->count; i++) {
            print_indent(out, indent + 2, &no_dash);
            fputs("- ", out);
            if (key->type == KEY_SECRET_LIST)
                fputs("\"***\"", out);
            else
                print_quoted(out, list->items[i]);
            fputc('\n', out);
        }
        return;
    }
    case KEY_HEADERS: {
        const struct config_header_list *headers = field;
        if (headers->count == 0) {
            fputs(" {}\n", out);
            return;
        }
        fputc('\n', out);
        for (size_t i = 0; i < headers->count; i++) {
            print_indent(out, indent + 2, &no_dash);
            print_quoted(out, headers->items[i].name);
            fputs(": \"***\"\n", out); /* values carry API keys */
        }
        return;
    }
    case KEY_MAP: {
        const struct config_header_list *map = field;
        if (map->count == 0) {
            fputs(" {}\n", out);
            return;
        }
        fputc('\n', out);
        for (size_t i = 0; i < map->count; i++) {
            print_indent(out, indent + 2, &no_dash);
            print_quoted(out, map->items[i].name);
            fputs(": ", out);
            print_quoted(out, map->items[i].value);
            fputc('\n', out);
        }
        return;
    }
    case KEY_OBJECTS: {
        size_t count = 0;
        const char *items = key->objects->get(field, &count);
        if (count == 0) {
            fputs(" []\n", out);
            return;
        }
        fputc('\n', out);
        for (size_t i = 0; i < count; i++)
            print_table(out, key->objects->table, items + i * key->objects->item_size, indent + 4,
                        true);
        return;
    }
    }
}

static size_t split_path(const char *path, const char **segment, size_t *length)
{
    size_t count = 0;
    for (const char *p = path; count < MAX_SEGMENTS;) {
        const char *dot = strchr(p, '.');
        segment[count] = p;
        length[count] = dot ? (size_t)(dot - p) : strlen(p);
        count++;
        if (!dot)
            break;
        p = dot + 1;
    }
    return count;
}

/*
 * Print one table's keys as nested YAML, opening a section mapping whenever
 * the dotted prefix changes. Relies on each section's keys being contiguous
 * in the table. `dash` starts the first line with "- " (a list item).
 */
static void print_table(FILE *out, const struct key_table *table, const void *base, int indent,
                        bool dash)
{
    const char *open[MAX_SEGMENTS];
    size_t open_length[MAX_SEGMENTS];
    size_t open_count = 0;

    for (size_t k = 0; k < table->count; k++) {
        const char *segment[MAX_SEGMENTS];
        size_t length[MAX_SEGMENTS];
        size_t segments = split_path(table->keys[k].path, segment, length);
        size_t common = 0;
        while (common < open_count && common + 1 < segments &&
               open_length[common] == length[common] &&
               memcmp(open[common], segment[common], length[common]) == 0)
            common++;
        open_count = common;
        for (size_t s = common; s + 1 < segments; s++) {
            print_indent(out, indent + 2 * (int)s, &dash);
            fprintf(out, "%.*s:\n", (int)length[s], segment[s]);
            open[s] = segment[s];
            open_length[s] = length[s];
            open_count = s + 1;
        }
        int key_indent = indent + 2 * (int)(segments - 1);
        print_indent(out, key_indent, &dash);
        fprintf(out, "%.*s:", (int)length[segments - 1], segment[segments - 1]);
        print_value(out, &table->keys[k], base, key_indent);
    }
}

void config_print(const struct butler_config *config, FILE *out)
{
    if (!config || !out)
        return;
    fputs("# Effective Butler configuration. Secrets are shown as \"***\" (set) or \"\".\n", out);
    if (config->source_file && config->source_file[0]) {
        fputs("# Loaded from: ", out);
        for (const unsigned char *p = (const unsigned char *)config->source_file; *p; p++)
            fputc(*p >= 0x20 && *p != 0x7f ? *p : '?', out);
        fputc('\n', out);
    }
    print_table(out, &config_key_table, config, 0, false);
}
