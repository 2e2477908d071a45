/* test_matmul.c: matmul and linear against a naive triple loop: random shapes with size-1 and
 * non-square dims, transposed and expanded views (the transpose-flag and packing paths),
 * batched 3-D with broadcasting, NumPy's 1-D rule, empty dims, and the error messages. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ops.h"
#include "rng.h"

#define DIMS(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}

/* Element of t at a multi-index (any strides). */
static double at(const pr_tensor *t, const int64_t *ix)
{
    int64_t off = 0;
    for (int d = 0; d < t->ndim; d++)
        off += ix[d] * t->stride[d];
    return ((const float *)pr_tensor_data(t))[off];
}

/* max |c - a@b| over the broadcast batch, by the definition; c is the result to check. */
static double ref_error(const pr_tensor *a, const pr_tensor *b, const pr_tensor *c)
{
    int na = a->ndim, nb = b->ndim, nc = c->ndim;
    int64_t M = a->shape[na - 2], K = a->shape[na - 1], N = b->shape[nb - 1];
    int64_t nbatch = 1;
    for (int d = 0; d < nc - 2; d++)
        nbatch *= c->shape[d];
    double worst = 0.0;
    for (int64_t bi = 0; bi < nbatch; bi++) {
        int64_t cix[PR_MAX_DIMS], aix[PR_MAX_DIMS], bix[PR_MAX_DIMS], rem = bi;
        for (int d = nc - 3; d >= 0; d--) {
            cix[d] = rem % c->shape[d];
            rem /= c->shape[d];
        }
        for (int d = 0; d < na - 2; d++) { /* right-aligned, size-1 dims broadcast */
            int dc = d + (nc - na);
            aix[d] = a->shape[d] == 1 ? 0 : cix[dc];
        }
        for (int d = 0; d < nb - 2; d++) {
            int dc = d + (nc - nb);
            bix[d] = b->shape[d] == 1 ? 0 : cix[dc];
        }
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0.0;
                for (int64_t k = 0; k < K; k++) {
                    aix[na - 2] = i;
                    aix[na - 1] = k;
                    bix[nb - 2] = k;
                    bix[nb - 1] = j;
                    s += at(a, aix) * at(b, bix);
                }
                cix[nc - 2] = i;
                cix[nc - 1] = j;
                double e = fabs(at(c, cix) - s);
                if (e > worst || e != e)
                    worst = e != e ? INFINITY : e;
            }
    }
    return worst;
}

static int shape_is(const pr_tensor *t, int ndim, const int64_t *shape)
{
    if (!t || t->ndim != ndim)
        return 0;
    for (int d = 0; d < ndim; d++)
        if (t->shape[d] != shape[d])
            return 0;
    return 1;
}

static pr_tensor *randn(int ndim, const int64_t *shape) { return pr_tensor_randn(ndim, shape); }

/* Checks a@b (both released here) has shape `want` and the reference values. */
static void check_product(pr_tensor *a, pr_tensor *b, int ndim, const int64_t *want, const char *what)
{
    pr_tensor *c = pr_matmul(a, b);
    CHECK_MSG(c != NULL, "%s: %s", what, pr_last_error());
    if (c) {
        CHECK_MSG(shape_is(c, ndim, want), "%s: wrong output shape", what);
        CHECK_MSG(pr_tensor_is_contiguous(c), "%s: output not contiguous", what);
        double e = ref_error(a, b, c);
        CHECK_MSG(e < 1e-4 * (1 + a->shape[a->ndim - 1]), "%s: error %g", what, e);
    }
    pr_tensor_release(c);
    pr_tensor_release(a);
    pr_tensor_release(b);
}

static void test_random_2d(void)
{
    pr_rng_seed(11);
    for (int it = 0; it < 40; it++) {
        /* sizes 1..17 with 1 frequent: size-1 dims are where layouts get ambiguous */
        int64_t M = pr_rng_below(4) ? 1 + pr_rng_below(17) : 1;
        int64_t K = pr_rng_below(4) ? 1 + pr_rng_below(17) : 1;
        int64_t N = pr_rng_below(4) ? 1 + pr_rng_below(17) : 1;
        char what[128];
        snprintf(what, sizeof what, "[%lld,%lld]@[%lld,%lld]", (long long)M, (long long)K,
                 (long long)K, (long long)N);
        check_product(randn(DIMS(M, K)), randn(DIMS(K, N)), DIMS(M, N), what);
    }
    check_product(randn(DIMS(64, 130)), randn(DIMS(130, 97)), DIMS(64, 97), "[64,130]@[130,97]");
}

