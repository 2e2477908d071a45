/* ops/matmul.c: matmul and linear of ops.def on OpenBLAS's sgemm: forward, backward and the
 * public wrappers of ops.h.
 *
 * Operands reach sgemm as they are whenever their strides fit BLAS's (leading dimension,
 * transpose flag) description, so a transposed view of a contiguous matrix costs nothing; only
 * layouts BLAS cannot describe are packed. The batched product walks the broadcast batch dims
 * and may write several batches into the same output matrix (beta = 1): that is how the
 * backward sums gradients over broadcast batch dims without a temporary. These kernels are
 * serial themselves and leave the parallelism to OpenBLAS, so BLAS is never called from inside
 * one of our parallel regions. */
#include <cblas.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "ops.h"

/* A logical rows x cols matrix at p with element strides rs (between rows), cs (columns). */
typedef struct mat {
    const float *p;
    int64_t rows, cols, rs, cs;
} mat;

static mat mat_of(const float *p, int64_t rows, int64_t cols, int64_t rs, int64_t cs)
{
    mat m = {p, rows, cols, rs, cs};
    return m;
}

/* The BLAS description of m, or -1 when its strides have none (overlapping or doubly strided
 * rows). A size-1 dim's stride is irrelevant, which is what lets [1,K] and [K,1] views pass. */
static int blas_desc(const mat *m, enum CBLAS_TRANSPOSE *tr, int *ld)
{
    int64_t l = -1;
    if ((m->cs == 1 || m->cols <= 1) && (m->rows <= 1 || m->rs >= m->cols)) {
        *tr = CblasNoTrans;
        l = m->rows <= 1 ? m->cols : m->rs;
    } else if ((m->rs == 1 || m->rows <= 1) && (m->cols <= 1 || m->cs >= m->rows)) {
        *tr = CblasTrans;
        l = m->cols <= 1 ? m->rows : m->cs;
    }
    if (l < 0 || l > INT_MAX)
        return -1;
    *ld = l < 1 ? 1 : (int)l;
    return 0;
}

/* A row-major copy of m (malloc'd, caller frees) for the layouts BLAS cannot take. */
static float *pack(const mat *m)
{
    float *d = malloc((size_t)(m->rows * m->cols) * sizeof *d + 1);
    if (!d)
        return NULL;
    for (int64_t i = 0; i < m->rows; i++)
        for (int64_t j = 0; j < m->cols; j++)
            d[i * m->cols + j] = m->p[i * m->rs + j * m->cs];
    return d;
}

/* C[M,N] (row-major, leading dim ldc) = A . B + beta C, A logical [M,K], B logical [K,N]. */
static int gemm(const char *op, const mat *A, const mat *B, float *C, int64_t ldc, float beta)
{
    int64_t M = A->rows, K = A->cols, N = B->cols;
    if (M == 0 || N == 0)
        return PR_OK;
    if (K == 0) { /* A.B is zero: only the beta scaling is left */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return PR_OK;
    }
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX || ldc > INT_MAX)
        return pr_error("%s: matrix of %lld x %lld x %lld is too large for BLAS", op,
                        (long long)M, (long long)K, (long long)N);
    enum CBLAS_TRANSPOSE ta = CblasNoTrans, tb = CblasNoTrans;
    int lda = 1, ldb = 1; /* set by blas_desc, which cannot fail on a packed copy */
    float *pa = NULL, *pb = NULL;
    mat a2 = *A, b2 = *B;
    if (blas_desc(&a2, &ta, &lda) < 0) {
        if (!(pa = pack(A)))
            return pr_error_code(PR_ENOMEM, "%s: out of memory", op);
        a2 = mat_of(pa, M, K, K, 1);
        blas_desc(&a2, &ta, &lda);
    }
    if (blas_desc(&b2, &tb, &ldb) < 0) {
        if (!(pb = pack(B))) {
            free(pa);
            return pr_error_code(PR_ENOMEM, "%s: out of memory", op);
        }
        b2 = mat_of(pb, K, N, N, 1);
        blas_desc(&b2, &tb, &ldb);
    }
    if (M == 1) {
        /* One row (a Linear at batch 1): sgemm's packing costs more than the product; sgemv on
         * the same operands measured 5.6x faster for 500x800. y[N] = B^T a, where B is stored
         * row-major [K,N] (NoTrans) or [N,K] (Trans); a is row 0 of A, or its column 0 when A
         * is stored transposed. */
        int incx = ta == CblasNoTrans ? 1 : lda;
        if (tb == CblasNoTrans)
            cblas_sgemv(CblasRowMajor, CblasTrans, (int)K, (int)N, 1.0f, b2.p, ldb, a2.p, incx, beta, C, 1);
        else
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)N, (int)K, 1.0f, b2.p, ldb, a2.p, incx, beta, C, 1);
    } else {
        cblas_sgemm(CblasRowMajor, ta, tb, (int)M, (int)N, (int)K, 1.0f, a2.p, lda, b2.p, ldb, beta,
                    C, (int)ldc);
    }
    free(pa);
    free(pb);
    return PR_OK;
}

