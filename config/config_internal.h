/*
 * Private to config/: the shapes shared by the key table (keys.c), the YAML
 * tree (yaml_tree.c), value conversion (values.c), the loader (load.c), the
 * environment and *_file layers (overrides.c), cross-key validation
 * (validate.c), the printer (print.c) and the reference generator
 * (reference.c). Nothing outside config/ includes this header: the rest of
 * Butler sees struct butler_config and config.h only.
 *
 * Thread context: everything here runs at start-up on the main thread, except
 * printing, which only reads.
 */
#ifndef BUTLER_CONFIG_INTERNAL_H
#define BUTLER_CONFIG_INTERNAL_H

#include "config/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Hard caps. Nothing a legitimate Butler config needs comes near them. */
#define MAX_FILE_BYTES (4u * 1024u * 1024u)
#define MAX_SECRET_FILE_BYTES (64u * 1024u)
#define MAX_SCALAR_BYTES (64u * 1024u)
#define MAX_DEPTH 32u
#define MAX_LIST_ITEMS 10000u
#define MAX_MAP_ENTRIES 1000u
#define MAX_NODES 200000u
#define MAX_ROUTES 1000u
#define MAX_ERRORS 50u
#define MAX_KEY_TEXT 64u  /* a longer key cannot be in the table */
#define PATH_TEXT 256u    /* a displayed key path; longer ones are truncated */
#define ECHO_TEXT 96u     /* how much of a bad value an error message quotes */
#define ENV_NAME_TEXT 80u /* "BUTLER_" + longest path + "_FILE" fits easily */
#define MAX_SEGMENTS 8u   /* dots in a table path, plus one */
#define MAX_HEADERS 32u   /* extra HTTP headers of one route */

/* Enum fields are written through int pointers; that is only sound when the
 * compiler gives the enums int's size (GCC and Clang do for these). */
_Static_assert(sizeof(enum config_log_level) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_log_format) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_metrics_auth) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_route_destination) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_user_flag_rule) == sizeof(int), "enum size");

#define ARRAY_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- The key table (keys.c) ---- */

enum key_type {
    KEY_BOOL,
    KEY_INT,         /* int field, min..max */
    KEY_LONG,        /* long field, min..max */
    KEY_STRING,      /* char * field */
    KEY_SECRET,      /* char * field, never echoed or printed */
    KEY_ENUM,        /* C enum field; value = index in names */
    KEY_WORD,        /* char * field holding the canonical spelling from names */
    KEY_LIST,        /* struct config_string_list */
    KEY_SECRET_LIST, /* struct config_string_list, never echoed or printed */
    KEY_OBJECTS,     /* a list of mappings described by its own table */
    KEY_HEADERS,     /* struct config_header_list from a mapping {Name: value}; values secret */
    KEY_MAP,         /* struct config_header_list from a mapping {name: value}; values printed */
};

struct loader;
struct origin;
struct object_list;

/* Returns NULL when the value is acceptable, else a static "expected ..." text. */
typedef const char *(*value_check)(const char *value);

struct key_def {
    const char *path; /* dotted, relative to the table's struct */
    enum key_type type;
    size_t offset;
    long long min, max;       /* KEY_INT, KEY_LONG */
    const char *def;          /* default as text, parsed like a file value; NULL = "" / empty */
    const char *const *names; /* KEY_ENUM, KEY_WORD: NULL-terminated */
    value_check check;        /* strings and list items */
    bool has_file;            /* secrets: a <path>_file key and BUTLER_<PATH>_FILE exist */
    bool required;            /* keys of an object table only */
    const struct object_list *objects;
    const char *doc; /* one line for the reference (docs/configuration.md); required */
};

struct key_table {
    const struct key_def *keys;
    size_t count;
};

/* How to reach the items of one kind of object list without type punning. */
struct object_list {
    const struct key_table *table;
    size_t item_size;
    size_t max_items;
    void *(*get)(const void *list, size_t *count);
    void (*set)(void *list, void *items, size_t count);
    /* Checks across the keys of one item (and against earlier items). */
    void (*check_item)(struct loader *ld, void *items, size_t index, const char *path,
                       const struct origin *at);
};

/* The top-level table: every key of struct butler_config, in print order. */
extern const struct key_table config_key_table;

/* What a value check accepts, for the reference ("MQTT topic filter");
 * NULL when the check has no description. Static text. */
const char *config_check_text(value_check check);

/* ---- Loader state and error reporting (diagnostics.c) ---- */

/* Where a value came from, for error messages. */
struct origin {
    size_t line; /* 1-based; 0 = not from the file */
    size_t column;
    char env[ENV_NAME_TEXT]; /* non-empty: set by this environment variable */
};

