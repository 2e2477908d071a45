/* layers.c: the leaf layers (Linear, Conv2d, BatchNorm, activations, pooling, Dropout, Flatten,
 * Identity). Each is a vtable over the generic pr_module (module.h); forward is made of ops, so
 * autograd comes for free, and the fused ops (conv2d, batch_norm, pools) carry the speed. */
#include <math.h>
#include <stdio.h>

#include "../module.h"
#include "../ops.h"
#include "../rng.h"

static char *describe_shape(const pr_tensor *t, char *buf, size_t n)
{
    return pr_tensor_shape_str(t, buf, n);
}

/* U(-bound, bound) in place: PyTorch's default kaiming_uniform_(a=sqrt(5)) gives
 * bound = 1/sqrt(fan_in) for weights and biases alike. */
static pr_tensor *uniform_tensor(int ndim, const int64_t *shape, double bound)
{
    pr_tensor *t = pr_tensor_empty(PR_FLOAT32, ndim, shape);
    if (!t)
        return NULL;
    float *d = pr_tensor_f32(t);
    for (int64_t i = 0, n = pr_tensor_numel(t); i < n; i++)
        d[i] = (float)((2.0 * pr_rng_uniform() - 1.0) * bound);
    return t;
}

static int need_positive(pr_module *m, int idx)
{
    if (m->cfg[idx] <= 0)
        return pr_error("%s: option '%s' must be a positive integer (got %lld)", m->vt->kind,
                        m->vt->cfg_names[idx], (long long)m->cfg[idx]);
    return PR_OK;
}

static void default_cfg(pr_module *m, int idx, int64_t v) { if (m->cfg[idx] < 0) m->cfg[idx] = v; }
static void default_fcfg(pr_module *m, int idx, double v) { if (isnan(m->fcfg[idx])) m->fcfg[idx] = v; }

/* ---- Linear: cfg in, out, bias ---- */
static const char *const linear_cfg[] = {"in", "out", "bias", NULL};

static int linear_init(pr_module *m)
{
    default_cfg(m, 2, 1);
    if (need_positive(m, 0) < 0 || need_positive(m, 1) < 0)
        return PR_EINVAL;
    int64_t shape[2] = {m->cfg[1], m->cfg[0]};
    double bound = 1.0 / sqrt((double)m->cfg[0]);
    if (pr_module_add_param(m, "weight", uniform_tensor(2, shape, bound)) < 0)
        return PR_ENOMEM;
    if (m->cfg[2] && pr_module_add_param(m, "bias", uniform_tensor(1, &shape[0], bound)) < 0)
        return PR_ENOMEM;
    return PR_OK;
}

/* relu: the fused activation (inference, see pr_module_vt.forward_relu) */
static pr_tensor *linear_run(pr_module *m, pr_tensor *x, int relu)
{
    pr_tensor *w = m->params[0];
    int64_t in = w->shape[1];
    if (x->ndim != 2 || x->shape[1] != in) {
        char b[96];
        pr_error("Linear(%lld -> %lld): expected input [N,%lld], got %s", (long long)in,
                 (long long)w->shape[0], (long long)in, describe_shape(x, b, sizeof b));
        return NULL;
    }
    pr_opargs a = {.i = {relu}, .ni = 1};
    pr_tensor *in_[3] = {x, w, m->nparams > 1 ? m->params[1] : NULL};
    return pr_op_call(PR_OP_linear, in_, m->nparams > 1 ? 3 : 2, &a);
}

static pr_tensor *linear_forward(pr_module *m, pr_tensor *x)
{
    return linear_run(m, x, 0);
}

static pr_tensor *linear_forward_relu(pr_module *m, pr_tensor *x)
{
    return linear_run(m, x, 1);
}

const pr_module_vt pr_linear_vt = {"Linear", linear_cfg, NULL, linear_forward, linear_init,
                                   linear_forward_relu, NULL};

/* ---- Conv2d: cfg in, out, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, bias ---- */
static const char *const conv_cfg[] = {"in", "out", "kh", "kw", "stride_h", "stride_w", "pad_h",
                                       "pad_w", "dil_h", "dil_w", "groups", "bias", NULL};

