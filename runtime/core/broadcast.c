/* broadcast.c: NumPy broadcasting rules and the strided N-d walk (see broadcast.h). */
#include "broadcast.h"

#include <string.h>

int pr_broadcast_shape_op(const char *op, const pr_tensor *a, const pr_tensor *b, int *ndim,
                          int64_t *shape)
{
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int d = 0; d < nd; d++) {
        int da = d - (nd - a->ndim), db = d - (nd - b->ndim);
        int64_t sa = da >= 0 ? a->shape[da] : 1, sb = db >= 0 ? b->shape[db] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            char x[96], y[96];
            return pr_error("%s: %s and %s do not broadcast", op ? op : "broadcast",
                            pr_tensor_shape_str(a, x, sizeof x), pr_tensor_shape_str(b, y, sizeof y));
        }
        shape[d] = sa == 1 ? sb : sa;
    }
    *ndim = nd;
    return PR_OK;
}

int pr_broadcast_shape(const pr_tensor *a, const pr_tensor *b, int *ndim, int64_t *shape)
{
    return pr_broadcast_shape_op(NULL, a, b, ndim, shape);
}

int pr_broadcast_strides(const char *op, const pr_tensor *t, int ndim, const int64_t *shape,
                         int64_t *stride)
{
    if (t->ndim > ndim)
        goto bad;
    for (int d = 0; d < ndim; d++) {
        int dt = d - (ndim - t->ndim);
        if (dt < 0 || t->shape[dt] == 1)
            stride[d] = 0;
        else if (t->shape[dt] == shape[d])
            stride[d] = t->stride[dt];
        else
            goto bad;
    }
    return PR_OK;
bad:;
    char x[96], y[96];
    return pr_error("%s: %s does not broadcast to %s", op ? op : "broadcast",
                    pr_tensor_shape_str(t, x, sizeof x), pr_shape_str(y, sizeof y, ndim, shape));
}

int pr_iter_init(pr_iter *it, const char *op, int ndim, const int64_t *shape, int n,
                 const pr_tensor *const *ts)
{
    if (n > PR_ITER_MAX)
        return pr_error("%s: %d operands, at most %d", op ? op : "iter", n, PR_ITER_MAX);
    memset(it, 0, sizeof *it);
    it->ndim = ndim;
    it->n = n;
    it->numel = 1;
    for (int d = 0; d < ndim; d++) {
        it->shape[d] = shape[d];
        it->numel *= shape[d];
    }
    for (int k = 0; k < n; k++) {
        int rc = pr_broadcast_strides(op, ts[k], ndim, shape, it->stride[k]);
        if (rc < 0)
            return rc;
    }
    return PR_OK;
}
