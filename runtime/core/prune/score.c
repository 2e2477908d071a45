/* score.c: pruning scores: per element (magnitude, Taylor, accumulated |g|), per structure
 * (Lp norms and reductions of slices along a dim, coupled depthwise+pointwise channels) and
 * activation statistics (mean |activation| and APoZ counts). See prune.h. */
#include <math.h>
#include <stdlib.h>

#include "prune.h"

/* A tensor viewed as [outer, size, inner] around dim, the loop shape of every per-structure
 * pass here (row-major, so element (o, s, i) is at (o * size + s) * inner + i). */
typedef struct { int64_t outer, size, inner; } split3;

static split3 split_at(const pr_tensor *t, int dim)
{
    split3 s = {1, t->shape[dim], 1};
    for (int d = 0; d < dim; d++)
        s.outer *= t->shape[d];
    for (int d = dim + 1; d < t->ndim; d++)
        s.inner *= t->shape[d];
    return s;
}

static int check_same_shape(const pr_tensor *a, const pr_tensor *b, const char *fn,
                            const char *an, const char *bn)
{
    if (pr_tensor_same_shape(a, b))
        return PR_OK;
    char sa[128], sb[128];
    return pr_error("%s: %s %s and %s %s differ in shape", fn, an,
                    pr_tensor_shape_str(a, sa, sizeof sa), bn, pr_tensor_shape_str(b, sb, sizeof sb));
}

/* ---- element scores ---- */

pr_tensor *pr_score_magnitude(pr_tensor *w, double p)
{
    if (!(p > 0.0) || isinf(p)) {
        pr_error("score_magnitude: p must be a finite number > 0, got %g", p);
        return NULL;
    }
    pr_tensor *wc = pr_prune_input(w, "score_magnitude", "w");
    if (!wc)
        return NULL;
    pr_tensor *out = pr_tensor_empty(PR_FLOAT32, wc->ndim, wc->shape);
    if (out) {
        const float *x = pr_tensor_f32(wc);
        float *y = pr_tensor_f32(out);
        int64_t n = pr_tensor_numel(wc);
        if (p == 1.0) {
            for (int64_t i = 0; i < n; i++)
                y[i] = fabsf(x[i]);
        } else if (p == 2.0) {
            for (int64_t i = 0; i < n; i++)
                y[i] = x[i] * x[i];
        } else {
            for (int64_t i = 0; i < n; i++)
                y[i] = (float)pow(fabs((double)x[i]), p);
        }
    }
    pr_tensor_release(wc);
    return out;
}

pr_tensor *pr_score_taylor(pr_tensor *w, pr_tensor *g)
{
    pr_tensor *wc = pr_prune_input(w, "score_taylor", "w");
    pr_tensor *gc = wc ? pr_prune_input(g, "score_taylor", "g") : NULL;
    pr_tensor *out = NULL;
    if (gc && check_same_shape(wc, gc, "score_taylor", "w", "g") == PR_OK)
        out = pr_tensor_empty(PR_FLOAT32, wc->ndim, wc->shape);
    if (out) {
        const float *x = pr_tensor_f32(wc), *d = pr_tensor_f32(gc);
        float *y = pr_tensor_f32(out);
        int64_t n = pr_tensor_numel(wc);
        for (int64_t i = 0; i < n; i++)
            y[i] = fabsf(x[i] * d[i]);
    }
    pr_tensor_release(wc);
    pr_tensor_release(gc);
    return out;
}

int pr_score_accumulate_abs(pr_tensor *acc, pr_tensor *g)
{
    int rc = pr_prune_check_output(acc, "score_accumulate_abs", "acc");
    if (rc < 0)
        return rc;
    pr_tensor *gc = pr_prune_input(g, "score_accumulate_abs", "g");
    if (!gc)
        return PR_EINVAL;
    rc = check_same_shape(acc, gc, "score_accumulate_abs", "acc", "g");
    if (rc == PR_OK) {
        float *a = pr_tensor_f32(acc);
        const float *d = pr_tensor_f32(gc);
        int64_t n = pr_tensor_numel(acc);
        for (int64_t i = 0; i < n; i++)
            a[i] += fabsf(d[i]);
    }
    pr_tensor_release(gc);
    return rc;
}

