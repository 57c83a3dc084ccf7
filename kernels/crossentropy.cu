/* crossentropy.cu: softmax cross-entropy, mirroring layers/crossentropy.c: one block per
 * row for the log-sum-exp, reading the row once (an online max and sum); the mean over
 * valid rows summed in double. The count of valid rows stays on the device for backward,
 * so neither pass waits for the host. */
#include "common.cuh"

/* One read of the row: each thread keeps a running max m and the sum s of exp(x - m)
 * over its elements (s rescaled when m grows), then the block combines them; the same
 * log-sum-exp as the CPU's max-then-sum up to rounding. */
static __global__ void crossentropy_rows(float *losses, float *lse, const float *logits, const int32_t *targets,
                                         int V) {
    __shared__ float sh[32];
    const float *x = logits + (size_t)blockIdx.x * V;
    float m = -INFINITY, s = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float xv = x[v];
        if (xv > m) {
            s = s * expf(m - xv) + 1.0f; /* m = -inf at first: s is 0 and stays 0 before the 1 */
            m = xv;
        } else if (xv > -INFINITY) { /* -inf adds nothing (and -inf - -inf is NaN) */
            s += expf(xv - m);
        }
    }
    float mb = cbk_block_max(m, sh);
    s = m == -INFINITY ? 0.0f : s * expf(m - mb);
    s = cbk_block_sum(s, sh);
    if (threadIdx.x == 0) {
        float l = mb + logf(s);
        int t = targets[blockIdx.x];
        lse[blockIdx.x] = l;
        losses[blockIdx.x] = t >= 0 ? l - x[t] : 0.0f;
    }
}

// one block: the mean of losses over rows with a target, in double
static __global__ void crossentropy_mean(float *result, int *count, const float *losses, const int32_t *targets,
                                         int N) {
    __shared__ double shd[32];
    __shared__ int shn[32];
    double sum = 0;
    int n = 0;
    for (int i = threadIdx.x; i < N; i += blockDim.x)
        if (targets[i] >= 0) {
            sum += (double)losses[i];
            n++;
        }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    sum = cbk_warp_sum_d(sum);
    for (int o = 16; o > 0; o >>= 1) n += __shfl_xor_sync(0xffffffffu, n, o);
    if (lane == 0) {
        shd[warp] = sum;
        shn[warp] = n;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0;
        int valid = 0;
        for (int w = 0; w < (int)(blockDim.x >> 5); w++) {
            total += shd[w];
            valid += shn[w];
        }
        result[0] = valid ? (float)(total / valid) : 0.0f;
        count[0] = valid;
    }
}

size_t cbk_crossentropy_work(int N) { return 0; }

void cbk_crossentropy_rows(float *losses, float *lse, const float *logits, const int32_t *targets, int N, int V) {
    if (N > 0) crossentropy_rows<<<N, 512, 0, cbk_stream>>>(losses, lse, logits, targets, V);
}

void cbk_crossentropy_mean(float *result, int *count, const float *losses, const int32_t *targets, int N) {
    crossentropy_mean<<<1, 1024, 0, cbk_stream>>>(result, count, losses, targets, N);
}

void cbk_crossentropy_forward(float *losses, float *lse, float *result, int *count, float *work,
                              const float *logits, const int32_t *targets, int N, int V) {
    (void)work;
    cbk_crossentropy_rows(losses, lse, logits, targets, N, V);
    cbk_crossentropy_mean(result, count, losses, targets, N);
}

// one block: the rows with a target, before any row's gradient needs the count
static __global__ void crossentropy_count(int *count, const int32_t *targets, int N) {
    __shared__ int shn[32];
    int n = 0;
    for (int i = threadIdx.x; i < N; i += blockDim.x) n += targets[i] >= 0;
    for (int o = 16; o > 0; o >>= 1) n += __shfl_xor_sync(0xffffffffu, n, o);
    if ((threadIdx.x & 31) == 0) shn[threadIdx.x >> 5] = n;
    __syncthreads();
    if (threadIdx.x == 0) {
        int valid = 0;
        for (int w = 0; w < (int)(blockDim.x >> 5); w++) valid += shn[w];
        count[0] = valid;
    }
}

void cbk_crossentropy_count(int *count, const int32_t *targets, int N) {
    crossentropy_count<<<1, 1024, 0, cbk_stream>>>(count, targets, N);
}

// in place: a row of logits becomes (softmax - onehot) / count, what crossentropy_backward adds
// to a zeroed row; a row without a target becomes zero
static __global__ void crossentropy_grad_inplace(float *logits, const float *lse, const int32_t *targets,
                                                 const int *count, int V) {
    float *x = logits + (size_t)blockIdx.x * V;
    int t = targets[blockIdx.x];
    if (t < 0 || count[0] == 0) {
        for (int v = threadIdx.x; v < V; v += blockDim.x) x[v] = 0.0f;
        return;
    }
    float g = 1.0f / (float)count[0];
    float l = lse[blockIdx.x];
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float y = g * expf(x[v] - l);
        x[v] = v == t ? y - g : y;
    }
}

void cbk_crossentropy_grad_inplace(float *logits, const float *lse, const int32_t *targets, const int *count, int N,
                                   int V) {
    if (N > 0) crossentropy_grad_inplace<<<N, 512, 0, cbk_stream>>>(logits, lse, targets, count, V);
}

static __global__ void crossentropy_backward(float *dlogits, const float *logits, const float *lse,
                                             const int32_t *targets, const int *count, int V) {
    int t = targets[blockIdx.x];
    if (t < 0 || count[0] == 0) return;
    float g = 1.0f / (float)count[0];
    const float *x = logits + (size_t)blockIdx.x * V;
    float *dx = dlogits + (size_t)blockIdx.x * V;
    float l = lse[blockIdx.x];
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float y = dx[v] + g * expf(x[v] - l);
        dx[v] = v == t ? y - g : y; // as the CPU: the row added, then g taken off the target
    }
}

void cbk_crossentropy_backward(float *dlogits, const float *logits, const float *lse, const int32_t *targets,
                               const int *count, int N, int V) {
    if (N > 0) crossentropy_backward<<<N, 512>>>(dlogits, logits, lse, targets, count, V);
}
