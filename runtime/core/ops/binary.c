/* ops/binary.c: elementwise binary ops of ops.def (add, sub, mul, div, pow) and where, with
 * NumPy broadcasting: forward, backward and the public wrappers of ops.h.
 *
 * Every kernel runs over "runs": the broadcast index space is first collapsed (size-1 dims
 * dropped, adjacent dims merged where every operand's strides allow), so same-shape contiguous
 * operands become one flat run and a scalar or a bias row ([N,C] + [C]) become runs with an
 * inner stride of 0 or 1. Those are the cases training hits, and the inner loops for them are
 * plain unit-stride loops the compiler vectorises. Results are new contiguous tensors. */
#include <math.h>
#include <string.h>

#include "broadcast.h"
#include "ops.h"

/* ---- the run walker ---- */

typedef struct runs {
    int nd, nops;
    int64_t numel;
    int64_t shape[PR_MAX_DIMS];
    int64_t st[PR_ITER_MAX][PR_MAX_DIMS]; /* element strides; operand 0 is the output */
} runs;

/* Sets r up to walk `shape` over ts[0..nops-1] (borrowed; ts[0] the contiguous output). */
static int runs_init(runs *r, const char *op, int ndim, const int64_t *shape, int nops,
                     pr_tensor *const *ts)
{
    int64_t st[PR_ITER_MAX][PR_MAX_DIMS];
    r->nops = nops;
    r->numel = 1;
    for (int d = 0; d < ndim; d++)
        r->numel *= shape[d];
    for (int k = 0; k < nops; k++) {
        int rc = pr_broadcast_strides(op, ts[k], ndim, shape, st[k]);
        if (rc < 0)
            return rc;
    }
    /* Drop size-1 dims, then merge dim d into the previous kept one when, for every operand,
     * stepping the outer dim once equals stepping the inner one shape[d] times. */
    int nd = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 1)
            continue;
        int merge = nd > 0;
        for (int k = 0; k < nops && merge; k++)
            merge = r->st[k][nd - 1] == st[k][d] * shape[d];
        if (merge) {
            r->shape[nd - 1] *= shape[d];
            for (int k = 0; k < nops; k++)
                r->st[k][nd - 1] = st[k][d];
        } else {
            r->shape[nd] = shape[d];
            for (int k = 0; k < nops; k++)
                r->st[k][nd] = st[k][d];
            nd++;
        }
    }
    if (nd == 0) { /* a single element */
        r->shape[0] = 1;
        for (int k = 0; k < nops; k++)
            r->st[k][0] = 0;
        nd = 1;
    }
    r->nd = nd;
    return PR_OK;
}

/* A kernel over one run of n elements: p[k] points at operand k's first element, s[k] is its
 * element stride. ctx is the caller's. */
typedef void (*run_fn)(char *const *p, const int64_t *s, int64_t n, const void *ctx);

static void runs_walk(const runs *r, pr_tensor *const *ts, run_fn f, const void *ctx)
{
    if (r->numel == 0)
        return;
    char *base[PR_ITER_MAX], *p[PR_ITER_MAX];
    size_t es[PR_ITER_MAX];
    int64_t s[PR_ITER_MAX], off[PR_ITER_MAX] = {0}, idx[PR_MAX_DIMS] = {0};
    int nd = r->nd, nops = r->nops;
    for (int k = 0; k < nops; k++) {
        base[k] = pr_tensor_data(ts[k]);
        es[k] = pr_dtype_size(ts[k]->dtype);
        s[k] = r->st[k][nd - 1];
    }
    int64_t inner = r->shape[nd - 1], outer = r->numel / inner;
    for (int64_t o = 0; o < outer; o++) {
        for (int k = 0; k < nops; k++)
            p[k] = base[k] + off[k] * (int64_t)es[k];
        f(p, s, inner, ctx);
        for (int d = nd - 2; d >= 0; d--) {
            for (int k = 0; k < nops; k++)
                off[k] += r->st[k][d];
            if (++idx[d] < r->shape[d])
                break;
            for (int k = 0; k < nops; k++)
                off[k] -= r->st[k][d] * idx[d];
            idx[d] = 0;
        }
    }
}

/* A new contiguous float32 tensor of `shape` holding f over the inputs ins[0..nin-1]
 * (borrowed, each broadcastable to shape). */
