/* npz.c: numpy's .npy arrays and .npz archives (zip files of .npy members), read and written.
 * The zip side is our own: the central directory (with ZIP64 records, which numpy.savez always
 * writes) is parsed and bounds-checked, members are streamed through zlib's raw inflate and
 * their CRC-32 checked. The .npy header is a Python dict literal; it is parsed as data (three
 * known keys), never evaluated. */
#define _FILE_OFFSET_BITS 64
#include "io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define NPY_MAX_HEADER 65536
#define NPZ_MAX_MEMBERS 100000
#define NPZ_MAX_NAME 4096

/* ------------------------------------------------------------------ member streams */

/* A member's bytes as a stream: stored or deflated, CRC-checked at the end. Also serves a bare
 * .npy file (stored, no CRC). */
typedef struct member {
    FILE *fp;              /* borrowed */
    const char *path;      /* borrowed, for messages */
    char name[NPZ_MAX_NAME + 1];
    int method;            /* 0 stored, 8 deflated */
    int check_crc;
    uint32_t want_crc, crc;
    uint64_t csize_left;   /* compressed bytes not yet read from fp */
    uint64_t usize, produced;
    int z_open, z_end;
    z_stream zs;
    uint8_t in[1 << 16];
} member;

static int member_fail(member *m, const char *what)
{
    return pr_error_code(PR_EFORMAT, "%s: member %s: %s", m->path, m->name, what);
}

/* Reads exactly n bytes of the member's uncompressed data into buf. */
static int member_read(member *m, void *buf, uint64_t n)
{
    if (n > m->usize - m->produced)
        return member_fail(m, "the array needs more data than the member holds");
    uint8_t *out = buf;
    uint64_t done = 0;
    if (m->method == 0) {
        while (done < n) {
            size_t want = n - done > (1u << 30) ? (1u << 30) : (size_t)(n - done);
            size_t r = fread(out + done, 1, want, m->fp);
            if (r == 0)
                return ferror(m->fp) ? pr_error_code(PR_EIO, "%s: read error: %s", m->path, strerror(errno))
                                     : member_fail(m, "truncated: the file ends inside it");
            done += r;
        }
        m->csize_left -= n;
    } else {
        while (done < n) {
            if (m->zs.avail_in == 0 && m->csize_left > 0) {
                size_t want = m->csize_left < sizeof m->in ? (size_t)m->csize_left : sizeof m->in;
                size_t r = fread(m->in, 1, want, m->fp);
                if (r != want)
                    return member_fail(m, "truncated: the file ends inside it");
                m->csize_left -= r;
                m->zs.next_in = m->in;
                m->zs.avail_in = (uInt)r;
            }
            uint64_t room = n - done > (1u << 30) ? (1u << 30) : n - done;
            m->zs.next_out = out + done;
            m->zs.avail_out = (uInt)room;
            int zrc = inflate(&m->zs, Z_NO_FLUSH);
            done += room - m->zs.avail_out;
            if (zrc == Z_STREAM_END) {
                m->z_end = 1;
                if (done < n)
                    return member_fail(m, "compressed data ends before the declared size");
            } else if (zrc == Z_BUF_ERROR && m->csize_left == 0 && m->zs.avail_in == 0) {
                return member_fail(m, "compressed data is cut short");
            } else if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
                return member_fail(m, m->zs.msg ? m->zs.msg : "corrupt compressed data");
            }
        }
    }
    m->crc = (uint32_t)crc32_z(m->crc, out, (z_size_t)n);
    m->produced += n;
    return PR_OK;
}

/* After the last byte: the member must end exactly there and match its CRC. */
static int member_finish(member *m)
{
    if (m->produced != m->usize)
        return member_fail(m, "has bytes after the array data");
    if (m->method == 8 && !m->z_end) {
        /* The deflate stream may still hold its end-of-block marker. */
        uint8_t extra;
        m->zs.next_out = &extra;
        m->zs.avail_out = 1;
        if (m->zs.avail_in == 0 && m->csize_left > 0) {
            size_t want = m->csize_left < sizeof m->in ? (size_t)m->csize_left : sizeof m->in;
            if (fread(m->in, 1, want, m->fp) != want)
                return member_fail(m, "truncated: the file ends inside it");
            m->csize_left -= want;
            m->zs.next_in = m->in;
            m->zs.avail_in = (uInt)want;
        }
        int zrc = inflate(&m->zs, Z_FINISH);
        if (zrc != Z_STREAM_END || m->zs.avail_out == 0)
            return member_fail(m, "compressed data does not end where the directory says");
    }
    if (m->check_crc && m->crc != m->want_crc)
        return member_fail(m, "CRC-32 mismatch (the archive is damaged)");
    return PR_OK;
}

static void member_close(member *m)
{
    if (m->z_open)
        inflateEnd(&m->zs);
    m->z_open = 0;
}

/* ------------------------------------------------------------------ .npy headers */

