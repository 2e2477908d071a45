/* kernels.c: sparse linear and sparse x dense matmul for every pr_sparse format.
 *
 * Two strategies, chosen by batch size:
 *  - batch below PR_TILE_MIN_BATCH: one sparse dot product per output row (CSR SpMV), the
 *    x entries fetched with AVX2 gathers (8 nonzeros per instruction).
 *  - larger batches: x is transposed tile by tile into [cols, 64] so that every nonzero w[o,i]
 *    becomes a contiguous axpy y[o, tile] += w * xT[i, tile], with the 64 outputs of the tile
 *    held in registers for the whole row. That is what beats a dense sgemm once most weights
 *    are pruned: work is proportional to the nonzeros, and the inner loop is as regular as a
 *    GEMM micro-kernel. With AVX-512 and enough nonzeros per row, W is also walked in panels
 *    of 128 columns so the tile rows a panel needs stay in L1. pr_sparse_matmul_dense is the
 *    same loop on a B that already has that layout (im2col columns).
 * Work is split over a small persistent thread pool (spawning threads per call costs more
 * than a whole batch-1 product), by output rows for SpMV and by batch columns for tiles.
 * AVX2/FMA and AVX-512 functions carry target attributes and are chosen at run time, because
 * the build does not use -march=native; the portable C loops are the fallback and the
 * reference the tests compare every path with. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../threads.h"
#include "sparse.h"

/* -DPR_SPARSE_NO_SIMD builds the portable code alone, as on a CPU without x86 SIMD. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(PR_SPARSE_NO_SIMD)
#include <immintrin.h>
#define PR_HAVE_AVX2_CODE 1
#define AVX2 __attribute__((target("avx2,fma")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma")))
#endif

#define INLINE static inline __attribute__((always_inline))
#define PR_MAX_PARTS 64
#define PR_TILE 64              /* batch columns per tile: 8 AVX2 accumulators */
#define PR_TILE_MIN_BATCH 8     /* below this, per-sample SpMV beats transposing */
#define PR_PAR_MIN_WORK 32768   /* multiply-adds below which waking workers costs more */
#define PR_POOL_SPIN_NS 50000   /* how long a worker spins for the next job before sleeping */
#define PR_PANEL 128           /* columns of W per L1 panel: 128 rows of a 64-wide tile = 32 KB */
#define PR_PREFETCH 4           /* nonzeros ahead to prefetch rows of b */

/* ---- configuration ---- */

/* Atomic because a host may set them on one thread while another runs a kernel. */
static atomic_int g_kernel = PR_SPARSE_KERNEL_AUTO;
static atomic_int g_threads_override; /* 0: follow pr_threads() */

void pr_sparse_set_kernel(pr_sparse_kernel k) { g_kernel = k; }
void pr_sparse_set_threads(int n) { g_threads_override = n > 0 ? n : 0; }

int pr_sparse_threads(void)
{
    int n = atomic_load(&g_threads_override);
    if (n <= 0)
        n = pr_threads();
    return n < 1 ? 1 : n > PR_MAX_PARTS ? PR_MAX_PARTS : n;
}

/* The best code path this CPU runs: 2 AVX-512F, 1 AVX2+FMA, 0 portable C. */
static int cpu_level(void)
{
#ifdef PR_HAVE_AVX2_CODE
    static atomic_int cached = -1;
    int level = atomic_load(&cached);
    if (level < 0) {
        int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        level = avx2 && __builtin_cpu_supports("avx512f") ? 2 : avx2;
        atomic_store(&cached, level);
    }
    return level;
#else
    return 0;
#endif
}

static const char *const level_names[] = {"generic", "avx2", "avx512"};

const char *pr_sparse_kernel_name(void) { return level_names[cpu_level()]; }

/* The path kernels use now: the requested one capped at what the CPU has. */
static int simd_level(void)
{
    int cpu = cpu_level();
    switch (atomic_load(&g_kernel)) {
    case PR_SPARSE_KERNEL_GENERIC: return 0;
    case PR_SPARSE_KERNEL_AVX2: return cpu < 1 ? cpu : 1;
    default: return cpu;
    }
}

/* ---- thread pool ----
 * A job is `fn(ctx, part)` for parts 0..nparts-1. Parts are claimed one at a time through
 * one atomic word, by the workers and by the caller alike, so a worker the OS has not
 * scheduled yet delays nothing: the caller takes its part instead. (On a busy machine a
 * fixed part-per-thread split made batch-1 products 10x slower while the caller waited for a
 * descheduled worker.) Idle workers spin for a few tens of microseconds before sleeping on a
 * condition variable: a batch-1 product takes about 10 us, less than a futex wake-up on a VM,
 * and network layers call kernels back to back, so hot workers pick the next job up at once
 * while an idle process still ends up sleeping. One job at a time: a second caller that finds
 * the pool busy runs all its parts itself. */

typedef void (*pool_fn)(void *ctx, int part);

/* The claim word: generation << 16 | nparts << 8 | next unclaimed part. A claim succeeds
 * only for the generation the claimer saw and while parts remain, so a late worker can never
 * take a part of a finished or newer job. */
#define CLAIM_GEN(w) ((w) >> 16)
#define CLAIM_NPARTS(w) ((int)(((w) >> 8) & 0xFF))
#define CLAIM_NEXT(w) ((int)((w) & 0xFF))

static pthread_mutex_t pool_call_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_go = PTHREAD_COND_INITIALIZER;
static pthread_cond_t pool_done = PTHREAD_COND_INITIALIZER;
static int pool_nworkers; /* under pool_mu */
static atomic_ullong pool_claim;
static atomic_int pool_pending; /* parts not finished yet */
/* Written only while no claim can succeed; read only after a successful claim. */
static pool_fn pool_task;
static void *pool_ctx;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Claims the next part of generation `gen`, or returns -1 when none is left. */
static int pool_claim_part(unsigned long long gen)
{
    unsigned long long w = atomic_load(&pool_claim);
    while (CLAIM_GEN(w) == gen && CLAIM_NEXT(w) < CLAIM_NPARTS(w))
        if (atomic_compare_exchange_weak(&pool_claim, &w, w + 1))
            return CLAIM_NEXT(w);
    return -1;
}

/* Runs parts of generation `gen` until none is left to claim. */
static void pool_work(unsigned long long gen)
{
    int p;
    while ((p = pool_claim_part(gen)) >= 0) {
        pool_task(pool_ctx, p);
        if (atomic_fetch_sub(&pool_pending, 1) == 1) {
            pthread_mutex_lock(&pool_mu);
            pthread_cond_signal(&pool_done);
            pthread_mutex_unlock(&pool_mu);
        }
    }
}

