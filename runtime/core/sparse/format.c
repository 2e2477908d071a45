/* format.c: packing dense weights into CSR / BSR / N:M, unpacking them, and validating packed
 * matrices that come from files (pr_sparse_check), plus the pr_tensor conveniences. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sparse.h"

static const char *const format_names[PR_SPARSE_NFORMATS] = {"csr", "bsr1x4", "bsr4x1", "nm2:4"};

const char *pr_sparse_format_name(pr_sparse_format f)
{
    return (unsigned)f < PR_SPARSE_NFORMATS ? format_names[f] : "?";
}

int pr_sparse_format_from_name(const char *name)
{
    for (int f = 0; name && f < PR_SPARSE_NFORMATS; f++)
        if (strcmp(name, format_names[f]) == 0)
            return f;
    return -1;
}

static size_t itype_size(pr_sparse_itype t)
{
    switch (t) {
    case PR_SPARSE_U8: return 1;
    case PR_SPARSE_U16: return 2;
    case PR_SPARSE_I32: return 4;
    case PR_SPARSE_I64: return 8;
    }
    return 0;
}

static void block_shape(pr_sparse_format f, int *br, int *bc)
{
    *br = f == PR_SPARSE_BSR_4X1 ? 4 : 1;
    *bc = f == PR_SPARSE_BSR_1X4 ? 4 : 1;
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

static int64_t get_idx(const void *a, pr_sparse_itype t, int64_t i)
{
    switch (t) {
    case PR_SPARSE_U8: return ((const uint8_t *)a)[i];
    case PR_SPARSE_U16: return ((const uint16_t *)a)[i];
    case PR_SPARSE_I32: return ((const int32_t *)a)[i];
    case PR_SPARSE_I64: return ((const int64_t *)a)[i];
    }
    return -1;
}

static void set_idx(void *a, pr_sparse_itype t, int64_t i, int64_t v)
{
    switch (t) {
    case PR_SPARSE_U8: ((uint8_t *)a)[i] = (uint8_t)v; break;
    case PR_SPARSE_U16: ((uint16_t *)a)[i] = (uint16_t)v; break;
    case PR_SPARSE_I32: ((int32_t *)a)[i] = (int32_t)v; break;
    case PR_SPARSE_I64: ((int64_t *)a)[i] = v; break;
    }
}

/* Sizes beyond this would overflow byte counts long before memory runs out; refusing them
 * keeps every later multiplication safe for untrusted headers. */
#define PR_SPARSE_MAX_DIM ((int64_t)1 << 31)

pr_sparse *pr_sparse_new(pr_sparse_format format, int64_t rows, int64_t cols, int64_t nblocks)
{
    if ((unsigned)format >= PR_SPARSE_NFORMATS) {
        pr_error("sparse: unknown format %d", (int)format);
        return NULL;
    }
    if (rows < 0 || cols < 0 || rows > PR_SPARSE_MAX_DIM || cols > PR_SPARSE_MAX_DIM) {
        pr_error("sparse: bad shape [%lld,%lld]", (long long)rows, (long long)cols);
        return NULL;
    }
    int br, bc;
    block_shape(format, &br, &bc);
    int64_t rblocks = ceil_div(rows, br), cblocks = ceil_div(cols, bc);
    int64_t maxblocks = format == PR_SPARSE_NM_2_4 ? rows * ceil_div(cols, 4) * 2 : rblocks * cblocks;
    if (nblocks < 0 || nblocks > maxblocks ||
        (format == PR_SPARSE_NM_2_4 && nblocks != maxblocks)) {
        pr_error("sparse: %s [%lld,%lld] cannot hold %lld blocks", format_names[format],
                 (long long)rows, (long long)cols, (long long)nblocks);
        return NULL;
    }
    /* A header from a file may ask for any size; refuse what could not be allocated before
     * any byte count can overflow. */
    if (nblocks * br * bc > (int64_t)(PTRDIFF_MAX / 8) - 1) {
        pr_error_code(PR_ENOMEM, "sparse: %lld blocks is too large", (long long)nblocks);
        return NULL;
    }
    pr_sparse *s = calloc(1, sizeof *s);
    if (!s)
        goto oom;
    s->format = format;
    s->rows = rows;
    s->cols = cols;
    s->nblocks = nblocks;
    s->block_rows = br;
    s->block_cols = bc;
    s->nnz = nblocks * br * bc;
    if (format == PR_SPARSE_NM_2_4) {
        s->n = 2;
        s->m = 4;
        s->ptr_type = PR_SPARSE_I32; /* unused: no row_ptr */
        s->idx_type = PR_SPARSE_U8;
    } else {
        s->ptr_type = nblocks > INT32_MAX ? PR_SPARSE_I64 : PR_SPARSE_I32;
        /* Block columns go up to cblocks - 1; uint16 halves the index traffic when they fit. */
        s->idx_type = cblocks <= 65536 ? PR_SPARSE_U16 : PR_SPARSE_I32;
        s->row_ptr = malloc((size_t)(rblocks + 1) * itype_size(s->ptr_type));
        if (!s->row_ptr)
            goto oom;
    }
    /* +1 element so empty matrices still get a non-NULL, freeable array. */
    s->col_idx = malloc((size_t)(nblocks + 1) * itype_size(s->idx_type));
    s->values = malloc((size_t)(s->nnz + 1) * sizeof(float));
    if (!s->col_idx || !s->values)
        goto oom;
    return s;
oom:
    pr_sparse_free(s);
    pr_error_code(PR_ENOMEM, "sparse: out of memory for %lld blocks", (long long)nblocks);
    return NULL;
}

