/* tensor.h: storages, tensors and views: the data model every other part of the core uses.
 *
 * A storage is a refcounted byte buffer; a tensor is a refcounted view of a storage (dtype,
 * shape, strides and offset in elements), as Torch7's THStorage/THTensor. Views share the
 * storage; contiguous() copies only when it must. Indices and dimensions are 0-based here;
 * the Lua binding converts from Lua's 1-based ones.
 *
 * Ownership: every function returning pr_tensor * returns a NEW reference the caller owns and
 * must pr_tensor_release(); NULL means failure with the message in pr_last_error(). Pointer
 * parameters are borrowed unless their comment says otherwise.
 */
#ifndef PR_TENSOR_H
#define PR_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define PR_MAX_DIMS 8

typedef enum { PR_FLOAT32 = 0, PR_INT64 = 1, PR_UINT8 = 2 } pr_dtype;

typedef struct pr_storage {
    void *data;
    size_t nbytes;
    int refcount;
    /* Called instead of free() when the storage dies; NULL for memory the core allocated.
     * A borrowed host buffer sets a no-op (see include/prunert.h). */
    void (*release)(void *data, void *ctx);
    void *release_ctx;
    size_t capacity;   /* bytes actually allocated (>= nbytes) for memory the core owns */
    /* Bumped by every in-place write through the core (copy_, fill_, set, add_, mul_, scale_,
     * mask application, optimizer steps): what a packed copy of the data (an execution plan)
     * checks to know it is stale. Code writing through a data pointer calls pr_tensor_written. */
    uint64_t version;
} pr_storage;

struct pr_node; /* autograd.h */

typedef struct pr_tensor {
    int refcount;
    pr_dtype dtype;
    int ndim;                      /* 0 for a scalar */
    int64_t shape[PR_MAX_DIMS];
    int64_t stride[PR_MAX_DIMS];   /* in elements */
    int64_t offset;                /* in elements */
    pr_storage *storage;           /* owned reference */
    /* Autograd: grad is an owned reference or NULL; grad_fn is the node that produced this
     * tensor (owned reference) or NULL for leaves and untracked results. */
    int requires_grad;
    struct pr_tensor *grad;
    struct pr_node *grad_fn;
    /* Optional mask (same shape, float32 0/1, owned) for parameters; see autograd/modules.
     * masked_at / mask_at: the versions of this tensor's and the mask's storages right after
     * the mask was last applied, so a module's forward can tell that a write since (copy_,
     * set, through a view...) may have put values back under the mask (module.c). */
    struct pr_tensor *mask;
    uint64_t masked_at, mask_at;
} pr_tensor;

size_t pr_dtype_size(pr_dtype dt);
const char *pr_dtype_name(pr_dtype dt);

/* Large buffers the core frees are kept in a small cache and handed to the next allocation of
 * a similar size: a fresh mmap'd buffer costs a page fault per 4 KiB on first touch, which made
 * every large result (and every training step) pay again. Bounded (PR_STORAGE_CACHE_BYTES);
 * pr_storage_cache_clear() returns it all to the system. */
void pr_storage_cache_clear(void);

/* ---- lifecycle ---- */
pr_tensor *pr_tensor_empty(pr_dtype dt, int ndim, const int64_t *shape); /* uninitialised */
pr_tensor *pr_tensor_zeros(pr_dtype dt, int ndim, const int64_t *shape);
pr_tensor *pr_tensor_full(pr_dtype dt, int ndim, const int64_t *shape, double value);
/* Wraps a caller's buffer without copying. `data` stays owned by the caller, who must keep it
 * alive until `release(data, ctx)` is called (release may be NULL: never called). */
pr_tensor *pr_tensor_from_buffer(pr_dtype dt, int ndim, const int64_t *shape, void *data,
                                 void (*release)(void *, void *), void *ctx);
pr_tensor *pr_tensor_scalar(double value); /* 0-d float32 */
void pr_tensor_retain(pr_tensor *t);
void pr_tensor_release(pr_tensor *t);      /* NULL-safe */

/* ---- facts ---- */
int64_t pr_tensor_numel(const pr_tensor *t);
int pr_tensor_is_contiguous(const pr_tensor *t);
int pr_tensor_same_shape(const pr_tensor *a, const pr_tensor *b);
/* Address of element 0 of the view (storage data + offset). */
void *pr_tensor_data(const pr_tensor *t);
static inline float *pr_tensor_f32(const pr_tensor *t) { return (float *)pr_tensor_data(t); }
static inline int64_t *pr_tensor_i64(const pr_tensor *t) { return (int64_t *)pr_tensor_data(t); }
static inline uint8_t *pr_tensor_u8(const pr_tensor *t) { return (uint8_t *)pr_tensor_data(t); }
/* Element at a flat row-major index of the view, as double, honouring strides. */
double pr_tensor_get_flat(const pr_tensor *t, int64_t i);
int pr_tensor_set_flat(pr_tensor *t, int64_t i, double v);
/* "[2,3]" into buf (caller's) for messages. */
char *pr_tensor_shape_str(const pr_tensor *t, char *buf, size_t n);

/* ---- creation ---- */
pr_tensor *pr_tensor_arange(double start, double stop, double step, pr_dtype dt);
pr_tensor *pr_tensor_linspace(double start, double stop, int64_t n);
pr_tensor *pr_tensor_eye(int64_t n, int64_t m);
/* Random draws from the runtime's own generator (rng.h): identical on every machine. */
pr_tensor *pr_tensor_rand(int ndim, const int64_t *shape);              /* U[0,1) */
pr_tensor *pr_tensor_randn(int ndim, const int64_t *shape);             /* N(0,1) */
pr_tensor *pr_tensor_randint(int64_t low, int64_t high, int ndim, const int64_t *shape); /* int64 [low,high) */

/* ---- views (share storage; no copy) ---- */
pr_tensor *pr_tensor_view(pr_tensor *t, int ndim, const int64_t *shape); /* one dim may be -1; needs a viewable layout */
pr_tensor *pr_tensor_reshape(pr_tensor *t, int ndim, const int64_t *shape); /* view if possible, else copy */
pr_tensor *pr_tensor_transpose(pr_tensor *t, int d0, int d1);
pr_tensor *pr_tensor_permute(pr_tensor *t, const int *dims);
pr_tensor *pr_tensor_narrow(pr_tensor *t, int dim, int64_t start, int64_t len);
pr_tensor *pr_tensor_select(pr_tensor *t, int dim, int64_t index); /* drops dim */
pr_tensor *pr_tensor_squeeze(pr_tensor *t, int dim);   /* dim < 0: all size-1 dims */
pr_tensor *pr_tensor_unsqueeze(pr_tensor *t, int dim);
pr_tensor *pr_tensor_expand(pr_tensor *t, int ndim, const int64_t *shape); /* stride-0 broadcast view */

/* ---- copies ---- */
pr_tensor *pr_tensor_contiguous(pr_tensor *t);  /* retains t itself when already contiguous */
pr_tensor *pr_tensor_clone(pr_tensor *t);       /* always a fresh contiguous copy */
pr_tensor *pr_tensor_to(pr_tensor *t, pr_dtype dt); /* converting copy (float->int truncates) */
/* Marks t's storage as written in place (see pr_storage.version). */
static inline void pr_tensor_written(pr_tensor *t)
{
    if (t && t->storage)
        t->storage->version++;
}
int pr_tensor_copy_(pr_tensor *dst, pr_tensor *src); /* src broadcast to dst's shape, any dtypes */
int pr_tensor_fill_(pr_tensor *t, double v);

#endif
