/* test_tensor.c: storages, tensors and views (tensor.c), the generator (rng.c) and the
 * broadcasting helpers (broadcast.c). */
#include <stdlib.h>
#include <string.h>

#include "broadcast.h"
#include "check.h"
#include "rng.h"
#include "tensor.h"

static int64_t S1[1], S2[2], S3[3];
#define SH1(a) (S1[0] = (a), S1)
#define SH2(a, b) (S2[0] = (a), S2[1] = (b), S2)
#define SH3(a, b, c) (S3[0] = (a), S3[1] = (b), S3[2] = (c), S3)

static pr_tensor *iota(int ndim, const int64_t *shape)
{
    pr_tensor *t = pr_tensor_empty(PR_FLOAT32, ndim, shape);
    float *p = pr_tensor_f32(t);
    for (int64_t i = 0; i < pr_tensor_numel(t); i++)
        p[i] = (float)i;
    return t;
}

static void test_lifecycle(void)
{
    pr_tensor *z = pr_tensor_zeros(PR_FLOAT32, 2, SH2(3, 4));
    CHECK(z && z->refcount == 1 && z->ndim == 2 && pr_tensor_numel(z) == 12);
    CHECK(z->stride[0] == 4 && z->stride[1] == 1 && pr_tensor_is_contiguous(z));
    for (int i = 0; i < 12; i++)
        CHECK(pr_tensor_get_flat(z, i) == 0.0);
    pr_tensor_retain(z);
    CHECK(z->refcount == 2);
    pr_tensor_release(z);
    CHECK(z->refcount == 1);

    pr_tensor *f = pr_tensor_full(PR_INT64, 1, SH1(5), 7.9);
    CHECK(f->dtype == PR_INT64 && pr_tensor_i64(f)[4] == 7);
    pr_tensor *s = pr_tensor_scalar(2.5);
    CHECK(s->ndim == 0 && pr_tensor_numel(s) == 1 && pr_tensor_get_flat(s, 0) == 2.5);
    CHECK(pr_dtype_size(PR_FLOAT32) == 4 && pr_dtype_size(PR_INT64) == 8 && pr_dtype_size(PR_UINT8) == 1);
    CHECK(strcmp(pr_dtype_name(PR_UINT8), "uint8") == 0);
    char b[64];
    CHECK(strcmp(pr_tensor_shape_str(z, b, sizeof b), "[3,4]") == 0);
    CHECK(strcmp(pr_tensor_shape_str(s, b, sizeof b), "[]") == 0);

    /* grad and mask are owned and die with the tensor (ASan would see a leak otherwise) */
    z->grad = pr_tensor_zeros(PR_FLOAT32, 2, z->shape);
    z->mask = pr_tensor_full(PR_FLOAT32, 2, z->shape, 1.0);
    pr_tensor_release(z);
    pr_tensor_release(f);
    pr_tensor_release(s);
    pr_tensor_release(NULL);
}

static int released;
static void count_release(void *data, void *ctx)
{
    released++;
    CHECK(ctx == (void *)&released);
    CHECK(((float *)data)[0] == 42.0f);
}

static void test_from_buffer(void)
{
    float buf[6] = { 1, 2, 3, 4, 5, 6 };
    released = 0;
    pr_tensor *t = pr_tensor_from_buffer(PR_FLOAT32, 2, SH2(2, 3), buf, count_release, &released);
    pr_tensor *v = pr_tensor_transpose(t, 0, 1);
    CHECK(v->storage == t->storage && t->storage->refcount == 2);
    CHECK(pr_tensor_get_flat(v, 1) == 4.0);
    pr_tensor_set_flat(v, 0, 42.0);
    CHECK(buf[0] == 42.0f);
    pr_tensor_release(t);
    CHECK(released == 0);   /* the view still holds the storage */
    pr_tensor_release(v);
    CHECK(released == 1);
    /* without a callback the buffer is never freed (ASan reports a bad free otherwise) */
    pr_tensor *u = pr_tensor_from_buffer(PR_FLOAT32, 1, SH1(6), buf, NULL, NULL);
    CHECK(u && pr_tensor_get_flat(u, 5) == 6.0);
    pr_tensor_release(u);
    CHECK(pr_tensor_from_buffer(PR_FLOAT32, 1, SH1(3), NULL, NULL, NULL) == NULL);
}