/* ---- batched product ---- */

static int need_f32(const char *op, const pr_tensor *t)
{
    if (t->dtype != PR_FLOAT32)
        return pr_error("%s: expected float32 tensors, got %s", op, pr_dtype_name(t->dtype));
    return PR_OK;
}

static int mismatch(const char *op, const pr_tensor *a, const pr_tensor *b)
{
    char x[96], y[96];
    return pr_error("%s: %s and %s do not match", op, pr_tensor_shape_str(a, x, sizeof x),
                    pr_tensor_shape_str(b, y, sizeof y));
}

/* Batch shape of a @ b (dims before the last two, broadcast) into *nb / bshape. */
static int batch_shape(const char *op, const pr_tensor *a, const pr_tensor *b, int *nb,
                       int64_t *bshape)
{
    if (a->shape[a->ndim - 1] != b->shape[b->ndim - 2])
        return mismatch(op, a, b);
    int na = a->ndim - 2, nbb = b->ndim - 2, n = na > nbb ? na : nbb;
    for (int d = 0; d < n; d++) {
        int da = d - (n - na), db = d - (n - nbb);
        int64_t sa = da >= 0 ? a->shape[da] : 1, sb = db >= 0 ? b->shape[db] : 1;
        if (sa != sb && sa != 1 && sb != 1)
            return mismatch(op, a, b);
        bshape[d] = sa == 1 ? sb : sa;
    }
    *nb = n;
    return PR_OK;
}

/* Element strides of t's batch dims read as batch shape bshape[0..nb-1]; 0 where broadcast. */
static void batch_strides(const pr_tensor *t, int nb, const int64_t *bshape, int64_t *st)
{
    int nt = t->ndim - 2;
    for (int d = 0; d < nb; d++) {
        int dt = d - (nb - nt);
        st[d] = (dt < 0 || t->shape[dt] == 1) ? 0 : t->stride[dt];
    }
    (void)bshape;
}

/* c (+)= a @ b over the broadcast batch. c is contiguous float32 shaped [..., M, N] whose batch
 * dims broadcast to the full batch; where they are broadcast (a gradient being summed), the
 * products accumulate, so c must then start zeroed. a, b, c borrowed. */
static int bmm(const char *op, const pr_tensor *a, const pr_tensor *b, pr_tensor *c)
{
    int nb;
    int64_t bshape[PR_MAX_DIMS], sa[PR_MAX_DIMS], sb[PR_MAX_DIMS], sc[PR_MAX_DIMS];
    int rc = batch_shape(op, a, b, &nb, bshape);
    if (rc < 0)
        return rc;
    int64_t M = a->shape[a->ndim - 2], K = a->shape[a->ndim - 1], N = b->shape[b->ndim - 1];
    batch_strides(a, nb, bshape, sa);
    batch_strides(b, nb, bshape, sb);
    batch_strides(c, nb, bshape, sc);
    int64_t nbatch = 1;
    int accumulate = 0, b_batched = 0;
    for (int d = 0; d < nb; d++) {
        nbatch *= bshape[d];
        if (bshape[d] > 1 && sc[d] == 0)
            accumulate = 1;
        if (bshape[d] > 1 && sb[d] != 0)
            b_batched = 1;
    }
    const float *pa = pr_tensor_f32(a), *pb = pr_tensor_f32(b);
    float *pc = pr_tensor_f32(c);
    int64_t ars = a->stride[a->ndim - 2], acs = a->stride[a->ndim - 1];
    int64_t brs = b->stride[b->ndim - 2], bcs = b->stride[b->ndim - 1];
    mat B0 = mat_of(pb, K, N, brs, bcs);
    /* One shared right operand and a left operand whose batch dims stack onto its rows (any
     * contiguous [B,M,K] @ [K,N]): a single sgemm with B*M rows. */
    if (!b_batched && !accumulate && nbatch > 1 && (acs == 1 || K == 1)) {
        int stack = 1;
        int64_t inner = ars, size = M;
        for (int d = nb - 1; d >= 0 && stack; d--) {
            if (bshape[d] == 1)
                continue;
            stack = sa[d] == inner * size;
            inner = sa[d];
            size = bshape[d];
        }
        if (stack) {
            mat A = mat_of(pa, nbatch * M, K, ars, acs);
            return gemm(op, &A, &B0, pc, N, 0.0f);
        }
    }
    int64_t idx[PR_MAX_DIMS] = {0}, oa = 0, ob = 0, oc = 0;
    for (int64_t i = 0; i < nbatch; i++) {
        mat A = mat_of(pa + oa, M, K, ars, acs), B = mat_of(pb + ob, K, N, brs, bcs);
        rc = gemm(op, &A, &B, pc + oc, N, accumulate ? 1.0f : 0.0f);
        if (rc < 0)
            return rc;
        for (int d = nb - 1; d >= 0; d--) {
            oa += sa[d];
            ob += sb[d];
            oc += sc[d];
            if (++idx[d] < bshape[d])
                break;
            oa -= sa[d] * idx[d];
            ob -= sb[d] * idx[d];
            oc -= sc[d] * idx[d];
            idx[d] = 0;
        }
    }
    return PR_OK;
}

