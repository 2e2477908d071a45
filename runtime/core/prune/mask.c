/* mask.c: pruning masks (float32 0/1, 0 = pruned): from a threshold with exact ties, spread
 * from structures, N:M, blocks, random; applying and counting them; seed 000's gradient
 * mask. See prune.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "prune.h"
#include "rng.h"
#include "select.h"

pr_tensor *pr_mask_from_scores(pr_tensor *scores, float threshold, int64_t ties)
{
    if (ties < 0) {
        pr_error("mask_from_scores: ties must be >= 0, got %lld", (long long)ties);
        return NULL;
    }
    pr_tensor *sc = pr_prune_input(scores, "mask_from_scores", "scores");
    if (!sc)
        return NULL;
    pr_tensor *out = pr_tensor_empty(PR_FLOAT32, sc->ndim, sc->shape);
    if (out) {
        const float *x = pr_tensor_f32(sc);
        float *y = pr_tensor_f32(out);
        int64_t n = pr_tensor_numel(sc);
        for (int64_t i = 0; i < n; i++) {
            int prune = x[i] < threshold;
            if (!prune && ties > 0 && x[i] == threshold) {
                prune = 1;
                ties--;
            }
            y[i] = prune ? 0.0f : 1.0f;
        }
    }
    pr_tensor_release(sc);
    return out;
}

pr_tensor *pr_mask_structure_expand(pr_tensor *structure_mask, int ndim, const int64_t *shape,
                                    int dim)
{
    const char *fn = "mask_structure_expand";
    if (ndim < 1 || ndim > PR_MAX_DIMS || !shape) {
        pr_error("%s: needs a shape of 1 to %d dims, got %d", fn, PR_MAX_DIMS, ndim);
        return NULL;
    }
    int d = dim < 0 ? dim + ndim : dim;
    if (d < 0 || d >= ndim) {
        pr_error("%s: dim %d out of range for %d dims", fn, dim, ndim);
        return NULL;
    }
    pr_tensor *sm = pr_prune_input(structure_mask, fn, "structure_mask");
    if (!sm)
        return NULL;
    pr_tensor *out = NULL;
    if (pr_tensor_numel(sm) != shape[d]) {
        char a[128], b[128];
        pr_error("%s: structure mask %s needs %lld entries, the size of the expanded dim of %s",
                 fn, pr_tensor_shape_str(sm, a, sizeof a), (long long)shape[d],
                 pr_shape_str(b, sizeof b, ndim, shape));
    } else {
        out = pr_tensor_empty(PR_FLOAT32, ndim, shape);
    }
    if (out) {
        int64_t outer = 1, inner = 1, size = shape[d];
        for (int k = 0; k < d; k++)
            outer *= shape[k];
        for (int k = d + 1; k < ndim; k++)
            inner *= shape[k];
        const float *m = pr_tensor_f32(sm);
        float *y = pr_tensor_f32(out);
        for (int64_t o = 0; o < outer; o++)
            for (int64_t s = 0; s < size; s++) {
                float v = m[s];
                float *r = y + (o * size + s) * inner;
                for (int64_t i = 0; i < inner; i++)
                    r[i] = v;
            }
    }
    pr_tensor_release(sm);
    return out;
}

pr_tensor *pr_mask_nm(pr_tensor *scores, int n, int m, int dim)
{
    const char *fn = "mask_nm";
    if (m < 1 || n < 0 || n > m) {
        pr_error("%s: need 0 <= N <= M and M >= 1, got N=%d M=%d", fn, n, m);
        return NULL;
    }
    pr_tensor *sc = pr_prune_input(scores, fn, "scores");
    if (!sc)
        return NULL;
    pr_tensor *out = NULL;
    float *v = NULL;
    int64_t *x = NULL;
    int d = pr_prune_dim(sc, dim, fn);
    if (d >= 0 && sc->shape[d] % m != 0) {
        char s[128];
        /* No dim index in the message: Lua callers count dims from 1, C callers from 0. */
        pr_error("%s: M=%d does not divide size %lld of the grouped dim (scores shape %s)", fn,
                 m, (long long)sc->shape[d], pr_tensor_shape_str(sc, s, sizeof s));
    } else if (d >= 0) {
        v = malloc((size_t)m * sizeof *v);
        x = malloc((size_t)m * sizeof *x);
        if (!v || !x)
            pr_error_code(PR_ENOMEM, "%s: out of memory", fn);
        else
            out = pr_tensor_zeros(PR_FLOAT32, sc->ndim, sc->shape);
    }
    if (out && n > 0) {
        int64_t outer = 1, inner = 1, size = sc->shape[d];
        for (int k = 0; k < d; k++)
            outer *= sc->shape[k];
        for (int k = d + 1; k < sc->ndim; k++)
            inner *= sc->shape[k];
        const float *s = pr_tensor_f32(sc);
        float *y = pr_tensor_f32(out);
        for (int64_t o = 0; o < outer; o++)
            for (int64_t g = 0; g < size; g += m)
                for (int64_t i = 0; i < inner; i++) {
                    int64_t base = (o * size + g) * inner + i;
                    /* The N smallest of (-score, position): the N largest scores, earlier
                     * positions first on ties; -NaN is NaN, which the selection puts last. */
                    for (int j = 0; j < m; j++) {
                        v[j] = -s[base + j * inner];
                        x[j] = j;
                    }
                    if (n < m)
                        pr_select_f32_idx(v, x, m, n - 1);
                    for (int j = 0; j < n; j++)
                        y[base + x[j] * inner] = 1.0f;
                }
    }
    free(v);
    free(x);
    pr_tensor_release(sc);
    return out;
}

