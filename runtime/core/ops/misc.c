/* ops/misc.c: the non-differentiable tensor functions of ops.h: comparisons, sign,
 * argmax/argmin, norms, sorting and selection (sort, topk, kthvalue, quantile), masked_select,
 * stack, and the in-place updates add_/mul_/scale_.
 *
 * Selection-based functions (topk, kthvalue, quantile) use select.h's expected-O(n)
 * introselect per slice instead of a full sort: they are what pruning thresholds call on
 * whole weight tensors. NaN is treated as larger than every number (as select.h and torch). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "broadcast.h"
#include "ops.h"
#include "select.h"

/* ---- slices along a dim ----
 * A contiguous tensor seen as outer x n x inner around `dim`; element k of slice (o, i) is at
 * o*n*inner + k*inner + i. dim PR_ALL (or any dim of a 0-d tensor) is one slice of everything. */
typedef struct {
    int all;                      /* reducing over everything */
    int dim;                      /* wrapped dim when !all */
    int64_t outer, n, inner;
    int rndim;                    /* the reduced result's shape (keepdim honoured) */
    int64_t rshape[PR_MAX_DIMS];
} slices;

static int slices_init(const char *op, const pr_tensor *t, int dim, int keepdim, slices *s)
{
    memset(s, 0, sizeof *s);
    if (dim == PR_ALL || (t->ndim == 0 && (dim == 0 || dim == -1))) {
        s->all = 1;
        s->outer = s->inner = 1;
        s->n = pr_tensor_numel(t);
        s->rndim = keepdim ? t->ndim : 0;
        for (int d = 0; d < s->rndim; d++)
            s->rshape[d] = 1;
        return PR_OK;
    }
    int d = dim < 0 ? dim + t->ndim : dim;
    if (d < 0 || d >= t->ndim)
        return pr_error("%s: dim %d out of range for a %d-d tensor", op, dim, t->ndim);
    s->dim = d;
    s->outer = s->inner = 1;
    for (int k = 0; k < d; k++)
        s->outer *= t->shape[k];
    for (int k = d + 1; k < t->ndim; k++)
        s->inner *= t->shape[k];
    s->n = t->shape[d];
    for (int k = 0, j = 0; k < t->ndim; k++) {
        if (k != d)
            s->rshape[j++] = t->shape[k];
        else if (keepdim)
            s->rshape[j++] = 1;
    }
    s->rndim = keepdim ? t->ndim : t->ndim - 1;
    return PR_OK;
}

