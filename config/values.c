/*
 * Converting text to field values: strict integer, boolean and enum parsing,
 * string and list installation, defaults and freeing, all driven by a key's
 * entry in the table. Shared by the YAML, environment and *_file layers, so
 * every layer accepts and refuses exactly the same values.
 *
 * Thread context: start-up only.
 */
#include "config/config_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------ */
/* Small parsers and string helpers                                          */
/* ------------------------------------------------------------------------ */

/* Strict decimal: optional sign, digits, nothing else (no spaces, 0x, 1e3, 1_000). */
static bool parse_integer(const char *text, long long *value)
{
    const char *digits = text + (text[0] == '-' || text[0] == '+');
    char *end = NULL;
    if (*digits < '0' || *digits > '9')
        return false;
    errno = 0;
    long long parsed = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0')
        return false;
    *value = parsed;
    return true;
}

static bool parse_bool(const char *text, bool *value)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < ARRAY_COUNT(yes); i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *value = true;
            return true;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *value = false;
            return true;
        }
    }
    return false;
}

static int find_name(const char *const *names, const char *text)
{
    for (int i = 0; names[i]; i++)
        if (strcasecmp(names[i], text) == 0)
            return i;
    return -1;
}

/* Strict UTF-8 decoder (no overlongs, surrogates or > U+10FFFF). Stops at NUL.
 * Returns the sequence length, or 0 when invalid. */
size_t config_utf8_decode(const unsigned char *s, uint32_t *out)
{
    static const uint32_t minimum[] = {0, 0, 0x80, 0x800, 0x10000};
    uint32_t code;
    size_t length;
    if (s[0] < 0x80) {
        *out = s[0];
        return 1;
    } else if ((s[0] & 0xE0) == 0xC0) {
        code = s[0] & 0x1Fu;
        length = 2;
    } else if ((s[0] & 0xF0) == 0xE0) {
        code = s[0] & 0x0Fu;
        length = 3;
    } else if ((s[0] & 0xF8) == 0xF0) {
        code = s[0] & 0x07u;
        length = 4;
    } else {
        return 0;
    }
    for (size_t i = 1; i < length; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        code = (code << 6) | (s[i] & 0x3Fu);
    }
    if (code < minimum[length] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF))
        return 0;
    *out = code;
    return length;
}

bool config_utf8_valid(const char *text)
{
    const unsigned char *p = (const unsigned char *)text;
    uint32_t code;
    while (*p) {
        size_t length = config_utf8_decode(p, &code);
        if (length == 0)
            return false;
        p += length;
    }
    return true;
}

bool config_replace_string(struct loader *ld, char **field, const char *text, size_t length)
{
    char *copy = malloc(length + 1);
    if (!copy) {
        config_out_of_memory(ld);
        return false;
    }
    memcpy(copy, text, length);
    copy[length] = '\0';
    free(*field);
    *field = copy;
    return true;
}