void pr_sparse_free(pr_sparse *s)
{
    if (!s)
        return;
    free(s->row_ptr);
    free(s->col_idx);
    free(s->values);
    free(s);
}

int pr_sparse_fits_nm(const float *w, int64_t rows, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < cols; g += 4) {
            int cnt = 0;
            for (int64_t c = g; c < g + 4 && c < cols; c++)
                cnt += w[r * cols + c] != 0.0f;
            if (cnt > 2)
                return 0;
        }
    return 1;
}

/* A block is kept when any of its entries is nonzero (NaN counts: it is not a pruned zero). */
static int block_nonzero(const float *w, int64_t rows, int64_t cols, int64_t r0, int64_t c0,
                         int br, int bc)
{
    for (int i = 0; i < br && r0 + i < rows; i++)
        for (int j = 0; j < bc && c0 + j < cols; j++)
            if (w[(r0 + i) * cols + c0 + j] != 0.0f)
                return 1;
    return 0;
}

static pr_sparse *pack_blocks(const float *w, int64_t rows, int64_t cols, pr_sparse_format format)
{
    int br, bc;
    block_shape(format, &br, &bc);
    int64_t rblocks = ceil_div(rows, br), cblocks = ceil_div(cols, bc);
    int64_t count = 0;
    for (int64_t rb = 0; rb < rblocks; rb++)
        for (int64_t cb = 0; cb < cblocks; cb++)
            count += block_nonzero(w, rows, cols, rb * br, cb * bc, br, bc);
    pr_sparse *s = pr_sparse_new(format, rows, cols, count);
    if (!s)
        return NULL;
    int64_t k = 0;
    set_idx(s->row_ptr, s->ptr_type, 0, 0);
    for (int64_t rb = 0; rb < rblocks; rb++) {
        for (int64_t cb = 0; cb < cblocks; cb++) {
            if (!block_nonzero(w, rows, cols, rb * br, cb * bc, br, bc))
                continue;
            set_idx(s->col_idx, s->idx_type, k, cb);
            float *v = s->values + k * br * bc;
            for (int i = 0; i < br; i++)
                for (int j = 0; j < bc; j++) {
                    int64_t r = rb * br + i, c = cb * bc + j;
                    v[i * bc + j] = r < rows && c < cols ? w[r * cols + c] : 0.0f;
                }
            k++;
        }
        set_idx(s->row_ptr, s->ptr_type, rb + 1, k);
    }
    return s;
}