/* The input's shape with the slice dim set to m (flattened 1-d [m] when over everything). */
static void shape_with(const pr_tensor *t, const slices *s, int64_t m, int *ndim, int64_t *shape)
{
    if (s->all) {
        *ndim = 1;
        shape[0] = m;
        return;
    }
    *ndim = t->ndim;
    memcpy(shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
    shape[s->dim] = m;
}

static pr_tensor *need_float(const char *op, pr_tensor *a)
{
    if (a->dtype != PR_FLOAT32) {
        pr_error("%s: needs float32, got %s", op, pr_dtype_name(a->dtype));
        return NULL;
    }
    return pr_tensor_contiguous(a);
}

/* ---- compare, sign ---- */

pr_tensor *pr_compare(pr_tensor *a, pr_tensor *b, pr_cmp op)
{
    int nd;
    int64_t shape[PR_MAX_DIMS];
    if ((unsigned)op > PR_CMP_GE) {
        pr_error("compare: unknown comparison %d", (int)op);
        return NULL;
    }
    if (pr_broadcast_shape_op("compare", a, b, &nd, shape) < 0)
        return NULL;
    pr_tensor *out = pr_tensor_empty(PR_FLOAT32, nd, shape);
    if (!out)
        return NULL;
    pr_iter it;
    if (pr_iter_init(&it, "compare", nd, shape, 3, (const pr_tensor *[]){ out, a, b }) < 0) {
        pr_tensor_release(out);
        return NULL;
    }
    float *o = pr_tensor_f32(out);
    const void *pa = pr_tensor_data(a), *pb = pr_tensor_data(b);
    for (int64_t i = 0; i < it.numel; i++, pr_iter_next(&it)) {
        /* double holds float32 and uint8 exactly; int64 beyond 2^53 loses ties, which
         * labels and indices never reach. */
        double x = pr_elem_get(pa, a->dtype, it.off[1]), y = pr_elem_get(pb, b->dtype, it.off[2]);
        int r = 0;
        switch (op) {
        case PR_CMP_EQ: r = x == y; break;
        case PR_CMP_NE: r = x != y; break;
        case PR_CMP_LT: r = x < y; break;
        case PR_CMP_LE: r = x <= y; break;
        case PR_CMP_GT: r = x > y; break;
        case PR_CMP_GE: r = x >= y; break;
        }
        o[it.off[0]] = r ? 1.0f : 0.0f;
    }
    return out;
}

pr_tensor *pr_sign(pr_tensor *a)
{
    pr_tensor *out = pr_tensor_empty(a->dtype, a->ndim, a->shape);
    pr_tensor *ac = out ? pr_tensor_contiguous(a) : NULL;
    if (!ac) {
        pr_tensor_release(out);
        return NULL;
    }
    int64_t n = pr_tensor_numel(a);
    const void *src = pr_tensor_data(ac);
    void *dst = pr_tensor_data(out);
    for (int64_t i = 0; i < n; i++) {
        double v = pr_elem_get(src, a->dtype, i);
        pr_elem_set(dst, a->dtype, i, v > 0 ? 1.0 : v < 0 ? -1.0 : v); /* keeps 0, -0 and NaN */
    }
    pr_tensor_release(ac);
    return out;
}

/* ---- argmax, argmin ---- */

static pr_tensor *arg_extreme(const char *op, pr_tensor *a, int dim, int keepdim, int want_max)
{
    slices s;
    if (slices_init(op, a, dim, keepdim, &s) < 0)
        return NULL;
    if (s.n == 0) {
        char b[96];
        pr_error("%s: cannot reduce an empty dim of %s", op, pr_tensor_shape_str(a, b, sizeof b));
        return NULL;
    }
    pr_tensor *out = pr_tensor_empty(PR_INT64, s.rndim, s.rshape);
    pr_tensor *ac = out ? pr_tensor_contiguous(a) : NULL;
    if (!ac) {
        pr_tensor_release(out);
        return NULL;
    }
    const void *src = pr_tensor_data(ac);
    int64_t *o = pr_tensor_i64(out);
    for (int64_t q = 0; q < s.outer; q++)
        for (int64_t i = 0; i < s.inner; i++) {
            int64_t base = q * s.n * s.inner + i, best = 0;
            double bv = pr_elem_get(src, a->dtype, base);
            /* First occurrence wins ties; a NaN wins over every number, as in torch. */
            for (int64_t k = 1; k < s.n && !isnan(bv); k++) {
                double v = pr_elem_get(src, a->dtype, base + k * s.inner);
                if (isnan(v) || (want_max ? v > bv : v < bv)) {
                    bv = v;
                    best = k;
                }
            }
            o[q * s.inner + i] = best;
        }
    pr_tensor_release(ac);
    return out;
}

pr_tensor *pr_argmax(pr_tensor *a, int dim, int keepdim) { return arg_extreme("argmax", a, dim, keepdim, 1); }
pr_tensor *pr_argmin(pr_tensor *a, int dim, int keepdim) { return arg_extreme("argmin", a, dim, keepdim, 0); }

/* ---- norm ---- */

pr_tensor *pr_norm(pr_tensor *a, double p, int dim, int keepdim)
{
    if (!(p > 0)) {
        pr_error("norm: p must be > 0 (or INFINITY), got %g", p);
        return NULL;
    }
    slices s;
    if (slices_init("norm", a, dim, keepdim, &s) < 0)
        return NULL;
    pr_tensor *out = pr_tensor_empty(PR_FLOAT32, s.rndim, s.rshape);
    pr_tensor *ac = out ? pr_tensor_contiguous(a) : NULL;
    if (!ac) {
        pr_tensor_release(out);
        return NULL;
    }
    const void *src = pr_tensor_data(ac);
    float *o = pr_tensor_f32(out);
    for (int64_t q = 0; q < s.outer; q++)
        for (int64_t i = 0; i < s.inner; i++) {
            int64_t base = q * s.n * s.inner + i;
            /* double accumulation: squares of float32 cannot overflow it */
            double acc = 0;
            for (int64_t k = 0; k < s.n; k++) {
                double v = fabs(pr_elem_get(src, a->dtype, base + k * s.inner));
                if (isinf(p))
                    acc = (v > acc || isnan(v)) ? v : acc;
                else if (p == 1)
                    acc += v;
                else if (p == 2)
                    acc += v * v;
                else
                    acc += pow(v, p);
            }
            double r = isinf(p) || p == 1 ? acc : p == 2 ? sqrt(acc) : pow(acc, 1.0 / p);
            o[q * s.inner + i] = (float)r;
        }
    pr_tensor_release(ac);
    return out;
}

/* ---- sort ---- */

/* Stable bottom-up merge sort of (key, position) pairs; the pairs are contiguous so every
 * pass streams through memory instead of chasing positions. NaN is larger than every number.
 * Keys are doubles (exact for float32 and uint8) or, for int64, the integers themselves so
 * that values beyond 2^53 still order exactly. */
typedef struct { double k; int64_t i; } dkey;
typedef struct { int64_t k; int64_t i; } ikey;

#define D_BEFORE(a, b, desc) ((desc) ? ((a).k > (b).k || (isnan((a).k) && !isnan((b).k))) \
                                     : ((a).k < (b).k || (isnan((b).k) && !isnan((a).k))))
