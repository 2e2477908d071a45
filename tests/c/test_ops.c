/* test_ops.c: forward values of the elementwise, broadcasting and reduction ops on hand-worked
 * examples, the paths of the broadcast walker (flat, scalar, row, column, strided), a few
 * hand-derived backwards (ties, chains, scalar helpers), and the error messages. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ops.h"
#include "rng.h"

#define DIMS(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}
#define SC 0, (const int64_t *)NULL /* 0-d */
#define VALS(...) (const float[]){__VA_ARGS__}

/* A float32 tensor of the given shape and values (a new reference). */
static pr_tensor *T(int ndim, const int64_t *shape, const float *v)
{
    pr_tensor *t = pr_tensor_empty(PR_FLOAT32, ndim, shape);
    if (t)
        memcpy(pr_tensor_f32(t), v, (size_t)pr_tensor_numel(t) * sizeof *v);
    return t;
}

/* t has `ndim`/`shape` and values v (within tol; NaN matches NaN). Releases t. */
static int expect(pr_tensor *t, int ndim, const int64_t *shape, const float *v, double tol)
{
    int ok = t != NULL && t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++)
        ok = t->shape[d] == shape[d];
    if (ok) {
        int64_t n = pr_tensor_numel(t);
        for (int64_t i = 0; i < n; i++) {
            double x = pr_tensor_get_flat(t, i);
            if (isnan(v[i]) ? !isnan(x) : !(x == v[i] || fabs(x - v[i]) <= tol)) {
                fprintf(stderr, "  element %lld: got %.7g, want %.7g\n", (long long)i, x, v[i]);
                ok = 0;
            }
        }
    } else if (!t) {
        fprintf(stderr, "  NULL: %s\n", pr_last_error());
    } else {
        char s[96];
        fprintf(stderr, "  shape %s\n", pr_tensor_shape_str(t, s, sizeof s));
    }
    pr_tensor_release(t);
    return ok;
}

#define EXPECT(t, shape_and_ndim, vals) CHECK(expect((t), shape_and_ndim, vals, 1e-6))

static void test_unary(void)
{
    pr_tensor *x = T(DIMS(2, 3), VALS(-2.0f, -0.5f, 0.0f, 0.25f, 1.5f, 4.0f));
    EXPECT(pr_neg(x), DIMS(2, 3), VALS(2.0f, 0.5f, -0.0f, -0.25f, -1.5f, -4.0f));
    EXPECT(pr_abs(x), DIMS(2, 3), VALS(2.0f, 0.5f, 0.0f, 0.25f, 1.5f, 4.0f));
    EXPECT(pr_relu(x), DIMS(2, 3), VALS(0, 0, 0, 0.25f, 1.5f, 4.0f));
    EXPECT(pr_leaky_relu(x, 0.1), DIMS(2, 3), VALS(-0.2f, -0.05f, 0, 0.25f, 1.5f, 4.0f));
    EXPECT(pr_clamp(x, -1.0, 1.0), DIMS(2, 3), VALS(-1.0f, -0.5f, 0, 0.25f, 1.0f, 1.0f));
    EXPECT(pr_clamp(x, 0.2, HUGE_VAL), DIMS(2, 3), VALS(0.2f, 0.2f, 0.2f, 0.25f, 1.5f, 4.0f));
    EXPECT(pr_tanh(x), DIMS(2, 3), VALS(tanhf(-2), tanhf(-0.5f), 0, tanhf(0.25f), tanhf(1.5f), tanhf(4)));
    EXPECT(pr_exp(x), DIMS(2, 3), VALS(expf(-2), expf(-0.5f), 1, expf(0.25f), expf(1.5f), expf(4)));
    EXPECT(pr_sigmoid(x), DIMS(2, 3),
           VALS(0.11920292f, 0.37754067f, 0.5f, 0.56217650f, 0.81757448f, 0.98201379f));
    pr_tensor *p = T(DIMS(4), VALS(0.25f, 1.0f, 4.0f, 0.0f));
    EXPECT(pr_sqrt(p), DIMS(4), VALS(0.5f, 1.0f, 2.0f, 0.0f));
    EXPECT(pr_log(p), DIMS(4), VALS(logf(0.25f), 0.0f, logf(4.0f), -INFINITY));
    /* saturated sigmoid stays finite and exact at the ends */
    pr_tensor *big = T(DIMS(2), VALS(-200.0f, 200.0f));
    EXPECT(pr_sigmoid(big), DIMS(2), VALS(0.0f, 1.0f));
    /* NaN passes through relu and clamp instead of being hidden */
    pr_tensor *nan = T(DIMS(1), VALS(NAN));
    EXPECT(pr_relu(nan), DIMS(1), VALS(NAN));
    EXPECT(pr_clamp(nan, -1, 1), DIMS(1), VALS(NAN));
    /* a non-contiguous input gives a contiguous result in the view's order */
    pr_tensor *xt = pr_tensor_transpose(x, 0, 1);
    pr_tensor *nt = pr_neg(xt);
    CHECK(nt && pr_tensor_is_contiguous(nt));
    EXPECT(nt, DIMS(3, 2), VALS(2.0f, -0.25f, 0.5f, -1.5f, -0.0f, -4.0f));
    pr_tensor_release(xt);
    pr_tensor_release(nan);
    pr_tensor_release(big);
    pr_tensor_release(p);
    pr_tensor_release(x);
}