static void test_views(void)
{
    pr_tensor *t = iota(3, SH3(2, 3, 4));
    pr_tensor *v = pr_tensor_view(t, 2, SH2(-1, 4));
    CHECK(v && v->shape[0] == 6 && v->storage == t->storage && t->storage->refcount == 2);
    pr_tensor_set_flat(v, 5, 100);
    CHECK(pr_tensor_get_flat(t, 5) == 100);
    pr_tensor_set_flat(v, 5, 5);

    pr_tensor *tr = pr_tensor_transpose(t, 0, 2); /* [4,3,2] */
    CHECK(tr->shape[0] == 4 && tr->shape[2] == 2 && !pr_tensor_is_contiguous(tr));
    /* tr[i][j][k] = t[k][j][i] = k*12 + j*4 + i */
    CHECK(pr_tensor_get_flat(tr, 1 * 6 + 2 * 2 + 1) == 1 * 12 + 2 * 4 + 1);
    CHECK(pr_tensor_view(tr, 1, SH1(24)) == NULL);
    CHECK(strstr(pr_last_error(), "[4,3,2]") != NULL);
    pr_tensor *r = pr_tensor_reshape(tr, 1, SH1(24)); /* must copy */
    CHECK(r && r->storage != t->storage && pr_tensor_is_contiguous(r));
    for (int64_t i = 0; i < 24; i++)
        CHECK(pr_tensor_get_flat(r, i) == pr_tensor_get_flat(tr, i));
    pr_tensor *r2 = pr_tensor_reshape(t, 2, SH2(4, 6)); /* view */
    CHECK(r2->storage == t->storage);

    /* a permuted tensor whose merged dims are still viewable */
    pr_tensor *nt = pr_tensor_narrow(t, 2, 1, 2);   /* [2,3,2], strides 12,4,1, offset 1 */
    CHECK(nt->offset == 1 && nt->shape[2] == 2 && !pr_tensor_is_contiguous(nt));
    pr_tensor *nv = pr_tensor_view(nt, 3, SH3(1, 2, 6)); /* cannot: dims 1,2 not mergeable */
    CHECK(nv == NULL);
    pr_tensor *nv2 = pr_tensor_view(nt, 4, (int64_t[]){ 2, 3, 2, 1 });
    CHECK(nv2 && nv2->storage == t->storage);
    CHECK(pr_tensor_get_flat(nv2, 3) == pr_tensor_get_flat(nt, 3));
    pr_tensor *p = pr_tensor_permute(t, (int[]){ 1, 0, 2 }); /* [3,2,4] */
    pr_tensor *pv = pr_tensor_view(p, 3, SH3(3, 2, 4));
    CHECK(pv != NULL);
    pr_tensor *pv2 = pr_tensor_view(p, 2, SH2(3, 8));  /* dims 1,2 of p: stride 12,1 — no */
    CHECK(pv2 == NULL);
    pr_tensor *pv3 = pr_tensor_view(p, 4, (int64_t[]){ 3, 2, 2, 2 }); /* split last: yes */
    CHECK(pv3 && pv3->stride[2] == 2 && pv3->stride[3] == 1);
    CHECK(pr_tensor_get_flat(pv3, 13) == pr_tensor_get_flat(p, 13));
    CHECK(pr_tensor_permute(t, (int[]){ 0, 0, 2 }) == NULL);

    pr_tensor *sel = pr_tensor_select(t, 1, 2);     /* [2,4]: t[:,2,:] */
    CHECK(sel->ndim == 2 && pr_tensor_get_flat(sel, 5) == 12 + 8 + 1);
    CHECK(pr_tensor_select(t, 1, 3) == NULL && strstr(pr_last_error(), "index 3") && strstr(pr_last_error(), "size 3"));
    CHECK(pr_tensor_narrow(t, 0, 1, 2) == NULL);
    CHECK(strstr(pr_last_error(), "size 2") != NULL);

    pr_tensor *u = pr_tensor_unsqueeze(t, 1);       /* [2,1,3,4] */
    CHECK(u->ndim == 4 && u->shape[1] == 1 && pr_tensor_is_contiguous(u));
    pr_tensor *u2 = pr_tensor_unsqueeze(t, -1);     /* [2,3,4,1] */
    CHECK(u2->ndim == 4 && u2->shape[3] == 1);
    pr_tensor *sq = pr_tensor_squeeze(u, -1);
    CHECK(sq->ndim == 3 && pr_tensor_same_shape(sq, t));
    pr_tensor *sq1 = pr_tensor_squeeze(u, 0);       /* size 2: unchanged */
    CHECK(sq1->ndim == 4);

    pr_tensor *col = iota(2, SH2(3, 1));
    pr_tensor *e = pr_tensor_expand(col, 3, SH3(2, 3, 5));
    CHECK(e && e->stride[0] == 0 && e->stride[2] == 0 && e->storage == col->storage);
    CHECK(pr_tensor_get_flat(e, 15 + 2 * 5 + 4) == 2.0);
    CHECK(pr_tensor_expand(col, 2, SH2(4, 5)) == NULL);
    CHECK(strstr(pr_last_error(), "[3,1]") && strstr(pr_last_error(), "[4,5]"));

    pr_tensor *c = pr_tensor_contiguous(t);
    CHECK(c == t && t->refcount == 2);
    pr_tensor *ct = pr_tensor_contiguous(tr);
    CHECK(ct != tr && pr_tensor_is_contiguous(ct) && ct->storage != t->storage);
    for (int64_t i = 0; i < 24; i++)
        CHECK(pr_tensor_get_flat(ct, i) == pr_tensor_get_flat(tr, i));

    pr_tensor *all[] = { v, tr, r, r2, nt, nv2, p, pv, pv3, sel, u, u2, sq, sq1, col, e, c, ct, t };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        pr_tensor_release(all[i]);
}