static void test_transposed_views(void)
{
    pr_rng_seed(12);
    int64_t M = 5, K = 7, N = 3;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            pr_tensor *a0 = ta ? randn(DIMS(K, M)) : randn(DIMS(M, K));
            pr_tensor *b0 = tb ? randn(DIMS(N, K)) : randn(DIMS(K, N));
            pr_tensor *a = ta ? pr_tensor_transpose(a0, 0, 1) : (pr_tensor_retain(a0), a0);
            pr_tensor *b = tb ? pr_tensor_transpose(b0, 0, 1) : (pr_tensor_retain(b0), b0);
            pr_tensor_release(a0);
            pr_tensor_release(b0);
            CHECK(ta == !pr_tensor_is_contiguous(a));
            char what[32];
            snprintf(what, sizeof what, "transposes %d %d", ta, tb);
            check_product(a, b, DIMS(M, N), what);
        }
    /* a narrowed transposed view: leading dimension larger than the row */
    pr_tensor *w = randn(DIMS(9, 6));
    pr_tensor *wn = pr_tensor_narrow(w, 1, 1, 4);   /* [9,4], row stride 6 */
    pr_tensor *wt = pr_tensor_transpose(wn, 0, 1);  /* [4,9] */
    check_product(wt, randn(DIMS(9, 2)), DIMS(4, 2), "narrowed transpose");
    pr_tensor_release(wn);
    pr_tensor_release(w);
}

/* Layouts BLAS cannot describe (stride-0 rows or columns) go through the packing path. */
static void test_expanded_views(void)
{
    pr_rng_seed(13);
    pr_tensor *col = randn(DIMS(4, 1)), *row = randn(DIMS(1, 5));
    pr_tensor *a = pr_tensor_expand(col, DIMS(4, 5)); /* column stride 0 */
    pr_tensor *b = pr_tensor_expand(row, DIMS(5, 5)); /* row stride 0 */
    pr_tensor_release(col);
    pr_tensor_release(row);
    CHECK(a && b);
    if (a && b) {
        pr_tensor_retain(a);
        check_product(a, b, DIMS(4, 5), "expanded a and b");
        check_product(a, randn(DIMS(5, 3)), DIMS(4, 3), "expanded a");
    }
}

static void test_batched(void)
{
    pr_rng_seed(14);
    check_product(randn(DIMS(3, 4, 5)), randn(DIMS(3, 5, 2)), DIMS(3, 4, 2), "[3,4,5]@[3,5,2]");
    check_product(randn(DIMS(3, 4, 5)), randn(DIMS(5, 2)), DIMS(3, 4, 2), "[3,4,5]@[5,2]");
    check_product(randn(DIMS(4, 5)), randn(DIMS(3, 5, 2)), DIMS(3, 4, 2), "[4,5]@[3,5,2]");
    check_product(randn(DIMS(1, 4, 5)), randn(DIMS(3, 5, 2)), DIMS(3, 4, 2), "[1,4,5]@[3,5,2]");
    check_product(randn(DIMS(3, 4, 5)), randn(DIMS(1, 5, 2)), DIMS(3, 4, 2), "[3,4,5]@[1,5,2]");
    check_product(randn(DIMS(2, 1, 4, 5)), randn(DIMS(3, 5, 1)), DIMS(2, 3, 4, 1), "[2,1,4,5]@[3,5,1]");
    check_product(randn(DIMS(3, 1, 5)), randn(DIMS(5, 1)), DIMS(3, 1, 1), "[3,1,5]@[5,1]");
    /* batch-transposed operands: permuted views */
    pr_tensor *x = randn(DIMS(4, 3, 5)), *y = randn(DIMS(3, 2, 5));
    pr_tensor *xp = pr_tensor_permute(x, (const int[]){1, 0, 2});  /* [3,4,5], batch stride 5 */
    pr_tensor *yt = pr_tensor_transpose(y, 1, 2);                   /* [3,5,2] */
    pr_tensor_release(x);
    pr_tensor_release(y);
    check_product(xp, yt, DIMS(3, 4, 2), "permuted batch views");
    /* the stacked fast path must not be taken for a non-stackable left operand */
    pr_tensor *z = randn(DIMS(4, 3, 5));
    pr_tensor *zp = pr_tensor_permute(z, (const int[]){1, 0, 2});
    pr_tensor_release(z);
    check_product(zp, randn(DIMS(5, 6)), DIMS(3, 4, 6), "permuted [3,4,5]@[5,6]");
}