#define I_BEFORE(a, b, desc) ((desc) ? (a).k > (b).k : (a).k < (b).k)

#define DEFINE_MERGE_SORT(NAME, T, BEFORE)                                                    \
    static void NAME(T *v, T *tmp, int64_t n, int desc)                                       \
    {                                                                                         \
        T *src = v, *dst = tmp;                                                               \
        for (int64_t w = 1; w < n; w *= 2) {                                                  \
            for (int64_t lo = 0; lo < n; lo += 2 * w) {                                       \
                int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;  \
                int64_t i = lo, j = mid, k = lo;                                              \
                /* the right run wins only when strictly before: equal keys keep order */    \
                while (i < mid && j < hi)                                                     \
                    dst[k++] = BEFORE(src[j], src[i], desc) ? src[j++] : src[i++];            \
                while (i < mid)                                                               \
                    dst[k++] = src[i++];                                                      \
                while (j < hi)                                                                \
                    dst[k++] = src[j++];                                                      \
            }                                                                                 \
            T *t = src;                                                                       \
            src = dst;                                                                        \
            dst = t;                                                                          \
        }                                                                                     \
        if (src != v)                                                                         \
            memcpy(v, src, (size_t)n * sizeof *v);                                            \
    }

DEFINE_MERGE_SORT(merge_sort_d, dkey, D_BEFORE)
DEFINE_MERGE_SORT(merge_sort_i, ikey, I_BEFORE)

int pr_sort(pr_tensor *a, int dim, int descending, pr_tensor **values, pr_tensor **indices)
{
    slices s;
    if (values)
        *values = NULL;
    if (indices)
        *indices = NULL;
    if (slices_init("sort", a, dim, 0, &s) < 0)
        return PR_EINVAL;
    int nd;
    int64_t shape[PR_MAX_DIMS];
    shape_with(a, &s, s.n, &nd, shape);
    size_t es = pr_dtype_size(a->dtype);
    int is_int = a->dtype == PR_INT64;
    size_t pair = is_int ? sizeof(ikey) : sizeof(dkey);
    pr_tensor *ac = pr_tensor_contiguous(a);
    pr_tensor *vo = ac && values ? pr_tensor_empty(a->dtype, nd, shape) : NULL;
    pr_tensor *io = ac && indices ? pr_tensor_empty(PR_INT64, nd, shape) : NULL;
    void *buf = malloc((size_t)(s.n ? s.n : 1) * 2 * pair);
    if (!ac || (values && !vo) || (indices && !io) || !buf) {
        pr_tensor_release(ac);
        pr_tensor_release(vo);
        pr_tensor_release(io);
        free(buf);
        return pr_error_code(PR_ENOMEM, "sort: out of memory");
    }
    dkey *dv = buf;
    ikey *iv = buf;
    const char *src = pr_tensor_data(ac);
    char *vd = vo ? pr_tensor_data(vo) : NULL;
    int64_t *id = io ? pr_tensor_i64(io) : NULL;
    for (int64_t q = 0; q < s.outer; q++)
        for (int64_t i = 0; i < s.inner; i++) {
            int64_t base = q * s.n * s.inner + i;
            for (int64_t k = 0; k < s.n; k++) {
                int64_t off = base + k * s.inner;
                if (is_int)
                    iv[k] = (ikey){ ((const int64_t *)src)[off], k };
                else
                    dv[k] = (dkey){ pr_elem_get(src, a->dtype, off), k };
            }
            if (is_int)
                merge_sort_i(iv, iv + s.n, s.n, descending);
            else
                merge_sort_d(dv, dv + s.n, s.n, descending);
            /* values are copied from the input by position, so they are exact in any dtype */
            for (int64_t k = 0; k < s.n; k++) {
                int64_t from = is_int ? iv[k].i : dv[k].i;
                if (vd)
                    memcpy(vd + (base + k * s.inner) * es, src + (base + from * s.inner) * es, es);
                if (id)
                    id[base + k * s.inner] = from;
            }
        }
    free(buf);
    pr_tensor_release(ac);
    if (values)
        *values = vo;
    if (indices)
        *indices = io;
    return PR_OK;
}

