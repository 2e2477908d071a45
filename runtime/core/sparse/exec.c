/* exec.c: sparse execution plans for Linear and Conv2d (see exec.h).
 *
 * Linear: y = x . W^T + b straight through pr_sparse_linear on the packed weight.
 * Conv2d (groups == 1): the batch is cut into slices like ops/conv.c does (im2col columns and
 * the GEMM-layout output of a slice fit in about 2 MB, so im2col writes into cache and the
 * sparse kernel reads from it), each slice is im2col'd, multiplied by the packed weight
 * [O, C*kh*kw] with pr_sparse_matmul_dense, and scattered to NCHW with the bias added by
 * pr_conv_gemm_to_nchw: the same kernels as the dense path, so outputs agree to rounding.
 *
 * Conv2d "direct" (Park et al. 2017, "Faster CNNs with direct sparse convolutions"): no im2col.
 * Each output plane is the bias plus, for every non-zero w at (c, ki, kj), w times the input
 * window of channel c shifted by (ki, kj). im2col writes C*kh*kw values per output pixel and
 * reads them back: at LeNet's sizes that traffic costs as much as the multiply, and a pruned
 * layer skips most of the multiply but none of the traffic. Each sample is copied once into a
 * zero-padded buffer with 8 floats of slack per row, so the AVX2 loop reads whole vectors
 * (the extra columns are computed and dropped) and needs no edge cases; a tile of 4 output
 * rows x 24 columns (or 8 rows x 8) stays in registers while the non-zeros of the output
 * channel stream past. Samples are split over threads. Without AVX2, or for a column
 * stride > 1, a plain loop over the same offsets does the work. */
#include "exec.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define EXEC_X86 1
#endif

#include "../kernels.h"
#include "sparse.h"
#include "../scratch.h"

typedef struct plan_state {
    pr_sparse *w;        /* owned: the packed masked weight [out, in] or [O, C*kh*kw] */
    float *bias;         /* owned copy [out], or NULL */
    /* Owned references to what the plan was packed from, and their storages' versions then:
     * plan_refresh packs again when any was replaced or written in place since. */
    pr_tensor *w_src, *b_src, *mask_src;
    uint64_t w_ver, b_ver, mask_ver;
} plan_state;

typedef struct plan {
    pr_module_exec exec; /* first: module.c holds a pr_module_exec * to this */
    plan_state st;
    /* "direct" only (st.w unused): the non-zeros of output channel o are ent[row[o] ..
     * row[o+1]), each a weight and its (c, ki, kj). All owned. */
    int64_t *row;
    int32_t *ent_c, *ent_ki, *ent_kj;
    float *ent_w;
} plan;

static void plan_free(pr_module_exec *e)
{
    if (!e)
        return;
    plan *p = (plan *)e;
    free(p->row);
    free(p->ent_c);
    free(p->ent_ki);
    free(p->ent_kj);
    free(p->ent_w);
    pr_sparse_free(p->st.w);
    free(p->st.bias);
    pr_tensor_release(p->st.w_src);
    pr_tensor_release(p->st.b_src);
    pr_tensor_release(p->st.mask_src);
    free(p);
}

static int is_kind(const pr_module *m, const char *kind)
{
    return m && m->vt && strcmp(m->vt->kind, kind) == 0;
}

static uint64_t version_of(const pr_tensor *t) { return t && t->storage ? t->storage->version : 0; }

/* Whether p still packs m's current weight, bias and mask, values included. */
static int plan_current(const pr_module *m, const plan *p)
{
    const plan_state *st = &p->st;
    const pr_tensor *w = m->nparams > 0 ? m->params[0] : NULL, *b = m->nparams > 1 ? m->params[1] : NULL;
    return w == st->w_src && b == st->b_src && w && w->mask == st->mask_src &&
           version_of(w) == st->w_ver && version_of(b) == st->b_ver &&
           version_of(w->mask) == st->mask_ver;
}

