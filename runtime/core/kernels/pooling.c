/* kernels/pooling.c: max and average 2-D pooling on raw NCHW float arrays (see kernels.h). */
#include "kernels.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const float *in;
    float *out;
    int64_t *argmax;
    const pr_conv_geom *g;
    int relu; /* max forward: the pooling of relu(x) */
} pool_job;

/* best/bi become v/i when v is strictly greater, by masks instead of a branch: with random
 * data the comparison is a coin flip a branch would mispredict half the time. */
static inline void max_take(float v, int64_t i, float *best, int64_t *bi)
{
    int64_t take = -(int64_t)(v > *best);
    *bi = (*bi & ~take) | (i & take);
    *best = v > *best ? v : *best;
}

/* "v beats best": strictly greater (the first maximum wins ties), or v is the first NaN (a NaN
 * wins, as in PyTorch, and then nothing beats it). Written as one comparison chain without
 * branches: with random data the outcome is a coin flip a branch would mispredict. */
static inline int max_beats(float v, float best)
{
    return (best == best) & !(v <= best);
}

#if defined(__SSE2__)
#include <emmintrin.h>

/* max_beats on 4 lanes: all-ones where v beats best. */
static inline __m128 max_beats4(__m128 v, __m128 best)
{
    return _mm_andnot_ps(_mm_cmple_ps(v, best), _mm_cmpeq_ps(best, best));
}

static inline __m128 select4(__m128 t, __m128 a, __m128 b)
{
    return _mm_or_ps(_mm_and_ps(t, a), _mm_andnot_ps(t, b));
}

/* Outputs [0, wo4) of one row of 2x2 windows, 4 at a time (wo4 a multiple of 4); returns
 * wo4. Rows r0/r1 are split into the windows' left and right columns by shuffles. */
static int64_t max_row_2x2_sse(const float *r0, const float *r1, float *o, int64_t *a,
                               int64_t wo4, int64_t base, int64_t w)
{
    const __m128i one = _mm_set1_epi32(1), wv = _mm_set1_epi32((int)w);
    for (int64_t ow = 0; ow < wo4; ow += 4) {
        __m128 x0 = _mm_loadu_ps(r0 + 2 * ow), x1 = _mm_loadu_ps(r0 + 2 * ow + 4);
        __m128 y0 = _mm_loadu_ps(r1 + 2 * ow), y1 = _mm_loadu_ps(r1 + 2 * ow + 4);
        __m128 tl = _mm_shuffle_ps(x0, x1, _MM_SHUFFLE(2, 0, 2, 0));
        __m128 tr = _mm_shuffle_ps(x0, x1, _MM_SHUFFLE(3, 1, 3, 1));
        __m128 bl = _mm_shuffle_ps(y0, y1, _MM_SHUFFLE(2, 0, 2, 0));
        __m128 br = _mm_shuffle_ps(y0, y1, _MM_SHUFFLE(3, 1, 3, 1));
        __m128 best = tl, t;
        if (!a) {
            t = max_beats4(tr, best);
            best = select4(t, tr, best);
            t = max_beats4(bl, best);
            best = select4(t, bl, best);
            t = max_beats4(br, best);
            best = select4(t, br, best);
            _mm_storeu_ps(o + ow, best);
            continue;
        }
        /* offset inside the window: column in bit 0, row in bit 1 */
        __m128i k = _mm_setzero_si128();
        t = max_beats4(tr, best);
        best = select4(t, tr, best);
        k = _mm_or_si128(_mm_and_si128(_mm_castps_si128(t), _mm_set1_epi32(1)),
                         _mm_andnot_si128(_mm_castps_si128(t), k));
        t = max_beats4(bl, best);
        best = select4(t, bl, best);
        k = _mm_or_si128(_mm_and_si128(_mm_castps_si128(t), _mm_set1_epi32(2)),
                         _mm_andnot_si128(_mm_castps_si128(t), k));
        t = max_beats4(br, best);
        best = select4(t, br, best);
        k = _mm_or_si128(_mm_and_si128(_mm_castps_si128(t), _mm_set1_epi32(3)),
                         _mm_andnot_si128(_mm_castps_si128(t), k));
        _mm_storeu_ps(o + ow, best);
        /* index = base + 2*ow + (k & 1) + (k >> 1) * w; w is 0 or w per lane, so no multiply */
        __m128i col = _mm_add_epi32(_mm_set_epi32((int)(2 * ow + 6), (int)(2 * ow + 4),
                                                  (int)(2 * ow + 2), (int)(2 * ow)),
                                    _mm_and_si128(k, one));
        __m128i row = _mm_and_si128(_mm_cmpeq_epi32(_mm_srli_epi32(k, 1), one), wv);
        __m128i idx = _mm_add_epi32(_mm_add_epi32(col, row), _mm_set1_epi32((int)base));
        __m128i zero = _mm_setzero_si128(); /* indices are >= 0: widen by zero-extension */
        _mm_storeu_si128((__m128i *)(a + ow), _mm_unpacklo_epi32(idx, zero));
        _mm_storeu_si128((__m128i *)(a + ow + 2), _mm_unpackhi_epi32(idx, zero));
    }
    return wo4;
}
#endif

