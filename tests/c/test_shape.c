/* test_shape.c: the shape ops (ops/shape.c): forward values, storage sharing of views, and
 * backward results worked out by hand (the finite-difference checks live in test_gradcheck.c). */
#include <string.h>

#include "check.h"
#include "ops.h"

static pr_tensor *iota(int ndim, const int64_t *shape, double scale)
{
    pr_tensor *t = pr_tensor_empty(PR_FLOAT32, ndim, shape);
    for (int64_t i = 0; i < pr_tensor_numel(t); i++)
        pr_tensor_f32(t)[i] = (float)(i * scale);
    return t;
}

static pr_tensor *leaf(int ndim, const int64_t *shape)
{
    pr_tensor *t = iota(ndim, shape, 1.0);
    t->requires_grad = 1;
    return t;
}

/* x[flat] as float, via strides */
#define AT(t, i) pr_tensor_get_flat((t), (i))

static void test_reshape(void)
{
    pr_tensor *x = leaf(2, (int64_t[]){ 2, 3 });
    pr_tensor *y = pr_reshape(x, 2, (int64_t[]){ 3, -1 });
    CHECK(y && y->shape[0] == 3 && y->shape[1] == 2 && y->storage == x->storage);
    CHECK(y->requires_grad && y->grad_fn && !x->grad_fn);
    pr_tensor *g = iota(2, (int64_t[]){ 3, 2 }, 10.0);
    CHECK(pr_backward(y, g) == PR_OK);
    CHECK(x->grad && x->grad->ndim == 2 && x->grad->shape[0] == 2 && x->grad->shape[1] == 3);
    for (int i = 0; i < 6; i++)
        CHECK(AT(x->grad, i) == i * 10.0);
    CHECK(pr_reshape(x, 1, (int64_t[]){ 5 }) == NULL && strstr(pr_last_error(), "[2,3]") &&
          strstr(pr_last_error(), "[5]"));

    /* a transposed input cannot be viewed: reshape copies and still has a gradient */
    pr_tensor *xt = pr_transpose(x, 0, 1);
    pr_tensor *z = pr_reshape(xt, 1, (int64_t[]){ 6 });
    CHECK(z && z->storage != x->storage);
    float want[6] = { 0, 3, 1, 4, 2, 5 };
    for (int i = 0; i < 6; i++)
        CHECK(AT(z, i) == want[i]);
    pr_tensor_release(g);
    g = iota(1, (int64_t[]){ 6 }, 1.0);
    pr_tensor_release(x->grad);
    x->grad = NULL;
    CHECK(pr_backward(z, g) == PR_OK);
    /* dz/dx[i][j] lands where x[i][j] went: z[k] = x[k%2][k/2] */
    for (int k = 0; k < 6; k++)
        CHECK(AT(x->grad, (k % 2) * 3 + k / 2) == k);
    pr_tensor *all[] = { x, y, g, xt, z };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        pr_tensor_release(all[i]);
}