static pr_sparse *pack_nm(const float *w, int64_t rows, int64_t cols)
{
    if (!pr_sparse_fits_nm(w, rows, cols)) {
        pr_error("sparse: weight [%lld,%lld] has a group of 4 with more than 2 nonzeros; "
                 "prune it 2:4 before packing as nm2:4", (long long)rows, (long long)cols);
        return NULL;
    }
    int64_t groups = ceil_div(cols, 4);
    pr_sparse *s = pr_sparse_new(PR_SPARSE_NM_2_4, rows, cols, rows * groups * 2);
    if (!s)
        return NULL;
    uint8_t *idx = s->col_idx;
    float *val = s->values;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < groups; g++) {
            const float *wg = w + r * cols + g * 4;
            int width = (int)(cols - g * 4 < 4 ? cols - g * 4 : 4);
            int off[2], cnt = 0;
            for (int j = 0; j < width; j++)
                if (wg[j] != 0.0f)
                    off[cnt++] = j;
            /* Pad with zero values at unused offsets so every group has exactly 2 slots and
             * the kernels never branch on a count. Only a last group narrower than 2 columns
             * needs an offset past `cols`; its value is 0 and kernels skip such slots. */
            for (int j = 0; cnt < 2 && j < 4; j++) {
                int used = 0;
                for (int t = 0; t < cnt; t++)
                    used |= off[t] == j;
                if (!used)
                    off[cnt++] = j;
            }
            if (off[0] > off[1]) {
                int t = off[0];
                off[0] = off[1];
                off[1] = t;
            }
            int64_t k = (r * groups + g) * 2;
            for (int t = 0; t < 2; t++) {
                idx[k + t] = (uint8_t)off[t];
                val[k + t] = off[t] < width ? wg[off[t]] : 0.0f;
            }
        }
    return s;
}

pr_sparse *pr_sparse_from_dense(const float *w, int64_t rows, int64_t cols, pr_sparse_format format)
{
    if (!w && rows * cols > 0) {
        pr_error("sparse: NULL weight");
        return NULL;
    }
    if ((unsigned)format >= PR_SPARSE_NFORMATS) {
        pr_error("sparse: unknown format %d", (int)format);
        return NULL;
    }
    if (rows < 0 || cols < 0 || rows > PR_SPARSE_MAX_DIM || cols > PR_SPARSE_MAX_DIM) {
        pr_error("sparse: bad shape [%lld,%lld]", (long long)rows, (long long)cols);
        return NULL;
    }
    return format == PR_SPARSE_NM_2_4 ? pack_nm(w, rows, cols) : pack_blocks(w, rows, cols, format);
}

int pr_sparse_to_dense(const pr_sparse *s, float *w)
{
    if (!s || (!w && s->rows * s->cols > 0))
        return pr_error("sparse: to_dense: NULL argument");
    int64_t rows = s->rows, cols = s->cols;
    memset(w, 0, (size_t)(rows * cols) * sizeof(float));
    if (s->format == PR_SPARSE_NM_2_4) {
        int64_t groups = ceil_div(cols, 4);
        const uint8_t *idx = s->col_idx;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = r * groups * 2; k < (r + 1) * groups * 2; k++) {
                int64_t c = (k / 2 - r * groups) * 4 + idx[k];
                if (c < cols)
                    w[r * cols + c] = s->values[k];
            }
        return PR_OK;
    }
    int br = s->block_rows, bc = s->block_cols;
    int64_t rblocks = ceil_div(rows, br);
    for (int64_t rb = 0; rb < rblocks; rb++) {
        int64_t k1 = get_idx(s->row_ptr, s->ptr_type, rb + 1);
        for (int64_t k = get_idx(s->row_ptr, s->ptr_type, rb); k < k1; k++) {
            int64_t cb = get_idx(s->col_idx, s->idx_type, k);
            const float *v = s->values + k * br * bc;
            for (int i = 0; i < br; i++)
                for (int j = 0; j < bc; j++) {
                    int64_t r = rb * br + i, c = cb * bc + j;
                    if (r < rows && c < cols)
                        w[r * cols + c] = v[i * bc + j];
                }
        }
    }
    return PR_OK;
}

size_t pr_sparse_nbytes(const pr_sparse *s)
{
    if (!s)
        return 0;
    size_t n = (size_t)s->nblocks * itype_size(s->idx_type) + (size_t)s->nnz * sizeof(float);
    if (s->row_ptr)
        n += (size_t)(ceil_div(s->rows, s->block_rows) + 1) * itype_size(s->ptr_type);
    return n;
}

int64_t pr_sparse_count_nonzero(const pr_sparse *s)
{
    int64_t n = 0;
    for (int64_t k = 0; s && k < s->nnz; k++)
        n += s->values[k] != 0.0f;
    return n;
}

