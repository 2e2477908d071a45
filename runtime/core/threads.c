/* threads.c: the thread-count knob shared by OpenBLAS and the runtime's own kernels, and the
 * one adjustment we make to OpenBLAS's worker pool (blas_quiet below). */
#include "threads.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define PR_THREADS_MAX 1024

/* 0 = not decided yet; resolved lazily so a host that never asks pays nothing. Atomic because
 * kernels on worker threads read it while the main thread may set it. */
static atomic_int g_threads;

/* OpenBLAS's pthread build (Debian's libopenblas0-pthread) exports these but no header declares
 * them. Weak, so a build against another BLAS still links and simply skips blas_quiet. */
extern void openblas_read_env(void) __attribute__((weak));
extern int blas_thread_shutdown_(void) __attribute__((weak));

/* After each job OpenBLAS's idle workers poll with sched_yield for 2^28 cycles (about 0.1 s)
 * before sleeping. A training step runs a GEMM every few milliseconds, so they never sleep: on
 * 2 cores perf showed 25-40% of all CPU time in do_sched_yield/__schedule, taken from our own
 * kernels' threads (and from every other process on a shared machine); a LeNet step's CPU time
 * fell by a third with a short timeout, at no cost in wall time. So unless the user chose
 * OPENBLAS_THREAD_TIMEOUT, ask for 2^16 cycles (tens of microseconds: long enough to bridge the
 * GEMMs of one convolution's slices, short enough that an idle worker sleeps between layers),
 * and restart the workers, which read the timeout only when they start. Done once, when this
 * library is loaded (OpenBLAS, a dependency, is initialised by then, and the host cannot yet be
 * inside a GEMM on another thread); the later calls from pr_threads/pr_set_threads are
 * no-ops then. Child processes inherit the variable, which is harmless. */
static pthread_once_t quiet_once = PTHREAD_ONCE_INIT;

static void blas_quiet(void)
{
    if (!openblas_read_env || !blas_thread_shutdown_ || getenv("OPENBLAS_THREAD_TIMEOUT"))
        return;
    if (setenv("OPENBLAS_THREAD_TIMEOUT", "16", 0) != 0)
        return;
    openblas_read_env();
    blas_thread_shutdown_(); /* the next threaded GEMM starts them again, with the new timeout */
}

__attribute__((constructor)) static void threads_load(void)
{
    pthread_once(&quiet_once, blas_quiet);
}

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
    pthread_once(&quiet_once, blas_quiet);
    n = default_threads();
    /* Only the first resolver wins, so concurrent readers all see the same value. */
    int expected = 0;
    if (!atomic_compare_exchange_strong(&g_threads, &expected, n))
        n = expected;
    return n;
}

void pr_set_threads(int n)
{
    pthread_once(&quiet_once, blas_quiet);
    if (n <= 0)
        n = default_threads();
    if (n > PR_THREADS_MAX)
        n = PR_THREADS_MAX;
    atomic_store(&g_threads, n);
    openblas_set_num_threads(n);
}
