/* test_io.c: IDX, .npy/.npz, the model file and JSON (runtime/core/io). Fixtures made by numpy
 * live in tests/data (make_fixtures.py); everything else is written into a temporary directory,
 * including damaged copies (truncated at every length, every byte flipped). */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "io/io.h"

#define FASHION "/usr/share/datasets/fashion-mnist/"

static char tmpdir[64];

static const char *tmp(const char *name)
{
    static char buf[8][sizeof tmpdir + 256];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", tmpdir, name);
    return b;
}

static int has_error(const char *needle)
{
    if (strstr(pr_last_error(), needle))
        return 1;
    fprintf(stderr, "  expected an error with \"%s\", got \"%s\"\n", needle, pr_last_error());
    return 0;
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
    *n = buf ? fread(buf, 1, (size_t)len, f) : 0;
    fclose(f);
    return buf;
}

static void spit(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(data, 1, n, f);
        fclose(f);
    }
}

static int same_tensor(const pr_tensor *a, const pr_tensor *b)
{
    if (!a || !b || a->dtype != b->dtype || !pr_tensor_same_shape(a, b))
        return 0;
    for (int64_t i = 0; i < pr_tensor_numel(a); i++)
        if (pr_tensor_get_flat(a, i) != pr_tensor_get_flat(b, i))
            return 0;
    return 1;
}

