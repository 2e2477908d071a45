/* autograd.h: the op dispatch and the reverse-mode tape.
 *
 * Every differentiable op is one line of ops.def. Calling an op goes through pr_op_call(): it
 * runs the forward and, when grad mode is on and an input requires grad, records a node that
 * holds its inputs (owned references), its options and the buffers the forward chose to save.
 * pr_backward() walks the nodes reachable from a scalar in reverse topological order, calls each
 * backward, accumulates into leaves' .grad (masked by the leaf's mask, if any), and then frees
 * the graph's saved buffers.
 */
#ifndef PR_AUTOGRAD_H
#define PR_AUTOGRAD_H

#include "tensor.h"

#define PR_MAX_SAVED 4

typedef struct pr_opargs {
    int64_t i[PR_MAX_DIMS];  /* integer options (dims, sizes, flags) */
    int ni;                  /* how many of i[] are used, where the count matters */
    double f[4];             /* real options (slopes, bounds, eps, momentum) */
    pr_tensor *aux[2];       /* borrowed extra tensors that are not differentiated (running stats) */
} pr_opargs;

typedef enum {
#define PR_OP(name, arity, file) PR_OP_##name,
#include "ops.def"
#undef PR_OP
    PR_OP_COUNT
} pr_op_id;

typedef struct pr_node {
    int refcount;
    pr_op_id op;
    int nin;
    pr_tensor **in;                  /* owned references to the inputs */
    pr_opargs args;
    pr_tensor *saved[PR_MAX_SAVED];  /* owned; whatever the forward saved for the backward */
    int64_t out_shape[PR_MAX_DIMS];  /* the output's shape (the output itself is not held: no cycle) */
    int out_ndim;
    int freed;                       /* set once backward has released the buffers */
    /* bookkeeping for pr_backward */
    pr_tensor *grad_acc;
    int pending;
} pr_node;

/* Forward: computes the result (a new reference). `saved` is NULL when nothing will be
 * recorded; otherwise the forward may put owned references in saved[0..PR_MAX_SAVED-1].
 * in[] are borrowed. */
typedef pr_tensor *(*pr_fwd_fn)(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved);
/* Backward: given the gradient of the output (borrowed, contiguous, float32, output's shape),
 * sets gin[k] to a new reference shaped like n->in[k] for every k with n->in[k]->requires_grad
 * (others may be left NULL). Returns PR_OK or a negative status with a message. */
typedef int (*pr_bwd_fn)(const pr_node *n, pr_tensor *gout, pr_tensor **gin);

#define PR_OP(name, arity, file) \
    pr_tensor *pr_fwd_##name(pr_tensor *const *in, int nin, const pr_opargs *a, pr_tensor **saved); \
    int pr_bwd_##name(const pr_node *n, pr_tensor *gout, pr_tensor **gin);
#include "ops.def"
#undef PR_OP

typedef struct pr_op_info {
    const char *name;
    int arity;           /* -1 = variadic */
    pr_fwd_fn forward;
    pr_bwd_fn backward;
} pr_op_info;

extern const pr_op_info pr_ops[PR_OP_COUNT];

/* Runs op `id` on in[0..nin-1] (borrowed) and records it if needed. New reference or NULL. */
pr_tensor *pr_op_call(pr_op_id id, pr_tensor *const *in, int nin, const pr_opargs *a);

/* Grad mode (per thread). pr_set_grad_enabled returns the previous value. */
int pr_grad_enabled(void);
int pr_set_grad_enabled(int on);

/* Reverse pass from `root`. `grad` (borrowed) may be NULL only when root has one element. */
int pr_backward(pr_tensor *root, pr_tensor *grad);

void pr_node_retain(pr_node *n);
void pr_node_release(pr_node *n);

/* A new tensor header sharing t's storage, shape and strides, with no autograd state: for
 * saving an output in a node without a reference cycle, and for detach(). */
pr_tensor *pr_tensor_alias(pr_tensor *t);

/* Helper for backward functions: sums g (broadcast result) down to `ndim`/`shape`. New ref. */
pr_tensor *pr_sum_to_shape(pr_tensor *g, int ndim, const int64_t *shape);

#endif
