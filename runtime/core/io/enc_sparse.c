/* enc_sparse.c: the "sparse" model-file encoding (id PR_ENC_SPARSE) and the index coding that
 * the quantised encodings (enc_quant.c) share.
 *
 * Raw bytes of a "sparse" chunk (before the container's zlib), all little-endian:
 *     u64 nnz | u64 idx_len | idx[idx_len] | values[nnz * element size]
 * idx holds the flat row-major positions of the non-zeros as gaps (position - previous - 1,
 * the first from -1) in LEB128 varints: at 90% sparsity the typical gap fits one byte. Indices
 * and values are kept in two runs rather than interleaved because deflate's Huffman stage
 * then sees one homogeneous alphabet at a time, which is where most of the compression of
 * the index bytes comes from. Any dtype the container stores works; the values are its
 * elements. Decoding refuses positions past the tensor, counts above numel, index runs that
 * end early or have bytes left over, and a chunk whose length disagrees with the counts. */
#include <stdlib.h>
#include <string.h>

#include "io.h"

/* ------------------------------------------------------------------ shared index coding */

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

size_t pr_enc_gaps_put(uint8_t *out, const int64_t *pos, int64_t n)
{
    size_t len = 0;
    int64_t prev = -1;
    for (int64_t i = 0; i < n; i++) {
        uint64_t gap = (uint64_t)(pos[i] - prev - 1);
        len += out ? put_varint(out + len, gap) : varint_size(gap);
        prev = pos[i];
    }
    return len;
}

void pr_enc_gaps_start(pr_enc_gaps *g, const uint8_t *data, uint64_t len, int64_t numel,
                       const char *path)
{
    g->data = data;
    g->len = len;
    g->off = 0;
    g->prev = -1;
    g->numel = numel;
    g->path = path;
}

int pr_enc_gaps_next(pr_enc_gaps *g, int64_t *pos)
{
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
        if (g->off >= g->len)
            return pr_error_code(PR_EFORMAT, "%s: index run ends inside an index (damaged)", g->path);
        if (shift > 56)
            return pr_error_code(PR_EFORMAT, "%s: index varint longer than 9 bytes (damaged)", g->path);
        uint8_t b = g->data[g->off++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
    }
    /* prev < numel <= INT64_MAX / 8 (the container's bound), so this cannot overflow. */
    if (v >= (uint64_t)(g->numel - g->prev - 1))
        return pr_error_code(PR_EFORMAT, "%s: index past the end of the tensor (%lld elements; damaged)",
                             g->path, (long long)g->numel);
    g->prev += (int64_t)v + 1;
    *pos = g->prev;
    return PR_OK;
}

int pr_enc_gaps_finish(const pr_enc_gaps *g)
{
    if (g->off != g->len)
        return pr_error_code(PR_EFORMAT, "%s: %llu bytes left over after the last index (damaged)",
                             g->path, (unsigned long long)(g->len - g->off));
    return PR_OK;
}

/* Positions of the non-zero elements of a contiguous tensor (borrowed) into a malloc'd array
 * (*pos, caller frees; NULL when there are none) and their count. */
int pr_enc_nonzeros(const pr_tensor *t, int64_t **pos, int64_t *nnz)
{
    int64_t n = pr_tensor_numel(t), count = 0;
    size_t es = pr_dtype_size(t->dtype);
    const uint8_t *d = pr_tensor_data(t);
    static const uint8_t zero[16];
    /* float32 by value, so -0.0 counts as a zero; other dtypes by bytes. */
    for (int64_t i = 0; i < n; i++)
        count += t->dtype == PR_FLOAT32 ? ((const float *)d)[i] != 0.0f
                                        : memcmp(d + (size_t)i * es, zero, es) != 0;
    *pos = NULL;
    *nnz = count;
    if (!count)
        return PR_OK;
    int64_t *p = malloc((size_t)count * sizeof *p);
    if (!p)
        return pr_error_code(PR_ENOMEM, "sparse encoding: out of memory for %lld indices", (long long)count);
    for (int64_t i = 0, k = 0; i < n; i++)
        if (t->dtype == PR_FLOAT32 ? ((const float *)d)[i] != 0.0f
                                   : memcmp(d + (size_t)i * es, zero, es) != 0)
            p[k++] = i;
    *pos = p;
    return PR_OK;
}

