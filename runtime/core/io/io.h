/* io.h: files in and out of the core: IDX (MNIST), .npy/.npz (numpy), the prunert model file,
 * JSON, and the atomic-write helper they all share.
 *
 * Every reader treats its file as coming from a stranger: each length, count and offset is
 * checked against the file before it is used, and a short, corrupt or oversized file is an
 * error naming the file and the problem (pr_last_error()), never a crash or a silent short read.
 * Every writer goes through pr_afile: a temporary file next to the target, flushed and fsynced,
 * then renamed over it, so a failed write leaves the target as it was.
 *
 * Ownership: functions returning pr_tensor * / pr_json * / char * return something the caller
 * owns (pr_tensor_release, pr_json_free, free). Pointer parameters are borrowed unless their
 * comment says otherwise.
 */
#ifndef PR_IO_H
#define PR_IO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tensor.h"

/* ======================================================================== atomic writes */

typedef struct pr_afile pr_afile;

/* Creates `path`.tmp.XXXXXX (mkstemp) in the target's directory. NULL on failure. */
pr_afile *pr_afile_open(const char *path);
/* The stream to write to (owned by the pr_afile). */
FILE *pr_afile_stream(pr_afile *f);
/* fwrite that turns a short write into an error naming the target; PR_OK or PR_EIO. */
int pr_afile_write(pr_afile *f, const void *data, size_t n);
/* fflush, fsync, fclose, rename over the target, fsync the directory. Frees f whether it
 * succeeds or not; on failure the temporary file is removed and the target left untouched. */
int pr_afile_commit(pr_afile *f);
/* Closes and removes the temporary file; frees f. NULL-safe. */
void pr_afile_abort(pr_afile *f);

/* ======================================================================== IDX */

/* Reads an IDX file (raw, or gzip-compressed: detected by content, not by name).
 * Element types map to tensor dtypes: u8 -> uint8; i8, i16, i32 -> int64; f32, f64 -> float32.
 * limit > 0 reads only the first `limit` items (entries along dim 0); limit <= 0 reads all.
 * When reading all, bytes after the declared data are an error (a wrong or damaged file). */
pr_tensor *pr_idx_read(const char *path, int64_t limit);
/* Writes t as IDX (raw; gzip when path ends in ".gz"): uint8 -> u8, float32 -> f32,
 * int64 -> i32 (values outside int32 are an error). ndim 1..255. Atomic. */
int pr_idx_write(const char *path, pr_tensor *t);

/* ======================================================================== .npy / .npz */

/* Load: dtypes '<f4' -> float32, '<f8' -> float32 (converted: prunert computes in float32),
 * '<i8' -> int64, '<i4' '<i2' '|i1' '<u2' '<u4' -> int64 ('<u8' too, if the value fits),
 * '|u1' -> uint8, '|b1' -> uint8 (0/1). Big-endian ('>') data is refused with a message.
 * fortran_order True is transposed into C order. 0-d arrays load as 0-d tensors.
 * Header versions 1.0, 2.0 and 3.0. Members may be stored or deflated; ZIP64 records (which
 * numpy.savez always writes) are understood. Object arrays (pickles) are refused: loading
 * never executes anything. */

/* Called once per array. `name` is the member name without ".npy"; `t` is a NEW reference
 * the callback takes over (it must release it). Return < 0 to stop (that status is returned). */
typedef int (*pr_npz_fn)(const char *name, pr_tensor *t, void *ctx);
int pr_npz_load_each(const char *path, pr_npz_fn fn, void *ctx);

typedef struct pr_npz_entry {
    char *name;       /* owned by the entry */
    pr_tensor *t;     /* owned reference */
} pr_npz_entry;
/* All arrays of an .npz, in archive order. *entries is owned by the caller: pr_npz_entries_free. */
int pr_npz_load(const char *path, pr_npz_entry **entries, int *count);
void pr_npz_entries_free(pr_npz_entry *entries, int count);
/* Writes an .npz numpy.load reads: members "<name>.npy" (header v1.0; v2.0 when the header
 * needs it), stored or deflated (compress != 0), with CRC-32s. Arrays use the tensor dtype:
 * float32 '<f4', int64 '<i8', uint8 '|u1'. Members are limited to 4 GiB (no ZIP64 writer).
 * names/tensors are borrowed arrays of n. Atomic. */
int pr_npz_save(const char *path, int n, const char *const *names, pr_tensor *const *tensors,
                int compress);
