/* swiglu.cu: the element-wise middle of layers/swiglu.c (the products are cuBLAS). */
#include "common.cuh"

static __global__ void swiglu_forward(float *h, const float *gate, const float *up, size_t n) {
    cbk_pdl_wait(); /* a decode step's launches (cbk_launch): the kernel before has ended */
    CBK_FOR(i, n) h[i] = cbk_silu(gate[i]) * up[i];
}

static __global__ void swiglu_backward(float *dgate, float *dup, const float *gate, const float *up, size_t n) {
    CBK_FOR(i, n) {
        float dh = dgate[i];
        dup[i] = dh * cbk_silu(gate[i]);
        dgate[i] = dh * up[i] * cbk_silu_grad(gate[i]);
    }
}

void cbk_swiglu_forward(float *h, const float *gate, const float *up, size_t n) {
    if (n) cbk_launch(swiglu_forward, cbk_grid(n), CBK_THREADS, 0, h, gate, up, n);
}
void cbk_swiglu_backward(float *dgate, float *dup, const float *gate, const float *up, size_t n) {
    if (n) swiglu_backward<<<cbk_grid(n), CBK_THREADS>>>(dgate, dup, gate, up, n);
}
