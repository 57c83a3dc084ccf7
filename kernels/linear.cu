/* linear.cu: the part of layers/linear.c that is not a product (those are cuBLAS calls
 * in backend/cuda/blas.c): the bias rows a product with beta = 1 adds onto. */
#include "common.cuh"

static __global__ void bias_rows(float *out, const float *bias, int C, size_t n) {
    CBK_FOR(i, n) out[i] = bias[i % C];
}

void cbk_bias_rows(float *out, const float *bias, int N, int C) {
    size_t n = (size_t)N * C;
    if (n) bias_rows<<<cbk_grid(n), CBK_THREADS>>>(out, bias, C, n);
}
