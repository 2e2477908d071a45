/* test_enc.c: the sparse, quant8 and k-means model-file encodings (io/enc_sparse.c,
 * io/enc_quant.c): round trips on random shapes and sparsities (0% and 100% included, empty
 * tensors, other dtypes), quantisation error bounds, the same through a real model file, and
 * hand-made corrupt chunks that must be refused with a message. Also the sparse execution
 * plans of sparse/exec.c from C (the Lua spec covers more shapes), so ASan sees them in a
 * static binary. */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "io/io.h"
#include "autograd.h"
#include "module.h"
#include "ops.h"
#include "rng.h"
#include "sparse/exec.h"

static int has_error(const char *needle)
{
    if (strstr(pr_last_error(), needle))
        return 1;
    fprintf(stderr, "  expected an error with \"%s\", got \"%s\"\n", needle, pr_last_error());
    return 0;
}

/* A float32 tensor of `shape` with about `sparsity` of its entries zero, the rest N(0, 1)
 * scaled by `scale` (never exactly zero). */
static pr_tensor *random_sparse(int ndim, const int64_t *shape, double sparsity, double scale)
{
    pr_tensor *t = pr_tensor_empty(PR_FLOAT32, ndim, shape);
    float *d = pr_tensor_f32(t);
    for (int64_t i = 0, n = pr_tensor_numel(t); i < n; i++) {
        double u = pr_rng_uniform();
        float v = (float)(scale * (2.0 * pr_rng_uniform() - 1.0));
        if (v == 0.0f)
            v = (float)scale;
        d[i] = u < sparsity ? 0.0f : v;
    }
    return t;
}

static int64_t count_nonzero(const pr_tensor *t)
{
    int64_t k = 0;
    const float *d = pr_tensor_f32(t);
    for (int64_t i = 0, n = pr_tensor_numel(t); i < n; i++)
        k += d[i] != 0.0f;
    return k;
}

static pr_tensor *round_trip(const pr_mfile_encoding *e, const pr_tensor *t)
{
    uint8_t *raw = NULL;
    uint64_t len = 0;
    if (e->encode(t, &raw, &len) < 0) {
        fprintf(stderr, "  encode %s: %s\n", e->name, pr_last_error());
        return NULL;
    }
    pr_tensor *r = e->decode(raw, len, t->dtype, t->ndim, t->shape, "test");
    if (!r)
        fprintf(stderr, "  decode %s: %s\n", e->name, pr_last_error());
    free(raw);
    return r;
}

/* Shapes: scalars, vectors, dims not divisible by 4, empty ones. */
static const int64_t shapes[][4] = {{0}, {1}, {7}, {3, 5}, {33, 17}, {4, 0, 3}, {20, 1, 5, 5},
                                    {50, 20, 5, 5}, {129, 300}};
static const int ndims[] = {0, 1, 1, 2, 2, 3, 4, 4, 2};
static const double sparsities[] = {0.0, 0.3, 0.9, 0.99, 1.0};

static void test_sparse_round_trip(void)
{
    for (size_t s = 0; s < sizeof ndims / sizeof *ndims; s++)
        for (size_t k = 0; k < sizeof sparsities / sizeof *sparsities; k++) {
            pr_tensor *t = random_sparse(ndims[s], shapes[s], sparsities[k], 3.0);
            pr_tensor *r = round_trip(&pr_mfile_enc_sparse, t);
            CHECK(r && pr_tensor_same_shape(r, t));
            if (r)
                CHECK_MSG(memcmp(pr_tensor_data(r), pr_tensor_data(t),
                                 (size_t)pr_tensor_numel(t) * 4) == 0, "shape %zu sparsity %g", s,
                          sparsities[k]);
            pr_tensor_release(r);
            pr_tensor_release(t);
        }
    /* other dtypes go through "sparse" exactly */
    int64_t n = 100;
    pr_tensor *li = pr_tensor_zeros(PR_INT64, 1, &n), *u8 = pr_tensor_zeros(PR_UINT8, 1, &n);
    for (int i = 0; i < 100; i += 7) {
        ((int64_t *)pr_tensor_data(li))[i] = (int64_t)i * 1000000007LL - 5;
        ((uint8_t *)pr_tensor_data(u8))[i] = (uint8_t)(i + 1);
    }
    pr_tensor *r1 = round_trip(&pr_mfile_enc_sparse, li), *r2 = round_trip(&pr_mfile_enc_sparse, u8);
    CHECK(r1 && r1->dtype == PR_INT64 && memcmp(pr_tensor_data(r1), pr_tensor_data(li), 800) == 0);
    CHECK(r2 && r2->dtype == PR_UINT8 && memcmp(pr_tensor_data(r2), pr_tensor_data(u8), 100) == 0);
    /* the lossy ones refuse other dtypes with a message */
    uint8_t *raw = NULL;
    uint64_t len;
    CHECK(pr_mfile_enc_quant8.encode(li, &raw, &len) < 0 && has_error("float32"));
    CHECK(pr_mfile_enc_kmeans4.encode(u8, &raw, &len) < 0 && has_error("float32"));
    pr_tensor_release(r1);
    pr_tensor_release(r2);
    pr_tensor_release(li);
    pr_tensor_release(u8);
}