static void test_binary(void)
{
    pr_tensor *a = T(DIMS(2, 3), VALS(1, 2, 3, 4, 5, 6));
    pr_tensor *row = T(DIMS(3), VALS(10, 20, 30));
    pr_tensor *col = T(DIMS(2, 1), VALS(100, 200));
    pr_tensor *s = pr_tensor_scalar(2.0);
    EXPECT(pr_add(a, a), DIMS(2, 3), VALS(2, 4, 6, 8, 10, 12));
    EXPECT(pr_add(a, row), DIMS(2, 3), VALS(11, 22, 33, 14, 25, 36));
    EXPECT(pr_add(row, a), DIMS(2, 3), VALS(11, 22, 33, 14, 25, 36));
    EXPECT(pr_sub(a, col), DIMS(2, 3), VALS(-99, -98, -97, -196, -195, -194));
    EXPECT(pr_sub(s, a), DIMS(2, 3), VALS(1, 0, -1, -2, -3, -4));
    EXPECT(pr_mul(a, s), DIMS(2, 3), VALS(2, 4, 6, 8, 10, 12));
    EXPECT(pr_mul(col, row), DIMS(2, 3), VALS(1000, 2000, 3000, 2000, 4000, 6000));
    EXPECT(pr_div(a, row), DIMS(2, 3), VALS(0.1f, 0.1f, 0.1f, 0.4f, 0.25f, 0.2f));
    EXPECT(pr_pow(a, s), DIMS(2, 3), VALS(1, 4, 9, 16, 25, 36));
    EXPECT(pr_pow(s, row), DIMS(3), VALS(1024.0f, 1048576.0f, 1073741824.0f));
    pr_tensor *ss = pr_add(s, s);
    CHECK(ss && ss->ndim == 0);
    EXPECT(ss, SC, VALS(4));
    /* three-dim broadcasting: [2,1,3] + [4,1] -> [2,4,3] */
    pr_tensor *p = T(DIMS(2, 1, 3), VALS(0, 1, 2, 3, 4, 5)), *q = T(DIMS(4, 1), VALS(0, 10, 20, 30));
    pr_tensor *pq = pr_add(p, q);
    CHECK(pq && pq->ndim == 3 && pq->shape[0] == 2 && pq->shape[1] == 4 && pq->shape[2] == 3);
    if (pq)
        for (int64_t i = 0; i < 2; i++)
            for (int64_t j = 0; j < 4; j++)
                for (int64_t k = 0; k < 3; k++)
                    CHECK(pr_tensor_get_flat(pq, (i * 4 + j) * 3 + k) == (double)(i * 3 + k + 10 * j));
    pr_tensor_release(pq);
    /* a transposed operand: the strided walk */
    pr_tensor *at = pr_tensor_transpose(a, 0, 1); /* [[1,4],[2,5],[3,6]] */
    pr_tensor *c3 = T(DIMS(3, 2), VALS(1, 1, 1, 1, 1, 1));
    EXPECT(pr_sub(at, c3), DIMS(3, 2), VALS(0, 3, 1, 4, 2, 5));
    pr_tensor *pm = T(DIMS(2), VALS(1, -1));
    EXPECT(pr_mul(at, pm), DIMS(3, 2), VALS(1, -4, 2, -5, 3, -6));
    pr_tensor_release(pm);
    pr_tensor_release(c3);
    pr_tensor_release(at);
    pr_tensor_release(p);
    pr_tensor_release(q);
    pr_tensor_release(a);
    pr_tensor_release(row);
    pr_tensor_release(col);
    pr_tensor_release(s);
}

