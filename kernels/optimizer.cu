/* optimizer.cu: one tensor's AdamW, Lion or SGD update, the float operations of
 * train/optimizer.c in the same order (scalars computed by the host as the CPU does), so
 * the same inputs give the same bits. */
#include "common.cuh"

static __global__ void adamw(float *w, const float *g, float *m, float *v, size_t n, float decay_factor, float b1,
                             float b2, float omb1, float omb2, float step_size, float bc2_sqrt, float eps) {
    CBK_FOR(i, n) {
        float gi = g[i];
        float p = w[i] * decay_factor;
        float mi = m[i] * b1 + gi * omb1;
        float vi = v[i] * b2 + omb2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        w[i] = p - step_size * (mi / denom);
    }
}

static __global__ void lion(float *w, const float *g, float *m, size_t n, float decay_factor, float b1, float b2,
                            float omb1, float omb2, float lr) {
    CBK_FOR(i, n) {
        float gi = g[i];
        float c = m[i] * b1 + gi * omb1;
        float sign = (float)((c > 0) - (c < 0));
        w[i] = w[i] * decay_factor - lr * sign;
        m[i] = m[i] * b2 + gi * omb2;
    }
}

static __global__ void sgd(float *w, const float *g, float *buf, size_t n, float decay_factor, float momentum,
                           float lr) {
    CBK_FOR(i, n) {
        float b = buf[i] * momentum + g[i];
        buf[i] = b;
        w[i] = w[i] * decay_factor - lr * b;
    }
}

void cbk_adamw(float *w, const float *g, float *m, float *v, size_t n, float decay_factor, float b1, float b2,
               float omb1, float omb2, float step_size, float bc2_sqrt, float eps) {
    if (n) adamw<<<cbk_grid(n), CBK_THREADS>>>(w, g, m, v, n, decay_factor, b1, b2, omb1, omb2, step_size, bc2_sqrt, eps);
}
void cbk_lion(float *w, const float *g, float *m, size_t n, float decay_factor, float b1, float b2, float omb1,
              float omb2, float lr) {
    if (n) lion<<<cbk_grid(n), CBK_THREADS>>>(w, g, m, n, decay_factor, b1, b2, omb1, omb2, lr);
}
void cbk_sgd(float *w, const float *g, float *buf, size_t n, float decay_factor, float momentum, float lr) {
    if (n) sgd<<<cbk_grid(n), CBK_THREADS>>>(w, g, buf, n, decay_factor, momentum, lr);
}
