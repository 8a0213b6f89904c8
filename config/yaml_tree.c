/*
 * YAML -> a small tree that keeps line/column marks, read with libyaml's event
 * API. Bounded on every axis (depth, node count, scalar length, list and
 * mapping size) and refusing aliases, so a hostile file costs bounded time and
 * memory.
 *
 * Thread context: start-up only.
 */
#include "config/config_internal.h"

#include <stdlib.h>
#include <string.h>

#include <yaml.h>

/* Recursion is bounded by MAX_DEPTH, enforced while building. */
void config_node_free(struct node *node)
{
    if (!node)
        return;
    for (size_t i = 0; i < node->count; i++) {
        if (node->kind == NODE_SEQUENCE) {
            config_node_free(node->items[i]);
        } else if (node->kind == NODE_MAPPING) {
            free(node->entries[i].key);
            config_node_free(node->entries[i].value);
        }
    }
    free(node->items);
    free(node->entries);
    free(node->text);
    free(node);
}

struct frame {
    struct node *node; /* borrowed: owned by the tree */
    char *key;         /* mapping: a key waiting for its value, owned */
    size_t key_line, key_column;
};

struct builder {
    struct loader *ld;
    struct node *root;
    struct frame stack[MAX_DEPTH];
    size_t depth;
    size_t nodes;
    unsigned documents;
};

static struct origin origin_of_mark(yaml_mark_t mark)
{
    return config_origin_at(mark.line + 1, mark.column + 1);
}

static struct node *new_node(struct builder *b, enum node_kind kind, yaml_mark_t mark)
{
    struct node *node;
    if (++b->nodes > MAX_NODES) {
        struct origin at = origin_of_mark(mark);
        config_report(b->ld, &at, NULL, "document too large (more than %u nodes)", MAX_NODES);
        return NULL;
    }
    node = calloc(1, sizeof *node);
    if (!node) {
        config_out_of_memory(b->ld);
        return NULL;
    }
    node->kind = kind;
    node->line = mark.line + 1;
    node->column = mark.column + 1;
    return node;
}

/* Hang `node` under the innermost open collection (or make it the root).
 * Always takes ownership of `node`: on failure it is freed. */
static bool attach(struct builder *b, struct node *node)
{
    struct frame *top;
    struct origin at = config_origin_at(node->line, node->column);

    if (b->depth == 0) {
        config_node_free(b->root); /* unreachable: a second document is refused earlier */
        b->root = node;
        return true;
    }
    top = &b->stack[b->depth - 1];
    if (top->node->kind == NODE_SEQUENCE) {
        if (top->node->count >= MAX_LIST_ITEMS) {
            config_report(b->ld, &at, NULL, "list longer than %u items", MAX_LIST_ITEMS);
            goto fail;
        }
        if (top->node->count == top->node->capacity) {
            size_t capacity = top->node->capacity ? top->node->capacity * 2 : 8;
            struct node **items = realloc(top->node->items, capacity * sizeof *items);
            if (!items) {
                config_out_of_memory(b->ld);
                goto fail;
            }
            top->node->items = items;
            top->node->capacity = capacity;
        }
        top->node->items[top->node->count++] = node;
        return true;
    }
    if (!top->key) {
        if (node->kind != NODE_SCALAR) {
            config_report(b->ld, &at, NULL, "mapping keys must be plain strings");
            goto fail;
        }
        top->key = node->text;
        top->key_line = node->line;
        top->key_column = node->column;
        node->text = NULL;
        config_node_free(node);
        return true;
    }
    if (top->node->count >= MAX_MAP_ENTRIES) {
        config_report(b->ld, &at, NULL, "mapping with more than %u keys", MAX_MAP_ENTRIES);
        goto fail;
    }
    if (top->node->count == top->node->capacity) {
        size_t capacity = top->node->capacity ? top->node->capacity * 2 : 8;
        struct map_entry *entries = realloc(top->node->entries, capacity * sizeof *entries);
        if (!entries) {
            config_out_of_memory(b->ld);
            goto fail;
        }
        top->node->entries = entries;
        top->node->capacity = capacity;
    }
    top->node->entries[top->node->count++] = (struct map_entry){
        .key = top->key, .line = top->key_line, .column = top->key_column, .value = node};
    top->key = NULL;
    return true;
fail:
    config_node_free(node);
    return false;
}

static bool is_null_word(const char *text)
{
    return !*text || strcmp(text, "~") == 0 || strcmp(text, "null") == 0 ||
           strcmp(text, "Null") == 0 || strcmp(text, "NULL") == 0;
}