/* The collapsed walker against a per-element reference on random broadcast pairs. */
static void test_broadcast_random(void)
{
    pr_rng_seed(21);
    for (int it = 0; it < 60; it++) {
        int nd = 1 + (int)pr_rng_below(4);
        int64_t sa[4], sb[4], so[4];
        for (int d = 0; d < nd; d++) {
            so[d] = 1 + pr_rng_below(4);
            int64_t r = pr_rng_below(3);
            sa[d] = r == 0 ? 1 : so[d];
            sb[d] = r == 1 ? 1 : so[d];
        }
        int dropb = (int)pr_rng_below(nd); /* b may have fewer dims; a then spans them */
        for (int d = 0; d < dropb; d++)
            sa[d] = so[d];
        pr_tensor *a = pr_tensor_randn(nd, sa), *b = pr_tensor_randn(nd - dropb, sb + dropb);
        pr_tensor *o = pr_mul(a, b);
        CHECK(o != NULL);
        if (!o)
            continue;
        int64_t n = pr_tensor_numel(o), idx[4];
        for (int64_t i = 0; i < n; i++) {
            int64_t rem = i, oa = 0, ob = 0, ma = 1, mb = 1;
            for (int d = nd - 1; d >= 0; d--) {
                idx[d] = rem % so[d];
                rem /= so[d];
            }
            for (int d = nd - 1; d >= 0; d--) {
                oa += (sa[d] == 1 ? 0 : idx[d]) * ma;
                ma *= sa[d];
                if (d >= dropb) {
                    ob += (sb[d] == 1 ? 0 : idx[d]) * mb;
                    mb *= sb[d];
                }
            }
            float want = pr_tensor_f32(a)[oa] * pr_tensor_f32(b)[ob];
            if (pr_tensor_f32(o)[i] != want) {
                CHECK_MSG(0, "iteration %d element %lld: out [%lld,%lld,%lld,%lld] b dropped %d, nd %d",
                          it, (long long)i, (long long)so[0], (long long)so[1], (long long)so[2],
                          (long long)so[3], dropb, nd);
                break;
            }
        }
        pr_tensor_release(o);
        pr_tensor_release(a);
        pr_tensor_release(b);
    }
}

static void test_where(void)
{
    pr_tensor *c = pr_tensor_empty(PR_UINT8, DIMS(2, 2));
    uint8_t *cv = pr_tensor_u8(c);
    cv[0] = 1, cv[1] = 0, cv[2] = 0, cv[3] = 7;
    pr_tensor *a = T(DIMS(2, 2), VALS(1, 2, 3, 4)), *b = T(DIMS(2), VALS(-1, -2));
    EXPECT(pr_where(c, a, b), DIMS(2, 2), VALS(1, -2, -1, 4));
    pr_tensor *fc = T(DIMS(2, 1), VALS(0.0f, 0.5f));
    EXPECT(pr_where(fc, a, b), DIMS(2, 2), VALS(-1, -2, 3, 4));
    pr_tensor *bad = T(DIMS(3), VALS(1, 0, 1));
    CHECK(pr_where(bad, a, b) == NULL);
    CHECK_MSG(strstr(pr_last_error(), "where:") && strstr(pr_last_error(), "do not broadcast"),
              "got '%s'", pr_last_error());
    pr_tensor_release(bad);
    pr_tensor_release(fc);
    pr_tensor_release(c);
    pr_tensor_release(a);
    pr_tensor_release(b);
}

