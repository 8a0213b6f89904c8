/*
 * The configuration reference, generated from the key table (keys.c), so the
 * documentation cannot drift from what the loader accepts: docs/configuration.md
 * is this file's markdown output, and a ctest fails when the committed page
 * and the binary disagree.
 *
 * One walk over the table turns every key into a row (path, type, range,
 * default, description, notes); a writer per output format turns rows into
 * text. A new format is one more writer (four small functions) and one more
 * entry in `writers` below.
 *
 * Thread context: any; reads only static tables.
 */
#include "config/config_internal.h"

#include <string.h>

#define TYPE_TEXT 48u
#define RANGE_TEXT 256u
#define DEFAULT_TEXT 128u

/* One key as the reference shows it. Texts are plain; writers escape. */
struct reference_row {
    char path[PATH_TEXT]; /* "mqtt.port", "routes[].name" */
    char type[TYPE_TEXT];
    char range[RANGE_TEXT];          /* "" = anything of that type */
    char default_text[DEFAULT_TEXT]; /* shown as code; "" shown as "" */
    bool default_is_empty;
    bool required;
    const char *doc;
    const char *secret_file; /* non-NULL: "<path>_file" may hold the secret */
    bool secret;
};

struct reference_writer {
    const char *name;
    void (*begin)(FILE *out);
    void (*section)(FILE *out, const char *name, size_t length);
    void (*row)(FILE *out, const struct reference_row *row);
    void (*end)(FILE *out);
};

/* ---- Rows from the table ---- */

static void fill_type(struct reference_row *row, const struct key_def *key)
{
    static const char *const type_names[] = {
        [KEY_BOOL] = "boolean",
        [KEY_INT] = "integer",
        [KEY_LONG] = "integer",
        [KEY_STRING] = "string",
        [KEY_SECRET] = "string",
        [KEY_ENUM] = "string",
        [KEY_WORD] = "string",
        [KEY_LIST] = "list of strings",
        [KEY_SECRET_LIST] = "list of strings",
        [KEY_OBJECTS] = "list of mappings",
        [KEY_HEADERS] = "mapping of header names to values",
        [KEY_MAP] = "mapping of names to values",
    };
    snprintf(row->type, sizeof row->type, "%s", type_names[key->type]);
    row->secret =
        key->type == KEY_SECRET || key->type == KEY_SECRET_LIST || key->type == KEY_HEADERS;
}

/* Returns false when a check has no description in keys.c. */
static bool fill_range(struct reference_row *row, const struct key_def *key)
{
    size_t used = 0;
    row->range[0] = '\0';
    switch (key->type) {
    case KEY_INT:
    case KEY_LONG:
        snprintf(row->range, sizeof row->range, "%lld..%lld", key->min, key->max);
        return true;
    case KEY_ENUM:
    case KEY_WORD:
        for (size_t i = 0; key->names[i] && used < sizeof row->range; i++)
            used += (size_t)snprintf(row->range + used, sizeof row->range - used, "%s%s",
                                     i ? " | " : "", key->names[i]);
        return true;
    case KEY_OBJECTS:
        snprintf(row->range, sizeof row->range, "at most %zu items", key->objects->max_items);
        return true;
    case KEY_HEADERS:
        snprintf(row->range, sizeof row->range, "at most %u headers", MAX_HEADERS);
        return true;
    case KEY_MAP:
        snprintf(row->range, sizeof row->range, "at most %u entries", MAX_HEADERS);
        return true;
    case KEY_STRING:
    case KEY_SECRET:
    case KEY_LIST:
    case KEY_SECRET_LIST:
        if (!key->check)
            return true;
        if (!config_check_text(key->check))
            return false;
        snprintf(row->range, sizeof row->range, "%s%s",
                 key->type == KEY_LIST || key->type == KEY_SECRET_LIST ? "each: " : "",
                 config_check_text(key->check));
        return true;
    case KEY_BOOL:
        return true;
    }
    return true;
}

