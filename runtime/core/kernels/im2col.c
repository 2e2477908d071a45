/* kernels/im2col.c: convolution geometry, batch im2col/col2im, the NCHW <-> GEMM layout
 * copies and direct depthwise convolution on raw float arrays (see kernels.h). Each kernel
 * splits independent work (rows of cols, channels, planes) with pr_parallel_for. */
#include "kernels.h"

#include <string.h>

int pr_conv_geom_finish(pr_conv_geom *g)
{
    int64_t ekh = g->dh * (g->kh - 1) + 1, ekw = g->dw * (g->kw - 1) + 1;
    int64_t hp = g->h + 2 * g->ph, wp = g->w + 2 * g->pw;
    if (g->sh < 1 || g->sw < 1 || g->dh < 1 || g->dw < 1 || ekh > hp || ekw > wp) {
        g->ho = g->wo = 0;
        return -1;
    }
    g->ho = (hp - ekh) / g->sh + 1;
    g->wo = (wp - ekw) / g->sw + 1;
    return 0;
}

/* The output columns [*lo, *hi) whose input column ow*s - off falls inside [0, w): outside it
 * the patch reads padding. Computing the range once per row keeps the inner loops branch-free. */
static void valid_cols(int64_t off, int64_t s, int64_t w, int64_t wo, int64_t *lo, int64_t *hi)
{
    int64_t l = off <= 0 ? 0 : (off + s - 1) / s;
    int64_t h = w - 1 + off < 0 ? 0 : (w - 1 + off) / s + 1;
    if (h > wo)
        h = wo;
    if (l > h)
        l = h;
    *lo = l;
    *hi = h;
}

/* o[0, n) = s[0, n) and d[0, n) += s[0, n) for the short rows of im2col/col2im (LeNet's
 * second convolution copies rows of 8 floats, its first of 24). A loop with an unknown trip
 * count that short runs mostly in the compiler's scalar prologue and epilogue (callgrind: over
 * 5 instructions per float); fixed blocks of 8 and 4 become plain vector moves. */
static inline void copy_row(float *restrict o, const float *restrict s, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            o[i + k] = s[i + k];
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++)
            o[i + k] = s[i + k];
    for (; i < n; i++)
        o[i] = s[i];
}

static inline void add_row(float *restrict d, const float *restrict s, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            d[i + k] += s[i + k];
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++)
            d[i + k] += s[i + k];
    for (; i < n; i++)
        d[i] += s[i];
}

/* The 2-D versions over `rows` rows (source row stride `ss`, destination row stride `ds`,
 * `n` floats each), with the common widths (LeNet's 8, 24; 4..32) as cases: a constant n
 * unrolls the row into a few vector moves and leaves about one loop test per row, where the
 * generic loop spent ~50 instructions per row of 8 floats. */
#define PR_ROWS_CASES(op)                                                                         \
    switch (n) {                                                                                 \
    case 4: for (int64_t r = 0; r < rows; r++) op(d + r * ds, s + r * ss, 4); break;             \
    case 6: for (int64_t r = 0; r < rows; r++) op(d + r * ds, s + r * ss, 6); break;             \
    case 8: for (int64_t r = 0; r < rows; r++) op(d + r * ds, s + r * ss, 8); break;             \
    case 12: for (int64_t r = 0; r < rows; r++) op(d + r * ds, s + r * ss, 12); break;           \
    case 14: for (int64_t r = 0; r < rows; r++) op(d + r * ds, s + r * ss, 14); break;           \
    case 16: for (int64_t r = 0; r < rows; r++) op(d + r * ds, s + r * ss, 16); break;           \
    case 24: for (int64_t r = 0; r < rows; r++) op(d + r * ds, s + r * ss, 24); break;           \
    case 28: for (int64_t r = 0; r < rows; r++) op(d + r * ds, s + r * ss, 28); break;           \
    case 32: for (int64_t r = 0; r < rows; r++) op(d + r * ds, s + r * ss, 32); break;           \
    default: for (int64_t r = 0; r < rows; r++) op(d + r * ds, s + r * ss, n); break;            \
    }

