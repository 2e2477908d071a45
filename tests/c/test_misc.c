/* test_misc.c: the non-differentiable functions of ops/misc.c. Sorting and selection are
 * checked against qsort of the same slices on random data of several sizes (with ties). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ops.h"
#include "rng.h"

#define AT(t, i) pr_tensor_get_flat((t), (i))

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Random float32 data with many ties (values rounded to quarters). */
static pr_tensor *tied(int ndim, const int64_t *shape)
{
    pr_tensor *t = pr_tensor_randn(ndim, shape);
    for (int64_t i = 0; i < pr_tensor_numel(t); i++)
        pr_tensor_f32(t)[i] = floorf(pr_tensor_f32(t)[i] * 4) / 4;
    return t;
}

/* Slice j (of outer x inner slices along dim) of a contiguous [.., n, ..] tensor into buf. */
static void gather(const pr_tensor *t, int dim, int64_t j, float *buf)
{
    int64_t inner = 1, n = t->shape[dim];
    for (int d = dim + 1; d < t->ndim; d++)
        inner *= t->shape[d];
    int64_t o = j / inner, i = j % inner;
    for (int64_t k = 0; k < n; k++)
        buf[k] = (float)AT(t, (o * n + k) * inner + i);
}

static int64_t slices_of(const pr_tensor *t, int dim)
{
    return t->shape[dim] ? pr_tensor_numel(t) / t->shape[dim] : 0;
}

static void test_sort(void)
{
    int64_t sizes[] = { 0, 1, 2, 7, 100, 1001 };
    pr_rng_seed(7);
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        int64_t n = sizes[si];
        for (int dim = 0; dim < 2; dim++) {
            int64_t shape[2] = { dim == 0 ? n : 3, dim == 0 ? 3 : n };
            pr_tensor *x = tied(2, shape);
            for (int desc = 0; desc < 2; desc++) {
                pr_tensor *v = NULL, *ix = NULL;
                CHECK(pr_sort(x, dim, desc, &v, &ix) == PR_OK);
                CHECK(v && ix && pr_tensor_same_shape(v, x) && ix->dtype == PR_INT64);
                float *ref = malloc((size_t)(n + 1) * sizeof *ref), *got = malloc((size_t)(n + 1) * sizeof *got);
                float *orig = malloc((size_t)(n + 1) * sizeof *orig);
                pr_tensor *ixf = pr_tensor_to(ix, PR_FLOAT32);
                float *ixs = malloc((size_t)(n + 1) * sizeof *ixs);
                int ok = 1, stable = 1, perm = 1;
                for (int64_t j = 0; j < slices_of(x, dim); j++) {
                    gather(x, dim, j, orig);
                    memcpy(ref, orig, (size_t)n * sizeof *ref);
                    qsort(ref, (size_t)n, sizeof *ref, cmp_float);
                    gather(v, dim, j, got);
                    gather(ixf, dim, j, ixs);
                    for (int64_t k = 0; k < n; k++) {
                        ok &= got[k] == ref[desc ? n - 1 - k : k];
                        perm &= ixs[k] >= 0 && ixs[k] < n && orig[(int64_t)ixs[k]] == got[k];
                        if (k > 0 && got[k] == got[k - 1])
                            stable &= ixs[k] > ixs[k - 1];
                    }
                }
                CHECK_MSG(ok, "n=%lld dim=%d desc=%d values", (long long)n, dim, desc);
                CHECK_MSG(perm, "n=%lld dim=%d desc=%d indices", (long long)n, dim, desc);
                CHECK_MSG(stable, "n=%lld dim=%d desc=%d stability", (long long)n, dim, desc);
                free(ref);
                free(got);
                free(orig);
                free(ixs);
                pr_tensor_release(ixf);
                pr_tensor_release(v);
                pr_tensor_release(ix);
            }
            pr_tensor_release(x);
        }
    }
    /* NaN sorts last ascending, first descending; int64 keeps exact values; one output only */
    float d[5] = { 3, NAN, -1, 2, -5 };
    pr_tensor *x = pr_tensor_from_buffer(PR_FLOAT32, 1, (int64_t[]){ 5 }, d, NULL, NULL);
    pr_tensor *v = NULL;
    CHECK(pr_sort(x, 0, 0, &v, NULL) == PR_OK);
    CHECK(AT(v, 0) == -5 && AT(v, 3) == 3 && isnan(AT(v, 4)));
    pr_tensor_release(v);
    pr_tensor *ix = NULL;
    CHECK(pr_sort(x, -1, 1, NULL, &ix) == PR_OK);
    CHECK(pr_tensor_i64(ix)[0] == 1 && pr_tensor_i64(ix)[1] == 0 && pr_tensor_i64(ix)[4] == 4);
    pr_tensor_release(ix);
    pr_tensor *xi = pr_tensor_zeros(PR_INT64, 1, (int64_t[]){ 3 });
    pr_tensor_i64(xi)[0] = (1LL << 60) + 1;
    pr_tensor_i64(xi)[1] = (1LL << 60);
    pr_tensor_i64(xi)[2] = -4;
    CHECK(pr_sort(xi, 0, 0, &v, NULL) == PR_OK);
    CHECK(pr_tensor_i64(v)[0] == -4 && pr_tensor_i64(v)[1] == (1LL << 60) && pr_tensor_i64(v)[2] == (1LL << 60) + 1);
    pr_tensor_release(v);
    CHECK(pr_sort(x, 1, 0, &v, NULL) < 0 && v == NULL && strstr(pr_last_error(), "dim 1"));
    pr_tensor_release(xi);
    pr_tensor_release(x);
}