/* The common 2x2 window with stride 2 and no padding; false when not that case. With SSE2
 * four windows at a time without branches (perf: the scalar version's compares compiled to
 * branches, mispredicted half the time on real activations, 11-14% of a LeNet step). */
static int max_forward_2x2(const pool_job *j, int64_t p0, int64_t p1)
{
    const pr_conv_geom *g = j->g;
    if (g->kh != 2 || g->kw != 2 || g->sh != 2 || g->sw != 2 || g->ph || g->pw)
        return 0;
    const int64_t w = g->w, wo = g->wo, ho = g->ho, hw = g->h * w, pl = ho * wo;
#if defined(__SSE2__)
    /* int32 lanes for the indices inside a plane */
    const int64_t wo4 = hw <= INT32_MAX ? wo / 4 * 4 : 0;
#else
    const int64_t wo4 = 0;
#endif
    for (int64_t p = p0; p < p1; p++) {
        const float *in = j->in + p * hw;
        float *out = j->out + p * pl;
        int64_t *am = j->argmax ? j->argmax + p * pl : NULL;
        for (int64_t oh = 0; oh < ho; oh++) {
            const float *r0 = in + 2 * oh * w, *r1 = r0 + w;
            float *o = out + oh * wo;
            int64_t *a = am ? am + oh * wo : NULL;
            const int64_t base = 2 * oh * w;
            int64_t ow = 0;
#if defined(__SSE2__)
            if (wo4)
                ow = max_row_2x2_sse(r0, r1, o, a, wo4, base, w);
#endif
            for (; ow < wo; ow++) {
                float best = r0[2 * ow], v = r0[2 * ow + 1];
                int k = 0;
                if (max_beats(v, best))
                    best = v, k = 1;
                v = r1[2 * ow];
                if (max_beats(v, best))
                    best = v, k = 2;
                v = r1[2 * ow + 1];
                if (max_beats(v, best))
                    best = v, k = 3;
                o[ow] = best;
                if (a)
                    a[ow] = base + 2 * ow + (k & 1) + (k >> 1) * w;
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
        int64_t *am = argmax ? argmax + p * pl : NULL;
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
                if (am)
                    am[oh * wo + ow] = bi;
            }
        }
    }
}

/* max_forward, then the ReLU on the planes just pooled (a quarter of the input for 2x2). */
static void max_forward_relu(void *ctx, int64_t p0, int64_t p1)
{
    const pool_job *j = ctx;
    max_forward(ctx, p0, p1);
    int64_t pl = j->g->ho * j->g->wo;
    float *y = j->out;
    for (int64_t i = p0 * pl; i < p1 * pl; i++) {
        if (j->argmax && !(y[i] > 0.0f))
            j->argmax[i] = -1;
        y[i] = y[i] < 0.0f ? 0.0f : y[i];
    }
}

void pr_pool_max_forward(const float *x, float *y, int64_t *argmax, const pr_conv_geom *g,
                         int relu)
{
    pool_job j = { x, y, argmax, g, relu };
    pr_parallel_for(g->n * g->c, g->h * g->w, relu ? max_forward_relu : max_forward, &j);
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
        /* zeroed here, plane by plane on the thread that scatters into it, rather than by a
         * separate single-threaded pass over the whole gradient before */
        memset(d, 0, (size_t)hw * sizeof *d);
        for (int64_t i = 0; i < pl; i++)
            if (am[i] >= 0) /* -1: a fused ReLU cut it */
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
    pool_job j = { gy, dx, (int64_t *)argmax, g, 0 };
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
    pool_job j = { x, y, NULL, g, 0 };
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
    pool_job j = { gy, dx, NULL, g, 0 };
    pr_parallel_for(g->n * g->c, g->h * g->w, avg_backward, &j);
}