/* NumPy's 1-D rule: a vector is a row on the left, a column on the right, and that dim is
 * dropped from the result. Checked against the same product with explicit [1,K] / [K,1]. */
static void check_vector_rule(pr_tensor *a, pr_tensor *b, int ndim, const int64_t *want, const char *what)
{
    pr_tensor *c = pr_matmul(a, b);
    CHECK_MSG(shape_is(c, ndim, want), "%s: shape (%s)", what, c ? "" : pr_last_error());
    pr_tensor *a2 = a->ndim == 1 ? pr_tensor_unsqueeze(a, 0) : (pr_tensor_retain(a), a);
    pr_tensor *b2 = b->ndim == 1 ? pr_tensor_unsqueeze(b, 1) : (pr_tensor_retain(b), b);
    pr_tensor *c2 = pr_matmul(a2, b2);
    CHECK(c2 != NULL);
    if (c && c2) {
        CHECK(pr_tensor_numel(c) == pr_tensor_numel(c2));
        CHECK_MSG(ref_error(a2, b2, c2) < 1e-4, "%s: explicit product wrong", what);
        double e = 0.0;
        for (int64_t i = 0; i < pr_tensor_numel(c); i++)
            e = fmax(e, fabs(pr_tensor_get_flat(c, i) - pr_tensor_get_flat(c2, i)));
        CHECK_MSG(e == 0.0, "%s: differs from the explicit product by %g", what, e);
    }
    pr_tensor_release(c);
    pr_tensor_release(c2);
    pr_tensor_release(a2);
    pr_tensor_release(b2);
    pr_tensor_release(a);
    pr_tensor_release(b);
}

static void test_vectors(void)
{
    pr_rng_seed(17);
    check_vector_rule(randn(DIMS(4)), randn(DIMS(4, 3)), DIMS(3), "[4]@[4,3]");
    check_vector_rule(randn(DIMS(2, 4)), randn(DIMS(4)), DIMS(2), "[2,4]@[4]");
    check_vector_rule(randn(DIMS(4)), randn(DIMS(4)), 0, NULL, "[4]@[4]");
    check_vector_rule(randn(DIMS(2, 3, 4)), randn(DIMS(4)), DIMS(2, 3), "[2,3,4]@[4]");
    check_vector_rule(randn(DIMS(4)), randn(DIMS(2, 4, 5)), DIMS(2, 5), "[4]@[2,4,5]");
    /* dot product by hand */
    float av[3] = {1, 2, 3}, bv[3] = {4, -5, 6};
    pr_tensor *a = pr_tensor_empty(PR_FLOAT32, DIMS(3)), *b = pr_tensor_empty(PR_FLOAT32, DIMS(3));
    memcpy(pr_tensor_f32(a), av, sizeof av);
    memcpy(pr_tensor_f32(b), bv, sizeof bv);
    pr_tensor *d = pr_matmul(a, b);
    CHECK(d && d->ndim == 0 && pr_tensor_get_flat(d, 0) == 12.0);
    pr_tensor_release(d);
    pr_tensor_release(a);
    pr_tensor_release(b);
}

static void test_empty(void)
{
    pr_tensor *a = pr_tensor_zeros(PR_FLOAT32, DIMS(2, 0)), *b = pr_tensor_zeros(PR_FLOAT32, DIMS(0, 3));
    pr_tensor *c = pr_matmul(a, b);
    CHECK(shape_is(c, DIMS(2, 3)));
    if (c)
        for (int64_t i = 0; i < 6; i++)
            CHECK(pr_tensor_get_flat(c, i) == 0.0);
    pr_tensor_release(c);
    pr_tensor *e = pr_tensor_zeros(PR_FLOAT32, DIMS(0, 3)), *f = pr_tensor_randn(DIMS(3, 4));
    c = pr_matmul(e, f);
    CHECK(shape_is(c, DIMS(0, 4)));
    pr_tensor_release(c);
    pr_tensor_release(a);
    pr_tensor_release(b);
    pr_tensor_release(e);
    pr_tensor_release(f);
}