/* Positions kept exactly, non-zeros stay non-zero, values within the scheme's bound. */
static void check_lossy(const pr_tensor *t, const pr_tensor *r, double bound, double mean_bound,
                        int max_distinct, const char *what)
{
    const float *a = pr_tensor_f32(t), *b = pr_tensor_f32(r);
    int64_t n = pr_tensor_numel(t), bad_zero = 0, bad_err = 0, nz = 0;
    double sum = 0;
    float distinct[300];
    int nd = 0, overflow = 0;
    for (int64_t i = 0; i < n; i++) {
        if ((a[i] == 0.0f) != (b[i] == 0.0f))
            bad_zero++;
        if (a[i] == 0.0f)
            continue;
        nz++;
        double e = fabs((double)a[i] - b[i]);
        sum += e;
        bad_err += e > bound;
        int seen = 0;
        for (int j = 0; j < nd && !seen; j++)
            seen = distinct[j] == b[i];
        if (!seen) {
            if (nd < 300)
                distinct[nd++] = b[i];
            else
                overflow = 1;
        }
    }
    CHECK_MSG(bad_zero == 0, "%s: %lld entries changed zero-ness", what, (long long)bad_zero);
    CHECK_MSG(bad_err == 0, "%s: %lld errors above %g", what, (long long)bad_err, bound);
    CHECK_MSG(!nz || sum / (double)nz <= mean_bound, "%s: mean error %g above %g", what,
              sum / (double)nz, mean_bound);
    CHECK_MSG(!overflow && nd <= max_distinct, "%s: %d distinct values (at most %d)", what, nd,
              max_distinct);
}

static void test_quant_round_trip(void)
{
    for (size_t s = 0; s < sizeof ndims / sizeof *ndims; s++)
        for (size_t k = 0; k < sizeof sparsities / sizeof *sparsities; k++) {
            char what[64];
            snprintf(what, sizeof what, "shape %zu sparsity %g", s, sparsities[k]);
            pr_tensor *t = random_sparse(ndims[s], shapes[s], sparsities[k], 0.25);
            /* range of the non-zeros, widened to hold 0 as the encoder does */
            double lo = 0, hi = 0;
            const float *d = pr_tensor_f32(t);
            for (int64_t i = 0; i < pr_tensor_numel(t); i++) {
                lo = d[i] < lo ? d[i] : lo;
                hi = d[i] > hi ? d[i] : hi;
            }
            double scale = (hi - lo) / 255.0;
            pr_tensor *r = round_trip(&pr_mfile_enc_quant8, t);
            CHECK(r && pr_tensor_same_shape(r, t));
            /* rounding: scale / 2; a value nudged off the zero point: under scale */
            if (r)
                check_lossy(t, r, scale * 1.0001 + 1e-12, scale / 2 + 1e-12, 256, what);
            pr_tensor_release(r);
            r = round_trip(&pr_mfile_enc_kmeans4, t);
            CHECK(r && pr_tensor_same_shape(r, t));
            /* 16 centroids over the range: uniform data gives a mean error near range/64 */
            if (r)
                check_lossy(t, r, (hi - lo) / 2, (hi - lo) / 32 + 1e-12, 16, what);
            pr_tensor_release(r);
            pr_tensor_release(t);
        }
}