static void test_transpose_permute(void)
{
    pr_tensor *x = leaf(3, (int64_t[]){ 2, 3, 4 });
    pr_tensor *y = pr_transpose(x, 0, -1); /* [4,3,2] */
    CHECK(y && y->shape[0] == 4 && y->shape[2] == 2 && y->storage == x->storage);
    CHECK(AT(y, (3 * 3 + 1) * 2 + 1) == 1 * 12 + 1 * 4 + 3);
    pr_tensor *g = iota(3, (int64_t[]){ 4, 3, 2 }, 1.0);
    CHECK(pr_backward(y, g) == PR_OK);
    /* x.grad[a][b][c] = g[c][b][a] = c*6 + b*2 + a */
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 3; b++)
            for (int c = 0; c < 4; c++)
                CHECK(AT(x->grad, a * 12 + b * 4 + c) == c * 6 + b * 2 + a);
    pr_tensor_release(x->grad);
    x->grad = NULL;

    pr_tensor *p = pr_permute(x, (int[]){ 2, 0, 1 }); /* [4,2,3]: p[i][j][k] = x[j][k][i] */
    CHECK(p && p->shape[0] == 4 && p->shape[1] == 2 && p->shape[2] == 3 && p->storage == x->storage);
    CHECK(AT(p, 3 * 6 + 1 * 3 + 2) == 1 * 12 + 2 * 4 + 3);
    pr_tensor *gp = iota(3, (int64_t[]){ 4, 2, 3 }, 1.0);
    CHECK(pr_backward(p, gp) == PR_OK);
    for (int j = 0; j < 2; j++)
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < 4; i++)
                CHECK(AT(x->grad, j * 12 + k * 4 + i) == i * 6 + j * 3 + k);
    CHECK(pr_permute(x, (int[]){ 0, 1, 1 }) == NULL);
    CHECK(pr_transpose(x, 0, 3) == NULL && strstr(pr_last_error(), "dim 3"));
    pr_tensor *all[] = { x, y, g, p, gp };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        pr_tensor_release(all[i]);
}

static void test_narrow(void)
{
    pr_tensor *x = leaf(2, (int64_t[]){ 3, 4 });
    pr_tensor *y = pr_narrow(x, 1, 1, 2); /* [3,2] */
    CHECK(y && y->storage == x->storage && y->shape[1] == 2);
    CHECK(AT(y, 0) == 1 && AT(y, 1) == 2 && AT(y, 2) == 5 && AT(y, 5) == 10);
    pr_tensor *g = iota(2, (int64_t[]){ 3, 2 }, 1.0);
    pr_tensor_f32(g)[0] = 7; /* make it distinguishable from a zero */
    CHECK(pr_backward(y, g) == PR_OK);
    float want[12] = { 0, 7, 1, 0, 0, 2, 3, 0, 0, 4, 5, 0 };
    for (int i = 0; i < 12; i++)
        CHECK_MSG(AT(x->grad, i) == want[i], "i=%d got %g", i, AT(x->grad, i));
    CHECK(pr_narrow(x, 1, 3, 2) == NULL && strstr(pr_last_error(), "size 4"));

    /* two views chained: narrow of a transpose */
    pr_tensor_release(x->grad);
    x->grad = NULL;
    pr_tensor *t = pr_transpose(x, 0, 1);   /* [4,3] */
    pr_tensor *n = pr_narrow(t, 0, 2, 1);   /* [1,3] = column 2 of x */
    CHECK(n && AT(n, 0) == 2 && AT(n, 1) == 6 && AT(n, 2) == 10);
    pr_tensor *g2 = pr_tensor_full(PR_FLOAT32, 2, (int64_t[]){ 1, 3 }, 1.0);
    CHECK(pr_backward(n, g2) == PR_OK);
    for (int i = 0; i < 12; i++)
        CHECK(AT(x->grad, i) == (i % 4 == 2 ? 1.0 : 0.0));
    pr_tensor *all[] = { x, y, g, t, n, g2 };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        pr_tensor_release(all[i]);
}

