/*
 * The layers above the YAML file: BUTLER_<PATH> environment overrides and
 * secrets read from *_file paths, plus the bounded file reader both the main
 * file and secret files go through.
 *
 * Thread context: start-up only, on the main thread (getenv, strerror).
 */
#include "config/config_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* "mqtt.tls.ca_file" -> "BUTLER_MQTT_TLS_CA_FILE" (+ suffix). */
static bool env_name(const char *path, const char *suffix, char *out, size_t size)
{
    int length = snprintf(out, size, "BUTLER_%s%s", path, suffix);
    if (length < 0 || (size_t)length >= size)
        return false;
    for (char *p = out; *p; p++) {
        if (*p == '.')
            *p = '_';
        else if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    }
    return true;
}

static bool secret_is_set(const struct key_def *key, const void *base)
{
    const void *field = (const char *)base + key->offset;
    if (key->type == KEY_SECRET_LIST)
        return ((const struct config_string_list *)field)->count > 0;
    return (*(char *const *)field)[0] != '\0';
}

static void clear_secret(struct loader *ld, const struct key_def *key, void *base)
{
    void *field = (char *)base + key->offset;
    if (key->type == KEY_SECRET_LIST)
        config_free_string_list(field);
    else
        config_replace_string(ld, (char **)field, "", 0);
}

/*
 * BUTLER_<PATH> overrides the file for every key except lists of mappings;
 * string lists are comma-separated. For secrets, the environment layer wins
 * over the file layer as a whole: BUTLER_X drops a file's x_file and
 * BUTLER_X_FILE drops a file's inline x. Both forms in one layer is an error
 * (reported by read_secret_files).
 */
void config_apply_environment(struct loader *ld, struct butler_config *config)
{
    for (size_t i = 0; i < config_key_table.count && !config_stopped(ld); i++) {
        const struct key_def *key = &config_key_table.keys[i];
        struct key_state *state = &ld->state[i];
        struct origin at = {0};
        const char *value;

        if (key->type == KEY_OBJECTS || key->type == KEY_HEADERS || key->type == KEY_MAP ||
            !env_name(key->path, "", at.env, sizeof at.env))
            continue;
        value = getenv(at.env);
        if (value) {
            if (strlen(value) > MAX_SCALAR_BYTES)
                config_report(ld, &at, key->path, "value longer than %u bytes", MAX_SCALAR_BYTES);
            else if (!config_utf8_valid(value))
                config_report(ld, &at, key->path, "value is not valid UTF-8");
            else if (key->type == KEY_LIST || key->type == KEY_SECRET_LIST)
                config_set_list_from_text(ld, key, config, value, ',', &at);
            else
                config_set_scalar(ld, key, config, value, &at, key->path, false);
            state->value = at;
            if (key->has_file && state->file_ref && !state->file.env[0]) {
                free(state->file_ref);
                state->file_ref = NULL;
            }
        }
        if (!key->has_file || !env_name(key->path, "_FILE", at.env, sizeof at.env))
            continue;
        value = getenv(at.env);
        if (!value)
            continue;
        if (state->value.line > 0)
            clear_secret(ld, key, config);
        if (config_replace_string(ld, &state->file_ref, value, strlen(value)))
            state->file = at;
    }
}

/*
 * Read a whole file, at most `cap` bytes, into a NUL-terminated heap buffer
 * (*text, owned by the caller on CONFIG_READ_OK). A regular file's size is checked
 * before reading. `regular_only` also opens non-blocking, so a FIFO or
 * device named by a hostile config can never block start-up.
 */