void config_free_string_list(struct config_string_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

void config_install_list(struct config_string_list *field, struct config_string_list *list)
{
    config_free_string_list(field);
    *field = *list;
    list->items = NULL;
    list->count = 0;
}

/* ------------------------------------------------------------------------ */
/* Setting values                                                            */
/* ------------------------------------------------------------------------ */

/*
 * Convert `text` for a scalar key and store it in the field at base+offset.
 * Reports and returns false when the text is not acceptable; the field then
 * keeps its previous value. `is_default` skips string checks, because some
 * defaults ("" for a required route name) are placeholders, not values.
 */
bool config_set_scalar(struct loader *ld, const struct key_def *key, void *base, const char *text,
                       const struct origin *at, const char *path, bool is_default)
{
    void *field = (char *)base + key->offset;
    char expected[160], got[ECHO_TEXT];
    long long number = 0;
    bool flag = false;
    int index = -1;
    const char *problem;

    switch (key->type) {
    case KEY_BOOL:
        if (!parse_bool(text, &flag))
            break;
        *(bool *)field = flag;
        return true;
    case KEY_INT:
        if (!parse_integer(text, &number) || number < key->min || number > key->max ||
            number < INT_MIN || number > INT_MAX)
            break;
        *(int *)field = (int)number;
        return true;
    case KEY_LONG:
        if (!parse_integer(text, &number) || number < key->min || number > key->max ||
            number < LONG_MIN || number > LONG_MAX)
            break;
        *(long *)field = (long)number;
        return true;
    case KEY_ENUM:
        index = find_name(key->names, text);
        if (index < 0)
            break;
        *(int *)field = index;
        return true;
    case KEY_WORD:
        index = find_name(key->names, text);
        if (index < 0)
            break;
        return config_replace_string(ld, (char **)field, key->names[index],
                                     strlen(key->names[index]));
    case KEY_STRING:
    case KEY_SECRET:
        problem = is_default || !key->check ? NULL : key->check(text);
        if (problem) {
            if (key->type == KEY_SECRET)
                config_report(ld, at, path, "%s", problem);
            else
                config_report(ld, at, path, "%s, got %s", problem,
                              config_echo(got, sizeof got, text));
            return false;
        }
        return config_replace_string(ld, (char **)field, text, strlen(text));
    case KEY_LIST:
    case KEY_SECRET_LIST:
    case KEY_OBJECTS:
    case KEY_HEADERS:
    case KEY_MAP:
        config_report(ld, at, path, "internal error: not a scalar key");
        return false;
    }
    config_report(ld, at, path, "expected %s, got %s",
                  config_describe_expected(key, expected, sizeof expected),
                  config_echo(got, sizeof got, text));
    return false;
}

/* List items share one check so YAML, environment and *_file lists agree. */
bool config_check_list_item(struct loader *ld, const struct key_def *key, const char *text,
                            const struct origin *at, const char *path)
{
    char got[ECHO_TEXT];
    const char *problem = key->check ? key->check(text) : NULL;
    if (!problem)
        return true;
    if (key->type == KEY_SECRET_LIST)
        config_report(ld, at, path, "%s", problem);
    else
        config_report(ld, at, path, "%s, got %s", problem, config_echo(got, sizeof got, text));
    return false;
}

/*
 * Split `text` at `separator` into a string list for `key` (environment: ',';
 * tokens file: '\n'), trimming blanks and skipping empty items. Installs the
 * list only when every item is valid. `text` is not modified.
 */
void config_set_list_from_text(struct loader *ld, const struct key_def *key, void *base,
                               const char *text, char separator, const struct origin *at)
{
    struct config_string_list list = {0};
    size_t capacity = 1;
    bool ok = true;
    char path[PATH_TEXT];

    for (const char *p = text; *p; p++)
        capacity += *p == separator;
    if (capacity > MAX_LIST_ITEMS) {
        config_report(ld, at, key->path, "more than %u items", MAX_LIST_ITEMS);
        goto out;
    }
    list.items = calloc(capacity, sizeof *list.items);
    if (!list.items) {
        config_out_of_memory(ld);
        goto out;
    }
    for (const char *p = text;;) {
        const char *end = strchr(p, separator);
        const char *next = end ? end + 1 : NULL;
        if (!end)
            end = p + strlen(p);
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
            p++;
        while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
            end--;
        if (end > p) {
            char *item = malloc((size_t)(end - p) + 1);
            if (!item) {
                config_out_of_memory(ld);
                goto out;
            }
            memcpy(item, p, (size_t)(end - p));
            item[end - p] = '\0';
            config_index_path(path, sizeof path, key->path, list.count);
            if (config_check_list_item(ld, key, item, at, path)) {
                list.items[list.count++] = item;
            } else {
                free(item);
                ok = false;
            }
        }
        if (!next)
            break;
        p = next;
    }
    if (ok)
        config_install_list((struct config_string_list *)((char *)base + key->offset), &list);
out:
    config_free_string_list(&list);
}

static void free_objects(const struct key_def *key, void *base)
{
    const struct object_list *objects = key->objects;
    void *list = (char *)base + key->offset;
    size_t count = 0;
    char *items = objects->get(list, &count);
    for (size_t i = 0; i < count; i++)
        config_free_table(objects->table, items + i * objects->item_size);
    free(items);
    objects->set(list, NULL, 0);
}

/* Release every owned field of one table's struct and leave them NULL/empty. */
void config_free_headers(struct config_header_list *headers)
{
    for (size_t i = 0; i < headers->count; i++) {
        free(headers->items[i].name);
        if (headers->items[i].value) /* API keys: do not leave them in freed heap */
            memset(headers->items[i].value, 0, strlen(headers->items[i].value));
        free(headers->items[i].value);
    }
    free(headers->items);
    headers->items = NULL;
    headers->count = 0;
}

void config_free_table(const struct key_table *table, void *base)
{
    for (size_t i = 0; i < table->count; i++) {
        const struct key_def *key = &table->keys[i];
        void *field = (char *)base + key->offset;
        switch (key->type) {
        case KEY_STRING:
        case KEY_SECRET:
        case KEY_WORD:
            free(*(char **)field);
            *(char **)field = NULL;
            break;
        case KEY_LIST:
        case KEY_SECRET_LIST:
            config_free_string_list(field);
            break;
        case KEY_OBJECTS:
            free_objects(key, base);
            break;
        case KEY_HEADERS:
        case KEY_MAP:
            config_free_headers(field);
            break;
        case KEY_BOOL:
        case KEY_INT:
        case KEY_LONG:
        case KEY_ENUM:
            break;
        }
    }
}

/* Fill one table's struct with its defaults; strings become "" when unset so
 * that consumers never see NULL. */
void config_apply_defaults(struct loader *ld, const struct key_table *table, void *base)
{
    for (size_t i = 0; i < table->count && ld->status == BUTLER_OK; i++) {
        const struct key_def *key = &table->keys[i];
        if (key->type == KEY_LIST || key->type == KEY_SECRET_LIST || key->type == KEY_OBJECTS ||
            key->type == KEY_HEADERS || key->type == KEY_MAP)
            continue;
        config_set_scalar(ld, key, base, key->def ? key->def : "", NULL, key->path, true);
    }
}
