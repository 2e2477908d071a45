/* test_gradcheck.c: a finite-difference check of every ops.def op's backward (gradcheck.h).
 * The table below holds the rows for the elementwise, matmul, reduction and shape ops; the nn
 * ops' rows come from gradcheck_nn.inc. The test fails for any op without a row, for any row
 * whose gradient disagrees, and if the checker itself lets a wrong gradient through. */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "gradcheck.h"

/* ---- unary ---- */

static int one_input(gc_case *c, pr_tensor *x)
{
    c->nin = 1;
    c->in[0] = x;
    return gc_ok(c);
}

static int b_neg(gc_case *c) { return one_input(c, gc_randn(GC_DIMS(3, 4))); }
static int b_abs(gc_case *c) { return one_input(c, gc_away(0.0, 0.1, GC_DIMS(3, 4))); }
static int b_sqrt(gc_case *c) { return one_input(c, gc_uniform(0.5, 2.0, GC_DIMS(3, 4))); }
static int b_exp(gc_case *c) { return one_input(c, gc_randn(GC_DIMS(3, 4))); }
static int b_log(gc_case *c) { return one_input(c, gc_uniform(0.5, 2.0, GC_DIMS(3, 4))); }
static int b_tanh(gc_case *c) { return one_input(c, gc_randn(GC_DIMS(3, 4))); }
static int b_sigmoid(gc_case *c) { return one_input(c, gc_randn(GC_DIMS(2, 3, 2))); }
static int b_relu(gc_case *c) { return one_input(c, gc_away(0.0, 0.1, GC_DIMS(3, 4))); }

static int b_leaky_relu(gc_case *c)
{
    c->args.f[0] = 0.1;
    return one_input(c, gc_away(0.0, 0.1, GC_DIMS(3, 4)));
}

/* Values in [-1.5, 1.5] kept 0.05 away from the bounds +-0.5, so some are clamped. */
static int clamp_input(gc_case *c, double lo, double hi)
{
    pr_tensor *x = gc_uniform(-1.5, 1.5, GC_DIMS(4, 5));
    if (x) {
        float *p = pr_tensor_f32(x);
        for (int64_t i = 0; i < pr_tensor_numel(x); i++)
            if (fabs(p[i] - lo) < 0.05 || fabs(p[i] - hi) < 0.05)
                p[i] += 0.1f;
    }
    c->args.f[0] = lo;
    c->args.f[1] = hi;
    return one_input(c, x);
}

static int b_clamp(gc_case *c) { return clamp_input(c, -0.5, 0.5); }
static int b_clamp_lo(gc_case *c) { return clamp_input(c, -0.5, HUGE_VAL); }

/* A leaf that is a transposed (non-contiguous) view. */
static pr_tensor *transposed(pr_tensor *base)
{
    if (!base)
        return NULL;
    pr_tensor *t = pr_tensor_transpose(base, 0, 1);
    pr_tensor_release(base);
    return gc_grad(t);
}

static int b_exp_view(gc_case *c) { return one_input(c, transposed(gc_randn(GC_DIMS(4, 3)))); }

/* ---- binary ---- */

static int two_inputs(gc_case *c, pr_tensor *a, pr_tensor *b)
{
    c->nin = 2;
    c->in[0] = a;
    c->in[1] = b;
    return gc_ok(c);
}

static int b_add(gc_case *c) { return two_inputs(c, gc_randn(GC_DIMS(3, 4)), gc_randn(GC_DIMS(3, 4))); }
static int b_add_row(gc_case *c) { return two_inputs(c, gc_randn(GC_DIMS(3, 4)), gc_randn(GC_DIMS(4))); }
static int b_add_outer(gc_case *c) { return two_inputs(c, gc_randn(GC_DIMS(3, 1)), gc_randn(GC_DIMS(1, 4))); }

static int b_add_scalar(gc_case *c)
{
    return two_inputs(c, gc_randn(GC_DIMS(3, 4)), gc_grad(pr_tensor_scalar(0.7)));
}

