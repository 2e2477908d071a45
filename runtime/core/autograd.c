/* autograd.c: op dispatch from ops.def, node recording, and the reverse pass (see autograd.h). */
#include "autograd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const pr_op_info pr_ops[PR_OP_COUNT] = {
#define PR_OP(name, arity, file) { #name, arity, pr_fwd_##name, pr_bwd_##name },
#include "ops.def"
#undef PR_OP
};

static _Thread_local int grad_disabled;

/* ---- PRUNERT_PROFILE=1: wall time per op, forward and backward, printed to stderr at exit.
 * For finding where an epoch goes (it is how the direct first conv was found). Totals are
 * kept per process; ops called from several threads at once would mix their times. ---- */
static int profile_on = -1;
static double prof_fwd[PR_OP_COUNT], prof_bwd[PR_OP_COUNT];
static long prof_calls[PR_OP_COUNT];

static double prof_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void prof_report(void)
{
    double total = 0.0;
    for (int i = 0; i < PR_OP_COUNT; i++)
        total += prof_fwd[i] + prof_bwd[i];
    fprintf(stderr, "prunert profile (PRUNERT_PROFILE): seconds per op\n%-16s %9s %10s %10s %6s\n",
            "op", "calls", "forward", "backward", "share");
    for (int i = 0; i < PR_OP_COUNT; i++)
        if (prof_calls[i])
            fprintf(stderr, "%-16s %9ld %10.3f %10.3f %5.1f%%\n", pr_ops[i].name, prof_calls[i],
                    prof_fwd[i], prof_bwd[i], total > 0 ? 100.0 * (prof_fwd[i] + prof_bwd[i]) / total : 0.0);
    fprintf(stderr, "%-16s %9s %21.3f\n", "total", "", total);
}

static int profiling(void)
{
    if (profile_on < 0) {
        const char *e = getenv("PRUNERT_PROFILE");
        profile_on = e && *e && strcmp(e, "0") != 0;
        if (profile_on)
            atexit(prof_report);
    }
    return profile_on;
}

int pr_grad_enabled(void) { return !grad_disabled; }

int pr_set_grad_enabled(int on)
{
    int prev = !grad_disabled;
    grad_disabled = !on;
    return prev;
}

void pr_node_retain(pr_node *n)
{
    if (n)
        __atomic_add_fetch(&n->refcount, 1, __ATOMIC_RELAXED);
}

static void node_free_buffers(pr_node *n)
{
    for (int k = 0; k < n->nin; k++)
        pr_tensor_release(n->in[k]);
    free(n->in);
    n->in = NULL;
    n->nin = 0;
    for (int k = 0; k < PR_MAX_SAVED; k++) {
        pr_tensor_release(n->saved[k]);
        n->saved[k] = NULL;
    }
    pr_tensor_release(n->grad_acc);
    n->grad_acc = NULL;
    n->freed = 1;
}

/* Releasing a node releases its inputs, whose nodes may die in turn: a graph that never saw a
 * backward would free itself by recursion as deep as the graph. Instead the first release on a
 * thread drains a work list, and releases reached from inside it only add to the list. */
static _Thread_local pr_node *release_list;
static _Thread_local int releasing;

