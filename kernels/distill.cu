/* distill.cu: train/distill.c's cb_distill_kl on the device, so a distillation step keeps
 * its logits on the GPU (before, the student's, the teacher's and the gradient's logits,
 * B*T*V floats each, went to the host and back every step). One block per row at a time:
 * an online max and sum of exp for the student's and the teacher's logits over
 * temperature (one read), then a second read that adds each element's KL term (in
 * double) and its gradient. Blocks take rows in a fixed order and keep a partial sum
 * each; one block adds the partials in block order: the same value every run. */
#include "common.cuh"

#define KL_THREADS 256

/* a running max m and sum s of exp(x - m), s rescaled when m grows (crossentropy.cu) */
__device__ __forceinline__ void online_add(float &m, float &s, float x) {
    if (x > m) {
        s = s * expf(m - x) + 1.0f;
        m = x;
    } else if (x > -INFINITY) {
        s += expf(x - m);
    }
}

__device__ __forceinline__ float block_lse(float m, float s, float *sh) {
    float mb = cbk_block_max(m, sh);
    s = m == -INFINITY ? 0.0f : s * expf(m - mb);
    s = cbk_block_sum(s, sh);
    return mb + logf(s);
}

static __global__ void __launch_bounds__(KL_THREADS)
kl_rows(double *part, float *ds, const float *s, const float *t, int rows, int V, float inv_temp, float coef) {
    __shared__ float sh[32];
    __shared__ double shd[32];
    double total = 0;
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *sr = s + (size_t)r * V, *tr = t + (size_t)r * V;
        float ms = -INFINITY, ss = 0.0f, mt = -INFINITY, st = 0.0f;
        for (int i = threadIdx.x; i < V; i += KL_THREADS) {
            online_add(ms, ss, sr[i] * inv_temp);
            online_add(mt, st, tr[i] * inv_temp);
        }
        const float ls = block_lse(ms, ss, sh), lt = block_lse(mt, st, sh);
        double kl = 0;
        for (int i = threadIdx.x; i < V; i += KL_THREADS) {
            const float lpt = tr[i] * inv_temp - lt, lps = sr[i] * inv_temp - ls, pt = expf(lpt);
            kl += (double)pt * (double)(lpt - lps);
            if (ds) ds[(size_t)r * V + i] += coef * (expf(lps) - pt);
        }
        kl = cbk_warp_sum_d(kl);
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        if (lane == 0) shd[warp] = kl;
        __syncthreads();
        if (threadIdx.x == 0)
            for (int w = 0; w < KL_THREADS / 32; w++) total += shd[w];
        __syncthreads();
    }
    if (threadIdx.x == 0) part[blockIdx.x] = total;
}

static __global__ void kl_finish(double *result, const double *part, int n, int rows) {
    if (threadIdx.x != 0) return;
    double t = 0;
    for (int i = 0; i < n; i++) t += part[i];
    result[0] = t / rows;
}

void cbk_distill_kl(double *result, double *work, size_t work_elems, float *ds, const float *s, const float *t,
                    int rows, int V, float temp, float scale) {
    int blocks = rows < (int)work_elems ? rows : (int)work_elems;
    if (blocks < 1) blocks = 1;
    kl_rows<<<blocks, KL_THREADS, 0, cbk_stream>>>(work, ds, s, t, rows, V, 1.0f / temp, scale * temp / rows);
    kl_finish<<<1, 32, 0, cbk_stream>>>(result, work, blocks, rows);
}
