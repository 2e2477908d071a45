/* kernels.h: raw float32 array kernels behind the fused nn ops (ops/conv.c, ops/pool.c,
 * ops/nn.c): im2col/col2im over a whole batch, depthwise convolution, pooling, softmax rows.
 * They know nothing of tensors or autograd, never fail and never allocate: the ops check
 * shapes, allocate and call them. All arrays are contiguous and owned by the caller; outputs
 * named "accumulate" are added into, the others are overwritten. Argument order is input,
 * output, weight, bias, buffers, options (THNN). */
#ifndef PR_KERNELS_H
#define PR_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Geometry of a 2-D convolution or pooling over NCHW data. Pooling uses o = c, groups = c and
 * dilation 1. ho/wo are filled by pr_conv_geom_finish. */
typedef struct pr_conv_geom {
    int64_t n, c, h, w;        /* input batch, channels, height, width */
    int64_t o, kh, kw;         /* output channels, kernel height and width */
    int64_t sh, sw, ph, pw, dh, dw, groups;
    int64_t ho, wo;            /* output height and width */
} pr_conv_geom;

/* Computes ho/wo; returns 0, or -1 when the kernel (dilated) does not fit the padded input. */
int pr_conv_geom_finish(pr_conv_geom *g);

/* im2col of samples [n0, n1) for group `grp`: cols is [c/groups*kh*kw, (n1-n0)*ho*wo], row
 * (ci, ki, kj), column (n-n0)*ho*wo + oh*wo + ow; zero where the patch reads padding. */
void pr_conv_im2col(const float *x, float *cols, const pr_conv_geom *g, int64_t grp, int64_t n0,
                    int64_t n1);
/* The adjoint of im2col: accumulates cols (same layout) into dx [n, c, h, w]. */
void pr_conv_col2im(const float *cols, float *dx, const pr_conv_geom *g, int64_t grp, int64_t n0,
                    int64_t n1);
/* The GEMM layout t [o, (n1-n0)*ho*wo] of samples [n0, n1) of a convolution's output to NCHW
 * y [n, o, ho, wo], adding bias b [o] (may be NULL), then a ReLU when `relu` (a fused
 * activation, inference only); and NCHW gy to the GEMM layout t. Every kernel's fused ReLU is
 * x < 0 ? 0 : x, as pr_relu: NaN passes through. */
void pr_conv_gemm_to_nchw(const float *t, float *y, const float *b, const pr_conv_geom *g,
                          int64_t n0, int64_t n1, int relu);
void pr_conv_nchw_to_gemm(const float *gy, float *t, const pr_conv_geom *g, int64_t n0, int64_t n1);

/* Depthwise convolution (groups == c, o = m*c for a channel multiplier m) by direct loops,
 * which beat im2col+GEMM there: the GEMM would have one row per group. bias may be NULL. */
void pr_conv_depthwise_forward(const float *x, float *y, const float *w, const float *b,
                               const pr_conv_geom *g, int relu);
/* dx accumulate from gy [n, o, ho, wo]. */
void pr_conv_depthwise_backward_input(const float *gy, float *dx, const float *w,
                                      const pr_conv_geom *g);
/* dw accumulate [o, 1, kh, kw] from x and gy. */
void pr_conv_depthwise_backward_weight(const float *x, const float *gy, float *dw,
                                       const pr_conv_geom *g);

/* Direct convolution for stride 1, one group and at most PR_CONV_DIRECT_MAX_K taps per output
 * (c*kh*kw), where an im2col GEMM is too short in K to run well (a network's first layer).
 * pr_conv_direct_ok tells whether these kernels apply to g on this CPU (they need AVX2+FMA).
 * scratch holds pr_conv_direct_scratch(g, backward) floats, given by the caller (only the
 * pages of pr_threads() slots are touched). */
#define PR_CONV_DIRECT_MAX_K 96
#define PR_CONV_DIRECT_BLOCK 8 /* samples per parallel item and per partial sum of dw */
int pr_conv_direct_ok(const pr_conv_geom *g);
size_t pr_conv_direct_scratch(const pr_conv_geom *g, int backward);
void pr_conv_direct_forward(const float *x, float *y, const float *w, const float *b,
                            float *scratch, const pr_conv_geom *g, int relu);
/* y[0..n) = y < 0 ? 0 : y in place, in parallel: the ReLU fused after a layer's own pass. */
void pr_relu_inplace(float *y, int64_t n);
/* dw [o, c, kh, kw] and db [o] overwritten (either may be NULL) from x and gy [n, o, ho, wo]. */
void pr_conv_direct_backward_weight(const float *x, const float *gy, float *dw, float *db,
                                    float *scratch, const pr_conv_geom *g);

/* Max pooling; argmax[n, c, ho, wo] gets the flat index ih*w + iw of the winning input in its
 * plane (the first maximum on ties; a NaN wins so it propagates). argmax may be NULL when no
 * backward will need it (evaluation). Every window must overlap the input (padding at most
 * half the kernel guarantees it). */
void pr_pool_max_forward(const float *x, float *y, int64_t *argmax, const pr_conv_geom *g,
                         int relu);
/* With `relu`, the pooling of relu(x) (max commutes with it): y < 0 ? 0 : y, and argmax -1
 * where !(y > 0), since a ReLU passes no gradient there (NaN included). */
/* dx overwritten: zero except that each gy element is added at its argmax (none at -1). */
void pr_pool_max_backward(const float *gy, float *dx, const int64_t *argmax, const pr_conv_geom *g);
/* Average pooling counting padding in the divisor (PyTorch's count_include_pad=True). */
void pr_pool_avg_forward(const float *x, float *y, const pr_conv_geom *g);
void pr_pool_avg_backward(const float *gy, float *dx, const pr_conv_geom *g);

/* Softmax (or log-softmax when `log`) along the middle axis of x viewed as [outer, dim, inner],
 * subtracting the maximum first so large logits do not overflow. */
void pr_softmax_forward(const float *x, float *y, int64_t outer, int64_t dim, int64_t inner,
                        int logmode);
/* dx (overwritten) from gy and y (the forward's output), same layout. */
void pr_softmax_backward(const float *gy, float *dx, const float *y, int64_t outer, int64_t dim,
                         int64_t inner, int logmode);

/* Calls fn(ctx, begin, end) on disjoint ranges covering [0, n), at most pr_threads() of
 * them, on plain pthreads; returns when all are done. `cost` is the work of one item (about
 * the elements it touches): small jobs run inline rather than pay for starting threads.
 * fn must not call BLAS (DESIGN.md, Threads) and must write only what its range owns. The
 * result never depends on the thread count: a part whose thread cannot start runs inline. */
void pr_parallel_for(int64_t n, int64_t cost,
                     void (*fn)(void *ctx, int64_t begin, int64_t end), void *ctx);

#endif