static void test_kmeans_bits(void)
{
    int64_t shape[2] = {64, 64};
    pr_tensor *t = random_sparse(2, shape, 0.8, 1.0);
    double prev = INFINITY;
    for (int bits = 1; bits <= 8; bits++) {
        uint8_t *raw = NULL;
        uint64_t len = 0;
        CHECK(pr_enc_kmeans_encode(t, bits, &raw, &len) == PR_OK);
        CHECK(raw && raw[0] == bits);
        /* the one decoder reads every width */
        pr_tensor *r = raw ? pr_mfile_enc_kmeans4.decode(raw, len, PR_FLOAT32, 2, shape, "t") : NULL;
        CHECK(r != NULL);
        if (r) {
            check_lossy(t, r, 2.0, 2.0, 1 << bits, "bits");
            double sum = 0;
            for (int64_t i = 0; i < 4096; i++)
                sum += fabs((double)pr_tensor_f32(t)[i] - pr_tensor_f32(r)[i]);
            CHECK_MSG(sum <= prev * 1.0001, "%d bits: error %g not below %g", bits, sum, prev);
            prev = sum;
        }
        pr_tensor_release(r);
        free(raw);
    }
    uint8_t *raw = NULL;
    uint64_t len;
    CHECK(pr_enc_kmeans_encode(t, 0, &raw, &len) < 0 && has_error("1..8"));
    CHECK(pr_enc_kmeans_encode(t, 9, &raw, &len) < 0 && has_error("1..8"));
    /* non-finite values do not quantise */
    pr_tensor_f32(t)[5] = NAN;
    CHECK(pr_mfile_enc_quant8.encode(t, &raw, &len) < 0 && has_error("finite"));
    CHECK(pr_mfile_enc_kmeans4.encode(t, &raw, &len) < 0 && has_error("finite"));
    pr_tensor_release(t);
}

/* The encodings through a real model file: info names them and the bytes shrink. */
static void test_file(void)
{
    char dir[] = "/tmp/prunert_enc_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/m.prunert", dir);
    int64_t shape[2] = {500, 800};
    pr_tensor *w = random_sparse(2, shape, 0.92, 0.05);
    const pr_mfile_encoding *encs[] = {&pr_mfile_enc_dense, &pr_mfile_enc_sparse,
                                       &pr_mfile_enc_quant8, &pr_mfile_enc_kmeans4};
    uint64_t stored[4] = {0};
    for (int e = 0; e < 4; e++) {
        pr_mfile_writer *wr = pr_mfile_writer_open(path, -1);
        CHECK(wr && pr_mfile_writer_add_tensor(wr, "w", w, encs[e]->id) == PR_OK);
        CHECK(pr_mfile_writer_commit(wr) == PR_OK);
        pr_mfile_chunk_info *ci = NULL;
        int n = 0;
        CHECK(pr_mfile_info(path, NULL, &ci, &n) == PR_OK);
        for (int i = 0; i < n; i++)
            if (ci[i].kind == PR_MFILE_TENSOR) {
                CHECK(ci[i].encoding == encs[e]->id);
                CHECK(strcmp(pr_mfile_encoding_find(ci[i].encoding)->name, encs[e]->name) == 0);
                stored[e] = ci[i].stored_bytes;
            }
        free(ci);
        char *man;
        char **names;
        pr_tensor **ts;
        CHECK(pr_mfile_read(path, &man, &names, &ts, &n) == PR_OK);
        CHECK(n == 1 && pr_tensor_same_shape(ts[0], w));
        CHECK(count_nonzero(ts[0]) == count_nonzero(w));
        if (e < 2)
            CHECK(memcmp(pr_tensor_data(ts[0]), pr_tensor_data(w), 400000 * 4) == 0);
        pr_mfile_read_free(man, names, ts, n);
    }
    printf("  [500,800] at 92%%: dense %llu, sparse %llu, quant8 %llu, kmeans4 %llu bytes stored\n",
           (unsigned long long)stored[0], (unsigned long long)stored[1],
           (unsigned long long)stored[2], (unsigned long long)stored[3]);
    CHECK(stored[1] < stored[0] && stored[2] < stored[1] && stored[3] < stored[2]);
    CHECK(pr_mfile_encoding_by_name("kmeans4") == &pr_mfile_enc_kmeans4);
    CHECK(pr_mfile_encoding_find(PR_ENC_QUANT8) == &pr_mfile_enc_quant8);
    pr_tensor_release(w);
    unlink(path);
    rmdir(dir);
}

