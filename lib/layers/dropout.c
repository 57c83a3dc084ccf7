/* dropout.c: counter-based inverted dropout over `real` (float here, double via f64/dropout_f64.c).
 * The hash is splitmix64's finaliser applied twice: once to the seed (a stream key), once to
 * key + (index + 1) * golden ratio, which is splitmix64's index-th output for that key. */
#include "layers/dropout.h"

#include "layers/loops.h"

static inline uint64_t splitmix64_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

#define GOLDEN_GAMMA 0x9E3779B97F4A7C15ULL

// the drop threshold on 53-bit integers: float and double builds draw the same mask for the same
// p (exactly so when p is representable in float, e.g. 0.25)
static inline uint64_t drop_threshold(double p) { return (uint64_t)(p * 9007199254740992.0); }

static inline int keep_at(uint64_t key, uint64_t index, uint64_t threshold) {
    return (splitmix64_mix(key + (index + 1) * GOLDEN_GAMMA) >> 11) >= threshold;
}

// defined once, in the float build
#ifndef CB_REAL_F64
int cb_dropout_keep(uint64_t seed, uint64_t index, double p) {
    return keep_at(splitmix64_mix(seed), index, drop_threshold(p));
}
#endif

void CB_FN(cb_dropout_forward)(real *restrict out, const real *restrict in, size_t n, real p, uint64_t seed,
                               uint64_t offset) {
    if (p <= 0) {
#pragma omp parallel for if (n > CB_OMP_MIN_WORK)
        for (size_t i = 0; i < n; i++) out[i] = in[i];
        return;
    }
    if (p >= 1) {
#pragma omp parallel for if (n > CB_OMP_MIN_WORK)
        for (size_t i = 0; i < n; i++) out[i] = 0;
        return;
    }
    uint64_t key = splitmix64_mix(seed), threshold = drop_threshold((double)p);
    real scale = (real)1 / ((real)1 - p);
#pragma omp parallel for simd if (n > CB_OMP_MIN_WORK)
    for (size_t i = 0; i < n; i++) out[i] = keep_at(key, offset + i, threshold) ? in[i] * scale : (real)0;
}

void CB_FN(cb_dropout_backward)(real *restrict din, const real *restrict dout, size_t n, real p, uint64_t seed,
                                uint64_t offset) {
    if (p >= 1) return;
    if (p <= 0) {
#pragma omp parallel for if (n > CB_OMP_MIN_WORK)
        for (size_t i = 0; i < n; i++) din[i] += dout[i];
        return;
    }
    uint64_t key = splitmix64_mix(seed), threshold = drop_threshold((double)p);
    real scale = (real)1 / ((real)1 - p);
#pragma omp parallel for simd if (n > CB_OMP_MIN_WORK)
    for (size_t i = 0; i < n; i++)
        if (keep_at(key, offset + i, threshold)) din[i] += dout[i] * scale;
}