static void *pool_main(void *arg)
{
    unsigned long long seen = (unsigned long long)(uintptr_t)arg;
    for (;;) {
        /* Spin a while (reading the clock every 64 pauses: a pause lasts from a few to ~100
         * cycles depending on the CPU), then sleep. */
        int64_t end = now_ns() + PR_POOL_SPIN_NS;
        for (int i = 1; CLAIM_GEN(atomic_load(&pool_claim)) == seen; i++) {
            cpu_relax();
            if (!(i & 63) && now_ns() > end) {
                pthread_mutex_lock(&pool_mu);
                while (CLAIM_GEN(atomic_load(&pool_claim)) == seen)
                    pthread_cond_wait(&pool_go, &pool_mu);
                pthread_mutex_unlock(&pool_mu);
                break;
            }
        }
        seen = CLAIM_GEN(atomic_load(&pool_claim));
        pool_work(seen);
    }
    return NULL;
}

/* Grows the pool to `want` workers under pool_mu; returns how many exist. */
static int pool_grow(int want)
{
    while (pool_nworkers < want && pool_nworkers + 1 < PR_MAX_PARTS) {
        pthread_attr_t attr;
        pthread_t t;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        uintptr_t gen = (uintptr_t)CLAIM_GEN(atomic_load(&pool_claim));
        int rc = pthread_create(&t, &attr, pool_main, (void *)gen);
        pthread_attr_destroy(&attr);
        if (rc != 0)
            break; /* run with fewer threads rather than fail */
        pool_nworkers++;
    }
    return pool_nworkers;
}

static void pool_run(pool_fn fn, void *ctx, int nparts)
{
    if (nparts > 1 && pthread_mutex_trylock(&pool_call_mu) == 0) {
        pthread_mutex_lock(&pool_mu);
        int workers = pool_grow(nparts - 1);
        pthread_mutex_unlock(&pool_mu);
        if (workers > 0) {
            /* The previous job is finished, so no claim can succeed while these change. */
            pool_task = fn;
            pool_ctx = ctx;
            atomic_store(&pool_pending, nparts);
            unsigned long long gen = CLAIM_GEN(atomic_load(&pool_claim)) + 1;
            atomic_store(&pool_claim, gen << 16 | (unsigned long long)nparts << 8);
            pthread_mutex_lock(&pool_mu);
            pthread_cond_broadcast(&pool_go);
            pthread_mutex_unlock(&pool_mu);
            pool_work(gen);
            int64_t end = now_ns() + PR_POOL_SPIN_NS;
            for (int i = 1; atomic_load(&pool_pending) > 0; i++) {
                cpu_relax();
                if (!(i & 63) && now_ns() > end)
                    break;
            }
            pthread_mutex_lock(&pool_mu);
            while (atomic_load(&pool_pending) > 0)
                pthread_cond_wait(&pool_done, &pool_mu);
            pthread_mutex_unlock(&pool_mu);
            pthread_mutex_unlock(&pool_call_mu);
            return;
        }
        pthread_mutex_unlock(&pool_call_mu);
    }
    for (int p = 0; p < nparts; p++)
        fn(ctx, p);
}

/* ---- index access ---- */

INLINE int64_t ld_idx(const void *ci, int wide, int64_t k)
{
    return wide ? ((const int32_t *)ci)[k] : ((const uint16_t *)ci)[k];
}

static inline int64_t rowp(const pr_sparse *s, int64_t rb)
{
    return s->ptr_type == PR_SPARSE_I64 ? ((const int64_t *)s->row_ptr)[rb]
                                        : ((const int32_t *)s->row_ptr)[rb];
}

static int64_t row_blocks(const pr_sparse *s) { return (s->rows + s->block_rows - 1) / s->block_rows; }

/* N:M rows are decoded into (value, int32 column) lists so they share the CSR loops; slots
 * past the last column (zero by pr_sparse_check) are dropped. Returns the list length. */
static int64_t nm_decode(const pr_sparse *s, int64_t r, float *v, int32_t *col)
{
    int64_t groups = (s->cols + 3) / 4, L = 0;
    const uint8_t *off = (const uint8_t *)s->col_idx + r * groups * 2;
    const float *val = s->values + r * groups * 2;
    for (int64_t k = 0; k < groups * 2; k++) {
        int64_t c = (k >> 1) * 4 + off[k];
        if (c < s->cols) {
            v[L] = val[k];
            col[L++] = (int32_t)c;
        }
    }
    return L;
}

/* ---- generic kernels (any CPU) ---- */

INLINE float dot_generic(const float *v, const void *ci, int wide, int64_t L, const float *x)
{
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t k = 0;
    for (; k + 4 <= L; k += 4) {
        s0 += v[k] * x[ld_idx(ci, wide, k)];
        s1 += v[k + 1] * x[ld_idx(ci, wide, k + 1)];
        s2 += v[k + 2] * x[ld_idx(ci, wide, k + 2)];
        s3 += v[k + 3] * x[ld_idx(ci, wide, k + 3)];
    }
    for (; k < L; k++)
        s0 += v[k] * x[ld_idx(ci, wide, k)];
    return (s0 + s1) + (s2 + s3);
}

/* y[r] for row blocks [rb0, rb1) of one sample. scratch: 2*cols floats (N:M only). */
static void spmv_generic(const pr_sparse *s, const float *x, float *y, const float *bias,
                         int64_t rb0, int64_t rb1, float *scratch)
{
    int wide = s->idx_type == PR_SPARSE_I32;
    switch (s->format) {
    case PR_SPARSE_CSR:
        for (int64_t r = rb0; r < rb1; r++) {
            int64_t k0 = rowp(s, r), k1 = rowp(s, r + 1);
            const void *ci = wide ? (const void *)((const int32_t *)s->col_idx + k0)
                                  : (const void *)((const uint16_t *)s->col_idx + k0);
            y[r] = (bias ? bias[r] : 0.0f) + dot_generic(s->values + k0, ci, wide, k1 - k0, x);
        }
        break;
    case PR_SPARSE_NM_2_4: {
        float *v = scratch;
        int32_t *col = (int32_t *)(scratch + s->cols);
        for (int64_t r = rb0; r < rb1; r++) {
            int64_t L = nm_decode(s, r, v, col);
            y[r] = (bias ? bias[r] : 0.0f) + dot_generic(v, col, 1, L, x);
        }
        break;
    }
    case PR_SPARSE_BSR_1X4:
        for (int64_t r = rb0; r < rb1; r++) {
            float sum = bias ? bias[r] : 0.0f;
            for (int64_t k = rowp(s, r); k < rowp(s, r + 1); k++) {
                int64_t c0 = ld_idx(s->col_idx, wide, k) * 4;
                const float *v = s->values + k * 4;
                for (int j = 0; j < 4 && c0 + j < s->cols; j++)
                    sum += v[j] * x[c0 + j];
            }
            y[r] = sum;
        }
        break;
    case PR_SPARSE_BSR_4X1:
        for (int64_t rb = rb0; rb < rb1; rb++) {
            float acc[4] = {0, 0, 0, 0};
            for (int64_t k = rowp(s, rb); k < rowp(s, rb + 1); k++) {
                float xv = x[ld_idx(s->col_idx, wide, k)];
                const float *v = s->values + k * 4;
                for (int i = 0; i < 4; i++)
                    acc[i] += v[i] * xv;
            }
            for (int i = 0; i < 4 && rb * 4 + i < s->rows; i++)
                y[rb * 4 + i] = acc[i] + (bias ? bias[rb * 4 + i] : 0.0f);
        }
        break;
    default:
        break;
    }
}

