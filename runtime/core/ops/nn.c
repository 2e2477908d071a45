/* ops/nn.c: fused neural-network ops with hand-written backward: softmax, log_softmax,
 * cross_entropy (log-softmax + NLL in one pass), nll_loss, mse_loss, batch_norm, dropout,
 * and their public wrappers (ops.h, "nn ops"). */
#include "autograd.h"
#include "kernels.h"
#include "ops.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- softmax / log_softmax ---- */

/* x viewed as [outer, dim, inner] around the (possibly negative) dim a->i[0]. */
static int softmax_split(const char *op, pr_tensor *x, const pr_opargs *a, int64_t *outer,
                         int64_t *dim, int64_t *inner)
{
    if (x->dtype != PR_FLOAT32)
        return pr_error("%s: expected a float32 tensor, given %s", op, pr_dtype_name(x->dtype));
    int nd = x->ndim ? x->ndim : 1;
    int d = (int)(a->i[0] < 0 ? a->i[0] + nd : a->i[0]);
    if (d < 0 || d >= nd) {
        char b[96];
        return pr_error("%s: dim %lld out of range for %s", op, (long long)a->i[0],
                        pr_tensor_shape_str(x, b, sizeof b));
    }
    *outer = *dim = *inner = 1;
    for (int k = 0; k < x->ndim; k++) {
        if (k < d)
            *outer *= x->shape[k];
        else if (k == d)
            *dim = x->shape[k];
        else
            *inner *= x->shape[k];
    }
    return PR_OK;
}

static pr_tensor *softmax_fwd(const char *op, int log, pr_tensor *x, const pr_opargs *a,
                              pr_tensor **saved)
{
    int64_t outer = 1, dim = 1, inner = 1;
    if (softmax_split(op, x, a, &outer, &dim, &inner) < 0)
        return NULL;
    pr_tensor *xc = pr_tensor_contiguous(x);
    pr_tensor *y = xc ? pr_tensor_empty(PR_FLOAT32, x->ndim, x->shape) : NULL;
    if (y) {
        pr_softmax_forward(pr_tensor_f32(xc), pr_tensor_f32(y), outer, dim, inner, log);
        /* The backward needs the output; an alias shares it without a node<->output cycle. */
        if (saved && !(saved[0] = pr_tensor_alias(y))) {
            pr_tensor_release(y);
            y = NULL;
        }
    }
    pr_tensor_release(xc);
    return y;
}

static int softmax_bwd(const char *op, int log, const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    int64_t outer = 1, dim = 1, inner = 1;
    if (softmax_split(op, n->in[0], &n->args, &outer, &dim, &inner) < 0)
        return PR_EINVAL;
    pr_tensor *gx = pr_tensor_empty(PR_FLOAT32, n->in[0]->ndim, n->in[0]->shape);
    if (!gx)
        return PR_ENOMEM;
    pr_softmax_backward(pr_tensor_f32(gout), pr_tensor_f32(gx), pr_tensor_f32(n->saved[0]),
                        outer, dim, inner, log);
    gin[0] = gx;
    return PR_OK;
}

pr_tensor *pr_fwd_softmax(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    return softmax_fwd("softmax", 0, in[0], a, saved);
}

int pr_bwd_softmax(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    return softmax_bwd("softmax", 0, n, gout, gin);
}

pr_tensor *pr_fwd_log_softmax(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    return softmax_fwd("log_softmax", 1, in[0], a, saved);
}

int pr_bwd_log_softmax(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    return softmax_bwd("log_softmax", 1, n, gout, gin);
}

/* ---- losses ---- */

static int check_reduction(const char *op, int64_t r)
{
    if (r != PR_REDUCE_MEAN && r != PR_REDUCE_SUM && r != PR_REDUCE_NONE)
        return pr_error("%s: reduction %lld is not 0 (mean), 1 (sum) or 2 (none)", op, (long long)r);
    return PR_OK;
}