pr_tensor *pr_mask_blocks(pr_tensor *scores, int64_t bh, int64_t bw, double amount)
{
    const char *fn = "mask_blocks";
    pr_tensor *sc = pr_prune_input(scores, fn, "scores");
    if (!sc)
        return NULL;
    char s[128];
    pr_tensor *out = NULL;
    float *bs = NULL;
    int64_t *bi = NULL;
    int64_t rows = sc->ndim == 2 ? sc->shape[0] : 0, cols = sc->ndim == 2 ? sc->shape[1] : 0;
    if (sc->ndim != 2) {
        pr_error("%s: scores must be 2-D [R,C], got %s", fn, pr_tensor_shape_str(sc, s, sizeof s));
    } else if (bh < 1 || bw < 1 || rows % bh != 0 || cols % bw != 0) {
        pr_error("%s: blocks of %lldx%lld do not tile scores %s", fn, (long long)bh,
                 (long long)bw, pr_tensor_shape_str(sc, s, sizeof s));
    } else {
        int64_t nb = (rows / bh) * (cols / bw);
        int64_t count = pr_prune_amount_count(amount, nb, fn);
        if (count >= 0) {
            bs = malloc((size_t)(nb ? nb : 1) * sizeof *bs);
            bi = malloc((size_t)(nb ? nb : 1) * sizeof *bi);
            if (!bs || !bi)
                pr_error_code(PR_ENOMEM, "%s: out of memory", fn);
            else
                out = pr_tensor_full(PR_FLOAT32, 2, sc->shape, 1.0);
        }
        if (out) {
            const float *x = pr_tensor_f32(sc);
            int64_t bcols = cols / bw;
            for (int64_t b = 0; b < nb; b++) {
                int64_t r0 = (b / bcols) * bh, c0 = (b % bcols) * bw;
                double a = 0.0;
                for (int64_t r = r0; r < r0 + bh; r++)
                    for (int64_t c = c0; c < c0 + bw; c++)
                        a += fabs((double)x[r * cols + c]);
                bs[b] = (float)a;
                bi[b] = b;
            }
            if (count > 0 && count < nb)
                pr_select_f32_idx(bs, bi, nb, count - 1);
            float *y = pr_tensor_f32(out);
            for (int64_t j = 0; j < count; j++) {
                int64_t b = bi[j], r0 = (b / bcols) * bh, c0 = (b % bcols) * bw;
                for (int64_t r = r0; r < r0 + bh; r++)
                    memset(y + r * cols + c0, 0, (size_t)bw * sizeof *y);
            }
        }
    }
    free(bs);
    free(bi);
    pr_tensor_release(sc);
    return out;
}

int pr_mask_apply(pr_tensor *w, pr_tensor *mask)
{
    const char *fn = "mask_apply";
    int rc = pr_prune_check_output(w, fn, "w");
    if (rc < 0)
        return rc;
    pr_tensor *mc = pr_prune_input(mask, fn, "mask");
    if (!mc)
        return PR_EINVAL;
    if (!pr_tensor_same_shape(w, mc)) {
        char a[128], b[128];
        rc = pr_error("%s: w %s and mask %s differ in shape", fn,
                      pr_tensor_shape_str(w, a, sizeof a), pr_tensor_shape_str(mc, b, sizeof b));
    } else {
        float *y = pr_tensor_f32(w);
        const float *m = pr_tensor_f32(mc);
        int64_t n = pr_tensor_numel(w);
        for (int64_t i = 0; i < n; i++)
            y[i] = m[i] == 0.0f ? 0.0f : y[i] * m[i];
    }
    pr_tensor_release(mc);
    return rc;
}

pr_tensor *pr_mask_random(int ndim, const int64_t *shape, double amount)
{
    pr_tensor *out = pr_tensor_full(PR_FLOAT32, ndim, shape, 1.0);
    if (!out)
        return NULL;
    int64_t n = pr_tensor_numel(out);
    int64_t need = pr_prune_amount_count(amount, n, "mask_random");
    if (need < 0) {
        pr_tensor_release(out);
        return NULL;
    }
    /* Selection sampling (Knuth's Algorithm S): each entry is taken with probability
     * need/remaining, which yields exactly `need` entries, every subset equally likely, in
     * one pass and no scratch. */
    float *y = pr_tensor_f32(out);
    for (int64_t i = 0; i < n && need > 0; i++) {
        if (pr_rng_below(n - i) < need) {
            y[i] = 0.0f;
            need--;
        }
    }
    return out;
}

int64_t pr_mask_count_zeros(pr_tensor *t)
{
    pr_tensor *c = pr_prune_input(t, "mask_count_zeros", "t");
    if (!c)
        return PR_EINVAL;
    const float *x = pr_tensor_f32(c);
    int64_t n = pr_tensor_numel(c), zeros = 0;
    for (int64_t i = 0; i < n; i++)
        zeros += x[i] == 0.0f;
    pr_tensor_release(c);
    return zeros;
}

int64_t pr_grad_clip_mask_(pr_tensor *g, float threshold)
{
    int rc = pr_prune_check_output(g, "grad_clip_mask_", "g");
    if (rc < 0)
        return rc;
    float *x = pr_tensor_f32(g);
    int64_t n = pr_tensor_numel(g), zeroed = 0;
    for (int64_t i = 0; i < n; i++) {
        if (fabsf(x[i]) < threshold) {
            x[i] = 0.0f;
            zeroed++;
        }
    }
    return zeroed;
}