static void test_reduce(void)
{
    pr_tensor *x = T(DIMS(2, 3), VALS(1, 5, 3, 4, 2, 6));
    EXPECT(pr_sum(x, PR_ALL, 0), SC, VALS(21));
    EXPECT(pr_sum(x, PR_ALL, 1), DIMS(1, 1), VALS(21));
    EXPECT(pr_sum(x, 0, 0), DIMS(3), VALS(5, 7, 9));
    EXPECT(pr_sum(x, 1, 1), DIMS(2, 1), VALS(9, 12));
    EXPECT(pr_sum(x, -1, 0), DIMS(2), VALS(9, 12));
    EXPECT(pr_sum(x, -2, 1), DIMS(1, 3), VALS(5, 7, 9));
    EXPECT(pr_mean(x, PR_ALL, 0), SC, VALS(3.5f));
    EXPECT(pr_mean(x, 1, 0), DIMS(2), VALS(3, 4));
    EXPECT(pr_max(x, PR_ALL, 0), SC, VALS(6));
    EXPECT(pr_max(x, 0, 0), DIMS(3), VALS(4, 5, 6));
    EXPECT(pr_max(x, 1, 1), DIMS(2, 1), VALS(5, 6));
    EXPECT(pr_min(x, 1, 0), DIMS(2), VALS(1, 2));
    EXPECT(pr_min(x, -2, 0), DIMS(3), VALS(1, 2, 3));
    /* middle dim of a 3-D tensor: the [outer, n, inner] reading */
    pr_tensor *y = T(DIMS(2, 2, 2), VALS(1, 2, 3, 4, 5, 6, 7, 8));
    EXPECT(pr_sum(y, 1, 0), DIMS(2, 2), VALS(4, 6, 12, 14));
    EXPECT(pr_max(y, 1, 0), DIMS(2, 2), VALS(3, 4, 7, 8));
    /* a transposed view reduces in its own order */
    pr_tensor *xt = pr_tensor_transpose(x, 0, 1);
    EXPECT(pr_sum(xt, 1, 0), DIMS(3), VALS(5, 7, 9));
    pr_tensor_release(xt);
    /* a 0-d tensor, and sums too long for float accumulation */
    pr_tensor *s = pr_tensor_scalar(3.0);
    EXPECT(pr_sum(s, 0, 0), SC, VALS(3));
    EXPECT(pr_max(s, PR_ALL, 0), SC, VALS(3));
    int64_t n = 1 << 21;
    pr_tensor *big = pr_tensor_full(PR_FLOAT32, 1, &n, 0.1);
    CHECK(expect(pr_mean(big, 0, 0), SC, VALS(0.1f), 1e-9));
    /* a NaN wins max and min */
    pr_tensor *nan = T(DIMS(3), VALS(1, NAN, 3));
    EXPECT(pr_max(nan, 0, 0), SC, VALS(NAN));
    EXPECT(pr_min(nan, 0, 0), SC, VALS(NAN));
    /* sum of nothing is 0 */
    pr_tensor *e = pr_tensor_zeros(PR_FLOAT32, DIMS(0, 3));
    EXPECT(pr_sum(e, 0, 0), DIMS(3), VALS(0, 0, 0));
    pr_tensor_release(e);
    pr_tensor_release(nan);
    pr_tensor_release(big);
    pr_tensor_release(s);
    pr_tensor_release(y);
    pr_tensor_release(x);
}