static void test_topk_kthvalue(void)
{
    int64_t sizes[] = { 1, 2, 5, 64, 999 };
    pr_rng_seed(11);
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        int64_t n = sizes[si];
        pr_tensor *x = tied(2, (int64_t[]){ 4, n });
        float *ref = malloc((size_t)n * sizeof *ref), *orig = malloc((size_t)n * sizeof *orig);
        int64_t ks[4] = { 0, 1, (n + 1) / 2, n };
        for (int ki = 0; ki < 4; ki++) {
            int64_t k = ks[ki];
            for (int largest = 0; largest < 2; largest++) {
                pr_tensor *v = NULL, *ix = NULL;
                CHECK(pr_topk(x, k, 1, largest, &v, &ix) == PR_OK);
                CHECK(v && v->shape[0] == 4 && v->shape[1] == k);
                int ok = 1;
                for (int64_t j = 0; j < 4; j++) {
                    gather(x, 1, j, orig);
                    memcpy(ref, orig, (size_t)n * sizeof *ref);
                    qsort(ref, (size_t)n, sizeof *ref, cmp_float);
                    for (int64_t m = 0; m < k; m++) {
                        float got = (float)AT(v, j * k + m);
                        int64_t gi = (int64_t)AT(ix, j * k + m);
                        ok &= got == ref[largest ? n - 1 - m : m];
                        ok &= gi >= 0 && gi < n && orig[gi] == got;
                    }
                }
                CHECK_MSG(ok, "topk n=%lld k=%lld largest=%d", (long long)n, (long long)k, largest);
                pr_tensor_release(v);
                pr_tensor_release(ix);
            }
            if (k >= 1) {
                pr_tensor *v = NULL, *ix = NULL;
                CHECK(pr_kthvalue(x, k, -1, 0, &v, &ix) == PR_OK);
                CHECK(v && v->ndim == 1 && v->shape[0] == 4);
                int ok = 1;
                for (int64_t j = 0; j < 4; j++) {
                    gather(x, 1, j, orig);
                    memcpy(ref, orig, (size_t)n * sizeof *ref);
                    qsort(ref, (size_t)n, sizeof *ref, cmp_float);
                    int64_t gi = pr_tensor_i64(ix)[j];
                    ok &= AT(v, j) == ref[k - 1] && gi >= 0 && gi < n && orig[gi] == ref[k - 1];
                }
                CHECK_MSG(ok, "kthvalue n=%lld k=%lld", (long long)n, (long long)k);
                pr_tensor_release(v);
                pr_tensor_release(ix);
            }
        }
        free(ref);
        free(orig);
        pr_tensor_release(x);
    }
    /* along dim 0 with keepdim, and over everything */
    pr_tensor *x = pr_tensor_arange(0, 12, 1, PR_FLOAT32);
    pr_tensor *x2 = pr_tensor_view(x, 2, (int64_t[]){ 3, 4 });
    pr_tensor *v = NULL, *ix = NULL;
    CHECK(pr_kthvalue(x2, 2, 0, 1, &v, &ix) == PR_OK);
    CHECK(v->ndim == 2 && v->shape[0] == 1 && v->shape[1] == 4 && AT(v, 3) == 7 && pr_tensor_i64(ix)[3] == 1);
    pr_tensor_release(v);
    pr_tensor_release(ix);
    CHECK(pr_kthvalue(x2, 5, PR_ALL, 0, &v, NULL) == PR_OK && v->ndim == 0 && AT(v, 0) == 4);
    pr_tensor_release(v);
    CHECK(pr_kthvalue(x2, 4, 0, 0, &v, NULL) < 0 && strstr(pr_last_error(), "k = 4") && strstr(pr_last_error(), "size 3"));
    CHECK(pr_topk(x2, 5, 1, 1, &v, NULL) < 0 && strstr(pr_last_error(), "size 4"));
    pr_tensor *xi = pr_tensor_zeros(PR_INT64, 1, (int64_t[]){ 3 });
    CHECK(pr_topk(xi, 1, 0, 1, &v, NULL) < 0 && strstr(pr_last_error(), "float32"));
    pr_tensor_release(xi);
    pr_tensor_release(x2);
    pr_tensor_release(x);
}