/* Per top-level key: where its value and its *_file path came from, so the
 * environment layer can override the file layer and later errors can point at
 * the right line. */
struct key_state {
    struct origin value;
    char *file_ref; /* owned; the <key>_file path, "" or NULL = none */
    struct origin file;
    struct origin *items; /* owned; KEY_OBJECTS: where each item starts */
    size_t item_count;
};

struct loader {
    const char *name; /* file name used in messages */
    FILE *errors;     /* may be NULL */
    unsigned error_count;
    enum butler_status status; /* non-OK (NOMEM) stops everything */
    struct key_state *state;   /* owned; one per key of config_key_table, same order */
};

bool config_stopped(const struct loader *ld);
struct origin config_origin_at(size_t line, size_t column);
/* One line "WHERE: PATH: message"; counts every error, prints the first MAX_ERRORS. */
__attribute__((format(printf, 4, 5))) void config_report(struct loader *ld, const struct origin *at,
                                                         const char *path, const char *format, ...);
void config_out_of_memory(struct loader *ld);
/* Quote `text` for a message: ASCII-only, escaped, truncated. Returns buffer. */
const char *config_echo(char *buffer, size_t size, const char *text);
void config_join_path(char *out, size_t size, const char *prefix, const char *key);
void config_index_path(char *out, size_t size, const char *path, size_t index);
/* "an integer 1..65535", "one of text|json", ...: returns a static text or buffer. */
const char *config_describe_expected(const struct key_def *key, char *buffer, size_t size);

/* ---- Values (values.c) ---- */

size_t config_utf8_decode(const unsigned char *s, uint32_t *out);
bool config_utf8_valid(const char *text);
bool config_replace_string(struct loader *ld, char **field, const char *text, size_t length);
void config_free_string_list(struct config_string_list *list);
/* Free a route's headers (values wiped first) and leave the list empty. */
void config_free_headers(struct config_header_list *headers);
void config_install_list(struct config_string_list *field, struct config_string_list *list);
bool config_set_scalar(struct loader *ld, const struct key_def *key, void *base, const char *text,
                       const struct origin *at, const char *path, bool is_default);
bool config_check_list_item(struct loader *ld, const struct key_def *key, const char *text,
                            const struct origin *at, const char *path);
void config_set_list_from_text(struct loader *ld, const struct key_def *key, void *base,
                               const char *text, char separator, const struct origin *at);
void config_free_table(const struct key_table *table, void *base);
void config_apply_defaults(struct loader *ld, const struct key_table *table, void *base);

/* ---- YAML tree with positions (yaml_tree.c) ---- */

enum node_kind { NODE_SCALAR, NODE_SEQUENCE, NODE_MAPPING };

struct node;

struct map_entry {
    char *key; /* owned */
    size_t line, column;
    struct node *value; /* owned */
};

struct node {
    enum node_kind kind;
    size_t line, column;       /* 1-based */
    bool is_null;              /* plain "", "~" or "null" */
    char *text;                /* NODE_SCALAR, owned, NUL-free */
    struct node **items;       /* NODE_SEQUENCE, owned */
    struct map_entry *entries; /* NODE_MAPPING, owned */
    size_t count, capacity;
};

/* Parse `text` into a tree. Returns the root (NULL for an empty document or on
 * error; errors are reported and counted in ld). The caller owns the tree and
 * releases it with config_node_free(). */
struct node *config_build_tree(struct loader *ld, const char *text, size_t length);
void config_node_free(struct node *node);

/* ---- Loading (load.c) ---- */

int config_find_key(const struct key_table *table, const char *path);

/* ---- Environment and *_file layers (overrides.c) ---- */

enum config_read_result {
    CONFIG_READ_OK,
    CONFIG_READ_SYSTEM,
    CONFIG_READ_TOO_LARGE,
    CONFIG_READ_NOT_REGULAR,
    CONFIG_READ_NOMEM,
};

enum config_read_result config_read_bounded(const char *path, size_t cap, bool regular_only,
                                            char **text, size_t *length, int *error_number);
void config_apply_environment(struct loader *ld, struct butler_config *config);
void config_read_secret_files(struct loader *ld, struct butler_config *config);

/* ---- The reference (reference.c) ---- */

/* config_reference() for any table (unit tests use small tables of their own).
 * Returns BUTLER_ERR_INVALID, after writing what it could, when a key has no
 * `.doc` or a check has no description. */
enum butler_status config_reference_table(FILE *out, enum config_reference_format format,
                                          const struct key_table *table);

/* ---- Cross-key checks (validate.c) ---- */

/* object_list.check_item for routes: checks within one route and its name
 * against the routes before it. */
void config_check_route(struct loader *ld, void *items, size_t index, const char *path,
                        const struct origin *at);
void config_validate(struct loader *ld, const struct butler_config *c);

#endif