typedef struct npy_header {
    char kind;        /* 'f', 'i', 'u', 'b' */
    int itemsize;
    int fortran;
    int ndim;
    int64_t shape[PR_MAX_DIMS];
} npy_header;

typedef struct lit { const char *p, *end; } lit;

static void lit_ws(lit *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int lit_char(lit *s, char c)
{
    lit_ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return 1;
    }
    return 0;
}

/* A quoted Python string without escapes (numpy never writes any in a header). */
static int lit_string(lit *s, char *out, size_t cap)
{
    lit_ws(s);
    if (s->p >= s->end || (*s->p != '\'' && *s->p != '"'))
        return -1;
    char q = *s->p++;
    size_t n = 0;
    while (s->p < s->end && *s->p != q) {
        if (*s->p == '\\' || n + 1 >= cap)
            return -1;
        out[n++] = *s->p++;
    }
    if (s->p >= s->end)
        return -1;
    s->p++;
    out[n] = '\0';
    return 0;
}

static int npy_parse_descr(const char *d, npy_header *h, const char *path, const char *name)
{
    const char *where = name ? name : "";
    char order = d[0];
    if (order != '<' && order != '>' && order != '|' && order != '=')
        return pr_error_code(PR_EFORMAT, "%s%s%s: unsupported dtype '%s'", path, name ? ": member " : "",
                             where, d);
    char kind = d[1];
    if (kind == 'O')
        return pr_error_code(PR_EFORMAT, "%s%s%s: object arrays (pickled Python objects) are refused: "
                             "loading never executes anything", path, name ? ": member " : "", where);
    char *end;
    long size = strtol(d + 2, &end, 10);
    if (d[2] == '\0' || *end != '\0')
        return pr_error_code(PR_EFORMAT, "%s%s%s: unsupported dtype '%s'", path, name ? ": member " : "",
                             where, d);
    int ok = (kind == 'f' && (size == 4 || size == 8)) ||
             ((kind == 'i' || kind == 'u') && (size == 1 || size == 2 || size == 4 || size == 8)) ||
             (kind == 'b' && size == 1);
    if (!ok)
        return pr_error_code(PR_EFORMAT, "%s%s%s: unsupported dtype '%s' (prunert reads f4 f8 i1-i8 u1-u8 b1)",
                             path, name ? ": member " : "", where, d);
    if (size > 1 && (order == '>' || (order == '=' && !pr_host_le())))
        return pr_error_code(PR_EFORMAT, "%s%s%s: big-endian data (dtype '%s') is not supported; "
                             "save it little-endian (arr.astype(arr.dtype.newbyteorder('<')))",
                             path, name ? ": member " : "", where, d);
    h->kind = kind;
    h->itemsize = (int)size;
    return PR_OK;
}

/* Parses "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" plus padding. */
static int npy_parse_dict(const char *text, size_t len, npy_header *h, const char *path,
                          const char *name)
{
    lit s = { text, text + len };
    int seen_descr = 0, seen_fortran = 0, seen_shape = 0;
    char key[32], descr[64];
#define BAD(what) pr_error_code(PR_EFORMAT, "%s%s%s: bad .npy header (%s): %.*s", path, \
                                name ? ": member " : "", name ? name : "", what, (int)(len > 200 ? 200 : len), text)
    if (!lit_char(&s, '{'))
        return BAD("expected '{'");
    for (;;) {
        if (lit_char(&s, '}'))
            break;
        if (lit_string(&s, key, sizeof key) < 0 || !lit_char(&s, ':'))
            return BAD("expected a quoted key and ':'");
        lit_ws(&s);
        if (strcmp(key, "descr") == 0 && !seen_descr) {
            if (s.p < s.end && *s.p == '[')
                return BAD("structured dtypes are not supported");
            if (lit_string(&s, descr, sizeof descr) < 0)
                return BAD("descr is not a string");
            seen_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !seen_fortran) {
            if ((size_t)(s.end - s.p) >= 4 && memcmp(s.p, "True", 4) == 0) {
                h->fortran = 1;
                s.p += 4;
            } else if ((size_t)(s.end - s.p) >= 5 && memcmp(s.p, "False", 5) == 0) {
                h->fortran = 0;
                s.p += 5;
            } else {
                return BAD("fortran_order is not True or False");
            }
            seen_fortran = 1;
        } else if (strcmp(key, "shape") == 0 && !seen_shape) {
            if (!lit_char(&s, '('))
                return BAD("shape is not a tuple");
            h->ndim = 0;
            while (!lit_char(&s, ')')) {
                lit_ws(&s);
                if (s.p >= s.end || *s.p < '0' || *s.p > '9')
                    return BAD("shape holds something other than a non-negative integer");
                int64_t v = 0;
                while (s.p < s.end && *s.p >= '0' && *s.p <= '9') {
                    if (v > (INT64_MAX - 9) / 10)
                        return BAD("dimension too large");
                    v = v * 10 + (*s.p++ - '0');
                }
                if (s.p < s.end && *s.p == 'L')
                    s.p++;
                if (h->ndim == PR_MAX_DIMS)
                    return pr_error_code(PR_EFORMAT, "%s%s%s: arrays with more than %d dimensions are not supported",
                                         path, name ? ": member " : "", name ? name : "", PR_MAX_DIMS);
                h->shape[h->ndim++] = v;
                if (!lit_char(&s, ',')) {
                    if (!lit_char(&s, ')'))
                        return BAD("expected ',' or ')' in shape");
                    break;
                }
            }
            seen_shape = 1;
        } else {
            return BAD("unknown or repeated key");
        }
        if (!lit_char(&s, ',')) {
            if (!lit_char(&s, '}'))
                return BAD("expected ',' or '}'");
            break;
        }
    }
    lit_ws(&s);
    if (s.p != s.end)
        return BAD("text after the dict");
    if (!seen_descr || !seen_fortran || !seen_shape)
        return BAD("missing descr, fortran_order or shape");