static pr_tensor *eval(const char *op, int ndim, const int64_t *shape, int nin,
                       pr_tensor *const *ins, run_fn f, const void *ctx)
{
    pr_tensor *out = pr_tensor_empty(PR_FLOAT32, ndim, shape);
    if (!out)
        return NULL;
    pr_tensor *ts[PR_ITER_MAX] = {out};
    for (int k = 0; k < nin; k++)
        ts[k + 1] = ins[k];
    runs r;
    if (runs_init(&r, op, ndim, shape, nin + 1, ts) < 0) {
        pr_tensor_release(out);
        return NULL;
    }
    runs_walk(&r, ts, f, ctx);
    return out;
}

/* ---- kernels ---- */

enum {
    K_ADD, K_SUB, K_MUL, K_DIV, K_POW, /* out = x op y */
    K_NEG,                             /* out = -x (the subtrahend's gradient) */
    K_DIV_GB, K_POW_GA, K_POW_GB,      /* out = f(g, x, y) */
    K_WHERE, K_WHERE_GA, K_WHERE_GB
};

typedef struct kctx {
    int op;
    pr_dtype cond; /* where: the condition's dtype */
} kctx;

/* Unit-stride and stride-0 cases spelled out so they vectorise; s[0] (the output) is 1 in
 * every run the walker produces, since the output is contiguous. */
#define BIN_LOOP(expr)                                                                     \
    do {                                                                                   \
        if (s[1] == 1 && s[2] == 1) {                                                      \
            for (int64_t i = 0; i < n; i++) {                                              \
                float x = A[i], y = B[i];                                                  \
                O[i] = (expr);                                                             \
            }                                                                              \
        } else if (s[1] == 1 && s[2] == 0) {                                               \
            float y = B[0];                                                                \
            for (int64_t i = 0; i < n; i++) {                                              \
                float x = A[i];                                                            \
                O[i] = (expr);                                                             \
            }                                                                              \
        } else if (s[1] == 0 && s[2] == 1) {                                               \
            float x = A[0];                                                                \
            for (int64_t i = 0; i < n; i++) {                                              \
                float y = B[i];                                                            \
                O[i] = (expr);                                                             \
            }                                                                              \
        } else {                                                                           \
            for (int64_t i = 0; i < n; i++) {                                              \
                float x = A[i * s[1]], y = B[i * s[2]];                                    \
                O[i * s[0]] = (expr);                                                      \
            }                                                                              \
        }                                                                                  \
    } while (0)

static void k_binary(char *const *p, const int64_t *s, int64_t n, const void *ctx)
{
    float *O = (float *)p[0];
    const float *A = (const float *)p[1], *B = (const float *)p[2];
    switch (((const kctx *)ctx)->op) {
    case K_ADD: BIN_LOOP(x + y); break;
    case K_SUB: BIN_LOOP(x - y); break;
    case K_MUL: BIN_LOOP(x * y); break;
    case K_DIV: BIN_LOOP(x / y); break;
    case K_POW: BIN_LOOP(powf(x, y)); break;
    }
}

static void k_neg(char *const *p, const int64_t *s, int64_t n, const void *ctx)
{
    float *O = (float *)p[0];
    const float *A = (const float *)p[1];
    for (int64_t i = 0; i < n; i++)
        O[i * s[0]] = -A[i * s[1]];
}

/* Backward formulas of div and pow: out = f(g, x, y). Not hot enough to specialise. */
static void k_grad3(char *const *p, const int64_t *s, int64_t n, const void *ctx)
{
    float *O = (float *)p[0];
    const float *G = (const float *)p[1], *X = (const float *)p[2], *Y = (const float *)p[3];
    int op = ((const kctx *)ctx)->op;
    for (int64_t i = 0; i < n; i++) {
        float g = G[i * s[1]], x = X[i * s[2]], y = Y[i * s[3]], r;
        if (op == K_DIV_GB)
            r = -g * x / (y * y);
        else if (op == K_POW_GA) /* d/dx x^0 is 0 everywhere, also at x = 0 (torch agrees) */
            r = y == 0.0f ? 0.0f : g * y * powf(x, y - 1.0f);
        else /* K_POW_GB: x^y log x -> 0 as x -> 0+ when y >= 0; torch masks it the same way */
            r = (x == 0.0f && y >= 0.0f) ? 0.0f : g * powf(x, y) * logf(x);
        O[i * s[0]] = r;
    }
}

