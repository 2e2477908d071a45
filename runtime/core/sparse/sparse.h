/* sparse.h: packed sparse weights (CSR, row-block BSR, N:M) and the kernels that run them.
 *
 * A pr_sparse is packed from a dense float32 weight [rows, cols] whose zeros are the pruned
 * entries, and unpacked back to exactly that dense weight. Kernels compute
 *     linear:        y[N, rows] = x[N, cols] . W^T + b
 *     matmul_dense:  C[rows, n] = W . B[cols, n] (+ b per row)   (conv: im2col columns as B)
 * choosing AVX-512 or AVX2/FMA code at run time when the CPU has it (the build has no
 * -march=native)
 * and splitting output rows over worker threads when the work pays for them.
 *
 * Ownership: a pr_sparse owns its three arrays; pr_sparse_free releases them. Every pointer
 * parameter is borrowed unless its comment says otherwise. Failures return NULL or a negative
 * status with the message in pr_last_error().
 */
#ifndef PR_SPARSE_H
#define PR_SPARSE_H

#include <stddef.h>
#include <stdint.h>

#include "../tensor.h"

typedef enum {
    PR_SPARSE_CSR = 0,      /* one entry per nonzero */
    PR_SPARSE_BSR_1X4 = 1,  /* dense 1x4 blocks (one row, 4 adjacent columns) */
    PR_SPARSE_BSR_4X1 = 2,  /* dense 4x1 blocks (4 adjacent rows, one column) */
    PR_SPARSE_NM_2_4 = 3,   /* at most 2 nonzeros in every group of 4 columns of a row */
    PR_SPARSE_NFORMATS
} pr_sparse_format;

/* Element types of the index arrays (the file format stores these codes). */
typedef enum { PR_SPARSE_U8 = 0, PR_SPARSE_U16 = 1, PR_SPARSE_I32 = 2, PR_SPARSE_I64 = 3 } pr_sparse_itype;

/* Layouts, with R = row blocks = ceil(rows / block_rows), B = nblocks:
 *  CSR, BSR: row_ptr [R + 1] (I32, or I64 when B > INT32_MAX): blocks of row block r are
 *            row_ptr[r] .. row_ptr[r+1]-1, in strictly increasing column order;
 *            col_idx [B] (U16 when the block-column count fits in 16 bits, else I32): the
 *            block column (column / block_cols);
 *            values  [B * block_rows * block_cols], each block row-major. Blocks that run past
 *            the last row or column hold zeros there.
 *  N:M       row_ptr NULL; G = ceil(cols / m) groups per row, B = rows * G * n slots;
 *            col_idx [B] U8: offset (< m) of each slot inside its group, strictly increasing
 *            within a group; values [B]. Groups with fewer than n nonzeros are padded with
 *            zero values at unused offsets.
 * nnz counts the stored values (B * block_rows * block_cols), explicit zeros included;
 * pr_sparse_count_nonzero counts the true nonzeros. */
typedef struct pr_sparse {
    pr_sparse_format format;
    int64_t rows, cols;
    int64_t nnz;              /* stored values */
    int64_t nblocks;          /* entries of col_idx */
    int block_rows, block_cols; /* 1,1 for CSR; 1,4 / 4,1 for BSR; 1,1 for N:M */
    int n, m;                 /* N:M pattern (2,4); 0,0 for the other formats */
    pr_sparse_itype ptr_type; /* row_ptr element type */
    pr_sparse_itype idx_type; /* col_idx element type */
    void *row_ptr;            /* owned */
    void *col_idx;            /* owned */
    float *values;            /* owned */
} pr_sparse;

const char *pr_sparse_format_name(pr_sparse_format f);
/* The format whose name is `name` ("csr", "bsr1x4", "bsr4x1", "nm2:4"), or -1. */
int pr_sparse_format_from_name(const char *name);

/* ---- lifecycle ---- */
/* Allocates a sparse matrix with uninitialised arrays sized for `nblocks` blocks, with the
 * index types the packer would choose: what a loader fills from a file before calling
 * pr_sparse_check. For N:M nblocks must equal rows * ceil(cols/4) * 2. */