/* A single .npy file. */
pr_tensor *pr_npy_read(const char *path);
int pr_npy_write(const char *path, pr_tensor *t);

/* ======================================================================== JSON */

typedef enum {
    PR_JSON_NULL, PR_JSON_BOOL, PR_JSON_INTEGER, PR_JSON_NUMBER, PR_JSON_STRING,
    PR_JSON_ARRAY, PR_JSON_OBJECT
} pr_json_type;

/* A parsed or built JSON value. Strings are UTF-8, NUL-terminated, and may hold NULs (\u0000),
 * so `len` is authoritative. Arrays and objects own their items; objects keep member order. */
typedef struct pr_json {
    pr_json_type type;
    int boolean;
    int64_t integer;          /* numbers written without '.', 'e' that fit in int64 */
    double number;
    char *str; size_t len;    /* string value */
    struct pr_json **items;   /* array items / object values (owned) */
    char **keys;              /* object keys (owned), count of them */
    size_t *key_lens;
    size_t count, cap;
} pr_json;

/* Strict RFC 8259 parser: one value, no trailing commas, no comments, no NaN/Infinity, no
 * leading zeros, valid UTF-8 and escapes, no control characters in strings, no duplicate
 * object keys, nesting at most PR_JSON_MAX_DEPTH. Errors read
 * "WHAT: JSON error at line L, column C (byte B): ...". `what` names the source (file name). */
#define PR_JSON_MAX_DEPTH 200
pr_json *pr_json_parse(const char *text, size_t len, const char *what);
/* Encodes v (borrowed). indent 0: compact; > 0: pretty with that many spaces. Returns a
 * malloc'd NUL-terminated string (caller frees) and its length in *len (may be NULL); NULL on
 * error (NaN/Inf, depth). Numbers round-trip: integers exactly, doubles with %.17g at most. */
char *pr_json_encode(const pr_json *v, int indent, size_t *len);

pr_json *pr_json_new(pr_json_type type);                 /* null, bool false, 0, "", [], {} */
pr_json *pr_json_new_bool(int b);
pr_json *pr_json_new_integer(int64_t i);
pr_json *pr_json_new_number(double d);
pr_json *pr_json_new_string(const char *s, size_t len);  /* copies s */
/* Takes ownership of `item` (also on failure, when it is freed). */
int pr_json_array_push(pr_json *arr, pr_json *item);
/* Takes ownership of `value` (also on failure); copies key. Refuses a duplicate key. */
int pr_json_object_set(pr_json *obj, const char *key, size_t key_len, pr_json *value);
/* Borrowed member or NULL. */
pr_json *pr_json_object_get(const pr_json *obj, const char *key);
/* Sorts an object's members by key bytes (deterministic output from unordered sources). */
void pr_json_object_sort(pr_json *obj);
void pr_json_free(pr_json *v);                            /* NULL-safe, recursive */

/* ======================================================================== model file */
/*
 * The prunert model file, format version PR_MFILE_VERSION. All integers little-endian.
 *
 *   file    = "PRUNERT\0" (8 bytes) | u32 version | u32 flags (0) | chunk* | end
 *   chunk   = "CHNK" | u32 kind | u32 dtype | u32 ndim | i64 shape[ndim]
 *             | u32 encoding | u32 name_len | u64 raw_len | u64 stored_len | u32 payload_crc
 *             | name (name_len bytes of UTF-8, no NUL) | u32 header_crc | payload
 *   end     = "PREND\0\0\0" | u64 chunk_count | u32 crc32 of the previous 16 bytes
 *
 *   kind        1 = manifest (payload: UTF-8 JSON object; dtype 0, ndim 0, encoding 0,
 *               name "manifest"), 2 = tensor.
 *   dtype       file codes, independent of pr_dtype's numbering: 1 float32, 2 int64, 3 uint8.
 *   encoding    how the tensor became raw bytes (see the table below); raw_len is the length of
 *               those bytes.
 *   payload     zlib (RFC 1950) compression of the raw bytes, stored_len bytes long;
 *               payload_crc is the CRC-32 of these stored bytes.
 *   header_crc  CRC-32 of the chunk header from "CHNK" through the name, so a damaged length or
 *               shape is caught before it is trusted.
 *   end         the chunk count detects a file cut at a chunk boundary; nothing may follow it.
 *
 * A file has exactly one manifest chunk (anywhere; the writer puts it where set_manifest was
 * called) and tensor chunks with distinct names. Readers refuse a newer version, unknown kinds,
 * dtypes or encodings, bad CRCs, lengths beyond the file, raw lengths beyond zlib's largest
 * ratio, and trailing bytes. Nothing in the file is ever executed.
 *
 * Version history: 1 = this layout.
 */