/* ---- corrupt chunks ---- */

static pr_tensor *dec(const pr_mfile_encoding *e, const uint8_t *b, size_t n, pr_dtype dt,
                      int ndim, const int64_t *shape)
{
    return e->decode(b, n, dt, ndim, shape, "bad");
}

static size_t head(uint8_t *b, uint64_t nnz, uint64_t il)
{
    pr_put_le64(b, nnz);
    pr_put_le64(b + 8, il);
    return 16;
}

static void test_corrupt(void)
{
    int64_t shape[1] = {10};
    uint8_t b[256];
    size_t n;
    const pr_mfile_encoding *sp = &pr_mfile_enc_sparse, *q8 = &pr_mfile_enc_quant8,
                            *km = &pr_mfile_enc_kmeans4;
    float one = 1.0f;

    /* a good sparse chunk first: positions 2 and 9 */
    n = head(b, 2, 2);
    b[n++] = 2;
    b[n++] = 6;
    memcpy(b + n, &one, 4);
    memcpy(b + n + 4, &one, 4);
    n += 8;
    pr_tensor *t = dec(sp, b, n, PR_FLOAT32, 1, shape);
    CHECK(t && pr_tensor_f32(t)[2] == 1.0f && pr_tensor_f32(t)[9] == 1.0f && count_nonzero(t) == 2);
    pr_tensor_release(t);
    /* index out of range (9 + 1 + 1 = 11 > 10) */
    b[17] = 7;
    CHECK(!dec(sp, b, n, PR_FLOAT32, 1, shape) && has_error("past the end"));
    b[17] = 6;
    /* count above numel */
    pr_put_le64(b, 11);
    CHECK(!dec(sp, b, n, PR_FLOAT32, 1, shape) && has_error("non-zeros declared"));
    /* counts that disagree with the bytes */
    pr_put_le64(b, 3);
    CHECK(!dec(sp, b, n, PR_FLOAT32, 1, shape) && has_error("damaged"));
    pr_put_le64(b, 2);
    CHECK(!dec(sp, b, n - 1, PR_FLOAT32, 1, shape) && has_error("value bytes"));
    CHECK(!dec(sp, b, 10, PR_FLOAT32, 1, shape) && has_error("too short"));
    /* an index run with a byte left over / a varint cut short */
    n = head(b, 1, 2);
    b[n++] = 1;
    b[n++] = 1;
    memcpy(b + n, &one, 4);
    n += 4;
    CHECK(!dec(sp, b, n, PR_FLOAT32, 1, shape) && has_error("left over"));
    n = head(b, 1, 1);
    b[n++] = 0x81;
    memcpy(b + n, &one, 4);
    n += 4;
    CHECK(!dec(sp, b, n, PR_FLOAT32, 1, shape) && has_error("ends inside"));
    /* huge varint */
    n = head(b, 1, 10);
    memset(b + n, 0xff, 10);
    n += 10;
    memcpy(b + n, &one, 4);
    n += 4;
    CHECK(!dec(sp, b, n, PR_FLOAT32, 1, shape) && (has_error("longer") || has_error("past")));

    /* quant8: bad scale, dtype, counts */
    n = head(b, 1, 1);
    float sc = 0.0f;
    memcpy(b + n, &sc, 4);
    b[n + 4] = 0;
    n += 5;
    b[n++] = 3;    /* position 3 */
    b[n++] = 200;  /* code */
    CHECK(!dec(q8, b, n, PR_FLOAT32, 1, shape) && has_error("scale"));
    sc = 0.5f;
    memcpy(b + 16, &sc, 4);
    t = dec(q8, b, n, PR_FLOAT32, 1, shape);
    CHECK(t && pr_tensor_f32(t)[3] == 100.0f && count_nonzero(t) == 1);
    pr_tensor_release(t);
    CHECK(!dec(q8, b, n, PR_INT64, 1, shape) && has_error("float32"));
    CHECK(!dec(q8, b, n + 1, PR_FLOAT32, 1, shape) && has_error("codes"));
    sc = NAN;
    memcpy(b + 16, &sc, 4);
    CHECK(!dec(q8, b, n, PR_FLOAT32, 1, shape) && has_error("scale"));

    /* kmeans: bad n, code past the codebook, non-finite centroid */
    n = 0;
    b[n++] = 1;                      /* 1 bit: 2 centroids */
    n += head(b + n, 1, 1);
    float c0 = -1.0f, c1 = 2.0f;
    memcpy(b + n, &c0, 4);
    memcpy(b + n + 4, &c1, 4);
    n += 8;
    b[n++] = 4;                      /* position 4 */
    b[n++] = 1;                      /* code 1 */
    t = dec(km, b, n, PR_FLOAT32, 1, shape);
    CHECK(t && pr_tensor_f32(t)[4] == 2.0f && count_nonzero(t) == 1);
    pr_tensor_release(t);
    b[n - 1] = 2;
    CHECK(!dec(km, b, n, PR_FLOAT32, 1, shape) && has_error("codebook"));
    b[n - 1] = 1;
    b[0] = 0;
    CHECK(!dec(km, b, n, PR_FLOAT32, 1, shape) && has_error("bits"));
    b[0] = 9;
    CHECK(!dec(km, b, n, PR_FLOAT32, 1, shape) && has_error("bits"));
    b[0] = 2;  /* 4 centroids: the chunk is now too short for its codebook */
    CHECK(!dec(km, b, n, PR_FLOAT32, 1, shape) && has_error("damaged"));
    b[0] = 1;
    c1 = INFINITY;
    memcpy(b + 21, &c1, 4);
    CHECK(!dec(km, b, n, PR_FLOAT32, 1, shape) && has_error("centroid"));
    CHECK(!dec(km, b, 0, PR_FLOAT32, 1, shape) && has_error("bits"));

    /* every truncation of a real chunk is refused, and no flip of a byte crashes */
    int64_t s2[2] = {13, 11};
    pr_tensor *w = random_sparse(2, s2, 0.7, 1.0);
    const pr_mfile_encoding *all[] = {sp, q8, km};
    for (int e = 0; e < 3; e++) {
        uint8_t *raw;
        uint64_t len;
        CHECK(all[e]->encode(w, &raw, &len) == PR_OK);
        int refused = 1;
        for (uint64_t cut = 0; cut < len; cut++) {
            pr_tensor *r = dec(all[e], raw, cut, PR_FLOAT32, 2, s2);
            refused &= r == NULL;
            pr_tensor_release(r);
        }
        CHECK_MSG(refused, "%s: a truncated chunk decoded", all[e]->name);
        for (uint64_t i = 0; i < len; i++)
            for (int bit = 0; bit < 8; bit += 3) {
                raw[i] ^= (uint8_t)(1 << bit);
                pr_tensor_release(dec(all[e], raw, len, PR_FLOAT32, 2, s2));
                raw[i] ^= (uint8_t)(1 << bit);
            }
        free(raw);
    }
    pr_tensor_release(w);
}


