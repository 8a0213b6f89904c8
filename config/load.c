/*
 * Configuration loading: walks the YAML tree against the key table, then runs
 * the other layers in order: table defaults -> YAML file -> BUTLER_*
 * environment -> *_file secrets -> cross-key checks. Every problem found is
 * reported (up to MAX_ERRORS) before failing, so a user can fix a file in one
 * round.
 *
 * Thread context: start-up only, on the main thread (getenv, strerror).
 */
#include "config/config_internal.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Tree -> struct                                                            */
/* ------------------------------------------------------------------------ */

/* What a node is, for "got ..." in messages. Only a known non-secret scalar
 * key may quote the value: anything else could be a secret in the wrong place
 * (a mis-indented webhook URL, say). */
static const char *describe_node(const struct node *node, bool secret, char *buffer, size_t size)
{
    if (node->kind == NODE_MAPPING)
        return "a mapping";
    if (node->kind == NODE_SEQUENCE)
        return "a list";
    if (node->is_null)
        return "null";
    return secret ? "a string" : config_echo(buffer, size, node->text);
}

static bool is_secret(const struct key_def *key)
{
    return key->type == KEY_SECRET || key->type == KEY_SECRET_LIST;
}

int config_find_key(const struct key_table *table, const char *path)
{
    for (size_t i = 0; i < table->count; i++)
        if (strcmp(table->keys[i].path, path) == 0)
            return (int)i;
    return -1;
}

static bool is_section(const struct key_table *table, const char *path)
{
    size_t length = strlen(path);
    for (size_t i = 0; i < table->count; i++)
        if (strncmp(table->keys[i].path, path, length) == 0 && table->keys[i].path[length] == '.')
            return true;
    return false;
}

/* "mqtt.password_file" -> index of "mqtt.password" when it has a file variant. */
static int find_file_key(const struct key_table *table, const char *path)
{
    static const char suffix[] = "_file";
    char base_path[PATH_TEXT];
    size_t length = strlen(path);
    if (length <= sizeof suffix - 1 || length >= sizeof base_path ||
        strcmp(path + length - (sizeof suffix - 1), suffix) != 0)
        return -1;
    memcpy(base_path, path, length - (sizeof suffix - 1));
    base_path[length - (sizeof suffix - 1)] = '\0';
    int index = config_find_key(table, base_path);
    return index >= 0 && table->keys[index].has_file ? index : -1;
}

