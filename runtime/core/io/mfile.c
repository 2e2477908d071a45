/* mfile.c: the prunert model file (layout documented in io.h): a manifest chunk (JSON) and
 * tensor chunks, each zlib-compressed with CRC-32s over its header and payload, closed by an
 * end record that counts the chunks. Also the table of tensor encodings. */
#define _FILE_OFFSET_BITS 64
#include "io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ------------------------------------------------------------------ encodings */

static int dense_encode(const pr_tensor *t, uint8_t **out, uint64_t *out_len)
{
    size_t esize = pr_dtype_size(t->dtype), n = (size_t)pr_tensor_numel(t) * esize;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return pr_error_code(PR_ENOMEM, "dense encoding: out of memory (%zu bytes)", n);
    memcpy(buf, pr_tensor_data(t), n);
    if (!pr_host_le() && esize > 1)
        for (size_t i = 0; i < n; i += esize)
            for (size_t k = 0; k < esize / 2; k++) {
                uint8_t tmp = buf[i + k];
                buf[i + k] = buf[i + esize - 1 - k];
                buf[i + esize - 1 - k] = tmp;
            }
    *out = buf;
    *out_len = n;
    return PR_OK;
}

static pr_tensor *dense_decode(const uint8_t *data, uint64_t len, pr_dtype dt, int ndim,
                               const int64_t *shape, const char *path)
{
    int64_t numel = 0;
    size_t esize = pr_dtype_size(dt);
    if (pr_io_numel(ndim, shape, INT64_MAX / 8, &numel) < 0 || (uint64_t)numel * esize != len) {
        char buf[160];
        pr_error_code(PR_EFORMAT, "%s: dense tensor of shape %s needs %llu bytes, the chunk holds %llu",
                      path, pr_shape_str(buf, sizeof buf, ndim, shape),
                      (unsigned long long)((uint64_t)numel * esize), (unsigned long long)len);
        return NULL;
    }
    pr_tensor *t = pr_tensor_empty(dt, ndim, shape);
    if (!t)
        return NULL;
    uint8_t *d = pr_tensor_data(t);
    memcpy(d, data, (size_t)len);
    if (!pr_host_le() && esize > 1)
        for (size_t i = 0; i < len; i += esize)
            for (size_t k = 0; k < esize / 2; k++) {
                uint8_t tmp = d[i + k];
                d[i + k] = d[i + esize - 1 - k];
                d[i + esize - 1 - k] = tmp;
            }
    return t;
}

const pr_mfile_encoding pr_mfile_enc_dense = { PR_ENC_DENSE, "dense", dense_encode, dense_decode };

/* One line per encoding. PR_ENC_SPARSE and PR_ENC_QUANT8 are reserved for sparse/ and the
 * quantiser; their entries go here when they exist. */
static const pr_mfile_encoding *const encodings[] = {
    &pr_mfile_enc_dense,
    &pr_mfile_enc_sparse, &pr_mfile_enc_quant8, &pr_mfile_enc_kmeans4, /* enc_sparse.c, enc_quant.c */
};

const pr_mfile_encoding *pr_mfile_encoding_find(uint32_t id)
{
    for (size_t i = 0; i < sizeof encodings / sizeof *encodings; i++)
        if (encodings[i]->id == id)
            return encodings[i];
    return NULL;
}

const pr_mfile_encoding *pr_mfile_encoding_by_name(const char *name)
{
    for (size_t i = 0; i < sizeof encodings / sizeof *encodings; i++)
        if (strcmp(encodings[i]->name, name) == 0)
            return encodings[i];
    return NULL;
}

/* File dtype codes: fixed forever, whatever pr_dtype's numbering becomes. */
static uint32_t dtype_code(pr_dtype dt)
{
    return dt == PR_FLOAT32 ? 1 : dt == PR_INT64 ? 2 : dt == PR_UINT8 ? 3 : 0;
}

static int dtype_from_code(uint32_t code, pr_dtype *dt)
{
    switch (code) {
    case 1: *dt = PR_FLOAT32; return 0;
    case 2: *dt = PR_INT64; return 0;
    case 3: *dt = PR_UINT8; return 0;
    default: return -1;
    }
}

