/* select.c: introselect on float arrays and on (value, index) pairs (see select.h).
 *
 * Quickselect with a median-of-three pivot and Hoare partitioning (equal keys stop both
 * scans, so all-equal and many-duplicate inputs still split in the middle). Each round must
 * at least discard a quarter of the range; after 2*log2(n) rounds that did not, the remaining
 * range is finished by median-of-medians, so the worst case stays O(n log n) and typical
 * inputs never pay for the slower pivot. Large ranges take their pivot from a sample near the
 * k-th position (Floyd-Rivest's idea): most of the array is then discarded after one pass,
 * which is what keeps a 10-million-entry threshold within budget.
 *
 * NaNs are moved to the end first, so the comparisons in the hot loops are plain float ones.
 * The pair variant orders by (value, index) so its result does not depend on the input's
 * arrangement: pruning "exactly m entries" breaks ties by index, deterministically. */
#include "select.h"

#include <math.h>
#include <stdint.h>

/* Below this the range is finished by insertion sort. */
#define SMALL 24
/* From this size on, the pivot comes from a sample (Floyd-Rivest). */
#define SAMPLE_MIN 4096

/* ======================================================================================== */
/* Float keys.                                                                              */

static inline void swap_f(float *a, int64_t i, int64_t j)
{
    float t = a[i];
    a[i] = a[j];
    a[j] = t;
}

static void insertion_f(float *a, int64_t lo, int64_t hi)
{
    for (int64_t i = lo + 1; i <= hi; i++) {
        float v = a[i];
        int64_t j = i - 1;
        while (j >= lo && a[j] > v) {
            a[j + 1] = a[j];
            j--;
        }
        a[j + 1] = v;
    }
}

/* Three-way (Dutch flag) partition of a[lo..hi] around value p: on return a[lo..*lt-1] < p,
 * a[*lt..*gt-1] == p, a[*gt..hi] > p. Used by the deterministic path, where a guaranteed
 * shrink matters more than speed (equal keys all leave the range at once). */
static void partition3_f(float *a, int64_t lo, int64_t hi, float p, int64_t *lt, int64_t *gt)
{
    int64_t l = lo, i = lo, g = hi + 1;
    while (i < g) {
        if (a[i] < p)
            swap_f(a, l++, i++);
        else if (a[i] > p)
            swap_f(a, i, --g);
        else
            i++;
    }
    *lt = l;
    *gt = g;
}

static float mom_select_f(float *a, int64_t lo, int64_t hi, int64_t k);

/* A pivot guaranteed to have at least ~30% of a[lo..hi] on each side: the median of the
 * medians of groups of five. The group medians are gathered at the front of the range. */
static float mom_pivot_f(float *a, int64_t lo, int64_t hi)
{
    int64_t n = hi - lo + 1;
    if (n <= 5) {
        insertion_f(a, lo, hi);
        return a[lo + n / 2];
    }
    int64_t groups = n / 5;
    for (int64_t g = 0; g < groups; g++) {
        int64_t s = lo + 5 * g;
        insertion_f(a, s, s + 4);
        swap_f(a, lo + g, s + 2);
    }
    return mom_select_f(a, lo, lo + groups - 1, lo + groups / 2);
}

/* Deterministic linear-time selection of position k in a[lo..hi]. */
static float mom_select_f(float *a, int64_t lo, int64_t hi, int64_t k)
{
    for (;;) {
        if (hi - lo < SMALL) {
            insertion_f(a, lo, hi);
            return a[k];
        }
        float p = mom_pivot_f(a, lo, hi);
        int64_t lt, gt;
        partition3_f(a, lo, hi, p, &lt, &gt);
        if (k < lt)
            hi = lt - 1;
        else if (k >= gt)
            lo = gt;
        else
            return p;
    }
}

/* Orders a[i] <= a[j] <= a[l]; leaves the median in a[j]. */
static inline void sort3_f(float *a, int64_t i, int64_t j, int64_t l)
{
    if (a[i] > a[j])
        swap_f(a, i, j);
    if (a[j] > a[l])
        swap_f(a, j, l);
    if (a[i] > a[j])
        swap_f(a, i, j);
}