static void test_copy_and_convert(void)
{
    pr_tensor *dst = pr_tensor_zeros(PR_FLOAT32, 2, SH2(3, 4));
    pr_tensor *row = iota(1, SH1(4));
    CHECK(pr_tensor_copy_(dst, row) == PR_OK);
    for (int64_t i = 0; i < 12; i++)
        CHECK(pr_tensor_get_flat(dst, i) == (double)(i % 4));
    pr_tensor *colu8 = pr_tensor_arange(0, 3, 1, PR_UINT8);
    pr_tensor *col = pr_tensor_view(colu8, 2, SH2(3, 1));
    CHECK(pr_tensor_copy_(dst, col) == PR_OK);
    for (int64_t i = 0; i < 12; i++)
        CHECK(pr_tensor_get_flat(dst, i) == (double)(i / 4));
    pr_tensor *bad = iota(1, SH1(3));
    CHECK(pr_tensor_copy_(dst, bad) < 0 && strstr(pr_last_error(), "[3]") && strstr(pr_last_error(), "[3,4]"));

    /* into a transposed (strided) destination */
    pr_tensor *src = iota(2, SH2(4, 3));
    pr_tensor *dt = pr_tensor_transpose(dst, 0, 1); /* [4,3] view */
    CHECK(pr_tensor_copy_(dt, src) == PR_OK);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++)
            CHECK(pr_tensor_f32(dst)[j * 4 + i] == (float)(i * 3 + j));
    /* overlapping: a square matrix transposed into itself */
    pr_tensor *sq = iota(2, SH2(3, 3));
    pr_tensor *sqt = pr_tensor_transpose(sq, 0, 1);
    CHECK(pr_tensor_copy_(sq, sqt) == PR_OK);
    CHECK(pr_tensor_f32(sq)[1] == 3.0f && pr_tensor_f32(sq)[3] == 1.0f && pr_tensor_f32(sq)[5] == 7.0f);

    /* dtype conversions: truncation toward zero, saturation into uint8 */
    float vals[5] = { -1.7f, 0.5f, 2.9f, 300.0f, NAN };
    pr_tensor *fv = pr_tensor_from_buffer(PR_FLOAT32, 1, SH1(5), vals, NULL, NULL);
    pr_tensor *iv = pr_tensor_to(fv, PR_INT64);
    pr_tensor *uv = pr_tensor_to(fv, PR_UINT8);
    CHECK(iv->dtype == PR_INT64 && pr_tensor_i64(iv)[0] == -1 && pr_tensor_i64(iv)[2] == 2 &&
          pr_tensor_i64(iv)[3] == 300 && pr_tensor_i64(iv)[4] == 0);
    CHECK(pr_tensor_u8(uv)[0] == 0 && pr_tensor_u8(uv)[2] == 2 && pr_tensor_u8(uv)[3] == 255);
    pr_tensor *back = pr_tensor_to(iv, PR_FLOAT32);
    CHECK(pr_tensor_f32(back)[3] == 300.0f);
    pr_tensor *u2i = pr_tensor_to(uv, PR_INT64);
    CHECK(pr_tensor_i64(u2i)[3] == 255);
    pr_tensor *i2u = pr_tensor_full(PR_INT64, 1, SH1(2), -5);
    pr_tensor_i64(i2u)[1] = 1000;
    pr_tensor *i2u8 = pr_tensor_to(i2u, PR_UINT8);
    CHECK(pr_tensor_u8(i2u8)[0] == 0 && pr_tensor_u8(i2u8)[1] == 255);
    pr_tensor *same = pr_tensor_to(iv, PR_INT64);
    CHECK(same != iv && pr_tensor_i64(same)[2] == 2);

    /* clone is always a fresh copy */
    pr_tensor *cl = pr_tensor_clone(src);
    CHECK(cl != src && cl->storage != src->storage && pr_tensor_get_flat(cl, 11) == 11);

    /* fill_ of a strided view touches exactly the view */
    pr_tensor *m = pr_tensor_zeros(PR_FLOAT32, 2, SH2(3, 4));
    pr_tensor *mc = pr_tensor_narrow(m, 1, 1, 2);
    CHECK(pr_tensor_fill_(mc, 9) == PR_OK);
    double sum = 0;
    for (int64_t i = 0; i < 12; i++)
        sum += pr_tensor_get_flat(m, i);
    CHECK(sum == 9 * 6 && pr_tensor_f32(m)[0] == 0 && pr_tensor_f32(m)[1] == 9 && pr_tensor_f32(m)[3] == 0);
    pr_tensor *u8 = pr_tensor_zeros(PR_UINT8, 1, SH1(4));
    pr_tensor_fill_(u8, 3);
    CHECK(pr_tensor_u8(u8)[3] == 3);

    pr_tensor *all[] = { dst, row, colu8, col, bad, src, dt, sq, sqt, fv, iv, uv, back, u2i, i2u,
                         i2u8, same, cl, m, mc, u8 };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        pr_tensor_release(all[i]);
}