/* A plan is a packed snapshot of the layer's masked weight and bias. Before each run it packs
 * them again if they changed since: replaced (m:replace, load_state_dict, compaction), written
 * in place (copy_, fill_, set, an optimizer step: pr_storage.version) or masked differently,
 * so a plan never runs an old layer. The new packing takes the old one's place in the same
 * struct, which the module keeps pointing at. */
static int plan_refresh(pr_module *m, pr_module_exec *e)
{
    plan *p = (plan *)e;
    if (plan_current(m, p))
        return PR_OK;
    pr_module_exec *ne = pr_sparse_exec_new(m, e->name);
    if (!ne)
        return PR_EINVAL;
    plan *np = (plan *)ne, old = *p;
    *p = *np;
    *np = old;
    p->exec.state = &p->st;
    np->exec.state = &np->st;
    plan_free(ne); /* the old packing */
    return PR_OK;
}

int pr_sparse_exec_supported(const pr_module *m)
{
    return is_kind(m, "Linear") || (is_kind(m, "Conv2d") && m->cfg[10] == 1);
}

/* ---- Linear ---- */

static pr_tensor *linear_run(pr_module *m, pr_module_exec *e, pr_tensor *x, int relu)
{
    if (plan_refresh(m, e) < 0)
        return NULL;
    const plan_state *st = &((plan *)e)->st;
    int64_t in = st->w->cols, out = st->w->rows;
    if (x->ndim != 2 || x->shape[1] != in || x->dtype != PR_FLOAT32) {
        char b[96];
        pr_error("Linear(%lld -> %lld) [%s plan]: expected a float32 input [N,%lld], got %s %s",
                 (long long)in, (long long)out, e->name, (long long)in, pr_dtype_name(x->dtype),
                 pr_tensor_shape_str(x, b, sizeof b));
        return NULL;
    }
    pr_tensor *xc = pr_tensor_contiguous(x);
    int64_t shape[2] = {x->shape[0], out};
    pr_tensor *y = xc ? pr_tensor_empty(PR_FLOAT32, 2, shape) : NULL;
    if (!y || pr_sparse_linear(pr_tensor_f32(xc), pr_tensor_f32(y), st->w, st->bias, shape[0]) < 0) {
        pr_tensor_release(xc);
        pr_tensor_release(y);
        return NULL;
    }
    pr_tensor_release(xc);
    if (relu)
        pr_relu_inplace(pr_tensor_f32(y), shape[0] * out);
    return y;
}

/* ---- Conv2d ---- */

#define EXEC_CONV_CHUNK_BYTES (2 << 20)

/* Scratch for one slice: columns [k, chunk*pl] then the output [o, chunk*pl], in this
 * thread's PR_SCRATCH_PLAN buffer (scratch.h; a plan's forward never nests). */
static float *get_scratch(size_t need) { return pr_scratch(PR_SCRATCH_PLAN, need, "Conv2d sparse plan"); }

/* The layer's geometry for input x, after checking x: what both conv plans start from.
 * Returns PR_OK, or a negative status with a message naming the layer, the plan and x. */
static int conv_geometry(const pr_module *m, const pr_module_exec *e, const pr_tensor *x, pr_conv_geom *g)
{
    memset(g, 0, sizeof *g);
    g->o = m->cfg[1];
    g->kh = m->cfg[2];
    g->kw = m->cfg[3];
    int64_t cin = m->cfg[0];
    char b[96];
    if (x->ndim != 4 || x->shape[1] != cin || x->dtype != PR_FLOAT32)
        return pr_error("Conv2d(%lld -> %lld, %lldx%lld) [%s plan]: expected a float32 input [N,%lld,H,W], "
                        "got %s %s", (long long)cin, (long long)g->o, (long long)g->kh, (long long)g->kw,
                        e->name, (long long)cin, pr_dtype_name(x->dtype), pr_tensor_shape_str(x, b, sizeof b));
    g->n = x->shape[0];
    g->c = cin;
    g->h = x->shape[2];
    g->w = x->shape[3];
    g->sh = m->cfg[4];
    g->sw = m->cfg[5];
    g->ph = m->cfg[6];
    g->pw = m->cfg[7];
    g->dh = m->cfg[8];
    g->dw = m->cfg[9];
    g->groups = 1;
    if (pr_conv_geom_finish(g) < 0)
        return pr_error("Conv2d [%s plan]: input %s is smaller than the kernel %lldx%lld after padding",
                        e->name, pr_tensor_shape_str(x, b, sizeof b), (long long)g->kh, (long long)g->kw);
    return PR_OK;
}