static void copy_rows(float *restrict d, const float *restrict s, int64_t rows, int64_t n,
                      int64_t ds, int64_t ss)
{
    PR_ROWS_CASES(copy_row)
}

static void add_rows(float *restrict d, const float *restrict s, int64_t rows, int64_t n,
                     int64_t ds, int64_t ss)
{
    PR_ROWS_CASES(add_row)
}

typedef struct {
    const float *in;
    float *out;
    const float *w, *b;
    const pr_conv_geom *g;
    int64_t grp, n0, n1;
    int relu; /* the forward's fused ReLU */
} conv_job;

/* rows [r0, r1) of cols: row r is (ci, ki, kj) */
static void im2col_rows(void *ctx, int64_t r0, int64_t r1)
{
    const conv_job *j = ctx;
    const pr_conv_geom *g = j->g;
    /* Geometry in locals and restrict pointers: the rows are short (often 8-24 floats), so a
     * reload of *g or a run-time alias check per row would cost as much as the copy. */
    const int64_t h = g->h, w = g->w, ho = g->ho, wo = g->wo, sh = g->sh, sw = g->sw;
    const int64_t kh = g->kh, kw = g->kw, ph = g->ph, pw = g->pw, dh = g->dh, dw = g->dw;
    const int64_t c = g->c, n0 = j->n0, n1 = j->n1;
    const int64_t cg = c / g->groups, hw = h * w, pl = ho * wo, np = (n1 - n0) * pl;
    for (int64_t r = r0; r < r1; r++) {
        int64_t ci = r / (kh * kw), ki = r / kw % kh, kj = r % kw;
        const float *x = j->in + (j->grp * cg + ci) * hw;
        float *dst = j->out + r * np;
        int64_t off = pw - kj * dw, lo, hi;
        valid_cols(off, sw, w, wo, &lo, &hi);
        /* output rows whose input row is inside the image: [oh_lo, oh_hi) */
        int64_t oh_lo, oh_hi;
        valid_cols(ph - ki * dh, sh, h, ho, &oh_lo, &oh_hi);
        for (int64_t n = n0; n < n1; n++) {
            const float *restrict plane = x + n * c * hw;
            float *restrict d = dst + (n - n0) * pl;
            memset(d, 0, (size_t)(oh_lo * wo) * sizeof *d);
            if (sw == 1 && lo == 0 && hi == wo) { /* no padding on the sides: whole rows */
                if (oh_hi > oh_lo)
                    copy_rows(d + oh_lo * wo, plane + (oh_lo * sh - ph + ki * dh) * w - off,
                              oh_hi - oh_lo, wo, wo, sh * w);
                memset(d + oh_hi * wo, 0, (size_t)((ho - oh_hi) * wo) * sizeof *d);
                continue;
            }
            for (int64_t oh = oh_lo; oh < oh_hi; oh++) {
                const float *restrict src = plane + (oh * sh - ph + ki * dh) * w;
                float *restrict o = d + oh * wo;
                for (int64_t ow = 0; ow < lo; ow++)
                    o[ow] = 0.0f;
                if (sw == 1) {
                    copy_row(o + lo, src + lo - off, hi - lo);
                } else {
                    for (int64_t ow = lo; ow < hi; ow++)
                        o[ow] = src[ow * sw - off];
                }
                for (int64_t ow = hi; ow < wo; ow++)
                    o[ow] = 0.0f;
            }
            memset(d + oh_hi * wo, 0, (size_t)((ho - oh_hi) * wo) * sizeof *d);
        }
    }
}

void pr_conv_im2col(const float *x, float *cols, const pr_conv_geom *g, int64_t grp, int64_t n0,
                    int64_t n1)
{
    conv_job j = { x, cols, NULL, NULL, g, grp, n0, n1, 0 };
    pr_parallel_for(g->c / g->groups * g->kh * g->kw, (n1 - n0) * g->ho * g->wo, im2col_rows,
                    &j);
}