/* The loss tensor: per-sample values as [n] for "none", else their sum or mean as a 0-d. */
static pr_tensor *reduce_loss(const double *per, int64_t n, int64_t reduction)
{
    if (reduction == PR_REDUCE_NONE) {
        pr_tensor *out = pr_tensor_empty(PR_FLOAT32, 1, &n);
        if (out)
            for (int64_t i = 0; i < n; i++)
                pr_tensor_f32(out)[i] = (float)per[i];
        return out;
    }
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += per[i];
    if (reduction == PR_REDUCE_MEAN)
        s = n ? s / (double)n : NAN; /* PyTorch: the mean over nothing is NaN */
    pr_tensor *out = pr_tensor_empty(PR_FLOAT32, 0, NULL);
    if (out)
        pr_tensor_f32(out)[0] = (float)s;
    return out;
}

/* The factor each sample's gradient gets from the output gradient. */
static float loss_scale(const float *gy, int64_t i, int64_t n, int64_t reduction)
{
    if (reduction == PR_REDUCE_NONE)
        return gy[i];
    return reduction == PR_REDUCE_MEAN ? gy[0] / (float)n : gy[0];
}

/* Checks logits/log-probs [N,C] float32 against int64 targets [N] with labels in [0,C). */
static int check_class_targets(const char *op, pr_tensor *x, pr_tensor *t, const pr_opargs *a,
                               pr_tensor **tc_out)
{
    char sx[96], st[96];
    pr_tensor_shape_str(x, sx, sizeof sx);
    pr_tensor_shape_str(t, st, sizeof st);
    if (check_reduction(op, a->i[0]) < 0)
        return PR_EINVAL;
    if (x->dtype != PR_FLOAT32 || x->ndim != 2)
        return pr_error("%s: input expected a float32 [N,C] tensor, given %s %s", op,
                        pr_dtype_name(x->dtype), sx);
    if (t->dtype != PR_INT64)
        return pr_error("%s: targets must be int64 class indices, given %s %s", op,
                        pr_dtype_name(t->dtype), st);
    if (t->ndim != 1 || t->shape[0] != x->shape[0])
        return pr_error("%s: targets expected [%lld] for input %s, given %s", op,
                        (long long)x->shape[0], sx, st);
    pr_tensor *tc = pr_tensor_contiguous(t);
    if (!tc)
        return PR_ENOMEM;
    const int64_t *lab = pr_tensor_i64(tc);
    int64_t c = x->shape[1];
    for (int64_t i = 0; i < t->shape[0]; i++)
        if (lab[i] < 0 || lab[i] >= c) {
            pr_tensor_release(tc);
            return pr_error("%s: target %lld at position %lld is out of range for %lld classes "
                            "(expected 0..%lld)", op, (long long)lab[i], (long long)i,
                            (long long)c, (long long)(c - 1));
        }
    *tc_out = tc;
    return PR_OK;
}

pr_tensor *pr_fwd_cross_entropy(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    pr_tensor *tc = NULL;
    if (check_class_targets("cross_entropy", in[0], in[1], a, &tc) < 0)
        return NULL;
    int64_t n = in[0]->shape[0], c = in[0]->shape[1];
    pr_tensor *xc = pr_tensor_contiguous(in[0]);
    /* The backward is softmax - onehot: keep the probabilities (log-probs while computing). */
    pr_tensor *lp = xc ? pr_tensor_empty(PR_FLOAT32, 2, in[0]->shape) : NULL;
    double *per = calloc((size_t)(n ? n : 1), sizeof *per);
    pr_tensor *out = NULL;
    if (lp && per) {
        const int64_t *lab = pr_tensor_i64(tc);
        float *p = pr_tensor_f32(lp);
        pr_softmax_forward(pr_tensor_f32(xc), p, n, c, 1, 1);
        for (int64_t i = 0; i < n; i++)
            per[i] = -(double)p[i * c + lab[i]];
        out = reduce_loss(per, n, a->i[0]);
        if (out && saved) {
            for (int64_t i = 0; i < n * c; i++)
                p[i] = expf(p[i]);
            saved[0] = lp;
            lp = NULL;
        }
    } else if (!per) {
        pr_error_code(PR_ENOMEM, "cross_entropy: out of memory");
    }
    free(per);
    pr_tensor_release(lp);
    pr_tensor_release(xc);
    pr_tensor_release(tc);
    return out;
}

