/* broadcast.h: NumPy broadcasting shared by the elementwise kernels (binary ops, compare,
 * in-place updates, copy_): the result shape of two operands, and a strided N-d walk over up
 * to PR_ITER_MAX operands that are broadcast against one output shape. Internal to the core. */
#ifndef PR_BROADCAST_H
#define PR_BROADCAST_H

#include "tensor.h"

/* The broadcast shape of a and b (both borrowed) into *ndim / shape[PR_MAX_DIMS] (caller's).
 * Returns PR_OK, or PR_EINVAL with "broadcast: [2,3] and [4,5] do not broadcast". */
int pr_broadcast_shape(const pr_tensor *a, const pr_tensor *b, int *ndim, int64_t *shape);
/* The same, with `op` (borrowed string) naming the caller in the message:
 * "add: [2,3] and [4,5] do not broadcast". */
int pr_broadcast_shape_op(const char *op, const pr_tensor *a, const pr_tensor *b, int *ndim,
                          int64_t *shape);

/* Strides (in elements) that read t (borrowed) as if it had shape `shape` (ndim dims, right
 * aligned): 0 on broadcast dims. Writes stride[0..ndim-1] (caller's). Returns PR_OK or
 * PR_EINVAL naming both shapes, with `op` (may be NULL) as the message prefix. */
int pr_broadcast_strides(const char *op, const pr_tensor *t, int ndim, const int64_t *shape,
                         int64_t *stride);

#define PR_ITER_MAX 4

/* Walks every index of `shape` in row-major order, keeping for each operand the element
 * offset (relative to pr_tensor_data(operand)) of the current position. Usage:
 *
 *     pr_iter it;
 *     if (pr_iter_init(&it, "add", out->ndim, out->shape, 3, (const pr_tensor *[]){out, a, b}) < 0)
 *         ...error...
 *     for (int64_t i = 0; i < it.numel; i++, pr_iter_next(&it))
 *         o[it.off[0]] = x[it.off[1]] + y[it.off[2]];
 */
typedef struct pr_iter {
    int ndim, n;
    int64_t numel;
    int64_t shape[PR_MAX_DIMS];
    int64_t stride[PR_ITER_MAX][PR_MAX_DIMS];
    int64_t idx[PR_MAX_DIMS];
    int64_t off[PR_ITER_MAX];
} pr_iter;

/* ts[0..n-1] are borrowed; each must broadcast to `shape`. Returns PR_OK or PR_EINVAL. */
int pr_iter_init(pr_iter *it, const char *op, int ndim, const int64_t *shape, int n,
                 const pr_tensor *const *ts);

static inline void pr_iter_next(pr_iter *it)
{
    for (int d = it->ndim - 1; d >= 0; d--) {
        for (int k = 0; k < it->n; k++)
            it->off[k] += it->stride[k][d];
        if (++it->idx[d] < it->shape[d])
            return;
        for (int k = 0; k < it->n; k++)
            it->off[k] -= it->stride[k][d] * it->idx[d];
        it->idx[d] = 0;
    }
}

/* ---- element access for kernels that accept any dtype ----
 * Conversions to the integer dtypes truncate toward zero and saturate, NaN -> 0, so that no
 * input value makes a cast undefined behaviour. Offsets are in elements from `base`. */
static inline int64_t pr_elem_to_i64(double v)
{
    if (!(v == v))
        return 0;
    if (v >= 9223372036854775807.0)
        return INT64_MAX;
    if (v <= -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)v;
}

static inline uint8_t pr_elem_to_u8(double v)
{
    if (!(v > 0))
        return 0;
    if (v >= 255.0)
        return 255;
    return (uint8_t)v;
}

static inline uint8_t pr_elem_u8_from_i64(int64_t v) { return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v; }

static inline double pr_elem_get(const void *base, pr_dtype dt, int64_t off)
{
    switch (dt) {
    case PR_FLOAT32: return ((const float *)base)[off];
    case PR_INT64: return (double)((const int64_t *)base)[off];
    case PR_UINT8: return ((const uint8_t *)base)[off];
    }
    return 0;
}

static inline void pr_elem_set(void *base, pr_dtype dt, int64_t off, double v)
{
    switch (dt) {
    case PR_FLOAT32: ((float *)base)[off] = (float)v; break;
    case PR_INT64: ((int64_t *)base)[off] = pr_elem_to_i64(v); break;
    case PR_UINT8: ((uint8_t *)base)[off] = pr_elem_to_u8(v); break;
    }
}

#endif