#define PR_MFILE_MAGIC "PRUNERT"   /* plus its terminating NUL: 8 bytes */
#define PR_MFILE_VERSION 1u
enum { PR_MFILE_MANIFEST = 1, PR_MFILE_TENSOR = 2 };
#define PR_MFILE_MAX_NAME 1024
#define PR_MFILE_MAX_CHUNKS 1000000

/* Encodings: one entry each in mfile.c's table. Ids are forever; reserved ones are listed so
 * two engineers never pick the same id. To add one: define a pr_mfile_encoding (anywhere in the
 * core), declare it here, add one line to the table in mfile.c. */
enum {
    PR_ENC_DENSE = 0,    /* row-major little-endian elements */
    PR_ENC_SPARSE = 1,   /* reserved: index + values (sparse/) */
    PR_ENC_QUANT8 = 2,   /* reserved: 8-bit quantised with scale/zero point */
    PR_ENC_KMEANS = 3,   /* k-means codebook of n bits (n in the chunk; enc_quant.c) */
    PR_ENC_MAX = 64      /* ids are < this */
};

typedef struct pr_mfile_encoding {
    uint32_t id;
    const char *name;    /* "dense", ... (reported by info and accepted by the Lua face) */
    /* Turns t (borrowed, contiguous) into bytes: *out is malloc'd, owned by the caller. */
    int (*encode)(const pr_tensor *t, uint8_t **out, uint64_t *out_len);
    /* Rebuilds a tensor of dtype/shape from `len` bytes (borrowed). Must check that the bytes
     * are exactly what the shape needs; `path` is for messages. Returns a NEW tensor or NULL. */
    pr_tensor *(*decode)(const uint8_t *data, uint64_t len, pr_dtype dt, int ndim,
                         const int64_t *shape, const char *path);
} pr_mfile_encoding;

extern const pr_mfile_encoding pr_mfile_enc_dense;
/* enc_sparse.c: non-zeros as index gaps + values; enc_quant.c: the same indices with 8-bit
 * linear codes ("quant8") or a 4-bit k-means codebook ("kmeans4"), float32 only. */
extern const pr_mfile_encoding pr_mfile_enc_sparse, pr_mfile_enc_quant8, pr_mfile_enc_kmeans4;
/* The k-means encoder with any codebook size: bits 1..8 (the chunk records it, so the
 * "kmeans4" decoder reads them all). t borrowed, contiguous float32; *out as encode(). */
int pr_enc_kmeans_encode(const pr_tensor *t, int bits, uint8_t **out, uint64_t *out_len);
/* The table entry for id / name, or NULL (no error set). */
const pr_mfile_encoding *pr_mfile_encoding_find(uint32_t id);
const pr_mfile_encoding *pr_mfile_encoding_by_name(const char *name);

typedef struct pr_mfile_writer pr_mfile_writer;
/* Starts writing `path` (through a temporary file). level: zlib level 0..9, or -1 default. */
pr_mfile_writer *pr_mfile_writer_open(const char *path, int level);
/* Writes the manifest chunk (JSON text, len bytes, borrowed; checked to be a JSON object).
 * Once per file. */
int pr_mfile_writer_set_manifest(pr_mfile_writer *w, const char *json, size_t len);
/* Writes one tensor chunk now (t borrowed; any layout). Names must be distinct and non-empty. */
int pr_mfile_writer_add_tensor(pr_mfile_writer *w, const char *name, pr_tensor *t,
                               uint32_t encoding);
/* Finishes the file ("{}" manifest if none was set), renames it over the target and frees w.
 * On any failure nothing replaces the target; w is freed either way. */
int pr_mfile_writer_commit(pr_mfile_writer *w);
/* Drops everything written; the target is untouched. Frees w; NULL-safe. */
void pr_mfile_writer_abort(pr_mfile_writer *w);

/* Reads a whole model file. On success the caller owns *manifest_json (malloc'd, NUL-terminated),
 * *names (malloc'd array of malloc'd strings) and *tensors (malloc'd array of references), all
 * with *count entries; free them with pr_mfile_read_free. */
int pr_mfile_read(const char *path, char **manifest_json, char ***names, pr_tensor ***tensors,
                  int *count);
void pr_mfile_read_free(char *manifest_json, char **names, pr_tensor **tensors, int count);