/* c[0:w] = init + sum_k v[k] * b[col(k) * ldb + 0:w]; blocks of bc adjacent columns. */
INLINE void mm_row_generic(const float *v, const void *ci, int wide, int64_t L, int bc,
                           int64_t cols, const float *b, int64_t ldb, float *c, int64_t w,
                           float init)
{
    for (int64_t j = 0; j < w; j++)
        c[j] = init;
    for (int64_t k = 0; k < L; k++) {
        int64_t c0 = ld_idx(ci, wide, k) * bc;
        for (int j = 0; j < bc && c0 + j < cols; j++) {
            float wv = v[k * bc + j];
            const float *p = b + (c0 + j) * ldb;
            for (int64_t t = 0; t < w; t++)
                c[t] += wv * p[t];
        }
    }
}

/* c[r, 0:w] for row blocks [rb0, rb1). scratch: 2*cols floats (N:M only). */
static void mm_generic(const pr_sparse *s, const float *b, int64_t ldb, float *c, int64_t ldc,
                       int64_t w, const float *bias, int64_t rb0, int64_t rb1, float *scratch)
{
    int wide = s->idx_type == PR_SPARSE_I32;
    if (s->format == PR_SPARSE_BSR_4X1) {
        for (int64_t rb = rb0; rb < rb1; rb++) {
            int nr = s->rows - rb * 4 < 4 ? (int)(s->rows - rb * 4) : 4;
            for (int i = 0; i < nr; i++)
                for (int64_t t = 0; t < w; t++)
                    c[(rb * 4 + i) * ldc + t] = bias ? bias[rb * 4 + i] : 0.0f;
            for (int64_t k = rowp(s, rb); k < rowp(s, rb + 1); k++) {
                const float *p = b + ld_idx(s->col_idx, wide, k) * ldb;
                const float *v = s->values + k * 4;
                for (int i = 0; i < nr; i++) {
                    float *cr = c + (rb * 4 + i) * ldc;
                    for (int64_t t = 0; t < w; t++)
                        cr[t] += v[i] * p[t];
                }
            }
        }
        return;
    }
    for (int64_t r = rb0; r < rb1; r++) {
        float init = bias ? bias[r] : 0.0f;
        if (s->format == PR_SPARSE_NM_2_4) {
            int64_t L = nm_decode(s, r, scratch, (int32_t *)(scratch + s->cols));
            mm_row_generic(scratch, scratch + s->cols, 1, L, 1, s->cols, b, ldb, c + r * ldc, w, init);
            continue;
        }
        int64_t k0 = rowp(s, r), k1 = rowp(s, r + 1);
        int bc = s->block_cols;
        const void *ci = wide ? (const void *)((const int32_t *)s->col_idx + k0)
                              : (const void *)((const uint16_t *)s->col_idx + k0);
        mm_row_generic(s->values + k0 * bc, ci, wide, k1 - k0, bc, s->cols, b, ldb, c + r * ldc, w, init);
    }
}

/* ---- AVX2 kernels ---- */
#ifdef PR_HAVE_AVX2_CODE

AVX2_INLINE float hsum256(__m256 a)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2_INLINE __m256i ld_idx8(const void *ci, int wide, int64_t k)
{
    if (wide)
        return _mm256_loadu_si256((const __m256i *)((const int32_t *)ci + k));
    return _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)ci + k)));
}

/* Gathers x at 8 indices per step; two accumulators hide the FMA latency. */
AVX2_INLINE float dot_avx2(const float *v, const void *ci, int wide, int64_t L, const float *x)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= L; k += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(v + k), _mm256_i32gather_ps(x, ld_idx8(ci, wide, k), 4), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(v + k + 8),
                             _mm256_i32gather_ps(x, ld_idx8(ci, wide, k + 8), 4), a1);
    }
    if (k + 8 <= L) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(v + k), _mm256_i32gather_ps(x, ld_idx8(ci, wide, k), 4), a0);
        k += 8;
    }
    float sum = hsum256(_mm256_add_ps(a0, a1));
    for (; k < L; k++)
        sum += v[k] * x[ld_idx(ci, wide, k)];
    return sum;
}

/* One N:M row without decoding it: 8 slots cover 4 whole groups, whose columns are the
 * group starts plus the stored offsets, so the gather indices are one add away. Slots of a
 * last, partial group may point past the last column and go through the checked loop. */
AVX2_INLINE float dot_nm_avx2(const pr_sparse *s, int64_t r, const float *x)
{
    int64_t groups = (s->cols + 3) / 4, full = s->cols / 4;
    const uint8_t *off = (const uint8_t *)s->col_idx + r * groups * 2;
    const float *val = s->values + r * groups * 2;
    const __m256i lanes = _mm256_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= full * 2; k += 16) {
        __m256i i0 = _mm256_add_epi32(_mm256_set1_epi32((int)(k * 2)), lanes);
        __m256i i1 = _mm256_add_epi32(_mm256_set1_epi32((int)(k * 2 + 16)), lanes);
        i0 = _mm256_add_epi32(i0, _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(off + k))));
        i1 = _mm256_add_epi32(i1, _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(off + k + 8))));
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(val + k), _mm256_i32gather_ps(x, i0, 4), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(val + k + 8), _mm256_i32gather_ps(x, i1, 4), a1);
    }
    if (k + 8 <= full * 2) {
        __m256i i0 = _mm256_add_epi32(_mm256_set1_epi32((int)(k * 2)), lanes);
        i0 = _mm256_add_epi32(i0, _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(off + k))));
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(val + k), _mm256_i32gather_ps(x, i0, 4), a0);
        k += 8;
    }
    float sum = hsum256(_mm256_add_ps(a0, a1));
    for (; k < groups * 2; k++) {
        int64_t c = (k >> 1) * 4 + off[k];
        if (c < s->cols)
            sum += val[k] * x[c];
    }
    return sum;
}

