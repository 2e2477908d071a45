/* test_prune.c: the pruning hot paths (core/prune) on small hand-made tensors with exactly
 * the expected results, exact counts with ties, global vs per-layer thresholds and the floor,
 * mu - k*sigma, N:M and block patterns, errors that name both sides, and magnitude masks
 * against a reference computed by full sorting on random data. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "prune/prune.h"
#include "rng.h"

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define VALS(...) ((const float[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))

/* A new float32 tensor of the given shape holding vals (row-major). */
static pr_tensor *mk(int ndim, const int64_t *shape, const float *vals)
{
    pr_tensor *t = pr_tensor_empty(PR_FLOAT32, ndim, shape);
    if (t && vals)
        memcpy(pr_tensor_f32(t), vals, (size_t)pr_tensor_numel(t) * sizeof(float));
    return t;
}

/* t holds exactly want[0..n-1] (NaN matches NaN); releases t. */
static int eq_release(pr_tensor *t, const float *want, int64_t n)
{
    int ok = t && pr_tensor_numel(t) == n && t->dtype == PR_FLOAT32;
    for (int64_t i = 0; ok && i < n; i++) {
        float a = pr_tensor_f32(t)[i];
        ok = a == want[i] || (isnan(a) && isnan(want[i]));
        if (!ok)
            fprintf(stderr, "  entry %lld: got %g, want %g\n", (long long)i, a, want[i]);
    }
    pr_tensor_release(t);
    return ok;
}
#define CHECK_T(t, ...) CHECK(eq_release((t), VALS(__VA_ARGS__), \
    (int64_t)(sizeof(VALS(__VA_ARGS__)) / sizeof(float))))

static int err_has(const char *a, const char *b)
{
    const char *e = pr_last_error();
    int ok = strstr(e, a) && (!b || strstr(e, b));
    if (!ok)
        fprintf(stderr, "  message was: %s\n", e);
    return ok;
}

/* ---- scores ---- */

static void test_magnitude_taylor(void)
{
    pr_tensor *w = mk(1, SHAPE(4), VALS(-2, 0.5f, 0, 3));
    CHECK_T(pr_score_magnitude(w, 1), 2, 0.5f, 0, 3);
    CHECK_T(pr_score_magnitude(w, 2), 4, 0.25f, 0, 9);
    CHECK_T(pr_score_magnitude(w, 3), 8, 0.125f, 0, 27);
    CHECK(pr_score_magnitude(w, 0) == NULL && err_has("p must be", NULL));

    pr_tensor *w3 = mk(1, SHAPE(3), VALS(1, -2, 3));
    pr_tensor *g = mk(1, SHAPE(3), VALS(-0.5f, 0.25f, 0));
    CHECK_T(pr_score_taylor(w3, g), 0.5f, 0.5f, 0);
    CHECK(pr_score_taylor(w, g) == NULL && err_has("[4]", "[3]"));

    pr_tensor *acc = pr_tensor_zeros(PR_FLOAT32, 1, SHAPE(3));
    CHECK(pr_score_accumulate_abs(acc, g) == 0);
    CHECK(pr_score_accumulate_abs(acc, w3) == 0);
    CHECK_T(acc, 1.5f, 2.25f, 3);
    pr_tensor *acc4 = pr_tensor_zeros(PR_FLOAT32, 1, SHAPE(4));
    CHECK(pr_score_accumulate_abs(acc4, g) < 0 && err_has("[4]", "[3]"));
    pr_tensor_release(acc4);
    pr_tensor_release(w);
    pr_tensor_release(w3);
    pr_tensor_release(g);
}