/* ---- structure scores ---- */

/* Lp norms of the slices of wc along dim into out[size] (both contiguous). */
static void slice_norms(const pr_tensor *wc, int dim, double p, float *out)
{
    split3 s = split_at(wc, dim);
    const float *x = pr_tensor_f32(wc);
    for (int64_t k = 0; k < s.size; k++) {
        double a = 0.0;
        for (int64_t o = 0; o < s.outer; o++) {
            const float *r = x + (o * s.size + k) * s.inner;
            if (p == 1.0) {
                for (int64_t i = 0; i < s.inner; i++)
                    a += fabs((double)r[i]);
            } else if (p == 2.0) {
                for (int64_t i = 0; i < s.inner; i++)
                    a += (double)r[i] * (double)r[i];
            } else if (isinf(p)) {
                for (int64_t i = 0; i < s.inner; i++)
                    if (fabs((double)r[i]) > a || isnan(r[i]))
                        a = fabs((double)r[i]);
            } else {
                for (int64_t i = 0; i < s.inner; i++)
                    a += pow(fabs((double)r[i]), p);
            }
        }
        if (p == 2.0)
            a = sqrt(a);
        else if (p != 1.0 && !isinf(p))
            a = pow(a, 1.0 / p);
        out[k] = (float)a;
    }
}

pr_tensor *pr_score_structure_norm(pr_tensor *w, int dim, double p)
{
    if (!(p > 0.0)) {
        pr_error("score_structure_norm: p must be > 0 (or inf), got %g", p);
        return NULL;
    }
    pr_tensor *wc = pr_prune_input(w, "score_structure_norm", "w");
    if (!wc)
        return NULL;
    pr_tensor *out = NULL;
    int d = pr_prune_dim(wc, dim, "score_structure_norm");
    if (d >= 0)
        out = pr_tensor_empty(PR_FLOAT32, 1, &wc->shape[d]);
    if (out)
        slice_norms(wc, d, p, pr_tensor_f32(out));
    pr_tensor_release(wc);
    return out;
}

pr_tensor *pr_score_structure_reduce(pr_tensor *score, int dim, pr_sreduce mode)
{
    if (mode != PR_SREDUCE_SUM && mode != PR_SREDUCE_MEAN && mode != PR_SREDUCE_MAX) {
        pr_error("score_structure_reduce: unknown mode %d", (int)mode);
        return NULL;
    }
    pr_tensor *sc = pr_prune_input(score, "score_structure_reduce", "score");
    if (!sc)
        return NULL;
    pr_tensor *out = NULL;
    int d = pr_prune_dim(sc, dim, "score_structure_reduce");
    if (d >= 0)
        out = pr_tensor_empty(PR_FLOAT32, 1, &sc->shape[d]);
    if (out) {
        split3 s = split_at(sc, d);
        const float *x = pr_tensor_f32(sc);
        float *y = pr_tensor_f32(out);
        int64_t per = s.outer * s.inner;
        for (int64_t k = 0; k < s.size; k++) {
            double a = mode == PR_SREDUCE_MAX ? -INFINITY : 0.0;
            for (int64_t o = 0; o < s.outer; o++) {
                const float *r = x + (o * s.size + k) * s.inner;
                for (int64_t i = 0; i < s.inner; i++) {
                    if (mode == PR_SREDUCE_MAX) {
                        if (r[i] > a || isnan(r[i]))
                            a = r[i];
                    } else {
                        a += r[i];
                    }
                }
            }
            if (mode == PR_SREDUCE_MEAN)
                a = per ? a / (double)per : NAN;
            y[k] = (float)a;
        }
    }
    pr_tensor_release(sc);
    return out;
}

