/* tensor.c: storages, tensors, views, copies and creation functions (see tensor.h).
 *
 * A tensor is a header (shape, strides, offset) over a refcounted storage. Views make a new
 * header over the same storage and never carry autograd state: the op layer (ops/shape.c)
 * records views on the tape itself. */
#include "tensor.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "broadcast.h"
#include "rng.h"

size_t pr_dtype_size(pr_dtype dt)
{
    switch (dt) {
    case PR_FLOAT32: return 4;
    case PR_INT64: return 8;
    case PR_UINT8: return 1;
    }
    return 0;
}

const char *pr_dtype_name(pr_dtype dt)
{
    switch (dt) {
    case PR_FLOAT32: return "float32";
    case PR_INT64: return "int64";
    case PR_UINT8: return "uint8";
    }
    return "unknown";
}

/* ---- internal helpers ---- */

static int check_dtype(const char *op, pr_dtype dt)
{
    if (pr_dtype_size(dt) == 0)
        return pr_error("%s: unknown dtype %d", op, (int)dt);
    return PR_OK;
}

/* Validates a shape and computes its element count without overflowing int64 or size_t once
 * multiplied by the element size. */
static int check_shape(const char *op, pr_dtype dt, int ndim, const int64_t *shape, int64_t *numel)
{
    if (ndim < 0 || ndim > PR_MAX_DIMS)
        return pr_error("%s: %d dims, at most %d are supported", op, ndim, PR_MAX_DIMS);
    if (ndim > 0 && !shape)
        return pr_error("%s: shape is missing", op);
    int64_t n = 1;
    int zero = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) {
            char b[160];
            return pr_error("%s: negative size %lld in shape %s", op, (long long)shape[d],
                            pr_shape_str(b, sizeof b, ndim, shape));
        }
        if (shape[d] == 0)
            zero = 1;
    }
    if (!zero) {
        for (int d = 0; d < ndim; d++)
            if (__builtin_mul_overflow(n, shape[d], &n))
                goto overflow;
        int64_t bytes;
        size_t es = pr_dtype_size(dt);
        if (__builtin_mul_overflow(n, (int64_t)es, &bytes) || (uint64_t)bytes > (uint64_t)SIZE_MAX / 2)
            goto overflow;
    } else {
        n = 0;
    }
    *numel = n;
    return PR_OK;
overflow:;
    char b[160];
    return pr_error_code(PR_ENOMEM, "%s: shape %s is too large", op, pr_shape_str(b, sizeof b, ndim, shape));
}

/* Wraps a possibly negative dim into [0, ndim); `extra` allows ndim itself (unsqueeze). */
static int wrap_dim(const char *op, int dim, int ndim, int extra, int *out)
{
    int n = ndim + (extra ? 1 : 0);
    int d = dim < 0 ? dim + n : dim;
    if (d < 0 || d >= n)
        return pr_error("%s: dim %d out of range for a %d-d tensor", op, dim, ndim);
    *out = d;
    return PR_OK;
}

static void contiguous_strides(int ndim, const int64_t *shape, int64_t *stride)
{
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        stride[d] = s;
        s *= shape[d] > 0 ? shape[d] : 1;
    }
}

/* ---- the buffer cache (see tensor.h) ---- */
#define CACHE_MIN_BYTES ((size_t)64 << 10)     /* smaller ones come from malloc's own bins */
#define CACHE_SLOTS 32
#define PR_STORAGE_CACHE_BYTES ((size_t)256 << 20)

static struct {
    pthread_mutex_t lock;
    void *data[CACHE_SLOTS];
    size_t cap[CACHE_SLOTS];
    int n;
    size_t bytes;
} cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* A cached buffer of at least `need` bytes and at most twice that (best fit), or NULL. */
static void *cache_take(size_t need, size_t *cap)
{
    void *p = NULL;
    pthread_mutex_lock(&cache.lock);
    int best = -1;
    for (int i = 0; i < cache.n; i++)
        if (cache.cap[i] >= need && cache.cap[i] / 2 <= need && (best < 0 || cache.cap[i] < cache.cap[best]))
            best = i;
    if (best >= 0) {
        p = cache.data[best];
        *cap = cache.cap[best];
        cache.bytes -= cache.cap[best];
        cache.n--;
        cache.data[best] = cache.data[cache.n];
        cache.cap[best] = cache.cap[cache.n];
    }
    pthread_mutex_unlock(&cache.lock);
    return p;
}