static void test_errors(void)
{
    pr_tensor *a = pr_tensor_zeros(PR_FLOAT32, DIMS(2, 3)), *b = pr_tensor_zeros(PR_FLOAT32, DIMS(4, 5));
    pr_tensor *v = pr_tensor_zeros(PR_FLOAT32, DIMS(3));
    pr_tensor *i = pr_tensor_zeros(PR_INT64, DIMS(3, 4));
    pr_tensor *c = pr_matmul(a, b);
    CHECK(c == NULL);
    CHECK_MSG(strcmp(pr_last_error(), "matmul: [2,3] and [4,5] do not match") == 0, "got '%s'", pr_last_error());
    pr_tensor *x = pr_tensor_zeros(PR_FLOAT32, DIMS(2, 2, 3)), *y = pr_tensor_zeros(PR_FLOAT32, DIMS(3, 3, 4));
    CHECK(pr_matmul(x, y) == NULL);
    CHECK_MSG(strcmp(pr_last_error(), "matmul: [2,2,3] and [3,3,4] do not match") == 0, "got '%s'", pr_last_error());
    CHECK(pr_matmul(b, v) == NULL);
    CHECK_MSG(strcmp(pr_last_error(), "matmul: [4,5] and [3] do not match") == 0, "got '%s'", pr_last_error());
    CHECK(pr_matmul(v, b) == NULL);
    CHECK_MSG(strcmp(pr_last_error(), "matmul: [3] and [4,5] do not match") == 0, "got '%s'", pr_last_error());
    pr_tensor *s = pr_tensor_scalar(1.0);
    CHECK(pr_matmul(s, v) == NULL);
    CHECK_MSG(strcmp(pr_last_error(), "matmul: expected vectors or matrices, got [] and [3]") == 0,
              "got '%s'", pr_last_error());
    pr_tensor_release(s);
    CHECK(pr_matmul(a, i) == NULL);
    CHECK_MSG(strstr(pr_last_error(), "float32"), "got '%s'", pr_last_error());
    CHECK(pr_linear(a, b, NULL) == NULL);
    CHECK_MSG(strcmp(pr_last_error(), "linear: x [2,3] and weight [4,5] do not match") == 0, "got '%s'", pr_last_error());
    pr_tensor *w = pr_tensor_zeros(PR_FLOAT32, DIMS(4, 3)), *bias = pr_tensor_zeros(PR_FLOAT32, DIMS(5));
    CHECK(pr_linear(a, w, bias) == NULL);
    CHECK_MSG(strcmp(pr_last_error(), "linear: bias [5] does not match weight [4,3]") == 0, "got '%s'", pr_last_error());
    pr_tensor_release(a);
    pr_tensor_release(b);
    pr_tensor_release(v);
    pr_tensor_release(i);
    pr_tensor_release(x);
    pr_tensor_release(y);
    pr_tensor_release(w);
    pr_tensor_release(bias);
}

/* linear == x @ W^T + b, on the reference loop. */
static void check_linear(pr_tensor *x, pr_tensor *w, pr_tensor *b, const char *what)
{
    pr_tensor *y = pr_linear(x, w, b);
    CHECK_MSG(y != NULL, "%s: %s", what, pr_last_error());
    if (y) {
        int64_t rows = 1, nin = w->shape[1], nout = w->shape[0];
        for (int d = 0; d < x->ndim - 1; d++)
            rows *= x->shape[d];
        CHECK_MSG(y->ndim == x->ndim && y->shape[y->ndim - 1] == nout, "%s: shape", what);
        pr_tensor *xc = pr_tensor_contiguous(x);
        double worst = 0.0;
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < nout; j++) {
                double s = b ? pr_tensor_get_flat(b, j) : 0.0;
                for (int64_t k = 0; k < nin; k++)
                    s += pr_tensor_get_flat(xc, i * nin + k) * at(w, (const int64_t[]){j, k});
                worst = fmax(worst, fabs(pr_tensor_get_flat(y, i * nout + j) - s));
            }
        CHECK_MSG(worst < 1e-4 * (1 + nin), "%s: error %g", what, worst);
        pr_tensor_release(xc);
    }
    pr_tensor_release(y);
    pr_tensor_release(x);
    pr_tensor_release(w);
    pr_tensor_release(b);
}