/* ------------------------------------------------------------------ writer */

struct pr_mfile_writer {
    pr_afile *f;
    char *path;
    int level;
    int failed;          /* an I/O error happened: commit must not replace the target */
    int has_manifest;
    uint64_t chunks;
    char **names;
    size_t n_names, cap_names;
};

pr_mfile_writer *pr_mfile_writer_open(const char *path, int level)
{
    if (level < -1 || level > 9) {
        pr_error("%s: zlib level %d (must be -1..9)", path, level);
        return NULL;
    }
    pr_mfile_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        pr_error_code(PR_ENOMEM, "%s: out of memory", path);
        return NULL;
    }
    w->level = level;
    w->f = pr_afile_open(path);
    uint8_t head[16];
    memcpy(head, PR_MFILE_MAGIC, 8);
    pr_put_le32(head + 8, PR_MFILE_VERSION);
    pr_put_le32(head + 12, 0);
    if (!w->f || pr_afile_write(w->f, head, sizeof head) < 0) {
        pr_mfile_writer_abort(w);
        return NULL;
    }
    return w;
}

static void writer_free(pr_mfile_writer *w)
{
    for (size_t i = 0; i < w->n_names; i++)
        free(w->names[i]);
    free(w->names);
    free(w->path);
    free(w);
}

void pr_mfile_writer_abort(pr_mfile_writer *w)
{
    if (!w)
        return;
    pr_afile_abort(w->f);
    writer_free(w);
}

static int write_chunk(pr_mfile_writer *w, uint32_t kind, const char *name, uint32_t dtcode,
                       int ndim, const int64_t *shape, uint32_t encoding, const uint8_t *raw,
                       uint64_t raw_len)
{
    uint8_t *z = NULL;
    size_t zlen = 0;
    int rc = pr_io_deflate(raw, (size_t)raw_len, 15, w->level, &z, &zlen, w->path);
    if (rc < 0)
        return rc;
    size_t nlen = strlen(name);
    uint8_t h[16 + 8 * PR_MAX_DIMS + 28 + PR_MFILE_MAX_NAME + 4];
    size_t n = 0;
    memcpy(h, "CHNK", 4);
    pr_put_le32(h + 4, kind);
    pr_put_le32(h + 8, dtcode);
    pr_put_le32(h + 12, (uint32_t)ndim);
    n = 16;
    for (int i = 0; i < ndim; i++, n += 8)
        pr_put_le64(h + n, (uint64_t)shape[i]);
    pr_put_le32(h + n, encoding);
    pr_put_le32(h + n + 4, (uint32_t)nlen);
    pr_put_le64(h + n + 8, raw_len);
    pr_put_le64(h + n + 16, zlen);
    pr_put_le32(h + n + 24, (uint32_t)crc32_z(0, z, zlen));
    n += 28;
    memcpy(h + n, name, nlen);
    n += nlen;
    pr_put_le32(h + n, (uint32_t)crc32_z(0, h, n));
    n += 4;
    rc = pr_afile_write(w->f, h, n);
    if (rc == PR_OK)
        rc = pr_afile_write(w->f, z, zlen);
    free(z);
    if (rc < 0)
        w->failed = 1;
    else
        w->chunks++;
    return rc;
}

int pr_mfile_writer_set_manifest(pr_mfile_writer *w, const char *json, size_t len)
{
    if (w->has_manifest)
        return pr_error("%s: the manifest is already written", w->path);
    pr_json *v = pr_json_parse(json, len, "manifest");
    if (!v)
        return PR_EFORMAT;
    int is_obj = v->type == PR_JSON_OBJECT;
    pr_json_free(v);
    if (!is_obj)
        return pr_error("%s: the manifest must be a JSON object", w->path);
    int rc = write_chunk(w, PR_MFILE_MANIFEST, "manifest", 0, 0, NULL, PR_ENC_DENSE,
                         (const uint8_t *)json, len);
    if (rc == PR_OK)
        w->has_manifest = 1;
    return rc;
}

