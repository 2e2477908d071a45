/* gradcheck.h: the finite-difference gradient checker behind tests/c/test_gradcheck.c.
 *
 * For one op it builds the inputs, runs pr_op_call with the row's options, backpropagates a
 * random upstream gradient r (i.e. differentiates L = sum(out * r)), and compares every element
 * of every checked input's .grad with the central difference (L(x+h) - L(x-h)) / (2h). L is
 * accumulated in double from the float32 outputs; h is the float32 step actually taken. The
 * random generator is reseeded before every forward, so ops that draw (dropout) see the same
 * draws in every evaluation.
 *
 * ---- writing a row (this is the whole contract for gradcheck_nn.inc) ----
 *
 * A row is   GC_ROW(op_name, "label", builder)   where op_name is the ops.def name (no
 * PR_OP_ prefix) and builder is
 *
 *     static int builder(gc_case *c)
 *
 * which fills c and returns 0 (or -1 when it could not build: the row then fails). The builder:
 *   - puts the op's inputs in c->in[0..c->nin-1]. The case OWNS them (the checker releases
 *     them). Float32 inputs with requires_grad set are checked; give integer inputs (targets,
 *     indices) and inputs you do not want checked requires_grad = 0 (gc_const()).
 *   - sets the options in c->args (i[], ni, f[]). Tensors in c->args.aux[0..1] (running stats)
 *     are OWNED by the case too and released by the checker.
 *   - may set c->eps (step), c->atol, c->rtol; 0 keeps the defaults GC_EPS, GC_ATOL, GC_RTOL.
 *     An element passes when |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|).
 *   - must keep inputs away from kinks by more than eps (relu/abs at 0, max/min/max_pool ties):
 *     use gc_away() and gc_distinct().
 * The builders draw from the runtime's generator, seeded before each builder runs, so a row's
 * data is the same on every run and machine.
 *
 * gradcheck_nn.inc is included twice by test_gradcheck.c: once with GC_NN_BUILDERS defined
 * (at file scope, after this header: put the builder functions there) and once with GC_NN_ROWS
 * defined (inside the row table's initialiser: put the comma-terminated GC_ROW(...), lines
 * there). So its shape is:
 *
 *     #ifdef GC_NN_BUILDERS
 *     static int build_softmax_dim1(gc_case *c)
 *     {
 *         c->nin = 1;
 *         c->in[0] = gc_randn(GC_DIMS(3, 5));
 *         c->args.i[0] = 1;
 *         return gc_ok(c);
 *     }
 *     #endif
 *     #ifdef GC_NN_ROWS
 *     GC_ROW(softmax, "dim 1", build_softmax_dim1),
 *     #endif
 *
 * Every ops.def op must have at least one row, or the test fails ("no gradcheck row for op").
 */
#ifndef PR_GRADCHECK_H
#define PR_GRADCHECK_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ops.h"
#include "rng.h"

#define GC_MAX_IN 8
#define GC_EPS 1e-2
#define GC_ATOL 2e-3
#define GC_RTOL 1e-2
#define GC_SEED_BUILD 0x5eedULL
#define GC_SEED_FWD 0xf0f0ULL
#define GC_SEED_R 0x1234ULL

typedef struct gc_case {
    int nin;
    pr_tensor *in[GC_MAX_IN]; /* owned by the case */
    pr_opargs args;           /* args.aux[] owned by the case */
    double eps, atol, rtol;   /* 0 = default */
} gc_case;

typedef int (*gc_build_fn)(gc_case *c);

typedef struct gc_row {
    pr_op_id op;
    const char *label;
    gc_build_fn build;
} gc_row;

#define GC_ROW(name, label, build) { PR_OP_##name, label, build }

/* GC_DIMS(2, 3) expands to the (ndim, shape) argument pair: 2, (const int64_t[]){2, 3}. */
#define GC_DIMS(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), \
                     (const int64_t[]){__VA_ARGS__}

/* ---- builder helpers: each returns a NEW float32 tensor with requires_grad = 1 (NULL on
 * failure, which gc_ok() turns into a failing row) ---- */

static pr_tensor *gc_grad(pr_tensor *t)
{
    if (t)
        t->requires_grad = 1;
    return t;
}

