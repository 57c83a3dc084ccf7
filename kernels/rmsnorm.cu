/* rmsnorm.cu: RMS normalisation, mirroring layers/rmsnorm.c: one block per row; the
 * weight gradient is reduce.cuh's column sum of dout x r. */
#include "common.cuh"
#include "reduce.cuh"

static __global__ void rmsnorm_forward(float *out, float *rstd, const float *in, const float *weight, int C,
                                       float eps) {
    __shared__ float sh[32];
    cbk_pdl_wait(); /* a decode step's launches (cbk_launch): the kernel before has ended */
    const float *x = in + (size_t)blockIdx.x * C;
    float *y = out + (size_t)blockIdx.x * C;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) ss += x[c] * x[c];
    ss = cbk_block_sum(ss, sh);
    float r = 1.0f / sqrtf(ss / (float)C + eps);
    for (int c = threadIdx.x; c < C; c += blockDim.x) y[c] = x[c] * r * weight[c];
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

void cbk_rmsnorm_forward(float *out, float *rstd, const float *in, const float *weight, int N, int C, float eps) {
    if (N > 0) cbk_launch(rmsnorm_forward, N, CBK_THREADS, 0, out, rstd, in, weight, C, eps);
}

// dx += r (dy w - x r^2 mean(dy w x))
static __global__ void rmsnorm_backward_input(float *din, const float *dout, const float *in, const float *weight,
                                              const float *rstd, int C) {
    __shared__ float sh[32];
    size_t off = (size_t)blockIdx.x * C;
    const float *x = in + off, *dy = dout + off;
    float *dx = din + off;
    float r = rstd[blockIdx.x];
    float gx = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) gx += dy[c] * weight[c] * x[c];
    gx = cbk_block_sum(gx, sh);
    float k = r * r * gx / (float)C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dx[c] += r * (dy[c] * weight[c] - x[c] * k);
}

struct rms_dweight_elem {
    const float *dout, *in, *rstd;
    int C;
    __device__ float operator()(int r, int c) const {
        size_t i = (size_t)r * C + c;
        return dout[i] * in[i] * rstd[r];
    }
};

void cbk_rmsnorm_backward(float *din, float *dweight, float *work, const float *dout, const float *in,
                          const float *weight, const float *rstd, int N, int C) {
    if (N <= 0) return;
    if (din) rmsnorm_backward_input<<<N, CBK_THREADS>>>(din, dout, in, weight, rstd, C);
    if (dweight) cbk_colsum_of(dweight, work, N, C, rms_dweight_elem{dout, in, rstd, C});
}

/* ---- a residual add and the RMSNorm after it in one pass over the row (ops.c, cuda.h's
 * CB_CUDA_FUSE_ADDNORM): the same float operations as cbk_add then rmsnorm_forward, and as
 * rmsnorm_backward_input then the add's two cbk_axpy, so the results are the same bits ---- */

static __global__ void add_rmsnorm_forward(float *sum, float *out, float *rstd, const float *a, const float *b,
                                           const float *weight, int C, float eps) {
    __shared__ float sh[32];
    size_t off = (size_t)blockIdx.x * C;
    float *x = sum + off, *y = out + off;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float v = a[off + c] + b[off + c];
        x[c] = v;
        ss += v * v;
    }
    ss = cbk_block_sum(ss, sh);
    float r = 1.0f / sqrtf(ss / (float)C + eps);
    for (int c = threadIdx.x; c < C; c += blockDim.x) y[c] = x[c] * r * weight[c]; /* x[c]: this thread's own */
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

void cbk_add_rmsnorm_forward(float *sum, float *out, float *rstd, const float *a, const float *b, const float *weight,
                             int N, int C, float eps) {
    if (N > 0) add_rmsnorm_forward<<<N, CBK_THREADS, 0, cbk_stream>>>(sum, out, rstd, a, b, weight, C, eps);
}

// g = dsum + r (dy w - x r^2 mean(dy w x)); da += g, db += g
static __global__ void rmsnorm_backward_add(float *da, float *db, const float *dsum, const float *dout,
                                            const float *in, const float *weight, const float *rstd, int C) {
    __shared__ float sh[32];
    size_t off = (size_t)blockIdx.x * C;
    const float *x = in + off, *dy = dout + off, *dx = dsum + off;
    float r = rstd[blockIdx.x];
    float gx = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) gx += dy[c] * weight[c] * x[c];
    gx = cbk_block_sum(gx, sh);
    float k = r * r * gx / (float)C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float g = dx[c] + r * (dy[c] * weight[c] - x[c] * k);
        da[off + c] += g; /* as cbk_axpy with s = 1 */
        db[off + c] += g;
    }
}

void cbk_rmsnorm_backward_add(float *da, float *db, float *dweight, float *work, const float *dsum,
                              const float *dout, const float *in, const float *weight, const float *rstd, int N,
                              int C) {
    if (N <= 0) return;
    rmsnorm_backward_add<<<N, CBK_THREADS, 0, cbk_stream>>>(da, db, dsum, dout, in, weight, rstd, C);
    if (dweight) cbk_colsum_of(dweight, work, N, C, rms_dweight_elem{dout, in, rstd, C});
}
