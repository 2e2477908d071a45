/* kernels/conv_direct.c: dense direct convolution for stride 1, one group and few taps per
 * output (c*kh*kw <= PR_CONV_DIRECT_MAX_K): the first layer of image networks. There the
 * im2col GEMM has K = c*kh*kw (25 for LeNet-5's 1->20 5x5), too short for BLAS to pay for its
 * packing and for writing C twice: LeNet-5's first conv ran at 36 GFLOP/s in training against
 * 126 for its second (K = 500), and took a fifth of an epoch for a tenth of its work.
 *
 * Each sample is copied into a zero-padded plane whose rows carry 8 floats of slack, so a
 * stride-1 window row is a contiguous run and a vector may read past the last column. The
 * forward computes a row of output for 4 channels at a time in AVX2 registers (4 channels x up
 * to 3 vectors of 8 columns), over all taps: every input load feeds 4 FMAs and the output is
 * written once. The weight gradient swaps the roles: 4 channels x 2 taps of accumulators over
 * the gradient rows, padded with zeros to whole vectors. Its sum over the batch goes through
 * partial sums per fixed block of samples, added in block order, so the result does not depend
 * on the thread count. Both are parallel over blocks of samples. The input gradient is not
 * here: the first layer's input needs none, and the GEMM path does it otherwise. */
#include "../kernels.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(PR_CONV_NO_SIMD)
#include <immintrin.h>
#define DIRECT_X86 1
#define AVX2 __attribute__((target("avx2,fma")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma")))
#endif

/* The layout of one sample's padded input and of the 4-channel output (or gradient) tile. */
typedef struct direct_geom {
    int64_t k;      /* taps per output: c*kh*kw */
    int64_t wps;    /* padded row: w + 2*pw + 8 slack floats */
    int64_t plane;  /* (h + 2*ph) * wps */
    int64_t xs;     /* floats of the padded sample, with 8 more for the last row's vectors */
    int64_t tw;     /* output row in the tile: wo rounded up to 8 */
    int64_t slot;   /* floats of scratch per block: padded sample + 4 planes of [ho, tw] */
    int64_t nb;     /* blocks of PR_CONV_DIRECT_BLOCK samples */
} direct_geom;

static void direct_layout(const pr_conv_geom *g, direct_geom *d)
{
    d->k = g->c * g->kh * g->kw;
    d->wps = g->w + 2 * g->pw + 8;
    d->plane = (g->h + 2 * g->ph) * d->wps;
    d->xs = g->c * d->plane + 8;
    d->tw = (g->wo + 7) / 8 * 8;
    d->slot = d->xs + 4 * g->ho * d->tw;
    d->nb = (g->n + PR_CONV_DIRECT_BLOCK - 1) / PR_CONV_DIRECT_BLOCK;
}

/* Offsets of each tap's window in the padded sample: tap (ci, i, j) at ci*plane + i*dh*wps + j*dw. */
static void direct_offsets(const pr_conv_geom *g, const direct_geom *d, int64_t *off)
{
    int64_t e = 0;
    for (int64_t ci = 0; ci < g->c; ci++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++)
                off[e++] = ci * d->plane + i * g->dh * d->wps + j * g->dw;
}

/* Copies sample s of x into the interior of the padded plane xs (its border stays zero). */
static void direct_pad(const float *x, float *xs, const pr_conv_geom *g, const direct_geom *d,
                       int64_t s)
{
    for (int64_t ci = 0; ci < g->c; ci++)
        for (int64_t h = 0; h < g->h; h++)
            memcpy(xs + ci * d->plane + (h + g->ph) * d->wps + g->pw,
                   x + ((s * g->c + ci) * g->h + h) * g->w, (size_t)g->w * sizeof *xs);
}

int pr_conv_direct_ok(const pr_conv_geom *g)
{
#ifdef DIRECT_X86
    static int cpu = -1; /* a benign race: every thread computes the same answer */
    if (cpu < 0)
        cpu = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return cpu && g->groups == 1 && g->sh == 1 && g->sw == 1 && g->n > 0 && g->ho > 0 &&
           g->wo > 0 && g->c * g->kh * g->kw <= PR_CONV_DIRECT_MAX_K;
#else
    (void)g;
    return 0;
#endif
}

