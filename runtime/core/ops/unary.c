/* ops/unary.c: elementwise unary ops of ops.def (neg ... clamp): forward, backward and the
 * public wrappers of ops.h. Results are new contiguous float32 tensors. Ops whose derivative
 * is cheapest from the output (sqrt, exp, tanh, sigmoid) save an alias of it; the others
 * read the input the node already holds. */
#include <math.h>

#include "kernels.h"
#include "ops.h"

/* A contiguous float32 reference to x (borrowed), or NULL with a message naming the op. */
static pr_tensor *unary_input(const char *op, pr_tensor *x)
{
    if (x->dtype != PR_FLOAT32) {
        pr_error("%s: expected a float32 tensor, got %s", op, pr_dtype_name(x->dtype));
        return NULL;
    }
    return pr_tensor_contiguous(x);
}

/* What one range of an elementwise pass needs; the arrays are borrowed. */
typedef struct {
    const float *X, *G;
    float *Y;
    const pr_opargs *a;
} unary_job;

/* Forward: Y[i] = expr(x), x = X[i]; `a` (the options) is in scope for the expression.
 * SAVE_OUT says whether the backward wants the output. The pass is split over threads
 * (pr_parallel_for runs small tensors inline): a LeNet activation at batch 1000 is 46 MB, and
 * one thread streaming it while the other waits was 4% of an evaluation. */