#undef BAD
    return npy_parse_descr(descr, h, path, name);
}

/* Converts n little-endian items of the header's kind into dst of dtype dt. Returns the index
 * of an out-of-range u8 value, or -1. */
static int64_t npy_convert(const npy_header *h, const uint8_t *src, int64_t n, void *dst, pr_dtype dt)
{
    if (dt == PR_UINT8) {
        uint8_t *o = dst;
        if (h->kind == 'b')
            for (int64_t i = 0; i < n; i++)
                o[i] = src[i] != 0;
        else
            memcpy(o, src, (size_t)n);
    } else if (dt == PR_FLOAT32) {
        float *o = dst;
        if (h->itemsize == 4) {
            if (pr_host_le()) {
                memcpy(o, src, (size_t)n * 4);
            } else {
                for (int64_t i = 0; i < n; i++) {
                    uint32_t u = pr_le32(src + 4 * i);
                    memcpy(&o[i], &u, 4);
                }
            }
        } else {
            for (int64_t i = 0; i < n; i++) {
                uint64_t u = pr_le64(src + 8 * i);
                double d;
                memcpy(&d, &u, 8);
                o[i] = (float)d;
            }
        }
    } else {
        int64_t *o = dst;
        for (int64_t i = 0; i < n; i++) {
            const uint8_t *p = src + (size_t)i * h->itemsize;
            switch (h->itemsize * (h->kind == 'i' ? 1 : -1)) {
            case 1: o[i] = (int8_t)p[0]; break;
            case 2: o[i] = (int16_t)pr_le16(p); break;
            case 4: o[i] = (int32_t)pr_le32(p); break;
            case 8: o[i] = (int64_t)pr_le64(p); break;
            case -2: o[i] = pr_le16(p); break;
            case -4: o[i] = pr_le32(p); break;
            case -8: {
                uint64_t u = pr_le64(p);
                if (u > INT64_MAX)
                    return i;
                o[i] = (int64_t)u;
                break;
            }
            }
        }
    }
    return -1;
}