static int count_dir_entries(void)
{
    DIR *d = opendir(tmpdir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

/* ------------------------------------------------------------------ IDX */

static void test_idx_round_trip(void)
{
    int64_t shape[3] = { 3, 4, 5 };
    pr_tensor *u = pr_tensor_empty(PR_UINT8, 3, shape);
    for (int i = 0; i < 60; i++)
        pr_tensor_u8(u)[i] = (uint8_t)(i * 37);
    CHECK(pr_idx_write(tmp("u.idx"), u) == PR_OK);
    pr_tensor *r = pr_idx_read(tmp("u.idx"), 0);
    CHECK(same_tensor(u, r));
    pr_tensor_release(r);
    /* limit reads a slice along dim 0 */
    r = pr_idx_read(tmp("u.idx"), 2);
    CHECK(r && r->ndim == 3 && r->shape[0] == 2 && r->shape[1] == 4);
    CHECK(r && pr_tensor_u8(r)[39] == (uint8_t)(39 * 37));
    pr_tensor_release(r);
    /* gz by name, read back through gzread */
    CHECK(pr_idx_write(tmp("u.idx.gz"), u) == PR_OK);
    size_t n = 0;
    uint8_t *raw = slurp(tmp("u.idx.gz"), &n);
    CHECK(raw && n > 2 && raw[0] == 0x1f && raw[1] == 0x8b);
    free(raw);
    r = pr_idx_read(tmp("u.idx.gz"), 0);
    CHECK(same_tensor(u, r));
    pr_tensor_release(r);
    pr_tensor_release(u);

    /* float32 (a transposed view, so the writer must make it contiguous) and int64 */
    int64_t s2[2] = { 2, 3 };
    pr_tensor *f = pr_tensor_empty(PR_FLOAT32, 2, s2);
    for (int i = 0; i < 6; i++)
        pr_tensor_f32(f)[i] = (float)i * -1.25f + 0.1f;
    pr_tensor *ft = pr_tensor_transpose(f, 0, 1);
    CHECK(pr_idx_write(tmp("f.idx"), ft) == PR_OK);
    r = pr_idx_read(tmp("f.idx"), 0);
    CHECK(same_tensor(ft, r));
    CHECK(r && r->shape[0] == 3 && r->shape[1] == 2);
    pr_tensor_release(r);
    pr_tensor_release(ft);
    pr_tensor_release(f);

    pr_tensor *l = pr_tensor_empty(PR_INT64, 1, (int64_t[]){ 4 });
    int64_t vals[4] = { -2147483648LL, -1, 0, 2147483647LL };
    memcpy(pr_tensor_i64(l), vals, sizeof vals);
    CHECK(pr_idx_write(tmp("l.idx"), l) == PR_OK);
    r = pr_idx_read(tmp("l.idx"), 0);
    CHECK(same_tensor(l, r));
    pr_tensor_release(r);
    pr_tensor_i64(l)[0] = 1LL << 40;
    CHECK(pr_idx_write(tmp("l2.idx"), l) < 0 && has_error("does not fit"));
    CHECK(access(tmp("l2.idx"), F_OK) != 0);
    pr_tensor_release(l);
}

/* Hand-made IDX files of the types prunert does not write: i8, i16, f64 (big-endian). */
static void test_idx_other_types(void)
{
    uint8_t i16[] = { 0, 0, 0x0B, 1, 0, 0, 0, 2, 0xFF, 0xFE, 0x01, 0x00 };
    spit(tmp("i16.idx"), i16, sizeof i16);
    pr_tensor *r = pr_idx_read(tmp("i16.idx"), 0);
    CHECK(r && r->dtype == PR_INT64 && r->shape[0] == 2);
    CHECK(r && pr_tensor_i64(r)[0] == -2 && pr_tensor_i64(r)[1] == 256);
    pr_tensor_release(r);
    uint8_t i8[] = { 0, 0, 0x09, 1, 0, 0, 0, 2, 0x80, 0x7F };
    spit(tmp("i8.idx"), i8, sizeof i8);
    r = pr_idx_read(tmp("i8.idx"), 0);
    CHECK(r && pr_tensor_i64(r)[0] == -128 && pr_tensor_i64(r)[1] == 127);
    pr_tensor_release(r);
    uint8_t f64[] = { 0, 0, 0x0E, 1, 0, 0, 0, 1, 0xC0, 0x04, 0, 0, 0, 0, 0, 0 }; /* -2.5 */
    spit(tmp("f64.idx"), f64, sizeof f64);
    r = pr_idx_read(tmp("f64.idx"), 0);
    CHECK(r && r->dtype == PR_FLOAT32 && pr_tensor_f32(r)[0] == -2.5f);
    pr_tensor_release(r);
}

static void test_idx_fashion(void)
{
    if (access(FASHION "t10k-labels-idx1-ubyte.gz", R_OK) != 0) {
        printf("  skipped: %s not installed (apt-get install dataset-fashion-mnist)\n", FASHION);
        return;
    }
    pr_tensor *l = pr_idx_read(FASHION "t10k-labels-idx1-ubyte.gz", 100);
    CHECK_MSG(l != NULL, "%s", pr_last_error());
    if (!l)
        return;
    CHECK(l->dtype == PR_UINT8 && l->ndim == 1 && l->shape[0] == 100);
    const uint8_t first[8] = { 9, 2, 1, 1, 6, 1, 4, 6 }; /* checked with python's gzip module */
    CHECK(memcmp(pr_tensor_u8(l), first, 8) == 0);
    pr_tensor_release(l);
    l = pr_idx_read(FASHION "t10k-labels-idx1-ubyte.gz", 0);
    CHECK(l && l->shape[0] == 10000);
    int64_t hist[10] = { 0 };
    for (int i = 0; l && i < 10000; i++)
        hist[pr_tensor_u8(l)[i] < 10 ? pr_tensor_u8(l)[i] : 0]++;
    for (int c = 0; l && c < 10; c++)
        CHECK(hist[c] == 1000); /* Fashion-MNIST's test set is balanced */
    pr_tensor_release(l);
    pr_tensor *im = pr_idx_read(FASHION "t10k-images-idx3-ubyte.gz", 3);
    CHECK(im && im->ndim == 3 && im->shape[0] == 3 && im->shape[1] == 28 && im->shape[2] == 28);
    pr_tensor_release(im);
}

static void test_idx_damaged(void)
{
    /* A raw labels file: 8-byte header declaring 10000 items, then only 50. */
    uint8_t buf[8 + 10000];
    memcpy(buf, "\0\0\x08\x01\0\0\x27\x10", 8);
    for (int i = 0; i < 10000; i++)
        buf[8 + i] = (uint8_t)(i % 10);
    spit(tmp("trunc.idx"), buf, 8 + 50);
    CHECK(pr_idx_read(tmp("trunc.idx"), 0) == NULL &&
          has_error("trunc.idx: truncated: expected 10000 bytes of data, got 50"));
    /* a limit inside the data that is there is fine; beyond it is not */
    pr_tensor *r = pr_idx_read(tmp("trunc.idx"), 50);
    CHECK(r && r->shape[0] == 50 && pr_tensor_u8(r)[49] == 9);
    pr_tensor_release(r);
    CHECK(pr_idx_read(tmp("trunc.idx"), 51) == NULL && has_error("expected 51 bytes of data, got 50"));

    /* truncated gzip */
    uint8_t *z = NULL;
    size_t zn = 0;
    CHECK(pr_io_deflate(buf, sizeof buf, 31, 6, &z, &zn, "test") == PR_OK);
    spit(tmp("trunc.idx.gz"), z, zn / 2);
    CHECK(pr_idx_read(tmp("trunc.idx.gz"), 0) == NULL && has_error("truncated"));
    /* damaged inside: zlib's CRC catches it; the message names the file once */
    z[zn - 6] ^= 0xFF;
    spit(tmp("crc.idx.gz"), z, zn);
    CHECK(pr_idx_read(tmp("crc.idx.gz"), 0) == NULL && has_error("crc.idx.gz: incorrect data check"));
    CHECK(strstr(pr_last_error() + 1, tmpdir) == NULL);
    z[zn - 6] ^= 0xFF;
    spit(tmp("whole.idx.gz"), z, zn);
    r = pr_idx_read(tmp("whole.idx.gz"), 0);
    CHECK(r && r->shape[0] == 10000 && pr_tensor_u8(r)[9999] == 9);
    pr_tensor_release(r);
    free(z);

    /* trailing garbage, bad magic, a header cut short, absurd dims, missing file */
    uint8_t more[8 + 10000 + 3];
    memcpy(more, buf, sizeof buf);
    memcpy(more + sizeof buf, "xyz", 3);
    spit(tmp("trail.idx"), more, sizeof more);
    CHECK(pr_idx_read(tmp("trail.idx"), 0) == NULL && has_error("trailing bytes"));
    spit(tmp("magic.idx"), "\x1f\x00\x08\x01\0\0\0\1x", 9);
    CHECK(pr_idx_read(tmp("magic.idx"), 0) == NULL && has_error("bad magic"));
    spit(tmp("type.idx"), "\0\0\x07\x01\0\0\0\1x", 9);
    CHECK(pr_idx_read(tmp("type.idx"), 0) == NULL && has_error("bad magic"));
    spit(tmp("short.idx"), "\0\0\x08\x03\0\0\0\1", 8);
    CHECK(pr_idx_read(tmp("short.idx"), 0) == NULL && has_error("truncated"));
    spit(tmp("huge.idx"), "\0\0\x08\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 16);
    CHECK(pr_idx_read(tmp("huge.idx"), 0) == NULL && has_error("too large"));
    /* a raw file claiming 4 GiB: refused from its size, before any allocation */
    spit(tmp("claim.idx"), "\0\0\x08\x02\0\x01\0\0\0\x01\0\0abc", 15);
    CHECK(pr_idx_read(tmp("claim.idx"), 0) == NULL &&
          has_error("truncated: expected 4294967296 bytes of data, got 3"));
    spit(tmp("ndim0.idx"), "\0\0\x08\x00", 4);
    CHECK(pr_idx_read(tmp("ndim0.idx"), 0) == NULL && has_error("dimensions"));
    CHECK(pr_idx_read(tmp("absent.idx"), 0) == NULL && has_error("absent.idx: cannot open"));
}

/* ------------------------------------------------------------------ npz */

static pr_tensor *find(pr_npz_entry *e, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(e[i].name, name) == 0)
            return e[i].t;
    fprintf(stderr, "  no array %s\n", name);
    return NULL;
}

static void test_npz_fixtures(void)
{
    pr_npz_entry *e = NULL;
    int n = 0;
    int rc = pr_npz_load(PRUNERT_TEST_DATA "/basic.npz", &e, &n);
    CHECK_MSG(rc == PR_OK, "%s", pr_last_error());
    if (rc < 0)
        return;
    CHECK(n == 10);
    pr_tensor *t = find(e, n, "a");
    CHECK(t && t->dtype == PR_FLOAT32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    for (int i = 0; t && i < 6; i++)
        CHECK(pr_tensor_f32(t)[i] == (float)i * 0.5f - 1.0f);
    t = find(e, n, "d");
    CHECK(t && t->dtype == PR_FLOAT32 && t->shape[0] == 4);
    CHECK(t && pr_tensor_f32(t)[0] == 1.5f && pr_tensor_f32(t)[1] == -2.25f &&
          pr_tensor_f32(t)[2] == 3e10f && pr_tensor_f32(t)[3] == 0.1f);
    t = find(e, n, "i");
    CHECK(t && t->dtype == PR_INT64 && pr_tensor_i64(t)[0] == -3 && pr_tensor_i64(t)[2] == 1LL << 40);
    t = find(e, n, "i4");
    CHECK(t && t->dtype == PR_INT64 && pr_tensor_i64(t)[0] == -5 && pr_tensor_i64(t)[2] == 2147483647);
    t = find(e, n, "u");
    CHECK(t && t->dtype == PR_UINT8 && pr_tensor_u8(t)[2] == 255);
    t = find(e, n, "b");
    CHECK(t && t->dtype == PR_UINT8 && t->shape[0] == 4 && pr_tensor_u8(t)[0] == 1 &&
          pr_tensor_u8(t)[1] == 0 && pr_tensor_u8(t)[3] == 1);
    /* Fortran order comes back in C order: element [r][c] = 4r + c */
    t = find(e, n, "f");
    CHECK(t && t->ndim == 2 && t->shape[0] == 3 && t->shape[1] == 4 && pr_tensor_is_contiguous(t));
    for (int i = 0; t && i < 12; i++)
        CHECK(pr_tensor_get_flat(t, i) == i);
    t = find(e, n, "f3");
    CHECK(t && t->ndim == 3 && t->shape[0] == 2 && t->shape[2] == 4 && t->dtype == PR_INT64);
    for (int i = 0; t && i < 24; i++)
        CHECK(pr_tensor_get_flat(t, i) == i);
    t = find(e, n, "s");
    CHECK(t && t->ndim == 0 && pr_tensor_numel(t) == 1 && pr_tensor_f32(t)[0] == 3.25f);
    t = find(e, n, "e");
    CHECK(t && t->ndim == 2 && t->shape[0] == 0 && t->shape[1] == 3);
    pr_npz_entries_free(e, n);

    rc = pr_npz_load(PRUNERT_TEST_DATA "/compressed.npz", &e, &n);
    CHECK_MSG(rc == PR_OK && n == 4, "%s", pr_last_error());
    if (rc == PR_OK) {
        t = find(e, n, "f");
        for (int i = 0; t && i < 12; i++)
            CHECK(pr_tensor_get_flat(t, i) == i);
        t = find(e, n, "i");
        CHECK(t && pr_tensor_i64(t)[3] == 7);
        pr_npz_entries_free(e, n);
    }
    rc = pr_npz_load(PRUNERT_TEST_DATA "/v2.npz", &e, &n);
    CHECK_MSG(rc == PR_OK && n == 1, "%s", pr_last_error());
    if (rc == PR_OK) {
        CHECK(strcmp(e[0].name, "v2") == 0 && e[0].t->shape[0] == 5 && pr_tensor_f32(e[0].t)[4] == 8.0f);
        pr_npz_entries_free(e, n);
    }
    t = pr_npy_read(PRUNERT_TEST_DATA "/a.npy");
    CHECK(t && t->shape[0] == 2 && t->shape[1] == 3 && pr_tensor_f32(t)[5] == 1.5f);
    pr_tensor_release(t);

    CHECK(pr_npz_load(PRUNERT_TEST_DATA "/bigendian.npz", &e, &n) < 0 && has_error("big-endian"));
    CHECK(pr_npz_load(PRUNERT_TEST_DATA "/object.npz", &e, &n) < 0 && has_error("never executes"));
    CHECK(pr_npz_load(PRUNERT_TEST_DATA "/a.npy", &e, &n) < 0 && has_error("not an .npz"));
    CHECK(pr_npz_load(PRUNERT_TEST_DATA "/duplicate.npz", &e, &n) < 0 && has_error("x.npy appears twice"));
    CHECK(pr_npz_load(tmp("absent.npz"), &e, &n) < 0 && has_error("cannot open"));
}

static void test_npz_round_trip_and_damage(void)
{
    int64_t s[2] = { 4, 5 };
    pr_tensor *a = pr_tensor_randn(2, s);
    pr_tensor *b = pr_tensor_randint(-1000, 1000, 1, (int64_t[]){ 7 });
    pr_tensor *c = pr_tensor_empty(PR_UINT8, 3, (int64_t[]){ 2, 2, 2 });
    for (int i = 0; i < 8; i++)
        pr_tensor_u8(c)[i] = (uint8_t)(250 + i);
    pr_tensor *d = pr_tensor_scalar(-7.5);
    pr_tensor *at = pr_tensor_transpose(a, 0, 1);
    const char *names[5] = { "weight", "idx", "bytes", "scalar", "weight_t" };
    pr_tensor *ts[5] = { a, b, c, d, at };
    for (int compress = 0; compress <= 1; compress++) {
        const char *p = compress ? tmp("rt_z.npz") : tmp("rt.npz");
        CHECK_MSG(pr_npz_save(p, 5, names, ts, compress) == PR_OK, "%s", pr_last_error());
        pr_npz_entry *e = NULL;
        int n = 0;
        CHECK_MSG(pr_npz_load(p, &e, &n) == PR_OK && n == 5, "%s", pr_last_error());
        for (int i = 0; i < n && i < 5; i++) {
            CHECK(strcmp(e[i].name, names[i]) == 0);
            CHECK(same_tensor(e[i].t, ts[i]));
        }
        pr_npz_entries_free(e, n);
    }
    CHECK(pr_npz_save(tmp("dup.npz"), 2, (const char *[]){ "x", "x" }, ts, 0) < 0 && has_error("twice"));
    CHECK(access(tmp("dup.npz"), F_OK) != 0);

    /* Every truncation and every flipped byte of a stored archive is an error, never a crash
     * (bytes that zip leaves unchecked: version-made-by, times, attributes, are skipped by
     * looking at whether the loaded values change instead). */
    size_t len = 0;
    uint8_t *orig = slurp(tmp("rt.npz"), &len);
    for (size_t cut = 0; orig && cut < len; cut++) {
        spit(tmp("cut.npz"), orig, cut);
        pr_npz_entry *e = NULL;
        int n = 0;
        int rc = pr_npz_load(tmp("cut.npz"), &e, &n);
        CHECK_MSG(rc < 0, "truncated at %zu of %zu loaded", cut, len);
        if (rc == PR_OK)
            pr_npz_entries_free(e, n);
    }
    int undetected = 0;
    for (size_t at_ = 0; orig && at_ < len; at_++) {
        orig[at_] ^= 0x10;
        spit(tmp("flip.npz"), orig, len);
        orig[at_] ^= 0x10;
        pr_npz_entry *e = NULL;
        int n = 0;
        if (pr_npz_load(tmp("flip.npz"), &e, &n) == PR_OK) {
            int same = n == 5;
            for (int i = 0; same && i < 5; i++)
                same = strcmp(e[i].name, names[i]) == 0 && same_tensor(e[i].t, ts[i]);
            undetected += !same;
            pr_npz_entries_free(e, n);
        }
    }
    CHECK_MSG(undetected == 0, "%d flipped bytes changed the data without an error", undetected);
    free(orig);
    pr_tensor_release(at);
    pr_tensor_release(a);
    pr_tensor_release(b);
    pr_tensor_release(c);
    pr_tensor_release(d);
}

/* ------------------------------------------------------------------ model file */

static const char *MANIFEST = "{\"arch\":\"mlp\",\"layers\":[{\"type\":\"linear\",\"in\":4,\"out\":3}],"
                              "\"sparsity\":0.5,\"note\":\"caf\\u00e9\"}";

static int write_model(const char *path, pr_tensor **ts, const char **names, int n)
{
    pr_mfile_writer *w = pr_mfile_writer_open(path, -1);
    if (!w)
        return PR_EIO;
    int rc = pr_mfile_writer_set_manifest(w, MANIFEST, strlen(MANIFEST));
    for (int i = 0; i < n && rc == PR_OK; i++)
        rc = pr_mfile_writer_add_tensor(w, names[i], ts[i], PR_ENC_DENSE);
    if (rc < 0) {
        pr_mfile_writer_abort(w);
        return rc;
    }
    return pr_mfile_writer_commit(w);
}

static int read_ok(const char *path)
{
    char *m, **names;
    pr_tensor **ts;
    int n;
    int rc = pr_mfile_read(path, &m, &names, &ts, &n);
    if (rc == PR_OK)
        pr_mfile_read_free(m, names, ts, n);
    return rc == PR_OK;
}

static void test_mfile(void)
{
    pr_tensor *w = pr_tensor_randn(2, (int64_t[]){ 3, 4 });
    pr_tensor *mask = pr_tensor_empty(PR_UINT8, 2, (int64_t[]){ 3, 4 });
    for (int i = 0; i < 12; i++)
        pr_tensor_u8(mask)[i] = (uint8_t)(i % 2);
    pr_tensor *idx = pr_tensor_arange(0, 10, 1, PR_INT64);
    pr_tensor *s = pr_tensor_scalar(2.5);
    pr_tensor *wt = pr_tensor_transpose(w, 0, 1);
    pr_tensor *ts[5] = { w, mask, idx, s, wt };
    const char *names[5] = { "fc.weight", "fc.weight.mask", "perm", "scale", "fc.weight.T" };
    const char *p = tmp("model.prt");
    CHECK_MSG(write_model(p, ts, names, 5) == PR_OK, "%s", pr_last_error());

    char *m = NULL, **rn = NULL;
    pr_tensor **rt = NULL;
    int n = 0;
    int rc = pr_mfile_read(p, &m, &rn, &rt, &n);
    CHECK_MSG(rc == PR_OK, "%s", pr_last_error());
    if (rc == PR_OK) {
        CHECK(strcmp(m, MANIFEST) == 0);
        CHECK(n == 5);
        for (int i = 0; i < n && i < 5; i++) {
            CHECK(strcmp(rn[i], names[i]) == 0);
            CHECK(same_tensor(rt[i], ts[i]));
        }
        pr_mfile_read_free(m, rn, rt, n);
    }
    pr_mfile_chunk_info *info = NULL;
    uint32_t version = 0;
    rc = pr_mfile_info(p, &version, &info, &n);
    CHECK(rc == PR_OK && version == PR_MFILE_VERSION && n == 6);
    if (rc == PR_OK && n == 6) {
        CHECK(info[0].kind == PR_MFILE_MANIFEST && info[0].raw_bytes == strlen(MANIFEST));
        CHECK(info[1].kind == PR_MFILE_TENSOR && strcmp(info[1].name, "fc.weight") == 0);
        CHECK(info[1].dtype == PR_FLOAT32 && info[1].ndim == 2 && info[1].shape[1] == 4);
        CHECK(info[1].raw_bytes == 48 && info[1].stored_bytes > 0 && info[1].encoding == PR_ENC_DENSE);
        CHECK(info[4].ndim == 0 && info[3].dtype == PR_INT64);
    }
    free(info);

    /* Every truncation and every single flipped byte is refused (all bytes are under a CRC or
     * checked: magic, version, flags, chunk headers, payloads, end marker). */
    size_t len = 0;
    uint8_t *orig = slurp(p, &len);
    int missed_cut = 0, missed_flip = 0;
    for (size_t cut = 0; orig && cut < len; cut++) {
        spit(tmp("cut.prt"), orig, cut);
        missed_cut += read_ok(tmp("cut.prt"));
    }
    for (size_t i = 0; orig && i < len; i++) {
        orig[i] ^= 0x01;
        spit(tmp("flip.prt"), orig, len);
        orig[i] ^= 0x01;
        missed_flip += read_ok(tmp("flip.prt"));
    }
    CHECK_MSG(missed_cut == 0 && missed_flip == 0, "%d truncations and %d flips read fine",
              missed_cut, missed_flip);
    /* the messages say what is wrong */
    spit(tmp("cut.prt"), orig, len - 1);
    CHECK(!read_ok(tmp("cut.prt")) && has_error("truncated"));
    spit(tmp("cut.prt"), orig, len - 20);
    CHECK(!read_ok(tmp("cut.prt")) && has_error("no end marker after 6 chunks"));
    uint8_t *copy = malloc(len + 1);
    memcpy(copy, orig, len);
    copy[len - 21] ^= 0xFF; /* last payload byte */
    spit(tmp("flip.prt"), copy, len);
    CHECK(!read_ok(tmp("flip.prt")) && has_error("CRC mismatch"));
    memcpy(copy, orig, len);
    copy[len] = 0;
    spit(tmp("trail.prt"), copy, len + 1);
    CHECK(!read_ok(tmp("trail.prt")) && has_error("trailing bytes"));
    memcpy(copy, orig, len);
    pr_put_le32(copy + 8, 3);
    spit(tmp("newer.prt"), copy, len);
    CHECK(!read_ok(tmp("newer.prt")) &&
          has_error("newer.prt: format version 3 is newer than this prunert (1); upgrade prunert"));
    free(copy);
    free(orig);
    CHECK(!read_ok(PRUNERT_TEST_DATA "/a.npy") && has_error("not a prunert model file"));
    CHECK(!read_ok(tmp("absent.prt")) && has_error("cannot open"));

    /* A failed write leaves the target untouched and no temporary file behind. */
    size_t before_len = 0, after_len = 0;
    uint8_t *before = slurp(p, &before_len);
    int entries = count_dir_entries();
    pr_mfile_writer *wr = pr_mfile_writer_open(p, 9);
    CHECK(wr != NULL);
    CHECK(pr_mfile_writer_add_tensor(wr, "x", w, PR_ENC_DENSE) == PR_OK);
    CHECK(count_dir_entries() == entries + 1);
    CHECK(pr_mfile_writer_add_tensor(wr, "x", w, PR_ENC_DENSE) < 0 && has_error("added twice"));
    CHECK(pr_mfile_writer_add_tensor(wr, "y", w, 63) < 0 && has_error("unknown encoding"));
    CHECK(pr_mfile_writer_add_tensor(wr, "", w, PR_ENC_DENSE) < 0);
    CHECK(pr_mfile_writer_set_manifest(wr, "[1,2]", 5) < 0 && has_error("JSON object"));
    CHECK(pr_mfile_writer_set_manifest(wr, "{\"a\":}", 6) < 0 && has_error("column 6"));
    pr_mfile_writer_abort(wr);
    uint8_t *after = slurp(p, &after_len);
    CHECK(before && after && before_len == after_len && memcmp(before, after, before_len) == 0);
    CHECK(count_dir_entries() == entries);
    free(after);
    free(before);
    CHECK(pr_mfile_writer_open(tmp("no/such/dir/model.prt"), -1) == NULL &&
          has_error("cannot create a temporary file"));
    CHECK(pr_mfile_writer_open(p, 12) == NULL && has_error("level"));
    /* A commit with no manifest writes "{}"; no tensors is fine. */
    wr = pr_mfile_writer_open(tmp("empty.prt"), 0);
    CHECK(wr && pr_mfile_writer_commit(wr) == PR_OK);
    rc = pr_mfile_read(tmp("empty.prt"), &m, &rn, &rt, &n);
    CHECK(rc == PR_OK && n == 0 && strcmp(m, "{}") == 0);
    if (rc == PR_OK)
        pr_mfile_read_free(m, rn, rt, n);
    CHECK(pr_mfile_encoding_find(PR_ENC_DENSE) == &pr_mfile_enc_dense);
    CHECK(pr_mfile_encoding_by_name("dense") == &pr_mfile_enc_dense && !pr_mfile_encoding_find(63));

    pr_tensor_release(wt);
    pr_tensor_release(w);
    pr_tensor_release(mask);
    pr_tensor_release(idx);
    pr_tensor_release(s);
}

/* ------------------------------------------------------------------ JSON */

static void test_json(void)
{
    const char *text = "{\"a\": [1, -2, 3.5, 1e300, true, false, null], \"s\": \"q\\\"\\\\\\/\\b\\f\\n\\r\\t"
                       "\\u00e9\\ud83d\\ude00\", \"n\": {\"x\": {}}, \"big\": 9223372036854775807,"
                       " \"neg\": -0.0, \"e\": []}";
    pr_json *v = pr_json_parse(text, strlen(text), "t");
    CHECK_MSG(v != NULL, "%s", pr_last_error());
    if (!v)
        return;
    pr_json *a = pr_json_object_get(v, "a");
    CHECK(a && a->type == PR_JSON_ARRAY && a->count == 7);
    CHECK(a && a->items[0]->type == PR_JSON_INTEGER && a->items[1]->integer == -2);
    CHECK(a && a->items[2]->type == PR_JSON_NUMBER && a->items[2]->number == 3.5);
    CHECK(a && a->items[4]->type == PR_JSON_BOOL && a->items[4]->boolean && a->items[6]->type == PR_JSON_NULL);
    pr_json *s = pr_json_object_get(v, "s");
    CHECK(s && s->len == 9 + 2 + 4 && memcmp(s->str + 9, "\xc3\xa9\xf0\x9f\x98\x80", 6) == 0);
    CHECK(pr_json_object_get(v, "big")->integer == INT64_MAX);
    size_t len = 0;
    char *out = pr_json_encode(v, 0, &len);
    CHECK(out && len == strlen(out));
    /* encode -> parse -> encode is a fixed point */
    pr_json *v2 = out ? pr_json_parse(out, len, "t2") : NULL;
    char *out2 = v2 ? pr_json_encode(v2, 2, NULL) : NULL;
    pr_json *v3 = out2 ? pr_json_parse(out2, strlen(out2), "t3") : NULL;
    char *out3 = v3 ? pr_json_encode(v3, 0, NULL) : NULL;
    CHECK(out && out3 && strcmp(out, out3) == 0);
    CHECK(out2 && strstr(out2, "\n  \"a\": [\n    1,"));
    CHECK(out && strstr(out, "\"neg\":-0.0") && strstr(out, "1e+300") && strstr(out, "\"e\":[]"));
    free(out);
    free(out2);
    free(out3);
    pr_json_free(v2);
    pr_json_free(v3);
    pr_json_free(v);

    /* 0.1 must come back exactly */
    pr_json *d = pr_json_new_number(0.1);
    out = pr_json_encode(d, 0, NULL);
    CHECK(out && strcmp(out, "0.1") == 0);
    free(out);
    d->number = 1.0 / 3.0;
    out = pr_json_encode(d, 0, NULL);
    CHECK(out && strtod(out, NULL) == 1.0 / 3.0);
    free(out);
    d->number = 0.0 / 0.0;
    CHECK(pr_json_encode(d, 0, NULL) == NULL && has_error("NaN"));
    pr_json_free(d);

    struct { const char *text, *err; } bad[] = {
        { "", "line 1, column 1 (byte 0): unexpected end" },
        { "[1,2,]", "column 6 (byte 5): trailing comma" },
        { "{\"a\":1,}", "trailing comma" },
        { "{\"a\":1 \"b\":2}", "column 8 (byte 7): expected ','" },
        { "[01]", "leading zeros" },
        { "[1.]", "digit after '.'" },
        { "[NaN]", "unexpected character 'N'" },
        { "{\"a\":1,\"a\":2}", "duplicate key" },
        { "\"abc", "unterminated string" },
        { "\"a\tb\"", "control character" },
        { "\"\\x\"", "invalid escape" },
        { "\"\\ud800\"", "surrogate" },
        { "\"\xc3\x28\"", "invalid UTF-8" },
        { "\"\xc0\xaf\"", "invalid UTF-8" },
        { "[1] 2", "text after the value" },
        { "{\n  \"a\": tru\n}", "line 2, column 8" },
        { "{1:2}", "expected a string key" },
        { "[1e999]", "out of range" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        pr_json *b = pr_json_parse(bad[i].text, strlen(bad[i].text), "bad");
        CHECK_MSG(b == NULL && strstr(pr_last_error(), bad[i].err), "input %zu: %s", i, pr_last_error());
        pr_json_free(b);
    }
    char deep[2 * PR_JSON_MAX_DEPTH + 10];
    int k = 0;
    for (int i = 0; i < PR_JSON_MAX_DEPTH + 1; i++)
        deep[k++] = '[';
    for (int i = 0; i < PR_JSON_MAX_DEPTH + 1; i++)
        deep[k++] = ']';
    CHECK(pr_json_parse(deep, (size_t)k, "deep") == NULL && has_error("nested deeper"));
    pr_json *o = pr_json_parse(deep + 1, (size_t)k - 2, "ok");
    CHECK(o != NULL);
    pr_json_free(o);

    /* built values, sorting, NULs in strings */
    pr_json *obj = pr_json_new(PR_JSON_OBJECT);
    CHECK(pr_json_object_set(obj, "b", 1, pr_json_new_integer(2)) == PR_OK);
    CHECK(pr_json_object_set(obj, "a", 1, pr_json_new_string("x\0y", 3)) == PR_OK);
    CHECK(pr_json_object_set(obj, "ab", 2, pr_json_new_bool(1)) == PR_OK);
    CHECK(pr_json_object_set(obj, "a", 1, pr_json_new_bool(1)) < 0);
    pr_json_object_sort(obj);
    out = pr_json_encode(obj, 0, NULL);
    CHECK(out && strcmp(out, "{\"a\":\"x\\u0000y\",\"ab\":true,\"b\":2}") == 0);
    free(out);
    pr_json_free(obj);
}

static void cleanup(void)
{
    DIR *d = opendir(tmpdir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] != '.')
            unlink(tmp(e->d_name));
    if (d)
        closedir(d);
    rmdir(tmpdir);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/prunert_test_io_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_idx_round_trip);
    RUN(test_idx_other_types);
    RUN(test_idx_fashion);
    RUN(test_idx_damaged);
    RUN(test_npz_fixtures);
    RUN(test_npz_round_trip_and_damage);
    RUN(test_mfile);
    RUN(test_json);
    cleanup();
    return CHECK_DONE();
}
