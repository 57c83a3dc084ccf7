/* matvec_bw.cu: the bandwidth of one-token bf16 products alone, kernels/matvec.cu's
 * cbk_matvec and kernels/decode_fused.cu's cbk_matvec_step (4 or 8 pieces in flight, its
 * input staged or not; each also under programmatic dependent launch, so that a product
 * streams its first weights while the one before ends) against variants that read several
 * rows a warp and put more 16-byte loads in flight, over the products of one Llama-3.2-1B token (16 layers of q|k|v 3072 x 2048, o
 * 2048 x 2048, gate|up 16384 x 2048, down 2048 x 8192, then the head 128256 x 2048: 2.47 GB
 * of bf16, far past L2), each sequence captured as a CUDA graph and replayed; beside them
 * a read-only kernel (a sum of every 16-byte piece) and a device-to-device copy, which the
 * bound of bench/cuda_decode uses. Standalone (nvcc only):
 *   nvcc -O2 -arch=sm_90 -fmad=false -Ilib -o matvec_bw bench/matvec_bw.cu && ./matvec_bw */
#include <stdio.h>
#include <stdlib.h>
#include "../kernels/matvec.cu"
#include "../kernels/decode_fused.cu"

cudaStream_t cbk_stream = 0;
int cbk_pdl = 0;

/* RPW rows a warp, U pieces of 8 values in flight per row and lane before the sums */
template <int RPW, int U>
static __global__ void __launch_bounds__(256) mv_bf16(float *y, const uint16_t *W, const float *x, int rows,
                                                      int cols) {
    const int lane = threadIdx.x & 31;
    const int r0 = (blockIdx.x * 8 + (threadIdx.x >> 5)) * RPW;
    if (r0 >= rows) return;
    const int chunks = cols / 8;
    const uint4 *wr[RPW];
#pragma unroll
    for (int r = 0; r < RPW; r++) wr[r] = (const uint4 *)(W + (size_t)(r0 + r < rows ? r0 + r : rows - 1) * cols);
    float acc[RPW];
#pragma unroll
    for (int r = 0; r < RPW; r++) acc[r] = 0.0f;
    const float4 *x4 = (const float4 *)x;
    for (int c0 = lane; c0 < chunks; c0 += 32 * U) {
        uint4 w[U][RPW];
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int r = 0; r < RPW; r++)
                w[u][r] = c0 + 32 * u < chunks ? __ldcs(wr[r] + c0 + 32 * u) : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = c0 + 32 * u;
            if (c >= chunks) break;
            const float4 a = x4[2 * c], b = x4[2 * c + 1];
            const float xv[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
            for (int r = 0; r < RPW; r++) {
                const uint32_t q[4] = {w[u][r].x, w[u][r].y, w[u][r].z, w[u][r].w};
                float s = acc[r];
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    s = __fmaf_rn(__uint_as_float(q[k] << 16), xv[2 * k], s);
                    s = __fmaf_rn(__uint_as_float(q[k] & 0xffff0000u), xv[2 * k + 1], s);
                }
                acc[r] = s;
            }
        }
    }
#pragma unroll
    for (int r = 0; r < RPW; r++) {
        const float s = cbk_warp_sum(acc[r]);
        if (lane == 0 && r0 + r < rows) y[r0 + r] = s;
    }
}

static __global__ void read_all(float *out, const uint4 *p, size_t n) {
    float s = 0.0f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const uint4 v = __ldcs(p + i);
        s += __uint_as_float(v.x) + __uint_as_float(v.y) + __uint_as_float(v.z) + __uint_as_float(v.w);
    }
    if (s == 12345.0f) out[0] = s;
}

typedef struct mat { uint16_t *w; int rows, cols; } mat;
#define NL 16
static mat mats[4 * NL + 1];
static int n_mats;

typedef void (*launcher)(const mat *m, float *y, const float *x);
template <int RPW, int U>
static void launch_v(const mat *m, float *y, const float *x) {
    const int warps = (m->rows + RPW - 1) / RPW;
    mv_bf16<RPW, U><<<(warps + 7) / 8, 256, 0, cbk_stream>>>(y, m->w, x, m->rows, m->cols);
}
static void launch_cur(const mat *m, float *y, const float *x) {
    cbk_matvec(y, m->w, (size_t)m->cols * 2, CB_KV_BF16, x, NULL, m->rows, m->cols, 1);
}
/* cbk_matvec_step with AHEAD pieces in flight, staged (STAGE) or not, under PDL or not */
template <int AHEAD, int STAGE, int PDL>
static void launch_step(const mat *m, float *y, const float *x) {
    cbk_set_step_tuning(AHEAD, STAGE);
    cbk_pdl = PDL;
    cbk_matvec_step(y, m->w, (size_t)m->cols * 2, CB_KV_BF16, x, NULL, m->rows, m->cols, NULL, 0.0f, 0, NULL);
    cbk_pdl = 0;
    cbk_set_step_tuning(4, 0);
}
template <int PDL>
static void launch_cur_pdl(const mat *m, float *y, const float *x) {
    cbk_pdl = PDL;
    launch_cur(m, y, x);
    cbk_pdl = 0;
}

