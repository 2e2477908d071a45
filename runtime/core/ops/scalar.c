/* ops/scalar.c: tensor-op-number conveniences of ops.h (pr_add_scalar, pr_mul_scalar,
 * pr_pow_scalar). The number becomes a 0-d tensor that broadcasts, so the result is recorded
 * like any binary op and the backward comes from binary.c; the node keeps the 0-d tensor alive
 * for as long as it needs it. */
#include "ops.h"

/* a (borrowed) combined with s through binary op f. */
static pr_tensor *with_scalar(pr_tensor *(*f)(pr_tensor *, pr_tensor *), pr_tensor *a, double s)
{
    pr_tensor *t = pr_tensor_scalar(s);
    if (!t)
        return NULL;
    pr_tensor *r = f(a, t);
    pr_tensor_release(t);
    return r;
}

pr_tensor *pr_add_scalar(pr_tensor *a, double s) { return with_scalar(pr_add, a, s); }
pr_tensor *pr_mul_scalar(pr_tensor *a, double s) { return with_scalar(pr_mul, a, s); }
pr_tensor *pr_pow_scalar(pr_tensor *a, double p) { return with_scalar(pr_pow, a, p); }
