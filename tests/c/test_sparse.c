/* test_sparse.c: sparse formats (pack/unpack/validate) and kernels against dense results, on
 * awkward shapes (sizes not divisible by blocks or vectors, empty and fully dense rows, 0% and
 * 100% sparsity) for every format, both code paths (generic and AVX2) and 1 or 2 threads. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "rng.h"
#include "sparse/sparse.h"
#include "tensor.h"

static const pr_sparse_format formats[] = {PR_SPARSE_CSR, PR_SPARSE_BSR_1X4, PR_SPARSE_BSR_4X1,
                                           PR_SPARSE_NM_2_4};
#define NFMT ((int)(sizeof formats / sizeof formats[0]))

/* Every code path: the best one this CPU has, AVX2 even on an AVX-512 CPU, portable C. */
static const pr_sparse_kernel modes[3] = {PR_SPARSE_KERNEL_AUTO, PR_SPARSE_KERNEL_AVX2,
                                          PR_SPARSE_KERNEL_GENERIC};
static const char *const mode_names[3] = {"auto", "avx2-capped", "generic"};

static float randf(void) { return (float)(pr_rng_uniform() * 2.0 - 1.0); }

/* A weight [rows, cols] with the given fraction of zeros; row 0 fully dense and row 1 empty
 * when there are enough rows, so both edge cases appear in every kernel run. For nm, keeps at
 * most 2 per group of 4 (then applies the sparsity on top). */
static float *make_weight(int64_t rows, int64_t cols, double sparsity, int nm)
{
    float *w = malloc((size_t)(rows * cols + 1) * sizeof(float));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            float v = randf();
            if (v == 0.0f)
                v = 0.5f;
            int keep = pr_rng_uniform() >= sparsity;
            if (rows >= 3 && r == 0 && !nm)
                keep = 1;
            if (rows >= 3 && r == 1)
                keep = 0;
            w[r * cols + c] = keep ? v : 0.0f;
        }
    if (nm)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t g = 0; g < cols; g += 4) {
                int width = (int)(cols - g < 4 ? cols - g : 4);
                int drop = width > 2 ? (int)pr_rng_below(width) : -1;
                int drop2 = width > 3 ? (drop + 1 + (int)pr_rng_below(width - 1)) % width : -1;
                if (drop >= 0)
                    w[r * cols + g + drop] = 0.0f;
                if (drop2 >= 0)
                    w[r * cols + g + drop2] = 0.0f;
            }
    return w;
}

static float *make_input(int64_t n)
{
    float *x = malloc((size_t)(n + 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        x[i] = randf();
    return x;
}

/* Reference y[N, rows] = x . W^T + b in double, and the bound sum |w||x| for the tolerance. */
static void dense_linear(const float *x, double *y, double *mag, const float *w, const float *b,
                         int64_t n, int64_t rows, int64_t cols)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t r = 0; r < rows; r++) {
            double s = b ? b[r] : 0.0, m = b ? fabs(b[r]) : 0.0;
            for (int64_t c = 0; c < cols; c++) {
                s += (double)w[r * cols + c] * x[i * cols + c];
                m += fabs((double)w[r * cols + c] * x[i * cols + c]);
            }
            y[i * rows + r] = s;
            mag[i * rows + r] = m;
        }
}

static int close_all(const float *got, const double *ref, const double *mag, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!(fabs(got[i] - ref[i]) <= 1e-5 * mag[i] + 1e-6)) {
            fprintf(stderr, "  element %lld: got %.7g want %.7g\n", (long long)i, got[i], ref[i]);
            return 0;
        }
    return 1;
}

