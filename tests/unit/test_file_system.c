/*
 * Unit tests: the path checks of bridge/clients/file_system.c and
 * topics/file.c, and the operations on a scratch tree, with openat2 and with
 * the component walk used on kernels without it.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bridge/clients/file_system.h"
#include "config/config.h"
#include "tests/unit/unit.h"
#include "topics/file.h"

static char scratch[256];

static enum butler_status check(const char *path)
{
    char error[FILE_ERROR_MAX];
    return file_path_check(path, strlen(path), true, error, sizeof error);
}

static void test_path_text(void)
{
    char error[FILE_ERROR_MAX];
    UNIT_CHECK(check("/data/stage/a.qvd") == BUTLER_OK);
    UNIT_CHECK(check("/data/stage/with space/ä.qvd") == BUTLER_OK);
    UNIT_CHECK(check("") == BUTLER_ERR_INVALID);
    UNIT_CHECK(check("relative/a.qvd") == BUTLER_ERR_INVALID);
    UNIT_CHECK(check("\\\\server\\share\\a.qvd") == BUTLER_ERR_INVALID);
    UNIT_CHECK(file_path_check("\\\\server\\share", 14, true, error, sizeof error) ==
               BUTLER_ERR_INVALID);
    UNIT_CHECK(strstr(error, "UNC") != NULL);
    UNIT_CHECK(check("//server/share/a.qvd") == BUTLER_ERR_INVALID);
    UNIT_CHECK(file_path_check("C:\\data\\a.qvd", 13, true, error, sizeof error) ==
               BUTLER_ERR_INVALID);
    UNIT_CHECK(strstr(error, "Windows drive") != NULL);
    UNIT_CHECK(check("c:/data/a.qvd") == BUTLER_ERR_INVALID);
    UNIT_CHECK(check("/data/a\\b.qvd") == BUTLER_ERR_INVALID);
    UNIT_CHECK(check("/data/a\nb.qvd") == BUTLER_ERR_INVALID);
    UNIT_CHECK(check("/data/a\x7f.qvd") == BUTLER_ERR_INVALID);
    UNIT_CHECK(file_path_check("/data/a\0/../../etc/passwd", 24, true, error, sizeof error) ==
               BUTLER_ERR_INVALID);
    UNIT_CHECK(strstr(error, "NUL") != NULL);
    /* "///a" is three slashes, not UNC; still absolute. */
    UNIT_CHECK(check("///data/a") == BUTLER_OK);
    char long_path[FILE_PATH_MAX + 8];
    memset(long_path, 'a', sizeof long_path - 1);
    long_path[0] = '/';
    for (size_t i = 200; i < sizeof long_path - 1; i += 200)
        long_path[i] = '/';
    long_path[sizeof long_path - 1] = '\0';
    UNIT_CHECK(check(long_path) == BUTLER_ERR_INVALID);
    char long_name[300];
    memset(long_name, 'b', sizeof long_name - 1);
    long_name[0] = '/';
    long_name[sizeof long_name - 1] = '\0';
    UNIT_CHECK(file_path_check(long_name, strlen(long_name), true, error, sizeof error) ==
               BUTLER_ERR_INVALID);
    UNIT_CHECK(strstr(error, "component") != NULL);
    /* Relative form (createdirqvd). */
    UNIT_CHECK(file_path_check("sales/2026", 10, false, error, sizeof error) == BUTLER_OK);
}

