/* dropout.cu: layers/dropout.c's counter-based inverted dropout: the same splitmix64 hash
 * of (seed, offset + index), so an element is kept on the GPU exactly when it is on the
 * CPU, and backward regenerates forward's mask. */
#include "common.cuh"

__device__ __forceinline__ uint64_t splitmix64_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static uint64_t splitmix64_mix_host(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
#define GOLDEN_GAMMA 0x9E3779B97F4A7C15ULL

__device__ __forceinline__ bool keep_at(uint64_t key, uint64_t index, uint64_t threshold) {
    return (splitmix64_mix(key + (index + 1) * GOLDEN_GAMMA) >> 11) >= threshold;
}

static __global__ void dropout_forward(float *out, const float *in, size_t n, uint64_t key, uint64_t threshold,
                                       float scale, uint64_t offset) {
    CBK_FOR(i, n) out[i] = keep_at(key, offset + i, threshold) ? in[i] * scale : 0.0f;
}
static __global__ void dropout_backward(float *din, const float *dout, size_t n, uint64_t key, uint64_t threshold,
                                        float scale, uint64_t offset) {
    CBK_FOR(i, n) if (keep_at(key, offset + i, threshold)) din[i] += dout[i] * scale;
}
static __global__ void fill_zero(float *out, size_t n) {
    CBK_FOR(i, n) out[i] = 0.0f;
}
static __global__ void accumulate(float *din, const float *dout, size_t n) {
    CBK_FOR(i, n) din[i] += dout[i];
}

void cbk_dropout_forward(float *out, const float *in, size_t n, float p, uint64_t seed, uint64_t offset) {
    if (!n) return;
    if (p <= 0) {
        cudaMemcpyAsync(out, in, n * sizeof *out, cudaMemcpyDeviceToDevice, 0);
        return;
    }
    if (p >= 1) {
        fill_zero<<<cbk_grid(n), CBK_THREADS>>>(out, n);
        return;
    }
    uint64_t threshold = (uint64_t)((double)p * 9007199254740992.0);
    float scale = 1.0f / (1.0f - p);
    dropout_forward<<<cbk_grid(n), CBK_THREADS>>>(out, in, n, splitmix64_mix_host(seed), threshold, scale, offset);
}

void cbk_dropout_backward(float *din, const float *dout, size_t n, float p, uint64_t seed, uint64_t offset) {
    if (!n || p >= 1) return;
    if (p <= 0) {
        accumulate<<<cbk_grid(n), CBK_THREADS>>>(din, dout, n);
        return;
    }
    uint64_t threshold = (uint64_t)((double)p * 9007199254740992.0);
    float scale = 1.0f / (1.0f - p);
    dropout_backward<<<cbk_grid(n), CBK_THREADS>>>(din, dout, n, splitmix64_mix_host(seed), threshold, scale, offset);
}