static void test_roundtrip(void)
{
    const int64_t shapes[][2] = {{0, 0}, {0, 5}, {5, 0}, {1, 1}, {3, 7}, {13, 13}, {6, 801},
                                 {9, 70001}, {2, 262150}};
    const double sps[] = {0.0, 0.5, 0.9, 1.0};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (size_t pi = 0; pi < sizeof sps / sizeof sps[0]; pi++)
            for (int f = 0; f < NFMT; f++) {
                int64_t rows = shapes[si][0], cols = shapes[si][1];
                if (rows * cols > 600000 && pi != 2)
                    continue; /* the wide shapes only need one sparsity to reach int32 indices */
                int nm = formats[f] == PR_SPARSE_NM_2_4;
                float *w = make_weight(rows, cols, sps[pi], nm);
                pr_sparse *s = pr_sparse_from_dense(w, rows, cols, formats[f]);
                CHECK_MSG(s != NULL, "%s [%lld,%lld]: %s", pr_sparse_format_name(formats[f]),
                          (long long)rows, (long long)cols, pr_last_error());
                if (!s) {
                    free(w);
                    continue;
                }
                CHECK_MSG(pr_sparse_check(s) == PR_OK, "%s", pr_last_error());
                float *back = malloc((size_t)(rows * cols + 1) * sizeof(float));
                memset(back, 0x7f, (size_t)(rows * cols + 1) * sizeof(float));
                CHECK(pr_sparse_to_dense(s, back) == PR_OK);
                CHECK_MSG(memcmp(w, back, (size_t)(rows * cols) * sizeof(float)) == 0,
                          "%s [%lld,%lld] sparsity %g: round trip differs",
                          pr_sparse_format_name(formats[f]), (long long)rows, (long long)cols, sps[pi]);
                int64_t nz = 0;
                for (int64_t i = 0; i < rows * cols; i++)
                    nz += w[i] != 0.0f;
                CHECK(pr_sparse_count_nonzero(s) == nz);
                if (formats[f] == PR_SPARSE_CSR) {
                    CHECK(s->nnz == nz);
                    CHECK(s->idx_type == (cols <= 65536 ? PR_SPARSE_U16 : PR_SPARSE_I32));
                }
                if (formats[f] == PR_SPARSE_BSR_1X4)
                    CHECK(s->idx_type == ((cols + 3) / 4 <= 65536 ? PR_SPARSE_U16 : PR_SPARSE_I32));
                CHECK(pr_sparse_nbytes(s) > 0 || rows * cols == 0);
                pr_sparse_free(s);
                free(back);
                free(w);
            }
}

/* Copies s with an int64 row_ptr, the layout for matrices past 2^31 blocks. */
static pr_sparse *widen_row_ptr(const pr_sparse *s)
{
    int64_t R = (s->rows + s->block_rows - 1) / s->block_rows;
    pr_sparse *t = pr_sparse_new(s->format, s->rows, s->cols, s->nblocks);
    if (!t)
        return NULL;
    free(t->row_ptr);
    t->row_ptr = malloc((size_t)(R + 1) * sizeof(int64_t));
    t->ptr_type = PR_SPARSE_I64;
    for (int64_t r = 0; r <= R; r++)
        ((int64_t *)t->row_ptr)[r] = ((const int32_t *)s->row_ptr)[r];
    memcpy(t->col_idx, s->col_idx, (size_t)s->nblocks * (t->idx_type == PR_SPARSE_U16 ? 2 : 4));
    memcpy(t->values, s->values, (size_t)s->nnz * sizeof(float));
    return t;
}

