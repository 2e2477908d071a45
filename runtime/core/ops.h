/* ops.h: the tensor math API in C. Differentiable functions are thin wrappers over
 * pr_op_call() (autograd.h) so they record on the tape; the rest (comparisons, argmax, sorting,
 * selection) are plain. All return a new reference, or NULL with pr_last_error() set.
 * Arguments are borrowed. Dims are 0-based; a negative dim counts from the end.
 * Broadcasting follows NumPy. Float ops need float32 inputs unless said otherwise. */
#ifndef PR_OPS_H
#define PR_OPS_H

#include "autograd.h"

/* ---- differentiable (ops.def) ---- */
pr_tensor *pr_neg(pr_tensor *a);
pr_tensor *pr_abs(pr_tensor *a);
pr_tensor *pr_sqrt(pr_tensor *a);
pr_tensor *pr_exp(pr_tensor *a);
pr_tensor *pr_log(pr_tensor *a);
pr_tensor *pr_tanh(pr_tensor *a);
pr_tensor *pr_sigmoid(pr_tensor *a);
pr_tensor *pr_relu(pr_tensor *a);
pr_tensor *pr_leaky_relu(pr_tensor *a, double slope);
pr_tensor *pr_clamp(pr_tensor *a, double lo, double hi);
pr_tensor *pr_add(pr_tensor *a, pr_tensor *b);
pr_tensor *pr_sub(pr_tensor *a, pr_tensor *b);
pr_tensor *pr_mul(pr_tensor *a, pr_tensor *b);
pr_tensor *pr_div(pr_tensor *a, pr_tensor *b);
pr_tensor *pr_pow(pr_tensor *a, pr_tensor *b);
pr_tensor *pr_where(pr_tensor *cond, pr_tensor *a, pr_tensor *b);
pr_tensor *pr_matmul(pr_tensor *a, pr_tensor *b);
pr_tensor *pr_linear(pr_tensor *x, pr_tensor *w, pr_tensor *b /* may be NULL */);
pr_tensor *pr_sum(pr_tensor *a, int dim /* PR_ALL for everything */, int keepdim);
pr_tensor *pr_mean(pr_tensor *a, int dim, int keepdim);
pr_tensor *pr_max(pr_tensor *a, int dim, int keepdim);
pr_tensor *pr_min(pr_tensor *a, int dim, int keepdim);
pr_tensor *pr_reshape(pr_tensor *a, int ndim, const int64_t *shape);
pr_tensor *pr_transpose(pr_tensor *a, int d0, int d1);
pr_tensor *pr_permute(pr_tensor *a, const int *dims);
pr_tensor *pr_narrow(pr_tensor *a, int dim, int64_t start, int64_t len);
pr_tensor *pr_index_select(pr_tensor *a, int dim, pr_tensor *index /* int64 */);
pr_tensor *pr_cat(pr_tensor *const *ts, int n, int dim);
pr_tensor *pr_softmax(pr_tensor *a, int dim);
pr_tensor *pr_log_softmax(pr_tensor *a, int dim);

#define PR_ALL (-1000)   /* reduce over every element */

/* Scalar conveniences: a op number, through a 0-d tensor (so they are differentiable). */
pr_tensor *pr_add_scalar(pr_tensor *a, double s);
pr_tensor *pr_mul_scalar(pr_tensor *a, double s);
pr_tensor *pr_pow_scalar(pr_tensor *a, double p);