static int b_sub(gc_case *c) { return two_inputs(c, gc_randn(GC_DIMS(2, 3, 4)), gc_randn(GC_DIMS(3, 1))); }
static int b_mul(gc_case *c) { return two_inputs(c, gc_randn(GC_DIMS(3, 4)), gc_randn(GC_DIMS(3, 4))); }
static int b_mul_bc(gc_case *c) { return two_inputs(c, gc_randn(GC_DIMS(2, 3, 4)), gc_randn(GC_DIMS(4))); }

static int b_mul_view(gc_case *c)
{
    return two_inputs(c, transposed(gc_randn(GC_DIMS(4, 3))), gc_randn(GC_DIMS(3, 1)));
}

static int b_div(gc_case *c)
{
    return two_inputs(c, gc_randn(GC_DIMS(3, 4)), gc_uniform(0.5, 2.0, GC_DIMS(3, 4)));
}

static int b_div_bc(gc_case *c)
{
    return two_inputs(c, gc_randn(GC_DIMS(3, 4)), gc_uniform(0.5, 2.0, GC_DIMS(4)));
}

static int b_pow(gc_case *c)
{
    return two_inputs(c, gc_uniform(0.5, 2.0, GC_DIMS(3, 4)), gc_uniform(-1.5, 2.5, GC_DIMS(3, 4)));
}

static int b_pow_const(gc_case *c) /* the exponent is a constant: only the base is checked */
{
    return two_inputs(c, gc_uniform(0.5, 2.0, GC_DIMS(3, 4)), pr_tensor_scalar(2.5));
}

static int b_pow_bc(gc_case *c)
{
    return two_inputs(c, gc_uniform(0.5, 2.0, GC_DIMS(3, 4)), gc_uniform(0.5, 3.0, GC_DIMS(4)));
}

static pr_tensor *coin_flips(pr_dtype dt, int ndim, const int64_t *shape)
{
    pr_tensor *t = pr_tensor_empty(dt, ndim, shape);
    if (t)
        for (int64_t i = 0; i < pr_tensor_numel(t); i++)
            pr_tensor_set_flat(t, i, (double)pr_rng_below(2) * (dt == PR_FLOAT32 ? 2.5 : 3.0));
    return t;
}

static int three_inputs(gc_case *c, pr_tensor *a, pr_tensor *b, pr_tensor *d)
{
    c->nin = 3;
    c->in[0] = a;
    c->in[1] = b;
    c->in[2] = d;
    return gc_ok(c);
}

static int b_where(gc_case *c)
{
    return three_inputs(c, coin_flips(PR_UINT8, GC_DIMS(3, 4)), gc_randn(GC_DIMS(3, 4)),
                        gc_randn(GC_DIMS(4)));
}

static int b_where_bc(gc_case *c)
{
    return three_inputs(c, coin_flips(PR_FLOAT32, GC_DIMS(3, 1)), gc_randn(GC_DIMS(1, 4)),
                        gc_randn(GC_DIMS(3, 4)));
}

static int b_where_i64(gc_case *c)
{
    return three_inputs(c, coin_flips(PR_INT64, GC_DIMS(2, 3)), gc_randn(GC_DIMS(2, 3)),
                        gc_const(gc_randn(GC_DIMS(2, 3))));
}

/* ---- matmul, linear ---- */

static int b_mm(gc_case *c) { return two_inputs(c, gc_randn(GC_DIMS(3, 4)), gc_randn(GC_DIMS(4, 5))); }
static int b_mm_ones(gc_case *c) { return two_inputs(c, gc_randn(GC_DIMS(1, 4)), gc_randn(GC_DIMS(4, 1))); }

static int b_mm_t(gc_case *c)
{
    return two_inputs(c, transposed(gc_randn(GC_DIMS(4, 3))), transposed(gc_randn(GC_DIMS(5, 4))));
}

static int b_bmm(gc_case *c) { return two_inputs(c, gc_randn(GC_DIMS(2, 3, 4)), gc_randn(GC_DIMS(2, 4, 5))); }
static int b_bmm_shared(gc_case *c) { return two_inputs(c, gc_randn(GC_DIMS(2, 3, 4)), gc_randn(GC_DIMS(4, 5))); }
static int b_bmm_left(gc_case *c) { return two_inputs(c, gc_randn(GC_DIMS(3, 4)), gc_randn(GC_DIMS(2, 4, 5))); }
static int b_bmm_one(gc_case *c) { return two_inputs(c, gc_randn(GC_DIMS(1, 3, 4)), gc_randn(GC_DIMS(2, 4, 2))); }
static int b_bmm_4d(gc_case *c) { return two_inputs(c, gc_randn(GC_DIMS(2, 1, 3, 4)), gc_randn(GC_DIMS(3, 4, 2))); }