static void test_creation(void)
{
    pr_tensor *a = pr_tensor_arange(0, 1, 0.25, PR_FLOAT32);
    CHECK(pr_tensor_numel(a) == 4 && pr_tensor_get_flat(a, 3) == 0.75);
    pr_tensor *b = pr_tensor_arange(5, 0, -2, PR_INT64);
    CHECK(pr_tensor_numel(b) == 3 && pr_tensor_i64(b)[2] == 1);
    pr_tensor *c = pr_tensor_arange(3, 3, 1, PR_FLOAT32);
    CHECK(c && pr_tensor_numel(c) == 0);
    CHECK(pr_tensor_arange(0, 1, 0, PR_FLOAT32) == NULL);
    pr_tensor *l = pr_tensor_linspace(-1, 1, 5);
    CHECK(pr_tensor_get_flat(l, 0) == -1 && pr_tensor_get_flat(l, 2) == 0 && pr_tensor_get_flat(l, 4) == 1);
    pr_tensor *l1 = pr_tensor_linspace(2, 9, 1);
    CHECK(pr_tensor_get_flat(l1, 0) == 2);
    pr_tensor *e = pr_tensor_eye(2, 3);
    CHECK(e->shape[1] == 3 && pr_tensor_f32(e)[0] == 1 && pr_tensor_f32(e)[4] == 1 && pr_tensor_f32(e)[5] == 0);

    pr_rng_seed(123);
    pr_tensor *r = pr_tensor_rand(1, SH1(10000));
    pr_rng_seed(123);
    pr_tensor *r2 = pr_tensor_rand(1, SH1(10000));
    CHECK(memcmp(pr_tensor_f32(r), pr_tensor_f32(r2), 10000 * sizeof(float)) == 0);
    double mean = 0, mn = 1, mx = 0;
    for (int i = 0; i < 10000; i++) {
        double v = pr_tensor_f32(r)[i];
        mean += v;
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
    }
    mean /= 10000;
    CHECK_NEAR(mean, 0.5, 0.02);
    CHECK(mn >= 0 && mx < 1 && mx > 0.99);
    pr_tensor *n = pr_tensor_randn(2, SH2(100, 100));
    double m1 = 0, m2 = 0;
    for (int i = 0; i < 10000; i++) {
        double v = pr_tensor_f32(n)[i];
        m1 += v;
        m2 += v * v;
    }
    m1 /= 10000;
    m2 = m2 / 10000 - m1 * m1;
    CHECK_NEAR(m1, 0, 0.05);
    CHECK_NEAR(m2, 1, 0.05);
    pr_tensor *ri = pr_tensor_randint(-3, 4, 1, SH1(7000));
    int hist[7] = {0};
    int inrange = 1;
    for (int i = 0; i < 7000; i++) {
        int64_t v = pr_tensor_i64(ri)[i];
        if (v < -3 || v >= 4)
            inrange = 0;
        else
            hist[v + 3]++;
    }
    CHECK(inrange);
    for (int k = 0; k < 7; k++)
        CHECK_MSG(hist[k] > 850 && hist[k] < 1150, "bucket %d has %d", k, hist[k]);
    CHECK(pr_tensor_randint(3, 3, 1, SH1(2)) == NULL);

    pr_tensor *all[] = { a, b, c, l, l1, e, r, r2, n, ri };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        pr_tensor_release(all[i]);
}