int pr_mfile_writer_add_tensor(pr_mfile_writer *w, const char *name, pr_tensor *t,
                               uint32_t encoding)
{
    size_t nlen = name ? strlen(name) : 0;
    if (nlen == 0 || nlen > PR_MFILE_MAX_NAME)
        return pr_error("%s: tensor name must be 1 to %d bytes", w->path, PR_MFILE_MAX_NAME);
    for (size_t i = 0; i < w->n_names; i++)
        if (strcmp(w->names[i], name) == 0)
            return pr_error("%s: tensor %s is added twice", w->path, name);
    const pr_mfile_encoding *enc = pr_mfile_encoding_find(encoding);
    if (!enc)
        return pr_error("%s: tensor %s: unknown encoding %u", w->path, name, (unsigned)encoding);
    if (!dtype_code(t->dtype))
        return pr_error("%s: tensor %s: dtype %s cannot be saved", w->path, name, pr_dtype_name(t->dtype));
    if (w->n_names == w->cap_names) {
        size_t cap = w->cap_names ? 2 * w->cap_names : 16;
        char **names = realloc(w->names, cap * sizeof *names);
        if (!names)
            return pr_error_code(PR_ENOMEM, "%s: out of memory", w->path);
        w->names = names;
        w->cap_names = cap;
    }
    char *copy = strdup(name);
    pr_tensor *c = copy ? pr_tensor_contiguous(t) : NULL;
    if (!c) {
        free(copy);
        return copy ? PR_ENOMEM : pr_error_code(PR_ENOMEM, "%s: out of memory", w->path);
    }
    uint8_t *raw = NULL;
    uint64_t raw_len = 0;
    int rc = enc->encode(c, &raw, &raw_len);
    if (rc == PR_OK)
        rc = write_chunk(w, PR_MFILE_TENSOR, name, dtype_code(t->dtype), t->ndim, t->shape,
                         encoding, raw, raw_len);
    free(raw);
    pr_tensor_release(c);
    if (rc < 0) {
        free(copy);
        return rc;
    }
    w->names[w->n_names++] = copy;
    return PR_OK;
}

int pr_mfile_writer_commit(pr_mfile_writer *w)
{
    int rc = w->failed ? pr_error_code(PR_EIO, "%s: an earlier write failed; not replacing it", w->path)
                       : PR_OK;
    if (rc == PR_OK && !w->has_manifest)
        rc = pr_mfile_writer_set_manifest(w, "{}", 2);
    if (rc == PR_OK) {
        uint8_t end[20];
        memcpy(end, "PREND\0\0\0", 8);
        pr_put_le64(end + 8, w->chunks);
        pr_put_le32(end + 16, (uint32_t)crc32_z(0, end, 16));
        rc = pr_afile_write(w->f, end, sizeof end);
    }
    if (rc < 0) {
        pr_mfile_writer_abort(w);
        return rc;
    }
    rc = pr_afile_commit(w->f);
    w->f = NULL;
    writer_free(w);
    return rc;
}

/* ------------------------------------------------------------------ reader */

typedef struct reader {
    FILE *fp;
    const char *path;
    uint64_t size, pos;
    uint32_t version;
    uint64_t chunks;
} reader;

typedef struct chunk {
    uint32_t kind, dtcode, encoding;
    int ndim;
    int64_t shape[PR_MAX_DIMS];
    pr_dtype dt;
    uint64_t raw_len, stored_len;
    uint32_t crc;
    char name[PR_MFILE_MAX_NAME + 1];
} chunk;

/* Reads n bytes or fails saying where the file ended. */
static int rd(reader *r, void *buf, size_t n, const char *where)
{
    size_t got = n ? fread(buf, 1, n, r->fp) : 0;
    r->pos += got;
    if (got != n) {
        if (ferror(r->fp))
            return pr_error_code(PR_EIO, "%s: read error: %s", r->path, strerror(errno));
        return pr_error_code(PR_EFORMAT, "%s: truncated: the file ends inside %s (chunk %llu)",
                             r->path, where, (unsigned long long)r->chunks + 1);
    }
    return PR_OK;
}