/* Marks t (owned by the caller, passed through) as not to be checked. */
static pr_tensor *gc_const(pr_tensor *t)
{
    if (t)
        t->requires_grad = 0;
    return t;
}

/* N(0,1) draws. */
static pr_tensor *gc_randn(int ndim, const int64_t *shape)
{
    return gc_grad(pr_tensor_randn(ndim, shape));
}

/* U[lo,hi) draws: for log, sqrt, div denominators, pow bases. */
static pr_tensor *gc_uniform(double lo, double hi, int ndim, const int64_t *shape)
{
    pr_tensor *t = pr_tensor_empty(PR_FLOAT32, ndim, shape);
    if (!t)
        return NULL;
    float *p = pr_tensor_f32(t);
    for (int64_t i = 0; i < pr_tensor_numel(t); i++)
        p[i] = (float)(lo + (hi - lo) * pr_rng_uniform());
    return gc_grad(t);
}

/* N(0,1) draws kept at least `gap` away from `kink` (relu/abs at 0, clamp at its bounds). */
static pr_tensor *gc_away(double kink, double gap, int ndim, const int64_t *shape)
{
    pr_tensor *t = pr_tensor_empty(PR_FLOAT32, ndim, shape);
    if (!t)
        return NULL;
    float *p = pr_tensor_f32(t);
    for (int64_t i = 0; i < pr_tensor_numel(t); i++) {
        double v = pr_rng_normal();
        p[i] = (float)(kink + (v < 0 ? v - gap : v + gap));
    }
    return gc_grad(t);
}

/* A random permutation of spacing * (k - numel/2): pairwise at least `spacing` apart, so
 * max/min/max_pool keep their winners under a step smaller than spacing / 2. */
static pr_tensor *gc_distinct(double spacing, int ndim, const int64_t *shape)
{
    pr_tensor *t = pr_tensor_empty(PR_FLOAT32, ndim, shape);
    if (!t)
        return NULL;
    float *p = pr_tensor_f32(t);
    int64_t n = pr_tensor_numel(t);
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)(spacing * (double)(i - n / 2));
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = pr_rng_below(i + 1);
        float x = p[i];
        p[i] = p[j];
        p[j] = x;
    }
    return gc_grad(t);
}

/* An int64 tensor of the given values (indices, targets); requires_grad = 0. */
static pr_tensor *gc_int64(int ndim, const int64_t *shape, const int64_t *values)
{
    pr_tensor *t = pr_tensor_empty(PR_INT64, ndim, shape);
    if (!t)
        return NULL;
    memcpy(pr_tensor_i64(t), values, (size_t)pr_tensor_numel(t) * sizeof *values);
    return t;
}

/* 0 when every c->in[0..nin-1] was built, -1 otherwise: `return gc_ok(c);` ends a builder. */
static int gc_ok(const gc_case *c)
{
    if (c->nin < 1 || c->nin > GC_MAX_IN)
        return -1;
    for (int k = 0; k < c->nin; k++)
        if (!c->in[k])
            return -1;
    return 0;
}

/* ---- the checker ---- */

static void gc_case_free(gc_case *c)
{
    for (int k = 0; k < GC_MAX_IN; k++)
        pr_tensor_release(c->in[k]);
    pr_tensor_release(c->args.aux[0]);
    pr_tensor_release(c->args.aux[1]);
    memset(c, 0, sizeof *c);
}

/* L = sum(op(inputs) * r) in double, without recording; NAN when the forward fails. */
static double gc_loss(const gc_row *row, gc_case *c, const pr_tensor *r)
{
    int prev = pr_set_grad_enabled(0);
    pr_rng_seed(GC_SEED_FWD);
    pr_tensor *o = pr_op_call(row->op, c->in, c->nin, &c->args);
    pr_set_grad_enabled(prev);
    if (!o)
        return NAN;
    double s = 0.0;
    int64_t n = pr_tensor_numel(o);
    for (int64_t i = 0; i < n; i++)
        s += pr_tensor_get_flat(o, i) * pr_tensor_get_flat(r, i);
    pr_tensor_release(o);
    return s;
}

typedef struct gc_result {
    int ok;            /* 1 when everything matched */
    int64_t checked;   /* elements compared */
    int64_t bad;       /* elements out of tolerance */
    double max_err;    /* largest |analytic - numeric| */
} gc_result;

