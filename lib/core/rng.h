/* rng.h: deterministic random numbers. Streams are keyed by (seed, name) so one
 * tensor's initial values do not depend on which other tensors exist or on threads. */
#ifndef CB_CORE_RNG_H
#define CB_CORE_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct cb_rng { uint64_t s[4]; } cb_rng; /* xoshiro256** state */

void cb_rng_init(cb_rng *r, uint64_t seed);
/* A stream for (seed, key): e.g. key = a tensor's name. */
void cb_rng_init_keyed(cb_rng *r, uint64_t seed, const char *key);
uint64_t cb_rng_next(cb_rng *r);
double cb_rng_uniform(cb_rng *r);           /* [0, 1) with 53 random bits */
double cb_rng_normal(cb_rng *r);            /* standard normal (Box-Muller, no cached pair) */
uint64_t cb_hash64(uint64_t x);             /* splitmix64 finaliser */
uint64_t cb_hash_str(uint64_t seed, const char *s); /* FNV-1a then splitmix */

#endif