static int reader_open(reader *r, const char *path)
{
    memset(r, 0, sizeof *r);
    r->path = path;
    r->fp = fopen(path, "rb");
    if (!r->fp)
        return pr_error_code(PR_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fseeko(r->fp, 0, SEEK_END) != 0) {
        fclose(r->fp);
        return pr_error_code(PR_EIO, "%s: cannot seek: %s", path, strerror(errno));
    }
    r->size = (uint64_t)ftello(r->fp);
    rewind(r->fp);
    uint8_t head[16];
    int rc = PR_OK;
    if (r->size < 16 || rd(r, head, 16, "the header") < 0 || memcmp(head, PR_MFILE_MAGIC, 8) != 0)
        rc = pr_error_code(PR_EFORMAT, "%s: not a prunert model file (bad magic)", path);
    if (rc == PR_OK) {
        r->version = pr_le32(head + 8);
        if (r->version > PR_MFILE_VERSION)
            rc = pr_error_code(PR_EFORMAT, "%s: format version %u is newer than this prunert (%u); "
                               "upgrade prunert", path, (unsigned)r->version, PR_MFILE_VERSION);
        else if (r->version == 0)
            rc = pr_error_code(PR_EFORMAT, "%s: format version 0 is not valid", path);
        else if (pr_le32(head + 12) != 0)
            rc = pr_error_code(PR_EFORMAT, "%s: unknown flags 0x%x in the header", path,
                               (unsigned)pr_le32(head + 12));
    }
    if (rc < 0)
        fclose(r->fp);
    return rc;
}