static void run_kernels(int64_t rows, int64_t cols, double sparsity, const int64_t *batches,
                        int nb, int wide_ptr)
{
    for (int f = 0; f < NFMT; f++) {
        int nm = formats[f] == PR_SPARSE_NM_2_4;
        float *w = make_weight(rows, cols, sparsity, nm);
        float *bias = make_input(rows);
        pr_sparse *s = pr_sparse_from_dense(w, rows, cols, formats[f]);
        CHECK_MSG(s != NULL, "%s", pr_last_error());
        if (s && wide_ptr && !nm) {
            pr_sparse *t = widen_row_ptr(s);
            pr_sparse_free(s);
            s = t;
            CHECK(s && pr_sparse_check(s) == PR_OK);
        }
        for (int bi = 0; s && bi < nb; bi++) {
            int64_t n = batches[bi];
            float *x = make_input(n * cols);
            float *y = malloc((size_t)(n * rows + 1) * sizeof(float));
            double *ref = malloc((size_t)(n * rows + 1) * sizeof(double));
            double *mag = malloc((size_t)(n * rows + 1) * sizeof(double));
            float *xt = malloc((size_t)(n * cols + 1) * sizeof(float));
            float *c = malloc((size_t)(n * rows + 1) * sizeof(float));
            double *reft = malloc((size_t)(n * rows + 1) * sizeof(double));
            double *magt = malloc((size_t)(n * rows + 1) * sizeof(double));
            for (int64_t i = 0; i < n; i++)
                for (int64_t k = 0; k < cols; k++)
                    xt[k * n + i] = x[i * cols + k];
            for (int ub = 0; ub < 2; ub++) {
                const float *b = ub ? bias : NULL;
                dense_linear(x, ref, mag, w, b, n, rows, cols);
                for (int64_t r = 0; r < rows; r++)
                    for (int64_t i = 0; i < n; i++) {
                        reft[r * n + i] = ref[i * rows + r];
                        magt[r * n + i] = mag[i * rows + r];
                    }
                for (int mode = 0; mode < 3; mode++)
                    for (int th = 1; th <= 2; th++) {
                        pr_sparse_set_kernel(modes[mode]);
                        pr_sparse_set_threads(th);
                        memset(y, 0xff, (size_t)(n * rows) * sizeof(float)); /* NaN poison */
                        CHECK(pr_sparse_linear(x, y, s, b, n) == PR_OK);
                        CHECK_MSG(close_all(y, ref, mag, n * rows),
                                  "linear %s [%lld,%lld] sp %g batch %lld bias %d %s threads %d%s",
                                  pr_sparse_format_name(formats[f]), (long long)rows,
                                  (long long)cols, sparsity, (long long)n, ub,
                                  mode_names[mode], th,
                                  wide_ptr ? " int64 row_ptr" : "");
                        memset(c, 0xff, (size_t)(n * rows) * sizeof(float));
                        CHECK(pr_sparse_matmul_dense(xt, c, s, b, n) == PR_OK);
                        CHECK_MSG(close_all(c, reft, magt, n * rows),
                                  "matmul_dense %s [%lld,%lld] sp %g n %lld bias %d %s threads %d",
                                  pr_sparse_format_name(formats[f]), (long long)rows,
                                  (long long)cols, sparsity, (long long)n, ub,
                                  mode ? "generic" : pr_sparse_kernel_name(), th);
                    }
            }
            free(x), free(y), free(ref), free(mag), free(xt), free(c), free(reft), free(magt);
        }
        pr_sparse_set_kernel(PR_SPARSE_KERNEL_AUTO);
        pr_sparse_set_threads(0);
        pr_sparse_free(s);
        free(w);
        free(bias);
    }
}

static void test_kernels_small(void)
{
    const int64_t batches[] = {1, 2, 3, 7, 8, 9, 17, 67, 257};
    const int64_t shapes[][2] = {{1, 1}, {3, 7}, {5, 13}, {13, 13}, {4, 16}, {9, 33}, {4, 0}};
    const double sps[] = {0.0, 0.3, 0.7, 1.0};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (size_t pi = 0; pi < sizeof sps / sizeof sps[0]; pi++)
            run_kernels(shapes[si][0], shapes[si][1], sps[pi], batches, 9, 0);
}

static void test_kernels_large(void)
{
    /* Big enough that the thread pool really splits the work. */
    const int64_t batches[] = {1, 3, 64, 257};
    run_kernels(37, 801, 0.9, batches, 4, 0);
    run_kernels(50, 800, 0.5, batches, 4, 0);
    run_kernels(66, 130, 0.95, batches, 4, 1);
    const int64_t few[] = {1, 9};
    run_kernels(5, 70001, 0.99, few, 2, 0); /* int32 column indices */
}

