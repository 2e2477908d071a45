/* common.c: argument checks shared by the pruning files (see the end of prune.h). */
#include <math.h>

#include "prune.h"

pr_tensor *pr_prune_input(pr_tensor *t, const char *fn, const char *arg)
{
    if (!t) {
        pr_error("%s: %s is NULL", fn, arg);
        return NULL;
    }
    if (t->dtype != PR_FLOAT32) {
        pr_error("%s: %s must be float32, got %s", fn, arg, pr_dtype_name(t->dtype));
        return NULL;
    }
    /* A view (transpose, narrow) is read through a copy; the common case costs a retain. */
    return pr_tensor_contiguous(t);
}

int pr_prune_check_output(const pr_tensor *t, const char *fn, const char *arg)
{
    if (!t)
        return pr_error("%s: %s is NULL", fn, arg);
    if (t->dtype != PR_FLOAT32)
        return pr_error("%s: %s must be float32, got %s", fn, arg, pr_dtype_name(t->dtype));
    if (!pr_tensor_is_contiguous(t))
        return pr_error("%s: %s is written in place and must be contiguous", fn, arg);
    return PR_OK;
}

int pr_prune_dim(const pr_tensor *t, int dim, const char *fn)
{
    int d = dim < 0 ? dim + t->ndim : dim;
    if (t->ndim == 0 || d < 0 || d >= t->ndim) {
        char s[128];
        return pr_error("%s: dim %d out of range for shape %s", fn, dim,
                        pr_tensor_shape_str(t, s, sizeof s));
    }
    return d;
}

int64_t pr_prune_amount_count(double amount, int64_t n, const char *fn)
{
    if (!(amount >= 0.0 && amount <= 1.0))
        return pr_error("%s: amount must be in [0,1], got %g", fn, amount);
    /* llround: halves go away from zero, the same on every machine. */
    int64_t m = (int64_t)llround(amount * (double)n);
    return m > n ? n : m;
}
