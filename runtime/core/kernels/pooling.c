/* kernels/pooling.c: max and average 2-D pooling on raw NCHW float arrays (see kernels.h). */
#include "kernels.h"

#include <math.h>
#include <stddef.h>

typedef struct {
    const float *in;
    float *out;
    int64_t *argmax;
    const pr_conv_geom *g;
} pool_job;

/* best/bi become v/i when v is strictly greater, by masks instead of a branch: with random
 * data the comparison is a coin flip a branch would mispredict half the time. */
static inline void max_take(float v, int64_t i, float *best, int64_t *bi)
{
    int64_t take = -(int64_t)(v > *best);
    *bi = (*bi & ~take) | (i & take);
    *best = v > *best ? v : *best;
}

/* The common 2x2 window with stride 2 and no padding, unrolled; false when not that case. */
static int max_forward_2x2(const pool_job *j, int64_t p0, int64_t p1)
{
    const pr_conv_geom *g = j->g;
    if (g->kh != 2 || g->kw != 2 || g->sh != 2 || g->sw != 2 || g->ph || g->pw)
        return 0;
    const int64_t w = g->w, wo = g->wo, ho = g->ho, hw = g->h * w, pl = ho * wo;
    for (int64_t p = p0; p < p1; p++) {
        const float *in = j->in + p * hw;
        float *out = j->out + p * pl;
        int64_t *am = j->argmax + p * pl;
        for (int64_t oh = 0; oh < ho; oh++) {
            const float *r0 = in + 2 * oh * w, *r1 = r0 + w;
            for (int64_t ow = 0; ow < wo; ow++) {
                int64_t c = 2 * ow, i = 2 * oh * w + c;
                float a = r0[c], b = r0[c + 1], d = r1[c], e = r1[c + 1];
                float best = a;
                int64_t bi = i;
                max_take(b, i + 1, &best, &bi);
                max_take(d, i + w, &best, &bi);
                max_take(e, i + w + 1, &best, &bi);
                if ((a != a) | (b != b) | (d != d) | (e != e)) { /* the first NaN wins */
                    bi = a != a ? i : b != b ? i + 1 : d != d ? i + w : i + w + 1;
                    best = in[bi];
                }
                out[oh * wo + ow] = best;
                am[oh * wo + ow] = bi;
            }
        }
    }
    return 1;
}

/* planes [p0, p1) of (n, c) */
static void max_forward(void *ctx, int64_t p0, int64_t p1)
{
    const pool_job *j = ctx;
    const pr_conv_geom *g = j->g;
    const float *x = j->in;
    float *y = j->out;
    int64_t *argmax = j->argmax;
    if (max_forward_2x2(j, p0, p1))
        return;
    /* Geometry in locals: a store through y or argmax could otherwise alias *g. */
    const int64_t w = g->w, h = g->h, wo = g->wo, ho = g->ho, kh = g->kh, kw = g->kw;
    const int64_t sh = g->sh, sw = g->sw, ph = g->ph, pw = g->pw;
    int64_t hw = h * w, pl = ho * wo;
    for (int64_t p = p0; p < p1; p++) {
        const float *in = x + p * hw;
        float *out = y + p * pl;
        int64_t *am = argmax + p * pl;
        for (int64_t oh = 0; oh < ho; oh++) {
            int64_t h0 = oh * sh - ph;
            int64_t hs = h0 < 0 ? 0 : h0, he = h0 + kh > h ? h : h0 + kh;
            for (int64_t ow = 0; ow < wo; ow++) {
                int64_t w0 = ow * sw - pw;
                int64_t ws = w0 < 0 ? 0 : w0, we = w0 + kw > w ? w : w0 + kw;
                int64_t bi = hs * w + ws; /* kept when the window is all -inf */
                float best = -INFINITY;
                int nan = 0;
                for (int64_t ih = hs; ih < he; ih++)
                    for (int64_t iw = ws; iw < we; iw++) {
                        /* strictly greater: the first maximum wins ties */
                        float v = in[ih * w + iw];
                        max_take(v, ih * w + iw, &best, &bi);
                        nan |= v != v;
                    }
                if (nan) /* as PyTorch, a NaN wins (rare: rescan for the first one) */
                    for (int64_t ih = he - 1; ih >= hs; ih--)
                        for (int64_t iw = we - 1; iw >= ws; iw--)
                            if (in[ih * w + iw] != in[ih * w + iw]) {
                                best = in[ih * w + iw];
                                bi = ih * w + iw;
                            }
                out[oh * wo + ow] = best;
                am[oh * wo + ow] = bi;
            }
        }
    }
}