static void test_index_select(void)
{
    pr_tensor *x = leaf(2, (int64_t[]){ 4, 3 });
    pr_tensor *idx = pr_tensor_zeros(PR_INT64, 1, (int64_t[]){ 3 });
    pr_tensor_i64(idx)[0] = 2;
    pr_tensor_i64(idx)[1] = 0;
    pr_tensor_i64(idx)[2] = 2;
    pr_tensor *y = pr_index_select(x, 0, idx); /* rows 2,0,2 */
    CHECK(y && y->shape[0] == 3 && y->shape[1] == 3 && y->storage != x->storage);
    float wy[9] = { 6, 7, 8, 0, 1, 2, 6, 7, 8 };
    for (int i = 0; i < 9; i++)
        CHECK(AT(y, i) == wy[i]);
    pr_tensor *g = iota(2, (int64_t[]){ 3, 3 }, 1.0);
    CHECK(pr_backward(y, g) == PR_OK);
    /* row 2 receives g rows 0 and 2 (index_add), row 0 receives g row 1 */
    float wg[12] = { 3, 4, 5, 0, 0, 0, 0 + 6, 1 + 7, 2 + 8, 0, 0, 0 };
    for (int i = 0; i < 12; i++)
        CHECK_MSG(AT(x->grad, i) == wg[i], "i=%d got %g", i, AT(x->grad, i));

    /* along the last dim of a non-contiguous input */
    pr_tensor *xt = pr_tensor_transpose(x, 0, 1); /* [3,4], plain view */
    pr_tensor *c = pr_index_select(xt, -1, idx);   /* columns 2,0,2 of xt */
    CHECK(c && c->shape[0] == 3 && c->shape[1] == 3);
    CHECK(AT(c, 0) == 6 && AT(c, 1) == 0 && AT(c, 3) == 7 && AT(c, 8) == 8);

    pr_tensor_i64(idx)[1] = 4;
    CHECK(pr_index_select(x, 0, idx) == NULL && strstr(pr_last_error(), "index 4") && strstr(pr_last_error(), "size 4"));
    pr_tensor *fidx = pr_tensor_zeros(PR_FLOAT32, 1, (int64_t[]){ 1 });
    CHECK(pr_index_select(x, 0, fidx) == NULL && strstr(pr_last_error(), "int64"));
    pr_tensor *all[] = { x, idx, y, g, xt, c, fidx };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        pr_tensor_release(all[i]);
}

static void test_cat(void)
{
    pr_tensor *a = leaf(2, (int64_t[]){ 2, 3 });
    pr_tensor *b = iota(2, (int64_t[]){ 2, 1 }, -1.0); /* no grad */
    pr_tensor *e = pr_tensor_zeros(PR_FLOAT32, 2, (int64_t[]){ 2, 0 });
    pr_tensor *c = pr_cat((pr_tensor *[]){ a, e, b }, 3, 1);
    CHECK(c && c->shape[0] == 2 && c->shape[1] == 4 && c->requires_grad);
    float want[8] = { 0, 1, 2, 0, 3, 4, 5, -1 };
    for (int i = 0; i < 8; i++)
        CHECK(AT(c, i) == want[i]);
    pr_tensor *g = iota(2, (int64_t[]){ 2, 4 }, 1.0);
    CHECK(pr_backward(c, g) == PR_OK);
    float wg[6] = { 0, 1, 2, 4, 5, 6 };
    for (int i = 0; i < 6; i++)
        CHECK(AT(a->grad, i) == wg[i]);
    CHECK(b->grad == NULL);

    pr_tensor *r = pr_cat((pr_tensor *[]){ a, a }, 2, 0); /* [4,3] */
    CHECK(r && r->shape[0] == 4 && AT(r, 11) == 5);
    CHECK(pr_cat((pr_tensor *[]){ a, b }, 2, 0) == NULL && strstr(pr_last_error(), "[2,1]") &&
          strstr(pr_last_error(), "[2,3]"));
    CHECK(pr_cat(NULL, 0, 0) == NULL);
    pr_tensor *all[] = { a, b, e, c, g, r };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        pr_tensor_release(all[i]);
}

static void test_no_grad_views(void)
{
    /* Without grad mode a view op records nothing but still shares storage. */
    pr_tensor *x = leaf(2, (int64_t[]){ 2, 2 });
    int prev = pr_set_grad_enabled(0);
    pr_tensor *y = pr_transpose(x, 0, 1);
    CHECK(y && !y->requires_grad && !y->grad_fn && y->storage == x->storage);
    pr_set_grad_enabled(prev);
    pr_tensor_release(y);
    pr_tensor_release(x);
}

int main(void)
{
    RUN(test_reshape);
    RUN(test_transpose_permute);
    RUN(test_narrow);
    RUN(test_index_select);
    RUN(test_cat);
    RUN(test_no_grad_views);
    return CHECK_DONE();
}