/* ---- execution plans ---- */

static double max_abs_diff(pr_tensor *a, pr_tensor *b)
{
    double m = 0;
    for (int64_t i = 0, n = pr_tensor_numel(a); i < n; i++) {
        double d = fabs((double)pr_tensor_f32(a)[i] - pr_tensor_f32(b)[i]);
        m = d > m ? d : m;
    }
    return m;
}

static void test_exec_plans(void)
{
    const char *lin_names[] = {"in", "out"};
    double lin_vals[] = {37, 11};
    const char *conv_names[] = {"in", "out", "kh", "stride_h", "pad_h"};
    double conv_vals[] = {3, 6, 3, 2, 1};
    pr_module *mods[2] = {pr_module_new("Linear", 2, lin_names, lin_vals),
                          pr_module_new("Conv2d", 5, conv_names, conv_vals)};
    int64_t xl[2] = {9, 37}, xc[4] = {5, 3, 11, 10};
    pr_tensor *xs[2] = {pr_tensor_randn(2, xl), pr_tensor_randn(4, xc)};
    const char *formats[] = {"csr", "bsr1x4", "bsr4x1", "direct"};
    for (int k = 0; k < 2; k++) {
        pr_module *m = mods[k];
        CHECK(m != NULL);
        pr_tensor *w = m->params[0];
        pr_tensor *mask = random_sparse(w->ndim, w->shape, 0.75, 1.0);
        CHECK(pr_param_set_mask(w, mask) == PR_OK);
        pr_tensor_release(mask);
        CHECK(pr_sparse_exec_set(m, "csr") < 0 && has_error("eval"));
        pr_module_train(m, 0);
        int prev = pr_set_grad_enabled(0);
        pr_tensor *y0 = pr_module_forward(m, xs[k]);
        CHECK(y0 != NULL);
        for (int f = 0; f < (k ? 4 : 3); f++) {
            CHECK(pr_sparse_exec_set(m, formats[f]) == PR_OK);
            CHECK(strcmp(pr_sparse_exec_name(m), formats[f]) == 0);
            pr_tensor *y = pr_module_forward(m, xs[k]);
            CHECK(y && y0 && pr_tensor_same_shape(y, y0));
            if (y && y0)
                CHECK_MSG(max_abs_diff(y, y0) <= 1e-4, "%s %s: %g", m->vt->kind, formats[f],
                          max_abs_diff(y, y0));
            pr_tensor_release(y);
        }
        CHECK(pr_sparse_exec_set(m, "nm2:4") < 0 && has_error("2 non-zeros"));
        CHECK(pr_sparse_exec_set(m, "coo") < 0 && has_error("unknown execution plan"));
        /* a wrong input is an error from the plan too */
        CHECK(pr_module_forward(m, xs[1 - k]) == NULL && has_error("plan"));
        /* The plan never runs an old layer: it packs again after the weight is replaced (an
         * unmasked copy here), edited in place (scaled, a bias filled, one element set), or
         * masked anew; each time it gives what the layer's own forward gives. */
        CHECK(pr_sparse_exec_set(m, k ? "direct" : "csr") == PR_OK);
        for (int edit = 0; edit < 5; edit++) {
            if (edit == 0) {
                pr_tensor *old = m->params[0];
                m->params[0] = pr_tensor_clone(old);
                pr_tensor_release(old);
            } else if (edit == 1) {
                CHECK(pr_scale_(m->params[0], 3.0) == PR_OK);
            } else if (edit == 2) {
                CHECK(pr_tensor_fill_(m->params[1], 0.5) == PR_OK);
            } else if (edit == 3) {
                CHECK(pr_tensor_set_flat(m->params[0], 4, 100.0) == PR_OK);
            } else {
                pr_tensor *w2 = m->params[0];
                pr_tensor *mask2 = random_sparse(w2->ndim, w2->shape, 0.5, 1.0);
                CHECK(pr_param_set_mask(w2, mask2) == PR_OK);
                pr_tensor_release(mask2);
            }
            pr_tensor *want = m->vt->forward(m, xs[k]), *got = pr_module_forward(m, xs[k]);
            CHECK_MSG(want && got && max_abs_diff(got, want) <= 1e-3, "%s after edit %d: %g",
                      m->vt->kind, edit, want && got ? max_abs_diff(got, want) : -1.0);
            CHECK(strcmp(pr_sparse_exec_name(m), k ? "direct" : "csr") == 0);
            pr_tensor_release(want);
            pr_tensor_release(got);
        }
        pr_set_grad_enabled(prev);
        pr_module_train(m, 1);
        CHECK(strcmp(pr_sparse_exec_name(m), "dense") == 0);
        pr_tensor_release(y0);
        pr_module_release(m);
    }
    pr_tensor_release(xs[0]);
    pr_tensor_release(xs[1]);
}

int main(void)
{
    pr_rng_seed(1234);
    RUN(test_sparse_round_trip);
    RUN(test_quant_round_trip);
    RUN(test_kmeans_bits);
    RUN(test_file);
    RUN(test_corrupt);
    RUN(test_exec_plans);
    return CHECK_DONE();
}
