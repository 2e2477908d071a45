/* idx.c: IDX files (the MNIST / Fashion-MNIST format), raw or gzip, read and written.
 * Layout: 0x00 0x00 TYPE NDIM, NDIM big-endian u32 dims, then the elements big-endian in
 * row-major order. zlib's gzread reads raw files unchanged, so one path serves both. */
#include "io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* 16 GiB of data: far above any IDX data set, low enough that a damaged header cannot ask for
 * an absurd allocation. */
#define IDX_MAX_BYTES ((int64_t)1 << 34)

static int idx_elem_size(int type)
{
    switch (type) {
    case 0x08: case 0x09: return 1;
    case 0x0B: return 2;
    case 0x0C: case 0x0D: return 4;
    case 0x0E: return 8;
    default: return 0;
    }
}

/* Reads exactly n bytes unless the file ends; returns the count read or -1 on a zlib error. */
static int64_t gz_read_full(gzFile gz, void *buf, int64_t n)
{
    int64_t got = 0;
    while (got < n) {
        unsigned want = n - got > (1 << 30) ? (1u << 30) : (unsigned)(n - got);
        int r = gzread(gz, (char *)buf + got, want);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += r;
    }
    return got;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Converts `count` big-endian elements of `type` from src into the tensor's data at dst. */
static void idx_convert(int type, const uint8_t *src, int64_t count, void *dst)
{
    float *f = dst;
    int64_t *l = dst;
    for (int64_t i = 0; i < count; i++) {
        switch (type) {
        case 0x09: l[i] = (int8_t)src[i]; break;
        case 0x0B: l[i] = (int16_t)(uint16_t)(src[2 * i] << 8 | src[2 * i + 1]); break;
        case 0x0C: l[i] = (int32_t)be32(src + 4 * i); break;
        case 0x0D: { uint32_t u = be32(src + 4 * i); memcpy(&f[i], &u, 4); break; }
        case 0x0E: {
            uint64_t u = (uint64_t)be32(src + 8 * i) << 32 | be32(src + 8 * i + 4);
            double d;
            memcpy(&d, &u, 8);
            f[i] = (float)d;
            break;
        }
        }
    }
}

/* zlib's message for the last error, without the "path: " zlib puts in front of it. */
static const char *gz_message(gzFile gz, const char *path)
{
    int code;
    const char *m = gzerror(gz, &code);
    if (code == Z_ERRNO)
        return strerror(errno);
    size_t n = strlen(path);
    if (strncmp(m, path, n) == 0 && m[n] == ':' && m[n + 1] == ' ')
        m += n + 2;
    return m;
}

pr_tensor *pr_idx_read(const char *path, int64_t limit)
{
    gzFile gz = gzopen(path, "rb");
    if (!gz) {
        pr_error_code(PR_EIO, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
        return NULL;
    }
    gzbuffer(gz, 1 << 16);
    pr_tensor *t = NULL;
    uint8_t *chunk = NULL;
    uint8_t head[4 + 4 * 255];
    int64_t got = gz_read_full(gz, head, 4);
    if (got < 0) {
        pr_error_code(PR_EFORMAT, "%s: %s", path, gz_message(gz, path));
        goto out;
    }
    if (got < 4 || head[0] != 0 || head[1] != 0 || !idx_elem_size(head[2])) {
        pr_error_code(PR_EFORMAT, "%s: not an IDX file (bad magic %02x %02x %02x %02x)", path,
                      got > 0 ? head[0] : 0, got > 1 ? head[1] : 0, got > 2 ? head[2] : 0,
                      got > 3 ? head[3] : 0);
        goto out;
    }
    int type = head[2], ndim = head[3], esize = idx_elem_size(type);
    if (ndim < 1 || ndim > PR_MAX_DIMS) {
        pr_error_code(PR_EFORMAT, "%s: IDX file with %d dimensions (prunert takes 1 to %d)", path,
                      ndim, PR_MAX_DIMS);
        goto out;
    }
    got = gz_read_full(gz, head + 4, 4 * ndim);
    if (got != 4 * ndim) {
        pr_error_code(PR_EFORMAT, "%s: truncated: the header declares %d dimensions but ends "
                      "after %lld bytes", path, ndim, (long long)(got < 0 ? 4 : 4 + got));
        goto out;
    }
    int64_t shape[PR_MAX_DIMS], numel;
    for (int i = 0; i < ndim; i++)
        shape[i] = be32(head + 4 + 4 * i);
    if (pr_io_numel(ndim, shape, IDX_MAX_BYTES / esize, &numel) < 0) {
        char buf[160];
        pr_error_code(PR_EFORMAT, "%s: IDX dimensions %s are too large", path,
                      pr_shape_str(buf, sizeof buf, ndim, shape));
        goto out;
    }
    int partial = limit > 0 && limit < shape[0];
    if (partial) {
        numel = shape[0] ? numel / shape[0] * limit : 0;
        shape[0] = limit;
    }
    int64_t want = numel * esize, have = 0;
    /* A raw file's size is known: refuse a short one before allocating what it claims. */
    struct stat st;
    int64_t data_at = 4 + 4 * (int64_t)ndim;
    if (gzdirect(gz) && stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size - data_at < want) {
        pr_error_code(PR_EFORMAT, "%s: truncated: expected %lld bytes of data, got %lld", path,
                      (long long)want, (long long)(st.st_size - data_at));
        goto out;
    }
    pr_dtype dt = type == 0x08 ? PR_UINT8 : (type == 0x0D || type == 0x0E) ? PR_FLOAT32 : PR_INT64;
    t = pr_tensor_empty(dt, ndim, shape);
    if (!t)
        goto out;
    if (type == 0x08) {
        have = gz_read_full(gz, pr_tensor_data(t), want);
    } else {
        /* Stream through a small buffer so big-endian data never needs a second full copy. */
        const int64_t per = (1 << 16) / esize;
        chunk = malloc((size_t)(per * esize));
        if (!chunk) {
            pr_error_code(PR_ENOMEM, "%s: out of memory", path);
            goto fail;
        }
        char *dst = pr_tensor_data(t);
        for (int64_t done = 0; done < numel;) {
            int64_t n = numel - done < per ? numel - done : per;
            int64_t r = gz_read_full(gz, chunk, n * esize);
            if (r < 0) {
                have = -1;
                break;
            }
            idx_convert(type, chunk, r / esize, dst + done * pr_dtype_size(dt));
            have += r;
            if (r < n * esize)
                break;
            done += n;
        }
    }
    if (have < 0) {
        pr_error_code(PR_EFORMAT, "%s: %s", path, gz_message(gz, path));
        goto fail;
    }
    if (have < want) {
        pr_error_code(PR_EFORMAT, "%s: truncated: expected %lld bytes of data, got %lld", path,
                      (long long)want, (long long)have);
        goto fail;
    }
    if (!partial) {
        uint8_t extra;
        int64_t r = gz_read_full(gz, &extra, 1);
        if (r != 0) {
            pr_error_code(PR_EFORMAT, "%s: %s after the %lld bytes of data the header declares",
                          path, r < 0 ? gz_message(gz, path) : "trailing bytes", (long long)want);
            goto fail;
        }
    }
    goto out;
fail:
    pr_tensor_release(t);
    t = NULL;
out:
    free(chunk);
    gzclose(gz);
    return t;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int pr_idx_write(const char *path, pr_tensor *t)
{
    if (t->ndim < 1 || t->ndim > 255)
        return pr_error("%s: IDX needs 1 to 255 dimensions, the tensor has %d", path, t->ndim);
    int64_t numel = pr_tensor_numel(t);
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] > 0xFFFFFFFFLL)
            return pr_error("%s: dimension %d (%lld) does not fit IDX's 32 bits", path, i,
                            (long long)t->shape[i]);
    int type = t->dtype == PR_UINT8 ? 0x08 : t->dtype == PR_FLOAT32 ? 0x0D : 0x0C;
    int esize = idx_elem_size(type);
    pr_tensor *c = pr_tensor_contiguous(t);
    if (!c)
        return PR_ENOMEM;
    size_t hlen = 4 + 4 * (size_t)t->ndim, n = hlen + (size_t)numel * esize;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        pr_tensor_release(c);
        return pr_error_code(PR_ENOMEM, "%s: out of memory", path);
    }
    buf[0] = buf[1] = 0;
    buf[2] = (uint8_t)type;
    buf[3] = (uint8_t)t->ndim;
    for (int i = 0; i < t->ndim; i++) {
        uint32_t d = (uint32_t)t->shape[i];
        for (int k = 0; k < 4; k++)
            buf[4 + 4 * i + k] = (uint8_t)(d >> (24 - 8 * k));
    }
    uint8_t *p = buf + hlen;
    int rc = PR_OK;
    if (type == 0x08) {
        memcpy(p, pr_tensor_data(c), (size_t)numel);
    } else {
        const void *src = pr_tensor_data(c);
        for (int64_t i = 0; i < numel; i++) {
            uint32_t u;
            if (type == 0x0D) {
                memcpy(&u, (const float *)src + i, 4);
            } else {
                int64_t v = ((const int64_t *)src)[i];
                if (v < INT32_MIN || v > INT32_MAX) {
                    rc = pr_error("%s: value %lld at index %lld does not fit IDX's int32", path,
                                  (long long)v, (long long)i);
                    break;
                }
                u = (uint32_t)(int32_t)v;
            }
            for (int k = 0; k < 4; k++)
                p[4 * i + k] = (uint8_t)(u >> (24 - 8 * k));
        }
    }
    pr_tensor_release(c);
    uint8_t *z = NULL;
    size_t zn = 0;
    if (rc == PR_OK && ends_with(path, ".gz"))
        rc = pr_io_deflate(buf, n, 31, 6, &z, &zn, path);
    pr_afile *f = rc == PR_OK ? pr_afile_open(path) : NULL;
    if (rc == PR_OK && !f)
        rc = PR_EIO;
    if (rc == PR_OK)
        rc = pr_afile_write(f, z ? z : buf, z ? zn : n);
    if (rc == PR_OK)
        rc = pr_afile_commit(f);
    else
        pr_afile_abort(f);
    free(buf);
    free(z);
    return rc;
}