/* Table keys are [a-z0-9_]; anything else (dots included) cannot match. */
static bool valid_key_text(const char *key)
{
    size_t length = strlen(key);
    if (length == 0 || length > MAX_KEY_TEXT)
        return false;
    for (const char *p = key; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return false;
    return true;
}

static void walk_mapping(struct loader *ld, const struct key_table *table, void *base,
                         const struct node *map, const char *prefix, const char *display,
                         uint64_t *seen, struct key_state *states);

static void apply_list(struct loader *ld, const struct key_def *key, void *base,
                       const struct node *node, const char *path)
{
    struct config_string_list list = {0};
    bool secret = key->type == KEY_SECRET_LIST;
    bool ok = true;
    char got[ECHO_TEXT], item_path[PATH_TEXT];
    struct origin at = config_origin_at(node->line, node->column);

    if (node->kind != NODE_SEQUENCE) {
        config_report(ld, &at, path, "expected a list of strings, got %s",
                      describe_node(node, secret, got, sizeof got));
        goto out;
    }
    if (node->count == 0)
        goto out; /* the default is already empty and keys cannot repeat */
    list.items = calloc(node->count, sizeof *list.items);
    if (!list.items) {
        config_out_of_memory(ld);
        goto out;
    }
    for (size_t i = 0; i < node->count; i++) {
        const struct node *item = node->items[i];
        struct origin item_at = config_origin_at(item->line, item->column);
        config_index_path(item_path, sizeof item_path, path, i);
        if (item->kind != NODE_SCALAR || item->is_null) {
            config_report(ld, &item_at, item_path, "expected a string, got %s",
                          describe_node(item, secret, got, sizeof got));
            ok = false;
            continue;
        }
        if (!config_check_list_item(ld, key, item->text, &item_at, item_path)) {
            ok = false;
            continue;
        }
        list.items[list.count] = strdup(item->text);
        if (!list.items[list.count]) {
            config_out_of_memory(ld);
            goto out;
        }
        list.count++;
    }
    if (ok)
        config_install_list((struct config_string_list *)((char *)base + key->offset), &list);
out:
    config_free_string_list(&list);
}

/*
 * A list of mappings, each walked against the object list's own table.
 * Items are installed even when some have errors (config_free releases them
 * when the load fails); item-level checks run only on items without errors so
 * one mistake does not cascade into several messages.
 */
static void walk_objects(struct loader *ld, const struct key_def *key, void *base,
                         const struct node *node, const char *path, struct key_state *state)
{
    const struct object_list *objects = key->objects;
    char *items = NULL;
    size_t count = node->count;
    struct origin *origins = NULL;
    char got[ECHO_TEXT], prefix[PATH_TEXT], required_path[PATH_TEXT];
    struct origin at = config_origin_at(node->line, node->column);

    if (node->kind != NODE_SEQUENCE) {
        config_report(ld, &at, path, "expected a list of mappings, got %s",
                      describe_node(node, true, got, sizeof got));
        return;
    }
    if (count > objects->max_items) {
        config_report(ld, &at, path, "at most %zu items are allowed, got %zu", objects->max_items,
                      count);
        return;
    }
    if (count == 0)
        return;
    items = calloc(count, objects->item_size);
    origins = calloc(count, sizeof *origins);
    if (!items || !origins) {
        config_out_of_memory(ld);
        goto out;
    }
    for (size_t i = 0; i < count; i++)
        config_apply_defaults(ld, objects->table, items + i * objects->item_size);
    if (ld->status != BUTLER_OK)
        goto out;

    for (size_t i = 0; i < count && !config_stopped(ld); i++) {
        void *item = items + i * objects->item_size;
        const struct node *child = node->items[i];
        unsigned errors_before = ld->error_count;
        uint64_t seen = 0;

        origins[i] = config_origin_at(child->line, child->column);
        config_index_path(prefix, sizeof prefix, path, i);
        if (child->kind != NODE_MAPPING) {
            config_report(ld, &origins[i], prefix, "expected a mapping, got %s",
                          describe_node(child, true, got, sizeof got));
            continue;
        }
        walk_mapping(ld, objects->table, item, child, "", prefix, &seen, NULL);
        for (size_t k = 0; k < objects->table->count; k++) {
            if (objects->table->keys[k].required && !(seen & (UINT64_C(1) << k))) {
                config_join_path(required_path, sizeof required_path, prefix,
                                 objects->table->keys[k].path);
                config_report(ld, &origins[i], required_path, "required key is missing");
            }
        }
        if (ld->error_count == errors_before && objects->check_item)
            objects->check_item(ld, items, i, prefix, &origins[i]);
    }

    objects->set((char *)base + key->offset, items, count);
    items = NULL;
    if (state) {
        free(state->items);
        state->items = origins;
        state->item_count = count;
        origins = NULL;
    }
out:
    if (items) {
        for (size_t i = 0; i < count; i++)
            config_free_table(objects->table, items + i * objects->item_size);
        free(items);
    }
    free(origins);
}

/* An HTTP header name is an RFC 9110 token. */
static bool is_header_name(const char *name)
{
    if (!*name)
        return false;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (!isalnum(*p) && !strchr("!#$%&'*+-.^_`|~", *p))
            return false;
    return true;
}

static bool is_single_line(const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

/* `headers: {Name: value}`: names are tokens, values single lines (no header
 * injection), each name once, at most MAX_HEADERS. */
static void apply_headers(struct loader *ld, const struct key_def *key, void *base,
                          const struct node *node, const char *path)
{
    struct config_header_list headers = {0};
    struct origin at = config_origin_at(node->line, node->column);
    char got[ECHO_TEXT], item_path[PATH_TEXT];
    bool map = key->type == KEY_MAP;
    if (node->kind != NODE_MAPPING) {
        config_report(ld, &at, path, "expected a mapping of %s to values, got %s",
                      map ? "names" : "HTTP header names",
                      describe_node(node, !map, got, sizeof got));
        return;
    }
    if (node->count > MAX_HEADERS) {
        config_report(ld, &at, path, "at most %u %s are allowed, got %zu", MAX_HEADERS,
                      map ? "entries" : "headers", node->count);
        return;
    }
    if (node->count == 0)
        return;
    headers.items = calloc(node->count, sizeof *headers.items);
    if (!headers.items) {
        config_out_of_memory(ld);
        return;
    }
    for (size_t i = 0; i < node->count; i++) {
        const struct map_entry *entry = &node->entries[i];
        const struct node *value = entry->value;
        struct origin entry_at = config_origin_at(entry->line, entry->column);
        snprintf(item_path, sizeof item_path, "%s.%s", path, entry->key);
        if (map && (entry->key[0] == '\0' || !is_single_line(entry->key))) {
            config_report(ld, &entry_at, item_path,
                          "expected a non-empty name without control characters");
            continue;
        }
        if (!map && !is_header_name(entry->key)) {
            config_report(ld, &entry_at, item_path,
                          "expected an HTTP header name (letters, digits, -)");
            continue;
        }
        if (value->kind != NODE_SCALAR || !is_single_line(value->text ? value->text : "")) {
            config_report(ld, &entry_at, item_path, "expected a single-line %s",
                          map ? "value" : "header value");
            continue;
        }
        bool duplicate = false;
        for (size_t j = 0; j < headers.count && !duplicate; j++)
            duplicate = map ? strcmp(headers.items[j].name, entry->key) == 0
                            : strcasecmp(headers.items[j].name, entry->key) == 0;
        if (duplicate) {
            config_report(ld, &entry_at, item_path, "%s given twice", map ? "name" : "header");
            continue;
        }
        struct config_header *header = &headers.items[headers.count++];
        header->name = strdup(entry->key);
        header->value = strdup(value->is_null || !value->text ? "" : value->text);
        if (!header->name || !header->value) {
            config_out_of_memory(ld);
            break;
        }
    }
    struct config_header_list *field = (struct config_header_list *)((char *)base + key->offset);
    config_free_headers(field);
    *field = headers;
}

static void apply_node(struct loader *ld, const struct key_table *table, size_t index, void *base,
                       const struct node *node, const char *path, uint64_t *seen,
                       struct key_state *states)
{
    const struct key_def *key = &table->keys[index];
    struct origin at = config_origin_at(node->line, node->column);
    char expected[160], got[ECHO_TEXT];

    /* A null value ("port:" or "port: ~") means "not set": keep the default. */
    if (node->kind == NODE_SCALAR && node->is_null)
        return;
    if (seen && index < 64)
        *seen |= UINT64_C(1) << index;
    if (states)
        states[index].value = at;
    switch (key->type) {
    case KEY_LIST:
    case KEY_SECRET_LIST:
        apply_list(ld, key, base, node, path);
        break;
    case KEY_OBJECTS:
        walk_objects(ld, key, base, node, path, states ? &states[index] : NULL);
        break;
    case KEY_HEADERS:
    case KEY_MAP:
        apply_headers(ld, key, base, node, path);
        break;
    default:
        if (node->kind != NODE_SCALAR) {
            config_report(ld, &at, path, "expected %s, got %s",
                          config_describe_expected(key, expected, sizeof expected),
                          describe_node(node, is_secret(key), got, sizeof got));
            break;
        }
        config_set_scalar(ld, key, base, node->text, &at, path, false);
        break;
    }
}

/*
 * `<key>_file` inside a list item (qlik_cloud.tenants[].api_key_file): the
 * item has no environment layer, so the file is read here at once. Giving
 * both the key and its file is an error, in either order (the seen mask).
 */
static void object_secret_file(struct loader *ld, const struct key_table *table, size_t index,
                               void *base, const struct node *value, const char *shown,
                               uint64_t *seen)
{
    const struct key_def *key = &table->keys[index];
    struct origin at = config_origin_at(value->line, value->column);
    char got[ECHO_TEXT], *text = NULL;
    size_t length = 0;
    int error_number = 0;
    if (value->kind != NODE_SCALAR || value->is_null) {
        config_report(ld, &at, shown, "expected a file path, got %s",
                      describe_node(value, true, got, sizeof got));
        return;
    }
    if (index < 64 && (*seen & (UINT64_C(1) << index))) {
        config_report(ld, &at, shown, "cannot be combined with %s; set only one of them",
                      key->path);
        return;
    }
    config_echo(got, sizeof got, value->text);
    switch (config_read_bounded(value->text, MAX_SECRET_FILE_BYTES, true, &text, &length,
                                &error_number)) {
    case CONFIG_READ_OK:
        break;
    case CONFIG_READ_SYSTEM:
        config_report(ld, &at, shown, "cannot read %s: %s", got, strerror(error_number));
        goto out;
    case CONFIG_READ_TOO_LARGE:
        config_report(ld, &at, shown, "%s is larger than %u bytes", got, MAX_SECRET_FILE_BYTES);
        goto out;
    case CONFIG_READ_NOT_REGULAR:
        config_report(ld, &at, shown, "%s is not a regular file", got);
        goto out;
    case CONFIG_READ_NOMEM:
        config_out_of_memory(ld);
        goto out;
    }
    while (length > 0 && (text[length - 1] == '\n' || text[length - 1] == '\r'))
        length--;
    if (memchr(text, '\0', length) || length == 0) {
        config_report(ld, &at, shown, "%s is empty or contains a NUL byte", got);
        goto out;
    }
    config_replace_string(ld, (char **)((char *)base + key->offset), text, length);
    if (index < 64)
        *seen |= UINT64_C(1) << index;
out:
    if (text)
        memset(text, 0, length); /* do not leave a secret in freed heap */
    free(text);
}

/*
 * Apply one YAML mapping to the struct at `base`. `prefix` is the table path
 * of this mapping ("" or "mqtt.tls"); `display` is what error messages put in
 * front of it ("" or "routes[2]"). `states` is non-NULL only for the top-level
 * table, whose keys have environment and *_file layers.
 *
 * Duplicate detection is quadratic in the mapping size, but only keys that
 * pass the unknown-key test reach it after the first MAX_ERRORS, and the
 * table has fewer than 100 keys, so the work stays bounded.
 */
static void walk_mapping(struct loader *ld, const struct key_table *table, void *base,
                         const struct node *map, const char *prefix, const char *display,
                         uint64_t *seen, struct key_state *states)
{
    char relative[PATH_TEXT], shown[PATH_TEXT], got[ECHO_TEXT], section[PATH_TEXT];

    for (size_t i = 0; i < map->count && !config_stopped(ld); i++) {
        const struct map_entry *entry = &map->entries[i];
        const struct node *value = entry->value;
        struct origin key_at = config_origin_at(entry->line, entry->column);
        bool duplicate = false;
        int index;

        config_join_path(section, sizeof section, display, prefix);
        if (!valid_key_text(entry->key)) {
            config_report(ld, &key_at, section, "unknown key %s",
                          config_echo(got, sizeof got, entry->key));
            continue;
        }
        config_join_path(relative, sizeof relative, prefix, entry->key);
        config_join_path(shown, sizeof shown, display, relative);
        for (size_t j = 0; j < i && !duplicate; j++)
            duplicate = strcmp(map->entries[j].key, entry->key) == 0;
        if (duplicate) {
            config_report(ld, &key_at, shown, "duplicate key");
            continue;
        }

        index = config_find_key(table, relative);
        if (index >= 0 && !states && seen && table->keys[index].has_file && index < 64 &&
            (*seen & (UINT64_C(1) << index))) {
            config_report(ld, &key_at, shown, "cannot be combined with %s_file; set only one",
                          relative);
            continue;
        }
        if (index >= 0) {
            apply_node(ld, table, (size_t)index, base, value, shown, seen, states);
            continue;
        }
        if (is_section(table, relative)) {
            if (value->kind == NODE_MAPPING) {
                walk_mapping(ld, table, base, value, relative, display, seen, states);
            } else if (!(value->kind == NODE_SCALAR && value->is_null)) {
                struct origin at = config_origin_at(value->line, value->column);
                config_report(ld, &at, shown, "expected a mapping, got %s",
                              describe_node(value, true, got, sizeof got));
            }
            continue;
        }
        index = find_file_key(table, relative);
        if (index >= 0 && !states && seen) {
            object_secret_file(ld, table, (size_t)index, base, value, shown, seen);
            continue;
        }
        if (index >= 0 && states) {
            struct key_state *state = &states[index];
            struct origin at = config_origin_at(value->line, value->column);
            if (value->kind != NODE_SCALAR) {
                config_report(ld, &at, shown, "expected a file path, got %s",
                              describe_node(value, true, got, sizeof got));
            } else if (!value->is_null && config_replace_string(ld, &state->file_ref, value->text,
                                                                strlen(value->text))) {
                state->file = at;
            }
            continue;
        }
        config_report(ld, &key_at, shown, "unknown key");
    }
}

static void walk_root(struct loader *ld, const struct node *root, struct butler_config *config)
{
    char got[ECHO_TEXT];
    if (!root || (root->kind == NODE_SCALAR && root->is_null))
        return; /* empty file, comments only, or a bare "---" */
    if (root->kind != NODE_MAPPING) {
        struct origin at = config_origin_at(root->line, root->column);
        config_report(ld, &at, NULL, "expected a mapping of sections at the top level, got %s",
                      describe_node(root, true, got, sizeof got));
        return;
    }
    walk_mapping(ld, &config_key_table, config, root, "", "", NULL, ld->state);
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */
/* ------------------------------------------------------------------------ */

static void loader_free(struct loader *ld)
{
    if (!ld)
        return;
    for (size_t i = 0; ld->state && i < config_key_table.count; i++) {
        free(ld->state[i].file_ref);
        free(ld->state[i].items);
    }
    free(ld->state);
    free(ld);
}

/*
 * All layers, in order, into a private struct that is handed to the caller
 * only on success; on failure everything is freed and *config zeroed.
 */
static enum butler_status load_common(const char *name, const char *source, const char *text,
                                      size_t length, bool use_environment,
                                      struct butler_config *config, FILE *errors)
{
    struct butler_config loaded;
    struct loader *ld = calloc(1, sizeof *ld);
    struct node *root = NULL;
    enum butler_status status = BUTLER_ERR_NOMEM;

    memset(&loaded, 0, sizeof loaded);
    if (!ld)
        goto out;
    ld->name = name;
    ld->errors = errors;
    ld->state = calloc(config_key_table.count, sizeof *ld->state);
    if (!ld->state) {
        config_out_of_memory(ld);
        goto out;
    }
    loaded.source_file = strdup(source);
    if (!loaded.source_file) {
        config_out_of_memory(ld);
        goto out;
    }
    config_apply_defaults(ld, &config_key_table, &loaded);
    if (ld->status != BUTLER_OK)
        goto out;

    if (length > MAX_FILE_BYTES) {
        config_report(ld, NULL, NULL, "larger than %u bytes", MAX_FILE_BYTES);
    } else if (length > 0) {
        root = config_build_tree(ld, text, length);
        walk_root(ld, root, &loaded);
    }
    if (use_environment)
        config_apply_environment(ld, &loaded);
    config_read_secret_files(ld, &loaded);
    if (ld->error_count == 0 && ld->status == BUTLER_OK)
        config_validate(ld, &loaded);

    if (ld->error_count >= MAX_ERRORS && errors)
        fprintf(errors, "%s: too many errors, stopped after %u\n", name, MAX_ERRORS);
    if (ld->status != BUTLER_OK)
        status = ld->status;
    else
        status = ld->error_count > 0 ? BUTLER_ERR_INVALID : BUTLER_OK;
out:
    if (status == BUTLER_ERR_NOMEM && !ld && errors)
        fprintf(errors, "%s: out of memory while loading the configuration\n", name);
    config_node_free(root);
    loader_free(ld);
    if (status == BUTLER_OK) {
        *config = loaded;
    } else {
        config_free(&loaded);
        memset(config, 0, sizeof *config);
    }
    return status;
}

enum butler_status config_load_buffer(const char *name, const char *text, size_t length,
                                      bool use_environment, struct butler_config *config,
                                      FILE *errors)
{
    if (!config)
        return BUTLER_ERR_INVALID;
    if (!text)
        length = 0;
    return load_common(name && *name ? name : "<buffer>", "", text ? text : "", length,
                       use_environment, config, errors);
}

enum butler_status config_load(const char *path, struct butler_config *config, FILE *errors)
{
    enum butler_status status = BUTLER_ERR_IO;
    char *text = NULL;
    size_t length = 0;
    int error_number = 0;

    if (!config)
        return BUTLER_ERR_INVALID;
    memset(config, 0, sizeof *config);
    if (!path || !*path)
        return load_common("<defaults>", "", "", 0, true, config, errors);

    switch (config_read_bounded(path, MAX_FILE_BYTES, false, &text, &length, &error_number)) {
    case CONFIG_READ_OK:
        status = load_common(path, path, text, length, true, config, errors);
        goto out;
    case CONFIG_READ_TOO_LARGE:
        if (errors)
            fprintf(errors, "%s: larger than %u bytes\n", path, MAX_FILE_BYTES);
        status = BUTLER_ERR_INVALID;
        goto out;
    case CONFIG_READ_NOMEM:
        if (errors)
            fprintf(errors, "%s: out of memory while reading\n", path);
        status = BUTLER_ERR_NOMEM;
        goto out;
    case CONFIG_READ_NOT_REGULAR: /* not requested for the main file */
    case CONFIG_READ_SYSTEM:
        if (errors)
            fprintf(errors, "%s: cannot read: %s\n", path, strerror(error_number));
        status = BUTLER_ERR_IO;
        goto out;
    }
out:
    free(text);
    return status;
}

void config_free(struct butler_config *config)
{
    if (!config)
        return;
    config_free_table(&config_key_table, config);
    free(config->source_file);
    memset(config, 0, sizeof *config);
}