static void test_structure(void)
{
    /* conv [O=2,C=2,kh=1,kw=2] */
    pr_tensor *w = mk(4, SHAPE(2, 2, 1, 2), VALS(1, -2, 3, 0, 0, 0, -1, 1));
    CHECK_T(pr_score_structure_norm(w, 0, 1), 6, 2);
    CHECK_T(pr_score_structure_norm(w, 0, 2), sqrtf(14), sqrtf(2));
    CHECK_T(pr_score_structure_norm(w, 1, 1), 3, 5);
    CHECK_T(pr_score_structure_norm(w, 1, INFINITY), 2, 3);
    CHECK_T(pr_score_structure_norm(w, -1, 1), 5, 3);  /* along kw */
    CHECK(pr_score_structure_norm(w, 4, 1) == NULL && err_has("dim 4", "[2,2,1,2]"));
    /* a linear [out=2,in=3]: rows and columns */
    pr_tensor *l = mk(2, SHAPE(2, 3), VALS(3, 4, 0, 0, 0, 5));
    CHECK_T(pr_score_structure_norm(l, 0, 2), 5, 5);
    CHECK_T(pr_score_structure_norm(l, 1, 2), 3, 4, 5);
    /* p = 3: (3^3 + 4^3)^(1/3) */
    CHECK_T(pr_score_structure_norm(l, 0, 3), (float)cbrt(91.0), 5);

    /* Taylor per filter, as Molchanov: the sum of |w*g| over the filter */
    pr_tensor *s = mk(4, SHAPE(2, 2, 1, 2), VALS(1, 2, 3, 4, 0.5f, 0, 0, 1.5f));
    CHECK_T(pr_score_structure_reduce(s, 0, PR_SREDUCE_SUM), 10, 2);
    CHECK_T(pr_score_structure_reduce(s, 0, PR_SREDUCE_MEAN), 2.5f, 0.5f);
    CHECK_T(pr_score_structure_reduce(s, 0, PR_SREDUCE_MAX), 4, 1.5f);
    CHECK_T(pr_score_structure_reduce(s, 1, PR_SREDUCE_SUM), 3.5f, 8.5f);
    CHECK(pr_score_structure_reduce(s, 0, (pr_sreduce)7) == NULL && err_has("mode", NULL));

    /* A transposed (non-contiguous) view is read correctly: rows of l^T are columns of l. */
    pr_tensor *lt = pr_tensor_transpose(l, 0, 1);
    CHECK(lt && !pr_tensor_is_contiguous(lt));
    CHECK_T(pr_score_structure_norm(lt, 0, 2), 3, 4, 5);
    pr_tensor_release(lt);
    pr_tensor_release(w);
    pr_tensor_release(l);
    pr_tensor_release(s);
}

static void test_depthwise(void)
{
    /* dw [C=3,1,1,2], pw [O=2,C=3,1,1]: ||dw[i]||_1 = 2,2,0.5; ||pw[:,i]||_1 = 2,0,4 */
    pr_tensor *dw = mk(4, SHAPE(3, 1, 1, 2), VALS(1, 1, 2, 0, 0, 0.5f));
    pr_tensor *pw = mk(4, SHAPE(2, 3, 1, 1), VALS(1, 0, 2, 1, 0, -2));
    CHECK_T(pr_score_depthwise_coupled(dw, pw, 1), 4, 0, 2);
    /* L2: sqrt(2)*sqrt(2), 2*0, 0.5*sqrt(8) */
    pr_tensor *c2 = pr_score_depthwise_coupled(dw, pw, 2);
    CHECK(c2 && fabsf(pr_tensor_f32(c2)[0] - 2) < 1e-6f && pr_tensor_f32(c2)[1] == 0 &&
          fabsf(pr_tensor_f32(c2)[2] - 0.5f * sqrtf(8)) < 1e-6f);
    pr_tensor_release(c2);
    pr_tensor *pw2 = mk(2, SHAPE(2, 3), VALS(1, 0, 2, 1, 0, -2)); /* a linear pointwise */
    CHECK_T(pr_score_depthwise_coupled(dw, pw2, 1), 4, 0, 2);
    pr_tensor *bad = mk(2, SHAPE(3, 2), VALS(1, 2, 3, 4, 5, 6));
    CHECK(pr_score_depthwise_coupled(dw, bad, 1) == NULL && err_has("[3,1,1,2]", "[3,2]"));
    pr_tensor_release(dw);
    pr_tensor_release(pw);
    pr_tensor_release(pw2);
    pr_tensor_release(bad);
}

