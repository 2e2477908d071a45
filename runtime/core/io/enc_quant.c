/* enc_quant.c: the lossy model-file encodings for float32 tensors: "quant8" (id PR_ENC_QUANT8,
 * 8-bit linear quantisation of the non-zeros) and "kmeans4" (id PR_ENC_KMEANS, a k-means
 * codebook of n bits as in Deep Compression, Han et al. 2016). Both keep the positions of the
 * non-zeros exactly (the index coding of enc_sparse.c) and decode to a dense float32 tensor.
 *
 * Raw bytes (before the container's zlib), little-endian:
 *   quant8  u64 nnz | u64 idx_len | f32 scale | u8 zero_point | idx | u8 q[nnz]
 *           value = scale * (q - zero_point). The range [min, max] of the non-zeros is widened
 *           to hold 0 (the usual asymmetric scheme), so |error| <= scale / 2 = range / 510,
 *           except that a non-zero which would round to the zero point is moved one step
 *           toward its sign (|error| < scale there): a kept weight never decodes to 0, so the
 *           non-zero count, and a mask derived from it, survive the round trip.
 *   kmeans  u8 bits (1..8) | u64 nnz | u64 idx_len | f32 centroid[2^bits] | idx | u8 code[nnz]
 *           value = centroid[code]. One code per byte rather than packed bits: deflate's
 *           Huffman stage then codes each symbol in about its entropy (at most `bits`, less
 *           for the skewed cluster sizes of trained weights), which packing across byte
 *           boundaries would hide from it. The id stands for the whole family; the chunk
 *           records n, so a file written with any n decodes.
 * The k-means is 1-D Lloyd on the sorted non-zeros with linear initialisation between min and
 * max (the initialisation Deep Compression found best: it keeps the rare large weights);
 * sorted values make each step a sweep over the cluster boundaries. Centroids that would be
 * exactly 0 are replaced by their cluster's smallest-magnitude member, for the same reason as
 * above. Non-finite values are refused by the encoders (nothing sensible quantises them). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

#define KMEANS_ITERS 30

static int need_float(const pr_tensor *t, const char *enc)
{
    if (t->dtype != PR_FLOAT32)
        return pr_error("%s encoding: float32 tensors only (this one is %s); use sparse or dense",
                        enc, pr_dtype_name(t->dtype));
    return PR_OK;
}

static float rd_f32(const uint8_t *p)
{
    uint32_t u = pr_le32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void put_f32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    pr_put_le32(p, u);
}

/* The non-zeros' positions and values of a float32 tensor (borrowed), checked finite.
 * *pos and *val are malloc'd (caller frees; NULL when nnz is 0). */
static int gather(const pr_tensor *t, const char *enc, int64_t **pos, float **val, int64_t *nnz)
{
    int rc = pr_enc_nonzeros(t, pos, nnz);
    if (rc < 0)
        return rc;
    *val = NULL;
    if (!*nnz)
        return PR_OK;
    float *v = malloc((size_t)*nnz * sizeof *v);
    if (!v) {
        free(*pos);
        return pr_error_code(PR_ENOMEM, "%s encoding: out of memory", enc);
    }
    const float *d = pr_tensor_f32(t);
    for (int64_t i = 0; i < *nnz; i++) {
        v[i] = d[(*pos)[i]];
        if (!isfinite(v[i])) {
            double bad = v[i];
            long long at = (long long)(*pos)[i];
            free(v);
            free(*pos);
            *pos = NULL;
            return pr_error("%s encoding: the tensor holds %g at element %lld; only finite values "
                            "quantise (use sparse or dense)", enc, bad, at);
        }
    }
    *val = v;
    return PR_OK;
}

