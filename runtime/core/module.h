/* module.h: layers as small C structs behind a vtable, and the containers that make a graph
 * of them (Sequential, Residual, Concat), so the graph is the runtime's own and a C host can run
 * a loaded model with no Lua.
 *
 * Every module has named parameters and buffers (owned tensor references) and named children.
 * A layer's configuration is a short list of named integers and reals described by its vtable:
 * that is what the model file stores and what `pr_module_from_config` rebuilds from, so a
 * loaded file never executes anything.
 *
 * Ownership: constructors return a new reference; pr_module_release drops one. Children are
 * owned by their container. Parameters are owned by the module; callers get borrowed pointers.
 */
#ifndef PR_MODULE_H
#define PR_MODULE_H

#include "tensor.h"

#define PR_MODULE_MAXCFG 12
#define PR_MODULE_MAXPARAM 4

typedef struct pr_module pr_module;

typedef struct pr_module_vt {
    const char *kind;                       /* "Linear", "Conv2d", ... (the file's type tag) */
    const char *const *cfg_names;           /* names of cfg[] entries, NULL-terminated */
    const char *const *fcfg_names;          /* names of fcfg[] entries, NULL-terminated (may be NULL) */
    /* Returns a new reference or NULL with a message naming the layer and the shapes. */
    pr_tensor *(*forward)(pr_module *m, pr_tensor *x);
    /* Allocates parameters/buffers for cfg[]/fcfg[] (already filled in) and initialises them. */
    int (*init)(pr_module *m);
    /* Optional: the forward followed by a ReLU in the same pass over the output, for inference
     * (called only with grad mode off). Sequential uses it for a layer followed by ReLU. */
    pr_tensor *(*forward_relu)(pr_module *m, pr_tensor *x);
    /* Optional: a ReLU then this module's forward, as one recorded op (MaxPool2d: max commutes
     * with ReLU, so the ReLU runs on the pooled output and its gradient rides on the pool's).
     * Sequential uses it for a ReLU followed by this module, in training too. */
    pr_tensor *(*forward_after_relu)(pr_module *m, pr_tensor *x);
} pr_module_vt;

/* Activity statistics a module gathers on its output while stats collection is on (for the
 * neuron-activity and APoZ criteria): per channel (dim 1) sums over every other position. */
typedef struct pr_activity {
    int on;
    pr_tensor *sum;       /* float32 [C]: sum of |output| */
    pr_tensor *zeros;     /* int64 [C]: count of outputs exactly 0 */
    double count;         /* positions per channel seen */
} pr_activity;

/* An execution plan: another way to run a layer's forward for inference (a sparse kernel over a
 * packed copy of the weight, say). It is used only while grad mode is off, because it records
 * nothing on the tape; it is dropped when the module goes back to training (its packed weights
 * would go stale) and is not cloned. `name` is what model files and reports record. */
typedef struct pr_module_exec {
    const char *name;
    /* Returns a new reference or NULL with a message; `relu`: apply a ReLU to the output in
     * the same pass (the layer is followed by one, see pr_module_vt.forward_relu). */
    pr_tensor *(*forward)(pr_module *m, struct pr_module_exec *e, pr_tensor *x, int relu);
    void (*free)(struct pr_module_exec *e);   /* frees e and its state */
    void *state;
} pr_module_exec;

struct pr_module {
    const pr_module_vt *vt;
    int refcount;
    int training;
    int64_t cfg[PR_MODULE_MAXCFG];
    double fcfg[4];
    /* parameters (learnable) then buffers (running statistics), by local name */
    int nparams;
    const char *param_names[PR_MODULE_MAXPARAM];
    pr_tensor *params[PR_MODULE_MAXPARAM];
    int nbuffers;
    const char *buffer_names[PR_MODULE_MAXPARAM];
    pr_tensor *buffers[PR_MODULE_MAXPARAM];
    /* children (containers only) */
    int nchildren;
    pr_module **children;
    pr_activity activity;
    pr_module_exec *exec;   /* owned; NULL = the layer's own forward */
};

