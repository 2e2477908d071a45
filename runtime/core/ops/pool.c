/* ops/pool.c: max_pool2d (saves argmax indices for backward) and avg_pool2d (padding counted
 * in the divisor, as PyTorch's default) over NCHW batches. Options: i[0..1] kernel, i[2..3]
 * stride (0 = the kernel size), i[4..5] padding (at most half the kernel, as PyTorch). */
#include "autograd.h"
#include "kernels.h"
#include "ops.h"

#include <stdlib.h>

static int pool_geom(const char *op, pr_tensor *x, const pr_opargs *a, pr_conv_geom *g)
{
    char sx[96];
    pr_tensor_shape_str(x, sx, sizeof sx);
    if (x->dtype != PR_FLOAT32 || x->ndim != 4)
        return pr_error("%s: input expected a float32 [N,C,H,W] tensor, given %s %s", op,
                        pr_dtype_name(x->dtype), sx);
    *g = (pr_conv_geom){ .n = x->shape[0], .c = x->shape[1], .h = x->shape[2], .w = x->shape[3],
                         .o = x->shape[1], .kh = a->i[0], .kw = a->i[1],
                         .sh = a->i[2] ? a->i[2] : a->i[0], .sw = a->i[3] ? a->i[3] : a->i[1],
                         .ph = a->i[4], .pw = a->i[5], .dh = 1, .dw = 1, .groups = x->shape[1] };
    if (g->kh < 1 || g->kw < 1 || g->sh < 1 || g->sw < 1)
        return pr_error("%s: kernel (%lld,%lld) and stride (%lld,%lld) must be >= 1", op,
                        (long long)g->kh, (long long)g->kw, (long long)g->sh, (long long)g->sw);
    if (g->ph < 0 || g->pw < 0 || 2 * g->ph > g->kh || 2 * g->pw > g->kw)
        return pr_error("%s: padding (%lld,%lld) must be >= 0 and at most half the kernel (%lld,%lld)",
                        op, (long long)g->ph, (long long)g->pw, (long long)g->kh, (long long)g->kw);
    if (pr_conv_geom_finish(g) < 0)
        return pr_error("%s: input %s is smaller than the kernel %lldx%lld after padding (%lld,%lld)",
                        op, sx, (long long)g->kh, (long long)g->kw, (long long)g->ph, (long long)g->pw);
    return PR_OK;
}

pr_tensor *pr_fwd_max_pool2d(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    pr_conv_geom g;
    if (pool_geom("max_pool2d", in[0], a, &g) < 0)
        return NULL;
    int64_t yshape[4] = { g.n, g.c, g.ho, g.wo };
    pr_tensor *xc = pr_tensor_contiguous(in[0]);
    pr_tensor *y = xc ? pr_tensor_empty(PR_FLOAT32, 4, yshape) : NULL;
    /* The indices only serve the backward: without a tape (no_grad, evaluation) none are
     * made, which halves the bytes written. */
    pr_tensor *am = y && saved ? pr_tensor_empty(PR_INT64, 4, yshape) : NULL;
    if (!y || (saved && !am)) {
        pr_tensor_release(xc);
        pr_tensor_release(y);
        return NULL;
    }
    pr_pool_max_forward(pr_tensor_f32(xc), pr_tensor_f32(y), am ? pr_tensor_i64(am) : NULL, &g,
                        a->ni > 6 && a->i[6]);
    pr_tensor_release(xc);
    if (saved)
        saved[0] = am;
    return y;
}

int pr_bwd_max_pool2d(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    pr_conv_geom g;
    if (pool_geom("max_pool2d", n->in[0], &n->args, &g) < 0)
        return PR_EINVAL;
    if (!n->saved[0])
        return pr_error("max_pool2d: backward without the forward's indices");
    pr_tensor *gx = pr_tensor_empty(PR_FLOAT32, 4, n->in[0]->shape);
    if (!gx)
        return PR_ENOMEM;
    pr_pool_max_backward(pr_tensor_f32(gout), pr_tensor_f32(gx), pr_tensor_i64(n->saved[0]), &g);
    gin[0] = gx;
    return PR_OK;
}

pr_tensor *pr_fwd_avg_pool2d(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    pr_conv_geom g;
    if (pool_geom("avg_pool2d", in[0], a, &g) < 0)
        return NULL;
    int64_t yshape[4] = { g.n, g.c, g.ho, g.wo };
    pr_tensor *xc = pr_tensor_contiguous(in[0]);
    pr_tensor *y = xc ? pr_tensor_empty(PR_FLOAT32, 4, yshape) : NULL;
    if (y)
        pr_pool_avg_forward(pr_tensor_f32(xc), pr_tensor_f32(y), &g);
    pr_tensor_release(xc);
    return y;
}

int pr_bwd_avg_pool2d(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    pr_conv_geom g;
    if (pool_geom("avg_pool2d", n->in[0], &n->args, &g) < 0)
        return PR_EINVAL;
    pr_tensor *gx = pr_tensor_zeros(PR_FLOAT32, 4, n->in[0]->shape);
    if (!gx)
        return PR_ENOMEM;
    pr_pool_avg_backward(pr_tensor_f32(gout), pr_tensor_f32(gx), &g);
    gin[0] = gx;
    return PR_OK;
}

static pr_tensor *pool_call(pr_op_id id, pr_tensor *x, int64_t kh, int64_t kw, int64_t sh,
                            int64_t sw, int64_t ph, int64_t pw)
{
    pr_opargs a = { .i = { kh, kw, sh, sw, ph, pw }, .ni = 6 };
    return pr_op_call(id, &x, 1, &a);
}

pr_tensor *pr_max_pool2d(pr_tensor *x, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                         int64_t pw)
{
    return pool_call(PR_OP_max_pool2d, x, kh, kw, sh, sw, ph, pw);
}

pr_tensor *pr_avg_pool2d(pr_tensor *x, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                         int64_t pw)
{
    return pool_call(PR_OP_avg_pool2d, x, kh, kw, sh, sw, ph, pw);
}
