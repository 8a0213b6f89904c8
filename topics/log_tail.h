/*
 * The tail of a reload's script log for an event (contract 3.2 scriptLogTail):
 * the last `max_lines` lines, at most `max_bytes`, CR removed, cut on a
 * UTF-8 character boundary, and bytes that are not UTF-8 (a log written in
 * a legacy code page) decoded as U+FFFD, so the event and every body built
 * from it hold valid UTF-8. Pure, any thread.
 */
#ifndef BUTLER_TOPICS_LOG_TAIL_H
#define BUTLER_TOPICS_LOG_TAIL_H

#include <stdbool.h>
#include <stddef.h>

/*
 * `text[0..length)` is the end of a log (the whole log, or its last bytes
 * when `head_cut`: then a first partial line is not counted as a line).
 * Returns a NUL-terminated malloc'd string (caller frees), NULL when out of
 * memory. At most max_bytes of the input are used, so the result is at most
 * 3 * max_bytes (every byte invalid, each a U+FFFD) plus the NUL.
 */
char *log_tail(const char *text, size_t length, bool head_cut, int max_lines, size_t max_bytes);

#endif