/* ms of one replay of the sequence of products over mats whose class is cls (-1: all) */
static double time_seq(launcher f, int cls, float *y, const float *x, double *bytes) {
    cudaStream_t s;
    cudaStreamCreate(&s);
    cbk_stream = s;
    cudaGraph_t g;
    cudaGraphExec_t ge;
    *bytes = 0;
    cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    for (int i = 0; i < n_mats; i++)
        if (cls < 0 || (i == n_mats - 1 ? 4 : i % 4) == cls) {
            f(&mats[i], y, x);
            *bytes += 2.0 * mats[i].rows * mats[i].cols;
        }
    cudaStreamEndCapture(s, &g);
    cudaGraphInstantiate(&ge, g, 0);
    for (int w = 0; w < 3; w++) cudaGraphLaunch(ge, s);
    cudaEvent_t a, b;
    cudaEventCreate(&a), cudaEventCreate(&b);
    const int reps = 20;
    cudaEventRecord(a, s);
    for (int r = 0; r < reps; r++) cudaGraphLaunch(ge, s);
    cudaEventRecord(b, s);
    cudaEventSynchronize(b);
    float ms;
    cudaEventElapsedTime(&ms, a, b);
    cudaGraphExecDestroy(ge), cudaGraphDestroy(g), cudaStreamDestroy(s);
    cbk_stream = 0;
    return ms / reps;
}

int main(void) {
    const int shapes[4][2] = {{3072, 2048}, {2048, 2048}, {16384, 2048}, {2048, 8192}};
    for (int l = 0; l < NL; l++)
        for (int k = 0; k < 4; k++) mats[n_mats++] = (mat){NULL, shapes[k][0], shapes[k][1]};
    mats[n_mats++] = (mat){NULL, 128256, 2048};
    size_t total = 0;
    for (int i = 0; i < n_mats; i++) {
        const size_t b = (size_t)mats[i].rows * mats[i].cols * 2;
        if (cudaMalloc(&mats[i].w, b) != cudaSuccess) return fprintf(stderr, "no room\n"), 1;
        cudaMemset(mats[i].w, 0x3c, b); /* bf16 ~0.0115 everywhere */
        total += b;
    }
    float *x, *y;
    cudaMalloc(&x, 8192 * sizeof(float));
    cudaMalloc(&y, 128256 * sizeof(float));
    cudaMemset(x, 0, 8192 * sizeof(float));
    printf("matvec_bw: %d matrices, %.1f MB of bf16\n", n_mats, total / 1e6);
    /* copy and read-only bandwidth over 1 GiB */
    const size_t G = (size_t)1 << 30;
    void *a, *b;
    cudaMalloc(&a, G), cudaMalloc(&b, G);
    cudaMemset(a, 1, G);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    float best = 1e30f, ms;
    for (int r = 0; r < 5; r++) {
        cudaEventRecord(e0);
        cudaMemcpy(b, a, G, cudaMemcpyDeviceToDevice);
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&ms, e0, e1);
        if (ms < best) best = ms;
    }
    printf("copy (read + written) %.0f GB/s\n", 2.0 * G / best / 1e6);
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    cbk_set_step_tuning(4, 0); /* its SM count, before any capture */
    best = 1e30f;
    for (int r = 0; r < 5; r++) {
        cudaEventRecord(e0);
        read_all<<<sms * 8, 256>>>(y, (const uint4 *)a, G / 16);
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&ms, e0, e1);
        if (ms < best) best = ms;
    }
    printf("read-only kernel %.0f GB/s\n", 1.0 * G / best / 1e6);
    cudaFree(a), cudaFree(b);
    struct { const char *name; launcher f; } vs[] = {
        {"cbk_matvec (matvec_rows)", launch_cur}, {"1 row a warp, 4 in flight", launch_v<1, 4>},
        {"1 row a warp, 8 in flight", launch_v<1, 8>}, {"2 rows a warp, 4 in flight", launch_v<2, 4>},
        {"4 rows a warp, 2 in flight", launch_v<4, 2>}, {"4 rows a warp, 4 in flight", launch_v<4, 4>},
        {"cbk_matvec, pdl", launch_cur_pdl<1>}, {"step kernel a4", launch_step<4, 0, 0>},
        {"step kernel a4, pdl", launch_step<4, 0, 1>}, {"step kernel a8", launch_step<8, 0, 0>},
        {"step kernel a8, pdl", launch_step<8, 0, 1>}, {"step kernel a4 staged, pdl", launch_step<4, 1, 1>},
        {"step kernel a8 staged, pdl", launch_step<8, 1, 1>}};
    const char *cls[5] = {"qkv 3072x2048", "o 2048x2048", "gate_up 16384x2048", "down 2048x8192", "head 128256x2048"};
    for (size_t v = 0; v < sizeof vs / sizeof *vs; v++) {
        double bytes;
        const double t = time_seq(vs[v].f, -1, y, x, &bytes);
        printf("%-30s token %.3f ms %.0f GB/s |", vs[v].name, t, bytes / t / 1e6);
        for (int c = 0; c < 5; c++) {
            const double tc = time_seq(vs[v].f, c, y, x, &bytes);
            printf(" %s %.0f", cls[c], bytes / tc / 1e6);
        }
        printf("\n");
    }
    cudaError_t err = cudaDeviceSynchronize();
    printf("status: %s\n", cudaGetErrorString(err));
    return err != cudaSuccess;
}
