/* ops/shape.c: the shape ops of ops.def (reshape, transpose, permute, narrow, index_select,
 * cat), forward and backward, and their public wrappers from ops.h.
 *
 * reshape/transpose/permute/narrow return views sharing the input's storage (reshape copies
 * only when the layout cannot be viewed); the backward of each maps the output's gradient back
 * onto the input's shape. index_select and cat copy. */
#include <string.h>

#include "ops.h"

/* Wraps a negative dim; the message names the op and the tensor's rank. */
static int norm_dim(const char *op, int64_t dim, int ndim, int *out)
{
    int64_t d = dim < 0 ? dim + ndim : dim;
    if (d < 0 || d >= ndim)
        return pr_error("%s: dim %lld out of range for a %d-d tensor", op, (long long)dim, ndim);
    *out = (int)d;
    return PR_OK;
}

/* Gradient results are handed on contiguous: a backward caller may read them flat. */
static int set_grad(pr_tensor **gin, pr_tensor *g)
{
    if (!g)
        return PR_ENOMEM;
    *gin = pr_tensor_contiguous(g);
    pr_tensor_release(g);
    return *gin ? PR_OK : PR_ENOMEM;
}

/* ---- reshape ---- */

pr_tensor *pr_fwd_reshape(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    if (a->ni < 0 || a->ni > PR_MAX_DIMS) {
        pr_error("reshape: %d dims, at most %d are supported", a->ni, PR_MAX_DIMS);
        return NULL;
    }
    return pr_tensor_reshape(in[0], a->ni, a->i);
}

int pr_bwd_reshape(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    pr_tensor *x = n->in[0];
    return set_grad(&gin[0], pr_tensor_reshape(gout, x->ndim, x->shape));
}

/* ---- transpose ---- */

pr_tensor *pr_fwd_transpose(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    int d0 = 0, d1 = 0;
    if (norm_dim("transpose", a->i[0], in[0]->ndim, &d0) < 0 || norm_dim("transpose", a->i[1], in[0]->ndim, &d1) < 0)
        return NULL;
    return pr_tensor_transpose(in[0], d0, d1);
}

int pr_bwd_transpose(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    int d0 = 0, d1 = 0;
    if (norm_dim("transpose", n->args.i[0], gout->ndim, &d0) < 0 ||
        norm_dim("transpose", n->args.i[1], gout->ndim, &d1) < 0)
        return PR_EINVAL;
    return set_grad(&gin[0], pr_tensor_transpose(gout, d0, d1));
}

/* ---- permute ---- */

static int perm_from_args(const char *op, const pr_opargs *a, int ndim, int *perm)
{
    if (a->ni != ndim)
        return pr_error("%s: a permutation of %d dims is needed for a %d-d tensor, got %d", op, ndim,
                        ndim, a->ni);
    for (int d = 0; d < ndim; d++)
        if (norm_dim(op, a->i[d], ndim, &perm[d]) < 0)
            return PR_EINVAL;
    return PR_OK;
}

pr_tensor *pr_fwd_permute(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    int perm[PR_MAX_DIMS];
    if (perm_from_args("permute", a, in[0]->ndim, perm) < 0)
        return NULL;
    return pr_tensor_permute(in[0], perm);
}

int pr_bwd_permute(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    int perm[PR_MAX_DIMS], inv[PR_MAX_DIMS];
    if (perm_from_args("permute", &n->args, gout->ndim, perm) < 0)
        return PR_EINVAL;
    for (int d = 0; d < gout->ndim; d++)
        inv[perm[d]] = d;
    return set_grad(&gin[0], pr_tensor_permute(gout, inv));
}

/* ---- narrow ---- */

pr_tensor *pr_fwd_narrow(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    int d = 0;
    if (norm_dim("narrow", a->i[0], in[0]->ndim, &d) < 0)
        return NULL;
    return pr_tensor_narrow(in[0], d, a->i[1], a->i[2]);
}

int pr_bwd_narrow(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    pr_tensor *x = n->in[0];
    int d = 0;
    if (norm_dim("narrow", n->args.i[0], x->ndim, &d) < 0)
        return PR_EINVAL;
    pr_tensor *g = pr_tensor_zeros(PR_FLOAT32, x->ndim, x->shape);
    if (!g)
        return PR_ENOMEM;
    pr_tensor *slice = pr_tensor_narrow(g, d, n->args.i[1], n->args.i[2]);
    int rc = slice ? pr_tensor_copy_(slice, gout) : PR_EINVAL;
    pr_tensor_release(slice);
    if (rc < 0) {
        pr_tensor_release(g);
        return rc;
    }
    gin[0] = g;
    return PR_OK;
}