static void fill_default(struct reference_row *row, const struct key_def *key)
{
    const char *text = "";
    switch (key->type) {
    case KEY_LIST:
    case KEY_SECRET_LIST:
    case KEY_OBJECTS:
        text = "[]";
        break;
    case KEY_HEADERS:
    case KEY_MAP:
        text = "{}";
        break;
    case KEY_SECRET:
        break;
    case KEY_BOOL:
    case KEY_INT:
    case KEY_LONG:
    case KEY_ENUM:
    case KEY_WORD:
    case KEY_STRING:
        text = key->def ? key->def : "";
        break;
    }
    snprintf(row->default_text, sizeof row->default_text, "%s", text);
    row->default_is_empty = text[0] == '\0';
}

/* Returns false (after reporting on stderr) when the key cannot be documented. */
static bool make_row(struct reference_row *row, const struct key_def *key, const char *prefix,
                     char *file_path, size_t file_path_size)
{
    memset(row, 0, sizeof *row);
    snprintf(row->path, sizeof row->path, "%s%s", prefix, key->path);
    fill_type(row, key);
    fill_default(row, key);
    row->required = key->required;
    row->doc = key->doc;
    if (key->has_file) {
        snprintf(file_path, file_path_size, "%s_file", row->path);
        row->secret_file = file_path;
    }
    if (!key->doc || !key->doc[0]) {
        fprintf(stderr, "config reference: key %s has no .doc in config/keys.c\n", row->path);
        return false;
    }
    if (!fill_range(row, key)) {
        fprintf(stderr, "config reference: the check of key %s has no text in check_texts\n",
                row->path);
        return false;
    }
    return true;
}

/* The top-level section of a path: "mqtt" for "mqtt.tls.ca_file", the whole
 * path for a key with no dot ("shutdown_grace_s", "routes"). */
static size_t section_length(const char *path)
{
    const char *dot = strchr(path, '.');
    return dot ? (size_t)(dot - path) : strlen(path);
}

static enum butler_status write_table(FILE *out, const struct reference_writer *writer,
                                      const struct key_table *table)
{
    enum butler_status status = BUTLER_OK;
    const char *open_section = NULL;
    size_t open_length = 0;
    char file_path[PATH_TEXT];
    char prefix[PATH_TEXT];
    struct reference_row row;

    writer->begin(out);
    for (size_t k = 0; k < table->count; k++) {
        const struct key_def *key = &table->keys[k];
        size_t length = section_length(key->path);
        if (!open_section || length != open_length ||
            memcmp(open_section, key->path, length) != 0) {
            writer->section(out, key->path, length);
            open_section = key->path;
            open_length = length;
        }
        if (!make_row(&row, key, "", file_path, sizeof file_path)) {
            status = BUTLER_ERR_INVALID;
            continue;
        }
        writer->row(out, &row);
        if (key->type != KEY_OBJECTS)
            continue;
        /* The keys of one item: routes[].name, ... (object tables are flat). */
        snprintf(prefix, sizeof prefix, "%s[].", key->path);
        for (size_t i = 0; i < key->objects->table->count; i++) {
            if (!make_row(&row, &key->objects->table->keys[i], prefix, file_path,
                          sizeof file_path)) {
                status = BUTLER_ERR_INVALID;
                continue;
            }
            writer->row(out, &row);
        }
    }
    writer->end(out);
    return status;
}

/* ---- Markdown: docs/configuration.md ---- */

/* A word that contains "://" (a URL or a bare scheme): its length without
 * trailing punctuation, else 0. */
static size_t url_word_length(const char *word)
{
    size_t length = strcspn(word, " \n");
    const char *scheme = strstr(word, "://");
    if (!scheme || (size_t)(scheme - word) >= length)
        return 0;
    while (length > 0 && strchr(").,;", word[length - 1]))
        length--;
    return length;
}

/* Table cells: a '|' would end the cell, a newline the row, and "<group>"
 * would be read as an HTML tag. URLs go in code spans so no renderer turns
 * them into links (the docs link check, scripts/check-docs.py, requires it). */
