/* layernorm.c: layer normalisation over `real` (float here, double via f64/layernorm_f64.c).
 * Two-pass mean and variance per row, row sums in SIMD lanes; parameter gradients summed per
 * column block so they do not depend on the thread count. */
#include "layers/layernorm.h"

#include "layers/loops.h"

void CB_FN(cb_layernorm_forward)(real *restrict out, real *restrict mean, real *restrict rstd,
                                 const real *restrict in, const real *restrict weight,
                                 const real *restrict bias, int N, int C, real eps) {
#pragma omp parallel for if ((size_t)N * C > CB_OMP_MIN_WORK)
    for (int n = 0; n < N; n++) {
        const real *x = in + (size_t)n * C;
        real *y = out + (size_t)n * C;
        real m = 0;
#pragma omp simd reduction(+ : m)
        for (int c = 0; c < C; c++) m += x[c];
        m /= (real)C;
        real v = 0;
#pragma omp simd reduction(+ : v)
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        real r = (real)1 / REAL_SQRT(v / (real)C + eps);
        if (bias) {
#pragma omp simd
            for (int c = 0; c < C; c++) y[c] = (x[c] - m) * r * weight[c] + bias[c];
        } else {
#pragma omp simd
            for (int c = 0; c < C; c++) y[c] = (x[c] - m) * r * weight[c];
        }
        mean[n] = m;
        rstd[n] = r;
    }
}

void CB_FN(cb_layernorm_backward)(real *restrict din, real *restrict dweight, real *restrict dbias,
                                  const real *restrict dout, const real *restrict in,
                                  const real *restrict weight, const real *restrict mean,
                                  const real *restrict rstd, int N, int C) {
    // with xhat = (x - mean) r and g = dout * w: dx = r (g - mean(g) - xhat mean(g xhat))
    if (din) {
#pragma omp parallel for if ((size_t)N * C > CB_OMP_MIN_WORK)
        for (int n = 0; n < N; n++) {
            const real *x = in + (size_t)n * C;
            const real *dy = dout + (size_t)n * C;
            real *dx = din + (size_t)n * C;
            real m = mean[n], r = rstd[n];
            real g_mean = 0, gx_mean = 0;
#pragma omp simd reduction(+ : g_mean, gx_mean)
            for (int c = 0; c < C; c++) {
                real g = dy[c] * weight[c];
                g_mean += g;
                gx_mean += g * (x[c] - m) * r;
            }
            g_mean /= (real)C;
            gx_mean /= (real)C;
#pragma omp simd
            for (int c = 0; c < C; c++) {
                real xhat = (x[c] - m) * r;
                dx[c] += r * (dy[c] * weight[c] - g_mean - xhat * gx_mean);
            }
        }
    }
    if (dweight || dbias) {
        int n_blocks = (C + CB_COL_BLOCK - 1) / CB_COL_BLOCK;
#pragma omp parallel for if ((size_t)N * C > CB_OMP_MIN_WORK && n_blocks > 1)
        for (int blk = 0; blk < n_blocks; blk++) {
            int c0 = blk * CB_COL_BLOCK;
            int c1 = c0 + CB_COL_BLOCK < C ? c0 + CB_COL_BLOCK : C;
            real acc_w[CB_COL_BLOCK] = {0}, acc_b[CB_COL_BLOCK] = {0};
            for (int n = 0; n < N; n++) {
                const real *x = in + (size_t)n * C;
                const real *dy = dout + (size_t)n * C;
                real m = mean[n], r = rstd[n];
#pragma omp simd
                for (int c = c0; c < c1; c++) {
                    acc_w[c - c0] += dy[c] * (x[c] - m) * r;
                    acc_b[c - c0] += dy[c];
                }
            }
            for (int c = c0; c < c1; c++) {
                if (dweight) dweight[c] += acc_w[c - c0];
                if (dbias) dbias[c] += acc_b[c - c0];
            }
        }
    }
}