static int conv_init(pr_module *m)
{
    default_cfg(m, 3, m->cfg[2]);
    default_cfg(m, 4, 1);
    default_cfg(m, 5, m->cfg[4]);
    default_cfg(m, 6, 0);
    default_cfg(m, 7, m->cfg[6]);
    default_cfg(m, 8, 1);
    default_cfg(m, 9, m->cfg[8]);
    default_cfg(m, 10, 1);
    default_cfg(m, 11, 1);
    static const int positive[] = {0, 1, 2, 3, 4, 5, 8, 9, 10};
    for (size_t i = 0; i < sizeof positive / sizeof positive[0]; i++)
        if (need_positive(m, positive[i]) < 0)
            return PR_EINVAL;
    if (m->cfg[6] < 0 || m->cfg[7] < 0)
        return pr_error("Conv2d: padding must not be negative");
    int64_t in = m->cfg[0], out = m->cfg[1], g = m->cfg[10];
    if (in % g || out % g)
        return pr_error("Conv2d: in (%lld) and out (%lld) must both be divisible by groups (%lld)",
                        (long long)in, (long long)out, (long long)g);
    int64_t shape[4] = {out, in / g, m->cfg[2], m->cfg[3]};
    double bound = 1.0 / sqrt((double)(shape[1] * shape[2] * shape[3]));
    if (pr_module_add_param(m, "weight", uniform_tensor(4, shape, bound)) < 0)
        return PR_ENOMEM;
    if (m->cfg[11] && pr_module_add_param(m, "bias", uniform_tensor(1, &out, bound)) < 0)
        return PR_ENOMEM;
    return PR_OK;
}

static pr_tensor *conv_run(pr_module *m, pr_tensor *x, int relu)
{
    pr_tensor *w = m->params[0];
    int64_t cin = w->shape[1] * m->cfg[10];
    if (x->ndim != 4 || x->shape[1] != cin) {
        char b[96];
        pr_error("Conv2d(%lld -> %lld, %lldx%lld): expected input [N,%lld,H,W], got %s",
                 (long long)cin, (long long)w->shape[0], (long long)w->shape[2],
                 (long long)w->shape[3], (long long)cin, describe_shape(x, b, sizeof b));
        return NULL;
    }
    pr_opargs a = {.ni = 8};
    for (int i = 0; i < 7; i++)
        a.i[i] = m->cfg[4 + i];
    a.i[7] = relu;
    pr_tensor *in[3] = {x, w, m->nparams > 1 ? m->params[1] : NULL};
    return pr_op_call(PR_OP_conv2d, in, m->nparams > 1 ? 3 : 2, &a);
}

static pr_tensor *conv_forward(pr_module *m, pr_tensor *x) { return conv_run(m, x, 0); }
static pr_tensor *conv_forward_relu(pr_module *m, pr_tensor *x) { return conv_run(m, x, 1); }

const pr_module_vt pr_conv2d_vt = {"Conv2d", conv_cfg, NULL, conv_forward, conv_init,
                                   conv_forward_relu, NULL};

/* ---- BatchNorm1d / BatchNorm2d: cfg features; fcfg eps, momentum ---- */
static const char *const bn_cfg[] = {"features", NULL};
static const char *const bn_fcfg[] = {"eps", "momentum", NULL};

static int bn_init(pr_module *m)
{
    default_fcfg(m, 0, 1e-5);
    default_fcfg(m, 1, 0.1);
    if (need_positive(m, 0) < 0)
        return PR_EINVAL;
    int64_t c = m->cfg[0];
    if (pr_module_add_param(m, "weight", pr_tensor_full(PR_FLOAT32, 1, &c, 1.0)) < 0 ||
        pr_module_add_param(m, "bias", pr_tensor_zeros(PR_FLOAT32, 1, &c)) < 0 ||
        pr_module_add_buffer(m, "running_mean", pr_tensor_zeros(PR_FLOAT32, 1, &c)) < 0 ||
        pr_module_add_buffer(m, "running_var", pr_tensor_full(PR_FLOAT32, 1, &c, 1.0)) < 0)
        return PR_ENOMEM;
    return PR_OK;
}

