/* mlp.c: GPT-2 feed-forward block over `real` (float here, double via f64/mlp_f64.c):
 * two GEMMs forward and four backward, each over the whole (N, C) batch. */
#include "layers/mlp.h"

#include "layers/activation.h"
#include "backend/cpu/gemm.h"
#include "layers/linear.h"
#include "layers/loops.h"

void CB_FN(cb_mlp_forward)(real *restrict out, real *restrict pre, real *restrict h, const real *restrict in,
                           const real *restrict wfc, const real *restrict bfc, const real *restrict wproj,
                           const real *restrict bproj, int N, int C, int F) {
    CB_FN(cb_linear_forward)(pre, in, wfc, bfc, N, C, F);
    size_t NF = (size_t)N * F;
#pragma omp parallel for simd if (NF > CB_OMP_MIN_WORK)
    for (size_t i = 0; i < NF; i++) h[i] = cb_gelu_tanh(pre[i]);
    CB_FN(cb_linear_forward)(out, h, wproj, bproj, N, F, C);
}

void CB_FN(cb_mlp_backward)(real *restrict din, real *restrict dwfc, real *restrict dbfc, real *restrict dwproj,
                            real *restrict dbproj, real *restrict scratch, const real *restrict dout,
                            const real *restrict in, const real *restrict pre, const real *restrict h,
                            const real *restrict wfc, const real *restrict wproj, int N, int C, int F) {
    size_t NF = (size_t)N * F;
    // dh (N,F) = dout (N,C) @ wproj (C,F) into scratch, then turned into dpre in place
    CB_FN(cb_gemm)(CblasNoTrans, CblasNoTrans, N, F, C, 1, dout, C, wproj, F, 0, scratch, F);
    CB_FN(cb_linear_backward)(NULL, dwproj, dbproj, dout, h, wproj, N, F, C);
#pragma omp parallel for simd if (NF > CB_OMP_MIN_WORK)
    for (size_t i = 0; i < NF; i++) scratch[i] *= cb_gelu_tanh_grad(pre[i]);
    CB_FN(cb_linear_backward)(din, dwfc, dbfc, scratch, in, wfc, N, C, F);
}
