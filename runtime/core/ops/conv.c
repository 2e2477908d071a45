/* ops/conv.c: conv2d as one fused autograd node.
 * Forward: im2col of a slice of the batch per group, then one sgemm per group and slice
 * ([O/g, C/g*kh*kw] x [C/g*kh*kw, slice*Ho*Wo]) and a scatter to NCHW with the bias fused in.
 * Many samples per GEMM beat one GEMM per sample (measured: conv 20->50 5x5 on 256x12x12 runs
 * at ~140 GF/s as one call, ~100 GF/s as 256 calls of [50x500]x[500x64]). Backward per slice:
 * dW += gout . cols^T, dcols = W^T . gout then col2im, db = sums. Depthwise convolution
 * (groups == C > 1) uses direct loops instead: its GEMMs would have a single row. */
#include "autograd.h"
#include "kernels.h"
#include "ops.h"
#include "scratch.h"

#include <cblas.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static int is_depthwise(const pr_conv_geom *g) { return g->groups == g->c && g->groups > 1; }

/* Validates x, w, b and the options into *g; on failure the message names what was given. */
static int conv_geom(pr_tensor *const *in, int nin, const pr_opargs *a, pr_conv_geom *g)
{
    char sx[96], sw[96], sb[96];
    if (nin != 2 && nin != 3)
        return pr_error("conv2d: expects 2 or 3 inputs (input, weight[, bias]), got %d", nin);
    pr_tensor *x = in[0], *w = in[1], *b = nin == 3 ? in[2] : NULL;
    pr_tensor_shape_str(x, sx, sizeof sx);
    pr_tensor_shape_str(w, sw, sizeof sw);
    if (x->dtype != PR_FLOAT32 || x->ndim != 4)
        return pr_error("conv2d: input expected a float32 [N,C,H,W] tensor, given %s %s",
                        pr_dtype_name(x->dtype), sx);
    if (w->dtype != PR_FLOAT32 || w->ndim != 4)
        return pr_error("conv2d: weight expected a float32 [O,C/groups,kh,kw] tensor, given %s %s",
                        pr_dtype_name(w->dtype), sw);
    memset(g, 0, sizeof *g);
    g->n = x->shape[0]; g->c = x->shape[1]; g->h = x->shape[2]; g->w = x->shape[3];
    g->o = w->shape[0]; g->kh = w->shape[2]; g->kw = w->shape[3];
    g->sh = a->i[0]; g->sw = a->i[1]; g->ph = a->i[2]; g->pw = a->i[3];
    g->dh = a->i[4]; g->dw = a->i[5]; g->groups = a->i[6];
    if (g->sh < 1 || g->sw < 1 || g->ph < 0 || g->pw < 0 || g->dh < 1 || g->dw < 1 || g->groups < 1)
        return pr_error("conv2d: stride (%lld,%lld) and dilation (%lld,%lld) must be >= 1, padding "
                        "(%lld,%lld) >= 0 and groups (%lld) >= 1",
                        (long long)g->sh, (long long)g->sw, (long long)g->dh, (long long)g->dw,
                        (long long)g->ph, (long long)g->pw, (long long)g->groups);
    if (g->c % g->groups || g->o % g->groups)
        return pr_error("conv2d: groups = %lld must divide input channels (input %s) and output "
                        "channels (weight %s)", (long long)g->groups, sx, sw);
    if (w->shape[1] * g->groups != g->c)
        return pr_error("conv2d: weight %s with groups = %lld expects input [N,%lld,H,W], given %s",
                        sw, (long long)g->groups, (long long)(w->shape[1] * g->groups), sx);
    if (g->kh < 1 || g->kw < 1 || g->o < 1 || w->shape[1] < 1)
        return pr_error("conv2d: weight %s has an empty dimension", sw);
    if (b && (b->dtype != PR_FLOAT32 || b->ndim != 1 || b->shape[0] != g->o))
        return pr_error("conv2d: bias expected a float32 [%lld] tensor for weight %s, given %s %s",
                        (long long)g->o, sw, pr_dtype_name(b->dtype),
                        pr_tensor_shape_str(b, sb, sizeof sb));
    if (pr_conv_geom_finish(g) < 0)
        return pr_error("conv2d: input %s is smaller than the kernel %lldx%lld (dilation %lld,%lld) "
                        "after padding (%lld,%lld)", sx, (long long)g->kh, (long long)g->kw,
                        (long long)g->dh, (long long)g->dw, (long long)g->ph, (long long)g->pw);
    /* BLAS takes int dimensions. */
    int64_t k = g->c / g->groups * g->kh * g->kw, np = g->n * g->ho * g->wo;
    if (k > INT_MAX || np > INT_MAX || g->o > INT_MAX)
        return pr_error("conv2d: input %s with weight %s is too large for one GEMM", sx, sw);
    return PR_OK;
}

