/* Monotonic and wall clocks in milliseconds; never fail. */
#ifndef BUTLER_CLOCK_H
#define BUTLER_CLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

uint64_t clock_monotonic_ms(void);
uint64_t clock_wall_ms(void);
/* ISO-8601 UTC with milliseconds, e.g. 2026-03-14T01:16:07.482Z, into out (>= 25 bytes). */
void clock_format_iso8601(uint64_t wall_ms, char *out, size_t out_size);
/* Parse "YYYY-MM-DDTHH:MM:SS[.fff]Z" (UTC; QRS and Butler's own stamps) into
 * *wall_ms. False for anything else; never touches time zone state. */
bool clock_parse_iso8601(const char *text, uint64_t *wall_ms);

/* Absolute time `ms` from now on `clock_id` (CLOCK_REALTIME for a default
 * pthread_cond_timedwait), for timed waits. */
void clock_deadline_after(clockid_t clock_id, uint64_t ms, struct timespec *deadline);

/* Sleep up to `ms`; returns early only on a signal. */
void clock_sleep_ms(uint64_t ms);

#endif