static int b_mv(gc_case *c) { return two_inputs(c, gc_randn(GC_DIMS(2, 3, 4)), gc_randn(GC_DIMS(4))); }
static int b_vm(gc_case *c) { return two_inputs(c, gc_randn(GC_DIMS(4)), gc_randn(GC_DIMS(2, 4, 3))); }
static int b_dot(gc_case *c) { return two_inputs(c, gc_randn(GC_DIMS(5)), gc_randn(GC_DIMS(5))); }

static int b_linear(gc_case *c)
{
    return three_inputs(c, gc_randn(GC_DIMS(4, 3)), gc_randn(GC_DIMS(5, 3)), gc_randn(GC_DIMS(5)));
}

static int b_linear_nobias(gc_case *c) { return two_inputs(c, gc_randn(GC_DIMS(4, 3)), gc_randn(GC_DIMS(5, 3))); }

static int b_linear_3d(gc_case *c)
{
    return three_inputs(c, gc_randn(GC_DIMS(2, 3, 4)), gc_randn(GC_DIMS(5, 4)), gc_randn(GC_DIMS(5)));
}

static int b_linear_t(gc_case *c) /* x and W both transposed views */
{
    return three_inputs(c, transposed(gc_randn(GC_DIMS(3, 4))), transposed(gc_randn(GC_DIMS(3, 5))),
                        gc_randn(GC_DIMS(5)));
}

/* ---- reductions ---- */

static int reduce_case(gc_case *c, pr_tensor *x, int dim, int keepdim)
{
    c->args.i[0] = dim;
    c->args.i[1] = keepdim;
    c->args.ni = 2;
    return one_input(c, x);
}

static int b_sum_all(gc_case *c) { return reduce_case(c, gc_randn(GC_DIMS(2, 3, 4)), PR_ALL, 0); }
static int b_sum_1k(gc_case *c) { return reduce_case(c, gc_randn(GC_DIMS(2, 3, 4)), 1, 1); }
static int b_sum_last(gc_case *c) { return reduce_case(c, gc_randn(GC_DIMS(2, 3, 4)), -1, 0); }
static int b_mean_0(gc_case *c) { return reduce_case(c, gc_randn(GC_DIMS(3, 4)), 0, 0); }
static int b_mean_allk(gc_case *c) { return reduce_case(c, gc_randn(GC_DIMS(3, 4)), PR_ALL, 1); }
static int b_max_1(gc_case *c) { return reduce_case(c, gc_distinct(0.1, GC_DIMS(2, 3, 4)), 1, 0); }
static int b_max_all(gc_case *c) { return reduce_case(c, gc_distinct(0.1, GC_DIMS(3, 4)), PR_ALL, 0); }
static int b_min_0k(gc_case *c) { return reduce_case(c, gc_distinct(0.1, GC_DIMS(3, 4)), 0, 1); }
static int b_min_all(gc_case *c) { return reduce_case(c, gc_distinct(0.1, GC_DIMS(2, 3, 2)), PR_ALL, 0); }

static int b_max_view(gc_case *c)
{
    return reduce_case(c, transposed(gc_distinct(0.1, GC_DIMS(4, 3))), -1, 0);
}

/* ---- shape ops (ops/shape.c) ---- */

static int b_reshape(gc_case *c)
{
    c->args.i[0] = 3;
    c->args.i[1] = 4;
    c->args.ni = 2;
    return one_input(c, gc_randn(GC_DIMS(2, 6)));
}

static int b_reshape_copy(gc_case *c) /* a transposed input cannot be viewed: the copy path */
{
    c->args.i[0] = -1;
    c->args.ni = 1;
    return one_input(c, transposed(gc_randn(GC_DIMS(4, 3))));
}