/* Keeps `p` for reuse when there is room; otherwise frees it (or the oldest entries). */
static void cache_give(void *p, size_t cap)
{
    if (cap < CACHE_MIN_BYTES || cap > PR_STORAGE_CACHE_BYTES / 2) {
        free(p);
        return;
    }
    void *evicted[CACHE_SLOTS];
    int ne = 0;
    pthread_mutex_lock(&cache.lock);
    while (cache.n > 0 && (cache.n == CACHE_SLOTS || cache.bytes + cap > PR_STORAGE_CACHE_BYTES)) {
        evicted[ne++] = cache.data[0];
        cache.bytes -= cache.cap[0];
        cache.n--;
        memmove(cache.data, cache.data + 1, (size_t)cache.n * sizeof cache.data[0]);
        memmove(cache.cap, cache.cap + 1, (size_t)cache.n * sizeof cache.cap[0]);
    }
    cache.data[cache.n] = p;
    cache.cap[cache.n] = cap;
    cache.n++;
    cache.bytes += cap;
    pthread_mutex_unlock(&cache.lock);
    for (int i = 0; i < ne; i++)
        free(evicted[i]);
}

void pr_storage_cache_clear(void)
{
    pthread_mutex_lock(&cache.lock);
    for (int i = 0; i < cache.n; i++)
        free(cache.data[i]);
    cache.n = 0;
    cache.bytes = 0;
    pthread_mutex_unlock(&cache.lock);
}

/* The cache's only pointers to its buffers live in this file's static `cache`. When the Lua
 * module is unloaded (lua_close dlcloses prunert/core.so) that memory is unmapped and the
 * buffers become unreachable: a real leak for any host that closes a state and goes on, and what
 * LeakSanitizer and valgrind report for every spec. Emptying the cache when the image is
 * unloaded (or the process exits) returns them; the cache stays usable if anything allocates
 * afterwards. */
__attribute__((destructor)) static void storage_cache_unload(void)
{
    pr_storage_cache_clear();
}

static pr_storage *storage_new(size_t nbytes, int zero)
{
    pr_storage *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    size_t cap = nbytes ? nbytes : 1; /* malloc(0) may be NULL; zero-size tensors stay ordinary */
    if (cap >= CACHE_MIN_BYTES) {
        cap = (cap + 4095) & ~(size_t)4095;
        s->data = cache_take(cap, &cap);
        if (s->data && zero)
            memset(s->data, 0, nbytes);
    }
    if (!s->data)
        s->data = zero ? calloc(cap, 1) : malloc(cap);
    if (!s->data) {
        free(s);
        return NULL;
    }
    s->nbytes = nbytes;
    s->capacity = cap;
    s->refcount = 1;
    return s;
}

static void release_nothing(void *data, void *ctx)
{
    (void)data;
    (void)ctx;
}

/* Refcounts change atomically so that kernels running on worker threads may take and drop
 * references to shared tensors; the last release sees every earlier write (acq_rel). */
static void storage_release(pr_storage *s)
{
    if (!s || __atomic_sub_fetch(&s->refcount, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    if (s->release)
        s->release(s->data, s->release_ctx);
    else
        cache_give(s->data, s->capacity);
    free(s);
}

/* A header over `s` (takes over the caller's storage reference). */
static pr_tensor *header_new(pr_storage *s, pr_dtype dt, int ndim, const int64_t *shape,
                             const int64_t *stride, int64_t offset)
{
    pr_tensor *t = calloc(1, sizeof *t);
    if (!t) {
        storage_release(s);
        pr_error_code(PR_ENOMEM, "out of memory for a tensor header");
        return NULL;
    }
    t->refcount = 1;
    t->dtype = dt;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        t->shape[d] = shape[d];
        t->stride[d] = stride[d];
    }
    t->offset = offset;
    t->storage = s;
    return t;
}

/* A view of t's storage with a new geometry (shares the storage; no autograd state). */
static pr_tensor *view_of(pr_tensor *t, int ndim, const int64_t *shape, const int64_t *stride,
                          int64_t offset)
{
    __atomic_add_fetch(&t->storage->refcount, 1, __ATOMIC_RELAXED);
    return header_new(t->storage, t->dtype, ndim, shape, stride, offset);
}

static pr_tensor *alloc_tensor(const char *op, pr_dtype dt, int ndim, const int64_t *shape, int zero)
{
    int64_t n = 0;
    if (check_dtype(op, dt) < 0 || check_shape(op, dt, ndim, shape, &n) < 0)
        return NULL;
    pr_storage *s = storage_new((size_t)n * pr_dtype_size(dt), zero);
    if (!s) {
        char b[160];
        pr_error_code(PR_ENOMEM, "%s: out of memory for shape %s", op, pr_shape_str(b, sizeof b, ndim, shape));
        return NULL;
    }
    int64_t stride[PR_MAX_DIMS];
    contiguous_strides(ndim, shape, stride);
    return header_new(s, dt, ndim, shape, stride, 0);
}

/* Element offset (from the view's element 0) of flat row-major index i. */
static int64_t flat_offset(const pr_tensor *t, int64_t i)
{
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        int64_t s = t->shape[d];
        off += (i % s) * t->stride[d];
        i /= s;
    }
    return off;
}

