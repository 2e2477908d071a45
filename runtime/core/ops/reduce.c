/* ops/reduce.c: the reductions of ops.def (sum, mean, max, min) over one dim or everything:
 * forward, backward and the public wrappers of ops.h. Options: i[0] = dim (PR_ALL for every
 * element, negative counts from the end), i[1] = keepdim.
 *
 * The input is read as [outer, n, inner] with n the reduced extent, so one loop nest serves
 * every dim; the inner index is the unit-stride one, which keeps the hot loops vectorisable.
 * Sums accumulate in double: a float running sum over a large tensor loses digits that the
 * losses and the pruning statistics built on it notice. */
#include <math.h>
#include <stdlib.h>

#include "ops.h"

typedef struct geom {
    int64_t outer, n, inner;
    int ndim;                       /* the output's */
    int64_t shape[PR_MAX_DIMS];
} geom;

/* The [outer, n, inner] reading of x for options a, and the output shape. */
static int reduce_geom(const char *op, const pr_tensor *x, const pr_opargs *a, geom *g)
{
    int64_t dim = a->i[0];
    int keep = a->i[1] != 0;
    if (x->dtype != PR_FLOAT32)
        return pr_error("%s: expected a float32 tensor, got %s", op, pr_dtype_name(x->dtype));
    /* A 0-d tensor accepts dim 0 and -1 as "itself", as torch does. */
    int all = dim == PR_ALL || (x->ndim == 0 && (dim == 0 || dim == -1));
    int d = (int)(dim < 0 ? dim + x->ndim : dim);
    if (!all && (dim < -x->ndim || dim >= x->ndim)) {
        char s[96];
        return pr_error("%s: dim %lld is out of range for %s", op, (long long)dim,
                        pr_tensor_shape_str(x, s, sizeof s));
    }
    g->outer = 1;
    g->inner = 1;
    g->n = 1;
    g->ndim = 0;
    for (int k = 0; k < x->ndim; k++) {
        int reduced = all || k == d;
        if (reduced)
            g->n *= x->shape[k];
        else if (k < d)
            g->outer *= x->shape[k];
        else
            g->inner *= x->shape[k];
        if (!reduced)
            g->shape[g->ndim++] = x->shape[k];
        else if (keep)
            g->shape[g->ndim++] = 1;
    }
    return PR_OK;
}

/* ---- sum / mean ---- */

static pr_tensor *sum_fwd(const char *op, pr_tensor *x, const pr_opargs *a, int mean)
{
    geom g;
    if (reduce_geom(op, x, a, &g) < 0)
        return NULL;
    pr_tensor *xc = pr_tensor_contiguous(x);
    pr_tensor *out = xc ? pr_tensor_empty(PR_FLOAT32, g.ndim, g.shape) : NULL;
    double *acc = out ? calloc((size_t)g.inner + 1, sizeof *acc) : NULL;
    if (!acc) {
        if (out)
            pr_error_code(PR_ENOMEM, "%s: out of memory", op);
        pr_tensor_release(out);
        pr_tensor_release(xc);
        return NULL;
    }
    const float *X = pr_tensor_f32(xc);
    float *Y = pr_tensor_f32(out);
    /* mean of nothing is 0/0 = NaN, as torch and numpy */
    double scale = mean ? 1.0 / (double)g.n : 1.0;
    for (int64_t o = 0; o < g.outer; o++) {
        const float *p = X + o * g.n * g.inner;
        if (g.inner == 1) {
            /* Eight independent partial sums: one chain of dependent double adds would run
             * at a fraction of memory speed. */
            double s[8] = {0};
            int64_t k = 0;
            for (; k + 8 <= g.n; k += 8)
                for (int j = 0; j < 8; j++)
                    s[j] += p[k + j];
            for (; k < g.n; k++)
                s[0] += p[k];
            Y[o] = (float)((((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))) * scale);
            continue;
        }
        for (int64_t i = 0; i < g.inner; i++)
            acc[i] = 0.0;
        for (int64_t k = 0; k < g.n; k++)
            for (int64_t i = 0; i < g.inner; i++)
                acc[i] += p[k * g.inner + i];
        for (int64_t i = 0; i < g.inner; i++)
            Y[o * g.inner + i] = (float)(acc[i] * scale);
    }
    free(acc);
    pr_tensor_release(xc);
    return out;
}

/* Spreads gout back over the reduced extent, times scale. */
static int sum_bwd(const char *op, const pr_node *n, pr_tensor *gout, pr_tensor **gin, int mean)
{
    pr_tensor *x = n->in[0];
    if (!x->requires_grad)
        return PR_OK;
    geom g;
    int rc = reduce_geom(op, x, &n->args, &g);
    if (rc < 0)
        return rc;
    if (!(gin[0] = pr_tensor_empty(PR_FLOAT32, x->ndim, x->shape)))
        return PR_ENOMEM;
    const float *G = pr_tensor_f32(gout);
    float *D = pr_tensor_f32(gin[0]);
    float scale = mean ? (float)(1.0 / (double)g.n) : 1.0f;
    for (int64_t o = 0; o < g.outer; o++)
        for (int64_t k = 0; k < g.n; k++) {
            float *d = D + (o * g.n + k) * g.inner;
            const float *s = G + o * g.inner;
            for (int64_t i = 0; i < g.inner; i++)
                d[i] = s[i] * scale;
        }
    return PR_OK;
}

