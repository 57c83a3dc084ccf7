/* common.cuh: what the kernels share: launch sizes, warp and block reductions, and the
 * activations of layers/activation.h in device code (libdevice's expf instead of the
 * CPU's polynomial cb_exp: both within 2 ulp of e^x). */
#ifndef CB_KERNELS_COMMON_CUH
#define CB_KERNELS_COMMON_CUH

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>
#include "backend/cuda/kernels.h"

/* the launch stream (cbk_set_stream; 0: the legacy default stream) */
extern cudaStream_t cbk_stream;
/* 1: launches through cbk_launch let the kernel start before the one before it ends
 * (programmatic dependent launch, sm_90; cbk_set_pdl): such a kernel calls cbk_pdl_wait,
 * which waits for the grids before it to finish and their writes to be seen, before it
 * reads or writes anything a kernel before it touches (it may read the weights earlier) */
extern int cbk_pdl;

__device__ __forceinline__ void cbk_pdl_wait(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); /* the next may launch */
#endif
}

/* The current device's multiprocessors (100 if it cannot say), asked once per file: grids
 * sized to fill the GPU. Not a stream operation, so safe to call before a capture. */
static inline int cbk_sm_count(void) {
    static int n;
    if (!n) {
        int dev = 0;
        cudaGetDevice(&dev);
        if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n <= 0) n = 100;
    }
    return n;
}

/* kernel<<<grid, block, smem, cbk_stream>>>(args...), with cbk_pdl's attribute */
template <typename... K, typename... A>
static inline void cbk_launch(void (*kernel)(K...), dim3 grid, dim3 block, size_t smem, A... args) {
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = cbk_pdl;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = cbk_stream;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    cudaLaunchKernelEx(&cfg, kernel, ((K)args)...);
}

#define CBK_THREADS 256
/* grid of a grid-stride loop over n elements: enough blocks to fill the GPU, no more */
static inline unsigned cbk_grid(size_t n) {
    size_t g = (n + CBK_THREADS - 1) / CBK_THREADS;
    if (g < 1) g = 1;
    return (unsigned)(g > 65536 ? 65536 : g);
}
#define CBK_FOR(i, n) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

__device__ __forceinline__ float cbk_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double cbk_warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float cbk_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
/* Sum (or max) over the block, the result in every thread. blockDim.x a multiple of 32,
 * at most 1024; sh has 32 floats. Ends with a barrier, so sh may be reused after it. */
__device__ __forceinline__ float cbk_block_sum(float v, float *sh) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = cbk_warp_sum(v);
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    v = cbk_warp_sum(v);
    __syncthreads();
    return v;
}
__device__ __forceinline__ float cbk_block_max(float v, float *sh) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = cbk_warp_max(v);
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    v = cbk_warp_max(v);
    __syncthreads();
    return v;
}

__device__ __forceinline__ float cbk_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float cbk_silu(float x) { return x * cbk_sigmoid(x); }
__device__ __forceinline__ float cbk_silu_grad(float x) {
    float s = cbk_sigmoid(x);
    return s * (1.0f + x * (1.0f - s));
}
#define CBK_GELU_SCALE 0.7978845608028654f
#define CBK_GELU_CUBE 0.044715f
__device__ __forceinline__ float cbk_gelu_tanh(float x) {
    float z = CBK_GELU_SCALE * (x + CBK_GELU_CUBE * x * x * x);
    return x * cbk_sigmoid(2.0f * z);
}
__device__ __forceinline__ float cbk_gelu_tanh_grad(float x) {
    float z = CBK_GELU_SCALE * (x + CBK_GELU_CUBE * x * x * x);
    float s = cbk_sigmoid(2.0f * z);
    float dz = CBK_GELU_SCALE * (1.0f + 3.0f * CBK_GELU_CUBE * x * x);
    return s + x * 2.0f * s * (1.0f - s) * dz;
}

#endif
