/*
 * The requestId window of a family whose requests have an effect (task
 * starts, file commands): a requestId seen within the window is not run
 * again. A repeat gets the earlier answer, read back from the spool's DONE
 * record when the request was spooled (the window keeps only "#<spool id>",
 * so memory per remembered request stays small), or nothing while the first
 * copy is still running (its own answer is on the way).
 *
 * At recovery the family holds the requestIds of its replayed requests
 * (request_window_hold_replay), so only the replay runs them, and is handed
 * the answers of its DONE records (request_window_recovered_answer), so a
 * redelivered request finished before the restart gets its answer again.
 *
 * Thread-safe: the expiring map locks; recovery calls come from the main
 * thread at start-up, the others from worker threads.
 */
#ifndef BUTLER_TOPICS_REQUEST_WINDOW_H
#define BUTLER_TOPICS_REQUEST_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/status.h"
#include "topics/message.h"

struct request_window;

/* A window named `name` (metrics, logs; static string) of at most
 * `max_requests` requestIds for `ttl_s` seconds. *out is owned by the caller
 * (request_window_destroy). */
enum butler_status request_window_create(const char *name, size_t max_requests, int ttl_s,
                                         struct request_window **out);
void request_window_destroy(struct request_window *window);

/* Recovery: hold `request_id` for the replay of spooled work `spool_id`.
 * True when held now; false when already held (an earlier copy, a recovered
 * answer) or out of memory. */
bool request_window_hold_replay(struct request_window *window, const char *request_id,
                                uint64_t spool_id);

/* Recovery: the answer `answer` (JSON with a "requestId" member, `length`
 * bytes, not owned) of spooled work `spool_id`, answered at
 * `answered_wall_ms`: remembered for the rest of its window. */
void request_window_recovered_answer(struct request_window *window, const char *answer,
                                     size_t length, uint64_t answered_wall_ms, uint64_t spool_id);

/* Claim `request_id` for `message` before running it. False: claimed (also
 * for the replay that held it at recovery): run it. True: a repeat, not to be
 * run; *earlier_out is the earlier answer (malloc'd, the caller frees it) or
 * NULL while the first copy runs. */
bool request_window_repeat(struct request_window *window, const char *request_id,
                           const struct topic_message *message, char **earlier_out);

/* `request_id` was answered with `answer` (not owned) for spooled work
 * `spool_id` (0: not spooled; the answer itself is kept when small). True
 * when an older requestId was forgotten early to make room (the caller
 * counts it under its own metric). */
bool request_window_answered(struct request_window *window, const char *request_id,
                             uint64_t spool_id, const char *answer);

#endif