static AVX2 void spmv_avx2(const pr_sparse *s, const float *x, float *y, const float *bias,
                           int64_t rb0, int64_t rb1, float *scratch)
{
    int wide = s->idx_type == PR_SPARSE_I32;
    switch (s->format) {
    case PR_SPARSE_CSR:
        for (int64_t r = rb0; r < rb1; r++) {
            int64_t k0 = rowp(s, r), k1 = rowp(s, r + 1);
            float b = bias ? bias[r] : 0.0f;
            if (wide)
                y[r] = b + dot_avx2(s->values + k0, (const int32_t *)s->col_idx + k0, 1, k1 - k0, x);
            else
                y[r] = b + dot_avx2(s->values + k0, (const uint16_t *)s->col_idx + k0, 0, k1 - k0, x);
        }
        break;
    case PR_SPARSE_NM_2_4:
        for (int64_t r = rb0; r < rb1; r++)
            y[r] = (bias ? bias[r] : 0.0f) + dot_nm_avx2(s, r, x);
        break;
    case PR_SPARSE_BSR_1X4:
        for (int64_t r = rb0; r < rb1; r++) {
            __m128 a0 = _mm_setzero_ps(), a1 = _mm_setzero_ps();
            float tail = 0.0f;
            int64_t k = rowp(s, r), k1 = rowp(s, r + 1);
            /* Only the last block of a row can run past the last column. */
            if (k < k1 && ld_idx(s->col_idx, wide, k1 - 1) * 4 + 4 > s->cols) {
                k1--;
                int64_t c0 = ld_idx(s->col_idx, wide, k1) * 4;
                for (int j = 0; c0 + j < s->cols; j++)
                    tail += s->values[k1 * 4 + j] * x[c0 + j];
            }
            for (; k + 2 <= k1; k += 2) {
                a0 = _mm_fmadd_ps(_mm_loadu_ps(s->values + k * 4),
                                  _mm_loadu_ps(x + ld_idx(s->col_idx, wide, k) * 4), a0);
                a1 = _mm_fmadd_ps(_mm_loadu_ps(s->values + k * 4 + 4),
                                  _mm_loadu_ps(x + ld_idx(s->col_idx, wide, k + 1) * 4), a1);
            }
            if (k < k1)
                a0 = _mm_fmadd_ps(_mm_loadu_ps(s->values + k * 4),
                                  _mm_loadu_ps(x + ld_idx(s->col_idx, wide, k) * 4), a0);
            a0 = _mm_add_ps(a0, a1);
            a0 = _mm_add_ps(a0, _mm_movehl_ps(a0, a0));
            a0 = _mm_add_ss(a0, _mm_movehdup_ps(a0));
            y[r] = (bias ? bias[r] : 0.0f) + _mm_cvtss_f32(a0) + tail;
        }
        break;
    case PR_SPARSE_BSR_4X1:
        for (int64_t rb = rb0; rb < rb1; rb++) {
            __m128 a0 = _mm_setzero_ps(), a1 = _mm_setzero_ps();
            int64_t k = rowp(s, rb), k1 = rowp(s, rb + 1);
            for (; k + 2 <= k1; k += 2) {
                a0 = _mm_fmadd_ps(_mm_loadu_ps(s->values + k * 4),
                                  _mm_set1_ps(x[ld_idx(s->col_idx, wide, k)]), a0);
                a1 = _mm_fmadd_ps(_mm_loadu_ps(s->values + k * 4 + 4),
                                  _mm_set1_ps(x[ld_idx(s->col_idx, wide, k + 1)]), a1);
            }
            if (k < k1)
                a0 = _mm_fmadd_ps(_mm_loadu_ps(s->values + k * 4),
                                  _mm_set1_ps(x[ld_idx(s->col_idx, wide, k)]), a0);
            float acc[4];
            _mm_storeu_ps(acc, _mm_add_ps(a0, a1));
            for (int i = 0; i < 4 && rb * 4 + i < s->rows; i++)
                y[rb * 4 + i] = acc[i] + (bias ? bias[rb * 4 + i] : 0.0f);
        }
        break;
    default:
        break;
    }
}

/* Lane mask for the first n (< 8) lanes. */
AVX2_INLINE __m256i lane_mask(int64_t n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* c[0:w] = init + sum_k v[k] * b[col(k) * ldb + 0:w], blocks of bc (1 or 4) adjacent columns.
 * 64 outputs live in 8 registers across the whole row, so each nonzero costs 8 loads and
 * 8 FMAs and nothing is stored until the row is done. */
AVX2_INLINE void mm_row_avx2(const float *v, const void *ci, int wide, int64_t L, int bc,
                             int64_t cols, const float *b, int64_t ldb, float *c, int64_t w,
                             float init)
{
    const __m256 vinit = _mm256_set1_ps(init);
    int64_t j = 0;
    for (; j + 64 <= w; j += 64) {
        __m256 a0 = vinit, a1 = vinit, a2 = vinit, a3 = vinit;
        __m256 a4 = vinit, a5 = vinit, a6 = vinit, a7 = vinit;
        for (int64_t k = 0; k < L; k++) {
            int64_t c0 = ld_idx(ci, wide, k) * bc;
            int jn = bc == 1 ? 1 : (cols - c0 < bc ? (int)(cols - c0) : bc);
            /* Rows of b are visited in an order no hardware prefetcher can guess, and each
             * is 4 cache lines; fetching a few nonzeros ahead hides the L2 latency. */
            if (k + PR_PREFETCH < L) {
                const char *pf = (const char *)(b + ld_idx(ci, wide, k + PR_PREFETCH) * bc * ldb + j);
                _mm_prefetch(pf, _MM_HINT_T0);
                _mm_prefetch(pf + 64, _MM_HINT_T0);
                _mm_prefetch(pf + 128, _MM_HINT_T0);
                _mm_prefetch(pf + 192, _MM_HINT_T0);
            }
            for (int q = 0; q < jn; q++) {
                __m256 wv = _mm256_broadcast_ss(v + k * bc + q);
                const float *p = b + (c0 + q) * ldb + j;
                a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p), a0);
                a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 8), a1);
                a2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 16), a2);
                a3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 24), a3);
                a4 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 32), a4);
                a5 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 40), a5);
                a6 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 48), a6);
                a7 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 56), a7);
            }
        }
        _mm256_storeu_ps(c + j, a0);
        _mm256_storeu_ps(c + j + 8, a1);
        _mm256_storeu_ps(c + j + 16, a2);
        _mm256_storeu_ps(c + j + 24, a3);
        _mm256_storeu_ps(c + j + 32, a4);
        _mm256_storeu_ps(c + j + 40, a5);
        _mm256_storeu_ps(c + j + 48, a6);
        _mm256_storeu_ps(c + j + 56, a7);
    }
    for (; j + 16 <= w; j += 16) {
        __m256 a0 = vinit, a1 = vinit;
        for (int64_t k = 0; k < L; k++) {
            int64_t c0 = ld_idx(ci, wide, k) * bc;
            int jn = bc == 1 ? 1 : (cols - c0 < bc ? (int)(cols - c0) : bc);
            for (int q = 0; q < jn; q++) {
                __m256 wv = _mm256_broadcast_ss(v + k * bc + q);
                const float *p = b + (c0 + q) * ldb + j;
                a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p), a0);
                a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 8), a1);
            }
        }
        _mm256_storeu_ps(c + j, a0);
        _mm256_storeu_ps(c + j + 8, a1);
    }
    for (; j < w; j += 8) {
        /* The last chunk may be partial: masked loads never touch memory past the row. */
        __m256i m = lane_mask(w - j < 8 ? w - j : 8);
        __m256 a0 = vinit;
        for (int64_t k = 0; k < L; k++) {
            int64_t c0 = ld_idx(ci, wide, k) * bc;
            int jn = bc == 1 ? 1 : (cols - c0 < bc ? (int)(cols - c0) : bc);
            for (int q = 0; q < jn; q++)
                a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(v + k * bc + q),
                                     _mm256_maskload_ps(b + (c0 + q) * ldb + j, m), a0);
        }
        _mm256_maskstore_ps(c + j, m, a0);
    }
}

