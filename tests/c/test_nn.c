/* test_nn.c: the fused nn ops (conv2d, pools, batch_norm, losses, softmax, dropout) against
 * naive reference loops written here independently of the kernels: forward values, backward
 * (through pr_backward with a random output gradient) and error messages. */
#include "autograd.h"
#include "check.h"
#include "kernels.h"
#include "ops.h"
#include "rng.h"
#include "tensor.h"
#include "threads.h"

#include <stdlib.h>
#include <string.h>

static pr_tensor *randn(int ndim, const int64_t *shape)
{
    pr_tensor *t = pr_tensor_randn(ndim, shape);
    CHECK(t != NULL);
    return t;
}

static pr_tensor *leaf(int ndim, const int64_t *shape)
{
    pr_tensor *t = randn(ndim, shape);
    t->requires_grad = 1;
    return t;
}

/* max |a - b| / (1 + max|b|) over n floats */
static double rel_err(const float *a, const float *b, int64_t n)
{
    double m = 0.0, s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m || d != d)
            m = d != d ? INFINITY : d;
        if (fabs(b[i]) > s)
            s = fabs(b[i]);
    }
    return m / (1.0 + s);
}

static int has(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

/* ---- conv2d ---- */

typedef struct { int64_t n, c, h, w, o, kh, kw, sh, sw, ph, pw, dh, dw, g; int bias; } conv_case;

static void naive_conv(const conv_case *k, int64_t ho, int64_t wo, const float *x, const float *w,
                       const float *b, float *y)
{
    int64_t cg = k->c / k->g, og = k->o / k->g;
    for (int64_t n = 0; n < k->n; n++)
        for (int64_t o = 0; o < k->o; o++)
            for (int64_t oh = 0; oh < ho; oh++)
                for (int64_t ow = 0; ow < wo; ow++) {
                    double s = b ? b[o] : 0.0;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t i = 0; i < k->kh; i++)
                            for (int64_t j = 0; j < k->kw; j++) {
                                int64_t ih = oh * k->sh - k->ph + i * k->dh;
                                int64_t iw = ow * k->sw - k->pw + j * k->dw;
                                if (ih < 0 || ih >= k->h || iw < 0 || iw >= k->w)
                                    continue;
                                int64_t c = o / og * cg + ci;
                                s += (double)x[((n * k->c + c) * k->h + ih) * k->w + iw] *
                                     w[((o * cg + ci) * k->kh + i) * k->kw + j];
                            }
                    y[((n * k->o + o) * ho + oh) * wo + ow] = (float)s;
                }
}

/* The adjoint of naive_conv, accumulating into dx, dw, db. */
static void naive_conv_back(const conv_case *k, int64_t ho, int64_t wo, const float *x,
                            const float *w, const float *gy, float *dx, float *dw, float *db)
{
    int64_t cg = k->c / k->g, og = k->o / k->g;
    for (int64_t n = 0; n < k->n; n++)
        for (int64_t o = 0; o < k->o; o++)
            for (int64_t oh = 0; oh < ho; oh++)
                for (int64_t ow = 0; ow < wo; ow++) {
                    float g = gy[((n * k->o + o) * ho + oh) * wo + ow];
                    db[o] += g;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t i = 0; i < k->kh; i++)
                            for (int64_t j = 0; j < k->kw; j++) {
                                int64_t ih = oh * k->sh - k->ph + i * k->dh;
                                int64_t iw = ow * k->sw - k->pw + j * k->dw;
                                if (ih < 0 || ih >= k->h || iw < 0 || iw >= k->w)
                                    continue;
                                int64_t c = o / og * cg + ci;
                                int64_t xi = ((n * k->c + c) * k->h + ih) * k->w + iw;
                                int64_t wi = ((o * cg + ci) * k->kh + i) * k->kw + j;
                                dx[xi] += g * w[wi];
                                dw[wi] += g * x[xi];
                            }
                }
}

static void run_conv_case(const conv_case *k)
{
    int64_t xs[4] = { k->n, k->c, k->h, k->w }, ws[4] = { k->o, k->c / k->g, k->kh, k->kw };
    pr_tensor *x = leaf(4, xs), *w = leaf(4, ws), *b = k->bias ? leaf(1, &k->o) : NULL;
    pr_tensor *y = pr_conv2d(x, w, b, k->sh, k->sw, k->ph, k->pw, k->dh, k->dw, k->g);
    CHECK_MSG(y != NULL, "%s", pr_last_error());
    if (!y)
        return;
    int64_t ho = (k->h + 2 * k->ph - k->dh * (k->kh - 1) - 1) / k->sh + 1;
    int64_t wo = (k->w + 2 * k->pw - k->dw * (k->kw - 1) - 1) / k->sw + 1;
    CHECK(y->ndim == 4 && y->shape[0] == k->n && y->shape[1] == k->o && y->shape[2] == ho &&
          y->shape[3] == wo);
    int64_t ny = pr_tensor_numel(y), nx = pr_tensor_numel(x), nw = pr_tensor_numel(w);
    float *ref = calloc((size_t)ny, sizeof *ref);
    naive_conv(k, ho, wo, pr_tensor_f32(x), pr_tensor_f32(w), b ? pr_tensor_f32(b) : NULL, ref);
    double e = rel_err(pr_tensor_f32(y), ref, ny);
    CHECK_MSG(e < 1e-5, "conv forward n%lld c%lld o%lld k%lldx%lld s%lld,%lld p%lld,%lld d%lld,%lld g%lld: err %g",
              (long long)k->n, (long long)k->c, (long long)k->o, (long long)k->kh, (long long)k->kw,
              (long long)k->sh, (long long)k->sw, (long long)k->ph, (long long)k->pw,
              (long long)k->dh, (long long)k->dw, (long long)k->g, e);

    pr_tensor *gy = randn(4, y->shape);
    CHECK_MSG(pr_backward(y, gy) == PR_OK, "%s", pr_last_error());
    float *dx = calloc((size_t)nx, sizeof *dx), *dw = calloc((size_t)nw, sizeof *dw);
    float *db = calloc((size_t)k->o, sizeof *db);
    naive_conv_back(k, ho, wo, pr_tensor_f32(x), pr_tensor_f32(w), pr_tensor_f32(gy), dx, dw, db);
    CHECK(x->grad && w->grad && (!b || b->grad));
    if (x->grad && w->grad) {
        double ex = rel_err(pr_tensor_f32(x->grad), dx, nx), ew = rel_err(pr_tensor_f32(w->grad), dw, nw);
        CHECK_MSG(ex < 1e-5 && ew < 1e-5, "conv backward g%lld: dx err %g, dw err %g",
                  (long long)k->g, ex, ew);
    }
    if (b && b->grad)
        CHECK(rel_err(pr_tensor_f32(b->grad), db, k->o) < 1e-5);
    free(ref);
    free(dx);
    free(dw);
    free(db);
    pr_tensor_release(gy);
    pr_tensor_release(y);
    pr_tensor_release(x);
    pr_tensor_release(w);
    pr_tensor_release(b);
}