void pr_node_release(pr_node *n)
{
    if (!n || __atomic_sub_fetch(&n->refcount, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    pr_tensor_release(n->grad_acc);
    n->grad_acc = (pr_tensor *)release_list; /* reuse a dead field as the list link */
    release_list = n;
    if (releasing)
        return;
    releasing = 1;
    while (release_list) {
        pr_node *d = release_list;
        release_list = (pr_node *)d->grad_acc;
        d->grad_acc = NULL;
        node_free_buffers(d);
        free(d);
    }
    releasing = 0;
}

pr_tensor *pr_tensor_alias(pr_tensor *t)
{
    pr_tensor *a = calloc(1, sizeof *a);
    if (!a) {
        pr_error_code(PR_ENOMEM, "out of memory");
        return NULL;
    }
    a->refcount = 1;
    a->dtype = t->dtype;
    a->ndim = t->ndim;
    memcpy(a->shape, t->shape, sizeof a->shape);
    memcpy(a->stride, t->stride, sizeof a->stride);
    a->offset = t->offset;
    a->storage = t->storage;
    a->storage->refcount++;
    return a;
}

pr_tensor *pr_op_call(pr_op_id id, pr_tensor *const *in, int nin, const pr_opargs *a)
{
    static const pr_opargs noargs;
    const pr_op_info *op = &pr_ops[id];
    if (op->arity >= 0 && nin != op->arity) {
        pr_error("%s: expects %d inputs, got %d", op->name, op->arity, nin);
        return NULL;
    }
    for (int k = 0; k < nin; k++)
        if (!in[k]) {
            pr_error("%s: input %d is missing", op->name, k + 1);
            return NULL;
        }
    if (!a)
        a = &noargs;
    int record = 0;
    if (!grad_disabled)
        for (int k = 0; k < nin; k++)
            record |= in[k]->requires_grad;
    pr_tensor *saved[PR_MAX_SAVED] = {0};
    double t0 = profiling() ? prof_now() : 0.0;
    pr_tensor *out = op->forward(in, nin, a, record ? saved : NULL);
    if (profile_on) {
        prof_fwd[id] += prof_now() - t0;
        prof_calls[id]++;
    }
    if (!out || !record) {
        for (int k = 0; k < PR_MAX_SAVED; k++)
            pr_tensor_release(saved[k]);
        return out;
    }
    pr_node *n = calloc(1, sizeof *n);
    pr_tensor **ins = calloc((size_t)nin, sizeof *ins);
    if (!n || !ins) {
        free(n);
        free(ins);
        for (int k = 0; k < PR_MAX_SAVED; k++)
            pr_tensor_release(saved[k]);
        pr_tensor_release(out);
        pr_error_code(PR_ENOMEM, "%s: out of memory recording the graph", op->name);
        return NULL;
    }
    n->refcount = 1;
    n->op = id;
    n->nin = nin;
    n->in = ins;
    for (int k = 0; k < nin; k++) {
        ins[k] = in[k];
        pr_tensor_retain(in[k]);
    }
    n->args = *a;
    n->args.aux[0] = n->args.aux[1] = NULL; /* borrowed only for the forward's duration */
    memcpy(n->saved, saved, sizeof saved);
    n->out_ndim = out->ndim;
    memcpy(n->out_shape, out->shape, sizeof n->out_shape);
    /* out may be a view sharing storage with an input; its autograd state is its own. */
    out->requires_grad = 1;
    pr_node_release(out->grad_fn);
    out->grad_fn = n;
    return out;
}

/* Adds g into *acc (float32, same shape). An empty *acc gets g itself when g is private, else a
 * contiguous copy, so later additions never write into storage someone else still reads. */
static int accumulate(pr_tensor **acc, pr_tensor *g)
{
    if (!*acc) {
        /* A gradient nothing else holds (one reference to the tensor and to its storage) is
         * adopted as it is: copying it was ~5% of a LeNet-5 training step. */
        if (__atomic_load_n(&g->refcount, __ATOMIC_ACQUIRE) == 1 &&
            __atomic_load_n(&g->storage->refcount, __ATOMIC_ACQUIRE) == 1 &&
            !g->grad_fn && g->dtype == PR_FLOAT32 && pr_tensor_is_contiguous(g) && g->offset == 0) {
            pr_tensor_retain(g);
            *acc = g;
            return PR_OK;
        }
        *acc = pr_tensor_clone(g);
        return *acc ? PR_OK : PR_ENOMEM;
    }
    if (!pr_tensor_same_shape(*acc, g)) {
        char a[96], b[96];
        return pr_error("backward: gradient %s does not match %s",
                        pr_tensor_shape_str(g, b, sizeof b), pr_tensor_shape_str(*acc, a, sizeof a));
    }
    pr_tensor *gc = pr_tensor_contiguous(g);
    if (!gc)
        return PR_ENOMEM;
    float *d = pr_tensor_f32(*acc);
    const float *s = pr_tensor_f32(gc);
    int64_t n = pr_tensor_numel(gc);
    for (int64_t i = 0; i < n; i++)
        d[i] += s[i];
    pr_tensor_release(gc);
    return PR_OK;
}

/* Leaf accumulation honours the leaf's mask: a pruned weight's gradient is exactly zero. */
static int accumulate_leaf(pr_tensor *leaf, pr_tensor *g)
{
    if (leaf->grad && leaf->grad->dtype != PR_FLOAT32)
        return pr_error("backward: .grad of a leaf is not float32");
    int rc = accumulate(&leaf->grad, g);
    if (rc == PR_OK && leaf->mask) {
        float *d = pr_tensor_f32(leaf->grad);
        pr_tensor *m = pr_tensor_contiguous(leaf->mask);
        if (!m)
            return PR_ENOMEM;
        const float *mk = pr_tensor_f32(m);
        int64_t n = pr_tensor_numel(leaf->grad);
        for (int64_t i = 0; i < n; i++)
            if (mk[i] == 0.0f)
                d[i] = 0.0f;
        pr_tensor_release(m);
    }
    return rc;
}

/* Depth-first post-order over grad_fn links (iterative: deep graphs must not blow the C stack). */
typedef struct { pr_node **v; size_t n, cap; } node_vec;

static int vec_push(node_vec *s, pr_node *n)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        pr_node **v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return PR_ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = n;
    return PR_OK;
}

static int topo_order(pr_node *root, node_vec *order)
{
    node_vec stack = {0};
    int rc = vec_push(&stack, root);
    root->pending = 1; /* 1 = on stack, expanded later; 2 = children pushed; 3 = emitted */
    while (rc == PR_OK && stack.n) {
        pr_node *n = stack.v[stack.n - 1];
        if (n->pending == 1) {
            n->pending = 2;
            for (int k = 0; k < n->nin && rc == PR_OK; k++) {
                pr_node *c = n->in[k]->grad_fn;
                if (c && !c->freed && c->pending == 0) {
                    c->pending = 1;
                    rc = vec_push(&stack, c);
                }
            }
        } else {
            stack.n--;
            if (n->pending == 2) {
                n->pending = 3;
                rc = vec_push(order, n);
                /* pr_backward frees a node's inputs as soon as it is done, which may drop the
                 * last reference to a node still to be walked: hold each one until the end */
                if (rc == PR_OK)
                    pr_node_retain(n);
            }
        }
    }
    free(stack.v);
    return rc;
}

int pr_backward(pr_tensor *root, pr_tensor *grad)
{
    if (!root->requires_grad)
        return pr_error("backward: the tensor does not require grad and has no graph");
    pr_tensor *seed;
    if (grad) {
        if (!pr_tensor_same_shape(grad, root)) {
            char a[96], b[96];
            return pr_error("backward: gradient %s does not match output %s",
                            pr_tensor_shape_str(grad, a, sizeof a), pr_tensor_shape_str(root, b, sizeof b));
        }
        seed = pr_tensor_to(grad, PR_FLOAT32);
    } else {
        if (pr_tensor_numel(root) != 1) {
            char a[96];
            return pr_error("backward: output %s is not a scalar; pass a gradient of the same shape",
                            pr_tensor_shape_str(root, a, sizeof a));
        }
        seed = pr_tensor_full(PR_FLOAT32, root->ndim, root->shape, 1.0);
    }
    if (!seed)
        return PR_ENOMEM;
    if (!root->grad_fn) { /* a leaf: backward of itself */
        int rc = accumulate_leaf(root, seed);
        pr_tensor_release(seed);
        return rc;
    }
    if (root->grad_fn->freed) {
        pr_tensor_release(seed);
        return pr_error("backward: the graph was already freed by an earlier backward");
    }
    node_vec order = {0};
    int rc = topo_order(root->grad_fn, &order);
    if (rc == PR_OK)
        rc = accumulate(&root->grad_fn->grad_acc, seed);
    pr_tensor_release(seed);
    /* order is post-order (inputs before users): walk it backwards. */
    for (size_t j = order.n; j-- > 0 && rc == PR_OK;) {
        pr_node *n = order.v[j];
        pr_tensor *gout = n->grad_acc;
        if (!gout)
            continue; /* nothing flowed here */
        pr_tensor *gin[16] = {0};
        pr_tensor **gv = n->nin <= 16 ? gin : calloc((size_t)n->nin, sizeof *gv);
        if (!gv) {
            rc = PR_ENOMEM;
            break;
        }
        double t0 = profiling() ? prof_now() : 0.0;
        rc = pr_ops[n->op].backward(n, gout, gv);
        if (profile_on)
            prof_bwd[n->op] += prof_now() - t0;
        for (int k = 0; k < n->nin; k++) {
            pr_tensor *x = n->in[k];
            if (rc == PR_OK && gv[k] && x->requires_grad) {
                if (x->grad_fn && !x->grad_fn->freed)
                    rc = accumulate(&x->grad_fn->grad_acc, gv[k]);
                else if (!x->grad_fn)
                    rc = accumulate_leaf(x, gv[k]);
            }
            pr_tensor_release(gv[k]);
        }
        if (gv != gin)
            free(gv);
        /* Every user of this node's output came earlier in the walk, so its gradient, saved
         * buffers and inputs are done with: free them now rather than after the whole walk,
         * as PyTorch does. The early layers' activations and gradients are the largest and are
         * reached last, so this lowers the peak (LeNet at batch 256: their inputs and gradients
         * no longer all coexist with the first convolution's backward). */
        if (rc == PR_OK)
            node_free_buffers(n);
    }
    /* Free the rest of the graph: saved buffers and the links to inputs, as PyTorch does
     * without retain_graph. Nodes themselves die with the tensors that point at them, but not
     * before the references taken in the walk are dropped here. */
    for (size_t j = 0; j < order.n; j++) {
        order.v[j]->pending = 0;
        node_free_buffers(order.v[j]);
    }
    for (size_t j = 0; j < order.n; j++)
        pr_node_release(order.v[j]);
    free(order.v);
    return rc;
}

pr_tensor *pr_sum_to_shape(pr_tensor *g, int ndim, const int64_t *shape)
{
    /* Right-align shapes; every output element sums the g elements that map onto it. */
    pr_tensor *out = pr_tensor_zeros(PR_FLOAT32, ndim, shape);
    pr_tensor *gc = out ? pr_tensor_contiguous(g) : NULL;
    if (!gc) {
        pr_tensor_release(out);
        return NULL;
    }
    int gd = gc->ndim;
    if (ndim > gd) {
        pr_tensor_release(gc);
        pr_tensor_release(out);
        pr_error("sum_to_shape: target has more dims than the gradient");
        return NULL;
    }
    int64_t ostride[PR_MAX_DIMS]; /* out's stride aligned to g's dims, 0 where broadcast */
    int64_t s = 1;
    for (int d = gd - 1; d >= 0; d--) {
        int od = d - (gd - ndim);
        if (od < 0 || shape[od] == 1) {
            ostride[d] = 0;
        } else {
            if (shape[od] != gc->shape[d]) {
                char a[96];
                pr_error("sum_to_shape: gradient %s cannot reduce to the input's shape",
                         pr_tensor_shape_str(gc, a, sizeof a));
                pr_tensor_release(gc);
                pr_tensor_release(out);
                return NULL;
            }
            ostride[d] = s;
        }
        if (od >= 0)
            s *= shape[od];
    }
    const float *src = pr_tensor_f32(gc);
    float *dst = pr_tensor_f32(out);
    int64_t n = pr_tensor_numel(gc), idx[PR_MAX_DIMS] = {0}, o = 0;
    for (int64_t i = 0; i < n; i++) {
        dst[o] += src[i];
        for (int d = gd - 1; d >= 0; d--) {
            o += ostride[d];
            if (++idx[d] < gc->shape[d])
                break;
            o -= ostride[d] * idx[d];
            idx[d] = 0;
        }
    }
    pr_tensor_release(gc);
    return out;
}
