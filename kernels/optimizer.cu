/* optimizer.cu: AdamW, Lion or SGD over a stretch of the parameter buffer (tensors
 * that share a decay factor, launched together by backend/cuda/cuda.c), the float
 * operations of train/optimizer.c in the same order (scalars computed by the host as the
 * CPU does), so the same inputs give the same bits. w16 non-NULL: the new weights' bf16
 * copy (train.amp's shadow) written in the same pass, so no conversion pass follows. */
#include <cuda_bf16.h>
#include "common.cuh"

static __device__ __forceinline__ void put16(uint16_t *w16, size_t i, float x) {
    if (w16) ((__nv_bfloat16 *)w16)[i] = __float2bfloat16_rn(x);
}

static __global__ void adamw(float *w, uint16_t *w16, const float *g, float *m, float *v, size_t n, float decay_factor, float b1,
                             float b2, float omb1, float omb2, float step_size, float bc2_sqrt, float eps) {
    CBK_FOR(i, n) {
        float gi = g[i];
        float p = w[i] * decay_factor;
        float mi = m[i] * b1 + gi * omb1;
        float vi = v[i] * b2 + omb2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        float wi = p - step_size * (mi / denom);
        w[i] = wi;
        put16(w16, i, wi);
    }
}

static __global__ void lion(float *w, uint16_t *w16, const float *g, float *m, size_t n, float decay_factor, float b1, float b2,
                            float omb1, float omb2, float lr) {
    CBK_FOR(i, n) {
        float gi = g[i];
        float c = m[i] * b1 + gi * omb1;
        float sign = (float)((c > 0) - (c < 0));
        float wi = w[i] * decay_factor - lr * sign;
        w[i] = wi;
        put16(w16, i, wi);
        m[i] = m[i] * b2 + gi * omb2;
    }
}

static __global__ void sgd(float *w, uint16_t *w16, const float *g, float *buf, size_t n, float decay_factor, float momentum,
                           float lr) {
    CBK_FOR(i, n) {
        float b = buf[i] * momentum + g[i];
        buf[i] = b;
        float wi = w[i] * decay_factor - lr * b;
        w[i] = wi;
        put16(w16, i, wi);
    }
}

void cbk_adamw(float *w, uint16_t *w16, const float *g, float *m, float *v, size_t n, float decay_factor, float b1, float b2,
               float omb1, float omb2, float step_size, float bc2_sqrt, float eps) {
    if (n) adamw<<<cbk_grid(n), CBK_THREADS>>>(w, w16, g, m, v, n, decay_factor, b1, b2, omb1, omb2, step_size, bc2_sqrt, eps);
}
void cbk_lion(float *w, uint16_t *w16, const float *g, float *m, size_t n, float decay_factor, float b1, float b2, float omb1,
              float omb2, float lr) {
    if (n) lion<<<cbk_grid(n), CBK_THREADS>>>(w, w16, g, m, n, decay_factor, b1, b2, omb1, omb2, lr);
}
void cbk_sgd(float *w, uint16_t *w16, const float *g, float *buf, size_t n, float decay_factor, float momentum, float lr) {
    if (n) sgd<<<cbk_grid(n), CBK_THREADS>>>(w, w16, g, buf, n, decay_factor, momentum, lr);
}