/* ---- index_select ---- */

/* Checks the index tensor (int64, 0-d or 1-d, every entry in [0, size)) and returns how many
 * entries it has. */
static int64_t check_index(const pr_tensor *x, int d, const pr_tensor *idx)
{
    char b[96];
    if (idx->dtype != PR_INT64)
        return pr_error("index_select: indices must be int64, got %s", pr_dtype_name(idx->dtype));
    if (idx->ndim > 1)
        return pr_error("index_select: indices must be 1-d, got %s", pr_tensor_shape_str(idx, b, sizeof b));
    int64_t m = pr_tensor_numel(idx);
    for (int64_t j = 0; j < m; j++) {
        int64_t k = (int64_t)pr_tensor_get_flat(idx, j);
        if (k < 0 || k >= x->shape[d])
            return pr_error("index_select: index %lld out of range for dim %d of size %lld", (long long)k, d,
                            (long long)x->shape[d]);
    }
    return m;
}

/* outer x size x inner view of a contiguous tensor around dim d */
static void split_at(const pr_tensor *t, int d, int64_t *outer, int64_t *inner)
{
    *outer = 1;
    *inner = 1;
    for (int k = 0; k < d; k++)
        *outer *= t->shape[k];
    for (int k = d + 1; k < t->ndim; k++)
        *inner *= t->shape[k];
}

pr_tensor *pr_fwd_index_select(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    pr_tensor *x = in[0], *idx = in[1];
    int d = 0;
    if (x->ndim == 0) {
        pr_error("index_select: input is 0-d");
        return NULL;
    }
    if (norm_dim("index_select", a->i[0], x->ndim, &d) < 0)
        return NULL;
    int64_t m = check_index(x, d, idx);
    if (m < 0)
        return NULL;
    int64_t shape[PR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[d] = m;
    pr_tensor *out = pr_tensor_empty(x->dtype, x->ndim, shape);
    pr_tensor *xc = out ? pr_tensor_contiguous(x) : NULL;
    pr_tensor *ic = xc ? pr_tensor_contiguous(idx) : NULL;
    if (!ic) {
        pr_tensor_release(out);
        pr_tensor_release(xc);
        return NULL;
    }
    int64_t outer, inner, n = x->shape[d];
    split_at(x, d, &outer, &inner);
    size_t row = (size_t)inner * pr_dtype_size(x->dtype);
    const char *src = pr_tensor_data(xc);
    char *dst = pr_tensor_data(out);
    const int64_t *ix = pr_tensor_i64(ic);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < m; j++)
            memcpy(dst + (size_t)(o * m + j) * row, src + (size_t)(o * n + ix[j]) * row, row);
    pr_tensor_release(xc);
    pr_tensor_release(ic);
    return out;
}

int pr_bwd_index_select(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    pr_tensor *x = n->in[0];
    if (!x->requires_grad)
        return PR_OK;
    int d = 0;
    if (norm_dim("index_select", n->args.i[0], x->ndim, &d) < 0)
        return PR_EINVAL;
    pr_tensor *g = pr_tensor_zeros(PR_FLOAT32, x->ndim, x->shape);
    pr_tensor *ic = g ? pr_tensor_contiguous(n->in[1]) : NULL;
    pr_tensor *gc = ic ? pr_tensor_contiguous(gout) : NULL;
    if (!gc) {
        pr_tensor_release(g);
        pr_tensor_release(ic);
        return PR_ENOMEM;
    }
    /* index_add: an index chosen twice receives both gradients. */
    int64_t outer, inner, size = x->shape[d], m = pr_tensor_numel(ic);
    split_at(x, d, &outer, &inner);
    const int64_t *ix = pr_tensor_i64(ic);
    const float *src = pr_tensor_f32(gc);
    float *dst = pr_tensor_f32(g);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < m; j++) {
            float *dr = dst + (o * size + ix[j]) * inner;
            const float *sr = src + (o * m + j) * inner;
            for (int64_t k = 0; k < inner; k++)
                dr[k] += sr[k];
        }
    pr_tensor_release(ic);
    pr_tensor_release(gc);
    gin[0] = g;
    return PR_OK;
}

/* ---- cat ---- */