/* A header (no references taken; valid while t is) reading t with its last two dims swapped. */
static pr_tensor swap_last(const pr_tensor *t)
{
    pr_tensor h = *t;
    int d = t->ndim;
    h.shape[d - 1] = t->shape[d - 2];
    h.shape[d - 2] = t->shape[d - 1];
    h.stride[d - 1] = t->stride[d - 2];
    h.stride[d - 2] = t->stride[d - 1];
    return h;
}

/* NumPy's 1-D rule: a vector on the left is a [1,K] row, on the right a [K,1] column, and the
 * added dim is dropped from the result. These return header copies (no references taken,
 * valid while t is) with the dim inserted; other ranks come back unchanged. */
static pr_tensor as_row(const pr_tensor *t)
{
    pr_tensor h = *t;
    if (t->ndim == 1) {
        h.ndim = 2;
        h.shape[0] = 1;
        h.shape[1] = t->shape[0];
        h.stride[0] = t->shape[0] * t->stride[0];
        h.stride[1] = t->stride[0];
    }
    return h;
}

static pr_tensor as_col(const pr_tensor *t)
{
    pr_tensor h = *t;
    if (t->ndim == 1) {
        h.ndim = 2;
        h.shape[1] = 1;
        h.stride[1] = 1;
    }
    return h;
}

/* The product's shape with the 1-D rule's dims kept (*full) and dropped (*out). */
static int matmul_shape(const pr_tensor *x, const pr_tensor *y, int *nfull, int64_t *full,
                        int *nout, int64_t *out)
{
    if (x->ndim < 1 || y->ndim < 1 || x->shape[x->ndim - 1] != y->shape[y->ndim < 2 ? 0 : y->ndim - 2]) {
        if (x->ndim < 1 || y->ndim < 1) {
            char a[96], b[96];
            return pr_error("matmul: expected vectors or matrices, got %s and %s",
                            pr_tensor_shape_str(x, a, sizeof a), pr_tensor_shape_str(y, b, sizeof b));
        }
        return mismatch("matmul", x, y);
    }
    pr_tensor xr = as_row(x), yc = as_col(y);
    int nb;
    int rc = batch_shape("matmul", &xr, &yc, &nb, full);
    if (rc < 0)
        return rc;
    full[nb] = xr.shape[xr.ndim - 2];
    full[nb + 1] = yc.shape[yc.ndim - 1];
    *nfull = nb + 2;
    *nout = 0;
    for (int d = 0; d < nb; d++)
        out[(*nout)++] = full[d];
    if (x->ndim > 1)
        out[(*nout)++] = full[nb];
    if (y->ndim > 1)
        out[(*nout)++] = full[nb + 1];
    return PR_OK;
}

/* A header for a fresh contiguous tensor t (borrowed) reshaped to `shape` of equal numel. */
static pr_tensor contiguous_as(const pr_tensor *t, int ndim, const int64_t *shape)
{
    pr_tensor h = *t;
    h.ndim = ndim;
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        h.shape[d] = shape[d];
        h.stride[d] = s;
        s *= shape[d];
    }
    return h;
}

