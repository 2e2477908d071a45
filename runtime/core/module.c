/* module.c: the generic half of modules: registry of kinds, lifecycle, parameters, the tree
 * walk, clone, masks and activity statistics (see module.h). The layers are in the modules folder. */
#include "module.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "error.h"
#include "prune/prune.h"

/* Kinds, defined in modules/layers.c and modules/containers.c. */
extern const pr_module_vt pr_linear_vt, pr_conv2d_vt, pr_batchnorm1d_vt, pr_batchnorm2d_vt,
    pr_relu_vt, pr_leakyrelu_vt, pr_sigmoid_vt, pr_tanh_vt, pr_softmax_vt, pr_logsoftmax_vt,
    pr_dropout_vt, pr_flatten_vt, pr_identity_vt, pr_maxpool2d_vt, pr_avgpool2d_vt,
    pr_globalavgpool2d_vt, pr_sequential_vt, pr_residual_vt, pr_concat_vt;

static const pr_module_vt *const kinds[] = {
    &pr_linear_vt, &pr_conv2d_vt, &pr_batchnorm1d_vt, &pr_batchnorm2d_vt, &pr_relu_vt,
    &pr_leakyrelu_vt, &pr_sigmoid_vt, &pr_tanh_vt, &pr_softmax_vt, &pr_logsoftmax_vt,
    &pr_dropout_vt, &pr_flatten_vt, &pr_identity_vt, &pr_maxpool2d_vt, &pr_avgpool2d_vt,
    &pr_globalavgpool2d_vt, &pr_sequential_vt, &pr_residual_vt, &pr_concat_vt,
};

const pr_module_vt *pr_module_kind(const char *kind)
{
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kinds[i]->kind, kind) == 0)
            return kinds[i];
    return NULL;
}

pr_module *pr_module_new_raw(const pr_module_vt *vt)
{
    pr_module *m = calloc(1, sizeof *m);
    if (!m) {
        pr_error_code(PR_ENOMEM, "out of memory");
        return NULL;
    }
    m->vt = vt;
    m->refcount = 1;
    m->training = 1;
    return m;
}

