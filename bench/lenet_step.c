/* bench/lenet_step.c: time of one LeNet-5 training step (forward + backward, no optimizer)
 * on a batch of 1x28x28 inputs, built directly from the core ops:
 *   conv 5x5x20, relu, maxpool 2, conv 5x5x50, relu, maxpool 2, fc 800-500, relu, fc 500-10,
 *   cross-entropy.
 * Prints the median of the timed runs and the GFLOP/s reached, counting the convolutions' and
 * the fully connected layers' forward multiply-adds x3 (forward, dW, dx) as is customary.
 * Usage: bench_lenet_step [batch=256] [runs=11] [threads] [raw]
 *
 * Unless "raw" is given, glibc's malloc is told to keep freed memory (mallopt below), as a
 * training host should: otherwise every step's multi-megabyte activations come from fresh
 * mmaps whose page faults cost about a third of the step on this machine. */
#include "ops.h"
#include "rng.h"
#include "tensor.h"
#include "threads.h"

#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double clock_s(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double now(void) { return clock_s(CLOCK_MONOTONIC); }

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) as PyTorch's default init; a leaf needing grad. */
static pr_tensor *param(int ndim, const int64_t *shape, int64_t fan_in)
{
    pr_tensor *t = pr_tensor_rand(ndim, shape);
    if (!t)
        return NULL;
    float *p = pr_tensor_f32(t);
    float bound = 1.0f / sqrtf((float)fan_in);
    for (int64_t i = 0; i < pr_tensor_numel(t); i++)
        p[i] = (2.0f * p[i] - 1.0f) * bound;
    t->requires_grad = 1;
    return t;
}

enum { W1, B1, W2, B2, W3, B3, W4, B4, NPARAM };

/* One forward + backward; fwd_s gets the forward's share. Returns 0 or -1 (message set). */
static int step(pr_tensor *x, pr_tensor *y, pr_tensor **p, double *fwd_s, float *loss_out)
{
    double t0 = now();
    pr_tensor *t[12] = {0};
    int rc = -1;
    int64_t flat[2] = { x->shape[0], 800 };
    if (!(t[0] = pr_conv2d(x, p[W1], p[B1], 1, 1, 0, 0, 1, 1, 1)) || !(t[1] = pr_relu(t[0])) ||
        !(t[2] = pr_max_pool2d(t[1], 2, 2, 2, 2, 0, 0)) ||
        !(t[3] = pr_conv2d(t[2], p[W2], p[B2], 1, 1, 0, 0, 1, 1, 1)) || !(t[4] = pr_relu(t[3])) ||
        !(t[5] = pr_max_pool2d(t[4], 2, 2, 2, 2, 0, 0)) || !(t[6] = pr_reshape(t[5], 2, flat)) ||
        !(t[7] = pr_linear(t[6], p[W3], p[B3])) || !(t[8] = pr_relu(t[7])) ||
        !(t[9] = pr_linear(t[8], p[W4], p[B4])) ||
        !(t[10] = pr_cross_entropy(t[9], y, PR_REDUCE_MEAN)))
        goto done;
    *fwd_s = now() - t0;
    *loss_out = pr_tensor_f32(t[10])[0];
    for (int k = 0; k < NPARAM; k++) {
        pr_tensor_release(p[k]->grad);
        p[k]->grad = NULL;
    }
    rc = pr_backward(t[10], NULL) == PR_OK ? 0 : -1;
done:
    for (int k = 0; k < 12; k++)
        pr_tensor_release(t[k]);
    return rc;
}

int main(int argc, char **argv)
{
    int64_t batch = argc > 1 ? atoll(argv[1]) : 256;
    int runs = argc > 2 ? atoi(argv[2]) : 11;
    if (argc > 3 && atoi(argv[3]) > 0)
        pr_set_threads(atoi(argv[3]));
    int raw = argc > 4 && strcmp(argv[4], "raw") == 0;
    if (!raw) {
        mallopt(M_MMAP_THRESHOLD, 32 << 20); /* glibc's maximum */
        mallopt(M_TRIM_THRESHOLD, 512 << 20);
        mallopt(M_TOP_PAD, 64 << 20);
    }
    if (batch < 1 || runs < 1) {
        fprintf(stderr, "usage: %s [batch>=1] [runs>=1] [threads|0] [raw]\n", argv[0]);
        return 2;
    }
    pr_rng_seed(1);
    static const int64_t shapes[NPARAM][4] = {
        { 20, 1, 5, 5 }, { 20 }, { 50, 20, 5, 5 }, { 50 }, { 500, 800 }, { 500 }, { 10, 500 }, { 10 },
    };
    static const int nd[NPARAM] = { 4, 1, 4, 1, 2, 1, 2, 1 };
    static const int64_t fan[NPARAM] = { 25, 25, 500, 500, 800, 800, 500, 500 };
    pr_tensor *p[NPARAM];
    for (int k = 0; k < NPARAM; k++)
        if (!(p[k] = param(nd[k], shapes[k], fan[k]))) {
            fprintf(stderr, "lenet_step: %s\n", pr_last_error());
            return 1;
        }
    int64_t xs[4] = { batch, 1, 28, 28 };
    pr_tensor *x = pr_tensor_rand(4, xs);
    pr_tensor *y = pr_tensor_randint(0, 10, 1, &batch);
    if (!x || !y) {
        fprintf(stderr, "lenet_step: %s\n", pr_last_error());
        return 1;
    }
    double *total = malloc(sizeof *total * (size_t)runs), *fwd = malloc(sizeof *fwd * (size_t)runs);
    /* CPU time of all threads too: on a shared machine wall time includes waiting for a core. */
    double *cpu = malloc(sizeof *cpu * (size_t)runs);
    float loss = 0.0f;
    for (int r = -2; r < runs; r++) { /* two warm-up steps: page faults, BLAS buffers */
        double f = 0.0, t0 = now(), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        if (step(x, y, p, &f, &loss) < 0) {
            fprintf(stderr, "lenet_step: %s\n", pr_last_error());
            return 1;
        }
        if (r >= 0) {
            total[r] = now() - t0;
            cpu[r] = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
            fwd[r] = f;
        }
    }
    qsort(total, (size_t)runs, sizeof *total, cmp_double);
    qsort(fwd, (size_t)runs, sizeof *fwd, cmp_double);
    qsort(cpu, (size_t)runs, sizeof *cpu, cmp_double);
    double med = total[runs / 2], medf = fwd[runs / 2];
    /* multiply-adds of the forward: conv1 24*24*20*25, conv2 8*8*50*500, fc 800*500 + 500*10 */
    double macs = (double)batch * (24.0 * 24 * 20 * 25 + 8.0 * 8 * 50 * 500 + 800.0 * 500 + 500.0 * 10);
    double flops = 3.0 * 2.0 * macs;
    printf("lenet_step batch=%lld threads=%d runs=%d malloc=%s loss=%.4f\n", (long long)batch,
           pr_threads(), runs, raw ? "raw" : "keep", loss);
    printf("ms_per_step=%.2f fwd_ms=%.2f bwd_ms=%.2f min_ms=%.2f cpu_ms=%.2f gflops=%.1f "
           "epoch60k_s=%.2f\n", med * 1e3, medf * 1e3, (med - medf) * 1e3, total[0] * 1e3,
           cpu[runs / 2] * 1e3, flops / med * 1e-9, med * ceil(60000.0 / (double)batch));
    free(total);
    free(fwd);
    free(cpu);
    for (int k = 0; k < NPARAM; k++)
        pr_tensor_release(p[k]);
    pr_tensor_release(x);
    pr_tensor_release(y);
    return 0;
}
