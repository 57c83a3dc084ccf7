/* crossentropy.c: fused softmax + cross-entropy over `real` (float here, double via
 * f64/crossentropy_f64.c). Rows run in parallel, each row's vocabulary loop in SIMD lanes (a SIMD
 * sum's order depends on the vector width, not on the thread count); the mean is summed in row
 * order in double. */
#include "layers/crossentropy.h"

#include <string.h>
#include "layers/activation.h"
#include "layers/loops.h"

real CB_FN(cb_crossentropy_forward)(real *restrict losses, real *restrict lse, const real *restrict logits,
                                    const int32_t *restrict targets, int N, int V) {
#pragma omp parallel for if ((size_t)N * V > CB_OMP_MIN_WORK)
    for (int n = 0; n < N; n++) {
        const real *x = logits + (size_t)n * V;
        // subtract the row maximum so exp never overflows
        real m = x[0];
#pragma omp simd reduction(max : m)
        for (int v = 1; v < V; v++) m = x[v] > m ? x[v] : m;
        real s = 0;
#pragma omp simd reduction(+ : s)
        for (int v = 0; v < V; v++) s += cb_exp(x[v] - m);
        lse[n] = m + REAL_LOG(s);
        losses[n] = targets[n] >= 0 ? lse[n] - x[targets[n]] : (real)0;
    }
    return CB_FN(cb_crossentropy_mean)(losses, targets, N);
}

real CB_FN(cb_crossentropy_mean)(const real *losses, const int32_t *targets, int N) {
    double sum = 0;
    int n_valid = 0;
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) continue;
        sum += losses[n];
        n_valid++;
    }
    return n_valid ? (real)(sum / n_valid) : (real)0;
}

void CB_FN(cb_crossentropy_backward)(real *restrict dlogits, const real *restrict logits,
                                     const real *restrict lse, const int32_t *restrict targets, int N, int V,
                                     real dloss) {
    int n_valid = CB_FN(cb_crossentropy_valid)(targets, N);
    if (!n_valid) return;
    real g = dloss / (real)n_valid;
#pragma omp parallel for if ((size_t)N * V > CB_OMP_MIN_WORK)
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) continue;
        const real *x = logits + (size_t)n * V;
        real *dx = dlogits + (size_t)n * V;
        real l = lse[n];
#pragma omp simd
        for (int v = 0; v < V; v++) dx[v] += g * cb_exp(x[v] - l);
        dx[targets[n]] -= g;
    }
}

int CB_FN(cb_crossentropy_valid)(const int32_t *targets, int N) {
    int n_valid = 0;
    for (int n = 0; n < N; n++) n_valid += targets[n] >= 0;
    return n_valid;
}

void CB_FN(cb_crossentropy_grad_inplace)(real *restrict logits, const real *restrict lse,
                                         const int32_t *restrict targets, int N, int V, real g) {
#pragma omp parallel for if ((size_t)N * V > CB_OMP_MIN_WORK)
    for (int n = 0; n < N; n++) {
        real *x = logits + (size_t)n * V;
        if (targets[n] < 0) {
            memset(x, 0, (size_t)V * sizeof *x);
            continue;
        }
        real l = lse[n];
#pragma omp simd
        for (int v = 0; v < V; v++) x[v] = g * cb_exp(x[v] - l);
        x[targets[n]] -= g;
    }
}