static pr_tensor *conv_run(pr_module *m, pr_module_exec *e, pr_tensor *x, int relu)
{
    const plan_state *st = &((plan *)e)->st;
    pr_conv_geom g;
    if (plan_refresh(m, e) < 0 || conv_geometry(m, e, x, &g) < 0)
        return NULL;
    int64_t k = g.c * g.kh * g.kw, pl = g.ho * g.wo;
    if (k != st->w->cols || g.o != st->w->rows) {
        pr_error("Conv2d [%s plan]: the packed weight [%lld,%lld] does not match the layer "
                 "(%lld x %lld); make the plan again", e->name, (long long)st->w->rows,
                 (long long)st->w->cols, (long long)g.o, (long long)k);
        return NULL;
    }
    int64_t yshape[4] = {g.n, g.o, g.ho, g.wo};
    pr_tensor *y = pr_tensor_empty(PR_FLOAT32, 4, yshape);
    if (!y)
        return NULL;
    if (g.n == 0 || pl == 0)
        return y;
    int64_t per = (k + g.o) * pl * (int64_t)sizeof(float);
    int64_t chunk = EXEC_CONV_CHUNK_BYTES / (per ? per : 1);
    if (chunk < 1)
        chunk = 1;
    if (chunk > g.n)
        chunk = g.n;
    int64_t parts = (g.n + chunk - 1) / chunk; /* even slices: no tiny last one */
    chunk = (g.n + parts - 1) / parts;
    pr_tensor *xc = pr_tensor_contiguous(x);
    float *cols = xc ? get_scratch((size_t)((k + g.o) * chunk * pl)) : NULL;
    if (!cols) {
        pr_tensor_release(xc);
        pr_tensor_release(y);
        return NULL;
    }
    float *t = cols + k * chunk * pl;
    const float *xd = pr_tensor_f32(xc);
    float *yd = pr_tensor_f32(y);
    for (int64_t n0 = 0; n0 < g.n; n0 += chunk) {
        int64_t n1 = n0 + chunk < g.n ? n0 + chunk : g.n;
        pr_conv_im2col(xd, cols, &g, 0, n0, n1);
        if (pr_sparse_matmul_dense(cols, t, st->w, NULL, (n1 - n0) * pl) < 0) {
            pr_tensor_release(xc);
            pr_tensor_release(y);
            return NULL;
        }
        pr_conv_gemm_to_nchw(t, yd, st->bias, &g, n0, n1, relu);
    }
    pr_tensor_release(xc);
    return y;
}


/* ---- Conv2d "direct" ---- */

typedef struct direct_job {
    const plan *p;
    const pr_conv_geom *g;
    const float *x;         /* input [N, C, H, W] */
    float *y;               /* output [N, O, Ho, Wo] */
    const int64_t *off;     /* per non-zero: offset of its window in the padded sample */
    int64_t hp, wps;        /* padded sample: rows, row stride (width + padding + slack) */
    int64_t tw;             /* row stride of the output scratch: Wo rounded up to 8 */
    int vector;             /* the AVX2 path applies */
    int relu;               /* the fused ReLU */
    atomic_int failed;
} direct_job;