static int b_transpose(gc_case *c)
{
    c->args.i[0] = 0;
    c->args.i[1] = 2;
    return one_input(c, gc_randn(GC_DIMS(2, 3, 4)));
}

static int b_permute(gc_case *c)
{
    c->args.i[0] = 2;
    c->args.i[1] = 0;
    c->args.i[2] = 1;
    c->args.ni = 3;
    return one_input(c, gc_randn(GC_DIMS(2, 3, 4)));
}

static int b_narrow(gc_case *c)
{
    c->args.i[0] = 1;
    c->args.i[1] = 1;
    c->args.i[2] = 3;
    return one_input(c, gc_randn(GC_DIMS(4, 5)));
}

static int b_index_select(gc_case *c) /* index 2 twice: its gradient must add up */
{
    c->args.i[0] = 0;
    return two_inputs(c, gc_randn(GC_DIMS(4, 3)), gc_int64(GC_DIMS(3), (const int64_t[]){2, 0, 2}));
}

static int b_index_select_1(gc_case *c)
{
    c->args.i[0] = -1;
    return two_inputs(c, gc_randn(GC_DIMS(2, 4)), gc_int64(GC_DIMS(2), (const int64_t[]){3, 1}));
}

static int b_cat(gc_case *c)
{
    c->args.i[0] = 0;
    return three_inputs(c, gc_randn(GC_DIMS(2, 3)), gc_randn(GC_DIMS(1, 3)), gc_randn(GC_DIMS(3, 3)));
}

static int b_cat_1(gc_case *c) /* along dim 1 with one constant piece */
{
    c->args.i[0] = 1;
    return three_inputs(c, gc_randn(GC_DIMS(2, 2)), gc_const(gc_randn(GC_DIMS(2, 1))),
                        gc_randn(GC_DIMS(2, 3)));
}

/* ---- the nn ops' builders (H5's file; see gradcheck.h for its form) ---- */
#define GC_NN_BUILDERS
#include "gradcheck_nn.inc"
#undef GC_NN_BUILDERS