int pr_bwd_cross_entropy(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    if (!n->in[0]->requires_grad)
        return PR_OK;
    int64_t rows = n->in[0]->shape[0], c = n->in[0]->shape[1];
    pr_tensor *gx = pr_tensor_empty(PR_FLOAT32, 2, n->in[0]->shape);
    pr_tensor *tc = gx ? pr_tensor_contiguous(n->in[1]) : NULL;
    if (!tc) {
        pr_tensor_release(gx);
        return PR_ENOMEM;
    }
    const float *p = pr_tensor_f32(n->saved[0]), *gy = pr_tensor_f32(gout);
    const int64_t *lab = pr_tensor_i64(tc);
    float *d = pr_tensor_f32(gx);
    for (int64_t i = 0; i < rows; i++) {
        float s = loss_scale(gy, i, rows, n->args.i[0]);
        for (int64_t k = 0; k < c; k++)
            d[i * c + k] = p[i * c + k] * s;
        d[i * c + lab[i]] -= s;
    }
    pr_tensor_release(tc);
    gin[0] = gx;
    return PR_OK;
}

pr_tensor *pr_fwd_nll_loss(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    pr_tensor *tc = NULL;
    if (check_class_targets("nll_loss", in[0], in[1], a, &tc) < 0)
        return NULL;
    int64_t n = in[0]->shape[0];
    double *per = calloc((size_t)(n ? n : 1), sizeof *per);
    pr_tensor *out = NULL;
    if (per) {
        const int64_t *lab = pr_tensor_i64(tc);
        for (int64_t i = 0; i < n; i++) {
            /* strided read: no copy of the whole input for one element per row */
            const pr_tensor *x = in[0];
            per[i] = -((const float *)pr_tensor_data(x))[i * x->stride[0] + lab[i] * x->stride[1]];
        }
        out = reduce_loss(per, n, a->i[0]);
    } else {
        pr_error_code(PR_ENOMEM, "nll_loss: out of memory");
    }
    free(per);
    pr_tensor_release(tc);
    return out;
}

int pr_bwd_nll_loss(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    if (!n->in[0]->requires_grad)
        return PR_OK;
    int64_t rows = n->in[0]->shape[0], c = n->in[0]->shape[1];
    pr_tensor *gx = pr_tensor_zeros(PR_FLOAT32, 2, n->in[0]->shape);
    pr_tensor *tc = gx ? pr_tensor_contiguous(n->in[1]) : NULL;
    if (!tc) {
        pr_tensor_release(gx);
        return PR_ENOMEM;
    }
    const int64_t *lab = pr_tensor_i64(tc);
    float *d = pr_tensor_f32(gx);
    for (int64_t i = 0; i < rows; i++)
        d[i * c + lab[i]] = -loss_scale(pr_tensor_f32(gout), i, rows, n->args.i[0]);
    pr_tensor_release(tc);
    gin[0] = gx;
    return PR_OK;
}

static int check_mse(pr_tensor *x, pr_tensor *y, const pr_opargs *a)
{
    char sx[96], sy[96];
    if (check_reduction("mse_loss", a->i[0]) < 0)
        return PR_EINVAL;
    if (x->dtype != PR_FLOAT32 || y->dtype != PR_FLOAT32)
        return pr_error("mse_loss: expected float32 input and target, given %s and %s",
                        pr_dtype_name(x->dtype), pr_dtype_name(y->dtype));
    if (!pr_tensor_same_shape(x, y))
        return pr_error("mse_loss: input %s and target %s must have the same shape",
                        pr_tensor_shape_str(x, sx, sizeof sx), pr_tensor_shape_str(y, sy, sizeof sy));
    return PR_OK;
}

pr_tensor *pr_fwd_mse_loss(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    if (check_mse(in[0], in[1], a) < 0)
        return NULL;
    pr_tensor *xc = pr_tensor_contiguous(in[0]);
    pr_tensor *yc = xc ? pr_tensor_contiguous(in[1]) : NULL;
    pr_tensor *out = NULL;
    if (yc) {
        const float *x = pr_tensor_f32(xc), *y = pr_tensor_f32(yc);
        int64_t n = pr_tensor_numel(xc);
        if (a->i[0] == PR_REDUCE_NONE) {
            out = pr_tensor_empty(PR_FLOAT32, in[0]->ndim, in[0]->shape);
            if (out)
                for (int64_t i = 0; i < n; i++) {
                    float d = x[i] - y[i];
                    pr_tensor_f32(out)[i] = d * d;
                }
        } else {
            double s = 0.0;
            for (int64_t i = 0; i < n; i++) {
                double d = (double)x[i] - y[i];
                s += d * d;
            }
            if (a->i[0] == PR_REDUCE_MEAN)
                s = n ? s / (double)n : NAN;
            out = pr_tensor_empty(PR_FLOAT32, 0, NULL);
            if (out)
                pr_tensor_f32(out)[0] = (float)s;
        }
    }
    pr_tensor_release(xc);
    pr_tensor_release(yc);
    return out;
}

