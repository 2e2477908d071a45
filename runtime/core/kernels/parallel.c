/* kernels/parallel.c: the fork-join loop the raw kernels use to split independent work over
 * pr_threads() plain pthreads (see kernels.h). Threads are created per call: the kernels that
 * use it run for milliseconds, so tens of microseconds of start-up do not matter and no pool
 * has to be kept alive (or torn down) behind the host's back. */
#include "kernels.h"
#include "threads.h"

#include <pthread.h>

#define PR_PARALLEL_MAX 64

typedef struct {
    void (*fn)(void *ctx, int64_t begin, int64_t end);
    void *ctx;
    int64_t begin, end;
} part;

static void *run_part(void *arg)
{
    part *p = arg;
    p->fn(p->ctx, p->begin, p->end);
    return NULL;
}

void pr_parallel_for(int64_t n, int64_t grain, void (*fn)(void *ctx, int64_t begin, int64_t end),
                     void *ctx)
{
    if (n <= 0)
        return;
    int64_t nt = pr_threads();
    if (grain < 1)
        grain = 1;
    if (nt > n / grain)
        nt = n / grain;
    if (nt > PR_PARALLEL_MAX)
        nt = PR_PARALLEL_MAX;
    if (nt <= 1) {
        fn(ctx, 0, n);
        return;
    }
    part parts[PR_PARALLEL_MAX];
    pthread_t tid[PR_PARALLEL_MAX];
    int started[PR_PARALLEL_MAX] = {0};
    for (int64_t t = 0; t < nt; t++)
        parts[t] = (part){ fn, ctx, n * t / nt, n * (t + 1) / nt };
    for (int64_t t = 1; t < nt; t++)
        started[t] = pthread_create(&tid[t], NULL, run_part, &parts[t]) == 0;
    run_part(&parts[0]);
    /* A part whose thread could not start runs here: the result never depends on threads. */
    for (int64_t t = 1; t < nt; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else
            run_part(&parts[t]);
    }
}