/* Four output rows share each loaded row of b: 8 accumulators over 16 columns. */
static AVX2 void mm_rows4_avx2(const float *v, const void *ci, int wide, int64_t L, int nr,
                               const float *b, int64_t ldb, float *c, int64_t ldc, int64_t w,
                               const float *bias4)
{
    float init[4];
    for (int i = 0; i < 4; i++)
        init[i] = bias4 && i < nr ? bias4[i] : 0.0f;
    int64_t j = 0;
    for (; j < w; j += 16) {
        int64_t n0 = w - j < 8 ? w - j : 8, n1 = w - j - 8 < 0 ? 0 : (w - j - 8 < 8 ? w - j - 8 : 8);
        __m256i m0 = lane_mask(n0), m1 = lane_mask(n1);
        __m256 a[4][2];
        for (int i = 0; i < 4; i++)
            a[i][0] = a[i][1] = _mm256_set1_ps(init[i]);
        for (int64_t k = 0; k < L; k++) {
            const float *p = b + ld_idx(ci, wide, k) * ldb + j;
            __m256 x0 = _mm256_maskload_ps(p, m0), x1 = _mm256_maskload_ps(p + 8, m1);
            for (int i = 0; i < 4; i++) {
                __m256 wv = _mm256_broadcast_ss(v + k * 4 + i);
                a[i][0] = _mm256_fmadd_ps(wv, x0, a[i][0]);
                a[i][1] = _mm256_fmadd_ps(wv, x1, a[i][1]);
            }
        }
        for (int i = 0; i < nr; i++) {
            _mm256_maskstore_ps(c + i * ldc + j, m0, a[i][0]);
            _mm256_maskstore_ps(c + i * ldc + j + 8, m1, a[i][1]);
        }
    }
}

static AVX2 void mm_avx2(const pr_sparse *s, const float *b, int64_t ldb, float *c, int64_t ldc,
                         int64_t w, const float *bias, int64_t rb0, int64_t rb1, float *scratch)
{
    int wide = s->idx_type == PR_SPARSE_I32;
    for (int64_t rb = rb0; rb < rb1; rb++) {
        int64_t k0, k1;
        if (s->format == PR_SPARSE_NM_2_4) {
            int64_t L = nm_decode(s, rb, scratch, (int32_t *)(scratch + s->cols));
            mm_row_avx2(scratch, scratch + s->cols, 1, L, 1, s->cols, b, ldb, c + rb * ldc, w,
                        bias ? bias[rb] : 0.0f);
            continue;
        }
        k0 = rowp(s, rb);
        k1 = rowp(s, rb + 1);
        if (s->format == PR_SPARSE_BSR_4X1) {
            int nr = s->rows - rb * 4 < 4 ? (int)(s->rows - rb * 4) : 4;
            const void *ci = wide ? (const void *)((const int32_t *)s->col_idx + k0)
                                  : (const void *)((const uint16_t *)s->col_idx + k0);
            mm_rows4_avx2(s->values + k0 * 4, ci, wide, k1 - k0, nr, b, ldb, c + rb * 4 * ldc,
                          ldc, w, bias ? bias + rb * 4 : NULL);
            continue;
        }
        float init = bias ? bias[rb] : 0.0f;
        if (s->format == PR_SPARSE_BSR_1X4) {
            if (wide)
                mm_row_avx2(s->values + k0 * 4, (const int32_t *)s->col_idx + k0, 1, k1 - k0, 4,
                            s->cols, b, ldb, c + rb * ldc, w, init);
            else
                mm_row_avx2(s->values + k0 * 4, (const uint16_t *)s->col_idx + k0, 0, k1 - k0, 4,
                            s->cols, b, ldb, c + rb * ldc, w, init);
        } else if (wide) {
            mm_row_avx2(s->values + k0, (const int32_t *)s->col_idx + k0, 1, k1 - k0, 1, s->cols,
                        b, ldb, c + rb * ldc, w, init);
        } else {
            mm_row_avx2(s->values + k0, (const uint16_t *)s->col_idx + k0, 0, k1 - k0, 1, s->cols,
                        b, ldb, c + rb * ldc, w, init);
        }
    }
}

/* AVX-512 version of the row axpy (64 outputs in 4 registers, or 128 in 8, so each nonzero
 * costs half the instructions of the AVX2 loop). There is no AVX-512 SpMV: 16-lane gathers
 * measured no faster than the AVX2 ones (500x800 at 90%: 26.5 vs 24.9 us, slower at 99%). */
#define AVX512 __attribute__((target("avx512f,avx2,fma")))
#define AVX512_INLINE static inline __attribute__((always_inline, target("avx512f,avx2,fma")))

#define FMA_CHUNK512(NACC)                                                                     \
    do {                                                                                       \
        __m512 a[NACC];                                                                        \
        for (int t = 0; t < NACC; t++)                                                         \
            a[t] = vinit;                                                                      \
        for (int64_t k = 0; k < L; k++) {                                                      \
            int64_t c0 = ld_idx(ci, wide, k) * bc;                                             \
            int jn = bc == 1 ? 1 : (cols - c0 < bc ? (int)(cols - c0) : bc);                   \
            if (k + PR_PREFETCH < L) {                                                         \
                const char *pf = (const char *)(b + ld_idx(ci, wide, k + PR_PREFETCH) * bc * ldb + j); \
                for (int t = 0; t < NACC; t++)                                                 \
                    _mm_prefetch(pf + 64 * t, _MM_HINT_T0);                                    \
            }                                                                                  \
            for (int q = 0; q < jn; q++) {                                                     \
                __m512 wv = _mm512_set1_ps(v[k * bc + q]);                                     \
                const float *p = b + (c0 + q) * ldb + j;                                       \
                for (int t = 0; t < NACC; t++)                                                 \
                    a[t] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(p + 16 * t), a[t]);             \
            }                                                                                  \
        }                                                                                      \
        for (int t = 0; t < NACC; t++)                                                         \
            _mm512_storeu_ps(c + j + 16 * t, a[t]);                                            \
    } while (0)