int pr_enc_read_counts(const uint8_t *data, uint64_t len, uint64_t head, int64_t numel,
                       int64_t *nnz, uint64_t *idx_len, const char *path)
{
    if (len < 16 + head)
        return pr_error_code(PR_EFORMAT, "%s: chunk of %llu bytes is too short for its header (damaged)",
                             path, (unsigned long long)len);
    uint64_t n = pr_le64(data), il = pr_le64(data + 8);
    if (n > (uint64_t)numel)
        return pr_error_code(PR_EFORMAT, "%s: %llu non-zeros declared for a tensor of %lld elements "
                             "(damaged)", path, (unsigned long long)n, (long long)numel);
    /* every index takes at least one byte, at most ten */
    if (il < n || il > len - 16 - head || (n == 0 && il != 0))
        return pr_error_code(PR_EFORMAT, "%s: index run of %llu bytes does not fit %llu non-zeros in a "
                             "chunk of %llu bytes (damaged)", path, (unsigned long long)il,
                             (unsigned long long)n, (unsigned long long)len);
    *nnz = (int64_t)n;
    *idx_len = il;
    return PR_OK;
}

/* ------------------------------------------------------------------ "sparse" */

static int sparse_encode(const pr_tensor *t, uint8_t **out, uint64_t *out_len)
{
    int64_t *pos, nnz;
    int rc = pr_enc_nonzeros(t, &pos, &nnz);
    if (rc < 0)
        return rc;
    size_t es = pr_dtype_size(t->dtype), il = pr_enc_gaps_put(NULL, pos, nnz);
    size_t total = 16 + il + (size_t)nnz * es;
    uint8_t *buf = malloc(total);
    if (!buf) {
        free(pos);
        return pr_error_code(PR_ENOMEM, "sparse encoding: out of memory (%zu bytes)", total);
    }
    pr_put_le64(buf, (uint64_t)nnz);
    pr_put_le64(buf + 8, il);
    pr_enc_gaps_put(buf + 16, pos, nnz);
    const uint8_t *d = pr_tensor_data(t);
    uint8_t *v = buf + 16 + il;
    for (int64_t i = 0; i < nnz; i++, v += es) {
        const uint8_t *e = d + (size_t)pos[i] * es;
        for (size_t b = 0; b < es; b++) /* little-endian whatever the host */
            v[b] = pr_host_le() ? e[b] : e[es - 1 - b];
    }
    free(pos);
    *out = buf;
    *out_len = total;
    return PR_OK;
}

static pr_tensor *sparse_decode(const uint8_t *data, uint64_t len, pr_dtype dt, int ndim,
                                const int64_t *shape, const char *path)
{
    int64_t numel = 0, nnz = 0;
    uint64_t il;
    size_t es = pr_dtype_size(dt);
    if (pr_io_numel(ndim, shape, INT64_MAX / 8, &numel) < 0) {
        pr_error_code(PR_EFORMAT, "%s: invalid shape", path);
        return NULL;
    }
    if (pr_enc_read_counts(data, len, 0, numel, &nnz, &il, path) < 0)
        return NULL;
    if (len - 16 - il != (uint64_t)nnz * es) {
        pr_error_code(PR_EFORMAT, "%s: sparse chunk holds %llu value bytes, %lld non-zeros of %zu "
                      "bytes need %llu (damaged)", path, (unsigned long long)(len - 16 - il),
                      (long long)nnz, es, (unsigned long long)((uint64_t)nnz * es));
        return NULL;
    }
    pr_tensor *t = pr_tensor_zeros(dt, ndim, shape);
    if (!t)
        return NULL;
    uint8_t *d = pr_tensor_data(t);
    const uint8_t *v = data + 16 + il;
    pr_enc_gaps g;
    pr_enc_gaps_start(&g, data + 16, il, numel, path);
    for (int64_t i = 0; i < nnz; i++, v += es) {
        int64_t p;
        if (pr_enc_gaps_next(&g, &p) < 0) {
            pr_tensor_release(t);
            return NULL;
        }
        uint8_t *e = d + (size_t)p * es;
        for (size_t b = 0; b < es; b++)
            e[b] = pr_host_le() ? v[b] : v[es - 1 - b];
    }
    if (pr_enc_gaps_finish(&g) < 0) {
        pr_tensor_release(t);
        return NULL;
    }
    return t;
}

const pr_mfile_encoding pr_mfile_enc_sparse = {PR_ENC_SPARSE, "sparse", sparse_encode, sparse_decode};