static bool handle_scalar(struct builder *b, const yaml_event_t *event)
{
    const char *value = (const char *)event->data.scalar.value;
    size_t length = event->data.scalar.length;
    struct origin at = origin_of_mark(event->start_mark);
    struct node *node;

    if (length > MAX_SCALAR_BYTES) {
        config_report(b->ld, &at, NULL, "value longer than %u bytes", MAX_SCALAR_BYTES);
        return false;
    }
    /* "\0" in a double-quoted scalar would silently cut keys and values short. */
    if (memchr(value, '\0', length)) {
        config_report(b->ld, &at, NULL, "NUL character in a value");
        return false;
    }
    node = new_node(b, NODE_SCALAR, event->start_mark);
    if (!node)
        return false;
    node->text = malloc(length + 1);
    if (!node->text) {
        config_out_of_memory(b->ld);
        config_node_free(node);
        return false;
    }
    memcpy(node->text, value, length);
    node->text[length] = '\0';
    node->is_null = event->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && is_null_word(node->text);
    return attach(b, node);
}

static bool handle_event(struct builder *b, const yaml_event_t *event)
{
    struct origin at = origin_of_mark(event->start_mark);
    struct node *node;

    switch (event->type) {
    case YAML_NO_EVENT:
    case YAML_STREAM_START_EVENT:
    case YAML_STREAM_END_EVENT:
    case YAML_DOCUMENT_END_EVENT:
        return true;
    case YAML_DOCUMENT_START_EVENT:
        if (++b->documents > 1) {
            config_report(b->ld, &at, NULL, "only one YAML document is allowed");
            return false;
        }
        return true;
    case YAML_ALIAS_EVENT:
        /* Aliases make "billion laughs" expansion possible; no key needs them. */
        config_report(b->ld, &at, NULL, "YAML aliases (*name) are not supported");
        return false;
    case YAML_SCALAR_EVENT:
        return handle_scalar(b, event);
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        if (b->depth >= MAX_DEPTH) {
            config_report(b->ld, &at, NULL, "nested deeper than %u levels", MAX_DEPTH);
            return false;
        }
        node = new_node(b, event->type == YAML_SEQUENCE_START_EVENT ? NODE_SEQUENCE : NODE_MAPPING,
                        event->start_mark);
        if (!node || !attach(b, node))
            return false;
        b->stack[b->depth++] = (struct frame){.node = node};
        return true;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        if (b->depth > 0) {
            b->depth--;
            free(b->stack[b->depth].key); /* cannot be set: libyaml pairs keys */
            b->stack[b->depth].key = NULL;
        }
        return true;
    }
    return true;
}

static void report_yaml_error(struct loader *ld, const yaml_parser_t *parser, const char *text,
                              size_t length)
{
    struct origin at;
    const char *problem = parser->problem ? parser->problem : "syntax error";

    if (parser->error == YAML_MEMORY_ERROR) {
        config_out_of_memory(ld);
        return;
    }
    if (parser->error == YAML_READER_ERROR) {
        /* Reader errors carry a byte offset, not a mark. */
        size_t offset = parser->problem_offset < length ? parser->problem_offset : length;
        size_t line = 1, line_start = 0;
        for (size_t i = 0; i < offset; i++) {
            if (text[i] == '\n') {
                line++;
                line_start = i + 1;
            }
        }
        at = config_origin_at(line, offset - line_start + 1);
        config_report(ld, &at, NULL, "invalid input: %s", problem);
        return;
    }
    at = origin_of_mark(parser->problem_mark);
    if (parser->context)
        config_report(ld, &at, NULL, "invalid YAML: %s (%s started at line %zu, column %zu)",
                      problem, parser->context, parser->context_mark.line + 1,
                      parser->context_mark.column + 1);
    else
        config_report(ld, &at, NULL, "invalid YAML: %s", problem);
}

/*
 * Parse `text` into a tree. Returns the root (NULL for an empty document or on
 * error; errors are reported and counted in ld). The caller owns the tree.
 */
struct node *config_build_tree(struct loader *ld, const char *text, size_t length)
{
    yaml_parser_t parser;
    yaml_event_t event;
    struct builder b = {.ld = ld};
    bool ok = false;

    if (!yaml_parser_initialize(&parser)) {
        config_out_of_memory(ld);
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, length);
    for (;;) {
        if (!yaml_parser_parse(&parser, &event)) {
            report_yaml_error(ld, &parser, text, length);
            goto out;
        }
        bool done = event.type == YAML_STREAM_END_EVENT;
        bool handled = handle_event(&b, &event);
        yaml_event_delete(&event);
        if (!handled)
            goto out;
        if (done)
            break;
    }
    ok = true;
out:
    yaml_parser_delete(&parser);
    for (size_t i = 0; i < b.depth; i++)
        free(b.stack[i].key);
    if (!ok) {
        config_node_free(b.root);
        b.root = NULL;
    }
    return b.root;
}