/* Reads one .npy (header and data) from the member stream. */
static pr_tensor *npy_read_stream(member *m, const char *name)
{
    const char *path = m->path;
    uint8_t pre[12];
    if (m->usize < 10) {
        pr_error_code(PR_EFORMAT, "%s%s%s: not a .npy array (%llu bytes)", path,
                      name ? ": member " : "", name ? name : "", (unsigned long long)m->usize);
        return NULL;
    }
    if (member_read(m, pre, 10) < 0)
        return NULL;
    if (memcmp(pre, "\x93NUMPY", 6) != 0) {
        pr_error_code(PR_EFORMAT, "%s%s%s: not a .npy array (bad magic)", path,
                      name ? ": member " : "", name ? name : "");
        return NULL;
    }
    int major = pre[6];
    uint64_t hlen, pre_len = 10;
    if (major == 1) {
        hlen = pr_le16(pre + 8);
    } else if (major == 2 || major == 3) {
        if (member_read(m, pre + 10, 2) < 0)
            return NULL;
        hlen = pr_le32(pre + 8);
        pre_len = 12;
    } else {
        pr_error_code(PR_EFORMAT, "%s%s%s: .npy format version %d.%d is not supported (1.0-3.0 are)",
                      path, name ? ": member " : "", name ? name : "", pre[6], pre[7]);
        return NULL;
    }
    if (hlen > NPY_MAX_HEADER || hlen > m->usize - m->produced) {
        pr_error_code(PR_EFORMAT, "%s%s%s: .npy header length %llu is beyond the data", path,
                      name ? ": member " : "", name ? name : "", (unsigned long long)hlen);
        return NULL;
    }
    char *text = malloc(hlen + 1);
    if (!text) {
        pr_error_code(PR_ENOMEM, "%s: out of memory", path);
        return NULL;
    }
    npy_header h;
    memset(&h, 0, sizeof h);
    int rc = member_read(m, text, hlen);
    if (rc == PR_OK)
        rc = npy_parse_dict(text, hlen, &h, path, name);
    free(text);
    if (rc < 0)
        return NULL;
    int64_t numel = 0;
    uint64_t data_len = m->usize - pre_len - hlen;
    if (pr_io_numel(h.ndim, h.shape, INT64_MAX / 8, &numel) < 0 ||
        (uint64_t)numel * (uint64_t)h.itemsize != data_len) {
        char buf[160];
        pr_error_code(PR_EFORMAT, "%s%s%s: shape %s of %d-byte items needs %llu bytes of data, the %s holds %llu",
                      path, name ? ": member " : "", name ? name : "",
                      pr_shape_str(buf, sizeof buf, h.ndim, h.shape), h.itemsize,
                      (unsigned long long)(numel * (uint64_t)h.itemsize), name ? "member" : "file",
                      (unsigned long long)data_len);
        return NULL;
    }
    pr_dtype dt = h.kind == 'f' ? PR_FLOAT32 : (h.kind == 'b' || (h.kind == 'u' && h.itemsize == 1)) ? PR_UINT8 : PR_INT64;
    /* Fortran order: the bytes are the C-order array of the reversed shape; read that, then
     * permute the dims back and copy into C order. */
    int64_t rshape[PR_MAX_DIMS];
    int fortran = h.fortran && h.ndim > 1;
    for (int i = 0; i < h.ndim; i++)
        rshape[i] = fortran ? h.shape[h.ndim - 1 - i] : h.shape[i];
    pr_tensor *t = pr_tensor_empty(dt, h.ndim, rshape);
    if (!t)
        return NULL;
    const int64_t per = (1 << 16) / h.itemsize;
    uint8_t *chunk = malloc((size_t)per * h.itemsize);
    if (!chunk) {
        pr_tensor_release(t);
        pr_error_code(PR_ENOMEM, "%s: out of memory", path);
        return NULL;
    }
    char *dst = pr_tensor_data(t);
    for (int64_t done = 0; done < numel; done += per) {
        int64_t n = numel - done < per ? numel - done : per;
        if (member_read(m, chunk, (uint64_t)n * h.itemsize) < 0)
            goto fail;
        int64_t bad = npy_convert(&h, chunk, n, dst + done * pr_dtype_size(dt), dt);
        if (bad >= 0) {
            pr_error_code(PR_EFORMAT, "%s%s%s: uint64 value at index %lld does not fit int64", path,
                          name ? ": member " : "", name ? name : "", (long long)(done + bad));
            goto fail;
        }
    }
    free(chunk);
    chunk = NULL;
    if (member_finish(m) < 0)
        goto fail;
    if (fortran) {
        int perm[PR_MAX_DIMS];
        for (int i = 0; i < h.ndim; i++)
            perm[i] = h.ndim - 1 - i;
        pr_tensor *v = pr_tensor_permute(t, perm);
        pr_tensor *c = v ? pr_tensor_clone(v) : NULL;
        pr_tensor_release(v);
        pr_tensor_release(t);
        return c;
    }
    return t;
fail:
    free(chunk);
    pr_tensor_release(t);
    return NULL;
}

/* ------------------------------------------------------------------ zip directory */

typedef struct zentry {
    char *name;
    int method;
    uint32_t crc;
    uint64_t csize, usize, local_off;
} zentry;

typedef struct zdir {
    zentry *e;
    int n;
    uint64_t cd_off;   /* members' data must end before the central directory */
} zdir;

static void zdir_free(zdir *d)
{
    for (int i = 0; i < d->n; i++)
        free(d->e[i].name);
    free(d->e);
}