pr_tensor *pr_fwd_matmul(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    pr_tensor *x = in[0], *y = in[1];
    if (need_f32("matmul", x) < 0 || need_f32("matmul", y) < 0)
        return NULL;
    int nfull, nout;
    int64_t full[PR_MAX_DIMS], oshape[PR_MAX_DIMS];
    if (matmul_shape(x, y, &nfull, full, &nout, oshape) < 0)
        return NULL;
    /* Not zeroed: the output has no broadcast dims, so bmm writes every element with beta = 0
     * (K = 0 included); zeroing 4 MiB first was a tenth of a 1024 matmul through Lua. */
    pr_tensor *out = pr_tensor_empty(PR_FLOAT32, nout, oshape);
    if (!out)
        return NULL;
    /* The same storage read with the dropped size-1 dims put back. */
    pr_tensor c = contiguous_as(out, nfull, full), xr = as_row(x), yc = as_col(y);
    if (bmm("matmul", &xr, &yc, &c) < 0) {
        pr_tensor_release(out);
        return NULL;
    }
    return out;
}

int pr_bwd_matmul(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    pr_tensor *x = n->in[0], *y = n->in[1];
    int nfull, nout;
    int64_t full[PR_MAX_DIMS], oshape[PR_MAX_DIMS];
    int rc = matmul_shape(x, y, &nfull, full, &nout, oshape);
    if (rc < 0)
        return rc;
    pr_tensor g = contiguous_as(gout, nfull, full), xr = as_row(x), yc = as_col(y);
    if (x->requires_grad) { /* dx = gout . y^T, summed over x's broadcast batch dims */
        pr_tensor yt = swap_last(&yc);
        if (!(gin[0] = pr_tensor_zeros(PR_FLOAT32, x->ndim, x->shape)))
            return PR_ENOMEM;
        pr_tensor c = contiguous_as(gin[0], xr.ndim, xr.shape);
        if ((rc = bmm("matmul", &g, &yt, &c)) < 0)
            return rc;
    }
    if (y->requires_grad) { /* dy = x^T . gout */
        pr_tensor xt = swap_last(&xr);
        if (!(gin[1] = pr_tensor_zeros(PR_FLOAT32, y->ndim, y->shape)))
            return PR_ENOMEM;
        pr_tensor c = contiguous_as(gin[1], yc.ndim, yc.shape);
        if ((rc = bmm("matmul", &xt, &g, &c)) < 0)
            return rc;
    }
    return PR_OK;
}

/* ---- linear ---- */

/* x's rows as a matrix [rows, in]: 2-D views are read in place (transposed ones too); other
 * ranks are flattened through a contiguous reference kept in *hold (owned, may stay NULL). */
static int linear_rows(pr_tensor *x, mat *m, pr_tensor **hold)
{
    int64_t in = x->shape[x->ndim - 1];
    if (x->ndim == 2) {
        *m = mat_of(pr_tensor_f32(x), x->shape[0], in, x->stride[0], x->stride[1]);
        return PR_OK;
    }
    if (!(*hold = pr_tensor_contiguous(x)))
        return PR_ENOMEM;
    *m = mat_of(pr_tensor_f32(*hold), in ? pr_tensor_numel(x) / in : 0, in, in, 1);
    if (in == 0) { /* rows cannot be recovered from numel: count them from the shape */
        int64_t r = 1;
        for (int d = 0; d < x->ndim - 1; d++)
            r *= x->shape[d];
        m->rows = r;
    }
    return PR_OK;
}

static int linear_check(pr_tensor *const *in, int nin)
{
    if (nin != 2 && nin != 3)
        return pr_error("linear: expects 2 or 3 inputs (x, weight[, bias]), got %d", nin);
    pr_tensor *x = in[0], *w = in[1], *b = nin == 3 ? in[2] : NULL;
    for (int k = 0; k < nin; k++)
        if (need_f32("linear", in[k]) < 0)
            return PR_EINVAL;
    char s1[96], s2[96];
    if (w->ndim != 2)
        return pr_error("linear: weight %s is not 2-D [out,in]", pr_tensor_shape_str(w, s1, sizeof s1));
    if (x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1])
        return pr_error("linear: x %s and weight %s do not match", pr_tensor_shape_str(x, s1, sizeof s1),
                        pr_tensor_shape_str(w, s2, sizeof s2));
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return pr_error("linear: bias %s does not match weight %s", pr_tensor_shape_str(b, s1, sizeof s1),
                        pr_tensor_shape_str(w, s2, sizeof s2));
    return PR_OK;
}