/* numpy's 'linear' quantile from a sorted array */
static double ref_quantile(const float *s, int64_t n, double q)
{
    double pos = q * (double)(n - 1);
    int64_t lo = (int64_t)floor(pos);
    int64_t hi = lo + 1 < n ? lo + 1 : lo;
    return s[lo] + (s[hi] - s[lo]) * (pos - (double)lo);
}

static void test_quantile(void)
{
    /* np.quantile([1, 2, 3, 4], 0.4) == 2.2; np.quantile([4, 1, 3, 2, 10], 0.9) == 7.6 */
    float d1[4] = { 4, 2, 1, 3 }, d2[5] = { 4, 1, 3, 2, 10 };
    pr_tensor *a = pr_tensor_from_buffer(PR_FLOAT32, 1, (int64_t[]){ 4 }, d1, NULL, NULL);
    pr_tensor *b = pr_tensor_from_buffer(PR_FLOAT32, 1, (int64_t[]){ 5 }, d2, NULL, NULL);
    pr_tensor *qa = pr_quantile(a, 0.4, PR_ALL, 0), *qb = pr_quantile(b, 0.9, 0, 0);
    CHECK_NEAR(AT(qa, 0), 2.2, 1e-6);
    CHECK_NEAR(AT(qb, 0), 7.6, 1e-5);
    CHECK(d1[0] == 4 && d1[1] == 2); /* the input is not reordered */
    pr_tensor *q0 = pr_quantile(b, 0, 0, 1), *q1 = pr_quantile(b, 1, 0, 1);
    CHECK(q0->ndim == 1 && q0->shape[0] == 1 && AT(q0, 0) == 1 && AT(q1, 0) == 10);
    CHECK(pr_quantile(b, 1.5, 0, 0) == NULL && strstr(pr_last_error(), "1.5"));
    pr_tensor *all[] = { a, b, qa, qb, q0, q1 };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        pr_tensor_release(all[i]);

    int64_t sizes[] = { 1, 2, 3, 10, 257, 4000 };
    double qs[] = { 0, 0.1, 0.25, 0.5, 0.73, 0.999, 1 };
    pr_rng_seed(3);
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        int64_t n = sizes[si];
        pr_tensor *x = tied(2, (int64_t[]){ n, 3 });
        float *ref = malloc((size_t)n * sizeof *ref);
        for (size_t qi = 0; qi < sizeof qs / sizeof *qs; qi++) {
            pr_tensor *r = pr_quantile(x, qs[qi], 0, 0);
            CHECK(r && r->ndim == 1 && r->shape[0] == 3);
            int ok = 1;
            for (int64_t j = 0; j < 3; j++) {
                gather(x, 0, j, ref);
                qsort(ref, (size_t)n, sizeof *ref, cmp_float);
                ok &= fabs(AT(r, j) - ref_quantile(ref, n, qs[qi])) <= 1e-5;
            }
            CHECK_MSG(ok, "quantile n=%lld q=%g", (long long)n, qs[qi]);
            pr_tensor_release(r);
        }
        /* over everything */
        pr_tensor *r = pr_quantile(x, 0.3, PR_ALL, 0);
        float *all3 = malloc((size_t)(3 * n) * sizeof *all3);
        memcpy(all3, pr_tensor_f32(x), (size_t)(3 * n) * sizeof *all3);
        qsort(all3, (size_t)(3 * n), sizeof *all3, cmp_float);
        CHECK_NEAR(AT(r, 0), ref_quantile(all3, 3 * n, 0.3), 1e-5);
        free(all3);
        free(ref);
        pr_tensor_release(r);
        pr_tensor_release(x);
    }
}