pr_tensor *pr_fwd_cat(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    if (nin < 1) {
        pr_error("cat: needs at least one tensor");
        return NULL;
    }
    pr_tensor *t0 = in[0];
    if (t0->ndim == 0) {
        pr_error("cat: cannot concatenate 0-d tensors");
        return NULL;
    }
    int d = 0;
    if (norm_dim("cat", a->i[0], t0->ndim, &d) < 0)
        return NULL;
    int64_t shape[PR_MAX_DIMS];
    memcpy(shape, t0->shape, sizeof shape);
    shape[d] = 0;
    for (int k = 0; k < nin; k++) {
        pr_tensor *t = in[k];
        char b0[96], b1[96];
        int ok = t->ndim == t0->ndim && t->dtype == t0->dtype;
        for (int j = 0; ok && j < t->ndim; j++)
            ok = j == d || t->shape[j] == t0->shape[j];
        if (!ok) {
            pr_error("cat: tensor %d is %s %s, tensor 1 is %s %s (only dim %d may differ)", k + 1,
                     pr_dtype_name(t->dtype), pr_tensor_shape_str(t, b1, sizeof b1), pr_dtype_name(t0->dtype),
                     pr_tensor_shape_str(t0, b0, sizeof b0), d);
            return NULL;
        }
        shape[d] += t->shape[d];
    }
    pr_tensor *out = pr_tensor_empty(t0->dtype, t0->ndim, shape);
    if (!out)
        return NULL;
    int64_t at = 0;
    for (int k = 0; k < nin; k++) {
        pr_tensor *slice = pr_tensor_narrow(out, d, at, in[k]->shape[d]);
        int rc = slice ? pr_tensor_copy_(slice, in[k]) : PR_EINVAL;
        pr_tensor_release(slice);
        if (rc < 0) {
            pr_tensor_release(out);
            return NULL;
        }
        at += in[k]->shape[d];
    }
    return out;
}

int pr_bwd_cat(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    int d = 0;
    if (norm_dim("cat", n->args.i[0], gout->ndim, &d) < 0)
        return PR_EINVAL;
    int64_t at = 0;
    for (int k = 0; k < n->nin; k++) {
        int64_t len = n->in[k]->shape[d];
        if (n->in[k]->requires_grad) {
            int rc = set_grad(&gin[k], pr_tensor_narrow(gout, d, at, len));
            if (rc < 0)
                return rc;
        }
        at += len;
    }
    return PR_OK;
}

/* ---- public wrappers (ops.h) ---- */

pr_tensor *pr_reshape(pr_tensor *a, int ndim, const int64_t *shape)
{
    pr_opargs args = {0};
    if (ndim < 0 || ndim > PR_MAX_DIMS || (ndim > 0 && !shape)) {
        pr_error("reshape: %d dims, at most %d are supported", ndim, PR_MAX_DIMS);
        return NULL;
    }
    for (int d = 0; d < ndim; d++)
        args.i[d] = shape[d];
    args.ni = ndim;
    return pr_op_call(PR_OP_reshape, &a, 1, &args);
}

pr_tensor *pr_transpose(pr_tensor *a, int d0, int d1)
{
    pr_opargs args = {0};
    args.i[0] = d0;
    args.i[1] = d1;
    args.ni = 2;
    return pr_op_call(PR_OP_transpose, &a, 1, &args);
}

pr_tensor *pr_permute(pr_tensor *a, const int *dims)
{
    pr_opargs args = {0};
    if (!a) {
        pr_error("permute: input is missing");
        return NULL;
    }
    if (a->ndim > 0 && !dims) {
        pr_error("permute: dims are missing");
        return NULL;
    }
    for (int d = 0; d < a->ndim; d++)
        args.i[d] = dims[d];
    args.ni = a->ndim;
    return pr_op_call(PR_OP_permute, &a, 1, &args);
}

pr_tensor *pr_narrow(pr_tensor *a, int dim, int64_t start, int64_t len)
{
    pr_opargs args = {0};
    args.i[0] = dim;
    args.i[1] = start;
    args.i[2] = len;
    args.ni = 3;
    return pr_op_call(PR_OP_narrow, &a, 1, &args);
}

pr_tensor *pr_index_select(pr_tensor *a, int dim, pr_tensor *index)
{
    pr_opargs args = {0};
    pr_tensor *in[2] = { a, index };
    args.i[0] = dim;
    args.ni = 1;
    return pr_op_call(PR_OP_index_select, in, 2, &args);
}

pr_tensor *pr_cat(pr_tensor *const *ts, int n, int dim)
{
    pr_opargs args = {0};
    if (n < 1 || !ts) {
        pr_error("cat: needs at least one tensor");
        return NULL;
    }
    args.i[0] = dim;
    args.ni = 1;
    return pr_op_call(PR_OP_cat, ts, n, &args);
}