static void test_backward_by_hand(void)
{
    /* max: ties send the whole gradient to the first maximum */
    pr_tensor *x = T(DIMS(4), VALS(1, 3, 3, 2));
    x->requires_grad = 1;
    pr_tensor *m = pr_max(x, 0, 0);
    CHECK(m && pr_backward(m, NULL) == PR_OK);
    EXPECT(x->grad ? (pr_tensor_retain(x->grad), x->grad) : NULL, DIMS(4), VALS(0, 1, 0, 0));
    pr_tensor_release(m);
    pr_tensor_release(x);

    /* L = sum(relu(x * w + b)), w broadcast over rows, b a scalar */
    pr_tensor *xx = T(DIMS(2, 2), VALS(1, -2, 3, 4)), *w = T(DIMS(2), VALS(2, 0.5f));
    pr_tensor *b = pr_tensor_scalar(-1.0);
    xx->requires_grad = w->requires_grad = b->requires_grad = 1;
    pr_tensor *xw = pr_mul(xx, w), *z = pr_add(xw, b), *r = pr_relu(z), *L = pr_sum(r, PR_ALL, 0);
    /* z = [[1, -2], [5, 1]]: the second element is cut by relu */
    CHECK(L && pr_backward(L, NULL) == PR_OK);
    EXPECT(pr_tensor_clone(xx->grad), DIMS(2, 2), VALS(2, 0, 2, 0.5f));
    EXPECT(pr_tensor_clone(w->grad), DIMS(2), VALS(4, 4));
    EXPECT(pr_tensor_clone(b->grad), SC, VALS(3));
    pr_tensor_release(L);
    pr_tensor_release(r);
    pr_tensor_release(z);
    pr_tensor_release(xw);
    pr_tensor_release(xx);
    pr_tensor_release(w);
    pr_tensor_release(b);

    /* scalar helpers: d/dx sum(3 (x + 1)^2) = 6 (x + 1) */
    pr_tensor *v = T(DIMS(3), VALS(-1, 0, 2));
    v->requires_grad = 1;
    pr_tensor *v1 = pr_add_scalar(v, 1.0), *v2 = pr_pow_scalar(v1, 2.0), *v3 = pr_mul_scalar(v2, 3.0);
    EXPECT(pr_tensor_clone(v3), DIMS(3), VALS(0, 3, 27));
    pr_tensor *Lv = pr_sum(v3, PR_ALL, 0);
    CHECK(Lv && pr_backward(Lv, NULL) == PR_OK);
    EXPECT(pr_tensor_clone(v->grad), DIMS(3), VALS(0, 6, 18));
    pr_tensor_release(Lv);
    pr_tensor_release(v3);
    pr_tensor_release(v2);
    pr_tensor_release(v1);
    pr_tensor_release(v);

    /* x * x: both inputs are the same tensor, the gradients add up to 2x */
    pr_tensor *u = T(DIMS(2), VALS(3, -1));
    u->requires_grad = 1;
    pr_tensor *uu = pr_mul(u, u), *Lu = pr_sum(uu, PR_ALL, 0);
    CHECK(Lu && pr_backward(Lu, NULL) == PR_OK);
    EXPECT(pr_tensor_clone(u->grad), DIMS(2), VALS(6, -2));
    pr_tensor_release(Lu);
    pr_tensor_release(uu);
    pr_tensor_release(u);
}

static void test_no_graph_without_grad(void)
{
    pr_tensor *a = T(DIMS(2), VALS(1, 2));
    a->requires_grad = 1;
    int prev = pr_set_grad_enabled(0);
    pr_tensor *b = pr_exp(a);
    CHECK(b && !b->requires_grad && !b->grad_fn);
    pr_set_grad_enabled(prev);
    pr_tensor *c = pr_exp(a);
    CHECK(c && c->requires_grad && c->grad_fn);
    pr_tensor_release(b);
    pr_tensor_release(c);
    pr_tensor_release(a);
}

static void check_error(pr_tensor *r, const char *want)
{
    CHECK(r == NULL);
    pr_tensor_release(r);
    CHECK_MSG(strcmp(pr_last_error(), want) == 0, "got '%s', want '%s'", pr_last_error(), want);
}

static void test_errors(void)
{
    pr_tensor *a = pr_tensor_zeros(PR_FLOAT32, DIMS(2, 3)), *b = pr_tensor_zeros(PR_FLOAT32, DIMS(4));
    pr_tensor *i = pr_tensor_zeros(PR_INT64, DIMS(2, 3));
    check_error(pr_add(a, b), "add: [2,3] and [4] do not broadcast");
    check_error(pr_mul(b, a), "mul: [4] and [2,3] do not broadcast");
    check_error(pr_add(a, i), "add: expected float32 tensors, got int64");
    check_error(pr_exp(i), "exp: expected a float32 tensor, got int64");
    check_error(pr_sum(a, 2, 0), "sum: dim 2 is out of range for [2,3]");
    check_error(pr_mean(a, -3, 0), "mean: dim -3 is out of range for [2,3]");
    check_error(pr_max(i, 0, 0), "max: expected a float32 tensor, got int64");
    pr_tensor *e = pr_tensor_zeros(PR_FLOAT32, DIMS(0, 3));
    check_error(pr_min(e, 0, 0), "min: cannot reduce an empty extent of [0,3]");
    CHECK(pr_add(a, NULL) == NULL);
    pr_tensor_release(e);
    pr_tensor_release(a);
    pr_tensor_release(b);
    pr_tensor_release(i);
}

int main(void)
{
    RUN(test_unary);
    RUN(test_binary);
    RUN(test_broadcast_random);
    RUN(test_where);
    RUN(test_reduce);
    RUN(test_backward_by_hand);
    RUN(test_no_graph_without_grad);
    RUN(test_errors);
    return CHECK_DONE();
}