/* ---- not differentiable ---- */
typedef enum { PR_CMP_EQ, PR_CMP_NE, PR_CMP_LT, PR_CMP_LE, PR_CMP_GT, PR_CMP_GE } pr_cmp;
pr_tensor *pr_compare(pr_tensor *a, pr_tensor *b, pr_cmp op);   /* float32 0/1, broadcast */
pr_tensor *pr_sign(pr_tensor *a);
pr_tensor *pr_argmax(pr_tensor *a, int dim, int keepdim);        /* int64; dim PR_ALL = flat index */
pr_tensor *pr_argmin(pr_tensor *a, int dim, int keepdim);
pr_tensor *pr_norm(pr_tensor *a, double p, int dim, int keepdim); /* p = 1, 2, any > 0, or INFINITY */
/* Sorting along dim (ascending unless descending). Either output pointer may be NULL. */
int pr_sort(pr_tensor *a, int dim, int descending, pr_tensor **values, pr_tensor **indices);
/* The k largest (or smallest) along dim, sorted; O(n) selection then a sort of the k. */
int pr_topk(pr_tensor *a, int64_t k, int dim, int largest, pr_tensor **values, pr_tensor **indices);
/* k-th smallest (1-based k) along dim, by quickselect: expected O(n). */
int pr_kthvalue(pr_tensor *a, int64_t k, int dim, int keepdim, pr_tensor **values, pr_tensor **indices);
/* q in [0,1], linear interpolation as numpy's default; dim PR_ALL = over everything. */
pr_tensor *pr_quantile(pr_tensor *a, double q, int dim, int keepdim);
pr_tensor *pr_masked_select(pr_tensor *a, pr_tensor *mask);  /* 1-D copy of a where mask != 0 */
pr_tensor *pr_stack(pr_tensor *const *ts, int n, int dim);

/* In place (no autograd; refused on a tensor that requires grad while grad mode is on). */
int pr_add_(pr_tensor *a, pr_tensor *b, double alpha);  /* a += alpha * b (b broadcast) */
int pr_mul_(pr_tensor *a, pr_tensor *b);                /* a *= b (b broadcast) */
int pr_scale_(pr_tensor *a, double s);                  /* a *= s */

/* ---- nn ops (ops/nn.c, ops/conv.c, ops/pool.c): fused, one autograd node each ---- */
enum { PR_REDUCE_MEAN = 0, PR_REDUCE_SUM = 1, PR_REDUCE_NONE = 2 }; /* loss reductions */
/* x [N,C,H,W], w [O,C/groups,kh,kw], b [O] or NULL. Depthwise when groups == C. */
pr_tensor *pr_conv2d(pr_tensor *x, pr_tensor *w, pr_tensor *b, int64_t stride_h, int64_t stride_w,
                     int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups);
/* x [N,C,H,W]; stride 0 = kernel size; padding at most half the kernel. Average pooling
 * counts padding in the divisor (PyTorch's count_include_pad=True). */
pr_tensor *pr_max_pool2d(pr_tensor *x, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                         int64_t pw);
pr_tensor *pr_avg_pool2d(pr_tensor *x, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                         int64_t pw);
/* x [N,C,*]; gamma/beta [C] (NULL: 1 and 0, not trained). Training normalises with the batch
 * statistics and, when running_mean/var (float32 [C], borrowed, updated in place) are given,
 * sets running = (1-momentum)*running + momentum*batch (unbiased var). Eval uses them. */
pr_tensor *pr_batch_norm(pr_tensor *x, pr_tensor *gamma, pr_tensor *beta, pr_tensor *running_mean,
                         pr_tensor *running_var, int training, double momentum, double eps);
/* Inverted dropout with the runtime rng (one draw per element); identity unless training. */
pr_tensor *pr_dropout(pr_tensor *x, double p, int training);
/* logits [N,C] float32, targets [N] int64 class ids in [0,C); reduction PR_REDUCE_*. Mean and
 * sum give a 0-d tensor, none gives [N]. */
pr_tensor *pr_cross_entropy(pr_tensor *logits, pr_tensor *targets, int reduction);
pr_tensor *pr_nll_loss(pr_tensor *logp, pr_tensor *targets, int reduction);
pr_tensor *pr_mse_loss(pr_tensor *input, pr_tensor *target, int reduction); /* same shapes */

#endif