enum config_read_result config_read_bounded(const char *path, size_t cap, bool regular_only,
                                            char **text, size_t *length, int *error_number)
{
    enum config_read_result result = CONFIG_READ_SYSTEM;
    struct stat info;
    char *buffer = NULL;
    size_t used = 0, capacity;
    int fd;

    *text = NULL;
    *length = 0;
    *error_number = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | (regular_only ? O_NONBLOCK : 0));
    if (fd < 0) {
        *error_number = errno;
        goto out;
    }
    if (fstat(fd, &info) != 0) {
        *error_number = errno;
        goto out;
    }
    if (S_ISDIR(info.st_mode)) {
        *error_number = EISDIR;
        goto out;
    }
    if (regular_only && !S_ISREG(info.st_mode)) {
        result = CONFIG_READ_NOT_REGULAR;
        goto out;
    }
    if (S_ISREG(info.st_mode) && (uintmax_t)info.st_size > cap) {
        result = CONFIG_READ_TOO_LARGE;
        goto out;
    }
    capacity = S_ISREG(info.st_mode) ? (size_t)info.st_size + 1 : 4096;
    for (;;) {
        if (used + 1 >= capacity) {
            /* Grown only for files that change under us or are not regular. */
            size_t bigger = capacity * 2 > cap + 2 ? cap + 2 : capacity * 2;
            char *grown;
            if (used > cap) {
                result = CONFIG_READ_TOO_LARGE;
                goto out;
            }
            grown = realloc(buffer, bigger);
            if (!grown) {
                result = CONFIG_READ_NOMEM;
                goto out;
            }
            buffer = grown;
            capacity = bigger;
        } else if (!buffer) {
            buffer = malloc(capacity);
            if (!buffer) {
                result = CONFIG_READ_NOMEM;
                goto out;
            }
        }
        ssize_t got = read(fd, buffer + used, capacity - used - 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            *error_number = errno;
            goto out;
        }
        if (got == 0)
            break;
        used += (size_t)got;
    }
    if (used > cap) {
        result = CONFIG_READ_TOO_LARGE;
        goto out;
    }
    if (!buffer) {
        buffer = malloc(1);
        if (!buffer) {
            result = CONFIG_READ_NOMEM;
            goto out;
        }
    }
    buffer[used] = '\0';
    *text = buffer;
    *length = used;
    buffer = NULL;
    result = CONFIG_READ_OK;
out:
    free(buffer);
    if (fd >= 0)
        close(fd);
    return result;
}

static void read_secret_file(struct loader *ld, const struct key_def *key, struct key_state *state,
                             struct butler_config *config)
{
    char path[PATH_TEXT], name[ECHO_TEXT];
    char *text = NULL;
    size_t length = 0;
    int error_number = 0;

    snprintf(path, sizeof path, "%s_file", key->path);
    if (secret_is_set(key, config)) {
        config_report(ld, &state->file, path, "cannot be combined with %s; set only one of them",
                      key->path);
        goto out;
    }
    config_echo(name, sizeof name, state->file_ref);
    switch (config_read_bounded(state->file_ref, MAX_SECRET_FILE_BYTES, true, &text, &length,
                                &error_number)) {
    case CONFIG_READ_OK:
        break;
    case CONFIG_READ_SYSTEM:
        config_report(ld, &state->file, path, "cannot read %s: %s", name, strerror(error_number));
        goto out;
    case CONFIG_READ_TOO_LARGE:
        config_report(ld, &state->file, path, "%s is larger than %u bytes", name,
                      MAX_SECRET_FILE_BYTES);
        goto out;
    case CONFIG_READ_NOT_REGULAR:
        config_report(ld, &state->file, path, "%s is not a regular file", name);
        goto out;
    case CONFIG_READ_NOMEM:
        config_out_of_memory(ld);
        goto out;
    }
    if (memchr(text, '\0', length)) {
        config_report(ld, &state->file, path, "%s contains a NUL byte", name);
        goto out;
    }
    if (key->type == KEY_SECRET_LIST) {
        config_set_list_from_text(ld, key, config, text, '\n', &state->file);
    } else {
        while (length > 0 && (text[length - 1] == '\n' || text[length - 1] == '\r'))
            length--;
        config_replace_string(ld, (char **)((char *)config + key->offset), text, length);
    }
out:
    if (text)
        memset(text, 0, length); /* do not leave a secret in freed heap */
    free(text);
}

void config_read_secret_files(struct loader *ld, struct butler_config *config)
{
    for (size_t i = 0; i < config_key_table.count && !config_stopped(ld); i++) {
        struct key_state *state = &ld->state[i];
        if (config_key_table.keys[i].has_file && state->file_ref && state->file_ref[0])
            read_secret_file(ld, &config_key_table.keys[i], state, config);
    }
}
