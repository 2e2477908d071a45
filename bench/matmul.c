/* matmul.c: GFLOP/s of square sgemm called directly (cblas_sgemm) and through Lua (a:matmul(b)
 * in a prunert_state, bench/matmul.lua), median of several timed runs each, with a fixed thread
 * count. The difference is what the binding, the result's allocation and the interpreter cost.
 * Usage: bench_matmul [--runs R] [--threads T] [size ...]   (defaults: 7 runs, 2 threads,
 * sizes 256 1024 2048). Output: a table, one line per size, then "ratio_1024 <lua/direct>".
 * PRUNERT_BENCH_LUA=file runs another Lua side (defining matmul_loop) in place of matmul.lua. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "prunert.h"

#ifndef PRUNERT_BENCH_DIR
#define PRUNERT_BENCH_DIR "bench"
#endif

/* Work per timed run: enough that the clock's resolution and one-off page faults do not
 * matter at n = 256, while n = 2048 still runs once. */
#define FLOP_PER_RUN 4e9

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Minor page faults so far: fresh memory for each result shows up here whatever the load on
 * the machine, unlike the times. */
static long minflt(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void fill(float *p, size_t n, unsigned *seed)
{
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = (float)((*seed >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
}

/* One size: returns 0 on success and fills the medians and the best runs, in seconds per
 * matmul. The best run is printed too: on a shared machine it is the steadier figure. */
static int bench_size(prunert_state *S, int n, int runs, double *t_direct, double *t_lua,
                      double *best_direct, double *best_lua, double *faults_lua)
{
    size_t nn = (size_t)n * (size_t)n;
    float *a = malloc(nn * sizeof *a), *b = malloc(nn * sizeof *b), *c = malloc(nn * sizeof *c);
    float *c_lua = malloc(nn * sizeof *c_lua);
    double *times = malloc((size_t)runs * sizeof *times);
    double *times_lua = malloc((size_t)runs * sizeof *times_lua);
    int rc = 1;
    if (!a || !b || !c || !c_lua || !times || !times_lua) {
        fprintf(stderr, "bench_matmul: out of memory at n = %d\n", n);
        goto done;
    }
    unsigned seed = 12345u + (unsigned)n;
    fill(a, nn, &seed);
    fill(b, nn, &seed);
    double flop = 2.0 * n * (double)n * n;
    int reps = (int)ceil(FLOP_PER_RUN / flop);
    if (reps < 1)
        reps = 1;

    /* Through Lua the host's buffers are lent (no copy), as an embedding host would. */
    const int64_t shape[2] = { n, n };
    char call[64];
    snprintf(call, sizeof call, "matmul_loop(%d)", reps);
    if (prunert_set_tensor(S, "a", a, 2, shape, PRUNERT_BORROW) != PRUNERT_OK ||
        prunert_set_tensor(S, "b", b, 2, shape, PRUNERT_BORROW) != PRUNERT_OK)
        goto lua_failed;
    /* Warm up both paths once (OpenBLAS starts its thread pool lazily), then alternate them
     * run by run, so a load change on a shared machine hits both medians alike. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    if (prunert_run_string(S, "matmul_loop(1)") != PRUNERT_OK)
        goto lua_failed;
    long faults = 0;
    for (int r = 0; r < runs; r++) {
        double t0 = now();
        for (int k = 0; k < reps; k++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n,
                        0.0f, c, n);
        times[r] = (now() - t0) / reps;
        long f0 = minflt();
        t0 = now();
        if (prunert_run_string(S, call) != PRUNERT_OK)
            goto lua_failed;
        times_lua[r] = (now() - t0) / reps;
        faults += minflt() - f0;
    }
    *faults_lua = (double)faults / ((double)runs * reps);
    *t_direct = median(times, runs); /* sorts, so times[0] is the best run */
    *t_lua = median(times_lua, runs);
    *best_direct = times[0];
    *best_lua = times_lua[0];

    /* the two paths must compute the same product, or the comparison means nothing */
    if (prunert_get_tensor(S, "last", c_lua, nn, NULL, NULL) != (int64_t)nn)
        goto lua_failed;
    double maxdiff = 0;
    for (size_t i = 0; i < nn; i++)
        maxdiff = fmax(maxdiff, fabs((double)c_lua[i] - c[i]));
    if (maxdiff > 1e-3 * sqrt((double)n)) {
        fprintf(stderr, "bench_matmul: n = %d: Lua and cblas results differ by %g\n", n, maxdiff);
        goto done;
    }
    rc = 0;
    goto done;

lua_failed:
    fprintf(stderr, "bench_matmul: n = %d: %s\n", n, prunert_error(S));
done:
    /* drop the borrowed tensors before their buffers go, also after a failure */
    prunert_run_string(S, "a, b, last = nil, nil, nil; collectgarbage()");
    free(a);
    free(b);
    free(c);
    free(c_lua);
    free(times);
    free(times_lua);
    return rc;
}

int main(int argc, char **argv)
{
    int runs = 7, threads = 2, nsizes = 0;
    int sizes[32];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (atoi(argv[i]) > 0 && nsizes < 32)
            sizes[nsizes++] = atoi(argv[i]);
        else {
            fprintf(stderr, "usage: %s [--runs R] [--threads T] [size ...]\n", argv[0]);
            return 2;
        }
    }
    if (runs < 1 || threads < 1) {
        fprintf(stderr, "bench_matmul: --runs and --threads need positive integers\n");
        return 2;
    }
    if (nsizes == 0) {
        sizes[0] = 256;
        sizes[1] = 1024;
        sizes[2] = 2048;
        nsizes = 3;
    }

    prunert_state *S = prunert_open();
    if (!S) {
        fprintf(stderr, "bench_matmul: %s\n", prunert_error(NULL));
        return 1;
    }
    prunert_set_threads(threads); /* after open: PRUNERT_THREADS must not override the flag */
    /* PRUNERT_BENCH_LUA: try a variant of the Lua side without rebuilding */
    const char *script = getenv("PRUNERT_BENCH_LUA");
    if (!script || !*script)
        script = PRUNERT_BENCH_DIR "/matmul.lua";
    if (prunert_run_file(S, script) != PRUNERT_OK) {
        fprintf(stderr, "bench_matmul: %s\n", prunert_error(S));
        prunert_close(S);
        return 1;
    }

    printf("# sgemm n x n x n, float32, %d threads, median of %d runs\n", threads, runs);
    printf("%6s %14s %14s %10s %12s %12s %10s %14s\n", "n", "direct_gflops", "lua_gflops",
           "lua_cost%", "direct_best", "lua_best", "best_cost%", "lua_faults/op");
    int rc = 0;
    double ratio_1024 = -1;
    for (int i = 0; i < nsizes; i++) {
        double td, tl, bd, bl, fl;
        if (bench_size(S, sizes[i], runs, &td, &tl, &bd, &bl, &fl) != 0) {
            rc = 1;
            continue;
        }
        double flop = 2.0 * sizes[i] * (double)sizes[i] * sizes[i];
        printf("%6d %14.2f %14.2f %10.2f %12.2f %12.2f %10.2f %14.1f\n", sizes[i],
               flop / td * 1e-9, flop / tl * 1e-9, 100.0 * (tl / td - 1.0), flop / bd * 1e-9,
               flop / bl * 1e-9, 100.0 * (bl / bd - 1.0), fl);
        if (sizes[i] == 1024)
            ratio_1024 = tl / td;
    }
    if (ratio_1024 > 0)
        printf("ratio_1024 %.4f (target <= 1.05)\n", ratio_1024);
    prunert_close(S);
    return rc;
}