size_t pr_conv_direct_scratch(const pr_conv_geom *g, int backward)
{
    direct_geom d;
    direct_layout(g, &d);
    size_t n = (size_t)(d.nb * d.slot);
    if (backward) /* per block partial sums of dw and db, in double */
        n += 2 * (size_t)(d.nb * (g->o * d.k + g->o));
    return n;
}

#ifdef DIRECT_X86

/* ---- forward: out[i][8v..] = bias[i] + sum_e w[i*k + e] * xr[off[e] + 8v..] ---- */
#define FWD_TILE(OB, NV)                                                                          \
    AVX2_INLINE void fwd_##OB##_##NV(const float *xr, const int64_t *off, int64_t ne,            \
                                     const float *w, int64_t k, const float *bias, float *out,   \
                                     int64_t os, int relu)                                        \
    {                                                                                             \
        __m256 acc[OB][NV];                                                                       \
        for (int i = 0; i < OB; i++)                                                              \
            for (int v = 0; v < NV; v++)                                                          \
                acc[i][v] = _mm256_set1_ps(bias[i]);                                              \
        for (int64_t e = 0; e < ne; e++) {                                                        \
            const float *q = xr + off[e];                                                         \
            __m256 xv[NV];                                                                        \
            for (int v = 0; v < NV; v++)                                                          \
                xv[v] = _mm256_loadu_ps(q + 8 * v);                                               \
            for (int i = 0; i < OB; i++) {                                                        \
                __m256 wv = _mm256_broadcast_ss(w + i * k + e);                                   \
                for (int v = 0; v < NV; v++)                                                      \
                    acc[i][v] = _mm256_fmadd_ps(wv, xv[v], acc[i][v]);                            \
            }                                                                                     \
        }                                                                                         \
        if (relu) /* max(0, x) keeps a NaN x, as pr_relu does */                                  \
            for (int i = 0; i < OB; i++)                                                          \
                for (int v = 0; v < NV; v++)                                                      \
                    acc[i][v] = _mm256_max_ps(_mm256_setzero_ps(), acc[i][v]);                    \
        for (int i = 0; i < OB; i++)                                                              \
            for (int v = 0; v < NV; v++)                                                          \
                _mm256_storeu_ps(out + i * os + 8 * v, acc[i][v]);                                \
    }
FWD_TILE(4, 1)
FWD_TILE(4, 2)
FWD_TILE(4, 3)
FWD_TILE(1, 1)
FWD_TILE(1, 2)
FWD_TILE(1, 3)

/* Rows of channels [o0, o0+ob) of one padded sample into the tile out [ob][ho][tw]. */
AVX2 static void fwd_channels(const float *xs, const int64_t *off, const float *w,
                              const float *bias, float *out, const pr_conv_geom *g,
                              const direct_geom *d, int64_t ob, int relu)
{
    int64_t os = g->ho * d->tw;
    for (int64_t oh = 0; oh < g->ho; oh++)
        for (int64_t c0 = 0; c0 < g->wo; c0 += 24) {
            int64_t nv = (g->wo - c0 + 7) / 8;
            const float *xr = xs + oh * d->wps + c0;
            float *o = out + oh * d->tw + c0;
            if (ob == 4) {
                if (nv >= 3)
                    fwd_4_3(xr, off, d->k, w, d->k, bias, o, os, relu);
                else if (nv == 2)
                    fwd_4_2(xr, off, d->k, w, d->k, bias, o, os, relu);
                else
                    fwd_4_1(xr, off, d->k, w, d->k, bias, o, os, relu);
            } else {
                for (int64_t i = 0; i < ob; i++) {
                    if (nv >= 3)
                        fwd_1_3(xr, off, d->k, w + i * d->k, d->k, bias + i, o + i * os, os, relu);
                    else if (nv == 2)
                        fwd_1_2(xr, off, d->k, w + i * d->k, d->k, bias + i, o + i * os, os, relu);
                    else
                        fwd_1_1(xr, off, d->k, w + i * d->k, d->k, bias + i, o + i * os, os, relu);
                }
            }
        }
}

/* ---- weight gradient: acc[i][t] += gy_i[row] * x[off[e0+t] + row], summed over the plane ---- */
AVX2_INLINE float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The sum of a gradient tile's plane (its padding is zero), in float vectors then double. */
AVX2 static double plane_sum(const float *p, int64_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + i + 8));
    }
    double s = (double)hsum8(a0) + (double)hsum8(a1);
    for (; i < n; i++)
        s += p[i];
    return s;
}