/* Samples per chunk: the batch is processed in slices whose columns and GEMM output take
 * about PR_CONV_CHUNK_BYTES, so im2col writes into the last-level cache and the GEMM reads from
 * it, and no batch-sized column buffer is ever allocated (LeNet's second conv would need 33 MB
 * at batch 256). The backward recomputes each slice's columns instead of keeping them: cheaper
 * than streaming a saved copy back from memory. 4 MB measured a little faster than 8 MB on
 * one thread (the columns stay nearer the core); not smaller, as every slice costs a few
 * fork-joins (BLAS's and the kernels'), which hurt when the cores are shared. */
#ifndef PR_CONV_CHUNK_BYTES
#define PR_CONV_CHUNK_BYTES (4 << 20)
#endif

static int64_t conv_chunk(const pr_conv_geom *g)
{
    int64_t k = g->c / g->groups * g->kh * g->kw;
    int64_t per = (k + g->o) * g->ho * g->wo * (int64_t)sizeof(float);
    int64_t chunk = PR_CONV_CHUNK_BYTES / (per ? per : 1);
    if (chunk < 1)
        chunk = 1;
    if (chunk >= g->n)
        return g->n > 0 ? g->n : 1;
    int64_t parts = (g->n + chunk - 1) / chunk; /* even slices: no tiny last GEMM */
    return (g->n + parts - 1) / parts;
}

/* Scratch for one chunk: cols (or dcols) [k, chunk*pl] then the GEMM-layout output
 * [o, chunk*pl], in this thread's PR_SCRATCH_CONV buffer (scratch.h; conv2d never nests). */
static float *scratch_get(size_t need) { return pr_scratch(PR_SCRATCH_CONV, need, "conv2d"); }

static float *conv_scratch(const pr_conv_geom *g, int64_t chunk, float **t)
{
    int64_t k = g->c / g->groups * g->kh * g->kw, cols = chunk * g->ho * g->wo;
    float *buf = scratch_get((size_t)((k + g->o) * cols));
    if (buf)
        *t = buf + k * cols;
    return buf;
}

/* Keeps the scratch for the next call unless one huge sample made it outgrow the chunk budget. */
static void conv_scratch_done(void) { pr_scratch_trim(PR_SCRATCH_CONV, 2 * (size_t)PR_CONV_CHUNK_BYTES); }

/* db[o] += the sum of row o of t [o, np]: rows split over threads. */
typedef struct {
    const float *t;
    float *db;
    int64_t np;
} bias_job;

static void bias_rows(void *ctx, int64_t o0, int64_t o1)
{
    const bias_job *j = ctx;
    for (int64_t o = o0; o < o1; o++) {
        const float *r = j->t + o * j->np;
        /* In double, as long sums in float drift; four partial sums so the loop is not one
         * chain of dependent additions (perf: 2-3% of a LeNet step as a single chain). */
        double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
        int64_t i = 0;
        for (; i + 4 <= j->np; i += 4) {
            a0 += r[i];
            a1 += r[i + 1];
            a2 += r[i + 2];
            a3 += r[i + 3];
        }
        for (; i < j->np; i++)
            a0 += r[i];
        j->db[o] += (float)((a0 + a1) + (a2 + a3));
    }
}

