/* exec.h: sparse execution plans for Linear and Conv2d (module.h's pr_module_exec).
 *
 * A plan packs the layer's masked weight into one of sparse.h's formats and runs forward with
 * pr_sparse_linear (Linear) or im2col + pr_sparse_matmul_dense (Conv2d, groups == 1). It is a
 * snapshot: module.c uses it only while grad mode is off and drops it when the module goes
 * back to training. Before each run it packs the layer again if its weight, bias or mask was
 * replaced (load_state_dict, compaction) or written in place (copy_, fill_, set, an optimizer
 * step in eval mode: pr_storage.version) since, so it never runs an old layer. A C host that
 * writes a weight through its data pointer calls pr_tensor_written on it.
 *
 * Plan names: "dense" (no plan: the layer's own forward), "csr", "bsr1x4", "bsr4x1", "nm2:4"
 * (sparse.h's formats), and "direct" for Conv2d: a sparse direct convolution without im2col
 * (exec.c says why it is the fast one for small pruned convolutions).
 *
 * Ownership: `m` is borrowed; an installed plan is owned by the module (pr_module_set_exec).
 * Failures return a negative status / NULL with the message in pr_last_error().
 */
#ifndef PR_SPARSE_EXEC_H
#define PR_SPARSE_EXEC_H

#include "../module.h"

/* Builds a plan of format `name` for m (borrowed) without installing it. The caller owns the
 * result (install it with pr_module_set_exec, or free it with its ->free). NULL with a message
 * for an unknown name, a layer kind without plans, groups > 1, or a weight that does not fit
 * the format (nm2:4 needs at most 2 non-zeros in every group of 4 input columns). */
pr_module_exec *pr_sparse_exec_new(pr_module *m, const char *name);

/* Installs the plan `name` on m ("dense" removes any plan). m must be in eval mode: a plan
 * made while training would go stale at the next optimizer step. */
int pr_sparse_exec_set(pr_module *m, const char *name);

/* The name of m's plan, "dense" when it has none. Borrowed, static. */
const char *pr_sparse_exec_name(const pr_module *m);

/* 1 when m is a layer kind plans apply to (Linear; Conv2d with groups == 1). */
int pr_sparse_exec_supported(const pr_module *m);

#endif