/* Registry of kinds, for building from a config (model files) and for Lua constructors. */
const pr_module_vt *pr_module_kind(const char *kind);
/* Makes a module of `kind` with cfg/fcfg values given by name (unnamed entries default as
 * each kind documents); children are attached afterwards with pr_module_add_child. */
pr_module *pr_module_new(const char *kind, int n, const char *const *names, const double *values);
pr_module *pr_module_new_raw(const pr_module_vt *vt); /* for constructors of layer kinds */

void pr_module_retain(pr_module *m);
void pr_module_release(pr_module *m);                     /* NULL-safe */
int pr_module_add_child(pr_module *m, pr_module *child); /* takes a new reference to child */

pr_tensor *pr_module_forward(pr_module *m, pr_tensor *x);
/* Whether m followed by `next` runs as one fused pass: grad mode is off, next is a ReLU, m can
 * fuse one (its forward_relu), and neither gathers activity statistics (which are taken on each
 * module's own output). pr_module_forward_relu then runs m with the ReLU fused. */
int pr_module_fuses_relu(const pr_module *m, const pr_module *next);
pr_tensor *pr_module_forward_relu(pr_module *m, pr_tensor *x);
/* Whether a ReLU `relu` followed by `next` runs as next's forward_after_relu: neither gathers
 * activity statistics; grad mode may be on. */
int pr_module_relu_fuses_into(const pr_module *relu, const pr_module *next);
void pr_module_train(pr_module *m, int on);              /* recursive */

/* Parameter and buffer slots: pr_module_param_slot returns the address of the owned pointer so
 * a caller may replace a tensor (load_state_dict, compaction). */
int pr_module_add_param(pr_module *m, const char *name, pr_tensor *t);  /* takes t's reference */
int pr_module_add_buffer(pr_module *m, const char *name, pr_tensor *t); /* takes t's reference */
pr_tensor *pr_module_param(pr_module *m, const char *name);             /* borrowed or NULL */
pr_tensor *pr_module_buffer(pr_module *m, const char *name);            /* borrowed or NULL */

/* Walks the tree depth-first in registration order, calling fn with each module's dotted
 * path ("" for the root, "features.3" below it, 0-based indices as PyTorch). */
typedef int (*pr_module_visit_fn)(pr_module *m, const char *path, void *ctx);
int pr_module_walk(pr_module *m, pr_module_visit_fn fn, void *ctx);

/* Copies a state dict (names[i] -> tensors[i], count entries, borrowed) into m's parameters
 * and buffers by dotted name, as PyTorch's load_state_dict: values are copied into the
 * existing tensors (converted to their dtype), an entry "<param>_mask" sets that parameter's
 * mask. strict: a missing entry, an extra one (but PyTorch's "*num_batches_tracked") or a
 * wrongly shaped one is an error that lists them all ("load_state_dict: ...; ..."); what did
 * match is loaded all the same. Not strict: only wrong shapes are errors. */
int pr_module_load_state(pr_module *m, int count, const char *const *names,
                         pr_tensor *const *tensors, int strict);

/* A deep copy: same structure, cloned parameters, buffers and masks. */
pr_module *pr_module_clone(pr_module *m);

/* Mask helpers: set (a 0/1 float32 tensor of the parameter's shape, referenced) and apply. */
int pr_param_set_mask(pr_tensor *param, pr_tensor *mask /* NULL clears */);
void pr_param_apply_mask(pr_tensor *param); /* param *= mask, no-op without a mask */
/* Applies the mask again if param or its mask was written since it was last applied: every
 * module's forward calls it on its parameters, so a masked weight is zero in forward whatever
 * was written into it (PyTorch computes weight_orig * mask on each forward to the same end). */
void pr_param_ensure_masked(pr_tensor *param);

/* Installs an execution plan (taking ownership; NULL removes the current one). */
void pr_module_set_exec(pr_module *m, pr_module_exec *e);

/* Turns activity statistics collection on (resetting sums) or off, recursively. */
int pr_module_collect_activity(pr_module *m, int on);

#endif