int pr_bwd_mse_loss(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    pr_tensor *xc = pr_tensor_contiguous(n->in[0]);
    pr_tensor *yc = xc ? pr_tensor_contiguous(n->in[1]) : NULL;
    pr_tensor *gx = yc ? pr_tensor_empty(PR_FLOAT32, n->in[0]->ndim, n->in[0]->shape) : NULL;
    pr_tensor *gy = NULL;
    if (gx && n->in[1]->requires_grad)
        gy = pr_tensor_empty(PR_FLOAT32, n->in[1]->ndim, n->in[1]->shape);
    if (!gx || (n->in[1]->requires_grad && !gy)) {
        pr_tensor_release(xc);
        pr_tensor_release(yc);
        pr_tensor_release(gx);
        return PR_ENOMEM;
    }
    const float *x = pr_tensor_f32(xc), *y = pr_tensor_f32(yc), *g = pr_tensor_f32(gout);
    int64_t cnt = pr_tensor_numel(xc);
    for (int64_t i = 0; i < cnt; i++) {
        float d = 2.0f * (x[i] - y[i]) * loss_scale(g, i, cnt, n->args.i[0]);
        pr_tensor_f32(gx)[i] = d;
        if (gy)
            pr_tensor_f32(gy)[i] = -d;
    }
    pr_tensor_release(xc);
    pr_tensor_release(yc);
    gin[0] = gx;
    gin[1] = gy;
    return PR_OK;
}

/* ---- batch_norm ---- */

/* x [N,C,*] with gamma/beta [C]; optional running stats aux[0]/aux[1] float32 contiguous [C]. */
static int bn_check(pr_tensor *const *in, const pr_opargs *a, int64_t *c, int64_t *inner)
{
    char sx[96], s[96];
    pr_tensor *x = in[0];
    pr_tensor_shape_str(x, sx, sizeof sx);
    if (x->dtype != PR_FLOAT32 || x->ndim < 2)
        return pr_error("batch_norm: input expected a float32 [N,C] or [N,C,H,W] tensor, given %s %s",
                        pr_dtype_name(x->dtype), sx);
    *c = x->shape[1];
    *inner = 1;
    for (int d = 2; d < x->ndim; d++)
        *inner *= x->shape[d];
    const char *what[4] = { "weight (gamma)", "bias (beta)", "running mean", "running var" };
    pr_tensor *p[4] = { in[1], in[2], a->aux[0], a->aux[1] };
    for (int k = 0; k < 4; k++) {
        if (!p[k])
            continue;
        if (p[k]->dtype != PR_FLOAT32 || p[k]->ndim != 1 || p[k]->shape[0] != *c)
            return pr_error("batch_norm: %s expected float32 [%lld] for input %s, given %s %s",
                            what[k], (long long)*c, sx, pr_dtype_name(p[k]->dtype),
                            pr_tensor_shape_str(p[k], s, sizeof s));
        if (k >= 2 && !pr_tensor_is_contiguous(p[k]))
            return pr_error("batch_norm: %s must be contiguous (it is updated in place)", what[k]);
    }
    if (!(a->f[0] >= 0.0))
        return pr_error("batch_norm: eps must be >= 0, given %g", a->f[0]);
    if (a->i[0] && x->shape[0] * *inner <= 1)
        return pr_error("batch_norm: training needs more than one value per channel, given input %s", sx);
    if (!a->i[0] && (!a->aux[0] || !a->aux[1]))
        return pr_error("batch_norm: eval mode needs the running mean and var");
    return PR_OK;
}

/* Everything a channel range of batch_norm needs; channels are independent, so the forward
 * and the backward split them over threads (pr_parallel_for). Arrays are borrowed. */
typedef struct {
    const float *x, *gamma, *beta, *g;
    float *y, *mean, *invstd, *rm, *rv, *dx, *dgamma, *dbeta;
    int64_t nb, c, inner;
    int training;
    double eps, mom;
} bn_job;

