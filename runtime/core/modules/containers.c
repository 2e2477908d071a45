/* containers.c: Sequential, Residual (body + optional shortcut, summed) and Concat (children's
 * outputs joined along a dim, channels by default). Their children are modules like any other,
 * so a graph of them is a model a C host can run without Lua. */
#include "../module.h"
#include "../ops.h"

/* A layer followed by a ReLU runs as one pass when pr_module_fuses_relu says so (inference),
 * and a ReLU followed by max pooling as the pooling of relu(x) when pr_module_relu_fuses_into
 * says so (training too): LeNet-5's activations are written and read once instead of twice. */
static pr_tensor *sequential_forward(pr_module *m, pr_tensor *x)
{
    pr_tensor_retain(x);
    for (int i = 0; i < m->nchildren && x; i++) {
        pr_module *c = m->children[i];
        pr_tensor *y;
        pr_module *next = i + 1 < m->nchildren ? m->children[i + 1] : NULL;
        if (next && pr_module_fuses_relu(c, next)) {
            y = pr_module_forward_relu(c, x);
            i++;
        } else if (next && pr_module_relu_fuses_into(c, next)) {
            y = next->vt->forward_after_relu(next, x);
            i++;
        } else {
            y = pr_module_forward(c, x);
        }
        pr_tensor_release(x);
        x = y;
    }
    return x;
}

/* Residual: children[0] is the body; children[1], when present, the shortcut (else identity). */
static const char *const residual_cfg[] = {"shortcut", NULL};
static pr_tensor *residual_forward(pr_module *m, pr_tensor *x)
{
    if (m->nchildren < 1) {
        pr_error("Residual: has no body");
        return NULL;
    }
    pr_tensor *body = pr_module_forward(m->children[0], x);
    if (!body)
        return NULL;
    pr_tensor *skip = x;
    if (m->nchildren > 1) {
        skip = pr_module_forward(m->children[1], x);
        if (!skip) {
            pr_tensor_release(body);
            return NULL;
        }
    } else {
        pr_tensor_retain(skip);
    }
    pr_tensor *y = NULL;
    if (!pr_tensor_same_shape(body, skip)) {
        char a[96], b[96];
        pr_error("Residual: body output %s and shortcut output %s differ; they must match to be summed",
                 pr_tensor_shape_str(body, a, sizeof a), pr_tensor_shape_str(skip, b, sizeof b));
    } else {
        y = pr_add(body, skip);
    }
    pr_tensor_release(body);
    pr_tensor_release(skip);
    return y;
}

static const char *const concat_cfg[] = {"dim", NULL};
static int concat_init(pr_module *m)
{
    if (m->cfg[0] < 0)
        m->cfg[0] = 1;
    return PR_OK;
}
static pr_tensor *concat_forward(pr_module *m, pr_tensor *x)
{
    if (m->nchildren < 1) {
        pr_error("Concat: has no branches");
        return NULL;
    }
    pr_tensor *outs[64] = {0};
    if (m->nchildren > 64) {
        pr_error("Concat: at most 64 branches");
        return NULL;
    }
    int n = 0;
    pr_tensor *y = NULL;
    for (; n < m->nchildren; n++) {
        outs[n] = pr_module_forward(m->children[n], x);
        if (!outs[n])
            goto done;
    }
    y = pr_cat(outs, n, (int)m->cfg[0]);
done:
    for (int i = 0; i < n; i++)
        pr_tensor_release(outs[i]);
    return y;
}

const pr_module_vt pr_sequential_vt = {"Sequential", NULL, NULL, sequential_forward, NULL, NULL, NULL};
const pr_module_vt pr_residual_vt = {"Residual", residual_cfg, NULL, residual_forward, NULL, NULL, NULL};
const pr_module_vt pr_concat_vt = {"Concat", concat_cfg, NULL, concat_forward, concat_init, NULL, NULL};
