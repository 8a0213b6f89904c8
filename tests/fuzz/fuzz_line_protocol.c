/* libFuzzer target: input = NUL-separated parts: measurement, then pairs
 * (tag key, tag value) until an empty key, then (field key, value) pairs
 * written with lp_field_auto. The writer must stay within its bound, never
 * crash, and every line it writes must end in one newline outside quotes
 * with quotes balanced (what InfluxDB needs to split the lines). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/clients/line_protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { FUZZ_MAX = 8192 };

/* Read the lines as InfluxDB splits them: measurement and tags up to the
 * first unescaped space, then fields, where a value starting with '"' runs
 * to the next unescaped '"' (newlines included), then the timestamp. Every
 * line must be complete and non-empty. */
static void check_lines(const char *text, size_t length)
{
    enum { TAGS, FIELDS, QUOTED, TIME } section = TAGS;
    size_t line_length = 0;
    for (size_t i = 0; i < length; i++, line_length++) {
        char c = text[i];
        if (c == '\\' && section != TIME && i + 1 < length && text[i + 1] != '\n') {
            i++; /* escaped character */
            continue;
        }
        if (section == QUOTED) {
            if (c == '"')
                section = FIELDS;
            continue;
        }
        if (c == '\n') {
            if (line_length == 0 || section == TAGS)
                abort(); /* an empty line, or a newline leaked from a part */
            section = TAGS;
            line_length = (size_t)-1;
        } else if (c == ' ') {
            section = section == TAGS ? FIELDS : TIME;
        } else if (c == '=' && section == FIELDS && i + 1 < length && text[i + 1] == '"') {
            section = QUOTED;
            i++;
        }
    }
    if (section != TAGS || (length > 0 && text[length - 1] != '\n'))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    const char *end = copy + size;
    const char *p = copy;
    struct line_protocol lp;
    lp_init(&lp, FUZZ_MAX);
    for (int point = 0; point < 4 && p < end; point++) {
        const char *measurement = p;
        p += strlen(p) + 1;
        if (lp_begin(&lp, measurement) != BUTLER_OK)
            continue;
        bool tags = true;
        while (p < end) {
            const char *key = p;
            p += strlen(p) + 1;
            if (key[0] == '\0') {
                if (!tags)
                    break;
                tags = false;
                continue;
            }
            const char *value = p < end ? p : "";
            p += p < end ? strlen(p) + 1 : 0;
            if (tags)
                lp_tag(&lp, key, value);
            else
                lp_field_auto(&lp, key, value);
        }
        (void)lp_end(&lp, point);
    }
    if (lp.used > FUZZ_MAX || (lp.data && strlen(lp.data) != lp.used))
        abort();
    if (lp.data)
        check_lines(lp.data, lp.used);
    lp_free(&lp);
    free(copy);
    return 0;
}