static void test_argmax_norm(void)
{
    float d[6] = { 1, 5, 5, -2, 0, -2 };
    pr_tensor *x = pr_tensor_from_buffer(PR_FLOAT32, 2, (int64_t[]){ 2, 3 }, d, NULL, NULL);
    pr_tensor *am = pr_argmax(x, 1, 0), *an = pr_argmin(x, 1, 1), *aa = pr_argmax(x, PR_ALL, 0);
    pr_tensor *a0 = pr_argmax(x, 0, 0);
    CHECK(am->dtype == PR_INT64 && am->ndim == 1 && pr_tensor_i64(am)[0] == 1 && pr_tensor_i64(am)[1] == 1);
    CHECK(an->ndim == 2 && an->shape[1] == 1 && pr_tensor_i64(an)[0] == 0 && pr_tensor_i64(an)[1] == 0);
    CHECK(aa->ndim == 0 && pr_tensor_i64(aa)[0] == 1);
    CHECK(pr_tensor_i64(a0)[0] == 0 && pr_tensor_i64(a0)[1] == 0 && pr_tensor_i64(a0)[2] == 0);
    pr_tensor *xt = pr_tensor_transpose(x, 0, 1); /* strided input */
    pr_tensor *at = pr_argmin(xt, 0, 0);
    CHECK(pr_tensor_i64(at)[0] == 0 && pr_tensor_i64(at)[1] == 0);

    pr_tensor *n1 = pr_norm(x, 1, 1, 0), *n2 = pr_norm(x, 2, PR_ALL, 0), *ni = pr_norm(x, INFINITY, 0, 1);
    pr_tensor *n3 = pr_norm(x, 3, 1, 0);
    CHECK(AT(n1, 0) == 11 && AT(n1, 1) == 4);
    CHECK_NEAR(AT(n2, 0), sqrt(1 + 25 + 25 + 4 + 0 + 4), 1e-5);
    CHECK(ni->ndim == 2 && ni->shape[0] == 1 && AT(ni, 0) == 2 && AT(ni, 1) == 5 && AT(ni, 2) == 5);
    CHECK_NEAR(AT(n3, 0), cbrt(1 + 125 + 125), 1e-4);
    CHECK(pr_norm(x, 0, 1, 0) == NULL && strstr(pr_last_error(), "p must be"));
    pr_tensor *e = pr_tensor_zeros(PR_FLOAT32, 2, (int64_t[]){ 0, 3 });
    CHECK(pr_argmax(e, 0, 0) == NULL && strstr(pr_last_error(), "[0,3]"));
    pr_tensor *ne = pr_norm(e, 2, 0, 0);
    CHECK(ne && ne->shape[0] == 3 && AT(ne, 2) == 0);

    /* random data against a plain loop */
    pr_rng_seed(5);
    pr_tensor *r = pr_tensor_randn(3, (int64_t[]){ 5, 17, 4 });
    pr_tensor *ar = pr_argmax(r, 1, 0);
    int ok = 1;
    for (int a = 0; a < 5; a++)
        for (int c = 0; c < 4; c++) {
            int best = 0;
            for (int b = 1; b < 17; b++)
                if (AT(r, (a * 17 + b) * 4 + c) > AT(r, (a * 17 + best) * 4 + c))
                    best = b;
            ok &= pr_tensor_i64(ar)[a * 4 + c] == best;
        }
    CHECK(ok);
    pr_tensor *all[] = { x, am, an, aa, a0, xt, at, n1, n2, ni, n3, e, ne, r, ar };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        pr_tensor_release(all[i]);
}