static void test_bad_args(void)
{
    float w[8] = {1, 1, 1, 0, 0, 0, 0, 0};
    CHECK(pr_sparse_from_dense(w, 2, 4, PR_SPARSE_NM_2_4) == NULL);
    CHECK(strstr(pr_last_error(), "2:4") != NULL);
    CHECK(pr_sparse_from_dense(w, -1, 4, PR_SPARSE_CSR) == NULL);
    CHECK(pr_sparse_from_dense(w, 2, 4, (pr_sparse_format)17) == NULL);
    CHECK(pr_sparse_new(PR_SPARSE_CSR, 2, 4, 9) == NULL);
    CHECK(pr_sparse_new(PR_SPARSE_NM_2_4, 2, 4, 3) == NULL);
    /* A hostile header: fits the shape, but no byte count for it fits memory. */
    CHECK(pr_sparse_new(PR_SPARSE_CSR, (int64_t)1 << 31, (int64_t)1 << 31, (int64_t)1 << 61) == NULL);
    CHECK(strstr(pr_last_error(), "too large") != NULL);
    CHECK(pr_sparse_fits_nm(w, 2, 3) == 0);
    CHECK(pr_sparse_fits_nm(w + 1, 2, 3) == 1);
    CHECK(pr_sparse_fits_nm(w + 2, 1, 3) == 1);
    pr_sparse *s = pr_sparse_from_dense(w, 2, 4, PR_SPARSE_CSR);
    float y[2];
    CHECK(pr_sparse_linear(NULL, y, s, NULL, 1) < 0);
    CHECK(pr_sparse_linear(w, y, NULL, NULL, 1) < 0);
    CHECK(pr_sparse_linear(w, y, s, NULL, -1) < 0);
    CHECK(pr_sparse_linear(w, y, s, NULL, 0) == PR_OK);
    pr_sparse_free(s);
    pr_sparse_free(NULL);
    CHECK(pr_sparse_format_from_name("bsr4x1") == PR_SPARSE_BSR_4X1);
    CHECK(pr_sparse_format_from_name("coo") == -1);
    CHECK(strcmp(pr_sparse_format_name(PR_SPARSE_NM_2_4), "nm2:4") == 0);
}

static int check_fails_with(const pr_sparse *s, const char *needle)
{
    int rc = pr_sparse_check(s);
    if (rc != PR_EFORMAT || !strstr(pr_last_error(), needle)) {
        fprintf(stderr, "  check: rc %d, message \"%s\", wanted \"%s\"\n", rc, pr_last_error(), needle);
        return 0;
    }
    return 1;
}