/* ---- lifecycle ---- */

pr_tensor *pr_tensor_empty(pr_dtype dt, int ndim, const int64_t *shape)
{
    return alloc_tensor("empty", dt, ndim, shape, 0);
}

pr_tensor *pr_tensor_zeros(pr_dtype dt, int ndim, const int64_t *shape)
{
    return alloc_tensor("zeros", dt, ndim, shape, 1);
}

pr_tensor *pr_tensor_full(pr_dtype dt, int ndim, const int64_t *shape, double value)
{
    pr_tensor *t = alloc_tensor("full", dt, ndim, shape, 0);
    if (t && pr_tensor_fill_(t, value) < 0) {
        pr_tensor_release(t);
        return NULL;
    }
    return t;
}

pr_tensor *pr_tensor_from_buffer(pr_dtype dt, int ndim, const int64_t *shape, void *data,
                                 void (*release)(void *, void *), void *ctx)
{
    int64_t n;
    if (check_dtype("from_buffer", dt) < 0 || check_shape("from_buffer", dt, ndim, shape, &n) < 0)
        return NULL;
    if (!data && n > 0) {
        pr_error("from_buffer: data is NULL");
        return NULL;
    }
    pr_storage *s = calloc(1, sizeof *s);
    if (!s) {
        pr_error_code(PR_ENOMEM, "from_buffer: out of memory");
        return NULL;
    }
    s->data = data;
    s->nbytes = (size_t)n * pr_dtype_size(dt);
    s->refcount = 1;
    /* The caller owns the buffer: without a callback the core must still never free() it. */
    s->release = release ? release : release_nothing;
    s->release_ctx = ctx;
    int64_t stride[PR_MAX_DIMS];
    contiguous_strides(ndim, shape, stride);
    return header_new(s, dt, ndim, shape, stride, 0);
}

pr_tensor *pr_tensor_scalar(double value)
{
    return pr_tensor_full(PR_FLOAT32, 0, NULL, value);
}

void pr_tensor_retain(pr_tensor *t)
{
    if (t)
        __atomic_add_fetch(&t->refcount, 1, __ATOMIC_RELAXED);
}

void pr_tensor_release(pr_tensor *t)
{
    if (!t || __atomic_sub_fetch(&t->refcount, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    pr_tensor_release(t->grad);
    pr_node_release(t->grad_fn);
    pr_tensor_release(t->mask);
    storage_release(t->storage);
    free(t);
}

/* ---- facts ---- */

int64_t pr_tensor_numel(const pr_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= t->shape[d];
    return n;
}

int pr_tensor_is_contiguous(const pr_tensor *t)
{
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] == 0)
            return 1;
        if (t->shape[d] != 1 && t->stride[d] != s)
            return 0;
        s *= t->shape[d];
    }
    return 1;
}

int pr_tensor_same_shape(const pr_tensor *a, const pr_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return 0;
    return 1;
}

void *pr_tensor_data(const pr_tensor *t)
{
    return (char *)t->storage->data + t->offset * (int64_t)pr_dtype_size(t->dtype);
}