static void test_activity(void)
{
    /* act [N=2,C=2,2]: c0 holds 0,1 | 0,0 and c1 holds 2,0 | -3,1 */
    pr_tensor *act = mk(3, SHAPE(2, 2, 2), VALS(0, 1, 2, 0, 0, 0, -3, 1));
    pr_tensor *sum = pr_tensor_zeros(PR_FLOAT32, 1, SHAPE(2));
    pr_tensor *zi = pr_tensor_zeros(PR_INT64, 1, SHAPE(2));
    pr_tensor *zf = pr_tensor_zeros(PR_FLOAT32, 1, SHAPE(2));
    CHECK(pr_activity_accumulate(act, sum, zi) == 4);
    CHECK(pr_activity_accumulate(act, NULL, zf) == 4);
    CHECK(pr_activity_accumulate(act, sum, NULL) == 4);
    CHECK(pr_tensor_i64(zi)[0] == 3 && pr_tensor_i64(zi)[1] == 1);
    CHECK_T(zf, 3, 1);
    CHECK_T(sum, 2, 12);
    /* per neuron, [N=3,F=2] */
    pr_tensor *fc = mk(2, SHAPE(3, 2), VALS(0, 1, 0, 2, 4, 0));
    pr_tensor *s2 = pr_tensor_zeros(PR_FLOAT32, 1, SHAPE(2));
    pr_tensor *z2 = pr_tensor_zeros(PR_INT64, 1, SHAPE(2));
    CHECK(pr_activity_accumulate(fc, s2, z2) == 3);
    CHECK(pr_tensor_i64(z2)[0] == 2 && pr_tensor_i64(z2)[1] == 1);
    CHECK_T(s2, 4, 3);
    pr_tensor *s3 = pr_tensor_zeros(PR_FLOAT32, 1, SHAPE(3));
    CHECK(pr_activity_accumulate(fc, s3, NULL) < 0 && err_has("[3]", "[3,2]"));
    pr_tensor_release(s3);
    pr_tensor_release(zi);
    pr_tensor_release(z2);
    pr_tensor_release(act);
    pr_tensor_release(fc);
}

/* ---- thresholds ---- */

static pr_tensor *mask_of(pr_tensor *s, pr_threshold th)
{
    return pr_mask_from_scores(s, th.value, th.ties);
}