/* Runs one row. `sabotage` scales the analytic gradient before comparing (1.0 in real use;
 * the self-test uses 1.05 to prove a wrong gradient is caught). Prints the first mismatches
 * to `log` (may be NULL). */
static gc_result gc_check(const gc_row *row, double sabotage, FILE *log)
{
    gc_result res = {0, 0, 0, 0.0};
    const char *name = pr_ops[row->op].name;
    gc_case c;
    memset(&c, 0, sizeof c);
    pr_rng_seed(GC_SEED_BUILD);
    if (row->build(&c) != 0) {
        if (log)
            fprintf(log, "gradcheck %s (%s): the builder failed: %s\n", name, row->label, pr_last_error());
        gc_case_free(&c);
        return res;
    }
    double eps = c.eps > 0 ? c.eps : GC_EPS, atol = c.atol > 0 ? c.atol : GC_ATOL;
    double rtol = c.rtol > 0 ? c.rtol : GC_RTOL;
    int prev = pr_set_grad_enabled(1);
    pr_rng_seed(GC_SEED_FWD);
    pr_tensor *out = pr_op_call(row->op, c.in, c.nin, &c.args);
    pr_tensor *r = NULL;
    int rc = -1;
    if (!out) {
        if (log)
            fprintf(log, "gradcheck %s (%s): forward failed: %s\n", name, row->label, pr_last_error());
    } else if (out->dtype != PR_FLOAT32 || !out->requires_grad) {
        if (log)
            fprintf(log, "gradcheck %s (%s): output is not a recorded float32 tensor\n", name, row->label);
    } else {
        pr_rng_seed(GC_SEED_R);
        r = pr_tensor_randn(out->ndim, out->shape);
        rc = r ? pr_backward(out, r) : -1;
        if (rc != PR_OK && log)
            fprintf(log, "gradcheck %s (%s): backward failed: %s\n", name, row->label, pr_last_error());
    }
    pr_set_grad_enabled(prev);
    pr_tensor_release(out);
    int complete = rc == PR_OK;
    for (int k = 0; k < c.nin && complete; k++) {
        pr_tensor *x = c.in[k];
        if (!x->requires_grad || x->dtype != PR_FLOAT32)
            continue;
        if (!x->grad || !pr_tensor_same_shape(x->grad, x)) {
            if (log)
                fprintf(log, "gradcheck %s (%s): input %d got %s gradient\n", name, row->label, k,
                        x->grad ? "a wrongly shaped" : "no");
            complete = 0;
            break;
        }
        int64_t n = pr_tensor_numel(x);
        for (int64_t j = 0; j < n; j++) {
            double orig = pr_tensor_get_flat(x, j);
            float up = (float)(orig + eps), down = (float)(orig - eps);
            pr_tensor_set_flat(x, j, up);
            double lp = gc_loss(row, &c, r);
            pr_tensor_set_flat(x, j, down);
            double lm = gc_loss(row, &c, r);
            pr_tensor_set_flat(x, j, orig);
            double num = (lp - lm) / ((double)up - (double)down);
            double ana = sabotage * pr_tensor_get_flat(x->grad, j);
            double err = fabs(ana - num);
            double tol = atol + rtol * fmax(fabs(ana), fabs(num));
            res.checked++;
            if (err > res.max_err || isnan(err))
                res.max_err = isnan(err) ? INFINITY : err;
            if (!(err <= tol)) {
                if (log && res.bad < 5)
                    fprintf(log, "gradcheck %s (%s): input %d element %lld: analytic %.6g, "
                            "numeric %.6g\n", name, row->label, k, (long long)j, ana, num);
                res.bad++;
            }
        }
    }
    /* Integer and unchecked inputs must not have been given a gradient. */
    for (int k = 0; k < c.nin && complete; k++)
        if (!c.in[k]->requires_grad && c.in[k]->grad) {
            if (log)
                fprintf(log, "gradcheck %s (%s): input %d does not require grad but got one\n",
                        name, row->label, k);
            complete = 0;
        }
    pr_tensor_release(r);
    gc_case_free(&c);
    res.ok = complete && res.bad == 0 && res.checked > 0;
    if (complete && res.checked == 0 && log)
        fprintf(log, "gradcheck %s (%s): no input was checked\n", name, row->label);
    return res;
}

#endif
