/* clip.cu: the sum of squares behind train/clip.c's global gradient norm, in double:
 * per-block partial sums, then one block adds them in block order. */
#include "common.cuh"

#define SUMSQ_BLOCKS 1024

static __global__ void sumsq_partial(double *part, const float *g, size_t n) {
    __shared__ double sh[32];
    double s = 0;
    CBK_FOR(i, n) s += (double)g[i] * (double)g[i];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    s = cbk_warp_sum_d(s);
    if (lane == 0) sh[warp] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0;
        for (int w = 0; w < (int)(blockDim.x >> 5); w++) t += sh[w];
        part[blockIdx.x] = t;
    }
}

static __global__ void sumsq_finish(double *result, const double *part, int n) {
    __shared__ double sh[32];
    double s = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += part[i];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    s = cbk_warp_sum_d(s);
    if (lane == 0) sh[warp] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0;
        for (int w = 0; w < (int)(blockDim.x >> 5); w++) t += sh[w];
        result[0] = t;
    }
}

size_t cbk_sumsq_work(void) { return SUMSQ_BLOCKS; }

void cbk_sumsq(double *result, double *work, const float *g, size_t n) {
    size_t blocks = (n + CBK_THREADS - 1) / CBK_THREADS;
    if (blocks < 1) blocks = 1;
    if (blocks > SUMSQ_BLOCKS) blocks = SUMSQ_BLOCKS;
    sumsq_partial<<<(unsigned)blocks, CBK_THREADS>>>(work, g, n);
    sumsq_finish<<<1, 1024>>>(result, work, (int)blocks);
}