static void test_conv2d_values(void)
{
    pr_rng_seed(1);
    static const conv_case cases[] = {
        /*n c  h  w  o  kh kw sh sw ph pw dh dw g bias */
        { 2, 3, 7, 6, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1, 1 },
        { 2, 3, 8, 7, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1 },   /* stride 2, padding 1 */
        { 2, 2, 9, 9, 3, 3, 3, 1, 1, 2, 2, 2, 2, 1, 0 },   /* dilation 2, no bias */
        { 3, 4, 6, 5, 6, 3, 2, 1, 2, 1, 0, 1, 1, 2, 1 },   /* groups 2, mixed stride/kernel */
        { 2, 4, 7, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1, 4, 1 },   /* depthwise */
        { 2, 3, 7, 8, 6, 3, 3, 2, 1, 1, 2, 2, 1, 3, 0 },   /* depthwise x2 multiplier, mixed */
        { 1, 1, 5, 5, 2, 5, 5, 1, 1, 0, 0, 1, 1, 1, 1 },   /* kernel = input: 1x1 output */
        { 2, 6, 5, 4, 6, 1, 1, 1, 1, 0, 0, 1, 1, 3, 1 },   /* 1x1 grouped */
        /* big enough to be cut into several batch slices and split over threads */
        { 64, 16, 16, 16, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1 },
        { 61, 16, 16, 16, 8, 3, 3, 1, 1, 1, 1, 1, 1, 2, 1 },
        { 9, 16, 12, 12, 32, 3, 3, 1, 1, 1, 1, 1, 1, 16, 1 },
        /* the direct kernels' shapes (stride 1, one group, c*kh*kw <= 96): LeNet-5's first
         * conv with a batch that is no multiple of the block, channels no multiple of 4, rows
         * of 30 (a 24-column tile then 6), narrow outputs, padding with dilation, 75 taps */
        { 19, 1, 28, 28, 20, 5, 5, 1, 1, 0, 0, 1, 1, 1, 1 },
        { 3, 1, 30, 34, 6, 5, 5, 1, 1, 2, 0, 1, 1, 1, 1 },
        { 5, 2, 9, 6, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0 },
        { 4, 3, 13, 13, 5, 3, 3, 1, 1, 2, 3, 2, 2, 1, 1 },
        { 2, 3, 20, 21, 9, 5, 5, 1, 1, 2, 2, 1, 1, 1, 1 },
        { 9, 2, 12, 40, 3, 3, 3, 1, 1, 0, 1, 1, 1, 1, 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_conv_case(&cases[i]);
}

static void test_conv2d_no_input_grad(void)
{
    /* The first layer's input does not require grad: only dW/db are computed. */
    int64_t xs[4] = { 2, 1, 6, 6 }, ws[4] = { 3, 1, 3, 3 }, bs = 3;
    pr_tensor *x = randn(4, xs), *w = leaf(4, ws), *b = leaf(1, &bs);
    pr_tensor *y = pr_conv2d(x, w, b, 1, 1, 0, 0, 1, 1, 1);
    pr_tensor *s = y ? pr_sum(y, PR_ALL, 0) : NULL;
    CHECK_MSG(s && pr_backward(s, NULL) == PR_OK, "%s", pr_last_error());
    CHECK(x->grad == NULL && w->grad != NULL && b->grad != NULL);
    if (b->grad)
        CHECK_NEAR(pr_tensor_f32(b->grad)[0], 2 * 4 * 4, 1e-4);
    pr_tensor_release(s);
    pr_tensor_release(y);
    pr_tensor_release(x);
    pr_tensor_release(w);
    pr_tensor_release(b);
}

/* Output and weight/bias gradients of conv2d (stride 1, no padding) with `threads` threads. */
static void conv_run_threads(pr_tensor *x, pr_tensor *w, pr_tensor *b, pr_tensor *gy, int threads,
                             pr_tensor **y, pr_tensor **gw, pr_tensor **gb)
{
    int before = pr_threads();
    pr_set_threads(threads);
    pr_tensor_release(w->grad);
    pr_tensor_release(b->grad);
    w->grad = b->grad = NULL;
    *y = pr_conv2d(x, w, b, 1, 1, 0, 0, 1, 1, 1);
    CHECK_MSG(*y && pr_backward(*y, gy) == PR_OK, "%s", pr_last_error());
    *gw = w->grad;
    *gb = b->grad;
    w->grad = b->grad = NULL;
    pr_set_threads(before);
}

static void test_conv2d_direct(void)
{
    /* LeNet-5's first conv takes the direct kernels wherever the CPU has AVX2 and FMA ... */
    pr_conv_geom g = { .n = 37, .c = 1, .h = 28, .w = 28, .o = 20, .kh = 5, .kw = 5, .sh = 1,
                       .sw = 1, .dh = 1, .dw = 1, .groups = 1 };
    CHECK(pr_conv_geom_finish(&g) == 0);
#if defined(__x86_64__) && defined(__GNUC__)
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    CHECK(pr_conv_direct_ok(&g) == avx2);
#endif
    g.sw = 2; /* ... but not a strided one, nor one with many taps */
    CHECK(!pr_conv_direct_ok(&g));
    g.sw = 1;
    g.c = 4;
    CHECK(!pr_conv_direct_ok(&g));

    /* Its results do not depend on the thread count, bit for bit, and a non-contiguous input
     * (a transposed view) that needs no gradient gives its copy's results. */
    int64_t xs[4] = { 37, 1, 28, 28 }, ws[4] = { 20, 1, 5, 5 }, bs = 20, ys[4] = { 37, 20, 24, 24 };
    pr_tensor *xv = randn(4, xs), *x = pr_tensor_transpose(xv, 2, 3);
    pr_tensor *xc = x ? pr_tensor_clone(x) : NULL;
    pr_tensor *w = leaf(4, ws), *b = leaf(1, &bs), *gy = randn(4, ys);
    pr_tensor *y1, *w1, *b1, *y2, *w2, *b2, *y3, *w3, *b3;
    conv_run_threads(x, w, b, gy, 1, &y1, &w1, &b1);
    conv_run_threads(x, w, b, gy, 2, &y2, &w2, &b2);
    conv_run_threads(xc, w, b, gy, 2, &y3, &w3, &b3);
    CHECK(y1 && y2 && y3 && w1 && w2 && w3 && b1 && b2 && b3);
    if (y1 && y2 && y3 && w1 && w2 && w3 && b1 && b2 && b3) {
        CHECK(memcmp(pr_tensor_f32(y1), pr_tensor_f32(y2), sizeof(float) * 37 * 20 * 24 * 24) == 0);
        CHECK(memcmp(pr_tensor_f32(w1), pr_tensor_f32(w2), sizeof(float) * 500) == 0);
        CHECK(memcmp(pr_tensor_f32(b1), pr_tensor_f32(b2), sizeof(float) * 20) == 0);
        CHECK(memcmp(pr_tensor_f32(y1), pr_tensor_f32(y3), sizeof(float) * 37 * 20 * 24 * 24) == 0);
        CHECK(memcmp(pr_tensor_f32(w1), pr_tensor_f32(w3), sizeof(float) * 500) == 0);
        /* the bias gradient is the sum of the output gradient over all but the channels */
        double s = 0.0;
        for (int64_t n = 0; n < 37; n++)
            for (int64_t p = 0; p < 576; p++)
                s += pr_tensor_f32(gy)[(n * 20 + 3) * 576 + p];
        CHECK_NEAR(pr_tensor_f32(b1)[3], s, 1e-3);
    }
    pr_tensor *all[] = { y1, w1, b1, y2, w2, b2, y3, w3, b3, xv, x, xc, w, b, gy };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        pr_tensor_release(all[i]);
}

static void test_conv2d_strided_input(void)
{
    /* A non-contiguous input (a transposed view) gives the same result as its copy. */
    int64_t xs[4] = { 2, 3, 6, 7 }, ws[4] = { 4, 3, 3, 3 };
    pr_tensor *x = randn(4, xs), *w = randn(4, ws);
    pr_tensor *xt = pr_tensor_transpose(x, 2, 3), *xc = xt ? pr_tensor_clone(xt) : NULL;
    pr_tensor *a = xc ? pr_conv2d(xt, w, NULL, 1, 2, 1, 0, 1, 1, 1) : NULL;
    pr_tensor *b = a ? pr_conv2d(xc, w, NULL, 1, 2, 1, 0, 1, 1, 1) : NULL;
    CHECK_MSG(a && b, "%s", pr_last_error());
    if (a && b)
        CHECK(rel_err(pr_tensor_f32(a), pr_tensor_f32(b), pr_tensor_numel(b)) == 0.0);
    pr_tensor_release(a);
    pr_tensor_release(b);
    pr_tensor_release(xt);
    pr_tensor_release(xc);
    pr_tensor_release(x);
    pr_tensor_release(w);
}

static void test_conv2d_errors(void)
{
    int64_t xs[4] = { 2, 3, 8, 8 }, ws[4] = { 4, 2, 3, 3 }, bs = 5, x3[3] = { 3, 8, 8 };
    pr_tensor *x = randn(4, xs), *w = randn(4, ws), *b = randn(1, &bs), *xb = randn(3, x3);
    const char *e;
    CHECK(pr_conv2d(x, w, NULL, 1, 1, 0, 0, 1, 1, 1) == NULL);
    e = pr_last_error();
    CHECK_MSG(has(e, "conv2d") && has(e, "[4,2,3,3]") && has(e, "[2,3,8,8]") && has(e, "[N,2,H,W]"), "%s", e);
    pr_tensor *w2 = randn(4, (int64_t[]){ 4, 3, 3, 3 });
    CHECK(pr_conv2d(x, w2, b, 1, 1, 0, 0, 1, 1, 1) == NULL);
    e = pr_last_error();
    CHECK_MSG(has(e, "bias") && has(e, "[4]") && has(e, "[5]"), "%s", e);
    CHECK(pr_conv2d(xb, w2, NULL, 1, 1, 0, 0, 1, 1, 1) == NULL);
    e = pr_last_error();
    CHECK_MSG(has(e, "[N,C,H,W]") && has(e, "[3,8,8]"), "%s", e);
    CHECK(pr_conv2d(x, w2, NULL, 0, 1, 0, 0, 1, 1, 1) == NULL);
    CHECK_MSG(has(pr_last_error(), "stride"), "%s", pr_last_error());
    CHECK(pr_conv2d(x, w2, NULL, 1, 1, 0, 0, 1, 1, 2) == NULL);
    CHECK_MSG(has(pr_last_error(), "groups"), "%s", pr_last_error());
    pr_tensor *wbig = randn(4, (int64_t[]){ 4, 3, 9, 9 });
    CHECK(pr_conv2d(x, wbig, NULL, 1, 1, 0, 0, 1, 1, 1) == NULL);
    CHECK_MSG(has(pr_last_error(), "smaller than the kernel"), "%s", pr_last_error());
    CHECK(pr_conv2d(x, wbig, NULL, 1, 1, 1, 0, 1, 1, 1) == NULL); /* width 8 < 9 still */
    pr_tensor *ok = pr_conv2d(x, wbig, NULL, 1, 1, 1, 1, 1, 1, 1);
    CHECK(ok && ok->shape[2] == 2 && ok->shape[3] == 2);
    pr_tensor_release(ok);
    /* The fused ReLU (i[7], for inference) refuses to be recorded: it has no backward. */
    w2->requires_grad = 1;
    pr_opargs fa = { .i = { 1, 1, 0, 0, 1, 1, 1, 1 }, .ni = 8 };
    CHECK(pr_op_call(PR_OP_conv2d, (pr_tensor *[]){ x, w2 }, 2, &fa) == NULL);
    CHECK_MSG(has(pr_last_error(), "fused ReLU is for inference"), "%s", pr_last_error());
    int prev = pr_set_grad_enabled(0);
    pr_tensor *fy = pr_op_call(PR_OP_conv2d, (pr_tensor *[]){ x, w2 }, 2, &fa);
    pr_set_grad_enabled(prev);
    CHECK(fy != NULL);
    if (fy) {
        double lo = 0.0;
        for (int64_t i = 0; i < pr_tensor_numel(fy); i++)
            lo = pr_tensor_f32(fy)[i] < lo ? pr_tensor_f32(fy)[i] : lo;
        CHECK(lo == 0.0);
    }
    pr_tensor_release(fy);
    pr_tensor_release(x);
    pr_tensor_release(w);
    pr_tensor_release(b);
    pr_tensor_release(xb);
    pr_tensor_release(w2);
    pr_tensor_release(wbig);
}

/* ---- pooling ---- */

/* Max and average pooling of [n, c, 5, 6] inputs against naive loops, forward and backward. */
static void pool_cases(int64_t n, int64_t c)
{
    struct { int64_t kh, kw, sh, sw, ph, pw; } cases[] = {
        { 2, 2, 2, 2, 0, 0 }, { 3, 3, 2, 2, 1, 1 }, { 3, 2, 1, 2, 1, 0 }, { 5, 6, 0, 0, 0, 0 },
    };
    int64_t xs[4] = { n, c, 5, 6 };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        int64_t kh = cases[t].kh, kw = cases[t].kw, ph = cases[t].ph, pw = cases[t].pw;
        int64_t sh = cases[t].sh ? cases[t].sh : kh, sw = cases[t].sw ? cases[t].sw : kw;
        int64_t ho = (xs[2] + 2 * ph - kh) / sh + 1, wo = (xs[3] + 2 * pw - kw) / sw + 1;
        for (int avg = 0; avg < 2; avg++) {
            pr_tensor *x = leaf(4, xs);
            pr_tensor *y = avg ? pr_avg_pool2d(x, kh, kw, cases[t].sh, cases[t].sw, ph, pw)
                               : pr_max_pool2d(x, kh, kw, cases[t].sh, cases[t].sw, ph, pw);
            CHECK_MSG(y != NULL, "%s", pr_last_error());
            if (!y) {
                pr_tensor_release(x);
                continue;
            }
            CHECK(y->shape[2] == ho && y->shape[3] == wo);
            pr_tensor *gy = randn(4, y->shape);
            int64_t nx = pr_tensor_numel(x), ny = pr_tensor_numel(y);
            float *ref = calloc((size_t)ny, sizeof *ref), *dx = calloc((size_t)nx, sizeof *dx);
            const float *xd = pr_tensor_f32(x), *g = pr_tensor_f32(gy);
            for (int64_t p = 0; p < xs[0] * xs[1]; p++)
                for (int64_t oh = 0; oh < ho; oh++)
                    for (int64_t ow = 0; ow < wo; ow++) {
                        double s = 0.0, best = -INFINITY;
                        int64_t bi = -1;
                        for (int64_t i = 0; i < kh; i++)
                            for (int64_t j = 0; j < kw; j++) {
                                int64_t ih = oh * sh - ph + i, iw = ow * sw - pw + j;
                                if (ih < 0 || ih >= xs[2] || iw < 0 || iw >= xs[3])
                                    continue;
                                double v = xd[p * xs[2] * xs[3] + ih * xs[3] + iw];
                                s += v;
                                if (v > best) {
                                    best = v;
                                    bi = ih * xs[3] + iw;
                                }
                            }
                        int64_t o = p * ho * wo + oh * wo + ow;
                        ref[o] = (float)(avg ? s / (double)(kh * kw) : best);
                        if (!avg) {
                            dx[p * xs[2] * xs[3] + bi] += g[o];
                        } else {
                            for (int64_t i = 0; i < kh; i++)
                                for (int64_t j = 0; j < kw; j++) {
                                    int64_t ih = oh * sh - ph + i, iw = ow * sw - pw + j;
                                    if (ih >= 0 && ih < xs[2] && iw >= 0 && iw < xs[3])
                                        dx[p * xs[2] * xs[3] + ih * xs[3] + iw] += g[o] / (float)(kh * kw);
                                }
                        }
                    }
            CHECK_MSG(rel_err(pr_tensor_f32(y), ref, ny) < 1e-6, "pool %s case %zu forward",
                      avg ? "avg" : "max", t);
            CHECK(pr_backward(y, gy) == PR_OK);
            CHECK_MSG(x->grad && rel_err(pr_tensor_f32(x->grad), dx, nx) < 1e-6,
                      "pool %s case %zu backward", avg ? "avg" : "max", t);
            free(ref);
            free(dx);
            pr_tensor_release(gy);
            pr_tensor_release(y);
            pr_tensor_release(x);
        }
    }
}

static void test_pools(void)
{
    pr_rng_seed(2);
    pool_cases(2, 3);
    pool_cases(40, 32); /* enough work to be split over threads */
    /* global average pool: kernel = the whole plane */
    int64_t xs[4] = { 2, 3, 5, 6 };
    pr_tensor *x = randn(4, xs);
    pr_tensor *y = pr_avg_pool2d(x, 5, 6, 0, 0, 0, 0);
    CHECK(y && y->shape[2] == 1 && y->shape[3] == 1);
    if (y) {
        double s = 0.0;
        for (int i = 0; i < 30; i++)
            s += pr_tensor_f32(x)[30 + i];
        CHECK_NEAR(pr_tensor_f32(y)[1], s / 30.0, 1e-5);
    }
    pr_tensor_release(y);
    /* a NaN wins its window, in the unrolled 2x2 path and the general one */
    pr_tensor_f32(x)[7] = NAN; /* plane 0, row 1, col 1 */
    for (int k = 2; k <= 3; k++) {
        pr_tensor *m = pr_max_pool2d(x, k, k, k, k, 0, 0);
        CHECK(m && isnan(pr_tensor_f32(m)[0]) && !isnan(pr_tensor_f32(m)[1]));
        pr_tensor_release(m);
    }
    /* errors */
    CHECK(pr_max_pool2d(x, 2, 2, 2, 2, 2, 0) == NULL);
    CHECK_MSG(has(pr_last_error(), "padding"), "%s", pr_last_error());
    CHECK(pr_max_pool2d(x, 7, 2, 1, 1, 0, 0) == NULL);
    CHECK_MSG(has(pr_last_error(), "max_pool2d") && has(pr_last_error(), "[2,3,5,6]"), "%s", pr_last_error());
    pr_tensor_release(x);
}

/* ---- batch_norm ---- */

static void test_batch_norm(void)
{
    pr_rng_seed(3);
    int64_t xs[4] = { 4, 3, 2, 5 }, c = 3, m = 4 * 2 * 5;
    pr_tensor *x = leaf(4, xs), *gamma = leaf(1, &c), *beta = leaf(1, &c);
    pr_tensor *rm = pr_tensor_zeros(PR_FLOAT32, 1, &c), *rv = pr_tensor_full(PR_FLOAT32, 1, &c, 1.0);
    pr_tensor *y = pr_batch_norm(x, gamma, beta, rm, rv, 1, 0.1, 1e-5);
    CHECK_MSG(y != NULL, "%s", pr_last_error());
    const float *xd = pr_tensor_f32(x);
    double mean[3], var[3];
    for (int ch = 0; ch < 3; ch++) {
        double s = 0, ss = 0;
        for (int n = 0; n < 4; n++)
            for (int i = 0; i < 10; i++)
                s += xd[(n * 3 + ch) * 10 + i];
        mean[ch] = s / m;
        for (int n = 0; n < 4; n++)
            for (int i = 0; i < 10; i++) {
                double d = xd[(n * 3 + ch) * 10 + i] - mean[ch];
                ss += d * d;
            }
        var[ch] = ss / m;
        CHECK_NEAR(pr_tensor_f32(rm)[ch], 0.1 * mean[ch], 1e-5);
        CHECK_NEAR(pr_tensor_f32(rv)[ch], 0.9 + 0.1 * ss / (m - 1), 1e-5);
        if (y)
            for (int n = 0; n < 4; n++)
                for (int i = 0; i < 10; i++) {
                    int k = (n * 3 + ch) * 10 + i;
                    double ref = pr_tensor_f32(gamma)[ch] * (xd[k] - mean[ch]) / sqrt(var[ch] + 1e-5) +
                                 pr_tensor_f32(beta)[ch];
                    CHECK_NEAR(pr_tensor_f32(y)[k], ref, 1e-4);
                }
    }
    /* backward in training mode against central differences of sum(y * gy) */
    pr_tensor *gy = randn(4, xs);
    CHECK(y && pr_backward(y, gy) == PR_OK);
    CHECK(x->grad && gamma->grad && beta->grad);
    if (x->grad) {
        int prev = pr_set_grad_enabled(0);
        int ok = 1;
        for (int k = 0; k < 120; k += 7) {
            float save = pr_tensor_f32(x)[k];
            double f[2];
            for (int s = 0; s < 2; s++) {
                pr_tensor_f32(x)[k] = save + (s ? -1e-2f : 1e-2f);
                pr_tensor *yy = pr_batch_norm(x, gamma, beta, NULL, NULL, 1, 0.1, 1e-5);
                f[s] = 0;
                for (int i = 0; i < 120; i++)
                    f[s] += (double)pr_tensor_f32(yy)[i] * pr_tensor_f32(gy)[i];
                pr_tensor_release(yy);
            }
            pr_tensor_f32(x)[k] = save;
            double num = (f[0] - f[1]) / 2e-2, ana = pr_tensor_f32(x->grad)[k];
            if (fabs(num - ana) > 2e-2 * (1 + fabs(num))) {
                ok = 0;
                fprintf(stderr, "bn dx[%d]: numeric %g analytic %g\n", k, num, ana);
            }
        }
        CHECK(ok);
        pr_set_grad_enabled(prev);
    }
    pr_tensor_release(gy);
    pr_tensor_release(y);

    /* eval mode uses the running statistics and their gradient is the affine one */
    pr_tensor_release(x->grad);
    x->grad = NULL;
    y = pr_batch_norm(x, gamma, beta, rm, rv, 0, 0.1, 1e-5);
    CHECK(y != NULL);
    if (y) {
        for (int k = 0; k < 120; k++) {
            int ch = (k / 10) % 3;
            double ref = pr_tensor_f32(gamma)[ch] * (xd[k] - pr_tensor_f32(rm)[ch]) /
                         sqrt(pr_tensor_f32(rv)[ch] + 1e-5) + pr_tensor_f32(beta)[ch];
            CHECK_NEAR(pr_tensor_f32(y)[k], ref, 1e-4);
        }
        pr_tensor *s = pr_sum(y, PR_ALL, 0);
        CHECK(s && pr_backward(s, NULL) == PR_OK);
        if (x->grad)
            CHECK_NEAR(pr_tensor_f32(x->grad)[13], pr_tensor_f32(gamma)[1] / sqrt(pr_tensor_f32(rv)[1] + 1e-5), 1e-4);
        pr_tensor_release(s);
    }
    pr_tensor_release(y);

    /* [N,C,L] input: statistics over the batch and L */
    int64_t s3[3] = { 3, 2, 4 };
    pr_tensor *x3 = randn(3, s3);
    pr_tensor *y3 = pr_batch_norm(x3, NULL, NULL, NULL, NULL, 1, 0.1, 0.0);
    CHECK(y3 != NULL);
    if (y3) {
        double s = 0;
        for (int n = 0; n < 3; n++)
            for (int i = 0; i < 4; i++)
                s += pr_tensor_f32(y3)[(n * 2 + 1) * 4 + i];
        CHECK_NEAR(s, 0.0, 1e-4);
    }
    pr_tensor_release(y3);
    pr_tensor_release(x3);

    /* [N,C] input, no affine parameters */
    int64_t s2[2] = { 5, 3 };
    pr_tensor *x2 = randn(2, s2);
    pr_tensor *y2 = pr_batch_norm(x2, NULL, NULL, NULL, NULL, 1, 0.1, 0.0);
    CHECK(y2 != NULL);
    if (y2) {
        double s = 0, ss = 0;
        for (int n = 0; n < 5; n++) {
            s += pr_tensor_f32(y2)[n * 3 + 2];
            ss += pr_tensor_f32(y2)[n * 3 + 2] * pr_tensor_f32(y2)[n * 3 + 2];
        }
        CHECK_NEAR(s / 5, 0.0, 1e-5);
        CHECK_NEAR(ss / 5, 1.0, 1e-4);
    }
    pr_tensor_release(y2);
    /* errors */
    int64_t one[2] = { 1, 3 };
    pr_tensor *x1 = randn(2, one);
    CHECK(pr_batch_norm(x1, NULL, NULL, NULL, NULL, 1, 0.1, 1e-5) == NULL);
    CHECK_MSG(has(pr_last_error(), "more than one value per channel"), "%s", pr_last_error());
    CHECK(pr_batch_norm(x1, NULL, NULL, NULL, NULL, 0, 0.1, 1e-5) == NULL);
    CHECK_MSG(has(pr_last_error(), "running"), "%s", pr_last_error());
    CHECK(pr_batch_norm(x, gamma, beta, x2, rv, 1, 0.1, 1e-5) == NULL);
    CHECK_MSG(has(pr_last_error(), "running mean") && has(pr_last_error(), "[5,3]"), "%s", pr_last_error());
    pr_tensor_release(x1);
    pr_tensor_release(x2);
    pr_tensor_release(x);
    pr_tensor_release(gamma);
    pr_tensor_release(beta);
    pr_tensor_release(rm);
    pr_tensor_release(rv);
}

/* ---- losses and softmax ---- */

static void test_cross_entropy(void)
{
    float lv[6] = { 1, 2, 3, 1, 1, 1 };
    int64_t tv[2] = { 2, 0 }, ls[2] = { 2, 3 }, ts = 2;
    pr_tensor *logits = pr_tensor_empty(PR_FLOAT32, 2, ls), *t = pr_tensor_empty(PR_INT64, 1, &ts);
    memcpy(pr_tensor_f32(logits), lv, sizeof lv);
    memcpy(pr_tensor_i64(t), tv, sizeof tv);
    logits->requires_grad = 1;
    double l0 = log(exp(1.0) + exp(2.0) + exp(3.0)) - 3.0, l1 = log(3.0);
    pr_tensor *mean = pr_cross_entropy(logits, t, PR_REDUCE_MEAN);
    pr_tensor *sum = pr_cross_entropy(logits, t, PR_REDUCE_SUM);
    pr_tensor *none = pr_cross_entropy(logits, t, PR_REDUCE_NONE);
    CHECK(mean && sum && none);
    if (mean && sum && none) {
        CHECK(mean->ndim == 0 && none->ndim == 1 && none->shape[0] == 2);
        CHECK_NEAR(pr_tensor_f32(mean)[0], (l0 + l1) / 2, 1e-6);
        CHECK_NEAR(pr_tensor_f32(sum)[0], l0 + l1, 1e-6);
        CHECK_NEAR(pr_tensor_f32(none)[0], l0, 1e-6);
        CHECK_NEAR(pr_tensor_f32(none)[1], l1, 1e-6);
        CHECK(pr_backward(mean, NULL) == PR_OK);
        double z = exp(1.0) + exp(2.0) + exp(3.0);
        if (logits->grad) {
            const float *g = pr_tensor_f32(logits->grad);
            CHECK_NEAR(g[0], exp(1.0) / z / 2, 1e-6);
            CHECK_NEAR(g[2], (exp(3.0) / z - 1) / 2, 1e-6);
            CHECK_NEAR(g[3], (1.0 / 3 - 1) / 2, 1e-6);
            CHECK_NEAR(g[4], 1.0 / 3 / 2, 1e-6);
        }
    }
    /* nll(log_softmax) equals cross_entropy */
    pr_tensor *lp = pr_log_softmax(logits, 1);
    pr_tensor *nll = lp ? pr_nll_loss(lp, t, PR_REDUCE_SUM) : NULL;
    CHECK(nll && sum && fabs(pr_tensor_f32(nll)[0] - pr_tensor_f32(sum)[0]) < 1e-6);
    pr_tensor_release(nll);
    pr_tensor_release(lp);
    /* huge logits stay finite */
    pr_tensor_f32(logits)[0] = 1000.0f;
    pr_tensor *big = pr_cross_entropy(logits, t, PR_REDUCE_NONE);
    CHECK(big && isfinite(pr_tensor_f32(big)[0]) && fabs(pr_tensor_f32(big)[0] - 997.0) < 1e-3);
    pr_tensor_release(big);

    /* errors: label out of range (value, position, C), dtype, shape, reduction */
    pr_tensor_i64(t)[1] = 7;
    CHECK(pr_cross_entropy(logits, t, PR_REDUCE_MEAN) == NULL);
    const char *e = pr_last_error();
    CHECK_MSG(has(e, "target 7") && has(e, "position 1") && has(e, "3 classes"), "%s", e);
    pr_tensor_i64(t)[1] = -1;
    CHECK(pr_nll_loss(logits, t, PR_REDUCE_MEAN) == NULL);
    CHECK_MSG(has(pr_last_error(), "nll_loss: target -1"), "%s", pr_last_error());
    pr_tensor *tf = pr_tensor_zeros(PR_FLOAT32, 1, &ts);
    CHECK(pr_cross_entropy(logits, tf, PR_REDUCE_MEAN) == NULL);
    CHECK_MSG(has(pr_last_error(), "int64"), "%s", pr_last_error());
    int64_t three = 3;
    pr_tensor *t3 = pr_tensor_zeros(PR_INT64, 1, &three);
    CHECK(pr_cross_entropy(logits, t3, PR_REDUCE_MEAN) == NULL);
    CHECK_MSG(has(pr_last_error(), "[2]") && has(pr_last_error(), "[3]") && has(pr_last_error(), "[2,3]"),
              "%s", pr_last_error());
    CHECK(pr_cross_entropy(logits, t3, 5) == NULL);
    CHECK_MSG(has(pr_last_error(), "reduction"), "%s", pr_last_error());
    pr_tensor_release(tf);
    pr_tensor_release(t3);
    pr_tensor_release(mean);
    pr_tensor_release(sum);
    pr_tensor_release(none);
    pr_tensor_release(logits);
    pr_tensor_release(t);
}

static void test_mse_softmax(void)
{
    pr_rng_seed(4);
    int64_t s[2] = { 3, 4 };
    pr_tensor *a = leaf(2, s), *b = leaf(2, s);
    pr_tensor *l = pr_mse_loss(a, b, PR_REDUCE_MEAN);
    double ref = 0;
    for (int i = 0; i < 12; i++) {
        double d = pr_tensor_f32(a)[i] - pr_tensor_f32(b)[i];
        ref += d * d;
    }
    CHECK(l && fabs(pr_tensor_f32(l)[0] - ref / 12) < 1e-5);
    CHECK(l && pr_backward(l, NULL) == PR_OK);
    if (a->grad && b->grad) {
        CHECK_NEAR(pr_tensor_f32(a->grad)[5], 2 * (pr_tensor_f32(a)[5] - pr_tensor_f32(b)[5]) / 12, 1e-6);
        CHECK_NEAR(pr_tensor_f32(b->grad)[5], -2 * (pr_tensor_f32(a)[5] - pr_tensor_f32(b)[5]) / 12, 1e-6);
    }
    pr_tensor_release(l);
    int64_t s3[2] = { 4, 3 };
    pr_tensor *c = randn(2, s3);
    CHECK(pr_mse_loss(a, c, PR_REDUCE_SUM) == NULL);
    CHECK_MSG(has(pr_last_error(), "[3,4]") && has(pr_last_error(), "[4,3]"), "%s", pr_last_error());

    /* softmax along dim 0 of [3,4] (a strided axis): columns sum to 1 and match exp/sum */
    pr_tensor *sm = pr_softmax(a, 0), *lsm = pr_log_softmax(a, -2);
    CHECK(sm && lsm);
    if (sm && lsm)
        for (int j = 0; j < 4; j++) {
            double z = 0, tot = 0;
            for (int i = 0; i < 3; i++)
                z += exp(pr_tensor_f32(a)[i * 4 + j]);
            for (int i = 0; i < 3; i++) {
                tot += pr_tensor_f32(sm)[i * 4 + j];
                CHECK_NEAR(pr_tensor_f32(sm)[i * 4 + j], exp(pr_tensor_f32(a)[i * 4 + j]) / z, 1e-6);
                CHECK_NEAR(pr_tensor_f32(lsm)[i * 4 + j], pr_tensor_f32(a)[i * 4 + j] - log(z), 1e-5);
            }
            CHECK_NEAR(tot, 1.0, 1e-6);
        }
    CHECK(pr_softmax(a, 2) == NULL);
    CHECK_MSG(has(pr_last_error(), "dim 2"), "%s", pr_last_error());
    pr_tensor_release(sm);
    pr_tensor_release(lsm);
    pr_tensor_release(a);
    pr_tensor_release(b);
    pr_tensor_release(c);
}

/* ---- dropout ---- */

static void test_dropout(void)
{
    int64_t s[2] = { 100, 100 };
    pr_tensor *x = pr_tensor_full(PR_FLOAT32, 2, s, 1.0);
    x->requires_grad = 1;
    pr_rng_seed(42);
    pr_tensor *y = pr_dropout(x, 0.3, 1);
    pr_rng_seed(42);
    pr_tensor *y2 = pr_dropout(x, 0.3, 1);
    CHECK(y && y2);
    if (!y || !y2)
        return;
    int kept = 0, same = 1, values_ok = 1;
    for (int i = 0; i < 10000; i++) {
        float v = pr_tensor_f32(y)[i];
        kept += v != 0.0f;
        same &= v == pr_tensor_f32(y2)[i];
        values_ok &= v == 0.0f || fabsf(v - 1.0f / 0.7f) < 1e-6f;
    }
    CHECK_MSG(kept > 6700 && kept < 7300, "kept %d of 10000 at p = 0.3", kept);
    CHECK(same && values_ok);
    pr_tensor *g = randn(2, s);
    CHECK(pr_backward(y, g) == PR_OK);
    if (x->grad) {
        int ok = 1;
        for (int i = 0; i < 10000; i++)
            ok &= pr_tensor_f32(x->grad)[i] == pr_tensor_f32(g)[i] * pr_tensor_f32(y)[i];
        CHECK(ok);
    }
    pr_tensor *e = pr_dropout(x, 0.3, 0);
    CHECK(e && pr_tensor_f32(e)[17] == 1.0f);
    pr_tensor *all = pr_dropout(x, 1.0, 1);
    CHECK(all && pr_tensor_f32(all)[0] == 0.0f && pr_tensor_f32(all)[9999] == 0.0f);
    CHECK(pr_dropout(x, 1.5, 1) == NULL);
    CHECK_MSG(has(pr_last_error(), "p must be in [0, 1]"), "%s", pr_last_error());
    pr_tensor_release(all);
    pr_tensor_release(e);
    pr_tensor_release(g);
    pr_tensor_release(y);
    pr_tensor_release(y2);
    pr_tensor_release(x);
}

/* ---- raw kernels: im2col followed by col2im multiplies each input by its use count ---- */

static void test_im2col_adjoint(void)
{
    /* <im2col(x), c> == <x, col2im(c)> for random x, c: the two kernels are adjoint. */
    pr_conv_geom g = { .n = 2, .c = 4, .h = 7, .w = 6, .o = 4, .kh = 3, .kw = 2, .sh = 2, .sw = 3,
                       .ph = 1, .pw = 2, .dh = 2, .dw = 1, .groups = 2 };
    CHECK(pr_conv_geom_finish(&g) == 0);
    int64_t nx = g.n * g.c * g.h * g.w, nc = g.c / g.groups * g.kh * g.kw * g.n * g.ho * g.wo;
    float *x = malloc(sizeof *x * (size_t)nx), *dx = calloc((size_t)nx, sizeof *dx);
    float *cols = malloc(sizeof *cols * (size_t)nc), *c = malloc(sizeof *c * (size_t)nc);
    pr_rng_seed(5);
    for (int64_t i = 0; i < nx; i++)
        x[i] = (float)pr_rng_normal();
    for (int64_t i = 0; i < nc; i++)
        c[i] = (float)pr_rng_normal();
    for (int64_t grp = 0; grp < g.groups; grp++) {
        pr_conv_im2col(x, cols, &g, grp, 0, g.n);
        pr_conv_col2im(c, dx, &g, grp, 0, g.n);
        double lhs = 0, rhs = 0;
        for (int64_t i = 0; i < nc; i++)
            lhs += (double)cols[i] * c[i];
        for (int64_t i = 0; i < nx; i++)
            rhs += (double)x[i] * dx[i];
        CHECK_NEAR(lhs, rhs, 1e-3);
        memset(dx, 0, sizeof *dx * (size_t)nx);
    }
    /* a slice of the batch is the matching columns of the whole batch's im2col */
    int64_t pl = g.ho * g.wo, k = g.c / g.groups * g.kh * g.kw;
    float *part = malloc(sizeof *part * (size_t)(k * pl));
    pr_conv_im2col(x, cols, &g, 1, 0, g.n);
    pr_conv_im2col(x, part, &g, 1, 1, 2);
    int same = 1;
    for (int64_t r = 0; r < k; r++)
        for (int64_t i = 0; i < pl; i++)
            same &= part[r * pl + i] == cols[r * g.n * pl + pl + i];
    CHECK(same);
    free(part);
    pr_conv_geom bad = g;
    bad.kh = 10; /* 7 + 2*1 padding < 10 */
    bad.dh = 1;
    CHECK(pr_conv_geom_finish(&bad) == -1);
    free(x);
    free(dx);
    free(cols);
    free(c);
}

/* The 2x2/stride-2 max-pool kernel (vectorised four windows at a time, scalar tail) against a
 * naive loop, on rows wide enough for both parts, with ties, NaNs and -0/+0; with and without
 * the argmax output (evaluation passes NULL). */
static void test_max_pool_2x2_kernel(void)
{
    for (int64_t w = 2; w <= 30; w += 7) { /* wo = 1, 4, 8, 11, 15 */
        pr_conv_geom g = { .n = 2, .c = 3, .h = 6, .w = w, .o = 3, .kh = 2, .kw = 2, .sh = 2,
                           .sw = 2, .dh = 1, .dw = 1, .groups = 3 };
        CHECK(pr_conv_geom_finish(&g) == 0);
        int64_t nx = g.n * g.c * g.h * g.w, ny = g.n * g.c * g.ho * g.wo;
        float *x = malloc(sizeof *x * (size_t)nx), *y = malloc(sizeof *y * (size_t)ny);
        float *y2 = malloc(sizeof *y2 * (size_t)ny);
        int64_t *am = malloc(sizeof *am * (size_t)ny);
        pr_rng_seed(11 + (uint64_t)w);
        for (int64_t i = 0; i < nx; i++) {
            double u = pr_rng_uniform();
            /* few distinct values: many ties; some NaNs and signed zeros */
            x[i] = u < 0.05 ? NAN : u < 0.1 ? -0.0f : u < 0.15 ? 0.0f : (float)(int)(u * 6) - 2.0f;
        }
        pr_pool_max_forward(x, y, am, &g, 0);
        pr_pool_max_forward(x, y2, NULL, &g, 0);
        int ok = 1;
        for (int64_t p = 0; p < g.n * g.c; p++)
            for (int64_t oh = 0; oh < g.ho; oh++)
                for (int64_t ow = 0; ow < g.wo; ow++) {
                    const float *pl = x + p * g.h * g.w;
                    int64_t bi = -1;
                    float best = 0.0f;
                    for (int64_t i = 0; i < 2 && bi < 0; i++) /* the first NaN wins */
                        for (int64_t j = 0; j < 2 && bi < 0; j++) {
                            int64_t k = (2 * oh + i) * g.w + 2 * ow + j;
                            if (pl[k] != pl[k])
                                bi = k;
                        }
                    if (bi < 0)
                        for (int64_t i = 0; i < 2; i++) /* else the first maximum */
                            for (int64_t j = 0; j < 2; j++) {
                                int64_t k = (2 * oh + i) * g.w + 2 * ow + j;
                                if (bi < 0 || pl[k] > best) {
                                    best = pl[k];
                                    bi = k;
                                }
                            }
                    int64_t o = p * g.ho * g.wo + oh * g.wo + ow;
                    float v = pl[bi];
                    ok &= am[o] == bi;
                    ok &= v != v ? (y[o] != y[o] && y2[o] != y2[o])
                                 : (memcmp(&y[o], &v, sizeof v) == 0 && memcmp(&y2[o], &v, sizeof v) == 0);
                }
        CHECK_MSG(ok, "2x2 max pool, width %lld", (long long)w);
        free(x);
        free(y);
        free(y2);
        free(am);
    }
}

/* im2col/col2im without padding and with stride 1 take a whole-row path (widths with their
 * own unrolled case and others): compare with the definition. */
static void test_im2col_plain(void)
{
    static const int64_t sizes[][3] = { { 12, 5, 1 }, { 28, 5, 1 }, { 9, 3, 1 }, { 11, 3, 2 } };
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        pr_conv_geom g = { .n = 3, .c = 2, .h = sizes[t][0], .w = sizes[t][0], .o = 2,
                           .kh = sizes[t][1], .kw = sizes[t][1], .sh = sizes[t][2], .sw = 1,
                           .dh = 1, .dw = 1, .groups = 1 };
        CHECK(pr_conv_geom_finish(&g) == 0);
        int64_t pl = g.ho * g.wo, k = g.c * g.kh * g.kw, nx = g.n * g.c * g.h * g.w;
        float *x = malloc(sizeof *x * (size_t)nx), *cols = malloc(sizeof *cols * (size_t)(k * g.n * pl));
        float *dx = calloc((size_t)nx, sizeof *dx), *ref = calloc((size_t)nx, sizeof *ref);
        for (int64_t i = 0; i < nx; i++)
            x[i] = (float)i;
        pr_conv_im2col(x, cols, &g, 0, 0, g.n);
        int ok = 1;
        for (int64_t ci = 0; ci < g.c; ci++)
            for (int64_t ki = 0; ki < g.kh; ki++)
                for (int64_t kj = 0; kj < g.kw; kj++)
                    for (int64_t n = 0; n < g.n; n++)
                        for (int64_t oh = 0; oh < g.ho; oh++)
                            for (int64_t ow = 0; ow < g.wo; ow++) {
                                int64_t r = (ci * g.kh + ki) * g.kw + kj;
                                int64_t xi = ((n * g.c + ci) * g.h + oh * g.sh + ki) * g.w + ow + kj;
                                float c = cols[r * g.n * pl + n * pl + oh * g.wo + ow];
                                ok &= c == x[xi];
                                ref[xi] += c; /* col2im(cols) by definition */
                            }
        CHECK_MSG(ok, "im2col %lldx%lld kernel %lld", (long long)g.h, (long long)g.w,
                  (long long)g.kh);
        pr_conv_col2im(cols, dx, &g, 0, 0, g.n);
        CHECK_MSG(memcmp(dx, ref, sizeof *dx * (size_t)nx) == 0, "col2im %lldx%lld", (long long)g.h,
                  (long long)g.w);
        free(x);
        free(cols);
        free(dx);
        free(ref);
    }
}