/* Reads the next chunk header. Returns 1 for a chunk, 0 at a valid end record, < 0 on error. */
static int next_chunk(reader *r, chunk *c)
{
    uint8_t h[16 + 8 * PR_MAX_DIMS + 28 + PR_MFILE_MAX_NAME + 4];
    if (r->pos == r->size)
        return pr_error_code(PR_EFORMAT, "%s: truncated: no end marker after %llu chunks", r->path,
                             (unsigned long long)r->chunks);
    if (rd(r, h, 4, "a chunk header") < 0)
        return PR_EFORMAT;
    if (memcmp(h, "PREN", 4) == 0) {
        if (rd(r, h + 4, 16, "the end marker") < 0)
            return PR_EFORMAT;
        if (memcmp(h, "PREND\0\0\0", 8) != 0 || pr_le32(h + 16) != (uint32_t)crc32_z(0, h, 16))
            return pr_error_code(PR_EFORMAT, "%s: damaged end marker", r->path);
        if (pr_le64(h + 8) != r->chunks)
            return pr_error_code(PR_EFORMAT, "%s: the end marker counts %llu chunks, the file has %llu",
                                 r->path, (unsigned long long)pr_le64(h + 8), (unsigned long long)r->chunks);
        if (r->pos != r->size)
            return pr_error_code(PR_EFORMAT, "%s: %llu trailing bytes after the end marker", r->path,
                                 (unsigned long long)(r->size - r->pos));
        return 0;
    }
    if (memcmp(h, "CHNK", 4) != 0)
        return pr_error_code(PR_EFORMAT, "%s: damaged: expected a chunk at byte %llu", r->path,
                             (unsigned long long)(r->pos - 4));
    if (r->chunks >= PR_MFILE_MAX_CHUNKS)
        return pr_error_code(PR_EFORMAT, "%s: more than %d chunks", r->path, PR_MFILE_MAX_CHUNKS);
    if (rd(r, h + 4, 12, "a chunk header") < 0)
        return PR_EFORMAT;
    memset(c, 0, sizeof *c);
    c->kind = pr_le32(h + 4);
    c->dtcode = pr_le32(h + 8);
    uint32_t ndim = pr_le32(h + 12);
    /* The header CRC is checked only at its end; until then each field is bounded before use. */
    if (ndim > PR_MAX_DIMS)
        return pr_error_code(PR_EFORMAT, "%s: chunk %llu: %u dimensions (at most %d; damaged?)",
                             r->path, (unsigned long long)r->chunks + 1, (unsigned)ndim, PR_MAX_DIMS);
    c->ndim = (int)ndim;
    size_t n = 16;
    if (rd(r, h + n, 8 * ndim + 28, "a chunk header") < 0)
        return PR_EFORMAT;
    for (uint32_t i = 0; i < ndim; i++, n += 8)
        c->shape[i] = (int64_t)pr_le64(h + n);
    c->encoding = pr_le32(h + n);
    uint32_t nlen = pr_le32(h + n + 4);
    c->raw_len = pr_le64(h + n + 8);
    c->stored_len = pr_le64(h + n + 16);
    c->crc = pr_le32(h + n + 24);
    n += 28;
    if (nlen > PR_MFILE_MAX_NAME)
        return pr_error_code(PR_EFORMAT, "%s: chunk %llu: name of %u bytes (damaged?)", r->path,
                             (unsigned long long)r->chunks + 1, (unsigned)nlen);
    if (rd(r, h + n, nlen + 4, "a chunk header") < 0)
        return PR_EFORMAT;
    memcpy(c->name, h + n, nlen);
    c->name[nlen] = '\0';
    n += nlen;
    if (pr_le32(h + n) != (uint32_t)crc32_z(0, h, n))
        return pr_error_code(PR_EFORMAT, "%s: chunk %llu: header CRC mismatch (the file is damaged)",
                             r->path, (unsigned long long)r->chunks + 1);
    r->chunks++;
    const char *nm = c->name;
    if (memchr(c->name, '\0', nlen) || nlen == 0)
        return pr_error_code(PR_EFORMAT, "%s: chunk %llu has an invalid name", r->path,
                             (unsigned long long)r->chunks);
    if (c->kind != PR_MFILE_MANIFEST && c->kind != PR_MFILE_TENSOR)
        return pr_error_code(PR_EFORMAT, "%s: chunk %s: unknown kind %u", r->path, nm, (unsigned)c->kind);
    if (c->kind == PR_MFILE_TENSOR) {
        int64_t numel;
        if (dtype_from_code(c->dtcode, &c->dt) < 0)
            return pr_error_code(PR_EFORMAT, "%s: tensor %s: unknown dtype code %u", r->path, nm,
                                 (unsigned)c->dtcode);
        if (pr_io_numel(c->ndim, c->shape, INT64_MAX / 8, &numel) < 0)
            return pr_error_code(PR_EFORMAT, "%s: tensor %s: invalid shape", r->path, nm);
        if (!pr_mfile_encoding_find(c->encoding))
            return pr_error_code(PR_EFORMAT, "%s: tensor %s: unknown encoding %u (written by a newer "
                                 "prunert?)", r->path, nm, (unsigned)c->encoding);
    } else if (c->ndim != 0 || c->encoding != PR_ENC_DENSE) {
        return pr_error_code(PR_EFORMAT, "%s: malformed manifest chunk", r->path);
    }
    if (c->stored_len > r->size - r->pos)
        return pr_error_code(PR_EFORMAT, "%s: truncated: chunk %s declares %llu stored bytes, %llu remain",
                             r->path, nm, (unsigned long long)c->stored_len,
                             (unsigned long long)(r->size - r->pos));
    /* zlib cannot expand more than about 1032:1; a larger claim is damage, not data. */
    if (c->raw_len / 1032 > c->stored_len + 1)
        return pr_error_code(PR_EFORMAT, "%s: chunk %s claims %llu bytes from %llu compressed (damaged)",
                             r->path, nm, (unsigned long long)c->raw_len, (unsigned long long)c->stored_len);
    return 1;
}

static int payload_crc_fail(reader *r, const chunk *c)
{
    return pr_error_code(PR_EFORMAT, "%s: chunk %s: CRC mismatch (the file is damaged)", r->path, c->name);
}