#ifdef EXEC_X86
/* acc[RT][NV] = bias + sum_e w[e] * x[off[e] + r*rs + 8v .. +8]: RT output rows of NV vectors. */
#define DIRECT_TILE(RT, NV)                                                                      \
    static inline __attribute__((always_inline, target("avx2,fma"))) void tile_##RT##_##NV(     \
        const float *x, const int64_t *off, const float *w, int64_t ne, int64_t rs, float bias, \
        float *out, int64_t os)                                                                  \
    {                                                                                            \
        __m256 acc[RT][NV];                                                                      \
        for (int r = 0; r < RT; r++)                                                             \
            for (int v = 0; v < NV; v++)                                                         \
                acc[r][v] = _mm256_set1_ps(bias);                                                \
        for (int64_t e = 0; e < ne; e++) {                                                       \
            __m256 wv = _mm256_broadcast_ss(w + e);                                              \
            const float *q = x + off[e];                                                         \
            for (int r = 0; r < RT; r++)                                                         \
                for (int v = 0; v < NV; v++)                                                     \
                    acc[r][v] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(q + r * rs + 8 * v), acc[r][v]); \
        }                                                                                        \
        for (int r = 0; r < RT; r++)                                                             \
            for (int v = 0; v < NV; v++)                                                         \
                _mm256_storeu_ps(out + r * os + 8 * v, acc[r][v]);                               \
    }
DIRECT_TILE(8, 1)
DIRECT_TILE(4, 1)
DIRECT_TILE(4, 2)
DIRECT_TILE(4, 3)
DIRECT_TILE(1, 1)
DIRECT_TILE(1, 2)
DIRECT_TILE(1, 3)

/* One output plane [Ho, tw] into out from the padded sample xs (stride-1 columns). */
__attribute__((target("avx2,fma"))) static void plane_avx2(const direct_job *j, const float *xs,
                                                           int64_t o, float bias, float *out)
{
    const pr_conv_geom *g = j->g;
    const plan *p = j->p;
    int64_t e0 = p->row[o], ne = p->row[o + 1] - e0, rs = g->sh * j->wps;
    const int64_t *off = j->off + e0;
    const float *w = p->ent_w + e0;
    for (int64_t c0 = 0; c0 < g->wo; c0 += 24) {
        int nv = (int)((g->wo - c0 + 7) / 8);
        nv = nv > 3 ? 3 : nv;
        int64_t oh = 0;
        /* 8 accumulators at least: an FMA's latency times two ports */
        for (; nv == 1 && oh + 8 <= g->ho; oh += 8)
            tile_8_1(xs + oh * rs + c0, off, w, ne, rs, bias, out + oh * j->tw + c0, j->tw);
        for (; oh + 4 <= g->ho; oh += 4) {
            const float *xr = xs + oh * rs + c0;
            float *orow = out + oh * j->tw + c0;
            if (nv == 1)
                tile_4_1(xr, off, w, ne, rs, bias, orow, j->tw);
            else if (nv == 2)
                tile_4_2(xr, off, w, ne, rs, bias, orow, j->tw);
            else
                tile_4_3(xr, off, w, ne, rs, bias, orow, j->tw);
        }
        for (; oh < g->ho; oh++) {
            const float *xr = xs + oh * rs + c0;
            float *orow = out + oh * j->tw + c0;
            if (nv == 1)
                tile_1_1(xr, off, w, ne, rs, bias, orow, j->tw);
            else if (nv == 2)
                tile_1_2(xr, off, w, ne, rs, bias, orow, j->tw);
            else
                tile_1_3(xr, off, w, ne, rs, bias, orow, j->tw);
        }
    }
}
#endif

/* The same plane by plain loops, for any stride. */
static void plane_generic(const direct_job *j, const float *xs, int64_t o, float bias, float *out)
{
    const pr_conv_geom *g = j->g;
    const plan *p = j->p;
    int64_t e0 = p->row[o], ne = p->row[o + 1] - e0;
    for (int64_t oh = 0; oh < g->ho; oh++)
        for (int64_t ow = 0; ow < g->wo; ow++) {
            const float *xq = xs + oh * g->sh * j->wps + ow * g->sw;
            float acc = bias;
            for (int64_t e = 0; e < ne; e++)
                acc += j->p->ent_w[e0 + e] * xq[j->off[e0 + e]];
            out[oh * j->tw + ow] = acc;
        }
}