static void test_compare_sign_masked(void)
{
    pr_tensor *a = pr_tensor_arange(0, 6, 1, PR_FLOAT32);
    pr_tensor *a2 = pr_tensor_view(a, 2, (int64_t[]){ 2, 3 });
    pr_tensor *b = pr_tensor_arange(1, 4, 1, PR_INT64); /* [1,2,3] broadcast over rows */
    pr_tensor *lt = pr_compare(a2, b, PR_CMP_LT), *eq = pr_compare(a2, b, PR_CMP_EQ);
    pr_tensor *ge = pr_compare(b, a2, PR_CMP_GE);
    CHECK(lt->dtype == PR_FLOAT32 && lt->shape[0] == 2 && lt->shape[1] == 3);
    float wl[6] = { 1, 1, 1, 0, 0, 0 }, we[6] = { 0, 0, 0, 0, 0, 0 }, wg[6] = { 1, 1, 1, 0, 0, 0 };
    int ok = 1;
    for (int i = 0; i < 6; i++)
        ok &= AT(lt, i) == wl[i] && AT(eq, i) == we[i] && AT(ge, i) == wg[i];
    CHECK(ok);
    pr_tensor *s = pr_tensor_scalar(2);
    pr_tensor *ne = pr_compare(a2, s, PR_CMP_NE);
    CHECK(AT(ne, 2) == 0 && AT(ne, 3) == 1);
    pr_tensor *bad = pr_tensor_zeros(PR_FLOAT32, 1, (int64_t[]){ 2 });
    CHECK(pr_compare(a2, bad, PR_CMP_GT) == NULL && strstr(pr_last_error(), "[2,3]") && strstr(pr_last_error(), "[2]"));

    pr_tensor *c = pr_add_scalar(a2, -2.5);
    pr_tensor *sg = c ? pr_sign(c) : NULL;
    CHECK(sg && AT(sg, 0) == -1 && AT(sg, 2) == -1 && AT(sg, 3) == 1);

    pr_tensor *m = pr_masked_select(a2, lt);
    CHECK(m && m->ndim == 1 && m->shape[0] == 3 && AT(m, 0) == 0 && AT(m, 2) == 2);
    pr_tensor *col = pr_tensor_zeros(PR_UINT8, 2, (int64_t[]){ 2, 1 });
    pr_tensor_u8(col)[1] = 1;
    pr_tensor *m2 = pr_masked_select(a2, col); /* mask broadcast: the second row */
    CHECK(m2 && m2->shape[0] == 3 && AT(m2, 0) == 3 && AT(m2, 2) == 5);
    pr_tensor *all[] = { a, a2, b, lt, eq, ge, s, ne, bad, c, sg, m, col, m2 };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        pr_tensor_release(all[i]);
}