static void test_normalize_and_beneath(void)
{
    char out[FILE_PATH_MAX + 1];
    const char *rest = NULL;
    UNIT_CHECK(file_path_normalize("/data//stage/./a/../b.qvd", out, sizeof out) == BUTLER_OK);
    UNIT_CHECK_STR(out, "/data/stage/b.qvd");
    UNIT_CHECK(file_path_normalize("/data/stage/", out, sizeof out) == BUTLER_OK);
    UNIT_CHECK_STR(out, "/data/stage");
    UNIT_CHECK(file_path_normalize("/", out, sizeof out) == BUTLER_OK);
    UNIT_CHECK_STR(out, "/");
    UNIT_CHECK(file_path_normalize("/a/..", out, sizeof out) == BUTLER_OK);
    UNIT_CHECK_STR(out, "/");
    UNIT_CHECK(file_path_normalize("/..", out, sizeof out) == BUTLER_ERR_DENIED);
    UNIT_CHECK(file_path_normalize("/a/../../etc", out, sizeof out) == BUTLER_ERR_DENIED);
    UNIT_CHECK(file_path_normalize("/abcdef", out, 4) == BUTLER_ERR_TOO_LARGE);
    UNIT_CHECK(file_path_normalize("rel", out, sizeof out) == BUTLER_ERR_INVALID);

    UNIT_CHECK(file_path_beneath("/data/stage", "/data/stage/a.qvd", &rest));
    UNIT_CHECK_STR(rest, "a.qvd");
    UNIT_CHECK(file_path_beneath("/data/stage", "/data/stage", &rest));
    UNIT_CHECK_STR(rest, "");
    UNIT_CHECK(!file_path_beneath("/data/stage", "/data/stage2/a.qvd", &rest));
    UNIT_CHECK(!file_path_beneath("/data/stage", "/data/a.qvd", &rest));
    UNIT_CHECK(file_path_beneath("/", "/etc/x", &rest));
    UNIT_CHECK_STR(rest, "etc/x");
}

static struct butler_config config;

static void load_config(void)
{
    static const char yaml[] = "file:\n"
                               "  enable: true\n"
                               "  copy: [{from: /data/stage, to: /data/prod}]\n"
                               "  move: [{from: /data/prod/, to: /data/archive}]\n"
                               "  delete: [/data/archive]\n"
                               "  mkdir: [/data]\n"
                               "  qvd_path: /data/qvd\n";
    UNIT_CHECK(config_load_buffer("test", yaml, strlen(yaml), false, &config, stderr) == BUTLER_OK);
}

static enum butler_status places_of(enum file_operation operation, const char *payload,
                                    struct file_places *places)
{
    struct file_request request;
    char error[512];
    enum butler_status status = file_request_parse(operation, (const unsigned char *)payload,
                                                   strlen(payload), &request, error, sizeof error);
    if (status == BUTLER_OK)
        status = file_request_places(&config, &request, places, error, sizeof error);
    file_request_clear(&request);
    return status;
}

