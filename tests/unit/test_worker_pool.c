/* Unit tests: the worker pool, and a worker taking the work that waits behind it. */
#include <pthread.h>
#include <stdlib.h>

#include "bridge/core/worker_pool.h"
#include "tests/unit/unit.h"

/* One job: its kind decides whether a batch takes it; `ran` and `order` show
 * who ran it and when. */
struct job {
    int kind;
    int id;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static bool release_first;
static bool first_running;
static int ran_order[16];
static int ran_count;
static int batch_ids[16];
static int batch_count;
static struct worker_pool *pool;

static void record_run(int id)
{
    pthread_mutex_lock(&lock);
    ran_order[ran_count++] = id;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

static bool same_kind(worker_run_fn run, void *item, void *context)
{
    (void)run;
    return ((struct job *)item)->kind == *(int *)context;
}

static void run_plain(void *worker_state, void *item)
{
    (void)worker_state;
    record_run(((struct job *)item)->id);
}

/* The first job waits until the test has queued the rest, then takes what
 * matches its kind from the front of the queue. */
static void run_batching(void *worker_state, void *item)
{
    (void)worker_state;
    struct job *first = item;
    pthread_mutex_lock(&lock);
    first_running = true;
    pthread_cond_broadcast(&changed);
    while (!release_first)
        pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
    void *taken[16];
    size_t count = worker_pool_take_matching(pool, same_kind, &first->kind, taken, 16);
    for (size_t i = 0; i < count; i++)
        batch_ids[batch_count++] = ((struct job *)taken[i])->id;
    record_run(first->id);
}

static void test_take_matching_stops_at_the_first_other_kind(void)
{
    struct job jobs[] = {{1, 0}, {1, 1}, {1, 2}, {2, 3}, {1, 4}};
    UNIT_CHECK(worker_pool_create(1, 8, NULL, &pool) == BUTLER_OK);
    UNIT_CHECK(worker_pool_submit(pool, run_batching, NULL, &jobs[0], -1) == BUTLER_OK);
    pthread_mutex_lock(&lock);
    while (!first_running)
        pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
    for (int i = 1; i < 5; i++)
        UNIT_CHECK(worker_pool_submit(pool, run_plain, NULL, &jobs[i], -1) == BUTLER_OK);
    UNIT_CHECK(worker_pool_depth(pool) == 4);
    pthread_mutex_lock(&lock);
    release_first = true;
    pthread_cond_broadcast(&changed);
    while (ran_count < 3)
        pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
    worker_pool_stop(pool, 1000);
    /* Jobs 1 and 2 went with the first; job 3 (another kind) stopped the take,
     * so it and job 4 behind it ran on their own, in order. */
    UNIT_CHECK(batch_count == 2 && batch_ids[0] == 1 && batch_ids[1] == 2);
    UNIT_CHECK(ran_count == 3 && ran_order[0] == 0 && ran_order[1] == 3 && ran_order[2] == 4);
    UNIT_CHECK(worker_pool_depth(pool) == 0);
    worker_pool_destroy(pool);
    pool = NULL;
}

static void test_take_matching_respects_max_and_empty_queue(void)
{
    struct job jobs[] = {{7, 0}, {7, 1}, {7, 2}};
    UNIT_CHECK(worker_pool_create(1, 4, NULL, &pool) == BUTLER_OK);
    int kind = 7;
    void *taken[4];
    UNIT_CHECK(worker_pool_take_matching(pool, same_kind, &kind, taken, 4) == 0);
    /* No worker can take these while the test holds them: stop first, then queue. */
    worker_pool_destroy(pool);
    UNIT_CHECK(worker_pool_create(1, 4, NULL, &pool) == BUTLER_OK);
    release_first = false;
    first_running = false;
    batch_count = 0;
    ran_count = 0;
    UNIT_CHECK(worker_pool_submit(pool, run_batching, NULL, &jobs[0], -1) == BUTLER_OK);
    pthread_mutex_lock(&lock);
    while (!first_running)
        pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
    UNIT_CHECK(worker_pool_submit(pool, run_plain, NULL, &jobs[1], -1) == BUTLER_OK);
    UNIT_CHECK(worker_pool_submit(pool, run_plain, NULL, &jobs[2], -1) == BUTLER_OK);
    UNIT_CHECK(worker_pool_take_matching(pool, same_kind, &kind, taken, 1) == 1);
    UNIT_CHECK(taken[0] == &jobs[1]);
    UNIT_CHECK(worker_pool_depth(pool) == 1);
    pthread_mutex_lock(&lock);
    release_first = true;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
    worker_pool_stop(pool, 1000);
    UNIT_CHECK(batch_count == 1 && batch_ids[0] == 2);
    worker_pool_destroy(pool);
    pool = NULL;
}

const struct unit_test unit_tests[] = {
    UNIT_TEST(test_take_matching_stops_at_the_first_other_kind),
    UNIT_TEST(test_take_matching_respects_max_and_empty_queue),
    {0},
};
