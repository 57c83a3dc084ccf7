/* layernorm.cu: layer normalisation, mirroring layers/layernorm.c: two-pass mean and
 * variance per row in one block; the parameter gradients are column sums (reduce.cuh). */
#include "common.cuh"
#include "reduce.cuh"

static __global__ void layernorm_forward(float *out, float *mean, float *rstd, const float *in,
                                         const float *weight, const float *bias, int C, float eps) {
    __shared__ float sh[32];
    const float *x = in + (size_t)blockIdx.x * C;
    float *y = out + (size_t)blockIdx.x * C;
    float m = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) m += x[c];
    m = cbk_block_sum(m, sh) / (float)C;
    float v = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) v += (x[c] - m) * (x[c] - m);
    v = cbk_block_sum(v, sh);
    float r = 1.0f / sqrtf(v / (float)C + eps);
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float yc = (x[c] - m) * r * weight[c];
        y[c] = bias ? yc + bias[c] : yc;
    }
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = m;
        rstd[blockIdx.x] = r;
    }
}

void cbk_layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *weight,
                           const float *bias, int N, int C, float eps) {
    if (N > 0) layernorm_forward<<<N, CBK_THREADS, 0, cbk_stream>>>(out, mean, rstd, in, weight, bias, C, eps);
}

// dx += r (g - mean(g) - xhat mean(g xhat)), g = dy w
static __global__ void layernorm_backward_input(float *din, const float *dout, const float *in, const float *weight,
                                                const float *mean, const float *rstd, int C) {
    __shared__ float sh[32];
    size_t off = (size_t)blockIdx.x * C;
    const float *x = in + off, *dy = dout + off;
    float *dx = din + off;
    float m = mean[blockIdx.x], r = rstd[blockIdx.x];
    float g_mean = 0.0f, gx_mean = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float g = dy[c] * weight[c];
        g_mean += g;
        gx_mean += g * (x[c] - m) * r;
    }
    g_mean = cbk_block_sum(g_mean, sh) / (float)C;
    gx_mean = cbk_block_sum(gx_mean, sh) / (float)C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float xhat = (x[c] - m) * r;
        dx[c] += r * (dy[c] * weight[c] - g_mean - xhat * gx_mean);
    }
}

struct ln_dweight_elem {
    const float *dout, *in, *mean, *rstd;
    int C;
    __device__ float operator()(int r, int c) const {
        size_t i = (size_t)r * C + c;
        return dout[i] * (in[i] - mean[r]) * rstd[r];
    }
};
struct ln_dbias_elem {
    const float *dout;
    int C;
    __device__ float operator()(int r, int c) const { return dout[(size_t)r * C + c]; }
};

void cbk_layernorm_backward(float *din, float *dweight, float *dbias, float *work, const float *dout,
                            const float *in, const float *weight, const float *mean, const float *rstd, int N,
                            int C) {
    if (N <= 0) return;
    if (din) layernorm_backward_input<<<N, CBK_THREADS>>>(din, dout, in, weight, mean, rstd, C);
    if (dweight) cbk_colsum_of(dweight, work, N, C, ln_dweight_elem{dout, in, mean, rstd, C});
    if (dbias) cbk_colsum_of(dbias, work, N, C, ln_dbias_elem{dout, C});
}
