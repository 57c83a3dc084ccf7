/* rmsnorm.c: RMS normalisation over `real` (float here, double via f64/rmsnorm_f64.c).
 * Rows run in parallel, row sums in SIMD lanes; the weight gradient is summed per column block so
 * it does not depend on the thread count. */
#include "layers/rmsnorm.h"

#include "layers/loops.h"

static inline void rmsnorm_row(real *restrict y, real *restrict rstd, const real *restrict x,
                               const real *restrict weight, int C, real eps) {
    real ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int c = 0; c < C; c++) ss += x[c] * x[c];
    real r = (real)1 / REAL_SQRT(ss / (real)C + eps);
#pragma omp simd
    for (int c = 0; c < C; c++) y[c] = x[c] * r * weight[c];
    *rstd = r;
}

void CB_FN(cb_rmsnorm_forward)(real *restrict out, real *restrict rstd, const real *restrict in,
                               const real *restrict weight, int N, int C, real eps) {
    if ((size_t)N * C > CB_OMP_MIN_WORK) { // (no if clause: loops.h)
#pragma omp parallel for
        for (int n = 0; n < N; n++) rmsnorm_row(out + (size_t)n * C, rstd + n, in + (size_t)n * C, weight, C, eps);
    } else {
        for (int n = 0; n < N; n++) rmsnorm_row(out + (size_t)n * C, rstd + n, in + (size_t)n * C, weight, C, eps);
    }
}

void CB_FN(cb_rmsnorm_backward)(real *restrict din, real *restrict dweight, const real *restrict dout,
                                const real *restrict in, const real *restrict weight,
                                const real *restrict rstd, int N, int C) {
    // y = x r w with r = (mean(x^2) + eps)^-1/2, so with g = dout * w:
    // dx = r (g - x r^2 mean(g x))
    if (din) {
#pragma omp parallel for if ((size_t)N * C > CB_OMP_MIN_WORK)
        for (int n = 0; n < N; n++) {
            const real *x = in + (size_t)n * C;
            const real *dy = dout + (size_t)n * C;
            real *dx = din + (size_t)n * C;
            real r = rstd[n];
            real gx = 0;
#pragma omp simd reduction(+ : gx)
            for (int c = 0; c < C; c++) gx += dy[c] * weight[c] * x[c];
            real k = r * r * gx / (real)C;
#pragma omp simd
            for (int c = 0; c < C; c++) dx[c] += r * (dy[c] * weight[c] - x[c] * k);
        }
    }
    if (dweight) {
        // dweight[c] += sum_n dout[n,c] x[n,c] r[n], one column block per thread
        int n_blocks = (C + CB_COL_BLOCK - 1) / CB_COL_BLOCK;
#pragma omp parallel for if ((size_t)N * C > CB_OMP_MIN_WORK && n_blocks > 1)
        for (int blk = 0; blk < n_blocks; blk++) {
            int c0 = blk * CB_COL_BLOCK;
            int c1 = c0 + CB_COL_BLOCK < C ? c0 + CB_COL_BLOCK : C;
            real acc[CB_COL_BLOCK] = {0};
            for (int n = 0; n < N; n++) {
                const real *x = in + (size_t)n * C;
                const real *dy = dout + (size_t)n * C;
                real r = rstd[n];
#pragma omp simd
                for (int c = c0; c < c1; c++) acc[c - c0] += dy[c] * x[c] * r;
            }
            for (int c = c0; c < c1; c++) dweight[c] += acc[c - c0];
        }
    }
}