static inline int truth(const char *c, pr_dtype dt, int64_t i)
{
    switch (dt) {
    case PR_FLOAT32: return ((const float *)c)[i] != 0.0f;
    case PR_INT64: return ((const int64_t *)c)[i] != 0;
    case PR_UINT8: return ((const uint8_t *)c)[i] != 0;
    }
    return 0;
}

/* where: out = c ? x : y (p = out, c, x, y); its gradients: out = c ? g : 0 / c ? 0 : g
 * (p = out, c, g). */
static void k_where(char *const *p, const int64_t *s, int64_t n, const void *ctx)
{
    const kctx *k = ctx;
    float *O = (float *)p[0];
    const char *C = p[1];
    const float *X = (const float *)p[2];
    if (k->op == K_WHERE) {
        const float *Y = (const float *)p[3];
        for (int64_t i = 0; i < n; i++)
            O[i * s[0]] = truth(C, k->cond, i * s[1]) ? X[i * s[2]] : Y[i * s[3]];
    } else {
        int keep = k->op == K_WHERE_GA;
        for (int64_t i = 0; i < n; i++)
            O[i * s[0]] = (truth(C, k->cond, i * s[1]) == keep) ? X[i * s[2]] : 0.0f;
    }
}

/* ---- forward ---- */

static int need_f32(const char *op, const pr_tensor *t)
{
    if (t->dtype != PR_FLOAT32)
        return pr_error("%s: expected float32 tensors, got %s", op, pr_dtype_name(t->dtype));
    return PR_OK;
}

static pr_tensor *binary_fwd(const char *op, int kop, pr_tensor *const *in)
{
    if (need_f32(op, in[0]) < 0 || need_f32(op, in[1]) < 0)
        return NULL;
    int nd;
    int64_t shape[PR_MAX_DIMS];
    if (pr_broadcast_shape_op(op, in[0], in[1], &nd, shape) < 0)
        return NULL;
    kctx k = {kop, PR_FLOAT32};
    return eval(op, nd, shape, 2, in, k_binary, &k);
}

pr_tensor *pr_fwd_add(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    return binary_fwd("add", K_ADD, in);
}

pr_tensor *pr_fwd_sub(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    return binary_fwd("sub", K_SUB, in);
}

pr_tensor *pr_fwd_mul(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    return binary_fwd("mul", K_MUL, in);
}

pr_tensor *pr_fwd_div(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    return binary_fwd("div", K_DIV, in);
}

pr_tensor *pr_fwd_pow(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    return binary_fwd("pow", K_POW, in);
}

pr_tensor *pr_fwd_where(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    if (need_f32("where", in[1]) < 0 || need_f32("where", in[2]) < 0)
        return NULL;
    pr_tensor ab = {0}; /* a header carrying only the shape of a and b broadcast */
    if (pr_broadcast_shape_op("where", in[1], in[2], &ab.ndim, ab.shape) < 0)
        return NULL;
    int nd;
    int64_t shape[PR_MAX_DIMS];
    if (pr_broadcast_shape_op("where", in[0], &ab, &nd, shape) < 0)
        return NULL;
    kctx k = {K_WHERE, in[0]->dtype};
    return eval("where", nd, shape, 3, in, k_where, &k);
}

/* ---- backward ---- */

/* Turns `full` (owned; the output's shape) into x's gradient in *gin: as is when no
 * broadcasting happened, otherwise summed over the broadcast dims. */
static int reduce_to(pr_tensor *full, const pr_tensor *x, pr_tensor **gin)
{
    if (!full)
        return PR_ENOMEM;
    if (pr_tensor_same_shape(full, x)) {
        *gin = full;
        return PR_OK;
    }
    *gin = pr_sum_to_shape(full, x->ndim, x->shape);
    pr_tensor_release(full);
    return *gin ? PR_OK : PR_EINVAL;
}

/* The upstream gradient as a gradient of x: shared when shapes agree (autograd copies before
 * accumulating into it), summed otherwise. */
static int pass_through(pr_tensor *gout, const pr_tensor *x, pr_tensor **gin)
{
    pr_tensor_retain(gout);
    return reduce_to(gout, x, gin);
}