pr_tensor *pr_fwd_conv2d(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    pr_conv_geom g;
    if (conv_geom(in, nin, a, &g) < 0)
        return NULL;
    int relu = a->ni > 7 && a->i[7];
    if (relu && saved) {
        pr_error("conv2d: the fused ReLU is for inference: it records no gradient, and an input "
                 "requires grad while grad mode is on");
        return NULL;
    }
    int64_t yshape[4] = { g.n, g.o, g.ho, g.wo };
    pr_tensor *xc = pr_tensor_contiguous(in[0]);
    pr_tensor *wc = pr_tensor_contiguous(in[1]);
    pr_tensor *bc = nin == 3 ? pr_tensor_contiguous(in[2]) : NULL;
    pr_tensor *y = pr_tensor_empty(PR_FLOAT32, 4, yshape);
    float *buf = NULL, *t = NULL;
    if (!xc || !wc || (nin == 3 && !bc) || !y)
        goto fail;
    const float *x = pr_tensor_f32(xc), *w = pr_tensor_f32(wc), *b = bc ? pr_tensor_f32(bc) : NULL;
    float *yd = pr_tensor_f32(y);
    if (is_depthwise(&g)) {
        pr_conv_depthwise_forward(x, yd, w, b, &g, relu);
    } else if (pr_conv_direct_ok(&g)) {
        if (!(buf = scratch_get(pr_conv_direct_scratch(&g, 0))))
            goto fail;
        pr_conv_direct_forward(x, yd, w, b, buf, &g, relu);
        conv_scratch_done();
    } else {
        int64_t og = g.o / g.groups, k = g.c / g.groups * g.kh * g.kw, pl = g.ho * g.wo;
        int64_t chunk = conv_chunk(&g);
        if (!(buf = conv_scratch(&g, chunk, &t)))
            goto fail;
        for (int64_t n0 = 0; n0 < g.n; n0 += chunk) {
            int64_t n1 = n0 + chunk < g.n ? n0 + chunk : g.n, np = (n1 - n0) * pl;
            for (int64_t grp = 0; grp < g.groups; grp++) {
                pr_conv_im2col(x, buf, &g, grp, n0, n1);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)og, (int)np, (int)k,
                            1.0f, w + grp * og * k, (int)k, buf, (int)np, 0.0f, t + grp * og * np,
                            (int)np);
            }
            pr_conv_gemm_to_nchw(t, yd, b, &g, n0, n1, relu);
        }
        conv_scratch_done();
    }
    pr_tensor_release(xc);
    pr_tensor_release(wc);
    pr_tensor_release(bc);
    return y;
fail:
    pr_tensor_release(xc);
    pr_tensor_release(wc);
    pr_tensor_release(bc);
    pr_tensor_release(y);
    return NULL;
}

