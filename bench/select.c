/* bench/select.c: time to find a pruning threshold (the 0.9 n-th smallest score) among
 * 10 million random scores with pr_select_f32, copy of the scores included (the scores must
 * survive the selection, so a real caller always pays for it). Median of 7 runs. Also the
 * whole magnitude-pruning hot path a Lua policy calls: exact-count threshold on a tensor
 * (pr_threshold_amount) plus its mask (pr_mask_from_scores).
 * Output: one "key value" line per figure, for scripts. Usage: bench_select [n] [runs]. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "prune/prune.h"
#include "select.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* splitmix64: the bench stands alone, independent of the runtime's generator state. */
static uint64_t state = 12345;
static uint64_t next_u64(void)
{
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int main(int argc, char **argv)
{
    int64_t n = argc > 1 ? atoll(argv[1]) : 10000000;
    int runs = argc > 2 ? atoi(argv[2]) : 7;
    if (n < 1 || runs < 1 || runs > 1000) {
        fprintf(stderr, "usage: bench_select [n >= 1] [runs 1..1000]\n");
        return 2;
    }
    float *scores = malloc((size_t)n * sizeof *scores);
    float *work = malloc((size_t)n * sizeof *work);
    double *times = malloc((size_t)runs * sizeof *times);
    if (!scores || !work || !times) {
        fprintf(stderr, "bench_select: out of memory\n");
        return 1;
    }
    /* |w| of roughly Gaussian weights: the typical magnitude-pruning score distribution. */
    for (int64_t i = 0; i < n; i++) {
        double u = ((next_u64() >> 11) + 0.5) * (1.0 / 9007199254740992.0);
        double v = (double)(next_u64() >> 11) * (1.0 / 9007199254740992.0);
        scores[i] = (float)fabs(sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v));
    }
    int64_t k = (int64_t)(0.9 * (double)n);
    if (k >= n)
        k = n - 1;
    float threshold = 0;
    memset(work, 0, (size_t)n * sizeof *work); /* fault the pages in before timing */
    for (int r = 0; r < runs; r++) {
        double t0 = now_ms();
        memcpy(work, scores, (size_t)n * sizeof *work);
        threshold = pr_select_f32(work, n, k);
        times[r] = now_ms() - t0;
    }
    /* The answer is checked by counting, so a fast wrong selection cannot pass unnoticed. */
    int64_t below = 0, equal = 0;
    for (int64_t i = 0; i < n; i++) {
        below += scores[i] < threshold;
        equal += scores[i] == threshold;
    }
    int correct = below <= k && k < below + equal;
    qsort(times, (size_t)runs, sizeof *times, cmp_d);

    /* threshold + mask through the tensor API, on the same scores */
    pr_tensor *st = pr_tensor_from_buffer(PR_FLOAT32, 1, &n, scores, NULL, NULL);
    double *tm = malloc((size_t)runs * sizeof *tm);
    int64_t pruned = -1;
    for (int r = 0; st && tm && r < runs; r++) {
        double t0 = now_ms();
        pr_threshold th;
        pr_tensor *mask = NULL;
        if (pr_threshold_amount(st, 0.9, &th) == 0)
            mask = pr_mask_from_scores(st, th.value, th.ties);
        tm[r] = now_ms() - t0;
        pruned = mask ? pr_mask_count_zeros(mask) : -1;
        pr_tensor_release(mask);
    }
    if (!st || !tm || pruned != (int64_t)llround(0.9 * (double)n)) {
        fprintf(stderr, "bench_select: threshold+mask failed: %s\n", pr_last_error());
        correct = 0;
    } else {
        qsort(tm, (size_t)runs, sizeof *tm, cmp_d);
    }
    printf("select_n %lld\n", (long long)n);
    printf("select_k %lld\n", (long long)k);
    printf("select_runs %d\n", runs);
    printf("select_threshold %.9g\n", threshold);
    printf("select_correct %d\n", correct);
    printf("select_ms_median %.3f\n", times[runs / 2]);
    printf("select_ms_min %.3f\n", times[0]);
    printf("select_ms_max %.3f\n", times[runs - 1]);
    if (correct)
        printf("threshold_mask_ms_median %.3f\n", tm[runs / 2]);
    pr_tensor_release(st);
    free(tm);
    free(scores);
    free(work);
    free(times);
    return correct ? 0 : 1;
}