static void test_request_places(void)
{
    static struct file_places places;
    load_config();
    UNIT_CHECK(places_of(FILE_OPERATION_COPY,
                         "{\"fromFile\":\"/data/stage/a.qvd\",\"toFile\":\"/data/prod/x/a.qvd\"}",
                         &places) == BUTLER_OK);
    UNIT_CHECK_STR(places.source.root, "/data/stage");
    UNIT_CHECK_STR(places.source.relative, "a.qvd");
    UNIT_CHECK_STR(places.target.relative, "x/a.qvd");
    /* The pair is directional: prod -> stage is not approved for copy. */
    UNIT_CHECK(places_of(FILE_OPERATION_COPY,
                         "{\"fromFile\":\"/data/prod/a.qvd\",\"toFile\":\"/data/stage/a.qvd\"}",
                         &places) == BUTLER_ERR_DENIED);
    UNIT_CHECK(places_of(FILE_OPERATION_COPY,
                         "{\"fromFile\":\"/data/stage/../../etc/passwd\",\"toFile\":\"/data/"
                         "prod/p\"}",
                         &places) == BUTLER_ERR_DENIED);
    UNIT_CHECK(places_of(FILE_OPERATION_COPY,
                         "{\"fromFile\":\"/data/stage2/a\",\"toFile\":\"/data/prod/a\"}",
                         &places) == BUTLER_ERR_DENIED);
    UNIT_CHECK(places_of(FILE_OPERATION_COPY,
                         "{\"fromFile\":\"/data/stage/a\",\"toFile\":\"/data/prod/../stage/a\"}",
                         &places) == BUTLER_ERR_DENIED);
    UNIT_CHECK(places_of(FILE_OPERATION_COPY,
                         "{\"fromFile\":\"\\\\\\\\srv\\\\share\\\\a\",\"toFile\":\"/data/prod/a\"}",
                         &places) == BUTLER_ERR_INVALID);
    UNIT_CHECK(places_of(FILE_OPERATION_COPY,
                         "{\"fromFile\":\"/data/stage/a\\u0000/../../../etc/passwd\","
                         "\"toFile\":\"/data/prod/a\"}",
                         &places) == BUTLER_ERR_INVALID);
    UNIT_CHECK(places_of(FILE_OPERATION_COPY, "{\"toFile\":\"/data/prod/a\"}", &places) ==
               BUTLER_ERR_INVALID);
    UNIT_CHECK(places_of(FILE_OPERATION_COPY,
                         "{\"fromFile\":\"/data/stage/a\",\"toFile\":\"/data/prod/a\","
                         "\"overwrite\":\"yes\"}",
                         &places) == BUTLER_ERR_INVALID);
    /* Move: the configured "from" had a trailing slash. */
    UNIT_CHECK(places_of(FILE_OPERATION_MOVE,
                         "{\"fromFile\":\"/data/prod/a\",\"toFile\":\"/data/archive/a\","
                         "\"overwrite\":\"true\"}",
                         &places) == BUTLER_OK);
    UNIT_CHECK(places_of(FILE_OPERATION_DELETE, "{\"deleteFile\":\"/data/archive/old/a.qvd\"}",
                         &places) == BUTLER_OK);
    UNIT_CHECK(places_of(FILE_OPERATION_DELETE, "{\"deleteFile\":\"/data/prod/a.qvd\"}", &places) ==
               BUTLER_ERR_DENIED);
    UNIT_CHECK(places_of(FILE_OPERATION_MKDIR, "{\"directory\":\"/data/new/dir\"}", &places) ==
               BUTLER_OK);
    UNIT_CHECK(places_of(FILE_OPERATION_MKDIR, "{\"directory\":\"/tmp/new\"}", &places) ==
               BUTLER_ERR_DENIED);
    UNIT_CHECK(places_of(FILE_OPERATION_MKDIR, "{\"directory\":\"sales/2026\",\"qvd\":true}",
                         &places) == BUTLER_OK);
    UNIT_CHECK_STR(places.source.root, "/data/qvd");
    UNIT_CHECK_STR(places.source.relative, "sales/2026");
    UNIT_CHECK(places_of(FILE_OPERATION_MKDIR, "{\"directory\":\"../escape\",\"qvd\":true}",
                         &places) == BUTLER_ERR_DENIED);
    UNIT_CHECK(places_of(FILE_OPERATION_MKDIR, "{\"directory\":\"C:\\\\qvd\",\"qvd\":true}",
                         &places) == BUTLER_ERR_INVALID);
    config_free(&config);
}

/* ---- operations on a scratch tree ---- */

static void path_of(char *out, size_t size, const char *relative)
{
    snprintf(out, size, "%s/%s", scratch, relative);
}