void pr_pool_max_forward(const float *x, float *y, int64_t *argmax, const pr_conv_geom *g)
{
    pool_job j = { x, y, argmax, g };
    pr_parallel_for(g->n * g->c, g->h * g->w, max_forward, &j);
}

static void max_backward(void *ctx, int64_t p0, int64_t p1)
{
    const pool_job *j = ctx;
    const float *gy = j->in;
    float *dx = j->out;
    const int64_t *argmax = j->argmax;
    int64_t hw = j->g->h * j->g->w, pl = j->g->ho * j->g->wo;
    for (int64_t p = p0; p < p1; p++) {
        float *d = dx + p * hw;
        const float *s = gy + p * pl;
        const int64_t *am = argmax + p * pl;
        for (int64_t i = 0; i < pl; i++)
            d[am[i]] += s[i];
    }
}

/* PyTorch's divisor with count_include_pad: the window clipped to the padded input only. */
static float avg_divisor(const pr_conv_geom *g, int64_t h0, int64_t w0)
{
    int64_t h1 = h0 + g->kh, w1 = w0 + g->kw;
    if (h1 > g->h + g->ph)
        h1 = g->h + g->ph;
    if (w1 > g->w + g->pw)
        w1 = g->w + g->pw;
    return (float)((h1 - h0) * (w1 - w0));
}

void pr_pool_max_backward(const float *gy, float *dx, const int64_t *argmax, const pr_conv_geom *g)
{
    pool_job j = { gy, dx, (int64_t *)argmax, g };
    pr_parallel_for(g->n * g->c, g->h * g->w, max_backward, &j);
}

static void avg_forward(void *ctx, int64_t p0, int64_t p1)
{
    const pool_job *j = ctx;
    const pr_conv_geom *g = j->g;
    const float *x = j->in;
    float *y = j->out;
    int64_t hw = g->h * g->w, pl = g->ho * g->wo;
    for (int64_t p = p0; p < p1; p++) {
        const float *in = x + p * hw;
        float *out = y + p * pl;
        for (int64_t oh = 0; oh < g->ho; oh++) {
            int64_t h0 = oh * g->sh - g->ph;
            int64_t hs = h0 < 0 ? 0 : h0, he = h0 + g->kh > g->h ? g->h : h0 + g->kh;
            for (int64_t ow = 0; ow < g->wo; ow++) {
                int64_t w0 = ow * g->sw - g->pw;
                int64_t ws = w0 < 0 ? 0 : w0, we = w0 + g->kw > g->w ? g->w : w0 + g->kw;
                float acc = 0.0f;
                for (int64_t ih = hs; ih < he; ih++)
                    for (int64_t iw = ws; iw < we; iw++)
                        acc += in[ih * g->w + iw];
                out[oh * g->wo + ow] = acc / avg_divisor(g, h0, w0);
            }
        }
    }
}

void pr_pool_avg_forward(const float *x, float *y, const pr_conv_geom *g)
{
    pool_job j = { x, y, NULL, g };
    pr_parallel_for(g->n * g->c, g->h * g->w, avg_forward, &j);
}

static void avg_backward(void *ctx, int64_t p0, int64_t p1)
{
    const pool_job *j = ctx;
    const pr_conv_geom *g = j->g;
    const float *gy = j->in;
    float *dx = j->out;
    int64_t hw = g->h * g->w, pl = g->ho * g->wo;
    for (int64_t p = p0; p < p1; p++) {
        float *d = dx + p * hw;
        const float *s = gy + p * pl;
        for (int64_t oh = 0; oh < g->ho; oh++) {
            int64_t h0 = oh * g->sh - g->ph;
            int64_t hs = h0 < 0 ? 0 : h0, he = h0 + g->kh > g->h ? g->h : h0 + g->kh;
            for (int64_t ow = 0; ow < g->wo; ow++) {
                int64_t w0 = ow * g->sw - g->pw;
                int64_t ws = w0 < 0 ? 0 : w0, we = w0 + g->kw > g->w ? g->w : w0 + g->kw;
                float v = s[oh * g->wo + ow] / avg_divisor(g, h0, w0);
                for (int64_t ih = hs; ih < he; ih++)
                    for (int64_t iw = ws; iw < we; iw++)
                        d[ih * g->w + iw] += v;
            }
        }
    }
}

void pr_pool_avg_backward(const float *gy, float *dx, const pr_conv_geom *g)
{
    pool_job j = { gy, dx, NULL, g };
    pr_parallel_for(g->n * g->c, g->h * g->w, avg_backward, &j);
}