static void bn_forward_channels(void *ctx, int64_t c0, int64_t c1)
{
    const bn_job *j = ctx;
    const int64_t nb = j->nb, c = j->c, inner = j->inner, m = nb * inner;
    for (int64_t ch = c0; ch < c1; ch++) {
        double mv, var;
        if (j->training) {
            /* two passes in double: the one-pass E[x^2]-E[x]^2 cancels badly */
            double s = 0.0, ss = 0.0;
            for (int64_t b = 0; b < nb; b++) {
                const float *r = j->x + (b * c + ch) * inner;
                for (int64_t i = 0; i < inner; i++)
                    s += r[i];
            }
            mv = s / (double)m;
            for (int64_t b = 0; b < nb; b++) {
                const float *r = j->x + (b * c + ch) * inner;
                for (int64_t i = 0; i < inner; i++)
                    ss += (r[i] - mv) * (r[i] - mv);
            }
            var = ss / (double)m;
            if (j->rm && j->rv) { /* PyTorch's momentum; the running var is unbiased */
                j->rm[ch] = (float)((1.0 - j->mom) * j->rm[ch] + j->mom * mv);
                j->rv[ch] = (float)((1.0 - j->mom) * j->rv[ch] + j->mom * ss / (double)(m - 1));
            }
        } else {
            mv = j->rm[ch];
            var = j->rv[ch];
        }
        double inv = 1.0 / sqrt(var + j->eps);
        j->mean[ch] = (float)mv;
        j->invstd[ch] = (float)inv;
        float scale = (float)(j->gamma[ch] * inv);
        float shift = (float)(j->beta[ch] - j->gamma[ch] * inv * mv);
        for (int64_t b = 0; b < nb; b++) {
            const float *r = j->x + (b * c + ch) * inner;
            float *o = j->y + (b * c + ch) * inner;
            for (int64_t i = 0; i < inner; i++)
                o[i] = r[i] * scale + shift;
        }
    }
}

pr_tensor *pr_fwd_batch_norm(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    int64_t c = 0, inner = 1;
    if (bn_check(in, a, &c, &inner) < 0)
        return NULL;
    pr_tensor *xc = pr_tensor_contiguous(in[0]);
    pr_tensor *gc = xc ? pr_tensor_contiguous(in[1]) : NULL;
    pr_tensor *bc = gc ? pr_tensor_contiguous(in[2]) : NULL;
    pr_tensor *y = bc ? pr_tensor_empty(PR_FLOAT32, in[0]->ndim, in[0]->shape) : NULL;
    pr_tensor *mean = y ? pr_tensor_empty(PR_FLOAT32, 1, &c) : NULL;
    pr_tensor *invstd = mean ? pr_tensor_empty(PR_FLOAT32, 1, &c) : NULL;
    if (invstd) {
        bn_job j = { .x = pr_tensor_f32(xc), .gamma = pr_tensor_f32(gc), .beta = pr_tensor_f32(bc),
                     .y = pr_tensor_f32(y), .mean = pr_tensor_f32(mean),
                     .invstd = pr_tensor_f32(invstd),
                     .rm = a->aux[0] ? pr_tensor_f32(a->aux[0]) : NULL,
                     .rv = a->aux[1] ? pr_tensor_f32(a->aux[1]) : NULL,
                     .nb = in[0]->shape[0], .c = c, .inner = inner, .training = a->i[0] != 0,
                     .eps = a->f[0], .mom = a->f[1] };
        pr_parallel_for(c, 3 * j.nb * inner, bn_forward_channels, &j);
    } else {
        pr_tensor_release(y);
        y = NULL;
    }
    pr_tensor_release(xc);
    pr_tensor_release(gc);
    pr_tensor_release(bc);
    if (y && saved) {
        saved[0] = mean;
        saved[1] = invstd;
    } else {
        pr_tensor_release(mean);
        pr_tensor_release(invstd);
    }
    return y;
}