/* pr_parallel_for on its persistent pool: every item exactly once for any thread count (raised
 * and lowered between calls), small jobs inline, and a call nested inside a part (which finds
 * the pool busy and runs inline) still covers its range. */
typedef struct {
    int *hits;
    int nested;
} pfor_ctx;

static void pfor_mark(void *ctx, int64_t b, int64_t e)
{
    pfor_ctx *c = ctx;
    for (int64_t i = b; i < e; i++)
        c->hits[i]++;
}

static void pfor_nest(void *ctx, int64_t b, int64_t e)
{
    pfor_ctx *c = ctx;
    for (int64_t i = b; i < e; i++) {
        pfor_ctx inner = { c->hits + i * 8, 0 };
        pr_parallel_for(8, 1 << 20, pfor_mark, &inner);
    }
}

static void test_parallel_for(void)
{
    enum { N = 1000 };
    static int hits[N * 8];
    static const int counts[] = { 2, 4, 1, 3, 2 };
    int before = pr_threads();
    for (size_t t = 0; t < sizeof counts / sizeof counts[0]; t++) {
        pr_set_threads(counts[t]);
        for (int64_t cost = 1; cost <= (1 << 20); cost <<= 10) {
            memset(hits, 0, sizeof hits);
            pfor_ctx c = { hits, 0 };
            for (int rep = 0; rep < 50; rep++)
                pr_parallel_for(N, cost, pfor_mark, &c);
            int ok = 1;
            for (int i = 0; i < N; i++)
                ok &= hits[i] == 50;
            CHECK_MSG(ok, "threads %d cost %lld", counts[t], (long long)cost);
        }
        memset(hits, 0, sizeof hits);
        pfor_ctx c = { hits, 1 };
        pr_parallel_for(N, 1 << 20, pfor_nest, &c);
        int ok = 1;
        for (int i = 0; i < N * 8; i++)
            ok &= hits[i] == 1;
        CHECK_MSG(ok, "nested, threads %d", counts[t]);
    }
    pr_set_threads(before);
}

int main(void)
{
    RUN(test_parallel_for);
    RUN(test_im2col_adjoint);
    RUN(test_im2col_plain);
    RUN(test_max_pool_2x2_kernel);
    RUN(test_conv2d_values);
    RUN(test_conv2d_no_input_grad);
    RUN(test_conv2d_direct);
    RUN(test_conv2d_strided_input);
    RUN(test_conv2d_errors);
    RUN(test_pools);
    RUN(test_batch_norm);
    RUN(test_cross_entropy);
    RUN(test_mse_softmax);
    RUN(test_dropout);
    return CHECK_DONE();
}