static int read_at(FILE *fp, uint64_t off, void *buf, size_t n)
{
    return fseeko(fp, (off_t)off, SEEK_SET) == 0 && fread(buf, 1, n, fp) == n ? 0 : -1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int zdir_read(FILE *fp, const char *path, zdir *d)
{
    memset(d, 0, sizeof *d);
    if (fseeko(fp, 0, SEEK_END) != 0)
        return pr_error_code(PR_EIO, "%s: cannot seek: %s", path, strerror(errno));
    uint64_t size = (uint64_t)ftello(fp);
    size_t tail = size < 22 + 65535 ? (size_t)size : 22 + 65535;
    if (tail < 22)
        return pr_error_code(PR_EFORMAT, "%s: not an .npz (zip) file: too short (%llu bytes)", path,
                             (unsigned long long)size);
    uint8_t *buf = malloc(tail);
    if (!buf)
        return pr_error_code(PR_ENOMEM, "%s: out of memory", path);
    if (read_at(fp, size - tail, buf, tail) < 0) {
        free(buf);
        return pr_error_code(PR_EIO, "%s: read error", path);
    }
    /* The end record is the last "PK\5\6" whose comment reaches exactly to the end. */
    long eo = -1;
    for (long i = (long)tail - 22; i >= 0; i--)
        if (memcmp(buf + i, "PK\5\6", 4) == 0 && (size_t)i + 22 + pr_le16(buf + i + 20) == tail) {
            eo = i;
            break;
        }
    if (eo < 0) {
        free(buf);
        return pr_error_code(PR_EFORMAT, "%s: not an .npz (zip) file: no end of central directory "
                             "(not a zip, or truncated)", path);
    }
    const uint8_t *e = buf + eo;
    uint64_t eocd_pos = size - tail + (uint64_t)eo;
    uint64_t count = pr_le16(e + 10), cd_size = pr_le32(e + 12), cd_off = pr_le32(e + 16);
    int disk = pr_le16(e + 4), cd_disk = pr_le16(e + 6);
    uint64_t limit = eocd_pos;
    free(buf);
    if (count == 0xFFFF || cd_size == 0xFFFFFFFF || cd_off == 0xFFFFFFFF) {
        uint8_t loc[20], z[56];
        if (eocd_pos < 20 || read_at(fp, eocd_pos - 20, loc, 20) < 0 || memcmp(loc, "PK\6\7", 4) != 0)
            return pr_error_code(PR_EFORMAT, "%s: ZIP64 end locator missing", path);
        uint64_t zo = pr_le64(loc + 8);
        if (zo > eocd_pos - 20 || eocd_pos - 20 - zo < 56 || read_at(fp, zo, z, 56) < 0 ||
            memcmp(z, "PK\6\6", 4) != 0)
            return pr_error_code(PR_EFORMAT, "%s: ZIP64 end record missing or damaged", path);
        disk = (int)pr_le32(z + 16);
        cd_disk = (int)pr_le32(z + 20);
        count = pr_le64(z + 32);
        cd_size = pr_le64(z + 40);
        cd_off = pr_le64(z + 48);
        limit = zo;
    }
    if (disk != 0 || cd_disk != 0)
        return pr_error_code(PR_EFORMAT, "%s: multi-part zip archives are not supported", path);
    if (cd_off > limit || cd_size > limit - cd_off)
        return pr_error_code(PR_EFORMAT, "%s: central directory (offset %llu, %llu bytes) lies "
                             "outside the file", path, (unsigned long long)cd_off, (unsigned long long)cd_size);
    if (count > NPZ_MAX_MEMBERS || count > cd_size / 46)
        return pr_error_code(PR_EFORMAT, "%s: central directory claims %llu members in %llu bytes",
                             path, (unsigned long long)count, (unsigned long long)cd_size);
    uint8_t *cd = malloc(cd_size ? cd_size : 1);
    d->e = calloc(count ? count : 1, sizeof *d->e);
    if (!cd || !d->e) {
        free(cd);
        free(d->e);
        d->e = NULL;
        return pr_error_code(PR_ENOMEM, "%s: out of memory", path);
    }
    if (read_at(fp, cd_off, cd, cd_size) < 0) {
        free(cd);
        return pr_error_code(PR_EIO, "%s: cannot read the central directory", path);
    }
    d->cd_off = cd_off;
    uint64_t pos = 0;
    int rc = PR_OK;
    for (uint64_t i = 0; i < count && rc == PR_OK; i++) {
        const uint8_t *c = cd + pos;
        if (cd_size - pos < 46 || memcmp(c, "PK\1\2", 4) != 0) {
            rc = pr_error_code(PR_EFORMAT, "%s: central directory entry %llu is damaged", path,
                               (unsigned long long)i);
            break;
        }
        uint16_t flags = pr_le16(c + 8), method = pr_le16(c + 10);
        size_t nlen = pr_le16(c + 28), xlen = pr_le16(c + 30), clen = pr_le16(c + 32);
        if (cd_size - pos - 46 < nlen + xlen + clen) {
            rc = pr_error_code(PR_EFORMAT, "%s: central directory entry %llu runs past the directory",
                               path, (unsigned long long)i);
            break;
        }
        zentry *z = &d->e[d->n];
        z->name = malloc(nlen + 1);
        if (!z->name) {
            rc = pr_error_code(PR_ENOMEM, "%s: out of memory", path);
            break;
        }
        memcpy(z->name, c + 46, nlen);
        z->name[nlen] = '\0';
        d->n++;
        if (memchr(z->name, '\0', nlen) || nlen > NPZ_MAX_NAME) {
            rc = pr_error_code(PR_EFORMAT, "%s: member name %llu is invalid", path, (unsigned long long)i);
            break;
        }
        z->method = method;
        z->crc = pr_le32(c + 16);
        z->csize = pr_le32(c + 20);
        z->usize = pr_le32(c + 24);
        z->local_off = pr_le32(c + 42);
        /* ZIP64 extra field: only the values saturated in the fixed part are present, in order. */
        const uint8_t *x = c + 46 + nlen, *xend = x + xlen;
        while (xend - x >= 4) {
            uint16_t id = pr_le16(x), sz = pr_le16(x + 2);
            if ((size_t)(xend - x - 4) < sz)
                break;
            if (id == 1) {
                const uint8_t *v = x + 4, *vend = v + sz;
                if (z->usize == 0xFFFFFFFF && vend - v >= 8) { z->usize = pr_le64(v); v += 8; }
                if (z->csize == 0xFFFFFFFF && vend - v >= 8) { z->csize = pr_le64(v); v += 8; }
                if (z->local_off == 0xFFFFFFFF && vend - v >= 8) { z->local_off = pr_le64(v); v += 8; }
            }
            x += 4 + sz;
        }
        if (flags & 1)
            rc = pr_error_code(PR_EFORMAT, "%s: member %s is encrypted", path, z->name);
        else if (method != 0 && method != 8)
            rc = pr_error_code(PR_EFORMAT, "%s: member %s uses zip compression method %d (only stored "
                               "and deflated are supported)", path, z->name, method);
        else if (method == 0 && z->csize != z->usize)
            rc = pr_error_code(PR_EFORMAT, "%s: stored member %s has different sizes", path, z->name);
        else if (z->local_off >= cd_off || z->csize > cd_off - z->local_off)
            rc = pr_error_code(PR_EFORMAT, "%s: member %s lies outside the archive's data", path, z->name);
        pos += 46 + nlen + xlen + clen;
    }
    free(cd);
    /* Two members with one name would make "the array called x" ambiguous. */
    const char **sorted = rc == PR_OK && d->n > 1 ? malloc((size_t)d->n * sizeof *sorted) : NULL;
    if (sorted) {
        for (int i = 0; i < d->n; i++)
            sorted[i] = d->e[i].name;
        qsort(sorted, (size_t)d->n, sizeof *sorted, cmp_str);
        for (int i = 1; i < d->n && rc == PR_OK; i++)
            if (strcmp(sorted[i - 1], sorted[i]) == 0)
                rc = pr_error_code(PR_EFORMAT, "%s: member %s appears twice", path, sorted[i]);
        free(sorted);
    } else if (rc == PR_OK && d->n > 1) {
        rc = pr_error_code(PR_ENOMEM, "%s: out of memory", path);
    }
    if (rc < 0)
        zdir_free(d);
    return rc;
}

/* Positions fp at a member's data (after its local header) and sets up the stream. */
static int member_open(member *m, FILE *fp, const char *path, const zdir *d, const zentry *z)
{
    memset(m, 0, offsetof(member, in));
    m->fp = fp;
    m->path = path;
    snprintf(m->name, sizeof m->name, "%s", z->name);
    uint8_t lh[30];
    if (read_at(fp, z->local_off, lh, 30) < 0 || memcmp(lh, "PK\3\4", 4) != 0)
        return member_fail(m, "local header missing or damaged");
    /* The local copy of the name must match the directory's: a cheap check that the
     * directory points where it should (zip has no CRC over either). */
    size_t nlen = pr_le16(lh + 26);
    char lname[NPZ_MAX_NAME];
    if (nlen != strlen(z->name) || fread(lname, 1, nlen, fp) != nlen || memcmp(lname, z->name, nlen) != 0)
        return member_fail(m, "local header does not match the central directory");
    uint64_t start = z->local_off + 30 + nlen + pr_le16(lh + 28);
    if (start > d->cd_off || z->csize > d->cd_off - start)
        return member_fail(m, "data runs past the archive's data");
    if (fseeko(fp, (off_t)start, SEEK_SET) != 0)
        return member_fail(m, "cannot seek to its data");
    m->method = z->method;
    m->check_crc = 1;
    m->want_crc = z->crc;
    m->csize_left = z->csize;
    m->usize = z->usize;
    if (m->method == 8) {
        if (inflateInit2(&m->zs, -15) != Z_OK)
            return pr_error_code(PR_ENOMEM, "%s: cannot start zlib", path);
        m->z_open = 1;
    }
    return PR_OK;
}

int pr_npz_load_each(const char *path, pr_npz_fn fn, void *ctx)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return pr_error_code(PR_EIO, "%s: cannot open: %s", path, strerror(errno));
    zdir d;
    int rc = zdir_read(fp, path, &d);
    if (rc < 0) {
        fclose(fp);
        return rc;
    }
    member *m = malloc(sizeof *m);
    if (!m)
        rc = pr_error_code(PR_ENOMEM, "%s: out of memory", path);
    for (int i = 0; i < d.n && rc == PR_OK; i++) {
        const zentry *z = &d.e[i];
        size_t nlen = strlen(z->name);
        if (nlen < 4 || strcmp(z->name + nlen - 4, ".npy") != 0) {
            rc = pr_error_code(PR_EFORMAT, "%s: member %s is not a .npy array", path, z->name);
            break;
        }
        rc = member_open(m, fp, path, &d, z);
        pr_tensor *t = rc == PR_OK ? npy_read_stream(m, z->name) : NULL;
        member_close(m);
        if (!t) {
            rc = rc < 0 ? rc : PR_EFORMAT;
            break;
        }
        z->name[nlen - 4] = '\0';
        rc = fn(z->name, t, ctx);
    }
    free(m);
    zdir_free(&d);
    fclose(fp);
    return rc < 0 ? rc : PR_OK;
}