/* out = f(gout, p, q) at the output's shape; p, q borrowed, broadcast. */
static pr_tensor *grad_eval(const char *op, pr_tensor *gout, int kop, run_fn f, int nin,
                            pr_tensor *p, pr_tensor *q)
{
    pr_tensor *ins[3] = {gout, p, q};
    kctx k = {kop, PR_FLOAT32};
    return eval(op, gout->ndim, gout->shape, nin, ins, f, &k);
}

int pr_bwd_add(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    int rc = PR_OK;
    for (int k = 0; k < 2 && rc == PR_OK; k++)
        if (n->in[k]->requires_grad)
            rc = pass_through(gout, n->in[k], &gin[k]);
    return rc;
}

int pr_bwd_sub(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    int rc = PR_OK;
    if (n->in[0]->requires_grad)
        rc = pass_through(gout, n->in[0], &gin[0]);
    if (rc == PR_OK && n->in[1]->requires_grad) {
        kctx k = {K_NEG, PR_FLOAT32};
        rc = reduce_to(eval("sub", gout->ndim, gout->shape, 1, &gout, k_neg, &k), n->in[1], &gin[1]);
    }
    return rc;
}

int pr_bwd_mul(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    int rc = PR_OK;
    for (int k = 0; k < 2 && rc == PR_OK; k++)
        if (n->in[k]->requires_grad)
            rc = reduce_to(grad_eval("mul", gout, K_MUL, k_binary, 2, n->in[1 - k], NULL),
                           n->in[k], &gin[k]);
    return rc;
}

int pr_bwd_div(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    int rc = PR_OK;
    if (n->in[0]->requires_grad)
        rc = reduce_to(grad_eval("div", gout, K_DIV, k_binary, 2, n->in[1], NULL), n->in[0], &gin[0]);
    if (rc == PR_OK && n->in[1]->requires_grad)
        rc = reduce_to(grad_eval("div", gout, K_DIV_GB, k_grad3, 3, n->in[0], n->in[1]),
                       n->in[1], &gin[1]);
    return rc;
}

int pr_bwd_pow(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    int rc = PR_OK;
    if (n->in[0]->requires_grad)
        rc = reduce_to(grad_eval("pow", gout, K_POW_GA, k_grad3, 3, n->in[0], n->in[1]),
                       n->in[0], &gin[0]);
    /* Only when asked: the exponent is usually a constant and log(x) costs. */
    if (rc == PR_OK && n->in[1]->requires_grad)
        rc = reduce_to(grad_eval("pow", gout, K_POW_GB, k_grad3, 3, n->in[0], n->in[1]),
                       n->in[1], &gin[1]);
    return rc;
}

int pr_bwd_where(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    int rc = PR_OK;
    for (int k = 1; k < 3 && rc == PR_OK; k++) {
        if (!n->in[k]->requires_grad)
            continue;
        pr_tensor *ins[2] = {n->in[0], gout};
        kctx c = {k == 1 ? K_WHERE_GA : K_WHERE_GB, n->in[0]->dtype};
        rc = reduce_to(eval("where", gout->ndim, gout->shape, 2, ins, k_where, &c), n->in[k], &gin[k]);
    }
    return rc;
}

/* ---- public wrappers ---- */

static pr_tensor *call2(pr_op_id id, pr_tensor *a, pr_tensor *b)
{
    pr_tensor *in[2] = {a, b};
    return pr_op_call(id, in, 2, NULL);
}

pr_tensor *pr_add(pr_tensor *a, pr_tensor *b) { return call2(PR_OP_add, a, b); }
pr_tensor *pr_sub(pr_tensor *a, pr_tensor *b) { return call2(PR_OP_sub, a, b); }
pr_tensor *pr_mul(pr_tensor *a, pr_tensor *b) { return call2(PR_OP_mul, a, b); }
pr_tensor *pr_div(pr_tensor *a, pr_tensor *b) { return call2(PR_OP_div, a, b); }
pr_tensor *pr_pow(pr_tensor *a, pr_tensor *b) { return call2(PR_OP_pow, a, b); }

pr_tensor *pr_where(pr_tensor *cond, pr_tensor *a, pr_tensor *b)
{
    pr_tensor *in[3] = {cond, a, b};
    return pr_op_call(PR_OP_where, in, 3, NULL);
}
