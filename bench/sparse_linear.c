/* sparse_linear.c: a 500x800 Linear (out=500, in=800) at several sparsities, dense OpenBLAS
 * sgemm against each sparse format and kernel path, batch 1 and 256.
 *
 * Every repetition times each contender in turn (interleaved, so machine noise hits them
 * alike) by looping the op for at least --ms milliseconds; the table gives the median over
 * --reps repetitions of microseconds per call and the speedup over dense sgemm. Each sparse
 * result is also checked against the dense one (column "maxerr", relative).
 *
 * usage: bench_sparse_linear [--reps N] [--ms M] [--threads T] [--quick]
 * output: one line per (sparsity, batch, kernel): whitespace-separated, header first. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rng.h"
#include "sparse/sparse.h"
#include "threads.h"

#define OUT 500
#define IN 800
#define MAXK 12

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct contender {
    char name[32];
    pr_sparse *s;        /* NULL for the dense baselines */
    pr_sparse_kernel kernel; /* code path (AUTO: the best this CPU has) */
    int gemv;            /* dense: cblas_sgemv instead of sgemm (batch 1 only) */
    const float *w;      /* dense weight this contender computes with (borrowed) */
    double t[64];
    double maxerr;
} contender;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void run_one(contender *c, const float *x, float *y, const float *bias, int batch)
{
    if (c->s) {
        pr_sparse_set_kernel(c->kernel);
        if (pr_sparse_linear(x, y, c->s, bias, batch) < 0) {
            fprintf(stderr, "sparse linear failed: %s\n", pr_last_error());
            exit(1);
        }
        return;
    }
    /* Dense Linear as a module would run it: y = bias, then y += x . W^T. */
    for (int i = 0; i < batch; i++)
        memcpy(y + (size_t)i * OUT, bias, OUT * sizeof(float));
    if (c->gemv)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, OUT, IN, 1.0f, c->w, IN, x, 1, 1.0f, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, OUT, IN, 1.0f, x, IN, c->w,
                    IN, 1.0f, y, OUT);
}

/* Seconds per call, looping until at least `ms` milliseconds have passed. */
static double time_one(contender *c, const float *x, float *y, const float *bias, int batch, double ms)
{
    long iters = 0;
    double t0 = now(), t;
    do {
        run_one(c, x, y, bias, batch);
        iters++;
        t = now() - t0;
    } while (t < ms * 1e-3);
    return t / (double)iters;
}

/* Unstructured mask: each weight kept with probability 1 - sparsity. Block masks prune whole
 * br x bc blocks with that probability, the pattern block pruning produces. */
static void make_weight(float *w, double sparsity, int br, int bc)
{
    for (int r = 0; r < OUT; r += br)
        for (int c = 0; c < IN; c += bc) {
            int keep = pr_rng_uniform() >= sparsity;
            for (int i = r; i < r + br && i < OUT; i++)
                for (int j = c; j < c + bc && j < IN; j++)
                    w[i * IN + j] = keep ? (float)pr_rng_normal() * 0.05f : 0.0f;
        }
}

/* 2:4 pattern: in every group of 4 keep the 2 largest magnitudes. */
static void make_weight_24(float *w)
{
    for (int i = 0; i < OUT * IN; i++)
        w[i] = (float)pr_rng_normal() * 0.05f;
    for (int g = 0; g < OUT * IN; g += 4) {
        for (int drop = 0; drop < 2; drop++) {
            int m = -1;
            for (int j = 0; j < 4; j++)
                if (w[g + j] != 0.0f && (m < 0 || fabsf(w[g + j]) < fabsf(w[g + m])))
                    m = j;
            w[g + m] = 0.0f;
        }
    }
}

static pr_sparse *pack(const float *w, pr_sparse_format f)
{
    pr_sparse *s = pr_sparse_from_dense(w, OUT, IN, f);
    if (!s) {
        fprintf(stderr, "pack failed: %s\n", pr_last_error());
        exit(1);
    }
    return s;
}