typedef struct collect { pr_npz_entry *e; int n, cap; } collect;

static int collect_fn(const char *name, pr_tensor *t, void *ctx)
{
    collect *c = ctx;
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 8;
        pr_npz_entry *e = realloc(c->e, (size_t)cap * sizeof *e);
        if (!e) {
            pr_tensor_release(t);
            return pr_error_code(PR_ENOMEM, "npz: out of memory");
        }
        c->e = e;
        c->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) {
        pr_tensor_release(t);
        return pr_error_code(PR_ENOMEM, "npz: out of memory");
    }
    c->e[c->n].name = copy;
    c->e[c->n].t = t;
    c->n++;
    return PR_OK;
}

int pr_npz_load(const char *path, pr_npz_entry **entries, int *count)
{
    collect c = { NULL, 0, 0 };
    int rc = pr_npz_load_each(path, collect_fn, &c);
    if (rc < 0) {
        pr_npz_entries_free(c.e, c.n);
        return rc;
    }
    *entries = c.e;
    *count = c.n;
    return PR_OK;
}

void pr_npz_entries_free(pr_npz_entry *entries, int count)
{
    for (int i = 0; i < count; i++) {
        free(entries[i].name);
        pr_tensor_release(entries[i].t);
    }
    free(entries);
}

pr_tensor *pr_npy_read(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        pr_error_code(PR_EIO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    member *m = calloc(1, sizeof *m);
    pr_tensor *t = NULL;
    if (!m) {
        pr_error_code(PR_ENOMEM, "%s: out of memory", path);
    } else if (fseeko(fp, 0, SEEK_END) == 0) {
        m->fp = fp;
        m->path = path;
        m->usize = m->csize_left = (uint64_t)ftello(fp);
        rewind(fp);
        t = npy_read_stream(m, NULL);
    } else {
        pr_error_code(PR_EIO, "%s: cannot seek: %s", path, strerror(errno));
    }
    free(m);
    fclose(fp);
    return t;
}

/* ------------------------------------------------------------------ writing */

/* The .npy bytes of t: header (padded to 64) + little-endian data, in one malloc'd buffer. */
static int npy_build(const char *path, pr_tensor *t, uint8_t **out, size_t *out_len)
{
    const char *descr = t->dtype == PR_FLOAT32 ? "<f4" : t->dtype == PR_INT64 ? "<i8" : "|u1";
    char dict[512];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < t->ndim; i++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    n += snprintf(dict + n, sizeof dict - (size_t)n, "%s), }", t->ndim == 1 ? "," : "");
    size_t pre = 10, total = pre + (size_t)n + 1;
    size_t hlen = (total + 63) / 64 * 64 - pre;   /* dict + spaces + '\n' */
    size_t esize = pr_dtype_size(t->dtype);
    size_t dlen = (size_t)pr_tensor_numel(t) * esize;
    pr_tensor *c = pr_tensor_contiguous(t);
    if (!c)
        return PR_ENOMEM;
    uint8_t *buf = malloc(pre + hlen + dlen);
    if (!buf) {
        pr_tensor_release(c);
        return pr_error_code(PR_ENOMEM, "%s: out of memory", path);
    }
    memcpy(buf, "\x93NUMPY\1\0", 8);
    pr_put_le16(buf + 8, (uint16_t)hlen);
    memcpy(buf + pre, dict, (size_t)n);
    memset(buf + pre + n, ' ', hlen - (size_t)n - 1);
    buf[pre + hlen - 1] = '\n';
    uint8_t *d = buf + pre + hlen;
    memcpy(d, pr_tensor_data(c), dlen);
    if (!pr_host_le() && esize > 1)
        for (size_t i = 0; i < dlen; i += esize)
            for (size_t k = 0; k < esize / 2; k++) {
                uint8_t tmp = d[i + k];
                d[i + k] = d[i + esize - 1 - k];
                d[i + esize - 1 - k] = tmp;
            }
    pr_tensor_release(c);
    *out = buf;
    *out_len = pre + hlen + dlen;
    return PR_OK;
}

int pr_npy_write(const char *path, pr_tensor *t)
{
    uint8_t *buf;
    size_t n;
    int rc = npy_build(path, t, &buf, &n);
    if (rc < 0)
        return rc;
    pr_afile *f = pr_afile_open(path);
    rc = f ? pr_afile_write(f, buf, n) : PR_EIO;
    rc = rc == PR_OK ? pr_afile_commit(f) : (pr_afile_abort(f), rc);
    free(buf);
    return rc;
}

int pr_npz_save(const char *path, int n, const char *const *names, pr_tensor *const *tensors,
                int compress)
{
    if (n < 0 || n > 65535)
        return pr_error("%s: %d arrays (this writer takes 0 to 65535)", path, n);
    for (int i = 0; i < n; i++) {
        size_t len = names[i] ? strlen(names[i]) : 0;
        if (len == 0 || len > NPZ_MAX_NAME - 4)
            return pr_error("%s: array %d has an empty or too long name", path, i);
        for (int j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0)
                return pr_error("%s: the name %s is used twice", path, names[i]);
    }
    uint8_t *cd = NULL;
    size_t cd_len = 0, cd_cap = 0;
    uint64_t off = 0;
    pr_afile *f = pr_afile_open(path);
    int rc = f ? PR_OK : PR_EIO;
    for (int i = 0; i < n && rc == PR_OK; i++) {
        uint8_t *raw = NULL, *z = NULL;
        size_t rlen = 0, zlen = 0;
        rc = npy_build(path, tensors[i], &raw, &rlen);
        if (rc == PR_OK && compress)
            rc = pr_io_deflate(raw, rlen, -15, 6, &z, &zlen, path);
        const uint8_t *data = z ? z : raw;
        size_t dlen = z ? zlen : rlen;
        size_t nlen = strlen(names[i]) + 4;
        if (rc == PR_OK && (rlen > 0xFFFFFFFEu || off + 30 + nlen + dlen > 0xFFFFFFFEu))
            rc = pr_error("%s: archive would pass 4 GiB (this writer has no ZIP64)", path);
        if (rc == PR_OK) {
            uint32_t crc = (uint32_t)crc32_z(0, raw, rlen);
            uint8_t h[46];
            /* Local header then, later, the matching central entry. Times are fixed at
             * 1980-01-01 so that the same arrays give the same bytes. */
            memset(h, 0, sizeof h);
            memcpy(h, "PK\3\4", 4);
            pr_put_le16(h + 4, 20);
            pr_put_le16(h + 8, compress ? 8 : 0);
            pr_put_le16(h + 12, 0x21);
            pr_put_le32(h + 14, crc);
            pr_put_le32(h + 18, (uint32_t)dlen);
            pr_put_le32(h + 22, (uint32_t)rlen);
            pr_put_le16(h + 26, (uint16_t)nlen);
            rc = pr_afile_write(f, h, 30);
            if (rc == PR_OK) rc = pr_afile_write(f, names[i], nlen - 4);
            if (rc == PR_OK) rc = pr_afile_write(f, ".npy", 4);
            if (rc == PR_OK) rc = pr_afile_write(f, data, dlen);
            if (rc == PR_OK && cd_len + 46 + nlen > cd_cap) {
                size_t cap = (cd_len + 46 + nlen) * 2;
                uint8_t *g = realloc(cd, cap);
                if (!g)
                    rc = pr_error_code(PR_ENOMEM, "%s: out of memory", path);
                else {
                    cd = g;
                    cd_cap = cap;
                }
            }
            if (rc == PR_OK) {
                uint8_t *c = cd + cd_len;
                memset(c, 0, 46);
                memcpy(c, "PK\1\2", 4);
                pr_put_le16(c + 4, 20);
                pr_put_le16(c + 6, 20);
                pr_put_le16(c + 10, compress ? 8 : 0);
                pr_put_le16(c + 14, 0x21);
                pr_put_le32(c + 16, crc);
                pr_put_le32(c + 20, (uint32_t)dlen);
                pr_put_le32(c + 24, (uint32_t)rlen);
                pr_put_le16(c + 28, (uint16_t)nlen);
                pr_put_le32(c + 42, (uint32_t)off);
                memcpy(c + 46, names[i], nlen - 4);
                memcpy(c + 46 + nlen - 4, ".npy", 4);
                cd_len += 46 + nlen;
                off += 30 + nlen + dlen;
            }
        }
        free(raw);
        free(z);
    }
    if (rc == PR_OK && off + cd_len > 0xFFFFFFFEu)
        rc = pr_error("%s: archive would pass 4 GiB (this writer has no ZIP64)", path);
    if (rc == PR_OK) {
        uint8_t e[22];
        memset(e, 0, sizeof e);
        memcpy(e, "PK\5\6", 4);
        pr_put_le16(e + 8, (uint16_t)n);
        pr_put_le16(e + 10, (uint16_t)n);
        pr_put_le32(e + 12, (uint32_t)cd_len);
        pr_put_le32(e + 16, (uint32_t)off);
        rc = pr_afile_write(f, cd, cd_len);
        if (rc == PR_OK)
            rc = pr_afile_write(f, e, 22);
    }
    free(cd);
    if (rc == PR_OK)
        return pr_afile_commit(f);
    pr_afile_abort(f);
    return rc;
}