/* items [f0, f1) of (ci, n - n0), ci major: each writes only its own input plane */
static void col2im_items(void *ctx, int64_t f0, int64_t f1)
{
    const conv_job *j = ctx;
    const pr_conv_geom *g = j->g;
    const int64_t h = g->h, w = g->w, ho = g->ho, wo = g->wo, sh = g->sh, sw = g->sw;
    const int64_t kh = g->kh, kw = g->kw, ph = g->ph, pw = g->pw, dh = g->dh, dw = g->dw;
    const int64_t c = g->c, nb = j->n1 - j->n0;
    const int64_t cg = c / g->groups, hw = h * w, pl = ho * wo, np = nb * pl;
    for (int64_t ci = f0 / nb; ci <= (f1 - 1) / nb; ci++) {
        int64_t n0 = f0 > ci * nb ? f0 - ci * nb : 0, n1 = f1 < (ci + 1) * nb ? f1 - ci * nb : nb;
        float *x = j->out + (j->grp * cg + ci) * hw;
        /* Same order as im2col: each cols row is read as a sequential stream (hundreds of
         * interleaved row streams defeat the prefetcher), while the writes stay inside one
         * channel of the batch. */
        for (int64_t ki = 0; ki < kh; ki++) {
            int64_t oh_lo, oh_hi;
            valid_cols(ph - ki * dh, sh, h, ho, &oh_lo, &oh_hi);
            for (int64_t kj = 0; kj < kw; kj++) {
                const float *src = j->in + ((ci * kh + ki) * kw + kj) * np;
                int64_t off = pw - kj * dw, lo, hi;
                valid_cols(off, sw, w, wo, &lo, &hi);
                for (int64_t n = n0; n < n1; n++) {
                    float *plane = x + (j->n0 + n) * c * hw;
                    if (sw == 1 && lo == 0 && hi == wo) {
                        if (oh_hi > oh_lo)
                            add_rows(plane + (oh_lo * sh - ph + ki * dh) * w - off,
                                     src + n * pl + oh_lo * wo, oh_hi - oh_lo, wo, sh * w, wo);
                        continue;
                    }
                    for (int64_t oh = oh_lo; oh < oh_hi; oh++) {
                        const float *restrict s = src + n * pl + oh * wo;
                        float *restrict d = plane + (oh * sh - ph + ki * dh) * w;
                        if (sw == 1) {
                            add_row(d + lo - off, s + lo, hi - lo);
                        } else {
                            for (int64_t ow = lo; ow < hi; ow++)
                                d[ow * sw - off] += s[ow];
                        }
                    }
                }
            }
        }
    }
}

void pr_conv_col2im(const float *cols, float *dx, const pr_conv_geom *g, int64_t grp, int64_t n0,
                    int64_t n1)
{
    conv_job j = { cols, dx, NULL, NULL, g, grp, n0, n1, 0 };
    pr_parallel_for(g->c / g->groups * (n1 - n0), g->kh * g->kw * g->ho * g->wo, col2im_items,
                    &j);
}

/* samples [j->n0 + i0, j->n0 + i1): y[n, o, :] = t[o, (n-n0)*pl : (n-n0+1)*pl] + b[o] */
static void gemm_to_nchw(void *ctx, int64_t i0, int64_t i1)
{
    const conv_job *j = ctx;
    const int64_t o = j->g->o, pl = j->g->ho * j->g->wo, np = (j->n1 - j->n0) * pl;
    for (int64_t i = i0; i < i1; i++)
        for (int64_t k = 0; k < o; k++) {
            const float *s = j->in + k * np + i * pl;
            float *d = j->out + ((j->n0 + i) * o + k) * pl;
            float bv = j->b ? j->b[k] : 0.0f;
            if (j->relu)
                for (int64_t i = 0; i < pl; i++) {
                    float v = s[i] + bv;
                    d[i] = v < 0.0f ? 0.0f : v;
                }
            else
                for (int64_t i = 0; i < pl; i++)
                    d[i] = s[i] + bv;
        }
}

