/* test_select.c: pr_select_f32 and pr_select_f32_idx against qsort, on random data of many
 * sizes, duplicates, all-equal, sorted, reverse-sorted, organ-pipe and NaN-bearing inputs,
 * every k for small n; and the partition property (<= before k, >= after). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* White-box: the median-of-medians fallbacks are reached only by adversarial inputs, so they
 * are also tested directly, from a private copy of select.c with its entry points renamed
 * (its static helpers become visible here; the library's own symbols are not touched). */
#define pr_select_f32 wb_select_f32
#define pr_select_f32_idx wb_select_f32_idx
#include "../../runtime/core/select.c"
#undef pr_select_f32
#undef pr_select_f32_idx
/* The library's entry points (select.h is already guarded under the renamed names). */
float pr_select_f32(float *buf, int64_t n, int64_t k);
float pr_select_f32_idx(float *vals, int64_t *idx, int64_t n, int64_t k);

/* Own generator so the test does not depend on rng.c (splitmix64). */
static uint64_t seed_state = 0x9E3779B97F4A7C15ull;
static uint64_t next_u64(void)
{
    uint64_t z = (seed_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float next_unit(void) { return (float)((next_u64() >> 40) * (1.0 / 16777216.0)); }

/* NaN-last total order, as pr_select_f32 promises. */
static int cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    int xn = isnan(x), yn = isnan(y);
    if (xn || yn)
        return xn - yn;
    return (x > y) - (x < y);
}

typedef struct { float v; int64_t i; } pair;
static int cmp_pair(const void *a, const void *b)
{
    const pair *p = a, *q = b;
    int c = cmp_f(&p->v, &q->v);
    if (c)
        return c;
    return (p->i > q->i) - (p->i < q->i);
}

/* Same value, NaN included. */
static int same_f(float a, float b) { return (isnan(a) && isnan(b)) || a == b; }

/* Checks one selection of k over a copy of src against the sorted reference. */
static int check_one(const float *src, const float *sorted, int64_t n, int64_t k, float *work)
{
    memcpy(work, src, (size_t)n * sizeof *work);
    float got = pr_select_f32(work, n, k);
    int ok = same_f(got, sorted[k]) && same_f(work[k], sorted[k]);
    /* The partition property, in the NaN-last order. */
    for (int64_t i = 0; ok && i < k; i++)
        ok = cmp_f(&work[i], &work[k]) <= 0;
    for (int64_t i = k + 1; ok && i < n; i++)
        ok = cmp_f(&work[i], &work[k]) >= 0;
    return ok;
}

static void check_array(const char *what, const float *src, int64_t n, int all_k)
{
    float *sorted = malloc((size_t)n * sizeof *sorted);
    float *work = malloc((size_t)n * sizeof *work);
    memcpy(sorted, src, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_f);
    int64_t ks[] = {0, 1, n / 10, n / 4, n / 2, (n * 9) / 10, n - 2, n - 1};
    if (all_k) {
        for (int64_t k = 0; k < n; k++)
            CHECK_MSG(check_one(src, sorted, n, k, work), "%s n=%lld k=%lld", what,
                      (long long)n, (long long)k);
    } else {
        for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
            int64_t k = ks[t];
            if (k < 0 || k >= n)
                continue;
            CHECK_MSG(check_one(src, sorted, n, k, work), "%s n=%lld k=%lld", what,
                      (long long)n, (long long)k);
        }
    }
    free(sorted);
    free(work);
}

enum { RANDOM, DUPS, EQUAL, SORTED, REVERSE, ORGAN, NANS, SAWTOOTH, NKINDS };
static const char *kind_name[] = {"random", "dups", "equal", "sorted", "reverse", "organ",
                                  "nans", "sawtooth"};

static void fill(float *a, int64_t n, int kind)
{
    for (int64_t i = 0; i < n; i++) {
        switch (kind) {
        case RANDOM: a[i] = next_unit() * 2.0f - 1.0f; break;
        case DUPS: a[i] = (float)(next_u64() % 5); break;
        case EQUAL: a[i] = 3.5f; break;
        case SORTED: a[i] = (float)i; break;
        case REVERSE: a[i] = (float)(n - i); break;
        case ORGAN: a[i] = (float)(i < n / 2 ? i : n - i); break;
        case NANS: a[i] = (next_u64() % 7 == 0) ? NAN : next_unit(); break;
        case SAWTOOTH: a[i] = (float)(i % 17); break;
        }
    }
}

static void test_small_all_k(void)
{
    for (int64_t n = 1; n <= 70; n++) {
        float *a = malloc((size_t)n * sizeof *a);
        for (int kind = 0; kind < NKINDS; kind++) {
            fill(a, n, kind);
            check_array(kind_name[kind], a, n, 1);
        }
        free(a);
    }
}

static void test_sizes(void)
{
    int64_t sizes[] = {1, 2, 7, 1000, 4095, 4096, 5000, 100000, 1000000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int64_t n = sizes[s];
        float *a = malloc((size_t)n * sizeof *a);
        for (int kind = 0; kind < NKINDS; kind++) {
            fill(a, n, kind);
            check_array(kind_name[kind], a, n, n <= 1000 && kind == RANDOM);
        }
        free(a);
    }
}

static void test_all_nan_and_bad_args(void)
{
    float a[4] = {NAN, NAN, NAN, NAN};
    CHECK(isnan(pr_select_f32(a, 4, 2)));
    float b[3] = {NAN, 1.0f, -INFINITY};
    CHECK(pr_select_f32(b, 3, 0) == -INFINITY);
    CHECK(pr_select_f32(b, 3, 1) == 1.0f);
    CHECK(isnan(pr_select_f32(b, 3, 2)));
    /* Out-of-range k is not a crash. */
    CHECK(isnan(pr_select_f32(b, 3, 3)));
    CHECK(isnan(pr_select_f32(b, 3, -1)));
    CHECK(isnan(pr_select_f32(NULL, 0, 0)));
}