static pr_tensor *bn_forward(pr_module *m, pr_tensor *x)
{
    int want = m->vt->kind[9] == '1' ? 2 : 4; /* "BatchNorm1d" / "BatchNorm2d" */
    int64_t c = m->params[0]->shape[0];
    if (!((x->ndim == want || (want == 2 && x->ndim == 3)) && x->shape[1] == c)) {
        char b[96];
        pr_error("%s(%lld): expected input [N,%lld%s], got %s", m->vt->kind, (long long)c,
                 (long long)c, want == 4 ? ",H,W" : "", describe_shape(x, b, sizeof b));
        return NULL;
    }
    pr_opargs a = {.ni = 1};
    a.i[0] = m->training;
    a.f[0] = m->fcfg[0];
    a.f[1] = m->fcfg[1];
    a.aux[0] = m->buffers[0];
    a.aux[1] = m->buffers[1];
    pr_tensor *in[3] = {x, m->params[0], m->params[1]};
    return pr_op_call(PR_OP_batch_norm, in, 3, &a);
}

const pr_module_vt pr_batchnorm1d_vt = {"BatchNorm1d", bn_cfg, bn_fcfg, bn_forward, bn_init, NULL, NULL};
const pr_module_vt pr_batchnorm2d_vt = {"BatchNorm2d", bn_cfg, bn_fcfg, bn_forward, bn_init, NULL, NULL};

/* ---- activations ---- */
static pr_tensor *relu_forward(pr_module *m, pr_tensor *x) { return pr_relu(x); }
static pr_tensor *sigmoid_forward(pr_module *m, pr_tensor *x) { return pr_sigmoid(x); }
static pr_tensor *tanh_forward(pr_module *m, pr_tensor *x) { return pr_tanh(x); }
static pr_tensor *identity_forward(pr_module *m, pr_tensor *x)
{
    pr_tensor_retain(x);
    return x;
}

static const char *const slope_fcfg[] = {"slope", NULL};
static int leaky_init(pr_module *m)
{
    default_fcfg(m, 0, 0.01);
    return PR_OK;
}
static pr_tensor *leaky_forward(pr_module *m, pr_tensor *x) { return pr_leaky_relu(x, m->fcfg[0]); }

static const char *const dim_cfg[] = {"dim", NULL};
static int dim_init(pr_module *m)
{
    default_cfg(m, 0, 1);
    return PR_OK;
}
static int check_dim(pr_module *m, pr_tensor *x)
{
    if (m->cfg[0] >= x->ndim) {
        char b[96];
        return pr_error("%s(dim=%lld): input %s has only %d dims", m->vt->kind,
                        (long long)m->cfg[0] + 1, describe_shape(x, b, sizeof b), x->ndim);
    }
    return PR_OK;
}
static pr_tensor *softmax_forward(pr_module *m, pr_tensor *x)
{
    return check_dim(m, x) < 0 ? NULL : pr_softmax(x, (int)m->cfg[0]);
}
static pr_tensor *logsoftmax_forward(pr_module *m, pr_tensor *x)
{
    return check_dim(m, x) < 0 ? NULL : pr_log_softmax(x, (int)m->cfg[0]);
}

const pr_module_vt pr_relu_vt = {"ReLU", NULL, NULL, relu_forward, NULL, NULL, NULL};
const pr_module_vt pr_leakyrelu_vt = {"LeakyReLU", NULL, slope_fcfg, leaky_forward, leaky_init, NULL, NULL};
const pr_module_vt pr_sigmoid_vt = {"Sigmoid", NULL, NULL, sigmoid_forward, NULL, NULL, NULL};
const pr_module_vt pr_tanh_vt = {"Tanh", NULL, NULL, tanh_forward, NULL, NULL, NULL};
const pr_module_vt pr_softmax_vt = {"Softmax", dim_cfg, NULL, softmax_forward, dim_init, NULL, NULL};
const pr_module_vt pr_logsoftmax_vt = {"LogSoftmax", dim_cfg, NULL, logsoftmax_forward, dim_init, NULL, NULL};
const pr_module_vt pr_identity_vt = {"Identity", NULL, NULL, identity_forward, NULL, NULL, NULL};

/* ---- Dropout: fcfg p ---- */
static const char *const p_fcfg[] = {"p", NULL};
static int dropout_init(pr_module *m)
{
    default_fcfg(m, 0, 0.5);
    if (!(m->fcfg[0] >= 0.0 && m->fcfg[0] < 1.0))
        return pr_error("Dropout: p must be in [0, 1) (got %g)", m->fcfg[0]);
    return PR_OK;
}
static pr_tensor *dropout_forward(pr_module *m, pr_tensor *x)
{
    if (!m->training || m->fcfg[0] == 0.0)
        return identity_forward(m, x);
    pr_opargs a = {.ni = 1};
    a.i[0] = m->training;
    a.f[0] = m->fcfg[0];
    return pr_op_call(PR_OP_dropout, &x, 1, &a);
}
const pr_module_vt pr_dropout_vt = {"Dropout", NULL, p_fcfg, dropout_forward, dropout_init, NULL, NULL};