static void bn_backward_channels(void *ctx, int64_t c0, int64_t c1)
{
    const bn_job *j = ctx;
    const int64_t nb = j->nb, c = j->c, inner = j->inner, m = nb * inner;
    for (int64_t ch = c0; ch < c1; ch++) {
        double sg = 0.0, sgx = 0.0;
        float mv = j->mean[ch], inv = j->invstd[ch];
        for (int64_t b = 0; b < nb; b++) {
            const float *r = j->x + (b * c + ch) * inner, *gr = j->g + (b * c + ch) * inner;
            for (int64_t i = 0; i < inner; i++) {
                sg += gr[i];
                sgx += gr[i] * ((r[i] - mv) * inv);
            }
        }
        if (j->dgamma)
            j->dgamma[ch] = (float)sgx;
        if (j->dbeta)
            j->dbeta[ch] = (float)sg;
        if (!j->dx)
            continue;
        /* Training: the batch statistics depend on x, giving
         * dx = gamma*invstd * (g - mean(g) - xhat*mean(g*xhat)); eval: dx = gamma*invstd*g. */
        float k = j->gamma[ch] * inv;
        float mg = j->training ? (float)(sg / (double)m) : 0.0f;
        float mgx = j->training ? (float)(sgx / (double)m) : 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            const float *r = j->x + (b * c + ch) * inner, *gr = j->g + (b * c + ch) * inner;
            float *o = j->dx + (b * c + ch) * inner;
            for (int64_t i = 0; i < inner; i++)
                o[i] = k * (gr[i] - mg - (r[i] - mv) * inv * mgx);
        }
    }
}

int pr_bwd_batch_norm(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    pr_tensor *x0 = n->in[0];
    int64_t c = x0->shape[1], inner = 1;
    for (int d = 2; d < x0->ndim; d++)
        inner *= x0->shape[d];
    pr_tensor *xc = pr_tensor_contiguous(x0);
    pr_tensor *gc = xc ? pr_tensor_contiguous(n->in[1]) : NULL;
    pr_tensor *gx = NULL, *gg = NULL, *gbeta = NULL;
    if (gc && x0->requires_grad)
        gx = pr_tensor_empty(PR_FLOAT32, x0->ndim, x0->shape);
    if (gc && n->in[1]->requires_grad)
        gg = pr_tensor_empty(PR_FLOAT32, 1, &c);
    if (gc && n->in[2]->requires_grad)
        gbeta = pr_tensor_empty(PR_FLOAT32, 1, &c);
    if (!gc || (x0->requires_grad && !gx) || (n->in[1]->requires_grad && !gg) ||
        (n->in[2]->requires_grad && !gbeta)) {
        pr_tensor_release(xc);
        pr_tensor_release(gc);
        pr_tensor_release(gx);
        pr_tensor_release(gg);
        pr_tensor_release(gbeta);
        return PR_ENOMEM;
    }
    bn_job j = { .x = pr_tensor_f32(xc), .gamma = pr_tensor_f32(gc), .g = pr_tensor_f32(gout),
                 .mean = pr_tensor_f32(n->saved[0]), .invstd = pr_tensor_f32(n->saved[1]),
                 .dx = gx ? pr_tensor_f32(gx) : NULL, .dgamma = gg ? pr_tensor_f32(gg) : NULL,
                 .dbeta = gbeta ? pr_tensor_f32(gbeta) : NULL, .nb = x0->shape[0], .c = c,
                 .inner = inner, .training = n->args.i[0] != 0 };
    pr_parallel_for(c, 3 * j.nb * inner, bn_backward_channels, &j);
    pr_tensor_release(xc);
    pr_tensor_release(gc);
    gin[0] = gx;
    gin[1] = gg;
    gin[2] = gbeta;
    return PR_OK;
}

/* ---- dropout ---- */