/* Allocates the chunk: head bytes, then the index run, then nnz code bytes. */
static uint8_t *alloc_chunk(const int64_t *pos, int64_t nnz, size_t head, size_t *il, size_t *total,
                            const char *enc)
{
    *il = pr_enc_gaps_put(NULL, pos, nnz);
    *total = head + *il + (size_t)nnz;
    uint8_t *buf = malloc(*total);
    if (!buf)
        pr_error_code(PR_ENOMEM, "%s encoding: out of memory (%zu bytes)", enc, *total);
    return buf;
}

/* ------------------------------------------------------------------ quant8 */

static int quant8_encode(const pr_tensor *t, uint8_t **out, uint64_t *out_len)
{
    int64_t *pos, nnz;
    float *v;
    int rc = need_float(t, "quant8");
    if (rc < 0 || (rc = gather(t, "quant8", &pos, &v, &nnz)) < 0)
        return rc;
    double lo = 0, hi = 0;   /* the range always holds 0 */
    for (int64_t i = 0; i < nnz; i++) {
        lo = v[i] < lo ? v[i] : lo;
        hi = v[i] > hi ? v[i] : hi;
    }
    float scale = hi > lo ? (float)((hi - lo) / 255.0) : 1.0f;
    if (!(scale > 0.0f) || !isfinite(scale))   /* a range of denormals, or of ±FLT_MAX */
        scale = scale > 0.0f ? 3.4e38f / 128.0f : 1e-38f;
    long zp = lround(-lo / scale);
    zp = zp < 0 ? 0 : zp > 255 ? 255 : zp;
    size_t il, total;
    uint8_t *buf = alloc_chunk(pos, nnz, 16 + 5, &il, &total, "quant8");
    if (!buf) {
        free(pos);
        free(v);
        return PR_ENOMEM;
    }
    pr_put_le64(buf, (uint64_t)nnz);
    pr_put_le64(buf + 8, il);
    put_f32(buf + 16, scale);
    buf[20] = (uint8_t)zp;
    pr_enc_gaps_put(buf + 21, pos, nnz);
    uint8_t *q = buf + 21 + il;
    for (int64_t i = 0; i < nnz; i++) {
        long k = lround(v[i] / scale) + zp;
        k = k < 0 ? 0 : k > 255 ? 255 : k;
        if (k == zp)   /* keep a kept weight non-zero (see the header) */
            k = v[i] > 0 ? (zp < 255 ? zp + 1 : zp - 1) : (zp > 0 ? zp - 1 : zp + 1);
        q[i] = (uint8_t)k;
    }
    free(pos);
    free(v);
    *out = buf;
    *out_len = total;
    return PR_OK;
}

/* Scatters nnz values given by code bytes through a table into a zeroed float32 tensor. */
static pr_tensor *scatter(const uint8_t *idx, uint64_t il, const uint8_t *codes, int64_t nnz,
                          const float *table, int ntable, int ndim, const int64_t *shape,
                          int64_t numel, const char *path)
{
    pr_tensor *t = pr_tensor_zeros(PR_FLOAT32, ndim, shape);
    if (!t)
        return NULL;
    float *d = pr_tensor_f32(t);
    pr_enc_gaps g;
    pr_enc_gaps_start(&g, idx, il, numel, path);
    for (int64_t i = 0; i < nnz; i++) {
        int64_t p;
        if (codes[i] >= ntable) {
            pr_error_code(PR_EFORMAT, "%s: code %u of non-zero %lld is past the %d-entry codebook "
                          "(damaged)", path, (unsigned)codes[i], (long long)i, ntable);
            pr_tensor_release(t);
            return NULL;
        }
        if (pr_enc_gaps_next(&g, &p) < 0) {
            pr_tensor_release(t);
            return NULL;
        }
        d[p] = table[codes[i]];
    }
    if (pr_enc_gaps_finish(&g) < 0) {
        pr_tensor_release(t);
        return NULL;
    }
    return t;
}