static void test_linear(void)
{
    pr_rng_seed(15);
    check_linear(randn(DIMS(8, 5)), randn(DIMS(3, 5)), randn(DIMS(3)), "[8,5] W[3,5] b");
    check_linear(randn(DIMS(8, 5)), randn(DIMS(3, 5)), NULL, "no bias");
    check_linear(randn(DIMS(1, 1)), randn(DIMS(1, 1)), randn(DIMS(1)), "[1,1]");
    check_linear(randn(DIMS(2, 3, 5)), randn(DIMS(4, 5)), randn(DIMS(4)), "3-D x");
    check_linear(randn(DIMS(5)), randn(DIMS(4, 5)), randn(DIMS(4)), "1-D x");
    check_linear(randn(DIMS(33, 70)), randn(DIMS(20, 70)), randn(DIMS(20)), "[33,70] W[20,70]");
    pr_tensor *w0 = randn(DIMS(5, 3));
    pr_tensor *wt = pr_tensor_transpose(w0, 0, 1);
    pr_tensor_release(w0);
    check_linear(randn(DIMS(6, 5)), wt, randn(DIMS(3)), "transposed W");
    check_linear(pr_tensor_zeros(PR_FLOAT32, DIMS(0, 5)), randn(DIMS(3, 5)), randn(DIMS(3)), "no rows");
    check_linear(pr_tensor_zeros(PR_FLOAT32, DIMS(2, 0)), pr_tensor_zeros(PR_FLOAT32, DIMS(3, 0)),
                 randn(DIMS(3)), "no inputs: bias only");
}

/* The backward of linear against the closed forms, with a non-trivial upstream gradient. */
static void test_linear_backward(void)
{
    pr_rng_seed(16);
    pr_tensor *x = randn(DIMS(6, 4)), *w = randn(DIMS(3, 4)), *b = randn(DIMS(3));
    pr_tensor *g = randn(DIMS(6, 3));
    x->requires_grad = w->requires_grad = b->requires_grad = 1;
    pr_tensor *y = pr_linear(x, w, b);
    CHECK(y && pr_backward(y, g) == PR_OK);
    CHECK(x->grad && w->grad && b->grad);
    if (x->grad && w->grad && b->grad) {
        double e = 0.0;
        for (int64_t i = 0; i < 6; i++)
            for (int64_t k = 0; k < 4; k++) { /* dx = g W */
                double s = 0.0;
                for (int64_t j = 0; j < 3; j++)
                    s += pr_tensor_get_flat(g, i * 3 + j) * pr_tensor_get_flat(w, j * 4 + k);
                e = fmax(e, fabs(s - pr_tensor_get_flat(x->grad, i * 4 + k)));
            }
        for (int64_t j = 0; j < 3; j++) {
            double db = 0.0;
            for (int64_t i = 0; i < 6; i++)
                db += pr_tensor_get_flat(g, i * 3 + j);
            e = fmax(e, fabs(db - pr_tensor_get_flat(b->grad, j)));
            for (int64_t k = 0; k < 4; k++) { /* dW = g^T x */
                double s = 0.0;
                for (int64_t i = 0; i < 6; i++)
                    s += pr_tensor_get_flat(g, i * 3 + j) * pr_tensor_get_flat(x, i * 4 + k);
                e = fmax(e, fabs(s - pr_tensor_get_flat(w->grad, j * 4 + k)));
            }
        }
        CHECK_MSG(e < 1e-5, "linear backward error %g", e);
    }
    pr_tensor_release(y);
    pr_tensor_release(g);
    pr_tensor_release(x);
    pr_tensor_release(w);
    pr_tensor_release(b);
}

int main(void)
{
    RUN(test_random_2d);
    RUN(test_transposed_views);
    RUN(test_expanded_views);
    RUN(test_batched);
    RUN(test_vectors);
    RUN(test_empty);
    RUN(test_errors);
    RUN(test_linear);
    RUN(test_linear_backward);
    return CHECK_DONE();
}