int pr_sparse_check(const pr_sparse *s)
{
#define BAD(...) return pr_error_code(PR_EFORMAT, "sparse: " __VA_ARGS__)
    if (!s)
        BAD("NULL matrix");
    if ((unsigned)s->format >= PR_SPARSE_NFORMATS)
        BAD("unknown format %d", (int)s->format);
    const char *fname = format_names[s->format];
    if (s->rows < 0 || s->cols < 0 || s->rows > PR_SPARSE_MAX_DIM || s->cols > PR_SPARSE_MAX_DIM)
        BAD("%s: bad shape [%lld,%lld]", fname, (long long)s->rows, (long long)s->cols);
    int br, bc;
    block_shape(s->format, &br, &bc);
    if (s->block_rows != br || s->block_cols != bc)
        BAD("%s: block shape %dx%d, expected %dx%d", fname, s->block_rows, s->block_cols, br, bc);
    int64_t rblocks = ceil_div(s->rows, br), cblocks = ceil_div(s->cols, bc);
    if (s->nblocks < 0 || (s->format != PR_SPARSE_NM_2_4 && s->nblocks > rblocks * cblocks))
        BAD("%s [%lld,%lld]: %lld blocks is more than fit", fname, (long long)s->rows,
            (long long)s->cols, (long long)s->nblocks);
    if (s->nnz != s->nblocks * br * bc)
        BAD("%s: nnz %lld disagrees with %lld blocks of %dx%d", fname, (long long)s->nnz,
            (long long)s->nblocks, br, bc);
    if (!s->col_idx || !s->values)
        BAD("%s: missing index or value array", fname);

    if (s->format == PR_SPARSE_NM_2_4) {
        int64_t groups = ceil_div(s->cols, 4);
        if (s->n != 2 || s->m != 4)
            BAD("%s: pattern %d:%d, expected 2:4", fname, s->n, s->m);
        if (s->idx_type != PR_SPARSE_U8)
            BAD("%s: index type %d, expected uint8", fname, (int)s->idx_type);
        if (s->nblocks != s->rows * groups * 2)
            BAD("%s [%lld,%lld]: %lld slots, expected %lld", fname, (long long)s->rows,
                (long long)s->cols, (long long)s->nblocks, (long long)(s->rows * groups * 2));
        const uint8_t *idx = s->col_idx;
        for (int64_t k = 0; k < s->nblocks; k += 2) {
            int64_t r = k / 2 / (groups ? groups : 1), g = k / 2 - r * groups;
            int64_t width = s->cols - g * 4 < 4 ? s->cols - g * 4 : 4;
            if (idx[k] >= idx[k + 1] || idx[k + 1] >= 4)
                BAD("%s: row %lld group %lld: offsets %d,%d not increasing within 0..3", fname,
                    (long long)r, (long long)g, idx[k], idx[k + 1]);
            for (int t = 0; t < 2; t++)
                if (idx[k + t] >= width && s->values[k + t] != 0.0f)
                    BAD("%s: row %lld: nonzero at column %lld beyond %lld columns", fname,
                        (long long)r, (long long)(g * 4 + idx[k + t]), (long long)s->cols);
        }
        return PR_OK;
    }

    if (s->n != 0 || s->m != 0)
        BAD("%s: N:M fields set (%d:%d)", fname, s->n, s->m);
    if (s->ptr_type != PR_SPARSE_I32 && s->ptr_type != PR_SPARSE_I64)
        BAD("%s: row_ptr type %d, expected int32 or int64", fname, (int)s->ptr_type);
    if (s->ptr_type == PR_SPARSE_I32 && s->nblocks > INT32_MAX)
        BAD("%s: %lld blocks do not fit int32 row_ptr", fname, (long long)s->nblocks);
    if (s->idx_type != PR_SPARSE_U16 && s->idx_type != PR_SPARSE_I32)
        BAD("%s: col_idx type %d, expected uint16 or int32", fname, (int)s->idx_type);
    if (!s->row_ptr)
        BAD("%s: missing row_ptr", fname);
    if (get_idx(s->row_ptr, s->ptr_type, 0) != 0)
        BAD("%s: row_ptr[0] = %lld, expected 0", fname,
            (long long)get_idx(s->row_ptr, s->ptr_type, 0));
    int64_t prev = 0;
    for (int64_t rb = 0; rb < rblocks; rb++) {
        int64_t k0 = prev, k1 = get_idx(s->row_ptr, s->ptr_type, rb + 1);
        if (k1 < k0 || k1 > s->nblocks)
            BAD("%s: row_ptr not monotone within 0..%lld at row block %lld (%lld -> %lld)", fname,
                (long long)s->nblocks, (long long)rb, (long long)k0, (long long)k1);
        int64_t last = -1;
        for (int64_t k = k0; k < k1; k++) {
            int64_t c = get_idx(s->col_idx, s->idx_type, k);
            if (c < 0 || c >= cblocks)
                BAD("%s: row block %lld: column index %lld out of range 0..%lld", fname,
                    (long long)rb, (long long)c, (long long)(cblocks - 1));
            if (c <= last)
                BAD("%s: row block %lld: column indices not strictly increasing (%lld after %lld)",
                    fname, (long long)rb, (long long)c, (long long)last);
            last = c;
        }
        prev = k1;
    }
    if (prev != s->nblocks)
        BAD("%s: row_ptr ends at %lld but nblocks is %lld", fname, (long long)prev,
            (long long)s->nblocks);
    return PR_OK;
#undef BAD
}