void pr_conv_gemm_to_nchw(const float *t, float *y, const float *b, const pr_conv_geom *g,
                          int64_t n0, int64_t n1, int relu)
{
    conv_job j = { t, y, NULL, b, g, 0, n0, n1, relu };
    pr_parallel_for(n1 - n0, g->o * g->ho * g->wo, gemm_to_nchw, &j);
}

static void nchw_to_gemm(void *ctx, int64_t i0, int64_t i1)
{
    const conv_job *j = ctx;
    const int64_t o = j->g->o, pl = j->g->ho * j->g->wo, np = (j->n1 - j->n0) * pl;
    for (int64_t i = i0; i < i1; i++)
        for (int64_t k = 0; k < o; k++)
            memcpy(j->out + k * np + i * pl, j->in + ((j->n0 + i) * o + k) * pl,
                   (size_t)pl * sizeof(float));
}

void pr_conv_nchw_to_gemm(const float *gy, float *t, const pr_conv_geom *g, int64_t n0, int64_t n1)
{
    conv_job j = { gy, t, NULL, NULL, g, 0, n0, n1, 0 };
    pr_parallel_for(n1 - n0, g->o * g->ho * g->wo, nchw_to_gemm, &j);
}

/* output planes [p0, p1) of (n, oc) */
static void depthwise_forward(void *ctx, int64_t p0, int64_t p1)
{
    const conv_job *j = ctx;
    const pr_conv_geom *g = j->g;
    const int64_t h = g->h, w = g->w, ho = g->ho, wo = g->wo, sh = g->sh, sw = g->sw;
    int64_t mult = g->o / g->c, hw = h * w, pl = ho * wo;
    for (int64_t p = p0; p < p1; p++) {
        int64_t n = p / g->o, oc = p % g->o;
        const float *plane = j->in + (n * g->c + oc / mult) * hw;
        const float *k = j->w + oc * g->kh * g->kw;
        float *out = j->out + p * pl;
        float bv = j->b ? j->b[oc] : 0.0f;
        for (int64_t i = 0; i < pl; i++)
            out[i] = bv;
        /* One kernel tap at a time over whole output rows: the inner loop is a contiguous
         * axpy the compiler vectorises for stride 1. */
        for (int64_t ki = 0; ki < g->kh; ki++) {
            for (int64_t kj = 0; kj < g->kw; kj++) {
                float kv = k[ki * g->kw + kj];
                int64_t off = g->pw - kj * g->dw, lo, hi;
                valid_cols(off, sw, w, wo, &lo, &hi);
                for (int64_t oh = 0; oh < ho; oh++) {
                    int64_t ih = oh * sh - g->ph + ki * g->dh;
                    if (ih < 0 || ih >= h)
                        continue;
                    const float *src = plane + ih * w;
                    float *d = out + oh * wo;
                    if (sw == 1) {
                        for (int64_t ow = lo; ow < hi; ow++)
                            d[ow] += kv * src[ow - off];
                    } else {
                        for (int64_t ow = lo; ow < hi; ow++)
                            d[ow] += kv * src[ow * sw - off];
                    }
                }
            }
        }
        if (j->relu) /* while the plane is in cache */
            for (int64_t i = 0; i < pl; i++)
                out[i] = out[i] < 0.0f ? 0.0f : out[i];
    }
}

void pr_conv_depthwise_forward(const float *x, float *y, const float *w, const float *b,
                               const pr_conv_geom *g, int relu)
{
    conv_job j = { x, y, w, b, g, 0, 0, g->n, relu };
    pr_parallel_for(g->n * g->o, g->kh * g->kw * g->ho * g->wo, depthwise_forward, &j);
}

