/* libFuzzer target: input = cron expression '\0' POSIX TZ rule. Parsing must
 * never crash; a parsed expression's next firing must lie after the start. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "topics/cron.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct cron_zone zone; /* ~20 KB: not on the stack */
    char *copy = malloc(size + 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    size_t expression_length = strlen(copy);
    const char *rule = expression_length < size ? copy + expression_length + 1 : "";
    memset(&zone, 0, sizeof zone);
    zone.has_rule = cron_tz_rule_parse(rule, &zone.rule) == BUTLER_OK;
    struct cron_expr expr;
    char error[160];
    if (cron_parse(copy, &expr, error, sizeof error) == BUTLER_OK) {
        const int64_t start = 1700000000;
        int64_t next = 0;
        if (cron_next(&expr, &zone, start, &next) == BUTLER_OK && next <= start)
            abort();
        size_t count = 0;
        int64_t times[4];
        cron_firings_between(&expr, &zone, start, start + 86400, times, 4, 100, &count);
    } else if (error[0] == '\0') {
        abort(); /* every refusal says why */
    }
    free(copy);
    return 0;
}
