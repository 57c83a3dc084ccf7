/* reduce.cuh: the two-pass column sum of reduce.cu as a template over the summed element,
 * for the kernels whose gradient is a column sum of a product (norm weights). */
#ifndef CB_KERNELS_REDUCE_CUH
#define CB_KERNELS_REDUCE_CUH

#include "common.cuh"

#define CBK_COLSUM_MAX_CHUNKS 256
#define CBK_COLSUM_MIN_ROWS 64

static inline int cbk_colsum_rows(int N) {
    int rows = (N + CBK_COLSUM_MAX_CHUNKS - 1) / CBK_COLSUM_MAX_CHUNKS;
    return rows < CBK_COLSUM_MIN_ROWS ? CBK_COLSUM_MIN_ROWS : rows;
}
static inline int cbk_colsum_chunks(int N) {
    int rows = cbk_colsum_rows(N);
    int c = (N + rows - 1) / rows;
    return c < 1 ? 1 : c;
}

// part (chunks, C): column sums of f(r, c) over each chunk of rows; block (32, 8)
template <class F> __global__ void cbk_colsum_partial(float *part, int N, int C, int rows, F f) {
    __shared__ float sh[8][33];
    int c = blockIdx.x * 32 + threadIdx.x, chunk = blockIdx.y;
    int r0 = chunk * rows, r1 = min(N, r0 + rows);
    float acc = 0.0f;
    if (c < C)
        for (int r = r0 + threadIdx.y; r < r1; r += 8) acc += f(r, c);
    sh[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float t = 0.0f;
        for (int k = 0; k < 8; k++) t += sh[k][threadIdx.x];
        part[(size_t)chunk * C + c] = t;
    }
}

/* dst (C) += the chunks' sums in chunk order (reduce.cu) */
void cbk_colsum_finish_launch(float *dst, const float *part, int chunks, int C);

template <class F> void cbk_colsum_of(float *dst, float *work, int N, int C, F f) {
    if (N <= 0 || C <= 0) return;
    int rows = cbk_colsum_rows(N), chunks = cbk_colsum_chunks(N);
    dim3 grid((C + 31) / 32, chunks), block(32, 8);
    cbk_colsum_partial<<<grid, block>>>(work, N, C, rows, f);
    cbk_colsum_finish_launch(dst, work, chunks, C);
}

#endif