static void write_file(const char *relative, const char *text)
{
    char path[512];
    path_of(path, sizeof path, relative);
    FILE *f = fopen(path, "w");
    UNIT_CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static bool exists(const char *relative)
{
    char path[512];
    struct stat st;
    path_of(path, sizeof path, relative);
    return lstat(path, &st) == 0;
}

static bool content_is(const char *relative, const char *text)
{
    char path[512], buffer[256] = "";
    path_of(path, sizeof path, relative);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(buffer, 1, sizeof buffer - 1, f);
    buffer[n] = '\0';
    fclose(f);
    return strcmp(buffer, text) == 0;
}

static void make_tree(void)
{
    snprintf(scratch, sizeof scratch, "/tmp/butler-unit-file-XXXXXX");
    UNIT_CHECK(mkdtemp(scratch) != NULL);
    const char *dirs[] = {"stage", "prod", "outside", "stage/sub"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char path[512];
        path_of(path, sizeof path, dirs[i]);
        UNIT_CHECK(mkdir(path, 0755) == 0);
    }
    write_file("stage/a.qvd", "alpha");
    write_file("outside/secret", "secret");
    char link[512], target[512];
    path_of(link, sizeof link, "stage/out");
    path_of(target, sizeof target, "outside");
    UNIT_CHECK(symlink(target, link) == 0); /* directory symlink leading out */
    path_of(link, sizeof link, "stage/secret.qvd");
    path_of(target, sizeof target, "outside/secret");
    UNIT_CHECK(symlink(target, link) == 0); /* file symlink leading out */
    path_of(link, sizeof link, "stage/inside.qvd");
    UNIT_CHECK(symlink("a.qvd", link) == 0); /* symlink staying inside */
    path_of(link, sizeof link, "prod/out");
    path_of(target, sizeof target, "outside");
    UNIT_CHECK(symlink(target, link) == 0);
}

static void remove_tree(void)
{
    char command[600];
    snprintf(command, sizeof command, "rm -rf '%s'", scratch);
    UNIT_CHECK(system(command) == 0);
}

static size_t count_entries(const char *relative)
{
    char path[512];
    path_of(path, sizeof path, relative);
    DIR *directory = opendir(path);
    size_t count = 0;
    if (directory == NULL)
        return 0;
    while (readdir(directory) != NULL)
        count++;
    closedir(directory);
    return count - 2;
}

static void run_operations(bool walk)
{
    file_system_force_walk(walk);
    make_tree();
    char stage[300], prod[300], error[FILE_ERROR_MAX];
    path_of(stage, sizeof stage, "stage");
    path_of(prod, sizeof prod, "prod");
    struct file_copy_options options = {.temp_token = "t1"};
    struct file_place source = {stage, "a.qvd"}, target = {prod, "new/deep/a.qvd"};

    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_OK);
    UNIT_CHECK(content_is("prod/new/deep/a.qvd", "alpha"));
    /* Exists, no overwrite: refused and untouched. */
    write_file("prod/new/deep/a.qvd", "keep");
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_ERR_INVALID);
    UNIT_CHECK(strstr(error, "overwrite") != NULL);
    UNIT_CHECK(content_is("prod/new/deep/a.qvd", "keep"));
    options.overwrite = true;
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_OK);
    UNIT_CHECK(content_is("prod/new/deep/a.qvd", "alpha"));
    UNIT_CHECK(count_entries("prod/new/deep") == 1); /* no temporary file left */

    /* A source symlink leading out is refused; one staying inside is
     * followed with openat2 and refused by the walk (it follows none). */
    source.relative = "secret.qvd";
    target.relative = "secret.qvd";
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_ERR_DENIED);
    UNIT_CHECK(!exists("prod/secret.qvd"));
    source.relative = "out/secret";
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_ERR_DENIED);
    source.relative = "inside.qvd";
    target.relative = "inside.qvd";
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) ==
               (walk ? BUTLER_ERR_DENIED : BUTLER_OK));
    /* A target directory symlink leading out: nothing is written outside. */
    source.relative = "a.qvd";
    target.relative = "out/planted.qvd";
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_ERR_DENIED);
    target.relative = "out/newdir/planted.qvd";
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_ERR_DENIED);
    UNIT_CHECK(count_entries("outside") == 1);
    /* Missing source, directory source. */
    source.relative = "missing.qvd";
    target.relative = "m.qvd";
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_ERR_NOT_FOUND);
    source.relative = "sub";
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_ERR_INVALID);
    source.relative = "";
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_ERR_INVALID);

    /* Stale temporaries of the same token are removed on a replay. */
    write_file("prod/" FILE_TEMP_PREFIX "t1-0000000000000001.tmp", "half");
    write_file("prod/" FILE_TEMP_PREFIX "t2-0000000000000001.tmp", "other request");
    source.relative = "a.qvd";
    target.relative = "b.qvd";
    file_remove_temporaries(&target, "t1");
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_OK);
    UNIT_CHECK(!exists("prod/" FILE_TEMP_PREFIX "t1-0000000000000001.tmp"));
    UNIT_CHECK(exists("prod/" FILE_TEMP_PREFIX "t2-0000000000000001.tmp"));

    /* Move, no overwrite onto an existing file, then delete. */
    struct file_place move_source = {prod, "b.qvd"}, move_target = {prod, "archive/b.qvd"};
    const struct file_copy_options keep = {.temp_token = "m"};
    UNIT_CHECK(file_move(&move_source, &move_target, &keep, error, sizeof error) == BUTLER_OK);
    UNIT_CHECK(!exists("prod/b.qvd") && content_is("prod/archive/b.qvd", "alpha"));
    UNIT_CHECK(file_move(&move_source, &move_target, &keep, error, sizeof error) ==
               BUTLER_ERR_NOT_FOUND);
    write_file("prod/c.qvd", "gamma");
    move_source.relative = "c.qvd";
    UNIT_CHECK(file_move(&move_source, &move_target, &keep, error, sizeof error) ==
               BUTLER_ERR_INVALID);
    UNIT_CHECK(content_is("prod/archive/b.qvd", "alpha") && content_is("prod/c.qvd", "gamma"));
    move_target.relative = "out/c.qvd";
    UNIT_CHECK(file_move(&move_source, &move_target, &options, error, sizeof error) ==
               BUTLER_ERR_DENIED);
    UNIT_CHECK(exists("prod/c.qvd") && count_entries("outside") == 1);

    struct file_place doomed = {prod, "archive/b.qvd"};
    UNIT_CHECK(file_delete(&doomed, error, sizeof error) == BUTLER_OK);
    UNIT_CHECK(!exists("prod/archive/b.qvd"));
    UNIT_CHECK(file_delete(&doomed, error, sizeof error) == BUTLER_ERR_NOT_FOUND);
    doomed.relative = "archive";
    UNIT_CHECK(file_delete(&doomed, error, sizeof error) == BUTLER_ERR_INVALID);
    doomed.relative = "out/secret";
    UNIT_CHECK(file_delete(&doomed, error, sizeof error) == BUTLER_ERR_DENIED);
    UNIT_CHECK(exists("outside/secret"));
    doomed.relative = "out"; /* the symlink itself may go: nothing outside changes */
    UNIT_CHECK(file_delete(&doomed, error, sizeof error) == BUTLER_OK);
    UNIT_CHECK(exists("outside/secret"));

    struct file_place directory = {stage, "x/y/z"};
    UNIT_CHECK(file_mkdir(&directory, error, sizeof error) == BUTLER_OK);
    UNIT_CHECK(exists("stage/x/y/z"));
    UNIT_CHECK(file_mkdir(&directory, error, sizeof error) == BUTLER_OK);
    directory.relative = "out/made";
    UNIT_CHECK(file_mkdir(&directory, error, sizeof error) == BUTLER_ERR_DENIED);
    UNIT_CHECK(!exists("outside/made"));
    directory.relative = "a.qvd/sub";
    UNIT_CHECK(file_mkdir(&directory, error, sizeof error) == BUTLER_ERR_INVALID);
    remove_tree();
    file_system_force_walk(false);
}