/* A sequence that defeats a plain median-of-three quickselect (Musser's "median-of-3
 * killer"); the fallback must keep it fast and correct. */
static void test_killer(void)
{
    int64_t n = 1 << 17;
    float *a = malloc((size_t)n * sizeof *a);
    int64_t half = n / 2;
    for (int64_t i = 0; i < half; i++) {
        if (i % 2 == 0)
            a[i] = (float)(i + 1);
        else
            a[i] = (float)(half + i + 1);
        a[half + i] = (float)(2 * (i + 1));
    }
    check_array("m3killer", a, n, 0);
    free(a);
}

static void check_pairs(int64_t n, int kind)
{
    float *v = malloc((size_t)n * sizeof *v), *src = malloc((size_t)n * sizeof *src);
    int64_t *x = malloc((size_t)n * sizeof *x);
    pair *ref = malloc((size_t)n * sizeof *ref);
    fill(src, n, kind);
    for (int64_t i = 0; i < n; i++)
        ref[i] = (pair){src[i], i};
    qsort(ref, (size_t)n, sizeof *ref, cmp_pair);
    int64_t ks[] = {0, n / 3, n / 2, (n * 9) / 10, n - 1};
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        int64_t k = ks[t];
        memcpy(v, src, (size_t)n * sizeof *v);
        /* Indices scrambled relative to positions: the result must not depend on the
         * arrangement, only on the (value, index) order. */
        for (int64_t i = 0; i < n; i++)
            x[i] = i;
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)(next_u64() % (uint64_t)(i + 1));
            float tv = v[i]; v[i] = v[j]; v[j] = tv;
            int64_t tx = x[i]; x[i] = x[j]; x[j] = tx;
        }
        float got = pr_select_f32_idx(v, x, n, k);
        int ok = same_f(got, ref[k].v) && x[k] == ref[k].i && same_f(v[k], ref[k].v);
        /* Pairs stay together and the partition property holds in (value, index) order. */
        for (int64_t i = 0; ok && i < n; i++) {
            ok = same_f(v[i], src[x[i]]);
            pair p = {v[i], x[i]}, q = {v[k], x[k]};
            if (ok && i < k)
                ok = cmp_pair(&p, &q) < 0;
            if (ok && i > k)
                ok = cmp_pair(&p, &q) > 0;
        }
        CHECK_MSG(ok, "pairs %s n=%lld k=%lld", kind_name[kind], (long long)n, (long long)k);
    }
    free(v);
    free(src);
    free(x);
    free(ref);
}

/* The fallbacks on their own, every kind of input, against qsort. */
static void test_fallbacks_direct(void)
{
    int64_t sizes[] = {1, 5, 6, 24, 25, 26, 100, 1001, 30000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int64_t n = sizes[s];
        float *src = malloc((size_t)n * sizeof *src), *srt = malloc((size_t)n * sizeof *srt);
        float *w = malloc((size_t)n * sizeof *w);
        int64_t *x = malloc((size_t)n * sizeof *x);
        pair *ref = malloc((size_t)n * sizeof *ref);
        for (int kind = 0; kind < NKINDS; kind++) {
            if (kind == NANS)
                continue; /* the fallbacks run after NaNs have been moved away */
            fill(src, n, kind);
            memcpy(srt, src, (size_t)n * sizeof *srt);
            qsort(srt, (size_t)n, sizeof *srt, cmp_f);
            for (int64_t i = 0; i < n; i++)
                ref[i] = (pair){src[i], n - 1 - i};
            qsort(ref, (size_t)n, sizeof *ref, cmp_pair);
            int64_t ks[] = {0, n / 3, n / 2, n - 1};
            for (size_t t = 0; t < 4; t++) {
                int64_t k = ks[t];
                memcpy(w, src, (size_t)n * sizeof *w);
                float got = mom_select_f(w, 0, n - 1, k);
                int ok = got == srt[k] && w[k] == got;
                for (int64_t i = 0; ok && i < n; i++)
                    ok = i < k ? w[i] <= got : w[i] >= got;
                CHECK_MSG(ok, "mom_select_f %s n=%lld k=%lld", kind_name[kind], (long long)n,
                          (long long)k);
                memcpy(w, src, (size_t)n * sizeof *w);
                for (int64_t i = 0; i < n; i++)
                    x[i] = n - 1 - i;
                mom_select_p(w, x, 0, n - 1, k);
                ok = w[k] == ref[k].v && x[k] == ref[k].i;
                for (int64_t i = 0; ok && i < n; i++) {
                    pair p = {w[i], x[i]};
                    ok = w[i] == src[n - 1 - x[i]] &&
                         (i == k || (i < k ? cmp_pair(&p, &ref[k]) < 0 : cmp_pair(&p, &ref[k]) > 0));
                }
                CHECK_MSG(ok, "mom_select_p %s n=%lld k=%lld", kind_name[kind], (long long)n,
                          (long long)k);
            }
        }
        free(src);
        free(srt);
        free(w);
        free(x);
        free(ref);
    }
}

static void test_pairs(void)
{
    int64_t sizes[] = {1, 2, 7, 30, 1000, 100000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int kind = 0; kind < NKINDS; kind++)
            check_pairs(sizes[s], kind);
}

int main(void)
{
    RUN(test_small_all_k);
    RUN(test_sizes);
    RUN(test_all_nan_and_bad_args);
    RUN(test_killer);
    RUN(test_pairs);
    RUN(test_fallbacks_direct);
    return CHECK_DONE();
}