static const gc_row rows[] = {
    GC_ROW(neg, "[3,4]", b_neg),
    GC_ROW(abs, "[3,4] away from 0", b_abs),
    GC_ROW(sqrt, "[3,4] in [0.5,2)", b_sqrt),
    GC_ROW(exp, "[3,4]", b_exp),
    GC_ROW(exp, "transposed view", b_exp_view),
    GC_ROW(log, "[3,4] in [0.5,2)", b_log),
    GC_ROW(tanh, "[3,4]", b_tanh),
    GC_ROW(sigmoid, "[2,3,2]", b_sigmoid),
    GC_ROW(relu, "[3,4] away from 0", b_relu),
    GC_ROW(leaky_relu, "slope 0.1", b_leaky_relu),
    GC_ROW(clamp, "[-0.5,0.5]", b_clamp),
    GC_ROW(clamp, "[-0.5,inf]", b_clamp_lo),
    GC_ROW(add, "same shape", b_add),
    GC_ROW(add, "[3,4]+[4]", b_add_row),
    GC_ROW(add, "[3,1]+[1,4]", b_add_outer),
    GC_ROW(add, "[3,4]+0-d", b_add_scalar),
    GC_ROW(sub, "[2,3,4]-[3,1]", b_sub),
    GC_ROW(mul, "same shape", b_mul),
    GC_ROW(mul, "[2,3,4]*[4]", b_mul_bc),
    GC_ROW(mul, "view*[3,1]", b_mul_view),
    GC_ROW(div, "same shape", b_div),
    GC_ROW(div, "[3,4]/[4]", b_div_bc),
    GC_ROW(pow, "both differentiated", b_pow),
    GC_ROW(pow, "constant exponent", b_pow_const),
    GC_ROW(pow, "[3,4]^[4]", b_pow_bc),
    GC_ROW(where, "uint8 cond", b_where),
    GC_ROW(where, "float cond [3,1]", b_where_bc),
    GC_ROW(where, "int64 cond, b const", b_where_i64),
    GC_ROW(matmul, "[3,4]@[4,5]", b_mm),
    GC_ROW(matmul, "[1,4]@[4,1]", b_mm_ones),
    GC_ROW(matmul, "transposed views", b_mm_t),
    GC_ROW(matmul, "[2,3,4]@[2,4,5]", b_bmm),
    GC_ROW(matmul, "[2,3,4]@[4,5]", b_bmm_shared),
    GC_ROW(matmul, "[3,4]@[2,4,5]", b_bmm_left),
    GC_ROW(matmul, "[1,3,4]@[2,4,2]", b_bmm_one),
    GC_ROW(matmul, "[2,1,3,4]@[3,4,2]", b_bmm_4d),
    GC_ROW(matmul, "[2,3,4]@[4]", b_mv),
    GC_ROW(matmul, "[4]@[2,4,3]", b_vm),
    GC_ROW(matmul, "[5]@[5]", b_dot),
    GC_ROW(linear, "x W b", b_linear),
    GC_ROW(linear, "no bias", b_linear_nobias),
    GC_ROW(linear, "3-D x", b_linear_3d),
    GC_ROW(linear, "transposed x and W", b_linear_t),
    GC_ROW(sum, "all", b_sum_all),
    GC_ROW(sum, "dim 1 keepdim", b_sum_1k),
    GC_ROW(sum, "dim -1", b_sum_last),
    GC_ROW(mean, "dim 0", b_mean_0),
    GC_ROW(mean, "all keepdim", b_mean_allk),
    GC_ROW(max, "dim 1", b_max_1),
    GC_ROW(max, "all", b_max_all),
    GC_ROW(max, "dim -1 of a view", b_max_view),
    GC_ROW(min, "dim 0 keepdim", b_min_0k),
    GC_ROW(min, "all", b_min_all),
    GC_ROW(reshape, "[2,6]->[3,4]", b_reshape),
    GC_ROW(reshape, "view->[-1]", b_reshape_copy),
    GC_ROW(transpose, "0<->2", b_transpose),
    GC_ROW(permute, "(2,0,1)", b_permute),
    GC_ROW(narrow, "dim 1 [1,4)", b_narrow),
    GC_ROW(index_select, "dim 0 repeated", b_index_select),
    GC_ROW(index_select, "dim -1", b_index_select_1),
    GC_ROW(cat, "dim 0", b_cat),
    GC_ROW(cat, "dim 1, one const", b_cat_1),
#define GC_NN_ROWS
#include "gradcheck_nn.inc"
#undef GC_NN_ROWS
};

#define NROWS ((int)(sizeof rows / sizeof rows[0]))

/* Every op in ops.def has at least one row. */
static void test_every_op_has_a_row(void)
{
    for (int op = 0; op < PR_OP_COUNT; op++) {
        int n = 0;
        for (int r = 0; r < NROWS; r++)
            n += rows[r].op == (pr_op_id)op;
        CHECK_MSG(n > 0, "no gradcheck row for op %s", pr_ops[op].name);
    }
}

static void test_rows(void)
{
    for (int r = 0; r < NROWS; r++) {
        gc_result res = gc_check(&rows[r], 1.0, stderr);
        printf("  %-13s %-22s %-6s %4lld elements, max |err| %.2e\n", pr_ops[rows[r].op].name,
               rows[r].label, res.ok ? "ok" : "FAILED", (long long)res.checked, res.max_err);
        CHECK_MSG(res.ok, "gradcheck %s (%s)", pr_ops[rows[r].op].name, rows[r].label);
    }
}

/* The checker must catch a gradient that is 5% off, and one that is missing. */
static void test_checker_catches_errors(void)
{
    gc_row mm = GC_ROW(matmul, "sabotaged", b_mm), sg = GC_ROW(sigmoid, "sabotaged", b_sigmoid);
    gc_result res = gc_check(&mm, 1.05, NULL);
    CHECK(!res.ok && res.bad > 0);
    res = gc_check(&sg, 0.95, NULL);
    CHECK(!res.ok && res.bad > 0);
    res = gc_check(&mm, 1.0, NULL);
    CHECK(res.ok && res.checked == 12 + 20);
}

int main(void)
{
    RUN(test_every_op_has_a_row);
    RUN(test_rows);
    RUN(test_checker_catches_errors);
    return CHECK_DONE();
}