double pr_tensor_get_flat(const pr_tensor *t, int64_t i)
{
    int64_t n = pr_tensor_numel(t);
    if (i < 0 || i >= n) {
        pr_error("get_flat: index %lld out of range for %lld elements", (long long)i, (long long)n);
        return NAN;
    }
    return pr_elem_get(pr_tensor_data(t), t->dtype, flat_offset(t, i));
}

int pr_tensor_set_flat(pr_tensor *t, int64_t i, double v)
{
    int64_t n = pr_tensor_numel(t);
    if (i < 0 || i >= n)
        return pr_error("set_flat: index %lld out of range for %lld elements", (long long)i, (long long)n);
    pr_tensor_written(t);
    pr_elem_set(pr_tensor_data(t), t->dtype, flat_offset(t, i), v);
    return PR_OK;
}

char *pr_tensor_shape_str(const pr_tensor *t, char *buf, size_t n)
{
    return pr_shape_str(buf, n, t->ndim, t->shape);
}

/* ---- creation ---- */

pr_tensor *pr_tensor_arange(double start, double stop, double step, pr_dtype dt)
{
    if (check_dtype("arange", dt) < 0)
        return NULL;
    if (step == 0 || !isfinite(step) || !isfinite(start) || !isfinite(stop)) {
        pr_error("arange: start %g, stop %g and step %g must be finite with step != 0", start, stop, step);
        return NULL;
    }
    double c = ceil((stop - start) / step);
    if (c > 4e18) {
        pr_error_code(PR_ENOMEM, "arange: %g elements is too many", c);
        return NULL;
    }
    int64_t n = c > 0 ? (int64_t)c : 0;
    pr_tensor *t = alloc_tensor("arange", dt, 1, &n, 0);
    if (!t)
        return NULL;
    void *p = pr_tensor_data(t);
    for (int64_t i = 0; i < n; i++)
        pr_elem_set(p, dt, i, start + (double)i * step);
    return t;
}

pr_tensor *pr_tensor_linspace(double start, double stop, int64_t n)
{
    if (n < 0) {
        pr_error("linspace: negative count %lld", (long long)n);
        return NULL;
    }
    pr_tensor *t = alloc_tensor("linspace", PR_FLOAT32, 1, &n, 0);
    if (!t)
        return NULL;
    float *p = pr_tensor_f32(t);
    double step = n > 1 ? (stop - start) / (double)(n - 1) : 0;
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)(i == n - 1 && n > 1 ? stop : start + (double)i * step);
    return t;
}

pr_tensor *pr_tensor_eye(int64_t n, int64_t m)
{
    int64_t shape[2] = { n, m };
    pr_tensor *t = alloc_tensor("eye", PR_FLOAT32, 2, shape, 1);
    if (!t)
        return NULL;
    float *p = pr_tensor_f32(t);
    for (int64_t i = 0; i < n && i < m; i++)
        p[i * m + i] = 1.0f;
    return t;
}

pr_tensor *pr_tensor_rand(int ndim, const int64_t *shape)
{
    pr_tensor *t = alloc_tensor("rand", PR_FLOAT32, ndim, shape, 0);
    if (!t)
        return NULL;
    float *p = pr_tensor_f32(t);
    int64_t n = pr_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        /* Rounding a double just below 1 to float can give 1.0f: redraw to keep [0,1). */
        float v;
        do
            v = (float)pr_rng_uniform();
        while (v >= 1.0f);
        p[i] = v;
    }
    return t;
}

pr_tensor *pr_tensor_randn(int ndim, const int64_t *shape)
{
    pr_tensor *t = alloc_tensor("randn", PR_FLOAT32, ndim, shape, 0);
    if (!t)
        return NULL;
    float *p = pr_tensor_f32(t);
    int64_t n = pr_tensor_numel(t);
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)pr_rng_normal();
    return t;
}

pr_tensor *pr_tensor_randint(int64_t low, int64_t high, int ndim, const int64_t *shape)
{
    int64_t range;
    if (high <= low || __builtin_sub_overflow(high, low, &range)) {
        pr_error("randint: empty or too wide range [%lld, %lld)", (long long)low, (long long)high);
        return NULL;
    }
    pr_tensor *t = alloc_tensor("randint", PR_INT64, ndim, shape, 0);
    if (!t)
        return NULL;
    int64_t *p = pr_tensor_i64(t);
    int64_t n = pr_tensor_numel(t);
    for (int64_t i = 0; i < n; i++)
        p[i] = low + pr_rng_below(range);
    return t;
}