static void test_rng(void)
{
    /* Reference outputs of xoshiro256** seeded by splitmix64(0x5eed), computed independently
     * from the published algorithms in Python: the stream must be the same everywhere. */
    pr_rng_seed(0x5eed);
    CHECK(pr_rng_next() == 0xef33f17055244b74ULL);
    CHECK(pr_rng_next() == 0xe1f591112fb5051bULL);
    CHECK(pr_rng_next() == 0xd8ab05640214863aULL);
    pr_rng_seed(0);
    uint64_t a = pr_rng_next(), b = pr_rng_next();
    pr_rng_seed(0);
    CHECK(pr_rng_next() == a && pr_rng_next() == b && a != b);
    pr_rng_seed(1);
    CHECK(pr_rng_next() != a);
    /* below() is unbiased over a non power of two and never reaches n */
    int hist[3] = {0};
    for (int i = 0; i < 30000; i++) {
        int64_t v = pr_rng_below(3);
        CHECK(v >= 0 && v < 3);
        hist[v]++;
    }
    for (int k = 0; k < 3; k++)
        CHECK_MSG(abs(hist[k] - 10000) < 400, "bucket %d has %d", k, hist[k]);
    CHECK(pr_rng_below(1) == 0);
    int64_t big = INT64_MAX - 5, v = pr_rng_below(big);
    CHECK(v >= 0 && v < big);
}