static int check_float_target(pr_dtype dt, int ndim, const int64_t *shape, int64_t *numel,
                              const char *enc, const char *path)
{
    if (dt != PR_FLOAT32)
        return pr_error_code(PR_EFORMAT, "%s: a %s chunk must be float32, this one says %s (damaged)",
                             path, enc, pr_dtype_name(dt));
    if (pr_io_numel(ndim, shape, INT64_MAX / 8, numel) < 0)
        return pr_error_code(PR_EFORMAT, "%s: invalid shape", path);
    return PR_OK;
}

static pr_tensor *quant8_decode(const uint8_t *data, uint64_t len, pr_dtype dt, int ndim,
                                const int64_t *shape, const char *path)
{
    int64_t numel = 0, nnz = 0;
    uint64_t il;
    if (check_float_target(dt, ndim, shape, &numel, "quant8", path) < 0 ||
        pr_enc_read_counts(data, len, 5, numel, &nnz, &il, path) < 0)
        return NULL;
    if (len - 21 - il != (uint64_t)nnz) {
        pr_error_code(PR_EFORMAT, "%s: quant8 chunk holds %llu codes for %lld non-zeros (damaged)",
                      path, (unsigned long long)(len - 21 - il), (long long)nnz);
        return NULL;
    }
    float scale = rd_f32(data + 16);
    int zp = data[20];
    if (!(scale > 0.0f) || !isfinite(scale)) {
        pr_error_code(PR_EFORMAT, "%s: quant8 scale %g is not a positive finite number (damaged)",
                      path, (double)scale);
        return NULL;
    }
    float table[256];
    for (int k = 0; k < 256; k++)
        table[k] = scale * (float)(k - zp);
    return scatter(data + 21, il, data + 21 + il, nnz, table, 256, ndim, shape, numel, path);
}