static void test_validator(void)
{
    float *w = make_weight(6, 10, 0.5, 0);
    pr_sparse *s = pr_sparse_from_dense(w, 6, 10, PR_SPARSE_CSR);
    CHECK(pr_sparse_check(s) == PR_OK);
    int32_t *rp = s->row_ptr;
    uint16_t *ci = s->col_idx;

    uint16_t save = ci[0];
    ci[0] = 10; /* one past the last column */
    CHECK(check_fails_with(s, "out of range"));
    ci[0] = save;

    /* A row 2 (rows 0 and 1 are dense and empty) with two entries: swap them. */
    int64_t k = rp[2];
    CHECK(rp[3] - rp[2] >= 2);
    uint16_t a0 = ci[k], a1 = ci[k + 1];
    ci[k] = a1;
    ci[k + 1] = a0;
    CHECK(check_fails_with(s, "not strictly increasing"));
    ci[k] = a0;
    ci[k + 1] = a0;
    CHECK(check_fails_with(s, "not strictly increasing")); /* duplicate */
    ci[k + 1] = a1;
    CHECK(pr_sparse_check(s) == PR_OK);

    int32_t r3 = rp[3];
    rp[3] = rp[2] - 1; /* non-monotone */
    CHECK(check_fails_with(s, "not monotone"));
    rp[3] = r3;
    rp[0] = 1;
    CHECK(check_fails_with(s, "row_ptr[0]"));
    rp[0] = 0;
    CHECK(rp[6] > rp[5]); /* the last row has entries, so the next edit keeps row_ptr monotone */
    rp[6] -= 1; /* row_ptr ends before the last block */
    CHECK(check_fails_with(s, "ends at"));
    rp[6] += 1;
    s->nnz += 1; /* count disagrees */
    CHECK(check_fails_with(s, "nnz"));
    s->nnz -= 1;
    s->nblocks += 1;
    s->nnz += 1;
    CHECK(check_fails_with(s, "ends at"));
    s->nblocks -= 1;
    s->nnz -= 1;
    s->idx_type = PR_SPARSE_U8;
    CHECK(check_fails_with(s, "col_idx type"));
    s->idx_type = PR_SPARSE_U16;
    s->format = (pr_sparse_format)9;
    CHECK(check_fails_with(s, "unknown format"));
    s->format = PR_SPARSE_CSR;
    s->block_cols = 4;
    CHECK(check_fails_with(s, "block shape"));
    s->block_cols = 1;
    s->rows = -3;
    CHECK(check_fails_with(s, "bad shape"));
    s->rows = 6;
    CHECK(pr_sparse_check(s) == PR_OK);
    CHECK(check_fails_with(NULL, "NULL"));
    pr_sparse_free(s);

    /* BSR: block column index is bounded by ceil(cols / 4). */
    s = pr_sparse_from_dense(w, 6, 10, PR_SPARSE_BSR_1X4);
    CHECK(pr_sparse_check(s) == PR_OK);
    ci = s->col_idx;
    save = ci[0];
    ci[0] = 3;
    CHECK(check_fails_with(s, "out of range"));
    ci[0] = save;
    CHECK(pr_sparse_check(s) == PR_OK);
    pr_sparse_free(s);
    free(w);

    /* N:M: offsets must increase inside a group and stay below 4; slots past the last
     * column must hold zero. */
    w = make_weight(3, 6, 0.2, 1);
    s = pr_sparse_from_dense(w, 3, 6, PR_SPARSE_NM_2_4);
    CHECK(s && pr_sparse_check(s) == PR_OK);
    uint8_t *off = s->col_idx;
    uint8_t o0 = off[0], o1 = off[1];
    off[0] = off[1];
    CHECK(check_fails_with(s, "not increasing"));
    off[0] = o0;
    off[1] = 4;
    CHECK(check_fails_with(s, "not increasing"));
    off[1] = o1;
    /* Group 1 of row 0 covers columns 4..5: slot offsets 2,3 are past the edge. */
    uint8_t p0 = off[2], p1 = off[3];
    float v3 = s->values[3];
    off[2] = 2;
    off[3] = 3;
    s->values[3] = 1.0f;
    CHECK(check_fails_with(s, "beyond"));
    off[2] = p0;
    off[3] = p1;
    s->values[3] = v3;
    CHECK(pr_sparse_check(s) == PR_OK);
    s->nblocks -= 2;
    s->nnz -= 2;
    CHECK(check_fails_with(s, "slots"));
    pr_sparse_free(s);
    free(w);
}

/* Two host threads calling the kernels at once: one gets the pool, the other runs its parts
 * itself; both must get exact, repeatable answers. */
typedef struct {
    const pr_sparse *s;
    const float *x;
    const float *want; /* the single-threaded result */
    int64_t batch;
    int bad;
} conc_arg;

static void *conc_main(void *p)
{
    conc_arg *a = p;
    float *y = malloc((size_t)(a->batch * a->s->rows) * sizeof(float));
    for (int it = 0; it < 40; it++) {
        if (pr_sparse_linear(a->x, y, a->s, NULL, a->batch) != PR_OK ||
            memcmp(y, a->want, (size_t)(a->batch * a->s->rows) * sizeof(float)) != 0)
            a->bad++;
    }
    free(y);
    return NULL;
}