pr_tensor *pr_score_depthwise_coupled(pr_tensor *dw, pr_tensor *pw, double p)
{
    const char *fn = "score_depthwise_coupled";
    if (!(p > 0.0)) {
        pr_error("%s: p must be > 0 (or inf), got %g", fn, p);
        return NULL;
    }
    pr_tensor *dc = pr_prune_input(dw, fn, "dw");
    pr_tensor *pc = dc ? pr_prune_input(pw, fn, "pw") : NULL;
    pr_tensor *out = NULL;
    float *pn = NULL;
    if (pc) {
        char sd[128], sp[128];
        if (dc->ndim < 1 || pc->ndim < 2 || dc->shape[0] != pc->shape[1])
            pr_error("%s: depthwise %s and pointwise %s do not share channels (need dw "
                     "[C,...] and pw [O,C,...])", fn, pr_tensor_shape_str(dc, sd, sizeof sd),
                     pr_tensor_shape_str(pc, sp, sizeof sp));
        else if (!(pn = malloc((size_t)(dc->shape[0] ? dc->shape[0] : 1) * sizeof *pn)))
            pr_error_code(PR_ENOMEM, "%s: out of memory", fn);
        else
            out = pr_tensor_empty(PR_FLOAT32, 1, &dc->shape[0]);
    }
    if (out) {
        float *y = pr_tensor_f32(out);
        slice_norms(dc, 0, p, y);
        slice_norms(pc, 1, p, pn);
        for (int64_t c = 0; c < dc->shape[0]; c++)
            y[c] *= pn[c];
    }
    free(pn);
    pr_tensor_release(dc);
    pr_tensor_release(pc);
    return out;
}

/* ---- activation statistics ---- */

int64_t pr_activity_accumulate(pr_tensor *act, pr_tensor *sum_acc, pr_tensor *zero_acc)
{
    const char *fn = "activity_accumulate";
    char sa[128], sb[128];
    if (act && act->ndim < 2)
        return pr_error("%s: act must be [N,C,...] or [N,F], got %s", fn,
                        pr_tensor_shape_str(act, sa, sizeof sa));
    pr_tensor *ac = pr_prune_input(act, fn, "act");
    if (!ac)
        return PR_EINVAL;
    int64_t channels = ac->shape[1];
    int rc = PR_OK;
    if (sum_acc) {
        rc = pr_prune_check_output(sum_acc, fn, "sum_acc");
        if (rc == PR_OK && pr_tensor_numel(sum_acc) != channels)
            rc = pr_error("%s: sum_acc %s must have one entry per channel of act %s", fn,
                          pr_tensor_shape_str(sum_acc, sa, sizeof sa),
                          pr_tensor_shape_str(ac, sb, sizeof sb));
    }
    if (rc == PR_OK && zero_acc) {
        if (zero_acc->dtype != PR_FLOAT32 && zero_acc->dtype != PR_INT64)
            rc = pr_error("%s: zero_acc must be float32 or int64, got %s", fn,
                          pr_dtype_name(zero_acc->dtype));
        else if (!pr_tensor_is_contiguous(zero_acc))
            rc = pr_error("%s: zero_acc is written in place and must be contiguous", fn);
        else if (pr_tensor_numel(zero_acc) != channels)
            rc = pr_error("%s: zero_acc %s must have one entry per channel of act %s", fn,
                          pr_tensor_shape_str(zero_acc, sa, sizeof sa),
                          pr_tensor_shape_str(ac, sb, sizeof sb));
    }
    if (rc < 0) {
        pr_tensor_release(ac);
        return rc;
    }
    split3 s = split_at(ac, 1);
    const float *x = pr_tensor_f32(ac);
    float *sum = sum_acc ? pr_tensor_f32(sum_acc) : NULL;
    for (int64_t c = 0; c < channels; c++) {
        double a = 0.0;
        int64_t zeros = 0;
        for (int64_t o = 0; o < s.outer; o++) {
            const float *r = x + (o * channels + c) * s.inner;
            for (int64_t i = 0; i < s.inner; i++) {
                a += fabs((double)r[i]);
                zeros += r[i] == 0.0f;
            }
        }
        if (sum)
            sum[c] += (float)a;
        if (zero_acc && zero_acc->dtype == PR_INT64)
            pr_tensor_i64(zero_acc)[c] += zeros;
        else if (zero_acc)
            pr_tensor_f32(zero_acc)[c] += (float)zeros;
    }
    pr_tensor_release(ac);
    return s.outer * s.inner;
}
