/* threshold.c: thresholds by amount (one tensor, or global across tensors with a per-tensor
 * floor) with exact counts, and mean/std of scores. See prune.h.
 *
 * Exact counts: the m-th smallest score t is found by selection on a copy; every entry < t is
 * pruned and the remaining m - #(< t) come from the entries equal to t, first in flat order.
 * So a threshold is (value, ties) rather than a bare float: with many equal scores (zeros
 * after a previous round, quantised weights) a bare "< t" or "<= t" would miss the amount. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "prune.h"
#include "select.h"

static const pr_threshold nothing = {-INFINITY, 0, 0};

/* Prunes exactly `count` entries from the concatenation of the tensors ts[i] with use[i] set
 * (all contiguous float32), writing out[i] for those. buf: caller's scratch of at least the
 * used total. Fails only on a NaN score (checked while copying: one pass, not two). */
static int threshold_exact(pr_tensor *const *ts, const char *use, int n, int64_t count,
                           float *buf, pr_threshold *out, const char *fn)
{
    int64_t total = 0;
    for (int l = 0; l < n; l++) {
        if (!use[l])
            continue;
        const float *x = pr_tensor_f32(ts[l]);
        int64_t nl = pr_tensor_numel(ts[l]);
        int nan = 0;
        for (int64_t i = 0; i < nl; i++) {
            buf[total + i] = x[i];
            nan |= x[i] != x[i];
        }
        if (nan) {
            int64_t i = 0;
            while (!isnan(x[i]))
                i++;
            return pr_error("%s: scores of tensor %d contain NaN (entry %lld): a NaN has no "
                            "rank", fn, l + 1, (long long)i);
        }
        total += nl;
    }
    if (count <= 0 || total == 0) {
        for (int l = 0; l < n; l++)
            if (use[l])
                out[l] = nothing;
        return PR_OK;
    }
    float t = pr_select_f32(buf, total, count - 1);
    /* Entries below t all go; the ties budget is handed out in concatenation order. */
    int64_t below_all = 0;
    for (int64_t i = 0; i < count - 1; i++)
        below_all += buf[i] < t; /* after selection, everything < t sits before position k */
    int64_t ties_left = count - below_all;
    for (int l = 0; l < n; l++) {
        if (!use[l])
            continue;
        const float *x = pr_tensor_f32(ts[l]);
        int64_t nl = pr_tensor_numel(ts[l]), below = 0, equal = 0;
        for (int64_t i = 0; i < nl; i++) {
            below += x[i] < t;
            equal += x[i] == t;
        }
        int64_t ties = equal < ties_left ? equal : ties_left;
        ties_left -= ties;
        out[l] = (pr_threshold){t, ties, below + ties};
    }
    return PR_OK;
}

/* Contiguous float32 copies (or retains) of the inputs into cs[n]; 0 or a message. */
static int gather_inputs(pr_tensor *const *scores, int n, const char *fn, pr_tensor **cs,
                         int64_t *total)
{
    *total = 0;
    for (int l = 0; l < n; l++)
        cs[l] = NULL;
    for (int l = 0; l < n; l++) {
        cs[l] = pr_prune_input(scores[l], fn, "scores");
        if (!cs[l])
            return PR_EINVAL;
        *total += pr_tensor_numel(cs[l]);
    }
    return PR_OK;
}

static void release_inputs(pr_tensor **cs, int n)
{
    for (int l = 0; l < n; l++)
        pr_tensor_release(cs[l]);
}

int pr_threshold_amount(pr_tensor *scores, double amount, pr_threshold *out)
{
    const char *fn = "threshold_amount";
    if (!out)
        return pr_error("%s: out is NULL", fn);
    pr_tensor *c = NULL;
    int64_t total;
    int rc = gather_inputs(&scores, 1, fn, &c, &total);
    int64_t count = rc < 0 ? rc : pr_prune_amount_count(amount, total, fn);
    if (count < 0) {
        pr_tensor_release(c);
        return (int)count;
    }
    float *buf = malloc((size_t)(total ? total : 1) * sizeof *buf);
    if (!buf) {
        pr_tensor_release(c);
        return pr_error_code(PR_ENOMEM, "%s: out of memory for %lld scores", fn, (long long)total);
    }
    char use = 1;
    rc = threshold_exact(&c, &use, 1, count, buf, out, fn);
    free(buf);
    pr_tensor_release(c);
    return rc;
}