static void test_threshold_exact(void)
{
    pr_tensor *s = mk(1, SHAPE(6), VALS(1, 0, 0, 0, 2, 0));
    pr_threshold th;
    /* round(0.5 * 6) = 3 of the four zeros: the first three in flat order */
    CHECK(pr_threshold_amount(s, 0.5, &th) == 0);
    CHECK(th.value == 0 && th.ties == 3 && th.count == 3);
    CHECK_T(mask_of(s, th), 1, 0, 0, 0, 1, 1);
    CHECK(pr_threshold_amount(s, 0.0, &th) == 0 && th.count == 0);
    CHECK_T(mask_of(s, th), 1, 1, 1, 1, 1, 1);
    CHECK(pr_threshold_amount(s, 1.0, &th) == 0 && th.count == 6);
    CHECK_T(mask_of(s, th), 0, 0, 0, 0, 0, 0);
    /* 5/6 -> 5 entries: all four zeros and the 1 (below the threshold 1, no ties left over
     * for the 2) */
    CHECK(pr_threshold_amount(s, 5.0 / 6.0, &th) == 0 && th.value == 1 && th.ties == 1);
    CHECK_T(mask_of(s, th), 0, 0, 0, 0, 1, 0);
    CHECK(pr_threshold_amount(s, 1.5, &th) < 0 && err_has("amount", "1.5"));
    CHECK(pr_threshold_amount(s, NAN, &th) < 0);
    /* round half away from zero: 0.5 * 5 = 2.5 -> 3 */
    pr_tensor *f = mk(1, SHAPE(5), VALS(5, 4, 3, 2, 1));
    CHECK(pr_threshold_amount(f, 0.5, &th) == 0 && th.count == 3);
    CHECK_T(mask_of(f, th), 1, 1, 0, 0, 0);
    pr_tensor *n = mk(1, SHAPE(3), VALS(1, NAN, 2));
    CHECK(pr_threshold_amount(n, 0.5, &th) < 0 && err_has("NaN", NULL));
    /* absolute thresholds */
    pr_tensor *a = mk(1, SHAPE(4), VALS(0.1f, 0.5f, 0.5f, 0.9f));
    CHECK_T(pr_mask_from_scores(a, 0.5f, 0), 0, 1, 1, 1);
    CHECK_T(pr_mask_from_scores(a, 0.5f, 1), 0, 0, 1, 1);
    CHECK_T(pr_mask_from_scores(a, 0.5f, 7), 0, 0, 0, 1);
    pr_tensor_release(s);
    pr_tensor_release(f);
    pr_tensor_release(n);
    pr_tensor_release(a);
}

static void test_threshold_global(void)
{
    pr_tensor *a = mk(1, SHAPE(4), VALS(1, 2, 3, 4));
    pr_tensor *b = mk(2, SHAPE(2, 2), VALS(10, 20, 30, 40));
    pr_tensor *ab[2] = {a, b};
    pr_threshold th[3];
    /* per layer: half of each */
    CHECK(pr_threshold_amount(a, 0.5, &th[0]) == 0 && pr_threshold_amount(b, 0.5, &th[1]) == 0);
    CHECK_T(mask_of(a, th[0]), 0, 0, 1, 1);
    CHECK_T(mask_of(b, th[1]), 0, 0, 1, 1);
    /* global: the four smallest overall are all of a */
    CHECK(pr_threshold_global(ab, 2, 0.5, 0, th) == 4);
    CHECK(th[0].count == 4 && th[1].count == 0);
    CHECK_T(mask_of(a, th[0]), 0, 0, 0, 0);
    CHECK_T(mask_of(b, th[1]), 1, 1, 1, 1);
    /* floor 1: a may lose 3; the fourth comes from b, its smallest */
    CHECK(pr_threshold_global(ab, 2, 0.5, 1, th) == 4);
    CHECK_T(mask_of(a, th[0]), 0, 0, 0, 1);
    CHECK_T(mask_of(b, th[1]), 0, 1, 1, 1);
    /* floor 3: each may lose 1, so only 2 of the 4 asked can go */
    CHECK(pr_threshold_global(ab, 2, 0.5, 3, th) == 2);
    CHECK_T(mask_of(a, th[0]), 0, 1, 1, 1);
    CHECK_T(mask_of(b, th[1]), 0, 1, 1, 1);
    /* floor larger than a tensor: it keeps everything */
    CHECK(pr_threshold_global(ab, 2, 1.0, 5, th) == 0);
    CHECK(th[0].count == 0 && th[1].count == 0);
    /* ties across tensors go in tensor order */
    pr_tensor *z1 = mk(1, SHAPE(2), VALS(0, 0)), *z2 = mk(1, SHAPE(2), VALS(0, 0));
    pr_tensor *zz[2] = {z1, z2};
    CHECK(pr_threshold_global(zz, 2, 0.75, 0, th) == 3);
    CHECK_T(mask_of(z1, th[0]), 0, 0);
    CHECK_T(mask_of(z2, th[1]), 0, 1);
    /* a cascade: capping c moves budget to d, which then goes over its cap too */
    pr_tensor *c = mk(1, SHAPE(3), VALS(1, 2, 3));
    pr_tensor *d = mk(1, SHAPE(3), VALS(4, 5, 6));
    pr_tensor *e = mk(1, SHAPE(3), VALS(7, 8, 9));
    pr_tensor *cde[3] = {c, d, e};
    CHECK(pr_threshold_global(cde, 3, 5.0 / 9.0, 1, th) == 5);
    CHECK_T(mask_of(c, th[0]), 0, 0, 1);
    CHECK_T(mask_of(d, th[1]), 0, 0, 1);
    CHECK_T(mask_of(e, th[2]), 0, 1, 1);
    CHECK(pr_threshold_global(cde, 3, 0.5, -1, th) < 0 && err_has("min_keep", NULL));
    pr_tensor *nn = mk(1, SHAPE(3), VALS(1, 2, NAN));
    pr_tensor *cn[2] = {c, nn};
    CHECK(pr_threshold_global(cn, 2, 0.5, 0, th) < 0 && err_has("tensor 2", "entry 2"));
    CHECK(pr_threshold_global(cn, 2, 0.0, 0, th) < 0 && err_has("NaN", NULL));
    pr_tensor_release(nn);
    pr_tensor_release(a);
    pr_tensor_release(b);
    pr_tensor_release(z1);
    pr_tensor_release(z2);
    pr_tensor_release(c);
    pr_tensor_release(d);
    pr_tensor_release(e);
}