AVX512_INLINE void mm_row_avx512(const float *v, const void *ci, int wide, int64_t L, int bc,
                                 int64_t cols, const float *b, int64_t ldb, float *c, int64_t w,
                                 float init)
{
    const __m512 vinit = _mm512_set1_ps(init);
    int64_t j = 0;
    for (; j + 128 <= w; j += 128)
        FMA_CHUNK512(8);
    for (; j + 64 <= w; j += 64)
        FMA_CHUNK512(4);
    for (; j < w; j += 16) {
        __mmask16 m = (__mmask16)(w - j >= 16 ? 0xFFFF : (1u << (w - j)) - 1);
        __m512 a0 = vinit;
        for (int64_t k = 0; k < L; k++) {
            int64_t c0 = ld_idx(ci, wide, k) * bc;
            int jn = bc == 1 ? 1 : (cols - c0 < bc ? (int)(cols - c0) : bc);
            for (int q = 0; q < jn; q++)
                a0 = _mm512_fmadd_ps(_mm512_set1_ps(v[k * bc + q]),
                                     _mm512_maskz_loadu_ps(m, b + (c0 + q) * ldb + j), a0);
        }
        _mm512_mask_storeu_ps(c + j, m, a0);
    }
}

static AVX512 void mm_avx512(const pr_sparse *s, const float *b, int64_t ldb, float *c, int64_t ldc,
                             int64_t w, const float *bias, int64_t rb0, int64_t rb1, float *scratch)
{
    int wide = s->idx_type == PR_SPARSE_I32;
    for (int64_t r = rb0; r < rb1; r++) {
        float init = bias ? bias[r] : 0.0f;
        if (s->format == PR_SPARSE_NM_2_4) {
            int64_t L = nm_decode(s, r, scratch, (int32_t *)(scratch + s->cols));
            mm_row_avx512(scratch, scratch + s->cols, 1, L, 1, s->cols, b, ldb, c + r * ldc, w, init);
            continue;
        }
        int64_t k0 = rowp(s, r), k1 = rowp(s, r + 1);
        int bc = s->block_cols;
        if (bc == 4) {
            if (wide)
                mm_row_avx512(s->values + k0 * 4, (const int32_t *)s->col_idx + k0, 1, k1 - k0, 4,
                              s->cols, b, ldb, c + r * ldc, w, init);
            else
                mm_row_avx512(s->values + k0 * 4, (const uint16_t *)s->col_idx + k0, 0, k1 - k0, 4,
                              s->cols, b, ldb, c + r * ldc, w, init);
        } else if (wide) {
            mm_row_avx512(s->values + k0, (const int32_t *)s->col_idx + k0, 1, k1 - k0, 1, s->cols,
                          b, ldb, c + r * ldc, w, init);
        } else {
            mm_row_avx512(s->values + k0, (const uint16_t *)s->col_idx + k0, 0, k1 - k0, 1, s->cols,
                          b, ldb, c + r * ldc, w, init);
        }
    }
}

/* CSR times a full 64-column tile, in panels of PR_PANEL columns of W: the panel's rows of b
 * (PR_PANEL x 256 bytes) stay in L1 while every row of W adds its nonzeros of that panel,
 * instead of each nonzero fetching its row of b from L2. The partial sums make one round
 * trip through c per row and panel. cur: [rows] int64 scratch (the next nonzero of each row). */
static AVX512 void mm_csr_panels_avx512(const pr_sparse *s, const float *b, float *c,
                                        const float *bias, int64_t *cur)
{
    int wide = s->idx_type == PR_SPARSE_I32;
    const void *ci = s->col_idx;
    for (int64_t r = 0; r < s->rows; r++)
        cur[r] = rowp(s, r);
    for (int64_t p0 = 0; p0 < s->cols; p0 += PR_PANEL) {
        int64_t pend = p0 + PR_PANEL;
        for (int64_t r = 0; r < s->rows; r++) {
            int64_t k = cur[r], k1 = rowp(s, r + 1);
            float *cr = c + r * PR_TILE;
            __m512 a0, a1, a2, a3;
            if (p0 == 0) {
                a0 = a1 = a2 = a3 = _mm512_set1_ps(bias ? bias[r] : 0.0f);
            } else {
                a0 = _mm512_loadu_ps(cr);
                a1 = _mm512_loadu_ps(cr + 16);
                a2 = _mm512_loadu_ps(cr + 32);
                a3 = _mm512_loadu_ps(cr + 48);
            }
            for (; k < k1; k++) {
                int64_t col = ld_idx(ci, wide, k);
                if (col >= pend)
                    break;
                __m512 wv = _mm512_set1_ps(s->values[k]);
                const float *p = b + col * PR_TILE;
                a0 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(p), a0);
                a1 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(p + 16), a1);
                a2 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(p + 32), a2);
                a3 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(p + 48), a3);
            }
            cur[r] = k;
            _mm512_storeu_ps(cr, a0);
            _mm512_storeu_ps(cr + 16, a1);
            _mm512_storeu_ps(cr + 32, a2);
            _mm512_storeu_ps(cr + 48, a3);
        }
    }
}
#endif /* PR_HAVE_AVX2_CODE */

/* simd: 0 portable C, 1 AVX2+FMA, 2 AVX-512F (the batched CSR, 1x4 and N:M loops; SpMV and
 * 4x1 blocks stay on AVX2). */
static void spmv_range(int simd, const pr_sparse *s, const float *x, float *y, const float *bias,
                       int64_t rb0, int64_t rb1, float *scratch)
{
#ifdef PR_HAVE_AVX2_CODE
    if (simd >= 1) {
        spmv_avx2(s, x, y, bias, rb0, rb1, scratch);
        return;
    }
#endif
    spmv_generic(s, x, y, bias, rb0, rb1, scratch);
}

static void mm_range(int simd, const pr_sparse *s, const float *b, int64_t ldb, float *c,
                     int64_t ldc, int64_t w, const float *bias, int64_t rb0, int64_t rb1,
                     float *scratch)
{
#ifdef PR_HAVE_AVX2_CODE
    if (simd >= 2 && s->format != PR_SPARSE_BSR_4X1) {
        mm_avx512(s, b, ldb, c, ldc, w, bias, rb0, rb1, scratch);
        return;
    }
    if (simd >= 1) {
        mm_avx2(s, b, ldb, c, ldc, w, bias, rb0, rb1, scratch);
        return;
    }
#endif
    mm_generic(s, b, ldb, c, ldc, w, bias, rb0, rb1, scratch);
}

