/* kernels/parallel.c: the loop the raw kernels use to split independent work over
 * pr_threads() threads (see kernels.h), on a small persistent pool of plain pthreads.
 *
 * Why a pool: a LeNet training step makes about 80 of these calls, and creating and joining a
 * thread per call cost about 30 us each (perf: clone, mmap of the stack, futex). Why no
 * spinning: OpenBLAS's own workers share the same 2 cores, so an idle worker of ours sleeps on
 * a condition variable at once and leaves the core to them.
 *
 * A call cuts [0, n) into `parts` fixed ranges (the same for a given n, cost and thread count,
 * whoever runs them) and everyone, the caller included, claims parts from a counter. When a
 * worker is slow to wake (the machine is busy) the caller simply runs more parts itself. One
 * job at a time: a call that finds the pool busy (another host thread, or a kernel nested in a
 * part) runs all its parts inline. */
#include "kernels.h"
#include "threads.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#define PR_PARALLEL_MAX 64

/* Work (in elements touched) below which a part is not worth waking a thread for. */
#define PR_PARALLEL_MIN_WORK 32768
/* Parts per thread when the work allows: finer parts balance a worker that loses its core. */
#define PR_PARALLEL_SPLIT 4

typedef struct {
    void (*fn)(void *ctx, int64_t begin, int64_t end);
    void *ctx;
    int64_t n, parts;
} job;

static pthread_mutex_t call_mu = PTHREAD_MUTEX_INITIALIZER; /* held by the one running call */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;      /* guards everything below */
static pthread_cond_t go = PTHREAD_COND_INITIALIZER;        /* a new job was posted */
static pthread_cond_t done = PTHREAD_COND_INITIALIZER;      /* unfinished or active hit 0 */
static int nworkers;
static unsigned long generation; /* bumped for each posted job */
static job current;
static pid_t pool_pid;           /* the pool's threads exist only in this process */
/* Claimed and unfinished parts of `current`; workers inside run_parts. The counters are
 * atomics so parts are claimed without the lock; `active` is read and written under mu. */
static atomic_llong next_part;
static atomic_llong unfinished;
static int active;
static int seats; /* workers still allowed to join `current`: at most pr_threads() - 1 */

static void run_parts(const job *j)
{
    for (;;) {
        int64_t p = atomic_fetch_add(&next_part, 1);
        if (p >= j->parts)
            return;
        j->fn(j->ctx, j->n * p / j->parts, j->n * (p + 1) / j->parts);
        if (atomic_fetch_sub(&unfinished, 1) == 1) {
            pthread_mutex_lock(&mu);
            pthread_cond_signal(&done);
            pthread_mutex_unlock(&mu);
        }
    }
}

static void *worker(void *arg)
{
    /* the generation when we were created: the job being posted right then is ours too */
    unsigned long seen = (unsigned long)(uintptr_t)arg;
    pthread_mutex_lock(&mu);
    for (;;) {
        while (generation == seen)
            pthread_cond_wait(&go, &mu);
        seen = generation;
        if (seats == 0) /* enough helpers already (the thread count was lowered) */
            continue;
        seats--;
        job j = current;
        /* Counted while outside the lock, so a new job is not posted under our feet: a worker
         * that wakes late may find its job already finished and claims nothing. */
        active++;
        pthread_mutex_unlock(&mu);
        run_parts(&j);
        pthread_mutex_lock(&mu);
        if (--active == 0)
            pthread_cond_signal(&done);
    }
    return NULL;
}

/* Grows the pool to `want` workers (under mu). A thread that cannot start is not an error:
 * the caller runs the parts nobody claims. */
static void ensure_workers(int want)
{
    if (pool_pid != getpid()) { /* first use, or a fork's child, which has no workers */
        nworkers = 0;
        active = 0;
        pool_pid = getpid();
    }
    while (nworkers < want) {
        pthread_t t;
        pthread_attr_t attr;
        if (pthread_attr_init(&attr) != 0)
            return;
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, worker, (void *)(uintptr_t)generation);
        pthread_attr_destroy(&attr);
        if (rc != 0)
            return;
        nworkers++;
    }
}

void pr_parallel_for(int64_t n, int64_t cost,
                     void (*fn)(void *ctx, int64_t begin, int64_t end), void *ctx)
{
    if (n <= 0)
        return;
    int64_t nt = pr_threads();
    if (cost < 1)
        cost = 1;
    int64_t by_work = n > INT64_MAX / cost ? n : n * cost / PR_PARALLEL_MIN_WORK;
    if (nt > PR_PARALLEL_MAX)
        nt = PR_PARALLEL_MAX;
    int64_t parts = nt * PR_PARALLEL_SPLIT;
    if (parts > by_work)
        parts = by_work;
    if (parts > n)
        parts = n;
    if (nt < 2 || parts < 2 || pthread_mutex_trylock(&call_mu) != 0) {
        fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&mu);
    ensure_workers((int)nt - 1);
    while (active > 0) /* a late worker still holds the previous job */
        pthread_cond_wait(&done, &mu);
    current = (job){ fn, ctx, n, parts };
    seats = (int)nt - 1;
    atomic_store(&next_part, 0);
    atomic_store(&unfinished, parts);
    generation++;
    pthread_cond_broadcast(&go);
    pthread_mutex_unlock(&mu);

    run_parts(&current);

    pthread_mutex_lock(&mu);
    while (atomic_load(&unfinished) > 0)
        pthread_cond_wait(&done, &mu);
    pthread_mutex_unlock(&mu);
    pthread_mutex_unlock(&call_mu);
}