/* ---- selection: topk, kthvalue, quantile ---- */

typedef struct { float v; int64_t i; } vi_pair;

/* NaN largest; ties by original position so results do not depend on the selection's
 * internal order. */
static int pair_asc(const void *pa, const void *pb)
{
    const vi_pair *a = pa, *b = pb;
    int an = isnan(a->v), bn = isnan(b->v);
    if (an != bn)
        return an - bn;
    if (!an && a->v != b->v)
        return a->v < b->v ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

static int pair_desc(const void *pa, const void *pb)
{
    const vi_pair *a = pa, *b = pb;
    int an = isnan(a->v), bn = isnan(b->v);
    if (an != bn)
        return bn - an;
    if (!an && a->v != b->v)
        return a->v > b->v ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* Scratch for one slice: values and their positions. */
typedef struct { float *v; int64_t *i; } slice_buf;

static int slice_buf_new(slice_buf *b, int64_t n)
{
    size_t m = (size_t)(n ? n : 1);
    b->v = malloc(m * sizeof *b->v);
    b->i = malloc(m * sizeof *b->i);
    if (!b->v || !b->i) {
        free(b->v);
        free(b->i);
        return PR_ENOMEM;
    }
    return PR_OK;
}

static void slice_gather(slice_buf *b, const float *src, int64_t base, int64_t n, int64_t stride)
{
    for (int64_t k = 0; k < n; k++) {
        b->v[k] = src[base + k * stride];
        b->i[k] = k;
    }
}

int pr_topk(pr_tensor *a, int64_t k, int dim, int largest, pr_tensor **values, pr_tensor **indices)
{
    slices s;
    if (values)
        *values = NULL;
    if (indices)
        *indices = NULL;
    if (slices_init("topk", a, dim, 0, &s) < 0)
        return PR_EINVAL;
    if (k < 0 || k > s.n)
        return pr_error("topk: k = %lld out of range for a dim of size %lld", (long long)k, (long long)s.n);
    int nd;
    int64_t shape[PR_MAX_DIMS];
    shape_with(a, &s, k, &nd, shape);
    pr_tensor *ac = need_float("topk", a);
    if (!ac)
        return PR_EINVAL;
    pr_tensor *vo = values ? pr_tensor_empty(PR_FLOAT32, nd, shape) : NULL;
    pr_tensor *io = indices ? pr_tensor_empty(PR_INT64, nd, shape) : NULL;
    slice_buf b = {0};
    vi_pair *pairs = malloc((size_t)(k ? k : 1) * sizeof *pairs);
    if ((values && !vo) || (indices && !io) || !pairs || slice_buf_new(&b, s.n) < 0) {
        pr_tensor_release(ac);
        pr_tensor_release(vo);
        pr_tensor_release(io);
        free(pairs);
        return pr_error_code(PR_ENOMEM, "topk: out of memory");
    }
    const float *src = pr_tensor_f32(ac);
    float *vd = vo ? pr_tensor_f32(vo) : NULL;
    int64_t *id = io ? pr_tensor_i64(io) : NULL;
    for (int64_t q = 0; q < s.outer && k > 0; q++)
        for (int64_t i = 0; i < s.inner; i++) {
            slice_gather(&b, src, q * s.n * s.inner + i, s.n, s.inner);
            /* After selecting position p, [0..p] are the p+1 smallest and [p..n-1] the n-p
             * largest: pick p so that the wanted k sit on one side. */
            int64_t first;
            if (largest) {
                first = s.n - k;
                pr_select_f32_idx(b.v, b.i, s.n, first);
            } else {
                first = 0;
                pr_select_f32_idx(b.v, b.i, s.n, k - 1);
            }
            for (int64_t j = 0; j < k; j++) {
                pairs[j].v = b.v[first + j];
                pairs[j].i = b.i[first + j];
            }
            qsort(pairs, (size_t)k, sizeof *pairs, largest ? pair_desc : pair_asc);
            int64_t obase = q * k * s.inner + i;
            for (int64_t j = 0; j < k; j++) {
                if (vd)
                    vd[obase + j * s.inner] = pairs[j].v;
                if (id)
                    id[obase + j * s.inner] = pairs[j].i;
            }
        }
    free(b.v);
    free(b.i);
    free(pairs);
    pr_tensor_release(ac);
    if (values)
        *values = vo;
    if (indices)
        *indices = io;
    return PR_OK;
}

int pr_kthvalue(pr_tensor *a, int64_t k, int dim, int keepdim, pr_tensor **values, pr_tensor **indices)
{
    slices s;
    if (values)
        *values = NULL;
    if (indices)
        *indices = NULL;
    if (slices_init("kthvalue", a, dim, keepdim, &s) < 0)
        return PR_EINVAL;
    if (k < 1 || k > s.n)
        return pr_error("kthvalue: k = %lld out of range for a dim of size %lld (k is 1-based)", (long long)k,
                        (long long)s.n);
    pr_tensor *ac = need_float("kthvalue", a);
    if (!ac)
        return PR_EINVAL;
    pr_tensor *vo = values ? pr_tensor_empty(PR_FLOAT32, s.rndim, s.rshape) : NULL;
    pr_tensor *io = indices ? pr_tensor_empty(PR_INT64, s.rndim, s.rshape) : NULL;
    slice_buf b = {0};
    if ((values && !vo) || (indices && !io) || slice_buf_new(&b, s.n) < 0) {
        pr_tensor_release(ac);
        pr_tensor_release(vo);
        pr_tensor_release(io);
        return pr_error_code(PR_ENOMEM, "kthvalue: out of memory");
    }
    const float *src = pr_tensor_f32(ac);
    for (int64_t q = 0; q < s.outer; q++)
        for (int64_t i = 0; i < s.inner; i++) {
            slice_gather(&b, src, q * s.n * s.inner + i, s.n, s.inner);
            float v = pr_select_f32_idx(b.v, b.i, s.n, k - 1);
            if (vo)
                pr_tensor_f32(vo)[q * s.inner + i] = v;
            if (io)
                pr_tensor_i64(io)[q * s.inner + i] = b.i[k - 1];
        }
    free(b.v);
    free(b.i);
    pr_tensor_release(ac);
    if (values)
        *values = vo;
    if (indices)
        *indices = io;
    return PR_OK;
}

pr_tensor *pr_quantile(pr_tensor *a, double q, int dim, int keepdim)
{
    if (!(q >= 0 && q <= 1)) {
        pr_error("quantile: q = %g is not in [0, 1]", q);
        return NULL;
    }
    slices s;
    if (slices_init("quantile", a, dim, keepdim, &s) < 0)
        return NULL;
    if (s.n == 0) {
        char b[96];
        pr_error("quantile: cannot take a quantile of an empty dim of %s", pr_tensor_shape_str(a, b, sizeof b));
        return NULL;
    }
    /* Integer inputs are converted: the interpolated result is real anyway. */
    pr_tensor *ac = a->dtype == PR_FLOAT32 ? pr_tensor_contiguous(a) : pr_tensor_to(a, PR_FLOAT32);
    pr_tensor *out = ac ? pr_tensor_empty(PR_FLOAT32, s.rndim, s.rshape) : NULL;
    float *buf = out ? malloc((size_t)s.n * sizeof *buf) : NULL;
    if (!buf) {
        pr_tensor_release(ac);
        pr_tensor_release(out);
        pr_error_code(PR_ENOMEM, "quantile: out of memory");
        return NULL;
    }
    const float *src = pr_tensor_f32(ac);
    float *o = pr_tensor_f32(out);
    /* numpy's 'linear' method: position q*(n-1) between the order statistics around it. */
    double pos = q * (double)(s.n - 1), lo_d = floor(pos), t = pos - lo_d;
    int64_t lo = (int64_t)lo_d;
    if (lo > s.n - 1)
        lo = s.n - 1;
    for (int64_t qq = 0; qq < s.outer; qq++)
        for (int64_t i = 0; i < s.inner; i++) {
            int64_t base = qq * s.n * s.inner + i;
            int nan = 0;
            for (int64_t k = 0; k < s.n; k++) {
                buf[k] = src[base + k * s.inner];
                nan |= isnan(buf[k]);
            }
            float r;
            if (nan) {
                r = NAN; /* as numpy: a NaN anywhere makes the quantile NaN */
            } else {
                double va = pr_select_f32(buf, s.n, lo), vb = va;
                /* The upper neighbour is the smallest of the partition above lo. */
                if (t > 0 && lo + 1 < s.n)
                    vb = pr_select_f32(buf + lo + 1, s.n - lo - 1, 0);
                double d = vb - va;
                r = (float)(t >= 0.5 ? vb - d * (1 - t) : va + d * t);
            }
            o[qq * s.inner + i] = r;
        }
    free(buf);
    pr_tensor_release(ac);
    return out;
}

/* ---- masked_select, stack ---- */

pr_tensor *pr_masked_select(pr_tensor *a, pr_tensor *mask)
{
    int nd;
    int64_t shape[PR_MAX_DIMS];
    if (pr_broadcast_shape_op("masked_select", a, mask, &nd, shape) < 0)
        return NULL;
    pr_iter it;
    if (pr_iter_init(&it, "masked_select", nd, shape, 2, (const pr_tensor *[]){ a, mask }) < 0)
        return NULL;
    const void *pm = pr_tensor_data(mask);
    int64_t count = 0;
    for (int64_t i = 0; i < it.numel; i++, pr_iter_next(&it))
        count += pr_elem_get(pm, mask->dtype, it.off[1]) != 0;
    pr_tensor *out = pr_tensor_empty(a->dtype, 1, &count);
    if (!out)
        return NULL;
    pr_iter_init(&it, "masked_select", nd, shape, 2, (const pr_tensor *[]){ a, mask });
    size_t es = pr_dtype_size(a->dtype);
    const char *pa = pr_tensor_data(a);
    char *po = pr_tensor_data(out);
    int64_t j = 0;
    for (int64_t i = 0; i < it.numel; i++, pr_iter_next(&it))
        if (pr_elem_get(pm, mask->dtype, it.off[1]) != 0)
            memcpy(po + (j++) * es, pa + it.off[0] * es, es);
    return out;
}

pr_tensor *pr_stack(pr_tensor *const *ts, int n, int dim)
{
    if (n < 1 || !ts) {
        pr_error("stack: needs at least one tensor");
        return NULL;
    }
    int nd = ts[0]->ndim;
    if (nd >= PR_MAX_DIMS) {
        pr_error("stack: %d-d tensors cannot gain a dim (at most %d)", nd, PR_MAX_DIMS);
        return NULL;
    }
    int d = dim < 0 ? dim + nd + 1 : dim;
    if (d < 0 || d > nd) {
        pr_error("stack: dim %d out of range for stacking %d-d tensors", dim, nd);
        return NULL;
    }
    for (int k = 1; k < n; k++)
        if (!pr_tensor_same_shape(ts[k], ts[0])) {
            char b0[96], b1[96];
            pr_error("stack: tensor %d is %s, tensor 1 is %s", k + 1, pr_tensor_shape_str(ts[k], b1, sizeof b1),
                     pr_tensor_shape_str(ts[0], b0, sizeof b0));
            return NULL;
        }
    int64_t shape[PR_MAX_DIMS];
    for (int j = 0, k = 0; j <= nd; j++)
        shape[j] = j == d ? 1 : ts[0]->shape[k++];
    /* Through the differentiable reshape and cat, so a stack of tracked tensors still has a
     * gradient even though stack itself is not an ops.def row. */
    pr_tensor **parts = calloc((size_t)n, sizeof *parts);
    if (!parts) {
        pr_error_code(PR_ENOMEM, "stack: out of memory");
        return NULL;
    }
    pr_tensor *out = NULL;
    int k;
    for (k = 0; k < n; k++)
        if (!(parts[k] = pr_reshape(ts[k], nd + 1, shape)))
            break;
    if (k == n)
        out = pr_cat(parts, n, d);
    for (int j = 0; j < k; j++)
        pr_tensor_release(parts[j]);
    free(parts);
    return out;
}

/* ---- in place ---- */

static int check_inplace(const char *op, const pr_tensor *a)
{
    if (a->requires_grad && pr_grad_enabled())
        return pr_error("%s: in-place update of a tensor that requires grad while grad mode is on "
                        "(the tape would be wrong); disable grad mode around it", op);
    return PR_OK;
}

/* a op= alpha*b or a *= b with b broadcast to a; kind 0 = add, 1 = mul. */
static int inplace_binary(const char *op, pr_tensor *a, pr_tensor *b, double alpha, int kind)
{
    int rc = check_inplace(op, a);
    if (rc < 0)
        return rc;
    pr_tensor_written(a);
    /* b overlapping a in another layout would be read after being written: copy it first. */
    pr_tensor *tmp = NULL;
    if (b->storage == a->storage && !(b->offset == a->offset && pr_tensor_same_shape(a, b) &&
                                      !memcmp(a->stride, b->stride, sizeof(int64_t) * (size_t)a->ndim))) {
        if (!(tmp = pr_tensor_clone(b)))
            return PR_ENOMEM;
        b = tmp;
    }
    pr_iter it;
    rc = pr_iter_init(&it, op, a->ndim, a->shape, 2, (const pr_tensor *[]){ a, b });
    if (rc == PR_OK) {
        if (a->dtype == PR_FLOAT32 && b->dtype == PR_FLOAT32) {
            float *pa = pr_tensor_f32(a), fa = (float)alpha;
            const float *pb = pr_tensor_f32(b);
            if (pr_tensor_is_contiguous(a) && pr_tensor_is_contiguous(b) && pr_tensor_same_shape(a, b)) {
                if (kind == 0)
                    for (int64_t i = 0; i < it.numel; i++)
                        pa[i] += fa * pb[i];
                else
                    for (int64_t i = 0; i < it.numel; i++)
                        pa[i] *= pb[i];
            } else {
                for (int64_t i = 0; i < it.numel; i++, pr_iter_next(&it))
                    pa[it.off[0]] = kind == 0 ? pa[it.off[0]] + fa * pb[it.off[1]] : pa[it.off[0]] * pb[it.off[1]];
            }
        } else {
            void *pa = pr_tensor_data(a);
            const void *pb = pr_tensor_data(b);
            for (int64_t i = 0; i < it.numel; i++, pr_iter_next(&it)) {
                double x = pr_elem_get(pa, a->dtype, it.off[0]), y = pr_elem_get(pb, b->dtype, it.off[1]);
                pr_elem_set(pa, a->dtype, it.off[0], kind == 0 ? x + alpha * y : x * y);
            }
        }
    }
    pr_tensor_release(tmp);
    return rc;
}

int pr_add_(pr_tensor *a, pr_tensor *b, double alpha) { return inplace_binary("add_", a, b, alpha, 0); }
int pr_mul_(pr_tensor *a, pr_tensor *b) { return inplace_binary("mul_", a, b, 1.0, 1); }

int pr_scale_(pr_tensor *a, double s)
{
    int rc = check_inplace("scale_", a);
    if (rc < 0)
        return rc;
    pr_tensor_written(a);
    pr_iter it;
    if ((rc = pr_iter_init(&it, "scale_", a->ndim, a->shape, 1, (const pr_tensor *[]){ a })) < 0)
        return rc;
    if (a->dtype == PR_FLOAT32) {
        float *p = pr_tensor_f32(a), f = (float)s;
        if (pr_tensor_is_contiguous(a))
            for (int64_t i = 0; i < it.numel; i++)
                p[i] *= f;
        else
            for (int64_t i = 0; i < it.numel; i++, pr_iter_next(&it))
                p[it.off[0]] *= f;
        return PR_OK;
    }
    void *p = pr_tensor_data(a);
    for (int64_t i = 0; i < it.numel; i++, pr_iter_next(&it))
        pr_elem_set(p, a->dtype, it.off[0], pr_elem_get(p, a->dtype, it.off[0]) * s);
    return PR_OK;
}