static void direct_samples(void *ctx, int64_t n0, int64_t n1)
{
    direct_job *j = ctx;
    const pr_conv_geom *g = j->g;
    int64_t plane = j->hp * j->wps, pl = g->ho * g->wo;
    /* per range: the padded sample (+8 floats: the last vector may read past the last row)
     * and one output plane */
    float *xs = malloc((size_t)(g->c * plane + 8 + g->ho * j->tw) * sizeof *xs);
    if (!xs) {
        atomic_store(&j->failed, 1);
        return;
    }
    float *out = xs + g->c * plane + 8;
    memset(xs, 0, (size_t)(g->c * plane + 8) * sizeof *xs);
    for (int64_t n = n0; n < n1; n++) {
        for (int64_t c = 0; c < g->c; c++)
            for (int64_t h = 0; h < g->h; h++)
                memcpy(xs + c * plane + (h + g->ph) * j->wps + g->pw,
                       j->x + ((n * g->c + c) * g->h + h) * g->w, (size_t)g->w * sizeof *xs);
        for (int64_t o = 0; o < g->o; o++) {
            float bias = j->p->st.bias ? j->p->st.bias[o] : 0.0f;
#ifdef EXEC_X86
            if (j->vector)
                plane_avx2(j, xs, o, bias, out);
            else
#endif
                plane_generic(j, xs, o, bias, out);
            float *yp = j->y + (n * g->o + o) * pl;
            for (int64_t oh = 0; oh < g->ho; oh++) {
                const float *r = out + oh * j->tw;
                if (j->relu)
                    for (int64_t ow = 0; ow < g->wo; ow++)
                        yp[oh * g->wo + ow] = r[ow] < 0.0f ? 0.0f : r[ow];
                else
                    memcpy(yp + oh * g->wo, r, (size_t)g->wo * sizeof *yp);
            }
        }
    }
    free(xs);
}

static int cpu_has_avx2(void)
{
#ifdef EXEC_X86
    static int known = -1;   /* a benign race: every thread computes the same answer */
    if (known < 0)
        known = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return known;
#else
    return 0;
#endif
}

static pr_tensor *direct_run(pr_module *m, pr_module_exec *e, pr_tensor *x, int relu)
{
    plan *p = (plan *)e;
    pr_conv_geom g;
    if (plan_refresh(m, e) < 0 || conv_geometry(m, e, x, &g) < 0)
        return NULL;
    int64_t yshape[4] = {g.n, g.o, g.ho, g.wo};
    pr_tensor *y = pr_tensor_empty(PR_FLOAT32, 4, yshape);
    if (!y || g.n == 0 || g.ho * g.wo == 0)
        return y;
    int64_t nnz = p->row[g.o];
    direct_job j;
    j.p = p;
    j.g = &g;
    j.hp = g.h + 2 * g.ph;
    j.wps = g.w + 2 * g.pw + 8;
    j.tw = (g.wo + 7) / 8 * 8;
    j.vector = g.sw == 1 && cpu_has_avx2();
    j.relu = relu;
    atomic_init(&j.failed, 0);
    int64_t *off = malloc((size_t)(nnz ? nnz : 1) * sizeof *off);
    pr_tensor *xc = off ? pr_tensor_contiguous(x) : NULL;
    if (!xc) {
        if (!off)
            pr_error_code(PR_ENOMEM, "Conv2d [direct plan]: out of memory");
        free(off);
        pr_tensor_release(y);
        return NULL;
    }
    for (int64_t k = 0; k < nnz; k++)
        off[k] = (int64_t)p->ent_c[k] * j.hp * j.wps + (int64_t)p->ent_ki[k] * g.dh * j.wps +
                 (int64_t)p->ent_kj[k] * g.dw;
    j.off = off;
    j.x = pr_tensor_f32(xc);
    j.y = pr_tensor_f32(y);
    /* cost of one sample: its multiply-adds plus the copy and the output */
    int64_t cost = nnz * g.ho * g.wo + g.c * j.hp * j.wps + g.o * g.ho * g.wo;
    pr_parallel_for(g.n, cost, direct_samples, &j);
    free(off);
    pr_tensor_release(xc);
    if (atomic_load(&j.failed)) {
        pr_tensor_release(y);
        pr_error_code(PR_ENOMEM, "Conv2d [direct plan]: out of memory for a sample buffer");
        return NULL;
    }
    return y;
}