static void test_operations_openat2(void)
{
    run_operations(false);
}

static void test_operations_walk(void)
{
    run_operations(true);
}

static void test_sparse_and_timestamp(void)
{
    make_tree();
    char stage[300], prod[300], path[512], error[FILE_ERROR_MAX];
    path_of(stage, sizeof stage, "stage");
    path_of(prod, sizeof prod, "prod");
    path_of(path, sizeof path, "stage/sparse.qvd");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    UNIT_CHECK(fd >= 0);
    UNIT_CHECK(ftruncate(fd, 64L << 20) == 0);
    UNIT_CHECK(pwrite(fd, "middle", 6, 32L << 20) == 6);
    struct timespec times[2] = {{1600000000, 0}, {1600000000, 123456789}};
    UNIT_CHECK(futimens(fd, times) == 0);
    close(fd);
    struct file_copy_options options = {.preserve_timestamp = true, .temp_token = "s"};
    struct file_place source = {stage, "sparse.qvd"}, target = {prod, "sparse.qvd"};
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_OK);
    struct stat copied;
    path_of(path, sizeof path, "prod/sparse.qvd");
    UNIT_CHECK(stat(path, &copied) == 0);
    UNIT_CHECK(copied.st_size == 64L << 20);
    UNIT_CHECK(copied.st_mtim.tv_sec == 1600000000 && copied.st_mtim.tv_nsec == 123456789);
    UNIT_CHECK((copied.st_mode & 0777) == 0640);
    UNIT_CHECK(copied.st_blocks * 512L < (8L << 20)); /* holes stayed holes */
    char middle[7] = "";
    fd = open(path, O_RDONLY);
    UNIT_CHECK(pread(fd, middle, 6, 32L << 20) == 6 && strcmp(middle, "middle") == 0);
    close(fd);
    remove_tree();
}

