/* swiglu.c: gated feed-forward block over `real` (float here, double via f64/swiglu_f64.c):
 * three GEMMs forward and six backward, each over the whole (N, C) batch. */
#include "layers/swiglu.h"

#include "layers/activation.h"
#include "backend/cpu/gemm.h"
#include "layers/linear.h"
#include "layers/loops.h"

void CB_FN(cb_swiglu_forward)(real *restrict out, real *restrict gate, real *restrict up, real *restrict h,
                              const real *restrict in, const real *restrict wg, const real *restrict wu,
                              const real *restrict wd, int N, int C, int F) {
    CB_FN(cb_linear_forward)(gate, in, wg, NULL, N, C, F);
    CB_FN(cb_linear_forward)(up, in, wu, NULL, N, C, F);
    size_t NF = (size_t)N * F;
#pragma omp parallel for simd if (NF > CB_OMP_MIN_WORK)
    for (size_t i = 0; i < NF; i++) h[i] = cb_silu(gate[i]) * up[i];
    CB_FN(cb_linear_forward)(out, h, wd, NULL, N, F, C);
}

void CB_FN(cb_swiglu_backward)(real *restrict din, real *restrict dwg, real *restrict dwu, real *restrict dwd,
                               real *restrict scratch, const real *restrict dout, const real *restrict in,
                               const real *restrict gate, const real *restrict up, const real *restrict h,
                               const real *restrict wg, const real *restrict wu, const real *restrict wd,
                               int N, int C, int F) {
    size_t NF = (size_t)N * F;
    real *dgate = scratch, *dup = scratch + NF;
    // dh (N,F) = dout (N,C) @ wd (C,F), written into the first half of scratch
    CB_FN(cb_gemm)(CblasNoTrans, CblasNoTrans, N, F, C, 1, dout, C, wd, F, 0, dgate, F);
    CB_FN(cb_linear_backward)(NULL, dwd, NULL, dout, h, wd, N, F, C);
    // h = silu(gate) up: dup = dh silu(gate), dgate = dh up silu'(gate) (overwrites dh in place)
#pragma omp parallel for simd if (NF > CB_OMP_MIN_WORK)
    for (size_t i = 0; i < NF; i++) {
        real dh = dgate[i];
        dup[i] = dh * cb_silu(gate[i]);
        dgate[i] = dh * up[i] * cb_silu_grad(gate[i]);
    }
    CB_FN(cb_linear_backward)(din, dwg, NULL, dgate, in, wg, N, C, F);
    CB_FN(cb_linear_backward)(din, dwu, NULL, dup, in, wu, N, C, F);
}