static void test_mean_std(void)
{
    pr_tensor *a = mk(1, SHAPE(4), VALS(1, 2, 3, 4)), *b = mk(1, SHAPE(1), VALS(5));
    pr_tensor *ab[2] = {a, b};
    double mu = 0, sd = 0;
    CHECK(pr_stats_mean_std(ab, 2, &mu, &sd) == 0);
    /* by hand: mean 3, deviations -2..2, squares 4+1+0+1+4 = 10, /5 = 2 */
    CHECK_NEAR(mu, 3.0, 1e-12);
    CHECK_NEAR(sd, sqrt(2.0), 1e-12);
    /* mu - 1*sigma as an absolute threshold: 3 - 1.414 = 1.586 prunes only the 1 */
    float t = (float)(mu - 1.0 * sd);
    CHECK_T(pr_mask_from_scores(a, t, 0), 0, 1, 1, 1);
    /* large offset: the two-pass form keeps the small spread */
    pr_tensor *big = mk(1, SHAPE(4), VALS(1e6f + 1, 1e6f + 2, 1e6f + 3, 1e6f + 4));
    CHECK(pr_stats_mean_std(&big, 1, &mu, &sd) == 0);
    CHECK_NEAR(sd, sqrt(1.25), 1e-9);
    pr_tensor_release(a);
    pr_tensor_release(b);
    pr_tensor_release(big);
}

/* ---- masks ---- */

static void test_structure_expand(void)
{
    pr_tensor *m2 = mk(1, SHAPE(2), VALS(1, 0));
    CHECK_T(pr_mask_structure_expand(m2, 2, SHAPE(2, 3), 0), 1, 1, 1, 0, 0, 0);
    pr_tensor *m3 = mk(1, SHAPE(3), VALS(1, 0, 1));
    CHECK_T(pr_mask_structure_expand(m3, 2, SHAPE(2, 3), 1), 1, 0, 1, 1, 0, 1);
    /* conv [O=2,C=2,1,2], input channel 1 removed */
    CHECK_T(pr_mask_structure_expand(m2, 4, SHAPE(2, 2, 1, 2), 1), 1, 1, 0, 0, 1, 1, 0, 0);
    CHECK(pr_mask_structure_expand(m3, 2, SHAPE(2, 3), 0) == NULL && err_has("[3]", "[2,3]"));
    pr_tensor_release(m2);
    pr_tensor_release(m3);
}

