/* rng.c: xoshiro256** (Blackman & Vigna) seeded through splitmix64: one global stream whose
 * draws are the same on every machine (see rng.h). Not thread-safe by design: like
 * torch.manual_seed, reproducibility needs one ordered stream. */
#include "rng.h"

#include <math.h>

#define PR_RNG_DEFAULT_SEED 0x5eedULL

static uint64_t state[4];
static int seeded;
/* Box-Muller yields pairs; the second value waits here for the next call. */
static double spare;
static int have_spare;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void pr_rng_seed(uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        state[i] = splitmix64(&x);
    /* splitmix64 never yields four zero words in a row, but the all-zero state is the one
     * xoshiro cannot leave; guard against it anyway. */
    if (!(state[0] | state[1] | state[2] | state[3]))
        state[0] = 1;
    seeded = 1;
    have_spare = 0;
}

uint64_t pr_rng_next(void)
{
    if (!seeded)
        pr_rng_seed(PR_RNG_DEFAULT_SEED);
    uint64_t result = rotl(state[1] * 5, 7) * 9;
    uint64_t t = state[1] << 17;
    state[2] ^= state[0];
    state[3] ^= state[1];
    state[1] ^= state[2];
    state[0] ^= state[3];
    state[2] ^= t;
    state[3] = rotl(state[3], 45);
    return result;
}

double pr_rng_uniform(void)
{
    return (double)(pr_rng_next() >> 11) * 0x1.0p-53;
}

double pr_rng_normal(void)
{
    if (have_spare) {
        have_spare = 0;
        return spare;
    }
    double u1, u2;
    do
        u1 = pr_rng_uniform();
    while (u1 == 0.0); /* log(0) */
    u2 = pr_rng_uniform();
    double r = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
    spare = r * sin(th);
    have_spare = 1;
    return r * cos(th);
}

int64_t pr_rng_below(int64_t n)
{
    if (n <= 1)
        return 0;
    /* Rejection below 2^64 mod n, then modulo (OpenBSD's arc4random_uniform): unbiased,
     * portable (no 128-bit products), and rejects with probability < n / 2^64. */
    uint64_t un = (uint64_t)n, thresh = (0 - un) % un, r;
    do
        r = pr_rng_next();
    while (r < thresh);
    return (int64_t)(r % un);
}