static void markdown_cell(FILE *out, const char *text)
{
    for (const char *p = text; *p; p++) {
        size_t url = p == text || p[-1] == ' ' || p[-1] == '(' ? url_word_length(p) : 0;
        if (url > 0) {
            fprintf(out, "`%.*s`", (int)url, p);
            p += url - 1;
        } else if (*p == '|') {
            fputs("\\|", out);
        } else if (*p == '<') {
            fputs("&lt;", out);
        } else if (*p == '>') {
            fputs("&gt;", out);
        } else if (*p == '\n') {
            fputc(' ', out);
        } else {
            fputc(*p, out);
        }
    }
}

static void markdown_begin(FILE *out)
{
    fputs("<!-- Generated by `butler --config-reference markdown` from the key table in\n"
          "     config/keys.c. Edit the table, not this file (see the end of the page). -->\n"
          "# Configuration reference\n"
          "\n"
          "Butler reads one YAML file, given with `--config FILE`. Every key is optional:\n"
          "a key left out keeps the default below, and so does a key given as `null` or\n"
          "left empty. Unknown keys, wrong types and values out of range are errors,\n"
          "reported as `FILE:LINE:COLUMN: key.path: message`, all of them in one run.\n"
          "\n"
          "Values are applied in layers, each overriding the one before:\n"
          "\n"
          "1. the defaults in the tables below;\n"
          "2. the YAML file;\n"
          "3. the environment: `BUTLER_` followed by the key path in upper case with dots\n"
          "   as underscores (`mqtt.tls.ca_file` is `BUTLER_MQTT_TLS_CA_FILE`); lists are\n"
          "   comma-separated; lists of mappings (`routes`, "
          "`task_start.allow.custom_properties`)\n"
          "   cannot be set this way;\n"
          "4. secrets read from files: a secret key `x` may instead be given as `x_file`\n"
          "   (in the YAML file or as `BUTLER_X_FILE`), the path of a file holding it;\n"
          "   giving both `x` and `x_file` in one layer is an error.\n"
          "\n"
          "Secrets are never logged or printed: `butler --check-config FILE` validates a\n"
          "file and prints the effective configuration with each secret shown as `\"***\"`\n"
          "when set. Durations end in `_ms` (milliseconds) or `_s` (seconds).\n",
          out);
}

static void markdown_section(FILE *out, const char *name, size_t length)
{
    fprintf(out,
            "\n## `%.*s`\n\n"
            "| Key | Type | Range | Default | Description |\n"
            "|---|---|---|---|---|\n",
            (int)length, name);
}

static void markdown_row(FILE *out, const struct reference_row *row)
{
    fprintf(out, "| `%s` | ", row->path);
    markdown_cell(out, row->type);
    fputs(row->secret ? ", secret | " : " | ", out);
    markdown_cell(out, row->range);
    fputs(" | ", out);
    if (row->required)
        fputs("required", out);
    else if (row->default_is_empty)
        fputs("`\"\"`", out);
    else
        fprintf(out, "`%s`", row->default_text);
    fputs(" | ", out);
    markdown_cell(out, row->doc);
    if (row->secret_file)
        fprintf(out, " Also as `%s`.", row->secret_file);
    fputs(" |\n", out);
}

static void markdown_end(FILE *out)
{
    fputs("\n## Keeping this page current\n"
          "\n"
          "This page is the output of `butler --config-reference markdown`. After changing\n"
          "the key table, regenerate it with `cmake --build build --target config-reference`\n"
          "(or `build/butler --config-reference markdown > docs/configuration.md`). The test\n"
          "`docs/configuration_reference` fails while the page and the binary disagree.\n"
          "`butler --config-reference man` prints the same reference as the man page\n"
          "butler.yaml(5).\n",
          out);
}

/* ---- man(7): butler.yaml(5) ---- */

/* Roff text: a backslash starts an escape; a line starting with '.' or '\''
 * would be a request. Every call starts a fresh line. */
static void roff_text(FILE *out, const char *text)
{
    if (text[0] == '.' || text[0] == '\'')
        fputs("\\&", out);
    for (const char *p = text; *p; p++) {
        if (*p == '\\')
            fputs("\\e", out);
        else if (*p == '-')
            fputs("\\-", out);
        else if (*p == '\n')
            fputc(' ', out);
        else
            fputc(*p, out);
    }
}