static int name_index(const char *const *names, const char *name)
{
    for (int i = 0; names && names[i]; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

pr_module *pr_module_new(const char *kind, int n, const char *const *names, const double *values)
{
    const pr_module_vt *vt = pr_module_kind(kind);
    if (!vt) {
        pr_error("unknown module kind '%s'", kind);
        return NULL;
    }
    pr_module *m = pr_module_new_raw(vt);
    if (!m)
        return NULL;
    /* "Not given" is -1 for integers and NaN for reals; each kind's init() fills in defaults. */
    for (int i = 0; i < PR_MODULE_MAXCFG; i++)
        m->cfg[i] = -1;
    for (int i = 0; i < 4; i++)
        m->fcfg[i] = NAN;
    for (int k = 0; k < n; k++) {
        int i = name_index(vt->cfg_names, names[k]);
        if (i >= 0) {
            m->cfg[i] = (int64_t)values[k];
            continue;
        }
        i = name_index(vt->fcfg_names, names[k]);
        if (i >= 0) {
            m->fcfg[i] = values[k];
            continue;
        }
        pr_error("%s: unknown option '%s'", kind, names[k]);
        pr_module_release(m);
        return NULL;
    }
    if (vt->init && vt->init(m) < 0) {
        pr_module_release(m);
        return NULL;
    }
    return m;
}

void pr_module_retain(pr_module *m) { if (m) m->refcount++; }

void pr_module_release(pr_module *m)
{
    if (!m || --m->refcount > 0)
        return;
    for (int i = 0; i < m->nparams; i++)
        pr_tensor_release(m->params[i]);
    for (int i = 0; i < m->nbuffers; i++)
        pr_tensor_release(m->buffers[i]);
    for (int i = 0; i < m->nchildren; i++)
        pr_module_release(m->children[i]);
    free(m->children);
    pr_tensor_release(m->activity.sum);
    pr_tensor_release(m->activity.zeros);
    pr_module_set_exec(m, NULL);
    free(m);
}

void pr_module_set_exec(pr_module *m, pr_module_exec *e)
{
    if (m->exec && m->exec != e && m->exec->free)
        m->exec->free(m->exec);
    m->exec = e;
}

int pr_module_add_child(pr_module *m, pr_module *child)
{
    pr_module **c = realloc(m->children, (size_t)(m->nchildren + 1) * sizeof *c);
    if (!c)
        return pr_error_code(PR_ENOMEM, "out of memory");
    m->children = c;
    c[m->nchildren++] = child;
    pr_module_retain(child);
    return PR_OK;
}

int pr_module_add_param(pr_module *m, const char *name, pr_tensor *t)
{
    if (!t)
        return PR_ENOMEM;
    if (m->nparams == PR_MODULE_MAXPARAM) {
        pr_tensor_release(t);
        return pr_error("%s: too many parameters", m->vt->kind);
    }
    t->requires_grad = 1;
    m->param_names[m->nparams] = name;
    m->params[m->nparams++] = t;
    return PR_OK;
}

int pr_module_add_buffer(pr_module *m, const char *name, pr_tensor *t)
{
    if (!t)
        return PR_ENOMEM;
    if (m->nbuffers == PR_MODULE_MAXPARAM) {
        pr_tensor_release(t);
        return pr_error("%s: too many buffers", m->vt->kind);
    }
    m->buffer_names[m->nbuffers] = name;
    m->buffers[m->nbuffers++] = t;
    return PR_OK;
}

pr_tensor *pr_module_param(pr_module *m, const char *name)
{
    for (int i = 0; i < m->nparams; i++)
        if (strcmp(m->param_names[i], name) == 0)
            return m->params[i];
    return NULL;
}

pr_tensor *pr_module_buffer(pr_module *m, const char *name)
{
    for (int i = 0; i < m->nbuffers; i++)
        if (strcmp(m->buffer_names[i], name) == 0)
            return m->buffers[i];
    return NULL;
}

/* Per-channel sums of |output| and counts of exact zeros (APoZ after a ReLU), by the pruning
 * core's accumulator, for the activity criteria. */
static int accumulate_activity(pr_module *m, pr_tensor *y)
{
    if (y->dtype != PR_FLOAT32 || y->ndim < 2)
        return PR_OK;
    int64_t c = y->shape[1];
    pr_activity *a = &m->activity;
    if (!a->sum || a->sum->shape[0] != c) {
        pr_tensor_release(a->sum);
        pr_tensor_release(a->zeros);
        a->sum = pr_tensor_zeros(PR_FLOAT32, 1, &c);
        a->zeros = pr_tensor_zeros(PR_INT64, 1, &c);
        a->count = 0;
        if (!a->sum || !a->zeros)
            return PR_ENOMEM;
    }
    int64_t n = pr_activity_accumulate(y, a->sum, a->zeros);
    if (n < 0)
        return (int)n;
    a->count += (double)n;
    return PR_OK;
}

void pr_param_ensure_masked(pr_tensor *param)
{
    if (param && param->mask && (param->storage->version != param->masked_at ||
                                 param->mask->storage->version != param->mask_at))
        pr_param_apply_mask(param);
}

static void ensure_masked(pr_module *m)
{
    for (int i = 0; i < m->nparams; i++)
        pr_param_ensure_masked(m->params[i]);
}

pr_tensor *pr_module_forward(pr_module *m, pr_tensor *x)
{
    if (!x) {
        pr_error("%s: input is missing", m->vt->kind);
        return NULL;
    }
    ensure_masked(m);
    pr_tensor *y = m->exec && !pr_grad_enabled() ? m->exec->forward(m, m->exec, x, 0)
                                                  : m->vt->forward(m, x);
    if (y && m->activity.on && accumulate_activity(m, y) < 0) {
        pr_tensor_release(y);
        return NULL;
    }
    return y;
}

int pr_module_fuses_relu(const pr_module *m, const pr_module *next)
{
    return !pr_grad_enabled() && next->vt == &pr_relu_vt && m->vt->forward_relu &&
           !m->activity.on && !next->activity.on;
}

int pr_module_relu_fuses_into(const pr_module *relu, const pr_module *next)
{
    return relu->vt == &pr_relu_vt && next->vt->forward_after_relu && !next->exec &&
           !relu->activity.on && !next->activity.on;
}

pr_tensor *pr_module_forward_relu(pr_module *m, pr_tensor *x)
{
    if (!x) {
        pr_error("%s: input is missing", m->vt->kind);
        return NULL;
    }
    ensure_masked(m);
    return m->exec ? m->exec->forward(m, m->exec, x, 1) : m->vt->forward_relu(m, x);
}

void pr_module_train(pr_module *m, int on)
{
    m->training = on;
    if (on)
        pr_module_set_exec(m, NULL);
    for (int i = 0; i < m->nchildren; i++)
        pr_module_train(m->children[i], on);
}

int pr_module_collect_activity(pr_module *m, int on)
{
    m->activity.on = on;
    if (on) {
        pr_tensor_release(m->activity.sum);
        pr_tensor_release(m->activity.zeros);
        m->activity.sum = m->activity.zeros = NULL;
        m->activity.count = 0;
    }
    for (int i = 0; i < m->nchildren; i++)
        pr_module_collect_activity(m->children[i], on);
    return PR_OK;
}

static int walk(pr_module *m, char *path, size_t len, size_t cap, pr_module_visit_fn fn, void *ctx)
{
    int rc = fn(m, path, ctx);
    for (int i = 0; rc == PR_OK && i < m->nchildren; i++) {
        int w = snprintf(path + len, cap - len, len ? ".%d" : "%d", i);
        if (w < 0 || (size_t)w >= cap - len)
            return pr_error("module tree too deep");
        rc = walk(m->children[i], path, len + (size_t)w, cap, fn, ctx);
        path[len] = '\0';
    }
    return rc;
}

int pr_module_walk(pr_module *m, pr_module_visit_fn fn, void *ctx)
{
    char path[512] = "";
    return walk(m, path, 0, sizeof path, fn, ctx);
}

/* ---- pr_module_load_state ---- */

typedef struct {
    int count, strict, params; /* params: this walk loads parameters (else buffers) */
    const char *const *names;
    pr_tensor *const *tensors;
    char *seen;
    char msg[1024];            /* the problems, "; "-separated (truncated past its size) */
} load_ctx;

static void load_problem(load_ctx *c, const char *fmt, ...) PR_PRINTF(2, 3);
static void load_problem(load_ctx *c, const char *fmt, ...)
{
    size_t len = strlen(c->msg);
    if (len && len + 2 < sizeof c->msg) {
        strcpy(c->msg + len, "; ");
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg + len, sizeof c->msg - len, fmt, ap);
    va_end(ap);
}

static int load_find(const load_ctx *c, const char *name)
{
    for (int i = 0; i < c->count; i++)
        if (strcmp(c->names[i], name) == 0)
            return i;
    return -1;
}

/* Marks entry i seen; whether its shape is t's (else notes the problem). */
static int load_shape_ok(load_ctx *c, int i, const pr_tensor *t)
{
    char a[96], b[96];
    c->seen[i] = 1;
    if (pr_tensor_same_shape(c->tensors[i], t))
        return 1;
    load_problem(c, "'%s' has shape %s, the model expects %s", c->names[i],
                 pr_tensor_shape_str(c->tensors[i], a, sizeof a), pr_tensor_shape_str(t, b, sizeof b));
    return 0;
}

/* Loads one tensor `name` into t; for a parameter also "<name>_mask". */
static int load_one(load_ctx *c, const char *name, pr_tensor *t)
{
    char mname[600];
    int i = load_find(c, name);
    if (i < 0) {
        if (c->strict)
            load_problem(c, "missing entry '%s'", name);
        return PR_OK;
    }
    if (!load_shape_ok(c, i, t))
        return PR_OK;
    if (pr_tensor_copy_(t, c->tensors[i]) < 0)
        return PR_EINVAL;
    if (!c->params || (size_t)snprintf(mname, sizeof mname, "%s_mask", name) >= sizeof mname ||
        (i = load_find(c, mname)) < 0)
        return PR_OK;
    return load_shape_ok(c, i, t) ? pr_param_set_mask(t, c->tensors[i]) : PR_OK;
}

static int load_visit(pr_module *m, const char *path, void *ctx)
{
    load_ctx *c = ctx;
    int n = c->params ? m->nparams : m->nbuffers;
    for (int k = 0; k < n; k++) {
        const char *local = c->params ? m->param_names[k] : m->buffer_names[k];
        char name[560];
        if ((size_t)snprintf(name, sizeof name, "%s%s%s", path, *path ? "." : "", local) >= sizeof name)
            return pr_error("load_state_dict: name too long under '%s'", path);
        int rc = load_one(c, name, c->params ? m->params[k] : m->buffers[k]);
        if (rc < 0)
            return rc;
    }
    return PR_OK;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int pr_module_load_state(pr_module *m, int count, const char *const *names,
                         pr_tensor *const *tensors, int strict)
{
    load_ctx c = { .count = count, .strict = strict, .params = 1, .names = names, .tensors = tensors };
    if (count < 0 || (count > 0 && (!names || !tensors)))
        return pr_error("load_state_dict: bad entry list");
    if (!(c.seen = calloc((size_t)count + 1, 1)))
        return pr_error_code(PR_ENOMEM, "load_state_dict: out of memory");
    int rc = pr_module_walk(m, load_visit, &c);
    c.params = 0;
    if (rc == PR_OK)
        rc = pr_module_walk(m, load_visit, &c);
    if (rc == PR_OK && strict) {
        const char **extra = malloc(((size_t)count + 1) * sizeof *extra);
        int n = 0;
        static const char tail[] = "num_batches_tracked";
        for (int i = 0; extra && i < count; i++) {
            size_t len = strlen(names[i]);
            if (!c.seen[i] && !(len >= sizeof tail - 1 && !strcmp(names[i] + len - (sizeof tail - 1), tail)))
                extra[n++] = names[i];
        }
        if (extra) {
            qsort(extra, (size_t)n, sizeof *extra, cmp_names);
            for (int i = 0; i < n; i++)
                load_problem(&c, "unexpected entry '%s'", extra[i]);
        } else {
            rc = pr_error_code(PR_ENOMEM, "load_state_dict: out of memory");
        }
        free(extra);
    }
    free(c.seen);
    if (rc == PR_OK && c.msg[0])
        rc = pr_error("load_state_dict: %s", c.msg);
    return rc;
}

static pr_tensor *clone_with_mask(pr_tensor *t)
{
    pr_tensor *c = pr_tensor_clone(t);
    if (!c)
        return NULL;
    c->requires_grad = t->requires_grad;
    if (t->mask) {
        c->mask = pr_tensor_clone(t->mask);
        if (!c->mask) {
            pr_tensor_release(c);
            return NULL;
        }
    }
    return c;
}

pr_module *pr_module_clone(pr_module *m)
{
    pr_module *c = pr_module_new_raw(m->vt);
    if (!c)
        return NULL;
    c->training = m->training;
    memcpy(c->cfg, m->cfg, sizeof c->cfg);
    memcpy(c->fcfg, m->fcfg, sizeof c->fcfg);
    for (int i = 0; i < m->nparams; i++) {
        pr_tensor *t = clone_with_mask(m->params[i]);
        if (!t || pr_module_add_param(c, m->param_names[i], t) < 0)
            goto fail;
        t->requires_grad = m->params[i]->requires_grad;
    }
    for (int i = 0; i < m->nbuffers; i++) {
        pr_tensor *t = clone_with_mask(m->buffers[i]);
        if (!t || pr_module_add_buffer(c, m->buffer_names[i], t) < 0)
            goto fail;
    }
    for (int i = 0; i < m->nchildren; i++) {
        pr_module *k = pr_module_clone(m->children[i]);
        int rc = k ? pr_module_add_child(c, k) : PR_ENOMEM;
        pr_module_release(k);
        if (rc < 0)
            goto fail;
    }
    return c;
fail:
    pr_module_release(c);
    return NULL;
}

int pr_param_set_mask(pr_tensor *param, pr_tensor *mask)
{
    if (!mask) {
        pr_tensor_release(param->mask);
        param->mask = NULL;
        return PR_OK;
    }
    if (!pr_tensor_same_shape(param, mask)) {
        char a[96], b[96];
        return pr_error("set_mask: mask %s does not match parameter %s",
                        pr_tensor_shape_str(mask, a, sizeof a), pr_tensor_shape_str(param, b, sizeof b));
    }
    pr_tensor *m = pr_tensor_to(mask, PR_FLOAT32); /* private contiguous 0/1 copy */
    if (!m)
        return PR_ENOMEM;
    float *d = pr_tensor_f32(m);
    for (int64_t i = 0, n = pr_tensor_numel(m); i < n; i++)
        d[i] = d[i] != 0.0f ? 1.0f : 0.0f;
    pr_tensor_release(param->mask);
    param->mask = m;
    pr_param_apply_mask(param);
    return PR_OK;
}

void pr_param_apply_mask(pr_tensor *param)
{
    if (!param->mask || param->dtype != PR_FLOAT32 || !pr_tensor_is_contiguous(param))
        return;
    pr_tensor_written(param);
    float *w = pr_tensor_f32(param);
    const float *k = pr_tensor_f32(param->mask);
    for (int64_t i = 0, n = pr_tensor_numel(param); i < n; i++)
        w[i] *= k[i];
    param->masked_at = param->storage->version;
    param->mask_at = param->mask->storage->version;
    if (param->grad && param->grad->dtype == PR_FLOAT32 && pr_tensor_is_contiguous(param->grad)) {
        float *g = pr_tensor_f32(param->grad);
        for (int64_t i = 0, n = pr_tensor_numel(param); i < n; i++)
            g[i] *= k[i];
    }
}