pr_tensor *pr_fwd_linear(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved)
{
    if (linear_check(in, nin) < 0)
        return NULL;
    int relu = a->ni > 0 && a->i[0];
    if (relu && saved) {
        pr_error("linear: the fused ReLU is for inference: it records no gradient, and an input "
                 "requires grad while grad mode is on");
        return NULL;
    }
    pr_tensor *x = in[0], *w = in[1], *b = nin == 3 ? in[2] : NULL, *hold = NULL;
    int64_t nout = w->shape[0], shape[PR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = nout;
    mat X;
    if (linear_rows(x, &X, &hold) < 0)
        return NULL;
    pr_tensor *out = pr_tensor_empty(PR_FLOAT32, x->ndim, shape);
    if (!out) {
        pr_tensor_release(hold);
        return NULL;
    }
    float *C = pr_tensor_f32(out);
    /* The bias goes in as C's initial value with beta = 1: one pass over the output. */
    if (b && X.rows > 0) {
        const float *pb = pr_tensor_f32(b);
        for (int64_t j = 0; j < nout; j++)
            C[j] = pb[j * b->stride[0]];
        for (int64_t i = 1; i < X.rows; i++)
            memcpy(C + i * nout, C, (size_t)nout * sizeof *C);
    }
    mat Wt = mat_of(pr_tensor_f32(w), w->shape[1], nout, w->stride[1], w->stride[0]);
    int rc = gemm("linear", &X, &Wt, C, nout, b ? 1.0f : 0.0f);
    pr_tensor_release(hold);
    if (rc < 0) {
        pr_tensor_release(out);
        return NULL;
    }
    if (relu)
        pr_relu_inplace(C, X.rows * nout);
    return out;
}

int pr_bwd_linear(const pr_node *n, pr_tensor *gout, pr_tensor **gin)
{
    pr_tensor *x = n->in[0], *w = n->in[1], *b = n->nin == 3 ? n->in[2] : NULL;
    int64_t nout = w->shape[0], nin_ = w->shape[1];
    int64_t rows = nout ? pr_tensor_numel(gout) / nout : 0;
    if (!nout) {
        rows = 1;
        for (int d = 0; d < gout->ndim - 1; d++)
            rows *= gout->shape[d];
    }
    mat G = mat_of(pr_tensor_f32(gout), rows, nout, nout, 1);
    int rc = PR_OK;
    if (x->requires_grad) { /* dx = gout . W */
        if (!(gin[0] = pr_tensor_empty(PR_FLOAT32, x->ndim, x->shape)))
            return PR_ENOMEM;
        mat W = mat_of(pr_tensor_f32(w), nout, nin_, w->stride[0], w->stride[1]);
        rc = gemm("linear", &G, &W, pr_tensor_f32(gin[0]), nin_, 0.0f);
    }
    if (rc == PR_OK && w->requires_grad) { /* dW = gout^T . x */
        pr_tensor *hold = NULL;
        mat X;
        if (!(gin[1] = pr_tensor_empty(PR_FLOAT32, 2, w->shape)) || linear_rows(x, &X, &hold) < 0)
            return PR_ENOMEM;
        mat Gt = mat_of(G.p, nout, rows, 1, nout);
        rc = gemm("linear", &Gt, &X, pr_tensor_f32(gin[1]), nin_, 0.0f);
        pr_tensor_release(hold);
    }
    if (rc == PR_OK && b && b->requires_grad) { /* db = column sums of gout */
        if (!(gin[2] = pr_tensor_zeros(PR_FLOAT32, 1, b->shape)))
            return PR_ENOMEM;
        double *acc = calloc((size_t)nout + 1, sizeof *acc);
        if (!acc)
            return pr_error_code(PR_ENOMEM, "linear: out of memory");
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < nout; j++)
                acc[j] += G.p[i * nout + j];
        float *db = pr_tensor_f32(gin[2]);
        for (int64_t j = 0; j < nout; j++)
            db[j] = (float)acc[j];
        free(acc);
    }
    return rc;
}

/* ---- public wrappers ---- */

pr_tensor *pr_matmul(pr_tensor *a, pr_tensor *b)
{
    pr_tensor *in[2] = {a, b};
    return pr_op_call(PR_OP_matmul, in, 2, NULL);
}

pr_tensor *pr_linear(pr_tensor *x, pr_tensor *w, pr_tensor *b)
{
    pr_tensor *in[3] = {x, w, b};
    return pr_op_call(PR_OP_linear, in, b ? 3 : 2, NULL);
}
