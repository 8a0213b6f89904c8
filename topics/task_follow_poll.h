/*
 * The follower's polls (internal to topics/task_follow.c): one followed run
 * at a time with GET /qrs/executionsession/{id}, or up to SESSION_LIST_MAX
 * with one filtered list call; the run's end from its newest execution
 * result; the finished message published, then the follow marked done in the
 * spool. Follower thread only, on follows it has marked busy.
 */
#ifndef BUTLER_TASK_FOLLOW_POLL_H
#define BUTLER_TASK_FOLLOW_POLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct butler_config;
struct qrs_client;

enum {
    POKE_TRIES = 10,        /* after a task event: quick looks while QRS catches up */
    BACKOFF_FIRST_MS = 500, /* first pause after a failed QRS call */
    /* Sessions asked about in one list call. 32 ids make a query of ~1.7 kB
     * once percent-encoded, under the 2 kB some proxies in front of QRS
     * still enforce. */
    SESSION_LIST_MAX = 32,
};

/*
 * One followed run: a fixed-size record in its slot. The strings that vary in
 * length (request id, task name, response topic, correlation data) live in
 * one block of exactly their size, `text`, which the pointers below point
 * into; nothing else is allocated per follow, and no buffer is kept between
 * polls.
 */
struct follow {
    uint64_t spool_id;
    uint64_t started_wall_ms; /* when the start answered (timeout_s counts from it) */
    uint64_t started_mono_ms; /* the same on the monotonic clock (this process) */
    uint64_t due_mono_ms;     /* next poll; the heap's key while scheduled */
    char *text;               /* owned: the block below points into */
    char *request_id;
    char *task_name;
    char *response_topic;       /* NULL = none */
    unsigned char *correlation; /* NULL = none */
    uint32_t correlation_length;
    uint32_t backoff_ms;
    int16_t last_status;   /* QRS execution status last seen; -1 = none */
    uint8_t result_misses; /* session gone and no result: lookups so far */
    uint8_t poked;         /* a task event named this run: look again soon this many times */
    bool used;             /* the slot holds a follow */
    bool busy;             /* being polled by the thread (out of the schedule) */
    bool poke_pending;     /* poked while busy: due at once after this poll */
    bool paused;           /* due_mono_ms ends a pause: not to be taken early */
    char task_id[37];
    char execution_id[37];
};

/* Keep `config` for the polls (task_start.follow, mqtt.topic_root). Start-up
 * thread, before the follower starts. */
void task_follow_poll_setup(const struct butler_config *config);

/* How much earlier than its due time a poll may be taken to join a wake-up:
 * a twentieth of poll_s, at most one second. */
uint64_t task_follow_coalesce_ms(uint64_t poll_ms);

/* How many follows one poll may take now: SESSION_LIST_MAX, or 1 while QRS
 * is taken to refuse the list form. */
size_t task_follow_poll_batch_max(uint64_t now_mono_ms);

/*
 * Poll one follow (GET /qrs/executionsession/{id}: 200 while the run goes
 * on, 404 once it ended). True when it ended (finished message out, spool
 * done); false when it stays (due time set), also when Butler is stopping.
 */
bool task_follow_poll_one(struct qrs_client *qrs, struct follow *follow);

/*
 * Poll `count` follows (at most SESSION_LIST_MAX) with one list call; ended[i]
 * as task_follow_poll_one's answer for follows[i].
 */
void task_follow_poll_many(struct qrs_client *qrs, struct follow **follows, size_t count,
                           bool *ended);

#endif