pr_sparse *pr_sparse_new(pr_sparse_format format, int64_t rows, int64_t cols, int64_t nblocks);
/* Packs w [rows, cols] row-major (borrowed). Fails for N:M when a group of 4 holds more than
 * 2 nonzeros. */
pr_sparse *pr_sparse_from_dense(const float *w, int64_t rows, int64_t cols, pr_sparse_format format);
/* Unpacks into w [rows, cols] (caller's buffer, fully overwritten). */
int pr_sparse_to_dense(const pr_sparse *s, float *w);
void pr_sparse_free(pr_sparse *s); /* NULL-safe; frees s and its arrays */

/* Bytes of the packed arrays (what storing or streaming it costs). */
size_t pr_sparse_nbytes(const pr_sparse *s);
int64_t pr_sparse_count_nonzero(const pr_sparse *s);
/* 1 when every group of 4 columns of w [rows, cols] (borrowed) holds at most 2 nonzeros. */
int pr_sparse_fits_nm(const float *w, int64_t rows, int64_t cols);

/* Validates a (possibly untrusted) pr_sparse: known format and index types, consistent
 * counts, row_ptr starting at 0, monotone and ending at nblocks, column indices in range and
 * strictly increasing within a row (group for N:M), N:M padding slots past the last column
 * holding zero. Returns PR_OK, or PR_EFORMAT with a message naming the first problem.
 * The arrays must have the sizes pr_sparse_new gives for the header fields (a loader
 * allocates with pr_sparse_new, fills, then checks). Kernels assume a checked matrix. */
int pr_sparse_check(const pr_sparse *s);

/* ---- tensor conveniences ---- */
/* Packs a 2-D float32 tensor (borrowed, any strides). */
pr_sparse *pr_sparse_from_tensor(pr_tensor *w, pr_sparse_format format);
/* A NEW contiguous float32 tensor [rows, cols]. */
pr_tensor *pr_sparse_to_tensor(const pr_sparse *s);
/* y = x . W^T + b for x [N, cols] or [cols] (borrowed, any strides), bias [rows] or NULL
 * (borrowed). Returns a NEW tensor [N, rows] (or [rows]). */
pr_tensor *pr_sparse_linear_tensor(pr_tensor *x, const pr_sparse *w, pr_tensor *bias);

/* ---- kernels ---- */
/* y[batch, rows] = x[batch, cols] . W^T + bias. x, y (caller's, contiguous, not aliased) and
 * bias ([rows] or NULL) are borrowed; w must have passed pr_sparse_check (packers' output
 * does). Allocates its own scratch (batch >= 8, or N:M). Returns PR_OK or a negative status.
 * Safe to call from several threads at once; one call at a time gets the worker threads. */
int pr_sparse_linear(const float *x, float *y, const pr_sparse *w, const float *bias, int64_t batch);
/* c[rows, n] = W . b[cols, n] + bias[:, None]. b, c (caller's, contiguous, not aliased) and
 * bias ([rows] or NULL) are borrowed. The conv path: W [O, C*kh*kw], b the im2col columns. */
int pr_sparse_matmul_dense(const float *b, float *c, const pr_sparse *w, const float *bias, int64_t n);

/* Kernel selection, for tests and benchmarks: PR_SPARSE_KERNEL_AUTO (default) uses the best
 * code the CPU supports, _GENERIC forces the portable C loops, _AVX2 caps at AVX2 (on an
 * AVX-512 CPU, to test or time the AVX2 loops). Process-wide. */
typedef enum {
    PR_SPARSE_KERNEL_AUTO = 0,
    PR_SPARSE_KERNEL_GENERIC = 1,
    PR_SPARSE_KERNEL_AVX2 = 2
} pr_sparse_kernel;
void pr_sparse_set_kernel(pr_sparse_kernel k);
/* Name of the code path AUTO resolves to on this CPU ("avx512", "avx2" or "generic"). */
const char *pr_sparse_kernel_name(void);
/* Worker threads the kernels may use, the caller included (default: pr_threads(), the
 * runtime's one knob; small products use fewer). n <= 0 restores the default. */
void pr_sparse_set_threads(int n);
int pr_sparse_threads(void);

#endif
