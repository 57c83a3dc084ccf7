/* mlp.cu: the GELU (tanh approximation) between layers/mlp.c's two products. */
#include "common.cuh"

static __global__ void gelu_forward(float *h, const float *pre, size_t n) {
    CBK_FOR(i, n) h[i] = cbk_gelu_tanh(pre[i]);
}
static __global__ void gelu_backward_inplace(float *dh, const float *pre, size_t n) {
    CBK_FOR(i, n) dh[i] *= cbk_gelu_tanh_grad(pre[i]);
}

void cbk_gelu_forward(float *h, const float *pre, size_t n) {
    if (n) gelu_forward<<<cbk_grid(n), CBK_THREADS, 0, cbk_stream>>>(h, pre, n);
}
void cbk_gelu_backward_inplace(float *dh, const float *pre, size_t n) {
    if (n) gelu_backward_inplace<<<cbk_grid(n), CBK_THREADS>>>(dh, pre, n);
}
