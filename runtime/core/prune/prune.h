/* prune.h: the pruning hot paths in C: element and structure scores, activation statistics,
 * thresholds by amount (per tensor and global, with exact counts), and masks (threshold,
 * structure, N:M, blocks, random). Policy (which criterion, schedule, which layers) is Lua's;
 * everything here is a loop over a float32 buffer, so a Lua strategy runs at C speed.
 *
 * Conventions: tensors are float32 (a few arguments accept int64, said where); inputs may be
 * any layout (they are read through a contiguous copy only when they are not contiguous),
 * tensors written in place must be contiguous. Dims are 0-based; a negative dim counts from
 * the end. Every pointer parameter is borrowed unless its comment says otherwise; every
 * pr_tensor * returned is a NEW reference the caller owns and must pr_tensor_release().
 * Failures return NULL or a negative status with the message in pr_last_error().
 *
 * Order and ties: "the m smallest" always means in (score, flat row-major index) order, so
 * that exactly m entries go, and the same ones on every run and machine. Scores must not be
 * NaN where an order is needed (thresholds, masks by amount); that is an error, not a guess. */
#ifndef PR_PRUNE_H
#define PR_PRUNE_H

#include <stdint.h>

#include "tensor.h"

/* ---- element scores (result has w's shape) ---- */

/* |w|^p: p = 1 gives |w|, p = 2 gives w^2 (both exact fast paths); any p > 0 is allowed. */
pr_tensor *pr_score_magnitude(pr_tensor *w, double p);
/* |w * g|, the first-order Taylor estimate of the loss change from removing each weight.
 * w and g must have the same shape. */
pr_tensor *pr_score_taylor(pr_tensor *w, pr_tensor *g);
/* acc += |g| in place (gradient-magnitude accumulation over batches). acc (contiguous) and g
 * have the same shape. */
int pr_score_accumulate_abs(pr_tensor *acc, pr_tensor *g);

/* ---- structure scores (result is 1-D, of length w->shape[dim]) ---- */

/* Lp norm of each slice along dim: dim 0 scores the filters of a conv weight [O,C,kh,kw] (or
 * the rows of a linear [out,in]), dim 1 its input channels (columns). p = 1, 2, INFINITY
 * (largest |x|) or any p > 0. Accumulated in double. */
pr_tensor *pr_score_structure_norm(pr_tensor *w, int dim, double p);

/* (SREDUCE: reductions over a structure; ops.h's PR_REDUCE_* are the loss reductions.) */
typedef enum { PR_SREDUCE_SUM = 0, PR_SREDUCE_MEAN = 1, PR_SREDUCE_MAX = 2 } pr_sreduce;
/* Reduces an element score over each slice along dim: e.g. the Taylor score of a filter is
 * the SUM over the filter of |w*g| (Molchanov et al. 2017). */
pr_tensor *pr_score_structure_reduce(pr_tensor *score, int dim, pr_sreduce mode);

/* The coupled score of channel i of a depthwise + pointwise pair (seed 003: "compute the L1
 * of the depthwise conv together with the following pointwise conv, dw[i] . pw[:,i]").
 * Removing channel i removes dw[i,...] AND pw[:,i,...], so both must be small for the channel
 * to be unimportant: score[i] = ||dw[i,...]||_p * ||pw[:,i,...]||_p, the product of norms.
 * dw is the runtime's depthwise layout [C,1,kh,kw] (any ndim >= 1, dim 0 = channel); pw is
 * [O,C,1,1] or [O,C] (any ndim >= 2, dim 1 = channel). Result [C]. */
pr_tensor *pr_score_depthwise_coupled(pr_tensor *dw, pr_tensor *pw, double p);

/* Activation statistics gathered during forward, per channel (act [N,C,...]) or per neuron
 * (act [N,F]): sum_acc[c] += sum of |act| over the batch and positions of channel c, and
 * zero_acc[c] += how many of those are exactly 0 (APoZ's numerator). |act| so that "activity"
 * means something for any nonlinearity; after a ReLU it is the plain activation.
 * sum_acc: float32 [C], contiguous, or NULL. zero_acc: float32 or int64 [C] (int64 keeps
 * counts exact past 2^24), contiguous, or NULL. Each call is summed in double first.
 * Returns the number of values added per channel (N * positions), so that
 * mean = sum_acc / total and APoZ = zero_acc / total; negative on error. */
int64_t pr_activity_accumulate(pr_tensor *act, pr_tensor *sum_acc, pr_tensor *zero_acc);

/* ---- thresholds ---- */

/* An exact-count threshold for one tensor: the entries with score < value are pruned, and
 * so are the first `ties` entries (in flat row-major order) whose score == value. An absolute
 * threshold is simply {value, 0}. Nothing pruned: {-INFINITY, 0, 0}. */