#define UNARY_FWD(name, SAVE_OUT, expr)                                                       \
    static void name##_fwd_range(void *ctx, int64_t i0, int64_t i1)                          \
    {                                                                                        \
        const unary_job *j = ctx;                                                            \
        const pr_opargs *a = j->a;                                                           \
        (void)a;                                                                             \
        const float *restrict X = j->X;                                                      \
        float *restrict Y = j->Y;                                                            \
        for (int64_t i = i0; i < i1; i++) {                                                  \
            float x = X[i];                                                                  \
            Y[i] = (expr);                                                                   \
        }                                                                                    \
    }                                                                                        \
    pr_tensor *pr_fwd_##name(pr_tensor *const *in, int nin, const pr_opargs *a,              \
                             pr_tensor **saved)                                              \
    {                                                                                        \
        pr_tensor *xc = unary_input(#name, in[0]);                                           \
        if (!xc)                                                                             \
            return NULL;                                                                     \
        pr_tensor *out = pr_tensor_empty(PR_FLOAT32, xc->ndim, xc->shape);                   \
        if (out) {                                                                           \
            unary_job j = { pr_tensor_f32(xc), NULL, pr_tensor_f32(out), a };                \
            pr_parallel_for(pr_tensor_numel(xc), 2, name##_fwd_range, &j);                   \
            if (saved && (SAVE_OUT)) {                                                       \
                saved[0] = pr_tensor_alias(out);                                             \
                if (!saved[0]) {                                                             \
                    pr_tensor_release(out);                                                  \
                    out = NULL;                                                              \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
        pr_tensor_release(xc);                                                               \
        return out;                                                                          \
    }

/* Backward: G[i] = expr(g, x, y) with g the upstream gradient, x the input and y the saved
 * output (only valid for ops that saved it; others must not name y). Split like the forward. */
#define UNARY_BWD(name, USES_OUT, expr)                                                       \
    static void name##_bwd_range(void *ctx, int64_t i0, int64_t i1)                          \
    {                                                                                        \
        const unary_job *j = ctx;                                                            \
        const pr_opargs *a = j->a;                                                           \
        (void)a;                                                                             \
        const float *restrict S = j->X, *restrict Gs = j->G;                                 \
        float *restrict R = j->Y;                                                            \
        for (int64_t i = i0; i < i1; i++) {                                                  \
            float g = Gs[i], x = S[i], y = S[i];                                             \
            (void)x;                                                                         \
            (void)y;                                                                         \
            R[i] = (expr);                                                                   \
        }                                                                                    \
    }                                                                                        \
    int pr_bwd_##name(const pr_node *n, pr_tensor *gout, pr_tensor **gin)                    \
    {                                                                                        \
        if (!n->in[0]->requires_grad)                                                        \
            return PR_OK;                                                                    \
        pr_tensor *src = (USES_OUT) ? n->saved[0] : n->in[0];                                \
        if (!src)                                                                            \
            return pr_error(#name ": backward is missing its saved output");                 \
        pr_tensor *sc = pr_tensor_contiguous(src);                                           \
        if (!sc)                                                                             \
            return PR_ENOMEM;                                                                \
        pr_tensor *r = pr_tensor_empty(PR_FLOAT32, sc->ndim, sc->shape);                     \
        if (!r) {                                                                            \
            pr_tensor_release(sc);                                                           \
            return PR_ENOMEM;                                                                \
        }                                                                                    \
        unary_job j = { pr_tensor_f32(sc), pr_tensor_f32(gout), pr_tensor_f32(r), &n->args }; \
        pr_parallel_for(pr_tensor_numel(sc), 3, name##_bwd_range, &j);                       \
        pr_tensor_release(sc);                                                               \
        gin[0] = r;                                                                          \
        return PR_OK;                                                                        \
    }

static inline float sigmoidf(float x)
{
    /* Two branches so exp never overflows for large |x|. */
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

static inline float clampf(float x, float lo, float hi)
{
    /* min(max(x, lo), hi) with NaN passing through, as torch.clamp. */
    float y = x < lo ? lo : x;
    return y > hi ? hi : y;
}

UNARY_FWD(neg, 0, -x)
UNARY_FWD(abs, 0, fabsf(x))
UNARY_FWD(sqrt, 1, sqrtf(x))
UNARY_FWD(exp, 1, expf(x))
UNARY_FWD(log, 0, logf(x))
UNARY_FWD(tanh, 1, tanhf(x))
UNARY_FWD(sigmoid, 1, sigmoidf(x))
/* (x < 0 ? 0 : x) rather than fmaxf so a NaN shows up in the output instead of vanishing. */
UNARY_FWD(relu, 0, x < 0.0f ? 0.0f : x)
UNARY_FWD(leaky_relu, 0, x < 0.0f ? (float)a->f[0] * x : x)
UNARY_FWD(clamp, 0, clampf(x, (float)a->f[0], (float)a->f[1]))

UNARY_BWD(neg, 0, -g)
/* abs'(0) = 0, as torch (the subgradient that keeps zeros at zero). */
UNARY_BWD(abs, 0, x > 0.0f ? g : (x < 0.0f ? -g : 0.0f))
UNARY_BWD(sqrt, 1, g / (2.0f * y))
UNARY_BWD(exp, 1, g * y)
UNARY_BWD(log, 0, g / x)
UNARY_BWD(tanh, 1, g * (1.0f - y * y))
UNARY_BWD(sigmoid, 1, g * y * (1.0f - y))
UNARY_BWD(relu, 0, x > 0.0f ? g : 0.0f)
UNARY_BWD(leaky_relu, 0, x > 0.0f ? g : (float)a->f[0] * g)
/* The gradient passes where lo <= x <= hi (bounds included), as torch.clamp. */
UNARY_BWD(clamp, 0, (x >= (float)a->f[0] && x <= (float)a->f[1]) ? g : 0.0f)

static pr_tensor *call1(pr_op_id id, pr_tensor *x, const pr_opargs *a)
{
    return pr_op_call(id, &x, 1, a);
}

pr_tensor *pr_neg(pr_tensor *a) { return call1(PR_OP_neg, a, NULL); }
pr_tensor *pr_abs(pr_tensor *a) { return call1(PR_OP_abs, a, NULL); }
pr_tensor *pr_sqrt(pr_tensor *a) { return call1(PR_OP_sqrt, a, NULL); }
pr_tensor *pr_exp(pr_tensor *a) { return call1(PR_OP_exp, a, NULL); }
pr_tensor *pr_log(pr_tensor *a) { return call1(PR_OP_log, a, NULL); }
pr_tensor *pr_tanh(pr_tensor *a) { return call1(PR_OP_tanh, a, NULL); }
pr_tensor *pr_sigmoid(pr_tensor *a) { return call1(PR_OP_sigmoid, a, NULL); }
pr_tensor *pr_relu(pr_tensor *a) { return call1(PR_OP_relu, a, NULL); }

pr_tensor *pr_leaky_relu(pr_tensor *a, double slope)
{
    pr_opargs o = {0};
    o.f[0] = slope;
    return call1(PR_OP_leaky_relu, a, &o);
}

pr_tensor *pr_clamp(pr_tensor *a, double lo, double hi)
{
    pr_opargs o = {0};
    o.f[0] = lo;
    o.f[1] = hi;
    return call1(PR_OP_clamp, a, &o);
}