/* Chooses the pivot of a[lo..hi] for position k and leaves it in a[lo + 1], with
 * a[lo] <= pivot <= a[hi] so the partition's scans need no bounds checks. For large ranges
 * the pivot is the element of rank ~k in a strided sample, nudged toward the smaller side so
 * that k most likely lands in the small part. */
static void choose_pivot_f(float *a, int64_t lo, int64_t hi, int64_t k)
{
    int64_t n = hi - lo + 1;
    if (n >= SAMPLE_MIN) {
        /* The sample is gathered at the front of the range (a swap each, so the multiset is
         * unchanged); it is sorted enough around the wanted rank by a recursive select. */
        int64_t m = (int64_t)sqrt((double)n) * 2;
        if (m > n / 4)
            m = n / 4;
        int64_t step = n / m;
        for (int64_t s = 0; s < m; s++)
            swap_f(a, lo + 2 + s, lo + s * step + (step - 1));
        double frac = (double)(k - lo) / (double)n;
        /* Aim a few standard deviations of the sample quantile beyond k, on the side that
         * makes the part holding k the smaller one. Rank 0 and m-1 are avoided so that the
         * sample keeps an element on each side of the pivot to serve as sentinels. */
        double sd = sqrt(frac * (1.0 - frac) * (double)m) + 2.0;
        int64_t r = (int64_t)(frac * (double)m + (frac < 0.5 ? sd : -sd));
        if (r < 1)
            r = 1;
        if (r > m - 2)
            r = m - 2;
        pr_select_f32(a + lo + 2, m, r);
        /* Pivot to lo+1; a sample element below it to lo and one above it to hi, so the
         * partition's scans stop without bounds checks. */
        swap_f(a, lo + 1, lo + 2 + r);
        swap_f(a, lo, lo + 2);
        swap_f(a, hi, lo + 1 + m);
        return;
    }
    int64_t mid = lo + (hi - lo) / 2;
    swap_f(a, mid, lo + 1);
    sort3_f(a, lo, lo + 1, hi);
}

static float introselect_f(float *a, int64_t lo, int64_t hi, int64_t k)
{
    int64_t n = hi - lo + 1;
    int budget = 0;
    for (int64_t m = n; m > 1; m >>= 1)
        budget += 2;
    while (hi - lo >= SMALL) {
        int64_t size = hi - lo + 1;
        if (budget <= 0)
            return mom_select_f(a, lo, hi, k);
        choose_pivot_f(a, lo, hi, k);
        float p = a[lo + 1];
        int64_t i = lo + 1, j = hi;
        for (;;) {
            do
                i++;
            while (a[i] < p);
            do
                j--;
            while (a[j] > p);
            if (j < i)
                break;
            swap_f(a, i, j);
        }
        a[lo + 1] = a[j];
        a[j] = p;
        /* Now a[lo..j-1] <= p == a[j] <= a[j+1..hi]. */
        if (k == j)
            return p;
        if (k < j)
            hi = j - 1;
        else
            lo = j + 1;
        if ((hi - lo + 1) > size - size / 4)
            budget--;
    }
    insertion_f(a, lo, hi);
    return a[k];
}

float pr_select_f32(float *buf, int64_t n, int64_t k)
{
    if (!buf || n <= 0 || k < 0 || k >= n)
        return NAN;
    /* NaNs to the end: afterwards every comparison is between ordinary numbers. */
    int64_t end = n;
    for (int64_t i = 0; i < end;) {
        if (isnan(buf[i]))
            swap_f(buf, i, --end);
        else
            i++;
    }
    if (k >= end)
        return buf[k]; /* a NaN; everything before it is a number, after it a NaN */
    return introselect_f(buf, 0, end - 1, k);
}

/* ======================================================================================== */
/* (value, index) pairs, ordered by value then index; NaN after every number.               */

static inline int less_p(float av, int64_t ai, float bv, int64_t bi)
{
    int an = isnan(av), bn = isnan(bv);
    if (an | bn) {
        if (an && bn)
            return ai < bi;
        return bn;
    }
    if (av != bv)
        return av < bv;
    return ai < bi;
}

#define LESS_P(i, j) less_p(v[i], x[i], v[j], x[j])

