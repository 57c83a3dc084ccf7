/* linear.c: fully connected layer over `real` (float here, double via f64/linear_f64.c).
 * Each matrix product is one GEMM over the whole (N, C) batch (backend/cpu/gemm.h). */
#include "layers/linear.h"

#include <string.h>
#include "backend/cpu/gemm.h"
#include "layers/loops.h"

void CB_FN(cb_linear_forward)(real *restrict out, const real *restrict in, const real *restrict weight,
                              const real *restrict bias, int N, int IC, int OC) {
    // start from the bias (or zero) in every row, then out += in @ weight^T in one GEMM
    real beta = 0;
    if (bias) {
#pragma omp parallel for if ((size_t)N * OC > CB_OMP_MIN_WORK)
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, bias, (size_t)OC * sizeof(real));
        beta = 1;
    }
    CB_FN(cb_gemm)(CblasNoTrans, CblasTrans, N, OC, IC, 1, in, IC, weight, IC, beta, out, OC);
}

void CB_FN(cb_linear_backward)(real *restrict din, real *restrict dweight, real *restrict dbias,
                               const real *restrict dout, const real *restrict in,
                               const real *restrict weight, int N, int IC, int OC) {
    // din (N,IC) += dout (N,OC) @ weight (OC,IC)
    if (din) CB_FN(cb_gemm)(CblasNoTrans, CblasNoTrans, N, IC, OC, 1, dout, OC, weight, IC, 1, din, IC);
    // dweight (OC,IC) += dout^T (OC,N) @ in (N,IC)
    if (dweight) CB_FN(cb_gemm)(CblasTrans, CblasNoTrans, OC, IC, N, 1, dout, OC, in, IC, 1, dweight, IC);
    if (dbias) cb_colsum_acc(dbias, dout, N, OC);
}