/* t[j * ldt + i] = a[i * lda + j] for i < m, j < n, in 16x16 blocks so both sides stay in
 * cache lines. */
static void transpose_generic(const float *a, int64_t lda, float *t, int64_t ldt, int64_t m, int64_t n)
{
    for (int64_t i0 = 0; i0 < m; i0 += 16)
        for (int64_t j0 = 0; j0 < n; j0 += 16) {
            int64_t i1 = i0 + 16 < m ? i0 + 16 : m, j1 = j0 + 16 < n ? j0 + 16 : n;
            for (int64_t j = j0; j < j1; j++)
                for (int64_t i = i0; i < i1; i++)
                    t[j * ldt + i] = a[i * lda + j];
        }
}

#ifdef PR_HAVE_AVX2_CODE
/* The same with 8x8 register transposes; the ragged edges go through the generic loop. The
 * batched linear transposes its input and output once per call, and scalar transposes cost
 * a fifth of the whole product at 90% sparsity. */
static AVX2 void transpose_avx2(const float *a, int64_t lda, float *t, int64_t ldt, int64_t m, int64_t n)
{
    int64_t m8 = m & ~(int64_t)7, n8 = n & ~(int64_t)7;
    for (int64_t i = 0; i < m8; i += 8)
        for (int64_t j = 0; j < n8; j += 8) {
            const float *p = a + i * lda + j;
            __m256 r0 = _mm256_loadu_ps(p), r1 = _mm256_loadu_ps(p + lda);
            __m256 r2 = _mm256_loadu_ps(p + 2 * lda), r3 = _mm256_loadu_ps(p + 3 * lda);
            __m256 r4 = _mm256_loadu_ps(p + 4 * lda), r5 = _mm256_loadu_ps(p + 5 * lda);
            __m256 r6 = _mm256_loadu_ps(p + 6 * lda), r7 = _mm256_loadu_ps(p + 7 * lda);
            __m256 u0 = _mm256_unpacklo_ps(r0, r1), u1 = _mm256_unpackhi_ps(r0, r1);
            __m256 u2 = _mm256_unpacklo_ps(r2, r3), u3 = _mm256_unpackhi_ps(r2, r3);
            __m256 u4 = _mm256_unpacklo_ps(r4, r5), u5 = _mm256_unpackhi_ps(r4, r5);
            __m256 u6 = _mm256_unpacklo_ps(r6, r7), u7 = _mm256_unpackhi_ps(r6, r7);
            __m256 s0 = _mm256_shuffle_ps(u0, u2, 0x44), s1 = _mm256_shuffle_ps(u0, u2, 0xEE);
            __m256 s2 = _mm256_shuffle_ps(u1, u3, 0x44), s3 = _mm256_shuffle_ps(u1, u3, 0xEE);
            __m256 s4 = _mm256_shuffle_ps(u4, u6, 0x44), s5 = _mm256_shuffle_ps(u4, u6, 0xEE);
            __m256 s6 = _mm256_shuffle_ps(u5, u7, 0x44), s7 = _mm256_shuffle_ps(u5, u7, 0xEE);
            float *q = t + j * ldt + i;
            _mm256_storeu_ps(q, _mm256_permute2f128_ps(s0, s4, 0x20));
            _mm256_storeu_ps(q + ldt, _mm256_permute2f128_ps(s1, s5, 0x20));
            _mm256_storeu_ps(q + 2 * ldt, _mm256_permute2f128_ps(s2, s6, 0x20));
            _mm256_storeu_ps(q + 3 * ldt, _mm256_permute2f128_ps(s3, s7, 0x20));
            _mm256_storeu_ps(q + 4 * ldt, _mm256_permute2f128_ps(s0, s4, 0x31));
            _mm256_storeu_ps(q + 5 * ldt, _mm256_permute2f128_ps(s1, s5, 0x31));
            _mm256_storeu_ps(q + 6 * ldt, _mm256_permute2f128_ps(s2, s6, 0x31));
            _mm256_storeu_ps(q + 7 * ldt, _mm256_permute2f128_ps(s3, s7, 0x31));
        }
    if (n8 < n) /* right strip, all rows */
        transpose_generic(a + n8, lda, t + n8 * ldt, ldt, m, n - n8);
    if (m8 < m) /* bottom strip, left of the right strip */
        transpose_generic(a + m8 * lda, lda, t + m8, ldt, m - m8, n8);
}
#endif

static void transpose(int simd, const float *a, int64_t lda, float *t, int64_t ldt, int64_t m, int64_t n)
{
#ifdef PR_HAVE_AVX2_CODE
    if (simd >= 1) {
        transpose_avx2(a, lda, t, ldt, m, n);
        return;
    }
#endif
    transpose_generic(a, lda, t, ldt, m, n);
}

/* Panels pay when each row has enough nonzeros per panel to amortise the partial-sum round
 * trip: measured on a 500x800 weight, 1.5x faster at 50% sparsity, even at 90% (13 per row
 * and panel), slower at 99%. */
#ifdef PR_HAVE_AVX2_CODE
static int use_panels(const pr_sparse *s)
{
    return s->format == PR_SPARSE_CSR && s->rows > 0 && s->cols > 0 &&
           s->nnz * PR_PANEL >= (int64_t)24 * s->rows * s->cols;
}
#endif

/* ---- jobs ---- */

enum { JOB_SPMV, JOB_TILES, JOB_MM_ROWS, JOB_MM_COLS };

typedef struct job {
    int kind, simd, nparts;
    const pr_sparse *s;
    const float *in;     /* x [batch, cols] or b [cols, n] */
    float *out;          /* y [batch, rows] or c [rows, n] */
    const float *bias;
    int64_t batch;       /* samples (SPMV, TILES) or columns n (MM) */
    int64_t lo[PR_MAX_PARTS + 1]; /* part p covers [lo[p], lo[p+1]) rows or columns */
    float *scratch;      /* scratch_per_part floats for each part */
    size_t scratch_per_part;
} job;