/* ---- views ---- */

/* Resolves one -1 in `shape` against `numel` into out[]. */
static int infer_shape(const char *op, const pr_tensor *t, int ndim, const int64_t *shape, int64_t *out)
{
    if (ndim < 0 || ndim > PR_MAX_DIMS)
        return pr_error("%s: %d dims, at most %d are supported", op, ndim, PR_MAX_DIMS);
    if (ndim > 0 && !shape)
        return pr_error("%s: shape is missing", op);
    int infer = -1;
    int64_t prod = 1;
    char a[160], b[160];
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == -1) {
            if (infer >= 0)
                return pr_error("%s: more than one -1 in shape %s", op, pr_shape_str(a, sizeof a, ndim, shape));
            infer = d;
        } else if (shape[d] < 0) {
            return pr_error("%s: negative size in shape %s", op, pr_shape_str(a, sizeof a, ndim, shape));
        } else if (__builtin_mul_overflow(prod, shape[d], &prod)) {
            return pr_error("%s: shape %s is too large", op, pr_shape_str(a, sizeof a, ndim, shape));
        }
        out[d] = shape[d];
    }
    int64_t n = pr_tensor_numel(t);
    if (infer >= 0) {
        if (prod == 0 || n % prod != 0)
            return pr_error("%s: cannot view %s (%lld elements) as %s", op, pr_tensor_shape_str(t, b, sizeof b),
                            (long long)n, pr_shape_str(a, sizeof a, ndim, shape));
        out[infer] = n / prod;
        prod = n;
    }
    if (prod != n)
        return pr_error("%s: cannot view %s (%lld elements) as %s (%lld elements)", op,
                        pr_tensor_shape_str(t, b, sizeof b), (long long)n,
                        pr_shape_str(a, sizeof a, ndim, shape), (long long)prod);
    return PR_OK;
}

/* Strides that read t's elements in row-major order under `shape`, without copying, if any
 * exist (the algorithm of PyTorch's computeStride: dims merge into chunks that are contiguous
 * among themselves, and each chunk must be re-split exactly). Returns 1 if found. */
