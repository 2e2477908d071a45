/* rng.h: the runtime's own random generator (xoshiro256** seeded by splitmix64), so every draw
 * is identical on every machine and independent of libc. One global stream, as torch.manual_seed. */
#ifndef PR_RNG_H
#define PR_RNG_H

#include <stdint.h>

void pr_rng_seed(uint64_t seed);
uint64_t pr_rng_next(void);          /* 64 random bits */
double pr_rng_uniform(void);         /* [0,1) with 53 bits */
double pr_rng_normal(void);          /* N(0,1), Box-Muller */
int64_t pr_rng_below(int64_t n);     /* uniform in [0,n), unbiased */

#endif