static inline void swap_p(float *v, int64_t *x, int64_t i, int64_t j)
{
    float t = v[i];
    v[i] = v[j];
    v[j] = t;
    int64_t u = x[i];
    x[i] = x[j];
    x[j] = u;
}

static void insertion_p(float *v, int64_t *x, int64_t lo, int64_t hi)
{
    for (int64_t i = lo + 1; i <= hi; i++) {
        float tv = v[i];
        int64_t tx = x[i];
        int64_t j = i - 1;
        while (j >= lo && less_p(tv, tx, v[j], x[j])) {
            v[j + 1] = v[j];
            x[j + 1] = x[j];
            j--;
        }
        v[j + 1] = tv;
        x[j + 1] = tx;
    }
}

static void mom_select_p(float *v, int64_t *x, int64_t lo, int64_t hi, int64_t k);

/* Median of medians of five, left in a[lo] (keys are distinct when indices are, so a plain
 * two-way partition always shrinks the range). */
static void mom_pivot_p(float *v, int64_t *x, int64_t lo, int64_t hi)
{
    int64_t n = hi - lo + 1;
    if (n <= 5) {
        insertion_p(v, x, lo, hi);
        swap_p(v, x, lo, lo + n / 2);
        return;
    }
    int64_t groups = n / 5;
    for (int64_t g = 0; g < groups; g++) {
        int64_t s = lo + 5 * g;
        insertion_p(v, x, s, s + 4);
        swap_p(v, x, lo + g, s + 2);
    }
    mom_select_p(v, x, lo, lo + groups - 1, lo + groups / 2);
    swap_p(v, x, lo, lo + groups / 2);
}

/* Lomuto partition of v/x[lo..hi] around the pair at lo; returns the pivot's final place. */
static int64_t partition_p(float *v, int64_t *x, int64_t lo, int64_t hi)
{
    float pv = v[lo];
    int64_t px = x[lo];
    int64_t s = lo;
    for (int64_t i = lo + 1; i <= hi; i++)
        if (less_p(v[i], x[i], pv, px))
            swap_p(v, x, ++s, i);
    swap_p(v, x, lo, s);
    return s;
}

static void mom_select_p(float *v, int64_t *x, int64_t lo, int64_t hi, int64_t k)
{
    for (;;) {
        if (hi - lo < SMALL) {
            insertion_p(v, x, lo, hi);
            return;
        }
        mom_pivot_p(v, x, lo, hi);
        int64_t j = partition_p(v, x, lo, hi);
        if (k == j)
            return;
        if (k < j)
            hi = j - 1;
        else
            lo = j + 1;
    }
}

float pr_select_f32_idx(float *vals, int64_t *idx, int64_t n, int64_t k)
{
    if (!vals || !idx || n <= 0 || k < 0 || k >= n)
        return NAN;
    float *v = vals;
    int64_t *x = idx;
    int64_t lo = 0, hi = n - 1;
    int budget = 0;
    for (int64_t m = n; m > 1; m >>= 1)
        budget += 2;
    while (hi - lo >= SMALL) {
        int64_t size = hi - lo + 1;
        if (budget <= 0) {
            mom_select_p(v, x, lo, hi, k);
            return v[k];
        }
        int64_t mid = lo + (hi - lo) / 2;
        swap_p(v, x, mid, lo + 1);
        if (LESS_P(lo + 1, lo))
            swap_p(v, x, lo, lo + 1);
        if (LESS_P(hi, lo + 1))
            swap_p(v, x, lo + 1, hi);
        if (LESS_P(lo + 1, lo))
            swap_p(v, x, lo, lo + 1);
        float pv = v[lo + 1];
        int64_t px = x[lo + 1];
        int64_t i = lo + 1, j = hi;
        for (;;) {
            do
                i++;
            while (less_p(v[i], x[i], pv, px));
            do
                j--;
            while (less_p(pv, px, v[j], x[j]));
            if (j < i)
                break;
            swap_p(v, x, i, j);
        }
        v[lo + 1] = v[j];
        x[lo + 1] = x[j];
        v[j] = pv;
        x[j] = px;
        if (k == j)
            return pv;
        if (k < j)
            hi = j - 1;
        else
            lo = j + 1;
        if ((hi - lo + 1) > size - size / 4)
            budget--;
    }
    insertion_p(v, x, lo, hi);
    return v[k];
}
