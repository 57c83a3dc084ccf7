/* layer_check.h: shared helpers of the layer tests (header-only, static): a seeded RNG, tracked
 * allocations, central-difference gradient checks in double, and relative differences.
 *
 * Gradient check: L = sum(out * R) with R random, x[i] moved by +-h, h = 1e-6, numeric gradient
 * (L(x+h) - L(x-h)) / 2h; error per element |analytic - numeric| / max(|analytic|, |numeric|,
 * LC_FD_FLOOR), the floor keeping rounding noise on near-zero gradients (about 1e-10 absolute)
 * from counting as relative error. Tolerance LC_FD_TOL on the maximum over the tensor.
 * Tensor comparisons (float vs double, C vs PyTorch): max|a - b| / (max|b| + 1e-6). */
#ifndef CB_TESTS_LAYER_CHECK_H
#define CB_TESTS_LAYER_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "test.h"

#define LC_FD_H 1e-6
#define LC_FD_TOL 1e-6
#define LC_FD_FLOOR 1e-2
#define LC_ACCUM_TOL 1e-12   // second backward call must double every gradient
#define LC_F32_TOL 1e-5      // float forward vs double forward, C vs PyTorch
#define LC_F32_GRAD_TOL 1e-5 // float gradients vs double gradients

/* ---- allocations freed together at the end of a test (keeps ASan quiet on early failures) ---- */
#define LC_MAX_ALLOCS 256
static void *lc_allocs[LC_MAX_ALLOCS];
static int lc_n_allocs;

static inline void *lc_alloc(size_t bytes) {
    if (lc_n_allocs == LC_MAX_ALLOCS) {
        fprintf(stderr, "layer_check: too many allocations\n");
        abort();
    }
    void *p = calloc(bytes ? bytes : 1, 1);
    if (!p) abort();
    lc_allocs[lc_n_allocs++] = p;
    return p;
}

static inline void lc_free_all(void) {
    for (int i = 0; i < lc_n_allocs; i++) free(lc_allocs[i]);
    lc_n_allocs = 0;
}

static inline double *lc_zeros(size_t n) { return lc_alloc(n * sizeof(double)); }
static inline float *lc_zeros_f(size_t n) { return lc_alloc(n * sizeof(float)); }

/* ---- seeded RNG (splitmix64), so every run checks the same numbers ---- */
static uint64_t lc_rng_state;
static inline void lc_seed(uint64_t seed) { lc_rng_state = seed; }
static inline uint64_t lc_next(void) {
    uint64_t z = (lc_rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
/* uniform in [-1, 1) */
static inline double lc_uniform(void) { return (double)(lc_next() >> 11) / 4503599627370496.0 - 1.0; }

/* n values uniform in [-scale, scale) */
static inline double *lc_rand(size_t n, double scale) {
    double *x = lc_zeros(n);
    for (size_t i = 0; i < n; i++) x[i] = scale * lc_uniform();
    return x;
}

static inline double *lc_copy(const double *x, size_t n) {
    double *y = lc_zeros(n);
    memcpy(y, x, n * sizeof(double));
    return y;
}

static inline float *lc_copy_f(const float *x, size_t n) {
    float *y = lc_zeros_f(n);
    memcpy(y, x, n * sizeof(float));
    return y;
}

static inline float *lc_to_float(const double *x, size_t n) {
    float *y = lc_zeros_f(n);
    for (size_t i = 0; i < n; i++) y[i] = (float)x[i];
    return y;
}

static inline double lc_dot(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* ---- finite differences ---- */
typedef double (*lc_loss_fn)(void *ctx);

/* Max relative error of grad (n) against central differences of loss(ctx) in x (n). */
static inline double lc_fd_maxrel(lc_loss_fn loss, void *ctx, double *x, const double *grad, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double saved = x[i];
        x[i] = saved + LC_FD_H;
        double lp = loss(ctx);
        x[i] = saved - LC_FD_H;
        double lm = loss(ctx);
        x[i] = saved;
        double numeric = (lp - lm) / (2 * LC_FD_H);
        double scale = fmax(fmax(fabs(grad[i]), fabs(numeric)), LC_FD_FLOOR);
        double err = fabs(grad[i] - numeric) / scale;
        worst = cb_test_worst(worst, err); // a NaN wins and stays
    }
    return worst;
}

/* ---- tensor differences: max|a-b| / (max|b| + 1e-6) ---- */
static inline double lc_diff_fd(const float *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        num = cb_test_worst(num, d);
        if (fabs(b[i]) > den) den = fabs(b[i]);
    }
    return num / (den + 1e-6);
}

static inline double lc_diff_ff(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        num = cb_test_worst(num, d);
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return num / (den + 1e-6);
}

/* twice (n) against 2 * once (n): the second backward call added the same gradient again */
static inline double lc_diff_doubled(const double *twice, const double *once, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(twice[i] - 2 * once[i]);
        num = cb_test_worst(num, d);
        if (fabs(2 * once[i]) > den) den = fabs(2 * once[i]);
    }
    return num / (den + 1e-300);
}

/* Report a measured difference and fail the test when it exceeds tol (NaN fails). */
#define LC_EXPECT_DIFF(what, diff, tol)                                               \
    do {                                                                              \
        double d_ = (diff);                                                           \
        REPORT_DIFF((what), d_, (tol));                                               \
        if (!(d_ <= (tol))) FAILF("%s: max diff %.3e > tol %.1e", (what), d_, (double)(tol)); \
    } while (0)

/* 1 when a and b (n floats) are bit-for-bit equal */
static inline int lc_same_bits(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

#define LC_CHECK_GRAD(what, loss, ctx, x, grad, n) \
    LC_EXPECT_DIFF("fd " what, lc_fd_maxrel((loss), (ctx), (x), (grad), (n)), LC_FD_TOL)

/* Opens a fixture or fails the test (and returns from it). */
#define LC_FIXTURE_OPEN(f, rel)                                  \
    do {                                                         \
        if (fx_open((f), (rel)) != 0) {                          \
            FAILF("%.900s", (f)->why);                               \
            lc_free_all();                                       \
            return;                                              \
        }                                                        \
    } while (0)

/* var = float tensor NAME of exactly n elements, or fail the test and return */
#define LC_FIXTURE_F32(var, f, name, n)                          \
    float *var = fx_tensor((f), (name), "F32", (n), NULL);       \
    do {                                                         \
        if (!var) {                                              \
            FAILF("%.900s", (f)->why);                               \
            fx_close(f);                                         \
            lc_free_all();                                       \
            return;                                              \
        }                                                        \
    } while (0)

#endif