#define WGT_TILE(OB, EB)                                                                          \
    AVX2_INLINE void wgt_##OB##_##EB(const float *xs, const int64_t *off, const float *gyp,      \
                                     int64_t os, const pr_conv_geom *g, const direct_geom *d,    \
                                     double *dw, int64_t k)                                       \
    {                                                                                             \
        __m256 acc[OB][EB];                                                                       \
        for (int i = 0; i < OB; i++)                                                              \
            for (int t = 0; t < EB; t++)                                                          \
                acc[i][t] = _mm256_setzero_ps();                                                  \
        for (int64_t oh = 0; oh < g->ho; oh++) {                                                  \
            const float *xr = xs + oh * d->wps, *gr = gyp + oh * d->tw;                           \
            for (int64_t c0 = 0; c0 < d->tw; c0 += 8) {                                           \
                __m256 gv[OB];                                                                    \
                for (int i = 0; i < OB; i++)                                                      \
                    gv[i] = _mm256_loadu_ps(gr + i * os + c0);                                    \
                for (int t = 0; t < EB; t++) {                                                    \
                    __m256 xv = _mm256_loadu_ps(xr + off[t] + c0);                                \
                    for (int i = 0; i < OB; i++)                                                  \
                        acc[i][t] = _mm256_fmadd_ps(gv[i], xv, acc[i][t]);                        \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
        for (int i = 0; i < OB; i++)                                                              \
            for (int t = 0; t < EB; t++)                                                          \
                dw[i * k + t] += (double)hsum8(acc[i][t]);                                        \
    }
WGT_TILE(4, 2)
WGT_TILE(4, 1)
WGT_TILE(1, 2)
WGT_TILE(1, 1)

/* dw rows [o0, o0+ob) (double, [ob][k]) from one padded sample and its gradient tile. */
AVX2 static void wgt_channels(const float *xs, const int64_t *off, const float *gyp, double *dw,
                              const pr_conv_geom *g, const direct_geom *d, int64_t ob)
{
    int64_t os = g->ho * d->tw;
    for (int64_t e = 0; e < d->k; e += 2) {
        int two = e + 2 <= d->k;
        if (ob == 4) {
            if (two)
                wgt_4_2(xs, off + e, gyp, os, g, d, dw + e, d->k);
            else
                wgt_4_1(xs, off + e, gyp, os, g, d, dw + e, d->k);
        } else {
            for (int64_t i = 0; i < ob; i++) {
                if (two)
                    wgt_1_2(xs, off + e, gyp + i * os, os, g, d, dw + i * d->k + e, d->k);
                else
                    wgt_1_1(xs, off + e, gyp + i * os, os, g, d, dw + i * d->k + e, d->k);
            }
        }
    }
}

/* ---- the parallel jobs: items are blocks of PR_CONV_DIRECT_BLOCK samples ---- */

typedef struct direct_job {
    const pr_conv_geom *g;
    direct_geom d;
    int64_t off[PR_CONV_DIRECT_MAX_K];
    const float *x, *w, *b, *gy;
    float *y;
    int relu;        /* forward: the fused ReLU */
    float *slots;    /* d.nb slots of d.slot floats; a call uses the slot of its first block */
    double *partial; /* backward: d.nb blocks of [o*k dw, o db] */
} direct_job;

static void fwd_blocks(void *ctx, int64_t b0, int64_t b1)
{
    const direct_job *j = ctx;
    const pr_conv_geom *g = j->g;
    const direct_geom *d = &j->d;
    float *xs = j->slots + b0 * d->slot, *out = xs + d->xs;
    int64_t pl = g->ho * g->wo, os = g->ho * d->tw;
    float zero[4] = { 0 };
    memset(xs, 0, (size_t)d->xs * sizeof *xs);
    int64_t s1 = b1 * PR_CONV_DIRECT_BLOCK < g->n ? b1 * PR_CONV_DIRECT_BLOCK : g->n;
    for (int64_t s = b0 * PR_CONV_DIRECT_BLOCK; s < s1; s++) {
        direct_pad(j->x, xs, g, d, s);
        for (int64_t o0 = 0; o0 < g->o; o0 += 4) {
            int64_t ob = g->o - o0 < 4 ? g->o - o0 : 4;
            fwd_channels(xs, j->off, j->w + o0 * d->k, j->b ? j->b + o0 : zero, out, g, d, ob,
                         j->relu);
            for (int64_t i = 0; i < ob; i++) {
                float *yp = j->y + (s * g->o + o0 + i) * pl;
                for (int64_t oh = 0; oh < g->ho; oh++)
                    memcpy(yp + oh * g->wo, out + i * os + oh * d->tw, (size_t)g->wo * sizeof *yp);
            }
        }
    }
}

static void wgt_blocks(void *ctx, int64_t b0, int64_t b1)
{
    const direct_job *j = ctx;
    const pr_conv_geom *g = j->g;
    const direct_geom *d = &j->d;
    float *xs = j->slots + b0 * d->slot, *gyp = xs + d->xs;
    int64_t pl = g->ho * g->wo, os = g->ho * d->tw, per = g->o * d->k + g->o;
    memset(xs, 0, (size_t)d->slot * sizeof *xs); /* borders and the gradient rows' tails */
    for (int64_t blk = b0; blk < b1; blk++) {
        double *dw = j->partial + blk * per, *db = dw + g->o * d->k;
        memset(dw, 0, (size_t)per * sizeof *dw);
        int64_t s0 = blk * PR_CONV_DIRECT_BLOCK;
        int64_t s1 = s0 + PR_CONV_DIRECT_BLOCK < g->n ? s0 + PR_CONV_DIRECT_BLOCK : g->n;
        for (int64_t s = s0; s < s1; s++) {
            direct_pad(j->x, xs, g, d, s);
            for (int64_t o0 = 0; o0 < g->o; o0 += 4) {
                int64_t ob = g->o - o0 < 4 ? g->o - o0 : 4;
                for (int64_t i = 0; i < ob; i++) {
                    const float *gp = j->gy + (s * g->o + o0 + i) * pl;
                    for (int64_t oh = 0; oh < g->ho; oh++)
                        memcpy(gyp + i * os + oh * d->tw, gp + oh * g->wo,
                               (size_t)g->wo * sizeof *gyp);
                    db[o0 + i] += plane_sum(gyp + i * os, os);
                }
                wgt_channels(xs, j->off, gyp, dw + o0 * d->k, g, d, ob);
            }
        }
    }
}

#endif /* DIRECT_X86 */

void pr_conv_direct_forward(const float *x, float *y, const float *w, const float *b,
                            float *scratch, const pr_conv_geom *g, int relu)
{
#ifdef DIRECT_X86
    direct_job j = { .g = g, .x = x, .w = w, .b = b, .y = y, .relu = relu, .slots = scratch };
    direct_layout(g, &j.d);
    direct_offsets(g, &j.d, j.off);
    int64_t cost = PR_CONV_DIRECT_BLOCK * g->o * j.d.k * g->ho * g->wo;
    pr_parallel_for(j.d.nb, cost, fwd_blocks, &j);
#else
    (void)x, (void)y, (void)w, (void)b, (void)scratch, (void)g, (void)relu;
#endif
}

void pr_conv_direct_backward_weight(const float *x, const float *gy, float *dw, float *db,
                                    float *scratch, const pr_conv_geom *g)
{
#ifdef DIRECT_X86
    direct_job j = { .g = g, .x = x, .gy = gy };
    direct_layout(g, &j.d);
    direct_offsets(g, &j.d, j.off);
    int64_t per = g->o * j.d.k + g->o;
    j.partial = (double *)scratch;
    j.slots = scratch + 2 * j.d.nb * per;
    int64_t cost = PR_CONV_DIRECT_BLOCK * g->o * j.d.k * g->ho * j.d.tw;
    pr_parallel_for(j.d.nb, cost, wgt_blocks, &j);
    for (int64_t i = 0; i < per; i++) { /* in block order: the same sums for any thread count */
        double s = 0.0;
        for (int64_t blk = 0; blk < j.d.nb; blk++)
            s += j.partial[blk * per + i];
        if (i < g->o * j.d.k) {
            if (dw)
                dw[i] = (float)s;
        } else if (db) {
            db[i - g->o * j.d.k] = (float)s;
        }
    }
#else
    (void)x, (void)gy, (void)dw, (void)db, (void)scratch, (void)g;
#endif
}