pr_tensor *pr_fwd_dropout(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    pr_tensor *x = in[0];
    double p = a->f[0];
    if (x->dtype != PR_FLOAT32)
        return pr_error("dropout: expected a float32 tensor, given %s", pr_dtype_name(x->dtype)), NULL;
    if (!(p >= 0.0 && p <= 1.0))
        return pr_error("dropout: p must be in [0, 1], given %g", p), NULL;
    if (!a->i[0] || p == 0.0)
        return pr_tensor_alias(x); /* identity; backward passes the gradient through */
    pr_tensor *xc = pr_tensor_contiguous(x);
    pr_tensor *y = xc ? pr_tensor_empty(PR_FLOAT32, x->ndim, x->shape) : NULL;
    pr_tensor *mask = y ? pr_tensor_empty(PR_FLOAT32, x->ndim, x->shape) : NULL;
    if (!mask) {
        pr_tensor_release(xc);
        pr_tensor_release(y);
        return NULL;
    }
    /* Inverted dropout: survivors are scaled by 1/(1-p) now so eval is the identity. One draw
     * per element in flat order, so a seed fixes the mask. p = 1 drops everything. */
    float keep = p < 1.0 ? (float)(1.0 / (1.0 - p)) : 0.0f;
    const float *xd = pr_tensor_f32(xc);
    float *yd = pr_tensor_f32(y), *md = pr_tensor_f32(mask);
    int64_t cnt = pr_tensor_numel(x);
    for (int64_t i = 0; i < cnt; i++) {
        md[i] = pr_rng_uniform() >= p ? keep : 0.0f;
        yd[i] = xd[i] * md[i];
    }
    pr_tensor_release(xc);
    if (saved)
        saved[0] = mask;
    else
        pr_tensor_release(mask);
    return y;
}

int pr_bwd_dropout(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    pr_tensor *gx = pr_tensor_clone(gout);
    if (!gx)
        return PR_ENOMEM;
    if (n->saved[0]) {
        const float *md = pr_tensor_f32(n->saved[0]);
        float *d = pr_tensor_f32(gx);
        int64_t cnt = pr_tensor_numel(gx);
        for (int64_t i = 0; i < cnt; i++)
            d[i] *= md[i];
    }
    gin[0] = gx;
    return PR_OK;
}

/* ---- public wrappers ---- */

pr_tensor *pr_softmax(pr_tensor *a, int dim)
{
    pr_opargs o = { .i = { dim }, .ni = 1 };
    return pr_op_call(PR_OP_softmax, &a, 1, &o);
}

pr_tensor *pr_log_softmax(pr_tensor *a, int dim)
{
    pr_opargs o = { .i = { dim }, .ni = 1 };
    return pr_op_call(PR_OP_log_softmax, &a, 1, &o);
}

static pr_tensor *loss_call(pr_op_id id, pr_tensor *x, pr_tensor *t, int reduction)
{
    pr_opargs o = { .i = { reduction }, .ni = 1 };
    pr_tensor *in[2] = { x, t };
    return pr_op_call(id, in, 2, &o);
}

pr_tensor *pr_cross_entropy(pr_tensor *logits, pr_tensor *targets, int reduction)
{
    return loss_call(PR_OP_cross_entropy, logits, targets, reduction);
}

pr_tensor *pr_nll_loss(pr_tensor *logp, pr_tensor *targets, int reduction)
{
    return loss_call(PR_OP_nll_loss, logp, targets, reduction);
}

pr_tensor *pr_mse_loss(pr_tensor *input, pr_tensor *target, int reduction)
{
    return loss_call(PR_OP_mse_loss, input, target, reduction);
}

pr_tensor *pr_batch_norm(pr_tensor *x, pr_tensor *gamma, pr_tensor *beta, pr_tensor *running_mean,
                         pr_tensor *running_var, int training, double momentum, double eps)
{
    if (!x)
        return pr_error("batch_norm: input is missing"), NULL;
    /* Without affine parameters the op still takes them: gamma = 1, beta = 0, no grad. */
    int64_t c = x->ndim >= 2 ? x->shape[1] : 0;
    pr_tensor *g = gamma, *b = beta;
    if (!g && !(g = pr_tensor_full(PR_FLOAT32, 1, &c, 1.0)))
        return NULL;
    if (!b && !(b = pr_tensor_zeros(PR_FLOAT32, 1, &c))) {
        if (g != gamma)
            pr_tensor_release(g);
        return NULL;
    }
    pr_opargs o = { .i = { training ? 1 : 0 }, .ni = 1, .f = { eps, momentum },
                    .aux = { running_mean, running_var } };
    pr_tensor *in[3] = { x, g, b };
    pr_tensor *y = pr_op_call(PR_OP_batch_norm, in, 3, &o);
    if (g != gamma)
        pr_tensor_release(g);
    if (b != beta)
        pr_tensor_release(b);
    return y;
}

pr_tensor *pr_dropout(pr_tensor *x, double p, int training)
{
    pr_opargs o = { .i = { training ? 1 : 0 }, .ni = 1, .f = { p } };
    return pr_op_call(PR_OP_dropout, &x, 1, &o);
}
