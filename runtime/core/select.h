/* select.h: O(n) expected-time selection on float arrays, the heart of every pruning threshold
 * (and of kthvalue/quantile/topk). Introselect: quickselect with median-of-three pivots,
 * falling back to a heap-free median-of-medians pass when partitions go badly. */
#ifndef PR_SELECT_H
#define PR_SELECT_H

#include <stdint.h>

/* The k-th smallest (0-based k < n) of buf[0..n-1]. Reorders buf (owned by the caller) so that
 * buf[k] holds the answer, everything before it is <= and everything after it is >=.
 * NaNs sort last. */
float pr_select_f32(float *buf, int64_t n, int64_t k);

/* The same on (value, index) pairs: reorders vals and idx together; returns the value. */
float pr_select_f32_idx(float *vals, int64_t *idx, int64_t n, int64_t k);

#endif
