/* rng.c: xoshiro256** seeded through splitmix64; Box-Muller normals. */
#include "core/rng.h"

#include <math.h>

uint64_t cb_hash64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint64_t cb_hash_str(uint64_t seed, const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL ^ cb_hash64(seed);
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return cb_hash64(h);
}

void cb_rng_init(cb_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) {
        x = cb_hash64(x + (uint64_t)i);
        r->s[i] = x;
    }
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3])) r->s[0] = 1;
}

void cb_rng_init_keyed(cb_rng *r, uint64_t seed, const char *key) {
    cb_rng_init(r, cb_hash_str(seed, key));
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t cb_rng_next(cb_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double cb_rng_uniform(cb_rng *r) { return (double)(cb_rng_next(r) >> 11) * 0x1.0p-53; }

double cb_rng_normal(cb_rng *r) {
    double u1 = cb_rng_uniform(r), u2 = cb_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