/* ------------------------------------------------------------------ k-means codebook */

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Index of the centroid nearest v among c[0..k) sorted ascending (ties to the lower). */
static int nearest(const float *c, int k, float v)
{
    int lo = 0, hi = k - 1;
    while (lo < hi) {           /* first centroid whose midpoint with the next is >= v */
        int mid = (lo + hi) / 2;
        if (v <= 0.5f * (c[mid] + c[mid + 1]))
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* 1-D Lloyd on sorted values s[0..n) into c[0..k) (k >= 1, n >= 1); c comes out ascending. */
static void kmeans_1d(const float *s, int64_t n, float *c, int k)
{
    double lo = s[0], hi = s[n - 1];
    for (int j = 0; j < k; j++)
        c[j] = (float)(k == 1 ? 0.5 * (lo + hi) : lo + (hi - lo) * j / (k - 1));
    for (int it = 0; it < KMEANS_ITERS; it++) {
        int changed = 0;
        int64_t i = 0;
        for (int j = 0; j < k; j++) {
            double sum = 0;
            int64_t start = i;
            while (i < n && (j == k - 1 || s[i] <= 0.5f * (c[j] + c[j + 1])))
                sum += s[i++];
            if (i > start) {   /* an empty cluster keeps its centroid */
                float nc = (float)(sum / (double)(i - start));
                changed |= nc != c[j];
                c[j] = nc;
            }
        }
        /* Means of consecutive runs of sorted data stay sorted, so the sweep stays valid. */
        if (!changed)
            break;
    }
}

static int kmeans_encode_bits(const pr_tensor *t, int bits, uint8_t **out, uint64_t *out_len)
{
    if (bits < 1 || bits > 8)
        return pr_error("kmeans encoding: %d bits (must be 1..8)", bits);
    int64_t *pos, nnz;
    float *v;
    int rc = need_float(t, "kmeans");
    if (rc < 0 || (rc = gather(t, "kmeans", &pos, &v, &nnz)) < 0)
        return rc;
    int k = 1 << bits;
    float c[256];
    for (int j = 0; j < k; j++)
        c[j] = 0.0f;
    float *s = nnz ? malloc((size_t)nnz * sizeof *s) : NULL;
    size_t il, total, head = 1 + 16 + 4 * (size_t)k;
    uint8_t *buf = (!nnz || s) ? alloc_chunk(pos, nnz, head, &il, &total, "kmeans") : NULL;
    if (!buf) {
        if (nnz && !s)
            pr_error_code(PR_ENOMEM, "kmeans encoding: out of memory");
        free(s);
        free(pos);
        free(v);
        return PR_ENOMEM;
    }
    if (nnz) {
        memcpy(s, v, (size_t)nnz * sizeof *s);
        qsort(s, (size_t)nnz, sizeof *s, cmp_float);
        kmeans_1d(s, nnz, c, k);
        /* A zero centroid would turn kept weights into pruned ones: use the member of its
         * cluster nearest zero instead (sorted s: scan for it). */
        for (int j = 0; j < k; j++)
            if (c[j] == 0.0f) {
                float best = 0.0f;
                for (int64_t i = 0; i < nnz; i++)
                    if (nearest(c, k, s[i]) == j && (best == 0.0f || fabsf(s[i]) < fabsf(best)))
                        best = s[i];
                c[j] = best != 0.0f ? best : 1e-30f;
            }
    }
    buf[0] = (uint8_t)bits;
    pr_put_le64(buf + 1, (uint64_t)nnz);
    pr_put_le64(buf + 9, il);
    for (int j = 0; j < k; j++)
        put_f32(buf + 17 + 4 * j, c[j]);
    pr_enc_gaps_put(buf + head, pos, nnz);
    uint8_t *code = buf + head + il;
    for (int64_t i = 0; i < nnz; i++)
        code[i] = (uint8_t)nearest(c, k, v[i]);
    free(s);
    free(pos);
    free(v);
    *out = buf;
    *out_len = total;
    return PR_OK;
}

int pr_enc_kmeans_encode(const pr_tensor *t, int bits, uint8_t **out, uint64_t *out_len)
{
    return kmeans_encode_bits(t, bits, out, out_len);
}

static int kmeans4_encode(const pr_tensor *t, uint8_t **out, uint64_t *out_len)
{
    return kmeans_encode_bits(t, 4, out, out_len);
}

static pr_tensor *kmeans_decode(const uint8_t *data, uint64_t len, pr_dtype dt, int ndim,
                                const int64_t *shape, const char *path)
{
    int64_t numel = 0, nnz = 0;
    uint64_t il;
    if (check_float_target(dt, ndim, shape, &numel, "kmeans", path) < 0)
        return NULL;
    if (len < 1 || data[0] < 1 || data[0] > 8) {
        pr_error_code(PR_EFORMAT, "%s: kmeans chunk declares %d bits (must be 1..8; damaged)", path,
                      len ? data[0] : -1);
        return NULL;
    }
    int bits = data[0], k = 1 << bits;
    size_t head = 1 + 16 + 4 * (size_t)k;
    if (pr_enc_read_counts(data + 1, len - 1, 4 * (uint64_t)k, numel, &nnz, &il, path) < 0)
        return NULL;
    if (len - head - il != (uint64_t)nnz) {
        pr_error_code(PR_EFORMAT, "%s: kmeans chunk holds %llu codes for %lld non-zeros (damaged)",
                      path, (unsigned long long)(len - head - il), (long long)nnz);
        return NULL;
    }
    float c[256];
    for (int j = 0; j < k; j++) {
        c[j] = rd_f32(data + 17 + 4 * j);
        if (!isfinite(c[j])) {
            pr_error_code(PR_EFORMAT, "%s: kmeans centroid %d is not finite (damaged)", path, j);
            return NULL;
        }
    }
    return scatter(data + head, il, data + head + il, nnz, c, k, ndim, shape, numel, path);
}

const pr_mfile_encoding pr_mfile_enc_quant8 = {PR_ENC_QUANT8, "quant8", quant8_encode, quant8_decode};
const pr_mfile_encoding pr_mfile_enc_kmeans4 = {PR_ENC_KMEANS, "kmeans4", kmeans4_encode, kmeans_decode};