/* Reads and checks the payload, inflating it into a malloc'd buffer of raw_len bytes. */
static int read_payload(reader *r, const chunk *c, uint8_t **out)
{
    uint8_t *z = malloc(c->stored_len ? c->stored_len : 1);
    uint8_t *raw = malloc(c->raw_len ? c->raw_len : 1);
    if (!z || !raw) {
        free(z);
        free(raw);
        return pr_error_code(PR_ENOMEM, "%s: chunk %s: out of memory", r->path, c->name);
    }
    int rc = rd(r, z, c->stored_len, "a chunk's data");
    if (rc == PR_OK && (uint32_t)crc32_z(0, z, c->stored_len) != c->crc)
        rc = payload_crc_fail(r, c);
    if (rc == PR_OK) {
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (inflateInit(&zs) != Z_OK) {
            rc = pr_error_code(PR_ENOMEM, "%s: cannot start zlib", r->path);
        } else {
            uint64_t in_done = 0, out_done = 0;
            int zrc;
            do {
                uint64_t in_now = c->stored_len - in_done > (1u << 30) ? (1u << 30) : c->stored_len - in_done;
                uint64_t out_now = c->raw_len - out_done > (1u << 30) ? (1u << 30) : c->raw_len - out_done;
                zs.next_in = z + in_done;
                zs.avail_in = (uInt)in_now;
                zs.next_out = raw + out_done;
                zs.avail_out = (uInt)out_now;
                zrc = inflate(&zs, Z_NO_FLUSH);
                in_done += in_now - zs.avail_in;
                out_done += out_now - zs.avail_out;
                if (zrc == Z_BUF_ERROR && (in_now == zs.avail_in && out_now == zs.avail_out))
                    break;
            } while (zrc == Z_OK || zrc == Z_BUF_ERROR);
            inflateEnd(&zs);
            if (zrc != Z_STREAM_END || out_done != c->raw_len || in_done != c->stored_len)
                rc = pr_error_code(PR_EFORMAT, "%s: chunk %s: compressed data does not give the declared "
                                   "%llu bytes (damaged)", r->path, c->name, (unsigned long long)c->raw_len);
        }
    }
    free(z);
    if (rc < 0) {
        free(raw);
        return rc;
    }
    *out = raw;
    return PR_OK;
}

/* Skips the payload, still checking its CRC. */
static int skip_payload(reader *r, const chunk *c)
{
    uint8_t buf[1 << 16];
    uint32_t crc = 0;
    for (uint64_t left = c->stored_len; left > 0;) {
        size_t n = left < sizeof buf ? (size_t)left : sizeof buf;
        if (rd(r, buf, n, "a chunk's data") < 0)
            return PR_EFORMAT;
        crc = (uint32_t)crc32_z(crc, buf, n);
        left -= n;
    }
    return crc == c->crc ? PR_OK : payload_crc_fail(r, c);
}

void pr_mfile_read_free(char *manifest_json, char **names, pr_tensor **tensors, int count)
{
    free(manifest_json);
    for (int i = 0; i < count; i++) {
        if (names)
            free(names[i]);
        if (tensors)
            pr_tensor_release(tensors[i]);
    }
    free(names);
    free(tensors);
}