static void job_part(void *ctx, int p)
{
    job *J = ctx;
    const pr_sparse *s = J->s;
    float *scratch = J->scratch ? J->scratch + (size_t)p * J->scratch_per_part : NULL;
    int64_t lo = J->lo[p], hi = J->lo[p + 1];
    if (lo >= hi)
        return;
    switch (J->kind) {
    case JOB_SPMV:
        for (int64_t i = 0; i < J->batch; i++)
            spmv_range(J->simd, s, J->in + i * s->cols, J->out + i * s->rows, J->bias, lo, hi, scratch);
        break;
    case JOB_TILES: {
        /* scratch: N:M decode (2*cols floats) or panel cursors (rows int64), then the xT tile
         * [cols, 64], then the yT tile [rows, 64]. */
        int64_t head = 2 * (s->cols > s->rows ? s->cols : s->rows);
        float *nm = scratch, *xt = scratch + head, *yt = xt + s->cols * PR_TILE;
        for (int64_t t0 = lo; t0 < hi; t0 += PR_TILE) {
            int64_t tw = hi - t0 < PR_TILE ? hi - t0 : PR_TILE;
            transpose(J->simd, J->in + t0 * s->cols, s->cols, xt, tw, tw, s->cols);
#ifdef PR_HAVE_AVX2_CODE
            if (J->simd >= 2 && tw == PR_TILE && use_panels(s))
                mm_csr_panels_avx512(s, xt, yt, J->bias, (int64_t *)nm);
            else
#endif
            mm_range(J->simd, s, xt, tw, yt, tw, tw, J->bias, 0, row_blocks(s), nm);
            transpose(J->simd, yt, tw, J->out + t0 * s->rows, s->rows, s->rows, tw);
        }
        break;
    }
    case JOB_MM_ROWS:
        mm_range(J->simd, s, J->in, J->batch, J->out, J->batch, J->batch, J->bias, lo, hi, scratch);
        break;
    case JOB_MM_COLS:
        mm_range(J->simd, s, J->in + lo, J->batch, J->out + lo, J->batch, hi - lo, J->bias, 0,
                 row_blocks(s), scratch);
        break;
    }
}

/* Splits row blocks so every part gets about the same nonzeros plus a row overhead. */
static void split_rows(const pr_sparse *s, job *J)
{
    int64_t R = row_blocks(s);
    if (s->format == PR_SPARSE_NM_2_4) { /* every row holds the same number of slots */
        for (int p = 0; p <= J->nparts; p++)
            J->lo[p] = R * p / J->nparts;
        return;
    }
    int64_t total = rowp(s, R) + R;
    J->lo[0] = 0;
    for (int p = 1; p < J->nparts; p++) {
        int64_t target = total * p / J->nparts, a = J->lo[p - 1], z = R;
        while (a < z) { /* first rb with rowp(rb) + rb >= target */
            int64_t mid = a + (z - a) / 2;
            if (rowp(s, mid) + mid < target)
                a = mid + 1;
            else
                z = mid;
        }
        J->lo[p] = a;
    }
    J->lo[J->nparts] = R;
}

/* Splits n columns into parts that are multiples of 8 (whole AVX2 vectors). */
static void split_cols(int64_t n, job *J)
{
    for (int p = 0; p <= J->nparts; p++)
        J->lo[p] = p == J->nparts ? n : (n * p / J->nparts) & ~(int64_t)7;
}

static int nparts_for(const pr_sparse *s, int64_t batch, int64_t units)
{
    int64_t work = (s->nnz + row_blocks(s)) * batch;
    int64_t n = pr_sparse_threads();
    if (work < PR_PAR_MIN_WORK)
        n = 1;
    if (n > units)
        n = units;
    return n < 1 ? 1 : (int)n;
}

static int check_args(const pr_sparse *w, const void *in, const void *out, int64_t n, const char *what)
{
    if (!w)
        return pr_error("sparse %s: NULL weight", what);
    if (n < 0)
        return pr_error("sparse %s: negative size %lld", what, (long long)n);
    if ((!in && n * w->cols > 0) || (!out && n * w->rows > 0))
        return pr_error("sparse %s: NULL buffer", what);
    if ((unsigned)w->format >= PR_SPARSE_NFORMATS)
        return pr_error("sparse %s: unknown format %d", what, (int)w->format);
    return PR_OK;
}

static int job_alloc_scratch(job *J, size_t per_part)
{
    /* Whole cache lines per part: 8-byte aligned for the int64 cursors, and no two parts
     * share a line. */
    per_part = (per_part + 15) & ~(size_t)15;
    J->scratch_per_part = per_part;
    J->scratch = NULL;
    if (per_part == 0)
        return PR_OK;
    J->scratch = aligned_alloc(64, per_part * (size_t)J->nparts * sizeof(float));
    if (!J->scratch)
        return pr_error_code(PR_ENOMEM, "sparse: out of memory for %zu bytes of scratch",
                             per_part * (size_t)J->nparts * sizeof(float));
    return PR_OK;
}

int pr_sparse_linear(const float *x, float *y, const pr_sparse *w, const float *bias, int64_t batch)
{
    int rc = check_args(w, x, y, batch, "linear");
    if (rc < 0 || batch == 0 || w->rows == 0)
        return rc;
    job J = {.s = w, .in = x, .out = y, .bias = bias, .batch = batch, .simd = simd_level()};
    size_t nm = w->format == PR_SPARSE_NM_2_4 ? 2 * (size_t)w->cols : 0;
    if (batch < PR_TILE_MIN_BATCH) {
        J.kind = JOB_SPMV;
        J.nparts = nparts_for(w, batch, row_blocks(w));
        split_rows(w, &J);
        rc = job_alloc_scratch(&J, nm);
    } else {
        J.kind = JOB_TILES;
        J.nparts = nparts_for(w, batch, (batch + 7) / 8);
        split_cols(batch, &J);
        /* Head: the N:M decode buffer (2*cols) or the panel cursors (rows int64). */
        size_t head = 2 * (size_t)(w->cols > w->rows ? w->cols : w->rows);
        rc = job_alloc_scratch(&J, head + (size_t)(w->cols + w->rows) * PR_TILE);
    }
    if (rc < 0)
        return rc;
    pool_run(job_part, &J, J.nparts);
    free(J.scratch);
    return PR_OK;
}

int pr_sparse_matmul_dense(const float *b, float *c, const pr_sparse *w, const float *bias, int64_t n)
{
    int rc = check_args(w, b, c, n, "matmul_dense");
    if (rc < 0 || n == 0 || w->rows == 0)
        return rc;
    job J = {.s = w, .in = b, .out = c, .bias = bias, .batch = n, .simd = simd_level()};
    /* Splitting columns keeps every worker on whole rows of W; with few columns the rows
     * are split instead. */
    int np = nparts_for(w, n, row_blocks(w));
    if (n >= 16 * (int64_t)np) {
        J.kind = JOB_MM_COLS;
        J.nparts = np;
        split_cols(n, &J);
    } else {
        J.kind = JOB_MM_ROWS;
        J.nparts = np;
        split_rows(w, &J);
    }
    rc = job_alloc_scratch(&J, w->format == PR_SPARSE_NM_2_4 ? 2 * (size_t)w->cols : 0);
    if (rc < 0)
        return rc;
    pool_run(job_part, &J, J.nparts);
    free(J.scratch);
    return PR_OK;
}
