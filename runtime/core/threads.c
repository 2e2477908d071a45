/* threads.c: the thread-count knob shared by OpenBLAS and the runtime's own kernels. */
#include "threads.h"

#include <cblas.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define PR_THREADS_MAX 1024

/* 0 = not decided yet; resolved lazily so a host that never asks pays nothing. Atomic because
 * kernels on worker threads read it while the main thread may set it. */
static atomic_int g_threads;

static int default_threads(void)
{
    const char *env = getenv("PRUNERT_THREADS");
    if (env && *env) {
        char *end;
        long n = strtol(env, &end, 10);
        if (*end == '\0' && n > 0)
            return n > PR_THREADS_MAX ? PR_THREADS_MAX : (int)n;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    return cpus > PR_THREADS_MAX ? PR_THREADS_MAX : (int)cpus;
}

int pr_threads(void)
{
    int n = atomic_load(&g_threads);
    if (n > 0)
        return n;
    n = default_threads();
    /* Only the first resolver wins, so concurrent readers all see the same value. */
    int expected = 0;
    if (!atomic_compare_exchange_strong(&g_threads, &expected, n))
        n = expected;
    return n;
}

void pr_set_threads(int n)
{
    if (n <= 0)
        n = default_threads();
    if (n > PR_THREADS_MAX)
        n = PR_THREADS_MAX;
    atomic_store(&g_threads, n);
    openblas_set_num_threads(n);
}