typedef struct pr_threshold {
    float value;
    int64_t ties;
    int64_t count; /* entries this threshold prunes in its tensor: #(score < value) + ties */
} pr_threshold;

/* The threshold pruning exactly round(amount * numel) of `scores` (amount in [0,1]), found
 * by selection (pr_select_f32) on a copy. out: caller's. */
int pr_threshold_amount(pr_tensor *scores, double amount, pr_threshold *out);

/* One selection over the concatenation of n tensors' scores (a global ranking across
 * layers; ties broken by layer order, then flat index): prunes exactly round(amount * total)
 * entries, except that no tensor keeps fewer than min_keep entries (a tensor with fewer than
 * min_keep entries keeps them all). When a tensor reaches its floor, the rest of the budget
 * goes to the others, still smallest first; only if every tensor is at its floor is the total
 * smaller. out: caller's array of n thresholds, one per tensor. Returns the total pruned. */
int64_t pr_threshold_global(pr_tensor *const *scores, int n, double amount, int64_t min_keep,
                            pr_threshold *out);

/* Mean and population standard deviation over all entries of n tensors (for Han et al.'s
 * threshold mu - k*sigma, or quality * sigma). Two passes in double. mean, std: caller's. */
int pr_stats_mean_std(pr_tensor *const *scores, int n, double *mean, double *std);

/* ---- masks (float32 0/1; 0 = pruned) ---- */

/* 0 where score < threshold, and at the first `ties` entries equal to it; 1 elsewhere (NaN
 * scores are kept). With a pr_threshold: pr_mask_from_scores(s, th.value, th.ties). */
pr_tensor *pr_mask_from_scores(pr_tensor *scores, float threshold, int64_t ties);
/* Spreads a structure mask [shape[dim]] over a full weight shape: the mask of element
 * (..., i at dim, ...) is structure_mask[i]. shape: caller's array of ndim sizes. */
pr_tensor *pr_mask_structure_expand(pr_tensor *structure_mask, int ndim, const int64_t *shape,
                                    int dim);
/* N:M semi-structured sparsity: of every M consecutive entries along dim (the input
 * dimension: 1 for a linear [out,in] or a conv [O,C,kh,kw]), keep the N with the largest
 * scores (earlier index first on ties; NaN counts as smallest). shape[dim] % M must be 0. */
pr_tensor *pr_mask_nm(pr_tensor *scores, int n, int m, int dim);
/* Block sparsity on a 2-D [R,C] tensor cut into bh x bw blocks: a block's score is the sum of
 * |x| over it (so passing weights or their magnitudes is the same); the round(amount *
 * blocks) lowest blocks are zeroed (ties by block row-major index). R % bh == 0, C % bw == 0. */
pr_tensor *pr_mask_blocks(pr_tensor *scores, int64_t bh, int64_t bw, double amount);
/* w = w * mask in place, except that a pruned entry becomes exactly +0 even when w is inf or
 * NaN (a pruned weight is zero and stays zero). w: contiguous float32; same shape. */
int pr_mask_apply(pr_tensor *w, pr_tensor *mask);
/* Exactly round(amount * numel) zeros at uniformly random places (rng.h's stream). */
pr_tensor *pr_mask_random(int ndim, const int64_t *shape, double amount);
/* Entries equal to 0 (either sign) in a float32 tensor, e.g. a mask or pruned weights. */
int64_t pr_mask_count_zeros(pr_tensor *t);

/* Seed 000's gradient "pruning": g[i] = 0 where |g[i]| < threshold, in place. The seed
 * compared the signed value, which zeroes every negative gradient; this compares |g|.
 * Returns how many entries are below the threshold (all now zero, including any that were
 * zero already). g: contiguous float32. */
int64_t pr_grad_clip_mask_(pr_tensor *g, float threshold);

/* ---- shared by the files of core/prune (not for callers) ---- */

/* A contiguous float32 reference to t (t itself retained when it already is), or NULL with
 * a message naming fn and arg. */
pr_tensor *pr_prune_input(pr_tensor *t, const char *fn, const char *arg);
/* 0 when t is a contiguous float32 tensor that may be written in place, else a message. */
int pr_prune_check_output(const pr_tensor *t, const char *fn, const char *arg);
/* Normalises dim (negative from the end) for t, or a message; returns the dim or < 0. */
int pr_prune_dim(const pr_tensor *t, int dim, const char *fn);
/* round(amount * n) after checking amount is in [0,1]; negative with a message otherwise. */
int64_t pr_prune_amount_count(double amount, int64_t n, const char *fn);

#endif