static void test_stack(void)
{
    pr_tensor *x = pr_tensor_arange(0, 6, 1, PR_FLOAT32);
    pr_tensor *a = pr_tensor_view(x, 2, (int64_t[]){ 2, 3 });
    pr_tensor *b = pr_tensor_full(PR_FLOAT32, 2, (int64_t[]){ 2, 3 }, -1);
    a->requires_grad = 1;
    pr_tensor *s0 = pr_stack((pr_tensor *[]){ a, b }, 2, 0), *s2 = pr_stack((pr_tensor *[]){ a, b }, 2, -1);
    CHECK(s0 && s0->ndim == 3 && s0->shape[0] == 2 && s0->shape[1] == 2 && s0->shape[2] == 3);
    CHECK(AT(s0, 5) == 5 && AT(s0, 6) == -1);
    CHECK(s2 && s2->shape[2] == 2 && AT(s2, 0) == 0 && AT(s2, 1) == -1 && AT(s2, 2) == 1);
    /* a stack of tracked tensors has a gradient: each input gets its slice */
    pr_tensor *g = pr_tensor_arange(0, 12, 1, PR_FLOAT32);
    pr_tensor *g3 = pr_tensor_view(g, 3, (int64_t[]){ 2, 3, 2 });
    CHECK(pr_backward(s2, g3) == PR_OK);
    CHECK(a->grad && AT(a->grad, 0) == 0 && AT(a->grad, 1) == 2 && AT(a->grad, 5) == 10);
    pr_tensor *c = pr_tensor_zeros(PR_FLOAT32, 1, (int64_t[]){ 6 });
    CHECK(pr_stack((pr_tensor *[]){ a, c }, 2, 0) == NULL && strstr(pr_last_error(), "[6]") &&
          strstr(pr_last_error(), "[2,3]"));
    CHECK(pr_stack((pr_tensor *[]){ a, b }, 2, 3) == NULL);
    pr_tensor *all[] = { x, a, b, s0, s2, g, g3, c };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        pr_tensor_release(all[i]);
}

static void test_inplace(void)
{
    pr_tensor *a = pr_tensor_zeros(PR_FLOAT32, 2, (int64_t[]){ 2, 3 });
    pr_tensor *row = pr_tensor_arange(1, 4, 1, PR_FLOAT32);
    CHECK(pr_add_(a, row, 2.0) == PR_OK);
    CHECK(AT(a, 0) == 2 && AT(a, 5) == 6);
    CHECK(pr_mul_(a, row) == PR_OK);
    CHECK(AT(a, 0) == 2 && AT(a, 5) == 18);
    CHECK(pr_scale_(a, 0.5) == PR_OK);
    CHECK(AT(a, 4) == 4 && AT(a, 5) == 9);
    /* a strided destination and an overlapping source */
    pr_tensor *sq = pr_tensor_arange(0, 4, 1, PR_FLOAT32);
    pr_tensor *sq2 = pr_tensor_view(sq, 2, (int64_t[]){ 2, 2 });
    pr_tensor *sqt = pr_tensor_transpose(sq2, 0, 1);
    CHECK(pr_add_(sq2, sqt, 1.0) == PR_OK); /* sq + sq^T, symmetric */
    CHECK(AT(sq2, 0) == 0 && AT(sq2, 1) == 3 && AT(sq2, 2) == 3 && AT(sq2, 3) == 6);
    CHECK(pr_scale_(sqt, 2) == PR_OK && AT(sq2, 3) == 12);
    /* integer destination */
    pr_tensor *ai = pr_tensor_full(PR_INT64, 1, (int64_t[]){ 2 }, 3);
    CHECK(pr_add_(ai, ai, 1.0) == PR_OK && pr_tensor_i64(ai)[1] == 6);
    CHECK(pr_add_(a, sq2, 1.0) < 0 && strstr(pr_last_error(), "[2,2]") && strstr(pr_last_error(), "[2,3]"));

    /* refused on a tracked tensor while grad mode is on, allowed under no-grad */
    a->requires_grad = 1;
    CHECK(pr_scale_(a, 2) < 0 && strstr(pr_last_error(), "requires grad"));
    CHECK(pr_add_(a, row, 1) < 0 && AT(a, 0) == 1);
    int prev = pr_set_grad_enabled(0);
    CHECK(pr_add_(a, row, 1) == PR_OK && AT(a, 0) == 2);
    pr_set_grad_enabled(prev);
    pr_tensor *all[] = { a, row, sq, sq2, sqt, ai };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        pr_tensor_release(all[i]);
}

int main(void)
{
    RUN(test_sort);
    RUN(test_topk_kthvalue);
    RUN(test_quantile);
    RUN(test_argmax_norm);
    RUN(test_compare_sign_masked);
    RUN(test_stack);
    RUN(test_inplace);
    return CHECK_DONE();
}