static void make_directory(const char *relative)
{
    char path[512];
    path_of(path, sizeof path, relative);
    UNIT_CHECK(mkdir(path, 0755) == 0);
}

static void make_link(const char *relative, const char *to)
{
    char path[512];
    path_of(path, sizeof path, relative);
    UNIT_CHECK(symlink(to, path) == 0);
}

/* Issue 23: a directory is copied recursively beneath the approved pairs, every entry
 * checked as a single file is, bounded in entries and bytes, nothing written when refused. */
static void run_directory_copy(bool walk)
{
    file_system_force_walk(walk);
    make_tree();
    char stage[300], prod[300], outside[300], error[FILE_ERROR_MAX];
    path_of(stage, sizeof stage, "stage");
    path_of(prod, sizeof prod, "prod");
    path_of(outside, sizeof outside, "outside/secret");
    make_directory("stage/tree");
    make_directory("stage/tree/sub");
    make_directory("stage/tree/sub/deeper");
    write_file("stage/tree/a.txt", "A");
    write_file("stage/tree/sub/b.txt", "B");
    write_file("stage/tree/sub/deeper/c.txt", "C");
    write_file("stage/tree/" FILE_TEMP_PREFIX "zz-1.tmp", "another copy's half file");
    struct file_copy_options options = {.temp_token = "d1", .max_entries = 100, .max_bytes = 1000};
    struct file_place source = {stage, "tree"}, target = {prod, "copied"};

    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_OK);
    UNIT_CHECK(content_is("prod/copied/a.txt", "A") && content_is("prod/copied/sub/b.txt", "B"));
    UNIT_CHECK(content_is("prod/copied/sub/deeper/c.txt", "C"));
    UNIT_CHECK(count_entries("prod/copied") == 2); /* a.txt, sub: no temporary copied */
    UNIT_CHECK(count_entries("prod/copied/sub") == 2);

    /* Directories off (max_entries 0): refused as before. */
    struct file_copy_options off = {.temp_token = "d0"};
    target.relative = "off";
    UNIT_CHECK(file_copy(&source, &target, &off, error, sizeof error) == BUTLER_ERR_INVALID);
    UNIT_CHECK(!exists("prod/off"));

    /* Bounds: five entries, three bytes. Refused before anything is written. */
    options.max_entries = 4;
    target.relative = "bounded";
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_ERR_TOO_LARGE);
    UNIT_CHECK(strstr(error, "file.copy_max_entries") != NULL && !exists("prod/bounded"));
    options.max_entries = 5;
    options.max_bytes = 2;
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_ERR_TOO_LARGE);
    UNIT_CHECK(strstr(error, "file.copy_max_bytes") != NULL && !exists("prod/bounded"));
    options.max_bytes = 3;
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_OK);

    /* Onto the earlier copy: without overwrite refused and untouched; a replay keeps what
     * is there and fills in what is missing (and removes its own stale temporaries). */
    write_file("prod/copied/a.txt", "kept");
    target.relative = "copied";
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_ERR_INVALID);
    UNIT_CHECK(strstr(error, "overwrite") != NULL && content_is("prod/copied/a.txt", "kept"));
    char path[512];
    path_of(path, sizeof path, "prod/copied/sub/b.txt");
    UNIT_CHECK(unlink(path) == 0);
    write_file("prod/copied/sub/" FILE_TEMP_PREFIX "d1-0000000000000001.tmp", "half");
    options.keep_existing = true;
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_OK);
    UNIT_CHECK(content_is("prod/copied/a.txt", "kept") && content_is("prod/copied/sub/b.txt", "B"));
    UNIT_CHECK(!exists("prod/copied/sub/" FILE_TEMP_PREFIX "d1-0000000000000001.tmp"));
    options.keep_existing = false;
    options.overwrite = true;
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_OK);
    UNIT_CHECK(content_is("prod/copied/a.txt", "A"));

    /* A symlink in the tree leading out: the whole copy is refused, nothing written. */
    make_directory("stage/leaky");
    write_file("stage/leaky/ok.txt", "ok");
    make_link("stage/leaky/leak.txt", outside);
    source.relative = "leaky";
    target.relative = "leaky";
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_ERR_DENIED);
    UNIT_CHECK(strstr(error, "leak.txt") != NULL && !exists("prod/leaky"));
    /* A symlink to a directory (here a loop) is never followed. */
    make_directory("stage/loop");
    make_link("stage/loop/again", ".");
    source.relative = "loop";
    target.relative = "loop";
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) != BUTLER_OK);
    UNIT_CHECK(!exists("prod/loop"));
    /* A symlink to a file inside the root: followed with openat2, refused by the walk. */
    make_directory("stage/linked");
    make_link("stage/linked/alias.txt", "../tree/a.txt");
    source.relative = "linked";
    target.relative = "linked";
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) ==
               (walk ? BUTLER_ERR_DENIED : BUTLER_OK));
    UNIT_CHECK(walk || content_is("prod/linked/alias.txt", "A"));
    /* A FIFO is not a file. */
    make_directory("stage/odd");
    path_of(path, sizeof path, "stage/odd/pipe");
    UNIT_CHECK(mkfifo(path, 0600) == 0);
    source.relative = "odd";
    target.relative = "odd";
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_ERR_INVALID);
    UNIT_CHECK(!exists("prod/odd"));
    /* The target inside the source, and the target through a symlink leading out. */
    struct file_place into_itself = {stage, "tree/inner"};
    source.relative = "tree";
    UNIT_CHECK(file_copy(&source, &into_itself, &options, error, sizeof error) ==
               BUTLER_ERR_INVALID);
    UNIT_CHECK(!exists("stage/tree/inner"));
    target.relative = "out/planted";
    UNIT_CHECK(file_copy(&source, &target, &options, error, sizeof error) == BUTLER_ERR_DENIED);
    UNIT_CHECK(count_entries("outside") == 1);
    remove_tree();
    file_system_force_walk(false);
}

static void test_directory_copy_openat2(void)
{
    run_directory_copy(false);
}

static void test_directory_copy_walk(void)
{
    run_directory_copy(true);
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_path_text),
    UNIT_TEST(test_normalize_and_beneath),
    UNIT_TEST(test_request_places),
    UNIT_TEST(test_operations_openat2),
    UNIT_TEST(test_operations_walk),
    UNIT_TEST(test_sparse_and_timestamp),
    UNIT_TEST(test_directory_copy_openat2),
    UNIT_TEST(test_directory_copy_walk),
    {0},
};
