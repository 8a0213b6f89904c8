/* libFuzzer target: the file-operation path checks (contract 8.1).
 *
 * The first byte picks what the rest is:
 *   even: a path through file_path_check (absolute and relative forms),
 *         file_path_normalize and file_path_beneath;
 *   odd:  a command payload for the operation (byte >> 1) & 3 through
 *         file_request_parse and file_request_places against fixed approved
 *         directories.
 * Invariants (abort on violation): a path that passes the text check has no
 * NUL, backslash or control byte and is at most FILE_PATH_MAX bytes; a
 * normalized path is absolute with no empty, "." or ".." component; a path
 * accepted as beneath a root starts with that root at a component boundary;
 * an approved request's paths lie beneath the approved directory picked for
 * them. Nothing here touches the file system. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/clients/file_system.h"
#include "config/config.h"
#include "topics/file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const roots[] = {"/", "/data", "/data/stage", "/data/stage2"};

static void check_normalized(const char *path)
{
    if (path[0] != '/')
        abort();
    if (path[1] == '\0')
        return;
    for (const char *p = path + 1;;) {
        size_t n = strcspn(p, "/");
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            abort();
        if (p[n] == '\0')
            return;
        p += n + 1;
    }
}

static void check_beneath(const char *root, const char *path, const char *rest)
{
    size_t n = strlen(root);
    if (n > 1 && (strncmp(root, path, n) != 0 || (path[n] != '\0' && path[n] != '/')))
        abort();
    if (rest < path || rest > path + strlen(path))
        abort();
}

static void fuzz_path(const char *text, size_t length)
{
    char error[FILE_ERROR_MAX];
    for (int absolute = 0; absolute < 2; absolute++) {
        if (file_path_check(text, length, absolute, error, sizeof error) != BUTLER_OK)
            continue;
        if (length > FILE_PATH_MAX || memchr(text, '\0', length) || memchr(text, '\\', length))
            abort();
        for (size_t i = 0; i < length; i++)
            if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f)
                abort();
        if (!absolute)
            continue;
        static char normalized[FILE_PATH_MAX + 1];
        if (file_path_normalize(text, normalized, sizeof normalized) != BUTLER_OK)
            continue;
        check_normalized(normalized);
        for (size_t r = 0; r < sizeof roots / sizeof roots[0]; r++) {
            const char *rest = NULL;
            if (file_path_beneath(roots[r], normalized, &rest))
                check_beneath(roots[r], normalized, rest);
        }
    }
}

static struct butler_config config;

static void fuzz_request(unsigned selector, const uint8_t *data, size_t size)
{
    static bool loaded;
    if (!loaded) {
        static const char yaml[] = "file:\n"
                                   "  enable: true\n"
                                   "  copy: [{from: /data/stage, to: /data/prod}]\n"
                                   "  move: [{from: /data/prod, to: /data/archive}]\n"
                                   "  delete: [/data/archive]\n"
                                   "  mkdir: [/data/made]\n"
                                   "  qvd_path: /data/qvd\n";
        if (config_load_buffer("fuzz", yaml, strlen(yaml), false, &config, stderr) != BUTLER_OK)
            abort();
        loaded = true;
    }
    struct file_request request;
    static struct file_places places;
    char error[512];
    enum file_operation operation = (enum file_operation)(selector & 3);
    if (file_request_parse(operation, data, size, &request, error, sizeof error) == BUTLER_OK &&
        file_request_places(&config, &request, &places, error, sizeof error) == BUTLER_OK) {
        check_normalized(places.source_path);
        check_beneath(places.source.root, places.source_path, places.source.relative);
        if (operation == FILE_OPERATION_COPY || operation == FILE_OPERATION_MOVE) {
            check_normalized(places.target_path);
            check_beneath(places.target.root, places.target_path, places.target.relative);
        }
        if (strncmp(places.source_path, "/data/", 6) != 0)
            abort(); /* every approved directory is under /data */
    }
    file_request_clear(&request);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if ((data[0] & 1) == 0) {
        char *text = malloc(size); /* exact size: ASan sees any overread */
        if (text == NULL)
            return 0;
        memcpy(text, data + 1, size - 1);
        text[size - 1] = '\0';
        fuzz_path(text, size - 1);
        free(text);
    } else {
        fuzz_request(data[0] >> 1, data + 1, size - 1);
    }
    return 0;
}
