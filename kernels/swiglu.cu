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

/* ---- amp (backend/cuda/swiglu16.c): bf16 in and out, the arithmetic in float32 ---- */
#include <cuda_bf16.h>

/* gu (N, 2F): a row's gate in its first F columns, its up in the last F */
static __global__ void swiglu16_forward(__nv_bfloat16 *h, const __nv_bfloat16 *gu, int F, size_t n) {
    CBK_FOR(i, n) {
        size_t r = i / (size_t)F, j = i - r * (size_t)F;
        const __nv_bfloat16 *row = gu + 2 * r * (size_t)F;
        float g = __bfloat162float(row[j]), u = __bfloat162float(row[F + j]);
        h[i] = __float2bfloat16_rn(cbk_silu(g) * u);
    }
}

static __global__ void swiglu16_backward(__nv_bfloat16 *dgu, const __nv_bfloat16 *dh, const __nv_bfloat16 *gu, int F,
                                         size_t n) {
    CBK_FOR(i, n) {
        size_t r = i / (size_t)F, j = i - r * (size_t)F, o = 2 * r * (size_t)F + j;
        float d = __bfloat162float(dh[i]), g = __bfloat162float(gu[o]), u = __bfloat162float(gu[o + F]);
        dgu[o + F] = __float2bfloat16_rn(d * cbk_silu(g));
        dgu[o] = __float2bfloat16_rn(d * u * cbk_silu_grad(g));
    }
}

void cbk_swiglu16_forward(uint16_t *h, const uint16_t *gu, int N, int F) {
    size_t n = (size_t)N * F;
    if (n)
        swiglu16_forward<<<cbk_grid(n), CBK_THREADS, 0, cbk_stream>>>((__nv_bfloat16 *)h,
                                                                      (const __nv_bfloat16 *)gu, F, n);
}
void cbk_swiglu16_backward(uint16_t *dgu, const uint16_t *dh, const uint16_t *gu, int N, int F) {
    size_t n = (size_t)N * F;
    if (n)
        swiglu16_backward<<<cbk_grid(n), CBK_THREADS, 0, cbk_stream>>>((__nv_bfloat16 *)dgu, (const __nv_bfloat16 *)dh,
                                                        (const __nv_bfloat16 *)gu, F, n);
}