/* Fills p's per-channel entry lists from the masked dense weight [O, C*kh*kw]. */
static int direct_pack(plan *p, const float *w, int64_t o, int64_t c, int64_t kh, int64_t kw)
{
    int64_t k = c * kh * kw, nnz = 0;
    for (int64_t i = 0; i < o * k; i++)
        nnz += w[i] != 0.0f;
    size_t n = (size_t)(nnz ? nnz : 1);
    p->row = malloc((size_t)(o + 1) * sizeof *p->row);
    p->ent_c = malloc(n * sizeof *p->ent_c);
    p->ent_ki = malloc(n * sizeof *p->ent_ki);
    p->ent_kj = malloc(n * sizeof *p->ent_kj);
    p->ent_w = malloc(n * sizeof *p->ent_w);
    if (!p->row || !p->ent_c || !p->ent_ki || !p->ent_kj || !p->ent_w)
        return pr_error_code(PR_ENOMEM, "Conv2d: out of memory packing a direct plan");
    int64_t e = 0;
    for (int64_t r = 0; r < o; r++) {
        p->row[r] = e;
        for (int64_t i = 0; i < k; i++) {
            float v = w[r * k + i];
            if (v == 0.0f)
                continue;
            p->ent_c[e] = (int32_t)(i / (kh * kw));
            p->ent_ki[e] = (int32_t)(i / kw % kh);
            p->ent_kj[e] = (int32_t)(i % kw);
            p->ent_w[e++] = v;
        }
    }
    p->row[o] = e;
    return PR_OK;
}

/* ---- making and installing plans ---- */