static void test_concurrent(void)
{
    int64_t rows = 50, cols = 800;
    float *w = make_weight(rows, cols, 0.5, 0);
    pr_sparse *s = pr_sparse_from_dense(w, rows, cols, PR_SPARSE_CSR);
    conc_arg args[2] = {{.s = s, .batch = 3}, {.s = s, .batch = 70}};
    float *want[2];
    pr_sparse_set_threads(2);
    for (int t = 0; t < 2; t++) {
        args[t].x = make_input(args[t].batch * cols);
        want[t] = malloc((size_t)(args[t].batch * rows) * sizeof(float));
        /* Parts write disjoint outputs and each output's sum order is fixed, so the pooled
         * result equals this one bit for bit. */
        CHECK(pr_sparse_linear(args[t].x, want[t], s, NULL, args[t].batch) == PR_OK);
        args[t].want = want[t];
    }
    pthread_t th[2];
    for (int t = 0; t < 2; t++)
        CHECK(pthread_create(&th[t], NULL, conc_main, &args[t]) == 0);
    for (int t = 0; t < 2; t++) {
        pthread_join(th[t], NULL);
        CHECK_MSG(args[t].bad == 0, "thread %d: %d wrong results", t, args[t].bad);
        free((void *)args[t].x);
        free(want[t]);
    }
    pr_sparse_set_threads(0);
    pr_sparse_free(s);
    free(w);
}

static void test_tensor(void)
{
    int64_t wshape[2] = {7, 5}, xshape[2] = {5, 4};
    pr_rng_seed(7);
    pr_tensor *w = pr_tensor_randn(2, wshape);
    float *wd = pr_tensor_f32(w);
    for (int i = 0; i < 35; i += 3)
        wd[i] = 0.0f;
    pr_tensor *xT = pr_tensor_randn(2, xshape);
    pr_tensor *x = pr_tensor_transpose(xT, 0, 1); /* [4, 5], not contiguous */
    int64_t bshape[1] = {7};
    pr_tensor *b = pr_tensor_randn(1, bshape);
    CHECK(w && xT && x && b);
    pr_sparse *s = pr_sparse_from_tensor(w, PR_SPARSE_CSR);
    CHECK(s && s->rows == 7 && s->cols == 5);
    pr_tensor *back = pr_sparse_to_tensor(s);
    CHECK(back && memcmp(pr_tensor_f32(back), wd, 35 * sizeof(float)) == 0);
    pr_tensor *y = pr_sparse_linear_tensor(x, s, b);
    CHECK(y && y->ndim == 2 && y->shape[0] == 4 && y->shape[1] == 7);
    for (int i = 0; y && i < 4; i++)
        for (int o = 0; o < 7; o++) {
            double ref = pr_tensor_get_flat(b, o);
            for (int k = 0; k < 5; k++)
                ref += wd[o * 5 + k] * pr_tensor_get_flat(x, i * 5 + k);
            CHECK_NEAR(pr_tensor_get_flat(y, i * 7 + o), ref, 1e-5);
        }
    pr_tensor *bad = pr_sparse_linear_tensor(xT, s, b); /* [5,4]: wrong width */
    CHECK(bad == NULL && strstr(pr_last_error(), "[5,4]") != NULL);
    pr_tensor *x1 = pr_tensor_select(x, 0, 2);
    pr_tensor *y1 = pr_sparse_linear_tensor(x1, s, NULL);
    CHECK(y1 && y1->ndim == 1 && y1->shape[0] == 7);
    if (y1 && y)
        CHECK_NEAR(pr_tensor_get_flat(y1, 3) + pr_tensor_get_flat(b, 3), pr_tensor_get_flat(y, 2 * 7 + 3), 1e-5);
    CHECK(pr_sparse_from_tensor(b, PR_SPARSE_CSR) == NULL);
    pr_tensor_release(y1);
    pr_tensor_release(x1);
    pr_tensor_release(y);
    pr_tensor_release(back);
    pr_sparse_free(s);
    pr_tensor_release(b);
    pr_tensor_release(x);
    pr_tensor_release(xT);
    pr_tensor_release(w);
}

int main(void)
{
    pr_rng_seed(1234);
    printf("kernel path: %s\n", pr_sparse_kernel_name());
    RUN(test_roundtrip);
    RUN(test_bad_args);
    RUN(test_validator);
    RUN(test_kernels_small);
    RUN(test_kernels_large);
    RUN(test_concurrent);
    RUN(test_tensor);
    return CHECK_DONE();
}
