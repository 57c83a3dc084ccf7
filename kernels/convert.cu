/* convert.cu: float32 to bf16 (round to nearest even) for the mixed-precision products of
 * backend/cuda/blas.c: the model's weights into their bf16 shadow, an op's activations
 * into scratch before a product. Four floats a thread (one 16-byte load, one 8-byte
 * store) where both pointers allow it, the rest one at a time. */
#include <cuda_bf16.h>
#include "common.cuh"

static __global__ void to_bf16_vec(uint2 *dst, const float4 *src, size_t n4) {
    CBK_FOR(i, n4) {
        float4 v = src[i];
        union {
            __nv_bfloat162 h[2];
            uint2 u;
        } o;
        o.h[0] = __floats2bfloat162_rn(v.x, v.y);
        o.h[1] = __floats2bfloat162_rn(v.z, v.w);
        dst[i] = o.u;
    }
}

static __global__ void to_bf16(__nv_bfloat16 *dst, const float *src, size_t n) {
    CBK_FOR(i, n) dst[i] = __float2bfloat16_rn(src[i]);
}

void cbk_to_bf16(uint16_t *dst, const float *src, size_t n) {
    if (!n) return;
    size_t head = 0;
    if ((uintptr_t)src % 16 == 0 && (uintptr_t)dst % 8 == 0) {
        size_t n4 = n / 4;
        if (n4) to_bf16_vec<<<cbk_grid(n4), CBK_THREADS>>>((uint2 *)dst, (const float4 *)src, n4);
        head = n4 * 4;
    }
    if (head < n) to_bf16<<<cbk_grid(n - head), CBK_THREADS>>>((__nv_bfloat16 *)dst + head, src + head, n - head);
}