static int view_strides(const pr_tensor *t, int ndim, const int64_t *shape, int64_t *stride)
{
    if (pr_tensor_numel(t) == 0 || pr_tensor_is_contiguous(t)) {
        contiguous_strides(ndim, shape, stride);
        return 1;
    }
    int view_d = ndim - 1;
    int64_t chunk_base = t->stride[t->ndim - 1], tensor_numel = 1, view_numel = 1;
    for (int td = t->ndim - 1; td >= 0; td--) {
        tensor_numel *= t->shape[td];
        if (td == 0 || (t->shape[td - 1] != 1 && t->stride[td - 1] != tensor_numel * chunk_base)) {
            while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
                stride[view_d] = view_numel * chunk_base;
                view_numel *= shape[view_d];
                view_d--;
            }
            if (view_numel != tensor_numel)
                return 0;
            if (td > 0) {
                chunk_base = t->stride[td - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    return view_d == -1;
}

pr_tensor *pr_tensor_view(pr_tensor *t, int ndim, const int64_t *shape)
{
    int64_t s[PR_MAX_DIMS], st[PR_MAX_DIMS];
    if (infer_shape("view", t, ndim, shape, s) < 0)
        return NULL;
    if (!view_strides(t, ndim, s, st)) {
        char a[160], b[160];
        pr_error("view: %s with strides that are not viewable as %s; use reshape",
                 pr_tensor_shape_str(t, a, sizeof a), pr_shape_str(b, sizeof b, ndim, s));
        return NULL;
    }
    return view_of(t, ndim, s, st, t->offset);
}

pr_tensor *pr_tensor_reshape(pr_tensor *t, int ndim, const int64_t *shape)
{
    int64_t s[PR_MAX_DIMS], st[PR_MAX_DIMS];
    if (infer_shape("reshape", t, ndim, shape, s) < 0)
        return NULL;
    if (view_strides(t, ndim, s, st))
        return view_of(t, ndim, s, st, t->offset);
    pr_tensor *c = pr_tensor_clone(t);
    if (!c)
        return NULL;
    contiguous_strides(ndim, s, st);
    pr_tensor *v = view_of(c, ndim, s, st, c->offset);
    pr_tensor_release(c);
    return v;
}

pr_tensor *pr_tensor_transpose(pr_tensor *t, int d0, int d1)
{
    int a = 0, b = 0;
    if (wrap_dim("transpose", d0, t->ndim, 0, &a) < 0 || wrap_dim("transpose", d1, t->ndim, 0, &b) < 0)
        return NULL;
    int64_t s[PR_MAX_DIMS], st[PR_MAX_DIMS];
    memcpy(s, t->shape, sizeof s);
    memcpy(st, t->stride, sizeof st);
    s[a] = t->shape[b], s[b] = t->shape[a];
    st[a] = t->stride[b], st[b] = t->stride[a];
    return view_of(t, t->ndim, s, st, t->offset);
}

pr_tensor *pr_tensor_permute(pr_tensor *t, const int *dims)
{
    int seen[PR_MAX_DIMS] = {0};
    int64_t s[PR_MAX_DIMS], st[PR_MAX_DIMS];
    if (t->ndim > 0 && !dims) {
        pr_error("permute: dims are missing");
        return NULL;
    }
    for (int d = 0; d < t->ndim; d++) {
        int k = 0;
        if (wrap_dim("permute", dims[d], t->ndim, 0, &k) < 0)
            return NULL;
        if (seen[k]) {
            pr_error("permute: dim %d appears twice in a permutation of %d dims", dims[d], t->ndim);
            return NULL;
        }
        seen[k] = 1;
        s[d] = t->shape[k];
        st[d] = t->stride[k];
    }
    return view_of(t, t->ndim, s, st, t->offset);
}

pr_tensor *pr_tensor_narrow(pr_tensor *t, int dim, int64_t start, int64_t len)
{
    int d = 0;
    if (wrap_dim("narrow", dim, t->ndim, 0, &d) < 0)
        return NULL;
    if (start < 0 || len < 0 || start > t->shape[d] || len > t->shape[d] - start) {
        pr_error("narrow: start %lld and length %lld out of range for dim %d of size %lld",
                 (long long)start, (long long)len, d, (long long)t->shape[d]);
        return NULL;
    }
    int64_t s[PR_MAX_DIMS];
    memcpy(s, t->shape, sizeof s);
    s[d] = len;
    return view_of(t, t->ndim, s, t->stride, t->offset + (len > 0 ? start * t->stride[d] : 0));
}

pr_tensor *pr_tensor_select(pr_tensor *t, int dim, int64_t index)
{
    int d = 0;
    if (wrap_dim("select", dim, t->ndim, 0, &d) < 0)
        return NULL;
    if (index < 0 || index >= t->shape[d]) {
        pr_error("select: index %lld out of range for dim %d of size %lld", (long long)index, d,
                 (long long)t->shape[d]);
        return NULL;
    }
    int64_t s[PR_MAX_DIMS], st[PR_MAX_DIMS];
    int k = 0;
    for (int i = 0; i < t->ndim; i++)
        if (i != d) {
            s[k] = t->shape[i];
            st[k++] = t->stride[i];
        }
    return view_of(t, t->ndim - 1, s, st, t->offset + index * t->stride[d]);
}

pr_tensor *pr_tensor_squeeze(pr_tensor *t, int dim)
{
    if (dim >= t->ndim) {
        pr_error("squeeze: dim %d out of range for a %d-d tensor", dim, t->ndim);
        return NULL;
    }
    int64_t s[PR_MAX_DIMS], st[PR_MAX_DIMS];
    int k = 0;
    for (int i = 0; i < t->ndim; i++) {
        int drop = t->shape[i] == 1 && (dim < 0 || i == dim);
        if (!drop) {
            s[k] = t->shape[i];
            st[k++] = t->stride[i];
        }
    }
    return view_of(t, k, s, st, t->offset);
}

pr_tensor *pr_tensor_unsqueeze(pr_tensor *t, int dim)
{
    int d = 0;
    if (wrap_dim("unsqueeze", dim, t->ndim, 1, &d) < 0)
        return NULL;
    if (t->ndim >= PR_MAX_DIMS) {
        pr_error("unsqueeze: a %d-d tensor cannot gain a dim (at most %d)", t->ndim, PR_MAX_DIMS);
        return NULL;
    }
    int64_t s[PR_MAX_DIMS], st[PR_MAX_DIMS];
    for (int i = 0, k = 0; i <= t->ndim; i++) {
        if (i == d) {
            s[i] = 1;
            /* any stride is valid for a size-1 dim; this one keeps contiguity visible */
            st[i] = k < t->ndim ? t->stride[k] * t->shape[k] : 1;
        } else {
            s[i] = t->shape[k];
            st[i] = t->stride[k++];
        }
    }
    return view_of(t, t->ndim + 1, s, st, t->offset);
}

pr_tensor *pr_tensor_expand(pr_tensor *t, int ndim, const int64_t *shape)
{
    char a[160], b[160];
    if (ndim < t->ndim || ndim > PR_MAX_DIMS || (ndim > 0 && !shape)) {
        pr_error("expand: cannot expand %s to %d dims", pr_tensor_shape_str(t, a, sizeof a), ndim);
        return NULL;
    }
    int64_t s[PR_MAX_DIMS], st[PR_MAX_DIMS];
    for (int d = 0; d < ndim; d++) {
        int td = d - (ndim - t->ndim);
        if (td < 0) {
            if (shape[d] < 0)
                goto bad;
            s[d] = shape[d];
            st[d] = 0;
        } else if (shape[d] == -1 || shape[d] == t->shape[td]) {
            s[d] = t->shape[td];
            st[d] = t->stride[td];
        } else if (t->shape[td] == 1 && shape[d] >= 0) {
            s[d] = shape[d];
            st[d] = 0;
        } else {
            goto bad;
        }
    }
    return view_of(t, ndim, s, st, t->offset);
bad:
    pr_error("expand: %s cannot expand to %s", pr_tensor_shape_str(t, a, sizeof a),
             pr_shape_str(b, sizeof b, ndim, shape));
    return NULL;
}

/* ---- copies ---- */

pr_tensor *pr_tensor_contiguous(pr_tensor *t)
{
    if (pr_tensor_is_contiguous(t)) {
        pr_tensor_retain(t);
        return t;
    }
    return pr_tensor_clone(t);
}

static pr_tensor *copy_as(pr_tensor *t, pr_dtype dt, const char *op)
{
    pr_tensor *c = alloc_tensor(op, dt, t->ndim, t->shape, 0);
    if (c && pr_tensor_copy_(c, t) < 0) {
        pr_tensor_release(c);
        return NULL;
    }
    return c;
}

pr_tensor *pr_tensor_clone(pr_tensor *t)
{
    return copy_as(t, t->dtype, "clone");
}

pr_tensor *pr_tensor_to(pr_tensor *t, pr_dtype dt)
{
    if (check_dtype("to", dt) < 0)
        return NULL;
    return copy_as(t, dt, "to");
}

/* One inner loop per dtype pair: the innermost dim runs with plain strides, the outer dims
 * through pr_iter. */
#define COPY_LOOP(DT, ST, CONV)                                                               \
    do {                                                                                      \
        DT *d_ = (DT *)dbase;                                                                 \
        const ST *s_ = (const ST *)sbase;                                                     \
        for (int64_t o_ = 0; o_ < it.numel; o_++, pr_iter_next(&it)) {                        \
            DT *dp_ = d_ + it.off[0];                                                         \
            const ST *sp_ = s_ + it.off[1];                                                   \
            for (int64_t j_ = 0; j_ < inner; j_++)                                            \
                dp_[j_ * dst_s] = CONV(sp_[j_ * src_s]);                                      \
        }                                                                                     \
    } while (0)

#define CONV_ID(x) (x)
#define CONV_F(x) ((float)(x))
#define CONV_I64(x) pr_elem_to_i64((double)(x))
#define CONV_U8(x) pr_elem_to_u8((double)(x))

int pr_tensor_copy_(pr_tensor *dst, pr_tensor *src)
{
    int64_t sst[PR_MAX_DIMS];
    if (pr_broadcast_strides("copy_", src, dst->ndim, dst->shape, sst) < 0)
        return PR_EINVAL;
    pr_tensor_written(dst);
    int64_t n = pr_tensor_numel(dst);
    if (n == 0)
        return PR_OK;
    size_t es = pr_dtype_size(dst->dtype);
    if (dst->dtype == src->dtype && pr_tensor_same_shape(dst, src) && pr_tensor_is_contiguous(dst) &&
        pr_tensor_is_contiguous(src)) {
        memmove(pr_tensor_data(dst), pr_tensor_data(src), (size_t)n * es);
        return PR_OK;
    }
    /* Overlapping storage (copying a tensor's transpose into itself) would read values already
     * overwritten: copy the source out first. */
    pr_tensor *tmp = NULL;
    if (src->storage == dst->storage) {
        tmp = pr_tensor_clone(src);
        if (!tmp)
            return PR_ENOMEM;
        src = tmp;
        pr_broadcast_strides("copy_", src, dst->ndim, dst->shape, sst);
    }
    /* The outer dims (all but the last) are walked by pr_iter; the last one is the loop. */
    int nd = dst->ndim, rc = PR_OK;
    int64_t inner = nd ? dst->shape[nd - 1] : 1;
    int64_t dst_s = nd ? dst->stride[nd - 1] : 0, src_s = nd ? sst[nd - 1] : 0;
    pr_iter it;
    memset(&it, 0, sizeof it);
    it.ndim = nd > 0 ? nd - 1 : 0;
    it.n = 2;
    it.numel = n / inner;
    for (int d = 0; d < it.ndim; d++) {
        it.shape[d] = dst->shape[d];
        it.stride[0][d] = dst->stride[d];
        it.stride[1][d] = sst[d];
    }
    void *dbase = pr_tensor_data(dst);
    const void *sbase = pr_tensor_data(src);
    switch (dst->dtype * 3 + src->dtype) {
    case PR_FLOAT32 * 3 + PR_FLOAT32: COPY_LOOP(float, float, CONV_ID); break;
    case PR_FLOAT32 * 3 + PR_INT64: COPY_LOOP(float, int64_t, CONV_F); break;
    case PR_FLOAT32 * 3 + PR_UINT8: COPY_LOOP(float, uint8_t, CONV_F); break;
    case PR_INT64 * 3 + PR_FLOAT32: COPY_LOOP(int64_t, float, CONV_I64); break;
    case PR_INT64 * 3 + PR_INT64: COPY_LOOP(int64_t, int64_t, CONV_ID); break;
    case PR_INT64 * 3 + PR_UINT8: COPY_LOOP(int64_t, uint8_t, CONV_ID); break;
    case PR_UINT8 * 3 + PR_FLOAT32: COPY_LOOP(uint8_t, float, CONV_U8); break;
    case PR_UINT8 * 3 + PR_INT64: COPY_LOOP(uint8_t, int64_t, pr_elem_u8_from_i64); break;
    case PR_UINT8 * 3 + PR_UINT8: COPY_LOOP(uint8_t, uint8_t, CONV_ID); break;
    default:
        rc = pr_error("copy_: unsupported dtypes %s <- %s", pr_dtype_name(dst->dtype), pr_dtype_name(src->dtype));
    }
    pr_tensor_release(tmp);
    return rc;
}

int pr_tensor_fill_(pr_tensor *t, double v)
{
    pr_tensor_written(t);
    int64_t n = pr_tensor_numel(t);
    if (n == 0)
        return PR_OK;
    void *base = pr_tensor_data(t);
    if (pr_tensor_is_contiguous(t)) {
        switch (t->dtype) {
        case PR_FLOAT32: {
            float *p = base, f = (float)v;
            for (int64_t i = 0; i < n; i++)
                p[i] = f;
            return PR_OK;
        }
        case PR_INT64: {
            int64_t *p = base, x = pr_elem_to_i64(v);
            for (int64_t i = 0; i < n; i++)
                p[i] = x;
            return PR_OK;
        }
        case PR_UINT8:
            memset(base, pr_elem_to_u8(v), (size_t)n);
            return PR_OK;
        }
    }
    pr_iter it;
    const pr_tensor *ops[1] = { t };
    int rc = pr_iter_init(&it, "fill_", t->ndim, t->shape, 1, ops);
    if (rc < 0)
        return rc;
    for (int64_t i = 0; i < it.numel; i++, pr_iter_next(&it))
        pr_elem_set(base, t->dtype, it.off[0], v);
    return PR_OK;
}