pr_module_exec *pr_sparse_exec_new(pr_module *m, const char *name)
{
    if (!m || !name) {
        pr_error("sparse plan: NULL module or name");
        return NULL;
    }
    int direct = strcmp(name, "direct") == 0;
    int fmt = direct ? 0 : pr_sparse_format_from_name(name);
    if (fmt < 0) {
        pr_error("unknown execution plan '%s' (expected dense, csr, bsr1x4, bsr4x1, nm2:4 or "
                 "direct)", name);
        return NULL;
    }
    int conv = is_kind(m, "Conv2d");
    if (direct && !conv) {
        pr_error("%s: the direct plan is for Conv2d only", m && m->vt ? m->vt->kind : "?");
        return NULL;
    }
    if (!is_kind(m, "Linear") && !conv) {
        pr_error("%s: execution plans exist for Linear and Conv2d only", m->vt->kind);
        return NULL;
    }
    if (conv && m->cfg[10] != 1) {
        pr_error("Conv2d: sparse execution plans need groups == 1 (this layer has groups = %lld)",
                 (long long)m->cfg[10]);
        return NULL;
    }
    pr_tensor *w = m->nparams > 0 ? m->params[0] : NULL;
    if (!w || w->dtype != PR_FLOAT32 || w->ndim != (conv ? 4 : 2)) {
        pr_error("%s: weight missing or not float32 of %d dims", m->vt->kind, conv ? 4 : 2);
        return NULL;
    }
    int64_t rows = w->shape[0], cols = 1;
    for (int d = 1; d < w->ndim; d++)
        cols *= w->shape[d];
    /* A private dense copy with the mask applied: a weight whose mask was set but whose value
     * was since edited (load_state_dict of unmasked values) must still run pruned. */
    pr_tensor *wc = pr_tensor_contiguous(w);
    pr_tensor *mc = wc && w->mask ? pr_tensor_contiguous(w->mask) : NULL;
    size_t n = (size_t)(rows * cols);
    float *dense = wc && (!w->mask || mc) ? malloc((n ? n : 1) * sizeof *dense) : NULL;
    plan *p = dense ? calloc(1, sizeof *p) : NULL;
    if (!p) {
        pr_tensor_release(wc);
        pr_tensor_release(mc);
        free(dense);
        if (wc && (!w->mask || mc))
            pr_error_code(PR_ENOMEM, "%s: out of memory making a %s plan", m->vt->kind, name);
        return NULL;
    }
    const float *wd = pr_tensor_f32(wc), *md = mc ? pr_tensor_f32(mc) : NULL;
    for (size_t i = 0; i < n; i++)
        dense[i] = md ? wd[i] * md[i] : wd[i];
    pr_tensor_release(wc);
    pr_tensor_release(mc);
    if (!direct && fmt == PR_SPARSE_NM_2_4 && !pr_sparse_fits_nm(dense, rows, cols)) {
        pr_error("%s [%lld,%lld]: the nm2:4 plan needs at most 2 non-zeros in every group of 4 "
                 "input columns; prune it 2:4 first or pick csr/bsr", m->vt->kind, (long long)rows,
                 (long long)cols);
        free(dense);
        free(p);
        return NULL;
    }
    if (direct) {
        int rc = cols > INT32_MAX ? pr_error("Conv2d: weight too large for a direct plan")
                                  : direct_pack(p, dense, rows, w->shape[1], w->shape[2], w->shape[3]);
        free(dense);
        if (rc < 0) {
            plan_free(&p->exec);
            return NULL;
        }
    } else {
        p->st.w = pr_sparse_from_dense(dense, rows, cols, (pr_sparse_format)fmt);
        free(dense);
        if (!p->st.w) {
            free(p);
            return NULL;
        }
    }
    p->st.w_src = w;
    pr_tensor_retain(w);
    p->st.w_ver = version_of(w);
    p->st.mask_src = w->mask;
    if (w->mask)
        pr_tensor_retain(w->mask);
    p->st.mask_ver = version_of(w->mask);
    pr_tensor *b = m->nparams > 1 ? m->params[1] : NULL;
    p->st.b_src = b;
    p->st.b_ver = version_of(b);
    if (b)
        pr_tensor_retain(b);
    if (b) {
        pr_tensor *bc = pr_tensor_contiguous(b);
        p->st.bias = bc && b->dtype == PR_FLOAT32 && pr_tensor_numel(b) == rows
                         ? malloc((size_t)rows * sizeof *p->st.bias) : NULL;
        if (p->st.bias)
            memcpy(p->st.bias, pr_tensor_f32(bc), (size_t)rows * sizeof *p->st.bias);
        pr_tensor_release(bc);
        if (!p->st.bias) {
            plan_free(&p->exec);
            pr_error_code(PR_ENOMEM, "%s: cannot copy the bias for a %s plan", m->vt->kind, name);
            return NULL;
        }
    }
    /* static strings */
    p->exec.name = direct ? "direct" : pr_sparse_format_name((pr_sparse_format)fmt);
    p->exec.forward = direct ? direct_run : conv ? conv_run : linear_run;
    p->exec.free = plan_free;
    p->exec.state = &p->st;
    return &p->exec;
}

int pr_sparse_exec_set(pr_module *m, const char *name)
{
    if (!m || !name)
        return pr_error("set_exec: NULL module or name");
    if (strcmp(name, "dense") == 0) {
        pr_module_set_exec(m, NULL);
        return PR_OK;
    }
    if (m->training)
        return pr_error("%s: set_exec('%s') needs eval mode (call eval() first): the packed "
                        "weight would go stale while training", m->vt->kind, name);
    pr_module_exec *e = pr_sparse_exec_new(m, name);
    if (!e)
        return PR_EINVAL;
    pr_module_set_exec(m, e);
    return PR_OK;
}

const char *pr_sparse_exec_name(const pr_module *m)
{
    return m && m->exec && m->exec->name ? m->exec->name : "dense";
}