typedef struct pr_mfile_chunk_info {
    uint32_t kind;            /* PR_MFILE_MANIFEST / PR_MFILE_TENSOR */
    char name[PR_MFILE_MAX_NAME + 1];
    pr_dtype dtype;           /* meaningful for tensors */
    int ndim;
    int64_t shape[PR_MAX_DIMS];
    uint32_t encoding;
    uint64_t raw_bytes, stored_bytes;
} pr_mfile_chunk_info;
/* Lists the chunks (checking every header and payload CRC, without decompressing) for
 * `prunert info`. *chunks is malloc'd, owned by the caller (free). *version gets the file's. */
int pr_mfile_info(const char *path, uint32_t *version, pr_mfile_chunk_info **chunks, int *count);

/* ======================================================================== models */

struct pr_module;
/* A module tree from a configuration tree as Module:to_config writes it: {"kind": name,
 * option: number (null = the kind's default), ..., "children": [...]}. Only known kinds and
 * numeric options: nothing in it runs. `what` names the source in messages. New module or NULL. */
struct pr_module *pr_module_from_config(const pr_json *cfg, const char *what);
/* Loads a model file written by pr.save: the architecture from the manifest, the state
 * (parameters, buffers, masks; strict), eval mode, and the execution plans pr.optimize
 * recorded. Returns a new module, or NULL with a message naming the file and what is wrong.
 * *manifest (may be NULL) gets the parsed manifest, owned by the caller (pr_json_free). */
struct pr_module *pr_model_load(const char *path, pr_json **manifest);

/* ======================================================================== shared by the io files */

/* Little-endian loads and stores, independent of the host's byte order. */
static inline uint16_t pr_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t pr_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t pr_le64(const uint8_t *p) { return pr_le32(p) | (uint64_t)pr_le32(p + 4) << 32; }
static inline void pr_put_le16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void pr_put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i);
}
static inline void pr_put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i);
}
/* Product of shape[0..ndim) into *numel; -1 (no message set) on a negative dim or a product
 * above `max`. */
static inline int pr_io_numel(int ndim, const int64_t *shape, int64_t max, int64_t *numel)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return -1;
        if (shape[i] != 0 && n > max / shape[i])
            return -1;
        n *= shape[i];
    }
    if (n > max)
        return -1;
    *numel = n;
    return 0;
}
/* Compresses n bytes (borrowed) into a malloc'd *out (caller frees). wbits as zlib's
 * deflateInit2: 15 zlib, -15 raw deflate, 31 gzip. level -1..9. `what` names the file. */
int pr_io_deflate(const void *in, size_t n, int wbits, int level, uint8_t **out, size_t *out_len,
                  const char *what);

/* Index coding shared by the sparse and quantised encodings (enc_sparse.c): the flat
 * positions of the non-zeros as LEB128 varints of the gaps (pos - previous - 1). */
/* Writes the gaps of strictly increasing pos[0..n) (borrowed) into out (NULL: only counts);
 * returns the byte count. */
size_t pr_enc_gaps_put(uint8_t *out, const int64_t *pos, int64_t n);
/* A reader over an untrusted index run; every field borrowed from the caller. */
typedef struct pr_enc_gaps {
    const uint8_t *data;
    uint64_t len, off;
    int64_t prev, numel;
    const char *path;
} pr_enc_gaps;
void pr_enc_gaps_start(pr_enc_gaps *g, const uint8_t *data, uint64_t len, int64_t numel,
                       const char *path);
/* The next position, or PR_EFORMAT naming the damage (past the end, truncated varint). */
int pr_enc_gaps_next(pr_enc_gaps *g, int64_t *pos);
/* PR_EFORMAT when index bytes are left over. */
int pr_enc_gaps_finish(const pr_enc_gaps *g);
/* The non-zeros of a contiguous tensor t (borrowed): *pos malloc'd (caller frees; NULL if none). */
int pr_enc_nonzeros(const pr_tensor *t, int64_t **pos, int64_t *nnz);
/* Reads "u64 nnz | u64 idx_len" from data[0..len) followed by `head` more header bytes, and
 * checks nnz <= numel and that the index run fits what remains. */
int pr_enc_read_counts(const uint8_t *data, uint64_t len, uint64_t head, int64_t numel,
                       int64_t *nnz, uint64_t *idx_len, const char *path);

/* Whether the host stores numbers little-endian (then the dense paths may memcpy). */
static inline int pr_host_le(void) { const uint16_t one = 1; return *(const uint8_t *)&one == 1; }

#endif