pr_tensor *pr_fwd_sum(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    return sum_fwd("sum", in[0], a, 0);
}

pr_tensor *pr_fwd_mean(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    return sum_fwd("mean", in[0], a, 1);
}

int pr_bwd_sum(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    return sum_bwd("sum", n, gout, gin, 0);
}

int pr_bwd_mean(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    return sum_bwd("mean", n, gout, gin, 1);
}

/* ---- max / min ---- */

/* Values and, when recording, the position along the reduced extent of the first extreme
 * (saved[0], int64, the output's shape) for the backward. A NaN wins, so it propagates. */
static pr_tensor *extreme_fwd(const char *op, pr_tensor *x, const pr_opargs *a, pr_tensor **saved,
                              int want_max)
{
    geom g;
    if (reduce_geom(op, x, a, &g) < 0)
        return NULL;
    if (g.n == 0) {
        char s[96];
        pr_error("%s: cannot reduce an empty extent of %s", op, pr_tensor_shape_str(x, s, sizeof s));
        return NULL;
    }
    pr_tensor *xc = pr_tensor_contiguous(x);
    pr_tensor *out = xc ? pr_tensor_empty(PR_FLOAT32, g.ndim, g.shape) : NULL;
    pr_tensor *idx = out && saved ? pr_tensor_empty(PR_INT64, g.ndim, g.shape) : NULL;
    if (!out || (saved && !idx)) {
        pr_tensor_release(idx);
        pr_tensor_release(out);
        pr_tensor_release(xc);
        return NULL;
    }
    const float *X = pr_tensor_f32(xc);
    float *Y = pr_tensor_f32(out);
    int64_t *I = idx ? pr_tensor_i64(idx) : NULL;
    for (int64_t o = 0; o < g.outer; o++)
        for (int64_t i = 0; i < g.inner; i++) {
            const float *p = X + o * g.n * g.inner + i;
            float best = p[0];
            int64_t at = 0;
            for (int64_t k = 1; k < g.n && best == best; k++) {
                float v = p[k * g.inner];
                if ((want_max ? v > best : v < best) || v != v) {
                    best = v;
                    at = k;
                }
            }
            Y[o * g.inner + i] = best;
            if (I)
                I[o * g.inner + i] = at;
        }
    pr_tensor_release(xc);
    if (saved)
        saved[0] = idx;
    return out;
}

static int extreme_bwd(const char *op, const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    pr_tensor *x = n->in[0];
    if (!x->requires_grad)
        return PR_OK;
    if (!n->saved[0])
        return pr_error("%s: backward is missing its saved positions", op);
    geom g;
    int rc = reduce_geom(op, x, &n->args, &g);
    if (rc < 0)
        return rc;
    if (!(gin[0] = pr_tensor_zeros(PR_FLOAT32, x->ndim, x->shape)))
        return PR_ENOMEM;
    const float *G = pr_tensor_f32(gout);
    const int64_t *I = pr_tensor_i64(n->saved[0]);
    float *D = pr_tensor_f32(gin[0]);
    for (int64_t o = 0; o < g.outer; o++)
        for (int64_t i = 0; i < g.inner; i++) {
            int64_t j = o * g.inner + i;
            D[(o * g.n + I[j]) * g.inner + i] = G[j];
        }
    return PR_OK;
}

pr_tensor *pr_fwd_max(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    return extreme_fwd("max", in[0], a, saved, 1);
}

pr_tensor *pr_fwd_min(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    return extreme_fwd("min", in[0], a, saved, 0);
}

int pr_bwd_max(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    return extreme_bwd("max", n, gout, gin);
}

int pr_bwd_min(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    return extreme_bwd("min", n, gout, gin);
}

/* ---- public wrappers ---- */

static pr_tensor *call_reduce(pr_op_id id, pr_tensor *a, int dim, int keepdim)
{
    pr_opargs o = {0};
    o.i[0] = dim;
    o.i[1] = keepdim != 0;
    o.ni = 2;
    return pr_op_call(id, &a, 1, &o);
}

pr_tensor *pr_sum(pr_tensor *a, int dim, int keepdim) { return call_reduce(PR_OP_sum, a, dim, keepdim); }
pr_tensor *pr_mean(pr_tensor *a, int dim, int keepdim) { return call_reduce(PR_OP_mean, a, dim, keepdim); }
pr_tensor *pr_max(pr_tensor *a, int dim, int keepdim) { return call_reduce(PR_OP_max, a, dim, keepdim); }
pr_tensor *pr_min(pr_tensor *a, int dim, int keepdim) { return call_reduce(PR_OP_min, a, dim, keepdim); }