int main(int argc, char **argv)
{
    int reps = 9, threads = 2, quick = 0;
    double ms = 20;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ms") && i + 1 < argc)
            ms = atof(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else {
            fprintf(stderr, "usage: %s [--reps N] [--ms M] [--threads T] [--quick]\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1 || reps > 64)
        reps = 9;
    pr_set_threads(threads);
    openblas_set_num_threads(threads);
    pr_sparse_set_threads(threads);
    pr_rng_seed(42);

    static float w[OUT * IN], wb14[OUT * IN], wb41[OUT * IN], w24[OUT * IN];
    static float bias[OUT], x[256 * IN], yref[256 * OUT], y[256 * OUT];
    for (int i = 0; i < OUT; i++)
        bias[i] = (float)pr_rng_normal() * 0.1f;
    for (int i = 0; i < 256 * IN; i++)
        x[i] = (float)pr_rng_normal();

    const double sparsities[] = {0.5, 0.7, 0.9, 0.95, 0.99};
    double target_speedup[2] = {0, 0};
    char csr_name[32];
    snprintf(csr_name, sizeof csr_name, "csr_%s", pr_sparse_kernel_name());
    const int batches[] = {1, 256};
    /* The load average says how far to trust absolute times on a shared machine; the
     * speedups are ratios measured side by side and suffer less. */
    double load[1] = {-1};
    if (getloadavg(load, 1) < 1)
        load[0] = -1;
    printf("# 500x800 Linear, threads %d, kernel path %s, median of %d reps x >= %g ms, "
           "load average %.2f\n", threads, pr_sparse_kernel_name(), reps, ms, load[0]);
    printf("%-8s %-5s %-22s %10s %8s %9s %9s\n", "sparsity", "batch", "kernel", "us/call",
           "speedup", "density", "maxerr");
    for (size_t si = 0; si < sizeof sparsities / sizeof sparsities[0]; si++) {
        double sp = sparsities[si];
        make_weight(w, sp, 1, 1);
        make_weight(wb14, sp, 1, 4);
        make_weight(wb41, sp, 4, 1);
        make_weight_24(w24);
        for (size_t bi = 0; bi < 2; bi++) {
            int batch = batches[bi];
            contender cs[MAXK];
            int n = 0;
            memset(cs, 0, sizeof cs);
#define ADD(NAME, S, GEN, GEMV, W) do { snprintf(cs[n].name, sizeof cs[n].name, "%s", NAME); \
    cs[n].s = (S); cs[n].kernel = (GEN); cs[n].gemv = (GEMV); cs[n].w = (W); n++; } while (0)
            ADD("dense_sgemm", NULL, 0, 0, w);
            if (batch == 1)
                ADD("dense_sgemv", NULL, 0, 1, w);
            ADD(csr_name, pack(w, PR_SPARSE_CSR), PR_SPARSE_KERNEL_AUTO, 0, w);
            if (strcmp(pr_sparse_kernel_name(), "avx512") == 0)
                ADD("csr_avx2", pack(w, PR_SPARSE_CSR), PR_SPARSE_KERNEL_AVX2, 0, w);
            ADD("csr_generic", pack(w, PR_SPARSE_CSR), PR_SPARSE_KERNEL_GENERIC, 0, w);
            if (!quick) {
                ADD("bsr1x4_unstructured", pack(w, PR_SPARSE_BSR_1X4), 0, 0, w);
                ADD("bsr1x4_blockpruned", pack(wb14, PR_SPARSE_BSR_1X4), 0, 0, wb14);
                ADD("bsr4x1_blockpruned", pack(wb41, PR_SPARSE_BSR_4X1), 0, 0, wb41);
                if (si == 0)
                    ADD("nm2:4", pack(w24, PR_SPARSE_NM_2_4), 0, 0, w24);
            }
            /* Check every contender against dense sgemm on its own weight. */
            for (int k = 0; k < n; k++) {
                contender dense = {.w = cs[k].w};
                run_one(&dense, x, yref, bias, batch);
                run_one(&cs[k], x, y, bias, batch);
                double err = 0;
                for (int i = 0; i < batch * OUT; i++) {
                    double e = fabs(y[i] - yref[i]) / (1.0 + fabs(yref[i]));
                    err = e > err ? e : err;
                }
                cs[k].maxerr = err;
            }
            for (int r = 0; r < reps; r++)
                for (int k = 0; k < n; k++)
                    cs[k].t[r] = time_one(&cs[k], x, y, bias, batch, ms);
            double base = median(cs[0].t, reps);
            for (int k = 0; k < n; k++) {
                double med = k == 0 ? base : median(cs[k].t, reps);
                double density = cs[k].s ? (double)pr_sparse_count_nonzero(cs[k].s) / (OUT * IN)
                                         : 1.0;
                printf("%-8.2f %-5d %-22s %10.2f %8.2f %9.4f %9.1e\n", sp, batch, cs[k].name,
                       med * 1e6, base / med, density, cs[k].maxerr);
                if (sp == 0.9 && !strcmp(cs[k].name, csr_name))
                    target_speedup[bi] = base / med;
                pr_sparse_free(cs[k].s);
            }
            fflush(stdout);
        }
    }
    pr_sparse_set_kernel(PR_SPARSE_KERNEL_AUTO);
    /* The project's targets for unstructured 90% sparsity, with the default (best) path. */
    printf("# target 90%% batch 1:   %s %.2fx dense sgemm (want >= 4)   %s\n", csr_name,
           target_speedup[0], target_speedup[0] >= 4 ? "met" : "NOT met");
    printf("# target 90%% batch 256: %s %.2fx dense sgemm (want >= 2.5) %s\n", csr_name,
           target_speedup[1], target_speedup[1] >= 2.5 ? "met" : "NOT met");
    return 0;
}