int64_t pr_threshold_global(pr_tensor *const *scores, int n, double amount, int64_t min_keep,
                            pr_threshold *out)
{
    const char *fn = "threshold_global";
    if (!scores || !out || n < 1)
        return pr_error("%s: needs at least one scores tensor and an output array", fn);
    if (min_keep < 0)
        return pr_error("%s: min_keep must be >= 0, got %lld", fn, (long long)min_keep);
    pr_tensor **cs = calloc((size_t)n, sizeof *cs);
    char *use = malloc((size_t)n), *only = calloc((size_t)n, 1);
    int64_t *cap = malloc((size_t)n * sizeof *cap);
    float *buf = NULL;
    int64_t total = 0, result;
    if (!cs || !use || !only || !cap) {
        result = pr_error_code(PR_ENOMEM, "%s: out of memory", fn);
        goto done;
    }
    result = gather_inputs(scores, n, fn, cs, &total);
    if (result < 0)
        goto done;
    int64_t budget = pr_prune_amount_count(amount, total, fn);
    if (budget < 0) {
        result = budget;
        goto done;
    }
    buf = malloc((size_t)(total ? total : 1) * sizeof *buf);
    if (!buf) {
        result = pr_error_code(PR_ENOMEM, "%s: out of memory for %lld scores", fn,
                               (long long)total);
        goto done;
    }
    /* cap[l]: the most tensor l may lose. Water-filling: select globally among the tensors not
     * yet at their floor; any that would lose more than its cap is fixed at its cap (its own
     * cap smallest entries) and leaves the pool, and the rest of the budget is selected again.
     * The threshold over the pool only rises as tensors leave it, so a tensor fixed at its cap
     * would be over its cap in the final answer too: at most n rounds. */
    int64_t capacity = 0;
    for (int l = 0; l < n; l++) {
        int64_t nl = pr_tensor_numel(cs[l]);
        cap[l] = nl > min_keep ? nl - min_keep : 0;
        capacity += cap[l];
        use[l] = 1;
    }
    if (budget > capacity)
        budget = capacity; /* every tensor at its floor */
    result = budget;
    for (;;) {
        /* Only the first round can fail (NaN); later ones see the same numbers. */
        if (threshold_exact(cs, use, n, budget, buf, out, fn) < 0) {
            result = PR_EINVAL;
            goto done;
        }
        int over = 0;
        for (int l = 0; l < n; l++)
            over |= use[l] && out[l].count > cap[l];
        if (!over)
            break;
        for (int l = 0; l < n; l++) {
            if (!use[l] || out[l].count <= cap[l])
                continue;
            only[l] = 1;
            threshold_exact(cs, only, n, cap[l], buf, out, fn);
            only[l] = 0;
            use[l] = 0;
            budget -= cap[l];
        }
    }
done:
    if (cs)
        release_inputs(cs, n);
    free(cs);
    free(use);
    free(only);
    free(cap);
    free(buf);
    return result;
}

int pr_stats_mean_std(pr_tensor *const *scores, int n, double *mean, double *std)
{
    const char *fn = "stats_mean_std";
    if (!scores || n < 1 || !mean || !std)
        return pr_error("%s: needs at least one scores tensor and two outputs", fn);
    int64_t total = 0;
    double sum = 0.0;
    for (int pass = 0; pass < 2; pass++) {
        double mu = pass ? sum / (double)total : 0.0, acc = 0.0;
        for (int l = 0; l < n; l++) {
            pr_tensor *c = pr_prune_input(scores[l], fn, "scores");
            if (!c)
                return PR_EINVAL;
            const float *x = pr_tensor_f32(c);
            int64_t nl = pr_tensor_numel(c);
            /* Second pass on deviations from the mean: no cancellation for large means. */
            for (int64_t i = 0; i < nl; i++) {
                double d = (double)x[i] - mu;
                acc += pass ? d * d : d;
            }
            if (!pass)
                total += nl;
            pr_tensor_release(c);
        }
        if (!pass) {
            if (total == 0)
                return pr_error("%s: the scores are empty", fn);
            sum = acc;
        } else {
            *mean = mu;
            *std = sqrt(acc / (double)total);
        }
    }
    return PR_OK;
}
