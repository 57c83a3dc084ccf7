/* reduce.cu: column sums over rows, in two passes with a fixed order (rows cut into at
 * most MAX_CHUNKS chunks, each summed by a (32 x 8) block, then the chunks in order), so
 * a bias or norm gradient is the same from run to run. The element summed is a functor,
 * so the norms' weight gradients (dy x r, ...) use the same two passes. */
#include "common.cuh"
#include "reduce.cuh"

size_t cbk_colsum_work(int N, int C) { return (size_t)cbk_colsum_chunks(N) * (size_t)C; }

struct plain_elem {
    const float *src;
    int C;
    __device__ float operator()(int r, int c) const { return src[(size_t)r * C + c]; }
};

void cbk_colsum(float *dst, float *work, const float *src, int N, int C) {
    cbk_colsum_of(dst, work, N, C, plain_elem{src, C});
}

static __global__ void colsum_finish(float *dst, const float *part, int chunks, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float t = 0.0f;
    for (int k = 0; k < chunks; k++) t += part[(size_t)k * C + c];
    dst[c] += t;
}

void cbk_colsum_finish_launch(float *dst, const float *part, int chunks, int C) {
    colsum_finish<<<(C + 255) / 256, 256>>>(dst, part, chunks, C);
}

const char *cbk_last_error(void) {
    cudaError_t err = cudaGetLastError();
    return err == cudaSuccess ? NULL : cudaGetErrorString(err);
}