int pr_bwd_conv2d(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    pr_conv_geom g;
    if (conv_geom(n->in, n->nin, &n->args, &g) < 0)
        return PR_EINVAL;
    int need_x = n->in[0]->requires_grad, need_w = n->in[1]->requires_grad;
    int need_b = n->nin == 3 && n->in[2]->requires_grad;
    int64_t og = g.o / g.groups, k = g.c / g.groups * g.kh * g.kw, pl = g.ho * g.wo;
    const float *gy = pr_tensor_f32(gout);
    pr_tensor *xc = NULL, *wc = NULL, *gx = NULL, *gw = NULL, *gb = NULL;
    float *buf = NULL, *t = NULL;
    int rc = PR_ENOMEM;

    if (need_b && !(gb = pr_tensor_zeros(PR_FLOAT32, 1, &g.o)))
        goto done;
    if (need_x && (!(gx = pr_tensor_zeros(PR_FLOAT32, 4, n->in[0]->shape)) ||
                   !(wc = pr_tensor_contiguous(n->in[1]))))
        goto done;
    if (need_w && (!(gw = pr_tensor_zeros(PR_FLOAT32, 4, n->in[1]->shape)) ||
                   !(xc = pr_tensor_contiguous(n->in[0]))))
        goto done;
    if (is_depthwise(&g)) {
        if (need_b) {
            float *db = pr_tensor_f32(gb);
            for (int64_t s = 0; s < g.n; s++)
                for (int64_t o = 0; o < g.o; o++) {
                    const float *r = gy + (s * g.o + o) * pl;
                    double acc = 0.0; /* long sums: float would drift */
                    for (int64_t i = 0; i < pl; i++)
                        acc += r[i];
                    db[o] += (float)acc;
                }
        }
        if (need_x)
            pr_conv_depthwise_backward_input(gy, pr_tensor_f32(gx), pr_tensor_f32(wc), &g);
        if (need_w)
            pr_conv_depthwise_backward_weight(pr_tensor_f32(xc), gy, pr_tensor_f32(gw), &g);
    } else if ((need_w || need_b) && pr_conv_direct_ok(&g)) {
        /* the direct kernels' weight gradient; the GEMM loop below does the input's */
        if ((!xc && !(xc = pr_tensor_contiguous(n->in[0]))) ||
            !(buf = scratch_get(pr_conv_direct_scratch(&g, 1))))
            goto done;
        pr_conv_direct_backward_weight(pr_tensor_f32(xc), gy, need_w ? pr_tensor_f32(gw) : NULL,
                                       need_b ? pr_tensor_f32(gb) : NULL, buf, &g);
        need_w = need_b = 0;
    }
    if (!is_depthwise(&g) && (need_x || need_w || need_b)) {
        int64_t chunk = conv_chunk(&g);
        if (!(buf = conv_scratch(&g, chunk, &t)))
            goto done;
        for (int64_t n0 = 0; n0 < g.n; n0 += chunk) {
            int64_t n1 = n0 + chunk < g.n ? n0 + chunk : g.n, np = (n1 - n0) * pl;
            pr_conv_nchw_to_gemm(gy, t, &g, n0, n1);
            if (need_b) { /* db = row sums of the slice, while it is in cache */
                bias_job bj = { t, pr_tensor_f32(gb), np };
                pr_parallel_for(g.o, np, bias_rows, &bj);
            }
            for (int64_t grp = 0; grp < g.groups; grp++) {
                const float *gm = t + grp * og * np;
                if (need_w) { /* dW += gout . cols^T, with this slice's columns rebuilt */
                    pr_conv_im2col(pr_tensor_f32(xc), buf, &g, grp, n0, n1);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)og, (int)k, (int)np,
                                1.0f, gm, (int)np, buf, (int)np, n0 ? 1.0f : 0.0f,
                                pr_tensor_f32(gw) + grp * og * k, (int)k);
                }
                if (need_x) { /* dcols = W^T . gout, then scattered back onto the input */
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k, (int)np, (int)og,
                                1.0f, pr_tensor_f32(wc) + grp * og * k, (int)k, gm, (int)np, 0.0f,
                                buf, (int)np);
                    pr_conv_col2im(buf, pr_tensor_f32(gx), &g, grp, n0, n1);
                }
            }
        }
    }
    rc = PR_OK;
    if (buf)
        conv_scratch_done();
done:
    if (rc == PR_OK) {
        gin[0] = gx;
        gin[1] = gw;
        if (n->nin == 3)
            gin[2] = gb;
    } else {
        pr_tensor_release(gx);
        pr_tensor_release(gw);
        pr_tensor_release(gb);
    }
    pr_tensor_release(xc);
    pr_tensor_release(wc);
    return rc;
}

pr_tensor *pr_conv2d(pr_tensor *x, pr_tensor *w, pr_tensor *b, int64_t stride_h, int64_t stride_w,
                     int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups)
{
    pr_opargs a = { .i = { stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups }, .ni = 7 };
    pr_tensor *in[3] = { x, w, b };
    return pr_op_call(PR_OP_conv2d, in, b ? 3 : 2, &a);
}