/* ---- Flatten: cfg start_dim (0-based, default 1) ---- */
static const char *const flatten_cfg[] = {"start_dim", NULL};
static pr_tensor *flatten_forward(pr_module *m, pr_tensor *x)
{
    int s = (int)m->cfg[0];
    if (s >= x->ndim) {
        char b[96];
        pr_error("Flatten(start_dim=%d): input %s has only %d dims", s + 1,
                 describe_shape(x, b, sizeof b), x->ndim);
        return NULL;
    }
    int64_t shape[PR_MAX_DIMS];
    for (int d = 0; d < s; d++)
        shape[d] = x->shape[d];
    shape[s] = 1;
    for (int d = s; d < x->ndim; d++)
        shape[s] *= x->shape[d];
    return pr_reshape(x, s + 1, shape);
}
const pr_module_vt pr_flatten_vt = {"Flatten", flatten_cfg, NULL, flatten_forward, dim_init, NULL, NULL};

/* ---- pooling: cfg kh, kw, stride_h, stride_w, pad_h, pad_w (stride defaults to kernel) ---- */
static const char *const pool_cfg[] = {"kh", "kw", "stride_h", "stride_w", "pad_h", "pad_w", NULL};
static int pool_init(pr_module *m)
{
    default_cfg(m, 1, m->cfg[0]);
    default_cfg(m, 2, m->cfg[0]);
    default_cfg(m, 3, m->cfg[2]);
    default_cfg(m, 4, 0);
    default_cfg(m, 5, m->cfg[4]);
    for (int i = 0; i < 4; i++)
        if (need_positive(m, i) < 0)
            return PR_EINVAL;
    if (2 * m->cfg[4] > m->cfg[0] || 2 * m->cfg[5] > m->cfg[1])
        return pr_error("%s: padding must be at most half the kernel size", m->vt->kind);
    return PR_OK;
}
/* relu: max pooling of relu(x) (see pr_module_vt.forward_after_relu) */
static pr_tensor *pool_run(pr_module *m, pr_tensor *x, int relu)
{
    if (x->ndim != 4) {
        char b[96];
        pr_error("%s: expected input [N,C,H,W], got %s", m->vt->kind, describe_shape(x, b, sizeof b));
        return NULL;
    }
    pr_opargs a = {.ni = 7};
    for (int i = 0; i < 6; i++)
        a.i[i] = m->cfg[i];
    a.i[6] = relu;
    return pr_op_call(m->vt->kind[0] == 'M' ? PR_OP_max_pool2d : PR_OP_avg_pool2d, &x, 1, &a);
}
static pr_tensor *pool_forward(pr_module *m, pr_tensor *x) { return pool_run(m, x, 0); }
static pr_tensor *maxpool_after_relu(pr_module *m, pr_tensor *x) { return pool_run(m, x, 1); }
static pr_tensor *gap_forward(pr_module *m, pr_tensor *x)
{
    if (x->ndim != 4) {
        char b[96];
        pr_error("GlobalAvgPool2d: expected input [N,C,H,W], got %s", describe_shape(x, b, sizeof b));
        return NULL;
    }
    pr_opargs a = {.ni = 6};
    a.i[0] = a.i[2] = x->shape[2];
    a.i[1] = a.i[3] = x->shape[3];
    return pr_op_call(PR_OP_avg_pool2d, &x, 1, &a);
}
const pr_module_vt pr_maxpool2d_vt = {"MaxPool2d", pool_cfg, NULL, pool_forward, pool_init, NULL,
                                      maxpool_after_relu};
const pr_module_vt pr_avgpool2d_vt = {"AvgPool2d", pool_cfg, NULL, pool_forward, pool_init, NULL, NULL};
const pr_module_vt pr_globalavgpool2d_vt = {"GlobalAvgPool2d", NULL, NULL, gap_forward, NULL, NULL, NULL};