int pr_mfile_read(const char *path, char **manifest_json, char ***names_out,
                  pr_tensor ***tensors_out, int *count_out)
{
    reader r;
    int rc = reader_open(&r, path);
    if (rc < 0)
        return rc;
    char *manifest = NULL, **names = NULL;
    pr_tensor **tensors = NULL;
    int count = 0, cap = 0;
    chunk *c = malloc(sizeof *c);
    if (!c)
        rc = pr_error_code(PR_ENOMEM, "%s: out of memory", path);
    while (rc == PR_OK) {
        int more = next_chunk(&r, c);
        if (more <= 0) {
            rc = more;
            break;
        }
        uint8_t *raw = NULL;
        if (c->kind == PR_MFILE_MANIFEST && manifest) {
            rc = pr_error_code(PR_EFORMAT, "%s: two manifest chunks", path);
            break;
        }
        for (int i = 0; i < count && c->kind == PR_MFILE_TENSOR; i++)
            if (strcmp(names[i], c->name) == 0) {
                rc = pr_error_code(PR_EFORMAT, "%s: tensor %s appears twice", path, c->name);
                break;
            }
        if (rc < 0 || (rc = read_payload(&r, c, &raw)) < 0)
            break;
        if (c->kind == PR_MFILE_MANIFEST) {
            char what[600];
            snprintf(what, sizeof what, "%s: manifest", path);
            pr_json *v = pr_json_parse((const char *)raw, c->raw_len, what);
            if (!v || v->type != PR_JSON_OBJECT) {
                if (v)
                    rc = pr_error_code(PR_EFORMAT, "%s: the manifest is not a JSON object", path);
                else
                    rc = PR_EFORMAT;
                pr_json_free(v);
                free(raw);
                break;
            }
            pr_json_free(v);
            /* Room for the NUL: the payload was sized exactly. */
            manifest = realloc(raw, c->raw_len + 1);
            if (!manifest) {
                manifest = NULL;
                free(raw);
                rc = pr_error_code(PR_ENOMEM, "%s: out of memory", path);
                break;
            }
            manifest[c->raw_len] = '\0';
            continue;
        }
        char what[PR_MFILE_MAX_NAME + 600];
        snprintf(what, sizeof what, "%s: tensor %s", path, c->name);
        pr_tensor *t = pr_mfile_encoding_find(c->encoding)->decode(raw, c->raw_len, c->dt, c->ndim,
                                                                   c->shape, what);
        free(raw);
        if (!t) {
            rc = PR_EFORMAT;
            break;
        }
        if (count == cap) {
            int ncap = cap ? 2 * cap : 16;
            char **nn = realloc(names, (size_t)ncap * sizeof *nn);
            if (nn)
                names = nn;
            pr_tensor **nt = nn ? realloc(tensors, (size_t)ncap * sizeof *nt) : NULL;
            if (nt)
                tensors = nt;
            if (!nn || !nt) {
                pr_tensor_release(t);
                rc = pr_error_code(PR_ENOMEM, "%s: out of memory", path);
                break;
            }
            cap = ncap;
        }
        names[count] = strdup(c->name);
        if (!names[count]) {
            pr_tensor_release(t);
            rc = pr_error_code(PR_ENOMEM, "%s: out of memory", path);
            break;
        }
        tensors[count++] = t;
    }
    free(c);
    fclose(r.fp);
    if (rc == PR_OK && !manifest)
        rc = pr_error_code(PR_EFORMAT, "%s: no manifest chunk", path);
    if (rc < 0) {
        pr_mfile_read_free(manifest, names, tensors, count);
        return rc;
    }
    *manifest_json = manifest;
    *names_out = names;
    *tensors_out = tensors;
    *count_out = count;
    return PR_OK;
}

int pr_mfile_info(const char *path, uint32_t *version, pr_mfile_chunk_info **chunks, int *count)
{
    reader r;
    int rc = reader_open(&r, path);
    if (rc < 0)
        return rc;
    pr_mfile_chunk_info *list = NULL;
    int n = 0, cap = 0;
    chunk *c = malloc(sizeof *c);
    if (!c)
        rc = pr_error_code(PR_ENOMEM, "%s: out of memory", path);
    while (rc == PR_OK) {
        int more = next_chunk(&r, c);
        if (more <= 0) {
            rc = more;
            break;
        }
        if ((rc = skip_payload(&r, c)) < 0)
            break;
        if (n == cap) {
            int ncap = cap ? 2 * cap : 16;
            pr_mfile_chunk_info *l = realloc(list, (size_t)ncap * sizeof *l);
            if (!l) {
                rc = pr_error_code(PR_ENOMEM, "%s: out of memory", path);
                break;
            }
            list = l;
            cap = ncap;
        }
        pr_mfile_chunk_info *e = &list[n++];
        memset(e, 0, sizeof *e);
        e->kind = c->kind;
        memcpy(e->name, c->name, sizeof e->name);
        e->dtype = c->dt;
        e->ndim = c->ndim;
        memcpy(e->shape, c->shape, sizeof e->shape);
        e->encoding = c->encoding;
        e->raw_bytes = c->raw_len;
        e->stored_bytes = c->stored_len;
    }
    free(c);
    fclose(r.fp);
    if (rc < 0) {
        free(list);
        return rc;
    }
    if (version)
        *version = r.version;
    *chunks = list;
    *count = n;
    return PR_OK;
}
