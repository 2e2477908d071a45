/* optim.c: SGD (momentum, dampening, Nesterov, weight decay, L1) and Adam/AdamW steps with
 * masks honoured (see optim.h). The formulas follow torch.optim so results can be compared. */
#include "optim.h"

#include <math.h>

static int check_param(const char *who, pr_tensor *p, pr_tensor *buf, const char *bufname)
{
    char a[96], b[96];
    if (p->dtype != PR_FLOAT32 || !pr_tensor_is_contiguous(p))
        return pr_error("%s: parameter must be a contiguous float32 tensor", who);
    if (p->grad && !pr_tensor_same_shape(p, p->grad))
        return pr_error("%s: gradient %s does not match parameter %s", who,
                        pr_tensor_shape_str(p->grad, a, sizeof a), pr_tensor_shape_str(p, b, sizeof b));
    if (buf && (!pr_tensor_same_shape(p, buf) || buf->dtype != PR_FLOAT32 || !pr_tensor_is_contiguous(buf)))
        return pr_error("%s: %s %s does not match parameter %s", who, bufname,
                        pr_tensor_shape_str(buf, a, sizeof a), pr_tensor_shape_str(p, b, sizeof b));
    return PR_OK;
}

static inline float sgnf(float x) { return (float)((x > 0.0f) - (x < 0.0f)); }

/* One SGD update of elements [0, n). The flags are compile-time constants at each call in
 * sgd_update below, so every combination becomes its own branch-free loop the compiler can
 * vectorise: with the tests inside one loop, perf showed pr_sgd_step at a quarter of an MLP
 * epoch (784-128-10, batch 64), ~2.7 ns per parameter. */
static inline void sgd_loop(float *restrict w, const float *restrict g, float *restrict b,
                            const float *restrict mask, int64_t n, float lr, float wd, float l1,
                            float mom, float damp, const int has_b, const int first,
                            const int nesterov, const int has_mask, const int has_l1)
{
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        if (has_l1)
            d += l1 * sgnf(w[i]);
        if (has_b) {
            float bi = first ? d : mom * b[i] + damp * d;
            d = nesterov ? d + mom * bi : bi;
            b[i] = has_mask ? bi * mask[i] : bi;
        }
        float wi = w[i] - lr * d;
        w[i] = has_mask ? wi * mask[i] : wi;
    }
}

static void sgd_update(float *w, const float *g, float *b, const float *mask, int64_t n,
                       const pr_sgd_opts *o, int first)
{
    const float lr = (float)o->lr, wd = (float)o->weight_decay, l1 = (float)o->l1;
    const float mom = (float)o->momentum, damp = (float)(1.0 - o->dampening);
#define SGD(HB, F, NE, HM, HL) sgd_loop(w, g, b, mask, n, lr, wd, l1, mom, damp, HB, F, NE, HM, HL)
    if (b && !first && !o->nesterov && l1 == 0.0f) { /* the usual case: momentum, no L1 */
        if (mask)
            SGD(1, 0, 0, 1, 0);
        else
            SGD(1, 0, 0, 0, 0);
    } else if (!b && l1 == 0.0f && !mask) {
        SGD(0, 0, 0, 0, 0);
    } else { /* everything else: the general loop */
        for (int64_t i = 0; i < n; i++) {
            float d = g[i] + wd * w[i] + l1 * sgnf(w[i]);
            if (b) {
                b[i] = first ? d : mom * b[i] + damp * d;
                d = o->nesterov ? d + mom * b[i] : b[i];
            }
            w[i] -= lr * d;
            if (mask) {
                w[i] *= mask[i];
                if (b)
                    b[i] *= mask[i];
            }
        }
    }
#undef SGD
}

/* The step applied p's mask as it wrote: the next forward need not apply it again
 * (pr_param_ensure_masked). */
static void stepped(pr_tensor *p)
{
    if (p->mask) {
        p->masked_at = p->storage->version;
        p->mask_at = p->mask->storage->version;
    }
}

int pr_sgd_step(pr_tensor *p, pr_tensor *buf, const pr_sgd_opts *o, int first)
{
    if (!p->grad)
        return PR_OK;
    pr_tensor_written(p);
    if (o->momentum != 0.0 && !buf)
        return pr_error("sgd: momentum needs a buffer");
    int rc = check_param("sgd", p, o->momentum != 0.0 ? buf : NULL, "momentum buffer");
    if (rc < 0)
        return rc;
    pr_tensor *gt = pr_tensor_contiguous(p->grad);
    if (!gt)
        return PR_ENOMEM;
    float *b = o->momentum != 0.0 ? pr_tensor_f32(buf) : NULL;
    const float *mask = p->mask ? pr_tensor_f32(p->mask) : NULL;
    sgd_update(pr_tensor_f32(p), pr_tensor_f32(gt), b, mask, pr_tensor_numel(p), o, first);
    stepped(p);
    pr_tensor_release(gt);
    return PR_OK;
}

int pr_adam_step(pr_tensor *p, pr_tensor *m, pr_tensor *v, int64_t step, const pr_adam_opts *o)
{
    if (!p->grad)
        return PR_OK;
    pr_tensor_written(p);
    int rc = check_param("adam", p, m, "first moment");
    if (rc == PR_OK)
        rc = check_param("adam", p, v, "second moment");
    if (rc < 0)
        return rc;
    if (step < 1)
        return pr_error("adam: step must start at 1 (got %lld)", (long long)step);
    pr_tensor *gt = pr_tensor_contiguous(p->grad);
    if (!gt)
        return PR_ENOMEM;
    float *w = pr_tensor_f32(p), *mm = pr_tensor_f32(m), *vv = pr_tensor_f32(v);
    const float *g = pr_tensor_f32(gt);
    const float *mask = p->mask ? pr_tensor_f32(p->mask) : NULL;
    const float b1 = (float)o->beta1, b2 = (float)o->beta2, eps = (float)o->eps;
    const double bc1 = 1.0 - pow(o->beta1, (double)step), bc2 = 1.0 - pow(o->beta2, (double)step);
    const float step_size = (float)(o->lr / bc1), rbc2 = (float)(1.0 / sqrt(bc2));
    const float wd = (float)o->weight_decay, l1 = (float)o->l1;
    const float decay = o->decoupled ? (float)(1.0 - o->lr * o->weight_decay) : 1.0f;
    int64_t n = pr_tensor_numel(p);
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] + l1 * sgnf(w[i]);
        if (!o->decoupled)
            d += wd * w[i];
        else
            w[i] *= decay;
        mm[i] = b1 * mm[i] + (1.0f - b1) * d;
        vv[i] = b2 * vv[i] + (1.0f - b2) * d * d;
        w[i] -= step_size * mm[i] / (sqrtf(vv[i]) * rbc2 + eps);
        if (mask) {
            w[i] *= mask[i];
            mm[i] *= mask[i];
            vv[i] *= mask[i];
        }
    }
    stepped(p);
    pr_tensor_release(gt);
    return PR_OK;
}