/* input planes [p0, p1) of (n, c): each gathers from its `mult` output channels */
static void depthwise_backward_input(void *ctx, int64_t p0, int64_t p1)
{
    const conv_job *j = ctx;
    const pr_conv_geom *g = j->g;
    const int64_t h = g->h, w = g->w, ho = g->ho, wo = g->wo, sh = g->sh, sw = g->sw;
    int64_t mult = g->o / g->c, hw = h * w, pl = ho * wo;
    for (int64_t p = p0; p < p1; p++) {
        int64_t n = p / g->c, c = p % g->c;
        float *plane = j->out + p * hw;
        for (int64_t oc = c * mult; oc < (c + 1) * mult; oc++) {
            const float *k = j->w + oc * g->kh * g->kw;
            const float *go = j->in + (n * g->o + oc) * pl;
            for (int64_t ki = 0; ki < g->kh; ki++) {
                for (int64_t kj = 0; kj < g->kw; kj++) {
                    float kv = k[ki * g->kw + kj];
                    int64_t off = g->pw - kj * g->dw, lo, hi;
                    valid_cols(off, sw, w, wo, &lo, &hi);
                    for (int64_t oh = 0; oh < ho; oh++) {
                        int64_t ih = oh * sh - g->ph + ki * g->dh;
                        if (ih < 0 || ih >= h)
                            continue;
                        float *d = plane + ih * w;
                        const float *s = go + oh * wo;
                        for (int64_t ow = lo; ow < hi; ow++)
                            d[ow * sw - off] += kv * s[ow];
                    }
                }
            }
        }
    }
}

void pr_conv_depthwise_backward_input(const float *gy, float *dx, const float *w,
                                      const pr_conv_geom *g)
{
    conv_job j = { gy, dx, w, NULL, g, 0, 0, g->n, 0 };
    pr_parallel_for(g->n * g->c, g->o / g->c * g->kh * g->kw * g->ho * g->wo,
                    depthwise_backward_input, &j);
}

/* output channels [o0, o1): each owns its kernel's gradient, summed over the batch */
static void depthwise_backward_weight(void *ctx, int64_t o0, int64_t o1)
{
    const conv_job *j = ctx;
    const pr_conv_geom *g = j->g;
    const int64_t h = g->h, w = g->w, ho = g->ho, wo = g->wo, sh = g->sh, sw = g->sw;
    int64_t mult = g->o / g->c, hw = h * w, pl = ho * wo;
    for (int64_t oc = o0; oc < o1; oc++) {
        float *k = j->out + oc * g->kh * g->kw;
        for (int64_t n = 0; n < g->n; n++) {
            const float *plane = j->in + (n * g->c + oc / mult) * hw;
            const float *go = j->b + (n * g->o + oc) * pl; /* gy travels in the b slot */
            for (int64_t ki = 0; ki < g->kh; ki++) {
                for (int64_t kj = 0; kj < g->kw; kj++) {
                    int64_t off = g->pw - kj * g->dw, lo, hi;
                    valid_cols(off, sw, w, wo, &lo, &hi);
                    float acc = 0.0f;
                    for (int64_t oh = 0; oh < ho; oh++) {
                        int64_t ih = oh * sh - g->ph + ki * g->dh;
                        if (ih < 0 || ih >= h)
                            continue;
                        const float *src = plane + ih * w;
                        const float *s = go + oh * wo;
                        for (int64_t ow = lo; ow < hi; ow++)
                            acc += s[ow] * src[ow * sw - off];
                    }
                    k[ki * g->kw + kj] += acc;
                }
            }
        }
    }
}

void pr_conv_depthwise_backward_weight(const float *x, const float *gy, float *dw,
                                       const pr_conv_geom *g)
{
    conv_job j = { x, dw, NULL, gy, g, 0, 0, g->n, 0 };
    pr_parallel_for(g->o, g->n * g->kh * g->kw * g->ho * g->wo, depthwise_backward_weight,
                    &j);
}