static void test_zero_size_and_errors(void)
{
    pr_tensor *z = pr_tensor_empty(PR_FLOAT32, 3, SH3(2, 0, 4));
    CHECK(z && pr_tensor_numel(z) == 0 && pr_tensor_is_contiguous(z));
    pr_tensor *zt = pr_tensor_transpose(z, 0, 2);
    pr_tensor *zc = pr_tensor_contiguous(zt);
    CHECK(zc && pr_tensor_numel(zc) == 0);
    pr_tensor *zv = pr_tensor_view(zt, 2, SH2(0, 5));
    CHECK(zv && zv->shape[0] == 0);
    pr_tensor *zflat = pr_tensor_view(zt, 1, SH1(-1));
    CHECK(zflat && zflat->shape[0] == 0);
    CHECK(pr_tensor_view(zt, 2, SH2(0, -1)) == NULL); /* -1 next to a 0 is ambiguous */
    pr_tensor *zv2 = pr_tensor_reshape(z, 1, SH1(0));
    CHECK(zv2 && zv2->shape[0] == 0);
    pr_tensor *zn = pr_tensor_narrow(z, 2, 4, 0);
    CHECK(zn && zn->shape[2] == 0);
    CHECK(pr_tensor_fill_(zn, 1) == PR_OK && pr_tensor_copy_(z, zn) < 0);
    pr_tensor *one = pr_tensor_scalar(1);
    pr_tensor *ze = pr_tensor_expand(one, 2, SH2(0, 3));
    CHECK(ze && ze->ndim == 2 && pr_tensor_numel(ze) == 0);

    int64_t nine[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
    CHECK(pr_tensor_zeros(PR_FLOAT32, 9, nine) == NULL && strstr(pr_last_error(), "9 dims"));
    pr_tensor *eight = pr_tensor_zeros(PR_FLOAT32, 8, nine);
    CHECK(eight && pr_tensor_numel(eight) == 1);
    CHECK(pr_tensor_unsqueeze(eight, 0) == NULL);
    CHECK(pr_tensor_zeros(PR_FLOAT32, 2, SH2(-1, 3)) == NULL);
    CHECK(pr_tensor_empty(PR_FLOAT32, 3, SH3(1LL << 40, 1LL << 40, 1LL << 40)) == NULL &&
          strstr(pr_last_error(), "too large"));
    CHECK(pr_tensor_empty(PR_INT64, 2, SH2(1LL << 31, 1LL << 31)) == NULL);
    CHECK(pr_tensor_transpose(eight, 0, 8) == NULL && strstr(pr_last_error(), "dim 8"));
    pr_tensor *t = iota(2, SH2(2, 3));
    CHECK(pr_tensor_view(t, 2, SH2(4, -1)) == NULL && strstr(pr_last_error(), "[2,3]"));
    CHECK(pr_tensor_view(t, 2, SH2(-1, -1)) == NULL);
    CHECK(pr_tensor_view(t, 1, SH1(7)) == NULL && strstr(pr_last_error(), "[7]"));
    CHECK(isnan(pr_tensor_get_flat(t, 6)) && strstr(pr_last_error(), "index 6"));
    CHECK(pr_tensor_set_flat(t, -1, 0) < 0);
    pr_tensor *tn = pr_tensor_transpose(t, -1, -2);
    CHECK(tn && tn->shape[0] == 3);

    pr_tensor *all[] = { z, zt, zc, zv, zflat, zv2, zn, one, ze, eight, t, tn };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        pr_tensor_release(all[i]);
}

static void test_broadcast(void)
{
    pr_tensor *a = pr_tensor_zeros(PR_FLOAT32, 2, SH2(3, 1));
    pr_tensor *b = pr_tensor_zeros(PR_FLOAT32, 3, SH3(2, 1, 4));
    int nd;
    int64_t shape[PR_MAX_DIMS];
    CHECK(pr_broadcast_shape(a, b, &nd, shape) == PR_OK && nd == 3 && shape[0] == 2 && shape[1] == 3 &&
          shape[2] == 4);
    pr_tensor *c = pr_tensor_zeros(PR_FLOAT32, 2, SH2(2, 3));
    CHECK(pr_broadcast_shape_op("add", c, b, &nd, shape) < 0);
    CHECK(strcmp(pr_last_error(), "add: [2,3] and [2,1,4] do not broadcast") == 0);
    /* the iterator visits broadcast operands with stride 0 */
    pr_tensor *x = iota(2, SH2(3, 1)), *y = iota(1, SH1(4));
    pr_tensor *o = pr_tensor_empty(PR_FLOAT32, 2, SH2(3, 4));
    pr_iter it;
    CHECK(pr_iter_init(&it, "test", 2, o->shape, 3, (const pr_tensor *[]){ o, x, y }) == PR_OK);
    for (int64_t i = 0; i < it.numel; i++, pr_iter_next(&it))
        pr_tensor_f32(o)[it.off[0]] = pr_tensor_f32(x)[it.off[1]] * 10 + pr_tensor_f32(y)[it.off[2]];
    CHECK(pr_tensor_f32(o)[6] == 12 && pr_tensor_f32(o)[11] == 23);
    pr_tensor *all[] = { a, b, c, x, y, o };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        pr_tensor_release(all[i]);
}

int main(void)
{
    RUN(test_lifecycle);
    RUN(test_from_buffer);
    RUN(test_views);
    RUN(test_copy_and_convert);
    RUN(test_creation);
    RUN(test_rng);
    RUN(test_zero_size_and_errors);
    RUN(test_broadcast);
    return CHECK_DONE();
}