static void man_begin(FILE *out)
{
    fputs(".TH BUTLER.YAML 5 \"\" \"butler " BUTLER_VERSION "\" \"File Formats\"\n"
          ".SH NAME\n"
          "butler.yaml \\- configuration file of the butler daemon\n"
          ".SH DESCRIPTION\n"
          "butler reads one YAML file, given with \\fB\\-\\-config\\fR \\fIFILE\\fR.\n"
          "Every key is optional; a key left out keeps its default.\n"
          "Unknown keys, wrong types and values out of range are errors.\n"
          ".PP\n"
          "Layers, each overriding the one before: the defaults below, the file,\n"
          "the environment (\\fBBUTLER_\\fR and the key path in upper case with dots as\n"
          "underscores; lists comma\\-separated), and secrets read from files\n"
          "(a secret key \\fIx\\fR may be given as \\fIx\\fR_file instead).\n"
          ".PP\n"
          "\\fBbutler \\-\\-check\\-config\\fR \\fIFILE\\fR validates a file and prints the\n"
          "effective configuration with secrets masked.\n"
          ".SH KEYS\n",
          out);
}

static void man_section(FILE *out, const char *name, size_t length)
{
    fprintf(out, ".SS %.*s\n", (int)length, name);
}

static void man_row(FILE *out, const struct reference_row *row)
{
    fputs(".TP\n.B ", out);
    roff_text(out, row->path);
    fputc('\n', out);
    roff_text(out, row->type);
    if (row->secret)
        fputs(", secret", out);
    if (row->range[0]) {
        fputs(" (", out);
        roff_text(out, row->range);
        fputc(')', out);
    }
    if (row->required) {
        fputs("; required.\n", out);
    } else {
        fputs("; default ", out);
        roff_text(out, row->default_is_empty ? "\"\"" : row->default_text);
        fputs(".\n", out);
    }
    roff_text(out, row->doc);
    if (row->secret_file) {
        fputs(" Also as ", out);
        roff_text(out, row->secret_file);
        fputc('.', out);
    }
    fputc('\n', out);
}

static void man_end(FILE *out)
{
    fputs(".SH SEE ALSO\n"
          "docs/configuration.md in the butler sources holds the same reference.\n",
          out);
}

/* ---- Text: the key list of `butler --help` ---- */

static void text_begin(FILE *out)
{
    fputs("Configuration keys (butler --config-reference markdown|man for descriptions):\n", out);
}

static void text_section(FILE *out, const char *name, size_t length)
{
    (void)out;
    (void)name;
    (void)length;
}

static void text_row(FILE *out, const struct reference_row *row)
{
    fprintf(out, "  %-40s %s%s", row->path, row->type, row->secret ? ", secret" : "");
    if (row->range[0])
        fprintf(out, " (%s)", row->range);
    if (row->required)
        fputs(", required", out);
    else
        fprintf(out, " = %s", row->default_is_empty ? "\"\"" : row->default_text);
    fputc('\n', out);
}

static void text_end(FILE *out)
{
    (void)out;
}

static const struct reference_writer writers[] = {
    [CONFIG_REFERENCE_MARKDOWN] = {"markdown", markdown_begin, markdown_section, markdown_row,
                                   markdown_end},
    [CONFIG_REFERENCE_MAN] = {"man", man_begin, man_section, man_row, man_end},
    [CONFIG_REFERENCE_TEXT] = {"text", text_begin, text_section, text_row, text_end},
};

bool config_reference_format_from_name(const char *name, enum config_reference_format *format)
{
    for (size_t i = 0; name && i < ARRAY_COUNT(writers); i++) {
        if (strcmp(writers[i].name, name) == 0) {
            *format = (enum config_reference_format)i;
            return true;
        }
    }
    return false;
}

enum butler_status config_reference_table(FILE *out, enum config_reference_format format,
                                          const struct key_table *table)
{
    if (!out || !table || (size_t)format >= ARRAY_COUNT(writers))
        return BUTLER_ERR_INVALID;
    return write_table(out, &writers[format], table);
}

enum butler_status config_reference(FILE *out, enum config_reference_format format)
{
    return config_reference_table(out, format, &config_key_table);
}