static void test_nm(void)
{
    pr_tensor *s = mk(2, SHAPE(2, 8), VALS(1, 5, 2, 4, 0, 0, 3, 0,
                                           -1, -5, -2, -4, 7, 7, 7, 7));
    CHECK_T(pr_mask_nm(s, 2, 4, 1), 0, 1, 0, 1, 1, 0, 1, 0,
                                    1, 0, 1, 0, 1, 1, 0, 0);
    CHECK_T(pr_mask_nm(s, 1, 2, -1), 0, 1, 0, 1, 1, 0, 1, 0,
                                     1, 0, 1, 0, 1, 0, 1, 0);
    CHECK_T(pr_mask_nm(s, 4, 4, 1), 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1);
    CHECK_T(pr_mask_nm(s, 0, 4, 1), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    /* along dim 0 of a [4,2]: groups are (rows 0-1) and (rows 2-3) in each column */
    pr_tensor *c = mk(2, SHAPE(4, 2), VALS(1, 9, 2, 8, 3, 0, 3, 0));
    CHECK_T(pr_mask_nm(c, 1, 2, 0), 0, 1, 1, 0, 1, 1, 0, 0);
    /* conv [O=1,C=4,1,2]: 2:4 over input channels at each kernel position */
    pr_tensor *k = mk(4, SHAPE(1, 4, 1, 2), VALS(1, 4, 2, 3, 3, 2, 4, 1));
    CHECK_T(pr_mask_nm(k, 2, 4, 1), 0, 1, 0, 1, 1, 0, 1, 0);
    pr_tensor *bad = mk(2, SHAPE(2, 6), NULL);
    CHECK(pr_mask_nm(bad, 2, 4, 1) == NULL && err_has("M=4", "size 6"));
    CHECK(pr_mask_nm(s, 5, 4, 1) == NULL && err_has("N=5", "M=4"));
    pr_tensor_release(s);
    pr_tensor_release(c);
    pr_tensor_release(k);
    pr_tensor_release(bad);
}

static void test_blocks(void)
{
    /* 4x4 in 2x2 blocks; block sums of |x|: b0 = 4, b1 = 1, b2 = 1, b3 = 10 */
    pr_tensor *w = mk(2, SHAPE(4, 4), VALS(1, -1, 0, 1,
                                           1, 1, 0, 0,
                                           0, 0, 5, -5,
                                           1, 0, 0, 0));
    CHECK_T(pr_mask_blocks(w, 2, 2, 0.25), 1, 1, 0, 0,
                                           1, 1, 0, 0,
                                           1, 1, 1, 1,
                                           1, 1, 1, 1);
    CHECK_T(pr_mask_blocks(w, 2, 2, 0.5), 1, 1, 0, 0,
                                          1, 1, 0, 0,
                                          0, 0, 1, 1,
                                          0, 0, 1, 1);
    CHECK_T(pr_mask_blocks(w, 2, 2, 0.75), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1);
    /* 1x4 row blocks: sums 3, 2, 10, 1 */
    CHECK_T(pr_mask_blocks(w, 1, 4, 0.5), 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0);
    pr_tensor *odd = mk(2, SHAPE(3, 4), NULL);
    CHECK(pr_mask_blocks(odd, 2, 2, 0.5) == NULL && err_has("2x2", "[3,4]"));
    pr_tensor *t3 = mk(3, SHAPE(2, 2, 2), NULL);
    CHECK(pr_mask_blocks(t3, 1, 1, 0.5) == NULL && err_has("2-D", "[2,2,2]"));
    pr_tensor_release(w);
    pr_tensor_release(odd);
    pr_tensor_release(t3);
}

static void test_apply_count_random(void)
{
    pr_tensor *w = mk(1, SHAPE(5), VALS(1, -2, INFINITY, NAN, 3));
    pr_tensor *m = mk(1, SHAPE(5), VALS(1, 0, 0, 1, 0));
    CHECK(pr_mask_apply(w, m) == 0);
    CHECK(!signbit(pr_tensor_f32(w)[1]));
    CHECK(pr_mask_count_zeros(w) == 3);
    CHECK(pr_mask_count_zeros(m) == 3);
    CHECK_T(w, 1, 0, 0, NAN, 0); /* releases w */
    pr_tensor *m4 = mk(1, SHAPE(4), VALS(1, 1, 1, 1));
    pr_tensor *w5 = mk(1, SHAPE(5), VALS(1, 1, 1, 1, 1));
    CHECK(pr_mask_apply(w5, m4) < 0 && err_has("[5]", "[4]"));
    pr_tensor_release(m4);
    pr_tensor_release(w5);
    pr_tensor_release(m);

    pr_rng_seed(42);
    pr_tensor *r1 = pr_mask_random(2, SHAPE(10, 10), 0.3);
    pr_rng_seed(42);
    pr_tensor *r2 = pr_mask_random(2, SHAPE(10, 10), 0.3);
    pr_tensor *r3 = pr_mask_random(2, SHAPE(10, 10), 0.3);
    CHECK(pr_mask_count_zeros(r1) == 30 && pr_mask_count_zeros(r3) == 30);
    CHECK(memcmp(pr_tensor_f32(r1), pr_tensor_f32(r2), 100 * sizeof(float)) == 0);
    CHECK(memcmp(pr_tensor_f32(r1), pr_tensor_f32(r3), 100 * sizeof(float)) != 0);
    int only01 = 1;
    for (int i = 0; i < 100; i++)
        only01 &= pr_tensor_f32(r1)[i] == 0 || pr_tensor_f32(r1)[i] == 1;
    CHECK(only01);
    pr_tensor *r0 = pr_mask_random(1, SHAPE(7), 0), *ra = pr_mask_random(1, SHAPE(7), 1);
    CHECK(pr_mask_count_zeros(r0) == 0 && pr_mask_count_zeros(ra) == 7);
    /* Uniform: over many draws every place is chosen about amount of the time. */
    int hits[10] = {0};
    for (int t = 0; t < 4000; t++) {
        pr_tensor *r = pr_mask_random(1, SHAPE(10), 0.3);
        for (int i = 0; i < 10; i++)
            hits[i] += pr_tensor_f32(r)[i] == 0;
        pr_tensor_release(r);
    }
    int fair = 1;
    for (int i = 0; i < 10; i++)
        fair &= abs(hits[i] - 1200) < 120; /* sd ~ 29 */
    CHECK(fair);
    CHECK(pr_mask_random(1, SHAPE(3), -0.1) == NULL && err_has("amount", NULL));
    pr_tensor_release(r0);
    pr_tensor_release(ra);
    pr_tensor_release(r1);
    pr_tensor_release(r2);
    pr_tensor_release(r3);
}

static void test_grad_clip(void)
{
    pr_tensor *g = mk(1, SHAPE(6), VALS(-0.5f, 1e-4f, -1e-4f, 2e-3f, 0, -2e-3f));
    /* the seed's signed comparison would also have zeroed -0.5 and -2e-3 */
    CHECK(pr_grad_clip_mask_(g, 1e-3f) == 3);
    CHECK_T(g, -0.5f, 0, 0, 2e-3f, 0, -2e-3f);
    pr_tensor *i = pr_tensor_zeros(PR_INT64, 1, SHAPE(2));
    CHECK(pr_grad_clip_mask_(i, 1) < 0 && err_has("float32", NULL));
    pr_tensor_release(i);
}

/* ---- against full sorting on random data ---- */

typedef struct { float v; int layer; int64_t i; } entry;
static int cmp_entry(const void *a, const void *b)
{
    const entry *p = a, *q = b;
    if (p->v != q->v)
        return p->v < q->v ? -1 : 1;
    if (p->layer != q->layer)
        return p->layer - q->layer;
    return (p->i > q->i) - (p->i < q->i);
}

static void test_random_vs_sort(void)
{
    pr_rng_seed(7);
    enum { L = 3 };
    int64_t sizes[L] = {1000, 37, 5000};
    pr_tensor *w[L], *s[L];
    int64_t total = 0;
    for (int l = 0; l < L; l++) {
        w[l] = pr_tensor_randn(1, &sizes[l]);
        /* quantise so that ties are common */
        for (int64_t i = 0; i < sizes[l]; i++)
            pr_tensor_f32(w[l])[i] = roundf(pr_tensor_f32(w[l])[i] * 8) / 8;
        s[l] = pr_score_magnitude(w[l], 1);
        total += sizes[l];
    }
    entry *all = malloc((size_t)total * sizeof *all);
    double amounts[] = {0, 0.1, 0.37, 0.5, 0.9, 0.999, 1};
    int64_t floors[] = {0, 10, 100, 2000};
    for (size_t a = 0; a < sizeof amounts / sizeof amounts[0]; a++) {
        /* per layer: the reference prunes the first m of each layer's sorted (|w|, index) */
        for (int l = 0; l < L; l++) {
            pr_threshold th;
            int64_t n = sizes[l], m = llround(amounts[a] * (double)n);
            CHECK(pr_threshold_amount(s[l], amounts[a], &th) == 0 && th.count == m);
            for (int64_t i = 0; i < n; i++)
                all[i] = (entry){pr_tensor_f32(s[l])[i], 0, i};
            qsort(all, (size_t)n, sizeof *all, cmp_entry);
            float *want = malloc((size_t)n * sizeof *want);
            for (int64_t i = 0; i < n; i++)
                want[all[i].i] = i < m ? 0.0f : 1.0f;
            CHECK_MSG(eq_release(mask_of(s[l], th), want, n), "layer %d amount %g", l,
                      amounts[a]);
            free(want);
        }
        /* global with floors: the reference walks the global order, skipping entries of
         * layers that reached their floor, until m are pruned */
        for (size_t f = 0; f < sizeof floors / sizeof floors[0]; f++) {
            int64_t k = 0;
            for (int l = 0; l < L; l++)
                for (int64_t i = 0; i < sizes[l]; i++)
                    all[k++] = (entry){pr_tensor_f32(s[l])[i], l, i};
            qsort(all, (size_t)total, sizeof *all, cmp_entry);
            int64_t m = llround(amounts[a] * (double)total), done = 0, lost[L] = {0};
            float *want[L];
            for (int l = 0; l < L; l++) {
                want[l] = malloc((size_t)sizes[l] * sizeof(float));
                for (int64_t i = 0; i < sizes[l]; i++)
                    want[l][i] = 1.0f;
            }
            for (int64_t j = 0; j < total && done < m; j++) {
                int l = all[j].layer;
                if (sizes[l] - lost[l] <= floors[f])
                    continue;
                want[l][all[j].i] = 0.0f;
                lost[l]++;
                done++;
            }
            pr_threshold th[L];
            CHECK(pr_threshold_global(s, L, amounts[a], floors[f], th) == done);
            for (int l = 0; l < L; l++) {
                CHECK_MSG(th[l].count == lost[l] &&
                          eq_release(mask_of(s[l], th[l]), want[l], sizes[l]),
                          "global layer %d amount %g floor %lld", l, amounts[a],
                          (long long)floors[f]);
                free(want[l]);
            }
        }
    }
    free(all);
    for (int l = 0; l < L; l++) {
        pr_tensor_release(w[l]);
        pr_tensor_release(s[l]);
    }
}

int main(void)
{
    RUN(test_magnitude_taylor);
    RUN(test_structure);
    RUN(test_depthwise);
    RUN(test_activity);
    RUN(test_threshold_exact);
    RUN(test_threshold_global);
    RUN(test_mean_std);
    RUN(test_structure_expand);
    RUN(test_nm);
    RUN(test_blocks);
    RUN(test_apply_count_random);
    RUN(test_grad_clip);
    RUN(test_random_vs_sort);
    return CHECK_DONE();
}