/* ---- tensor conveniences ---- */

pr_sparse *pr_sparse_from_tensor(pr_tensor *w, pr_sparse_format format)
{
    char sh[64];
    if (!w || w->dtype != PR_FLOAT32 || w->ndim != 2) {
        pr_error("sparse: expected a 2-D float32 weight, got %s",
                 w ? pr_tensor_shape_str(w, sh, sizeof sh) : "NULL");
        return NULL;
    }
    pr_tensor *c = pr_tensor_contiguous(w);
    if (!c)
        return NULL;
    pr_sparse *s = pr_sparse_from_dense(pr_tensor_f32(c), c->shape[0], c->shape[1], format);
    pr_tensor_release(c);
    return s;
}

pr_tensor *pr_sparse_to_tensor(const pr_sparse *s)
{
    if (!s) {
        pr_error("sparse: NULL matrix");
        return NULL;
    }
    int64_t shape[2] = {s->rows, s->cols};
    pr_tensor *t = pr_tensor_empty(PR_FLOAT32, 2, shape);
    if (t && pr_sparse_to_dense(s, pr_tensor_f32(t)) < 0) {
        pr_tensor_release(t);
        return NULL;
    }
    return t;
}

pr_tensor *pr_sparse_linear_tensor(pr_tensor *x, const pr_sparse *w, pr_tensor *bias)
{
    char sx[64], sb[64];
    if (!x || !w) {
        pr_error("sparse linear: NULL argument");
        return NULL;
    }
    if (x->dtype != PR_FLOAT32 || (x->ndim != 1 && x->ndim != 2) ||
        x->shape[x->ndim - 1] != w->cols) {
        pr_error("sparse linear: input %s does not match weight [%lld,%lld] (want [N,%lld] float32)",
                 pr_tensor_shape_str(x, sx, sizeof sx), (long long)w->rows, (long long)w->cols,
                 (long long)w->cols);
        return NULL;
    }
    if (bias && (bias->dtype != PR_FLOAT32 || pr_tensor_numel(bias) != w->rows || bias->ndim != 1)) {
        pr_error("sparse linear: bias %s does not match weight [%lld,%lld] (want [%lld] float32)",
                 pr_tensor_shape_str(bias, sb, sizeof sb), (long long)w->rows, (long long)w->cols,
                 (long long)w->rows);
        return NULL;
    }
    int64_t batch = x->ndim == 2 ? x->shape[0] : 1;
    int64_t shape[2] = {batch, w->rows};
    pr_tensor *xc = pr_tensor_contiguous(x);
    pr_tensor *bc = bias ? pr_tensor_contiguous(bias) : NULL;
    pr_tensor *y = x->ndim == 2 ? pr_tensor_empty(PR_FLOAT32, 2, shape)
                                : pr_tensor_empty(PR_FLOAT32, 1, shape + 1);
    if (!xc || (bias && !bc) || !y ||
        pr_sparse_linear(pr_tensor_f32(xc), pr_tensor_f32(y), w, bc ? pr_tensor_f32(bc) : NULL,
                         batch) < 0) {
        pr_tensor_release(y);
        y = NULL;
    }
    pr_tensor_release(xc);
    pr_tensor_release(bc);
    return y;
}
