/*
 * Who is on Sense now (contract 9.5): the active users as the proxy's session
 * and connection events describe them, kept by topics/users.c. Pure data
 * structure: no I/O, no locks, no globals; the caller serialises access.
 *
 * A user ("DIR\user") is active from a session start until its stop, or
 * until `idle_ms` pass without any of its events. At most `max_users` are
 * kept: a start beyond that evicts the least recently active user.
 *
 * Memory is compact so that 100,000 users fit in a few MB: one 20-byte slot
 * per user (no per-user allocation), names packed in one arena (compacted
 * when half of it is garbage), and an open-addressing index of 32-bit slot
 * numbers. Hosts are interned in a table of USERS_HOSTS_MAX names.
 */
#ifndef BUTLER_TOPICS_USERS_STATE_H
#define BUTLER_TOPICS_USERS_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/core/status.h"

enum {
    USERS_NAME_MAX = 1024, /* bytes of "DIR\user"; longer names are cut */
    USERS_HOSTS_MAX = 256, /* distinct proxy hosts counted in perHost */
};

struct users_state;

/* A new, empty state for up to `max_users` (>= 1). Free with users_state_free. */
enum butler_status users_state_create(size_t max_users, struct users_state **out);
void users_state_free(struct users_state *state);

/* Outcome of one change. */
struct users_change {
    bool changed; /* the summary (users or perHost) differs */
    bool evicted; /* a start pushed out the least recently active user */
};

/*
 * A session start: the user becomes active (or stays active, seen now, on
 * `host`). BUTLER_ERR_NOMEM leaves the state as it was.
 */
enum butler_status users_state_start(struct users_state *state, const char *directory,
                                     const char *user, const char *host, uint64_t now_ms,
                                     struct users_change *change);
/* Any other activity of an active user (connections): seen now, on `host`.
 * A user not active is left alone. */
void users_state_touch(struct users_state *state, const char *directory, const char *user,
                       const char *host, uint64_t now_ms, struct users_change *change);
/* A session stop: the user is no longer active. */
void users_state_stop(struct users_state *state, const char *directory, const char *user,
                      struct users_change *change);
/* Drop users idle for longer than `idle_ms` at `now_ms` (whole seconds: a user
 * goes between idle_ms and idle_ms + 1 s after its last event); returns how many. */
size_t users_state_expire(struct users_state *state, uint64_t now_ms, uint64_t idle_ms);

size_t users_state_count(const struct users_state *state);

/*
 * The summary {"count", "users": ["DIR\\user", ...] (least recently active
 * first), "perHost": {"<host>": n}, "at"} as one NUL-terminated string owned
 * by the caller, released with users_state_summary_free(); `at` is `wall_ms`
 * in ISO 8601. NULL when out of memory. A large summary (100,000 users make
 * about 2 MB) is mapped with mmap() of its own, so that releasing it returns
 * the pages at once instead of leaving them in a malloc arena or raising
 * malloc's mmap threshold for everyone.
 */
char *users_state_summary(const struct users_state *state, uint64_t wall_ms, size_t *length);
void users_state_summary_free(char *summary);

/*
 * Rebuild from a summary (the retained message after a restart): each user
 * listed and not already active becomes active, seen at `now_ms`, and is
 * given a host by handing out the perHost counts in order (the summary does
 * not say which user is on which host). Users past max_users are ignored.
 * BUTLER_ERR_INVALID when `json` is not a summary; *added says how many were added.
 */
enum butler_status users_state_load(struct users_state *state, const char *json, size_t length,
                                    uint64_t now_ms, size_t *added);

#endif
